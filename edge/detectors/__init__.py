"""Face-detector runtimes as plugins, keyed by a type name, as the classifier's are (edge/backends/).

A plugin only runs the res10 network on a blob (N, 3, H, W: BGR minus the mean, as cv2.dnn makes
it) and returns what cv2.dnn's forward() returns: (1, 1, K, 7) rows [0, 1, score, x1, y1, x2, y2].
Blob making, tiling, priors, box decoding and NMS are shared (edge.detector, edge.res10). A module
imports its runtime in ``__init__`` and raises BackendUnavailable when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type

import numpy as np

from ..backends import BackendUnavailable, find_plugins, load_guarded

# config names -> plugin type keys ("cpu" and "cuda" are the names older configs use)
ALIASES = {"cpu": "opencv", "cuda": "opencv-cuda"}


class DetectorNet:
    """The res10 network on one runtime. Subclasses set `type_key` and implement `run`."""

    type_key = ""
    needs = "onnx"  # which converted file the plugin loads from the detector manifest ("caffe": the originals)

    def __init__(self, files: "DetectorFiles", options: Optional[Dict[str, Any]] = None) -> None:
        self.files = files
        self.options = dict(options or {})
        self._dec: Dict[Tuple[int, int], Any] = {}

    def prepare(self, width: int, height: int) -> None:
        """Load what an input of this size needs now (fixed-shape runtimes), so errors show at start-up."""

    def heads(self, blob: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(loc (P*4,), conf (P*2,)) for one blob."""
        raise NotImplementedError

    def forward(self, blob: np.ndarray, min_score: float = 0.0) -> np.ndarray:
        from .. import res10

        h, w = int(blob.shape[2]), int(blob.shape[3])
        if (h, w) not in self._dec:
            self._dec[(h, w)] = res10.decoding(self.files.layers(), h, w)
        loc, conf = self.heads(blob)
        return res10.detection_output(loc, conf, self._dec[(h, w)], min_score)

    def describe(self) -> str:
        return self.type_key


class DetectorFiles:
    """Where the detector's files are: the Caffe originals and, when made, the converted variants
    listed (with sha256) in the detector manifest next to them."""

    def __init__(self, prototxt: Path, caffemodel: Path, converted_dir: Optional[Path] = None) -> None:
        self.prototxt, self.caffemodel = Path(prototxt), Path(caffemodel)
        self.dir = Path(converted_dir) if converted_dir else self.prototxt.parent
        self._layers = None

    def layers(self):
        from .. import res10

        if self._layers is None:
            self._layers = res10.layers_of(self.prototxt)
        return self._layers

    def variant(self, key: str) -> Tuple[Path, Dict[str, Any]]:
        """The converted file of `key` (e.g. onnx_fp32, tflite_int8_320x240), sha256-checked against the manifest."""
        from ..detector_bundle import checked_variant

        return checked_variant(self.dir, key, self.caffemodel)


_REGISTRY: Dict[str, Type[DetectorNet]] = {}


def _discover() -> None:
    if not _REGISTRY:
        _REGISTRY.update(find_plugins(__name__, __path__, DetectorNet))


def types() -> Tuple[str, ...]:
    _discover()
    return tuple(sorted(_REGISTRY))


def create(type_key: str, files: DetectorFiles, options: Optional[Dict[str, Any]] = None) -> DetectorNet:
    _discover()
    key = ALIASES.get(type_key, type_key)
    if key not in _REGISTRY:
        raise BackendUnavailable("no detector backend %r (known: %s)" % (type_key, ", ".join(sorted(_REGISTRY))))
    return load_guarded(
        lambda: _REGISTRY[key](files, options),
        files.caffemodel if key.startswith("opencv") else "the converted res10 file in %s" % files.dir,
        key,
    )
