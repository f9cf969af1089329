"""Exact checks of the Keras schedule objects (brisk.optim.keras_schedules): every argument's
bad-value message in full, the open/closed bounds, PiecewiseConstantDecay's boundary check,
Keras's defaults, and CosineDecay's warm-up branch.

Expected values are closed forms of Keras 3's formulas (keras.optimizers.schedules); the
points pinned here were checked against Keras 3.15.1 with
tools/keras_oracle/keras_schedules_exact.py (float32 there, hence approx).
Every object is built inside its test (mutation testing: see tools/mutation/README.md).
"""

from __future__ import annotations

import math

import pytest

from brisk.optim.keras_schedules import (
    CosineDecay,
    ExponentialDecay,
    InverseTimeDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
)


def _pos(name, v):
    return f"{name}: expected a number in (0.0, inf], got {v!r}"


def _nonneg(name, v):
    return f"{name}: expected a number in [0.0, inf], got {v!r}"


def _raises(make, message):
    with pytest.raises(ValueError) as e:
        make()
    assert str(e.value) == message


# ------------------------------------------------------------------ bad arguments, in full


def test_exponential_decay_bad_arguments():
    _raises(lambda: ExponentialDecay(-0.5, 10, 0.9), _nonneg("initial_learning_rate", -0.5))
    _raises(lambda: ExponentialDecay(0.1, 0, 0.9), _pos("decay_steps", 0))
    _raises(lambda: ExponentialDecay(0.1, -3, 0.9), _pos("decay_steps", -3))
    # 0 is the open end of decay_rate's range: rejected
    _raises(lambda: ExponentialDecay(0.1, 10, 0.0), _pos("decay_rate", 0.0))
    _raises(lambda: ExponentialDecay(0.1, 10, -0.25), _pos("decay_rate", -0.25))
    # the closed end of initial_learning_rate is allowed
    assert ExponentialDecay(0.0, 10, 0.9)(7) == 0.0


def test_inverse_time_decay_bad_arguments():
    _raises(lambda: InverseTimeDecay(-1.5, 10, 0.5), _nonneg("initial_learning_rate", -1.5))
    _raises(lambda: InverseTimeDecay(0.1, 0, 0.5), _pos("decay_steps", 0))
    _raises(lambda: InverseTimeDecay(0.1, 10, -0.5), _nonneg("decay_rate", -0.5))
    # decay_rate 0 is allowed (a constant rate)
    assert InverseTimeDecay(0.3, 10, 0.0)(25) == 0.3


def test_piecewise_constant_decay_bad_arguments():
    _raises(lambda: PiecewiseConstantDecay([10, 20], [1.0, -0.5, 0.1]), _nonneg("values", -0.5))
    # not increasing: a later boundary below an earlier one, only visible to adjacent pairs
    _raises(lambda: PiecewiseConstantDecay([1, 3, 2], [0.4, 0.3, 0.2, 0.1]),
            "boundaries: expected increasing steps, got [1, 3, 2]")
    # equal adjacent boundaries are not increasing either
    _raises(lambda: PiecewiseConstantDecay([5, 5], [0.3, 0.2, 0.1]),
            "boundaries: expected increasing steps, got [5, 5]")
    _raises(lambda: PiecewiseConstantDecay([4, 7], [0.3, 0.2]),
            "values: expected len(boundaries) + 1 = 3 values, got 2")


def test_polynomial_decay_bad_arguments():
    _raises(lambda: PolynomialDecay(-0.1, 10), _nonneg("initial_learning_rate", -0.1))
    _raises(lambda: PolynomialDecay(0.1, 0), _pos("decay_steps", 0))
    _raises(lambda: PolynomialDecay(0.1, 10, end_learning_rate=-0.01),
            _nonneg("end_learning_rate", -0.01))
    _raises(lambda: PolynomialDecay(0.1, 10, power=0.0), _pos("power", 0.0))


def test_cosine_decay_bad_arguments():
    _raises(lambda: CosineDecay(-0.1, 10), _nonneg("initial_learning_rate", -0.1))
    _raises(lambda: CosineDecay(0.1, 0), _pos("decay_steps", 0))
    _raises(lambda: CosineDecay(0.1, 10, alpha=-0.2), _nonneg("alpha", -0.2))
    _raises(lambda: CosineDecay(0.1, 10, warmup_target=-1.0), _nonneg("warmup_target", -1.0))
    _raises(lambda: CosineDecay(0.1, 10, warmup_target=0.2, warmup_steps=-4),
            _nonneg("warmup_steps", -4))


# ------------------------------------------------------------------ repr and defaults


def test_repr_lists_the_arguments():
    s = ExponentialDecay(0.1, 1000, 0.9)
    assert repr(s) == ("ExponentialDecay(initial_learning_rate=0.1, decay_steps=1000, "
                       "decay_rate=0.9, staircase=False)")


def test_polynomial_decay_default_end_learning_rate_is_keras_1e_4():
    s = PolynomialDecay(0.1, 10)
    assert s.get_config()["end_learning_rate"] == 0.0001
    # (initial - end) * (1 - 5/10) ** 1 + end   (Keras: 0.05005, 0.0001)
    assert s(5) == pytest.approx((0.1 - 0.0001) * 0.5 + 0.0001, rel=1e-12)
    assert s(10) == pytest.approx(0.0001, rel=1e-12)
    assert s(5) == pytest.approx(0.05005, rel=1e-6)


def test_cosine_decay_default_warmup_steps_is_zero():
    s = CosineDecay(0.1, 10, warmup_target=0.2)
    assert s.get_config()["warmup_steps"] == 0
    # no warm-up: the decay starts at warmup_target (Keras: 0.2 at step 0)
    assert s(0) == pytest.approx(0.2, rel=1e-12)


# ------------------------------------------------------------------ CosineDecay's warm-up


def test_cosine_decay_explicit_zero_warmup_starts_at_the_target():
    # Keras: warmup_steps=0 with a warmup_target decays from the target from step 0
    s = CosineDecay(0.1, 10, warmup_target=0.2, warmup_steps=0)
    assert s(0) == pytest.approx(0.2, rel=1e-12)
    assert s(5) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 5 / 10)), rel=1e-12)


def test_cosine_decay_linear_warmup_towards_the_target():
    s = CosineDecay(0.1, 10, warmup_target=0.5, warmup_steps=4)
    # initial + step / warmup_steps * (target - initial)   (Keras: 0.2, 0.3)
    assert s(1) == pytest.approx(0.1 + 1 / 4 * (0.5 - 0.1), rel=1e-12)
    assert s(2) == pytest.approx(0.1 + 2 / 4 * (0.5 - 0.1), rel=1e-12)
    assert s(4) == pytest.approx(0.5, rel=1e-12)


def test_cosine_decay_alpha_applies_after_the_warmup():
    s = CosineDecay(1.0, 10, alpha=0.5, warmup_target=0.2, warmup_steps=2)

    def keras(step):  # target * ((1 - alpha) * 0.5 * (1 + cos(pi * t / T)) + alpha)
        t = min(step - 2, 10)
        return 0.2 * ((1 - 0.5) * 0.5 * (1 + math.cos(math.pi * t / 10)) + 0.5)

    for step, oracle in ((7, 0.15), (12, 0.1), (40, 0.1)):  # Keras 3.15.1's values
        assert s(step) == pytest.approx(keras(step), rel=1e-12)
        assert s(step) == pytest.approx(oracle, rel=1e-6)
