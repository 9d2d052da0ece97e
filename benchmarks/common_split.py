#!/usr/bin/env python3
"""A split on which two training runs can be compared: held out only where held out, on the same side, in both.

    python benchmarks/common_split.py work/crops96.npz work/runs/v4 --out work/runs/common

Each run splits the crops by its own near-duplicate clusters (perceptual hashes of crops cut at its input size),
so two runs at different input sizes put some faces on different sides. A face is val (test) here only if it is
val (test) in both runs; everything else counts as train and is never scored. Pass the result as `--run` to
compare_bundles.py, walkers.py and kiosk_setting.py.

Each argument is a run directory (its split.npz) or a crops .npz, which stands for the split `edge-export train`
would cut from it (seed 0, Hamming distance 6). The shipped common split is that of the 96 px crops (the old v3
run, trained on `prepare --size 96`) against v4's: a machine that lost `work/` needs no v3 run to get it back.
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
        if r.endswith(".npz"):
            from export.cli import make_split
            from export.crops import load

            sp = make_split(load(Path(r)), seed=0, max_distance=6)
            keep, assign = sp["keep"], sp["assign"]
        else:
            from export.crops import load_split

            keep, assign = load_split(Path(r))
        maps.append(dict(zip(np.asarray(keep).tolist(), np.asarray(assign).tolist())))
    keep = sorted(set.intersection(*(set(m) for m in maps)))
    assign = [m0 if all(m[i] == (m0 := maps[0][i]) for m in maps) else 0 for i in keep]
    out = Path(a.out)
    from export.crops import save_npz

    save_npz(out / "split.npz", keep=np.array(keep), assign=np.array(assign))
    print(dict(collections.Counter({0: "train", 1: "val", 2: "test"}[v] for v in assign)))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
