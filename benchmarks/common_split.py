#!/usr/bin/env python3
"""A split on which two training runs can be compared: held out only where held out, on the same side, in both.

    python benchmarks/common_split.py work/runs/v3 work/runs/v4 --out work/runs/common

Each run splits the crops by its own near-duplicate clusters (perceptual hashes of crops cut at its input size),
so two runs at different input sizes put some faces on different sides. A face is val (test) here only if it is
val (test) in both runs; everything else counts as train and is never scored. Pass the result as `--run` to
compare_bundles.py, walkers.py and kiosk_setting.py.
"""

import argparse
import collections
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    maps = []
    for r in a.runs:
        s = np.load(str(Path(r) / "split.npz"))
        maps.append(dict(zip(s["keep"].tolist(), s["assign"].tolist())))
    keep = sorted(set.intersection(*(set(m) for m in maps)))
    assign = [m0 if all(m[i] == (m0 := maps[0][i]) for m in maps) else 0 for i in keep]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(str(out / "split.npz"), keep=np.array(keep), assign=np.array(assign))
    print(dict(collections.Counter({0: "train", 1: "val", 2: "test"}[v] for v in assign)))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
