"""Learning-rate schedules (see brisk.optim.schedules)."""

from brisk.optim.schedules import *  # noqa: F403
