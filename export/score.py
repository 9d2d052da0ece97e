"""A bundle judged on labelled photos it has never seen: `edge-export score --bundle B --data ROOT`.

ROOT holds dataset folders as `edge-export prepare` reads them (VOC scenes: annotations/ + images/; or one folder
per class). Every face is cut as training and the device cut it (edge.crop through export.datasets: annotated
boxes grown by the bundle's crop margin; a folder photo cut to the face res10 finds, moved by the bundle's box
fit), at the bundle's input size, then classified through the device's own code (edge.classifier: the variant's
runtime, test-time views cut again from the photo, calibration, the operating point, the no_face rejector).
Reported per source and for all real sources together, as must-show 1 of issue 12 is: macro-F1 over the three
face classes with its 95 % interval over photos, incorrectly-worn precision and recall, the share of with_mask
faces flagged, without_mask recall, and the alert's precision / recall / F1 (a face rejected as no_face counts
as a miss). Nothing here trains or chooses anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np


def score(
    clf,
    data_root: Path,
    *,
    sources: Optional[Sequence[str]] = None,
    synthetic: Sequence[str] = (),
    detector_dir: Optional[Path] = None,
    batch: int = 64,
) -> Dict[str, Any]:
    """The report (a dict) of one bundle's classifier (edge.classifier.MaskClassifier) on every face under
    `data_root`. `synthetic`: source folder names whose faces are not real photos (reported, left out of "real
    (all)"); `detector_dir`: res10's files for the folder-per-class photos (default: the asset cache)."""
    from edge.errors import EX_NOINPUT, MaskwatchError

    from . import datasets, metrics, operating
    from .crops import view_images

    if not Path(data_root).is_dir():
        raise MaskwatchError("--data %s: no such folder" % data_root, EX_NOINPUT)
    b = clf.bundle
    report = datasets.Report()
    found = datasets.discover(Path(data_root), report)  # once: the crops and the scene pass read these
    detector = None
    if any(kind == "folders" and (not sources or name in sources) for kind, name, _ in found):
        from edge.detector import load_detector, photo_face_options

        detector = load_detector(
            Path(detector_dir) if detector_dir else None, photo_face_options(confidence=0.5)
        )  # the face of a folder photo
    if not found:
        raise MaskwatchError(
            "--data %s: no dataset folder in it (a folder with annotations/ + images/, or one folder per class such "
            "as with_mask/, without_mask/, mask_weared_incorrect/)" % data_root,
            EX_NOINPUT,
        )
    crops, report = datasets.build(
        Path(data_root),
        margin=b.crop_margin,
        size=int(b.input_size[0]),
        detector=detector,
        sources=sources,
        box_fit=b.box_fit,
        found=found,
        report=report,
    )
    crops = [c for c in crops if c.label != datasets.NO_FACE]
    if not crops:
        raise MaskwatchError(
            "--data %s: no labelled face found (see the log for skipped files)" % data_root, EX_NOINPUT
        )
    arr = datasets.stack(crops)
    arr["margin"] = np.array(b.crop_margin)
    arr["box_fit"] = np.array(b.box_fit if b.box_fit is not None else (0.0, 0.0, 0.0, 0.0))
    idx = np.arange(len(crops))
    views = b.operating_point.views
    xv = view_images(arr, idx, views) if len(views) > 1 else arr["images"][None]
    probs = np.concatenate([clf.probs(xv[:, i : i + batch]) for i in range(0, len(idx), batch)])
    out_labels = list(b.labels)
    op = b.manifest.get("operating_point")
    if op is None:  # an argmax bundle
        pred_out = probs.argmax(1)
    else:
        pred_out = operating.predict_labels(probs, out_labels, op)
    labels_all = list(datasets.LABELS)
    pred = np.array([labels_all.index(out_labels[k]) for k in pred_out], np.int64)
    labels = arr["labels"].astype(np.int64)
    src = arr["sources"].astype(str)
    real_sources = [s for s in dict.fromkeys(src.tolist()) if s not in set(synthetic)]
    per = operating.by_source(pred, labels, src, labels_all, real_sources)
    real = np.isin(src, real_sources)
    # the interval's macro-F1 is over all three face classes: only where each has real faces (by_source's own
    # macro-F1 leaves a class a source lacks out)
    every_class = real.any() and all(np.any(labels[real] == k) for k in range(3))
    interval = (
        metrics.bootstrap_interval(labels[real], pred[real], len(labels_all), groups=arr["groups"][real], scored=3)
        if every_class
        else None
    )
    return {
        "model_id": b.model_id,
        "variant": clf.variant.key,
        "data": str(data_root),
        "faces": int(len(crops)),
        "real_sources": real_sources,
        "synthetic_sources": [s for s in synthetic if s in set(src.tolist())],
        "by_source": per,
        "real_macro_f1_interval": interval,
        "sets": [{"kind": kind, "source": name, "path": str(path)} for kind, name, path in found],
        "skipped": report.as_dict().get("skipped", []),
    }


def shown_path(path: Path) -> str:
    """A path as a report shows it: relative to the project when inside it (no machine's own layout)."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def readable_scenes(folder: Path) -> List[str]:
    """The scene ids of a VOC folder whose annotation parses (the others were named in the log when the crops
    were read, and are left out of the scene pass too)."""
    from .datasets import parse_voc

    ids = []
    for x in sorted((folder / "annotations").glob("*.xml")):
        try:
            parse_voc(x)
        except ValueError:
            continue
        ids.append(x.stem)
    return ids


def scenes(
    clf,
    data_root: Path,
    cfg,
    config_path: Path,
    *,
    sources: Optional[Sequence[str]] = None,
    sets: Optional[Sequence[Dict[str, str]]] = None,
) -> Dict[str, Any]:
    """The VOC folders under `data_root` through the detector and the classifier, as must-show 3 of issue 12 is
    measured: at kiosk range (faces >= 40 px) at a kiosk config's (`cfg`, read from `config_path`) detector setting
    and rejector threshold, and
    over every face at `edge-maskd scan`'s setting (edge.config.SCAN). Per folder and for all together: the share
    of annotated faces found, the non-compliant alert's precision / recall / F1 (the matching rule of
    benchmarks/kiosk_setting.py), and the ms a frame of detector and classifier."""
    from edge.config import SCAN

    from . import datasets
    from .evaluate import kiosk_sweep
    from .metrics import binary_f1

    d, cfg_nf = cfg.detector, cfg.classifier.no_face_threshold
    settings = {
        "kiosk range (faces >= 40 px)": {
            "from": shown_path(config_path),
            "min_face": 40,
            "confidence": d.confidence,
            "no_face_threshold": cfg_nf if cfg_nf is not None else clf.bundle.operating_point.no_face_threshold,
            "mode": d.mode,
            "flip": d.flip,
            "det_min_face": d.min_face_px,
            "containment": d.nms_containment,
            "own_share": d.nms_own_share,
            "tile_sizes": tuple(d.tile_sizes or ()),
            "whole_pass": d.whole_pass,
            "decay": d.nms_decay,
            "upscale": d.upscale,
        },
        "all faces": {
            "from": "edge-maskd scan (edge.config.SCAN)",
            "min_face": 0,
            "confidence": SCAN.confidence,
            "no_face_threshold": SCAN.no_face_threshold,
            "mode": SCAN.mode,
            "flip": False,
            "det_min_face": SCAN.min_face_px,
            "containment": None,
            "own_share": None,
            "tile_sizes": tuple(SCAN.tile_sizes),
            "whole_pass": False,
            "decay": False,
            "upscale": 1.0,
        },
    }
    # `sets`: score()'s record of the dataset folders it found (not looked for again)
    found = (
        [(x["kind"], x["source"], Path(x["path"])) for x in sets] if sets is not None else datasets.discover(data_root)
    )
    # VOC folders by source name (a nested set's path below --data: two "Test" folders stay two)
    voc = {name: p for kind, name, p in found if kind == "voc" and (not sources or name in sources)}
    out: Dict[str, Any] = {
        "settings": {k: dict(v, tile_sizes=list(v["tile_sizes"])) for k, v in settings.items()},
        "ranges": {},
    }
    ids = {name: readable_scenes(p) for name, p in voc.items()}
    dirs = {name: p for name, p in voc.items() if ids[name]}
    if not dirs:
        return out
    for label, st in settings.items():
        per: Dict[str, Any] = {}
        for name, p in dirs.items():
            sweep = {k: v for k, v in st.items() if k not in ("from", "confidence", "no_face_threshold")}
            one = {"confidences": (st["confidence"],), "no_face_thresholds": (st["no_face_threshold"],)}
            r = kiosk_sweep([p], {p.name: ids[name]}, clf, **one, **sweep)
            g = r["grid"][0]
            per[name] = {
                "scenes": r["scenes"],
                "faces": g["faces"],
                "found": int(round(g["face_recall"] * g["faces"])),
                "face_recall": g["face_recall"],
                "noncompliant": g["noncompliant"],
                "ms_per_frame_p50": r["ms_per_frame_p50"],
            }
        if len(dirs) > 1:  # all folders together, from their counts
            tp, fp, fn = (sum(v["noncompliant"][k] for v in per.values()) for k in ("tp", "fp", "fn"))
            faces, found = sum(v["faces"] for v in per.values()), sum(v["found"] for v in per.values())
            per = {
                "all": {
                    "scenes": sum(v["scenes"] for v in per.values()),
                    "faces": faces,
                    "found": found,
                    "face_recall": round(found / max(1, faces), 4),
                    "noncompliant": binary_f1(tp, fp, fn),
                    "ms_per_frame_p50": None,
                },
                **per,
            }
        out["ranges"][label] = per
    return out


def rows(doc: Dict[str, Any]) -> List[List[str]]:
    """One table row per source: the must-show-1 measures."""
    out = []
    for name, r in doc["by_source"].items():
        pc = r["per_class"]
        inc, wo = pc["mask_weared_incorrect"], pc["without_mask"]

        def num(v: Any) -> str:
            return "-" if v is None else "%.3f" % v

        out.append(
            [
                name,
                str(r["faces"]),
                num(r["macro_f1"]),
                "%s / %s" % (num(inc["precision"]), num(inc["recall"])) if inc["support"] else "-",
                num(r["with_mask_flagged"]),
                num(wo["recall"]) if wo["support"] else "-",
                alert_cell(r["alert"]),
            ]
        )
    return out


def alert_cell(a: Dict[str, Any]) -> str:
    """The alert's P / R / F1; a measure with nothing to count (no face flagged: precision; no non-compliant face:
    recall) is "-", not 0."""
    tp, fp, fn = a.get("tp"), a.get("fp"), a.get("fn")
    if tp is None:  # a report from before the counts were kept
        return "%.3f / %.3f / %.3f" % (a["precision"], a["recall"], a["f1"])
    p = "-" if tp + fp == 0 else "%.3f" % a["precision"]
    r = "-" if tp + fn == 0 else "%.3f" % a["recall"]
    f = "-" if tp + fp == 0 or tp + fn == 0 else "%.3f" % a["f1"]
    return "%s / %s / %s" % (p, r, f)


HEADER = ["source", "faces", "macro-F1", "incorrect P / R", "with_mask flagged", "without recall", "alert P / R / F1"]


def markdown(doc: Dict[str, Any]) -> str:
    lines = [
        "# %s on %s" % (doc["model_id"], doc["data"]),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows(doc)]
    iv = doc.get("real_macro_f1_interval")
    if iv:
        lines += [
            "",
            "Real macro-F1 %.3f [%.3f, %.3f] (95 %% over resamples of the photos)."
            % (iv["macro_f1"], iv["lo"], iv["hi"]),
        ]
    sc = doc.get("scenes")
    if sc and sc["ranges"]:
        lines += ["", "Scenes through the detector and the classifier:", ""]
        for label, st in sc["settings"].items():
            lines.append(
                "- %s: %s's setting, res10 %s pass at %s%s, boxes >= %d px, rejector at %s"
                % (
                    label,
                    st["from"],
                    st["mode"],
                    st["confidence"],
                    (" with tiles %s" % st["tile_sizes"] if st["tile_sizes"] else "")
                    + (" and a whole-frame pass" if st["whole_pass"] else "")
                    + (", weak boxes' scores decayed over stronger ones" if st.get("decay") else "")
                    + (
                        ", the native pass on the frame scaled %sx" % st["upscale"]
                        if st.get("upscale", 1.0) != 1.0
                        else ""
                    ),
                    st["det_min_face"],
                    st["no_face_threshold"],
                )
            )
        lines += [
            "",
            "| faces | folder | scenes | faces | face recall | non-compliant P / R / F1 (tp / fp / fn) | ms a frame, p50 |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, per in sc["ranges"].items():
            for name, r in per.items():
                n = r["noncompliant"]
                lines.append(
                    "| %s | %s | %d | %d | %.3f | %.3f / %.3f / %.3f (%d / %d / %d) | %s |"
                    % (
                        label,
                        name,
                        r["scenes"],
                        r["faces"],
                        r["face_recall"],
                        n["precision"],
                        n["recall"],
                        n["f1"],
                        n["tp"],
                        n["fp"],
                        n["fn"],
                        "-" if r["ms_per_frame_p50"] is None else "%.1f" % r["ms_per_frame_p50"],
                    )
                )
    return "\n".join(lines) + "\n"
