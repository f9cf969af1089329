"""Bad input fails before training with a ValueError/TypeError naming the argument."""

import numpy as np
import pytest
import torch

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
