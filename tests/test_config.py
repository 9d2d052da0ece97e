"""Config validation: unknown keys rejected, errors name file/line/key/value, exit 78."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import load_config
from edge.errors import EX_CONFIG, ConfigError

from conftest import ROOT, run_cli


def write(tmp_path, text) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_demo_config_is_valid():
    cfg = load_config(ROOT / "firmware-config" / "demo.yaml")
    assert cfg.site == "demo" and cfg.mqtt.host is None
    assert cfg.tracker.votes == 5 and cfg.spool.policy == "drop_oldest"  # defaults filled


def test_unknown_key_names_file_line_and_path(tmp_path):
    p = write(tmp_path, "site: lobby\nsource:\n  url: a.mp4\ndetector:\n  confidense: 0.4\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "line 5" in msg and "detector.confidense" in msg and "confidence" in msg
    assert e.value.exit_code == EX_CONFIG


@pytest.mark.parametrize(
    "text, needle",
    [
        ("source: {url: a.mp4}\ndetector: {confidence: 7}\n", "must be <= 1.0"),
        ("source: {url: a.mp4}\ndetector: {mode: fast}\n", "allowed: single, native, tiles"),
        ("source: {url: a.mp4}\ntracker: {votes: many}\n", "expected int"),
        ("source: {url: a.mp4}\nspool: {policy: keep}\n", "drop_oldest"),
        ("site: a/b\nsource: {url: a.mp4}\n", "topic level"),
        ("source: {url: a.mp4}\ndetector: {roi: [0.5, 0, 0.2, 1]}\n", "detector.roi"),
        ("source: {url: a.mp4}\ndetector: {tile_sizes: [200, 10]}\n", "detector.tile_sizes"),
        ("detector: {}\n", "source.url is required"),
        ("source: [\n", "not valid YAML"),
    ],
)
def test_bad_values_are_explained(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert needle in str(e.value)


def test_check_config_exits_78_without_traceback(tmp_path):
    p = write(tmp_path, "source: {url: a.mp4}\nmqtt: {hots: x}\n")
    r = run_cli(["edge-maskd", "check-config", p])
    assert r.returncode == 78
    assert "mqtt.hots" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_config_file(tmp_path):
    r = run_cli(["edge-maskd", "run", "--config", tmp_path / "nope.yaml"])
    assert r.returncode == 78 and "not found" in r.stderr and "Traceback" not in r.stderr


def test_password_from_credentials_directory(tmp_path, monkeypatch):
    from edge.config import mqtt_password

    (tmp_path / "mqtt-password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = load_config(write(tmp_path, "source: {url: a.mp4}\nmqtt: {host: broker}\n"))
    assert mqtt_password(cfg) == "s3cret"


def _leaves(node, path=()):
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _leaves(v, path + (k,))
        else:
            yield path + (k,)


def test_every_key_of_the_example_is_read_by_the_daemon():
    """Each key kiosk.example.yaml sets or documents is read by some code in edge/ other than the schema:
    a key nothing reads (as classifier.batch once was) fails here."""
    import re

    import yaml

    from edge.config import SCHEMA

    example = yaml.safe_load((ROOT / "firmware-config" / "kiosk.example.yaml").read_text())
    code = "\n".join(p.read_text() for p in (ROOT / "edge").rglob("*.py") if p.name != "config.py")
    cfg_src = (ROOT / "edge" / "config.py").read_text()
    code += cfg_src[cfg_src.index("def mqtt_password") :]  # the one reader that lives beside the schema
    unread = []
    for path in _leaves(SCHEMA):
        node = example
        for part in path[:-1]:
            node = (node or {}).get(part) or {}
        section = ".".join(path[:-1])
        # read as cfg.<section>.<key>, or as <section variable>.<key> after `x = cfg.<section>`
        if not re.search(r"\.%s\b" % re.escape(path[-1]), code):
            unread.append(".".join(path))
        elif section and not re.search(r"\.%s\b" % re.escape(path[-2 if len(path) > 1 else -1]), code):
            unread.append(".".join(path))
    assert not unread, "config keys nothing in edge/ reads: %s" % ", ".join(unread)
    assert "batch" in example["classifier"]  # the example sets it, so it must be used


def test_classifier_batch_is_the_inference_batch(shipped_bundle):
    import numpy as np

    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier

    clf = MaskClassifier(load_bundle(shipped_bundle), "tflite_fp32", batch=3)
    calls = []
    real = clf.backend.infer
    clf.backend.infer = lambda x: (calls.append(len(x)), real(x))[1]
    clf.infer(np.zeros((7,) + tuple(clf.size) + (3,), np.uint8))
    assert calls == [3, 3, 1]


def test_the_dataclass_defaults_are_the_ones_the_options_use():
    from edge.config import Config
    from edge.detector import DetectorOptions
    from edge.tracker import TrackerOptions

    c = Config()
    d, t = DetectorOptions(), TrackerOptions()
    assert (d.min_face_px, d.tile_max_face, d.confidence, d.mode) == (
        c.detector.min_face_px,
        c.detector.tile_max_face,
        c.detector.confidence,
        c.detector.mode,
    )
    assert (t.votes, t.margin, t.border_px, t.max_missed) == (
        c.tracker.votes,
        c.tracker.margin,
        c.tracker.border_px,
        c.tracker.max_missed,
    )


@pytest.mark.parametrize("site", ["", "lobby.east", "my kiosk", "a/b", "a+b", "#", "$SYS", "x" * 65, "ü"])
def test_site_and_device_must_be_one_topic_level(tmp_path, site):
    import yaml

    for key in ("site", "device"):
        p = write(tmp_path, yaml.safe_dump({key: site, "source": {"url": "a.mp4"}}))
        with pytest.raises(ConfigError) as e:
            load_config(p)
        assert key in str(e.value) and "topic level" in str(e.value)


def test_duplicate_keys_are_refused(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "source: {url: a.mp4}\ndetector: {confidence: 0.4}\ndetector: {mode: native}\n"))
    assert "detector is given twice" in str(e.value) and "line 3" in str(e.value)
