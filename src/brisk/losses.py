"""Losses by Keras and PyTorch names, computed stably from logits.

A loss is a callable ``loss(y_pred, y_true, reduction='mean')``. The engine passes logits
when the model ends in softmax/sigmoid (``brisk.Sequential`` strips the final activation
for the loss, as Keras does for its own layers), so ``log(softmax)`` never underflows.
For a plain ``nn.Module`` the outputs are taken as logits (the PyTorch convention) unless
the loss is built with ``from_logits=False``.

Example::

    loss = brisk.losses.get("sparse_categorical_crossentropy")
    value = loss(torch.randn(4, 10), torch.tensor([1, 2, 3, 4]))
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
import torch.nn.functional as F

_EPS = 1e-7  # Keras's backend epsilon: clamps probabilities given as outputs


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    """Mean over all non-batch axes (Keras reduces the last axis, then averages)."""
    return t.reshape(t.shape[0], -1).mean(dim=1) if t.dim() > 1 else t


class Loss:
    """Base: ``from_logits`` says whether ``y_pred`` are logits (True) or probabilities."""

    name = "loss"
    #: the label kind this loss needs: 'sparse' (class indices), 'dense' (same shape as output)
    target = "dense"
    #: the output activation for which the loss takes logits ('softmax', 'sigmoid' or None)
    activation: str | None = None

    def __init__(self, from_logits: bool | None = None):
        self.from_logits = from_logits

    def __call__(
        self, y_pred: torch.Tensor, y_true: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        return _reduce(self.per_sample(y_pred, y_true), reduction)

    def per_sample(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(from_logits={self.from_logits})"


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"
    target = "sparse"
    activation = "softmax"

    def per_sample(self, y_pred, y_true):
        if self.from_logits is False:
            logp = torch.log(y_pred.clamp(_EPS, 1.0))
            return F.nll_loss(logp, y_true, reduction="none")
        return F.cross_entropy(y_pred, y_true, reduction="none")


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"
    activation = "softmax"

    def __init__(self, from_logits: bool | None = None, label_smoothing: float = 0.0):
        super().__init__(from_logits)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: expected a float in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def per_sample(self, y_pred, y_true):
        y_true = y_true.to(y_pred.dtype)
        dim = 1 if y_pred.dim() == 4 else -1
        if self.label_smoothing:  # spread over the K classes of the class axis
            y_true = y_true * (1 - self.label_smoothing) + self.label_smoothing / y_true.shape[dim]
        if self.from_logits is False:
            logp = torch.log(y_pred.clamp(_EPS, 1.0))
        else:
            logp = F.log_softmax(y_pred, dim=dim)
        return _per_sample(-(y_true * logp).sum(dim=dim))


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"
    activation = "sigmoid"

    def per_sample(self, y_pred, y_true):
        y_true = y_true.to(y_pred.dtype).reshape(y_pred.shape)
        if self.from_logits is False:
            p = y_pred.clamp(_EPS, 1 - _EPS)
            out = -(y_true * torch.log(p) + (1 - y_true) * torch.log1p(-p))
        else:
            out = F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
        return _per_sample(out)


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def per_sample(self, y_pred, y_true):
        return _per_sample((y_pred - y_true.to(y_pred.dtype).reshape(y_pred.shape)) ** 2)


class MeanAbsoluteError(Loss):
    name = "mean_absolute_error"

    def per_sample(self, y_pred, y_true):
        return _per_sample((y_pred - y_true.to(y_pred.dtype).reshape(y_pred.shape)).abs())


class Huber(Loss):
    name = "huber"

    def __init__(self, delta: float = 1.0):
        super().__init__(None)
        if not delta > 0:
            raise ValueError(f"delta: expected a positive float, got {delta!r}")
        self.delta = float(delta)

    def per_sample(self, y_pred, y_true):
        y_true = y_true.to(y_pred.dtype).reshape(y_pred.shape)
        return _per_sample(F.huber_loss(y_pred, y_true, reduction="none", delta=self.delta))


LOSSES: dict[str, Callable[[], Loss]] = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "crossentropyloss": SparseCategoricalCrossentropy,  # torch.nn.CrossEntropyLoss
    "cross_entropy": SparseCategoricalCrossentropy,  # torch.nn.functional.cross_entropy
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "bcewithlogitsloss": BinaryCrossentropy,
    "bce": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mseloss": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "l1loss": MeanAbsoluteError,
    "huber": Huber,
    "huberloss": Huber,
    "huber_loss": Huber,
}


def get(spec: str | Loss | Callable) -> Loss | Callable:
    """Resolve a loss name (Keras or torch spelling), a ``Loss`` or any callable."""
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, str):
        key = spec.lower()
        if key not in LOSSES:
            close = difflib.get_close_matches(key, LOSSES, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"loss: unknown name {spec!r}.{hint} Valid names: {', '.join(sorted(LOSSES))}"
            )
        return LOSSES[key]()
    if callable(spec):
        return spec
    raise TypeError(f"loss: expected a name, a brisk.losses.Loss or a callable, got {spec!r}")
