"""Verdicts that hold: one crop function, the manifest's operating point, decisions on good views, walkers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.classifier import MaskClassifier
from edge.errors import BundleError, ConfigError
from edge.tracker import Tracker, TrackerOptions
from edge.types import Face

from conftest import bench_script, run_cli

FACE3 = ["with_mask", "without_mask", "mask_weared_incorrect"]


def _scene(tmp_path: Path):
    import cv2

    rng = np.random.RandomState(3)
    img = rng.randint(0, 255, (240, 320, 3)).astype(np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 2.0)  # texture that resizes differently under each interpolation
    root = tmp_path / "voc"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    cv2.imwrite(str(root / "images" / "s.png"), img)
    boxes = [(40, 30, 200, 210), (250, 100, 280, 134), (0, 0, 70, 90)]  # shrink, grow, clamped at the corner
    body = "".join(
        "<object><name>with_mask</name><bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax>"
        "<ymax>%d</ymax></bndbox></object>" % b
        for b in boxes
    )
    (root / "annotations" / "s.xml").write_text("<annotation><filename>s.png</filename>%s</annotation>" % body)
    return root, img, boxes


def test_training_and_device_crops_of_a_box_are_the_same_pixels(tmp_path, shipped_bundle):
    from edge.datasets_io import read_image
    from export import datasets

    root, _, boxes = _scene(tmp_path)
    bundle = load_bundle(shipped_bundle)
    train = datasets.read_voc(
        root, margin=bundle.crop_margin, size=bundle.input_size[0], source="t", report=datasets.Report()
    )
    device = MaskClassifier(bundle, "tflite_fp32").preprocess(read_image(root / "images" / "s.png"), boxes)
    assert len(train) == len(boxes) == len(device)
    for c, d in zip(train, device):
        assert c.image.dtype == d.dtype == np.uint8
        assert np.array_equal(c.image, d), "training crop and device crop of %s differ" % (c.box,)


def test_stored_crops_are_not_resized_again(tmp_path):
    from edge.crop import resize_crops_rgb

    x = np.random.RandomState(0).randint(0, 255, (4, 96, 96, 3)).astype(np.uint8)
    assert np.array_equal(resize_crops_rgb(x, (96, 96)), x)
    assert resize_crops_rgb(x, (64, 64)).shape == (4, 64, 64, 3)


def _bundle_with(tmp_path: Path, shipped: Path, op) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(shipped, dst)
    m = json.loads((dst / "manifest.json").read_text())
    if op is None:
        m.pop("operating_point", None)
    else:
        m["operating_point"] = op
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def _faces(n: int, size=(96, 96)):
    rng = np.random.RandomState(1)
    crops = rng.randint(0, 255, (n, size[0], size[1], 3)).astype(np.uint8)
    return crops


def test_alert_threshold_and_temperature_come_from_the_manifest(tmp_path, shipped_bundle):
    crops = _faces(12, load_bundle(shipped_bundle).input_size)
    verdicts = {}
    for name, op in {
        "flag_all": {"temperature": 1.0, "alert_threshold": 0.0, "no_face_threshold": 1.0},
        "flag_none": {"temperature": 1.0, "alert_threshold": 1.0, "no_face_threshold": 1.0},
        "hot": {"temperature": 8.0, "alert_threshold": 0.5, "no_face_threshold": 1.0},
    }.items():
        d = tmp_path / name
        d.mkdir()
        clf = MaskClassifier(load_bundle(_bundle_with(d, shipped_bundle, op)), "tflite_fp32")
        verdicts[name] = clf.postprocess(clf.infer(crops))
    assert all(v.label in ("without_mask", "mask_weared_incorrect") for v in verdicts["flag_all"])
    assert all(v.label == "with_mask" or v.alert >= 1.0 for v in verdicts["flag_none"])
    # a high temperature flattens: the top probability falls towards 1/3 for every crop
    for cold, hot in zip(verdicts["flag_all"], verdicts["hot"]):
        assert max(hot.probs.values()) <= max(cold.probs.values()) + 1e-6
    assert np.mean([max(v.probs.values()) for v in verdicts["hot"]]) < 0.6


def test_a_variant_that_disagrees_with_the_evaluated_model_is_named_at_load(tmp_path, shipped_bundle, caplog):
    import logging

    m = json.loads((Path(shipped_bundle) / "manifest.json").read_text())
    assert MaskClassifier(load_bundle(shipped_bundle), "tflite_int8").parity_warning is None
    dst = tmp_path / "b"
    shutil.copytree(shipped_bundle, dst)
    m["variants"]["tflite_int8"]["parity"]["top1_agreement"] = 0.536  # as per-tensor int8 of an ImageNet start
    (dst / "manifest.json").write_text(json.dumps(m))
    with caplog.at_level(logging.WARNING, logger="edge.classifier"):
        clf = MaskClassifier(load_bundle(dst), "tflite_int8")
    assert clf.parity_warning and "53.6 %" in clf.parity_warning and "tflite_fp32" in clf.parity_warning
    assert "tflite_int8" not in clf.parity_warning.split("set classifier.variant to")[1]
    assert any("53.6 %" in r.getMessage() for r in caplog.records)

    # the daemon's status carries it as a degraded state, where the control room sees it
    from edge.config import defaults
    from edge.pipeline import Pipeline
    from edge.publish import Publisher

    class Quiet(Publisher):
        def publish(self, kind, payload):
            pass

    cfg = defaults()
    cfg["source"]["url"] = "unused"
    cfg["classifier"].update({"bundle": str(dst), "variant": "tflite_int8"})
    status = Pipeline(cfg, Quiet(), detector=object(), classifier=clf).status_payload("online")  # type: ignore
    assert any("53.6 %" in d for d in status["degraded"])
    ok = MaskClassifier(load_bundle(dst), "tflite_fp32")
    assert ok.parity_warning is None
    assert not Pipeline(cfg, Quiet(), detector=object(), classifier=ok).status_payload("online").get("degraded")  # type: ignore


def test_a_malformed_operating_point_is_one_line_naming_the_field(tmp_path, shipped_bundle):
    d = _bundle_with(tmp_path, shipped_bundle, {"temperature": "hot"})
    with pytest.raises(BundleError, match="operating_point.temperature"):
        load_bundle(d)
    d2 = tmp_path / "b2"
    d2.mkdir()
    d2 = _bundle_with(d2, shipped_bundle, {"alert_threshold": 3})
    with pytest.raises(BundleError, match="alert_threshold"):
        load_bundle(d2)


# -- deciding a person on their best views -------------------------------------------------------------------
def _face(box, probs, det=0.9):
    return Face(box=box, det_score=det, probs=dict(zip(FACE3, probs)), sharpness=1.0)


def test_views_cut_by_the_border_cast_no_vote():
    # entering from the left: the first frames show half a face that looks masked; once in view, no mask
    tr = Tracker(FACE3, TrackerOptions(votes=4, border_px=3, margin=0.2, alert_threshold=0.5))
    decisions = []
    x = 0
    for i in range(12):
        cut = x <= 3
        probs = (0.9, 0.05, 0.05) if cut else (0.05, 0.9, 0.05)
        decisions += tr.update([_face((x, 100, x + 90, 200), probs)], i, i / 15.0, (640, 480))
        x = x + 2 if i < 3 else x + 12
    assert [d.label for d in decisions] == ["without_mask"]
    assert decisions[0].decided_by == "evidence"
    assert decisions[0].votes >= 4


def test_small_faces_cast_no_vote_and_an_unclear_person_is_decided_when_they_leave():
    tr = Tracker(FACE3, TrackerOptions(votes=3, min_vote_px=60, margin=0.3, alert_threshold=0.5, max_missed=2))
    out = []
    for i in range(6):  # far away (50 px): looks masked, but too small to vote
        out += tr.update([_face((300, 100, 350, 150), (0.8, 0.1, 0.1))], i, i / 15.0, (640, 480))
    for i in range(6, 10):  # close: borderline, never clear of the threshold by the margin
        out += tr.update([_face((290, 95, 360, 165), (0.45, 0.4, 0.15))], i, i / 15.0, (640, 480))
    assert out == []
    for i in range(10, 14):  # gone
        out += tr.update([], i, i / 15.0, (640, 480))
    assert len(out) == 1 and out[0].decided_by == "track_end"
    assert out[0].label == "without_mask"  # mean P(alert) = 0.55 >= 0.5; the small masked views did not vote
    assert out[0].votes == 4


def test_the_persons_operating_point_is_the_bundles_unless_the_config_sets_its_own(shipped_bundle):
    from edge.config import build, defaults
    from edge.pipeline import tracker_options

    clf = MaskClassifier(load_bundle(shipped_bundle), "tflite_fp32")
    op = clf.bundle.operating_point
    cfg = defaults()
    cfg["source"]["url"] = "unused"
    o = tracker_options(build(cfg, "t"), clf)
    assert (o.alert_threshold, o.incorrect_weight) == (op.alert_threshold, op.incorrect_weight)
    cfg["tracker"].update(alert_threshold=0.55, incorrect_weight=6.0)
    o = tracker_options(build(cfg, "t"), clf)
    assert (o.alert_threshold, o.incorrect_weight) == (0.55, 6.0)

    # the same visitor: views in (with, without, incorrect) whose mean P(alert) is 0.66, mostly incorrectly worn
    def decide(options):
        tr = Tracker(FACE3, options)
        out = []
        for i in range(8):
            out += tr.update(
                [_face((200 + 10 * i, 100, 290 + 10 * i, 200), (0.34, 0.36, 0.30))], i, i / 15.0, (640, 480)
            )
        return out + tr.flush(8, 1.0)

    per_crop = decide(TrackerOptions(votes=3, margin=0.2, alert_threshold=0.75, incorrect_weight=1.0))
    per_person = decide(TrackerOptions(votes=3, margin=0.2, alert_threshold=0.6, incorrect_weight=1.5))
    assert [d.label for d in per_crop] == ["with_mask"]
    assert [d.label for d in per_person] == ["mask_weared_incorrect"]  # 1.5 x 0.30 >= 0.36
    with pytest.raises(ConfigError, match="tracker.alert_threshold"):
        cfg["tracker"]["alert_threshold"] = 1.5
        build(cfg, "t")

    # walkers.py writes the point its daemon ran with, and where each value came from (README's per-person line)
    mod = bench_script("walkers")
    cfg["tracker"].update(alert_threshold=None, incorrect_weight=6.0)
    assert mod.person_point(cfg, str(shipped_bundle)) == {
        "alert_threshold": op.alert_threshold,
        "alert_threshold_from": "bundle",
        "incorrect_weight": 6.0,
        "incorrect_weight_from": "config",
    }


def _next_visitor_enters_at_the_right_edge(tr, f):
    """A bare-faced visitor walking in from the right edge, 30 px a frame, from frame `f`: the tracker's decisions."""
    out = []
    for x in range(600, 300, -30):
        tr.tick()
        out += tr.update([_face((x, 100, x + 80, 180), (0.05, 0.9, 0.05))], f, f / 15.0, (640, 480))
        f += 1
    return out


def test_a_departed_track_does_not_swallow_the_next_visitor_while_the_doorway_is_still():
    tr = Tracker(FACE3, TrackerOptions(votes=2, max_missed=15, alert_threshold=0.5, margin=0.1))
    out = []
    f = 0
    for x in range(200, 560, 30):  # walks out through the right edge, decided on the way
        tr.tick()
        out += tr.update([_face((x, 100, x + 80, 180), (0.9, 0.05, 0.05))], f, f / 15.0, (640, 480))
        f += 1
    for k in range(40):  # empty, still doorway: the gate skips the detector, the clock stands still...
        tr.tick(still=True)
        if k == 29:  # ...but the schedule looks anyway after max_idle_frames (30) and finds nobody
            out += tr.update([], f, f / 15.0, (640, 480))
        else:
            out += tr.expire(f, f / 15.0)
        f += 1
    out += _next_visitor_enters_at_the_right_edge(tr, f)
    assert [d.label for d in out] == ["with_mask", "without_mask"]
    assert len({d.track_id for d in out}) == 2


def test_a_walker_whose_box_shrinks_back_at_the_edge_still_leaves_and_swallows_nobody():
    """Val walkers, seed 80: as a face walks out, the edge cuts it and res10's box shrinks back, which turned the
    smoothed velocity round; the decided track stayed, the doorway stood still (the clock with it), and the next
    visitor entering at that edge was matched to it and never counted. Its way across the view says it left."""
    tr = Tracker(FACE3, TrackerOptions(votes=2, max_missed=15, alert_threshold=0.5, margin=0.1))
    out = []
    f = 0
    boxes = [(x, 100, x + 80, 180) for x in range(200, 561, 30)]  # walks right, decided on the way...
    boxes += [
        (590, 100, 640, 180),
        (555, 100, 636, 180),
        (540, 100, 634, 180),
    ]  # ...cut by the edge, box shrinking back
    for b in boxes:
        tr.tick()
        out += tr.update([_face(b, (0.9, 0.05, 0.05))], f, f / 15.0, (640, 480))
        f += 1
    for _ in range(2):  # the detector still runs while frames move and finds nobody
        tr.tick()
        out += tr.update([], f, f / 15.0, (640, 480))
        f += 1
    for _ in range(14):  # then a still doorway, shorter than the gate's forced look: no detector, no clock
        tr.tick(still=True)
        out += tr.expire(f, f / 15.0)
        f += 1
    out += _next_visitor_enters_at_the_right_edge(tr, f)
    assert [d.label for d in out] == ["with_mask", "without_mask"]
    assert len({d.track_id for d in out}) == 2


def test_a_person_standing_still_while_the_detector_rests_stays_one_track():
    tr = Tracker(FACE3, TrackerOptions(votes=3, max_missed=15, alert_threshold=0.5, margin=0.1))
    out = []
    for f in range(200):
        still = f > 10
        tr.tick(still=still)
        if not still or f % 30 == 0:  # moving, or the schedule's forced look every 30 still frames
            out += tr.update([_face((300, 100, 380, 180), (0.9, 0.05, 0.05))], f, f / 15.0, (640, 480))
        else:
            out += tr.expire(f, f / 15.0)
    out += tr.flush(200, 200 / 15.0)
    assert [d.label for d in out] == ["with_mask"] and tr.next_id == 2


# -- walkers: the gate must not lose anyone -----------------------------------------------------------------
@pytest.fixture(scope="module")
def portrait_walkers(tmp_path_factory):
    import cv2

    from edge import assets, demo
    from edge.walkers import Walker

    face = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5)))
    tmp = tmp_path_factory.mktemp("walkers")
    out = []
    for style, label in (("none", "without_mask"), ("mask", "with_mask"), ("below_nose", "mask_weared_incorrect")):
        img = face.copy()
        img[demo.HEAD[1] : demo.HEAD[3], demo.HEAD[0] : demo.HEAD[2]] = demo.draw_mask(
            face[demo.HEAD[1] : demo.HEAD[3], demo.HEAD[0] : demo.HEAD[2]], style
        )
        p = tmp / ("%s.png" % style)
        cv2.imwrite(str(p), img)
        out.append(Walker(str(p), demo.FACE_BOX, label, "demo"))
    return tmp, out * 2


def test_walker_clip_truth_and_scoring(tmp_path, portrait_walkers):
    from edge.walkers import make_clip, score

    _, walkers = portrait_walkers
    truth = make_clip(walkers, tmp_path / "w.mp4", seed=1)
    assert len(truth["people"]) == 6 and (tmp_path / "w.mp4.truth.json").exists()
    p0, p1 = truth["people"][0], truth["people"][1]
    mid = p0["boxes"][len(p0["boxes"]) // 2]
    ev = lambda box, frame, verdict: {"box": box, "frame": frame, "verdict": verdict, "decided_by": "evidence"}  # noqa: E731
    perfect = [ev(b[1:], b[0], p["label"]) for p in truth["people"] for b in [p["boxes"][len(p["boxes"]) // 2]]]
    s = score(truth, perfect)
    assert s["counted_once"] == 6 and s["verdict_accuracy"] == 1.0 and s["alert"]["f1"] == 1.0
    assert all(v["called"] == {k: v["counted"]} for k, v in s["per_class"].items())
    # one person given another verdict: their class's row of the confusion matrix says which
    wrong = "with_mask" if p0["label"] != "with_mask" else "without_mask"
    s = score(truth, [dict(perfect[0], verdict=wrong)] + perfect[1:])
    assert s["per_class"][p0["label"]]["called"] == {p0["label"]: s["per_class"][p0["label"]]["counted"] - 1, wrong: 1}
    from edge.walkers import add_class_counts

    both: dict = {}
    add_class_counts(both, s["per_class"])
    add_class_counts(both, s["per_class"])
    assert (
        both[p0["label"]]["called"][wrong] == 2
        and both[p0["label"]]["people"] == 2 * s["per_class"][p0["label"]]["people"]
    )
    s = score(truth, perfect + [ev(mid[1:], mid[0] + 1, p0["label"])])  # a duplicate
    assert s["duplicates"] == 1 and s["counted_once"] == 5
    s = score(truth, [e for e in perfect if e["frame"] != p1["boxes"][len(p1["boxes"]) // 2][0]])
    assert s["missed"] == 1


def test_a_walker_is_one_face_a_photo_of_two_faces_cheek_to_cheek_is_not_picked():
    from edge.walkers import CONTEXT, alone_in_cut, cut_region

    face = (100, 100, 160, 170)  # 60 x 70
    assert cut_region(face) == (100 - CONTEXT * 60, 100 - CONTEXT * 70, 160 + CONTEXT * 60, 170 + CONTEXT * 70)
    assert alone_in_cut(face, [face])  # its own box is not another face
    cheek = (150, 105, 210, 175)  # a second face overlapping the first
    assert not alone_in_cut(face, [face, cheek])
    beside = (175, 100, 235, 170)  # 15 px right of the box: 12 of its 60 px columns fall in the 27 px margin
    assert alone_in_cut(face, [beside])  # a fifth of a face at the edge of the cut
    assert not alone_in_cut(face, [beside], most=0.1)
    far = (400, 100, 460, 170)
    assert alone_in_cut(face, [face, far])


def _run_walkers(video: Path, tmp: Path, motion: bool, detector_dir: Path):
    import yaml

    from edge.walkers import load_events

    cfg = yaml.safe_load(
        (Path(__file__).resolve().parent.parent / "firmware-config" / "kiosk.example.yaml").read_text()
    )
    cfg["source"] = {"url": str(video)}
    cfg["mqtt"]["host"] = None
    cfg["state_dir"] = str(tmp / ("state-%s" % motion))
    cfg["device"] = "walkers"
    cfg["motion"]["enabled"] = motion
    cfg["detector"]["model_dir"] = str(detector_dir)
    p = tmp / ("k-%s.yaml" % motion)
    p.write_text(yaml.safe_dump(cfg))
    r = run_cli(["edge-maskd", "run", "--config", str(p), "--log-level", "WARNING"], timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (tmp / "ev.jsonl").write_text(r.stdout)
    return load_events(tmp / "ev.jsonl")


def test_the_motion_gate_counts_every_walker_the_ungated_daemon_counts(tmp_path, portrait_walkers, detector_dir):
    """The doorway clip of the detector issue: people crossing a noisy view one or two at a time. Before the
    schedule aged tracks by frames (not detector runs), the gated daemon lost visitors to stale tracks."""
    from edge.walkers import make_clip, score

    _, walkers = portrait_walkers
    truth = make_clip(walkers, tmp_path / "w.mp4", seed=2, seconds_per_crossing=2.5)
    gated = score(truth, _run_walkers(tmp_path / "w.mp4", tmp_path, True, detector_dir))
    ungated = score(truth, _run_walkers(tmp_path / "w.mp4", tmp_path, False, detector_dir))
    assert ungated["counted_once"] >= 5, ungated
    assert gated["counted_once"] == ungated["counted_once"], (gated, ungated)
    assert gated["missed"] == ungated["missed"] and gated["duplicates"] == ungated["duplicates"]


def _quiet_pipeline(shipped_bundle, detector_dir, detector: dict, privacy: Optional[dict] = None):
    """The daemon's Pipeline on the shipped bundle and res10 with these detector (and privacy) settings, motion
    gate off, publishing nowhere: its frames go in by `process`, its decisions come back."""
    from edge.config import defaults
    from edge.pipeline import Pipeline
    from edge.publish import Publisher

    class Quiet(Publisher):
        def publish(self, kind, payload):
            pass

    cfg = defaults()
    cfg["source"]["url"] = "unused"
    cfg["classifier"]["bundle"] = str(shipped_bundle)
    cfg["detector"].update(dict(detector, model_dir=str(detector_dir)))
    cfg["motion"]["enabled"] = False
    cfg["privacy"].update(privacy or {})
    return Pipeline(cfg, Quiet())


def test_the_no_face_output_suppresses_detector_false_positives(shipped_bundle, detector_dir):
    """res10 at a low threshold fires on the spacesuit, the flag and the background of the demo portrait; the
    shipped bundle's no_face output must reject such detections before the tracker, and keep the face."""
    import cv2

    from edge import assets, demo
    from edge.detector import DetectorOptions, load_detector
    from edge.types import Frame, iou

    bundle = load_bundle(shipped_bundle)
    assert "no_face" in bundle.labels, "the shipped bundle has no no_face output"
    face = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5)))
    frame = cv2.resize(face, (640, 640))[:480]
    face_box = tuple(int(v * 640 / 512) for v in demo.FACE_BOX)
    det = load_detector(detector_dir, DetectorOptions(confidence=0.08, mode="single"))
    clf = MaskClassifier(bundle, None)
    faces = clf.classify(frame, det.detect(frame))
    real = [f for f in faces if iou(f.box, face_box) > 0.5]
    false = [f for f in faces if iou(f.box, face_box) < 0.05]
    assert len(real) == 1 and real[0].label != "no_face"
    assert len(false) >= 3
    rejected = [f for f in false if f.label == "no_face"]
    assert rejected, [(f.box, f.no_face) for f in false]

    pipe = _quiet_pipeline(shipped_bundle, detector_dir, {"confidence": 0.08, "mode": "single", "min_face_px": 0})
    pipe.process(Frame(frame, 0, 0.0))
    boxes = [t.box for t in pipe.tracker.tracks]
    assert pipe.rejected >= len(rejected)
    assert not any(iou(b, f.box) > 0.9 for b in boxes for f in rejected)
    assert any(iou(b, face_box) > 0.5 for b in boxes)


def test_device_outputs_run_the_device_classifier_per_view_with_and_without_flips(shipped_bundle):
    """export's operating-point search reads raw outputs through edge's classifier (a refactor once broke this
    path: only `edge-export convert` on a real run reached it)."""
    from edge.bundle import load_bundle
    from export.cli import combine, device_outputs

    b = load_bundle(shipped_bundle)
    x = np.random.RandomState(0).randint(0, 255, (3, 40) + tuple(b.input_size) + (3,)).astype(np.uint8)
    plain, mirrored = device_outputs(MaskClassifier(b, "tflite_int8", fallback=False), x)
    assert mirrored is not None and plain.shape == mirrored.shape == (3, 40, len(b.labels))
    assert np.allclose(plain.sum(2), 1.0, atol=0.02) and not np.allclose(plain, mirrored)
    assert np.allclose(combine((plain, mirrored), 1, False), plain[0])
    assert np.allclose(combine((plain, mirrored), 3, True), (plain + mirrored).mean(0) / 2.0)
    assert device_outputs(MaskClassifier(b, "tflite_int8", fallback=False), x, mirror=False)[1] is None


# -- test-time views: each face cut at a few boxes around the detector's, outputs averaged ---------------------
def test_a_view_box_scales_about_the_centre_and_shifts_down():
    from edge.crop import view_box

    box = (100, 100, 200, 300)
    assert view_box(box, (1.0, 0.0)) == box
    assert view_box(box, (0.9, 0.0)) == (105, 110, 195, 290)
    assert view_box(box, (1.1, 0.0)) == (95, 90, 205, 310)
    assert view_box(box, (1.0, 0.06)) == (100, 112, 200, 312)


def test_classify_averages_the_manifests_views(tmp_path, shipped_bundle):
    """classify() gives each face the mean output over the manifest's views (and their mirror images), each
    view cut by the one crop function; a manifest without views uses the box alone."""
    from edge.crop import crop_faces, fit_box, view_box

    root, img, boxes = _scene(tmp_path)
    op = dict(load_bundle(shipped_bundle).manifest["operating_point"], flip_average=True)
    views = [[1.0, 0.0], [0.9, 0.0], [1.1, 0.0]]
    clf = MaskClassifier(load_bundle(_bundle_with(tmp_path, shipped_bundle, dict(op, views=views))), "tflite_fp32")
    assert clf.bundle.operating_point.views == ((1.0, 0.0), (0.9, 0.0), (1.1, 0.0))
    fitted = [fit_box(b, clf.bundle.box_fit) for b in boxes]
    want = np.zeros((len(boxes), len(clf.output_labels)))
    for v in views:
        x = crop_faces(img, [view_box(b, tuple(v)) for b in fitted], clf.margin, clf.size)
        want += (clf.infer(x) + clf.infer(np.ascontiguousarray(x[:, :, ::-1]))) / 2.0
    want /= len(views)
    faces = clf.classify(img, [Face(box=b, det_score=0.9) for b in boxes])
    assert [f.probs for f in faces] == [v.probs for v in clf.postprocess(want)]
    one = tmp_path / "one"
    one.mkdir()
    box_only = {k: v for k, v in op.items() if k != "views"}  # whatever views the shipped bundle has
    plain = MaskClassifier(load_bundle(_bundle_with(one, shipped_bundle, box_only)), "tflite_fp32")
    assert plain.bundle.operating_point.views == ((1.0, 0.0),)
    single = plain.classify(img, [Face(box=b, det_score=0.9) for b in boxes])
    assert [f.probs for f in single] != [f.probs for f in faces]
    assert [f.probs for f in single] == [v.probs for v in plain.postprocess(plain.probs(plain.preprocess(img, fitted)))]


@pytest.mark.parametrize(
    "views", [[], [[1.0]], [[3.0, 0.0]], [[1.0, 0.9]], "scales", [[1.0, "x"]], [[1.0, 0.0]] * 9, [[True, 0.0]]]
)
def test_malformed_views_are_one_line_naming_the_field(tmp_path, shipped_bundle, views):
    op = dict(load_bundle(shipped_bundle).manifest["operating_point"], views=views)
    with pytest.raises(BundleError, match="operating_point.views"):
        load_bundle(_bundle_with(tmp_path, shipped_bundle, op))


def test_view_images_recut_from_the_photo_reproduce_the_stored_crops(tmp_path):
    """The operating-point search cuts each val face again per view; its identity view is the stored crop."""
    from edge.crop import crop_faces, view_box
    from export import datasets
    from export.crops import view_images

    root, img, boxes = _scene(tmp_path)
    cs = datasets.read_voc(root, margin=0.15, size=64, source="t", report=datasets.Report())
    crops = {
        "images": np.stack([c.image for c in cs]),
        "files": np.array([str(c.file) for c in cs]),
        "boxes": np.array([c.box for c in cs]),
        "how": np.array(["voc"] * len(cs)),
        "margin": np.array(0.15),
    }
    idx = np.array([2, 0])
    v = view_images(crops, idx, [(1.0, 0.0), (0.9, 0.05)])
    assert v.shape == (2, 2, 64, 64, 3)
    assert np.array_equal(v[0], crops["images"][idx])
    want = crop_faces(img, [view_box(tuple(crops["boxes"][i]), (0.9, 0.05)) for i in idx], 0.15, (64, 64))
    assert np.array_equal(v[1], want) and not np.array_equal(v[1], v[0])


def _with_fit(tmp_path: Path, shipped: Path, fit) -> Path:
    dst = tmp_path / "fitted"
    shutil.copytree(shipped, dst)
    m = json.loads((dst / "manifest.json").read_text())
    if fit is None:
        m["input"].pop("detector_box_fit", None)
    else:
        m["input"]["detector_box_fit"] = fit
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def test_the_box_fit_maps_a_detector_box_onto_its_annotation():
    from edge.crop import fit_box
    from export.boxfit import offsets

    det, gt = (100, 80, 180, 180), (103, 96, 180, 182)
    fit = offsets(gt, det)
    assert fit_box(det, tuple(fit)) == gt
    assert fit_box(det, None) == det


def test_the_device_crops_detector_boxes_by_the_manifests_fit(tmp_path, shipped_bundle):
    """classify() cuts res10's box moved by the manifest's fit; preprocess() of an annotated box does not."""
    from edge.crop import crop_faces, fit_box, view_box

    root, img, boxes = _scene(tmp_path)
    fit = {"left": 0.04, "top": 0.16, "right": 0.0, "bottom": 0.02}
    clf = MaskClassifier(load_bundle(_with_fit(tmp_path, shipped_bundle, fit)), "tflite_fp32")
    assert clf.bundle.box_fit == (0.04, 0.16, 0.0, 0.02)
    f4 = (0.04, 0.16, 0.0, 0.02)
    want = crop_faces(img, [fit_box(b, f4) for b in boxes], clf.margin, clf.size)
    assert np.array_equal(clf.preprocess(img, boxes, detector=True), want)
    assert not np.array_equal(clf.preprocess(img, boxes), want)
    # classify() goes through the fitted crop: its verdicts are those of the fitted crops, cut under each of
    # the manifest's test-time views (the first view is the fitted box itself)
    faces = clf.classify(img, [Face(box=b, det_score=0.9) for b in boxes])
    views = clf.bundle.operating_point.views
    cut = [crop_faces(img, [view_box(fit_box(b, f4), v) for b in boxes], clf.margin, clf.size) for v in views]
    assert np.array_equal(cut[0], want)
    expect = clf.postprocess(clf.probs(np.stack(cut)))
    assert [f.probs for f in faces] == [v.probs for v in expect]
    # without a fit in the manifest, detector boxes are cut as they are
    plain = MaskClassifier(load_bundle(_with_fit(tmp_path / "p", shipped_bundle, None)), "tflite_fp32")
    assert plain.bundle.box_fit is None
    assert np.array_equal(plain.preprocess(img, boxes, detector=True), plain.preprocess(img, boxes))


@pytest.mark.parametrize(
    "fit,field",
    [
        ({"left": 0, "top": "high", "right": 0, "bottom": 0}, "detector_box_fit.top"),
        ({"left": 0, "top": 0.1, "right": 0}, "detector_box_fit.bottom"),
        ({"left": 0, "top": 0.9, "right": 0, "bottom": 0}, "detector_box_fit.top"),
        ([0, 0.1, 0, 0], "detector_box_fit: must be an object"),
        ({"left": 0.45, "top": 0, "right": -0.45, "bottom": 0}, "inside out"),
    ],
)
def test_a_malformed_box_fit_is_one_line_naming_the_field(tmp_path, shipped_bundle, fit, field):
    with pytest.raises(BundleError, match=field.replace(".", r"\.")):
        load_bundle(_with_fit(tmp_path, shipped_bundle, fit))


def test_box_fit_is_measured_on_training_scenes_with_the_real_detector(tmp_path, detector_dir):
    """A scene whose annotation sits at a known offset from res10's box: the measured fit is that offset."""
    import cv2

    from edge import assets
    from edge.detector import DetectorOptions, load_detector
    from export.boxfit import measure

    face = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5)))
    det = load_detector(detector_dir, DetectorOptions(confidence=0.5, mode="single"))
    found = det.detect(face)
    assert found, "res10 finds no face in the demo portrait"
    d = max(found, key=lambda f: f.det_score).box
    w, h = d[2] - d[0], d[3] - d[1]
    gt = (d[0] + round(0.05 * w), d[1] + round(0.15 * h), d[2], d[3] + round(0.03 * h))
    root = tmp_path / "scenes"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    cv2.imwrite(str(root / "images" / "p.png"), face)
    (root / "annotations" / "p.xml").write_text(
        "<annotation><filename>p.png</filename><object><name>with_mask</name><bndbox><xmin>%d</xmin>"
        "<ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object></annotation>" % gt
    )
    fit = measure([root], {"scenes": ["p"]}, det)
    assert fit["faces"] == 1 and fit["scenes"] == 1
    assert fit["left"] == pytest.approx(0.05, abs=0.01) and fit["top"] == pytest.approx(0.15, abs=0.01)
    assert fit["right"] == pytest.approx(0.0, abs=0.01) and fit["bottom"] == pytest.approx(0.03, abs=0.01)
    with pytest.raises(ValueError, match="no annotated face"):
        measure([root], {"scenes": []}, det)


def test_training_and_device_crops_of_a_detector_box_are_the_same_pixels(tmp_path, shipped_bundle, detector_dir):
    """A folder-set photo is cut where res10 finds the face; with a fit, training cuts it as the device does."""
    import cv2

    from edge import assets
    from edge.detector import DetectorOptions, load_detector
    from export import datasets

    face = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5)))
    (tmp_path / "set" / "with_mask").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "set" / "with_mask" / "p.png"), face)
    fit = {"left": 0.03, "top": 0.17, "right": 0.0, "bottom": 0.02}
    bundle = load_bundle(_with_fit(tmp_path, shipped_bundle, fit))
    det = load_detector(detector_dir, DetectorOptions(confidence=0.5))
    crops = datasets.read_folders(
        tmp_path / "set",
        margin=bundle.crop_margin,
        size=bundle.input_size[0],
        source="t",
        report=datasets.Report(),
        detector=det,
        det_conf=0.5,
        box_fit=bundle.box_fit,
    )
    assert len(crops) == 1 and crops[0].how == "detector"
    device = MaskClassifier(bundle, "tflite_fp32").preprocess(face, [crops[0].box], detector=True)
    assert np.array_equal(crops[0].image, device[0])
    unfitted = MaskClassifier(bundle, "tflite_fp32").preprocess(face, [crops[0].box])
    assert not np.array_equal(crops[0].image, unfitted[0])


def test_the_operating_point_search_chooses_views_on_val_and_the_device_loads_them(tmp_path, shipped_bundle):
    """`edge-export operating-point` end to end on photos: val faces cut again per view, the choice written
    into the manifest with what was tried, and the bundle loads with the chosen views."""
    from export.cli import VIEW_SETS, operating_point

    from conftest import photo_crops

    crops = photo_crops(tmp_path, shipped_bundle, 24, 160, [(20, 20, 80, 90), (90, 60, 150, 140)], seed=5, blur=1.5)
    n = len(crops["labels"])
    run = tmp_path / "run"
    run.mkdir()
    np.savez(str(run / "split.npz"), keep=np.arange(n), assign=np.array([1, 2] * (n // 2)))
    dst = tmp_path / "bundle"
    shutil.copytree(shipped_bundle, dst)
    op = operating_point(dst, run, crops, variant="tflite_int8")
    assert [tuple(v) for v in op["views"]] in [list(v) for v in VIEW_SETS.values()]
    assert len(op["validation"]["views_tried"]) == 2 * len(VIEW_SETS)
    assert "views" in op["rule"]
    assert (
        op["chosen_on"] == "validation crops of andrewmvd-train, ilc2021-jolignier, chandrikadeb7"
    )  # no train.json: all
    again = load_bundle(dst)
    assert again.operating_point.views == tuple(tuple(v) for v in op["views"])
    assert json.loads((dst / "manifest.json").read_text())["metrics"]["test_by_source"]["real (all)"]["faces"] > 0
    fixed = operating_point(dst, run, crops, variant="tflite_int8", views="scales")
    assert fixed["views"] == [list(v) for v in VIEW_SETS["scales"]]
    assert load_bundle(dst).operating_point.views == VIEW_SETS["scales"]


def test_a_refit_takes_its_operating_point_from_a_bundle_of_its_recipe_as_it_is(tmp_path, shipped_bundle):
    """A run trained on its val crops (train --refit) cannot choose an operating point on them: convert and
    operating-point refuse it in one line unless --operating-point-from names a bundle for the same crop, whose
    temperature, thresholds and views are then written unchanged, with where they came from."""
    from types import SimpleNamespace

    from edge.errors import MaskwatchError
    from export.cli import check_same_crop, inherited_operating_point, operating_point

    from conftest import photo_crops

    crops = photo_crops(tmp_path, shipped_bundle, 24, 160, [(20, 20, 80, 90), (90, 60, 150, 140)], seed=5, blur=1.5)
    n = len(crops["labels"])
    run = tmp_path / "run"
    run.mkdir()
    np.savez(str(run / "split.npz"), keep=np.arange(n), assign=np.array([1, 2] * (n // 2)))
    (run / "train.json").write_text(json.dumps({"config": {"refit": True, "input_size": 112}}))
    dst = tmp_path / "bundle"
    shutil.copytree(shipped_bundle, dst)
    r = run_cli(["edge-export", "operating-point", "--bundle", dst, "--run", run, "--crops", tmp_path / "no.npz"])
    assert r.returncode == 64 and "Traceback" not in r.stderr
    assert "trained on its val crops (train --refit)" in r.stderr.strip().splitlines()[-1]
    donor = load_bundle(shipped_bundle)
    fit = donor.manifest["input"].get("detector_box_fit")
    a = SimpleNamespace(operating_point_from=str(shipped_bundle), views="auto", max_false_alarm=0.03)
    got, inherited = inherited_operating_point(a, run)  # before any crops are read: labels and input
    check_same_crop(got, donor.crop_margin, fit)  # the same crop: accepted
    with pytest.raises(MaskwatchError, match="another crop .*crop margin"):
        check_same_crop(got, donor.crop_margin + 0.05, fit)
    if fit:
        moved = dict(fit, top=float(fit["top"]) + 0.1)
        with pytest.raises(MaskwatchError, match="another crop .*box fit"):
            check_same_crop(got, donor.crop_margin, moved)
    (run / "train.json").write_text(json.dumps({"config": {"refit": True, "input_size": 96}}))
    with pytest.raises(MaskwatchError, match=r"another crop \(input \[112, 112\], not 96 px\)"):
        inherited_operating_point(a, run)
    (run / "train.json").write_text(json.dumps({"config": {"refit": True, "input_size": 112}}))
    with pytest.raises(MaskwatchError, match="drop --views"):
        inherited_operating_point(SimpleNamespace(**dict(a.__dict__, views="box")), run)
    # the donor's values are perturbed in the copy first, so an unchanged copy is the inheritance, not chance
    m = json.loads((dst / "manifest.json").read_text())
    m["operating_point"].update(alert_threshold=0.11, temperature=3.0, views=[[1.0, 0.0]])
    (dst / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MaskwatchError, match="train --refit"):  # called directly, without a point to take
        operating_point(dst, run, crops, variant="tflite_int8")
    op = operating_point(dst, run, crops, variant="tflite_int8", inherited=inherited)
    want = donor.manifest["operating_point"]
    for k in ("temperature", "alert_threshold", "no_face_threshold", "views", "flip_average"):
        assert op[k] == want[k], k
    assert op["inherited_from"]["model_id"] == donor.model_id and "validation" not in op
    assert op["chosen_on"].startswith("inherited from %s" % donor.model_id) and "refit" in op["chosen_on"]
    # where the point was chosen is said once, back to the bundle that chose it, with one refit note
    assert op["chosen_on"].count("chosen there on") == 1 and op["chosen_on"].count("this refit trained") == 1
    origin = donor.manifest["operating_point"].get("inherited_from")
    if origin:  # the shipped bundle took its point from another: that one is named as the chooser
        assert "which took it from %s (chosen there on" % origin["model_id"] in op["chosen_on"]
    assert op["inherited_from"]["via"][0] == donor.model_id  # the trace a bundle taking it from this one reads
    again = load_bundle(dst)
    assert again.operating_point.views == tuple(tuple(v) for v in want["views"])
    assert again.operating_point.alert_threshold == want["alert_threshold"]
    assert json.loads((dst / "manifest.json").read_text())["metrics"]["test_by_source"]["real (all)"]["faces"] > 0


def test_the_alert_objective_recall_flags_the_most_within_the_false_alarm_floor():
    """`choose_alert(objective="recall")`: the lowest threshold that keeps with_mask faces flagged within the
    floor (most non-compliant faces caught); "f1" may stop higher. Both keep the floor."""
    from export import operating
    from export.datasets import LABELS

    rng = np.random.RandomState(0)
    n = 400
    y = np.array([0] * n + [1] * (n // 2) + [2] * (n // 2))  # with, without, incorrect
    # P(alert): with_mask faces mostly low, non-compliant ones spread (some hard ones low)
    s = np.concatenate([rng.beta(1.2, 8, n), rng.beta(3, 1.5, n)])
    probs = np.zeros((2 * n, len(LABELS)))
    probs[:, 0] = 1 - s
    probs[:, 1] = s / 2
    probs[:, 2] = s / 2
    f1 = operating.choose_alert(probs, y, LABELS, max_false_alarm=0.2, objective="f1")
    rec = operating.choose_alert(probs, y, LABELS, max_false_alarm=0.2, objective="recall")
    assert rec["objective"] == "recall" and f1["objective"] == "f1"
    assert rec["with_mask_flagged"] <= 0.2 and f1["with_mask_flagged"] <= 0.2
    assert rec["alert_threshold"] < f1["alert_threshold"] and rec["recall"] > f1["recall"]
    # one step lower would break the floor: the recall rule sits on it
    flagged = s[y == 0] >= round(rec["alert_threshold"] - 0.01, 2)
    assert flagged.mean() > 0.2
    with pytest.raises(ValueError, match="alert objective"):
        operating.choose_alert(probs, y, LABELS, objective="precision")


def test_walker_totals_carry_wilson_intervals_over_the_right_denominators():

    from export.metrics import wilson

    mod = bench_script("walkers")
    total = {
        "people": 72,
        "counted_once": 69,
        "counted": 69,
        "verdict_right": 54,
        "alert": {"tp": 39, "fp": 2, "fn": 9},
    }
    iv = mod.intervals(total)
    assert iv["counted_once_rate"] == list(wilson(69, 72))
    assert iv["verdict_accuracy"] == list(wilson(54, 69))  # over the visitors counted, as verdict_accuracy is
    assert iv["alert_precision"] == list(wilson(39, 41)) and iv["alert_recall"] == list(wilson(39, 48))
    lo, hi = iv["verdict_accuracy"]
    assert lo < 54 / 69.0 < hi and hi - lo > 0.15  # 69 visitors: a wide interval, not a point


def test_walker_errors_are_attributed_to_the_classifier_or_the_pipeline():
    """benchmarks/walker_vs_crop.py: a visitor called wrong whose annotated crop is called wrong too is the
    classifier's error; one whose crop is right is the pipeline's; a visitor never counted is in neither."""
    mod = bench_script("walker_vs_crop")
    W, O, I = "with_mask", "without_mask", "mask_weared_incorrect"
    rows = [
        {"label": W, "crop": W, "walker": W},  # right
        {"label": I, "crop": W, "walker": W},  # the classifier's
        {"label": O, "crop": I, "walker": I},  # the classifier's
        {"label": W, "crop": W, "walker": I},  # the pipeline's
        {"label": I, "crop": O, "walker": I},  # the pipeline fixed it
        {"label": O, "crop": O, "walker": None},  # never counted
    ]
    t = mod.attribute(rows)
    assert (t["people"], t["counted"], t["walker_right"], t["crop_right"]) == (6, 5, 2, 2)
    assert (t["classifier_errors"], t["pipeline_errors"], t["pipeline_fixes"], t["same_verdict"]) == (2, 1, 1, 3)
    assert t["per_class"][I] == {"counted": 2, "walker_right": 1, "crop_right": 0}
    assert t["per_class"][O] == {"counted": 1, "walker_right": 0, "crop_right": 0}


def test_compare_bundles_writes_each_faces_verdict_per_bundle(tmp_path, shipped_bundle):
    """compare_bundles.py --per-face: which faces every bundle gets wrong. One verdict per scored face and
    bundle, aligned with the crop indices, labels, sources and near-duplicate groups of the split side; the
    verdicts are the ones its table counts (the per-face confusion equals the table's)."""
    import subprocess
    import sys

    from export.crops import save_npz, save_split

    from conftest import ROOT, photo_crops

    crops = photo_crops(tmp_path, shipped_bundle, 12, 160, [(20, 20, 80, 90), (90, 60, 150, 140)], seed=3, blur=1.5)
    n = len(crops["labels"])
    save_npz(tmp_path / "c.npz", **crops)
    run = tmp_path / "run"
    save_split(run, np.arange(n), np.array([1, 2, 0] * (n // 3) + [0] * (n % 3)), {})
    out, pf = tmp_path / "cmp.json", tmp_path / "faces.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_bundles.py"), str(shipped_bundle), "--run", str(run)]
        + ["--split", "test", "--crops", str(tmp_path / "c.npz"), "--json", str(out), "--per-face", str(pf)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc, faces = json.loads(out.read_text()), json.loads(pf.read_text())
    model_id = load_bundle(shipped_bundle).model_id
    test = [i for i in range(n) if i % 3 == 1 and crops["labels"][i] < 3]  # side 2, faces only
    assert faces["crop_index"] == test and faces["split"] == "test"
    assert faces["label"] == [int(crops["labels"][i]) for i in test]
    assert faces["group"] == [str(crops["groups"][i]) for i in test] and len(faces["source"]) == len(test)
    pred = faces["pred"][model_id]
    assert len(pred) == len(test)
    table = doc["rows"][0]["by_source"]["real (all)"]["confusion"]
    labels = list(faces["labels"]) + ([] if "no_face" in faces["labels"] else ["no_face"])
    assert sum(sum(row.values()) for row in table.values()) == len(test) > 0
    for t, row in table.items():
        for p, count in row.items():
            got = sum(1 for y, q in zip(faces["label"], pred) if labels[y] == t and labels[q] == p)
            assert got == count, (t, p)


def test_hard_faces_counts_faces_every_bundle_gets_wrong_and_tests_the_difference(tmp_path):
    """benchmarks/hard_faces.py: per source and class, the faces all bundles get wrong (and their photo groups);
    Fisher's exact test against known values (a 3 x 3 table by hand: 2x2 [[3, 1], [1, 3]] has p = 34/70)."""
    mod = bench_script("hard_faces")
    assert abs(mod.fisher_two_sided(3, 1, 1, 3) - 34 / 70.0) < 1e-12
    assert abs(mod.fisher_two_sided(4, 0, 0, 4) - 2 / 70.0) < 1e-12
    assert abs(mod.fisher_two_sided(2, 2, 2, 2) - 1.0) < 1e-12
    doc = {
        "labels": ["with_mask", "without_mask", "mask_weared_incorrect", "no_face"],
        "label": [2, 2, 2, 0, 0],
        "source": ["ilc2021-jolignier"] * 3 + ["chandrikadeb7"] * 2,
        "group": ["g1", "g1", "g2", "g3", "g4"],
        "pred": {"a": [0, 0, 2, 0, 1], "b": [1, 0, 0, 0, 1]},
    }
    h = mod.hard(doc, ["a", "b"])
    inc = h["ilc2021-jolignier / mask_weared_incorrect"]
    assert inc == {"faces": 3, "wrong_by_each": {"a": 2, "b": 3}, "wrong_by_all": 2, "groups_of_wrong_by_all": 1}
    w = h["chandrikadeb7 / with_mask"]
    assert w["wrong_by_all"] == 1 and w["wrong_by_each"] == {"a": 1, "b": 1}
    assert list(h)[0].startswith("ilc2021")  # real sources in the house order (andrewmvd, ilc2021, chandrikadeb7)
    # one file alone (no second side to test against) and two: both run, the second carries the Fisher p
    import subprocess
    import sys

    f = tmp_path / "faces.json"
    f.write_text(json.dumps(doc))
    for files in ([f], [f, f]):
        out = tmp_path / "hard.json"
        r = subprocess.run(
            [sys.executable, str(mod.__file__)] + [str(x) for x in files] + ["--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr[-1500:]
        got = json.loads(out.read_text())
        assert got["sides"][0]["by_source_class"] == h and len(got["sides"]) == len(files)
        assert bool(got["fisher_wrong_by_all_first_vs_second"]) == (len(files) == 2)


def test_hard_faces_breakdown_by_width_and_closest_training_twin():
    """hard_faces.py --crops: right per bundle by face width, and each face's closest training face by grey
    thumbnail correlation: a mirrored copy of a training face is its twin (1.0), a face of other noise is not."""
    mod = bench_script("hard_faces")
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (4, 112, 112, 3)).astype(np.uint8)
    images[3] = images[0][:, ::-1]  # face 3 is training face 0 mirrored
    crops = {
        "images": images,
        "boxes": np.array([[0, 0, 30, 30], [0, 0, 30, 30], [0, 0, 50, 50], [0, 0, 90, 90]]),
        "files": np.array(["a.jpg", "b.jpg", "c.jpg", "d.jpg"]),
    }
    train = images[[0, 1]]
    twins = (mod.thumbs(train), mod.thumbs(train, flip=True))
    doc = {
        "labels": ["with_mask", "without_mask", "mask_weared_incorrect", "no_face"],
        "crop_index": [2, 3],
        "label": [2, 2],
        "source": ["andrewmvd-train"] * 2,
        "pred": {"a": [2, 0], "b": [2, 2]},
    }
    got = mod.breakdown(doc, ["a", "b"], crops, twins)["andrewmvd-train / mask_weared_incorrect"]
    assert got["faces"] == 2 and got["twins_at_0.9_or_more"] == 1
    assert got["right"]["width 40-80"] == {"faces": 1, "a": 1, "b": 1}
    assert got["right"]["width 80-"] == {"faces": 1, "a": 0, "b": 1}
    assert got["right"]["width 0-40"] == {"faces": 0, "a": 0, "b": 0}


def test_an_event_reports_the_face_the_classifier_saw(shipped_bundle, detector_dir):
    """The event's box is the person's face in the convention the classifier was measured in (res10's box moved
    by the bundle's box fit, within the frame), as `scan` reports it, and the snapshot is the classifier's crop of
    that face: res10's own box starts above the forehead and ends above the chin, where a mask worn too low sits."""
    import cv2

    from edge import assets
    from edge.crop import fit_box
    from edge.detector import DetectorOptions, load_detector
    from edge.types import Frame, clamp_box, expand_box

    face = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5)))
    frame = cv2.resize(face, (640, 640))[:480]
    bundle = load_bundle(shipped_bundle)
    assert bundle.box_fit, "the shipped bundle has no detector box fit"
    det = load_detector(detector_dir, DetectorOptions(confidence=0.5, mode="single"))
    res10 = max(det.detect(frame), key=lambda f: f.det_score).box
    want = clamp_box(fit_box(res10, bundle.box_fit), 640, 480)
    assert want != res10

    privacy = {"snapshots": True, "snapshot_blur": False, "snapshot_px": 96}
    pipe = _quiet_pipeline(shipped_bundle, detector_dir, {"confidence": 0.5, "mode": "single"}, privacy)
    decisions = []
    for i in range(40):  # the visitor stands still, then leaves
        decisions += pipe.process(Frame(frame if i < 20 else np.zeros_like(frame), i, i / 15.0))
    assert len(decisions) == 1, decisions
    d = decisions[0]
    assert d.box == want, (d.box, want, res10)
    snap = cv2.imdecode(np.frombuffer(d.snapshot, np.uint8), cv2.IMREAD_COLOR).astype(np.float32)

    def cut(box):
        x1, y1, x2, y2 = expand_box(box, bundle.crop_margin, 640, 480)
        return cv2.resize(frame[y1:y2, x1:x2], (96, 96), interpolation=cv2.INTER_AREA).astype(np.float32)

    seen, unfitted = np.abs(snap - cut(want)).mean(), np.abs(snap - cut(res10)).mean()
    assert seen < 4.0 and seen < unfitted / 2, (seen, unfitted)


def test_the_person_point_replay_reaches_the_verdicts_the_tracker_reaches_live(tmp_path):
    """benchmarks/person_point.py records a clip once with early verdicts held back and replays the tracker's
    own decision for other operating points: each replayed verdict (label, frame, votes, how decided) must be
    what a tracker run live with that point decides."""
    import dataclasses

    mod = bench_script("person_point")
    rng = np.random.RandomState(4)

    def frames():
        """Three visitors crossing (one stays short, one enters cut by the border), noisy views of a lean."""
        lean = {1: (0.30, 0.25, 0.45), 2: (0.55, 0.35, 0.10), 3: (0.10, 0.60, 0.30)}
        spans = {1: (0, 40, 0), 2: (10, 16, 300), 3: (20, 60, -60)}
        for f in range(70):
            faces = []
            for pid, (a, b, x0) in spans.items():
                if a <= f < b:
                    x = x0 + 12 * (f - a)
                    p = np.clip(np.array(lean[pid]) + rng.normal(0, 0.12, 3), 0.01, None)
                    faces.append(
                        _face((x, 100 + 120 * (pid - 1) % 300, x + 90, 190 + 120 * (pid - 1) % 300), p / p.sum())
                    )
            yield f, faces

    seq = list(frames())

    def live(o):
        tr = Tracker(FACE3, o)
        out = []
        for f, faces in seq:
            tr.tick()
            out += tr.update(faces, f, f / 15.0, (640, 480))
        return out + tr.flush(70, 70 / 15.0)

    base = TrackerOptions(
        votes=5, margin=0.2, max_missed=3, min_votes_on_exit=2, alert_threshold=0.75, incorrect_weight=2.5
    )
    rec = mod.RecordingTracker(FACE3, dataclasses.replace(base, votes=mod.HOLD))
    for f, faces in seq:
        rec.tick()
        rec.update(faces, f, f / 15.0, (640, 480))
    rec.flush(70, 70 / 15.0)
    seen = set()
    for thr in (0.45, 0.6, 0.75):
        for w in (1.0, 2.5, 6.0):
            o = dataclasses.replace(base, alert_threshold=thr, incorrect_weight=w)
            want = [(d.track_id, d.label, d.frame_index, d.votes, d.decided_by) for d in live(o)]
            got = [(d.track_id, d.label, d.frame_index, d.votes, d.decided_by) for _, d in mod.replay(rec, o)]
            assert sorted(got) == sorted(want)
            seen.add(tuple(x[1] for x in sorted(want)))
    assert len(seen) > 1  # the points differ in what they decide: the test can tell a replay that ignores them

    # a recording kept on disk (--records) replays the same; one made under another key is not used
    path = tmp_path / "rec.pkl"
    mod.save_record(path, rec, "key-a")
    again = mod.load_record(path, "key-a", rec.opt)
    o = dataclasses.replace(base, alert_threshold=0.6, incorrect_weight=2.5)
    assert [(d.track_id, d.label, d.frame_index) for _, d in mod.replay(again, o)] == [
        (d.track_id, d.label, d.frame_index) for _, d in mod.replay(rec, o)
    ]
    assert mod.load_record(path, "key-b", rec.opt) is None
    path.write_bytes(path.read_bytes()[:100])  # truncated: recorded again, not a traceback
    assert mod.load_record(path, "key-a", rec.opt) is None
    # the key: deciding tracker keys may vary, anything that shapes the recorded views may not
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"frames")
    cfg = {"detector": {"confidence": 0.15}, "tracker": {"votes": 5, "border_px": 3}, "source": {"url": "a"}}
    k = mod.fingerprint(cfg, "m", clip)
    assert mod.fingerprint({**cfg, "tracker": {"votes": 9, "border_px": 3}, "source": {"url": "b"}}, "m", clip) == k
    assert mod.fingerprint({**cfg, "tracker": {"votes": 5, "border_px": 8}}, "m", clip) != k
    assert mod.fingerprint({**cfg, "detector": {"confidence": 0.2}}, "m", clip) != k
    assert mod.fingerprint(cfg, "other-model", clip) != k


def test_an_inherited_operating_point_names_the_bundle_that_chose_it_once():
    """convert --operating-point-from a bundle that inherited its point in turn: the record traces the point back to
    the bundle that chose it (`via`, `origin_chosen_on`), so a third bundle names the whole chain with "chosen there
    on" once (it nested one sentence inside the next before)."""
    from export.cli import inheritance

    assert inheritance("A", {"chosen_on": "val crops of a"}) == (["A"], "val crops of a")
    # a point inherited before the trace existed (the shipped bundles): its donor chose it
    legacy = {"inherited_from": {"model_id": "A", "chosen_on": "val crops of a"}, "chosen_on": "inherited from A (...)"}
    assert inheritance("B", legacy) == (["B", "A"], "val crops of a")
    # one written with the trace, taken again: the chain grows by one, the chooser and its crops stay
    traced = {
        "inherited_from": {
            "model_id": "B",
            "chosen_on": "inherited from ...",
            "via": ["B", "A"],
            "origin_chosen_on": "val crops of a",
        }
    }
    assert inheritance("C", traced) == (["C", "B", "A"], "val crops of a")
    # a record written by the old text, before the trace (work/bundles/ens5kd has one): read back from its words
    old = {"inherited_from": {"model_id": "B", "chosen_on": "inherited from A (chosen there on X); this refit trained"}}
    assert inheritance("C", old) == (["C", "B", "A"], "X")
    older = {
        "inherited_from": {"model_id": "C", "chosen_on": "inherited from B, which took it from A (chosen there on X)"}
    }
    assert inheritance("D", older) == (["D", "C", "B", "A"], "X")
