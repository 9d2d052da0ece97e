"""The mask classifier, in the OpenCV-zoo manner: `preprocess` -> `infer` -> `postprocess`.

Everything it needs to know about the model (labels in order, input size, crop
margin, tensor quantization) comes from the bundle's manifest.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import backends
from .bundle import NO_FACE, PARITY_FLOOR, Bundle, Variant
from .crop import crop_faces, fit_box, view_box
from .types import Box, Face, clamp_box
from .verdict import Verdict, calibrate, verdict

log = logging.getLogger(__name__)

# What each runtime needs from a bundle; also the fallback chain when an accelerator is missing.
CPU_FALLBACK = ("tflite_int8", "tflite_fp32", "onnx")


class MaskClassifier:
    def __init__(
        self,
        bundle: Bundle,
        variant: Optional[str] = None,
        options: Optional[Dict[str, Any]] = None,
        backend: Optional[str] = None,
        model_path=None,
        fallback: bool = True,
        batch: int = 8,
    ) -> None:
        """Load one variant on its runtime; if that runtime or its hardware is missing and `fallback`
        is set, load the CPU int8 model instead and record why in `self.degraded`."""
        self.bundle = bundle
        self.output_labels: List[str] = list(bundle.labels)  # the model's outputs, no_face included
        self.labels: List[str] = [l for l in bundle.labels if l != NO_FACE]  # what a person can be
        self.size = bundle.input_size
        self.margin = bundle.crop_margin
        self.degraded: Optional[str] = None
        self.batch = max(1, int(batch))  # classifier.batch: the largest batch of crops per inference call
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
        # a variant that does not behave as the evaluated model (e.g. int8 with one scale per tensor for an
        # ImageNet-initialised net): loaded as asked, but said once, loudly, naming the better choice
        self.parity_warning: Optional[str] = None
        agree = self.variant.agreement
        if agree is not None and agree < PARITY_FLOOR:
            good = [k for k, v in bundle.variants.items() if (v.agreement or 0.0) >= PARITY_FLOOR]
            self.parity_warning = (
                "%s of %s agrees with the evaluated model on only %.1f %% of held-out faces (manifest parity); "
                "its verdicts are not the ones measured: set classifier.variant to %s or convert the bundle again"
                % (self.variant.key, bundle.model_id, 100 * agree, " or ".join(good) or "another variant")
            )
            log.warning("classifier: %s", self.parity_warning)

    def _load(self, variant: Variant, runtime: str, options, model_path) -> backends.Backend:
        path = model_path if model_path is not None else self.bundle.checked_file(variant)
        return backends.create(runtime, path, variant, options)

    # -- the three stages ---------------------------------------------------------------------------
    def preprocess(self, image_bgr: np.ndarray, boxes: Sequence[Box], detector: bool = False) -> np.ndarray:
        """uint8 RGB crops (N, H, W, 3): the one face crop (edge.crop), as in training. `detector`: the
        boxes are res10's, first moved into the annotation convention by the bundle's box fit."""
        if detector:  # fit_box leaves a box as it is when the bundle has no fit
            boxes = [fit_box(b, self.bundle.box_fit) for b in boxes]
        return crop_faces(image_bgr, boxes, self.margin, self.size)

    def face_box(self, box: Box, frame_shape: Tuple[int, ...]) -> Box:
        """A detector box as the face the classifier sees: in the annotation convention it was trained and
        measured in (the bundle's detector_box_fit: res10's box starts higher and ends lower than a face), within
        the frame. What `edge-maskd scan` and `classify --find-face` report."""
        return clamp_box(fit_box(box, self.bundle.box_fit), frame_shape[1], frame_shape[0])

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, len(self.output_labels)), np.float32)
        n = self.batch
        parts = [self.backend.infer(batch[i : i + n]) for i in range(0, len(batch), n)]
        return np.concatenate(parts)

    def preprocess_views(self, image_bgr: np.ndarray, boxes: Sequence[Box], detector: bool = False) -> np.ndarray:
        """(V, N, H, W, 3): the one face crop of each box under each of the operating point's test-time views
        (edge.crop.view_box; the first view is the box itself). `detector` as in `preprocess`."""
        if detector:  # fit_box leaves a box as it is when the bundle has no fit
            boxes = [fit_box(b, self.bundle.box_fit) for b in boxes]
        return np.stack(
            [
                crop_faces(image_bgr, [view_box(b, v) for b in boxes], self.margin, self.size)
                for v in self.bundle.operating_point.views
            ]
        )

    def probs(self, crops: np.ndarray) -> np.ndarray:
        """Model outputs per face. `crops`: (N, H, W, 3), or (V, N, H, W, 3) views of each face
        (`preprocess_views`), averaged over the views; each also averaged with its mirror image when the
        operating point says so (flip averaging). Both are chosen on validation by export/."""
        x = crops if crops.ndim == 5 else crops[None]
        v, n = x.shape[0], x.shape[1]
        flat = x.reshape((v * n,) + tuple(x.shape[2:]))
        out = self.infer(flat)
        if self.bundle.operating_point.flip_average and n:
            out = (out + self.infer(np.ascontiguousarray(flat[:, :, ::-1]))) / 2.0
        return out.reshape(v, n, -1).mean(axis=0)

    def postprocess(self, probs: np.ndarray) -> List[Verdict]:
        """Raw outputs -> calibrated verdicts by the bundle's operating point (edge.verdict)."""
        out = []
        op = self.bundle.operating_point
        for p in probs:
            p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
            s = float(p.sum())
            if s > 0:
                p = p / s
            out.append(verdict(calibrate(p, op.temperature), self.output_labels, op))
        return out

    # -- convenience ---------------------------------------------------------------------------------
    def classify(self, image_bgr: np.ndarray, faces: List[Face]) -> List[Face]:
        """Each face with its verdict (new records); a detection the rejector calls no_face gets NO_FACE."""
        if not faces:
            return []
        views = self.preprocess_views(image_bgr, [f.box for f in faces], detector=True)
        results = self.postprocess(self.probs(views))
        return [
            dataclasses.replace(
                f, label=v.label, score=v.score, probs=v.probs, no_face=v.no_face, sharpness=sharpness(c)
            )
            for f, v, c in zip(faces, results, views[0])
        ]


SHARP_REF = 100.0  # variance of the Laplacian of a crop at which a view counts as fully sharp (in-focus
# 96 px crops of real faces measure 150-800; small faces blown up, or motion-blurred, 5-50)


def sharpness(crop_rgb: np.ndarray) -> float:
    """0..1: how sharp one classifier crop is (the tracker weights a person's views by it)."""
    import cv2

    g = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2GRAY)
    return round(min(1.0, float(cv2.Laplacian(g, cv2.CV_32F).var()) / SHARP_REF), 4)
