"""Exact resume (issue 12): a run checkpointed mid-epoch and resumed in a fresh Trainer ends
bit-identical to the uninterrupted run; BackupAndRestore with Keras 3's semantics; kill -9."""

import glob
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import brisk
from brisk.callbacks import BackupAndRestore, Callback, EarlyStopping, ModelCheckpoint
from brisk.engine.checkpoint import load_checkpoint

_g = torch.Generator().manual_seed(0)
X = torch.rand(64, 1, 8, 8, generator=_g)
Y = torch.randint(0, 3, (64,), generator=_g)
AUG = brisk.augment.compose(brisk.augment.RandomCrop(padding=1), brisk.augment.FlipLR())


def _trainer(seed, init=0, accumulate=1):
    torch.manual_seed(init)  # the model's weights; with seed=None also fit's seed draw
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Dropout(0.2),
                        nn.Linear(4 * 6 * 6, 3))
    return brisk.Trainer(net, optimizer="adam", loss="cross_entropy", metrics=["accuracy"],
                         schedule="cosine", device="cpu", seed=seed, accumulate=accumulate)


def _data(source):
    if source == "dataset":
        return (torch.utils.data.TensorDataset(X, Y), None)
    return X, Y


class StopAfter(Callback):
    """Stops training after `k` training batches in all (mid-epoch)."""

    def __init__(self, k):
        self.k, self.n = k, 0

    def on_train_batch_end(self, batch, logs=None):
        self.n += 1
        if self.n == self.k:
            self.trainer.stop_training = True


def _tensors(obj, prefix=""):
    """Every tensor (and number) of a nested state dict, by path."""
    if torch.is_tensor(obj):
        return {prefix: obj}
    if isinstance(obj, dict):
        return {k2: v2 for k, v in obj.items() for k2, v2 in _tensors(v, f"{prefix}/{k}").items()}
    if isinstance(obj, (list, tuple)):
        return {k2: v2 for i, v in enumerate(obj) for k2, v2 in _tensors(v, f"{prefix}/{i}").items()}
    return {prefix: obj}


def _by_name(trainer):
    """The optimizer's state per weight name, and its group settings (a resumed trainer may
    list the weights in another order: pruning re-registers them)."""
    sd = trainer.optimizer.state_dict()
    names = [n for g in trainer._optimizer_param_names() for n in g]
    ids = [i for g in sd["param_groups"] for i in g["params"]]
    groups = [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
    return {"state": {n: sd["state"].get(i) for n, i in zip(names, ids, strict=True)},
            "groups": groups}


def _assert_identical(a, b):
    """torch.equal on every tensor of model and optimizer state (atol = rtol = 0)."""
    ta = _tensors({"model": a.module.state_dict(), "optimizer": _by_name(a)})
    tb = _tensors({"model": b.module.state_dict(), "optimizer": _by_name(b)})
    assert ta.keys() == tb.keys()
    for k, v in ta.items():
        if torch.is_tensor(v):
            assert torch.equal(v, tb[k]), (k, (v.float() - tb[k].float()).abs().max().item())
        else:
            assert v == tb[k], k
    assert a.global_step == b.global_step


CASES = [  # (seed, data, augment, accumulate, batches before the checkpoint)
    pytest.param(0, "arrays", False, 1, 11, id="seed-arrays"),
    pytest.param(None, "arrays", False, 1, 11, id="noseed-arrays"),
    pytest.param(None, "arrays", True, 1, 13, id="noseed-arrays-augment"),
    pytest.param(None, "dataset", True, 1, 10, id="noseed-dataset-augment"),
    pytest.param(0, "dataset", False, 1, 5, id="seed-dataset"),
    pytest.param(None, "arrays", True, 2, 11, id="noseed-accumulate-mid-group"),
    pytest.param(None, "dataset", False, 1, 16, id="noseed-dataset-epoch-end"),
]


@pytest.mark.parametrize(("seed", "source", "augment", "accumulate", "k"), CASES)
def test_mid_epoch_checkpoint_resumes_bit_identical_in_a_fresh_trainer(
        tmp_path, seed, source, augment, accumulate, k):
    x, y = _data(source)
    kw = dict(batch_size=8, epochs=3, verbose=0, augment=AUG if augment else None)
    full = _trainer(seed, accumulate=accumulate)
    h_full = full.fit(x, y, **kw)

    path = str(tmp_path / "x.pt")
    part = _trainer(seed, accumulate=accumulate)
    part.fit(x, y, callbacks=[ModelCheckpoint(path, save_freq=k), StopAfter(k)], **kw)
    # a new process would start from other RNG states: the checkpoint restores them all
    fresh = _trainer(seed, init=99, accumulate=accumulate)
    np.random.seed(7)
    random.seed(7)
    fresh.load_checkpoint(path)
    state = load_checkpoint(path)
    # 8 batches per epoch; k = 16 is the end of epoch 2, resumed Keras-style at epoch 2
    assert state["position"]["batch"] == (k - 1) % 8 + 1
    initial_epoch = fresh.epoch + 1 if k % 8 == 0 else fresh.epoch
    h = fresh.fit(x, y, initial_epoch=initial_epoch, **kw)
    _assert_identical(full, fresh)
    # the resumed epoch's logs include its batches before the checkpoint
    assert h.history["loss"] == h_full.history["loss"][initial_epoch:]


def test_schedule_free_run_resumes_mid_epoch_bit_identical(tmp_path):
    # a checkpoint's "model" holds the evaluation weights, its "train_model" the training
    # weights the run goes on with (switching modes there and back is not exact)
    def trainer():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))
        return brisk.Trainer(net, optimizer="schedule_free_adamw", loss="cross_entropy",
                             device="cpu", seed=None)

    kw = dict(batch_size=8, epochs=3, verbose=0)
    full = trainer()
    full.fit(X, Y, **kw)
    path = str(tmp_path / "c.pt")
    trainer().fit(X, Y, callbacks=[ModelCheckpoint(path, save_freq=11), StopAfter(11)], **kw)
    fresh = trainer()
    state = load_checkpoint(path)
    assert not torch.equal(state["model"]["1.weight"], state["train_model"]["1.weight"])
    fresh.load_checkpoint(path)
    assert fresh.optimizer.param_groups[0]["train_mode"] is True
    assert torch.equal(fresh.module[1].weight, state["train_model"]["1.weight"])
    fresh.fit(X, Y, initial_epoch=fresh.epoch, **kw)
    _assert_identical(full, fresh)


def test_in_process_continuation_after_a_mid_epoch_stop():
    full = _trainer(None)
    full.fit(X, Y, batch_size=8, epochs=2, verbose=0, augment=AUG)
    t = _trainer(None)
    t.fit(X, Y, batch_size=8, epochs=2, verbose=0, augment=AUG, callbacks=[StopAfter(5)])
    assert (t.epoch, t._position["batch"]) == (0, 5)
    t.fit(X, Y, batch_size=8, epochs=2, verbose=0, augment=AUG, initial_epoch=t.epoch)
    _assert_identical(full, t)


def test_a_fresh_start_is_not_a_continuation(tmp_path):
    """The tests above can fail: an initial_epoch other than the position's starts over
    (a new seed, no skipping), as Keras's fit does."""
    full = _trainer(None)
    full.fit(X, Y, batch_size=8, epochs=2, verbose=0)
    t = _trainer(None)
    t.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[StopAfter(11)])
    assert (t.epoch, t._position["batch"]) == (1, 3)
    h = t.fit(X, Y, batch_size=8, epochs=2, verbose=0, initial_epoch=0)
    assert h.epoch == [0, 1] and t.global_step == 11 + 16
    assert not torch.equal(full.module[0].weight, t.module[0].weight)


def test_checkpoint_holds_plain_data_and_callback_states(tmp_path):
    path = str(tmp_path / "c.pt")
    t = _trainer(None)
    es = EarlyStopping(monitor="loss", patience=5)
    t.fit(X, Y, batch_size=8, epochs=2, verbose=0,
          callbacks=[es, ModelCheckpoint(path, save_freq=11)])
    state = torch.load(path, weights_only=True)  # plain data only
    pos = state["position"]
    assert (pos["epoch"], pos["batch"], pos["pass"], pos["drawn"], pos["batches"]) == (1, 3, 1, 3, 8)
    assert isinstance(pos["seed"], int)
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert state["callbacks"]["EarlyStopping"]["wait"] == 0
    assert state["callbacks"]["EarlyStopping"]["best"] == es.best or es.best_epoch >= 1
    assert state["callbacks"]["ModelCheckpoint"] == {"best": None, "since_save": 0}
    assert state["callbacks"]["History"]["epoch"] == [0]
    # EarlyStopping's count continues in the resumed fit (not reset by on_train_begin)
    es2 = EarlyStopping(monitor="loss", patience=5)
    t2 = _trainer(None)
    t2.load_checkpoint(path)
    seen = {}

    class Peek(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.setdefault("best", es2.best)

    t2.fit(X, Y, batch_size=8, epochs=2, verbose=0, initial_epoch=1, callbacks=[es2, Peek()])
    assert seen["best"] == state["callbacks"]["EarlyStopping"]["best"] is not None


def test_old_checkpoints_without_the_new_keys_still_load(tmp_path):
    t = _trainer(0)
    t.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    state = t.state_dict()
    for k in ("position", "callbacks", "grads"):
        state.pop(k, None)
    del state["rng"]["numpy"], state["rng"]["python"]
    t2 = _trainer(0)
    t2.load_state_dict(state)
    assert torch.equal(t2.module[0].weight, t.module[0].weight)


@pytest.mark.parametrize(("key", "value", "match"), [
    ("position", {"epoch": 1, "batch": -1, "pass": 0, "drawn": 0}, "position\\['batch'\\]"),
    ("position", [1, 2], "'position' must be a dict"),
    ("callbacks", {"EarlyStopping": 3}, "'callbacks'"),
    ("grads", {"nope": torch.zeros(1)}, "'grads'"),
])
def test_bad_new_keys_are_refused_before_anything_changes(key, value, match):
    t = _trainer(0)
    t.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    state = t.state_dict()
    state[key] = value
    before = t.module[0].weight.clone()
    t.module[0].weight.data.add_(1.0)
    with pytest.raises(ValueError, match=match):
        t.load_state_dict(state)
    assert torch.equal(t.module[0].weight, before + 1.0)


@pytest.mark.parametrize("names", [True, False], ids=["with-names", "older-checkpoint"])
def test_optimizer_state_of_other_shapes_is_refused_not_handed_to_a_fused_kernel(names):
    # torch's Optimizer.load_state_dict maps by position and checks no shape; the fused Adam
    # kernel then reads and writes past a smaller buffer (heap corruption, seen as a crash)
    t = _trainer(0)
    t.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    state = t.state_dict()
    if not names:
        del state["optimizer_params"]
    st = state["optimizer"]["state"]
    st[0], st[1] = st[1], st[0]  # the conv weight's moments given to its bias, and back
    before = t.module[0].weight.clone()
    with pytest.raises(ValueError, match=r"state: optimizer state 'exp_avg' is \(4,\) for a "
                                         r"weight of \(4, 1, 3, 3\)"):
        t.load_state_dict(state)
    assert torch.equal(t.module[0].weight, before)
    for bad in ("x", [["0.weight"]], [[0, 1, 2, 3]]):
        state["optimizer_params"] = bad
        with pytest.raises(ValueError, match="'optimizer_params' does not list the optimizer's "):
            t.load_state_dict(state)
    state["optimizer_params"] = [["0.weight", "nope", "4.weight", "4.bias"]]
    with pytest.raises(ValueError, match=r"the optimizer state is for other weights \(not in it: "
                                         r"\['0.bias'\]\)"):
        t.load_state_dict(state)


def test_resume_with_other_data_is_a_clear_error(tmp_path):
    path = str(tmp_path / "c.pt")
    t = _trainer(0)
    t.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[ModelCheckpoint(path, save_freq=7)])
    t2 = _trainer(0)
    t2.load_checkpoint(path)
    with pytest.raises(ValueError, match="initial_epoch"):
        t2.fit(X, Y, batch_size=16, epochs=2, verbose=0, initial_epoch=1)


def test_a_run_split_over_two_fit_calls_equals_one_with_a_keras_schedule():
    # The schedule follows the optimizer's steps over the whole run (Keras: iterations), so
    # fit(epochs=2) then fit(epochs=4, initial_epoch=2) is fit(epochs=4), bit for bit.
    def model():
        torch.manual_seed(0)
        m = brisk.Sequential([brisk.layers.Input((1, 8, 8)), brisk.layers.Flatten(),
                              brisk.layers.Dense(8, activation="relu"), brisk.layers.Dense(3)])
        decay = brisk.optimizers.schedules.CosineDecay(0.1, decay_steps=32)
        m.compile(optimizer=brisk.optimizers.SGD(learning_rate=decay, momentum=0.9),
                  loss=brisk.losses.SparseCategoricalCrossentropy(from_logits=True), seed=3)
        return m

    one = model()
    one.fit(X.numpy(), Y.numpy(), batch_size=8, epochs=4, verbose=0)
    two = model()
    two.fit(X.numpy(), Y.numpy(), batch_size=8, epochs=2, verbose=0)
    two.fit(X.numpy(), Y.numpy(), batch_size=8, epochs=4, initial_epoch=2, verbose=0)
    _assert_identical(one.trainer, two.trainer)
    assert two.trainer.optimizer.param_groups[0]["lr"] == pytest.approx(
        0.1 * 0.5 * (1 + np.cos(np.pi * 31 / 32)))


# ---------------------------------------------------------------- BackupAndRestore
XS = (torch.arange(100, dtype=torch.float32).reshape(5, 20) / 100).numpy()
YS = np.zeros(5, "float32")


def _model():
    torch.manual_seed(0)
    m = brisk.Sequential([brisk.layers.Input((20,)), brisk.layers.Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    return m


class Interrupt(Callback):
    def __init__(self, epoch, batch=None):
        self.e, self.b = epoch, batch

    def on_epoch_begin(self, epoch, logs=None):
        self.cur = epoch
        if epoch == self.e and self.b is None:
            raise RuntimeError("interrupt")

    def on_train_batch_begin(self, batch, logs=None):
        if self.b is not None and self.cur == self.e and batch == self.b:
            raise RuntimeError("interrupt")


class Seen(Callback):
    def on_train_begin(self, logs=None):
        self.epochs, self.batches = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self.batches.append((self.epochs[-1], batch))


# Keras 3.15.1, torch backend (tools/keras_oracle/backup_and_restore.py): interrupted at the
# start of epoch 4 of 10, the next fit with the same BackupAndRestore runs epochs 4..9,
# history.epoch == [4, ..., 9] (6 losses), and the backup folder is gone after it ends.
# With save_freq=2 and 5 batches an epoch, interrupted at epoch 2 batch 3, Keras runs epochs
# 2..9 and restarts epoch 2 at batch 0; brisk skips the 2 batches the backup holds.
@pytest.mark.parametrize(("save_freq", "cut", "epochs_run", "first_batch"), [
    ("epoch", dict(epoch=4), [4, 5, 6, 7, 8, 9], (4, 0)),
    (2, dict(epoch=2, batch=3), [2, 3, 4, 5, 6, 7, 8, 9], (2, 2)),
])
def test_backup_and_restore_keras_semantics(tmp_path, save_freq, cut, epochs_run, first_batch):
    bdir = str(tmp_path / "backup")
    full = _model()
    full.fit(XS, YS, epochs=10, batch_size=1, verbose=0)
    m = _model()
    with pytest.raises(RuntimeError, match="interrupt"):
        m.fit(XS, YS, epochs=10, batch_size=1, verbose=0,
              callbacks=[BackupAndRestore(bdir, save_freq=save_freq), Interrupt(**cut)])
    assert "latest.pt" in os.listdir(bdir)
    seen = Seen()
    m2 = _model()
    h = m2.fit(XS, YS, epochs=10, batch_size=1, verbose=0,
               callbacks=[BackupAndRestore(bdir, save_freq=save_freq), seen])
    assert seen.epochs == epochs_run
    assert h.epoch == epochs_run and len(h.history["loss"]) == len(epochs_run)
    assert seen.batches[0] == first_batch
    assert not os.path.exists(bdir)  # delete_checkpoint=True: removed after a clean finish
    for a, b in zip(full.get_weights(), m2.get_weights(), strict=True):
        assert np.array_equal(a, b)  # and brisk's resume is exact


class InterruptAtEpochEnd(Callback):
    """Raises in on_epoch_end of `epoch`: after the callbacks before it (CSVLogger) wrote
    that epoch, before BackupAndRestore (which fit runs last) backed it up."""

    def __init__(self, epoch):
        self.e = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.e:
            raise RuntimeError("interrupt")


@pytest.mark.parametrize("append", [False, True])
@pytest.mark.parametrize("cut", [Interrupt(epoch=4), InterruptAtEpochEnd(4), Interrupt(2, 3)],
                         ids=["epoch-begin", "after-csv-row", "mid-epoch"])
def test_csv_logger_continues_after_a_restore_one_header_no_repeated_rows(tmp_path, append, cut):
    prior = "from,an,earlier,run\n" if append else ""
    ref, out = tmp_path / "ref.csv", tmp_path / "out.csv"
    ref.write_text(prior)
    out.write_text(prior)
    _model().fit(XS, YS, epochs=10, batch_size=1, verbose=0,
                 callbacks=[brisk.callbacks.CSVLogger(ref, append=append)])
    bdir = str(tmp_path / "backup")
    save_freq = 2 if isinstance(cut, Interrupt) and cut.b is not None else "epoch"
    with pytest.raises(RuntimeError, match="interrupt"):
        _model().fit(XS, YS, epochs=10, batch_size=1, verbose=0, callbacks=[
            brisk.callbacks.CSVLogger(out, append=append), cut,
            BackupAndRestore(bdir, save_freq=save_freq)])
    lines = out.read_text().splitlines()
    assert lines[-1].startswith("4,") if isinstance(cut, InterruptAtEpochEnd) else True
    _model().fit(XS, YS, epochs=10, batch_size=1, verbose=0, callbacks=[
        brisk.callbacks.CSVLogger(out, append=append), BackupAndRestore(bdir, save_freq=save_freq)])
    # byte for byte the uninterrupted run's file: one header, epochs 0..9 once each
    assert out.read_text() == ref.read_text()
    rows = ref.read_text().splitlines()
    assert rows[:len(prior.splitlines())] == prior.splitlines()
    body = rows[len(prior.splitlines()):]
    assert body[0].startswith("epoch,") == (not append) and len(body) == 10 + (not append)
    assert [r.split(",")[0] for r in body[1 - append:]] == [str(e) for e in range(10)]


def test_gradual_pruning_run_resumes_exactly_in_a_fresh_unpruned_model(tmp_path):
    from brisk.compress import GradualPruning, sparsity_report

    def model():
        torch.manual_seed(0)
        m = brisk.Sequential([brisk.layers.Input((1, 8, 8)), brisk.layers.Flatten(),
                              brisk.layers.Dense(16, activation="relu"), brisk.layers.Dense(3)])
        m.compile(optimizer=brisk.optimizers.SGD(0.05, momentum=0.9),
                  loss=brisk.losses.SparseCategoricalCrossentropy(from_logits=True), seed=1)
        return m

    def callbacks(*extra):
        return [GradualPruning(0.75, begin_step=4, end_step=30, frequency=4), *extra,
                BackupAndRestore(str(tmp_path / "b"), save_freq=3)]

    kw = dict(batch_size=8, epochs=6, verbose=0)
    full = model()
    full.fit(X.numpy(), Y.numpy(), callbacks=callbacks(), **kw)
    with pytest.raises(RuntimeError, match="interrupt"):
        model().fit(X.numpy(), Y.numpy(), callbacks=callbacks(Interrupt(3, 5)), **kw)
    assert "weight_mask" in str(load_checkpoint(str(tmp_path / "b" / "latest.pt"))["model"].keys())
    again = model()  # a new process: a plain model, pruned by nothing yet
    h = again.fit(X.numpy(), Y.numpy(), callbacks=callbacks(), **kw)
    _assert_identical(full.trainer, again.trainer)  # masks, weights, momentum
    assert h.history["sparsity"][-1] == 0.75
    assert sparsity_report(again) == sparsity_report(full)
    # the masked weights are current right after fit and after a load, not at the next
    # forward (torch's prune hook): get_weights and sparsity_report read them (review find)
    lin = full.layers[1].linear
    eff = (lin.weight_orig * lin.weight_mask).detach().numpy().T
    assert np.array_equal(full.get_weights()[0], eff)
    full.trainer.save_checkpoint(tmp_path / "p.pt")
    fresh = model()
    fresh.trainer.load_checkpoint(tmp_path / "p.pt")
    assert sparsity_report(fresh) == sparsity_report(full)
    assert np.array_equal(fresh.get_weights()[0], eff)


def test_backup_kept_with_delete_checkpoint_false_and_early_stopping_deletes(tmp_path):
    bdir = str(tmp_path / "backup")
    # Keras 3.15.1: EarlyStopping ends fit normally, so the backup is deleted
    h = _model().fit(XS, YS, epochs=10, batch_size=1, verbose=0, callbacks=[
        BackupAndRestore(bdir), EarlyStopping(monitor="loss", patience=0, min_delta=10.0)])
    assert len(h.history["loss"]) == 2 and not os.path.exists(bdir)
    # Keras 3.15.1: delete_checkpoint=False keeps it; a second fit(epochs=3) runs 0 epochs
    _model().fit(XS, YS, epochs=3, batch_size=1, verbose=0,
                 callbacks=[BackupAndRestore(bdir, delete_checkpoint=False)])
    assert "latest.pt" in os.listdir(bdir)
    h = _model().fit(XS, YS, epochs=3, batch_size=1, verbose=0,
                     callbacks=[BackupAndRestore(bdir, delete_checkpoint=False)])
    assert h.history.get("loss", []) == []


def test_a_latest_backup_that_fails_to_load_falls_back_to_the_previous(tmp_path):
    bdir = str(tmp_path / "backup")
    with pytest.raises(RuntimeError):
        _model().fit(XS, YS, epochs=10, batch_size=1, verbose=0,
                     callbacks=[BackupAndRestore(bdir), Interrupt(epoch=4)])
    assert sorted(os.listdir(bdir)) == ["latest.pt", "previous.pt"]
    assert load_checkpoint(os.path.join(bdir, "previous.pt"))["position"]["epoch"] == 3
    with open(os.path.join(bdir, "latest.pt"), "r+b") as f:
        f.truncate(100)
    seen = Seen()
    with pytest.warns(UserWarning, match="previous backup"):
        _model().fit(XS, YS, epochs=10, batch_size=1, verbose=0,
                     callbacks=[BackupAndRestore(bdir), seen])
    assert seen.epochs[0] == 3
    # both unreadable: a clear error naming the folder
    os.makedirs(bdir)
    for name in ("latest.pt", "previous.pt"):
        with open(os.path.join(bdir, name), "wb") as f:
            f.write(b"junk")
    with pytest.raises(ValueError, match="backup_dir"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _model().fit(XS, YS, epochs=2, batch_size=1, verbose=0, callbacks=[BackupAndRestore(bdir)])


def test_a_nan_run_keeps_its_last_good_backup(tmp_path):
    bdir = str(tmp_path / "backup")

    class Poison(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                with torch.no_grad():
                    for p in self.model.parameters():
                        p.fill_(float("nan"))

    with pytest.warns(UserWarning, match="training stops"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="BackupAndRestore")
        h = _model().fit(XS, YS, epochs=10, batch_size=1, verbose=0,
                         callbacks=[Poison(), BackupAndRestore(bdir, save_freq=1)])
    assert len(h.history["loss"]) == 3
    state = load_checkpoint(os.path.join(bdir, "latest.pt"))
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    # the last good backup: after the 5th (last) batch of epoch 2 (index 1)
    assert (state["position"]["epoch"], state["position"]["batch"]) == (1, 5)


def test_backup_and_restore_bad_arguments():
    with pytest.raises(TypeError, match="backup_dir"):
        BackupAndRestore("")
    with pytest.raises(ValueError, match="save_freq"):
        BackupAndRestore("b", save_freq=0)
    with pytest.raises(ValueError, match="save_freq"):
        BackupAndRestore("b", save_freq="batch")
    with pytest.raises(TypeError, match="delete_checkpoint"):
        BackupAndRestore("b", delete_checkpoint="yes")


# ---------------------------------------------------------------- kill -9
_SCRIPT = textwrap.dedent("""
    import sys, torch, numpy as np
    torch.set_num_threads(1)
    import brisk
    from torch import nn
    torch.manual_seed(0)  # the weights and fit's seed draw (seed=None) of the first run
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(1024, 1, 8, 8, generator=g), torch.randint(0, 3, (1024,), generator=g)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Dropout(0.2),
                        nn.Linear(8 * 6 * 6, 3))
    t = brisk.Trainer(net, optimizer="adam", loss="cross_entropy", schedule="cosine",
                      device="cpu")
    aug = brisk.augment.compose(brisk.augment.RandomCrop(padding=1), brisk.augment.FlipLR())
    cbs = [brisk.callbacks.BackupAndRestore(sys.argv[1], save_freq=5)] if sys.argv[1] else []
    source = torch.utils.data.TensorDataset(x, y) if sys.argv[3] == "dataset" else x
    go = brisk.callbacks.LambdaCallback(  # tells the test that training batches are running
        on_train_begin=lambda logs: print("training", flush=True))
    cbs.append(go)
    t.fit(source, None if sys.argv[3] == "dataset" else y, batch_size=16, epochs=3,
          verbose=0, augment=aug, callbacks=cbs)
    torch.save(net.state_dict(), sys.argv[2])
""")


@pytest.mark.slow  # ~40 s of processes; in CI, not in the mutation runs
def test_sigkill_at_random_moments_then_resume_is_exact(tmp_path):
    """A Dataset input with augmentation (arrays are covered in-process above)."""
    source = "dataset"
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, str(script)]
    ref = tmp_path / "ref.pt"
    p = subprocess.Popen([*run, "", str(ref), source], env=env, stdout=subprocess.PIPE)
    p.stdout.readline()  # "training": imports and fit's set-up (~3 s) are done
    t0 = time.perf_counter()
    assert p.wait(timeout=300) == 0
    length = time.perf_counter() - t0  # training alone, without backups
    bdir, out = tmp_path / "backup", tmp_path / "out.pt"
    rng = random.Random(source)
    procs, kills = [], 0

    def backup():  # during a write latest.pt is renamed to previous.pt, then rewritten
        return (bdir / "latest.pt").exists() or (bdir / "previous.pt").exists()

    try:
        for _ in range(20):  # 6 kills; a run that ends first is simply run again
            if kills == 6:
                break
            p = subprocess.Popen([*run, str(bdir), str(out), source], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            procs.append(p)
            p.stdout.readline()
            # every kill resumes from a backup: on a slow or busy machine the first backup
            # (after batch 5) can come later than the random moment, so wait for it first
            deadline = time.monotonic() + 120
            while not backup() and p.poll() is None:
                assert time.monotonic() < deadline, "no backup was written in 120 s"
                time.sleep(0.01)
            # mid-epoch, often during a write (a backup every 5 of the 192 batches)
            time.sleep(rng.uniform(0.02, 0.15) * length)
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=120)
                # no backup left: this run (resumed late) had finished training and deleted
                # it, and was killed on its way out; the next run starts over. Not a kill
                # mid-training, so not counted.
                kills += backup()
            p.wait(timeout=120)
        subprocess.run([*run, str(bdir), str(out), source], check=True, env=env, timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert kills == 6  # killed mid-training, each time with a backup to resume
    a, b = torch.load(ref, weights_only=True), torch.load(out, weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not os.path.exists(bdir)  # finished normally: the backup is deleted
    assert not glob.glob(str(tmp_path / "**" / "*.brisk-tmp"), recursive=True)


class MeanLabel(brisk.metrics.Metric):
    """A Keras-style metric (update_state/result): its state tensors hold the epoch (the
    mean label differs batch to batch; the outputs' probabilities always sum to 1)."""

    name = "mean_label"

    def __init__(self):
        super().__init__()
        self.total = self.add_weight(name="total")
        self.count = self.add_weight(name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total += y_true.float().sum()
        self.count += y_true.numel()

    def result(self):
        return self.total / self.count


def test_a_keras_style_metric_resumes_mid_epoch_with_its_state():
    """A fresh trainer loading a mid-epoch checkpoint ends the epoch with the same value
    of a Keras-style metric as the uninterrupted run: its state is part of the position."""
    def make():
        torch.manual_seed(0)
        return brisk.Trainer(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), optimizer="sgd",
                             loss="cross_entropy", metrics=[MeanLabel()], device="cpu", seed=1)

    full = make()
    h_full = full.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    t = make()
    t.fit(X, Y, batch_size=8, epochs=1, verbose=0, callbacks=[StopAfter(3)])
    u = make()
    u.load_state_dict(t.state_dict())
    h = u.fit(X, Y, batch_size=8, epochs=1, verbose=0, initial_epoch=u.epoch)
    assert h.history["mean_label"] == pytest.approx(h_full.history["mean_label"], rel=1e-6)
    assert h.history["loss"] == pytest.approx(h_full.history["loss"], rel=1e-6)
