"""Losses by Keras and torch names (``brisk.losses.get('mse')``)."""

from brisk.api.losses import *  # noqa: F403
from brisk.api.losses import LOSSES, Loss, get  # noqa: F401
