"""LiteRT int8 vs fp32 latency across MobileNetV2 sizes, on this machine, in one run.

    python benchmarks/int8_vs_fp32.py --json benchmarks/results/int8-vs-fp32-x86_64-2core.json

Latency does not depend on what the weights learned, so the sizes we did not train are built with
random weights (the shipped and compared bundles cover the trained ones). Each model goes through the
same converter settings as export/ (full-int8, uint8 in/out, per-tensor and per-channel) and the same
LiteRT backend as the device.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge import bench

SIZES = ((0.35, 96), (0.35, 128), (0.5, 128), (0.75, 160), (1.0, 224))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    import keras

    from edge.backends.litert import import_interpreter
    from export.convert import tflite_bytes
    from export.train import TrainConfig, build_model

    Interpreter = import_interpreter()[0]
    rows = []
    tmp = Path(tempfile.mkdtemp())
    for alpha, size in SIZES:
        keras.utils.set_random_seed(0)
        model = build_model(TrainConfig(alpha=alpha, input_size=size))
        rep = np.random.RandomState(0).randint(0, 255, (32, size, size, 3)).astype(np.float32)
        row = {"alpha": alpha, "input": size, "params": int(model.count_params())}
        for name, prec, gran in (("fp32", "fp32", None), ("int8 per-tensor", "int8", "per-tensor"),
                                 ("int8 per-channel", "int8", "per-channel")):
            data = tflite_bytes(model, prec, rep if prec == "int8" else None, granularity=gran or "per-tensor")
            f = tmp / ("m_%s_%d_%s.tflite" % (alpha, size, name.replace(" ", "_")))
            f.write_bytes(data)
            it = Interpreter(model_path=str(f), num_threads=a.threads)
            it.allocate_tensors()
            d = it.get_input_details()[0]
            x = np.random.RandomState(1).randint(0, 255, d["shape"]).astype(d["dtype"])

            def run():
                it.set_tensor(d["index"], x)
                it.invoke()

            st = bench.measure(run, warmup=10, runs=200, min_time=1.5)
            row[name] = {"p50_ms": st["p50_ms"], "p90_ms": st["p90_ms"], "bytes": len(data)}
        row["int8_over_fp32"] = round(row["int8 per-tensor"]["p50_ms"] / row["fp32"]["p50_ms"], 3)
        rows.append(row)
        print("alpha %.2f @%d: fp32 %.3f ms, int8 per-tensor %.3f ms, per-channel %.3f ms (int8/fp32 %.2f)" % (
            alpha, size, row["fp32"]["p50_ms"], row["int8 per-tensor"]["p50_ms"], row["int8 per-channel"]["p50_ms"],
            row["int8_over_fp32"]), flush=True)
    doc = {"command": " ".join(["python"] + sys.argv), "machine": bench.machine(), "threads": a.threads,
           "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
