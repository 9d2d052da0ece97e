"""ONNX Runtime: CPU, or CUDA / TensorRT execution providers when the installed build has them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..bundle import Variant
from . import Backend, BackendUnavailable, from_output, to_input


class OnnxRuntimeBackend(Backend):
    type_key = "onnxruntime"

    def __init__(self, model_path: Path, variant: Variant, options: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(model_path, variant, options)
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed (pip install 'maskwatch[onnx]')")
        wanted = self.options.get("providers") or ["CPUExecutionProvider"]
        have = ort.get_available_providers()
        providers = [p for p in wanted if p in have]
        missing = [p for p in wanted if p not in have]
        if not providers:
            raise BackendUnavailable("onnxruntime has none of the providers %s (it has %s)" % (wanted, have))
        self.missing_providers = missing
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(self.options.get("threads", 2))
        self.session = ort.InferenceSession(str(self.model_path), sess_options=so, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raw = self.session.run(None, {self.input_name: to_input(batch, self.variant.input)})[0]
        return from_output(raw, self.variant.output)

    def describe(self) -> str:
        return "onnxruntime(%s):%s" % (",".join(self.providers), self.variant.key)
