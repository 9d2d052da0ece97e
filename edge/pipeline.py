"""capture -> (motion gate) -> detect -> classify -> track -> publish: the daemon's loop.

Data flows one way; each stage is its own module. This file only wires them
and keeps the clock: counts windows, stats, status changes, watchdog pings.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple, Union

import numpy as np

from . import __version__, messages
from .bundle import NO_FACE, OperatingPoint, load_bundle
from .capture import FrameSource
from .classifier import MaskClassifier
from .colour import DARK_DEGRADED, GREY_DEGRADED, DarkWatch, GreyWatch
from .config import Config, TrackerConfig, as_config
from .detector import SURE_SMALL_SCORE, DetectorOptions, FaceDetector, load_detector
from .facesize import FACES_TOO_SMALL, FaceSizeWatch
from .publish import Publisher
from .schedule import DetectionSchedule, MotionGate
from .sdnotify import Notifier
from .tracker import Tracker, TrackerOptions
from .types import Counts, Decision, Face, expand_box

log = logging.getLogger(__name__)

REPO_MODELS = Path(__file__).resolve().parent.parent / "models"
RECENT_DECISIONS = 1000


def default_bundle_path() -> Path:
    """$MASKWATCH_BUNDLE, else the bundle shipped in models/default (repo checkout or /opt install)."""
    env = os.environ.get("MASKWATCH_BUNDLE")
    if env:
        return Path(env)
    for p in (
        REPO_MODELS / "default",
        Path("/opt/maskwatch/models/default"),
        Path("/usr/share/maskwatch/models/default"),
    ):
        if (p / "manifest.json").exists():
            return p
    return REPO_MODELS / "default"


def state_dir(cfg: Config) -> Path:
    if cfg.state_dir:
        return Path(cfg.state_dir)
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    return Path.home() / ".local" / "state" / "maskwatch"


def device_name(cfg: Config) -> str:
    return cfg.device or socket.gethostname().split(".")[0]


def person_point(t: TrackerConfig, op: OperatingPoint) -> Tuple[Optional[float], float]:
    """The person's operating point (alert threshold, incorrect weight): tracker.alert_threshold and
    tracker.incorrect_weight where the config sets them (chosen on walker clips for a bundle), else the bundle's
    per-crop one."""
    return (
        op.alert_threshold if t.alert_threshold is None else t.alert_threshold,
        op.incorrect_weight if t.incorrect_weight is None else t.incorrect_weight,
    )


def tracker_options(cfg: Config, classifier: MaskClassifier) -> TrackerOptions:
    """The tracker's options from the config, with the person's operating point (person_point)."""
    thr, w = person_point(cfg.tracker, classifier.bundle.operating_point)
    return TrackerOptions.from_config(cfg.tracker, cfg.detector.min_face_px, alert_threshold=thr, incorrect_weight=w)


def build_classifier(cfg: Config) -> MaskClassifier:
    c = cfg.classifier
    bundle = load_bundle(Path(c.bundle) if c.bundle else default_bundle_path())
    if c.no_face_threshold is not None and bundle.operating_point.no_face_threshold is not None:
        bundle.operating_point = dataclasses.replace(bundle.operating_point, no_face_threshold=c.no_face_threshold)
    variant = bundle.variant(c.variant)
    options: Dict[str, Any] = {"threads": c.threads}
    if c.onnx_providers:
        options["providers"] = list(c.onnx_providers)
    if c.edgetpu_device:
        options["device"] = c.edgetpu_device
    model_path = None
    if (c.backend or variant.runtime) == "tensorrt":
        model_path = Path(c.engine) if c.engine else engine_path(cfg, bundle.model_id, c.engine_precision)
    return MaskClassifier(
        bundle,
        variant.key,
        options,
        backend=c.backend,
        model_path=model_path,
        fallback=c.fallback_to_cpu,
        batch=c.batch,
    )


def detector_engine_path(cfg: Config, size: int, precision: str) -> Path:
    """Where `build-engine --detector` puts the res10 engine and the tensorrt detector looks for it."""
    return state_dir(cfg) / "engines" / ("res10-%dx%d-%s.engine" % (size, size, precision))


def engine_path(cfg: Config, model_id: str, precision: str) -> Path:
    return state_dir(cfg) / "engines" / ("%s-%s.engine" % (model_id, precision))


def _pct(values) -> Dict[str, Optional[float]]:
    if not values:
        return {"p50": None, "p95": None}
    a = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3)}


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)
    except (OSError, ValueError):
        return 0.0


class Pipeline:
    def __init__(
        self,
        cfg: Union[Config, Dict[str, Any]],
        publisher: Publisher,
        *,
        notifier: Optional[Notifier] = None,
        detector: Optional[FaceDetector] = None,
        classifier: Optional[MaskClassifier] = None,
    ) -> None:
        self.cfg = cfg = as_config(cfg)
        self.site, self.device = cfg.site, device_name(cfg)
        self.publisher = publisher
        self.notifier = notifier or Notifier()
        d = cfg.detector
        opts = DetectorOptions.from_config(d)
        if d.backend == "tensorrt" and not d.engine:
            opts.engine = str(detector_engine_path(cfg, d.input_size, "fp16"))
        self.detector = detector or load_detector(Path(d.model_dir) if d.model_dir else None, opts)
        self.classifier = classifier or build_classifier(cfg)
        self.tracker = Tracker(self.classifier.labels, tracker_options(cfg, self.classifier))
        op, to = self.classifier.bundle.operating_point, self.tracker.opt
        if (to.alert_threshold, to.incorrect_weight) != (op.alert_threshold, op.incorrect_weight):
            log.info(
                "a person is flagged at mean P(alert) >= %s, incorrectly worn at weight %s (tracker.*; the bundle's "
                "per-crop point: %s, %s)",
                to.alert_threshold,
                to.incorrect_weight,
                op.alert_threshold,
                op.incorrect_weight,
            )
        m = cfg.motion
        motion = MotionGate(m.threshold, m.min_area, m.downscale_width, m.max_idle_frames) if m.enabled else None
        self.schedule = DetectionSchedule(d.every_n_frames, motion, m.decided_stride)
        self.model_id = self.classifier.bundle.model_id
        self.backend_name = self.classifier.backend.describe()
        self.degraded: List[str] = [self.classifier.degraded] if self.classifier.degraded else []
        if self.classifier.parity_warning:  # the control room sees it, not only whoever reads the journal
            self.degraded.append(self.classifier.parity_warning)
        det_degraded: Optional[str] = getattr(self.detector, "degraded", None)
        if det_degraded:
            self.degraded.append(det_degraded)
        self.grey_watch = GreyWatch()
        self.dark_watch = DarkWatch()
        self.camera = "starting"  # the source's state as last announced in the status
        self.size_watch = FaceSizeWatch(d.min_face_px, d.small_faces_after_s) if d.small_faces_after_s else None
        self.stop_event = threading.Event()
        # counters
        self.frames = self.detector_runs = self.events = self.rejected = 0
        self.det_ms: Deque[float] = deque(maxlen=2000)
        self.cls_ms: Deque[float] = deque(maxlen=2000)
        # the newest decisions, without snapshot bytes (tests, benchmarks); bounded: a kiosk runs for months
        self.decisions: Deque[Decision] = deque(maxlen=RECENT_DECISIONS)

    # -- status ----------------------------------------------------------------------------------------
    def status_payload(self, state: str, camera: Optional[str] = None) -> Dict[str, Any]:
        return messages.status(
            state,
            site=self.site,
            device=self.device,
            t=time.time(),
            version=__version__,
            model_id=self.model_id,
            backend=self.backend_name,
            degraded=list(self.degraded) or None,
            camera=camera,
            stats_interval_s=self.cfg.stats.interval_s,
        )

    def _roi(self, shape) -> Optional[tuple]:
        roi = self.cfg.detector.roi
        if not roi:
            return None
        h, w = shape[:2]
        return (int(roi[0] * w), int(roi[1] * h), int(roi[2] * w), int(roi[3] * h))

    # -- one frame ---------------------------------------------------------------------------------------
    def process(self, frame) -> List[Decision]:
        img = frame.image
        run = self.schedule.should_detect(frame.index, img, self.tracker.needs_detection())
        self.tracker.tick(still=self.schedule.still)
        if not run:
            # people who left while nothing ran
            return [self._report(d, img) for d in self.tracker.expire(frame.index, frame.time)]
        self.detector_runs += 1
        t0 = time.perf_counter()
        faces = self.detector.detect(img, self._roi(img.shape))
        t1 = time.perf_counter()
        self.det_ms.append((t1 - t0) * 1000.0)
        self._check_face_size(frame.time, faces)
        if faces:
            faces = self.classifier.classify(img, faces)
            self.cls_ms.append((time.perf_counter() - t1) * 1000.0)
            kept = [f for f in faces if f.label != NO_FACE]  # the rejector: detections that are no face
            self.rejected += len(faces) - len(kept)
            faces = kept
        decisions = self.tracker.update(faces, frame.index, frame.time, (img.shape[1], img.shape[0]))
        return [self._report(d, img) for d in decisions]

    def _report(self, d: Decision, img: np.ndarray) -> Decision:
        """The decision as it is reported (a new record): its box is the person's face at their best view in
        the convention the classifier was trained and measured in (res10's box moved by the bundle's box fit,
        within the frame: res10's own box starts above the forehead and ends above the chin, where a mask worn
        too low sits), as `edge-maskd scan` reports it; with privacy.snapshots on, the snapshot is what the
        classifier saw of that face (the box grown by the bundle's crop margin)."""
        d = dataclasses.replace(d, box=self.classifier.face_box(d.box, img.shape))
        p = self.cfg.privacy
        if not p.snapshots:
            return d
        import cv2

        x1, y1, x2, y2 = expand_box(d.box, self.classifier.margin, img.shape[1], img.shape[0])
        crop = img[y1:y2, x1:x2]
        if crop.size == 0:
            return d
        crop = cv2.resize(crop, (p.snapshot_px, p.snapshot_px), interpolation=cv2.INTER_AREA)
        if p.snapshot_blur:
            crop = cv2.GaussianBlur(crop, (0, 0), p.snapshot_px / 12.0)
        ok, jpg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 70])
        return dataclasses.replace(d, snapshot=jpg.tobytes()) if ok else d

    def emit(self, decisions: List[Decision], source_name: str) -> None:
        for d in decisions:
            payload = messages.event(d, site=self.site, device=self.device, model_id=self.model_id, source=source_name)
            self.publisher.publish("events", payload)
            self.events += 1
            self.decisions.append(dataclasses.replace(d, snapshot=None) if d.snapshot else d)
            log.info(
                "event %s: track %d %s (%.2f, %d votes)",
                payload["event_id"][:8],
                d.track_id,
                d.label,
                d.confidence,
                d.votes,
            )

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self, source: FrameSource) -> int:
        counts_every = self.cfg.counts.interval_s
        stats_every = self.cfg.stats.interval_s
        stall_s = self.cfg.watchdog.stall_s
        start = time.time()
        window_start = start
        window: Dict[str, int] = {l: 0 for l in self.classifier.labels}
        last_stats = start
        frames_at_stats = 0
        self.camera = "starting"  # whatever the source says first (ok, or lost already) is announced
        self.publisher.start(self.status_payload("online", camera="starting"))
        self.notifier.status("starting capture from %s" % source.name)
        last_frame_at = time.monotonic()
        try:
            while not self.stop_event.is_set():
                frame = source.read(timeout=0.5)
                now = time.time()
                if source.state != self.camera:
                    self.camera = source.state
                    if self.camera == "lost":
                        self.degraded.append("camera lost")
                    else:
                        self.degraded = [x for x in self.degraded if x != "camera lost"]
                    if self.camera != "ended":
                        self.publisher.set_status(self.status_payload("online", camera=self.camera))
                if frame is None:
                    if source.state == "ended":
                        break
                    if time.monotonic() - last_frame_at > stall_s:
                        self.notifier.status(
                            "no frames for %.0f s (camera %s)" % (time.monotonic() - last_frame_at, source.state)
                        )
                    continue
                decisions = self.process(frame)
                self.frames += 1
                self._check_colour(frame.image)
                last_frame_at = time.monotonic()
                self.notifier.notify_ready("processing %s with %s" % (source.name, self.backend_name))
                self.notifier.frame_processed()
                for d in decisions:
                    window[d.label] = window.get(d.label, 0) + 1
                self.emit(decisions, source.name)
                if now - window_start >= counts_every:
                    self._publish_counts(window_start, now, window)
                    window, window_start = {l: 0 for l in window}, now
                if now - last_stats >= stats_every:
                    self._publish_stats(
                        now, start, (self.frames - frames_at_stats) / max(1e-6, now - last_stats), source
                    )
                    last_stats, frames_at_stats = now, self.frames
        finally:
            now = time.time()
            final = self.tracker.flush(self.frames, now)
            for d in final:
                window[d.label] = window.get(d.label, 0) + 1
            self.emit(final, source.name)
            if sum(window.values()) or now - window_start > 1.0:
                self._publish_counts(window_start, now, window)
            self._publish_stats(now, start, self.frames / max(1e-6, now - start), source)
            self.notifier.stopping()
        return 0

    def _check_colour(self, image: np.ndarray) -> None:
        """A camera that turned grey (monochrome, infrared at night) or dark (no light, a covered lens) is a
        degraded state the control room sees."""
        changed = False
        for watch, why, back in (
            (self.dark_watch, DARK_DEGRADED, "camera sees again"),
            (self.grey_watch, GREY_DEGRADED, "camera sends colour again"),
        ):
            now = watch.update(image)
            if now is None:
                continue
            changed = True
            if now:
                log.warning("%s", why)
                self.degraded.append(why)
            else:
                log.info("%s", back)
                self.degraded = [x for x in self.degraded if x != why]
        if changed:
            self.publisher.set_status(self.status_payload("online", camera=self.camera))

    def _check_face_size(self, t: float, faces: List[Face]) -> None:
        """Faces the detector is sure of but drops as too small, and none big enough: a degraded state the control
        room sees (edge.facesize)."""
        if self.size_watch is None:
            return
        big = any(f.det_score >= SURE_SMALL_SCORE for f in faces)
        changed = self.size_watch.update(t, big, getattr(self.detector, "too_small", ()))
        if changed is None:
            return
        self.degraded = [x for x in self.degraded if not x.startswith(FACES_TOO_SMALL)]
        if changed:
            log.warning("%s", self.size_watch.message)
            self.degraded.append(self.size_watch.message)
        else:
            log.info("faces big enough for a verdict again")
        self.publisher.set_status(self.status_payload("online", camera=self.camera))

    def _publish_counts(self, t0: float, t1: float, window: Dict[str, int]) -> None:
        self.publisher.publish(
            "counts",
            messages.counts(
                Counts(t0, t1, dict(window)), site=self.site, device=self.device, labels=self.classifier.labels
            ),
        )

    def _publish_stats(self, now: float, start: float, fps: float, source: FrameSource) -> None:
        camera = source.state if source.state in ("ok", "lost", "starting", "ended") else "ok"
        dropped = self.publisher.spool_dropped_by()
        self.publisher.publish(
            "stats",
            messages.stats(
                site=self.site,
                device=self.device,
                t=now,
                interval_s=self.cfg.stats.interval_s,
                uptime_s=round(now - start, 1),
                fps=round(fps, 2),
                frames=self.frames,
                dropped_frames=int(source.dropped),
                detector_runs=self.detector_runs,
                motion_skipped=self.schedule.skipped,
                rejected_no_face=self.rejected,
                inference_ms=_pct(self.cls_ms),
                detect_ms=_pct(self.det_ms),
                spool_depth=self.publisher.spool_depth(),
                spool_dropped=sum(dropped.values()),
                spool_dropped_events=dropped["events"],
                spool_dropped_counts=dropped["counts"],
                active_tracks=self.tracker.active,
                events=self.events,
                backend=self.backend_name,
                camera=camera,
                rss_mb=rss_mb(),
            ),
        )
