"""edge-controlroom: the control room server (serve), its operator accounts (add-user), its schema (migrate).

Exit status (sysexits.h, as edge-maskd): 0 done; 64 usage (bad --db URL, bad --http, bad user name);
65 bad data (password too short); 69 unavailable (database or broker unreachable, port in use);
78 configuration (no operator account yet, unreadable TLS or password files); 1 anything else.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any, Dict, List, Optional

from . import __version__

PROG = "edge-controlroom"
EX_OK, EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_SOFTWARE, EX_CONFIG = 0, 64, 65, 69, 70, 78
DEFAULT_DB = "sqlite:///controlroom.db"
log = logging.getLogger("controlroom")


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=os.environ.get("MASKWATCH_CONTROLROOM_DB", DEFAULT_DB),
        help="sqlite:///PATH (default %s, or $MASKWATCH_CONTROLROOM_DB) or "
        "postgresql://USER:PASSWORD@HOST:PORT/DBNAME" % DEFAULT_DB,
    )


def build_parser() -> argparse.ArgumentParser:
    from .mqtt import add_broker_args

    p = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="maskwatch control room: stores every entrance's events, counts and status in a database and "
        "serves a dashboard (live alerts, acknowledgement, history, charts, CSV) and a JSON API.",
        epilog="examples:\n"
        "  edge-controlroom add-user --db sqlite:///var/lib/maskwatch-controlroom/cr.db alice\n"
        "  edge-controlroom serve --db sqlite:///var/lib/maskwatch-controlroom/cr.db --host broker.example "
        "--ca ca.crt --username controlroom --password-file pw\n"
        "exit status: 0 done, 64 usage, 65 bad data, 69 database/broker unreachable, 78 configuration",
    )
    p.add_argument("--version", action="version", version="%(prog)s " + __version__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser(
        "serve",
        help="subscribe, store, and serve the dashboard and API",
        description="Subscribe to <prefix>/+/+/# (or, with --share, an MQTT 5 shared subscription for events, counts "
        "and stats), store what arrives, serve the dashboard and /api/.",
    )
    _db_arg(s)
    s.add_argument("--http", default="127.0.0.1:8077", help="HOST:PORT of the dashboard (default 127.0.0.1:8077)")
    s.add_argument(
        "--secure-cookies", action="store_true", help="mark the session cookie Secure (behind a TLS reverse proxy)"
    )
    add_broker_args(s, PROG)
    s.add_argument("--prefix", default="maskwatch", help="topic prefix (default maskwatch)")
    s.add_argument(
        "--share",
        metavar="GROUP",
        default="",
        help="MQTT 5 shared-subscription group: instances with the same GROUP (and database) split "
        "the events, counts and stats. Default: plain subscriptions to <prefix>/+/+/#, which "
        "mosquitto keeps queued across its own restart (docs/controlroom.md, Scale)",
    )
    s.add_argument(
        "--stats-interval",
        type=float,
        default=30.0,
        help="the kiosks' stats interval in seconds until two stats messages show it (default 30): a "
        "device is stale after twice the interval without stats",
    )
    s.add_argument("--max-bytes", type=int, default=262144, help="ignore larger payloads (default 262144)")
    s.add_argument("--batch", type=int, default=500, help="messages per database transaction at most (default 500)")
    s.add_argument("--no-jsonschema", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    s.add_argument("--debug", action="store_true", help="log the MQTT traffic and show tracebacks")
    u = sub.add_parser("add-user", help="create an operator account (or --replace its password)")
    _db_arg(u)
    u.add_argument("username")
    u.add_argument("--password-file", help="read the password from this file's first line ('-': standard input)")
    u.add_argument("--replace", action="store_true", help="set a new password for an existing user (logs them out)")
    m = sub.add_parser("migrate", help="create or upgrade the database schema, then exit")
    _db_arg(m)
    return p


def _engine(url: str):
    from . import db

    try:
        engine = db.make_engine(url)
        db.migrate(engine)
    except db.DatabaseError as exc:
        msg = str(exc)
        raise CliError(msg, EX_UNAVAILABLE if msg.startswith("cannot open") else EX_USAGE)
    return engine


def cmd_migrate(args: argparse.Namespace) -> int:
    from . import db

    engine = _engine(args.db)
    print("%s: database %s at schema version %d" % (PROG, db.redact(args.db), db.current_version(engine)))
    return EX_OK


def cmd_add_user(args: argparse.Namespace) -> int:
    from .auth import USERNAME, Accounts

    if not USERNAME.match(args.username):
        raise CliError("user name %r: 1-64 letters, digits or _ . @ -" % args.username, EX_USAGE)
    if args.password_file == "-":
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(
                "cannot read --password-file %s (%s)" % (args.password_file, getattr(exc, "strerror", None) or exc),
                EX_CONFIG,
            )
    elif sys.stdin.isatty():
        password = getpass.getpass("password for %s: " % args.username)
        if getpass.getpass("again: ") != password:
            raise CliError("the two passwords differ", EX_DATAERR)
    else:
        raise CliError("no password: give --password-file FILE (or '-' for standard input)", EX_USAGE)
    engine = _engine(args.db)
    try:
        created = Accounts(engine).add_user(args.username, password, replace=args.replace)
    except ValueError as exc:
        raise CliError(str(exc), EX_DATAERR)
    print("%s: %s operator %s" % (PROG, "created" if created else "new password for", args.username))
    return EX_OK


def _notify(state: str) -> None:
    """systemd's notify protocol (Type=notify), without libsystemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError:
        pass


def cmd_serve(args: argparse.Namespace) -> int:
    from .common import _LEVEL, Fatal, UsageError
    from .mqtt import Session, check_broker_args
    from .web import parse_http

    logging.basicConfig(
        level=logging.DEBUG if args.debug else getattr(logging, args.log_level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.debug:
        logging.getLogger("paho").setLevel(logging.DEBUG)
    try:
        host, port = parse_http(args.http)
    except ValueError as exc:
        raise CliError(str(exc), EX_USAGE)
    if not args.prefix.strip("/") or any(ch in args.prefix for ch in "+#"):
        raise CliError("--prefix %r: a topic prefix without + or #" % args.prefix, EX_USAGE)
    if args.share and not _LEVEL.match(args.share):
        raise CliError("--share %r: a group name without / + or #" % args.share, EX_USAGE)
    if args.stats_interval <= 0 or args.max_bytes < 1 or args.batch < 1:
        raise CliError("--stats-interval, --max-bytes and --batch must be positive", EX_USAGE)
    if args.share and args.protocol == "3.1.1":
        raise CliError(
            "--share needs MQTT 5 (shared subscriptions): drop --protocol 3.1.1 or pass --share ''", EX_USAGE
        )
    args.protocol = "5" if args.share else (args.protocol or "5")
    # a stable client id and a persistent session: what arrives while the control room is down (or between
    # receipt and commit when it is killed) is kept by the broker and delivered when it is back
    if not args.client_id:
        args.client_id = "%s-%s" % (PROG, socket.gethostname().split(".")[0][:40])
    args.persistent = True
    args.ha_discovery, args.ha_prefix = False, "homeassistant"
    try:
        password = check_broker_args(args)
    except UsageError as exc:
        raise CliError(str(exc), EX_USAGE)

    from . import db
    from .auth import Accounts
    from .ingest import Hub, Ingestor
    from .web import App, make_server

    engine = _engine(args.db)
    accounts = Accounts(engine)
    if accounts.count_users() == 0:
        raise CliError(
            "no operator account yet: create one with `%s add-user --db %s NAME`" % (PROG, db.redact(args.db)),
            EX_CONFIG,
        )
    hub = Hub()
    writer = db.Writer(engine, args.stats_interval)
    ingestor = Ingestor(
        writer,
        hub,
        prefix=args.prefix,
        max_bytes=args.max_bytes,
        use_jsonschema=not args.no_jsonschema,
        batch=args.batch,
    )
    prefix = args.prefix.rstrip("/")
    base = "%s/+/+" % prefix
    if args.share:
        topics = ["$share/%s/%s/%s" % (args.share, base, k) for k in ("events", "counts", "stats")]
        topics.append(base + "/status")  # retained, and every instance needs every device's status
    else:
        topics = [base + "/#"]
    try:
        session = Session(args, ingestor, password, topics=topics, manual_ack=True, name=PROG)
    except Fatal as exc:
        raise CliError(str(exc), EX_CONFIG)
    ingestor.ack = session.ack

    def status() -> Dict[str, Any]:
        with ingestor.lock:
            st = dict(ingestor.stats)
        return {
            "mqtt_connected": session.connected,
            "db_error": ingestor.last_error,
            "queue": ingestor.q.qsize(),
            "ingest": st,
            "database": engine.dialect.name,
        }

    app = App(db.Reader(engine, args.stats_interval), accounts, hub, secure_cookies=args.secure_cookies, status=status)
    try:
        server = make_server(app, host, port)
    except OSError as exc:
        raise CliError("cannot serve on --http %s (%s)" % (args.http, exc.strerror or exc), EX_UNAVAILABLE)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ingestor.start()
    http_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
    http_thread.start()
    try:
        try:
            session.connect()
        except Fatal as exc:
            raise CliError(str(exc), EX_UNAVAILABLE)
        log.info(
            "serving http://%s:%d/ (database %s, broker %s:%d, %s)",
            host,
            server.server_address[1],
            db.redact(args.db),
            args.host,
            args.port,
            "shared subscription group %r" % args.share if args.share else "plain subscriptions",
        )
        _notify("READY=1\nSTATUS=serving on %s" % args.http)
        while not stop.wait(1.0):
            if session.fatal:
                raise CliError(session.fatal, EX_UNAVAILABLE)
            if ingestor.thread.is_alive() and http_thread.is_alive():
                _notify("WATCHDOG=1")
    finally:
        _notify("STOPPING=1")
        app.stopping.set()
        ingestor.stop(10.0)  # store and acknowledge what is queued
        session.close()
        server.shutdown()
        server.server_close()
        engine.dispose()
    log.info("stopped: %s", status()["ingest"])
    return EX_OK


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EX_USAGE
    try:
        return {"serve": cmd_serve, "add-user": cmd_add_user, "migrate": cmd_migrate}[args.command](args)
    except CliError as exc:
        sys.stderr.write("%s: error: %s\n" % (PROG, exc))
        return exc.code
    except ImportError as exc:
        sys.stderr.write("%s: error: %s is not installed (pip install 'maskwatch[controlroom]')\n" % (PROG, exc.name))
        return EX_UNAVAILABLE
    except KeyboardInterrupt:
        return EX_OK
    except Exception as exc:  # noqa: BLE001
        if getattr(args, "debug", False):
            raise
        sys.stderr.write(
            "%s: error: internal error: %s: %s (run with --debug for a traceback)\n" % (PROG, type(exc).__name__, exc)
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
