"""The res10 SSD face detector outside OpenCV: its Caffe graph read as data, priors and box decoding in numpy.

OpenCV's DNN is the only runtime that reads the Caffe files directly. For ONNX Runtime, TensorRT,
LiteRT and the Edge TPU the same weights (no retraining) are rebuilt in another format from two
sources: `deploy.prototxt` (plain text: the layers and their parameters) and the layer blobs that
`cv2.dnn.readNetFromCaffe` exposes (`net.getParam`). The network part (convolutions to the two
heads `loc` and `conf`) goes into the converted file; the parts that depend on the input size
(PriorBox) and the DetectionOutput layer (box decoding, NMS) run here, in one shared piece, so
every backend returns exactly what cv2.dnn returns: rows [0, 1, score, x1, y1, x2, y2] in 0..1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

MEAN_BGR = (104.0, 177.0, 123.0)


# -- the prototxt as data -----------------------------------------------------------------------------------
def _tokens(text: str):
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[{}:]|[^\s{}:"]+', re.sub(r"#[^\n]*", "", text)):
        yield m.group(0)


def parse_prototxt(text: str) -> Dict[str, Any]:
    """Protobuf text format -> nested dicts; repeated keys become lists (always, for `layer`)."""
    toks = list(_tokens(text))
    pos = 0

    def value(tok: str):
        if tok.startswith('"'):
            return tok[1:-1]
        try:
            return int(tok)
        except ValueError:
            try:
                return float(tok)
            except ValueError:
                return {"true": True, "false": False}.get(tok, tok)

    def block() -> Dict[str, Any]:
        nonlocal pos
        out: Dict[str, Any] = {}
        while pos < len(toks) and toks[pos] != "}":
            key = toks[pos]
            pos += 1
            if toks[pos] == ":":
                pos += 1
                if toks[pos] == "{":
                    pos += 1
                    v = block()
                    pos += 1
                else:
                    v = value(toks[pos])
                    pos += 1
            elif toks[pos] == "{":
                pos += 1
                v = block()
                pos += 1
            else:
                raise ValueError("prototxt: unexpected %r after %r" % (toks[pos], key))
            out.setdefault(key, []).append(v)
        return out

    return block()


def _one(d: Dict[str, Any], key: str, default=None):
    v = d.get(key)
    return v[0] if v else default


def _all(d: Dict[str, Any], key: str) -> List[Any]:
    return list(d.get(key) or [])


@dataclass
class Layer:
    name: str
    type: str
    bottoms: List[str]
    tops: List[str]
    params: Dict[str, Any] = field(default_factory=dict)


def layers_of(prototxt: Path) -> List[Layer]:
    net = parse_prototxt(Path(prototxt).read_text())
    out = []
    for L in _all(net, "layer"):
        out.append(
            Layer(
                _one(L, "name"),
                _one(L, "type"),
                [str(b) for b in _all(L, "bottom")],
                [str(t) for t in _all(L, "top")],
                L,
            )
        )
    return out


def blobs_from_cv2(prototxt: Path, caffemodel: Path) -> Dict[str, List[np.ndarray]]:
    """Each layer's weight blobs as cv2.dnn loaded them from the caffemodel."""
    import cv2

    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    out: Dict[str, List[np.ndarray]] = {}
    for name in net.getLayerNames():
        blobs = []
        i = 0
        while True:
            try:
                b = net.getParam(name, i)
            except cv2.error:
                break
            if b is None or b.size == 0:
                break
            blobs.append(np.array(b, dtype=np.float32))
            i += 1
        out[name] = blobs
    return out


# -- geometry -----------------------------------------------------------------------------------------------
def _conv_geom(p: Dict[str, Any]) -> Tuple[int, int, int, int]:
    k = int(_one(p, "kernel_size", 1))
    s = int(_one(p, "stride", 1))
    pad = int(_one(p, "pad", 0))
    dil = int(_one(p, "dilation", 1))
    return k, s, pad, dil


def feature_shapes(layers: Sequence[Layer], height: int, width: int) -> Dict[str, Tuple[int, int]]:
    """(H, W) of every blob for an input of height x width (Caffe arithmetic: floor for conv, ceil for pool)."""
    hw: Dict[str, Tuple[int, int]] = {"data": (height, width)}
    for L in layers:
        if not L.bottoms:
            continue
        h, w = hw.get(L.bottoms[0], (0, 0))
        if L.type == "Convolution":
            k, s, pad, dil = _conv_geom(_one(L.params, "convolution_param", {}))
            ke = dil * (k - 1) + 1
            h, w = (h + 2 * pad - ke) // s + 1, (w + 2 * pad - ke) // s + 1
        elif L.type == "Pooling":
            p = _one(L.params, "pooling_param", {})
            k, s, pad = int(_one(p, "kernel_size", 1)), int(_one(p, "stride", 1)), int(_one(p, "pad", 0))
            h = int(math.ceil((h + 2 * pad - k) / float(s))) + 1
            w = int(math.ceil((w + 2 * pad - k) / float(s))) + 1
        for t in L.tops:
            hw[t] = (h, w)
    return hw


@dataclass(frozen=True)
class Decoding:
    """What the DetectionOutput layer needs: priors (P, 4) in 0..1 (x1, y1, x2, y2), their variances."""

    priors: np.ndarray
    variances: np.ndarray
    nms_threshold: float = 0.45
    top_k: int = 400
    keep_top_k: int = 200
    confidence_threshold: float = 0.01


def decoding(layers: Sequence[Layer], height: int, width: int) -> Decoding:
    """Caffe SSD PriorBox for this input size, in the order mbox_priorbox concatenates them."""
    hw = feature_shapes(layers, height, width)
    boxes, vars_ = [], []
    for L in layers:
        if L.type != "PriorBox":
            continue
        p = _one(L.params, "prior_box_param", {})
        fh, fw = hw[L.bottoms[0]]
        mins = [float(x) for x in _all(p, "min_size")]
        maxs = [float(x) for x in _all(p, "max_size")]
        ars = [1.0]
        for ar in _all(p, "aspect_ratio"):
            ar = float(ar)
            if all(abs(ar - a) > 1e-6 for a in ars):
                ars.append(ar)
                if _one(p, "flip", True):
                    ars.append(1.0 / ar)
        step = float(_one(p, "step", 0.0)) or None
        sw, sh = (step, step) if step else (width / float(fw), height / float(fh))
        off = float(_one(p, "offset", 0.5))
        var = [float(v) for v in _all(p, "variance")] or [0.1]
        if len(var) == 1:
            var = var * 4
        sizes: List[Tuple[float, float]] = []
        for i, mn in enumerate(mins):
            sizes.append((mn, mn))
            if i < len(maxs):
                s = math.sqrt(mn * maxs[i])
                sizes.append((s, s))
            for ar in ars[1:]:
                sizes.append((mn * math.sqrt(ar), mn / math.sqrt(ar)))
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx = ((xs + off) * sw).reshape(-1, 1)
        cy = ((ys + off) * sh).reshape(-1, 1)
        bw = np.array([s[0] for s in sizes])[None, :]
        bh = np.array([s[1] for s in sizes])[None, :]
        b = np.stack(
            [(cx - bw / 2) / width, (cy - bh / 2) / height, (cx + bw / 2) / width, (cy + bh / 2) / height], axis=-1
        ).reshape(-1, 4)
        if _one(p, "clip", False):
            b = np.clip(b, 0.0, 1.0)
        boxes.append(b)
        vars_.append(np.tile(np.array(var[:4])[None, :], (len(b), 1)))
    d = next((L for L in layers if L.type == "DetectionOutput"), None)
    dp = _one(d.params, "detection_output_param", {}) if d else {}
    nms = _one(dp, "nms_param", {})
    return Decoding(
        np.concatenate(boxes).astype(np.float32),
        np.concatenate(vars_).astype(np.float32),
        nms_threshold=float(_one(nms, "nms_threshold", 0.45)),
        top_k=int(_one(nms, "top_k", 400)),
        keep_top_k=int(_one(dp, "keep_top_k", 200)),
        confidence_threshold=float(_one(dp, "confidence_threshold", 0.01)),
    )


def _nms(boxes: np.ndarray, scores: np.ndarray, thr: float, top_k: int) -> List[int]:
    order = np.argsort(-scores, kind="stable")[:top_k]
    keep: List[int] = []
    areas = np.maximum(0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0, boxes[:, 3] - boxes[:, 1])
    for i in order:
        ok = True
        for j in keep:
            ix = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            iy = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            inter = ix * iy
            union = areas[i] + areas[j] - inter
            if union > 0 and inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(int(i))
    return keep


def detection_output(loc: np.ndarray, conf: np.ndarray, dec: Decoding, min_score: float = 0.0) -> np.ndarray:
    """Caffe DetectionOutput (one image, one foreground class): (1, 1, N, 7) like cv2.dnn's forward().

    loc: (P*4,) offsets; conf: (P*2,) softmax scores (background, face). `min_score` prunes before NMS
    (the detector's own threshold; the caffe layer's 0.01 is the floor)."""
    loc = np.asarray(loc, np.float32).reshape(-1, 4)
    scores = np.asarray(conf, np.float32).reshape(-1, 2)[:, 1]
    sel = np.nonzero(scores > max(dec.confidence_threshold, min_score))[0]
    if len(sel) == 0:
        return np.zeros((1, 1, 0, 7), np.float32)
    pr, v, l = dec.priors[sel], dec.variances[sel], loc[sel]
    pw, ph = pr[:, 2] - pr[:, 0], pr[:, 3] - pr[:, 1]
    pcx, pcy = (pr[:, 0] + pr[:, 2]) / 2, (pr[:, 1] + pr[:, 3]) / 2
    cx = v[:, 0] * l[:, 0] * pw + pcx
    cy = v[:, 1] * l[:, 1] * ph + pcy
    w = np.exp(v[:, 2] * l[:, 2]) * pw
    h = np.exp(v[:, 3] * l[:, 3]) * ph
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    s = scores[sel]
    keep = _nms(boxes, s, dec.nms_threshold, dec.top_k)
    keep = sorted(keep, key=lambda i: -s[i])[: dec.keep_top_k]
    out = np.zeros((1, 1, len(keep), 7), np.float32)
    for r, i in enumerate(keep):
        out[0, 0, r] = (0, 1, s[i], boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3])
    return out


# -- ONNX ------------------------------------------------------------------------------------------------------
HEAD_OUTPUTS = ("mbox_loc", "mbox_conf_flatten")


def to_onnx(layers: Sequence[Layer], blobs: Dict[str, List[np.ndarray]], opset: int = 13):
    """The network as an ONNX graph: input `data` (N, 3, H, W) = cv2's blob (BGR minus MEAN_BGR), outputs
    `loc` (N, P*4) and `conf` (N, P*2). H and W are dynamic: priors come from `decoding()` per size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    current: Dict[str, str] = {"data": "data"}
    version: Dict[str, int] = {}

    def out_name(top: str) -> str:
        version[top] = version.get(top, -1) + 1
        name = top if version[top] == 0 else "%s__%d" % (top, version[top])
        current[top] = name
        return name

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def affine(src: str, top: str, scale: np.ndarray, bias: np.ndarray, name: str) -> None:
        o = out_name(top)  # y = scale * x + bias per channel, as an inference-mode BatchNormalization
        nodes.append(
            (
                "node",
                helper.make_node(
                    "BatchNormalization",
                    [
                        src,
                        const(o + "_s", scale.astype(np.float32)),
                        const(o + "_b", bias.astype(np.float32)),
                        const(o + "_m", np.zeros_like(scale, dtype=np.float32)),
                        const(o + "_v", np.full_like(scale, 1.0 - 1e-5, dtype=np.float32)),
                    ],
                    [o],
                    epsilon=1e-5,
                    name=name,
                ),
            )
        )

    skipped = set()  # prior boxes and what is made of them: computed by decoding(), not in the graph
    for L in layers:
        t = L.type
        if t in ("PriorBox", "DetectionOutput") or any(x in skipped for x in L.bottoms):
            skipped.update(L.tops)
            continue
        ins = [current[b] for b in L.bottoms]
        b = blobs.get(L.name, [])
        if t == "BatchNorm":
            sf = float(b[2].reshape(-1)[0]) if len(b) > 2 else 1.0
            sf = 1.0 / sf if sf != 0 else 0.0
            eps = float(_one(_one(L.params, "batch_norm_param", {}), "eps", 1e-5))
            mean, var = b[0].reshape(-1) * sf, b[1].reshape(-1) * sf
            a = 1.0 / np.sqrt(var + eps)
            affine(ins[0], L.tops[0], a, -mean * a, L.name)
            continue
        if t == "Scale":
            gamma = b[0].reshape(-1)
            beta = b[1].reshape(-1) if len(b) > 1 else np.zeros_like(gamma)
            affine(ins[0], L.tops[0], gamma, beta, L.name)
            continue
        o = out_name(L.tops[0])
        if t == "Convolution":
            p = _one(L.params, "convolution_param", {})
            k, s, pad, dil = _conv_geom(p)
            inputs = [ins[0], const(o + "_w", b[0])]
            if len(b) > 1 and _one(p, "bias_term", True):
                inputs.append(const(o + "_bias", b[1].reshape(-1)))
            node = helper.make_node(
                "Conv",
                inputs,
                [o],
                kernel_shape=[k, k],
                strides=[s, s],
                pads=[pad] * 4,
                dilations=[dil, dil],
                group=int(_one(p, "group", 1)),
                name=L.name,
            )
        elif t == "ReLU":
            slope = float(_one(_one(L.params, "relu_param", {}), "negative_slope", 0.0))
            node = (
                helper.make_node("LeakyRelu", ins, [o], alpha=slope, name=L.name)
                if slope
                else helper.make_node("Relu", ins, [o], name=L.name)
            )
        elif t == "Pooling":
            p = _one(L.params, "pooling_param", {})
            k, s, pad = int(_one(p, "kernel_size", 1)), int(_one(p, "stride", 1)), int(_one(p, "pad", 0))
            op = "MaxPool" if str(_one(p, "pool", "MAX")) == "MAX" else "AveragePool"
            node = helper.make_node(
                op, ins, [o], kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4, ceil_mode=1, name=L.name
            )
        elif t == "Eltwise":
            node = helper.make_node("Sum", ins, [o], name=L.name)
        elif t == "Normalize":
            p = _one(L.params, "norm_param", {})
            if _one(p, "across_spatial", True) or _one(p, "channel_shared", True):
                raise ValueError("%s: only per-channel, per-position Normalize is supported" % L.name)
            eps = float(_one(p, "eps", 1e-10))
            sq = o + "_sq"
            nodes.append(("node", helper.make_node("Mul", [ins[0], ins[0]], [sq])))
            nodes.append(
                (
                    "node",
                    helper.make_node(
                        "ReduceSum", [sq, const(o + "_axes", np.array([1], np.int64))], [o + "_sum"], keepdims=1
                    ),
                )
            )
            nodes.append(
                (
                    "node",
                    helper.make_node("Add", [o + "_sum", const(o + "_eps", np.array(eps, np.float32))], [o + "_se"]),
                )
            )
            nodes.append(("node", helper.make_node("Sqrt", [o + "_se"], [o + "_norm"])))
            nodes.append(("node", helper.make_node("Div", [ins[0], o + "_norm"], [o + "_unit"])))
            node = helper.make_node(
                "Mul", [o + "_unit", const(o + "_scale", b[0].reshape(1, -1, 1, 1))], [o], name=L.name
            )
        elif t == "Permute":
            order = [int(x) for x in _all(_one(L.params, "permute_param", {}), "order")]
            node = helper.make_node("Transpose", ins, [o], perm=order, name=L.name)
        elif t == "Flatten":
            node = helper.make_node(
                "Flatten", ins, [o], axis=int(_one(_one(L.params, "flatten_param", {}), "axis", 1)), name=L.name
            )
        elif t == "Concat":
            node = helper.make_node(
                "Concat", ins, [o], axis=int(_one(_one(L.params, "concat_param", {}), "axis", 1)), name=L.name
            )
        elif t == "Reshape":
            dims = [int(x) for x in _all(_one(_one(L.params, "reshape_param", {}), "shape", {}), "dim")]
            node = helper.make_node(
                "Reshape", [ins[0], const(o + "_shape", np.array(dims, np.int64))], [o], name=L.name
            )
        elif t == "Softmax":
            node = helper.make_node(
                "Softmax", ins, [o], axis=int(_one(_one(L.params, "softmax_param", {}), "axis", 1)), name=L.name
            )
        else:
            raise ValueError("layer %s: type %s is not supported by this converter" % (L.name, t))
        nodes.append(("node", node))
    graph_nodes = [n[1] for n in nodes if n[0] == "node"]
    graph_nodes.append(helper.make_node("Identity", [current["mbox_loc"]], ["loc"]))
    graph_nodes.append(helper.make_node("Identity", [current["mbox_conf_flatten"]], ["conf"]))
    graph = helper.make_graph(
        graph_nodes,
        "res10_300x300_ssd",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [
            helper.make_tensor_value_info("loc", TensorProto.FLOAT, ["N", "P4"]),
            helper.make_tensor_value_info("conf", TensorProto.FLOAT, ["N", "P2"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="maskwatch")
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    return model
