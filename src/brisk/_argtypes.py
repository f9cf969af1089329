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
# keras.utils.set_random_seed's range (NumPy's seed); checked here, not mid-setup
seed = _checked(int, lambda v: 0 <= v < 2**32, "an int in [0, 2**32 - 1]")
