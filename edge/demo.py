"""A demo entrance clip made on the spot from a public-domain portrait (no network, no shared data).

The portrait is NASA's photo of astronaut Eileen Collins that scikit-image ships
(fetched from PyPI by the asset step). Three visitors walk in, stand at the
kiosk and leave: one without a mask, one with a drawn surgical mask, one with the
mask pulled below the nose; the doorway is empty in between, as it is most of the day.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

# The face in astronaut.png (512x512), as the res10 detector boxes it.
FACE_BOX = (179, 58, 271, 177)
HEAD = (130, 10, 330, 240)  # the region cut out as the "visitor"


@dataclass
class Visit:
    mask: str  # "none" | "mask" | "below_nose"
    enter: float  # seconds
    leave: float


DEFAULT_VISITS = (Visit("none", 1.0, 5.0), Visit("mask", 7.0, 11.0), Visit("below_nose", 13.0, 17.0))


def draw_mask(head: np.ndarray, style: str, below_nose_top: float = 0.74) -> np.ndarray:
    """Draw a light-blue pleated mask on the head image (coordinates relative to HEAD)."""
    import cv2

    out = head.copy()
    if style == "none":
        return out
    fx1, fy1, fx2, fy2 = (FACE_BOX[0] - HEAD[0], FACE_BOX[1] - HEAD[1], FACE_BOX[2] - HEAD[0], FACE_BOX[3] - HEAD[1])
    w, h = fx2 - fx1, fy2 - fy1
    top = fy1 + int(h * (0.42 if style == "mask" else below_nose_top))  # over the nose, or below it
    bottom = fy2 + int(h * 0.08)
    pts = np.array(
        [
            [fx1 - int(w * 0.02), top + int(h * 0.05)],
            [fx1 + int(w * 0.25), top],
            [fx2 - int(w * 0.25), top],
            [fx2 + int(w * 0.02), top + int(h * 0.05)],
            [fx2 - int(w * 0.05), bottom - int(h * 0.08)],
            [fx1 + int(w * 0.5), bottom],
            [fx1 + int(w * 0.05), bottom - int(h * 0.08)],
        ],
        dtype=np.int32,
    )
    cv2.fillPoly(out, [pts], (235, 215, 170))  # BGR light blue
    for k in (1, 2, 3):
        y = top + (bottom - top) * k // 4
        cv2.line(out, (fx1 + int(w * 0.06), y), (fx2 - int(w * 0.06), y), (205, 185, 140), 2)
    cv2.polylines(out, [pts], True, (190, 170, 120), 2)
    for sx in (fx1 - int(w * 0.02), fx2 + int(w * 0.02)):  # ear loops
        cv2.line(
            out,
            (sx, top + int(h * 0.05)),
            (sx + (-1 if sx < fx1 else 1) * int(w * 0.1), fy1 + int(h * 0.35)),
            (240, 240, 240),
            2,
        )
    return out


def background(width: int, height: int) -> np.ndarray:
    """A plain corridor: wall, floor, a door frame."""
    import cv2

    bg = np.zeros((height, width, 3), np.uint8)
    bg[:] = (200, 205, 210)
    bg[int(height * 0.75) :] = (120, 130, 140)
    cv2.rectangle(bg, (int(width * 0.3), int(height * 0.05)), (int(width * 0.7), int(height * 0.75)), (90, 100, 110), 6)
    return bg


def render(
    face_bgr: np.ndarray,
    t: float,
    visits=DEFAULT_VISITS,
    size: Tuple[int, int] = (640, 480),
    heads: Optional[dict] = None,
) -> np.ndarray:
    """The frame at time t: background plus whichever visitor is in the doorway (slides in, stands, slides out)."""
    width, height = size
    frame = background(width, height)
    for v in visits:
        if not (v.enter <= t < v.leave):
            continue
        head = heads[v.mask] if heads else draw_mask(face_bgr[HEAD[1] : HEAD[3], HEAD[0] : HEAD[2]], v.mask)
        hh, hw = head.shape[:2]
        walk = 0.8  # seconds to walk in or out
        cx_stand = (width - hw) // 2
        if t < v.enter + walk:
            x = int(-hw + (cx_stand + hw) * (t - v.enter) / walk)
        elif t > v.leave - walk:
            x = int(cx_stand + (width - cx_stand) * (t - (v.leave - walk)) / walk)
        else:
            x = cx_stand
        y = int(height * 0.12)
        x0, x1 = max(0, x), min(width, x + hw)
        if x1 > x0:
            frame[y : y + hh, x0:x1] = head[:, x0 - x : x1 - x]
    return frame


def make_clip(
    face_png: Path,
    out: Path,
    *,
    fps: float = 15.0,
    seconds: float = 18.0,
    visits=DEFAULT_VISITS,
    size: Tuple[int, int] = (640, 480),
) -> Path:
    import cv2

    from .errors import SourceError

    face = cv2.imread(str(face_png))
    if face is None:
        raise SourceError("demo face image %s cannot be read" % face_png)
    heads = {m: draw_mask(face[HEAD[1] : HEAD[3], HEAD[0] : HEAD[2]], m) for m in ("none", "mask", "below_nose")}
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise SourceError("cannot write %s (OpenCV has no mp4v writer here)" % out)
    for i in range(int(seconds * fps)):
        writer.write(render(face, i / fps, visits, size, heads))
    writer.release()
    return out


def expected_verdicts(visits=DEFAULT_VISITS) -> List[str]:
    return [
        {"none": "without_mask", "mask": "with_mask", "below_nose": "mask_weared_incorrect"}[v.mask] for v in visits
    ]
