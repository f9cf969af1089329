"""One training step: forward and loss (weighted by sample and class weights), backward,
and every ``accumulate`` batches the optimizer step with gradient clipping and the
learning-rate schedule. The loop that calls these is ``Trainer.fit`` (trainer.py).
"""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler

from brisk.data.loader import DeviceLoader


def class_sample_weights(table: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Per-sample weights from a class-weight ``table`` (``inputs.class_weight_table``), as
    Keras's class_weight_to_sample_weights: one-hot labels by argmax, (N, 1) squeezed,
    values rounded to the class index."""
    idx = yb
    if idx.dim() > 1:
        idx = idx.argmax(-1) if idx.shape[-1] != 1 else idx.squeeze(-1)
    idx = idx.round().long() if idx.is_floating_point() else idx.long()
    return table[idx.clamp(0, len(table) - 1)]


def train_batch(trainer, xb: torch.Tensor, yb: torch.Tensor, weight: float, wb=None,
                sync: bool = True) -> None:
    """Forward, loss and backward for one (micro-)batch; ``weight`` scales the loss (its
    share of an accumulated update). Gradients add up until ``optimizer_step``. Under
    torchrun, ``sync=False`` (a micro-batch before the last of its accumulation group) runs
    forward and backward under DDP's ``no_sync`` (FSDP: ``set_requires_gradient_sync``):
    the last one all-reduces (reduce-scatters) the sum."""
    if trainer._cw_table is not None:  # Keras multiplies class and sample weights
        cw = class_sample_weights(trainer._cw_table, yb)
        wb = cw if wb is None else wb * cw
    if trainer._fsdp is not None:  # FSDP: gradients reduce-scattered on the group's last only
        trainer._fsdp.set_requires_gradient_sync(sync)
    if not sync and trainer._ddp is not None and trainer._fwd is trainer._ddp:
        with trainer._ddp.no_sync():
            out, loss = _forward_backward(trainer, xb, yb, weight, wb)
    else:  # (no context managers on the common path: they cost per step)
        out, loss = _forward_backward(trainer, xb, yb, weight, wb)
    trainer._accumulate(loss, out, yb)


def _forward_backward(trainer, xb, yb, weight: float, wb):
    if trainer._nothing_to_train:
        with torch.no_grad():
            return trainer._fwd_loss(xb, yb, wb) if wb is not None else trainer._fwd_loss(xb, yb)
    out, loss = trainer._fwd_loss(xb, yb, wb) if wb is not None else trainer._fwd_loss(xb, yb)
    trainer.precision.backward(loss * weight if weight != 1.0 else loss)
    return out, loss


def optimizer_step(trainer, schedule, schedule_step: int) -> None:
    """The learning rate for ``schedule_step`` (``initial_lr * schedule(step)``), gradient
    clipping (the Trainer's ``clip_norm``/``clip_value``, else the optimizer's Keras
    ``clipnorm``/``global_clipnorm``/``clipvalue``), the optimizer step, zeroed gradients."""
    if trainer._nothing_to_train:  # every weight frozen: nothing to update (Keras)
        trainer.global_step += 1
        return
    opt = trainer.optimizer
    if schedule is not None:
        factor = schedule(schedule_step)
        for g in opt.param_groups:
            g["lr"] = g["initial_lr"] * factor
    spec = trainer.optimizer_spec
    keras_clip = any(getattr(spec, k, None) for k in ("clipnorm", "global_clipnorm", "clipvalue"))
    if trainer.clip_norm is not None or trainer.clip_value is not None:
        trainer.precision.unscale(opt)
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if trainer.clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, trainer.clip_value)
        if trainer.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, trainer.clip_norm, foreach=True)
    elif keras_clip:  # the optimizer's Keras arguments, one of them, Keras's precedence
        trainer.precision.unscale(opt)
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if spec.clipnorm:  # each tensor: g * c / max(||g||, c) (Keras clip_by_norm)
            norms = torch._foreach_norm(grads)
            torch._foreach_mul_(grads, [spec.clipnorm / n.clamp_min(spec.clipnorm) for n in norms])
        elif spec.global_clipnorm:  # all together (Keras clip_by_global_norm)
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            torch._foreach_mul_(grads, spec.global_clipnorm / total.clamp_min(spec.global_clipnorm))
        else:
            torch._foreach_clamp_min_(grads, -spec.clipvalue)
            torch._foreach_clamp_max_(grads, spec.clipvalue)
    trainer.precision.step(opt)
    zero_grad(opt)
    trainer.global_step += 1


def zero_grad(opt) -> None:
    """``opt.zero_grad(set_to_none=True)``. For torch's own method, the same loop without
    its profiler range and dynamo guard (two dispatcher calls per training step)."""
    if type(opt).zero_grad is torch.optim.Optimizer.zero_grad and "zero_grad" not in vars(opt):
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = None
    else:
        opt.zero_grad(set_to_none=True)


def batch_sizes(loader) -> tuple[int, int, int] | None:
    """(batch_size, number of batches, size of the last batch) when the loader says."""
    bs = getattr(loader, "batch_size", None)
    try:
        nb = len(loader)
    except TypeError:
        return None
    if bs is None or nb == 0:
        return None
    if isinstance(loader, DeviceLoader):
        n = loader.num_samples
    else:
        sampler = getattr(loader, "sampler", None)
        try:  # the samples drawn per pass: a DistributedSampler's shard, not the dataset
            n = len(sampler if isinstance(sampler, DistributedSampler) else loader.dataset)
        except TypeError:
            return None
    drop = getattr(loader, "drop_last", False)
    last = bs if drop or n % bs == 0 else n % bs
    return bs, nb, last


def group_size(sizes, i: int, k: int) -> int:
    """Samples in the accumulation group that batch ``i`` belongs to."""
    if sizes is None:  # unknown sizes: assume full batches (documented approximation)
        raise ValueError("accumulate: needs a loader with a known length and batch_size")
    bs, nb, last = sizes
    start = (i // k) * k
    end = min(start + k, nb)
    return (end - start) * bs - ((bs - last) if end == nb else 0)
