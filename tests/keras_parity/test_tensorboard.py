"""brisk.callbacks.TensorBoard writes what keras.callbacks.TensorBoard writes: the same
subdirectories, tags and steps, with brisk's own History values.

Pinned layouts: Keras 3.15.1, torch backend (tools/keras_oracle/tensorboard.py), which fits
Dense(2, softmax) on 10 samples in batches of 4 (3 batches an epoch) for 3 epochs, with
validation on 4 samples in batches of 2. Keras's values differ from brisk's (other initial
weights); the layout does not depend on them.
"""

from __future__ import annotations

import builtins
import os

import numpy as np
import pytest

import brisk
from brisk.callbacks import LearningRateScheduler, TensorBoard
from brisk.layers import Dense, Input

rs = np.random.RandomState(0)
X = rs.rand(10, 3).astype("float32")
Y = (rs.rand(10) > 0.5).astype("int64")

# Keras 3.15.1, torch backend (tools/keras_oracle/tensorboard.py): {subdir: {tag: steps}}.
# Every epoch_* and evaluation_* tag is a 'scalars' summary; one event file per subdir.
KERAS_DEFAULT = {
    "train": {"epoch_accuracy": [0, 1, 2], "epoch_learning_rate": [0, 1, 2],
              "epoch_loss": [0, 1, 2],
              "keras": [0]},  # write_graph=True: Keras's model-config summary (not in brisk)
    "validation": {"epoch_accuracy": [0, 1, 2], "epoch_loss": [0, 1, 2],
                   "evaluation_accuracy_vs_iterations": [3, 6, 9],
                   "evaluation_loss_vs_iterations": [3, 6, 9]},
}
# update_freq=2: batch_* every 2nd batch, counted from 1 across epochs. Keras also drops the
# epoch summaries of epochs 0 and 2 (their last batch, 3 and 9, is odd): a Keras/TF bug
# (tensorflow/tensorflow#49109) that brisk does not copy.
KERAS_UPDATE_FREQ_2 = {
    "train": {"batch_accuracy": [2, 4, 6, 8], "batch_loss": [2, 4, 6, 8],
              "epoch_accuracy": [1], "epoch_learning_rate": [1], "epoch_loss": [1],
              "keras": [0]},
    "validation": {"epoch_accuracy": [1], "epoch_loss": [1],
                   "evaluation_accuracy_vs_iterations": [3, 6, 9],
                   "evaluation_loss_vs_iterations": [3, 6, 9]},
}
# update_freq="batch": every batch; the batch value is the running mean of the epoch so far,
# so steps 3, 6, 9 equal the epoch values.
KERAS_BATCH_STEPS = [1, 2, 3, 4, 5, 6, 7, 8, 9]
# histogram_freq=2, write_graph=False: one 'histograms' tag per weight in train, epochs 0, 2
# ('sequential/dense/kernel/histogram', '.../bias/histogram').
KERAS_HISTOGRAM_STEPS = [0, 2]
# write_steps_per_second=True, update_freq=3: epoch_steps_per_second at [0, 1, 2] and
# batch_steps_per_second at [3, 6, 9]; with update_freq="epoch" no batch_steps_per_second.
# validation_freq=2: validation epoch_* at [1], evaluation_* at [6].
# evaluate() after fit with TensorBoard on the same log_dir: evaluation_* at [3, 6, 9, 9]
# (the last: evaluate's values at step 9), validation/ then holds 2 event files.
# Construction: profile_batch=2 raises ValueError on torch; Keras accepts embeddings_freq=1
# and write_images=True (brisk raises: it writes neither).


def model():
    m = brisk.Sequential([Input((3,)), Dense(2, activation="softmax")])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
              seed=0)
    return m


def fit(log_dir, callbacks=(), fit_kwargs=None, **tb):
    m = model()
    h = m.fit(X, Y, batch_size=4, epochs=3, verbose=0, validation_data=(X[:4], Y[:4]),
              validation_batch_size=2, callbacks=[*callbacks, TensorBoard(log_dir, **tb)],
              **(fit_kwargs or {}))
    return m, h.history


def read(log_dir) -> dict:
    """{subdir: {tag: (plugin, steps, values)}}, values as floats for scalars, arrays else.
    Tensorboard's plugin accumulator reads TF2 tensor summaries (Keras) and torch's
    simple_value scalars and histograms (brisk) alike. tensorboard is in the test extra."""
    pea = pytest.importorskip("tensorboard.backend.event_processing.plugin_event_accumulator")
    tensor_util = pytest.importorskip("tensorboard.util.tensor_util")
    out = {}
    for sub in sorted(os.listdir(log_dir)):
        ea = pea.EventAccumulator(os.path.join(log_dir, sub), size_guidance={"tensors": 0})
        ea.Reload()
        tags = {}
        for tag in ea.Tags()["tensors"]:
            events = ea.Tensors(tag)
            arrays = [tensor_util.make_ndarray(e.tensor_proto) for e in events]
            values = [float(a) if a.ndim == 0 else a for a in arrays]
            tags[tag] = (ea.SummaryMetadata(tag).plugin_data.plugin_name,
                         [e.step for e in events], values)
        out[sub] = tags
    return out


def steps(written: dict) -> dict:
    return {sub: {tag: s for tag, (_, s, _) in tags.items()} for sub, tags in written.items()}


def n_files(log_dir, sub) -> int:
    return len(os.listdir(os.path.join(log_dir, sub)))


def test_epoch_summaries_match_keras_layout_and_history(tmp_path):
    _, hist = fit(tmp_path)
    written = read(tmp_path)
    expected = {sub: {t: s for t, s in tags.items() if t != "keras"}
                for sub, tags in KERAS_DEFAULT.items()}
    assert steps(written) == expected
    assert {plugin for tags in written.values() for plugin, _, _ in tags.values()} == {"scalars"}
    assert n_files(tmp_path, "train") == n_files(tmp_path, "validation") == 1
    train, val = written["train"], written["validation"]
    np.testing.assert_allclose(train["epoch_loss"][2], hist["loss"], rtol=1e-6)
    np.testing.assert_allclose(train["epoch_accuracy"][2], hist["accuracy"], rtol=1e-6)
    np.testing.assert_allclose(train["epoch_learning_rate"][2], [0.01] * 3, rtol=1e-6)
    np.testing.assert_allclose(val["epoch_loss"][2], hist["val_loss"], rtol=1e-6)
    np.testing.assert_allclose(val["epoch_accuracy"][2], hist["val_accuracy"], rtol=1e-6)
    # each validation pass, at the optimizer steps so far (3 an epoch)
    np.testing.assert_allclose(val["evaluation_loss_vs_iterations"][2], hist["val_loss"],
                               rtol=1e-6)


def test_update_freq_writes_batch_running_means_every_n_batches(tmp_path):
    _, hist = fit(tmp_path / "two", update_freq=2)
    got = steps(read(tmp_path / "two"))
    keras = KERAS_UPDATE_FREQ_2
    for tag in ("batch_loss", "batch_accuracy"):
        assert got["train"][tag] == keras["train"][tag]
    assert set(got["train"]) == set(keras["train"]) - {"keras"}
    assert set(got["validation"]) == set(keras["validation"])
    # brisk writes every epoch's summaries (Keras's drop of epochs 0 and 2 is a bug)
    assert got["train"]["epoch_loss"] == got["validation"]["epoch_loss"] == [0, 1, 2]

    _, hist = fit(tmp_path / "batch", update_freq="batch")
    train = read(tmp_path / "batch")["train"]
    assert train["batch_loss"][1] == train["batch_accuracy"][1] == KERAS_BATCH_STEPS
    np.testing.assert_allclose(train["batch_loss"][2][2::3], hist["loss"], rtol=1e-6)
    np.testing.assert_allclose(train["batch_accuracy"][2][2::3], hist["accuracy"], rtol=1e-6)


def test_batch_logs_are_read_only_on_the_batches_written(tmp_path, monkeypatch):
    from brisk.engine import trainer as trainer_mod

    loads = []
    original = trainer_mod._LazyLogs._load

    def counting(self):
        if self._values is None:
            loads.append(1)
        return original(self)

    monkeypatch.setattr(trainer_mod._LazyLogs, "_load", counting)
    fit(tmp_path / "epoch")
    assert loads == []  # update_freq='epoch': no batch log is read
    fit(tmp_path / "three", update_freq=3)
    assert len(loads) == 3  # batches 3, 6, 9 of 9 (and the validation batches: none)


def test_histograms_every_n_epochs(tmp_path):
    m, _ = fit(tmp_path, histogram_freq=2)
    train = read(tmp_path)["train"]
    hists = {t: v for t, v in train.items() if t.endswith("/histogram")}
    assert len(hists) == len(m.weights) == 2  # Keras: one per weight (kernel, bias)
    for plugin, s, _ in hists.values():
        assert plugin == "histograms" and s == KERAS_HISTOGRAM_STEPS
    # the last one (epoch 2) counts the trained weights' elements
    counts = sorted(int(values[-1][:, 2].sum()) for _, _, values in hists.values())
    assert counts == sorted(w.numel() for w in m.weights)
    # the histogram covers the final weights' range
    kernel = max(hists.values(), key=lambda v: v[2][-1][:, 2].sum())[2][-1]
    w = m.weights[0].detach().numpy()
    assert kernel[0, 0] == pytest.approx(w.min(), abs=1e-6)
    assert kernel[-1, 1] == pytest.approx(w.max(), abs=1e-6)


def test_steps_per_second(tmp_path):
    fit(tmp_path / "epoch", write_steps_per_second=True)
    train = read(tmp_path / "epoch")["train"]
    assert train["epoch_steps_per_second"][1] == [0, 1, 2]
    assert "batch_steps_per_second" not in train
    assert all(v > 0 for v in train["epoch_steps_per_second"][2])
    fit(tmp_path / "three", write_steps_per_second=True, update_freq=3)
    train = read(tmp_path / "three")["train"]
    assert train["batch_steps_per_second"][1] == [3, 6, 9]
    assert all(v > 0 for v in train["batch_steps_per_second"][2])


def test_learning_rate_is_the_optimizers_rate_at_epoch_end(tmp_path):
    _, hist = fit(tmp_path, callbacks=[LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))])
    lr = read(tmp_path)["train"]["epoch_learning_rate"]
    assert lr[1] == [0, 1, 2]
    np.testing.assert_allclose(lr[2], hist["learning_rate"], rtol=1e-6)
    np.testing.assert_allclose(lr[2], [0.1, 0.05, 0.1 / 3], rtol=1e-6)


def test_validation_freq_and_evaluate_after_fit(tmp_path):
    fit(tmp_path / "vf", fit_kwargs={"validation_freq": 2})
    val = steps(read(tmp_path / "vf"))["validation"]
    assert val["epoch_loss"] == [1] and val["evaluation_loss_vs_iterations"] == [6]

    m, _ = fit(tmp_path / "ev")
    tb = TensorBoard(tmp_path / "ev")  # kept alive: its files must be complete already
    result = m.evaluate(X, Y, batch_size=4, verbose=0, callbacks=[tb])
    val = read(tmp_path / "ev")["validation"]
    assert val["evaluation_loss_vs_iterations"][1] == [3, 6, 9, 9]
    assert val["evaluation_loss_vs_iterations"][2][-1] == pytest.approx(result[0], rel=1e-6)
    assert val["evaluation_accuracy_vs_iterations"][2][-1] == pytest.approx(result[1], rel=1e-6)
    assert n_files(tmp_path / "ev", "validation") == 2
    m.evaluate(X, Y, batch_size=4, verbose=0, callbacks=[tb])  # closed after each evaluate,
    assert n_files(tmp_path / "ev", "validation") == 3  # a new file each time, as in Keras
    assert read(tmp_path / "ev")["validation"]["evaluation_loss_vs_iterations"][1] == [3, 6, 9, 9, 9]


def test_a_second_fit_reopens_the_writers_and_restarts_the_batch_count(tmp_path):
    m, tb = model(), TensorBoard(tmp_path, update_freq=3)
    for _ in range(2):
        m.fit(X, Y, batch_size=4, epochs=1, verbose=0, callbacks=[tb])
    assert n_files(tmp_path, "train") == 2
    assert read(tmp_path)["train"]["batch_loss"][1] == [3, 3]


@pytest.mark.parametrize("kwargs, name", [
    ({"profile_batch": 2}, "profile_batch"),
    ({"profile_batch": (1, 3)}, "profile_batch"),
    ({"embeddings_freq": 1}, "embeddings_freq"),
    ({"embeddings_metadata": "meta.tsv"}, "embeddings_metadata"),
    ({"write_images": True}, "write_images"),
    ({"update_freq": 0}, "update_freq"),
    ({"update_freq": "step"}, "update_freq"),
    ({"update_freq": 2.0}, "update_freq"),
    ({"histogram_freq": -1}, "histogram_freq"),
    ({"histogram_freq": 1.5}, "histogram_freq"),
])
def test_bad_or_unsupported_arguments_raise_naming_the_argument(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        TensorBoard(tmp_path, **kwargs)


@pytest.mark.parametrize("kwargs, name", [
    ({"log_dir": 3}, "log_dir"), ({"log_dir": ""}, "log_dir"),
    ({"write_graph": "yes"}, "write_graph"), ({"write_steps_per_second": 1}, "write_steps_per_second"),
])
def test_wrong_types_raise_type_error(kwargs, name):
    with pytest.raises(TypeError, match=f"^{name}:"):
        TensorBoard(**kwargs)


def test_missing_tensorboard_names_the_extra(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith(("tensorboard.", "torch.utils.tensorboard")):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ImportError, match=r'pip install "brisk\[tensorboard\]"'):
        TensorBoard(tmp_path)
    assert not (tmp_path / "train").exists()


def test_nothing_is_written_before_training(tmp_path):
    TensorBoard(tmp_path / "logs")
    assert not (tmp_path / "logs").exists()  # writers open lazily, as Keras's do
