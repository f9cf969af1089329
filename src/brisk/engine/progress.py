"""Progress reporting as ordinary callbacks (Keras verbosity levels).

verbose=1: a bar per epoch, refreshed at most every ``interval`` seconds (reading the
running loss is a device sync, so it is done on a clock, not every step); verbose=2: one
line per epoch; 0: silent. 'auto' is 1 on a terminal and 2 otherwise (no bar spam in CI).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from tqdm.auto import tqdm

from brisk.engine.callbacks import Callback


def resolve_verbose(verbose) -> int:
    if isinstance(verbose, str) and verbose == "auto":
        return 1 if sys.stderr.isatty() else 2
    # an int only: 2.0, True or a tensor would pass `in (0, 1, 2)` (or make it ambiguous)
    if (isinstance(verbose, (bool, np.bool_)) or not isinstance(verbose, (int, np.integer))
            or verbose not in (0, 1, 2)):
        raise ValueError(f"verbose: expected 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def format_logs(logs: dict) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class ProgressBar(Callback):
    _never_stops = True  # no stop_training from its batch hooks (fit under torchrun)

    def __init__(self, verbose: int = 1, interval: float = 0.25, stream=None):
        self.verbose = verbose
        self.interval = interval
        self.stream = stream
        self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._last = self._t0
        self._seen = 0
        epochs = self.params.get("epochs")
        if self.verbose == 1:
            self._bar = tqdm(
                total=self.params.get("steps"),
                desc=f"Epoch {epoch + 1}/{epochs}",
                unit="step",
                leave=True,
                dynamic_ncols=True,
                file=self.stream or sys.stderr,
            )

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is None:
            return
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._bar.update(batch + 1 - self._seen)
            self._seen = batch + 1
            self._bar.set_postfix_str(format_logs(dict(logs or {})), refresh=True)
            self._last = now

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._t0
        if self._bar is not None:
            steps = self.params.get("steps") or self._seen
            self._bar.update(max(steps - self._seen, 0))
            self._bar.set_postfix_str(format_logs(logs or {}), refresh=True)
            self._bar.close()
            self._bar = None
        elif self.verbose == 2:
            steps = self.params.get("steps") or 1
            line = (
                f"Epoch {epoch + 1}/{self.params.get('epochs')} - {elapsed:.1f}s - "
                f"{1000 * elapsed / steps:.2f}ms/step - {format_logs(logs or {})}"
            )
            print(line, file=self.stream or sys.stdout, flush=True)
