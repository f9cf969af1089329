"""Bad input fails before training with a ValueError/TypeError naming the argument."""

import numpy as np
import pytest
import torch
from torch import nn

import brisk
from brisk.layers import Dense


@pytest.fixture
def model():
    m = brisk.Sequential([Dense(8, activation="relu", input_shape=(4,)),
                          Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


X = np.random.rand(20, 4).astype("float32")
Y = np.random.randint(0, 3, 20)


def weights(m):
    return [p.detach().clone() for p in m.parameters()]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"x": X, "y": Y[:19]}, ValueError, r"y: x has 20 samples but y has 19"),
        ({"x": X[:0], "y": Y[:0]}, ValueError, r"x: empty data"),
        ({"x": np.random.rand(20, 5).astype("float32"), "y": Y}, ValueError,
         r"x: per-sample input shape \(5,\) does not fit"),
        ({"x": X, "y": np.full(20, 3)}, ValueError, r"y: labels must be in \[0, 2\].*\[3, 3\]"),
        ({"x": X, "y": -np.ones(20, "int64")}, ValueError, r"y: labels must be in \[0, 2\]"),
        ({"x": np.where(np.eye(20, 4) > 0, np.nan, X).astype("float32"), "y": Y}, ValueError,
         r"x: contains NaN"),
        ({"x": np.full((20, 4), np.inf, "float32"), "y": Y}, ValueError, r"x: contains NaN or inf"),
        ({"x": X, "y": Y, "batch_size": 0}, ValueError, r"batch_size: expected a positive"),
        ({"x": X, "y": Y, "batch_size": -3}, ValueError, r"batch_size"),
        ({"x": X, "y": Y, "validation_split": 1.0}, ValueError, r"validation_split: expected a float in \(0, 1\)"),
        ({"x": X, "y": Y, "validation_split": -0.1}, ValueError, r"validation_split"),
        ({"x": X, "y": Y, "epochs": 0}, ValueError, r"epochs"),
        ({"x": "abc", "y": Y}, TypeError, r"x: expected a numpy array"),
        ({"x": np.array(["a"] * 20), "y": Y}, TypeError, r"x: expected a numeric array"),
        ({"x": X, "y": Y, "verbose": 3}, ValueError, r"verbose"),
    ],
)
def test_fit_rejects_bad_input_before_training(model, kwargs, exc, match):
    model.build((4,))
    before = weights(model)
    with pytest.raises(exc, match=match):
        kwargs = {"epochs": 1, "verbose": 0, **kwargs}
        model.fit(**kwargs)
    for a, b in zip(before, weights(model), strict=False):
        assert torch.equal(a, b)  # nothing trained


def test_unknown_names_list_close_valid_names():
    m = brisk.Sequential([Dense(3, input_shape=(4,))])
    with pytest.raises(ValueError, match=r"loss: unknown name 'sparse_categorical_crossentropyy'.*'sparse_categorical_crossentropy'"):
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropyy")
    with pytest.raises(ValueError, match=r"metrics: unknown name 'acuracy'.*'accuracy'"):
        m.compile(optimizer="adam", loss="mse", metrics=["acuracy"])
    with pytest.raises(ValueError, match=r"optimizer.*'adma'.*'adam'"):
        m.compile(optimizer="adma", loss="mse")


def test_categorical_and_binary_targets_checked(model):
    m = brisk.Sequential([Dense(3, activation="softmax", input_shape=(4,))])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=r"y: categorical_crossentropy needs one-hot labels"):
        m.fit(X, Y, verbose=0)
    b = brisk.Sequential([Dense(1, activation="sigmoid", input_shape=(4,))])
    b.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    with pytest.raises(ValueError, match=r"y: binary_crossentropy needs labels in \[0, 1\]"):
        b.fit(X, np.full(20, 2.0), verbose=0)
    yb = (X[:, 0] > 0.5).astype("float32")
    h = b.fit(X, yb, epochs=2, verbose=0)
    assert len(h.history["accuracy"]) == 2
    # the accuracy is that of thresholding the predicted probabilities at 0.5
    _, acc = b.evaluate(X, yb)
    assert acc == pytest.approx(np.mean((b.predict(X)[:, 0] > 0.5) == (yb > 0.5)))


def test_module_type_and_uncompiled_fit(monkeypatch):
    with pytest.raises(TypeError, match="module: expected a torch.nn.Module"):
        brisk.Trainer(object())
    m = brisk.Sequential([Dense(3, input_shape=(4,))])
    with pytest.raises(ValueError, match="not compiled"):
        m.fit(X, Y)
    # the same check on every machine: pretend there is no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device: 'cuda' was asked for but no CUDA GPU"):
        brisk.Trainer(torch.nn.Linear(2, 2), device="cuda")
    with pytest.raises(ValueError, match="device: expected 'cpu', 'cuda'"):
        brisk.Trainer(torch.nn.Linear(2, 2), device="gpu0")


# ---------------------------------------------------------------------- issue 12's known cases


def _fitted_mlp():
    from brisk.layers import Dense, Input

    m = brisk.Sequential([Input((4,)), Dense(3)])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    m.fit(np.zeros((8, 4), "float32"), np.zeros(8, "int64"), verbose=0)
    return m


def test_known_bad_inputs_get_a_clear_error_naming_the_argument():
    m = _fitted_mlp()
    x5, y = np.zeros((3, 5), "float32"), np.zeros(3, "int64")
    cases = [
        (lambda: m.predict(x5), ValueError,
         "x: per-sample input shape (5,) does not fit the model, which expects (4,)"),
        (lambda: m.evaluate(x5, y), ValueError,
         "x: per-sample input shape (5,) does not fit the model, which expects (4,)"),
        (lambda: m.fit(np.zeros((3, 4), "float32"), y, validation_data=(x5, y), verbose=0),
         ValueError, "validation_data: per-sample input shape (5,) does not fit the model, "
         "which expects (4,)"),
        (lambda: m.fit(np.zeros((3, 4), "float32"), None, verbose=0), ValueError,
         "y: sparse_categorical_crossentropy needs targets; got y=None (pass the labels, or a "
         "Dataset that yields (x, y))"),
        (lambda: m.evaluate(np.zeros((3, 4), "float32"), y, batch_size=0), ValueError,
         "batch_size: expected a positive integer, got 0"),
        (lambda: m.predict(np.zeros((3, 4), "float32"), batch_size=0), ValueError,
         "batch_size: expected a positive integer, got 0"),
        (lambda: brisk.Trainer(nn.Linear(4, 3), loss="mse", warmup=2.7), ValueError,
         "warmup: expected a number of optimizer steps (an int >= 0), got 2.7"),
        (lambda: m.fit(np.zeros((3, 4), "float32"), y, shuffle="no", verbose=0), TypeError,
         "shuffle: expected True or False, got 'no'"),
        (lambda: brisk.Trainer(nn.Linear(4, 3), loss="mse", seed=2**70), ValueError,
         "seed: expected an int in [0, 2**32 - 1] (as Keras), got 1180591620717411303424"),
        (lambda: brisk.utils.set_random_seed(-1), ValueError,
         "seed: expected an int in [0, 2**32 - 1] (as Keras), got -1"),
    ]
    before = [w.copy() for w in m.get_weights()]
    for fn, kind, msg in cases:
        with pytest.raises(kind) as e:
            fn()
        assert str(e.value) == msg
    for a, b in zip(m.get_weights(), before, strict=True):  # nothing trained on the way
        np.testing.assert_array_equal(a, b)


def test_a_plain_module_still_takes_other_input_sizes_after_fit():
    # only a declared input shape is enforced: a fully convolutional net takes any size
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    t = brisk.Trainer(net, loss="mse")
    t.fit(torch.zeros(4, 1, 8, 8), torch.zeros(4, 2), verbose=0)
    assert t.predict(torch.zeros(2, 1, 12, 12)).shape == (2, 2)


def test_class_weight_with_a_class_per_position_is_refused():
    # a (N, H, W) mask read as one-hot along W gave per-row nonsense weights, silently
    seg = brisk.Sequential([brisk.layers.Input((4, 4, 1)),
                            brisk.layers.Conv2D(3, 1, activation="softmax")])
    seg.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.random.rand(8, 4, 4, 1).astype("float32")
    y = (np.arange(8 * 16) % 3).reshape(8, 4, 4)
    with pytest.raises(ValueError) as e:
        seg.fit(x, y, class_weight={0: 1.0, 1: 2.0}, verbose=0)
    assert str(e.value) == (
        "class_weight: needs a class index per sample, (N,) or (N, 1), or one-hot labels shaped "
        "like the output (None, 3, 4, 4); got labels of shape (8, 4, 4) (a class per position: "
        "weigh them with sample_weight, or in the loss)")
    with pytest.raises(ValueError, match=r"got labels of shape \(8, 1, 4\)"):  # a 1 on axis 1
        seg.fit(x, y[:, :1], class_weight={0: 1.0}, verbose=0)
    seg.fit(x, y, verbose=0)  # without class_weight the same labels train
    clf = brisk.Sequential([brisk.layers.Input((3,)), brisk.layers.Dense(2, activation="softmax")])
    clf.compile(optimizer="sgd", loss="categorical_crossentropy")
    onehot = np.eye(2, dtype="float32")[np.arange(6) % 2]  # (N, C): Keras's argmax, accepted
    clf.fit(np.random.rand(6, 3).astype("float32"), onehot, class_weight={1: 3.0}, verbose=0)
    # (N, 1) class indices are a class per sample; (N, 2) indices for 3 classes are not
    tri = brisk.Sequential([brisk.layers.Input((3,)), brisk.layers.Dense(3, activation="softmax")])
    tri.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    xs = np.random.rand(6, 3).astype("float32")
    tri.fit(xs, (np.arange(6) % 3).reshape(6, 1), class_weight={1: 3.0}, verbose=0)
    seq = brisk.Sequential([brisk.layers.Input((2, 4)), brisk.layers.Dense(3, activation="softmax")])
    seq.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")  # (N, 2, 3) outputs
    xq, yq = np.random.rand(6, 2, 4).astype("float32"), (np.arange(12) % 3).reshape(6, 2)
    with pytest.raises(ValueError, match=r"got labels of shape \(6, 2\)"):
        seq.fit(xq, yq, class_weight={1: 3.0}, verbose=0)
    seq.fit(xq, yq, verbose=0)


def test_evaluate_checks_steps_and_labels_with_exact_messages():
    net = nn.Linear(4, 3)
    t = brisk.Trainer(net, optimizer="sgd", loss="cross_entropy", device="cpu")
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    with pytest.raises(ValueError) as e:
        t.evaluate(x, y, steps=0)
    assert str(e.value) == "steps: expected a positive integer, got 0"
    with pytest.raises(ValueError) as e:
        t.evaluate(x, torch.tensor([0, 1, 2, 3, 4, 5]))  # 3 classes
    assert str(e.value).startswith("y: ")
    assert "labels" in str(e.value)


def test_class_weight_table_exactly():
    """The lookup table fit builds from class_weight: one weight per class (1 for classes
    not named), as long as the largest key + 1, the output's class count (axis 0 of a
    (C, H, W) output, else the last axis) and 2; keys and weights checked at their bounds."""
    from brisk.engine.inputs import class_weight_table as table

    cpu = torch.device("cpu")
    assert table({1: 3.0}, True, (5,), cpu).tolist() == [1, 3, 1, 1, 1]
    assert table({0: 2.0}, True, (4, 8, 8), cpu).tolist() == [2, 1, 1, 1]  # classes first
    assert table({0: 0.0}, True, (), cpu).tolist() == [0, 1]  # one output: binary, 0 allowed
    assert table({6: 0.5}, True, (3,), cpu).tolist() == [1, 1, 1, 1, 1, 1, 0.5]
    top = float(np.finfo(np.float32).max)
    assert table({0: top}, True, (2,), cpu)[0].item() == top
    assert len(table({2**24 - 1: 1.0}, True, (2,), cpu)) == 2**24
    for bad in ({2**24: 1.0}, {-1: 1.0}, {True: 1.0}):
        with pytest.raises(ValueError) as e:
            table(bad, True, (2,), cpu)
        assert str(e.value) == (f"class_weight: class indices must be ints >= 0 and < 2**24, "
                                f"got {next(iter(bad))!r}")
    for bad in (True, "2", float("nan"), -0.5, 1e39):
        with pytest.raises(ValueError) as e:
            table({0: bad}, True, (2,), cpu)
        assert str(e.value) == f"class_weight: weights must be finite numbers >= 0, got {bad!r} for class 0"
    with pytest.raises(ValueError) as e:
        table({0: 1.0}, False, (2,), cpu)
    assert str(e.value) == ("class_weight: needs a loss that takes per-sample weights (a name or "
                            "a brisk.losses.Loss); a torch loss function takes none")


def _fit_args(**kw):
    from brisk.engine.inputs import check_fit_arguments

    base = dict(batch_size=None, epochs=2, shuffle=True, initial_epoch=0, validation_split=0.0,
                validation_data=None, validation_freq=1, steps_per_epoch=None,
                validation_steps=None, class_weight=None, sample_weight=None, full_batch=False,
                accumulate=1, on_nan="stop")
    return check_fit_arguments(**{**base, **kw})


def test_fit_arguments_defaults_and_refusals_exactly():
    assert _fit_args() == (32, 2, None, None)  # Keras's default batch size
    assert _fit_args(full_batch=True) == (4096, 2, None, None)  # 'gd': chunks of 4096
    assert _fit_args(on_nan="restore", validation_split=0.5, steps_per_epoch=3) == (32, 2, 3, None)
    assert _fit_args(on_nan=None)[0] == 32
    cases = [
        (dict(initial_epoch=1.0), "initial_epoch: expected an int in [0, epochs), got 1.0"),
        (dict(steps_per_epoch=2, accumulate=2),
         "steps_per_epoch: not supported with full-batch ('gd') training or gradient "
         "accumulation, whose steps follow the data's passes"),
        (dict(class_weight={0: 1.0}, sample_weight=np.ones(3)),
         "class_weight: give class_weight or sample_weight, not both (Keras)"),
        (dict(on_nan="halt"), "on_nan: expected 'stop', 'restore' or None, got 'halt'"),
        (dict(on_nan=1), "on_nan: expected 'stop', 'restore' or None, got 1"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError) as e:
            _fit_args(**kw)
        assert str(e.value) == msg


def test_sample_weights_split_with_validation_split_and_validation_data_weights_are_checked():
    torch.manual_seed(0)
    net = nn.Linear(2, 1)
    t = brisk.Trainer(net, optimizer=brisk.optimizers.SGD(0.0), loss="mse", device="cpu")
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    w = torch.tensor([1.0, 1, 1, 1, 1, 1, 3, 0])  # the last 2 validate (validation_split=0.25)
    h = t.fit(x, y, sample_weight=w, validation_split=0.25, batch_size=8, verbose=0)
    with torch.no_grad():
        err = ((net(x[6:]) - y[6:]) ** 2).squeeze(1)
    # Keras's weighted mean: sum(w * loss) / number of samples
    assert h.history["val_loss"][0] == pytest.approx(float((3 * err[0] + 0 * err[1]) / 2), rel=1e-5)
    with pytest.raises(ValueError) as e:
        t.fit(x, y, validation_data=(x[:4], y[:4], np.ones(3)), verbose=0)
    assert str(e.value).startswith("validation_data sample_weight: ")
