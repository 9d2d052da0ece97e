"""Are the faces at the door big enough for a verdict? A kiosk camera mounted too far from the door, zoomed out
or knocked aside sees visitors whose faces are smaller than `detector.min_face_px`: the detector drops them
before the classifier, the tracker never sees a person, no event is ever sent, and every other sign (frames,
fps, detector runs, the camera) looks healthy. The daemon says so in its status (`degraded`), where the installer
and the control room see it.

The rule, in seconds rather than frames (a camera's fps and the motion gate change how many frames a visit
gives): a second in which the detector was sure of a face (edge.detector.SURE_SMALL_SCORE) that it dropped as
too small counts as a *small second*. After `need` small seconds with no sure face at least `min_face_px` wide in
between, the view is degraded; the first sure face big enough (a visitor who comes close enough) clears it. Small
faces away from the door (a waiting area in view, people across a lobby) raise it too when no visitor comes close
for a while: `detector.roi` then keeps the detector to the doorway, and the message says so.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

FACES_TOO_SMALL = "faces too small for a verdict"


def small_faces_degraded(min_face_px: int, sizes: Sequence[int]) -> str:
    """The status line: how small the faces were, against which setting, and what to do."""
    s = sorted(sizes)
    return (
        "%s: the faces seen are %d-%d px (median %d), under detector.min_face_px %d; move the camera closer to the "
        "door or zoom in (faces away from the door: set detector.roi to the doorway)"
        % (FACES_TOO_SMALL, s[0], s[-1], s[len(s) // 2], min_face_px)
    )


class FaceSizeWatch:
    """`update(t, big, small_sizes)` once per detector run: `big` whether a sure face was kept (at least
    min_face_px), `small_sizes` the shorter sides of the sure faces dropped as too small. Returns True when the
    view turns degraded, False when it recovers, None while nothing changed; `message` is the status line."""

    def __init__(self, min_face_px: int, need: int = 20) -> None:
        self.min_face_px = min_face_px
        self.need = max(1, need)
        self.small = False
        self.message = ""
        self._seconds: List[int] = []  # the small seconds since the last big face (whole seconds of `t`)
        self._sizes: List[int] = []  # one size per small second

    def update(self, t: float, big: bool, small_sizes: Sequence[int]) -> Optional[bool]:
        if big:
            self._seconds, self._sizes = [], []
            if self.small:
                self.small, self.message = False, ""
                return False
            return None
        if not small_sizes:
            return None
        second = int(t)
        if self._seconds and self._seconds[-1] == second:
            return None
        self._seconds.append(second)
        self._sizes.append(max(small_sizes))
        if len(self._seconds) > self.need:
            del self._seconds[0], self._sizes[0]
        if self.small or len(self._seconds) < self.need:
            return None
        self.small, self.message = True, small_faces_degraded(self.min_face_px, self._sizes)
        return True
