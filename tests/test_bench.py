"""edge-bench: measures what the bundle and machine allow, lists the rest as skipped, flags regressions."""
from __future__ import annotations

import json

from conftest import run_cli


def test_bench_classifiers_json_csv_png_and_compare(tmp_path, shipped_bundle):
    out = tmp_path / "b.json"
    r = run_cli(["edge-bench", "--only", "classifier", "int8", "--no-keras", "--runs", "5", "--warmup", "1",
                 "--min-time", "0.05", "--batch", "1", "8", "--pair-rounds", "3", "--pair-block", "0.02",
                 "--json", out, "--csv", tmp_path / "b.csv", "--png", tmp_path / "b.png"], timeout=300)
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
    fastest = min((x for x in doc["results"] if x["batch"] == 1 and not x["skipped"]), key=lambda x: x["p50_ms"])
    assert rec["classifier.variant"] == fastest["extra"]["variant"] and rec["p50_ms"] == fastest["p50_ms"]
    assert "recommended for this box: classifier.variant: %s" % rec["classifier.variant"] in r.stdout

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
