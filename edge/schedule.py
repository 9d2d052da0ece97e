"""The detection schedule: between capture and the detector, it decides which frames the detector sees.

The detector is about 90 % of a frame's cost; an entrance is empty most of the day. The schedule
combines a Frigate-style motion gate, every-Nth-frame, a sparser stride while only people who
already have a verdict are in view, and a forced detection after `max_idle_frames` still frames.
It never reads the tracker's internals: it asks `Tracker.needs_detection()` ("undecided",
"decided" or "idle"). Someone still waiting for a verdict keeps the detector on every frame,
moving or not, so the gate cannot change who is counted or how.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


class MotionGate:
    """Frigate-style cheap test: did enough of a small grey frame change since the last one?

    The detector is the expensive stage; an entrance is empty most of the day, so most
    frames never reach it. Forced detections every `max_idle_frames` keep tracks honest.
    """

    def __init__(
        self, threshold: int = 25, min_area: float = 0.002, width: int = 160, max_idle_frames: int = 30
    ) -> None:
        self.threshold, self.min_area, self.width, self.max_idle = threshold, min_area, width, max_idle_frames
        self.prev: Optional[np.ndarray] = None
        self.idle = 0
        self.last_moving = True

    def check(self, image_bgr: np.ndarray) -> bool:
        import cv2

        h, w = image_bgr.shape[:2]
        small = cv2.resize(
            image_bgr, (self.width, max(1, int(h * self.width / float(w)))), interpolation=cv2.INTER_AREA
        )
        grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        prev, self.prev = self.prev, grey
        self.last_moving = True
        if prev is None:
            self.idle = 0
            return True
        changed = float(np.mean(cv2.absdiff(grey, prev) > self.threshold))
        if changed >= self.min_area:
            self.idle = 0
            return True
        self.last_moving = False  # a forced detection below is not motion
        self.idle += 1
        if self.idle >= self.max_idle:
            self.idle = 0
            return True
        return False


class DetectionSchedule:
    def __init__(self, every_n: int = 1, motion: Optional[MotionGate] = None, decided_stride: int = 1) -> None:
        self.every_n, self.motion, self.decided_stride = max(1, every_n), motion, max(1, decided_stride)
        self._decided_run = 0
        self.skipped = 0  # frames the motion gate or the decided stride kept from the detector
        self.still = False  # the last frame checked showed no motion (the tracker's clock stands still)

    def should_detect(self, frame_index: int, image_bgr: np.ndarray, tracker_state: str) -> bool:
        """tracker_state: Tracker.needs_detection() of the frame before this one."""
        if self.motion is None:
            return frame_index % self.every_n == 0
        moving = self.motion.check(image_bgr)  # every frame: the reference frame must stay current
        self.still = not self.motion.last_moving
        if tracker_state == "undecided":
            self._decided_run = 0
            return frame_index % self.every_n == 0
        if frame_index % self.every_n != 0:
            return False
        if not moving:
            self.skipped += 1
            return False
        if tracker_state == "decided":
            # everyone in view has a verdict (people walking out): every Nth moving frame follows them;
            # a newcomer is found within that stride and brings back every frame until their verdict
            self._decided_run += 1
            if self._decided_run % self.decided_stride != 0:
                self.skipped += 1
                return False
            return True
        self._decided_run = 0
        return True
