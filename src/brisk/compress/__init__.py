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
"""

from brisk.compress.export import SharedWeights, kmeans_1d, load, save, share_weights, size_report
from brisk.compress.fold import fold
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
from brisk.compress.quantize import convert_qat, model_size_bytes, quantize

__all__ = [
    "GradualPruning",
    "SharedWeights",
    "convert_qat",
    "copy_model",
    "fold",
    "format_sparsity_report",
    "gradual_sparsity",
    "is_pruned",
    "iterative_prune",
    "kmeans_1d",
    "load",
    "make_permanent",
    "model_size_bytes",
    "prune",
    "quantize",
    "save",
    "share_weights",
    "size_report",
    "sparsity_report",
]
