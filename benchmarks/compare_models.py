"""Model comparison table from bundles converted off the same split (their manifests carry held-out parity).

    python benchmarks/compare_models.py work/bundles/* --md benchmarks/model-comparison.md \
        --json benchmarks/results/model-comparison.json

Each row: held-out macro-F1 of the Keras fp32 model and of the int8 TFLite model (through the device's
LiteRT backend), int8/fp32 top-1 agreement, recall of mask_weared_incorrect, file sizes, and the LiteRT
latency of both precisions measured here in one run (median of 300 single-image calls, 2 threads).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge import bench
from edge.bundle import load_bundle
from edge.classifier import MaskClassifier


def latency(bundle, key: str) -> float:
    clf = MaskClassifier(bundle, key, {"threads": 2}, fallback=False)
    h, w = bundle.input_size
    x = np.random.RandomState(0).randint(0, 255, (1, h, w, 3)).astype(np.uint8)
    return bench.measure(lambda: clf.backend.infer(x), warmup=20, runs=300, min_time=1.0)["p50_ms"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("bundles", nargs="+")
    p.add_argument("--md", default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    rows = []
    for path in a.bundles:
        b = load_bundle(Path(path), verify=True)
        m = b.manifest
        card = m.get("model_card", {})
        cfg = card.get("train_config", {})
        v = m["variants"]
        name = "%s %s@%d" % (
            cfg.get("arch", "?"),
            ("a%.2f" % cfg["alpha"]) if cfg.get("arch") == "mobilenetv2" else "",
            b.input_size[0],
        )
        row = {
            "bundle": str(path),
            "model": name.replace(" @", "@"),
            "params": card.get("params"),
            "keras_fp32_macro_f1": m["metrics"]["keras_fp32"]["macro_f1"],
            "keras_fp32_incorrect_recall": m["metrics"]["keras_fp32"]["per_class"]["mask_weared_incorrect"]["recall"],
            "tflite_fp32_macro_f1": v["tflite_fp32"]["parity"]["macro_f1"],
            "int8_macro_f1": v["tflite_int8"]["parity"]["macro_f1"],
            "int8_agreement": v["tflite_int8"]["parity"]["top1_agreement"],
            "int8_incorrect_recall": v["tflite_int8"]["parity"]["per_class_recall"]["mask_weared_incorrect"],
            "fp32_kb": round(m["files"][v["tflite_fp32"]["file"]]["size"] / 1024.0, 1),
            "int8_kb": round(m["files"][v["tflite_int8"]["file"]]["size"] / 1024.0, 1),
            "fp32_ms": latency(b, "tflite_fp32"),
            "int8_ms": latency(b, "tflite_int8"),
            "test_crops": v["tflite_int8"]["parity"]["n"],
            "train_seconds": card.get("train_seconds"),
        }
        rows.append(row)
    head = (
        "| model | params | Keras fp32 macro-F1 | int8 macro-F1 | int8/fp32 agreement | incorrect recall (int8) "
        "| fp32 KB | int8 KB | fp32 ms | int8 ms |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        "| %s | %s | %.4f | %.4f | %.4f | %.3f | %.0f | %.0f | %.3f | %.3f |\n"
        % (
            r["model"],
            r["params"],
            r["keras_fp32_macro_f1"],
            r["int8_macro_f1"],
            r["int8_agreement"],
            r["int8_incorrect_recall"],
            r["fp32_kb"],
            r["int8_kb"],
            r["fp32_ms"],
            r["int8_ms"],
        )
        for r in rows
    )
    print(head + body)
    doc = {"command": " ".join(["python"] + sys.argv), "machine": bench.machine(), "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1))
    if a.md:
        Path(a.md).write_text(
            "# Model comparison (same held-out split)\n\nMade by `%s` on %s, %s cores.\n"
            "Latency: LiteRT, 2 threads, batch 1, median of >= 300 calls.\n\n%s%s"
            % (doc["command"], doc["machine"]["cpu"], doc["machine"]["cores"], head, body)
        )
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
