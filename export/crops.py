"""The crops file (`edge-export prepare`) and a training run's split of it: one place for both.

`load` reads the .npz; `Split` names the three sides of the split; `split_index` / `split_arrays` pick one side
by its name, never by a magic number.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np

from edge.errors import EX_NOINPUT, MaskwatchError


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
    with np.load(str(path), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


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
