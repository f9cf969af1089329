"""Fashion-MNIST recipe: a 32/64/128-channel convnet to ~92.9% test accuracy in 8 epochs.

Ordinary brisk code (build, compile, fit) a user can copy. It takes the arrays of
``brisk.datasets.load_fashion_mnist()`` ((N, 28, 28) uint8 images, int64 labels) and returns
the trained ``brisk.Sequential``; evaluate it with ``model.evaluate(x[..., None], y)``.

Example::

    import brisk
    from brisk.recipes.fashion_mnist import fashion_mnist_cnn
    (x, y), (xt, yt) = brisk.datasets.load_fashion_mnist()
    model = fashion_mnist_cnn(x, y)                           # ~92.9% test accuracy
    model.evaluate(xt[..., None], yt, return_dict=True)["accuracy"]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import brisk
from brisk.layers import Dense, Flatten, Rescaling
from brisk.recipes.mnist import conv_pool_bn

EPOCHS = 8
SUMMARY = ("32/64/128-channel convnet, flips, 8 epochs: 92.9% +- 0.1% Fashion-MNIST test "
           "accuracy (5 seeds), >= 92.5% in every run")


def fashion_mnist_cnn(
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int = EPOCHS,
    device: str | torch.device | None = None,
    seed: int = 0,
    callbacks: list | None = None,
    verbose: Any = 0,
) -> brisk.Sequential:
    """Fashion-MNIST to 92.9% +- 0.1% test accuracy in eight epochs.

    Seeds 0-4 on a 2-core AMD EPYC (Zen 4), precision 'auto' (bf16-mixed there):
    93.00, 92.89, 92.78, 92.74, 92.98% (``python benchmarks/recipes.py``). It was tuned on
    another CPU in fp32, where seeds 0 and 1 gave 93.11% and 93.20%; the >= 93% claimed then
    is not met on average here, so the target is 92.5%.

    The ``mnist-cnn`` architecture at twice the width (32/64/128 channels, conv -> pool
    -> BN -> ReLU), Nesterov SGD with a one-cycle learning rate, batch 128 and random
    left-right flips.

    Example::

        model = fashion_mnist_cnn(x_train, y_train)
    """
    dev = brisk.select_device(device)
    brisk.utils.set_random_seed(seed)  # the weights are drawn when the model is built, below
    model = brisk.Sequential(
        [
            # uint8 pixels 0..255 -> 0..1 inside the model, as in the Keras guides (brisk
            # feeds arrays unscaled, as Keras does; the data stays uint8 on the device)
            Rescaling(1 / 255, input_shape=(28, 28, 1)),
            # Twice mnist-cnn's widths: clothing classes differ in texture and fine shape
            # (shirt / T-shirt / pullover / coat), which needs more filters than digits.
            *conv_pool_bn(32),  # 28x28 -> 14x14
            *conv_pool_bn(64),  # -> 7x7
            *conv_pool_bn(128),  # -> 3x3
            Flatten(),  # 1152 features
            Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        # Nesterov SGD, peak lr 0.1 (half mnist-cnn's: 8 epochs instead of one), weight
        # decay 5e-4 on conv/dense weights only (brisk skips BN and biases).
        optimizer=brisk.optimizers.SGD(
            learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # One-cycle: 30% warm-up, then cosine decay to ~0; the accuracy climbs most in
        # the last, low-lr epochs (seed 0, epochs 1-8: 84.5, 87.6, 90.2, 89.9, 91.4, 91.9,
        # 92.9, 93.1%; seed 1: 84.5 ... 90.7, 93.1, 93.2%).
        schedule="one_cycle",
        precision="auto",  # bf16-mixed where it pays (a GPU, a native-bf16 CPU)
        # torch.compile's compilation costs more than it saves on a CPU for a net this
        # small; on CUDA it fuses the many small kernels.
        compile=dev.type == "cuda",
        device=dev,
        seed=seed,  # seeds shuffling and the flips (the weights: set_random_seed above)
    )
    if dev.type == "cpu":
        # NHWC convolutions: oneDNN's fast path on CPU (see mnist._channels_last_on_cpu).
        model.to(memory_format=torch.channels_last)
    model.fit(
        x_train[..., None],  # (N, 28, 28, 1): Keras's channels-last image layout
        y_train,
        batch_size=128,  # as mnist-cnn: 469 steps per epoch
        epochs=epochs,
        # Left-right flips: every Fashion-MNIST class is mirror-symmetric as a class (a
        # flipped shoe is still a shoe), unlike digits, so the flips double the data for
        # 8 epochs of training at no cost in label noise. Batched and on the device.
        augment=brisk.augment.FlipLR(),
        callbacks=callbacks,
        verbose=verbose,
    )
    return model
