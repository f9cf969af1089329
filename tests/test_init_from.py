"""brisk train --init-from: a saved brisk model as the start of a new task."""

import json

import pytest
import torch

import brisk
from brisk.cli import init_from, main
from brisk.layers import Activation, Dense, Flatten, Rescaling


def _saved(tmp_path, units=3, last=None):
    brisk.utils.set_random_seed(0)
    model = brisk.Sequential([Rescaling(1 / 255, input_shape=(8, 8)), Flatten(),
                              Dense(5, activation="relu"),
                              last or Dense(units, activation="softmax")])
    path = tmp_path / "m.safetensors"
    model.save(path)
    return model, str(path)


def test_same_class_count_loads_every_weight(tmp_path):
    model, path = _saved(tmp_path, units=3)
    got = init_from(path, (8, 8), 3)
    for k, v in model.state_dict().items():
        assert torch.equal(v, got.state_dict()[k]), k


def test_another_class_count_replaces_only_the_head(tmp_path):
    model, path = _saved(tmp_path, units=3)
    got = init_from(path, (8, 8), 10)
    assert got.output_shape == (None, 10) and got.layers[-1].activation == "softmax"
    # the new head keeps the old one's name: a fresh process's automatic 'dense' clashed
    assert got.layers[-1].name == model.layers[-1].name
    old, new = model.state_dict(), got.state_dict()
    for k in ("layers.2.linear.weight", "layers.2.linear.bias"):
        assert torch.equal(old[k], new[k]), k
    assert new["layers.3.linear.weight"].shape == (10, 5)
    assert got(torch.zeros(2, 8, 8)).shape == (2, 10)


def test_init_from_refuses_what_cannot_fit(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(ValueError, match=r"takes inputs of shape \(8, 8\), the dataset's "
                                         r"samples are \(28, 28\)"):
        init_from(path, (28, 28), 3)
    with pytest.raises(FileNotFoundError, match="no model at"):
        init_from(str(tmp_path / "nothing"), (8, 8), 3)
    (tmp_path / "b").mkdir()
    _, other = _saved(tmp_path / "b", last=Activation("softmax"))  # last layer not a Dense
    with pytest.raises(ValueError, match="its last layer is Activation, not a Dense"):
        init_from(other, (8, 8), 3)


def test_brisk_train_init_from_a_run_folder(tmp_path, capsys):
    run, again = tmp_path / "run", tmp_path / "again"
    assert main(["train", "--epochs", "1", "--verbose", "0", "--out", str(run)]) == 0
    assert main(["train", "--init-from", str(run), "--epochs", "1", "--verbose", "0",
                 "--out", str(again)]) == 0
    result = json.loads((again / "result.json").read_text())
    assert result["init_from"] == str(run) and result["model"] == "init-from"
    assert main(["train", "--init-from", str(tmp_path / "none"), "--epochs", "1"]) == 2
    assert "--init-from: no model at" in capsys.readouterr().err
    assert main(["train", "--recipe", "mnist-mlp", "--init-from", str(run)]) == 2
    assert "give --recipe or --init-from, not both" in capsys.readouterr().err
