#!/usr/bin/env python3
"""`edge-maskd scan` (its own detector and classifier, built from its arguments: edge.cli.scan_models) on one
split's real scenes, scored as someone outside the project would: a detection finds an annotated face at IoU >= 0.5,
nothing else (export.evaluate.match without the head-box rule). Once with res10's own box (`detector_box`), once
with the face box scan reports (`box`: MaskClassifier.face_box): face recall, non-compliant P / R / F1, median
IoU of the matches. Scan arguments after `--` (default: scan's defaults).

    benchmarks/scan_box_match.py --bundle work/bundles/ens3 --run work/runs/common --crops work/crops112.npz \\
        --split val --out benchmarks/results/choices-val/scan-box-match-ens3-val.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NON_COMPLIANT = {"without_mask", "mask_weared_incorrect"}
KINDS = ("res10 box", "fitted box")


def main() -> int:
    from edge.cli import build_parser, scan_models
    from edge.types import iou
    from export.crops import load as load_crops
    from export.crops import split_index
    from export.datasets import iter_scenes, normalise_label
    from export.evaluate import match, scene_ids_of
    from export.metrics import binary_f1

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--crops", required=True)
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument(
        "--scenes", nargs="*", default=["../shared/data/andrewmvd-train", "../shared/data/ilc2021-jolignier"]
    )
    ap.add_argument("--out", default=None)
    ap.add_argument("scan_args", nargs="*", help="after --: edge-maskd scan's own options")
    a = ap.parse_args()
    sa = build_parser().parse_args(["scan", "--bundle", a.bundle, *a.scan_args, "unused.jpg"])
    det, clf = scan_models(sa)
    crops = load_crops(Path(a.crops))
    idx = split_index(Path(a.run), a.split)
    dirs = [Path(d) for d in a.scenes]
    ids = {d.name: scene_ids_of(crops, idx, d) for d in dirs}
    tally = {k: {"tp": 0, "fp": 0, "fn": 0, "found": 0, "faces": 0, "ious": []} for k in KINDS}
    for _name, _sid, img, objs in iter_scenes(dirs, ids):
        gt = [(b, normalise_label(n)) for n, b in objs if normalise_label(n)]
        faces = [f for f in clf.classify(img, det.detect(img)) if f.label != "no_face"]
        for kind, t in tally.items():
            boxes = [f.box if kind == KINDS[0] else clf.face_box(f.box, img.shape) for f in faces]
            m = match([g for g, _ in gt], boxes, 0.5)
            for gi, (g, y) in enumerate(gt):
                t["faces"] += 1
                bad = y in NON_COMPLIANT
                flagged = gi in m and faces[m[gi]].label in NON_COMPLIANT
                if gi in m:
                    t["found"] += 1
                    t["ious"].append(iou(g, boxes[m[gi]]))
                t["tp"] += bad and flagged
                t["fn"] += bad and not flagged
                t["fp"] += flagged and not bad
            used = set(m.values())
            t["fp"] += sum(1 for di, f in enumerate(faces) if di not in used and f.label in NON_COMPLIANT)
    o = det.opt
    res: dict = {
        "bundle": a.bundle,
        "split": a.split,
        "scan": {
            "mode": o.mode,
            "confidence": o.confidence,
            "no_face_threshold": clf.bundle.operating_point.no_face_threshold,
            "min_face_px": o.min_face_px,
            "tile_sizes": list(o.tile_sizes),
        },
        "command": " ".join(["benchmarks/scan_box_match.py"] + sys.argv[1:]),
    }
    for kind, t in tally.items():
        res[kind] = {
            "faces": t["faces"],
            "face_recall": round(t["found"] / max(1, t["faces"]), 4),
            **binary_f1(t["tp"], t["fp"], t["fn"]),
            "median_iou": round(float(np.median(t["ious"])), 3) if t["ious"] else None,
        }
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
