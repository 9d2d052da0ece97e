#!/usr/bin/env python3
"""Why a walker visitor was never counted: res10's best score and the rejector's P(no_face) on their face.

    .venv/bin/python benchmarks/walker_misses.py work/walkers/walkers-val-0.mp4 [...] --json OUT.json

For each clip that `benchmarks/walkers.py` wrote (the .mp4, its .truth.json and the daemon's events beside it,
`.events-gate.jsonl`), the visitors the daemon missed are followed frame by frame: the detector runs as the kiosk
config has it but down to confidence 0.01, and the detection on the visitor's face (its box centre inside the
true face box, or IoU >= 0.3) is kept with its score and the bundle's calibrated P(no_face) for it. A miss is then
one of: res10 never scores the face at the kiosk confidence (`frames_at_confidence` 0), it does but the rejector
calls it no_face in those frames (`frames_passing` 0), or the face passes in too few good frames for the tracker.
"""

from __future__ import annotations

import argparse
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
    import numpy as np

    from edge.bundle import NO_FACE, load_bundle
    from edge.classifier import MaskClassifier
    from edge.config import load_config
    from edge.detector import DetectorOptions, load_detector
    from edge.errors import EX_NOINPUT, MaskwatchError
    from edge.verdict import calibrate
    from edge.walkers import load_events, score

    clips = []  # every clip's truth and events read first: a missing one is named before any model loads
    for v in a.videos:
        video = Path(v)
        try:
            truth = json.loads(Path(str(video) + ".truth.json").read_text())
            events = load_events(Path("%s.events-%s.jsonl" % (video, a.events)))
        except (OSError, ValueError) as e:
            raise MaskwatchError(
                "%s: no walker truth or events beside it (%s); run benchmarks/walkers.py first" % (video, e),
                EX_NOINPUT,
            )
        clips.append((video, truth, events))
    cfg = load_config(Path(a.config))
    d = cfg.detector
    conf, nf_thr = d.confidence, cfg.classifier.no_face_threshold
    det = load_detector(
        None,
        DetectorOptions(
            confidence=0.01,
            mode=d.mode,
            min_face_px=d.min_face_px,
            nms_containment=d.nms_containment,
            nms_own_share=d.nms_own_share,
            fallback=False,
        ),
    )
    clf = MaskClassifier(load_bundle(Path(a.bundle)), None, fallback=False)
    labs = clf.output_labels
    temp = clf.bundle.operating_point.temperature
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
                faces = det.detect(frame)
                probs = clf.probs(clf.preprocess_views(frame, [x.box for x in faces], detector=True)) if faces else []
                for p in on:
                    tb = boxes[p["id"]][f]
                    h, w = frame.shape[:2]
                    if tb[2] <= 0 or tb[0] >= w:  # not in view yet / any more
                        continue
                    best = None
                    for x, pr in zip(faces, probs):
                        cx, cy = (x.box[0] + x.box[2]) / 2.0, (x.box[1] + x.box[3]) / 2.0
                        inside = tb[0] <= cx <= tb[2] and tb[1] <= cy <= tb[3]
                        if inside and (best is None or x.det_score > best[0]):
                            nf = float(calibrate(np.asarray(pr)[None], temp)[0][labs.index(NO_FACE)])
                            best = (float(x.det_score), nf)
                    rows[p["id"]].append(best)
            f += 1
        cap.release()
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
