"""brisk: Keras-simple, fast and cheap neural-network training on PyTorch.

Example::

    import brisk
    from brisk.layers import Dense
    model = brisk.Sequential([Dense(64, activation="relu", input_shape=(784,)),
                              Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
"""

from brisk import (
    augment,
    callbacks,
    datasets,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    schedules,
    utils,
)
from brisk.api.sequential import Sequential, load_model
from brisk.data.loader import DeviceLoader
from brisk.engine.trainer import Trainer, select_device

# brisk.finetune is the function (two-phase fine-tuning); `from brisk.finetune import
# extract_features, blocks, Finetuned` reaches the rest of its module.
from brisk.finetune import finetune  # noqa: E402

# brisk.tune is the function (hyperparameter search); its module, brisk/tune.py, imports
# Optuna only when a search starts. `from brisk.tune import PruningCallback` still works.
from brisk.tune import tune  # noqa: E402

__version__ = "0.1.0"


def profile(model, x, y=None, **kwargs):
    """Where a training step's time goes, and the measured speedup of each switch that
    applies: ``brisk.bench.profile.profile`` (its docstring has the arguments), on a copy
    of ``model``. Returns a ``ProfileReport``.

    Example::

        report = brisk.profile(model, x_train, y_train, batch_size=128)
        print(report.table())
    """
    from brisk.bench.profile import profile as _profile

    return _profile(model, x, y, **kwargs)


# Subpackages with heavier imports, loaded on first use: ``brisk.compress.fold``,
# ``brisk.recipes.get``, ``brisk.applications.get`` ... work after ``import brisk`` alone
# (brisk.applications imports torchvision/timm only when a model is asked for).
_LAZY = ("api", "applications", "bench", "compress", "data", "engine", "optim", "plots",
         "recipes")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"brisk.{name}")
    raise AttributeError(f"module 'brisk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

__all__ = [
    "DeviceLoader",
    "applications",
    "compress",
    "recipes",
    "Sequential",
    "Trainer",
    "augment",
    "callbacks",
    "datasets",
    "finetune",
    "layers",
    "load_model",
    "losses",
    "metrics",
    "models",
    "optimizers",
    "plots",
    "profile",
    "schedules",
    "select_device",
    "tune",
    "utils",
]
