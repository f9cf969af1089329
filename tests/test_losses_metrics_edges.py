"""Edge cases of brisk.losses and brisk.metrics left open by the broader tests (written
against the survivors of a mutation run): label axes of size one in sequences and maps,
scalar and higher-rank sample weights, dtypes and devices of labels and weights, the
constructors' arguments, and the shape rules of 'accuracy' (Keras 3 semantics).

Expected values are closed forms computed here (math / numpy), never read back from
brisk. Every loss and metric is built inside the test body (mutmut switches a mutant on
per test). A second device is stood in for by 'meta' (torch's shape-only device), which
a CPU-only machine has: a tensor left on the CPU next to a meta tensor is an error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import brisk
from brisk.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    LossFunctionWrapper,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
)
from brisk.metrics import (
    BinaryAccuracy,
    Metric,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
)


def np_log_softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _sq(y_true, y_pred):
    """A per-element loss for LossFunctionWrapper: keeps the shape it is given."""
    return (y_pred - y_true) ** 2


def _scalar_sq(y_true, y_pred):
    """A loss that returns one value for the whole batch (a 0-d tensor)."""
    return ((y_pred - y_true) ** 2).sum()


# ---------------------------------------------------------------------- label smoothing


@pytest.mark.parametrize("cls", ["categorical", "binary"])
@pytest.mark.parametrize("bad", [False, True, "0.1", None])
def test_label_smoothing_rejects_bools_and_non_numbers(cls, bad):
    """A bool is not a smoothing (False is not 0.0) and a string is refused with the
    same ValueError, not a TypeError from comparing it with 0."""
    loss_cls = CategoricalCrossentropy if cls == "categorical" else BinaryCrossentropy
    with pytest.raises(ValueError) as e:
        loss_cls(label_smoothing=bad)
    assert str(e.value) == f"label_smoothing: expected a float in [0, 1), got {bad!r}"


def test_label_smoothing_accepts_an_int_zero_as_a_float():
    loss = BinaryCrossentropy(label_smoothing=0)
    assert loss.label_smoothing == 0.0 and type(loss.label_smoothing) is float


# ---------------------------------------------------------------------- constructors' arguments


@pytest.mark.parametrize("cls, default_name", [
    ("categorical", "categorical_crossentropy"),
    ("binary", "binary_crossentropy"),
])
def test_crossentropy_constructors_pass_name_and_reduction(cls, default_name):
    loss_cls = CategoricalCrossentropy if cls == "categorical" else BinaryCrossentropy
    default = loss_cls()
    assert (default.name, default.reduction, default.from_logits) == (
        default_name, "sum_over_batch_size", None)
    named = loss_cls(name="mine")
    assert (named.name, named.reduction) == ("mine", "sum_over_batch_size")
    summed = loss_cls(from_logits=True, reduction="sum")
    assert (summed.name, summed.reduction, summed.from_logits) == (default_name, "sum", True)
    both = loss_cls(from_logits=False, label_smoothing=0.25, name="x", reduction="none")
    assert (both.name, both.reduction, both.from_logits, both.label_smoothing) == (
        "x", "none", False, 0.25)


def test_crossentropy_reduction_argument_changes_the_value():
    """reduction='sum' reaches the loss: the sum of the per-sample values, not their mean."""
    y_true = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    p = torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7]], dtype=torch.float64)
    per_sample = [-math.log(0.8), -math.log(0.6), -math.log(0.3)]
    out = CategoricalCrossentropy(reduction="sum")(y_true, p)
    assert float(out) == pytest.approx(sum(per_sample), rel=1e-12)
    yb = torch.tensor([[1.0], [0.0], [1.0]])
    pb = torch.tensor([[0.8], [0.4], [0.3]], dtype=torch.float64)
    out = BinaryCrossentropy(reduction="sum")(yb, pb)
    expected = -math.log(0.8) - math.log(0.6) - math.log(0.3)
    assert float(out) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------- call() casts labels


def test_binary_crossentropy_call_casts_labels_to_the_output_dtype():
    """call() itself (Keras's subclass protocol) casts float64 labels to float32 outputs."""
    y_true = torch.tensor([[0.3], [1.0]], dtype=torch.float64)
    p = torch.tensor([[0.7], [0.2]], dtype=torch.float32)
    out = BinaryCrossentropy(from_logits=False).call(y_true, p)
    assert out.dtype == torch.float32
    y = np.float32([0.3, 1.0])
    q = np.float32([0.7, 0.2]).astype(np.float64)
    expected = -(y * np.log(q) + (1 - y) * np.log1p(-q))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    logits = torch.tensor([[0.4], [-1.3]], dtype=torch.float32)
    out = BinaryCrossentropy(from_logits=True).call(y_true, logits)
    assert out.dtype == torch.float32
    z = np.float32([0.4, -1.3]).astype(np.float64)
    expected = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)


def test_mse_call_casts_labels_to_the_output_dtype():
    """The error is a float32 difference: the float64 label is rounded to float32 first."""
    label, pred = 0.1, 0.35
    out = MeanSquaredError().call(torch.tensor([[label]], dtype=torch.float64),
                                  torch.tensor([[pred]], dtype=torch.float32))
    assert out.dtype == torch.float32
    e = np.float32(pred) - np.float32(label)
    assert float(out[0]) == float(np.float32(e * e))


# ---------------------------------------------------------------------- which labels are cast


def test_sparse_labels_are_not_rounded_through_a_bfloat16_output():
    """bf16 logits over 1000 classes: label 257 stays 257 (bfloat16 holds integers exactly
    only up to 256, so casting the labels to the outputs' dtype would make it 256)."""
    assert int(torch.tensor(257).to(torch.bfloat16)) == 256  # why 257 is the case
    z = torch.zeros(1, 1000, dtype=torch.bfloat16)
    z[0, 256], z[0, 257] = 2.0, -2.0
    lse = math.log(998 + math.exp(2.0) + math.exp(-2.0))
    expected = lse + 2.0  # -log softmax(z)[257] = lse - z[257]
    for reduction in ("sum_over_batch_size", "none"):
        loss = SparseCategoricalCrossentropy(from_logits=True, reduction=reduction)
        out = loss(torch.tensor([257]), z)
        assert out.dtype == torch.bfloat16
        assert float(out.float().reshape(-1)[0]) == pytest.approx(expected, abs=0.05)


def test_float_labels_are_not_cast_to_an_integer_output():
    """Keras casts y_true to the loss's float dtype; integer outputs are no float dtype,
    so labels 0.5 and 0.25 stay fractional (not truncated to 0)."""
    loss = LossFunctionWrapper(_sq, reduction="none")
    out = loss(torch.tensor([0.5, 0.25]), torch.tensor([1, 2]))
    assert out.dtype == torch.float32
    assert out.tolist() == [0.25, 3.0625]  # (1 - 0.5)^2, (2 - 0.25)^2


# ---------------------------------------------------------------------- devices


def test_labels_are_put_on_the_outputs_device():
    """Labels given as a list land on y_pred's device (meta here), not the default one."""
    y_pred = torch.tensor([[1.0], [2.0], [4.0]], device="meta")
    out = MeanSquaredError()([[0.0], [0.5], [1.0]], y_pred)
    assert out.device.type == "meta" and out.shape == ()
    # the same call on the CPU, for the value
    out = MeanSquaredError()([[0.0], [0.5], [1.0]], torch.tensor([[1.0], [2.0], [4.0]]))
    assert float(out) == pytest.approx((1 + 2.25 + 9) / 3)


def test_sample_weights_are_put_on_the_losses_device():
    y_pred = torch.tensor([[1.0], [2.0], [4.0]], device="meta")
    y_true = torch.zeros(3, 1, device="meta")
    for reduction in ("sum_over_batch_size", "none"):
        out = MeanSquaredError(reduction=reduction)(y_true, y_pred, sample_weight=[1.0, 0.5, 2.0])
        assert out.device.type == "meta"


# ---------------------------------------------------------------------- sample weights


def test_a_scalar_sample_weight_scales_every_sample():
    """A 0-d weight (a Python float or a 0-d tensor) multiplies each per-sample loss."""
    y_pred, y_true = torch.tensor([[1.0], [2.0], [4.0]]), torch.zeros(3, 1)
    for w in (2.5, torch.tensor(2.5)):
        out = MeanSquaredError(reduction="none")(y_true, y_pred, sample_weight=w)
        assert out.tolist() == [2.5, 10.0, 40.0]
        out = MeanSquaredError()(y_true, y_pred, sample_weight=w)
        assert float(out) == pytest.approx(52.5 / 3)


def test_a_batch_level_scalar_loss_takes_a_scalar_or_one_element_weight():
    """A loss that returns a 0-d value: a weight () or (1,) scales it, the result stays 0-d."""
    y_true = torch.tensor([0.0, 1.0])
    y_pred = torch.tensor([1.0, 3.0])  # sum of squares: 1 + 4 = 5
    for w in (3.0, [3.0], torch.tensor([3.0])):
        out = LossFunctionWrapper(_scalar_sq)(y_true, y_pred, sample_weight=w)
        assert out.shape == ()
        assert float(out) == 15.0


def test_weights_with_a_trailing_axis_of_one_for_per_element_losses():
    """Per-element losses (N, T) with weights (N, T, 1): the trailing 1 is dropped, each
    element is scaled by its own weight (not broadcast to (N, T, T))."""
    y_true = torch.zeros(2, 3)
    y_pred = torch.tensor([[1.0, 2.0, 3.0], [0.5, 1.0, 4.0]])
    w = torch.tensor([[1.0, 0.0, 2.0], [4.0, 0.5, 0.25]])
    out = LossFunctionWrapper(_sq, reduction="none")(y_true, y_pred, sample_weight=w[..., None])
    expected = [[1.0, 0.0, 18.0], [1.0, 0.5, 4.0]]
    assert out.shape == (2, 3) and out.tolist() == expected
    total = LossFunctionWrapper(_sq, reduction="sum")(y_true, y_pred, sample_weight=w[..., None])
    assert float(total) == 24.5


def test_two_axis_weights_for_three_axis_losses_gain_a_trailing_axis():
    """Weights (N, T) against per-element losses (N, T, U): expanded to (N, T, 1)."""
    y_true = torch.zeros(2, 3, 4)
    y_pred = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 4
    w = torch.tensor([[1.0, 2.0, 0.0], [0.5, 3.0, 1.0]])
    out = LossFunctionWrapper(_sq, reduction="none")(y_true, y_pred, sample_weight=w)
    expected = (y_pred.numpy().astype(np.float64) ** 2) * w.numpy()[:, :, None]
    assert out.shape == (2, 3, 4)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-7)


# ---------------------------------------------------------------------- sparse CE label axes


@pytest.mark.parametrize("from_logits", [True, False])
def test_sparse_crossentropy_squeezes_a_trailing_label_axis_of_sequences(from_logits):
    """(N, T, C) outputs with (N, T, 1) labels, T = 3: the last label axis is squeezed."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 3, 4))
    labels = np.array([[0, 3, 1], [2, 2, 0]])
    logp = np_log_softmax(z, axis=-1)
    expected = -np.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]  # (2, 3)
    y_pred = torch.tensor(z if from_logits else np.exp(logp))
    loss = SparseCategoricalCrossentropy(from_logits=from_logits, reduction="none")
    out = loss(torch.tensor(labels[..., None]), y_pred)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10)
    mean = SparseCategoricalCrossentropy(from_logits=from_logits)(torch.tensor(labels[..., None]), y_pred)
    assert float(mean) == pytest.approx(expected.mean(), rel=1e-10)


@pytest.mark.parametrize("from_logits", [True, False])
def test_sparse_crossentropy_squeezes_the_channel_axis_of_map_labels(from_logits):
    """(N, C, H, W) outputs with (N, 1, H, W) labels, H = 2, W = 3: axis 1 is squeezed."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(2, 4, 2, 3))
    labels = np.array([[[0, 3, 1], [2, 2, 0]], [[1, 1, 3], [0, 2, 3]]])  # (2, 2, 3)
    logp = np_log_softmax(z, axis=1)
    expected = -np.take_along_axis(logp, labels[:, None], axis=1)[:, 0]  # (2, 2, 3)
    y_pred = torch.tensor(z if from_logits else np.exp(logp))
    loss = SparseCategoricalCrossentropy(from_logits=from_logits, reduction="none")
    out = loss(torch.tensor(labels[:, None]), y_pred)
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10)


def test_sparse_crossentropy_does_not_flatten_two_label_columns():
    """(N, 2) labels for (N, C) logits are not taken as 2N labels by the fused mean: the
    loss fails exactly as the per-sample cross-entropy does on them."""
    logits = torch.tensor([[0.2, 1.0, -0.5, 0.3, 2.0], [1.5, -1.0, 0.0, 0.7, 0.1]])
    labels = torch.tensor([[1, 4], [0, 2]])
    with pytest.raises(Exception) as ref:
        F.cross_entropy(logits, labels, reduction="none")
    with pytest.raises(Exception) as e:
        SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert type(e.value) is type(ref.value)
    assert str(e.value) == str(ref.value)


# ---------------------------------------------------------------------- Metric's name, _to


@pytest.mark.parametrize("bad", [3, "", b"acc"])
def test_metric_name_must_be_a_non_empty_string(bad):
    with pytest.raises(TypeError) as e:
        Metric(name=bad)
    assert str(e.value) == f"name: expected a non-empty string, got {bad!r}"


def test_metric_name_default_and_given():
    assert Metric().name == "metric"
    assert Metric(name="m1").name == "m1"


class _Slot:
    """A stand-in for a state tensor whose device can differ from the target: a CPU
    tensor's .data can only take another CPU tensor, and this machine may have no GPU.
    Holds a real tensor in .data, as a torch tensor does."""

    def __init__(self, t):
        self.data = t

    @property
    def device(self):
        return self.data.device


def test_to_moves_only_the_weights_on_another_device():
    m = Metric(name="m")
    on_cpu, on_meta = torch.tensor([1.0, 2.0]), torch.zeros(2, device="meta")
    a, b = _Slot(on_cpu), _Slot(on_meta)
    m._weights = [(a, "zeros"), (b, "ones")]
    m._to(torch.device("meta"))
    assert a.device == torch.device("meta") and a.data.shape == (2,)
    assert b.data is on_meta  # already there: untouched
    c = _Slot(on_cpu)
    m._weights = [(c, "zeros")]
    m._to(torch.device("cpu"))
    assert c.data is on_cpu


def test_to_keeps_real_weights_on_their_device_in_place():
    class Counter(Metric):
        def __init__(self):
            super().__init__(name="counter")
            self.total = self.add_weight(shape=(2,))

    m = Counter()
    m.total.add_(3.0)
    m._to(torch.device("cpu"))
    assert m._weights[0][0] is m.total and m.total.tolist() == [3.0, 3.0]


# ---------------------------------------------------------------------- BinaryAccuracy dtype


def test_binary_accuracy_compares_labels_in_the_outputs_dtype():
    """Keras casts y_true to y_pred's dtype: a float64 label 1 - 1e-9 is 1.0 in float32,
    so a prediction above the threshold is a hit."""
    y_true = torch.tensor([[1 - 1e-9], [1e-9]], dtype=torch.float64)
    assert float(y_true[0].float()) == 1.0 and float(y_true[1].float()) > 0.0
    s, c = BinaryAccuracy().update(torch.tensor([[0.75], [0.25]]), y_true)
    assert (int(s), int(c)) == (1, 2)  # 1e-9 stays non-zero in float32: a miss


# ---------------------------------------------------------------------- 'accuracy' resolution


def test_accuracy_on_one_dimensional_outputs_is_binary():
    """(N,) outputs are one output per sample: binary accuracy over the N samples."""
    m = brisk.metrics.get("accuracy")
    s, c = m.update(torch.tensor([0.8, 0.3, 0.6]), torch.tensor([1.0, 1.0, 0.0]))
    assert type(m.impl) is BinaryAccuracy
    assert (int(s), int(c)) == (1, 3)


def test_accuracy_with_a_zero_dim_label_for_one_sample_is_sparse():
    """A 0-d label against (1, C) outputs is of lower rank: sparse (top-k too)."""
    m = brisk.metrics.get("accuracy")
    s, c = m.update(torch.tensor([[0.2, 0.7, 0.1]]), torch.tensor(1))
    assert type(m.impl) is SparseCategoricalAccuracy and (int(s), int(c)) == (1, 1)
    top = brisk.metrics.get("top_k_accuracy")
    s, c = top.update(torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]]), torch.tensor(5))
    assert type(top.impl) is SparseTopKCategoricalAccuracy and (int(s), int(c)) == (0, 1)


def test_top_k_accuracy_with_one_label_column_is_sparse():
    """(N, 1) labels for (N, 7) outputs: sparse top-5. True classes ranked exactly 5th
    (hit), 6th (miss) and 1st (hit); class 0 is last everywhere, so reading the labels as
    one-hot (argmax 0) would give no hit at all."""
    scores = torch.tensor([
        [0.0, 7.0, 6.0, 3.0, 5.0, 4.0, 2.5],  # class 3: four above it -> 5th
        [0.0, 7.0, 6.0, 5.0, 2.0, 4.0, 3.0],  # class 4: five above it -> 6th
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0],  # class 6: 1st
    ])
    ranks = [1 + int((scores[r] > scores[r, c]).sum()) for r, c in enumerate((3, 4, 6))]
    assert ranks == [5, 6, 1]
    m = brisk.metrics.get("top_k_accuracy")
    s, c = m.update(scores, torch.tensor([[3], [4], [6]]))
    assert type(m.impl) is SparseTopKCategoricalAccuracy
    assert (int(s), int(c)) == (2, 3)


def test_output_shape_decides_binary_from_the_class_axis():
    """Per-sample shapes: () and (T, 1) have one output (binary, not argmax-invariant);
    (C, H, W) maps have their classes on axis 0: (1, H, W) is binary, (3, H, 1) is not."""
    m = brisk.metrics.get("accuracy")
    seen = []
    for shape in ((10,), (), (3, 4, 1), (1, 4, 5), (1, 6), (4, 1)):
        m.set_output_shape(shape)
        seen.append(m.argmax_invariant)
    assert seen == [True, False, True, False, True, False]
    top = brisk.metrics.get("top_k_accuracy")
    top.set_output_shape(())
    assert top.argmax_invariant is True  # top-k is never binary


# ---------------------------------------------------------------------- unknown metric hints


def test_unknown_metric_hints_use_a_cutoff_of_one_half():
    """'binary' matches 'binary_accuracy' with ratio 12/21 = 0.571: hinted (difflib's
    default cutoff 0.6 would drop it)."""
    valid = ("acc, accuracy, binary_accuracy, categorical_accuracy, mae, mean_absolute_error, "
             "mean_squared_error, mse, sparse_categorical_accuracy, "
             "sparse_top_k_categorical_accuracy, top_k_accuracy, top_k_categorical_accuracy")
    with pytest.raises(ValueError) as e:
        brisk.metrics.get("binary")
    assert str(e.value) == (
        f"metrics: unknown name 'binary'. Did you mean 'binary_accuracy'? Valid names: {valid}")
    with pytest.raises(ValueError) as e:
        brisk.metrics.get("categorical")
    assert str(e.value) == (
        "metrics: unknown name 'categorical'. Did you mean 'categorical_accuracy', "
        f"'top_k_categorical_accuracy', 'sparse_categorical_accuracy'? Valid names: {valid}")


def test_accuracy_refuses_labels_with_more_axes_than_the_outputs():
    """Labels (3, 1, 1) for outputs (3, 2): 'accuracy' resolves to categorical, whose argmax
    would broadcast (3, 1) against (3,) into 9 comparisons; it says what it expected."""
    from brisk.metrics import CategoricalAccuracy

    acc = brisk.metrics.get("accuracy")
    with pytest.raises(ValueError) as e:
        acc.update(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]),
                   torch.tensor([0, 1, 1]).reshape(3, 1, 1))
    assert str(e.value) == (
        "categorical_accuracy: expected one-hot labels of the outputs' shape (3, 2), got "
        "labels of shape (3, 1, 1) (class indices: sparse_categorical_accuracy)")
    hits, n = CategoricalAccuracy().update(torch.tensor([[0.9, 0.1], [0.2, 0.8]]),
                                           torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    assert (int(hits), n) == (1, 2)
