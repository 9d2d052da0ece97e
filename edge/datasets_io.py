"""Reading images the way every tool here does: any file name (spaces, non-ASCII), any OpenCV format.

A photo is refused before it is decoded when its header says it is larger than `max_pixels`: a small PNG
can declare 20000 x 20000 pixels and take gigabytes once decoded (a decompression bomb).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from .config import IMAGE_EXTS
from .errors import SourceError

MAX_PIXELS = 50_000_000  # 50 Mpx: any camera or phone photo; 20000 x 20000 is 400 Mpx
# OpenCV's own backstop for formats the header reader below does not know (read once, at the first decode)
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(4 * MAX_PIXELS))


def header_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from a PNG, JPEG, GIF, BMP or WebP header, without decoding; None if unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(int(w)), abs(int(h))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if kind == b"VP8L":
            b = int.from_bytes(data[21:25], "little")
            return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return int(w & 0x3FFF), int(h & 0x3FFF)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            seg = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(w), int(h)
            i += 2 + seg
    return None


def image_files(folder: Path) -> List[Path]:
    """The photo files (IMAGE_EXTS, any case) in `folder` and its subfolders, in name order."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def expand_folders(paths) -> List[Path]:
    """Each path as given, a folder replaced by its photo files (image_files); a folder without any stays as it
    is, so that reading it says why (unreadable_reason)."""
    out: List[Path] = []
    for p in map(Path, paths):
        files = image_files(p) if p.is_dir() else []
        out.extend(files or [p])
    return out


def unreadable_reason(path: Path) -> str:
    """Why `path` gave no image, for a one-line error: missing, a folder, empty, or not decodable."""
    if not path.exists():
        return "%s: no such file" % path
    if path.is_dir():
        return "%s is a folder without photo files (%s) in it or below it" % (path, " ".join(IMAGE_EXTS))
    try:
        if path.stat().st_size == 0:
            return "%s is empty (0 bytes)" % path
    except OSError as exc:
        return "%s cannot be read (%s)" % (path, exc.strerror or exc)
    return "%s is not a readable image (not a format OpenCV decodes, or a damaged file)" % path


def read_image(path: Path, max_pixels: Optional[int] = MAX_PIXELS) -> Optional[np.ndarray]:
    """BGR uint8 image, or None when the file is missing or not a decodable image. Raises SourceError when the
    header declares more than `max_pixels` pixels (None: no limit but OpenCV's own)."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    size = header_size(data[:65536].tobytes())
    if max_pixels and size is not None and size[0] * size[1] > max_pixels:
        raise SourceError(
            "%s is %d x %d = %.0f Mpx, above the limit of %.0f Mpx (--max-pixels): not decoded"
            % (path, size[0], size[1], size[0] * size[1] / 1e6, max_pixels / 1e6)
        )
    try:
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        return None
