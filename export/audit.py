"""Label audit: training crops whose label a trained model still contradicts, to be looked at and left out.

The real sources carry label noise (SOURCES.md: ilc2021's students left some boxes wrong, chandrikadeb7 holds
whole photos filed under a class). A bare face labelled `with_mask` teaches the model that a bare face is
compliant; a mask under the nose labelled `with_mask` teaches it that this is worn correctly. A model that
trained on such a crop and still gives its label a low probability (calibrated, < `below`) marks it as a suspect.
That is the confident-learning idea (Northcutt et al., 2021) with in-sample predictions: weaker than
cross-validated ones (a crop the model memorised is not found), but every crop it lists is one the model could not
fit although it trained on it.

Only the *train* side is audited and only it is narrowed (`train --leave-out`): val and test keep their labels,
so runs with and without the audit are compared on the same faces, and the test split is never looked at.
Suspects are keyed by photo file and box, not by index, so a list stays valid for any crops file that holds
those crops.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np

from edge.errors import EX_DATAERR, EX_NOINPUT, MaskwatchError

Key = Tuple[str, Tuple[int, int, int, int]]


def suspects(face3: np.ndarray, labels: np.ndarray, below: float) -> np.ndarray:
    """Indices (into face3/labels) of face crops whose label gets probability < below, most doubtful first.
    face3: (N, 3) calibrated probabilities over the three face classes; labels: (N,) in 0..2."""
    p = face3[np.arange(len(labels)), labels]
    sel = np.where(p < below)[0]
    return sel[np.argsort(p[sel], kind="stable")]


def key_of(file: str, box: Sequence[int]) -> Key:
    b = tuple(int(v) for v in box)
    return (str(file), (b[0], b[1], b[2], b[3]))


def crop_keys(crops: Dict[str, np.ndarray], idx: np.ndarray) -> List[Key]:
    """The (file, annotated or detector box) key of each crop in idx, as stored in the crops file."""
    return [key_of(str(crops["files"][i]), crops["boxes"][i]) for i in idx]


def write(path: Union[str, Path], entries: List[Dict[str, Any]], about: Dict[str, Any]) -> None:
    Path(path).write_text(json.dumps({"about": about, "leave_out": entries}, indent=1))


def read(path: Union[str, Path]) -> Tuple[List[Key], str]:
    """The keys of a leave-out list and the file's sha256 (recorded in the run); one line on a bad file."""
    try:
        raw = Path(path).read_bytes()
        doc = json.loads(raw.decode("utf-8"))
        keys = [key_of(e["file"], e["box"]) for e in doc["leave_out"]]
        side = (doc.get("about") or {}).get("split", "train")
    except OSError as e:
        raise MaskwatchError("--leave-out %s: cannot read it (%s)" % (path, e.strerror or e), EX_NOINPUT)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise MaskwatchError(
            "--leave-out %s: not a leave-out list (%s: %s); make one with edge-export audit"
            % (path, type(e).__name__, e),
            EX_DATAERR,
        )
    if side != "train":
        raise MaskwatchError(
            "--leave-out %s: lists %s crops (edge-export audit --split %s), which training never sees; give an audit "
            "of the train side (--split train)" % (path, side, side),
            EX_DATAERR,
        )
    return keys, hashlib.sha256(raw).hexdigest()


def leave_out_mask(keys_of_crops: Sequence[Key], leave_out: Sequence[Key]) -> np.ndarray:
    """True for each crop whose key is in the leave-out list."""
    drop = set(leave_out)
    return np.array([k in drop for k in keys_of_crops], dtype=bool)
