"""Retrain res10's six confidence heads on annotated faces, masked ones included; the rest of res10 stays its own.

res10 was trained on faces without masks: it scores a masked face low (0.1-0.2 where a bare face of that size
scores 0.9), and no classifier after it sees a face it does not report. Its six `*_mbox_conf` layers (3x3
convolutions over six feature maps, two scores a prior: background, face; about 97k weights) decide the score.
Here they alone are fitted again, from res10's own weights, on the training scenes' VOC faces:

1. `collect`: per training scene, a pass at the scene's own resolution (the kiosk's native mode) and a 300x300
   pass of the whole scene; each prior matched to the annotated faces as SSD trains (IoU >= 0.5 a face, or the
   best prior of a face from IoU 0.2; < 0.3 background; the rest ignored); all face priors (at most 64 a pass),
   the background priors res10 scores highest (3 per face prior, at least 8) and 24 random ones; for each, the
   3x3 feature patch its head reads. In sources whose background faces go unlabelled (`UNLABELLED_FACES`), an
   unmatched prior res10 itself scores >= 0.5 is ignored, not taught as background.
2. `fit`: per head, softmax cross-entropy of each sampled prior's two scores, Adam, an L2 pull toward res10's
   weights; the sampling is SSD's hard-negative mining, so the scores keep SSD's calibration roughly.
3. `write`: "<layer>/W", "<layer>/b" as cv2.dnn's getParam gives them, "base_sha256" of the caffemodel, and a
   JSON sidecar with what was trained on (edge.res10.read_conf_heads reads the file on the device).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

log = logging.getLogger(__name__)

FEATURES = {  # the blob each head reads, as cv2.dnn names it (fc7 is the output of the layer last_relu)
    "conv4_3_norm_mbox_conf": "conv4_3_norm",
    "fc7_mbox_conf": "last_relu",
    "conv6_2_mbox_conf": "conv6_2_h",
    "conv7_2_mbox_conf": "conv7_2_h",
    "conv8_2_mbox_conf": "conv8_2_h",
    "conv9_2_mbox_conf": "conv9_2_h",
}
UNLABELLED_FACES = {"ilc2021-jolignier": 0.5}  # as export.datasets.NEG_MAX_SCORE
MEAN_BGR = (104.0, 177.0, 123.0)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4), corners in the same units."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    bb = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (aa[:, None] + bb[None, :] - inter + 1e-9)


def match_priors(priors: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """SSD's matching: 1 face, 0 background, -1 ignored, per prior (boxes in 0..1)."""
    lab = np.zeros(len(priors), np.int8)
    if len(faces) == 0:
        return lab
    m = iou_matrix(priors, faces)
    best = m.max(1)
    lab[best >= 0.3] = -1
    lab[best >= 0.5] = 1
    for j in range(len(faces)):
        i = int(m[:, j].argmax())
        if m[i, j] >= 0.2:
            lab[i] = 1
    return lab


def original_heads(prototxt: Path, caffemodel: Path) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    import cv2

    from edge.res10 import CONF_HEADS

    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    return {n: (np.array(net.getParam(n, 0), np.float32), np.array(net.getParam(n, 1), np.float32)) for n in CONF_HEADS}


def collect(
    prototxt: Path,
    caffemodel: Path,
    scenes,
    seed: int = 0,
    max_pos: int = 64,
    hard_per_pos: int = 3,
    n_random: int = 24,
) -> Dict[str, Dict[str, np.ndarray]]:
    """Training samples per head from `scenes` ((source, scene id, BGR image, [face boxes]) each): 3x3 feature
    patches (float16), the prior's index at its position, its label."""
    import cv2

    from edge.res10 import CONF_HEADS, decoding, layers_of

    rng = np.random.default_rng(seed)
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.enableFusion(False)  # the feature blobs stay readable
    layers = layers_of(prototxt)
    per_pos = {n: int(net.getParam(n, 0).shape[0]) // 2 for n in CONF_HEADS}
    names = [FEATURES[n] for n in CONF_HEADS] + ["mbox_conf_softmax"]
    acc: Dict[str, Dict[str, List[np.ndarray]]] = {n: {"x": [], "k": [], "y": []} for n in CONF_HEADS}
    t0, count = time.time(), 0
    for src, _sid, img, boxes in scenes:
        h0, w0 = img.shape[:2]
        faces = np.array([[x1 / w0, y1 / h0, x2 / w0, y2 / h0] for x1, y1, x2, y2 in boxes], np.float32).reshape(-1, 4)
        for iw, ih in ((max(32, w0), max(32, h0)), (300, 300)):
            net.setInput(cv2.dnn.blobFromImage(img, 1.0, (iw, ih), MEAN_BGR, swapRB=False, crop=False))
            outs = net.forward(names)
            score = outs[-1].reshape(-1, 2)[:, 1]
            priors = decoding(layers, ih, iw).priors
            lab = match_priors(priors, faces)
            if src in UNLABELLED_FACES:
                lab[(lab == 0) & (score >= UNLABELLED_FACES[src])] = -1
            pos = np.nonzero(lab == 1)[0]
            if len(pos) > max_pos:
                pos = rng.choice(pos, max_pos, replace=False)
            neg = np.nonzero(lab == 0)[0]
            hard = neg[np.argsort(-score[neg], kind="stable")[: max(8, hard_per_pos * len(pos))]]
            rnd = rng.choice(neg, min(len(neg), n_random), replace=False) if len(neg) else neg
            sel = np.unique(np.concatenate([pos, hard, rnd]))
            start = 0
            for n, f in zip(CONF_HEADS, outs[:-1]):
                k = per_pos[n]
                fh, fw = f.shape[2:]
                cnt = fh * fw * k
                mine = sel[(sel >= start) & (sel < start + cnt)] - start
                if len(mine):
                    fp = np.pad(f[0], ((0, 0), (1, 1), (1, 1)))
                    cell = mine // k
                    ys, xs = cell // fw, cell % fw
                    acc[n]["x"].append(
                        np.stack([fp[:, y : y + 3, x : x + 3].reshape(-1) for y, x in zip(ys, xs)]).astype(np.float16)
                    )
                    acc[n]["k"].append((mine % k).astype(np.int16))
                    acc[n]["y"].append(lab[start + mine].astype(np.int8))
                start += cnt
            if start != len(priors):
                raise RuntimeError("res10's heads cover %d priors, its PriorBox layers %d" % (start, len(priors)))
        count += 1
        if count % 200 == 0:
            log.info("%d scenes, %.0f s", count, time.time() - t0)
    out = {}
    for n, d in acc.items():
        if not d["y"]:
            raise ValueError("no training sample reached head %s: give more scenes" % n)
        out[n] = {k: np.concatenate(v) for k, v in d.items()}
    return out


def fit(
    samples: Dict[str, Dict[str, np.ndarray]],
    start: Dict[str, Tuple[np.ndarray, np.ndarray]],
    l2: float = 1e-4,
    epochs: int = 20,
    lr: float = 1e-3,
    batch: int = 4096,
    seed: int = 1,
) -> Tuple[Dict[str, Tuple[np.ndarray, np.ndarray]], Dict[str, dict]]:
    """Each head refitted from `start` (res10's weights); returns the heads and per-head training figures."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    heads, report = {}, {}
    for n, d in samples.items():
        x, k, y = d["x"].astype(np.float32), d["k"].astype(np.int64), d["y"].astype(np.int64)
        w0, b0 = start[n]
        k2 = w0.shape[0]
        w0f = w0.reshape(k2, -1).T.copy()  # (C*9, 2k): a patch's row times this is the conv at that position
        wv, bv = tf.Variable(w0f), tf.Variable(b0.reshape(-1).copy())
        opt = tf.keras.optimizers.Adam(lr)
        rng = np.random.default_rng(seed)
        idx = np.arange(len(y))
        losses = []
        for _ in range(epochs):
            rng.shuffle(idx)
            total = 0.0
            for s in range(0, len(idx), batch):
                bi = idx[s : s + batch]
                with tf.GradientTape() as tape:
                    lg = tf.reshape(tf.matmul(x[bi], wv) + bv, (-1, k2 // 2, 2))
                    pair = tf.gather(lg, k[bi], batch_dims=1)
                    ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y[bi], pair))
                    loss = ce + l2 * tf.reduce_sum(tf.square(wv - w0f))
                grads = tape.gradient(loss, [wv, bv])
                opt.apply_gradients(zip(grads, [wv, bv]))
                total += float(ce) * len(bi)
            losses.append(round(total / len(idx), 4))
        heads[n] = (wv.numpy().T.reshape(w0.shape).astype(np.float32), bv.numpy().reshape(b0.shape).astype(np.float32))
        report[n] = {
            "samples": int(len(y)),
            "faces": int((y == 1).sum()),
            "loss_first": losses[0],
            "loss_last": losses[-1],
        }
        log.info("%s: %s", n, report[n])
    return heads, report


def write(path: Path, heads: Dict[str, Tuple[np.ndarray, np.ndarray]], base_sha256: str, meta: dict) -> Path:
    """The heads file and its JSON sidecar (what it was trained on, the file's sha256)."""
    from edge.assets import sha256_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"base_sha256": np.array(base_sha256)}
    for n, (w, b) in heads.items():
        arrays[n + "/W"], arrays[n + "/b"] = w, b
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    side = dict(meta, base_sha256=base_sha256, sha256=sha256_file(path), file=path.name)
    Path(str(path) + ".json").write_text(json.dumps(side, indent=1) + "\n")
    return path


def train_scenes(scene_dirs: Sequence[Path], scene_ids: Dict[str, List[str]]):
    """(source, scene id, image, face boxes) of the given scenes, every annotated face whatever its class."""
    from .datasets import iter_scenes

    for name, sid, img, objs in iter_scenes(scene_dirs, scene_ids):
        yield name, sid, img, [b for _lab, b in objs]
