"""Edge cases of brisk.engine.callbacks that the other callback tests leave open: the state a
callback starts with before any ``on_train_begin``, BackupAndRestore's NaN policy and its
restore fallbacks, ModelCheckpoint's verbose lines, warnings and save routes, CSVLogger's
file handling, and full error messages of TensorBoard's constructor.

Hooks are driven directly on stand-in trainers (no fit). Every object under test is built
inside the test body (mutation testing: tools/mutation/README.md).
"""

from __future__ import annotations

import codecs
import os
import sys
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from brisk.callbacks import BackupAndRestore, CSVLogger, History, ModelCheckpoint, TensorBoard
from brisk.engine import callbacks as cbmod


class _WarnSpy:
    """Stands in for warnings.warn: records (message, positional args, keyword args)."""

    def __init__(self):
        self.calls = []

    def __call__(self, message, *args, **kwargs):
        self.calls.append((str(message), args, kwargs))


def _nan_module():
    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(float("nan"))
    return net


# ----------------------------------------------------------------------------- _weights_finite


def test_weights_finite_skips_non_tensor_extra_state():
    """Only floating tensors are checked: a module's non-tensor extra state (a dict in its
    state_dict) is skipped, not asked for is_floating_point()."""

    class WithExtra(nn.Linear):
        def get_extra_state(self):
            return {"note": "not a tensor"}

        def set_extra_state(self, state):
            pass

    net = WithExtra(2, 1)
    assert "_extra_state" in net.state_dict()
    assert cbmod._weights_finite(net) is True
    with torch.no_grad():
        net.bias.fill_(float("inf"))
    assert cbmod._weights_finite(net) is False


# ----------------------------------------------------------------------------- History


def test_history_starts_empty_before_on_train_begin():
    h = History()
    assert h.history == {} and h.epoch == []
    assert h.state_dict() == {"epoch": [], "history": {}}
    h.on_epoch_end(4, {"loss": 1.5})  # usable without on_train_begin
    assert h.epoch == [4] and h.history == {"loss": [1.5]}


# ----------------------------------------------------------------------------- BackupAndRestore


def _backup_trainer(**kw):
    """A stand-in trainer whose save_checkpoint writes a small file and records the path."""
    saved = []

    def save_checkpoint(path):
        saved.append(path)
        with open(path, "w") as f:
            f.write(f"ckpt {len(saved)}")

    kw.setdefault("module", nn.Linear(2, 1))
    return SimpleNamespace(save_checkpoint=save_checkpoint, **kw), saved


def test_backup_batch_count_starts_at_zero_and_saves_on_the_nth_batch(tmp_path):
    """A new callback counts from 0 even without on_train_begin; save_freq=2 saves after
    batches 2 and 4 exactly (not 1, not 3)."""
    folder = tmp_path / "b"
    cb = BackupAndRestore(folder, save_freq=2)
    trainer, saved = _backup_trainer()
    cb.set_trainer(trainer)
    latest = str(folder / "latest.pt")
    cb.on_train_batch_end(0, {})
    assert saved == []
    cb.on_train_batch_end(1, {})
    assert saved == [latest]
    cb.on_train_batch_end(2, {})
    assert saved == [latest]
    cb.on_train_batch_end(3, {})
    assert saved == [latest, latest]
    assert sorted(os.listdir(folder)) == ["latest.pt", "previous.pt"]
    assert (folder / "previous.pt").read_text() == "ckpt 1"


def test_backup_is_not_written_after_a_nan_stop_even_with_finite_weights(tmp_path,
                                                                        monkeypatch):
    spy = _WarnSpy()
    monkeypatch.setattr(warnings, "warn", spy)
    folder = tmp_path / "b"
    cb = BackupAndRestore(folder)
    trainer, saved = _backup_trainer(stopped_for_nan=True)
    cb.set_trainer(trainer)
    cb.on_epoch_end(0, {"loss": 1.0})
    assert saved == [] and not folder.exists()
    assert spy.calls == [("BackupAndRestore: the loss or weights are not finite; the last good "
                          "backup is kept", (), {"stacklevel": 2})]


def test_backup_is_written_for_a_trainer_without_a_nan_flag(tmp_path, monkeypatch):
    """A trainer with no ``stopped_for_nan`` attribute counts as not stopped."""
    spy = _WarnSpy()
    monkeypatch.setattr(warnings, "warn", spy)
    folder = tmp_path / "b"
    cb = BackupAndRestore(folder)
    trainer, saved = _backup_trainer()
    cb.set_trainer(trainer)
    cb.on_epoch_end(0, {"loss": 1.0})
    assert saved == [str(folder / "latest.pt")] and spy.calls == []


def _two_backups(folder):
    folder.mkdir()
    (folder / "latest.pt").write_text("a")
    (folder / "previous.pt").write_text("b")


def test_backup_end_deletes_for_a_trainer_without_a_nan_flag(tmp_path):
    folder = tmp_path / "b"
    _two_backups(folder)
    cb = BackupAndRestore(folder)
    cb.set_trainer(SimpleNamespace(module=nn.Linear(2, 1)))
    cb.on_train_end()
    assert not folder.exists()


def test_backup_end_keeps_the_files_after_a_nan_stop_with_finite_weights(tmp_path):
    folder = tmp_path / "b"
    _two_backups(folder)
    cb = BackupAndRestore(folder)
    cb.set_trainer(SimpleNamespace(module=nn.Linear(2, 1), stopped_for_nan=True))
    cb.on_train_end()
    assert sorted(os.listdir(folder)) == ["latest.pt", "previous.pt"]


def test_backup_end_keeps_the_files_with_nan_weights_and_no_nan_stop(tmp_path):
    folder = tmp_path / "b"
    _two_backups(folder)
    cb = BackupAndRestore(folder)
    cb.set_trainer(SimpleNamespace(module=_nan_module(), stopped_for_nan=False))
    cb.on_train_end()
    assert sorted(os.listdir(folder)) == ["latest.pt", "previous.pt"]


def test_restore_uses_previous_when_latest_is_missing(tmp_path):
    """A kill between the rename to previous.pt and the new latest.pt leaves only previous."""
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "previous.pt").write_text("b")
    loaded = []
    cb = BackupAndRestore(folder)
    cb.set_trainer(SimpleNamespace(module=nn.Linear(2, 1), load_checkpoint=loaded.append))
    cb.on_train_begin()
    assert loaded == [str(folder / "previous.pt")]


def test_restore_messages_when_no_backup_loads(tmp_path, monkeypatch):
    spy = _WarnSpy()
    monkeypatch.setattr(warnings, "warn", spy)
    folder = tmp_path / "b"
    _two_backups(folder)
    tried = []

    def load_checkpoint(path):
        tried.append(path)
        raise ValueError(f"bad {os.path.basename(path)}")

    cb = BackupAndRestore(folder)
    cb.set_trainer(SimpleNamespace(module=nn.Linear(2, 1), load_checkpoint=load_checkpoint))
    latest, previous = str(folder / "latest.pt"), str(folder / "previous.pt")
    with pytest.raises(ValueError) as e:
        cb.on_train_begin()
    assert tried == [latest, previous]
    assert spy.calls == [(f"BackupAndRestore: cannot restore from {latest} (bad latest.pt); "
                          "trying the previous backup", (), {"stacklevel": 2})]
    assert str(e.value) == (f"backup_dir: no backup in {str(folder)!r} could be restored "
                            "(delete the folder, or give another backup_dir, to start over): "
                            "bad latest.pt; bad previous.pt")


# ----------------------------------------------------------------------------- ModelCheckpoint


def _ckpt_trainer(module=None, **kw):
    """A stand-in trainer recording save / save_checkpoint calls."""
    calls = []
    return SimpleNamespace(module=module if module is not None else nn.Linear(2, 1),
                           save=lambda p: calls.append(("trainer.save", p)),
                           save_checkpoint=lambda p: calls.append(("save_checkpoint", p)),
                           **kw), calls


def test_model_checkpoint_argument_messages_and_default_verbose(tmp_path):
    with pytest.raises(ValueError) as e:
        ModelCheckpoint("x.pt", save_freq=0)
    assert str(e.value) == "save_freq: expected 'epoch' or a positive int (batches), got 0"
    assert ModelCheckpoint("x.pt", save_freq=1).save_freq == 1
    with pytest.raises(ValueError) as e:
        ModelCheckpoint("x.pt", initial_value_threshold="1")
    assert str(e.value) == "initial_value_threshold: expected a number or None, got '1'"
    mc = ModelCheckpoint(str(tmp_path / "m.st"))
    assert mc.verbose == 0


def test_model_checkpoint_batch_save_before_any_epoch_begin_uses_epoch_one_and_batch_logs(
        tmp_path):
    """The epoch counter starts at 0 (file 'm1-...'), and the batch logs reach the path."""
    trainer, calls = _ckpt_trainer()
    mc = ModelCheckpoint(str(tmp_path / "m{epoch}-{batch}-{loss:.2f}.st"), save_freq=1)
    mc.set_trainer(trainer)
    mc.on_train_batch_end(0, {"loss": 0.25})
    assert calls == [("trainer.save", str(tmp_path / "m1-1-0.25.st"))]


def test_model_checkpoint_save_weights_only_routes(tmp_path):
    """save_weights_only: the model's save_weights when it has one, else trainer.save;
    without it, a Keras-style model's save."""

    class KerasLike(nn.Linear):
        def __init__(self, log):
            super().__init__(2, 1)
            self.log = log

        def save_weights(self, path):
            self.log.append(("save_weights", path))

        def save(self, path):
            self.log.append(("model.save", path))

        def get_config(self):
            return {}

    path = str(tmp_path / "w.st")
    log = []
    trainer, calls = _ckpt_trainer(KerasLike(log))
    mc = ModelCheckpoint(path, save_weights_only=True)
    assert mc.save_weights_only is True
    mc.set_trainer(trainer)
    mc.on_epoch_end(0, {})
    assert log == [("save_weights", path)] and calls == []
    mc = ModelCheckpoint(path)
    mc.set_trainer(trainer)
    mc.on_epoch_end(0, {})
    assert log == [("save_weights", path), ("model.save", path)] and calls == []
    plain, plain_calls = _ckpt_trainer(nn.Linear(2, 1))
    mc = ModelCheckpoint(path, save_weights_only=True)
    mc.set_trainer(plain)
    mc.on_epoch_end(0, {})
    assert plain_calls == [("trainer.save", path)]


def test_model_checkpoint_verbose_lines(tmp_path, capsys):
    path = str(tmp_path / "best.st")
    trainer, calls = _ckpt_trainer()
    mc = ModelCheckpoint(path, save_best_only=True, verbose=1)
    mc.set_trainer(trainer)
    mc.on_train_begin()
    mc.on_epoch_end(2, {"val_loss": 2.0})
    mc.on_epoch_end(3, {"val_loss": 3.0})
    mc.on_epoch_end(4, {"val_loss": 1.5})
    assert capsys.readouterr().out == (
        f"\nEpoch 3: val_loss improved from None to 2.00000, saving model to {path}\n"
        "\nEpoch 4: val_loss did not improve from 2.00000\n"
        f"\nEpoch 5: val_loss improved from 2.00000 to 1.50000, saving model to {path}\n")
    assert calls == [("trainer.save", path)] * 2
    each = ModelCheckpoint(str(tmp_path / "e{epoch}.st"), verbose=1)
    each.set_trainer(trainer)
    each.on_train_begin()
    each.on_epoch_end(2, {"loss": 1.0})
    assert capsys.readouterr().out == f"\nEpoch 3: saving model to {tmp_path / 'e3.st'}\n"


def test_model_checkpoint_verbose_zero_prints_nothing(tmp_path, capsys):
    trainer, calls = _ckpt_trainer()
    best = ModelCheckpoint(str(tmp_path / "best.st"), save_best_only=True, verbose=0)
    best.set_trainer(trainer)
    best.on_train_begin()
    best.on_epoch_end(0, {"val_loss": 2.0})  # improved
    best.on_epoch_end(1, {"val_loss": 3.0})  # did not improve
    each = ModelCheckpoint(str(tmp_path / "each.st"), verbose=0)
    each.set_trainer(trainer)
    each.on_train_begin()
    each.on_epoch_end(0, {"loss": 1.0})
    assert capsys.readouterr().out == ""
    assert calls == [("trainer.save", str(tmp_path / "best.st")),
                     ("trainer.save", str(tmp_path / "each.st"))]


def test_model_checkpoint_skipped_validation_warning(tmp_path, monkeypatch):
    spy = _WarnSpy()
    monkeypatch.setattr(warnings, "warn", spy)
    trainer, calls = _ckpt_trainer(_validation_freq=2)
    mc = ModelCheckpoint(str(tmp_path / "best.st"), save_best_only=True)
    mc.set_trainer(trainer)
    mc.on_epoch_end(2, {"loss": 1.0})  # epoch 3: not a multiple of 2, not validated
    assert spy.calls == [("Can save best model only with val_loss available (epoch 3 was not "
                          "validated): skipped, as Keras does", (), {"stacklevel": 2})]
    assert calls == [] and mc.best is None


def test_model_checkpoint_nan_weights_warning(tmp_path, monkeypatch):
    spy = _WarnSpy()
    monkeypatch.setattr(warnings, "warn", spy)
    trainer, calls = _ckpt_trainer(_nan_module())
    path = str(tmp_path / "m.st")
    mc = ModelCheckpoint(path)
    mc.set_trainer(trainer)
    mc.on_epoch_end(2, {"loss": 1.0})
    assert spy.calls == [(f"ModelCheckpoint: the weights are not finite (NaN or inf) at epoch 3; "
                          f"{path} was not written", (), {"stacklevel": 2})]
    assert calls == []


# ----------------------------------------------------------------------------- CSVLogger


def test_csv_logger_opens_its_file_with_csv_newlines_and_utf8(tmp_path, monkeypatch):
    """newline='' (csv writes its own '\\r\\n'; text-mode translation would turn it into
    '\\r\\r\\n' on Windows) and UTF-8 whatever the locale."""
    real_open = open
    opened = []

    def spy(*args, **kwargs):
        opened.append((args, kwargs))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(cbmod, "open", spy, raising=False)
    f = tmp_path / "log.csv"
    cb = CSVLogger(f)
    cb.on_train_begin()
    cb.on_epoch_end(0, {"δ": 0.5})
    cb.on_train_end()
    assert len(opened) == 1
    args, kwargs = opened[0]
    assert args == (str(f), "w") and sorted(kwargs) == ["encoding", "newline"]
    assert kwargs["newline"] == ""
    assert codecs.lookup(kwargs["encoding"]).name == "utf-8"
    assert f.read_bytes() == "epoch,δ,val_δ\r\n0,0.5,NA\r\n".encode()


def test_csv_logger_load_state_dict_closes_the_open_file_first(tmp_path):
    """The open handle is closed before the state is read, so a bad state leaks no handle."""
    cb = CSVLogger(tmp_path / "log.csv")
    cb.on_train_begin()
    handle = cb._file
    with pytest.raises(KeyError):
        cb.load_state_dict({"text": ""})
    assert handle.closed


def test_csv_logger_load_state_dict_honours_a_saved_header_flag(tmp_path):
    """append=True onto a file that already has its header, backed up before any epoch:
    state header=False with no text; the restored run must not write a second header."""
    f = tmp_path / "log.csv"
    f.write_bytes(b"epoch,loss,val_loss\r\n0,0.5,NA\r\n")
    cb = CSVLogger(f, append=True)
    cb.on_train_begin()
    state = cb.state_dict()
    assert state == {"base": 31, "text": "", "keys": None, "header": False}
    cb.on_train_end()
    again = CSVLogger(f, append=True)
    again.load_state_dict(state)
    again.on_epoch_end(1, {"loss": 0.25})
    again.on_train_end()
    assert f.read_bytes() == b"epoch,loss,val_loss\r\n0,0.5,NA\r\n1,0.25,NA\r\n"


# ----------------------------------------------------------------------------- TensorBoard


def test_tensorboard_unsupported_argument_messages(tmp_path):
    with pytest.raises(TypeError) as e:
        TensorBoard(tmp_path, write_images=1)
    assert str(e.value) == "write_images: expected True or False, got 1"
    with pytest.raises(ValueError) as e:
        TensorBoard(tmp_path, write_images=True)
    assert str(e.value) == ("write_images: brisk's TensorBoard does not write weights as images; "
                            "pass write_images=False (histograms: histogram_freq)")
    with pytest.raises(ValueError) as e:
        TensorBoard(tmp_path, profile_batch=2)
    assert str(e.value) == ("profile_batch: profiling is not available in brisk's TensorBoard "
                            "(Keras on the torch backend raises too); got 2, must be 0: use "
                            "`brisk profile` or torch.profiler")
    with pytest.raises(ValueError) as e:
        TensorBoard(tmp_path, embeddings_freq=1)
    assert str(e.value) == ("embeddings_freq: brisk's TensorBoard does not write embeddings for "
                            "the projector; got 1, must be 0")
    with pytest.raises(ValueError) as e:
        TensorBoard(tmp_path, embeddings_metadata="meta.tsv")
    assert str(e.value) == ("embeddings_metadata: brisk's TensorBoard does not write embeddings; "
                            "got 'meta.tsv', must be None")


def test_tensorboard_missing_package_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ImportError) as e:
        TensorBoard(tmp_path)
    assert str(e.value) == ('TensorBoard: the tensorboard package is not installed; '
                            'pip install "brisk[tensorboard]" (or pip install tensorboard)')
    assert isinstance(e.value.__cause__, ImportError)


def test_tensorboard_batch_steps_count_from_one_without_on_train_begin(tmp_path):
    events = []

    class FakeWriter:
        def __init__(self, logdir):
            self.which = os.path.basename(logdir)

        def add_scalar(self, tag, value, step):
            events.append((self.which, tag, value, step))

    tb = TensorBoard(tmp_path, update_freq=2)
    tb._writer_class = FakeWriter
    for batch, loss in enumerate([1.0, 0.5, 0.25]):
        tb.on_train_batch_begin(batch)
        tb.on_train_batch_end(batch, {"loss": loss})
    assert events == [("train", "batch_loss", 0.5, 2)]


def test_no_writer_methods_return_none():
    w = cbmod._NoWriter()
    assert w.add_scalar("epoch_loss", 1.0, 0) is None
    assert w.flush() is None
