"""Every loss against its formula, computed independently in float64 numpy.

Formulas (Keras 3 ``keras.losses``; brisk takes ``(y_pred, y_true)``):
  cross-entropy   -sum_c y_c log p_c, p = softmax(logits) or the given probabilities clipped
                  to [1e-7, 1]; label smoothing y <- y (1 - s) + s / K
  binary CE       -(y log p + (1 - y) log(1 - p)), p clipped to [1e-7, 1 - 1e-7], averaged
                  over the last axis
  MSE / MAE       mean over the non-batch axes of e^2 / |e|
  Huber           0.5 e^2 if |e| <= delta else delta (|e| - 0.5 delta)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import brisk
from brisk.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
)

EPS = 1e-7
RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(6, 4)) * 3
LABELS = np.array([0, 3, 1, 2, 3, 0])
ONE_HOT = np.eye(4)[LABELS]


@pytest.fixture(autouse=True)
def _fresh_rng():
    """Each test draws from its own generator: the same data whatever ran before it."""
    global RNG
    RNG = np.random.default_rng(1)


def np_log_softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def np_softmax(z, axis=-1):
    return np.exp(np_log_softmax(z, axis))


def t(a, dtype=torch.float32):
    return torch.tensor(a, dtype=dtype)


def ev(loss, y_pred, y_true, reduction="sum_over_batch_size"):
    """The loss of (y_pred, y_true) with ``reduction``, called in Keras's order."""
    loss.reduction = reduction
    return loss(y_true, y_pred)


def close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- cross-entropy


def test_sparse_cross_entropy_from_logits():
    expected = -np_log_softmax(LOGITS)[np.arange(6), LABELS]
    loss = SparseCategoricalCrossentropy(from_logits=True)
    close(ev(loss, t(LOGITS), t(LABELS, torch.long), "none"), expected)
    close(ev(loss, t(LOGITS), t(LABELS, torch.long)), expected.mean())
    close(ev(loss, t(LOGITS), t(LABELS, torch.long), "sum"), expected.sum(), rtol=1e-5)


def test_sparse_cross_entropy_from_probabilities_is_minus_log_p():
    """from_logits=False: the outputs are probabilities, -log p of the true class; a
    second softmax would give a different (and much flatter) value."""
    p = np_softmax(LOGITS)
    loss = SparseCategoricalCrossentropy(from_logits=False)
    expected = -np.log(p[np.arange(6), LABELS])
    close(ev(loss, t(p), t(LABELS, torch.long), "none"), expected)
    # hand-made: p(true) = 0.5 and 0.25
    probs = t([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
    close(ev(loss, probs, t([0, 1], torch.long), "none"), [np.log(2), np.log(4)])


def test_sparse_cross_entropy_clips_zero_probabilities():
    loss = SparseCategoricalCrossentropy(from_logits=False)
    value = ev(loss, t([[1.0, 0.0]]), t([1], torch.long))
    close(value, -np.log(EPS), rtol=1e-4)


def test_categorical_cross_entropy_from_logits_and_probabilities():
    expected = -(ONE_HOT * np_log_softmax(LOGITS)).sum(-1)
    close(ev(CategoricalCrossentropy(from_logits=True), t(LOGITS), t(ONE_HOT), "none"), expected)
    p = np_softmax(LOGITS)
    close(ev(CategoricalCrossentropy(from_logits=False), t(p), t(ONE_HOT), "none"),
          expected, rtol=1e-4)
    # soft targets: every class's log-probability counts with its weight
    soft = RNG.dirichlet(np.ones(4), size=6)
    close(ev(CategoricalCrossentropy(from_logits=True), t(LOGITS), t(soft), "none"),
          -(soft * np_log_softmax(LOGITS)).sum(-1))


@pytest.mark.parametrize("s", [0.1, 0.3])
def test_categorical_cross_entropy_label_smoothing(s):
    smooth = ONE_HOT * (1 - s) + s / 4
    expected = -(smooth * np_log_softmax(LOGITS)).sum(-1)
    loss = CategoricalCrossentropy(from_logits=True, label_smoothing=s)
    close(ev(loss, t(LOGITS), t(ONE_HOT), "none"), expected)
    # hand-made: uniform logits give log K whatever the smoothing
    close(ev(loss, torch.zeros(1, 4), t(ONE_HOT[:1])), np.log(4))
    with pytest.raises(ValueError, match="label_smoothing"):
        CategoricalCrossentropy(label_smoothing=1.0)


def test_categorical_cross_entropy_channels_first_maps_use_axis_1():
    """(N, C, H, W) outputs: the class axis is 1; the per-sample value averages pixels."""
    z = RNG.normal(size=(2, 3, 2, 2))
    y = np.eye(3)[RNG.integers(0, 3, size=(2, 2, 2))].transpose(0, 3, 1, 2)
    per_pixel = -(y * np_log_softmax(z, axis=1)).sum(1)
    close(ev(CategoricalCrossentropy(from_logits=True), t(z), t(y), "none"), per_pixel.mean(axis=(1, 2)))


# ----------------------------------------------------------------------------- binary


def test_binary_cross_entropy_from_logits_and_probabilities():
    z = RNG.normal(size=(5, 3)) * 2
    y = RNG.integers(0, 2, size=(5, 3)).astype(float)
    p = 1 / (1 + np.exp(-z))
    expected = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(-1)
    close(ev(BinaryCrossentropy(from_logits=True), t(z), t(y), "none"), expected)
    close(ev(BinaryCrossentropy(from_logits=False), t(p), t(y), "none"), expected,
          rtol=1e-4)
    # hand-made: p = 0.8 for a 1 and for a 0
    close(ev(BinaryCrossentropy(from_logits=False), t([[0.8], [0.8]]), t([[1.0], [0.0]]), "none"),
          [-np.log(0.8), -np.log(0.2)])


def test_binary_cross_entropy_clips_saturated_probabilities():
    value = ev(BinaryCrossentropy(from_logits=False), t([[1.0], [0.0]]), t([[0.0], [1.0]]), "none")
    # float32: 1 - 1e-7 rounds to 1 - 1.19e-7, so the clipped 1 - p is 1.19e-7 (as in Keras)
    close(value, [-np.log(1 - np.float64(np.float32(1 - EPS))), -np.log(EPS)], rtol=1e-4)


def test_binary_cross_entropy_takes_flat_labels_for_one_output():
    z = t([[0.3], [-1.2], [2.0]])
    y = t([1.0, 0.0, 1.0])
    close(ev(BinaryCrossentropy(from_logits=True), z, y), ev(BinaryCrossentropy(from_logits=True), z, y[:, None]).numpy())


# ----------------------------------------------------------------------------- regression


def test_mse_and_mae_average_over_every_non_batch_axis():
    a, b = RNG.normal(size=(3, 2, 4)), RNG.normal(size=(3, 2, 4))
    close(ev(MeanSquaredError(), t(a), t(b), "none"), ((a - b) ** 2).mean(axis=(1, 2)))
    close(ev(MeanAbsoluteError(), t(a), t(b), "none"), np.abs(a - b).mean(axis=(1, 2)))
    close(ev(MeanSquaredError(), t(a), t(b)), ((a - b) ** 2).mean())
    close(ev(MeanAbsoluteError(), t(a), t(b), "sum"), np.abs(a - b).mean(axis=(1, 2)).sum())
    # hand-made, asymmetric in size: errors 1 and 3
    close(ev(MeanSquaredError(), t([[1.0, 3.0]]), t([[0.0, 0.0]])), 5.0)
    close(ev(MeanAbsoluteError(), t([[1.0, -3.0]]), t([[0.0, 0.0]])), 2.0)


@pytest.mark.parametrize("delta", [1.0, 0.5, 2.5])
def test_huber_quadratic_inside_delta_linear_outside(delta):
    e = np.array([[-3.0, -delta, -0.2, 0.0, 0.4, delta, 4.0]])
    per_elem = np.where(np.abs(e) <= delta, 0.5 * e**2, delta * (np.abs(e) - 0.5 * delta))
    close(ev(Huber(delta), t(e), torch.zeros(1, 7), "none"), per_elem.mean(-1))
    with pytest.raises(ValueError, match="delta"):
        Huber(0.0)


# ----------------------------------------------------------------------------- reductions, names


def test_reductions_and_a_bad_reduction():
    loss = MeanSquaredError()
    a, b = t([[1.0], [2.0], [4.0]]), torch.zeros(3, 1)
    close(ev(loss, a, b, "none"), [1.0, 4.0, 16.0])
    close(ev(loss, a, b, "sum"), 21.0)
    close(ev(loss, a, b, "mean"), 7.0)
    close(ev(loss, a, b, "sum_over_batch_size"), 7.0)
    close(ev(loss, a, b, None), [1.0, 4.0, 16.0])
    with pytest.raises(ValueError) as e:
        MeanSquaredError(reduction="avg")
    assert str(e.value) == ("reduction: expected 'sum_over_batch_size', 'mean', 'sum', "
                            "'mean_with_sample_weight', 'none' or None, got 'avg'")


# Keras 3.15.1 (keras.losses.MeanSquaredError()(y_true, y_pred, sample_weight=w)) with
# y_true = [[0], [0], [0]], y_pred = [[1], [2], [4]], w = [1, 0.5, 2]: weighted per-sample
# losses [1, 2, 32]; 'sum_over_batch_size' 35/3, 'sum' 35, 'mean_with_sample_weight' 35/3.5.
def test_sample_weight_and_reductions_match_keras():
    y_pred, y_true, w = t([[1.0], [2.0], [4.0]]), torch.zeros(3, 1), t([1.0, 0.5, 2.0])
    close(MeanSquaredError()(y_true, y_pred, sample_weight=w), 35 / 3)
    close(MeanSquaredError(reduction="sum")(y_true, y_pred, sample_weight=w), 35.0)
    close(MeanSquaredError(reduction="mean_with_sample_weight")(y_true, y_pred, sample_weight=w),
          35 / 3.5)
    close(MeanSquaredError(reduction="none")(y_true, y_pred, sample_weight=w), [1.0, 2.0, 32.0])


def test_keras_argument_order_and_subclassing():
    """A Loss takes (y_true, y_pred); a subclass defines call(y_true, y_pred) (Keras)."""

    class Asymmetric(brisk.losses.Loss):
        def call(self, y_true, y_pred):
            return (y_pred ** 2 * (y_true + 1)).mean(dim=-1)

    loss = Asymmetric()
    assert loss.name == "asymmetric"  # Keras names a subclass after it, in snake case
    y_true, y_pred = t([[0.5], [2.0]]), t([[3.0], [2.0]])
    close(loss(y_true, y_pred), (9 * 1.5 + 4 * 3) / 2)
    wrapped = brisk.losses.LossFunctionWrapper(lambda yt, yp: (yp - 2 * yt).abs().mean(-1))
    close(wrapped(y_true, y_pred), (abs(3 - 1) + abs(2 - 4)) / 2)
    assert Asymmetric(name="mine").name == "mine"


@pytest.mark.parametrize(
    "names, cls",
    [
        (("sparse_categorical_crossentropy", "CrossEntropyLoss", "cross_entropy"),
         SparseCategoricalCrossentropy),
        (("categorical_crossentropy",), CategoricalCrossentropy),
        (("binary_crossentropy", "BCEWithLogitsLoss", "bce"), BinaryCrossentropy),
        (("mse", "mean_squared_error", "MSELoss"), MeanSquaredError),
        (("mae", "mean_absolute_error", "L1Loss"), MeanAbsoluteError),
        (("huber", "HuberLoss", "huber_loss"), Huber),
    ],
)
def test_names_resolve_to_their_loss(names, cls):
    for name in names:
        assert type(brisk.losses.get(name)) is cls, name


def test_get_passes_objects_and_callables_and_rejects_the_rest():
    loss = Huber(2.0)
    assert brisk.losses.get(loss) is loss

    def fn(a, b):
        return (a - b).sum()

    assert brisk.losses.get(fn) is fn
    with pytest.raises(TypeError, match="loss: expected a name"):
        brisk.losses.get(3)
    with pytest.raises(ValueError, match="loss: unknown name 'msee'.*'mse'"):
        brisk.losses.get("msee")


# ----------------------------------------------------------------------------- shapes, dtypes


def test_cross_entropy_on_sequences_uses_the_last_axis():
    """(N, T, C) outputs, as from a sequence model: classes on the last axis."""
    z = RNG.normal(size=(2, 5, 3))
    y = np.eye(3)[RNG.integers(0, 3, size=(2, 5))]
    expected = -(y * np_log_softmax(z, axis=-1)).sum(-1).mean(-1)
    close(ev(CategoricalCrossentropy(from_logits=True), t(z), t(y), "none"), expected)
    s = 0.2
    ys = y * (1 - s) + s / 3
    close(ev(CategoricalCrossentropy(from_logits=True, label_smoothing=s), t(z), t(y), "none"),
          -(ys * np_log_softmax(z, axis=-1)).sum(-1).mean(-1))


def test_label_smoothing_on_channels_first_maps_spreads_over_the_channels():
    """(N, C, H, W): K is the channel count (axis 1), not the width."""
    z = RNG.normal(size=(2, 3, 2, 5))
    y = np.eye(3)[RNG.integers(0, 3, size=(2, 2, 5))].transpose(0, 3, 1, 2)
    s = 0.3
    ys = y * (1 - s) + s / 3
    expected = -(ys * np_log_softmax(z, axis=1)).sum(1).mean(axis=(1, 2))
    close(ev(CategoricalCrossentropy(from_logits=True, label_smoothing=s), t(z), t(y), "none"), expected)


def test_categorical_cross_entropy_from_probabilities_with_zeros_stays_finite():
    """A zero probability on a class with zero target weight contributes 0, not 0 * -inf."""
    value = ev(CategoricalCrossentropy(from_logits=False), t([[0.0, 1.0, 0.0]]), t([[0, 1, 0]]))
    close(value, 0.0, atol=1e-6)
    value = ev(CategoricalCrossentropy(from_logits=False), t([[0.0, 1.0]]), t([[1, 0]]))
    close(value, -np.log(EPS), rtol=1e-4)


def test_huber_reduces_per_sample():
    e = np.array([[0.5, 3.0], [-2.0, 0.1], [0.0, 0.0]])
    per_elem = np.where(np.abs(e) <= 1.0, 0.5 * e**2, np.abs(e) - 0.5)
    close(ev(Huber(), t(e), torch.zeros(3, 2), "none"), per_elem.mean(-1))


@pytest.mark.parametrize("loss", [MeanSquaredError(), MeanAbsoluteError(), Huber(),
                                  BinaryCrossentropy(from_logits=True), CategoricalCrossentropy(from_logits=True)])
def test_loss_is_computed_in_the_outputs_dtype(loss):
    """float64 labels (numpy's default) must not turn a float32 loss into float64
    (unsupported on MPS, twice the memory traffic elsewhere)."""
    y_pred = torch.rand(4, 3)
    y_true = torch.rand(4, 3, dtype=torch.float64).round()
    value = ev(loss, y_pred, y_true, "none")
    assert value.dtype == torch.float32 and value.shape == (4,)


def test_reprs_name_the_loss():
    assert repr(Huber()) == "Huber(from_logits=None)"
    assert repr(BinaryCrossentropy(from_logits=False)) == "BinaryCrossentropy(from_logits=False)"


def test_sample_weight_shapes_dtypes_and_per_element_losses():
    y_pred, y_true = t([[1.0], [2.0], [4.0]]), torch.zeros(3, 1)
    w64 = np.array([1.0, 0.5, 2.0])  # float64 weights never turn the loss into float64
    for w in (w64, w64[:, None], w64.tolist()):
        value = MeanSquaredError()(y_true, y_pred, sample_weight=w)
        assert value.dtype == torch.float32
        close(value, 35 / 3)
    # a loss that returns per-element values (N, T): weights (N,) scale each row
    per_element = brisk.losses.LossFunctionWrapper(lambda yt, yp: (yp - yt) ** 2,
                                                   reduction="none")
    out = per_element(torch.zeros(2, 3), t([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]),
                      sample_weight=t([2.0, 0.5]))
    close(out, [[2.0, 8.0, 18.0], [0.5, 0.5, 0.5]])


def test_loss_protocol_names_config_and_errors():
    class MyFancyLoss(brisk.losses.Loss):
        def call(self, y_true, y_pred):
            return (y_pred - y_true).abs().mean(-1)

    assert MyFancyLoss().name == "my_fancy_loss"
    assert MyFancyLoss(reduction="sum").get_config() == {
        "name": "my_fancy_loss", "reduction": "sum", "from_logits": None}
    with pytest.raises(NotImplementedError) as e:
        brisk.losses.Loss()(torch.zeros(2), torch.zeros(2))
    assert str(e.value) == "Loss: a Loss subclass defines call(y_true, y_pred)"

    def my_mae(y_true, y_pred):
        return (y_pred - y_true).abs().mean(-1)

    wrapped = brisk.losses.LossFunctionWrapper(my_mae, reduction="sum")
    assert wrapped.name == "my_mae" and wrapped.reduction == "sum" and wrapped.from_logits is None
    close(wrapped(t([[0.0], [0.0]]), t([[1.0], [3.0]])), 4.0)
    assert brisk.losses.LossFunctionWrapper(my_mae, name="mine").name == "mine"
    with pytest.raises(TypeError) as e:
        brisk.losses.LossFunctionWrapper(3)
    assert str(e.value) == "fn: expected a callable (y_true, y_pred) -> loss, got 3"


def test_binary_cross_entropy_label_smoothing_matches_keras():
    # Keras 3.15.1 (tools/keras_oracle/bce_ls.py): label_smoothing=0.2
    y_true = t([[1.0], [0.0], [1.0]])
    close(BinaryCrossentropy(label_smoothing=0.2)(y_true, t([[0.9], [0.2], [0.4]])), 0.5208667)
    close(BinaryCrossentropy(from_logits=True, label_smoothing=0.2)(
        y_true, t([[2.0], [-1.0], [0.5]])), 0.42142224)
    with pytest.raises(ValueError, match="label_smoothing: expected a float in"):
        BinaryCrossentropy(label_smoothing=1.0)


@pytest.mark.parametrize("labels", ["flat", "column"])
def test_fused_sparse_cross_entropy_mean_matches_the_per_sample_path(labels):
    """From logits with no sample weight the loss is cross_entropy's own mean (one autograd
    node): the same value and gradient as the per-sample losses summed and divided."""
    logits = torch.tensor(LOGITS * 2, dtype=torch.float32, requires_grad=True)
    y = torch.tensor(LABELS)
    y = y if labels == "flat" else y[:, None]
    loss = SparseCategoricalCrossentropy(from_logits=True)
    fused = loss(y, logits)
    assert fused.grad_fn.name().startswith("NllLoss")  # the fused op, not a sum and a div
    (g_fused,) = torch.autograd.grad(fused, logits)
    per_sample = SparseCategoricalCrossentropy(from_logits=True, reduction="none")(y, logits)
    ref = per_sample.sum() / 6
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(fused, ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-6, atol=1e-7)
    expected = -np_log_softmax(LOGITS * 2)[np.arange(6), LABELS].mean()
    assert float(fused.detach()) == pytest.approx(expected, rel=1e-5)
    # an empty batch keeps Keras's 0 (sum over a batch of none, divided by max(n, 1))
    assert float(loss(torch.zeros(0, dtype=torch.long), torch.zeros(0, 4))) == 0.0


def test_fused_mean_also_for_reduction_mean_and_a_batch_of_one():
    logits = torch.tensor(LOGITS, dtype=torch.float32, requires_grad=True)
    y = torch.tensor(LABELS)
    for loss, z, t in ((SparseCategoricalCrossentropy(from_logits=True, reduction="mean"),
                        logits, y), (SparseCategoricalCrossentropy(from_logits=True),
                                     logits[:1], y[:1])):
        out = loss(t, z)
        assert out.grad_fn.name().startswith("NllLoss")
        expected = -np_log_softmax(LOGITS[: len(t)])[np.arange(len(t)), LABELS[: len(t)]].mean()
        assert float(out.detach()) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_dense_losses_cast_labels_to_the_outputs_dtype(dtype):
    """Keras casts y_true to the loss's float dtype: float64 or integer labels against
    float32 outputs give a float32 loss, the same value as float32 labels."""
    p = torch.tensor([[0.2, 0.8], [0.6, 0.4]], dtype=torch.float32)
    y = torch.tensor([[0, 1], [1, 0]])
    from brisk.losses import LossFunctionWrapper

    def squared(y_true, y_pred):  # a user's function: no cast of its own
        return ((y_true - y_pred) ** 2).mean(-1)

    for loss in (CategoricalCrossentropy(), BinaryCrossentropy(), MeanSquaredError(),
                 MeanAbsoluteError(), LossFunctionWrapper(squared)):
        out = loss(y.to(dtype), p)
        assert out.dtype == torch.float32, type(loss).__name__
        assert float(out) == float(loss(y.float(), p)), type(loss).__name__
