"""pytest plugin for `make mutate` (loaded with `-p tools.mutation.fork_safety`).

mutmut forks one child per mutant from the process that ran the test suite. tqdm's write
lock is a multiprocessing RLock, shared by every fork: a child killed on a timeout while it
holds it leaves it taken, and every later child that draws a progress bar hangs. Each
pytest session here gets a private lock and no tqdm monitor thread instead.
"""

from __future__ import annotations


def pytest_configure(config):
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
