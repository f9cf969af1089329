"""int8 quantization for CPU inference: dynamic, static (calibrated) and QAT.

Which path, and why (``method``). Static int8 runs through ``torch.ao.quantization``'s FX
graph mode (``method='fx'``, the default: int8 modules on fbgemm/oneDNN kernels) or
torchao's PT2E flow (``method='pt2e'``: ``torch.export`` with a dynamic batch dim ->
``prepare_pt2e(X86InductorQuantizer)`` -> calibrate -> ``convert_pt2e`` ->
``torch.compile``). ``torch.ao.quantization`` is deprecated upstream (it prints a notice in
2.13 and points to torchao; these calls silence it), but FX was the faster path on both
AVX512-VNNI CPUs measured below (batch 256 on both, batch 1 on CPU-3), with the same test
error within 0.01 points; so it stays the default
and PT2E is the option to switch to when FX goes. ``mode='dynamic'`` uses the eager
``quantize_dynamic`` (int8 Linear weights, activations quantized on the fly).

CPU-3, 2026-12-01: AMD EPYC Zen 4 (AVX512F, AVX512-BF16, AVX512-VNNI, no AMX), 2 cores
shared with another engineer's benchmarks (load 1-4), torch 2.13.0+cpu, torchao 0.18.0, 2
threads. Dense LeNets trained on MNIST (fp32 test error 1.48% / 0.74%); latency = min over 7
alternating blocks of the median of 20 calls (200 at batch 1), speed-up vs fp32 in the same
run; test error on 9984 images; calibration on 2048 training images.
``benchmarks/compression.py --cache ... --backends``, two runs (run 1 / run 2)::

    LeNet-300-100                 batch 256 ms    x fp32       batch 1 x fp32  error
    fp32                          1.021 / 1.002   1            1 (0.047 ms)    1.48%
    torch.ao FX static  (fx)      0.318 / 0.318   3.21 / 3.15  0.62 / 0.55     1.50%
    torch.ao dynamic              0.459 / 0.426   2.22 / 2.35  0.63 / 0.56     1.48%
    torchao PT2E + compile (pt2e) 1.556 / 1.417   0.66 / 0.71  0.45 / 0.15     1.50%
    LeNet-5
    fp32                          59.96 / 20.70   1            1 (0.28 ms)     0.74%
    torch.ao FX static  (fx)      14.34 / 5.36    4.18 / 3.86  0.99 / 1.00     0.73%
    torch.ao dynamic              55.71 / 20.11   1.08 / 1.03  0.89 / 0.88     0.73%
    torchao PT2E + compile (pt2e) 39.05 / 13.48   1.54 / 1.54  0.70 / 0.38     0.74%

(PT2E exported for the timed batch size only, the older recipe, timed the same within
noise: 1.55-1.67 / 13.4-36.3 ms. torchao's eager ``quantize_`` configs were no faster than
fp32: Int8DynamicActivationInt8Weight 0.16x / ~1x, Int8WeightOnly ~0.66x / ~1x.) Run 1's
LeNet-5 fp32 time is ~3x run 2's: the other engineer's jobs loaded both cores then; the
ratios held. Exported graphs compiled with torch.compile's default ``dynamic`` picked up the
export's symbolic batch and ran LeNet-5 ~4x slower (54-79 ms vs 16 ms in a probe under load), hence
``dynamic=False``. A pruned (8%), folded model gives the same picture (FX: 3.4x / 3.7-4.0x at
batch 256, error 1.64 -> 1.60% / 0.79 -> 0.79%).

Earlier machine, a 2-core Intel Xeon with AVX512-VNNI (same torch/torchao, quiet machine,
min over 7 blocks, batch 256; fp32 test error 1.60% / 0.64%)::

    LeNet-300-100                     ms     error     LeNet-5        ms      error
    fp32                              0.640  1.60%                    19.0    0.64%
    torch.ao FX static (x86)          0.245  1.59%                     4.82   0.67%
    torch.ao dynamic (Linear)         0.319  1.63%                    18.7    0.65%
    torchao Int8DynActInt8Weight      1.46   1.61%                    20.0    0.65%
    torchao Int8WeightOnly            0.757  1.60%                    19.3    0.64%
    torchao PT2E x86 + torch.compile  0.861  1.61%                    10.6    0.65%

On both AVX512-VNNI CPUs FX static was 2.6-4.2x faster than fp32 at batch 256 and PT2E
0.7-1.8x, needing also a C++ toolchain and 5-20 s of compile per batch size. Pruned models
and batch-1 latency: ``benchmarks/compression.py``.

The speed-up depends on the CPU's int8 instructions. On CPU-2, a 2-core AMD EPYC (Zen 3, AVX2,
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
*slower* than fp32 for LeNet-300-100 on CPU-2 (0.07 -> 0.26 ms: the quantize /
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
import itertools
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from brisk.compress.prune import _choice, copy_model, is_pruned, make_permanent

__all__ = ["convert_qat", "load_quantized", "model_size_bytes", "quantize"]

MODES = ("dynamic", "static", "qat")
METHODS = ("fx", "pt2e")
PT2E_INSTALL = "pip install 'torchao>=0.18'  (or: pip install 'brisk[int8]')"


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
        yield from (_float(b) for b in data.split(batch_size))
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
        yield _float(b)


def _float(b: torch.Tensor) -> torch.Tensor:
    """Integer inputs (uint8 images) as float32 with their values, as ``fit`` feeds them
    (unscaled: a model trained on 0..255 pixels calibrates on 0..255); float stays."""
    return b if b.is_floating_point() else b.float()


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
    *,
    method: str = "fx",
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

    method (``mode='static'`` only; the table in this module's docstring has the figures):
      * ``'fx'`` (default): ``torch.ao.quantization`` FX graph mode; int8 ``nn.Module``
        layers running fbgemm/oneDNN kernels, no compiler needed. Any batch size; reload
        with ``torch.save(q.state_dict(), path)`` and ``load_quantized``.
      * ``'pt2e'``: torchao's PT2E flow (``torch.export`` -> ``prepare_pt2e`` with
        ``X86InductorQuantizer`` -> calibrate -> ``convert_pt2e`` -> ``torch.compile``);
        needs ``torchao`` (``pip install 'torchao>=0.18'``) and a C++ compiler. The graph is
        exported with a dynamic batch dimension (``torch.export.Dim``), so any batch size
        runs, but ``torch.compile`` (``dynamic=False``: shape-specialised kernels, the
        fast ones) compiles on the first call and again for each new batch size, seconds
        each; past ``torch._dynamo.config.recompile_limit`` sizes (8) further ones run
        uncompiled (correct, slow). Every input
        tensor's dim 0 must be the batch; the model must be ``torch.export``-able and must
        not fix the batch size in its code. Returns the ``torch.compile``'d module; to
        reload, run ``quantize`` again on the fp32 model (``load_quantized`` is FX only).

    backend: a ``torch.backends.quantized`` engine (default ``x86``, else ``fbgemm``/``qnnpack``)
    for ``method='fx'``, dynamic and QAT; ``'pt2e'`` always uses the x86 inductor kernels.
    Pruned or weight-shared models are made permanent on the copy first. Inputs and outputs
    stay float32 (int8 inside): an ``(N, ...)`` float32 batch in, the model's float32 out.

    Example::

        q = quantize(model.eval(), "static", calibration_data=x_train[:1024])
        q(x_test)              # float in, float out; int8 inside
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    mode = _choice("mode", mode, MODES)
    method = _choice("method", method, METHODS)
    if method == "pt2e":
        if mode != "static":
            raise ValueError(
                f"method='pt2e' supports mode='static' only (got mode={mode!r}); "
                "use method='fx' for dynamic or QAT"
            )
        if backend is not None and backend != "x86":
            raise ValueError(
                f"backend: method='pt2e' runs the x86 inductor kernels, got backend={backend!r} "
                "(backend applies to method='fx')"
            )
        return _pt2e_static(model, calibration_data, example_inputs)
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
            m, first, batches, example = _static_inputs(model, calibration_data, example_inputs)
            prepared = prepare_fx(m, get_default_qconfig_mapping(backend), example)
            _calibrate(prepared, first, batches)
            return convert_fx(prepared)

        # qat
        example = example_inputs
        if example is None and calibration_data is not None:
            example = next(_batches(calibration_data), None)
        if example is None:
            raise ValueError("example_inputs: mode='qat' needs a sample input batch for tracing")
        example = example if isinstance(example, tuple) else (example,)
        m = _plain_copy(model)
        from brisk.api.sequential import Sequential

        if isinstance(m, Sequential):  # its forward takes arguments fx cannot trace
            from brisk.compress.fold import to_torch

            m = to_torch(m)  # the same function as torch modules (as fold does for 'static')
        return prepare_qat_fx(m.train(), get_default_qat_qconfig_mapping(backend), example)


def _calibrate(prepared: nn.Module, first: torch.Tensor, batches: Iterator[torch.Tensor]) -> None:
    """Run the calibration batches through the observed model; a batch the model cannot
    take is a ValueError naming calibration_data, not torch's shape error."""
    with torch.no_grad():
        for b in itertools.chain([first], batches):
            try:
                prepared(b)
            except (RuntimeError, IndexError, TypeError) as e:
                raise ValueError(
                    f"calibration_data: the model cannot take a batch of shape {tuple(b.shape)} "
                    f"({type(e).__name__}: {str(e)[:200]}); pass input batches like the "
                    "model's training inputs"
                ) from e


def _static_inputs(model: nn.Module, calibration_data: Any, example_inputs: Any):
    """Static int8's common start (both methods): the checks, the folded copy, the first
    calibration batch, the rest, and the example inputs as a tuple."""
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
    return m, first, batches, example if isinstance(example, tuple) else (example,)


def _import_pt2e():
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as e:
        raise ImportError(
            f"quantize(method='pt2e') needs torchao, which did not import ({e}): "
            f"{PT2E_INSTALL}; or use method='fx' (torch.ao, no extra package)"
        ) from e
    return xiq, prepare_pt2e, convert_pt2e, allow_exported_model_train_eval


def _pt2e_static(model: nn.Module, calibration_data: Any, example_inputs: Any) -> nn.Module:
    """fold -> torch.export (dynamic batch) -> X86InductorQuantizer -> calibrate -> convert
    -> torch.compile."""
    m, first, batches, example = _static_inputs(model, calibration_data, example_inputs)
    xiq, prepare_pt2e, convert_pt2e, allow_train_eval = _import_pt2e()
    # One batch dimension shared by every tensor input, so the exported (and compiled) graph
    # takes any batch size, not only the example's. max: export's default upper bound.
    batch = torch.export.Dim("batch", min=1)
    dynamic = tuple({0: batch} if isinstance(t, torch.Tensor) else None for t in example)
    try:
        exported = torch.export.export(m, example, dynamic_shapes=dynamic).module()
    except Exception as e:  # noqa: BLE001 -- re-raised with what quantize needs of the model
        raise ValueError(
            "quantize(method='pt2e'): torch.export could not export the model with a dynamic "
            f"batch dimension (dim 0 of every input; {type(e).__name__}: {str(e)[:300]}); "
            "use method='fx'"
        ) from e
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    _calibrate(prepared, first, batches)
    converted = convert_pt2e(prepared)
    allow_train_eval(converted)  # exported graphs refuse .eval() otherwise
    # dynamic=False: one graph specialised per batch size. Left to torch.compile's default,
    # the dynamic batch dim the export recorded reaches inductor, and the symbolic-shape
    # kernels ran LeNet-5 at batch 256 ~4x slower here (54-79 ms vs 16 ms, AMD EPYC Zen 4).
    return torch.compile(converted, dynamic=False)


def load_quantized(
    model: nn.Module,
    state_dict: Any,
    example_inputs: torch.Tensor | tuple,
    backend: str | None = None,
) -> nn.Module:
    """Rebuild a static int8 model (``quantize(..., 'static')``, ``method='fx'``) from its saved
    ``state_dict``: int8 packed weights, their scales and the calibrated activation scales.

    ``model`` is the fp32 architecture (eval mode; its weights do not matter), ``state_dict``
    the dict or the path of ``torch.save(q.state_dict(), path)`` (read with
    ``weights_only=True``), ``example_inputs`` one input batch of the right shape (any
    values: it only traces the graph, the saved scales replace what it calibrates). Same
    ``backend`` as when saved (its packed weights are engine-specific). The result predicts
    exactly as the saved model did.

    Example::

        q = quantize(model.eval(), "static", calibration_data=x_train[:1024])
        torch.save(q.state_dict(), "int8.pt")
        q2 = load_quantized(make_model().eval(), "int8.pt", x_train[:1])
        torch.equal(q2(x_test), q(x_test))   # True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(state_dict, dict):
        path = state_dict
        if not os.path.isfile(path):
            raise FileNotFoundError(f"state_dict: no such file {str(path)!r}")
        with _quiet():
            try:
                state_dict = torch.load(path, weights_only=True, map_location="cpu")
            except Exception as e:  # noqa: BLE001 -- name the file whatever went wrong
                raise ValueError(f"{path}: not a saved int8 state_dict ({e})") from e
    skeleton = quantize(model, "static", calibration_data=example_inputs, backend=backend)
    with _quiet():
        try:
            skeleton.load_state_dict(state_dict, strict=True)
        except (RuntimeError, KeyError) as e:
            raise ValueError(
                "state_dict: does not fit the int8 model of this architecture (saved from a "
                f"different model or method?): {str(e)[:300]}"
            ) from e
    return skeleton


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
