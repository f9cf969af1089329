"""Keras's automatic layer names, a Sequential nested in another (save/load, config, clone,
weights, summary, trainable flags) and standalone layers that build on their first call.
Pinned values: Keras 3.15.1, torch backend (tools/keras_oracle/nested_and_names.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import brisk
from brisk.layers import (
    GRU,
    LSTM,
    Activation,
    BatchNormalization,
    Conv1D,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    Input,
    LayerNormalization,
    MaxPooling2D,
    Normalization,
    RandomFlip,
    RandomRotation,
    Rescaling,
    Reshape,
    SeparableConv2D,
    ZeroPadding2D,
)


@pytest.fixture(autouse=True)
def _fresh_names():
    brisk.utils.clear_session(free_memory=False)
    yield
    brisk.utils.clear_session(free_memory=False)


def _params(model) -> tuple[int, int, int]:
    text = model.summary(print_fn=None)
    get = {line.split(":")[0]: int(line.split(":")[1].replace(",", ""))
           for line in text.splitlines() if "params:" in line}
    return get["Total params"], get["Trainable params"], get["Non-trainable params"]


# ----------------------------------------------------------------------------- names


def test_automatic_names_follow_keras_counters():
    # Keras: 'sequential' ['dense', 'batch_normalization', 'dense_7', 'dense_1'], then
    # 'sequential_1' ['conv2d', 'conv2d_1', 'global_average_pooling2d', 'dense_2', 'dense']:
    # one counter per class for the session; an explicit name uses none, and may repeat a
    # name of another model.
    a = brisk.Sequential([Input((4,)), Dense(3), BatchNormalization(), Dense(2, name="dense_7"),
                          Dense(1)])
    assert a.name == "sequential"
    assert [layer.name for layer in a.layers] == ["dense", "batch_normalization", "dense_7",
                                                  "dense_1"]
    b = brisk.Sequential([Input((8, 8, 3)), Conv2D(2, 3), Conv2D(2, 3), GlobalAveragePooling2D(),
                          Dense(1), Dense(1, name="dense")])
    assert b.name == "sequential_1"
    assert [layer.name for layer in b.layers] == ["conv2d", "conv2d_1", "global_average_pooling2d",
                                                  "dense_2", "dense"]
    assert a.get_layer("dense_1") is a.layers[3] and b.get_layer("dense") is b.layers[4]
    assert "dense_1 (Dense)" in a.summary(print_fn=None)


def test_snake_case_names_of_every_layer_class_match_keras():
    made = [LayerNormalization(), MaxPooling2D(), DepthwiseConv2D(3), SeparableConv2D(2, 3),
            Conv1D(2, 3), LSTM(2), GRU(2), Embedding(3, 2), GlobalAveragePooling1D(),
            ZeroPadding2D(1), Reshape((2,)), Rescaling(1.0), RandomFlip(), Dropout(0.1),
            Activation("relu"), Flatten(), Normalization(), RandomRotation(0.1)]
    assert [layer.name for layer in made] == [
        "layer_normalization", "max_pooling2d", "depthwise_conv2d", "separable_conv2d", "conv1d",
        "lstm", "gru", "embedding", "global_average_pooling1d", "zero_padding2d", "reshape",
        "rescaling", "random_flip", "dropout", "activation", "flatten", "normalization",
        "random_rotation"]


def test_clear_session_restarts_names_and_bad_names_raise():
    Dense(1), Dense(1), brisk.Sequential()
    brisk.utils.clear_session()  # Keras: 'dense' and 'sequential' again
    assert Dense(1).name == "dense" and brisk.Sequential().name == "sequential"
    assert Input((2,)).name == "input_layer"  # Keras's InputLayer
    with pytest.raises(TypeError, match="name: expected a non-empty str, got 3"):
        Dense(1, name=3)
    with pytest.raises(TypeError, match="name: expected a non-empty str"):
        brisk.Sequential(name="")


def test_duplicate_names_in_one_model_raise_as_in_keras():
    msg = ("layer: all layers added to a Sequential model should have unique names. Name 'x' "
           "is already the name of a layer in this model. Update the `name` argument")
    with pytest.raises(ValueError, match=msg):
        brisk.Sequential([Input((2,)), Dense(1, name="x"), Dense(1, name="x")])


def test_a_loaded_model_keeps_its_names_and_a_new_layer_may_clash(tmp_path):
    m = brisk.Sequential([Input((3,)), Dense(2)])
    m.save(tmp_path / "m.keras")
    brisk.utils.clear_session()
    back = brisk.load_model(tmp_path / "m.keras")
    assert back.name == "sequential" and back.layers[0].name == "dense"
    with pytest.raises(ValueError, match="Name 'dense' is already the name"):  # Keras too
        back.add(Dense(1))


# ----------------------------------------------------------------------------- nested models


def _nested():
    inner = brisk.Sequential([Dense(3), BatchNormalization()])
    return inner, brisk.Sequential([Input((4,)), inner, Dense(1)])


def test_nested_model_names_weights_and_summary_match_keras():
    inner, outer = _nested()
    inner.layers[0].trainable = False
    # Keras: 'sequential_1' ['sequential', 'dense_1'], inner ['dense', 'batch_normalization']
    assert outer.name == "sequential_1" and [la.name for la in outer.layers] == ["sequential",
                                                                                 "dense_1"]
    assert [la.name for la in inner.layers] == ["dense", "batch_normalization"]
    # Keras: flat weights, layer by layer through the nested model
    assert [w.shape for w in outer.get_weights()] == [(4, 3), (3,), (3,), (3,), (3,), (3,),
                                                      (3, 1), (1,)]
    assert len(outer.weights) == 8
    assert outer.weights[4] is inner.layers[1].bn.running_mean
    # Keras: 4 trainable weights, 4 non-trainable; 31 params, 10 trainable, 21 not
    assert len(outer.trainable_weights) == 4 and len(outer.non_trainable_weights) == 4
    assert _params(outer) == (31, 10, 21)
    rows = outer.summary(print_fn=None).splitlines()
    assert rows[4].split() == ["sequential", "(Sequential)", "(None,", "3)", "27", "33"]
    assert rows[5].split()[:5] == ["dense_1", "(Dense)", "(None,", "1)", "4"]


def test_nested_set_weights_in_keras_order_gives_keras_output():
    _, outer = _nested()
    vals = [np.arange(np.prod(w.shape), dtype="float32").reshape(w.shape) / 10 + 0.1
            for w in outer.get_weights()]
    outer.set_weights(vals)
    x = np.arange(8, dtype="float32").reshape(2, 4) / 8
    np.testing.assert_allclose(outer.predict(x, verbose=0).ravel(),
                               [0.44213566184043884, 0.8387994766235352], rtol=1e-5)
    np.testing.assert_array_equal(outer.get_weights()[2], vals[2])  # the inner BN gamma


@pytest.mark.parametrize("loader", [brisk.load_model, brisk.models.load_model])
def test_nested_model_round_trips_through_save_and_load(tmp_path, loader):
    inner, outer = _nested()
    inner.layers[0].trainable = False
    outer.compile("sgd", "mse")
    outer.fit(np.random.RandomState(0).randn(16, 4).astype("float32"), np.zeros((16, 1)),
              epochs=1, verbose=0)  # BatchNorm statistics move off their start
    outer.save(tmp_path / "m.keras")
    back = loader(tmp_path / "m.keras")
    # Keras: names kept, the inner Dense still frozen: [False, True]
    assert back.name == "sequential_1" and [la.name for la in back.layers] == ["sequential",
                                                                               "dense_1"]
    assert [la.trainable for la in back.layers[0].layers] == [False, True]
    assert _params(back) == (31, 10, 21)
    x = np.random.RandomState(2).randn(5, 4).astype("float32")
    np.testing.assert_array_equal(back.predict(x, verbose=0), outer.predict(x, verbose=0))
    assert Dense(1).name == "dense_2"  # Keras: loading uses no counter
    assert back.trainer is not None  # compiled again, as saved


def test_nested_config_clone_and_flags_match_keras():
    inner, outer = _nested()
    inner.trainable = False
    inner.layers[0].trainable = True  # re-enabled inside a frozen nested model (Keras)
    cfg = outer.get_config()
    assert [(s["class"], s["config"]["name"], s["trainable"]) for s in cfg["layers"]] == [
        ("Sequential", "sequential", False), ("Dense", "dense_1", True)]
    assert [(s["class"], s["config"]["name"], s["trainable"])
            for s in cfg["layers"][0]["config"]["layers"]] == [
        ("Dense", "dense", True), ("BatchNormalization", "batch_normalization", False)]
    want = (len(outer.trainable_weights), len(outer.non_trainable_weights))
    assert want == (4, 4)  # inner Dense kernel, bias; outer Dense kernel, bias
    for again in (brisk.Sequential.from_config(cfg), brisk.models.clone_model(outer)):
        assert again.get_config() == cfg
        assert [la.name for la in again.layers[0].layers] == ["dense", "batch_normalization"]
        assert again.layers[0].trainable is False
        assert [la.trainable for la in again.layers[0].layers] == [True, False]
        assert (len(again.trainable_weights), len(again.non_trainable_weights)) == want
    fresh = brisk.models.clone_model(outer)
    assert not np.array_equal(fresh.get_weights()[0], outer.get_weights()[0])  # new weights
    fresh.set_weights(outer.get_weights())
    x = torch.randn(3, 4)
    torch.testing.assert_close(fresh.eval()(x), outer.eval()(x))


def _image_models():
    base = brisk.Sequential([Input((5, 5, 2)), Conv2D(3, 3, padding="same"), BatchNormalization(),
                             MaxPooling2D()])
    top = brisk.Sequential([Input((5, 5, 2)), base, GlobalAveragePooling2D(), Dense(2)])
    return base, top


def test_nested_image_model_matches_keras_output_and_layout(tmp_path):
    base, top = _image_models()
    assert top.name == "sequential_1" and [la.name for la in top.layers] == [
        "sequential", "global_average_pooling2d", "dense"]
    assert [w.shape for w in top.get_weights()] == [(3, 3, 2, 3), (3,), (3,), (3,), (3,), (3,),
                                                    (3, 2), (2,)]
    pattern = lambda w: np.sin(np.arange(np.prod(w.shape), dtype="float32")).reshape(w.shape)  # noqa: E731
    top.set_weights([pattern(w) * 0.5 + 1.0 if i in (3, 5) else pattern(w)
                     for i, w in enumerate(top.get_weights())])
    xi = np.cos(np.arange(2 * 5 * 5 * 2, dtype="float32")).reshape(2, 5, 5, 2)
    keras_out = [[0.16448891162872314, 0.19954782724380493],
                 [0.19149267673492432, 0.208509624004364]]
    np.testing.assert_allclose(top.predict(xi, verbose=0), keras_out, rtol=1e-5, atol=1e-6)
    rows = top.summary(print_fn=None).splitlines()
    assert rows[4].split()[:7] == ["sequential", "(Sequential)", "(None,", "2,", "2,", "3)", "69"]
    # the nested model called on its own still takes Keras's NHWC (Keras: (2, 2, 2, 3))
    alone = base.eval()(torch.tensor(xi))  # eval: BatchNorm statistics stay as set
    assert tuple(alone.shape) == (2, 3, 2, 2)  # NCHW out, as inside brisk
    torch.testing.assert_close(top.eval()(torch.tensor(xi)), top.layers[2](alone.mean((2, 3))))
    top.save(tmp_path / "img.keras")
    back = brisk.load_model(tmp_path / "img.keras")
    np.testing.assert_allclose(back.predict(xi, verbose=0), keras_out, rtol=1e-5, atol=1e-6)


def test_a_nested_model_as_the_first_layer_gives_the_input_shape():
    base, _ = _image_models()
    first = brisk.Sequential([base, Flatten(), Dense(1)])
    # Keras: input_shape (None, 5, 5, 2), output_shape (None, 1)
    assert first.input_shape == (None, 5, 5, 2) and first.output_shape == (None, 1)
    assert first(torch.randn(2, 5, 5, 2)).shape == (2, 1)


def test_a_built_nested_model_keeps_its_weights_and_rejects_another_input():
    inner = brisk.Sequential([Input((4,)), Dense(3)])
    w = inner.get_weights()[0].copy()
    outer = brisk.Sequential([Input((4,)), inner, Dense(1)])
    np.testing.assert_array_equal(outer.get_weights()[0], w)  # transfer learning: kept
    with pytest.raises(ValueError, match="built for per-sample input shape \\(4,\\) and is given "
                                         "\\(5,\\)"):
        brisk.Sequential([Input((5,)), inner])


# ----------------------------------------------------------------------------- first call


def test_standalone_layers_build_on_their_first_call():
    d = Dense(4)
    assert not d.built
    assert d(torch.ones(2, 3)).shape == (2, 4) and d.built  # Keras: (2, 4), kernel (3, 4)
    assert tuple(d.linear.weight.T.shape) == (3, 4)
    assert LayerNormalization()(torch.ones(2, 6)).shape == (2, 6)  # Keras: (2, 6)
    assert Embedding(10, 3)(torch.tensor([[1, 2]])).shape == (1, 2, 3)  # Keras: (1, 2, 3)
    assert LSTM(5)(torch.ones(2, 7, 3)).shape == (2, 5)  # Keras: (2, 5)
    # images: the layer's own layout, NCHW (Keras, NHWC: (2, 6, 6, 5), kernel (3, 3, 3, 5))
    c = Conv2D(5, 3)
    assert c(torch.ones(2, 3, 8, 8)).shape == (2, 5, 6, 6)
    assert tuple(c.conv.weight.permute(2, 3, 1, 0).shape) == (3, 3, 3, 5)


def test_the_build_hook_goes_away_once_built():
    d = Dense(2)
    assert len(d._forward_pre_hooks) == 1
    d(torch.ones(1, 3))
    assert len(d._forward_pre_hooks) == 0  # no per-call cost afterwards
    m = brisk.Sequential([Input((3,)), Dense(2), BatchNormalization()])
    assert all(len(la._forward_pre_hooks) == 0 for la in m.layers)
    gm = torch.fx.symbolic_trace(m.layers[0])  # a traced graph has no hook either
    torch.testing.assert_close(gm(torch.ones(1, 3)), m.layers[0](torch.ones(1, 3)))


def test_a_layer_built_by_a_call_keeps_its_weights_in_a_model():
    d = Dense(2)
    d(torch.ones(1, 3))
    k = d.linear.weight.detach().clone()
    m = brisk.Sequential([Input((3,)), d])
    assert m.layers[0] is d  # Keras: True, the same weights
    torch.testing.assert_close(d.linear.weight, k)
    with pytest.raises(ValueError, match=r"'dense' was built for per-sample input shape \(3,\)"):
        brisk.Sequential([Input((5,)), d])


def test_first_call_errors_and_copies():
    with pytest.raises(TypeError, match="needs a torch.Tensor batch with a leading batch axis, "
                                        "got ndarray"):
        Dense(2)(np.ones((1, 3)))
    with pytest.raises(TypeError, match=r"got \(3,\)"):
        Dense(2)(torch.ones(3))
    d = Dense(2)
    twin = copy.deepcopy(d)
    twin(torch.ones(1, 5))
    assert twin.built and not d.built and len(d._forward_pre_hooks) == 1
    assert d(torch.ones(1, 3)).shape == (1, 2)


def test_fold_sees_through_a_nested_model():
    base, top = _image_models()
    with torch.no_grad():  # BatchNorm statistics off their start, so folding changes weights
        bn = base.layers[1].bn
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
    top.eval()
    folded = brisk.compress.fold(top)
    x = torch.randn(3, 5, 5, 2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(folded(x), top(x), rtol=1e-5, atol=1e-5)


def test_batch_normalization_on_images_without_other_image_layers_uses_the_channels():
    # Keras 3.15.1: Sequential([Input((6, 6, 4)), BatchNormalization()]) has 16 parameters
    # (gamma, beta, moving mean and variance over the 4 channels, the last axis).
    from brisk.layers import BatchNormalization

    m = brisk.Sequential([Input((6, 6, 4)), BatchNormalization()])
    assert m.count_params() == 16 and [w.shape for w in m.get_weights()] == [(4,)] * 4
    x = np.random.RandomState(0).normal(size=(8, 6, 6, 4)) * [1, 2, 3, 4] + [0, 1, 2, 3]
    out = m.layers[0].train()(torch.tensor(x, dtype=torch.float32).permute(0, 3, 1, 2))
    np.testing.assert_allclose(out.mean((0, 2, 3)).detach().numpy(), 0, atol=1e-5)
