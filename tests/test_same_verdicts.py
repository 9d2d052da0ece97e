"""Refactors change no behaviour: the daemon's verdicts on the demo and entrance clips are pinned.

tests/golden/verdicts.json holds what `edge-maskd run` published on both clips with the shipped bundle, written
by this file with MASKWATCH_UPDATE_GOLDEN=1 (first at commit ea56c26, before the typed-config refactor). A
refactor that changes a verdict, a decision frame or the number of people fails here; a new bundle (another
model_id) must be pinned again on purpose.
"""

import json
import os
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

GOLDEN = Path(__file__).parent / "golden" / "verdicts.json"


def entrance_clip(out: Path) -> Path:
    from edge import assets, demo

    face = assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5)
    visits = (demo.Visit("none", 2.0, 6.0), demo.Visit("mask", 10.0, 14.0), demo.Visit("below_nose", 18.0, 22.0))
    return demo.make_clip(face, out, fps=15.0, seconds=24.0, visits=visits)


def run_daemon(clip: Path, detector_dir: Path) -> dict:
    r = run_cli(
        ["edge-maskd", "run", "--config", ROOT / "firmware-config" / "demo.yaml", "--source", clip], timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    events = [e for e in events if e.get("type") == "event"]
    return {
        "model_id": events[0]["model_id"] if events else None,
        "events": [
            {
                "track_id": e["track_id"],
                "verdict": e["verdict"],
                "frame": e["frame"],
                "votes": e["votes"],
                "decided_by": e.get("decided_by"),
                "alert": e.get("alert"),
            }
            for e in events
        ],
    }


def test_same_verdicts_on_demo_and_entrance(demo_clip, detector_dir, tmp_path):
    got = {
        "demo": run_daemon(demo_clip, detector_dir),
        "entrance": run_daemon(entrance_clip(tmp_path / "entrance.mp4"), detector_dir),
    }
    if os.environ.get("MASKWATCH_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip("golden verdicts written to %s" % GOLDEN)
    want = json.loads(GOLDEN.read_text())
    for clip in ("demo", "entrance"):
        assert got[clip]["model_id"] == want[clip]["model_id"], (
            "the shipped bundle changed: pin its verdicts again with MASKWATCH_UPDATE_GOLDEN=1"
        )
        # the alert score may move in its last digits on another CPU's int8 kernels; nothing else may move
        strip = [{k: v for k, v in e.items() if k != "alert"} for e in got[clip]["events"]]
        assert strip == [{k: v for k, v in e.items() if k != "alert"} for e in want[clip]["events"]], clip
        for g, w in zip(got[clip]["events"], want[clip]["events"]):
            assert g["alert"] == pytest.approx(w["alert"], abs=0.02), (clip, g, w)
    assert len(want["demo"]["events"]) == 3  # the demo's three visitors, one event each
