"""Losses by Keras and PyTorch names, computed stably from logits.

Argument order, the one rule: a ``brisk.losses.Loss`` takes Keras's ``(y_true, y_pred)``,
like every Keras loss, and so does a plain function given to ``Sequential.compile``.
Torch loss modules (``nn.CrossEntropyLoss()``), ``torch.nn.functional`` functions and any
function given to ``brisk.Trainer`` take torch's ``(input, target)``.

Subclassing follows Keras: override ``call(y_true, y_pred)`` to return per-sample losses;
``__call__(y_true, y_pred, sample_weight=None)`` weights and reduces them
(``reduction='sum_over_batch_size'``, Keras's default: the sum over the batch size).

The engine passes logits when the model ends in softmax/sigmoid (``brisk.Sequential``
strips the final activation for the loss, as Keras does for its own layers), so
``log(softmax)`` never underflows. For a plain ``nn.Module`` the outputs are taken as
logits (the PyTorch convention) unless the loss is built with ``from_logits=False``.

Example::

    loss = brisk.losses.get("sparse_categorical_crossentropy")
    value = loss(torch.tensor([1, 2, 3, 4]), torch.randn(4, 10))   # (y_true, y_pred)
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

_EPS = 1e-7  # Keras's backend epsilon: clips probabilities given as outputs

#: Keras 3's reductions (keras.losses.Loss); 'mean' is 'sum_over_batch_size' there too
REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "none", None, "mean_with_sample_weight")


def _check_reduction(reduction: Any) -> Any:
    if reduction not in REDUCTIONS:
        raise ValueError(
            "reduction: expected 'sum_over_batch_size', 'mean', 'sum', "
            f"'mean_with_sample_weight', 'none' or None, got {reduction!r}"
        )
    return reduction


def _reduce(values: torch.Tensor, reduction: Any, sample_weight: torch.Tensor | None = None
            ) -> torch.Tensor:
    """Keras's ``reduce_weighted_values``: weight, then sum or divide by the batch size."""
    if sample_weight is not None:
        w = torch.as_tensor(sample_weight, dtype=values.dtype, device=values.device)
        if w.dim() > values.dim() and w.shape[-1] == 1:
            w = w.reshape(w.shape[: values.dim()])
        while w.dim() < values.dim():
            w = w.unsqueeze(-1)
        values = values * w
    if reduction in (None, "none") or values.dim() == 0:
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        return total / w.sum().clamp_min(torch.finfo(values.dtype).tiny)
    return total / max(values.numel(), 1)


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    """Mean over all non-batch axes (Keras reduces the last axis, then averages)."""
    return t.reshape(t.shape[0], -1).mean(dim=1) if t.dim() > 1 else t


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Loss:
    """Base of brisk's losses, Keras's ``keras.losses.Loss`` protocol.

    Args:
        from_logits: whether ``y_pred`` are logits (True) or probabilities (False, Keras's
            default). None: probabilities when called directly, as in Keras; in ``fit``
            the engine decides (see ``brisk.Trainer``: logits from a plain module, or from
            a ``Sequential`` that ends in the loss's activation, computed stably).
        name: the name in logs (default: the class's Keras name).
        reduction: 'sum_over_batch_size' (Keras's default, = 'mean'), 'sum',
            'mean_with_sample_weight' or 'none'.

    Raises ``ValueError`` for an unknown ``reduction``.
    """

    name = "loss"
    #: the label kind this loss needs: 'sparse' (class indices), 'dense' (as many values as
    #: the output), or None (not known: a user's loss, whose labels are not checked)
    target: str | None = None
    #: the output activation for which the loss takes logits ('softmax', 'sigmoid' or None)
    activation: str | None = None

    def __init__(self, from_logits: bool | None = None, name: str | None = None,
                 reduction: Any = "sum_over_batch_size"):
        self.from_logits = from_logits
        if name is not None:
            self.name = name
        elif type(self).name == "loss" and type(self) is not Loss:
            self.name = _snake(type(self).__name__)  # a user's subclass, as Keras names it
        self.reduction = _check_reduction(reduction)

    def __call__(self, y_true: Any, y_pred: torch.Tensor, sample_weight: Any = None
                 ) -> torch.Tensor:
        """The reduced loss (a 0-d tensor; per-sample values for reduction='none')."""
        y_pred = torch.as_tensor(y_pred)
        y_true = torch.as_tensor(y_true, device=y_pred.device)
        if self.target != "sparse" and y_pred.is_floating_point() and y_true.dtype != y_pred.dtype:
            y_true = y_true.to(y_pred.dtype)  # Keras casts y_true to the loss's float dtype
        if sample_weight is None and self.reduction in ("sum_over_batch_size", "mean"):
            mean = self._mean(y_true, y_pred)
            if mean is not None:
                return mean
        return _reduce(self.call(y_true, y_pred), self.reduction, sample_weight)

    def _mean(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor | None:
        """The mean of ``call``'s per-sample losses as one fused op, or None (then ``call``
        and a sum and a division). Once per training step: a fused mean has one autograd
        node for three, 25 us less forward and backward (batch 32, one CPU thread)."""
        return None

    def call(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """Per-sample losses, shape (N,) (or (N, ...) for a subclass; all reduced)."""
        raise NotImplementedError(f"{type(self).__name__}: a Loss subclass defines call(y_true, y_pred)")

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(from_logits={self.from_logits})"


class LossFunctionWrapper(Loss):
    """A plain function ``fn(y_true, y_pred) -> per-sample losses`` as a ``Loss`` (Keras's
    ``keras.losses.LossFunctionWrapper``); ``Sequential.compile(loss=fn)`` wraps with it."""

    def __init__(self, fn: Callable, name: str | None = None,
                 reduction: Any = "sum_over_batch_size", **kwargs: Any):
        if not callable(fn):
            raise TypeError(f"fn: expected a callable (y_true, y_pred) -> loss, got {fn!r}")
        super().__init__(None, name or getattr(fn, "__name__", "loss"), reduction)
        self.fn, self.kwargs = fn, kwargs

    def call(self, y_true, y_pred):
        # Keras's squeeze_or_expand_to_same_rank: labels (N,) against outputs (N, 1) become
        # (N, 1) (and the reverse), instead of broadcasting to (N, N).
        if y_true.dim() == y_pred.dim() - 1 and y_pred.shape[-1] == 1:
            y_true = y_true.unsqueeze(-1)
        elif y_pred.dim() == y_true.dim() - 1 and y_true.shape[-1] == 1:
            y_true = y_true.squeeze(-1)
        return self.fn(y_true, y_pred, **self.kwargs)


def _check_smoothing(label_smoothing: Any) -> float:
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing: expected a float in [0, 1), got {label_smoothing!r}")
    return float(label_smoothing)


def _log_probs(p: torch.Tensor, dim: int) -> torch.Tensor:
    """Keras's treatment of probabilities: renormalise over the class axis, clip to
    [eps, 1 - eps], then log (keras.src.backend.torch.nn.categorical_crossentropy)."""
    p = p / p.sum(dim=dim, keepdim=True)
    return torch.log(p.clamp(_EPS, 1.0 - _EPS))


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"
    target = "sparse"
    activation = "softmax"

    def call(self, y_true, y_pred):
        if y_true.dim() == y_pred.dim() and y_true.shape[-1 if y_pred.dim() != 4 else 1] == 1:
            y_true = y_true.squeeze(-1 if y_pred.dim() != 4 else 1)
        y_true = y_true.long()
        if y_pred.dim() == 3:  # (N, T, C) sequences: classes on the last axis, as in Keras
            y_pred = y_pred.transpose(1, 2)
        if not self.from_logits:
            return F.nll_loss(_log_probs(y_pred, 1), y_true, reduction="none")
        return F.cross_entropy(y_pred, y_true, reduction="none")

    def _mean(self, y_true, y_pred):
        # (N, C) logits and (N,) or (N, 1) labels in [0, C): cross_entropy's own mean (its
        # ignore_index, -100, is an invalid label either way: fit's label check refuses it)
        if self.from_logits and y_pred.dim() == 2 and y_true.shape[0] == y_pred.shape[0] > 0 \
                and (y_true.dim() == 1 or (y_true.dim() == 2 and y_true.shape[1] == 1)):
            return F.cross_entropy(y_pred, y_true.reshape(-1).long())
        return None


class CategoricalCrossentropy(Loss):
    target = "dense"
    name = "categorical_crossentropy"
    activation = "softmax"

    def __init__(self, from_logits: bool | None = None, label_smoothing: float = 0.0,
                 name: str | None = None, reduction: Any = "sum_over_batch_size"):
        super().__init__(from_logits, name, reduction)
        self.label_smoothing = _check_smoothing(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = y_true.to(y_pred.dtype)
        dim = 1 if y_pred.dim() == 4 else -1
        if self.label_smoothing:  # spread over the K classes of the class axis
            y_true = y_true * (1 - self.label_smoothing) + self.label_smoothing / y_true.shape[dim]
        if not self.from_logits:
            logp = _log_probs(y_pred, dim)
        else:
            logp = F.log_softmax(y_pred, dim=dim)
        return _per_sample(-(y_true * logp).sum(dim=dim))


class BinaryCrossentropy(Loss):
    """Binary cross-entropy; ``label_smoothing`` s moves labels towards 1/2:
    ``y * (1 - s) + s / 2`` (Keras)."""

    target = "dense"
    name = "binary_crossentropy"
    activation = "sigmoid"

    def __init__(self, from_logits: bool | None = None, label_smoothing: float = 0.0,
                 name: str | None = None, reduction: Any = "sum_over_batch_size"):
        super().__init__(from_logits, name, reduction)
        self.label_smoothing = _check_smoothing(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = y_true.to(y_pred.dtype).reshape(y_pred.shape)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if not self.from_logits:
            p = y_pred.clamp(_EPS, 1 - _EPS)
            out = -(y_true * torch.log(p) + (1 - y_true) * torch.log1p(-p))
        else:
            out = F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
        return _per_sample(out)


class MeanSquaredError(Loss):
    target = "dense"
    name = "mean_squared_error"

    def call(self, y_true, y_pred):
        return _per_sample((y_pred - y_true.to(y_pred.dtype).reshape(y_pred.shape)) ** 2)


class MeanAbsoluteError(Loss):
    target = "dense"
    name = "mean_absolute_error"

    def call(self, y_true, y_pred):
        return _per_sample((y_pred - y_true.to(y_pred.dtype).reshape(y_pred.shape)).abs())


class Huber(Loss):
    target = "dense"
    name = "huber"

    def __init__(self, delta: float = 1.0, name: str | None = None,
                 reduction: Any = "sum_over_batch_size"):
        super().__init__(None, name, reduction)
        if not delta > 0:
            raise ValueError(f"delta: expected a positive float, got {delta!r}")
        self.delta = float(delta)

    def call(self, y_true, y_pred):
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
