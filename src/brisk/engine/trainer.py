"""The training engine: one loop for ``brisk.Sequential`` and any ``torch.nn.Module``.

Read ``fit`` top to bottom: prepare data and checks, then per epoch the train batches
(forward, backward, optimizer step every ``accumulate`` batches), then validation, then
the epoch-end callbacks. Loss and metrics accumulate on the device and are read once per
epoch (or when a progress bar or a callback asks), never per step.

Example::

    import torch, brisk
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    trainer = brisk.Trainer(net, optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    history = trainer.fit(torch.randn(64, 4), torch.randint(0, 3, (64,)), epochs=2, verbose=0)
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import numbers
import os
import random
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as tprune
from torch.utils.flop_counter import FlopCounterMode

from brisk import distributed
from brisk import losses as losses_mod
from brisk import metrics as metrics_mod
from brisk.data.loader import DeviceLoader, _mix
from brisk.engine import inputs
from brisk.engine import step as step_mod
from brisk.engine.callbacks import Callback, CallbackList, History
from brisk.engine.checkpoint import (
    SHARDED_TRAINER_FILE,
    check_sharded,
    load_checkpoint,
    load_sharded,
    plain_state_dict,
    refresh_pruned,
    save_checkpoint,
    save_sharded,
)
from brisk.engine.freeze import apply_trainable, frozen_batchnorm_eval
from brisk.engine.precision import Precision
from brisk.engine.progress import ProgressBar, resolve_verbose
from brisk.engine.threads import ThreadPolicy
from brisk.optim import registry as optim_registry
from brisk.optim import schedules as schedules_mod
from brisk.utils import set_random_seed

NAN_RESTORES = 3  # fit(on_nan='restore'): at most this many restores, then it stops
_ACTIVATIONS = {"softmax": lambda t: torch.softmax(t, dim=1 if t.dim() == 4 else -1),
                "sigmoid": torch.sigmoid}


def select_device(device: str | torch.device | None = None) -> torch.device:
    """cuda, then mps, then cpu; ``device`` overrides ('xla' needs torch_xla)."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "xla":
        try:
            import torch_xla.core.xla_model as xm
        except ImportError as e:
            raise ValueError("device: 'xla' needs torch_xla installed (TPU)") from e
        return xm.xla_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N', 'mps' or 'xla', got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA GPU is available")
    return dev


class _LazyLogs(Mapping):
    """Running means of the epoch so far, read from the device only when accessed."""

    def __init__(self, trainer: Trainer, extra: dict):
        self._trainer, self._extra, self._values = trainer, extra, None

    def _load(self) -> dict:
        if self._values is None:
            self._values = {**self._trainer._read_stats(), **self._extra}
        return self._values

    def __getitem__(self, k):
        return self._load()[k]

    def __iter__(self):
        return iter(self._load())

    def __len__(self):
        return len(self._load())


def _check_fsdp_callbacks(callbacks) -> None:
    """Under FSDP saving is a collective of every rank, and ModelCheckpoint and
    BackupAndRestore write on rank 0 only: refused before training, with what to do."""
    from brisk.engine.callbacks import BackupAndRestore, ModelCheckpoint

    for cb in callbacks:
        if isinstance(cb, (ModelCheckpoint, BackupAndRestore)):
            raise ValueError(
                f"callbacks: {type(cb).__name__} is not supported with strategy='fsdp' yet (it "
                "writes on rank 0, and saving sharded weights needs every rank): call "
                "trainer.save_checkpoint(folder) on every rank (e.g. from a LambdaCallback's "
                "on_epoch_end), or use strategy='ddp'")


class _NoRows:
    """A rank's part of data with fewer rows than ranks: no batches."""

    _brisk_rows = True

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


def _has_hook(cb: Callback, *hooks: str) -> bool:
    """Whether ``cb`` has one of ``hooks`` of its own: defined by its class, or set on the
    instance (LambdaCallback's), not ``Callback``'s no-op. A class with its own
    ``__getattribute__`` may return any hook. (``__getattr__`` cannot: ``Callback``
    defines every hook, so it is never asked for one.)"""
    cls = type(cb)
    if cls.__getattribute__ is not object.__getattribute__:
        return True
    return any(getattr(cls, h) is not getattr(Callback, h) or h in vars(cb) for h in hooks)


_BATCH_BEGIN = ("on_train_batch_begin", "on_batch_begin")  # the first calls the second
_BATCH_END = ("on_train_batch_end", "on_batch_end")


def _may_stop_mid_epoch(cb: Callback) -> bool:
    """Whether ``cb`` has a training-batch hook of its own (so may set ``stop_training``
    mid-epoch); brisk's writers and progress bar never stop training."""
    return not getattr(cb, "_never_stops", False) and _has_hook(cb, *_BATCH_BEGIN, *_BATCH_END)


def _numpy_rng_state() -> list:
    """numpy's global generator state as plain data (the key array as a tensor)."""
    name, keys, at, has_gauss, gauss = np.random.get_state()
    return [name, torch.from_numpy(keys.astype(np.int64)), int(at), int(has_gauss), float(gauss)]


def _python_rng_state() -> list:
    """python ``random``'s state as plain data (its 625 words as a tensor)."""
    version, internal, gauss_next = random.getstate()
    return [version, torch.tensor(internal, dtype=torch.int64), gauss_next]


def _stateful_callbacks(callbacks) -> dict[str, Callback]:
    """The callbacks that save state (``state_dict``/``load_state_dict``), keyed by class
    name, ``Name_1``, ``Name_2``... for later ones of the same class."""
    out: dict[str, Callback] = {}
    counts: dict[str, int] = {}
    for cb in callbacks:
        if callable(getattr(cb, "state_dict", None)) and callable(getattr(cb, "load_state_dict", None)):
            name = type(cb).__name__
            n = counts.get(name, 0)
            counts[name] = n + 1
            out[name if n == 0 else f"{name}_{n}"] = cb
    return out


def _fits(state_shape: torch.Size, weight_shape: torch.Size) -> bool:
    """An optimizer's per-weight state: the weight's shape, or a factor of it with size-1
    axes (Adafactor's row and column variances)."""
    return len(state_shape) == len(weight_shape) and all(
        a in (b, 1) for a, b in zip(state_shape, weight_shape, strict=True))


def _pruned_in(theirs: dict, ours: dict) -> list[str]:
    """Tensors pruned in a saved state (``<k>_orig`` and ``<k>_mask``, torch.nn.utils.prune)
    that are plain ``<k>`` in this model."""
    return [k[:-5] for k in theirs if k.endswith("_orig") and k[:-5] + "_mask" in theirs
            and k[:-5] in ours and k not in ours]


class Trainer:
    """Train any ``nn.Module`` with Keras's ``fit/evaluate/predict``.

    Args:
        module: the model. ``brisk.Sequential`` models are built lazily from the data.
        optimizer: a name ('adam', 'sgd', ...), a ``brisk.optimizers`` object, a built
            ``torch.optim.Optimizer``, or a callable ``params -> Optimizer``.
        loss: a name (Keras or torch spelling), a ``brisk.losses.Loss`` or a callable
            ``(y_pred, y_true) -> scalar``.
        metrics: names such as 'accuracy', 'top_k_accuracy', 'mae' or Metric objects.
        device: None picks cuda, then mps, then cpu.
        precision: 'auto', 'fp32', 'bf16-mixed', 'fp16-mixed' or 'bf16'. 'auto' is
            bf16-mixed on a bf16 GPU, and on a native-bf16 CPU when the forward costs
            at least 32 MFLOP per batch; fp32 elsewhere (``brisk.engine.precision``).
        compile: False, True (``torch.compile``) or a ``torch.compile`` mode string such
            as 'reduce-overhead' (CUDA graphs).
        schedule: learning-rate schedule (name, ``brisk.schedules`` object or
            ``step -> factor`` callable); ``warmup`` linear warmup steps in front of it.
        accumulate: optimizer step every k batches; the update equals one step on the
            k-times larger batch (the loss is normalised over all k batches together).
        clip_norm / clip_value: gradient clipping by global L2 norm / by value.
        seed: seeds model initialisation, shuffling and augmentation.
        sync_batchnorm: under torchrun on CUDA, BatchNorm layers normalise with the
            statistics of the global batch (``torch.nn.SyncBatchNorm``); CPU (gloo) is
            refused when fit starts, as torch's SyncBatchNorm runs on CUDA only. One process:
            nothing to synchronise, no effect.
        strategy: under torchrun, 'ddp' (default: a full copy of the model per process,
            gradients all-reduced, ``DistributedDataParallel``), 'fsdp' (weights, gradients
            and optimizer state sharded over the processes, FSDP2 ``fully_shard`` per block
            then the root, with the mixed-precision policy of ``precision``) or 'auto'
            (FSDP when a full copy of the training state exceeds half of one process's
            memory; ``strategy_reason`` says why, and fit prints it on rank 0). One
            process: no effect. Under FSDP, after ``fit`` the model's weights stay sharded:
            ``evaluate``/``predict`` work as usual, ``save``/``model.save`` gather the full
            weights and rank 0 writes them (call them on every rank), and
            ``save_checkpoint(folder)``/``load_checkpoint(folder)`` write and read sharded
            checkpoints (``torch.distributed.checkpoint``), on every rank.
        threads: CPU intra-op threads during ``fit``: 'auto' (at most the cores this
            process may use, halved while the steps stall because another process takes
            the cores; printed with verbose; ``brisk.engine.threads``), a number (that
            count for the fit), or None (torch's setting untouched). torch's count is
            restored when fit ends. No effect on GPUs.
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: Any = "adam",
        loss: Any = "sparse_categorical_crossentropy",
        metrics: Iterable[Any] | None = None,
        *,
        device: str | torch.device | None = None,
        precision: str = "auto",
        compile: bool | str = False,
        schedule: Any = None,
        warmup: int = 0,
        accumulate: int = 1,
        clip_norm: float | None = None,
        clip_value: float | None = None,
        seed: int | None = None,
        sync_batchnorm: bool = False,
        strategy: str = "ddp",
        threads: int | str | None = "auto",
    ):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
        # A module the user already passed through torch.compile: train and save the
        # original (its state_dict keys carry no "_orig_mod." prefix) and compile here.
        if isinstance(getattr(module, "_orig_mod", None), nn.Module):
            module, compile = module._orig_mod, compile or True
        self.module = module
        # under torchrun: one GPU per process (cuda:LOCAL_RANK), and the process group
        self.device = distributed.local_device(select_device(device))
        self.dist = distributed.Distributed.from_env(self.device)
        self._ddp: nn.Module | None = None  # the DDP wrapper that trains (under torchrun)
        self._ddp_key: tuple | None = None
        self.loss_fn = losses_mod.get(loss) if loss is not None else None
        self._keras_loss = isinstance(self.loss_fn, losses_mod.Loss)
        if isinstance(metrics, (str, metrics_mod.Metric)):
            metrics = [metrics]
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise TypeError(f"metrics: expected None, a name, a Metric or a list of them, "
                            f"got {metrics!r}")
        self.metrics = [metrics_mod.get(m, self.loss_fn) for m in (metrics or [])]
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"metrics: names must be unique, got {names}")
        self.precision = Precision(precision, self.device)
        if not (isinstance(compile, bool) or isinstance(compile, str) and compile in (
                "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")):
            raise ValueError(f"compile: expected a bool or a torch.compile mode, got {compile!r}")
        self.compile = compile
        self.schedule = schedule
        if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
            raise ValueError(f"warmup: expected a number of optimizer steps (an int >= 0), "
                             f"got {warmup!r}")
        self.warmup = int(warmup)
        self.accumulate = inputs.check_positive_int(accumulate, "accumulate")
        for name, v in (("clip_norm", clip_norm), ("clip_value", clip_value)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)
                                  or not (v > 0 and math.isfinite(v))):
                raise ValueError(f"{name}: expected a positive number or None, got {v!r}")
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.clip_value = None if clip_value is None else float(clip_value)
        self.seed = seed
        if not isinstance(sync_batchnorm, bool):
            raise TypeError(f"sync_batchnorm: expected True or False, got {sync_batchnorm!r}")
        self.sync_batchnorm = sync_batchnorm
        self.strategy = distributed.check_strategy(strategy)
        ThreadPolicy(self.device, threads)  # a bad value is refused now, not at fit
        self.threads = threads
        self._thread_policy: ThreadPolicy | None = None
        self.thread_changes: list[str] = []  # what threads='auto' changed in the last fit
        self.strategy_reason: str | None = None  # strategy='auto': why it chose (under torchrun)
        self._fsdp: nn.Module | None = None  # the sharded root that trains (strategy='fsdp')
        self._pending_sharded: str | None = None  # a sharded checkpoint to load once sharded
        if seed is not None:
            set_random_seed(seed)  # torch, numpy and random, as keras.utils.set_random_seed
        # Optimizer: resolved now (bad names fail early), built when parameters exist.
        self._optimizer_arg = optimizer
        self.optimizer: torch.optim.Optimizer | None = None
        self.optimizer_spec = None
        if isinstance(optimizer, str) or hasattr(optimizer, "build"):
            self.optimizer_spec = optim_registry.resolve(optimizer)
        self._params_key: tuple | None = None
        self._fwd = None
        self._fwd_loss = None
        self._int_inputs = False
        # a model that normalises images itself (brisk.applications' Preprocess, marked
        # ``unit_images``) takes floats in [0, 1]: uint8 batches are divided by 255 for it
        self._unit_images = any(getattr(mod, "unit_images", False) is True
                                for mod in module.modules())
        self._nothing_to_train = False  # every weight frozen (fit warns and only computes)
        self._cw_table: torch.Tensor | None = None
        self.global_step = 0
        self.epoch = 0
        self.stop_training = False
        self.history: History | None = None
        # Where training stands (saved in checkpoints, see ``state_dict``): the epoch in
        # progress, batches trained in it, the data pass and batches drawn from it (they
        # differ with steps_per_epoch), the shuffle seed fit used, batches per epoch.
        self._position: dict[str, Any] = {"epoch": 0, "batch": 0, "pass": 0, "drawn": 0,
                                          "seed": None, "batches": None}
        self._callback_states: dict[str, Any] | None = None  # loaded, applied by fit
        self._callbacks: list[Callback] = []  # those of the fit in progress (checkpointed)
        self._in_group = False  # inside an accumulate group: gradients not yet applied
        self._loads = 0  # load_state_dict calls: fit sees a restore during on_train_begin
        self.stopped_for_nan = False  # set by fit(on_nan='stop'); BackupAndRestore reads it
        self._stats: list[torch.Tensor] | None = None
        self._counts: list[int] = []

    # ------------------------------------------------------------------ setup
    def _forward_fn(self):
        """The callable that maps inputs to what the loss takes (logits when possible)."""
        act = getattr(self.module, "output_activation", None)
        loss_act = getattr(self.loss_fn, "activation", None)
        if loss_act is not None and getattr(self.loss_fn, "from_logits", False) is None:
            # from_logits=None: the Keras front (brisk.Sequential) takes the output as
            # probabilities (Keras's from_logits=False) unless the model ends in the loss's
            # activation, which is then stripped and the loss computed from the logits; a
            # plain module's outputs are logits (PyTorch's convention).
            keras_front = hasattr(self.module, "output_activation")
            self.loss_fn = copy.copy(self.loss_fn)
            self.loss_fn.from_logits = act == loss_act if keras_front else True
        from_logits = getattr(self.loss_fn, "from_logits", None) is not False
        if act is not None and act == loss_act and from_logits:
            fn = self.module.forward_logits
        else:
            fn = self.module
        # Metrics see what the model outputs: at the Keras front, the activation stripped
        # for the loss is applied again (a model that outputs logits gives its metrics the
        # logits, as Keras does, even with a from_logits=True loss); a plain torch module's
        # logits become probabilities when the loss consumes logits (PyTorch's convention).
        if hasattr(self.module, "output_activation"):
            self._post = _ACTIVATIONS.get(act) if fn is not self.module else None
        else:
            self._post = _ACTIVATIONS.get(loss_act) if (from_logits and loss_act) else None
        return fn

    def _setup_module(self, sample: torch.Tensor, batch_size: int = 32) -> None:
        """Build (lazy Sequential), move to the device, and dry-run one tiny batch so a
        shape mismatch is a clear error before training starts. precision='auto' still
        pending (a native-bf16 CPU) is decided here from the dry run's FLOPs per sample
        times ``batch_size``."""
        m = self.module
        if hasattr(m, "built") and hasattr(m, "build") and not m.built:
            m.build(tuple(sample.shape[1:]))
        elif getattr(m, "built", False):
            self._check_sample_shape(sample, "x")
        m.to(self.device)
        self.precision.setup_module(m)
        if self.device.type == "cuda":
            # Measured wins on NVIDIA GPUs: TF32 matmuls, cudnn autotuning, NHWC convs.
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
            if any(isinstance(x, nn.Conv2d) for x in m.modules()):
                m.to(memory_format=torch.channels_last)
        fn = self._forward_fn()
        self._int_inputs = any(isinstance(mod, (nn.Embedding, nn.EmbeddingBag)) for mod in m.modules())
        sample = self._cast_batch(sample)
        modes = [(mod, mod.training) for mod in m.modules()]
        m.eval()
        counter = FlopCounterMode(display=False) if self.precision.pending else contextlib.nullcontext()
        try:
            with torch.no_grad(), self.precision.autocast(), counter:  # sharded: through the root
                out = (fn if self._fsdp is None else self._fsdp)(self._cast_input(sample.to(self.device)))
        except (RuntimeError, ValueError, IndexError) as e:
            raise ValueError(
                f"x: input with per-sample shape {tuple(sample.shape[1:])} does not fit "
                f"the model: {e}"
            ) from e
        finally:
            for mod, mode in modes:
                mod.training = mode
        if self.precision.pending:
            self.precision.decide(counter.get_total_flops() / max(len(sample), 1), batch_size)
        self._out_shape = tuple(out.shape[1:])
        for metric in self.metrics:
            if hasattr(metric, "set_output_shape"):
                metric.set_output_shape(self._out_shape)
        # softmax keeps the argmax, so argmax/top-k accuracies can skip it (sigmoid can't:
        # binary accuracy thresholds the probability at 0.5)
        self._argmax_only = getattr(self.loss_fn, "activation", None) == "softmax" and all(
            getattr(m, "argmax_invariant", False) for m in self.metrics)
        self._fwd = self._fsdp if self._fsdp is not None else fn
        self._fwd_raw = fn
        self._pad_sample = self._cast_input(sample[:1].to(self.device))
        if self.compile and self._fwd_loss is None:
            # Forward and loss as one graph (AOTAutograd compiles its backward too); the
            # optimizer step is already a fused/foreach kernel. dynamic=False: training
            # batches are full (drop_last), so shapes stay static and nothing recompiles.
            mode = None if self.compile in (True, "default") else self.compile
            self._fwd_loss = torch.compile(self._forward_loss, mode=mode, dynamic=False)
        elif not self.compile:
            self._fwd_loss = self._forward_loss

    def _ensure_optimizer(self) -> None:
        """Build the optimizer from the parameters that are trainable *now* (nothing is
        frozen at compile time); rebuild when ``requires_grad`` flags changed, keeping the
        state of parameters that stay."""
        apply_trainable(self.module)  # the trainable flags as they are now
        if self._fsdp is not None:  # the root's weights stay gathered after a forward:
            self._fsdp.reshard()  # its shards are the parameters the optimizer holds
        params = tuple(p for p in self.module.parameters() if p.requires_grad)
        self._nothing_to_train = not params
        if not params:  # Keras 3 warns and runs the epochs without updates
            warnings.warn(
                "The model does not have any trainable weights (every weight is frozen, e.g. "
                "by trainable=False): fit computes the loss and metrics only, as Keras does",
                stacklevel=3)
            return
        key = tuple(id(p) for p in params)
        if self.optimizer is not None and key == self._params_key:
            return
        old = self.optimizer
        if isinstance(self._optimizer_arg, torch.optim.Optimizer):
            opt = self._optimizer_arg
        elif self.optimizer_spec is not None:
            opt = self.optimizer_spec.build(self.module, self.device)
        elif callable(self._optimizer_arg):
            opt = self._optimizer_arg(params)
        else:
            raise TypeError(
                f"optimizer: expected a name, a brisk.optimizers object, a torch optimizer "
                f"or a callable params -> optimizer, got {self._optimizer_arg!r}"
            )
        if old is not None and old is not opt:
            for p, s in old.state.items():
                if any(p is q for q in params):
                    opt.state[p] = s
        for g in opt.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.optimizer, self._params_key = opt, key

    def _wrap_ddp(self) -> None:
        """Train through DDP (under torchrun); wrapped again when the trainable weights
        changed (DDP registers its gradient hooks on them once)."""
        if self._nothing_to_train:  # DDP refuses a model with nothing to train
            self._ddp = None
            return
        key = (self._params_key, self._fwd_raw)
        if self.sync_batchnorm:
            distributed.sync_batchnorm(self.module, self.device)
        if self._ddp is None or self._ddp_key != key:
            self._ddp, self._ddp_key = self.dist.wrap(self.module, self._fwd_raw), key
        self._fwd = self._ddp

    def _use_fsdp(self, verbose) -> bool:
        """Under torchrun: whether this run shards the model (``strategy``; 'auto' decides
        once, and says why on rank 0)."""
        if self._fsdp is not None or self.strategy == "fsdp":
            return True
        if self.strategy == "auto" and self.strategy_reason is None:
            choice, self.strategy_reason = distributed.choose_strategy(
                self.module, self.device, self.dist.world_size)
            self._auto_choice = choice
            if resolve_verbose(verbose) and self.dist.is_zero:
                print(self.strategy_reason)
        return self.strategy == "auto" and self._auto_choice == "fsdp"

    def _shard(self) -> None:
        """FSDP2 (``Distributed.shard``), once: the module's weights become shards in place,
        so the optimizer is built on them afterwards. ``ValueError`` for what cannot be
        sharded correctly, before anything trains."""
        if self._fsdp is not None:
            return
        if isinstance(self._optimizer_arg, torch.optim.Optimizer):
            raise ValueError("optimizer: strategy='fsdp' replaces the weights by shards, so a "
                             "torch optimizer built on the full weights would update nothing; "
                             "pass a name, a brisk.optimizers object or a callable "
                             "params -> optimizer")
        if getattr(self.optimizer_spec, "schedule_free", False):
            raise ValueError("optimizer: schedule-free optimizers are not supported with "
                             "strategy='fsdp'; use strategy='ddp' or another optimizer")
        if self.optimizer is not None and self.optimizer.state:
            raise ValueError("strategy='fsdp': the optimizer already holds state for the full "
                             "(unsharded) weights, e.g. from a .pt checkpoint; load a sharded "
                             "checkpoint (a folder written by save_checkpoint under FSDP)")
        self.optimizer, self._params_key = None, None
        apply_trainable(self.module)
        if self.sync_batchnorm:
            distributed.sync_batchnorm(self.module, self.device)
        self._fsdp = self.dist.shard(self.module, self._fwd_raw, self.precision.mode)
        self._ddp = None

    def _check_fsdp_optimizer(self) -> None:
        if self.optimizer is not None and (
                not isinstance(self.optimizer, torch.optim.Optimizer)
                or hasattr(self.optimizer, "optimizers")):
            raise ValueError(f"optimizer: strategy='fsdp' needs one torch.optim.Optimizer "
                             f"(its sharded checkpoints go through torch.distributed."
                             f"checkpoint), got {type(self.optimizer).__name__}")

    def _padding(self, loader, steps: int | None) -> int:
        """Under FSDP every forward is a collective (its blocks' all-gathers), and
        evaluation and prediction split rows unevenly: the forwards this rank must add after
        its batches so that every rank runs as many. Agreed before any forward (a
        collective in between would pair with another rank's all-gather); 0 otherwise."""
        if self._fsdp is None:
            return 0
        mine = len(loader) if steps is None else min(len(loader), steps)
        return self.dist.max(mine) - mine

    def _pad_forwards(self, n: int) -> None:
        """``n`` forwards of one sample through the sharded root (``_padding``)."""
        for _ in range(n):
            with self.precision.autocast():
                self._fsdp(self._pad_sample)

    def _set_optimizer_mode(self, train: bool) -> None:
        """Schedule-free optimizers keep different weights for training and evaluation."""
        fn = getattr(self.optimizer, "train" if train else "eval", None)
        if getattr(self.optimizer_spec, "schedule_free", False) and callable(fn):
            fn()
        self._optimizer_training = train

    @contextlib.contextmanager
    def _inference(self):
        """Eval mode for evaluate/predict, then back to the modes the model had: called from
        a callback mid-epoch, training resumes with Dropout and BatchNorm as they were."""
        modes = [(m, m.training) for m in self.module.modules()]
        opt_training = getattr(self, "_optimizer_training", False)
        self.module.eval()
        self._set_optimizer_mode(False)
        # never through DDP: its forward syncs buffers, a collective that ranks with
        # different numbers of evaluation batches would wait on forever
        fwd, self._fwd = self._fwd, (self._fsdp if self._fsdp is not None
                                     else getattr(self, "_fwd_raw", self._fwd))
        if self._fsdp is not None:  # rank 0's BatchNorm statistics, as DDP's forward syncs them
            self.dist.broadcast_buffers(self.module)
        try:
            yield
        finally:
            if self._fsdp is not None:
                self._fsdp.reshard()  # the root's weights back to their shards
            self._fwd = fwd
            for m, mode in modes:
                m.training = mode
            if opt_training:
                self._set_optimizer_mode(True)

    # ------------------------------------------------------------------ data
    def _loader(self, x, y, batch_size, shuffle, seed, transform=None, drop_last=False,
                sample_weight=None, part: str | None = None):
        """A loader of (x, y[, w]) batches. Under torchrun, ``part='train'`` gives this rank's
        shard of every epoch (padded by wrapping, so every rank runs as many batches) and
        ``part='rows'`` this rank's contiguous rows, none repeated (evaluation, prediction);
        ``_sharded(loader)`` then says whether the ranks' sums must be added up."""
        dist = self.dist if part is not None else None
        rows = False
        if isinstance(x, (torch.utils.data.DataLoader, DeviceLoader)):
            # the user's loader decides batching, order and normalisation; under torchrun
            # a DeviceLoader is sharded here, a DataLoader must bring a DistributedSampler
            if dist is not None and isinstance(x, DeviceLoader):
                if x.world_size == 1 and part == "train":
                    x = x.shard(dist.rank, dist.world_size)
                    x.seed = dist.agree(x.seed)  # one permutation for all the shards
            elif dist is not None and part == "train":
                dist.check_loader(x, "training")
            return x
        if dist is not None and part == "rows":  # contiguous rows, each once
            n = len(x)
            lo, hi = dist.part(n)
            if lo == hi:
                return _NoRows()  # more ranks than rows
            if isinstance(x, torch.utils.data.Dataset):
                x = torch.utils.data.Subset(x, range(lo, hi))
            else:
                x, y = x[lo:hi], None if y is None else y[lo:hi]
                sample_weight = None if sample_weight is None else sample_weight[lo:hi]
            rows = True
        if isinstance(x, torch.utils.data.Dataset):
            if dist is not None and part == "train":
                sampler = torch.utils.data.DistributedSampler(
                    x, dist.world_size, dist.rank, shuffle=shuffle, seed=seed)
                # fit calls sampler.set_epoch per pass (_epoch_batches)
                return torch.utils.data.DataLoader(
                    x, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                    pin_memory=self.device.type == "cuda")
            g = torch.Generator().manual_seed(seed)
            loader = torch.utils.data.DataLoader(
                x, batch_size=batch_size, shuffle=shuffle, generator=g, drop_last=drop_last,
                pin_memory=self.device.type == "cuda",
            )
            # fit reseeds the generator per pass from (seed, pass), as DeviceLoader orders
            # its epochs, so a resumed run replays the same order (_epoch_batches)
            loader._brisk_pass_seeded = True
            loader._brisk_rows = rows
            return loader
        uint8 = getattr(x, "dtype", None) in (np.uint8, torch.uint8)
        loader = DeviceLoader(
            x, y, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
            device=self.device, seed=seed, transform=transform, sample_weight=sample_weight,
            integer_inputs=self._int_inputs and transform is None,
            rescale=1 / 255 if self._unit_images and uint8 else None,
        )
        if dist is not None and part == "train":
            loader = loader.shard(dist.rank, dist.world_size)
        loader._brisk_rows = rows
        return loader

    def _sharded(self, loader) -> bool:
        """Under torchrun, whether ``loader`` gives each rank a part of the data (so sums
        over batches are added up over ranks) rather than all of it."""
        if self.dist is None:
            return False
        return bool(getattr(loader, "_brisk_rows", False)
                    or isinstance(loader, DeviceLoader) and loader.world_size > 1
                    or isinstance(getattr(loader, "sampler", None),
                                  torch.utils.data.DistributedSampler))

    def _batches(self, loader, augment=None, generator=None, weights: bool = False):
        """(x, y) batches on the device, whatever the source; ``augment`` (training only)
        is applied on the device to sources that do not apply it themselves. With
        ``weights``: (x, y, sample weights or None), from (x, y, w) batches as Keras's."""
        for batch in loader:
            wb = None
            if isinstance(batch, (tuple, list)):
                xb, yb = batch[0], (batch[1] if len(batch) > 1 else None)
                wb = batch[2] if len(batch) > 2 else None
            else:
                xb, yb = batch, None
            if xb.device != self.device:
                xb = xb.to(self.device, non_blocking=True)
                if yb is not None:
                    yb = yb.to(self.device, non_blocking=True)
            if wb is not None:
                wb = torch.as_tensor(wb, device=self.device).float().reshape(-1)
            xb = self._cast_batch(xb)
            if yb is not None and getattr(self.loss_fn, "target", None) == "sparse":
                yb = yb.long()
                if yb.dim() == 2 and yb.shape[1] == 1:
                    yb = yb.reshape(-1)  # (N, 1) -> (N,); (N, T) sequence labels stay
            if augment is not None:
                xb = augment(xb.float() if not xb.is_floating_point() else xb, generator)
            if weights:
                yield self._cast_input(xb), yb, wb
            else:
                yield self._cast_input(xb), yb

    def _cast_input(self, xb: torch.Tensor) -> torch.Tensor:
        """The precision policy's input cast (pure bf16 casts float inputs), except for
        token ids: bfloat16 holds integers exactly only up to 256, so a model with an
        embedding gets its ids (int64, or float32 from a DeviceLoader) unchanged."""
        return xb if self._int_inputs else self.precision.cast_input(xb)

    def _cast_batch(self, xb: torch.Tensor) -> torch.Tensor:
        """Inputs in float32 with their values, as Keras feeds them: float64 and integer
        features (a float64 tensor, an int or uint8 array) are cast, never rescaled (uint8
        images stay 0..255: scale them in the model with ``Rescaling(1/255)``, or with the
        loader's ``rescale``/``mean``/``std``); integer token ids stay integers for models
        with an embedding; for a model marked ``unit_images`` uint8 images become [0, 1]."""
        if self._unit_images and xb.dtype == torch.uint8:
            return xb.float().div_(255.0)
        if xb.dtype == torch.float32 or (self._int_inputs and not xb.is_floating_point()):
            return xb
        return xb.float()  # the precision policy then casts for pure bf16

    def _augment_transform(self, augment):
        """Augmentations work on NCHW; Keras-layout (NHWC) batches are viewed as NCHW."""
        if augment is None:
            return None
        if not callable(augment):
            raise TypeError(f"augment: expected a callable (x, generator) -> x, got {augment!r}")
        if getattr(self.module, "data_format", None) == "channels_last":
            return lambda x, g: augment(x.permute(0, 3, 1, 2), g).permute(0, 2, 3, 1)
        return augment

    # ------------------------------------------------------------------ stats
    def _reset_stats(self) -> None:
        self._stats = [torch.zeros((), device=self.device) for _ in range(1 + len(self.metrics))]
        self._counts = [0] * (1 + len(self.metrics))
        for m in self.metrics:
            if m.keras_protocol:  # Keras's Metric: its own state, on the device
                m._to(self.device)
                m.reset_state()

    def _accumulate(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        """Adds a batch's loss (times its size) and metric sums to the epoch's, on the
        device (no sync). Runs every step: no autograd context, no avoidable kernels."""
        n = out.shape[0]
        self._stats[0].add_(loss.detach(), alpha=n)  # in place: float32 whatever the loss's
        self._counts[0] += n
        if self.metrics:
            pred = out.detach()
            if pred.dtype != torch.float32:
                pred = pred.float()
            if self._post is not None and not self._argmax_only:
                pred = self._post(pred)
            for i, m in enumerate(self.metrics, 1):
                if m.keras_protocol:
                    m.update_state(y, pred)
                    self._counts[i] = 1
                    continue
                s, c = m.update(pred, y)
                self._stats[i].add_(s)
                self._counts[i] += int(c)

    def _read_stats(self, reduce: bool = False) -> dict[str, float]:
        """One host sync: the means of everything accumulated since the reset. With
        ``reduce`` (under torchrun, at an epoch's end) the sums and counts of every rank
        are added up first, so every rank gets the global means; the state of a Keras-style
        Metric is summed over ranks too (Keras's default ``aggregation='sum'``)."""
        if reduce:
            if self.dist is None:
                raise AssertionError("_read_stats(reduce=True) outside torchrun")
            return self._read_reduced_stats()
        if not self._counts or not self._counts[0]:
            return {}
        stats = [torch.as_tensor(m.result(), device=self.device, dtype=torch.float32).reshape(())
                 if m.keras_protocol else st
                 for m, st in zip(self.metrics, self._stats[1:], strict=True)]
        values = torch.stack([self._stats[0], *stats]).tolist()
        names = ["loss", *[m.name for m in self.metrics]]
        return {k: v / max(c, 1) for k, v, c in zip(names, values, self._counts, strict=False)}

    def _read_reduced_stats(self) -> dict[str, float]:
        """``_read_stats`` over every rank's sums: one all-reduce for the sums and counts,
        one per Keras-style metric state; the local sums are left as they were."""
        saved = self._stats, self._counts
        counts = torch.tensor(self._counts, dtype=torch.float64, device=self.device)
        total = self.dist.sum(torch.cat([torch.stack(self._stats).double(), counts]))
        k = len(self._stats)
        states = []
        for m in self.metrics:
            if m.keras_protocol:
                snap = m._snapshot()
                states.append((m, snap))
                m._restore([self.dist.sum(t) for t in snap])
        try:
            self._stats = [t.float() for t in total[:k]]
            # a Keras metric's count is 1 where any rank had batches (its result is a mean)
            self._counts = [int(c) if not (i and self.metrics[i - 1].keras_protocol)
                            else int(c > 0) for i, c in enumerate(total[k:].tolist())]
            return self._read_stats()
        finally:
            self._stats, self._counts = saved
            for m, snap in states:
                m._restore(snap)

    # ------------------------------------------------------------------ steps
    def _forward_loss(self, xb: torch.Tensor, yb: torch.Tensor, sample_weight=None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Model outputs (logits where the loss takes them) and the loss, in float32."""
        with self.precision.autocast():
            out = self._fwd(xb)
        if self._keras_loss:  # brisk.losses.Loss: Keras's (y_true, y_pred)
            return out, self.loss_fn(yb, out.float(), sample_weight)
        return out, self.loss_fn(out.float(), yb)  # torch's (input, target)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int | str = "auto",
        callbacks: list[Callback] | None = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool = True,
        initial_epoch: int = 0,
        augment: Any = None,
        schedule: Any = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
        class_weight: Mapping[int, float] | None = None,
        sample_weight: Any = None,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        on_nan: str | None = "stop",
    ) -> History:
        """Train for ``epochs`` epochs (Keras signature); returns a ``History``.

        ``validation_freq=k`` validates after every k-th epoch only (Keras).
        ``steps_per_epoch=n`` ends each epoch after n batches, Keras 3's way: one pass over
        the data spans epochs (the next epoch goes on where the last one stopped), and an
        epoch that reaches the end of the data stops there (with a warning if it ran fewer
        than n batches); the next epoch starts a new, reshuffled pass.
        ``validation_steps=n`` validates on the first n batches only (Keras).
        ``on_nan='stop'`` (default) ends training after an epoch whose loss is NaN or
        infinite, with a warning (read at the epoch end: no per-step cost); ModelCheckpoint
        never writes non-finite weights. ``on_nan='restore'`` goes back instead to the state
        at the end of the last good epoch (weights, optimizer, RNG, position, callbacks: an
        in-memory copy taken at each epoch end, which costs a copy of the training state
        per epoch), halves the learning rate and trains on; after ``NAN_RESTORES`` (3)
        restores the next non-finite epoch stops training, with the last good weights.
        ``on_nan=None`` trains on, as Keras does (its ``TerminateOnNaN`` callback stops at
        the batch).
        ``class_weight={class: weight}`` weighs each training sample's loss by its class
        (Keras; classes not named weigh 1; validation is unweighted). ``sample_weight``
        (N,) weighs each sample's loss (Keras: weighted sum over the batch size; split with
        ``validation_split``; ``validation_data`` may carry its own as a third item).
        ``augment`` is a batched on-device transform ``(x, generator) -> x`` (see
        ``brisk.augment``) applied to training batches only. ``schedule`` overrides the
        Trainer's. With the 'gd' optimizer each epoch is one full-batch step, computed in
        chunks of ``batch_size`` samples (default 4096).
        """
        if self.loss_fn is None:
            raise ValueError("loss: this Trainer has no loss; pass loss= to train")
        full_batch = bool(getattr(self.optimizer_spec, "full_batch", False))
        batch_size, epochs, steps_per_epoch, validation_steps = inputs.check_fit_arguments(
            batch_size=batch_size, epochs=epochs, shuffle=shuffle, initial_epoch=initial_epoch,
            validation_split=validation_split, validation_data=validation_data,
            validation_freq=validation_freq, steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps, class_weight=class_weight,
            sample_weight=sample_weight, full_batch=full_batch, accumulate=self.accumulate,
            on_nan=on_nan)
        verbose = resolve_verbose(verbose)
        if validation_batch_size is not None:
            validation_batch_size = inputs.check_positive_int(validation_batch_size,
                                                              "validation_batch_size")

        # Data: validate, split (Keras takes the *last* fraction, before shuffling).
        x, y = inputs.prepare(x, y, "x")
        sw = inputs.check_sample_weight(sample_weight, x, y, self._keras_loss)
        x, y, sw, val, val_sw = inputs.validation_set(x, y, sw, validation_split,
                                                      validation_data, self._keras_loss)

        sample = x[:2] if torch.is_tensor(x) else next(iter(self._batches(self._loader(x, None, 2, False, 0))))[0]
        self._setup_module(sample, batch_size)
        if verbose and (self.dist is None or self.dist.is_zero):
            self.precision.announce()
        if y is not None:
            y = inputs.check_targets(self.loss_fn, self._out_shape, y)
        elif torch.is_tensor(x) and getattr(self.loss_fn, "target", None) is not None:
            raise ValueError(f"y: {getattr(self.loss_fn, 'name', 'the loss')} needs targets; "
                             "got y=None (pass the labels, or a Dataset that yields (x, y))")
        if val is not None:
            self._check_sample_shape(val[0], "validation_data")
        if val is not None and val[1] is not None:
            val = (val[0], inputs.check_targets(self.loss_fn, self._out_shape, val[1], "validation_data labels"))
        if self.dist is not None and (self._use_fsdp(verbose) or self._pending_sharded):
            _check_fsdp_callbacks(callbacks if isinstance(callbacks, (list, tuple)) else [])
            if on_nan == "restore":
                raise ValueError("on_nan: 'restore' is not supported with strategy='fsdp' (it "
                                 "keeps a copy of the whole training state); use 'stop'")
            self._shard()
        self._ensure_optimizer()
        if self._fsdp is not None:
            self._check_fsdp_optimizer()
            self._fwd = self._fsdp
            self._apply_pending_sharded()
        elif self.dist is not None:
            self._wrap_ddp()
        self._cw_table = inputs.class_weight_table(class_weight, self._keras_loss, self._out_shape,
                                                   self.device)
        if self._cw_table is not None and torch.is_tensor(y):
            inputs.check_class_weight_labels(y, self._out_shape)
        # Resuming: fit continues the trainer's position (restored by load_checkpoint, or
        # where an earlier fit stopped) when initial_epoch is the epoch it points to: the
        # same shuffle seed, and the batches already trained in that epoch are skipped.
        start = self._continuation(initial_epoch, steps_per_epoch)
        if start is not None:
            seed = start["seed"]  # no draw: the restored RNG state stays as it was saved
        else:
            seed = self.seed if self.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
            start = {"epoch": initial_epoch, "batch": 0, "pass": initial_epoch, "drawn": 0}
        if self.dist is not None:
            seed = self.dist.agree(seed)  # rank 0's: one permutation, sharded over ranks
        augment = self._augment_transform(augment)
        # compiled: full batches only (static shapes), when a (rank's) pass has one
        rows = 0 if not torch.is_tensor(x) else (
            len(x) if self.dist is None else math.ceil(len(x) / self.dist.world_size))
        loader = self._loader(x, y, batch_size, shuffle, seed, augment,
                              drop_last=bool(self.compile) and rows >= batch_size,
                              sample_weight=sw, part="train")
        # Array inputs get augment inside their DeviceLoader; a user's Dataset, DataLoader or
        # DeviceLoader gets it here, per batch on the device, from a seeded generator.
        batch_augment = augment if augment is not None and not torch.is_tensor(x) else None
        val_loader = None
        self._validation_freq = validation_freq if val is not None else None  # for callbacks
        if val is not None:
            val_loader = self._loader(val[0], val[1], validation_batch_size or batch_size,  # Keras
                                      False, seed, sample_weight=val_sw,
                                      part="rows" if validation_steps is None else None)

        try:
            n_batches = len(loader)
        except TypeError as e:  # a DataLoader over an IterableDataset without __len__
            raise ValueError(
                "x: the loader has no length (an IterableDataset without __len__); fit needs "
                "the number of batches per epoch for schedules, accumulation and progress: "
                "give the dataset a __len__ or pass arrays, a map-style Dataset or a DeviceLoader"
            ) from e
        accumulate = n_batches if full_batch else self.accumulate
        epoch_batches = n_batches if steps_per_epoch is None else steps_per_epoch
        optimizer_steps = math.ceil(epoch_batches / accumulate)  # per epoch
        sizes = step_mod.batch_sizes(loader)
        schedule = self._build_schedule(schedule, epochs, optimizer_steps)
        # A Keras schedule object is a function of the optimizer's iterations, which go on
        # over fit calls (Keras); brisk's schedule= spans this fit's epochs, from epoch 0
        # (so fit(initial_epoch=k) continues it and a new fit starts it again).
        keras_schedule = getattr(self.optimizer_spec, "learning_rate_schedule", None) is not None

        self.history = History()
        # Keras's order: the user's callbacks, then History, then the progress bar, so the
        # history records what callbacks added to the logs (e.g. 'learning_rate'); a
        # BackupAndRestore comes after History, so its backup holds the epoch's history.
        user = CallbackList(callbacks).callbacks
        backups = [cb for cb in user if getattr(cb, "_after_history", False)]
        cbs = CallbackList([*[cb for cb in user if cb not in backups], self.history, *backups])
        if verbose and (self.dist is None or self.dist.is_zero):  # rank 0 prints
            cbs.append(ProgressBar(verbose))
        cbs.set_trainer(self)
        cbs.set_params({"epochs": epochs, "steps": epoch_batches, "verbose": verbose})
        self._callbacks = cbs.callbacks
        self.stop_training = self.stopped_for_nan = False
        # CPU threads: at most the usable cores, fewer while the steps stall (threads.py);
        # torch's count is restored when fit ends, however it ends (the finally below)
        self._thread_policy = ThreadPolicy(
            self.device, self.threads,
            verbose=bool(verbose) and (self.dist is None or self.dist.is_zero))
        self._thread_policy.start()
        observe = (self._thread_policy.observe
                   if self._thread_policy.enabled and self._thread_policy.adapt else None)
        try:
            loads = self._loads
            cbs.on_train_begin()
            if self._loads != loads:  # a callback (BackupAndRestore) restored a checkpoint:
                # continue where it was, whatever initial_epoch says (Keras sets the initial epoch)
                start = self._continuation(self._position["epoch"], steps_per_epoch, restored=True)
                seed = start["seed"] if start is not None else seed
                start = start or {"epoch": self._position["epoch"], "batch": 0,
                                  "pass": self._position["epoch"], "drawn": 0}
                if isinstance(loader, DeviceLoader) and torch.is_tensor(x):
                    loader.seed = seed  # fit's own loader: the backup's order and augmentation
                elif isinstance(getattr(loader, "sampler", None), torch.utils.data.DistributedSampler) \
                        and isinstance(x, torch.utils.data.Dataset):
                    loader.sampler.seed = seed  # the sampler fit made for a Dataset (torchrun)
            self._apply_callback_states()
            # under torchrun a stop asked mid-epoch (by a callback's batch hook) must reach every
            # rank at the same batch: one flag all-reduce per batch, only when a callback can ask
            batch_stops = self.dist is not None and any(_may_stop_mid_epoch(cb) for cb in cbs.callbacks)
            # per-batch hooks are dispatched only when a callback has one (most fits: none)
            batch_begin = any(_has_hook(cb, *_BATCH_BEGIN) for cb in cbs.callbacks)
            batch_end = any(_has_hook(cb, *_BATCH_END) for cb in cbs.callbacks)
            reduce = self._sharded(loader)
            logs: dict = {}
            # The pass over the data in progress: its batches, its index, batches drawn from it
            # (with steps_per_epoch one pass spans epochs); `skip` batches of the first epoch and
            # `replay` of its pass were trained before a resume.
            stream, passes, drawn = None, start["pass"], 0
            skip, replay = start["batch"], start["drawn"]
            if skip and (skip > epoch_batches or start.get("batches") not in (None, n_batches)):
                raise ValueError(f"initial_epoch: the checkpoint was taken after {skip} batches of "
                                 f"epoch {start['epoch'] + 1} of {start.get('batches')} batches, "
                                 f"but this fit's data gives {n_batches}; resume with the same "
                                 "data and batch_size")
            # only now: a refused resume leaves the loaded position as it was, for a retry
            self._position.update(seed=seed, batches=n_batches)
            restores, good = 0, self._good_state(start) if on_nan == "restore" else None
            epoch = start["epoch"] - 1
            while epoch + 1 < epochs:
                epoch += 1
                self.epoch = epoch
                self.module.train()
                frozen_batchnorm_eval(self.module)  # Keras: a frozen BatchNorm is in inference mode
                self._set_optimizer_mode(True)
                self._reset_stats()
                if skip:
                    self._restore_epoch_stats(start)  # the epoch's running loss and metrics
                cbs.on_epoch_begin(epoch)
                if self.dist is not None:  # a stop asked before the batches, on any rank
                    self.stop_training = self.dist.any(self.stop_training)
                step_in_epoch = skip // accumulate  # optimizer steps already taken in this epoch
                if stream is None:  # a new pass over the data (every epoch without steps_per_epoch)
                    stream = self._epoch_batches(loader, batch_augment, seed, passes)
                    passes, drawn = passes + 1, 0
                    if replay:  # the same order and augmentation draws: replay, discard
                        for _ in itertools.islice(stream, replay):
                            pass
                        drawn, replay = replay, 0
                pos = self._position
                # the running sums a checkpoint saved are for its own position: restored above
                # (or not needed); kept, a later continuation would take them for its epoch's
                pos.pop("stats", None)
                pos.update(epoch=epoch, batch=skip, drawn=drawn)
                pos["pass"] = passes - 1
                take = n_batches - drawn if steps_per_epoch is None else min(steps_per_epoch - skip,
                                                                           n_batches - drawn)
                i = skip - 1
                t_step = time.perf_counter()
                for i, (xb, yb, wb) in enumerate(itertools.islice(stream, take), start=skip):
                    if batch_begin:
                        cbs.on_train_batch_begin(i)
                    # Each micro-batch's mean loss is weighted by its share of the update's
                    # samples, so k accumulated batches equal one step on their union.
                    weight = 1.0 if accumulate == 1 else xb.shape[0] / step_mod.group_size(sizes, i, accumulate)
                    last = (i + 1) % accumulate == 0 or i + 1 == n_batches  # of its group
                    step_mod.train_batch(self, xb, yb, weight, wb, sync=last)
                    self._in_group = not last  # gradients wait for the group's optimizer step
                    if last:
                        step_mod.optimizer_step(self, schedule, self.global_step if keras_schedule
                                                else epoch * optimizer_steps + step_in_epoch)
                        step_in_epoch += 1
                    pos["batch"], pos["drawn"] = i + 1, drawn + i + 1 - skip
                    if batch_end:
                        cbs.on_train_batch_end(i, _LazyLogs(self, {}))
                    if batch_stops:
                        self.stop_training = self.dist.any(self.stop_training)
                    if observe is not None:  # CPU: the step's wall time (no device sync)
                        now = time.perf_counter()
                        observe(now - t_step)
                        t_step = now
                    if self.stop_training:
                        break
                ran = i + 1 - skip
                drawn += ran
                if drawn >= n_batches or ran < take or steps_per_epoch is None:
                    stream.close()
                    stream = None
                    if steps_per_epoch is not None and i + 1 < steps_per_epoch and not self.stop_training:
                        warnings.warn(  # Keras 3's warning, and its behaviour: the epoch ends here
                            f"steps_per_epoch: the data ran out after {i + 1} of {steps_per_epoch} "
                            f"batches in epoch {epoch + 1}; the next epoch starts a new pass over "
                            f"the {n_batches} batches", stacklevel=2)
                if ran == take:  # the epoch's batches are done: a checkpoint from here on
                    # resumes at the next epoch (a stop mid-epoch resumes inside this one)
                    pos.update(epoch=epoch + 1, batch=0, drawn=0 if stream is None else drawn)
                    pos["pass"] = passes if stream is None else passes - 1
                skip = 0
                logs = self._read_stats(reduce=reduce)
                if val_loader is not None and (epoch + 1) % validation_freq == 0:  # Keras's rule
                    val_logs = self._evaluate_loader(val_loader, cbs, validation_steps)
                    logs.update({f"val_{k}": v for k, v in val_logs.items()})
                if schedule is not None and not getattr(self.optimizer_spec, "learning_rate_schedule", None):
                    # brisk's schedule= logs the rate it set, as 'learning_rate' (a Keras schedule
                    # object given as the optimizer's learning_rate logs nothing, as in Keras)
                    if self.optimizer is not None:
                        logs["learning_rate"] = self.optimizer.param_groups[0]["lr"]
                if on_nan is not None and not math.isfinite(logs.get("loss", 0.0)):
                    if on_nan == "restore" and restores < NAN_RESTORES:
                        restores += 1
                        back = (f"the end of epoch {good[1]['epoch']}" if good[1]["epoch"]
                                else "the start of training")
                        warnings.warn(f"fit: the loss is {logs['loss']} in epoch {epoch + 1}; back "
                                      f"to {back} with half the learning rate (on_nan='restore', "
                                      f"{restores} of {NAN_RESTORES})", stacklevel=2)
                        start = self._restore_good(good)
                        good = self._good_state(start)  # a second restore halves it again
                        if stream is not None:
                            stream.close()
                        stream, passes, drawn = None, start["pass"], 0
                        skip, replay = start["batch"], start["drawn"]
                        epoch = start["epoch"] - 1
                        continue
                    warnings.warn(f"fit: the loss is {logs['loss']} in epoch {epoch + 1}; training "
                                  f"stops (on_nan={on_nan!r}; on_nan=None trains on, as Keras)",
                                  stacklevel=2)
                    if on_nan == "restore":  # it ends with the last good weights
                        self._restore_good(good, lr_factor=1.0)
                    self.stop_training = self.stopped_for_nan = True
                cbs.on_epoch_end(epoch, logs)
                if self.dist is not None:  # every rank stops after the same epoch
                    self.stop_training = self.dist.any(self.stop_training)
                if self.stop_training:
                    break
                if good is not None and ran == take:
                    good = self._good_state(self._continuation(epoch + 1, steps_per_epoch, True))
            self._set_optimizer_mode(False)
            refresh_pruned(self.module)  # pruned weights as trained, not as at the last forward
            self._cw_table = None  # class weights belong to this fit only
            if self._fsdp is not None:
                self._fsdp.reshard()  # the model's parameters are its shards between calls
            if self.dist is not None:
                self._fwd = self._fsdp if self._fsdp is not None else self._fwd_raw
                self.dist.broadcast_buffers(self.module)  # the same model on every rank
            cbs.on_train_end(dict(logs))  # Keras passes the last epoch's logs
            self._callbacks = []
            if self.dist is not None:
                self.dist.barrier()  # rank 0's files are complete when fit returns anywhere
            return self.history
        finally:  # torch's thread count as fit found it, however fit ends
            policy, self._thread_policy = self._thread_policy, None
            policy.stop()
            self.thread_changes = policy.changes

    def _continuation(self, initial_epoch: int, steps_per_epoch, restored: bool = False):
        """The position fit continues from, or None for a fresh start: the trainer's position
        when ``initial_epoch`` is its epoch and a fit has run (or a checkpoint was loaded).
        A position at the end of an epoch's batches (a checkpoint after its last batch)
        also continues as the start of the next epoch (Keras's habit: initial_epoch = the
        number of epochs done)."""
        p = dict(self._position)
        if p["seed"] is None:
            return None
        if p["batch"] and "stats" not in p:  # in-process: the epoch's sums so far
            p["stats"] = self._epoch_stats()
        if (steps_per_epoch is None and p["batches"] and p["batch"] >= p["batches"]
                and initial_epoch == p["epoch"] + 1):
            p.update(epoch=p["epoch"] + 1, batch=0, drawn=0, stats=None)
            p["pass"] = p["epoch"]
        return p if restored or initial_epoch == p["epoch"] else None

    def _good_state(self, start: dict) -> tuple[dict, dict]:
        """A copy of the whole training state and where fit goes on from it
        (``on_nan='restore'``)."""
        return copy.deepcopy(self.state_dict()), copy.deepcopy(start)

    def _restore_good(self, good: tuple[dict, dict], lr_factor: float = 0.5) -> dict:
        """Back to a ``_good_state``, the learning rate times ``lr_factor``; returns where
        fit goes on."""
        state, start = good
        self.load_state_dict(copy.deepcopy(state), source="on_nan='restore'")
        self._apply_callback_states()
        for g in self.optimizer.param_groups:
            g["lr"] *= lr_factor
            g["initial_lr"] *= lr_factor
        return copy.deepcopy(start)

    def _restore_epoch_stats(self, start: dict) -> None:
        """The running loss and metric sums of a resumed epoch, as they were saved."""
        stats = start.get("stats")
        if not stats:
            return
        for t, v in zip(self._stats, stats["sums"], strict=True):
            t.copy_(v)
        self._counts = [int(c) for c in stats["counts"]]
        for m, st in zip(self.metrics, stats["metric_states"], strict=True):
            if m.keras_protocol and st is not None:
                m._restore([v.to(self.device) for v in st])

    def _apply_callback_states(self) -> None:
        """Give each callback of this fit the state a loaded checkpoint holds for it (after
        ``on_train_begin``, which resets them, as Keras does)."""
        states, self._callback_states = self._callback_states, None
        if not states:
            return
        for key, cb in _stateful_callbacks(self._callbacks).items():
            if key in states:
                cb.load_state_dict(states[key])
                if hasattr(cb, "_restored"):
                    cb._restored = False  # applied after its on_train_begin: nothing to skip

    def _epoch_batches(self, loader, batch_augment, seed: int, index: int):
        """Pass ``index`` over ``loader``: (x, y, weights) batches on the device, reshuffled
        per pass (``set_epoch``), augmented with a generator seeded per pass."""
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(index)
        elif isinstance(getattr(loader, "sampler", None), torch.utils.data.DistributedSampler):
            loader.sampler.set_epoch(index)  # torch's convention: a new order per pass
        if getattr(loader, "_brisk_pass_seeded", False):
            loader.generator.manual_seed(_mix(seed, index))
        gen = None
        if batch_augment is not None:
            gen = torch.Generator(device=self.device).manual_seed(seed * 1000003 + index)
        return self._batches(loader, batch_augment, gen, weights=True)

    def _build_schedule(self, schedule, epochs: int, steps_per_epoch: int):
        spec = schedule if schedule is not None else self.schedule
        lr_schedule = getattr(self.optimizer_spec, "learning_rate_schedule", None)
        if lr_schedule is not None:  # Keras's learning_rate=<schedule object>
            if spec is not None:
                raise ValueError("schedule: the optimizer's learning_rate is already a schedule; "
                                 "give one or the other")
            base = self.optimizer_spec.learning_rate
            spec = lambda step: lr_schedule(step) / base  # noqa: E731 - a factor of the base
        if spec is None and not self.warmup:
            return None
        return schedules_mod.get_schedule(
            spec, total_steps=epochs * steps_per_epoch, steps_per_epoch=steps_per_epoch,
            warmup_steps=self.warmup,
        )

    # ------------------------------------------------------------------ evaluate/predict
    @torch.no_grad()
    def _evaluate_loader(self, loader, cbs: CallbackList | None = None,
                         steps: int | None = None) -> dict[str, float]:
        """Loss and metrics over ``loader`` (its first ``steps`` batches when given); the
        ``on_test_*`` hooks of ``cbs`` around it."""
        cbs = cbs if cbs is not None else CallbackList()
        saved = (self._stats, self._counts)
        states = [m._snapshot() if m.keras_protocol else None for m in self.metrics]
        self._reset_stats()
        cbs.on_test_begin()
        pad = self._padding(loader, steps)
        begin = any(_has_hook(cb, "on_test_batch_begin") for cb in cbs.callbacks)
        end = any(_has_hook(cb, "on_test_batch_end") for cb in cbs.callbacks)
        with self._inference():
            for i, (xb, yb, wb) in enumerate(itertools.islice(self._batches(loader, weights=True), steps)):
                if begin:
                    cbs.on_test_batch_begin(i)
                out, loss = self._fwd_loss(xb, yb, wb) if wb is not None else self._fwd_loss(xb, yb)
                self._accumulate(loss, out, yb)
                if end:
                    cbs.on_test_batch_end(i, _LazyLogs(self, {}))
            self._pad_forwards(pad)
        logs = self._read_stats(reduce=self._sharded(loader))
        self._stats, self._counts = saved
        for m, state in zip(self.metrics, states, strict=True):
            if state is not None:  # the training epoch's metric state, as it was
                m._restore(state)
        cbs.on_test_end(dict(logs))
        return logs

    def _ready_for_inference(self, x, batch_size: int, name: str = "x") -> None:
        if self._fwd is None or self._params_key is None and not getattr(self.module, "built", True):
            sample = x[:2] if torch.is_tensor(x) else next(iter(self._batches(self._loader(x, None, 2, False, 0))))[0]
            self._setup_module(sample, batch_size)
            self._apply_pending_sharded()
        else:
            self._check_sample_shape(x, name)

    def _check_sample_shape(self, x, name: str) -> None:
        """Arrays for a model with a declared per-sample input shape (a built Sequential)
        must have it: a clear error instead of a matmul error from inside the model. Plain
        torch modules may take several shapes (fully convolutional nets) and are not checked."""
        want = getattr(self.module, "sample_shape", None)
        if torch.is_tensor(x) and want is not None and tuple(x.shape[1:]) != tuple(want):
            raise ValueError(f"{name}: per-sample input shape {tuple(x.shape[1:])} does not fit "
                             f"the model, which expects {tuple(want)}")

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int | str = 0,
        return_dict: bool = False,
        callbacks: list[Callback] | None = None,
        sample_weight: Any = None,
        steps: int | None = None,
    ):
        """Loss and metrics on the given data (Keras): a scalar loss when there are no
        metrics, else ``[loss, *metrics]``; a dict with ``return_dict=True``. ``callbacks``
        get the ``on_test_*`` hooks; ``sample_weight`` weighs each sample's loss (Keras);
        ``steps=n`` evaluates the first n batches only. ``batch_size`` defaults to Keras's 32
        (it matters for losses with ``reduction='sum'`` and for stateful custom metrics)."""
        if self.loss_fn is None:
            raise ValueError("loss: this Trainer has no loss; pass loss= to evaluate")
        batch_size = inputs.check_positive_int(32 if batch_size is None else batch_size, "batch_size")
        if steps is not None:
            steps = inputs.check_positive_int(steps, "steps")
        verbose = resolve_verbose(verbose)
        x, y = inputs.prepare(x, y, "x")
        sw = inputs.check_sample_weight(sample_weight, x, y, self._keras_loss)
        self._ready_for_inference(x, batch_size)
        if y is not None:
            y = inputs.check_targets(self.loss_fn, self._out_shape, y)
        cbs = CallbackList(callbacks)
        cbs.set_trainer(self)
        # under torchrun each rank evaluates its rows and the sums are added up (with steps:
        # every rank evaluates the same first batches)
        loader = self._loader(x, y, batch_size, False, 0, sample_weight=sw,
                              part="rows" if steps is None else None)
        logs = self._evaluate_loader(loader, cbs, steps)
        if verbose and (self.dist is None or self.dist.is_zero):
            from brisk.engine.progress import format_logs

            print(format_logs(logs))
        if return_dict:
            return logs
        return logs["loss"] if not self.metrics else list(logs.values())

    @torch.no_grad()
    def predict(self, x: Any, batch_size: int | None = None, verbose: int | str = 0,
                steps: int | None = None, callbacks: list[Callback] | None = None) -> np.ndarray:
        """Model outputs for ``x`` as a numpy array (probabilities when the model ends in
        softmax/sigmoid). ``callbacks`` get the ``on_predict_*`` hooks (batch-end logs:
        ``{'outputs': batch outputs}``, as in Keras). ``steps=n`` predicts the first n
        batches only (Keras's argument order: ``batch_size, verbose, steps, callbacks``)."""
        batch_size = inputs.check_positive_int(32 if batch_size is None else batch_size, "batch_size")
        if steps is not None:
            steps = inputs.check_positive_int(steps, "steps")
        resolve_verbose(verbose)  # predict shows no progress bar; a bad value is still an error
        x, _ = inputs.prepare(x, None, "x")
        self._ready_for_inference(x, batch_size)
        cbs = CallbackList(callbacks)
        cbs.set_trainer(self)
        fn = self.module if self._fsdp is None else (lambda xb: self._fsdp(xb, full=True))
        outs = []
        cbs.on_predict_begin()
        # under torchrun each rank predicts its rows, then every rank gets all of them in
        # order (with steps: every rank predicts the same first batches)
        loader = self._loader(x, None, batch_size, False, 0, part="rows" if steps is None else None)
        pad = self._padding(loader, steps)
        with self._inference():
            batches = self._batches(loader)
            for i, (xb, _) in enumerate(itertools.islice(batches, steps)):
                cbs.on_predict_batch_begin(i)
                with self.precision.autocast():
                    outs.append(fn(xb).float())
                cbs.on_predict_batch_end(i, {"outputs": outs[-1]})
            self._pad_forwards(pad)
        cbs.on_predict_end()
        out = (torch.cat(outs) if outs else
               torch.zeros((0, *self._out_shape), device=self.device))  # a rank with no rows
        if getattr(loader, "_brisk_rows", False):
            out = self.dist.gather_rows(out, len(x))
        return out.cpu().numpy()

    def lr_find(self, x: Any, y: Any = None, **kwargs: Any):
        """Learning-rate range test (Smith 2015) on this trainer; the trainer is restored
        exactly afterwards. Returns an ``LRFindResult`` (``.suggestion``, ``.lrs``,
        ``.losses``); ``plot='lr.png'`` also writes loss against rate. See
        ``brisk.engine.lr_find.lr_find`` for the options.

        Example::

            result = trainer.lr_find(x_train, y_train, plot="lr_find.png")
            print(result.suggestion)
        """
        from brisk.engine.lr_find import lr_find

        return lr_find(self, x, y, **kwargs)

    # ------------------------------------------------------------------ state
    def _epoch_stats(self) -> dict | None:
        """The running sums of the epoch in progress (plain tensors and ints)."""
        if self._stats is None:
            return None
        return {"sums": [t.detach().clone() for t in self._stats],
                "counts": list(self._counts),
                "metric_states": [m._snapshot() if m.keras_protocol else None
                                  for m in self.metrics]}

    def state_dict(self) -> dict:
        """Everything the next step depends on, as one plain payload (tensors, numbers,
        strings, lists, dicts: ``torch.load(weights_only=True)`` reads it).

        Keys: ``model``, ``optimizer`` (with the schedule's base rates), ``precision``
        (GradScaler), ``global_step`` (optimizer steps: the schedule's position), ``epoch``
        (the epoch in progress), ``sample_shape``; ``position``: where training resumes
        (``epoch``, ``batch`` = batches already trained in it, the data ``pass`` and the
        batches ``drawn`` from it, the shuffle ``seed`` fit used, ``batches`` per epoch,
        and mid-epoch the running loss/metric sums); ``rng``: torch CPU (and CUDA), numpy
        and python ``random`` states; ``callbacks``: the state of the stateful callbacks
        of the fit in progress (EarlyStopping, ReduceLROnPlateau, ModelCheckpoint,
        BackupAndRestore, History), by class name (``EarlyStopping_1`` for a second one);
        ``grads``: gradients accumulated in an unfinished ``accumulate`` group. The
        augmentation generators need no state: they are reseeded per pass from the seed
        and replayed up to the position.
        """
        state = {
            "model": self.module.state_dict(),
            "global_step": self.global_step,
            "epoch": self.epoch,
            "precision": self.precision.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(),
                    "python": _python_rng_state()},
            "position": {k: v for k, v in self._position.items() if k != "stats"},
        }
        if self._position["batch"] and self._stats is not None:
            state["position"]["stats"] = self._epoch_stats()
        shape = getattr(self.module, "sample_shape", None)
        if shape is not None:  # lets a fresh, unbuilt Sequential be built by load_checkpoint
            state["sample_shape"] = list(shape)
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
            state["optimizer_params"] = self._optimizer_param_names()
        if self.device.type == "cuda":
            state["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        callbacks = {k: cb.state_dict() for k, cb in _stateful_callbacks(self._callbacks).items()}
        if callbacks:
            state["callbacks"] = callbacks
        grads = {n: p.grad.detach().clone() for n, p in self.module.named_parameters()
                 if p.grad is not None}
        if grads:  # mid accumulation group: the next optimizer step needs them
            state["grads"] = grads
        return state

    def _check_state(self, state: Any, source: str) -> None:
        """Everything ``load_state_dict`` needs, checked before anything is modified: a
        checkpoint that does not fit raises ``ValueError`` and leaves the trainer as it was."""
        if not isinstance(state, dict):
            raise ValueError(f"{source}: expected a checkpoint dict, got {type(state).__name__}")
        missing = [k for k in ("model", "global_step", "epoch", "precision", "rng") if k not in state]
        if missing:
            raise ValueError(f"{source}: not a complete brisk checkpoint, missing {missing}")
        theirs, ours = state["model"], self.module.state_dict()
        if not isinstance(theirs, dict):
            raise ValueError(f"{source}: 'model' is not a state dict")
        for k in _pruned_in(theirs, ours):  # load_state_dict attaches these masks first
            ours[k + "_orig"] = ours[k + "_mask"] = ours.pop(k)
        extra, lacking = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
        if extra or lacking:
            raise ValueError(f"{source}: the weights do not fit this model (missing keys "
                             f"{lacking[:5]}, unexpected keys {extra[:5]})")
        train = state.get("train_model")  # a schedule-free optimizer's training weights
        if train is not None and not (isinstance(train, dict) and train.keys() == theirs.keys()
                                      and all(torch.is_tensor(v) and torch.is_tensor(theirs[k])
                                              and v.shape == theirs[k].shape
                                              for k, v in train.items())):
            raise ValueError(f"{source}: 'train_model' does not match 'model'")
        for k, v in theirs.items():
            if not torch.is_tensor(v) or v.shape != ours[k].shape:
                got = tuple(v.shape) if torch.is_tensor(v) else type(v).__name__
                raise ValueError(f"{source}: weight {k!r} is {got}, the model's is "
                                 f"{tuple(ours[k].shape)}")
        for k in ("global_step", "epoch"):
            if isinstance(state[k], bool) or not isinstance(state[k], int) or state[k] < 0:
                raise ValueError(f"{source}: {k} must be an int >= 0, got {state[k]!r}")
        if not isinstance(state["rng"], dict) or not torch.is_tensor(state["rng"].get("torch")):
            raise ValueError(f"{source}: 'rng' must hold the torch generator state")
        if "optimizer" in state and not (isinstance(state["optimizer"], dict)
                                         and {"state", "param_groups"} <= set(state["optimizer"])):
            raise ValueError(f"{source}: 'optimizer' is not an optimizer state dict")
        # Keys added for mid-epoch resume: optional (older checkpoints load), checked if there
        rng = state["rng"]
        np_state = rng.get("numpy")
        if np_state is not None and not (isinstance(np_state, (list, tuple)) and len(np_state) == 5
                                         and torch.is_tensor(np_state[1])
                                         and np_state[1].numel() == 624):
            raise ValueError(f"{source}: rng 'numpy' is not a numpy generator state")
        py_state = rng.get("python")
        if py_state is not None and not (isinstance(py_state, (list, tuple)) and len(py_state) == 3
                                         and torch.is_tensor(py_state[1])
                                         and py_state[1].numel() == 625):
            raise ValueError(f"{source}: rng 'python' is not a python random state")
        pos = state.get("position")
        if pos is not None:
            if not isinstance(pos, dict):
                raise ValueError(f"{source}: 'position' must be a dict")
            for k in ("epoch", "batch", "pass", "drawn"):
                v = pos.get(k)
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"{source}: position[{k!r}] must be an int >= 0, got {v!r}")
            for k in ("seed", "batches"):
                v = pos.get(k)
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                    raise ValueError(f"{source}: position[{k!r}] must be an int >= 0 or None, "
                                     f"got {v!r}")
            stats = pos.get("stats")
            if stats is not None and not (
                    isinstance(stats, dict) and len(stats.get("sums", ())) == 1 + len(self.metrics)
                    and len(stats.get("counts", ())) == 1 + len(self.metrics)
                    and len(stats.get("metric_states", ())) == len(self.metrics)):
                raise ValueError(f"{source}: position['stats'] does not fit this trainer's "
                                 f"{len(self.metrics)} metrics")
        if "callbacks" in state and not (isinstance(state["callbacks"], dict)
                                         and all(isinstance(v, dict) for v in state["callbacks"].values())):
            raise ValueError(f"{source}: 'callbacks' must map callback names to state dicts")
        grads = state.get("grads")
        if grads is not None:
            params = dict(self.module.named_parameters())
            if not isinstance(grads, dict) or any(
                    k not in params or not torch.is_tensor(v) or v.shape != params[k].shape
                    for k, v in grads.items()):
                raise ValueError(f"{source}: 'grads' do not fit this model's parameters")

    def _optimizer_param_names(self) -> list[list[str]]:
        """The names of the optimizer's parameters, group by group, in its order (a pruned
        ``<k>_orig`` named ``<k>``)."""
        names = {id(p): n[:-5] if n.endswith("_orig") else n
                 for n, p in self.module.named_parameters()}
        return [[names.get(id(p), "?") for p in g["params"]] for g in self.optimizer.param_groups]

    def _matched_optimizer_state(self, state: dict, source: str) -> dict:
        """The saved optimizer state, its parameters matched to this optimizer's by name
        (pruning, or a rebuilt optimizer, can list them in another order), every per-weight
        tensor checked against its weight's shape: torch's ``load_state_dict`` maps by
        position and checks no shape, and a fused kernel given a wrong-sized buffer writes
        outside it. ``ValueError`` naming ``source`` when they do not match."""
        saved = state["optimizer"]
        groups, per_param = saved["param_groups"], saved["state"]
        ours = self.optimizer.param_groups
        if not isinstance(groups, list) or not isinstance(per_param, dict) or not all(
                isinstance(v, dict) for v in per_param.values()):
            raise ValueError(f"{source}: 'optimizer' is not an optimizer state dict")
        ids = [list(g.get("params", ())) if isinstance(g, dict) else None for g in groups]
        if len(groups) != len(ours) or any(i is None or len(i) != len(g["params"])
                                           for i, g in zip(ids, ours, strict=True)):
            raise ValueError(f"{source}: the optimizer state has groups of "
                             f"{[len(i or ()) for i in ids]} weights, this optimizer "
                             f"{[len(g['params']) for g in ours]}")
        names = state.get("optimizer_params")
        if names is not None and not (
                isinstance(names, list) and len(names) == len(ids)
                and all(isinstance(gn, list) and len(gn) == len(gi)
                        and all(isinstance(n, str) for n in gn)
                        for gn, gi in zip(names, ids, strict=True))):
            raise ValueError(f"{source}: 'optimizer_params' does not list the optimizer's "
                             "weights group by group")
        if names is not None:  # match by name: saved id of each of our parameters
            by_name = {n: i for gn, gi in zip(names, ids, strict=True)
                       for n, i in zip(gn, gi, strict=True)}
            want = self._optimizer_param_names()
            missing = [n for gn in want for n in gn if n not in by_name]
            if missing or len(by_name) != sum(map(len, want)):
                raise ValueError(f"{source}: the optimizer state is for other weights "
                                 f"(not in it: {missing[:3]})")
            ids = [[by_name[n] for n in gn] for gn in want]
            groups = [{**g, "params": i} for g, i in zip(groups, ids, strict=True)]
        for g, gi in zip(ours, ids, strict=True):
            for p, i in zip(g["params"], gi, strict=True):
                for key, v in (per_param.get(i) or {}).items():
                    if torch.is_tensor(v) and v.dim() > 0 and not _fits(v.shape, p.shape):
                        raise ValueError(f"{source}: optimizer state {key!r} is "
                                         f"{tuple(v.shape)} for a weight of {tuple(p.shape)}")
        return {"state": per_param, "param_groups": groups}

    def load_state_dict(self, state: dict, source: str = "state") -> None:
        """Restore ``state_dict()``'s payload (checked first: ``ValueError`` before anything
        changes). An unbuilt ``Sequential`` is built from the input shape the checkpoint
        records."""
        m = self.module
        shape = state.get("sample_shape") if isinstance(state, dict) else None
        if shape is not None and hasattr(m, "build") and not getattr(m, "built", True):
            m.build(tuple(int(d) for d in shape))  # a fresh model: built as when it was saved
        self._check_state(state, source)
        for k in _pruned_in(state["model"], self.module.state_dict()):
            # saved while pruning (GradualPruning): the same masks, whatever they hold
            path, _, name = k.rpartition(".")
            tprune.identity(self.module.get_submodule(path), name)
        opt_state = None
        if "optimizer" in state:
            self._ensure_optimizer()
            opt_state = self._matched_optimizer_state(state, source)
        self.module.load_state_dict(state.get("train_model", state["model"]))
        if opt_state is not None:
            self.optimizer.load_state_dict(opt_state)
        self._load_rest(state)
        refresh_pruned(self.module)
        params = dict(self.module.named_parameters())
        for n, p in params.items():
            g = (state.get("grads") or {}).get(n)
            p.grad = None if g is None else g.to(p.device, p.dtype).clone()
        self._loads += 1

    def _load_rest(self, state: dict) -> None:
        """Everything of ``state_dict()`` but the weights, the optimizer and the gradients:
        the step, the epoch, the precision and RNG states, the position, the callbacks'."""
        self.global_step = int(state["global_step"])
        self.epoch = int(state["epoch"])
        self.precision.load_state_dict(state["precision"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        if state["rng"].get("numpy") is not None:
            name, keys, at, has_gauss, gauss = state["rng"]["numpy"]
            np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), at, has_gauss, gauss))
        if state["rng"].get("python") is not None:
            version, internal, gauss_next = state["rng"]["python"]
            random.setstate((version, tuple(internal.tolist()), gauss_next))
        pos = state.get("position")
        if pos is not None:
            self._position = {k: pos.get(k) for k in ("epoch", "batch", "pass", "drawn", "seed",
                                                      "batches")}
            if pos.get("stats") is not None:
                self._position["stats"] = pos["stats"]
        else:  # an older checkpoint: a fresh start at its epoch (no seed saved)
            self._position = {"epoch": self.epoch, "batch": 0, "pass": self.epoch, "drawn": 0,
                              "seed": None, "batches": None}
        self._callback_states = state.get("callbacks")

    def save_checkpoint(self, path) -> None:
        """Atomically write ``state_dict()``; loads with ``weights_only=True``. A
        schedule-free optimizer's ``model`` weights are its evaluation weights; mid-training
        (a callback) its training weights are saved too, as ``train_model``, and the run
        goes on with them untouched: switching to evaluation and back is not exact in
        floating point, and a resumed run must continue from the very same weights."""
        if self._fsdp is not None:
            self._save_sharded(path)
            return
        if not (getattr(self, "_optimizer_training", False)
                and getattr(self.optimizer_spec, "schedule_free", False)):
            self._set_optimizer_mode(False)
            save_checkpoint(path, self.state_dict())
            return
        state = self.state_dict()  # the optimizer in its training mode
        live = {k: v.clone() for k, v in self.module.state_dict().items()}
        self.optimizer.eval()
        try:
            state["model"] = {k: v.clone() for k, v in self.module.state_dict().items()}
        finally:  # back to the training weights bit for bit, not through optimizer.train()
            self.module.load_state_dict(live)
            for g in self.optimizer.param_groups:
                g["train_mode"] = True
        state["train_model"] = live
        save_checkpoint(path, state)

    def _save_sharded(self, path) -> None:
        """``save_checkpoint`` under FSDP: a folder (``checkpoint.save_sharded``) written by
        every rank."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

        self._fsdp.reshard()  # the parameters the optimizer holds (the root's are gathered
        # after a forward until resharded)
        # FSDP2 accumulates a group's gradients unsharded, outside p.grad, until its last
        # micro-batch: the trainer's own flag says whether it is inside one
        if self._in_group or any(p.grad is not None for p in self.module.parameters()):
            raise ValueError("save_checkpoint: under strategy='fsdp' checkpoints are taken "
                             "between optimizer steps, not inside an accumulation group")
        if self.optimizer is not None:
            model_sd, optim_sd = get_state_dict(self._fsdp, self.optimizer)
            payload = {"model": model_sd, "optimizer": optim_sd}
        else:
            payload = {"model": get_model_state_dict(self._fsdp)}
        rest = {k: v for k, v in self.state_dict().items()
                if k not in ("model", "optimizer", "optimizer_params", "grads")}
        save_sharded(path, payload, rest)

    def _load_sharded(self, path, weights_only: bool = False) -> None:
        """``load_checkpoint`` of a sharded folder: now when the model is sharded, else when
        it is (the next ``fit``, ``evaluate`` or ``predict``)."""
        check_sharded(path)
        if self.dist is None or self.strategy == "ddp":
            raise ValueError(f"checkpoint {os.fspath(path)!r}: a sharded checkpoint (a folder) "
                             "loads under torchrun into a Trainer(strategy='fsdp' or 'auto'); "
                             "in one process, load the full weights that save() exports")
        def same_precision(rest: dict) -> None:
            mode = (rest.get("precision") or {}).get("mode")
            self.precision.adopt(mode)
            if mode != self.precision.mode:
                raise ValueError(f"checkpoint {os.fspath(path)!r}: written with precision "
                                 f"{mode!r}, this run uses {self.precision.mode!r}")

        if self._fsdp is None:  # the step, epoch, position and RNG now; the weights and the
            # optimizer state once the model is sharded (fit, evaluate or predict)
            rest = load_checkpoint(os.path.join(path, SHARDED_TRAINER_FILE),
                                   map_location=self.device)
            same_precision(rest)
            self._load_rest(rest)
            self._pending_sharded = os.fspath(path)
            self._loads += 1
            return
        from torch.distributed.checkpoint.state_dict import (
            get_model_state_dict,
            get_state_dict,
            set_model_state_dict,
            set_state_dict,
        )

        self._fsdp.reshard()
        if self.optimizer is not None:
            model_sd, optim_sd = get_state_dict(self._fsdp, self.optimizer)
            payload = {"model": model_sd, "optimizer": optim_sd}
        else:
            payload = {"model": get_model_state_dict(self._fsdp)}
        rest = load_sharded(path, payload, map_location=self.device, check=same_precision)
        if self.optimizer is not None:
            set_state_dict(self._fsdp, self.optimizer, model_state_dict=payload["model"],
                           optim_state_dict=payload["optimizer"])
        else:
            set_model_state_dict(self._fsdp, payload["model"])
        for p in self.module.parameters():
            p.grad = None
        if not weights_only:
            self._load_rest(rest)
            self._loads += 1

    def _apply_pending_sharded(self) -> None:
        """A sharded checkpoint loaded before the model was sharded: shard, then load it."""
        path, self._pending_sharded = self._pending_sharded, None
        if path is None:
            return
        if self._fsdp is None:
            self._shard()
            self._ensure_optimizer()
            self._check_fsdp_optimizer()
            self._fwd = self._fsdp
        self._load_sharded(path, weights_only=True)  # the rest was loaded with the path

    def load_checkpoint(self, path) -> None:
        """Restore a ``save_checkpoint`` file; ``ValueError`` naming the file when it is not
        one or does not fit this model, before anything is modified. Under FSDP a
        checkpoint is a folder (``torch.distributed.checkpoint``), loaded on every rank."""
        if os.path.isdir(path):
            self._load_sharded(path)
            return
        self.load_state_dict(load_checkpoint(path, map_location=self.device),
                             source=f"checkpoint {os.fspath(path)!r}")

    def save(self, path) -> None:
        """Save the module's weights (safetensors). Compiled or not, keys carry no
        ``_orig_mod.`` prefix, because the original module is what is saved."""
        from brisk.engine.checkpoint import save_safetensors

        self._set_optimizer_mode(False)
        tensors = plain_state_dict(self.module)  # masks folded in; FSDP: gathered on rank 0
        if distributed.is_sharded(self.module) and not distributed.is_rank_zero():
            return
        save_safetensors(path, tensors)  # checksummed
