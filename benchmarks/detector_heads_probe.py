#!/usr/bin/env python3
"""res10 alone, its own confidence heads against retrained ones (`edge-export detector-heads`), on val scenes.

    .venv/bin/python benchmarks/detector_heads_probe.py work/heads/res10-mask-heads.npz --run work/runs/common \
        --crops work/crops112.npz --out benchmarks/results/choices-val/detector-heads-probe-val.json

No classifier: one native pass per scene (cv2.dnn, the heads set before its first forward), then over the
confidence axis the share of annotated faces >= --min-face px found (a box >= --det-min-face px at IoU >= 0.4)
against the boxes that touch no annotated face at all (IoU < 0.1 with every one, any size): what a detector
setting costs in boxes the rejector must then remove. Val only unless --split says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIDENCES = (0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def detections(heads, scenes, ids):
    import cv2

    from edge.assets import detector_paths
    from edge.res10 import MEAN_BGR, read_conf_heads, set_conf_heads
    from export.datasets import iter_scenes

    proto, weights = detector_paths(None)
    net = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    if heads:
        set_conf_heads(net, read_conf_heads(Path(heads), weights))
    out = []
    for _name, _sid, img, objs in iter_scenes(scenes, ids):
        h, w = img.shape[:2]
        net.setInput(cv2.dnn.blobFromImage(img, 1.0, (w, h), MEAN_BGR, swapRB=False, crop=False))
        d = net.forward()[0, 0]
        d = d[d[:, 2] >= 0.02]
        out.append(([b for _lab, b in objs], [(float(r[2]), r[3] * w, r[4] * h, r[5] * w, r[6] * h) for r in d]))
    return out


def curve(dets, min_face: int, det_min: int):
    from export.detector_heads import iou_matrix

    rows = []
    for conf in CONFIDENCES:
        faces = found = unmatched = 0
        for gts, boxes in dets:
            bx = np.array([b[1:] for b in boxes if b[0] >= conf and b[3] - b[1] >= det_min], np.float32).reshape(-1, 4)
            g = np.array(gts, np.float32).reshape(-1, 4)
            big = (g[:, 2] - g[:, 0]) >= min_face
            m = iou_matrix(bx, g) if len(bx) and len(g) else np.zeros((len(bx), len(g)))
            hit_g = m.max(0) >= 0.4 if len(bx) else np.zeros(len(g), bool)
            touch = m.max(1) >= 0.1 if len(g) else np.zeros(len(bx), bool)
            faces += int(big.sum())
            found += int((hit_g & big).sum())
            unmatched += int((~touch).sum())
        rows.append(
            {
                "confidence": conf,
                "faces": faces,
                "found": found,
                "recall": round(found / max(1, faces), 4),
                "unmatched": unmatched,
            }
        )
    return rows


def main() -> int:
    from export.crops import load as load_crops
    from export.crops import split_index
    from export.evaluate import scene_ids_of

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("heads", nargs="*", help="heads files to set beside res10's own")
    ap.add_argument("--run", required=True)
    ap.add_argument("--crops", default="work/crops112.npz")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument(
        "--scenes", nargs="+", default=["../shared/data/andrewmvd-train", "../shared/data/ilc2021-jolignier"]
    )
    ap.add_argument("--min-face", type=int, default=40)
    ap.add_argument("--det-min-face", type=int, default=32)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    crops = load_crops(Path(a.crops))
    idx = split_index(Path(a.run), a.split)
    scenes = [Path(s) for s in a.scenes]
    ids = {s.name: scene_ids_of(crops, idx, s) for s in scenes}
    res = {"split": a.split, "min_face": a.min_face, "det_min_face": a.det_min_face, "curves": {}}
    for h in [None] + list(a.heads):
        name = "res10" if h is None else h
        res["curves"][name] = curve(detections(h, scenes, ids), a.min_face, a.det_min_face)
        for r in res["curves"][name]:
            print(
                "%s c=%.2f found %d / %d (%.3f) unmatched %d"
                % (name, r["confidence"], r["found"], r["faces"], r["recall"], r["unmatched"])
            )
    res["command"] = " ".join(sys.argv)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
