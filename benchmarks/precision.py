"""Precision modes and compilation side by side: which is fastest on this device?

Backs the choice made by ``precision='auto'`` (bf16-mixed on GPUs that support it, fp32
on CPU unless measured faster) and tells whether ``compile=True`` pays on this machine.

For two models on real MNIST -- the Keras-style MLP (784-64-64-10, Adam, batch 32) and a
small BatchNorm convnet (batch 128) -- it trains one epoch per contender per repetition,
alternating the contenders so that load from other processes hits them alike, and
prints the median epoch time, spread, ratio against fp32 eager, and final test accuracy.
Compilation time is excluded (a warm-up epoch per contender comes first) and reported.

Usage::

    python benchmarks/precision.py                 # ~10 min on 2 CPU cores
    python benchmarks/precision.py --quick         # a 10k-sample slice, ~2 min
    python benchmarks/precision.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import brisk  # noqa: E402
from brisk.layers import (  # noqa: E402
    BatchNormalization,
    Conv2D,
    Dense,
    Flatten,
    GlobalAveragePooling2D,
    MaxPooling2D,
)

CONTENDERS = {  # name -> Trainer options
    "fp32": {"precision": "fp32"},
    "bf16-mixed": {"precision": "bf16-mixed"},
    "fp16-mixed": {"precision": "fp16-mixed"},
    "bf16": {"precision": "bf16"},
    "fp32+compile": {"precision": "fp32", "compile": True},
}


def mlp():
    return brisk.Sequential([
        brisk.layers.Rescaling(1 / 255, input_shape=(28, 28)),  # uint8 pixels fed unscaled
        Flatten(),
        Dense(64, activation="relu"),
        Dense(64, activation="relu"),
        Dense(10, activation="softmax"),
    ])


def cnn():
    return brisk.Sequential([
        brisk.layers.Rescaling(1 / 255, input_shape=(28, 28, 1)),
        Conv2D(16, 3, padding="same"),
        BatchNormalization(),
        brisk.layers.Activation("relu"),
        MaxPooling2D(2),
        Conv2D(32, 3, padding="same"),
        BatchNormalization(),
        brisk.layers.Activation("relu"),
        MaxPooling2D(2),
        Conv2D(64, 3, padding="same", activation="relu"),
        GlobalAveragePooling2D(),
        Dense(10, activation="softmax"),
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("BRISK_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="10k training samples, 2 reps")
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    reps = 2 if args.quick else args.reps

    (x, y), (xt, yt) = brisk.datasets.load_mnist(data_dir=args.data_dir)
    if args.quick:
        x, y = x[:10000], y[:10000]
    setups = {"mlp": (mlp, 32, x, xt), "cnn": (cnn, 128, x[..., None], xt[..., None])}
    names = args.contenders.split(",")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, {len(x)} training samples, {reps} reps")
    results = {}
    for model_name in args.models.split(","):
        make, bs, xtr, xte = setups[model_name]
        trainers, warm = {}, {}
        for name in names:
            m = make()
            m.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], seed=0, **CONTENDERS[name])
            t0 = time.perf_counter()
            m.fit(xtr, y, batch_size=bs, epochs=1, verbose=0)  # warm-up (and compilation)
            warm[name] = time.perf_counter() - t0
            trainers[name] = m
        times = {n: [] for n in names}
        for _ in range(reps):
            for name in names:  # alternate: a burst of outside load hits every contender
                t0 = time.perf_counter()
                trainers[name].fit(xtr, y, batch_size=bs, epochs=1, verbose=0)
                times[name].append(time.perf_counter() - t0)
        base = statistics.median(times["fp32"]) if "fp32" in times else None
        print(f"\n{model_name} (batch {bs}): median epoch time over {reps} reps, "
              f"after one warm-up epoch ({1 + reps} epochs trained in all)")
        print("| mode | median s | min-max s | vs fp32 | warm-up s | test acc |")
        print("|---|---|---|---|---|---|")
        results[model_name] = {}
        for name in names:
            med = statistics.median(times[name])
            acc = trainers[name].evaluate(xte, yt)[1]
            ratio = med / base if base else float("nan")
            results[model_name][name] = {"median_s": med, "times_s": times[name],
                                         "warmup_s": warm[name], "test_accuracy": acc,
                                         "ratio_vs_fp32": ratio}
            print(f"| {name} | {med:.2f} | {min(times[name]):.2f}-{max(times[name]):.2f} | "
                  f"{ratio:.2f}x | {warm[name]:.1f} | {acc:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    raise SystemExit(main())
