"""Fine-tuning a pretrained backbone: the two-phase method of the Keras transfer-learning
guide (https://keras.io/guides/transfer_learning/), over any ``torch.nn.Module``.

1. **Head phase**: the backbone is frozen and runs in inference mode (the guide's
   ``base_model(inputs, training=False)``: BatchNorm normalises with its moving statistics,
   Dropout and drop-path are off), and only the new head trains. Its output then never
   changes, so by default brisk computes the backbone's features once (``extract_features``,
   batched on the device) and trains the head on them: each epoch costs the head only.
2. **Fine-tuning phase**: the top blocks (or all) of the backbone are unfrozen and train with
   the head at a lower learning rate, with layer-wise learning-rate decay (a block ``i``
   blocks below the top gets ``learning_rate * layer_decay ** (i + 1)``; ELECTRA/BEiT's
   "layer-wise learning rate decay"), warm-up and early stopping. As in the guide, the
   backbone stays in inference mode (its BatchNorm statistics do not move);
   ``batchnorm="adapt"`` lets the unfrozen blocks' BatchNorm layers update their statistics
   and the backbone's Dropout run.

Example::

    backbone = brisk.applications.get("efficientnet_lite0", include_top=False, pooling="avg")
    result = brisk.finetune(backbone, torch.nn.Linear(1280, 10), x, y, epochs=(5, 3))
    result.model, result.head_history.history, result.finetune_history.history
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from brisk.engine.callbacks import EarlyStopping, History
from brisk.engine.trainer import Trainer
from brisk.optim.registry import get as get_optimizer

BATCHNORM_MODES = ("inference", "adapt")


class Finetuned(nn.Module):
    """``head(backbone(x))``. While ``backbone_inference`` is True the backbone runs in
    inference mode even when the model trains (``train()`` leaves it in ``eval()``): the
    Keras guide's ``base_model(inputs, training=False)``. State-dict keys are
    ``backbone.*`` and ``head.*``."""

    def __init__(self, backbone: nn.Module, head: nn.Module, backbone_inference: bool = True):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.backbone_inference = bool(backbone_inference)

    def forward(self, x):
        return self.head(self.backbone(x))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone_inference:
            self.backbone.eval()
        return self


def head_activation(head: nn.Module) -> tuple[str | None, object]:
    """``(activation, logits_fn)`` of a head that ends in a softmax or sigmoid: a
    ``brisk.Sequential`` or brisk layer with ``activation="softmax"|"sigmoid"`` (Keras's
    canonical head), or an ``nn.Sequential`` ending in ``nn.Softmax``/``nn.Sigmoid``.
    The trainer then computes the loss from the logits, as for a Keras model; ``(None,
    None)`` for a head that outputs logits (PyTorch's convention)."""
    act = getattr(head, "output_activation", None)
    if act in ("softmax", "sigmoid") and callable(getattr(head, "forward_logits", None)):
        return act, head.forward_logits
    act = getattr(head, "activation", None)
    if act in ("softmax", "sigmoid") and callable(getattr(head, "forward_logits", None)):
        return act, head.forward_logits
    if type(head) is nn.Sequential and len(head) and isinstance(head[-1], (nn.Softmax, nn.Sigmoid)):
        return ("softmax" if isinstance(head[-1], nn.Softmax) else "sigmoid"), head[:-1]
    return None, None


class _KerasHead(nn.Module):
    """A head ending in a softmax/sigmoid seen as the Keras front sees a model: the
    trainer reads ``output_activation`` and takes the loss from ``forward_logits``."""

    def __init__(self, head: nn.Module, activation: str, logits):
        super().__init__()
        self.head, self.output_activation, self._logits = head, activation, logits

    def forward(self, x):
        return self.head(x)

    def forward_logits(self, x):
        return self._logits(x)


class _KerasFinetuned(Finetuned):
    """``Finetuned`` over a head ending in a softmax/sigmoid (see ``head_activation``)."""

    def __init__(self, backbone, head, activation: str, logits, backbone_inference=True):
        super().__init__(backbone, head, backbone_inference)
        self.output_activation, self._logits = activation, logits

    def forward_logits(self, x):
        return self._logits(self.backbone(x))


def _nchw(x):
    """Images as NCHW for brisk.augment: (N, H, W) gets a channel axis, (N, H, W, C) with
    C 1 or 3 (and axis 1 not) is transposed, as the applications' Preprocess reads them."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return x.permute(0, 3, 1, 2) if isinstance(x, torch.Tensor) else x.transpose(0, 3, 1, 2)
    return x


@dataclass
class FinetuneResult:
    """What ``finetune`` returns: the trained ``Finetuned`` model (in eval mode), each
    phase's ``History`` (``finetune_history`` is None when ``epochs[1] == 0``), and a
    ``Trainer`` over the whole model, images in (to evaluate, predict, save a checkpoint or
    train on): phase 2's, or after a head phase alone a new one (its optimizer starts
    fresh)."""

    model: Finetuned
    head_history: History
    finetune_history: History | None
    trainer: Trainer


_CONTAINERS = (nn.Sequential, nn.ModuleList)  # exact types: plain containers only


def _weighted(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _holds_repeats(m: nn.Module) -> bool:
    """A module that holds a run of blocks: a plain container child with two or more
    weighted entries, all of one type that is not itself a container subclass (a ViT
    encoder's layers, a ConvNeXt stage's blocks; not the conv-norm-activation layers inside
    a MobileNet inverted residual)."""
    for c in m.children():
        if type(c) in _CONTAINERS:
            kinds = {type(e) for e in c.children() if _weighted(e)}
            n = sum(1 for e in c.children() if _weighted(e))
            if n >= 2 and len(kinds) == 1 and not issubclass(kinds.pop(), _CONTAINERS):
                return True
    return False


def _expand(m: nn.Module) -> list[nn.Module]:
    if type(m) in _CONTAINERS or _holds_repeats(m):
        return [b for c in m.children() if _weighted(c) for b in _expand(c)]
    return [m]


def blocks(module: nn.Module) -> list[nn.Module]:
    """The blocks of a backbone, bottom to top, as ``finetune`` unfreezes them. Wrappers
    whose weights all sit in one child (a preprocessing wrapper around a torchvision or
    timm model) are looked through; then each weighted child is a block, except plain
    containers (``nn.Sequential``, ``nn.ModuleList``), which are flattened, and modules
    that hold a run of same-type blocks in such a container (a ViT encoder, a ConvNeXt
    stage), which are opened. A ResNet gives conv1, bn1, each residual block of layer1-4
    (and fc); an EfficientNet its stem conv and norm, each (inverted-)residual block, its
    head conv and norm; a ViT its patch projection, each encoder block, the final norm.
    Weights outside every block (a ViT's class token and position embedding) train only
    with ``unfreeze="all"``."""
    while True:
        owners = [c for c in module.children() if _weighted(c)]
        if (len(owners) == 1 and type(module) not in _CONTAINERS
                and not any(True for _ in module.parameters(recurse=False))):
            module = owners[0]
            continue
        break
    return [b for c in module.children() if _weighted(c) for b in _expand(c)]


def _batches(x, batch_size: int):
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size]


def extract_features(backbone: nn.Module, x: Any, *, batch_size: int = 128,
                     device: str | torch.device | None = None, path: str | None = None,
                     verbose: int | str = "auto"):
    """``backbone(x)`` for every sample, computed once in inference mode (``eval()``,
    ``torch.no_grad``), in batches of ``batch_size`` on ``device`` (default: the
    backbone's). ``x``: a tensor or NumPy array, samples on axis 0.

    Returns a float32 CPU tensor of shape ``(N, *feature_shape)``; with ``path`` the
    features go to a ``.npy`` file written batch by batch and come back memory-mapped (a
    ``numpy.memmap``, read from disk as batches use it) for sets larger than memory.
    The backbone's train/eval mode is restored afterwards.

    Raises ``TypeError`` for another ``x``, ``ValueError`` for an empty ``x`` or a
    ``batch_size`` below 1.
    """
    from tqdm.auto import tqdm

    from brisk.engine.progress import resolve_verbose

    if not isinstance(x, (torch.Tensor, np.ndarray)):
        raise TypeError(f"x: expected a tensor or NumPy array to compute features of, got "
                        f"{type(x).__name__}")
    if len(x) == 0:
        raise ValueError("x: no samples to compute features of")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    if device is None:
        p = next(backbone.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    was_training = backbone.training
    backbone.eval()
    out = None
    n = len(x)
    bar = tqdm(total=n, desc="features", unit="sample", disable=resolve_verbose(verbose) == 0,
               leave=False)
    try:
        with torch.no_grad():
            i = 0
            for xb in _batches(x, batch_size):
                xb = torch.as_tensor(xb).to(device, non_blocking=True)
                f = backbone(xb).float().cpu()
                if out is None:
                    shape = (n, *f.shape[1:])
                    if path is not None:
                        out = np.lib.format.open_memmap(os.fspath(path), mode="w+",
                                                        dtype=np.float32, shape=shape)
                    else:
                        out = torch.empty(shape, dtype=torch.float32)
                out[i:i + len(f)] = f.numpy() if path is not None else f
                i += len(f)
                bar.update(len(f))
    finally:
        bar.close()
        backbone.train(was_training)
    if path is not None:
        out.flush()
    return out


def _check_pair(name: str, value, kind, what: str) -> tuple:
    """``value`` as (head phase, fine-tuning phase): one value for both, or a pair, each
    of ``kind`` and passing ``what``'s check (done by the caller: ``what`` is its wording)."""
    pair = value if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, kind) for v in pair):
        raise ValueError(f"{name}: expected one value or a pair (head phase, fine-tuning "
                         f"phase), each {what}, got {value!r}")
    return tuple(pair)


def _lr_scaled_optimizer(spec, model: Finetuned, unfrozen: list[nn.Module], layer_decay: float):
    """A callable ``params -> optimizer`` for the Trainer: ``spec`` built over the trainable
    weights, each of its groups split by learning-rate scale (head 1, the top unfrozen
    block ``layer_decay``, the next ``layer_decay ** 2``, ...)."""
    scale = {}
    for depth, block in enumerate(reversed(unfrozen)):
        for p in block.parameters():
            scale.setdefault(id(p), layer_decay ** (depth + 1))

    def make(params):
        opt = spec.build(model)  # on the parameters' device
        groups = []
        for g in opt.param_groups:
            by_scale: dict[float, list] = {}
            for p in g["params"]:
                by_scale.setdefault(scale.get(id(p), 1.0), []).append(p)
            for s, ps in by_scale.items():
                groups.append({**g, "params": ps, "lr": g["lr"] * s,
                               "initial_lr": g.get("initial_lr", g["lr"]) * s})
        opt.param_groups[:] = groups
        return opt

    return make


def finetune(
    backbone: nn.Module,
    head: nn.Module,
    x: Any,
    y: Any = None,
    *,
    epochs: int | tuple[int, int] = (5, 5),
    learning_rate: float | tuple[float, float] = (1e-3, 1e-5),
    optimizer: str = "adam",
    loss: Any = "sparse_categorical_crossentropy",
    metrics: Any = ("accuracy",),
    batch_size: int = 32,
    unfreeze: str | int = "all",
    layer_decay: float = 1.0,
    warmup: int = 0,
    patience: int | None = None,
    monitor: str = "val_loss",
    batchnorm: str = "inference",
    cache: bool | str = "auto",
    augment: Any = None,
    validation_split: float = 0.0,
    validation_data: Any = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    seed: int | None = None,
    verbose: int | str = "auto",
) -> FinetuneResult:
    """Train a new ``head`` on a pretrained ``backbone`` in the two phases of the Keras
    transfer-learning guide (module docstring); returns a ``FinetuneResult``.

    - ``x``, ``y``: training data as ``Trainer.fit`` takes it (arrays/tensors, or a
      Dataset/DataLoader with ``y=None``); the backbone's output must be what ``head``
      takes (e.g. ``(N, C)`` features from ``include_top=False, pooling="avg"``).
    - ``epochs``, ``learning_rate``: one value for both phases or a pair (head phase,
      fine-tuning phase). Defaults: 5 and 5 epochs; 1e-3 then 1e-5 (the guide's Adam rates).
      ``epochs=(n, 0)`` trains the head only.
    - ``unfreeze``: ``"all"`` or the number of top ``blocks(backbone)`` that train in
      phase 2; ``layer_decay`` in (0, 1]: a block ``i`` blocks below the top trains at
      ``learning_rate * layer_decay ** (i + 1)`` (1.0: one rate).
    - ``warmup``: linear warm-up steps of phase 2 (``Trainer(warmup=)``); ``patience``:
      ``EarlyStopping(monitor, patience, restore_best_weights=True)`` in phase 2 when there
      is validation data (None: off).
    - ``batchnorm``: ``"inference"`` (the guide: the backbone stays in inference mode in
      phase 2 too) or ``"adapt"`` (the unfrozen blocks' BatchNorm statistics update, and the
      backbone's Dropout runs).
    - ``cache``: ``"auto"``/``True``/``"memory"``: the head phase trains on features
      computed once (``extract_features``) when ``x`` is an array or tensor; a path: the
      features go to that ``.npy`` file, memory-mapped; ``False``: the backbone runs every
      epoch. With ``augment`` the features change each epoch, so they cannot be cached:
      ``"auto"`` then runs the full path, and an explicit cache raises ``ValueError``.
      Cached and uncached give the same head for the same ``seed`` (the frozen backbone
      in inference mode draws no random numbers).

    The backbone's ``trainable`` flags are left as phase 2 set them. Raises ``TypeError``/
    ``ValueError`` naming the argument for bad input, before any training.
    """
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"backbone: expected a torch.nn.Module, got {type(backbone).__name__}")
    if not isinstance(head, nn.Module):
        raise TypeError(f"head: expected a torch.nn.Module, got {type(head).__name__}")
    epochs = _check_pair("epochs", epochs, int, "an int >= 0")
    if epochs[0] < 1 or epochs[1] < 0:
        raise ValueError(f"epochs: the head phase needs at least 1 epoch, the fine-tuning "
                         f"phase 0 or more, got {epochs!r}")
    lrs = _check_pair("learning_rate", learning_rate, (int, float), "a positive number")
    if not all(math.isfinite(v) and v > 0 for v in lrs):
        raise ValueError(f"learning_rate: expected positive finite rates, got {learning_rate!r}")
    all_blocks = blocks(backbone)
    if unfreeze != "all" and (isinstance(unfreeze, bool) or not isinstance(unfreeze, int)
                              or not 1 <= unfreeze <= len(all_blocks)):
        raise ValueError(f"unfreeze: expected 'all' or a number of top blocks from 1 to "
                         f"{len(all_blocks)} (the backbone's blocks), got {unfreeze!r}")
    if isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)) or not (
            0 < layer_decay <= 1):
        raise ValueError(f"layer_decay: expected a number in (0, 1], got {layer_decay!r}")
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm: expected one of {BATCHNORM_MODES}, got {batchnorm!r}")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int)
                                 or patience < 0):
        raise ValueError(f"patience: expected an int >= 0 or None, got {patience!r}")
    metric_names = [m if isinstance(m, str) else getattr(m, "name", "") for m in metrics or ()]
    monitors = {"loss", "val_loss", *metric_names, *(f"val_{m}" for m in metric_names)}
    if patience is not None and monitor not in monitors:
        raise ValueError(f"monitor: expected one of {sorted(monitors)} (the logs of these "
                         f"metrics), got {monitor!r}")
    if isinstance(cache, bool) or cache in ("auto", "memory"):
        path = None
    elif isinstance(cache, (str, os.PathLike)):
        path = os.fspath(cache)
        if not path.endswith(".npy"):
            raise ValueError(f"cache: expected 'auto', True, False, 'memory' or the path of a "
                             f".npy file for memory-mapped features, got {cache!r}")
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ValueError(f"cache: the folder of {path!r} does not exist")
    else:
        raise TypeError(f"cache: expected 'auto', True, False, 'memory' or a .npy path, got "
                        f"{cache!r}")
    arrays = isinstance(x, (torch.Tensor, np.ndarray))
    if cache not in ("auto", False) and augment is not None:
        raise ValueError("cache: cached features cannot be augmented (augmentation changes "
                         "the backbone's input every epoch); pass cache=False or 'auto' to "
                         "run the backbone each epoch with augment, or drop augment")
    if cache not in ("auto", False) and not arrays:
        raise ValueError(f"cache: features are cached for arrays or tensors; x is a "
                         f"{type(x).__name__}: pass cache=False")
    use_cache = cache is not False and arrays and augment is None
    if validation_data is not None and use_cache and not (
            isinstance(validation_data, (tuple, list)) and len(validation_data) == 2
            and isinstance(validation_data[0], (torch.Tensor, np.ndarray))):
        raise ValueError("validation_data: with cached features expected (x_val, y_val) "
                         "arrays; pass cache=False for other validation data")
    if augment is not None and arrays:  # brisk.augment works on NCHW batches
        x = _nchw(x)
        if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2 and \
                isinstance(validation_data[0], (torch.Tensor, np.ndarray)):
            validation_data = (_nchw(validation_data[0]), *validation_data[1:])
    if epochs[1] and hasattr(x, "__len__") and not isinstance(warmup, bool) and \
            isinstance(warmup, int) and warmup > 0:
        from brisk.engine.inputs import split_point

        rows = split_point(len(x), validation_split) if validation_split else len(x)
        steps = epochs[1] * math.ceil(rows / batch_size)
        if warmup >= steps:
            raise ValueError(f"warmup: {warmup} steps leave none of phase 2's {steps} optimizer "
                             f"steps ({epochs[1]} epochs of {math.ceil(rows / batch_size)})")

    act, logits = head_activation(head)
    model = (Finetuned(backbone, head) if act is None
             else _KerasFinetuned(backbone, head, act, logits))
    common = dict(loss=loss, metrics=list(metrics) if metrics else None, device=device,
                  precision=precision, seed=seed)
    fit_args = dict(batch_size=batch_size, verbose=verbose, validation_split=validation_split)
    say = print if verbose not in (0, "0") else (lambda *a, **k: None)

    # ---- phase 1: the head on the frozen backbone
    backbone.trainable = False
    say(f"finetune: phase 1, the head on the frozen backbone"
        f"{' (features computed once)' if use_cache else ''}")
    if use_cache:
        t1 = Trainer(head if act is None else _KerasHead(head, act, logits),
                     optimizer=get_optimizer(optimizer, learning_rate=lrs[0]), **common)
        dev = t1.device  # the features are computed where the head trains
        backbone.to(dev)
        feats = extract_features(backbone, x, device=dev, path=path, verbose=verbose)
        val = None
        if validation_data is not None:
            vpath = None if path is None else path[:-4] + ".val.npy"
            val = (extract_features(backbone, validation_data[0], device=dev, path=vpath,
                                    verbose=verbose), validation_data[1])
        h1 = t1.fit(feats, y, epochs=epochs[0], validation_data=val, **fit_args)
    else:
        t1 = Trainer(model, optimizer=get_optimizer(optimizer, learning_rate=lrs[0]), **common)
        h1 = t1.fit(x, y, epochs=epochs[0], validation_data=validation_data, augment=augment,
                    **fit_args)
    if epochs[1] == 0:
        full = t1 if not use_cache else Trainer(
            model, optimizer=get_optimizer(optimizer, learning_rate=lrs[0]), **common)
        return FinetuneResult(model.eval(), h1, None, full)

    # ---- phase 2: unfreeze the top blocks, lower rate, layer-wise decay
    say(f"finetune: phase 2, {'every block' if unfreeze == 'all' else f'the top {unfreeze} blocks'}"
        f" of the backbone and the head at learning rate {lrs[1]:g}")
    unfrozen = all_blocks if unfreeze == "all" else all_blocks[-unfreeze:]
    backbone.trainable = True
    for b in all_blocks:
        b.trainable = any(b is u for u in unfrozen)
    if unfreeze != "all":  # weights outside every block (e.g. a wrapper's own) stay fixed
        in_blocks = {id(p) for b in all_blocks for p in b.parameters()}
        for p in backbone.parameters():
            if id(p) not in in_blocks:
                p.requires_grad_(False)
    model.backbone_inference = batchnorm == "inference"
    spec = get_optimizer(optimizer, learning_rate=lrs[1])
    t2 = Trainer(model, optimizer=_lr_scaled_optimizer(spec, model, unfrozen, layer_decay),
                 warmup=warmup, **common)
    callbacks, stop = [], None
    has_val = validation_data is not None or validation_split
    if patience is not None and has_val:
        stop = EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True)
        callbacks.append(stop)
    elif patience is not None:
        warnings.warn("patience: early stopping needs validation data (validation_split or "
                      "validation_data); phase 2 runs all its epochs", stacklevel=2)
    phase1 = h1.history.get(monitor, [None])[-1] if stop is not None else None
    before = copy.deepcopy(model.state_dict()) if phase1 is not None else None
    h2 = t2.fit(x, y, epochs=epochs[1], validation_data=validation_data, augment=augment,
                callbacks=callbacks, **fit_args)
    if before is not None:  # early stopping's best includes where phase 1 ended
        best = [v for v in h2.history.get(monitor, []) if v == v]
        maximize = "acc" in monitor
        if not best or (max(best) <= phase1 if maximize else min(best) >= phase1):
            model.load_state_dict(before)
            warnings.warn(f"finetune: phase 2 never improved {monitor} on the head phase's "
                          f"{phase1:.4g}; the model is back at the end of phase 1",
                          stacklevel=2)
    return FinetuneResult(model.eval(), h1, h2, t2)
