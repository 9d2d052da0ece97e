"""The detector asset step: sources in order, sha256 always checked, errors that name the file and both hashes."""

from __future__ import annotations

import hashlib

import pytest

from edge import assets
from edge.errors import AssetError


def small_asset(data: bytes, **kw) -> assets.Asset:
    return assets.Asset(name="thing.bin", sha256=hashlib.sha256(data).hexdigest(), size=len(data), **kw)


def test_fetch_from_local_dir_verifies_and_caches(tmp_path):
    src = tmp_path / "usb"
    src.mkdir()
    (src / "thing.bin").write_bytes(b"weights")
    asset = small_asset(b"weights")
    out = assets.fetch(asset, tmp_path / "cache", local_dir=src, allow_network=False)
    assert out.read_bytes() == b"weights"
    # second call: served from the cache even with no source at all
    assert assets.fetch(asset, tmp_path / "cache", allow_network=False) == out


def test_wrong_hash_names_file_and_both_hashes(tmp_path):
    src = tmp_path / "usb"
    src.mkdir()
    (src / "thing.bin").write_bytes(b"tampered")
    asset = small_asset(b"weights")
    with pytest.raises(AssetError) as e:
        assets.fetch(asset, tmp_path / "cache", local_dir=src, allow_network=False)
    msg = str(e.value)
    assert "thing.bin" in msg
    assert asset.sha256 in msg and hashlib.sha256(b"tampered").hexdigest() in msg
    assert not (tmp_path / "cache" / "thing.bin").exists()


def test_text_asset_is_normalised_before_hashing(tmp_path):
    src = tmp_path / "usb"
    src.mkdir()
    (src / "thing.bin").write_bytes(b"a\r\nb\r\n")  # as the wheel ships deploy.prototxt
    asset = small_asset(b"a\nb\n", text=True)
    assert assets.fetch(asset, tmp_path / "c", local_dir=src, allow_network=False).read_bytes() == b"a\nb\n"


def test_unreachable_url_falls_through_with_reasons(tmp_path):
    asset = small_asset(b"x", urls=("http://127.0.0.1:9/nothing",))
    with pytest.raises(AssetError) as e:
        assets.fetch(asset, tmp_path / "c", timeout=1)
    assert "127.0.0.1:9" in str(e.value)


def test_corrupted_cache_file_is_detected(tmp_path, detector_dir):
    cache = tmp_path / "c"
    cache.mkdir()
    for a in assets.DETECTOR_ASSETS:
        (cache / a.name).write_bytes((detector_dir / a.name).read_bytes())
    assert assets.detector_paths(cache)[1].name == assets.DETECTOR_MODEL.name
    p = cache / assets.DETECTOR_MODEL.name
    p.write_bytes(p.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(AssetError) as e:
        assets.detector_paths(cache)
    assert str(p) in str(e.value) and assets.DETECTOR_MODEL.sha256 in str(e.value)


def test_real_detector_files_match_assets_md(detector_dir):
    for a in assets.DETECTOR_ASSETS:
        assert assets.sha256_file(detector_dir / a.name) == a.sha256
