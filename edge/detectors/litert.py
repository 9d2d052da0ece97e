"""res10 as TFLite (fp32, or full-int8 calibrated on training-scene frames) on LiteRT with XNNPACK.

TFLite shapes are fixed: each input size is its own file (`tflite_<precision>_<W>x<H>` in the detector
manifest, made by `edge-export detector`). Input is the blob transposed to NHWC; int8 models take it
quantized with their own input scale and return dequantized heads."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..backends import BackendUnavailable, from_output, to_input
from ..backends.litert import import_interpreter
from ..bundle import TensorSpec
from ..errors import AssetError, BundleError
from . import DetectorFiles, DetectorNet


def _spec(d: Dict[str, Any]) -> TensorSpec:
    """An interpreter tensor's dtype and quantization as the classifier backends describe them."""
    scale, zp = d.get("quantization", (0.0, 0))
    return TensorSpec(
        dtype=np.dtype(d["dtype"]).name, shape=[int(x) for x in d["shape"]], scale=float(scale), zero_point=int(zp)
    )


class LiteRTNet(DetectorNet):
    type_key = "litert"

    def __init__(self, files: DetectorFiles, options: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(files, options)
        self.Interpreter, self.load_delegate, self.runtime = import_interpreter()
        self.precision = str(self.options.get("precision", "fp32"))
        self._by_size: Dict[Tuple[int, int], Any] = {}

    def _variant_key(self, w: int, h: int) -> str:
        return "tflite_%s_%dx%d" % (self.precision, w, h)

    def _make(self, path):
        return self.Interpreter(model_path=str(path), num_threads=int(self.options.get("threads", 2)))

    def _interp(self, w: int, h: int):
        if (w, h) not in self._by_size:
            key = self._variant_key(w, h)
            try:
                path, _ = self.files.variant(key)
            except BundleError as exc:
                raise AssetError(
                    "%s; for this input size make it with `edge-export detector --sizes %dx%d`" % (exc, w, h)
                )
            it = self._make(path)
            it.allocate_tensors()
            ins = it.get_input_details()[0]
            outs = sorted(it.get_output_details(), key=lambda d: -int(np.prod(d["shape"])))
            if len(outs) != 2:
                raise BackendUnavailable("%s: expected the two heads (loc, conf), found %d outputs" % (path, len(outs)))
            loc, conf = outs  # loc has P*4 values, conf P*2 (names do not survive the converter)
            self._by_size[(w, h)] = (it, ins["index"], _spec(ins), loc["index"], _spec(loc), conf["index"], _spec(conf))
        return self._by_size[(w, h)]

    def prepare(self, width: int, height: int) -> None:
        self._interp(width, height)

    def heads(self, blob: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        h, w = int(blob.shape[2]), int(blob.shape[3])
        it, i_in, s_in, i_loc, s_loc, i_conf, s_conf = self._interp(w, h)
        it.set_tensor(i_in, to_input(np.ascontiguousarray(blob.transpose(0, 2, 3, 1)), s_in))
        it.invoke()
        return (
            from_output(it.get_tensor(i_loc), s_loc)[0].reshape(-1),
            from_output(it.get_tensor(i_conf), s_conf)[0].reshape(-1),
        )

    def describe(self) -> str:
        return "litert(%s, %s)" % (self.runtime, self.precision)
