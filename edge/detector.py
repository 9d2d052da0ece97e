"""OpenCV DNN res10 SSD face detector (Caffe), in the OpenCV-zoo manner.

`preprocess` -> `infer` -> `postprocess`, nothing hidden. The network was trained
at 300x300; faces of 15-40 px in a wide entrance view vanish at that size, so
besides the fast `single` pass it can run at the frame's own resolution
(`native`, optionally upscaled) or on overlapping `tiles`, merging with NMS.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .config import DETECTOR_MODES, TILED_MODES, DetectorConfig
from .errors import AssetError, BundleError
from .types import Box, Face, clamp_box, share_inside

log = logging.getLogger(__name__)

MEAN_BGR = (104.0, 177.0, 123.0)
MODES = DETECTOR_MODES


_D = DetectorConfig()  # the config's defaults are the detector's: one source
SURE_SMALL_SCORE = 0.5  # a face dropped as too small is reported (too_small) from this score: res10 scores the demo
# visitor shrunk to 23-29 px 0.9-0.99 at the kiosk setting
AUTO_SURE_SCORE = 0.5  # mode auto: the native pass's faces that decide whether the tiles run
AUTO_TILE_MAX_SIDE = (
    1024  # mode auto: the tile passes run on the photo scaled to at most this (measured photos: <= 640)
)


@dataclass
class DetectorOptions:
    """What the detector needs; defaults are detector.* of the kiosk config (edge/config.py)."""

    confidence: float = _D.confidence
    mode: str = _D.mode  # single | native | tiles | auto
    input_size: int = _D.input_size  # single pass: the frame is resized to this square
    upscale: float = _D.upscale  # native: frame scaled by this before the pass (sides rounded to 32)
    flip: bool = _D.flip  # every pass also on the mirrored frame, boxes mirrored back, merged by NMS
    whole_pass: bool = _D.whole_pass  # native/auto: the whole frame at input_size too (faces too big for native)
    whole_pass_min_px: int = _D.whole_pass_min_px  # ... keeping its boxes from this size up
    max_side: int = 1920  # native and tiles: cap on the longest side the passes see, to bound memory and time
    tile_size: int = _D.tile_size  # tiles: square tiles of this many frame pixels, each run at 300x300
    tile_sizes: Sequence[int] = ()  # tiles: several tile sizes (a pyramid, e.g. 200 and 100); overrides tile_size
    tile_overlap: float = _D.tile_overlap
    tile_max_face: float = _D.tile_max_face  # in a magnified tile, keep faces up to this fraction of its side
    nms_iou: float = 0.4
    nms_containment: float = _D.nms_containment  # overlap / smaller box area above this: the same face
    nms_own_share: float = _D.nms_own_share  # overlap / the weaker box's own area above this: the same face
    nms_decay: bool = _D.nms_decay  # after NMS, weak boxes' scores decay by their overlap with stronger ones
    min_face_px: int = _D.min_face_px  # drop faces smaller than this (shorter side, frame pixels)
    auto_tiles_below_px: int = _D.auto_tiles_below_px  # auto: tiles too when a sure face is smaller than this
    max_aspect: float = _D.max_aspect  # drop boxes taller than this x their width (unless cut by the frame edge)
    backend: str = _D.backend  # a plugin in edge/detectors/ (see DETECTOR_BACKENDS)
    precision: str = _D.precision  # litert: fp32 | int8 (the converted file of that precision and input size)
    converted_dir: Optional[str] = _D.converted_dir  # where the converted res10 files and their manifest are
    threads: int = 2
    onnx_providers: Sequence[str] = ()
    engine: Optional[str] = _D.engine  # tensorrt: the engine file
    edgetpu_device: Optional[str] = None
    fallback: bool = _D.fallback_to_cpu  # a missing runtime/accelerator falls back to opencv on the CPU (reported)

    @classmethod
    def from_config(cls, d: DetectorConfig, **kw: Any) -> "DetectorOptions":
        return cls(
            confidence=d.confidence,
            mode=d.mode,
            input_size=d.input_size,
            upscale=d.upscale,
            flip=d.flip,
            whole_pass=d.whole_pass,
            whole_pass_min_px=d.whole_pass_min_px,
            tile_size=d.tile_size,
            tile_sizes=tuple(d.tile_sizes or ()),
            tile_overlap=d.tile_overlap,
            tile_max_face=d.tile_max_face,
            min_face_px=d.min_face_px,
            auto_tiles_below_px=d.auto_tiles_below_px,
            nms_containment=d.nms_containment,
            nms_own_share=d.nms_own_share,
            nms_decay=d.nms_decay,
            max_aspect=d.max_aspect,
            backend=d.backend,
            precision=d.precision,
            converted_dir=d.converted_dir,
            engine=d.engine,
            fallback=d.fallback_to_cpu,
            **kw,
        )


class FaceDetector:
    def __init__(self, prototxt: Path, weights: Path, options: Optional[DetectorOptions] = None) -> None:
        import cv2  # the device-side dependency; imported here so `--help` works without it

        from . import detectors
        from .backends import BackendUnavailable
        from .detector_bundle import find_dir

        self.cv2 = cv2
        self.opt = options or DetectorOptions()
        if self.opt.mode not in MODES:
            raise ValueError("detector mode must be one of %s" % ", ".join(MODES))
        o = self.opt
        files = detectors.DetectorFiles(
            prototxt, weights, find_dir(weights, Path(o.converted_dir) if o.converted_dir else None)
        )
        plugin_opts = {
            "precision": o.precision,
            "threads": o.threads,
            "providers": list(o.onnx_providers),
            "engine": o.engine,
            "device": o.edgetpu_device,
        }
        self.degraded: Optional[str] = None
        # the last detect()'s sure faces (score >= SURE_SMALL_SCORE) dropped as smaller than min_face_px: their
        # shorter sides in frame pixels, for the daemon's "faces too small" status (edge.facesize)
        self.too_small: List[int] = []
        try:
            self.net = detectors.create(o.backend, files, plugin_opts)
            if o.mode == "single" or o.mode in TILED_MODES or o.whole_pass:  # passes at input_size: load now, fail now
                self.net.prepare(o.input_size, o.input_size)
        except (BackendUnavailable, BundleError, AssetError) as exc:
            if not o.fallback or detectors.ALIASES.get(o.backend, o.backend) == "opencv":
                if not isinstance(exc, (BundleError, AssetError)):
                    raise AssetError("detector.backend %s is not usable here: %s" % (o.backend, exc))
                raise
            self.degraded = "detector.backend %s unavailable (%s); running opencv on the CPU" % (o.backend, exc)
            log.warning("%s", self.degraded)
            self.net = detectors.create("opencv", files, plugin_opts)
        self.backend_in_use = self.net.describe()

    # -- the three stages ---------------------------------------------------------------------------
    def windows(self, shape: Tuple[int, ...], mode: Optional[str] = None) -> List[Tuple[int, int, int, int, int, int]]:
        """The passes to run for a frame: (x0, y0, x1, y1, in_w, in_h) regions of the frame and their net input size.
        `mode` (default: the detector's; auto starts with the native pass, `detect` adds the tiles when needed)."""
        h, w = shape[:2]
        o = self.opt
        mode = mode or o.mode
        if mode == "single":
            return [(0, 0, w, h, o.input_size, o.input_size)]
        if mode in ("native", "auto"):
            s = o.upscale
            if max(w, h) * s > o.max_side:
                s = o.max_side / float(max(w, h))
            iw, ih = max(32, int(round(w * s / 32.0)) * 32), max(32, int(round(h * s / 32.0)) * 32)
            return [(0, 0, w, h, iw, ih)]
        # tiles: the whole frame once (large faces) plus overlapping tiles (small faces), per tile size
        out = [(0, 0, w, h, o.input_size, o.input_size)]
        for size in sorted(set(o.tile_sizes or (o.tile_size,)), reverse=True):
            t = min(size, w, h)
            step = max(1, int(t * (1.0 - o.tile_overlap)))
            ys = list(range(0, max(1, h - t + 1), step))
            xs = list(range(0, max(1, w - t + 1), step))
            if ys[-1] + t < h:
                ys.append(h - t)
            if xs[-1] + t < w:
                xs.append(w - t)
            out += [(x, y, x + t, y + t, o.input_size, o.input_size) for y in ys for x in xs]
        return out

    def whole_window(
        self, shape: Tuple[int, ...], wins: Optional[List[Tuple[int, int, int, int, int, int]]] = None
    ) -> Optional[Tuple[int, int, int, int, int, int]]:
        """detector.whole_pass (modes native and auto): one more pass of the whole frame at input_size, unless the
        native pass (`wins`, this frame's windows when the caller has them) already runs at that size."""
        o = self.opt
        if not o.whole_pass or o.mode not in ("native", "auto"):
            return None
        h, w = shape[:2]
        whole = (0, 0, w, h, o.input_size, o.input_size)
        return None if (self.windows(shape) if wins is None else wins)[0] == whole else whole

    def preprocess(self, image: np.ndarray, window: Tuple[int, int, int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1, iw, ih = window
        region = image[y0:y1, x0:x1]
        return self.cv2.dnn.blobFromImage(region, 1.0, (iw, ih), MEAN_BGR, swapRB=False, crop=False)

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """The network on its runtime plugin: (1, 1, K, 7) detections, as cv2.dnn gives them."""
        return self.net.forward(blob, self.opt.confidence)

    def postprocess(
        self, raw: np.ndarray, window: Tuple[int, int, int, int, int, int], frame_shape: Tuple[int, ...]
    ) -> List[Tuple[Box, float]]:
        x0, y0, x1, y1 = window[:4]
        rw, rh = x1 - x0, y1 - y0
        h, w = frame_shape[:2]
        dets = raw.reshape(-1, 7)
        dets = dets[dets[:, 2] >= self.opt.confidence]
        out = []
        # a face cut by an inner tile edge is seen whole by the overlapping neighbour tile: drop the cut one
        # (else its partial box can win NMS and count as a miss plus a false alarm)
        tile = self.opt.mode in TILED_MODES and (rw, rh) != (w, h)
        max_face = self.opt.tile_max_face * min(rw, rh) if tile and min(rw, rh) < window[4] else None
        for d in dets:
            bx1, by1, bx2, by2 = np.clip(d[3:7], 0.0, 1.0)
            if tile and (
                (bx1 <= 0.01 and x0 > 0)
                or (by1 <= 0.01 and y0 > 0)
                or (bx2 >= 0.99 and x1 < w)
                or (by2 >= 0.99 and y1 < h)
            ):
                continue
            box = clamp_box((int(x0 + bx1 * rw), int(y0 + by1 * rh), int(x0 + bx2 * rw), int(y0 + by2 * rh)), w, h)
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            if min(box[2] - box[0], box[3] - box[1]) < self.opt.min_face_px:
                inside = box[0] > 0.02 * w and box[2] < 0.98 * w and box[1] > 0.02 * h and box[3] < 0.98 * h
                if d[2] >= SURE_SMALL_SCORE and inside:  # a face cut by the frame's edge is narrow, not small
                    self.too_small.append(min(box[2] - box[0], box[3] - box[1]))
                continue
            cut = box[0] <= 0.02 * w or box[2] >= 0.98 * w
            if box[3] - box[1] > self.opt.max_aspect * (box[2] - box[0]) and not cut:
                # a face is never this tall and narrow: res10's ghost box trailing a moving face, a body, a
                # pole. A face entering by a side edge is narrow only because the frame cuts it: kept
                continue
            if max_face is not None and min(box[2] - box[0], box[3] - box[1]) > max_face:
                continue
            out.append((box, float(d[2])))
        return out

    # -- convenience ---------------------------------------------------------------------------------
    def detect(self, image: np.ndarray, roi: Optional[Box] = None) -> List[Face]:
        """All faces in `image` (optionally only inside `roi`), highest score first."""
        self.too_small = []
        if roi is not None:
            rx1, ry1, rx2, ry2 = roi
            return [
                Face(box=(f.box[0] + rx1, f.box[1] + ry1, f.box[2] + rx1, f.box[3] + ry1), det_score=f.det_score)
                for f in self.detect(image[ry1:ry2, rx1:rx2])
            ]
        h, w = image.shape[:2]
        if self.opt.mode in TILED_MODES and max(h, w) > self.opt.max_side:
            # bound the tiled work: the number of tiles grows with the area (a 20000 px photo would be ~40,000
            # passes); frames above max_side are tiled at max_side and the boxes mapped back
            small, s = self._shrunk(image, self.opt.max_side)
            faces = [Face(box=unscale(f.box, s, w, h), det_score=f.det_score) for f in self.detect(small)]
            self.too_small = [int(round(px / s)) for px in self.too_small]
            return faces
        wins = self.windows(image.shape)
        found = self._passes(image, wins)
        whole = self.whole_window(image.shape, wins)
        below: List[Tuple[Box, float]] = []  # the whole pass's boxes under its floor
        if whole is not None:
            # res10's own scale, for the faces too big for the native pass (a visitor close to the camera); only
            # its big boxes are kept: the native pass sees the smaller faces better
            for b, sc in self._passes(image, [whole]):
                (found if min(b[2] - b[0], b[3] - b[1]) >= self.opt.whole_pass_min_px else below).append((b, sc))
            wins = wins + [whole]
        if self.opt.mode == "auto" and self.wants_tiles(found):
            # the tiles look for faces small next to the photo, on a copy of at most AUTO_TILE_MAX_SIDE px (a
            # faceless 12-megapixel photo would otherwise cost ~600 tile passes); boxes are mapped back
            view, s = self._shrunk(image, AUTO_TILE_MAX_SIDE)
            tiles = self.windows(view.shape, "tiles")
            if whole is not None and tiles[0] == whole:
                # the tiles' own whole-frame pass is the whole pass just run: its boxes under the floor count now
                tiles, found = tiles[1:], found + below
            found += [(unscale(b, s, w, h), sc) for b, sc in self._passes(view, tiles)]
            wins = wins + tiles
        passes = len(wins) * (2 if self.opt.flip else 1)
        found = nms(found, self.opt.nms_iou if passes > 1 else 0.6, self.opt.nms_containment, self.opt.nms_own_share)
        if self.opt.nms_decay:
            found = decay(found, self.opt.confidence)
        return [Face(box=b, det_score=s) for b, s in found]

    def _passes(
        self, image: np.ndarray, wins: Sequence[Tuple[int, int, int, int, int, int]]
    ) -> List[Tuple[Box, float]]:
        """The boxes of these passes over `image` (and its mirror image, with flip), in frame coordinates."""
        w = image.shape[1]
        found: List[Tuple[Box, float]] = []
        for win in wins:
            found.extend(self.postprocess(self.infer(self.preprocess(image, win)), win, image.shape))
        if self.opt.flip:
            # the same passes on the mirror image, boxes mirrored back: res10 is not symmetric, and finds
            # some masked faces only one way round
            mirror = self.cv2.flip(image, 1)
            for win in wins:
                for (x1, y1, x2, y2), sc in self.postprocess(
                    self.infer(self.preprocess(mirror, win)), win, image.shape
                ):
                    found.append(((w - x2, y1, w - x1, y2), sc))
        return found

    def _shrunk(self, image: np.ndarray, side: int) -> Tuple[np.ndarray, float]:
        """`image` scaled down so that its longer side is at most `side` (as it is when it already is), and the
        scale (unscale maps boxes back)."""
        h, w = image.shape[:2]
        s = min(1.0, side / float(max(h, w)))
        if s == 1.0:
            return image, 1.0
        return self.cv2.resize(image, (max(1, int(w * s)), max(1, int(h * s))), interpolation=self.cv2.INTER_AREA), s

    def wants_tiles(self, native: Sequence[Tuple[Box, float]]) -> bool:
        """Mode auto: after the native pass, are the tile passes worth their time? Yes when the faces res10 is
        sure of (score >= AUTO_SURE_SCORE) include a small one (shorter side below auto_tiles_below_px: a crowd,
        a wide view, where the tiles find the faces too small for one pass), or when there is no such face."""
        sure = [b for b, sc in native if sc >= AUTO_SURE_SCORE]
        return not sure or any(min(b[2] - b[0], b[3] - b[1]) < self.opt.auto_tiles_below_px for b in sure)


def unscale(box: Box, s: float, width: int, height: int) -> Box:
    """A box found on a copy scaled by `s`, in the frame of `width` x `height` it was scaled from."""
    x1, y1, x2, y2 = box
    return clamp_box((int(round(x1 / s)), int(round(y1 / s)), int(round(x2 / s)), int(round(y2 / s))), width, height)


def nms(
    dets: Sequence[Tuple[Box, float]], iou_thr: float, containment: float = 0.8, own_share: float = 1.0
) -> List[Tuple[Box, float]]:
    """Greedy non-maximum suppression by IoU, and by overlap over the smaller box's area (`containment`):
    a box mostly inside a higher-scoring one, or mostly covering it, is part of the same face (tile seams;
    res10's low-score boxes of half a face, or of a face with its neighbourhood). `own_share` < 1 also merges
    a box with more than that share of its *own* area on a kept, higher-scoring box: an offset half-face box,
    30-60 % on the face, below `containment` (0.8), while a weaker box larger than the face it overlaps (a
    neighbour's face, a head and shoulders) shares little of itself and is left to `containment`."""
    order = sorted(dets, key=lambda d: -d[1])
    kept: List[Tuple[Box, float]] = []
    for box, score in order:
        ok = True
        for kb, _ in kept:
            ix = max(0, min(box[2], kb[2]) - max(box[0], kb[0]))
            iy = max(0, min(box[3], kb[3]) - max(box[1], kb[1]))
            inter = ix * iy
            if inter == 0:
                continue
            a = (box[2] - box[0]) * (box[3] - box[1])
            b = (kb[2] - kb[0]) * (kb[3] - kb[1])
            if (
                inter / float(a + b - inter) > iou_thr
                or inter / float(min(a, b)) > containment
                or inter / float(a) > own_share
            ):
                ok = False
                break
        if ok:
            kept.append((box, score))
    return kept


def decay(dets: Sequence[Tuple[Box, float]], floor: float) -> List[Tuple[Box, float]]:
    """detector.nms_decay: Soft-NMS in its linear form (Bodla et al. 2017), with the overlap measured over the
    smaller box. Boxes are taken in order of their current score; every box not yet taken has its score
    multiplied by (1 - their overlap over the smaller box) with the box just taken; a box under `floor` is dropped. A weak box beside
    a face res10 is sure of (its half-face and head boxes, 40-70 % on the face's box) sinks under the floor, a
    strong one stays; boxes that do not touch keep their scores. Highest (decayed) score first."""
    left = list(dets)
    out: List[Tuple[Box, float]] = []
    while left:
        i = max(range(len(left)), key=lambda k: left[k][1])
        box, score = left.pop(i)
        if score < floor:
            break  # the best one left is under the floor: so are the rest
        out.append((box, score))
        # the intersection over the smaller box's area (nms_containment's measure): the larger of the two shares
        left = [(b, s * (1.0 - max(share_inside(b, box), share_inside(box, b)))) for b, s in left]
    return out


# The rules of the res10 passes that cut training data (edge-export prepare, box-fit, extend), kept apart from
# the kiosk config's defaults: the crops, and so the split under the shipped runs, must not move when a device
# rule does. detector.max_aspect (session 13, default 2.2) dropped 63 of prepare's no_face boxes and
# restore_members refused the recomputed split; these are the rules the shipped split was cut with (no aspect rule).
DATA_RULES: Dict[str, Any] = {
    "input_size": 300,
    "upscale": 1.0,
    "flip": False,
    "whole_pass": False,
    "tile_size": 300,
    "tile_overlap": 0.25,
    "tile_max_face": 0.25,
    "nms_iou": 0.4,
    "nms_containment": 0.8,
    "nms_own_share": 1.0,
    "nms_decay": False,
    "max_aspect": math.inf,
}
PHOTO_FACE_CONFIDENCE = 0.5  # a photo of one person: its face is res10's best box at this score or more


def photo_face_options(**kw: Any) -> DetectorOptions:
    """res10 as it found the face in each photo of the folder-per-class training sets (one 300x300 pass, every
    box kept, the data rules): `edge-maskd classify --find-face` finds a photo's face the same way (edge.crop.photo_face)."""
    base: Dict[str, Any] = {"confidence": PHOTO_FACE_CONFIDENCE, "mode": "single", "min_face_px": 0}
    return DetectorOptions(**{**DATA_RULES, **base, **kw})


def load_detector(model_dir: Optional[Path] = None, options: Optional[DetectorOptions] = None) -> FaceDetector:
    from .assets import detector_paths

    proto, weights = detector_paths(model_dir)
    return FaceDetector(proto, weights, options)
