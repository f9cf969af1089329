"""Pruning: magnitude, random and structured, one-shot or during training.

Everything here is built on ``torch.nn.utils.prune``: a pruned tensor ``weight`` becomes
``weight_orig`` (the trainable parameter) times ``weight_mask`` (a buffer), recomputed by a
forward pre-hook. So masks persist through training: the optimizer updates ``weight_orig``,
and whatever momentum or weight decay do to its pruned entries never reaches the effective
weight (it is always ``orig * mask``). ``make_permanent`` bakes the zeros into a plain
``weight``.

Semantics of ``amount``, as in torch: by default (``cumulative=True``) pruning again on top
of an existing mask prunes ``amount`` of the weights that are *still unpruned* (torch's
``PruningContainer``): ``prune(m, amount=0.5)`` twice leaves 25% of the weights. With
``cumulative=False`` ``amount`` is the *total* fraction of zeros wanted afterwards
(already-pruned weights count, and stay pruned: masks only grow). The gradual and iterative
schedules use that form.

Example::

    import torch.nn as nn
    from brisk.compress import prune, sparsity_report, make_permanent
    model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
    prune(model, amount=0.9, scope="global")
    print(sparsity_report(model)["total"]["sparsity"])   # 0.9
    make_permanent(model)
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.utils.prune as tprune
from torch.nn.utils import parametrize

from brisk.engine.callbacks import Callback
from brisk.engine.checkpoint import refresh_pruned

__all__ = [
    "GradualPruning",
    "copy_model",
    "format_sparsity_report",
    "gradual_sparsity",
    "is_pruned",
    "iterative_prune",
    "make_permanent",
    "prune",
    "sparsity_report",
]

METHODS = ("l1", "random", "threshold", "ln_structured")
SCOPES = ("layer", "global")
# Modules whose ``weight`` is pruned by default.
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


# ------------------------------------------------------------------ helpers
def _choice(arg: str, value: Any, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=2, cutoff=0.5)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(
            f"{arg}: expected one of {', '.join(map(repr, allowed))}, got {value!r}{hint}"
        )
    return value


def _targets(
    model: nn.Module, layers: Iterable[nn.Module | str] | None
) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of the modules whose ``weight`` gets pruned."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    named = dict(model.named_modules())
    if layers is None:
        out = [(n, m) for n, m in named.items() if isinstance(m, PRUNABLE)]
        if not out:
            raise ValueError("model: found no Linear or Conv1d/2d/3d layers to prune; pass layers=")
        return out
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    by_id = {id(m): n for n, m in named.items()}
    out = []
    for item in layers:
        if isinstance(item, str):
            if item not in named:
                close = difflib.get_close_matches(item, list(named), n=3)
                some = [n for n in named if n][:10]
                hint = f"; close names: {close}" if close else f"; names include: {some}"
                raise ValueError(f"layers: no submodule named {item!r} in the model{hint}")
            out.append((item, named[item]))
        elif isinstance(item, nn.Module):
            if id(item) not in by_id:
                raise ValueError(f"layers: {type(item).__name__} module is not part of the model")
            out.append((by_id[id(item)], item))
        else:
            raise TypeError(f"layers: expected modules or names, got {type(item).__name__}")
    for name, m in out:
        w = getattr(m, "weight", None)
        if not isinstance(w, torch.Tensor):
            raise ValueError(f"layers: module {name!r} ({type(m).__name__}) has no weight tensor")
    return out


def _check_amount(amount: Any, arg: str = "amount") -> float:
    if (
        isinstance(amount, bool)
        or not isinstance(amount, (int, float))
        or not math.isfinite(amount)
    ):
        raise ValueError(f"{arg}: expected a fraction in [0, 1], got {amount!r}")
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"{arg}: expected a fraction in [0, 1], got {amount}")
    return float(amount)


def _mask(module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    return getattr(module, name + "_mask", None)


def _n_pruned(module: nn.Module) -> int:
    m = _mask(module)
    return 0 if m is None else int((m == 0).sum())


def _pruned_channels(module: nn.Module, dim: int) -> int:
    m = _mask(module)
    if m is None:
        return 0
    dims = [d for d in range(m.dim()) if d != dim % m.dim()]
    return int((m.sum(dim=dims) == 0).sum())


def _ensure_reparam(module: nn.Module) -> None:
    """Install an all-ones mask so the module is in pruned form even when nothing is cut."""
    if _mask(module) is None:
        tprune.identity(module, "weight")


# --------------------------------------------------------------------- prune
def prune(
    model: nn.Module,
    amount: float | None = None,
    threshold: float | None = None,
    method: str = "l1",
    scope: str = "layer",
    n: int | float = 2,
    dim: int = 0,
    layers: Iterable[nn.Module | str] | None = None,
    cumulative: bool = True,
) -> nn.Module:
    """Prune the weights of ``model`` in place (through ``torch.nn.utils.prune``); returns it.

    method: ``'l1'`` (smallest |w| unstructured), ``'random'`` (unstructured),
    ``'threshold'`` (|w| < threshold becomes 0; give ``threshold``, not ``amount``),
    ``'ln_structured'`` (whole slices along ``dim`` with the smallest L``n`` norm: output
    channels of a Conv / output neurons of a Linear for ``dim=0``).
    scope: ``'layer'`` (each layer loses ``amount``) or ``'global'`` (``amount`` of all the
    targeted weights together, smallest first; l1 and random only).
    amount: fraction in [0, 1] -- of the still-unpruned weights (torch semantics,
    ``cumulative=True``), or the total fraction of zeros wanted (``cumulative=False``).
    The count pruned is ``round(amount * n)`` as in torch. layers: modules or names to
    prune (default: every Linear and Conv1d/2d/3d).

    Example::

        model = nn.Sequential(nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 2))
        prune(model, amount=0.5)                        # 50% of each layer
        prune(model, amount=0.8, cumulative=False)      # now 80% in total per layer
        prune(model, threshold=1e-3, method="threshold")
    """
    method = _choice("method", method, METHODS)
    scope = _choice("scope", scope, SCOPES)
    targets = _targets(model, layers)
    if method == "threshold":
        if amount is not None:
            raise ValueError("amount: method='threshold' takes threshold=, not amount=")
        if threshold is None:
            raise ValueError(
                "threshold: method='threshold' needs threshold= (|w| < threshold become 0)"
            )
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not threshold >= 0
        ):
            raise ValueError(f"threshold: expected a number >= 0, got {threshold!r}")
        for _, m in targets:
            keep = (m.weight.detach().abs() >= threshold).to(m.weight.dtype)
            tprune.custom_from_mask(m, "weight", keep)  # composes: old zeros stay zero
        return model
    if threshold is not None:
        raise ValueError(f"threshold: only used by method='threshold', not method={method!r}")
    if amount is None:
        raise ValueError(f"amount: method={method!r} needs amount= (a fraction in [0, 1])")
    amount = _check_amount(amount)
    if method == "ln_structured" and scope == "global":
        raise ValueError("scope: 'global' works with method 'l1' or 'random', not 'ln_structured'")
    if method == "ln_structured" and not (
        n == float("inf") or (isinstance(n, (int, float)) and n > 0)
    ):
        raise ValueError(f"n: expected a norm order > 0 or inf, got {n!r}")

    unstructured = {"l1": tprune.L1Unstructured, "random": tprune.RandomUnstructured}
    if scope == "global":
        total = sum(m.weight.numel() for _, m in targets)
        if cumulative:
            k = amount  # torch: fraction of the remaining weights
        else:
            # Integer count: torch prunes exactly this many of the still-unpruned weights.
            k = max(0, round(amount * total) - sum(_n_pruned(m) for _, m in targets))
            if k == 0:
                for _, m in targets:
                    _ensure_reparam(m)
                return model
        tprune.global_unstructured(
            [(m, "weight") for _, m in targets], pruning_method=unstructured[method], amount=k
        )
        return model

    for _, m in targets:
        if method == "ln_structured":
            if cumulative:
                k = amount
            else:
                chans = m.weight.shape[dim]
                k = max(0, round(amount * chans) - _pruned_channels(m, dim))
            if k == 0 and not cumulative:
                _ensure_reparam(m)
                continue
            tprune.ln_structured(m, "weight", amount=k, n=n, dim=dim)
        else:
            if cumulative:
                k = amount
            else:
                k = max(0, round(amount * m.weight.numel()) - _n_pruned(m))
                if k == 0:
                    _ensure_reparam(m)
                    continue
            if method == "l1":
                tprune.l1_unstructured(m, "weight", amount=k)
            else:
                tprune.random_unstructured(m, "weight", amount=k)
    return model


def is_pruned(model: nn.Module) -> bool:
    """True when some tensor of ``model`` carries a torch pruning mask.

    Example::

        is_pruned(prune(nn.Linear(4, 4), amount=0.5))   # True
    """
    return tprune.is_pruned(model)


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works on pruned models (whose ``weight`` is a non-leaf
    tensor ``orig * mask`` that deepcopy refuses); the copy keeps its masks and weight
    sharing. Parametrized modules of the copy get their own class: torch's
    ``remove_parametrizations`` deletes the property from the class, which a plain
    deepcopy shares with the original (``make_permanent`` on it would break the original).

    Example::

        twin = copy_model(prune(nn.Linear(4, 4), amount=0.5))
    """
    saved = []
    for m in model.modules():
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, tprune.BasePruningMethod):
                name = hook._tensor_name
                t = getattr(m, name)
                saved.append((m, name, t))
                setattr(m, name, t.detach())  # recomputed by the hook at the next forward
    try:
        twin = copy.deepcopy(model)
    finally:
        for m, name, t in saved:
            setattr(m, name, t)
    for m in twin.modules():
        if parametrize.is_parametrized(m):
            cls = type(m)
            ns = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
            m.__class__ = type(cls.__name__, cls.__bases__, ns)
    return twin


def make_permanent(model: nn.Module) -> nn.Module:
    """Remove the pruning reparametrisation (``weight_orig * weight_mask``) and any weight
    sharing parametrisation (``brisk.compress.share_weights``), leaving plain weights with
    their zeros / shared values in place. In place; returns ``model``.

    Example::

        model = prune(nn.Linear(8, 8), amount=0.5)
        make_permanent(model)        # model.weight is a plain Parameter with 32 zeros
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    for m in model.modules():
        for hook in list(m._forward_pre_hooks.values()):
            if isinstance(hook, tprune.BasePruningMethod):
                tprune.remove(m, hook._tensor_name)
    from brisk.compress.export import SharedWeights

    for m in model.modules():
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations.keys()):
                if all(isinstance(p, SharedWeights) for p in m.parametrizations[name]):
                    parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    return model


# ------------------------------------------------------------------- report
def _effective_weights(model: nn.Module, layers=None) -> list[tuple[str, torch.Tensor]]:
    out = []
    seen = set()
    for name, m in model.named_modules():
        pruned = _mask(m) is not None
        if (layers is None and (isinstance(m, PRUNABLE) or pruned)) or (
            layers is not None and id(m) in layers
        ):
            w = getattr(m, "weight", None)
            if isinstance(w, torch.Tensor) and id(m) not in seen:
                seen.add(id(m))
                out.append((f"{name}.weight" if name else "weight", w.detach()))
    return out


def sparsity_report(model: nn.Module, layers: Iterable[nn.Module | str] | None = None) -> dict:
    """Zeros in the (effective) weights of the prunable layers.

    Returns ``{"layers": {"0.weight": {"params", "zeros", "sparsity"}, ...},
    "total": {...}}``; ``total`` sums the listed weights (what "weights kept" refers to in
    Han et al. 2015). ``layers`` restricts the report as in ``prune``.

    Example::

        model = prune(nn.Sequential(nn.Linear(10, 10)), amount=0.3)
        sparsity_report(model)["layers"]["0.weight"]   # {'params': 100, 'zeros': 30, ...}
    """
    ids = None if layers is None else {id(m) for _, m in _targets(model, layers)}
    report: dict[str, Any] = {"layers": {}}
    tp = tz = 0
    refresh_pruned(model)  # the weights as they are now, not as at the last forward
    for name, w in _effective_weights(model, ids):
        p, z = w.numel(), int((w == 0).sum())
        report["layers"][name] = {"params": p, "zeros": z, "sparsity": z / p if p else 0.0}
        tp, tz = tp + p, tz + z
    report["total"] = {"params": tp, "zeros": tz, "sparsity": tz / tp if tp else 0.0}
    return report


def format_sparsity_report(report: dict | nn.Module) -> str:
    """A table of ``sparsity_report`` (pass the report or the model).

    Example::

        print(format_sparsity_report(model))
    """
    if isinstance(report, nn.Module):
        report = sparsity_report(report)
    rows = [(n, r) for n, r in report["layers"].items()] + [("total", report["total"])]
    width = max(12, *(len(n) for n, _ in rows))
    lines = [f"{'layer':<{width}} {'params':>10} {'zeros':>10} {'sparsity':>9} {'kept':>7}"]
    for n, r in rows:
        if n == "total":
            lines.append("-" * len(lines[0]))
        kept = 1.0 - r["sparsity"]
        lines.append(
            f"{n:<{width}} {r['params']:>10,} {r['zeros']:>10,} {r['sparsity']:>9.2%} {kept:>7.2%}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------- during training
def gradual_sparsity(
    step: int,
    initial_sparsity: float,
    final_sparsity: float,
    begin_step: int,
    end_step: int,
    frequency: int,
) -> float:
    """Zhu & Gupta (2017) cubic sparsity schedule, as a pure ``step -> sparsity`` function.

    ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))**3`` at the pruning steps
    ``t = t0, t0 + dt, ...`` (``dt = frequency``, ``n dt = end_step - begin_step``); between
    pruning steps it holds the value of the last one (a staircase), ``s_i`` before
    ``begin_step`` and ``s_f`` from ``end_step`` on.

    Example::

        gradual_sparsity(500, 0.0, 0.9, begin_step=0, end_step=1000, frequency=100)  # 0.7875
    """
    for arg, v in (("initial_sparsity", initial_sparsity), ("final_sparsity", final_sparsity)):
        if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ValueError(f"{arg}: expected a fraction in [0, 1], got {v!r}")
    if not isinstance(frequency, int) or frequency < 1:
        raise ValueError(f"frequency: expected an integer >= 1 (steps), got {frequency!r}")
    if end_step <= begin_step:
        raise ValueError(f"end_step: expected > begin_step ({begin_step}), got {end_step}")
    if step < begin_step:
        return float(initial_sparsity)
    if step >= end_step:
        return float(final_sparsity)
    t = begin_step + ((step - begin_step) // frequency) * frequency  # last pruning step
    frac = (t - begin_step) / (end_step - begin_step)
    return float(final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3)


class GradualPruning(Callback):
    """Prune to ``gradual_sparsity(trainer.global_step, ...)`` while training (Zhu & Gupta).

    At each pruning step (every ``frequency`` optimizer steps from ``begin_step`` to
    ``end_step``) the masks are recomputed from the magnitudes of the current effective
    weights so the total sparsity equals the schedule; masks only grow (a pruned weight
    stays pruned). ``end_step=None`` takes the end of the run (``epochs * steps``).
    ``self.sparsity`` is the sparsity last applied; it is also written into the epoch-end
    logs as ``sparsity`` (seen by the callbacks after this one). Stopping on an accuracy
    drop is left to the caller (e.g. a callback comparing ``val_accuracy``).

    Example::

        trainer.fit(x, y, epochs=10, callbacks=[GradualPruning(0.9, end_step=2000)])
        make_permanent(trainer.module)
    """

    def __init__(
        self,
        final_sparsity: float,
        begin_step: int = 0,
        end_step: int | None = None,
        frequency: int = 100,
        initial_sparsity: float = 0.0,
        scope: str = "global",
        method: str = "l1",
        layers: Iterable[nn.Module | str] | None = None,
    ) -> None:
        self.scope = _choice("scope", scope, SCOPES)
        self.method = _choice("method", method, ("l1", "random"))
        self.final_sparsity = final_sparsity
        self.initial_sparsity = initial_sparsity
        self.begin_step, self.end_step, self.frequency = begin_step, end_step, frequency
        self.layers = layers
        self.sparsity = 0.0
        if end_step is not None:  # validate early, with a step that touches no model
            gradual_sparsity(
                begin_step, initial_sparsity, final_sparsity, begin_step, end_step, frequency
            )

    def _target(self, step: int) -> float:
        return gradual_sparsity(
            step,
            self.initial_sparsity,
            self.final_sparsity,
            self.begin_step,
            self.end_step,
            self.frequency,
        )

    def _apply(self, step: int) -> None:
        target = self._target(step)
        if target > self.sparsity or not is_pruned(self.model):
            prune(
                self.model,
                amount=target,
                method=self.method,
                scope=self.scope,
                layers=self.layers,
                cumulative=False,
            )
            self.sparsity = target

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.end_step is None:
            p = getattr(self, "params", None) or {}
            if not p.get("epochs") or not p.get("steps"):
                raise ValueError(
                    "end_step: pass end_step= (the trainer did not report epochs and steps)"
                )
            self.end_step = int(p["epochs"]) * int(p["steps"])
            self._target(self.begin_step)  # validate
        self._apply(int(self.trainer.global_step))  # also covers resumed runs

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = int(self.trainer.global_step)
        if self._target(step) > self.sparsity:
            self._apply(step)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["sparsity"] = self.sparsity

    def state_dict(self) -> dict:
        """The sparsity last applied and the run's end step (saved in checkpoints; the masks
        are in the model's state)."""
        return {"sparsity": self.sparsity, "end_step": self.end_step}

    def load_state_dict(self, state: dict) -> None:
        self.sparsity = float(state["sparsity"])
        if state.get("end_step") is not None:
            self.end_step = int(state["end_step"])


def iterative_prune(
    model: nn.Module,
    fine_tune: Callable[[nn.Module, int], None],
    schedule: Sequence[float] = (0.5, 0.75, 0.9, 0.92),
    method: str = "l1",
    scope: str = "layer",
    layers: Iterable[nn.Module | str] | None = None,
) -> nn.Module:
    """Han et al. (2015): prune -> fine-tune -> prune more. In place; returns ``model``.

    Round ``r`` prunes to the total sparsity ``schedule[r]`` (``cumulative=False``: the
    smallest magnitudes among the weights still alive) and calls ``fine_tune(model, r)``.
    During fine-tuning the masks stay fixed by torch's prune hooks: the effective weight is
    ``weight_orig * weight_mask``, so neither momentum nor weight decay acting on
    ``weight_orig`` can bring a pruned weight back. Call ``make_permanent`` at the end.

    Example::

        def fine_tune(model, round):
            trainer.fit(x, y, epochs=2)        # any training loop over this model
        iterative_prune(model, fine_tune, schedule=[0.5, 0.8, 0.92])
    """
    if not callable(fine_tune):
        raise TypeError(
            f"fine_tune: expected a callable (model, round) -> None, got {type(fine_tune).__name__}"
        )
    schedule = list(schedule)
    if not schedule:
        raise ValueError("schedule: expected at least one sparsity")
    prev = 0.0
    for s in schedule:
        _check_amount(s, "schedule")
        if s < prev:
            raise ValueError(
                f"schedule: sparsities must not decrease (masks only grow), got {schedule}"
            )
        prev = s
    for r, s in enumerate(schedule):
        prune(model, amount=s, method=method, scope=scope, layers=layers, cumulative=False)
        fine_tune(model, r)
    return model
