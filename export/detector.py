"""`edge-export detector`: res10 (Caffe) -> ONNX, TFLite fp32, full-int8 and Edge-TPU-ready int8, no retraining.

The same layer list that edge.res10 turns into ONNX is rebuilt here as a Keras functional model (NHWC,
one fixed input size per file: TFLite shapes are static) from the very blobs cv2.dnn loaded from the
caffemodel, then converted with TFLiteConverter. int8 is calibrated on blobs of frames from the
*training* scenes. Every file goes into the detector manifest with its sha256 and the source's; none
is committed (they derive from third-party weights). Priors and DetectionOutput stay in edge.res10.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge import res10
from edge.detector_bundle import add_variant, export_onnx

log = logging.getLogger(__name__)


def keras_model(layers: Sequence[res10.Layer], blobs: Dict[str, List[np.ndarray]], height: int, width: int):
    """res10 up to its two heads as a Keras model: input (1, H, W, 3) = the blob in NHWC; outputs loc, conf."""
    import keras
    from keras import layers as kl

    class L2NormScale(kl.Layer):  # Caffe Normalize, per position across channels, per-channel scale
        def __init__(self, scale, eps, **kw):
            super().__init__(**kw)
            self.scale_init, self.eps = np.asarray(scale, np.float32), float(eps)

        def build(self, shape):
            self.s = self.add_weight(shape=(int(shape[-1]),), initializer="zeros", trainable=False, name="scale")
            self.s.assign(self.scale_init)

        def call(self, x):
            return x / keras.ops.sqrt(keras.ops.sum(x * x, axis=-1, keepdims=True) + self.eps) * self.s

    inp = keras.Input((height, width, 3), batch_size=1, name="data")
    t: Dict[str, object] = {"data": inp}
    hw = res10.feature_shapes(layers, height, width)
    skipped = set()
    for L in layers:
        if L.type in ("PriorBox", "DetectionOutput") or any(b in skipped for b in L.bottoms):
            skipped.update(L.tops)
            continue
        x = [t[b] for b in L.bottoms]
        b = blobs.get(L.name, [])
        p = L.params
        if L.type == "BatchNorm":
            sf = float(b[2].reshape(-1)[0]) if len(b) > 2 else 1.0
            sf = 1.0 / sf if sf else 0.0
            mean, var = b[0].reshape(-1) * sf, b[1].reshape(-1) * sf
            eps = float(res10._one(res10._one(p, "batch_norm_param", {}), "eps", 1e-5))
            bn = kl.BatchNormalization(epsilon=eps, name=L.name)
            y = bn(x[0])
            bn.set_weights([np.ones_like(mean), np.zeros_like(mean), mean, var])
        elif L.type == "Scale":
            gamma = b[0].reshape(-1)
            beta = b[1].reshape(-1) if len(b) > 1 else np.zeros_like(gamma)
            bn = kl.BatchNormalization(epsilon=0.0, name=L.name)
            y = bn(x[0])
            bn.set_weights([gamma, beta, np.zeros_like(gamma), np.ones_like(gamma)])
        elif L.type == "Convolution":
            cp = res10._one(p, "convolution_param", {})
            k, s, pad, dil = res10._conv_geom(cp)
            z = kl.ZeroPadding2D(pad, name=L.name + "_pad")(x[0]) if pad else x[0]
            has_bias = len(b) > 1
            conv = kl.Conv2D(
                b[0].shape[0], k, strides=s, dilation_rate=dil, padding="valid", use_bias=has_bias, name=L.name
            )
            y = conv(z)
            w = [b[0].transpose(2, 3, 1, 0)] + ([b[1].reshape(-1)] if has_bias else [])
            conv.set_weights(w)
        elif L.type == "ReLU":
            y = kl.ReLU(name=L.name)(x[0])
        elif L.type == "Pooling":
            pp = res10._one(p, "pooling_param", {})
            k, s = int(res10._one(pp, "kernel_size", 1)), int(res10._one(pp, "stride", 1))
            h_in, w_in = hw[L.bottoms[0]]
            h_out, w_out = hw[L.tops[0]]
            ph, pw = (h_out - 1) * s + k - h_in, (w_out - 1) * s + k - w_in  # Caffe's ceil mode
            z = (
                kl.ZeroPadding2D(((0, max(0, ph)), (0, max(0, pw))), name=L.name + "_pad")(x[0])
                if ph > 0 or pw > 0
                else x[0]
            )  # inputs are post-ReLU (>= 0): zero padding = -inf padding for max
            y = kl.MaxPooling2D(k, s, padding="valid", name=L.name)(z)
        elif L.type == "Eltwise":
            y = kl.Add(name=L.name)(x)
        elif L.type == "Normalize":
            np_ = res10._one(p, "norm_param", {})
            y = L2NormScale(b[0].reshape(-1), float(res10._one(np_, "eps", 1e-10)), name=L.name)(x[0])
        elif L.type == "Permute":
            y = x[0]  # (0, 2, 3, 1) of NCHW is NHWC: Keras' own layout
        elif L.type == "Flatten":
            y = kl.Flatten(name=L.name)(x[0])
        elif L.type == "Concat":
            y = kl.Concatenate(axis=-1, name=L.name)(x)
        elif L.type == "Reshape":
            y = kl.Reshape((-1, 2), name=L.name)(x[0])
        elif L.type == "Softmax":
            y = kl.Softmax(axis=-1, name=L.name)(x[0])
        else:
            raise ValueError("layer %s: type %s is not supported" % (L.name, L.type))
        for top in L.tops:
            t[top] = y
    loc = kl.Identity(name="loc")(t["mbox_loc"])
    conf = kl.Identity(name="conf")(t["mbox_conf_flatten"])
    return keras.Model(inp, [loc, conf], name="res10_%dx%d" % (width, height))


def calibration_blobs(
    scene_dirs: Sequence[Path], width: int, height: int, count: int = 200, seed: int = 0, only: Optional[set] = None
) -> np.ndarray:
    """Blobs (NHWC) of frames from training scenes, as the detector makes them (resize to the input size).
    `only`: the "<source>:<stem>" groups of the training split, so held-out scenes never calibrate."""
    import cv2

    from edge.datasets_io import read_image

    files: List[Path] = []
    for d in scene_dirs:
        files += [
            f
            for f in sorted((Path(d) / "images").glob("*"))
            if only is None or "%s:%s" % (Path(d).name, f.stem) in only
        ]
    rng = np.random.RandomState(seed)
    pick = [files[i] for i in rng.choice(len(files), size=min(count, len(files)), replace=False)]
    out = []
    for f in pick:
        img = read_image(f)
        if img is None:
            continue
        blob = cv2.dnn.blobFromImage(img, 1.0, (width, height), res10.MEAN_BGR, swapRB=False, crop=False)
        out.append(blob[0].transpose(1, 2, 0))
    return np.stack(out).astype(np.float32)


def tflite_bytes(model, precision: str, calib: Optional[np.ndarray] = None) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "int8":
        if calib is None or not len(calib):
            raise ValueError("int8 needs calibration frames")

        def rep():
            for c in calib:
                yield [c[None].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.float32  # heads dequantized inside: decoding needs real offsets
    return conv.convert()


def export(
    out_dir: Path,
    prototxt: Path,
    caffemodel: Path,
    *,
    sizes: Sequence[Tuple[int, int]] = ((300, 300),),
    int8: bool = True,
    calib_scenes: Sequence[Path] = (),
    calib_count: int = 200,
    calib_only: Optional[set] = None,
) -> Dict[str, Path]:
    """ONNX + per size TFLite fp32 and full-int8 (integer ops throughout, int8 input; the two heads are
    dequantized at the very end, so edgetpu_compiler maps everything before them), compiled for the Edge TPU
    where edgetpu_compiler is installed."""
    import shutil
    import subprocess

    out_dir = Path(out_dir)
    made = {"onnx_fp32": export_onnx(out_dir, prototxt, caffemodel)}
    layers = res10.layers_of(prototxt)
    blobs = res10.blobs_from_cv2(prototxt, caffemodel)
    for w, h in sizes:
        model = keras_model(layers, blobs, h, w)
        key = "tflite_fp32_%dx%d" % (w, h)
        path = out_dir / ("res10_fp32_%dx%d.tflite" % (w, h))
        path.write_bytes(tflite_bytes(model, "fp32"))
        add_variant(
            out_dir,
            key,
            path,
            prototxt=prototxt,
            caffemodel=caffemodel,
            runtime="litert",
            precision="fp32",
            input="data: 1 x %d x %d x 3 (NHWC blob)" % (h, w),
        )
        made[key] = path
        if int8:
            calib = calibration_blobs(calib_scenes, w, h, calib_count, only=calib_only)
            key = "tflite_int8_%dx%d" % (w, h)
            path = out_dir / ("res10_int8_%dx%d.tflite" % (w, h))
            path.write_bytes(tflite_bytes(model, "int8", calib))
            add_variant(
                out_dir,
                key,
                path,
                prototxt=prototxt,
                caffemodel=caffemodel,
                runtime="litert",
                precision="int8",
                calibration="%d frames of training scenes (%s)"
                % (len(calib), ", ".join(Path(s).name for s in calib_scenes)),
                input="data: 1 x %d x %d x 3 int8 (NHWC blob, quantized by the model's input scale)" % (h, w),
            )
            made[key] = path
            comp = shutil.which("edgetpu_compiler")
            if comp:
                r = subprocess.run([comp, "-s", "-o", str(out_dir), str(path)], capture_output=True, text=True)
                tpu = out_dir / (path.stem + "_edgetpu.tflite")
                if r.returncode == 0 and tpu.exists():
                    add_variant(
                        out_dir,
                        "edgetpu_int8_%dx%d" % (w, h),
                        tpu,
                        prototxt=prototxt,
                        caffemodel=caffemodel,
                        runtime="edgetpu",
                        precision="int8",
                        compiler=r.stdout[-2000:],
                    )
                    made["edgetpu_int8_%dx%d" % (w, h)] = tpu
                else:
                    log.warning("edgetpu_compiler failed on %s: %s", path, r.stderr[-500:])
            else:
                log.info(
                    "edgetpu_compiler not on PATH (Coral's apt repo, x86-64 Debian/Ubuntu only): the int8 file "
                    "is Edge-TPU-ready; compile it with `edgetpu_compiler %s`",
                    path.name,
                )
    return made


def parity(
    scene_dir: Path,
    scene_ids: Sequence[str],
    variants: Sequence[Tuple[str, Dict]],
    *,
    confidence: float = 0.5,
    mode: str = "single",
    min_face: int = 0,
    iou_match: float = 0.5,
) -> Dict[str, object]:
    """Each detector variant against cv2.dnn on the same held-out frames: per-face box IoU (reference faces
    matched one to one), faces lost / added, and ms per frame."""
    import time

    from edge.datasets_io import read_image
    from edge.detector import DetectorOptions, load_detector
    from edge.types import greedy_assign, iou

    from .datasets import parse_voc

    frames = []
    for sid in scene_ids:
        fname, _ = parse_voc(Path(scene_dir) / "annotations" / (sid + ".xml"))
        img = read_image(Path(scene_dir) / "images" / fname)
        if img is not None:
            frames.append(img)
    ref_det = load_detector(None, DetectorOptions(confidence=confidence, mode=mode, min_face_px=min_face))
    refs = [ref_det.detect(f) for f in frames]
    out: Dict[str, object] = {
        "frames": len(frames),
        "reference": "opencv (cv2.dnn, Caffe)",
        "confidence": confidence,
        "mode": mode,
        "min_face": min_face,
        "variants": {},
    }
    for name, kw in [("opencv", {})] + list(variants):
        det = load_detector(
            None, DetectorOptions(confidence=confidence, mode=mode, min_face_px=min_face, fallback=False, **kw)
        )
        ious: List[float] = []
        lost = added = 0
        ms = []
        for f, ref in zip(frames, refs):
            t = time.perf_counter()
            got = det.detect(f)
            ms.append((time.perf_counter() - t) * 1000)
            m = greedy_assign(
                [
                    (o, i, j)
                    for i, r in enumerate(ref)
                    for j, g in enumerate(got)
                    for o in (iou(r.box, g.box),)
                    if o >= iou_match
                ]
            )
            ious += [iou(ref[i].box, got[j].box) for i, j in m.items()]
            lost += len(ref) - len(m)
            added += len(got) - len(m)
        out["variants"][name] = {
            "options": kw,
            "backend": det.backend_in_use,
            "mean_iou": round(float(np.mean(ious)), 4) if ious else None,
            "faces_ref": sum(len(r) for r in refs),
            "faces_lost": lost,
            "faces_added": added,
            "ms_per_frame_p50": round(float(np.median(ms)), 2),
        }
        log.info("detector parity %s: %s", name, out["variants"][name])
    return out
