"""`brisk compress` as a function: stages, sparsity, sizes, accuracies, the max_drop guard.

Models are trained for a few seconds on scikit-learn's 8x8 digits (offline) and saved with
``Sequential.save``, as ``brisk train --out`` does; the pipeline then runs on that file.
"""

import itertools
import json
import math

import numpy as np
import pytest
import torch

import brisk
from brisk.compress import sparsity_report
from brisk.compress.pipeline import STAGES, format_table, load_compressed, run_pipeline
from brisk.layers import Conv2D, Dense, Flatten, MaxPooling2D, Rescaling

FAST = dict(
    batch_size=32,
    finetune_epochs=1,
    share_epochs=1,
    calibration=256,
    timing_reps=2,
    timing_blocks=1,
    log=None,
)


@pytest.fixture(scope="module")
def digits():
    return brisk.datasets.load_digits()


def _train_and_save(model, x, y, path, epochs):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", seed=0)
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    model.save(path)
    return path


@pytest.fixture(scope="module")
def mlp_file(digits, tmp_path_factory):
    (x, y), _ = digits
    torch.manual_seed(0)
    model = brisk.Sequential(
        [
            Rescaling(1 / 255, input_shape=(8, 8)),  # uint8 digits fed as they are
            Flatten(),
            Dense(128, activation="relu"),
            Dense(64, activation="relu"),
            Dense(10, activation="softmax"),
        ]
    )
    return _train_and_save(model, x, y, tmp_path_factory.mktemp("mlp") / "model.safetensors", 12)


def test_stages_sparsity_sizes_accuracy_and_files(mlp_file, digits, tmp_path):
    out = tmp_path / "out"
    stages = run_pipeline(
        mlp_file, dataset="digits", target_sparsity=0.85, epochs=3, out=out, seed=0, **FAST
    )
    assert [s.stage for s in stages] == list(STAGES)
    by = {s.stage: s for s in stages}
    dense, pruned, tuned, folded, quant = (by[n] for n in STAGES)

    # sparsity: the global target is reached exactly, and the masks hold through fine-tuning
    n_weights = 8 * 8 * 128 + 128 * 64 + 64 * 10
    want_kept = 1 - round(0.85 * n_weights) / n_weights
    assert dense.weights_kept == 1.0
    for s in (pruned, tuned, folded):
        assert s.weights_kept == pytest.approx(want_kept, abs=1e-12), s.stage
    assert dense.params == pruned.params == n_weights + 128 + 64 + 10
    assert pruned.nonzero <= dense.params - round(0.85 * n_weights)
    assert quant.nonzero <= tuned.nonzero  # int8 rounding may zero a few more, never fewer
    assert quant.extra["int8_layers"] == 3  # the timed quantized model runs int8 Linears

    # files: each stage's file no larger than the last, much smaller at the end
    sizes = [s.file_bytes for s in stages]
    assert all(b <= a for a, b in itertools.pairwise(sizes)), sizes
    assert pruned.file_bytes < 0.4 * dense.file_bytes  # 15% of weights kept, float32 + skips
    assert quant.file_bytes < 0.6 * pruned.file_bytes  # 5-bit codebook indices vs float32
    assert (out / "model.brisk").stat().st_size == quant.file_bytes

    # accuracies in range: a good dense model, and compression costs a few points at most
    assert dense.test_accuracy > 0.9
    for s in stages[1:]:
        assert dense.test_accuracy - s.test_accuracy < 0.06, (s.stage, s.test_accuracy)
    assert folded.test_accuracy == tuned.test_accuracy  # folding changes no prediction here
    for s in stages:
        assert s.latency_ms_b1 > 0 and s.latency_ms_b256 > 0
        assert math.isfinite(s.latency_ms_b256)

    # the written report and the compressed file itself
    report = json.loads((out / "compress.json").read_text())
    assert [r["stage"] for r in report["stages"]] == list(STAGES)
    assert report["stages"][-1]["file_bytes"] == quant.file_bytes
    assert (out / "compress.md").read_text().strip() == format_table(stages)
    model = load_compressed(out / "model.brisk")
    assert isinstance(model, brisk.Sequential)
    _, (xt, yt) = digits
    with torch.no_grad():
        acc = float((model(torch.from_numpy(xt).float()).argmax(1).numpy() == yt).mean())  # raw: the model rescales
    assert acc == pytest.approx(quant.extra["file_accuracy"], abs=1e-9)
    assert 1 - sparsity_report(model)["total"]["sparsity"] == pytest.approx(want_kept)


def test_max_drop_stops_the_schedule_and_restores(mlp_file):
    # 99% of the weights of this small MLP cannot go without a large loss: the guard must
    # stop early, restore a state within max_drop, and keep fine-tuning within it too.
    stages = run_pipeline(
        mlp_file, dataset="digits", target_sparsity=0.99, max_drop=1.0, epochs=3, **FAST
    )
    by = {s.stage: s for s in stages}
    dense, pruned, tuned = by["dense"], by["pruned"], by["fine-tuned"]
    assert pruned.extra["stopped_at_sparsity"] is not None
    assert 1 - pruned.weights_kept < 0.99  # the schedule did not reach the target
    assert 1 - pruned.weights_kept > 0.0  # but it pruned something before stopping
    for s in (pruned, tuned):
        assert s.val_accuracy is not None
        assert 100 * (dense.val_accuracy - s.val_accuracy) <= 1.0 + 1e-9, s.stage
    assert tuned.weights_kept == pruned.weights_kept

    # control: a loose guard lets the same schedule reach its target
    loose = run_pipeline(
        mlp_file, dataset="digits", target_sparsity=0.9, max_drop=100.0, epochs=2, **FAST
    )
    assert loose[1].extra["stopped_at_sparsity"] is None
    assert 1 - loose[1].weights_kept == pytest.approx(0.9, abs=1e-3)


def test_convnet_channels_last_from_arrays(digits, tmp_path):
    (x, y), (xt, yt) = digits
    torch.manual_seed(0)
    model = brisk.Sequential(
        [
            Rescaling(1 / 255, input_shape=(8, 8, 1)),
            Conv2D(8, 3, padding="same", activation="relu"),
            MaxPooling2D(2),
            Flatten(),
            Dense(10, activation="softmax"),
        ]
    )
    path = _train_and_save(model, x[..., None], y, tmp_path / "cnn.safetensors", 8)
    # arrays instead of a name; (N, 8, 8) images are reshaped to the model's (8, 8, 1)
    stages = run_pipeline(path, dataset=((x, y), (xt, yt)), target_sparsity=0.7, epochs=2, **FAST)
    dense, pruned, tuned, folded, quant = stages
    assert dense.test_accuracy > 0.85
    assert 1 - pruned.weights_kept == pytest.approx(0.7, abs=1e-3)
    assert quant.file_bytes < folded.file_bytes < dense.file_bytes
    assert abs(quant.test_accuracy - tuned.test_accuracy) < 0.05


def test_bad_arguments(mlp_file, tmp_path):
    with pytest.raises(ValueError, match="target_sparsity"):
        run_pipeline(mlp_file, dataset="digits", target_sparsity=1.5, log=None)
    with pytest.raises(ValueError, match="max_drop"):
        run_pipeline(mlp_file, dataset="digits", max_drop=-1, log=None)
    with pytest.raises(ValueError, match="dataset"):
        run_pipeline(mlp_file, dataset="cifar-100", log=None)
    with pytest.raises(ValueError, match="bits"):
        run_pipeline(mlp_file, dataset="digits", bits=12, log=None)
    with pytest.raises(TypeError, match="model_path"):
        run_pipeline(42, dataset="digits", log=None)
    with pytest.raises(ValueError, match="model_path: no saved model"):
        run_pipeline(tmp_path / "missing.safetensors", dataset="digits", log=None)
    x = np.zeros((10, 5, 5), np.uint8)
    with pytest.raises(ValueError, match="x_train"):
        run_pipeline(mlp_file, dataset=((x, np.zeros(10)), (x, np.zeros(10))), log=None)


def test_latency_blocks_show_a_progress_bar_only_when_asked(capsys):
    from torch import nn

    from brisk.compress.pipeline import latency_blocks

    x = torch.zeros(4, 3)
    meds = latency_blocks([nn.Linear(3, 2), nn.Linear(3, 2)], x, reps=2, blocks=3)
    assert [len(m) for m in meds] == [3, 3] and "timing" not in capsys.readouterr().err
    latency_blocks([nn.Linear(3, 2)], x, reps=2, blocks=3, progress="timing batch 4")
    assert "timing batch 4" in capsys.readouterr().err


def test_max_drop_lets_a_drop_of_exactly_max_drop_pass(monkeypatch):
    """Accuracies are counts over the held-out slice: 3 more errors in 600 is 0.5 points,
    which computes as 0.5000000000000004; "may lose 0.5 points" must accept it, and one
    more error must not pass."""
    from types import SimpleNamespace

    from brisk.compress import pipeline

    logs = []
    model = torch.nn.Linear(2, 2)
    acc = {"v": 595 / 600}
    monkeypatch.setattr(pipeline, "_accuracy", lambda m, x, y: acc["v"])
    guard = pipeline._GuardedPruning(SimpleNamespace(sparsity=0.5), None, None, 598 / 600, 0.5,
                                     logs.append)
    guard.model, guard.trainer = model, SimpleNamespace(stop_training=False)
    guard.fallback = {k: v.clone() for k, v in model.state_dict().items()}
    assert 100.0 * (598 / 600 - 595 / 600) > 0.5  # the float the guard sees
    assert guard._within() and guard.accepted == (0.5, 595 / 600)
    assert logs[-1] == "  sparsity 50.0%: held-out accuracy 99.17% (0.50 points below dense)"
    acc["v"] = 598 / 600
    assert guard._within() and logs[-1].endswith("(the same as dense)")
    acc["v"] = 594 / 600
    assert not guard._within() and guard.trainer.stop_training
