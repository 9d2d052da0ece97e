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
