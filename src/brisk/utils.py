"""Keras's utilities: ``set_random_seed`` and ``to_categorical``.

Example::

    brisk.utils.set_random_seed(0)     # before building a model: reproducible weights
    y_onehot = brisk.utils.to_categorical([0, 2, 1], num_classes=3)
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def set_random_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device), as
    ``keras.utils.set_random_seed`` does. Call it before building a model whose weights
    must be reproducible: a model with a known input shape is built (and its weights drawn)
    at construction. Raises ``TypeError`` for a non-int seed."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def to_categorical(x: Any, num_classes: int | None = None, dtype: Any = "float64") -> np.ndarray:
    """One-hot encode integer class labels (``keras.utils.to_categorical``; float64, as
    Keras 3.15 returns): shape
    ``x.shape + (num_classes,)``, a trailing axis of size 1 dropped first; ``num_classes``
    defaults to ``max(x) + 1``. Raises ``ValueError`` for negative labels or labels
    >= ``num_classes``, ``TypeError`` for non-integer labels."""
    y = np.asarray(x)
    if y.size and y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise TypeError("x: expected integer class labels, got non-integer values")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"x: expected integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"x: labels must be in [0, {num_classes - 1}], found [{int(y.min())}, {int(y.max())}]"
        )
    out = np.zeros((*y.shape, num_classes), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out
