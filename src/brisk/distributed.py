"""Data-parallel training under torchrun: the environment, the process group, DDP and the
rank-zero rules, in one small policy object (``Distributed``) that the engine asks.

brisk builds no engine of its own: processes are started by ``torchrun`` (which sets
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), gradients are
averaged by ``torch.nn.parallel.DistributedDataParallel`` over ``torch.distributed``
(nccl on CUDA, gloo on CPU). A script that calls ``fit`` runs data-parallel unchanged::

    torchrun --nproc-per-node 2 train.py          # one machine, 2 processes
    torchrun --nproc-per-node 2 -m brisk train --model mnist-mlp

What ``fit``, ``evaluate`` and ``predict`` do under torchrun (``WORLD_SIZE`` > 1):

- the model is wrapped in DDP (initial weights: rank 0's, broadcast by DDP); with
  ``accumulate=k`` the first k-1 micro-batches run under ``no_sync``;
- training data is sharded per rank from one shuffle seed (rank 0's): each epoch a new
  permutation, rank r takes positions r, r + W, ... (``DeviceLoader.shard``; a
  ``DistributedSampler`` for a torch ``Dataset``). When N is not divisible by W the
  permutation wraps around (as ``DistributedSampler``), so every rank runs as many
  batches and no collective waits forever;
- evaluation and prediction split the rows into W contiguous parts with no padding: each
  sample counts exactly once, loss and metric sums are all-reduced, ``predict`` gathers
  every row, in order, on every rank;
- the logged loss and metrics are the global values, the same on every rank, so
  ``EarlyStopping`` and the other callbacks decide the same everywhere; a stop asked on
  any rank stops every rank after the same batch or epoch;
- only rank 0 prints progress and writes callback files (checkpoints, backups, CSV,
  TensorBoard); ``fit`` ends with rank 0's BatchNorm buffers on every rank and a barrier.

``Trainer(strategy="fsdp")`` shards the weights, gradients and optimizer state over the
ranks instead (FSDP2, ``torch.distributed.fsdp.fully_shard``; Zhao et al. 2023, "PyTorch
FSDP"): see ``Distributed.shard``. ``strategy="auto"`` picks FSDP when the training state
would not fit comfortably in one process's memory (``choose_strategy``).
"""

from __future__ import annotations

import atexit
import datetime
import os
import sys
import time
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

# How long a collective waits for the other ranks before raising (torch's default is 30
# min for gloo and 10 for nccl). A rank that raises is ended by torchrun, which stops the
# others within seconds; this bounds the wait of a rank stuck on a collective otherwise.
TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("BRISK_DIST_TIMEOUT", 600)))

STRATEGIES = ("ddp", "fsdp", "auto")


def check_strategy(strategy: Any) -> str:
    """``strategy`` validated: 'ddp', 'fsdp' or 'auto' (``ValueError`` otherwise)."""
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {', '.join(map(repr, STRATEGIES))}, "
                         f"got {strategy!r}")
    return strategy


def process_memory(device: torch.device) -> int:
    """Bytes of memory one process may use on ``device``: the GPU's total memory on CUDA;
    on other devices the machine's physical memory divided by the processes on this
    machine (``LOCAL_WORLD_SIZE``, set by torchrun)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")) or 1)
    return int(total // max(local, 1))


def choose_strategy(module: nn.Module, device: torch.device, world_size: int,
                    memory: int | None = None) -> tuple[str, str]:
    """``strategy='auto'``: ('fsdp' or 'ddp', why). The training state of DDP is a full
    copy per process of the weights, their gradients and two optimizer slots per weight
    (Adam's moments): 4 x the weights' bytes. FSDP is chosen when that exceeds half of one process's
    memory (``process_memory``; the other half is left to activations and the data), since
    FSDP keeps 1/world_size of it per process and pays an all-gather per block per
    forward and backward for it."""
    weights = sum(p.numel() * p.element_size() for p in module.parameters())
    state = 4 * weights
    memory = process_memory(device) if memory is None else int(memory)
    copy = f"a full copy of the training state (weights, gradients, 2 optimizer slots: " \
           f"{_size(state)})"
    if state > memory / 2:
        return "fsdp", (f"strategy='auto' chose 'fsdp': {copy} exceeds half of the "
                        f"{_size(memory)} one process has on {device.type}; sharded over "
                        f"{world_size} processes it is {_size(state / world_size)} each")
    return "ddp", (f"strategy='auto' chose 'ddp': {copy} fits in half of the {_size(memory)} "
                   f"one process has on {device.type}, and DDP needs no all-gather of the "
                   "weights")


def _size(n: float) -> str:
    """Bytes in the largest binary unit that keeps the number >= 1: '15.6 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def fsdp_blocks(module: nn.Module) -> list[nn.Module]:
    """The blocks FSDP shards one by one (each all-gathered just before its forward and
    freed after): the direct children that own parameters, looking through plain
    containers (``nn.ModuleList``, ``nn.Sequential``), so a ``brisk.Sequential``'s layers
    and a transformer's ``layers`` list are each a block. Parameters outside every block
    belong to the root."""
    out = []
    for child in module.children():
        if type(child) in (nn.ModuleList, nn.Sequential):
            out.extend(fsdp_blocks(child))
        elif any(True for _ in child.parameters()):
            out.append(child)
    return out


def is_sharded(module: nn.Module) -> bool:
    """True when ``module``'s parameters are FSDP shards (``DTensor``)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in module.parameters())


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor] | None:
    """For a sharded module (FSDP): its full state dict, gathered on rank 0 as CPU tensors
    (an empty dict on the other ranks; every rank must call it, it is a collective). None
    for a module that is not sharded."""
    if not is_sharded(module):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(
        module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 outside torchrun). Raises ``ValueError`` for a
    value that is not a positive int."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"WORLD_SIZE: expected a positive int (torchrun sets it), got {raw!r}")
    return n


def rank() -> int:
    """This process's global rank: from the process group, else ``RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0") or 0)


def is_rank_zero() -> bool:
    """True in the process that prints and writes files (rank 0, or a single process)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (under torchrun, once the process group is up); else nothing."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each process gets one GPU: ``cuda:LOCAL_RANK`` for a CUDA device
    without an index; other devices are returned as they are."""
    if device.type == "cuda" and device.index is None and env_world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def sync_batchnorm(module: nn.Module, device: torch.device) -> None:
    """Turn ``module``'s BatchNorm layers into ``torch.nn.SyncBatchNorm`` in place (the same
    parameter and buffer tensors, so the optimizer and the state_dict keys stay).

    Raises ``ValueError`` off CUDA: torch's SyncBatchNorm runs on CUDA only; under gloo
    each rank normalises with its own batch's statistics instead."""
    from torch.nn.modules.batchnorm import _BatchNorm

    if device.type != "cuda":
        raise ValueError(
            f"sync_batchnorm: torch's SyncBatchNorm runs on CUDA only, and this run is on "
            f"{device.type} (gloo): drop sync_batchnorm=True (each rank then normalises with "
            "its own batch's statistics, and fit ends with rank 0's running statistics), or "
            "train on GPUs")
    for name, child in list(module.named_children()):
        if isinstance(child, _BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
            setattr(module, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
        else:
            sync_batchnorm(child, device)


class _Forward(nn.Module):
    """What DDP wraps: the model, called through the function the engine trains (its
    ``forward`` or ``forward_logits``), so DDP sees the model's parameters."""

    def __init__(self, module: nn.Module, fn):
        super().__init__()
        self.module = module
        self._name = None if fn is module else fn.__name__

    def forward(self, x, full: bool = False):
        """``fn(x)``; with ``full``, the model's own ``forward`` (``predict`` under FSDP,
        where every call must go through the sharded root)."""
        if self._name is None or full:
            return self.module(x)
        return getattr(self.module, self._name)(x)


class Distributed:
    """The process group and the rules of one data-parallel run (see the module docstring).

    Created by ``Distributed.from_env(device)``: None outside torchrun. It initialises the
    default process group when nobody has (nccl for CUDA devices, gloo otherwise) and
    destroys it at exit; a group the user initialised is used and left to them.
    """

    def __init__(self, device: torch.device):
        if not dist.is_available():
            raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        self.device = device
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend, timeout=TIMEOUT)
            atexit.register(_destroy)
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        # collectives of host values go through tensors on the backend's device
        backend = dist.get_backend()
        self._comm = device if backend == "nccl" else torch.device("cpu")

    @classmethod
    def from_env(cls, device: torch.device) -> Distributed | None:
        """The run's policy under torchrun (``WORLD_SIZE`` > 1, or a process group already
        initialised with more than one rank), else None."""
        if dist.is_available() and dist.is_initialized():
            return cls(device) if dist.get_world_size() > 1 else None
        return cls(device) if env_world_size() > 1 else None

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ model
    def wrap(self, module: nn.Module, fn) -> nn.Module:
        """``module`` called through ``fn``, wrapped in DDP (rank 0's weights and buffers
        are broadcast now). Frozen parameters are left out by DDP itself."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(_Forward(module, fn), device_ids=ids)

    def shard(self, module: nn.Module, fn, precision: str) -> nn.Module:
        """FSDP2: ``fully_shard`` on each block of ``module`` (``fsdp_blocks``), then on the
        root, a ``_Forward`` calling ``fn``; returns the root. ``module``'s parameters
        become ``DTensor`` shards, in place: build the optimizer after this. The weights
        are rank 0's (broadcast first, as DDP does). ``precision`` 'bf16-mixed' gives the
        mixed-precision policy bf16 compute with float32 gradient reduction (FSDP's
        ``MixedPrecisionPolicy``); 'fp32' shards the weights as they are.
        Raises ``ValueError`` for 'fp16-mixed' (loss scaling over sharded gradients is not
        supported here: use 'bf16-mixed') and pure 'bf16' (its float32 master weights are
        not sharded)."""
        from torch.distributed.fsdp import (
            MixedPrecisionPolicy,
            fully_shard,
            register_fsdp_forward_method,
        )

        if precision == "fp16-mixed":
            raise ValueError("precision: 'fp16-mixed' with strategy='fsdp' is not supported "
                             "(its loss scaling is not written for sharded gradients); use "
                             "'bf16-mixed' or 'fp32'")
        if precision == "bf16":
            raise ValueError("precision: pure 'bf16' with strategy='fsdp' is not supported (its "
                             "float32 master weights are not sharded); use 'bf16-mixed' (bf16 "
                             "compute over float32 weights) or 'fp32'")
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, 0)  # rank 0's initial weights everywhere
        from torch.distributed.device_mesh import init_device_mesh

        policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                  if precision == "bf16-mixed" else MixedPrecisionPolicy())
        # the run's device type (FSDP's default mesh is CUDA whenever a GPU exists, even for
        # a run on the CPU)
        mesh = init_device_mesh("cuda" if self.device.type == "cuda" else "cpu",
                                (self.world_size,))
        for block in fsdp_blocks(module):
            fully_shard(block, mesh=mesh, mp_policy=policy)
            if callable(getattr(block, "forward_logits", None)):
                # a Keras-front model calls its last layer's forward_logits (the loss takes
                # logits): it must all-gather that block's weights as forward does
                register_fsdp_forward_method(block, "forward_logits")
        root = _Forward(module, fn)
        fully_shard(root, mesh=mesh, mp_policy=policy)
        return root

    def max(self, value: int) -> int:
        """The largest of the ranks' ints."""
        t = torch.tensor([int(value)], dtype=torch.int64, device=self._comm)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) everywhere: DDP syncs them at
        each forward, so after the last step the ranks' buffers still differ."""
        for b in module.buffers():
            dist.broadcast(b.data, 0)

    # ------------------------------------------------------------------ values
    def agree(self, value: int) -> int:
        """Rank 0's int (the shuffle seed), on every rank."""
        t = torch.tensor([int(value)], dtype=torch.int64, device=self._comm)
        dist.broadcast(t, 0)
        return int(t.item())

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any (a stop asked by one rank)."""
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self._comm)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of ``t`` (a new tensor on ``t``'s device)."""
        out = t.detach().to(self._comm, copy=True)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(t.device)

    def barrier(self) -> None:
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    # ------------------------------------------------------------------ rows
    def part(self, n: int) -> tuple[int, int]:
        """This rank's contiguous rows [start, stop) of n (evaluation, prediction): the first
        ranks get one more when W does not divide n; none is repeated."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def gather_rows(self, t: torch.Tensor, n: int) -> torch.Tensor:
        """Every rank's rows of ``t`` (its ``part`` of n), concatenated in rank order."""
        base, extra = divmod(n, self.world_size)
        counts = [base + (1 if r < extra else 0) for r in range(self.world_size)]
        width = max(counts)
        pad = torch.zeros((width, *t.shape[1:]), dtype=t.dtype, device=self._comm)
        pad[: t.shape[0]] = t.to(self._comm)
        bufs = [torch.empty_like(pad) for _ in range(self.world_size)]
        dist.all_gather(bufs, pad)
        return torch.cat([b[:c] for b, c in zip(bufs, counts, strict=True)]).to(t.device)

    # ------------------------------------------------------------------ data
    def check_loader(self, loader: Any, role: str) -> None:
        """A user's DataLoader must shard itself (a ``DistributedSampler``) for training."""
        from torch.utils.data import DataLoader, DistributedSampler

        if isinstance(loader, DataLoader) and not isinstance(loader.sampler, DistributedSampler):
            raise ValueError(
                f"x: under torchrun (WORLD_SIZE={self.world_size}) a DataLoader for {role} must "
                "shard the data per rank, or every rank trains on all of it: build it with "
                "sampler=torch.utils.data.DistributedSampler(dataset) (fit calls its "
                "set_epoch), or pass the Dataset or the arrays and brisk shards them")


def _destroy() -> None:
    """At exit: wait until every rank is here (through the rendezvous store, not gloo),
    then destroy the group. A rank that tore gloo down while a peer still finished its
    last collective made that peer abort ('terminate called without an active exception',
    seen after an all_gather in 3 of 10 plain gloo runs): the job failed after its work."""
    if dist.is_available() and dist.is_initialized():
        try:
            # a rank ending on an uncaught error does not wait: torchrun stops its peers
            if getattr(sys, "last_value", None) is not None:
                raise RuntimeError("exiting on an error")
            store = dist.distributed_c10d._get_default_store()
            n = store.add("brisk/exit", 1)
            deadline = time.monotonic() + 10  # a dead peer must not hold the exit for long
            while n < dist.get_world_size() and time.monotonic() < deadline:
                time.sleep(0.01)
                n = store.add("brisk/exit", 0)
        except Exception:  # noqa: BLE001 - exiting: a store that is gone is no reason to hang
            pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dist.destroy_process_group()
