"""Faces tracked across frames, one verdict per person.

A person standing at the door for 10 s is 300 frames; the control room wants one
event. Each track collects classifier votes; once `votes` frames agree (by share
and mean confidence) the track gets its single verdict. A track that leaves early
is decided on exit from what it has, if it has at least `min_votes_on_exit`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .types import Box, Decision, Face, greedy_assign, iou


@dataclass
class TrackerOptions:
    iou: float = 0.3
    max_missed: int = 15
    votes: int = 5
    min_agreement: float = 0.6
    min_confidence: float = 0.5
    decide_on_exit: bool = True
    min_votes_on_exit: int = 2
    max_votes: int = 0  # decide anyway after this many votes (0: 3 x votes)


@dataclass
class Track:
    id: int
    box: Box
    first_seen: float
    last_frame: int
    missed: int = 0
    probs: List[np.ndarray] = field(default_factory=list)
    best_box: Optional[Box] = None
    best_score: float = -1.0
    decided: bool = False
    velocity: tuple = (0.0, 0.0)  # px per detected frame, smoothed: walkers are matched where they will be

    def predicted(self) -> Box:
        steps = self.missed + 1
        dx, dy = self.velocity[0] * steps, self.velocity[1] * steps
        b = self.box
        return (int(b[0] + dx), int(b[1] + dy), int(b[2] + dx), int(b[3] + dy))


class Tracker:
    def __init__(self, labels: Sequence[str], options: Optional[TrackerOptions] = None) -> None:
        self.labels = list(labels)
        self.opt = options or TrackerOptions()
        self.tracks: List[Track] = []
        self.next_id = 1

    def _match(self, faces: Sequence[Face]) -> Dict[int, int]:
        """Greedy matching, best IoU first; centroid distance rescues fast walkers with low IoU."""
        pairs = []
        for ti, t in enumerate(self.tracks):
            pb = t.predicted()
            tw = max(1, t.box[2] - t.box[0])
            tc = ((pb[0] + pb[2]) / 2.0, (pb[1] + pb[3]) / 2.0)
            for fi, f in enumerate(faces):
                o = max(iou(pb, f.box), iou(t.box, f.box))
                if o < self.opt.iou:
                    fw = max(1, f.box[2] - f.box[0])
                    if not 0.5 < fw / float(tw) < 2.0:
                        continue  # a face of a very different size is someone else
                    fc = ((f.box[0] + f.box[2]) / 2.0, (f.box[1] + f.box[3]) / 2.0)
                    dist = ((tc[0] - fc[0]) ** 2 + (tc[1] - fc[1]) ** 2) ** 0.5
                    if dist > 1.0 * tw:
                        continue
                    o = 0.01 * (1.0 - dist / (tw + 1.0))  # matched by distance: after every IoU match
                pairs.append((o, fi, ti))
        return greedy_assign(pairs)

    def update(self, faces: Sequence[Face], frame_index: int, now: float) -> List[Decision]:
        """Feed the faces of one *detected* frame (classified, with probs). Returns verdicts reached."""
        decisions: List[Decision] = []
        matched = self._match(faces)
        seen = set()
        for fi, face in enumerate(faces):
            if fi in matched:
                t = self.tracks[matched[fi]]
            else:
                t = Track(id=self.next_id, box=face.box, first_seen=now, last_frame=frame_index)
                self.next_id += 1
                self.tracks.append(t)
            if fi in matched:
                steps = t.missed + 1
                vx = ((face.box[0] + face.box[2]) - (t.box[0] + t.box[2])) / 2.0 / steps
                vy = ((face.box[1] + face.box[3]) - (t.box[1] + t.box[3])) / 2.0 / steps
                t.velocity = (0.5 * t.velocity[0] + 0.5 * vx, 0.5 * t.velocity[1] + 0.5 * vy)
            t.box, t.last_frame, t.missed = face.box, frame_index, 0
            seen.add(t.id)
            if face.probs and not t.decided:
                t.probs.append(np.array([face.probs[l] for l in self.labels], dtype=np.float32))
                if face.det_score > t.best_score:
                    t.best_score, t.best_box = face.det_score, face.box
                d = self._try_decide(t, frame_index, now, exiting=False)
                if d:
                    decisions.append(d)
        for t in list(self.tracks):
            if t.id in seen:
                continue
            t.missed += 1
            if t.missed > self.opt.max_missed:
                self.tracks.remove(t)
                if not t.decided and self.opt.decide_on_exit:
                    d = self._try_decide(t, frame_index, now, exiting=True)
                    if d:
                        decisions.append(d)
        return decisions

    def flush(self, frame_index: int, now: float) -> List[Decision]:
        """End of stream: decide every undecided track that has enough votes."""
        out = []
        for t in self.tracks:
            if not t.decided and self.opt.decide_on_exit:
                d = self._try_decide(t, frame_index, now, exiting=True)
                if d:
                    out.append(d)
        self.tracks = []
        return out

    def _try_decide(self, t: Track, frame_index: int, now: float, exiting: bool) -> Optional[Decision]:
        n = len(t.probs)
        if n == 0:
            return None
        o = self.opt
        if exiting:
            if n < o.min_votes_on_exit:
                return None
        elif n < o.votes:
            return None
        p = np.stack(t.probs)
        mean = p.mean(axis=0)
        k = int(np.argmax(mean))
        agreement = float(np.mean(p.argmax(axis=1) == k))
        cap = o.max_votes or 3 * o.votes
        if not exiting and n < cap and (agreement < o.min_agreement or mean[k] < o.min_confidence):
            return None  # ambiguous so far: keep collecting votes
        t.decided = True
        return Decision(track_id=t.id, label=self.labels[k], confidence=round(float(mean[k]), 4),
                        probs={l: round(float(v), 4) for l, v in zip(self.labels, mean)},
                        box=t.best_box or t.box, frame_index=frame_index, time=now, votes=n,
                        first_seen=t.first_seen)

    @property
    def active(self) -> int:
        return len(self.tracks)


class MotionGate:
    """Frigate-style cheap test: did enough of a small grey frame change since the last one?

    The detector is the expensive stage; an entrance is empty most of the day, so most
    frames never reach it. Forced detections every `max_idle_frames` keep tracks honest.
    """

    def __init__(self, threshold: int = 25, min_area: float = 0.002, width: int = 160,
                 max_idle_frames: int = 30) -> None:
        self.threshold, self.min_area, self.width, self.max_idle = threshold, min_area, width, max_idle_frames
        self.prev: Optional[np.ndarray] = None
        self.idle = 0

    def check(self, image_bgr: np.ndarray) -> bool:
        import cv2

        h, w = image_bgr.shape[:2]
        small = cv2.resize(image_bgr, (self.width, max(1, int(h * self.width / float(w)))),
                           interpolation=cv2.INTER_AREA)
        grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        prev, self.prev = self.prev, grey
        if prev is None:
            self.idle = 0
            return True
        changed = float(np.mean(cv2.absdiff(grey, prev) > self.threshold))
        if changed >= self.min_area:
            self.idle = 0
            return True
        self.idle += 1
        if self.idle >= self.max_idle:
            self.idle = 0
            return True
        return False
