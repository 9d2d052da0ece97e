"""The detector-box fit: how res10's face box sits against the annotated one, measured on training scenes.

Training cuts VOC faces at their annotated boxes; the device cuts res10's, which are ~11 % taller and start
~16 % of a face higher. The fit (per side, a fraction of the detector box's width or height: the median
over every annotated training face res10 finds) lets the device move its boxes into the convention the
classifier learned (edge.crop.fit_box). Val and test scenes never take part.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

from .datasets import iter_scenes, normalise_label

log = logging.getLogger(__name__)

SIDES = ("left", "top", "right", "bottom")


def offsets(gt_box, det_box) -> List[float]:
    """The four shifts that take det_box onto gt_box, as fractions of det_box's width/height."""
    dw, dh = det_box[2] - det_box[0], det_box[3] - det_box[1]
    return [
        (gt_box[0] - det_box[0]) / dw,
        (gt_box[1] - det_box[1]) / dh,
        (gt_box[2] - det_box[2]) / dw,
        (gt_box[3] - det_box[3]) / dh,
    ]


def measure(
    scene_dirs: Sequence[Path],
    scene_ids: Dict[str, List[str]],
    detector,
    min_face: int = 20,
    iou_thr: float = 0.4,
) -> Dict[str, Any]:
    """Median offsets over the matched faces of these scenes ({} of SIDES plus counts)."""
    from .evaluate import match

    offs: List[List[float]] = []
    scenes = 0
    for _name, _sid, img, objs in iter_scenes(scene_dirs, scene_ids):
        gt = [b for n, b in objs if normalise_label(n) and min(b[2] - b[0], b[3] - b[1]) >= min_face]
        if not gt:
            continue
        scenes += 1
        faces = detector.detect(img)
        for g, d in match(gt, [f.box for f in faces], iou_thr).items():
            offs.append(offsets(gt[g], faces[d].box))
    if not offs:
        raise ValueError("no annotated face was found by the detector in %d scenes" % scenes)
    a = np.array(offs)
    med = np.median(a, axis=0)
    out: Dict[str, Any] = {k: round(float(v), 4) for k, v in zip(SIDES, med)}
    out["faces"] = int(len(a))
    out["scenes"] = scenes
    out["iqr"] = {k: round(float(q), 4) for k, q in zip(SIDES, np.subtract(*np.percentile(a, [75, 25], axis=0)))}
    return out
