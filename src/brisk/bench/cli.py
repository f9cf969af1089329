"""``brisk bench RECIPE``: its arguments and the plain function that runs it.

Example::

    import argparse
    from brisk.bench.cli import add_bench_arguments, run_bench_from_args
    p = argparse.ArgumentParser(prog="brisk bench")
    add_bench_arguments(p)
    run_bench_from_args(p.parse_args(["mnist-cnn", "--runs", "3", "--out", "bench-out"]))
"""

from __future__ import annotations

import argparse

from brisk._argtypes import non_negative_int as _non_negative_int
from brisk._argtypes import positive_float as _positive_float
from brisk._argtypes import positive_int as _positive_int
from brisk.bench.runner import run


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``brisk bench``'s arguments to ``parser`` (a parser or a subcommand's parser).

    Example::

        p = argparse.ArgumentParser(prog="brisk bench")
        add_bench_arguments(p)
        p.parse_args(["mnist-cnn", "--runs", "3"]).runs       # 3
    """
    from brisk.recipes import RECIPES

    parser.add_argument("recipe", metavar="RECIPE",
                        help=f"recipe to benchmark: {', '.join(RECIPES)}")
    parser.add_argument("--runs", type=_positive_int, default=5,
                        help="timed runs, seeds SEED..SEED+RUNS-1 (default 5)")
    parser.add_argument("--warmup", type=_non_negative_int, default=1,
                        help="untimed warm-up runs before the timed ones (default 1)")
    parser.add_argument("--target", type=_positive_float, default=None,
                        help="test accuracy to time, in (0, 1] (default: the recipe's, "
                        "e.g. 0.99 for mnist-cnn)")
    parser.add_argument("--eval-every", type=_positive_float, default=None,
                        help="test-set evaluation interval in epochs, e.g. 0.1 (default: "
                        "the recipe's)")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="epochs per run (default: the recipe's)")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="train and test on the first LIMIT samples of each split "
                        "(quick checks; the figures then do not compare with full runs)")
    parser.add_argument("--data-dir", default=None,
                        help="folder holding the dataset files (default: $BRISK_DATA_DIR, "
                        "then ~/.cache/brisk)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:N, mps (default: cuda, then mps, then cpu)")
    parser.add_argument("--seed", type=_non_negative_int, default=0,
                        help="seed of the first timed run (default 0)")
    parser.add_argument("--out", default="bench-out",
                        help="folder for RECIPE.json, RECIPE.md and RECIPE.png "
                        "(default: bench-out)")
    parser.add_argument("--quiet", action="store_true", help="print only the table")


def run_bench_from_args(args: argparse.Namespace) -> int:
    """Run ``brisk bench`` for the parsed ``args``; print the markdown table; return 0.

    Example::

        run_bench_from_args(p.parse_args(["mnist-mlp", "--runs", "2", "--limit", "2000"]))
    """
    from brisk.bench.runner import markdown

    report = run(
        args.recipe,
        runs=args.runs,
        warmup=args.warmup,
        target=args.target,
        eval_every=args.eval_every,
        epochs=args.epochs,
        limit=args.limit,
        data_dir=args.data_dir,
        device=args.device,
        seed=args.seed,
        out=args.out,
        verbose=0 if args.quiet else 1,
    )
    print(markdown(report))
    if report["files"]:
        print("wrote " + ", ".join(report["files"].values()))
    return 0
