#!/usr/bin/env python3
"""Old bundle vs new on the same held-out crops, real photos first, through the device's own code.

    .venv/bin/python benchmarks/compare_bundles.py --run work/runs/v3 --crops work/crops96.npz \
        --split test models/default work/bundles/v2 work/bundles/old \
        --md benchmarks/model-comparison.md --json benchmarks/results/model-comparison.json

Every bundle is scored by edge.classifier (its int8 variant, LiteRT, with the bundle's own operating
point: calibration, flip averaging, test-time views, thresholds, no_face rejection; argmax for bundles
without one) on the face crops of one split of one run; a bundle with views has each face cut again from
its photo per view, as the device cuts it. Bundles trained on another split may have seen some of these crops:
the table says which split each was trained on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def markdown(doc: Dict[str, Any]) -> str:
    """The comparison as a page (benchmarks/model-comparison.md)."""
    rows = doc["rows"]
    lines = [
        "# Model comparison (same held-out crops, real photos first)",
        "",
        "Made by `%s` (%s split of `%s`; the device's LiteRT int8 variant with each bundle's own operating "
        "point). Face crops only; a face rejected as no_face counts as a miss."
        % ("python " + doc["command"], doc["split"], doc["run"]),
        "",
        "| bundle | source | faces | macro-F1 | incorrect P / R | with_mask flagged | without recall | "
        "alert P / R / F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for src, v in r["by_source"].items():
            pc = v["per_class"]
            lines.append(
                "| %s | %s | %d | %s | %.3f / %.3f | %s | %.3f | %.3f / %.3f / %.3f |"
                % (
                    r["model_id"],
                    src,
                    v["faces"],
                    v["macro_f1"],
                    pc["mask_weared_incorrect"]["precision"],
                    pc["mask_weared_incorrect"]["recall"],
                    "%.3f" % v["with_mask_flagged"] if v["with_mask_flagged"] is not None else "-",
                    pc["without_mask"]["recall"],
                    v["alert"]["precision"],
                    v["alert"]["recall"],
                    v["alert"]["f1"],
                )
            )
    lines += [
        "",
        "How far these numbers can be trusted: real macro-F1 with its 95 % interval over 2000 resamples of the "
        "split's near-duplicate groups (the faces of one photo move together), and each bundle's difference "
        "from the first on the same resamples.",
        "",
        "| bundle | real macro-F1 [95 %%] | vs %s [95 %%] | P(better) |" % rows[0]["model_id"],
        "|---|---|---|---|",
    ]
    for r in rows:
        iv = r["real_macro_f1_interval"]
        vs = iv.get("vs_first")
        lines.append(
            "| %s | %.3f [%.3f, %.3f] | %s | %s |"
            % (
                r["model_id"],
                iv["macro_f1"],
                iv["lo"],
                iv["hi"],
                "%+.3f [%+.3f, %+.3f]" % (vs["delta"], vs["lo"], vs["hi"]) if vs else "-",
                "%.2f" % vs["p_better"] if vs else "-",
            )
        )
    lines += [
        "",
        "| bundle | training | int8/fp32 agreement | fp32 KB | int8 KB | fp32 ms | int8 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tc = r["train_config"]
        lines.append(
            "| %s | a%s@%s, %s epochs, weights %s, sampling %s | %.4f | %.0f | %.0f | %.3f | %.3f |"
            % (
                r["model_id"],
                tc["alpha"],
                tc["input_size"],
                tc["epochs"],
                tc["class_weight"],
                tc["oversample"],
                r["int8_fp32_agreement"],
                r["fp32_kb"],
                r["int8_kb"],
                r["latency_ms"]["fp32"],
                r["latency_ms"]["int8"],
            )
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    from edge import bench
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.crop import resize_crops_rgb
    from export import metrics, operating
    from export.crops import load as load_crops
    from export.crops import split_index, view_images
    from export.datasets import LABELS, REAL_SOURCES
    from export.evaluate import grey_crops

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="*")
    ap.add_argument("--run", default=None)
    ap.add_argument(
        "--crops",
        nargs="+",
        default=["work/crops96.npz"],
        help="crops files (same faces, cut at different sizes): each bundle uses the one cut at its "
        "input size, so no crop is resized twice",
    )
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--md", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--per-face",
        default=None,
        help="also write each face's verdict under every bundle (crop index, label, source, near-duplicate group): "
        "which faces every bundle gets wrong",
    )
    ap.add_argument("--md-from", default=None, help="only write --md again from this comparison JSON")
    ap.add_argument(
        "--grey",
        action="store_true",
        help="every crop as a monochrome / IR-night camera gives it (luma in all three channels)",
    )
    a = ap.parse_args()
    if a.md_from:
        if not a.md:
            ap.error("--md-from needs --md")
        Path(a.md).write_text(markdown(json.loads(Path(a.md_from).read_text())))
        return 0
    if not a.bundles or not a.run:
        ap.error("give the bundles to compare and --run")

    files = [load_crops(Path(c)) for c in a.crops]
    crops = files[0]

    def fit_key(fit) -> tuple:
        return tuple(round(float(v), 4) for v in (fit if fit is not None else (0.0, 0.0, 0.0, 0.0)))

    def margin_key(m) -> float:
        return round(float(m if m is not None else 0.15), 4)

    # a bundle takes the file cut at its input size with its box fit and crop margin (`extend`ed files append
    # crops: the shared prefix holds the same faces at the same indices)
    by_key = {(int(c["images"].shape[1]), fit_key(c.get("box_fit")), margin_key(c.get("margin"))): c for c in files}
    by_size = {int(c["images"].shape[1]): c for c in files}
    for c in files[1:]:
        n = min(len(c["files"]), len(crops["files"]))
        same = (c["files"][:n] == crops["files"][:n]).all() and (c["labels"][:n] == crops["labels"][:n]).all()
        assert same, "crops files differ"
    idx = split_index(Path(a.run), a.split)
    face = crops["labels"][idx] < 3
    idx = idx[face]
    labels, sources = crops["labels"][idx], crops["sources"][idx]
    real = np.isin(sources, REAL_SOURCES)
    groups = crops["groups"][idx]  # faces of one photo and its near-duplicates: resampled as one
    first_pred = None
    rows: List[Dict[str, Any]] = []
    per_face: Dict[str, List[int]] = {}
    for bp in a.bundles:
        b = load_bundle(Path(bp))
        clf = MaskClassifier(b, "tflite_int8", fallback=False)
        src = by_key.get(
            (int(b.input_size[0]), fit_key(b.box_fit), margin_key(b.crop_margin)), by_size.get(int(b.input_size[0]))
        )
        if src is not None and margin_key(src.get("margin")) != margin_key(b.crop_margin):
            raise SystemExit(
                "compare_bundles: %s crops faces with margin %s and no --crops file is cut at it: add one "
                "(edge-export prepare --margin %s)" % (bp, b.crop_margin, b.crop_margin)
            )
        if src is None:
            print(
                "compare_bundles: no crops cut at %d px: resizing the first file's (not the device's crop)"
                % b.input_size[0],
                file=sys.stderr,
            )
            src = crops
        x = resize_crops_rgb(src["images"][idx], b.input_size)
        views = b.operating_point.views
        if len(views) > 1 and src["images"].shape[1:3] != tuple(b.input_size):
            raise SystemExit("compare_bundles: %s has test-time views; give crops cut at its input size" % bp)
        # (V, N, ...): the device's test-time views, each face cut again from its photo per view
        xv = view_images(src, idx, views) if len(views) > 1 else x[None]
        if a.grey:
            x, xv = grey_crops(x), grey_crops(xv)
        probs = np.concatenate([clf.probs(xv[:, i : i + 64]) for i in range(0, len(x), 64)])
        op = b.manifest.get("operating_point")
        out_labels = list(b.labels)
        if op is None:  # an argmax bundle: its outputs are the three face classes
            pred3 = probs.argmax(1)
            pred = np.array([LABELS.index(out_labels[k]) for k in pred3])
        else:
            pred = operating.predict_labels(probs, out_labels, op)
            pred = np.array([LABELS.index(out_labels[k]) for k in pred])
        per = operating.by_source(pred, labels, sources, LABELS, REAL_SOURCES)
        per_face[b.model_id if b.model_id not in per_face else bp] = [int(k) for k in pred]  # two copies: by path
        # how far the split's number can be trusted: real macro-F1's 95 % interval over resamples of its
        # near-duplicate groups, and the paired difference from the first bundle on the same resamples
        # (the macro-F1 is over the three face classes; a face called no_face is a miss)
        pr = pred[real]
        interval = metrics.bootstrap_interval(labels[real], pr, len(LABELS), groups=groups[real], scored=3)
        if first_pred is None:
            first_pred = pr
        else:
            interval["vs_first"] = metrics.paired_bootstrap(
                labels[real], first_pred, pr, len(LABELS), groups=groups[real], scored=3
            )
        fp32 = MaskClassifier(b, "tflite_fp32", fallback=False)
        p32 = np.concatenate([fp32.infer(x[i : i + 64]) for i in range(0, len(x), 64)])
        p8 = np.concatenate([clf.infer(x[i : i + 64]) for i in range(0, len(x), 64)])
        h, w = b.input_size
        one = np.random.RandomState(0).randint(0, 255, (1, h, w, 3)).astype(np.uint8)
        lat = {
            k: bench.measure(lambda c=c, one=one: c.backend.infer(one), warmup=20, runs=300, min_time=1.0)["p50_ms"]
            for k, c in (("fp32", fp32), ("int8", clf))
        }
        files = b.manifest["files"]
        card = b.manifest.get("model_card", {})
        rows.append(
            {
                "bundle": bp,
                "model_id": b.model_id,
                "labels": out_labels,
                "train_config": {
                    k: card.get("train_config", {}).get(k)
                    for k in ("alpha", "input_size", "epochs", "class_weight", "oversample")
                },
                "trained_on_split_of": (card.get("split") or {}).get("counts"),
                "operating_point": {k: v for k, v in (op or {}).items() if k not in ("validation", "rule")} or "argmax",
                "by_source": per,
                "real_macro_f1_interval": interval,
                "int8_fp32_agreement": round(float(np.mean(p8.argmax(1) == p32.argmax(1))), 4),
                "int8_kb": round(files[b.manifest["variants"]["tflite_int8"]["file"]]["size"] / 1024.0, 1),
                "fp32_kb": round(files[b.manifest["variants"]["tflite_fp32"]["file"]]["size"] / 1024.0, 1),
                "latency_ms": lat,
            }
        )
        print(bp, json.dumps({k: (v["macro_f1"], v["alert"]["f1"]) for k, v in per.items()}), flush=True)
        print("  real macro-F1 interval %s" % json.dumps(interval), flush=True)
    doc = {
        "split": a.split,
        "grey": a.grey,
        "run": a.run,
        "crops": a.crops,
        "rows": rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "command": " ".join(sys.argv),
    }
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1))
    if a.per_face:
        Path(a.per_face).write_text(
            json.dumps(
                {
                    "split": a.split,
                    "labels": list(LABELS),
                    "crop_index": [int(i) for i in idx],
                    "label": [int(k) for k in labels],
                    "source": [str(x) for x in sources],
                    "group": [str(g) for g in groups],
                    "pred": per_face,
                    "command": " ".join(sys.argv),
                }
            )
        )
    if a.md:
        Path(a.md).write_text(markdown(doc))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
