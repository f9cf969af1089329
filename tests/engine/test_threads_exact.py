"""brisk.engine.threads, pinned exactly: the cgroup file's default path and fields, the
core count without an affinity mask, the printed (and flushed) changes, integer halving,
the probe's window count, one-thread stalls and the stall ratio in the message.

torch's thread count is faked (never raised above one here), as is every clock."""

import io
import sys

import pytest
import torch

from brisk.engine import threads as th
from brisk.engine.threads import ThreadPolicy, _cgroup_quota, usable_cores

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _auto(monkeypatch):
    monkeypatch.delenv("BRISK_THREADS", raising=False)  # the suite's conftest sets 'none'


@pytest.fixture
def fake_threads(monkeypatch):
    """torch's intra-op count as a plain value (the real one is left alone)."""
    state = {"n": 4, "sets": []}
    monkeypatch.setattr(torch, "get_num_threads", lambda: state["n"])

    def set_(n):
        state["n"] = n
        state["sets"].append(n)

    monkeypatch.setattr(torch, "set_num_threads", set_)
    return state


def run(policy, times):
    for t in times:
        policy.observe(t)


# ----------------------------------------------------------------- usable cores


def test_cgroup_quota_reads_sys_fs_cgroup_cpu_max_by_default(monkeypatch):
    """The default path is cgroup v2's /sys/fs/cgroup/cpu.max, whatever this machine has
    (an ``open`` in the module's namespace stands in for the file)."""
    opened = []

    def fake_open(path, *args, **kwargs):
        opened.append(path)
        return io.StringIO("150000 100000\n")

    monkeypatch.setattr(th, "open", fake_open, raising=False)
    assert _cgroup_quota() == 1.5
    assert opened == ["/sys/fs/cgroup/cpu.max"]


def test_cgroup_quota_takes_the_first_two_fields(tmp_path):
    """'quota period' and anything after them: only the first two fields count."""
    f = tmp_path / "cpu.max"
    f.write_text("300000 200000 7\n")
    assert _cgroup_quota(str(f)) == 1.5
    f.write_text("300000\n")  # no period: not a quota
    assert _cgroup_quota(str(f)) is None


def test_usable_cores_without_an_affinity_mask_count_the_cpus(monkeypatch):
    monkeypatch.setattr(th, "_cgroup_quota", lambda: None)

    def no_affinity(pid):
        raise OSError("sched_getaffinity: not supported")

    monkeypatch.setattr(th.os, "sched_getaffinity", no_affinity, raising=False)
    monkeypatch.setattr(th.os, "cpu_count", lambda: 3)
    assert usable_cores() == 3
    monkeypatch.setattr(th.os, "cpu_count", lambda: None)  # unknown: one core
    assert usable_cores() == 1
    monkeypatch.delattr(th.os, "sched_getaffinity")  # no such call (macOS, Windows)
    monkeypatch.setattr(th.os, "cpu_count", lambda: 5)
    assert usable_cores() == 5
    monkeypatch.setattr(th, "_cgroup_quota", lambda: 2.5)
    assert usable_cores() == 2


# ----------------------------------------------------------------- construction, start


def test_a_policy_collects_steps_from_construction(fake_threads):
    """observe before start: steps of an unfinished window are only collected."""
    p = ThreadPolicy(CPU, window=3)
    p.observe(0.5)
    p.observe(0.5)
    assert fake_threads["sets"] == [] and p.changes == []


def test_quiet_by_default(fake_threads, monkeypatch, capsys):
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    p = ThreadPolicy(CPU)
    p.start()
    assert p.changes == [
        "intra-op threads 4 -> 2: this process may use 2 cores (CPU affinity / cgroup quota)"]
    assert capsys.readouterr().out == ""


class _Stream:
    """A stdout that records its writes and flushes, in order."""

    def __init__(self):
        self.events = []

    def write(self, s):
        self.events.append(("write", s))
        return len(s)

    def flush(self):
        self.events.append(("flush",))


def test_verbose_prints_each_change_and_flushes_it(fake_threads, monkeypatch):
    monkeypatch.setattr(th, "usable_cores", lambda: 3)
    out = _Stream()
    monkeypatch.setattr(sys, "stdout", out)
    p = ThreadPolicy(CPU, verbose=True)
    p.start()
    monkeypatch.undo()
    assert out.events == [
        ("write", "brisk: intra-op threads 4 -> 3: this process may use 3 cores "
                  "(CPU affinity / cgroup quota)"),
        ("write", "\n"),
        ("flush",),
    ]


def test_a_fixed_count_is_the_full_and_current_count(fake_threads):
    p = ThreadPolicy(CPU, 3)
    p.start()
    assert (p.full, p.threads, fake_threads["n"]) == (3, 3, 3)
    p.stop()
    assert fake_threads["n"] == 4


# ----------------------------------------------------------------- adapting


def test_the_first_trial_halves_an_odd_count_to_an_integer(fake_threads, monkeypatch):
    """3 threads -> 1 (3 // 2), never 1.5."""
    monkeypatch.setattr(th, "usable_cores", lambda: 3)
    fake_threads["n"] = 3
    p = ThreadPolicy(CPU, window=2, min_window_s=0.0)
    p.start()
    run(p, [1.0, 1.0])
    assert fake_threads["sets"] == [1] and type(p.threads) is int
    run(p, [0.25, 0.25])  # 4x faster at 1 thread: kept
    assert fake_threads["n"] == 1 and p.changes == [
        "intra-op threads 3 -> 1: steps ran faster with 1 than with 3, another process is "
        "likely using the cores; kept: 250.00 ms per step against 1000.00 ms with 3"]


def test_the_probe_comes_every_probe_windows_counted_from_each_return(fake_threads,
                                                                      monkeypatch):
    """probe=4 (even, so that counting by 2 would show): the full count is tried at the
    4th lowered window, and again at the 4th after a probe that was kept."""
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    fake_threads["n"] = 2
    p = ThreadPolicy(CPU, window=1, min_window_s=0.0, probe=4)
    p.start()
    run(p, [1.0, 0.5])  # baseline 1.0; 1 thread 2x faster: kept
    assert fake_threads["sets"] == [1]
    run(p, [0.5, 0.5, 0.5])  # three lowered windows: no probe yet
    assert fake_threads["sets"] == [1]
    run(p, [0.5])  # the fourth: probe 2 threads
    assert fake_threads["sets"] == [1, 2]
    run(p, [0.25])  # 2x faster at 2: kept, a new baseline 0.25, the count starts over
    assert fake_threads["n"] == 2
    run(p, [0.75, 0.5])  # 3x the baseline: a trial at 1 thread, faster: kept
    assert fake_threads["sets"] == [1, 2, 1]
    run(p, [0.5, 0.5, 0.5])  # three lowered windows again: no probe yet
    assert fake_threads["sets"] == [1, 2, 1]
    run(p, [0.5])
    assert fake_threads["sets"] == [1, 2, 1, 2]
    assert p.changes == [
        "intra-op threads 2 -> 1: steps ran faster with 1 than with 2, another process is "
        "likely using the cores; kept: 500.00 ms per step against 1000.00 ms with 2",
        "intra-op threads 1 -> 2 (probe); kept: 250.00 ms per step against 500.00 ms with 1",
        "training steps took 3.0x as long as at the start (750.00 ms against 250.00 ms): "
        "another process is likely using the cores; intra-op threads 2 -> 1; kept: "
        "500.00 ms per step against 750.00 ms with 2",
    ]


def test_one_thread_has_nothing_to_halve_when_steps_stall(fake_threads, monkeypatch):
    monkeypatch.setattr(th, "usable_cores", lambda: 1)
    fake_threads["n"] = 1
    p = ThreadPolicy(CPU, window=1, min_window_s=0.0)
    p.start()
    run(p, [1.0, 3.0, 2.0, 3.0, 2.0])  # 3x the baseline, then faster: nothing to try
    assert fake_threads["sets"] == [] and p.changes == [] and p.threads == 1


def test_the_stall_message_gives_the_ratio_to_the_baseline(fake_threads, monkeypatch):
    """A baseline of 0.25 s, not 1: the ratio is median / baseline (0.75 / 0.25 = 3.0)."""
    monkeypatch.setattr(th, "usable_cores", lambda: 4)
    p = ThreadPolicy(CPU, window=1, min_window_s=0.0)
    p.start()
    run(p, [0.25, 0.5])  # baseline; the first trial at 2 is slower: back to 4
    assert fake_threads["sets"] == [2, 4] and p.changes == []
    run(p, [0.75, 0.5])  # a stall (0.75 > 2 x 0.25); 2 threads faster: kept
    assert fake_threads["sets"] == [2, 4, 2]
    assert p.changes == [
        "training steps took 3.0x as long as at the start (750.00 ms against 250.00 ms): "
        "another process is likely using the cores; intra-op threads 4 -> 2; kept: "
        "500.00 ms per step against 750.00 ms with 4"]
