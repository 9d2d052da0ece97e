#!/usr/bin/env python3
"""How `edge-maskd classify` should frame an image it is given: whole (the default: the image is a face crop),
cut to the face res10 finds (--find-face: a photo of one person), or by the share of the image that face covers
(`auto`): cut when res10's best box, moved by the bundle's box fit and grown by its crop margin, covers less than a
share T of the image (a photo with room around the face), else whole (the image is already a face crop, of which
res10 found a part). One pass per image, in-process, through the same functions classify uses
(edge.crop.photo_face, the classifier's views and operating point); per image it records the share and both
verdicts, so every T is scored from one run. T is chosen out of fold (folds by photo group), so the auto row is not
scored on the images that chose it.

    benchmarks/classify_framing.py --bundle work/bundles/ens3 --run work/runs/common --crops work/crops112.npz \\
        --split val --out benchmarks/results/choices-val/classify-framing-ens3-val.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classify_photos import add_split_arguments, image_sets, score_labels, write_result  # noqa: E402

GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)  # 0: always whole, 1.01: always the found face
REAL = ("photos: chandrikadeb7", "tight crops: andrewmvd-train", "tight crops: ilc2021-jolignier")


def covered_share(box, fit, margin: float, shape) -> float:
    """The share of the image that the found face, fitted and grown by the crop margin, covers (clipped)."""
    from edge.crop import fit_box
    from edge.types import expand_box

    h, w = shape[:2]
    x1, y1, x2, y2 = expand_box(fit_box(box, fit), margin, w, h)
    return max(0, x2 - x1) * max(0, y2 - y1) / float(w * h)


def verdicts(clf, det, files) -> list:
    from edge.crop import photo_face
    from edge.datasets_io import read_image
    from edge.detector import PHOTO_FACE_CONFIDENCE

    rows = []
    for p in files:
        img = read_image(Path(p), None)
        faces = det.detect(img)
        _, box, how = photo_face(img, faces, clf.margin, clf.size, clf.bundle.box_fit, PHOTO_FACE_CONFIDENCE)
        whole = photo_face(img, [], clf.margin, clf.size, None, PHOTO_FACE_CONFIDENCE)[0]
        v_whole = clf.postprocess(clf.probs(whole[None]))[0]
        if how == "detector":
            v_face = clf.postprocess(clf.probs(clf.preprocess_views(img, [box], detector=True)))[0]
            share = covered_share(box, clf.bundle.box_fit, clf.margin, img.shape)
        else:
            v_face, share = v_whole, 1.0  # no face found: both modes classify the image whole
        rows.append(
            {
                "file": str(p),
                "found": how == "detector",
                "share": round(share, 4),
                "whole": v_whole.label,
                "face": v_face.label,
            }
        )
    return rows


def pick(rows: list, t: float) -> list:
    return [r["face"] if r["found"] and r["share"] < t else r["whole"] for r in rows]


def main() -> int:
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.detector import load_detector, photo_face_options
    from export.metrics import group_folds

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_split_arguments(ap)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rows-out", default=None, help="each image's share and verdicts (JSON), to look at")
    a = ap.parse_args()
    clf = MaskClassifier(load_bundle(Path(a.bundle)), None, {"threads": 2})
    det = load_detector(None, photo_face_options(fallback=False))
    res: dict = {
        "bundle": a.bundle,
        "split": a.split,
        "command": " ".join(["benchmarks/classify_framing.py"] + sys.argv[1:]),
    }
    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, items in image_sets(a, tmp).items():
            got = verdicts(clf, det, [f for f, _, _ in items])
            for r, (_, lab, g) in zip(got, items):
                r["truth"], r["group"] = lab, g
            rows[kind] = got
    real = [r for k in REAL for r in rows[k]]
    truth = [r["truth"] for r in real]
    ok = {t: np.array([p == y for p, y in zip(pick(real, t), truth)]) for t in GRID}  # right at each T, per image
    res["real_right_by_share"] = {str(t): int(ok[t].sum()) for t in GRID}
    # out of fold: each fold's images under the T the other folds chose (most right; ties: the smaller T)
    groups = np.array([r["group"] for r in real])
    oof_right, chosen_by_folds = [], Counter()
    for rep in range(a.repeats):
        fold = group_folds(groups, a.folds, seed=rep)
        right = 0
        for f in range(a.folds):
            best = max(GRID, key=lambda t: (ok[t][fold != f].sum(), -t))
            right += int(ok[best][fold == f].sum())
            chosen_by_folds[str(best)] += 1
        oof_right.append(right)
    res["out_of_fold"] = {"right_mean": float(np.mean(oof_right)), "right_each": oof_right, "chosen": chosen_by_folds}
    chosen = max(GRID, key=lambda t: (ok[t].sum(), -t))
    res["share"] = chosen
    for kind, got in rows.items():
        truth_k = [r["truth"] for r in got]
        res[kind] = {
            "whole": score_labels(truth_k, pick(got, 0.0)),
            "find-face": score_labels(truth_k, pick(got, 1.01)),
            "auto at %s" % chosen: score_labels(truth_k, pick(got, chosen)),
            "share_found": [
                round(float(q), 3) for q in np.percentile([r["share"] for r in got if r["found"]] or [0], [10, 50, 90])
            ],
        }
    if a.rows_out:
        Path(a.rows_out).write_text(json.dumps(rows) + "\n")
    write_result(res, a.out)
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
