#!/usr/bin/env python3
"""Why a walker visitor was never counted: res10's best score and the rejector's P(no_face) on their face.

    .venv/bin/python benchmarks/walker_misses.py work/walkers/walkers-val-0.mp4 [...] --json OUT.json

For each clip that `benchmarks/walkers.py` wrote (the .mp4, its .truth.json and the daemon's events beside it,
`.events-gate.jsonl`), the visitors the daemon missed are followed frame by frame: the detector runs as the kiosk
config has it but down to confidence 0.01, and the strongest detection on the visitor's face (its box centre
inside the true face box) is kept with its score and the bundle's calibrated P(no_face) for it. A miss is then
one of: res10 never scores the face at the kiosk confidence (`frames_at_confidence` 0), it does but the rejector
calls it no_face in those frames (`frames_passing` 0), or the face passes in too few good frames for the tracker.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default"))
    ap.add_argument("--config", default=str(ROOT / "firmware-config" / "kiosk.example.yaml"))
    ap.add_argument("--events", default="gate", choices=("gate", "nogate"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    import cv2

    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.config import load_config
    from edge.detector import DetectorOptions, load_detector
    from edge.errors import EX_DATAERR, EX_NOINPUT, MaskwatchError
    from edge.walkers import events_path, load_events, score, truth_path

    clips = []  # every clip's truth and events read first: a missing one is named before any model loads
    for v in a.videos:
        video = Path(v)
        try:
            truth = json.loads(truth_path(video).read_text())
            events = load_events(events_path(video, a.events))
        except (OSError, ValueError) as e:
            raise MaskwatchError(
                "%s: no walker truth or events beside it (%s); run benchmarks/walkers.py first" % (video, e),
                EX_NOINPUT,
            )
        cap = cv2.VideoCapture(str(video))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        if n != truth.get("frames"):
            raise MaskwatchError(
                "%s: %d readable frames where its truth says %s: not the clip walkers.py wrote (run it again)"
                % (video, n, truth.get("frames")),
                EX_DATAERR,
            )
        clips.append((video, truth, events))
    cfg = load_config(Path(a.config))
    d = cfg.detector
    conf, nf_thr = d.confidence, cfg.classifier.no_face_threshold
    # the kiosk config's detector in every rule but its confidence
    det = load_detector(None, dataclasses.replace(DetectorOptions.from_config(d), confidence=0.01, fallback=False))
    clf = MaskClassifier(load_bundle(Path(a.bundle)), None, fallback=False)
    out = {"config": os.path.relpath(a.config, ROOT), "confidence": conf, "no_face_threshold": nf_thr, "missed": []}
    for video, truth, events in clips:
        missed = set(score(truth, events)["missed_ids"])
        people = [p for p in truth["people"] if p["id"] in missed]
        boxes = {p["id"]: {b[0]: b[1:] for b in p["boxes"]} for p in people}
        rows = {p["id"]: [] for p in people}
        cap = cv2.VideoCapture(str(video))
        f = 0
        while people:
            ok, frame = cap.read()
            if not ok:
                break
            on = [p for p in people if f in boxes[p["id"]]]
            if on:
                # each box with the device's own calibrated P(no_face) (Face.no_face)
                faces = clf.classify(frame, det.detect(frame))
                w = frame.shape[1]
                for p in on:
                    tb = boxes[p["id"]][f]
                    if tb[2] <= 0 or tb[0] >= w:  # not in view yet / any more
                        continue
                    on_face = [
                        x
                        for x in faces
                        if tb[0] <= (x.box[0] + x.box[2]) / 2.0 <= tb[2]
                        and tb[1] <= (x.box[1] + x.box[3]) / 2.0 <= tb[3]
                    ]
                    best = max(on_face, key=lambda x: x.det_score, default=None)
                    rows[p["id"]].append(None if best is None else (float(best.det_score), float(best.no_face or 0.0)))
            f += 1
        cap.release()
        if people and f < truth["frames"]:
            raise MaskwatchError("%s: the video ends at frame %d of %d" % (video, f, truth["frames"]), EX_DATAERR)
        for p in people:
            r = rows[p["id"]]
            seen = [x for x in r if x is not None]
            at_conf = [x for x in seen if x[0] >= conf]
            passing = [x for x in at_conf if nf_thr is None or x[1] < nf_thr]
            out["missed"].append(
                {
                    "video": video.name,
                    "id": p["id"],
                    "label": p["label"],
                    "source": p["source"],
                    "file": p["file"],
                    "frames_in_view": len(r),
                    "frames_with_a_box": len(seen),
                    "max_score": round(max((x[0] for x in seen), default=0.0), 3),
                    "frames_at_confidence": len(at_conf),
                    "frames_passing": len(passing),
                    "no_face_at_confidence": [round(x[1], 2) for x in at_conf][:12],
                    # frame by frame while in view: res10's score on the face (None: no box on it)
                    "scores_by_frame": [None if x is None else round(x[0], 2) for x in r],
                }
            )
            print(json.dumps(out["missed"][-1]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
