"""One verdict per person: tracks collect votes; standing in view for many frames is one event."""

from __future__ import annotations

import numpy as np

from edge.schedule import MotionGate
from edge.tracker import Tracker, TrackerOptions
from edge.types import Face

LABELS = ["with_mask", "without_mask", "mask_weared_incorrect"]


def face(box, probs):
    return Face(
        box=box, det_score=0.9, label=LABELS[int(np.argmax(probs))], score=max(probs), probs=dict(zip(LABELS, probs))
    )


def test_person_standing_for_300_frames_is_one_event():
    tr = Tracker(LABELS, TrackerOptions(votes=5, max_missed=10))
    decisions = []
    for i in range(300):
        jitter = (i % 3) - 1
        decisions += tr.update([face((100 + jitter, 80, 180 + jitter, 180), [0.1, 0.8, 0.1])], i, float(i))
    for i in range(300, 320):
        decisions += tr.update([], i, float(i))
    assert len(decisions) == 1
    d = decisions[0]
    assert d.label == "without_mask" and d.votes == 5 and d.track_id == 1
    assert tr.active == 0


def test_two_people_side_by_side_are_two_events():
    tr = Tracker(LABELS, TrackerOptions(votes=3))
    out = []
    for i in range(10):
        out += tr.update(
            [face((10, 10, 60, 70), [0.9, 0.05, 0.05]), face((300, 10, 350, 70), [0.1, 0.1, 0.8])], i, float(i)
        )
    assert sorted(d.label for d in out) == ["mask_weared_incorrect", "with_mask"]
    assert len({d.track_id for d in out}) == 2


def test_walker_moving_fast_keeps_one_track():
    tr = Tracker(LABELS, TrackerOptions(votes=8, iou=0.3))
    out = []
    for i in range(12):
        x = 10 + i * 30  # 30 px per frame with a 60 px face: IoU below 0.3, centroid still close
        out += tr.update([face((x, 50, x + 60, 120), [0.8, 0.1, 0.1])], i, float(i))
    assert len(out) == 1 and out[0].votes == 8


def test_a_ghost_box_trailing_a_walker_starts_no_second_person():
    """A walker's face seen with a second, weaker box trailing it (what a video codec leaves behind a moving
    face, and res10 finds): one person, one event. Two people side by side stay two (above), and a box that
    merely touches the walker's still starts its own track."""

    def walk(ghost_dx, overlap):
        tr = Tracker(LABELS, TrackerOptions(votes=5, new_track_overlap=overlap))
        out = []
        for i in range(30):
            x = 40 + 15 * i
            faces = [face((x, 100, x + 100, 200), [0.1, 0.8, 0.1])]
            if i >= 3:  # the ghost: narrower, trailing the face by a third of its width
                faces.append(face((x - ghost_dx, 90, x - ghost_dx + 60, 215), [0.7, 0.2, 0.1]))
            out += tr.update(faces, i, float(i))
        return out + tr.flush(30, 30.0)

    one = walk(35, 0.3)
    assert [d.label for d in one] == ["without_mask"]
    assert len(walk(35, 1.0)) == 2  # the check off: the ghost becomes a second "person"
    assert len(walk(58, 0.3)) == 2  # 2 px of the box on the face: someone else


def test_ambiguous_votes_wait_then_decide_on_exit():
    tr = Tracker(LABELS, TrackerOptions(votes=4, min_agreement=0.75, max_missed=2))
    probs = [[0.6, 0.4, 0.0], [0.4, 0.6, 0.0]] * 3
    out = []
    for i, p in enumerate(probs):
        out += tr.update([face((0, 0, 50, 50), p)], i, float(i))
    assert out == []  # 50/50 split: no verdict yet
    for i in range(6, 10):
        out += tr.update([], i, float(i))
    assert len(out) == 1 and out[0].votes == 6


def test_brief_glimpse_below_min_votes_is_not_an_event():
    tr = Tracker(LABELS, TrackerOptions(votes=5, min_votes_on_exit=3, max_missed=1))
    out = tr.update([face((0, 0, 50, 50), [0.9, 0.05, 0.05])], 0, 0.0)
    for i in range(1, 4):
        out += tr.update([], i, float(i))
    assert out == []


def test_motion_gate_skips_static_frames_and_forces_periodic_checks():
    gate = MotionGate(threshold=25, min_area=0.01, width=80, max_idle_frames=5)
    still = np.full((120, 160, 3), 100, np.uint8)
    assert gate.check(still) is True  # first frame
    results = [gate.check(still) for _ in range(10)]
    assert results.count(True) == 2  # only the forced checks (every 5th idle frame)
    moved = still.copy()
    moved[20:80, 40:100] = 250
    assert gate.check(moved) is True
