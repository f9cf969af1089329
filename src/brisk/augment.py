"""brisk.augment (see brisk.data.augment)."""

from brisk.data.augment import *  # noqa: F403
