"""Named, tested end-to-end recipes: ``mnist-mlp``, ``mnist-cnn``, ``fashion-mnist-cnn``.

Each recipe is a plain function of ordinary brisk calls (``brisk.recipes.mnist.mnist_cnn``
and friends: build, compile, fit) whose comments give the reasons for its choices, with
the measurements behind them. ``run(name)`` loads the data, trains, times and evaluates.

Example::

    import brisk.recipes
    sorted(brisk.recipes.RECIPES)          # ['fashion-mnist-cnn', 'mnist-cnn', 'mnist-mlp']
    out = brisk.recipes.run("mnist-cnn")   # trains on MNIST from brisk.datasets
    out["test_accuracy"] >= 0.99
"""

from brisk.recipes.fashion_mnist import fashion_mnist_cnn
from brisk.recipes.mnist import conv_pool_bn, mnist_cnn, mnist_mlp
from brisk.recipes.registry import RECIPES, Recipe, get, run

__all__ = [
    "RECIPES",
    "Recipe",
    "conv_pool_bn",
    "fashion_mnist_cnn",
    "get",
    "mnist_cnn",
    "mnist_mlp",
    "run",
]
