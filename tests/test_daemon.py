"""The daemon end to end: generated clip -> res10 -> int8 classifier -> tracker -> real mosquitto -> subscriber."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import ROOT, run_cli

SCHEMAS = ROOT / "maskwatch_protocol" / "schemas"


def schema(kind: str) -> Dict:
    return json.loads((SCHEMAS / ("%s.schema.json" % kind)).read_text())


class Subscriber:
    """A real paho-mqtt 2 client collecting every message under maskwatch/#."""

    def __init__(self, host: str, port: int, topic: str = "maskwatch/#") -> None:
        import paho.mqtt.client as mqtt

        self.messages: List[tuple] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub-%d" % time.time_ns())

        def on_connect(c, u, f, rc, p=None):
            c.subscribe(topic, qos=1)

        def on_subscribe(c, u, mid, rcs, p=None):
            self.ready.set()

        def on_message(c, u, msg):
            with self.lock:
                self.messages.append((msg.topic, msg.payload, msg.retain))

        self.client.on_connect, self.client.on_subscribe, self.client.on_message = on_connect, on_subscribe, on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.ready.wait(10), "subscriber could not subscribe"

    def of(self, kind: str) -> List[Dict]:
        with self.lock:
            return [json.loads(p) for t, p, r in self.messages if t.endswith("/" + kind)]

    def wait_for(self, pred, timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.05)
        return pred()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def kiosk_config(tmp_path: Path, clip: Path, broker=None, **extra) -> Path:
    import yaml

    doc: Dict[str, Any] = {
        "site": "lobby",
        "device": "kiosk-1",
        "state_dir": str(tmp_path / "state"),
        "source": {"url": str(clip)},
        "detector": {"min_face_px": 40},
        "counts": {"interval_s": 5},
        "stats": {"interval_s": 2},
    }
    if broker is not None:
        doc["mqtt"] = {"host": broker.host, "port": broker.port}
    doc.update(extra)  # a whole section replaced, as the tests ask
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "kiosk.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def test_daemon_publishes_schema_valid_events_to_real_broker(
    tmp_path, mosquitto, demo_clip, detector_dir, shipped_bundle
):
    jsonschema = pytest.importorskip("jsonschema")
    sub = Subscriber(mosquitto.host, mosquitto.port)
    try:
        cfg = kiosk_config(tmp_path, demo_clip, mosquitto)
        r = run_cli(["edge-maskd", "run", "--config", cfg], timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert sub.wait_for(lambda: any(s["state"] == "stopped" for s in sub.of("status")))
        events = sub.of("events")
        # three visitors walk through the demo clip: one event each, not one per frame
        assert len(events) == 3, [e["verdict"] for e in events]
        for e in events:
            jsonschema.validate(e, schema("event"))
            assert e["site"] == "lobby" and e["device"] == "kiosk-1"
            assert e["model_id"] == json.loads((shipped_bundle / "manifest.json").read_text())["model_id"]
        assert len({e["event_id"] for e in events}) == 3
        counts = sub.of("counts")
        assert counts and sum(c["total"] for c in counts) == 3
        for c in counts:
            jsonschema.validate(c, schema("counts"))
        for s in sub.of("stats"):
            jsonschema.validate(s, schema("stats"))
        states = [s["state"] for s in sub.of("status")]
        for s in sub.of("status"):
            jsonschema.validate(s, schema("status"))
        assert states[0] == "online" and states[-1] == "stopped"
    finally:
        sub.close()


def test_daemon_without_broker_prints_events_on_stdout(tmp_path, demo_clip, detector_dir, shipped_bundle):
    cfg = kiosk_config(tmp_path, demo_clip)
    r = run_cli(["edge-maskd", "run", "--config", cfg], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    events = [l for l in lines if l["type"] == "event"]
    assert len(events) == 3
    assert all(e["verdict"] in ("with_mask", "without_mask", "mask_weared_incorrect") for e in events)
    from edge.demo import expected_verdicts

    # the shipped model reads the demo's three visitors right, in the order they walk in
    assert [e["verdict"] for e in sorted(events, key=lambda e: e["first_seen"])] == expected_verdicts()
    assert any(l["type"] == "counts" for l in lines)


def test_snapshots_are_opt_in_and_blurred(tmp_path, demo_clip, detector_dir, shipped_bundle):
    import base64

    import cv2
    import numpy as np

    def events_with(privacy):
        cfg = kiosk_config(tmp_path, demo_clip, **({"privacy": privacy} if privacy else {}))
        r = run_cli(["edge-maskd", "run", "--config", cfg], timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return [json.loads(l) for l in r.stdout.splitlines() if '"type": "event"' in l]

    assert not any("snapshot_jpeg_b64" in e for e in events_with(None))  # by default no image leaves
    snaps = events_with({"snapshots": True, "snapshot_px": 48})
    assert len(snaps) == 3
    for e in snaps:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(e["snapshot_jpeg_b64"]), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (48, 48, 3)
        assert cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var() < 50  # blurred
