"""int8 quantization for CPU inference: dynamic, static (calibrated) and QAT.

Which PyTorch path, and why. Measured here (torch 2.13.0+cpu, torchao 0.18.0, 2-core Xeon
with AVX512-VNNI, ``torch.set_num_threads(2)``) on LeNet-300-100 and LeNet-5 trained on
MNIST (fp32 test error 1.60% / 0.64%): batch-256 latency (median of 20 calls, min over 7
blocks, a quiet machine) and test error; calibration on 2048 training images::

    LeNet-300-100                     ms     error     LeNet-5        ms      error
    fp32                              0.640  1.60%                    19.0    0.64%
    torch.ao FX static (x86)          0.245  1.59%                     4.82   0.67%
    torch.ao dynamic (Linear)         0.319  1.63%                    18.7    0.65%
    torchao Int8DynActInt8Weight      1.46   1.61%                    20.0    0.65%
    torchao Int8WeightOnly            0.757  1.60%                    19.3    0.64%
    torchao PT2E x86 + torch.compile  0.861  1.61%                    10.6    0.65%

* torchao 0.18 (``quantize_`` with ``Int8DynamicActivationInt8WeightConfig`` /
  ``Int8WeightOnlyConfig``) installs without touching torch, but in eager mode on CPU it is
  slower than fp32 here (its int8 kernels are GPU/inductor oriented); its PT2E flow with
  ``X86InductorQuantizer`` needs ``torch.compile`` (a C++ toolchain, 5-20 s of compile
  per input shape) and was still 2-3.5x slower than FX graph mode.
* ``torch.ao.quantization`` FX graph mode with the ``x86`` qconfig mapping (fbgemm/oneDNN
  VNNI kernels) gives the real int8 speed-up on this CPU, so that is what ``quantize``
  uses for ``mode='static'`` and ``'qat'``; ``mode='dynamic'`` uses the eager
  ``quantize_dynamic`` (int8 Linear weights, activations quantized on the fly).
  ``torch.ao.quantization`` prints a deprecation notice in 2.13 (it points to torchao);
  these calls silence it, and ``quantize`` should move to torchao once its CPU path is
  as fast. FX static: 2.6x / 3.9x faster at batch 256, error within 0.03 points.
  Pruned models and batch-1 latency: ``benchmarks/compression.py``.

The speed-up depends on the CPU's int8 instructions. On a 2-core AMD EPYC (Zen 3, AVX2,
no AVX512/VNNI; torch reports capability AVX2), the same FX static path on the models
pruned to 8% and folded, fp32 vs int8 in alternating blocks, batch 256, shared machine at
load ~1 (``benchmarks/compression.py --cache ... [--threads 1] [--backend onednn]``)::

    engine    threads   LeNet-300-100          LeNet-5
    x86       2         1.38 -> 0.84 ms 1.63x  27.5 -> 22.6 ms 1.22x  (error +0.03 / +0.03)
    x86       1         1.79 -> 1.03 ms 1.74x  44.0 -> 36.1 ms 1.22x
    onednn    2         1.19 -> 1.07 ms 1.12x  21.6 -> 10.4 ms 2.07x  (error +0.21 / -0.01)
    onednn    1         2.20 -> 1.77 ms 1.25x  48.0 -> 20.5 ms 2.35x
    qnnpack   2         ~0.36x                 ~0.52x   (one-off timings, not alternated)

Without VNNI, AVX2 int8 multiply-adds (``vpmaddubsw``) peak at ~2x the fp32 FMA rate,
which leaves little headroom; the ``x86`` engine then runs conv through fbgemm, which oneDNN beats by ~1.8-2.2x on LeNet-5's convolutions, while for Linear-only
models fbgemm stays the faster and more accurate choice. ``quantize`` keeps ``x86`` as the
default (the measured best on VNNI CPUs, and for Linear models here); pass
``backend='onednn'`` for conv nets on AVX2-only CPUs. At batch 1 the int8 model is
*slower* than fp32 for LeNet-300-100 on this CPU (0.07 -> 0.26 ms: the quantize /
dequantize and per-call overheads exceed the tiny matmuls).

``quantize`` sets ``torch.backends.quantized.engine`` to the chosen backend: packed int8
weights are specific to it, so the process keeps using that engine.

Example::

    import torch, torch.nn as nn
    from brisk.compress import quantize, model_size_bytes
    model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10)).eval()
    q = quantize(model, mode="static", calibration_data=torch.randn(512, 784))
    model_size_bytes(q) < model_size_bytes(model)   # True, about 4x smaller
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from brisk.compress.prune import _choice, copy_model, is_pruned, make_permanent

__all__ = ["convert_qat", "model_size_bytes", "quantize"]

MODES = ("dynamic", "static", "qat")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch.ao's deprecation notices (one per call site, several per call)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*deprecated.*")
        warnings.filterwarnings("ignore", message=".*deprecated.*quantiz.*")
        warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated.*")
        yield


def _backend(backend: str | None) -> str:
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if backend is None:
        backend = next((e for e in ("x86", "fbgemm", "qnnpack") if e in engines), None)
        if backend is None:
            raise RuntimeError("quantize: this torch build has no quantized CPU engine")
    elif backend not in engines:
        raise ValueError(f"backend: expected one of {engines} (this torch build), got {backend!r}")
    torch.backends.quantized.engine = backend
    return backend


def _batches(data: Any, batch_size: int = 256) -> Iterator[torch.Tensor]:
    """Input batches from a tensor/array (split along dim 0) or an iterable of batches
    (tensors, or tuples/lists/dicts whose first item / 'x' is the input)."""
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        if data.dim() == 0 or data.shape[0] == 0:
            raise ValueError(
                f"calibration_data: expected a non-empty batch tensor, got shape {tuple(data.shape)}"
            )
        yield from data.split(batch_size)
        return
    if not isinstance(data, Iterable):
        raise TypeError(
            f"calibration_data: expected a tensor, an array or an iterable of batches, got {type(data).__name__}"
        )
    for b in data:
        if isinstance(b, dict):
            b = b.get("x", next(iter(b.values())))
        elif isinstance(b, (tuple, list)):
            b = b[0]
        if isinstance(b, np.ndarray):
            b = torch.from_numpy(b)
        if not isinstance(b, torch.Tensor):
            raise TypeError(
                f"calibration_data: expected batches of tensors, got {type(b).__name__}"
            )
        yield b


def _plain_copy(model: nn.Module) -> nn.Module:
    model = copy_model(model)
    if is_pruned(model) or any(
        torch.nn.utils.parametrize.is_parametrized(m) for m in model.modules()
    ):
        make_permanent(model)  # on the copy: zeros/shared values become plain weights
    return model


def quantize(
    model: nn.Module,
    mode: str = "dynamic",
    calibration_data: Any = None,
    backend: str | None = None,
    example_inputs: torch.Tensor | tuple | None = None,
) -> nn.Module:
    """Return an int8 copy of ``model`` for CPU inference (the input is left untouched).

    mode:
      * ``'dynamic'``: int8 weights for every ``nn.Linear``, activations quantized per
        batch at run time (``torch.ao.quantization.quantize_dynamic``); no data needed.
      * ``'static'``: the model is folded (``brisk.compress.fold``), then Linear and Conv
        get int8 weights *and* int8 activations, with scales calibrated by running
        ``calibration_data`` (a tensor split into batches of 256, or an iterable of batches
        or ``(x, y)`` pairs) through it (FX graph mode, x86/fbgemm qconfig mapping). The
        model must be fx-traceable and in eval mode.
      * ``'qat'``: returns a model with fake-quantization to fine-tune (train mode);
        finish with ``convert_qat``. ``example_inputs`` (or ``calibration_data``) gives a
        sample batch for tracing.

    backend: a ``torch.backends.quantized`` engine (default ``x86``, else ``fbgemm``/``qnnpack``).
    Pruned or weight-shared models are made permanent on the copy first.

    Example::

        q = quantize(model.eval(), "static", calibration_data=x_train[:1024])
        q(x_test)              # float in, float out; int8 inside
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    mode = _choice("mode", mode, MODES)
    backend = _backend(backend)
    with _quiet():
        from torch.ao.quantization import (
            get_default_qat_qconfig_mapping,
            get_default_qconfig_mapping,
            quantize_dynamic,
        )
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx

        if mode == "dynamic":
            m = _plain_copy(model).eval()
            return quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)

        if mode == "static":
            if calibration_data is None:
                raise ValueError(
                    "calibration_data: mode='static' needs input batches to calibrate the int8 "
                    "activation ranges (a tensor or an iterable of batches); or use mode='dynamic'"
                )
            if any(m.training for m in model.modules()):
                raise ValueError("quantize: model is in training mode; call model.eval() first")
            from brisk.compress.fold import fold

            m = fold(_plain_copy(model))
            batches = _batches(calibration_data)
            first = next(batches, None)
            if first is None:
                raise ValueError("calibration_data: no batches")
            example = example_inputs if example_inputs is not None else first
            example = example if isinstance(example, tuple) else (example,)
            prepared = prepare_fx(m, get_default_qconfig_mapping(backend), example)
            with torch.no_grad():
                prepared(first)
                for b in batches:
                    prepared(b)
            return convert_fx(prepared)

        # qat
        example = example_inputs
        if example is None and calibration_data is not None:
            example = next(_batches(calibration_data), None)
        if example is None:
            raise ValueError("example_inputs: mode='qat' needs a sample input batch for tracing")
        example = example if isinstance(example, tuple) else (example,)
        m = _plain_copy(model).train()
        return prepare_qat_fx(m, get_default_qat_qconfig_mapping(backend), example)


def convert_qat(model: nn.Module) -> nn.Module:
    """Finish quantization-aware training: fake-quantized model -> int8 model (eval mode).

    Example::

        qat = quantize(model, "qat", example_inputs=x[:32])
        Trainer(qat, optimizer="sgd").fit(x, y, epochs=1)
        q = convert_qat(qat)
    """
    if not isinstance(model, torch.fx.GraphModule):
        raise TypeError(
            f"model: expected the model returned by quantize(..., mode='qat'), got {type(model).__name__}"
        )
    with _quiet():
        from torch.ao.quantization.quantize_fx import convert_fx

        return convert_fx(copy.deepcopy(model).eval())


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` (int8 packed weights included).

    Example::

        model_size_bytes(nn.Linear(100, 10))   # 5861: 1010 float32 (4040 B) + zip overhead
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    buf = io.BytesIO()
    with _quiet():
        torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes
