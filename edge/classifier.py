"""The mask classifier, in the OpenCV-zoo manner: `preprocess` -> `infer` -> `postprocess`.

Everything it needs to know about the model (labels in order, input size, crop
margin, tensor quantization) comes from the bundle's manifest.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import backends
from .bundle import Bundle, Variant
from .types import Box, Face, expand_box

log = logging.getLogger(__name__)

# What each runtime needs from a bundle; also the fallback chain when an accelerator is missing.
CPU_FALLBACK = ("tflite_int8", "tflite_fp32", "onnx")


class MaskClassifier:
    def __init__(self, bundle: Bundle, variant: Optional[str] = None, options: Optional[Dict[str, Any]] = None,
                 backend: Optional[str] = None, model_path=None, fallback: bool = True) -> None:
        """Load one variant on its runtime; if that runtime or its hardware is missing and `fallback`
        is set, load the CPU int8 model instead and record why in `self.degraded`."""
        self.bundle = bundle
        self.labels: List[str] = list(bundle.labels)
        self.size = bundle.input_size
        self.margin = bundle.crop_margin
        self.degraded: Optional[str] = None
        want = bundle.variant(variant)
        try:
            self.backend = self._load(want, backend or want.runtime, options, model_path)
        except backends.BackendUnavailable as exc:
            if not fallback:
                raise
            cpu = next((k for k in CPU_FALLBACK if k in bundle.variants and k != want.key), None)
            if cpu is None:
                raise
            self.degraded = "%s unavailable (%s); fell back to %s on the CPU" % (want.key, exc, cpu)
            log.warning("classifier: %s", self.degraded)
            v = bundle.variant(cpu)
            self.backend = self._load(v, v.runtime, options, None)
        self.variant: Variant = self.backend.variant

    def _load(self, variant: Variant, runtime: str, options, model_path) -> backends.Backend:
        path = model_path if model_path is not None else self.bundle.checked_file(variant)
        return backends.create(runtime, path, variant, options)

    # -- the three stages ---------------------------------------------------------------------------
    def preprocess(self, image_bgr: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """uint8 RGB crops (N, H, W, 3): each box grown by the bundle's margin, as in training."""
        import cv2

        h, w = image_bgr.shape[:2]
        out = np.empty((len(boxes), self.size[0], self.size[1], 3), dtype=np.uint8)
        for i, box in enumerate(boxes):
            x1, y1, x2, y2 = expand_box(box, self.margin, w, h)
            region = image_bgr[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
            interp = cv2.INTER_AREA if min(region.shape[:2]) > self.size[0] else cv2.INTER_LINEAR
            out[i] = cv2.cvtColor(cv2.resize(region, (self.size[1], self.size[0]), interpolation=interp),
                                  cv2.COLOR_BGR2RGB)
        return out

    def preprocess_crops(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """For images that are already face crops (`edge-maskd classify`): whole image, no margin."""
        import cv2

        out = np.empty((len(crops_bgr), self.size[0], self.size[1], 3), dtype=np.uint8)
        for i, c in enumerate(crops_bgr):
            interp = cv2.INTER_AREA if min(c.shape[:2]) > self.size[0] else cv2.INTER_LINEAR
            out[i] = cv2.cvtColor(cv2.resize(c, (self.size[1], self.size[0]), interpolation=interp),
                                  cv2.COLOR_BGR2RGB)
        return out

    def infer(self, batch: np.ndarray, max_batch: int = 8) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        parts = [self.backend.infer(batch[i:i + max_batch]) for i in range(0, len(batch), max_batch)]
        return np.concatenate(parts)

    def postprocess(self, probs: np.ndarray) -> List[Tuple[str, float, Dict[str, float]]]:
        out = []
        for p in probs:
            p = np.clip(p, 0.0, None)
            s = float(p.sum())
            if s > 0:
                p = p / s
            k = int(np.argmax(p))
            out.append((self.labels[k], float(p[k]), {l: round(float(v), 4) for l, v in zip(self.labels, p)}))
        return out

    # -- convenience ---------------------------------------------------------------------------------
    def classify(self, image_bgr: np.ndarray, faces: List[Face]) -> List[Face]:
        results = self.postprocess(self.infer(self.preprocess(image_bgr, [f.box for f in faces])))
        for f, (label, score, probs) in zip(faces, results):
            f.label, f.score, f.probs = label, score, probs
        return faces
