#!/usr/bin/env python3
"""Val only: does averaging bundles' outputs beat each alone? (how the shipped ensemble's members were chosen)

    .venv/bin/python benchmarks/ensemble_members.py work/bundles/v4fit work/bundles/v6 work/bundles/v7 \
        --choose-run work/runs/v7 --crops work/crops112x.npz

Each bundle's LiteRT int8 variant scores the crops (with its mirror image averaged); every bundle alone, then
their arithmetic and geometric means, gets an operating point chosen on the choosing run's real val crops (as
`convert` chooses) and is reported on the common split's real val faces (as compare_bundles reports), with a
paired bootstrap of its real macro-F1 against the first bundle's (the faces of one near-duplicate group are
resampled together): an interval spanning 0 says the val split cannot tell the two apart.
`--subsets`: every mean of 2 or more bundles, not only the mean of all.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.crop import resize_crops_rgb
    from export import metrics, operating
    from export.crops import load as load_crops
    from export.crops import split_index
    from export.datasets import LABELS, REAL_SOURCES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--choose-run", required=True, help="the run whose real val crops choose each operating point")
    ap.add_argument("--eval-run", default="work/runs/common", help="the run whose val faces are reported")
    ap.add_argument("--crops", default="work/crops112x.npz")
    ap.add_argument("--json", default=None)
    ap.add_argument("--subsets", action="store_true", help="also every mean of 2 or more of the bundles")
    a = ap.parse_args()
    crops = load_crops(Path(a.crops))

    va = split_index(Path(a.choose_run), "val")
    va = va[np.isin(crops["sources"][va], REAL_SOURCES)]
    ev = split_index(Path(a.eval_run), "val")
    ev = ev[crops["labels"][ev] < 3]
    pv, pe = [], []
    for b in a.bundles:  # each bundle loaded once, both index sets scored with it
        clf = MaskClassifier(load_bundle(Path(b)), "tflite_int8", fallback=False)
        for idx, out in ((va, pv), (ev, pe)):
            x = resize_crops_rgb(crops["images"][idx], clf.size)
            out.append((clf.infer(x) + clf.infer(np.ascontiguousarray(x[:, :, ::-1]))) / 2)

    def geo(ps):
        g = np.exp(np.mean([np.log(np.clip(p, 1e-7, 1)) for p in ps], axis=0))
        return g / g.sum(1, keepdims=True)

    combos = [(b, pv[i], pe[i]) for i, b in enumerate(a.bundles)]
    subsets = [tuple(range(len(a.bundles)))]
    if a.subsets:
        subsets = [g for k in range(2, len(a.bundles) + 1) for g in itertools.combinations(range(len(a.bundles)), k)]
    for g in subsets:
        name = "mean(" + " + ".join(a.bundles[i] for i in g) + ")"
        combos.append((name, np.mean([pv[i] for i in g], axis=0), np.mean([pe[i] for i in g], axis=0)))
    combos.append(("geo(" + " + ".join(a.bundles) + ")", geo(pv), geo(pe)))
    rows = []
    base_pred = None
    real = np.isin(crops["sources"][ev], REAL_SOURCES)
    groups = crops["groups"][ev]  # faces of one photo (and its near-duplicates) are resampled together
    for name, v, e in combos:
        op = operating.choose(v, crops["labels"][va], LABELS, max_false_alarm=0.03, max_face_loss=0.01)
        pred = operating.predict_labels(e, LABELS, op)
        per = operating.by_source(pred, crops["labels"][ev], crops["sources"][ev], LABELS, REAL_SOURCES)
        r = per["real (all)"]
        pc = r["per_class"]
        row = {
            "combo": name,
            "real_macro_f1": r["macro_f1"],
            "incorrect_p": pc["mask_weared_incorrect"]["precision"],
            "incorrect_r": pc["mask_weared_incorrect"]["recall"],
            "with_mask_flagged": r["with_mask_flagged"],
            "without_recall": pc["without_mask"]["recall"],
            "alert_f1": r["alert"]["f1"],
            "per_source_macro_f1": {k: v2["macro_f1"] for k, v2 in per.items() if k != "real (all)"},
        }
        if base_pred is None:
            base_pred = pred
        else:  # is the gain over the first bundle more than val noise? (paired, by group, real faces)
            row["vs_first"] = metrics.paired_bootstrap(
                crops["labels"][ev][real], base_pred[real], pred[real], 4, groups=groups[real], scored=3
            )
        rows.append(row)
        print(
            "%-70s real macro-F1 %.3f  incorrect P/R %.3f/%.3f  with_mask flagged %.3f  without R %.3f  alert F1 %.3f%s"
            % (
                name,
                row["real_macro_f1"],
                row["incorrect_p"],
                row["incorrect_r"],
                row["with_mask_flagged"],
                row["without_recall"],
                row["alert_f1"],
                (
                    "  vs first %+.3f [%+.3f, %+.3f] P(better) %.2f"
                    % tuple(row["vs_first"][k] for k in ("delta", "lo", "hi", "p_better"))
                    if "vs_first" in row
                    else ""
                ),
            ),
            flush=True,
        )
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {"split": "val", "rows": rows, "command": " ".join(["benchmarks/ensemble_members.py"] + sys.argv[1:])},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
