"""Exact tests of ``Trainer.fit``'s position (where training stands: epoch, batch, data pass,
batches drawn, seed, batches per epoch) and of a mid-epoch resume, with uneven sizes (7
samples in batches of 2: 4 batches, the last of 1 sample) so that an off-by-one in the
skip/drawn/take arithmetic changes the positions, the batches trained or the weights.

Expected positions are written out by hand from the documented meaning of each entry;
expected weights and losses come from an uninterrupted run. Also: fit's refusals in full,
the callbacks' order around ``History``, ``on_nan='restore'`` from the first epoch, and the
wiring of the thread policy, the precision decision and the compiled path's full batches.

Every object is built inside its test (mutmut switches a mutant on only while a test runs).
"""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import brisk
from brisk.callbacks import BackupAndRestore, Callback, EarlyStopping, ReduceLROnPlateau
from brisk.data.loader import DeviceLoader
from brisk.engine.checkpoint import load_checkpoint, save_checkpoint

BS = 2  # 7 samples: batches of 2, 2, 2, 1
N_BATCHES = 4


def _data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(7, 3, generator=g), torch.randn(7, 2, generator=g)


def _trainer(seed=1, init=0, **kw):
    """Linear(3, 2), SGD with momentum (its buffers are part of what must match)."""
    torch.manual_seed(init)
    net = nn.Linear(3, 2)
    kw.setdefault("optimizer", brisk.optimizers.SGD(0.1, momentum=0.9))
    return brisk.Trainer(net, loss="mse", device="cpu", seed=seed, **kw)


def _pos(epoch, batch, pass_, drawn, seed, batches=N_BATCHES):
    return {"epoch": epoch, "batch": batch, "pass": pass_, "drawn": drawn, "seed": seed,
            "batches": batches}


def _position(trainer):
    return {k: v for k, v in trainer.state_dict()["position"].items() if k != "stats"}


class Trace(Callback):
    """The trainer's saved position at each batch begin and end and at each epoch end."""

    def __init__(self):
        self.rows = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rows.append(("begin", batch, _position(self.trainer)))

    def on_train_batch_end(self, batch, logs=None):
        self.rows.append(("end", batch, _position(self.trainer)))

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append(("epoch_end", epoch, _position(self.trainer)))


def _plain_trace(seed, epochs=3, first=0):
    """Hand-made: the rows of ``Trace`` for epochs of 4 batches without steps_per_epoch."""
    rows = []
    for e in range(first, epochs):
        for i in range(N_BATCHES):
            rows.append(("begin", i, _pos(e, i, e, i, seed)))
            rows.append(("end", i, _pos(e, i + 1, e, i + 1, seed)))
        rows.append(("epoch_end", e, _pos(e + 1, 0, e + 1, 0, seed)))
    return rows


class SaveAt(Callback):
    """After the k-th training batch of the fit: ``trainer.save_checkpoint``, then stop."""

    def __init__(self, path, k, stop=True):
        self.path, self.k, self.n, self.stop = path, k, 0, stop

    def on_train_batch_end(self, batch, logs=None):
        self.n += 1
        if self.n == self.k:
            self.trainer.save_checkpoint(self.path)
            if self.stop:
                self.trainer.stop_training = True


class StopAfter(Callback):
    def __init__(self, k):
        self.k, self.n = k, 0

    def on_train_batch_end(self, batch, logs=None):
        self.n += 1
        if self.n == self.k:
            self.trainer.stop_training = True


class Interrupt(Callback):
    """Raises before the k-th training batch of the fit (a crash mid-epoch)."""

    def __init__(self, k):
        self.k, self.n = k, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.n += 1
        if self.n == self.k:
            raise RuntimeError("interrupt")


def _assert_same_training_state(a, b):
    """Weights, momentum buffers and step, bit for bit."""
    for (n, p), (_, q) in zip(a.module.named_parameters(), b.module.named_parameters(),
                              strict=True):
        assert torch.equal(p, q), n
        assert torch.equal(a.optimizer.state[p]["momentum_buffer"],
                           b.optimizer.state[q]["momentum_buffer"]), n
    assert a.global_step == b.global_step


def _fresh_process_like(trainer_seed, init=5):
    """A trainer as a new process would have it: other weights, other global RNG states."""
    t = _trainer(trainer_seed, init=init)
    torch.manual_seed(1234)
    np.random.seed(4321)
    random.seed(99)
    return t


# --- the position during an uninterrupted fit ------------------------------------------


def test_positions_of_an_uninterrupted_fit_batch_by_batch():
    """Every batch begin/end and epoch end: (epoch, batches trained in it, pass, drawn)."""
    x, y = _data()
    t = _trainer(1)
    trace = Trace()
    t.fit(x, y, batch_size=BS, epochs=3, verbose=0, callbacks=[trace])
    assert trace.rows == _plain_trace(1)
    assert _position(t) == _pos(3, 0, 3, 0, 1)
    assert t.stop_training is False and t.stopped_for_nan is False


# --- a mid-epoch checkpoint resumed in a fresh trainer ---------------------------------


@pytest.mark.parametrize("seed", [1, None], ids=["seeded", "drawn-seed"])
def test_a_checkpoint_after_batch_3_of_epoch_2_resumes_exactly(tmp_path, seed):
    """Saved after 3 of the 4 batches of epoch 2 (index 1): the checkpoint's position, then
    the resumed fit's positions, history, weights and momentum equal the uninterrupted
    run's from there on."""
    x, y = _data()
    kw = dict(batch_size=BS, epochs=3, verbose=0)
    full = _trainer(seed)
    trace_full = Trace()
    h_full = full.fit(x, y, callbacks=[trace_full], **kw)
    s = _position(full)["seed"]
    assert trace_full.rows == _plain_trace(s)

    path = str(tmp_path / "c.pt")
    _trainer(seed).fit(x, y, callbacks=[SaveAt(path, 7)], **kw)
    state = load_checkpoint(path)
    assert {k: v for k, v in state["position"].items() if k != "stats"} == _pos(1, 3, 1, 3, s)
    assert state["epoch"] == 1 and state["global_step"] == 7

    fresh = _fresh_process_like(seed)
    fresh.load_checkpoint(path)
    trace = Trace()
    h = fresh.fit(x, y, initial_epoch=fresh.epoch, callbacks=[trace], **kw)
    # resumes at batch 3 of epoch 1: the 4th batch, then epoch 2
    assert trace.rows == trace_full.rows[2 * N_BATCHES + 1 + 6:]
    assert trace.rows[0] == ("begin", 3, _pos(1, 3, 1, 3, s))
    assert h.epoch == [1, 2]
    assert h.history["loss"] == h_full.history["loss"][1:]
    _assert_same_training_state(full, fresh)
    assert _position(fresh) == _position(full) == _pos(3, 0, 3, 0, s)


def test_a_checkpoint_after_the_last_batch_resumes_at_that_epoch_or_the_next(tmp_path):
    """Saved after the 4th (last) batch of epoch 2: fit(initial_epoch=1) has nothing left of
    epoch 1 to train (its logged loss is the saved epoch's), fit(initial_epoch=2) starts
    epoch 2; both end as the uninterrupted run."""
    x, y = _data()
    kw = dict(batch_size=BS, epochs=3, verbose=0)
    full = _trainer(1)
    h_full = full.fit(x, y, **kw)
    path = str(tmp_path / "c.pt")
    _trainer(1).fit(x, y, callbacks=[SaveAt(path, 8)], **kw)
    state = load_checkpoint(path)
    assert {k: v for k, v in state["position"].items() if k != "stats"} == _pos(1, 4, 1, 4, 1)

    same = _fresh_process_like(1)
    same.load_checkpoint(path)
    trace = Trace()
    h = same.fit(x, y, initial_epoch=1, callbacks=[trace], **kw)
    assert trace.rows == [("epoch_end", 1, _pos(2, 0, 2, 0, 1))] + _plain_trace(1, first=2)
    assert h.history["loss"] == h_full.history["loss"][1:]
    _assert_same_training_state(full, same)

    nxt = _fresh_process_like(1)
    nxt.load_checkpoint(path)
    trace = Trace()
    h = nxt.fit(x, y, initial_epoch=2, callbacks=[trace], **kw)
    assert trace.rows == _plain_trace(1, first=2)
    assert h.history["loss"] == h_full.history["loss"][2:]
    _assert_same_training_state(full, nxt)


def test_a_resume_that_ends_with_the_resumed_epoch_leaves_the_next_epoch_position(tmp_path):
    """epochs=2 and a checkpoint inside epoch 2: the fit ends right after the resumed
    epoch, at the position of the uninterrupted run (epoch 2, batch 0, pass 2)."""
    x, y = _data()
    kw = dict(batch_size=BS, epochs=2, verbose=0)
    full = _trainer(1)
    full.fit(x, y, **kw)
    path = str(tmp_path / "c.pt")
    _trainer(1).fit(x, y, callbacks=[SaveAt(path, 6)], **kw)
    fresh = _fresh_process_like(1)
    fresh.load_checkpoint(path)
    trace = Trace()
    fresh.fit(x, y, initial_epoch=1, callbacks=[trace], **kw)
    assert trace.rows == _plain_trace(1, epochs=2)[-5:]
    assert _position(fresh) == _pos(2, 0, 2, 0, 1)
    _assert_same_training_state(full, fresh)


def _steps_trace(seed):
    """Hand-made rows of ``Trace`` for steps_per_epoch=3 over 4 batches a pass: epoch 0 =
    batches 0-2 of pass 0, epoch 1 = its batch 3 (the data runs out), epoch 2 = batches
    0-2 of pass 1."""
    rows = []
    for i in range(3):
        rows += [("begin", i, _pos(0, i, 0, i, seed)), ("end", i, _pos(0, i + 1, 0, i + 1, seed))]
    rows.append(("epoch_end", 0, _pos(1, 0, 0, 3, seed)))
    rows += [("begin", 0, _pos(1, 0, 0, 3, seed)), ("end", 0, _pos(1, 1, 0, 4, seed)),
             ("epoch_end", 1, _pos(2, 0, 1, 0, seed))]
    for i in range(3):
        rows += [("begin", i, _pos(2, i, 1, i, seed)), ("end", i, _pos(2, i + 1, 1, i + 1, seed))]
    rows.append(("epoch_end", 2, _pos(3, 0, 1, 3, seed)))
    return rows


RAN_OUT = ("steps_per_epoch: the data ran out after 1 of 3 batches in epoch 2; the next "
           "epoch starts a new pass over the 4 batches")


def _fit_recording_warnings(t, *args, **kwargs):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        h = t.fit(*args, **kwargs)
    return h, [str(m.message) for m in w]


@pytest.mark.parametrize("k", [2, 4, 6], ids=["epoch-1", "after-the-pass-ran-out", "pass-2"])
def test_steps_per_epoch_positions_and_a_resume_inside_a_pass(tmp_path, k):
    """steps_per_epoch=3 over 4 batches: one pass spans two epochs. The positions by hand,
    and a checkpoint after k batches resumes with the same positions and weights."""
    x, y = _data()
    kw = dict(batch_size=BS, epochs=3, verbose=0, steps_per_epoch=3)
    full = _trainer(1)
    trace_full = Trace()
    h_full, said = _fit_recording_warnings(full, x, y, callbacks=[trace_full], **kw)
    assert trace_full.rows == _steps_trace(1)
    assert said == [RAN_OUT]
    path = str(tmp_path / "c.pt")
    _fit_recording_warnings(_trainer(1), x, y, callbacks=[SaveAt(path, k)], **kw)
    fresh = _fresh_process_like(1)
    fresh.load_checkpoint(path)
    first = fresh.epoch
    assert first == {2: 0, 4: 1, 6: 2}[k]
    trace = Trace()
    h, said = _fit_recording_warnings(fresh, x, y, initial_epoch=first, callbacks=[trace], **kw)
    ends = [i for i, r in enumerate(trace_full.rows) if r[0] == "end"]
    assert trace.rows == trace_full.rows[ends[k - 1] + 1:]
    assert said == ([RAN_OUT] if k < 6 else [])
    assert h.history["loss"] == h_full.history["loss"][first:]
    _assert_same_training_state(full, fresh)


def test_a_fresh_start_after_a_stopped_fit_resets_the_whole_position():
    """A fit stopped after batch 3 of epoch 2, then fit(initial_epoch=0): a fresh start,
    whose position from its first batch on is epoch 0, batch 0, pass 0, drawn 0."""
    x, y = _data()
    t = _trainer(1)
    t.fit(x, y, batch_size=BS, epochs=3, verbose=0, callbacks=[StopAfter(7)])
    assert _position(t) == _pos(1, 3, 1, 3, 1)
    trace = Trace()
    t.fit(x, y, batch_size=BS, epochs=1, verbose=0, callbacks=[trace])
    assert trace.rows == _plain_trace(1, epochs=1)


# --- refusals of a resume that does not fit ---------------------------------------------


def test_a_resume_with_other_batches_is_refused_with_the_full_message(tmp_path):
    """Saved after 2 batches of epoch 2 (of 4 batches): batches of 3 give 3 batches, and
    steps_per_epoch=1 is fewer than the 2 already trained; both refused before training."""
    x, y = _data()
    path = str(tmp_path / "c.pt")
    _trainer(1).fit(x, y, batch_size=BS, epochs=3, verbose=0, callbacks=[SaveAt(path, 6)])
    t = _trainer(1)
    t.load_checkpoint(path)
    before = t.module.weight.clone()
    with pytest.raises(ValueError) as e:
        t.fit(x, y, batch_size=3, epochs=3, verbose=0, initial_epoch=1)
    assert str(e.value) == ("initial_epoch: the checkpoint was taken after 2 batches of epoch 2 "
                            "of 4 batches, but this fit's data gives 3; resume with the same "
                            "data and batch_size")
    assert torch.equal(t.module.weight, before)
    u = _trainer(1)
    u.load_checkpoint(path)
    with pytest.raises(ValueError) as e:
        u.fit(x, y, batch_size=BS, epochs=3, verbose=0, initial_epoch=1, steps_per_epoch=1)
    assert str(e.value) == ("initial_epoch: the checkpoint was taken after 2 batches of epoch 2 "
                            "of 4 batches, but this fit's data gives 4; resume with the same "
                            "data and batch_size")
    assert torch.equal(u.module.weight, before)


def test_a_refused_resume_can_be_retried_with_the_right_batch_size(tmp_path):
    """After the refusal above, fit with the checkpoint's batch_size resumes it exactly."""
    x, y = _data()
    path = str(tmp_path / "c.pt")
    full = _trainer(1)
    full.fit(x, y, batch_size=BS, epochs=3, verbose=0)
    _trainer(1).fit(x, y, batch_size=BS, epochs=3, verbose=0, callbacks=[SaveAt(path, 6)])
    t = _trainer(1)
    t.load_checkpoint(path)
    with pytest.raises(ValueError):
        t.fit(x, y, batch_size=3, epochs=3, verbose=0, initial_epoch=1)
    assert _position(t) == _pos(1, 2, 1, 2, 1)  # as loaded
    t.fit(x, y, batch_size=BS, epochs=3, verbose=0, initial_epoch=1)
    _assert_same_training_state(full, t)


def test_an_in_process_continuation_after_a_resumed_epoch_logs_the_right_loss():
    """Resume a mid-epoch state, stop in the next epoch, continue in process: every
    epoch's logged loss is the uninterrupted run's."""
    x, y = _data()
    kw = dict(batch_size=BS, epochs=3, verbose=0)
    full = _trainer(1)
    h_full = full.fit(x, y, **kw)
    t = _trainer(1)
    t.fit(x, y, callbacks=[StopAfter(2)], **kw)
    u = _trainer(1)
    u.load_state_dict(t.state_dict())
    h1 = u.fit(x, y, initial_epoch=0, callbacks=[StopAfter(4)], **kw)  # to epoch 1, batch 2
    assert h1.history["loss"][0] == h_full.history["loss"][0]
    assert _position(u) == _pos(1, 2, 1, 2, 1)
    h2 = u.fit(x, y, initial_epoch=u.epoch, **kw)
    _assert_same_training_state(full, u)
    assert h2.history["loss"] == h_full.history["loss"][1:]


# --- BackupAndRestore: the continuation after a restore in on_train_begin --------------


def test_backup_and_restore_mid_epoch_with_a_drawn_seed_resumes_exactly(tmp_path):
    """seed=None and another global RNG in the resumed process (so another seed drawn at
    fit's start): the backup's seed orders the rest; positions, history and weights equal
    the uninterrupted run's from the backup (after 6 batches: epoch 2, batch 2) on."""
    x, y = _data()
    kw = dict(batch_size=BS, epochs=3, verbose=0)
    full = _trainer(None)
    trace_full = Trace()
    h_full = full.fit(x, y, callbacks=[trace_full], **kw)
    bdir = str(tmp_path / "b")
    with pytest.raises(RuntimeError) as e:
        _trainer(None).fit(x, y, callbacks=[BackupAndRestore(bdir, save_freq=3), Interrupt(8)],
                           **kw)
    assert str(e.value) == "interrupt"
    s = _position(full)["seed"]
    saved = load_checkpoint(os.path.join(bdir, "latest.pt"))["position"]
    assert {k: v for k, v in saved.items() if k != "stats"} == _pos(1, 2, 1, 2, s)
    t = _fresh_process_like(None)
    trace = Trace()
    h = t.fit(x, y, callbacks=[BackupAndRestore(bdir, save_freq=3), trace], **kw)
    assert trace.rows == trace_full.rows[2 * N_BATCHES + 1 + 4:]
    assert h.epoch == [1, 2] and h.history["loss"] == h_full.history["loss"][1:]
    _assert_same_training_state(full, t)
    assert not os.path.exists(bdir)


def test_backup_and_restore_leaves_a_users_device_loader_seed_alone(tmp_path):
    """A user's DeviceLoader orders its batches by its own seed (5), not by the trainer's
    seed the backup holds: the restored run keeps seed 5 and ends as the uninterrupted."""
    x, y = _data()
    kw = dict(epochs=3, verbose=0)
    full = _trainer(None)
    full.fit(DeviceLoader(x, y, batch_size=BS, seed=5), **kw)
    bdir = str(tmp_path / "b")
    with pytest.raises(RuntimeError):
        _trainer(None).fit(DeviceLoader(x, y, batch_size=BS, seed=5),
                           callbacks=[BackupAndRestore(bdir, save_freq=3), Interrupt(8)], **kw)
    loader = DeviceLoader(x, y, batch_size=BS, seed=5)
    t = _fresh_process_like(None)
    t.fit(loader, callbacks=[BackupAndRestore(bdir, save_freq=3)], **kw)
    assert loader.seed == 5
    _assert_same_training_state(full, t)


def test_backup_and_restore_leaves_a_users_distributed_sampler_seed_alone(tmp_path):
    """A user's DataLoader with its own DistributedSampler (seed 5, one replica) keeps its
    seed through a restore: the order is the sampler's, and the run ends as the
    uninterrupted one."""
    x, y = _data()
    ds = torch.utils.data.TensorDataset(x, y)

    def loader():
        sampler = torch.utils.data.DistributedSampler(ds, num_replicas=1, rank=0, seed=5)
        return torch.utils.data.DataLoader(ds, batch_size=BS, sampler=sampler)

    kw = dict(epochs=3, verbose=0)
    full = _trainer(None)
    full.fit(loader(), **kw)
    bdir = str(tmp_path / "b")
    with pytest.raises(RuntimeError):
        _trainer(None).fit(loader(), callbacks=[BackupAndRestore(bdir, save_freq=3),
                                                Interrupt(8)], **kw)
    resumed = loader()
    t = _fresh_process_like(None)
    t.fit(resumed, callbacks=[BackupAndRestore(bdir, save_freq=3)], **kw)
    assert resumed.sampler.seed == 5
    _assert_same_training_state(full, t)


def test_backup_and_restore_of_a_checkpoint_without_a_position_starts_its_epoch(tmp_path):
    """An older backup (no 'position'; epoch 1): fit goes on at epoch 1 from batch 0 of
    pass 1 with this fit's seed, as fit(initial_epoch=1) after loading it does."""
    x, y = _data()
    t0 = _trainer(1)
    t0.fit(x, y, batch_size=BS, epochs=1, verbose=0)
    state = t0.state_dict()
    del state["position"]
    state["epoch"] = 1
    bdir = tmp_path / "b"
    bdir.mkdir()
    save_checkpoint(str(bdir / "latest.pt"), state)
    ref = _trainer(1)
    ref.load_checkpoint(str(bdir / "latest.pt"))
    h_ref = ref.fit(x, y, batch_size=BS, epochs=3, verbose=0, initial_epoch=1)
    t = _trainer(1, init=5)
    trace = Trace()
    h = t.fit(x, y, batch_size=BS, epochs=3, verbose=0,
              callbacks=[BackupAndRestore(str(bdir)), trace])
    assert trace.rows == _plain_trace(1, first=1)
    assert h.epoch == [1, 2] and h.history["loss"] == h_ref.history["loss"]
    _assert_same_training_state(ref, t)


def test_a_backup_holds_the_history_of_the_epoch_it_ends(tmp_path):
    """BackupAndRestore runs after History, whatever the callbacks' order: the epoch-end
    backup of epoch 2 holds both epochs' history."""
    x, y = _data()
    bdir = str(tmp_path / "b")
    t = _trainer(1)
    h = t.fit(x, y, batch_size=BS, epochs=2, verbose=0,
              callbacks=[BackupAndRestore(bdir, delete_checkpoint=False), StopAfter(100)])
    saved = load_checkpoint(os.path.join(bdir, "latest.pt"))["callbacks"]["History"]
    assert saved == {"epoch": [0, 1], "history": {"loss": h.history["loss"]}}


def test_a_restored_callback_state_is_applied_once_then_reset_by_the_next_fit(tmp_path):
    """ReduceLROnPlateau's state from a checkpoint goes on in the resumed fit (not reset by
    its on_train_begin); the next fit starts it afresh, as Keras does."""
    x, y = _data()
    path = str(tmp_path / "c.pt")
    rlr = ReduceLROnPlateau(monitor="loss", patience=5)
    _trainer(1).fit(x, y, batch_size=BS, epochs=3, verbose=0,
                    callbacks=[rlr, SaveAt(path, 6)])
    saved = load_checkpoint(path)["callbacks"]["ReduceLROnPlateau"]
    assert saved["wait"] == 0 and np.isfinite(saved["best"])
    seen = []

    class Peek(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(again.best)

    again = ReduceLROnPlateau(monitor="loss", patience=5)
    t = _trainer(1)
    t.load_checkpoint(path)
    t.fit(x, y, batch_size=BS, epochs=2, verbose=0, initial_epoch=1, callbacks=[again, Peek()])
    assert seen == [saved["best"]]
    t.fit(x, y, batch_size=BS, epochs=1, verbose=0, callbacks=[again, Peek()])
    assert seen == [saved["best"], float("inf")]


# --- on_nan='restore' from the first epoch ----------------------------------------------


class PoisonOnce(Callback):
    """NaN weights at the start of epoch ``epoch``, once."""

    def __init__(self, epoch):
        self.epoch, self.done = epoch, False

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch and not self.done:
            self.done = True
            with torch.no_grad():
                self.trainer.module.weight.fill_(float("nan"))


class CountsStates(Callback):
    """A stateful callback that counts how often its state is taken."""

    def __init__(self):
        self.calls = 0

    def state_dict(self):
        self.calls += 1
        return {}

    def load_state_dict(self, state):
        pass


def test_on_nan_restore_in_the_first_epoch_goes_back_to_the_start_at_half_the_rate():
    """A NaN loss in epoch 1: back to the state fit started from, lr 0.25 -> 0.125; the run
    then equals one with lr 0.125 from the start."""
    x, y = _data()
    t = _trainer(1, optimizer=brisk.optimizers.SGD(0.25))
    counts = CountsStates()
    h, said = _fit_recording_warnings(t, x, y, batch_size=BS, epochs=2, verbose=0,
                                      on_nan="restore", callbacks=[PoisonOnce(0), counts])
    assert said == ["fit: the loss is nan in epoch 1; back to the start of training with half "
                    "the learning rate (on_nan='restore', 1 of 3)"]
    ref = _trainer(1, optimizer=brisk.optimizers.SGD(0.125))
    h_ref = ref.fit(x, y, batch_size=BS, epochs=2, verbose=0)
    assert torch.equal(t.module.weight, ref.module.weight)
    assert torch.equal(t.module.bias, ref.module.bias)
    assert t.global_step == ref.global_step == 8
    assert h.history["loss"] == h_ref.history["loss"]
    assert t.optimizer.param_groups[0]["lr"] == 0.125
    assert counts.calls == 4  # the start, again after the restore, each epoch's end


def test_without_on_nan_restore_no_copy_of_the_state_is_taken():
    """on_nan='stop' (and None) keep no per-epoch copy: a stateful callback's state is
    never asked for."""
    x, y = _data()
    for on_nan in ("stop", None):
        counts = CountsStates()
        _trainer(1).fit(x, y, batch_size=BS, epochs=2, verbose=0, on_nan=on_nan,
                        callbacks=[counts])
        assert counts.calls == 0, on_nan


# --- fit's refusals, in full -----------------------------------------------------------


def test_fit_argument_refusals_in_full():
    """on_nan, validation_batch_size, a loss that needs targets but has no name, a loader
    without a length, a schedule on top of a Keras schedule: each message in full."""
    x, y = _data()
    t = _trainer(1)
    with pytest.raises(ValueError) as e:
        t.fit(x, y, verbose=0, on_nan="skip")
    assert str(e.value) == "on_nan: expected 'stop', 'restore' or None, got 'skip'"
    with pytest.raises(ValueError) as e:
        t.fit(x, y, verbose=0, validation_batch_size=0)
    assert str(e.value) == "validation_batch_size: expected a positive integer, got 0"

    def dense_loss(out, target):
        return ((out - target) ** 2).mean()

    dense_loss.target = "dense"  # needs labels; a plain function has no .name
    torch.manual_seed(0)
    u = brisk.Trainer(nn.Linear(3, 2), optimizer="sgd", loss=dense_loss, device="cpu")
    with pytest.raises(ValueError) as e:
        u.fit(x, None, verbose=0)
    assert str(e.value) == ("y: the loss needs targets; got y=None (pass the labels, or a "
                            "Dataset that yields (x, y))")

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield from zip(x, y, strict=True)

    with pytest.raises(ValueError) as e:
        t.fit(torch.utils.data.DataLoader(Stream(), batch_size=2), verbose=0)
    assert str(e.value) == (
        "x: the loader has no length (an IterableDataset without __len__); fit needs the "
        "number of batches per epoch for schedules, accumulation and progress: give the "
        "dataset a __len__ or pass arrays, a map-style Dataset or a DeviceLoader")
    decay = brisk.optimizers.schedules.CosineDecay(0.1, decay_steps=8)
    k = _trainer(1, optimizer=brisk.optimizers.SGD(learning_rate=decay))
    with pytest.raises(ValueError) as e:
        k.fit(x, y, verbose=0, schedule="cosine")
    assert str(e.value) == ("schedule: the optimizer's learning_rate is already a schedule; "
                            "give one or the other")


def test_a_val_monitor_without_validation_data_is_an_error_whatever_validation_freq():
    """No validation data: a 'val_*' monitor is missing for good (an error at the first
    epoch's end), also with validation_freq=2, whose skipped epochs only excuse it when
    there is validation."""
    x, y = _data()
    with pytest.raises(ValueError) as e:
        _trainer(1).fit(x, y, batch_size=BS, epochs=1, verbose=0, validation_freq=2,
                        callbacks=[EarlyStopping(monitor="val_loss")])
    assert str(e.value) == ("monitor: 'val_loss' is not in the epoch logs (available: loss); "
                            "for 'val_*' pass validation_data or validation_split to fit")


# --- the dry run before training ---------------------------------------------------------


class Rows(nn.Linear):
    """Linear(3, 2) that records every input it gets."""

    def __init__(self):
        super().__init__(3, 2)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return super().forward(x)


def test_the_dry_run_sees_the_first_two_rows_of_arrays_or_a_dataset():
    """fit's shape check before training runs the model on the first 2 samples, in order
    (also for a shuffled Dataset)."""
    x, y = _data()
    # 6 rows: a loader shuffled with seed 0 would start with rows 5 and 1
    for data, sizes in (((x, y), [4, 3]),
                        ((torch.utils.data.TensorDataset(x[:6], y[:6]), None), [4, 2])):
        torch.manual_seed(0)
        net = Rows()
        brisk.Trainer(net, optimizer="sgd", loss="mse", device="cpu", seed=1).fit(
            *data, batch_size=4, epochs=1, verbose=0, shuffle=True)
        assert torch.equal(net.seen[0], x[:2])
        assert [len(s) for s in net.seen[1:]] == sizes  # then the two training batches


def test_token_ids_reach_an_embedding_as_integers_in_the_dry_run():
    """Integer token ids (a tensor) go to an embedding model unchanged, dry run included."""
    seen = []

    class Ids(nn.Embedding):
        def forward(self, x):
            seen.append(x.dtype)
            return super().forward(x)

    ids = torch.tensor([[0, 1], [2, 3], [4, 0], [1, 1], [3, 2], [0, 4], [2, 2]])
    _, y = _data()
    torch.manual_seed(0)
    net = nn.Sequential(Ids(5, 3), nn.Flatten(), nn.Linear(6, 2))
    h = brisk.Trainer(net, optimizer="sgd", loss="mse", device="cpu", seed=1).fit(
        ids, y, batch_size=4, epochs=1, verbose=0)
    assert seen == [torch.int64] * 3 and np.isfinite(h.history["loss"][0])


def _pending_precision(monkeypatch):
    """precision='auto' on a CPU that reports AMX: decided at the dry run."""
    from brisk.engine import precision as prec

    monkeypatch.setenv("BRISK_AUTO_PRECISION", "auto")
    monkeypatch.setattr(prec, "cpu_native_bf16", lambda: "AMX")
    monkeypatch.setattr(prec, "_ANNOUNCED", set())


def _fp32_reason(batch):
    """Linear(3, 2): 2 * 3 * 2 = 12 FLOPs per sample."""
    return (f"CPU has AMX, but the model's forward is 1.2e-05 MFLOP per sample, "
            f"{12 * batch / 1e6:.3g} MFLOP per batch of {batch}: under 32 MFLOP per batch, "
            "bf16 autocast's casts cost more than they save")


def test_precision_auto_is_decided_for_the_batch_size_of_fit_or_evaluate(monkeypatch, capsys):
    """'auto' still pending weighs the dry run's FLOPs times the batch_size given to fit
    (3) or evaluate (5); verbose=0 prints nothing, verbose=1 announces the choice."""
    _pending_precision(monkeypatch)
    x, y = _data()
    t = _trainer(1)
    assert t.precision.pending
    t.fit(x, y, batch_size=3, epochs=1, verbose=0)
    assert (t.precision.mode, t.precision.reason) == ("fp32", _fp32_reason(3))
    assert capsys.readouterr().out == ""
    u = _trainer(1)
    u.evaluate(x, y, batch_size=5)
    assert (u.precision.mode, u.precision.reason) == ("fp32", _fp32_reason(5))
    v = _trainer(1)
    v.fit(x, y, batch_size=6, epochs=1, verbose=2)
    assert f"precision: fp32 ({_fp32_reason(6)})\n" in capsys.readouterr().out


# --- compiled training: full batches -----------------------------------------------------


def test_compiled_training_on_arrays_drops_the_last_partial_batch(monkeypatch):
    """compile=True (torch.compile replaced by the identity here): 7 rows in batches of 2
    train 3 full batches an epoch; 2 rows, one full batch; 1 row (fewer than a batch),
    that one."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    x, y = _data()
    for rows, steps in ((7, 3), (2, 1), (1, 1)):
        t = _trainer(1, compile=True)
        t.fit(x[:rows], y[:rows], batch_size=BS, epochs=2, verbose=0)
        assert t.global_step == 2 * steps, rows


# --- the thread policy fit runs ----------------------------------------------------------


def _fake_threads(monkeypatch, now=6, cores=4):
    """torch's thread count faked (never really changed): returns the calls to set it."""
    from brisk.engine import threads as th

    calls, state = [], {"n": now}

    def set_num_threads(n):
        calls.append(n)
        state["n"] = n

    monkeypatch.setattr(torch, "set_num_threads", set_num_threads)
    monkeypatch.setattr(torch, "get_num_threads", lambda: state["n"])
    monkeypatch.setattr(th, "usable_cores", lambda: cores)
    return calls


def test_fit_uses_the_trainers_thread_count_and_restores_torchs(monkeypatch):
    """threads=3: set for the fit, torch's 6 back after it, nothing said."""
    calls = _fake_threads(monkeypatch)
    x, y = _data()
    t = _trainer(1, threads=3)
    t.fit(x, y, batch_size=BS, epochs=1, verbose=0)
    assert calls == [3, 6]
    assert t.thread_changes == []


def test_fit_caps_auto_threads_to_the_usable_cores_and_says_so_when_verbose(monkeypatch,
                                                                             capsys):
    """threads='auto': 6 threads on 4 usable cores -> 4, recorded; printed only when
    verbose."""
    calls = _fake_threads(monkeypatch)
    monkeypatch.setenv("BRISK_THREADS", "auto")
    x, y = _data()
    said = ("intra-op threads 6 -> 4: this process may use 4 cores (CPU affinity / cgroup "
            "quota)")
    t = _trainer(1)
    t.fit(x, y, batch_size=BS, epochs=1, verbose=0)
    assert calls == [4, 6] and t.thread_changes == [said]
    assert capsys.readouterr().out == ""
    t.fit(x, y, batch_size=BS, epochs=1, verbose=2)
    assert f"brisk: {said}\n" in capsys.readouterr().out


def test_only_adaptive_threads_time_each_step(monkeypatch):
    """threads='auto' gets each training step's wall time (4 batches: 4 times, >= 0);
    a fixed count (threads=1) gets none."""
    from brisk.engine import threads as th

    _fake_threads(monkeypatch)
    monkeypatch.setenv("BRISK_THREADS", "auto")
    times = []
    monkeypatch.setattr(th.ThreadPolicy, "observe", lambda self, s: times.append(s))
    x, y = _data()
    _trainer(1).fit(x, y, batch_size=BS, epochs=1, verbose=0)
    assert len(times) == N_BATCHES and all(isinstance(s, float) and s >= 0 for s in times)
    times.clear()
    _trainer(1, threads=1).fit(x, y, batch_size=BS, epochs=1, verbose=0)
    assert times == []


# --- loaders without a batch_size, checkpoint format ------------------------------------


def test_a_batch_sampler_loader_trains_without_accumulation():
    """A DataLoader driven by a batch_sampler has no batch_size: fine with accumulate=1,
    and the same training as batch_size=3 without shuffling."""
    x, y = _data()
    ds = torch.utils.data.TensorDataset(x, y)
    sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(ds), 3, False)
    a = _trainer(1)
    a.fit(torch.utils.data.DataLoader(ds, batch_sampler=sampler), epochs=2, verbose=0)
    b = _trainer(1)
    b.fit(torch.utils.data.DataLoader(ds, batch_size=3), epochs=2, verbose=0)
    _assert_same_training_state(a, b)
    assert a.global_step == 6


def test_the_rng_states_in_a_checkpoint_are_int64_tensors():
    """numpy's 624 key words and python's 625 words are saved as int64 tensors."""
    t = _trainer(1)
    rng = t.state_dict()["rng"]
    assert rng["numpy"][1].dtype == torch.int64 and rng["numpy"][1].shape == (624,)
    assert rng["python"][1].dtype == torch.int64 and rng["python"][1].shape == (625,)


# --- under torchrun (a fake group: no process group is created) ---------------------------


class _FakeDist:
    """Rank 0 of 2, the other rank simulated (a slim ``FakeDist`` of
    test_distributed_paths.py): ``agree`` gives ``agreed``, ``any`` is this rank's flag,
    ``sum`` adds nothing, ``max`` is at least ``most``; calls recorded."""

    def __init__(self, agreed=1, most=0):
        self.device = self._comm = torch.device("cpu")
        self.rank, self.world_size, self.agreed, self.most = 0, 2, agreed, most
        self.any_calls, self.max_calls = [], []

    is_zero = True

    def wrap(self, module, fn):
        from brisk.distributed import _Forward

        return _Forward(module, fn)

    def broadcast_buffers(self, module):
        pass

    def agree(self, value):
        return self.agreed

    def any(self, flag):
        self.any_calls.append(flag)
        return bool(flag)

    def sum(self, t):
        return t.detach().clone()

    def max(self, value):
        self.max_calls.append(value)
        return max(value, self.most)

    def barrier(self):
        pass


def test_under_torchrun_a_stop_asked_at_an_epoch_begin_is_sent_to_the_other_ranks():
    """A callback stops in on_epoch_begin of epoch 2: the flag all-reduced there is True,
    and training ends after that epoch's first batch."""
    x, y = _data()

    class StopAtBegin(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.trainer.stop_training = True

    fake = _FakeDist()
    t = _trainer(1)
    t.dist = fake
    h = t.fit(x, y, batch_size=BS, epochs=3, verbose=0, callbacks=[StopAtBegin()])
    assert fake.any_calls == [False, False, True, True]  # begin, end of epoch 1; of epoch 2
    assert h.epoch == [0, 1] and t.global_step == 2 + 1  # rank 0's 4 rows: 2 batches


def test_under_torchrun_sync_batchnorm_converts_the_trainers_module(monkeypatch):
    """sync_batchnorm=True: the model itself goes to distributed.sync_batchnorm before DDP
    wraps it (recorded here: the real one needs CUDA)."""
    from brisk import distributed

    seen = []
    monkeypatch.setattr(distributed, "sync_batchnorm", lambda m, d: seen.append((m, d)))
    x, y = _data()
    t = _trainer(1, sync_batchnorm=True)
    t.dist = _FakeDist()
    t.fit(x, y, batch_size=BS, epochs=1, verbose=0)
    assert len(seen) == 1 and seen[0][0] is t.module and seen[0][1] == torch.device("cpu")


def test_sharded_inference_pads_to_the_most_forwards_of_any_rank():
    """Under FSDP a rank with fewer inference batches (4, or steps=2 of them) adds forwards
    up to the most any rank runs (5); steps above the batches count the batches."""
    t = _trainer(1)
    assert t._padding(range(4), None) == 0  # not sharded: nothing to add
    t.dist, t._fsdp = _FakeDist(most=5), object()
    assert [t._padding(range(4), s) for s in (None, 2, 6)] == [1, 3, 1]
    assert t.dist.max_calls == [4, 2, 4]


def test_a_ranks_part_without_rows_has_no_batches():
    from brisk.engine.trainer import _NoRows

    assert len(_NoRows()) == 0 and list(_NoRows()) == []


# --- seeds ------------------------------------------------------------------------------


def test_fit_without_a_seed_draws_a_wide_int32_seed_from_torchs_generator():
    """seed=None: each fit draws its shuffle seed from torch's global generator, in
    [0, 2**31 - 1) (a non-negative int32); different global states give different seeds."""
    x, y = _data()
    seeds = []
    for g in range(8):
        t = _trainer(None)
        torch.manual_seed(g)
        t.fit(x, y, batch_size=BS, epochs=1, verbose=0)
        seeds.append(_position(t)["seed"])
    assert all(0 <= s < 2**31 - 1 for s in seeds)
    assert len(set(seeds)) == 8 and max(seeds) > 2**20


def test_a_datasets_augmentation_is_seeded_per_pass_from_the_seed():
    """Pins the seeding scheme (a seeded run's augmentations stay the same across
    versions): pass p of a Dataset input augments with a generator seeded
    seed * 1000003 + p."""
    x, y = _data()
    seen = []

    def augment(xb, gen):
        seen.append(gen.initial_seed())
        return xb

    _trainer(7).fit(torch.utils.data.TensorDataset(x, y), batch_size=4, epochs=3, verbose=0,
                    augment=augment)
    assert seen == [7 * 1000003 + p for p in (0, 0, 1, 1, 2, 2)]
