"""brisk.compress: pruning, folding, int8 quantization and a Deep Compression file format.

Every technique is a plain function over a ``torch.nn.Module``; ``GradualPruning`` is a
thin callback around ``prune``.

Example::

    import torch.nn as nn
    from brisk import compress
    model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
    compress.prune(model, amount=0.9, scope="global")
    compress.make_permanent(model)
    compress.save(model, "model.brisk", bits=5)
    fast = compress.quantize(compress.fold(model.eval()), mode="dynamic")

``run_pipeline`` (``brisk compress``) chains them on a saved model: prune while training ->
fine-tune -> fold -> quantize, with a table of size, accuracy and latency per stage;
``brisk.compress.cli`` holds the command's arguments (``add_compress_arguments``) and runner
(``run_compress_from_args``).

int8 backend: ``quantize`` uses ``torch.ao.quantization`` (FX graph mode, x86 engine) for
static and QAT by default, and its eager ``quantize_dynamic`` for dynamic;
``quantize(..., method='pt2e')`` takes torchao's PT2E path (X86InductorQuantizer +
``torch.compile``) instead. On the two AVX512-VNNI CPUs measured (a Xeon, and an AMD EPYC
Zen 4 on 2026-12-01; torch 2.13, torchao 0.18), FX static int8 ran LeNet-300-100 / LeNet-5
at batch 256 2.6-3.2x / 3.9-4.2x faster than fp32, PT2E 0.7x / 1.5-1.8x; torchao's eager
int8 configs were no faster than fp32. The figures are in ``brisk/compress/quantize.py``'s
docstring and ``benchmarks/compression.py --backends``. ``load_quantized`` rebuilds an FX
int8 model from its saved ``state_dict``.
"""

from brisk.compress.export import SharedWeights, kmeans_1d, load, save, share_weights, size_report
from brisk.compress.fold import fold, to_torch
from brisk.compress.pipeline import StageResult, format_table, load_compressed, run_pipeline
from brisk.compress.prune import (
    GradualPruning,
    copy_model,
    format_sparsity_report,
    gradual_sparsity,
    is_pruned,
    iterative_prune,
    make_permanent,
    prune,
    sparsity_report,
)
from brisk.compress.quantize import convert_qat, load_quantized, model_size_bytes, quantize

__all__ = [
    "GradualPruning",
    "SharedWeights",
    "StageResult",
    "convert_qat",
    "copy_model",
    "fold",
    "format_sparsity_report",
    "format_table",
    "gradual_sparsity",
    "is_pruned",
    "iterative_prune",
    "kmeans_1d",
    "load",
    "load_compressed",
    "load_quantized",
    "make_permanent",
    "model_size_bytes",
    "prune",
    "quantize",
    "run_pipeline",
    "save",
    "share_weights",
    "size_report",
    "sparsity_report",
    "to_torch",
]
