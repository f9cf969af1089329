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
    # the top-left output pixel by hand: the 3x3 window times the Keras (kh, kw, in, out) kernel
    conv = (x[0, :3, :3, :, None] * new[0]).sum((0, 1, 2))
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


@pytest.mark.parametrize("kwargs, kernel, bias", [
    # Keras 3.15.1 (tools/keras_oracle/clip.py): one full-batch SGD(1.0) step, mse
    ({"clipnorm": 0.5}, [0.08119246, -0.11656116, 0.84766686, 0.05722928], [0.36552766, 0.34115914]),
    ({"global_clipnorm": 0.5}, [0.08431797, -0.12138695, 0.83588994, 0.05835447],
     [0.08329107, 0.07773833]),
    ({"clipvalue": 0.1}, [0.1, -0.2, 0.5, 0.0], [0.1, 0.1]),
    ({}, [-1.8833332, 2.9166667, 8.25, -0.65], [1.5, 1.4]),
])
def test_optimizer_clipping_arguments_match_keras(kwargs, kernel, bias):
    x = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]], "float32")
    y = np.array([[10.0, 0.0], [-5.0, 2.0], [1.0, 1.0]], "float32")
    m = brisk.Sequential([Input((2,)), Dense(2)])
    m.set_weights([np.array([[0.2, -0.3], [0.4, 0.1]], "float32"), np.zeros(2, "float32")])
    m.compile(optimizer=brisk.optimizers.SGD(learning_rate=1.0, **kwargs), loss="mse")
    m.fit(x, y, batch_size=3, epochs=1, verbose=0, shuffle=False)
    k, b = m.get_weights()
    np.testing.assert_allclose(k.ravel(), kernel, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(b, bias, rtol=2e-5, atol=1e-6)


def test_optimizer_clipping_arguments_are_checked_and_kept_in_the_config():
    opt = brisk.optimizers.Adam(learning_rate=0.01, clipnorm=1.0)
    assert opt.get_config()["clipnorm"] == 1.0
    assert brisk.optimizers.get(opt.get_config()).clipnorm == 1.0
    assert brisk.optimizers.Momentum(clipvalue=0.5).clipvalue == 0.5  # through super()
    with pytest.raises(ValueError, match="clipnorm: give clipnorm or global_clipnorm, not both"):
        brisk.optimizers.SGD(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="clipvalue: expected a positive number or None"):
        brisk.optimizers.SGD(clipvalue=-1)


S = brisk.optimizers.schedules
STEPS = [0, 1, 5, 10, 25, 100]


@pytest.mark.parametrize("make, expected", [
    # Keras 3.15.1 (tools/keras_oracle/lr_schedules.py), at steps 0, 1, 5, 10, 25, 100
    (lambda: S.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5),
     [0.1, 0.0933033, 0.07071068, 0.05, 0.01767767, 9.766e-05]),
    (lambda: S.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True),
     [0.1, 0.1, 0.1, 0.05, 0.025, 9.766e-05]),
    (lambda: S.InverseTimeDecay(0.1, decay_steps=10, decay_rate=0.5),
     [0.1, 0.0952381, 0.08, 0.06666667, 0.04444445, 0.01666667]),
    (lambda: S.InverseTimeDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True),
     [0.1, 0.1, 0.1, 0.06666667, 0.05, 0.01666667]),
    (lambda: S.PiecewiseConstantDecay([5, 10], [1.0, 0.5, 0.1]), [1.0, 1.0, 1.0, 0.5, 0.1, 0.1]),
    (lambda: S.PolynomialDecay(0.1, decay_steps=20, end_learning_rate=0.01, power=2.0),
     [0.1, 0.091225, 0.060625, 0.0325, 0.01, 0.01]),
    (lambda: S.PolynomialDecay(0.1, decay_steps=20, end_learning_rate=0.01, cycle=True),
     [0.1, 0.0955, 0.0775, 0.055, 0.04375, 0.01]),
    (lambda: S.CosineDecay(0.1, decay_steps=20, alpha=0.1),
     [0.1, 0.09944598, 0.08681981, 0.055, 0.01, 0.01]),
    (lambda: S.CosineDecay(0.0, decay_steps=20, warmup_target=0.2, warmup_steps=10),
     [0.0, 0.02, 0.1, 0.2, 0.02928932, 0.0]),
])
def test_keras_schedule_objects_match_keras(make, expected):
    sched = make()
    assert [sched(s) for s in STEPS] == pytest.approx(expected, rel=1e-5, abs=1e-8)  # 8 decimals
    assert type(make()).__name__ in repr(sched)


def test_a_schedule_as_learning_rate_sets_the_rate_before_every_step():
    # Keras 3.15.1: SGD(ExponentialDecay(0.1, 2, 0.5)), 8 samples, batch 2, 2 epochs: the
    # rates of the 8 steps are 0.1 * 0.5 ** (step / 2)
    seen = []

    class Rates(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(self.trainer.optimizer.param_groups[0]["lr"])

    m = brisk.Sequential([Input((2,)), Dense(1)])
    m.compile(optimizer=brisk.optimizers.SGD(
        learning_rate=S.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)), loss="mse")
    m.fit(np.ones((8, 2), "float32"), np.zeros((8, 1), "float32"), batch_size=2, epochs=2,
          verbose=0, callbacks=[Rates()])
    assert seen == pytest.approx([0.1, 0.07071068, 0.05, 0.03535534, 0.025, 0.01767767,
                                  0.0125, 0.00883884], rel=1e-6)
    # Keras 3.15.1 (tools/keras_oracle/lr_schedule_two_fits.py): the schedule follows the
    # optimizer's iterations, so a second fit goes on at step 8 (not back to 0.1)
    m.fit(np.ones((8, 2), "float32"), np.zeros((8, 1), "float32"), batch_size=2, epochs=2,
          verbose=0, callbacks=[Rates()])
    assert seen[8:] == pytest.approx([0.00625, 0.00441942, 0.003125, 0.00220971, 0.0015625,
                                      0.00110485, 0.00078125, 0.00055243], rel=1e-5)
    assert m.trainer.global_step == 16
    cfg = m.trainer.optimizer_spec.get_config()
    assert brisk.optimizers.get(cfg).learning_rate_schedule(4) == pytest.approx(0.025)
    m.compile(optimizer=brisk.optimizers.SGD(learning_rate=S.CosineDecay(0.0, 10, warmup_target=0.1,
                                                                         warmup_steps=2)),
              loss="mse", schedule="cosine")
    with pytest.raises(ValueError, match="schedule: the optimizer's learning_rate is already a schedule"):
        m.fit(np.ones((4, 2), "float32"), np.zeros((4, 1), "float32"), verbose=0)
    with pytest.raises(ValueError, match="values: expected len\\(boundaries\\) \\+ 1 = 3 values"):
        S.PiecewiseConstantDecay([5, 10], [1.0, 0.5])


def test_get_config_from_config_and_clone_model(tmp_path):
    m = mlp()
    m.layers[0].trainable = False
    again = brisk.Sequential.from_config(m.get_config())
    assert again.get_config() == m.get_config() and again.output_shape == (None, 2)
    assert [layer.trainable for layer in again.layers] == [False, True, True]
    clone = brisk.models.clone_model(m)  # Keras: same architecture, new weights
    assert clone.count_params() == m.count_params()
    assert not np.array_equal(clone.get_weights()[0], m.get_weights()[0])
    m.save(tmp_path / "m.keras")
    assert brisk.models.load_model(tmp_path / "m.keras").get_config() == m.get_config()
    with pytest.raises(ValueError, match="config: unknown layer class 'Nope'"):
        brisk.Sequential.from_config({**m.get_config(), "layers": [{"class": "Nope", "config": {}}]})
    with pytest.raises(TypeError, match="model: clone_model takes a brisk.Sequential"):
        brisk.models.clone_model(torch.nn.Linear(2, 2))


def test_zero_padding_layer_norm_and_global_max_pooling_match_keras():
    # Keras 3.15.1 (tools/keras_oracle/layers.py): shapes, 105 weights, and the outputs for
    # weights and input drawn from RandomState(0) in this order.
    from brisk.layers import GlobalMaxPooling2D, LayerNormalization, ZeroPadding2D

    m = brisk.Sequential([Input((6, 5, 2)), ZeroPadding2D(((1, 2), (0, 3))), Conv2D(4, 3),
                          LayerNormalization(), GlobalMaxPooling2D(), Dense(3),
                          LayerNormalization()])
    assert [m._display_shape(out) for _, out in m._shapes] == [
        (None, 9, 8, 2), (None, 7, 6, 4), (None, 7, 6, 4), (None, 4), (None, 3), (None, 3)]
    assert m.count_params() == 105
    rs = np.random.RandomState(0)
    x = rs.randn(2, 6, 5, 2).astype("float32")
    m.set_weights([rs.randn(*w.shape).astype("float32") * 0.5 for w in m.get_weights()])
    np.testing.assert_allclose(m.predict(x), [[-0.232636, 0.835003, -0.97862],
                                              [-0.232659, 0.835247, -0.97852]], atol=2e-6)
    again = brisk.Sequential.from_config(m.get_config())
    assert again.get_config() == m.get_config()
    with pytest.raises(ValueError, match="padding: expected an int >= 0"):
        ZeroPadding2D(-1)


def test_depthwise_and_separable_convolutions_match_keras():
    # Keras 3.15.1 (tools/keras_oracle/sepconv.py): shapes, 220 weights in Keras layouts,
    # and the outputs for weights and input drawn from RandomState(0) in this order.
    from brisk.layers import DepthwiseConv2D, GlobalAveragePooling2D, SeparableConv2D

    m = brisk.Sequential([Input((7, 6, 3)), DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
                          SeparableConv2D(4, 3, strides=2, depth_multiplier=2, activation="relu"),
                          GlobalAveragePooling2D()])
    assert [m._display_shape(out) for _, out in m._shapes] == [(None, 7, 6, 6), (None, 3, 2, 4),
                                                               (None, 4)]
    assert m.count_params() == 220
    assert [w.shape for w in m.get_weights()] == [(3, 3, 3, 2), (6,), (3, 3, 6, 2),
                                                  (1, 1, 12, 4), (4,)]
    rs = np.random.RandomState(0)
    x = rs.randn(2, 7, 6, 3).astype("float32")
    m.set_weights([rs.randn(*w.shape).astype("float32") * 0.5 for w in m.get_weights()])
    np.testing.assert_allclose(m.predict(x), [[0.129161, 1.742822, 2.230046, 0.0],
                                              [0.091611, 1.436819, 1.542615, 0.723934]], atol=2e-6)
    assert brisk.Sequential.from_config(m.get_config()).count_params() == 220


def test_normalization_adapt_matches_keras(tmp_path):
    # Keras 3.15.1 (tools/keras_oracle/normalization.py)
    from brisk.layers import Normalization

    rs = np.random.RandomState(0)
    data = (rs.rand(50, 4, 4, 3) * 255).astype("float32")
    norm = Normalization()
    norm.adapt(data)
    m = brisk.Sequential([Input((4, 4, 3)), norm, Flatten(), Dense(2)])
    np.testing.assert_allclose(norm.mean, [128.19162, 126.819366, 130.42598], rtol=1e-6)
    np.testing.assert_allclose(norm.variance, [5754.0444, 5598.547, 5369.3218], rtol=1e-5)
    assert m.count_params() == 105 and len(m.non_trainable_weights) == 3  # mean, variance, count
    out = m.layers[0](torch.tensor(data[:2]).permute(0, 3, 1, 2))  # inside the model: NCHW
    np.testing.assert_allclose(out[0, :, 0, 0], [0.154977, 0.742467, 0.317686], atol=2e-6)
    fixed = Normalization(mean=[1.0, 2.0], variance=[4.0, 0.0])
    fixed.build((2,))
    torch.testing.assert_close(fixed(torch.tensor([[3.0, 2.0]])), torch.tensor([[1.0, 0.0]]))
    overall = Normalization(axis=None)
    overall.adapt(np.array([[1.0, 2.0], [3.0, 4.0]], "float32"))
    overall.build((2,))
    torch.testing.assert_close(overall(torch.tensor([[1.0, 5.0]])),
                               torch.tensor([[-1.3416409, 2.236068]]))
    m.save(tmp_path / "n.keras")  # the statistics are saved with the model
    np.testing.assert_array_equal(brisk.load_model(tmp_path / "n.keras").layers[0].mean, norm.mean)


@pytest.mark.parametrize("mode", ["horizontal", "vertical", "horizontal_and_vertical"])
def test_random_flip_flips_in_training_only(mode):
    from brisk.layers import RandomFlip

    m = brisk.Sequential([Input((3, 4, 1)), RandomFlip(mode, seed=0)])
    x = torch.arange(64 * 12, dtype=torch.float32).reshape(64, 3, 4, 1)
    m.train()
    out = m(x)
    x = x.permute(0, 3, 1, 2)  # image outputs of a Sequential are NCHW (torch's layout)
    lr, ud = x.flip(3), x.flip(2)
    allowed = {"horizontal": [x, lr], "vertical": [x, ud],
               "horizontal_and_vertical": [x, lr, ud, lr.flip(2)]}[mode]
    kinds = [next((k for k, a in enumerate(allowed) if torch.equal(out[i], a[i])), None)
             for i in range(64)]
    assert set(kinds) == set(range(len(allowed)))  # every allowed kind occurs in 64 draws
    m.eval()
    assert torch.equal(m(x.permute(0, 2, 3, 1)), x)  # inference: identity, as Keras
    with pytest.raises(ValueError, match="mode: expected one of"):
        RandomFlip("diagonal")


def test_load_model_refuses_crafted_configs_before_allocating(tmp_path):
    # issue 12: a tiny file asked for 160 GB, or failed with KeyError/TypeError
    import json

    from safetensors.torch import load_file, save_file

    m = brisk.Sequential([Input((4,)), Dense(3, name="d")])
    m.save(tmp_path / "ok.safetensors")
    tensors = load_file(tmp_path / "ok.safetensors")
    from safetensors import safe_open

    with safe_open(tmp_path / "ok.safetensors", framework="pt") as f:
        config = json.loads(f.metadata()["brisk"])

    def crafted(name, cfg):
        path = tmp_path / name
        save_file(tensors, path, metadata={"brisk": cfg if isinstance(cfg, str) else json.dumps(cfg)})
        return path

    huge = json.loads(json.dumps(config))
    huge["layers"][0]["config"]["units"] = 40_000_000_000  # 160 GB of float32 for (4, units)
    evil = json.loads(json.dumps(config))
    evil["layers"][0]["class"] = "os.system"
    nolist = dict(config, layers="Dense")
    cases = [
        (crafted("huge", huge), "the config does not match the weights in the file"),
        (crafted("evil", evil), "has an invalid model config (ValueError: config: unknown layer "
                                "class 'os.system'"),
        (crafted("nolist", nolist), "has an invalid model config"),
        (crafted("json", "{not json"), "has a corrupt model config"),
        (crafted("list", "[1, 2]"), "has unsupported format 'list'"),
    ]
    for path, msg in cases:
        with pytest.raises(ValueError) as e:
            brisk.load_model(path)
        assert str(e.value).startswith(f"load_model: {str(path)!r}") and msg in str(e.value), str(e.value)
    assert torch.equal(brisk.load_model(tmp_path / "ok.safetensors").layers[0].linear.weight,
                       m.layers[0].linear.weight)


def test_flatten_reads_images_in_keras_order_so_keras_weights_fit():
    # Keras 3.15.1, torch backend (tools/keras_oracle/flatten_order.py)
    from brisk.layers import MaxPooling2D

    x = np.arange(8, dtype="float32").reshape(1, 2, 2, 2)
    for layers in ([MaxPooling2D(1), Flatten()], [Flatten()]):
        m = brisk.Sequential([Input((2, 2, 2)), *layers])
        assert m.predict(x).tolist() == [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]
    m = brisk.Sequential([Input((4, 4, 2)), Conv2D(3, 2), Flatten(), Dense(2)])
    ws = [np.sin(np.arange(np.prod(w.shape)) * 0.37 + i).reshape(w.shape).astype("float32")
          for i, w in enumerate(m.get_weights())]
    m.set_weights(ws)
    xi = np.cos(np.arange(2 * 4 * 4 * 2) * 0.11).reshape(2, 4, 4, 2).astype("float32")
    np.testing.assert_allclose(m.predict(xi), [[0.004992, -1.204775], [2.522166, 2.163803]],
                               atol=2e-6)
    # compress.fold's plain torch copy computes the same
    from brisk.compress.fold import to_torch

    np.testing.assert_allclose(to_torch(m).eval()(torch.tensor(xi))
                               .detach().numpy(), m.predict(xi), atol=1e-6)


def test_files_saved_before_the_keras_flatten_order_still_compute_what_they_did(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    m = brisk.Sequential([Input((4, 4, 2)), Conv2D(3, 2), Flatten(), Dense(2)])
    x = torch.randn(3, 4, 4, 2)
    m.save(tmp_path / "new.safetensors")
    with safe_open(tmp_path / "new.safetensors", framework="pt") as f:
        config = json.loads(f.metadata()["brisk"])
    config["version"] = 1  # as brisk wrote it before: Flatten in NCHW order
    save_file(load_file(tmp_path / "new.safetensors"), tmp_path / "old.safetensors",
              metadata={"brisk": json.dumps(config)})
    old = brisk.load_model(tmp_path / "old.safetensors")
    feats = m.layers[0](x.permute(0, 3, 1, 2)).flatten(1)  # the NCHW order of version 1
    torch.testing.assert_close(old(x), m.layers[2](feats))
    old.save(tmp_path / "again.safetensors")  # re-saved: the order is kept in the config
    torch.testing.assert_close(brisk.load_model(tmp_path / "again.safetensors")(x), old(x))


def test_calling_the_model_with_training_runs_that_mode_once():
    # Keras 3.15.1, torch backend (tools/keras_oracle/call_training.py)
    from brisk.layers import BatchNormalization

    x = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 4.0]], "float32")
    m = brisk.Sequential([Input((2,)), BatchNormalization()])
    m.eval()
    np.testing.assert_allclose(m(x, training=True).detach().numpy(),
                               [[-1.22452, -1.22452], [0.0, 1.22452], [1.22452, 0.0]], atol=1e-5)
    np.testing.assert_allclose(m.layers[0].bn.running_mean.numpy(), [0.03, 0.04], atol=1e-6)
    np.testing.assert_allclose(m(x, training=False).detach().numpy(),
                               [[0.96154, 1.94291], [2.94411, 5.90804], [4.92667, 3.92548]],
                               atol=1e-5)
    assert m.training is False and m.layers[0].training is False  # the mode as it was
    with pytest.raises(TypeError, match="training: expected True, False or None, got 1"):
        m(x, training=1)
