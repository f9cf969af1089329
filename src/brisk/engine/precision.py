"""Precision policy: one object owning autocast, loss scaling and their state.

Modes: 'fp32', 'bf16-mixed' (autocast to bfloat16, fp32 weights), 'fp16-mixed' (autocast
to float16 with dynamic loss scaling; overflowing steps are skipped and counted), 'bf16'
(weights and inputs in bfloat16), and 'auto':

- on CUDA: bf16-mixed where the GPU supports bfloat16, else fp32;
- on a CPU with native bf16 arithmetic (AMX tiles or AVX512-BF16, see
  ``cpu_native_bf16``): bf16-mixed when the model's forward costs at least
  ``AUTO_BF16_MIN_STEP_FLOPS`` per step (FLOPs per sample, counted with
  ``torch.utils.flop_counter`` on the first tiny batch, times the batch size), else fp32.
  Small steps lose to autocast's per-op casts: measured on an AMD EPYC with AVX512-BF16
  (2 threads), the 784-64-64-10 MLP at batch 32 (3.5 MFLOP per step) ran 1.46x slower
  in bf16-mixed, the mnist-cnn network at batch 128 (490 MFLOP) 0.49x (see
  benchmarks/RESULTS.md);
- elsewhere (CPU without native bf16, MPS): fp32.

The environment variable ``BRISK_AUTO_PRECISION`` (a mode other than 'auto'; 'auto' or
empty: detect) fixes what 'auto' becomes, skipping detection (the test suite sets 'fp32' so that its values do not
depend on the CPU it runs on).

Example::

    p = Precision("fp16-mixed", device="cpu")
    with p.autocast():
        loss = model(x).float().mean()
    p.backward(loss); p.step(optimizer)
"""

from __future__ import annotations

import contextlib
import os
import platform

import torch

MODES = ("auto", "fp32", "bf16-mixed", "fp16-mixed", "bf16")
AUTO_BF16_MIN_STEP_FLOPS = 32e6  # forward FLOPs per step from which a native-bf16 CPU
# runs bf16 autocast faster than fp32 (benchmarks/precision.py --crossover)
ENV = "BRISK_AUTO_PRECISION"


def cpu_native_bf16() -> str | None:
    """The CPU's native bfloat16 arithmetic, or None: 'AMX' (Intel AMX-BF16 tiles) or
    'AVX512-BF16' (bf16 dot products, e.g. Intel Cooper Lake and later, AMD Zen 4 and
    later). Asked of torch's own CPU detection (``torch.cpu._is_amx_tile_supported``,
    ``torch.cpu._is_avx512_bf16_supported``, the checks oneDNN's bf16 kernels rely on);
    where torch lacks them, read from the Linux CPU flags (``amx_bf16``,
    ``avx512_bf16``). x86 only: ARM's bf16 is not detected (fp32 there)."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    avx = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if amx is not None and avx is not None:
        return "AMX" if amx() else "AVX512-BF16" if avx() else None
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    flags = _linux_cpu_flags()
    return "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else None


def _linux_cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The first CPU's ``flags`` line of /proc/cpuinfo; empty where it cannot be read."""
    try:
        with open(path) as f:
            return next((set(line.split(":", 1)[1].split()) for line in f
                         if line.startswith("flags")), set())
    except OSError:
        return set()


def _auto_override() -> str | None:
    value = os.environ.get(ENV, "").strip()
    if not value or value == "auto":  # 'auto': detect, as when unset
        return None
    if value not in MODES[1:]:
        raise ValueError(f"{ENV}: expected one of {', '.join(map(repr, MODES[1:]))}, "
                         f"got {value!r}")
    return value


def resolve_mode(mode: str, device: torch.device) -> tuple[str | None, str]:
    """``(mode, reason)``; mode None: 'auto' on a native-bf16 CPU, decided by ``decide``
    once the model's cost per step is known."""
    if mode not in MODES:
        raise ValueError(f"precision: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if mode != "auto":
        return mode, "asked for"
    override = _auto_override()
    if override is not None:
        return override, f"{ENV}={override}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "the GPU supports bfloat16"
        return "fp32", "the GPU has no bfloat16"
    if device.type == "cpu":
        native = cpu_native_bf16()
        if native is not None:
            return None, native
        return "fp32", "the CPU has no native bf16 (no AMX, no AVX512-BF16)"
    return "fp32", f"no bf16 choice is measured on {device.type}"


_ANNOUNCED: set[str] = set()


class Precision:
    """The precision policy of one Trainer.

    Attributes:
        mode: the mode in use; None while 'auto' waits for ``decide`` (a native-bf16 CPU
            before the first batch).
        reason: why 'auto' chose ``mode`` (or, while pending, the CPU's bf16 unit).
    """

    def __init__(self, mode: str = "auto", device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.requested = mode
        self.flops_per_sample: float | None = None  # counted when 'auto' decides on a CPU
        self.mode, self.reason = resolve_mode(mode, self.device)
        self._configure()
        # Skipped (overflowing) fp16 steps, counted on the device: reading it is a sync,
        # so it is read only when asked for.
        self._skipped = torch.zeros((), dtype=torch.int64, device=self.device)
        # pure bf16: float32 master weights by parameter, parameter names (checkpoints),
        # and masters read from a checkpoint before their parameters are known
        self._masters: dict = {}
        self._versions: dict = {}
        self._names: dict = {}
        self._pending_masters: dict[str, torch.Tensor] = {}

    def _configure(self) -> None:
        self.dtype = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}.get(self.mode)
        self.scaler = (
            torch.amp.GradScaler(self.device.type) if self.mode == "fp16-mixed" else None
        )

    def __repr__(self) -> str:
        return f"Precision({self.mode or 'auto'!r}, device={str(self.device)!r})"

    @property
    def pending(self) -> bool:
        return self.mode is None

    def decide(self, flops_per_sample: float, batch_size: int) -> None:
        """'auto' on a native-bf16 CPU: bf16-mixed when the forward costs at least
        ``AUTO_BF16_MIN_STEP_FLOPS`` per step, else fp32. No effect once decided."""
        if not self.pending:
            return
        self.flops_per_sample = flops_per_sample
        step = flops_per_sample * batch_size
        cost = (f"the model's forward is {flops_per_sample / 1e6:.3g} MFLOP per sample, "
                f"{step / 1e6:.3g} MFLOP per batch of {batch_size}")
        if step >= AUTO_BF16_MIN_STEP_FLOPS:
            self.mode, self.reason = "bf16-mixed", f"CPU has {self.reason}; {cost}"
        else:
            self.mode, self.reason = "fp32", (
                f"CPU has {self.reason}, but {cost}: under "
                f"{AUTO_BF16_MIN_STEP_FLOPS / 1e6:.3g} MFLOP per batch, bf16 autocast's casts "
                "cost more than they save")
        self._configure()

    def adopt(self, mode: str | None) -> None:
        """'auto' still pending takes a checkpoint's mode (any but 'auto'), so that a
        resumed run continues in the precision it was written with."""
        if self.pending and mode in MODES[1:]:
            self.mode, self.reason = mode, "the checkpoint's"
            self._configure()

    def announce(self) -> None:
        """Print 'precision: MODE (why)' for a mode 'auto' chose, once per process (not
        when ``BRISK_AUTO_PRECISION`` chose it: whoever set it knows)."""
        if self.requested != "auto" or self.pending or self.reason.startswith(ENV):
            return
        line = f"precision: {self.mode} ({self.reason})"
        if line not in _ANNOUNCED:
            _ANNOUNCED.add(line)
            print(line)

    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module:
        """Pure 'bf16': the module's weights and buffers become bfloat16 (its forward and
        backward compute in bf16); the optimizer updates float32 master copies (``step``)."""
        if self.mode == "bf16":
            module.to(torch.bfloat16)
            self._names = {p: n for n, p in module.named_parameters()}
        return module

    def cast_input(self, x):
        if self.mode == "bf16" and torch.is_tensor(x) and x.is_floating_point():
            return x.to(torch.bfloat16)
        return x

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer) -> None:
        """Bring gradients back to their true scale (needed before clipping)."""
        if self.scaler is not None:
            for opt in getattr(optimizer, "optimizers", [optimizer]):
                self.scaler.unscale_(opt)

    def step(self, optimizer) -> None:
        if self.mode == "bf16":
            self._master_step(optimizer)
            return
        if self.scaler is None:
            optimizer.step()
            return
        before = self.scaler._scale.clone()  # noqa: SLF001 - read on device, no sync
        for opt in getattr(optimizer, "optimizers", [optimizer]):
            self.scaler.step(opt)
        self.scaler.update()
        # update() lowers the scale exactly when an inf/nan was found and the step skipped.
        self._skipped += (self.scaler._scale < before).to(torch.int64)  # noqa: SLF001

    def _master_step(self, optimizer) -> None:
        """Pure bf16 with float32 master weights (Micikevicius et al. 2018, "Mixed Precision
        Training", section 3.1): the optimizer steps on a float32 copy of each bf16 weight,
        with the bf16 gradient in float32 and float32 state, and the weight becomes the
        copy rounded to bf16. Updating the bf16 weights themselves loses every update
        smaller than half a bf16 step of the weight (8 bits of mantissa): the mnist-cnn
        recipe's SGD ended at 11% test accuracy that way."""
        swapped = []
        for opt in getattr(optimizer, "optimizers", [optimizer]):
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.dtype != torch.bfloat16:
                        continue
                    master = self._masters.get(p)
                    if master is not None and self._versions.get(p) != p._version:
                        master = None  # the weight was changed outside the optimizer (a
                        # load_state_dict, restored best weights): its master starts again
                    if master is None:
                        name = self._names.get(p)
                        saved = self._pending_masters.pop(name, None)
                        master = (saved.to(p.device, torch.float32) if saved is not None
                                  and saved.shape == p.shape else p.detach().float())
                    low, grad = p.data, p.grad
                    p.data = master
                    if grad is not None:
                        p.grad = grad.float()
                    for k, v in opt.state.get(p, {}).items():  # a checkpoint's state comes
                        if torch.is_tensor(v) and v.dtype == torch.bfloat16:  # back as bf16
                            opt.state[p][k] = v.float()
                    swapped.append((p, low, grad))
        try:
            optimizer.step()
        finally:
            for p, low, grad in swapped:
                self._masters[p] = p.data
                low.copy_(p.data)  # round to nearest even
                p.data = low
                p.grad = grad
                self._versions[p] = p._version  # any later in-place change shows here

    @property
    def skipped_steps(self) -> int:
        return int(self._skipped)

    def state_dict(self) -> dict:
        state = {"mode": self.mode or "auto", "skipped_steps": self.skipped_steps}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if self.mode == "bf16":  # the float32 masters, by parameter name
            masters = {self._names[p]: m for p, m in self._masters.items() if p in self._names}
            state["masters"] = {**self._pending_masters, **masters}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.adopt(state.get("mode"))
        # a checkpoint written before any step ('auto' undecided) holds nothing precision-bound
        if state.get("mode") not in ("auto", self.mode or "auto"):
            raise ValueError(
                f"precision: checkpoint was written with {state.get('mode')!r}, "
                f"this run uses {self.mode or 'auto'!r}"
            )
        self._skipped.fill_(int(state.get("skipped_steps", 0)))
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if self.mode == "bf16":  # taken up by each parameter at its next step
            self._masters.clear()
            self._pending_masters = dict(state.get("masters", {}))
