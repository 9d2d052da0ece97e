#!/usr/bin/env python3
"""Load + fault benchmark of the control room: N kiosks -> TLS mosquitto -> edge-controlroom serve -> database.

    .venv/bin/python benchmarks/controlroom_load.py [--db sqlite,postgresql] [--kiosks 200] [--rate 1]
        [--duration 60] [--broker-restart-at 20] [--kill-at 40] [--note "..."]

For each database (SQLite file; PostgreSQL started in a throwaway directory as in the tests):

1. certificates and one account per kiosk with the shipped firmware-config/broker scripts; mosquitto with
   the shipped mosquitto.conf (paths and port rewritten) plus ``persistence true`` (a broker restart keeps
   the control room's persistent session and its queued QoS 1 messages, as a production broker does);
2. the real ``edge-controlroom serve`` (subprocess, TLS, account ``controlroom``, MQTT 5 shared subscription,
   persistent session) with an operator account;
3. N kiosks (paho, MQTT 3.1.1, QoS 1, TLS, own credentials, driven by selector threads) publish one event per
   1/rate s for ``duration`` s. Like edge-maskd's spool, a kiosk keeps every event until the broker's PUBACK
   and sends the unacknowledged ones again after a reconnect (so duplicates are expected, losses are not);
4. faults: at ``--broker-restart-at`` s mosquitto is stopped and started again (2 s down); at ``--kill-at`` s
   the control room gets ``kill -9`` and is started again 3 s later;
5. meanwhile an operator's client polls GET /api/events?limit=50 and /api/devices (logged in) every 0.25 s:
   the p50/p95/max latency of the answers, and how many requests failed (the 3 s the server was dead);
6. after publishing: waits until every event the broker acknowledged is in the database, then checks the
   database: distinct event_ids == events generated, rows == distinct (none twice), none missing.

Results (with the machine described, including what else was using its CPU) go to
benchmarks/results/controlroom_load-<arch>-<N>core.json. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import broker_load as bl  # noqa: E402  (machine(), busy_processes(), proc_cpu_s(), shipped_conf(), run_script())
from controlroom_support import ControlRoom, Http, Postgres, add_user  # noqa: E402

import maskwatch_protocol as proto  # noqa: E402

log = bl.log
PASSWORD = "benchmark operator pw"


# -- the kiosks --------------------------------------------------------------------------------------------------
class Kiosk:
    __slots__ = (
        "site",
        "device",
        "user",
        "password",
        "client",
        "sock",
        "pending",
        "inflight",
        "seq",
        "connected",
        "next_t",
        "next_try",
    )

    def __init__(self, site: str, device: str, password: str) -> None:
        self.site, self.device, self.user, self.password = site, device, "%s.%s" % (site, device), password
        self.client = None
        self.sock = None
        self.pending: Deque[Tuple[str, bytes]] = collections.deque()  # the spool: not yet acknowledged
        self.inflight: Dict[int, Tuple[str, bytes]] = {}
        self.seq = 0
        self.connected = False
        self.next_t = 0.0
        self.next_try = 0.0


class Driver(threading.Thread):
    WINDOW = 20  # in flight per kiosk (edge-maskd's mqtt.inflight default)

    def __init__(self, idx: int, kiosks: List[Kiosk], port: int, ca: Path, rate: float) -> None:
        super().__init__(name="kiosks-%d" % idx, daemon=True)
        import paho.mqtt.client as mqtt

        self.mqtt = mqtt
        self.kiosks, self.port, self.ca, self.rate = kiosks, port, ca, rate
        self.sel = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.publish_from, self.publish_until = float("inf"), 0.0
        self.generated: List[str] = []
        self.acked = set()
        self.republished = 0
        self.reconnects = 0
        self.errors: List[str] = []

    def _connect(self, k: Kiosk) -> None:
        mqtt = self.mqtt
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id="maskwatch-%s-%s" % (k.site, k.device),
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        c.username_pw_set(k.user, k.password)
        c.tls_set(ca_certs=str(self.ca))
        c.max_inflight_messages_set(self.WINDOW)
        c.will_set(
            "maskwatch/%s/%s/status" % (k.site, k.device),
            proto.dumps(proto.status("offline", site=k.site, device=k.device, t=time.time())),
            qos=1,
            retain=True,
        )
        c.user_data_set(k)
        c.on_connect = self._on_connect
        c.on_publish = self._on_publish
        try:
            c.connect("127.0.0.1", self.port, keepalive=30)
        except OSError:
            k.next_try = time.time() + 1.0
            return
        k.client, k.sock = c, c.socket()
        self.sel.register(k.sock, selectors.EVENT_READ, k)

    def _drop(self, k: Kiosk) -> None:
        """The connection is gone: what was in flight goes back to the front of the spool."""
        if k.sock is not None:
            try:
                self.sel.unregister(k.sock)
            except (KeyError, ValueError):
                pass
        if k.client is not None:
            try:
                k.client.socket() and k.client.socket().close()
            except OSError:
                pass
        back = list(k.inflight.values())
        self.republished += len(back)
        k.pending.extendleft(reversed(back))
        k.inflight.clear()
        k.client, k.sock, k.connected = None, None, False
        k.next_try = time.time() + 1.0
        self.reconnects += 1

    def _on_connect(self, client, k, flags, rc, props=None) -> None:
        if rc.is_failure:
            self.errors.append("%s: %s" % (k.user, rc))
            return
        k.connected = True
        online = proto.status("online", site=k.site, device=k.device, t=time.time(), backend="benchmark")
        client.publish("maskwatch/%s/%s/status" % (k.site, k.device), proto.dumps(online), qos=1, retain=True)

    def _on_publish(self, client, k, mid, rc, props=None) -> None:
        item = k.inflight.pop(mid, None)
        if item is not None:
            self.acked.add(item[0])

    def _new_event(self, k: Kiosk) -> None:
        k.seq += 1
        t = time.time()
        verdict = "without_mask" if k.seq % 5 == 0 else "with_mask"
        ev = proto.event(
            site=k.site,
            device=k.device,
            time=t,
            track_id=k.seq,
            verdict=verdict,
            confidence=0.9,
            probs={verdict: 0.9},
            box=(100, 80, 220, 230),
            votes=5,
            frame=k.seq * 10,
            first_seen=t - 1,
            model_id="bench",
            source="camera0",
        )
        self.generated.append(ev["event_id"])
        k.pending.append((ev["event_id"], proto.dumps(ev)))

    def _flush(self, k: Kiosk) -> None:
        while k.connected and k.pending and len(k.inflight) < self.WINDOW:
            eid, data = k.pending.popleft()
            info = k.client.publish("maskwatch/%s/%s/events" % (k.site, k.device), data, qos=1)
            if info.rc != self.mqtt.MQTT_ERR_SUCCESS:
                k.pending.appendleft((eid, data))
                self._drop(k)
                return
            k.inflight[info.mid] = (eid, data)

    def connect_all(self) -> None:
        for k in self.kiosks:
            self._connect(k)

    def run(self) -> None:
        last_misc = 0.0
        while not self.stop.is_set():
            now = time.time()
            if now >= self.publish_from:
                for k in self.kiosks:
                    while k.next_t <= now and k.next_t < self.publish_until:
                        self._new_event(k)
                        k.next_t += 1.0 / self.rate
            for k in self.kiosks:
                if k.client is None and now >= k.next_try:
                    self._connect(k)
                elif k.connected:
                    self._flush(k)
            for key, _ in self.sel.select(0.01):
                k = key.data
                c = k.client
                if c is None:
                    continue
                rc = c.loop_read()
                while rc == 0 and c.socket() is not None and hasattr(c.socket(), "pending") and c.socket().pending():
                    rc = c.loop_read()
                if rc != 0 or c.socket() is None:
                    self._drop(k)
            for k in self.kiosks:
                c = k.client
                if c is not None and c.want_write():
                    if c.loop_write() != 0:
                        self._drop(k)
            if now - last_misc >= 1.0:
                last_misc = now
                for k in self.kiosks:
                    if k.client is not None and k.client.loop_misc() != 0:
                        self._drop(k)

    def backlog(self) -> int:
        return sum(len(k.pending) + len(k.inflight) for k in self.kiosks)


# -- the broker --------------------------------------------------------------------------------------------------
class Broker:
    def __init__(self, bdir: Path, work: Path) -> None:
        self.bdir, self.work = bdir, work
        self.port = bl.free_port()
        self.ca = bdir / "certs" / "ca.crt"
        conf = bl.shipped_conf(bdir, self.port, work).replace(
            "persistence false", "persistence true\npersistence_location %s/\nautosave_interval 30" % work
        )
        self.conf = work / "mosquitto.conf"
        self.conf.write_text(conf)
        self.proc: Optional[subprocess.Popen] = None

    def password_file(self, user: str) -> Path:
        return self.bdir / "secrets" / ("%s.password" % user)

    def start(self) -> "Broker":
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit("mosquitto exited: %s" % self.proc.stderr.read().decode())
                time.sleep(0.05)
        raise SystemExit("mosquitto did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # a clean stop: mosquitto writes its persistence file
            self.proc.wait(30)


# -- the operator's client ----------------------------------------------------------------------------------------
class Poller(threading.Thread):
    def __init__(self, base: str, period: float = 0.25) -> None:
        super().__init__(name="api-poller", daemon=True)
        self.base, self.period = base, period
        self.stop = threading.Event()
        self.lat: Dict[str, List[float]] = {"events": [], "devices": []}
        self.failed = 0
        self.web: Optional[Http] = None

    def run(self) -> None:
        while not self.stop.is_set():
            for name, path in (("events", "/api/events?limit=50"), ("devices", "/api/devices")):
                t0 = time.perf_counter()
                try:
                    if self.web is None:
                        self.web = Http(self.base).login("alice", PASSWORD)
                    self.web.get(path)
                    self.lat[name].append(1000 * (time.perf_counter() - t0))
                except (OSError, urllib.error.URLError, ValueError, AssertionError):
                    self.failed += 1
                    self.web = None  # log in again once the server is back (a restart keeps sessions)
            self.stop.wait(self.period)


def pct(values: List[float], q: float) -> Optional[float]:
    v = sorted(values)
    if not v:
        return None
    return round(v[min(len(v) - 1, max(0, int(round(q / 100.0 * (len(v) - 1)))))], 2)


def db_check(url: str) -> Dict[str, Any]:
    import sqlalchemy as sa

    from controlroom import db

    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            rows, distinct = conn.execute(sa.text("SELECT count(*), count(DISTINCT event_id) FROM events")).one()
            ids = set(conn.execute(sa.text("SELECT event_id FROM events")).scalars())
            lag = [r[0] for r in conn.execute(sa.text("SELECT received - ts FROM events"))]
    finally:
        engine.dispose()
    return {"rows": int(rows), "distinct": int(distinct), "ids": ids, "lag_ms": [1000 * x for x in lag]}


def count_rows(url: str) -> int:
    import sqlalchemy as sa

    from controlroom import db

    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM events")).scalar())
    except Exception:  # noqa: BLE001
        return -1
    finally:
        engine.dispose()


def run_one(kind: str, a: argparse.Namespace, bdir: Path, kiosk_pw: Dict[str, str], work: Path) -> Dict[str, Any]:
    log("== %s ==" % kind)
    pg = None
    if kind == "postgresql":
        pg = Postgres().start().create_db()
        url = pg.url
    else:
        url = "sqlite:///%s" % (work / ("controlroom-%d.db" % time.time_ns()))
    broker = Broker(bdir, work).start()
    add_user(url, "alice", PASSWORD)
    extra = [] if a.share is None else ["--share", a.share]
    room = ControlRoom(url, broker, work, extra=extra, client_id="controlroom-bench-%s" % kind).start(60)
    kiosks = [
        Kiosk("site%02d" % (i // 20), "kiosk-%03d" % i, kiosk_pw["site%02d.kiosk-%03d" % (i // 20, i)])
        for i in range(a.kiosks)
    ]
    per = (a.kiosks + a.threads - 1) // a.threads
    drivers = [Driver(i, kiosks[i * per : (i + 1) * per], broker.port, broker.ca, a.rate) for i in range(a.threads)]
    poller = Poller(room.base)
    timeline: List[Dict[str, Any]] = []
    try:
        t0 = time.monotonic()
        for d in drivers:
            d.connect_all()
            d.start()
        while sum(k.connected for k in kiosks) < a.kiosks and time.monotonic() - t0 < 90:
            time.sleep(0.1)
        log("%d/%d kiosks connected in %.1f s" % (sum(k.connected for k in kiosks), a.kiosks, time.monotonic() - t0))
        poller.start()
        start = time.time() + 1.0
        for i, k in enumerate(kiosks):
            k.next_t = start + (i / float(a.kiosks)) / a.rate
        for d in drivers:
            d.publish_until, d.publish_from = start + a.duration, start
        cpu0 = {"mosquitto": bl.proc_cpu_s(broker.proc.pid), "controlroom": bl.proc_cpu_s(room.proc.pid)}
        cr_cpu = 0.0
        did_restart = did_kill = False
        while time.time() < start + a.duration:
            el = time.time() - start
            if not did_restart and a.broker_restart_at is not None and el >= a.broker_restart_at:
                did_restart = True
                log("t=%.1f s: stopping the broker" % el)
                timeline.append({"t_s": round(el, 2), "what": "broker stopped (SIGTERM)"})
                broker.stop()
                time.sleep(2.0)
                broker.start()
                timeline.append({"t_s": round(time.time() - start, 2), "what": "broker started"})
                log("t=%.1f s: broker back" % (time.time() - start))
            if not did_kill and a.kill_at is not None and el >= a.kill_at:
                did_kill = True
                cr_cpu += bl.proc_cpu_s(room.proc.pid) - cpu0["controlroom"]
                log("t=%.1f s: kill -9 the control room" % el)
                timeline.append({"t_s": round(el, 2), "what": "control room kill -9", "rows_then": count_rows(url)})
                room.kill9()
                time.sleep(3.0)
                room = ControlRoom(
                    url, broker, work, extra=extra, port=room.port, client_id="controlroom-bench-%s" % kind
                )
                room.start(60)
                cpu0["controlroom"] = bl.proc_cpu_s(room.proc.pid)
                timeline.append({"t_s": round(time.time() - start, 2), "what": "control room started again"})
                log("t=%.1f s: control room back" % (time.time() - start))
            time.sleep(0.1)
        cpu_mosq = bl.proc_cpu_s(broker.proc.pid) - cpu0["mosquitto"]  # since its restart
        cr_cpu += bl.proc_cpu_s(room.proc.pid) - cpu0["controlroom"]
        wall = time.time() - start
        generated = [e for d in drivers for e in d.generated]
        log(
            "generated %d events in %.1f s; draining (kiosk backlog %d)"
            % (len(generated), wall, sum(d.backlog() for d in drivers))
        )
        deadline = time.monotonic() + a.drain_s
        while time.monotonic() < deadline:
            if sum(d.backlog() for d in drivers) == 0 and count_rows(url) >= len(set(generated)):
                break
            time.sleep(0.5)
        drain_s = a.drain_s - max(0.0, deadline - time.monotonic())
        poller.stop.set()
        poller.join(5)
        time.sleep(1.0)
        check = db_check(url)
        health = room.health()
        acked = set().union(*[d.acked for d in drivers])
        missing = set(generated) - check["ids"]
        result = {
            "database": kind,
            "events_generated": len(generated),
            "events_generated_distinct": len(set(generated)),
            "events_acked_by_broker": len(acked),
            "rows_in_db": check["rows"],
            "distinct_event_ids_in_db": check["distinct"],
            "missing": len(missing),
            "stored_twice": check["rows"] - check["distinct"],
            "unexpected_ids": len(check["ids"] - set(generated)),
            "kiosk_republished_after_reconnect": sum(d.republished for d in drivers),
            "kiosk_reconnects": sum(d.reconnects for d in drivers),
            "publish_wall_s": round(wall, 2),
            "generated_rate_msgs_s": round(len(generated) / wall, 1),
            "drain_after_publishing_s": round(drain_s, 2),
            "receive_lag_ms (controlroom receive time - event ts, includes the outages)": {
                "p50": pct(check["lag_ms"], 50),
                "p95": pct(check["lag_ms"], 95),
                "p99": pct(check["lag_ms"], 99),
                "max": pct(check["lag_ms"], 100),
            },
            "api_latency_ms_during_run": {
                name: {"n": len(v), "p50": pct(v, 50), "p95": pct(v, 95), "max": pct(v, 100)}
                for name, v in poller.lat.items()
            },
            "api_requests_failed (server down during kill -9)": poller.failed,
            "controlroom_ingest_after_restart": health["ingest"],
            "cpu_pct_of_one_core_while_publishing": {
                "mosquitto_after_restart": round(100 * cpu_mosq / max(1e-6, wall - (a.broker_restart_at or 0)), 1),
                "controlroom": round(100 * cr_cpu / wall, 1),
            },
            "timeline": timeline,
        }
        log(
            "%s: generated %d, in db %d distinct / %d rows, missing %d, api p95 events %s ms"
            % (
                kind,
                len(generated),
                check["distinct"],
                check["rows"],
                len(missing),
                result["api_latency_ms_during_run"]["events"]["p95"],
            )
        )
        return result
    finally:
        for d in drivers:
            d.stop.set()
        room.stop()
        broker.stop()
        if pg:
            pg.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--kiosks", type=int, default=200)
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--broker-restart-at", type=float, default=20.0)
    ap.add_argument("--kill-at", type=float, default=40.0)
    ap.add_argument("--drain-s", type=float, default=120.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--share",
        default=None,
        help="edge-controlroom --share GROUP ('' for plain subscriptions; default: the program's default)",
    )
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    out = (
        Path(a.out)
        if a.out
        else ROOT
        / "benchmarks"
        / "results"
        / ("controlroom_load-%s-%dcore.json" % (platform.machine(), os.cpu_count() or 0))
    )
    work = Path(tempfile.mkdtemp(prefix="maskwatch-controlroom-load-"))
    others = bl.busy_processes()
    load_before = os.getloadavg()
    bdir = work / "maskwatch"
    t0 = time.monotonic()
    bl.run_script("make-certs.sh", "-d", bdir / "certs", "127.0.0.1", "localhost")
    bl.run_script("add-controlroom.sh", "-d", bdir, "-H", "127.0.0.1")
    pw = {}
    for i in range(a.kiosks):
        site, dev = "site%02d" % (i // 20), "kiosk-%03d" % i
        bl.run_script("add-device.sh", "-d", bdir, "-H", "127.0.0.1", site, dev)
        pw["%s.%s" % (site, dev)] = (bdir / "secrets" / ("%s.%s.password" % (site, dev))).read_text().strip()
    log("%d accounts in %.1f s" % (a.kiosks, time.monotonic() - t0))
    results = [run_one(kind.strip(), a, bdir, pw, work) for kind in a.db.split(",") if kind.strip()]
    m = bl.machine()
    m.update(
        loadavg_before=[round(x, 2) for x in load_before],
        loadavg_after=[round(x, 2) for x in os.getloadavg()],
        other_busy_processes=others,
    )
    try:
        m["postgresql"] = subprocess.run(
            ["/usr/lib/postgresql/15/bin/postgres", "--version"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    import sqlalchemy

    m["sqlalchemy"], m["sqlite"] = sqlalchemy.__version__, __import__("sqlite3").sqlite_version
    doc = {
        "benchmark": "controlroom_load",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(
            ["python", "benchmarks/controlroom_load.py"] + (argv if argv is not None else sys.argv[1:])
        ),
        "config": {
            "kiosks": a.kiosks,
            "rate_hz_per_kiosk": a.rate,
            "duration_s": a.duration,
            "broker_restart_at_s": a.broker_restart_at,
            "controlroom_kill9_at_s": a.kill_at,
            "mqtt": "kiosks 3.1.1 QoS 1 over TLS with their own accounts; control room MQTT 5, shared "
            "subscription, persistent session, manual PUBACK after commit",
            "broker": "mosquitto, shipped mosquitto.conf (paths/port rewritten) + persistence true",
            "kiosk_spool": "each simulated kiosk keeps events until PUBACK and resends after reconnect",
        },
        "results": results,
        "machine": m,
        "notes": a.note,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    log("wrote %s" % out)
    shutil.rmtree(work, ignore_errors=True)
    bad = [r for r in results if r["missing"] or r["stored_twice"]]
    return 1 if bad else 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
