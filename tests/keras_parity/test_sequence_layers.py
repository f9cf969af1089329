"""Sequence layers (Reshape, Conv1D, MaxPooling1D, GlobalAveragePooling1D, Embedding, LSTM,
GRU) compute what Keras computes.

Pinned values: Keras 3.15.1, torch backend (tools/keras_oracle/sequence_layers.py). Each
model: Keras's output shapes, weights per layer, get_weights shapes, and predict() on the
oracle's inputs after set_weights with arrays drawn from RandomState(1) (randn * 0.5, in
get_weights order): the outputs check gate orders and weight layouts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import brisk
from brisk.layers import (
    GRU,
    LSTM,
    Conv1D,
    Conv2D,
    Dense,
    Embedding,
    GlobalAveragePooling1D,
    GlobalMaxPooling2D,
    Input,
    MaxPooling1D,
    Reshape,
)

# the oracle's inputs, drawn from RandomState(0) in this order
_rs = np.random.RandomState(0)
IDS = _rs.randint(0, 20, size=(2, 6))
SEQ = _rs.randn(2, 5, 3).astype("float32")
IMG = _rs.randn(2, 4, 3, 2).astype("float32")
FLAT = _rs.randn(2, 12).astype("float32")


def _models():
    return {
        "A": (lambda: [Input((6,)), Embedding(20, 8), LSTM(6), Dense(3)], IDS),
        "B": (lambda: [Input((6,)), Embedding(20, 8),
                       Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"),
                       MaxPooling1D(2, padding="same"), GlobalAveragePooling1D(), Dense(2)], IDS),
        "C": (lambda: [Input((5, 3)), GRU(4, return_sequences=True), GRU(3, use_bias=False)],
              SEQ),
        "D": (lambda: [Input((5, 3)), Conv1D(4, 2, strides=2, padding="same"),
                       MaxPooling1D(pool_size=2, strides=1),
                       LSTM(2, return_sequences=True, use_bias=False),
                       Conv1D(3, 1, strides=1, use_bias=False)], SEQ),
        "E": (lambda: [Input((4, 3, 2)), Conv2D(3, 2), Reshape((-1, 3)),
                       Conv1D(4, 2, padding="same"), Reshape((3, 2, 4)), Conv2D(2, (2, 1)),
                       Reshape((8,)), Dense(1)], IMG),
        "F": (lambda: [Input((12,)), Reshape((2, 3, 2)), Conv2D(2, 1), GlobalMaxPooling2D()],
              FLAT),
        "G": (lambda: [Input((12,)), Reshape((4, -1)), GRU(2)], FLAT),
        "H": (lambda: [Input((5, 3)), Conv1D(2, 3, strides=2),
                       LSTM(4, return_sequences=True, unit_forget_bias=False),
                       Dense(2, activation="softmax")], SEQ),
    }


# Keras 3.15.1, torch backend (tools/keras_oracle/sequence_layers.py)
KERAS = {
    "A": ([(6, 8), (6,), (3,)], [160, 360, 21],
          [(20, 8), (8, 24), (6, 24), (24,), (6, 3), (3,)],
          [[-0.919377, -0.109887, -0.04794], [-1.065416, 0.006451, -0.068822]]),
    "B": ([(6, 8), (6, 4), (3, 4), (4,), (2,)], [160, 100, 0, 0, 10],
          [(20, 8), (3, 8, 4), (4,), (4, 2), (2,)],
          [[0.802545, -1.58231], [0.6847, -1.303356]]),
    "C": ([(5, 4), (3,)], [108, 63], [(3, 12), (4, 12), (2, 12), (4, 9), (3, 9)],
          [[-0.425152, 0.377803, -0.262554], [-0.457758, 0.658011, -0.272783]]),
    "D": ([(3, 4), (2, 4), (2, 2), (2, 3)], [28, 0, 48, 6],
          [(2, 3, 4), (4,), (4, 8), (2, 8), (1, 2, 3)],
          [[[0.023866, -0.068667, -0.01877], [0.026367, -0.000548, -0.005501]],
           [[-0.034553, -0.012789, 0.004477], [-0.019311, -0.020648, -0.000229]]]),
    "E": ([(3, 2, 3), (6, 3), (6, 4), (3, 2, 4), (2, 2, 2), (8,), (1,)],
          [27, 0, 28, 0, 18, 0, 9],
          [(2, 2, 2, 3), (3,), (2, 3, 4), (4,), (2, 1, 4, 2), (2,), (8, 1), (1,)],
          [[-1.43812], [-2.990941]]),
    "F": ([(2, 3, 2), (2, 3, 2), (2,)], [0, 6, 0], [(1, 1, 2, 2), (2,)],
          [[1.527235, -0.910952], [1.607139, -0.780989]]),
    "G": ([(4, 3), (2,)], [0, 42], [(3, 6), (2, 6), (2, 6)],
          [[0.151614, -0.724283], [0.520688, -0.787898]]),
    "H": ([(2, 2), (2, 4), (2, 2)], [20, 112, 10],
          [(3, 3, 2), (2,), (2, 16), (4, 16), (16,), (4, 2), (2,)],
          [[[0.47557, 0.52443], [0.59014, 0.40986]],
           [[0.518323, 0.481677], [0.523767, 0.476233]]]),
}


@pytest.mark.parametrize("key", sorted(KERAS))
def test_shapes_counts_layouts_and_outputs_match_keras(key):
    make, x = _models()[key]
    shapes, per_layer, weight_shapes, out = KERAS[key]
    m = brisk.Sequential(make())
    assert [m._display_shape(o) for _, o in m._shapes] == [(None, *s) for s in shapes]
    assert [sum(w.numel() for w in layer.parameters()) for layer in m.layers] == per_layer
    assert m.count_params() == sum(per_layer)
    assert f"Total params: {sum(per_layer):,}\n" in m.summary(print_fn=None)
    assert [w.shape for w in m.get_weights()] == weight_shapes
    rs = np.random.RandomState(1)
    m.set_weights([rs.randn(*w.shape).astype("float32") * 0.5 for w in m.get_weights()])
    np.testing.assert_allclose(m.predict(x), out, atol=2e-6)


def test_get_weights_round_trips_through_set_weights_in_keras_layouts():
    # GRU's gate reorder (torch r, z, n <-> Keras z, r, h) must be its own inverse
    m = brisk.Sequential([Input((5, 3)), Conv1D(4, 2), GRU(3, return_sequences=True), LSTM(2)])
    rs = np.random.RandomState(2)
    ws = [rs.randn(*w.shape).astype("float32") for w in m.get_weights()]
    m.set_weights(ws)
    for a, b in zip(m.get_weights(), ws, strict=True):
        np.testing.assert_array_equal(a, b)
    gru = m.layers[1]  # Keras's z block (first) is torch's second block
    np.testing.assert_array_equal(gru.weight_ih.detach()[3:6].numpy(), ws[2][:, 0:3].T)
    np.testing.assert_array_equal(gru.bias.detach()[1, 0:3].numpy(), ws[4][1, 3:6])


def test_initial_weights_follow_keras_defaults():
    # Keras 3.15.1: LSTM(3) bias [0]*3 + [1]*3 + [0]*6 (unit_forget_bias); GRU bias (2, 9)
    # zeros; Embedding U(-0.05, 0.05); recurrent kernels orthogonal
    brisk.utils.set_random_seed(0)
    m = brisk.Sequential([Input((5,)), Embedding(1000, 16), LSTM(3, return_sequences=True),
                          GRU(3)])
    emb, kernel, recurrent, bias, _, gru_recurrent, gru_bias = m.get_weights()
    assert -0.05 <= emb.min() < -0.049 and 0.049 < emb.max() <= 0.05
    assert bias.tolist() == [0.0] * 3 + [1.0] * 3 + [0.0] * 6
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(gru_recurrent @ gru_recurrent.T, np.eye(3), atol=1e-5)
    assert gru_bias.shape == (2, 9) and not gru_bias.any()
    a = np.sqrt(6 / (16 + 12))  # glorot_uniform on Keras's (in, 4 * units) kernel
    assert np.abs(kernel).max() <= a and np.abs(kernel).max() > 0.8 * a
    no_forget = LSTM(3, unit_forget_bias=False)
    no_forget.build((5, 2))
    assert not no_forget.bias.any()


def test_embedding_takes_float_ids_and_checks_them_on_the_cpu():
    m = brisk.Sequential([Input((6,)), Embedding(20, 4)])
    ids = torch.tensor(IDS)
    want = m(ids)
    assert want.shape == (2, 6, 4) and want.dtype == torch.float32
    # DeviceLoader stores integer features as float32: same rows
    torch.testing.assert_close(m(ids.float()), want, rtol=0, atol=0)
    np.testing.assert_array_equal(m.predict(IDS), want.detach().numpy())
    with pytest.raises(ValueError, match=r"ids must be in \[0, 20\) \(input_dim\); got ids in \[0, 20\]"):
        m(torch.tensor([[0, 1, 2, 3, 4, 20]]))
    with pytest.raises(ValueError, match=r"got ids in \[-1, 4\]"):
        m(torch.tensor([[0, 1, 2, 3, 4, -1]]))
    with pytest.raises(ValueError, match="Embedding takes integer ids"):
        m(torch.tensor([[0.0, 1.5, 2, 3, 4, 5]]))


@pytest.mark.parametrize("make, match", [
    (lambda: Embedding(10, 4, mask_zero=True), "mask_zero: brisk does not implement"),
    (lambda: Embedding(0, 4), "input_dim: expected a positive int"),
    (lambda: Embedding(10, 4, embeddings_initializer="nope"), "embeddings_initializer: unknown"),
    (lambda: LSTM(4, activation="relu"), "activation: brisk's LSTM runs torch's fused kernel"),
    (lambda: LSTM(4, recurrent_activation="hard_sigmoid"), "recurrent_activation: brisk's LSTM"),
    (lambda: LSTM(4, return_state=True), "return_state: a Sequential passes one tensor"),
    (lambda: LSTM(0), "units: expected a positive int"),
    (lambda: LSTM(4, recurrent_initializer="nope"), "recurrent_initializer: unknown"),
    (lambda: LSTM(4, kernel_initializer="nope"), "kernel_initializer: unknown"),
    (lambda: GRU(4, reset_after=False), "reset_after: torch's fused GRU"),
    (lambda: GRU(4, activation="sigmoid"), "activation: brisk's GRU"),
    (lambda: Conv1D(4, 3, padding="full"), "padding: expected 'valid', 'same' or 'causal'"),
    (lambda: Conv1D(4, 0), "kernel_size: expected a positive int"),
    (lambda: Conv1D(4, (3, 3)), "kernel_size: expected a positive int"),
    (lambda: Conv1D(4, 3, strides=2, dilation_rate=2), "strides: strides > 1 cannot be combined"),
    (lambda: MaxPooling1D(2, padding="causal"), "padding: expected 'valid' or 'same'"),
    (lambda: MaxPooling1D(strides=0), "strides: expected a positive int"),
    (lambda: Reshape((2, -1, -1)), "target_shape: expected a tuple of positive ints"),
    (lambda: Reshape(6), "target_shape: expected a tuple"),
    (lambda: Reshape((0, 3)), "target_shape: expected a tuple"),
])
def test_bad_arguments_raise_value_error_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layers, match", [
    ([Input((12,)), Reshape((5, -1))], r"target_shape: \(5, -1\) does not fit an input of shape \(12,\)"),
    ([Input((12,)), Reshape((5, 2))], r"target_shape: \(5, 2\) has 10 values, the input \(12,\) has 12"),
    ([Input((12,)), LSTM(3)], r"LSTM expects sequences, per-sample shape \(steps, features\)"),
    ([Input((4, 3, 2)), GlobalAveragePooling1D()], "GlobalAveragePooling1D expects sequences"),
    ([Input((4, 3)), Conv1D(2, 3, dilation_rate=2)], "Conv1D kernel_size 3 .dilation_rate 2. is longer"),
    ([Input((1, 3)), MaxPooling1D(2)], "MaxPooling1D pool_size 2 > input of 1 steps"),
    ([Input((4, 3, 2)), Dense(2)], "Dense expects flat per-sample inputs"),
])
def test_shapes_that_do_not_fit_raise_value_error(layers, match):
    with pytest.raises(ValueError, match=match):
        brisk.Sequential(layers)


def test_sequences_are_not_permuted_and_reshape_reads_images_in_keras_order():
    # a rank-2 input stays (batch, steps, features), even with a Reshape (an image layer)
    m = brisk.Sequential([Input((5, 3)), Reshape((3, 5))])
    assert m.data_format == "channels_first"
    np.testing.assert_array_equal(m.predict(SEQ), SEQ.reshape(2, 3, 5))
    # an image model: Reshape flattens in Keras's (H, W, C) order, not torch's NCHW
    m = brisk.Sequential([Input((4, 3, 2)), Reshape((24,))])
    assert m.data_format == "channels_last"
    np.testing.assert_array_equal(m.predict(IMG), IMG.reshape(2, 24))
    # an image output comes back NCHW, as every image output of a brisk.Sequential
    m = brisk.Sequential([Input((12,)), Reshape((2, 3, 2))])
    assert m.output_shape == (None, 2, 3, 2)
    np.testing.assert_array_equal(m.predict(FLAT), FLAT.reshape(2, 2, 3, 2).transpose(0, 3, 1, 2))


def _all_layers():
    return brisk.Sequential([
        Input((6,)), Embedding(20, 8, name="emb"), Conv1D(4, 3, padding="same", activation="relu"),
        MaxPooling1D(2, strides=1, padding="same"), LSTM(5, return_sequences=True),
        GRU(3, return_sequences=True), Reshape((-1, 2)), GlobalAveragePooling1D(), Dense(2)])


def test_save_and_load_model_round_trip_every_sequence_layer(tmp_path):
    m = _all_layers()
    m.compile(optimizer="adam", loss="mse")
    m.save(tmp_path / "seq.keras")
    again = brisk.models.load_model(tmp_path / "seq.keras")
    assert again.get_config() == m.get_config()
    assert [type(layer).__name__ for layer in again.layers] == [
        "Embedding", "Conv1D", "MaxPooling1D", "LSTM", "GRU", "Reshape",
        "GlobalAveragePooling1D", "Dense"]
    for a, b in zip(again.get_weights(), m.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.predict(IDS), m.predict(IDS))
    clone = brisk.models.clone_model(m)  # same architecture, new weights
    # Keras's formulas: 20*8; 3*8*4 + 4; 4*20 + 5*20 + 20; 5*9 + 3*9 + 2*9; 2*2 + 2
    assert clone.count_params() == m.count_params() == 160 + 100 + 200 + 90 + 6
    assert not np.array_equal(clone.get_weights()[0], m.get_weights()[0])


def test_fit_moves_every_weight_of_every_sequence_layer():
    brisk.utils.set_random_seed(0)
    m = _all_layers()
    before = m.get_weights()
    m.compile(optimizer="adam", loss="mse", seed=0)
    rs = np.random.RandomState(3)
    m.fit(rs.randint(0, 20, (64, 6)), rs.randn(64, 2).astype("float32"), epochs=1, verbose=0)
    after = m.get_weights()
    assert len(after) == len(before) == 11
    for i, (a, b) in enumerate(zip(after, before, strict=True)):
        assert not np.allclose(a, b), f"weight {i} did not move"


@pytest.mark.parametrize("rnn", [LSTM, GRU])
@pytest.mark.parametrize("seed", [0, 1])
def test_embedding_and_rnn_learn_a_toy_task(rnn, seed):
    # Is id 3 in the sequence (57% yes)? After 5 epochs the held-out accuracy was 1.0 for
    # seeds 0-4 with both layers (checked); the threshold leaves a margin.
    rs = np.random.RandomState(0)
    x = rs.randint(0, 10, size=(768, 8))
    y = (x == 3).any(1).astype("float32")
    brisk.utils.set_random_seed(seed)
    m = brisk.Sequential([Input((8,)), Embedding(10, 8), rnn(16), Dense(1, activation="sigmoid")])
    m.compile(optimizer=brisk.optimizers.Adam(0.01), loss="binary_crossentropy",
              metrics=["accuracy"], seed=seed)
    m.fit(x[:512], y[:512], epochs=5, batch_size=32, verbose=0)
    _, acc = m.evaluate(x[512:], y[512:], verbose=0)
    assert acc > 0.95


def test_sparse_loss_and_accuracy_per_time_step_as_keras():
    # Keras 3.15.1, torch backend (tools/keras_oracle/sequence_sparse_loss.py): outputs
    # (N, T, C), labels (N, T) or (N, T, 1): loss 1.486917, accuracy 1/6
    m = brisk.Sequential([Input((4,)), Embedding(5, 3), Dense(4, activation="softmax")])
    ws = [np.sin(np.arange(np.prod(w.shape)) * 0.7 + i).reshape(w.shape).astype("float32")
          for i, w in enumerate(m.get_weights())]
    m.set_weights(ws)
    m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.array([[0, 1, 2, 3], [4, 3, 2, 1], [1, 1, 0, 4]])
    y = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 1, 1]])
    for labels in (y, y[..., None]):
        logs = m.evaluate(x, labels, return_dict=True)
        assert logs["loss"] == pytest.approx(1.486917, abs=1e-6)
        assert logs["accuracy"] == pytest.approx(1 / 6)
    with pytest.raises(ValueError) as e:
        m.evaluate(x, y[:, :3])
    assert str(e.value) == ("y: sparse_categorical_crossentropy on sequence outputs (steps 4, 4 "
                            "classes) needs one label per step, shape (N, 4); got (3, 3)")
    m.fit(x, y, epochs=1, verbose=0)  # trains on per-step labels
