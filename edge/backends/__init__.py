"""Classifier runtimes as plugins, keyed by a type name (as Frigate's detector plugins are).

Each module in this package defines one subclass of :class:`Backend` with a
``type_key``; modules are discovered at first use, so adding a runtime is one new
file plus its name in the config schema. A module must not import its runtime at
import time (TensorRT, pycuda, the Edge TPU library are absent on most machines):
it imports them in ``__init__`` and raises :class:`BackendUnavailable` when missing.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from pathlib import Path
from typing import Any, Dict, Optional, Type

import numpy as np

from ..bundle import TensorSpec, Variant
from ..errors import BundleError, MaskwatchError

log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """The runtime or the hardware for this backend is not on this machine (the reason is the message)."""


class Backend:
    """One loaded model on one runtime.

    ``infer`` takes a batch of uint8 RGB images (N, H, W, 3) already resized to the
    model's input (the model rescales inside itself) and returns float32
    probabilities (N, classes). Quantization of input and output is the backend's
    business, read from the bundle's tensor specs.
    """

    type_key = ""

    def __init__(self, model_path: Path, variant: Variant, options: Optional[Dict[str, Any]] = None) -> None:
        self.model_path = Path(model_path)
        self.variant = variant
        self.options = dict(options or {})

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        return "%s:%s" % (self.type_key, self.variant.key)

    def close(self) -> None:
        pass


def to_input(batch: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """uint8 pixels -> the tensor the model takes (float, or quantized with the model's scale/zero point)."""
    if spec.dtype in ("float32", "float16"):
        return batch.astype(spec.dtype)
    if spec.scale and not (spec.dtype == "uint8" and abs(spec.scale - 1.0) < 1e-6 and spec.zero_point == 0):
        q = np.round(batch.astype(np.float32) / spec.scale + spec.zero_point)
        info = np.iinfo(np.dtype(spec.dtype))
        return np.clip(q, info.min, info.max).astype(spec.dtype)
    return batch.astype(spec.dtype)


def from_output(raw: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.scale and raw.dtype in (np.uint8, np.int8):
        return ((raw.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)
    return raw.astype(np.float32)


_REGISTRY: Dict[str, Type[Backend]] = {}


def find_plugins(package: str, path, base: type) -> Dict[str, Any]:
    """{type_key: class} of every subclass of `base` with a type_key in the modules of a package
    (the classifier's backends here, the detector's in edge.detectors)."""
    found: Dict[str, Any] = {}
    for mod in pkgutil.iter_modules(path):
        m = importlib.import_module("%s.%s" % (package, mod.name))
        for obj in vars(m).values():
            key = getattr(obj, "type_key", None) if isinstance(obj, type) and issubclass(obj, base) else None
            if key:
                found[key] = obj
    return found


def _discover() -> None:
    if not _REGISTRY:
        _REGISTRY.update(find_plugins(__name__, __path__, Backend))


def available_types() -> Dict[str, Type[Backend]]:
    _discover()
    return dict(_REGISTRY)


def create(type_key: str, model_path: Path, variant: Variant, options: Optional[Dict[str, Any]] = None) -> Backend:
    _discover()
    if type_key not in _REGISTRY:
        raise BackendUnavailable("no backend %r (known: %s)" % (type_key, ", ".join(sorted(_REGISTRY))))
    return load_guarded(lambda: _REGISTRY[type_key](model_path, variant, options), model_path, type_key)


def load_guarded(load, path, runtime: str):
    """Run a runtime's model loader; anything but a missing runtime becomes one BundleError naming the file.
    (A file can match its manifest's sha256 and still be no model: a bad build, a disk error before hashing.)"""
    try:
        return load()
    except (BackendUnavailable, MaskwatchError):
        raise
    except Exception as exc:  # noqa: BLE001 - each runtime raises its own types (ValueError, RuntimeError, ...)
        msg = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise BundleError(
            "%s is not a valid %s model (%s): rebuild it with edge-export convert, or restore the "
            "bundle" % (path, runtime, msg)
        )
