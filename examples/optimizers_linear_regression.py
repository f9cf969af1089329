"""Optimizers on linear regression: how many steps and how much time each needs to fit.

A synthetic problem with a known answer: y = x w + b + noise, with 10 features whose scales
fall from 1 to 0.3 (so the loss surface is an elongated bowl, condition number ~11) and
noise of standard deviation 0.3. The best any linear model can do on the training set is
the least-squares MSE (the "noise floor", computed in closed form); the target is an MSE
within 1% above it. Each optimizer trains a ``Dense(1)`` model (loss 'mse') from the same
initial weights until the full-training-set MSE first reaches the target:

* full-batch gradient descent ('gd': one step per epoch on the exact gradient),
* per-sample SGD (batch_size=1), mini-batch SGD, SGD with momentum, Adam and RMSprop
  (batch_size=32), all at a constant learning rate.

A callback evaluates the full-data MSE after every ``every`` optimizer steps into a device
tensor (no host sync per step) and reads it once per epoch; the time spent evaluating is
excluded from the reported training time. Learning rates were tuned once for this problem
on the grid {1, 2, 5} x 10^k: the rate that reached the target in the fewest steps while
the MSE at the end of that epoch was still within it (constant-rate stochastic methods
settle in a noise ball that grows with the rate; a rate whose MSE only dips below the
target by chance does not count). Prints one line per optimizer and writes a convergence
plot (excess MSE vs steps and vs time, log scales) to ``--out``.

    python examples/optimizers_linear_regression.py [--out out] [--quick]
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import brisk
from brisk.layers import Dense
from brisk.optimizers import GD, SGD, Adam, Momentum, RMSprop

D, NOISE, TARGET = 10, 0.3, 1.01  # features, noise std, target = 1.01 x floor


def make_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, math.log10(0.3), D)  # feature std 1 .. 0.3
    x = torch.randn(n, D, generator=g) * scales
    w = torch.randn(D, 1, generator=g)
    y = x @ w + 0.5 + NOISE * torch.randn(n, 1, generator=g)
    return x, y


def noise_floor(x: torch.Tensor, y: torch.Tensor) -> float:
    """The least-squares (minimum) training MSE of y ~ x w + b, in float64."""
    xa = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    coef = torch.linalg.lstsq(xa, y.double()).solution
    return float(((xa @ coef - y.double()) ** 2).mean())


class MSERecorder(brisk.callbacks.Callback):
    """Full-data MSE every ``every`` optimizer steps, kept on the device and read once per
    epoch; stops training once it is <= ``target`` (or after ``max_steps`` steps). Times
    exclude the evaluations."""

    def __init__(self, x, y, target: float, every: int = 1, max_steps: int | None = None):
        self.x, self.y, self.target, self.every, self.max_steps = x, y, target, every, max_steps
        self.steps: list[int] = []
        self.times: list[float] = []  # seconds of training (evaluation excluded)
        self.mse: list[float] = []
        self._pending: list[torch.Tensor] = []
        self.reached: tuple[int, float] | None = None  # (steps, seconds) at first crossing

    def _record(self) -> None:
        t = time.perf_counter()
        with torch.no_grad():
            self._pending.append(((self.model(self.x) - self.y) ** 2).mean())
        self.steps.append(self.trainer.global_step)
        self.times.append(t - self._t0 - self._eval_s)
        self._eval_s += time.perf_counter() - t

    def on_train_begin(self, logs=None):
        self.x, self.y = self.x.to(self.trainer.device), self.y.to(self.trainer.device)
        self._eval_s, self._last = 0.0, 0
        self._t0 = time.perf_counter()
        self._record()  # step 0: the initial weights

    def on_train_batch_end(self, batch, logs=None):
        step = self.trainer.global_step
        if step != self._last and step % self.every == 0:  # an optimizer step happened
            self._last = step
            self._record()
        if self.max_steps is not None and step >= self.max_steps:
            self.trainer.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        start = len(self.mse)
        self.mse += torch.stack(self._pending).tolist()  # one host sync per epoch
        self._pending = []
        for i in range(start, len(self.mse)):
            if self.reached is None and self.mse[i] <= self.target:
                self.reached = (self.steps[i], self.times[i])
        if self.reached is not None:
            self.trainer.stop_training = True


@dataclass
class Run:
    name: str
    optimizer: object
    batch_size: int | None  # None: full batch ('gd')
    every: int = 1  # evaluate the full-data MSE every this many steps
    recorder: MSERecorder | None = field(default=None, repr=False)


def runs(n: int) -> list[Run]:
    return [
        Run("gd (full batch)", GD(learning_rate=0.5), None),
        Run("sgd (batch 1)", SGD(learning_rate=0.001), 1, every=max(1, n // 64)),
        Run("sgd (batch 32)", SGD(learning_rate=0.05), 32),
        Run("momentum 0.9 (batch 32)", Momentum(learning_rate=0.005), 32),
        Run("adam (batch 32)", Adam(learning_rate=0.01), 32),
        Run("rmsprop (batch 32)", RMSprop(learning_rate=0.005), 32),
    ]


def train(run: Run, x, y, target: float, init: dict, max_epochs: int, max_steps=None):
    model = brisk.Sequential([Dense(1, input_shape=(D,))])
    model.build((D,))
    model.load_state_dict(init)  # every optimizer starts from the same weights
    # CPU: ops finish before the host clock is read (a GPU would need a sync per reading)
    model.compile(optimizer=run.optimizer, loss="mse", device="cpu", seed=0)
    rec = MSERecorder(x, y, target, run.every, max_steps)
    # 'gd' takes one step per epoch: batch_size is only the chunk its gradient sums over
    model.fit(
        x, y, batch_size=run.batch_size or len(x), epochs=max_epochs, verbose=0, callbacks=[rec]
    )
    return rec


def plot(results: list[Run], floor: float, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax_steps, ax_time = fig.subplots(1, 2)
    for i, run in enumerate(results):
        rec = run.recorder
        excess = [max(m - floor, 1e-12) for m in rec.mse]
        steps = [max(s, 0.5) for s in rec.steps]  # step 0 on a log axis
        ax_steps.plot(steps, excess, color=f"C{i}", label=run.name)
        ax_time.plot(rec.times[1:], excess[1:], color=f"C{i}", label=run.name)  # from step 1
    for ax, xlabel in ((ax_steps, "optimizer steps"), (ax_time, "training time (s)")):
        ax.axhline((TARGET - 1) * floor, color="k", ls="--", lw=1, label="target (floor + 1%)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("training MSE - noise floor")
    ax_steps.set_title("excess MSE vs optimizer steps")
    ax_time.set_title("excess MSE vs wall time (evaluation excluded)")
    ax_steps.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="out", help="folder for the plot (default ./out)")
    p.add_argument("--samples", type=int, default=2000, help="training samples (default 2000)")
    p.add_argument("--max-epochs", type=int, default=200, help="cap per optimizer (default 200)")
    p.add_argument("--max-steps", type=int, default=None, help="cap per optimizer (default none)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: at most 40 epochs and 3000 steps (per-sample SGD stops early)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: faster for a model this small)",
    )
    args = p.parse_args(argv)
    n, max_epochs, max_steps = args.samples, args.max_epochs, args.max_steps
    if args.quick:
        max_epochs, max_steps = min(max_epochs, 40), min(max_steps or 3000, 3000)
    torch.set_num_threads(args.threads)

    x, y = make_data(n)
    floor = noise_floor(x, y)
    target = TARGET * floor
    torch.manual_seed(0)
    init = brisk.Sequential([Dense(1, input_shape=(D,))])
    init.build((D,))
    init = {k: v.clone() for k, v in init.state_dict().items()}
    print(
        f"{n} samples, {D} features; noise floor (least-squares MSE) {floor:.5f}; "
        f"target MSE <= {target:.5f} (floor + 1%)"
    )
    print(f"{'optimizer':<24} {'lr':>7} {'steps':>8} {'seconds':>8} {'final MSE':>10}")
    results = runs(n)
    for run in results:
        run.recorder = rec = train(run, x, y, target, init, max_epochs, max_steps)
        lr = run.optimizer.learning_rate
        if rec.reached is None:
            steps, secs = "not", "reached"
        else:
            steps, secs = str(rec.reached[0]), f"{rec.reached[1]:.3f}"
        print(f"{run.name:<24} {lr:>7g} {steps:>8} {secs:>8} {rec.mse[-1]:>10.5f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "optimizers_linear_regression.png"
    plot(results, floor, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
