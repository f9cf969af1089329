"""Keras's callback contract on brisk: hook order, logs, params, and the Keras callbacks
CSVLogger, LearningRateScheduler, ReduceLROnPlateau's logged rate, TerminateOnNaN and
LambdaCallback. Pinned values: Keras 3.15.1, torch backend (tools/keras_oracle/callbacks.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import brisk
from brisk.callbacks import (
    Callback,
    CSVLogger,
    LambdaCallback,
    LearningRateScheduler,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from brisk.layers import Dense, Input

rs = np.random.RandomState(0)
X, Y = rs.rand(8, 3).astype("float32"), rs.rand(8, 2).astype("float32")
HOOKS = ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
         "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
         "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
         "on_predict_batch_begin", "on_predict_batch_end"]


class Recorder(Callback):
    def __init__(self):
        self.calls, self.logs_types = [], set()

    def __getattribute__(self, name):
        if name in HOOKS:
            def hook(*args, **kwargs):
                logs = args[-1] if len(args) in (1, 2) and not isinstance(args[-1], int) else None
                self.logs_types.add(type(logs).__name__ if logs is not None else "None")
                self.calls.append(name)
            return hook
        return super().__getattribute__(name)


def model():
    m = brisk.Sequential([Input((3,)), Dense(2)])
    m.compile(optimizer="sgd", loss="mse", seed=0)
    return m


def test_hook_order_in_fit_evaluate_and_predict_is_keras():
    # Keras 3.15.1: 8 samples, batch 4, 2 epochs, validation on 4 samples.
    epoch = (["on_epoch_begin"] + ["on_train_batch_begin", "on_train_batch_end"] * 2
             + ["on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_end",
                "on_epoch_end"])
    m, r = model(), Recorder()
    m.fit(X, Y, batch_size=4, epochs=2, verbose=0, validation_data=(X[:4], Y[:4]),
          validation_batch_size=4, callbacks=[r])
    assert r.calls == ["on_train_begin", *epoch, *epoch, "on_train_end"]
    assert r.params == {"epochs": 2, "steps": 2, "verbose": 0}
    r.calls.clear()
    m.evaluate(X, Y, batch_size=4, callbacks=[r])
    assert r.calls == ["on_test_begin"] + ["on_test_batch_begin", "on_test_batch_end"] * 2 + [
        "on_test_end"]
    r.calls.clear()
    m.predict(X, batch_size=4, callbacks=[r])
    assert r.calls == ["on_predict_begin"] + ["on_predict_batch_begin",
                                              "on_predict_batch_end"] * 2 + ["on_predict_end"]


def test_logs_are_always_dicts_and_batch_aliases_are_called():
    seen = []

    class Check(Callback):
        def on_train_begin(self, logs=None):
            seen.append(("train_begin", dict(logs)))

        def on_batch_begin(self, batch, logs=None):
            seen.append(("batch_begin", batch, dict(logs)))

        def on_batch_end(self, batch, logs=None):
            seen.append(("batch_end", batch, sorted(logs)))

        def on_test_end(self, logs=None):
            seen.append(("test_end", sorted(logs)))

        def on_predict_batch_end(self, batch, logs=None):
            seen.append(("predict", batch, tuple(logs["outputs"].shape)))

    m = model()
    m.fit(X, Y, batch_size=4, epochs=1, verbose=0, callbacks=[Check()])
    m.evaluate(X, Y, callbacks=[Check()])
    m.predict(X, batch_size=8, callbacks=[Check()])
    assert seen == [("train_begin", {}), ("batch_begin", 0, {}), ("batch_end", 0, ["loss"]),
                    ("batch_begin", 1, {}), ("batch_end", 1, ["loss"]), ("test_end", ["loss"]),
                    ("predict", 0, (8, 2))]


def test_history_records_what_callbacks_add_to_the_logs():
    class Add(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["extra"] = float(epoch)

    h = model().fit(X, Y, batch_size=4, epochs=2, verbose=0, callbacks=[Add()])
    assert h.history["extra"] == [0.0, 1.0]  # Keras appends History after the user's


def test_csv_logger_writes_keras_format(tmp_path):
    # Keras 3.15.1: 'epoch,loss,val_loss\r\n0,<loss>,NA\r\n1,<loss>,NA\r\n' (csv's excel
    # dialect; tools/keras_oracle/callbacks_exact.py); with append=True and
    # separator ';' on a file with a header: no second header, ';' between values.
    f = tmp_path / "log.csv"
    m = model()
    h = m.fit(X, Y, batch_size=4, epochs=2, verbose=0, callbacks=[CSVLogger(f)])
    assert f.read_bytes().count(b"\r\n") == 3
    rows = f.read_text().splitlines()
    assert rows[0] == "epoch,loss,val_loss"
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    assert [r.split(",")[2] for r in rows[1:]] == ["NA", "NA"]
    assert [float(r.split(",")[1]) for r in rows[1:]] == h.history["loss"]
    h2 = m.fit(X, Y, batch_size=4, epochs=2, verbose=0, validation_data=(X[:4], Y[:4]),
               callbacks=[CSVLogger(f, separator=";", append=True)])
    rows = f.read_text().splitlines()
    assert len(rows) == 5 and rows[3] == f"0;{h2.history['loss'][0]!r};{h2.history['val_loss'][0]!r}"
    with pytest.raises(ValueError, match="separator: expected one character"):
        CSVLogger(f, separator=";;")


def test_learning_rate_scheduler_sets_and_logs_the_rate():
    # Keras 3.15.1: schedule 0.1 / (epoch + 1) -> history['learning_rate'] 0.1, 0.05, 0.0333
    m = model()
    rates = []

    class Spy(Callback):
        def on_train_batch_begin(self, batch, logs=None):
            rates.append(self.trainer.optimizer.param_groups[0]["lr"])

    h = m.fit(X, Y, batch_size=4, epochs=3, verbose=0,
              callbacks=[LearningRateScheduler(lambda e, lr: 0.1 / (e + 1)), Spy()])
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.1 / 3, 0.1 / 3])
    h = m.fit(X, Y, batch_size=4, epochs=1, verbose=0,
              callbacks=[LearningRateScheduler(lambda e: 0.2)])  # the one-argument form
    assert h.history["learning_rate"] == [0.2]
    with pytest.raises(ValueError, match="schedule: the learning rate must be a finite number"):
        m.fit(X, Y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: None)])


def test_reduce_lr_on_plateau_logs_the_rate_the_epoch_used():
    # Keras 3.15.1: patience 0, min_delta 10: the rate is reduced after epoch 1 is logged.
    m = brisk.Sequential([Input((3,)), Dense(2)])
    m.compile(optimizer=brisk.optimizers.SGD(learning_rate=0.04), loss="mse", seed=0)
    h = m.fit(X, Y, batch_size=4, epochs=3, verbose=0, validation_data=(X[:4], Y[:4]),
              callbacks=[ReduceLROnPlateau(patience=0, factor=0.5, min_delta=10)])
    assert h.history["learning_rate"] == pytest.approx([0.04, 0.04, 0.02])


def test_terminate_on_nan_stops_at_the_first_bad_batch():
    m = brisk.Sequential([Input((3,)), Dense(2)])
    m.compile(optimizer=brisk.optimizers.SGD(learning_rate=1e30), loss="mse", seed=0)
    big = np.full((64, 3), 1e10, "float32")
    seen = []
    h = m.fit(big, np.zeros((64, 2), "float32"), batch_size=4, epochs=3, verbose=0,
              callbacks=[TerminateOnNaN(), LambdaCallback(
                  on_train_batch_end=lambda b, logs: seen.append(b))])
    assert len(h.history["loss"]) == 1 and seen and len(seen) < 16
    assert not math.isfinite(h.history["loss"][0])
    m2 = brisk.Sequential([Input((3,)), Dense(2)])
    m2.compile(optimizer=brisk.optimizers.SGD(learning_rate=1e30), loss="mse", seed=0)
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch"):
        m2.fit(big, np.zeros((64, 2), "float32"), batch_size=4, verbose=0,
               callbacks=[TerminateOnNaN(raise_error=True)])


def test_lambda_callback_hooks_and_bad_names():
    events = []
    cb = LambdaCallback(on_epoch_end=lambda e, logs: events.append(("epoch", e)),
                        on_train_end=lambda logs: events.append(("end",)),
                        on_test_end=lambda logs: events.append(("test",)))
    model().fit(X, Y, batch_size=8, epochs=2, verbose=0, validation_split=0.25, callbacks=[cb])
    assert events == [("test",), ("epoch", 0), ("test",), ("epoch", 1), ("end",)]
    with pytest.raises(ValueError, match="on_epoch_middle: not a callback hook"):
        LambdaCallback(on_epoch_middle=print)
    with pytest.raises(TypeError, match="on_epoch_end: expected a callable"):
        LambdaCallback(on_epoch_end=3)


def test_batch_logs_cost_no_host_sync_unless_read(monkeypatch):
    """The contract adds no per-step synchronisation: a callback that does not read the
    batch logs never triggers the device read behind them."""
    m = model()
    reads = []
    real = m.trainer._read_stats
    monkeypatch.setattr(m.trainer, "_read_stats", lambda **kw: reads.append(1) or real(**kw))

    class Quiet(Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    m.fit(X, Y, batch_size=2, epochs=1, verbose=0, callbacks=[Quiet()])
    assert len(reads) == 1  # once, at the epoch end
    assert torch.is_tensor(m.trainer._stats[0])


def _scripted(values):
    class S(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = values[epoch]
    return S()


@pytest.mark.parametrize("values, kwargs, expected", [
    # Keras 3.15.1 (tools/keras_oracle/es_ckpt.py): (epochs run, stopped_epoch, best, best_epoch)
    ([3.0, 2.5, 2.2, 2.1, 2.0, 1.0], dict(patience=2, baseline=1.5), (6, 0, 1.0, 5)),
    ([3.0, 1.4, 1.3, 1.35, 1.36, 1.37], dict(patience=1, baseline=1.5), (4, 3, 1.3, 2)),
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dict(patience=1, start_from_epoch=3), (5, 4, 4.0, 3)),
])
def test_early_stopping_baseline_and_start_from_epoch_match_keras(values, kwargs, expected):
    from brisk.callbacks import EarlyStopping

    es = EarlyStopping(**kwargs)
    h = model().fit(X, Y, epochs=len(values), verbose=0, callbacks=[_scripted(values), es])
    assert (len(h.history["loss"]), es.stopped_epoch, es.best, es.best_epoch) == expected


def test_early_stopping_verbose_messages(capsys):
    from brisk.callbacks import EarlyStopping

    es = EarlyStopping(patience=1, verbose=1, restore_best_weights=True)
    model().fit(X, Y, epochs=5, verbose=0, callbacks=[_scripted([3, 1, 2, 2, 2]), es])
    assert capsys.readouterr().out == ("Epoch 3: early stopping\nRestoring model weights from "
                                       "the end of the best epoch: 2.\n")


def test_model_checkpoint_threshold_save_freq_and_weights_only(tmp_path):
    from brisk.callbacks import ModelCheckpoint

    # Keras 3.15.1: initial_value_threshold=2.2 with val_loss 3, 2, 2.5, 1 saves epochs 2, 4;
    # save_freq=3 with 4 batches per epoch over 2 epochs saves at (1, 3) and (2, 2).
    m = model()
    m.fit(X, Y, epochs=4, batch_size=8, verbose=0, callbacks=[
        _scripted([3.0, 2.0, 2.5, 1.0]),
        ModelCheckpoint(str(tmp_path / "a" / "m{epoch}.keras"), save_best_only=True,
                        initial_value_threshold=2.2)])
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["m2.keras", "m4.keras"]
    m.fit(X, Y, epochs=2, batch_size=2, verbose=0, callbacks=[
        ModelCheckpoint(str(tmp_path / "b" / "m{epoch}-{batch}.keras"), save_freq=3)])
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["m1-3.keras", "m2-2.keras"]
    m.fit(X, Y, epochs=1, verbose=0, callbacks=[
        ModelCheckpoint(str(tmp_path / "w.weights.h5"), save_weights_only=True)])
    other = model()
    other.load_weights(tmp_path / "w.weights.h5")
    for a, b in zip(m.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="save_freq: expected 'epoch' or a positive int"):
        ModelCheckpoint("x.keras", save_freq="batch")


def test_validation_freq_validates_every_kth_epoch():
    # Keras 3.15.1 (validation_freq.py): validation_freq=2 over 4 epochs validates after epochs 2 and 4; History
    # val_loss then has 2 entries (Keras's History appends only the keys each epoch has).
    h = model().fit(X, Y, epochs=4, verbose=0, validation_data=(X, Y), validation_freq=2)
    assert len(h.history["loss"]) == 4 and len(h.history["val_loss"]) == 2
    with pytest.raises(ValueError, match="validation_freq: expected a positive integer"):
        model().fit(X, Y, validation_freq=0, verbose=0)


class MeanPrediction(brisk.metrics.Metric):
    """Keras's subclassing protocol (the Keras guide's example, with torch ops)."""

    def __init__(self, name="mean_prediction"):
        super().__init__(name=name)
        self.total = self.add_weight(name="total", initializer="zeros")
        self.count = self.add_weight(name="count", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total += y_pred.sum()
        self.count += y_pred.numel()

    def result(self):
        return self.total / self.count


def test_keras_metric_subclass_protocol():
    m = model()
    metric = MeanPrediction()
    m.compile(optimizer="sgd", loss="mse", metrics=[metric], seed=0)
    r = m.evaluate(X, Y, return_dict=True)
    assert r["mean_prediction"] == pytest.approx(float(m.predict(X).mean()), rel=1e-5)
    class MidEpochEvaluate(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                self.model.evaluate(X[:2], Y[:2])

    def run(callbacks):
        net = model()
        net.compile(optimizer="sgd", loss="mse", metrics=[MeanPrediction()], seed=0)
        return net.fit(X, Y, batch_size=4, epochs=1, verbose=0, shuffle=False,
                       validation_data=(X, Y), callbacks=callbacks), net

    (plain, _), (probed, net) = run([]), run([MidEpochEvaluate()])
    # an evaluate in the middle of the epoch leaves the training metric's state as it was
    assert probed.history["mean_prediction"] == pytest.approx(plain.history["mean_prediction"])
    assert probed.history["val_mean_prediction"][0] == pytest.approx(
        float(net.predict(X).mean()), rel=1e-5)
    metric.reset_state()
    assert float(metric.total) == 0.0 and float(metric.count) == 0.0
    with pytest.raises(ValueError, match="initializer: expected 'zeros' or 'ones'"):
        metric.add_weight(initializer="glorot")


def test_on_train_end_gets_the_last_epoch_logs_and_schedule_objects_log_no_rate():
    ends = []
    m = brisk.Sequential([Input((3,)), Dense(2)])
    m.compile(optimizer=brisk.optimizers.SGD(
        learning_rate=brisk.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)), loss="mse")
    h = m.fit(X, Y, epochs=2, verbose=0, validation_data=(X, Y),
              callbacks=[LambdaCallback(on_train_end=lambda logs: ends.append(dict(logs)))])
    assert sorted(ends[0]) == ["loss", "val_loss"]  # Keras: no learning_rate key here
    assert ends[0]["loss"] == h.history["loss"][-1]


def test_val_monitors_skip_the_epochs_validation_freq_leaves_out(tmp_path):
    # Keras 3.15.1 (review): with validation_freq=2, EarlyStopping and a save_best_only
    # ModelCheckpoint warn on the unvalidated epochs and the run goes on (4 epochs)
    import warnings as w

    from brisk.callbacks import EarlyStopping, ModelCheckpoint
    from brisk.layers import Dense, Input

    rng = np.random.RandomState(0)
    x, y = rng.rand(32, 3).astype("float32"), rng.rand(32, 1).astype("float32")
    m = brisk.Sequential([Input((3,)), Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    path = tmp_path / "best.safetensors"
    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        h = m.fit(x, y, epochs=4, validation_data=(x, y), validation_freq=2, verbose=0,
                  callbacks=[EarlyStopping(patience=5),
                             ModelCheckpoint(str(path), save_best_only=True)])
    assert h.epoch == [0, 1, 2, 3] and len(h.history["val_loss"]) == 2 and path.exists()
    assert sum("not available in epoch" in str(c.message) for c in caught) == 2
    assert sum("Can save best model only with val_loss" in str(c.message) for c in caught) == 2
    # no validation at all: the monitor can never appear, which stays an error
    with pytest.raises(ValueError, match="monitor: 'val_loss' is not in the epoch logs"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[EarlyStopping()])
