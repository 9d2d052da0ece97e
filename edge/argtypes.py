"""Number flags that are checked where they are parsed: `--threads 0` is a usage error naming the flag, not a
runtime failure that blames the model (LiteRT: "num_threads should >= 1") or a traceback (`--every 0`)."""

from __future__ import annotations

import argparse
from typing import Callable, Optional, Union

Number = Union[int, float]


def number(
    lo: Optional[Number] = None,
    hi: Optional[Number] = None,
    kind: Callable[[str], Number] = float,
    above: bool = False,
    below: bool = False,
) -> Callable[[str], Number]:
    """An argparse `type`: the flag's value as `kind`, refused (one usage line naming the flag) outside
    [lo, hi]; `above` / `below` leave out the bound itself. NaN is always refused."""

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not %s" % (text, "a whole number" if kind is int else "a number"))
        ok = value == value  # not NaN
        if lo is not None:
            ok = ok and (value > lo if above else value >= lo)
        if hi is not None:
            ok = ok and (value < hi if below else value <= hi)
        if not ok:
            raise argparse.ArgumentTypeError("must be %s, got %s" % (wanted(lo, hi, above, below), text))
        return value

    return parse


def wanted(lo: Optional[Number], hi: Optional[Number], above: bool, below: bool) -> str:
    """What `number`'s limits ask, in words: "at least 1", "between 0 and 1", "above 0", "at least 0 and below 1"."""
    if lo is not None and hi is not None and not above and not below:
        return "between %s and %s" % (lo, hi)
    parts = []
    if lo is not None:
        parts.append("%s %s" % ("above" if above else "at least", lo))
    if hi is not None:
        parts.append("%s %s" % ("below" if below else "at most", hi))
    return " and ".join(parts)


def at_least(lo: Number, kind: Callable[[str], Number] = int) -> Callable[[str], Number]:
    """An argparse `type`: the flag's value as `kind`, refused (one usage line) when it is below `lo`."""
    return number(lo, kind=kind)
