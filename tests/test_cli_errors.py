"""Bad input gives one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli


def one_line_error(r, needle: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    errors = [l for l in r.stderr.splitlines() if "error" in l.lower()]
    assert errors and needle in errors[-1], r.stderr


def cfg(tmp_path: Path, url: str, extra: str = "") -> Path:
    p = tmp_path / "c.yaml"
    p.write_text("site: s\nsource:\n  url: %s\n%s" % (url, extra))
    return p


def test_unreadable_video(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"this is not a video")
    r = run_cli(["edge-maskd", "run", "--config", cfg(tmp_path, bad)])
    one_line_error(r, "cannot be read as video")
    assert r.returncode == 66


def test_missing_video(tmp_path):
    r = run_cli(["edge-maskd", "run", "--config", cfg(tmp_path, tmp_path / "none.mp4")])
    one_line_error(r, "not found")


def test_missing_detector_weights(tmp_path, demo_clip):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli(["edge-maskd", "run", "--config", cfg(tmp_path, demo_clip, "detector:\n  model_dir: %s\n" % empty)])
    one_line_error(r, "edge-maskd assets fetch")
    assert "deploy.prototxt" in r.stderr


def test_manifest_hash_mismatch_refuses_to_start(tmp_path, demo_clip, detector_dir, shipped_bundle):
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle, bundle)
    man = json.loads((bundle / "manifest.json").read_text())
    victim = bundle / man["variants"][man["default_variant"]]["file"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    r = run_cli(["edge-maskd", "run", "--config", cfg(tmp_path, demo_clip, "classifier:\n  bundle: %s\n" % bundle)])
    one_line_error(r, "does not match the manifest")
    assert str(victim) in r.stderr


@pytest.mark.parametrize("command", ["classify", "scan"])
def test_an_image_that_cannot_be_read_says_why_in_one_line(tmp_path, shipped_bundle, detector_dir, command):
    """Missing, a folder, empty, or not decodable: each said as such, and the next file still goes (classify)."""
    import cv2

    bad, empty, folder = tmp_path / "x.jpg", tmp_path / "e.jpg", tmp_path / "photos"
    bad.write_text("nope")
    empty.write_bytes(b"")
    folder.mkdir()
    cases = {
        bad: "x.jpg is not a readable image",
        empty: "e.jpg is empty (0 bytes)",
        folder: "photos is a folder without photo files",
        tmp_path / "gone.jpg": "gone.jpg: no such file",
    }
    for path, reason in cases.items():
        r = run_cli(["edge-maskd", command, path])
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert reason in r.stderr, (path, r.stderr)
    ok = tmp_path / "ok.png"
    cv2.imwrite(str(ok), np.full((40, 40, 3), 128, np.uint8))
    r = run_cli(["edge-maskd", "classify", *cases, ok])
    assert r.returncode == 1 and [json.loads(ln)["file"] for ln in r.stdout.splitlines()] == [str(ok)]


@pytest.mark.parametrize("command", ["classify", "scan"])
def test_a_folder_is_the_photos_in_it(tmp_path, shipped_bundle, detector_dir, command):
    """`classify photos/` (or scan) reads the photos in the folder and below it, in name order; other files are
    not photos and are not read; a stem met twice is drawn twice."""
    import cv2

    (tmp_path / "photos" / "b").mkdir(parents=True)
    files = [tmp_path / "photos" / "a.png", tmp_path / "photos" / "b" / "a.JPG", tmp_path / "photos" / "c.png"]
    for f in files:
        cv2.imwrite(str(f) if f.suffix != ".JPG" else str(f.with_suffix(".jpg")), np.full((60, 60, 3), 128, np.uint8))
    (tmp_path / "photos" / "b" / "a.jpg").rename(files[1])
    (tmp_path / "photos" / "notes.txt").write_text("not a photo")
    extra = ["--draw", str(tmp_path / "drawn"), "-v"] if command == "scan" else []
    r = run_cli(["edge-maskd", command, tmp_path / "photos", *extra])
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert [json.loads(ln)["file"] for ln in r.stdout.splitlines()] == [str(f) for f in files]
    if command == "scan":
        assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == [
            "a-000000.png",
            "a-2-000000.png",
            "c-000000.png",
        ]


def test_classify_refuses_an_image_too_small_to_hold_a_face_and_goes_on(tmp_path, shipped_bundle):
    import cv2

    tiny, ok = tmp_path / "tiny.png", tmp_path / "ok.png"
    cv2.imwrite(str(tiny), np.full((5, 7, 3), 128, np.uint8))
    cv2.imwrite(str(ok), np.full((40, 40, 3), 128, np.uint8))
    r = run_cli(["edge-maskd", "classify", tiny, ok])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "tiny.png is 7 x 5 px, too small for a face crop" in r.stderr
    assert [json.loads(ln)["file"] for ln in r.stdout.splitlines()] == [str(ok)]  # the next file still classified


def _restart_prevented() -> set:
    from conftest import ROOT

    unit = (ROOT / "systemd" / "maskwatch.service").read_text()
    line = next(ln for ln in unit.splitlines() if ln.startswith("RestartPreventExitStatus="))
    return {int(x) for x in line.split("=", 1)[1].split()}


@pytest.mark.parametrize("variant", ["tflite_int8", "tflite_fp32", "onnx"])
@pytest.mark.parametrize("junk", [b"", b"not a model at all" * 100, b"TFL3" + b"\x00" * 64])
def test_a_broken_model_with_a_matching_hash_is_one_line(
    tmp_path, demo_clip, detector_dir, shipped_bundle, variant, junk
):
    """A bad build or a disk error before hashing: the sha256 matches the manifest, the file is no model.
    `run` and `scan` say so in one line naming the file, with an exit status the unit does not restart-loop on."""
    import hashlib

    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle, bundle)
    man = json.loads((bundle / "manifest.json").read_text())
    name = man["variants"][variant]["file"]
    (bundle / name).write_bytes(junk)
    man["files"][name] = {"sha256": hashlib.sha256(junk).hexdigest(), "size": len(junk)}
    (bundle / "manifest.json").write_text(json.dumps(man))
    for args in (
        ["run", "--config", cfg(tmp_path, demo_clip, "classifier:\n  bundle: %s\n  variant: %s\n" % (bundle, variant))],
        ["scan", "--bundle", bundle, "--variant", variant, demo_clip],
    ):
        r = run_cli(["edge-maskd"] + args)
        one_line_error(r, name)
        assert "not a valid" in r.stderr, r.stderr
        assert r.returncode in _restart_prevented(), (r.returncode, _restart_prevented())


def test_edge_export_without_tensorflow_is_one_line(tmp_path):
    """On a device (no TensorFlow), edge-export says what is missing in one line instead of a traceback."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None; sys.modules['tf2onnx'] = None;"
        "from export.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    crops = tmp_path / "c.npz"

    np.savez(str(crops), images=np.zeros((4, 96, 96, 3), np.uint8), labels=np.zeros(4, np.int64))
    r = subprocess.run(
        [sys.executable, "-c", code, "train", "--crops", str(crops), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 69, r.stderr
    assert "Traceback" not in r.stderr and "maskwatch[export]" in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if "error" in ln]) == 1, r.stderr


@pytest.mark.parametrize("content", ['{"left": 0.1}', "not json", '{"left": 0, "top": "x", "right": 0, "bottom": 0}'])
def test_a_bad_box_fit_file_is_one_line(tmp_path, content):
    bad = tmp_path / "box_fit.json"
    bad.write_text(content)
    for cmd in (["prepare", "--out", tmp_path / "c.npz"], ["extend", "--crops", "c", "--run", "r"]):
        args = ["edge-export"] + cmd + ["--box-fit", bad]
        if cmd[0] == "extend":
            args += ["--out-crops", tmp_path / "x.npz", "--out-run", tmp_path / "r2"]
        r = run_cli(args)
        assert r.returncode == 66, (cmd, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr and "--box-fit" in r.stderr
        assert len([ln for ln in r.stderr.splitlines() if "error" in ln]) == 1, r.stderr


@pytest.mark.parametrize(
    "script, args, needle, code",
    [
        # crops that are not there: the loader says which, and how to make them
        (
            "ensemble_members.py",
            ["{tmp}", "--choose-run", "{tmp}", "--crops", "{tmp}/none.npz"],
            "edge-export prepare",
            66,
        ),
        # a results file that is not there: its path
        ("compare_bundles.py", ["--md-from", "{tmp}/none.json", "--md", "{tmp}/x.md"], "none.json", 66),
        ("common_split.py", ["{tmp}/a", "{tmp}/b", "--out", "{tmp}/c"], "split.npz", 66),
        ("walker_misses.py", ["{tmp}/walkers-val-0.mp4"], "walkers.py first", 66),
        # a detector rule outside what the config allows: refused before any scene is read
        ("kiosk_setting.py", ["--run", "{tmp}", "--own-share", "2"], "--own-share", 2),
        ("kiosk_setting.py", ["--run", "{tmp}", "--containment", "x"], "--containment", 2),
        # the wide-view pyramid: only in tiles mode, each size within detector.tile_sizes' limits
        ("kiosk_setting.py", ["--run", "{tmp}", "--tile-sizes", "200", "100"], "goes with --mode tiles", 2),
        ("kiosk_setting.py", ["--run", "{tmp}", "--mode", "tiles", "--tile-sizes", "20"], "outside detector", 2),
        ("kiosk_setting.py", ["--run", "{tmp}", "--mode", "tile"], "invalid choice", 2),
        # a config override without '=' (it was an IndexError traceback), or with a value that is not YAML
        ("walkers.py", ["--run", "{tmp}", "--set", "detector.confidence"], "give KEY=VALUE", 2),
        ("walkers.py", ["--run", "{tmp}", "--set", "detector.roi=[1, 2"], "not YAML", 2),
        # a wrong key or value: the daemon's schema says so before any clip is made (a key without a section was
        # a ValueError traceback, an unknown key a daemon failure after the clips)
        ("walkers.py", ["--run", "{tmp}", "--set", "detector.confidense=0.2"], "unknown key detector.confidense", 78),
        ("walkers.py", ["--run", "{tmp}", "--set", "confidence=0.2"], "unknown key confidence", 78),
        ("walkers.py", ["--run", "{tmp}", "--set", "detector.confidence=abc"], "expected float", 78),
    ],
)
def test_benchmark_scripts_name_a_bad_path_in_one_line(tmp_path, script, args, needle, code):
    import subprocess
    import sys

    from conftest import ROOT

    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script)] + [a.format(tmp=tmp_path) for a in args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    one_line_error(r, needle)
    assert r.returncode == code


@pytest.mark.parametrize(
    "content, needle", [("{", "is not JSON"), ("[]", "no chosen setting"), ('{"x": 1}', "no chosen")]
)
def test_kiosk_setting_refuses_a_paired_file_that_is_not_its_own_in_one_line(tmp_path, content, needle):
    """--paired-with is read before any scene: a broken or foreign file is named in one line (it was a
    JSONDecodeError traceback), exit 65."""
    import subprocess
    import sys

    from conftest import ROOT

    bad = tmp_path / "other.json"
    bad.write_text(content)
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "kiosk_setting.py"),
            "--run",
            str(tmp_path),
            "--paired-with",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    one_line_error(r, needle)
    assert "other.json" in r.stderr
    assert r.returncode == 65


def test_a_refused_training_run_leaves_no_directory_behind(tmp_path):
    crops = tmp_path / "crops.npz"
    np.savez(str(crops), labels=np.zeros(4, np.int64), images=np.zeros((4, 8, 8, 3), np.uint8))
    out = tmp_path / "run"
    r = run_cli(["edge-export", "train", "--crops", crops, "--split-from", tmp_path / "nope", "--out", out])
    one_line_error(r, "not a run with a split")
    assert r.returncode == 66 and not out.exists()
    r = run_cli(["edge-export", "train", "--crops", tmp_path / "absent.npz", "--distill", "3", "--out", out])
    assert r.returncode == 2 and "argument --distill: must be between 0.0 and 1.0, got 3" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def tiny_split_run(tmp_path, images: np.ndarray, assign, report: dict):
    """A crops file of `images` (labels cycling through the three face classes, one photo each) and a run
    directory holding a split of it (`assign` per crop) with `report` as its split.json."""
    import json

    n, size = len(images), images.shape[1]
    crops = tmp_path / "crops.npz"
    np.savez(
        str(crops),
        images=images,
        labels=(np.arange(n) % 3).astype(np.int64),
        files=np.array(["p%d.jpg" % i for i in range(n)]),
        boxes=np.array([[0, 0, size, size]] * n),
        sources=np.array(["ilc2021-jolignier"] * n),
        groups=np.arange(n),
    )
    split_run = tmp_path / "split"
    split_run.mkdir()
    np.savez(str(split_run / "split.npz"), keep=np.arange(n), assign=np.array(assign))
    (split_run / "split.json").write_text(json.dumps(report))
    return crops, split_run


def test_training_into_a_directory_holding_another_interrupted_run_is_refused_before_writing(tmp_path):
    import json

    crops, split_run = tiny_split_run(tmp_path, np.zeros((12, 8, 8, 3), np.uint8), [0] * 8 + [1] * 4, {"counts": {}})
    out = tmp_path / "run"
    (out / "resume").mkdir(parents=True)
    (out / "resume" / "config.json").write_text(json.dumps({"config": {"alpha": 0.75}, "data": "0" * 64}))
    r = run_cli(["edge-export", "train", "--crops", crops, "--split-from", split_run, "--out", out, "--alpha", "1.0"])
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert last.startswith("--out %s: holds an interrupted run with another config or split" % out), last
    assert sorted(p.name for p in out.rglob("*")) == ["config.json", "resume"]


def test_a_split_taken_from_an_edited_run_is_counted_from_its_split_npz(tmp_path):
    """--split-from a run whose split.json lacks the counts (or tells another split's, after split.npz was
    edited by hand, e.g. half of val moved to train): training goes on, and the new run records the counts
    of the split it trained on, not a traceback (a KeyError before) nor the old record."""
    import json

    pytest.importorskip("tensorflow")
    images = np.random.RandomState(0).randint(0, 255, (30, 32, 32, 3)).astype(np.uint8)
    report = {"seed": 0, "note": "edited: no counts"}
    crops, split_run = tiny_split_run(tmp_path, images, [0] * 21 + [1] * 6 + [2] * 3, report)
    out = tmp_path / "run"
    args = ["--arch", "baseline", "--epochs", "1", "--input-size", "32", "--class-weight", "none"]
    r = run_cli(["edge-export", "train", "--crops", crops, "--split-from", split_run, "--out", out] + args)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    counts = json.loads((out / "split.json").read_text())["counts"]
    assert counts["train"] == {"with_mask": 7, "without_mask": 7, "mask_weared_incorrect": 7, "no_face": 0}
    assert counts["val"] == {"with_mask": 2, "without_mask": 2, "mask_weared_incorrect": 2, "no_face": 0}
    assert json.loads((out / "split.json").read_text())["note"] == "edited: no counts"  # the rest of the record kept


def test_a_refit_trains_on_val_too_and_its_bundle_must_inherit_an_operating_point(tmp_path):
    """train --refit: the val crops train as well (21 + 6 here, test's 3 never), the record keeps their report
    apart from a held-out one, and convert refuses to choose an operating point on them, in one line."""
    import json

    pytest.importorskip("tensorflow")
    images = np.random.RandomState(0).randint(0, 255, (30, 32, 32, 3)).astype(np.uint8)
    crops, split_run = tiny_split_run(tmp_path, images, [0] * 21 + [1] * 6 + [2] * 3, {"seed": 0})
    out = tmp_path / "run"
    args = ["--arch", "baseline", "--epochs", "1", "--input-size", "32", "--class-weight", "none", "--refit"]
    r = run_cli(["edge-export", "train", "--crops", crops, "--split-from", split_run, "--out", out] + args)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "train 27 / val 6 crops" in r.stderr
    info = json.loads((out / "train.json").read_text())
    assert info["config"]["refit"] is True and info["val"] is None and "macro_f1" in info["val_trained_on"]
    r = run_cli(["edge-export", "convert", "--run", out, "--crops", crops, "--out", tmp_path / "b"])
    assert r.returncode == 64 and "Traceback" not in r.stderr
    assert "--operating-point-from BUNDLE" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "b").exists()
    # as a teacher: it saw the val side, so a student holding val out is refused in one line; a refit student of
    # the same split trains on that val side too, and only its test side (never seen) must be unseen
    teach = ["--teacher", str(out), "--distill", "0.5"]
    r = run_cli(
        ["edge-export", "train", "--crops", crops, "--split-from", split_run, "--out", tmp_path / "s"]
        + args[:-1]
        + teach
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr and not (tmp_path / "s").exists()
    assert "--teacher %s: trained on 6 of this run's val/test crops" % out in r.stderr.strip().splitlines()[-1]
    r = run_cli(
        ["edge-export", "train", "--crops", crops, "--split-from", split_run, "--out", tmp_path / "rs"] + args + teach
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert json.loads((tmp_path / "rs" / "train.json").read_text())["config"]["teachers"] == [str(out)]


def test_extend_refuses_a_negative_count_before_reading_anything(tmp_path):
    r = run_cli(
        [
            "edge-export",
            "extend",
            "--crops",
            tmp_path / "none.npz",
            "--run",
            tmp_path,
            "--out-crops",
            tmp_path / "x.npz",
            "--out-run",
            tmp_path / "r",
            "--satellites",
            "-1",
        ]
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert (
        r.stderr.strip().splitlines()[-1]
        == "extend: --per-scene and --satellites count crops per scene: give 0 or more"
    )
    assert not (tmp_path / "r").exists() and not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("kind", ["text", "npy", "npz without labels", "truncated npz"])
def test_a_crops_file_that_is_not_one_is_one_line(tmp_path, kind):
    """Any file given to --crops by mistake: its path and how to make a crops file, not numpy's traceback."""
    import subprocess
    import sys

    from conftest import ROOT

    bad = tmp_path / "crops.npz"
    if kind == "text":
        bad.write_text("not crops\n")
    elif kind == "npy":
        with open(str(bad), "wb") as f:
            np.save(f, np.zeros(3))
    else:
        np.savez(
            str(bad),
            images=np.zeros((2, 8, 8, 3), np.uint8),
            **({} if kind != "truncated npz" else {"labels": np.zeros(2)}),
        )
        if kind == "truncated npz":
            bad.write_bytes(bad.read_bytes()[:100])
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "kiosk_setting.py"), "--run", str(tmp_path), "--crops", str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    one_line_error(r, "is not a crops file")
    assert "edge-export prepare --out FILE" in r.stderr  # how to make one, never "overwrite what you gave"
    assert "pickled" not in r.stderr  # numpy's word for a text file would mislead
    assert r.returncode == 65


def test_restore_work_names_a_missing_data_directory_in_one_line(tmp_path):
    """scripts/restore-work.sh checks its data directory before it installs or cuts anything."""
    import subprocess

    from conftest import ROOT

    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "restore-work.sh"), str(tmp_path / "nodata")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    one_line_error(r, "nodata")
    assert r.returncode == 66
    assert len(r.stderr.strip().splitlines()) == 1  # refused before setup.sh or any step ran


def test_walker_misses_refuses_a_clip_that_is_not_the_one_its_truth_describes(tmp_path):
    """A truncated or foreign video beside a walker truth is named in one line (it reported every visitor as
    never in view, exit 0), before any model loads."""
    import subprocess
    import sys

    from conftest import ROOT

    clip = tmp_path / "walkers-val-0.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    (tmp_path / "walkers-val-0.mp4.truth.json").write_text('{"frames": 120, "people": []}')
    (tmp_path / "walkers-val-0.mp4.events-gate.jsonl").write_text("")
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "walker_misses.py"), str(clip)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    one_line_error(r, "not the clip walkers.py wrote")
    assert r.returncode == 65


@pytest.mark.parametrize("names, needle", [(["ilc2021"], "--choose-on ilc2021"), ([], "--choose-on (nothing)")])
def test_kiosk_setting_refuses_a_choice_source_it_does_not_sweep_in_one_line(tmp_path, names, needle):
    """--choose-on names sources among --scenes (a license-clean bundle is chosen on its own): a name that is
    not one of them, or none at all, is refused in one line before any scene is read, exit 64."""
    import subprocess
    import sys

    from conftest import ROOT

    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "kiosk_setting.py"), "--run", str(tmp_path), "--choose-on"] + names,
        capture_output=True,
        text=True,
        timeout=300,
    )
    one_line_error(r, needle)
    assert "andrewmvd-train" in r.stderr and "ilc2021-jolignier" in r.stderr
    assert r.returncode == 64


@pytest.mark.parametrize("at", [["0.17", "0.3"], ["0.15", "0.35"], ["0.15", "0"]])
def test_kiosk_setting_at_a_setting_off_the_sweep_grid_is_one_line(tmp_path, at):
    """--at CONFIDENCE NO_FACE reports one given setting on test (a refit bundle's val cannot choose one): a
    value the sweep does not score is refused in one line before any scene is read, exit 64."""
    import subprocess
    import sys

    from conftest import ROOT

    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "kiosk_setting.py"), "--run", str(tmp_path), "--at"] + at,
        capture_output=True,
        text=True,
        timeout=300,
    )
    one_line_error(r, "--at %s %s" % (float(at[0]), float(at[1])))
    assert "0.15" in r.stderr and r.returncode == 64


def _val_run(path, mode="native", given=False):
    """A val result of kiosk_setting.py as it writes one: its chosen setting and the sweep it chose on."""
    ch = {"confidence": 0.15, "no_face_threshold": 0.2, "face_score": None}
    if given:
        ch["given"] = "--at, not chosen"
    else:
        ch["val"] = dict(ch, face_recall=0.77, noncompliant={"f1": 0.84})
    sweep = {
        "mode": mode,
        "detector_min_face_px": 20,
        "flip": False,
        "nms_containment": 0.8,
        "nms_own_share": 1.0,
        "matching": "IoU >= 0.4, or lying inside an annotated head box (80 % inside it, covering >= 25 % of it)",
    }
    path.write_text(json.dumps({"model_id": "m-val", "min_face": 0, "chosen": ch, "val": {"all": sweep}}))
    return path


@pytest.mark.parametrize(
    "mode, given, extra, needle",
    [
        ("native", False, ["--mode", "tiles", "--tile-sizes", "200", "100"], "mode native there, tiles here"),
        ("native", False, ["--mode", "native", "--det-min-face", "32"], "detector_min_face_px 20 there, 32 here"),
        ("native", False, ["--mode", "native", "--det-min-face", "20", "--flip"], "flip False there, True here"),
        ("native", False, ["--mode", "native", "--det-min-face", "20", "--whole-pass"], "whole_pass False there, True"),
        ("native", True, ["--mode", "native", "--det-min-face", "20"], "chose no setting on val"),
    ],
)
def test_kiosk_setting_given_by_a_val_run_of_another_sweep_is_one_line(tmp_path, mode, given, extra, needle):
    """--given-by VAL.json reports on test the setting another bundle chose on val: refused in one line, exit 65,
    before any scene is read, when that run swept something else or chose nothing."""
    import subprocess
    import sys

    from conftest import ROOT

    val = _val_run(tmp_path / "val.json", mode, given)
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "kiosk_setting.py"), "--run", str(tmp_path), "--min-face", "0"]
        + ["--given-by", str(val)]
        + extra,
        capture_output=True,
        text=True,
        timeout=300,
    )
    one_line_error(r, needle)
    assert r.returncode == 65


def test_kiosk_setting_given_by_a_whole_pass_run_with_another_floor_is_one_line(tmp_path):
    """A val run with the whole-frame pass records its size floor; one without a floor recorded (session 32's
    first variant kept every box) or with another floor is another sweep: refused in one line, exit 65."""
    import subprocess
    import sys

    from conftest import ROOT

    val = _val_run(tmp_path / "val.json")
    for floor, needle in ((None, "whole_pass_min_px None there, 160 here"), (120, "whole_pass_min_px 120 there")):
        doc = json.loads(val.read_text())
        doc["val"]["all"].update(whole_pass=True, **({} if floor is None else {"whole_pass_min_px": floor}))
        val.write_text(json.dumps(doc))
        r = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "kiosk_setting.py"), "--run", str(tmp_path)]
            + ["--min-face", "0", "--given-by", str(val), "--mode", "native", "--det-min-face", "20", "--whole-pass"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        one_line_error(r, needle)
        assert r.returncode == 65


def test_kiosk_setting_given_by_takes_the_chosen_setting_and_names_who_chose_it(tmp_path):
    """The same sweep: the val run's chosen confidence and no_face threshold become the given setting, and the
    record names the file and the bundle that chose them."""
    import argparse

    from conftest import bench_script

    mod = bench_script("kiosk_setting")
    a = argparse.Namespace(
        min_face=0,
        mode="native",
        tile_sizes=(),
        det_min_face=20,
        flip=False,
        whole_pass=False,
        containment=None,
        own_share=None,
        nms_decay=False,
        upscale=1.0,
        iou_only=False,
        enclose=False,
    )
    got = mod.given_setting(_val_run(tmp_path / "val.json"), a)
    assert got["model_id"] == "m-val" and got["file"].endswith("val.json")
    assert (got["val"]["confidence"], got["val"]["no_face_threshold"]) == (0.15, 0.2)
    assert got["val"]["noncompliant"]["f1"] == 0.84
    # a val run without the score decay chose for boxes the decay would sink: refused, naming the key
    from edge.errors import MaskwatchError

    with pytest.raises(MaskwatchError, match="nms_decay False there, True here"):
        mod.given_setting(tmp_path / "val.json", argparse.Namespace(**{**vars(a), "nms_decay": True}))
    # ... and one at the frame's own scale for a larger view (a file from before upscale was recorded: 1.0)
    with pytest.raises(MaskwatchError, match="upscale 1.0 there, 1.5 here"):
        mod.given_setting(tmp_path / "val.json", argparse.Namespace(**{**vars(a), "upscale": 1.5}))


def test_score_on_a_folder_without_datasets_is_one_line(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.txt").write_text("not a dataset")
    r = run_cli(["edge-export", "score", "--data", tmp_path / "photos"])
    one_line_error(r, "no dataset folder")
    r = run_cli(["edge-export", "score", "--data", tmp_path / "absent"])
    one_line_error(r, "no such folder")
    bad = tmp_path / "kiosk.yaml"
    bad.write_text("site: s\ndetector:\n  confidance: 0.2\n")
    r = run_cli(["edge-export", "score", "--data", tmp_path / "photos", "--config", bad])
    one_line_error(r, "unknown key detector.confidance")
    assert r.returncode == 78 and "reading" not in r.stderr  # refused before any photo is read


@pytest.mark.parametrize(
    "args, needle",
    [
        (["edge-maskd", "scan", "--every", "0", "demo/entrance.mp4"], "argument --every: must be at least 1, got 0"),
        (["edge-maskd", "classify", "--threads", "0", "x.jpg"], "argument --threads: must be at least 1, got 0"),
        (["edge-maskd", "scan", "--upscale", "-1", "x.jpg"], "--upscale -1.0: must be >= 0.25"),
        (["edge-maskd", "scan", "--tile-max-face", "3", "x.jpg"], "--tile-max-face 3.0: must be <= 1.0"),
        (["edge-maskd", "scan", "x.jpg", "--tile-size", "5"], "--tile-size 5: each must be 32-4096 pixels"),
        (["edge-maskd", "demo", "--fps", "0"], "argument --fps: must be at least 1.0, got 0"),
        (["edge-maskd", "scan", "--every", "x", "y.jpg"], "argument --every: 'x' is not a whole number"),
        (["edge-bench", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
        (["edge-bench", "--batch", "0"], "argument --batch: must be at least 1, got 0"),
        (["edge-bench", "--min-time", "nan"], "argument --min-time: must be at least 0.0, got nan"),
        (["edge-bench", "--busy-photos", "/nonexistent"], "--busy-photos /nonexistent: no such folder"),
        (["edge-bench", "--compare", "/nonexistent.json"], "--compare /nonexistent.json: No such file"),
        (
            ["edge-export", "train", "--batch", "0", "--crops", "c", "--out", "o"],
            "argument --batch: must be at least 1",
        ),
        (["edge-export", "prepare", "--margin", "-1"], "argument --margin: must be at least 0.0, got -1"),
    ],
)
def test_a_number_or_file_flag_out_of_range_is_one_usage_line_before_any_work(args, needle):
    """`--threads 0` once blamed the model ("not a valid litert model ... rebuild it"), `--batch 0` and `--every 0`
    ended in tracebacks, `--compare` a missing file after minutes of measuring: now each is refused as it is
    parsed, naming the flag, before a model loads."""
    r = run_cli(args, timeout=60)
    one_line_error(r, needle)
    assert r.returncode in (2, 64), r.returncode


def test_bench_from_json_names_a_file_that_is_not_its_results(tmp_path):
    for text, needle in (("root:x:0:0", "not a JSON file"), ('{"a": 1}', 'not edge-bench results (no "results" list')):
        f = tmp_path / "r.json"
        f.write_text(text)
        one_line_error(run_cli(["edge-bench", "--from-json", f], timeout=60), "--from-json %s: %s" % (f, needle))


def test_a_still_photo_as_the_daemons_source_is_refused_with_what_to_run(tmp_path):
    """OpenCV opens a photo as a one-frame sequence that then yields nothing: the daemon said "stopped after 0
    frames" and exited 0, and check-config said ok. Now the config check refuses it in one line that points to
    scan, and the capture refuses it too (a source built without a config)."""
    import cv2

    from edge.capture import FrameSource
    from edge.errors import SourceError

    photo = tmp_path / "door.jpg"
    cv2.imwrite(str(photo), np.full((120, 160, 3), 90, np.uint8))
    for command in ("run", "check-config"):
        args = ["edge-maskd", command] + (["--config"] if command == "run" else []) + [cfg(tmp_path, str(photo))]
        r = run_cli(args)
        one_line_error(r, "source.url = %s is a still photo" % photo)
        assert r.returncode == 78
    with pytest.raises(SourceError, match="is a still photo: source.url takes a camera"):
        FrameSource(str(photo)).open()


def test_a_damaged_spool_stops_the_daemon_in_one_line(tmp_path, demo_clip):
    spool = tmp_path / "spool.db"
    spool.write_bytes(b"not sqlite at all" * 100)
    extra = "spool:\n  path: %s\nmqtt:\n  host: 127.0.0.1\n  port: 1\n" % spool
    r = run_cli(["edge-maskd", "run", "--config", cfg(tmp_path, demo_clip, extra)])
    one_line_error(r, "spool.path %s: not a spool this daemon can read" % spool)
    assert r.returncode == 78 and spool.read_bytes() == b"not sqlite at all" * 100


def test_number_flags_say_their_limits_and_refuse_nan():
    import argparse

    from edge.argtypes import at_least, number

    cases = [
        (number(0.0, 1.0), "0.5", 0.5, ["1.5", "-0.1", "nan"], "must be between 0.0 and 1.0"),
        (number(0.0, 1.0, below=True), "0", 0.0, ["1.0", "nan"], "must be at least 0.0 and below 1.0"),
        (number(0.0, above=True), "0.01", 0.01, ["0", "-1", "nan"], "must be above 0.0"),
        (at_least(1), "3", 3, ["0", "2.5", "x"], None),
    ]
    for parse, ok, value, bad, said in cases:
        assert parse(ok) == value
        for text in bad:
            with pytest.raises(argparse.ArgumentTypeError) as e:
                parse(text)
            assert said is None or str(e.value).startswith(said), (text, str(e.value))
