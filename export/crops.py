"""The crops file (`edge-export prepare`) and a training run's split of it: one place for both.

`load` reads the .npz; `Split` names the three sides of the split; `split_index` / `split_arrays` pick one side
by its name, never by a magic number.
"""

from __future__ import annotations

import enum
import json
import os
import zipfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from edge.errors import EX_DATAERR, EX_NOINPUT, MaskwatchError


class Split(enum.IntEnum):
    """The value is what split.npz stores in `assign`."""

    TRAIN = 0
    VAL = 1
    TEST = 2

    @classmethod
    def of(cls, name: Union[str, "Split"]) -> "Split":
        if isinstance(name, Split):
            return name
        try:
            return cls[str(name).upper()]
        except KeyError:
            raise ValueError("unknown split %r (train, val or test)" % name)


def load(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise MaskwatchError("%s not found: run `edge-export prepare --out %s` first" % (path, path), EX_NOINPUT)
    want = "give the .npz that `edge-export prepare --out FILE` wrote"
    if not zipfile.is_zipfile(str(path)):
        raise MaskwatchError("%s is not a crops file (not an .npz archive): %s" % (path, want), EX_DATAERR)
    try:
        with np.load(str(path), allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        reason = str(e).split(". ")[0] or type(e).__name__
        raise MaskwatchError("%s is not a crops file (%s): %s" % (path, reason, want), EX_DATAERR)
    missing = [k for k in ("images", "labels") if k not in out]
    if missing:
        raise MaskwatchError("%s is not a crops file (no %s): %s" % (path, ", ".join(missing), want), EX_DATAERR)
    return out


def load_split(run: Union[str, Path], role: str = "run") -> Tuple[np.ndarray, np.ndarray]:
    """(keep, assign) of a run's split.npz; one line naming the run and its role if it has none."""
    try:
        s = np.load(str(Path(run) / "split.npz"))
        return s["keep"], s["assign"]
    except (OSError, ValueError, KeyError) as e:
        raise MaskwatchError("%s %s: not a run with a split (%s)" % (role, run, e), EX_NOINPUT)


def save_npz(path: Union[str, Path], **arrays) -> None:
    """Write an .npz whole or not at all: into a temporary file beside it, then renamed over it. A run stopped
    half-way (Ctrl-C, a full disk, a session's end) leaves the old file or none, never a truncated one that a
    later step would take for finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".%s.%d.part.npz" % (path.name, os.getpid()))
    try:
        np.savez(str(tmp), **arrays)
        os.replace(str(tmp), str(path))
    finally:
        if tmp.exists():
            tmp.unlink()


def save_split(run: Union[str, Path], keep: np.ndarray, assign: np.ndarray, report: Dict) -> None:
    """A run's split: split.npz (`keep` indexes the crops file, `assign` its side) and split.json (its record)."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    save_npz(run / "split.npz", keep=keep, assign=assign)
    (run / "split.json").write_text(json.dumps(report, indent=1))


def side_counts(assign: np.ndarray, labels: np.ndarray) -> Dict[str, Dict[str, int]]:
    """Crops per split side and label (`labels`: the kept crops' labels, aligned with `assign`): what a
    split.json records, always counted from the split itself."""
    from .datasets import LABELS

    return {
        name: {lab: int(np.sum((assign == s) & (labels == i))) for i, lab in enumerate(LABELS)}
        for s, name in enumerate(("train", "val", "test"))
    }


def check_split_fits(keep: np.ndarray, crops: Dict[str, np.ndarray], run: Union[str, Path], crops_path) -> None:
    """A split indexes one crops file: refuse it against a file with fewer crops (another prepare)."""
    if len(keep) and int(keep.max()) >= len(crops["labels"]):
        raise MaskwatchError("%s: its split indexes crops %s does not have" % (run, crops_path), EX_DATAERR)


def split_index(run: Union[str, Path], split: Union[str, Split]) -> np.ndarray:
    """Indices into the crops file of one split of a training run."""
    path = Path(run) / "split.npz"
    if not path.exists():
        raise MaskwatchError("%s not found: train a model into %s first" % (path, run), EX_NOINPUT)
    s = np.load(str(path))
    return s["keep"][s["assign"] == int(Split.of(split))]


def split_arrays(
    run: Union[str, Path], crops: Dict[str, np.ndarray], split: Union[str, Split]
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels, indices) of one split."""
    idx = split_index(run, split)
    return crops["images"][idx], crops["labels"][idx], idx


DETECTOR_CUT = ("detector", "negative", "satellite")  # cut at a res10 box, moved by the file's box fit
BOXED = ("voc",) + DETECTOR_CUT  # crops cut from a photo at a stored box ("whole": the image itself)


def crop_box(crops: Dict[str, np.ndarray], i: int) -> Tuple[int, int, int, int]:
    """The box crop `i` was cut at: its annotated box, or res10's moved by the file's box fit (`extend`)."""
    from edge.crop import fit_box

    box = tuple(int(v) for v in crops["boxes"][i])
    fit = crops.get("box_fit")
    if fit is not None and str(crops["how"][i]) in DETECTOR_CUT:
        return fit_box(box, tuple(float(v) for v in fit))  # type: ignore[arg-type,return-value]
    return box  # type: ignore[return-value]


def view_images(crops: Dict[str, np.ndarray], idx: np.ndarray, views: Sequence[Tuple[float, float]]) -> np.ndarray:
    """(V, N, H, W, 3): crops `idx` cut again from their photos under each test-time view (edge.crop.view_box),
    through the one crop function, as the device cuts them (the identity view reproduces the stored crop);
    crops without a box ("whole" images) repeat the stored crop in every view."""
    from edge.crop import IDENTITY_VIEW, crop_faces, view_box
    from edge.datasets_io import read_image

    size = (int(crops["images"].shape[1]), int(crops["images"].shape[2]))
    margin = float(crops.get("margin", 0.15))
    out = np.repeat(crops["images"][idx][None], len(views), axis=0)
    if all(tuple(v) == IDENTITY_VIEW for v in views):
        return out  # the stored crops are that view: no photo to read
    by_file: Dict[str, List[int]] = {}
    for k, i in enumerate(idx):
        if str(crops["how"][i]) in BOXED:
            by_file.setdefault(str(crops["files"][i]), []).append(k)
    for f, ks in by_file.items():
        img = read_image(Path(f))
        if img is None:
            raise MaskwatchError("%s: listed in the crops file but not readable" % f, EX_NOINPUT)
        boxes = [crop_box(crops, int(idx[k])) for k in ks]
        for vi, v in enumerate(views):
            out[vi, ks] = crop_faces(img, [view_box(b, v) for b in boxes], margin, size)
    return out
