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


@pytest.mark.parametrize("text, needle", [
    ("source: {url: a.mp4}\ndetector: {confidence: 7}\n", "must be <= 1.0"),
    ("source: {url: a.mp4}\ndetector: {mode: fast}\n", "allowed: single, native, tiles"),
    ("source: {url: a.mp4}\ntracker: {votes: many}\n", "expected int"),
    ("source: {url: a.mp4}\nspool: {policy: keep}\n", "drop_oldest"),
    ("site: a/b\nsource: {url: a.mp4}\n", "topic level"),
    ("source: {url: a.mp4}\ndetector: {roi: [0.5, 0, 0.2, 1]}\n", "detector.roi"),
    ("source: {url: a.mp4}\ndetector: {tile_sizes: [200, 10]}\n", "detector.tile_sizes"),
    ("detector: {}\n", "source.url is required"),
    ("source: [\n", "not valid YAML"),
])
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
