#!/usr/bin/env python3
"""What training on annotation boxes costs a device that crops res10's boxes.

    .venv/bin/python benchmarks/box_mismatch.py --run work/runs/common --crops work/crops112.npz \
        --bundle models/default --split val --out benchmarks/results/box-mismatch-val.json

Training cuts VOC faces at their annotated box; the device cuts them at res10's box, which is squarer
and sits higher (forehead in, chin often out). For every annotated real face of the split's scenes that
res10 finds (IoU >= 0.4, confidence >= --confidence), the bundle classifies both crops of the same face
through the one crop function; the report gives the verdicts on each and how often they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.crop import fit_box
    from edge.detector import DetectorOptions, load_detector
    from edge.verdict import face_labels
    from export import metrics
    from export.boxfit import SIDES, measure
    from export.crops import load as load_crops
    from export.crops import split_index
    from export.datasets import LABELS, iter_scenes, normalise_label
    from export.evaluate import match, scene_ids_of

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--crops", required=True)
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default"))
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument(
        "--scenes", nargs="*", default=["../shared/data/andrewmvd-train", "../shared/data/ilc2021-jolignier"]
    )
    ap.add_argument("--confidence", type=float, default=0.2)
    ap.add_argument("--min-face", type=int, default=20)
    ap.add_argument(
        "--fit-split",
        choices=("train", "none"),
        default="train",
        help="for a bundle without a box fit: measure one on these scenes",
    )
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    crops = load_crops(Path(a.crops))
    clf = MaskClassifier(load_bundle(Path(a.bundle)), None, fallback=False)
    op = clf.bundle.operating_point
    det = load_detector(
        None, DetectorOptions(confidence=a.confidence, mode="single", min_face_px=a.min_face, fallback=False)
    )
    idx = split_index(Path(a.run), a.split)

    fit = clf.bundle.box_fit  # the fit the device applies; measured here only for a bundle without one
    if fit is None and a.fit_split != "none":
        tidx = split_index(Path(a.run), a.fit_split)
        measured = measure(
            [Path(sd) for sd in a.scenes], {Path(sd).name: scene_ids_of(crops, tidx, Path(sd)) for sd in a.scenes}, det
        )
        fit = tuple(measured[k] for k in SIDES)
        print("box fit on %d %s faces (left, top, right, bottom): %s" % (measured["faces"], a.fit_split, fit))
    elif fit is not None:
        print("box fit of the bundle (left, top, right, bottom): %s" % (fit,))

    def verdicts(img: np.ndarray, boxes: List) -> List[int]:
        return [
            LABELS.index(v) for v in face_labels(clf.probs(clf.preprocess_views(img, boxes)), clf.output_labels, op)
        ]

    y: List[int] = []
    on_gt: List[int] = []
    on_det: List[int] = []
    on_fit: List[int] = []
    found = total = 0
    ids = {Path(sd).name: scene_ids_of(crops, idx, Path(sd)) for sd in a.scenes}
    for _name, _sid, img, objs in iter_scenes([Path(sd) for sd in a.scenes], ids):
        gt = [(b, LABELS.index(normalise_label(n))) for n, b in objs if normalise_label(n)]
        gt = [(b, c) for b, c in gt if min(b[2] - b[0], b[3] - b[1]) >= a.min_face]
        if not gt:
            continue
        total += len(gt)
        faces = det.detect(img)
        m = match([g[0] for g in gt], [f.box for f in faces], 0.4)
        if not m:
            continue
        gis = sorted(m)
        gboxes = [gt[g][0] for g in gis]
        dboxes = [faces[m[g]].box for g in gis]
        found += len(gis)
        y.extend(gt[g][1] for g in gis)
        on_gt.extend(verdicts(img, gboxes))
        on_det.extend(verdicts(img, dboxes))
        if fit is not None:
            on_fit.extend(verdicts(img, [fit_box(b, fit) for b in dboxes]))
    ya, ga, da = np.array(y), np.array(on_gt), np.array(on_det)
    res = {
        "bundle": a.bundle,
        "model_id": clf.bundle.model_id,
        "split": a.split,
        "confidence": a.confidence,
        "faces": total,
        "found": found,
        "annotation_box": metrics.report(ya, ga, LABELS[:3]),
        "detector_box": metrics.report(ya, da, LABELS[:3]),
        "box_fit": fit,
        "fitted_detector_box": metrics.report(ya, np.array(on_fit), LABELS[:3]) if fit is not None else None,
        "verdict_differs": round(float(np.mean(ga != da)), 4) if len(ya) else None,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "command": " ".join(sys.argv),
    }
    for k in ("annotation_box", "detector_box", "fitted_detector_box"):
        r = res[k]
        if r is None:
            continue
        print(
            "%-15s macro-F1 %.3f  %s"
            % (k, r["macro_f1"], {c: round(r["per_class"][c]["recall"], 3) for c in LABELS[:3]})
        )
    print(
        "found %d of %d faces; verdicts differ on %.1f %% (raw res10 box vs annotated box)"
        % (found, total, 100 * res["verdict_differs"])
    )
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
