"""Errors the user can act on.

Every command catches :class:`MaskwatchError` at the top and prints its message
as one line, so installers see what to fix instead of a traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75  # a file-source run ended with messages still in the spool (broker unreachable)
EX_CONFIG = 78  # systemd unit sets RestartPreventExitStatus=78: a bad config must not restart-loop


class MaskwatchError(Exception):
    """An error with a message meant for a person and an exit status."""

    exit_code = 1

    def __init__(self, message: str, exit_code: Optional[int] = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(MaskwatchError):
    exit_code = EX_CONFIG


class AssetError(MaskwatchError):
    exit_code = EX_UNAVAILABLE


class BundleError(MaskwatchError):
    exit_code = EX_DATAERR


class SourceError(MaskwatchError):
    exit_code = EX_NOINPUT


def run_main(main: Callable[[], int], prog: str) -> int:
    """Run a script's main() the way the commands run: a MaskwatchError or a missing or unreadable file
    becomes one line on stderr ("prog: error: ...") and its exit status, not a traceback."""
    try:
        return main()
    except MaskwatchError as exc:
        print("%s: error: %s" % (prog, exc), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a path given on the command line that is not there, or not readable
        where = " (%s)" % exc.filename if getattr(exc, "filename", None) else ""
        print("%s: error: %s%s" % (prog, exc.strerror or exc, where), file=sys.stderr)
        return EX_NOINPUT
    except KeyboardInterrupt:
        return 130
