"""Precision policy: one object owning autocast, loss scaling and their state.

Modes: 'fp32', 'bf16-mixed' (autocast to bfloat16, fp32 weights), 'fp16-mixed' (autocast
to float16 with dynamic loss scaling; overflowing steps are skipped and counted), 'bf16'
(weights and inputs in bfloat16), and 'auto' (bf16-mixed on a GPU that supports it,
fp32 on CPU: on this project's 2-core CPU bf16 autocast measured slower than fp32 for
small models, see benchmarks/RESULTS.md).

Example::

    p = Precision("fp16-mixed", device="cpu")
    with p.autocast():
        loss = model(x).float().mean()
    p.backward(loss); p.step(optimizer)
"""

from __future__ import annotations

import contextlib

import torch

MODES = ("auto", "fp32", "bf16-mixed", "fp16-mixed", "bf16")


def resolve_mode(mode: str, device: torch.device) -> str:
    if mode not in MODES:
        raise ValueError(f"precision: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if mode != "auto":
        return mode
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "fp32"


class Precision:
    def __init__(self, mode: str = "auto", device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.mode = resolve_mode(mode, self.device)
        self.dtype = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}.get(self.mode)
        self.scaler = (
            torch.amp.GradScaler(self.device.type) if self.mode == "fp16-mixed" else None
        )
        # Skipped (overflowing) fp16 steps, counted on the device: reading it is a sync,
        # so it is read only when asked for.
        self._skipped = torch.zeros((), dtype=torch.int64, device=self.device)

    def __repr__(self) -> str:
        return f"Precision({self.mode!r}, device={str(self.device)!r})"

    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.mode == "bf16":
            module.to(torch.bfloat16)
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
        if self.scaler is None:
            optimizer.step()
            return
        before = self.scaler._scale.clone()  # noqa: SLF001 - read on device, no sync
        for opt in getattr(optimizer, "optimizers", [optimizer]):
            self.scaler.step(opt)
        self.scaler.update()
        # update() lowers the scale exactly when an inf/nan was found and the step skipped.
        self._skipped += (self.scaler._scale < before).to(torch.int64)  # noqa: SLF001

    @property
    def skipped_steps(self) -> int:
        return int(self._skipped)

    def state_dict(self) -> dict:
        state = {"mode": self.mode, "skipped_steps": self.skipped_steps}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if state.get("mode") != self.mode:
            raise ValueError(
                f"precision: checkpoint was written with {state.get('mode')!r}, "
                f"this run uses {self.mode!r}"
            )
        self._skipped.fill_(int(state.get("skipped_steps", 0)))
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
