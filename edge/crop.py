"""The one face crop: what the classifier sees of a detector (or annotation) box.

Used by the device (`MaskClassifier.preprocess`), by training (`export.datasets`), by
int8 calibration and by evaluation, so a face is the same picture everywhere: the
box grown by the bundle's margin on each side, clamped to the frame, resized once
to the model's input (INTER_AREA when shrinking, bilinear when growing), RGB.
Training stores crops at the model's input size, so nothing resizes a second time.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .types import Box, Face, expand_box

RESIZE_RULE = "area when shrinking, bilinear when growing"


def resize_rgb(region_bgr: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """BGR region -> RGB uint8 of (height, width) = size, by the one resize rule."""
    import cv2

    h, w = size
    interp = cv2.INTER_AREA if min(region_bgr.shape[:2]) > min(h, w) else cv2.INTER_LINEAR
    return cv2.cvtColor(cv2.resize(region_bgr, (w, h), interpolation=interp), cv2.COLOR_BGR2RGB)


BoxFit = Tuple[float, float, float, float]  # left, top, right, bottom: shifts as fractions of the box's w/h


def fit_box(box: Box, fit: Optional[BoxFit]) -> Box:
    """A detector box in the annotation convention the classifier was trained on.

    res10's box is taller than an annotated face and starts higher (forehead in, chin out); the
    bundle's `input.detector_box_fit` (export: median over the run's training scenes) moves each
    side by a fraction of the box's width or height. None (or all zeros) leaves the box as it is."""
    if not fit:
        return box
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    l, t, r, b = fit
    return (int(round(x1 + l * w)), int(round(y1 + t * h)), int(round(x2 + r * w)), int(round(y2 + b * h)))


View = Tuple[float, float]  # (scale, shift): the box scaled about its centre, then moved down by shift x its height
IDENTITY_VIEW: View = (1.0, 0.0)


def view_box(box: Box, view: View) -> Box:
    """The box of one test-time view of a face: `scale` about its centre, then `shift` of its height down.
    (1.0, 0.0) is the box itself. Averaging a few such views makes a verdict less dependent on exactly
    where the detector put the box (the bundle's `operating_point.views`, chosen on validation)."""
    if tuple(view) == IDENTITY_VIEW:
        return box
    scale, shift = view
    x1, y1, x2, y2 = box
    w, h = (x2 - x1) * scale, (y2 - y1) * scale
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0 + shift * (y2 - y1)
    return (int(round(cx - w / 2.0)), int(round(cy - h / 2.0)), int(round(cx + w / 2.0)), int(round(cy + h / 2.0)))


def crop_face(image_bgr: np.ndarray, box: Box, margin: float, size: Tuple[int, int]) -> np.ndarray:
    """One face: `box` grown by `margin` of its size per side, clamped, resized to `size`, RGB uint8."""
    fh, fw = image_bgr.shape[:2]
    x1, y1, x2, y2 = expand_box(box, margin, fw, fh)
    region = image_bgr[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)]
    return resize_rgb(region, size)


def photo_face(
    image_bgr: np.ndarray,
    faces: Sequence[Face],
    margin: float,
    size: Tuple[int, int],
    fit: Optional[BoxFit],
    min_score: float,
) -> Tuple[np.ndarray, Box, str]:
    """The face of a photo of one person, cut as the folder-per-class training sets were cut: the detector's
    highest-scoring box at `min_score` or more, moved by the bundle's `fit` and grown by `margin` ("detector");
    where there is none, the whole image with no margin ("whole": most such photos are tight crops of a masked
    face, which res10 often misses). (crop RGB uint8, the detector's box or the whole image, how)."""
    found = [f for f in faces if f.det_score >= min_score]
    if found:
        best = max(found, key=lambda f: f.det_score)
        return crop_face(image_bgr, fit_box(best.box, fit), margin, size), best.box, "detector"
    h, w = image_bgr.shape[:2]
    return crop_face(image_bgr, (0, 0, w, h), 0.0, size), (0, 0, w, h), "whole"


def crop_faces(image_bgr: np.ndarray, boxes: Sequence[Box], margin: float, size: Tuple[int, int]) -> np.ndarray:
    """A batch (N, H, W, 3) of `crop_face`."""
    out = np.empty((len(boxes), size[0], size[1], 3), dtype=np.uint8)
    for i, box in enumerate(boxes):
        out[i] = crop_face(image_bgr, box, margin, size)
    return out


def resize_crops_rgb(images_rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Already-cut RGB crops to another size by the same rule (a no-op copy when the size matches)."""
    if images_rgb.shape[1:3] == tuple(size):
        return np.ascontiguousarray(images_rgb)
    out = np.empty((len(images_rgb), size[0], size[1], 3), dtype=np.uint8)
    for i, im in enumerate(images_rgb):
        out[i] = resize_rgb(np.ascontiguousarray(im[..., ::-1]), size)
    return out
