"""`edge-maskd scan` / `classify`: how people check the model on their own pictures."""

from __future__ import annotations

import json

import cv2
import numpy as np

from conftest import run_cli

LABELS = {"with_mask", "without_mask", "mask_weared_incorrect"}


def test_scan_group_photos_finds_and_labels_faces(shared_data, detector_dir, shipped_bundle):
    photos = sorted((shared_data / "scenes-chandrikadeb7").glob("*.jp*g"))
    r = run_cli(["edge-maskd", "scan"] + photos)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert {row["file"] for row in rows} == {str(p) for p in photos}  # faces found in every photo
    for row in rows:
        assert set(row) >= {"file", "frame", "box", "label", "score", "probs"}
        assert row["label"] in LABELS and set(row["probs"]) == LABELS
        x1, y1, x2, y2 = row["box"]
        assert x2 > x1 and y2 > y1
        assert abs(sum(row["probs"].values()) - 1.0) < 0.02


def test_scan_video_reports_frames(demo_clip, detector_dir, shipped_bundle, tmp_path):
    r = run_cli(["edge-maskd", "scan", "--mode", "single", "--every", "30", "--draw", tmp_path / "seen", demo_clip])
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert rows and all(row["frame"] % 30 == 0 for row in rows)
    # --draw: every scanned frame written; a frame with a face carries its box in the verdict's colour
    drawn = sorted((tmp_path / "seen").glob("*.png"))
    assert {int(p.stem.rsplit("-", 1)[1]) for p in drawn} >= {row["frame"] for row in rows}
    row = rows[0]
    img = cv2.imread(str(tmp_path / "seen" / ("%s-%06d.png" % (demo_clip.stem, row["frame"]))))
    x1, y1, x2, y2 = row["box"]
    edge = img[y1 : y2 + 1, x1 : x1 + 2].reshape(-1, 3).astype(int)
    colour = {"with_mask": (60, 180, 60), "without_mask": (40, 40, 220), "mask_weared_incorrect": (0, 165, 255)}
    assert np.abs(edge - np.array(colour[row["label"]])).sum(1).mean() < 60


def test_classify_crops_from_the_demo_portrait(tmp_path, demo_clip, shipped_bundle):
    from edge import assets, demo

    face = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir())))
    x1, y1, x2, y2 = demo.FACE_BOX
    paths = []
    for style in ("none", "mask"):
        head = demo.draw_mask(face[demo.HEAD[1] : demo.HEAD[3], demo.HEAD[0] : demo.HEAD[2]], style)
        fx1, fy1 = x1 - demo.HEAD[0], y1 - demo.HEAD[1]
        crop = head[max(0, fy1 - 15) : fy1 + (y2 - y1) + 15, max(0, fx1 - 15) : fx1 + (x2 - x1) + 15]
        p = tmp_path / ("%s.png" % style)
        cv2.imwrite(str(p), crop)
        paths.append(p)
    r = run_cli(["edge-maskd", "classify"] + paths)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(p) for p in paths]
    assert all(row["label"] in LABELS for row in rows)
    assert rows[0]["probs"] != rows[1]["probs"]  # the drawn mask changes what the model sees


def test_scan_hides_what_the_rejector_calls_no_face(demo_clip, detector_dir, shipped_bundle):
    """At a low res10 floor most boxes on the demo clip are background; the no_face rejector takes them out of
    scan's output as the daemon takes them out of its tracks, and --rejected shows them."""

    def rows(*extra):
        r = run_cli(["edge-maskd", "scan", "--every", "30", "--confidence", "0.05", *extra, demo_clip])
        assert r.returncode == 0, r.stderr[-1500:]
        return [json.loads(line) for line in r.stdout.splitlines()]

    shown, everything = rows(), rows("--rejected")
    rejected = [row for row in everything if row["label"] == "no_face"]
    assert shown and rejected
    assert all(row["label"] in LABELS for row in shown)
    assert [row for row in everything if row["label"] != "no_face"] == shown
    from edge.config import SCAN

    assert all(row["no_face"] >= SCAN.no_face_threshold for row in rejected)
    # a rejector threshold that takes nothing out shows every box as a face
    assert len(rows("--no-face-threshold", "1.0")) > len(shown)


def test_scan_box_is_the_fitted_face_box(demo_clip, detector_dir, shipped_bundle):
    """`box` is the face in the annotation convention the classifier was trained and measured in (the bundle's
    detector_box_fit applied to res10's box); `detector_box` is res10's own."""
    from edge.bundle import load_bundle
    from edge.crop import fit_box

    fit = load_bundle(shipped_bundle).box_fit
    assert fit and any(fit)
    r = run_cli(["edge-maskd", "scan", "--every", "30", demo_clip])
    assert r.returncode == 0, r.stderr[-1500:]
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows
    from edge.types import clamp_box

    cap = cv2.VideoCapture(str(demo_clip))
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    for row in rows:
        assert row["box"] == list(clamp_box(fit_box(tuple(row["detector_box"]), fit), w, h)) != row["detector_box"]


def test_scan_refuses_thresholds_out_of_range(demo_clip, shipped_bundle):
    for flag in ("--no-face-threshold", "--confidence"):
        for bad in ("0", "1.5", "-0.2"):
            r = run_cli(["edge-maskd", "scan", flag, bad, demo_clip])
            assert r.returncode == 64, (flag, bad, r.returncode, r.stderr)
            assert flag in r.stderr and "Traceback" not in r.stderr
    r = run_cli(["edge-maskd", "scan", "--min-face-px", "-3", demo_clip])
    assert r.returncode == 64 and r.stderr.strip().splitlines()[-1].endswith(
        "--min-face-px -3: must be >= 0 (as detector.min_face_px in a config)"
    )


def test_classify_cuts_a_photo_as_training_cut_it(tmp_path, detector_dir, shipped_bundle):
    """A photo of one person: the training crop of a folder-per-class set (export.datasets.read_folders) and
    the crop `edge-maskd classify --find-face` classifies are one function's (edge.crop.photo_face), pixel for pixel, and
    `classify --find-face`'s verdict is the operating point's views of that face; by default classify takes the
    image whole (a face crop)."""
    from edge import assets
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.crop import fit_box, photo_face
    from edge.datasets_io import read_image
    from edge.detector import PHOTO_FACE_CONFIDENCE, load_detector, photo_face_options
    from edge.types import clamp_box
    from export.datasets import Report, read_folders

    portrait = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir())))
    (tmp_path / "with_mask").mkdir()
    photo = tmp_path / "with_mask" / "person.png"
    cv2.imwrite(str(photo), portrait)
    bundle = load_bundle(shipped_bundle)
    clf = MaskClassifier(bundle, None, fallback=False)
    det = load_detector(None, photo_face_options(fallback=False))
    (train,) = read_folders(
        tmp_path,
        margin=bundle.crop_margin,
        size=clf.size[0],
        source="t",
        report=Report(),
        detector=det,
        box_fit=bundle.box_fit,
    )
    img = read_image(photo)
    crop, box, how = photo_face(img, det.detect(img), clf.margin, clf.size, bundle.box_fit, PHOTO_FACE_CONFIDENCE)
    assert train.how == how == "detector" and tuple(train.box) == tuple(box)
    assert np.array_equal(train.image, crop)
    views = clf.preprocess_views(img, [box], detector=True)
    assert np.array_equal(views[0][0], crop)  # the device's own crop of the same box
    expected = clf.postprocess(clf.probs(views))[0]

    r = run_cli(["edge-maskd", "classify", "--find-face", photo])
    assert r.returncode == 0, r.stderr[-1500:]
    (row,) = [json.loads(line) for line in r.stdout.splitlines()]
    h, w = img.shape[:2]
    assert row["face"] == "detector" and row["box"] == list(clamp_box(fit_box(box, bundle.box_fit), w, h))
    assert row["label"] == expected.label and row["probs"] == expected.probs

    r = run_cli(["edge-maskd", "classify", photo])  # the default: the image is a face crop, classified whole
    (whole,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert whole["face"] == "whole" and whole["box"] == [0, 0, w, h]
    assert whole["probs"] != row["probs"]  # the whole portrait is not the face


def test_scan_defaults_are_the_measured_all_faces_setting():
    """scan's defaults (edge.config.SCAN) are the setting chosen on val over all faces of the real scenes and
    measured on test in benchmarks/results/allfaces-auto-d12.json: a re-measured setting must move them too."""
    from pathlib import Path

    from edge.cli import build_parser
    from edge.config import SCAN, DetectorConfig

    res = json.loads((Path(__file__).resolve().parent.parent / "benchmarks/results/allfaces-auto-d12.json").read_text())
    measured = res["test"]["all"]
    assert (SCAN.confidence, SCAN.no_face_threshold) == (
        res["chosen"]["confidence"],
        res["chosen"]["no_face_threshold"],
    )
    assert (SCAN.mode, SCAN.min_face_px, measured["min_face"]) == (
        measured["mode"],
        measured["detector_min_face_px"],
        0,
    )
    assert list(SCAN.tile_sizes) == measured["tile_sizes"]
    assert measured["auto_tiles_below_px"] == DetectorConfig().auto_tiles_below_px
    a = build_parser().parse_args(["scan", "photo.jpg"])
    assert (a.mode, a.confidence, a.no_face_threshold, a.min_face_px, a.tile_size) == (
        SCAN.mode,
        SCAN.confidence,
        SCAN.no_face_threshold,
        SCAN.min_face_px,
        list(SCAN.tile_sizes),
    )
