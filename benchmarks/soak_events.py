"""Memory per event: the real daemon loop with snapshots on, thousands of visitors, events over a real mosquitto.

    python benchmarks/soak_events.py --events 5000 --json benchmarks/results/soak-events-x86_64-2core.json \
        --png benchmarks/results/soak-events-x86_64-2core.png

A looped clip where one visitor appears for 3 frames and leaves for 3 (tracker decides on 2 good views), so every
6 frames is one person and one event with a JPEG snapshot, published through the MQTT publisher and its disk spool
to a mosquitto this script starts on 127.0.0.1. RSS is sampled as events go by; the result is the slope after
warm-up in MB per 1000 events (a kiosk that kept every decision, as Pipeline.decisions once did, grows ~2 MB per
1000 events with snapshots).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge import assets, bench  # noqa: E402
from edge.capture import FrameSource  # noqa: E402
from edge.config import defaults  # noqa: E402
from edge.demo import HEAD  # noqa: E402
from edge.pipeline import Pipeline, default_bundle_path, rss_mb  # noqa: E402
from edge.publish import MqttPublisher  # noqa: E402
from edge.spool import Spool  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import rss_slope, write_rss_png  # noqa: E402


def make_clip(out: Path, face_png: Path) -> Path:
    import cv2

    face = cv2.imread(str(face_png))
    head = cv2.resize(face[HEAD[1] : HEAD[3], HEAD[0] : HEAD[2]], (130, 150), interpolation=cv2.INTER_AREA)
    bg = np.full((240, 320, 3), 90, np.uint8)
    frames = []
    for i in range(6):
        f = bg.copy()
        f[:, :, 1] = 90 + i  # every frame differs a little (the tracker's clock runs on changing frames)
        if i < 3:
            f[45:195, 95:225] = head
        frames.append(f)
    w = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), 15.0, (320, 240))
    for f in frames:
        w.write(f)
    w.release()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--every", type=int, default=250, help="sample RSS every N events")
    p.add_argument("--json", default=None)
    p.add_argument("--png", default=None)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="maskwatch-soak-"))
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n" % port)
    broker = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    received = [0]
    try:
        import paho.mqtt.client as mqtt

        time.sleep(0.5)
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-sub")
        sub.on_connect = lambda c, u, f, rc, pr=None: c.subscribe("maskwatch/+/+/events", qos=1)

        def on_msg(c, u, m):
            received[0] += 1

        sub.on_message = on_msg
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        clip = make_clip(work / "visitor.mp4", assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5))
        cfg = defaults()
        cfg["source"].update({"url": str(clip), "loop": True, "max_frames": a.events * 6 + 60})
        cfg["classifier"]["bundle"] = str(default_bundle_path())
        cfg["motion"]["enabled"] = False
        cfg["detector"].update({"min_face_px": 0, "mode": "single"})
        cfg["tracker"].update(
            {"votes": 2, "max_missed": 1, "min_votes_on_exit": 1, "margin": 0.0, "border_px": 0, "min_vote_px": 0}
        )
        cfg["privacy"]["snapshots"] = True
        cfg["counts"]["interval_s"] = 60.0
        cfg["stats"]["interval_s"] = 60.0
        cfg["site"], cfg["device"] = "soak", "k1"
        pub = MqttPublisher(
            host="127.0.0.1", port=port, site="soak", device="k1", spool=Spool(work / "spool.db", 100000)
        )
        pipe = Pipeline(cfg, pub)
        samples = []
        t0 = time.time()
        orig = pipe.emit

        def emit(decisions, source_name):
            before = pipe.events
            orig(decisions, source_name)
            if pipe.events // a.every != before // a.every:
                samples.append((pipe.events, rss_mb(), time.time() - t0, len(pipe.decisions)))

        pipe.emit = emit  # sample inside the real loop
        src = FrameSource(str(clip), loop=True, max_frames=cfg["source"]["max_frames"]).open()
        pipe.run(src)
        src.close()
        pub.flush(30)
        pub.close(pipe.status_payload("stopped"))
        deadline = time.time() + 30
        while received[0] < pipe.events and time.time() < deadline:
            time.sleep(0.2)
        sub.loop_stop()
    finally:
        broker.terminate()
        broker.wait(5)
    ev = np.array([s[0] for s in samples], dtype=float)
    rss = np.array([s[1] for s in samples], dtype=float)
    slope = rss_slope(ev, rss)
    doc = {
        "benchmark": "soak-events",
        "command": " ".join(["python"] + sys.argv),
        "machine": bench.machine(),
        "frames": int(pipe.frames),
        "events": pipe.events,
        "events_received_by_subscriber": received[0],
        "snapshots": True,
        "seconds": round(time.time() - t0, 1),
        "decisions_kept": len(pipe.decisions),
        "rss_mb_start": float(rss[0]),
        "rss_mb_end": float(rss[-1]),
        "rss_mb_max": float(rss.max()),
        "rss_slope_mb_per_1000_events_after_warmup": slope,
        "samples": [
            {"events": int(e), "rss_mb": float(r), "t": round(t, 1), "decisions_kept": int(k)} for e, r, t, k in samples
        ],
    }
    print(json.dumps({k: v for k, v in doc.items() if k not in ("samples", "machine")}, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1))
    if a.png:
        write_rss_png(
            ev,
            rss,
            "events published (each with a JPEG snapshot)",
            "edge-maskd RSS over %d events (slope %.3f MB / 1000 events)" % (pipe.events, slope or 0),
            Path(a.png),
        )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
