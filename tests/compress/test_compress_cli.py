"""`brisk compress` through its argparse front: a tiny saved model, a slice of 8x8 digits."""

import argparse
import json

import pytest
import torch

import brisk
from brisk.compress import cli as compress_cli
from brisk.compress import pipeline
from brisk.compress.cli import add_compress_arguments, run_compress_from_args
from brisk.compress.pipeline import STAGES
from brisk.layers import Dense, Flatten


def parser():
    p = argparse.ArgumentParser(prog="brisk compress")
    add_compress_arguments(p)
    return p


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """What `brisk train --dataset digits --out DIR` leaves: model.safetensors, result.json."""
    (x, y), _ = brisk.datasets.load_digits()
    torch.manual_seed(0)
    model = brisk.Sequential(
        [Flatten(input_shape=(8, 8)), Dense(64, activation="relu"), Dense(10, activation="softmax")]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", seed=0)
    model.fit(x, y, batch_size=32, epochs=8, verbose=0)
    d = tmp_path_factory.mktemp("run")
    model.save(d / "model.safetensors")
    (d / "result.json").write_text(json.dumps({"dataset": "digits", "model": "mlp"}))
    return d


def test_runs_and_prints_the_stage_table(run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = parser().parse_args(
        [str(run_dir), "--sparsity", "0.8", "--epochs", "2", "--finetune-epochs", "1",
         "--limit", "300", "--batch-size", "32", "--out", str(out), "--seed", "1", "--quiet"]
    )  # fmt: skip
    assert args.dataset is None  # read from DIR/result.json
    assert run_compress_from_args(args) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("| stage | non-zero params")
    rows = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| stage")]
    assert [r.split("|")[1].strip() for r in rows] == list(STAGES)
    assert "digits, first 300 samples:" in text
    report = json.loads((out / "compress.json").read_text())
    assert report["settings"]["target_sparsity"] == 0.8
    assert report["settings"]["epochs"] == 2 and report["settings"]["seed"] == 1
    stages = report["stages"]
    n_weights = 64 * 64 + 64 * 10
    assert stages[1]["weights_kept"] == pytest.approx(1 - round(0.8 * n_weights) / n_weights)
    assert stages[-1]["file_bytes"] == (out / "model.brisk").stat().st_size
    assert stages[-1]["file_bytes"] < stages[0]["file_bytes"] / 5
    # --limit: the test accuracy is over 300 samples, a multiple of 1/300
    assert stages[0]["test_accuracy"] * 300 == pytest.approx(
        round(stages[0]["test_accuracy"] * 300)
    )
    assert stages[0]["test_accuracy"] > 0.8


def test_the_file_itself_as_model_and_explicit_dataset(run_dir, monkeypatch):
    seen = {}

    def fake(model_path, **kw):  # records what the CLI passes on
        seen.update(kw, model_path=model_path)
        return [
            pipeline.StageResult(s, 10, 5, 0.5, 100, "f", 0.9, None, 0.1, 1.0, 0.0) for s in STAGES
        ]

    monkeypatch.setattr(pipeline, "run_pipeline", fake)
    args = parser().parse_args(
        [str(run_dir / "model.safetensors"), "--dataset", "digits", "--max-drop", "0.5",
         "--bits", "4", "--conv-bits", "6", "--share-epochs", "0", "--lr", "0.002"]
    )  # fmt: skip
    assert run_compress_from_args(args) == 0
    assert seen["model_path"] == run_dir / "model.safetensors"
    assert seen["dataset"] == "digits" and seen["max_drop"] == 0.5
    assert (seen["bits"], seen["conv_bits"], seen["share_epochs"]) == (4, 6, 0)
    assert seen["lr"] == 0.002 and seen["target_sparsity"] == 0.9 and seen["epochs"] == 10


@pytest.mark.parametrize(
    "argv, match",
    [
        (["{missing}"], "MODEL: no saved model"),
        (["{dir}", "--dataset", "cifar-100"], "--dataset: expected one of"),
        (["{dir}", "--sparsity", "1.0"], r"--sparsity: expected a fraction in \[0, 1\)"),
        (["{dir}", "--sparsity", "-0.1"], "--sparsity"),
        (["{dir}", "--sparsity", "nan"], "--sparsity"),
        (["{dir}", "--max-drop", "-1"], "--max-drop: expected accuracy points"),
        (["{dir}", "--epochs", "0"], "--epochs: expected an integer >= 1"),
        (["{dir}", "--bits", "9"], r"--bits: expected an integer in \[1, 8\]"),
        (["{dir}", "--lr", "0"], "--lr"),
        (["{dir}", "--limit", "0"], "--limit"),
    ],
)
def test_bad_input_is_a_value_error_before_any_work(run_dir, tmp_path, monkeypatch, argv, match):
    def boom(*a, **k):
        raise AssertionError("data was loaded or training started")

    monkeypatch.setattr(pipeline, "run_pipeline", boom)
    monkeypatch.setattr(pipeline, "_load_data", boom)
    argv = [a.format(dir=run_dir, missing=tmp_path / "nope" / "model.safetensors") for a in argv]
    with pytest.raises(ValueError, match=match):
        run_compress_from_args(parser().parse_args(argv))


def test_dataset_needed_without_result_json(run_dir, tmp_path, monkeypatch):
    model = tmp_path / "m.safetensors"
    model.write_bytes((run_dir / "model.safetensors").read_bytes())
    monkeypatch.setattr(pipeline, "run_pipeline", None)  # must not be reached
    with pytest.raises(ValueError, match="--dataset: not given"):
        run_compress_from_args(parser().parse_args([str(model)]))
    assert compress_cli.__all__ == ["add_compress_arguments", "run_compress_from_args"]
