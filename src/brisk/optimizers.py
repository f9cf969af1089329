"""Keras-style optimizer specs (see brisk.optim.registry)."""

from brisk.optim import keras_schedules as schedules  # noqa: F401, E402 - Keras's optimizers.schedules
from brisk.optim.registry import *  # noqa: F403
from brisk.optim.registry import get, get_optimizer, resolve  # noqa: F401
