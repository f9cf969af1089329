import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import brisk
from brisk.cli import main

SRC = str(Path(brisk.__file__).resolve().parents[1])


def run_cli(*args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "brisk", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_brisk_train_runs_offline_end_to_end(tmp_path):
    out = tmp_path / "run"
    # No network is used: an unreachable proxy makes any download attempt fail loudly.
    r = run_cli("train", "--epochs", "8", "--out", str(out),
                env_extra={"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"})
    assert r.returncode == 0, r.stderr
    assert "test accuracy:" in r.stdout and "samples/s" in r.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["dataset"] == "digits" and result["test_accuracy"] >= 0.9
    lines = (out / "history.csv").read_text().strip().splitlines()
    assert lines[0].startswith("epoch,loss,accuracy") and len(lines) == 9
    model = brisk.load_model(out / "model.safetensors")
    (_, _), (xt, yt) = brisk.datasets.load_digits()
    assert model.evaluate(xt, yt, return_dict=True)["accuracy"] == result["test_accuracy"] or abs(
        model.evaluate(xt, yt, return_dict=True)["accuracy"] - result["test_accuracy"]) < 1e-4


def test_help_explains_every_option(capsys):
    r = run_cli("train", "--help")
    assert r.returncode == 0
    for opt in ("--dataset", "--data-dir", "--model", "--optimizer", "--lr", "--epochs",
                "--batch-size", "--device", "--seed", "--out"):
        assert opt in r.stdout
    assert main([]) == 0 and "train" in capsys.readouterr().out


def test_cli_cnn_on_digits_and_bad_options(capsys):
    assert main(["train", "--model", "cnn", "--epochs", "1", "--verbose", "0"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    r = run_cli("train", "--epochs", "0")
    assert r.returncode == 2 and "expected a positive integer" in r.stderr
    assert main(["train", "--optimizer", "adamm", "--epochs", "1"]) == 2
    assert "adam" in capsys.readouterr().err


def test_lr_find_prints_a_suggestion_writes_a_plot_and_rejects_bad_rates(tmp_path, capsys):
    plot = tmp_path / "lr.png"
    assert main(["lr-find", "--steps", "60", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    rate = float(out.split("suggested learning rate:")[1].split()[0])
    assert 1e-7 < rate < 10  # inside the swept range
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # end below start: a clear error naming the argument, before anything trains
    assert main(["lr-find", "--start-lr", "1", "--end-lr", "0.1", "--plot", str(plot)]) == 2
    assert "end_lr" in capsys.readouterr().err
    r = run_cli("lr-find", "--help")
    for opt in ("--start-lr", "--end-lr", "--steps", "--plot", "--dataset", "--optimizer"):
        assert opt in r.stdout


def test_compress_a_model_saved_by_brisk_train_keeps_accuracy_within_max_drop(tmp_path,
                                                                              monkeypatch):
    import brisk.cli

    run = tmp_path / "run"
    written = []
    real = brisk.cli.atomic_write_text
    monkeypatch.setattr(brisk.cli, "atomic_write_text",
                        lambda path, text: (written.append(os.path.basename(path)), real(path, text)))
    assert main(["train", "--epochs", "5", "--verbose", "0", "--out", str(run)]) == 0
    # --out files go through the atomic writer (a kill leaves the old file or the new one)
    assert written == ["history.csv", "result.json"]
    assert sorted(p.name for p in run.iterdir()) == ["history.csv", "history.png",
                                                     "model.safetensors", "result.json"]
    assert (run / "history.csv").read_text().splitlines()[0].startswith("epoch,loss")
    r = run_cli("compress", str(run), "--sparsity", "0.8", "--epochs", "2", "--max-drop", "2",
                "--out", str(tmp_path / "c"), "--quiet")
    assert r.returncode == 0, r.stderr
    for stage in ("dense", "pruned", "fine-tuned", "folded", "quantized"):
        assert f"| {stage} |" in r.stdout
    report = json.loads((tmp_path / "c" / "compress.json").read_text())
    stages = {s["stage"]: s for s in report["stages"]}
    assert report["dataset"] == "digits"  # read from the run's result.json
    dense, final = stages["dense"], stages["quantized"]
    assert final["nonzero"] < dense["nonzero"] and final["file_bytes"] < dense["file_bytes"] / 3
    # the guard bounds the drop on the held-out slice it watches
    assert stages["fine-tuned"]["val_accuracy"] >= dense["val_accuracy"] - 0.02 - 1e-9
    assert (tmp_path / "c" / "model.brisk").stat().st_size == final["file_bytes"]
    r = run_cli("compress", str(run), "--sparsity", "1.5")
    assert r.returncode == 2 and "sparsity" in r.stderr


def test_train_recipe_and_bench_from_the_command_line(tmp_path, data_dir):
    r = run_cli("train", "--recipe", "mnist-mlp", "--epochs", "1", "--data-dir", str(data_dir),
                "--out", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["test_accuracy"] > 0.95  # one epoch of the recipe on full MNIST
    r = run_cli("bench", "mnist-mlp", "--runs", "2", "--warmup", "0", "--limit", "2000",
                "--data-dir", str(data_dir), "--out", str(tmp_path / "b"), "--quiet")
    assert r.returncode == 0, r.stderr
    files = sorted(p.suffix for p in (tmp_path / "b").iterdir())
    assert {".json", ".md", ".png"} <= set(files)
    assert run_cli("bench", "mnist-mlp", "--runs", "0").returncode == 2


def test_an_unwritable_out_is_refused_before_training(tmp_path, capsys, monkeypatch):
    import brisk.cli

    trained = []
    monkeypatch.setattr(brisk.cli, "_data_and_model", lambda args: trained.append(1))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "--out", str(blocker / "run")]) == 2  # a file where a folder must be
    assert "--out: cannot create the folder" in capsys.readouterr().err
    assert main(["train", "--out", str(blocker)]) == 2
    assert "(File exists)" in capsys.readouterr().err
    assert trained == []  # refused before any data was read or model trained


@pytest.mark.slow  # four CLI processes; in CI, not in the mutation runs
def test_train_out_resumes_after_kill_9_and_ends_as_the_uninterrupted_run(tmp_path):
    import signal
    import time

    from safetensors.torch import load_file

    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [sys.executable, "-m", "brisk", "train", "--epochs", "6", "--verbose", "0"]
    full = tmp_path / "full"
    assert run_cli(*args[3:], "--out", str(full)).returncode == 0
    assert not (full / "backup").exists()  # deleted after a clean finish
    out = tmp_path / "out"
    proc = subprocess.Popen([*args, "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (out / "backup" / "latest.pt").exists() and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert not (out / "result.json").exists(), "finished before the kill: nothing to resume"
    r = run_cli(*args[3:], "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "resuming from the backup in" in r.stdout
    result = json.loads((out / "result.json").read_text())
    assert 1 <= result["epochs_this_run"] < 6
    # the whole run's history, each epoch once, equal to the uninterrupted run's
    assert (out / "history.csv").read_text() == (full / "history.csv").read_text()
    a, b = load_file(full / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a backup already past --epochs is refused before anything runs (and kept)
    import shutil

    os.makedirs(out / "backup", exist_ok=True)
    done = brisk.Sequential([brisk.layers.Input((2,)), brisk.layers.Dense(1)])
    done.compile(optimizer="sgd", loss="mse")
    done.fit(np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32"), epochs=3, verbose=0)
    done.trainer.save_checkpoint(tmp_path / "ep3.pt")  # a backup taken after 3 epochs
    shutil.copy(tmp_path / "ep3.pt", out / "backup" / "latest.pt")
    r = run_cli("train", "--epochs", "2", "--verbose", "0", "--out", str(out))
    assert r.returncode == 2 and "--epochs 2: the backup in" in r.stderr
    assert "has already trained 3 epochs; pass --epochs > 3" in r.stderr
    assert (out / "backup" / "latest.pt").exists()
    # --no-resume starts over: a backup left behind is not used
    os.makedirs(out / "backup", exist_ok=True)
    (out / "backup" / "latest.pt").write_bytes(b"junk")
    r = run_cli(*args[3:], "--out", str(out), "--no-resume")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "result.json").read_text())["epochs_this_run"] == 6
