#!/usr/bin/env python3
"""edge-bench on the workstation, with the rows that need TensorFlow: Keras fp32 and the seed-style loop.

edge/ never imports export/ (the device has no TensorFlow), so edge-bench itself skips these rows; this wrapper
passes export.kerasbench's functions in, and everything is measured in one run, so the ratios in the JSON
(speedup_vs_seed, agreement_with_keras) compare numbers taken side by side. Same arguments as edge-bench:

    .venv/bin/python benchmarks/edge_bench_full.py --json benchmarks/results/edge-bench-x86_64-2core.json ...
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.bench import WorkstationRows, main  # noqa: E402
from export.kerasbench import bench_keras, seed_pipeline  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], WorkstationRows(keras=bench_keras, seed_pipeline=seed_pipeline)))
