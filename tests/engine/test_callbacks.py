"""Keras callbacks: EarlyStopping and ModelCheckpoint."""

import numpy as np
import pytest
import torch

import brisk
from brisk.callbacks import Callback, EarlyStopping, ModelCheckpoint
from brisk.layers import Dense


class Scripted(Callback):
    """Overwrites the monitored value with a scripted sequence (runs before the others)."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def _model():
    m = brisk.Sequential([Dense(2, input_shape=(3,))])
    m.compile(optimizer="sgd", loss="mse", seed=0)
    return m


X, Y = np.random.rand(32, 3).astype("float32"), np.random.rand(32, 2).astype("float32")


def test_early_stopping_waits_patience_epochs_after_the_best():
    m = _model()
    es = EarlyStopping(monitor="val_loss", patience=2)
    h = m.fit(X, Y, epochs=20, verbose=0, validation_split=0.25,
              callbacks=[Scripted([5, 4, 3, 3.5, 3.2, 3.1, 1, 1]), es])
    # best at epoch 2 (3.0); epochs 3 and 4 are within patience, epoch 5 stops.
    assert es.stopped_epoch == 5 and len(h.history["loss"]) == 6


def test_early_stopping_restores_the_best_weights():
    m = _model()
    snapshots = []

    class Snap(Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append({k: v.clone() for k, v in m.state_dict().items()})

    es = EarlyStopping(patience=1, restore_best_weights=True)
    m.fit(X, Y, epochs=10, verbose=0, validation_split=0.25,
          callbacks=[Scripted([3, 1, 2, 2, 2]), Snap(), es])
    for k, v in m.state_dict().items():
        assert torch.equal(v, snapshots[1][k])
    assert not torch.equal(snapshots[1]["layers.0.linear.weight"],
                           snapshots[-1]["layers.0.linear.weight"])


def test_early_stopping_needs_the_monitored_value():
    m = _model()
    with pytest.raises(ValueError, match="monitor: 'val_loss' is not in the epoch logs"):
        m.fit(X, Y, epochs=2, verbose=0, callbacks=[EarlyStopping()])
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)


def test_model_checkpoint_best_only_and_resumable_state(tmp_path):
    m = _model()
    best = ModelCheckpoint(str(tmp_path / "best.safetensors"), save_best_only=True)
    each = ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"))
    m.fit(X, Y, epochs=4, verbose=0, validation_split=0.25,
          callbacks=[Scripted([3, 1, 2, 5]), best, each])
    assert best.best == 1
    assert sorted(p.name for p in tmp_path.glob("ep*.pt")) == [f"ep{i}.pt" for i in (1, 2, 3, 4)]
    ckpt = torch.load(tmp_path / "ep2.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    # The best file holds epoch 2's weights, loadable by load_model.
    again = brisk.load_model(tmp_path / "best.safetensors")
    for k, v in ckpt["model"].items():
        assert torch.equal(again.state_dict()[k], v)
    assert not list(tmp_path.glob(".brisk-*"))  # no temporary files left behind
