"""The detector manifest: converted res10 files (never committed), made by a command, checked at load.

`detector-manifest.json` sits beside the converted files (by default next to the Caffe originals in
the asset cache). It records the sha256 of the source caffemodel and prototxt they were made from and
the sha256 and size of every converted file, as the classifier bundle does. The device refuses a file
whose hash differs, or files made from other weights.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .assets import sha256_file
from .errors import BundleError

MANIFEST = "detector-manifest.json"
SCHEMA_VERSION = 1


def read(dir_: Path) -> Dict[str, Any]:
    p = Path(dir_) / MANIFEST
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError("%s: not readable JSON (%s)" % (p, exc))


def add_variant(dir_: Path, key: str, path: Path, *, prototxt: Path, caffemodel: Path, **info: Any) -> Dict[str, Any]:
    """Record one converted file (already written into dir_) in the manifest, with its hash."""
    dir_ = Path(dir_)
    m = read(dir_) or {
        "schema_version": SCHEMA_VERSION,
        "model": "res10_300x300_ssd_iter_140000 (Caffe)",
        "variants": {},
        "files": {},
    }
    src = {
        "caffemodel": {"file": Path(caffemodel).name, "sha256": sha256_file(Path(caffemodel))},
        "prototxt": {"file": Path(prototxt).name, "sha256": sha256_file(Path(prototxt))},
    }
    if m.get("source") and m["source"]["caffemodel"]["sha256"] != src["caffemodel"]["sha256"]:
        m["variants"], m["files"] = {}, {}  # made from other weights: start again
    m["source"] = src
    m["variants"][key] = dict(info, file=Path(path).name)
    m["files"][Path(path).name] = {"sha256": sha256_file(Path(path)), "size": Path(path).stat().st_size}
    m["updated"] = _dt.datetime.utcnow().replace(microsecond=0).isoformat() + "Z"
    (dir_ / MANIFEST).write_text(json.dumps(m, indent=1, sort_keys=True))
    return m


def checked_variant(dir_: Path, key: str, caffemodel: Path) -> Tuple[Path, Dict[str, Any]]:
    m = read(dir_)
    where = Path(dir_) / MANIFEST
    if not m:
        raise BundleError(
            "%s not found: make the converted detector first (`edge-maskd detector-export`, or "
            "`edge-export detector` for TFLite)" % where
        )
    v = (m.get("variants") or {}).get(key)
    if v is None:
        raise BundleError("%s has no detector variant %r (it has: %s)" % (where, key, ", ".join(sorted(m["variants"]))))
    src = (m.get("source") or {}).get("caffemodel", {}).get("sha256")
    have = sha256_file(Path(caffemodel))
    if src != have:
        raise BundleError(
            "%s: converted from a caffemodel with sha256 %s, but %s has %s; re-run the export"
            % (where, src, caffemodel, have)
        )
    f = Path(dir_) / v["file"]
    entry = (m.get("files") or {}).get(v["file"], {})
    if not f.exists():
        raise BundleError("%s: listed in %s but missing" % (f, where))
    got = sha256_file(f)
    if got != entry.get("sha256"):
        raise BundleError(
            "%s: sha256 %s does not match the detector manifest's %s; refusing to use it"
            % (f, got, entry.get("sha256"))
        )
    return f, v


def export_onnx(dir_: Path, prototxt: Path, caffemodel: Path, opset: int = 13) -> Path:
    """res10 -> ONNX (the device step: needs the `onnx` package and OpenCV, no TensorFlow)."""
    from . import res10

    dir_ = Path(dir_)
    dir_.mkdir(parents=True, exist_ok=True)
    layers = res10.layers_of(prototxt)
    model = res10.to_onnx(layers, res10.blobs_from_cv2(prototxt, caffemodel), opset)
    out = dir_ / "res10_fp32.onnx"
    out.write_bytes(model.SerializeToString())
    add_variant(
        dir_,
        "onnx_fp32",
        out,
        prototxt=prototxt,
        caffemodel=caffemodel,
        runtime="onnxruntime",
        precision="fp32",
        opset=opset,
        input="data: N x 3 x H x W, BGR minus (104, 177, 123); H, W dynamic",
        outputs="loc (N, P*4), conf (N, P*2); priors and DetectionOutput in edge.res10",
    )
    return out


def default_dir(caffemodel: Path) -> Path:
    return Path(caffemodel).parent / "res10-converted"


def find_dir(caffemodel: Path, override: Optional[Path] = None) -> Path:
    return Path(override) if override else default_dir(caffemodel)
