"""MNIST recipes: a fast MLP and the fastest convnet route to 99% we found on a CPU.

Each function is ordinary brisk code (build, compile, fit) that a user can copy. It takes
the arrays of ``brisk.datasets.load_mnist()`` ((N, 28, 28) uint8 images, int64 labels) and
returns the trained ``brisk.Sequential``; evaluate it with ``model.evaluate(x[..., None], y)``
(the CNN) or ``model.evaluate(x, y)`` (the MLP).

Example::

    import brisk
    from brisk.recipes.mnist import mnist_cnn
    (x, y), (xt, yt) = brisk.datasets.load_mnist()
    model = mnist_cnn(x, y)                                    # ~99.1% test accuracy
    model.evaluate(xt[..., None], yt, return_dict=True)["accuracy"]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import brisk
from brisk.layers import (
    Activation,
    BatchNormalization,
    Conv2D,
    Dense,
    Flatten,
    MaxPooling2D,
    Rescaling,
)


def conv_pool_bn(filters: int, **kwargs: Any) -> list:
    """3x3 conv -> 2x2 max-pool -> batch norm -> ReLU: one stage of the CNN recipes.

    Pooling *before* batch norm and ReLU (as airbench does) gives the same function class
    (max-pool commutes with ReLU) but runs BN and ReLU on 4x fewer pixels; on this
    project's 2-core CPU that made a 3-stage 8/16/32-channel net train 1.8x faster
    (6.1k -> 10.7k samples/s on one thread). The conv has no bias: BN's shift replaces it.

    Example::

        model = brisk.Sequential([*conv_pool_bn(16, input_shape=(28, 28, 1)), Flatten(), Dense(10)])
    """
    return [
        Conv2D(filters, 3, padding="same", use_bias=False, **kwargs),
        MaxPooling2D(2),
        # Keras momentum 0.9 = torch's 0.1: running statistics settle within the ~470
        # steps of one epoch (Keras's 0.99 lags behind that short a run).
        BatchNormalization(momentum=0.9, epsilon=1e-5),
        Activation("relu"),
    ]


def _channels_last_on_cpu(model: brisk.Sequential, device: torch.device) -> None:
    # NHWC convolutions: oneDNN's fast path on CPU, about 2x the samples/s of NCHW for
    # these small nets on this project's CPU (the engine already does this on CUDA).
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)


def mnist_cnn(
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int = 1,
    device: str | torch.device | None = None,
    seed: int = 0,
    callbacks: list | None = None,
    verbose: int | str = 0,
) -> brisk.Sequential:
    """MNIST to >= 99.0% test accuracy in one epoch (seeds 0-4: 99.13% +- 0.03%, 99.09-99.17%).

    A 16/32/64-channel, 3-stage convnet (conv -> pool -> BN -> ReLU), SGD with Nesterov
    momentum and a one-cycle learning rate, batch 128, no augmentation. Measured on a
    2-core AMD EPYC Zen 4 with AVX512-BF16 (``python benchmarks/recipes.py``, 2026-12-01):
    5.2-6.2 s of training, where ``precision='auto'`` picks bf16-mixed (99.0% reached in
    4.1 s against 5.6 s in fp32, ``benchmarks/precision.py --recipe mnist-cnn``); on a
    Zen 3 (AVX2 only, fp32) it took 11-12 s. The pytorch/examples recipe takes minutes (4-5
    epochs); ``python benchmarks/peers.py --peer-b`` times both in one run.

    Example::

        model = mnist_cnn(x_train, y_train)
    """
    dev = brisk.select_device(device)
    brisk.utils.set_random_seed(seed)  # the weights are drawn when the model is built, below
    model = brisk.Sequential(
        [
            # uint8 pixels 0..255 -> 0..1 inside the model, as in the Keras guides (brisk
            # feeds arrays unscaled, as Keras does; the data stays uint8 on the device)
            Rescaling(1 / 255, input_shape=(28, 28, 1)),
            *conv_pool_bn(16),  # 28x28 -> 14x14
            *conv_pool_bn(32),  # -> 7x7
            *conv_pool_bn(64),  # -> 3x3
            Flatten(),  # 576 features: keeps where a stroke is (a global pool lost ~0.3%)
            Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        # Nesterov SGD at peak lr 0.2 with one-cycle: lr 0.05 reached 98.5%, 0.1 99.1%,
        # 0.2 99.2%, 0.3 no better; Adam (lr 5e-3) reached only 98.5% in one epoch.
        # wd 5e-4 on conv/dense weights only (brisk skips BN and biases).
        optimizer=brisk.optimizers.SGD(
            learning_rate=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # One-cycle (30% warm-up from lr/25, cosine down to lr/25e4) beat linear decay
        # by 0.35% in one epoch.
        schedule="one_cycle",
        precision="auto",  # bf16-mixed where it pays (a GPU, a native-bf16 CPU)
        # torch.compile pays 15-30 s of compilation on CPU, longer than this whole training
        # (and ran 0.80x on Zen 4 after it: `brisk profile --recipe mnist-cnn`);
        # on CUDA it fuses the many small kernels of this tiny net.
        compile=dev.type == "cuda",
        device=dev,
        seed=seed,  # seeds the shuffling (the weights: set_random_seed above)
    )
    _channels_last_on_cpu(model, dev)
    model.fit(
        x_train[..., None],  # (N, 28, 28, 1): Keras's channels-last image layout
        y_train,
        # 128: 469 steps per epoch. 256 at lr 0.4 ran no faster on 2 CPU threads and
        # reached 99.11% vs 99.17% (5 seeds); 64 costs more per-step overhead.
        batch_size=128,
        epochs=epochs,
        # No augmentation: in one epoch every sample is seen once, so augmentation only
        # slows learning (random 2-pixel shifts cost accuracy in our runs).
        callbacks=callbacks,
        verbose=verbose,
    )
    return model


def mnist_mlp(
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int = 3,
    device: str | torch.device | None = None,
    seed: int = 0,
    callbacks: list | None = None,
    verbose: int | str = 0,
) -> brisk.Sequential:
    """MNIST with a 784-256-256-10 MLP to >= 98.0% test accuracy in three epochs.

    Seeds 0-4: 98.17% +- 0.04% (98.10-98.22%), 2.2-4.3 s of training on a 2-core AMD EPYC
    Zen 4 (bf16-mixed through ``precision='auto'``; ``python benchmarks/recipes.py``).

    Example::

        model = mnist_mlp(x_train, y_train)
    """
    dev = brisk.select_device(device)
    brisk.utils.set_random_seed(seed)  # the weights are drawn when the model is built, below
    model = brisk.Sequential(
        [
            Rescaling(1 / 255, input_shape=(28, 28)),  # uint8 pixels -> 0..1 (Keras guides)
            Flatten(),
            # 256-256: 0.27 MFLOP per sample forward. 512-256 gained 0.2% at 3 epochs for
            # twice the time; more epochs of the small net buy accuracy more cheaply.
            Dense(256, activation="relu"),
            Dense(256, activation="relu"),
            Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        # Nesterov SGD, peak lr 0.2 with one-cycle: 0.1 gave 97.9% in 3 epochs, 0.2 98.2%,
        # 0.3 no better. wd 5e-4 on the weight matrices (brisk skips biases).
        optimizer=brisk.optimizers.SGD(
            learning_rate=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        schedule="one_cycle",
        precision="auto",  # bf16-mixed where it pays (a GPU, a native-bf16 CPU)
        compile=dev.type == "cuda",  # compiling costs more than this training on a CPU
        device=dev,
        seed=seed,
    )
    model.fit(
        x_train,
        y_train,
        # 128: 469 steps per epoch; 256 at lr 0.4 reached the same accuracy (98.3%, 4
        # epochs) and was no faster on 2 CPU threads.
        batch_size=128,
        epochs=epochs,  # 3 epochs: 98.17% +- 0.04% (seeds 0-4, Zen 4, bf16-mixed); 4: 98.3-98.5%
        callbacks=callbacks,
        verbose=verbose,
    )
    return model
