"""Named recipes: ``RECIPES``, ``get(name)`` and ``run(name)``.

A ``Recipe`` ties a training function (ordinary brisk code in ``mnist.py`` or
``fashion_mnist.py``) to its dataset and the test accuracy it is tested to reach.

Example::

    import brisk.recipes
    result = brisk.recipes.run("mnist-cnn")
    result["test_accuracy"], result["train_seconds"]        # e.g. (0.991, 11.4)
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import brisk
from brisk.recipes import fashion_mnist, mnist

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

_LOADERS: dict[str, Callable[..., Arrays]] = {
    "mnist": brisk.datasets.load_mnist,
    "fashion-mnist": brisk.datasets.load_fashion_mnist,
}


@dataclass(frozen=True)
class Recipe:
    """A named configuration.

    Attributes:
        name: the recipe's name, e.g. 'mnist-cnn'.
        summary: one line on what it trains and how well.
        dataset: 'mnist' or 'fashion-mnist' (read by ``brisk.datasets``).
        train: ``train(x_train, y_train, *, epochs, device, seed, callbacks, verbose)
            -> brisk.Sequential``, the copyable brisk code.
        epochs: default training length.
        target: the test accuracy (0..1) the recipe is tested to reach at full data.
        image_input: True when the model takes (N, 28, 28, 1) images (x[..., None]).
        eval_every: default evaluation interval of ``brisk bench``, in epochs.
        batch_size: the batch size ``train`` fits with (``brisk profile`` steps at it).

    Example::

        r = brisk.recipes.get("mnist-cnn")
        (x, y), (xt, yt) = r.load_data()
        model = r.train(x, y, epochs=r.epochs)
    """

    name: str
    summary: str
    dataset: str
    train: Callable[..., Any]
    epochs: int
    target: float
    image_input: bool = True
    eval_every: float = 1.0
    batch_size: int = 128  # every recipe so far; a test checks it against what train uses

    def load_data(self, data_dir: Any = None, limit: int | None = None) -> Arrays:
        """The recipe's dataset as numpy arrays; ``limit`` keeps the first ``limit``
        training and test samples (for quick checks)."""
        (x, y), (xt, yt) = _LOADERS[self.dataset](data_dir=data_dir)
        if limit is not None:
            x, y, xt, yt = x[:limit], y[:limit], xt[:limit], yt[:limit]
        return (x, y), (xt, yt)

    def model_input(self, x: np.ndarray) -> np.ndarray:
        """The array the trained model takes for images ``x`` of shape (N, 28, 28)."""
        return x[..., None] if self.image_input else x


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="mnist-mlp",
            summary="784-256-256-10 MLP, Nesterov SGD, one-cycle: >= 98.0% MNIST test accuracy",
            dataset="mnist",
            train=mnist.mnist_mlp,
            epochs=3,
            target=0.98,
            image_input=False,
            eval_every=0.5,
        ),
        Recipe(
            name="mnist-cnn",
            summary="16/32/64-channel convnet, one epoch: >= 99.0% MNIST test accuracy, "
            "the fastest route we found on a CPU",
            dataset="mnist",
            train=mnist.mnist_cnn,
            epochs=1,
            target=0.99,
            eval_every=0.1,
        ),
        Recipe(
            name="fashion-mnist-cnn",
            summary=fashion_mnist.SUMMARY,
            dataset="fashion-mnist",
            train=fashion_mnist.fashion_mnist_cnn,
            epochs=fashion_mnist.EPOCHS,
            target=0.925,  # 5 seeds: 92.88% +- 0.12%, min 92.74% (benchmarks/recipes.py)
            eval_every=1.0,
        ),
    )
}


def get(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name is a ValueError listing close names.

    Example::

        brisk.recipes.get("mnist-cnn").target      # 0.99
    """
    if not isinstance(name, str):
        raise TypeError(f"recipe: expected a recipe name (str), got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    if key in RECIPES:
        return RECIPES[key]
    close = difflib.get_close_matches(key, list(RECIPES), n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise ValueError(f"recipe: unknown name {name!r}; {hint}known recipes: {', '.join(RECIPES)}")


def check_positive_int(value: Any, name: str, allow_none: bool = False) -> int | None:
    """``value`` as an int > 0 (or None when allowed), else a ValueError naming it."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        expected = "a positive integer or None" if allow_none else "a positive integer"
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return int(value)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock read afterwards includes it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(
    name: str,
    *,
    data_dir: Any = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    epochs: int | None = None,
    limit: int | None = None,
    callbacks: list | None = None,
    verbose: int | str = 0,
) -> dict[str, Any]:
    """Train recipe ``name`` and evaluate it on the test set.

    ``epochs`` overrides the recipe's; ``limit`` trains and tests on the first ``limit``
    samples of each split (for quick checks). ``train_seconds`` is the wall time of the
    recipe function (model building, data placement and ``fit``), reading from disk
    excluded. Returns a dict with ``recipe``, ``dataset``, ``test_accuracy``,
    ``test_loss``, ``train_seconds``, ``epochs``, ``train_samples``,
    ``samples_per_second`` (training samples processed per second), ``target``,
    ``reached_target``, ``device``, ``seed``, ``history`` and the trained ``model``.

    Example::

        out = brisk.recipes.run("mnist-mlp", limit=2000, epochs=1)
        out["test_accuracy"]
    """
    recipe = get(name)
    seed = check_seed(seed)
    epochs = check_positive_int(epochs, "epochs", allow_none=True) or recipe.epochs
    limit = check_positive_int(limit, "limit", allow_none=True)
    dev = brisk.select_device(device)
    (x, y), (xt, yt) = recipe.load_data(data_dir, limit)

    synchronize(dev)
    t0 = time.perf_counter()
    model = recipe.train(x, y, epochs=epochs, device=dev, seed=seed, callbacks=callbacks,
                         verbose=verbose)
    synchronize(dev)
    train_seconds = time.perf_counter() - t0

    logs = model.evaluate(recipe.model_input(xt), yt, batch_size=1000, return_dict=True)
    history = model.history.history if model.history is not None else {}
    epochs_run = len(history.get("loss", [])) or epochs
    samples = len(x) * epochs_run
    return {
        "recipe": recipe.name,
        "dataset": recipe.dataset,
        "test_accuracy": float(logs["accuracy"]),
        "test_loss": float(logs["loss"]),
        "train_seconds": train_seconds,
        "epochs": epochs_run,
        "train_samples": samples,
        "samples_per_second": samples / train_seconds,
        "target": recipe.target,
        "reached_target": float(logs["accuracy"]) >= recipe.target,
        "device": str(dev),
        "seed": seed,
        "history": history,
        "model": model,
    }
