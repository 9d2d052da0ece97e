"""Hostile inputs: decompression bombs and huge photos are refused or bounded, in one line, without the memory."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np

from conftest import BIN


def png_bomb(path: Path, side: int = 20000) -> Path:
    """A real, valid 1-bit greyscale PNG of side x side pixels: ~60 KB on disk, 1.2 GB once decoded to BGR."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )
    return path


def run_measured(args):
    """Run a console script in a fresh process and return (CompletedProcess, peak RSS of the child in MB)."""
    code = (
        "import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "print(json.dumps({'rc': r.returncode, 'err': r.stderr, 'out': r.stdout,"
        "'rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0}))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(BIN / args[0])] + [str(a) for a in args[1:]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads(r.stdout)


def test_header_size_reads_png_jpeg_and_others(tmp_path):
    import cv2

    from edge.datasets_io import header_size

    img = np.zeros((37, 53, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".webp"):
        ok, buf = cv2.imencode(ext, img)
        assert ok
        assert header_size(buf.tobytes()) == (53, 37), ext
    assert header_size(png_bomb(tmp_path / "b.png", 3000).read_bytes()) == (3000, 3000)
    assert header_size(b"not an image") is None


def test_a_png_bomb_is_refused_by_classify_and_scan_without_decoding(tmp_path, detector_dir, shipped_bundle):
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 2_000_000
    for cmd in (["edge-maskd", "classify", bomb], ["edge-maskd", "scan", bomb]):
        r = run_measured(cmd)
        assert r["rc"] != 0
        assert "Traceback" not in r["err"]
        lines = [ln for ln in r["err"].splitlines() if "Mpx" in ln]
        assert len(lines) == 1 and "20000 x 20000" in lines[0] and "--max-pixels" in lines[0], r["err"]
        assert r["rss_mb"] < 800, r["rss_mb"]  # decoding it would take 1,200 MB for the pixels alone


def test_the_pixel_limit_is_configurable(tmp_path, shipped_bundle):
    import cv2

    p = tmp_path / "face.png"
    cv2.imwrite(str(p), np.full((120, 100, 3), 128, np.uint8))
    r = run_measured(["edge-maskd", "classify", "--max-pixels", 10000, p])
    assert r["rc"] != 0 and "100 x 120" in r["err"]
    r = run_measured(["edge-maskd", "classify", "--max-pixels", 20000, p])
    assert r["rc"] == 0, r["err"]


def test_tiled_work_is_bounded_on_a_huge_photo(detector_dir):
    """Tiles grow with the area: a 7,500 x 6,000 photo at 200 + 100 px tiles would be ~6,000 passes; it is tiled
    at the detector's max_side instead (the same passes as a 1920 px photo)."""
    from edge.detector import DetectorOptions, load_detector

    det = load_detector(detector_dir, DetectorOptions(mode="tiles", tile_sizes=(200, 100), min_face_px=0))
    big = np.zeros((6000, 7500, 3), np.uint8)
    calls = []
    real = det.infer
    det.infer = lambda blob: (calls.append(1), real(blob))[1]
    det.detect(big)
    unbounded = len(det.windows(big.shape))
    bounded = len(det.windows((1536, 1920, 3)))
    assert unbounded > 3000
    assert len(calls) == bounded, (len(calls), bounded, unbounded)
