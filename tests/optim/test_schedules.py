"""Schedules equal their closed forms; one_cycle equals torch's OneCycleLR; plateau callback."""

from __future__ import annotations

import math
import pickle
from types import SimpleNamespace

import pytest
import torch

from brisk.callbacks import ReduceLROnPlateau
from brisk.optim import schedules as S

STEPS = [0, 1, 2, 7, 49, 50, 51, 99, 100, 101, 250, 999]


def close(a, b, tol=1e-12):
    return abs(a - b) <= tol * max(1.0, abs(b))


@pytest.mark.parametrize(
    "sched,formula",
    [
        (S.constant(), lambda t: 1.0),
        (S.step_decay(50, gamma=0.5), lambda t: 0.5 ** (t // 50)),
        (S.exponential(0.9, steps_per_epoch=10), lambda t: 0.9 ** (t / 10)),
        (S.exponential(0.9, steps_per_epoch=10, staircase=True), lambda t: 0.9 ** (t // 10)),
        (S.linear(100, end_factor=0.1), lambda t: 1 - 0.9 * min(t, 100) / 100),
        (S.inverse_sqrt(0.5), lambda t: 1 / math.sqrt(1 + 0.5 * t)),
        (S.cosine(100), lambda t: 0.5 * (1 + math.cos(math.pi * min(t, 100) / 100))),
        (
            S.cosine(200, final_factor=0.05),
            lambda t: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 200) / 200)),
        ),
        (
            S.polynomial(100, power=2.0, end_factor=0.01),
            lambda t: 0.01 + 0.99 * (1 - min(t, 100) / 100) ** 2,
        ),
        # warmup: linear from start_factor * s(0) to s(0) over W steps, then s restarted at 0
        (
            S.warmup(S.cosine(100), 50),
            lambda t: t / 50 if t < 50 else 0.5 * (1 + math.cos(math.pi * min(t - 50, 100) / 100)),
        ),
        (
            S.warmup(S.step_decay(10, 0.5), 20, start_factor=0.1),
            lambda t: 0.1 + 0.9 * t / 20 if t < 20 else 0.5 ** ((t - 20) // 10),
        ),
        (
            S.warmup(S.linear(100, end_factor=0.5), 5, start_factor=0.2),
            lambda t: 0.2 + 0.8 * t / 5 if t < 5 else 1 - 0.5 * min(t - 5, 100) / 100,
        ),
    ],
    ids=repr,
)
def test_closed_forms(sched, formula):
    for t in STEPS:
        assert close(sched(t), formula(t)), (t, sched(t), formula(t))


def test_warmup_scales_by_schedule_start_and_total_steps():
    inner = lambda t: 0.5  # noqa: E731 - a plain callable schedule
    w = S.warmup(inner, 10)
    assert w(5) == 0.25 and w(10) == 0.5 and w.total_steps is None
    assert S.warmup(S.cosine(90), 10).total_steps == 100
    assert S.cosine(90).total_steps == 90 and S.constant().total_steps is None


@pytest.mark.parametrize(
    "total,pct,div,final_div,anneal",
    [
        (100, 0.3, 25.0, 1e4, "cos"),
        (37, 0.25, 10.0, 100.0, "cos"),
        (1000, 0.1, 25.0, 1e4, "linear"),
        (7, 0.3, 25.0, 1e4, "cos"),
    ],
)
def test_one_cycle_matches_torch(total, pct, div, final_div, anneal):
    max_lr = 0.7
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=max_lr, momentum=0.9)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=max_lr,
        total_steps=total,
        pct_start=pct,
        div_factor=div,
        final_div_factor=final_div,
        anneal_strategy=anneal,
    )
    ours = S.one_cycle(
        total, pct_start=pct, div_factor=div, final_div_factor=final_div, anneal_strategy=anneal
    )
    for t in range(total):
        assert abs(opt.param_groups[0]["lr"] / max_lr - ours(t)) < 1e-9, t
        opt.step()
        ref.step()
    assert max(ours(t) for t in range(total)) <= 1.0 + 1e-12
    assert ours(total + 10) == ours(total - 1)  # held after the end


def test_get_schedule_names():
    T, spe = 1000, 100
    assert S.get_schedule(None, T, spe) == S.constant()
    assert S.get_schedule("cosine", T, spe) == S.cosine(T)
    assert S.get_schedule("Linear", T, spe) == S.linear(T)
    assert S.get_schedule("one-cycle", T, spe) == S.one_cycle(T)
    assert S.one_cycle(100)(29) == 1.0 and close(S.one_cycle(100)(0), 1 / 25)
    assert S.get_schedule("inverse_sqrt", T, spe) == S.inverse_sqrt(1 / spe)
    step = S.get_schedule("step", T, spe)
    assert step(333) == 1.0 and close(step(334), 0.1) and close(step(999), 0.01)
    expo = S.get_schedule("exponential", T, spe)
    assert close(expo(T), 0.01) and close(expo(spe), 0.01 ** (spe / T))
    wc = S.get_schedule("warmup_cosine", T, spe)
    assert wc == S.warmup(S.cosine(950), 50) and wc.total_steps == T
    # an explicit warmup goes in front and the named schedule fills the rest
    sched = S.get_schedule("cosine", T, spe, warmup_steps=100)
    assert sched == S.warmup(S.cosine(900), 100)
    assert sched(0) == 0.0 and sched(100) == 1.0 and sched.total_steps == T
    assert S.get_schedule(None, T, spe, warmup_steps=10)(5) == 0.5
    custom = lambda t: 0.9**t  # noqa: E731
    assert S.get_schedule(custom, T, spe) is custom
    assert S.get_schedule(S.cosine(T), T, spe) == S.cosine(T)  # exactly as long: fine


def test_get_schedule_errors():
    with pytest.raises(ValueError, match="schedule runs for 2000 steps but training has 1000"):
        S.get_schedule(S.cosine(2000), 1000, 10)
    with pytest.raises(
        ValueError,
        match=r"schedule runs for 1010 steps \(1000 \+ 10 warmup\) but training has 1000",
    ):
        S.get_schedule(S.cosine(1000), 1000, 10, warmup_steps=10)
    with pytest.raises(ValueError, match=r"schedule: unknown name 'cosin'.*'cosine'"):
        S.get_schedule("cosin", 100, 10)
    with pytest.raises(ValueError, match="warmup_steps: 100 warmup steps but training has 100"):
        S.get_schedule("cosine", 100, 10, warmup_steps=100)
    with pytest.raises(ValueError, match=r"schedule\(0\) must be a finite number >= 0"):
        S.get_schedule(lambda t: -1.0, 100, 10)
    with pytest.raises(TypeError, match="schedule: expected"):
        S.get_schedule(3, 100, 10)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: S.cosine(0), "total_steps: expected an integer >= 1"),
        (lambda: S.linear(10.5), "total_steps"),
        (lambda: S.step_decay(10, gamma=0.0), r"gamma: expected a number in \(0.0, 1.0\]"),
        (lambda: S.exponential(1.5), "gamma"),
        (lambda: S.inverse_sqrt(-1.0), "beta"),
        (lambda: S.polynomial(10, power=0.0), "power"),
        (lambda: S.one_cycle(100, pct_start=1.0), "pct_start"),
        (lambda: S.one_cycle(100, anneal_strategy="exp"), "anneal_strategy"),
        (lambda: S.warmup(S.cosine(10), 0), "warmup_steps"),
        (lambda: S.warmup(S.cosine(10), 5, start_factor=2.0), "start_factor"),
        (lambda: S.cosine(10)(-1), "step"),
    ],
)
def test_schedule_argument_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_schedules_pickle_and_repr():
    sched = S.warmup(S.one_cycle(100), 10)
    again = pickle.loads(pickle.dumps(sched))
    assert again == sched and again(37) == sched(37)
    assert repr(S.cosine(100)) == "Cosine(total_steps=100, final_factor=0.0)"
    assert isinstance(sched, S.Schedule)


# ----------------------------------------------------------------------------- plateau


def fake_trainer(*lrs):
    groups = [{"lr": lr, "initial_lr": lr} for lr in lrs]
    return SimpleNamespace(module=None, optimizer=SimpleNamespace(param_groups=groups))


def test_reduce_lr_on_plateau_after_patience():
    cb = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=0.03)
    trainer = fake_trainer(0.1, 0.2)
    trainer.optimizer.param_groups[1]["lr"] = 0.1  # mid-schedule: lr = initial_lr * 0.5
    cb.set_trainer(trainer)
    cb.on_train_begin()
    groups = trainer.optimizer.param_groups
    cb.on_epoch_end(0, {"val_loss": 1.0})
    cb.on_epoch_end(1, {"val_loss": 0.99995})  # within min_delta: no improvement (wait 1)
    assert groups[0]["lr"] == 0.1
    cb.on_epoch_end(2, {"val_loss": 1.2})  # wait 2 == patience: reduce
    assert groups[0]["initial_lr"] == 0.05 and groups[0]["lr"] == 0.05
    assert groups[1]["initial_lr"] == 0.1 and groups[1]["lr"] == pytest.approx(0.05)
    assert cb.wait == 0
    cb.on_epoch_end(3, {"val_loss": 0.5})  # improvement resets
    cb.on_epoch_end(4, {"val_loss": 0.6})
    assert groups[0]["lr"] == 0.05
    cb.on_epoch_end(5, {"val_loss": 0.6})
    assert groups[0]["initial_lr"] == 0.03 and groups[1]["initial_lr"] == 0.05  # min_lr floor
    state = cb.state_dict()
    assert state == {"best": 0.5, "wait": 0, "cooldown_counter": 0}
    other = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2)
    other.load_state_dict(state)
    other.on_train_begin()  # a restored state survives train begin
    assert other.best == 0.5


def test_reduce_lr_on_plateau_max_mode_and_cooldown():
    cb = ReduceLROnPlateau(monitor="val_accuracy", factor=0.1, patience=1, cooldown=2)
    trainer = fake_trainer(1.0)
    cb.set_trainer(trainer)
    cb.on_train_begin()
    lrs = []
    for epoch, acc in enumerate([0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]):
        cb.on_epoch_end(epoch, {"val_accuracy": acc})
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
    # 'auto' maximizes accuracy; reduce at epoch 2; Keras counts the cooldown down at the
    # start of the epoch, so epoch 3 is cooled down and epoch 4 reduces again (patience 1)
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01, 0.001])
    with pytest.warns(UserWarning, match="'val_accuracy' is not in the logs"):
        cb.on_epoch_end(7, {"loss": 1.0})
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="mode"):
        ReduceLROnPlateau(mode="up")
