"""``brisk compress``: prune -> fine-tune -> fold -> quantize a saved model, stage by stage.

``run_pipeline`` takes a model saved by ``brisk.Sequential.save`` (``brisk train --out DIR``
writes ``DIR/model.safetensors``) and a dataset, and produces five stages, each measured the
same way (non-zero parameters, file size, test accuracy, CPU latency at batch 1 and 256):

1. ``dense``: the model as loaded; file = its fp32 weights, dense (``torch.save`` of the
   state_dict, the reference of ``size_report``).
2. ``pruned``: global magnitude pruning on the gradual schedule of Zhu & Gupta (2017)
   (``GradualPruning``) while training with ``brisk.Trainer``, up to ``target_sparsity``;
   file = the lossless sparse file (``save(bits=None)``: float32 nonzeros plus
   Huffman-coded relative indices).
3. ``fine-tuned``: more epochs with the masks fixed (Han et al. 2015); same file format.
4. ``folded``: ``fold`` (BatchNorm into Conv/Linear, Dropout gone) for inference; same
   file format.
5. ``quantized``: Deep Compression's trained quantization and int8 inference. The
   fine-tuned weights are shared (k-means codebooks of ``bits`` bits for Linear and
   ``conv_bits`` for conv weights, ``share_weights``), the codebooks fine-tuned, and
   written as the compressed file (``save``: sparse + shared + Huffman) -- that file is the
   stage's file. The model is then reloaded *from the file*, folded and quantized to int8
   (``quantize(mode='static')``, calibrated on training images): accuracy and latency are
   those of that int8 model, the thing one would deploy.

``max_drop`` (accuracy points, e.g. 0.5) guards the sparsity schedule: a slice of the
training set (``val_split``) is held out, and at the end of every pruning epoch the
accuracy on it is compared with the dense model's; when it is more than ``max_drop``
points lower, pruning stops and the last state within ``max_drop`` (masks included) is
restored. Fine-tuning that lowers the held-out accuracy is undone too, so the pruned and
fine-tuned stages stay within ``max_drop`` of the dense model on the held-out slice. (The
held-out slice, not the test set, decides: the test accuracy stays an honest estimate. The
dense model may have trained on that slice -- ``brisk train`` uses the whole training set --
which makes its reference accuracy optimistic and the guard conservative.)

Latency: every stage's model on the CPU, in eval mode, with the current
``torch.get_num_threads()``; the stages' timing blocks alternate so that load from other
processes hits them alike; each figure is the minimum over blocks of the median call time.

Example::

    from brisk.compress.pipeline import run_pipeline, format_table
    stages = run_pipeline("runs/cnn/model.safetensors", dataset="mnist", target_sparsity=0.9,
                          max_drop=0.5, epochs=4, out="runs/cnn-compressed")
    print(format_table(stages))
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from brisk.compress.export import load, save, share_weights
from brisk.compress.fold import fold
from brisk.compress.prune import (
    GradualPruning,
    copy_model,
    make_permanent,
    sparsity_report,
)
from brisk.compress.quantize import _quiet, quantize
from brisk.engine.callbacks import Callback

__all__ = ["DATASETS", "StageResult", "format_table", "load_compressed", "run_pipeline"]

DATASETS = ("mnist", "fashion-mnist", "digits")
STAGES = ("dense", "pruned", "fine-tuned", "folded", "quantized")


@dataclasses.dataclass
class StageResult:
    """One row of the pipeline's report. Accuracies are fractions in [0, 1]; ``val_accuracy``
    is on the held-out slice (None without ``max_drop``); ``weights_kept`` is the fraction
    of Linear/Conv weights that are non-zero (Han et al.'s "weights kept")."""

    stage: str
    params: int
    nonzero: int
    weights_kept: float
    file_bytes: int
    file_format: str
    test_accuracy: float
    val_accuracy: float | None
    latency_ms_b1: float
    latency_ms_b256: float
    seconds: float
    extra: dict = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------ inputs
def _check_number(name: str, v: Any, lo: float, hi: float, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(v, bool) or not isinstance(v, kinds) or not (lo <= v <= hi):
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name}: expected {what} in [{lo}, {hi}], got {v!r}")


def _load_model(model: Any) -> nn.Module:
    if isinstance(model, nn.Module):
        return copy_model(model)  # the caller's model is left untouched
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model_path: expected a path to a model saved by brisk.Sequential.save or an "
            f"nn.Module, got {type(model).__name__}"
        )
    from brisk.api.sequential import load_model

    path = Path(model)
    if path.is_dir():  # `brisk train --out DIR` writes DIR/model.safetensors
        path = path / "model.safetensors"
    if not path.is_file():
        raise ValueError(
            f"model_path: no saved model at {os.fspath(path)!r}; expected a file written by "
            "brisk.Sequential.save or a folder written by `brisk train --out`"
        )
    return load_model(path, compile=False)


def _load_data(dataset: Any, data_dir: str | os.PathLike | None):
    if isinstance(dataset, str):
        from brisk import datasets

        if dataset == "digits":
            return datasets.load_digits()
        if dataset == "mnist":
            return datasets.load_mnist(data_dir=data_dir)
        if dataset == "fashion-mnist":
            return datasets.load_fashion_mnist(data_dir=data_dir)
        raise ValueError(f"dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
    try:
        (xtr, ytr), (xte, yte) = dataset
    except (TypeError, ValueError):
        raise TypeError(
            "dataset: expected a name or ((x_train, y_train), (x_test, y_test)) arrays"
        ) from None
    return (xtr, ytr), (xte, yte)


def _as_inputs(x: Any, model: nn.Module, name: str) -> torch.Tensor:
    """Float32 model inputs with the values of ``x`` (uint8 images stay 0..255, as ``fit``
    feeds them; a model trained on them scales them itself, e.g. with ``Rescaling``),
    reshaped to the model's per-sample input shape when it has one."""
    t = torch.as_tensor(np.asarray(x)) if not torch.is_tensor(x) else x
    t = t.float()
    shape = getattr(model, "sample_shape", None)
    if shape is not None and tuple(t.shape[1:]) != tuple(shape):
        if math.prod(t.shape[1:]) != math.prod(shape):
            raise ValueError(
                f"{name}: per-sample shape {tuple(t.shape[1:])} does not fit the model's "
                f"input shape {tuple(shape)}"
            )
        t = t.reshape(len(t), *shape)  # e.g. (N, 28, 28) -> (N, 28, 28, 1) for a convnet
    return t.contiguous()


# --------------------------------------------------------------- measuring
@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    was = model.training
    model.eval()
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    dev = dev if dev.type != "meta" else torch.device("cpu")
    right = 0
    for i in range(0, len(x), batch):
        out = model(x[i : i + batch].to(dev))
        right += int((out.argmax(1).cpu() == y[i : i + batch]).sum())
    model.train(was)
    return right / len(x)


def _nonzero(model: nn.Module) -> tuple[int, int]:
    """(parameters, non-zero parameters), int8 packed weights included (dequantized)."""
    total = nz = 0
    seen: set[int] = set()  # shared parameters count once (ids of live tensors only)
    for m in model.modules():
        tensors = [p for p in m.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in tensors)
        wfn = getattr(m, "weight", None)
        if callable(wfn) and not isinstance(wfn, torch.Tensor):  # quantized Linear/Conv
            w = wfn()
            tensors.append(w.dequantize() if w.is_quantized else w)
            b = m.bias() if callable(getattr(m, "bias", None)) else None
            if b is not None:
                tensors.append(b)
        for t in tensors:
            total += t.numel()
            nz += int((t.detach() != 0).sum())
    return total, nz


def _dense_bytes(model: nn.Module) -> int:
    state = {
        k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
        for k, v in model.state_dict().items()
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getbuffer().nbytes


@torch.no_grad()
def latency_blocks(models: Sequence[nn.Module], x: torch.Tensor, reps: int = 20,
                   blocks: int = 7, progress: str | None = None) -> list[list[float]]:
    """Per model, the median call time (ms) of each of ``blocks`` timing blocks of ``reps``
    calls; the models' blocks alternate, so load from other processes hits them alike (the
    min over blocks is the least disturbed estimate). ``progress``: a label for a progress
    bar over the blocks (on stderr), or None for none.

    Example::

        fp32_ms, int8_ms = (min(b) for b in latency_blocks([model, q], x[:256]))
    """
    for m in models:
        m.eval()
        for _ in range(3):
            m(x)
    meds: list[list[float]] = [[] for _ in models]
    from tqdm.auto import tqdm

    for _ in tqdm(range(blocks), desc=progress, unit="block", disable=progress is None,
                  leave=False):
        for k, m in enumerate(models):
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                m(x)
                ts.append(time.perf_counter() - t0)
            meds[k].append(sorted(ts)[len(ts) // 2] * 1e3)
    return meds


# ---------------------------------------------------------------- training
class _GuardedPruning(Callback):
    """``GradualPruning`` with an accuracy guard. Before each increase of the sparsity
    (i.e. after the steps of recovery training at the current one) and at the end, the
    held-out accuracy is compared with the dense model's: within ``max_drop`` points, the
    state is kept as the fallback and pruning goes on; further, the fallback (masks
    included) is restored and training stops."""

    def __init__(self, pruner: GradualPruning, x, y, reference: float, max_drop: float, log):
        self.pruner, self.x, self.y = pruner, x, y
        self.reference, self.max_drop, self.log = reference, max_drop, log
        self.fallback: dict | None = None
        self.accepted = (0.0, reference)  # (sparsity, held-out accuracy) of the fallback
        self.stopped_at: float | None = None

    def set_trainer(self, trainer: Any) -> None:
        super().set_trainer(trainer)
        self.pruner.set_trainer(trainer)

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        self.pruner.set_params(params)

    def _within(self) -> bool:
        """Check the current state; keep it as the fallback or restore the fallback."""
        if self.stopped_at is not None:
            return False
        acc = _accuracy(self.model, self.x, self.y)
        drop = 100.0 * (self.reference - acc)
        s = self.pruner.sparsity
        # 1e-9: accuracies are counts over the slice; a drop of exactly max_drop (3 of 600
        # samples: 0.5 points) computes as 0.5000000000000004 and must pass ("may lose")
        if drop <= self.max_drop + 1e-9:
            self.fallback = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.accepted = (s, acc)
            how = (f"{drop:.2f} points below" if drop > 1e-9 else
                   "the same as" if drop > -1e-9 else f"{-drop:.2f} points above")
            self.log(f"  sparsity {s:.1%}: held-out accuracy {acc:.2%} ({how} dense)")
            return True
        self.stopped_at = s
        self.log(
            f"  sparsity {s:.1%}: held-out accuracy {acc:.2%}, {drop:.2f} points below dense "
            f"> max_drop {self.max_drop}; back to sparsity {self.accepted[0]:.1%}"
        )
        self.model.load_state_dict(self.fallback)
        self.trainer.stop_training = True
        return False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.pruner.on_train_begin(logs)  # installs the masks (sparsity 0 at step 0)
        self.fallback = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = int(self.trainer.global_step)
        if self.pruner._target(step) > self.pruner.sparsity and self.stopped_at is None:
            if self.pruner.sparsity == 0.0 or self._within():
                self.pruner.on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.pruner.on_epoch_end(epoch, logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.stopped_at is None:
            self._within()  # the final sparsity, after its training


def _trainer(model: nn.Module, lr: float, device, seed: int):
    from brisk.engine.trainer import Trainer

    return Trainer(
        model,
        optimizer=lambda params: torch.optim.Adam(params, lr=lr),
        loss="sparse_categorical_crossentropy",
        device=device,
        schedule="cosine",
        seed=seed,
    )


# -------------------------------------------------------------------- files
def _rebuild(config: dict) -> nn.Module:
    """A fresh brisk.Sequential from ``get_config()`` output (as ``brisk.load_model`` does)."""
    from brisk.api import layers as L
    from brisk.api.sequential import Sequential

    model = Sequential(name=config.get("name"))
    for spec in config["layers"]:
        cfg = dict(spec["config"])
        if "input_shape" in cfg:
            cfg["input_shape"] = tuple(cfg["input_shape"])
        model.add(L.LAYERS[spec["class"]](**cfg))
    if config.get("input_shape"):
        model.build(tuple(config["input_shape"]))
    return model


def load_compressed(path: str | os.PathLike) -> nn.Module:
    """The ``brisk.Sequential`` stored in a compressed file written by ``run_pipeline``
    (its architecture travels in the file's metadata), in eval mode.

    Example::

        model = load_compressed("runs/cnn-compressed/model.brisk")
        probs = model(x_test[:8])
    """
    from brisk.compress.export import _read

    header, _ = _read(path)
    config = header.get("metadata", {}).get("brisk")
    if config is None:
        raise ValueError(
            f"path: {os.fspath(path)!r} holds no brisk.Sequential architecture; "
            "use brisk.compress.load(path, model=...) with a model of the same architecture"
        )
    return load(path, model=_rebuild(config)).eval()


# ------------------------------------------------------------------- report
def format_table(stages: Sequence[StageResult]) -> str:
    """A markdown table of the stages (what ``brisk compress`` prints).

    Example::

        print(format_table(run_pipeline("model.safetensors", dataset="digits", epochs=2)))
    """
    base = stages[0] if stages else None
    lines = [
        "| stage | non-zero params | weights kept | file | vs dense | test acc | "
        "held-out acc | ms @1 | ms @256 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stages:
        ratio = base.file_bytes / s.file_bytes if base and s.file_bytes else float("nan")
        val = "-" if s.val_accuracy is None else f"{100 * s.val_accuracy:.2f}%"
        lines.append(
            f"| {s.stage} | {s.nonzero:,} / {s.params:,} | {100 * s.weights_kept:.2f}% | "
            f"{s.file_bytes:,} B | {ratio:.1f}x | {100 * s.test_accuracy:.2f}% | {val} | "
            f"{s.latency_ms_b1:.3f} | {s.latency_ms_b256:.2f} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------- pipeline
def run_pipeline(
    model_path: str | os.PathLike | nn.Module,
    *,
    dataset: str | tuple = "mnist",
    data_dir: str | os.PathLike | None = None,
    target_sparsity: float = 0.9,
    max_drop: float | None = None,
    epochs: int = 10,
    finetune_epochs: int | None = None,
    share_epochs: int = 1,
    bits: int = 5,
    conv_bits: int = 8,
    lr: float = 1e-3,
    batch_size: int = 128,
    val_split: float = 0.1,
    calibration: int = 2048,
    timing_reps: int = 20,
    timing_blocks: int = 5,
    out: str | os.PathLike | None = None,
    device: str | None = None,
    seed: int = 0,
    log: Callable[[str], Any] | None = print,
) -> list[StageResult]:
    """Compress a saved model: prune -> fine-tune -> fold -> quantize (see the module doc).

    Args:
        model_path: a file written by ``brisk.Sequential.save`` (or the folder
            ``brisk train --out`` wrote), or an ``nn.Module`` (copied, not changed).
        dataset: 'mnist', 'fashion-mnist', 'digits', or ``((x_train, y_train), (x_test,
            y_test))`` arrays. uint8 images are fed unscaled, as ``fit`` feeds them (the
            models of ``brisk train`` start with ``Rescaling(1/255)``).
        target_sparsity: fraction of Linear/Conv weights set to zero (global magnitude).
        max_drop: accuracy points (0.5 = half a percentage point) the pruned model may lose
            on the held-out slice before the schedule stops; None: prune to the target.
        epochs: pruning epochs (the sparsity ramps up over the first 2/3 of them).
        finetune_epochs: epochs with fixed masks after pruning (default ``epochs // 2``, >= 1).
        share_epochs: codebook fine-tuning epochs after weight sharing (0 to skip).
        bits / conv_bits: codebook bits of Linear / conv weights in the compressed file.
        lr: Adam learning rate while pruning; fine-tuning uses ``lr / 2`` and the codebooks
            ``lr / 10`` (each phase decays it with a cosine schedule).
        val_split: fraction of the training set held out when ``max_drop`` is given.
        calibration: training images used to calibrate the int8 activation ranges.
        timing_reps / timing_blocks: calls per timing block (batch 1 gets 10x) / blocks.
        out: folder to write ``model.brisk`` (the compressed file), ``compress.json`` and
            ``compress.md``; None writes nothing but a temporary file.
        device: training device (None: cuda, then mps, then cpu); inference is timed on CPU.
        log: called with progress lines (None: silent).

    Returns the five ``StageResult`` rows, in order.

    Example::

        stages = run_pipeline("runs/mlp/model.safetensors", dataset="mnist",
                              target_sparsity=0.92, epochs=6, out="runs/mlp-compressed")
    """
    _check_number("target_sparsity", target_sparsity, 0.0, 1.0)
    if target_sparsity >= 1.0:
        raise ValueError("target_sparsity: expected a fraction below 1 (1 removes every weight)")
    if max_drop is not None:
        _check_number("max_drop", max_drop, 0.0, 100.0)
        _check_number("val_split", val_split, 1e-6, 0.5)
    _check_number("epochs", epochs, 1, 10**6, integer=True)
    if finetune_epochs is None:
        finetune_epochs = max(1, epochs // 2)
    _check_number("finetune_epochs", finetune_epochs, 0, 10**6, integer=True)
    _check_number("share_epochs", share_epochs, 0, 10**6, integer=True)
    _check_number("bits", bits, 1, 8, integer=True)
    _check_number("conv_bits", conv_bits, 1, 8, integer=True)
    _check_number("lr", lr, 1e-12, 10.0)
    _check_number("batch_size", batch_size, 1, 10**7, integer=True)
    _check_number("calibration", calibration, 1, 10**9, integer=True)
    _check_number("timing_reps", timing_reps, 1, 10**6, integer=True)
    _check_number("timing_blocks", timing_blocks, 1, 10**4, integer=True)
    if isinstance(dataset, str) and dataset not in DATASETS:  # before anything is loaded
        raise ValueError(f"dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
    say = log if log is not None else (lambda s: None)
    # with a log: a progress bar per training stage (fit's, on stderr); quiet: none
    fit_verbose = 1 if log is not None else 0

    model = _load_model(model_path)
    (xtr, ytr), (xte, yte) = _load_data(dataset, data_dir)
    x_train, x_test = _as_inputs(xtr, model, "x_train"), _as_inputs(xte, model, "x_test")
    y_train = torch.as_tensor(np.asarray(ytr)).long()
    y_test = torch.as_tensor(np.asarray(yte)).long()
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError("dataset: x and y have different numbers of samples")
    x_val = y_val = None
    if max_drop is not None:  # a seeded held-out slice decides where pruning stops
        perm = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))
        n_val = max(1, round(val_split * len(x_train)))
        x_val, y_val = x_train[perm[:n_val]], y_train[perm[:n_val]]
        x_train, y_train = x_train[perm[n_val:]], y_train[perm[n_val:]]
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)

    tmp = tempfile.TemporaryDirectory()
    files = Path(tmp.name)

    def sparse_file(m: nn.Module, name: str) -> int:
        return save(m, files / name, bits=None)["bytes"]

    def val_acc(m: nn.Module) -> float | None:
        return None if x_val is None else _accuracy(m, x_val, y_val)

    def kept(m: nn.Module) -> float:
        return 1.0 - sparsity_report(m)["total"]["sparsity"]

    results: list[StageResult] = []
    runtime: list[nn.Module] = []  # each stage's CPU inference model, timed at the end

    def record(stage, m_eval, m_cpu, file_bytes, fmt, t0, val=None, **extra):
        params, nz = _nonzero(m_cpu)
        r = StageResult(
            stage=stage,
            params=params,
            nonzero=nz,
            weights_kept=kept(m_eval),
            file_bytes=int(file_bytes),
            file_format=fmt,
            test_accuracy=_accuracy(m_cpu, x_test, y_test),
            val_accuracy=val,
            latency_ms_b1=float("nan"),
            latency_ms_b256=float("nan"),
            seconds=time.time() - t0,
            extra=extra,
        )
        results.append(r)
        runtime.append(m_cpu.eval())
        held = "" if val is None else f", held-out {100 * val:.2f}%"
        say(
            f"[{stage}] {nz:,} / {params:,} non-zero ({100 * r.weights_kept:.2f}% of weights "
            f"kept), file {r.file_bytes:,} B ({fmt}), test accuracy "
            f"{100 * r.test_accuracy:.2f}%{held}  ({r.seconds:.0f} s)"
        )
        return r

    def plain(m: nn.Module) -> nn.Module:
        return make_permanent(copy_model(m)).cpu().eval()

    try:
        # 1. dense
        t0 = time.time()
        model.eval()
        dense_val = val_acc(model)
        record("dense", model, plain(model), _dense_bytes(model), "fp32 dense", t0, dense_val)

        # 2. gradual pruning while training, guarded by max_drop
        t0 = time.time()
        steps = epochs * math.ceil(len(x_train) / batch_size)
        end = max(1, (2 * steps) // 3)  # ramp over 2/3 of the phase, then train at s_f
        pruner = GradualPruning(
            target_sparsity, begin_step=0, end_step=end, frequency=max(1, end // 30)
        )
        guard = None
        if max_drop is not None:
            guard = _GuardedPruning(pruner, x_val, y_val, dense_val, max_drop, say)
        callbacks: list[Callback] = [guard or pruner]
        say(f"pruning to {target_sparsity:.1%} over {epochs} epochs (Zhu & Gupta schedule)")
        _trainer(model, lr, device, seed).fit(
            x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=fit_verbose, callbacks=callbacks
        )
        model.eval()
        pruned_val = val_acc(model)
        info = {"target_sparsity": target_sparsity}
        if guard is not None:
            info.update(stopped_at_sparsity=guard.stopped_at, dense_val_accuracy=dense_val)
        record(
            "pruned", model, plain(model), sparse_file(model, "pruned.brisk"),
            "sparse fp32", t0, pruned_val, **info,
        )  # fmt: skip

        # 3. fine-tune with the masks fixed
        t0 = time.time()
        ft_val = pruned_val
        if finetune_epochs:
            before = {k: v.detach().clone() for k, v in model.state_dict().items()}
            _trainer(model, lr / 2, device, seed + 1).fit(
                x_train, y_train, batch_size=batch_size, epochs=finetune_epochs, verbose=fit_verbose
            )
            model.eval()
            ft_val = val_acc(model)
            if ft_val is not None and ft_val < pruned_val:
                say(f"  fine-tuning lowered held-out accuracy ({100 * ft_val:.2f}%); undone")
                model.load_state_dict(before)
                ft_val = pruned_val
        record(
            "fine-tuned", model, plain(model), sparse_file(model, "finetuned.brisk"),
            "sparse fp32", t0, ft_val, epochs=finetune_epochs,
        )  # fmt: skip

        # 4. fold for inference
        t0 = time.time()
        folded = fold(plain(model))
        record(
            "folded", folded, folded, sparse_file(folded, "folded.brisk"), "sparse fp32", t0,
            val_acc(folded),
        )  # fmt: skip

        # 5. trained quantization -> compressed file -> reload -> fold -> int8
        t0 = time.time()
        shared = share_weights(make_permanent(copy_model(model)), bits=bits, conv_bits=conv_bits)
        if share_epochs:
            _trainer(shared, lr / 10, device, seed + 2).fit(
                x_train, y_train, batch_size=batch_size, epochs=share_epochs, verbose=fit_verbose
            )
        make_permanent(shared).cpu().eval()
        meta: dict[str, Any] = {"stage": "quantized", "bits": bits, "conv_bits": conv_bits}
        try:
            meta["brisk"] = shared.get_config()
        except (AttributeError, TypeError):  # not a brisk.Sequential of brisk layers
            pass
        path = (out_dir if out_dir is not None else files) / "model.brisk"
        info = save(shared, path, bits=bits, conv_bits=conv_bits, metadata=meta)
        from_file = load(path, model=plain(shared))  # same architecture, weights from file
        file_acc = _accuracy(from_file, x_test, y_test)
        calib = x_train[torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))]
        int8 = quantize(from_file, mode="static", calibration_data=calib[:calibration])
        record(
            "quantized", from_file, int8, info["bytes"], f"{bits}/{conv_bits}-bit shared, "
            "Huffman; int8 run", t0, val_acc(int8), file_accuracy=file_acc,
            int8_layers=sum(  # int8 Linear/Conv modules (packed weights) in the run model
                ".quantized." in type(m).__module__
                and callable(getattr(m, "weight", None))
                for m in int8.modules()
            ), file=str(path),
        )  # fmt: skip

        # latency of every stage's CPU model, side by side
        say("timing CPU inference at batch 1 and 256 ...")
        with _quiet():
            for bs in (1, 256):
                xb = x_test[:bs]
                if len(xb) < bs:  # small test sets: repeat samples to fill the batch
                    xb = xb.repeat(math.ceil(bs / len(xb)), *[1] * (xb.dim() - 1))[:bs]
                reps = timing_reps * (10 if bs == 1 else 1)
                for r, ms in zip(
                    results, [min(b) for b in latency_blocks(
                        runtime, xb.contiguous(), reps, timing_blocks,
                        progress=None if log is None else f"timing batch {bs}")],
                    strict=True
                ):
                    setattr(r, f"latency_ms_b{bs}", ms)
    finally:
        tmp.cleanup()

    say(format_table(results))
    if out_dir is not None:
        report = {
            "model": str(model_path) if not isinstance(model_path, nn.Module) else None,
            "dataset": dataset if isinstance(dataset, str) else "arrays",
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "settings": {
                "target_sparsity": target_sparsity,
                "max_drop": max_drop,
                "epochs": epochs,
                "finetune_epochs": finetune_epochs,
                "share_epochs": share_epochs,
                "bits": bits,
                "conv_bits": conv_bits,
                "lr": lr,
                "batch_size": batch_size,
                "seed": seed,
            },
            "stages": [r.as_dict() for r in results],
        }
        (out_dir / "compress.json").write_text(json.dumps(report, indent=2))
        (out_dir / "compress.md").write_text(format_table(results) + "\n")
        say(f"wrote {out_dir / 'model.brisk'}, compress.json, compress.md")
    return results
