"""Callbacks: a do-nothing base class and one container (Keras semantics).

The loop in ``engine/trainer.py`` calls the hooks in the order they appear there; a
callback steers the loop only through documented flags (``trainer.stop_training``,
``model.stop_training`` on a ``brisk.Sequential``).

Example::

    class PrintLoss(brisk.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(epoch, logs["loss"])
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
import warnings
from typing import Any

import torch

from brisk.distributed import is_rank_zero
from brisk.optim.schedules import _int, _num, _range


class Callback:
    """Base class: every hook does nothing (Keras's ``keras.callbacks.Callback`` contract).

    ``self.trainer`` and ``self.model`` (the module being trained) are set before
    ``on_train_begin``; ``self.params`` holds ``epochs``, ``steps`` and ``verbose``.
    ``logs`` is always a dict (at batch level a read-only mapping, read from the device only
    when looked at). ``on_train_batch_begin/end`` call ``on_batch_begin/end``
    (Keras's aliases). Validation inside ``fit`` and ``evaluate`` call the ``on_test_*``
    hooks, ``predict`` the ``on_predict_*`` hooks. Batch-level logs are read from the device
    only when a callback looks at them: an unused hook costs no host synchronisation.
    """

    trainer: Any = None
    model: Any = None
    params: dict

    def set_trainer(self, trainer: Any) -> None:
        self.trainer = trainer
        self.model = trainer.module

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: dict | None = None) -> None: ...

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_end(batch, logs)

    def on_test_begin(self, logs: dict | None = None) -> None: ...
    def on_test_end(self, logs: dict | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None: ...
    def on_predict_begin(self, logs: dict | None = None) -> None: ...
    def on_predict_end(self, logs: dict | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None: ...


_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
          "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
          "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
          "on_predict_batch_begin", "on_predict_batch_end")


class CallbackList(Callback):
    """Calls each hook on every callback, in order; ``logs`` is always a dict."""

    def __init__(self, callbacks: list[Callback] | None = None):
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"callbacks: expected brisk.callbacks.Callback instances, got {type(cb).__name__}"
                )

    def append(self, cb: Callback) -> None:
        self.callbacks.append(cb)

    def set_trainer(self, trainer: Any) -> None:
        super().set_trainer(trainer)
        for cb in self.callbacks:
            cb.set_trainer(trainer)

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)

    def _call(self, name: str, *args: Any) -> None:
        *head, logs = args
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            getattr(cb, name)(*head, logs)


def _forward(name: str):
    def hook(self, *args, logs=None):
        if len(args) == (2 if "batch" in name or "epoch" in name else 1):
            *args, logs = args
        self._call(name, *args, logs)

    hook.__name__ = name
    return hook


for _name in _HOOKS:
    setattr(CallbackList, _name, _forward(_name))


class History(Callback):
    """Records epoch-level logs: ``history.history['loss']``, ``['val_accuracy']``..."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        # Keras keeps history across fit() calls only through a new History object.
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))

    def state_dict(self) -> dict:
        """The epochs recorded so far (saved in checkpoints)."""
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Not applied on resume: as in Keras, the History that ``fit`` returns holds the
        epochs that fit ran (a checkpoint's ``callbacks['History']`` has the earlier ones;
        ``brisk train --out`` joins them in its history.csv)."""


def _monitor_mode(monitor: str, mode: str) -> bool:
    """True when larger is better. Keras: 'auto' maximizes names containing 'acc'."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    return mode == "max" or (mode == "auto" and "acc" in monitor)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs
    (Keras semantics); ``restore_best_weights`` puts back the best epoch's weights.

    Example::

        model.fit(x, y, epochs=100, validation_split=0.1,
                  callbacks=[EarlyStopping(monitor="val_loss", patience=3)])
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience: expected an int >= 0, got {patience!r}")
        if isinstance(start_from_epoch, bool) or not isinstance(start_from_epoch, int) or start_from_epoch < 0:
            raise ValueError(f"start_from_epoch: expected an int >= 0, got {start_from_epoch!r}")
        if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, (int, float))):
            raise ValueError(f"baseline: expected a number or None, got {baseline!r}")
        self.monitor, self.patience, self.verbose = monitor, patience, verbose
        self.baseline, self.start_from_epoch = baseline, start_from_epoch
        self.min_delta = abs(float(min_delta))
        self._maximize = _monitor_mode(monitor, mode)
        self.restore_best_weights = bool(restore_best_weights)
        self.stopped_epoch = 0  # Keras: 0 when training was not stopped
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        self.best: float | None = None
        self.wait, self.stopped_epoch, self.best_epoch, self._best_state = 0, 0, 0, None

    def on_epoch_end(self, epoch, logs=None):
        if (logs or {}).get(self.monitor) is None:
            if _validation_skipped(self, epoch):
                warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is "
                              f"not available in epoch {epoch + 1} (validation_freq): skipped, "
                              "as Keras does", stacklevel=2)
                return
            raise ValueError(
                f"monitor: {self.monitor!r} is not in the epoch logs "
                f"(available: {', '.join(logs or {}) or 'none'}); for 'val_*' pass "
                "validation_data or validation_split to fit"
            )
        current = float(logs[self.monitor])
        if epoch < self.start_from_epoch:  # Keras: warm-up epochs are not monitored
            return
        # Keras 3's order (keras.callbacks.EarlyStopping.on_epoch_end): count the epoch,
        # reset on an improvement, else stop once `patience` epochs passed without one
        # (never after the first epoch). With the best epoch followed by worse ones, fit
        # runs best + 1 + max(patience, 1) epochs, as Keras does.
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:  # a copy on the device: no host transfer
                self._best_state = {k: v.detach().clone()
                                    for k, v in self.model.state_dict().items()}
            # Keras: the wait restarts only when the value also beats the baseline
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def state_dict(self) -> dict:
        """wait, best, best_epoch, stopped_epoch and the best weights (when kept): a resumed
        run counts patience on from where it was."""
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_state": self._best_state}

    def load_state_dict(self, state: dict) -> None:
        self.wait, self.best = int(state["wait"]), state["best"]
        self.best_epoch, self.stopped_epoch = int(state["best_epoch"]), int(state["stopped_epoch"])
        self._best_state = state["best_state"]

    def _improves(self, current: float, reference: float | None) -> bool:
        if reference is None:
            return True
        if self._maximize:
            return current > reference + self.min_delta
        return current < reference - self.min_delta

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0 and is_rank_zero():
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self._best_state is not None:
            if self.verbose > 0 and is_rank_zero():
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.load_state_dict(self._best_state)


def _validation_skipped(cb: Callback, epoch: int) -> bool:
    """A 'val_*' monitor missing because ``fit(validation_freq=k)`` skipped this epoch's
    validation (Keras then warns and skips); any other missing monitor (a typo, or no
    validation data at all) stays an error, since the callback could never act."""
    trainer = getattr(cb, "trainer", None)
    freq = getattr(trainer, "_validation_freq", None)
    return bool(cb.monitor.startswith("val_") and freq and (epoch + 1) % freq != 0)


def _weights_finite(module: torch.nn.Module) -> bool:
    """Every floating-point weight and buffer finite (one host sync)."""
    ts = [t for t in module.state_dict().values() if torch.is_tensor(t) and t.is_floating_point()]
    return not ts or bool(torch.stack([torch.isfinite(t).all() for t in ts]).all())


class ModelCheckpoint(Callback):
    """Write the model each epoch (or only when ``monitor`` improves), atomically.

    ``filepath`` may hold ``{epoch}`` and log keys, e.g. ``"run/ep{epoch:02d}.safetensors"``.
    A ``.pt`` path gets the full resumable training state (``Trainer.save_checkpoint``,
    loads with ``weights_only=True``); any other path gets the weights (``save``):
    a Keras-style ``brisk.Sequential`` file, readable by ``brisk.load_model``, or plain
    safetensors weights for other modules.

    Example::

        ModelCheckpoint("run/best.safetensors", monitor="val_accuracy", save_best_only=True)
    """

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: str | int = "epoch",
                 initial_value_threshold: float | None = None):
        if not isinstance(filepath, str) or not filepath:
            raise TypeError(f"filepath: expected a path string, got {filepath!r}")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)
                                     or save_freq <= 0):
            raise ValueError(f"save_freq: expected 'epoch' or a positive int (batches), got "
                             f"{save_freq!r}")
        if initial_value_threshold is not None and (
                isinstance(initial_value_threshold, bool)
                or not isinstance(initial_value_threshold, (int, float))):
            raise ValueError("initial_value_threshold: expected a number or None, got "
                             f"{initial_value_threshold!r}")
        self.filepath, self.monitor, self.verbose = filepath, monitor, verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.save_freq = save_freq
        self._maximize = _monitor_mode(monitor, mode)
        # under torchrun every rank keeps the same state (its logs are global); rank 0 writes
        self._writes = True
        # Keras: the best value starts at initial_value_threshold (None: anything improves)
        self.best = initial_value_threshold
        self._since_save, self._epoch = 0, 0

    _never_stops = True  # no stop_training from its batch hook (fit under torchrun)

    def on_train_begin(self, logs=None):
        self._writes = is_rank_zero()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def state_dict(self) -> dict:
        """The best monitored value and the batches since the last save."""
        return {"best": self.best, "since_save": self._since_save}

    def load_state_dict(self, state: dict) -> None:
        self.best, self._since_save = state["best"], int(state["since_save"])

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._since_save += 1
        if self._since_save >= self.save_freq:  # every save_freq batches, across epochs
            self._since_save = 0
            self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _save(self, epoch: int, batch: int | None, logs) -> None:
        logs = dict(logs or {})
        fmt = {"epoch": epoch + 1, **logs} if batch is None else {"epoch": epoch + 1,
                                                                   "batch": batch + 1, **logs}
        path = self.filepath.format(**fmt)
        if self.save_best_only:
            if logs.get(self.monitor) is None:
                if _validation_skipped(self, epoch):
                    warnings.warn(f"Can save best model only with {self.monitor} available "
                                  f"(epoch {epoch + 1} was not validated): skipped, as Keras "
                                  "does", stacklevel=2)
                    return
                raise ValueError(f"monitor: {self.monitor!r} is not in the epoch logs "
                                 f"(available: {', '.join(logs) or 'none'})")
            current = float(logs[self.monitor])
            best = "None" if self.best is None else f"{self.best:.5f}"
            # a NaN/inf monitor is never an improvement (else a NaN best blocks every later one)
            if not math.isfinite(current) or self.best is not None and not (
                    current > self.best if self._maximize else current < self.best):
                if self.verbose > 0 and self._writes:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}")
                return
            if self.verbose > 0 and self._writes:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose > 0 and self._writes:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        if not self._writes:  # under torchrun, rank 0 writes the file
            return
        if not _weights_finite(self.trainer.module):
            # a diverged model never replaces a good file (issue 12's NaN policy)
            warnings.warn(f"ModelCheckpoint: the weights are not finite (NaN or inf) at epoch "
                          f"{epoch + 1}; {path} was not written", stacklevel=2)
            return
        if path.endswith(".pt"):
            self.trainer.save_checkpoint(path)
        elif self.save_weights_only:
            if hasattr(self.model, "save_weights"):
                self.model.save_weights(path)
            else:
                self.trainer.save(path)
        elif hasattr(self.model, "save") and hasattr(self.model, "get_config"):
            self.model.save(path)
        else:
            self.trainer.save(path)


class BackupAndRestore(Callback):
    """Back up the whole training state during ``fit`` and resume from it when ``fit`` runs
    again after an interruption (Keras 3 ``keras.callbacks.BackupAndRestore``).

    Args:
        backup_dir (str or path): a folder for this run's backups only (created when
            needed): ``latest.pt`` and ``previous.pt``, ``Trainer.save_checkpoint`` files.
        save_freq: ``"epoch"`` (at each epoch end) or an int N > 0: every N training
            batches, counted across epochs (Keras).
        delete_checkpoint (bool): delete the backups (and the folder, when that leaves it
            empty) when ``fit`` ends normally, as Keras does; an interrupted run (an
            exception, a kill) keeps them, and so does a run stopped because its loss or
            weights went NaN (``fit(on_nan='stop')``), so it can restart from the last good
            state.

    On ``on_train_begin`` the latest backup is loaded, if there is one, and ``fit``
    continues where it was taken, whatever ``initial_epoch`` says (Keras: the backup's
    epoch becomes the initial epoch). Unlike Keras, which restarts that epoch from its
    first batch, brisk skips the batches already trained and restores the shuffle seed and
    every RNG, so the resumed run ends bit-identical to an uninterrupted one (on CPU). As
    in Keras, the ``History`` that ``fit`` returns holds the epochs this ``fit`` ran.

    Writes are atomic and durable (temp file, fsync, ``os.replace``, fsync of the folder,
    ``brisk.engine.checkpoint.atomic_write``). Before a new backup is written the latest
    is renamed to ``previous.pt``, so one complete backup exists at every moment; a latest
    backup that fails to load is skipped with a warning and the previous one is loaded.
    Non-finite weights are never backed up.

    Raises ``TypeError`` for a ``backup_dir`` that is not a path or a non-bool
    ``delete_checkpoint``, ``ValueError`` for a bad ``save_freq``, and ``ValueError`` from
    ``on_train_begin`` when backups exist but none loads (or fits the model).

    Example::

        model.fit(x, y, epochs=20, callbacks=[BackupAndRestore("run/backup")])
        # killed? run the same line again: it continues from the last backup
    """

    _after_history = True  # fit runs it after History: an epoch's backup holds its history
    _never_stops = True  # no stop_training from its batch hook (fit under torchrun)

    def __init__(self, backup_dir: str | os.PathLike, save_freq: str | int = "epoch",
                 delete_checkpoint: bool = True):
        if not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir):
            raise TypeError(f"backup_dir: expected a folder path, got {backup_dir!r}")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)
                                     or save_freq <= 0):
            raise ValueError(f"save_freq: expected 'epoch' or a positive int (batches), got "
                             f"{save_freq!r}")
        if not isinstance(delete_checkpoint, bool):
            raise TypeError(f"delete_checkpoint: expected True or False, got {delete_checkpoint!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq, self.delete_checkpoint = save_freq, delete_checkpoint
        self.latest = os.path.join(self.backup_dir, "latest.pt")
        self.previous = os.path.join(self.backup_dir, "previous.pt")
        self._since_save = 0

    def on_train_begin(self, logs=None):
        from brisk.engine.checkpoint import remove_stale_temps

        self._since_save = 0  # a backup was written exactly when the count was reset
        errors = []
        for path in (self.latest, self.previous):
            remove_stale_temps(path)
            if not os.path.exists(path):
                continue
            try:
                self.trainer.load_checkpoint(path)  # checked before anything changes
            except ValueError as e:
                errors.append(str(e))
                if path == self.latest:
                    warnings.warn(f"BackupAndRestore: cannot restore from {path} ({e}); trying "
                                  "the previous backup", stacklevel=2)
                continue
            return
        if errors:
            raise ValueError(f"backup_dir: no backup in {self.backup_dir!r} could be restored "
                             f"(delete the folder, or give another backup_dir, to start over): "
                             + "; ".join(errors))

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._since_save += 1
        if self._since_save >= self.save_freq:
            self._since_save = 0
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save()

    def _save(self) -> None:
        from brisk.engine.checkpoint import _fsync_dir

        trainer = self.trainer
        if not is_rank_zero():  # under torchrun every rank holds the same state; rank 0 writes
            return
        if getattr(trainer, "stopped_for_nan", False) or not _weights_finite(trainer.module):
            warnings.warn("BackupAndRestore: the loss or weights are not finite; the last good "
                          "backup is kept", stacklevel=2)
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        if os.path.exists(self.latest):  # keep it until the new one is complete
            os.replace(self.latest, self.previous)
            _fsync_dir(self.backup_dir)
        trainer.save_checkpoint(self.latest)

    def on_train_end(self, logs=None):
        trainer = self.trainer
        if not self.delete_checkpoint or getattr(trainer, "stopped_for_nan", False) \
                or not _weights_finite(trainer.module) or not is_rank_zero():
            return
        for path in (self.latest, self.previous):
            if os.path.exists(path):
                os.unlink(path)
        try:
            os.rmdir(self.backup_dir)  # only when empty: never another run's files
        except OSError:
            pass


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving for
    ``patience`` epochs (Keras semantics and signature).

    Acts at the end of each epoch on ``trainer.optimizer.param_groups``: each group's
    ``initial_lr`` (the base the schedule multiplies) and its current ``lr`` are scaled,
    so a schedule keeps applying on top; a group's base never goes below ``min_lr``.
    ``state_dict()`` holds best/wait/cooldown_counter; a loaded state survives the next
    ``on_train_begin`` (Keras resets there), so resumed training continues the count.

    Example::

        model.fit(x, y, epochs=50, validation_data=(xv, yv),
                  callbacks=[ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3)])
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor: expected a log key such as 'val_loss', got {monitor!r}")
        self.monitor = monitor
        self.factor = _range("factor", factor, 0.0, 1.0, high_open=True)
        self.patience = _int("patience", patience, 0)
        self.verbose = verbose
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
        self.mode = mode
        self.min_delta = abs(_num("min_delta", min_delta))
        self.cooldown = _int("cooldown", cooldown, 0)
        self.min_lr = _range("min_lr", min_lr, 0.0, math.inf)
        # Keras: 'auto' maximizes metrics whose name contains 'acc'.
        self._maximize = mode == "max" or (mode == "auto" and "acc" in monitor)
        self._restored = False
        self._reset()

    def _reset(self) -> None:
        self.best = -math.inf if self._maximize else math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def _improved(self, current: float) -> bool:
        if self._maximize:
            return current > self.best + self.min_delta
        return current < self.best - self.min_delta

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self._restored:
            self._reset()
        self._restored = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        opt = getattr(self.trainer, "optimizer", None)
        if logs is not None and opt is not None:  # Keras logs the rate this epoch used
            logs["learning_rate"] = opt.param_groups[0]["lr"]
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(
                f"ReduceLROnPlateau: metric {self.monitor!r} is not in the logs "
                f"(available: {', '.join(logs or {}) or 'none'}); skipping",
                stacklevel=2,
            )
            return
        current = float(current)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                if self._reduce() and self.verbose and is_rank_zero():
                    lr = self.trainer.optimizer.param_groups[0]["initial_lr"]
                    print(
                        f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {lr:.4g}."
                    )
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def _reduce(self) -> bool:
        """Scale every group's base and current lr; True if any changed."""
        opt = getattr(self.trainer, "optimizer", None)
        if opt is None:
            return False
        changed = False
        for g in opt.param_groups:
            base = g.setdefault("initial_lr", g["lr"])
            if base > self.min_lr:
                new = max(base * self.factor, self.min_lr)
                g["lr"] = g["lr"] * (new / base)
                g["initial_lr"] = new
                changed = True
        return changed

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.wait = int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self._restored = True


class CSVLogger(Callback):
    """Append each epoch's logs to a CSV file (Keras ``keras.callbacks.CSVLogger``): a
    header ``epoch,<sorted log keys>`` (with ``val_*`` columns, 'NA' when there is no
    validation, as Keras writes), then one row per epoch, flushed at once.

    Its state (what this run wrote, and the file's length before it) is saved in
    checkpoints: after a restore (``BackupAndRestore``) the file is rewritten, atomically,
    as it was at the backup, and the run goes on appending, so it holds one header and
    each epoch once, even when rows were written after the backup (unlike Keras, where a
    restarted run truncates the file or, with ``append=True``, repeats rows).

    Example::

        model.fit(x, y, epochs=10, callbacks=[CSVLogger("training.csv")])
    """

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        if not isinstance(filename, (str, os.PathLike)) or not os.fspath(filename):
            raise TypeError(f"filename: expected a path string, got {filename!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator: expected one character, got {separator!r}")
        self.filename, self.sep, self.append = os.fspath(filename), separator, bool(append)
        self._file = None
        self.keys: list[str] | None = None
        self._header, self._base, self._written = True, 0, []

    def on_train_begin(self, logs=None):
        self._header, self._base = True, 0
        self._writes = is_rank_zero()  # under torchrun rank 0 writes; all keep the state
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                self._header = not f.readline()
            self._base = os.path.getsize(self.filename)
        self._open("a" if self.append else "w")
        self.keys, self._written = None, []

    def _open(self, mode: str) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        if not getattr(self, "_writes", True):
            self._file = None
            return
        self._file = open(self.filename, mode, newline="", encoding="utf-8")  # noqa: SIM115

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["epoch", *self.keys], delimiter=self.sep)
        # csv's default dialect ends lines with '\r\n', as Keras's CSVLogger writes them
        if self._header:
            writer.writeheader()
            self._header = False
        writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        if self._file is not None:
            self._file.write(buf.getvalue())
            self._file.flush()
        self._written.append(buf.getvalue())

    def state_dict(self) -> dict:
        """The text this run wrote, the file's length before it, the columns."""
        return {"base": self._base, "text": "".join(self._written), "keys": self.keys,
                "header": self._header}

    def load_state_dict(self, state: dict) -> None:
        """Put the file back as it was at the checkpoint (its first ``base`` bytes, then the
        run's rows), atomically; the next epochs append to it."""
        from brisk.engine.checkpoint import atomic_write_text

        if self._file is not None and not self._file.closed:
            self._file.close()
        base, text = int(state["base"]), str(state["text"])
        before = ""
        if base and os.path.exists(self.filename):
            with open(self.filename, "rb") as f:
                before = f.read(base).decode()
        if getattr(self, "_writes", True):
            atomic_write_text(self.filename, before + text)
        self._base, self._written = base, [text] if text else []
        self.keys = list(state["keys"]) if state.get("keys") is not None else None
        self._header = bool(state.get("header", not text))
        self._open("a")

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()


class _NoWriter:
    """A SummaryWriter that writes nothing (TensorBoard on ranks other than 0)."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class TensorBoard(Callback):
    """Write logs for TensorBoard (Keras ``keras.callbacks.TensorBoard``, its signature and
    defaults) through ``torch.utils.tensorboard.SummaryWriter``; needs the ``tensorboard``
    package: ``pip install "brisk[tensorboard]"``. View with ``tensorboard --logdir logs``.

    What is written, as Keras 3 writes it (pinned in tests/keras_parity/test_tensorboard.py):

    - ``log_dir/train``: ``epoch_<name>`` for each training log (``epoch_loss``,
      ``epoch_accuracy``...) and ``epoch_learning_rate`` (the optimizer's first group's
      rate at the end of the epoch), step = the epoch index (0-based).
    - ``log_dir/validation``: ``epoch_<name>`` for each ``val_<name>`` log (the prefix
      dropped), step = the epoch index, on the epochs that validate; and
      ``evaluation_<name>_vs_iterations`` at the end of every validation pass and every
      ``evaluate(callbacks=[...])``, step = optimizer steps so far (``trainer.global_step``,
      Keras's ``optimizer.iterations``).
    - ``update_freq`` (``"epoch"``, ``"batch"`` = 1, or an int N >= 1 of batches): with N,
      ``batch_<name>`` (the running means of the epoch so far, as in the batch logs) goes to
      ``train`` every N training batches, counted from 1 across epochs (steps N, 2N, ...).
      The logs are read from the device only on those batches: no other host sync.
    - ``histogram_freq`` (epochs, 0 = never): every floating tensor of the module's
      ``state_dict`` (parameters and BatchNorm statistics, torch layout) as a histogram
      ``<name with '/' for '.'>/histogram`` in ``train``, on epochs where
      ``epoch % histogram_freq == 0`` (one device-to-host copy of the weights each time).
    - ``write_steps_per_second``: ``epoch_steps_per_second`` (optimizer steps per second of
      wall clock in the epoch) and, on the batches ``update_freq`` writes,
      ``batch_steps_per_second`` (host clock from the batch's begin hook to its end hook,
      after its logs are read, which waits for the device).

    One difference from Keras: with an integer ``update_freq`` Keras 3 drops the epoch and
    ``evaluation_*`` summaries whenever the running train (or validation) batch count is not
    a multiple of it at that moment (a known Keras/TF bug, tensorflow/tensorflow#49109);
    brisk writes them every time.
    ``write_graph`` is accepted (True is Keras's default) and writes nothing: Keras's own
    documentation marks it unsupported; on the torch backend Keras writes only a model-config
    summary (tag ``keras``) for a Keras model. The writers are flushed and closed at the end
    of ``fit`` (and after an ``evaluate``), and reopened, in a new event file, when used again.

    Raises ``ValueError`` for a bad argument, and for ``profile_batch != 0`` (Keras on the
    torch backend raises too; use ``brisk profile`` or ``torch.profiler``),
    ``embeddings_freq != 0``, ``embeddings_metadata`` and ``write_images=True``, which brisk
    does not implement; ``ImportError`` naming the extra when ``tensorboard`` is missing.

    Example::

        model.fit(x, y, epochs=10, validation_split=0.1,
                  callbacks=[TensorBoard("logs/run1", update_freq=100)])
    """

    _never_stops = True  # no stop_training from its batch hooks (fit under torchrun)

    def __init__(self, log_dir: str | os.PathLike = "logs", histogram_freq: int = 0,
                 write_graph: bool = True, write_images: bool = False,
                 write_steps_per_second: bool = False, update_freq: str | int = "epoch",
                 profile_batch: int = 0, embeddings_freq: int = 0,
                 embeddings_metadata: Any = None):
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise TypeError(f"log_dir: expected a directory path, got {log_dir!r}")
        self.histogram_freq = _int("histogram_freq", histogram_freq, 0)
        for name, flag in (("write_graph", write_graph), ("write_images", write_images),
                           ("write_steps_per_second", write_steps_per_second)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name}: expected True or False, got {flag!r}")
        if write_images:
            raise ValueError("write_images: brisk's TensorBoard does not write weights as "
                             "images; pass write_images=False (histograms: histogram_freq)")
        if update_freq == "batch":
            update_freq = 1  # Keras: 'batch' is a synonym for 1
        if update_freq != "epoch" and (isinstance(update_freq, bool)
                                       or not isinstance(update_freq, int) or update_freq < 1):
            raise ValueError("update_freq: expected 'epoch', 'batch' or an int >= 1 "
                             f"(batches), got {update_freq!r}")
        if isinstance(profile_batch, bool) or profile_batch != 0:
            raise ValueError(f"profile_batch: profiling is not available in brisk's TensorBoard "
                             f"(Keras on the torch backend raises too); got {profile_batch!r}, "
                             "must be 0: use `brisk profile` or torch.profiler")
        if isinstance(embeddings_freq, bool) or embeddings_freq != 0:
            raise ValueError("embeddings_freq: brisk's TensorBoard does not write embeddings "
                             f"for the projector; got {embeddings_freq!r}, must be 0")
        if embeddings_metadata is not None:
            raise ValueError("embeddings_metadata: brisk's TensorBoard does not write "
                             f"embeddings; got {embeddings_metadata!r}, must be None")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError("TensorBoard: the tensorboard package is not installed; "
                              'pip install "brisk[tensorboard]" (or pip install tensorboard)'
                              ) from e
        self._writer_class = SummaryWriter
        self.log_dir = os.fspath(log_dir)
        self.write_graph, self.write_images = write_graph, write_images
        self.write_steps_per_second = write_steps_per_second
        self.update_freq = update_freq
        self.profile_batch, self.embeddings_freq = profile_batch, embeddings_freq
        self.embeddings_metadata = embeddings_metadata
        self._writers: dict[str, Any] = {}
        self._training = False
        self._global_train_batch = 0

    def _writer(self, which: str):
        """The ``train`` or ``validation`` writer, opened when first used (as Keras does: no
        empty event files)."""
        if which not in self._writers:
            if not is_rank_zero():  # under torchrun rank 0 writes the event files
                self._writers[which] = _NoWriter()
            else:
                self._writers[which] = self._writer_class(os.path.join(self.log_dir, which))
        return self._writers[which]

    def _close(self) -> None:
        for w in self._writers.values():
            w.flush()
            w.close()
        self._writers = {}

    def on_train_begin(self, logs=None):
        self._close()  # Keras starts new writers for each fit
        self._training = True
        self._global_train_batch = 0  # Keras: batch steps count from 1 in each fit

    def on_train_end(self, logs=None):
        self._training = False
        self._close()

    def on_epoch_begin(self, epoch, logs=None):
        if self.write_steps_per_second:
            self._epoch_start = (time.perf_counter(), getattr(self.trainer, "global_step", 0))

    def on_train_batch_begin(self, batch, logs=None):
        self._global_train_batch += 1
        if self.write_steps_per_second:
            self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        step = self._global_train_batch
        if self.update_freq == "epoch" or step % self.update_freq:
            return  # the lazy logs stay unread: no host sync on this batch
        values = {k: float(v) for k, v in (logs or {}).items()}  # reading syncs, once
        writer = self._writer("train")
        if self.write_steps_per_second:
            seconds = time.perf_counter() - self._batch_start
            writer.add_scalar("batch_steps_per_second", 1.0 / max(seconds, 1e-9), step)
        for name, value in values.items():
            writer.add_scalar(f"batch_{name}", value, step)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        opt = getattr(self.trainer, "optimizer", None)
        if opt is not None:  # Keras: the optimizer's rate now, whatever the logs hold
            train["learning_rate"] = opt.param_groups[0]["lr"]
        if self.write_steps_per_second:
            start, start_step = self._epoch_start
            seconds = max(time.perf_counter() - start, 1e-9)
            steps = getattr(self.trainer, "global_step", 0) - start_step
            train["steps_per_second"] = steps / seconds
        writer = self._writer("train")
        for name, value in train.items():
            writer.add_scalar(f"epoch_{name}", float(value), epoch)
        val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        if val:
            vwriter = self._writer("validation")
            for name, value in val.items():
                vwriter.add_scalar(f"epoch_{name}", float(value), epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            for name, t in self.model.state_dict().items():
                if torch.is_tensor(t) and t.is_floating_point():
                    tag = name.removeprefix("_orig_mod.").replace(".", "/")
                    writer.add_histogram(f"{tag}/histogram", t.detach().float().cpu(), epoch)
        for w in self._writers.values():
            w.flush()

    def on_test_end(self, logs=None):
        writer = self._writer("validation")
        step = getattr(self.trainer, "global_step", 0)
        for name, value in (logs or {}).items():
            writer.add_scalar(f"evaluation_{name}_vs_iterations", float(value), step)
        if not self._training:  # evaluate(): no on_train_end will close it
            self._close()


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)`` (or
    ``schedule(epoch)``), Keras's ``keras.callbacks.LearningRateScheduler``; the rate is
    logged as ``learning_rate``. It sets every parameter group's rate and base rate, so a
    per-step ``schedule=`` of the Trainer keeps multiplying on top of it.

    Raises ``ValueError`` when the schedule returns something that is not a finite number.

    Example::

        LearningRateScheduler(lambda epoch, lr: lr if epoch < 10 else lr * 0.9)
    """

    def __init__(self, schedule, verbose: int = 0):
        if not callable(schedule):
            raise TypeError(f"schedule: expected a callable (epoch, lr) -> lr, got {schedule!r}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        groups = self.trainer.optimizer.param_groups
        lr = float(groups[0]["lr"])
        try:
            new = self.schedule(epoch, lr)
        except TypeError:  # the old signature: schedule(epoch)
            new = self.schedule(epoch)
        if isinstance(new, torch.Tensor):
            new = new.item()
        if isinstance(new, bool) or not isinstance(new, (int, float)) or not math.isfinite(new):
            raise ValueError(f"schedule: the learning rate must be a finite number, got {new!r}")
        for g in groups:
            g["lr"] = g["initial_lr"] = float(new)
        if self.verbose and is_rank_zero():
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {new}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.trainer.optimizer.param_groups[0]["lr"]


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose running loss is NaN or infinite (Keras
    ``keras.callbacks.TerminateOnNaN``); ``raise_error=True`` raises ``RuntimeError``
    instead. It reads the loss after every batch: one host synchronisation per step."""

    def __init__(self, raise_error: bool = False):
        self.raise_error = bool(raise_error)

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            if self.raise_error:
                raise RuntimeError(
                    f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. "
                    "Terminating training immediately."
                )
            if is_rank_zero():
                print(f"Batch {batch}: Invalid loss, terminating training")
            self.trainer.stop_training = True


class LambdaCallback(Callback):
    """A callback from functions (Keras ``keras.callbacks.LambdaCallback``): any hook given
    by name, e.g. ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(logs))``."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        given = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        for name, fn in given.items():
            if fn is None:
                continue
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise ValueError(f"{name}: not a callback hook")
            if not callable(fn):
                raise TypeError(f"{name}: expected a callable, got {fn!r}")
            setattr(self, name, fn)
