"""brisk.plots and `brisk plot`: a run's history drawn as a PNG, and the learning rate that
`brisk train --out` records for it."""

import math

import numpy as np
import pytest
from matplotlib.image import imread

import brisk
from brisk.cli import main
from brisk.plots import panels, plot_history, read_history_csv

PNG = b"\x89PNG\r\n\x1a\n"


def _png_width(path):
    return imread(path).shape[1]


def test_panels_put_loss_first_pair_val_curves_and_end_with_the_learning_rate():
    keys = ["accuracy", "loss", "val_loss", "val_accuracy", "learning_rate", "top_k"]
    assert panels(keys) == [("loss", ["loss", "val_loss"]),
                            ("accuracy", ["accuracy", "val_accuracy"]),
                            ("top_k", ["top_k"]), ("learning rate", ["learning_rate"])]
    assert panels(["loss"]) == [("loss", ["loss"])]
    assert panels(["val_loss", "lr"]) == [("loss", ["val_loss"]), ("learning rate", ["lr"])]


def test_brisk_train_out_records_the_learning_rate_and_brisk_plot_draws_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "3", "--schedule", "cosine", "--lr", "0.01",
                 "--verbose", "0", "--out", str(run)]) == 0
    epochs, h = read_history_csv(run / "history.csv")
    assert epochs == [1, 2, 3]
    # the cosine schedule per step: falling from 0.01, the last epoch ends near 0
    lr = h["learning_rate"]
    assert 0.01 > lr[0] > lr[1] > lr[2] >= 0 and lr[2] < 1e-5
    assert (run / "history.png").read_bytes()[:8] == PNG
    w3 = _png_width(run / "history.png")  # loss, accuracy, learning rate: three panels
    assert main(["plot", str(run), "--out", str(tmp_path / "again.png")]) == 0
    assert f"wrote {tmp_path / 'again.png'}" in capsys.readouterr().out
    assert _png_width(tmp_path / "again.png") == w3
    # a CSVLogger file works too, next to it by default
    csv = tmp_path / "log.csv"
    csv.write_text("epoch,loss\n1,0.5\n2,0.25\n")
    assert main(["plot", str(csv)]) == 0
    assert (tmp_path / "log.png").read_bytes()[:8] == PNG
    assert _png_width(tmp_path / "log.png") < w3 / 2  # one panel


def test_plot_history_takes_what_fit_returns_and_a_dict(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4), dtype=np.float32), rng.integers(0, 2, 64)
    m = brisk.Sequential([brisk.layers.Dense(2, activation="softmax", input_shape=(4,))])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, epochs=2, validation_split=0.25, verbose=0)
    assert plot_history(h, tmp_path / "h.png") == str(tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG
    plot_history({"loss": [1.0, 0.5], "lr": [0.1, 0.0]}, tmp_path / "d.png", title="t")
    assert (tmp_path / "d.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("history, error, match", [
    ({}, ValueError, "history: no epochs recorded"),
    ({"loss": [1.0, 0.5], "accuracy": [0.5]}, ValueError,
     r"history: 'accuracy' has 1 values for 2 epochs"),
    ([1.0, 0.5], TypeError, "history: expected a History, a dict of lists, a run folder or a "
                            "CSV path, got list"),
])
def test_bad_histories_are_refused_with_the_reason(tmp_path, history, error, match):
    with pytest.raises(error, match=match):
        plot_history(history, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_bad_files_are_named_in_the_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no history file at .*empty.*history.csv"):
        plot_history(tmp_path / "empty", tmp_path / "x.png")
    bad = tmp_path / "bad.csv"
    for text, match in [("loss\n1\n", "first column is 'epoch'"),
                        ("epoch,loss\n", "no epochs recorded yet"),
                        ("epoch,loss\n1,abc\n", "line 2: not a number"),
                        ("epoch,loss\n1,0.5,3\n", "line 2: expected 2 values, got 3")]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            read_history_csv(bad)
    bad.write_text("epoch,loss,val_loss\n1,0.5,\n")  # an epoch without validation: NaN
    assert math.isnan(read_history_csv(bad)[1]["val_loss"][0])
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "brisk plot: error: history: no history file" in capsys.readouterr().err


def test_a_resumed_run_whose_backup_lacks_the_learning_rate_gets_nan_for_those_epochs():
    from brisk.cli import _run_history

    class Opt:
        param_groups = [{"lr": 0.5}]

    h = _run_history()
    h.set_trainer(type("T", (), {"optimizer": Opt(), "module": None})())
    h.load_state_dict({"epoch": [0, 1], "history": {"loss": [1.0, 0.9]}})  # an older backup
    h.on_epoch_end(2, {"loss": 0.8})
    assert h.history["loss"] == [1.0, 0.9, 0.8]
    assert h.history["learning_rate"][2] == 0.5
    assert all(math.isnan(v) for v in h.history["learning_rate"][:2])
    h.on_epoch_end(3, {"loss": 0.7, "learning_rate": 0.25})  # a callback logged it: kept
    assert h.history["learning_rate"][3] == 0.25


def test_odd_inputs_get_clear_errors_and_the_suffix_picks_the_format(tmp_path):
    binary = tmp_path / "model.safetensors"
    binary.write_bytes(b"\xbb\xff\x00binary")
    with pytest.raises(ValueError, match="model.safetensors: not a text CSV"):
        plot_history(binary, tmp_path / "x.png")
    with pytest.raises(TypeError, match=r"history: 'loss' should hold one value per epoch "
                                        r"\(a list\), got float"):
        plot_history({"loss": 1.0}, tmp_path / "x.png")
    out = plot_history({"loss": [1.0, 0.5]}, tmp_path / "new" / "dir" / "h.jpg")
    assert open(out, "rb").read(3) == b"\xff\xd8\xff"  # a JPEG, in a folder made for it
    plot_history({"loss": [1.0, 0.5]}, tmp_path / "h.png.tmp")  # unknown suffix: PNG
    assert (tmp_path / "h.png.tmp").read_bytes()[:8] == PNG
