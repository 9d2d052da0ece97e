#!/usr/bin/env python3
"""One training run at a time, before it is worth converting: what a satellite fine-tune gains and costs on val.

    python benchmarks/member_check.py work/runs/v7 work/runs/s2-v7 --crops work/crops112s.npz --split-run work/runs/v10 \
        --json benchmarks/results/choices-val/member-check-s2b-val.json

Per run (its Keras model, argmax of the box view, no operating point): the share of the split's val satellites
(`extend --satellites`: weak res10 boxes beside a face) called no_face, and the share of the real sources' val
faces, and of their incorrectly-worn faces, called right. A fine-tune that teaches the rejector must not buy it
with incorrectly-worn verdicts. With `--mean`, the runs' mean probabilities are scored too (an ensemble before it
is built); with `--specialist RUN` (trained with `--only-labels`), that mean with the specialist re-splitting the
mass of its labels (`export.ensemble.split_by_specialist`).
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="training runs (each with model.keras)")
    ap.add_argument("--crops", required=True, help="the crops file the split indexes (with satellites)")
    ap.add_argument("--split-run", required=True, help="whose split.npz picks the val crops")
    ap.add_argument("--grey", action="store_true", help="also score the real val faces turned grey (monochrome camera)")
    ap.add_argument("--mean", action="store_true", help="also score the mean of the runs' probabilities (an ensemble)")
    ap.add_argument(
        "--specialist",
        default=None,
        metavar="RUN",
        help="a run trained with --only-labels: also score the runs' mean with it re-splitting its labels' mass",
    )
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    from edge.errors import EX_NOINPUT, MaskwatchError
    from export.crops import Split, load, split_arrays
    from export.datasets import LABELS, REAL_SOURCES

    for r in a.runs:
        if not (Path(r) / "model.keras").exists():
            raise MaskwatchError("%s: no model.keras (train it first)" % r, EX_NOINPUT)
    specialist_labels = None
    if a.specialist:  # before the crops file is read: a wrong run is named at once
        try:
            record = json.loads((Path(a.specialist) / "train.json").read_text())
        except (OSError, ValueError) as e:
            raise MaskwatchError("--specialist %s: no readable train.json (%s)" % (a.specialist, e), EX_NOINPUT)
        specialist_labels = (record.get("config") or {}).get("only_labels")
        if not specialist_labels:
            raise MaskwatchError("--specialist %s: not trained with --only-labels" % a.specialist, EX_NOINPUT)
    crops = load(Path(a.crops))
    images, lab, va = split_arrays(Path(a.split_run), crops, Split.VAL)

    import keras
    import numpy as np

    from export.evaluate import grey_crops
    from export.train import predict

    how, src = crops["how"][va], crops["sources"][va]
    sat = how == "satellite"
    real_face = np.isin(src, REAL_SOURCES) & (lab < LABELS.index("no_face"))
    inc = real_face & (lab == LABELS.index("mask_weared_incorrect"))
    with_mask = real_face & (lab == LABELS.index("with_mask"))
    out = {}
    probs, grey = {}, {}
    grey_faces = grey_crops(images[real_face]) if a.grey else None
    for r in a.runs + ([a.specialist] if a.specialist else []):  # each model loaded once
        model = keras.models.load_model(str(Path(r) / "model.keras"), compile=False)
        probs[r] = predict(model, images, int(images.shape[1]))
        if grey_faces is not None and r in a.runs:
            grey[r] = predict(model, grey_faces, int(images.shape[1])).argmax(1)
    rows = [(r, probs[r]) for r in a.runs]
    if a.mean or a.specialist:
        mean = np.mean([probs[r] for r in a.runs], axis=0)
        rows.append(("mean(%s)" % " + ".join(a.runs), mean))
    if a.specialist:
        from export.ensemble import split_by_specialist

        cols = [LABELS.index(n) for n in specialist_labels]
        rows.append(("mean + specialist %s" % a.specialist, split_by_specialist(mean, probs[a.specialist], cols)))
    for r, pr in rows:
        p = pr.argmax(1)
        out[r] = {
            "satellites_no_face": round(float((p[sat] == LABELS.index("no_face")).mean()), 3) if sat.any() else None,
            "satellites": int(sat.sum()),
            "real_faces_right": round(float((p[real_face] == lab[real_face]).mean()), 3),
            "real_faces": int(real_face.sum()),
            "real_incorrect_right": round(float((p[inc] == lab[inc]).mean()), 3),
            "real_incorrect": int(inc.sum()),
            "real_faces_right_count": int((p[real_face] == lab[real_face]).sum()),
            "real_incorrect_right_count": int((p[inc] == lab[inc]).sum()),
            "real_with_mask_called_incorrect": int((p[with_mask] == LABELS.index("mask_weared_incorrect")).sum()),
        }
        if r in grey:
            g = grey[r]
            out[r].update(
                real_faces_right_grey=round(float((g == lab[real_face]).mean()), 3),
                real_incorrect_right_grey=round(float((g[inc[real_face]] == lab[inc]).mean()), 3),
                real_faces_no_face_grey=round(float((g == LABELS.index("no_face")).mean()), 3),
            )
        print(r, json.dumps(out[r]), flush=True)
    if a.json:
        doc = {
            "crops": a.crops,
            "split_run": a.split_run,
            "runs": out,
            "command": " ".join(["benchmarks/member_check.py"] + sys.argv[1:]),
        }
        Path(a.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
