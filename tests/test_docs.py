"""Numbers in README.md are generated from benchmarks/results/*.json, never typed by hand."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_readme_numbers_match_the_results_json():
    p = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_numbers.py"), "--check"], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr


def test_the_generator_notices_a_changed_result(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_numbers
    finally:
        sys.path.pop(0)
    res = tmp_path / "results"
    res.mkdir()
    for f in (ROOT / "benchmarks" / "results").glob("*.json"):
        (res / f.name).write_text(f.read_text())
    monkeypatch.setattr(gen_numbers, "RES", res)
    before = gen_numbers.render()
    doc = json.loads((res / "model-comparison.json").read_text())
    doc["rows"][0]["int8_kb"] += 100
    (res / "model-comparison.json").write_text(json.dumps(doc))
    assert gen_numbers.render() != before


def test_benchmarks_readme_blocks_follow_their_json(tmp_path, monkeypatch):
    """Change a number in a results JSON: the benchmarks README block rendered from it changes."""
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_numbers
    finally:
        sys.path.pop(0)
    res = tmp_path / "results"
    (res / "eval-default").mkdir(parents=True)
    for f in (ROOT / "benchmarks" / "results").rglob("*.json"):
        dst = res / f.relative_to(ROOT / "benchmarks" / "results")
        dst.parent.mkdir(parents=True, exist_ok=True)  # results may sit in subfolders (choices-val/)
        dst.write_text(f.read_text())
    monkeypatch.setattr(gen_numbers, "RES", res)
    text = (ROOT / "benchmarks" / "README.md").read_text()
    assert gen_numbers.render_bench(text) == text
    doc = json.loads((res / "broker_load-x86_64-2core.json").read_text())
    doc["results"]["latency_ms"]["p50"] = 123.4
    (res / "broker_load-x86_64-2core.json").write_text(json.dumps(doc))
    after = gen_numbers.render_bench(text)
    assert after != text and "123.4 /" in after
