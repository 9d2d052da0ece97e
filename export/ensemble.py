"""Several trained runs as one model: one graph whose output is the mean of its members' probabilities.

The ensemble is an ordinary Keras model with one input and one softmax-like output, so conversion (TFLite
fp32/fp16/int8, Edge TPU, ONNX, TensorRT), the manifest and the device need nothing new: a face costs one
inference of a graph that holds every member (of one architecture or several). Members must share the input
size, the labels and the split (none may have trained on a crop the ensemble holds out), which `check_members`
enforces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .train import check_teacher_split


class EnsembleError(ValueError):
    pass


def combine(
    models: Sequence[Any], name: str = "maskwatch_ensemble", rejectors: Sequence[Any] = (), no_face_index: int = -1
) -> Any:
    """One functional model: the input goes to every member, the output is the mean of their outputs.

    With `rejectors`, the face-class columns are the members' mean and the no_face column (`no_face_index`) the
    rejectors' mean: a rejector retrained on what is no face (res10's satellites) without its verdicts replacing
    the members'. The output then no longer sums to 1; the device's calibration (softmax(log p / T)) and the
    operating point, chosen on it as on any bundle, normalise it."""
    import keras

    if len(models) + len(rejectors) < 2:
        raise EnsembleError("an ensemble needs at least two members")
    shape, outs = models[0].input_shape, models[0].output_shape
    for m in list(models[1:]) + list(rejectors):
        if m.input_shape != shape or m.output_shape != outs:
            raise EnsembleError(
                "members differ: input %s / output %s against %s / %s" % (m.input_shape, m.output_shape, shape, outs)
            )
    inp = keras.Input(shape[1:], name="image")
    branches = []
    for i, m in enumerate(models):
        m.name = "member_%d" % i  # nested models must have distinct names inside the ensemble
        m.trainable = False
        branches.append(_one_output(m(inp)))
    if not rejectors:
        return keras.Model(inp, keras.layers.Average(name="probs")(branches), name=name)
    rej = []
    for i, m in enumerate(rejectors):
        m.name = "rejector_%d" % i
        m.trainable = False
        rej.append(_one_output(m(inp)))
    k = int(outs[-1])
    nf = no_face_index % k

    def mean(xs: List[Any], n: str) -> Any:
        return keras.layers.Average(name=n)(xs) if len(xs) > 1 else xs[0]

    # fixed column selections (identity without / only the no_face column), not trained
    faces = keras.layers.Dense(k, use_bias=False, trainable=False, name="verdict_columns")
    nofc = keras.layers.Dense(k, use_bias=False, trainable=False, name="rejector_column")
    out = keras.layers.Add(name="probs")([faces(mean(branches, "verdict_mean")), nofc(mean(rej, "rejector_mean"))])
    model = keras.Model(inp, out, name=name)
    w = np.eye(k, dtype=np.float32)
    w[nf, nf] = 0.0
    faces.set_weights([w])
    w = np.zeros((k, k), dtype=np.float32)
    w[nf, nf] = 1.0
    nofc.set_weights([w])
    return model


def split_by_specialist(probs: np.ndarray, specialist: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """A specialist (`train --only-labels`) re-splits the probability the ensemble gives its labels: their summed
    mass stays, shared out as the specialist's outputs over those columns (renormalised); every other column is
    the ensemble's own. Rows of `probs` and `specialist` are the same crops."""
    cols = list(columns)
    if len(cols) < 2 or len(set(cols)) != len(cols):
        raise EnsembleError("a specialist splits two or more distinct columns, not %s" % cols)
    if probs.shape != specialist.shape:
        raise EnsembleError("specialist outputs %s do not match the ensemble's %s" % (specialist.shape, probs.shape))
    out = np.array(probs, dtype=np.float64, copy=True)
    mass = out[:, cols].sum(axis=1, keepdims=True)
    share = np.asarray(specialist, dtype=np.float64)[:, cols]
    share = share / np.maximum(share.sum(axis=1, keepdims=True), 1e-12)
    out[:, cols] = mass * share
    return out


def _one_output(out: Any) -> Any:
    """A member's output tensor: a model rebuilt from its inputs and outputs lists (`members_of`, restored runs)
    returns a one-tensor list where a freshly built one returns the tensor."""
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise EnsembleError("a member has %d outputs; members have one (the class probabilities)" % len(out))
        return out[0]
    return out


def members_of(model: Any, kinds: Sequence[str] = ("member",)) -> List[Any]:
    """The members of a `combine`d model back as standalone models, in member order (their weights are the
    trained runs' own): a machine that lost its runs gets them again from a shipped bundle's Keras file. `kinds`
    ("member", "rejector") picks which nested models; each comes back named "restored_<its layer name>"."""
    import keras

    out = []
    names = sorted(
        (layer.name for layer in model.layers if layer.name.split("_")[0] in kinds and layer.name[-1].isdigit()),
        key=lambda n: (list(kinds).index(n.split("_")[0]), int(n.split("_")[1])),
    )
    if not names:
        raise EnsembleError("%s holds no ensemble members (member_0, member_1, ...)" % model.name)
    for n in names:
        m = model.get_layer(n)
        out.append(keras.Model(m.inputs, m.outputs, name="restored_" + n))
    return out


def check_members(
    keep: np.ndarray, assign: np.ndarray, members: Sequence[Tuple[str, np.ndarray, np.ndarray, bool]]
) -> None:
    """Each member (name, keep, assign, refit) must have trained on none of the ensemble's val/test crops; a
    refit member (train --refit) trained on the val side on purpose, so only the test side is checked for it
    (the ensemble is then a refit too: export.cli.config_refit)."""
    for name, mk, ma, refit in members:
        seen = check_teacher_split(keep, assign, mk, ma, refit, held_sides=(2,) if refit else (1, 2))
        if seen:
            raise EnsembleError(
                "%s trained on %d of the ensemble's %s crops: members must share one split"
                % (name, seen, "test" if refit else "val/test")
            )


def ensemble_config(runs: Sequence[Path], configs: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The model card's train_config for an ensemble: the shared keys, and every member's own. Members may differ
    in architecture and width (their values are then joined with "+", in member order, as the epochs are); they
    must share the input size, since one crop goes to all of them."""
    first = dict(configs[0])
    shared = {k: first.get(k) for k in ("arch", "alpha", "input_size", "class_weight", "oversample")}
    for c in configs[1:]:
        if c.get("input_size") != shared["input_size"]:
            raise EnsembleError(
                "members differ in input_size: %s against %s" % (c.get("input_size"), shared["input_size"])
            )
    for k in ("arch", "alpha"):
        values = [c.get(k) for c in configs]
        if len(set(values)) > 1:
            shared[k] = "+".join(str(v) for v in values)
    shared["epochs"] = "+".join(str(c.get("epochs")) for c in configs)
    members: List[Dict[str, Any]] = [{"run": str(r), "config": c} for r, c in zip(runs, configs)]
    shared["ensemble_of"] = members
    return shared
