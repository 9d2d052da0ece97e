"""edge-alerts (controlroom/alerts_cli.py and the modules it uses): payload checks, the monitor, and the real program against a real mosquitto.

The end-to-end tests run `edge-alerts` from this venv as a subprocess with --count/--timeout so they end
by themselves; devices are paho clients publishing payloads built with edge.messages.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
from controlroom_support import stats_payload
from test_broker import MqttProbe, broker_dir, device_event, script, shipped_broker, started  # noqa: F401

from controlroom import alerts_cli, common, payloads, terminal
from edge import messages

from conftest import BIN, ROOT, free_port, run_cli

pytest.importorskip("paho.mqtt.client")


# -- helpers -------------------------------------------------------------------------------------------------
class AlertsProc:
    """`edge-alerts ARGS` running in the background; its stdout/stderr lines collected as they come."""

    def __init__(self, args: List[Any], env: Optional[Dict[str, str]] = None) -> None:
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(
            [str(BIN / "edge-alerts")] + [str(a) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=e,
        )
        self.out: List[str] = []
        self.err: List[str] = []
        self.cond = threading.Condition()
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self.readers:
            t.start()

    def _read(self, stream, sink: List[str]) -> None:
        for line in stream:
            with self.cond:
                sink.append(line.rstrip("\n"))
                self.cond.notify_all()

    def json_lines(self) -> List[Dict[str, Any]]:
        with self.cond:
            return [json.loads(l) for l in self.out if l.startswith("{")]

    def wait_for(self, pred: Callable[[], bool], timeout: float = 15, what: str = "output") -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: pred() or self.proc.poll() is not None, timeout)
        if not pred():
            raise AssertionError(
                "edge-alerts: no %s (rc=%s, ok=%s)\nstdout:\n%s\nstderr:\n%s"
                % (what, self.proc.poll(), ok, "\n".join(self.out), "\n".join(self.err))
            )

    def wait_json(self, pred: Callable[[Dict[str, Any]], bool], n: int = 1, timeout: float = 15) -> None:
        self.wait_for(lambda: sum(1 for o in self._parsed() if pred(o)) >= n, timeout, "matching JSON line")

    def _parsed(self) -> List[Dict[str, Any]]:
        out = []
        for l in list(self.out):
            try:
                out.append(json.loads(l))
            except ValueError:
                pass
        return out

    def finish(self, timeout: float = 30) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                "edge-alerts did not end by itself\nstdout:\n%s\nstderr:\n%s"
                % ("\n".join(self.out), "\n".join(self.err))
            )
        for t in self.readers:
            t.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def procs():
    running: List[AlertsProc] = []
    yield running
    for p in running:
        p.kill()


def controlroom_args(b, user: str = "controlroom") -> List[Any]:
    return [
        "--host",
        "127.0.0.1",
        "--port",
        b.port,
        "--ca",
        b.ca,
        "--username",
        user,
        "--password-file",
        b.password_file(user),
    ]


def status(site: str, device: str, state: str = "online") -> Dict[str, Any]:
    return messages.status(
        state,
        site=site,
        device=device,
        t=time.time(),
        version="0.1.0",
        backend="litert",
        model_id="test-model",
        camera="ok",
    )


def counts(site: str, device: str, per: Dict[str, int]) -> Dict[str, Any]:
    from edge.types import Counts

    t = time.time()
    return messages.counts(
        Counts(t - 60, t, per), site=site, device=device, labels=("with_mask", "without_mask", "mask_weared_incorrect")
    )


def plain_probe(broker, client_id: str = "plain") -> MqttProbe:
    return MqttProbe(broker.port, client_id=client_id, tls=False, v5=False).start()


def monitor(*argv: str):
    args = alerts_cli.build_parser().parse_args(list(argv))
    alerts_cli.check_args(args)
    out, err = io.StringIO(), io.StringIO()
    return terminal.Monitor(args, out=out, err=err), out, err


def feed(mon, topic: str, payload) -> None:
    mon.on_message(topic, payload if isinstance(payload, bytes) else messages.dumps(payload))


# -- the module on its own --------------------------------------------------------------------------------
def test_one_protocol_module():
    import maskwatch_protocol

    # edge.messages and the control room use the one protocol module: no copies kept in step
    assert messages.SCHEMA_VERSION is maskwatch_protocol.SCHEMA_VERSION
    assert (
        payloads.KINDS is maskwatch_protocol.KIND_TYPES and terminal.NON_COMPLIANT is maskwatch_protocol.NON_COMPLIANT
    )
    assert set(maskwatch_protocol.KIND_TYPES) == set(messages.KINDS)


def test_needs_only_paho_and_the_standard_library():
    code = (
        "import sys, controlroom.alerts_cli; bad = [m for m in ('numpy', 'yaml', 'cv2', 'tensorflow') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(ROOT))


def test_python38_syntax():
    vermin = shutil.which("vermin") or str(BIN / "vermin")
    if not Path(vermin).exists():
        pytest.skip("vermin is not installed (pip install vermin)")
    p = subprocess.run(
        [vermin, "-t=3.8-", "--no-tips", "--violations", str(ROOT / "controlroom"), str(ROOT / "maskwatch_protocol")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_docs_match_the_generator():
    p = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_mqtt_docs.py"), "--check"], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr


ENGINES = ["jsonschema", "built-in"]


@pytest.fixture(params=ENGINES)
def checker(request):
    c = payloads.PayloadChecker(use_jsonschema=request.param == "jsonschema")
    assert c.engine == request.param
    return c


def test_real_payloads_pass(checker):
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_mqtt_docs
    finally:
        sys.path.pop(0)
    for kind, payload in gen_mqtt_docs._examples().items():  # the documented examples
        assert checker.parse(kind, messages.dumps(payload)) == (payload, None), kind
    ev = device_event("lobby", "k1")
    ev["snapshot_jpeg_b64"] = "/9j/4AAQSkZJRg=="
    assert checker.parse("events", messages.dumps(ev))[1] is None
    assert checker.parse("counts", messages.dumps(counts("a", "b", {})))[0]["compliance_rate"] is None


def _mutate(payload: Dict[str, Any], **changes) -> bytes:
    p = dict(payload)
    for k, v in changes.items():
        if v is KeyError:
            p.pop(k, None)
        else:
            p[k] = v
    return json.dumps(p).encode()


BAD_EVENTS = {
    "random bytes": bytes(random.Random(7).getrandbits(8) for _ in range(200)),
    "not utf-8": b'\xff\xfe{"schema_version": 1}',
    "empty": b"",
    "not json": b"hello",
    "json array": b"[1, 2, 3]",
    "json string": b'"event"',
    "json null": b"null",
    "deep nesting": b"[" * 100000 + b"]" * 100000,
    "NaN": messages.dumps(device_event("a", "b")).replace(b'"confidence":0.93', b'"confidence":NaN'),
    "schema_version 2": _mutate(device_event("a", "b"), schema_version=2),
    "schema_version string": _mutate(device_event("a", "b"), schema_version="1"),
    "schema_version true": _mutate(device_event("a", "b"), schema_version=True),
    "no schema_version": _mutate(device_event("a", "b"), schema_version=KeyError),
    "missing verdict": _mutate(device_event("a", "b"), verdict=KeyError),
    "unknown verdict": _mutate(device_event("a", "b"), verdict="masked"),
    "confidence > 1": _mutate(device_event("a", "b"), confidence=1.5),
    "confidence string": _mutate(device_event("a", "b"), confidence="high"),
    "bad event_id": _mutate(device_event("a", "b"), event_id="../../etc"),
    "box of 3": _mutate(device_event("a", "b"), box=[1, 2, 3]),
    "extra field": _mutate(device_event("a", "b"), shell="rm -rf /"),
    "compliant as int": _mutate(device_event("a", "b"), compliant=1),
    "track_id 0": _mutate(device_event("a", "b"), track_id=0),
    "wrong type": _mutate(device_event("a", "b"), type="status"),
}


@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
def test_bad_events_are_rejected_with_a_reason(checker, case):
    payload, why = checker.parse("events", BAD_EVENTS[case])
    assert payload is None and why, case
    assert len(why) < 400


def test_both_checkers_agree_on_random_mutations():
    js, mini = payloads.PayloadChecker(), payloads.PayloadChecker(use_jsonschema=False)
    rnd = random.Random(1)
    values = [
        None,
        True,
        False,
        0,
        1,
        -1,
        1.0,
        0.5,
        2,
        1e9,
        "",
        "x",
        "with_mask",
        "0" * 32,
        [],
        [1, 2, 3, 4],
        [1.5, 2, 3, 4],
        {},
        {"p50": 1, "p95": None},
        {"with_mask": 1, "without_mask": 0, "mask_weared_incorrect": 0},
    ]
    bases = {
        "events": device_event("a", "b"),
        "counts": counts("a", "b", {"with_mask": 3}),
        "status": status("a", "b"),
        "stats": messages.stats(
            site="a",
            device="b",
            t=0,
            fps=1.0,
            frames=1,
            dropped_frames=0,
            detector_runs=1,
            inference_ms={"p50": 1.0, "p95": 2.0},
            detect_ms={"p50": None, "p95": None},
            spool_depth=0,
            spool_dropped=0,
            backend="x",
        ),
    }
    accepted = rejected = 0
    for _i in range(1500):
        kind = rnd.choice(sorted(bases))
        p = json.loads(json.dumps(bases[kind]))
        for _ in range(rnd.randint(1, 2)):
            key = rnd.choice(sorted(p) + ["extra"])
            if rnd.random() < 0.15:
                p.pop(key, None)
            else:
                p[key] = rnd.choice(values)
        a, b = js.check(kind, p), mini.check(kind, p)
        assert (a is None) == (b is None), (kind, p, a, b)
        accepted += a is None
        rejected += a is not None
    assert accepted > 50 and rejected > 500


# -- the monitor (no broker) -------------------------------------------------------------------------------
def test_monitor_deduplicates_and_filters():
    mon, out, err = monitor("--json", "--site", "lobby", "--verdict", "without_mask,with_mask")
    ev = device_event("lobby", "k1")
    for _ in range(3):
        feed(mon, "maskwatch/lobby/k1/events", ev)
    feed(mon, "maskwatch/lobby/k1/events", device_event("lobby", "k1", label="mask_weared_incorrect"))
    feed(mon, "maskwatch/lobby/k2/events", device_event("lobby", "k2", label="with_mask"))
    feed(mon, "maskwatch/garage/k1/events", device_event("garage", "k1"))
    lines = [json.loads(l) for l in out.getvalue().splitlines()]
    assert [(l["site"], l["device"], l["payload"]["verdict"]) for l in lines] == [
        ("lobby", "k1", "without_mask"),
        ("lobby", "k2", "with_mask"),
    ]
    assert lines[0]["payload"] == ev and lines[0]["alert"] is True and lines[1]["alert"] is False
    t = mon.totals()
    assert (t["events"], t["duplicates"], t["filtered"], t["accepted_events"], t["alerts"]) == (3, 2, 1, 2, 2)
    assert err.getvalue() == ""


def test_monitor_trusts_the_topic_and_sanitises_the_terminal():
    mon, out, err = monitor("--all-events")
    feed(mon, "maskwatch/lobby/k1/events", device_event("lobby", "k2"))  # claims another device
    assert out.getvalue() == "" and "claims to be from lobby/k2" in err.getvalue()
    evil = "\x1b]0;pwned\x07\x1b[2J"
    feed(mon, "maskwatch/%s/k1/events" % evil, device_event(evil, "k1"))
    feed(mon, "maskwatch/%s/k1/status" % evil, status(evil, "k1"))
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "ALERT" in out.getvalue() and "STATUS" in out.getvalue()
    mon.summary(final=True)
    assert "\x1b" not in out.getvalue()


def test_monitor_names_two_kiosks_reporting_as_one_not_a_restart():
    """Stats from processes started at two times that take turns are two kiosks under one name: said once (and
    not again within TWINS_REPEAT_S); a restart (a new start, once) is not."""

    for json_out in (False, True):
        mon, out, err = monitor(*(["--json"] if json_out else []))
        t0 = time.time()
        for i, up in enumerate([600.0, 610.0, 5.0, 15.0]):  # k1 restarts once
            mon.on_message(
                "maskwatch/lobby/k1/stats",
                messages.dumps(stats_payload("lobby", "k1", t0 + 10 * i, uptime_s=up)),
                received=t0 + 10 * i + 0.01,  # the kiosk's clock in step with this machine's
            )
        assert "two kiosks" not in out.getvalue()
        for i in range(5):  # two processes under k2 (started at t0 - 600 and t0 + 10), taking turns
            up = 600.0 + 20 * i if i % 2 == 0 else 20 * i - 10.0
            mon.on_message(
                "maskwatch/lobby/k2/stats",
                messages.dumps(stats_payload("lobby", "k2", t0 + 20 * i, uptime_s=up)),
                received=t0 + 20 * i + 0.01,
            )
        text = out.getvalue()
        assert text.count("two kiosks report as lobby/k2") == 1 and "CLOCK" not in text and '"clock"' not in text, text
        if json_out:
            assert json.loads(text.splitlines()[-1])["kind"] == "twins"
        else:
            assert "TWINS" in text and "own device name" in text
        assert err.getvalue() == ""


def test_a_kiosk_that_turns_degraded_while_online_is_said_and_so_is_its_recovery():
    from edge.facesize import small_faces_degraded

    mon, out, err = monitor()
    feed(mon, "maskwatch/lobby/k1/status", status("lobby", "k1"))
    feed(mon, "maskwatch/lobby/k1/status", status("lobby", "k1"))  # the same again: nothing new to say
    assert out.getvalue().count("STATUS") == 1
    far = dict(status("lobby", "k1"), degraded=[small_faces_degraded(32, [24, 27, 29])])
    feed(mon, "maskwatch/lobby/k1/status", far)
    feed(mon, "maskwatch/lobby/k1/status", far)
    lines = [line for line in out.getvalue().splitlines() if "STATUS" in line]
    assert len(lines) == 2 and "online" in lines[1], lines
    # the whole reason, with what to do at its end
    assert "faces too small for a verdict" in lines[1] and "set detector.roi to the doorway" in lines[1]
    feed(mon, "maskwatch/lobby/k1/status", status("lobby", "k1"))
    lines = [line for line in out.getvalue().splitlines() if "STATUS" in line]
    assert len(lines) == 3 and "no longer degraded" in lines[2] and err.getvalue() == ""


def test_a_kiosk_clock_off_this_machines_is_said_once_and_so_is_its_return():
    from controlroom_support import stats_payload

    mon, out, err = monitor()
    now = time.time()
    feed(mon, "maskwatch/lobby/k1/stats", stats_payload("lobby", "k1", t=now - 7200))
    feed(mon, "maskwatch/lobby/k1/stats", stats_payload("lobby", "k1", t=now - 7170))
    lines = [line for line in out.getvalue().splitlines() if "CLOCK" in line]
    assert len(lines) == 1 and "lobby/k1" in lines[0] and "2 h behind" in lines[0], lines
    feed(mon, "maskwatch/lobby/k1/stats", stats_payload("lobby", "k1"))  # NTP caught up
    lines = [line for line in out.getvalue().splitlines() if "CLOCK" in line]
    assert len(lines) == 2 and "back in step" in lines[1] and err.getvalue() == ""
    mon, out, err = monitor("--json")
    feed(mon, "maskwatch/lobby/k2/stats", stats_payload("lobby", "k2", t=now + 600))
    rec = [json.loads(x) for x in out.getvalue().splitlines() if '"clock"' in x]
    assert len(rec) == 1 and rec[0]["off"] is True and "10 min ahead of" in rec[0]["why"], rec


def test_clock_offsets_read_as_a_person_reads_them():
    import maskwatch_protocol as proto

    assert [proto.span(x) for x in (5, 61, 3600, 11520, 90000, 3 * 86400)] == [
        "5 s",
        "1 min",
        "1 h",
        "3 h 12 min",
        "1 d 1 h",
        "3 d",
    ]
    assert proto.clock_why(proto.CLOCK_SKEW_WARN_S - 1) is None and proto.clock_why(None) is None
    assert proto.stats_time({"time": "2024-05-01T12:00:00.000Z"}) == 1714564800.0
    assert proto.stats_time({"ts": 5.0, "time": "2024-05-01T12:00:00.000Z"}) == 5.0


def test_monitor_live_view_and_summary():
    mon, out, err = monitor("--bell")
    feed(mon, "maskwatch/lobby/k1/status", status("lobby", "k1"))
    feed(mon, "maskwatch/lobby/k2/status", status("lobby", "k2", "offline"))
    feed(
        mon,
        "maskwatch/lobby/k1/counts",
        counts("lobby", "k1", {"with_mask": 42, "without_mask": 6, "mask_weared_incorrect": 2}),
    )
    feed(
        mon,
        "maskwatch/lobby/k2/counts",
        counts("lobby", "k2", {"with_mask": 8, "without_mask": 2, "mask_weared_incorrect": 0}),
    )
    feed(mon, "maskwatch/lobby/k1/events", device_event("lobby", "k1", label="with_mask"))
    feed(mon, "maskwatch/lobby/k1/events", device_event("lobby", "k1", label="without_mask"))
    feed(mon, "maskwatch/lobby/k1/stats", b"junk")
    feed(mon, "maskwatch/lobby/k2/status", b"")  # cleared retained status: k2 was retired
    text = out.getvalue()
    assert text.count("\a") == 1
    assert text.count("ALERT") == 1 and "with_mask " not in text
    assert "STATUS lobby/k1" in text and "online" in text and "offline" in text
    mon.summary(final=True)
    table = out.getvalue()[len(text) :]
    assert "final summary" in table and "lobby/k1" in table and "84.0%" in table and "80.0%" in table
    assert "83.3%" in table  # all devices: 50 of 60 people compliant
    assert "1 malformed" in table
    row = [l for l in table.splitlines() if l.startswith("lobby/k1")][0].split()
    assert row[1] == "online" and row[3:5] == ["2", "1"]
    assert "junk" not in err.getvalue() and "lobby/k1/stats: payload is not valid JSON" in err.getvalue()


def test_warnings_are_rate_limited():
    err = io.StringIO()
    w = common.Warner(err, burst=5, rate=0.0001)
    for i in range(20):
        w("bad %d" % i)
    assert len(err.getvalue().splitlines()) == 5 and w.suppressed == 15


# -- the program against a real broker ---------------------------------------------------------------------
def test_json_end_to_end_through_the_shipped_broker(shipped_broker, procs):
    b = shipped_broker
    k1, k2 = started(b, "lobby.k1"), started(b, "lobby.k2")
    assert not k1.publish("maskwatch/lobby/k1/status", status("lobby", "k1"), retain=True).is_failure
    p = AlertsProc(controlroom_args(b) + ["--json", "--all-events", "--count", 6, "--timeout", 30])
    procs.append(p)
    p.wait_json(lambda o: o["kind"] == "status")
    c = counts("lobby", "k1", {"with_mask": 9, "without_mask": 1, "mask_weared_incorrect": 0})
    assert not k1.publish("maskwatch/lobby/k1/counts", c).is_failure
    sent = [
        device_event("lobby", "k1", label=l)
        for l in ("without_mask", "with_mask", "mask_weared_incorrect", "with_mask")
    ]
    k1.publish("maskwatch/lobby/k1/events", sent[0])
    k1.publish("maskwatch/lobby/k1/events", sent[0])  # at-least-once: the same event again
    for ev in sent[1:]:
        k1.publish("maskwatch/lobby/k1/events", ev)
    for label in ("without_mask", "with_mask"):
        ev = device_event("lobby", "k2", label=label)
        sent.append(ev)
        k2.publish("maskwatch/lobby/k2/events", ev)
    k2.publish("maskwatch/lobby/k1/events", device_event("lobby", "k1"))  # forged: the ACL drops it
    assert p.finish() == 0, "\n".join(p.err)
    lines = p.json_lines()
    events = [l for l in lines if l["kind"] == "event"]
    assert sorted(e["payload"]["event_id"] for e in events) == sorted(e["event_id"] for e in sent)
    for e in events:
        assert e["topic"] == "maskwatch/%s/%s/events" % (e["site"], e["device"])
        assert e["payload"] == [s for s in sent if s["event_id"] == e["payload"]["event_id"]][0]
        assert e["alert"] == (e["payload"]["verdict"] != "with_mask")
        assert e["received_ts"] >= e["payload"]["ts"] - 1
    st = [l for l in lines if l["kind"] == "status"]
    assert st[0]["retained"] is True and st[0]["payload"]["state"] == "online"
    assert [l["payload"] for l in lines if l["kind"] == "counts"] == [c]
    final = lines[-1]
    assert final["kind"] == "summary" and final["final"] is True
    assert final["totals"]["events"] == 6 and final["totals"]["duplicates"] == 1
    assert final["totals"]["malformed"] == 0 and final["totals"]["alerts"] == 3
    devs = {(d["site"], d["device"]): d for d in final["devices"]}
    assert devs[("lobby", "k1")]["compliance_rate"] == 0.9 and devs[("lobby", "k1")]["state"] == "online"
    assert devs[("lobby", "k2")]["events"] == 2
    assert not [l for l in p.err if "Traceback" in l]


def test_a_kiosk_configured_from_add_device_reaches_the_control_room(shipped_broker, procs, tmp_path):
    """The device-side publisher (edge/publish.py) with the config add-device.sh printed, through the shipped broker."""
    from edge.config import load_config, mqtt_password
    from edge.publish import MqttPublisher
    from edge.spool import Spool

    b = shipped_broker
    kiosk = tmp_path / "kiosk"
    snippet = script("add-device.sh", "-d", b.dir, "-H", "127.0.0.1", "--kiosk-dir", kiosk, "lobby", "k1").stdout
    kiosk.mkdir()
    shutil.copy(b.password_file("lobby.k1"), kiosk / "mqtt-password")
    shutil.copy(b.ca, kiosk / "broker-ca.crt")
    (tmp_path / "kiosk.yaml").write_text(snippet + "source:\n  url: entrance.mp4\n")
    cfg = load_config(tmp_path / "kiosk.yaml")
    m = cfg.mqtt
    p = AlertsProc(controlroom_args(b) + ["--json", "--timeout", 30])
    procs.append(p)
    time.sleep(1.0)  # no retained status yet to wait for: give it time to subscribe
    pub = MqttPublisher(
        host=m.host,
        port=b.port,
        site=cfg.site,
        device=cfg.device,
        spool=Spool(tmp_path / "spool.db"),
        username=m.username,
        password=mqtt_password(cfg),
        tls=m.tls,
        protocol=m.protocol,
    )
    pub.start(status("lobby", "k1"))
    assert pub.connected.wait(15), pub.last_error
    ev = device_event("lobby", "k1")
    pub.publish("events", ev)
    assert pub.flush(15)
    pub.close(final_status=status("lobby", "k1", "stopped"))
    p.wait_json(lambda o: o["kind"] == "status" and o["payload"]["state"] == "stopped")
    p.proc.send_signal(signal.SIGTERM)
    assert p.finish() == 0
    lines = p.json_lines()
    assert [l["payload"]["state"] for l in lines if l["kind"] == "status"] == ["online", "stopped"]
    assert [l["payload"] for l in lines if l["kind"] == "event"] == [ev]
    assert lines[-1]["kind"] == "summary" and lines[-1]["final"]


FUZZ_TOPIC = "maskwatch/fz/d1/events"


def _fuzz_messages() -> List[tuple]:
    big = device_event("fz", "d1")
    big["snapshot_jpeg_b64"] = "A" * (1 << 20)
    msgs = [(FUZZ_TOPIC, v) for k, v in sorted(BAD_EVENTS.items())]
    msgs += [
        (FUZZ_TOPIC, messages.dumps(big)),  # 1 MB
        (FUZZ_TOPIC, messages.dumps(device_event("other", "d1"))),  # claims another site
        ("maskwatch/fz/d1/status", messages.dumps(dict(status("fz", "d1"), state="exploded"))),
        ("maskwatch/fz/d1/status", bytes(range(256))),
        ("maskwatch/fz/d1/counts", messages.dumps(dict(counts("fz", "d1", {"with_mask": 1}), compliance_rate=2))),
        ("maskwatch/fz/d1/counts", b"[]"),
        ("maskwatch/fz/d1/stats", b"\x00\x01"),
        ("maskwatch/fz/d1/video", b"{}"),
        ("maskwatch/fz/d1/events/extra", messages.dumps(device_event("fz", "d1"))),
        ("maskwatch/fz/events", b"{}"),
    ]
    return msgs


@pytest.mark.parametrize("engine,protocol", [("jsonschema", "3.1.1"), ("built-in", "5")])
def test_fuzz_never_crashes_it_and_valid_events_still_arrive(mosquitto, procs, engine, protocol):
    dev = plain_probe(mosquitto)
    dev.publish("maskwatch/fz/d1/status", status("fz", "d1"), retain=True)
    args = [
        "--host",
        "127.0.0.1",
        "--port",
        mosquitto.port,
        "--json",
        "--all-events",
        "--count",
        2,
        "--timeout",
        60,
        "--protocol",
        protocol,
    ]
    if engine == "built-in":
        args.append("--no-jsonschema")
    p = AlertsProc(args)
    procs.append(p)
    p.wait_json(lambda o: o["kind"] == "status")
    bad = _fuzz_messages()
    for topic, payload in bad:
        dev.publish(topic, payload)
    good = [device_event("fz", "d1"), device_event("fz", "d1", label="with_mask")]
    for ev in good:
        dev.publish(FUZZ_TOPIC, ev)
    try:
        assert p.finish(60) == 0, "\n".join(p.err)
    finally:
        dev.stop()
    lines = p.json_lines()
    assert [l["payload"] for l in lines if l["kind"] == "event"] == good
    final = lines[-1]
    assert final["totals"]["malformed"] == len(bad), final
    assert final["totals"]["validator"] == engine
    warnings = [l for l in p.err if l.startswith("edge-alerts: warning: ")]
    assert len(warnings) == len(bad), "\n".join(p.err)
    assert not [l for l in p.err if not l.startswith("edge-alerts: warning: ")], "\n".join(p.err)
    assert any("too large" in w for w in warnings) and any("not UTF-8" in w for w in warnings)
    assert any("schema_version 2" in w for w in warnings)
    assert all(len(w) < 600 for w in warnings)


def test_live_view_end_to_end(mosquitto, procs):
    dev = plain_probe(mosquitto)
    dev.publish("maskwatch/lobby/k1/status", status("lobby", "k1"), retain=True)
    p = AlertsProc(
        ["--host", "127.0.0.1", "--port", mosquitto.port, "--count", 2, "--timeout", 30, "--bell", "--summary-s", 0.3]
    )
    procs.append(p)
    p.wait_for(lambda: any("STATUS" in l for l in p.out))
    dev.publish(
        "maskwatch/lobby/k1/counts",
        counts("lobby", "k1", {"with_mask": 3, "without_mask": 1, "mask_weared_incorrect": 0}),
    )
    p.wait_for(lambda: any("75.0%" in l for l in p.out), what="a summary with the counts")
    for label in ("without_mask", "with_mask", "mask_weared_incorrect"):
        dev.publish("maskwatch/lobby/k1/events", device_event("lobby", "k1", label=label))
    try:
        assert p.finish() == 0, "\n".join(p.err)
    finally:
        dev.stop()
    text = "\n".join(p.out)
    alerts_ = [l for l in p.out if "  ALERT " in l]
    assert len(alerts_) == 2 and "without_mask" in alerts_[0] and "mask_weared_incorrect" in alerts_[1]
    assert "lobby/k1" in alerts_[0] and "0.93" in alerts_[0]
    assert text.count("\a") == 2
    assert "final summary" in text and p.err == []


def test_exec_hook_gets_each_alert(mosquitto, procs, tmp_path):
    hook = tmp_path / "hook.py"
    hook.write_text(
        "import json, os, sys\n"
        "data = sys.stdin.read()\n"
        "e = json.loads(data)\n"
        "out = {'payload': e, 'env': {k: v for k, v in os.environ.items() if k.startswith('MASKWATCH_')}}\n"
        "open(os.path.join(sys.argv[1], e['event_id'] + '.json'), 'w').write(json.dumps(out))\n"
    )
    outdir = tmp_path / "hooked"
    outdir.mkdir()
    dev = plain_probe(mosquitto)
    dev.publish("maskwatch/lobby/k1/status", status("lobby", "k1"), retain=True)
    p = AlertsProc(
        [
            "--host",
            "127.0.0.1",
            "--port",
            mosquitto.port,
            "--json",
            "--all-events",
            "--count",
            3,
            "--timeout",
            30,
            "--exec",
            "%s %s %s" % (sys.executable, hook, outdir),
        ]
    )
    procs.append(p)
    p.wait_json(lambda o: o["kind"] == "status")
    sent = [device_event("lobby", "k1", label=l) for l in ("without_mask", "with_mask", "mask_weared_incorrect")]
    for ev in sent:
        dev.publish("maskwatch/lobby/k1/events", ev)
    dev.stop()
    assert p.finish() == 0, "\n".join(p.err)
    got = {f.stem: json.loads(f.read_text()) for f in outdir.glob("*.json")}
    assert sorted(got) == sorted(e["event_id"] for e in sent if e["verdict"] != "with_mask")
    for e in sent:
        if e["event_id"] in got:
            assert got[e["event_id"]]["payload"] == e
            env = got[e["event_id"]]["env"]
            assert env["MASKWATCH_SITE"] == "lobby" and env["MASKWATCH_DEVICE"] == "k1"
            assert env["MASKWATCH_VERDICT"] == e["verdict"] and env["MASKWATCH_EVENT_ID"] == e["event_id"]
    assert p.json_lines()[-1]["totals"]["exec"] == {"run": 2, "failed": 0, "dropped": 0}


def test_a_slow_hook_never_stalls_the_mqtt_loop(mosquitto, procs):
    dev = plain_probe(mosquitto)
    dev.publish("maskwatch/lobby/k1/status", status("lobby", "k1"), retain=True)
    p = AlertsProc(
        [
            "--host",
            "127.0.0.1",
            "--port",
            mosquitto.port,
            "--json",
            "--count",
            6,
            "--timeout",
            30,
            "--exec",
            "sleep 30",
            "--exec-jobs",
            1,
            "--exec-queue",
            1,
            "--exec-timeout",
            1,
        ]
    )
    procs.append(p)
    p.wait_json(lambda o: o["kind"] == "status")
    t0 = time.monotonic()
    for _ in range(6):
        dev.publish("maskwatch/lobby/k1/events", device_event("lobby", "k1"))
    p.wait_json(lambda o: o["kind"] == "event", n=6, timeout=10)
    assert time.monotonic() - t0 < 3.0  # not 6 x the hook's time
    assert p.finish() == 0
    dev.stop()
    ex = p.json_lines()[-1]["totals"]["exec"]
    assert ex["dropped"] >= 3 and ex["run"] + ex["dropped"] == 6 and ex["failed"] == ex["run"], ex
    assert any("busy" in l for l in p.err) and any("killed" in l for l in p.err)


def test_shared_subscription_splits_the_load_between_two_consumers(shipped_broker, procs):
    b = shipped_broker
    k1 = started(b, "lobby.k1")
    k1.publish("maskwatch/lobby/k1/status", status("lobby", "k1"), retain=True)
    group = []
    for i in range(2):
        p = AlertsProc(
            controlroom_args(b, ("controlroom", "controlroom2")[i])
            + ["--share", "screens", "--json", "--all-events", "--timeout", 30]
        )
        procs.append(p)
        group.append(p)
    for p in group:  # status stays a plain subscription: each member gets the retained state
        p.wait_json(lambda o: o["kind"] == "status")
    sent = []
    for i in range(20):
        ev = device_event("lobby", "k1", track_id=i + 1)
        sent.append(ev["event_id"])
        k1.publish("maskwatch/lobby/k1/events", ev)

    def n_events():
        return sum(1 for p in group for o in p._parsed() if o.get("kind") == "event")

    deadline = time.monotonic() + 15
    while n_events() < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in group:
        p.proc.send_signal(signal.SIGTERM)
    for p in group:
        assert p.finish() == 0, "\n".join(p.err)
    got = [[o["payload"]["event_id"] for o in p.json_lines() if o["kind"] == "event"] for p in group]
    assert sorted(got[0] + got[1]) == sorted(sent)
    assert got[0] and got[1]


@pytest.mark.parametrize(
    "case",
    ["refused", "dns", "no-ca", "anonymous", "wrong-password", "plain-on-tls", "missing-password-file", "bad-ca-file"],
)
def test_cannot_connect_or_log_in_is_one_clear_line(shipped_broker, case, tmp_path):
    b = shipped_broker
    base = ["--host", "127.0.0.1", "--port", b.port, "--timeout", 5]
    args = {
        "refused": ["--host", "127.0.0.1", "--port", free_port(), "--timeout", 5],
        "dns": ["--host", "no-such-broker.invalid", "--timeout", 5],
        "no-ca": base + ["--tls", "--username", "controlroom", "--password-file", b.password_file("controlroom")],
        "anonymous": base + ["--ca", b.ca],
        "wrong-password": base + ["--ca", b.ca, "--username", "controlroom", "--password", "nope"],
        "plain-on-tls": base + ["--username", "controlroom", "--password-file", b.password_file("controlroom")],
        "missing-password-file": base
        + ["--ca", b.ca, "--username", "controlroom", "--password-file", tmp_path / "nope"],
        "bad-ca-file": base + ["--ca", tmp_path / "nope.crt"],
    }[case]
    expect = {
        "refused": "cannot connect to broker 127.0.0.1:%d (connection refused)" % args[3],
        "dns": "cannot resolve the broker host 'no-such-broker.invalid'",
        "no-ca": "is not trusted",
        "anonymous": "broker 127.0.0.1:%d refused the login (Not authorized)" % b.port,
        "wrong-password": "broker 127.0.0.1:%d refused the login (" % b.port,
        "plain-on-tls": "closed the connection before answering the login",
        "missing-password-file": "cannot read --password-file",
        "bad-ca-file": "not found",
    }[case]
    t0 = time.monotonic()
    r = run_cli(["edge-alerts"] + args, timeout=30)
    assert r.returncode in (1, 2), (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-alerts: error: "), r.stderr
    assert expect in lines[0], lines[0]
    assert r.stdout == ""
    assert time.monotonic() - t0 < 15


def test_password_from_the_environment(shipped_broker):
    b = shipped_broker
    r = run_cli(
        [
            "edge-alerts",
            "--host",
            "127.0.0.1",
            "--port",
            b.port,
            "--ca",
            b.ca,
            "--username",
            "controlroom",
            "--timeout",
            0.5,
            "--json",
        ],
        env={"MASKWATCH_MQTT_PASSWORD": b.password("controlroom")},
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["kind"] == "summary"


def test_timeout_before_count_exits_3(mosquitto):
    r = run_cli(
        ["edge-alerts", "--port", mosquitto.port, "--host", "127.0.0.1", "--count", 3, "--timeout", 0.5], timeout=30
    )
    assert r.returncode == 3 and "--timeout 0.5 s expired after 0 of --count 3 events" in r.stderr
    r = run_cli(["edge-alerts", "--port", mosquitto.port, "--host", "127.0.0.1", "--timeout", 0.5], timeout=30)
    assert r.returncode == 0 and "final summary" in r.stdout


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["--share", "g", "--protocol", "3.1.1"], "--share needs MQTT 5"),
        (["--site", "a/b"], "one topic level"),
        (["--verdict", "masked"], "--verdict 'masked'"),
        (["--persistent"], "--persistent needs a fixed --client-id"),
        (["--exec", "no-such-command-xyz"], "command not found"),
        (["--password", "x"], "a password needs --username"),
        (["--count", "0"], "--count must be at least 1"),
    ],
)
def test_usage_errors(argv, msg):
    r = run_cli(["edge-alerts"] + argv, timeout=30, env={"MASKWATCH_MQTT_USERNAME": ""})
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_persistent_session_gets_what_was_sent_while_it_was_away(mosquitto, protocol):
    base = [
        "edge-alerts",
        "--host",
        "127.0.0.1",
        "--port",
        mosquitto.port,
        "--protocol",
        protocol,
        "--client-id",
        "controlroom-persist-%s" % protocol,
        "--persistent",
    ]
    r = run_cli(base + ["--timeout", 0.5], timeout=30)  # subscribe once, then go away
    assert r.returncode == 0, r.stderr
    dev = plain_probe(mosquitto)
    sent = [device_event("lobby", "k1"), device_event("lobby", "k1", label="mask_weared_incorrect")]
    for ev in sent:
        dev.publish("maskwatch/lobby/k1/events", ev)
    dev.stop()
    r = run_cli(base + ["--json", "--count", 2, "--timeout", 15], timeout=30)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    assert [l["payload"] for l in lines if l["kind"] == "event"] == sent


def test_stdout_closed_early_is_not_an_error(mosquitto):
    dev = plain_probe(mosquitto)
    for i in range(3):
        dev.publish("maskwatch/lobby/k%d/status" % i, status("lobby", "k%d" % i), retain=True)
    dev.stop()
    cmd = "%s --host 127.0.0.1 --port %d --json --timeout 5 | head -n 1" % (BIN / "edge-alerts", mosquitto.port)
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=30)
    assert json.loads(r.stdout)["kind"] == "status"
    assert "Traceback" not in r.stderr and "Broken pipe" not in r.stderr, r.stderr


def test_ha_discovery_configs_point_at_the_kiosk_topics():
    mon, out, err = monitor("--ha-discovery")
    published = []
    mon.publish = lambda topic, body: published.append((topic, json.loads(body)))
    feed(mon, "maskwatch/lobby/k1/status", status("lobby", "k1"))
    feed(mon, "maskwatch/lobby/k1/status", status("lobby", "k1"))  # unchanged: not announced again
    topics = [t for t, _ in published]
    assert len(topics) == len(set(topics)) == 5
    assert "homeassistant/binary_sensor/maskwatch_lobby_k1/online/config" in topics
    for t, cfg in published:
        assert t.startswith("homeassistant/") and t.endswith("/config")
        assert cfg["device"]["identifiers"] == ["maskwatch_lobby_k1"]
        assert cfg["unique_id"].startswith("maskwatch_lobby_k1_")
        assert cfg["state_topic"].startswith("maskwatch/lobby/k1/")
    assert mon.totals()["ha_discovery_published"] == 5


def test_ha_discovery_through_the_shipped_broker(shipped_broker):
    b = shipped_broker
    out = script("add-controlroom.sh", "-d", b.dir, "-H", "127.0.0.1", "--ha", "homeassistant").stdout
    assert "--ha-discovery" in out
    b.mosquitto.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    k1 = started(b, "lobby.k1")
    k1.publish("maskwatch/lobby/k1/status", status("lobby", "k1"), retain=True)
    base = [
        "edge-alerts",
        "--host",
        "127.0.0.1",
        "--port",
        b.port,
        "--ca",
        b.ca,
        "--protocol",
        "5",
        "--ha-discovery",
        "--json",
        "--timeout",
        2,
    ]
    # the read-only control room may not: one clear warning, no crash
    r = run_cli(base + ["--username", "controlroom", "--password-file", b.password_file("controlroom")], timeout=30)
    assert r.returncode == 0 and "refused the Home Assistant discovery messages (Not authorized)" in r.stderr
    r = run_cli(base + ["--username", "homeassistant", "--password-file", b.password_file("homeassistant")], timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    ha = started(b, "homeassistant")  # Home Assistant's own account reads the retained configs
    ha.subscribe("homeassistant/#")
    msgs = ha.wait_messages(5)
    assert len(msgs) == 5 and all(m[2] for m in msgs)
    assert json.loads(msgs[0][1])["device"]["name"] == "maskwatch lobby/k1"
    ha.subscribe("maskwatch/#")
    assert any(m[0] == "maskwatch/lobby/k1/status" for m in ha.wait_messages(6))
    assert ha.publish("maskwatch/lobby/k1/status", b"x").value == 135  # it cannot write there


def test_keeps_going_across_a_broker_restart(mosquitto, procs):
    p = AlertsProc(
        ["--host", "127.0.0.1", "--port", mosquitto.port, "--json", "--all-events", "--count", 2, "--timeout", 60]
    )
    procs.append(p)
    dev = plain_probe(mosquitto)
    dev.publish("maskwatch/lobby/k1/status", status("lobby", "k1"), retain=True)
    p.wait_json(lambda o: o["kind"] == "status")
    first = device_event("lobby", "k1")
    dev.publish("maskwatch/lobby/k1/events", first)
    p.wait_json(lambda o: o["kind"] == "event")
    dev.stop()
    mosquitto.stop()
    p.wait_for(lambda: any("lost the connection" in l for l in p.err), what="a warning about the lost broker")
    mosquitto.start()
    dev = plain_probe(mosquitto, client_id="plain-2")
    dev.publish("maskwatch/lobby/k1/status", status("lobby", "k1"), retain=True)
    p.wait_json(lambda o: o["kind"] == "status", n=2, timeout=30)  # re-subscribed after reconnecting
    second = device_event("lobby", "k1", label="with_mask")
    dev.publish("maskwatch/lobby/k1/events", second)
    dev.stop()
    assert p.finish() == 0, "\n".join(p.err)
    assert [o["payload"] for o in p.json_lines() if o["kind"] == "event"] == [first, second]
    assert any("reconnected" in l for l in p.err)


def test_real_daemon_events_reach_edge_alerts_through_the_shipped_broker(
    shipped_broker, procs, tmp_path, demo_clip, detector_dir
):
    """edge-maskd run (the real pipeline on the demo clip), configured with add-device.sh's snippet, over TLS
    with its own account and the shipped ACL, to `edge-alerts --json` logged in as the control room."""
    b = shipped_broker
    kiosk = tmp_path / "kiosk"
    snippet = script(
        "add-device.sh", "-d", b.dir, "-H", "127.0.0.1", "-p", str(b.port), "--kiosk-dir", kiosk, "lobby", "k1"
    ).stdout
    kiosk.mkdir()
    shutil.copy(b.password_file("lobby.k1"), kiosk / "mqtt-password")
    shutil.copy(b.ca, kiosk / "broker-ca.crt")
    (tmp_path / "kiosk.yaml").write_text(
        snippet + "state_dir: %s\nsource:\n  url: %s\ndetector:\n  min_face_px: 40\n" % (tmp_path / "state", demo_clip)
    )
    p = AlertsProc(controlroom_args(b) + ["--json", "--all-events", "--timeout", 120])
    procs.append(p)
    time.sleep(1.0)
    r = run_cli(["edge-maskd", "run", "--config", tmp_path / "kiosk.yaml"], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    p.wait_json(lambda o: o["kind"] == "status" and o["payload"]["state"] == "stopped", timeout=30)
    p.proc.send_signal(signal.SIGTERM)
    assert p.finish() == 0
    lines = p.json_lines()
    events = [l["payload"] for l in lines if l["kind"] == "event"]
    assert len(events) == 3 and {e["device"] for e in events} == {"k1"}
    assert len({e["event_id"] for e in events}) == 3
    assert any(l["kind"] == "counts" and l["payload"]["total"] == 3 for l in lines)
