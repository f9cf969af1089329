"""Exact, hand-checked cases for the corners of brisk.losses and brisk.metrics that the
broader tests leave loose (written against the survivors of a mutation run).

Expected values are closed forms written here, or Keras 3 semantics:
  - Keras's LossFunctionWrapper (squeeze_or_expand_to_same_rank) makes labels and outputs
    of rank r and r + 1 the same rank when the extra axis is the last one and has size 1;
  - Keras clips probabilities to [eps, 1 - eps] (eps = 1e-7) before the log, so a
    probability of exactly 1 costs -log(1 - 1e-7) = 1.00000005e-7, not 0 (Keras 3.15.1,
    torch backend, float64 input: keras.losses.categorical_crossentropy([[1, 0]], [[1, 0]])
    and sparse_categorical_crossentropy([0], [[1, 0]]) both give 1.0000000494736474e-07:
    tools/keras_oracle/losses_clip_exact.py);
  - losses cast y_true to y_pred's dtype (keras.losses: ``ops.cast(y_true, y_pred.dtype)``);
  - TopKCategoricalAccuracy's default k is 5.
Every object is built inside the test body (mutmut switches a mutant on per test).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from brisk.losses import (
    CategoricalCrossentropy,
    Huber,
    LossFunctionWrapper,
    MeanAbsoluteError,
    SparseCategoricalCrossentropy,
)
from brisk.metrics import Metric, TopKCategoricalAccuracy, get

EPS = 1e-7


def _abs_err(t, p):
    """A per-element loss: keeps whatever shape the wrapper hands it, so a wrong
    squeeze/unsqueeze shows up as a broadcast shape."""
    return (p - t).abs()


# ---------------------------------------------------------------------- LossFunctionWrapper


def test_wrapper_name_defaults_to_loss_for_a_callable_without_a_name():
    fn = functools.partial(_abs_err)  # a partial has no __name__
    assert not hasattr(fn, "__name__")
    assert LossFunctionWrapper(fn).name == "loss"
    assert LossFunctionWrapper(_abs_err).name == "_abs_err"
    assert LossFunctionWrapper(fn, name="mine").name == "mine"


def test_wrapper_expands_labels_one_rank_below_sequence_outputs():
    """Labels (N, T) against outputs (N, T, 1): the labels become (N, T, 1) (last axis)."""
    y_true = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # (2, 3)
    y_pred = torch.tensor([[[1.5], [1.0], [3.25]], [[0.0], [5.5], [7.0]]])  # (2, 3, 1)
    out = LossFunctionWrapper(_abs_err, reduction="none")(y_true, y_pred)
    expected = torch.tensor([[[0.5], [1.0], [0.25]], [[4.0], [0.5], [1.0]]])
    assert out.shape == (2, 3, 1)
    assert torch.equal(out, expected)


def test_wrapper_does_not_expand_when_the_last_output_axis_is_not_one():
    """Outputs (N, 1, C) with labels (N, C'): axis 1 has size 1 but the last does not, so
    nothing is expanded and the labels broadcast as given (not made (N, C', 1))."""
    y_true = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # (2, 2)
    y_pred = torch.tensor([[[0.0, 1.0]], [[2.0, 8.0]]])  # (2, 1, 2)
    out = LossFunctionWrapper(_abs_err, reduction="none")(y_true, y_pred)
    expected = (y_pred - y_true).abs()  # plain broadcasting: (2, 2, 2)
    assert out.shape == (2, 2, 2)
    assert torch.equal(out, expected)


def test_wrapper_squeezes_a_trailing_label_axis_of_one():
    """Labels (N, 1) against outputs (N,): the labels become (N,), not an (N, N) broadcast."""
    y_true = torch.tensor([[1.0], [2.0], [4.0]])
    y_pred = torch.tensor([1.5, 0.0, 7.0])
    out = LossFunctionWrapper(_abs_err, reduction="none")(y_true, y_pred)
    assert torch.equal(out, torch.tensor([0.5, 2.0, 3.0]))
    # reduced: the mean of the three, not of a 3 x 3 broadcast
    assert float(LossFunctionWrapper(_abs_err)(y_true, y_pred)) == pytest.approx(5.5 / 3)


def test_wrapper_squeezes_only_the_last_axis_of_sequence_labels():
    """Labels (N, T, 1) against outputs (N, T) with T != 1: squeeze the last axis."""
    y_true = torch.tensor([[[1.0], [2.0], [3.0]], [[4.0], [5.0], [6.0]]])  # (2, 3, 1)
    y_pred = torch.tensor([[1.5, 1.0, 3.25], [0.0, 5.5, 7.0]])  # (2, 3)
    out = LossFunctionWrapper(_abs_err, reduction="none")(y_true, y_pred)
    assert torch.equal(out, torch.tensor([[0.5, 1.0, 0.25], [4.0, 0.5, 1.0]]))


def test_wrapper_squeezes_one_axis_only_when_labels_have_two_of_size_one():
    """Labels (N, 1, 1) against outputs (N, 1): one squeeze, to (N, 1), not to (N,)."""
    y_true = torch.tensor([[[1.0]], [[2.0]], [[4.0]]])  # (3, 1, 1)
    y_pred = torch.tensor([[1.5], [0.0], [7.0]])  # (3, 1)
    out = LossFunctionWrapper(_abs_err, reduction="none")(y_true, y_pred)
    assert torch.equal(out, torch.tensor([[0.5], [2.0], [3.0]]))


def test_wrapper_passes_its_keyword_arguments_to_the_function():
    def scaled(t, p, scale=1.0):
        return scale * (p - t).abs()

    y_true, y_pred = torch.tensor([1.0, 2.0]), torch.tensor([1.5, 5.0])
    out = LossFunctionWrapper(scaled, reduction="none", scale=4.0)(y_true, y_pred)
    assert torch.equal(out, torch.tensor([2.0, 12.0]))
    assert LossFunctionWrapper(scaled, scale=4.0).kwargs == {"scale": 4.0}


# ---------------------------------------------------------------------- probability clipping


def test_a_probability_of_one_is_clipped_to_one_minus_eps():
    """-log(clip(1, eps, 1 - eps)) = -log(1 - 1e-7) = 1.00000005e-7 (Keras 3.15.1 gives
    1.0000000494736474e-07 for both cross-entropies on these float64 inputs)."""
    expected = -math.log(1.0 - EPS)
    assert expected == pytest.approx(1.0000000494736474e-07, rel=1e-12)
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    cce = CategoricalCrossentropy(from_logits=False, reduction="none")
    out = cce(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64), p)
    np.testing.assert_allclose(out.numpy(), [expected, expected], rtol=1e-12, atol=0)
    scce = SparseCategoricalCrossentropy(from_logits=False, reduction="none")
    out = scce(torch.tensor([0, 1]), p)
    np.testing.assert_allclose(out.numpy(), [expected, expected], rtol=1e-12, atol=0)
    # the wrong class at probability 0 costs -log(eps)
    out = scce(torch.tensor([1]), p[:1])
    np.testing.assert_allclose(out.numpy(), [-math.log(EPS)], rtol=1e-12, atol=0)


# ---------------------------------------------------------------------- y_true cast in call


def test_categorical_call_casts_labels_to_the_output_dtype_before_smoothing():
    """call() itself casts y_true to y_pred's dtype (as Keras's function does), so float32
    labels against float64 outputs are smoothed in float64: (1 - s) y + s / K exactly."""
    s, k = 0.1, 3
    y_true = torch.tensor([[0.0, 1.0, 0.0], [0.3, 0.0, 0.7]], dtype=torch.float32)
    logits = torch.tensor([[0.2, 1.7, -0.4], [1.1, -0.9, 0.3]], dtype=torch.float64)
    out = CategoricalCrossentropy(from_logits=True, label_smoothing=s).call(y_true, logits)
    yt = y_true.numpy().astype(np.float64) * (1 - s) + s / k
    lg = logits.numpy()
    logp = lg - np.log(np.exp(lg).sum(1, keepdims=True))
    expected = -(yt * logp).sum(1)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-13, atol=0)


def test_mae_and_huber_call_give_the_output_dtype_for_float64_labels():
    y_true = torch.tensor([[0.1, 2.0]], dtype=torch.float64)
    y_pred = torch.tensor([[0.35, 0.5]], dtype=torch.float32)
    mae = MeanAbsoluteError().call(y_true, y_pred)
    assert mae.dtype == torch.float32
    err = np.abs(np.float32([0.35, 0.5]) - np.float32([0.1, 2.0]))
    assert float(mae[0]) == pytest.approx(float(err.mean()), rel=1e-6)
    # Huber: y_true is rounded to float32 first, so the error is a float32 difference
    # (computed in float64 from the unrounded label it is one float32 ulp off here).
    label, out = 1.123456789012, 3.3
    hub = Huber(delta=1.0).call(torch.tensor([[label]], dtype=torch.float64),
                                torch.tensor([[out]], dtype=torch.float32))
    assert hub.dtype == torch.float32
    z = np.float32(abs(np.float32(out) - np.float32(label)))  # |e| > delta = 1: linear part
    assert float(hub[0]) == float(z - np.float32(0.5))  # delta * (|e| - delta / 2), exact


# ---------------------------------------------------------------------- Huber's arguments


def test_huber_keeps_its_name_and_reduction():
    assert Huber().name == "huber"
    assert Huber().reduction == "sum_over_batch_size"
    assert Huber().from_logits is None
    h = Huber(delta=2.0, name="h", reduction="sum")
    assert (h.name, h.reduction, h.delta) == ("h", "sum", 2.0)
    y_true = torch.tensor([[0.0], [0.0], [0.0]])
    y_pred = torch.tensor([[1.0], [3.0], [-0.5]])
    # delta 2: 0.5 * 1^2; 2 * (3 - 0.5 * 2); 0.5 * 0.5^2  -> sum 4.625
    assert float(h(y_true, y_pred)) == pytest.approx(4.625)
    assert float(Huber(delta=2.0)(y_true, y_pred)) == pytest.approx(4.625 / 3)
    assert Huber(delta=2.0, reduction="none")(y_true, y_pred).tolist() == [0.5, 4.0, 0.125]


# ---------------------------------------------------------------------- Metric's Keras protocol


def _counter_class(**weight_kwargs):
    class Counter(Metric):
        def __init__(self):
            super().__init__(name="counter")
            self.total = self.add_weight(name="total", **weight_kwargs)

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.total += y_pred.sum()

        def result(self):
            return self.total

    return Counter


def test_add_weight_defaults_to_float32_zeros():
    m = _counter_class()()
    assert m.total.dtype == torch.float32 and m.total.shape == ()
    assert float(m.total) == 0.0
    assert m._weights[0][1] == "zeros"


def test_add_weight_dtype_a_torch_dtype_is_used_a_keras_string_is_float32():
    m = _counter_class(dtype=torch.int64, shape=(2,))()
    assert m.total.dtype == torch.int64 and m.total.tolist() == [0, 0]
    m = _counter_class(dtype=torch.float64)()
    assert m.total.dtype == torch.float64
    m = _counter_class(dtype="float32")()  # Keras spelling: not a torch dtype -> float32
    assert m.total.dtype == torch.float32


def test_ones_weights_reset_to_one_and_zeros_to_zero():
    class Two(Metric):
        def __init__(self):
            super().__init__()
            self.prod = self.add_weight(shape=(2,), initializer="ones")
            self.total = self.add_weight(shape=(2,))

    m = Two()
    assert m.prod.tolist() == [1.0, 1.0] and m.total.tolist() == [0.0, 0.0]
    m.prod.mul_(3.0)
    m.total.add_(5.0)
    m.reset_state()
    assert m.prod.tolist() == [1.0, 1.0]
    assert m.total.tolist() == [0.0, 0.0]


def test_add_weight_works_in_a_subclass_that_skips_metric_init():
    class NoSuper(Metric):
        def __init__(self):  # no super().__init__(): no _weights yet
            self.total = self.add_weight(initializer="ones")
            self.count = self.add_weight()

    m = NoSuper()
    assert [init for _, init in m._weights] == ["ones", "zeros"]
    m.total.add_(2.0)
    m.count.add_(3.0)
    m.reset_state()
    assert (float(m.total), float(m.count)) == (1.0, 0.0)


def test_result_of_a_metric_without_one_names_the_class():
    class NoResult(Metric):
        pass

    with pytest.raises(NotImplementedError) as e:
        NoResult().result()
    assert str(e.value) == "NoResult: a Keras-style metric defines result()"


def test_restore_needs_one_saved_tensor_per_weight():
    m = _counter_class()()
    m.total.add_(4.0)
    saved = m._snapshot()
    m.total.add_(1.0)
    m._restore(saved)
    assert float(m.total) == 4.0
    with pytest.raises(ValueError) as e:
        m._restore([])
    assert str(e.value) == "zip() argument 2 is shorter than argument 1"
    with pytest.raises(ValueError) as e:
        m._restore([torch.tensor(1.0), torch.tensor(2.0)])
    assert str(e.value) == "zip() argument 2 is longer than argument 1"


# ---------------------------------------------------------------------- top-k default, repr


def test_top_k_default_is_five():
    """Seven classes; the true class 0 ranked exactly 5th is a hit, 6th a miss."""
    fifth = torch.tensor([[3.0, 7.0, 6.0, 5.0, 4.0, 2.0, 1.0]])  # four above class 0
    sixth = torch.tensor([[2.5, 7.0, 6.0, 5.0, 4.0, 3.0, 1.0]])  # five above class 0
    one_hot = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0]])
    m = TopKCategoricalAccuracy()
    assert m.k == 5
    assert [int(v) for v in m.update(fifth, one_hot)] == [1, 1]
    assert [int(v) for v in m.update(sixth, one_hot)] == [0, 1]


def test_keras_accuracy_repr_before_and_after_resolution():
    m = get("accuracy")
    assert repr(m) == "Accuracy(name='accuracy', resolved=None)"
    m.update(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
    assert repr(m) == "Accuracy(name='accuracy', resolved=SparseCategoricalAccuracy)"
    m = get("acc")
    m.update(torch.tensor([[0.7], [0.2]]), torch.tensor([[1.0], [1.0]]))
    assert repr(m) == "Accuracy(name='acc', resolved=BinaryAccuracy)"
