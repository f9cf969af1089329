"""Checks and conversions before training: arrays to tensors, labels against the loss and
the model's output, per-sample and per-class weights, the validation split, and ``fit``'s
arguments. Everything here runs once per ``fit``/``evaluate``/``predict`` call, before the
first batch, and raises ``ValueError``/``TypeError`` naming the argument.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from brisk import losses as losses_mod
from brisk.data.loader import DeviceLoader

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if value > sys.maxsize:  # counts and sizes are indexed with int64 (torch, itertools.islice)
        raise ValueError(f"{name}: expected a positive integer <= 2**63 - 1, got {value!r}")
    return int(value)


def to_tensor(a: Any, name: str) -> torch.Tensor:
    if torch.is_tensor(a):
        return a
    if isinstance(a, (list, tuple)):
        a = np.asarray(a)
    if isinstance(a, np.ndarray):
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected a numeric array, got dtype {a.dtype}")
        if a.dtype == np.float64:
            a = a.astype(np.float32)  # train in float32, as Keras does with float64 input
        return torch.from_numpy(np.ascontiguousarray(a))
    raise TypeError(
        f"{name}: expected a numpy array, torch tensor, torch Dataset, DataLoader or brisk DeviceLoader, "
        f"got {type(a).__name__}"
    )


def all_finite(t: torch.Tensor) -> bool:
    """NaN/inf check at memory speed: a sum is finite when every element is (NaN and inf
    propagate); only an overflowing sum of finite values needs the exact, slower pass."""
    if not t.is_floating_point():
        return True
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def prepare(x, y, name: str) -> tuple[Any, Any]:
    """Validate and convert array inputs; Datasets and loaders pass through."""
    if isinstance(x, (torch.utils.data.Dataset, torch.utils.data.DataLoader, DeviceLoader)):
        if y is not None:
            raise ValueError(f"y: must be None when {name} is a Dataset or a loader (it yields the labels)")
        return x, None
    if x is None:
        raise ValueError(f"{name}: no data given")
    xt = to_tensor(x, name)
    if xt.dim() == 0 or len(xt) == 0:
        raise ValueError(f"{name}: empty data (no samples)")
    if not all_finite(xt):
        raise ValueError(f"{name}: contains NaN or infinite values")
    yt = None
    if y is not None:
        yname = "y" if name == "x" else f"{name} labels"
        yt = to_tensor(y, yname)
        if yt.dim() == 0 or len(yt) != len(xt):
            raise ValueError(
                f"{yname}: x has {len(xt)} samples but y has "
                f"{len(yt) if yt.dim() else 'no'} (they must match)"
            )
        if not all_finite(yt):
            raise ValueError(f"{yname}: contains NaN or infinite values")
    return xt, yt


def check_targets(loss: Any, out: tuple[int, ...], y: torch.Tensor, name: str = "y"
                  ) -> torch.Tensor:
    """Labels must suit the loss and the model's per-sample output shape ``out``, checked
    before training; returns them as the loss takes them (int64 class indices, float32
    dense targets)."""
    if getattr(loss, "target", None) == "sparse":
        if len(out) == 1 and y.dim() == 2 and y.shape[1] != 1:
            raise ValueError(
                f"{name}: {loss.name} needs one integer class label per sample, shape "
                f"(N,) or (N, 1); got shape {tuple(y.shape)}"
                + (", which looks one-hot: use loss='categorical_crossentropy', or pass "
                   "the class indices y.argmax(axis=1)" if y.shape[1] == out[0] else "")
            )
        if y.is_floating_point():
            if not bool((y == y.round()).all()):
                raise ValueError(f"{name}: {loss.name} needs integer class labels")
            y = y.long()
        y = y.long()
        if y.dim() > 1 and y.shape[-1] == 1 and y.dim() == len(out) + 1:
            y = y.squeeze(-1)  # (N, 1) labels, or (N, T, 1) for sequences, as Keras squeezes
        if len(out) == 2:  # sequences (T, C): one label per step, classes on the last axis
            if tuple(y.shape[1:]) != (out[0],):
                raise ValueError(
                    f"{name}: {loss.name} on sequence outputs (steps {out[0]}, {out[1]} "
                    f"classes) needs one label per step, shape (N, {out[0]}); got "
                    f"{tuple(y.shape)}")
            n_classes = out[1]
        else:
            n_classes = out[0] if out else 1
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"{name}: labels must be in [0, {n_classes - 1}] for a model with "
                f"{n_classes} outputs and {loss.name}; found labels in [{lo}, {hi}]"
            )
    elif isinstance(loss, losses_mod.CategoricalCrossentropy):
        if tuple(y.shape[1:]) != out:
            raise ValueError(
                f"{name}: categorical_crossentropy needs one-hot labels of shape "
                f"(N, {', '.join(map(str, out))}), got {tuple(y.shape)}; use "
                "sparse_categorical_crossentropy for integer labels"
            )
    elif isinstance(loss, losses_mod.BinaryCrossentropy):
        if bool(((y < 0) | (y > 1)).any()):
            raise ValueError(f"{name}: binary_crossentropy needs labels in [0, 1]")
    if getattr(loss, "target", None) == "dense":
        if y[0].numel() != math.prod(out):
            raise ValueError(
                f"{name}: each target has {y[0].numel()} values but the model outputs "
                f"{math.prod(out)} per sample"
            )
        if not y.is_floating_point():
            y = y.float()
    return y


def check_sample_weight(sample_weight, x, y, keras_loss: bool, name: str = "sample_weight"):
    """Per-sample weights for array inputs, as a (N,) float tensor; checked before
    training (the DeviceLoader checks shape and values again)."""
    if sample_weight is None:
        return None
    if not torch.is_tensor(x):
        raise ValueError(f"{name}: only with array inputs; a Dataset or loader can yield "
                         "(x, y, sample_weight) batches instead")
    if y is None:
        raise ValueError(f"{name}: needs y")
    if not keras_loss:
        raise ValueError(f"{name}: needs a loss that takes per-sample weights (a name or a "
                         "brisk.losses.Loss); a torch loss function takes none")
    w = to_tensor(sample_weight, name)
    if w.dim() == 2 and w.shape[1] == 1:
        w = w.reshape(-1)
    if w.dim() != 1 or len(w) != len(x):
        raise ValueError(f"{name}: expected shape ({len(x)},), got {tuple(w.shape)}")
    if not all_finite(w.double()) or bool((w < 0).any()):
        raise ValueError(f"{name}: expected finite weights >= 0")
    return w


def check_class_weight_labels(y: torch.Tensor, out: tuple[int, ...]) -> None:
    """Labels that ``class_weight`` can read a class from, as Keras does: a class index per
    sample, (N,) or (N, 1), or one-hot labels of the output's shape (argmax of the last
    axis; per time step for (N, T, C)). A class per position, e.g. (N, H, W) masks or (N, T)
    indices, would be read as one-hot along its last axis (Keras then fails on 3-D labels
    and misreads 2-D ones): ``ValueError`` instead."""
    if y.dim() >= 2 and y.shape[-1] != 1 and tuple(y.shape[1:]) != tuple(out):
        raise ValueError(f"class_weight: needs a class index per sample, (N,) or (N, 1), or "
                         f"one-hot labels shaped like the output {(None, *out)}; got labels of "
                         f"shape {tuple(y.shape)} (a class per position: weigh them with "
                         "sample_weight, or in the loss)")


def class_weight_table(class_weight, keras_loss: bool, out: tuple[int, ...],
                       device: torch.device) -> torch.Tensor | None:
    """``{class: weight}`` as a lookup table on the device (Keras's ``class_weight``;
    classes not named weigh 1). Raises ``ValueError`` for a bad dict or a loss that
    takes no per-sample weights."""
    if class_weight is None:
        return None
    if not isinstance(class_weight, Mapping) or not class_weight:
        raise ValueError(f"class_weight: expected a dict {{class index: weight}}, got {class_weight!r}")
    for k, v in class_weight.items():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < 2**24:
            # the weights are a table indexed by class (a key of 2**70 would allocate 2**70
            # floats); 2**24: float32 labels hold class indices exactly up to there
            raise ValueError(f"class_weight: class indices must be ints >= 0 and < 2**24, got {k!r}")
        if (isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v)
                or not 0 <= v <= _FLOAT32_MAX):  # the table is float32: 1e308 would be inf
            raise ValueError(f"class_weight: weights must be finite numbers >= 0, got {v!r} for class {k}")
    if not keras_loss:
        raise ValueError("class_weight: needs a loss that takes per-sample weights (a name or a "
                         "brisk.losses.Loss); a torch loss function takes none")
    classes = out[0] if len(out) == 3 else (out[-1] if out else 1)
    table = torch.ones(max(max(int(k) for k in class_weight) + 1, classes, 2), device=device)
    for k, v in class_weight.items():
        table[int(k)] = float(v)
    return table


def check_fit_arguments(*, batch_size, epochs, shuffle, initial_epoch, validation_split, validation_data,
                        validation_freq, steps_per_epoch, validation_steps, class_weight,
                        sample_weight, full_batch: bool, accumulate: int, on_nan=None
                        ) -> tuple[int, int, int | None, int | None]:
    """``fit``'s arguments, checked before any data is touched (Keras's meanings).
    Returns ``(batch_size, epochs, steps_per_epoch, validation_steps)`` with the default
    batch size filled in (4096 for full-batch 'gd', whose batches are only chunks; else 32)."""
    if batch_size is None:
        batch_size = 4096 if full_batch else 32
    batch_size = check_positive_int(batch_size, "batch_size")
    epochs = check_positive_int(epochs, "epochs")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle: expected True or False, got {shuffle!r}")
    if (isinstance(initial_epoch, (bool, np.bool_)) or not isinstance(initial_epoch, (int, np.integer))
            or not 0 <= initial_epoch < epochs):
        raise ValueError(f"initial_epoch: expected an int in [0, epochs), got {initial_epoch!r}")
    # a number (NumPy's too: np.float32(0.2) is no Python float); False is 0 (Keras tests
    # `if validation_split`), True is 1 and refused
    if not isinstance(validation_split, (int, float, np.integer, np.floating)) or not (
        validation_split == 0 or 0 < validation_split < 1
    ):
        raise ValueError(
            f"validation_split: expected a float in (0, 1), got {validation_split!r}"
        )
    check_positive_int(validation_freq, "validation_freq")
    if steps_per_epoch is not None:
        steps_per_epoch = check_positive_int(steps_per_epoch, "steps_per_epoch")
        if full_batch or accumulate != 1:
            raise ValueError(
                "steps_per_epoch: not supported with full-batch ('gd') training or "
                "gradient accumulation, whose steps follow the data's passes")
    if validation_steps is not None:
        validation_steps = check_positive_int(validation_steps, "validation_steps")
    if validation_split and validation_data is not None:
        raise ValueError("validation_split: give either validation_split or validation_data")
    if class_weight is not None and sample_weight is not None:
        raise ValueError("class_weight: give class_weight or sample_weight, not both (Keras)")
    if on_nan is not None and (not isinstance(on_nan, str) or on_nan not in ("stop", "restore")):
        raise ValueError(f"on_nan: expected 'stop', 'restore' or None, got {on_nan!r}")
    return batch_size, epochs, steps_per_epoch, validation_steps


def split_point(n: int, validation_split: float) -> int:
    """The training samples Keras keeps of ``n`` with ``validation_split``: the first
    ``ceil(n * (1 - validation_split))`` (the rest, the last ones, validate)."""
    return int(math.ceil(n * (1.0 - validation_split)))


def validation_set(x, y, sw, validation_split: float, validation_data, keras_loss: bool):
    """Keras's validation: the *last* ``validation_split`` fraction of array inputs (taken
    before shuffling, with its sample weights), or ``validation_data`` as ``(x, y)``,
    ``(x, y, sample_weight)`` or a Dataset/loader. Returns ``(x, y, sw, val, val_sw)``
    with ``val = (x_val, y_val)`` or None."""
    val, val_sw = None, None
    if validation_split:
        if not torch.is_tensor(x):
            raise ValueError("validation_split: only works with array inputs; "
                             "pass validation_data for a Dataset or DataLoader")
        split_at = split_point(len(x), validation_split)
        if split_at in (0, len(x)):
            raise ValueError(f"validation_split: {validation_split} leaves an empty split "
                             f"of {len(x)} samples")
        val = (x[split_at:], None if y is None else y[split_at:])
        x, y = x[:split_at], (None if y is None else y[:split_at])
        if sw is not None:  # Keras splits the weights with the samples
            sw, val_sw = sw[:split_at], sw[split_at:]
    elif validation_data is not None:
        if isinstance(validation_data, (tuple, list)):
            if len(validation_data) not in (2, 3):
                raise ValueError("validation_data: expected (x_val, y_val) or "
                                 "(x_val, y_val, sample_weight_val)")
            val = prepare(validation_data[0], validation_data[1], "validation_data")
            if len(validation_data) == 3:
                val_sw = check_sample_weight(validation_data[2], val[0], val[1], keras_loss,
                                             "validation_data sample_weight")
        else:
            val = prepare(validation_data, None, "validation_data")
    return x, y, sw, val, val_sw
