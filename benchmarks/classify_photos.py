#!/usr/bin/env python3
"""`edge-maskd classify` as a user runs it, by default (each image classified whole, as a face crop) and with
--find-face (the face res10 finds, cut as the folder-per-class training photos were: edge.crop.photo_face), on
two kinds of image from one split:
  - photos: the folder-per-class sets' photos (chandrikadeb7, real; MaskedFace-Net, synthetic), close-ups of one
    person with hair, shoulders and background;
  - tight crops: each annotated face of the VOC scene sets (andrewmvd, ilc2021) cut exactly at its box (>= 12 px),
    what a labelled scene set becomes when someone crops it to test a classifier.
Scored against the labels: right, with_mask flagged non-compliant, non-compliant not flagged, incorrectly worn
right. Give a bundle whose images of that split are held out (not a refit for val).

    benchmarks/classify_photos.py --bundle work/bundles/ens3 --run work/runs/common --crops work/crops112.npz \\
        --split val --out benchmarks/results/choices-val/classify-photos-ens3-val.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LABELS = ["with_mask", "without_mask", "mask_weared_incorrect"]
NON_COMPLIANT = set(LABELS[1:])
FOLDER_SOURCES = ("chandrikadeb7", "maskedfacenet-maskon")
MODES = (("default (whole image)", []), ("--find-face", ["--find-face"]))


def score_labels(y: list, lab: list) -> dict:
    """Counts of verdicts `lab` against labels `y`: right, with_mask flagged, non-compliant missed, incorrectly
    worn right (shared with classify_framing.py)."""
    wm = [p for t, p in zip(y, lab) if t == "with_mask"]
    nc = [p for t, p in zip(y, lab) if t in NON_COMPLIANT]
    inc = [p for t, p in zip(y, lab) if t == "mask_weared_incorrect"]
    return {
        "images": len(lab),
        "right": sum(t == p for t, p in zip(y, lab)),
        "with_mask": len(wm),
        "with_mask_flagged": sum(p in NON_COMPLIANT for p in wm),
        "noncompliant": len(nc),
        "noncompliant_missed": sum(p not in NON_COMPLIANT for p in nc),
        "incorrect": len(inc),
        "incorrect_right": sum(p == "mask_weared_incorrect" for p in inc),
    }


def score(rows: list, truth: dict) -> dict:
    counts = score_labels([truth[row["file"]] for row in rows], [row["label"] for row in rows])
    return {**counts, "faces": dict(Counter(row["face"] for row in rows))}


def classify(exe: str, bundle: str, extra: list, files: list) -> list:
    rows = []
    for i in range(0, len(files), 300):
        part = files[i : i + 300]
        r = subprocess.run([exe, "classify", "--bundle", bundle, *extra, *part], capture_output=True, text=True)
        got = [json.loads(line) for line in r.stdout.splitlines()]
        if r.returncode != 0 or len(got) != len(part):
            from edge.errors import MaskwatchError

            raise MaskwatchError("edge-maskd classify failed (exit %d): %s" % (r.returncode, r.stderr.strip()[-400:]))
        rows += got
    return rows


def add_split_arguments(ap: argparse.ArgumentParser) -> None:
    """The arguments that pick a bundle and one split's images (shared with classify_framing.py)."""
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--run", required=True, help="the run whose split is read")
    ap.add_argument("--crops", required=True, help="the crops file that split indexes (its files are the photos)")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument(
        "--scenes", nargs="*", default=["../shared/data/andrewmvd-train", "../shared/data/ilc2021-jolignier"]
    )
    ap.add_argument("--out", default=None)


def image_sets(a, tmp: str) -> dict:
    """{kind: [(file, label, group)]}: the folder sets' photos of the split, and each annotated face of its VOC
    scenes cut exactly at its box (>= 12 px) into `tmp`."""
    import cv2

    from export.crops import load as load_crops
    from export.crops import split_index
    from export.datasets import iter_scenes, normalise_label
    from export.evaluate import scene_ids_of

    crops = load_crops(Path(a.crops))
    idx = split_index(Path(a.run), a.split)
    sets: dict = {}
    for source in FOLDER_SOURCES:
        m = idx[crops["sources"][idx] == source]
        sets["photos: " + source] = [
            (str(f), LABELS[int(y)], str(g))
            for f, y, g in zip(crops["files"][m], crops["labels"][m], crops["groups"][m])
        ]
    dirs = [Path(d) for d in a.scenes]
    ids = {d.name: scene_ids_of(crops, idx, d) for d in dirs}
    for name, sid, img, objs in iter_scenes(dirs, ids):
        for k, (label, (x1, y1, x2, y2)) in enumerate(objs):
            lab = normalise_label(label)
            if lab is None or min(x2 - x1, y2 - y1) < 12:
                continue
            path = Path(tmp) / ("%s-%s-%d.png" % (name, sid, k))
            cv2.imwrite(str(path), img[y1:y2, x1:x2])
            sets.setdefault("tight crops: " + name, []).append((str(path), lab, "%s:%s" % (name, sid)))
    return sets


def write_result(res: dict, out) -> None:
    text = json.dumps(res, indent=1)
    print(text)
    if out:
        Path(out).write_text(text + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_split_arguments(ap)
    a = ap.parse_args()
    exe = str(Path(sys.executable).parent / "edge-maskd")
    res: dict = {
        "bundle": a.bundle,
        "split": a.split,
        "command": " ".join(["benchmarks/classify_photos.py"] + sys.argv[1:]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind, items in image_sets(a, tmp).items():
            truth = {f: lab for f, lab, _ in items}
            files = sorted(truth)
            res[kind] = {mode: score(classify(exe, a.bundle, extra, files), truth) for mode, extra in MODES}
    write_result(res, a.out)
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
