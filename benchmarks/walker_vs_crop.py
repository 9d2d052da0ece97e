"""Whose error is a wrong per-person verdict: the classifier's or the pipeline's?

Reads a finished `walkers.py` run (its clips, their truth and the daemon's events, in --workdir) and, for every
visitor, classifies the same face in its own photo at its annotated box by the device's crop path
(`MaskClassifier.preprocess_views` -> `probs` -> `postprocess`, the bundle's operating point). A visitor the
daemon called wrong whose annotated crop is called wrong too is the classifier's error: no tracker or decision
rule can fix it. A visitor called wrong whose crop is called right is the pipeline's (detector box, motion,
noise, the tracker's choice of views or its decision).

The visitors are picked again by `walkers.py`'s own rule with the same arguments; the picks are checked against
each clip's truth (photo and label of every visitor, in order), so a mismatched argument is refused.

    benchmarks/walker_vs_crop.py --run work/runs/common --crops work/crops112.npz --bundle models/default \
        --split test --clips 3 --workdir work/walkers --out benchmarks/results/walker-vs-crop-test.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def attribute(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Counts over the counted visitors: right by the daemon, right on the annotated crop, and each wrong
    verdict attributed (both wrong: the classifier's; crop right, visit wrong: the pipeline's)."""
    counted = [r for r in rows if r["walker"] is not None]
    per_class: Dict[str, Dict[str, int]] = {}
    for r in counted:
        c = per_class.setdefault(r["label"], {"counted": 0, "walker_right": 0, "crop_right": 0})
        c["counted"] += 1
        c["walker_right"] += int(r["walker"] == r["label"])
        c["crop_right"] += int(r["crop"] == r["label"])
    return {
        "people": len(rows),
        "counted": len(counted),
        "walker_right": sum(r["walker"] == r["label"] for r in counted),
        "crop_right": sum(r["crop"] == r["label"] for r in counted),
        "same_verdict": sum(r["walker"] == r["crop"] for r in counted),
        "classifier_errors": sum(r["walker"] != r["label"] and r["crop"] != r["label"] for r in counted),
        "pipeline_errors": sum(r["walker"] != r["label"] and r["crop"] == r["label"] for r in counted),
        "pipeline_fixes": sum(r["walker"] == r["label"] and r["crop"] != r["label"] for r in counted),
        "per_class": dict(sorted(per_class.items())),
    }


def main() -> int:
    import numpy as np
    from walkers import add_pick_arguments, clip_path, pick_all

    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.datasets_io import read_image
    from edge.errors import EX_DATAERR, EX_NOINPUT, MaskwatchError
    from edge.walkers import deciding_event, events_path, load_events, match_events, truth_path
    from export.crops import load as load_crops

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pick_arguments(ap)  # walkers.py's own: the same values pick the same visitors
    ap.add_argument("--events", choices=("gate", "nogate"), default="gate")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    picked = pick_all(load_crops(a.crops), a)
    bundle = load_bundle(Path(a.bundle))
    clf = MaskClassifier(bundle, "tflite_int8", fallback=False)
    rows: List[Dict[str, Any]] = []
    for c, walkers in enumerate(picked):
        video = clip_path(a.workdir, a.split, c)
        truth_file, events_file = truth_path(video), events_path(video, a.events)
        for p in (truth_file, events_file):
            if not p.is_file():
                raise MaskwatchError(
                    "%s: not found; run benchmarks/walkers.py with these arguments first" % p, EX_NOINPUT
                )
        truth = json.loads(truth_file.read_text())
        people = truth["people"]
        if [(p["file"], p["label"]) for p in people] != [(w.file, w.label) for w in walkers]:
            raise MaskwatchError(
                "%s: its visitors are not the ones these arguments pick (--split, --seed, --clips, --per-class, "
                "--min-face, --run and --crops must be the walkers run's)" % truth_file,
                EX_DATAERR,
            )
        by_person: Dict[int, List[Dict[str, Any]]] = {}
        for e, pid in match_events(truth, load_events(events_file)):
            if pid is not None:
                by_person.setdefault(pid, []).append(e)
        for p, w in zip(people, walkers):
            image = read_image(Path(w.file))
            if image is None:
                raise MaskwatchError("%s: not a readable image" % w.file, EX_DATAERR)
            probs = clf.probs(clf.preprocess_views(image, [w.box]))
            crop_verdict = clf.postprocess(probs)[0]
            evs = by_person.get(p["id"])
            first = deciding_event(evs) if evs else None
            rows.append(
                {
                    "clip": c,
                    "id": p["id"],
                    "label": w.label,
                    "source": w.source,
                    "photo_face_px": int(w.box[2] - w.box[0]),
                    "walker_face_px": p["face_px"],
                    "crop": crop_verdict.label,
                    "crop_probs": {k: round(float(x), 4) for k, x in zip(bundle.labels, np.asarray(probs)[0])},
                    "walker": first["verdict"] if first else None,
                    "walker_probs": first.get("probs") if first else None,
                    "decided_by": first.get("decided_by") if first else None,
                    "votes": first.get("votes") if first else None,
                }
            )
    doc = {
        "split": a.split,
        "bundle": a.bundle,
        "model_id": bundle.model_id,
        "total": attribute(rows),
        "people": rows,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "command": " ".join(["benchmarks/walker_vs_crop.py"] + sys.argv[1:]),
    }
    print(json.dumps(doc["total"]))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
