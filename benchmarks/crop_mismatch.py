#!/usr/bin/env python3
"""What the old train/device crop mismatch cost: the same validation faces, cut two ways, one model.

    .venv/bin/python benchmarks/crop_mismatch.py --run work/runs/v3 --bundle models/default \
        --out benchmarks/results/crop-mismatch.json

"one crop": edge.crop.crop_face straight to the model's input (what training and the device do now).
"old training crop": the same box cut to 160 px (INTER_AREA), then resized to the input by tf.image.resize
(bilinear), as `edge-export` trained before this change while the device resized once with INTER_AREA.
Both go through the shipped int8 model and its operating point; the report gives how often the verdict
differs and the real-validation macro-F1 / alert F1 of each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import tensorflow as tf

    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.crop import crop_face
    from edge.datasets_io import read_image
    from export import operating
    from export.crops import load as load_crops
    from export.crops import split_index
    from export.datasets import LABELS, REAL_SOURCES

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", required=True)
    ap.add_argument("--crops", default="work/crops96.npz")
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default"))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    crops = load_crops(Path(a.crops))
    idx = split_index(Path(a.run), "val")
    idx = idx[np.isin(crops["sources"][idx], REAL_SOURCES) & (crops["how"][idx] != "whole")]
    b = load_bundle(Path(a.bundle))
    size = b.input_size
    one, old, labels = [], [], []
    cache = {}
    for i in idx:
        f = str(crops["files"][i])
        if f not in cache:
            cache.clear()
            cache[f] = read_image(Path(f))
        img = cache[f]
        if img is None:
            continue
        box = tuple(int(v) for v in crops["boxes"][i])
        one.append(crop_face(img, box, b.crop_margin, size))
        c160 = crop_face(img, box, b.crop_margin, (160, 160))
        old.append(
            np.clip(np.round(tf.image.resize(c160[None].astype(np.float32), list(size)).numpy()[0]), 0, 255).astype(
                np.uint8
            )
        )
        labels.append(int(crops["labels"][i]))
    one, old, labels = np.stack(one), np.stack(old), np.array(labels)
    clf = MaskClassifier(b, "tflite_int8", fallback=False)
    op = b.manifest["operating_point"]
    res = {}
    preds = {}
    for name, x in (("one_crop", one), ("old_training_crop", old)):
        p = np.concatenate([clf.probs(x[k : k + 64]) for k in range(0, len(x), 64)])
        preds[name] = operating.predict_labels(p, LABELS, op)
        r = operating.face_report(preds[name], labels, LABELS)
        res[name] = {
            "macro_f1": r["macro_f1"],
            "alert_f1": r["alert"]["f1"],
            "with_mask_flagged": r["with_mask_flagged"],
        }
    res["verdicts_differ"] = round(float(np.mean(preds["one_crop"] != preds["old_training_crop"])), 4)
    res["mean_abs_pixel_diff"] = round(float(np.mean(np.abs(one.astype(np.int16) - old.astype(np.int16)))), 3)
    res["crops"] = int(len(labels))
    res["command"] = " ".join(sys.argv)
    print(json.dumps(res, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
