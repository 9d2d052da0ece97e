"""Small pieces the control room's programs share: the two error kinds, terminal-safe text, a rate-limited warner."""

from __future__ import annotations

import datetime as _dt
import re
import sys
import threading
import time
from typing import Any, List, Optional

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3


class Fatal(Exception):
    """Reported as one line `PROG: error: ...` and exit status 1."""


class UsageError(Exception):
    """Reported as one line `PROG: error: ...` and exit status 2."""


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(v), type(v).__name__
    )


def _short(s: str, n: int = 80) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean(s: Any, n: int = 120) -> str:
    """Safe to print on a terminal: no control characters (escape sequences), bounded length."""
    return _short(_UNPRINTABLE.sub("?", str(s)), n)


def local_time(t: Optional[float], fmt: str = "%H:%M:%S") -> str:
    if t is None:
        return "-"
    try:
        return time.strftime(fmt, time.localtime(t))
    except (ValueError, OverflowError, OSError):
        return "?"


def iso_now(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def split_values(values: Optional[List[str]]) -> List[str]:
    out: List[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


class Warner:
    """Warnings on stderr, at most `burst` at once and `rate` per second after that (a flood is summarised)."""

    def __init__(self, stream=None, burst: int = 50, rate: float = 5.0, prog: str = "edge-alerts") -> None:
        self.prog = prog
        self.stream = stream or sys.stderr
        self.burst, self.rate = float(burst), rate
        self.tokens = float(burst)
        self.last = time.monotonic()
        self.suppressed = 0
        self.lock = threading.Lock()

    def __call__(self, msg: str) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1.0:
                self.suppressed += 1
                return
            self.tokens -= 1.0
            note = ""
            if self.suppressed:
                note = " (%d more warnings were suppressed)" % self.suppressed
                self.suppressed = 0
            try:
                self.stream.write("%s: warning: %s%s\n" % (self.prog, msg, note))
                self.stream.flush()
            except (OSError, ValueError):
                pass


_LEVEL = re.compile(r"^[^/+#\x00]+$")  # one MQTT topic level
