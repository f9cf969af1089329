"""Per-epoch training time: brisk ``fit`` vs a hand-written eager PyTorch loop, one process.

The model is the Keras-style MNIST MLP (784-64-64-10, relu, softmax output), Adam lr 1e-3,
batch 32, sparse categorical cross-entropy, accuracy metric, on real MNIST (60000 training
images as float32 in [0, 1]). The peer is the loop of the PyTorch tutorials:
``DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)``, an ``nn.Sequential`` of
``nn.Linear``/``nn.ReLU``, ``nn.CrossEntropyLoss``, ``torch.optim.Adam`` with its defaults,
``backward``/``step``/``zero_grad``, and the running loss and accuracy read with ``.item()``
every step, as the tutorials do. A third contender is the leanest eager loop
(``LeanLoopMLP``: pre-sliced tensors, fused Adam, no metrics), a floor for eager PyTorch.

Method: both contenders get the same arrays and the same torch thread count (``--threads``,
default 1: see its help for why). Each trains one untimed warm-up epoch, then the
contenders alternate for ``--reps`` repetitions (the order rotates every repetition so
neither always runs first), each repetition timing one training call of
``--epochs-per-rep`` epochs with a wall clock (its own setup included: what a user waits for). Reported per contender: median seconds per epoch with min..max and IQR, and the
ratio brisk / hand loop of the medians plus the range of the per-repetition (paired) ratios.
After all epochs each model's test accuracy is printed, a check that both trained equally.

    python benchmarks/overhead.py [--reps 5] [--epochs-per-rep 1] [--threads N] [--quick]
                                  [--data-dir DIR] [--json PATH]

The contenders, the harness and the table printer are imported by ``benchmarks/peers.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parents[1]
try:
    import brisk  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(REPO / "src"))

import brisk  # noqa: E402
from brisk.layers import Dense  # noqa: E402

DEFAULT_DATA_DIR = os.environ.get("BRISK_DATA_DIR") or str(REPO.parent / "shared" / "data")
BATCH = 32
LR = 1e-3
QUICK_TRAIN = 6000  # --quick: first 6000 training images (10% of an epoch), 2000 test
QUICK_TEST = 2000


# ----------------------------------------------------------------------------- data
class MLPData:
    """MNIST flattened to (N, 784) float32 in [0, 1] with int64 labels, as numpy arrays
    (what a Keras user passes to ``fit``) and torch views of the same memory."""

    def __init__(self, data_dir: str, train_limit: int | None = None,
                 test_limit: int | None = None) -> None:
        (x, y), (xt, yt) = brisk.datasets.load_mnist(data_dir=data_dir, download=False)
        x, y = x[:train_limit], y[:train_limit]
        xt, yt = xt[:test_limit], yt[:test_limit]
        self.x = x.reshape(len(x), 784).astype(np.float32) / 255
        self.y = y.astype(np.int64)
        self.x_test = xt.reshape(len(xt), 784).astype(np.float32) / 255
        self.y_test = yt.astype(np.int64)
        self.tx, self.ty = torch.from_numpy(self.x), torch.from_numpy(self.y)

    def __len__(self) -> int:
        return len(self.x)


@torch.no_grad()
def torch_accuracy(module: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy of a torch module whose outputs' argmax is the class (logits or probs)."""
    was = module.training
    module.eval()
    pred = torch.cat([module(torch.from_numpy(x[i:i + 1000])).argmax(1)
                      for i in range(0, len(x), 1000)])
    module.train(was)
    return float((pred == torch.from_numpy(y)).float().mean())


# ----------------------------------------------------------------------------- contenders
class Contender(Protocol):
    """One way of training the MLP. ``train(epochs)`` is the timed call."""

    name: str

    def train(self, epochs: int) -> None: ...

    def test_accuracy(self) -> float: ...


class BriskMLP:
    """The Keras-style code, run by brisk: ``Sequential`` + ``compile`` + ``fit``."""

    name = "brisk fit"

    def __init__(self, data: MLPData, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.data = data
        self.model = brisk.Sequential([
            Dense(64, activation="relu", input_shape=(784,)),
            Dense(64, activation="relu"),
            Dense(10, activation="softmax"),
        ])
        self.model.compile(optimizer=brisk.optimizers.Adam(learning_rate=LR),
                           loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def train(self, epochs: int) -> None:
        self.model.fit(self.data.x, self.data.y, batch_size=BATCH, epochs=epochs, verbose=0)

    def test_accuracy(self) -> float:
        return float(self.model.evaluate(self.data.x_test, self.data.y_test,
                                         return_dict=True)["accuracy"])


def tutorial_mlp() -> nn.Sequential:
    """The same MLP written with torch.nn (logits out; CrossEntropyLoss applies softmax)."""
    return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def tutorial_train_epoch(dataloader: DataLoader, model: nn.Module, loss_fn: nn.Module,
                         optimizer: torch.optim.Optimizer) -> tuple[float, float]:
    """One epoch exactly as the PyTorch tutorials write it; returns (mean loss, accuracy)."""
    model.train()
    running_loss, correct, seen = 0.0, 0.0, 0
    for X, y in dataloader:
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        running_loss += loss.item()
        correct += (pred.argmax(1) == y).type(torch.float).sum().item()
        seen += len(y)
    return running_loss / len(dataloader), correct / seen


class HandLoopMLP:
    """The hand-written eager loop of the PyTorch tutorials (see ``tutorial_train_epoch``)."""

    name = "hand-written loop"

    def __init__(self, data: MLPData, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.data = data
        self.model = tutorial_mlp()
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.Adam(self.model.parameters())  # defaults: lr 1e-3
        self.loader = DataLoader(TensorDataset(data.tx, data.ty), batch_size=BATCH,
                                 shuffle=True)

    def train(self, epochs: int) -> None:
        for _ in range(epochs):
            tutorial_train_epoch(self.loader, self.model, self.loss_fn, self.optimizer)

    def test_accuracy(self) -> float:
        return torch_accuracy(self.model, self.data.x_test, self.data.y_test)


class LeanLoopMLP:
    """The leanest eager loop we know (issue 15 item 6): the epoch's permutation applied once
    to the whole tensors, then ``split`` views as batches (no DataLoader, no collation),
    ``F.cross_entropy``, ``torch.optim.Adam(fused=True)``, ``zero_grad(set_to_none=True)``,
    no per-step ``.item()`` and no metrics. A floor for eager PyTorch, not what people write."""

    name = "lean eager loop"

    def __init__(self, data: MLPData, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.data = data
        self.model = tutorial_mlp()
        self.optimizer = torch.optim.Adam(self.model.parameters(), fused=True)

    def train(self, epochs: int) -> None:
        x, y, model, opt = self.data.tx, self.data.ty, self.model, self.optimizer
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(x))
            for xb, yb in zip(x[order].split(BATCH), y[order].split(BATCH), strict=True):
                loss = nn.functional.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

    def test_accuracy(self) -> float:
        return torch_accuracy(self.model, self.data.x_test, self.data.y_test)


# ----------------------------------------------------------------------------- harness
def alternate(contenders: Sequence[Contender], reps: int, epochs_per_rep: int = 1,
              warmup_epochs: int = 1, threads: int | None = None,
              log: Callable[[str], None] = print) -> dict[str, list[float]]:
    """Warm each contender up (untimed), then time ``reps`` rounds in rotating order.

    Returns seconds per epoch for each contender, one value per repetition, in rep order
    (so values at the same index were measured side by side and can be paired).

    Example::

        times = alternate([BriskMLP(data), HandLoopMLP(data)], reps=3)
    """
    if reps < 1 or epochs_per_rep < 1 or warmup_epochs < 0:
        raise ValueError("reps and epochs_per_rep must be >= 1, warmup_epochs >= 0")
    for c in contenders:
        if warmup_epochs:
            t0 = time.perf_counter()
            c.train(warmup_epochs)
            log(f"  warm-up {c.name}: {warmup_epochs} epoch(s) in "
                f"{time.perf_counter() - t0:.1f} s")
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    n = len(contenders)
    for r in range(reps):
        order = [contenders[(r + k) % n] for k in range(n)]
        parts = []
        for c in order:
            if threads and torch.get_num_threads() != threads:  # a peer changed it
                torch.set_num_threads(threads)
            gc.collect()  # collector pauses from one contender's garbage hit the next one
            t0 = time.perf_counter()
            c.train(epochs_per_rep)
            dt = (time.perf_counter() - t0) / epochs_per_rep
            times[c.name].append(dt)
            parts.append(f"{c.name} {dt:.2f}")
        log(f"  rep {r + 1}/{reps} (s/epoch): " + ", ".join(parts))
    return times


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and interquartile range of a list of timings."""
    v = sorted(values)
    q1, q3 = (statistics.quantiles(v, n=4, method="inclusive")[::2] if len(v) > 1
              else (v[0], v[0]))
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "iqr": q3 - q1,
            "n": len(v)}


def ratio(times: dict[str, list[float]], a: str, b: str) -> dict[str, float]:
    """a / b: ratio of the medians, and the range of the per-repetition (paired) ratios."""
    paired = [x / y for x, y in zip(times[a], times[b], strict=True)]
    return {"of_medians": statistics.median(times[a]) / statistics.median(times[b]),
            "paired_median": statistics.median(paired), "paired_min": min(paired),
            "paired_max": max(paired)}


def print_table(times: dict[str, list[float]], n_samples: int,
                accuracies: dict[str, float] | None = None) -> dict[str, dict]:
    """Print per-contender medians and spreads; returns the summaries."""
    summaries = {k: summarize(v) for k, v in times.items()}
    print(f"{'contender':<26}{'median s/epoch':>15}{'min..max':>16}{'IQR':>8}"
          f"{'samples/s':>11}{'test acc':>10}")
    for name, s in summaries.items():
        acc = (accuracies or {}).get(name)
        acc_s = "" if acc is None else f"{acc:.4f}"
        print(f"{name:<26}{s['median']:>15.2f}{s['min']:>8.2f}..{s['max']:<6.2f}"
              f"{s['iqr']:>8.2f}{n_samples / s['median']:>11,.0f}{acc_s:>10}")
    return summaries


def print_ratio(times: dict[str, list[float]], a: str, b: str,
                target: float | None = None) -> dict[str, float]:
    r = ratio(times, a, b)
    verdict = ""
    if target is not None:
        verdict = f"  target <= {target}: {'met' if r['of_medians'] <= target else 'NOT met'}"
    print(f"{a} / {b}: {r['of_medians']:.3f}x (per-rep paired {r['paired_min']:.3f}.."
          f"{r['paired_max']:.3f}){verdict}")
    return r


def environment(threads: int) -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "brisk": getattr(brisk, "__version__", "?"), "numpy": np.__version__,
            "threads": threads, "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}


def add_common_args(ap: argparse.ArgumentParser, reps: int) -> None:
    ap.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                    help="directory holding mnist/ (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=reps, help="timed repetitions per contender")
    ap.add_argument("--epochs-per-rep", type=int, default=1,
                    help="epochs per timed training call (its setup is amortised over them)")
    ap.add_argument("--warmup-epochs", type=int, default=1, help="untimed epochs first")
    ap.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads, the same for every contender (0: torch's default, "
             "all cores). Default 1: batch-32 MLP steps gain little from intra-op threads, "
             "and on a shared machine multi-threaded ops stall whenever another process "
             "holds a core (measured here under load 7: 13-28 s vs 0.35 s for the same "
             "6000-image epoch with 2 threads vs 1). On a quiet machine try --threads 0 too")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help=f"a check that the script runs: {QUICK_TRAIN} training images, "
                         "2 reps, no warm-up")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")


def setup_run(args: argparse.Namespace) -> tuple[MLPData, int]:
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    if args.quick:
        args.reps, args.warmup_epochs = min(args.reps, 2), 0
    data = MLPData(args.data_dir, QUICK_TRAIN if args.quick else None,
                   QUICK_TEST if args.quick else None)
    return data, threads


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2))
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, reps=5)
    args = ap.parse_args(argv)
    data, threads = setup_run(args)
    print(f"torch {torch.__version__}, brisk {brisk.__version__}, {threads} thread(s), "
          f"MNIST MLP on {len(data)} images, batch {BATCH}, {args.reps} reps x "
          f"{args.epochs_per_rep} epoch(s) after {args.warmup_epochs} warm-up epoch(s)")
    contenders = [BriskMLP(data, args.seed), HandLoopMLP(data, args.seed),
                  LeanLoopMLP(data, args.seed)]
    times = alternate(contenders, args.reps, args.epochs_per_rep, args.warmup_epochs, threads)
    acc = {c.name: c.test_accuracy() for c in contenders}
    total = args.warmup_epochs + args.reps * args.epochs_per_rep
    print(f"\nper-epoch training time ({total} epochs each; test accuracy after all of them)")
    summaries = print_table(times, len(data), acc)
    r = print_ratio(times, BriskMLP.name, HandLoopMLP.name, target=0.65)
    r_lean = print_ratio(times, BriskMLP.name, LeanLoopMLP.name, target=1.1)
    write_json(args.json, {"benchmark": "overhead", "args": vars(args),
                           "environment": environment(threads), "seconds_per_epoch": times,
                           "summary": summaries, "test_accuracy": acc,
                           "ratio_brisk_over_hand_loop": r,
                           "ratio_brisk_over_lean_loop": r_lean})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
