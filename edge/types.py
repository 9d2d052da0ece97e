"""Small records that flow one way through the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

Box = Tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR uint8, as OpenCV delivers it
    index: int  # frame number since the source opened
    time: float  # wall-clock seconds (time.time()) when captured
    source: str = ""


@dataclass(frozen=True)
class Face:
    box: Box
    det_score: float
    label: str = ""
    score: float = 0.0
    probs: Dict[str, float] = field(default_factory=dict)
    no_face: float = 0.0  # P(no_face) from the rejector output, when the bundle has one
    sharpness: Optional[float] = None  # 0..1 from the classifier's crop (variance of the Laplacian, scaled)


@dataclass(frozen=True)
class Decision:
    """One verdict for one tracked person: what becomes an MQTT event."""

    track_id: int
    label: str
    confidence: float
    probs: Dict[str, float]
    box: Box
    frame_index: int
    time: float
    votes: int
    first_seen: float
    snapshot: Optional[bytes] = None
    decided_by: str = "evidence"  # "evidence": enough good views agreed | "track_end": the person left first
    alert: float = 0.0  # the person's calibrated P(without_mask) + P(mask_weared_incorrect)


@dataclass(frozen=True)
class Counts:
    window_start: float
    window_end: float
    counts: Dict[str, int]


def clamp_box(box: Box, width: int, height: int) -> Box:
    x1, y1, x2, y2 = box
    return (max(0, min(x1, width - 1)), max(0, min(y1, height - 1)), max(0, min(x2, width)), max(0, min(y2, height)))


def iou(a: Box, b: Box) -> float:
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    iw, ih = max(0, ix2 - ix1), max(0, iy2 - iy1)
    inter = iw * ih
    if inter == 0:
        return 0.0
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / float(area_a + area_b - inter)


def share_inside(box: Sequence[float], region: Sequence[float]) -> float:
    """The share of `box`'s area that lies inside `region` (both x1, y1, x2, y2)."""
    x1, y1, x2, y2 = box
    iw = max(0.0, min(x2, region[2]) - max(x1, region[0]))
    ih = max(0.0, min(y2, region[3]) - max(y1, region[1]))
    return iw * ih / max(1.0, float((x2 - x1) * (y2 - y1)))


def greedy_assign(pairs: List[Tuple[float, int, int]]) -> Dict[int, int]:
    """One-to-one matching from (score, a, b) candidates, best score first: returns {a: b}.

    Shared by the tracker (tracks to faces) and the scene evaluation (annotations to detections)."""
    used_a, used_b, out = set(), set(), {}
    for _, a, b in sorted(pairs, reverse=True):
        if a in used_a or b in used_b:
            continue
        used_a.add(a)
        used_b.add(b)
        out[a] = b
    return out


def expand_box(box: Box, margin: float, width: int, height: int) -> Box:
    """Grow a face box by `margin` of its size on each side (the crop the classifier was trained on)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    dx, dy = w * margin, h * margin
    return clamp_box(
        (int(round(x1 - dx)), int(round(y1 - dy)), int(round(x2 + dx)), int(round(y2 + dy))), width, height
    )
