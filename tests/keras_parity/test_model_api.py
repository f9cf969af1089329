"""The Sequential model API of the Keras guides on brisk. Pinned values: Keras 3.15.1,
torch backend (tools/keras_oracle/model_api.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import brisk
from brisk.callbacks import Callback
from brisk.layers import BatchNormalization, Conv2D, Dense, Flatten, Input


def mlp():
    return brisk.Sequential([Input((4,)), Dense(3, name="d1"), BatchNormalization(name="bn"),
                             Dense(2, name="d2")])


def test_shapes_weights_and_their_kinds_match_keras():
    # Keras: input_shape (None, 4), output_shape (None, 2); weights kernel (4, 3), bias,
    # gamma, beta, moving_mean, moving_variance, kernel (3, 2), bias; the two moving
    # statistics are the non-trainable ones.
    m = mlp()
    assert m.input_shape == (None, 4) and m.output_shape == (None, 2)
    assert [tuple(w.shape) for w in m.get_weights()] == [(4, 3), (3,), (3,), (3,), (3,), (3,),
                                                         (3, 2), (2,)]
    assert len(m.weights) == 8 and len(m.trainable_weights) == 6
    bn = m.layers[1].bn
    assert [w is bn.running_mean or w is bn.running_var for w in m.non_trainable_weights] == [
        True, True]
    m.layers[0].trainable = False
    assert len(m.trainable_weights) == 4 and len(m.non_trainable_weights) == 4


def test_get_layer_by_name_and_index_and_its_errors():
    m = mlp()
    assert m.get_layer("bn") is m.layers[1] and m.get_layer(index=2) is m.layers[2]
    with pytest.raises(ValueError) as e:
        m.get_layer("nope")
    assert str(e.value) == ("get_layer: no such layer: 'nope'. Existing layers are: "
                            "['d1', 'bn', 'd2']")
    with pytest.raises(ValueError, match="index 7 but the model only has 3 layers"):
        m.get_layer(index=7)
    with pytest.raises(ValueError, match="give either name= or index="):
        m.get_layer()


def test_pop_and_add_after_summary():
    m = mlp()
    m.summary(print_fn=None)
    assert m.pop() is not None and m.output_shape == (None, 3) and len(m.layers) == 2
    m.add(Dense(5))  # Keras builds the new layer on the current output shape
    assert m.output_shape == (None, 5)
    assert m(np.ones((2, 4))).shape == (2, 5)  # a NumPy array (float64) in, as in Keras


def test_get_and_set_weights_use_keras_layouts():
    m = brisk.Sequential([Input((5, 5, 2)), Conv2D(3, 3), Flatten(), Dense(4)])
    ws = m.get_weights()
    assert [w.shape for w in ws] == [(3, 3, 2, 3), (3,), (27, 4), (4,)]
    rng = np.random.default_rng(0)
    new = [rng.normal(size=w.shape).astype("float32") for w in ws]
    m.set_weights(new)
    for a, b in zip(m.get_weights(), new, strict=True):
        np.testing.assert_array_equal(a, b)
    # the Keras kernel is the torch weight transposed: (in, out) = (out, in).T
    np.testing.assert_array_equal(m.layers[2].linear.weight.detach().numpy(), new[2].T)
    x = rng.normal(size=(1, 5, 5, 2)).astype("float32")
    conv = sum(x[0, i:i + 3, j:j + 3, :][..., None] * new[0] for i, j in [(0, 0)]).sum((0, 1, 2))
    out = m.layers[0](torch.tensor(x).permute(0, 3, 1, 2))[0, :, 0, 0].detach().numpy()
    np.testing.assert_allclose(out, conv + new[1], rtol=1e-5)
    before = m.get_weights()
    with pytest.raises(ValueError, match=r"set_weights: weight 2 has shape \(4, 27\), expected \(27, 4\)"):
        m.set_weights([new[0], new[1], new[2].T, new[3]])
    with pytest.raises(ValueError, match="set_weights: the model has 4 weights, got a list of 1"):
        m.set_weights([new[0]])
    for a, b in zip(m.get_weights(), before, strict=True):  # nothing changed
        np.testing.assert_array_equal(a, b)


def test_save_weights_and_load_weights(tmp_path):
    m, other = mlp(), mlp()
    m.save_weights(tmp_path / "model.weights.h5")  # Keras's suffix; the format is safetensors
    other.load_weights(tmp_path / "model.weights.h5")
    for a, b in zip(m.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="load_weights: no such file"):
        other.load_weights(tmp_path / "missing.h5")
    small = brisk.Sequential([Input((4,)), Dense(1)])
    with pytest.raises(ValueError, match="does not fit this model"):
        small.load_weights(tmp_path / "model.weights.h5")


def test_optimizer_learning_rate_reads_and_sets_from_a_callback():
    # Keras: model.optimizer.learning_rate after compile(Adam(0.01)) is 0.01; assignable.
    m = mlp()
    m.compile(optimizer=brisk.optimizers.Adam(learning_rate=0.01), loss="mse")
    assert m.optimizer.learning_rate == pytest.approx(0.01)
    seen = []

    class Halve(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.model.optimizer.learning_rate = self.model.optimizer.learning_rate / 2
            seen.append(self.trainer.optimizer.param_groups[0]["lr"])

    x, y = np.ones((8, 4), "float32"), np.zeros((8, 2), "float32")
    m.fit(x, y, epochs=2, verbose=0, callbacks=[Halve()])
    assert seen == pytest.approx([0.005, 0.0025]) and m.optimizer.learning_rate == 0.0025
    with pytest.raises(ValueError, match="learning_rate: expected a number >= 0"):
        m.optimizer.learning_rate = -1
