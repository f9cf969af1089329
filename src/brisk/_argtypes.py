"""argparse ``type=`` checkers shared by the ``brisk`` subcommands: a bad value is refused
by argparse with a message saying what was expected, before anything loads or trains."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _checked(convert: Callable[[str], float], ok: Callable[[float], bool], what: str):
    def check(text: str):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v

    return check


positive_int = _checked(int, lambda v: v > 0, "a positive integer")
non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _checked(float, lambda v: 0 < v < math.inf, "a positive number")  # not inf
non_negative_float = _checked(float, lambda v: 0 <= v < math.inf, "a number >= 0")  # not nan, inf
# a held-out fraction: both parts non-empty
fraction = _checked(float, lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")
# a layer width: Dense/Conv2D units, bounded so a typo fails here rather than as an allocation
width = _checked(int, lambda v: 1 <= v <= 65536, "an integer in [1, 65536]")
# keras.utils.set_random_seed's range (NumPy's seed); checked here, not mid-setup
seed = _checked(int, lambda v: 0 <= v < 2**32, "an int in [0, 2**32 - 1]")
