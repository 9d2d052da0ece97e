"""`edge-export evaluate`: the numbers a control room can trust, and pictures of them.

Crop level: per-class precision/recall/F1, macro-F1, confusion matrix, training
curves, a contact sheet of mistakes. Scene level (VOC scenes of the held-out
split, the real res10 detector): face recall at IoU >= 0.4, and F1 of the
"non-compliant" verdict per annotated face with missed faces counted as misses,
next to its ceiling (the same F1 if every found face were classified right).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.config import TILED_MODES
from edge.errors import EX_USAGE, MaskwatchError

from . import metrics
from .datasets import LABELS, iter_scenes, normalise_label

log = logging.getLogger(__name__)
NON_COMPLIANT = {1, 2}


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    short = [l.replace("mask_weared_incorrect", "incorrect").replace("_", " ") for l in labels]
    ax.set_xticks(range(len(labels)))
    ax.set_yticks(range(len(labels)))
    ax.set_xticklabels(short)
    ax.set_yticklabels(short)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                "%d\n%.0f%%" % (cm[i, j], 100 * norm[i, j]),
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(str(path), dpi=120)
    plt.close(fig)


def plot_curves(history: Dict[str, List[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        if key in history:
            ax.plot(history[key], label="train")
        if "val_" + key in history:
            ax.plot(history["val_" + key], label="val")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def contact_sheet(images: np.ndarray, captions: Sequence[str], path: Path, cols: int = 8, cell: int = 96) -> None:
    """A grid of crops with 'true -> predicted' under each, for a person to look at."""
    import cv2

    n = len(images)
    if n == 0:
        sheet = np.full((40, 300, 3), 255, np.uint8)
        cv2.putText(sheet, "no mistakes", (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)
        cv2.imwrite(str(path), sheet)
        return
    rows = (n + cols - 1) // cols
    sheet = np.full((rows * (cell + 28), cols * cell, 3), 255, np.uint8)
    for i, (img, cap) in enumerate(zip(images, captions)):
        r, c = divmod(i, cols)
        tile = cv2.cvtColor(cv2.resize(img, (cell, cell)), cv2.COLOR_RGB2BGR)
        y, x = r * (cell + 28), c * cell
        sheet[y : y + cell, x : x + cell] = tile
        for k, line in enumerate(cap.split("\n")[:2]):
            cv2.putText(
                sheet,
                line[:18],
                (x + 2, y + cell + 11 + 12 * k),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.33,
                (0, 0, 160),
                1,
                cv2.LINE_AA,
            )
    cv2.imwrite(str(path), sheet)


LUMA = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale's weights, as train --grey uses


def grey_crops(images: np.ndarray) -> np.ndarray:
    """RGB uint8 crops (..., H, W, 3) as a monochrome camera (or a colour one in IR night mode) gives them:
    the luma in all three channels. Evaluation only: the device classifies what its camera sends."""
    y = np.tensordot(images.astype(np.float32), np.array(LUMA, np.float32), axes=([-1], [0]))
    return np.repeat(np.clip(np.rint(y), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def predict_crops(
    run: Path, images: np.ndarray, bundle: Optional[str] = None, variant: str = "tflite_int8"
) -> Tuple[np.ndarray, str]:
    """Probabilities from a bundle variant (the device path) or the run's Keras model."""
    if bundle:
        from edge.bundle import load_bundle
        from edge.classifier import MaskClassifier
        from edge.crop import resize_crops_rgb

        b = load_bundle(Path(bundle))
        clf = MaskClassifier(b, variant, fallback=False)
        return clf.probs(resize_crops_rgb(images, b.input_size)), "%s:%s" % (b.model_id, variant)
    import keras

    from .train import predict

    model = keras.models.load_model(str(run / "model.keras"))
    return predict(model, images, int(model.input_shape[1])), "keras:%s" % run.name


def face_boxes(classifier, boxes: Sequence[Tuple[int, int, int, int]]) -> List[Tuple[int, int, int, int]]:
    """Detector boxes in the annotation convention (the bundle's box fit), as the classifier crops them:
    matched against annotated faces in the same convention (res10's raw box overlaps a tightly annotated
    face by IoU 0.3-0.4 when it is the same face)."""
    from edge.crop import fit_box

    return [fit_box(b, classifier.bundle.box_fit) for b in boxes]


INSIDE_SHARE = 0.8  # a detection this much inside an annotated box...
INSIDE_COVER = 0.25  # ...and covering at least this share of it is that face (a face box in a head box)
ENCLOSE_SHARE = 0.9  # an annotated face this much inside a detection is enclosed by it...
ENCLOSE_COVER = 0.25  # ...and, covering this share of it, is found by it under the variant rule `enclose`


def matching_rule(iou_thr: float, inside: bool, enclose: bool = False) -> str:
    """How detections were matched to annotations, in words (recorded beside every scene result)."""
    rule = "IoU >= %g" % iou_thr
    if inside:
        rule += ", or lying inside an annotated head box (%.0f %% inside it, covering >= %.0f %% of it)" % (
            100 * INSIDE_SHARE,
            100 * INSIDE_COVER,
        )
    if enclose:
        rule += ", or enclosing an annotated face (%.0f %% of the face inside it, the face >= %.0f %% of it)" % (
            100 * ENCLOSE_SHARE,
            100 * ENCLOSE_COVER,
        )
    return rule


def inside_match(g: Tuple[int, int, int, int], d: Tuple[int, int, int, int]) -> bool:
    """res10's face box lying inside an annotated *head* box: ilc2021 often boxes the whole head (hair, ears,
    chin) at close range, and res10's box of that same face then overlaps it at IoU 0.3-0.4, below the match,
    so one found face counted as a miss and a false alarm."""
    ix = max(0, min(g[2], d[2]) - max(g[0], d[0]))
    iy = max(0, min(g[3], d[3]) - max(g[1], d[1]))
    ad = max(1, (d[2] - d[0]) * (d[3] - d[1]))
    ag = max(1, (g[2] - g[0]) * (g[3] - g[1]))
    return ix * iy >= INSIDE_SHARE * ad and ad >= INSIDE_COVER * ag


def match(
    gt: List[Tuple[int, int, int, int]],
    det: List[Tuple[int, int, int, int]],
    thr: float,
    inside: bool = False,
    enclose: bool = False,
) -> Dict[int, int]:
    """Greedy matching, gt index -> det index, by IoU >= thr; with `inside`, also a detection inside an annotated
    head box (`inside_match`); with `enclose`, also a loose detection around an annotated face (`enclose_match`).
    Pairs are taken in order of IoU, one detection per face: a second box of the same face stays a false alarm."""
    from edge.types import greedy_assign, iou

    return greedy_assign(
        [
            (iou(g, d), gi, di)
            for gi, g in enumerate(gt)
            for di, d in enumerate(det)
            if matches(g, d, thr, inside, enclose)
        ]
    )


def enclose_match(g: Tuple[int, int, int, int], d: Tuple[int, int, int, int]) -> bool:
    """A loose detection around an annotated face: res10 gives some masked faces, at low score, a box of the face
    and its surroundings (IoU below the match), on the right person; the variant rule `enclose` counts it."""
    from edge.types import share_inside

    ag = max(1, (g[2] - g[0]) * (g[3] - g[1]))
    ad = max(1, (d[2] - d[0]) * (d[3] - d[1]))
    return share_inside(g, d) >= ENCLOSE_SHARE and ag >= ENCLOSE_COVER * ad


def matches(
    g: Tuple[int, int, int, int],
    d: Tuple[int, int, int, int],
    thr: float = 0.4,
    inside: bool = True,
    enclose: bool = False,
) -> bool:
    """Detection `d` may match annotated face `g` (`match`'s pair rule; 0.4 and head boxes as in scene_eval)."""
    from edge.types import iou

    o = iou(g, d)
    return o >= thr or (inside and o > 0 and inside_match(g, d)) or (enclose and o > 0 and enclose_match(g, d))


FALSE_ALARM_KINDS = (
    "with_mask face flagged",  # matched to an annotated compliant face: the classifier's error
    "second box of a found face",  # an annotated face another detection matched already
    "loose box, face missed",  # encloses an annotated face that no detection matched (res10's face-plus-surroundings box)
    "part of a face, face missed",  # mostly inside an annotated face no detection matched, too small for the head-box rule
    "no annotation under it",  # overlaps no annotated face: an unannotated (background) face, or not a face
    "other overlap",
)


def false_alarm_kind(
    det: Tuple[int, int, int, int], gt: Sequence[Tuple[int, int, int, int]], matched: Sequence[int]
) -> str:
    """Why an unmatched detection that was flagged counts as a false alarm (`FALSE_ALARM_KINDS[1:]`): what
    annotated face, if any, lies under it. `matched` are the annotated faces some other detection matched.
    A measurement aid (the kiosk sweep's `false_alarm_kinds`); it changes no count."""
    from edge.types import iou, share_inside

    under = [gi for gi, g in enumerate(gt) if iou(g, det) > 0]
    if not under:
        return "no annotation under it"
    gi = max(under, key=lambda i: iou(gt[i], det))
    if gi in matched:
        return "second box of a found face"
    if share_inside(gt[gi], det) >= ENCLOSE_SHARE:
        return "loose box, face missed"
    if share_inside(det, gt[gi]) >= INSIDE_SHARE:
        return "part of a face, face missed"
    return "other overlap"


DETECTOR_SETTINGS = {
    # name -> DetectorOptions fields; "single" is the kiosk default, the others are for wide views
    "single": {"mode": "single"},
    "native": {"mode": "native"},
    "native-x2": {"mode": "native", "upscale": 2.0},
    "tiles": {"mode": "tiles", "tile_size": 300},
    "tiles-200": {"mode": "tiles", "tile_size": 200},
    "tiles-150": {"mode": "tiles", "tile_size": 150},
    "tiles-150-no-size-band": {"mode": "tiles", "tile_size": 150, "tile_max_face": 1.0},
    "tiles-100": {"mode": "tiles", "tile_size": 100},
    "tiles-200+100": {"mode": "tiles", "tile_sizes": (200, 100)},
}
# Kiosk range: faces >= 40 px, one pass; the confidence is the lever the no_face rejector makes usable.
KIOSK_SETTINGS = {
    "kiosk-single-c%02d" % int(c * 100): {"mode": "single", "confidence": c, "min_face_px": 40}
    for c in (0.1, 0.2, 0.3, 0.4, 0.5)
}
KIOSK_SETTINGS.update(
    {
        "kiosk-native-c%02d" % int(c * 100): {"mode": "native", "confidence": c, "min_face_px": 40}
        for c in (0.1, 0.2, 0.3, 0.5)
    }
)


def scene_eval(
    scene_dir: Path,
    scene_ids: Sequence[str],
    classifier,
    modes: Sequence[str],
    iou_thr: float = 0.4,
    detector_dir: Optional[Path] = None,
    min_face: int = 0,
    settings: Optional[Dict[str, Dict[str, Any]]] = None,
    reject: bool = True,
    inside: bool = True,
) -> Dict[str, Any]:
    """Per annotated face: found (IoU >= iou_thr) and its verdict; non-compliant F1 with missed faces as misses.

    `min_face` > 0 evaluates at kiosk range: annotated faces narrower than that are left out, and so are
    detections matching them (neither hit nor false alarm). With `reject`, detections the classifier calls
    no_face are dropped before matching, as the daemon drops them."""
    from edge.bundle import NO_FACE
    from edge.detector import DetectorOptions, load_detector

    out: Dict[str, Any] = {
        "scenes": len(scene_ids),
        "iou": iou_thr,
        "matching": matching_rule(iou_thr, inside),
        "min_face": min_face,
        "modes": {},
    }
    table = dict(DETECTOR_SETTINGS, **KIOSK_SETTINGS, **(settings or {}))
    scenes = []
    for _name, sid, img, objs in iter_scenes([scene_dir], {Path(scene_dir).name: list(scene_ids)}):
        gt = [(b, LABELS.index(normalise_label(n))) for n, b in objs if normalise_label(n)]
        scenes.append((sid, img, gt))

    def big(b):
        return min(b[2] - b[0], b[3] - b[1]) >= min_face

    out["faces"] = sum(1 for s in scenes for g in s[2] if big(g[0]))
    for mode in modes:
        opts = dict({"confidence": 0.5}, **table.get(mode, {"mode": mode}))
        det = load_detector(detector_dir, DetectorOptions(**opts))
        tp = fp = fn = 0
        ctp = cfn = 0
        found = 0
        ms = []
        cls_right = cls_total = 0
        rejected = 0
        for _sid, img, gt in scenes:
            t = time.perf_counter()
            faces = det.detect(img)
            if faces:
                faces = classifier.classify(img, faces)
            ms.append((time.perf_counter() - t) * 1000.0)
            if reject:
                kept = [f for f in faces if f.label != NO_FACE]
                rejected += len(faces) - len(kept)
                faces = kept
            m = match([g[0] for g in gt], face_boxes(classifier, [f.box for f in faces]), iou_thr, inside)
            ignored = {m[gi] for gi, g in enumerate(gt) if gi in m and not big(g[0])}
            for gi, (box, y) in enumerate(gt):
                if not big(box):
                    continue
                found += int(gi in m)
                bad = y in NON_COMPLIANT
                if gi in m:
                    pred = LABELS.index(faces[m[gi]].label)
                    cls_total += 1
                    cls_right += int(pred == y)
                    pbad = pred in NON_COMPLIANT
                    tp += int(bad and pbad)
                    fn += int(bad and not pbad)
                    fp += int(pbad and not bad)
                    ctp += int(bad)  # ceiling: the found face classified right
                else:
                    fn += int(bad)
                    cfn += int(bad)
            matched = set(m.values())
            fp += sum(
                1
                for di, f in enumerate(faces)
                if di not in matched and di not in ignored and LABELS.index(f.label) in NON_COMPLIANT
            )
        f1 = metrics.binary_f1(tp, fp, fn)
        ceiling = metrics.binary_f1(ctp, 0, cfn)
        out["modes"][mode] = {
            "detector": opts,
            "face_recall": round(found / max(1, out["faces"]), 4),
            "faces_found": found,
            "noncompliant": f1,
            "noncompliant_ceiling": ceiling,
            "fraction_of_ceiling": round(f1["f1"] / ceiling["f1"], 4) if ceiling["f1"] else None,
            "classifier_accuracy_on_found": round(cls_right / max(1, cls_total), 4),
            "rejected_no_face": rejected,
            "ms_per_frame_p50": round(float(np.median(ms)), 1),
            "ms_per_frame_mean": round(float(np.mean(ms)), 1),
        }
        log.info("scene eval %s: %s", mode, json.dumps(out["modes"][mode]))
    return out


def scene_ids_of(crops: Dict[str, np.ndarray], idx: np.ndarray, scene_dir: Path) -> List[str]:
    """Scene ids (VOC stems) of `scene_dir`'s source among the crops at `idx` (a split's crops). A folder
    that is not a VOC scene set, or whose source the crops of this split do not hold, is refused in one line
    naming it (box-fit said "no annotated face was found by the detector in 0 scenes", exit 1)."""
    from edge.errors import EX_NOINPUT

    name = Path(scene_dir).name
    if not (Path(scene_dir) / "annotations").is_dir():
        raise MaskwatchError(
            "--scenes %s: not a VOC scene folder (no annotations/ in it): pass a folder such as "
            "../shared/data/andrewmvd-train" % scene_dir,
            EX_NOINPUT,
        )
    groups = set(str(g) for g in crops["groups"][idx])
    ids = sorted(g.split(":", 1)[1] for g in groups if g.startswith(name + ":"))
    if not ids:
        raise MaskwatchError(
            "--scenes %s: the crops hold no scene of %s on this side of the split: pass crops cut from it "
            "(edge-export prepare --data ... %s)" % (scene_dir, name, scene_dir),
            EX_NOINPUT,
        )
    return ids


def crop_level(
    probs: np.ndarray,
    labels: np.ndarray,
    sources: np.ndarray,
    output_labels: Sequence[str],
    op: Optional[Dict[str, Any]],
) -> Dict[str, Any]:
    """Per-source face reports under the bundle's operating point (argmax where it has none)."""
    from . import operating
    from .datasets import REAL_SOURCES

    pred = operating.predict_labels(probs, output_labels, op or {}) if op is not None else probs.argmax(1)
    out = metrics.report(labels, pred, output_labels)
    out["by_source"] = operating.by_source(pred, labels, sources, output_labels, REAL_SOURCES)
    out["_pred"] = pred
    return out


def main(
    *,
    run: Path,
    crops_path: Path,
    split: str = "test",
    bundle: Optional[str] = None,
    variant: str = "tflite_int8",
    out: Optional[Path] = None,
    scenes: Sequence[str] = (),
    kiosk_min_face: int = 40,
    kiosk_settings: Optional[Sequence[str]] = None,
    detector_settings: Optional[Sequence[str]] = None,
) -> int:
    """Crop-level metrics per source on one split; with scenes, the detector + classifier on whole photos."""
    from .crops import load, split_arrays

    crops = load(crops_path)
    images, labels, idx = split_arrays(run, crops, split)
    probs, what = predict_crops(run, images, bundle, variant)
    op = None
    if bundle:
        from edge.bundle import load_bundle

        op = load_bundle(Path(bundle)).manifest.get("operating_point")
    rep = crop_level(probs, labels, crops["sources"][idx], LABELS, op)
    pred = rep.pop("_pred")
    out = out or run / "report"
    out.mkdir(parents=True, exist_ok=True)
    rep["model"] = what
    rep["operating_point"] = {k: v for k, v in (op or {}).items() if k != "validation"} or "argmax"
    rep["split"] = "%s (held out, near-duplicates grouped)" % split
    plot_confusion(
        np.array(rep["confusion"]),
        LABELS,
        out / "confusion.png",
        "%s - %s crops, macro-F1 %.3f" % (what, split, rep["macro_f1"]),
    )
    tj = run / "train.json"
    if tj.exists():
        plot_curves(json.loads(tj.read_text())["history"], out / "curves.png")
    wrong = np.nonzero(pred != labels)[0]
    wrong = wrong[np.argsort(-probs[wrong].max(1))][:64]  # most confident mistakes first
    short = {"with_mask": "mask", "without_mask": "none", "mask_weared_incorrect": "incorrect", "no_face": "noface"}
    contact_sheet(
        images[wrong],
        [
            "%s>%s %.2f\n%s"
            % (short[LABELS[labels[i]]], short[LABELS[pred[i]]], probs[i].max(), Path(str(crops["files"][idx[i]])).name)
            for i in wrong
        ],
        out / "mistakes.png",
    )
    scene_dirs = list(scenes)
    if scene_dirs:
        from edge.bundle import load_bundle
        from edge.classifier import MaskClassifier

        if not bundle:
            raise MaskwatchError("scene evaluation needs --bundle (it runs the device's classifier)", EX_USAGE)
        sidx = idx
        clf = MaskClassifier(load_bundle(Path(bundle)), variant, fallback=False)
        rep["scene_split"] = split
        rep["scene_level"] = {}
        for sd in scene_dirs:
            sids = scene_ids_of(crops, sidx, Path(sd))
            entry = {"all_faces": scene_eval(Path(sd), sids, clf, detector_settings or list(DETECTOR_SETTINGS))}
            if kiosk_min_face:
                entry["kiosk_range"] = scene_eval(
                    Path(sd), sids, clf, kiosk_settings or list(KIOSK_SETTINGS), min_face=kiosk_min_face
                )
            rep["scene_level"][Path(sd).name] = entry
    (out / "metrics.json").write_text(json.dumps(rep, indent=1))
    summary: Dict[str, Any] = {
        "macro_f1": rep["macro_f1"],
        "report": str(out),
        "real_test": {
            k: {m: v[m] for m in ("macro_f1", "with_mask_flagged", "alert")} for k, v in rep["by_source"].items()
        },
    }
    for name, entry in rep.get("scene_level", {}).items():
        for part, res in entry.items():
            summary.setdefault("scene_level", {})["%s/%s" % (name, part)] = {
                m: {k: v[k] for k in ("face_recall", "noncompliant", "ms_per_frame_p50")}
                for m, v in res["modes"].items()
            }
    print(json.dumps(summary, indent=1))
    return 0


def is_face(det_score: float, no_face: float, no_face_threshold: Optional[float], face_score: Optional[float]) -> bool:
    """Whether a kept detection counts as a face in the kiosk sweep: P(no_face) under `no_face_threshold` (None:
    no cut) and, when `face_score` is set, the joint score det_score * (1 - P(no_face)) at least that."""
    if no_face_threshold is not None and no_face >= no_face_threshold:
        return False
    return face_score is None or det_score * (1.0 - no_face) >= face_score


# the kiosk sweep's grid (benchmarks/kiosk_setting.py): res10 confidence x no_face threshold (None: no rejector)
KIOSK_CONFIDENCES = (0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
KIOSK_NO_FACE_THRESHOLDS = (None, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def sweep_detector_options(
    confidence: float,
    *,
    mode: str = "single",
    flip: bool = False,
    min_face_px: int = 40,
    backend: str = "opencv",
    precision: str = "fp32",
    containment: Optional[float] = None,
    own_share: Optional[float] = None,
    tile_sizes: Sequence[int] = (),
    whole_pass: bool = False,
    decay: bool = False,
    upscale: float = 1.0,
):
    """The detector options of a kiosk sweep (and of the timing of its setting): the config's defaults for what is
    not given, no fallback to another runtime (a measurement names the one it measured)."""
    from edge.detector import DetectorOptions

    return DetectorOptions(
        confidence=confidence,
        mode=mode,
        flip=flip,
        whole_pass=whole_pass,
        nms_decay=decay,
        upscale=upscale,
        min_face_px=min_face_px,
        backend=backend,
        precision=precision,
        fallback=False,
        **({} if containment is None else {"nms_containment": containment}),
        **({} if own_share is None else {"nms_own_share": own_share}),
        **({"tile_sizes": tuple(tile_sizes)} if tile_sizes else {}),
    )


def setting_ms(scene_dirs: Sequence[Path], scene_ids: Dict[str, List[str]], classifier, options, detector_dir=None):
    """The time per frame of one detector setting as the daemon spends it: res10 at that setting's confidence and
    box rules, then the classifier on every box it keeps (MaskClassifier.classify: views, rejector, verdicts).
    The sweep's own ms per frame is of its lowest confidence with every box classified, not of a setting."""
    from edge.detector import load_detector

    det = load_detector(detector_dir, options)
    ms = []
    for _name, _sid, img, _objs in iter_scenes(scene_dirs, scene_ids):
        t = time.perf_counter()
        classifier.classify(img, det.detect(img))
        ms.append((time.perf_counter() - t) * 1000.0)
    return {
        "confidence": options.confidence,
        "frames": len(ms),
        "ms_per_frame_p50": round(float(np.median(ms)), 1) if ms else None,
        "ms_per_frame_p90": round(float(np.percentile(ms, 90)), 1) if ms else None,
        "backend": det.backend_in_use,
    }


def kiosk_sweep(
    scene_dirs: Sequence[Path],
    scene_ids: Dict[str, List[str]],
    classifier,
    confidences: Sequence[float] = KIOSK_CONFIDENCES,
    no_face_thresholds: Sequence[Optional[float]] = KIOSK_NO_FACE_THRESHOLDS,
    min_face: int = 40,
    iou_thr: float = 0.4,
    detector_dir: Optional[Path] = None,
    mode: str = "single",
    backend: str = "opencv",
    precision: str = "fp32",
    flip: bool = False,
    det_min_face: Optional[int] = None,
    containment: Optional[float] = None,
    inside: bool = True,
    enclose: bool = False,
    own_share: Optional[float] = None,
    face_scores: Optional[Sequence[float]] = None,
    tile_sizes: Sequence[int] = (),
    whole_pass: bool = False,
    decay: bool = False,
    upscale: float = 1.0,
) -> Dict[str, Any]:
    """The kiosk setting, measured: res10 confidence x the no_face rejector's threshold at kiosk range.

    With `face_scores`, the second axis is the joint face score instead: a detection is kept when its score
    s >= the confidence floor and s * (1 - P(no_face)) >= k (`is_face`), one k per entry. (Measured in
    session 23 and not shipped: benchmarks/results/choices-val/README.md.)

    One detector pass per scene at the lowest confidence (higher ones are subsets of it), each detection
    classified once; every (confidence, rejector) pair is then scored on the same detections. None = no
    rejection. Non-compliant F1 per annotated face >= min_face, as in scene_eval (min_face 0: every face, must-show
    3's all-faces part; with mode "tiles" and `tile_sizes` such as (200, 100), the wide-view pyramid)."""
    from edge.bundle import NO_FACE
    from edge.detector import load_detector
    from edge.verdict import calibrate, face_labels

    op = classifier.bundle.operating_point
    det = load_detector(
        detector_dir,
        sweep_detector_options(
            min(confidences),
            mode=mode,
            flip=flip,
            min_face_px=min_face if det_min_face is None else det_min_face,
            backend=backend,
            precision=precision,
            containment=containment,
            own_share=own_share,
            tile_sizes=tile_sizes,
            whole_pass=whole_pass,
            decay=decay,
            upscale=upscale,
        ),
    )
    cached = []
    names = []
    ms = []
    for name, sid, img, objs in iter_scenes(scene_dirs, scene_ids):
        gt = [(b, LABELS.index(normalise_label(n))) for n, b in objs if normalise_label(n)]
        t = time.perf_counter()
        faces = det.detect(img)
        boxes = face_boxes(classifier, [f.box for f in faces])  # the fit once: crops and matching
        probs = classifier.probs(classifier.preprocess_views(img, boxes)) if faces else np.zeros((0, 4))
        ms.append((time.perf_counter() - t) * 1000.0)
        labs = classifier.output_labels
        cal = calibrate(probs, op.temperature) if len(probs) else probs
        nf = cal[:, labs.index(NO_FACE)] if NO_FACE in labs and len(cal) else np.zeros(len(faces))
        verdicts = [LABELS.index(v) for v in face_labels(probs, labs, op)]
        cached.append((gt, [(b, f.det_score) for b, f in zip(boxes, faces)], nf, verdicts))
        names.append("%s:%s" % (name, sid))
    grid = []
    # the second axis: (no_face threshold, joint face score) pairs, one of the two set
    second = [(r, None) for r in no_face_thresholds] if face_scores is None else [(None, k) for k in face_scores]
    for c in confidences:
        for nf_thr, k_thr in second:
            tp = fp = fn = found = total = 0
            per_scene = []
            kinds = {k: 0 for k in FALSE_ALARM_KINDS}
            for gt, dets, nf, verdicts in cached:
                before = (tp, fp, fn)
                keep = [i for i, (_, s) in enumerate(dets) if s >= c and is_face(s, nf[i], nf_thr, k_thr)]
                boxes = [dets[i][0] for i in keep]
                gt_boxes = [g[0] for g in gt]
                m = match(gt_boxes, boxes, iou_thr, inside, enclose)
                big = [min(b[2] - b[0], b[3] - b[1]) >= min_face for b, _ in gt]
                ignored = {m[gi] for gi in m if not big[gi]}
                for gi, (_box, y) in enumerate(gt):
                    if not big[gi]:
                        continue
                    total += 1
                    bad = y in NON_COMPLIANT
                    if gi in m:
                        found += 1
                        pbad = verdicts[keep[m[gi]]] in NON_COMPLIANT
                        tp += int(bad and pbad)
                        fn += int(bad and not pbad)
                        fp += int(pbad and not bad)
                        kinds["with_mask face flagged"] += int(pbad and not bad)
                    else:
                        fn += int(bad)
                matched = set(m.values())
                for di, i in enumerate(keep):
                    if di not in matched and di not in ignored and verdicts[i] in NON_COMPLIANT:
                        fp += 1
                        kinds[false_alarm_kind(boxes[di], gt_boxes, list(m))] += 1
                per_scene.append([tp - before[0], fp - before[1], fn - before[2]])
            grid.append(
                {
                    "confidence": c,
                    "no_face_threshold": nf_thr,
                    "face_score": k_thr,
                    "face_recall": round(found / max(1, total), 4),
                    "faces": total,
                    "noncompliant": metrics.binary_f1(tp, fp, fn),
                    "per_scene": per_scene,  # (tp, fp, fn) of each scene in `scene_ids`, for paired comparisons
                    "false_alarm_kinds": kinds,  # the fp count split by what lies under each (false_alarm_kind)
                }
            )
    return {
        "min_face": min_face,
        "detector_min_face_px": min_face if det_min_face is None else det_min_face,
        "flip": flip,
        **({"whole_pass": True, "whole_pass_min_px": det.opt.whole_pass_min_px} if whole_pass else {}),
        "nms_containment": det.opt.nms_containment,
        "nms_own_share": det.opt.nms_own_share,
        **({"nms_decay": True} if decay else {}),
        **({"upscale": upscale} if upscale != 1.0 else {}),
        "matching": matching_rule(iou_thr, inside, enclose),
        "mode": mode,
        **({"tile_sizes": list(det.opt.tile_sizes)} if mode in TILED_MODES and det.opt.tile_sizes else {}),
        **({"auto_tiles_below_px": det.opt.auto_tiles_below_px} if mode == "auto" else {}),
        "backend": det.backend_in_use,
        "scenes": len(cached),
        "scene_ids": names,
        "ms_per_frame_p50": round(float(np.median(ms)), 1),
        "grid": grid,
    }
