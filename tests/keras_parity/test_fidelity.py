"""Keras fidelity: the same code computes what Keras 3 computes.

Every pinned value below was produced by Keras 3.15.1 (torch backend, torch 2.13.0) running
the same code: the scripts are in tools/keras_oracle/ (run them in a scratch environment
with ``pip install keras==3.15.1``). Issue 11, sections 1 and 2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import brisk
from brisk.callbacks import Callback
from brisk.layers import BatchNormalization, Dense, Dropout, Input


def _params_line(model) -> tuple[int, int, int]:
    text = model.summary(print_fn=None)
    get = {line.split(":")[0]: int(line.split(":")[1].replace(",", ""))
           for line in text.splitlines() if "params:" in line}
    return get["Total params"], get["Trainable params"], get["Non-trainable params"]


def _mlp_bn():
    return brisk.Sequential([Input((4,)), Dense(8), BatchNormalization(), Dense(1)])


def _set_dense(layer, kernel, bias):
    """Keras layout: kernel (in, out)."""
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor(np.asarray(kernel, np.float32)).T)
        layer.linear.bias.copy_(torch.tensor(np.asarray(bias, np.float32)))


X4 = np.random.RandomState(0).randn(64, 4).astype("float32")
Y1 = np.random.RandomState(1).randn(64, 1).astype("float32")


# ----------------------------------------------------------------------------- 1.1 freezing


def test_summary_counts_follow_trainable_as_in_keras():
    # Keras 3.15.1 (oracle1.py): 81 weights, 65 trainable, 16 non-trainable (the
    # BatchNorm moving mean and variance); Dense 0 frozen: 25 / 56; model frozen: 0 / 81;
    # model frozen, then layer 0 unfrozen: still no trainable weight; model unfrozen: 65.
    m = _mlp_bn()
    assert _params_line(m) == (81, 65, 16) and m.count_params() == 81
    m.layers[0].trainable = False
    assert _params_line(m) == (81, 25, 56)
    m.trainable = False
    assert _params_line(m) == (81, 0, 81)
    assert [layer.trainable for layer in m.layers] == [False, False, False]
    m.layers[0].trainable = True
    assert _params_line(m) == (81, 0, 81)  # a frozen parent keeps its children frozen
    m.trainable = True
    assert [layer.trainable for layer in m.layers] == [True, True, True]
    assert _params_line(m) == (81, 65, 16)


def test_freezing_a_nested_sequential_propagates_to_its_layers():
    # Keras 3.15.1: inner = Sequential([Dense(3), BatchNormalization()]) frozen inside
    # Sequential([Input((4,)), inner, Dense(1)]): 4 trainable, 27 non-trainable.
    inner = brisk.Sequential([Dense(3), BatchNormalization()])
    outer = brisk.Sequential([Input((4,)), inner, Dense(1)])
    outer.build((4,))
    inner.trainable = False
    assert [layer.trainable for layer in inner.layers] == [False, False]
    assert _params_line(outer) == (31, 4, 27)


def test_frozen_weights_stay_unchanged_through_fit_and_the_others_train():
    m = _mlp_bn()
    m.compile(optimizer="sgd", loss="mse", seed=0)
    m.layers[1].trainable = False  # after compile: takes effect at the next fit (Keras too)
    bn = m.layers[1].bn
    frozen = {k: v.clone() for k, v in bn.state_dict().items()}
    dense0 = m.layers[0].linear.weight.detach().clone()
    m.fit(X4, Y1, epochs=1, batch_size=16, verbose=0)
    for k, v in bn.state_dict().items():  # gamma, beta and the moving statistics
        assert torch.equal(v, frozen[k]), k
    assert not torch.equal(m.layers[0].linear.weight, dense0)
    # unfrozen again: the next fit trains it (Keras needs a new compile here; brisk
    # rebuilds the optimizer's parameter list by itself)
    m.layers[1].trainable = True
    m.fit(X4, Y1, epochs=1, batch_size=16, verbose=0)
    assert not torch.equal(bn.weight, frozen["weight"])
    assert not torch.equal(bn.running_mean, frozen["running_mean"])


def test_frozen_batchnorm_normalises_with_its_moving_statistics_while_training():
    # Keras 3.15.1: a fresh frozen BatchNormalization called with training=True returns
    # x / sqrt(1 + epsilon) (moving mean 0, variance 1), whatever the batch statistics.
    model = brisk.Sequential([Input((4,)), BatchNormalization()])
    model.trainable = False
    model.train()
    xb = torch.tensor(np.random.RandomState(2).randn(8, 4).astype("float32") * 3 + 1)
    torch.testing.assert_close(model(xb), xb / math.sqrt(1 + 1e-3))
    assert model.layers[0].bn.training is False and model.training is True


def test_a_frozen_parent_keeps_an_unfrozen_child_fixed_in_fit():
    m = _mlp_bn()
    m.compile(optimizer="sgd", loss="mse", seed=0)
    m.trainable = False
    m.layers[2].trainable = True  # Keras: model.trainable_weights stays empty
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.warns(UserWarning, match="The model does not have any trainable weights"):
        m.fit(X4, Y1, epochs=1, verbose=0)  # Keras warns and computes the loss only
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k  # moving statistics too (frozen BatchNorm)
    m.trainable = True
    m.layers[0].trainable = False
    m.fit(X4, Y1, epochs=1, batch_size=16, verbose=0)
    assert torch.equal(m.layers[0].linear.weight, before["layers.0.linear.weight"])
    assert not torch.equal(m.layers[2].linear.weight, before["layers.2.linear.weight"])


def test_trainable_works_on_any_torch_module():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
    net = nn.Sequential(backbone, nn.Linear(8, 1))
    backbone.trainable = False  # a plain attribute on a torch module, as in Keras
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer = brisk.Trainer(net, optimizer="sgd", loss="mse", seed=0)
    trainer.fit(X4, Y1, epochs=1, batch_size=16, verbose=0)
    for k in ("0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias", "0.1.running_mean",
              "0.1.running_var"):
        assert torch.equal(net.state_dict()[k], before[k]), k
    assert not torch.equal(net[1].weight, before["1.weight"])
    assert backbone[0].weight.requires_grad is False
    backbone.trainable = True  # read again at the next fit
    trainer.fit(X4, Y1, epochs=1, batch_size=16, verbose=0)
    assert not torch.equal(backbone[0].weight, before["0.0.weight"])
    assert not torch.equal(backbone[1].running_mean, before["0.1.running_mean"])
    assert backbone[0].weight.requires_grad is True


def test_a_parameter_frozen_by_hand_stays_frozen():
    net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 1))
    net[0].weight.requires_grad_(False)  # no flag anywhere: brisk leaves it alone
    before = net[0].weight.clone()
    brisk.Trainer(net, optimizer="sgd", loss="mse").fit(X4, Y1, epochs=1, verbose=0)
    assert torch.equal(net[0].weight, before) and net[0].weight.requires_grad is False


def test_a_torch_module_inside_a_sequential_is_frozen_with_it():
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    m = brisk.Sequential([Input((4,)), inner, Dense(1)])
    m.compile(optimizer="sgd", loss="mse", seed=0)
    m.trainable = False
    assert inner[1].trainable is False  # propagated to the torch modules below
    inner = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    m = brisk.Sequential([Input((4,)), inner, Dense(1)])
    m.compile(optimizer="sgd", loss="mse", seed=0)
    m.layers[0].trainable = False  # a plain attribute on the torch module: inherited at fit
    before = {k: v.clone() for k, v in inner.state_dict().items()}
    m.fit(X4, Y1, epochs=1, batch_size=16, verbose=0)
    for k, v in inner.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_trainable_rejects_a_non_bool():
    with pytest.raises(TypeError) as e:
        Dense(2).trainable = "no"
    assert str(e.value) == "trainable: expected True or False, got 'no'"


# ----------------------------------------------------------------------------- 1.2 loss order


XA = np.array([[1.0, 2.0], [3.0, -1.0]], "float32")
YA = np.array([[0.5], [2.0]], "float32")


def test_a_custom_loss_at_the_keras_front_gets_y_true_then_y_pred():
    # Keras 3.15.1: Dense(1) with kernel ones, bias zero, compile(loss=asym) -> 12.75
    # (the swapped order would give 6.5).
    def asym(y_true, y_pred):
        return torch.mean(y_pred ** 2 * (y_true + 1.0), dim=-1)

    m = brisk.Sequential([Input((2,)), Dense(1)])
    m.build((2,))
    _set_dense(m.layers[0], [[1.0], [1.0]], [0.0])
    m.compile(optimizer="sgd", loss=asym)
    assert m.evaluate(XA, YA) == pytest.approx(12.75)


def test_a_loss_subclass_gets_keras_order_at_both_fronts():
    class Asym(brisk.losses.Loss):
        def call(self, y_true, y_pred):
            return torch.mean(y_pred ** 2 * (y_true + 1.0), dim=-1)

    m = brisk.Sequential([Input((2,)), Dense(1)])
    m.build((2,))
    _set_dense(m.layers[0], [[1.0], [1.0]], [0.0])
    m.compile(optimizer="sgd", loss=Asym())
    assert m.evaluate(XA, YA) == pytest.approx(12.75)
    net = nn.Linear(2, 1, bias=False)
    nn.init.ones_(net.weight)
    assert brisk.Trainer(net, loss=Asym()).evaluate(XA, YA) == pytest.approx(12.75)


def test_functions_given_to_trainer_and_torch_losses_keep_torch_order():
    net = nn.Linear(2, 1, bias=False)
    nn.init.ones_(net.weight)

    def asym_torch(input, target):  # noqa: A002 - torch's names
        return torch.mean(input ** 2 * (target + 1.0))

    assert brisk.Trainer(net, loss=asym_torch).evaluate(XA, YA) == pytest.approx(12.75)
    # a torch.nn.functional function at the Keras front keeps torch's order too
    m = brisk.Sequential([Input((2,)), Dense(1, activation="sigmoid")])
    m.build((2,))
    _set_dense(m.layers[0], [[0.5], [-0.25]], [0.1])
    yb = np.array([[1.0], [0.0]], "float32")
    p = torch.sigmoid(torch.tensor(XA) @ torch.tensor([[0.5], [-0.25]]) + 0.1)
    expected = F.binary_cross_entropy(p, torch.tensor(yb)).item()
    m.compile(optimizer="sgd", loss=F.binary_cross_entropy)
    assert m.evaluate(XA, yb) == pytest.approx(expected, rel=1e-6)
    m.compile(optimizer="sgd", loss=nn.BCELoss())
    assert m.evaluate(XA, yb) == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------- 1.3 accuracy

_rs = np.random.RandomState(0)
XS = _rs.randn(200, 5).astype("float32")
YS = (XS[:, 0] + 0.3 * _rs.randn(200) > 0).astype("float32")
W1, B1 = [[0.3], [-0.2], [0.1], [0.5], [-0.4]], [0.05]
W3 = [[0.3, -0.1, 0.2], [-0.2, 0.4, 0.0], [0.1, 0.1, -0.3], [0.5, -0.5, 0.2], [-0.4, 0.2, 0.1]]
YL = _rs.randint(0, 3, 200)


def test_accuracy_of_a_sigmoid_output_with_mse_is_binary_accuracy():
    # Keras 3.15.1 (acc.py): these weights and data give accuracy 0.63 and loss 0.2176058
    # with labels of shape (N,) or (N, 1).
    m = brisk.Sequential([Input((5,)), Dense(1, activation="sigmoid")])
    m.build((5,))
    _set_dense(m.layers[0], W1, B1)
    m.compile(optimizer="sgd", loss="mse", metrics=["accuracy"])
    for y in (YS, YS[:, None]):
        r = m.evaluate(XS, y, return_dict=True)
        assert r["accuracy"] == pytest.approx(0.63) and r["loss"] == pytest.approx(0.2176058, rel=1e-5)
    assert ((m.predict(XS)[:, 0] > 0.5) == (YS > 0.5)).mean() == pytest.approx(0.63)


@pytest.mark.parametrize("loss, y, expected_loss", [
    ("mse", np.eye(3, dtype="float32")[YL], 0.2571968),
    ("binary_crossentropy", np.eye(3, dtype="float32")[YL], 0.7341408),
    ("sparse_categorical_crossentropy", YL, 1.2862067),
])
def test_accuracy_of_a_softmax_output_follows_the_label_shape(loss, y, expected_loss):
    # Keras 3.15.1 (acc.py): accuracy 0.34 with each loss (categorical for one-hot labels,
    # sparse for class indices); the losses as pinned.
    m = brisk.Sequential([Input((5,)), Dense(3, activation="softmax")])
    m.build((5,))
    _set_dense(m.layers[0], W3, [0.0, 0.0, 0.0])
    m.compile(optimizer="sgd", loss=loss, metrics=["accuracy"])
    r = m.evaluate(XS, y, return_dict=True)
    assert r["accuracy"] == pytest.approx(0.34)
    assert r["loss"] == pytest.approx(expected_loss, rel=1e-5)
    m.fit(XS, y, epochs=1, verbose=0)  # trains too (mse with one-hot labels crashed before)


# ----------------------------------------------------------------------------- 1.5 modes


def test_evaluate_and_predict_from_a_callback_leave_the_training_modes_as_they_were():
    m = brisk.Sequential([Input((4,)), Dense(8), BatchNormalization(), Dropout(0.5), Dense(1)])
    m.compile(optimizer="sgd", loss="mse", seed=0)
    m.layers[1].trainable = False  # a frozen BatchNorm stays in inference mode throughout
    seen = []

    class Probe(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                self.model.evaluate(X4[:8], Y1[:8])
                self.model.predict(X4[:8])

        def on_train_batch_begin(self, batch, logs=None):
            seen.append((m.training, m.layers[2].training, m.layers[1].bn.training))

    m.fit(X4, Y1, epochs=1, batch_size=16, verbose=0, callbacks=[Probe()])
    assert seen == [(True, True, False)] * 4


# ----------------------------------------------------------------------------- 2. errors


def test_float64_tensors_and_integer_features_train_in_float32():
    torch.manual_seed(0)
    net = nn.Linear(6, 1)
    h = brisk.Trainer(net, loss="mse").fit(torch.randn(64, 6, dtype=torch.float64),
                                           torch.randn(64), verbose=0)
    assert math.isfinite(h.history["loss"][0]) and net.weight.dtype == torch.float32
    rng = np.random.default_rng(0)
    h = brisk.Trainer(net, loss="mse").fit(rng.integers(0, 5, (64, 6)), rng.normal(size=64),
                                           verbose=0)
    assert math.isfinite(h.history["loss"][0])
    assert brisk.Trainer(net, loss="mse").predict(rng.integers(0, 5, (3, 6))).dtype == np.float32


def test_batchnorm_trains_on_a_last_batch_of_one_sample():
    # Keras 3.15.1 trains Dense -> BatchNormalization on 33 samples at batch size 32.
    m = brisk.Sequential([Input((4,)), Dense(3), BatchNormalization(), Dense(1)])
    m.compile(optimizer="sgd", loss="mse", seed=0)
    rng = np.random.default_rng(0)
    h = m.fit(rng.normal(size=(33, 4)).astype("float32"), rng.normal(size=33).astype("float32"),
              batch_size=32, epochs=2, verbose=0)
    assert all(math.isfinite(v) for v in h.history["loss"])
    bn = m.layers[1].bn
    assert int(bn.num_batches_tracked) == 4
    assert torch.isfinite(bn.running_mean).all() and torch.isfinite(bn.running_var).all()


def test_single_sample_batchnorm_matches_keras_formula():
    layer = BatchNormalization(momentum=0.9)
    layer.build((3,))
    layer.train()
    with torch.no_grad():
        layer.bn.weight.copy_(torch.tensor([2.0, 3.0, 4.0]))
        layer.bn.bias.copy_(torch.tensor([0.5, -1.0, 0.0]))
    x = torch.tensor([[1.0, 2.0, -3.0]], requires_grad=True)
    out = layer(x)
    torch.testing.assert_close(out, torch.tensor([[0.5, -1.0, 0.0]]))  # beta: x is its mean
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.zeros(1, 3))
    torch.testing.assert_close(layer.bn.running_mean, torch.tensor([0.1, 0.2, -0.3]))
    torch.testing.assert_close(layer.bn.running_var, torch.full((3,), 0.9))


def test_one_hot_labels_for_a_sparse_loss_name_the_fitting_loss():
    m = brisk.Sequential([Input((4,)), Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    y = np.eye(3, dtype="float32")[np.arange(32) % 3]
    with pytest.raises(ValueError) as e:
        m.fit(np.zeros((32, 4), "float32"), y, verbose=0)
    assert str(e.value) == (
        "y: sparse_categorical_crossentropy needs one integer class label per sample, shape "
        "(N,) or (N, 1); got shape (32, 3), which looks one-hot: use "
        "loss='categorical_crossentropy', or pass the class indices y.argmax(axis=1)")


# ----------------------------------------------------------------------------- 1.6 uint8 inputs

XU = np.array([[255, 0, 1], [10, 20, 30]], dtype="uint8")


def _ones_dense(*first):
    m = brisk.Sequential([Input((3,)), *first, Dense(1)])
    _set_dense(m.layers[-1], [[1.0], [1.0], [1.0]], [0.0])
    return m


def test_uint8_arrays_reach_the_model_unscaled_as_in_keras():
    # Keras 3.15.1 (oracle1.py): kernel ones, bias 0 -> predict [256, 60]; with
    # Rescaling(1/255) in front -> [1.0039216, 0.23529413].
    np.testing.assert_allclose(_ones_dense().predict(XU).ravel(), [256.0, 60.0])
    scaled = _ones_dense(brisk.layers.Rescaling(1 / 255))
    np.testing.assert_allclose(scaled.predict(XU).ravel(), [1.0039216, 0.23529413], rtol=1e-6)
    m = _ones_dense()
    m.compile(optimizer="sgd", loss="mse")
    assert m.evaluate(XU, np.zeros((2, 1), "float32")) == pytest.approx((256**2 + 60**2) / 2)
    # a torch DataLoader of uint8 is fed unscaled too
    ds = torch.utils.data.TensorDataset(torch.tensor(XU), torch.zeros(2, 1))
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    assert m.evaluate(loader) == pytest.approx((256**2 + 60**2) / 2)


def test_device_loader_scales_only_when_asked():
    y = np.zeros(2, "int64")
    raw = next(iter(brisk.DeviceLoader(XU, y, shuffle=False)))[0]
    torch.testing.assert_close(raw, torch.tensor(XU, dtype=torch.float32))
    scaled = next(iter(brisk.DeviceLoader(XU, y, shuffle=False, rescale=1 / 255)))[0]
    torch.testing.assert_close(scaled, torch.tensor(XU, dtype=torch.float32) / 255)
    normed = next(iter(brisk.DeviceLoader(XU, y, shuffle=False, mean=0.5, std=0.25)))[0]
    torch.testing.assert_close(normed, (torch.tensor(XU, dtype=torch.float32) / 255 - 0.5) / 0.25)
    with pytest.raises(ValueError) as e:
        brisk.DeviceLoader(XU, y, rescale=1 / 255, mean=0.5, std=0.25)
    assert str(e.value).startswith("rescale: give rescale or mean/std, not both")
    for bad in (0, float("nan"), "1/255", True):
        with pytest.raises(ValueError, match="rescale: expected a finite non-zero number"):
            brisk.DeviceLoader(XU, y, rescale=bad)


def test_rescaling_layer_saves_and_loads(tmp_path):
    m = brisk.Sequential([Input((3,)), brisk.layers.Rescaling(1 / 127.5, offset=-1.0), Dense(2)])
    m.save(tmp_path / "m.safetensors")
    again = brisk.load_model(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(again.predict(XU), m.predict(XU))
    assert again.layers[0].get_config()["offset"] == -1.0
    out = brisk.layers.Rescaling(1 / 127.5, offset=-1.0)(torch.tensor(XU))
    torch.testing.assert_close(out, torch.tensor(XU, dtype=torch.float32) / 127.5 - 1)
    with pytest.raises(ValueError, match="scale: expected a finite number"):
        brisk.layers.Rescaling("0.5")


# ----------------------------------------------------------------------------- utilities


def test_to_categorical_matches_keras():
    # Keras 3.15.1: to_categorical([0, 2, 1]) and to_categorical([[1], [0]], 3), float64
    np.testing.assert_array_equal(brisk.utils.to_categorical([0, 2, 1]),
                                  [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    out = brisk.utils.to_categorical(np.array([[1], [0]]), 3)
    assert out.dtype == np.float64 and out.tolist() == [[0, 1, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match=r"x: labels must be in \[0, 1\], found \[0, 2\]"):
        brisk.utils.to_categorical([0, 2], num_classes=2)


def test_set_random_seed_makes_construction_reproducible():
    def build():
        brisk.utils.set_random_seed(7)
        return brisk.Sequential([Input((4,)), Dense(3)]).layers[0].linear.weight.clone()

    assert torch.equal(build(), build())
    with pytest.raises(TypeError, match="seed: expected an int"):
        brisk.utils.set_random_seed(1.5)


# ----------------------------------------------------------------------------- review fixes


def test_reenabling_a_layer_inside_a_frozen_nested_model_trains_it():
    # Keras 3.15.1 (nested.py): inner.trainable = False, then inner.layers[0].trainable =
    # True: 19 trainable, 12 non-trainable, and fit changes the inner Dense.
    inner = brisk.Sequential([Dense(3), BatchNormalization()])
    outer = brisk.Sequential([Input((4,)), inner, Dense(1)])
    inner.trainable = False
    inner.layers[0].trainable = True
    assert _params_line(outer)[1:] == (19, 12)
    outer.compile(optimizer="sgd", loss="mse", seed=0)
    k0 = inner.layers[0].linear.weight.clone()
    outer.fit(np.ones((8, 4), "float32"), np.zeros((8, 1), "float32"), verbose=0)
    assert not torch.equal(k0, inner.layers[0].linear.weight)


def test_trainable_flags_survive_save_and_load(tmp_path):
    m = _mlp_bn()
    m.layers[0].trainable = False
    m.layers[1].trainable = False
    m.save(tmp_path / "m.safetensors")
    again = brisk.load_model(tmp_path / "m.safetensors")
    assert [layer.trainable for layer in again.layers] == [False, False, True]
    assert _params_line(again) == _params_line(m) == (81, 9, 72)


def test_batchnorm_moving_variance_uses_the_biased_batch_variance():
    # Keras's moving_variance follows the batch's biased variance (torch: unbiased).
    layer = BatchNormalization(momentum=0.9)
    layer.build((2,))
    layer.train()
    x = torch.tensor([[1.0, 0.0], [3.0, 4.0], [5.0, 8.0]])
    layer(x)
    biased = x.var(0, unbiased=False)
    torch.testing.assert_close(layer.bn.running_var, 0.9 * torch.ones(2) + 0.1 * biased)
    torch.testing.assert_close(layer.bn.running_mean, 0.1 * x.mean(0))


def test_a_plain_loss_function_gets_labels_of_the_outputs_rank():
    # Keras's LossFunctionWrapper: labels (N,) against outputs (N, 1) are made (N, 1),
    # never broadcast to (N, N).
    shapes = []

    def mse(y_true, y_pred):
        shapes.append((tuple(y_true.shape), tuple(y_pred.shape)))
        return ((y_pred - y_true) ** 2).mean(-1)

    m = brisk.Sequential([Input((2,)), Dense(1)])
    _set_dense(m.layers[0], [[1.0], [1.0]], [0.0])
    m.compile(optimizer="sgd", loss=mse)
    y = np.array([0.5, 2.0], "float32")
    assert m.evaluate(XA, y) == pytest.approx(((3 - 0.5) ** 2 + (2 - 2.0) ** 2) / 2)
    assert shapes[-1] == ((2, 1), (2, 1))


def test_a_loss_called_directly_takes_probabilities_as_keras_does():
    # Keras 3.15.1: SparseCategoricalCrossentropy()([1], [[0.2, 0.2, 0.2]]) = log(3)
    probs = torch.tensor([[0.2, 0.2, 0.2]])
    assert float(brisk.losses.SparseCategoricalCrossentropy()(torch.tensor([1]), probs)) == \
        pytest.approx(1.0986123)
    assert float(brisk.losses.CategoricalCrossentropy()(torch.tensor([[0.0, 1.0, 0.0]]), probs)) \
        == pytest.approx(1.0986123)


def test_binary_accuracy_compares_labels_exactly_and_leaky_relu_slope():
    # Keras 3.15.1: BinaryAccuracy()([[0.7], [1], [0]], [[0.9], [0.8], [0.1]]) = 2/3;
    # Activation('leaky_relu')([-1, 2]) = [-0.2, 2].
    m = brisk.metrics.BinaryAccuracy()
    s, c = m.update(torch.tensor([[0.9], [0.8], [0.1]]), torch.tensor([[0.7], [1.0], [0.0]]))
    assert int(s) / int(c) == pytest.approx(2 / 3)
    out = brisk.layers.Activation("leaky_relu")(torch.tensor([[-1.0, 2.0]]))
    torch.testing.assert_close(out, torch.tensor([[-0.2, 2.0]]))


def test_inputs_and_arguments_keras_accepts():
    m = brisk.Sequential([Input((2,)), Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    h = m.fit(XA.astype("float16"), YA, verbose=0)  # cast to float32, as Keras does
    assert math.isfinite(h.history["loss"][0])
    layer = Dense(2)
    layer.trainable = 0  # Keras takes bool(value)
    assert layer.trainable is False
    assert brisk.layers.Rescaling(np.float32(0.5)).scale == 0.5
    with pytest.raises(ValueError, match="momentum: expected a float in"):
        BatchNormalization(momentum="a")
    with pytest.raises(ValueError, match=r"shape: Input needs a tuple such as \(784,\)"):
        Input(4)
    with pytest.raises(ValueError, match="count_params: the model is not built"):
        brisk.Sequential([Dense(2)]).count_params()


def test_partial_of_a_torch_function_keeps_torch_order():
    import functools

    m = brisk.Sequential([Input((2,)), Dense(3)])
    m.compile(optimizer="sgd", loss=functools.partial(F.cross_entropy, label_smoothing=0.0))
    y = np.array([0, 2])
    expected = F.cross_entropy(m(torch.tensor(XA)), torch.tensor(y)).item()
    assert m.evaluate(XA, y) == pytest.approx(expected, rel=1e-6)


def test_sparse_cross_entropy_on_sequences_takes_the_last_axis():
    logits = torch.randn(2, 5, 4)
    y = torch.randint(0, 4, (2, 5))
    loss = brisk.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, 4), y.reshape(-1)))


@pytest.mark.parametrize("onehot", [False, True])
def test_class_weight_matches_keras(onehot):
    # Keras 3.15.1 (class_weight.py): full-batch SGD(0.1), class_weight {0: 1, 1: 5, 2: 0.5},
    # 2 epochs: losses [3.8717034, 2.9171288], kernel row 0 [0.10334257, 0.25863236, 0.03802506]
    rs = np.random.RandomState(0)
    x = rs.randn(12, 4).astype("float32")
    yl = np.array([0, 1, 2, 1, 0, 2, 1, 1, 0, 2, 2, 1])
    w = [[0.3, -0.1, 0.2], [-0.2, 0.4, 0.0], [0.1, 0.1, -0.3], [0.5, -0.5, 0.2]]
    m = brisk.Sequential([Input((4,)), Dense(3, activation="softmax")])
    _set_dense(m.layers[0], w, [0.0, 0.0, 0.0])
    y = np.eye(3, dtype="float32")[yl] if onehot else yl
    m.compile(optimizer=brisk.optimizers.SGD(learning_rate=0.1),
              loss="categorical_crossentropy" if onehot else "sparse_categorical_crossentropy")
    h = m.fit(x, y, batch_size=12, epochs=2, verbose=0, shuffle=False,
              class_weight={0: 1.0, 1: 5.0, 2: 0.5})
    assert h.history["loss"] == pytest.approx([3.8717034, 2.9171288], rel=1e-5)
    np.testing.assert_allclose(m.get_weights()[0][0], [0.10334257, 0.25863236, 0.03802506],
                               rtol=1e-5)


def test_class_weight_errors():
    m = brisk.Sequential([Input((2,)), Dense(2)])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    for bad, msg in (([1, 2], "class_weight: expected a dict"),
                     ({"a": 1.0}, "class_weight: class indices must be ints >= 0"),
                     ({0: -1.0}, "class_weight: weights must be finite numbers >= 0")):
        with pytest.raises(ValueError, match=msg):
            m.fit(XA, np.array([0, 1]), verbose=0, class_weight=bad)
    t = brisk.Trainer(nn.Linear(2, 2), loss=F.cross_entropy)
    with pytest.raises(ValueError, match="class_weight: needs a loss that takes per-sample weights"):
        t.fit(XA, np.array([0, 1]), verbose=0, class_weight={0: 2.0})


def test_sample_weight_matches_keras():
    # Keras 3.15.1 (sample_weight.py): weights linspace(0.1, 2, 12); evaluate 1.3999615;
    # full-batch SGD(0.1), 2 epochs: losses [1.3999615, 1.3506187], kernel row 0
    # [0.27717319, -0.02564469, 0.14847150]; validation_data with weights: val_loss 0.7598261
    rs = np.random.RandomState(0)
    x = rs.randn(12, 4).astype("float32")
    yl = np.array([0, 1, 2, 1, 0, 2, 1, 1, 0, 2, 2, 1])
    sw = np.linspace(0.1, 2.0, 12).astype("float32")
    w = [[0.3, -0.1, 0.2], [-0.2, 0.4, 0.0], [0.1, 0.1, -0.3], [0.5, -0.5, 0.2]]

    def model():
        m = brisk.Sequential([Input((4,)), Dense(3, activation="softmax")])
        _set_dense(m.layers[0], w, [0.0, 0.0, 0.0])
        m.compile(optimizer=brisk.optimizers.SGD(learning_rate=0.1),
                  loss="sparse_categorical_crossentropy")
        return m

    m = model()
    assert m.evaluate(x, yl, sample_weight=sw, batch_size=12) == pytest.approx(1.3999615, rel=1e-5)
    h = m.fit(x, yl, batch_size=12, epochs=2, verbose=0, shuffle=False, sample_weight=sw)
    assert h.history["loss"] == pytest.approx([1.3999615, 1.3506187], rel=1e-5)
    np.testing.assert_allclose(m.get_weights()[0][0], [0.27717319, -0.02564469, 0.1484715],
                               rtol=1e-5)
    h = model().fit(x, yl, batch_size=12, epochs=1, verbose=0, shuffle=False,
                    validation_data=(x[:6], yl[:6], sw[:6]))
    assert h.history["val_loss"] == pytest.approx([0.7598261], rel=1e-5)
    with pytest.raises(ValueError, match="class_weight: give class_weight or sample_weight"):
        model().fit(x, yl, verbose=0, sample_weight=sw, class_weight={0: 1.0})
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(12,\), got \(3,\)"):
        model().fit(x, yl, verbose=0, sample_weight=sw[:3])
    ds = torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(yl), torch.tensor(sw))
    loader = torch.utils.data.DataLoader(ds, batch_size=12)  # (x, y, w) batches, as Keras
    assert model().evaluate(loader) == pytest.approx(1.3999615, rel=1e-5)


def test_without_any_flag_a_torch_batchnorm_trains_and_odd_attributes_are_ignored():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
    net[1].trainable = ""  # not a bool (and falsy): not Keras's flag, ignored
    brisk.Trainer(net, optimizer="sgd", loss="mse").fit(X4, Y1, epochs=1, verbose=0)
    assert not torch.equal(net[1].running_mean, torch.zeros(8))  # batch statistics were used
    assert net[1].weight.requires_grad and int(net[1].num_batches_tracked) == 2


def test_accuracy_of_a_model_that_outputs_logits_thresholds_the_output_as_keras():
    # Keras 3.15.1, torch backend (tools/keras_oracle/binary_accuracy_logits.py): accuracy
    # 0.75, loss 0.439273 (the metric sees the raw outputs, the loss takes them as logits)
    x = np.array([[0.2], [0.7], [-0.3], [1.5]], "float32")
    y = np.array([1, 1, 0, 1], "float32")
    m = brisk.Sequential([Input((1,)), Dense(1, use_bias=False)])
    m.set_weights([np.ones((1, 1), "float32")])
    m.compile(loss=brisk.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    logs = m.evaluate(x, y, return_dict=True)
    assert logs["accuracy"] == pytest.approx(0.75)
    assert logs["loss"] == pytest.approx(0.439273, abs=1e-6)


def test_evaluate_and_validation_batch_sizes_are_keras_defaults():
    # Keras 3.15.1, torch backend (tools/keras_oracle/evaluate_batch.py): a reduction='sum'
    # loss shows the batches: evaluate's default is 32, validation uses fit's batch_size
    x = np.cos(np.arange(40 * 3) * 0.3).reshape(40, 3).astype("float32")
    y = np.arange(40) % 3
    m = brisk.Sequential([Input((3,)), Dense(3, activation="softmax")])
    m.set_weights([np.sin(np.arange(9) * 0.5).reshape(3, 3).astype("float32"),
                   np.zeros(3, "float32")])
    m.compile(optimizer=brisk.optimizers.SGD(0.0),
              loss=brisk.losses.SparseCategoricalCrossentropy(reduction="sum"))
    assert m.evaluate(x, y) == pytest.approx(30.319351, abs=1e-4)
    assert m.evaluate(x, y, batch_size=40) == pytest.approx(44.356880, abs=1e-4)
    h = m.fit(x, y, batch_size=10, epochs=1, validation_data=(x, y), verbose=0, shuffle=False)
    assert h.history["val_loss"] == pytest.approx([11.089220], abs=1e-4)
