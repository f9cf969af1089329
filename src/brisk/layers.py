"""Keras-style layers (``from brisk.layers import Dense, Conv2D, ...``)."""

from brisk.api.layers import *  # noqa: F403
from brisk.api.layers import __all__  # noqa: F401
