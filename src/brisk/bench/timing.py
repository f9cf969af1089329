"""``TimeToAccuracy``: a callback that evaluates on the test set at fixed intervals while
a training clock runs, paused during each evaluation.

The clock is "training wall time": time since ``start()`` (or ``on_train_begin``) minus
the time spent evaluating. On CUDA the device is synchronized before every clock read,
so queued kernels are charged to the phase that launched them.

Example::

    cb = TimeToAccuracy(x_test, y_test, target=0.99, eval_every=0.25)
    cb.start()
    model.fit(x, y, epochs=1, callbacks=[cb])
    cb.time_to_target, cb.train_seconds, cb.eval_seconds, cb.points[-1]["accuracy"]
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from brisk.engine.callbacks import Callback


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


class TimeToAccuracy(Callback):
    """Evaluate test accuracy every ``eval_every`` epochs (a float: 0.25 = four times an
    epoch) and at the end of training; record the training clock at each evaluation.

    Attributes after training:
        points: one dict per evaluation: ``train_seconds`` (clock at evaluation),
            ``epoch`` (epochs completed, fractional), ``samples`` (training samples seen),
            ``accuracy``, ``loss``, ``eval_seconds`` (that evaluation's duration).
        time_to_target: the clock at the first evaluation with accuracy >= ``target``
            (None if never reached).
        train_seconds: the clock at the end of training (evaluation excluded).
        eval_seconds: total time spent evaluating.
        samples: training samples processed (needs ``num_samples``, the training-set
            size; 0 without it).

    The model must be compiled with ``metrics=['accuracy']``. Evaluation runs the model
    in eval mode (BatchNorm running statistics, no dropout) and then puts it back in
    training mode, so training itself is unchanged by the evaluations.
    """

    def __init__(
        self,
        x_test: Any,
        y_test: Any,
        target: float | None = None,
        eval_every: float = 1.0,
        batch_size: int = 1000,
        num_samples: int | None = None,
    ) -> None:
        if isinstance(eval_every, bool) or not isinstance(eval_every, (int, float)) or not (
            math.isfinite(eval_every) and eval_every > 0
        ):
            raise ValueError(f"eval_every: expected a positive number of epochs, got {eval_every!r}")
        if target is not None and (
            isinstance(target, bool)
            or not isinstance(target, (int, float))
            or not 0 < target <= 1
        ):
            raise ValueError(f"target: expected an accuracy in (0, 1], got {target!r}")
        self.x_test, self.y_test = x_test, y_test
        self.target = None if target is None else float(target)
        self.eval_every = float(eval_every)
        self.batch_size = int(batch_size)
        self.num_samples = None if num_samples is None else int(num_samples)
        self._t0: float | None = None
        self._reset()

    def _reset(self) -> None:
        self.points: list[dict[str, float]] = []
        self.time_to_target: float | None = None
        self.train_seconds: float | None = None
        self.eval_seconds = 0.0
        self.samples = 0
        self._batches = 0
        self._last_eval_batch = -1

    # ------------------------------------------------------------------ clock
    def start(self) -> None:
        """Start the clock now (call right before the code being timed). Without it, the
        clock starts at ``on_train_begin``, after fit's data preparation."""
        self._reset()
        self._t0 = time.perf_counter()

    def _device(self) -> torch.device | None:
        return getattr(self.trainer, "device", None)

    def _clock(self) -> float:
        _sync(self._device())
        return time.perf_counter() - self._t0 - self.eval_seconds

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None) -> None:
        if self._t0 is None:
            self.start()
        steps = (getattr(self, "params", None) or {}).get("steps") or 1
        self._steps_per_epoch = int(steps)
        self._interval = max(1, round(self.eval_every * self._steps_per_epoch))
        # Test data as tensors on the training device once, so evaluations do not copy it.
        dev = self._device()
        x = torch.as_tensor(np.ascontiguousarray(self.x_test)) if not torch.is_tensor(
            self.x_test) else self.x_test
        y = torch.as_tensor(np.ascontiguousarray(self.y_test)) if not torch.is_tensor(
            self.y_test) else self.y_test
        self._xt, self._yt = (x.to(dev), y.to(dev)) if dev is not None else (x, y)

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self._batches += 1
        if self._batches % self._interval == 0:
            self._evaluate()

    def on_train_end(self, logs=None) -> None:
        if self._last_eval_batch != self._batches:
            # The final accuracy, unless the last batch was just evaluated; fit has already
            # put a schedule-free optimizer in eval mode, which must stay so.
            self._evaluate(restore_optimizer=False)
        self.train_seconds = self.points[-1]["train_seconds"] if self.points else self._clock()

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, restore_optimizer: bool = True) -> None:
        clock = self._clock()
        t = time.perf_counter()
        model, trainer = self.model, self.trainer
        was_training = model.training
        logs = trainer.evaluate(self._xt, self._yt, batch_size=self.batch_size, return_dict=True)
        if "accuracy" not in logs:
            raise ValueError(
                "model: TimeToAccuracy needs a model compiled with metrics=['accuracy']"
            )
        # evaluate() leaves the model (and a schedule-free optimizer) in eval mode.
        model.train(was_training)
        set_mode = getattr(trainer, "_set_optimizer_mode", None)
        if was_training and restore_optimizer and callable(set_mode):
            set_mode(True)
        _sync(self._device())
        spent = time.perf_counter() - t
        self.eval_seconds += spent
        self._last_eval_batch = self._batches
        epoch = self._batches / self._steps_per_epoch
        if self.num_samples is not None:  # exact at epoch ends, within a batch mid-epoch
            self.samples = round(self.num_samples * epoch)
        point = {
            "train_seconds": clock,
            "epoch": epoch,
            "samples": self.samples,
            "accuracy": float(logs["accuracy"]),
            "loss": float(logs["loss"]),
            "eval_seconds": spent,
        }
        self.points.append(point)
        if self.time_to_target is None and self.target is not None and point["accuracy"] >= self.target:
            self.time_to_target = clock
