"""Walker clips: real faces crossing a noisy camera view, with ground truth, and a per-person scorer.

What a control room lives with is one verdict per visitor, not per-crop accuracy. A walker
clip pastes real face photos (cut with context from held-out images) onto a corridor
background, one or two people at a time, entering from either side, with sensor noise and
flicker on every frame, and writes beside the video a truth file: each person's class and
box in every frame. `score` matches the daemon's events to people by box and time and
reports people counted once, duplicates, misses, verdict accuracy per class and per-person
alert precision/recall/F1 (alert = without_mask or mask_weared_incorrect).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .types import Box, iou, share_inside

NON_COMPLIANT = ("without_mask", "mask_weared_incorrect")
CONTEXT = 0.45  # how much around the face box is cut from the source photo (hair, neck), per side


@dataclass(frozen=True)
class Walker:
    file: str
    box: Box  # face box in the source image
    label: str
    source: str = ""


def _corridor(width: int, height: int, rng: np.random.RandomState) -> np.ndarray:
    import cv2

    img = np.zeros((height, width, 3), np.uint8)
    wall = np.array([150, 160, 170]) + rng.randint(-30, 30, 3)
    img[:] = np.clip(wall, 0, 255)
    floor_y = int(height * 0.78)
    img[floor_y:] = np.clip(wall * 0.6, 0, 255)
    for x in range(0, width, 80):  # floor tiles, door frames: edges for the motion gate to ignore
        cv2.line(img, (x, floor_y), (x + 40, height), (90, 90, 95), 1)
    cv2.rectangle(img, (int(width * 0.38), int(height * 0.08)), (int(width * 0.62), floor_y), (110, 100, 90), 6)
    return img


def cut_region(box: Box, context: float = CONTEXT) -> Tuple[float, float, float, float]:
    """The part of the source photo a walker is cut from: the face box and `context` of its size per side."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    return (x1 - context * bw, y1 - context * bh, x2 + context * bw, y2 + context * bh)


def alone_in_cut(box: Box, faces: Iterable[Box], context: float = CONTEXT, most: float = 0.25) -> bool:
    """True when no other face of the same photo shows in the walker's cut (more than `most` of its area).

    A photo of two faces cheek to cheek would otherwise walk in as one visitor with two faces: the
    daemon rightly counts two people and the scorer calls one of them a duplicate."""
    cut = cut_region(box, context)
    own = tuple(int(v) for v in box)
    return not any(tuple(int(v) for v in f) != own and share_inside(f, cut) > most for f in faces)


def _person_patch(image_bgr: np.ndarray, box: Box, face_px: int) -> Tuple[np.ndarray, np.ndarray, Box]:
    """The face with context, scaled so the face box is `face_px` wide, and a feathered alpha.
    Returns (patch, alpha, face box inside the patch)."""
    import cv2

    h, w = image_bgr.shape[:2]
    x1, y1, x2, y2 = box
    bw = x2 - x1
    r = cut_region(box)
    cx1, cy1, cx2, cy2 = max(0, int(r[0])), max(0, int(r[1])), min(w, int(r[2])), min(h, int(r[3]))
    region = image_bgr[cy1:cy2, cx1:cx2]
    s = face_px / float(max(1, bw))
    pw, ph = max(2, int(round(region.shape[1] * s))), max(2, int(round(region.shape[0] * s)))
    patch = cv2.resize(region, (pw, ph), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    fb = (int((x1 - cx1) * s), int((y1 - cy1) * s), int((x2 - cx1) * s), int((y2 - cy1) * s))
    alpha = np.zeros((ph, pw), np.float32)
    cv2.ellipse(
        alpha,
        ((fb[0] + fb[2]) // 2, (fb[1] + fb[3]) // 2),
        (
            int((fb[2] - fb[0]) * 0.5 + CONTEXT * 0.8 * (fb[2] - fb[0])),
            int((fb[3] - fb[1]) * 0.5 + CONTEXT * 0.8 * (fb[3] - fb[1])),
        ),
        0,
        0,
        360,
        1.0,
        -1,
    )
    k = max(3, (min(pw, ph) // 8) | 1)
    return patch, cv2.GaussianBlur(alpha, (k, k), 0), fb


def _paste(frame: np.ndarray, patch: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    h, w = frame.shape[:2]
    ph, pw = patch.shape[:2]
    fx1, fy1, fx2, fy2 = max(0, x), max(0, y), min(w, x + pw), min(h, y + ph)
    if fx2 <= fx1 or fy2 <= fy1:
        return
    px1, py1 = fx1 - x, fy1 - y
    a = alpha[py1 : py1 + fy2 - fy1, px1 : px1 + fx2 - fx1, None]
    roi = frame[fy1:fy2, fx1:fx2].astype(np.float32)
    src = patch[py1 : py1 + fy2 - fy1, px1 : px1 + fx2 - fx1].astype(np.float32)
    frame[fy1:fy2, fx1:fx2] = (a * src + (1 - a) * roi).astype(np.uint8)


def truth_path(video: Path) -> Path:
    """Where make_clip writes a clip's truth: beside the clip."""
    return Path(str(video) + ".truth.json")


def events_path(video: Path, key: str) -> Path:
    """Where benchmarks/walkers.py writes the daemon's events of a clip ("gate" or "nogate" run): beside it."""
    return Path("%s.events-%s.jsonl" % (video, key))


def make_clip(
    walkers: Sequence[Walker],
    out: Path,
    *,
    width: int = 640,
    height: int = 480,
    fps: float = 15.0,
    seconds_per_crossing: float = 3.5,
    face_px: Tuple[int, int] = (70, 120),
    noise: float = 6.0,
    pair_every: int = 3,
    seed: int = 0,
) -> Dict[str, Any]:
    """Write `out` (.mp4, mp4v) and `out`.truth.json; return the truth.

    People cross one at a time, except every `pair_every`-th visit, when two cross together at
    different heights. The clip starts and ends with an empty corridor; between visits it stays
    empty for about a second (the gate and the tracker must let a visit end)."""
    import cv2

    from .datasets_io import read_image

    rng = np.random.RandomState(seed)
    bg = _corridor(width, height, rng)
    frames_per = int(round(seconds_per_crossing * fps))
    people: List[Dict[str, Any]] = []
    t = int(fps)  # one empty second first
    i = 0
    pid = 0
    while i < len(walkers):
        group = [walkers[i]]
        if pair_every and (pid // 1) % pair_every == pair_every - 1 and i + 1 < len(walkers):
            group.append(walkers[i + 1])
        lanes = [0.32, 0.62] if len(group) == 2 else [0.35 + 0.25 * rng.rand()]
        for k, wk in enumerate(group):
            img = read_image(Path(wk.file))
            if img is None:
                raise ValueError("%s: not a readable image" % wk.file)
            fpx = int(rng.randint(face_px[0], face_px[1] + 1))
            patch, alpha, fb = _person_patch(img, wk.box, fpx)
            left_to_right = bool(rng.rand() < 0.5) if len(group) == 1 else (k == 0)
            ph, pw = patch.shape[:2]
            cy = int(height * lanes[k])
            y = cy - (fb[1] + fb[3]) // 2
            x0, x1 = (-pw, width) if left_to_right else (width, -pw)
            start = t + int(k * fps * 0.3)
            n = frames_per + int(rng.randint(-int(fps // 2), int(fps // 2) + 1))
            boxes = []
            for f in range(n + 1):
                x = int(round(x0 + (x1 - x0) * f / float(n)))
                boxes.append([start + f, x + fb[0], y + fb[1], x + fb[2], y + fb[3]])
            people.append(
                {
                    "id": pid,
                    "label": wk.label,
                    "source": wk.source,
                    "file": wk.file,
                    "face_px": fpx,
                    "left_to_right": left_to_right,
                    "enter_frame": start,
                    "exit_frame": start + n,
                    "boxes": boxes,
                    "_patch": (patch, alpha, x0, x1, y, n, start),
                }
            )
            pid += 1
        t = max(p["exit_frame"] for p in people[-len(group) :]) + int(fps * (0.8 + 0.6 * rng.rand()))
        i += len(group)
    total = t + int(fps)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not vw.isOpened():
        raise OSError("cannot write %s" % out)
    try:
        for f in range(total):
            frame = bg.copy()
            for p in people:
                patch, alpha, x0, x1, y, n, start = p["_patch"]
                if start <= f <= start + n:
                    x = int(round(x0 + (x1 - x0) * (f - start) / float(n)))
                    _paste(frame, patch, alpha, x, y)
            flicker = 1.0 + 0.03 * np.sin(f / 7.0) + rng.normal(0, 0.01)
            noisy = frame.astype(np.float32) * flicker + rng.normal(0, noise, frame.shape)
            vw.write(np.clip(noisy, 0, 255).astype(np.uint8))
    finally:
        vw.release()
    truth = {
        "video": out.name,
        "width": width,
        "height": height,
        "fps": fps,
        "frames": total,
        "noise": noise,
        "people": [{k: v for k, v in p.items() if k != "_patch"} for p in people],
    }
    truth_path(out).write_text(json.dumps(truth))
    return truth


def match_events(
    truth: Dict[str, Any], events: Iterable[Dict[str, Any]], min_iou: float = 0.3, slack: int = 30
) -> List[Tuple[Dict, Optional[int]]]:
    """(event, person id or None): among the people in view at the event's frame (for a verdict reached on
    the evidence) or who left at most `slack` frames before it (a verdict reached at the track's end), the
    one whose boxes of the last few seconds best overlap the event's box."""
    people = truth["people"]
    out = []
    window = int(4 * truth.get("fps", 15))
    for e in events:
        box = tuple(e["box"])
        frame = int(e.get("frame", 10**9))
        at_end = e.get("decided_by") == "track_end"
        best, best_o = None, min_iou
        for p in people:
            if at_end:
                if not p["enter_frame"] <= frame <= p["exit_frame"] + slack:
                    continue
            elif not p["enter_frame"] <= frame <= p["exit_frame"]:
                continue
            o = max((iou(box, tuple(b[1:])) for b in p["boxes"] if frame - window <= b[0] <= frame), default=0.0)
            if o > best_o:
                best, best_o = p["id"], o
        out.append((e, best))
    return out


def class_accuracy(per_class: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """{class: {people, counted, right, called, accuracy}}: accuracy over the people of that class who were
    counted; `called`: how many of them were given each verdict (a row of the confusion matrix)."""
    return {
        k: dict(v, accuracy=round(v["right"] / float(max(1, v["counted"])), 4)) for k, v in sorted(per_class.items())
    }


def add_class_counts(into: Dict[str, Dict[str, Any]], per_class: Dict[str, Dict[str, Any]]) -> None:
    """Sum one clip's per-class counts (score()["per_class"]) into `into` (several clips as one)."""
    for lab, v in per_class.items():
        pc = into.setdefault(lab, {"people": 0, "counted": 0, "right": 0, "called": {}})
        for k in ("people", "counted", "right"):
            pc[k] += v[k]
        for verdict, n in v.get("called", {}).items():
            pc["called"][verdict] = pc["called"].get(verdict, 0) + n


def alert_scores(tp: int, fp: int, fn: int) -> Dict[str, Any]:
    """Per-person alert precision, recall and F1 from the counts."""
    prec = tp / float(tp + fp) if tp + fp else 0.0
    rec = tp / float(tp + fn) if tp + fn else 0.0
    f1 = round(2 * prec * rec / (prec + rec), 4) if prec + rec else 0.0
    return {"precision": round(prec, 4), "recall": round(rec, 4), "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def deciding_event(events: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Of the events matched to one visitor, the one whose verdict counts: the first (a later one is a
    duplicate)."""
    return min(events, key=lambda e: e.get("frame", 0))


def events_by_person(
    truth: Dict[str, Any], events: Sequence[Dict[str, Any]]
) -> Tuple[Dict[int, List[Dict[str, Any]]], List[Dict[str, Any]]]:
    """The events matched to each visitor (match_events), and those matched to nobody (spurious)."""
    by_person: Dict[int, List[Dict[str, Any]]] = {}
    spurious = []
    for e, pid in match_events(truth, events):
        if pid is None:
            spurious.append(e)
        else:
            by_person.setdefault(pid, []).append(e)
    return by_person, spurious


def score(truth: Dict[str, Any], events: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Per-person scores of a run over a walker clip (events: the daemon's event payloads)."""
    people = {p["id"]: p for p in truth["people"]}
    by_person, spurious = events_by_person(truth, events)
    once = sum(1 for pid in people if len(by_person.get(pid, [])) == 1)
    dup = sum(len(v) - 1 for v in by_person.values() if len(v) > 1)
    missed = [pid for pid in people if pid not in by_person]
    per_class: Dict[str, Dict[str, Any]] = {}
    tp = fp = fn = 0
    right = 0
    decided_by: Dict[str, int] = {}
    for pid, p in people.items():
        c = per_class.setdefault(p["label"], {"people": 0, "counted": 0, "right": 0, "called": {}})
        c["people"] += 1
        bad = p["label"] in NON_COMPLIANT
        evs = by_person.get(pid)
        if not evs:
            fn += int(bad)
            continue
        c["counted"] += 1
        first = deciding_event(evs)
        v = first["verdict"]
        c["called"][v] = c["called"].get(v, 0) + 1
        decided_by[first.get("decided_by", "?")] = decided_by.get(first.get("decided_by", "?"), 0) + 1
        if v == p["label"]:
            right += 1
            c["right"] += 1
        flagged = v in NON_COMPLIANT
        tp += int(bad and flagged)
        fp += int(flagged and not bad)
        fn += int(bad and not flagged)
    fp += sum(1 for e in spurious if e["verdict"] in NON_COMPLIANT)
    counted = len(people) - len(missed)
    return {
        "people": len(people),
        "events": len(events),
        "counted_once": once,
        "counted_once_rate": round(once / float(max(1, len(people))), 4),
        "duplicates": dup,
        "missed": len(missed),
        "missed_ids": missed,
        "spurious_events": len(spurious),
        "verdict_accuracy": round(right / float(max(1, counted)), 4),
        "verdict_accuracy_all": round(right / float(max(1, len(people))), 4),
        "per_class": class_accuracy(per_class),
        "alert": alert_scores(tp, fp, fn),
        "decided_by": decided_by,
    }


def load_events(path: Path) -> List[Dict[str, Any]]:
    """Event payloads from a file of JSON lines (`edge-maskd run` without a broker prints them)."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            m = json.loads(line)
        except ValueError:
            continue
        m = m.get("payload", m) if isinstance(m, dict) else m
        if isinstance(m, dict) and m.get("type") == "event":
            out.append(m)
    return out
