"""TensorRT and Edge TPU paths: real code, exercised as far as this machine allows, skipped with the reason."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edge import backends
from edge.bundle import load_bundle
from edge.classifier import MaskClassifier

from conftest import run_cli

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None


def test_missing_edgetpu_falls_back_to_cpu_int8_with_a_flag(shipped_bundle):
    b = load_bundle(shipped_bundle)
    try:
        from ai_edge_litert.interpreter import load_delegate

        load_delegate("libedgetpu.so.1")
        pytest.skip("an Edge TPU runtime is present here; the fallback is not exercised")
    except (ImportError, ValueError, OSError):
        pass
    clf = MaskClassifier(b, "tflite_edgetpu", backend="edgetpu")
    assert clf.variant.key == "tflite_int8"
    assert clf.degraded and "Edge TPU delegate" in clf.degraded and "fell back" in clf.degraded
    with pytest.raises(backends.BackendUnavailable):
        MaskClassifier(b, "tflite_edgetpu", backend="edgetpu", fallback=False)


def test_int8_edgetpu_ready_variant_is_fully_integer(shipped_bundle):
    b = load_bundle(shipped_bundle)
    v = b.manifest["variants"]["tflite_edgetpu"]
    assert v["input"]["dtype"] == "uint8" and v["output"]["dtype"] == "uint8"
    assert v["input"]["shape"][0] == 1  # static batch for the Edge TPU compiler
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(b.path / v["file"]))
    it.allocate_tensors()
    float_ops = [
        d
        for d in it.get_tensor_details()
        if d["dtype"] == np.float32 and not d["name"].startswith(("serving", "StatefulPartitioned"))
    ]
    assert float_ops == [], [d["name"] for d in float_ops][:5]


def test_tensorrt_calibration_batches():
    from edge.backends.tensorrt import calibration_batches

    imgs = np.random.RandomState(0).randint(0, 255, (20, 96, 96, 3)).astype(np.uint8)
    batches = list(calibration_batches(imgs, 8))
    assert len(batches) == 2 and batches[0].shape == (8, 96, 96, 3) and batches[0].dtype == np.float32
    assert batches[0].flags["C_CONTIGUOUS"]
    assert np.array_equal(batches[1], imgs[8:16].astype(np.float32))


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is present: the engine tests below run instead")
def test_build_engine_without_gpu_says_so(shipped_bundle):
    r = run_cli(
        [
            "edge-maskd",
            "build-engine",
            "--bundle",
            shipped_bundle,
            "--precision",
            "fp16",
            "--out",
            "/tmp/maskwatch-test.engine",
        ]
    )
    assert r.returncode == 69
    assert "TensorRT" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(not HAVE_TRT, reason="TensorRT + pycuda need an NVIDIA GPU (JetPack); none on this machine")
def test_tensorrt_engine_matches_onnx(shipped_bundle, tmp_path):
    from edge.backends.tensorrt import build_engine

    b = load_bundle(shipped_bundle)
    onnx = b.checked_file(b.variant("onnx"))
    eng = build_engine(onnx, tmp_path / "m.engine", "fp16")
    x = np.random.RandomState(0).randint(0, 255, (4,) + tuple(b.input_size) + (3,)).astype(np.uint8)
    ref = MaskClassifier(b, "onnx").infer(x)
    got = MaskClassifier(b, "onnx", backend="tensorrt", model_path=eng, fallback=False).infer(x)
    assert np.abs(ref - got).max() < 0.02
