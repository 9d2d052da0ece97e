"""The model bundle: the only contract between export/ (workstation) and edge/ (device).

A bundle is a directory with `manifest.json` and the model files it lists. The
manifest says which labels the outputs mean (in order), what input the model
takes, and the sha256 of every file; edge/ refuses a bundle whose files do not
match, because a silently swapped model is worse than no model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .assets import sha256_file
from .errors import BundleError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class TensorSpec:
    dtype: str  # "uint8" | "int8" | "float32" | "float16"
    shape: List[int]
    scale: float = 0.0  # quantization; 0 means not quantized
    zero_point: int = 0


@dataclass
class Variant:
    key: str  # e.g. "tflite_int8"
    file: str
    runtime: str  # backend type key: litert | edgetpu | onnxruntime | tensorrt
    precision: str  # fp32 | fp16 | int8
    input: TensorSpec
    output: TensorSpec
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Bundle:
    path: Path
    manifest: Dict[str, Any]
    labels: List[str]
    input_size: Tuple[int, int]  # (height, width)
    crop_margin: float
    variants: Dict[str, Variant]
    default_variant: str

    @property
    def model_id(self) -> str:
        return str(self.manifest.get("model_id", self.path.name))

    def variant(self, key: Optional[str] = None) -> Variant:
        key = key or self.default_variant
        if key not in self.variants:
            raise BundleError("%s: no variant %r in manifest; it has: %s"
                              % (self.path / MANIFEST, key, ", ".join(sorted(self.variants))))
        return self.variants[key]

    def checked_file(self, variant: Variant) -> Path:
        """The variant's file, after checking its sha256 against the manifest."""
        verify_files(self.path, self.manifest, [variant.file])
        return self.path / variant.file


def _tensor(d: Dict[str, Any], where: str) -> TensorSpec:
    try:
        q = d.get("quantization") or {}
        return TensorSpec(dtype=str(d["dtype"]), shape=[int(x) for x in d.get("shape", [])],
                          scale=float(q.get("scale", 0.0)), zero_point=int(q.get("zero_point", 0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError("%s: bad tensor description (%s)" % (where, exc))


def verify_files(path: Path, manifest: Dict[str, Any], names: Optional[List[str]] = None) -> None:
    """Check sha256 (and size) of the listed files; raise naming the first file that differs."""
    files = manifest.get("files") or {}
    for name in (names if names is not None else sorted(files)):
        entry = files.get(name)
        if entry is None:
            raise BundleError("%s: file %s is not listed in the manifest's files" % (path / MANIFEST, name))
        fp = path / name
        if not fp.exists():
            raise BundleError("%s: listed in the manifest but missing" % fp)
        got = sha256_file(fp)
        if got != entry.get("sha256"):
            raise BundleError("%s: sha256 %s does not match the manifest's %s; the bundle is corrupt or was "
                              "modified, refusing to use it" % (fp, got, entry.get("sha256")))


def load_bundle(path: Path, verify: bool = False) -> Bundle:
    """Read a bundle's manifest; with verify=True check every file's sha256 now.

    The device checks only the file it loads (`Bundle.checked_file`), so a bundle
    may carry variants for other hardware without slowing start-up.
    """
    path = Path(path)
    if path.name == MANIFEST and not path.is_dir():
        path = path.parent
    mpath = path / MANIFEST
    if not mpath.exists():
        raise BundleError("model bundle %s has no %s (point classifier.bundle at a directory made by "
                          "`edge-export convert`)" % (path, MANIFEST))
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError("%s: not readable JSON (%s)" % (mpath, exc))
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError("%s: schema_version %r is not supported (this maskwatch reads %d)"
                          % (mpath, version, SCHEMA_VERSION))
    try:
        labels = [str(x) for x in manifest["labels"]]
        inp = manifest["input"]
        size = (int(inp["size"][0]), int(inp["size"][1]))
        margin = float(inp.get("crop_margin", 0.0))
        variants = {}
        for key, v in manifest["variants"].items():
            variants[key] = Variant(key=key, file=v["file"], runtime=v["runtime"], precision=v["precision"],
                                    input=_tensor(v["input"], "%s variants.%s.input" % (mpath, key)),
                                    output=_tensor(v["output"], "%s variants.%s.output" % (mpath, key)),
                                    extra={k: x for k, x in v.items() if k not in ("file", "runtime", "precision",
                                                                                   "input", "output")})
        default = str(manifest.get("default_variant") or next(iter(variants)))
    except (KeyError, TypeError, ValueError, IndexError, StopIteration) as exc:
        raise BundleError("%s: missing or malformed field %s" % (mpath, exc))
    bundle = Bundle(path=path, manifest=manifest, labels=labels, input_size=size, crop_margin=margin,
                    variants=variants, default_variant=default)
    if verify:
        verify_files(path, manifest)
    return bundle
