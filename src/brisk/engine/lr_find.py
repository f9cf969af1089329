"""Learning-rate range test (Smith 2015, "Cyclical Learning Rates", section 3.3; the
fastai ``lr_find`` recipe): train for a few steps while the learning rate grows
exponentially, watch the smoothed loss, and pick a rate from where it falls fastest.

It trains the trainer's own model and optimizer (no copies of the model), then puts back
the weights and buffers, the optimizer state, the gradients, the RNG states (torch, CUDA,
Python, numpy), the loss scaler and the step counters, so the trainer is left exactly as
it was found: the weights are bit-identical, and a later ``fit`` gives the same result as
without the test. The one lasting effect is the set-up ``fit`` would also do: a lazy
``brisk.Sequential`` gets built and the model moved to the trainer's device.

Example::

    import torch, brisk
    from brisk.engine.lr_find import lr_find
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    trainer = brisk.Trainer(net, optimizer="sgd", loss="mse", seed=0)
    x = torch.randn(2048, 8); y = x.sum(1, keepdim=True)
    print(lr_find(trainer, x, y, plot="lr_find.png"))
    # lr_find: 87 steps over 1e-07..0.89, suggested lr 0.138
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import random
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from brisk.engine import inputs
from brisk.engine import step as step_mod
from brisk.engine.trainer import Trainer

__all__ = ["LRFindResult", "lr_find", "plot_lr_find", "suggest_lr"]

# Losses are read from the device every this many steps (not every step: no per-step host
# sync); up to this many - 1 steps past the divergence point are computed and discarded.
_READ_EVERY = 10


@dataclass
class LRFindResult:
    """What ``lr_find`` saw: ``lrs[i]`` is the rate of optimizer step ``i``, ``losses[i]``
    the bias-corrected exponentially smoothed training loss up to that step and
    ``raw_losses[i]`` that step's mean batch loss (before its update). ``suggestion`` is
    the rate at the steepest descent of ``losses`` (None when the loss never fell)."""

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float | None

    def __str__(self) -> str:
        span = f"{len(self.lrs)} steps over {self.lrs[0]:.3g}..{self.lrs[-1]:.3g}"
        if self.suggestion is None:
            return f"lr_find: {span}, no suggestion (the loss never fell; lower start_lr)"
        return f"lr_find: {span}, suggested lr {self.suggestion:.3g}"


def suggest_lr(lrs: Any, losses: Any, skip_start: int = 0) -> float | None:
    """The rate where ``losses`` (smoothed) falls fastest per unit of ``log(lr)``,
    looking only at the points up to the loss minimum (after it the curve rises). This
    is fastai's 'steep' suggestion; it usually sits a few times below the rate of the
    minimum loss, inside the range where training is fast and still stable.

    Slopes are forward differences over ``log10(lr)`` (point i to i + 1, reported at
    i, as fastai does), so the minimum itself is never the answer. The first
    ``skip_start`` points take no part (noisy starts; fastai v1 skips 10 of 100,
    ``lr_find`` skips those whose smoothed value is mostly bias correction) unless the
    loss only rises after them; then the whole curve is used. None when the loss never
    fell below its first value (start lower).

    Example::

        suggest_lr([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.9, 0.3, 5.0])   # 0.01
    """
    lr = np.asarray(lrs, dtype=np.float64)
    loss = np.asarray(losses, dtype=np.float64)
    if lr.shape != loss.shape or lr.ndim != 1:
        raise ValueError(f"losses: expected one loss per lr, got {lr.shape} and {loss.shape}")
    if (
        isinstance(skip_start, bool)
        or not isinstance(skip_start, numbers.Integral)
        or skip_start < 0
    ):
        raise ValueError(f"skip_start: expected an integer >= 0, got {skip_start!r}")
    loss = np.where(np.isfinite(loss), loss, np.inf)
    for first in dict.fromkeys((int(skip_start), 0)):  # skip_start first, then everything
        if first >= len(loss) - 1:
            continue
        end = first + int(np.argmin(loss[first:]))  # the minimum after `first`
        if end > first:
            # slope[i]: from point first + i to first + i + 1 (forward difference)
            with np.errstate(invalid="ignore"):
                slope = np.diff(loss[first : end + 1]) / np.diff(np.log10(lr[first : end + 1]))
            slope[~np.isfinite(slope)] = np.inf  # steps to or from a NaN/inf loss
            return float(lr[first + int(np.argmin(slope))])
    return None


def plot_lr_find(result: LRFindResult, path: str | os.PathLike) -> None:
    """Write a PNG of smoothed (and raw) loss against lr on a log axis, marking the
    suggestion. Uses matplotlib's Agg canvas directly (no pyplot, no global backend).

    Example::

        plot_lr_find(lr_find(trainer, x, y), "lr_find.png")
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(result.lrs, result.raw_losses, color="0.75", lw=0.8, label="batch loss")
    ax.plot(result.lrs, result.losses, color="C0", lw=1.8, label="smoothed loss")
    finite = [v for v in result.losses if math.isfinite(v)]
    if finite:  # keep the diverging tail from flattening the interesting part
        lo = min(v for v in [*finite, *result.raw_losses] if math.isfinite(v))
        hi = max(finite[0], min(max(finite), 2 * finite[0]))
        pad = 0.05 * (hi - lo) if hi > lo else 0.05 * abs(hi) + 1e-12
        ax.set_ylim(lo - pad, hi + pad)
    if result.suggestion is not None:
        i = result.lrs.index(result.suggestion)
        ax.axvline(result.suggestion, color="C3", ls="--", lw=1)
        ax.plot(
            [result.suggestion],
            [result.losses[i]],
            "o",
            color="C3",
            label=f"suggestion {result.suggestion:.3g}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")


def _check_float(name: str, value: Any, low: float, low_open: bool = True) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = not math.isnan(value) and (value > low if low_open else value >= low)
    if not ok:
        raise ValueError(
            f"{name}: expected a number {'>' if low_open else '>='} {low}, got {value!r}"
        )
    return value


class _Snapshot:
    """Everything ``lr_find`` may change on a trainer, copied so it can be put back."""

    def __init__(self, trainer: Trainer, optimizer: torch.optim.Optimizer) -> None:
        t, m = trainer, trainer.module
        self.model = copy.deepcopy(m.state_dict())
        self.params = [p for p in m.parameters()]
        self.grads = [None if p.grad is None else p.grad.detach().clone() for p in self.params]
        self.training = [(sub, sub.training) for sub in m.modules()]
        self.optimizer = copy.deepcopy(optimizer.state_dict())
        self.precision = copy.deepcopy(t.precision.state_dict())
        self.counters = (t.global_step, t.epoch, t.stop_training, t._stats, t._counts)
        self.rng_torch = torch.get_rng_state()
        self.rng_cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.rng_python = random.getstate()
        self.rng_numpy = np.random.get_state()

    def restore(self, trainer: Trainer, optimizer: torch.optim.Optimizer) -> None:
        t, m = trainer, trainer.module
        # load_state_dict copies into the existing tensors: the optimizer keeps pointing
        # at the same parameters.
        m.load_state_dict(self.model)
        for p, g in zip(self.params, self.grads, strict=True):
            p.grad = g
        for sub, mode in self.training:
            sub.training = mode
        optimizer.load_state_dict(self.optimizer)
        t.precision.load_state_dict(self.precision)
        t.global_step, t.epoch, t.stop_training, t._stats, t._counts = self.counters
        torch.set_rng_state(self.rng_torch)
        if self.rng_cuda is not None:
            torch.cuda.set_rng_state_all(self.rng_cuda)
        random.setstate(self.rng_python)
        np.random.set_state(self.rng_numpy)


def lr_find(
    trainer: Any,
    x: Any,
    y: Any = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    batch_size: int | None = None,
    smooth: float = 0.98,
    diverge: float = 4.0,
    plot: str | os.PathLike | None = None,
) -> LRFindResult:
    """Learning-rate range test: ``num_steps`` optimizer steps on training batches with
    the rate growing exponentially from ``start_lr`` to ``end_lr``
    (``lr_i = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))``), recording the
    bias-corrected exponentially smoothed loss (``smooth`` is the EMA's beta). Stops early
    once the smoothed loss exceeds ``diverge`` times its best so far (or a loss is
    NaN/inf). Then the trainer is restored exactly (weights, optimizer state, RNG, ...).

    Args:
        trainer: a ``brisk.Trainer`` or a compiled ``brisk.Sequential``; its optimizer,
            loss, precision, clipping and ``accumulate`` are used as ``fit`` uses them
            (its schedule and warmup are not: the sweep replaces them).
        x, y: training data, as for ``fit`` (arrays, tensors, a Dataset or a loader). A
            loader passed in is iterated: a private ``generator`` of a DataLoader advances
            (the global RNGs are restored, a loader's own generator is not).
        batch_size: as for ``fit`` (default 32; for 'gd' the full-batch chunk, 4096).
        plot: a path: also write a PNG of loss vs lr (log axis) marking the suggestion.

    The swept rate is the optimizer's ``learning_rate`` (its first parameter group);
    other groups keep their ratio to it (Muon's AdamW part, for instance). The suggestion
    is the rate of steepest descent of the smoothed loss before its minimum (fastai's
    'steep'; ``suggest_lr``), skipping the first steps, where ``smooth**(i+1) > 1/2``
    (34 steps for 0.98: the bias-corrected average still rests on a few batches). The
    rate at the loss minimum is usually too high to train with (Smith's upper bound).
    Assumes a loss that is >= 0 (the divergence test compares ratios).

    Example::

        result = lr_find(trainer, x_train, y_train, plot="lr_find.png")
        trainer.optimizer_spec.learning_rate  # unchanged; pick result.suggestion yourself
    """
    if not isinstance(trainer, Trainer) and isinstance(
        getattr(type(trainer), "trainer", None), property
    ):
        trainer = trainer.trainer  # a brisk.Sequential (a clear error if not compiled)
    if not isinstance(trainer, Trainer):
        raise TypeError(
            f"trainer: expected a brisk.Trainer or a compiled brisk.Sequential, "
            f"got {type(trainer).__name__}"
        )
    start_lr = _check_float("start_lr", start_lr, 0.0)
    end_lr = _check_float("end_lr", end_lr, 0.0)
    if not (math.isfinite(start_lr) and math.isfinite(end_lr)) or end_lr <= start_lr:
        raise ValueError(
            f"end_lr: expected a finite rate above start_lr={start_lr!r}, got {end_lr!r}"
        )
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 2:
        raise ValueError(f"num_steps: expected an integer >= 2, got {num_steps!r}")
    num_steps = int(num_steps)
    smooth = _check_float("smooth", smooth, 0.0, low_open=False)
    if smooth >= 1:
        raise ValueError(f"smooth: expected a number in [0, 1), got {smooth!r}")
    diverge = _check_float("diverge", diverge, 1.0)
    if plot is not None and not isinstance(plot, (str, os.PathLike)):
        raise TypeError(f"plot: expected a file path or None, got {type(plot).__name__}")
    if trainer.loss_fn is None:
        raise ValueError("loss: this Trainer has no loss; pass loss= to run lr_find")
    full_batch = bool(getattr(trainer.optimizer_spec, "full_batch", False))
    if batch_size is None:
        batch_size = 4096 if full_batch else 32
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, numbers.Integral)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")

    # The set-up fit does (validation, lazy build, move to the device, optimizer).
    x, y = inputs.prepare(x, y, "x")
    if torch.is_tensor(x):
        sample = x[:2]
    else:
        sample = next(iter(trainer._batches(trainer._loader(x, None, 2, False, 0))))[0]
    trainer._setup_module(sample, batch_size)
    if y is not None:
        y = inputs.check_targets(trainer.loss_fn, trainer._out_shape, y)
    old_optimizer, old_key = trainer.optimizer, trainer._params_key
    with warnings.catch_warnings():  # nothing trainable is an error here, not fit's warning
        warnings.simplefilter("ignore")
        trainer._ensure_optimizer()
    if trainer._nothing_to_train:
        raise ValueError("module: it has no trainable parameters (every weight is frozen, e.g. "
                         "by trainable=False); a learning-rate range test needs some")
    opt = trainer.optimizer
    saved = _Snapshot(trainer, opt)
    try:
        lrs, raw = _sweep(
            trainer, x, y, int(batch_size), full_batch, start_lr, end_lr, num_steps, smooth, diverge
        )
    finally:
        # also puts back a schedule-free optimizer's train/eval mode (in its groups)
        saved.restore(trainer, opt)
        trainer.optimizer, trainer._params_key = old_optimizer, old_key

    smoothed = _smooth(raw, smooth)
    # Points where the bias correction more than doubles the running average
    # (smooth**(i+1) > 1/2: i < 34 for 0.98) rest on a few noisy batches; a chance drop
    # there can look steeper than the real descent, so they are not candidates.
    skip = math.ceil(math.log(0.5) / math.log(smooth)) - 1 if smooth > 0 else 0
    result = LRFindResult(lrs, smoothed, raw, suggest_lr(lrs, smoothed, skip))
    if plot is not None:
        plot_lr_find(result, plot)
    return result


def _smooth(raw: list[float], beta: float) -> list[float]:
    """Bias-corrected EMA (Adam's correction): ``avg / (1 - beta**(i + 1))``."""
    out, avg = [], 0.0
    for i, v in enumerate(raw):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def _diverged_at(raw: list[float], beta: float, diverge: float) -> int | None:
    """Index of the first step whose smoothed loss exceeds ``diverge`` x the best so
    far, or whose loss is not finite; None if none."""
    best = math.inf
    for i, s in enumerate(_smooth(raw, beta)):
        if not math.isfinite(raw[i]) or not math.isfinite(s) or s > diverge * best:
            return i
        best = min(best, s)
    return None


def _sweep(
    trainer: Trainer,
    x,
    y,
    batch_size: int,
    full_batch: bool,
    start_lr: float,
    end_lr: float,
    num_steps: int,
    smooth: float,
    diverge: float,
) -> tuple[list[float], list[float]]:
    """Run the steps; returns (lrs, raw losses) up to and including the divergence."""
    opt = trainer.optimizer
    ref = opt.param_groups[0]["initial_lr"] or 1.0
    ratio = end_lr / start_lr
    lrs = [start_lr * ratio ** (i / (num_steps - 1)) for i in range(num_steps)]

    # The engine sets lr = initial_lr * schedule(step): a schedule giving lrs[step] / ref
    # sweeps the first group's rate and keeps the other groups' ratios to it.
    def schedule(step: int) -> float:
        return lrs[step] / ref

    seed = trainer.seed if trainer.seed is not None else int(torch.randint(0, 2**31 - 1, ()))
    # as fit: a compiled forward sees one batch shape (no recompile for a short last batch)
    drop_last = bool(trainer.compile) and torch.is_tensor(x) and len(x) >= batch_size
    loader = trainer._loader(x, y, batch_size, True, seed, drop_last=drop_last)
    n_batches = len(loader)
    if n_batches == 0:
        raise ValueError("x: no training batches (fewer samples than one batch?)")
    accumulate = n_batches if full_batch else trainer.accumulate
    sizes = step_mod.batch_sizes(loader)

    trainer.module.train()
    trainer._set_optimizer_mode(True)
    trainer._reset_stats()
    losses = torch.zeros(num_steps, device=trainer.device)  # read every _READ_EVERY steps
    raw: list[float] = []
    step, epoch = 0, 0
    while step < num_steps:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        for i, (xb, yb) in enumerate(trainer._batches(loader)):
            weight = 1.0 if accumulate == 1 else xb.shape[0] / step_mod.group_size(sizes, i, accumulate)
            step_mod.train_batch(trainer, xb, yb, weight)
            if not ((i + 1) % accumulate == 0 or i + 1 == n_batches):
                continue
            # the mean loss of this step's samples, computed before its update
            losses[step] = trainer._stats[0] / trainer._counts[0]
            trainer._reset_stats()
            step_mod.optimizer_step(trainer, schedule, step)
            step += 1
            if step % _READ_EVERY == 0 or step == num_steps:
                raw = losses[:step].tolist()
                stop = _diverged_at(raw, smooth, diverge)
                if stop is not None:
                    return lrs[: stop + 1], raw[: stop + 1]
            if step == num_steps:
                break
        epoch += 1
    return lrs, raw
