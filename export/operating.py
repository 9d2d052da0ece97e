"""Choosing the operating point on validation photos: temperature, no_face rejection, alert threshold.

All three are chosen on the *real* validation crops (andrewmvd, ilc2021, chandrikadeb7):
MaskedFace-Net's synthetic masks help training but never decide. The device applies them
with `edge.verdict`, the same code used here, so the numbers in the manifest are the
numbers a kiosk lives by.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from edge.bundle import FACE_LABELS, NO_FACE
from edge.verdict import calibrate, face_probs

TEMPERATURES = np.round(np.concatenate([np.arange(0.5, 1.0, 0.05), np.arange(1.0, 4.01, 0.1)]), 3)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
    return float(-np.mean(np.log(p)))


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence (equal-width bins)."""
    conf = probs.max(axis=1)
    right = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            total += sel.mean() * abs(right[sel].mean() - conf[sel].mean())
    return round(float(total), 4)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """The T (grid 0.5..4) minimising validation NLL; ECE before and after."""
    losses = [nll(calibrate(probs, float(t)), labels) for t in TEMPERATURES]
    t = float(TEMPERATURES[int(np.argmin(losses))])
    return {
        "temperature": t,
        "nll_before": round(nll(calibrate(probs, 1.0), labels), 4),
        "nll_after": round(min(losses), 4),
        "ece_before": ece(calibrate(probs, 1.0), labels),
        "ece_after": ece(calibrate(probs, t), labels),
    }


def choose_no_face(
    cal: np.ndarray, labels: np.ndarray, output_labels: Sequence[str], max_face_loss: float = 0.01
) -> Dict[str, Any]:
    """Lowest P(no_face) threshold that rejects at most `max_face_loss` of the real validation faces."""
    k = list(output_labels).index(NO_FACE)
    face = labels != k
    pf, pn = cal[face, k], cal[~face, k]
    best: Optional[float] = None
    for r in np.round(np.arange(0.30, 0.991, 0.01), 2):
        if np.mean(pf >= r) <= max_face_loss:
            best = float(r)
            break
    if best is None:
        best = 0.99
    return {
        "no_face_threshold": best,
        "faces_rejected": round(float(np.mean(pf >= best)), 4),
        "no_face_rejected": round(float(np.mean(pn >= best)), 4) if len(pn) else None,
        "faces": int(face.sum()),
        "no_face_crops": int((~face).sum()),
        "max_face_loss": max_face_loss,
    }


def alert_scores(cal: np.ndarray, output_labels: Sequence[str]) -> np.ndarray:
    """P(without) + P(incorrect) over the face classes."""
    f3 = face_probs(cal, output_labels)
    return f3[:, 1] + f3[:, 2]


ALERT_OBJECTIVES = ("f1", "recall")


def choose_alert(
    cal: np.ndarray,
    labels: np.ndarray,
    output_labels: Sequence[str],
    max_false_alarm: float = 0.03,
    objective: str = "f1",
) -> Dict[str, Any]:
    """Threshold on P(alert) for the real validation *faces*: among thresholds that flag at most
    `max_false_alarm` of the with_mask faces, the best alert F1 (`objective` "f1") or the most non-compliant
    faces flagged ("recall": the lowest such threshold, the floor itself is the operating point); if none
    keeps the floor, the best F1 overall, said so."""
    if objective not in ALERT_OBJECTIVES:
        raise ValueError("alert objective %r: one of %s" % (objective, ", ".join(ALERT_OBJECTIVES)))
    idx = {l: list(output_labels).index(l) for l in FACE_LABELS}
    face = np.isin(labels, list(idx.values()))
    s = alert_scores(cal[face], output_labels)
    y = labels[face]
    bad = (y == idx["without_mask"]) | (y == idx["mask_weared_incorrect"])
    good = y == idx["with_mask"]
    rows = []
    for t in np.round(np.arange(0.05, 0.96, 0.01), 2):
        flag = s >= t
        tp, fp, fn = int(np.sum(flag & bad)), int(np.sum(flag & ~bad)), int(np.sum(~flag & bad))
        p = tp / float(tp + fp) if tp + fp else 0.0
        r = tp / float(tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        fa = float(np.mean(flag[good])) if good.any() else 0.0
        rows.append((float(t), f1, p, r, fa))
    ok = [row for row in rows if row[4] <= max_false_alarm]
    floor_met = bool(ok)
    if ok and objective == "recall":
        t, f1, p, r, fa = max(ok, key=lambda row: (row[3], row[1], row[0]))  # of equal recall, the higher threshold
    else:
        t, f1, p, r, fa = max(ok or rows, key=lambda row: (row[1], -abs(row[0] - 0.5)))
    return {
        "alert_threshold": t,
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(f1, 4),
        "with_mask_flagged": round(fa, 4),
        "max_false_alarm": max_false_alarm,
        "objective": objective,
        "false_alarm_floor_met": floor_met,
        "faces": int(face.sum()),
    }


def choose_incorrect_weight(
    cal: np.ndarray, labels: np.ndarray, output_labels: Sequence[str], threshold: float
) -> Dict[str, Any]:
    """Among the faces flagged at `threshold`, the weight w (incorrect when w * P(incorrect) >= P(without))
    that gives the best balanced accuracy (mean recall) of without_mask and mask_weared_incorrect on the real
    validation faces. Mean recall, not F1: validation holds 8 bare faces per badly worn mask, a door sees
    another mix, and F1 of the rare class would tune the weight to this set's prior. Which alert it is does
    not change who is flagged; a mask on the chin looks much like no mask."""
    f3 = face_probs(cal, output_labels)
    k_wo, k_in = list(output_labels).index("without_mask"), list(output_labels).index("mask_weared_incorrect")
    flagged = (f3[:, 1] + f3[:, 2]) >= threshold
    best = (1.0, -1.0)
    for w in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0):
        pred_in = flagged & (w * f3[:, 2] >= f3[:, 1])
        pred_wo = flagged & ~pred_in
        recalls = []
        for pred, k in ((pred_wo, k_wo), (pred_in, k_in)):
            n = np.sum(labels == k)
            recalls.append(np.sum(pred & (labels == k)) / float(n) if n else 0.0)
        if np.mean(recalls) > best[1] + 1e-9:
            best = (w, float(np.mean(recalls)))
    return {"incorrect_weight": best[0], "mean_recall_without_incorrect": round(best[1], 4)}


def choose(
    probs: np.ndarray,
    labels: np.ndarray,
    output_labels: Sequence[str],
    *,
    max_face_loss: float = 0.01,
    max_false_alarm: float = 0.03,
    alert_objective: str = "f1",
) -> Dict[str, Any]:
    """The manifest's `operating_point` from raw model outputs on the real validation crops."""
    cal_info = fit_temperature(probs, labels)
    cal = calibrate(probs, cal_info["temperature"])
    out: Dict[str, Any] = {"temperature": cal_info["temperature"]}
    val: Dict[str, Any] = {"calibration": cal_info, "crops": int(len(labels))}
    if NO_FACE in output_labels:
        nf = choose_no_face(cal, labels, output_labels, max_face_loss)
        out["no_face_threshold"] = nf["no_face_threshold"]
        val["no_face"] = nf
        k = list(output_labels).index(NO_FACE)
        kept = cal[:, k] < nf["no_face_threshold"]
        cal, labels = cal[kept], labels[kept]
    al = choose_alert(cal, labels, output_labels, max_false_alarm, alert_objective)
    out["alert_threshold"] = al["alert_threshold"]
    val["alert"] = al
    iw = choose_incorrect_weight(cal, labels, output_labels, al["alert_threshold"])
    out["incorrect_weight"] = iw["incorrect_weight"]
    val["incorrect_weight"] = iw
    out["validation"] = val
    out["rule"] = (
        "p = softmax(log(p_model) / temperature); no_face if P(no_face) >= no_face_threshold; else "
        "non-compliant if P(without_mask) + P(mask_weared_incorrect) (over the face classes) >= "
        "alert_threshold, as the likelier of the two; else with_mask"
    )
    out["chosen_on"] = "validation crops of the real sources only"
    return out


def predict_labels(probs: np.ndarray, output_labels: Sequence[str], op: Dict[str, Any]) -> np.ndarray:
    """Index into output_labels of each crop's verdict under an operating point (edge.verdict's rule)."""
    from edge.bundle import OperatingPoint
    from edge.verdict import verdict

    o = OperatingPoint(
        temperature=float(op.get("temperature", 1.0)),
        alert_threshold=op.get("alert_threshold"),
        incorrect_weight=float(op.get("incorrect_weight", 1.0)),
        no_face_threshold=op.get("no_face_threshold") if NO_FACE in output_labels else None,
    )
    cal = calibrate(probs, o.temperature)
    return np.array([list(output_labels).index(verdict(p, output_labels, o).label) for p in cal], dtype=np.int64)


def face_report(pred: np.ndarray, labels: np.ndarray, output_labels: Sequence[str]) -> Dict[str, Any]:
    """What the control room lives with, on crops: per face class precision/recall/F1 (a face rejected as
    no_face counts as a miss), macro-F1 over the three face classes, the share of with_mask faces flagged
    non-compliant, faces wrongly rejected, and no_face crops rejected."""
    names = list(output_labels)
    idx = {l: names.index(l) for l in FACE_LABELS}
    face = np.isin(labels, list(idx.values()))
    out: Dict[str, Any] = {"faces": int(face.sum()), "per_class": {}}
    f1s = []
    # face classes are scored on the face crops (a real face rejected as no_face is a miss); the no_face
    # crops (detector false positives) are scored apart, below
    fl, fp_ = labels[face], pred[face]
    for l, k in idx.items():
        tp = int(np.sum((fp_ == k) & (fl == k)))
        fp = int(np.sum((fp_ == k) & (fl != k)))
        fn = int(np.sum((fp_ != k) & (fl == k)))
        p = tp / float(tp + fp) if tp + fp else 0.0
        r = tp / float(tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        if np.sum(fl == k):
            f1s.append(f)  # a class this source does not have does not count in its macro-F1
        out["per_class"][l] = {
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(f, 4),
            "support": int(np.sum(fl == k)),
        }
    out["macro_f1"] = round(float(np.mean(f1s)), 4) if f1s else None
    wm = labels == idx["with_mask"]
    bad_pred = (pred == idx["without_mask"]) | (pred == idx["mask_weared_incorrect"])
    bad_true = (labels == idx["without_mask"]) | (labels == idx["mask_weared_incorrect"])
    out["with_mask_flagged"] = round(float(np.mean(bad_pred[wm])), 4) if wm.any() else None
    bp, bt = bad_pred[face], bad_true[face]
    tp, fp, fn = int(np.sum(bp & bt)), int(np.sum(bp & ~bt)), int(np.sum(~bp & bt))
    p = tp / float(tp + fp) if tp + fp else 0.0
    r = tp / float(tp + fn) if tp + fn else 0.0
    out["alert"] = {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }
    if NO_FACE in names:
        k = names.index(NO_FACE)
        out["faces_rejected"] = round(float(np.mean(pred[face] == k)), 4) if face.any() else None
        neg = labels == k
        out["no_face_crops"] = int(neg.sum())
        out["no_face_rejected"] = round(float(np.mean(pred[neg] == k)), 4) if neg.any() else None
    out["confusion"] = {
        l: {m: int(np.sum((labels == names.index(l)) & (pred == names.index(m)))) for m in names} for l in names
    }
    return out


def by_source(
    pred: np.ndarray, labels: np.ndarray, sources: np.ndarray, output_labels: Sequence[str], real_sources: Sequence[str]
) -> Dict[str, Any]:
    """face_report for all real sources together, then each source, real ones first."""
    out: Dict[str, Any] = {}
    real = np.isin(sources, list(real_sources))
    if real.any():
        out["real (all)"] = face_report(pred[real], labels[real], output_labels)
    names = [s for s in real_sources if s in set(sources)] + sorted(set(sources) - set(real_sources))
    for s in names:
        sel = sources == s
        out[s] = face_report(pred[sel], labels[sel], output_labels)
    return out
