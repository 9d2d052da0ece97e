"""A busy doorway from any folder of photos: each photo held about a second under a slow, continuous pan.

Every frame moves (the motion gate can never rest), faces come and go with the photos, and a crowd
photo brings many faces at once: the clip a "never empty" entrance is for the schedule and the
detector. Deterministic for a folder, a seed and a size.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .datasets_io import IMAGE_EXTS, image_files


def photos_in(folder: Path, limit: int, seed: int = 0) -> List[Path]:
    files = image_files(folder)
    if not files:
        raise ValueError("%s: no photos (%s) found" % (folder, ", ".join(IMAGE_EXTS)))
    rng = np.random.RandomState(seed)
    return [files[i] for i in rng.choice(len(files), size=min(limit, len(files)), replace=False)]


def make(
    folder: Path,
    out: Path,
    *,
    photos: int = 20,
    seconds_per_photo: float = 1.0,
    fps: float = 15.0,
    size: Tuple[int, int] = (640, 480),
    pan: float = 0.12,
    seed: int = 0,
    files: Optional[Sequence[Path]] = None,
) -> Path:
    """Write `out` (mp4v): each photo scaled to cover the frame plus `pan` of it, and panned across that margin."""
    import cv2

    from .datasets_io import read_image

    w, h = size
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    if not vw.isOpened():
        raise OSError("cannot write %s" % out)
    n = max(2, int(round(seconds_per_photo * fps)))
    rng = np.random.RandomState(seed)
    try:
        for f in files or photos_in(folder, photos, seed):
            img = read_image(Path(f))
            if img is None:
                continue
            s = max(w * (1 + pan) / img.shape[1], h * (1 + pan) / img.shape[0])
            big = cv2.resize(
                img,
                (int(img.shape[1] * s) + 1, int(img.shape[0] * s) + 1),
                interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
            )
            mx, my = big.shape[1] - w, big.shape[0] - h
            dx, dy = (1 if rng.rand() < 0.5 else -1), (1 if rng.rand() < 0.5 else -1)
            for i in range(n):
                t = i / float(n - 1)
                x = int(round((t if dx > 0 else 1 - t) * mx))
                y = int(round((t if dy > 0 else 1 - t) * my * 0.5))
                vw.write(big[y : y + h, x : x + w])
    finally:
        vw.release()
    return out
