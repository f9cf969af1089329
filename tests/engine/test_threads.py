"""CPU intra-op threads (brisk.engine.threads): the usable cores, the stall rule with a
scripted step clock, and fit leaving torch's setting as it found it."""

import numpy as np
import pytest
import torch
from torch import nn

import brisk
from brisk.engine import threads as th
from brisk.engine.threads import ThreadPolicy, usable_cores


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


def test_usable_cores_follow_affinity_and_a_cgroup_quota(monkeypatch, tmp_path):
    read = th._cgroup_quota
    monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(th, "_cgroup_quota", lambda: None)
    assert usable_cores() == 4
    monkeypatch.setattr(th, "_cgroup_quota", lambda: 2.5)
    assert usable_cores() == 2  # 2.5 CPUs of quota: 2 threads that never wait for a slice
    monkeypatch.setattr(th, "_cgroup_quota", lambda: 0.5)
    assert usable_cores() == 1
    f = tmp_path / "cpu.max"
    f.write_text("200000 100000\n")
    assert read(str(f)) == 2.0
    f.write_text("max 100000\n")
    assert read(str(f)) is None
    assert read(str(tmp_path / "none")) is None


def test_start_lowers_to_the_usable_cores_never_raises_and_stop_restores(fake_threads,
                                                                          monkeypatch):
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    p = ThreadPolicy(torch.device("cpu"))
    p.start()
    assert fake_threads["n"] == 2 and p.changes == [
        "intra-op threads 4 -> 2: this process may use 2 cores (CPU affinity / cgroup quota)"]
    p.stop()
    assert fake_threads["n"] == 4  # torch's setting outside fit is the user's
    fake_threads["n"] = 1  # a count the user lowered stays
    q = ThreadPolicy(torch.device("cpu"))
    q.start()
    assert fake_threads["n"] == 1 and q.changes == []


def run(policy, times):
    for t in times:
        policy.observe(t)


def test_a_stall_halves_the_threads_and_a_faster_window_keeps_it(fake_threads, monkeypatch,
                                                                 capsys):
    monkeypatch.setattr(th, "usable_cores", lambda: 4)
    p = ThreadPolicy(torch.device("cpu"), window=3, verbose=True)
    p.start()
    run(p, [1.0, 1.0, 1.0])  # baseline 1.0, then a window at half the threads
    assert fake_threads["n"] == 2
    run(p, [1.6, 1.6, 1.6])  # slower at 2: back to 4, nothing said
    assert fake_threads["n"] == 4 and p.changes == []
    run(p, [1.9, 1.9, 1.9])  # under 2x the baseline: nothing
    assert fake_threads["n"] == 4
    run(p, [3.0, 3.0, 3.0])  # 3x: a trial at 2 threads
    assert fake_threads["n"] == 2 and p.changes == []
    run(p, [2.0, 2.0, 2.0])  # faster than 3.0: kept, said
    assert fake_threads["n"] == 2
    assert p.changes == ["training steps took 3.0x as long as at the start (3000.00 ms "
                         "against 1000.00 ms): another process is likely using the cores; "
                         "intra-op threads 4 -> 2; kept: 2000.00 ms per step against "
                         "3000.00 ms with 4"]
    assert "brisk: training steps took 3.0x" in capsys.readouterr().out
    p.stop()
    assert fake_threads["n"] == 4


def test_a_trial_that_is_not_faster_goes_back(fake_threads, monkeypatch):
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    fake_threads["n"] = 2
    p = ThreadPolicy(torch.device("cpu"), window=2)
    p.start()
    run(p, [1.0, 1.0, 1.5, 1.5])  # the first trial at 1 thread: slower, back to 2
    assert fake_threads["n"] == 2
    run(p, [5.0, 5.0])  # a stall: 1 thread again
    assert fake_threads["n"] == 1
    run(p, [6.0, 6.0])  # slower with 1 thread: back to 2, nothing said
    assert fake_threads["n"] == 2 and p.changes == []
    assert fake_threads["sets"] == [1, 2, 1, 2]


def test_a_process_busy_from_the_start_is_seen_by_the_first_trial(fake_threads, monkeypatch):
    """The issue's case: another process at the same priority from the first step, so no
    change shows; one window at half the threads does."""
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    fake_threads["n"] = 2
    p = ThreadPolicy(torch.device("cpu"), window=2)
    p.start()
    run(p, [6.0, 6.0, 2.0, 2.0])  # 2 threads stall on each other; 1 thread runs 3x faster
    assert fake_threads["n"] == 1 and p.changes == [
        "intra-op threads 2 -> 1: steps ran faster with 1 than with 2, another process is "
        "likely using the cores; kept: 2000.00 ms per step against 6000.00 ms with 2"]


def test_while_lowered_it_probes_the_full_count_and_returns_when_the_other_is_gone(
        fake_threads, monkeypatch):
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    fake_threads["n"] = 2
    p = ThreadPolicy(torch.device("cpu"), window=2, probe=3)
    p.start()
    run(p, [1.0, 1.0, 1.5, 1.5])  # baseline, and the first trial (slower: back to 2)
    run(p, [5.0, 5.0, 2.0, 2.0])  # a stall: lowered to 1 and kept
    assert fake_threads["n"] == 1
    run(p, [2.0] * 4)  # two windows at 1 thread
    assert fake_threads["n"] == 1
    run(p, [2.0, 2.0])  # the third: probe 2 threads
    assert fake_threads["n"] == 2
    run(p, [1.0, 1.0])  # faster at 2: kept, and that is the new baseline
    assert fake_threads["n"] == 2 and p.changes[-1] == (
        "intra-op threads 1 -> 2 (probe); kept: 1000.00 ms per step against 2000.00 ms with 1")
    run(p, [1.5, 1.5, 1.5, 1.5])  # under 2x the new baseline: stays
    assert fake_threads["n"] == 2


def test_bad_threads_are_refused_and_gpus_are_left_alone(fake_threads):
    for bad in (0, -1, True, 1.5, "fast"):
        with pytest.raises(ValueError, match=r"^threads: expected 'auto', None or a number"):
            brisk.Trainer(nn.Linear(2, 2), threads=bad)
    p = ThreadPolicy(torch.device("cuda"))
    p.start()
    run(p, [1.0] * 100)
    p.stop()
    assert fake_threads["sets"] == [] and not p.enabled


def _fit(threads, callbacks=(), epochs=1):
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4), dtype=np.float32), rng.integers(0, 2, 64)
    t = brisk.Trainer(nn.Linear(4, 2), loss="cross_entropy", threads=threads)
    t.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=list(callbacks))
    return t


def test_fit_observes_each_training_step_and_restores_torch_even_on_error(monkeypatch):
    seen = []
    monkeypatch.setattr(ThreadPolicy, "observe", lambda self, s: seen.append(s))
    _fit("auto", epochs=2)
    assert len(seen) == 16 and all(s > 0 for s in seen)  # 2 epochs of 8 batches
    seen.clear()
    _fit(None)
    assert seen == []
    before = torch.get_num_threads()

    class Boom(brisk.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("boom")

    class During(brisk.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            counts.append(torch.get_num_threads())

    counts = []
    with pytest.raises(RuntimeError, match="boom"):
        _fit(1, callbacks=[During(), Boom()])
    assert set(counts) == {1}  # threads=1: one thread during this fit
    assert torch.get_num_threads() == before  # and torch's own count after it


def test_brisk_threads_says_what_auto_does_and_deterministic_algorithms_stop_adapting(
        fake_threads, monkeypatch):
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    monkeypatch.setenv("BRISK_THREADS", "none")
    assert not ThreadPolicy(torch.device("cpu")).enabled
    assert ThreadPolicy(torch.device("cpu"), 3).fixed == 3  # an explicit count wins
    monkeypatch.setenv("BRISK_THREADS", "1")
    p = ThreadPolicy(torch.device("cpu"))
    p.start()
    assert p.fixed == 1 and fake_threads["n"] == 1
    p.stop()
    monkeypatch.setenv("BRISK_THREADS", "many")
    with pytest.raises(ValueError, match=r"^BRISK_THREADS: expected 'auto', 'none' or a "
                                         r"number of threads >= 1, got 'many'$"):
        brisk.Trainer(nn.Linear(2, 2))
    monkeypatch.setenv("BRISK_THREADS", "auto")
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    fake_threads["n"] = 4
    q = ThreadPolicy(torch.device("cpu"), window=2)
    q.start()
    assert fake_threads["n"] == 2  # still capped to the usable cores
    run(q, [1.0, 1.0, 9.0, 9.0, 9.0, 9.0])
    assert fake_threads["sets"][-1] == 2 and not q.adapt  # but never adapted


def test_a_change_needs_the_margin_and_short_steps_make_longer_windows(fake_threads,
                                                                      monkeypatch):
    """Sub-ms steps vary by 20% between 10-step windows on an idle machine: fewer threads
    are kept only when ``margin`` faster, the full count unless ``margin`` slower, and a
    window lasts ``min_window_s`` at least."""
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    fake_threads["n"] = 2
    p = ThreadPolicy(torch.device("cpu"), window=2, margin=0.1)
    p.start()
    run(p, [1.0, 1.0, 0.95, 0.95])  # 1 thread 5% faster: noise, back to 2
    assert fake_threads["n"] == 2 and p.changes == []
    run(p, [3.0, 3.0, 1.0, 1.0])  # a stall, and 1 thread 3x faster: kept
    assert fake_threads["n"] == 1
    fake_threads["n"] = 2
    q = ThreadPolicy(torch.device("cpu"), window=2, probe=1, margin=0.1)
    q.start()
    run(q, [1.0, 1.0, 0.5, 0.5])  # lowered to 1 thread
    run(q, [0.5, 0.5])  # probe 2 threads (probe=1: every window)
    assert fake_threads["n"] == 2
    run(q, [0.54, 0.54])  # 8% slower than 1 thread: within the margin, the full count stays
    assert fake_threads["n"] == 2 and q.changes[-1].startswith("intra-op threads 1 -> 2 (probe)")
    w = ThreadPolicy(torch.device("cpu"), window=2, min_window_s=0.25)
    w.start()
    run(w, [0.001] * 249)  # 0.249 s: the first window is still open
    assert w._baseline is None
    run(w, [0.001])
    assert w._baseline == pytest.approx(0.001)


def test_a_numpy_integer_is_a_thread_count(fake_threads):
    p = ThreadPolicy(torch.device("cpu"), np.int64(1))
    p.start()
    assert p.fixed == 1 and type(p.fixed) is int and fake_threads["n"] == 1
    for bad in (np.int64(0), 1.0, True, "2"):
        with pytest.raises(ValueError, match="threads: expected 'auto', None or a number"):
            ThreadPolicy(torch.device("cpu"), bad)


def test_defaults_and_the_exact_boundaries(fake_threads, monkeypatch):
    """Each rule at its boundary (values exact in binary floating point)."""
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    d = ThreadPolicy(torch.device("cpu"))
    assert (d.window, d.stall, d.probe, d.margin, d.min_window_s) == (10, 2.0, 10, 0.1, 0.25)
    # a window closes when its steps sum to min_window_s exactly
    fake_threads["n"] = 2
    p = ThreadPolicy(torch.device("cpu"), window=2, min_window_s=0.25)
    p.start()
    run(p, [0.125, 0.125])
    assert p._baseline == 0.125 and fake_threads["sets"] == [1]  # and the trial began
    assert all(type(n) is int for n in fake_threads["sets"])
    fake_threads["n"], fake_threads["sets"] = 2, []
    m = ThreadPolicy(torch.device("cpu"), window=2)
    m.start()
    run(m, [1.0, 1.0, 0.9, 0.9])  # exactly 10% faster (1.0 * (1 - 0.1)): not more, not kept
    assert fake_threads["n"] == 2 and m.changes == []
    # a stall is a median above stall x baseline: at exactly 2x nothing happens
    fake_threads["n"], fake_threads["sets"] = 2, []
    s = ThreadPolicy(torch.device("cpu"), window=2)
    s.start()
    run(s, [0.5, 0.5, 0.5, 0.5])  # baseline 0.5; the trial at 1 thread: not faster, back
    run(s, [1.0, 1.0])  # 2x the baseline: no stall
    assert fake_threads["sets"] == [1, 2]
    run(s, [1.5, 1.5])  # 3x: a stall (1.5 > 2 * 0.5)
    assert fake_threads["n"] == 1
    # a probe of the full count that is 1.5x slower goes back down
    fake_threads["n"], fake_threads["sets"] = 2, []
    q = ThreadPolicy(torch.device("cpu"), window=2, probe=1)
    q.start()
    run(q, [1.0, 1.0, 0.5, 0.5])  # lowered to 1 thread, kept
    run(q, [0.5, 0.5])  # probe: 2 threads
    run(q, [0.75, 0.75])  # 1.5x slower than 1 thread: back to 1
    assert fake_threads["n"] == 1
    run(q, [0.5, 0.5, 0.52, 0.52])  # probe again; within the margin: the full count stays
    assert fake_threads["n"] == 2 and q._baseline == 0.52  # and is the new baseline
    # one thread to start with: no trial at half of it
    fake_threads["n"], fake_threads["sets"] = 1, []
    one = ThreadPolicy(torch.device("cpu"), window=2)
    one.start()
    run(one, [1.0] * 6)
    assert fake_threads["sets"] == []
