"""pytest plugin for `make mutate` (loaded with `-p tools.mutation.fork_safety`).

mutmut forks one child per mutant from the process that ran the test suite. tqdm's write
lock is a multiprocessing RLock, shared by every fork: a child killed on a timeout while it
holds it leaves it taken, and every later child that draws a progress bar hangs. Each
pytest session here gets a private lock and no tqdm monitor thread instead.
"""

from __future__ import annotations


def pytest_configure(config):
    # pytest's unraisableexception plugin runs gc.collect() five times when a session ends.
    # With torch and the whole suite in memory that took 0.28 s of every mutant's 0.33 s of
    # pytest overhead (cProfile), and in a forked child it also copies every page it scans.
    # Objects that exist now (in a child: all it inherited) are never garbage of this
    # session: move them out of the collector's sight. New objects are collected as usual.
    import gc

    gc.freeze()

    from tqdm import std

    std.TqdmDefaultWriteLock.th_lock = std.TRLock()
    std.TqdmDefaultWriteLock.mp_lock = None
    todo = [std.tqdm]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        for attr in ("_lock", "monitor"):
            if attr in cls.__dict__ and cls is not std.tqdm:
                delattr(cls, attr)
    std.tqdm.monitor_interval = 0
    std.tqdm.monitor = None
    std.tqdm.set_lock(std.TqdmDefaultWriteLock())

    # GNU OpenMP is not fork-safe: once this process has run a parallel region with more
    # than one thread, a forked child's first parallel region waits forever for pool
    # threads it does not have. Keep torch at one thread (README: "Hanging children").
    import torch

    set_threads = torch.set_num_threads

    def set_num_threads(n: int) -> None:
        if n > 1:
            raise RuntimeError(
                f"torch.set_num_threads({n}) in a mutation run: mutmut forks its children "
                "from this process, and a multi-threaded OpenMP pool hangs them; fake the "
                "thread count in the test instead"
            )
        set_threads(n)

    torch.set_num_threads = set_num_threads
