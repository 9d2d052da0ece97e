"""res10 as ONNX (converted from the Caffe weights by edge.res10) on ONNX Runtime: CPU, CUDA or TensorRT
execution providers, in the order `onnx_providers` gives (default: what the installed onnxruntime has)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..backends import BackendUnavailable
from . import DetectorFiles, DetectorNet


class OnnxRuntimeNet(DetectorNet):
    type_key = "onnxruntime"

    def __init__(self, files: DetectorFiles, options: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(files, options)
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed (pip install 'maskwatch[onnx]')")
        path, _ = files.variant("onnx_fp32")
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(self.options.get("threads", 2))
        providers = self.options.get("providers") or [
            p
            for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        self.sess = ort.InferenceSession(str(path), so, providers=list(providers))
        self.providers = self.sess.get_providers()

    def heads(self, blob: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        loc, conf = self.sess.run(["loc", "conf"], {"data": blob.astype(np.float32)})
        return loc[0], conf[0]

    def describe(self) -> str:
        return "onnxruntime(%s)" % ",".join(p.replace("ExecutionProvider", "") for p in self.providers)
