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

Does the camera see anything? A frame whose brighter parts are black (an unlit doorway at night, a covered or
failed lens) holds no face to find; the status says so too, and such a frame counts neither for nor against grey.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

GREY_DEGRADED = "camera sends grey frames (monochrome or infrared): verdicts are less reliable than in colour"
DARK_DEGRADED = (
    "camera sees almost nothing (too dark, or the lens is covered): no face can be found until there is light"
)
# A frame is dark when even its brighter parts are black: the 95th percentile of its luma at most this. The darkest
# real scene photos here (two night crowds of andrewmvd, faces annotated) have a mean luma of 12 but a 95th
# percentile of 66-68; a covered lens or an unlit doorway gives a few levels of sensor noise.
DARK_LEVEL = 20.0


def _small(image_bgr: np.ndarray, width: int = 64) -> np.ndarray:
    import cv2

    h, w = image_bgr.shape[:2]
    return cv2.resize(image_bgr, (width, max(1, int(h * width / float(w)))), interpolation=cv2.INTER_AREA)


def chroma(image_bgr: np.ndarray, width: int = 64) -> float:
    """How much colour a frame holds beyond a uniform tint: mean |(b-g) - mean(b-g)| + |(r-g) - mean(r-g)| on a
    `width`-wide copy, in grey levels; 0 for a grey frame, tinted or not."""
    if image_bgr.ndim == 2 or image_bgr.shape[2] == 1:
        return 0.0
    s = _small(image_bgr, width).astype(np.float32)
    bg, rg = s[..., 0] - s[..., 1], s[..., 2] - s[..., 1]
    return float(np.mean(np.abs(bg - bg.mean()) + np.abs(rg - rg.mean())))


def light(image_bgr: np.ndarray, width: int = 64) -> float:
    """How bright the brighter parts of a frame are: the 95th percentile of its luma on a `width`-wide copy."""
    import cv2

    s = _small(image_bgr, width)
    y = s if s.ndim == 2 else cv2.cvtColor(s, cv2.COLOR_BGR2GRAY)
    return float(np.percentile(y, 95))


class FrameWatch:
    """A state of the camera's picture, checked every `every`-th frame; `update` returns True when it sets in,
    False when it ends, None while nothing changed. It changes only after `need` checks in a row agree; a check
    that can tell nothing (`looks` gives None) neither counts nor breaks the run."""

    def __init__(self, every: int = 25, need: int = 4) -> None:
        self.every, self.need = max(1, every), max(1, need)
        self.on = False
        self.seen = 0
        self.streak = 0  # checks in a row that disagree with the current state

    def looks(self, image_bgr: np.ndarray) -> Optional[bool]:
        raise NotImplementedError

    def update(self, image_bgr: np.ndarray) -> Optional[bool]:
        self.seen += 1
        if (self.seen - 1) % self.every:
            return None
        looks = self.looks(image_bgr)
        if looks is None:
            return None
        if looks == self.on:
            self.streak = 0
            return None
        self.streak += 1
        if self.streak < self.need:
            return None
        self.on, self.streak = looks, 0
        return self.on


class GreyWatch(FrameWatch):
    """The camera sends grey frames. A dark frame tells nothing about colour (DarkWatch says that instead)."""

    def __init__(self, every: int = 25, need: int = 4, max_chroma: float = 2.0) -> None:
        super().__init__(every, need)
        self.max_chroma = max_chroma

    @property
    def grey(self) -> bool:
        return self.on

    def looks(self, image_bgr: np.ndarray) -> Optional[bool]:
        if light(image_bgr) <= DARK_LEVEL:
            return None
        return chroma(image_bgr) <= self.max_chroma


class DarkWatch(FrameWatch):
    """The camera sees almost nothing: an unlit doorway, a covered or failed lens."""

    def __init__(self, every: int = 25, need: int = 4, max_level: float = DARK_LEVEL) -> None:
        super().__init__(every, need)
        self.max_level = max_level

    def looks(self, image_bgr: np.ndarray) -> Optional[bool]:
        return light(image_bgr) <= self.max_level
