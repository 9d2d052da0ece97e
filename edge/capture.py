"""Frame sources: video file, camera index, V4L2 device, RTSP/HTTP URL, GStreamer pipeline, Jetson CSI.

Live sources are read on their own thread that keeps only the newest frame, so
the pipeline never works on a stale picture (latency stays bounded; skipped
frames are counted). When a camera is lost the reader reconnects with
exponential backoff and reports the outage through `state`. A file source is
read frame by frame (deterministic replay) and ends cleanly.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

from .config import is_still_photo
from .errors import SourceError
from .types import Frame

log = logging.getLogger(__name__)


def csi_pipeline(width: int = 1280, height: int = 720, fps: int = 30, sensor_id: int = 0) -> str:
    """GStreamer pipeline for a Jetson CSI camera (needs JetPack's OpenCV, built with GStreamer)."""
    return (
        "nvarguscamerasrc sensor-id=%d ! video/x-raw(memory:NVMM), width=%d, height=%d, framerate=%d/1 ! "
        "nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! appsink drop=1 "
        "max-buffers=1" % (sensor_id, width, height, fps)
    )


def classify_source(url: Union[str, int], kind: str = "auto") -> str:
    if kind != "auto":
        return kind
    if isinstance(url, int) or (isinstance(url, str) and url.isdigit()):
        return "camera"
    s = str(url)
    if s.startswith("/dev/video"):
        return "v4l2"
    if s.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if s.startswith(("http://", "https://")):
        return "http"
    if "!" in s:
        return "gstreamer"
    if s == "csi" or s.startswith("csi:"):
        return "csi"
    return "file"


class FrameSource:
    def __init__(
        self,
        url: Union[str, int],
        kind: str = "auto",
        *,
        width: Optional[int] = None,
        height: Optional[int] = None,
        fps: Optional[float] = None,
        loop: bool = False,
        realtime: bool = False,
        drop_late: bool = False,
        reconnect_initial_s: float = 1.0,
        reconnect_max_s: float = 30.0,
        max_frames: Optional[int] = None,
    ) -> None:
        import cv2

        self.cv2 = cv2
        self.url = url
        self.kind = classify_source(url, kind)
        self.width, self.height, self.fps = width, height, fps
        self.loop, self.realtime, self.drop_late = loop, realtime, drop_late
        self.backoff0, self.backoff_max = reconnect_initial_s, reconnect_max_s
        self.max_frames = max_frames
        self.live = self.kind not in ("file",)
        self.cap: Any = None
        self.state = "starting"
        self.index = 0
        self.dropped = 0
        self.outages = 0
        self.reconnects = 0
        self.attempts = 0
        self.lost_since = self.last_log = 0.0
        self._latest: Optional[Frame] = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._t0 = 0.0
        self.name = str(url)

    # -- opening ----------------------------------------------------------------------------------------
    def _open_capture(self):
        cv2 = self.cv2
        if self.kind == "camera":
            cap = cv2.VideoCapture(int(self.url))
        elif self.kind == "v4l2":
            cap = cv2.VideoCapture(str(self.url), cv2.CAP_V4L2)
        elif self.kind in ("rtsp", "http"):
            cap = cv2.VideoCapture(str(self.url), cv2.CAP_FFMPEG)
        elif self.kind == "gstreamer":
            cap = cv2.VideoCapture(str(self.url), cv2.CAP_GSTREAMER)
        elif self.kind == "csi":
            sensor = int(str(self.url).split(":", 1)[1]) if ":" in str(self.url) else 0
            cap = cv2.VideoCapture(
                csi_pipeline(self.width or 1280, self.height or 720, int(self.fps or 30), sensor), cv2.CAP_GSTREAMER
            )
        else:
            cap = cv2.VideoCapture(str(self.url))
        if self.kind in ("camera", "v4l2"):
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
        return cap

    def open(self) -> "FrameSource":
        if self.kind == "file":
            p = Path(str(self.url))
            if not p.exists():
                raise SourceError("video file %s not found" % p)
            if is_still_photo(str(p)):  # OpenCV opens it as a one-frame sequence that then reads nothing
                raise SourceError(
                    "%s is a still photo: source.url takes a camera, a stream or a video file; for photos run "
                    "`edge-maskd scan %s` (or `classify` for face crops)" % (p, p)
                )
            cap = self._open_capture()
            ok, frame = cap.read() if cap.isOpened() else (False, None)
            if not ok or frame is None:
                cap.release()
                raise SourceError("video file %s cannot be read as video (wrong format or corrupt)" % p)
            cap.set(self.cv2.CAP_PROP_POS_FRAMES, 0)
            self.cap = cap
            self.file_fps = cap.get(self.cv2.CAP_PROP_FPS) or 25.0
            self.state = "ok"
            self._t0 = time.monotonic()
            return self
        self._thread = threading.Thread(target=self._reader, name="capture", daemon=True)
        self._thread.start()
        return self

    # -- live: newest-frame reader with reconnect -----------------------------------------------------
    def _reader(self) -> None:
        delay = self.backoff0
        while not self._stop.is_set():
            cap = self._open_capture()
            if not cap.isOpened():
                cap.release()
                self._lost("cannot open %s" % self.name, delay)
                delay = min(self.backoff_max, delay * 2)
                continue
            if self.state != "ok":
                if self.state == "lost":
                    self.reconnects += 1
                    log.info("camera %s is back after %d attempt(s)", self.name, self.reconnects)
                self.state = "ok"
            delay = self.backoff0
            self.cap = cap
            while not self._stop.is_set():
                ok, img = cap.read()
                if not ok or img is None:
                    break
                with self._cond:
                    if self._latest is not None:
                        self.dropped += 1  # the pipeline did not take the previous one: it is stale now
                    self._latest = Frame(image=img, index=self.index, time=time.time(), source=self.name)
                    self.index += 1
                    self._cond.notify_all()
            cap.release()
            if not self._stop.is_set():
                self._lost("no frames from %s" % self.name, delay)
                delay = min(self.backoff_max, delay * 2)

    def _lost(self, why: str, delay: float) -> None:
        now = time.monotonic()
        self.attempts += 1
        if self.state != "lost":
            self.outages += 1
            self.lost_since = self.last_log = now
            self.attempts = 1
            log.warning("camera lost: %s; reconnecting with backoff (next try in %.1f s)", why, delay)
        elif now - self.last_log >= 60.0:  # one line a minute while it stays lost, not one per attempt
            self.last_log = now
            log.warning(
                "camera still lost after %.0f s and %d reconnect attempts: %s",
                now - self.lost_since,
                self.attempts,
                why,
            )
        self.state = "lost"
        self._stop.wait(delay)

    # -- reading ----------------------------------------------------------------------------------------
    def read(self, timeout: float = 1.0) -> Optional[Frame]:
        """Next frame; None at the end of a file. Live sources return None only on timeout (check `state`)."""
        if self.max_frames is not None and self.index >= self.max_frames and (not self.live or self._latest is None):
            self.state = "ended"
            return None
        if not self.live:
            return self._read_file()
        with self._cond:
            if self._latest is None:
                self._cond.wait(timeout)
            frame, self._latest = self._latest, None
        if frame is not None and self.max_frames is not None and frame.index >= self.max_frames:
            self.state = "ended"
            return None
        return frame

    def _read_file(self) -> Optional[Frame]:
        cv2 = self.cv2
        if self.realtime:
            # play at the clip's frame rate: a frame is not there before its time; with drop_late the
            # frames a slow pipeline would have missed are skipped (and counted), as with a camera
            ahead = self._t0 + self.index / self.file_fps - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            due = int((time.monotonic() - self._t0) * self.file_fps) if self.drop_late else 0
            while self.index < due:
                if not self.cap.grab():
                    break
                self.index += 1
                self.dropped += 1
        ok, img = self.cap.read()
        if not ok or img is None:
            if self.loop and self.index > 0:
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                self._t0 = time.monotonic()
                ok, img = self.cap.read()
            if not ok or img is None:
                self.state = "ended"
                return None
        frame = Frame(image=img, index=self.index, time=time.time(), source=self.name)
        self.index += 1
        return frame

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=3.0)
        if self.cap is not None and not self.live:
            self.cap.release()
