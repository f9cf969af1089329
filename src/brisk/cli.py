"""Command line: ``brisk train`` and friends (``brisk --help``).

Example::

    brisk train                                   # 8x8 digits, offline, a few seconds
    brisk train --dataset mnist --model cnn --epochs 2 --data-dir ../shared/data --out runs/cnn
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time

from brisk import distributed
from brisk._argtypes import positive_float as _positive_float
from brisk._argtypes import positive_int as _positive_int
from brisk._argtypes import seed as _seed
from brisk.engine.checkpoint import atomic_write_text

MODELS = ("mlp", "cnn")
DATASETS = ("digits", "mnist", "fashion-mnist")


def build_model(kind: str, input_shape: tuple[int, ...], num_classes: int):
    """The CLI's two models, in Keras-style layers (the README's quick start). The datasets
    are uint8 images: ``Rescaling(1/255)`` maps them to 0..1 inside the model."""
    import brisk
    from brisk.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D, Rescaling

    if kind == "mlp":
        return brisk.Sequential([
            Rescaling(1 / 255, input_shape=input_shape),
            Flatten(),
            Dense(64, activation="relu"),
            Dense(64, activation="relu"),
            Dense(num_classes, activation="softmax"),
        ])
    # The Keras MNIST convnet; 'same' padding so it also fits 8x8 digits.
    return brisk.Sequential([
        Rescaling(1 / 255, input_shape=(*input_shape, 1)),
        Conv2D(32, 3, padding="same", activation="relu"),
        MaxPooling2D(2),
        Conv2D(64, 3, padding="same", activation="relu"),
        MaxPooling2D(2),
        Flatten(),
        Dropout(0.5),
        Dense(num_classes, activation="softmax"),
    ])


def load_dataset(name: str, data_dir: str | None):
    from brisk import datasets

    if name == "digits":
        return datasets.load_digits()
    if name == "mnist":
        return datasets.load_mnist(data_dir=data_dir)
    return datasets.load_fashion_mnist(data_dir=data_dir)


def _data_and_model(args: argparse.Namespace):
    """The dataset and the compiled model that ``train`` and ``lr-find`` share."""
    import torch

    import brisk

    if args.seed is not None:
        torch.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_dataset(args.dataset, args.data_dir)
    if args.model == "cnn":
        x_train, x_test = x_train[..., None], x_test[..., None]
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    model = build_model(args.model, tuple(x_train.shape[1:3] if args.model == "cnn" else x_train.shape[1:]),
                        num_classes)
    optimizer = args.optimizer
    if getattr(args, "lr", None) is not None:
        optimizer = brisk.optimizers.get(args.optimizer, learning_rate=args.lr)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], device=args.device, seed=args.seed)
    return (x_train, y_train), (x_test, y_test), model


def cmd_lr_find(args: argparse.Namespace) -> int:
    (x_train, y_train), _, model = _data_and_model(args)
    result = model.lr_find(x_train, y_train, start_lr=args.start_lr, end_lr=args.end_lr,
                           num_steps=args.steps, batch_size=args.batch_size,
                           smooth=args.smooth, diverge=args.diverge, plot=args.plot)
    print(result)
    if result.suggestion is not None:
        print(f"suggested learning rate: {result.suggestion:.3g}")
    print(f"wrote {args.plot}")
    return 0


def _check_out_dir(out: str | None) -> None:
    """``--out`` must be a writable folder before anything trains (not after)."""
    if out is None:
        return
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out: cannot create the folder {out!r} ({e.strerror or e})") from e
    if not os.path.isdir(out) or not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"--out: {out!r} is not a writable folder")


def _run_history():
    from brisk.callbacks import History

    class RunHistory(History):
        """History of the whole run: restored from the backup, so the history.csv of a
        resumed run holds every epoch once."""

        def load_state_dict(self, state: dict) -> None:
            self.epoch = [int(e) for e in state["epoch"]]
            self.history = {k: [float(v) for v in vs] for k, vs in state["history"].items()}

    return RunHistory()


def _check_backup_epochs(backup: str, epochs: int) -> None:
    """A backup already at or past ``--epochs`` would train nothing, and fit's normal end
    would then delete it: refused, before anything runs."""
    from brisk.engine.checkpoint import load_checkpoint

    try:
        state = load_checkpoint(os.path.join(backup, "latest.pt"))
        at = int((state.get("position") or {}).get("epoch", state["epoch"]))
    except (OSError, ValueError, KeyError, TypeError):
        return  # unreadable: BackupAndRestore falls back to the previous one, or says why
    if at >= epochs:
        raise ValueError(f"--epochs {epochs}: the backup in {backup} has already trained {at} "
                         f"epochs; pass --epochs > {at} to go on, or --no-resume to start over")


def _torchrun(argv: list[str], nproc: int) -> int:
    """``brisk train --nproc-per-node N ...``: the same command under torchrun, on this
    machine (``--standalone``: a local rendezvous on a free port); returns its exit code."""
    import subprocess

    if distributed.env_world_size() > 1:
        raise ValueError("--nproc-per-node: already running under torchrun "
                         f"(WORLD_SIZE={os.environ['WORLD_SIZE']}); drop the option")
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc-per-node":
            skip = True
        elif not a.startswith("--nproc-per-node="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", str(nproc), "-m", "brisk", *rest]
    # restarted workers must not share torchrun's TCP store (torch issue 135712: they may
    # read the addresses of the group they replace)
    env = dict(os.environ, TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    return subprocess.run(cmd, env=env).returncode


def cmd_train(args: argparse.Namespace) -> int:
    if args.nproc_per_node is not None:
        return _torchrun(args.argv, args.nproc_per_node)
    _check_out_dir(args.out)
    if args.recipe is not None:
        from brisk.recipes.cli import run_recipe_from_args

        return run_recipe_from_args(args.recipe, data_dir=args.data_dir, device=args.device,
                                    epochs=args.epochs, seed=args.seed, out=args.out)
    if args.epochs is None:
        args.epochs = 20
    (x_train, y_train), (x_test, y_test), model = _data_and_model(args)
    # under torchrun (the model's Trainer joined the process group) rank 0 prints and writes
    zero = distributed.is_rank_zero()
    callbacks, history = [], None
    if args.out:  # a backup every epoch: run the same command again after a crash
        from brisk.callbacks import BackupAndRestore

        backup = os.path.join(args.out, "backup")
        if args.no_resume:
            for name in ("latest.pt", "previous.pt"):
                if zero and os.path.exists(os.path.join(backup, name)):
                    os.unlink(os.path.join(backup, name))
            distributed.barrier()  # no rank reads a backup rank 0 is deleting
        elif os.path.exists(os.path.join(backup, "latest.pt")) or os.path.exists(
                os.path.join(backup, "previous.pt")):
            _check_backup_epochs(backup, args.epochs)
            if zero:
                print(f"resuming from the backup in {backup} (--no-resume starts over)")
        history = _run_history()
        callbacks = [history, BackupAndRestore(backup)]
    t0 = time.perf_counter()
    ran = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                    verbose=args.verbose, callbacks=callbacks,
                    validation_data=(x_test, y_test) if args.validate else None)
    wall = time.perf_counter() - t0
    history = history or ran
    loss, acc = model.evaluate(x_test, y_test)
    samples = len(x_train) * len(ran.epoch)
    result = {
        "dataset": args.dataset,
        "model": args.model,
        "optimizer": args.optimizer,
        "epochs": args.epochs,
        "epochs_this_run": len(ran.epoch),  # fewer after a resume
        "device": str(model.trainer.device),
        "test_loss": round(loss, 4),
        "test_accuracy": round(acc, 4),
        "train_seconds": round(wall, 2),
        "samples_per_second": round(samples / wall, 1),
    }
    if not zero:
        return 0
    print(f"test accuracy: {acc:.4f}  test loss: {loss:.4f}")
    print(f"wall time: {wall:.2f} s  ({result['samples_per_second']:.0f} samples/s on {result['device']})")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        model.save(os.path.join(args.out, "model.safetensors"))
        # every file through the atomic writer: a kill leaves the old file or the new one
        keys = list(history.history)
        rows = io.StringIO()
        w = csv.writer(rows)
        w.writerow(["epoch", *keys])
        for i, epoch in enumerate(history.epoch):
            w.writerow([epoch + 1, *[history.history[k][i] for k in keys]])
        atomic_write_text(os.path.join(args.out, "history.csv"), rows.getvalue())
        atomic_write_text(os.path.join(args.out, "result.json"), json.dumps(result, indent=2))
        print(f"wrote {args.out}/model.safetensors, history.csv, result.json")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brisk",
        description="Fast, cheap neural-network training on PyTorch with a Keras-style front.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    t = sub.add_parser(
        "train",
        help="train a model on a dataset and report test accuracy, wall time and samples/s",
        description="Train a Keras-style model. With no options: an MLP on the 8x8 digits "
        "bundled with scikit-learn (offline, a few seconds on a CPU).",
    )
    t.add_argument("--recipe", default=None,
                   help="train a named recipe instead (mnist-mlp, mnist-cnn, fashion-mnist-cnn); "
                   "--data-dir, --device, --epochs, --seed and --out apply")
    _data_model_arguments(t)
    t.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: the optimizer's Keras default)")
    t.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs (default 20; a recipe's own default with --recipe)")
    t.add_argument("--batch-size", type=_positive_int, default=32, help="batch size (default 32)")
    t.add_argument("--out", default=None,
                   help="folder to write model.safetensors, history.csv and result.json; "
                   "a backup of the training state goes to OUT/backup every epoch, and the "
                   "same command run again after a crash continues from it")
    t.add_argument("--no-resume", action="store_true",
                   help="with --out: delete OUT/backup and start over")
    t.add_argument("--validate", action="store_true",
                   help="report test-set loss and accuracy after every epoch")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                   help="0 silent, 1 progress bar, 2 one line per epoch (default 2)")
    t.add_argument("--nproc-per-node", type=_positive_int, default=None,
                   help="train data-parallel in N processes on this machine: starts "
                   "'torchrun --standalone --nproc-per-node N -m brisk train ...' (several "
                   "machines: run torchrun yourself, see the README)")
    t.set_defaults(func=cmd_train)

    f = sub.add_parser(
        "lr-find",
        help="learning-rate range test (Smith 2015): suggest a rate, plot loss against rate",
        description="Train for a few steps while the learning rate grows exponentially from "
        "--start-lr to --end-lr; print the rate where the smoothed loss fell fastest and "
        "write a PNG of loss against rate. The model is left untrained.",
    )
    _data_model_arguments(f)
    f.add_argument("--start-lr", type=_positive_float, default=1e-7, help="first rate (1e-7)")
    f.add_argument("--end-lr", type=_positive_float, default=10.0, help="last rate (10)")
    f.add_argument("--steps", type=_positive_int, default=100, help="optimizer steps (100)")
    f.add_argument("--batch-size", type=_positive_int, default=32, help="batch size (default 32)")
    f.add_argument("--smooth", type=float, default=0.98,
                   help="beta of the loss's exponential moving average, in [0, 1) (0.98)")
    f.add_argument("--diverge", type=_positive_float, default=4.0,
                   help="stop once the smoothed loss exceeds this times its minimum (4)")
    f.add_argument("--plot", default="lr_find.png", help="PNG to write (default lr_find.png)")
    f.set_defaults(func=cmd_lr_find)

    from brisk.compress.cli import add_compress_arguments

    c = sub.add_parser(
        "compress",
        help="prune -> fine-tune -> fold -> int8-quantize a saved model; size, accuracy, latency",
        description="From a model saved by 'brisk train --out DIR' (or model.save), run the "
        "Deep Compression pipeline and print, per stage, non-zero parameters, file size, test "
        "accuracy and CPU latency at batch 1 and 256.",
    )
    add_compress_arguments(c)
    c.set_defaults(func=cmd_compress)

    from brisk.bench.cli import add_bench_arguments

    b = sub.add_parser(
        "bench",
        help="time to accuracy of a recipe: N timed runs after a warm-up; JSON, table, PNG",
        description="Run a recipe N times after an untimed warm-up and report, per run, the "
        "training wall time to the first evaluation at or above the target (evaluation time "
        "excluded and reported separately), final accuracy (mean and spread), samples/s, "
        "device and library versions.",
    )
    add_bench_arguments(b)
    b.set_defaults(func=cmd_bench)
    return parser


def cmd_bench(args: argparse.Namespace) -> int:
    from brisk.bench.cli import run_bench_from_args

    return run_bench_from_args(args)


def cmd_compress(args: argparse.Namespace) -> int:
    from brisk.compress.cli import run_compress_from_args

    return run_compress_from_args(args)


def _data_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="dataset to train on (default: digits, bundled with scikit-learn)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding the dataset files (default: $BRISK_DATA_DIR, then "
                   "~/.cache/brisk; files are downloaded there when online)")
    p.add_argument("--model", choices=MODELS, default="mlp",
                   help="mlp: Flatten-Dense64-Dense64-softmax; cnn: the Keras MNIST convnet")
    p.add_argument("--optimizer", default="adam",
                   help="optimizer name: adam, sgd, momentum, rmsprop, adamw, ... (default adam)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N, mps (default: cuda, then mps, then cpu)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as e:
        print(f"brisk {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
