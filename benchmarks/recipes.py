"""Each recipe's claim, measured: test accuracy and training time over 5 seeds on this CPU.

For every recipe (``brisk.recipes.run``, its own epochs and precision='auto'), seeds
0..N-1 one after another; prints mean +- sample std and min-max of the test accuracy and
of the training wall time, the precision 'auto' chose, and whether the mean reaches the
recipe's target. The README's recipe figures are these.

Usage::

    python benchmarks/recipes.py --data-dir ../shared/data              # ~15 min on 2 cores
    python benchmarks/recipes.py --recipes mnist-mlp --seeds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from distributed import cpu_name  # noqa: E402  (benchmarks/distributed.py)

import brisk  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("BRISK_DATA_DIR",
                                                         str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--recipes", default=",".join(brisk.recipes.RECIPES))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {cpu_name()}, {torch.get_num_threads()} threads, "
          f"seeds 0-{args.seeds - 1}")
    out = {}
    for name in args.recipes.split(","):
        runs = []
        for seed in range(args.seeds):
            r = brisk.recipes.run(name, data_dir=args.data_dir, seed=seed)
            p = r["model"].trainer.precision
            runs.append({"seed": seed, "test_accuracy": r["test_accuracy"],
                         "train_seconds": r["train_seconds"], "precision": p.mode})
            print(f"  {name} seed {seed}: {r['test_accuracy']:.4f} in "
                  f"{r['train_seconds']:.1f} s ({p.mode})", flush=True)
        acc = [r["test_accuracy"] for r in runs]
        sec = [r["train_seconds"] for r in runs]
        target = brisk.recipes.get(name).target
        out[name] = {"runs": runs, "target": target,
                     "accuracy_mean": statistics.fmean(acc), "accuracy_std": statistics.stdev(acc),
                     "seconds_mean": statistics.fmean(sec), "seconds_std": statistics.stdev(sec)}
        o = out[name]
        print(f"{name}: test accuracy {o['accuracy_mean']:.2%} +- {o['accuracy_std']:.2%} "
              f"(min {min(acc):.2%}, max {max(acc):.2%}), {o['seconds_mean']:.1f} +- "
              f"{o['seconds_std']:.1f} s; target {target:.1%} "
              f"{'met' if o['accuracy_mean'] >= target else 'NOT met'} on average, "
              f"{sum(a >= target for a in acc)} of {len(acc)} runs", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
