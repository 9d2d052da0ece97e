"""The dashboard and the JSON API, served by the standard library's threading HTTP server.

Why http.server: the control room is a handful of operators' browsers and some scripts, the process
already has paho's and the writer's threads, and every dependency is one more thing to patch on a
control-room PC; a thread per connection (an SSE stream holds one) is plenty at that scale. Put a
TLS reverse proxy (nginx, Caddy) in front when the page is reached from other machines, and pass
``--secure-cookies``.

Every page and every /api/ route needs a logged-in operator (session cookie); state-changing requests
(POST) need the session's CSRF token in ``X-CSRF-Token`` (or a ``csrf`` form field), and a login
POST whose Origin is another site is refused. Snapshots are served only to logged-in operators.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import mimetypes
import queue
import re
import socket
import threading
import time
import urllib.parse
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from maskwatch_protocol import VERDICTS, iso, parse_iso

from .auth import Accounts
from .db import Reader
from .ingest import Hub

log = logging.getLogger("controlroom.web")
STATIC = Path(__file__).resolve().with_name("static")
COOKIE = "mw_session"
MAX_LIMIT = 500
SSE_HEARTBEAT_S = 15.0


class BadRequest(Exception):
    pass


def _csv_list(qs: Dict[str, List[str]], name: str) -> Optional[List[str]]:
    out: List[str] = []
    for v in qs.get(name, []):
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out or None


def _time_arg(qs: Dict[str, List[str]], name: str) -> Optional[float]:
    v = (qs.get(name) or [""])[-1].strip()
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        pass
    t = parse_iso(v if ("T" in v or len(v) > 10) else v + "T00:00:00")
    if t is None:
        raise BadRequest("%s=%r: epoch seconds or an ISO 8601 time" % (name, v[:40]))
    return t


def _opt_int_arg(qs: Dict[str, List[str]], name: str, lo: int, hi: int) -> Optional[int]:
    """An optional integer query parameter (None when absent)."""
    if not (qs.get(name) or [""])[-1].strip():
        return None
    return _int_arg(qs, name, lo, lo, hi)


def _int_arg(qs: Dict[str, List[str]], name: str, default: int, lo: int, hi: int) -> int:
    v = (qs.get(name) or [""])[-1].strip()
    if not v:
        return default
    try:
        n = int(v)
    except ValueError:
        raise BadRequest("%s=%r: an integer" % (name, v[:40]))
    if not lo <= n <= hi:
        raise BadRequest("%s=%d: between %d and %d" % (name, n, lo, hi))
    return n


def _bool_arg(qs: Dict[str, List[str]], name: str) -> Optional[bool]:
    v = (qs.get(name) or [""])[-1].strip().lower()
    if not v:
        return None
    if v in ("1", "true", "yes"):
        return True
    if v in ("0", "false", "no"):
        return False
    raise BadRequest("%s=%r: true or false" % (name, v[:20]))


def event_filters(qs: Dict[str, List[str]]) -> Dict[str, Any]:
    verdicts = _csv_list(qs, "verdict")
    for v in verdicts or []:
        if v not in VERDICTS:
            raise BadRequest("verdict=%r: one of %s" % (v[:40], ", ".join(VERDICTS)))
    return {
        "site": _csv_list(qs, "site"),
        "device": _csv_list(qs, "device"),
        "verdicts": verdicts,
        "since": _time_arg(qs, "since"),
        "until": _time_arg(qs, "until"),
        "alert": _bool_arg(qs, "alert"),
        "unacked": _bool_arg(qs, "unacked"),
    }


class App:
    """What the handlers share: the reader, accounts, the live hub, ingest stats."""

    def __init__(
        self, reader: Reader, accounts: Accounts, hub: Hub, secure_cookies: bool = False, status: Optional[Any] = None
    ) -> None:
        self.reader, self.accounts, self.hub = reader, accounts, hub
        self.secure_cookies = secure_cookies
        self.status: Callable[[], Dict[str, Any]] = status or (lambda: {})
        self.stopping = threading.Event()
        self.login_failures: Dict[str, Tuple[int, float]] = {}
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "maskwatch-controlroom"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    app: App  # set on the subclass made by make_server

    # -- plumbing -------------------------------------------------------------------------------------
    def log_message(self, fmt: str, *args: Any) -> None:  # access log at debug level
        log.debug("%s %s", self.address_string(), fmt % args)

    def _headers(self, code: int, ctype: str, length: Optional[int], extra: Optional[Dict[str, str]] = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "same-origin")  # no-referrer makes Chromium send "Origin: null"
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'",
        )
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def send_body(self, code: int, body: bytes, ctype: str, extra: Optional[Dict[str, str]] = None) -> None:
        self._headers(code, ctype, len(body), extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, obj: Any, code: int = 200, extra: Optional[Dict[str, str]] = None) -> None:
        self.send_body(code, json.dumps(obj, separators=(",", ":")).encode(), "application/json", extra)

    def error_json(self, code: int, message: str) -> None:
        self.send_json({"error": message}, code)

    def redirect(self, where: str, extra: Optional[Dict[str, str]] = None) -> None:
        h = {"Location": where}
        h.update(extra or {})
        self.send_body(303, b"", "text/plain", h)

    def cookie_token(self) -> Optional[str]:
        raw = self.headers.get("Cookie")
        if not raw:
            return None
        try:
            c = SimpleCookie(raw)
        except CookieError:
            return None
        m = c.get(COOKIE)
        return m.value if m else None

    def session(self) -> Optional[Dict[str, Any]]:
        return self.app.accounts.session(self.cookie_token())

    def read_body(self, limit: int = 65536) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if n > limit:
            raise BadRequest("request body too large")
        return self.rfile.read(n) if n else b""

    def same_origin(self) -> bool:
        origin = self.headers.get("Origin")
        if not origin or origin == "null":
            return origin is None
        host = self.headers.get("Host", "")
        return urllib.parse.urlsplit(origin).netloc == host

    # -- dispatch -------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        t0 = time.perf_counter()
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        qs = urllib.parse.parse_qs(url.query, keep_blank_values=False)
        try:
            self.route(method, path, qs)
        except BadRequest as exc:
            self.error_json(400, str(exc))
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - one request's failure must not stop the server
            log.exception("%s %s failed", method, path)
            try:
                self.error_json(500, "internal error: %s" % type(exc).__name__)
            except OSError:
                self.close_connection = True
        finally:
            log.debug("%s %s %.1f ms", method, path, 1000 * (time.perf_counter() - t0))

    def route(self, method: str, path: str, qs: Dict[str, List[str]]) -> None:
        if path == "/healthz" and method == "GET":
            return self.send_json(dict(self.app.status(), ok=True))
        if path == "/login":
            return self.login_get(qs) if method == "GET" else self.login_post()
        if path.startswith("/static/") and method == "GET":
            return self.static(path[len("/static/") :])
        sess = self.session()
        api = path.startswith("/api/")
        if sess is None:
            if api:
                return self.error_json(401, "log in first")
            return self.redirect("/login")
        if method == "POST":
            body = self.read_body()
            token = self.headers.get("X-CSRF-Token")
            if token is None and body:
                form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
                token = (form.get("csrf") or [""])[0] or None
            if not token or token != sess["csrf"]:
                return self.error_json(403, "missing or wrong CSRF token")
            if path == "/logout":
                self.app.accounts.logout(self.cookie_token() or "")
                return self.redirect("/login", {"Set-Cookie": self.cookie("", 0)})
            m = re.match(r"^/api/events/([0-9A-Za-z_-]{1,64})/ack$", path)
            if m:
                ev = self.app.reader.ack(m.group(1), sess["username"])
                if ev is None:
                    return self.error_json(404, "no such event")
                ev.pop("payload", None)
                self.app.hub.publish("ack", ev)
                return self.send_json(ev)
            return self.error_json(404, "not found")
        if method != "GET":
            return self.error_json(405, "method not allowed")
        if path == "/":
            return self.static("index.html")
        if path == "/api/me":
            return self.send_json({"username": sess["username"], "csrf": sess["csrf"]})
        if path == "/api/devices":
            day = _time_arg(qs, "day_start")
            return self.send_json({"now": time.time(), "devices": self.app.reader.devices(day_start=day)})
        if path == "/api/filters":
            return self.send_json(self.app.reader.filter_values())
        if path == "/api/events":
            f = event_filters(qs)
            limit = _int_arg(qs, "limit", 100, 1, MAX_LIMIT)
            before = _opt_int_arg(qs, "before_id", 1, 2**62)
            out = self.app.reader.events(limit=limit, before_id=before, **f)
            if _bool_arg(qs, "total"):
                out["total"] = self.app.reader.count_events(**f)
            return self.send_json(out)
        if path == "/api/events.csv":
            return self.events_csv(event_filters(qs))
        if path == "/api/buckets":
            size = (qs.get("size") or ["hour"])[-1]
            if size not in ("hour", "day"):
                raise BadRequest("size=%r: hour or day" % size[:20])
            by = (qs.get("by") or ["device"])[-1]
            if by not in ("device", "all"):
                raise BadRequest("by=%r: device or all" % by[:20])
            tz = _int_arg(qs, "tz_offset_min", 0, -1440, 1440)
            rows = self.app.reader.buckets(
                size=size,
                tz_offset_s=-60 * tz,
                site=_csv_list(qs, "site"),
                device=_csv_list(qs, "device"),
                since=_time_arg(qs, "since"),
                until=_time_arg(qs, "until"),
                by_device=by == "device",
            )
            return self.send_json({"size": size, "buckets": rows})
        if path == "/api/stream":
            return self.stream()
        if path == "/api/openapi.json":
            return self.send_json(openapi())
        m = re.match(r"^/api/events/([0-9A-Za-z_-]{1,64})(/snapshot\.jpg)?$", path)
        if m:
            if m.group(2):
                data = self.app.reader.snapshot(m.group(1))
                if not data:
                    return self.error_json(404, "no snapshot for this event")
                return self.send_body(200, data, "image/jpeg")
            ev = self.app.reader.event(m.group(1))
            return self.send_json(ev) if ev else self.error_json(404, "no such event")
        return self.error_json(404, "not found")

    # -- pages ----------------------------------------------------------------------------------------
    def static(self, name: str) -> None:
        if not re.match(r"^[A-Za-z0-9_.-]+$", name) or name.startswith("."):
            return self.error_json(404, "not found")
        p = STATIC / name
        if not p.is_file():
            return self.error_json(404, "not found")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript",):
            ctype += "; charset=utf-8"
        self.send_body(200, p.read_bytes(), ctype)

    def cookie(self, value: str, max_age: int) -> str:
        c = "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d" % (COOKIE, value, max_age)
        return c + ("; Secure" if self.app.secure_cookies else "")

    def login_get(self, qs: Dict[str, List[str]]) -> None:
        page = (STATIC / "login.html").read_text(encoding="utf-8")
        note = "Wrong user name or password." if qs.get("failed") else ""
        self.send_body(200, page.replace("{{note}}", note).encode(), "text/html; charset=utf-8")

    def login_post(self) -> None:
        if not self.same_origin():
            return self.error_json(403, "login from another site refused")
        form = urllib.parse.parse_qs(self.read_body().decode("utf-8", "replace"))
        user = (form.get("username") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        with self.app.lock:
            n, last = self.app.login_failures.get(user, (0, 0.0))
        if n >= 5 and time.time() - last < 30:
            time.sleep(1.0)
        s = self.app.accounts.login(user, password) if user and password else None
        if s is None:
            with self.app.lock:
                self.app.login_failures[user[:64]] = (n + 1, time.time())
            log.warning("failed login for %r from %s", user[:64], self.address_string())
            return self.redirect("/login?failed=1")
        with self.app.lock:
            self.app.login_failures.pop(user, None)
        log.info("operator %s logged in from %s", user, self.address_string())
        self.redirect("/", {"Set-Cookie": self.cookie(s["token"], 12 * 3600)})

    def events_csv(self, f: Dict[str, Any]) -> None:
        cols = [
            "event_id",
            "time",
            "site",
            "device",
            "verdict",
            "alert",
            "confidence",
            "track_id",
            "model_id",
            "received",
            "ack_by",
            "ack_at",
        ]
        self._headers(
            200,
            "text/csv; charset=utf-8",
            None,
            {"Content-Disposition": 'attachment; filename="maskwatch-events.csv"', "Connection": "close"},
        )
        self.close_connection = True
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        n = 0
        for r in self.app.reader.iter_events(**f):
            w.writerow(
                [
                    r.event_id,
                    iso(r.ts),
                    _cell(r.site),
                    _cell(r.device),
                    r.verdict,
                    int(bool(r.alert)),
                    r.confidence,
                    r.track_id,
                    _cell(r.model_id),
                    iso(r.received),
                    _cell(r.ack_by or ""),
                    iso(r.ack_at) if r.ack_at else "",
                ]
            )
            n += 1
            if n % 1000 == 0:
                self.wfile.write(buf.getvalue().encode())
                buf.seek(0)
                buf.truncate()
        self.wfile.write(buf.getvalue().encode())

    def stream(self) -> None:
        """Server-sent events: `event` (a new event), `ack`, `device` (status/liveness input changed)."""
        q = self.app.hub.subscribe()
        self.close_connection = True
        try:
            self._headers(200, "text/event-stream", None, {"Connection": "close", "X-Accel-Buffering": "no"})
            self.wfile.write(b"retry: 2000\n: hello\n\n")
            self.wfile.flush()
            last = time.monotonic()
            while not self.app.stopping.is_set():
                try:
                    msg = q.get(timeout=1.0)
                except queue.Empty:
                    if time.monotonic() - last >= SSE_HEARTBEAT_S:
                        self.wfile.write(b": keepalive\n\n")
                        self.wfile.flush()
                        last = time.monotonic()
                    continue
                data = json.dumps(msg["data"], separators=(",", ":"))
                self.wfile.write(("event: %s\ndata: %s\n\n" % (msg["kind"], data)).encode())
                self.wfile.flush()
                last = time.monotonic()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            self.app.hub.unsubscribe(q)


def _cell(s: str) -> str:
    """CSV injection guard: a cell a spreadsheet would run as a formula gets a leading quote."""
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(app: App, host: str, port: int) -> Server:
    handler = type("BoundHandler", (Handler,), {"app": app})
    if ":" in host:
        Server.address_family = socket.AF_INET6
    return Server((host, port), handler)


def parse_http(value: str) -> Tuple[str, int]:
    """HOST:PORT or [V6]:PORT; raises ValueError with a one-line reason."""
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$", value) or re.match(r"^([A-Za-z0-9.-]+):(\d{1,5})$", value)
    if not m:
        raise ValueError("--http %r: HOST:PORT (e.g. 127.0.0.1:8077 or [::1]:8077)" % value)
    port = int(m.group(2))
    if not 0 < port < 65536:
        raise ValueError("--http %r: the port must be 1-65535" % value)
    return m.group(1), port


def openapi() -> Dict[str, Any]:
    """A hand-written OpenAPI 3.1 document of /api/ (http.server has no generator)."""
    flt = [
        {"name": n, "in": "query", "schema": {"type": "string"}, "description": d}
        for n, d in (
            ("site", "comma-separated sites"),
            ("device", "comma-separated devices"),
            ("verdict", "comma-separated: " + ", ".join(VERDICTS)),
            ("since", "epoch seconds or ISO 8601"),
            ("until", "epoch seconds or ISO 8601 (exclusive)"),
            ("alert", "true: only non-compliant"),
            ("unacked", "true: only not yet acknowledged"),
        )
    ]
    ok = {"200": {"description": "OK", "content": {"application/json": {}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "maskwatch control room", "version": "1"},
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": COOKIE},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            }
        },
        "security": [{"session": []}],
        "paths": {
            "/api/events": {
                "get": {
                    "summary": "events, newest first (keyset paging with before_id)",
                    "parameters": flt
                    + [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": MAX_LIMIT}},
                        {"name": "before_id", "in": "query", "schema": {"type": "integer"}},
                        {"name": "total", "in": "query", "schema": {"type": "boolean"}},
                    ],
                    "responses": ok,
                }
            },
            "/api/events.csv": {
                "get": {
                    "summary": "the same events as CSV",
                    "parameters": flt,
                    "responses": {"200": {"description": "CSV", "content": {"text/csv": {}}}},
                }
            },
            "/api/events/{event_id}": {"get": {"summary": "one event with its payload", "responses": ok}},
            "/api/events/{event_id}/snapshot.jpg": {
                "get": {"summary": "the kiosk's snapshot", "responses": {"200": {"description": "JPEG"}}}
            },
            "/api/events/{event_id}/ack": {
                "post": {
                    "summary": "acknowledge (who, when)",
                    "security": [{"session": [], "csrf": []}],
                    "responses": ok,
                }
            },
            "/api/buckets": {
                "get": {
                    "summary": "people, non-compliant, compliance rate, events, alerts per bucket",
                    "parameters": [
                        {"name": "size", "in": "query", "schema": {"enum": ["hour", "day"]}},
                        {"name": "by", "in": "query", "schema": {"enum": ["device", "all"]}},
                        {
                            "name": "tz_offset_min",
                            "in": "query",
                            "schema": {"type": "integer"},
                            "description": "as JavaScript's getTimezoneOffset()",
                        },
                    ]
                    + flt[:2]
                    + flt[3:5],
                    "responses": ok,
                }
            },
            "/api/devices": {
                "get": {"summary": "every entrance: liveness, today's counts, last verdicts", "responses": ok}
            },
            "/api/stream": {
                "get": {
                    "summary": "server-sent events: event, ack, device",
                    "responses": {"200": {"description": "text/event-stream"}},
                }
            },
            "/api/me": {"get": {"summary": "the operator and the session's CSRF token", "responses": ok}},
        },
    }
