"""``brisk profile``: where a training step's time goes, and which switch would help.

``profile(model_or_trainer, x, y)`` trains a *copy* of the model (the original's weights,
optimizer and statistics are untouched) on real batches and reports:

- **the step time of brisk's own loop**: ``fit`` over ``steps`` batches after ``warmup``
  batches (an epoch of each, ``steps_per_epoch``), timed from the epoch's first batch to
  its last, median of ``reps`` windows; samples/s;
- **the split of a step**, from the same steps taken one phase at a time through the
  engine's own functions, the device synchronised after each phase: ``data`` (next batch,
  host-to-device transfer, casts), ``forward`` (forward and loss), ``backward``,
  ``optimizer`` (clipping, schedule, step, zeroing), ``metrics`` (the on-device loss and
  metric sums), ``callbacks`` (the per-batch hook dispatch: 0, as in a fit where no
  callback has a batch hook) and ``host sync`` (reading the sums at the window's end,
  spread over its steps). The split's sum is compared with the
  loop's step time; the rest is the engine's own per-step cost;
- **FLOPs** per sample (forward, and forward + backward, counted by
  ``torch.utils.flop_counter``), the FLOP/s reached, and **MFU** against the device's peak:
  for a GPU from a table of published dense peaks (NVIDIA datasheets), for a CPU from a
  matmul measured once per CPU, thread count and dtype and cached
  (``~/.cache/brisk/peak_flops.json``, or ``$BRISK_CACHE_DIR``);
- **peak memory**: CUDA's peak allocated bytes, or on a CPU the process's peak resident set;
- **contention**: when the windows' times spread by more than 1.5x, or the load average
  exceeds the cores this process may use, the report says so;
- **switches**: each one that applies is timed on its own copy, alternating with the
  baseline (so a burst of outside load hits both), and its speedup in samples/s is
  reported; then the switches that won are timed together: ``channels-last`` (models
  with Conv2d), ``bf16-autocast``, ``compile`` (``torch.compile``; compile time excluded,
  reported), ``batch-x2`` (learning rate x2), ``device-loader`` (a ``DeviceLoader`` in
  place of a DataLoader over a TensorDataset) and ``fused-optimizer`` (a torch optimizer
  built without ``fused``) and ``fewer-threads`` (half the CPU intra-op threads: what a
  busy machine's cores allow).

``trace=PATH`` writes a ``torch.profiler`` Chrome trace of a few steps (open it in
chrome://tracing or Perfetto).

Example::

    report = brisk.profile(model, x_train, y_train, batch_size=128)
    print(report.table())
    report.write("runs/profile")        # profile.json and profile.png
"""

from __future__ import annotations

import copy
import gc
import json
import math
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from brisk.data.loader import DeviceLoader
from brisk.engine import step as step_mod
from brisk.engine.callbacks import Callback
from brisk.engine.threads import usable_cores
from brisk.engine.trainer import Trainer

PHASES = ("data", "forward", "backward", "optimizer", "metrics", "callbacks", "host sync")
SWITCHES = ("channels-last", "bf16-autocast", "compile", "batch-x2", "device-loader",
            "fused-optimizer", "fewer-threads")
# Dense (no sparsity) peak FLOP/s from NVIDIA's datasheets, by a name fragment as
# torch.cuda.get_device_name reports it: (bf16 tensor core, fp32 non-tensor). SXM parts.
GPU_PEAKS = {
    "H200": (989e12, 67e12),
    "H100": (989e12, 67e12),
    "A100": (312e12, 19.5e12),
    "L40S": (362e12, 91.6e12),
    "L4": (121e12, 30.3e12),
    "A10": (125e12, 31.2e12),
    "V100": (125e12, 15.7e12),  # fp16 tensor core (V100 has no bf16)
    "T4": (65e12, 8.1e12),  # fp16 tensor core
}


@dataclass
class ProfileReport:
    """What ``profile`` measured. Times in seconds, rates per second, memory in bytes."""

    device: str
    device_name: str
    threads: int
    batch_size: int
    steps: int
    precision: str
    step_time: float  # brisk's loop, median over the windows
    step_times: list[float]  # each window's
    samples_per_second: float
    split: dict[str, float]  # seconds per step, by phase (empty with split=False)
    flops_per_sample_forward: float
    flops_per_sample_train: float  # forward + backward
    flops_per_second: float
    peak_flops: float | None  # of the dtype the step computes in
    peak_source: str
    mfu: float | None
    peak_memory: int
    peak_memory_kind: str
    contention: str | None
    switches: list[dict] = field(default_factory=list)
    best: dict | None = None

    @property
    def split_total(self) -> float:
        return sum(self.split.values())

    def table(self) -> str:
        """The report as text for a terminal."""
        lines = [f"brisk profile: {self.device_name} ({self.device}, {self.threads} threads), "
                 f"batch {self.batch_size}, {self.steps} steps, precision {self.precision}",
                 f"  step {self.step_time * 1e3:.2f} ms  {self.samples_per_second:,.0f} "
                 f"samples/s  (windows: "
                 + ", ".join(f"{t * 1e3:.2f}" for t in self.step_times) + " ms)"]
        if self.split:
            lines.append("  where a step's time goes (ms; each phase timed alone):")
            for k, v in self.split.items():
                share = v / self.step_time if self.step_time else 0.0
                lines.append(f"    {k:<10} {v * 1e3:8.3f}  {share:6.1%}")
            rest = self.step_time - self.split_total
            lines.append(f"    {'sum':<10} {self.split_total * 1e3:8.3f}  "
                         f"{self.split_total / self.step_time:6.1%} of the loop's step "
                         f"({'engine' if rest >= 0 else 'phase timing'} "
                         f"{abs(rest) * 1e3:.3f} ms {'more' if rest >= 0 else 'over'})")
        lines.append(f"  FLOPs per sample: {self.flops_per_sample_forward / 1e6:.3g} M forward, "
                     f"{self.flops_per_sample_train / 1e6:.3g} M training; reached "
                     f"{self.flops_per_second / 1e9:.3g} GFLOP/s")
        if self.mfu is not None:
            lines.append(f"  MFU {self.mfu:.1%} of {self.peak_flops / 1e9:.4g} GFLOP/s "
                         f"({self.peak_source})")
        else:
            lines.append(f"  MFU: unknown ({self.peak_source})")
        lines.append(f"  peak memory: {self.peak_memory / 2**20:.0f} MiB ({self.peak_memory_kind})")
        if self.contention:
            lines.append(f"  contention: {self.contention}")
        if self.switches:
            lines.append("  switches (samples/s against the baseline, timed alternately):")
            for s in self.switches:
                if s["speedup"] is None:
                    lines.append(f"    {s['name']:<16} -      {s['note']}")
                else:
                    lines.append(f"    {s['name']:<16} {s['speedup']:5.2f}x {s['note']}")
        if self.best is not None:
            lines.append(f"  best combination: {' + '.join(self.best['names'])}: "
                         f"{self.best['speedup']:.2f}x")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["split_total"] = self.split_total
        return d

    def plot(self, path: str | os.PathLike) -> str:
        """A PNG: the step's time split (a bar per phase, and the loop's step time), and
        each switch's speedup."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 3.6), layout="constrained")
        FigureCanvasAgg(fig)
        a, b = fig.subplots(1, 2)
        names = [*self.split, "brisk step"]
        vals = [v * 1e3 for v in self.split.values()] + [self.step_time * 1e3]
        a.barh(names[::-1], vals[::-1], color=["C3"] + ["C0"] * len(self.split))
        a.set_xlabel("ms per step")
        a.set_title(f"batch {self.batch_size}, {self.precision}")
        timed = [s for s in self.switches if s["speedup"] is not None]
        b.barh([s["name"] for s in timed][::-1], [s["speedup"] for s in timed][::-1], color="C2")
        b.axvline(1.0, color="k", lw=0.8)
        b.set_xlabel("speedup (samples/s)")
        b.set_title("switches")
        fig.suptitle(self.device_name)
        fig.savefig(os.fspath(path), format="png", dpi=100)
        return os.fspath(path)

    def write(self, out: str | os.PathLike) -> list[str]:
        """profile.json and profile.png in the folder ``out`` (created)."""
        os.makedirs(out, exist_ok=True)
        js = os.path.join(out, "profile.json")
        with open(js, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
        return [js, self.plot(os.path.join(out, "profile.png"))]


# ---------------------------------------------------------------------------- helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _trainer_of(model: Any) -> Trainer:
    if isinstance(model, Trainer):
        return model
    t = getattr(model, "trainer", None)
    if isinstance(t, Trainer):
        return t
    raise TypeError("model: expected a compiled brisk.Sequential (call compile first) or a "
                    f"brisk.Trainer, got {type(model).__name__}")


def _clone(trainer: Trainer, **overrides) -> Trainer:
    """A new Trainer over a deep copy of the module, with the same settings (and the
    metrics copied, so their state is its own)."""
    module = trainer.module
    # a Sequential refers to its Trainer: the copy gets None there, not a copy of it
    memo = {id(v): None for v in vars(module).values() if isinstance(v, Trainer)}
    module = copy.deepcopy(module, memo)
    opt = trainer._optimizer_arg
    if isinstance(opt, torch.optim.Optimizer):  # a built optimizer: the same class and settings
        cls, defaults = type(opt), dict(opt.defaults)
        opt = lambda params: cls(params, **defaults)  # noqa: E731
    kwargs = dict(optimizer=opt, loss=trainer.loss_fn, metrics=copy.deepcopy(trainer.metrics),
                  device=trainer.device, precision=trainer.precision.mode or "auto",
                  compile=trainer.compile, schedule=trainer.schedule, warmup=trainer.warmup,
                  accumulate=trainer.accumulate, clip_norm=trainer.clip_norm,
                  clip_value=trainer.clip_value, seed=0,
                  # one fixed thread count per copy: threads='auto' would change it inside a
                  # timed window ('fewer-threads' times the alternative on its own)
                  threads=min(torch.get_num_threads(), usable_cores())
                  if trainer.device.type == "cpu" else None)
    kwargs.update(overrides)
    return Trainer(module, **kwargs)


class _Window(Callback):
    """Clock readings at the start and end of every epoch's batches (and the intra-op
    thread count the fit ran at)."""

    def __init__(self, clock: Callable[[], float], device: torch.device):
        self.clock, self.device, self.spans = clock, device, []

    def on_epoch_begin(self, epoch, logs=None):
        self.threads = torch.get_num_threads()
        _sync(self.device)
        self._t = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        _sync(self.device)
        self.spans.append(self.clock() - self._t)


def _fit_window(trainer, x, y, batch_size, steps, warmup, clock) -> float:
    """Seconds per step of ``fit``: an epoch of ``warmup`` batches, then one of ``steps``."""
    w = _Window(clock, trainer.device)
    if warmup:
        trainer.fit(x, y, batch_size=batch_size, epochs=1, steps_per_epoch=warmup, verbose=0)
    trainer.fit(x, y, batch_size=batch_size, epochs=1, steps_per_epoch=steps, verbose=0,
                callbacks=[w])
    trainer._profile_threads = w.threads
    return w.spans[-1] / steps


def _split(trainer, x, y, batch_size, steps, clock=time.perf_counter) -> dict[str, float]:
    """Seconds per step by phase, the steps taken through the engine's own functions
    (``Trainer._batches``, ``_fwd_loss``, ``Precision.backward``, ``step.optimizer_step``,
    ``_accumulate``), the device synchronised after each phase. ``callbacks`` stays 0:
    fit dispatches no batch hook when no callback has one, as here."""
    dev = trainer.device
    loader = trainer._loader(x, y, batch_size, True, 0, drop_last=True)
    trainer.module.train()
    totals = dict.fromkeys(PHASES, 0.0)
    trainer._reset_stats()
    batches = iter(trainer._batches(loader, weights=True))
    done = -min(steps, 3)  # a few untimed steps first: the first calls of a loop are slower
    while done < steps:
        if done == 0:
            totals = dict.fromkeys(PHASES, 0.0)
        _sync(dev)
        t_data = clock()
        try:
            xb, yb, wb = next(batches)
        except StopIteration:  # a new pass over the data
            batches = iter(trainer._batches(loader, weights=True))
            continue
        _sync(dev)
        t0 = clock()
        out, loss = trainer._fwd_loss(xb, yb) if wb is None else trainer._fwd_loss(xb, yb, wb)
        _sync(dev)
        t2 = clock()
        trainer.precision.backward(loss)
        _sync(dev)
        t3 = clock()
        step_mod.optimizer_step(trainer, None, trainer.global_step)
        _sync(dev)
        t4 = clock()
        trainer._accumulate(loss, out, yb)
        _sync(dev)
        t5 = clock()
        totals["data"] += t0 - t_data
        totals["forward"] += t2 - t0
        totals["backward"] += t3 - t2
        totals["optimizer"] += t4 - t3
        totals["metrics"] += t5 - t4
        done += 1
    t0 = clock()
    trainer._read_stats()
    totals["host sync"] = clock() - t0
    return {k: v / steps for k, v in totals.items()}


def _flops(trainer, x, y, batch_size) -> tuple[float, float]:
    """FLOPs per sample: (forward and loss, forward + loss + backward), one batch."""
    loader = trainer._loader(x, y, batch_size, False, 0)
    xb, yb, _ = next(iter(trainer._batches(loader, weights=True)))
    n = xb.shape[0]
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            trainer._fwd_loss(xb, yb)
    fwd = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        out, loss = trainer._fwd_loss(xb, yb)
        loss.backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return fwd / n, fc.get_total_flops() / n


def _cache_dir() -> str:
    return os.environ.get("BRISK_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                             "brisk")


def cpu_peak_flops(dtype: torch.dtype = torch.float32, n: int = 1024, reps: int = 5,
                   cache: bool = True) -> float:
    """This CPU's matmul FLOP/s at the current thread count in ``dtype``: the best of
    ``reps`` n x n products after a warm-up. Measured once per CPU model, thread count,
    dtype and torch version, then read from ``peak_flops.json`` in the cache folder."""
    from brisk.bench.runner import cpu_name

    key = f"{cpu_name()}|{torch.get_num_threads()}|{dtype}|{torch.__version__}|{n}"
    path = os.path.join(_cache_dir(), "peak_flops.json")
    table = {}
    if cache:
        try:
            with open(path) as f:
                table = json.load(f)
            if key in table:
                return float(table[key])
        except (OSError, ValueError):
            table = {}
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    peak = 2 * n**3 / best
    if cache:
        table[key] = peak
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + f".{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(table, f, indent=1)
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable cache only costs a measurement next time
    return peak


def _peak(device: torch.device, precision: str) -> tuple[float | None, str]:
    low = precision in ("bf16-mixed", "bf16", "fp16-mixed")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for frag, (half, single) in GPU_PEAKS.items():
            if frag in name:
                return (half if low else single), (f"{frag} datasheet, dense "
                                                   f"{'16-bit tensor core' if low else 'fp32'}")
        return None, f"no published peak known for {name!r}"
    if device.type == "cpu":
        dt = torch.bfloat16 if low else torch.float32
        return cpu_peak_flops(dt), f"matmul measured on this CPU, {str(dt)[6:]}"
    return None, f"no peak known for {device.type}"


def _contention(times: list[float], device: torch.device) -> str | None:
    notes = []
    if len(times) > 1 and min(times) > 0 and max(times) / min(times) > 1.5:
        notes.append(f"the step time varied {max(times) / min(times):.1f}x between windows")
    if device.type == "cpu" and hasattr(os, "getloadavg"):
        load, cores = os.getloadavg()[0], usable_cores()
        if load > cores + 0.5:
            notes.append(f"load average {load:.1f} on {cores} usable cores")
    if not notes:
        return None
    return ("; ".join(notes) + ": another process is likely using the cores (figures are "
            "slower and noisier than on an idle machine)")


def _peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "CUDA peak allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return int(rss) * 1024, "process peak resident set"


# ---------------------------------------------------------------------------- switches
def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def _is_channels_last(module: nn.Module) -> bool:
    """Every Conv2d weight in channels-last layout (a 1-channel conv's weight is both)."""
    ws = [m.weight for m in module.modules() if isinstance(m, nn.Conv2d)]
    return bool(ws) and all(w.is_contiguous(memory_format=torch.channels_last) for w in ws) \
        and not all(w.is_contiguous() for w in ws)


def _switch(name: str, trainer: Trainer, x, y, batch_size):
    """``(trainer, x, batch_size, note)`` for the switch, or ``(None, ..., why not)``."""
    if name == "channels-last":
        if not _has_conv(trainer.module):
            return None, x, batch_size, "no Conv2d"
        if _is_channels_last(trainer.module):
            return None, x, batch_size, "already channels-last"
        t = _clone(trainer)
        t.module.to(memory_format=torch.channels_last)
        return t, x, batch_size, ""
    if name == "bf16-autocast":
        if trainer.precision.mode != "fp32":
            return None, x, batch_size, f"already {trainer.precision.mode}"
        return _clone(trainer, precision="bf16-mixed"), x, batch_size, "precision='bf16-mixed'"
    if name == "compile":
        if trainer.compile:
            return None, x, batch_size, "already compiled"
        return _clone(trainer, compile=True), x, batch_size, "compile=True"
    if name == "batch-x2":
        t = _clone(trainer)
        t._profile_lr_scale = 2.0
        return t, x, 2 * batch_size, f"batch {2 * batch_size}, learning rate x2"
    if name == "device-loader":
        if not isinstance(x, torch.utils.data.DataLoader):
            return None, x, batch_size, "the data is already on the device (arrays or a DeviceLoader)"
        ds = x.dataset
        if not isinstance(ds, torch.utils.data.TensorDataset):
            return None, x, batch_size, "not measured: the DataLoader's dataset is not a TensorDataset"
        loader = DeviceLoader(*ds.tensors, batch_size=x.batch_size or batch_size, shuffle=True,
                              device=trainer.device)
        return _clone(trainer), loader, batch_size, "brisk.data.DeviceLoader"
    if name == "fewer-threads":
        n = getattr(trainer, "_profile_threads", torch.get_num_threads())
        if trainer.device.type != "cpu" or n < 2:
            return None, x, batch_size, ("one thread already" if n < 2 else
                                         "CPU intra-op threads only")
        return (_clone(trainer, threads=n // 2), x, batch_size,
                f"threads={n // 2} (of {n}): a busy machine's cores")
    if name == "fused-optimizer":
        opt = trainer.optimizer
        if not isinstance(opt, torch.optim.Optimizer) or "fused" not in opt.defaults:
            return None, x, batch_size, "the optimizer has no fused kernel"
        if opt.defaults.get("fused"):
            return None, x, batch_size, "already fused"
        cls, defaults = type(opt), {**opt.defaults, "fused": True, "foreach": None}
        return _clone(trainer, optimizer=lambda p: cls(p, **defaults)), x, batch_size, "fused=True"
    raise ValueError(f"switches: unknown switch {name!r}; known: {', '.join(SWITCHES)}")


def _combine(trainer: Trainer, names: list[str], x, batch_size):
    """One copy with every switch in ``names`` on."""
    over = {}
    if "bf16-autocast" in names:
        over["precision"] = "bf16-mixed"
    if "compile" in names:
        over["compile"] = True
    if "fused-optimizer" in names:
        cls, defaults = type(trainer.optimizer), {**trainer.optimizer.defaults, "fused": True,
                                                   "foreach": None}
        over["optimizer"] = lambda p: cls(p, **defaults)
    if "fewer-threads" in names:
        over["threads"] = max(1, getattr(trainer, "_profile_threads", 2) // 2)
    t = _clone(trainer, **over)
    if "channels-last" in names:
        t.module.to(memory_format=torch.channels_last)
    if "batch-x2" in names:
        t._profile_lr_scale = 2.0
        batch_size *= 2
    if "device-loader" in names:
        x = _switch("device-loader", trainer, x, None, batch_size)[1]
    return t, x, batch_size


def _scale_lr(t: Trainer) -> None:
    scale = getattr(t, "_profile_lr_scale", None)
    if scale and t.optimizer is not None:
        for g in t.optimizer.param_groups:
            for k in ("lr", "initial_lr"):
                if k in g and not torch.is_tensor(g[k]):
                    g[k] = g[k] * scale
        t._profile_lr_scale = None


def _rate(t, x, y, bs, steps, warmup, clock) -> tuple[float, float]:
    """(samples/s, warm-up seconds) of one window on ``t``."""
    t0 = time.perf_counter()
    if warmup:
        t.fit(x, y, batch_size=bs, epochs=1, steps_per_epoch=warmup, verbose=0)
    warm = time.perf_counter() - t0
    _scale_lr(t)
    step = _fit_window(t, x, y, bs, steps, 0, clock)
    return bs / step, warm


# ---------------------------------------------------------------------------- profile
def profile(
    model: Any,
    x: Any,
    y: Any = None,
    *,
    batch_size: int = 32,
    steps: int = 20,
    warmup: int = 5,
    reps: int = 3,
    split: bool = True,
    switches: Any = "all",
    trace: str | os.PathLike | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ProfileReport:
    """Profile training steps of ``model`` (a compiled ``brisk.Sequential`` or a
    ``brisk.Trainer``) on ``x``/``y`` (what ``fit`` takes), on a copy of the model.

    Args:
        batch_size: the batch size of the steps (a DataLoader brings its own).
        steps: steps per timed window; ``warmup`` untimed steps come first.
        reps: timed windows of the baseline, each followed by a split of as many steps
            (the median of each phase is reported, and the median of these windows and of
            the baseline windows between switches); each switch gets ``max(1, reps - 1)``
            windows, alternating with baseline windows.
        split: time each phase of a step (``PHASES``).
        switches: 'all', None, or the ``SWITCHES`` names to try (a list, or 'a,b').
        trace: write a ``torch.profiler`` Chrome trace of ``min(steps, 5)`` steps there.
        clock: seconds, monotonic (tests inject a fake one); it times the windows and the
            split.

    Returns a ``ProfileReport``; ``.table()`` for the terminal, ``.write(folder)`` for
    profile.json and profile.png.

    Raises:
        TypeError: ``model`` is neither a compiled Sequential nor a Trainer.
        ValueError: bad ``steps``/``warmup``/``reps``/``batch_size``/``switches``; the data
            holds fewer than ``batch_size`` samples.
    """
    from brisk.bench.runner import cpu_name
    from brisk.engine.inputs import check_positive_int

    base = _trainer_of(model)
    batch_size = check_positive_int(batch_size, "batch_size")
    steps = check_positive_int(steps, "steps")
    reps = check_positive_int(reps, "reps")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: expected an int >= 0, got {warmup!r}")
    if switches == "all":
        names = list(SWITCHES)
    elif switches is None:
        names = []
    else:
        if isinstance(switches, str):  # 'a,b' as on the command line
            switches = [s.strip() for s in switches.split(",") if s.strip()]
        if not isinstance(switches, (list, tuple)) or not all(
                isinstance(s, str) for s in switches):
            raise ValueError(f"switches: expected 'all', None or a list of names "
                             f"({', '.join(SWITCHES)}), got {switches!r}")
        names = list(switches)
        bad = [s for s in names if s not in SWITCHES]
        if bad:
            raise ValueError(f"switches: unknown {bad}; known: {', '.join(SWITCHES)}")
        if len(set(names)) != len(names):
            raise ValueError(f"switches: each name once, got {names}")
    if isinstance(x, (torch.utils.data.DataLoader, DeviceLoader)):
        batch_size, full = x.batch_size or batch_size, len(x) - 1
    else:
        full = len(x) // batch_size
    if full < 1:
        raise ValueError(f"x: fewer samples than one batch of {batch_size} (and one more "
                         "for a DataLoader's last batch); pass more data or a smaller "
                         "batch_size")
    if max(steps, warmup) > full:
        raise ValueError(f"steps: the data holds {full} full batches of {batch_size}; pass "
                         f"steps and warmup <= {full} (each window is one epoch of that many "
                         "batches)")
    dev = base.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    t = _clone(base)
    times, splits = [], []
    gc_was_on = gc.isenabled()
    gc.collect()
    gc.disable()  # as timeit does: a collection inside one window would be charged to it
    try:
        for i in range(reps):  # each window, then a split of as many steps: same conditions
            times.append(_fit_window(t, x, y, batch_size, steps, warmup if i == 0 else 0,
                                     clock))
            if split:
                splits.append(_split(t, x, y, batch_size, steps, clock))
    finally:
        if gc_was_on:
            gc.enable()
    phases = {k: statistics.median(s[k] for s in splits) for k in PHASES} if split else {}
    precision = t.precision.mode
    fwd, train = _flops(t, x, y, batch_size)

    tried = []
    for name in names:
        cand, xs, bs, note = _switch(name, t, x, y, batch_size)
        if cand is None:
            tried.append({"name": name, "speedup": None, "samples_per_second": None,
                          "note": note})
            continue
        base_rates, rates, warm = [], [], 0.0
        for i in range(max(1, reps - 1)):  # alternate: outside load hits both alike
            r, w = _rate(cand, xs, y, bs, steps, warmup if i == 0 else 0, clock)
            rates.append(r)
            warm += w
            step = _fit_window(t, x, y, batch_size, steps, 0, clock)
            times.append(step)
            base_rates.append(batch_size / step)
        speedup = statistics.median(rates) / statistics.median(base_rates)
        if name == "compile":
            note = f"{note}; compiling took {warm:.1f} s"
        tried.append({"name": name, "speedup": speedup,
                      "samples_per_second": statistics.median(rates),
                      "baseline_samples_per_second": statistics.median(base_rates),
                      "note": note})

    best = None
    winners = [s["name"] for s in tried if s["speedup"] is not None and s["speedup"] > 1.02]
    if len(winners) > 1:
        cand, xs, bs = _combine(t, winners, x, batch_size)
        r, _ = _rate(cand, xs, y, bs, steps, warmup, clock)
        step = _fit_window(t, x, y, batch_size, steps, 0, clock)
        times.append(step)
        best = {"names": winners, "speedup": r / (batch_size / step),
                "samples_per_second": r}
    elif winners:
        s = next(s for s in tried if s["name"] == winners[0])
        best = {"names": winners, "speedup": s["speedup"],
                "samples_per_second": s["samples_per_second"]}

    if trace is not None:
        acts = [torch.profiler.ProfilerActivity.CPU]
        if dev.type == "cuda":
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=acts) as prof:
            t.fit(x, y, batch_size=batch_size, epochs=1, steps_per_epoch=min(steps, 5), verbose=0)
        trace = os.fspath(trace)
        os.makedirs(os.path.dirname(os.path.abspath(trace)), exist_ok=True)
        prof.export_chrome_trace(trace)
        if not os.path.isfile(trace):  # torch's exporter can fail without a word
            raise OSError(f"trace: torch.profiler wrote no file at {trace!r}")

    step_time = statistics.median(times)
    peak, source = _peak(dev, precision)
    flops_s = train * batch_size / step_time
    memory, kind = _peak_memory(dev)
    return ProfileReport(
        device=str(dev),
        device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
        threads=getattr(t, "_profile_threads", torch.get_num_threads()),
        batch_size=batch_size, steps=steps,
        precision=precision, step_time=step_time, step_times=times,
        samples_per_second=batch_size / step_time, split=phases,
        flops_per_sample_forward=fwd, flops_per_sample_train=train, flops_per_second=flops_s,
        peak_flops=peak, peak_source=source, mfu=None if peak is None else flops_s / peak,
        peak_memory=memory, peak_memory_kind=kind, contention=_contention(times, dev),
        switches=tried, best=best)
