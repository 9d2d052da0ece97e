"""TensorRT engine through pycuda (Jetson: TensorRT comes with JetPack, pycuda builds on the device).

Engines are specific to the GPU and TensorRT version, so they are built on the
target from the bundle's ONNX file (`edge-maskd build-engine`) and cached next to
the state directory, as Frigate does. Both the named-tensor API (TensorRT >= 8.5)
and the older binding API (JetPack 4.6, TensorRT 8.2) are handled.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from ..bundle import Variant
from . import Backend, BackendUnavailable, from_output, to_input

log = logging.getLogger(__name__)


def import_trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(
            "TensorRT is not importable (%s); it ships with JetPack (apt install python3-libnvinfer)" % exc
        )
    try:
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
        import pycuda.driver as cuda
    except Exception as exc:  # ImportError, or pycuda's LogicError/RuntimeError with no CUDA device
        raise BackendUnavailable("pycuda/CUDA is not usable (%s): TensorRT needs an NVIDIA GPU" % exc)
    return trt, cuda


class TensorRTBackend(Backend):
    type_key = "tensorrt"

    def __init__(self, model_path: Path, variant: Variant, options: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(model_path, variant, options)
        self.trt, self.cuda = import_trt()
        trt, cuda = self.trt, self.cuda
        if not self.model_path.exists():
            raise BackendUnavailable(
                "TensorRT engine %s not built yet: run `edge-maskd build-engine`" % self.model_path
            )
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self.engine = runtime.deserialize_cuda_engine(self.model_path.read_bytes())
        if self.engine is None:
            raise BackendUnavailable("%s is not an engine for this TensorRT/GPU; rebuild it" % self.model_path)
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        self.named = hasattr(self.engine, "num_io_tensors")
        if self.named:
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            self.in_name = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT][0]
            self.out_name = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT][0]
            self.in_dtype = trt.nptype(self.engine.get_tensor_dtype(self.in_name))
            self.out_dtype = trt.nptype(self.engine.get_tensor_dtype(self.out_name))
        else:
            self.in_idx = [i for i in range(self.engine.num_bindings) if self.engine.binding_is_input(i)][0]
            self.out_idx = [i for i in range(self.engine.num_bindings) if not self.engine.binding_is_input(i)][0]
            self.in_dtype = trt.nptype(self.engine.get_binding_dtype(self.in_idx))
            self.out_dtype = trt.nptype(self.engine.get_binding_dtype(self.out_idx))
        self._n = 0

    def _alloc(self, n: int, in_shape: List[int]) -> None:
        cuda = self.cuda
        if self.named:
            self.context.set_input_shape(self.in_name, in_shape)
            out_shape = list(self.context.get_tensor_shape(self.out_name))
        else:
            self.context.set_binding_shape(self.in_idx, in_shape)
            out_shape = list(self.context.get_binding_shape(self.out_idx))
        self.h_in = cuda.pagelocked_empty(in_shape, self.in_dtype)
        self.h_out = cuda.pagelocked_empty(out_shape, self.out_dtype)
        self.d_in = cuda.mem_alloc(self.h_in.nbytes)
        self.d_out = cuda.mem_alloc(self.h_out.nbytes)
        if self.named:
            self.context.set_tensor_address(self.in_name, int(self.d_in))
            self.context.set_tensor_address(self.out_name, int(self.d_out))
        self._n = n

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = to_input(batch, self.variant.input).astype(self.in_dtype)
        if len(x) != self._n:
            self._alloc(len(x), list(x.shape))
        np.copyto(self.h_in, x)
        self.cuda.memcpy_htod_async(self.d_in, self.h_in, self.stream)
        if self.named:
            self.context.execute_async_v3(self.stream.handle)
        else:
            self.context.execute_async_v2([int(self.d_in), int(self.d_out)], self.stream.handle)
        self.cuda.memcpy_dtoh_async(self.h_out, self.d_out, self.stream)
        self.stream.synchronize()
        return from_output(np.array(self.h_out), self.variant.output)


def calibration_batches(images: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    """Float32 NHWC batches (pixels 0..255, the ONNX model's input) for the INT8 calibrator; last partial batch dropped."""
    for i in range(0, len(images) - batch + 1, batch):
        yield np.ascontiguousarray(images[i : i + batch], dtype=np.float32)


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    precision: str,
    *,
    max_batch: int = 8,
    calib_images: Optional[np.ndarray] = None,
    calib_cache: Optional[Path] = None,
    workspace_mb: int = 256,
    input_shape: Optional[tuple] = None,
) -> Path:
    """Build a TensorRT engine from the bundle's ONNX file on this device and write it to `engine_path`."""
    trt, cuda = import_trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = (
        1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
        else 0
    )
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError("TensorRT could not parse %s: %s" % (onnx_path, errs))
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:
        config.max_workspace_size = workspace_mb << 20
    inp = network.get_input(0)
    profile = builder.create_optimization_profile()
    if input_shape is not None:  # the detector: (1, 3, H, W) at the configured input size
        profile.set_shape(inp.name, tuple(input_shape), tuple(input_shape), tuple(input_shape))
    else:
        h, w, c = [int(d) for d in inp.shape[1:]]
        profile.set_shape(inp.name, (1, h, w, c), (1, h, w, c), (max_batch, h, w, c))
    config.add_optimization_profile(profile)
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast fp16; building anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        if calib_images is None or len(calib_images) == 0:
            raise ValueError("int8 needs calibration images (face crops at the model's input size)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers that do not quantize fall back to fp16, not fp32
        config.int8_calibrator = _make_calibrator(trt, cuda, calib_images, calib_cache, batch=min(8, len(calib_images)))
        config.set_calibration_profile(profile)
    elif precision != "fp32":
        raise ValueError("precision must be fp32, fp16 or int8")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the %s engine from %s" % (precision, onnx_path))
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    return engine_path


def _make_calibrator(trt, cuda, images: np.ndarray, cache: Optional[Path], batch: int):
    class Calibrator(trt.IInt8EntropyCalibrator2):
        """Feeds face crops to TensorRT's entropy calibrator; keeps the cache so rebuilds skip calibration."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = calibration_batches(images, batch)
            self.d_in = cuda.mem_alloc(int(np.prod((batch,) + images.shape[1:])) * 4)

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names):
            try:
                cuda.memcpy_htod(self.d_in, next(self.batches))
            except StopIteration:
                return None
            return [int(self.d_in)]

        def read_calibration_cache(self):
            if cache is not None and Path(cache).exists():
                return Path(cache).read_bytes()
            return None

        def write_calibration_cache(self, data) -> None:
            if cache is not None:
                Path(cache).write_bytes(bytes(data))

    return Calibrator()
