"""Number flags that are checked where they are parsed: `--threads 0` is a usage error naming the flag, not a
runtime failure that blames the model (LiteRT: "num_threads should >= 1") or a traceback (`--every 0`)."""

from __future__ import annotations

import argparse
from typing import Callable, Union

Number = Union[int, float]


def at_least(lo: Number, kind: Callable[[str], Number] = int) -> Callable[[str], Number]:
    """An argparse `type`: the flag's value as `kind`, refused (one usage line) when it is below `lo`."""

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not %s" % (text, "a whole number" if kind is int else "a number"))
        if not value >= lo:  # NaN too
            raise argparse.ArgumentTypeError("must be at least %s, got %s" % (lo, text))
        return value

    return parse
