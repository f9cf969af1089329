"""Exact tests of brisk.engine.callbacks: defaults, bad-input messages in full, boundaries
(baseline, validation_freq, verbose), the hook forwarding of CallbackList, TensorBoard's
values on a fake clock and writer, CSVLogger's text and its checkpoint state.

Keras values: Keras 3.15.1, torch backend (tools/keras_oracle/callbacks_exact.py). Every
object under test is built inside the test body (mutation testing: tools/mutation/README.md).
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import brisk
from brisk.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TensorBoard,
    TerminateOnNaN,
)
from brisk.engine import callbacks as cbmod
from brisk.layers import Dense, Input

rs = np.random.RandomState(0)
X, Y = rs.rand(8, 3).astype("float32"), rs.rand(8, 2).astype("float32")


def model():
    m = brisk.Sequential([Input((3,)), Dense(2)])
    m.compile(optimizer="sgd", loss="mse", seed=0)
    return m


def _scripted(values):
    class S(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = values[epoch]
    return S()


class Recorder(Callback):
    """Records every hook call with its arguments."""

    def __init__(self, calls):
        self.calls = calls

    def __getattribute__(self, name):
        if name.startswith("on_"):
            calls = object.__getattribute__(self, "calls")
            return lambda *args: calls.append((name, *args))
        return object.__getattribute__(self, name)


def _trainer(**kw):
    """A stand-in trainer for driving hooks directly."""
    kw.setdefault("module", nn.Linear(2, 1))
    kw.setdefault("stop_training", False)
    return SimpleNamespace(**kw)


class _WarnSpy:
    def __init__(self):
        self.calls = []

    def __call__(self, message, *args, **kwargs):
        self.calls.append((str(message), args, kwargs))


# ----------------------------------------------------------------------------- base, list


def test_set_model_and_append():
    cb = Callback()
    m = nn.Linear(2, 1)
    cb.set_model(m)
    assert cb.model is m
    from brisk.engine.callbacks import CallbackList

    first, second = Callback(), Callback()
    cbs = CallbackList([first])
    cbs.append(second)
    assert cbs.callbacks == [first, second] and cbs.callbacks[1] is second


@pytest.mark.parametrize("name, head", [("on_epoch_end", (3,)), ("on_train_batch_begin", (7,)),
                                        ("on_test_batch_end", (5,)), ("on_train_begin", ()),
                                        ("on_predict_end", ())])
def test_forwarded_hook_passes_its_index_and_the_same_logs(name, head):
    from brisk.engine.callbacks import CallbackList, _forward

    calls = []
    cbs = CallbackList([Recorder(calls), Recorder(calls)])
    hook = _forward(name)
    assert hook.__name__ == name
    logs = {"loss": 1.0}
    hook(cbs, *head, logs)  # logs positional
    assert calls == [(name, *head, logs)] * 2
    assert calls[0][-1] is logs and calls[1][-1] is logs
    calls.clear()
    hook(cbs, *head, logs=logs)  # logs by keyword
    assert calls == [(name, *head, logs)] * 2 and calls[0][-1] is logs
    calls.clear()
    hook(cbs, *head)  # no logs: an empty dict
    assert calls == [(name, *head, {})] * 2


# ----------------------------------------------------------------------------- EarlyStopping


def test_early_stopping_defaults():
    es = EarlyStopping()
    assert (es.verbose, es.best_epoch, es.stopped_epoch, es.baseline, es.start_from_epoch) == (
        0, 0, 0, None, 0)
    es.wait, es.best, es.best_epoch, es.stopped_epoch = 4, 0.5, 6, 7
    es.on_train_begin()  # Keras: every count starts from zero in each fit
    assert (es.wait, es.best, es.best_epoch, es.stopped_epoch, es._best_state) == (
        0, None, 0, 0, None)


def test_early_stopping_bad_start_from_epoch_and_baseline_messages():
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError) as e:
            EarlyStopping(start_from_epoch=bad)
        assert str(e.value) == f"start_from_epoch: expected an int >= 0, got {bad!r}"
    for bad in ("1", True, [1.0]):
        with pytest.raises(ValueError) as e:
            EarlyStopping(baseline=bad)
        assert str(e.value) == f"baseline: expected a number or None, got {bad!r}"
    assert EarlyStopping(baseline=2).baseline == 2 and EarlyStopping(start_from_epoch=3).start_from_epoch == 3


@pytest.mark.parametrize("values, kwargs, expected", [
    # Keras 3.15.1: (epochs run, stopped_epoch, best, best_epoch, wait)
    # the baseline is beaten at epoch 0: the wait restarts there, patience counts from it
    ([1.0, 1.2, 1.3, 1.4, 1.5], dict(patience=2, baseline=1.5), (3, 2, 1.0, 0, 2)),
    # improvements that do not beat the baseline keep counting the wait
    ([3.0, 2.0, 2.5, 2.6, 2.7, 2.8], dict(patience=3, baseline=1.5), (3, 2, 2.0, 1, 3)),
])
def test_early_stopping_baseline_restarts_the_wait_only_when_beaten(values, kwargs, expected):
    es = EarlyStopping(**kwargs)
    h = model().fit(X, Y, epochs=len(values), verbose=0, callbacks=[_scripted(values), es])
    assert (len(h.history["loss"]), es.stopped_epoch, es.best, es.best_epoch, es.wait) == expected


def test_early_stopping_with_no_monitored_epoch_keeps_best_epoch_zero():
    es = EarlyStopping(start_from_epoch=5)
    h = model().fit(X, Y, epochs=2, verbose=0, callbacks=[_scripted([1.0, 2.0]), es])
    assert len(h.history["loss"]) == 2
    assert (es.best, es.best_epoch, es.stopped_epoch, es.wait) == (None, 0, 0, 0)


def test_early_stopping_never_stops_at_epoch_zero_even_with_a_restored_best():
    es = EarlyStopping(patience=0)
    trainer = _trainer()
    es.set_trainer(trainer)
    es.on_train_begin()
    es.load_state_dict({"wait": 3, "best": 1.0, "best_epoch": 0, "stopped_epoch": 0,
                        "best_state": None})
    es.on_epoch_end(0, {"val_loss": 2.0})
    assert trainer.stop_training is False and es.stopped_epoch == 0 and es.wait == 4
    es.on_epoch_end(1, {"val_loss": 2.0})
    assert (trainer.stop_training, es.stopped_epoch) == (True, 1)


def test_early_stopping_state_dict_and_load_state_dict():
    es = EarlyStopping(patience=2)
    trainer = _trainer()
    es.set_trainer(trainer)
    es.on_train_begin()
    for epoch, v in enumerate([3.0, 1.0, 2.0, 2.0]):
        es.on_epoch_end(epoch, {"val_loss": v})
    assert es.state_dict() == {"wait": 2, "best": 1.0, "best_epoch": 1, "stopped_epoch": 3,
                               "best_state": None}
    # a resumed run counts patience on from the loaded state
    best_state = {"weight": torch.full((1, 2), 7.0), "bias": torch.full((1,), -1.0)}
    again = EarlyStopping(patience=3, restore_best_weights=True)
    t2 = _trainer()
    again.set_trainer(t2)
    again.on_train_begin()
    again.load_state_dict({"wait": 2, "best": 0.75, "best_epoch": 4, "stopped_epoch": 0,
                           "best_state": best_state})
    assert (again.wait, again.best, again.best_epoch, again.stopped_epoch) == (2, 0.75, 4, 0)
    assert again._best_state is best_state
    again.on_epoch_end(5, {"val_loss": 0.8})
    assert (again.wait, t2.stop_training, again.stopped_epoch) == (3, True, 5)
    again.on_train_end()
    assert t2.module.weight.tolist() == [[7.0, 7.0]] and t2.module.bias.tolist() == [-1.0]


def test_early_stopping_verbose_messages_match_keras(capsys):
    # Keras 3.15.1: stopped at epoch 1 with verbose=1 -> 'Epoch 2: early stopping'
    es = EarlyStopping(patience=1, verbose=1)
    model().fit(X, Y, epochs=3, verbose=0, callbacks=[_scripted([1.0, 2.0, 3.0]), es])
    assert es.stopped_epoch == 1
    assert capsys.readouterr().out == "Epoch 2: early stopping\n"
    # verbose=1 without a stop prints nothing (Keras too)
    es = EarlyStopping(patience=1, verbose=1)
    model().fit(X, Y, epochs=3, verbose=0, callbacks=[_scripted([3.0, 2.0, 1.0]), es])
    assert es.stopped_epoch == 0 and capsys.readouterr().out == ""
    # verbose=0 (the default): a stop and a restore print nothing
    m = model()
    es = EarlyStopping(patience=1, restore_best_weights=True)
    m.fit(X, Y, epochs=5, verbose=0, callbacks=[_scripted([3.0, 1.0, 2.0, 2.0, 2.0]), es])
    assert es.stopped_epoch == 2 and capsys.readouterr().out == ""
    for k, v in m.state_dict().items():
        assert torch.equal(v, es._best_state[k])


def test_early_stopping_without_restore_ignores_a_loaded_best_state():
    es = EarlyStopping()
    trainer = _trainer()
    es.set_trainer(trainer)
    before = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    es.on_train_begin()
    es.load_state_dict({"wait": 0, "best": 1.0, "best_epoch": 0, "stopped_epoch": 0,
                        "best_state": {"weight": torch.zeros(1, 2), "bias": torch.zeros(1)}})
    es.on_train_end()
    for k, v in trainer.module.state_dict().items():
        assert torch.equal(v, before[k])


def test_validation_freq_skip_follows_the_validated_epochs(monkeypatch):
    spy = _WarnSpy()
    monkeypatch.setattr(warnings, "warn", spy)
    es = EarlyStopping(patience=1)
    es.set_trainer(_trainer(_validation_freq=3))
    es.on_train_begin()
    es.on_epoch_end(3, {"loss": 1.0})  # epoch 4: not a multiple of 3, not validated
    assert spy.calls == [("Early stopping conditioned on metric `val_loss` which is not "
                          "available in epoch 4 (validation_freq): skipped, as Keras does",
                          (), {"stacklevel": 2})]
    es.on_epoch_end(0, {"loss": 1.0})  # epoch 1: not validated either
    assert len(spy.calls) == 2
    with pytest.raises(ValueError) as e:  # epoch 3 is validated: val_loss must be there
        es.on_epoch_end(2, {"loss": 1.0})
    assert str(e.value) == ("monitor: 'val_loss' is not in the epoch logs (available: loss); "
                            "for 'val_*' pass validation_data or validation_split to fit")
    with pytest.raises(ValueError):
        es.on_epoch_end(5, {"loss": 1.0})  # epoch 6 too


# ----------------------------------------------------------------------------- ModelCheckpoint


def test_model_checkpoint_load_state_dict_continues_the_batch_count(tmp_path):
    saved = []
    trainer = _trainer(save=saved.append)
    mc = ModelCheckpoint(str(tmp_path / "m{epoch}-{batch}.st"), save_freq=3)
    mc.set_trainer(trainer)
    mc.load_state_dict({"best": 0.5, "since_save": 2})
    assert (mc.best, mc._since_save) == (0.5, 2)
    assert mc.state_dict() == {"best": 0.5, "since_save": 2}
    mc.on_epoch_begin(1)
    mc.on_train_batch_end(0, {})
    assert saved == [str(tmp_path / "m2-1.st")] and mc._since_save == 0


# ----------------------------------------------------------------------------- ReduceLROnPlateau


def test_reduce_lr_on_plateau_missing_monitor_warning(monkeypatch):
    spy = _WarnSpy()
    monkeypatch.setattr(warnings, "warn", spy)
    cb = ReduceLROnPlateau()
    cb.trainer = None
    cb.on_epoch_end(0, {"loss": 1.0})
    assert spy.calls == [("ReduceLROnPlateau: metric 'val_loss' is not in the logs "
                          "(available: loss); skipping", (), {"stacklevel": 2})]


# ----------------------------------------------------------------------------- CSVLogger


def test_csv_logger_bad_filename_messages_and_defaults(tmp_path):
    for bad in ("", 3, None):
        with pytest.raises(TypeError) as e:
            CSVLogger(bad)
        assert str(e.value) == f"filename: expected a path string, got {bad!r}"
    cb = CSVLogger(tmp_path / "x.csv")
    assert (cb.append, cb.sep, cb.keys) == (False, ",", None)
    assert cb.state_dict() == {"base": 0, "text": "", "keys": None, "header": True}
    cb.on_train_end()  # never started: nothing to close


def test_csv_logger_text_na_columns_separator_and_close(tmp_path):
    # Keras 3.15.1 writes the same cells, 'epoch;b;loss;val_b;val_loss', '0;2.25;0.5;NA;NA',
    # '1;2.25;1.5;NA;NA', and ends lines with '\r\n' (csv.excel), as brisk does
    # (tools/keras_oracle/callbacks_exact.py)
    f = tmp_path / "log.csv"
    f.write_text("old contents\n")
    cb = CSVLogger(f, separator=";")  # append=False: the file is rewritten
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 0.5, "b": 2.25})
    cb.on_epoch_end(1, {"loss": 1.5, "b": 2.25})
    expected = "epoch;b;loss;val_b;val_loss\r\n0;2.25;0.5;NA;NA\r\n1;2.25;1.5;NA;NA\r\n"
    assert f.read_bytes() == expected.encode()
    assert cb.keys == ["b", "loss", "val_b", "val_loss"]
    handle = cb._file
    cb.on_train_end()
    assert handle.closed
    # a second fit with the same logger starts the file again and closes the old handle
    cb.on_train_begin()
    first = cb._file
    cb.on_train_begin()
    assert first.closed and not cb._file.closed
    cb.on_epoch_end(0, {"loss": 0.25, "val_loss": 0.75})  # val_* present: no extra columns
    cb.on_train_end()
    assert f.read_bytes() == b"epoch;loss;val_loss\r\n0;0.25;0.75\r\n"


def test_csv_logger_append_writes_a_header_only_into_an_empty_file(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("")
    cb = CSVLogger(f, append=True)
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 0.5})
    cb.on_train_end()
    assert f.read_text() == "epoch,loss,val_loss\n0,0.5,NA\n"
    cb = CSVLogger(f, append=True)
    cb.on_train_begin()
    assert cb.state_dict() == {"base": 31, "text": "", "keys": None, "header": False}  # bytes
    cb.on_epoch_end(0, {"loss": 0.25})
    cb.on_train_end()
    assert f.read_text() == "epoch,loss,val_loss\n0,0.5,NA\n0,0.25,NA\n"


def test_csv_logger_state_dict_and_load_state_dict_put_the_file_back(tmp_path):
    f = tmp_path / "log.csv"
    cb = CSVLogger(f)
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 0.5})
    state = cb.state_dict()
    assert state == {"base": 0, "text": "epoch,loss,val_loss\r\n0,0.5,NA\r\n",
                     "keys": ["loss", "val_loss"], "header": False}
    cb.on_epoch_end(1, {"loss": 1.5})  # written after the "backup"
    old = cb._file
    # the restarted run: a new logger truncates the file, then the backup's state is loaded
    again = CSVLogger(f)
    again.on_train_begin()
    again.load_state_dict(state)
    assert f.read_text() == "epoch,loss,val_loss\n0,0.5,NA\n"
    again.on_epoch_end(1, {"loss": 2.5})
    assert f.read_text() == "epoch,loss,val_loss\n0,0.5,NA\n1,2.5,NA\n"
    assert again.state_dict() == {"base": 0, "text": "epoch,loss,val_loss\r\n0,0.5,NA\r\n1,2.5,NA\r\n",
                                  "keys": ["loss", "val_loss"], "header": False}
    old.close()
    # loading into a logger whose file is open closes that handle first
    handle = again._file
    again.load_state_dict(state)
    assert handle.closed and not again._file.closed
    assert f.read_text() == "epoch,loss,val_loss\n0,0.5,NA\n"
    again.on_train_end()


def test_csv_logger_load_state_dict_keeps_the_bytes_before_the_run(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("prior\n")
    cb = CSVLogger(f, append=True)
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 0.5})
    state = cb.state_dict()
    assert state == {"base": 6, "text": "0,0.5,NA\r\n", "keys": ["loss", "val_loss"],
                     "header": False}
    cb.on_epoch_end(1, {"loss": 1.5})
    cb.on_train_end()
    again = CSVLogger(f, append=True)
    again.on_train_begin()
    again.load_state_dict(state)
    assert f.read_text() == "prior\n0,0.5,NA\n"
    again.on_epoch_end(1, {"loss": 2.5})
    again.on_train_end()
    assert f.read_text() == "prior\n0,0.5,NA\n1,2.5,NA\n"
    assert again.state_dict()["base"] == 6


def test_csv_logger_load_state_dict_of_an_empty_run_and_a_missing_file(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("stale rows\n")
    cb = CSVLogger(f)
    cb.load_state_dict({"base": 0, "text": "", "keys": None})  # no 'header': not text -> True
    assert f.read_text() == "" and cb.keys is None and cb._written == []
    cb.on_epoch_end(0, {"loss": 0.5})
    assert f.read_text() == "epoch,loss,val_loss\n0,0.5,NA\n"
    cb.on_train_end()
    g = tmp_path / "gone.csv"
    cb = CSVLogger(g)
    cb.load_state_dict({"base": 4, "text": "0,0.5\n", "keys": ["loss"]})  # header: not text
    cb.on_epoch_end(1, {"loss": 1.5})
    cb.on_train_end()
    assert g.read_text() == "0,0.5\n1,1.5\n"
    assert cb.state_dict() == {"base": 4, "text": "0,0.5\n1,1.5\r\n", "keys": ["loss"],
                               "header": False}


# ----------------------------------------------------------------------------- TensorBoard


def _fake_writer_class(events, closed):
    class FakeWriter:
        def __init__(self, logdir):
            self.which = logdir.rsplit("/", 1)[-1]

        def add_scalar(self, tag, value, step):
            events.append((self.which, tag, value, step))

        def add_histogram(self, tag, values, step):
            events.append((self.which, tag, "histogram", step))

        def flush(self):
            pass

        def close(self):
            closed.append(self.which)
    return FakeWriter


def _clock(monkeypatch, times):
    it = iter(times)
    monkeypatch.setattr(cbmod, "time", SimpleNamespace(perf_counter=lambda: next(it)))


def test_tensorboard_defaults():
    tb = TensorBoard()
    assert (tb.log_dir, tb.write_graph, tb.write_images, tb.histogram_freq, tb.update_freq) == (
        "logs", True, False, 0, "epoch")


def test_tensorboard_steps_per_second_on_a_fake_clock(tmp_path, monkeypatch):
    events, closed = [], []
    tb = TensorBoard(str(tmp_path), write_steps_per_second=True, update_freq=2)
    tb._writer_class = _fake_writer_class(events, closed)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.25)
    tb.trainer = SimpleNamespace(global_step=10, optimizer=opt)
    tb.model = nn.Linear(1, 1)
    _clock(monkeypatch, [100.0, 100.125, 100.25, 100.5, 100.75])
    tb.on_train_begin()
    tb.on_epoch_begin(0)  # t=100.0, 10 steps so far
    tb.on_train_batch_begin(0)  # t=100.125
    tb.trainer.global_step = 11
    tb.on_train_batch_end(0, {"loss": 2.0})  # batch 1: not written, no clock read
    tb.on_train_batch_begin(1)  # t=100.25
    tb.trainer.global_step = 12
    tb.on_train_batch_end(1, {"loss": 1.5})  # t=100.5: 0.25 s -> 4 steps/s
    tb.on_epoch_end(0, {"loss": 1.5, "val_loss": 3.0})  # t=100.75: 2 steps in 0.75 s
    assert events == [("train", "batch_steps_per_second", 4.0, 2),
                      ("train", "batch_loss", 1.5, 2),
                      ("train", "epoch_loss", 1.5, 0),
                      ("train", "epoch_learning_rate", 0.25, 0),
                      ("train", "epoch_steps_per_second", 2 / 0.75, 0),
                      ("validation", "epoch_loss", 3.0, 0)]
    tb.on_train_end()
    assert sorted(closed) == ["train", "validation"] and tb._writers == {}


def test_tensorboard_epoch_rate_of_a_short_epoch_and_a_trainer_without_steps(tmp_path,
                                                                            monkeypatch):
    events, closed = [], []
    tb = TensorBoard(str(tmp_path), write_steps_per_second=True)
    tb._writer_class = _fake_writer_class(events, closed)
    tb.trainer = SimpleNamespace(global_step=3)  # no optimizer: no learning_rate
    tb.model = nn.Linear(1, 1)
    _clock(monkeypatch, [10.0, 10.5, 20.0, 20.5])
    tb.on_train_begin()
    tb.on_epoch_begin(0)
    tb.trainer.global_step = 5
    tb.on_epoch_end(0, {"loss": 1.0})  # 2 steps in 0.5 s
    tb.trainer = SimpleNamespace()  # neither global_step nor optimizer: 0 steps
    tb.on_epoch_begin(1)
    tb.on_epoch_end(1, {"loss": 0.5})
    assert events == [("train", "epoch_loss", 1.0, 0), ("train", "epoch_steps_per_second", 4.0, 0),
                      ("train", "epoch_loss", 0.5, 1), ("train", "epoch_steps_per_second", 0.0, 1)]


def test_tensorboard_evaluation_step_and_close_after_fit(tmp_path):
    events, closed = [], []
    tb = TensorBoard(str(tmp_path))
    tb._writer_class = _fake_writer_class(events, closed)
    tb.trainer = SimpleNamespace()  # no global_step: step 0
    tb.on_train_begin()
    tb.on_test_end({"loss": 0.5})  # inside fit: the writer stays open
    assert events == [("validation", "evaluation_loss_vs_iterations", 0.5, 0)]
    assert closed == [] and list(tb._writers) == ["validation"]
    tb.on_train_end()
    assert closed == ["validation"]
    tb.trainer = SimpleNamespace(global_step=7)
    tb.on_test_end({"loss": 0.25})  # an evaluate after fit: closed at once
    assert events[-1] == ("validation", "evaluation_loss_vs_iterations", 0.25, 7)
    assert closed == ["validation", "validation"] and tb._writers == {}


def test_tensorboard_histograms_of_float_tensors_with_compiled_names(tmp_path):
    class Compiled(nn.Module):  # torch.compile's wrapper names its module _orig_mod
        def __init__(self):
            super().__init__()
            self._orig_mod = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))

    events, closed = [], []
    tb = TensorBoard(str(tmp_path), histogram_freq=2)
    tb._writer_class = _fake_writer_class(events, closed)
    tb.trainer = SimpleNamespace()
    tb.model = Compiled()
    tb.on_train_begin()
    for epoch in range(3):
        tb.on_epoch_end(epoch, {})
    tags = ["0/weight", "0/bias", "1/weight", "1/bias", "1/running_mean", "1/running_var"]
    hist = [(t, s) for w, t, v, s in events if v == "histogram"]
    assert hist == [(f"{t}/histogram", 0) for t in tags] + [(f"{t}/histogram", 2) for t in tags]


# ----------------------------------------------------------------------------- LR scheduler


def test_learning_rate_scheduler_message_default_and_rate_passed(capsys):
    with pytest.raises(TypeError) as e:
        LearningRateScheduler(3)
    assert str(e.value) == "schedule: expected a callable (epoch, lr) -> lr, got 3"
    seen = []

    def halve(epoch, lr):
        seen.append((epoch, lr, type(lr)))
        return lr * 0.5

    cb = LearningRateScheduler(halve)
    assert cb.verbose == 0
    p1, p2 = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1]}, {"params": [p2], "lr": 0.3}], lr=0.25)
    cb.trainer = SimpleNamespace(optimizer=opt)
    cb.on_epoch_begin(0)
    cb.on_epoch_begin(1)
    assert seen == [(0, 0.25, float), (1, 0.125, float)]
    assert [(g["lr"], g["initial_lr"]) for g in opt.param_groups] == [(0.0625, 0.0625)] * 2
    assert capsys.readouterr().out == ""  # verbose=0 by default
    cb = LearningRateScheduler(lambda e, lr: torch.tensor(0.375, dtype=torch.float64), verbose=1)
    cb.trainer = SimpleNamespace(optimizer=opt)
    cb.on_epoch_begin(2)
    assert [(g["lr"], g["initial_lr"]) for g in opt.param_groups] == [(0.375, 0.375)] * 2
    # Keras 3.15.1's message
    assert capsys.readouterr().out == (
        "\nEpoch 3: LearningRateScheduler setting learning rate to 0.375.\n")
    logs = {}
    cb.on_epoch_end(2, logs)
    assert logs == {"learning_rate": 0.375}


# ----------------------------------------------------------------------------- TerminateOnNaN


def test_terminate_on_nan_messages(capsys):
    cb = TerminateOnNaN(raise_error=True)
    cb.trainer = _trainer()
    with pytest.raises(RuntimeError) as e:
        cb.on_batch_end(3, {"loss": float("nan")})
    assert str(e.value) == ("NaN or Inf loss encountered at batch 3. Loss value: nan. "
                            "Terminating training immediately.")
    cb = TerminateOnNaN()
    cb.trainer = _trainer()
    cb.on_batch_end(2, {"loss": 0.5})
    assert cb.trainer.stop_training is False and capsys.readouterr().out == ""
    cb.on_batch_end(4, {"loss": float("inf")})
    assert cb.trainer.stop_training is True
    assert capsys.readouterr().out == "Batch 4: Invalid loss, terminating training\n"


# ----------------------------------------------------------------------------- LambdaCallback


def test_lambda_callback_sets_each_named_hook():
    fns = {name: (lambda *a, _n=name: _n) for name in (
        "on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end",
        "on_train_batch_begin", "on_train_batch_end", "on_test_end")}
    cb = LambdaCallback(**fns)
    for name, fn in fns.items():
        assert getattr(cb, name) is fn, name
    assert cb.on_epoch_begin(0, {}) == "on_epoch_begin"
    assert cb.on_train_batch_begin(0, {}) == "on_train_batch_begin"
    only = LambdaCallback(on_train_begin=fns["on_train_begin"])
    assert only.on_train_begin({}) == "on_train_begin" and only.on_epoch_begin(0, {}) is None


# ----------------------------------------------------------------------------- History


def test_history_state_dict_and_load_does_not_replace_this_fit():
    from brisk.callbacks import History

    h = History()
    h.on_train_begin()
    h.on_epoch_end(0, {"loss": 2.0})
    h.on_epoch_end(1, {"loss": 1.5, "val_loss": 3.0})
    state = h.state_dict()
    assert state == {"epoch": [0, 1], "history": {"loss": [2.0, 1.5], "val_loss": [3.0]}}
    state["history"]["loss"].append(9.0)  # a copy
    assert h.history["loss"] == [2.0, 1.5]
    h.load_state_dict({"epoch": [5], "history": {"loss": [0.1]}})
    assert h.epoch == [0, 1] and h.history == {"loss": [2.0, 1.5], "val_loss": [3.0]}
