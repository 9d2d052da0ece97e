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


# A variant whose held-out top-1 agreement with the Keras model (the manifest's parity) is below this is not the
# model that was evaluated: the daemon says so, edge-bench does not recommend it, export's int8 check uses it.
PARITY_FLOOR = 0.99


@dataclass
class Variant:
    key: str  # e.g. "tflite_int8"
    file: str
    runtime: str  # backend type key: litert | edgetpu | onnxruntime | tensorrt
    precision: str  # fp32 | fp16 | int8
    input: TensorSpec
    output: TensorSpec
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def agreement(self) -> Optional[float]:
        """Top-1 agreement with the Keras model on held-out crops, as the manifest's parity records it."""
        a = (self.extra.get("parity") or {}).get("top1_agreement")
        return float(a) if isinstance(a, (int, float)) else None


FACE_LABELS = ("with_mask", "without_mask", "mask_weared_incorrect")
NO_FACE = "no_face"
NON_COMPLIANT = ("without_mask", "mask_weared_incorrect")


@dataclass(frozen=True)
class OperatingPoint:
    """How probabilities become a verdict, chosen on validation photos by export/ (manifest `operating_point`).

    `temperature` calibrates: p = softmax(log(p_model) / T). A face is flagged non-compliant when
    P(without_mask) + P(mask_weared_incorrect), over the three face classes, reaches `alert_threshold`;
    with a `no_face` output, a detection with P(no_face) >= `no_face_threshold` is not a face at all.
    A manifest without the section gets T = 1, argmax verdicts (threshold None) and no rejection."""

    temperature: float = 1.0
    alert_threshold: Optional[float] = None
    no_face_threshold: Optional[float] = None
    flip_average: bool = False  # average the outputs of the crop and its mirror image (chosen on validation)
    # test-time views of each box, (scale, shift) as in edge.crop.view_box; their outputs are averaged
    views: Tuple[Tuple[float, float], ...] = ((1.0, 0.0),)
    incorrect_weight: float = 1.0  # a flagged face is mask_weared_incorrect when w * P(incorrect) >= P(without)
    validation: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def _operating_point(manifest: Dict[str, Any], labels: List[str], where: Path) -> OperatingPoint:
    op = manifest.get("operating_point")
    if op is None:
        return OperatingPoint(no_face_threshold=0.5 if NO_FACE in labels else None)
    if not isinstance(op, dict):
        raise BundleError("%s: operating_point must be an object" % where)

    def num(key: str, lo: float, hi: float, default: Optional[float]) -> Optional[float]:
        v = op.get(key, default)
        if v is None:
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise BundleError("%s: operating_point.%s must be a number, got %r" % (where, key, v))
        if not lo <= f <= hi:
            raise BundleError("%s: operating_point.%s = %r is outside %g..%g" % (where, key, v, lo, hi))
        return f

    t = num("temperature", 0.05, 20.0, 1.0)
    flip = op.get("flip_average", False)
    if not isinstance(flip, bool):
        raise BundleError("%s: operating_point.flip_average must be true or false, got %r" % (where, flip))
    return OperatingPoint(
        temperature=1.0 if t is None else t,
        alert_threshold=num("alert_threshold", 0.0, 1.0, None),
        flip_average=flip,
        views=_views(op.get("views"), where),
        incorrect_weight=float(num("incorrect_weight", 0.05, 20.0, 1.0) or 1.0),
        no_face_threshold=num("no_face_threshold", 0.0, 1.0, 0.5 if NO_FACE in labels else None)
        if NO_FACE in labels
        else None,
        validation=dict(op.get("validation") or {}),
    )


MAX_VIEWS = 8


def _views(raw: Any, where: Path) -> Tuple[Tuple[float, float], ...]:
    """operating_point.views: a list of [scale, shift] pairs (absent: the box itself only)."""
    if raw is None:
        return ((1.0, 0.0),)
    bad = "%s: operating_point.views must be a list of 1-%d [scale 0.5..2, shift -0.5..0.5] pairs, got %r"
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_VIEWS:
        raise BundleError(bad % (where, MAX_VIEWS, raw))
    out = []
    for v in raw:
        if (
            not isinstance(v, list)
            or len(v) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            or not 0.5 <= v[0] <= 2.0
            or not -0.5 <= v[1] <= 0.5
        ):
            raise BundleError(bad % (where, MAX_VIEWS, raw))
        out.append((float(v[0]), float(v[1])))
    return tuple(out)


@dataclass
class Bundle:
    path: Path
    manifest: Dict[str, Any]
    labels: List[str]
    input_size: Tuple[int, int]  # (height, width)
    crop_margin: float
    variants: Dict[str, Variant]
    default_variant: str
    operating_point: OperatingPoint = field(default_factory=OperatingPoint)
    # res10 box -> annotation-convention box (edge.crop.fit_box); None: crop detector boxes as they are
    box_fit: Optional[Tuple[float, float, float, float]] = None

    @property
    def model_id(self) -> str:
        return str(self.manifest.get("model_id", self.path.name))

    def variant(self, key: Optional[str] = None) -> Variant:
        key = key or self.default_variant
        if key not in self.variants:
            raise BundleError(
                "%s: no variant %r in manifest; it has: %s"
                % (self.path / MANIFEST, key, ", ".join(sorted(self.variants)))
            )
        return self.variants[key]

    def checked_file(self, variant: Variant) -> Path:
        """The variant's file, after checking its sha256 against the manifest."""
        verify_files(self.path, self.manifest, [variant.file])
        return self.path / variant.file


def tensor_spec(d: Dict[str, Any], where: str) -> TensorSpec:
    try:
        q = d.get("quantization") or {}
        return TensorSpec(
            dtype=str(d["dtype"]),
            shape=[int(x) for x in d.get("shape", [])],
            scale=float(q.get("scale", 0.0)),
            zero_point=int(q.get("zero_point", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError("%s: bad tensor description (%s)" % (where, exc))


def verify_files(path: Path, manifest: Dict[str, Any], names: Optional[List[str]] = None) -> None:
    """Check sha256 (and size) of the listed files; raise naming the first file that differs."""
    files = manifest.get("files") or {}
    for name in names if names is not None else sorted(files):
        entry = files.get(name)
        if entry is None:
            raise BundleError("%s: file %s is not listed in the manifest's files" % (path / MANIFEST, name))
        fp = path / name
        if not fp.exists():
            raise BundleError("%s: listed in the manifest but missing" % fp)
        got = sha256_file(fp)
        if got != entry.get("sha256"):
            raise BundleError(
                "%s: sha256 %s does not match the manifest's %s; the bundle is corrupt or was "
                "modified, refusing to use it" % (fp, got, entry.get("sha256"))
            )


BOX_FIT_SIDES = ("left", "top", "right", "bottom")


def _box_fit(d: Any, mpath: Path) -> Optional[Tuple[float, float, float, float]]:
    if d is None:
        return None
    where = "%s input.detector_box_fit" % mpath
    if not isinstance(d, dict):
        raise BundleError("%s: must be an object with %s" % (where, ", ".join(BOX_FIT_SIDES)))
    out = []
    for k in BOX_FIT_SIDES:
        v = d.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not -0.5 < float(v) < 0.5:
            raise BundleError("%s.%s: %r is not a number between -0.5 and 0.5 (a fraction of the box)" % (where, k, v))
        out.append(float(v))
    if out[2] - out[0] <= -0.9 or out[3] - out[1] <= -0.9:
        raise BundleError("%s: would turn a box inside out" % where)
    return (out[0], out[1], out[2], out[3])


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
        raise BundleError(
            "model bundle %s has no %s (point classifier.bundle at a directory made by "
            "`edge-export convert`)" % (path, MANIFEST)
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError("%s: not readable JSON (%s)" % (mpath, exc))
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            "%s: schema_version %r is not supported (this maskwatch reads %d)" % (mpath, version, SCHEMA_VERSION)
        )
    try:
        labels = [str(x) for x in manifest["labels"]]
        inp = manifest["input"]
        size = (int(inp["size"][0]), int(inp["size"][1]))
        margin = float(inp.get("crop_margin", 0.0))
        box_fit = _box_fit(inp.get("detector_box_fit"), mpath)
        variants = {}
        for key, v in manifest["variants"].items():
            variants[key] = Variant(
                key=key,
                file=v["file"],
                runtime=v["runtime"],
                precision=v["precision"],
                input=tensor_spec(v["input"], "%s variants.%s.input" % (mpath, key)),
                output=tensor_spec(v["output"], "%s variants.%s.output" % (mpath, key)),
                extra={k: x for k, x in v.items() if k not in ("file", "runtime", "precision", "input", "output")},
            )
        default = str(manifest.get("default_variant") or next(iter(variants)))
    except (KeyError, TypeError, ValueError, IndexError, StopIteration) as exc:
        raise BundleError("%s: missing or malformed field %s" % (mpath, exc))
    unknown = [l for l in labels if l not in FACE_LABELS and l != NO_FACE]
    if unknown or len(set(labels)) != len(labels) or not [l for l in labels if l != NO_FACE]:
        raise BundleError(
            "%s: labels %s must be distinct names from %s (and optionally %s)"
            % (mpath, labels, list(FACE_LABELS), NO_FACE)
        )
    bundle = Bundle(
        path=path,
        manifest=manifest,
        labels=labels,
        input_size=size,
        crop_margin=margin,
        box_fit=box_fit,
        variants=variants,
        default_variant=default,
        operating_point=_operating_point(manifest, labels, mpath),
    )
    if verify:
        verify_files(path, manifest)
    return bundle
