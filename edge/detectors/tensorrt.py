"""res10 as a TensorRT engine (fp16 or int8), built on the Jetson from the converted ONNX file by
`edge-maskd build-engine --detector` and cached beside the classifier's engines. TensorRT 10 has no
Caffe parser, so the ONNX rebuilt from the Caffe weights is the way in on every JetPack."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..backends import BackendUnavailable
from ..backends.tensorrt import import_trt
from . import DetectorFiles, DetectorNet


class TensorRTNet(DetectorNet):
    type_key = "tensorrt"

    def __init__(self, files: DetectorFiles, options: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(files, options)
        self.trt, self.cuda = import_trt()
        engine = self.options.get("engine")
        if not engine or not Path(engine).exists():
            raise BackendUnavailable(
                "detector TensorRT engine %s not built yet: run `edge-maskd build-engine "
                "--detector` on this device" % engine
            )
        trt = self.trt
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(engine).read_bytes())
        if self.engine is None:
            raise BackendUnavailable("%s is not an engine for this TensorRT/GPU; rebuild it" % engine)
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.Stream()
        self._shape: Optional[Tuple[int, ...]] = None

    def _alloc(self, shape: Tuple[int, ...]) -> None:
        cuda = self.cuda
        self.context.set_input_shape("data", shape)
        self.bufs = {}
        for name in ("data", "loc", "conf"):
            shp = tuple(self.context.get_tensor_shape(name))
            host = cuda.pagelocked_empty(int(np.prod(shp)), np.float32)
            dev = cuda.mem_alloc(host.nbytes)
            self.context.set_tensor_address(name, int(dev))
            self.bufs[name] = (host, dev, shp)
        self._shape = shape

    def heads(self, blob: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        if self._shape != tuple(blob.shape):
            self._alloc(tuple(blob.shape))
        cuda = self.cuda
        host, dev, _ = self.bufs["data"]
        np.copyto(host, blob.reshape(-1))
        cuda.memcpy_htod_async(dev, host, self.stream)
        self.context.execute_async_v3(self.stream.handle)
        out = []
        for name in ("loc", "conf"):
            h, d, shp = self.bufs[name]
            cuda.memcpy_dtoh_async(h, d, self.stream)
            out.append(h)
        self.stream.synchronize()
        return out[0].copy(), out[1].copy()

    def describe(self) -> str:
        return "tensorrt"
