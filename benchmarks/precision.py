"""Precision modes and compilation side by side: which is fastest on this device?

Backs the choice made by ``precision='auto'`` (bf16-mixed on GPUs that support it, fp32
on CPU unless measured faster) and tells whether ``compile=True`` pays on this machine.

For two models on real MNIST -- the Keras-style MLP (784-64-64-10, Adam, batch 32) and a
small BatchNorm convnet (batch 128) -- it trains one epoch per contender per repetition,
alternating the contenders so that load from other processes hits them alike, and
prints the median epoch time, spread, ratio against fp32 eager, and final test accuracy.
Compilation time is excluded (a warm-up epoch per contender comes first) and reported.

``--crossover`` instead times fp32 against bf16-mixed per training step (brisk's own
fit, random data, 3 alternating repetitions after a warm-up) over MLPs of widths 64-1024
and two convnets at batch sizes 32-512, next to each step's forward FLOPs: where bf16
autocast starts to pay on this CPU, the figure behind precision='auto''s threshold
(``brisk.engine.precision.AUTO_BF16_MIN_STEP_FLOPS``).

Usage::

    python benchmarks/precision.py                 # ~10 min on 2 CPU cores
    python benchmarks/precision.py --quick         # a 10k-sample slice, ~2 min
    python benchmarks/precision.py --crossover     # ~3 min
    python benchmarks/precision.py --recipe mnist-cnn --reps 5   # auto vs fp32, ~2 min
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

from distributed import cpu_name  # noqa: E402  (benchmarks/distributed.py)

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


def crossover(batches: int = 24, reps: int = 3) -> list[dict]:
    """fp32 vs bf16-mixed seconds per step against forward FLOPs per step."""
    from torch.utils.flop_counter import FlopCounterMode

    def mlp_w(w):
        return lambda: brisk.Sequential([Flatten(input_shape=(28, 28, 1)),
                                         Dense(w, activation="relu"),
                                         Dense(w, activation="relu"),
                                         Dense(10, activation="softmax")])

    def cnn_w(c):
        return lambda: brisk.Sequential([
            Conv2D(c, 3, padding="same", activation="relu", input_shape=(28, 28, 1)),
            MaxPooling2D(2),
            Conv2D(2 * c, 3, padding="same", activation="relu"), MaxPooling2D(2),
            Flatten(), Dense(10, activation="softmax")])

    nets = {f"mlp{w}": mlp_w(w) for w in (64, 256, 512, 1024)}
    nets.update({f"cnn{c}": cnn_w(c) for c in (8, 32)})
    rows = []
    for name, make in nets.items():
        for bs in (32, 128, 512):
            rng = np.random.default_rng(0)
            x = rng.random((bs * batches, 28, 28, 1), dtype=np.float32)
            y = rng.integers(0, 10, bs * batches)
            models = {}
            for mode in ("fp32", "bf16-mixed"):
                m = make()
                m.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                          precision=mode, seed=0)
                m.fit(x, y, batch_size=bs, epochs=1, verbose=0)  # warm-up
                models[mode] = m
            with FlopCounterMode(display=False) as fc, torch.no_grad():
                models["fp32"](torch.from_numpy(x[:1]))
            times = {mode: [] for mode in models}
            for _ in range(reps):
                for mode, m in models.items():
                    t0 = time.perf_counter()
                    m.fit(x, y, batch_size=bs, epochs=1, verbose=0)
                    times[mode].append((time.perf_counter() - t0) / batches)
            f32, b16 = (statistics.median(times[k]) for k in ("fp32", "bf16-mixed"))
            row = {"net": name, "batch": bs, "mflop_per_step": fc.get_total_flops() * bs / 1e6,
                   "fp32_ms": f32 * 1e3, "bf16_mixed_ms": b16 * 1e3, "ratio": b16 / f32}
            rows.append(row)
            print(f"| {name} | {bs} | {row['mflop_per_step']:.1f} | {row['fp32_ms']:.2f} | "
                  f"{row['bf16_mixed_ms']:.2f} | {row['ratio']:.2f}x |", flush=True)
    return rows


def recipe_runs(name: str, runs: int, data_dir: str, modes=("auto", "fp32")) -> dict:
    """``brisk bench``'s time to the recipe's target, precision='auto' against other modes
    (forced through BRISK_AUTO_PRECISION), alternating run by run, seeds 0..runs-1 each."""
    from brisk.bench.runner import _one_run, spread

    rec = brisk.recipes.get(name)
    data = rec.load_data(data_dir)
    kw = dict(epochs=rec.epochs, device=torch.device("cpu"), target=rec.target,
              eval_every=rec.eval_every)
    out = {m: [] for m in modes}
    for mode in modes:  # untimed warm-up of each
        os.environ["BRISK_AUTO_PRECISION"] = "" if mode == "auto" else mode
        _one_run(rec, data, seed=runs, **kw)
    for seed in range(runs):
        for mode in modes:
            os.environ["BRISK_AUTO_PRECISION"] = "" if mode == "auto" else mode
            r = _one_run(rec, data, seed=seed, **kw)
            out[mode].append(r)
            ttt = r["time_to_target"]
            print(f"| {seed} | {mode} ({r['precision']}) | "
                  f"{'-' if ttt is None else f'{ttt:.2f}'} | {r['train_seconds']:.2f} | "
                  f"{r['final_accuracy']:.4f} |", flush=True)
    os.environ.pop("BRISK_AUTO_PRECISION")
    summary = {}
    for mode, rs in out.items():
        reached = [r["time_to_target"] for r in rs if r["time_to_target"] is not None]
        summary[mode] = {"time_to_target": spread(reached), "reached": len(reached),
                         "train_seconds": spread([r["train_seconds"] for r in rs]),
                         "final_accuracy": spread([r["final_accuracy"] for r in rs]),
                         "precision": rs[0]["precision"], "reason": rs[0]["precision_reason"]}
    print()
    for mode, sm in summary.items():
        t, acc = sm["time_to_target"], sm["final_accuracy"]
        ttt = "-" if t["mean"] is None else f"{t['mean']:.2f} s"
        print(f"{mode} ({sm['precision']}): {sm['reached']} of {runs} reached "
              f"{rec.target:.1%}, mean {ttt}; "
              f"train {sm['train_seconds']['mean']:.2f} s; final accuracy "
              f"{acc['mean']:.4f} +- {acc['std']:.4f}")
    if "auto" in summary and "fp32" in summary and summary["auto"]["reached"] and \
            summary["fp32"]["reached"]:
        a, f = (summary[m]["time_to_target"]["mean"] for m in ("auto", "fp32"))
        print(f"auto {f / a:.2f}x sooner than fp32")
    if "auto" in summary:
        print(f"precision 'auto' chose: {summary['auto']['precision']} "
              f"({summary['auto']['reason']})")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("BRISK_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="10k training samples, 2 reps")
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--crossover", action="store_true",
                    help="fp32 vs bf16-mixed per step against FLOPs per step")
    ap.add_argument("--recipe", default=None,
                    help="time a recipe to its target, precision='auto' against fp32, "
                    "alternating (--reps runs each)")
    args = ap.parse_args(argv)
    if args.recipe:
        print(f"torch {torch.__version__}, {cpu_name()}, {torch.get_num_threads()} threads; "
              f"{args.recipe}, {args.reps} runs each, alternating")
        print("| seed | precision | time to target s | train s | final acc |")
        print("|---|---|---:|---:|---:|")
        summary = recipe_runs(args.recipe, args.reps, args.data_dir,
                              modes=tuple(args.contenders.split(",")) if args.contenders
                              != ",".join(CONTENDERS) else ("auto", "fp32"))
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2, default=str))
        return 0
    if args.crossover:
        from brisk.engine.precision import AUTO_BF16_MIN_STEP_FLOPS, cpu_native_bf16
        print(f"torch {torch.__version__}, {cpu_name()}, native bf16: {cpu_native_bf16()}, "
              f"{torch.get_num_threads()} threads; precision='auto' threshold "
              f"{AUTO_BF16_MIN_STEP_FLOPS / 1e6:.0f} MFLOP per step")
        print("| net | batch | fwd MFLOP/step | fp32 ms/step | bf16-mixed ms/step | bf16/fp32 |")
        print("|---|---:|---:|---:|---:|---:|")
        rows = crossover()
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return 0
    reps = 2 if args.quick else args.reps

    (x, y), (xt, yt) = brisk.datasets.load_mnist(data_dir=args.data_dir)
    if args.quick:
        x, y = x[:10000], y[:10000]
    setups = {"mlp": (mlp, 32, x, xt), "cnn": (cnn, 128, x[..., None], xt[..., None])}
    names = args.contenders.split(",")
    print(f"torch {torch.__version__}, {cpu_name()}, {platform.machine()}, "
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
