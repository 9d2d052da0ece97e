"""Faces tracked across frames, one verdict per person, decided on their best views.

A person standing at the door for 10 s is 300 frames; the control room wants one
event. Each track collects the classifier's calibrated probabilities, but only from
good views: a face cut by the frame border (still entering or leaving) or far below
the kiosk size casts no vote, and each vote is weighted by its quality (size,
detector confidence, sharpness). The person's verdict is the operating-point rule
(edge.verdict.label_for) on the weighted mean of their votes, reached either when the
evidence is strong enough (`votes` good views whose mean is clear of the alert
threshold by `margin`, or `max_votes` views in all) or when the track ends,
whichever comes first; the event says which (`decided_by`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .config import TrackerConfig
from .types import Box, Decision, Face, greedy_assign, iou, share_inside
from .verdict import label_for

_T = TrackerConfig()  # the config's defaults are the tracker's: one source


@dataclass
class TrackerOptions:
    """What the tracker needs; defaults are tracker.* of the kiosk config (edge/config.py)."""

    iou: float = _T.iou
    max_missed: int = _T.max_missed  # frames (not detector runs) a track survives unseen
    votes: int = _T.votes  # good views needed before an early verdict
    min_agreement: float = _T.min_agreement  # share of good views whose own verdict matches the mean's
    min_confidence: float = _T.min_confidence  # kept for configs written before the operating point; see margin
    decide_on_exit: bool = _T.decide_on_exit
    min_votes_on_exit: int = _T.min_votes_on_exit
    max_votes: int = _T.max_votes  # decide anyway after this many good views (0: 3 x votes)
    alert_threshold: Optional[float] = None  # the bundle's operating point (None: argmax of the mean)
    incorrect_weight: float = 1.0  # the bundle's operating point: which alert a flagged person gets
    margin: float = _T.margin  # an early verdict needs the mean P(alert) this far from the threshold
    border_px: int = _T.border_px  # a face box this close to the frame edge is cut: no vote
    min_vote_px: int = 0  # faces narrower than this cast no vote (the config: tracker.min_vote_px or
    # detector.min_face_px)
    full_quality_px: int = _T.full_quality_px  # faces this wide or wider weigh fully; smaller ones in proportion
    new_track_overlap: float = _T.new_track_overlap  # an unmatched box this much on a followed face: no new track

    @classmethod
    def from_config(cls, t: TrackerConfig, min_face_px: int, **kw: Any) -> "TrackerOptions":
        return cls(
            iou=t.iou,
            max_missed=t.max_missed,
            votes=t.votes,
            min_agreement=t.min_agreement,
            min_confidence=t.min_confidence,
            decide_on_exit=t.decide_on_exit,
            min_votes_on_exit=t.min_votes_on_exit,
            max_votes=t.max_votes,
            margin=t.margin,
            border_px=t.border_px,
            min_vote_px=int(t.min_vote_px if t.min_vote_px is not None else min_face_px),
            full_quality_px=t.full_quality_px,
            new_track_overlap=t.new_track_overlap,
            **kw,
        )


@dataclass
class Track:
    id: int
    box: Box
    first_seen: float
    last_frame: int  # the tracker's clock when last seen
    last_index: int = 0  # the frame number when last seen
    missed: int = 0
    probs: List[np.ndarray] = field(default_factory=list)
    weights: List[float] = field(default_factory=list)
    partial: List[np.ndarray] = field(default_factory=list)  # votes from cut / small views, used only if no good one
    best_box: Optional[Box] = None
    best_score: float = -1.0
    decided: bool = False
    velocity: tuple = (0.0, 0.0)  # px per *frame*, smoothed: walkers are matched where they will be
    first_box: Optional[Box] = None  # where the track began: its net way across the view

    def predicted(self, frame_index: int) -> Box:
        steps = max(1, frame_index - self.last_frame)
        dx, dy = self.velocity[0] * steps, self.velocity[1] * steps
        b = self.box
        return (int(b[0] + dx), int(b[1] + dy), int(b[2] + dx), int(b[3] + dy))


class Tracker:
    def __init__(self, labels: Sequence[str], options: Optional[TrackerOptions] = None) -> None:
        self.labels = list(labels)
        self.opt = options or TrackerOptions()
        self.tracks: List[Track] = []
        self.next_id = 1
        # Track age and motion prediction run on this clock: frame numbers, except that frames in which
        # nothing moved (the schedule's motion gate) do not advance it. A person standing still at the kiosk
        # while the detector rests is not "missing"; a person who walked out is, as soon as frames move.
        self.clock = 0
        self._ticked = False
        self._still = False

    def tick(self, still: bool = False) -> None:
        """Call once per captured frame (before update/expire); `still`: the motion gate saw no change."""
        self._ticked = True
        self._still = still
        if not still:
            self.clock += 1

    def _now(self, frame_index: int) -> int:
        return self.clock if self._ticked else frame_index

    def _match(self, faces: Sequence[Face], frame_index: int) -> Dict[int, int]:
        """Greedy matching, best IoU first; centroid distance rescues fast walkers with low IoU."""
        pairs = []
        for ti, t in enumerate(self.tracks):
            pb = t.predicted(frame_index)
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

    def quality(self, face: Face, frame_size: Optional[Sequence[int]]) -> float:
        """0 for a view that must not vote (cut by the border, below the kiosk size), else a weight in (0, 1]."""
        x1, y1, x2, y2 = face.box
        w = min(x2 - x1, y2 - y1)
        o = self.opt
        if w < o.min_vote_px:
            return 0.0
        if frame_size is not None:
            fw, fh = frame_size[0], frame_size[1]
            b = o.border_px
            if x1 <= b or y1 <= b or x2 >= fw - b or y2 >= fh - b:
                return 0.0
        size = min(1.0, w / float(max(1, o.full_quality_px)))
        det = min(1.0, max(0.05, face.det_score))
        sharp = 1.0 if face.sharpness is None else float(min(1.0, max(0.25, face.sharpness)))
        return size * det * sharp

    def update(
        self, faces: Sequence[Face], frame_index: int, now: float, frame_size: Optional[Sequence[int]] = None
    ) -> List[Decision]:
        """Feed the faces of one *detected* frame (classified, with probs; frame_size = (width, height)).
        Returns verdicts reached."""
        decisions: List[Decision] = []
        clock = self._now(frame_index)
        matched = self._match(faces, clock)
        seen = set()
        followed = [faces[fi].box for fi in matched]
        for fi, face in enumerate(faces):
            if fi in matched:
                t = self.tracks[matched[fi]]
            elif self.opt.new_track_overlap < 1.0 and any(
                share_inside(face.box, b) >= self.opt.new_track_overlap for b in followed
            ):
                # mostly on a face that a track already follows in this frame: the same person's second box
                # (a codec ghost trailing a walker, res10's box of half the face), not a new visitor
                continue
            else:
                t = Track(self.next_id, face.box, now, clock, last_index=frame_index, first_box=face.box)
                self.next_id += 1
                self.tracks.append(t)
            if fi in matched:
                steps = max(1, clock - t.last_frame)  # frames, not detector runs: the schedule may skip
                vx = ((face.box[0] + face.box[2]) - (t.box[0] + t.box[2])) / 2.0 / steps
                vy = ((face.box[1] + face.box[3]) - (t.box[1] + t.box[3])) / 2.0 / steps
                t.velocity = (0.5 * t.velocity[0] + 0.5 * vx, 0.5 * t.velocity[1] + 0.5 * vy)
            t.box, t.last_frame, t.missed, t.last_index = face.box, clock, 0, frame_index
            seen.add(t.id)
            if face.probs and not t.decided:
                vec = np.array([face.probs[l] for l in self.labels], dtype=np.float32)
                q = self.quality(face, frame_size)
                if q > 0:
                    t.probs.append(vec)
                    t.weights.append(q)
                    if q > t.best_score:
                        t.best_score, t.best_box = q, face.box
                elif len(t.partial) < 4 * max(1, self.opt.votes) * 10:  # bounded: someone may linger half in view
                    t.partial.append(vec)
                    if t.best_box is None:
                        t.best_box = face.box
                d = self._try_decide(t, frame_index, now, exiting=False)
                if d:
                    decisions.append(d)
        # a detection on a still frame (the schedule's forced look at an idle doorway) that does not find a
        # track is real evidence: age it by real frames, so a person who left before the doorway stood
        # still ends here, while one standing still at the kiosk is found again and stays
        decisions.extend(self._expire(frame_index, now, seen, frame_size, real_frames=self._still))
        return decisions

    def _left_frame(self, t: Track, clock: int, frame_size: Optional[Sequence[int]]) -> bool:
        """Unseen now and last seen walking out through the frame edge (or predicted mostly outside it)."""
        if frame_size is None:
            return False
        fw, fh = frame_size[0], frame_size[1]
        pb = t.predicted(clock)
        area = max(1, (pb[2] - pb[0]) * (pb[3] - pb[1]))
        ix = max(0, min(pb[2], fw) - max(pb[0], 0))
        iy = max(0, min(pb[3], fh) - max(pb[1], 0))
        if ix * iy / float(area) < 0.5:
            return True
        b, e = t.box, 2 * self.opt.border_px + 2
        vx, vy = t.velocity
        # ... or its net way across the view: as a face walks out, the edge cuts it and res10's box shrinks back,
        # which can turn the smoothed velocity round in the last frames; more than a face width toward the edge
        # over the track's life still says where the person went
        f = t.first_box or b
        nx = ((b[0] + b[2]) - (f[0] + f[2])) / 2.0
        ny = ((b[1] + b[3]) - (f[1] + f[3])) / 2.0
        w, h = max(1, b[2] - b[0]), max(1, b[3] - b[1])
        return (
            (b[0] <= e and (vx < -0.5 or nx < -w))
            or (b[2] >= fw - e and (vx > 0.5 or nx > w))
            or (b[1] <= e and (vy < -0.5 or ny < -h))
            or (b[3] >= fh - e and (vy > 0.5 or ny > h))
        )

    def expire(self, frame_index: int, now: float) -> List[Decision]:
        """A frame the detector skipped: tracks not seen for more than `max_missed` *frames* end now (and
        are decided on exit). Age is counted in frames, never in detector runs, so a gate that skips an
        empty doorway cannot keep a departed person's track alive to swallow the next visitor."""
        return self._expire(frame_index, now, set())

    def _expire(
        self, frame_index: int, now: float, seen, frame_size: Optional[Sequence[int]] = None, real_frames: bool = False
    ) -> List[Decision]:
        out: List[Decision] = []
        clock = self._now(frame_index)
        for t in list(self.tracks):
            if t.id in seen:
                continue
            t.missed = max(clock - t.last_frame, frame_index - t.last_index if real_frames else 0)
            # a person who walked out of the frame has left now: their track must not linger (while the
            # doorway stands still the clock does too) and swallow the next visitor entering there
            if t.missed > self.opt.max_missed or self._left_frame(t, clock, frame_size):
                self.tracks.remove(t)
                if not t.decided and self.opt.decide_on_exit:
                    d = self._try_decide(t, frame_index, now, exiting=True)
                    if d:
                        out.append(d)
        return out

    def needs_detection(self) -> str:
        """What the detection schedule needs to know: "undecided" (someone in view still needs a verdict:
        detect every frame), "decided" (only people with a verdict: following them can be sparser) or
        "idle" (nobody tracked)."""
        if any(not t.decided for t in self.tracks):
            return "undecided"
        return "decided" if self.tracks else "idle"

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
        o = self.opt
        n = len(t.probs)
        if n:
            p, w = np.stack(t.probs), np.asarray(t.weights, dtype=np.float64)
        elif exiting and t.partial:
            # never fully in view: decide from the partial views rather than lose the visitor
            p, w = np.stack(t.partial), np.ones(len(t.partial))
        else:
            return None
        if exiting:
            if len(p) < o.min_votes_on_exit:
                return None
        elif n < o.votes:
            return None
        mean = (p * w[:, None]).sum(axis=0) / max(1e-9, float(w.sum()))
        label = label_for(mean, o.alert_threshold, o.incorrect_weight)
        k = self.labels.index(label)
        alert = float(mean[1] + mean[2]) if len(mean) >= 3 else 0.0
        cap = o.max_votes or 3 * o.votes
        if not exiting and n < cap:
            own = [label_for(v, o.alert_threshold, o.incorrect_weight) for v in p]
            agreement = float(np.mean([x == label for x in own]))
            thr = 0.5 if o.alert_threshold is None else o.alert_threshold
            if agreement < o.min_agreement or abs(alert - thr) < o.margin:
                return None  # not clear yet: keep collecting good views
        t.decided = True
        return Decision(
            track_id=t.id,
            label=label,
            confidence=round(float(mean[k]), 4),
            probs={l: round(float(v), 4) for l, v in zip(self.labels, mean)},
            box=t.best_box or t.box,
            frame_index=frame_index,
            time=now,
            votes=len(p),
            first_seen=t.first_seen,
            decided_by="track_end" if exiting else "evidence",
            alert=round(alert, 4),
        )

    @property
    def active(self) -> int:
        return len(self.tracks)
