#!/usr/bin/env python3
"""One side of a run's split as dataset folders (symlinks), for `edge-export score --data`.

    .venv/bin/python benchmarks/split_folders.py --run work/runs/common --crops work/crops112.npz --split test \
        --out work/split-test
    .venv/bin/edge-export score --data work/split-test --json benchmarks/results/score-shipped-test.json

The VOC scene sets get their held-out scenes (annotations/ and images/, every face of each scene), the
folder-per-class sets their held-out photos in one folder per class: the photos `compare_bundles.py` and
`kiosk_setting.py` score from the crops file, laid out as a user's own labelled data would be, so that `score`
can be checked against those numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        os.symlink(src.resolve(), dst)


def main() -> int:
    from edge.errors import EX_NOINPUT, EX_USAGE, MaskwatchError
    from export.crops import load as load_crops
    from export.crops import split_index
    from export.datasets import LABELS, NO_FACE, parse_voc

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--crops", default="work/crops112.npz")
    ap.add_argument("--split", choices=("val", "test"), default="test")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    if out.exists() and any(out.iterdir()):
        raise MaskwatchError("--out %s is not empty: give a new folder" % out, EX_USAGE)
    crops = load_crops(Path(a.crops))
    idx = split_index(Path(a.run), a.split)
    counts = {}
    for i in idx:
        label, how = int(crops["labels"][i]), str(crops["how"][i])
        if LABELS[label] == NO_FACE:
            continue  # a detector's false detection: not a labelled face
        src, f = str(crops["sources"][i]), Path(str(crops["files"][i]))
        if not f.exists():
            raise MaskwatchError("%s: listed in %s but not found" % (f, a.crops), EX_NOINPUT)
        if how == "voc":  # the scene: its image and its annotation (every face of it)
            sid = str(crops["groups"][i]).split(":", 1)[1]
            xml = f.parent.parent / "annotations" / (sid + ".xml")
            name = parse_voc(xml)[0]
            link(xml, out / src / "annotations" / xml.name)
            link(f.parent / name, out / src / "images" / name)
        else:
            link(f, out / src / LABELS[label] / f.name)
        counts[src] = counts.get(src, 0) + 1
    print({k: v for k, v in sorted(counts.items())})
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
