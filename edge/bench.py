"""edge-bench: which runtime and precision should this kiosk use, and what will the whole pipeline sustain?

Method (TFLite benchmark_model / MLPerf single-stream): load (init time), first
inference, warm-up runs, then timed runs until both `--runs` and `--min-time`
are met; report count, min, mean, std, p50/p90/p95/p99. Every backend the
bundle and machine allow is measured in one run so they compare as ratios;
anything unavailable is listed as skipped with the reason.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__
from .argtypes import at_least
from .bundle import PARITY_FLOOR
from .config import DETECTOR_MODES
from .errors import EX_USAGE, MaskwatchError

log = logging.getLogger("edge-bench")


@dataclass
class Result:
    name: str
    kind: str  # classifier | detector | pipeline
    backend: str = ""
    precision: str = ""
    batch: int = 1
    count: int = 0
    min_ms: Optional[float] = None
    mean_ms: Optional[float] = None
    std_ms: Optional[float] = None
    p50_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    p95_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    init_ms: Optional[float] = None
    first_ms: Optional[float] = None
    per_image_ms: Optional[float] = None
    model_bytes: Optional[int] = None
    rss_mb: Optional[float] = None
    skipped: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)


def stats_ms(samples: Sequence[float]) -> Dict[str, Any]:
    a = np.asarray(samples, dtype=np.float64) * 1000.0
    return {
        "count": int(a.size),
        "min_ms": round(float(a.min()), 4),
        "mean_ms": round(float(a.mean()), 4),
        "std_ms": round(float(a.std()), 4),
        **{"p%d_ms" % p: round(float(np.percentile(a, p)), 4) for p in (50, 90, 95, 99)},
    }


def time_calls(fn: Callable[[], Any], runs: int, min_time: float, max_runs: Optional[int] = None) -> List[float]:
    """Seconds per call, until both `runs` calls and `min_time` seconds are reached (or `max_runs`)."""
    samples: List[float] = []
    start = time.perf_counter()
    while len(samples) < runs or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
        if max_runs is not None and len(samples) >= max_runs:
            break
    return samples


def measure(fn: Callable[[], Any], *, warmup: int, runs: int, min_time: float) -> Dict[str, Any]:
    for _ in range(warmup):
        fn()
    return stats_ms(time_calls(fn, runs, min_time, max_runs=100 * runs))


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)
    except (OSError, ValueError):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def machine() -> Dict[str, Any]:
    """What the numbers were measured on: CPU, cores, OS, library versions, Jetson power mode."""
    cpu = platform.processor() or platform.machine()
    try:
        info: Dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                info.setdefault(k.strip().lower(), v.strip())
        # x86: "model name"; Raspberry Pi: "Model" (board) / "Hardware"; Jetson: see /etc/nv_tegra_release
        cpu = info.get("model name") or info.get("model") or info.get("hardware") or cpu
        if info.get("model name") and info.get("hardware"):
            cpu = "%s (%s)" % (info["model name"], info["hardware"])
    except OSError:
        pass
    libs: Dict[str, str] = {}
    try:
        from importlib import metadata  # 3.8+: versions without importing (edge never imports TensorFlow)
    except ImportError:  # pragma: no cover
        metadata = None  # type: ignore
    for dist in (
        "numpy",
        "opencv-python-headless",
        "opencv-python",
        "ai-edge-litert",
        "tflite-runtime",
        "onnxruntime",
        "onnxruntime-gpu",
        "tensorflow",
        "tensorflow-cpu",
        "keras",
        "tensorrt",
        "pycuda",
        "paho-mqtt",
    ):
        try:
            libs[dist] = metadata.version(dist) if metadata else "?"
        except Exception:  # noqa: BLE001 - PackageNotFoundError: not installed
            continue
    out: Dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": libs,
        "maskwatch": __version__,
        "hostname": platform.node(),
    }
    nv = Path("/etc/nv_tegra_release")
    if nv.exists():
        out["jetson"] = nv.read_text().splitlines()[0]
        try:
            import subprocess

            out["nvpmodel"] = subprocess.run(
                ["nvpmodel", "-q"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, Exception):  # noqa: BLE001
            pass
    for k in ("OPENBLAS_CORETYPE",):
        if os.environ.get(k):
            out.setdefault("env", {})[k] = os.environ[k]
    return out


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, so logs and CI stay clean)."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.tty = sys.stderr.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        if self.tty:
            n = int(30 * self.done / max(1, self.total))
            sys.stderr.write("\r[%s%s] %d/%d %-40s" % ("#" * n, "." * (30 - n), self.done, self.total, label[:40]))
            sys.stderr.flush()
        else:
            log.info("[%d/%d] %s", self.done, self.total, label)

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


# -- classifier backends -------------------------------------------------------------------------------------
def classifier_plan(bundle, threads: Sequence[int], onnx_providers: Sequence[str]) -> List[Dict[str, Any]]:
    plan = []
    for key, v in bundle.variants.items():
        if v.runtime == "keras":
            continue  # measured through export/ (TensorFlow), see keras_results
        if v.runtime == "litert":
            for t in threads:
                plan.append(
                    {
                        "variant": key,
                        "runtime": "litert",
                        "options": {"threads": t},
                        "name": "litert %s %dt"
                        % (key.replace("tflite_edgetpu", "int8-edgetpu-ready").replace("tflite_", ""), t),
                    }
                )
        elif v.runtime == "onnxruntime":
            for prov in onnx_providers:
                plan.append(
                    {
                        "variant": key,
                        "runtime": "onnxruntime",
                        "options": {"providers": [prov], "threads": max(threads)},
                        "name": "onnxruntime %s" % prov.replace("ExecutionProvider", ""),
                    }
                )
        else:
            plan.append({"variant": key, "runtime": v.runtime, "options": {}, "name": "%s %s" % (v.runtime, key)})
    if not any(v.runtime == "edgetpu" for v in bundle.variants.values()):
        plan.append(
            {
                "variant": None,
                "runtime": "edgetpu",
                "name": "edgetpu int8",
                "skip": "bundle has no compiled *_edgetpu.tflite (edgetpu_compiler was not available at export)",
            }
        )
    plan.append({"variant": "onnx", "runtime": "tensorrt", "name": "tensorrt engine fp16", "options": {}})
    return plan


def bench_classifier(bundle, item: Dict[str, Any], batches: Sequence[int], a) -> List[Result]:
    from . import backends
    from .classifier import MaskClassifier

    out = []
    v = bundle.variants.get(item.get("variant") or "")
    base = dict(name=item["name"], kind="classifier", backend=item["runtime"], precision=v.precision if v else "int8")
    if item.get("skip"):
        return [Result(skipped=item["skip"], **base)]
    if item["runtime"] == "tensorrt":
        from .config import build
        from .pipeline import engine_path

        eng = engine_path(build({"state_dir": a.state_dir, "source": {"url": "unused"}}), bundle.model_id, "fp16")
        try:
            t0 = time.perf_counter()
            clf = MaskClassifier(bundle, "onnx", item["options"], backend="tensorrt", model_path=eng, fallback=False)
        except backends.BackendUnavailable as exc:
            return [Result(skipped=str(exc), **dict(base, precision="fp16"))]
    else:
        try:
            t0 = time.perf_counter()
            clf = MaskClassifier(bundle, item["variant"], item["options"], backend=item["runtime"], fallback=False)
        except backends.BackendUnavailable as exc:
            return [Result(skipped=str(exc), **base)]
    init_ms = (time.perf_counter() - t0) * 1000.0
    missing = getattr(clf.backend, "missing_providers", None)
    if missing:
        return [Result(skipped="onnxruntime here has no %s" % ", ".join(missing), **base)]
    h, w = bundle.input_size
    rng = np.random.RandomState(0)
    size = (bundle.path / v.file).stat().st_size if v else None
    for b in batches:
        x = rng.randint(0, 255, (b, h, w, 3)).astype(np.uint8)
        t = time.perf_counter()
        clf.backend.infer(x)
        first = (time.perf_counter() - t) * 1000.0
        st = measure(functools.partial(clf.backend.infer, x), warmup=a.warmup, runs=a.runs, min_time=a.min_time)
        r = Result(
            batch=b,
            init_ms=round(init_ms, 2),
            first_ms=round(first, 3),
            model_bytes=size,
            rss_mb=rss_mb(),
            per_image_ms=round(st["p50_ms"] / b, 4),
            **base,
            **st,
        )
        r.extra["describe"] = clf.backend.describe()
        r.extra.update(variant=item.get("variant"), options=item.get("options", {}))
        out.append(r)
    clf.backend.close()
    return out


def block_ms(fn: Callable[[], Any], min_time: float, min_runs: int = 10) -> float:
    """Median latency (ms) of one short block of back-to-back calls."""
    return float(np.median(time_calls(fn, min_runs, min_time))) * 1000.0


def paired_rounds(
    runners: Dict[str, Callable[[], Any]], rounds: int, block_s: float, seed: int = 0
) -> Dict[str, List[float]]:
    """Time each runner in short blocks, shuffled within each round: a per-round ratio compares two
    variants under the same machine state. Why: on shared or thermally throttled boards the speed drifts
    by tens of percent over a minute, more than the int8/fp32 difference being asked about."""
    import random

    rng = random.Random(seed)
    for fn in runners.values():
        for _ in range(10):
            fn()
    per: Dict[str, List[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        order = list(runners)
        rng.shuffle(order)
        for k in order:
            per[k].append(block_ms(runners[k], block_s))
    return per


def ratio_summary(num: Sequence[float], den: Sequence[float]) -> Dict[str, Any]:
    r = np.asarray(num) / np.asarray(den)
    return {
        "ratio": round(float(np.median(r)), 3),
        "ratio_p25": round(float(np.percentile(r, 25)), 3),
        "ratio_p75": round(float(np.percentile(r, 75)), 3),
        "rounds": int(r.size),
        "rounds_faster": int((r < 1.0).sum()),
    }


def int8_vs_fp32(
    bundle, threads: Sequence[int], batches: Sequence[int], rounds: int, block_s: float
) -> List[Dict[str, Any]]:
    """LiteRT int8 vs fp32 of one bundle, as paired per-round ratios (int8 time / fp32 time)."""
    from . import backends
    from .classifier import MaskClassifier

    if not {"tflite_fp32", "tflite_int8"} <= set(bundle.variants):
        return []
    h, w = bundle.input_size
    out = []
    for t in threads:
        try:
            clfs = {
                k: MaskClassifier(bundle, k, {"threads": t}, backend="litert", fallback=False)
                for k in ("tflite_fp32", "tflite_int8")
            }
        except backends.BackendUnavailable as exc:
            return [{"model_id": bundle.model_id, "skipped": str(exc)}]
        for b in batches:
            x = np.random.RandomState(0).randint(0, 255, (b, h, w, 3)).astype(np.uint8)
            per = paired_rounds(
                {k: functools.partial(c.backend.infer, x) for k, c in clfs.items()}, rounds, block_s, seed=b * 10 + t
            )
            row = {
                "model_id": bundle.model_id,
                "input": h,
                "threads": t,
                "batch": b,
                "fp32_ms": round(float(np.median(per["tflite_fp32"])), 4),
                "int8_ms": round(float(np.median(per["tflite_int8"])), 4),
            }
            row.update(ratio_summary(per["tflite_int8"], per["tflite_fp32"]))
            out.append(row)
        for c in clfs.values():
            c.backend.close()
    return out


# Two measured variants whose p50s lie within this share of each other are a tie, not a ranking: on a shared
# VM one run put the Edge-TPU-ready int8 file 0.04 ms ahead of the plain int8 file (0.87 vs 0.91 ms, the same
# graph), another 0.0015 ms behind; a recommendation that flips between runs on noise is no recommendation.
TIE_MARGIN = 0.05


def recommend(results: Sequence[Result], bundles, pairs: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The classifier setting for this box: the fastest measured CPU/accelerator variant at batch 1 whose
    held-out agreement with the Keras model (the manifest's parity) is at least 99 %. Variants whose p50 is
    within TIE_MARGIN of the fastest are tied: of those the bundle's default variant is taken if it is one,
    else the steadier one (lower p90), and the others are named. A kiosk config takes it as
    classifier.variant / classifier.threads."""
    b = bundles[0]
    cands = []
    for r in results:
        v = b.variants.get(r.extra.get("variant", ""))
        if r.kind != "classifier" or r.skipped or r.batch != 1 or r.p50_ms is None or v is None:
            continue
        if r.extra.get("model_id") != b.model_id or r.backend not in ("litert", "edgetpu", "onnxruntime", "tensorrt"):
            continue
        agree = v.agreement
        if agree is not None and agree < PARITY_FLOOR:
            continue
        cands.append((r, v, agree))
    if not cands:
        return {}
    p50 = [float(c[0].p50_ms or 0.0) for c in cands]  # None was left out above
    fastest = min(p50)
    tied = [c for c, t in zip(cands, p50) if t <= fastest * (1.0 + TIE_MARGIN)]
    # a tie is settled by what is not noise: the bundle's default variant if it is among them (the export's
    # choice for a CPU box), else the steadier (lower p90)
    best = min(
        tied,
        key=lambda c: (
            c[0].extra.get("variant") != b.default_variant,
            c[0].p90_ms if c[0].p90_ms is not None else c[0].p50_ms,
            c[0].p50_ms,
        ),
    )
    r, v, agree = best
    rec: Dict[str, Any] = {
        "model_id": b.model_id,
        "classifier.variant": r.extra["variant"],
        "classifier.threads": r.extra.get("options", {}).get("threads"),
        "p50_ms": r.p50_ms,
        "agreement_with_keras": agree,
        "tie_margin": TIE_MARGIN,
    }
    others = [c[0] for c in tied if c is not best]
    if others:
        rec["tied_with"] = [
            {"classifier.variant": o.extra.get("variant"), "backend": o.backend, "p50_ms": o.p50_ms, "p90_ms": o.p90_ms}
            for o in others
        ]
    op = b.operating_point
    rec["inferences_per_face"] = len(op.views) * (2 if op.flip_average else 1)  # views x mirror images
    mine = [p for p in pairs if p.get("model_id") == b.model_id and p.get("batch") == 1 and "ratio" in p]
    if mine:
        q = min(mine, key=lambda p: p["int8_ms"])
        rec["int8_over_fp32"] = q["ratio"]
        rec["why"] = "int8 is %s than fp32 here (x%.2f, paired rounds, IQR %.2f-%.2f)" % (
            "slower" if q["ratio_p25"] > 1.0 else "faster" if q["ratio_p75"] < 1.0 else "no different",
            q["ratio"],
            q["ratio_p25"],
            q["ratio_p75"],
        )
    return rec


# The workstation's rows (Keras fp32, the seed-style loop) need TensorFlow, which edge/ never imports: a caller
# that has it passes them in (benchmarks/edge_bench_full.py wires export.kerasbench); on a device they are skipped.
NO_TF = (
    "TensorFlow rows are not measured by edge-bench on a device: run benchmarks/edge_bench_full.py on the workstation"
)


@dataclass(frozen=True)
class WorkstationRows:
    keras: Optional[Callable[..., List[Result]]] = None  # (a, bundle, batches, measure, Result, rss_mb) -> rows
    seed_pipeline: Optional[Callable[..., Dict[str, Any]]] = None  # (a, bundle_path, clip) -> run


def keras_results(a, bundle, batches, rows: WorkstationRows) -> List[Result]:
    """Keras fp32 rows, when the caller brought TensorFlow (export/ lives there, never in edge/)."""
    if rows.keras is None:
        return [Result(name="keras fp32 predict", kind="classifier", backend="keras", precision="fp32", skipped=NO_TF)]
    return rows.keras(a, bundle, batches, measure, Result, rss_mb)


# -- detector and pipeline -------------------------------------------------------------------------------------
DETECTOR_BACKENDS = (
    ("opencv", "fp32"),
    ("onnxruntime", "fp32"),
    ("litert", "fp32"),
    ("litert", "int8"),
    ("opencv-cuda", "fp32"),
    ("tensorrt", "fp16"),
    ("edgetpu", "int8"),
)


def bench_detector(a, frame: np.ndarray) -> List[Result]:
    """res10 per backend, precision and input size (single pass), and the opencv modes for wide views."""
    from .detector import DetectorOptions, load_detector

    out = []
    plan = [("opencv", "fp32", mode, 300, False) for mode in a.detector_modes if mode != "single"]
    if a.detector_whole_pass:  # detector.whole_pass: the native pass plus the whole frame at 300x300
        plan += [("opencv", "fp32", mode, 300, True) for mode in a.detector_modes if mode in ("native", "auto")]
    plan += [
        (be, prec, "single", size, False)
        for size in a.detector_sizes
        for be, prec in DETECTOR_BACKENDS
        if be in a.detector_backends
    ]
    for be, prec, mode, size, whole in plan:
        name = "res10 %s %s %s%s %dx%d" % (
            be,
            prec,
            mode,
            "+whole" if whole else "",
            size if mode == "single" else frame.shape[1],
            size if mode == "single" else frame.shape[0],
        )
        try:
            t0 = time.perf_counter()
            det = load_detector(
                Path(a.detector_dir) if a.detector_dir else None,
                DetectorOptions(
                    mode=mode,
                    backend=be,
                    precision=prec,
                    input_size=size,
                    whole_pass=whole,
                    fallback=False,
                    threads=a.threads[0],
                ),
            )
            if be == "opencv-cuda" and det.backend_in_use != "opencv-cuda":
                raise MaskwatchError("this OpenCV build has no CUDA device")
            init = (time.perf_counter() - t0) * 1000.0
            t = time.perf_counter()
            det.detect(frame)
            first = (time.perf_counter() - t) * 1000.0
        except (MaskwatchError, OSError, ValueError, RuntimeError) as exc:
            out.append(Result(name=name, kind="detector", backend=be, precision=prec, skipped=str(exc)[:300]))
            continue
        st = measure(
            functools.partial(det.detect, frame),
            warmup=max(1, a.warmup // 5),
            runs=max(5, a.runs // 5),
            min_time=a.min_time,
        )
        out.append(
            Result(
                name=name,
                kind="detector",
                backend=det.backend_in_use,
                precision=prec,
                init_ms=round(init, 2),
                first_ms=round(first, 3),
                rss_mb=rss_mb(),
                extra={"input_size": size, "mode": mode, **({"whole_pass": True} if whole else {})},
                **st,
            )
        )
    return out


def busy_clip(a) -> Optional[Path]:
    """A never-empty doorway from --busy-photos (each photo about a second, continuous pan)."""
    from . import busyclip

    if a.busy_clip:
        return Path(a.busy_clip)
    if not a.busy_photos:
        return None
    Path(a.work).mkdir(parents=True, exist_ok=True)
    out = Path(a.work) / "bench-busy.mp4"
    return busyclip.make(Path(a.busy_photos), out, photos=a.busy_count, seed=0)


def bench_clip(a) -> Path:
    """An entrance-like clip: three visitors, the doorway empty half of the time."""
    from . import assets, demo

    if a.clip:
        return Path(a.clip)
    out = Path(a.work) / "bench-entrance.mp4"  # made afresh each run (about a second): never a stale clip
    face = assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5)
    visits = (demo.Visit("none", 2.0, 6.0), demo.Visit("mask", 10.0, 14.0), demo.Visit("below_nose", 18.0, 22.0))
    return demo.make_clip(face, out, fps=15.0, seconds=24.0, visits=visits)


def run_pipeline(cfg: Dict[str, Any], clip: Path, classifier=None, detector=None) -> Dict[str, Any]:
    """The daemon's own Pipeline on a file, with a publisher that keeps messages in memory."""
    from .capture import FrameSource
    from .pipeline import Pipeline
    from .publish import Publisher

    class Memory(Publisher):
        def __init__(self) -> None:
            self.items: List[tuple] = []

        def publish(self, kind, payload):
            self.items.append((kind, payload))

    pub = Memory()
    pipe = Pipeline(cfg, pub, detector=detector, classifier=classifier)
    src = FrameSource(str(clip)).open()
    t0 = time.perf_counter()
    pipe.run(src)
    wall = time.perf_counter() - t0
    src.close()
    payloads = [p for k, p in pub.items if k == "events"]
    verdicts = [p["verdict"] for p in payloads]
    return {
        "payloads": payloads,
        "frames": pipe.frames,
        "seconds": wall,
        "fps": pipe.frames / wall,
        "detector_runs": pipe.detector_runs,
        "det_ms_total": float(np.sum(pipe.det_ms)),
        "cls_ms_total": float(np.sum(pipe.cls_ms)),
        "verdicts": verdicts,
        "events": pipe.events,
    }


PIPELINES = (
    # name, motion gate, detector backend, precision: the first is the reference every other is compared to
    ("every frame, opencv", False, "opencv", "fp32"),
    ("motion-gated, opencv", True, "opencv", "fp32"),
    ("motion-gated, litert fp32 detector", True, "litert", "fp32"),
    ("motion-gated, litert int8 detector", True, "litert", "int8"),
)


def _people(r: Dict[str, Any]) -> List[Any]:
    return sorted(r["verdicts"])


def bench_pipeline(a, bundle_path: Path, rows: WorkstationRows = WorkstationRows()) -> List[Result]:
    """The daemon's pipeline per clip (entrance, busy, walkers) and variant, against the seed-style loop."""
    from .config import defaults

    clips: List[Tuple[str, Path, Optional[Path]]] = [("entrance", bench_clip(a), None)]
    busy = busy_clip(a)
    if busy is not None:
        clips.append(("busy", busy, None))
    if a.walkers_clip:
        clips.append(("walkers", Path(a.walkers_clip), Path(str(a.walkers_clip) + ".truth.json")))
    seed_pipeline, seed_skip = rows.seed_pipeline, NO_TF
    out: List[Result] = []
    for clip_name, clip, truth_path in clips:
        base = defaults()
        base["source"]["url"] = str(clip)
        base["classifier"]["bundle"] = str(bundle_path)
        base["detector"]["min_face_px"] = 40  # the kiosk size, as the seed-style loop below
        base["counts"]["interval_s"] = 3600.0
        base["stats"]["interval_s"] = 3600.0
        if a.detector_dir:
            base["detector"]["model_dir"] = a.detector_dir
        runs: Dict[str, List[Dict[str, Any]]] = {p[0]: [] for p in PIPELINES}
        skipped: Dict[str, str] = {}
        seeds: List[Dict[str, Any]] = []
        for _ in range(max(1, a.pipeline_repeats)):  # variants take turns: drifting load hits all alike
            for name, motion, be, prec in PIPELINES:
                if name in skipped:
                    continue
                cfg = json.loads(json.dumps(base))
                cfg["motion"]["enabled"] = motion
                cfg["detector"].update({"backend": be, "precision": prec, "fallback_to_cpu": False})
                try:
                    runs[name].append(run_pipeline(cfg, clip))
                except MaskwatchError as exc:
                    skipped[name] = str(exc)[:300]
            if seed_pipeline is not None and clip_name != "walkers":
                seeds.append(seed_pipeline(a, bundle_path, clip))

        def median_run(rs: List[Dict[str, Any]]) -> Dict[str, Any]:
            return sorted(rs, key=lambda run: run["fps"])[len(rs) // 2]

        ref = median_run(runs[PIPELINES[0][0]])
        seed = median_run(seeds) if seeds else None
        truth = json.loads(truth_path.read_text()) if truth_path and truth_path.exists() else None
        for name, _motion, be, prec in PIPELINES:
            full = "pipeline %s: %s" % (clip_name, name)
            if name in skipped:
                out.append(Result(name=full, kind="pipeline", backend=be, precision=prec, skipped=skipped[name]))
                continue
            r = median_run(runs[name])
            det_pf = r["det_ms_total"] / max(1, r["frames"])
            total_pf = r["seconds"] * 1000.0 / max(1, r["frames"])
            extra = {
                "clip": clip_name,
                "clip_path": str(clip),
                "fps": round(r["fps"], 2),
                "fps_runs": [round(x["fps"], 2) for x in runs[name]],
                "detector_runs": r["detector_runs"],
                "detector_ms_per_frame": round(det_pf, 3),
                "people": r["events"],
                "overhead_vs_detector": round((total_pf - det_pf) / det_pf, 4) if det_pf else None,
                "verdicts": r["verdicts"],
                "same_people_and_verdicts_as_reference": _people(r) == _people(ref),
                "speedup_vs_reference": round(r["fps"] / ref["fps"], 2),
            }
            if seed:
                extra["speedup_vs_seed"] = round(r["fps"] / seed["fps"], 2)
            if truth is not None:
                from .walkers import score

                extra["walkers"] = {
                    k: v
                    for k, v in score(truth, r["payloads"]).items()
                    if k in ("people", "counted_once", "duplicates", "missed", "verdict_accuracy", "alert")
                }
            out.append(
                Result(
                    name=full,
                    kind="pipeline",
                    backend=be,
                    precision=prec,
                    count=r["frames"],
                    mean_ms=round(total_pf, 3),
                    rss_mb=rss_mb(),
                    extra=extra,
                )
            )
        if seed:
            out.append(
                Result(
                    name="pipeline %s: seed-style (res10 + Keras predict per face, every frame)" % clip_name,
                    kind="pipeline",
                    backend="keras predict + res10",
                    count=seed["frames"],
                    mean_ms=round(seed["seconds"] * 1000.0 / max(1, seed["frames"]), 3),
                    rss_mb=rss_mb(),
                    extra={
                        "clip": clip_name,
                        "fps": round(seed["fps"], 2),
                        "fps_runs": [round(x["fps"], 2) for x in seeds],
                    },
                )
            )
        elif clip_name != "walkers":
            out.append(
                Result(
                    name="pipeline %s: seed-style (Keras predict)" % clip_name,
                    kind="pipeline",
                    backend="keras",
                    skipped=seed_skip,
                )
            )
    return out


# -- output ------------------------------------------------------------------------------------------------------
COLUMNS = (
    "name",
    "batch",
    "count",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "per_image_ms",
    "init_ms",
    "first_ms",
    "rss_mb",
)


def table(results: Sequence[Result]) -> str:
    rows = [["name", "b", "n", "p50 ms", "p90 ms", "p99 ms", "mean", "std", "ms/img", "init ms", "1st ms", "RSS MB"]]
    for r in results:
        if r.skipped:
            continue
        rows.append(
            [r.name, str(r.batch), str(r.count)]
            + ["" if getattr(r, c) is None else "%.3g" % getattr(r, c) for c in COLUMNS[3:]]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    for r in results:
        if r.kind == "pipeline" and not r.skipped:
            lines.append(
                "%s: %s fps, %s"
                % (
                    r.name,
                    r.extra.get("fps"),
                    {k: v for k, v in r.extra.items() if k not in ("fps", "verdicts", "clip")},
                )
            )
    skipped = [r for r in results if r.skipped]
    if skipped:
        lines.append("skipped:")
        lines += ["  %s: %s" % (r.name, r.skipped) for r in skipped]
    return "\n".join(lines)


def summary_lines(doc: Dict[str, Any]) -> str:
    """int8 vs fp32 (paired) and the recommended classifier setting, after the table."""
    lines = []
    pairs = [p for p in doc.get("int8_vs_fp32", []) if "ratio" in p]
    if pairs:
        lines.append("LiteRT int8 vs fp32 (interleaved rounds; ratio = int8 time / fp32 time, <1 = int8 faster):")
        for p in pairs:
            lines.append(
                "  %-28s @%-3d %dt b%-2d fp32 %7.3f ms  int8 %7.3f ms  x%.2f [IQR %.2f-%.2f], int8 faster "
                "in %d/%d rounds"
                % (
                    p["model_id"][:28],
                    p["input"],
                    p["threads"],
                    p["batch"],
                    p["fp32_ms"],
                    p["int8_ms"],
                    p["ratio"],
                    p["ratio_p25"],
                    p["ratio_p75"],
                    p["rounds_faster"],
                    p["rounds"],
                )
            )
    lines += ["  %s: %s" % (p["model_id"], p["skipped"]) for p in doc.get("int8_vs_fp32", []) if "skipped" in p]
    rec = doc.get("recommendation") or {}
    if rec:
        lines.append(
            "recommended for this box: classifier.variant: %s, classifier.threads: %s (%.3f ms per inference, "
            "%d per face by the bundle's operating point; agreement with Keras %s)%s"
            % (
                rec["classifier.variant"],
                rec["classifier.threads"],
                rec["p50_ms"],
                rec.get("inferences_per_face", 1),
                rec["agreement_with_keras"],
                "; " + rec["why"] if rec.get("why") else "",
            )
        )
        if rec.get("tied_with"):
            lines.append(
                "  within %d %% of its p50, so tied and not ranked (the default variant, else the lower p90, taken): %s"
                % (
                    round(rec.get("tie_margin", TIE_MARGIN) * 100),
                    ", ".join(
                        "%s %.3f ms (p90 %.3f)" % (t["classifier.variant"], t["p50_ms"], t["p90_ms"] or t["p50_ms"])
                        for t in rec["tied_with"]
                    ),
                )
            )
    return "\n".join(lines)


def write_png(results: Sequence[Result], path: Path, title: str) -> Optional[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib not installed: no PNG (pip install matplotlib)")
        return None
    rows = [r for r in results if not r.skipped and r.p50_ms is not None and r.batch == 1]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    names = [r.name for r in rows]
    p50 = [float(r.p50_ms or 0.0) for r in rows]
    p95 = [float(r.p95_ms or 0.0) for r in rows]
    y = np.arange(len(rows))
    ax.barh(y, p95, color="#c8d6e5", label="p95")
    ax.barh(y, p50, color="#2e86de", label="p50")
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("latency per call, ms (log scale, batch 1)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    for yi, v in zip(y, p50):
        ax.text(v, float(yi), " %.2f" % v, va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)
    return path


def compare(new: Dict[str, Any], old: Dict[str, Any], threshold: float) -> List[str]:
    """Ratios new/old of p50 per (name, batch); returns the regressions beyond `threshold` (0.2 = 20 % slower)."""

    def key(r):
        return (r["name"], r.get("batch", 1))

    old_rows = {key(r): r for r in old.get("results", []) if not r.get("skipped")}
    lines, regressions = [], []
    for r in new.get("results", []):
        o = old_rows.get(key(r))
        metric = "p50_ms" if r.get("p50_ms") is not None else "mean_ms"
        if r.get("skipped") or o is None or not o.get(metric) or r.get(metric) is None:
            continue
        ratio = r[metric] / o[metric]
        flag = ratio > 1.0 + threshold
        lines.append(
            "%-50s b%-2s %8.3f -> %8.3f ms  x%.2f%s"
            % (r["name"][:50], r.get("batch", 1), o[metric], r[metric], ratio, "  REGRESSION" if flag else "")
        )
        if flag:
            regressions.append(lines[-1])
    print("\n".join(lines))
    return regressions


def load_results(path: str, flag: str) -> Dict[str, Any]:
    """An edge-bench results JSON (--json), or a one-line error naming the flag and the file."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise MaskwatchError("%s %s: %s" % (flag, path, exc.strerror or exc), EX_USAGE)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MaskwatchError("%s %s: not a JSON file (%s)" % (flag, path, exc), EX_USAGE)
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise MaskwatchError(
            '%s %s: not edge-bench results (no "results" list; write one with --json)' % (flag, path), EX_USAGE
        )
    return doc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bundle", default=None, help="model bundle (default: the shipped one)")
    p.add_argument("--extra-bundle", action="append", default=[], help="more bundles (e.g. another model size)")
    p.add_argument("--threads", type=at_least(1), nargs="+", default=[2])
    p.add_argument("--batch", type=at_least(1), nargs="+", default=[1, 8])
    p.add_argument("--warmup", type=at_least(0), default=10)
    p.add_argument("--runs", type=at_least(1), default=100)
    p.add_argument("--min-time", type=at_least(0.0, float), default=2.0, help="seconds each measurement runs at least")
    p.add_argument(
        "--onnx-providers",
        nargs="+",
        default=["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"],
    )
    p.add_argument(
        "--detector-modes",
        nargs="+",
        choices=DETECTOR_MODES,
        default=["single", "native", "tiles"],  # auto is native plus, on some frames, tiles: both measured
    )
    p.add_argument(
        "--detector-whole-pass",
        action="store_true",
        help="also time modes native/auto with detector.whole_pass (the whole frame at 300x300 beside them)",
    )
    p.add_argument(
        "--detector-backends",
        nargs="+",
        default=[b for b, _ in DETECTOR_BACKENDS],
        help="res10 runtimes to time (converted files: edge-maskd detector-export / edge-export detector)",
    )
    p.add_argument("--detector-sizes", type=at_least(64), nargs="+", default=[300], help="single-pass input sizes")
    p.add_argument("--busy-photos", default=None, help="folder of photos: build a busy-doorway clip from them")
    p.add_argument("--busy-count", type=at_least(1), default=20, help="photos in the busy clip (about a second each)")
    p.add_argument("--busy-clip", default=None, help="an existing busy clip instead")
    p.add_argument(
        "--walkers-clip",
        default=None,
        help="a walker clip with its .truth.json (benchmarks/walkers.py): people counted gated vs not",
    )
    p.add_argument("--detector-dir", default=None)
    p.add_argument("--frame", default=None, help="image for the detector bench (default: a demo clip frame)")
    p.add_argument("--clip", default=None, help="clip for the pipeline bench (default: a generated entrance clip)")
    p.add_argument("--no-keras", action="store_true", help="skip the Keras (TensorFlow) rows")
    p.add_argument("--no-pipeline", action="store_true")
    p.add_argument(
        "--pipeline-repeats", type=at_least(1), default=3, help="runs of each pipeline variant (median kept)"
    )
    p.add_argument("--only", choices=("classifier", "detector", "pipeline", "int8"), nargs="+", default=None)
    p.add_argument(
        "--pair-rounds",
        type=at_least(0),
        default=15,
        help="int8 vs fp32: interleaved rounds per bundle (0 = skip the paired comparison)",
    )
    p.add_argument(
        "--pair-block", type=at_least(0.01, float), default=0.15, help="int8 vs fp32: seconds per timed block"
    )
    p.add_argument("--state-dir", default=None, help="where TensorRT engines are cached")
    p.add_argument("--work", default=".bench", help="scratch folder for generated clips")
    p.add_argument("--json", default=None, help="write results JSON here")
    p.add_argument("--csv", default=None)
    p.add_argument("--png", default=None)
    p.add_argument("--compare", default=None, help="older results JSON: print ratios, exit 1 on a regression")
    p.add_argument(
        "--threshold", type=at_least(0.0, float), default=0.25, help="slowdown that counts as a regression (0.25=25%%)"
    )
    p.add_argument("--from-json", default=None, help="skip measuring: load results from this JSON (for --compare)")
    return p


def main(argv: Optional[List[str]] = None, rows: WorkstationRows = WorkstationRows()) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        old = load_results(a.compare, "--compare") if a.compare else None  # before minutes of measuring
        for flag, path, want in (
            ("--busy-photos", a.busy_photos, "folder"),
            ("--busy-clip", a.busy_clip, "file"),
            ("--walkers-clip", a.walkers_clip, "file"),
            ("--frame", a.frame, "file"),
            ("--clip", a.clip, "file"),
        ):
            if path and not (Path(path).is_dir() if want == "folder" else Path(path).is_file()):
                raise MaskwatchError("%s %s: no such %s" % (flag, path, want), EX_USAGE)
        if a.from_json:
            doc = load_results(a.from_json, "--from-json")
        else:
            doc = run_all(a, rows)
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(doc, indent=1))
        if a.csv:
            with open(a.csv, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(asdict(Result("", "")).keys()))
                w.writeheader()
                for r in doc["results"]:
                    w.writerow({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()})
        if a.png:
            write_png(
                [Result(**r) for r in doc["results"]],
                Path(a.png),
                "%s, %s cores" % (doc["machine"]["cpu"], doc["machine"]["cores"]),
            )
        if not a.from_json:
            print(table([Result(**r) for r in doc["results"]]))
            print(summary_lines(doc))
        if old is not None:
            regressions = compare(doc, old, a.threshold)
            if regressions:
                print(
                    "edge-bench: %d regression(s) beyond %.0f%%" % (len(regressions), a.threshold * 100),
                    file=sys.stderr,
                )
                return 1
        return 0
    except MaskwatchError as exc:
        print("edge-bench: error: %s" % exc, file=sys.stderr)
        return exc.exit_code
    except (OSError, ValueError) as exc:
        print("edge-bench: error: %s" % exc, file=sys.stderr)
        return 1


def run_all(a, rows: WorkstationRows = WorkstationRows()) -> Dict[str, Any]:
    from .bundle import load_bundle
    from .pipeline import default_bundle_path

    only = set(a.only or ("classifier", "detector", "pipeline", "int8"))
    if a.no_pipeline:
        only.discard("pipeline")
    bundle_paths = [Path(a.bundle) if a.bundle else default_bundle_path()] + [Path(p) for p in a.extra_bundle]
    bundles = [load_bundle(p, verify=True) for p in bundle_paths]
    results: List[Result] = []
    plans = []
    if "classifier" in only:
        for b in bundles:
            plans += [(b, item) for item in classifier_plan(b, a.threads, a.onnx_providers)]
    prog = Progress(len(plans) + 3 + len(bundles))
    for b, item in plans:
        prog.step(item["name"])
        for r in bench_classifier(b, item, a.batch, a):
            r.extra["model_id"] = b.model_id
            results.append(r)
    if "classifier" in only and not a.no_keras:
        for b in bundles:
            prog.step("keras %s" % b.model_id)
            for r in keras_results(a, b, a.batch, rows):
                r.extra["model_id"] = b.model_id
                results.append(r)
    if "detector" in only:
        prog.step("detector")
        import cv2

        from .datasets_io import read_image

        frame = read_image(Path(a.frame)) if a.frame else None
        if frame is None:
            cap = cv2.VideoCapture(str(bench_clip(a)))
            for _ in range(60):
                ok, frame = cap.read()
            cap.release()
        if frame is None:
            raise MaskwatchError("no frame to time the detector on (pass --frame IMAGE)")
        results += bench_detector(a, frame)
    pairs: List[Dict[str, Any]] = []
    if "int8" in only and a.pair_rounds > 0:
        for b in bundles:
            prog.step("int8 vs fp32 %s" % b.model_id)
            pairs += int8_vs_fp32(b, a.threads, a.batch, a.pair_rounds, a.pair_block)
    if "pipeline" in only:
        prog.step("pipeline")
        results += bench_pipeline(a, bundle_paths[0], rows)
    prog.close()
    return {
        "tool": "edge-bench",
        "version": __version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "edge-bench " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "method": {
            "warmup": a.warmup,
            "runs": a.runs,
            "min_time_s": a.min_time,
            "threads": a.threads,
            "batches": a.batch,
        },
        "bundles": [{"path": str(b.path), "model_id": b.model_id} for b in bundles],
        "results": [asdict(r) for r in results],
        "int8_vs_fp32": pairs,
        "recommendation": recommend(results, bundles, pairs),
    }


if __name__ == "__main__":
    sys.exit(main())
