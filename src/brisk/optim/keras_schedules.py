"""Keras's learning-rate schedule objects (``keras.optimizers.schedules``), given as an
optimizer's ``learning_rate``: ``brisk.optimizers.SGD(learning_rate=ExponentialDecay(...))``.

Each is ``step -> learning rate`` with Keras's formula and arguments, ``step`` counting
optimizer steps from the start of training (Keras's ``optimizer.iterations``). Where a
pure ``brisk.schedules`` function computes the same curve it is used underneath (the
factor times the initial rate). The engine applies the rate before every optimizer step.

Example::

    lr = brisk.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1000, decay_rate=0.9)
    opt = brisk.optimizers.SGD(learning_rate=lr)
    lr(2000)   # 0.081
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from brisk.optim import schedules as S


def _positive(name: str, v: Any) -> float:
    return S._range(name, v, 0.0, math.inf, low_open=True)


def _nonneg(name: str, v: Any) -> float:
    return S._range(name, v, 0.0, math.inf)


class LearningRateSchedule:
    """Base: ``schedule(step) -> learning rate`` (Keras ``LearningRateSchedule``)."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        return dict(vars(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``, the exponent floored
    when ``staircase`` (Keras); ``brisk.schedules.exponential`` underneath."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False):
        self.initial_learning_rate = _nonneg("initial_learning_rate", initial_learning_rate)
        self.decay_steps = int(_positive("decay_steps", decay_steps))
        self.decay_rate = _positive("decay_rate", decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step: int) -> float:
        factor = S.exponential(self.decay_rate, self.decay_steps, self.staircase)(step)
        return self.initial_learning_rate * factor


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``, the ratio floored
    when ``staircase`` (Keras)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False):
        self.initial_learning_rate = _nonneg("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive("decay_steps", decay_steps)
        self.decay_rate = _nonneg("decay_rate", decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step: int) -> float:
        t = step / self.decay_steps
        if self.staircase:
            t = math.floor(t)
        return self.initial_learning_rate / (1.0 + self.decay_rate * t)


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[i]`` while ``boundaries[i-1] < step <= boundaries[i]`` (Keras): ``values`` has
    one more entry than ``boundaries``, which increase."""

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]):
        boundaries, values = list(boundaries), list(values)
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"values: expected len(boundaries) + 1 = {len(boundaries) + 1} "
                             f"values, got {len(values)}")
        if any(b >= c for b, c in zip(boundaries, boundaries[1:], strict=False)):
            raise ValueError(f"boundaries: expected increasing steps, got {boundaries!r}")
        self.boundaries = boundaries
        self.values = [_nonneg("values", v) for v in values]

    def __call__(self, step: int) -> float:
        return self.values[bisect.bisect_left(self.boundaries, step)]


class PolynomialDecay(LearningRateSchedule):
    """``(initial - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end`` (Keras);
    with ``cycle`` the horizon grows to the next multiple of ``decay_steps``."""

    def __init__(self, initial_learning_rate: float, decay_steps: int,
                 end_learning_rate: float = 0.0001, power: float = 1.0, cycle: bool = False):
        self.initial_learning_rate = _nonneg("initial_learning_rate", initial_learning_rate)
        self.decay_steps = int(_positive("decay_steps", decay_steps))
        self.end_learning_rate = _nonneg("end_learning_rate", end_learning_rate)
        self.power = _positive("power", power)
        self.cycle = bool(cycle)

    def __call__(self, step: int) -> float:
        total = self.decay_steps
        if self.cycle:
            total = total * max(1, math.ceil(step / total))
        t = min(step, total)
        span = self.initial_learning_rate - self.end_learning_rate
        return span * (1.0 - t / total) ** self.power + self.end_learning_rate


class CosineDecay(LearningRateSchedule):
    """Cosine decay from ``initial_learning_rate`` (or, after a linear warm-up of
    ``warmup_steps`` to ``warmup_target``, from that) to ``alpha`` times it over
    ``decay_steps`` (Keras); ``brisk.schedules.cosine`` underneath."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0,
                 warmup_target: float | None = None, warmup_steps: int = 0):
        self.initial_learning_rate = _nonneg("initial_learning_rate", initial_learning_rate)
        self.decay_steps = int(_positive("decay_steps", decay_steps))
        self.alpha = _nonneg("alpha", alpha)
        self.warmup_target = None if warmup_target is None else _nonneg("warmup_target", warmup_target)
        self.warmup_steps = int(_nonneg("warmup_steps", warmup_steps))

    def __call__(self, step: int) -> float:
        if self.warmup_target is None:
            return self.initial_learning_rate * S.cosine(self.decay_steps, self.alpha)(step)
        if step < self.warmup_steps:
            frac = step / self.warmup_steps
            return self.initial_learning_rate + frac * (self.warmup_target - self.initial_learning_rate)
        return self.warmup_target * S.cosine(self.decay_steps, self.alpha)(step - self.warmup_steps)


__all__ = ["CosineDecay", "ExponentialDecay", "InverseTimeDecay", "LearningRateSchedule",
           "PiecewiseConstantDecay", "PolynomialDecay"]
