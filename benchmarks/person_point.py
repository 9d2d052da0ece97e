#!/usr/bin/env python3
"""The person's operating point: the tracker's decision replayed over recorded views of walker clips.

    .venv/bin/python benchmarks/person_point.py --run work/runs/common --crops work/crops112.npz \
        --bundle models/default --split val --clips 3 --seeds 0 10 20 \
        --workdirs work/walkers-s0 work/walkers-s10 work/walkers-s20 --out person-point.json

The daemon decides a person by an operating point (edge.verdict.label_for on the weighted mean of
their good views). The bundle's point was chosen on single crops; a person's mean over a visit is
another quantity, so `tracker.alert_threshold` and `tracker.incorrect_weight` may set the person's
own. This chooses them without running the daemon once per setting:

1. Each walker clip (benchmarks/walkers.py's, reused from its --workdir when there, else made
   here with the same picks) runs once through the daemon's own Pipeline in-process, with the
   kiosk config (and --set overrides) but early verdicts held back (tracker.votes out of reach):
   every call of the tracker's decision is recorded with the views it had then, so every good
   view of every track is kept. Before its verdict a track is detected on every frame, in the
   daemon as here, so the views a track has when the daemon decides are the ones recorded.
2. For each setting of the grid, the tracker's own decision code (Tracker._try_decide) is called
   again on each recorded state in order, as the daemon would have; the first verdict of a track
   is its event, scored per visitor as the daemon's events are (edge.walkers.score).
3. Check: at the bundle's own values the replayed verdicts are compared, visitor by visitor, with
   the daemon's events beside the clip (walkers.py's `*.events-gate.jsonl`), when they are there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from walkers import add_pick_arguments, clip_path, kiosk_dict, override, pick_all, summarise  # noqa: E402

from edge.tracker import Track, Tracker, TrackerOptions  # noqa: E402
from edge.walkers import deciding_event, events_by_person, events_path, load_events, make_clip, truth_path  # noqa: E402

HOLD = 10**6  # tracker.votes while recording: no early verdict, every view kept


class RecordingTracker(Tracker):
    """The daemon's tracker, recording each call of its decision: the track's state at that moment."""

    def __init__(self, labels: Sequence[str], options: Optional[TrackerOptions] = None) -> None:
        super().__init__(labels, options)
        self.tracks_by_id: Dict[int, Track] = {}
        self.calls: List[Tuple[int, int, int, bool, int, float, Any, Any]] = []
        self.frame_size: Optional[Sequence[int]] = None

    def update(self, faces, frame_index, now, frame_size=None):  # type: ignore[override]
        self.frame_size = frame_size or self.frame_size
        return super().update(faces, frame_index, now, frame_size)

    def _try_decide(self, t: Track, frame_index: int, now: float, exiting: bool):  # type: ignore[override]
        self.tracks_by_id[t.id] = t
        self.calls.append((t.id, len(t.probs), len(t.partial), exiting, frame_index, now, t.best_box, t.box))
        return super()._try_decide(t, frame_index, now, exiting)


# tracker keys that only decide (the replay's to vary); every other key of the config shapes what is recorded
DECIDING = ("votes", "max_votes", "margin", "min_agreement", "min_confidence", "decide_on_exit", "min_votes_on_exit")
DECIDING += ("alert_threshold", "incorrect_weight")


def fingerprint(cfg: Dict[str, Any], model_id: str, video: Path) -> str:
    """What a saved recording depends on: the bundle, the clip and the config without the deciding keys."""
    import hashlib

    c = {k: v for k, v in cfg.items() if k not in ("source", "state_dir")}
    c["tracker"] = {k: v for k, v in cfg.get("tracker", {}).items() if k not in DECIDING}
    clip = hashlib.sha256(video.read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps([c, model_id, clip], sort_keys=True, default=str).encode()).hexdigest()


def save_record(path: Path, rec: RecordingTracker, key: str) -> None:
    import pickle

    tracks = {
        tid: {"probs": t.probs, "weights": t.weights, "partial": t.partial, "first_seen": t.first_seen}
        for tid, t in rec.tracks_by_id.items()
    }
    data = {"key": key, "labels": rec.labels, "frame_size": rec.frame_size, "calls": rec.calls, "tracks": tracks}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data))


def load_record(path: Path, key: str, options: TrackerOptions) -> Optional[RecordingTracker]:
    """A recording saved by an earlier run of this script (a local work file, never committed), or None when it
    was made with another bundle, clip or recording-relevant config (it is made again then)."""
    import pickle

    try:
        data = pickle.loads(path.read_bytes())
    except Exception as e:  # a truncated or foreign file: record again rather than fail
        print(
            "%s: not a recording (%s): recording again" % (path, str(e).splitlines()[0] if str(e) else type(e).__name__)
        )
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    rec = RecordingTracker(data["labels"], options)
    rec.frame_size, rec.calls = data["frame_size"], data["calls"]
    for tid, d in data["tracks"].items():
        tr = Track(id=tid, box=(0, 0, 0, 0), first_seen=d["first_seen"], last_frame=0)
        tr.probs, tr.weights, tr.partial = d["probs"], d["weights"], d["partial"]
        rec.tracks_by_id[tid] = tr
    return rec


def record(cfg: Dict[str, Any], video: Path, saved: Optional[Path] = None, models: Any = None) -> Dict[str, Any]:
    """Run the clip through the daemon's Pipeline (no broker, motion gate on as walkers.py's gated run) with early
    verdicts held back; the recorder, the pipeline and the tracker options the daemon would have used. With `saved`,
    a recording of the same bundle, clip and config is read from there instead, and a new one written there.
    `models`: a pipeline of an earlier clip, whose detector and classifier (loaded once) this one reuses."""
    import copy
    import shutil
    import tempfile

    from edge.capture import FrameSource
    from edge.config import as_config
    from edge.pipeline import Pipeline, tracker_options
    from edge.publish import Publisher

    class Nowhere(Publisher):
        def publish(self, kind: str, payload: Dict[str, Any]) -> None:
            pass

    c = copy.deepcopy(cfg)
    c["source"] = {"url": str(video)}
    c["state_dir"] = tempfile.mkdtemp(prefix="person-point-")
    c["motion"]["enabled"] = True
    c_daemon = copy.deepcopy(c)
    c["tracker"]["votes"] = HOLD
    c["tracker"]["max_votes"] = 0
    if models is None:
        pipe = Pipeline(c, Nowhere())
    else:
        pipe = Pipeline(c, Nowhere(), detector=models.detector, classifier=models.classifier)
    daemon_options = tracker_options(as_config(c_daemon), pipe.classifier)
    key = fingerprint(c_daemon, pipe.model_id, video)
    if saved is not None and saved.exists():
        old = load_record(saved, key, pipe.tracker.opt)
        if old is not None:
            shutil.rmtree(c["state_dir"], ignore_errors=True)
            return {"recorder": old, "pipe": pipe, "options": daemon_options, "seconds": 0.0, "loaded": True}
    rec = RecordingTracker(pipe.tracker.labels, pipe.tracker.opt)
    pipe.tracker = rec
    source = FrameSource(str(video), "file")
    source.open()
    t0 = time.perf_counter()
    try:
        pipe.run(source)
    finally:
        source.close()
        shutil.rmtree(c["state_dir"], ignore_errors=True)  # the run's spool: nothing of it is read afterwards
    if saved is not None:
        save_record(saved, rec, key)
    return {"recorder": rec, "pipe": pipe, "options": daemon_options, "seconds": round(time.perf_counter() - t0, 1)}


def replay(rec: RecordingTracker, options: TrackerOptions) -> List[Tuple[int, Any]]:
    """(call order, Decision) for each track's first verdict under `options`, from the recorded states."""
    tr = Tracker(rec.labels, options)
    cap = 4 * max(1, options.votes) * 10  # the tracker's own bound on partial views
    done = set()
    out = []
    for i, (tid, n, n_part, exiting, frame_index, now, best_box, box) in enumerate(rec.calls):
        if tid in done:
            continue
        full = rec.tracks_by_id[tid]
        view = Track(id=tid, box=box, first_seen=full.first_seen, last_frame=0)
        view.probs, view.weights, view.partial = full.probs[:n], full.weights[:n], full.partial[: min(n_part, cap)]
        view.best_box = best_box
        d = tr._try_decide(view, frame_index, now, exiting)
        if d is not None:
            done.add(tid)
            out.append((i, d))
    return out


def events_of(decisions: List[Tuple[int, Any]], pipe: Any, frame_size: Sequence[int], source: str) -> List[Dict]:
    """The replayed decisions as the daemon reports them (its box convention, its event payload)."""
    import dataclasses

    from edge import messages

    shape = (frame_size[1], frame_size[0], 3)
    out = []
    for _, d in decisions:
        d = dataclasses.replace(d, box=pipe.classifier.face_box(d.box, shape))
        out.append(
            messages.event(d, site=pipe.site, device=pipe.device, model_id=pipe.model_id, source=source, event_id="-")
        )
    return out


def person_verdicts(truth: Dict[str, Any], events: Sequence[Dict[str, Any]]) -> Dict[int, str]:
    """Each counted visitor's verdict (the first event matched to them), as edge.walkers.score counts it."""
    return {pid: deciding_event(evs)["verdict"] for pid, evs in events_by_person(truth, events)[0].items()}


def grid_values(text: Sequence[float]) -> List[float]:
    return sorted({round(float(v), 4) for v in text})


def choose(rows: List[Dict[str, Any]], bundle: Tuple[Optional[float], float]) -> Dict[str, Any]:
    """Most verdicts right; ties: higher alert F1, then nearest the bundle's threshold, then its weight."""
    return max(
        rows,
        key=lambda r: (
            r["verdict_right"],
            r["alert"]["f1"],
            -abs(r["alert_threshold"] - (0.5 if bundle[0] is None else bundle[0])),
            -abs(r["incorrect_weight"] - bundle[1]),
        ),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pick_arguments(ap)
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="clip sets (walkers.py --seed); default --seed")
    ap.add_argument("--workdirs", nargs="+", default=None, help="one per seed: walkers.py's --workdir of that seed")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.40 + 0.05 * i for i in range(9)])
    ap.add_argument("--weights", type=float, nargs="+", default=[1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0])
    ap.add_argument("--set", nargs="*", type=override, default=[], help="config overrides, as walkers.py")
    ap.add_argument("--plot", default=None, help="PNG: verdicts right over the grid")
    ap.add_argument(
        "--records",
        default=None,
        help="keep each clip's recording here (a local work dir) and reuse it when the bundle, the clip and every "
        "config key but the tracker's deciding ones are the same: a sweep of other deciding keys (--set) in seconds",
    )
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    seeds = a.seeds if a.seeds is not None else [a.seed]
    workdirs = a.workdirs if a.workdirs is not None else [a.workdir] * len(seeds)
    if len(workdirs) != len(seeds):
        raise SystemExit("--workdirs: give one per seed (%d seeds, %d workdirs)" % (len(seeds), len(workdirs)))

    from edge.bundle import load_bundle
    from export.crops import load as load_crops

    base = kiosk_dict(str(Path(a.bundle).resolve()), dict(a.set))
    op = load_bundle(Path(a.bundle)).operating_point
    crops = None
    clips: List[Dict[str, Any]] = []
    for seed, wd in zip(seeds, workdirs):
        picks = None
        for c in range(a.clips):
            video = clip_path(wd, a.split, c)
            if video.exists() and truth_path(video).exists():
                truth = json.loads(truth_path(video).read_text())
            else:
                if picks is None:
                    crops = crops if crops is not None else load_crops(a.crops)
                    a.seed = seed
                    picks = pick_all(crops, a)
                Path(wd).mkdir(parents=True, exist_ok=True)
                truth = make_clip(picks[c], video, seed=seed + c)
            saved = Path(a.records) / ("%s-seed%d-clip%d.pkl" % (a.split, seed, c)) if a.records else None
            r = record(base, video.resolve(), saved, clips[0]["pipe"] if clips else None)
            daemon = events_path(video, "gate")
            clips.append(
                {
                    "seed": seed,
                    "video": str(video),
                    "truth": truth,
                    "rec": r["recorder"],
                    "pipe": r["pipe"],
                    "seconds": r["seconds"],
                    "options": r["options"],
                    "daemon_events": load_events(daemon) if daemon.exists() else None,
                }
            )
            print(
                "%s %s (%d tracks, %.0f s)"
                % ("loaded" if r.get("loaded") else "recorded", video, len(r["recorder"].tracks_by_id), r["seconds"]),
                flush=True,
            )

    opts0 = clips[0]["options"]
    bundle_point = (op.alert_threshold, float(op.incorrect_weight))  # threshold None: an argmax bundle

    def run_setting(thr: Optional[float], w: float) -> Tuple[Dict[str, Any], List[List[Dict]]]:
        import dataclasses

        o = dataclasses.replace(opts0, alert_threshold=thr, incorrect_weight=w)
        runs, evs_all = [], []
        for cl in clips:
            evs = events_of(replay(cl["rec"], o), cl["pipe"], cl["rec"].frame_size, cl["video"])
            runs.append({"truth": cl["truth"], "events": evs})
            evs_all.append(evs)
        s = summarise(runs)
        wm = s["per_class"].get("with_mask", {}).get("called", {})
        row = {
            "alert_threshold": thr,
            "incorrect_weight": w,
            "verdict_right": s["verdict_right"],
            "counted": s["counted"],
            "counted_once": s["counted_once"],
            "verdict_accuracy": s["verdict_accuracy"],
            "alert": s["alert"],
            "with_mask_flagged": sum(v for k, v in wm.items() if k != "with_mask"),
            "per_class_right": {k: v["right"] for k, v in s["per_class"].items()},
        }
        return row, evs_all

    # the check: the replay at the bundle's point against the daemon's own events on the same clips
    at_bundle, evs_b = run_setting(*bundle_point)
    check = {"visitors": 0, "same_verdict": 0, "daemon_only": 0, "replay_only": 0, "differ": []}
    for cl, evs in zip(clips, evs_b):
        if cl["daemon_events"] is None:
            continue
        dv, rv = person_verdicts(cl["truth"], cl["daemon_events"]), person_verdicts(cl["truth"], evs)
        for pid in sorted(set(dv) | set(rv)):
            check["visitors"] += 1
            if pid in dv and pid in rv and dv[pid] == rv[pid]:
                check["same_verdict"] += 1
            elif pid not in rv:
                check["daemon_only"] += 1
            elif pid not in dv:
                check["replay_only"] += 1
            else:
                check["differ"].append({"video": cl["video"], "person": pid, "daemon": dv[pid], "replay": rv[pid]})
    check["agreement"] = round(check["same_verdict"] / float(check["visitors"]), 4) if check["visitors"] else None
    print("check at the bundle's point %s: %s" % (bundle_point, json.dumps(check)), flush=True)

    rows = []
    for thr in grid_values(a.thresholds):
        for w in grid_values(a.weights):
            row, _ = run_setting(thr, w)
            rows.append(row)
    best = choose(rows, bundle_point)
    print(
        "chosen: alert_threshold %.2f, incorrect_weight %.1f: %d of %d right, alert F1 %.3f (bundle's point: %d, %.3f)"
        % (
            best["alert_threshold"],
            best["incorrect_weight"],
            best["verdict_right"],
            best["counted"],
            best["alert"]["f1"],
            at_bundle["verdict_right"],
            at_bundle["alert"]["f1"],
        ),
        flush=True,
    )
    result = {
        "split": a.split,
        "bundle": a.bundle,
        "seeds": seeds,
        "workdirs": workdirs,
        "overrides": dict(a.set),
        "clips": [{"seed": c["seed"], "video": c["video"], "record_seconds": c["seconds"]} for c in clips],
        "bundle_point": {"alert_threshold": bundle_point[0], "incorrect_weight": bundle_point[1], **at_bundle},
        "check": check,
        "grid": rows,
        "chosen": best,
        "rule": "most verdicts right; ties: higher alert F1, then nearest the bundle's threshold, then its weight",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join(sys.argv),
    }
    if a.plot:
        plot(rows, grid_values(a.thresholds), grid_values(a.weights), bundle_point, best, Path(a.plot))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=1))
    return 0


def plot(rows, thresholds, weights, bundle_point, best, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.zeros((len(weights), len(thresholds)))
    for r in rows:
        m[weights.index(r["incorrect_weight"]), thresholds.index(r["alert_threshold"])] = r["verdict_right"]
    fig, ax = plt.subplots(figsize=(7, 4))
    im = ax.imshow(m, origin="lower", cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(thresholds)), ["%.2f" % t for t in thresholds])
    ax.set_yticks(range(len(weights)), ["%g" % w for w in weights])
    for i in range(len(weights)):
        for j in range(len(thresholds)):
            ax.text(j, i, "%d" % m[i, j], ha="center", va="center", color="w", fontsize=8)
    for (t, w), mark in ((bundle_point, "s"), ((best["alert_threshold"], best["incorrect_weight"]), "o")):
        if t in thresholds and w in weights:
            ax.plot(thresholds.index(t), weights.index(w), mark, mfc="none", mec="r", ms=18, mew=2)
    ax.set_xlabel("person's alert threshold")
    ax.set_ylabel("person's incorrect weight")
    ax.set_title("visitors called right of %d counted (square: bundle's point, circle: chosen)" % best["counted"])
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
