"""brisk.bench: time-to-accuracy reports on a slice of MNIST."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

import brisk
import brisk.bench as bench
import brisk.recipes as recipes


@pytest.fixture(scope="module")
def report(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("bench")
    # Target 0.5: on 1500 samples the MLP passes it within 2 epochs (measured 0.74+
    # after one), so time to target is defined and below the total time.
    return bench.run("mnist-mlp", runs=2, target=0.5, data_dir=data_dir, out=out,
                     eval_every=0.5, epochs=2, limit=1500, seed=4)


def test_report_has_the_fields(report):
    assert report["recipe"] == "mnist-mlp" and report["target"] == 0.5
    assert report["config"]["runs"] == 2 and len(report["config"]["warmup"]) == 1
    assert report["config"]["train_samples"] == report["config"]["test_samples"] == 1500
    env = report["environment"]
    for key in ("device", "device_name", "torch", "python", "brisk", "torch_threads"):
        assert env[key], key
    assert env["torch"] == torch.__version__ and env["brisk"] == brisk.__version__
    # the precision the recipe's 'auto' chose (the suite fixes 'auto' to fp32: conftest)
    assert (env["precision"], env["precision_reason"]) == ("fp32", "BRISK_AUTO_PRECISION=fp32")
    assert all(r["precision"] == "fp32" for r in report["runs"])
    assert [r["seed"] for r in report["runs"]] == [4, 5]
    assert report["config"]["warmup"][0]["seed"] == 6  # the warm-up is not a timed run
    for key in ("time_to_target", "final_accuracy", "train_seconds", "eval_seconds",
                "samples_per_second"):
        assert set(report["summary"][key]) == {"n", "mean", "std", "min", "max"}


def test_runs_are_consistent(report):
    for r in report["runs"]:
        curve = r["curve"]
        # eval_every 0.5 over 2 epochs: 4 evaluations, the last at the end of training
        assert len(curve) == r["evaluations"] == 4
        assert [p["epoch"] for p in curve] == pytest.approx([0.5, 1.0, 1.5, 2.0], abs=0.02)
        assert all(0.0 <= p["accuracy"] <= 1.0 for p in curve)
        times = [p["train_seconds"] for p in curve]
        assert all(0 < a < b for a, b in zip(times, times[1:], strict=False))
        assert r["train_seconds"] == times[-1]
        assert r["final_accuracy"] == curve[-1]["accuracy"]
        assert r["samples"] == 3000
        assert r["samples_per_second"] == pytest.approx(3000 / r["train_seconds"])
        assert r["eval_seconds"] == pytest.approx(sum(p["eval_seconds"] for p in curve))
        assert r["eval_seconds"] > 0
        # time to target: the clock at the FIRST evaluation at or above the target
        assert r["reached_target"] and r["time_to_target"] <= r["train_seconds"]
        first = next(p for p in curve if p["accuracy"] >= report["target"])
        assert r["time_to_target"] == first["train_seconds"]
    s = report["summary"]
    assert s["reached"] == 2 and s["time_to_target"]["n"] == 2
    for key in ("final_accuracy", "time_to_target", "train_seconds"):
        assert s[key]["min"] <= s[key]["mean"] <= s[key]["max"]
    accs = [r["final_accuracy"] for r in report["runs"]]
    assert s["final_accuracy"]["std"] == pytest.approx(abs(accs[0] - accs[1]) / math.sqrt(2))


def test_files_are_written(report):
    files = report["files"]
    data = json.loads(open(files["json"]).read())
    assert data["summary"]["reached"] == 2 and len(data["runs"]) == 2
    assert data["runs"][0]["curve"] == report["runs"][0]["curve"]
    md = open(files["markdown"]).read()
    assert "| run | seed | time to target (s) |" in md
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 2 + 4  # header, rule, 2 runs, mean/std/min/max
    with open(files["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_unreached_target_is_reported_as_none(data_dir):
    r = bench.run("mnist-mlp", runs=1, target=1.0, data_dir=data_dir, epochs=1, limit=300,
                  warmup=False)
    assert r["runs"][0]["time_to_target"] is None and not r["runs"][0]["reached_target"]
    assert r["summary"]["reached"] == 0 and r["summary"]["time_to_target"]["mean"] is None
    assert r["config"]["warmup"] == [] and r["files"] == {}
    assert "| - |" in bench.markdown(r)


def test_evaluation_time_is_excluded_from_training_time(data_dir, monkeypatch):
    """Slow every evaluation down by 0.3 s: all of it lands in eval_seconds."""
    real = brisk.Trainer.evaluate

    def slow(self, *a, **k):
        time.sleep(0.3)
        return real(self, *a, **k)

    monkeypatch.setattr(brisk.Trainer, "evaluate", slow)
    rec = recipes.get("mnist-mlp")
    (x, y), (xt, yt) = rec.load_data(data_dir, limit=500)
    cb = bench.TimeToAccuracy(xt, yt, target=0.5, eval_every=0.25, num_samples=len(x))
    t0 = time.perf_counter()
    cb.start()
    rec.train(x, y, epochs=1, callbacks=[cb])
    wall = time.perf_counter() - t0
    assert len(cb.points) == 4
    assert cb.eval_seconds >= 4 * 0.3
    assert cb.train_seconds <= wall - 4 * 0.3 + 1e-3
    assert cb.train_seconds + cb.eval_seconds == pytest.approx(wall, abs=0.05)


def test_evaluations_do_not_change_training(data_dir):
    """Evaluating mid-epoch (BatchNorm in eval mode) must leave training bit-identical."""
    rec = recipes.get("mnist-cnn")
    (x, y), (xt, yt) = rec.load_data(data_dir, limit=600)
    plain = rec.train(x, y, epochs=1, seed=1)
    cb = bench.TimeToAccuracy(rec.model_input(xt), yt, eval_every=0.2)
    probed = rec.train(x, y, epochs=1, seed=1, callbacks=[cb])
    assert len(cb.points) == 5
    for a, b in zip(plain.state_dict().values(), probed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"recipe": "mnist-cnm"}, ValueError, "did you mean 'mnist-cnn'"),
        ({"runs": 0}, ValueError, "runs: expected a positive integer"),
        ({"runs": -2}, ValueError, "runs: expected a positive integer"),
        ({"runs": 1.5}, ValueError, "runs: expected a positive integer"),
        ({"target": 0}, ValueError, r"target: expected an accuracy in \(0, 1\]"),
        ({"target": 1.5}, ValueError, r"target: expected an accuracy in \(0, 1\]"),
        ({"target": float("nan")}, ValueError, r"target: expected an accuracy in \(0, 1\]"),
        ({"target": "99%"}, ValueError, r"target: expected an accuracy in \(0, 1\]"),
        ({"eval_every": 0}, ValueError, "eval_every: expected a positive number"),
        ({"seed": -1}, ValueError, "seed: expected a non-negative integer"),
        ({"warmup": -1}, ValueError, "warmup: expected a number of warm-up runs >= 0"),
        ({"recipe": None}, TypeError, "recipe: expected a recipe name"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, error, match, data_dir):
    args = {"recipe": "mnist-mlp", "data_dir": data_dir, "limit": 100, "warmup": False,
            **kwargs}
    with pytest.raises(error, match=match):
        bench.run(args.pop("recipe"), **args)


def test_out_must_be_a_directory(tmp_path, data_dir):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="out: .* is not a directory"):
        bench.run("mnist-mlp", out=f, data_dir=data_dir, limit=100, warmup=False)


def test_time_to_accuracy_checks_its_arguments():
    with pytest.raises(ValueError, match="eval_every"):
        bench.TimeToAccuracy([0], [0], eval_every=-1)
    with pytest.raises(ValueError, match="target"):
        bench.TimeToAccuracy([0], [0], target=2)
