"""Issue 14, the control room: `edge-controlroom serve` with a real TLS mosquitto, real SQLite and PostgreSQL.

* the real daemon (edge-maskd) on the demo clip -> the shipped TLS broker -> the control room: its 3 events
  are stored once each and returned by GET /api/events, with SQLite and with PostgreSQL (Must-show 1);
* redelivered and malformed messages, liveness from stats, accounts/sessions/CSRF, filters, paging, buckets,
  CSV, a kill -9 while kiosks publish, the command line's one-line errors;
* `pip install '.[controlroom]'` in a fresh venv has no numpy/OpenCV/LiteRT and both programs start (Must-show 4).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest
from controlroom_support import ControlRoom, Http, Postgres, add_user, pg_bindir, stats_payload, wait_for
from test_broker import broker_dir, device_event, shipped_broker, started  # noqa: F401

import maskwatch_protocol as proto  # noqa: E402

from conftest import ROOT, run_cli

try:
    import sqlalchemy  # noqa: F401
except ImportError:  # a missing dependency must fail, not skip
    pytest.fail("SQLAlchemy is not installed: scripts/setup.sh edge,export,dev (the dev extra has it)", pytrace=False)

PASSWORD = "correct horse battery"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield "sqlite:///%s" % (tmp_path / "controlroom.db")
        return
    if pg_bindir() is None:
        pytest.fail("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    pg = Postgres().start().create_db()
    try:
        yield pg.url
    finally:
        pg.stop()


@pytest.fixture
def sqlite_url(tmp_path):
    return "sqlite:///%s" % (tmp_path / "controlroom.db")


@pytest.fixture
def rooms():
    running: List[ControlRoom] = []
    yield running
    for r in running:
        r.kill9()


def serve(rooms, db_url, broker, tmp_path, extra=None, **kw) -> ControlRoom:
    room = ControlRoom(db_url, broker, tmp_path, extra=extra, **kw)
    rooms.append(room)
    return room.start()


def rows(db_url: str, sql: str):
    import sqlalchemy as sa

    from controlroom import db

    engine = db.make_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).all()
    finally:
        engine.dispose()


# -- Must-show 1: the real daemon on the demo clip, SQLite and PostgreSQL ----------------------------------
def kiosk_yaml(tmp_path: Path, clip: Path, broker) -> Path:
    lines = [
        "site: lobby",
        "device: k1",
        "state_dir: %s" % (tmp_path / "state"),
        "source:",
        "  url: %s" % clip,
        "detector:",
        "  min_face_px: 40",
        "counts:",
        "  interval_s: 5",
        "stats:",
        "  interval_s: 2",
        "mqtt:",
        "  host: 127.0.0.1",
        "  port: %d" % broker.port,
        "  username: lobby.k1",
        "  password_file: %s" % broker.password_file("lobby.k1"),
        "  tls:",
        "    enabled: true",
        "    ca: %s" % broker.ca,
    ]
    p = tmp_path / "kiosk.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_demo_clip_events_stored_once_and_served(
    db_url, shipped_broker, rooms, tmp_path, demo_clip, detector_dir, shipped_bundle
):
    add_user(db_url, "alice", PASSWORD)
    room = serve(rooms, db_url, shipped_broker, tmp_path)
    watch = started(shipped_broker, "controlroom2")  # what the daemon really published (own account: see below)
    watch.subscribe("maskwatch/lobby/k1/events")
    r = run_cli(["edge-maskd", "run", "--config", kiosk_yaml(tmp_path, demo_clip, shipped_broker)], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    published = [json.loads(m[1]) for m in watch.wait_messages(3, timeout=30)]
    assert len({e["event_id"] for e in published}) == 3
    web = Http(room.base).login("alice", PASSWORD)

    def stored():
        got = web.get("/api/events?site=lobby&device=k1")["events"]
        return got if len(got) >= 3 else None

    got = wait_for(stored, 30, what="3 events in /api/events")
    assert sorted(e["event_id"] for e in got) == sorted(e["event_id"] for e in published)
    assert sorted(e["verdict"] for e in got) == sorted(e["verdict"] for e in published)
    # a QoS 1 redelivery (the same event_id again) is stored once
    kiosk = started(shipped_broker, "lobby.k1")
    for e in published:
        kiosk.publish("maskwatch/lobby/k1/events", proto.dumps(e))
    wait_for(lambda: room.health()["ingest"]["duplicates"] >= 3, 15, what="the redeliveries to be seen")
    assert rows(db_url, "SELECT count(*), count(DISTINCT event_id) FROM events")[0] == (3, 3)
    assert len(web.get("/api/events")["events"]) == 3
    # the daemon's counts windows and its final "stopped" status were stored too
    wait_for(lambda: rows(db_url, "SELECT sum(total) FROM counts")[0][0] == 3, 15, what="the counts windows")
    states = [r[0] for r in rows(db_url, "SELECT state FROM status_changes ORDER BY id")]
    assert states[0] == "online" and states[-1] == "stopped", states
    tile = [d for d in web.get("/api/devices")["devices"] if d["device"] == "k1"][0]
    assert tile["state"] == "offline" and tile["today"]["people"] == 3 and tile["today"]["events"] == 3
    assert room.stop() == 0


def test_a_kiosk_turning_degraded_while_online_is_a_status_change(tmp_path):
    from controlroom import db

    url = "sqlite:///%s" % (tmp_path / "cr.db")
    engine = db.make_engine(url)
    db.migrate(engine)
    writer = db.Writer(engine)
    t = [time.time()]

    def status(degraded=None):
        t[0] += 1.0
        p = proto.status("online", site="lobby", device="k1", t=t[0], backend="litert", degraded=degraded)
        item = {"kind": "status", "site": "lobby", "device": "k1", "payload": p, "retained": False}
        return writer.write([dict(item, received=t[0])])["devices"]

    far = ["faces too small for a verdict: the faces seen are 24-29 px (median 27)"]
    changed = [status(), status(), status(far), status(far), status(), status()]
    assert changed == [[("lobby", "k1")], [], [("lobby", "k1")], [], [("lobby", "k1")], []]
    kept = [json.loads(r[0]).get("degraded") for r in rows(url, "SELECT payload FROM status_changes ORDER BY id")]
    assert kept == [None, far, None]
    engine.dispose()


def test_a_kiosk_clock_off_the_control_rooms_is_said_on_its_tile(tmp_path):
    from controlroom import db

    engine = db.make_engine("sqlite:///%s" % (tmp_path / "cr.db"))
    db.migrate(engine)
    writer, reader = db.Writer(engine), db.Reader(engine)
    now = time.time()

    def stats(kiosk_clock: float, received: float):
        p = stats_payload("lobby", "k1", t=kiosk_clock)
        writer.write(
            [{"kind": "stats", "site": "lobby", "device": "k1", "payload": p, "retained": False, "received": received}]
        )
        return reader.devices(now=received)[0]["clock"]

    # a Raspberry Pi without its RTC, booted before NTP: 3 h 12 min behind
    off = stats(now - 11520.4, now)
    assert off["skew_s"] == 11520.4 and "3 h 12 min behind" in off["why"] and "timedatectl set-ntp true" in off["why"]
    assert stats(now + 150, now + 30)["why"].startswith("the kiosk's clock is 2 min ahead of")
    # network delay and a few seconds of drift are no warning
    ok = stats(now + 57.5, now + 60)
    assert ok == {"skew_s": 2.5, "why": None}
    engine.dispose()


# -- messages -------------------------------------------------------------------------------------------------
def test_bad_messages_are_dropped_and_duplicates_stored_once(sqlite_url, shipped_broker, rooms, tmp_path):
    add_user(sqlite_url, "alice", PASSWORD)
    room = serve(rooms, sqlite_url, shipped_broker, tmp_path)
    k = started(shipped_broker, "lobby.k1")
    good = device_event("lobby", "k1", "without_mask")
    k.publish("maskwatch/lobby/k1/events", proto.dumps(good))
    k.publish("maskwatch/lobby/k1/events", proto.dumps(good))  # a redelivery
    k.publish("maskwatch/lobby/k1/events", b"{not json")
    k.publish("maskwatch/lobby/k1/events", proto.dumps(dict(good, event_id="a" * 32, schema_version=2)))
    k.publish("maskwatch/lobby/k1/events", proto.dumps(dict(good, event_id="b" * 32, verdict="maybe")))
    k.publish("maskwatch/lobby/k1/events", proto.dumps(dict(good, event_id="c" * 32, device="k2")))
    wait_for(lambda: room.health()["ingest"]["received"] >= 6, 15, what="all 6 messages")
    wait_for(lambda: room.health()["ingest"]["rejected"] == 4, 15, what="4 rejections")
    wait_for(
        lambda: room.health()["ingest"]["stored_events"] + room.health()["ingest"]["duplicates"] == 2,
        15,
        what="the two good copies handled",
    )
    assert rows(sqlite_url, "SELECT event_id, verdict, alert FROM events") == [(good["event_id"], "without_mask", 1)]
    log = room.log()
    assert "not valid JSON" in log and "schema_version" in log and "claims to be from" in log
    assert "Traceback" not in log
    # a kiosk that keeps sending the same broken payload is named once, loudly, then counted
    for _ in range(10):
        k.publish("maskwatch/lobby/k1/events", b"{still not json")
    wait_for(lambda: room.health()["ingest"]["rejected"] == 14, 15, what="14 rejections")
    json_errors = [ln for ln in room.log().splitlines() if "not valid JSON" in ln]
    assert len(json_errors) == 1 and "ERROR" in json_errors[0] and "lobby/k1" in json_errors[0], json_errors


def test_kill9_while_kiosks_publish_loses_nothing(sqlite_url, shipped_broker, rooms, tmp_path):
    """Messages that arrive while the control room is dead wait in its persistent session on the broker."""
    add_user(sqlite_url, "alice", PASSWORD)
    room = serve(rooms, sqlite_url, shipped_broker, tmp_path)
    k = started(shipped_broker, "lobby.k2")
    ids = []
    for i in range(40):
        e = device_event("lobby", "k2", "with_mask", track_id=i + 1)
        ids.append(e["event_id"])
        k.publish("maskwatch/lobby/k2/events", proto.dumps(e))
        if i == 15:
            room.kill9()
    room2 = serve(rooms, sqlite_url, shipped_broker, tmp_path, port=room.port)
    wait_for(lambda: rows(sqlite_url, "SELECT count(*) FROM events")[0][0] >= 40, 30, what="40 events")
    got = rows(sqlite_url, "SELECT event_id FROM events")
    assert sorted(r[0] for r in got) == sorted(ids)
    assert room2.stop() == 0


def test_two_instances_split_the_load_with_a_shared_subscription(sqlite_url, shipped_broker, rooms, tmp_path):
    add_user(sqlite_url, "alice", PASSWORD)
    # one broker account per instance (the shipped broker makes the client id the user name)
    a = serve(rooms, sqlite_url, shipped_broker, tmp_path, extra=["--share", "controlroom"], user="controlroom")
    b = serve(rooms, sqlite_url, shipped_broker, tmp_path, extra=["--share", "controlroom"], user="controlroom2")
    k = started(shipped_broker, "garage.k1")
    ids = []
    for i in range(40):
        e = device_event("garage", "k1", "without_mask", track_id=i + 1)
        ids.append(e["event_id"])
        k.publish("maskwatch/garage/k1/events", proto.dumps(e))
    wait_for(lambda: rows(sqlite_url, "SELECT count(*) FROM events")[0][0] >= 40, 20, what="40 events")
    time.sleep(0.5)
    assert sorted(r[0] for r in rows(sqlite_url, "SELECT event_id FROM events")) == sorted(ids)
    got_a, got_b = a.health()["ingest"]["stored_events"], b.health()["ingest"]["stored_events"]
    assert got_a > 0 and got_b > 0 and got_a + got_b == 40, (got_a, got_b)
    # each instance serves everything in the shared database
    assert len(Http(b.base).login("alice", PASSWORD).get("/api/events")["events"]) == 40


def test_database_outage_acknowledges_nothing_until_it_is_back(shipped_broker, rooms, tmp_path):
    """PostgreSQL goes away while kiosks publish: nothing is acknowledged, nothing lost, all stored after."""
    if pg_bindir() is None:
        pytest.fail("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    pg = Postgres().start().create_db()
    try:
        add_user(pg.url, "alice", PASSWORD)
        room = serve(rooms, pg.url, shipped_broker, tmp_path)
        k = started(shipped_broker, "lobby.k1")
        ids = []

        def burst(n):
            for _ in range(n):
                e = device_event("lobby", "k1", "with_mask")
                ids.append(e["event_id"])
                k.publish("maskwatch/lobby/k1/events", proto.dumps(e))

        burst(5)
        wait_for(lambda: room.health()["ingest"]["stored_events"] == 5, 15, what="5 stored")
        pg.pause()
        burst(10)
        wait_for(lambda: room.health()["db_error"], 20, what="the database error to show in /healthz")
        assert room.health()["ingest"]["stored_events"] == 5
        pg.start()
        wait_for(lambda: room.health()["ingest"]["stored_events"] == 15, 30, what="the 10 stored after the outage")
        assert sorted(pg.query("SELECT event_id FROM events")) == sorted(ids)
        assert "database write failed" in room.log() and "Traceback" not in room.log()
        assert room.stop() == 0
    finally:
        pg.stop()


# -- liveness -------------------------------------------------------------------------------------------------
def test_liveness_needs_stats_not_a_retained_status(sqlite_url, shipped_broker, rooms, tmp_path):
    add_user(sqlite_url, "alice", PASSWORD)
    # a kiosk that said "online" (retained) a minute ago and then died while nobody listened
    k = started(shipped_broker, "lobby.k1")
    k.publish(
        "maskwatch/lobby/k1/status",
        proto.dumps(proto.status("online", site="lobby", device="k1", t=time.time() - 60)),
        retain=True,
    )
    room = serve(rooms, sqlite_url, shipped_broker, tmp_path, extra=["--stats-interval", "1"])
    web = Http(room.base).login("alice", PASSWORD)

    def tile():
        ds = [d for d in web.get("/api/devices")["devices"] if (d["site"], d["device"]) == ("lobby", "k1")]
        return ds[0] if ds else None

    t = wait_for(tile, 15, what="the device")
    assert t["status"] == "online" and t["status_retained"]
    assert t["state"] == "stale", t  # a retained "online" alone is not online
    for i in range(3):
        if i:
            time.sleep(0.5)
        k.publish("maskwatch/lobby/k1/stats", proto.dumps(stats_payload("lobby", "k1")), qos=0)
    assert wait_for(lambda: tile()["state"] == "online", 5, what="online"), tile()
    assert 0.3 < tile()["stale_after_s"] < 2.0  # twice the interval seen between the stats (0.5 s)
    time.sleep(2.5)  # no more stats: stale after twice the interval
    t = tile()
    assert t["state"] == "stale" and "no stats" in t["state_why"], t
    k.publish("maskwatch/lobby/k1/stats", proto.dumps(stats_payload("lobby", "k1")), qos=0)
    wait_for(lambda: tile()["state"] == "online", 5, what="online again")
    k.publish(
        "maskwatch/lobby/k1/status",
        proto.dumps(proto.status("offline", site="lobby", device="k1", t=time.time())),
        retain=True,
    )
    wait_for(lambda: tile()["state"] == "offline", 5, what="offline after the last will")
    # the interval the kiosk announces in its status wins over the one guessed from gaps
    k.publish(
        "maskwatch/lobby/k1/status",
        proto.dumps(proto.status("online", site="lobby", device="k1", t=time.time(), stats_interval_s=5)),
        retain=True,
    )
    k.publish("maskwatch/lobby/k1/stats", proto.dumps(stats_payload("lobby", "k1")), qos=0)
    t = wait_for(lambda: tile()["state"] == "online" and tile(), 5, what="online with the announced interval")
    assert t["stale_after_s"] == 10.0, t


# -- accounts, sessions, CSRF -----------------------------------------------------------------------------------
def test_login_sessions_csrf_and_acknowledge(sqlite_url, shipped_broker, rooms, tmp_path):
    import base64

    add_user(sqlite_url, "alice", PASSWORD)
    add_user(sqlite_url, "bob", PASSWORD + "!")
    room = serve(rooms, sqlite_url, shipped_broker, tmp_path)
    anon = Http(room.base)
    assert anon.status("GET", "/api/events") == 401
    assert anon.status("GET", "/api/devices") == 401
    with anon.request("GET", "/") as r:  # the page sends you to the login form
        assert r.geturl().endswith("/login")
    with pytest.raises(AssertionError):
        Http(room.base).login("alice", "wrong password")
    with pytest.raises(AssertionError):
        Http(room.base).login("mallory", PASSWORD)
    # a login form posted from another site is refused
    assert (
        anon.status("POST", "/login", body=b"username=alice&password=x", headers={"Origin": "http://evil.example"})
        == 403
    )
    rows_users = rows(sqlite_url, "SELECT username, password_hash FROM users ORDER BY username")
    assert [r[0] for r in rows_users] == ["alice", "bob"] and all(r[1].startswith("scrypt$") for r in rows_users)
    assert PASSWORD not in "".join(r[1] for r in rows_users)

    k = started(shipped_broker, "lobby.k1")
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg-bytes\xff\xd9"
    e = device_event("lobby", "k1", "without_mask")
    e["snapshot_jpeg_b64"] = base64.b64encode(jpeg).decode()
    k.publish("maskwatch/lobby/k1/events", proto.dumps(e))
    alice = Http(room.base).login("alice", PASSWORD)
    wait_for(lambda: alice.get("/api/events")["events"], 15, what="the event")
    eid = e["event_id"]
    assert alice.get("/api/events/%s" % eid)["has_snapshot"]
    assert alice.get_raw("/api/events/%s/snapshot.jpg" % eid) == jpeg
    assert anon.status("GET", "/api/events/%s/snapshot.jpg" % eid) == 401  # snapshots only for operators
    # state changes need the session's CSRF token
    assert alice.status("POST", "/api/events/%s/ack" % eid, body=b"") == 403
    assert alice.status("POST", "/api/events/%s/ack" % eid, body=b"", headers={"X-CSRF-Token": "nope"}) == 403
    bob = Http(room.base).login("bob", PASSWORD + "!")
    assert alice.status("POST", "/api/events/%s/ack" % eid, body=b"", headers={"X-CSRF-Token": bob.csrf}) == 403
    assert alice.get("/api/events/%s" % eid)["ack_at"] is None
    t0 = time.time()
    ev = alice.post("/api/events/%s/ack" % eid)
    assert ev["ack_by"] == "alice" and t0 - 1 <= ev["ack_at"] <= time.time() + 1
    again = bob.post("/api/events/%s/ack" % eid)  # the first acknowledgement stays
    assert again["ack_by"] == "alice" and again["ack_at"] == ev["ack_at"]
    assert alice.get("/api/events?unacked=true")["events"] == []
    # logout ends the session on the server
    assert alice.status("POST", "/logout", body=b"", headers={"X-CSRF-Token": alice.csrf}) in (200, 303)
    assert alice.status("GET", "/api/events") == 401
    assert bob.status("GET", "/api/events") == 200
    assert "Traceback" not in room.log()


# -- API: filters, paging, buckets, CSV -----------------------------------------------------------------------------
def test_api_filters_paging_buckets_and_csv(db_url, shipped_broker, rooms, tmp_path):
    add_user(db_url, "alice", PASSWORD)
    room = serve(rooms, db_url, shipped_broker, tmp_path)
    base = 1767225600.0  # 2026-01-01T00:00:00Z
    sent = []
    for dev in ("k1", "k2"):
        k = started(shipped_broker, "lobby.%s" % dev)
        for i in range(12):
            verdict = ("with_mask", "without_mask", "mask_weared_incorrect")[i % 3]
            t = base + 1800 * i + (0 if dev == "k1" else 60)  # two events per hour, over 6 hours
            e = device_event("lobby", dev, verdict, t=t, track_id=i + 1)
            sent.append(e)
            k.publish("maskwatch/lobby/%s/events" % dev, proto.dumps(e))
        for h in range(6):
            per = {"with_mask": 3 + h, "without_mask": 1, "mask_weared_incorrect": h % 2}
            c = proto.counts(
                site="lobby",
                device=dev,
                window_start=base + 3600 * h,
                window_end=base + 3600 * h + 60,
                per_label=per,
                labels=proto.VERDICTS,
            )
            k.publish("maskwatch/lobby/%s/counts" % dev, proto.dumps(c))
            k.publish("maskwatch/lobby/%s/counts" % dev, proto.dumps(c))  # redelivered: counted once
    web = Http(room.base).login("alice", PASSWORD)
    wait_for(lambda: len(web.get("/api/events?limit=500")["events"]) == 24, 20, what="24 events")
    wait_for(lambda: rows(db_url, "SELECT count(*) FROM counts")[0][0] == 12, 20, what="12 counts windows")
    assert web.get("/api/events?device=k2&limit=500")["events"] and all(
        e["device"] == "k2" for e in web.get("/api/events?device=k2&limit=500")["events"]
    )
    nc = web.get("/api/events?verdict=without_mask,mask_weared_incorrect&limit=500&total=true")
    assert nc["total"] == 16 and all(e["alert"] for e in nc["events"])
    window = web.get("/api/events?since=%d&until=%s&limit=500" % (base + 3600, "2026-01-01T02:00:00Z"))["events"]
    assert len(window) == 4 and all(base + 3600 <= e["ts"] < base + 7200 for e in window)
    # keyset paging: 5 pages of 5, no repeats, nothing skipped
    seen, before = [], None
    for _ in range(10):
        page = web.get("/api/events?limit=5" + ("&before_id=%d" % before if before else ""))
        seen += [e["event_id"] for e in page["events"]]
        before = page["next_before_id"]
        if before is None:
            break
    assert sorted(seen) == sorted(e["event_id"] for e in sent)
    # hour buckets from the counts windows, per device and for all
    hb = web.get("/api/buckets?size=hour&site=lobby&device=k1&since=%d" % base)["buckets"]
    assert [b["bucket"] for b in hb] == [int(base) + 3600 * h for h in range(6)]
    for h, b in enumerate(hb):
        people, non = 3 + h + 1 + h % 2, 1 + h % 2
        assert (b["people"], b["non_compliant"], b["events"]) == (people, non, 2), b
        assert b["compliance_rate"] == round((people - non) / people, 4)
    day = web.get("/api/buckets?size=day&by=all&since=%d" % base)["buckets"]
    assert len(day) == 1 and day[0]["events"] == 24 and day[0]["alerts"] == 16
    assert day[0]["people"] == 2 * sum(3 + h + 1 + h % 2 for h in range(6))
    # the day bucket follows the browser's time zone (UTC-5: the day starts at 05:00Z)
    ny = web.get("/api/buckets?size=day&by=all&tz_offset_min=300&since=%d" % (base - 86400))["buckets"]
    assert [b["bucket"] for b in ny] == [int(base) - 86400 + 5 * 3600, int(base) + 5 * 3600]
    # CSV with the same filters
    text = web.get_raw("/api/events.csv?device=k1&verdict=without_mask").decode()
    table = list(csv.DictReader(io.StringIO(text)))
    assert (
        len(table) == 4 and {r["verdict"] for r in table} == {"without_mask"} and {r["device"] for r in table} == {"k1"}
    )
    assert web.status("GET", "/api/events?verdict=maybe") == 400
    assert web.status("GET", "/api/events?limit=100000") == 400
    assert web.status("GET", "/api/buckets?size=week") == 400
    assert "/api/events" in web.get("/api/openapi.json")["paths"]


# -- the command line -----------------------------------------------------------------------------------------
def _one_line_error(r, code: int, *words: str) -> None:
    lines = [l for l in r.stderr.splitlines() if l.startswith("edge-controlroom: error: ")]
    assert r.returncode == code, (r.returncode, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr  # (log lines at INFO may come before it)
    for w in words:
        assert w in lines[0], lines[0]


def test_cli_errors_are_one_line(tmp_path, sqlite_url):
    from conftest import free_port

    _one_line_error(run_cli(["edge-controlroom", "serve", "--db", "mysql://x@y/z"], timeout=60), 64, "unsupported")
    _one_line_error(run_cli(["edge-controlroom", "serve", "--db", "not a url"], timeout=60), 64, "database URL")
    _one_line_error(
        run_cli(["edge-controlroom", "serve", "--db", "sqlite:///%s/no/such/dir/x.db" % tmp_path], timeout=60),
        69,
        "does not exist",
    )
    _one_line_error(
        run_cli(
            ["edge-controlroom", "serve", "--db", "postgresql://u:secret@127.0.0.1:%d/db" % free_port()], timeout=60
        ),
        69,
        "cannot open",
    )
    r = run_cli(
        ["edge-controlroom", "serve", "--db", "postgresql://u:secret@127.0.0.1:%d/db" % free_port()], timeout=60
    )
    assert "secret" not in r.stderr  # the password is never printed
    _one_line_error(
        run_cli(["edge-controlroom", "serve", "--db", sqlite_url, "--http", "localhost"], timeout=60), 64, "--http"
    )
    _one_line_error(
        run_cli(["edge-controlroom", "serve", "--db", sqlite_url, "--http", "1.2.3.4:99999"], timeout=60), 64, "--http"
    )
    _one_line_error(run_cli(["edge-controlroom", "serve", "--db", sqlite_url], timeout=60), 78, "add-user")
    _one_line_error(
        run_cli(
            ["edge-controlroom", "add-user", "--db", sqlite_url, "bad/name", "--password-file", "-"],
            timeout=60,
            input="longenough\n",
        ),
        64,
        "user name",
    )
    _one_line_error(
        run_cli(
            ["edge-controlroom", "add-user", "--db", sqlite_url, "carol", "--password-file", "-"],
            timeout=60,
            input="short\n",
        ),
        65,
        "8 characters",
    )
    add_user(sqlite_url, "carol", PASSWORD)
    _one_line_error(
        run_cli(
            ["edge-controlroom", "add-user", "--db", sqlite_url, "carol", "--password-file", "-"],
            timeout=60,
            input="another long one\n",
        ),
        65,
        "exists",
    )
    r = run_cli(
        ["edge-controlroom", "add-user", "--db", sqlite_url, "carol", "--replace", "--password-file", "-"],
        timeout=60,
        input="another long one\n",
    )
    assert r.returncode == 0, r.stderr
    _one_line_error(
        run_cli(
            [
                "edge-controlroom",
                "serve",
                "--db",
                sqlite_url,
                "--host",
                "127.0.0.1",
                "--port",
                free_port(),
                "--http",
                "127.0.0.1:%d" % free_port(),
                "--connect-timeout",
                "3",
            ],
            timeout=60,
        ),
        69,
        "connection refused",
    )
    _one_line_error(
        run_cli(
            [
                "edge-controlroom",
                "serve",
                "--db",
                sqlite_url,
                "--ca",
                tmp_path / "missing.crt",
                "--http",
                "127.0.0.1:%d" % free_port(),
            ],
            timeout=60,
        ),
        78,
        "not found",
    )
    r = run_cli(["edge-controlroom", "migrate", "--db", sqlite_url], timeout=60)
    from controlroom import db

    assert r.returncode == 0 and "schema version %d" % db.MIGRATIONS[-1][0] in r.stdout, r.stderr


def test_two_kiosks_reporting_as_one_device_are_shown_a_restart_is_not(db_url, shipped_broker, rooms, tmp_path):
    """Stats say when their kiosk process started (ts - uptime_s). One kiosk restarting gives a new start once;
    two kiosks flashed with one name give two starts taking turns, and the device's tile says so, with both."""
    add_user(db_url, "alice", PASSWORD)
    k = started(shipped_broker, "lobby.k1")
    room = serve(rooms, db_url, shipped_broker, tmp_path)
    web = Http(room.base).login("alice", PASSWORD)

    def send(started_ago: float) -> None:
        k.publish("maskwatch/lobby/k1/stats", proto.dumps(stats_payload("lobby", "k1", uptime_s=started_ago)))

    def tile():
        ds = [d for d in web.get("/api/devices")["devices"] if (d["site"], d["device"]) == ("lobby", "k1")]
        return ds[0] if ds else None

    send(3600.0)
    wait_for(tile, 15, what="the device")
    time.sleep(0.3)
    send(3600.3)  # the same process, a little later
    time.sleep(0.3)
    send(20.0)  # restarted: a new start, once
    time.sleep(0.3)
    send(21.0)
    time.sleep(1.0)
    assert tile()["twin"] is None, tile()
    send(3602.0)  # the first process again: two kiosks take turns
    t = wait_for(lambda: tile()["twin"] and tile(), 10, what="two kiosks shown")
    assert "two kiosks report as lobby/k1" in t["twin"]["why"], t
    assert t["twin"]["why"].count(":") >= 4  # both start times, as ISO 8601
    older, newer = t["twin"]["starts"]
    assert newer - older > 3000  # the two processes: started about an hour apart, older first


def test_migrations_are_recorded_and_idempotent(sqlite_url):
    from controlroom import db

    engine = db.make_engine(sqlite_url)
    assert db.migrate(engine) == [m[0] for m in db.MIGRATIONS] == [1, 2, 3, 4]
    assert db.migrate(engine) == []
    assert db.current_version(engine) == db.MIGRATIONS[-1][0]
    mode = rows(sqlite_url, "PRAGMA journal_mode")[0][0]
    assert mode == "wal"
    import sqlalchemy as sa

    # a database made by release 1 (before the devices got the announced interval) is upgraded in place
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO devices (site, device, first_seen, last_seen) VALUES ('s', 'd', 1, 2)"))
        conn.execute(sa.text("ALTER TABLE devices DROP COLUMN stats_interval_announced"))
        conn.execute(sa.text("ALTER TABLE devices DROP COLUMN status_ts"))
        for col in ("stats_start", "stats_prev_start", "twin_seen", "stats_ts"):
            conn.execute(sa.text("ALTER TABLE devices DROP COLUMN %s" % col))
        conn.execute(sa.text("DELETE FROM schema_migrations WHERE version >= 2"))
    assert db.current_version(engine) == 1
    assert db.migrate(engine) == [2, 3, 4]
    assert rows(
        sqlite_url,
        "SELECT site, device, stats_interval_announced, status_ts, stats_start, twin_seen, stats_ts FROM devices",
    ) == [("s", "d", None, None, None, None, None)]
    with engine.begin() as conn:  # a database from a newer release is refused, not damaged
        conn.execute(db.schema_migrations.insert().values(version=999, name="future", applied_at=0))
    with pytest.raises(db.DatabaseError, match="newer"):
        db.migrate(engine)
    engine.dispose()


# -- packaging: no numpy, OpenCV or LiteRT (Must-show 4) ------------------------------------------------------------
def test_controlroom_and_protocol_never_pull_numpy():
    code = (
        "import sys, maskwatch_protocol, controlroom.cli, controlroom.web, controlroom.db, controlroom.ingest, "
        "controlroom.alerts_cli, controlroom.auth; "
        "bad = [m for m in ('numpy', 'cv2', 'tflite_runtime', 'ai_edge_litert', 'tensorflow', 'edge') "
        "if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(ROOT))
    # and edge/ never imports controlroom/
    offenders = [
        str(p)
        for p in (ROOT / "edge").rglob("*.py")
        if any(l.strip().startswith(("import controlroom", "from controlroom")) for l in p.read_text().splitlines())
    ]
    assert not offenders, offenders


def test_fresh_venv_install_has_no_numpy_opencv_or_litert(tmp_path):
    """A real `pip install '.[controlroom]'` into a new venv (from the package index, as an operator would)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    src = tmp_path / "src"  # a copy without the developer's .venv and build leftovers
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "build", "__pycache__", "benchmarks", "tests"),
    )
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    p = subprocess.run(
        pip + ["install", "--quiet", "%s[controlroom]" % src], capture_output=True, text=True, timeout=900
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    listed = subprocess.run(pip + ["list", "--format", "json"], capture_output=True, text=True, check=True)
    names = {d["name"].lower().replace("_", "-") for d in json.loads(listed.stdout)}
    banned = {
        "numpy",
        "opencv-python",
        "opencv-python-headless",
        "ai-edge-litert",
        "tflite-runtime",
        "tensorflow",
        "tensorflow-cpu",
    }
    assert not names & banned, sorted(names & banned)
    assert {"sqlalchemy", "paho-mqtt", "psycopg", "maskwatch"} <= names, sorted(names)
    for exe in ("edge-controlroom", "edge-alerts"):
        r = subprocess.run([str(venv / "bin" / exe), "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "usage:" in r.stdout, r.stderr
    r = subprocess.run(
        [str(venv / "bin" / "edge-controlroom"), "migrate", "--db", "sqlite:///%s" % (tmp_path / "fresh.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    # the JSON Schemas and the dashboard's files came along as package data
    code = (
        "import maskwatch_protocol, controlroom.web as w; assert len(list(maskwatch_protocol.SCHEMA_DIR.glob("
        "'*.schema.json'))) == 4; assert (w.STATIC / 'app.js').is_file(); import sys; "
        "assert 'numpy' not in sys.modules"
    )
    r = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=60, cwd=str(tmp_path)
    )
    assert r.returncode == 0, r.stderr


# -- the systemd unit -------------------------------------------------------------------------------------------
def test_controlroom_unit_is_hardened_and_verifies(tmp_path):
    from test_install import VENV_ROOT, rewrite_prefix, unit_entries

    unit = ROOT / "systemd" / "maskwatch-controlroom.service"
    entries = {(s, k): v for s, k, v in unit_entries(unit)}
    svc = {k: v for (s, k), v in entries.items() if s == "Service"}
    assert svc["Type"] == "notify" and svc["DynamicUser"] == "yes" and svc["ProtectSystem"] == "strict"
    assert svc["NoNewPrivileges"] == "yes" and svc["CapabilityBoundingSet"] == "" and svc["PrivateDevices"] == "yes"
    assert svc["RestartPreventExitStatus"] == "78" and "edge-controlroom serve" in svc["ExecStart"]
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is not installed (apt-get install systemd)")
    copy = tmp_path / unit.name
    copy.write_text(rewrite_prefix(unit.read_text(), VENV_ROOT))
    p = subprocess.run([exe, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60)
    ours = [l for l in (p.stdout + p.stderr).splitlines() if unit.name in l]
    assert p.returncode == 0 and not ours, p.stdout + p.stderr
