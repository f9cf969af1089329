"""Keras-style optimizer specs (see brisk.optim.registry)."""

from brisk.optim.registry import *  # noqa: F403
from brisk.optim.registry import get, get_optimizer, resolve  # noqa: F401
