"""Activation functions by Keras name."""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _linear(x: torch.Tensor) -> torch.Tensor:
    return x


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softmax": lambda x: torch.softmax(x, dim=1 if x.dim() == 4 else -1),  # NCHW: channels
    "linear": _linear,
    "elu": F.elu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),  # Keras's default negative_slope
}


def activation_name(spec: str | None) -> str:
    """Canonical activation name; ``None`` means linear."""
    if spec is None:
        return "linear"
    if not isinstance(spec, str):
        raise TypeError(f"activation: expected a name such as 'relu', got {type(spec).__name__}")
    name = spec.lower()
    if name not in ACTIVATIONS:
        close = difflib.get_close_matches(name, ACTIVATIONS, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"activation: unknown name {spec!r}.{hint} Valid names: {', '.join(sorted(ACTIVATIONS))}"
        )
    return name


def get_activation(spec: str | None) -> Callable[[torch.Tensor], torch.Tensor]:
    return ACTIVATIONS[activation_name(spec)]
