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

import contextlib
import os
import tempfile

import torch

_TMP_SUFFIX = ".brisk-tmp"


def _tmp_prefix(path: str) -> str:
    """Temp files of ``path`` are ``.<name>.<random>.brisk-tmp`` in its folder: same
    filesystem (the rename is atomic), hidden, and findable as stale leftovers."""
    return f".{os.path.basename(path)}."


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where directories cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)


def remove_stale_temps(path: str | os.PathLike) -> list[str]:
    """Delete the temp files that interrupted writes of ``path`` left behind (a process
    killed between creating its temp file and the rename); returns their paths. Only one
    process writes a given target (rank zero), so every such file is stale."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = _tmp_prefix(path)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if name.startswith(prefix) and name.endswith(_TMP_SUFFIX):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
    return removed


def atomic_write(path: str | os.PathLike, write) -> None:
    """Write ``path`` so that a crash at any moment leaves either the old file or the new
    one, complete: ``write(tmp_path)`` fills a temp file in the same folder, which is
    fsynced, renamed over ``path`` (``os.replace``) and made durable by an fsync of the
    folder. Temp files left by earlier interrupted writes of ``path`` are removed first;
    on an exception the temp file is removed and the exception propagates (the old file
    is untouched)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=_tmp_prefix(path), suffix=_TMP_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # the data must be on disk before the rename points at it
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``atomic_write`` of a UTF-8 text file (``brisk train --out`` history and result)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    atomic_write(path, write)


def plain_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` as detached, contiguous CPU tensors, with pruning masks
    folded in: ``torch.nn.utils.prune`` keeps ``<name>_orig`` and ``<name>_mask``; a
    weights file stores their product as ``<name>``, so the file loads into the plain
    (unpruned) architecture, with the pruned weights exactly zero."""
    sd = module.state_dict()
    out = {}
    for k, v in sd.items():
        base = k[:-5]
        if k.endswith("_orig") and base + "_mask" in sd:
            v = v * sd[base + "_mask"]
            k = base
        elif k.endswith("_mask") and base + "_orig" in sd:
            continue
        out[k] = v.detach().contiguous().cpu()
    return out


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """The payload of a checkpoint file, tensors on ``map_location`` (CPU by default),
    unpickled with ``weights_only=True`` (plain data only: a crafted pickle cannot run
    code). Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the
    file for anything that is not a checkpoint (a truncated or corrupt file, a
    .safetensors weights file, a pickle of other objects)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint: no such file {os.fspath(path)!r}")
    if _is_safetensors(path):  # torch.load reads these too, as a bare dict of weights
        raise ValueError(f"checkpoint {os.fspath(path)!r}: a safetensors weights file, not a "
                         "checkpoint (load it with load_model or load_weights)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds for a file it cannot read
        first = (str(e).splitlines() or [""])[0][:200]
        raise ValueError(f"checkpoint {os.fspath(path)!r}: corrupt, truncated or not a "
                         f"checkpoint ({type(e).__name__}: {first})") from e
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {os.fspath(path)!r}: expected a dict payload, got "
                         f"{type(state).__name__}")
    return state


def _is_safetensors(path: str | os.PathLike) -> bool:
    """A safetensors file starts with its header length (8 bytes) and then a JSON '{'."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"
