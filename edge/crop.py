"""The one face crop: what the classifier sees of a detector (or annotation) box.

Used by the device (`MaskClassifier.preprocess`), by training (`export.datasets`), by
int8 calibration and by evaluation, so a face is the same picture everywhere: the
box grown by the bundle's margin on each side, clamped to the frame, resized once
to the model's input (INTER_AREA when shrinking, bilinear when growing), RGB.
Training stores crops at the model's input size, so nothing resizes a second time.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from .types import Box, expand_box

RESIZE_RULE = "area when shrinking, bilinear when growing"


def resize_rgb(region_bgr: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """BGR region -> RGB uint8 of (height, width) = size, by the one resize rule."""
    import cv2

    h, w = size
    interp = cv2.INTER_AREA if min(region_bgr.shape[:2]) > min(h, w) else cv2.INTER_LINEAR
    return cv2.cvtColor(cv2.resize(region_bgr, (w, h), interpolation=interp), cv2.COLOR_BGR2RGB)


def crop_face(image_bgr: np.ndarray, box: Box, margin: float, size: Tuple[int, int]) -> np.ndarray:
    """One face: `box` grown by `margin` of its size per side, clamped, resized to `size`, RGB uint8."""
    fh, fw = image_bgr.shape[:2]
    x1, y1, x2, y2 = expand_box(box, margin, fw, fh)
    region = image_bgr[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)]
    return resize_rgb(region, size)


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
