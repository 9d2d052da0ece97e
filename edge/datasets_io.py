"""Reading images the way every tool here does: any file name (spaces, non-ASCII), any OpenCV format."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np


def read_image(path: Path) -> Optional[np.ndarray]:
    """BGR uint8 image, or None when the file is missing or not a decodable image."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)
