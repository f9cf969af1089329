"""Fast, in-process checks of what fit/evaluate/predict and the callbacks do under torchrun.

The end-to-end runs with 2 real processes are in tests/distributed/test_ddp.py; they cannot
run inside mutmut (it forks one child per mutant, and a gloo process group in the parent
would hang them). Here no process group is ever created: ``FakeDist`` (a ``Distributed``
whose communication methods simulate "the other ranks") is put on a Trainer right after it
is built (``t.dist = FakeDist(...)``), and the test controls what the peers contribute, so
the expected values are exact and asymmetric (a dropped reduction, a wrong count, the wrong
seed or a missing ``no_sync`` changes them). The real ``Distributed`` methods are checked
with torch.distributed's collectives replaced by fakes (monkeypatch), its arithmetic
(``part``) directly. Expected values come from hand calculations or from a one-process run.
Objects are built inside each test (tools/mutation/README.md).
"""

from __future__ import annotations

import contextlib
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import brisk
from brisk import distributed
from brisk.callbacks import (
    BackupAndRestore,
    Callback,
    CSVLogger,
    ModelCheckpoint,
    TensorBoard,
    TerminateOnNaN,
)
from brisk.data.loader import DeviceLoader
from brisk.distributed import Distributed, _Forward
from brisk.engine import step as step_mod
from brisk.engine.callbacks import History
from brisk.engine.progress import ProgressBar
from brisk.engine.trainer import _may_stop_mid_epoch, _NoRows

FEATURES, CLASSES = 3, 3
LOADER_ERROR = (
    "x: under torchrun (WORLD_SIZE=2) a DataLoader for training must shard the data per rank, "
    "or every rank trains on all of it: build it with "
    "sampler=torch.utils.data.DistributedSampler(dataset) (fit calls its set_epoch), or pass "
    "the Dataset or the arrays and brisk shards them")


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)


# ------------------------------------------------------------------ helpers
def data(n: int, seed: int = 0):
    """x whose first column identifies each sample (i / 4), random features, labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=g)
    x[:, 0] = torch.arange(n, dtype=torch.float32) / 4
    y = torch.randint(0, CLASSES, (n,), generator=g)
    return x, y


def mlp(seed: int = 0, batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(FEATURES, 8)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(8))
    layers += [nn.ReLU(), nn.Linear(8, CLASSES)]
    return nn.Sequential(*layers)


def make(model: nn.Module, dist=None, lr: float = 0.0, metrics=("accuracy",), **kw):
    t = brisk.Trainer(model, optimizer=lambda p: torch.optim.SGD(p, lr=lr),
                      loss="cross_entropy", metrics=list(metrics), device="cpu", **kw)
    if dist is not None:
        t.dist = dist
    return t


@torch.no_grad()
def ce_sum(model: nn.Module, x, y) -> float:
    """Sum of per-sample cross entropies of a fixed model (float64)."""
    model.eval()
    return float(F.cross_entropy(model(x).double(), y, reduction="sum"))


@torch.no_grad()
def correct(model: nn.Module, x, y) -> int:
    model.eval()
    return int((model(x).argmax(1) == y).sum())


class FakeDDP(_Forward):
    """What ``FakeDist.wrap`` returns: the module through ``fn``, with DDP's ``no_sync``;
    records, per forward and per backward, whether it ran under ``no_sync``."""

    def __init__(self, module, fn):
        super().__init__(module, fn)
        self.in_no_sync = False
        self.no_sync_entries = 0
        self.forwards: list[bool] = []

    @contextlib.contextmanager
    def no_sync(self):
        self.no_sync_entries += 1
        self.in_no_sync = True
        try:
            yield
        finally:
            self.in_no_sync = False

    def forward(self, x):
        self.forwards.append(self.in_no_sync)
        return super().forward(x)


class FakeDist(Distributed):
    """Rank ``rank`` of ``world_size``, the others simulated: ``sum`` adds the next of
    ``peers`` (what the other ranks contribute), ``agree`` returns ``agreed`` (rank 0's
    value), ``any`` is True at the call indices in ``stops`` (another rank asked to stop),
    ``gather_rows`` puts ``before`` and ``after`` (the other ranks' rows) around this
    rank's. Every call is recorded; ``log`` holds the names in order."""

    def __init__(self, rank: int = 0, world_size: int = 2, agreed: int | None = None,
                 peers=(), stops=(), before=None, after=None, log=None):
        self.device = torch.device("cpu")
        self.rank, self.world_size = rank, world_size
        self._comm = torch.device("cpu")
        self.agreed, self.peers, self.stops = agreed, list(peers), set(stops)
        self.before, self.after = before, after
        self.log = log if log is not None else []
        self.agree_calls: list[int] = []
        self.any_calls: list[bool] = []
        self.sum_calls: list[torch.Tensor] = []
        self.gathered: list[tuple[torch.Tensor, int]] = []
        self.wrapped: list[tuple[FakeDDP, nn.Module, object]] = []
        self.broadcast: list[nn.Module] = []

    def wrap(self, module, fn):
        w = FakeDDP(module, fn)
        self.wrapped.append((w, module, fn))
        self.log.append("wrap")
        return w

    def broadcast_buffers(self, module):
        self.broadcast.append(module)
        self.log.append("broadcast_buffers")

    def agree(self, value):
        self.agree_calls.append(value)
        self.log.append("agree")
        return self.agreed

    def any(self, flag):
        i = len(self.any_calls)
        self.any_calls.append(bool(flag))
        self.log.append("any")
        return bool(flag) or i in self.stops

    def sum(self, t):
        self.sum_calls.append(t.detach().clone())
        self.log.append("sum")
        if not self.peers:
            raise AssertionError("sum: no peer contribution left (an unexpected reduction)")
        return t.detach() + torch.as_tensor(self.peers.pop(0), dtype=t.dtype)

    def barrier(self):
        self.log.append("barrier")

    def gather_rows(self, t, n):
        self.gathered.append((t.detach().clone(), n))
        self.log.append("gather_rows")
        parts = [p for p in (self.before, t, self.after) if p is not None]
        return torch.cat(parts)


class Seen(Callback):
    """The first feature (the sample's id) of every training sample, per epoch."""

    def __init__(self, model: nn.Module):
        self.epochs: list[list[float]] = []
        model.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        if module.training:
            self.epochs[-1].extend(args[0][:, 0].tolist())

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])


class BatchHook(Callback):
    """A user's callback with a batch hook (so it may stop mid-epoch)."""

    def __init__(self):
        self.batches = 0

    def on_batch_end(self, batch, logs=None):
        self.batches += 1


class Mark(Callback):
    def __init__(self, log):
        self.log = log

    def on_train_end(self, logs=None):
        self.log.append("on_train_end")


def real(rank: int, world_size: int) -> Distributed:
    """A real ``Distributed`` without a process group (for its arithmetic and methods)."""
    d = object.__new__(Distributed)
    d.device, d._comm = torch.device("cpu"), torch.device("cpu")
    d.rank, d.world_size = rank, world_size
    return d


# ------------------------------------------------------------------ the environment
def test_env_world_size_reads_torchrun_and_refuses_bad_values(monkeypatch):
    assert distributed.env_world_size() == 1
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert distributed.env_world_size() == 3
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.env_world_size() == 1
    for bad in ("0", "x", "-2", ""):
        monkeypatch.setenv("WORLD_SIZE", bad)
        with pytest.raises(ValueError) as e:
            distributed.env_world_size()
        assert str(e.value) == f"WORLD_SIZE: expected a positive int (torchrun sets it), got {bad!r}"


def test_a_trainer_refuses_a_bad_world_size(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "0")
    with pytest.raises(ValueError) as e:
        brisk.Trainer(mlp(), device="cpu")
    assert str(e.value) == "WORLD_SIZE: expected a positive int (torchrun sets it), got '0'"


def test_no_policy_outside_torchrun(monkeypatch):
    assert distributed.Distributed.from_env(torch.device("cpu")) is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.Distributed.from_env(torch.device("cpu")) is None
    assert brisk.Trainer(mlp(), device="cpu").dist is None


def test_local_device_gives_each_process_its_gpu(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert distributed.local_device(cuda) == torch.device("cuda")  # one process: as it is
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.local_device(cuda) == torch.device("cuda", 0)  # no LOCAL_RANK: 0
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.local_device(cuda) == torch.device("cuda", 1)
    assert distributed.local_device(torch.device("cuda", 3)) == torch.device("cuda", 3)
    assert distributed.local_device(cpu) == cpu


def test_rank_reads_RANK_without_a_process_group(monkeypatch):
    assert distributed.rank() == 0 and distributed.is_rank_zero() is True
    monkeypatch.setenv("RANK", "3")
    assert distributed.rank() == 3 and distributed.is_rank_zero() is False
    monkeypatch.setenv("RANK", "0")
    assert distributed.is_rank_zero() is True
    monkeypatch.setenv("RANK", "")
    assert distributed.rank() == 0


def test_module_barrier_does_nothing_without_a_process_group(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("barrier without a process group")

    monkeypatch.setattr(torch.distributed, "barrier", boom)
    assert distributed.barrier() is None


# ------------------------------------------------------------------ Distributed's own methods
def test_part_splits_rows_contiguously_first_ranks_one_more():
    assert [real(r, 3).part(10) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert [real(r, 3).part(9) for r in range(3)] == [(0, 3), (3, 6), (6, 9)]
    assert [real(r, 2).part(7) for r in range(2)] == [(0, 4), (4, 7)]
    assert [real(r, 4).part(2) for r in range(4)] == [(0, 1), (1, 2), (2, 2), (2, 2)]
    assert [real(r, 2).part(0) for r in range(2)] == [(0, 0), (0, 0)]
    assert real(0, 1).part(5) == (0, 5)


def test_part_covers_every_row_once_in_rank_order():
    for world in (1, 2, 3, 5, 8):
        for n in (0, 1, 4, 7, 11, 16):
            parts = [real(r, world).part(n) for r in range(world)]
            rows = [i for lo, hi in parts for i in range(lo, hi)]
            assert rows == list(range(n)), (world, n)
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_real_sum_all_reduces_a_copy(monkeypatch):
    calls = []

    def all_reduce(t, op=None):
        calls.append((t.clone(), op))
        t.add_(torch.tensor([10.0, 200.0], dtype=t.dtype))

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    out = real(0, 2).sum(x)
    assert out.tolist() == [11.0, 202.0] and out.dtype == torch.float64
    assert x.tolist() == [1.0, 2.0]  # the caller's tensor untouched
    assert calls[0][0].tolist() == [1.0, 2.0] and calls[0][1] == torch.distributed.ReduceOp.SUM


def test_real_any_is_a_max_over_ranks(monkeypatch):
    sent, peer = [], [0]

    def all_reduce(t, op=None):
        sent.append((int(t.item()), op))
        t.fill_(max(int(t.item()), peer[0]))

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    d = real(1, 2)
    assert d.any(False) is False and d.any(True) is True
    peer[0] = 1
    assert d.any(False) is True
    assert sent == [(0, torch.distributed.ReduceOp.MAX), (1, torch.distributed.ReduceOp.MAX),
                    (0, torch.distributed.ReduceOp.MAX)]


def test_real_agree_broadcasts_rank_zeros_value(monkeypatch):
    sent = []

    def broadcast(t, src):
        sent.append((int(t.item()), src))
        t.fill_(42)

    monkeypatch.setattr(torch.distributed, "broadcast", broadcast)
    assert real(1, 2).agree(7) == 42
    assert sent == [(7, 0)]


def test_real_gather_rows_pads_and_cuts_in_rank_order(monkeypatch):
    peer = torch.arange(8, dtype=torch.float32).reshape(4, 2) + 100  # rank 0's 4 rows
    sent = []

    def all_gather(bufs, t):
        sent.append(t.clone())
        bufs[0].copy_(peer)
        bufs[1].copy_(t)

    monkeypatch.setattr(torch.distributed, "all_gather", all_gather)
    own = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # rank 1: rows 4..6 of 7
    out = real(1, 2).gather_rows(own, 7)
    assert out.tolist() == [*peer.tolist(), *own.tolist()]
    assert sent[0].tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [0.0, 0.0]]  # padded to 4

    sent.clear()
    empty = torch.zeros((0, 2))  # 1 row over 2 ranks: rank 1 has none
    peer = torch.tensor([[7.0, 8.0]])
    out = real(1, 2).gather_rows(empty, 1)
    assert out.tolist() == [[7.0, 8.0]] and sent[0].tolist() == [[0.0, 0.0]]


def test_real_broadcast_buffers_sends_every_buffer_from_rank_zero(monkeypatch):
    sent = []

    def broadcast(t, src):
        sent.append((tuple(t.shape), src))
        t.fill_(3)

    monkeypatch.setattr(torch.distributed, "broadcast", broadcast)
    m = mlp(batchnorm=True)
    real(1, 2).broadcast_buffers(m)
    assert sent == [((8,), 0), ((8,), 0), ((), 0)]  # running mean, var, batches tracked
    assert m[1].running_mean.tolist() == [3.0] * 8 and int(m[1].num_batches_tracked) == 3


def test_real_barrier_names_the_gpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.distributed, "barrier", lambda **kw: calls.append(kw))
    d = real(0, 2)
    d.barrier()
    d.device = torch.device("cuda", 1)
    d.barrier()
    assert calls == [{}, {"device_ids": [1]}]


def test_check_loader_wants_a_distributed_sampler():
    x, y = data(8)
    ds = TensorDataset(x, y)
    d = real(0, 2)
    with pytest.raises(ValueError) as e:
        d.check_loader(DataLoader(ds, batch_size=4), "training")
    assert str(e.value) == LOADER_ERROR
    assert d.check_loader(DataLoader(ds, batch_size=4, sampler=DistributedSampler(
        ds, num_replicas=2, rank=0)), "training") is None
    assert d.check_loader(DeviceLoader(x, y, batch_size=4), "training") is None


def test_forward_calls_the_function_the_engine_trains():
    class Net(nn.Module):
        def forward(self, x):
            return x + 1

        def forward_logits(self, x):
            return x * 10

    net = Net()
    x = torch.tensor([1.0, 2.0])
    assert _Forward(net, net)(x).tolist() == [2.0, 3.0]
    assert _Forward(net, net.forward_logits)(x).tolist() == [10.0, 20.0]
    assert _Forward(net, net).module is net  # DDP sees the model's parameters


# ------------------------------------------------------------------ fit: reductions
def test_fit_logs_the_global_mean_of_every_rank(monkeypatch):
    """Rank 0 of 2, no shuffle: its shard is rows 0, 2, 4, ...; lr 0 keeps the model fixed,
    so the local sums are those of the fixed model on the shard, plus the peers'."""
    x, y = data(12)
    model = mlp()
    want_l, want_c = ce_sum(model, x[0::2], y[0::2]), correct(model, x[0::2], y[0::2])
    fake = FakeDist(rank=0, agreed=3, peers=[[5.5, 2.0, 4.0, 4.0], [1.25, 3.0, 6.0, 6.0]])
    t = make(model, fake, seed=3)
    hist = t.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert hist.history["loss"] == pytest.approx([(want_l + 5.5) / 10, (want_l + 1.25) / 12],
                                                 rel=1e-6)
    assert hist.history["accuracy"] == pytest.approx([(want_c + 2) / 10, (want_c + 3) / 12],
                                                     rel=1e-6)
    assert len(fake.sum_calls) == 2  # one reduction per epoch
    for sent in fake.sum_calls:  # [loss sum, accuracy sum, count, count], in float64
        assert sent.dtype == torch.float64
        assert sent.tolist() == pytest.approx([want_l, want_c, 6, 6], rel=1e-6)
    assert t._counts == [6, 6]  # the local sums are left as they were


def test_fit_uses_rank_zeros_seed_and_takes_every_world_size_th_sample():
    """Each rank shuffles with the agreed seed (123, not its own 5): its samples in epoch e
    are positions rank, rank + 2, ... of a one-process run with seed 123."""
    x, y = data(10)
    ref_model = mlp()
    ref = Seen(ref_model)
    make(ref_model, seed=123).fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[ref])
    own = mlp()
    own_seen = Seen(own)
    make(own, seed=5).fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[own_seen])
    assert own_seen.epochs != ref.epochs  # the seed decides the order
    for rank in (0, 1):
        model = mlp()
        seen = Seen(model)
        fake = FakeDist(rank=rank, agreed=123, peers=[[0.0] * 4] * 2)
        make(model, fake, seed=5).fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[seen])
        assert fake.agree_calls == [5]
        assert seen.epochs == [e[rank::2] for e in ref.epochs]


def test_fit_pads_an_uneven_shard_by_wrapping_around():
    x, y = data(9)
    ref_model = mlp()
    ref = Seen(ref_model)
    make(ref_model, seed=7).fit(x, y, batch_size=9, epochs=1, verbose=0, callbacks=[ref])
    model = mlp()
    seen = Seen(model)
    fake = FakeDist(rank=1, agreed=7, peers=[[0.0] * 4])
    make(model, fake, seed=1).fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[seen])
    perm = ref.epochs[0]
    assert seen.epochs == [(perm + perm[:1])[1::2]]  # 5 samples: the last is perm[0]
    assert fake.sum_calls[0][2:].tolist() == [5.0, 5.0]


# ------------------------------------------------------------------ fit: stopping together
def test_may_stop_mid_epoch_only_for_callbacks_with_a_batch_hook(tmp_path):
    class Begin(Callback):
        def on_train_batch_begin(self, batch, logs=None):
            pass

    class End(Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    class AliasBegin(Callback):
        def on_batch_begin(self, batch, logs=None):
            pass

    class Quiet(End):
        _never_stops = True

    class EpochOnly(Callback):
        def on_epoch_end(self, epoch, logs=None):
            pass

    assert [_may_stop_mid_epoch(cb) for cb in (Begin(), End(), AliasBegin(), BatchHook(),
                                               TerminateOnNaN())] == [True] * 5
    assert [_may_stop_mid_epoch(cb) for cb in (Callback(), EpochOnly(), Quiet(), History(),
                                               ProgressBar(1))] == [False] * 5
    assert _may_stop_mid_epoch(ModelCheckpoint(str(tmp_path / "m.safetensors"))) is False
    assert _may_stop_mid_epoch(BackupAndRestore(str(tmp_path / "b"))) is False
    assert _may_stop_mid_epoch(TensorBoard(str(tmp_path / "tb"))) is False


def test_stop_flags_are_shared_per_epoch_and_per_batch_only_with_a_batch_hook(tmp_path, capsys):
    x, y = data(12)
    # no callback that can stop mid-epoch: one flag at each epoch's begin and end
    fake = FakeDist(agreed=1, peers=[[0.0] * 4] * 2)
    make(mlp(), fake, seed=1).fit(x, y, batch_size=2, epochs=2, verbose=0)
    assert fake.any_calls == [False] * 4
    # brisk's writers and the progress bar never stop training: the same
    fake = FakeDist(agreed=1, peers=[[0.0] * 4] * 2)
    make(mlp(), fake, seed=1).fit(
        x, y, batch_size=2, epochs=2, verbose=2,
        callbacks=[ModelCheckpoint(str(tmp_path / "m.safetensors"), save_freq=1)])
    assert fake.any_calls == [False] * 4
    # a user's batch hook: one flag after each of the 3 batches too
    fake = FakeDist(agreed=1, peers=[[0.0] * 4] * 2)
    make(mlp(), fake, seed=1).fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[BatchHook()])
    assert fake.any_calls == [False] * 10
    assert fake.log.count("any") == 10
    capsys.readouterr()


def test_a_stop_asked_by_another_rank_at_an_epoch_end_stops_this_rank():
    x, y = data(12)
    fake = FakeDist(agreed=1, peers=[[0.0] * 4] * 4, stops={3})  # the end of epoch 2
    t = make(mlp(), fake, seed=1)
    hist = t.fit(x, y, batch_size=2, epochs=4, verbose=0)
    assert hist.epoch == [0, 1] and t.global_step == 6
    assert fake.any_calls == [False] * 4


def test_a_local_stop_is_sent_to_the_other_ranks():
    x, y = data(12)

    class StopAtEpoch1(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.trainer.stop_training = True

    fake = FakeDist(agreed=1, peers=[[0.0] * 4] * 4)
    hist = make(mlp(), fake, seed=1).fit(x, y, batch_size=2, epochs=4, verbose=0,
                                         callbacks=[StopAtEpoch1()])
    assert hist.epoch == [0, 1]
    assert fake.any_calls == [False, False, False, True]


def test_a_stop_asked_before_the_batches_stops_where_one_process_would():
    """Another rank asks in on_epoch_begin of epoch 2: this rank stops where one process
    whose callback asks there stops (after that epoch's first batch)."""
    x, y = data(12)

    class StopAtBegin(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.trainer.stop_training = True

    one = make(mlp(), seed=1)
    one_hist = one.fit(x, y, batch_size=4, epochs=4, verbose=0, callbacks=[StopAtBegin()])
    fake = FakeDist(agreed=1, peers=[[0.0] * 4] * 4, stops={2})  # epoch 2's begin
    t = make(mlp(), fake, seed=1)
    hist = t.fit(x, y, batch_size=2, epochs=4, verbose=0)
    assert hist.epoch == one_hist.epoch == [0, 1]
    assert t.global_step == one.global_step == 4
    assert fake.any_calls == [False, False, False, True]


def test_a_stop_asked_by_another_rank_mid_epoch_stops_after_the_same_batch():
    x, y = data(12)
    fake = FakeDist(agreed=1, peers=[[0.0] * 4] * 2, stops={2})  # after batch 2 of epoch 1
    hook = BatchHook()
    t = make(mlp(), fake, seed=1)
    hist = t.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[hook])
    assert t.global_step == 2 and hook.batches == 2 and hist.epoch == [0]
    assert fake.any_calls == [False, False, False, True]  # begin, batch 1, batch 2, end


# ------------------------------------------------------------------ fit: DDP and no_sync
def test_accumulation_runs_the_first_micro_batches_under_no_sync():
    """accumulate=2 over 5 batches: batches 1, 3 under no_sync (forward and backward),
    2, 4 and the last (5, alone in its group) synchronise. The fake does no averaging, so
    the weights equal one process training on this rank's shard."""
    x, y = data(20)
    model = mlp()
    fake = FakeDist(rank=0, agreed=4, peers=[[0.0] * 4] * 2)
    t = make(model, fake, lr=0.1, seed=4, accumulate=2)
    backward: list[bool] = []
    model[0].weight.register_hook(lambda g: backward.append(fake.wrapped[0][0].in_no_sync))
    hist = t.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0)
    (w, module, fn), = fake.wrapped
    assert module is model and fn is model
    assert w.forwards == [True, False, True, False, False] * 2
    assert backward == [True, False, True, False, False] * 2
    assert w.no_sync_entries == 4 and t.global_step == 6

    plain_model = mlp()
    plain = make(plain_model, lr=0.1, seed=4, accumulate=2)
    plain_hist = plain.fit(x[0::2], y[0::2], batch_size=2, epochs=2, shuffle=False, verbose=0)
    for k, v in plain_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert hist.history["loss"] == pytest.approx(plain_hist.history["loss"], rel=1e-6)


def test_without_accumulation_no_batch_runs_under_no_sync():
    x, y = data(8)
    fake = FakeDist(agreed=4, peers=[[0.0] * 4])
    make(mlp(), fake, lr=0.1, seed=4).fit(x, y, batch_size=2, epochs=1, verbose=0)
    w = fake.wrapped[0][0]
    assert w.forwards == [False, False] and w.no_sync_entries == 0


def test_the_model_is_wrapped_once_and_again_when_the_trainable_weights_change():
    x, y = data(8)
    model = mlp()
    fake = FakeDist(agreed=4, peers=[[0.0] * 4] * 3)
    t = make(model, fake, lr=0.1, seed=4)
    t.fit(x, y, batch_size=4, epochs=1, verbose=0)
    t.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert len(fake.wrapped) == 1
    first = fake.wrapped[0][0]
    model[0].weight.requires_grad_(False)
    model[0].bias.requires_grad_(False)
    t.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert len(fake.wrapped) == 2 and t._ddp is fake.wrapped[1][0]
    assert first.forwards == [False] * 2 and fake.wrapped[1][0].forwards == [False]


def test_nothing_to_train_is_not_wrapped():
    x, y = data(8)
    model = mlp()
    for p in model.parameters():
        p.requires_grad_(False)
    fake = FakeDist(agreed=4, peers=[[0.0] * 4])
    t = make(model, fake, seed=4, accumulate=2)
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        t.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert fake.wrapped == [] and t._ddp is None and t.global_step == 1


def test_fit_ends_with_rank_zeros_buffers_then_callbacks_then_a_barrier():
    x, y = data(8)
    xv, yv = data(5, seed=1)
    log: list[str] = []
    model = mlp(batchnorm=True)
    fake = FakeDist(agreed=4, peers=[[0.0] * 4] * 4, log=log)
    t = make(model, fake, lr=0.1, seed=4)
    t.fit(x, y, batch_size=2, epochs=2, verbose=0, validation_data=(xv, yv),
          callbacks=[Mark(log)])
    assert log[-3:] == ["broadcast_buffers", "on_train_end", "barrier"]
    assert log.count("broadcast_buffers") == 1 and log.count("barrier") == 1
    assert fake.broadcast == [model]
    assert t._fwd is t._fwd_raw is model  # not through DDP after fit
    # validation never runs through DDP: the wrapper saw the 2 x 2 training batches only
    assert fake.wrapped[0][0].forwards == [False] * 4


# ------------------------------------------------------------------ evaluation and prediction
def test_evaluate_takes_this_ranks_rows_and_adds_the_peers_sums():
    """9 rows over 2 ranks: rank 1 has rows 5..8 (4 rows)."""
    x, y = data(9)
    model = mlp()
    want_l, want_c = ce_sum(model, x[5:], y[5:]), correct(model, x[5:], y[5:])
    fake = FakeDist(rank=1, peers=[[4.0, 1.0, 3.0, 3.0]])
    t = make(model, fake)
    logs = t.evaluate(x, y, batch_size=3, return_dict=True)
    assert logs == pytest.approx({"loss": (want_l + 4.0) / 7, "accuracy": (want_c + 1) / 7},
                                 rel=1e-6)
    assert fake.sum_calls[0].tolist() == pytest.approx([want_l, want_c, 4, 4], rel=1e-6)


def test_evaluate_splits_a_dataset_and_the_sample_weights_as_the_rows():
    x, y = data(9)
    w = torch.arange(1, 10, dtype=torch.float32)  # rank 1's rows 5..8 weigh 6, 7, 8, 9
    model = mlp()
    with torch.no_grad():
        model.eval()
        per_sample = F.cross_entropy(model(x[5:]).double(), y[5:], reduction="none")
    want_w = float((per_sample * w[5:].double()).sum())
    fake = FakeDist(rank=1, peers=[[4.0, 1.0, 3.0, 3.0]])
    logs = make(model, fake).evaluate(x, y, batch_size=3, sample_weight=w, return_dict=True)
    assert logs["loss"] == pytest.approx((want_w + 4.0) / 7, rel=1e-6)

    want_l, want_c = ce_sum(model, x[5:], y[5:]), correct(model, x[5:], y[5:])
    fake = FakeDist(rank=1, peers=[[4.0, 1.0, 3.0, 3.0]])
    logs = make(model, fake).evaluate(TensorDataset(x, y), batch_size=3, return_dict=True)
    assert logs == pytest.approx({"loss": (want_l + 4.0) / 7, "accuracy": (want_c + 1) / 7},
                                 rel=1e-6)
    assert fake.sum_calls[0].tolist() == pytest.approx([want_l, want_c, 4, 4], rel=1e-6)


def test_evaluate_on_a_rank_without_rows_still_takes_part_in_the_reduction():
    x, y = data(3)  # 3 rows over 4 ranks: rank 3 has none
    fake = FakeDist(rank=3, world_size=4, peers=[[2.25, 2.0, 3.0, 3.0]])
    t = make(mlp(), fake)
    assert t.evaluate(x, y, return_dict=True) == pytest.approx({"loss": 0.75, "accuracy": 2 / 3},
                                                               rel=1e-12)
    assert fake.sum_calls[0].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_evaluate_with_steps_neither_splits_nor_reduces():
    x, y = data(9)
    model = mlp()
    fake = FakeDist(rank=1)
    t = make(model, fake)
    logs = t.evaluate(x, y, batch_size=3, steps=2, return_dict=True)
    assert logs == pytest.approx({"loss": ce_sum(model, x[:6], y[:6]) / 6,
                                  "accuracy": correct(model, x[:6], y[:6]) / 6}, rel=1e-6)
    assert fake.sum_calls == []


def test_fit_validation_is_split_and_reduced_unless_validation_steps():
    """5 validation rows over 2 ranks: rank 1 has rows 3, 4."""
    x, y = data(8)
    xv, yv = data(5, seed=1)
    model = mlp()
    train_l = ce_sum(model, x[1::2], y[1::2])
    val_l, val_c = ce_sum(model, xv[3:], yv[3:]), correct(model, xv[3:], yv[3:])
    fake = FakeDist(rank=1, agreed=2, peers=[[0.5, 1.0, 4.0, 4.0], [2.0, 2.0, 3.0, 3.0]])
    hist = make(model, fake, seed=2).fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0,
                                         validation_data=(xv, yv))
    assert hist.history["loss"] == pytest.approx([(train_l + 0.5) / 8], rel=1e-6)
    assert hist.history["val_loss"] == pytest.approx([(val_l + 2.0) / 5], rel=1e-6)
    assert hist.history["val_accuracy"] == pytest.approx([(val_c + 2) / 5], rel=1e-6)
    assert fake.sum_calls[1].tolist() == pytest.approx([val_l, val_c, 2, 2], rel=1e-6)

    fake = FakeDist(rank=1, agreed=2, peers=[[0.5, 1.0, 4.0, 4.0]])  # the training sums only
    hist = make(model, fake, seed=2).fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0,
                                         validation_data=(xv, yv), validation_batch_size=2,
                                         validation_steps=1)
    assert hist.history["val_loss"] == pytest.approx([ce_sum(model, xv[:2], yv[:2]) / 2],
                                                     rel=1e-6)
    assert len(fake.sum_calls) == 1


@torch.no_grad()
def test_predict_gathers_every_ranks_rows_in_order():
    x, _ = data(7)
    model = mlp()
    model.eval()
    full = model(x)
    others = torch.full((3, CLASSES), 7.0)
    fake = FakeDist(rank=0, after=others)
    got = make(model, fake).predict(x, batch_size=2)
    (sent, n), = fake.gathered
    assert n == 7
    torch.testing.assert_close(sent, full[:4], atol=1e-6, rtol=0)  # rank 0: rows 0..3
    torch.testing.assert_close(torch.as_tensor(got), torch.cat([full[:4], others]), atol=1e-6,
                               rtol=0)

    before = torch.full((4, CLASSES), -2.0)
    fake = FakeDist(rank=1, before=before)
    got = make(model, fake).predict(x, batch_size=2)
    torch.testing.assert_close(fake.gathered[0][0], full[4:], atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.as_tensor(got), torch.cat([before, full[4:]]), atol=1e-6,
                               rtol=0)


@torch.no_grad()
def test_predict_splits_a_dataset_as_the_rows():
    x, _ = data(7)
    model = mlp()
    model.eval()
    before = torch.full((4, CLASSES), -2.0)
    fake = FakeDist(rank=1, before=before)
    got = make(model, fake).predict(TensorDataset(x), batch_size=2)
    (sent, n), = fake.gathered
    assert n == 7
    torch.testing.assert_close(sent, model(x[4:]), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.as_tensor(got), torch.cat([before, model(x[4:])]),
                               atol=1e-6, rtol=0)


@torch.no_grad()
def test_predict_on_a_rank_without_rows_sends_none_and_gets_all():
    x, _ = data(2)
    model = mlp()
    others = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    fake = FakeDist(rank=2, world_size=3, before=others)
    got = make(model, fake).predict(x)
    (sent, n), = fake.gathered
    assert tuple(sent.shape) == (0, CLASSES) and n == 2
    assert got.tolist() == others.tolist()


@torch.no_grad()
def test_predict_with_steps_neither_splits_nor_gathers():
    x, _ = data(7)
    model = mlp()
    model.eval()
    fake = FakeDist(rank=1)
    got = make(model, fake).predict(x, batch_size=2, steps=2)
    torch.testing.assert_close(torch.as_tensor(got), model(x[:4]), atol=1e-6, rtol=0)
    assert fake.gathered == []


def test_sharded_says_which_loaders_hold_a_part():
    x, y = data(8)
    t = make(mlp())
    full = DeviceLoader(x, y, batch_size=4)
    sampled = DataLoader(TensorDataset(x, y), batch_size=4,
                         sampler=DistributedSampler(TensorDataset(x, y), num_replicas=2, rank=0))
    assert not any(t._sharded(ld) for ld in (full.shard(0, 2), sampled, _NoRows()))
    t.dist = FakeDist()
    assert [t._sharded(ld) for ld in (full, full.shard(0, 2), sampled, _NoRows(),
                                      DataLoader(TensorDataset(x, y), batch_size=4))] == \
        [False, True, True, True, False]


# ------------------------------------------------------------------ the user's loaders
def test_a_dataloader_without_a_distributed_sampler_is_refused():
    x, y = data(8)
    t = make(mlp(), FakeDist(agreed=1), seed=1)
    with pytest.raises(ValueError) as e:
        t.fit(DataLoader(TensorDataset(x, y), batch_size=4), epochs=1, verbose=0)
    assert str(e.value) == LOADER_ERROR
    t = make(mlp(), FakeDist(world_size=3, agreed=1), seed=1)
    with pytest.raises(ValueError) as e:
        t.fit(DataLoader(TensorDataset(x, y), batch_size=4), epochs=1, verbose=0)
    assert str(e.value).startswith("x: under torchrun (WORLD_SIZE=3) a DataLoader for training")


def test_a_dataloader_with_a_distributed_sampler_gets_set_epoch_and_is_reduced():
    x, y = data(12)
    ds = TensorDataset(x, y)
    epochs_set = []

    class Sampler(DistributedSampler):
        def set_epoch(self, epoch):
            epochs_set.append(epoch)
            super().set_epoch(epoch)

    loader = DataLoader(ds, batch_size=3, sampler=Sampler(ds, num_replicas=2, rank=1, seed=42))
    model = mlp()
    seen = Seen(model)
    fake = FakeDist(rank=1, agreed=1, peers=[[0.0] * 4] * 2)
    make(model, fake, seed=1).fit(loader, epochs=2, verbose=0, callbacks=[seen])
    assert epochs_set == [0, 1]
    ref = DistributedSampler(ds, num_replicas=2, rank=1, seed=42)
    for e in (0, 1):
        ref.set_epoch(e)
        assert seen.epochs[e] == [float(x[i, 0]) for i in ref]
    assert seen.epochs[0] != seen.epochs[1]
    assert len(fake.sum_calls) == 2 and fake.sum_calls[0][2:].tolist() == [6.0, 6.0]


def test_a_dataset_gets_a_distributed_sampler_with_the_agreed_seed():
    x, y = data(12)
    ds = TensorDataset(x, y)
    model = mlp()
    seen = Seen(model)
    fake = FakeDist(rank=1, agreed=77, peers=[[0.0] * 4] * 2)
    make(model, fake, seed=5).fit(ds, batch_size=4, epochs=2, verbose=0, callbacks=[seen])
    assert fake.agree_calls == [5]
    ref = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=77)
    for e in (0, 1):
        ref.set_epoch(e)
        assert seen.epochs[e] == [float(x[i, 0]) for i in ref]
    assert seen.epochs[0] != seen.epochs[1]
    assert fake.sum_calls[0][2:].tolist() == [6.0, 6.0]


def test_a_dataset_without_shuffle_is_sharded_in_order():
    x, y = data(7)
    model = mlp()
    seen = Seen(model)
    fake = FakeDist(rank=0, agreed=77, peers=[[0.0] * 4])
    make(model, fake, seed=5).fit(TensorDataset(x, y), batch_size=4, epochs=1, shuffle=False,
                                  verbose=0, callbacks=[seen])
    assert seen.epochs == [[float(x[i, 0]) for i in (0, 2, 4, 6)]]


def test_a_users_device_loader_is_sharded_with_the_agreed_seed():
    x, y = data(12)
    user = DeviceLoader(x, y, batch_size=3, shuffle=True, seed=11)
    model = mlp()
    seen = Seen(model)
    fake = FakeDist(rank=1, agreed=99, peers=[[0.0] * 4] * 2)
    make(model, fake, seed=5).fit(user, epochs=2, verbose=0, callbacks=[seen])
    assert fake.agree_calls == [5, 11]
    ref = DeviceLoader(x, y, batch_size=12, shuffle=True, seed=99)
    for e in (0, 1):
        ref.set_epoch(e)
        xb, _ = next(iter(ref))
        assert seen.epochs[e] == xb[:, 0].tolist()[1::2]
    assert seen.epochs[0] != seen.epochs[1]
    assert user.seed == 11 and user.world_size == 1  # the user's loader is not changed
    assert fake.sum_calls[0][2:].tolist() == [6.0, 6.0]


def test_an_already_sharded_device_loader_is_used_as_it_is():
    x, y = data(12)
    shard = DeviceLoader(x, y, batch_size=3, shuffle=True, seed=11).shard(1, 2)
    model = mlp()
    seen = Seen(model)
    fake = FakeDist(rank=1, agreed=99, peers=[[0.0] * 4])
    make(model, fake, seed=5).fit(shard, epochs=1, verbose=0, callbacks=[seen])
    assert fake.agree_calls == [5]
    ref = DeviceLoader(x, y, batch_size=12, shuffle=True, seed=11)
    ref.set_epoch(0)
    assert seen.epochs[0] == next(iter(ref))[0][:, 0].tolist()[1::2]
    assert len(fake.sum_calls) == 1


def test_batch_sizes_counts_a_distributed_samplers_shard():
    x, y = data(11)
    ds = TensorDataset(x, y)
    sampled = DataLoader(ds, batch_size=4, sampler=DistributedSampler(ds, num_replicas=2, rank=0))
    assert step_mod.batch_sizes(sampled) == (4, 2, 2)  # 6 samples: 4 + 2
    assert step_mod.batch_sizes(DataLoader(ds, batch_size=4)) == (4, 3, 3)  # 11: 4 + 4 + 3
    shard = DeviceLoader(x, y, batch_size=4).shard(1, 2)
    assert step_mod.batch_sizes(shard) == (4, 2, 2)


def test_accumulation_over_a_distributed_sampler_weighs_by_the_shards_batches():
    """accumulate=2 over a shard of 5 samples in batches of 2 (2, 2, 1): the last group
    holds 1 sample, so its micro-batch weighs 1 (not 1/2 as if the group were full)."""
    x, y = data(10)
    ds = TensorDataset(x, y)
    loader = DataLoader(ds, batch_size=2,
                        sampler=DistributedSampler(ds, num_replicas=2, rank=0, shuffle=False))
    model = mlp()
    fake = FakeDist(rank=0, agreed=1, peers=[[0.0] * 4])
    make(model, fake, lr=0.1, seed=1, accumulate=2).fit(loader, epochs=1, verbose=0)
    plain_model = mlp()
    make(plain_model, lr=0.1, seed=1, accumulate=2).fit(
        x[0::2], y[0::2], batch_size=2, epochs=1, shuffle=False, verbose=0)
    for k, v in plain_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, atol=1e-7, rtol=0, msg=k)


# ------------------------------------------------------------------ Keras-style metrics
class MeanProb0(brisk.metrics.Metric):
    """Mean probability of class 0 (a Keras-protocol metric: add_weight state)."""

    def __init__(self):
        super().__init__(name="mean_prob0")
        self.total = self.add_weight(name="total")
        self.count = self.add_weight(name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total += y_pred[:, 0].sum()
        self.count += y_pred.shape[0]

    def result(self):
        return self.total / self.count


@torch.no_grad()
def prob0_sum(model, x) -> float:
    model.eval()
    return float(torch.softmax(model(x), -1)[:, 0].sum())


def test_a_keras_metrics_state_is_summed_over_ranks():
    x, y = data(6)
    model = mlp()
    local = prob0_sum(model, x[:3])  # rank 0 of 2: rows 0..2
    want_l = ce_sum(model, x[:3], y[:3])
    fake = FakeDist(rank=0, peers=[[2.0, 0.0, 3.0, 1.0], 10.0, 6.0])
    t = make(model, fake, metrics=[MeanProb0()])
    logs = t.evaluate(x, y, return_dict=True)
    assert logs == pytest.approx({"loss": (want_l + 2.0) / 6, "mean_prob0": (local + 10.0) / 9},
                                 rel=1e-6)
    assert fake.sum_calls[0].tolist() == pytest.approx([want_l, 0.0, 3.0, 1.0], rel=1e-6)
    assert [float(s) for s in fake.sum_calls[1:]] == pytest.approx([local, 3.0], rel=1e-6)


def test_read_stats_reduce_leaves_the_local_sums_and_state_as_they_were():
    x, y = data(4)
    model = mlp()
    metric = MeanProb0()
    t = make(model, FakeDist(peers=[[0.0, 0.0, 0.0, 0.0], 0.0, 0.0]), metrics=[metric])
    t.evaluate(x, y)  # builds the trainer
    t._reset_stats()
    out = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # probabilities 1/3 each
    t._accumulate(torch.tensor(0.75), out, torch.tensor([0, 1]))
    t.dist = FakeDist(peers=[[4.5, 0.0, 6.0, 1.0], 2.0, 4.0])
    logs = t._read_stats(reduce=True)
    assert logs == pytest.approx({"loss": (1.5 + 4.5) / 8, "mean_prob0": (2 / 3 + 2.0) / 6},
                                 rel=1e-6)
    assert t._counts == [2, 1] and float(t._stats[0]) == 1.5
    assert float(metric.total) == pytest.approx(2 / 3, rel=1e-6) and float(metric.count) == 2.0
    assert t._read_stats() == pytest.approx({"loss": 0.75, "mean_prob0": 1 / 3}, rel=1e-6)


def test_read_stats_reduce_outside_torchrun_is_a_bug():
    t = make(mlp())
    with pytest.raises(AssertionError) as e:
        t._read_stats(reduce=True)
    assert str(e.value) == "_read_stats(reduce=True) outside torchrun"


# ------------------------------------------------------------------ rank 0 writes
def test_only_rank_zero_shows_progress(capsys):
    x, y = data(8)
    make(mlp(), FakeDist(rank=1, agreed=1, peers=[[0.0] * 4]), seed=1).fit(
        x, y, batch_size=4, epochs=1, verbose=2)
    assert capsys.readouterr().out == ""
    make(mlp(), FakeDist(rank=0, agreed=1, peers=[[0.0] * 4]), seed=1).fit(
        x, y, batch_size=4, epochs=1, verbose=2)
    assert capsys.readouterr().out.startswith("Epoch 1/1 - ")


def _run_with_writers(rank: int, folder, monkeypatch):
    monkeypatch.setenv("RANK", str(rank))
    os.makedirs(folder)
    x, y = data(8)
    xv, yv = data(4, seed=1)
    ckpt = ModelCheckpoint(str(folder / "best.safetensors"), monitor="loss",
                           save_best_only=True, verbose=1)
    every = ModelCheckpoint(str(folder / "ep{epoch}.safetensors"), verbose=1)
    never = ModelCheckpoint(str(folder / "never.safetensors"), monitor="loss",
                            save_best_only=True, initial_value_threshold=0.0, verbose=1)
    csv = CSVLogger(str(folder / "log.csv"))
    backup = BackupAndRestore(str(folder / "backup"), save_freq=1, delete_checkpoint=False)
    board = TensorBoard(str(folder / "tb"))
    make(mlp(), lr=0.1, seed=3).fit(x, y, batch_size=4, epochs=3, verbose=0,
                                    validation_data=(xv, yv),
                                    callbacks=[ckpt, every, never, csv, backup, board])
    return ckpt, csv


def test_only_rank_zero_writes_files_and_every_rank_keeps_the_state(tmp_path, monkeypatch,
                                                                    capsys):
    ckpt0, csv0 = _run_with_writers(0, tmp_path / "r0", monkeypatch)
    out0 = capsys.readouterr().out
    ckpt1, csv1 = _run_with_writers(1, tmp_path / "r1", monkeypatch)
    out1 = capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "r0")) == ["backup", "best.safetensors", "ep1.safetensors",
                                                   "ep2.safetensors", "ep3.safetensors",
                                                   "log.csv", "tb"]
    assert sorted(os.listdir(tmp_path / "r0" / "backup")) == ["latest.pt", "previous.pt"]
    assert sorted(os.listdir(tmp_path / "r0" / "tb")) == ["train", "validation"]
    assert os.listdir(tmp_path / "r1") == []
    assert ckpt1.best == ckpt0.best and ckpt0.best is not None
    assert csv1.state_dict() == csv0.state_dict()
    assert csv0.state_dict()["text"].count("\r\n") == 4  # header and 3 epochs
    assert out0.count("improved from") == 3 and out0.count("did not improve") == 3
    assert out0.count("saving model to") == 6 and out1 == ""


def test_backup_on_rank_one_never_deletes_rank_zeros_backups(tmp_path, monkeypatch):
    folder = tmp_path / "backup"
    os.makedirs(folder)
    for name in ("latest.pt", "previous.pt"):
        (folder / name).write_text("x")
    cb = BackupAndRestore(str(folder))
    cb.set_trainer(make(mlp()))
    monkeypatch.setenv("RANK", "1")
    cb.on_train_end()
    assert sorted(os.listdir(folder)) == ["latest.pt", "previous.pt"]
    cb._save()
    assert sorted(os.listdir(folder)) == ["latest.pt", "previous.pt"]
    assert (folder / "latest.pt").read_text() == "x"
    monkeypatch.setenv("RANK", "0")
    cb.on_train_end()
    assert not folder.exists()


def test_csv_logger_on_rank_one_restores_its_state_without_writing(tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    monkeypatch.setenv("RANK", "1")
    cb = CSVLogger(str(path))
    cb.on_train_begin()
    cb.load_state_dict({"base": 0, "text": "epoch,loss\r\n0,1.5\r\n", "keys": ["loss"],
                        "header": False})
    cb.on_epoch_end(1, {"loss": 0.5})
    cb.on_train_end()
    assert not path.exists()
    assert cb.state_dict() == {"base": 0, "text": "epoch,loss\r\n0,1.5\r\n1,0.5\r\n",
                               "keys": ["loss"], "header": False}


def test_callbacks_gate_on_the_process_rank_at_train_begin(tmp_path, monkeypatch):
    """``is_rank_zero`` as the callbacks see it decides, with no RANK in the environment."""
    monkeypatch.setattr("brisk.engine.callbacks.is_rank_zero", lambda: False)
    ckpt = ModelCheckpoint(str(tmp_path / "m.safetensors"), monitor="loss")
    csv = CSVLogger(str(tmp_path / "log.csv"))
    board = TensorBoard(str(tmp_path / "tb"))
    x, y = data(8)
    make(mlp(), lr=0.1, seed=3).fit(x, y, batch_size=4, epochs=1, verbose=0,
                                    callbacks=[ckpt, csv, board])
    assert os.listdir(tmp_path) == [] and ckpt._writes is False


# ------------------------------------------------------------------ regressions
def test_a_lambda_callback_batch_hook_counts_as_a_possible_stop():
    """LambdaCallback sets its hooks on the instance: a stop it asks mid-epoch must reach
    the other ranks (it crashed gloo with a collective mismatch)."""
    from brisk.callbacks import LambdaCallback

    assert _may_stop_mid_epoch(LambdaCallback(on_train_batch_end=lambda b, logs: None))
    assert not _may_stop_mid_epoch(LambdaCallback(on_epoch_end=lambda e, logs: None))
    x, y = data(24)
    fake = FakeDist(agreed=1, peers=[[0.0] * 4] * 4)
    t = make(mlp(), fake)

    def hook(batch, logs):
        if batch == 1:
            t.stop_training = True

    t.fit(x, y, batch_size=4, epochs=1, verbose=0,
          callbacks=[LambdaCallback(on_train_batch_end=hook)])
    # epoch begin, batch 0, batch 1 (this rank's stop sent out), then the epoch end
    assert fake.any_calls == [False, False, True, True]
    assert t.global_step == 2


def test_compiled_fit_keeps_its_batches_when_a_rank_shard_is_smaller_than_a_batch():
    """compile=True drops partial batches only when a rank's pass has a full one: 20 rows
    over 2 ranks at batch 16 train one partial batch per epoch (it trained nothing)."""
    x, y = data(20)
    fake = FakeDist(agreed=1, peers=[[0.0] * 4] * 4)
    t = make(mlp(), fake, lr=0.1, compile=True)
    t._setup_module = _setup_without_compile(t)  # the batching decision is what is checked
    hist = t.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert t.global_step == 2 and len(hist.history["loss"]) == 2


def _setup_without_compile(t):
    """Trainer._setup_module with compile off (the fit still reads self.compile=True to
    choose drop_last): torch.compile is slow and not what these tests check."""
    real = t._setup_module

    def setup(sample, batch_size=32):
        t.compile = False
        try:
            real(sample, batch_size)
        finally:
            t.compile = True

    return setup


def test_a_restored_dataset_run_reshuffles_with_the_backups_seed(tmp_path):
    """After BackupAndRestore restores, a torch Dataset's DistributedSampler shuffles with
    the backup's seed (a restarted rank drew a new one), as a DeviceLoader does."""
    from torch.utils.data import TensorDataset

    x, y = data(12)
    ds = TensorDataset(x, y)

    def run(agreed, epochs, backup=None):
        m = mlp()
        seen = Seen(m)
        t = make(m, FakeDist(agreed=agreed, peers=[[0.0] * 4] * 4), lr=0.1)
        cbs = [seen] + ([BackupAndRestore(backup, delete_checkpoint=False)] if backup else [])
        t.fit(ds, batch_size=3, epochs=epochs, verbose=0, callbacks=cbs)
        return seen.epochs

    ref = run(100, 2)
    run(100, 1, tmp_path / "b")  # the run killed after epoch 1
    resumed = run(200, 2, tmp_path / "b")  # restarted: Trainer(seed=None) drew 200
    assert resumed == [ref[1]]


# ------------------------------------------------------------------ sync_batchnorm
def test_sync_batchnorm_is_refused_on_cpu_under_torchrun_before_training():
    x, y = data(16)
    t = make(mlp(batchnorm=True), FakeDist(agreed=1, peers=[[0.0] * 4] * 4), lr=0.1,
             sync_batchnorm=True)
    with pytest.raises(ValueError) as e:
        t.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert str(e.value) == (
        "sync_batchnorm: torch's SyncBatchNorm runs on CUDA only, and this run is on cpu "
        "(gloo): drop sync_batchnorm=True (each rank then normalises with its own batch's "
        "statistics, and fit ends with rank 0's running statistics), or train on GPUs")
    assert t.global_step == 0
    with pytest.raises(TypeError) as e:
        make(mlp(), sync_batchnorm=1)
    assert str(e.value) == "sync_batchnorm: expected True or False, got 1"


def test_sync_batchnorm_has_no_effect_in_one_process():
    x, y = data(16)
    a, b = mlp(batchnorm=True), mlp(batchnorm=True)
    make(a, lr=0.1, sync_batchnorm=True, seed=3).fit(x, y, batch_size=4, epochs=2, verbose=0)
    make(b, lr=0.1, seed=3).fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))
    assert isinstance(a[1], nn.BatchNorm1d) and not isinstance(a[1], nn.SyncBatchNorm)


def test_sync_batchnorm_conversion_keeps_the_tensors_and_the_keys():
    """The conversion (the CUDA path; converting needs no GPU) swaps BatchNorm modules for
    SyncBatchNorm ones holding the same parameter and buffer tensors, nested ones included
    (brisk's BatchNormalization layer holds a torch BatchNorm)."""
    from brisk.layers import BatchNormalization, Dense

    torch_net = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.BatchNorm1d(4), nn.ReLU()))
    keras_net = brisk.Sequential([Dense(4, input_shape=(3,)), BatchNormalization()])
    for net in (torch_net, keras_net):
        before = dict(net.state_dict(keep_vars=True))
        distributed.sync_batchnorm(net, torch.device("cuda"))
        after = dict(net.state_dict(keep_vars=True))
        assert after.keys() == before.keys()
        assert all(after[k] is before[k] for k in before)
        kinds = [type(m) for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert kinds == [nn.SyncBatchNorm]


# ------------------------------------------------------------------ FSDP (strategy=)
class FakeFSDP(_Forward):
    """What ``FakeShardingDist.shard`` returns: the module through ``fn``, unsharded; records
    each gradient-sync setting and each forward."""

    def __init__(self, module, fn, log):
        super().__init__(module, fn)
        self.syncs: list[bool] = []
        self.forwards: list[tuple[int, bool]] = []  # (rows, full)
        self.log = log

    def set_requires_gradient_sync(self, flag):
        self.syncs.append(flag)

    def reshard(self):
        self.log.append("reshard")

    def forward(self, x, full=False):
        self.forwards.append((x.shape[0], full))
        self.log.append("forward")
        return super().forward(x, full)


class FakeShardingDist(FakeDist):
    """``FakeDist`` that 'shards' (a ``FakeFSDP`` root) and whose ``max`` over ranks is at
    least ``most`` (another rank ran that many inference batches)."""

    def __init__(self, most: int = 0, **kw):
        super().__init__(**kw)
        self.most = most
        self.roots: list[tuple[FakeFSDP, str]] = []
        self.max_calls: list[int] = []

    def shard(self, module, fn, precision):
        root = FakeFSDP(module, fn, self.log)
        self.roots.append((root, precision))
        self.log.append("shard")
        return root

    def max(self, value):
        self.max_calls.append(value)
        self.log.append("max")
        return max(value, self.most)


def test_strategy_is_checked():
    for bad in ("zero", None, "DDP", 1):
        with pytest.raises(ValueError) as e:
            make(mlp(), strategy=bad)
        assert str(e.value) == f"strategy: expected one of 'ddp', 'fsdp', 'auto', got {bad!r}"
    assert make(mlp()).strategy == "ddp"  # the default


def test_auto_picks_fsdp_when_the_training_state_exceeds_half_the_memory():
    """4 copies of the weights (weights, gradients, 2 optimizer slots): 1000 float32
    weights are 16,000 bytes; FSDP from more than half of a process's memory."""
    from brisk.distributed import choose_strategy

    m = nn.Linear(999, 1)  # 999 + 1 weights
    kind, why = choose_strategy(m, torch.device("cpu"), 4, memory=31_999)
    assert kind == "fsdp"
    assert why == ("strategy='auto' chose 'fsdp': a full copy of the training state (weights, "
                   "gradients, 2 optimizer slots: 15.6 KiB) exceeds half of the 31.2 KiB one "
                   "process has on cpu; sharded over 4 processes it is 3.9 KiB each")
    assert choose_strategy(m, torch.device("cpu"), 4, memory=32_000)[0] == "ddp"
    kind, why = choose_strategy(m.to(torch.bfloat16), torch.device("cpu"), 4, memory=16_000)
    assert kind == "ddp" and "slots: 7.8 KiB) fits in half of the 15.6 KiB" in why  # the dtype counts
    assert "5.0 GiB" in choose_strategy(m, torch.device("cpu"), 2, memory=5 * 2**30)[1]


def test_fsdp_blocks_are_the_children_with_weights_through_containers():
    from brisk.distributed import fsdp_blocks

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(2, 4)
            self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4), nn.ReLU())])
            self.act = nn.ReLU()
            self.head = nn.Linear(4, 2)

    net = Net()
    assert fsdp_blocks(net) == [net.embed, net.layers[0], net.layers[1][0], net.head]
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.BatchNorm1d(3))
    assert fsdp_blocks(seq) == [seq[0], seq[2]]


def fit_error(t, x, y, **fit) -> str:
    """The ValueError message of ``t.fit`` (batch 4, silent)."""
    with pytest.raises(ValueError) as e:
        t.fit(x, y, batch_size=4, verbose=0, **fit)
    return str(e.value)


def test_fsdp_refuses_what_it_cannot_shard_before_training():
    x, y = data(8)
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = brisk.Trainer(model, optimizer=opt, loss="cross_entropy", device="cpu", strategy="fsdp")
    t.dist = FakeShardingDist(agreed=1)
    assert fit_error(t, x, y) == (
        "optimizer: strategy='fsdp' replaces the weights by shards, so a torch optimizer built "
        "on the full weights would update nothing; pass a name, a brisk.optimizers object or a "
        "callable params -> optimizer")
    t = brisk.Trainer(model, optimizer="schedulefree_adamw", loss="cross_entropy",
                      device="cpu", strategy="fsdp")
    t.dist = FakeShardingDist(agreed=1)
    assert fit_error(t, x, y) == ("optimizer: schedule-free optimizers are not supported with "
                            "strategy='fsdp'; use strategy='ddp' or another optimizer")
    t = make(model, FakeShardingDist(agreed=1), lr=0.1, strategy="fsdp")
    t._ensure_optimizer()
    t.optimizer.state[next(model.parameters())]["momentum_buffer"] = torch.zeros(1)
    assert fit_error(t, x, y) == (
        "strategy='fsdp': the optimizer already holds state for the full (unsharded) weights, "
        "e.g. from a .pt checkpoint; load a sharded checkpoint (a folder written by "
        "save_checkpoint under FSDP)")
    t = make(model, FakeShardingDist(agreed=1), lr=0.1, strategy="fsdp")
    mc = brisk.callbacks.ModelCheckpoint("/nonexistent/m.safetensors")
    assert fit_error(t, x, y, callbacks=[mc]) == (
        "callbacks: ModelCheckpoint is not supported with strategy='fsdp' yet (it writes on "
        "rank 0, and saving sharded weights needs every rank): call "
        "trainer.save_checkpoint(folder) on every rank (e.g. from a LambdaCallback's "
        "on_epoch_end), or use strategy='ddp'")
    t = make(model, FakeShardingDist(agreed=1), lr=0.1, strategy="fsdp")
    with pytest.raises(ValueError, match="^callbacks: BackupAndRestore is not supported"):
        t.fit(x, y, batch_size=4, verbose=0, callbacks=[
            brisk.callbacks.LambdaCallback(), brisk.callbacks.BackupAndRestore("/nonexistent")])
    t = make(model, FakeShardingDist(agreed=1), lr=0.1, strategy="fsdp")
    assert fit_error(t, x, y, on_nan="restore") == ("on_nan: 'restore' is not supported with strategy='fsdp' (it keeps "
                            "a copy of the whole training state); use 'stop'")
    # Muon is two torch optimizers in one (a CombinedOptimizer): refused, naming it
    t = brisk.Trainer(model, optimizer="muon", loss="cross_entropy", device="cpu", strategy="fsdp")
    t.dist = FakeShardingDist(agreed=1)
    assert fit_error(t, x, y) == (
        "optimizer: strategy='fsdp' needs one torch.optim.Optimizer (its sharded checkpoints go "
        "through torch.distributed.checkpoint), got CombinedOptimizer")

    class NotAnOptimizer:  # a callable's result that is no torch optimizer
        def __init__(self, params):
            self.param_groups, self.state = [{"params": list(params), "lr": 0.1}], {}

    t = brisk.Trainer(model, optimizer=NotAnOptimizer, loss="cross_entropy", device="cpu",
                      strategy="fsdp")
    t.dist = FakeShardingDist(agreed=1)
    assert fit_error(t, x, y).endswith("got NotAnOptimizer")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # fp16 loss scaling over shards: refused by the policy itself, before any collective
    with pytest.raises(ValueError, match="^precision: 'fp16-mixed' with strategy='fsdp'"):
        Distributed.shard(FakeDist(), model, model, "fp16-mixed")
    with pytest.raises(ValueError, match=r"^precision: pure 'bf16' with strategy='fsdp' is "
                                         r"not supported \(its float32 master weights"):
        Distributed.shard(FakeDist(), model, model, "bf16")


@pytest.mark.parametrize("memory, rank, verbose, shards, printed", [
    (10**12, 0, 2, False, True),   # plenty of memory: DDP, said on rank 0
    (16, 0, 2, True, True),        # 16 bytes per process: FSDP
    (16, 1, 2, True, False),       # rank 1 prints nothing
    (16, 0, 0, True, False),       # verbose=0 prints nothing
])
def test_auto_strategy_chooses_once_from_the_process_memory_and_says_why(
        monkeypatch, capsys, memory, rank, verbose, shards, printed):
    asked = []

    def process_memory(device):
        asked.append(device)
        return memory

    monkeypatch.setattr(brisk.distributed, "process_memory", process_memory)
    x, y = data(8)
    fake = FakeShardingDist(rank=rank, agreed=3, peers=[[0.0] * 4, [0.0] * 4])
    t = make(mlp(), fake, lr=0.1, strategy="auto", seed=3)
    t.fit(x, y, batch_size=4, epochs=1, verbose=verbose)
    t.fit(x, y, batch_size=4, epochs=1, verbose=verbose)  # decided once
    assert asked == [torch.device("cpu")]
    assert (len(fake.roots), len(fake.wrapped)) == ((1, 0) if shards else (0, 1))
    assert t.strategy_reason.startswith(f"strategy='auto' chose '{'fsdp' if shards else 'ddp'}'")
    out = capsys.readouterr().out
    assert (t.strategy_reason in out) == printed and out.count("strategy='auto'") == printed


def test_fsdp_trains_through_the_root_and_syncs_gradients_on_the_last_micro_batch():
    """Rank 0 of 2, accumulate=2, one sample per batch: gradient sync off on the first
    micro-batch of each group, on for the last; the root is built on the function the
    engine trains, with the precision mode, before the optimizer (built on its weights)."""
    x, y = data(8)
    fake = FakeShardingDist(agreed=3, peers=[[0.0, 0.0, 0.0, 0.0]])
    t = make(mlp(), fake, lr=0.1, strategy="fsdp", accumulate=2, seed=3)
    t.fit(x, y, batch_size=1, epochs=1, verbose=0)
    (root, precision), = fake.roots
    assert precision == "fp32" and root.module is t.module and t._fsdp is root
    assert root.syncs == [False, True, False, True]  # 4 batches of rank 0's 4 rows
    assert [f for f in root.forwards if f[0] == 1][-4:] == [(1, False)] * 4
    assert t.global_step == 2 and fake.log.index("shard") < fake.log.index("agree")
    assert t.optimizer.param_groups[0]["params"][0] is next(t.module.parameters())


def test_fsdp_inference_pads_its_forwards_to_the_ranks_most_batches():
    """Under FSDP every forward is a collective: rank 0 evaluates its 4 of 8 rows in 2
    batches while another rank ran 5, so it runs 3 more forwards of one sample; predict
    goes through the root with the model's own forward (full=True)."""
    x, y = data(8)
    fake = FakeShardingDist(agreed=3, peers=[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
                            most=5, after=torch.zeros(4, CLASSES))
    t = make(mlp(), fake, lr=0.1, strategy="fsdp", seed=3)
    t.fit(x, y, batch_size=4, epochs=1, verbose=0)
    (root, _), = fake.roots
    n, at = len(root.forwards), len(fake.log)
    t.evaluate(x, y, batch_size=2)
    assert root.forwards[n:] == [(2, False), (2, False), (1, False), (1, False), (1, False)]
    assert fake.max_calls == [2]
    # the count is agreed before the first forward (a collective between forwards would
    # pair with another rank's all-gather), and the root is resharded after
    assert fake.log[at:] == ["max", "broadcast_buffers", *["forward"] * 5, "reshard", "sum"]
    n = len(root.forwards)
    out = t.predict(x, batch_size=4)
    assert root.forwards[n:] == [(4, True), (1, False), (1, False), (1, False), (1, False)]
    assert fake.max_calls == [2, 1] and out.shape == (8, CLASSES)


def test_a_sharded_checkpoint_folder_is_checked_before_anything_loads(tmp_path):
    t = make(mlp())
    with pytest.raises(ValueError) as e:
        t.load_checkpoint(tmp_path)
    assert str(e.value).startswith(f"checkpoint {str(tmp_path)!r}: is a folder, not a "
                                   "checkpoint (a sharded checkpoint is a folder with .metadata")
    (tmp_path / ".metadata").write_bytes(b"")
    (tmp_path / "trainer.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="a sharded checkpoint \\(a folder\\) loads under "
                                         "torchrun into a Trainer\\(strategy='fsdp' or 'auto'\\)"):
        t.load_checkpoint(tmp_path)  # one process
    t = make(mlp(), FakeShardingDist(), strategy="ddp")
    with pytest.raises(ValueError, match="loads under torchrun into a Trainer"):
        t.load_checkpoint(tmp_path)
    t = make(mlp(), FakeShardingDist(), strategy="fsdp")
    with pytest.raises(ValueError, match="trainer.pt': corrupt, truncated or not a checkpoint"):
        t.load_checkpoint(tmp_path)  # the unsharded state is read at once
    from brisk.engine.checkpoint import save_checkpoint

    rest = {k: v for k, v in make(mlp(), seed=1).state_dict().items() if k != "model"}
    rest.update(epoch=2, global_step=7)
    save_checkpoint(tmp_path / "trainer.pt", rest)
    t = make(mlp(), FakeShardingDist(), strategy="fsdp")
    t.load_checkpoint(tmp_path)  # not sharded yet: the weights are loaded when it is
    assert t._pending_sharded == str(tmp_path)
    assert (t.epoch, t.global_step) == (2, 7)  # the rest now (a resume reads trainer.epoch)
    t = make(mlp(), FakeShardingDist(), strategy="fsdp", precision="bf16-mixed")
    with pytest.raises(ValueError) as e:
        t.load_checkpoint(tmp_path)
    assert str(e.value) == (f"checkpoint {str(tmp_path)!r}: written with precision 'fp32', "
                            "this run uses 'bf16-mixed'")
    assert (t.epoch, t._pending_sharded) == (0, None)


def test_fsdp_with_sync_batchnorm_is_refused_on_cpu_before_sharding():
    x, y = data(8)
    fake = FakeShardingDist(agreed=1)
    t = make(mlp(batchnorm=True), fake, lr=0.1, strategy="fsdp", sync_batchnorm=True)
    with pytest.raises(ValueError) as e:
        t.fit(x, y, batch_size=4, verbose=0)
    assert str(e.value).startswith("sync_batchnorm: torch's SyncBatchNorm runs on CUDA only, "
                                   "and this run is on cpu (gloo)")
    assert fake.roots == []  # refused before anything was sharded


# ------------------------------------------------------------------ FSDP for real, 1 rank
@pytest.fixture
def one_rank_group(tmp_path):
    """A real gloo process group of one rank in this process (FSDP and
    torch.distributed.checkpoint run for real; torchrun's 2-rank runs are in
    tests/distributed), destroyed afterwards."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        yield Distributed(torch.device("cpu"))
    finally:
        dist.destroy_process_group()


def test_real_fsdp_on_one_rank_checkpoints_a_folder_and_resumes_exactly(one_rank_group, tmp_path):
    """fully_shard for real (one rank: shards are whole tensors): fit, save_checkpoint
    (a folder renamed into place), fit on; a fresh trainer loading the folder before its
    model is sharded ends bit-identical; a checkpoint of another model is refused, naming
    the folder, before any weight changes; save() writes the full weights."""
    from torch.distributed.tensor import DTensor

    from brisk.engine.checkpoint import load_safetensors

    x, y = data(16)
    kw = dict(strategy="fsdp", seed=3, lr=0.1)
    t = make(mlp(seed=0), one_rank_group, **kw)
    t.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert isinstance(next(t.module.parameters()), DTensor)
    ckpt = tmp_path / "ckpt"
    t.save_checkpoint(ckpt)
    assert sorted(os.listdir(ckpt)) == [".metadata", "__0_0.distcp", "trainer.pt"]
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "store"]  # no temp folder left
    t.save_checkpoint(ckpt)  # over an existing one
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "store"]
    t.fit(x, y, batch_size=4, epochs=3, initial_epoch=2, verbose=0)
    want = {k: v.full_tensor() for k, v in t.module.state_dict().items()}
    t.save(tmp_path / "full.safetensors")
    full, _ = load_safetensors(tmp_path / "full.safetensors", "test")
    assert full.keys() == want.keys() and all(torch.equal(full[k], want[k]) for k in want)

    t2 = make(mlp(seed=5), one_rank_group, **kw)
    t2.load_checkpoint(ckpt)  # pending: applied when fit shards the model
    assert (t2.epoch, t2.global_step) == (1, 8)  # the rest at once: epoch 1 (0-based) ended
    t2.fit(x, y, batch_size=4, epochs=3, initial_epoch=2, verbose=0)
    got = {k: v.full_tensor() for k, v in t2.module.state_dict().items()}
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert t2.global_step == t.global_step == 12

    wide = nn.Sequential(nn.Linear(FEATURES, 9), nn.ReLU(), nn.Linear(9, CLASSES))
    t3 = make(wide, one_rank_group, **kw)
    t3.fit(x, y, batch_size=4, epochs=1, verbose=0)
    before = {k: v.full_tensor().clone() for k, v in wide.state_dict().items()}
    with pytest.raises(ValueError) as e:
        t3.load_checkpoint(ckpt)
    assert str(e.value) == (f"checkpoint {str(ckpt)!r}: model.module.0.weight is (8, 3), "
                            "this model's (9, 3)")
    assert all(torch.equal(v.full_tensor(), before[k]) for k, v in wide.state_dict().items())


class RootScaled(nn.Module):
    """Nested blocks and a weight on the root itself (FSDP's root keeps its own weights
    gathered after a forward until resharded)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.scale = nn.Parameter(torch.ones(8))
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(FEATURES, 8), nn.ReLU())])
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x):
        return self.head(self.blocks[0](x) * self.scale)


def test_real_fsdp_keeps_a_root_weights_optimizer_state_across_fits(one_rank_group):
    """Two fits equal one (Adam's moments of the root's own weight kept: the optimizer is
    not rebuilt on the gathered root weight), with validation in between."""
    from torch.distributed.tensor import DTensor

    x, y = data(16)
    runs = []
    for split in (True, False):
        model = RootScaled()
        t = brisk.Trainer(model, optimizer="adam", loss="cross_entropy", device="cpu",
                          strategy="fsdp", seed=3)
        t.dist = one_rank_group
        if split:
            t.fit(x, y, batch_size=4, epochs=2, verbose=0, validation_data=(x[:5], y[:5]))
            opt = t.optimizer
            t.fit(x, y, batch_size=4, epochs=4, initial_epoch=2, verbose=0)
            assert t.optimizer is opt  # not rebuilt
        else:
            t.fit(x, y, batch_size=4, epochs=4, verbose=0)
        assert isinstance(model.scale, DTensor)  # resharded after fit
        runs.append({k: v.full_tensor() for k, v in model.state_dict().items()})
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "adam", "adamw", "rmsprop"])
def test_real_fsdp_trains_with_each_optimizer(one_rank_group, name):
    """The fused SGD and Adagrad kernels have no DTensor rule: foreach under FSDP."""
    x, y = data(8)
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    t = brisk.Trainer(model, optimizer=name, loss="cross_entropy", device="cpu",
                      strategy="fsdp", seed=3)
    t.dist = one_rank_group
    t.fit(x, y, batch_size=4, epochs=1, verbose=0)
    after = [p.full_tensor() for p in model.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    # fused where the kernel takes shards (Adam, AdamW), else foreach
    assert bool(t.optimizer.defaults.get("fused")) == (name in ("adam", "adamw"))


def test_real_fsdp_checkpoint_edges(one_rank_group, tmp_path):
    """trainer.pt holds no weights or optimizer state (they are the shards); a checkpoint
    inside an accumulation group is refused; a model with nothing to train saves and loads
    its weights alone; a load from on_train_begin moves fit to the checkpoint's position."""
    x, y = data(16)
    kw = dict(strategy="fsdp", seed=3, lr=0.1)
    t = make(mlp(seed=0), one_rank_group, **kw)
    t.fit(x, y, batch_size=4, epochs=1, verbose=0)
    ckpt = tmp_path / "ckpt"
    t.save_checkpoint(ckpt)
    rest = torch.load(ckpt / "trainer.pt", weights_only=True)
    assert not {"model", "optimizer", "optimizer_params", "grads"} & set(rest)
    assert {"global_step", "epoch", "rng"} <= set(rest), sorted(rest)

    acc = make(mlp(seed=0), one_rank_group, accumulate=2, **kw)
    saver = brisk.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: acc.save_checkpoint(tmp_path / "mid"))
    with pytest.raises(ValueError) as e:
        acc.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[saver])
    assert str(e.value) == ("save_checkpoint: under strategy='fsdp' checkpoints are taken "
                            "between optimizer steps, not inside an accumulation group")

    frozen = mlp(seed=1)
    frozen.trainable = False
    f = make(frozen, one_rank_group, **kw)
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        f.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert f.optimizer is None
    f.save_checkpoint(tmp_path / "frozen")
    want = {k: v.full_tensor().clone() for k, v in frozen.state_dict().items()}
    other = mlp(seed=2)
    other.trainable = False
    g = make(other, one_rank_group, **kw)
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        g.fit(x, y, batch_size=4, epochs=1, verbose=0)  # sharded, no optimizer
    g.load_checkpoint(tmp_path / "frozen")
    got = {k: v.full_tensor() for k, v in other.state_dict().items()}
    assert all(torch.equal(got[k], want[k]) for k in want)

    # loaded by a callback as training begins: fit goes on from the checkpoint's epoch
    h = make(mlp(seed=4), one_rank_group, **kw)
    loader = brisk.callbacks.LambdaCallback(on_train_begin=lambda logs: h.load_checkpoint(ckpt))
    hist = h.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[loader])
    assert hist.epoch == [1] and h.global_step == 8
    t.fit(x, y, batch_size=4, epochs=2, initial_epoch=1, verbose=0)
    a = {k: v.full_tensor() for k, v in t.module.state_dict().items()}
    b = {k: v.full_tensor() for k, v in h.module.state_dict().items()}
    assert all(torch.equal(a[k], b[k]) for k in a)


class Rows(brisk.metrics.Metric):
    """A Keras-style metric (update_state/result): mean rows per batch."""

    name = "rows"

    def __init__(self):
        super().__init__()
        self.total = self.add_weight(name="total")
        self.count = self.add_weight(name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total += y_true.shape[0]
        self.count += 1

    def result(self):
        return self.total / self.count


def test_reduced_epoch_logs_keep_each_metrics_own_count():
    """Over 2 ranks a Keras-style metric's result comes from its summed state (count 1),
    a plain metric's from the summed sums and counts, whichever order they are listed in."""
    x, y = data(8)
    model = mlp()
    loss, hits = ce_sum(model, x[0::2], y[0::2]), correct(model, x[0::2], y[0::2])
    # peers: [loss, rows (unused), accuracy sums | their counts], then rows' total and count
    fake = FakeDist(rank=0, agreed=2, peers=[[0.5, 0.0, 3.0, 4.0, 1.0, 4.0], 6.0, 2.0])
    hist = make(model, fake, metrics=(Rows(), "accuracy"), seed=2).fit(
        x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    assert hist.history["rows"] == pytest.approx([(4 + 6) / (2 + 2)])
    assert hist.history["accuracy"] == pytest.approx([(hits + 3) / 8], rel=1e-6)
    assert hist.history["loss"] == pytest.approx([(loss + 0.5) / 8], rel=1e-6)
