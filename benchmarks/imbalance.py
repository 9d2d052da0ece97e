"""Class weights vs oversampling for the rare `mask_weared_incorrect` class, measured, on one split.

    python benchmarks/imbalance.py --crops work/crops160.npz --split work/runs/mnv2-a035-96/split.npz \
        --epochs 10 --json benchmarks/results/imbalance.json --md benchmarks/imbalance.md

Every arm trains the same model (MobileNetV2 alpha 0.35 @ 96, from scratch, same seed, same epochs) on
the same split as the shipped bundle, and differs only in how the imbalance is handled. The arm is
chosen by **validation** macro-F1; test numbers are reported beside it, not used to choose. Because
the synthetic MaskedFace-Net faces carry most `mask_weared_incorrect` examples, recall of that class
is also given on the real photos alone (andrewmvd scenes), with its count: it is small, read it as such.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np

ARMS = {
    "none": {"class_weight": "none", "oversample": "none"},
    "sqrt-weights": {"class_weight": "sqrt", "oversample": "none"},
    "balanced-weights": {"class_weight": "balanced", "oversample": "none"},
    "oversample-class": {"class_weight": "none", "oversample": "class"},
    "oversample-class-source": {"class_weight": "none", "oversample": "class-source"},
}
REAL = "andrewmvd-train"


def scores(labels: np.ndarray, pred: np.ndarray, sources: np.ndarray) -> Dict[str, Any]:
    from export import metrics
    from export.datasets import LABELS

    rep = metrics.report(labels, pred, LABELS)
    inc = LABELS.index("mask_weared_incorrect")
    real = (sources == REAL) & (labels == inc)
    return {
        "macro_f1": rep["macro_f1"],
        "accuracy": rep["accuracy"],
        "incorrect_recall": rep["per_class"]["mask_weared_incorrect"]["recall"],
        "incorrect_precision": rep["per_class"]["mask_weared_incorrect"]["precision"],
        "incorrect_recall_real": round(float((pred[real] == inc).mean()), 3) if real.any() else None,
        "incorrect_real_n": int(real.sum()),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crops", default="work/crops160.npz")
    p.add_argument("--split", default="work/runs/mnv2-a035-96/split.npz")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--alpha", type=float, default=0.35)
    p.add_argument("--input-size", type=int, default=96)
    p.add_argument("--work", default="work/runs/imbalance")
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    a = p.parse_args()
    from edge import bench
    from export.crops import load as load_crops
    from export.train import TrainConfig, predict, train

    crops = load_crops(Path(a.crops))
    s = np.load(a.split)
    keep, assign = s["keep"], s["assign"]
    images, labels, sources = crops["images"][keep], crops["labels"][keep], crops["sources"][keep]
    out: Dict[str, Any] = {
        "command": " ".join(["python"] + sys.argv),
        "machine": bench.machine(),
        "split": a.split,
        "epochs": a.epochs,
        "model": "mobilenetv2 a%.2f@%d from scratch" % (a.alpha, a.input_size),
        "arms": {},
    }
    if a.json and Path(a.json).exists():  # resume: arms already measured are kept
        out["arms"] = json.loads(Path(a.json).read_text()).get("arms", {})
    for arm in a.arms:
        if arm in out["arms"]:
            continue
        cfg = TrainConfig(alpha=a.alpha, input_size=a.input_size, epochs=a.epochs, seed=0, **ARMS[arm])
        t = time.time()
        model, info = train(cfg, images, labels, assign, Path(a.work) / arm, verbose=2, sources=sources)
        row = {"settings": ARMS[arm], "train_seconds": round(time.time() - t, 1)}
        for name, which in (("val", 1), ("test", 2)):
            sel = assign == which
            pred = predict(model, images[sel], a.input_size).argmax(1)
            row[name] = scores(labels[sel], pred, sources[sel])
        out["arms"][arm] = row
        print(arm, json.dumps(row), flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps(out, indent=1))
    best = max(out["arms"], key=lambda k: out["arms"][k]["val"]["macro_f1"])
    out["chosen_by_val_macro_f1"] = best
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    if a.md:
        lines = [
            "# Imbalance handling, measured (same split, same model, %d epochs each)" % a.epochs,
            "",
            "Made by `%s` on %s, %s cores. Chosen by validation macro-F1: **%s**."
            % (out["command"], out["machine"]["cpu"], out["machine"]["cores"], best),
            "",
            "| arm | val macro-F1 | val incorrect recall | test macro-F1 | test incorrect recall "
            "| test incorrect recall, real photos (n) | test incorrect precision |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, r in out["arms"].items():
            v, te = r["val"], r["test"]
            lines.append(
                "| %s%s | %.4f | %.3f | %.4f | %.3f | %s (%d) | %.3f |"
                % (
                    k,
                    " (chosen)" if k == best else "",
                    v["macro_f1"],
                    v["incorrect_recall"],
                    te["macro_f1"],
                    te["incorrect_recall"],
                    te["incorrect_recall_real"],
                    te["incorrect_real_n"],
                    te["incorrect_precision"],
                )
            )
        Path(a.md).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
