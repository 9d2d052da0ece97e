#!/usr/bin/env python3
"""Val only: how much of a bundle's val number is its operating point having been chosen on those same faces.

    .venv/bin/python benchmarks/choice_cv.py models/default --run work/runs/v6 --crops work/crops112x.npz \
        --folds 5 --json benchmarks/results/choices-val/choice-cv-ens3-val.json

`convert` chooses the whole operating point (test-time views, flip averaging, temperature, no_face, alert and
incorrect-weight thresholds: `export.cli.choose_with_views`) on the run's real val crops and reports them under
it, so the val report scores the faces the choice was fitted to. Here the same choice is made k times, each
time on all val faces but one fold's (folds of whole near-duplicate groups: the faces of one photo and its
near-copies stay together), and each fold is scored under the choice it did not take part in; the folds'
verdicts pooled are an out-of-fold report to set beside the in-sample one. Their difference is the optimism of
the operating-point choice alone: the members' checkpoints (chosen on real val macro-F1 while training) and the
ensemble's make-up were also chosen on these faces, and no fold here undoes that. Test is not read.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEYS = ("macro_f1", "with_mask_flagged")


def summary(report: Dict[str, Any]) -> Dict[str, Any]:
    """The issue's crop numbers out of a face_report."""
    pc = report["per_class"]
    return {
        "faces": report["faces"],
        "macro_f1": report["macro_f1"],
        "incorrect_precision": pc["mask_weared_incorrect"]["precision"],
        "incorrect_recall": pc["mask_weared_incorrect"]["recall"],
        "without_recall": pc["without_mask"]["recall"],
        "with_mask_flagged": report["with_mask_flagged"],
        "alert_f1": report["alert"]["f1"],
    }


def main() -> int:
    from edge.bench import machine
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.errors import EX_USAGE, MaskwatchError
    from export import operating
    from export.cli import VIEW_SETS, choose_with_views, combine, device_outputs
    from export.crops import Split, split_arrays, view_images
    from export.crops import load as load_crops
    from export.datasets import LABELS, REAL_SOURCES
    from export.metrics import group_folds

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument(
        "--run", required=True, help="the run whose real val crops the bundle's operating point was chosen on"
    )
    ap.add_argument("--crops", required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-false-alarm", type=float, default=0.03, help="the floor of a rule that names none")
    ap.add_argument(
        "--rules",
        nargs="+",
        default=["f1"],
        help="operating-point rules to compare, OBJECTIVE[@MAX_FALSE_ALARM] (convert's is f1@0.03)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="fold assignments (seeds seed..seed+R-1), averaged")
    ap.add_argument("--cache", default=None, help="an .npz keeping the device outputs between runs")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.folds < 2 or a.repeats < 1:
        raise MaskwatchError(
            "--folds %d --repeats %d: give 2 or more folds, 1 or more repeats" % (a.folds, a.repeats), EX_USAGE
        )

    def rule_of(spec: str) -> Tuple[str, float]:
        objective, _, floor = spec.partition("@")
        try:
            fl = float(floor) if floor else a.max_false_alarm
        except ValueError:
            fl = -1.0
        if objective not in operating.ALERT_OBJECTIVES or not 0.0 <= fl < 1.0:
            raise MaskwatchError(
                "--rules %r: OBJECTIVE[@MAX_FALSE_ALARM], OBJECTIVE one of %s (e.g. f1@0.03 recall@0.02)"
                % (spec, ", ".join(operating.ALERT_OBJECTIVES)),
                EX_USAGE,
            )
        return objective, fl

    parsed = {spec: rule_of(spec) for spec in a.rules}  # a wrong rule is told before minutes of inference
    bundle = load_bundle(Path(a.bundle))
    crops = load_crops(Path(a.crops))
    _, va_y, va_i = split_arrays(Path(a.run), crops, Split.VAL)
    real = np.isin(crops["sources"][va_i], REAL_SOURCES)
    idx, y = va_i[real], va_y[real]
    cache = Path(a.cache) if a.cache else None
    if cache is not None and cache.exists():
        try:
            with np.load(cache) as c:
                same = np.array_equal(c["idx"], idx) and str(c["model_id"]) == bundle.model_id
                plain, mirrored = c["plain"], c["mirrored"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            raise MaskwatchError(
                "--cache %s: not an outputs cache written by this script; give a new path (it is written there)"
                % cache,
                EX_USAGE,
            ) from None
        if not same:
            raise MaskwatchError(
                "--cache %s: holds another bundle's or split's outputs; give a new path or delete it" % cache, EX_USAGE
            )
    else:
        clf = MaskClassifier(bundle, bundle.default_variant, fallback=False, batch=32)
        plain, mirrored = device_outputs(clf, view_images(crops, idx, VIEW_SETS["scales+shifts"]))
        assert mirrored is not None
        if cache is not None:
            np.savez(cache, idx=idx, model_id=bundle.model_id, plain=plain, mirrored=mirrored)

    def verdicts(op: Dict[str, Any], sel: np.ndarray) -> np.ndarray:
        out = (plain[:, sel], None if mirrored is None else mirrored[:, sel])
        return operating.predict_labels(combine(out, len(op["views"]), op["flip_average"]), LABELS, op)

    def setting(op: Dict[str, Any]) -> Dict[str, Any]:
        keep = ("temperature", "no_face_threshold", "alert_threshold", "incorrect_weight", "flip_average")
        return dict({k: op.get(k) for k in keep}, views=len(op["views"]))

    def choose(sel: np.ndarray, objective: str, floor: float) -> Dict[str, Any]:
        out = (plain[:, sel], None if mirrored is None else mirrored[:, sel])
        return choose_with_views(out, y[sel], max_false_alarm=floor, alert_objective=objective)

    every = np.ones(len(y), dtype=bool)
    rules: Dict[str, Any] = {}
    for spec, (objective, floor) in parsed.items():
        op_all = choose(every, objective, floor)
        in_sample = summary(operating.face_report(verdicts(op_all, every), y, LABELS))
        repeats, per_fold = [], []
        for r in range(a.repeats):
            folds = group_folds(crops["groups"][idx], a.folds, a.seed + r)
            pred = np.full(len(y), -1, dtype=np.int64)
            for f in range(a.folds):
                out_f = folds == f
                op = choose(~out_f, objective, floor)
                pred[out_f] = verdicts(op, out_f)
                per_fold.append(
                    dict(
                        setting(op),
                        repeat=r,
                        fold=f,
                        crops=int(out_f.sum()),
                        faces=int(np.sum(y[out_f] != LABELS.index("no_face"))),
                        incorrectly_worn=int(np.sum(y[out_f] == LABELS.index("mask_weared_incorrect"))),
                    )
                )
            repeats.append(summary(operating.face_report(pred, y, LABELS)))
        oof = {k: round(float(np.mean([rep[k] for rep in repeats])), 4) for k in repeats[0]}
        rules[spec] = {
            "objective": objective,
            "max_false_alarm": floor,
            "in_sample": dict(in_sample, setting=setting(op_all)),
            "out_of_fold": oof,
            "out_of_fold_repeats": repeats,
            "optimism": {k: round(float(in_sample[k]) - float(oof[k]), 4) for k in in_sample if k != "faces"},
            "per_fold": per_fold,
        }
    shipped = bundle.operating_point
    first = rules[a.rules[0]]["in_sample"]["setting"]
    doc = {
        "bundle": a.bundle,
        "model_id": bundle.model_id,
        "run": a.run,
        "split": "val (real sources only)",
        "folds": a.folds,
        "repeats": a.repeats,
        "seed": a.seed,
        "rules": rules,
        "shipped_setting_is_first_rule_in_sample": bool(
            abs(float(shipped.temperature) - float(first["temperature"])) < 1e-9
            and shipped.alert_threshold == first["alert_threshold"]
            and len(shipped.views) == first["views"]
        ),
        "machine": machine(),
        "command": " ".join(sys.argv),
    }
    for spec, v in rules.items():
        print(spec, "in-sample", json.dumps(v["in_sample"]))
        print(spec, "out-of-fold", json.dumps(v["out_of_fold"]))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
