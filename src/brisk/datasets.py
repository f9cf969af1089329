"""brisk.datasets (see brisk.data.datasets)."""

from brisk.data.datasets import *  # noqa: F403
