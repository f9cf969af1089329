"""Task distribution: a hyperparameter search on Optuna (``brisk tune``, ``brisk.tune``).

A trial is an ordinary ``brisk train`` command: the sampler picks a configuration, tune
writes it as a ``brisk train`` argument list, parses it with the ``brisk train`` parser
and trains through the same function (``brisk.cli.train_from_args``). So the best
trial's printed command line is a plain ``brisk train ...`` that reruns it.

* Searched: learning rate and weight decay (log-uniform, rounded to 3 significant
  digits so the command line carries the exact value used), batch size, optimizer,
  learning-rate schedule and the model's hidden width (``--width``).
* Objective: the last epoch's accuracy on a validation split held out from the *training*
  data (``--validation-split 0.2``: the last 20% before shuffling, Keras's rule, the same
  samples in every trial). The test set is never used to choose; each trial's test
  accuracy is reported beside it.
* TPE sampling (``TPESampler(seed=...)``); a pruner (``median``: MedianPruner after 5
  trials, from epoch 2; ``halving``: SuccessiveHalvingPruner; ``none``) fed with the
  validation accuracy after every epoch.
* Seeds: every trial trains with the same ``--seed``, so trials differ by their
  configuration only, and the command line carries it.
* Workers: ``workers=N`` runs N processes (``python -m brisk tune --worker ...``) that
  share one Optuna storage (a journal file on one machine, a database URL across
  machines); each runs its share of ``trials``, so the study gets exactly ``trials``
  trials from this call. Each worker gets ``cpu_count // N`` torch threads. A worker that
  fails stops the others and raises with its log; so do Ctrl-C and SIGTERM.

Example::

    result = brisk.tune(dataset="digits", trials=8, workers=2, epochs=5, out="runs/tune")
    print(result.best_value, result.best_command)   # brisk train --dataset digits ...
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from brisk.engine.callbacks import Callback

__all__ = ["PRUNERS", "SEARCH_KEYS", "TuneResult", "PruningCallback", "make_pruner", "tune"]

PRUNERS = ("median", "halving", "none")
SEARCH_KEYS = ("lr", "batch_size", "optimizer", "schedule", "weight_decay", "width")
# Each value: {"log": [lo, hi]} (log-uniform float), {"choices": [...]} or {"value": v}.
DEFAULT_SEARCH: dict[str, Any] = {
    "lr": {"log": [1e-4, 1e-1]},
    "batch_size": {"choices": [16, 32, 64, 128]},
    "optimizer": {"choices": ["adam", "adamw", "momentum", "rmsprop"]},
    "schedule": {"choices": ["constant", "cosine", "warmup_cosine", "one_cycle"]},
    "weight_decay": {"log": [1e-6, 1e-2]},
    "width": None,  # per model: DEFAULT_WIDTHS
}
DEFAULT_WIDTHS = {"mlp": [32, 64, 128, 256], "cnn": [16, 32, 64]}
VALIDATION_SPLIT = 0.2
STUDY_NAME = "brisk"
_SETTINGS_ATTR = "brisk_tune_settings"  # the study's user attribute: what its trials mean

_OPTUNA_MISSING = ("brisk tune needs Optuna, which is not installed: "
                   "pip install 'brisk[tune]' (or pip install optuna)")


def _optuna():
    try:
        import optuna
    except ImportError as e:
        raise ImportError(_OPTUNA_MISSING) from e
    return optuna


# ----------------------------------------------------------------------------- result


@dataclass
class TuneResult:
    """What ``tune`` returns: the Optuna ``study`` (all its trials, this call's and any
    earlier ones), the best trial's number, value (validation accuracy) and its rerun as
    ``brisk train`` arguments (``best_argv``) and command line (``best_command``), the
    table ``rows`` (one dict per trial, as in trials.csv) and the ``out`` folder."""

    study: Any
    best_number: int | None
    best_value: float | None
    best_argv: list[str] | None
    best_command: str | None
    rows: list[dict] = field(default_factory=list)
    out: str | None = None

    def __repr__(self) -> str:
        return (f"TuneResult(trials={len(self.rows)}, best_number={self.best_number}, "
                f"best_value={self.best_value}, best_command={self.best_command!r})")


# ----------------------------------------------------------------------------- checks


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    return value


def _check_search(search: dict | None, model: str) -> dict[str, Any]:
    """The search space with ``search``'s entries in place of the defaults, checked value
    by value with the ``brisk train`` option checkers (so every value is one that
    ``brisk train`` accepts). ``search``: {key: (lo, hi) | [choices] | value}."""
    import argparse

    from brisk import _argtypes
    from brisk import optimizers as optimizers_mod
    from brisk.cli import _schedule_name

    space = dict(DEFAULT_SEARCH, width={"choices": DEFAULT_WIDTHS[model]})
    if search is None:
        return space
    if not isinstance(search, dict):
        raise ValueError(f"search: expected a dict {{name: (low, high) | [choices] | value}}, "
                         f"got {search!r}")
    check = {"lr": _argtypes.positive_float, "weight_decay": _argtypes.non_negative_float,
             "batch_size": _argtypes.positive_int, "width": _argtypes.width}

    def one(key: str, v: Any) -> Any:
        try:
            if key == "optimizer":
                if not isinstance(v, str):
                    raise argparse.ArgumentTypeError(f"expected a name, got {v!r}")
                optimizers_mod.get(v)  # unknown -> ValueError with the valid names
                return v
            if key == "schedule":
                if not isinstance(v, str):
                    raise argparse.ArgumentTypeError(f"expected a name, got {v!r}")
                return _schedule_name(v)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise argparse.ArgumentTypeError(f"expected a number, got {v!r}")
            if key in ("batch_size", "width") and v != int(v):
                raise argparse.ArgumentTypeError(f"expected an integer, got {v!r}")
            return check[key](repr(int(v) if key in ("batch_size", "width") else float(v)))
        except (argparse.ArgumentTypeError, ValueError) as e:
            msg = str(e)
            msg = msg[len(key) + 2:] if msg.startswith(f"{key}: ") else msg  # said once
            raise ValueError(f"search: {key}: {msg}") from None

    seen: dict[str, Any] = {}
    for key, spec in search.items():
        key = str(key).replace("-", "_")
        if key in seen:
            raise ValueError(f"search: {key} is given twice ({seen[key]!r} and {spec!r})")
        seen[key] = spec
        if key not in SEARCH_KEYS:
            raise ValueError(f"search: unknown name {key!r}; valid names: {', '.join(SEARCH_KEYS)}")
        if isinstance(spec, tuple):
            if key not in ("lr", "weight_decay") or len(spec) != 2:
                raise ValueError(f"search: {key}: a (low, high) range is for lr and weight_decay "
                                 f"only, as two numbers; give a list of choices, got {spec!r}")
            lo, hi = one(key, spec[0]), one(key, spec[1])
            if not 0 < lo <= hi:
                raise ValueError(f"search: {key}: expected 0 < low <= high (a log-uniform "
                                 f"range), got {spec!r}")
            space[key] = {"log": [lo, hi]} if lo < hi else {"value": lo}
        elif isinstance(spec, list):
            if not spec:
                raise ValueError(f"search: {key}: an empty list of choices")
            values = [one(key, v) for v in spec]
            if len(set(values)) != len(values):
                raise ValueError(f"search: {key}: duplicate choices in {spec!r}")
            space[key] = {"choices": values} if len(values) > 1 else {"value": values[0]}
        else:
            space[key] = {"value": one(key, spec)}
    return space


def _parse_search_option(items: list[str] | None) -> dict | None:
    """``--search lr=1e-3:1e-1 --search optimizer=adam,sgd --search width=64`` -> the
    Python form of ``search`` (a range, choices, a fixed value)."""
    if not items:
        return None
    numeric = {"lr": float, "weight_decay": float, "batch_size": int, "width": int}
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not text:
            raise ValueError(f"--search: expected NAME=LOW:HIGH, NAME=A,B,... or NAME=VALUE, "
                             f"got {item!r}")
        if key in out:
            raise ValueError(f"--search: {key} is given twice (the second: {item!r}); give "
                             "each name once")
        conv = numeric.get(key, str)
        try:
            if ":" in text:
                lo, hi = text.split(":", 1)
                out[key] = (conv(lo), conv(hi))
            elif "," in text:
                out[key] = [conv(v) for v in text.split(",")]
            else:
                out[key] = conv(text)
        except ValueError:
            raise ValueError(f"--search: {key}: cannot read {text!r}") from None
    return out


def make_pruner(name: str):
    """The Optuna pruner behind ``pruner=``: 'median' (MedianPruner: a trial whose
    validation accuracy after epoch k is below the median of earlier trials' at epoch k is
    stopped; not before 5 trials have finished, nor before epoch 2), 'halving'
    (SuccessiveHalvingPruner: rungs of epochs, keeping the top quarter) or 'none'."""
    optuna = _optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"pruner: expected one of {', '.join(PRUNERS)}, got {name!r}")


def _storage(storage: str | None):
    """An Optuna storage from ``storage``: None (in memory), a database URL (``sqlite:///
    f.db``, ``postgresql://...``: anything with '://') or a journal file path."""
    optuna = _optuna()
    if storage is None:
        return None
    if not isinstance(storage, str) or not storage:
        raise ValueError(f"storage: expected a journal file path or a database URL, got {storage!r}")
    if "://" in storage:
        try:
            return optuna.storages.RDBStorage(storage)
        except Exception as e:  # no driver, unreachable server, bad URL: all before trials
            raise ValueError(f"storage: cannot open the database {storage!r}: "
                             f"{type(e).__name__}: {e}") from None
    folder = os.path.dirname(os.path.abspath(storage))
    if not os.path.isdir(folder):
        raise ValueError(f"storage: the folder of the journal file {storage!r} does not exist")
    if os.path.isdir(storage):
        raise ValueError(f"storage: {storage!r} is a folder; give a journal file path in it")
    exists = os.path.exists(storage)
    if (exists and not os.access(storage, os.R_OK | os.W_OK)) or (
            not exists and not os.access(folder, os.W_OK)):
        raise ValueError(f"storage: the journal file {storage!r} is not readable and writable")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if exists:  # every complete line a JSON record (Optuna only finds out at its next write)
        with open(storage, "rb") as f:
            for i, line in enumerate(f, start=1):
                try:
                    if line.endswith(b"\n") and not isinstance(json.loads(line), dict):
                        raise ValueError
                except ValueError:
                    raise ValueError(f"storage: cannot read the journal file {storage!r}: line "
                                     f"{i} is not an Optuna journal record") from None
    try:
        return JournalStorage(JournalFileBackend(storage))
    except Exception as e:  # a file that is not an Optuna journal
        raise ValueError(f"storage: cannot read the journal file {storage!r}: "
                         f"{type(e).__name__}: {e}") from None


def _open_study(settings: dict, storage, study_name: str, sampler, pruner, create: bool):
    """Create or load the study and check that it is a tune study of these settings."""
    optuna = _optuna()
    try:
        if create:
            study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner,
                                        study_name=study_name, direction="maximize",
                                        load_if_exists=True)
        else:
            study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler,
                                      pruner=pruner)
    except (KeyError, ValueError) as e:
        raise ValueError(f"study_name: cannot open study {study_name!r}: {e}") from None
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ValueError(f"study_name: study {study_name!r} minimizes; brisk tune maximizes "
                         "validation accuracy (give another study name)")
    saved = study.user_attrs.get(_SETTINGS_ATTR)
    if saved is None and create:
        study.set_user_attr(_SETTINGS_ATTR, settings)
    elif saved is not None and saved != settings:
        diff = [k for k in sorted(set(saved) | set(settings)) if saved.get(k) != settings.get(k)]
        k = diff[0]
        raise ValueError(f"study_name: study {study_name!r} was started with {k}="
                         f"{saved.get(k)!r}, not {settings.get(k)!r}; run the same "
                         "command as its first process, or give another study name or storage")
    return study


# ----------------------------------------------------------------------------- one trial


class PruningCallback(Callback):
    """Reports ``monitor`` (default val_accuracy) to an Optuna trial after every epoch
    (step = epochs done, from 1) and stops training once the trial's pruner says so;
    ``pruned_at`` is then that epoch. Raising ``optuna.TrialPruned`` is the caller's job,
    after ``fit`` has returned normally.

    Example::

        cb = PruningCallback(trial)
        model.fit(x, y, validation_split=0.2, epochs=10, callbacks=[cb])
        if cb.pruned_at is not None:
            raise optuna.TrialPruned()
    """

    def __init__(self, trial: Any, monitor: str = "val_accuracy", parent_pid: int | None = None):
        self.trial = trial
        self.monitor = monitor
        self.parent_pid = parent_pid
        self.pruned_at: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"monitor: {self.monitor!r} is not in the epoch's logs "
                             f"({', '.join(logs)}); fit needs validation data")
        self.trial.report(float(logs[self.monitor]), epoch + 1)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.trainer.stop_training = True
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            # the coordinating process is gone (killed): a worker does not train on alone
            # (KeyboardInterrupt: Optuna records the trial as failed, then stops)
            raise KeyboardInterrupt(f"brisk tune worker: the coordinating process "
                                    f"{self.parent_pid} ended; stopping")


def _fmt(v: float) -> str:
    return repr(float(f"{v:.3g}"))  # 3 significant digits, and the exact float parsed back


def _suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    config = {}
    for key in SEARCH_KEYS:
        spec = space[key]
        if "value" in spec:
            config[key] = spec["value"]
        elif "log" in spec:  # the rounded value is the one used, and the one on the command line
            config[key] = float(_fmt(trial.suggest_float(key, *spec["log"], log=True)))
        else:
            config[key] = trial.suggest_categorical(key, spec["choices"])
    return config


def train_argv(settings: dict, config: dict, data_dir: str | None = None,
               device: str | None = None) -> list[str]:
    """The ``brisk train`` arguments of one trial: what it runs, and its rerun."""
    argv = ["train", "--dataset", settings["dataset"], "--model", settings["model"],
            "--optimizer", config["optimizer"], "--lr", repr(float(config["lr"])),
            "--weight-decay", repr(float(config["weight_decay"])),
            "--batch-size", str(config["batch_size"]), "--schedule", config["schedule"],
            "--width", str(config["width"]), "--epochs", str(settings["epochs"]),
            "--validation-split", repr(settings["validation_split"]),
            "--seed", str(settings["seed"])]
    if data_dir is not None:
        argv += ["--data-dir", data_dir]
    if device is not None:
        argv += ["--device", device]
    return argv


def command_line(argv: list[str]) -> str:
    return "brisk " + shlex.join(argv)


class _Objective:
    def __init__(self, settings: dict, space: dict, data_dir: str | None, device: str | None,
                 worker: int = 0, parent_pid: int | None = None):
        self.settings, self.space = settings, space
        self.data_dir, self.device = data_dir, device
        self.worker, self.parent_pid = worker, parent_pid

    def __call__(self, trial: Any) -> float:
        optuna = _optuna()
        from brisk import cli

        config = _suggest(trial, self.space)
        argv = train_argv(self.settings, config, self.data_dir, self.device)
        trial.set_user_attr("argv", argv)
        trial.set_user_attr("config", config)
        trial.set_user_attr("worker", self.worker)
        trial.set_user_attr("host", socket.gethostname())
        import torch

        trial.set_user_attr("threads", torch.get_num_threads())  # a rerun's bits depend on it
        args = cli.make_parser().parse_args([*argv, "--verbose", "0"])
        report = PruningCallback(trial, parent_pid=self.parent_pid)
        result, _, history = cli.train_from_args(args, callbacks=[report])
        trial.set_user_attr("epochs_run", len(history.epoch))
        trial.set_user_attr("test_accuracy", result["test_accuracy"])
        if report.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned after epoch {report.pruned_at}")
        return float(history.history["val_accuracy"][-1])


def _sampler_seed(seed: int, existing: int, worker: int) -> int:
    """TPE's seed for one worker: the base seed alone for the first (and only) worker of a
    new study, so a one-process search reproduces; else mixed with the worker index, the
    trials already there and the host, so parallel workers (and machines) do not draw the
    same random start-up configurations."""
    if existing == 0 and worker == 0:
        return seed
    return zlib.crc32(f"{seed}/{existing}/{worker}/{socket.gethostname()}".encode())


WORKER_ENV = "BRISK_TUNE_WORKER"  # a worker's spec (JSON): in its environment, not its argv,
# where `ps` would show a database password to every user


def _redact(storage: str | None) -> str | None:
    """A database URL without its password, for printing and best.json."""
    return None if storage is None else re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", storage)


def _run_worker(spec: dict) -> int:
    """One worker process: ``python -m brisk tune --worker K``, its spec in $BRISK_TUNE_WORKER."""
    optuna = _optuna()
    import torch

    def on_term(signum, frame):  # the coordinator ends this worker: the trial is recorded failed
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = spec["settings"]
    storage = _storage(spec["storage"])
    sampler = optuna.samplers.TPESampler(
        seed=_sampler_seed(settings["seed"], spec["existing"], spec["worker"]))
    study = _open_study(settings, storage, spec["study_name"], sampler,
                        make_pruner(settings["pruner"]), create=False)
    objective = _Objective(settings, spec["space"], spec["data_dir"], spec["device"],
                           worker=spec["worker"], parent_pid=spec.get("parent_pid"))
    study.optimize(objective, n_trials=spec["n_trials"], timeout=spec["timeout"])
    return 0


# ----------------------------------------------------------------------------- workers


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def _run_workers(specs: list[dict], log_dir: str) -> None:
    """Start one process per spec, wait for all; the first that fails (or Ctrl-C, or
    SIGTERM to this process) ends the others, and the error names the worker and shows
    the end of its log (``log_dir``/worker-K.log)."""
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    procs: list[tuple[dict, subprocess.Popen, str]] = []

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = None
    try:
        old = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: Ctrl-C and errors still end the workers
        old = None
    try:
        for spec in specs:
            log = os.path.join(log_dir, f"worker-{spec['worker']}.log")
            wenv = dict(env, OMP_NUM_THREADS=str(spec["threads"]))
            wenv[WORKER_ENV] = json.dumps(spec)
            with open(log, "w") as f:
                p = subprocess.Popen([sys.executable, "-m", "brisk", "tune", "--worker",
                                      str(spec["worker"])], stdout=f, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=wenv)
            procs.append((spec, p, log))
        while True:
            running = 0
            for spec, p, log in procs:
                rc = p.poll()
                if rc is None:
                    running += 1
                elif rc != 0:
                    raise RuntimeError(f"brisk tune: worker {spec['worker']} (pid {p.pid}) "
                                       f"exited with code {rc}; the end of {log}:\n{_tail(log)}")
            if not running:
                return
            time.sleep(0.1)
    finally:
        for _, p, _ in procs:
            if p.poll() is None:
                p.terminate()
        for _, p, _ in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if old is not None:
            signal.signal(signal.SIGTERM, old)


# ----------------------------------------------------------------------------- output


def _rows(study: Any) -> list[dict]:
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    t0 = min(starts) if starts else None
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        config = t.user_attrs.get("config", {})
        last = max(t.intermediate_values) if t.intermediate_values else None
        row = {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "last_reported": t.intermediate_values[last] if last is not None else None,
            "test_accuracy": t.user_attrs.get("test_accuracy"),
            "epochs_run": t.user_attrs.get("epochs_run"),
            "duration_s": (round(t.duration.total_seconds(), 2)
                           if t.duration is not None else None),
            "finished_s": (round((t.datetime_complete - t0).total_seconds(), 2)
                           if t.datetime_complete is not None and t0 is not None else None),
            "worker": t.user_attrs.get("worker"),
            **{k: config.get(k) for k in SEARCH_KEYS},
            "command": command_line(t.user_attrs["argv"]) if "argv" in t.user_attrs else None,
        }
        rows.append(row)
    return rows


def _table(rows: list[dict]) -> str:
    def f(v, spec=""):
        return "-" if v is None else format(v, spec)

    lines = [f"{'trial':>5} {'state':<8} {'val_acc':>7} {'test_acc':>8} {'epochs':>6} "
             f"{'seconds':>7} {'worker':>6}  params"]
    for r in rows:
        params = " ".join(f"{k}={r[k]}" for k in SEARCH_KEYS if r[k] is not None)
        lines.append(f"{r['number']:>5} {r['state']:<8} {f(r['value'], '.4f'):>7} "
                     f"{f(r['test_accuracy'], '.4f'):>8} {f(r['epochs_run']):>6} "
                     f"{f(r['duration_s'], '.1f'):>7} {f(r['worker']):>6}  {params}")
    return "\n".join(lines)


def _write_csv(rows: list[dict], path: str) -> None:
    from brisk.engine.checkpoint import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["number"])
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def plot_trials(rows: list[dict], path: str) -> None:
    """A PNG of validation accuracy against trial number and against time (finished
    trials' values; a pruned trial at its last reported value, as an x), with the best so
    far as a step line. matplotlib's Agg canvas directly (no pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, label in ((axes[0], "number", "trial"),
                           (axes[1], "finished_s", "time since the first trial started (s)")):
        done = sorted((r for r in rows if r["state"] == "COMPLETE" and r[key] is not None),
                      key=lambda r: r[key])
        pruned = [r for r in rows if r["state"] == "PRUNED" and r["last_reported"] is not None
                  and r[key] is not None]
        if done:
            ax.plot([r[key] for r in done], [r["value"] for r in done], "o", color="C0",
                    label="complete")
            best, xs, ys = -math.inf, [], []
            for r in done:
                best = max(best, r["value"])
                xs.append(r[key])
                ys.append(best)
            ax.step(xs, ys, where="post", color="C3", label="best so far")
        if pruned:
            ax.plot([r[key] for r in pruned], [r["last_reported"] for r in pruned], "x",
                    color="0.5", label="pruned (last report)")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy")
    axes[0].legend(loc="lower right")
    fig.suptitle("brisk tune")
    fig.tight_layout()
    fig.savefig(path, format="png")


# ----------------------------------------------------------------------------- tune


def tune(
    *,
    dataset: str = "digits",
    model: str = "mlp",
    trials: int = 20,
    workers: int = 1,
    epochs: int = 10,
    storage: str | None = None,
    study_name: str | None = None,
    pruner: str = "median",
    seed: int = 0,
    data_dir: str | None = None,
    device: str | None = None,
    out: str | None = None,
    timeout: float | None = None,
    search: dict | None = None,
    verbose: int = 1,
) -> TuneResult:
    """Search ``brisk train``'s hyperparameters on Optuna; returns a ``TuneResult``.

    ``trials``: trials this call runs (split over ``workers`` processes); ``epochs``: each
    trial's length; ``storage``: a journal file path or a database URL shared by every
    process (default: OUT/journal.log with ``out``, a temporary journal with several
    workers, else memory); ``study_name`` (default 'brisk'): an existing study of the same
    settings is continued, so the same command on another machine (same database URL and
    study name) joins it; ``pruner``: 'median', 'halving' or 'none'; ``timeout``: seconds
    after which no new trial starts; ``search``: replaces parts of the search space,
    ``{"lr": (1e-3, 1e-1), "optimizer": ["adam", "sgd"], "width": 64}`` (a log-uniform
    range, choices, a fixed value). With ``out``: trials.csv, best.json and tune.png.

    Example::

        r = brisk.tune(trials=10, epochs=5, out="runs/tune")
        r.best_command   # 'brisk train --dataset digits ... --validation-split 0.2 --seed 0'
    """
    from brisk import cli

    # every argument checked before anything runs
    if dataset not in cli.DATASETS:
        raise ValueError(f"dataset: expected one of {', '.join(cli.DATASETS)}, got {dataset!r}")
    if model not in cli.MODELS:
        raise ValueError(f"model: expected one of {', '.join(cli.MODELS)}, got {model!r}")
    _int("trials", trials, 1)
    _int("workers", workers, 1)
    _int("epochs", epochs, 1)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed: expected an int in [0, 2**32 - 1], got {seed!r}")
    if pruner not in PRUNERS:
        raise ValueError(f"pruner: expected one of {', '.join(PRUNERS)}, got {pruner!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not 0 < timeout < math.inf):
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
    if study_name is not None and (not isinstance(study_name, str) or not study_name):
        raise ValueError(f"study_name: expected a non-empty string, got {study_name!r}")
    study_name = study_name or STUDY_NAME
    space = _check_search(search, model)
    if device is not None:
        from brisk import select_device

        select_device(device)  # 'device: ...' ValueError for a name or a GPU that is not there
    if out is not None:
        try:
            cli._check_out_dir(out)
        except ValueError as e:
            raise ValueError(str(e).replace("--out: ", "out: ", 1)) from None
    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = {"dataset": dataset, "model": model, "epochs": epochs, "seed": seed,
                "validation_split": VALIDATION_SPLIT, "pruner": pruner, "space": space}

    tmp = None
    try:
        if storage is None and out is not None:
            storage = os.path.join(out, "journal.log")
        elif storage is None and workers > 1:
            tmp = tempfile.TemporaryDirectory(prefix="brisk-tune-")
            storage = os.path.join(tmp.name, "journal.log")
        store = _storage(storage)
        shares = [trials // workers + (k < trials % workers) for k in range(workers)]
        shares = [s for s in shares if s]
        # the study is created here, before any worker starts: workers only load it
        probe = _open_study(settings, store, study_name, None, None, create=True)
        existing = len(probe.get_trials(deepcopy=False))
        if verbose and existing:
            print(f"brisk tune: study {study_name!r} in {_redact(storage)} has {existing} trials; "
                  f"adding {trials}")
        if len(shares) == 1:  # one process: this one
            sampler = optuna.samplers.TPESampler(seed=_sampler_seed(seed, existing, 0))
            # in memory (no storage) the probe's study is dropped and a new one made
            study = _open_study(settings, store, study_name, sampler, make_pruner(pruner),
                                create=store is None)
            study.optimize(_Objective(settings, space, data_dir, device), n_trials=trials,
                           timeout=timeout)
        else:
            threads = max(1, (os.cpu_count() or 1) // len(shares))
            log_dir = os.path.join(out, "workers") if out is not None else tmp.name if tmp else (
                os.path.dirname(os.path.abspath(storage)))
            os.makedirs(log_dir, exist_ok=True)
            specs = [{"worker": k, "n_trials": n, "storage": storage, "study_name": study_name,
                      "settings": settings, "space": space, "data_dir": data_dir,
                      "device": device, "timeout": timeout, "threads": threads,
                      "existing": existing, "parent_pid": os.getpid()}
                     for k, n in enumerate(shares)]
            if verbose:
                print(f"brisk tune: {len(specs)} workers ({threads} torch "
                      f"thread{'s' if threads > 1 else ''} each), "
                      f"{trials} trials, storage {_redact(storage)}, study {study_name!r}")
            _run_workers(specs, log_dir)
            study = _open_study(settings, _storage(storage), study_name, None, None,
                                create=False)
        return _report(study, out, storage, study_name, verbose)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _report(study: Any, out: str | None, storage: str | None, study_name: str,
            verbose: int) -> TuneResult:
    optuna = _optuna()
    from brisk.engine.checkpoint import atomic_write_text

    rows = _rows(study)
    complete = [t for t in study.get_trials(deepcopy=False,
                                            states=(optuna.trial.TrialState.COMPLETE,))]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    result = TuneResult(study=study, best_number=best.number if best else None,
                        best_value=best.value if best else None,
                        best_argv=list(best.user_attrs["argv"]) if best else None,
                        best_command=command_line(best.user_attrs["argv"]) if best else None,
                        rows=rows, out=out)
    if out is not None:
        _write_csv(rows, os.path.join(out, "trials.csv"))
        payload = {"study_name": study_name, "storage": _redact(storage),
                   "number": result.best_number, "value": result.best_value,
                   "test_accuracy": best.user_attrs.get("test_accuracy") if best else None,
                   "params": best.user_attrs.get("config") if best else None,
                   "threads": best.user_attrs.get("threads") if best else None,
                   "argv": result.best_argv, "command": result.best_command}
        atomic_write_text(os.path.join(out, "best.json"), json.dumps(payload, indent=2))
        plot_trials(rows, os.path.join(out, "tune.png"))
    if verbose:
        print(_table(rows))
        counts = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL")}
        print(f"{len(rows)} trials: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
              f"{counts['FAIL']} failed")
        if best is not None:
            print(f"best: trial {best.number}, validation accuracy {best.value:.4f}; rerun with")
            print(f"  {result.best_command}")
            threads = best.user_attrs.get("threads")
            if threads is not None:  # another thread count can change the last bits
                print(f"  (it ran with {threads} torch thread{'s' if threads > 1 else ''}: "
                      f"OMP_NUM_THREADS={threads} reruns it bit for bit)")
        else:
            print("no trial completed")
        if out is not None:
            print(f"wrote {out}/trials.csv, best.json, tune.png")
    return result
