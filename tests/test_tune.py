"""brisk tune / brisk.tune: Optuna search over `brisk train` runs, in N worker processes
sharing one storage. And the `brisk train` options tune needs to write its best trial as a
command line (--width, --weight-decay, --schedule, --validation-split)."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import brisk
from brisk import cli

optuna = pytest.importorskip("optuna")
tune_mod = sys.modules["brisk.tune"]  # brisk.tune is the function; this is its module

SRC = str(Path(brisk.__file__).resolve().parents[1])


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread, as each of tune's workers has on 2 cores: tiny models gain nothing
    from a second thread, and lose ~10x when another process keeps the other core busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def time_limit(seconds: int):
    """Raise TimeoutError in the main thread after ``seconds`` (a hang fails, not blocks)."""
    def fire(signum, frame):
        raise TimeoutError(f"over {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_bounded(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    """`python -m brisk ARGS` in its own session; on timeout the whole group (its workers
    too) is killed and the test fails."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.Popen([sys.executable, "-m", "brisk", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"brisk {' '.join(args)} ran over {timeout} s")
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment contains ``marker`` (Linux /proc; a worker's
    spec is in its environment)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if marker.encode() in f.read():
                        pids.append(int(d))
            except OSError:
                pass
    return pids


# ------------------------------------------------------------ 2 workers, one journal file

TRIALS = 4


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    journal = out / "shared.journal"
    r = run_bounded(["tune", "--trials", str(TRIALS), "--workers", "2", "--epochs", "3",
                     "--storage", str(journal), "--study-name", "digits-test",
                     "--search", "width=32,64,128", "--out", str(out)], timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    return out, journal, r.stdout


def test_two_workers_share_a_journal_and_record_each_trial_once(two_worker_run):
    out, journal, stdout = two_worker_run
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(study_name="digits-test",
                              storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = study.get_trials()
    # exactly TRIALS trials, numbered 0..T-1 once each, all finished
    assert sorted(t.number for t in trials) == list(range(TRIALS))
    assert len({t._trial_id for t in trials}) == TRIALS
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    # both workers ran their share (2 each), with 1 torch thread each on this machine
    workers = sorted(t.user_attrs["worker"] for t in trials)
    assert workers == [0, 0, 1, 1]
    # each trial is its own configuration (the workers' samplers are seeded apart)
    configs = [json.dumps(t.user_attrs["config"], sort_keys=True) for t in trials]
    assert len(set(configs)) == TRIALS
    # every completed trial reported each epoch; its value is the last report
    for t in trials:
        if t.state.name == "COMPLETE":
            assert sorted(t.intermediate_values) == [1, 2, 3]
            assert t.value == t.intermediate_values[3]
            assert 0 <= t.value <= 1
    # the outputs: table, trials.csv (one row per trial), best.json, tune.png
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == list(range(TRIALS))
    best = json.loads((out / "best.json").read_text())
    top = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert best["value"] == top.value and best["command"].startswith("brisk train ")
    assert f"  {best['command']}" in stdout and "trial state" in stdout
    assert best["threads"] == max(1, (os.cpu_count() or 1) // 2)  # the workers' share
    assert f"OMP_NUM_THREADS={best['threads']} reruns it bit for bit" in stdout
    assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "workers").iterdir()) == ["worker-0.log",
                                                                   "worker-1.log"]


def test_the_best_command_line_reproduces_the_best_trial(two_worker_run, tmp_path):
    out, _, _ = two_worker_run
    best = json.loads((out / "best.json").read_text())
    argv = best["argv"]
    assert argv == best["command"].split()[1:]  # the printed line is the argv, nothing hidden
    for opt in ("--lr", "--batch-size", "--optimizer", "--schedule", "--weight-decay",
                "--width", "--seed", "--validation-split", "--epochs"):
        assert opt in argv
    # A worker ran the trial with `threads` torch threads; the rerun uses as many, so the
    # computation is the same one and the value must be equal, not close. (Another thread
    # count sums in another order: on this trial's kind, 1 vs 2 threads gave weights apart
    # by up to 3e-6 after 3 epochs, the same accuracies; so the count is pinned here.)
    torch.set_num_threads(best["threads"])  # _one_thread restores it
    assert cli.main([*argv, "--verbose", "0", "--out", str(tmp_path / "rerun")]) == 0
    result = json.loads((tmp_path / "rerun" / "result.json").read_text())
    assert result["val_accuracy"] == round(best["value"], 4)  # result.json keeps 4 digits
    assert result["test_accuracy"] == best["test_accuracy"]


# ------------------------------------------------------------ pruning


def fixed_space(**values):
    base = {"lr": 0.01, "batch_size": 64, "optimizer": "adam", "schedule": "constant",
            "weight_decay": 0.0, "width": 32}
    return {k: {"value": v} for k, v in {**base, **values}.items()}


def test_the_median_pruner_stops_a_clearly_worse_trial_after_epoch_2():
    settings = {"dataset": "digits", "model": "mlp", "epochs": 4, "seed": 0,
                "validation_split": 0.2, "pruner": "median"}
    study = optuna.create_study(direction="maximize", pruner=tune_mod.make_pruner("median"))
    good = tune_mod._Objective(settings, fixed_space(), None, None)
    bad = tune_mod._Objective(settings, fixed_space(optimizer="sgd", lr=1e-5), None, None)
    study.optimize(good, n_trials=5)  # the pruner's 5 start-up trials
    study.optimize(bad, n_trials=1)
    t = study.trials
    assert [x.state.name for x in t] == ["COMPLETE"] * 5 + ["PRUNED"]
    assert [x.user_attrs["epochs_run"] for x in t] == [4] * 5 + [2]  # stopped at epoch 2
    assert sorted(t[5].intermediate_values) == [1, 2]
    assert t[5].intermediate_values[2] < t[0].intermediate_values[2]
    # the same seed and configuration: the five good trials are one computation
    assert len({x.value for x in t[:5]}) == 1


def test_pruner_names_map_to_optuna_pruners():
    assert isinstance(tune_mod.make_pruner("median"), optuna.pruners.MedianPruner)
    assert isinstance(tune_mod.make_pruner("halving"), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(tune_mod.make_pruner("none"), optuna.pruners.NopPruner)
    with pytest.raises(ValueError, match="pruner: expected one of median, halving, none"):
        tune_mod.make_pruner("hyperband")


class FakeTrial:
    def __init__(self, prune_at):
        self.prune_at, self.reports = prune_at, []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.reports[-1][0] >= self.prune_at


def test_pruning_callback_reports_every_epoch_and_stops_the_fit():
    (x, y), _ = brisk.datasets.load_digits()
    model = cli.build_model("mlp", (8, 8), 10, width=16)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], seed=0)
    trial = FakeTrial(prune_at=2)
    cb = tune_mod.PruningCallback(trial)
    h = model.fit(x, y, epochs=5, validation_split=0.2, verbose=0, callbacks=[cb])
    assert cb.pruned_at == 2 and len(h.epoch) == 2  # stopped after the 2nd epoch of 5
    assert trial.reports == [(1, h.history["val_accuracy"][0]), (2, h.history["val_accuracy"][1])]
    cb = tune_mod.PruningCallback(FakeTrial(prune_at=99))
    assert len(model.fit(x, y, epochs=3, validation_split=0.2, verbose=0,
                         callbacks=[cb]).epoch) == 3 and cb.pruned_at is None
    with pytest.raises(ValueError, match="val_accuracy"):  # no validation: said, not a KeyError
        model.fit(x, y, epochs=1, verbose=0, callbacks=[tune_mod.PruningCallback(FakeTrial(1))])


# ------------------------------------------------------------ one process, seeded


def test_one_worker_search_is_reproducible_from_its_seed_and_continues_a_study(tmp_path, capsys):
    kw = dict(trials=2, epochs=2, search={"batch_size": 128, "width": 16}, verbose=0)
    a = brisk.tune(seed=3, **kw)
    b = brisk.tune(seed=3, **kw)
    assert [(r["lr"], r["optimizer"], r["value"]) for r in a.rows] == [
        (r["lr"], r["optimizer"], r["value"]) for r in b.rows]
    assert all(r["batch_size"] == 128 and r["width"] == 16 for r in a.rows)
    assert "--seed 3" in a.best_command and "--batch-size 128" in a.best_command
    # with out, the study lives in OUT/journal.log: the same call again adds its trials
    brisk.tune(seed=3, out=str(tmp_path), **kw)
    r = brisk.tune(seed=3, out=str(tmp_path), **kw)
    assert [x["number"] for x in r.rows] == [0, 1, 2, 3]
    # a study started with other settings is refused, naming the setting
    with pytest.raises(ValueError, match="study_name: .* started with epochs=2, not 3"):
        brisk.tune(seed=3, out=str(tmp_path), **{**kw, "epochs": 3})


# ------------------------------------------------------------ workers: failure, clean-up


def test_a_failing_worker_stops_the_others_and_its_error_surfaces(tmp_path):
    brisk.tune(trials=1, epochs=1, out=str(tmp_path), verbose=0)  # a study to share
    journal = str(tmp_path / "journal.log")
    study = optuna.load_study(study_name="brisk", storage=tune_mod._storage(journal))
    settings = study.user_attrs["brisk_tune_settings"]
    marker = f"marker-{os.getpid()}-{tmp_path.name}"
    spec = {"storage": journal, "settings": settings, "space": settings["space"],
            "data_dir": marker, "device": None, "timeout": None, "threads": 1,
            "existing": 1, "parent_pid": os.getpid()}
    specs = [{**spec, "worker": 0, "n_trials": 1, "study_name": "no-such-study"},  # fails
             {**spec, "worker": 1, "n_trials": 10**6, "study_name": "brisk"}]  # runs on
    logs = tmp_path / "logs"
    logs.mkdir()
    with time_limit(120), pytest.raises(RuntimeError) as e:
        tune_mod._run_workers(specs, str(logs))
    assert "worker 0" in str(e.value) and "no-such-study" in str(e.value)
    assert processes_with(marker) == []  # the long-running worker was ended too


# ------------------------------------------------------------ bad input, before any trial


@pytest.mark.parametrize("kwargs, msg", [
    ({"trials": 0}, "trials: expected an int >= 1, got 0"),
    ({"trials": True}, "trials: expected an int >= 1"),
    ({"workers": 0}, "workers: expected an int >= 1, got 0"),
    ({"epochs": 0}, "epochs: expected an int >= 1"),
    ({"pruner": "mean"}, "pruner: expected one of median, halving, none, got 'mean'"),
    ({"dataset": "cifar"}, "dataset: expected one of digits, mnist, fashion-mnist"),
    ({"model": "resnet"}, "model: expected one of mlp, cnn"),
    ({"seed": -1}, "seed: expected an int in [0, 2**32 - 1]"),
    ({"timeout": 0}, "timeout: expected a positive number"),
    ({"device": "tpu"}, "device: expected"),
    ({"search": {"momentum": [0.9]}}, "search: unknown name 'momentum'"),
    ({"search": {"lr": (0.1, 0.01)}}, "search: lr: expected 0 < low <= high"),
    ({"search": {"width": [0, 8]}}, "search: width: expected an integer in [1, 65536], got 0"),
    ({"search": {"optimizer": ["adam", "adamm"]}}, "search: optimizer: "),
    ({"search": {"batch_size": (16, 64)}}, "search: batch_size: a (low, high) range is for lr"),
    ({"storage": "/no/such/folder/journal.log"}, "storage: the folder of the journal file"),
])
def test_bad_arguments_are_refused_before_any_trial(kwargs, msg, monkeypatch):
    ran = []
    monkeypatch.setattr(cli, "train_from_args", lambda *a, **k: ran.append(1))
    with pytest.raises(ValueError) as e:
        brisk.tune(**{"trials": 1, "epochs": 1, "verbose": 0, **kwargs})
    assert msg in str(e.value)
    assert ran == []


def test_unreadable_storage_and_cli_errors(tmp_path, capsys):
    garbage = tmp_path / "journal.log"
    garbage.write_text("not a journal\n")
    with pytest.raises(ValueError, match="storage: cannot read the journal file"):
        brisk.tune(storage=str(garbage), trials=1, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="storage: cannot open the database"):
        brisk.tune(storage=f"sqlite:///{tmp_path}/no/such/dir/t.db", trials=1, epochs=1,
                   verbose=0)
    with pytest.raises(SystemExit):
        cli.main(["tune", "--trials", "0"])
    assert "argument --trials: expected a positive integer" in capsys.readouterr().err
    assert cli.main(["tune", "--trials", "1", "--search", "width"]) == 2
    assert "--search: expected NAME=" in capsys.readouterr().err
    assert cli.main(["tune", "--trials", "1", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "brisk tune: error: storage: " in err and "is a folder" in err


def test_missing_optuna_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'brisk\[tune\]'"):
        brisk.tune(trials=1, epochs=1, verbose=0)
    assert cli.main(["tune", "--trials", "1"]) == 2
    assert "pip install 'brisk[tune]'" in capsys.readouterr().err


def test_a_database_password_is_not_printed_nor_put_on_a_command_line():
    assert tune_mod._redact("postgresql://tune:s3cret@db.example:5432/brisk") == (
        "postgresql://tune:***@db.example:5432/brisk")
    assert tune_mod._redact("postgresql://tune@db.example/brisk") == (
        "postgresql://tune@db.example/brisk")
    assert tune_mod._redact("runs/tune/journal.log") == "runs/tune/journal.log"


def test_search_option_parses_ranges_choices_and_values():
    parse = tune_mod._parse_search_option
    assert parse(["lr=1e-3:1e-1", "optimizer=adam,sgd", "width=64", "weight-decay=0"]) == {
        "lr": (1e-3, 1e-1), "optimizer": ["adam", "sgd"], "width": 64, "weight_decay": 0.0}
    space = tune_mod._check_search(parse(["lr=1e-3:1e-1", "schedule=cosine,one-cycle"]), "cnn")
    assert space["lr"] == {"log": [1e-3, 1e-1]}
    assert space["schedule"] == {"choices": ["cosine", "one_cycle"]}
    assert space["width"] == {"choices": [16, 32, 64]}  # the cnn's default widths


def test_a_name_searched_twice_is_refused_and_errors_name_it_once():
    with pytest.raises(ValueError, match=r"^--search: lr is given twice \(the second: "
                                         r"'lr=1e-2'\); give each name once$"):
        tune_mod._parse_search_option(["lr=1e-3", "width=8", "lr=1e-2"])
    with pytest.raises(ValueError, match=r"^search: weight_decay is given twice "
                                         r"\(0.001 and 0.0001\)$"):
        tune_mod._check_search({"weight-decay": 1e-3, "weight_decay": 1e-4}, "mlp")
    with pytest.raises(ValueError, match=r"^search: optimizer: unknown name 'nosuchopt'"):
        tune_mod._check_search({"optimizer": ["adam", "nosuchopt"]}, "mlp")


# ------------------------------------------------------------ the brisk train options


def parsed(*argv):
    return cli.make_parser().parse_args(["train", *argv])


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_width_sets_the_hidden_width_exactly():
    # mlp on 8x8 digits: 64*w + w, w*w + w, w*10 + 10
    for w in (None, 16, 100):
        _, _, m = cli._data_and_model(parsed("--width", str(w)) if w else parsed())
        k = w or 64
        assert n_params(m) == 64 * k + k + k * k + k + k * 10 + 10
    # cnn: conv 3x3 1->w, conv 3x3 w->2w, two 2x2 poolings (8 -> 2), Dense(10)
    for w in (None, 8):
        _, _, m = cli._data_and_model(parsed("--model", "cnn", *(["--width", str(w)] if w else [])))
        k = w or 32
        assert n_params(m) == 9 * k + k + 9 * k * 2 * k + 2 * k + 2 * 2 * 2 * k * 10 + 10
    # the default build is the model the README describes
    assert n_params(cli.build_model("mlp", (8, 8), 10)) == n_params(
        cli.build_model("mlp", (8, 8), 10, width=64))


def test_weight_decay_reaches_the_optimizer_groups_and_keeps_defaults():
    def groups(*argv):
        _, model, _ = cli.train_from_args(parsed("--epochs", "1", "--verbose", "0", *argv))
        return [g["weight_decay"] for g in model.trainer.optimizer.param_groups]

    assert groups("--weight-decay", "0.003") == [0.003, 0.0]  # biases are never decayed
    assert groups("--optimizer", "sgd", "--weight-decay", "0.5", "--lr", "0.1") == [0.5, 0.0]
    assert groups() == [0.0]  # Adam's default: one group, no decay
    assert groups("--optimizer", "adamw") == [0.004, 0.0]  # AdamW's Keras default kept
    assert groups("--optimizer", "adamw", "--weight-decay", "0") == [0.0]


def test_schedule_changes_the_logged_learning_rate(tmp_path):
    def lrs(*argv):
        out = tmp_path / str(len(argv))
        assert cli.main(["train", "--epochs", "4", "--verbose", "0", "--lr", "0.01",
                         "--out", str(out), *argv]) == 0
        rows = list(csv.DictReader((out / "history.csv").open()))
        return [float(r["learning_rate"]) for r in rows] if "learning_rate" in rows[0] else None

    assert lrs() == [0.01] * 4  # a constant rate: fit logs none, brisk train --out records it
    cos = lrs("--schedule", "cosine")
    steps = math.ceil(1437 / 32)  # digits' 1,437 training images, batch 32
    # the rate of each epoch's last step: 0.01 * cosine(step / total), from the schedule
    sched = brisk.schedules.get_schedule("cosine", total_steps=4 * steps, steps_per_epoch=steps)
    assert cos == pytest.approx([0.01 * sched((e + 1) * steps - 1) for e in range(4)], rel=1e-6)
    assert cos[0] > cos[1] > cos[2] > cos[3]


def test_validation_split_holds_out_the_last_fraction(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", "--epochs", "2", "--verbose", "0", "--validation-split", "0.25",
                     "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    (x, y), _ = brisk.datasets.load_digits()
    split = math.ceil(len(x) * 0.75)  # Keras: the last 25%, before shuffling
    model = brisk.load_model(out / "model.safetensors")
    acc = model.evaluate(x[split:], y[split:], return_dict=True)["accuracy"]
    assert result["val_accuracy"] == round(acc, 4) and result["validation_split"] == 0.25
    header = (out / "history.csv").read_text().splitlines()[0]
    assert "val_accuracy" in header
    # samples/s counts the samples trained on (1,078 a epoch), not all 1,437: nearer the
    # first (train_seconds is rounded to 0.01 s, so the product is not exact)
    samples = result["samples_per_second"] * result["train_seconds"]
    assert abs(samples - split * 2) < abs(samples - len(x) * 2)


@pytest.mark.parametrize("argv, msg", [
    (["--width", "0"], "argument --width: expected an integer in [1, 65536], got 0"),
    (["--weight-decay", "-1"], "argument --weight-decay: expected a number >= 0, got -1.0"),
    (["--weight-decay", "nan"], "argument --weight-decay: expected a number >= 0, got nan"),
    (["--validation-split", "1"], "argument --validation-split: expected a number between 0 "
     "and 1 (exclusive), got 1.0"),
    (["--schedule", "cosin"], "argument --schedule: expected one of constant, step"),
])
def test_bad_train_options_are_refused(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", *argv])
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_validate_and_validation_split_together_are_refused(capsys):
    assert cli.main(["train", "--validate", "--validation-split", "0.2"]) == 2
    assert "--validation-split: give either --validate" in capsys.readouterr().err


def test_schedule_names_match_the_schedules_module():
    from brisk.optim.schedules import SCHEDULES

    assert cli._SCHEDULES == SCHEDULES
    assert np.isfinite(brisk.schedules.get_schedule("cosine", total_steps=10)(5))
