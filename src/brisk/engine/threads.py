"""CPU threads: as many intra-op threads as the cores this process may use, fewer while
another process competes for them.

Why: torch's intra-op threads wait for each other at the end of every parallel op. When
another process takes one of the cores, the thread on it is descheduled and the others
spin until it runs again: measured on a 2-core machine, one fashion-mnist-cnn epoch took
5.4 s idle and 30.2 s beside one busy process at the same priority, 5.6x, where one thread
takes 8.8-10.3 s (issue 15). And torch counts the machine's cores, not the ones a CPU
affinity mask or a cgroup (container) quota leaves to the process.

``ThreadPolicy`` (``Trainer(threads='auto')``, the default) does two things during
``fit`` on a CPU (``threads=N`` runs the fit at N threads instead, ``threads=None`` leaves
torch's setting alone; the environment variable ``BRISK_THREADS`` = auto | none | N says
what 'auto' does):

- at the start, lowers torch's intra-op thread count to ``usable_cores()`` when it is
  higher (never raises it: a count the user chose stays);
- watches the training steps' wall time (two clock reads per step, no device sync on a
  CPU), by windows of ``window`` steps and ``min_window_s`` seconds at least, comparing
  medians (a change is kept when it is ``margin`` faster, a return to the full count
  unless it is ``margin`` slower: sub-ms steps vary by 20% from one window to the
  next on an idle machine). The first window is the
  baseline; the second runs at half the threads (a process that was busy from the start
  shows only so), and the lower count is kept if it ran faster, else the full count comes
  back. Later, when a window's median exceeds ``stall`` times the baseline, the next
  window runs at half the threads, kept if faster. While lowered, it tries the full count
  again every ``probe`` windows and keeps it when that is faster. Each change is printed with its reason (verbose > 0) and recorded in
  ``changes``. At the end of ``fit`` torch's count is what it was before.

The thread count orders a CPU's floating-point sums, so changing it changes the last bits
of the results: with ``torch.use_deterministic_algorithms(True)`` 'auto' only caps the
count, and never adapts it, so that a run repeats (and a resumed run equals an
uninterrupted one) bit for bit.

Example::

    policy = ThreadPolicy(torch.device("cpu"))
    policy.start()
    for step_seconds in times:
        policy.observe(step_seconds)
    policy.stop()
"""

from __future__ import annotations

import math
import numbers
import os
import statistics

import torch

ENV = "BRISK_THREADS"


def _env_threads() -> int | str | None:
    """``threads='auto'`` as ``BRISK_THREADS`` says: 'auto' (or unset), 'none' (leave
    torch alone) or a number of threads. The test suite sets 'none': exact comparisons
    must not depend on the machine's load."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("", "auto"):
        return "auto"
    if value == "none":
        return None
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ValueError(f"{ENV}: expected 'auto', 'none' or a number of threads >= 1, got "
                     f"{os.environ[ENV]!r}")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (``os.sched_getaffinity``),
    within a cgroup v2 CPU quota (``/sys/fs/cgroup/cpu.max``: quota / period, rounded
    down, at least 1) when one is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(n, math.floor(quota))) if quota is not None else n


def _cgroup_quota(path: str = "/sys/fs/cgroup/cpu.max") -> float | None:
    """CPUs allowed by a cgroup v2 quota ('200000 100000' -> 2.0); None without one."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


class ThreadPolicy:
    """Intra-op threads for one ``fit`` on a CPU (module docstring). ``enabled=False`` (or a
    non-CPU device) makes every method a no-op."""

    def __init__(self, device: torch.device, threads: int | str | None = "auto", *,
                 window: int = 10, stall: float = 2.0, probe: int = 10, margin: float = 0.1,
                 min_window_s: float = 0.25, verbose: bool = False):
        if not (threads is None or isinstance(threads, str) and threads == "auto"
                or isinstance(threads, numbers.Integral) and not isinstance(threads, bool)
                and threads >= 1):
            raise ValueError(f"threads: expected 'auto', None or a number of threads >= 1, "
                             f"got {threads!r}")
        if isinstance(threads, numbers.Integral):
            threads = int(threads)  # a NumPy integer too
        if threads == "auto":
            threads = _env_threads()
        self.fixed = threads if isinstance(threads, int) else None
        self.enabled = threads is not None and torch.device(device).type == "cpu"
        # torch.use_deterministic_algorithms(True) asks for reproducible results: the thread
        # count (which orders the sums) then stays as found, capped to the usable cores only
        self.adapt = threads == "auto" and not torch.are_deterministic_algorithms_enabled()
        self.window, self.stall, self.probe, self.verbose = window, stall, probe, verbose
        self.margin, self.min_window_s = margin, min_window_s
        self.changes: list[str] = []
        self._steps: list[float] = []

    def _say(self, text: str) -> None:
        self.changes.append(text)
        if self.verbose:
            print(f"brisk: {text}", flush=True)

    def start(self) -> None:
        if not self.enabled:
            return
        self._steps, self._baseline, self._trial = [], None, None
        self._lowered_windows = 0
        cores, now = usable_cores(), torch.get_num_threads()
        self.original = now
        if self.fixed is not None:  # threads=N: this count for the fit, no adapting
            self.full = self.threads = self.fixed
            torch.set_num_threads(self.fixed)
            return
        self.full = min(now, cores)
        if now > cores:
            torch.set_num_threads(cores)
            self._say(f"intra-op threads {now} -> {cores}: this process may use {cores} cores "
                      "(CPU affinity / cgroup quota)")
        self.threads = self.full

    def _set(self, n: int) -> None:
        torch.set_num_threads(n)
        self.threads = n

    def observe(self, seconds: float) -> None:
        """One training step took ``seconds`` (wall time)."""
        if not self.enabled or not self.adapt:
            return
        self._steps.append(seconds)
        if len(self._steps) < self.window or sum(self._steps) < self.min_window_s:
            return
        median = statistics.median(self._steps)
        self._steps = []
        if self._baseline is None:  # the first full window: this thread count's speed;
            self._baseline = median  # then one window at half as many threads, in case
            if self.threads > 1:  # another process takes the cores from the start
                old, new = self.threads, max(1, self.threads // 2)
                self._trial = (median, old, f"intra-op threads {old} -> {new}: steps ran "
                               f"faster with {new} than with {old}, another process is "
                               "likely using the cores")
                self._set(new)
            return
        if self._trial is not None:  # the window after a change: keep it if faster
            before, old, why = self._trial
            self._trial = None
            # fewer threads must be clearly faster; the full count is kept unless clearly
            # slower (a 10-step window of sub-ms steps varies by 20% on an idle machine)
            bound = 1 + self.margin if self.threads == self.full else 1 - self.margin
            if median < before * bound:
                self._say(why + f"; kept: {median * 1e3:.2f} ms per step against "
                          f"{before * 1e3:.2f} ms with {old}")
                if self.threads == self.full:  # back at full speed: a new baseline
                    self._baseline, self._lowered_windows = median, 0
            else:
                self._set(old)
            return
        if self.threads < self.full:
            self._lowered_windows += 1
            if self._lowered_windows % self.probe == 0:  # is the other process gone?
                old = self.threads
                self._trial = (median, old, f"intra-op threads {old} -> {self.full} (probe)")
                self._set(self.full)
            return
        if median > self.stall * self._baseline and self.threads > 1:
            old, new = self.threads, max(1, self.threads // 2)
            self._trial = (median, old, (
                f"training steps took {median / self._baseline:.1f}x as long as at the start "
                f"({median * 1e3:.2f} ms against {self._baseline * 1e3:.2f} ms): another "
                f"process is likely using the cores; intra-op threads {old} -> {new}"))
            self._set(new)

    def stop(self) -> None:
        """Back to the count ``start`` found: torch's setting is the user's outside fit."""
        if self.enabled and torch.get_num_threads() != self.original:
            torch.set_num_threads(self.original)
