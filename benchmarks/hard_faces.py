"""Faces every bundle gets wrong, per source and class, on two split sides side by side.

Reads the per-face verdicts `compare_bundles.py --per-face` writes (one file per split side) and, over the
bundles present in every file, counts per source and class: the faces, those each bundle gets wrong, those
*all* of them get wrong (and in how many photo groups), and for the first two files a two-sided Fisher exact
test of "wrong under every bundle" between them. Bundles that trained on one of the sides (a refit on val) are
left out with --exclude, so both sides are judged by the same held-out bundles.

    benchmarks/compare_bundles.py work/bundles/ens3 work/bundles/shipped-v3-fit work/bundles/shipped-a050-96-v2 \
        --run work/runs/common --split val --crops work/crops96.npz work/crops112.npz work/crops112x.npz \
        --per-face work/s28/perface-val.json          # and the same with --split test
    benchmarks/hard_faces.py work/s28/perface-val.json work/s28/perface-test.json \
        --out benchmarks/results/hard-faces.json

With --crops (the crops file the per-face indices point into) and --run (the split that trained the bundles),
the real faces of each side are also split by face width (< 40, 40-80, >= 80 px at the annotated box) and, for
ilc2021, by its reviewed main set and the unreviewed contributor branches (UNMERGED_BRANCH_FILES.txt), each with
how many faces each bundle gets right; and each face's closest training face is found (32x32 grey thumbnails,
correlation, mirrored too), to see whether one side has closer twins in training than the other.
"""

from __future__ import annotations

import argparse
import json
import sys
from math import comb
from pathlib import Path
from typing import Any, Dict, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL_FIRST = ("andrewmvd-train", "ilc2021-jolignier", "chandrikadeb7", "maskedfacenet-maskon")


def fisher_two_sided(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher exact p for the 2x2 table [[a, b], [c, d]] (tables no likelier than the one seen)."""
    n1, n2, k = a + b, c + d, a + c
    total = comb(n1 + n2, k)

    def p(x: int) -> float:
        return comb(n1, x) * comb(n2, k - x) / total

    seen = p(a)
    return min(1.0, sum(p(x) for x in range(max(0, k - n2), min(k, n1) + 1) if p(x) <= seen * (1 + 1e-9)))


def hard(doc: Dict[str, Any], models: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """{"source / class": {faces, wrong_by_each, wrong_by_all, groups_of_wrong_by_all}}."""
    labels = list(doc["labels"])
    out: Dict[str, Dict[str, Any]] = {}
    keys = sorted(
        set(zip(doc["source"], doc["label"])),
        key=lambda k: (REAL_FIRST.index(k[0]) if k[0] in REAL_FIRST else 99, k[1]),
    )
    for src, lab in keys:
        ix = [i for i, (s, y) in enumerate(zip(doc["source"], doc["label"])) if s == src and y == lab]
        wrong_all = [i for i in ix if all(doc["pred"][m][i] != lab for m in models)]
        out["%s / %s" % (src, labels[lab])] = {
            "faces": len(ix),
            "wrong_by_each": {m: sum(1 for i in ix if doc["pred"][m][i] != lab) for m in models},
            "wrong_by_all": len(wrong_all),
            "groups_of_wrong_by_all": len({doc["group"][i] for i in wrong_all}),
        }
    return out


WIDTHS = ((0, 40), (40, 80), (80, 100000))
BRANCH_LIST = Path("../shared/data/ilc2021-jolignier/UNMERGED_BRANCH_FILES.txt")


def thumbs(images: Any, flip: bool = False) -> Any:
    """Zero-mean, unit-norm 32x32 grey thumbnails (N, 1024) of RGB crops: the split's near-duplicate thumbnail
    (export.split.grey32), compared by correlation instead of hashed."""
    import numpy as np

    from export.split import grey32

    out = np.empty((len(images), 1024), np.float32)
    for k, im in enumerate(images):
        t = grey32(im[:, ::-1] if flip else im).ravel()
        t -= t.mean()
        out[k] = t / (np.linalg.norm(t) + 1e-6)
    return out


def breakdown(doc: Dict[str, Any], models: Sequence[str], crops: Any, train_thumbs: Any) -> Dict[str, Any]:
    """Per real source and class: right per bundle by face width, by ilc2021 subset; closest training twin."""
    import numpy as np

    branch = set(Path(x).name for x in BRANCH_LIST.read_text().split()) if BRANCH_LIST.exists() else set()
    ci = np.asarray(doc["crop_index"])
    boxes = crops["boxes"][ci]
    width = boxes[:, 2] - boxes[:, 0]
    subset = np.array(["branch" if Path(str(f)).name in branch else "main" for f in crops["files"][ci]])
    q = thumbs(crops["images"][ci])
    twin = np.maximum((q @ train_thumbs[0].T).max(1), (q @ train_thumbs[1].T).max(1))
    labels = list(doc["labels"])
    src, lab = np.asarray(doc["source"]), np.asarray(doc["label"])
    out: Dict[str, Any] = {}
    for s in REAL_FIRST[:3]:
        for y in sorted(set(lab[src == s].tolist())):
            cell = (src == s) & (lab == y)
            parts = {
                "width %d-%s" % (lo, hi if hi < 100000 else ""): cell & (width >= lo) & (width < hi)
                for lo, hi in WIDTHS
            }
            if s == "ilc2021-jolignier":
                parts.update({"subset " + k: cell & (subset == k) for k in ("main", "branch")})
            out["%s / %s" % (s, labels[y])] = {
                "faces": int(cell.sum()),
                "closest_training_twin_median": round(float(np.median(twin[cell])), 3),
                "twins_at_0.9_or_more": int((twin[cell] >= 0.9).sum()),
                "right": {
                    k: {"faces": int(m.sum()), **{b: int((np.asarray(doc["pred"][b])[m] == y).sum()) for b in models}}
                    for k, m in parts.items()
                },
            }
    return out


def main() -> int:
    from edge.errors import EX_DATAERR, EX_USAGE, MaskwatchError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("per_face", nargs="+", help="compare_bundles.py --per-face files (val first, then test)")
    ap.add_argument("--exclude", nargs="*", default=[], help="model ids left out (e.g. a refit trained on val)")
    ap.add_argument("--crops", default=None, help="the crops file of the per-face indices (for the breakdown)")
    ap.add_argument("--run", default=None, help="with --crops: the run whose train split trained the bundles")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if bool(a.crops) != bool(a.run):
        raise MaskwatchError("--crops and --run go together (the breakdown needs both)", EX_USAGE)
    docs: List[Dict[str, Any]] = []
    for p in a.per_face:
        try:
            d = json.loads(Path(p).read_text())
        except ValueError as e:
            raise MaskwatchError("%s: not JSON (%s)" % (p, e), EX_DATAERR)
        missing = [k for k in ("labels", "pred", "label", "source", "group") if not isinstance(d, dict) or k not in d]
        if missing:
            raise MaskwatchError(
                "%s: not a compare_bundles.py --per-face file (no %s)" % (p, ", ".join(missing)), EX_DATAERR
            )
        docs.append(d)
    models = [m for m in docs[0]["pred"] if m not in a.exclude and all(m in d["pred"] for d in docs)]
    if not models:
        raise MaskwatchError("no bundle is in every file (after --exclude): nothing to compare", EX_DATAERR)
    sides = [{"file": p, "split": d.get("split"), "by_source_class": hard(d, models)} for p, d in zip(a.per_face, docs)]
    tests: Dict[str, Any] = {}
    if len(sides) >= 2:
        x, y = sides[0]["by_source_class"], sides[1]["by_source_class"]
        for k in x:
            if k in y:
                a1, n1, a2, n2 = x[k]["wrong_by_all"], x[k]["faces"], y[k]["wrong_by_all"], y[k]["faces"]
                tests[k] = {"p_two_sided": round(fisher_two_sided(a1, n1 - a1, a2, n2 - a2), 6)}
    if a.crops:
        from export.crops import load, split_index

        crops = load(Path(a.crops))
        tr = split_index(Path(a.run), "train")
        tr = tr[(crops["labels"][tr] < 3) & (crops["sources"][tr] != "maskedfacenet-maskon")]
        train_thumbs = (thumbs(crops["images"][tr]), thumbs(crops["images"][tr], flip=True))
        for side, d in zip(sides, docs):
            side["breakdown"] = breakdown(d, models, crops, train_thumbs)
    doc = {
        "models": models,
        "sides": sides,
        "fisher_wrong_by_all_first_vs_second": tests,
        "command": " ".join(["benchmarks/hard_faces.py"] + sys.argv[1:]),
    }
    for s in sides:
        print(s["split"])
        for k, v in s["by_source_class"].items():
            print(
                "  %-45s faces %4d  wrong by all %d: %3d (%d groups)%s"
                % (
                    k,
                    v["faces"],
                    len(models),
                    v["wrong_by_all"],
                    v["groups_of_wrong_by_all"],
                    "  p %.4f" % tests[k]["p_two_sided"] if s is not sides[0] and k in tests else "",
                )
            )
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
