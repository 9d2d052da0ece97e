#!/usr/bin/env python3
"""Face recall against the annotations, per detector runtime, at the kiosk setting (faces >= 40 px).

    .venv/bin/python benchmarks/detector_recall.py --run work/runs/v3 --split test \
        --out benchmarks/results/detector-recall.json

One 300x300 pass (TFLite shapes are static, the scenes are not), the kiosk's confidence and no_face threshold
from the val-chosen setting (results/kiosk-setting.json); opencv (cv2.dnn), LiteRT fp32 and LiteRT int8 on the
same held-out scenes with the same classifier.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from export.crops import load as load_crops
    from export.crops import split_index
    from export.evaluate import kiosk_sweep, scene_ids_of

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--crops", default="work/crops96.npz")
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default"))
    ap.add_argument("--split", choices=("val", "test"), default="test")
    ap.add_argument(
        "--scenes", nargs="*", default=["../shared/data/andrewmvd-train", "../shared/data/ilc2021-jolignier"]
    )
    ap.add_argument("--setting", default=str(ROOT / "benchmarks" / "results" / "kiosk-setting.json"))
    ap.add_argument(
        "--int8-confidence",
        type=float,
        default=None,
        help="also LiteRT int8 at this confidence (int8 scores run lower; choose it on --split val)",
    )
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    chosen = json.loads(Path(a.setting).read_text())["chosen"]
    crops = load_crops(Path(a.crops))
    idx = split_index(Path(a.run), a.split)
    ids = {Path(sd).name: scene_ids_of(crops, idx, Path(sd)) for sd in a.scenes}
    clf = MaskClassifier(load_bundle(Path(a.bundle)), None, fallback=False)
    res = {"split": a.split, "setting": chosen, "runtimes": {}}
    runs = [
        ("opencv", "opencv", "fp32", chosen["confidence"]),
        ("litert_fp32", "litert", "fp32", chosen["confidence"]),
        ("litert_int8", "litert", "int8", chosen["confidence"]),
    ]
    if a.int8_confidence is not None:
        runs.append(("litert_int8@%.2f" % a.int8_confidence, "litert", "int8", a.int8_confidence))
    for name, be, prec, conf in runs:
        r = kiosk_sweep(
            [Path(x) for x in a.scenes],
            ids,
            clf,
            confidences=(conf,),
            no_face_thresholds=(chosen["no_face_threshold"],),
            mode="single",
            backend=be,
            precision=prec,
        )
        g = r["grid"][0]
        res["runtimes"][name] = {
            "confidence": conf,
            "face_recall": g["face_recall"],
            "faces": g["faces"],
            "noncompliant": g["noncompliant"],
            "ms_per_frame_p50": r["ms_per_frame_p50"],
            "backend": r["backend"],
        }
        print(name, json.dumps(res["runtimes"][name]), flush=True)
    res["command"] = " ".join(sys.argv)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
