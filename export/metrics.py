"""Classification metrics in plain numpy (no sklearn): used by training, conversion parity and reports."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

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


def macro_f1_of(cm: np.ndarray, scored: Optional[int] = None) -> float:
    """Macro-F1 of a confusion matrix (rows true, columns predicted) over its first `scored` classes (all by
    default: a prediction outside them, e.g. no_face for a face, is only a miss); a class with no support or
    predictions scores 0, as in report()."""
    tp = np.diag(cm).astype(np.float64)
    p = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    r = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f = np.divide(2 * p * r, p + r, out=np.zeros_like(tp), where=(p + r) > 0)
    return float(f[:scored].mean())


def resampled_macro_f1(
    y_true: np.ndarray,
    preds: Sequence[np.ndarray],
    n_classes: int,
    groups: Optional[np.ndarray] = None,
    n: int = 2000,
    seed: int = 0,
    scored: Optional[int] = None,
) -> np.ndarray:
    """(len(preds), n): each prediction's macro-F1 on the same n resamples of the faces, drawn by group
    (faces of one photo, or of one near-duplicate group, move as one: they are not independent)."""
    y = np.asarray(y_true, dtype=np.int64)
    g = np.arange(len(y)) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    ng = int(g.max()) + 1 if len(g) else 0
    k2 = (n_classes, n_classes)
    counts = []
    for p in preds:  # per group, the confusion-matrix counts: a resample is a weighted sum of groups
        c = np.zeros((ng, n_classes * n_classes), np.int64)
        np.add.at(c, (g, y * n_classes + np.asarray(p, dtype=np.int64)), 1)
        counts.append(c)
    rng = np.random.RandomState(seed)
    out = np.empty((len(preds), n))
    for k in range(n):
        w = np.bincount(rng.randint(0, ng, ng), minlength=ng)
        for j, c in enumerate(counts):
            out[j, k] = macro_f1_of((w @ c).reshape(k2), scored)
    return out


def _ends(d: np.ndarray) -> Dict[str, float]:
    """The 95 % interval of resampled values."""
    return {"lo": round(float(np.percentile(d, 2.5)), 4), "hi": round(float(np.percentile(d, 97.5)), 4)}


def bootstrap_interval(
    y_true: np.ndarray,
    pred: np.ndarray,
    n_classes: int,
    groups: Optional[np.ndarray] = None,
    n: int = 2000,
    seed: int = 0,
    scored: Optional[int] = None,
) -> Dict[str, float]:
    """Macro-F1 with its 95 % interval over group resamples: how far one split's number can be trusted."""
    d = resampled_macro_f1(y_true, [pred], n_classes, groups, n, seed, scored)[0]
    return {
        "macro_f1": round(macro_f1_of(confusion(y_true, pred, n_classes), scored), 4),
        **_ends(d),
        "resamples": n,
    }


def paired_bootstrap(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    n_classes: int,
    groups: Optional[np.ndarray] = None,
    n: int = 2000,
    seed: int = 0,
    scored: Optional[int] = None,
) -> Dict[str, float]:
    """How sure is "b beats a" on macro-F1? Both predictions of the same faces are resampled together, by
    group (see resampled_macro_f1). Labels and predictions are class indices below n_classes; macro-F1 is
    over the first `scored` of them (see macro_f1_of).

    Returns the observed difference b - a, its 95 % interval and the share of resamples where b is better:
    a val difference whose interval spans 0 is noise, not a reason to ship."""
    obs = macro_f1_of(confusion(y_true, pred_b, n_classes), scored) - macro_f1_of(
        confusion(y_true, pred_a, n_classes), scored
    )
    ab = resampled_macro_f1(y_true, [pred_a, pred_b], n_classes, groups, n, seed, scored)
    d = ab[1] - ab[0]
    ng = len(np.unique(groups)) if groups is not None else len(np.asarray(y_true))
    return {
        "delta": round(obs, 4),
        **_ends(d),
        "p_better": round(float(np.mean(d > 0)), 4),
        "groups": int(ng),
        "resamples": n,
    }


def _f1_counts(c: np.ndarray) -> np.ndarray:
    """Binary F1 of summed (..., 3) counts (tp, fp, fn); 0 where there is nothing to count."""
    tp, fp, fn = c[..., 0].astype(np.float64), c[..., 1], c[..., 2]
    d = 2 * tp + fp + fn
    return np.divide(2 * tp, d, out=np.zeros_like(tp), where=d > 0)


def _scene_counts(*counts: np.ndarray) -> List[np.ndarray]:
    out = [np.asarray(c, np.int64) for c in counts]
    if any(c.shape != out[0].shape for c in out) or out[0].ndim != 2 or out[0].shape[1] != 3:
        raise ValueError(
            "per-scene counts must be (scenes, 3) arrays of one shape: %s" % " vs ".join(str(c.shape) for c in out)
        )
    return out


def _scene_weights(scenes: int, n: int, seed: int) -> np.ndarray:
    """(n, scenes): how often each scene is drawn in each of n resamples with replacement."""
    rng = np.random.RandomState(seed)
    return np.stack([np.bincount(rng.randint(0, scenes, scenes), minlength=scenes) for _ in range(n)])


def bootstrap_f1(counts: np.ndarray, n: int = 2000, seed: int = 0) -> Dict[str, float]:
    """A binary F1 counted per scene (`counts`: (scenes, 3) of tp, fp, fn) with its 95 % interval over scene
    resamples (one photo's alerts and misses move together): how far one split's F1 can be trusted."""
    (c,) = _scene_counts(counts)
    return {
        "f1": round(float(_f1_counts(c.sum(0))), 4),
        **_ends(_f1_counts(_scene_weights(len(c), n, seed) @ c)),
        "scenes": int(len(c)),
        "resamples": n,
    }


def paired_bootstrap_f1(counts_a: np.ndarray, counts_b: np.ndarray, n: int = 2000, seed: int = 0) -> Dict[str, float]:
    """Paired difference of a binary F1 counted per scene: `counts_*` are (scenes, 3) arrays of (tp, fp, fn)
    of the same scenes, in the same order (one photo's alerts and misses move together). F1 of the summed
    counts, b - a, with its 95 % interval over scene resamples and the share where b is better."""
    a, b = _scene_counts(counts_a, counts_b)
    w = _scene_weights(len(a), n, seed)
    d = _f1_counts(w @ b) - _f1_counts(w @ a)
    return {
        "delta": round(float(_f1_counts(b.sum(0)) - _f1_counts(a.sum(0))), 4),
        **_ends(d),
        "p_better": round(float(np.mean(d > 0)), 4),
        "scenes": int(len(a)),
        "resamples": n,
    }


def wilson(k: int, n: int, z: float = 1.96) -> Tuple[float, float]:
    """95 % Wilson score interval of a proportion k / n (people decided right, faces found): honest at small
    n and at 0 or n, where the normal approximation is not."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / float(n)
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / d
    return (round(max(0.0, c - h), 4), round(min(1.0, c + h), 4))


def group_folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index per crop: whole groups dealt to k folds in a seeded random order (largest groups first, each
    to the fold with the fewest crops so far, so the folds come out near equal in size)."""
    if k < 2:
        raise ValueError("k = %d folds: give 2 or more" % k)
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(names) < k:
        raise ValueError("%d groups cannot make %d folds" % (len(names), k))
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(names))
    order = order[np.argsort(-counts[order], kind="stable")]
    fold_of_group = np.zeros(len(names), dtype=np.int64)
    sizes = np.zeros(k, dtype=np.int64)
    for g in order:
        f = int(np.argmin(sizes))
        fold_of_group[g] = f
        sizes[f] += counts[g]
    return fold_of_group[inverse]
