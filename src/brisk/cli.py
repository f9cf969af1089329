"""Command line: ``brisk train`` and friends (``brisk --help``).

Example::

    brisk train                                   # 8x8 digits, offline, a few seconds
    brisk train --dataset mnist --model cnn --epochs 2 --data-dir ../shared/data --out runs/cnn
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

MODELS = ("mlp", "cnn")
DATASETS = ("digits", "mnist", "fashion-mnist")


def build_model(kind: str, input_shape: tuple[int, ...], num_classes: int):
    """The CLI's two models, in Keras-style layers (the README's quick start)."""
    import brisk
    from brisk.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D

    if kind == "mlp":
        return brisk.Sequential([
            Flatten(input_shape=input_shape),
            Dense(64, activation="relu"),
            Dense(64, activation="relu"),
            Dense(num_classes, activation="softmax"),
        ])
    # The Keras MNIST convnet; 'same' padding so it also fits 8x8 digits.
    return brisk.Sequential([
        Conv2D(32, 3, padding="same", activation="relu", input_shape=(*input_shape, 1)),
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


def cmd_train(args: argparse.Namespace) -> int:
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
    if args.lr is not None:
        optimizer = brisk.optimizers.get(args.optimizer, learning_rate=args.lr)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], device=args.device, seed=args.seed)
    t0 = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                        verbose=args.verbose, validation_data=(x_test, y_test) if args.validate else None)
    wall = time.perf_counter() - t0
    loss, acc = model.evaluate(x_test, y_test)
    samples = len(x_train) * args.epochs
    result = {
        "dataset": args.dataset,
        "model": args.model,
        "optimizer": args.optimizer,
        "epochs": args.epochs,
        "device": str(model.trainer.device),
        "test_loss": round(loss, 4),
        "test_accuracy": round(acc, 4),
        "train_seconds": round(wall, 2),
        "samples_per_second": round(samples / wall, 1),
    }
    print(f"test accuracy: {acc:.4f}  test loss: {loss:.4f}")
    print(f"wall time: {wall:.2f} s  ({result['samples_per_second']:.0f} samples/s on {result['device']})")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        model.save(os.path.join(args.out, "model.safetensors"))
        with open(os.path.join(args.out, "history.csv"), "w", newline="") as f:
            keys = list(history.history)
            w = csv.writer(f)
            w.writerow(["epoch", *keys])
            for i, epoch in enumerate(history.epoch):
                w.writerow([epoch + 1, *[history.history[k][i] for k in keys]])
        with open(os.path.join(args.out, "result.json"), "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}/model.safetensors, history.csv, result.json")
    return 0


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v}")
    return v


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
    t.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="dataset to train on (default: digits, bundled with scikit-learn)")
    t.add_argument("--data-dir", default=None,
                   help="folder holding the dataset files (default: $BRISK_DATA_DIR, then "
                   "~/.cache/brisk; files are downloaded there when online)")
    t.add_argument("--model", choices=MODELS, default="mlp",
                   help="mlp: Flatten-Dense64-Dense64-softmax; cnn: the Keras MNIST convnet")
    t.add_argument("--optimizer", default="adam",
                   help="optimizer name: adam, sgd, momentum, rmsprop, adamw, ... (default adam)")
    t.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: the optimizer's Keras default)")
    t.add_argument("--epochs", type=_positive_int, default=20, help="epochs (default 20)")
    t.add_argument("--batch-size", type=_positive_int, default=32, help="batch size (default 32)")
    t.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N, mps (default: cuda, then mps, then cpu)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--out", default=None,
                   help="folder to write model.safetensors, history.csv and result.json")
    t.add_argument("--validate", action="store_true",
                   help="report test-set loss and accuracy after every epoch")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                   help="0 silent, 1 progress bar, 2 one line per epoch (default 2)")
    t.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
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
