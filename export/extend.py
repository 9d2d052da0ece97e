"""Grow a crops cache without moving a single face across the split: recut detector crops by a box fit,
and mine more no_face crops with the kiosk's own detector pass.

A run's split is indices into its crops file, so re-running `prepare` (other negatives, other counts)
would reshuffle every index. `edge-export extend` keeps the first N crops where they are (recut in place
where asked) and appends the new ones; each new crop takes the split side of the scene it came from, so
a val or test scene stays wholly held out. The result is a crops file plus a run directory holding the
extended split, for `train --init OLD --split-from NEW`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import EX_NOINPUT, MaskwatchError

from .crops import DETECTOR_CUT, save_npz, save_split, side_counts
from .datasets import LABELS, NEG_MAX_SCORE, NO_FACE, crop_face, negative_boxes, read_scene, touches_face
from .evaluate import matches

log = logging.getLogger(__name__)

BoxT = Tuple[int, int, int, int]


def recut(
    crops: Dict[str, np.ndarray], fit: Tuple[float, float, float, float], size: int, margin: float, progress=None
) -> int:
    """Cut every detector-found crop ("detector", "negative") again from its photo, through the fit. In place."""
    from edge.datasets_io import read_image

    idx = [i for i, h in enumerate(crops["how"]) if str(h) in DETECTOR_CUT]
    by_file: Dict[str, List[int]] = {}
    for i in idx:
        by_file.setdefault(str(crops["files"][i]), []).append(i)
    done = 0
    for f in (progress or (lambda x: x))(sorted(by_file)):
        img = read_image(Path(f))
        if img is None:
            raise ValueError("%s: listed in the crops file but no longer readable" % f)
        for i in by_file[f]:
            crops["images"][i] = crop_face(img, tuple(int(v) for v in crops["boxes"][i]), margin, size, fit)
            done += 1
    return done


SATELLITE_SEEN = 0.5  # a satellite sees less than this share of the face it sits beside (looked at: above it,
# res10's weak boxes are mostly loose but whole faces, which a no_face label would teach to reject)


def satellite_boxes(
    faces,
    gt_boxes: Sequence[BoxT],
    fit: Optional[Tuple[float, float, float, float]],
    per_scene: int,
    avoid: Sequence[BoxT] = (),
    min_px: int = 12,
) -> List[BoxT]:
    """res10's satellites: a weaker box beside an annotated face that a stronger box of the same pass already
    matches. It touches the face (`touches_face`), so `false_detections` leaves it out of the no_face crops, and
    sees less than SATELLITE_SEEN of it, yet matches no face (`evaluate.matches` after the box fit), so at the
    kiosk it is a second, spurious verdict for one person. None repeats a box in `avoid` (IoU >= 0.5)."""
    from edge.crop import fit_box
    from edge.types import iou

    dets: List[Tuple[BoxT, float]] = [
        ((int(f.box[0]), int(f.box[1]), int(f.box[2]), int(f.box[3])), float(f.det_score)) for f in faces
    ]
    fitted = [fit_box(b, fit) for b, _ in dets]
    out: List[BoxT] = []
    for k, (b, s) in enumerate(dets):
        if len(out) >= per_scene:
            break
        if min(b[2] - b[0], b[3] - b[1]) < min_px or any(matches(g, fitted[k]) for g in gt_boxes):
            continue
        for g in (g for g in gt_boxes if touches_face(b, g)):
            ix = max(0, min(b[2], g[2]) - max(b[0], g[0]))
            iy = max(0, min(b[3], g[3]) - max(b[1], g[1]))
            if ix * iy >= SATELLITE_SEEN * max(1, (g[2] - g[0]) * (g[3] - g[1])):
                break  # a loose box around most of the face: still a face crop, not a no_face example
            if any(j != k and s2 > s and matches(g, fitted[j]) for j, (_, s2) in enumerate(dets)):
                if all(iou(b, o) < 0.5 for o in list(avoid) + out):
                    out.append(b)
                break
    return out


def mine_negatives(
    crops: Dict[str, np.ndarray],
    detector,
    scene_dirs: Sequence[Path],
    *,
    size: int,
    margin: float,
    fit: Optional[Tuple[float, float, float, float]],
    per_scene: int = 4,
    satellites: int = 0,
    progress: Callable[[Iterable], Iterable] = lambda x: x,
) -> Dict[str, List]:
    """no_face crops from `detector`'s false detections in the VOC scenes the crops file already has,
    skipping boxes that repeat a negative already there (IoU >= 0.5); with `satellites` > 0, also up to that
    many satellite boxes per scene (`satellite_boxes`, stored as how "satellite")."""
    groups = [str(g) for g in crops["groups"]]
    existing: Dict[str, List[BoxT]] = {}
    for i, g in enumerate(groups):
        if str(crops["how"][i]) in ("negative", "satellite"):
            existing.setdefault(g, []).append(tuple(int(v) for v in crops["boxes"][i]))
    new: Dict[str, List] = {k: [] for k in ("images", "labels", "groups", "sources", "files", "boxes", "how")}
    for sd in scene_dirs:
        name = Path(sd).name
        sids = sorted({g.split(":", 1)[1] for g in groups if g.startswith(name + ":")})
        for sid in progress(sids):
            img_path, img, objs = read_scene(Path(sd), sid)
            if img is None:
                continue
            gt = [b for _, b in objs]  # as prepare: any annotated box is not a "no face"
            old = existing.get("%s:%s" % (name, sid), [])
            faces = detector.detect(img)
            found = [(b, "negative") for b in negative_boxes(faces, gt, NEG_MAX_SCORE.get(name, 1.01), per_scene, old)]
            if satellites > 0:
                found += [(b, "satellite") for b in satellite_boxes(faces, gt, fit, satellites, avoid=old)]
            for box, how in found:
                new["images"].append(crop_face(img, box, margin, size, fit))
                new["labels"].append(LABELS.index(NO_FACE))
                new["groups"].append("%s:%s" % (name, sid))
                new["sources"].append(name)
                new["files"].append(str(img_path))
                new["boxes"].append(box)
                new["how"].append(how)
    return new


def extend_split(
    old_keep: np.ndarray, old_assign: np.ndarray, old_groups: np.ndarray, n_old: int, new_groups: Sequence[str]
) -> Tuple[np.ndarray, np.ndarray]:
    """The old split plus each appended crop on the side of its scene (its group's crops all share one)."""
    side: Dict[str, int] = {}
    for k, s in zip(old_keep, old_assign):
        g = str(old_groups[k])
        if side.setdefault(g, int(s)) != int(s):
            raise ValueError("scene %s sits on two sides of the split; refusing to extend it" % g)
    add = [(n_old + j, side[g]) for j, g in enumerate(new_groups) if g in side]
    keep = np.concatenate([old_keep, np.array([a for a, _ in add], dtype=old_keep.dtype)])
    assign = np.concatenate([old_assign, np.array([s for _, s in add], dtype=old_assign.dtype)])
    return keep, assign


def extend(
    crops_path: Path,
    run: Path,
    out_crops: Path,
    out_run: Path,
    detector,
    scene_dirs: Sequence[Path],
    fit: Optional[Tuple[float, float, float, float]],
    per_scene: int = 4,
    satellites: int = 0,
    progress: Callable[[Iterable], Iterable] = lambda x: x,
) -> Dict[str, object]:
    from .crops import load

    if not (run / "split.npz").exists():  # before loading a crops file of hundreds of MB
        raise MaskwatchError("%s not found: train a model into %s first" % (run / "split.npz", run), EX_NOINPUT)
    prev = np.load(str(run / "split.npz"))
    crops = load(crops_path)
    n_old = len(crops["labels"])
    size = int(crops["images"].shape[1])
    margin = float(crops.get("margin", 0.15))
    report: Dict[str, object] = {"from": str(crops_path), "run": str(run), "crops_before": n_old}
    if fit is not None:
        report["recut"] = recut(crops, fit, size, margin, progress)
        crops["box_fit"] = np.array(fit)
    new = mine_negatives(
        crops,
        detector,
        scene_dirs,
        size=size,
        margin=margin,
        fit=fit,
        per_scene=per_scene,
        satellites=satellites,
        progress=progress,
    )
    keep, assign = extend_split(prev["keep"], prev["assign"], crops["groups"], n_old, new["groups"])
    if new["images"]:
        for k, v in new.items():
            arr = np.stack(v).astype(np.uint8) if k == "images" else np.array(v)
            crops[k] = np.concatenate([crops[k], arr])
    save_npz(out_crops, **crops)
    split_rep = json.loads((run / "split.json").read_text()) if (run / "split.json").exists() else {}
    added = {name: int(np.sum(assign[len(prev["keep"]) :] == s)) for s, name in enumerate(("train", "val", "test"))}
    labels = crops["labels"][keep]
    split_rep["counts"] = side_counts(assign, labels)
    split_rep["extended"] = dict(report, negatives_added=added)
    save_split(out_run, keep, assign, split_rep)
    report["negatives_added"] = added
    report["satellites_added"] = int(sum(h == "satellite" for h in new["how"]))
    report["crops_after"] = int(len(crops["labels"]))
    return report
