"""Leak-free splits: near-duplicates found by perceptual hash are merged into one group,
and groups (scenes, files, near-copy clusters) are assigned whole to train/val/test.

Face-mask sets are full of re-posted photos, "copy N" files and the same scene in two
sources; a random split puts copies on both sides and reports ~0.98 that means nothing.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Sequence, Tuple

import numpy as np

log = logging.getLogger(__name__)


def grey32(img: np.ndarray) -> np.ndarray:
    """The 32x32 grey thumbnail (float32) the near-duplicate hash is taken of; RGB or grey in."""
    import cv2

    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    return cv2.resize(np.ascontiguousarray(g), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def phash64(images: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hash per image (the imagehash.phash recipe, vectorised with OpenCV)."""
    import cv2

    out = np.zeros(len(images), dtype=np.uint64)
    weights = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)
    for i, img in enumerate(images):
        d = cv2.dct(grey32(img))[:8, :8]
        bits = (d > np.median(d)).reshape(-1).astype(np.uint64)
        out[i] = np.sum(bits * weights, dtype=np.uint64)
    return out


_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Bits set in each uint64 (byte-table lookup)."""
    return _POP8[np.ascontiguousarray(x, dtype=np.uint64).view(np.uint8).reshape(-1, 8)].sum(axis=1)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.p = list(range(n))

    def find(self, i: int) -> int:
        while self.p[i] != i:
            self.p[i] = self.p[self.p[i]]
            i = self.p[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[max(ra, rb)] = min(ra, rb)


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int) -> List[Tuple[int, int]]:
    pairs = []
    for i in range(len(hashes) - 1):
        d = popcount(hashes[i + 1 :] ^ hashes[i])
        for j in np.nonzero(d <= max_distance)[0]:
            pairs.append((i, i + 1 + int(j)))
    return pairs


def merge_groups(groups: Sequence[str], pairs: Sequence[Tuple[int, int]]) -> np.ndarray:
    """Cluster id per item: items share a cluster if they share a group or are linked by a near-dup pair."""
    n = len(groups)
    uf = _UnionFind(n)
    first: Dict[str, int] = {}
    for i, g in enumerate(groups):
        if g in first:
            uf.union(first[g], i)
        else:
            first[g] = i
    for a, b in pairs:
        uf.union(a, b)
    return np.array([uf.find(i) for i in range(n)], dtype=np.int64)


def grouped_stratified_split(
    labels: np.ndarray, clusters: np.ndarray, fractions=(0.70, 0.15, 0.15), seed: int = 0
) -> np.ndarray:
    """Split index 0/1/2 (train/val/test) per item; whole clusters move together.

    Clusters are visited rarest-class first in a seeded random order and each goes to the
    split furthest below its target share of that class, so the rare class
    (mask_weared_incorrect) is spread over all three splits.
    """
    rng = np.random.RandomState(seed)
    n_cls = int(labels.max()) + 1 if len(labels) else 0
    target = np.array(fractions, dtype=np.float64)
    totals = np.bincount(labels, minlength=n_cls).astype(np.float64)
    have = np.zeros((3, n_cls))
    out = np.full(len(labels), -1, dtype=np.int64)
    uniq = np.unique(clusters)
    rng.shuffle(uniq)
    members = {c: np.nonzero(clusters == c)[0] for c in uniq}
    rarity = 1.0 / np.maximum(totals, 1)
    uniq = sorted(uniq, key=lambda c: -float(np.max(rarity[labels[members[c]]])))
    for c in uniq:
        idx = members[c]
        cls_counts = np.bincount(labels[idx], minlength=n_cls)
        main = int(np.argmax(cls_counts * rarity))
        deficit = target * totals[main] - have[:, main]
        s = int(np.argmax(deficit))
        out[idx] = s
        have[s] += cls_counts
    return out


def leak_report(hashes: np.ndarray, split: np.ndarray, max_distance: int) -> Dict[str, int]:
    """Count near-duplicate pairs that cross splits (must be 0 after grouped splitting)."""
    crossing = 0
    for a, b in near_duplicate_pairs(hashes, max_distance):
        if split[a] != split[b]:
            crossing += 1
    return {"crossing_pairs": crossing}


def report_differences(report: Dict, recorded: Dict) -> List[str]:
    """Where a split recomputed now (`report`, as `make_split` writes it) differs from one a bundle recorded
    (its model card's `split`). Counts are compared per side and label, no_face included: a recorded split that
    `extend` grew had `extended.negatives_added` no_face crops appended on each side, taken off here. Face counts
    alone are not enough: a crops file mined with other no_face boxes can split its faces into the same counts
    while assigning other faces to each side."""
    out = []
    for key in ("near_duplicate_pairs", "dropped_count", "clusters", "largest_cluster", "seed"):
        if key in recorded and report.get(key) != recorded[key]:
            out.append("%s %s, recorded %s" % (key, report.get(key), recorded[key]))
    added = (recorded.get("extended") or {}).get("negatives_added") or {}
    for side, want in (recorded.get("counts") or {}).items():
        got = (report.get("counts") or {}).get(side, {})
        for lab, n in want.items():
            n = n - int(added.get(side, 0)) if lab == "no_face" else n
            if got.get(lab) != n:
                out.append("%s %s %s, recorded %s" % (side, lab, got.get(lab), n))
    return out
