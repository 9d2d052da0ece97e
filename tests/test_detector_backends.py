"""res10 on every runtime: ONNX/TFLite rebuilt from the Caffe weights give cv2.dnn's boxes; manifests are checked;
TensorRT and Edge TPU are real code that skips here with the reason; the daemon runs end to end on LiteRT int8."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge import detectors, res10
from edge.backends import BackendUnavailable
from edge.detector import DetectorOptions, FaceDetector
from edge.errors import BundleError
from edge.types import iou

from conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def frames(demo_clip):
    import cv2

    cap = cv2.VideoCapture(str(demo_clip))
    out = []
    i = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if i % 9 == 0:
            out.append(f)
        i += 1
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory, detector_dir, frames):
    """ONNX (device step) and TFLite fp32 + int8 (workstation step) in a fresh folder, as a user makes them;
    int8 calibrated on frames of a clip (a 'training scene' folder), not on the frames it is tested on."""
    import cv2

    out = tmp_path_factory.mktemp("res10")
    calib = tmp_path_factory.mktemp("calib")
    (calib / "images").mkdir()
    rng = np.random.RandomState(0)
    for i, f in enumerate(frames[1::2]):
        cv2.imwrite(
            str(calib / "images" / ("c%02d.png" % i)),
            np.clip(f.astype(np.int16) + rng.randint(-8, 8, f.shape), 0, 255).astype(np.uint8),
        )
    r = run_cli(["edge-maskd", "detector-export", "--model-dir", detector_dir, "--out", out])
    assert r.returncode == 0, r.stderr[-2000:]
    if importlib.util.find_spec("tensorflow") is not None:
        r = run_cli(
            [
                "edge-export",
                "-q",
                "detector",
                "--model-dir",
                detector_dir,
                "--out",
                out,
                "--sizes",
                "300x300",
                "--calib-scenes",
                calib,
                "--calib-count",
                "8",
            ],
            timeout=900,
        )
        assert r.returncode == 0, r.stderr[-3000:]
    return out


def _det(detector_dir: Path, conv: Path, **kw) -> FaceDetector:
    return FaceDetector(
        detector_dir / "deploy.prototxt",
        detector_dir / "res10_300x300_ssd_iter_140000.caffemodel",
        DetectorOptions(converted_dir=str(conv), fallback=False, confidence=0.3, **kw),
    )


def _compare(ref, got):
    m = [max((iou(r.box, g.box) for g in got), default=0.0) for r in ref]
    return m, len(got) - len(ref)


def test_prototxt_priors_match_the_caffe_layout(detector_dir):
    layers = res10.layers_of(detector_dir / "deploy.prototxt")
    dec = res10.decoding(layers, 300, 300)
    assert dec.priors.shape == (8892, 4)  # what cv2.dnn's mbox_priorbox holds for 300x300
    assert dec.nms_threshold == 0.45 and dec.keep_top_k == 200
    assert res10.decoding(layers, 240, 320).priors.shape[0] != 8892  # priors follow the input size


def test_onnx_gives_the_boxes_of_cv2_dnn(detector_dir, converted, frames):
    ref = _det(detector_dir, converted)
    onnx = _det(detector_dir, converted, backend="onnxruntime")
    assert onnx.backend_in_use.startswith("onnxruntime")
    n = 0
    for f in frames:
        a, b = ref.detect(f), onnx.detect(f)
        ious, extra = _compare(a, b)
        assert extra == 0 and all(o > 0.99 for o in ious), (ious, extra)
        n += len(a)
    assert n >= 5  # the visitors were found, so the comparison compared something


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="the TFLite export needs TensorFlow")
def test_tflite_fp32_and_int8_against_cv2_dnn(detector_dir, converted, frames):
    ref = _det(detector_dir, converted)
    fp32 = _det(detector_dir, converted, backend="litert", precision="fp32")
    int8 = _det(detector_dir, converted, backend="litert", precision="int8")
    found = {"fp32": 0, "int8": 0, "ref": 0}
    for f in frames:
        a = ref.detect(f)
        ious, extra = _compare(a, fp32.detect(f))
        assert extra == 0 and all(o > 0.98 for o in ious)
        ious8, _ = _compare(a, int8.detect(f))
        found["ref"] += len(a)
        found["fp32"] += len(ious)
        found["int8"] += sum(o >= 0.5 for o in ious8)
    assert found["int8"] >= found["ref"] - 1, found  # int8 may lose a little, not the visitors


def test_a_tampered_converted_file_is_refused_by_name(detector_dir, converted, tmp_path):
    bad = tmp_path / "conv"
    shutil.copytree(converted, bad)
    p = bad / "res10_fp32.onnx"
    data = bytearray(p.read_bytes())
    data[-10] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="res10_fp32.onnx.*sha256"):
        _det(detector_dir, bad, backend="onnxruntime")
    # fallback on: the kiosk keeps running on opencv and says why
    d = FaceDetector(
        detector_dir / "deploy.prototxt",
        detector_dir / "res10_300x300_ssd_iter_140000.caffemodel",
        DetectorOptions(converted_dir=str(bad), backend="onnxruntime"),
    )
    assert d.backend_in_use == "opencv" and "sha256" in d.degraded


def test_converted_files_from_other_weights_are_refused(detector_dir, converted, tmp_path):
    bad = tmp_path / "conv"
    shutil.copytree(converted, bad)
    m = json.loads((bad / "detector-manifest.json").read_text())
    m["source"]["caffemodel"]["sha256"] = "0" * 64
    (bad / "detector-manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="converted from a caffemodel"):
        _det(detector_dir, bad, backend="onnxruntime")


def test_tensorrt_and_edgetpu_detectors_skip_with_the_reason(detector_dir, converted):
    files = detectors.DetectorFiles(
        detector_dir / "deploy.prototxt", detector_dir / "res10_300x300_ssd_iter_140000.caffemodel", converted
    )
    with pytest.raises(BackendUnavailable) as e:
        detectors.create("tensorrt", files, {"engine": "/nonexistent.engine"})
    reason = str(e.value)
    assert "TensorRT" in reason or "engine" in reason
    with pytest.raises(BackendUnavailable) as e2:
        d = detectors.create("edgetpu", files, {})
        d.heads(np.zeros((1, 3, 300, 300), np.float32))
    assert "edgetpu" in str(e2.value).lower() or "edge tpu" in str(e2.value).lower()
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("TensorRT engine build/run: no TensorRT or GPU on this machine (%s)" % reason)


def test_build_engine_for_the_detector_says_why_not_here(detector_dir, tmp_path):
    r = run_cli(["edge-maskd", "build-engine", "--detector", "--out", tmp_path / "res10.engine"])
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT present: the build runs for real")
    assert r.returncode == 69 and "TensorRT" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="the TFLite export needs TensorFlow")
def test_daemon_end_to_end_with_the_litert_int8_detector(detector_dir, converted, demo_clip, tmp_path):
    cfg = yaml.safe_load((ROOT / "firmware-config" / "demo.yaml").read_text())
    cfg["source"] = {"url": str(demo_clip)}
    cfg["state_dir"] = str(tmp_path / "state")
    # one 300x300 pass: TFLite shapes are static, and the converted fixture holds the 300x300 files
    cfg["detector"].update(
        {
            "backend": "litert",
            "precision": "int8",
            "converted_dir": str(converted),
            "mode": "single",
            "model_dir": str(detector_dir),
            "fallback_to_cpu": False,
        }
    )
    p = tmp_path / "k.yaml"
    p.write_text(yaml.safe_dump(cfg))
    r = run_cli(["edge-maskd", "run", "--config", p, "--log-level", "WARNING"], timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    msgs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    events = [m for m in msgs if m.get("type") == "event"]
    assert len(events) == 3, [e.get("verdict") for e in events]
    assert "unavailable" not in r.stderr  # ran on LiteRT int8, no fallback (fallback_to_cpu is off anyway)


def test_scan_takes_the_detector_backend(detector_dir, converted, demo_clip, tmp_path):
    import cv2

    cap = cv2.VideoCapture(str(demo_clip))
    for _ in range(30):
        ok, f = cap.read()
    cv2.imwrite(str(tmp_path / "f.png"), f)
    outs = {}
    for be in ("opencv", "onnxruntime"):
        r = run_cli(
            [
                "edge-maskd",
                "scan",
                "--mode",
                "single",
                "--backend",
                be,
                "--converted-dir",
                converted,
                tmp_path / "f.png",
            ],
            env={"MASKWATCH_CACHE": str(detector_dir)},
        )
        assert r.returncode == 0, r.stderr[-1500:]
        outs[be] = [json.loads(line)["box"] for line in r.stdout.splitlines() if line.startswith("{")]
    assert outs["opencv"] and outs["opencv"] == outs["onnxruntime"]
