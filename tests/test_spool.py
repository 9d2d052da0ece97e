"""The disk spool: durable, ordered, bounded with a counted policy."""

from __future__ import annotations

import time
from typing import List

import pytest

from edge.spool import Spool, SpoolFull


def test_order_ack_and_survives_reopen(tmp_path):
    s = Spool(tmp_path / "s.db", 100)
    seqs = [s.put("t", b"m%d" % i) for i in range(5)]
    s.ack(seqs[1])
    s.close()
    s = Spool(tmp_path / "s.db", 100)
    rows = s.peek()
    assert [r[2] for r in rows] == [b"m0", b"m2", b"m3", b"m4"]
    assert s.depth() == 4
    assert [r[2] for r in s.peek(after=rows[1][0])] == [b"m3", b"m4"]


def test_drop_oldest_counts(tmp_path):
    s = Spool(tmp_path / "s.db", 3, "drop_oldest")
    for i in range(5):
        s.put("t", b"%d" % i)
    assert [r[2] for r in s.peek()] == [b"2", b"3", b"4"]
    assert s.dropped == 2
    s.close()
    assert Spool(tmp_path / "s.db", 3).dropped == 2  # the count is durable too


def test_refuse_new_counts(tmp_path):
    s = Spool(tmp_path / "s.db", 2, "refuse_new")
    s.put("t", b"a")
    s.put("t", b"b")
    with pytest.raises(SpoolFull):
        s.put("t", b"c")
    assert [r[2] for r in s.peek()] == [b"a", b"b"] and s.dropped == 1


E, C = "maskwatch/s/d/events", "maskwatch/s/d/counts"


def test_events_outrank_counts(tmp_path):
    s = Spool(tmp_path / "s.db", 5, "drop_oldest")
    for i in range(3):
        s.put(C, b"c%d" % i)
    for i in range(5):
        s.put(E, b"e%d" % i)
    assert [r[2] for r in s.peek()] == [b"e0", b"e1", b"e2", b"e3", b"e4"]  # the counts made room
    assert s.dropped_by == {"events": 0, "counts": 3}
    with pytest.raises(SpoolFull):  # a count never pushes out an event: with no count left to drop, it is refused
        s.put(C, b"c9")
    assert s.dropped_by["counts"] == 4 and s.depth() == 5


def test_refuse_new_still_lets_events_push_out_counts(tmp_path):
    s = Spool(tmp_path / "s.db", 2, "refuse_new")
    s.put(C, b"c0")
    s.put(E, b"e0")
    s.put(E, b"e1")  # the count goes, the event stays
    assert [r[2] for r in s.peek()] == [b"e0", b"e1"]
    with pytest.raises(SpoolFull):
        s.put(E, b"e2")
    assert s.dropped_by == {"events": 1, "counts": 1}


def test_byte_cap(tmp_path):
    s = Spool(tmp_path / "s.db", 1000, "drop_oldest", max_bytes=100 * 1024)
    big = b"x" * 30000  # an event with a snapshot
    for _ in range(5):
        s.put(E, big)
    assert s.depth() == 3 and s.size_bytes() <= 100 * 1024 and s.dropped_by["events"] == 2
    with pytest.raises(SpoolFull):
        s.put(E, b"y" * 200 * 1024)  # larger than the whole cap: refused, not a wiped spool
    assert s.depth() == 3
    s.close()
    s = Spool(tmp_path / "s.db", 1000, "drop_oldest", max_bytes=100 * 1024)
    assert s.size_bytes() == 3 * 30000  # the byte count is rebuilt from disk


def test_drops_are_logged_rate_limited(tmp_path, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="edge.spool")
    s = Spool(tmp_path / "s.db", 10, "drop_oldest")
    for i in range(200):
        s.put(E, b"e%d" % i)
    lines = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]  # once a minute, not 190 times
    s.report_drops()  # the publisher says it again once the broker is back, with the totals
    msgs = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(msgs) == 2 and "190 events in all" in msgs[-1] or "(190 events" in msgs[-1], msgs


def test_an_old_spool_is_migrated_with_its_backlog(tmp_path):
    import sqlite3

    p = tmp_path / "old.db"
    db = sqlite3.connect(str(p))
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
        "payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL)"
    )
    db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    db.execute("INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, 1, 0)", (C, b"c"))
    db.execute("INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, 1, 0)", (E, b"e"))
    db.execute("INSERT INTO meta VALUES ('dropped', 4)")
    db.commit()
    db.close()
    s = Spool(p, 2, "drop_oldest")
    assert s.depth() == 2 and s.dropped == 4
    s.put(E, b"e2")  # the old count is recognised as a count and goes first
    assert [r[2] for r in s.peek()] == [b"e", b"e2"]


def _status(site: str, device: str) -> dict:
    return {
        "schema_version": 1,
        "type": "status",
        "state": "online",
        "site": site,
        "device": device,
        "time": "2024-01-01T00:00:00.000Z",
    }


def _publisher(tmp_path, port: int, **kw):
    """A kiosk's publisher of site s, device d on 127.0.0.1:port, with a 10-message spool."""
    from edge.publish import MqttPublisher

    kw.setdefault("reconnect_max_s", 1)
    return MqttPublisher(
        host="127.0.0.1", port=port, site="s", device="d", spool=Spool(tmp_path / "spool.db", 10, "drop_oldest"), **kw
    )


def test_broker_away_events_kept_counts_dropped_and_reported(tmp_path, caplog):
    """Against a real mosquitto: the broker is down while 8 events and 30 counts windows arrive at a spool
    of 10; all 8 events reach the broker once it is back, the drops are logged and in the publisher's numbers."""
    import logging

    from test_daemon import Subscriber

    from conftest import Mosquitto, free_port

    caplog.set_level(logging.WARNING)
    broker = Mosquitto(tmp_path, port=free_port())  # not started yet
    pub = _publisher(tmp_path, broker.port)
    pub.start(_status("s", "d"))
    sent = []
    for i in range(30):
        pub.publish("counts", {"i": i})
        if i % 4 == 0 and len(sent) < 8:
            sent.append("ev%d" % i)
            pub.publish("events", {"event_id": "ev%d" % i})
    while len(sent) < 8:
        sent.append("ev-late%d" % len(sent))
        pub.publish("events", {"event_id": sent[-1]})
    assert pub.spool_dropped_by() == {"events": 0, "counts": 28}
    broker.start()
    sub = Subscriber(broker.host, broker.port)
    try:
        assert pub.connected.wait(15)
        assert pub.flush(15)
        assert sub.wait_for(lambda: {e["event_id"] for e in sub.of("events")} >= set(sent), timeout=15)
    finally:
        sub.close()
        pub.close()
        broker.stop()
    warnings = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert warnings and "28 counts in all" in warnings[-1], warnings


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_two_kiosks_with_one_client_id_are_told_and_back_off(tmp_path, mosquitto, caplog, protocol):
    """Against a real mosquitto: a second kiosk flashed with the first one's site/device (so the same client id)
    makes the broker drop whichever connected first, every time the other reconnects (mosquitto 2.0 closes the
    old connection without a reason the client sees, in MQTT 5 as in 3.1.1). Both say so in one error naming the client id, wait longer between reconnects instead of flapping every second, and lose no event."""
    import logging

    from test_daemon import Subscriber

    from edge.publish import MqttPublisher

    caplog.set_level(logging.WARNING)
    sub = Subscriber(mosquitto.host, mosquitto.port)
    pubs = []
    try:
        for name in ("a", "b"):
            pub = MqttPublisher(
                host=mosquitto.host,
                port=mosquitto.port,
                site="lobby",
                device="k1",
                spool=Spool(tmp_path / ("spool-%s.db" % name), 100, "drop_oldest"),
                reconnect_max_s=8,
                protocol=protocol,
            )
            pub.start(_status("lobby", "k1"))
            assert pub.connected.wait(10)
            pubs.append(pub)
            if name == "a":
                time.sleep(1.0)
                assert pub.takeovers == 0  # one kiosk alone: nothing to say
        sent = []
        for i in range(3):
            for name, pub in zip("ab", pubs):
                sent.append("%s%d" % (name, i))
                pub.publish("events", {"event_id": sent[-1]})
        assert sub.wait_for(lambda: {e["event_id"] for e in sub.of("events")} >= set(sent), timeout=60)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not all(p.takeovers for p in pubs):
            time.sleep(0.5)
        assert all(p.takeovers for p in pubs), [p.takeovers for p in pubs]
        assert all(p.min_delay >= 2 for p in pubs)  # backed off, not every second
    finally:
        for pub in pubs:
            pub.close()
        sub.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("'maskwatch-lobby-k1'" in e and "another client" in e for e in errors), errors


def test_a_broker_restart_is_no_takeover(tmp_path, caplog):
    """The control for the test above: a broker going away and coming back (a crash loop) drops the connection
    soon after each connect too; but reconnects fail while it is away, so that is not another kiosk, and nothing
    is said of one."""
    import logging

    from conftest import Mosquitto, free_port

    caplog.set_level(logging.WARNING)
    broker = Mosquitto(tmp_path, port=free_port()).start()
    pub = _publisher(tmp_path, broker.port)
    try:
        pub.start(_status("s", "d"))
        assert pub.connected.wait(10)
        for _ in range(4):  # four drops in a few seconds, each soon after a connect, as a takeover gives
            broker.stop()
            time.sleep(1.5)  # but the broker is away: a reconnect fails in between
            broker.start()
            assert pub.connected.wait(15)
            time.sleep(0.5)
        assert pub.connects >= 5 and pub.takeovers == 0
    finally:
        pub.close()
        broker.stop()
    assert not [r for r in caplog.records if "another client" in r.getMessage()]


def test_mqtt5_session_taken_over_is_a_takeover_at_once(tmp_path, caplog):
    """A broker that sends MQTT 5's DISCONNECT reason 142 (Session taken over) is believed at the first drop."""
    import logging

    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    caplog.set_level(logging.WARNING)
    pub = _publisher(tmp_path, 1, reconnect_max_s=30)
    pub._count_drop(time.monotonic(), ReasonCode(PacketTypes.DISCONNECT, identifier=149))  # packet too large
    assert pub.takeovers == 0
    pub._count_drop(time.monotonic(), ReasonCode(PacketTypes.DISCONNECT, identifier=142))
    assert pub.takeovers == 1 and pub.min_delay == 2
    assert [
        r for r in caplog.records if "session was taken over" in r.getMessage() and "'maskwatch-s-d'" in r.getMessage()
    ]
    pub.spool.close()


def test_a_spool_that_cannot_be_opened_is_one_line_and_a_damaged_one_is_kept(tmp_path):
    """Both were tracebacks (sqlite3.OperationalError / DatabaseError). A damaged spool may hold unsent events:
    it is named and left as it is, never replaced."""
    from edge.errors import ConfigError

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot open or create it .*give a path the service may write"):
        Spool(blocker / "spool.db")  # its folder would have to be inside a file
    damaged = tmp_path / "spool.db"
    damaged.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    before = damaged.read_bytes()
    with pytest.raises(ConfigError, match="not a spool this daemon can read .*move it aside"):
        Spool(damaged)
    assert damaged.read_bytes() == before


def test_a_spool_that_cannot_be_written_loses_no_event(tmp_path, caplog):
    """The spool's disk fills up (SQLite's own "database or disk is full", by PRAGMA max_page_count): events wait
    in memory, go straight to a real mosquitto while it is there, wait while it is away, and go into the spool
    again once it takes them; none is lost and the error is said once, not per event. Before, the first failed
    write raised out of publish() into the daemon (and Spool.put's ROLLBACK after SQLite's own one hid the cause)."""
    import logging

    from test_daemon import Subscriber

    from conftest import Mosquitto, free_port

    caplog.set_level(logging.INFO)
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker", port=free_port()).start()
    pub = _publisher(tmp_path, broker.port)
    spool = pub.spool
    sub = Subscriber(broker.host, broker.port)
    sent: List[str] = []

    def send(n: int) -> None:
        for _ in range(n):
            sent.append("ev%d" % len(sent))
            pub.publish("events", {"event_id": sent[-1], "pad": "x" * 3000})

    def arrived() -> bool:
        return {e["event_id"] for e in sub.of("events")} >= set(sent)

    try:
        pub.start(_status("s", "d"))
        assert pub.connected.wait(10)
        pages = spool.db.execute("PRAGMA page_count").fetchone()[0]
        spool.db.execute("PRAGMA max_page_count=%d" % pages)  # full (but for pages freed by delivered ones)
        send(5)
        assert sub.wait_for(arrived, timeout=15)  # straight to the broker
        broker.stop()
        send(3)  # neither spool nor broker: they wait in memory
        assert pub.spool_depth() >= 3
        broker.start()
        # all acknowledged by the broker (PUBACK: what the kiosk's "nothing lost" means); a subscriber that
        # reconnects after the restart may or may not be there in time to see them, so it is not asked
        assert pub.connected.wait(15) and pub.flush(20)
        sub.close()
        sub = Subscriber(broker.host, broker.port)
        spool.db.execute("PRAGMA max_page_count=1000000")  # space again
        send(2)
        assert sub.wait_for(lambda: {e["event_id"] for e in sub.of("events")} >= set(sent[8:]), timeout=15)
        assert pub.flush(10)
        assert not pub.unspooled and not pub.direct
    finally:
        sub.close()
        pub.close()
        broker.stop()
    said = [r.getMessage() for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(said) == 1 and "database or disk is full" in said[0], said
    assert not [r for r in caplog.records if "are lost" in r.getMessage()]
