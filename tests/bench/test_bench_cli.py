"""``brisk bench`` and ``brisk train --recipe`` through their plain CLI functions."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

import brisk
from brisk.bench.cli import add_bench_arguments, run_bench_from_args
from brisk.recipes.cli import run_recipe_from_args


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brisk bench")
    add_bench_arguments(p)
    return p


def test_bench_arguments_and_defaults():
    a = parser().parse_args(["mnist-cnn"])
    assert (a.recipe, a.runs, a.warmup, a.seed, a.out) == ("mnist-cnn", 5, 1, 0, "bench-out")
    assert a.target is None and a.eval_every is None and a.epochs is None and a.limit is None
    a = parser().parse_args(["mnist-mlp", "--runs", "2", "--warmup", "0", "--eval-every",
                             "0.5", "--target", "0.9", "--device", "cpu", "--data-dir", "d"])
    assert (a.runs, a.warmup, a.eval_every, a.target, a.device, a.data_dir) == (
        2, 0, 0.5, 0.9, "cpu", "d")


@pytest.mark.parametrize("argv", [["mnist-cnn", "--runs", "0"], ["mnist-cnn", "--runs", "x"],
                                  ["mnist-cnn", "--warmup", "-1"], ["mnist-cnn", "--target", "0"],
                                  ["mnist-cnn", "--eval-every", "-0.1"], []])
def test_bad_bench_arguments_are_rejected(argv, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(argv)
    assert "error" in capsys.readouterr().err


def test_run_bench_from_args_writes_the_report(tmp_path, data_dir, capsys):
    out = tmp_path / "bench"
    args = parser().parse_args([
        "mnist-mlp", "--runs", "2", "--warmup", "1", "--epochs", "1", "--limit", "800",
        "--target", "0.5", "--eval-every", "0.5", "--data-dir", str(data_dir), "--out", str(out),
        "--seed", "2"])
    assert run_bench_from_args(args) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "warm-up:" in printed and "run 2/2" in printed
    assert "bench mnist-mlp" in captured.err and "3/3" in captured.err  # the runs' bar
    assert "| run | seed | time to target (s) |" in printed
    report = json.loads((out / "mnist-mlp.json").read_text())
    assert [r["seed"] for r in report["runs"]] == [2, 3]
    assert [w["seed"] for w in report["config"]["warmup"]] == [4]
    assert report["config"]["train_samples"] == 800 and report["target"] == 0.5
    for r in report["runs"]:
        assert r["time_to_target"] is None or r["time_to_target"] <= r["train_seconds"]
        assert 0 <= r["final_accuracy"] <= 1 and r["eval_seconds"] > 0
    assert (out / "mnist-mlp.md").is_file() and (out / "mnist-mlp.png").is_file()


def test_run_bench_from_args_unknown_recipe():
    args = parser().parse_args(["mnist-cnnn", "--warmup", "0"])
    with pytest.raises(ValueError, match="did you mean 'mnist-cnn'.*known recipes: mnist-mlp"):
        run_bench_from_args(args)


def test_run_recipe_from_args_trains_prints_and_saves(tmp_path, data_dir, capsys, monkeypatch):
    # The full recipe takes seconds; cut the data to a slice by wrapping the loader.
    from brisk.recipes import registry

    real = registry.Recipe.load_data
    monkeypatch.setattr(registry.Recipe, "load_data",
                        lambda self, d=None, limit=None: real(self, d, 1000))
    out = tmp_path / "run"
    assert run_recipe_from_args("mnist-mlp", str(data_dir), "cpu", 1, 0, str(out)) == 0
    printed = capsys.readouterr().out
    assert "recipe mnist-mlp: test accuracy 0." in printed and "training time:" in printed
    result = json.loads((out / "result.json").read_text())
    assert result["epochs"] == 1 and result["train_samples"] == 1000
    assert 0.3 < result["test_accuracy"] <= 1.0 and result["train_seconds"] > 0
    # The saved model is the trained one: it scores what was printed.
    # compile=False: brisk.load_model cannot yet recompile a model compiled with an
    # optimizer object (SGD.get_config() carries 'name', which SGD() rejects).
    model = brisk.load_model(out / "model.safetensors", compile=False)
    (_, _), (xt, yt) = registry.get("mnist-mlp").load_data(data_dir)
    with torch.no_grad():
        x = torch.as_tensor(xt)  # raw uint8: the model's Rescaling(1/255) scales it
        pred = model.eval()(x).argmax(1).numpy()
    acc = float((pred == yt).mean())
    assert acc == pytest.approx(result["test_accuracy"], abs=1e-3)  # 1 of 1000 may flip
    assert f"{result['test_accuracy']:.4f}" in printed


def test_run_recipe_from_args_unknown_name_and_bad_out(tmp_path):
    with pytest.raises(ValueError, match="unknown name 'fashion-cnn'.*did you mean "
                                         "'fashion-mnist-cnn'"):
        run_recipe_from_args("fashion-cnn", None, None, None, 0, None)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="out: .* is not a folder"):
        run_recipe_from_args("mnist-mlp", None, None, 1, 0, str(f))
