"""Metrics computed on the device.

A metric maps a batch to ``(sum, count)`` tensors that the engine adds up on the device
and reads once per log interval; no host synchronisation per step. ``y_pred`` is what the
model outputs for users: probabilities when the model ends in softmax/sigmoid, else logits
(argmax-based accuracies are the same either way).

Example::

    m = brisk.metrics.get("accuracy", loss="sparse_categorical_crossentropy")
    total, count = m.update(torch.eye(3), torch.tensor([0, 1, 1]))   # 2 right of 3
"""

from __future__ import annotations

import difflib

import torch

_INITIALIZERS = {"zeros": torch.zeros, "ones": torch.ones}


class Metric:
    """Base of brisk's metrics. Two protocols:

    - brisk's built-ins: ``update(y_pred, y_true) -> (sum, count)`` tensors that the engine
      adds up on the device;
    - Keras's subclassing protocol: ``add_weight`` in ``__init__``, then
      ``update_state(y_true, y_pred, sample_weight=None)``, ``result()`` and (optionally)
      ``reset_state()``. State tensors stay on the training device (the engine moves them
      there); update them in place with torch ops (``self.total += values.sum()``), where
      Keras code writes ``assign_add``. ``result()`` is read once per log interval.

    Example::

        class MeanPrediction(brisk.metrics.Metric):
            def __init__(self, name="mean_prediction"):
                super().__init__(name=name)
                self.total = self.add_weight(name="total")
                self.count = self.add_weight(name="count")

            def update_state(self, y_true, y_pred, sample_weight=None):
                self.total += y_pred.sum()
                self.count += y_pred.numel()

            def result(self):
                return self.total / self.count
    """

    name = "metric"
    #: True when the value depends only on the ranking of the outputs (argmax, top-k),
    #: so the engine may skip a softmax before computing it
    argmax_invariant = False

    def __init__(self, name: str | None = None, dtype: object = None):
        if name is not None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"name: expected a non-empty string, got {name!r}")
            self.name = name
        self._weights: list[tuple[torch.Tensor, str]] = []  # (state tensor, initializer)

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    # ------------------------------------------------------------ Keras protocol
    @property
    def keras_protocol(self) -> bool:
        return type(self).update_state is not Metric.update_state

    def add_weight(self, shape: tuple = (), initializer: str = "zeros", dtype: object = None,
                   name: str | None = None) -> torch.Tensor:
        """A state tensor (float32, or ``dtype``), set to ``initializer`` ('zeros' or 'ones')
        and reset to it by ``reset_state``. Assign the result to an attribute."""
        if initializer not in _INITIALIZERS:
            raise ValueError(f"initializer: expected 'zeros' or 'ones', got {initializer!r}")
        t = _INITIALIZERS[initializer](tuple(shape), dtype=dtype if isinstance(dtype, torch.dtype)
                                       else torch.float32)
        if not hasattr(self, "_weights"):  # a subclass that skipped Metric.__init__
            self._weights = []
        self._weights.append((t, initializer))
        return t

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        raise NotImplementedError

    def result(self) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__}: a Keras-style metric defines result()")

    def reset_state(self) -> None:
        """Every weight back to its initializer."""
        for t, init in self._weights:
            t.fill_(1.0 if init == "ones" else 0.0)

    def _to(self, device: torch.device) -> None:
        # in place (.data), so the attributes holding the tensors see the move
        for t, _ in self._weights:
            if t.device != device:
                t.data = t.data.to(device)

    def _snapshot(self) -> list[torch.Tensor]:
        return [t.clone() for t, _ in self._weights]

    def _restore(self, saved: list[torch.Tensor]) -> None:
        for (t, _), s in zip(self._weights, saved, strict=True):
            t.copy_(s)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _class_dim(y_pred: torch.Tensor) -> int:
    return 1 if y_pred.dim() == 4 else -1


class SparseCategoricalAccuracy(Metric):
    name = "sparse_categorical_accuracy"
    argmax_invariant = True

    def update(self, y_pred, y_true):
        pred = y_pred.argmax(dim=_class_dim(y_pred))
        hit = pred == y_true.reshape(pred.shape)
        return hit.sum(), hit.numel()


class CategoricalAccuracy(Metric):
    name = "categorical_accuracy"
    argmax_invariant = True

    def update(self, y_pred, y_true):
        if y_true.shape != y_pred.shape:  # argmax of other shapes would broadcast: N x N pairs
            raise ValueError(
                f"categorical_accuracy: expected one-hot labels of the outputs' shape "
                f"{tuple(y_pred.shape)}, got labels of shape {tuple(y_true.shape)} (class "
                "indices: sparse_categorical_accuracy)")
        d = _class_dim(y_pred)
        hit = y_pred.argmax(dim=d) == y_true.argmax(dim=d)
        return hit.sum(), hit.numel()


class BinaryAccuracy(Metric):
    name = "binary_accuracy"

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold

    def update(self, y_pred, y_true):
        # Keras: the thresholded prediction (0 or 1) must equal the label exactly
        hit = (y_pred > self.threshold).to(y_pred.dtype) == y_true.reshape(y_pred.shape).to(y_pred.dtype)
        return hit.sum(), hit.numel()


class TopKCategoricalAccuracy(Metric):
    name = "top_k_categorical_accuracy"
    argmax_invariant = True
    sparse = False

    def __init__(self, k: int = 5):
        if not isinstance(k, int) or k <= 0:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        self.k = k

    def update(self, y_pred, y_true):
        k = min(self.k, y_pred.shape[-1])
        top = y_pred.topk(k, dim=-1).indices
        labels = y_true.reshape(-1) if self.sparse else y_true.argmax(-1)
        hit = (top == labels[:, None]).any(dim=-1)
        return hit.sum(), hit.numel()


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    name = "sparse_top_k_categorical_accuracy"
    sparse = True


class MeanAbsoluteError(Metric):
    name = "mean_absolute_error"

    def update(self, y_pred, y_true):
        err = (y_pred - y_true.to(y_pred.dtype).reshape(y_pred.shape)).abs()
        return err.sum(), err.numel()


class MeanSquaredError(Metric):
    name = "mean_squared_error"

    def update(self, y_pred, y_true):
        err = (y_pred - y_true.to(y_pred.dtype).reshape(y_pred.shape)) ** 2
        return err.sum(), err.numel()


class _KerasAccuracy(Metric):
    """'accuracy' / 'acc' (and 'top_k_accuracy') resolved as Keras 3 does, from the shapes
    of the outputs and labels, not from the loss (keras.src.trainers.compile_utils
    .get_metric / is_binary_or_sparse_categorical): one output per sample -> binary
    accuracy (threshold 0.5); labels of lower rank than the outputs, or one label per sample
    for several outputs -> sparse categorical; otherwise categorical (argmax of both).
    The choice is made at the first update and kept."""

    def __init__(self, top_k: int | None = None):
        self.top_k = top_k
        self.impl: Metric | None = None
        self._binary: bool | None = None

    @property
    def argmax_invariant(self) -> bool:
        return self._binary is False  # known not binary: argmax or top-k decides

    def set_output_shape(self, shape: tuple[int, ...]) -> None:
        """Per-sample output shape, known before training: decides binary or not."""
        classes = shape[0] if len(shape) == 3 else (shape[-1] if shape else 1)
        self._binary = classes == 1 and self.top_k is None

    def _choose(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> Metric:
        d = _class_dim(y_pred)
        p_last = y_pred.shape[d] if y_pred.dim() > 1 else 1
        t_last = y_true.shape[d] if y_true.dim() == y_pred.dim() else None
        if self.top_k is not None:
            sparse = y_true.dim() < y_pred.dim() or t_last == 1
            return (SparseTopKCategoricalAccuracy if sparse else TopKCategoricalAccuracy)(self.top_k)
        if p_last == 1:
            return BinaryAccuracy()
        if y_true.dim() < y_pred.dim() or t_last == 1:
            return SparseCategoricalAccuracy()
        return CategoricalAccuracy()

    def update(self, y_pred, y_true):
        if self.impl is None:
            self.impl = self._choose(y_pred, y_true)
        return self.impl.update(y_pred, y_true)

    def __repr__(self) -> str:
        return f"Accuracy(name={self.name!r}, resolved={type(self.impl).__name__ if self.impl else None})"


METRICS = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}
def get(spec: str | Metric, loss: object = None) -> Metric:
    """Resolve a metric. 'accuracy'/'acc' and 'top_k_accuracy' are chosen from the output
    and label shapes at the first batch, as in Keras 3 (``loss`` is accepted and unused);
    the metric is reported under the name the user gave."""
    if isinstance(spec, Metric):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"metrics: expected names or brisk.metrics.Metric objects, got {spec!r}")
    key = spec.lower()
    if key in ("accuracy", "acc"):
        metric: Metric = _KerasAccuracy()
    elif key in ("top_k_accuracy", "top5", "top_5_accuracy"):
        metric = _KerasAccuracy(top_k=5)
    elif key in METRICS:
        metric = METRICS[key]()
    else:
        valid = sorted([*METRICS, "accuracy", "acc", "top_k_accuracy"])
        close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"metrics: unknown name {spec!r}.{hint} Valid names: {', '.join(valid)}")
    metric.name = spec
    return metric
