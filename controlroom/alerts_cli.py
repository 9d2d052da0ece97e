"""edge-alerts: the control room's live terminal view of every entrance.

Subscribes to ``<prefix>/+/+/#`` on the central broker (or, with ``--share GROUP`` and
MQTT 5, to ``$share/GROUP/<prefix>/+/+/events`` and ``.../counts`` so that several
consumers split the load, plus the plain retained ``status`` topics) and shows:

* alerts as they arrive: non-compliant verdicts by default, every event with
  ``--all-events``, or the verdicts named with ``--verdict``;
* each device's availability from its retained ``status`` (online / offline (last
  will) / stopped);
* a periodic plain-text summary: per device the state, events and alerts seen, the
  latest counts window and its compliance rate.

``--json`` prints one JSON object per line instead (every accepted event, status and
counts message; ``twins`` when two kiosks report under one name, ``clock`` when a kiosk's
clock goes a minute or more off this machine's and when it is back; then a final summary
line), for piping into other tools. ``--bell`` and
``--exec CMD`` react to alerts; ``--ha-discovery`` publishes Home Assistant MQTT discovery
configs for every kiosk seen.

Events are delivered at least once: they are de-duplicated by ``event_id`` and the
duplicates are counted. Payloads that are not JSON, not a JSON object, of an unknown
``schema_version``, or that do not match maskwatch_protocol/schemas/*.schema.json (checked with
jsonschema when it is installed, else with a small built-in checker of the same
schemas) are reported on stderr as warnings and counted; they never stop the program.
The site and device of a message are taken from its topic (which the broker's ACL ties
to the device's account); a payload that claims another site or device is rejected.

Only paho-mqtt (>= 2, callback API VERSION2) and the standard library are needed; it
runs on Python 3.8. Exit status: 0 done (--count reached, --timeout without --count,
or stopped by SIGINT/SIGTERM), 1 cannot connect / TLS failure / login refused /
subscriptions refused, 2 usage error, 3 --timeout expired before --count events.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from typing import List, Optional

from maskwatch_protocol import VERDICTS

from .common import _LEVEL, EXIT_FATAL, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, Fatal, UsageError, split_values
from .mqtt import Session, add_broker_args, check_broker_args
from .terminal import Monitor

PROG = "edge-alerts"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Live view of maskwatch alerts, device status and compliance from every entrance.",
        epilog="examples:\n"
        "  edge-alerts --host broker.example --ca ca.crt --username controlroom --password-file pw\n"
        "  edge-alerts ... --json --all-events | jq .\n"
        "  edge-alerts ... --share alerts --exec 'notify-send maskwatch'   (MQTT 5 load sharing)\n"
        "exit status: 0 done, 1 cannot connect / login refused, 2 usage, 3 --timeout before --count",
    )
    add_broker_args(p, PROG)
    s = p.add_argument_group("what to show")
    s.add_argument("--prefix", default="maskwatch", help="topic prefix (default maskwatch)")
    s.add_argument(
        "--share",
        metavar="GROUP",
        help="MQTT 5 shared subscription: consumers with the same GROUP split the events and counts between them",
    )
    s.add_argument("--site", action="append", help="only this site (repeatable, or comma-separated)")
    s.add_argument("--device", action="append", help="only this device (repeatable, or comma-separated)")
    s.add_argument(
        "--verdict", action="append", help="show events with this verdict (repeatable; %s)" % ", ".join(VERDICTS)
    )
    s.add_argument("--all-events", action="store_true", help="show every event, not just non-compliant ones")
    s.add_argument(
        "--json", action="store_true", help="one JSON object per line on stdout (events, status, counts, summaries)"
    )
    s.add_argument(
        "--summary-s",
        type=float,
        default=60.0,
        help="print the summary table every this many seconds (default 60; 0: only at exit)",
    )
    s.add_argument("--max-bytes", type=int, default=262144, help="ignore larger payloads (default 262144)")
    s.add_argument("--no-jsonschema", action="store_true", help=argparse.SUPPRESS)
    s.add_argument(
        "--ha-discovery",
        action="store_true",
        help="publish retained Home Assistant MQTT discovery configs for every kiosk seen (the account "
        "needs write access to <ha-prefix>/#: add-controlroom.sh --ha)",
    )
    s.add_argument(
        "--ha-prefix", default="homeassistant", help="Home Assistant discovery prefix (default homeassistant)"
    )
    a = p.add_argument_group("on alerts")
    a.add_argument("--bell", action="store_true", help="ring the terminal bell on each alert")
    a.add_argument(
        "--exec",
        dest="exec_cmd",
        metavar="CMD",
        help="run CMD for each alert (split like a shell command line, not run by a shell) with the "
        "event's JSON on stdin and MASKWATCH_SITE/_DEVICE/_VERDICT/_EVENT_ID/_TOPIC in the "
        "environment; its output goes to stderr",
    )
    a.add_argument("--exec-jobs", type=int, default=2, help="hooks running at once (default 2)")
    a.add_argument(
        "--exec-queue",
        type=int,
        default=100,
        help="alerts waiting for a hook before new ones are dropped (default 100)",
    )
    a.add_argument("--exec-timeout", type=float, default=30.0, help="kill a hook after this many seconds (default 30)")
    e = p.add_argument_group("when to stop")
    e.add_argument("--count", type=int, help="exit after this many shown events")
    e.add_argument("--timeout", type=float, help="exit after this many seconds")
    p.add_argument("--debug", action="store_true", help="log the MQTT traffic and show tracebacks")
    p.add_argument("--version", action="version", version="%(prog)s " + _version())
    return p


def _version() -> str:
    try:
        from . import __version__

        return __version__
    except ImportError:
        return "?"


def check_args(args: argparse.Namespace) -> Optional[str]:
    """Fill defaults that depend on other options; the password (or None). Raises UsageError."""
    for name in ("site", "device"):
        for v in split_values(getattr(args, name)):
            if not _LEVEL.match(v):
                raise UsageError("--%s %r: one topic level, without / + or #" % (name, v))
    for v in split_values(args.verdict):
        if v not in VERDICTS:
            raise UsageError("--verdict %r: choose from %s" % (v, ", ".join(VERDICTS)))
    if not args.ha_prefix.strip("/") or any(ch in args.ha_prefix for ch in "+#"):
        raise UsageError("--ha-prefix %r: a topic prefix without + or #" % args.ha_prefix)
    if not args.prefix.strip("/") or any(ch in args.prefix for ch in "+#"):
        raise UsageError("--prefix %r: a topic prefix without + or #" % args.prefix)
    if args.share:
        if not _LEVEL.match(args.share):
            raise UsageError("--share %r: a group name without / + or #" % args.share)
        if args.protocol == "3.1.1":
            raise UsageError("--share needs MQTT 5 (shared subscriptions): drop --protocol 3.1.1")
        args.protocol = "5"
    args.protocol = args.protocol or "3.1.1"
    for name in ("count", "exec_jobs", "exec_queue", "max_bytes"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError("--%s must be at least 1" % name.replace("_", "-"))
    for name in ("timeout", "summary_s", "exec_timeout", "connect_timeout"):
        v = getattr(args, name)
        if v is not None and v < 0:
            raise UsageError("--%s must not be negative" % name.replace("_", "-"))
    if args.exec_cmd:
        try:
            cmd = shlex.split(args.exec_cmd)
        except ValueError as exc:
            raise UsageError("--exec: %s" % exc)
        if not cmd:
            raise UsageError("--exec: empty command")
        if shutil.which(cmd[0]) is None:
            raise UsageError("--exec: %s: command not found" % cmd[0])
    return check_broker_args(args)


def run(args: argparse.Namespace, password: Optional[str]) -> int:
    monitor = Monitor(args)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old_term = signal.signal(signal.SIGTERM, on_signal)
    session = Session(args, monitor, password)
    status = EXIT_OK
    try:
        session.connect()
        start = time.monotonic()
        next_summary = start + args.summary_s if args.summary_s else None
        while not (stop.is_set() or monitor.done.is_set()):
            if session.fatal:
                raise Fatal(session.fatal)
            now = time.monotonic()
            if args.timeout is not None and now - start >= args.timeout:
                if args.count:
                    monitor.warn(
                        "--timeout %g s expired after %d of --count %d events"
                        % (args.timeout, monitor.accepted, args.count)
                    )
                    status = EXIT_TIMEOUT
                break
            if next_summary is not None and now >= next_summary:
                monitor.summary(final=False)
                next_summary = now + args.summary_s
            stop.wait(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
        signal.signal(signal.SIGTERM, old_term)
        if monitor.hooks is not None:
            monitor.hooks.close(args.exec_timeout)
    if monitor.broken_pipe:
        return status
    monitor.summary(final=True)
    return status


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        password = check_args(args)
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            raise Fatal("paho-mqtt is not installed (pip install 'paho-mqtt>=2')")
        return run(args, password)
    except UsageError as exc:
        sys.stderr.write("%s: error: %s\n" % (PROG, exc))
        return EXIT_USAGE
    except Fatal as exc:
        sys.stderr.write("%s: error: %s\n" % (PROG, exc))
        return EXIT_FATAL
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001
        if args.debug:
            raise
        sys.stderr.write(
            "%s: error: internal error: %s: %s (run with --debug for a traceback)\n" % (PROG, type(exc).__name__, exc)
        )
        return EXIT_FATAL
    finally:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, OSError, ValueError):
            # stdout's reader went away (e.g. `| head`): don't let the interpreter complain at exit
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
