#!/usr/bin/env python3
"""Choose the kiosk detector setting on validation scenes, then report it on the test scenes once.

    .venv/bin/python benchmarks/kiosk_setting.py --run work/runs/v3 --bundle models/default \
        --out benchmarks/results/kiosk-setting.json

res10 confidence x the bundle's no_face rejector threshold, faces >= 40 px (kiosk range), on the
held-out real scenes (andrewmvd crowd photos and ilc2021 web photos, each scene on one side of the
split). The setting chosen is the best non-compliant F1 on the val scenes among those with face
recall >= 0.95 (the best F1 if none reaches it); the test scenes then get that one setting.

Each chosen setting carries `false_alarm_kinds`: its false alarms split by what annotated face lies under
each (export.evaluate.false_alarm_kind): the classifier flagging a with_mask face, a second box of a found
face, a loose box around a face no box matched, no annotation at all (an unannotated face, or not a face).

`--paired-with OTHER.json` (another bundle's run of this script on the same scenes) adds the paired
difference of the two chosen settings' non-compliant F1, resampled by scene (`paired_val`, and `paired_test`
with --test): whether the gain holds beyond which photos happened to land in the split.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


SETTING_KEYS = ("confidence", "no_face_threshold", "face_score")
# the joint face score's axis (--face-score): as many values as the no_face axis has
FACE_SCORES = (0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def best_at(grid: list, floor: float) -> Optional[dict]:
    """The grid's setting with the best non-compliant F1 among those with face recall >= floor (None if none
    reaches it): the one rule both for the chosen setting and for the report at must-show 3's floor."""
    ok = [g for g in grid if g["face_recall"] >= floor]
    return max(ok, key=lambda g: (g["noncompliant"]["f1"], g["face_recall"])) if ok else None


def summary(g: Optional[dict]) -> Optional[dict]:
    keys = SETTING_KEYS + ("face_recall", "noncompliant", "false_alarm_kinds")
    return None if g is None else {k: g[k] for k in keys if k in g}


def load_paired(path: Path) -> dict:
    """Another bundle's result of this script (--paired-with), refused in one line before any scene is read
    when it is not one: not JSON, or without the chosen setting this script writes."""
    from edge.errors import EX_DATAERR, MaskwatchError

    try:
        res = json.loads(path.read_text())
    except ValueError as e:
        raise MaskwatchError("%s is not JSON (%s): pass a file this script wrote with --out" % (path, e), EX_DATAERR)
    if not isinstance(res, dict) or not isinstance(res.get("chosen"), dict):
        raise MaskwatchError(
            "%s holds no chosen setting: pass a file kiosk_setting.py wrote with --out" % path, EX_DATAERR
        )
    return res


def chosen_counts(res: dict, key: str):
    """(scene ids, per-scene (tp, fp, fn)) of a result's chosen setting: "chosen" (val) or "test_chosen"."""
    sel = res[key]
    g = sel["val"] if key == "chosen" else sel["all"]
    if "per_scene" not in g or "scene_ids" not in sel:
        raise SystemExit(
            "kiosk_setting: %s has no per-scene counts (made before --paired-with existed): run it again" % key
        )
    return sel["scene_ids"], g["per_scene"]


def paired(base: dict, new: dict, key: str, split: str) -> dict:
    from export.metrics import paired_bootstrap_f1

    ids_a, a = chosen_counts(base, key)
    ids_b, b = chosen_counts(new, key)
    if ids_a != ids_b:
        raise SystemExit("kiosk_setting: --paired-with was run on other %s scenes; pair runs of the same split" % split)
    out = paired_bootstrap_f1(a, b)
    out["base"] = base.get("model_id")
    out["base_setting"] = {k: base["chosen"].get(k) for k in ("confidence", "no_face_threshold", "face_score")}
    return out


def detector_key(name: str):
    """argparse type for detector.`name`: a number within the limits the config schema gives that key
    (edge/config.py, the one source), refused in one line otherwise."""
    import dataclasses

    from edge.config import DetectorConfig

    meta = {f.name: f.metadata for f in dataclasses.fields(DetectorConfig)}[name]
    lo, hi = meta["min"], meta["max"]

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a number" % text) from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError("%s is outside detector.%s's %s..%s" % (text, name, lo, hi))
        return v

    return parse


def detector_kw(a: argparse.Namespace) -> dict:
    """The detector side of this run's sweep, as export.evaluate.sweep_detector_options takes it: one reading of
    the flags for the sweep, the timing of its setting and the check of a --given-by file."""
    return dict(
        mode=a.mode,
        flip=a.flip,
        whole_pass=a.whole_pass,
        min_face_px=a.min_face if a.det_min_face is None else a.det_min_face,
        containment=a.containment,
        own_share=a.own_share,
        tile_sizes=tuple(a.tile_sizes),
        decay=a.nms_decay,
        upscale=a.upscale,
    )


def given_setting(path: Path, a: argparse.Namespace) -> dict:
    """--given-by: the setting another bundle's val run of this script chose, refused in one line unless that run
    swept what this one sweeps (size floor, detector mode and tiles, box rules, matching rule; the face rule)."""
    from edge.errors import EX_DATAERR, MaskwatchError
    from export.evaluate import matching_rule, sweep_detector_options

    res = load_paired(path)
    ch, val = res["chosen"], (res.get("val") or {}).get("all")
    if ch.get("given") or not val or ch.get("face_score") is not None:
        raise MaskwatchError("%s chose no setting on val (a --at, --given-by or --face-score run)" % path, EX_DATAERR)
    o = sweep_detector_options(ch.get("confidence", 0.5), **detector_kw(a))
    mine = {  # as kiosk_sweep records its sweep
        "min_face": a.min_face,
        "mode": o.mode,
        "tile_sizes": list(o.tile_sizes) or None,
        "detector_min_face_px": o.min_face_px,
        "flip": o.flip,
        "whole_pass": o.whole_pass,
        "whole_pass_min_px": o.whole_pass_min_px if o.whole_pass else None,
        "nms_containment": o.nms_containment,
        "nms_own_share": o.nms_own_share,
        "nms_decay": o.nms_decay,
        "upscale": o.upscale,
        "matching": matching_rule(0.4, not a.iou_only, a.enclose),
    }
    theirs = {"min_face": res.get("min_face"), **{k: val.get(k) for k in mine if k != "min_face"}}
    # both recorded only when on (files before them have neither)
    theirs["whole_pass"] = bool(theirs["whole_pass"])
    theirs["nms_decay"] = bool(theirs["nms_decay"])
    theirs["upscale"] = theirs["upscale"] or 1.0  # recorded only when not 1
    differ = ["%s %s there, %s here" % (k, theirs[k], mine[k]) for k in mine if mine[k] != theirs[k]]
    if differ:
        raise MaskwatchError(
            "%s swept another setting (%s): give the same flags" % (path, "; ".join(differ)), EX_DATAERR
        )
    return {"file": str(path), "model_id": res.get("model_id"), "val": summary(ch["val"])}


def tile_size(text: str) -> int:
    """argparse type for one of --tile-sizes: an integer within detector.tile_sizes' limits (edge/config.py)."""
    from edge.config import TILE_SIZE_LIMITS, tile_size_ok

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number of pixels" % text) from None
    if not tile_size_ok(v):
        raise argparse.ArgumentTypeError("%s is outside detector.tile_sizes' %d..%d px" % ((text,) + TILE_SIZE_LIMITS))
    return v


def strip_per_scene(res: dict) -> None:
    """Per-scene counts and false-alarm kinds stay only at the chosen settings (what --paired-with reads, and
    what a person reads): the grid stays readable."""
    for split in ("val", "test"):
        for sweep in [res.get(split, {}).get("all")] + list(res.get(split, {}).get("per_source", {}).values()):
            for g in (sweep or {}).get("grid", []):
                g.pop("per_scene", None)
                g.pop("false_alarm_kinds", None)
            (sweep or {}).pop("scene_ids", None)
    for k, v in res.get("test_chosen", {}).items():
        if isinstance(v, dict) and k != "all":
            v.pop("per_scene", None)


def main() -> int:
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.config import DETECTOR_MODES, TILED_MODES
    from export.crops import load as load_crops
    from export.crops import split_index
    from export.evaluate import kiosk_sweep, scene_ids_of, setting_ms, sweep_detector_options
    from export.metrics import bootstrap_f1

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--crops", default="work/crops96.npz")
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default"))
    ap.add_argument(
        "--scenes", nargs="*", default=["../shared/data/andrewmvd-train", "../shared/data/ilc2021-jolignier"]
    )
    ap.add_argument("--min-face", type=int, default=40, help="annotated faces narrower than this are left out (0: all)")
    ap.add_argument("--min-recall", type=float, default=0.95)
    ap.add_argument("--mode", default="single", choices=DETECTOR_MODES)
    ap.add_argument(
        "--tile-sizes",
        nargs="+",
        type=tile_size,
        default=(),
        metavar="PX",
        help="with --mode tiles: a pyramid of tile sizes (detector.tile_sizes), e.g. 200 100",
    )
    ap.add_argument("--flip", action="store_true", help="detector.flip: also detect on the mirrored frame")
    ap.add_argument(
        "--whole-pass",
        action="store_true",
        help="detector.whole_pass: modes native/auto also run the whole frame at 300x300 (faces close to the camera)",
    )
    ap.add_argument(
        "--det-min-face", type=int, default=None, help="detector.min_face_px (default --min-face): the box filter"
    )
    ap.add_argument(
        "--containment",
        type=detector_key("nms_containment"),
        default=None,
        help="detector.nms_containment (default: the config's)",
    )
    ap.add_argument(
        "--own-share",
        type=detector_key("nms_own_share"),
        default=None,
        help="detector.nms_own_share (default: the config's)",
    )
    ap.add_argument(
        "--nms-decay",
        action="store_true",
        help="detector.nms_decay: after NMS, weak boxes' scores decay by their overlap with stronger ones",
    )
    ap.add_argument(
        "--upscale",
        type=detector_key("upscale"),
        default=1.0,
        help="detector.upscale: modes native/auto run their pass on the frame scaled by this (sides rounded to 32)",
    )
    ap.add_argument(
        "--iou-only",
        action="store_true",
        help="match detections to annotations by IoU alone (the protocol before session 6)",
    )
    ap.add_argument(
        "--enclose",
        action="store_true",
        help="a variant matching rule reported beside the shipped one: a loose box enclosing an annotated face "
        "(90 %% of the face inside it, the face >= 25 %% of it) finds that face",
    )
    ap.add_argument(
        "--face-score",
        action="store_true",
        help="sweep the joint face score k (detector score x (1 - P(no_face)) >= k) instead of the no_face "
        "threshold, beside the confidence floor (export.evaluate.is_face)",
    )
    ap.add_argument(
        "--choose-on",
        nargs="*",
        default=None,
        help="choose the setting on the val scenes of these sources only (names of --scenes directories; a "
        "license-clean bundle is chosen on its own sources), still reported on all of --scenes",
    )
    ap.add_argument("--test", action="store_true", help="also report the chosen setting on the test scenes")
    ap.add_argument(
        "--at",
        nargs=2,
        type=float,
        default=None,
        metavar=("CONFIDENCE", "NO_FACE"),
        help="report this setting on the test scenes instead of choosing one on val (val not read; for a bundle "
        "whose val crops trained it, edge-export train --refit); implies --test",
    )
    ap.add_argument(
        "--given-by",
        default=None,
        metavar="VAL.json",
        help="report on the test scenes the setting another bundle's val run of this script chose (same sweep: "
        "min face, mode, tile sizes, detector min_face_px); val not read here, as with --at",
    )
    ap.add_argument("--paired-with", default=None, help="another bundle's JSON from this script, same scenes")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.tile_sizes and a.mode not in TILED_MODES:
        ap.error("--tile-sizes goes with --mode tiles or auto (detector.tile_sizes is read in those modes only)")
    other = load_paired(Path(a.paired_with)) if a.paired_with else None
    names = [Path(sd).name for sd in a.scenes]
    unknown = sorted(set(a.choose_on or []) - set(names))
    if unknown or a.choose_on == []:
        from edge.errors import EX_USAGE, MaskwatchError

        raise MaskwatchError(
            "--choose-on %s: name one or more of the --scenes sources (%s)"
            % (" ".join(unknown) or "(nothing)", ", ".join(names)),
            EX_USAGE,
        )
    choose_on = [sd for sd in a.scenes if Path(sd).name in set(a.choose_on or names)]
    given = None
    if a.at is not None:
        from edge.errors import EX_USAGE, MaskwatchError
        from export.evaluate import KIOSK_CONFIDENCES as confs
        from export.evaluate import KIOSK_NO_FACE_THRESHOLDS as nfs

        if a.at[0] not in confs or a.at[1] not in nfs or a.choose_on or a.face_score:
            raise MaskwatchError(
                "--at %s %s: give a confidence of %s and a no_face threshold of %s, without --choose-on or "
                "--face-score (nothing is chosen)" % (a.at[0], a.at[1], list(confs), [n for n in nfs if n]),
                EX_USAGE,
            )
        a.test = True
        given = {"confidence": a.at[0], "no_face_threshold": a.at[1], "face_score": None, "given": "--at, not chosen"}

    chosen_by = None
    if a.given_by is not None:
        if a.at is not None or a.choose_on or a.face_score:
            ap.error("--given-by takes the setting from its file: not with --at, --choose-on or --face-score")
        chosen_by = given_setting(Path(a.given_by), a)
        a.test = True
        given = {
            "confidence": chosen_by["val"]["confidence"],
            "no_face_threshold": chosen_by["val"]["no_face_threshold"],
            "face_score": None,
            "given": "chosen on val by %s (%s)" % (chosen_by["model_id"], a.given_by),
        }
    crops = load_crops(Path(a.crops))
    clf = MaskClassifier(load_bundle(Path(a.bundle)), None, fallback=False)
    res = {
        "bundle": a.bundle,
        "model_id": clf.bundle.model_id,
        "min_face": a.min_face,
        "min_recall": a.min_recall,
        "per_source": {},
        "chosen_on": [Path(sd).name for sd in choose_on],
    }
    if given is not None:
        res["chosen"], res["chosen_on"] = given, []
    if chosen_by is not None:
        res["chosen_by"] = chosen_by
    for split in ("val", "test"):
        if split == "test" and not a.test or split == "val" and given is not None:
            continue
        idx = split_index(Path(a.run), split)
        per = {}
        kw = detector_kw(a)
        sweep = dict(
            min_face=a.min_face,
            mode=kw["mode"],
            flip=kw["flip"],
            whole_pass=kw["whole_pass"],
            det_min_face=kw["min_face_px"],
            containment=kw["containment"],
            own_share=kw["own_share"],
            tile_sizes=kw["tile_sizes"],
            decay=kw["decay"],
            upscale=kw["upscale"],
            inside=not a.iou_only,
            enclose=a.enclose,
            face_scores=FACE_SCORES if a.face_score else None,
        )
        for sd in a.scenes:
            ids = {Path(sd).name: scene_ids_of(crops, idx, Path(sd))}
            per[Path(sd).name] = kiosk_sweep([Path(sd)], ids, clf, **sweep)
        ids = {Path(sd).name: scene_ids_of(crops, idx, Path(sd)) for sd in a.scenes}
        both = kiosk_sweep([Path(sd) for sd in a.scenes], ids, clf, **sweep)
        res[split] = {"all": both, "per_source": per}
        if split == "val":
            if len(choose_on) == len(a.scenes):
                chooser = both
            elif len(choose_on) == 1:
                chooser = per[Path(choose_on[0]).name]
            else:
                chooser = kiosk_sweep(
                    [Path(sd) for sd in choose_on], {k: ids[k] for k in ids if k in res["chosen_on"]}, clf, **sweep
                )
            floored = best_at(chooser["grid"], a.min_recall)
            best = floored or best_at(chooser["grid"], 0.0)
            on_all = next(g for g in both["grid"] if all(g.get(k) == best.get(k) for k in SETTING_KEYS))
            res["chosen"] = {
                "confidence": best["confidence"],
                "no_face_threshold": best["no_face_threshold"],
                "face_score": best.get("face_score"),
                "val": dict(on_all),  # a copy: the grid's own per-scene counts are dropped before writing
                "recall_floor_met": floored is not None,
                "best_at_recall_0.95": summary(best_at(both["grid"], 0.95)),  # a report on all val scenes
                "scene_ids": both["scene_ids"],
            }
            if chooser is not both:
                res["chosen"]["val_chosen_on"] = summary(best)
            print("chosen on val: %s" % json.dumps(res["chosen"]))
            for g in both["grid"]:
                print(
                    "val c=%.2f r=%s k=%s recall %.3f NC-F1 %.3f (P %.3f R %.3f)"
                    % (
                        g["confidence"],
                        g["no_face_threshold"],
                        g.get("face_score"),
                        g["face_recall"],
                        g["noncompliant"]["f1"],
                        g["noncompliant"]["precision"],
                        g["noncompliant"]["recall"],
                    )
                )
        else:
            ch = res["chosen"]

            def pick(grid, ch=ch):
                return dict(next(g for g in grid if all(g.get(k) == ch[k] for k in SETTING_KEYS)))

            at = pick(both["grid"])
            res["test_chosen"] = {
                "all": at,
                "scene_ids": both["scene_ids"],
                "ms_per_frame_p50": both["ms_per_frame_p50"],  # the sweep's: lowest confidence, every box classified
                "f1_interval_95": bootstrap_f1(at["per_scene"]),  # over resamples of the test scenes
                # the daemon's time at this setting: res10 at its confidence, the classifier on the boxes it keeps
                "setting_time": setting_ms(
                    [Path(sd) for sd in a.scenes],
                    ids,
                    clf,
                    sweep_detector_options(ch["confidence"], **detector_kw(a)),
                ),
                **{k: pick(v["grid"]) for k, v in per.items()},
            }
            print("test at the chosen setting: %s" % json.dumps(res["test_chosen"]))
    if other is not None:
        for key, split, name in (("chosen", "val", "paired_val"), ("test_chosen", "test", "paired_test")):
            if key in res and key in other and not (key == "chosen" and given is not None):
                res[name] = paired(other, res, key, split)
                print("%s, this bundle - %s: %s" % (name, other.get("model_id"), json.dumps(res[name])))
    strip_per_scene(res)
    res["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    res["command"] = " ".join(sys.argv)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
