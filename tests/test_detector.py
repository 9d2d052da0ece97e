"""The res10 detector stage: multi-scale windows, tile-seam handling, NMS; and a real pass on a real face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.config import build
from edge.detector import DetectorOptions, FaceDetector, nms
from edge.errors import ConfigError


def detector(detector_dir, **kw) -> FaceDetector:
    return FaceDetector(
        detector_dir / "deploy.prototxt",
        detector_dir / "res10_300x300_ssd_iter_140000.caffemodel",
        DetectorOptions(**kw),
    )


def test_tiles_cover_the_whole_frame(detector_dir):
    det = detector(detector_dir, mode="tiles", tile_size=200, tile_overlap=0.25)
    wins = det.windows((480, 640, 3))
    assert wins[0][:4] == (0, 0, 640, 480)  # the whole frame once, for big faces
    covered = np.zeros((480, 640), bool)
    for x0, y0, x1, y1, iw, ih in wins[1:]:
        assert x1 - x0 == 200 and y1 - y0 == 200 and (iw, ih) == (300, 300)
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    native = detector(detector_dir, mode="native", upscale=2.0).windows((300, 400, 3))
    assert native == [(0, 0, 400, 300, 800, 608)]  # sides rounded to multiples of 32


def test_box_cut_by_an_inner_tile_edge_is_dropped(detector_dir):
    det = detector(detector_dir, mode="tiles", tile_size=200, tile_max_face=1.0)  # seams only, no size band
    raw = np.zeros((1, 1, 2, 7), np.float32)
    raw[0, 0, 0] = [0, 1, 0.9, 0.80, 0.2, 1.0, 0.5]  # touches the tile's right edge
    raw[0, 0, 1] = [0, 1, 0.9, 0.30, 0.2, 0.6, 0.5]  # well inside
    inner = (200, 100, 400, 300, 300, 300)  # a tile in the middle of a 640x480 frame
    boxes = det.postprocess(raw, inner, (480, 640, 3))
    assert len(boxes) == 1 and boxes[0][0][0] == 200 + int(0.3 * 200)
    edge_tile = (440, 100, 640, 300, 300, 300)  # its right edge is the frame's: keep the box there
    assert len(det.postprocess(raw, edge_tile, (480, 640, 3))) == 2


def test_sure_faces_dropped_as_too_small_are_reported_unless_the_frame_edge_cuts_them(detector_dir):
    """detector.too_small (the daemon's "faces too small for a verdict", edge.facesize): a sure face under
    min_face_px inside the frame is reported; a weak one is not; one cut by the frame's edge is narrow because
    it is cut, not small, and is not reported either."""
    raw = np.zeros((1, 1, 4, 7), np.float32)
    raw[0, 0, 0] = [0, 1, 0.9, 0.40, 0.40, 0.44, 0.45]  # 25 x 24 px, sure: a small face
    raw[0, 0, 1] = [0, 1, 0.3, 0.60, 0.40, 0.64, 0.45]  # as small, weak: not said
    raw[0, 0, 2] = [0, 1, 0.9, 0.00, 0.40, 0.04, 0.55]  # 25 px wide at the left edge: entering the view
    raw[0, 0, 3] = [0, 1, 0.9, 0.20, 0.20, 0.30, 0.35]  # 64 x 72 px: a face big enough, kept
    det = detector(detector_dir, mode="native", min_face_px=32, confidence=0.15)
    det.too_small = []
    kept = det.postprocess(raw, (0, 0, 640, 480, 640, 480), (480, 640, 3))
    assert [b for b, _ in kept] == [(128, 96, 192, 168)] and det.too_small == [24]
    det.detect(np.full((480, 640, 3), 90, np.uint8))  # each detect() starts afresh
    assert det.too_small == []


def test_a_box_far_taller_than_wide_is_no_face_unless_the_frame_edge_cuts_it(detector_dir):
    """res10 leaves ghost boxes (about 90 x 260 px) trailing a face that walks across the kiosk view; an
    annotated face's box is at most 1.9 times as tall as wide on the val scenes. A face entering by a side
    edge is narrow only because the frame cuts it, and stays."""
    raw = np.zeros((1, 1, 3, 7), np.float32)
    raw[0, 0, 0] = [0, 1, 0.9, 0.40, 0.20, 0.54, 0.74]  # 90 x 259 px in a 640x480 frame: a ghost
    raw[0, 0, 1] = [0, 1, 0.9, 0.00, 0.20, 0.14, 0.74]  # as narrow, at the left edge: entering
    raw[0, 0, 2] = [0, 1, 0.9, 0.60, 0.20, 0.80, 0.56]  # 128 x 173 px: a face
    whole = (0, 0, 640, 480, 640, 480)
    kept = [b for b, _ in detector(detector_dir, mode="native").postprocess(raw, whole, (480, 640, 3))]
    assert kept == [(0, 96, 89, 355), (384, 96, 512, 268)]
    loose = detector(detector_dir, mode="native", max_aspect=3.0).postprocess(raw, whole, (480, 640, 3))
    assert len(loose) == 3
    with pytest.raises(ConfigError, match="max_aspect"):
        build({"source": {"url": "x.mp4"}, "detector": {"max_aspect": 0.5}})


def test_nms_keeps_the_best_and_drops_boxes_inside_it():
    dets = [((10, 10, 60, 60), 0.9), ((12, 12, 58, 62), 0.8), ((20, 20, 40, 40), 0.7), ((200, 10, 250, 60), 0.6)]
    kept = nms(dets, 0.4)
    assert [s for _, s in kept] == [0.9, 0.6]


def test_nms_containment_merges_a_half_face_box_only_below_its_threshold():
    # res10's low-score box of the lower half of a face: 2/3 of it lies inside the face's box (IoU 0.4)
    face, half = ((100, 100, 200, 220), 0.9), ((110, 180, 200, 240), 0.12)
    assert len(nms([face, half], 0.6, containment=0.8)) == 2
    assert nms([face, half], 0.6, containment=0.6) == [face]
    opts = DetectorOptions.from_config(build({"source": {"url": "0"}, "detector": {"nms_containment": 0.6}}).detector)
    assert opts.nms_containment == 0.6
    with pytest.raises(ConfigError, match="detector.nms_containment"):
        build({"source": {"url": "0"}, "detector": {"nms_containment": 0.1}})


def test_nms_own_share_merges_an_offset_half_face_box_but_keeps_a_neighbour():
    # res10's weak box shifted half a face sideways: half of it lies on the face's box, too little for containment
    face, offset = ((100, 100, 200, 220), 0.9), ((150, 100, 250, 220), 0.1)
    neighbour = ((190, 90, 290, 210), 0.5)  # the next person, cheek to cheek: 8 % of it on the face
    assert len(nms([face, offset], 0.6, containment=0.8)) == 2  # the default (own_share 1.0: off) keeps both
    assert nms([face, offset], 0.6, containment=0.8, own_share=0.3) == [face]
    assert nms([face, neighbour], 0.6, containment=0.8, own_share=0.3) == [face, neighbour]
    # a weaker box larger than the face shares little of *itself* with it: own_share leaves it to containment
    wide = ((160, 100, 360, 300), 0.2)
    assert nms([face, wide], 0.6, containment=0.8, own_share=0.3) == [face, wide]
    opts = DetectorOptions.from_config(build({"source": {"url": "0"}, "detector": {"nms_own_share": 0.3}}).detector)
    assert opts.nms_own_share == 0.3 and DetectorOptions().nms_own_share == 1.0
    with pytest.raises(ConfigError, match="detector.nms_own_share"):
        build({"source": {"url": "0"}, "detector": {"nms_own_share": 0.05}})


def test_nms_decay_sinks_a_weak_second_box_but_keeps_a_strong_one_and_a_neighbour():
    from edge.detector import decay

    # res10's weak boxes beside a face it is sure of, under the hard NMS (IoU < 0.4, containment < 0.8): the
    # lower half of the face (0.75 of it on the face's box) and a head box (0.67 of the face inside it)
    face, half = ((100, 100, 200, 220), 0.98), ((110, 160, 200, 240), 0.12)
    head = ((120, 40, 260, 200), 0.13)
    assert len(nms([face, half, head], 0.4, 0.8)) == 3
    out = decay([face, half, head], 0.1)
    assert out == [face]  # 0.12 x (1 - 0.75) and 0.13 x (1 - 0.67): both under the floor
    strong = ((110, 160, 200, 240), 0.93)  # the same half-face box scored high stays, its score lowered
    (b0, s0), (b1, s1) = decay([face, strong], 0.1)
    assert (b0, s0) == face and b1 == strong[0] and 0.1 < s1 < 0.93
    neighbour = ((300, 100, 400, 220), 0.11)  # another person, not touching: its score unchanged
    assert decay([neighbour, face, half], 0.1) == [face, neighbour]
    # on the detector: off by default, on from the config
    assert DetectorOptions().nms_decay is False
    opts = DetectorOptions.from_config(build({"source": {"url": "0"}, "detector": {"nms_decay": True}}).detector)
    assert opts.nms_decay is True


def test_real_face_is_found_in_every_mode(detector_dir):
    from edge import assets

    img = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir())))
    for mode in ("single", "native", "tiles"):
        faces = detector(detector_dir, mode=mode).detect(img)
        assert faces, mode
        x1, y1, x2, y2 = faces[0].box
        assert 150 < x1 < 200 and 40 < y1 < 90 and 250 < x2 < 300 and 150 < y2 < 200, (mode, faces[0].box)


def test_a_face_close_to_the_camera_is_lost_by_the_native_pass_and_found_by_the_whole_frame_pass(detector_dir):
    """res10 learned faces at 300x300: at a 640x480 frame's own scale a face 340 px wide (a visitor close to the
    kiosk) gets no box, and the whole-frame pass at 300x300 (detector.whole_pass) finds it."""
    from edge import assets
    from edge.types import iou

    img = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir())))
    (face,) = [f for f in detector(detector_dir, mode="native", confidence=0.5).detect(img)]
    s = 340.0 / (face.box[2] - face.box[0])
    big = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
    cx, cy = int((face.box[0] + face.box[2]) / 2 * s), int((face.box[1] + face.box[3]) / 2 * s)
    frame = big[cy - 240 : cy + 240, cx - 320 : cx + 320]  # the face in the middle of a 640x480 frame
    assert frame.shape[:2] == (480, 640)
    truth = tuple(int(round(v * s)) - o for v, o in zip(face.box, (cx - 320, cy - 240, cx - 320, cy - 240)))

    def found(**kw):
        return [
            f
            for f in detector(detector_dir, mode="native", confidence=0.5, **kw).detect(frame)
            if iou(f.box, truth) >= 0.5
        ]

    assert found() == []
    (hit,) = found(whole_pass=True)
    assert hit.det_score >= 0.9
    assert found(whole_pass=True, whole_pass_min_px=400) == []  # its boxes are kept from that size up only
    det = detector(detector_dir, mode="native", whole_pass=True)
    assert det.whole_window((480, 640, 3)) == (0, 0, 640, 480, 300, 300)
    same = detector(detector_dir, mode="native", whole_pass=True, input_size=320)
    assert same.whole_window((320, 320, 3)) is None  # the native pass already runs at that size
    assert detector(detector_dir, mode="native").whole_window((480, 640, 3)) is None


def test_tile_pyramid_and_size_band(detector_dir):
    det = detector(detector_dir, mode="tiles", tile_sizes=(200, 100), tile_max_face=0.25)
    wins = det.windows((300, 400, 3))
    assert wins[0][:4] == (0, 0, 400, 300)
    assert sum(1 for w in wins if w[:4] == (0, 0, 400, 300)) == 1  # the whole frame once, not per size
    assert {w[2] - w[0] for w in wins[1:]} == {200, 100}
    raw = np.zeros((1, 1, 2, 7), np.float32)
    raw[0, 0, 0] = [0, 1, 0.9, 0.10, 0.10, 0.30, 0.30]  # 20 px in a 100 px tile: a small face, kept
    raw[0, 0, 1] = [0, 1, 0.9, 0.20, 0.20, 0.80, 0.80]  # 60 px filling the magnified tile: dropped
    small_tile = (100, 100, 200, 200, 300, 300)
    kept = det.postprocess(raw, small_tile, (300, 400, 3))
    assert [b for b, _ in kept] == [(110, 110, 130, 130)]
    # a 300 px tile is not magnified: no size band there
    big = detector(detector_dir, mode="tiles", tile_size=300, tile_max_face=0.25)
    assert len(big.postprocess(raw, (50, 0, 350, 300, 300, 300), (300, 640, 3))) == 2


def test_the_mirrored_pass_maps_its_boxes_back(detector_dir):
    """detector.flip runs each pass on the mirror image too; with both passes merged, a mirrored frame must
    give the mirror of the frame's faces (boxes mapped back wrongly would land on the other side)."""
    import cv2

    from edge import assets
    from edge.detector import DetectorOptions, load_detector
    from edge.types import iou

    face = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5)))
    img = cv2.copyMakeBorder(face, 0, 0, 0, 300, cv2.BORDER_CONSTANT, value=(90, 90, 90))  # face on the left
    w = img.shape[1]
    det = load_detector(detector_dir, DetectorOptions(confidence=0.3, mode="native", flip=True))
    plain = load_detector(detector_dir, DetectorOptions(confidence=0.3, mode="native"))
    a = det.detect(img)
    b = det.detect(cv2.flip(img, 1))
    assert a and len(a) == len(b)
    best = max(a, key=lambda f: f.det_score).box
    assert best[2] < w / 2, "the face is on the left half"
    mirrored = [(w - f.box[2], f.box[1], w - f.box[0], f.box[3]) for f in b]
    assert max(iou(best, m) for m in mirrored) > 0.9
    assert max(iou(best, f.box) for f in plain.detect(img)) > 0.6  # the same face the plain pass finds


def test_auto_mode_adds_the_tiles_only_for_small_or_no_sure_faces(detector_dir):
    """Mode auto: a close portrait is one native pass; the same face shrunk into a wide view (a crowd's face
    size) gets the tile passes too and is found; a frame with no sure face gets them."""
    from edge import assets

    portrait = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir())))
    det = detector(detector_dir, mode="auto", tile_sizes=(200, 100), confidence=0.3)
    calls = []
    infer = det.infer
    det.infer = lambda blob: calls.append(blob.shape) or infer(blob)  # type: ignore[method-assign]

    faces = det.detect(portrait)
    assert faces and len(calls) == 1  # a sure face of ~110 px: no tiles
    x1, y1, x2, y2 = faces[0].box
    assert min(x2 - x1, y2 - y1) >= det.opt.auto_tiles_below_px

    wide = np.full((480, 960, 3), 120, np.uint8)
    small = cv2.resize(portrait, (portrait.shape[1] // 4, portrait.shape[0] // 4), interpolation=cv2.INTER_AREA)
    wide[200 : 200 + small.shape[0], 400 : 400 + small.shape[1]] = small
    calls.clear()
    found = det.detect(wide)
    native_passes = len(det.windows(wide.shape))
    assert len(calls) > native_passes  # the tiles ran
    assert any(400 <= f.box[0] < 400 + small.shape[1] and 200 <= f.box[1] < 200 + small.shape[0] for f in found)
    # with the whole-frame pass on, the tiles do not run their own whole-frame pass again: no more passes, the
    # same faces (its boxes under the floor count once the tiles run)
    tiles_calls = len(calls)
    whole = detector(detector_dir, mode="auto", tile_sizes=(200, 100), confidence=0.3, whole_pass=True)
    infer_w, calls_w = whole.infer, []
    whole.infer = lambda blob: calls_w.append(blob.shape) or infer_w(blob)  # type: ignore[method-assign]
    assert [(f.box, f.det_score) for f in whole.detect(wide)] == [(f.box, f.det_score) for f in found]
    assert len(calls_w) == tiles_calls

    calls.clear()
    det.detect(np.full((300, 400, 3), 90, np.uint8))  # nothing sure at all: the tiles look for small faces
    assert len(calls) > 1

    # a large photo's tile passes run on a copy of at most AUTO_TILE_MAX_SIDE px, its boxes in the photo's frame
    from edge.detector import AUTO_TILE_MAX_SIDE

    big = np.full((1500, 3000, 3), 90, np.uint8)
    big[900 : 900 + portrait.shape[0], 2000 : 2000 + portrait.shape[1]] = portrait  # a sure face
    calls.clear()
    det.opt.auto_tiles_below_px = 4096  # every sure face counts as small here: the tiles run
    found = det.detect(big)
    scaled = (AUTO_TILE_MAX_SIDE * 1500 // 3000, AUTO_TILE_MAX_SIDE, 3)
    assert len(calls) == len(det.windows(big.shape)) + len(det.windows(scaled, "tiles"))
    assert all(0 <= f.box[0] < f.box[2] <= 3000 and 0 <= f.box[1] < f.box[3] <= 1500 for f in found)
    # the portrait, found by both the native pass and the whole-photo pass of the tiles, stays one box there
    assert sum(1 for f in found if f.box[0] >= 1900 and f.box[1] >= 900) == 1
    det.opt.auto_tiles_below_px = 40

    assert det.wants_tiles([]) and not det.wants_tiles([((0, 0, 80, 90), 0.9)])
    assert det.wants_tiles([((0, 0, 80, 90), 0.9), ((200, 0, 230, 35), 0.7)])  # a small sure face
    assert det.wants_tiles([((0, 0, 80, 90), 0.3)])  # unsure faces do not count
