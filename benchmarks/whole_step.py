"""Whole-step compilation on the machine at hand (issue 15, item 6): eager vs ``torch.compile``.

Three ways to run the same training step (forward, loss, backward, optimizer step, zeroed
gradients) on real MNIST batches, in one process:

* ``eager``: plain PyTorch, as brisk's ``fit`` runs it by default;
* ``compile fwd+bwd``: ``torch.compile`` of forward and loss (backward through AOTAutograd),
  the optimizer step eager: what ``Trainer(compile=True)`` compiles;
* ``compile whole step``: forward, loss, backward and the optimizer step in one compiled
  function (dynamo traces ``loss.backward()`` and ``opt.step()`` as one graph where it can).

Networks: the Keras-style MLP of ``benchmarks/overhead.py`` (784-64-64-10, Adam, batch 32)
and the ``mnist-cnn`` recipe's convnet (brisk ``Sequential``, Nesterov SGD, batch 128,
channels-last on CPU). Each mode first runs ``--warmup`` steps (the compile time is
reported separately), then the modes alternate in blocks of ``--block`` steps for
``--reps`` rounds; printed: the median ms per step, its ratio to eager, and the compile
time. A mode that wins here is worth keeping; one that loses is not (the issue's rule).

    python benchmarks/whole_step.py [--nets mlp,cnn] [--threads 2] [--reps 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import brisk  # noqa: E402
from brisk.layers import Dense, Flatten, Rescaling  # noqa: E402

DATA = os.environ.get("BRISK_DATA_DIR") or str(ROOT.parent / "shared" / "data")


def mlp() -> tuple[nn.Module, torch.optim.Optimizer, int]:
    m = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                      nn.Linear(64, 10))
    return m, torch.optim.Adam(m.parameters(), lr=1e-3), 32


def cnn() -> tuple[nn.Module, torch.optim.Optimizer, int]:
    from brisk.recipes.mnist import conv_pool_bn

    m = brisk.Sequential([Rescaling(1 / 255, input_shape=(28, 28, 1)), *conv_pool_bn(16),
                          *conv_pool_bn(32), *conv_pool_bn(64), Flatten(), Dense(10)])
    m.build((28, 28, 1))
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    return m, opt, 128


def batches(net: str, batch: int, device: torch.device):
    (x, y), _ = brisk.datasets.load_mnist(data_dir=DATA, download=False)
    x = torch.from_numpy(x).to(device)
    y = torch.from_numpy(y).long().to(device)
    x = x.reshape(len(x), 784).float().div_(255) if net == "mlp" else x[..., None]
    x = x[: len(x) - len(x) % batch]
    return list(zip(x.split(batch), y[: len(x)].split(batch), strict=True))


def make_step(model: nn.Module, opt: torch.optim.Optimizer, mode: str):
    def fwd_loss(xb, yb):
        return F.cross_entropy(model(xb), yb)

    if mode == "eager":
        def step(xb, yb):
            loss = fwd_loss(xb, yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step
    if mode == "compile fwd+bwd":
        compiled = torch.compile(fwd_loss, dynamic=False)

        def step(xb, yb):
            compiled(xb, yb).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    def whole(xb, yb):
        loss = fwd_loss(xb, yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return torch.compile(whole, dynamic=False)


MODES = ("eager", "compile fwd+bwd", "compile whole step")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_net(net: str, args, device: torch.device) -> dict:
    data = batches(net, {"mlp": 32, "cnn": 128}[net], device)
    steps, compile_s = {}, {}
    for mode in MODES:
        torch.manual_seed(0)
        model, opt, _ = (mlp if net == "mlp" else cnn)()
        model.to(device).train()  # the same Parameter objects: the optimizer keeps them
        if net == "cnn" and device.type == "cpu":  # as the recipe: NHWC convolutions
            model.to(memory_format=torch.channels_last)
        step = make_step(model, opt, mode)
        t0 = time.perf_counter()
        for xb, yb in data[: args.warmup]:
            step(xb, yb)
        sync(device)
        compile_s[mode] = time.perf_counter() - t0
        steps[mode] = step
    times: dict[str, list[float]] = {m: [] for m in MODES}
    pos = args.warmup
    for r in range(args.reps):
        order = [MODES[(r + k) % len(MODES)] for k in range(len(MODES))]
        for mode in order:
            block = [data[(pos + i) % len(data)] for i in range(args.block)]
            sync(device)
            t0 = time.perf_counter()
            for xb, yb in block:
                steps[mode](xb, yb)
            sync(device)
            times[mode].append((time.perf_counter() - t0) / args.block * 1e3)
        pos += args.block
    med = {m: statistics.median(v) for m, v in times.items()}
    print(f"\n{net}: {len(data)} batches available; {args.reps} rounds of {args.block} steps")
    print(f"{'mode':22s} {'ms/step':>9s} {'min..max':>15s} {'vs eager':>9s} {'warm-up s':>10s}")
    for m in MODES:
        print(f"{m:22s} {med[m]:9.3f} {min(times[m]):7.3f}..{max(times[m]):<7.3f} "
              f"{med[m] / med['eager']:8.2f}x {compile_s[m]:10.1f}")
    return {"ms_per_step": times, "median": med, "warmup_s": compile_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="mlp,cnn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--block", type=int, default=200, help="steps per timed block")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps (compilation)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name'"], capture_output=True,
                         text=True).stdout.strip()
    print(f"torch {torch.__version__}, python {platform.python_version()}, device {device}, "
          f"{torch.get_num_threads()} thread(s); {cpu}")
    for net in args.nets.split(","):
        run_net(net.strip(), args, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
