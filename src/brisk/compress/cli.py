"""``brisk compress MODEL``: its arguments and the plain function that runs it.

The command runs ``brisk.compress.pipeline.run_pipeline`` on a model saved by brisk
(``model.save(path)``, or the folder ``brisk train --out DIR`` wrote) and prints the
per-stage table: non-zero parameters, file size, test accuracy and CPU latency at batch 1
and 256 for dense -> pruned -> fine-tuned -> folded -> quantized.

Example::

    import argparse
    from brisk.compress.cli import add_compress_arguments, run_compress_from_args
    p = argparse.ArgumentParser(prog="brisk compress")
    add_compress_arguments(p)
    run_compress_from_args(p.parse_args(["runs/cnn", "--dataset", "mnist",
                                         "--sparsity", "0.9", "--max-drop", "0.5"]))
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from brisk.compress.pipeline import DATASETS

__all__ = ["add_compress_arguments", "run_compress_from_args"]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_compress_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``brisk compress``'s arguments to ``parser`` (a parser or a subcommand's parser).

    Values are range-checked by ``run_compress_from_args`` (a ValueError naming the flag),
    not here, so that a caller gets the same error from the CLI and from Python.

    Example::

        p = argparse.ArgumentParser(prog="brisk compress")
        add_compress_arguments(p)
        p.parse_args(["runs/mlp", "--sparsity", "0.92"]).sparsity     # 0.92
    """
    parser.add_argument(
        "model", metavar="MODEL",
        help="a model saved by brisk: a .safetensors file from model.save(path), or the "
        "folder `brisk train --out DIR` wrote (DIR/model.safetensors). The images reach it "
        "as uint8 0..255, unscaled (as fit feeds them): a model trained on x / 255 needs "
        "Rescaling(1 / 255) as its first layer (brisk train's models have it)",
    )  # fmt: skip
    parser.add_argument(
        "--dataset", default=None,
        help=f"dataset to fine-tune and test on: {', '.join(DATASETS)} (default: the one in "
        "MODEL's result.json, written by `brisk train --out`)",
    )  # fmt: skip
    parser.add_argument(
        "--data-dir", default=None,
        help="folder holding the dataset files (default: $BRISK_DATA_DIR, then ~/.cache/brisk)",
    )  # fmt: skip
    parser.add_argument(
        "--sparsity", type=_float, default=0.9,
        help="fraction of Linear/Conv weights pruned to zero, in [0, 1) (default 0.9)",
    )  # fmt: skip
    parser.add_argument(
        "--max-drop", type=_float, default=None,
        help="accuracy points (0.5 = half a percentage point) the model may lose on a "
        "held-out 10%% of the training set before the sparsity schedule stops "
        "(default: no guard, prune to --sparsity)",
    )  # fmt: skip
    parser.add_argument(
        "--epochs", type=_int, default=10,
        help="training epochs while pruning; the sparsity ramps up over the first 2/3 "
        "(default 10)",
    )  # fmt: skip
    parser.add_argument(
        "--finetune-epochs", type=_int, default=None,
        help="epochs with the masks fixed after pruning (default: EPOCHS // 2, at least 1)",
    )  # fmt: skip
    parser.add_argument(
        "--share-epochs", type=_int, default=1,
        help="codebook fine-tuning epochs after weight sharing (default 1; 0 skips)",
    )  # fmt: skip
    parser.add_argument(
        "--bits", type=_int, default=5,
        help="codebook bits of Linear weights in the compressed file, 1-8 (default 5)",
    )  # fmt: skip
    parser.add_argument(
        "--conv-bits", type=_int, default=8,
        help="codebook bits of conv weights in the compressed file, 1-8 (default 8)",
    )  # fmt: skip
    parser.add_argument(
        "--lr", type=_float, default=1e-3,
        help="Adam learning rate while pruning (fine-tuning uses LR/2, codebooks LR/10; "
        "default 1e-3)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=_int, default=128, help="batch size (default 128)")
    parser.add_argument(
        "--limit", type=_int, default=None,
        help="use the first LIMIT training and test samples (quick checks; the figures "
        "then do not compare with full runs)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=_int, default=None,
        help="CPU threads for training and timing (default: torch's, one per core)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default=None,
        help="folder to write model.brisk (the compressed file), compress.json and "
        "compress.md (default: write nothing)",
    )  # fmt: skip
    parser.add_argument(
        "--device", default=None,
        help="training device: cpu, cuda, cuda:N, mps (default: cuda, then mps, then cpu); "
        "latency is always measured on the CPU",
    )  # fmt: skip
    parser.add_argument("--seed", type=_int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="print only the table")


def _model_file(model: str) -> Path:
    path = Path(model)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise ValueError(
            f"MODEL: no saved model at {os.fspath(path)!r}; expected a .safetensors file "
            "written by model.save(path) or a folder written by `brisk train --out`"
        )
    return path


def _dataset(args: argparse.Namespace, model_file: Path) -> str:
    name = args.dataset
    if name is None:  # `brisk train --out DIR` records its dataset in DIR/result.json
        result = model_file.parent / "result.json"
        try:
            name = json.loads(result.read_text()).get("dataset")
        except (OSError, ValueError, AttributeError):
            name = None
        if name is None:
            raise ValueError(
                f"--dataset: not given and no result.json with a dataset next to MODEL; "
                f"expected one of {', '.join(DATASETS)}"
            )
    if name not in DATASETS:
        raise ValueError(f"--dataset: expected one of {', '.join(DATASETS)}, got {name!r}")
    return name


def _check(args: argparse.Namespace) -> None:
    """Range checks before anything is loaded or trained (ValueError naming the flag)."""
    s = args.sparsity
    if not (isinstance(s, (int, float)) and math.isfinite(s) and 0.0 <= s < 1.0):
        raise ValueError(f"--sparsity: expected a fraction in [0, 1), got {s!r}")
    d = args.max_drop
    if d is not None and not (math.isfinite(d) and 0.0 <= d <= 100.0):
        raise ValueError(f"--max-drop: expected accuracy points in [0, 100], got {d!r}")
    for flag, v, lo in (
        ("--epochs", args.epochs, 1),
        ("--finetune-epochs", args.finetune_epochs, 0),
        ("--share-epochs", args.share_epochs, 0),
        ("--batch-size", args.batch_size, 1),
        ("--limit", args.limit, 1),
        ("--threads", args.threads, 1),
    ):
        if v is not None and v < lo:
            raise ValueError(f"{flag}: expected an integer >= {lo}, got {v}")
    for flag, v in (("--bits", args.bits), ("--conv-bits", args.conv_bits)):
        if not 1 <= v <= 8:
            raise ValueError(f"{flag}: expected an integer in [1, 8], got {v}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr: expected a positive number, got {args.lr}")
    if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out: {args.out!r} exists and is not a folder")


def run_compress_from_args(args: argparse.Namespace) -> int:
    """Run ``brisk compress`` for the parsed ``args``: check them, run the pipeline and
    print the per-stage table; return 0. Bad input (a missing MODEL, an unknown dataset,
    a sparsity outside [0, 1), a negative max-drop, ...) is a ValueError naming the flag,
    raised before any data is read or any training starts.

    Example::

        p = argparse.ArgumentParser(prog="brisk compress")
        add_compress_arguments(p)
        run_compress_from_args(p.parse_args(["runs/mlp", "--dataset", "digits",
                                             "--epochs", "2", "--limit", "500"]))
    """
    import torch

    from brisk.compress.pipeline import _load_data, format_table, run_pipeline

    _check(args)
    model_file = _model_file(args.model)
    dataset: str | tuple = _dataset(args, model_file)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    name = dataset
    if args.limit is not None:  # a slice of both splits, passed to the pipeline as arrays
        (xtr, ytr), (xte, yte) = _load_data(dataset, args.data_dir)
        n, m = args.limit, args.limit
        dataset = ((xtr[:n], ytr[:n]), (xte[:m], yte[:m]))
    stages = run_pipeline(
        model_file,
        dataset=dataset,
        data_dir=args.data_dir,
        target_sparsity=float(args.sparsity),
        max_drop=args.max_drop,
        epochs=args.epochs,
        finetune_epochs=args.finetune_epochs,
        share_epochs=args.share_epochs,
        bits=args.bits,
        conv_bits=args.conv_bits,
        lr=float(args.lr),
        batch_size=args.batch_size,
        out=args.out,
        device=args.device,
        seed=args.seed,
        log=None if args.quiet else print,
    )
    if args.quiet:  # otherwise run_pipeline's log already printed the table
        print(format_table(stages))
    q = stages[-1]
    limit = f", first {args.limit} samples" if args.limit is not None else ""
    print(
        f"{name}{limit}: {stages[0].file_bytes:,} B dense fp32 -> {q.file_bytes:,} B compressed "
        f"({stages[0].file_bytes / q.file_bytes:.1f}x); test accuracy "
        f"{100 * stages[0].test_accuracy:.2f}% -> {100 * q.test_accuracy:.2f}% (int8)"
    )
    return 0
