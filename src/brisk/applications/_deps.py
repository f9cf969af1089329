"""The optional packages behind ``brisk.applications``, imported on first use.

``import brisk`` and ``import brisk.applications`` import neither torchvision nor timm; a
missing one is an ``ImportError`` naming the extra that installs it.
"""

from __future__ import annotations

import importlib
import sys
import warnings

EXTRA = 'pip install "brisk[applications]"'

# Kept alive for the process: the op schemas defined by _define_missing_ops.
_LIBRARIES: list = []


def import_torchvision():
    """``torchvision``, importable beside a torch whose build does not match its ops.

    PyPI's Linux torchvision wheels are CUDA builds. Beside a CPU build of the same torch
    release (``torch==2.13.0+cpu`` next to PyPI's ``torchvision==0.28.0``, the pair this
    project installs) their C++ ops library fails to load (it links ``libc10_cuda.so``),
    and ``import torchvision`` then stops at a fake-tensor registration for
    ``torchvision::nms`` ("operator torchvision::nms does not exist"). The classification
    models need none of those ops (they are the detection ops: nms, roi_align, ...), so
    when exactly that happens the two schemas the registration needs are defined, without
    kernels, and the import is retried once, with a warning: calling
    ``torchvision.ops.nms`` then raises, as it would with no ops library at all.
    """
    try:
        return importlib.import_module("torchvision")
    except ModuleNotFoundError as e:
        if e.name != "torchvision":
            raise
        raise ImportError(f"brisk.applications needs torchvision: {EXTRA}") from e
    except RuntimeError as e:
        if "torchvision::" not in str(e) or "does not exist" not in str(e):
            raise
        _forget("torchvision")
        _define_missing_ops()
        module = importlib.import_module("torchvision")
        warnings.warn(
            f"torchvision {module.__version__} cannot load its C++ ops beside torch "
            f"{_torch_version()} (a CUDA build of torchvision beside a CPU build of torch?); "
            "the classification models work, its detection ops (torchvision.ops.nms, "
            "roi_align, ...) do not. Install the torchvision build that matches torch to "
            "have them.",
            RuntimeWarning,
            stacklevel=2,
        )
        return module


def import_timm():
    """``timm`` (which imports torchvision itself: through ``import_torchvision`` first)."""
    import_torchvision()
    try:
        return importlib.import_module("timm")
    except ModuleNotFoundError as e:
        if e.name != "timm":
            raise
        raise ImportError(f"brisk.applications needs timm for this model: {EXTRA}") from e


def _forget(package: str) -> None:
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


def _define_missing_ops() -> None:
    import torch

    lib = torch.library.Library("torchvision", "FRAGMENT")  # schemas only, no kernels
    for op in ("nms", "qnms"):  # the two ops _meta_registrations registers unconditionally
        if not hasattr(torch.ops.torchvision, op):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARIES.append(lib)


def _torch_version() -> str:
    import torch

    return torch.__version__
