"""Train the 3-class mask classifier (MobileNetV2 or the seed notebooks' small CNN).

The model takes RGB pixels 0..255 and rescales inside itself, so the full-int8
TFLite model can take uint8 pixels 1:1 and the device does no float math before it.
ImageNet weights cannot be downloaded here: training from scratch is the default,
`--weights PATH` loads a local MobileNetV2 no-top .h5 and trains head then backbone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import metrics
from .datasets import ARCHS, LABELS, PRETRAINED_ARCHS

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    arch: str = "mobilenetv2"  # mobilenetv2 | mobilenetv3small-min | faceapi-dense | baseline
    alpha: float = 0.35
    input_size: int = 128
    epochs: int = 30
    head_epochs: int = 5  # only with pretrained weights
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    dropout: float = 0.2
    label_smoothing: float = 0.05
    class_weight: str = "sqrt"  # none | balanced | sqrt
    oversample: str = "none"  # none | class | class-source (see make_dataset)
    weights: Optional[str] = None  # path to MobileNetV2 no-top .h5, or "imagenet"
    seed: int = 0
    augment: bool = True
    colour: bool = True  # hue/saturation jitter, and masks recoloured (masks come in every colour)
    grey: float = 0.0  # share of training crops turned grey (a monochrome or IR-night camera); 0 is off
    tight: float = 0.0  # share of training crops cut to the face box alone (no margin): a tight face crop
    crop_margin: float = 0.15  # the margin the crops were cut with (the crops file's), for `tight`
    init: Optional[str] = None  # warm restart: a saved model.keras of the same arch and input size
    mixup: float = 0.0  # Beta(a, a) mixing of batch pairs; 0 is off
    distill: float = 0.0  # weight of the teacher's distribution in each training target; 0 is off
    teacher_temperature: float = 2.0  # the teacher's logits are divided by this before its softmax
    teachers: Tuple[str, ...] = ()  # runs whose models' averaged outputs are the teacher
    train_sources: Tuple[str, ...] = ()  # train only on these sources' crops (val and test unchanged); () = all
    leave_out: Optional[str] = None  # a label audit's list (export.audit): these training crops are left out
    leave_out_sha256: Optional[str] = None
    left_out: int = 0  # how many training crops it left out
    refit: bool = False  # train on the val side too (a recipe already chosen): the last epoch is kept
    only_labels: Tuple[str, ...] = ()  # train only on crops of these labels (a specialist); () = every label


def trained_sides(split: np.ndarray, refit: bool = False) -> np.ndarray:
    """The crops on the split sides a run trains on: train (0), and with `refit` val (1) too; never test."""
    return np.isin(split, (0, 1) if refit else (0,))


def val_record(val: Dict[str, Any], refit: bool) -> Dict[str, Any]:
    """A run's val report for its train.json: a refit trained on those crops, so theirs is kept apart as
    `val_trained_on` and `val` (a held-out measure) is null."""
    return {"val": None, "val_trained_on": val} if refit else {"val": val}


def training_mask(
    split: np.ndarray,
    sources: Optional[np.ndarray],
    train_sources: Sequence[str],
    leave_out: Optional[np.ndarray] = None,
    refit: bool = False,
    labels: Optional[np.ndarray] = None,
    only_labels: Sequence[str] = (),
) -> np.ndarray:
    """Which crops train: the split's train side (with `refit`, its val side too), narrowed to `train_sources`
    when given ("real" stands for the real photo sources) and to a specialist's `only_labels` (`labels`: each
    crop's), less the crops `leave_out` marks (a label audit, export.audit). Val and test are never narrowed, so
    runs with and without it compare on the same faces."""
    tr = trained_sides(split, refit)
    if leave_out is not None:
        tr = tr & ~leave_out
    if only_labels:
        if labels is None:
            raise ValueError("training on some labels needs each crop's label")
        tr = tr & label_mask(labels, only_labels)
    if not train_sources:
        return tr
    if sources is None:
        raise ValueError("training on some sources needs each crop's source")
    names = source_names(train_sources)
    unknown = sorted(set(names) - set(str(s) for s in np.unique(sources)))
    if unknown:
        raise ValueError("no crops of source(s) %s in this crops file" % ", ".join(unknown))
    return tr & np.isin(sources, names)


def check_only_labels(only_labels: Sequence[str]) -> None:
    """A specialist's `--only-labels`: known labels, two or more of them (ValueError says which is wrong)."""
    unknown = sorted(set(only_labels) - set(LABELS))
    if unknown:
        raise ValueError("unknown label(s) %s (labels: %s)" % (", ".join(unknown), ", ".join(LABELS)))
    if only_labels and len(set(only_labels)) < 2:
        raise ValueError("a specialist tells two or more labels apart (give at least two)")


def label_mask(labels: np.ndarray, only_labels: Sequence[str]) -> np.ndarray:
    """The crops of a specialist's labels (`--only-labels`); every crop when none given. Its training crops
    (training_mask) and the val crops that choose its checkpoint are these."""
    check_only_labels(only_labels)
    if not only_labels:
        return np.ones(len(labels), dtype=bool)
    return np.isin(labels, [LABELS.index(n) for n in only_labels])


def source_names(train_sources: Sequence[str]) -> List[str]:
    """`--train-sources` as source names ("real" stands for the real photo sources)."""
    from .datasets import REAL_SOURCES

    return [n for s in train_sources for n in (REAL_SOURCES if s == "real" else (s,))]


def choice_sources(train_sources: Sequence[str]) -> List[str]:
    """The real sources whose val crops choose a run's checkpoint and its bundle's operating point: the real
    sources it trains on. A run trained on all sources is chosen on every real source; a license-clean run
    (`--train-sources andrewmvd-train chandrikadeb7`) is chosen on those only, so no crop of a source it must
    not use picks its weights or thresholds (test crops of every source still report it)."""
    from .datasets import REAL_SOURCES

    names = set(source_names(train_sources)) if train_sources else set(REAL_SOURCES)
    return [n for n in REAL_SOURCES if n in names]


def set_seed(seed: int) -> None:
    import random

    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)


def build_model(cfg: TrainConfig):
    import keras
    from keras import layers

    if cfg.arch not in ARCHS:
        raise ValueError("arch %r: one of %s" % (cfg.arch, ", ".join(ARCHS)))
    inp = keras.Input((cfg.input_size, cfg.input_size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inp)
    if cfg.arch == "baseline":
        # The seed notebooks' small CNN, kept as the comparison point.
        for f in (32, 64, 128):
            x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
            x = layers.BatchNormalization()(x)
            x = layers.MaxPooling2D()(x)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dense(128, activation="relu")(x)
    elif cfg.arch == "mobilenetv3small-min":
        # MobileNetV3-Small, "minimalistic": ReLU, 3x3 kernels, no squeeze-excite, no hard-swish - the variant
        # made for accelerators, so every op maps to the Edge TPU and quantizes like MobileNetV2's. A different
        # architecture trained on the same crops, for an ensemble whose members do not share their mistakes.
        backbone = keras.applications.MobileNetV3Small(
            input_shape=(cfg.input_size, cfg.input_size, 3),
            alpha=cfg.alpha,
            minimalistic=True,
            include_top=False,
            weights=None,
            include_preprocessing=False,
        )
        for layer in backbone.layers:  # from scratch: see MobileNetV2's momentum below
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = 0.9
        x = backbone(x)
        x = layers.GlobalAveragePooling2D()(x)
    elif cfg.arch == "faceapi-dense":
        # face-api's face feature extractor (export.faceapi): made for 112 px face crops, pretrained on faces
        # (68 landmarks or 7 expressions) when --weights is a file cut by `edge-export backbone --faceapi`.
        from export.faceapi import extractor

        backbone = extractor(cfg.input_size)
        if cfg.weights:
            backbone.load_weights(cfg.weights)
        x = backbone(x)
        x = layers.GlobalAveragePooling2D()(x)
    else:
        weights = None
        if cfg.weights and cfg.weights != "imagenet":
            weights = cfg.weights
        elif cfg.weights == "imagenet":
            weights = "imagenet"
        backbone = keras.applications.MobileNetV2(
            input_shape=(cfg.input_size, cfg.input_size, 3), alpha=cfg.alpha, include_top=False, weights=weights
        )
        if weights is None:
            # Keras' MobileNetV2 uses BN momentum 0.999, tuned for ImageNet-length runs: with a few
            # thousand steps from scratch the moving statistics never catch up and validation
            # predicts one class for many epochs. 0.9 tracks the weights as they learn.
            for layer in backbone.layers:
                if isinstance(layer, layers.BatchNormalization):
                    layer.momentum = 0.9
        x = backbone(x)
        x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(cfg.dropout)(x)
    out = layers.Dense(len(LABELS), activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="maskwatch_%s" % cfg.arch)


def augmenter(size: int):
    """Keras preprocessing layers: geometry, light, plus blur and JPEG noise in tf ops."""
    import keras
    import tensorflow as tf
    from keras import layers

    geo = keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(0.06, fill_mode="reflect"),
            layers.RandomTranslation(0.08, 0.08, fill_mode="reflect"),
            layers.RandomZoom((-0.15, 0.15), fill_mode="reflect"),  # detector boxes vary in tightness
            layers.RandomBrightness(0.25, value_range=(0, 255)),
            layers.RandomContrast(0.25),
        ],
        name="augment",
    )

    def aug(x, y):
        x = geo(x, training=True)
        x = tf.clip_by_value(x, 0.0, 255.0)
        # low-resolution faces: shrink and re-grow a third of the batch (15-40 px faces in crowds)
        small = tf.random.uniform([], 16, size, dtype=tf.int32)
        lowres = tf.image.resize(tf.image.resize(x, [small, small]), [size, size])
        pick = tf.cast(tf.random.uniform([tf.shape(x)[0], 1, 1, 1]) < 0.33, x.dtype)
        x = pick * lowres + (1 - pick) * x
        return x, y

    return aug


def colour_jitter(x, y, size: int):
    """Per-crop colour: mild global hue/saturation jitter, and for masked faces (correct or not) the lower
    face recoloured (hue rotated, or tinted so white masks turn any colour). The first model learned
    "a mask is a pale surgical mask" and called yellow, red, knitted and printed masks `without_mask`."""
    import tensorflow as tf

    x = x / 255.0
    x = tf.image.random_saturation(x, 0.6, 1.5)
    x = tf.image.random_hue(x, 0.04)
    masked = tf.logical_or(tf.equal(y, 0), tf.equal(y, 2))
    rows = tf.cast(tf.range(size), tf.float32) / float(size)
    # a soft band over where a mask sits in the crop (box + 15 % margin): from ~45 % of the height down
    ramp = tf.clip_by_value((rows - 0.42) / 0.1, 0.0, 1.0)[:, None, None]
    hue = tf.image.adjust_hue(x, tf.random.uniform([], -0.5, 0.5))
    hue = tf.image.adjust_saturation(hue, tf.random.uniform([], 1.0, 2.0))
    tint = x * tf.random.uniform([1, 1, 3], 0.25, 1.0)
    pick = tf.random.uniform([])
    recol = tf.where(pick < 0.5, hue, tint)
    do = tf.logical_and(masked, tf.random.uniform([]) < 0.5)
    x = tf.where(do, ramp * recol + (1.0 - ramp) * x, x)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def tighten(x, p: float, margin: float, size: int):
    """With probability `p`, the crop cut to its face box alone and grown back to `size`: the framing of a face
    crop cut tight by someone else (`edge-maskd classify` on a given crop, a face-crop dataset), where the
    device's crop has the box plus `margin` a side around it. After the colour jitter, whose mask band is placed
    for the margin crop."""
    import tensorflow as tf

    off = int(round(size * margin / (1.0 + 2.0 * margin)))
    if off <= 0 or 2 * off >= size:
        return x
    inner = tf.image.resize(x[off : size - off, off : size - off, :], [size, size], method="bilinear")
    return tf.where(tf.random.uniform([]) < p, inner, x)


def greyscale(x, p: float):
    """With probability `p`, the crop's luma in all three channels: what a monochrome camera, or a colour
    camera in IR night mode, gives the classifier. Without it the shipped model rejected a third of real val
    faces as no_face when they came in grey, and found 36 % of the incorrectly worn masks."""
    import tensorflow as tf

    g = tf.repeat(tf.image.rgb_to_grayscale(x), 3, axis=-1)
    return tf.where(tf.random.uniform([]) < p, g, x)


def oversample_index(labels: np.ndarray, how: str, seed: int, sources: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices of a resampled training set of the same size.

    `class`: each crop drawn with probability ~ 1/sqrt(its class count), like the sqrt class weights.
    `class-source`: ~ 1/sqrt(count of its class *within its source*), so the 55-odd real photos of a
    badly worn mask weigh as much, together, as a sizeable share of the 500+ synthetic MaskedFace-Net
    ones instead of being drowned by them (the real ones are what a door camera sees).
    """
    if how == "none":
        return np.arange(len(labels))
    if how == "class":
        keys = labels.astype(str)
    elif how == "class-source":
        if sources is None:
            raise ValueError("oversample class-source needs each crop's source")
        keys = np.char.add(np.char.add(labels.astype(str), "|"), sources.astype(str))
    else:
        raise ValueError("oversample must be none, class or class-source")
    _, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    p = (1.0 / counts[inv]) ** 0.5
    return np.random.RandomState(seed).choice(len(labels), size=len(labels), p=p / p.sum())


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    cfg: TrainConfig,
    training: bool,
    sources: Optional[np.ndarray] = None,
    soft: Optional[np.ndarray] = None,
):
    """Batches of (crop, target). The target is the label's one-hot vector or, with `soft` (one teacher
    distribution per crop) and cfg.distill > 0, (1 - distill) * one-hot + distill * teacher."""
    import tensorflow as tf

    size = cfg.input_size

    if images.shape[1:3] != (size, size):
        # the one crop function cuts crops at the model's input size (edge-export prepare --size); a cache
        # cut at another size is resized here once, by the device's rule, not by tf.image.resize
        from edge.crop import resize_crops_rgb

        images = resize_crops_rgb(images, (size, size))
    targets = np.eye(len(LABELS), dtype=np.float32)[labels]
    if training and soft is not None and cfg.distill > 0:
        if soft.shape != targets.shape:
            raise ValueError("teacher targets %s do not match the crops %s" % (soft.shape, targets.shape))
        targets = ((1.0 - cfg.distill) * targets + cfg.distill * soft).astype(np.float32)
    if training and cfg.oversample != "none":
        # a fresh resample every epoch (not one fixed resampled copy): indices into the arrays
        epochs = cfg.epochs + (cfg.head_epochs if cfg.weights else 0)
        idx = np.concatenate([oversample_index(labels, cfg.oversample, cfg.seed + e, sources) for e in range(epochs)])
        img_t, lab_t, soft_t = tf.constant(images), tf.constant(labels), tf.constant(targets)
        ds = tf.data.Dataset.from_tensor_slices(idx).repeat()
        ds = ds.map(lambda i: (tf.gather(img_t, i), tf.gather(lab_t, i), tf.gather(soft_t, i)))
    else:
        ds = tf.data.Dataset.from_tensor_slices((images, labels, targets))
        if training:
            ds = ds.shuffle(min(len(labels), 10000), seed=cfg.seed, reshuffle_each_iteration=True)

    def resize(x, y, t):
        x = tf.cast(x, tf.float32)
        if training:
            x = tf.image.random_jpeg_quality(tf.cast(tf.clip_by_value(x, 0, 255), tf.uint8), 40, 100)
            x = tf.cast(x, tf.float32)
            if cfg.colour:
                x = colour_jitter(x, y, size)
            if cfg.grey > 0:
                x = greyscale(x, cfg.grey)
            if cfg.tight > 0:
                x = tighten(x, cfg.tight, cfg.crop_margin, size)
        return x, t

    ds = ds.map(resize, num_parallel_calls=tf.data.AUTOTUNE).batch(cfg.batch)
    if training and cfg.augment:
        ds = ds.map(augmenter(size), num_parallel_calls=tf.data.AUTOTUNE)
    if training and cfg.mixup > 0:
        ds = ds.map(mixer(cfg.mixup), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def mixer(alpha: float):
    """mixup: each crop blended with another of the batch, labels blended alike (lambda ~ Beta(a, a))."""
    import tensorflow as tf

    def mix(x, y):
        n = tf.shape(x)[0]
        g1 = tf.random.gamma([n], alpha)
        g2 = tf.random.gamma([n], alpha)
        lam = g1 / (g1 + g2)
        lam = tf.maximum(lam, 1.0 - lam)  # the crop keeps its own identity; the partner is the minor part
        perm = tf.random.shuffle(tf.range(n))
        lx = tf.reshape(lam, [-1, 1, 1, 1])
        ly = tf.reshape(lam, [-1, 1])
        return lx * x + (1 - lx) * tf.gather(x, perm), ly * y + (1 - ly) * tf.gather(y, perm)

    return mix


def teacher_targets(models: Sequence[Any], images: np.ndarray, temperature: float, batch: int = 256) -> np.ndarray:
    """The teacher's distribution for each crop: every model's output and its mirror image's, softened by
    the temperature (log-probabilities / T, renormalised), averaged over models and mirrors."""
    if temperature <= 0:
        raise ValueError("teacher temperature must be > 0")
    outs = []
    for m in models:
        size = int(m.input_shape[1])
        for flip in (False, True):
            x = np.ascontiguousarray(images[:, :, ::-1]) if flip else images
            p = predict(m, x, size, batch)
            z = np.log(np.clip(p, 1e-7, 1.0)) / temperature
            z = np.exp(z - z.max(axis=1, keepdims=True))
            outs.append(z / z.sum(axis=1, keepdims=True))
    return np.mean(outs, axis=0).astype(np.float32)


def check_teacher_split(
    student_keep: np.ndarray,
    student_assign: np.ndarray,
    teacher_keep: np.ndarray,
    teacher_assign: np.ndarray,
    teacher_refit: bool = False,
    held_sides: Sequence[int] = (1, 2),
) -> int:
    """How many of the student's held-out crops (its `held_sides`: val and test) the teacher trained on (must be
    0: a teacher that saw them would carry their labels into the student's training targets). A refit teacher
    trained on its val side too."""
    trained = set(int(i) for i in teacher_keep[trained_sides(teacher_assign, teacher_refit)])
    held = student_keep[np.isin(student_assign, held_sides)]
    return int(sum(1 for i in held if int(i) in trained))


def class_weights(labels: np.ndarray, how: str) -> Optional[Dict[int, float]]:
    if how == "none":
        return None
    counts = np.bincount(labels, minlength=len(LABELS)).astype(np.float64)
    w = counts.sum() / (len(LABELS) * np.maximum(counts, 1))
    if how == "sqrt":
        w = np.sqrt(w)
    return {i: float(v) for i, v in enumerate(w)}


def predict(model, images: np.ndarray, size: int, batch: int = 256) -> np.ndarray:
    """Probabilities via a compiled call per batch (not model.predict per image)."""
    import tensorflow as tf

    from edge.crop import resize_crops_rgb

    out = []
    fn = tf.function(lambda x: model(x, training=False))
    images = resize_crops_rgb(images, (size, size))
    for i in range(0, len(images), batch):
        x = tf.cast(images[i : i + batch], tf.float32)
        out.append(fn(x).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(LABELS)), np.float32)


def _keras_callback_base():
    import keras

    return keras.callbacks.Callback


class RealValCheckpoint(_keras_callback_base()):  # type: ignore[misc]
    """Keep the weights of the epoch with the best macro-F1 on the real val crops (logged as val_real_f1).
    `best` is the best F1 of the epochs an interrupted run already did (its weights are in `path`). A
    specialist (`only_labels`) is scored on its labels alone: the argmax over their columns, F1 over them."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, path: Path, best: float = -1.0, only_labels: Sequence[str] = ()
    ):
        super().__init__()
        self.images, self.labels, self.path = images, labels, path
        self.best = best
        self.columns = [LABELS.index(n) for n in only_labels] if only_labels else list(range(len(LABELS)))
        # each crop's label as its position among these columns (report counts classes 0..n-1)
        self.truth = np.array([self.columns.index(int(v)) for v in labels])

    def on_epoch_end(self, epoch, logs=None):
        probs = predict(self.model, self.images, int(self.model.input_shape[1]))
        cols = self.columns
        f1 = metrics.report(self.truth, probs[:, cols].argmax(1), [LABELS[c] for c in cols])["macro_f1"]
        if logs is not None:
            logs["val_real_f1"] = f1
        log.info("epoch %d: real-val macro-F1 %.4f", epoch + 1, f1)
        if f1 > self.best:
            self.best = f1
            self.model.save_weights(str(self.path))


class EpochLog(_keras_callback_base()):  # type: ignore[misc]
    """Each finished epoch's logs and wall seconds, kept on disk (one JSON list per phase), so that a run
    interrupted and resumed still reports its whole history. An epoch done twice (the run stopped after this
    log but before its backup) keeps its last record."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.t = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.time()

    def on_epoch_end(self, epoch, logs=None):
        recs = [r for r in read_epochs(self.path) if r["epoch"] != epoch]
        rec = {k: float(v) for k, v in (logs or {}).items()}
        rec.update(epoch=epoch, seconds=round(time.time() - self.t, 1))
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(recs + [rec], key=lambda r: r["epoch"])))
        tmp.replace(self.path)


def read_epochs(path: Path) -> List[Dict[str, float]]:
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError):
        return []


RESUME_DIR = "resume"


def resume_key(
    cfg: "TrainConfig",
    split: np.ndarray,
    labels: np.ndarray,
    sources: Optional[np.ndarray] = None,
    leave_out: Optional[np.ndarray] = None,
) -> Dict[str, Any]:
    """What must not change for an interrupted run to go on: the config, and the split, labels and training
    crops (as one sha256). Takes train()'s own inputs, so the CLI's check before writing and train() agree."""
    h = hashlib.sha256()
    trains = training_mask(split, sources, cfg.train_sources, leave_out, cfg.refit, labels, cfg.only_labels)
    for arr in (split, labels, trains):
        h.update(np.ascontiguousarray(arr).tobytes())
    return json.loads(json.dumps({"config": asdict(cfg), "data": h.hexdigest()}))


def check_resume(out_dir: Path, key: Dict[str, Any]) -> bool:
    """True when `out_dir` holds an interrupted run of this same key (it will go on); ResumeError when it
    holds one of another config or data (two runs are never mixed); False when there is none."""
    f = out_dir / RESUME_DIR / "config.json"
    if not f.exists():
        return False
    try:
        have = json.loads(f.read_text())
    except ValueError:
        have = None
    if isinstance(have, dict) and isinstance(have.get("config"), dict):
        # a run stopped before a config field existed trained with that field's default: the same run
        defaults = json.loads(json.dumps(asdict(TrainConfig())))
        have = dict(have, config=dict({k: defaults[k] for k in key["config"] if k in defaults}, **have["config"]))
    if have != key:
        raise ResumeError(
            "%s: holds an interrupted run with another config or split; train into another --out, or delete %s "
            "to start this one afresh" % (out_dir, f.parent)
        )
    return True


def resume_state(out_dir: Path, key: Dict[str, Any]) -> Tuple[Path, bool]:
    """Where a run keeps what it needs to go on after an interruption (`out_dir`/resume: Keras's
    BackupAndRestore state per phase, the epochs' logs, finished phases), removed when the run ends.
    Training again into the same directory with the same key goes on from the last finished epoch.
    Returns (the directory, whether an earlier run is resumed)."""
    d = out_dir / RESUME_DIR
    if check_resume(out_dir, key):
        return d, True
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(key, indent=1))
    return d, False


class PhaseDone(_keras_callback_base()):  # type: ignore[misc]
    """Marks a training phase finished (before BackupAndRestore deletes its state at the same moment)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_train_end(self, logs=None):
        self.path.write_text("done")


class ResumeError(ValueError):
    pass


def backbone_of(model):
    """The MobileNetV2 sub-model (Keras 3 names it after alpha and size, e.g. mobilenetv2_0.35_96)."""
    import keras

    subs = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if not subs:
        raise ValueError("model %s has no backbone sub-model" % model.name)
    return subs[0]


def warm_start(model, init: str) -> None:
    """Load a trained run's weights into `model`, shape for shape. The net is convolutional up to a global
    pooling, so the input size may differ (the weights see the faces at another resolution; fine-tuning adapts
    them); another width or head is refused."""
    import keras

    prev = keras.models.load_model(init, compile=False)
    shapes = [tuple(w.shape) for w in prev.get_weights()]
    if shapes != [tuple(w.shape) for w in model.get_weights()]:
        raise ValueError(
            "init model %s is not this arch (%d weights, %d parameters vs %d, %d; input %s vs %s)"
            % (
                init,
                len(shapes),
                prev.count_params(),
                len(model.get_weights()),
                model.count_params(),
                prev.input_shape,
                model.input_shape,
            )
        )
    model.set_weights(prev.get_weights())
    log.info("warm restart from %s (input %s, now %s)", init, prev.input_shape[1:3], model.input_shape[1:3])


def train(
    cfg: TrainConfig,
    images: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray,
    out_dir: Path,
    verbose: int = 2,
    sources: Optional[np.ndarray] = None,
    soft: Optional[np.ndarray] = None,
    leave_out: Optional[np.ndarray] = None,
    callbacks: Sequence[Any] = (),
):
    """Train into `out_dir`; an interrupted run (stopped, killed, the machine gone) goes on from its last
    finished epoch when trained again into the same directory with the same config (resume_state).
    `callbacks`: more Keras callbacks, after the run's own."""
    import keras

    set_seed(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    tr = training_mask(split, sources, cfg.train_sources, leave_out, cfg.refit, labels, cfg.only_labels)
    va = split == 1
    if cfg.only_labels:
        log.info("a specialist: training on the %d train-side crops of %s", tr.sum(), ", ".join(cfg.only_labels))
    if cfg.refit:
        log.info("refit: the %d val crops train too; the last epoch is kept, nothing is chosen on them", va.sum())
    if cfg.train_sources:
        log.info(
            "training on %d of the %d train-side crops (sources: %s)", tr.sum(), (split == 0).sum(), cfg.train_sources
        )
    train_ds = make_dataset(
        images[tr],
        labels[tr],
        cfg,
        True,
        None if sources is None else sources[tr],
        None if soft is None else soft[tr],
    )
    val_ds = None if cfg.refit else make_dataset(images[va], labels[va], cfg, False)  # a refit checks nothing
    model = build_model(cfg)
    if cfg.init:
        warm_start(model, cfg.init)
    cw = class_weights(labels[tr], cfg.class_weight)
    # the checkpoint is chosen on the real photos of the val split (synthetic faces help training only)
    real_val = None
    if sources is not None and not cfg.refit:
        rv = va & np.isin(sources, choice_sources(cfg.train_sources)) & label_mask(labels, cfg.only_labels)
        if rv.sum():
            real_val = (images[rv], labels[rv])
    log.info("train %d / val %d crops, class weights %s, params %d", tr.sum(), va.sum(), cw, model.count_params())
    history: Dict[str, List[float]] = {}
    state, resumed = resume_state(out_dir, resume_key(cfg, split, labels, sources, leave_out))
    if resumed:
        log.info("going on with the interrupted run in %s (%s)", out_dir, state)
    seconds = 0.0

    def run(epochs: int, lr: float, tag: str):
        nonlocal seconds
        steps = max(1, int(np.ceil(tr.sum() / cfg.batch))) * epochs
        sched = keras.optimizers.schedules.CosineDecay(lr, steps, warmup_target=None)
        model.compile(
            optimizer=keras.optimizers.AdamW(sched, weight_decay=cfg.weight_decay),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
            metrics=["accuracy"],
        )
        ckpt = out_dir / ("best.weights.h5" if tag != "head" else "best-head.weights.h5")
        epochs_log = state / ("%s.epochs.json" % tag)
        done = state / ("%s.done" % tag)
        if not done.exists():
            before = read_epochs(epochs_log) if ckpt.exists() else []
            if cfg.refit:  # every epoch's weights, so the last one is what stays
                cb = [keras.callbacks.ModelCheckpoint(str(ckpt), save_best_only=False, save_weights_only=True)]
            elif real_val is not None:
                best = max([r.get("val_real_f1", -1.0) for r in before] + [-1.0])
                cb = [RealValCheckpoint(real_val[0], real_val[1], ckpt, best, cfg.only_labels)]
            else:
                floor = min([r["val_loss"] for r in before if "val_loss" in r] + [float("inf")])
                cb = [
                    keras.callbacks.ModelCheckpoint(
                        str(ckpt),
                        monitor="val_loss",
                        save_best_only=True,
                        save_weights_only=True,
                        initial_value_threshold=None if floor == float("inf") else floor,
                    )
                ]
            # the epoch's log is written before its backup: a run stopped between the two does that epoch again
            cb += [EpochLog(epochs_log), PhaseDone(done), keras.callbacks.BackupAndRestore(str(state / tag))]
            spe = int(np.ceil(tr.sum() / cfg.batch)) if cfg.oversample != "none" else None
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=epochs,
                class_weight=cw,
                callbacks=cb + list(callbacks),
                verbose=verbose,
                steps_per_epoch=spe,
            )
        recs = read_epochs(epochs_log)
        for r in recs:
            for k, v in r.items():
                if k not in ("epoch", "seconds"):
                    history.setdefault(k, []).append(v)
        history.setdefault("phase", []).extend([tag] * len(recs))
        seconds += sum(r["seconds"] for r in recs)
        model.load_weights(str(ckpt))

    if cfg.weights and cfg.arch in PRETRAINED_ARCHS:
        if cfg.head_epochs > 0:  # the new head first, on the pretrained features as they are
            backbone_of(model).trainable = False
            run(cfg.head_epochs, cfg.lr, "head")
            backbone_of(model).trainable = True
        run(cfg.epochs, cfg.lr / 10.0, "finetune")
    else:
        run(cfg.epochs, cfg.lr, "scratch")
    model.save(str(out_dir / "model.keras"))
    val_probs = predict(model, images[va], cfg.input_size)
    val = metrics.report(labels[va], val_probs.argmax(1), LABELS)
    info = {
        "config": asdict(cfg),
        "history": history,
        "train_seconds": round(seconds, 1),
        **val_record(val, cfg.refit),
        "params": int(model.count_params()),
    }
    (out_dir / "train.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(state, ignore_errors=True)
    log.info("val macro-F1 %.4f%s (%.0f s)", val["macro_f1"], " (trained on them)" if cfg.refit else "", seconds)
    return model, info
