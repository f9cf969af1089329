"""``brisk bench RECIPE``: time to accuracy of a recipe, over several seeded runs.

One untimed warm-up run by default (library start-up, kernel selection, compilation caches), then
``runs`` timed runs with seeds ``seed, seed + 1, ...``. Per run: training wall time to the
first evaluation at or above the target (evaluation time excluded and reported
separately), total training time, final accuracy and samples/s. Across runs: mean, std,
min and max. Writes JSON, a markdown table and a PNG of accuracy against training time.

Example::

    import brisk.bench
    report = brisk.bench.run("mnist-cnn", runs=5, out="bench-out")
    report["summary"]["time_to_target"]["mean"], report["summary"]["final_accuracy"]["min"]
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import brisk
from brisk.bench.timing import TimeToAccuracy
from brisk.recipes.registry import check_positive_int, check_seed, get, synchronize


def _check_target(target: Any) -> float | None:
    if target is None:
        return None
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not (
        math.isfinite(target) and 0 < target <= 1
    ):
        raise ValueError(f"target: expected an accuracy in (0, 1], got {target!r}")
    return float(target)


def _check_eval_every(eval_every: Any) -> float | None:
    if eval_every is None:
        return None
    if isinstance(eval_every, bool) or not isinstance(eval_every, (int, float)) or not (
        math.isfinite(eval_every) and eval_every > 0
    ):
        raise ValueError(
            f"eval_every: expected a positive number of epochs (e.g. 0.25), got {eval_every!r}"
        )
    return float(eval_every)


def cpu_name() -> str:
    """The CPU model, e.g. 'AMD EPYC 9B14' (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def environment(device: torch.device) -> dict[str, Any]:
    """Device name and library versions, recorded with every benchmark."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = cpu_name()
    return {
        "device": str(device),
        "device_name": name,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "brisk": brisk.__version__,
        "platform": platform.platform(),
    }


def spread(values: list[float]) -> dict[str, float | int | None]:
    """n, mean, sample std (0 for one value), min and max; Nones when empty."""
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def _one_run(recipe, data, *, epochs, device, seed, target, eval_every) -> dict[str, Any]:
    (x, y), (xt, yt) = data
    clock = TimeToAccuracy(
        recipe.model_input(xt), yt, target=target, eval_every=eval_every, num_samples=len(x)
    )
    synchronize(device)
    clock.start()  # from here: model building, data placement, fit (evaluation paused)
    model = recipe.train(x, y, epochs=epochs, device=device, seed=seed, callbacks=[clock],
                         verbose=0)
    final = clock.points[-1]
    p = model.trainer.precision
    return {
        "seed": seed,
        "precision": p.mode,
        "precision_reason": p.reason,
        "time_to_target": clock.time_to_target,
        "reached_target": clock.time_to_target is not None,
        "train_seconds": clock.train_seconds,
        "eval_seconds": clock.eval_seconds,
        "evaluations": len(clock.points),
        "final_accuracy": final["accuracy"],
        "final_loss": final["loss"],
        "epochs": final["epoch"],
        "samples": clock.samples,
        "samples_per_second": clock.samples / clock.train_seconds,
        "curve": clock.points,
    }


def run(
    recipe: str,
    *,
    runs: int = 5,
    target: float | None = None,
    data_dir: Any = None,
    device: str | torch.device | None = None,
    out: str | os.PathLike | None = None,
    eval_every: float | None = None,
    seed: int = 0,
    epochs: int | None = None,
    limit: int | None = None,
    warmup: int = 1,
    verbose: int = 0,
) -> dict[str, Any]:
    """Benchmark time to ``target`` test accuracy of ``recipe`` over ``runs`` runs.

    Args:
        recipe: a recipe name (``brisk.recipes.RECIPES``).
        runs: timed runs (seeds ``seed .. seed + runs - 1``).
        warmup: untimed warm-up runs before them (seeds ``seed + runs`` on), default 1:
            the first run in a process pays one-off costs (thread pools, kernel selection,
            allocator growth, compilation) that the timed runs must not carry.
        target: accuracy in (0, 1]; default the recipe's (0.99 for mnist-cnn).
        eval_every: test-set evaluation interval in epochs (0.1 = ten times an epoch);
            default the recipe's. Training ends with an evaluation in any case.
        epochs, limit: override the recipe's epochs; train and test on the first
            ``limit`` samples of each split (quick checks).
        out: a directory; writes ``<recipe>.json``, ``<recipe>.md`` and ``<recipe>.png``.

    Returns a dict: ``recipe``, ``target``, ``config``, ``environment`` (device name,
    versions), ``runs`` (per run: ``time_to_target`` (None when not reached),
    ``train_seconds``, ``eval_seconds``, ``final_accuracy``, ``samples_per_second``,
    ``curve``...), ``summary`` (``spread`` of final accuracy, time to target, train
    seconds, eval seconds and samples/s; ``reached`` = runs that hit the target) and
    ``files`` (paths written).

    Example::

        report = brisk.bench.run("mnist-mlp", runs=2, limit=2000, epochs=1, target=0.8)
        [r["time_to_target"] for r in report["runs"]]
    """
    rec = get(recipe)
    runs = check_positive_int(runs, "runs")
    target = _check_target(target)
    target = rec.target if target is None else target
    eval_every = _check_eval_every(eval_every) or rec.eval_every
    seed = check_seed(seed)
    if isinstance(warmup, bool):
        warmup = int(warmup)
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: expected a number of warm-up runs >= 0, got {warmup!r}")
    epochs = check_positive_int(epochs, "epochs", allow_none=True) or rec.epochs
    limit = check_positive_int(limit, "limit", allow_none=True)
    out_dir = None if out is None else Path(out)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out: {str(out_dir)!r} exists and is not a directory")
    dev = brisk.select_device(device)

    t = time.perf_counter()
    data = rec.load_data(data_dir, limit)
    load_seconds = time.perf_counter() - t
    kw = dict(epochs=epochs, device=dev, target=target, eval_every=eval_every)

    # with verbose: a bar over the runs on stderr (updated between runs, never inside the
    # timed training) and one line per run on stdout
    from tqdm.auto import tqdm

    bar = tqdm(total=warmup + runs, desc=f"bench {rec.name}", unit="run", file=sys.stderr,
               disable=not verbose, leave=False)
    warm = []
    for i in range(warmup):
        w = _one_run(rec, data, seed=seed + runs + i, **kw)
        warm.append({k: w[k] for k in ("seed", "train_seconds", "final_accuracy")})
        bar.update()
        if verbose:
            bar.write(f"warm-up: {w['train_seconds']:.2f} s, accuracy "
                      f"{w['final_accuracy']:.4f}", file=sys.stdout)
    results = []
    for i in range(runs):
        r = _one_run(rec, data, seed=seed + i, **kw)
        results.append(r)
        bar.update()
        if verbose:
            ttt = "-" if r["time_to_target"] is None else f"{r['time_to_target']:.2f} s"
            bar.write(f"run {i + 1}/{runs}: to target {ttt}, train {r['train_seconds']:.2f} s, "
                      f"accuracy {r['final_accuracy']:.4f}", file=sys.stdout)
    bar.close()

    reached = [r["time_to_target"] for r in results if r["time_to_target"] is not None]
    report: dict[str, Any] = {
        "recipe": rec.name,
        "target": target,
        "config": {
            "runs": runs, "epochs": epochs, "eval_every": eval_every, "seed": seed,
            "limit": limit, "train_samples": len(data[0][0]), "test_samples": len(data[1][0]),
            "warmup": warm, "data_load_seconds": load_seconds,
        },
        "environment": {**environment(dev), "precision": results[0]["precision"],  # runs >= 1
                        "precision_reason": results[0]["precision_reason"]},
        "runs": results,
        "summary": {
            "reached": len(reached),
            "time_to_target": spread(reached),
            "final_accuracy": spread([r["final_accuracy"] for r in results]),
            "train_seconds": spread([r["train_seconds"] for r in results]),
            "eval_seconds": spread([r["eval_seconds"] for r in results]),
            "samples_per_second": spread([r["samples_per_second"] for r in results]),
        },
        "files": {},
    }
    if out_dir is not None:
        report["files"] = write(report, out_dir)
    return report


# ----------------------------------------------------------------------------- outputs


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table (one row per run, then mean/std/min/max)."""
    env, s = report["environment"], report["summary"]
    target = report["target"]
    lines = [
        f"# brisk bench {report['recipe']}: time to {target:.2%} test accuracy",
        "",
        f"Device: {env['device_name']} ({env['device']}, {env['torch_threads']} torch threads); "
        f"torch {env['torch']}, Python {env['python']}, brisk {env['brisk']}.",
        f"Precision: {env.get('precision')} ({env.get('precision_reason')}).",
        f"{report['config']['runs']} runs after {len(report['config']['warmup'])} untimed "
        f"warm-up run(s); evaluation every "
        f"{report['config']['eval_every']:g} epochs, its time excluded from training time.",
        "",
        "| run | seed | time to target (s) | train time (s) | eval time (s) | final accuracy "
        "| samples/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(report["runs"], 1):
        lines.append(
            f"| {i} | {r['seed']} | {_fmt(r['time_to_target'], '.2f')} | "
            f"{r['train_seconds']:.2f} | {r['eval_seconds']:.2f} | {r['final_accuracy']:.4f} | "
            f"{r['samples_per_second']:,.0f} |"
        )
    for stat in ("mean", "std", "min", "max"):
        lines.append(
            f"| {stat} | | {_fmt(s['time_to_target'][stat], '.2f')} | "
            f"{_fmt(s['train_seconds'][stat], '.2f')} | {_fmt(s['eval_seconds'][stat], '.2f')} | "
            f"{_fmt(s['final_accuracy'][stat], '.4f')} | "
            f"{_fmt(s['samples_per_second'][stat], ',.0f')} |"
        )
    lines += ["", f"Reached the target: {s['reached']} of {len(report['runs'])} runs.", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str | os.PathLike) -> None:
    """PNG of test accuracy against training wall time, one line per run."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    try:
        for r in report["runs"]:
            ts = [p["train_seconds"] for p in r["curve"]]
            acc = [p["accuracy"] for p in r["curve"]]
            ax.plot(ts, acc, marker="o", markersize=3, label=f"seed {r['seed']}")
        ax.axhline(report["target"], color="k", linestyle="--", linewidth=1, label="target")
        lo = min(p["accuracy"] for r in report["runs"] for p in r["curve"])
        ax.set_ylim(max(0.0, min(lo, report["target"]) - 0.01), 1.0)
        ax.set_xlabel("training wall time (s), evaluation excluded")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"brisk bench {report['recipe']} on {report['environment']['device_name']}",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def write(report: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``<recipe>.json``, ``.md`` and ``.png`` into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / report["recipe"]
    files = {"json": str(stem.with_suffix(".json")), "markdown": str(stem.with_suffix(".md")),
             "png": str(stem.with_suffix(".png"))}
    payload = {**report, "files": files}
    Path(files["json"]).write_text(json.dumps(payload, indent=2) + "\n")
    Path(files["markdown"]).write_text(markdown(report))
    plot(report, files["png"])
    return files

