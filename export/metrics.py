"""Classification metrics in plain numpy (no sklearn): used by training, conversion parity and reports."""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m


def report(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> Dict:
    cm = confusion(y_true, y_pred, len(labels))
    per = {}
    f1s = []
    for i, name in enumerate(labels):
        tp = cm[i, i]
        fp = cm[:, i].sum() - tp
        fn = cm[i, :].sum() - tp
        p = tp / float(tp + fp) if tp + fp else 0.0
        r = tp / float(tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per[name] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": int(cm[i].sum())}
        f1s.append(f)
    acc = float(np.trace(cm)) / max(1, cm.sum())
    return {
        "macro_f1": round(float(np.mean(f1s)), 4),
        "accuracy": round(acc, 4),
        "per_class": per,
        "confusion": cm.tolist(),
        "labels": list(labels),
        "n": int(cm.sum()),
    }


def binary_f1(tp: int, fp: int, fn: int) -> Dict[str, float]:
    p = tp / float(tp + fp) if tp + fp else 0.0
    r = tp / float(tp + fn) if tp + fn else 0.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }
