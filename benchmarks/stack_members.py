#!/usr/bin/env python3
"""Could a learned combination of the members beat their plain mean? Measured out of fold on val.

    .venv/bin/python benchmarks/stack_members.py work/runs/o-v4 work/runs/o-v6 work/runs/o-v7 work/runs/o-p10b \
        --crops work/crops112x.npz --split-run work/runs/v6 \
        --json benchmarks/results/choices-val/stack-o4-val.json

Every ensemble shipped is the plain mean of its members' probabilities. A *stack* is a multinomial logistic
regression on the members' log-probabilities (members x classes inputs, one output per class), fit on val crops
(every label, as the members were trained) with a small L2 pull. It is scored out of fold: the val crops are
dealt to folds by whole near-duplicate groups (`export.metrics.group_folds`), each fold scored by a stack fit on
the others, so no crop is scored by a stack that saw it. Counted as `member_check.py` counts (argmax): real val
faces right, real incorrectly worn right, real with_mask faces called incorrectly worn; for the plain mean and
for the stack on the same crops. Test is not read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fit_stack(x: np.ndarray, y: np.ndarray, classes: int, l2: float = 1e-3, steps: int = 3000, lr: float = 0.5):
    """Multinomial logistic regression by full-batch gradient descent with momentum: weights (inputs + 1, classes),
    started at the plain mean of log-probabilities (each member's column of a class weighted equally)."""
    n, d = x.shape
    members = d // classes
    w = np.zeros((d + 1, classes))
    for m in range(members):
        w[m * classes : (m + 1) * classes] = np.eye(classes) / members
    xb = np.hstack([x, np.ones((n, 1))])
    onehot = np.eye(classes)[y]
    v = np.zeros_like(w)
    for _ in range(steps):
        z = xb @ w
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = xb.T @ (p - onehot) / n
        g[:-1] += l2 * w[:-1]
        v = 0.9 * v - lr * g
        w += v
    return w


def apply_stack(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = np.hstack([x, np.ones((len(x), 1))]) @ w
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def counts(pred: np.ndarray, lab: np.ndarray, real_face: np.ndarray, inc: np.ndarray, with_mask: np.ndarray):
    from export.datasets import LABELS

    return {
        "real_faces_right": int((pred[real_face] == lab[real_face]).sum()),
        "real_faces": int(real_face.sum()),
        "real_incorrect_right": int((pred[inc] == lab[inc]).sum()),
        "real_incorrect": int(inc.sum()),
        "real_with_mask_called_incorrect": int((pred[with_mask] == LABELS.index("mask_weared_incorrect")).sum()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="training runs (each with model.keras), none trained on val")
    ap.add_argument("--crops", required=True)
    ap.add_argument("--split-run", required=True, help="whose split.npz picks the val crops")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=44)
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    from edge.errors import EX_NOINPUT, MaskwatchError

    for r in a.runs:
        if not (Path(r) / "model.keras").exists():
            raise MaskwatchError("%s: no model.keras" % r, EX_NOINPUT)
    import keras

    from export.crops import Split, load, split_arrays
    from export.datasets import LABELS, REAL_SOURCES
    from export.metrics import group_folds
    from export.train import predict

    crops = load(Path(a.crops))
    images, lab, va = split_arrays(Path(a.split_run), crops, Split.VAL)
    src = crops["sources"][va]
    real_face = np.isin(src, REAL_SOURCES) & (lab < LABELS.index("no_face"))
    inc = real_face & (lab == LABELS.index("mask_weared_incorrect"))
    with_mask = real_face & (lab == LABELS.index("with_mask"))
    probs = []
    for r in a.runs:
        model = keras.models.load_model(str(Path(r) / "model.keras"), compile=False)
        probs.append(predict(model, images, int(images.shape[1])))
        print("predicted %s" % r, flush=True)
    classes = probs[0].shape[1]
    x = np.hstack([np.log(np.clip(p, 1e-6, 1.0)) for p in probs])
    mean = np.mean(probs, axis=0)
    folds = group_folds(crops["groups"][va], a.folds, a.seed)
    oof = np.zeros_like(mean)
    for f in range(a.folds):
        out = folds == f
        oof[out] = apply_stack(fit_stack(x[~out], lab[~out], classes, a.l2), x[out])
    w_all = fit_stack(x, lab, classes, a.l2)
    doc = {
        "runs": a.runs,
        "crops": a.crops,
        "split_run": a.split_run,
        "val_crops": int(len(lab)),
        "folds": a.folds,
        "seed": a.seed,
        "l2": a.l2,
        "mean": counts(mean.argmax(1), lab, real_face, inc, with_mask),
        "stack_out_of_fold": counts(oof.argmax(1), lab, real_face, inc, with_mask),
        "stack_in_sample": counts(apply_stack(w_all, x).argmax(1), lab, real_face, inc, with_mask),
        # each member's weight on its own vote for each class, fit on all val crops (how the stack leans)
        "own_class_weights": {
            r: [round(float(w_all[m * classes + c, c]), 3) for c in range(classes)] for m, r in enumerate(a.runs)
        },
        "labels": list(LABELS),
        "command": " ".join(["benchmarks/stack_members.py"] + sys.argv[1:]),
    }
    for k in ("mean", "stack_out_of_fold", "stack_in_sample"):
        print(k, json.dumps(doc[k]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
