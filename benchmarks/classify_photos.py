#!/usr/bin/env python3
"""`edge-maskd classify` as a user runs it, on one split's photos of the folder-per-class sets (chandrikadeb7,
real; MaskedFace-Net, synthetic), once as it classifies by default (the face res10 finds, cut as the training
photos were: edge.crop.photo_face) and once with --whole (the image as it is, what classify did before session
29). Scored against the folder labels: photos right, with_mask photos flagged non-compliant, non-compliant
photos not flagged. Give a bundle whose photos of that split are held out (not a refit for val).

    benchmarks/classify_photos.py --bundle work/bundles/ens3 --run work/runs/common --crops work/crops112.npz \\
        --split val --out benchmarks/results/choices-val/classify-photos-ens3-val.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LABELS = ["with_mask", "without_mask", "mask_weared_incorrect"]
NON_COMPLIANT = set(LABELS[1:])
SOURCES = ("chandrikadeb7", "maskedfacenet-maskon")


def score(rows: list, truth: dict) -> dict:
    y = [truth[row["file"]] for row in rows]
    lab = [row["label"] for row in rows]
    wm = [p for t, p in zip(y, lab) if t == "with_mask"]
    nc = [p for t, p in zip(y, lab) if t in NON_COMPLIANT]
    return {
        "photos": len(rows),
        "right": sum(t == p for t, p in zip(y, lab)),
        "with_mask": len(wm),
        "with_mask_flagged": sum(p in NON_COMPLIANT for p in wm),
        "noncompliant": len(nc),
        "noncompliant_missed": sum(p not in NON_COMPLIANT for p in nc),
        "faces": dict(Counter(row["face"] for row in rows)),
    }


def main() -> int:
    from export.crops import load as load_crops
    from export.crops import split_index

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--run", required=True, help="the run whose split is read")
    ap.add_argument("--crops", required=True, help="the crops file that split indexes (its files are the photos)")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    crops = load_crops(Path(a.crops))
    idx = split_index(Path(a.run), a.split)
    exe = str(Path(sys.executable).parent / "edge-maskd")
    res: dict = {
        "bundle": a.bundle,
        "split": a.split,
        "command": " ".join(["benchmarks/classify_photos.py"] + sys.argv[1:]),
    }
    for source in SOURCES:
        m = idx[crops["sources"][idx] == source]
        files = [str(f) for f in crops["files"][m]]
        truth = {f: LABELS[int(y)] for f, y in zip(files, crops["labels"][m])}
        res[source] = {}
        for name, extra in (("found face (default)", []), ("whole image (--whole)", ["--whole"])):
            r = subprocess.run([exe, "classify", "--bundle", a.bundle, *extra, *files], capture_output=True, text=True)
            rows = [json.loads(line) for line in r.stdout.splitlines()]
            if r.returncode != 0 or len(rows) != len(files):
                print("classify failed (exit %d): %s" % (r.returncode, r.stderr[-800:]), file=sys.stderr)
                return 1
            res[source][name] = score(rows, truth)
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
