"""LiteRT int8 vs fp32 latency across MobileNetV2 sizes, on this machine, in one run, as paired ratios.

    python benchmarks/int8_vs_fp32.py --json benchmarks/results/int8-vs-fp32-x86_64-2core.json

Latency does not depend on what the weights learned, so the sizes we did not train are built with
random weights (the shipped and compared bundles cover the trained ones). Each model goes through the
same converter settings as export/ (full-int8, uint8 in/out, per-tensor and per-channel) and the same
LiteRT backend (XNNPACK) as the device.

Why interleaved rounds: on a shared 2-core VM the speed of the machine drifts by 30-50 % over a minute,
which is larger than the int8/fp32 difference being measured. So every round times a short block of
each variant in a shuffled order, the ratio is taken inside the round (same machine state), and the
result is the median of the per-round ratios with its spread (25th-75th percentile).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from edge import bench

SIZES = ((0.35, 96), (0.35, 128), (0.5, 128), (0.75, 160), (1.0, 224))
VARIANTS = (
    ("fp32", "fp32", "per-tensor"),
    ("int8 per-tensor", "int8", "per-tensor"),
    ("int8 per-channel", "int8", "per-channel"),
)


def summary(per: Dict[str, List[float]], base: str = "fp32") -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for k, v in per.items():
        row: Dict[str, Any] = {"p50_ms": round(float(np.median(v)), 4), "min_ms": round(float(np.min(v)), 4)}
        if k != base:
            r = bench.ratio_summary(v, per[base])
            row.update(
                {
                    "ratio_to_fp32": r["ratio"],
                    "ratio_p25": r["ratio_p25"],
                    "ratio_p75": r["ratio_p75"],
                    "rounds_faster_than_fp32": r["rounds_faster"],
                }
            )
        out[k] = row
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--sizes", nargs="+", default=["%gx%d" % s for s in SIZES], help="alpha x input, e.g. 0.35x96")
    p.add_argument("--block-seconds", type=float, default=0.15)
    a = p.parse_args()
    import keras

    from edge.backends.litert import import_interpreter
    from export.convert import tflite_bytes
    from export.train import TrainConfig, build_model

    Interpreter = import_interpreter()[0]
    rows = []
    tmp = Path(tempfile.mkdtemp())
    for alpha, size in [(float(x.split("x")[0]), int(x.split("x")[1])) for x in a.sizes]:
        keras.utils.set_random_seed(0)
        model = build_model(TrainConfig(alpha=alpha, input_size=size))
        rep = np.random.RandomState(0).randint(0, 255, (32, size, size, 3)).astype(np.float32)
        files = {}
        for name, prec, gran in VARIANTS:
            data = tflite_bytes(model, prec, rep if prec == "int8" else None, granularity=gran)
            f = tmp / ("m_%s_%d_%s.tflite" % (alpha, size, name.replace(" ", "_")))
            f.write_bytes(data)
            files[name] = f
        for threads in a.threads:
            for batch in a.batch:
                runners = {}
                for name, f in files.items():
                    it = Interpreter(model_path=str(f), num_threads=threads)
                    d = it.get_input_details()[0]
                    it.resize_tensor_input(d["index"], [batch, size, size, 3])
                    it.allocate_tensors()
                    x = np.random.RandomState(1).randint(0, 255, (batch, size, size, 3)).astype(d["dtype"])

                    def run(it=it, i=d["index"], x=x):
                        it.set_tensor(i, x)
                        it.invoke()

                    runners[name] = run
                res = summary(bench.paired_rounds(runners, a.rounds, a.block_seconds, seed=size * 10 + threads))
                row = {
                    "alpha": alpha,
                    "input": size,
                    "threads": threads,
                    "batch": batch,
                    "params": int(model.count_params()),
                    "bytes": {k: f.stat().st_size for k, f in files.items()},
                    "variants": res,
                }
                rows.append(row)
                print(
                    "alpha %.2f @%3d  threads %d batch %d: fp32 %.3f ms  int8 %.3f ms  int8/fp32 %.2f "
                    "[%.2f-%.2f] (faster in %d/%d rounds)  per-channel/fp32 %.2f"
                    % (
                        alpha,
                        size,
                        threads,
                        batch,
                        res["fp32"]["p50_ms"],
                        res["int8 per-tensor"]["p50_ms"],
                        res["int8 per-tensor"]["ratio_to_fp32"],
                        res["int8 per-tensor"]["ratio_p25"],
                        res["int8 per-tensor"]["ratio_p75"],
                        res["int8 per-tensor"]["rounds_faster_than_fp32"],
                        a.rounds,
                        res["int8 per-channel"]["ratio_to_fp32"],
                    ),
                    flush=True,
                )
    shutil.rmtree(tmp, ignore_errors=True)  # the converted test models: timed, not kept
    doc = {
        "command": " ".join(["python"] + sys.argv),
        "machine": bench.machine(),
        "rounds": a.rounds,
        "block_seconds": a.block_seconds,
        "method": "interleaved rounds, shuffled order, per-round ratios",
        "rows": rows,
    }
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
