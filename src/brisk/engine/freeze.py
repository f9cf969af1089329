"""Keras's ``trainable`` flag over any ``torch.nn.Module``.

The flag is a plain attribute, ``module.trainable = False``, so it works on brisk layers,
``brisk.Sequential`` and any torch module (a torchvision backbone, an ``nn.Sequential``).
Semantics are Keras 3's (``keras.layers.Layer.trainable``):

- brisk layers and ``Sequential`` propagate the flag to every module below them, and to
  their weights' ``requires_grad``, when it is set (Keras's setter does the same); a later
  ``layer.trainable = True`` re-enables that layer, even inside a frozen nested model
  (Keras: each variable keeps its own flag);
- the model being trained gates everything: when its own flag is False nothing trains
  (Keras: the root's ``trainable_weights`` is empty);
- a flag set as a plain attribute on a torch module (which has no setter) freezes
  everything below it when ``fit`` reads it;
- a frozen BatchNorm runs in inference mode even while training: it normalises with its
  moving statistics and does not update them (Keras 3 ``BatchNormalization.call``: batch
  statistics only when ``training and self.trainable``). A BatchNorm's flag is its own
  ``trainable`` attribute, or the nearest one above it;
- the flags are read when they are used (``fit``, ``summary``), never frozen at compile time.

Example::

    backbone.trainable = False        # any nn.Module
    apply_trainable(model)            # what fit does: requires_grad follows the flags
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

_MARK = "_brisk_frozen"  # set on parameters whose requires_grad the flags turned off


def check_flag(value) -> bool:
    """``value`` as a bool: True/False, or 0/1 as Keras's ``bool(value)`` takes them.
    Raises ``TypeError`` for anything else."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"trainable: expected True or False, got {value!r}")


def set_trainable(module: nn.Module, value: bool) -> None:
    """Set ``trainable`` on ``module`` and every module below it, and ``requires_grad`` on
    all their parameters (Keras's ``trainable`` setter). Raises ``TypeError`` for a
    non-bool ``value``."""
    value = check_flag(value)
    for m in module.modules():
        if m is not module:
            _set_flag(m, value)
    for p in module.parameters():
        p.requires_grad_(value)
        if hasattr(p, _MARK):
            delattr(p, _MARK)


def _set_flag(m: nn.Module, value: bool) -> None:
    if "_trainable" in m.__dict__ or isinstance(type(m).__dict__.get("trainable"), property):
        m._trainable = value  # a brisk layer or Sequential: set without re-propagating
    else:
        m.trainable = value
        m._brisk_propagated = value  # set from above, with requires_grad: not a gate


def _flag(m: nn.Module) -> bool | None:
    v = getattr(m, "trainable", None)
    return v if isinstance(v, bool) else None


def _has_setter(m: nn.Module) -> bool:
    return isinstance(getattr(type(m), "trainable", None), property)


def _walk(module: nn.Module, inherited: bool = True, all_above: bool = True, root: bool = True
          ) -> Iterator[tuple[nn.Module, bool, bool]]:
    """(module, its effective flag, whether its weights may train). A flag with a setter
    already set ``requires_grad`` below it, so it gates only as the root; a plain attribute
    flag gates everything below it."""
    own = _flag(module)
    effective = inherited if own is None else own
    user_attribute = not _has_setter(module) and getattr(module, "_brisk_propagated", None) is not own
    gates = own is False and (root or user_attribute)
    above = all_above and not gates
    yield module, effective, above
    for child in module.children():
        yield from _walk(child, effective, above, root=False)


def apply_trainable(module: nn.Module) -> None:
    """Make ``requires_grad`` follow the ``trainable`` flags: off for every parameter under
    a frozen module, back on for those the flags had turned off and no longer freeze.
    Parameters a user froze by hand (``requires_grad_(False)``) with no flag stay frozen."""
    for m, _, above in _walk(module):
        for p in m.parameters(recurse=False):
            if not above:
                if p.requires_grad:
                    p.requires_grad_(False)
                    setattr(p, _MARK, True)
            elif getattr(p, _MARK, False):
                p.requires_grad_(True)
                delattr(p, _MARK)


def trainable_parameters(module: nn.Module) -> list[torch.Tensor]:
    """Parameters that train: ``requires_grad`` and not under a frozen module."""
    return [p for m, _, above in _walk(module) if above
            for p in m.parameters(recurse=False) if p.requires_grad]


def frozen_batchnorm_eval(module: nn.Module) -> None:
    """Put every BatchNorm whose effective flag is False in inference mode; call after
    ``module.train()``."""
    for m, effective, _ in _walk(module):
        if not effective and isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            m.eval()
