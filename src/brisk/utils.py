"""Keras's utilities: ``set_random_seed``, ``to_categorical`` and ``clear_session``.

Example::

    brisk.utils.set_random_seed(0)     # before building a model: reproducible weights
    y_onehot = brisk.utils.to_categorical([0, 2, 1], num_classes=3)
    brisk.utils.clear_session()        # layer names start again: dense, dense_1, ...
"""

from __future__ import annotations

import collections
import gc
import random
import re
import threading
from typing import Any

import numpy as np
import torch


def set_random_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device), as
    ``keras.utils.set_random_seed`` does. Call it before building a model whose weights
    must be reproducible: a model with a known input shape is built (and its weights drawn)
    at construction. Raises ``TypeError`` for a non-int seed, ``ValueError`` for one
    outside [0, 2**32 - 1] (Keras's range: NumPy's seed)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed: expected an int in [0, 2**32 - 1] (as Keras), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
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


# Keras keeps its name counters in thread-local global state (keras.src.backend.common.
# global_state); so does brisk: one counter per snake_case prefix, per thread.
_STATE = threading.local()


def to_snake_case(name: str) -> str:
    """Keras's ``to_snake_case`` (keras.src.utils.naming): 'Conv2D' -> 'conv2d',
    'BatchNormalization' -> 'batch_normalization', 'LSTM' -> 'lstm'."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def auto_name(class_name: str) -> str:
    """The next automatic name for an object of class ``class_name``, Keras's rule
    (keras.src.utils.naming.auto_name): the snake_case class name the first time in a
    session, then ``<name>_1``, ``<name>_2``, ... Explicit ``name=`` arguments do not
    use the counter; ``clear_session()`` resets it. Raises ``TypeError`` for a non-str."""
    if not isinstance(class_name, str):
        raise TypeError(f"class_name: expected a str, got {class_name!r}")
    uids = getattr(_STATE, "uids", None)
    if uids is None:
        uids = _STATE.uids = collections.defaultdict(int)
    prefix = to_snake_case(class_name)
    n = uids[prefix]
    uids[prefix] += 1
    return f"{prefix}_{n}" if n else prefix


def clear_session(free_memory: bool = True) -> None:
    """Reset the global state, as ``keras.utils.clear_session`` (= ``keras.backend.
    clear_session``) does on the torch backend: the automatic layer and model names start
    again ('dense', 'sequential', ...), torch.compile's caches are dropped
    (``torch._dynamo.reset()``) and, with ``free_memory``, Python's garbage collector runs.
    Models that exist keep their names."""
    _STATE.uids = collections.defaultdict(int)
    import torch._dynamo

    torch._dynamo.reset()
    if free_memory:
        gc.collect()
