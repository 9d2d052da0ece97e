#!/usr/bin/env python3
"""`edge-maskd scan`'s default setting (edge.config.SCAN) on one split's real scenes, scored as someone outside
the project would: a detection finds an annotated face at IoU >= 0.5, nothing else. Once with res10's own box,
once with the box moved by the bundle's detector_box_fit (what scan reports as `box` since session 29): face recall,
non-compliant P / R / F1, median IoU of the matches.

    benchmarks/scan_box_match.py --bundle work/bundles/ens3 --run work/runs/common --crops work/crops112.npz \\
        --split val --out benchmarks/results/choices-val/scan-box-match-ens3-val.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NON_COMPLIANT = {"without_mask", "mask_weared_incorrect"}


def main() -> int:
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.config import SCAN
    from edge.crop import fit_box
    from edge.detector import DetectorOptions, load_detector
    from edge.types import clamp_box, greedy_assign, iou
    from export.crops import load as load_crops
    from export.crops import split_index
    from export.datasets import iter_scenes, normalise_label
    from export.evaluate import scene_ids_of

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--crops", required=True)
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument(
        "--scenes", nargs="*", default=["../shared/data/andrewmvd-train", "../shared/data/ilc2021-jolignier"]
    )
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    bundle = load_bundle(Path(a.bundle))
    bundle.operating_point = dataclasses.replace(bundle.operating_point, no_face_threshold=SCAN.no_face_threshold)
    clf = MaskClassifier(bundle, None, fallback=False)
    det = load_detector(
        None, DetectorOptions(confidence=SCAN.confidence, mode=SCAN.mode, min_face_px=SCAN.min_face_px, fallback=False)
    )
    crops = load_crops(Path(a.crops))
    idx = split_index(Path(a.run), a.split)
    dirs = [Path(d) for d in a.scenes]
    ids = {d.name: scene_ids_of(crops, idx, d) for d in dirs}
    tally = {k: {"tp": 0, "fp": 0, "fn": 0, "found": 0, "faces": 0, "ious": []} for k in ("res10 box", "fitted box")}
    for _name, _sid, img, objs in iter_scenes(dirs, ids):
        h, w = img.shape[:2]
        gt = [(b, normalise_label(n)) for n, b in objs if normalise_label(n)]
        faces = [f for f in clf.classify(img, det.detect(img)) if f.label != "no_face"]
        for kind, t in tally.items():
            boxes = [f.box if kind == "res10 box" else clamp_box(fit_box(f.box, bundle.box_fit), w, h) for f in faces]
            m = greedy_assign(
                [(iou(g, d), gi, di) for gi, (g, _) in enumerate(gt) for di, d in enumerate(boxes) if iou(g, d) >= 0.5]
            )
            for gi, (g, y) in enumerate(gt):
                t["faces"] += 1
                bad = y in NON_COMPLIANT
                if gi in m:
                    t["found"] += 1
                    t["ious"].append(iou(g, boxes[m[gi]]))
                    flagged = faces[m[gi]].label in NON_COMPLIANT
                    t["tp"] += bad and flagged
                    t["fn"] += bad and not flagged
                    t["fp"] += flagged and not bad
                else:
                    t["fn"] += bad
            used = set(m.values())
            t["fp"] += sum(1 for di, f in enumerate(faces) if di not in used and f.label in NON_COMPLIANT)
    res: dict = {
        "bundle": a.bundle,
        "split": a.split,
        "setting": dataclasses.asdict(SCAN),
        "command": " ".join(["benchmarks/scan_box_match.py"] + sys.argv[1:]),
    }
    for kind, t in tally.items():
        p = t["tp"] / max(1, t["tp"] + t["fp"])
        r = t["tp"] / max(1, t["tp"] + t["fn"])
        res[kind] = {
            "faces": t["faces"],
            "face_recall": round(t["found"] / max(1, t["faces"]), 4),
            "tp": t["tp"],
            "fp": t["fp"],
            "fn": t["fn"],
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(2 * p * r / max(1e-9, p + r), 4),
            "median_iou": round(float(np.median(t["ious"])), 3) if t["ious"] else None,
        }
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
