"""fit(steps_per_epoch=, validation_steps=), evaluate(steps=), predict(steps=) on NumPy
arrays. Pinned values: Keras 3.15.1, torch backend (tools/keras_oracle/steps.py).

A zero Dense kernel trained at learning rate 0 makes each batch's MSE equal mean(y**2),
so the per-batch losses name the batches drawn: with y = 0..19 and batch 4 they are
3.5, 31.5, 91.5, 183.5, 307.5.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import brisk
from brisk.callbacks import Callback
from brisk.layers import Dense, Input
from brisk.optimizers import SGD

Y = np.arange(20, dtype="float32")[:, None]
X = np.zeros((20, 1), "float32")
B = [3.5, 31.5, 91.5, 183.5, 307.5]  # the five batches' losses, in order


class Record(Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.test_batches = [], 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.epochs[-1].append(batch)

    def on_test_batch_end(self, batch, logs=None):
        self.test_batches += 1


def model():
    m = brisk.Sequential([Input((1,)), Dense(1, use_bias=False, kernel_initializer="zeros")])
    m.compile(optimizer=SGD(0.0), loss="mse")
    return m


def run(**kw):
    rec = Record()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        h = model().fit(X, Y, batch_size=4, shuffle=False, callbacks=[rec], verbose=0, **kw)
    ran_out = [str(x.message) for x in w if "ran out" in str(x.message)]
    return h, rec, ran_out


@pytest.mark.parametrize(("spe", "epochs", "per_epoch", "losses"), [
    # Keras: one pass spans epochs; an epoch that reaches the end of the data stops there
    (3, 4, [3, 2, 3, 2], [np.mean(B[:3]), np.mean(B[3:]), np.mean(B[:3]), np.mean(B[3:])]),
    (2, 4, [2, 2, 1, 2], [17.5, 137.5, 307.5, 17.5]),
    (5, 3, [5, 5, 5], [123.5] * 3),   # exactly one pass: every epoch starts a new one
    (7, 2, [5, 5], [123.5] * 2),      # more than the data: one pass per epoch
])
def test_steps_per_epoch_follows_keras(spe, epochs, per_epoch, losses):
    h, rec, ran_out = run(epochs=epochs, steps_per_epoch=spe)
    assert [len(e) for e in rec.epochs] == per_epoch
    np.testing.assert_allclose(h.history["loss"], losses, rtol=1e-6)
    assert h.params["steps"] == spe and len(h.history["loss"]) == epochs
    # Keras warns for each epoch cut short by the end of the data
    assert len(ran_out) == sum(n < spe for n in per_epoch)


def test_steps_per_epoch_reshuffles_each_pass_and_is_reproducible():
    def losses(seed):
        m = model()
        m.trainer.seed = seed
        h = m.fit(X, Y, batch_size=4, epochs=6, steps_per_epoch=2, verbose=0)
        return h.history["loss"]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = losses(3), losses(3)
    assert a == b
    # epochs 0-2 are one pass, 3-5 the next: together each pass covers all 20 samples
    # (sum of batch losses = 4 * mean(y**2) * 5 batches), in a different order
    assert a[:3] != a[3:]
    per_pass = [a[0] * 2 + a[1] * 2 + a[2], a[3] * 2 + a[4] * 2 + a[5]]
    np.testing.assert_allclose(per_pass, [sum(B)] * 2, rtol=1e-5)


def test_validation_steps_and_evaluate_and_predict_steps():
    h, rec, _ = run(epochs=2, validation_data=(X, Y), validation_steps=2,
                    validation_batch_size=4)
    assert h.history["val_loss"] == pytest.approx([17.5, 17.5])  # Keras: first 2 batches
    assert rec.test_batches == 4
    m = model()
    assert m.evaluate(X, Y, batch_size=4, steps=2) == pytest.approx(17.5)
    assert m.predict(X, batch_size=4, steps=2).shape == (8, 1)


@pytest.mark.parametrize(("kw", "msg"), [
    ({"steps_per_epoch": 0}, "steps_per_epoch: expected a positive integer, got 0"),
    ({"validation_steps": 1.5}, "validation_steps: expected a positive integer, got 1.5"),
])
def test_bad_steps(kw, msg):
    with pytest.raises(ValueError) as e:
        model().fit(X, Y, epochs=1, verbose=0, **kw)
    assert str(e.value) == msg


def test_steps_per_epoch_refuses_accumulation():
    t = brisk.Trainer(model(), loss="mse", accumulate=2)
    with pytest.raises(ValueError, match="steps_per_epoch: not supported with full-batch"):
        t.fit(X, Y, steps_per_epoch=2, verbose=0)
