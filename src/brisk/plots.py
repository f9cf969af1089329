"""Training curves as a PNG: loss, each metric and the learning rate against epochs.

``plot_history`` draws what ``fit`` returned (a ``History``), a Keras-style
``history.history`` dict, or a ``brisk train --out`` folder (its ``history.csv``). It uses
matplotlib's Agg canvas directly (no pyplot, no global backend), so it works on machines
with no display and never changes the user's pyplot state.

Example::

    history = model.fit(x, y, validation_split=0.1, epochs=5)
    brisk.plots.plot_history(history, "history.png")
    brisk.plots.plot_history("runs/mnist", "runs/mnist/history.png")   # brisk plot runs/mnist
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any

LR_KEYS = ("learning_rate", "lr")


def read_history_csv(path: str | os.PathLike) -> tuple[list[int], dict[str, list[float]]]:
    """``(epochs, {column: values})`` from a history CSV whose first column is ``epoch``
    (``brisk train --out``'s history.csv, ``CSVLogger``'s file). ``ValueError`` naming the
    file for a missing epoch column, a non-numeric value or no rows."""
    path = os.fspath(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text CSV (brisk train --out's history.csv or "
                         "CSVLogger's file)") from None
    if not rows or not rows[0] or rows[0][0] != "epoch":
        raise ValueError(f"{path}: expected a CSV whose first column is 'epoch' (brisk train "
                         f"--out's history.csv or CSVLogger's), got header {rows[0] if rows else []}")
    keys, data = rows[0][1:], rows[1:]
    if not data:
        raise ValueError(f"{path}: no epochs recorded yet")
    epochs, history = [], {k: [] for k in keys}
    for n, row in enumerate(data, start=2):
        if len(row) != len(rows[0]):
            raise ValueError(f"{path}, line {n}: expected {len(rows[0])} values, got {len(row)}")
        try:
            epochs.append(int(row[0]))
            for k, v in zip(keys, row[1:], strict=True):
                history[k].append(float(v) if v != "" else math.nan)
        except ValueError as e:
            raise ValueError(f"{path}, line {n}: not a number ({e})") from e
    return epochs, history


def _as_history(history: Any) -> tuple[list[int], dict[str, list[float]], str]:
    """``(epochs counted from 1, values, title)`` from a History, a dict, a folder or a CSV."""
    if isinstance(history, (str, os.PathLike)):
        path = os.fspath(history)
        if os.path.isdir(path):
            path = os.path.join(path, "history.csv")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"history: no history file at {path!r} (pass a brisk train "
                                    "--out folder or a history CSV)")
        epochs, values = read_history_csv(path)
        return epochs, values, os.path.basename(os.path.dirname(os.path.abspath(path)))
    if hasattr(history, "history") and hasattr(history, "epoch"):
        values = history.history
        epochs = [int(e) + 1 for e in history.epoch]  # History.epoch counts from 0
    elif isinstance(history, dict):
        values = history
        n = max((len(v) for v in values.values() if hasattr(v, "__len__")), default=0)
        epochs = list(range(1, n + 1))
    else:
        raise TypeError(f"history: expected a History, a dict of lists, a run folder or a CSV "
                        f"path, got {type(history).__name__}")
    for k, v in values.items():
        if not isinstance(v, (list, tuple)) and not (hasattr(v, "__len__") and
                                                      hasattr(v, "__getitem__")):
            raise TypeError(f"history: {k!r} should hold one value per epoch (a list), got "
                            f"{type(v).__name__}")
    if not values or not epochs:
        raise ValueError("history: no epochs recorded")
    for k, v in values.items():
        if len(v) != len(epochs):
            raise ValueError(f"history: {k!r} has {len(v)} values for {len(epochs)} epochs")
    return epochs, {k: [float(x) for x in v] for k, v in values.items()}, ""


def panels(keys: list[str]) -> list[tuple[str, list[str]]]:
    """The panels drawn for these history keys, in order: loss first, then each metric
    with its ``val_`` twin, then the learning rate. Each is ``(title, keys)``."""
    lr = [k for k in keys if k in LR_KEYS]
    base = [k for k in keys if not k.startswith("val_") and k not in lr]
    base += [k[4:] for k in keys if k.startswith("val_") and k[4:] not in keys]  # val only
    base.sort(key=lambda k: k != "loss")  # stable: loss first, the rest as logged
    out = [(k, [x for x in (k, f"val_{k}") if x in keys]) for k in base]
    return out + [("learning rate", lr[:1])] if lr else out


def plot_history(history: Any, path: str | os.PathLike, title: str | None = None) -> str:
    """Draw ``history`` as a PNG at ``path`` and return the path.

    Args:
        history: a ``brisk.callbacks.History`` (what ``fit`` returns), a dict of per-epoch
            lists (``history.history``), a ``brisk train --out`` folder, or a history CSV.
        path: the image to write, in the format its suffix names (PNG for '.png' or an
            unknown suffix); its folder is created.
        title: the figure's title (default: the run folder's name, for a folder or CSV).

    One panel per quantity: loss, then each metric (training and ``val_`` curves
    together), then the learning rate (log scale when every rate is positive) when
    recorded. Epochs count from 1; NaN or infinite values leave gaps.

    Raises:
        FileNotFoundError: a folder without history.csv, a missing CSV.
        ValueError: an empty history, lists of different lengths, a malformed CSV.
        TypeError: anything else as ``history``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs, values, default_title = _as_history(history)
    groups = panels(list(values))
    fig = Figure(figsize=(4.2 * len(groups), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, (name, keys) in zip(axes, groups, strict=True):
        for k in keys:
            ax.plot(epochs, values[k], "o-" if len(epochs) < 30 else "-", markersize=3,
                    label="validation" if k.startswith("val_") else "training")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if name == "learning rate":
            if all(v > 0 for v in values[keys[0]]):
                ax.set_yscale("log")
        elif len(keys) > 1:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title or default_title:
        fig.suptitle(title or default_title)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fmt = os.path.splitext(path)[1][1:].lower()  # the file's suffix says the format,
    fmt = fmt if fmt in fig.canvas.get_supported_filetypes() else "png"  # PNG otherwise
    fig.savefig(path, format=fmt, dpi=100)
    return path
