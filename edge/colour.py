"""Does the camera send colour? A kiosk camera in monochrome, or one that switched to infrared for the night,
sends grey frames; the classifier was trained and chosen on colour faces and is measured much weaker on grey
ones (README, "A grey camera"). The daemon says so in its status (`degraded`), where the control room sees it,
instead of sending verdicts that look as sure as by day.

A frame is grey when its pixels have (almost) no colour of their own: on a small copy, each pixel's colour
differences (blue - green, red - green) less the frame's mean difference, averaged. Taking the mean out ignores
a uniform tint, which a grey stream decoded by a lossy codec often shows (the demo entrance in grey through mp4v
decodes about 3 levels blue), while a colour scene's colours differ from pixel to pixel. The threshold sits
between real photos and their grey copies through JPEG and mp4v, measured by benchmarks/colour_check.py
(benchmarks/results/colour-check.json); the demo's plain synthetic entrance, the least colourful colour scene
seen, scores about 3. A tint that grows with brightness (some infrared lamps) is not removed and passes for
colour. The state changes only after `need` checks in a row agree, so one odd frame does not flip it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

GREY_DEGRADED = "camera sends grey frames (monochrome or infrared): verdicts are less reliable than in colour"


def chroma(image_bgr: np.ndarray, width: int = 64) -> float:
    """How much colour a frame holds beyond a uniform tint: mean |(b-g) - mean(b-g)| + |(r-g) - mean(r-g)| on a
    `width`-wide copy, in grey levels; 0 for a grey frame, tinted or not."""
    import cv2

    if image_bgr.ndim == 2 or image_bgr.shape[2] == 1:
        return 0.0
    h, w = image_bgr.shape[:2]
    small = cv2.resize(image_bgr, (width, max(1, int(h * width / float(w)))), interpolation=cv2.INTER_AREA)
    s = small.astype(np.float32)
    bg, rg = s[..., 0] - s[..., 1], s[..., 2] - s[..., 1]
    return float(np.mean(np.abs(bg - bg.mean()) + np.abs(rg - rg.mean())))


class GreyWatch:
    """Checks every `every`-th frame; `update` returns True when the camera turned grey, False when it is back
    to colour, None while nothing changed."""

    def __init__(self, every: int = 25, need: int = 4, max_chroma: float = 2.0) -> None:
        self.every, self.need, self.max_chroma = max(1, every), max(1, need), max_chroma
        self.grey = False
        self.seen = 0
        self.streak = 0  # checks in a row that disagree with the current state

    def update(self, image_bgr: np.ndarray) -> Optional[bool]:
        self.seen += 1
        if (self.seen - 1) % self.every:
            return None
        looks_grey = chroma(image_bgr) <= self.max_chroma
        if looks_grey == self.grey:
            self.streak = 0
            return None
        self.streak += 1
        if self.streak < self.need:
            return None
        self.grey, self.streak = looks_grey, 0
        return self.grey
