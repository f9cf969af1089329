"""Exact unit checks of brisk.engine.step.class_sample_weights (Keras's
class_weight_to_sample_weights: one-hot labels by argmax over the last axis, a trailing
axis of 1 squeezed, values rounded to the class index, here also clamped into the table)
and of brisk.engine.freeze's flag helpers. Expected values are written out by hand from
those rules. Objects are built inside each test (tools/mutation/README.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import brisk.api.layers as layers_mod
from brisk.api.layers import Dense
from brisk.api.sequential import Sequential
from brisk.engine.freeze import apply_trainable, check_flag, set_trainable, trainable_parameters
from brisk.engine.step import class_sample_weights

# ------------------------------------------------------------------ class_sample_weights


def _table():
    return torch.tensor([2.0, 3.0, 5.0, 7.0])


def test_class_weights_for_integer_labels():
    w = class_sample_weights(_table(), torch.tensor([3, 0, 2, 1]))
    assert w.tolist() == [7.0, 2.0, 5.0, 3.0]


def test_class_weights_for_n_by_1_labels_squeeze_not_argmax():
    w = class_sample_weights(_table(), torch.tensor([[1], [3], [0]]))
    assert w.shape == (3,)
    assert w.tolist() == [3.0, 7.0, 2.0]


def test_class_weights_for_a_single_n_by_1_label():
    w = class_sample_weights(_table(), torch.tensor([[2]]))
    assert w.shape == (1,)
    assert w.tolist() == [5.0]


def test_class_weights_for_one_hot_labels_use_argmax():
    y = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert class_sample_weights(_table(), y).tolist() == [5.0, 3.0, 7.0]


def test_class_weights_for_a_single_one_hot_label():
    y = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    w = class_sample_weights(_table(), y)
    assert w.shape == (1,)
    assert w.tolist() == [7.0]


def test_class_weights_for_two_class_one_hot_labels():
    y = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert class_sample_weights(_table(), y).tolist() == [3.0, 2.0, 3.0]


def test_class_weights_per_timestep_one_hot():
    # (N=2, T=3, C=4) one-hot: argmax over the classes, one weight per sample and step
    cls = [[1, 3, 0], [2, 2, 1]]
    y = torch.zeros(2, 3, 4)
    for i, row in enumerate(cls):
        for t, c in enumerate(row):
            y[i, t, c] = 1.0
    w = class_sample_weights(_table(), y)
    assert w.shape == (2, 3)
    assert w.tolist() == [[3.0, 7.0, 2.0], [5.0, 5.0, 3.0]]


def test_class_weights_per_timestep_index_labels_with_trailing_axis():
    # (N=2, T=3, 1) class indices: the trailing 1 is squeezed, not argmax'ed
    y = torch.tensor([[[1], [3], [0]], [[2], [0], [1]]])
    w = class_sample_weights(_table(), y)
    assert w.shape == (2, 3)
    assert w.tolist() == [[3.0, 7.0, 2.0], [5.0, 2.0, 3.0]]


def test_class_weights_round_float_labels():
    # 1.7 rounds to 2 (truncation would give 1), 0.6 to 1, 2.2 to 2
    y = torch.tensor([1.7, 0.6, 2.2, 0.2])
    assert class_sample_weights(_table(), y).tolist() == [5.0, 3.0, 5.0, 2.0]


def test_class_weights_for_bool_labels():
    y = torch.tensor([True, False, True])
    assert class_sample_weights(_table(), y).tolist() == [3.0, 2.0, 3.0]


def test_class_weights_clamp_labels_into_the_table():
    # below 0: the first entry; at or past the end: the last one
    y = torch.tensor([-1, 4, 9, 3])
    assert class_sample_weights(_table(), y).tolist() == [2.0, 7.0, 7.0, 7.0]


# ------------------------------------------------------------------ check_flag


def test_check_flag_accepts_bools_and_0_1():
    assert check_flag(True) is True
    assert check_flag(False) is False
    assert check_flag(np.bool_(False)) is False
    assert check_flag(1) is True
    assert check_flag(0) is False
    assert check_flag(np.int64(1)) is True


@pytest.mark.parametrize("bad", [2, -1, 1.0, 0.0, "yes", None])
def test_check_flag_rejects_anything_else(bad):
    with pytest.raises(TypeError) as e:
        check_flag(bad)
    assert str(e.value) == f"trainable: expected True or False, got {bad!r}"


# ------------------------------------------------------------------ set_trainable / apply_trainable


def test_set_trainable_forgets_what_the_flags_froze():
    """A parameter frozen by a flag and then re-enabled by set_trainable is no longer
    the flags' to manage: freezing it by hand afterwards sticks."""
    root = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    first = root[0]
    first.trainable = False  # a plain attribute on a torch module
    apply_trainable(root)
    assert not first.weight.requires_grad and root[1].weight.requires_grad

    set_trainable(root, True)  # re-enables everything below root
    assert first.weight.requires_grad and first.bias.requires_grad
    first.weight.requires_grad_(False)  # the user's own freeze, no flag involved
    apply_trainable(root)
    assert first.weight.requires_grad is False
    assert first.bias.requires_grad is True
    ids = {id(p) for p in trainable_parameters(root)}
    assert ids == {id(first.bias), id(root[1].weight), id(root[1].bias)}


def test_setting_a_models_flag_does_not_rerun_each_layers_setter(monkeypatch):
    """Setting the flag on a model sets every layer below it once (Keras's setter), without
    running each brisk layer's own setter again (which would re-propagate below it)."""
    calls = []
    real = layers_mod.set_trainable

    def counting(module, value):
        calls.append(module)
        real(module, value)

    monkeypatch.setattr(layers_mod, "set_trainable", counting)
    model = Sequential([Dense(3), Dense(2)])
    a, b = model.layers[0], model.layers[1]
    model.trainable = False
    assert calls == []
    assert a.trainable is False and b.trainable is False
    model.trainable = True
    assert calls == []
    assert a.trainable is True and b.trainable is True
    a.trainable = False  # a layer's own setter does run when the layer itself is set
    assert calls == [a]


# ------------------------------------------------------------------ step: with a stand-in trainer


class _Precision:
    """Records what the step hands to the precision policy (no loss scaling)."""

    def __init__(self):
        self.backward_losses, self.unscaled, self.stepped = [], [], []

    def backward(self, loss):
        self.backward_losses.append(float(loss))

    def unscale(self, optimizer):
        self.unscaled.append(optimizer)

    def step(self, optimizer):
        self.stepped.append(optimizer)
        optimizer.step()


def _batch_trainer(cw_table=None, nothing_to_train=False):
    from types import SimpleNamespace

    t = SimpleNamespace(_cw_table=cw_table, _nothing_to_train=nothing_to_train, _fsdp=None,
                        precision=_Precision(), fwd=[], accumulated=[])

    def fwd_loss(xb, yb, wb=None):
        t.fwd.append((None if wb is None else wb.tolist(), torch.is_grad_enabled()))
        return xb * 2.0, xb.sum() * 1.5  # loss 1.5 * sum(x)

    t._fwd_loss = fwd_loss
    t._accumulate = lambda loss, out, yb: t.accumulated.append(float(loss))
    return t


def test_train_batch_multiplies_sample_and_class_weights():
    from brisk.engine.step import train_batch

    t = _batch_trainer(cw_table=torch.tensor([2.0, 3.0, 5.0]))
    x = torch.tensor([1.0, 1.0, 2.0])  # loss 6.0
    train_batch(t, x, torch.tensor([1, 0, 2]), 1.0, torch.tensor([0.5, 2.0, 4.0]))
    assert t.fwd == [([0.5 * 3.0, 2.0 * 2.0, 4.0 * 5.0], True)]
    assert t.precision.backward_losses == [6.0]
    assert t.accumulated == [6.0]


def test_train_batch_class_weights_alone():
    from brisk.engine.step import train_batch

    t = _batch_trainer(cw_table=torch.tensor([2.0, 3.0, 5.0]))
    train_batch(t, torch.tensor([1.0, 3.0]), torch.tensor([2, 1]), 1.0)
    assert t.fwd == [([5.0, 3.0], True)]


def test_train_batch_scales_the_backward_loss_by_its_share():
    from brisk.engine.step import train_batch

    for weight, expected in ((2.0, 12.0), (0.25, 1.5), (1.0, 6.0)):
        t = _batch_trainer()
        train_batch(t, torch.tensor([1.0, 3.0]), torch.tensor([0, 1]), weight)
        assert t.fwd == [(None, True)]
        assert t.precision.backward_losses == [expected]
        assert t.accumulated == [6.0]  # the reported loss is not scaled


def test_train_batch_with_nothing_to_train_runs_without_grad_or_backward():
    from brisk.engine.step import train_batch

    t = _batch_trainer(nothing_to_train=True)
    train_batch(t, torch.tensor([1.0, 3.0]), torch.tensor([0, 1]), 1.0)
    assert t.fwd == [(None, False)]
    assert t.precision.backward_losses == []
    assert t.accumulated == [6.0]


def test_train_batch_with_nothing_to_train_keeps_the_sample_weights():
    from brisk.engine.step import train_batch

    t = _batch_trainer(nothing_to_train=True)
    fwd, labels = t._fwd_loss, []
    t._fwd_loss = lambda xb, yb, wb=None: (labels.append(yb.tolist()), fwd(xb, yb, wb))[1]
    train_batch(t, torch.tensor([1.0, 3.0]), torch.tensor([0, 1]), 1.0, torch.tensor([0.5, 2.0]))
    assert t.fwd == [([0.5, 2.0], False)] and labels == [[0, 1]]
    assert t.precision.backward_losses == [] and t.accumulated == [6.0]


def test_train_batch_inside_an_accumulation_group_under_ddp_keeps_the_weights():
    """A micro-batch before the last of its group runs under DDP's no_sync, with its
    sample weights."""
    import contextlib

    from brisk.engine.step import train_batch

    t = _batch_trainer()
    entered = []

    @contextlib.contextmanager
    def no_sync():
        entered.append(True)
        yield

    from types import SimpleNamespace

    t._ddp = SimpleNamespace(no_sync=no_sync)
    t._fwd = t._ddp
    train_batch(t, torch.tensor([1.0, 3.0]), torch.tensor([0, 1]), 1.0, torch.tensor([0.5, 2.0]),
                sync=False)
    assert entered == [True] and t.fwd == [([0.5, 2.0], True)]
    assert t.precision.backward_losses == [6.0]


def test_zero_grad_sets_grads_to_none_and_calls_an_optimizers_own_method():
    """torch's own zero_grad is replaced by its loop (no profiler range); an optimizer's own
    zero_grad (its class's or set on the instance) is called, with set_to_none=True."""
    from brisk.engine.step import zero_grad

    p = nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    opt = torch.optim.SGD([p], lr=0.1)
    zero_grad(opt)
    assert p.grad is None
    calls = []

    class Own(torch.optim.SGD):
        def zero_grad(self, set_to_none=True):
            calls.append(("class", set_to_none))

    own = Own([p], lr=0.1)
    zero_grad(own)
    inst = torch.optim.SGD([p], lr=0.1)
    inst.zero_grad = lambda set_to_none=True: calls.append(("instance", set_to_none))
    zero_grad(inst)
    assert calls == [("class", True), ("instance", True)]


def _step_trainer(clip_norm=None, spec=None):
    from types import SimpleNamespace

    p = nn.Parameter(torch.tensor([3.0, 4.0]))
    p.grad = torch.tensor([3.0, 4.0])  # norm 5
    opt = torch.optim.SGD([p], lr=0.1)
    spec = spec or SimpleNamespace(clipnorm=None, global_clipnorm=None, clipvalue=None)
    t = SimpleNamespace(_nothing_to_train=False, optimizer=opt, optimizer_spec=spec,
                        clip_norm=clip_norm, clip_value=None, precision=_Precision(), global_step=0)
    return t, p, opt


def test_optimizer_step_unscales_the_optimizer_before_trainer_clipping():
    from brisk.engine.step import optimizer_step

    t, p, opt = _step_trainer(clip_norm=1.0)
    optimizer_step(t, None, 0)
    assert t.precision.unscaled == [opt] and t.precision.stepped == [opt]
    # grad (3, 4) clipped to norm 1: (0.6, 0.8); SGD lr 0.1
    assert p.detach().tolist() == pytest.approx([3.0 - 0.06, 4.0 - 0.08], rel=1e-6)
    assert p.grad is None and t.global_step == 1


def test_optimizer_step_unscales_the_optimizer_before_keras_clipping():
    from types import SimpleNamespace

    from brisk.engine.step import optimizer_step

    spec = SimpleNamespace(clipnorm=1.0, global_clipnorm=None, clipvalue=None)
    t, p, opt = _step_trainer(spec=spec)
    optimizer_step(t, None, 0)
    assert t.precision.unscaled == [opt] and t.precision.stepped == [opt]
    assert p.detach().tolist() == pytest.approx([3.0 - 0.06, 4.0 - 0.08], rel=1e-6)


# ------------------------------------------------------------------ batch_sizes


class _Loader:
    """A loader that states batch_size, len and dataset but no drop_last."""

    batch_size = 4
    dataset = list(range(10))

    def __len__(self):
        return 3


class _LoaderWithoutBatchSize:
    dataset = list(range(10))

    def __len__(self):
        return 3


def test_batch_sizes_without_drop_last_keeps_the_short_last_batch():
    from brisk.engine.step import batch_sizes

    assert batch_sizes(_Loader()) == (4, 3, 2)


def test_batch_sizes_without_batch_size_is_unknown():
    from brisk.engine.step import batch_sizes

    assert batch_sizes(_LoaderWithoutBatchSize()) is None
