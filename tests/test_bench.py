"""edge-bench: measures what the bundle and machine allow, lists the rest as skipped, flags regressions."""

from __future__ import annotations

import copy
import dataclasses
import json

from edge.bench import TIE_MARGIN, Result, recommend
from edge.bundle import load_bundle

from conftest import run_cli


def test_bench_classifiers_json_csv_png_and_compare(tmp_path, shipped_bundle):
    out = tmp_path / "b.json"
    r = run_cli(
        [
            "edge-bench",
            "--only",
            "classifier",
            "int8",
            "--no-keras",
            "--runs",
            "5",
            "--warmup",
            "1",
            "--min-time",
            "0.05",
            "--batch",
            "1",
            "8",
            "--pair-rounds",
            "3",
            "--pair-block",
            "0.02",
            "--json",
            out,
            "--csv",
            tmp_path / "b.csv",
            "--png",
            tmp_path / "b.png",
        ],
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["machine"]["cores"] and doc["machine"]["cpu"] and "numpy" in doc["machine"]["libraries"]
    rows = {(x["name"], x["batch"]): x for x in doc["results"]}
    for name in ("litert fp32 2t", "litert fp16 2t", "litert int8 2t", "onnxruntime CPU"):
        for b in (1, 8):
            row = rows[(name, b)]
            assert not row["skipped"] and row["count"] >= 5
            assert row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
            assert row["init_ms"] is not None and row["first_ms"] is not None and row["model_bytes"] > 0
    skipped = [x for x in doc["results"] if x["skipped"]]
    assert any("TensorRT" in x["skipped"] or "tensorrt" in x["name"] for x in skipped)  # listed, not dropped
    assert all(x["skipped"] for x in skipped)
    assert (tmp_path / "b.png").stat().st_size > 1000 and (tmp_path / "b.csv").read_text().count("\n") > 8
    assert "p50 ms" in r.stdout and "skipped:" in r.stdout

    # int8 vs fp32 as paired rounds, and a recommendation that names a measured, parity-checked variant
    pairs = {p["batch"]: p for p in doc["int8_vs_fp32"]}
    assert set(pairs) == {1, 8}
    for p in pairs.values():
        assert p["rounds"] == 3 and 0 <= p["rounds_faster"] <= 3
        assert p["ratio_p25"] <= p["ratio"] <= p["ratio_p75"]
    rec = doc["recommendation"]
    batch1 = [x for x in doc["results"] if x["batch"] == 1 and not x["skipped"]]
    fastest = min(x["p50_ms"] for x in batch1)
    tied = [x for x in batch1 if x["p50_ms"] <= fastest * (1 + TIE_MARGIN)]
    default = load_bundle(shipped_bundle).default_variant
    chosen = min(tied, key=lambda x: (x["extra"]["variant"] != default, x["p90_ms"], x["p50_ms"]))
    assert rec["classifier.variant"] == chosen["extra"]["variant"] and rec["p50_ms"] == chosen["p50_ms"]
    assert len(rec.get("tied_with", [])) == len(tied) - 1
    assert "recommended for this box: classifier.variant: %s" % rec["classifier.variant"] in r.stdout
    op = load_bundle(shipped_bundle).operating_point
    assert rec["inferences_per_face"] == len(op.views) * (2 if op.flip_average else 1)
    assert "%d per face" % rec["inferences_per_face"] in r.stdout

    # the same results compare clean; an injected 2x slowdown of one row is flagged and fails the run
    same = run_cli(["edge-bench", "--from-json", out, "--compare", out])
    assert same.returncode == 0, same.stdout + same.stderr
    slow = json.loads(out.read_text())
    for x in slow["results"]:
        if x["name"] == "litert int8 2t" and x["batch"] == 1:
            x["p50_ms"] *= 2.0
    slow_path = tmp_path / "slow.json"
    slow_path.write_text(json.dumps(slow))
    r = run_cli(["edge-bench", "--from-json", slow_path, "--compare", out, "--threshold", "0.25"])
    assert r.returncode == 1
    flagged = [l for l in r.stdout.splitlines() if "REGRESSION" in l]
    assert len(flagged) == 1 and "litert int8 2t" in flagged[0] and "x2.00" in flagged[0]


def _row(variant, p50, p90, model_id):
    return Result(
        name="litert %s" % variant,
        kind="classifier",
        backend="litert",
        batch=1,
        p50_ms=p50,
        p90_ms=p90,
        extra={"variant": variant, "model_id": model_id, "options": {"threads": 2}},
    )


def test_recommendation_does_not_rank_noise(shipped_bundle):
    """Two int8 files 0.04 ms apart on a noisy VM are a tie (the bundle's default variant is taken whichever
    way the noise fell, the other named; without the default among them, the steadier); a clear gap is a
    ranking; a variant below the parity floor is never recommended however fast."""
    b = load_bundle(shipped_bundle)
    m = b.model_id
    noisy = [_row("tflite_int8", 0.9141, 1.2233, m), _row("tflite_edgetpu", 0.8737, 1.7129, m)]
    noisy.append(_row("tflite_fp32", 1.56, 1.7, m))
    rec = recommend(noisy, [b], [])
    assert rec["classifier.variant"] == "tflite_int8" and rec["p50_ms"] == 0.9141
    assert [t["classifier.variant"] for t in rec["tied_with"]] == ["tflite_edgetpu"]
    # the next run: the same two files tied the other way round, steadier too; the choice stays the default's
    assert b.default_variant == "tflite_int8"
    flipped = [_row("tflite_int8", 0.7367, 0.8056, m), _row("tflite_edgetpu", 0.7382, 0.7900, m)]
    rec = recommend(flipped, [b], [])
    assert rec["classifier.variant"] == "tflite_int8" and rec["tied_with"][0]["classifier.variant"] == "tflite_edgetpu"
    # the default not among the tied: the lower p90
    rec = recommend([_row("tflite_fp32", 1.10, 1.60, m), _row("tflite_fp16", 1.08, 1.90, m)], [b], [])
    assert rec["classifier.variant"] == "tflite_fp32"
    clear = [_row("tflite_int8", 0.9141, 1.2233, m), _row("tflite_edgetpu", 0.60, 1.7129, m)]
    rec = recommend(clear, [b], [])
    assert rec["classifier.variant"] == "tflite_edgetpu" and "tied_with" not in rec
    broken = copy.deepcopy(b.variants["tflite_edgetpu"])
    broken.extra["parity"] = {**broken.extra.get("parity", {}), "top1_agreement": 0.5}
    b2 = dataclasses.replace(b, variants={**b.variants, "tflite_edgetpu": broken})
    assert recommend(clear, [b2], [])["classifier.variant"] == "tflite_int8"


def test_bench_detector_runtimes_and_pipelines_on_entrance_and_busy_clips(tmp_path, shipped_bundle, demo_clip):
    import cv2

    photos = tmp_path / "photos"
    photos.mkdir()
    cap = cv2.VideoCapture(str(demo_clip))
    for i in range(120):
        ok, f = cap.read()
        if i in (20, 75, 110):
            cv2.imwrite(str(photos / ("p%d.png" % i)), f)
    out = tmp_path / "b.json"
    r = run_cli(
        [
            "edge-bench",
            "--only",
            "detector",
            "pipeline",
            "--runs",
            "5",
            "--warmup",
            "1",
            "--min-time",
            "0.05",
            "--detector-modes",
            "single",
            "native",
            "--detector-whole-pass",
            "--detector-backends",
            "opencv",
            "onnxruntime",
            "tensorrt",
            "--pipeline-repeats",
            "1",
            "--busy-photos",
            photos,
            "--busy-count",
            "3",
            "--work",
            tmp_path / "w",
            "--json",
            out,
        ],
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(out.read_text())
    dets = {x["name"]: x for x in doc["results"] if x["kind"] == "detector"}
    assert not dets["res10 opencv fp32 single 300x300"]["skipped"]
    assert dets["res10 tensorrt fp16 single 300x300"]["skipped"]  # no GPU here: listed with the reason
    (native,) = [x for n, x in dets.items() if n.startswith("res10 opencv fp32 native ")]
    (whole,) = [x for n, x in dets.items() if n.startswith("res10 opencv fp32 native+whole ")]
    assert not native["skipped"] and not whole["skipped"] and whole["extra"]["whole_pass"] is True
    assert "whole_pass" not in native["extra"]
    pipes = [x for x in doc["results"] if x["kind"] == "pipeline" and not x["skipped"]]
    clips = {x["extra"]["clip"] for x in pipes}
    assert clips == {"entrance", "busy"}
    for x in pipes:
        if "seed-style" in x["name"]:
            continue
        assert x["extra"]["fps"] > 0 and "same_people_and_verdicts_as_reference" in x["extra"]
    gated = [x for x in pipes if x["extra"]["clip"] == "entrance" and "motion-gated, opencv" in x["name"]][0]
    assert gated["extra"]["same_people_and_verdicts_as_reference"] and gated["extra"]["people"] == 3
    assert gated["extra"]["detector_runs"] < gated["count"]  # the gate did skip frames


def test_the_seed_style_loop_runs_on_the_shipped_bundle(shipped_bundle, demo_clip, detector_dir):
    """The workstation's baseline row (res10 + Keras predict per face) cuts faces with the device's crop and
    the bundle's box fit; it had broken when the crop learned the fit, and only a full edge-bench run showed it."""
    import types

    import pytest

    pytest.importorskip("tensorflow")
    from export.kerasbench import seed_pipeline

    r = seed_pipeline(types.SimpleNamespace(detector_dir=str(detector_dir)), shipped_bundle, demo_clip)
    assert r["frames"] > 100 and r["fps"] > 0
