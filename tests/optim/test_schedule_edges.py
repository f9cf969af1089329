"""Schedules: exact error messages, boundaries, defaults of the constructors, the named
schedules' edge lengths and ReduceLROnPlateau's Keras semantics step by step.

Every schedule here is built inside the test body (not in ``parametrize``), and every
expected value is written out by hand or from the published formula.
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import pytest
import torch

from brisk.callbacks import ReduceLROnPlateau
from brisk.optim import schedules as S


def raises_exactly(exc, msg, fn, *args, **kwargs):
    with pytest.raises(exc) as e:
        fn(*args, **kwargs)
    assert str(e.value) == msg
    return e


# ----------------------------------------------------------------------------- validation


def test_schedule_argument_messages_are_exact():
    cases = [
        # _int: name, low bound
        (lambda: S.step_decay(0), "step_size: expected an integer >= 1, got 0"),
        (
            lambda: S.exponential(0.5, steps_per_epoch=0),
            "steps_per_epoch: expected an integer >= 1, got 0",
        ),
        (lambda: S.linear(0), "total_steps: expected an integer >= 1, got 0"),
        (lambda: S.cosine(1.5), "total_steps: expected an integer >= 1, got 1.5"),
        (lambda: S.polynomial(0), "total_steps: expected an integer >= 1, got 0"),
        (lambda: S.one_cycle(0), "total_steps: expected an integer >= 1, got 0"),
        (lambda: S.warmup(S.constant(), 0), "warmup_steps: expected an integer >= 1, got 0"),
        (lambda: S.step_decay(True), "step_size: expected an integer >= 1, got True"),
        # _range: every bracket combination
        (lambda: S.step_decay(5, gamma=0.0), "gamma: expected a number in (0.0, 1.0], got 0.0"),
        (lambda: S.exponential(0.0), "gamma: expected a number in (0.0, 1.0], got 0.0"),
        (lambda: S.exponential(1.5), "gamma: expected a number in (0.0, 1.0], got 1.5"),
        (
            lambda: S.linear(5, end_factor=-0.5),
            "end_factor: expected a number in [0.0, inf], got -0.5",
        ),
        (lambda: S.inverse_sqrt(-1), "beta: expected a number in [0.0, inf], got -1"),
        (
            lambda: S.cosine(5, final_factor=-1.0),
            "final_factor: expected a number in [0.0, inf], got -1.0",
        ),
        (lambda: S.polynomial(5, power=0.0), "power: expected a number in (0.0, inf], got 0.0"),
        (
            lambda: S.polynomial(5, end_factor=-0.1),
            "end_factor: expected a number in [0.0, inf], got -0.1",
        ),
        (
            lambda: S.one_cycle(10, pct_start=0.0),
            "pct_start: expected a number in (0.0, 1.0), got 0.0",
        ),
        (
            lambda: S.one_cycle(10, pct_start=1.0),
            "pct_start: expected a number in (0.0, 1.0), got 1.0",
        ),
        (
            lambda: S.one_cycle(10, div_factor=0.0),
            "div_factor: expected a number in (0.0, inf], got 0.0",
        ),
        (
            lambda: S.one_cycle(10, final_div_factor=0.0),
            "final_div_factor: expected a number in (0.0, inf], got 0.0",
        ),
        (
            lambda: S.warmup(S.constant(), 5, start_factor=1.5),
            "start_factor: expected a number in [0.0, 1.0], got 1.5",
        ),
        (
            lambda: ReduceLROnPlateau(factor=1.0),
            "factor: expected a number in [0.0, 1.0), got 1.0",
        ),
        # _num: non-finite, bool and non-numbers
        (
            lambda: S.cosine(5, final_factor=math.inf),
            "final_factor: expected a finite number, got inf",
        ),
        (lambda: S.linear(5, end_factor=math.nan), "end_factor: expected a finite number, got nan"),
        (
            lambda: S.cosine(5, final_factor=True),
            "final_factor: expected a finite number, got True",
        ),
        (lambda: S.polynomial(5, power="2"), "power: expected a finite number, got '2'"),
        (
            lambda: S.one_cycle(10, anneal_strategy="exp"),
            "anneal_strategy: expected 'cos' or 'linear', got 'exp'",
        ),
        (
            lambda: S.one_cycle(10, pct_start=0.1),
            "pct_start: pct_start * total_steps must not be exactly 1 (warm phase of zero "
            "length), got 0.1 * 10",
        ),
        (lambda: S.cosine(10)(-1), "step: expected an optimizer step >= 0, got -1"),
    ]
    for make, msg in cases:
        raises_exactly(ValueError, msg, make)
    raises_exactly(TypeError, "schedule: expected a callable step -> factor, got 3", S.warmup, 3, 5)


def test_lowest_valid_arguments_are_accepted():
    # the closed lower/upper ends of each range and the smallest integers are valid
    assert S.step_decay(1, gamma=1.0)(7) == 1.0
    assert S.step_decay(1, gamma=0.5)(3) == 0.125
    assert S.exponential(0.5, steps_per_epoch=1)(2) == 0.25
    lin = S.linear(1, end_factor=0.0)
    assert (lin(0), lin(1), lin(5)) == (1.0, 0.0, 0.0)
    assert S.linear(4, end_factor=2.0)(2) == 1.5  # end_factor may exceed 1 (warm-up ramp)
    assert S.inverse_sqrt(0.0)(100) == 1.0
    assert S.cosine(1, final_factor=0.0)(1) == 0.0
    assert S.cosine(4, final_factor=3.0)(4) == 3.0
    assert S.polynomial(1)(1) == 0.0
    assert S.polynomial(4, power=0.5)(3) == pytest.approx(0.5)  # (1 - 3/4) ** 0.5
    assert S.polynomial(4, end_factor=0.0)(4) == 0.0
    assert S.warmup(S.constant(), 4, start_factor=1.0)(0) == 1.0
    assert S.warmup(S.constant(), 4, start_factor=0.0)(0) == 0.0
    # one_cycle: tiny factors are fine, T = 1 is fine
    oc = S.one_cycle(10, div_factor=0.5, final_div_factor=0.5)
    assert oc(0) == pytest.approx(2.0) and oc(9) == pytest.approx(4.0)


def test_constructor_defaults_and_arguments_reach_the_schedule():
    # step_decay: gamma 0.1 (torch StepLR)
    assert S.step_decay(10)(25) == pytest.approx(0.01)
    # exponential: smooth, one epoch = one step by default
    assert S.exponential(0.5)(3) == 0.125
    assert S.exponential(0.5)(1) == 0.5
    assert S.exponential(0.25, 2)(1) == pytest.approx(0.5)  # 0.25 ** (1/2)
    assert S.exponential(0.25, 2, True)(1) == 1.0  # staircase: floor(1/2) = 0
    assert S.exponential(0.25, 2, staircase=True)(3) == 0.25
    assert S.exponential(0.25, steps_per_epoch=2)(3) == pytest.approx(0.25**1.5)
    # linear / cosine / polynomial pass their end factors on
    assert S.linear(10, end_factor=0.5)(10) == 0.5
    assert S.linear(10, 0.5)(5) == 0.75
    assert S.cosine(10, final_factor=0.2)(10) == pytest.approx(0.2)
    assert S.cosine(10, 0.2)(5) == pytest.approx(0.2 + 0.8 * 0.5)
    # polynomial: power 1, end 0 by default (Keras PolynomialDecay)
    assert S.polynomial(10)(5) == 0.5
    assert S.polynomial(10)(10) == 0.0
    assert S.polynomial(10, 2.0)(5) == 0.25
    assert S.polynomial(10, 2.0, 0.5)(5) == 0.5 + 0.5 * 0.25
    assert S.polynomial(10, power=3.0, end_factor=0.1)(10) == pytest.approx(0.1)


def test_warmup_hands_over_exactly_at_warmup_steps():
    # factor(W) = schedule(0) exactly; with s = 0.06 the ramp formula rounds to 1 - 1e-16
    w = S.warmup(S.constant(), 10, start_factor=0.06)
    assert w(10) == 1.0
    assert w(9) == pytest.approx(0.06 + 0.94 * 0.9)


def test_one_cycle_single_step_matches_torch():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=2, pct_start=0.25)
    oc = S.one_cycle(2, pct_start=0.25)
    for t in range(2):
        assert oc(t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12), t
        opt.step()
        ref.step()
    # T = 1: the single step is the end of the annealing phase, 1 / (25 * 1e4)
    assert S.one_cycle(1)(0) == pytest.approx(1 / (25 * 1e4))


# ----------------------------------------------------------------------------- get_schedule


def test_unknown_schedule_names_messages():
    valid = (
        "constant, step, exponential, linear, inverse_sqrt, cosine, polynomial, one_cycle, "
        "warmup_cosine"
    )
    raises_exactly(
        ValueError, f"schedule: unknown name 'zzz'; valid names: {valid}", S.get_schedule, "zzz", 10
    )
    # difflib cutoff 0.5: 'cos' is close to 'cosine' (0.67) and 'constant' (0.55)
    raises_exactly(
        ValueError,
        f"schedule: unknown name 'cos'; did you mean 'cosine', 'constant'? valid names: {valid}",
        S.get_schedule,
        "cos",
        10,
    )
    # at most three suggestions ('cosinear' is close to four names)
    e = raises_exactly(
        ValueError,
        "schedule: unknown name 'cosinear'; did you mean 'cosine', 'linear', 'warmup_cosine'? "
        f"valid names: {valid}",
        S.get_schedule,
        "cosinear",
        10,
    )
    assert "'constant'" not in str(e.value)
    raises_exactly(
        ValueError,
        "total_steps: schedule 'cosine' needs the training length",
        S.get_schedule,
        "cosine",
        None,
    )
    raises_exactly(
        TypeError,
        f"schedule: expected None, a name ({valid}), a schedule or a callable step -> "
        "factor, got 3",
        S.get_schedule,
        3,
        10,
    )


def test_get_schedule_argument_messages():
    raises_exactly(
        ValueError, "steps_per_epoch: expected an integer >= 1, got 0", S.get_schedule, None, 10, 0
    )
    raises_exactly(
        ValueError,
        "warmup_steps: expected an integer >= 0, got -1",
        S.get_schedule,
        None,
        10,
        warmup_steps=-1,
    )
    raises_exactly(
        ValueError, "total_steps: expected an integer >= 1, got 0", S.get_schedule, None, 0
    )
    raises_exactly(
        ValueError,
        "warmup_steps: 1 warmup steps but training has 1",
        S.get_schedule,
        None,
        1,
        warmup_steps=1,
    )
    # the smallest valid values
    assert S.get_schedule(None, 1, 1)(0) == 1.0
    assert S.get_schedule("cosine", 2, warmup_steps=1) == S.warmup(S.cosine(1), 1)


def test_get_schedule_custom_callable_checks():
    def msg(v):
        return (
            "schedule: schedule(0) must be a finite number >= 0 (a multiplier of the "
            f"learning rate), got {v}"
        )

    raises_exactly(ValueError, msg("-1.0"), S.get_schedule, lambda t: -1.0 if t == 0 else 1.0, 10)
    raises_exactly(ValueError, msg("inf"), S.get_schedule, lambda t: math.inf, 10)
    raises_exactly(ValueError, msg("True"), S.get_schedule, lambda t: True, 10)
    raises_exactly(ValueError, msg("'1'"), S.get_schedule, lambda t: "1", 10)

    def zero(t):
        return 0.0

    assert S.get_schedule(zero, 10) is zero  # 0 is a valid multiplier


def test_get_schedule_defaults_and_names_without_length():
    # steps_per_epoch defaults to 1: inverse_sqrt gets beta = 1
    assert S.get_schedule("inverse_sqrt", 100)(3) == 0.5
    assert S.get_schedule("constant", None)(5) == 1.0
    assert S.get_schedule("inverse_sqrt", None, 4)(12) == 0.5  # beta = 1/4


def test_named_schedules_with_explicit_warmup_keep_their_shape():
    T, W = 100, 10
    # after the warmup each named schedule runs over the remaining T - W = 90 steps
    expected = {
        "constant": lambda t: 1.0,
        "inverse_sqrt": lambda t: 1 / math.sqrt(1 + t / 5),  # beta = 1/steps_per_epoch
        "step": lambda t: 0.1 ** (t // 30),
        "exponential": lambda t: 0.01 ** (t / 90),  # gamma = 0.01 ** (5/90) per 5 steps
        "linear": lambda t: 1 - t / 90,
        "cosine": lambda t: 0.5 * (1 + math.cos(math.pi * t / 90)),
        "polynomial": lambda t: 1 - t / 90,
        "warmup_cosine": lambda t: 0.5 * (1 + math.cos(math.pi * t / 90)),
    }
    for name, f in expected.items():
        sched = S.get_schedule(name, T, steps_per_epoch=5, warmup_steps=W)
        assert sched.total_steps in (None, T), name
        assert sched(5) == pytest.approx(0.5 * f(0)), name
        for t in (0, 1, 29, 30, 44, 61, 89):
            assert sched(W + t) == pytest.approx(f(t), rel=1e-9, abs=1e-12), (name, t)
    # one_cycle after a warmup: torch's OneCycleLR over 90 steps, peak 1
    oc = S.get_schedule("one_cycle", T, warmup_steps=W)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=90)
    for t in range(90):
        assert oc(W + t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), t
        opt.step()
        ref.step()
    assert S.get_schedule("warmup_cosine", T, warmup_steps=W) == S.warmup(S.cosine(90), W)


def test_named_schedules_at_short_lengths():
    # 'step' over 3 steps: x0.1 every ceil(3/3) = 1 step
    step = S.get_schedule("step", 3)
    assert [step(t) for t in range(3)] == pytest.approx([1.0, 0.1, 0.01])
    # 'polynomial' by name: power 1 down to 0
    poly = S.get_schedule("polynomial", 10)
    assert poly(4) == pytest.approx(0.6) and poly.total_steps == 10
    # warmup_cosine: 5% of the steps (at least 1) warm up; a 1-step training has none
    one = S.get_schedule("warmup_cosine", 1)
    assert one == S.cosine(1) and one(0) == 1.0
    two = S.get_schedule("warmup_cosine", 2)
    assert two == S.warmup(S.cosine(1), 1) and two(0) == 0.0 and two(1) == 1.0
    twenty = S.get_schedule("warmup_cosine", 20)  # round(0.05 * 20) = 1
    assert twenty == S.warmup(S.cosine(19), 1) and twenty(1) == 1.0
    forty = S.get_schedule("warmup_cosine", 40)  # round(2.0) = 2
    assert forty == S.warmup(S.cosine(38), 2) and forty(1) == 0.5


# ----------------------------------------------------------------------------- plateau


def fake_trainer(*lrs):
    groups = [{"lr": lr, "initial_lr": lr} for lr in lrs]
    return SimpleNamespace(module=None, optimizer=SimpleNamespace(param_groups=groups))


def plateau(trainer=None, **kwargs):
    cb = ReduceLROnPlateau(**kwargs)
    cb.set_trainer(trainer if trainer is not None else fake_trainer(1.0))
    cb.on_train_begin()
    return cb


def test_plateau_defaults_are_keras():
    cb = ReduceLROnPlateau()
    assert (cb.monitor, cb.factor, cb.patience, cb.verbose, cb.mode) == (
        "val_loss",
        0.1,
        10,
        0,
        "auto",
    )
    assert (cb.min_delta, cb.cooldown, cb.min_lr) == (1e-4, 0, 0.0)
    assert (cb.best, cb.wait, cb.cooldown_counter) == (math.inf, 0, 0)
    trainer = fake_trainer(1.0)
    cb.set_trainer(trainer)
    cb.on_train_begin()
    lrs = []
    for epoch in range(12):  # 'val_loss' by default, reduced after 10 epochs without gain
        cb.on_epoch_end(epoch, {"val_loss": 1.0})
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([1.0] * 10 + [0.1] * 2)


def test_plateau_argument_messages_and_modes():
    raises_exactly(
        TypeError,
        "monitor: expected a log key such as 'val_loss', got 3",
        ReduceLROnPlateau,
        monitor=3,
    )
    raises_exactly(
        ValueError,
        "factor: expected a number in [0.0, 1.0), got 1.5",
        ReduceLROnPlateau,
        factor=1.5,
    )
    raises_exactly(
        ValueError, "patience: expected an integer >= 0, got -1", ReduceLROnPlateau, patience=-1
    )
    raises_exactly(
        ValueError,
        "mode: expected 'auto', 'min' or 'max', got 'up'",
        ReduceLROnPlateau,
        mode="up",
    )
    raises_exactly(
        ValueError,
        "min_delta: expected a finite number, got nan",
        ReduceLROnPlateau,
        min_delta=math.nan,
    )
    raises_exactly(
        ValueError, "cooldown: expected an integer >= 0, got -2", ReduceLROnPlateau, cooldown=-2
    )
    raises_exactly(
        ValueError,
        "min_lr: expected a number in [0.0, inf], got -1.0",
        ReduceLROnPlateau,
        min_lr=-1.0,
    )
    assert ReduceLROnPlateau(patience=0).patience == 0
    assert ReduceLROnPlateau(min_delta=-0.5).min_delta == 0.5  # Keras takes abs()
    assert ReduceLROnPlateau(mode="min").mode == "min"
    # 'max' maximizes whatever the name; 'min' minimizes even an accuracy
    cb = plateau(monitor="loss", mode="max", patience=1, factor=0.5)
    cb.on_epoch_end(0, {"loss": 1.0})
    cb.on_epoch_end(1, {"loss": 2.0})  # higher is better: an improvement
    assert cb.best == 2.0 and cb.trainer.optimizer.param_groups[0]["lr"] == 1.0
    cb.on_epoch_end(2, {"loss": 0.5})
    assert cb.trainer.optimizer.param_groups[0]["lr"] == 0.5
    cb = plateau(monitor="acc", mode="min", patience=1, factor=0.5)
    assert cb.best == math.inf
    cb.on_epoch_end(0, {"acc": 0.5})
    cb.on_epoch_end(1, {"acc": 0.9})
    assert cb.trainer.optimizer.param_groups[0]["lr"] == 0.5


def test_plateau_equal_value_is_not_an_improvement():
    for mode, monitor in (("min", "val_loss"), ("max", "val_acc")):
        cb = plateau(monitor=monitor, mode=mode, patience=2, min_delta=0.0, factor=0.5)
        for epoch in range(3):
            cb.on_epoch_end(epoch, {monitor: 0.5})
        # epoch 0 improves on +-inf; epochs 1 and 2 equal it: patience 2 is reached
        assert cb.trainer.optimizer.param_groups[0]["lr"] == 0.5, mode


def test_plateau_cooldown_sequence_is_keras():
    # Keras: cooldown counts down (and clears wait) at the start of each epoch
    trainer = fake_trainer(1.0)
    cb = plateau(trainer, patience=2, cooldown=1, factor=0.5)
    lrs = []
    for epoch in range(7):
        cb.on_epoch_end(epoch, {"val_loss": 1.0})
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        assert cb.cooldown_counter >= 0
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]


def test_plateau_state_dict_round_trip_and_train_begin():
    cb = plateau(patience=2, factor=0.5)
    cb.load_state_dict({"best": 1.0, "wait": 1.0, "cooldown_counter": 0})
    assert cb.wait == 1 and type(cb.wait) is int and cb.cooldown_counter == 0
    cb.on_train_begin()  # a restored state survives one train begin...
    assert (cb.best, cb.wait) == (1.0, 1)
    cb.on_epoch_end(0, {"val_loss": 1.0})  # wait 2 == patience: reduce now
    assert cb.trainer.optimizer.param_groups[0]["lr"] == 0.5
    assert cb.state_dict() == {"best": 1.0, "wait": 0, "cooldown_counter": 0}
    cb.load_state_dict({"best": 2.0, "wait": 0, "cooldown_counter": 3})
    assert cb.cooldown_counter == 3
    cb.on_train_begin()
    cb.on_train_begin()  # ...but not the next one
    assert cb.state_dict() == {"best": math.inf, "wait": 0, "cooldown_counter": 0}
    # a fresh callback resets at train begin (Keras)
    fresh = ReduceLROnPlateau()
    fresh.set_trainer(fake_trainer(1.0))
    fresh.on_epoch_end(0, {"val_loss": 3.0})
    assert fresh.best == 3.0
    fresh.on_train_begin()
    assert fresh.best == math.inf


def test_plateau_missing_metric_warning():
    cb = plateau(monitor="val_acc")
    with pytest.warns(UserWarning) as rec:
        cb.on_epoch_end(0, {"loss": 1.0, "acc": 0.5})
    assert str(rec[0].message) == (
        "ReduceLROnPlateau: metric 'val_acc' is not in the logs (available: loss, acc, "
        "learning_rate); skipping"
    )
    # stacklevel points past schedules.py at the caller (under mutmut: its trampoline)
    assert rec[0].filename != S.__file__
    with pytest.warns(UserWarning) as rec:
        cb.on_epoch_end(1, None)
    assert str(rec[0].message) == (
        "ReduceLROnPlateau: metric 'val_acc' is not in the logs (available: none); skipping"
    )


def test_plateau_verbose_message(capsys):
    trainer = fake_trainer(0.4, 0.8)
    cb = plateau(trainer, patience=1, factor=0.5, verbose=1)
    cb.on_epoch_end(0, {"val_loss": 1.0})
    cb.on_epoch_end(1, {"val_loss": 1.0})
    assert (
        capsys.readouterr().out == "\nEpoch 2: ReduceLROnPlateau reducing learning rate to 0.2.\n"
    )
    # silent by default
    quiet = plateau(fake_trainer(0.4), patience=1, factor=0.5)
    quiet.on_epoch_end(0, {"val_loss": 1.0})
    quiet.on_epoch_end(1, {"val_loss": 1.0})
    assert quiet.trainer.optimizer.param_groups[0]["lr"] == 0.2
    assert capsys.readouterr().out == ""


def test_plateau_at_min_lr_changes_nothing_and_says_nothing(capsys):
    trainer = fake_trainer(0.1)
    cb = plateau(trainer, patience=1, factor=0.5, min_lr=0.1, verbose=1)
    for epoch in range(3):
        cb.on_epoch_end(epoch, {"val_loss": 1.0})
    assert trainer.optimizer.param_groups[0] == {"lr": 0.1, "initial_lr": 0.1}
    assert capsys.readouterr().out == ""


def test_plateau_group_without_initial_lr_and_trainer_without_optimizer(capsys):
    trainer = SimpleNamespace(module=None, optimizer=SimpleNamespace(param_groups=[{"lr": 0.6}]))
    cb = plateau(trainer, patience=1, factor=0.5)
    cb.on_epoch_end(0, {"val_loss": 1.0})
    cb.on_epoch_end(1, {"val_loss": 1.0})
    assert trainer.optimizer.param_groups[0] == {"lr": 0.3, "initial_lr": 0.3}
    bare = plateau(SimpleNamespace(module=None), patience=1, verbose=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bare.on_epoch_end(0, {"val_loss": 1.0})
        bare.on_epoch_end(1, {"val_loss": 1.0})
    assert bare.wait == 0 and capsys.readouterr().out == ""
