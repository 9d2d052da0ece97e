"""From model probabilities to a verdict: calibration, the no_face rejector, the alert operating point.

One rule, used for a single face (the classifier), for a person (the tracker's mean over
their frames) and by export/ when it chooses the operating point on validation photos, so
the threshold means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from .bundle import FACE_LABELS, NO_FACE, NON_COMPLIANT, OperatingPoint


def calibrate(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of softmax outputs: softmax(log p / T) (exact, since log p = logits + const)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, None)
    if temperature == 1.0:
        return p / p.sum(axis=-1, keepdims=True)
    z = np.log(p) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Verdict:
    label: str  # one of FACE_LABELS, or NO_FACE when rejected
    score: float  # the probability behind the label (P(alert) split by class for the non-compliant ones)
    probs: Dict[str, float]  # over the three face classes, summing to 1
    no_face: float  # P(no_face), 0 for a model without that output
    alert: float  # P(without_mask) + P(mask_weared_incorrect) over the face classes


def face_probs(p: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Calibrated output vector(s) in the manifest's label order -> (..., 3) over FACE_LABELS, renormalised."""
    idx = [list(labels).index(l) for l in FACE_LABELS if l in labels]
    f = np.asarray(p)[..., idx]
    s = f.sum(axis=-1, keepdims=True)
    return f / np.maximum(s, 1e-12)


def label_for(face3: np.ndarray, threshold: Optional[float], incorrect_weight: float = 1.0) -> str:
    """The verdict for face-class probabilities (with, without, incorrect): argmax when no threshold is set,
    else non-compliant when P(without) + P(incorrect) >= threshold, and then mask_weared_incorrect when
    incorrect_weight * P(incorrect) >= P(without) (which of the two alerts it is; chosen on validation)."""
    if threshold is None:
        return FACE_LABELS[int(np.argmax(face3))]
    if float(face3[1] + face3[2]) >= threshold:
        return FACE_LABELS[2] if incorrect_weight * face3[2] >= face3[1] else FACE_LABELS[1]
    return FACE_LABELS[0]


def face_labels(probs: np.ndarray, labels: Sequence[str], op: OperatingPoint) -> List[str]:
    """Raw outputs (N, len(labels)) -> each face's verdict by the operating point, the no_face output left
    out (what a face would be called if the rejector let it through)."""
    if len(probs) == 0:
        return []
    f3 = face_probs(calibrate(np.asarray(probs), op.temperature), labels)
    return [label_for(v, op.alert_threshold, op.incorrect_weight) for v in f3]


def verdict(calibrated: np.ndarray, labels: Sequence[str], op: OperatingPoint) -> Verdict:
    """One face: `calibrated` is one output vector in manifest order, already temperature-scaled."""
    p = np.asarray(calibrated, dtype=np.float64)
    nf = float(p[list(labels).index(NO_FACE)]) if NO_FACE in labels else 0.0
    f3 = face_probs(p, labels)
    probs = {l: round(float(v), 4) for l, v in zip(FACE_LABELS, f3)}
    alert = float(f3[1] + f3[2])
    if op.no_face_threshold is not None and nf >= op.no_face_threshold:
        return Verdict(NO_FACE, round(nf, 4), probs, round(nf, 4), round(alert, 4))
    lab = label_for(f3, op.alert_threshold, op.incorrect_weight)
    return Verdict(lab, round(float(f3[FACE_LABELS.index(lab)]), 4), probs, round(nf, 4), round(alert, 4))


def is_alert(label: str) -> bool:
    return label in NON_COMPLIANT
