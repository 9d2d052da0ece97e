"""LiteRT (TFLite) on the CPU with XNNPACK: `ai_edge_litert`, else `tflite_runtime` (JetPack 5, 32-bit Pi)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..bundle import Variant
from . import Backend, BackendUnavailable, from_output, to_input


def import_interpreter():
    """(Interpreter class, load_delegate, module name) from whichever TFLite runtime the device has."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "ai_edge_litert"
    except ImportError as exc:
        first = exc
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "tflite_runtime"
    except ImportError:
        # name why ai-edge-litert failed: "not installed" and "installed but broken" need different fixes
        why = "" if isinstance(first, ModuleNotFoundError) and first.name == "ai_edge_litert" else " (%s)" % first
        raise BackendUnavailable(
            "neither ai-edge-litert nor tflite-runtime is usable%s (pip install 'maskwatch[edge]')" % why
        )


class LiteRTBackend(Backend):
    type_key = "litert"

    def __init__(self, model_path: Path, variant: Variant, options: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(model_path, variant, options)
        Interpreter, load_delegate, self.runtime = import_interpreter()
        self.interpreter = self._make(Interpreter, load_delegate)
        self.interpreter.allocate_tensors()
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        self.batch = int(self.inp["shape"][0])
        # a model converted with a static batch (the Edge-TPU-ready int8, which the compiler needs static) is
        # run as it is, a few crops at a time, not resized: XNNPACK cannot always re-plan a static graph
        sig = self.inp.get("shape_signature")
        self.static = sig is not None and len(sig) > 0 and int(sig[0]) != -1

    def _make(self, Interpreter, load_delegate):
        threads = int(self.options.get("threads", 2))
        return Interpreter(model_path=str(self.model_path), num_threads=threads)

    def _resize(self, n: int) -> None:
        if n != self.batch:
            shape = list(self.inp["shape"])
            shape[0] = n
            self.interpreter.resize_tensor_input(self.inp["index"], shape)
            self.interpreter.allocate_tensors()
            self.inp = self.interpreter.get_input_details()[0]
            self.out = self.interpreter.get_output_details()[0]
            self.batch = n

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.static:  # (callers never pass an empty batch: MaskClassifier.infer answers that itself)
            b, n = self.batch, len(batch)
            pad = (-n) % b  # the last chunk padded to the static batch with its last crop, the padding dropped
            if pad:
                batch = np.concatenate([batch, np.repeat(batch[-1:], pad, axis=0)])
            return np.concatenate([self._invoke(batch[i : i + b]) for i in range(0, len(batch), b)])[:n]
        self._resize(len(batch))
        return self._invoke(batch)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.inp["index"], to_input(batch, self.variant.input))
        self.interpreter.invoke()
        return from_output(self.interpreter.get_tensor(self.out["index"]), self.variant.output)

    def describe(self) -> str:
        return "litert(%s, %d threads):%s" % (self.runtime, int(self.options.get("threads", 2)), self.variant.key)
