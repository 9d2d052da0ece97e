#!/usr/bin/env python3
"""Per-person evaluation: walker clips from held-out real faces, the real daemon, scored per visitor.

    .venv/bin/python benchmarks/walkers.py --crops work/crops96.npz --run work/runs/v2 \
        --bundle models/default --split test --clips 3 --out benchmarks/results/walkers-test.json

For each clip: 24 faces (8 per class) from the chosen split's real sources (andrewmvd, ilc2021,
chandrikadeb7; faces >= --min-face px in their photo, with no other face of the photo in their
cut: edge.walkers.alone_in_cut) cross a noisy corridor one or two at a
time (edge.walkers.make_clip). `edge-maskd run` runs on it with the kiosk config
(firmware-config/kiosk.example.yaml, only the source, broker and state dir replaced), once with
the motion gate on and once off; its events are scored by edge.walkers.score.
Tune on `--split val`; `--split test` is for the final look.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.walkers import (  # noqa: E402
    Walker,
    add_class_counts,
    alert_scores,
    alone_in_cut,
    class_accuracy,
    events_path,
    load_events,
    make_clip,
    score,
)

REAL = ("andrewmvd-train", "ilc2021-jolignier", "chandrikadeb7")
FACE_LABELS = ("with_mask", "without_mask", "mask_weared_incorrect")


def pick_walkers(
    crops: Dict[str, np.ndarray], split_path: Path, which: int, per_class: int, min_face: int, seed: int, exclude: set
) -> List[Walker]:
    from export.crops import load_split

    keep, assign = load_split(split_path.parent, "--run")
    idx = keep[assign == which]
    labels_all = [
        str(x)
        for x in crops.get("label_names", np.array(["with_mask", "without_mask", "mask_weared_incorrect", "no_face"]))
    ]
    rng = np.random.RandomState(seed)
    faces_in = faces_by_file(crops, labels_all)
    out: List[Walker] = []
    for lab in FACE_LABELS:
        k = labels_all.index(lab)
        cand = [
            i
            for i in idx
            if crops["labels"][i] == k
            and str(crops["sources"][i]) in REAL
            and str(crops["how"][i]) in ("voc", "detector")
            and i not in exclude
            and min(crops["boxes"][i][2] - crops["boxes"][i][0], crops["boxes"][i][3] - crops["boxes"][i][1])
            >= min_face
        ]
        rng.shuffle(cand)
        chosen = []
        for i in cand:  # a visitor needs a head around the face: the photo must hold the context around the box
            f = str(crops["files"][i])
            if alone_in_cut(tuple(crops["boxes"][i]), faces_in.get(f, [])) and has_context(f, crops["boxes"][i]):
                chosen.append(i)
            if len(chosen) == per_class:
                break
        if len(chosen) < per_class:
            raise SystemExit(
                "only %d more %s faces >= %d px, alone and with context, in that split: fewer --clips or --per-class"
                % (len(chosen), lab, min_face)
            )
        for i in chosen:
            exclude.add(int(i))
            out.append(
                Walker(
                    file=str(crops["files"][i]),
                    box=tuple(int(v) for v in crops["boxes"][i]),
                    label=lab,
                    source=str(crops["sources"][i]),
                )
            )
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def faces_by_file(crops: Dict[str, np.ndarray], labels_all: List[str]) -> Dict[str, List[tuple]]:
    """Every annotated or detected face box of each photo, in any split: the faces a walker's cut must not hold."""
    no_face = labels_all.index("no_face") if "no_face" in labels_all else -1
    out: Dict[str, List[tuple]] = {}
    for f, b, lab, how in zip(crops["files"], crops["boxes"], crops["labels"], crops["how"]):
        if int(lab) != no_face and str(how) in ("voc", "detector"):
            out.setdefault(str(f), []).append(tuple(int(v) for v in b))
    return out


def has_context(file: str, box, need: float = 0.25) -> bool:
    """True when the photo extends at least `need` of the face size beyond the box on every side (a face
    cropped to its own edges, as many folder-per-class photos are, would walk in as a floating mask)."""
    import cv2

    img = cv2.imread(file)
    if img is None:
        return False
    h, w = img.shape[:2]
    x1, y1, x2, y2 = [int(v) for v in box]
    bw, bh = x2 - x1, y2 - y1
    return x1 >= need * bw and y1 >= need * bh and w - x2 >= need * bw and h - y2 >= need * 0.5 * bh


def intervals(total: Dict[str, Any]) -> Dict[str, List[float]]:
    """Wilson 95 % intervals of the per-person rates over the visitors of all clips: how far a number from
    72 visitors can move when other faces walk (each visitor one trial; paths and noise not resampled)."""
    from export.metrics import wilson

    al = total["alert"]
    pairs = {
        "counted_once_rate": (total["counted_once"], total["people"]),
        "verdict_accuracy": (total["verdict_right"], total["counted"]),
        "alert_precision": (al["tp"], al["tp"] + al["fp"]),
        "alert_recall": (al["tp"], al["tp"] + al["fn"]),
    }
    return {k: [round(v, 4) for v in wilson(n_ok, n)] for k, (n_ok, n) in pairs.items()}


def summarise(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Several clips' runs ({"truth", "events"} each) scored as one: edge.walkers.score per clip, summed, with
    verdict accuracy over the visitors counted, per-class counts, the alert scores and Wilson intervals."""
    sc_all: Dict[str, Any] = {"people": 0, "counted_once": 0, "duplicates": 0, "missed": 0, "spurious_events": 0}
    right = counted = tp = fp = fn = 0
    per_class: Dict[str, Dict[str, Any]] = {}
    for r in runs:
        s = score(r["truth"], r["events"])
        for k in list(sc_all):
            sc_all[k] += s[k]
        counted += s["people"] - s["missed"]
        right += int(round(s["verdict_accuracy"] * (s["people"] - s["missed"])))
        tp += s["alert"]["tp"]
        fp += s["alert"]["fp"]
        fn += s["alert"]["fn"]
        add_class_counts(per_class, s["per_class"])
    sc_all.update(
        {
            "counted_once_rate": round(sc_all["counted_once"] / float(max(1, sc_all["people"])), 4),
            "verdict_accuracy": round(right / float(max(1, counted)), 4),
            "per_class": class_accuracy(per_class),
            "alert": alert_scores(tp, fp, fn),
            "verdict_right": right,
            "counted": counted,
        }
    )
    sc_all["intervals_95"] = intervals(sc_all)
    return sc_all


def kiosk_dict(bundle: str, extra: Dict[str, Any]) -> Dict[str, Any]:
    """The demo kiosk config with this bundle and the --set overrides (dotted keys), checked by the daemon's own
    schema once, before any clip is made: a wrong key or value is one line naming it (exit 78), not a daemon
    failure minutes later or a traceback (a key without a section was a ValueError)."""
    import yaml

    from edge.config import build
    from edge.errors import ConfigError

    cfg = yaml.safe_load((ROOT / "firmware-config" / "kiosk.example.yaml").read_text())
    cfg["mqtt"]["host"] = None
    cfg["device"] = "walker-eval"
    cfg["classifier"]["bundle"] = bundle
    for dotted, v in extra.items():
        *path, key = dotted.split(".")
        node = cfg
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError("--set %s: %s is a value, not a section" % (dotted, part))
        node[key] = v
    build(cfg, "--set")
    return cfg


def person_point(cfg: Dict[str, Any], bundle: str) -> Dict[str, Any]:
    """The operating point the daemon decides a person by with this config and bundle (edge.pipeline.person_point),
    and where each value came from."""
    from edge.bundle import load_bundle
    from edge.config import build
    from edge.pipeline import person_point as point

    t = build(cfg, "walkers").tracker
    thr, w = point(t, load_bundle(Path(bundle)).operating_point)
    return {
        "alert_threshold": thr,
        "alert_threshold_from": "bundle" if t.alert_threshold is None else "config",
        "incorrect_weight": w,
        "incorrect_weight_from": "bundle" if t.incorrect_weight is None else "config",
    }


def kiosk_config(base: Dict[str, Any], video: Path, state: Path, motion: bool) -> Path:
    import yaml

    cfg = copy.deepcopy(base)
    cfg["source"] = {"url": str(video)}
    cfg["state_dir"] = str(state)
    cfg["motion"]["enabled"] = motion
    path = state / ("kiosk-%s.yaml" % ("gate" if motion else "nogate"))
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_daemon(config: Path) -> Dict[str, Any]:
    t = time.perf_counter()
    p = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "edge-maskd"), "run", "--config", str(config), "--log-level", "WARNING"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if p.returncode != 0:
        raise SystemExit("edge-maskd run failed (%d): %s" % (p.returncode, p.stderr[-2000:]))
    tmp = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    tmp.write_text(p.stdout)
    evs = load_events(tmp)
    tmp.unlink()
    return {"events": evs, "seconds": round(time.perf_counter() - t, 1)}


def override(text: str) -> Tuple[str, Any]:
    """--set KEY=VALUE: a config override, its value read as YAML (the daemon's own validation then judges it);
    refused by argparse in one line when it has no '=' or no key (it was an IndexError traceback)."""
    import yaml

    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError("%r: give KEY=VALUE, e.g. detector.confidence=0.3" % text)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise argparse.ArgumentTypeError("%r: the value is not YAML (%s)" % (text, str(e).splitlines()[0]))


def add_pick_arguments(ap: argparse.ArgumentParser) -> None:
    """The arguments that pick a run's visitors and name its clips: walkers.py's, and those of the scripts that
    read a finished run again (walker_vs_crop.py), which must be given the same values."""
    ap.add_argument("--crops", default="work/crops96.npz")
    ap.add_argument("--run", required=True, help="training run (its split.npz picks held-out faces)")
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default"))
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=8)
    ap.add_argument("--min-face", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="work/walkers", help="where the clips, their truth and events are")


def pick_all(crops: Dict[str, np.ndarray], a: argparse.Namespace) -> List[List[Walker]]:
    """Every clip's visitors, picked before any clip runs (a split too small for --clips says so at once);
    no face walks twice."""
    which = 1 if a.split == "val" else 2
    used: set = set()
    return [
        pick_walkers(crops, Path(a.run) / "split.npz", which, a.per_class, a.min_face, a.seed + c, used)
        for c in range(a.clips)
    ]


def clip_path(workdir: str, split: str, c: int) -> Path:
    return Path(workdir) / ("walkers-%s-%d.mp4" % (split, c))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pick_arguments(ap)
    ap.add_argument(
        "--set", nargs="*", type=override, default=[], help="config overrides, e.g. detector.confidence=0.3"
    )
    ap.add_argument("--no-gate-run", action="store_true", help="only the gated run")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    extra = dict(a.set)
    base = kiosk_dict(str(Path(a.bundle).resolve()), extra)
    from export.crops import load as load_crops

    crops = load_crops(a.crops)
    Path(a.workdir).mkdir(parents=True, exist_ok=True)
    results: Dict[str, Any] = {"clips": [], "split": a.split, "bundle": a.bundle, "overrides": extra}
    results["person_point"] = person_point(base, a.bundle)
    totals: Dict[str, List[Dict[str, Any]]] = {"gate": [], "nogate": []}
    for c, walkers in enumerate(pick_all(crops, a)):
        video = clip_path(a.workdir, a.split, c)
        truth = make_clip(walkers, video, seed=a.seed + c)
        entry: Dict[str, Any] = {"video": str(video), "people": len(truth["people"]), "frames": truth["frames"]}
        for gate in (True,) if a.no_gate_run else (True, False):
            state = Path(tempfile.mkdtemp(prefix="walk-"))
            try:
                r = run_daemon(kiosk_config(base, video.resolve(), state, gate))
            finally:  # the run's config and spool: nothing of it is read afterwards
                shutil.rmtree(state, ignore_errors=True)
            sc = score(truth, r["events"])
            sc["seconds"] = r["seconds"]
            key = "gate" if gate else "nogate"
            # the daemon's events beside the clip and its truth: what each visitor was called, to look at
            events_path(video, key).write_text("".join(json.dumps(e) + "\n" for e in r["events"]))
            entry[key] = sc
            totals[key].append({"truth": truth, "events": r["events"]})
            print(
                "clip %d %s: %s"
                % (
                    c,
                    key,
                    json.dumps(
                        {
                            k: sc[k]
                            for k in (
                                "people",
                                "counted_once",
                                "duplicates",
                                "missed",
                                "spurious_events",
                                "verdict_accuracy",
                                "alert",
                            )
                        }
                    ),
                ),
                flush=True,
            )
        results["clips"].append(entry)
    results["total"] = {}
    for key, runs in totals.items():
        if not runs:
            continue
        sc_all = summarise(runs)
        results["total"][key] = sc_all
        print("TOTAL %s: %s" % (key, json.dumps(sc_all)), flush=True)
    results["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    results["command"] = " ".join(sys.argv)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
