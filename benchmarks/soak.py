"""Memory over a long run: the daemon's own Pipeline on a looped entrance clip, RSS sampled as frames go by.

    python benchmarks/soak.py --frames 6000 --json benchmarks/results/soak-x86_64-2core.json \
        --png benchmarks/results/soak-x86_64-2core.png

A kiosk runs for months; a leak of a few KB per frame is a crash a week later. The
result is judged by the slope of RSS after warm-up (MB per 1000 frames), not by time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edge import bench
from edge.capture import FrameSource
from edge.config import defaults
from edge.pipeline import Pipeline, default_bundle_path, rss_mb
from edge.publish import Publisher


class Counting(Publisher):
    def __init__(self) -> None:
        self.n = 0

    def publish(self, kind, payload):
        self.n += 1


def rss_slope(x: np.ndarray, rss: np.ndarray):
    """RSS growth in MB per 1000 units of x (frames, events), fitted after warm-up (x >= 1000, or the last 3/4)."""
    warm = x >= min(1000, x.max() / 4)
    return float(np.polyfit(x[warm], rss[warm], 1)[0] * 1000) if warm.sum() > 2 else None


def write_rss_png(x: np.ndarray, rss: np.ndarray, xlabel: str, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(x, rss, marker=".")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("RSS, MB")
    ax.set_ylim(0, rss.max() * 1.2)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--frames", type=int, default=6000)
    p.add_argument("--every", type=int, default=250, help="sample RSS every N frames")
    p.add_argument("--motion", action="store_true", help="motion gate on (default off: the detector on every frame)")
    p.add_argument("--json", default=None)
    p.add_argument("--png", default=None)
    a = p.parse_args()
    ns = argparse.Namespace(clip=None, work=".bench")
    clip = bench.bench_clip(ns)
    cfg = defaults()
    cfg["source"]["url"] = str(clip)
    cfg["classifier"]["bundle"] = str(default_bundle_path())
    cfg["motion"]["enabled"] = a.motion
    cfg["detector"]["min_face_px"] = 40
    cfg["counts"]["interval_s"] = 60.0
    cfg["stats"]["interval_s"] = 3600.0
    pub = Counting()
    pipe = Pipeline(cfg, pub)
    src = FrameSource(str(clip), loop=True, max_frames=a.frames).open()
    samples = []
    t0 = time.time()
    orig = pipe.process

    def process(frame):
        out = orig(frame)
        if frame.index % a.every == 0:
            samples.append((frame.index, rss_mb(), time.time() - t0))
        return out

    pipe.process = process  # sample inside the real loop
    pipe.run(src)
    src.close()
    frames = np.array([s[0] for s in samples], dtype=float)
    rss = np.array([s[1] for s in samples], dtype=float)
    slope = rss_slope(frames, rss)
    doc = {
        "benchmark": "soak",
        "command": " ".join(["python"] + sys.argv),
        "machine": bench.machine(),
        "frames": int(pipe.frames),
        "events": pipe.events,
        "messages": pub.n,
        "seconds": round(time.time() - t0, 1),
        "motion_gate": a.motion,
        "rss_mb_start": float(rss[0]),
        "rss_mb_end": float(rss[-1]),
        "rss_mb_max": float(rss.max()),
        "rss_slope_mb_per_1000_frames_after_warmup": slope,
        "samples": [{"frame": int(f), "rss_mb": float(r), "t": round(t, 1)} for f, r, t in samples],
    }
    print(json.dumps({k: v for k, v in doc.items() if k not in ("samples", "machine")}, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1))
    if a.png:
        write_rss_png(
            frames,
            rss,
            "frames processed",
            "edge-maskd pipeline RSS over %d frames (slope %.3f MB / 1000 frames)" % (pipe.frames, slope or 0),
            Path(a.png),
        )
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
