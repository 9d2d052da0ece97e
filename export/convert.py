"""Keras model -> every deployable variant -> a model bundle with a manifest.

Variants: TFLite fp32, fp16, full-integer int8 (uint8 in/out, so pixels map 1:1
onto the input), an Edge-TPU-ready int8 (integer ops only, batch 1; compiled when
`edgetpu_compiler` is on PATH), and ONNX (tf2onnx). Each one is run on held-out
crops through the same edge/ backend the device uses, and its agreement with the
Keras fp32 model is written into the manifest.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.assets import sha256_file
from edge.bundle import MANIFEST, SCHEMA_VERSION, load_bundle

from . import metrics

log = logging.getLogger(__name__)

VARIANTS = ("tflite_fp32", "tflite_fp16", "tflite_int8", "tflite_edgetpu", "onnx")
FILES = {
    "tflite_fp32": "model_fp32.tflite",
    "tflite_fp16": "model_fp16.tflite",
    "tflite_int8": "model_int8.tflite",
    "tflite_edgetpu": "model_int8_edgetpu_ready.tflite",
    "onnx": "model_fp32.onnx",
}


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Stored crops at the model input (they are cut at that size: normally a no-op)."""
    from edge.crop import resize_crops_rgb

    return resize_crops_rgb(images, (size, size))


def _converter(model, batch1: bool):
    import keras
    import tensorflow as tf

    if batch1:
        # The same layers behind an input with a fixed batch of 1: the Edge TPU compiler needs static shapes.
        inp = keras.Input(batch_shape=(1,) + tuple(model.input_shape[1:]), name="image")
        model = keras.Model(inp, model(inp), name=model.name)
    return tf.lite.TFLiteConverter.from_keras_model(model)


def tflite_bytes(
    model,
    precision: str,
    representative: Optional[np.ndarray] = None,
    *,
    io_dtype: str = "uint8",
    batch1: bool = False,
    granularity: str = "per-tensor",
) -> bytes:
    """One TFLite variant. int8 `granularity`: per-channel scales cost 12 bytes per output channel (scale +
    int64 zero point); in a thin MobileNetV2 (alpha 0.35: 14k channels, 0.4M weights) that is a quarter
    of the file, so `convert` takes per-tensor unless it disagrees with fp32 on the calibration crops
    (`int8_granularity_auto`; the manifest records the choice, why, and the held-out parity). Per-tensor is
    also what older Edge TPU compilers accept."""
    import tensorflow as tf

    conv = _converter(model, batch1)
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("full-integer int8 needs a representative dataset")
        rep = representative.astype(np.float32)

        def gen():
            for i in range(len(rep)):
                yield [rep[i : i + 1]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8 if io_dtype == "uint8" else tf.int8
        conv.inference_output_type = tf.uint8 if io_dtype == "uint8" else tf.int8
        if granularity == "per-tensor":
            conv._experimental_disable_per_channel = True
        elif granularity != "per-channel":
            raise ValueError("int8 granularity must be per-tensor or per-channel")
    elif precision != "fp32":
        raise ValueError("precision must be fp32, fp16 or int8")
    return conv.convert()


def tflite_probs(data: bytes, images: np.ndarray, key: str = "tflite_int8") -> np.ndarray:
    """Class probabilities of a TFLite model not yet in a bundle, run by the device's own LiteRT backend (its
    input quantization and output dequantization read from the file, as `tflite_io` writes them into the
    manifest): what the kiosk would compute with it."""
    import tempfile

    from edge import backends
    from edge.bundle import Variant, tensor_spec

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "candidate.tflite"
        path.write_bytes(data)
        io = tflite_io(path)
        variant = Variant(
            key=key,
            file=path.name,
            runtime="litert",
            precision="int8",
            input=tensor_spec(io["input"], "%s input" % key),
            output=tensor_spec(io["output"], "%s output" % key),
        )
        backend = backends.create("litert", path, variant, {"threads": 2})
        try:
            return backend.infer(images)
        finally:
            backend.close()


def int8_granularity_auto(
    model, representative: np.ndarray, ref_top: np.ndarray
) -> Tuple[Dict[str, Any], Optional[bytes]]:
    """Per-tensor int8 if its top-1 agreement with the Keras model on the calibration crops (training crops: no
    held-out face decides it) reaches edge.bundle.PARITY_FLOOR, the floor the daemon holds every variant to;
    else per-channel. A net trained here from scratch keeps narrow weight ranges and survives one scale per
    tensor; ImageNet-initialised depthwise layers do not (a MobileNetV2 alpha 1.0 from ImageNet weights fell
    to 52 % agreement per-tensor). Returns the record for the manifest, and the per-tensor model when it is
    the one chosen (the batch-N int8 variant is then that file: not converted twice)."""
    from edge.bundle import PARITY_FLOOR

    per_tensor = tflite_bytes(model, "int8", representative, granularity="per-tensor")
    agree = float(np.mean(tflite_probs(per_tensor, representative).argmax(1) == ref_top))
    chosen = "per-tensor" if agree >= PARITY_FLOOR else "per-channel"
    log.info("int8 per-tensor agreement on %d calibration crops %.4f: %s", len(representative), agree, chosen)
    record = {
        "chosen": chosen,
        "per_tensor_agreement_on_calibration_crops": round(agree, 4),
        "rule": "per-tensor when its top-1 agreement with fp32 on the calibration crops >= %.2f, else per-channel"
        % PARITY_FLOOR,
    }
    return record, (per_tensor if chosen == "per-tensor" else None)


def _member_of(name: str, members: Sequence[str]) -> Optional[str]:
    """Which ensemble member a TFLite tensor belongs to, from its name: the converter writes the Keras call path
    (`maskwatch_ensemble_1/member_3_1/...`), several of them joined by ';' for a fused tensor. None for a tensor
    outside every member (the input, the mean); an error for one that names two members."""
    found = set()
    for part in name.split(";"):
        for comp in part.split("/"):
            for m in members:
                if comp == m or (comp.startswith(m + "_") and comp[len(m) + 1 :].isdigit()):
                    found.add(m)
    if len(found) > 1:
        raise ValueError("TFLite tensor %r belongs to members %s at once" % (name, sorted(found)))
    return found.pop() if found else None


def _dense_weight_tensors(model, subgraph, members: Sequence[str]) -> set:
    """Indices of the weight and bias tensors of the CONV_2D and FULLY_CONNECTED operators of `members` in one
    subgraph: every weighted operator of theirs but the depthwise ones."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    ops = fu.schema_fb.BuiltinOperator
    dense = (ops.CONV_2D, ops.FULLY_CONNECTED)
    found = set()
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = max(code.builtinCode, code.deprecatedBuiltinCode)
        if kind not in dense or len(op.inputs) < 2:
            continue
        weights = subgraph.tensors[op.inputs[1]]
        if _member_of(weights.name.decode("utf-8", "replace"), members):
            found.update(int(i) for i in op.inputs[1:] if i >= 0)
    return found


def splice_members(
    per_channel: bytes,
    per_tensor: bytes,
    members_per_tensor: Sequence[str],
    members_depthwise: Sequence[str] = (),
) -> bytes:
    """One int8 file from two conversions of the same graph with the same calibration: the tensors of
    `members_per_tensor` (their weights and biases, data and quantization) from the per-tensor conversion, every
    other tensor from the per-channel one; for `members_depthwise`, only their depthwise weights stay per-channel
    (their convolution and dense weights and biases come from the per-tensor conversion). Both files must list
    the same tensors (name, shape, type) in the same order; the activations' quantization must agree (the same
    calibration gives the same ranges). No tensor is quantized twice: each one is exactly what one of the two
    conversions made of it."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    keep = list(members_per_tensor)
    if set(keep) & set(members_depthwise):
        raise ValueError("members %s are both per-tensor and depthwise" % sorted(set(keep) & set(members_depthwise)))
    base = fu.convert_bytearray_to_object(bytearray(per_channel))
    other = fu.convert_bytearray_to_object(bytearray(per_tensor))
    if len(base.subgraphs) != len(other.subgraphs):
        raise ValueError("the two int8 conversions differ in subgraphs")
    for gb, go in zip(base.subgraphs, other.subgraphs):
        if len(gb.tensors) != len(go.tensors):
            raise ValueError("the two int8 conversions differ in tensors (%d, %d)" % (len(gb.tensors), len(go.tensors)))
        dense = _dense_weight_tensors(base, gb, list(members_depthwise)) if members_depthwise else set()
        for index, (tb, to) in enumerate(zip(gb.tensors, go.tensors)):
            same = tb.name == to.name and tb.type == to.type and list(tb.shape) == list(to.shape)
            if not same:
                raise ValueError("the two int8 conversions differ at tensor %r / %r" % (tb.name, to.name))
            qb, qo = tb.quantization, to.quantization
            nb = 0 if qb is None or qb.scale is None else len(qb.scale)
            no = 0 if qo is None or qo.scale is None else len(qo.scale)
            has_data = bool(base.buffers[tb.buffer].data is not None and len(base.buffers[tb.buffer].data))
            if (index in dense or _member_of(tb.name.decode("utf-8", "replace"), keep)) and has_data:
                data = other.buffers[to.buffer].data
                buf = type(base.buffers[tb.buffer])()
                buf.data = data
                base.buffers.append(buf)  # a buffer of its own: never one another tensor still points to
                tb.buffer = len(base.buffers) - 1
                tb.quantization = qo
            elif not has_data and nb and (nb != no or not np.allclose(qb.scale, qo.scale)):
                raise ValueError("activation %r got other ranges in the two conversions" % tb.name)
    used = {t.buffer for g in base.subgraphs for t in g.tensors} | {m.buffer for m in base.metadata or []}
    for i, buf in enumerate(base.buffers):
        if i not in used:
            buf.data = None  # the per-channel weights a spliced tensor left: not written into the file
    return bytes(fu.convert_object_to_bytearray(base))


MEMBER_STEPS = {
    "per-member": ("per-tensor", "per-channel"),
    "per-member-depthwise": ("per-tensor", "per-channel-depthwise", "per-channel"),
}


def _splice_by_choice(pc: bytes, pt: bytes, chosen: Dict[str, str]) -> bytes:
    """The int8 file for each member's chosen granularity (at least one not per-tensor), spliced from the two
    conversions."""
    flat = [n for n, c in chosen.items() if c == "per-tensor"]
    depthwise = [n for n, c in chosen.items() if c == "per-channel-depthwise"]
    return splice_members(pc, pt, flat, depthwise) if flat or depthwise else pc


def int8_granularity_per_member(
    model, representative: np.ndarray, how: str = "per-member"
) -> Tuple[Dict[str, Any], bytes]:
    """Per-channel int8 scales only for the ensemble members that need them. Every member starts per-tensor; while
    the spliced file's top-1 agreement with the ensemble's fp32 on the calibration crops (training crops) is below
    PARITY_FLOOR, the member whose own per-tensor file agrees least with its own fp32 (among those not yet wholly
    per-channel) takes one step: `per-member`, straight to per-channel; `per-member-depthwise`, first per-channel
    on its depthwise weights alone (the layers whose ImageNet-initialised ranges one scale per tensor cannot hold;
    12 bytes a channel spent there only), then wholly per-channel. A pretrained member then keeps the per-channel
    scales it needs without the thin members paying for them too (the file is judged against fp32 by size:
    must-show 4). Returns the record for the manifest and the batch-N int8 file it chose."""
    from edge.bundle import PARITY_FLOOR

    from .ensemble import EnsembleError, members_of
    from .train import predict

    if how not in MEMBER_STEPS:
        raise ValueError("per-member granularity must be one of %s" % ", ".join(MEMBER_STEPS))
    ladder = MEMBER_STEPS[how]
    size = int(model.input_shape[1])
    try:
        members = members_of(model, kinds=("member", "rejector"))
    except EnsembleError:
        members = []
    if len(members) < 2:
        raise ValueError(
            "--int8-granularity %s needs an ensemble (edge-export ensemble); this model has no members" % how
        )
    names = [m.name[len("restored_") :] for m in members]
    alone: Dict[str, float] = {}
    for name, member in zip(names, members):
        top = predict(member, representative, size).argmax(1)
        data = tflite_bytes(member, "int8", representative, granularity="per-tensor")
        alone[name] = float(np.mean(tflite_probs(data, representative).argmax(1) == top))
        log.info("member %s alone: int8 per-tensor agreement on the calibration crops %.4f", name, alone[name])
    ref = predict(model, representative, size).argmax(1)
    per_tensor = tflite_bytes(model, "int8", representative, granularity="per-tensor")
    per_channel: Optional[bytes] = None
    chosen = {n: ladder[0] for n in names}
    steps = []
    data = per_tensor
    while True:
        agree = float(np.mean(tflite_probs(data, representative).argmax(1) == ref))
        moved = {n: c for n, c in chosen.items() if c != ladder[0]}
        step: Dict[str, Any] = {
            "per_channel": [n for n in names if chosen[n] == "per-channel"],
            "agreement_on_calibration_crops": round(agree, 4),
        }
        if how != "per-member":
            step["per_channel_depthwise"] = [n for n in names if chosen[n] == "per-channel-depthwise"]
        steps.append(step)
        log.info("int8 %s: agreement on the calibration crops %.4f", moved or "every member per-tensor", agree)
        open_ = [n for n in names if chosen[n] != ladder[-1]]
        if agree >= PARITY_FLOOR or not open_:
            break
        pick = min(open_, key=lambda n: (alone[n], n))
        chosen[pick] = ladder[ladder.index(chosen[pick]) + 1]
        if per_channel is None:
            per_channel = tflite_bytes(model, "int8", representative, granularity="per-channel")
        data = _splice_by_choice(per_channel, per_tensor, chosen)
    record = {
        "chosen": how,
        "members": {
            n: {"chosen": chosen[n], "alone_per_tensor_agreement_on_calibration_crops": round(alone[n], 4)}
            for n in names
        },
        "steps": steps,
        "rule": "every member per-tensor; while the file's top-1 agreement with fp32 on the calibration crops is "
        "below %.2f, the member whose own per-tensor file agrees least takes the next step of %s; the file "
        "takes each tensor from the conversion its member's step names" % (PARITY_FLOOR, " -> ".join(ladder)),
    }
    return record, data


def int8_bytes_per_member(model, representative: np.ndarray, record: Dict[str, Any], batch1: bool = False) -> bytes:
    """The int8 file by a per-member record: the per-channel and per-tensor conversions spliced."""
    chosen = {n: r["chosen"] for n, r in record["members"].items()}
    if all(c == "per-tensor" for c in chosen.values()):
        return tflite_bytes(model, "int8", representative, batch1=batch1, granularity="per-tensor")
    pc = tflite_bytes(model, "int8", representative, batch1=batch1, granularity="per-channel")
    if all(c == "per-channel" for c in chosen.values()):
        return pc  # no member per-tensor anywhere: the per-tensor conversion is not made
    pt = tflite_bytes(model, "int8", representative, batch1=batch1, granularity="per-tensor")
    return _splice_by_choice(pc, pt, chosen)


def onnx_bytes(model, opset: int = 13) -> bytes:
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    canonical_names(proto)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def canonical_names(proto) -> None:
    """Rename nodes and inner tensors in graph order. tf2onnx numbers them with a process-wide counter,
    so the same model converted twice in one process would differ byte for byte; the graph's own inputs
    and outputs keep their names (they are the contract)."""
    g = proto.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    names = {}

    def rename(n: str) -> str:
        if not n or n in keep:
            return n
        if n not in names:
            names[n] = "t%d" % len(names)
        return names[n]

    for init in g.initializer:
        init.name = rename(init.name)
    for i, node in enumerate(g.node):
        node.name = "n%d_%s" % (i, node.op_type)
        node.input[:] = [rename(x) for x in node.input]
        node.output[:] = [rename(x) for x in node.output]
    for vi in g.value_info:
        vi.name = rename(vi.name)
    for v in list(g.input) + list(g.output):
        for d in v.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.dim_param = "batch"


def tflite_io(path: Path) -> Dict[str, Dict[str, Any]]:
    """Input/output dtype, shape and quantization as the device will see them."""
    from edge.backends.litert import import_interpreter

    Interpreter = import_interpreter()[0]
    it = Interpreter(model_path=str(path))
    out = {}
    for key, det in (("input", it.get_input_details()[0]), ("output", it.get_output_details()[0])):
        scale, zp = det.get("quantization", (0.0, 0))
        d = {"dtype": np.dtype(det["dtype"]).name, "shape": [int(x) for x in det["shape"]]}
        if scale:
            d["quantization"] = {"scale": float(scale), "zero_point": int(zp)}
        out[key] = d
    return out


def edgetpu_compile(src: Path, out_dir: Path) -> Dict[str, Any]:
    """Run `edgetpu_compiler` when present; its log says how many ops map to the TPU."""
    exe = shutil.which("edgetpu_compiler")
    if not exe:
        return {
            "compiled": False,
            "reason": "edgetpu_compiler not on PATH on the converting machine (it is "
            "x86-64 Linux only, from Coral's apt repo); run `edgetpu_compiler %s` where it is" % src.name,
        }
    proc = subprocess.run([exe, "-s", "-o", str(out_dir), str(src)], capture_output=True, text=True)
    return {
        "compiled": proc.returncode == 0,
        "log": proc.stdout[-4000:],
        "returncode": proc.returncode,
        "file": src.stem + "_edgetpu.tflite" if proc.returncode == 0 else None,
    }


def parity(
    bundle_dir: Path,
    keys: Sequence[str],
    images: np.ndarray,
    labels: np.ndarray,
    ref_probs: np.ndarray,
    label_names: Sequence[str],
    threads: int = 2,
) -> Dict[str, Dict[str, Any]]:
    """Run each variant through the device's backend on held-out crops; compare with the Keras fp32 model."""
    from edge.backends import BackendUnavailable
    from edge.classifier import MaskClassifier

    bundle = load_bundle(bundle_dir)
    ref_top = ref_probs.argmax(1)
    ref_f1 = metrics.report(labels, ref_top, label_names)["macro_f1"]
    out = {}
    for key in keys:
        try:
            clf = MaskClassifier(bundle, key, {"threads": threads}, fallback=False)
        except BackendUnavailable as exc:
            out[key] = {"skipped": str(exc)}
            continue
        probs = clf.infer(images)
        top = probs.argmax(1)
        rep = metrics.report(labels, top, label_names)
        out[key] = {
            "top1_agreement": round(float(np.mean(top == ref_top)), 4),
            "max_abs_prob_diff": round(float(np.max(np.abs(probs - ref_probs))), 4),
            "macro_f1": rep["macro_f1"],
            "macro_f1_drop": round(ref_f1 - rep["macro_f1"], 4),
            "per_class_recall": {k: v["recall"] for k, v in rep["per_class"].items()},
            "n": int(len(labels)),
        }
    return out


def convert(
    model_path: Path,
    out_dir: Path,
    *,
    labels: Sequence[str],
    representative: np.ndarray,
    eval_images: np.ndarray,
    eval_labels: np.ndarray,
    crop_margin: float,
    model_card: Optional[Dict[str, Any]] = None,
    variants: Sequence[str] = VARIANTS,
    model_id: Optional[str] = None,
    force: bool = False,
    opset: int = 13,
    granularity: str = "auto",
    box_fit: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Write a bundle directory: every variant, parity against Keras fp32, manifest with sha256 per file."""
    import keras

    from export.train import predict

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise FileExistsError(
                "%s already holds a bundle; pass --force to replace it or choose a new --out" % out_dir
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    model = keras.models.load_model(str(model_path), compile=False)  # no optimizer state in the bundle
    size = int(model.input_shape[1])
    rep = _resize(representative, size)
    ev = _resize(eval_images, size)
    auto: Optional[Dict[str, Any]] = None
    int8_done: Optional[bytes] = None  # the batch-N int8 model, when the granularity check already made it
    if granularity == "auto":
        if any(k.endswith("int8") or k == "tflite_edgetpu" for k in variants):
            auto, int8_done = int8_granularity_auto(model, rep, predict(model, rep, size).argmax(1))
            granularity = auto["chosen"]
        else:
            granularity = "per-tensor"
    elif granularity in MEMBER_STEPS and any(k.endswith("int8") or k == "tflite_edgetpu" for k in variants):
        auto, int8_done = int8_granularity_per_member(model, rep, granularity)
    manifest_variants: Dict[str, Any] = {}
    for key in variants:
        fname = FILES[key]
        path = out_dir / fname
        log.info("converting %s", key)
        if key == "onnx":
            path.write_bytes(onnx_bytes(model, opset))
            manifest_variants[key] = {
                "file": fname,
                "runtime": "onnxruntime",
                "precision": "fp32",
                "opset": opset,
                "input": {"dtype": "float32", "shape": [-1, size, size, 3]},
                "output": {"dtype": "float32", "shape": [-1, len(labels)]},
            }
            continue
        precision = key.split("_")[1] if key != "tflite_edgetpu" else "int8"
        if key == "tflite_int8" and int8_done is not None:
            data = int8_done
        elif precision == "int8" and granularity in MEMBER_STEPS and auto is not None:
            data = int8_bytes_per_member(model, rep, auto, batch1=(key == "tflite_edgetpu"))
        else:
            data = tflite_bytes(
                model,
                precision,
                rep if precision == "int8" else None,
                batch1=(key == "tflite_edgetpu"),
                granularity=granularity,
            )
        path.write_bytes(data)
        io = tflite_io(path)
        manifest_variants[key] = {"file": fname, "runtime": "litert", "precision": precision, **io}
        if precision == "int8":
            manifest_variants[key]["quantization"] = {
                "scheme": "full-integer post-training",
                "granularity": granularity,
                **({"granularity_" + ("per_member" if granularity in MEMBER_STEPS else "auto"): auto} if auto else {}),
                "representative_crops": int(len(rep)),
                "io": "uint8 pixels in, uint8 probabilities out",
            }
        if key == "tflite_edgetpu":
            comp = edgetpu_compile(path, out_dir)
            manifest_variants[key]["edgetpu_compiler"] = comp
            if comp.get("compiled"):
                manifest_variants["edgetpu"] = dict(manifest_variants[key], file=comp["file"], runtime="edgetpu")
    # the Keras model itself: the reference for parity, the "seed-style" row of edge-bench, and re-export
    model.save(str(out_dir / "model_fp32.keras"))
    manifest_variants["keras_fp32"] = {
        "file": "model_fp32.keras",
        "runtime": "keras",
        "precision": "fp32",
        "input": {"dtype": "float32", "shape": [-1, size, size, 3]},
        "output": {"dtype": "float32", "shape": [-1, len(labels)]},
        "note": "workstation only (needs TensorFlow); not used on devices",
    }
    files = {p.name: {"sha256": sha256_file(p), "size": p.stat().st_size} for p in sorted(out_dir.iterdir())}
    manifest: Dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model_id": model_id or "%s-%s" % (model.name, _dt.datetime.utcnow().strftime("%Y%m%d%H%M")),
        "created": _dt.datetime.utcnow().replace(microsecond=0).isoformat() + "Z",
        "labels": list(labels),
        "input": {
            "size": [size, size],
            "layout": "NHWC",
            "color": "RGB",
            "range": [0, 255],
            "crop_margin": crop_margin,
            "resize": "area when shrinking, bilinear when growing",
            "note": "rescaling to [-1, 1] happens inside the model; feed raw RGB pixels",
            **({"detector_box_fit": box_fit} if box_fit else {}),
        },
        "default_variant": "tflite_int8" if "tflite_int8" in manifest_variants else next(iter(manifest_variants)),
        "variants": manifest_variants,
        "files": files,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    ref = predict(model, ev, size)
    par = parity(
        out_dir, [k for k, v in manifest_variants.items() if v["runtime"] != "keras"], ev, eval_labels, ref, labels
    )
    ref_rep = metrics.report(eval_labels, ref.argmax(1), labels)
    manifest["metrics"] = {"keras_fp32": ref_rep, "held_out": "test split (no near-duplicates of training data)"}
    for key, p in par.items():
        manifest["variants"][key]["parity"] = p
    if model_card:
        manifest["model_card"] = model_card
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def verify(
    bundle_dir: Path,
    eval_images: Optional[np.ndarray] = None,
    eval_labels: Optional[np.ndarray] = None,
    tolerance: float = 0.01,
) -> List[str]:
    """Re-check every hash; with held-out crops, re-run parity and compare with the manifest's figures."""
    from edge.bundle import verify_files

    bundle = load_bundle(bundle_dir)
    verify_files(bundle.path, bundle.manifest)
    problems: List[str] = []
    if eval_images is not None and eval_labels is not None:
        ev = _resize(eval_images, bundle.input_size[0])
        for key, v in bundle.manifest["variants"].items():
            stored = v.get("parity") or {}
            if "macro_f1" not in stored:
                continue
            from edge.classifier import MaskClassifier

            clf = MaskClassifier(bundle, key, fallback=False)
            f1 = metrics.report(eval_labels, clf.infer(ev).argmax(1), bundle.labels)["macro_f1"]
            if abs(f1 - stored["macro_f1"]) > tolerance:
                problems.append("%s: macro-F1 %.4f now, %.4f in the manifest" % (key, f1, stored["macro_f1"]))
    return problems
