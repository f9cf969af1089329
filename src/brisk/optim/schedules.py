"""Learning-rate schedules: pure ``step -> multiplier`` functions, plus ReduceLROnPlateau.

A schedule returns a MULTIPLIER of the base learning rate (torch ``LambdaLR``
convention). Before each optimizer step the engine sets
``group["lr"] = group["initial_lr"] * schedule(step)``, where ``step`` counts optimizer
steps from 0. Schedules are frozen dataclasses: picklable, with a readable repr and a
``total_steps`` attribute (None when they run forever). Past ``total_steps`` a schedule
holds its final value. Compose explicitly: ``warmup(cosine(900), 100)``.

Example::

    from brisk.optim import schedules as S
    sched = S.warmup(S.cosine(total_steps=900, final_factor=0.01), warmup_steps=100)
    [round(sched(t), 3) for t in (0, 50, 100, 550, 1000)]   # [0.0, 0.5, 1.0, 0.505, 0.01]
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = [
    "SCHEDULES",
    "Constant",
    "Cosine",
    "Exponential",
    "InverseSqrt",
    "Linear",
    "OneCycle",
    "Polynomial",
    "Schedule",
    "StepDecay",
    "Warmup",
    "constant",
    "cosine",
    "exponential",
    "get_schedule",
    "inverse_sqrt",
    "linear",
    "one_cycle",
    "polynomial",
    "step_decay",
    "warmup",
]


@runtime_checkable
class Schedule(Protocol):
    """Anything callable as ``schedule(step) -> float`` with a ``total_steps`` attribute."""

    total_steps: int | None

    def __call__(self, step: int) -> float: ...


# ----------------------------------------------------------------------------- validation


def _num(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    v = _num(name, value)
    if (v < low or (low_open and v == low)) or (v > high or (high_open and v == high)):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name}: expected a number in {lo}{low}, {high}{hi}, got {value!r}")
    return v


def _step(step: Any) -> float:
    if step < 0:
        raise ValueError(f"step: expected an optimizer step >= 0, got {step!r}")
    return float(step)


# ----------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class Constant:
    """factor(t) = 1."""

    total_steps: ClassVar[None] = None

    def __call__(self, step: int) -> float:
        _step(step)
        return 1.0


@dataclass(frozen=True)
class StepDecay:
    """factor(t) = gamma ** floor(t / step_size) (torch StepLR, per optimizer step)."""

    step_size: int
    gamma: float = 0.1
    total_steps: ClassVar[None] = None

    def __post_init__(self) -> None:
        _int("step_size", self.step_size, 1)
        _range("gamma", self.gamma, 0.0, 1.0, low_open=True)

    def __call__(self, step: int) -> float:
        return self.gamma ** (int(_step(step)) // self.step_size)


@dataclass(frozen=True)
class Exponential:
    """factor(t) = gamma ** (t / steps_per_epoch): ``gamma`` per epoch, applied smoothly
    every step; ``staircase=True`` uses floor(t / steps_per_epoch) (torch ExponentialLR
    stepped once per epoch; Keras ExponentialDecay's ``staircase``)."""

    gamma: float
    steps_per_epoch: int = 1
    staircase: bool = False
    total_steps: ClassVar[None] = None

    def __post_init__(self) -> None:
        _range("gamma", self.gamma, 0.0, 1.0, low_open=True)
        _int("steps_per_epoch", self.steps_per_epoch, 1)

    def __call__(self, step: int) -> float:
        e = _step(step) / self.steps_per_epoch
        return self.gamma ** (math.floor(e) if self.staircase else e)


@dataclass(frozen=True)
class Linear:
    """factor(t) = 1 - (1 - end_factor) * min(t, T) / T."""

    total_steps: int
    end_factor: float = 0.0

    def __post_init__(self) -> None:
        _int("total_steps", self.total_steps, 1)
        _range("end_factor", self.end_factor, 0.0, math.inf)

    def __call__(self, step: int) -> float:
        t = min(_step(step), self.total_steps)
        return 1.0 - (1.0 - self.end_factor) * t / self.total_steps


@dataclass(frozen=True)
class InverseSqrt:
    """factor(t) = 1 / sqrt(1 + beta * t)."""

    beta: float
    total_steps: ClassVar[None] = None

    def __post_init__(self) -> None:
        _range("beta", self.beta, 0.0, math.inf)

    def __call__(self, step: int) -> float:
        return 1.0 / math.sqrt(1.0 + self.beta * _step(step))


@dataclass(frozen=True)
class Cosine:
    """factor(t) = f + (1 - f) * (1 + cos(pi * min(t, T) / T)) / 2, f = final_factor
    (SGDR without restarts, Loshchilov & Hutter; torch CosineAnnealingLR's closed form)."""

    total_steps: int
    final_factor: float = 0.0

    def __post_init__(self) -> None:
        _int("total_steps", self.total_steps, 1)
        _range("final_factor", self.final_factor, 0.0, math.inf)

    def __call__(self, step: int) -> float:
        t = min(_step(step), self.total_steps)
        return self.final_factor + (1.0 - self.final_factor) * 0.5 * (
            1.0 + math.cos(math.pi * t / self.total_steps)
        )


@dataclass(frozen=True)
class Polynomial:
    """factor(t) = e + (1 - e) * (1 - min(t, T) / T) ** power, e = end_factor
    (Keras PolynomialDecay without cycling)."""

    total_steps: int
    power: float = 1.0
    end_factor: float = 0.0

    def __post_init__(self) -> None:
        _int("total_steps", self.total_steps, 1)
        _range("power", self.power, 0.0, math.inf, low_open=True)
        _range("end_factor", self.end_factor, 0.0, math.inf)

    def __call__(self, step: int) -> float:
        t = min(_step(step), self.total_steps)
        return (
            self.end_factor + (1.0 - self.end_factor) * (1.0 - t / self.total_steps) ** self.power
        )


@dataclass(frozen=True)
class OneCycle:
    """One-cycle policy (Smith & Topin, 2017) as a multiplier of the PEAK learning rate:
    exactly torch ``OneCycleLR``'s learning rate divided by ``max_lr`` (the base lr is the
    peak). From 1/div_factor, anneal up to 1 over the first ``pct_start`` of the steps,
    then down to 1/(div_factor*final_div_factor) at step T-1; held after. Momentum is
    not cycled (OneCycleLR's ``cycle_momentum`` is not reproduced).
    """

    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal_strategy: str = "cos"

    def __post_init__(self) -> None:
        _int("total_steps", self.total_steps, 1)
        _range("pct_start", self.pct_start, 0.0, 1.0, low_open=True, high_open=True)
        _range("div_factor", self.div_factor, 0.0, math.inf, low_open=True)
        _range("final_div_factor", self.final_div_factor, 0.0, math.inf, low_open=True)
        if self.anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"anneal_strategy: expected 'cos' or 'linear', got {self.anneal_strategy!r}"
            )
        if float(self.pct_start * self.total_steps) == 1.0:  # OneCycleLR divides by zero
            raise ValueError(
                f"pct_start: pct_start * total_steps must not be exactly 1 (warm phase of "
                f"zero length), got {self.pct_start} * {self.total_steps}"
            )

    def __call__(self, step: int) -> float:
        t = min(_step(step), self.total_steps - 1)
        initial = 1.0 / self.div_factor
        final = initial / self.final_div_factor
        # OneCycleLR._schedule_phases: (end_step, start, end)
        phases = (
            (float(self.pct_start * self.total_steps) - 1, initial, 1.0),
            (self.total_steps - 1, 1.0, final),
        )
        start_step = 0.0
        for i, (end_step, a, b) in enumerate(phases):
            if t <= end_step or i == len(phases) - 1:
                pct = (t - start_step) / (end_step - start_step)
                if self.anneal_strategy == "cos":
                    return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)
                return (b - a) * pct + a
            start_step = end_step
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class Warmup:
    """Linear warmup in front of a schedule; the wrapped schedule's clock starts after it:

        factor(t) = schedule(0) * (s + (1 - s) * t / W)   for t < W   (s = start_factor)
        factor(t) = schedule(t - W)                        for t >= W

    so ``total_steps = W + schedule.total_steps``. With s = 0 the first step has lr 0.
    """

    schedule: Callable[[int], float]
    warmup_steps: int
    start_factor: float = 0.0

    def __post_init__(self) -> None:
        if not callable(self.schedule):
            raise TypeError(f"schedule: expected a callable step -> factor, got {self.schedule!r}")
        _int("warmup_steps", self.warmup_steps, 1)
        _range("start_factor", self.start_factor, 0.0, 1.0)

    @property
    def total_steps(self) -> int | None:
        inner = getattr(self.schedule, "total_steps", None)
        return None if inner is None else self.warmup_steps + inner

    def __call__(self, step: int) -> float:
        t = _step(step)
        if t < self.warmup_steps:
            s = self.start_factor
            return self.schedule(0) * (s + (1.0 - s) * t / self.warmup_steps)
        return self.schedule(int(t) - self.warmup_steps)


# Constructors (the documented API; the classes are what they return).


def constant() -> Constant:
    """factor = 1. Example: ``constant()(10) == 1.0``."""
    return Constant()


def step_decay(step_size: int, gamma: float = 0.1) -> StepDecay:
    """gamma ** (step // step_size). Example: ``step_decay(100)(250) == 0.01`` (~)."""
    return StepDecay(step_size, gamma)


def exponential(gamma: float, steps_per_epoch: int = 1, staircase: bool = False) -> Exponential:
    """gamma ** (step / steps_per_epoch), floor'ed if staircase.
    Example: ``exponential(0.5, steps_per_epoch=10)(20) == 0.25``."""
    return Exponential(gamma, steps_per_epoch, staircase)


def linear(total_steps: int, end_factor: float = 0.0) -> Linear:
    """1 - (1 - end_factor) * min(t, T) / T. Example: ``linear(100)(25) == 0.75``."""
    return Linear(total_steps, end_factor)


def inverse_sqrt(beta: float) -> InverseSqrt:
    """1 / sqrt(1 + beta * t). Example: ``inverse_sqrt(1.0)(3) == 0.5``."""
    return InverseSqrt(beta)


def cosine(total_steps: int, final_factor: float = 0.0) -> Cosine:
    """Cosine decay from 1 to final_factor over total_steps. Example: ``cosine(100)(50) == 0.5``."""
    return Cosine(total_steps, final_factor)


def polynomial(total_steps: int, power: float = 1.0, end_factor: float = 0.0) -> Polynomial:
    """e + (1 - e) * (1 - t/T) ** power. Example: ``polynomial(100, power=2)(50) == 0.25``."""
    return Polynomial(total_steps, power, end_factor)


def one_cycle(
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal_strategy: str = "cos",
) -> OneCycle:
    """OneCycleLR's learning rate / max_lr. Example: ``one_cycle(100)(29) == 1.0``."""
    return OneCycle(total_steps, pct_start, div_factor, final_div_factor, anneal_strategy)


def warmup(
    schedule: Callable[[int], float], warmup_steps: int, start_factor: float = 0.0
) -> Warmup:
    """Linear warmup over ``warmup_steps``, then ``schedule`` restarted at 0.
    Example: ``warmup(constant(), 10)(5) == 0.5``."""
    return Warmup(schedule, warmup_steps, start_factor)


SCHEDULES = (
    "constant",
    "step",
    "exponential",
    "linear",
    "inverse_sqrt",
    "cosine",
    "polynomial",
    "one_cycle",
    "warmup_cosine",
)


def _from_name(name: str, steps: int | None, steps_per_epoch: int) -> tuple[Callable, int]:
    """(schedule over ``steps`` steps, warmup steps it brings itself)."""
    key = name.strip().lower().replace("-", "_")
    if key not in SCHEDULES:
        close = difflib.get_close_matches(key, SCHEDULES, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(
            f"schedule: unknown name {name!r}; {hint}valid names: {', '.join(SCHEDULES)}"
        )
    if key == "constant":
        return Constant(), 0
    if key == "inverse_sqrt":
        return InverseSqrt(1.0 / steps_per_epoch), 0
    if steps is None:
        raise ValueError(f"total_steps: schedule {name!r} needs the training length")
    if steps < 1:
        raise ValueError(
            f"warmup_steps: leaves {steps} steps for schedule {name!r}; it needs at least 1"
        )
    if key == "step":
        return StepDecay(max(1, math.ceil(steps / 3))), 0
    if key == "exponential":
        return Exponential(0.01 ** (steps_per_epoch / steps), steps_per_epoch), 0
    if key == "linear":
        return Linear(steps), 0
    if key == "cosine":
        return Cosine(steps), 0
    if key == "polynomial":
        return Polynomial(steps), 0
    if key == "one_cycle":
        return OneCycle(steps), 0
    # warmup_cosine: 5% of the steps warm up (at least 1), the rest decay
    w = max(1, round(0.05 * steps)) if steps > 1 else 0
    return (Warmup(Cosine(steps - w), w) if w else Cosine(steps)), w


def get_schedule(
    spec: Any,
    total_steps: int | None,
    steps_per_epoch: int = 1,
    warmup_steps: int = 0,
) -> Callable[[int], float]:
    """Resolve a schedule for a training of ``total_steps`` optimizer steps.

    ``spec``: None (constant), a name, a schedule object or any callable step -> factor.
    Names get their length from the training (T = total_steps - warmup_steps):
    'constant'; 'step' (x0.1 at T/3 and 2T/3); 'exponential' (to 0.01 at T, decaying
    every epoch's worth of steps); 'linear' (to 0); 'inverse_sqrt' (beta = 1 /
    steps_per_epoch); 'cosine' (to 0); 'polynomial' (power 1 to 0); 'one_cycle'
    (OneCycleLR defaults, base lr = peak);
    'warmup_cosine' (5% warmup, then cosine). ``warmup_steps > 0`` puts a linear warmup
    in front (``warmup``). A schedule whose ``total_steps`` (plus warmup) exceeds
    ``total_steps`` is an error.

    Example::

        sched = get_schedule("cosine", total_steps=1000, steps_per_epoch=100, warmup_steps=50)
        sched(0), sched(50), sched(999)    # (0.0, 1.0, ~2.7e-06)
    """
    spe = _int("steps_per_epoch", steps_per_epoch, 1)
    w = _int("warmup_steps", warmup_steps, 0)
    if total_steps is not None:
        _int("total_steps", total_steps, 1)
        if w >= total_steps and w > 0:
            raise ValueError(f"warmup_steps: {w} warmup steps but training has {total_steps}")
    if spec is None:
        sched: Callable[[int], float] = Constant()
    elif isinstance(spec, str):
        steps = None if total_steps is None else total_steps - w
        sched, own_warmup = _from_name(spec, steps, spe)
        if own_warmup and w:  # 'warmup_cosine' with an explicit warmup: the explicit one wins
            sched = Cosine(steps)
    elif callable(spec):
        sched = spec
        value = sched(0)
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(
                f"schedule: schedule(0) must be a finite number >= 0 (a multiplier "
                f"of the learning rate), got {value!r}"
            )
        n = getattr(sched, "total_steps", None)
        if n is not None and total_steps is not None and n + w > total_steps:
            extra = f" ({n} + {w} warmup)" if w else ""
            raise ValueError(
                f"schedule runs for {n + w} steps{extra} but training has {total_steps}; "
                f"shorten the schedule or train longer"
            )
    else:
        raise TypeError(
            f"schedule: expected None, a name ({', '.join(SCHEDULES)}), a schedule "
            f"or a callable step -> factor, got {spec!r}"
        )
    return Warmup(sched, w) if w else sched
