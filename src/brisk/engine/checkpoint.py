"""Atomic checkpoint files that load with ``torch.load(weights_only=True)``.

A checkpoint is one plain payload (tensors, numbers, strings, dicts, lists): model,
optimizer, precision state, step, epoch and RNG states. It is written to a temporary file
in the same folder and renamed over the target, so an interrupted write never corrupts the
previous checkpoint.

Example::

    save_checkpoint("run/last.pt", trainer.state_dict())
    trainer.load_state_dict(load_checkpoint("run/last.pt"))
"""

from __future__ import annotations

import os
import tempfile

import torch


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename the result over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".brisk-", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint: no such file {os.fspath(path)!r}")
    return torch.load(path, map_location=map_location, weights_only=True)
