"""Helpers for the control room's tests and benchmarks: a real PostgreSQL, the real server, an HTTP client.

* :class:`Postgres`: Debian's PostgreSQL (initdb + pg_ctl) in a fresh directory on 127.0.0.1 and a free port,
  with a password-protected role; as root its binaries run as ``nobody`` (PostgreSQL refuses root).
* :class:`ControlRoom`: `edge-controlroom serve` from this venv as a subprocess (so ``kill -9`` is real).
* :class:`Http`: an operator's session over plain HTTP (login form, cookie, CSRF header).
"""

from __future__ import annotations

import glob
import http.cookiejar
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import maskwatch_protocol as proto  # noqa: E402

from conftest import BIN, free_port


def stats_payload(site: str, device: str, t: Optional[float] = None, **extra: Any) -> Dict[str, Any]:
    """A valid stats payload of a kiosk that runs well (`extra` replaces or adds fields, e.g. uptime_s)."""
    fields: Dict[str, Any] = dict(
        fps=10.0,
        frames=100,
        dropped_frames=0,
        detector_runs=50,
        inference_ms={"p50": 3.0, "p95": 4.0},
        detect_ms={"p50": 9.0, "p95": 12.0},
        spool_depth=0,
        spool_dropped=0,
        backend="litert",
    )
    fields.update(extra)
    return proto.stats(site=site, device=device, t=time.time() if t is None else t, **fields)


def pg_bindir() -> Optional[Path]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("initdb")
    return Path(exe).parent if exe else None


class Postgres:
    """A throwaway PostgreSQL server; `url` is a postgresql:// URL with a password."""

    def __init__(self, port: Optional[int] = None) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
        self.bindir = bindir
        self.port = port or free_port()
        # not under pytest's tmp dir: that is private to root, and the server runs as nobody
        self.dir = Path(tempfile.mkdtemp(prefix="maskwatch-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.password = secrets.token_hex(12)
        self.user, self.dbname = "controlroom", "controlroom"
        self.as_user: List[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "nobody", "--"]
            os.chown(self.dir, 65534, 65534)
        os.chmod(self.dir, 0o700)
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, 65534, 65534)
        self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-instructions",
            ]
        )
        pwfile.unlink()

    @property
    def url(self) -> str:
        return "postgresql://%s:%s@127.0.0.1:%d/%s" % (self.user, self.password, self.port, self.dbname)

    def _run(self, cmd: List[str], timeout: float = 120) -> subprocess.CompletedProcess:
        p = subprocess.run(self.as_user + cmd, capture_output=True, text=True, timeout=timeout, cwd=str(self.dir))
        if p.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s" % (cmd[0], p.returncode, p.stdout, p.stderr))
        return p

    def start(self) -> "Postgres":
        opts = "-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=on" % (self.port, self.dir)
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        if not any(l.strip() for l in self._psql("SELECT 1")):
            raise RuntimeError("postgres does not answer")
        return self

    def _psql(self, sql: str, db: str = "postgres") -> List[str]:
        env = dict(os.environ, PGPASSWORD=self.password)
        p = subprocess.run(
            self.as_user
            + [
                str(self.bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                db,
                "-At",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=str(self.dir),
        )
        if p.returncode != 0:
            raise RuntimeError("psql: %s" % p.stderr)
        return p.stdout.splitlines()

    def create_db(self) -> "Postgres":
        self._psql("CREATE DATABASE %s" % self.dbname)
        return self

    def query(self, sql: str) -> List[str]:
        return self._psql(sql, db=self.dbname)

    def pause(self) -> None:
        """Stop the server but keep its data (start() again brings it back)."""
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                self.as_user + [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=60,
                cwd=str(self.dir),
            )
        shutil.rmtree(self.dir, ignore_errors=True)


def add_user(db_url: str, name: str = "alice", password: str = "correct horse battery") -> str:
    p = subprocess.run(
        [str(BIN / "edge-controlroom"), "add-user", "--db", db_url, name, "--password-file", "-"],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    if p.returncode != 0:
        raise AssertionError("add-user failed: %s" % p.stderr)
    return password


class ControlRoom:
    """`edge-controlroom serve` against a broker (ShippedBroker: TLS + the controlroom account)."""

    def __init__(
        self,
        db_url: str,
        broker: Any,
        workdir: Path,
        extra: Optional[List[str]] = None,
        port: Optional[int] = None,
        client_id: str = "controlroom-test",
        user: str = "controlroom",
    ) -> None:
        self.db_url, self.broker = db_url, broker
        self.port = port or free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.log_path = workdir / ("controlroom-%d.log" % self.port)
        self.args = [
            str(BIN / "edge-controlroom"),
            "serve",
            "--db",
            db_url,
            "--http",
            "127.0.0.1:%d" % self.port,
            "--host",
            "127.0.0.1",
            "--port",
            str(broker.port),
            "--ca",
            str(broker.ca),
            "--username",
            user,  # the shipped broker forces client id = user name: one account per instance
            "--password-file",
            str(broker.password_file(user)),
            "--client-id",
            client_id,
        ] + [str(a) for a in (extra or [])]
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 30) -> "ControlRoom":
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.logf, stderr=subprocess.STDOUT)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError("edge-controlroom exited %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as r:
                    h = json.loads(r.read())
                if h.get("mqtt_connected"):
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError("edge-controlroom did not come up:\n%s" % self.log())

    def health(self) -> Dict[str, Any]:
        with urllib.request.urlopen(self.base + "/healthz", timeout=5) as r:
            return json.loads(r.read())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        rc = 0
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                rc = self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(10)
        elif self.proc:
            rc = self.proc.returncode
        if getattr(self, "logf", None):
            self.logf.close()
        return rc


class Http:
    """An operator's browser session without the browser: the login form, the cookie, the CSRF header."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf: Optional[str] = None

    def login(self, user: str, password: str) -> "Http":
        data = urllib.parse.urlencode({"username": user, "password": password}).encode()
        req = urllib.request.Request(self.base + "/login", data=data, headers={"Origin": self.base})
        with self.opener.open(req, timeout=10) as r:
            if not r.geturl().rstrip("/").endswith(self.base.split("//")[1]):
                raise AssertionError("login failed: landed on %s" % r.geturl())
        self.csrf = self.get("/api/me")["csrf"]
        return self

    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        headers: Optional[Dict[str, str]] = None,
        timeout: float = 10,
    ):
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        return self.opener.open(req, timeout=timeout)

    def get(self, path: str) -> Any:
        with self.request("GET", path) as r:
            return json.loads(r.read())

    def get_raw(self, path: str) -> bytes:
        with self.request("GET", path) as r:
            return r.read()

    def post(self, path: str, csrf: Optional[str] = "session") -> Any:
        h = {}
        if csrf == "session":
            csrf = self.csrf
        if csrf:
            h["X-CSRF-Token"] = csrf
        with self.request("POST", path, body=b"", headers=h) as r:
            return json.loads(r.read())

    def status(self, method: str, path: str, **kw) -> int:
        try:
            with self.request(method, path, **kw) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code


def wait_for(pred, timeout: float = 30.0, step: float = 0.1, what: str = "condition"):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))
