"""Data-parallel scaling (issue 13): samples/s of ``fit`` in 1 and 2 processes under torchrun.

For the CLI's MLP and CNN (``brisk.cli.build_model``) on MNIST, each configuration runs
under ``torchrun --nproc-per-node W`` (W = 1: the plain one-process path; W = 2: DDP over
gloo), one thread per process, the same per-process batch (weak scaling: the global batch
doubles with W). Each process times its second and third epochs (the first warms up) and
rank 0 reports the global samples/s; then the time of one all-reduce of the model's
gradients (a flat tensor of its parameter count, the median of 50).

Scaling efficiency = samples/s(W=2) / (2 x samples/s(W=1)). With ``--strategies ddp,fsdp``
the W = 2 runs are repeated with ``strategy="fsdp"`` (FSDP2: weights, gradients and Adam's
state sharded, an all-gather per layer per forward and backward, a reduce-scatter of the
gradients): what sharding costs where the model would fit anyway. Prints the CPU (lscpu).

    python benchmarks/distributed.py --data-dir ../shared/data --samples 12000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return "unknown CPU"


def worker(args) -> None:
    """One torchrun process: train, time epochs 2-3, measure an all-reduce, report."""
    import torch
    import torch.distributed as dist

    import brisk
    from brisk.callbacks import Callback
    from brisk.cli import build_model

    torch.set_num_threads(1)
    (x, y), _ = brisk.datasets.load_mnist(args.data_dir, download=False)
    x, y = torch.as_tensor(x[: args.samples]), torch.as_tensor(y[: args.samples])
    if args.model == "cnn":
        x = x[..., None]  # NHWC, as the CLI feeds its convnet
    torch.manual_seed(0)
    model = build_model(args.model, (28, 28), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], device="cpu", seed=0, strategy=args.strategy)

    class Clock(Callback):
        def __init__(self):
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    clock = Clock()
    model.fit(x, y, batch_size=args.batch_size, epochs=3, verbose=0, callbacks=[clock])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_rank = -(-len(x) // world)  # shard size (wrapped up to a multiple of W)
    seconds = sum(clock.times[1:])
    sps = per_rank * world * 2 / seconds
    allreduce = None
    if world > 1:
        n = sum(p.numel() for p in model.parameters())  # DTensor shards count their full size
        buf = torch.zeros(n)
        for _ in range(5):
            dist.all_reduce(buf)
        ts = []
        for _ in range(50):
            t = time.perf_counter()
            dist.all_reduce(buf)
            ts.append(time.perf_counter() - t)
        allreduce = sorted(ts)[len(ts) // 2]
    if int(os.environ.get("RANK", "0")) == 0:
        with open(args.report, "w") as f:
            json.dump({"samples_per_second": sps, "epoch_seconds": clock.times,
                       "allreduce_seconds": allreduce,
                       "params": sum(p.numel() for p in model.parameters()),
                       "steps_per_epoch": -(-per_rank // args.batch_size)}, f)


def launch(model: str, world: int, args, strategy: str = "ddp") -> dict:
    with tempfile.TemporaryDirectory() as d:
        report = os.path.join(d, "report.json")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(world), HERE, "--worker", "--model", model,
               "--report", report, "--data-dir", args.data_dir, "--samples", str(args.samples),
               "--batch-size", str(args.batch_size), "--strategy", strategy]
        subprocess.run(cmd, check=True, env=env, timeout=1800)
        with open(report) as f:
            return json.load(f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("BRISK_DATA_DIR", "../shared/data"))
    p.add_argument("--samples", type=int, default=12000)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--strategies", default="ddp", help="at W = 2: ddp, fsdp or ddp,fsdp")
    p.add_argument("--strategy", default="ddp", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--report", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs); MNIST {args.samples} images, "
          f"batch {args.batch_size} per process, 1 thread per process")
    print("| model | params | processes | strategy | samples/s | efficiency | all-reduce ms | "
          "all-reduce share of a step |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for model in args.models.split(","):
        one = launch(model, 1, args)
        print(f"| {model} | {one['params']} | 1 | - | {one['samples_per_second']:.0f} | | | |")
        for strategy in args.strategies.split(","):
            two = launch(model, 2, args, strategy)
            eff = two["samples_per_second"] / (2 * one["samples_per_second"])
            step = 2 * args.batch_size / two["samples_per_second"]  # s per step at W = 2
            print(f"| {model} | {two['params']} | 2 | {strategy} | "
                  f"{two['samples_per_second']:.0f} | {eff:.2f} | "
                  f"{two['allreduce_seconds'] * 1e3:.3f} | {two['allreduce_seconds'] / step:.1%} |")


if __name__ == "__main__":
    main()
