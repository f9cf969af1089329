"""One intra-op thread for the compression tests.

Their models are tiny (microseconds per op); with 2 threads on a shared 2-core machine the
OpenMP workers spin-wait on every op, which cost ~20x more CPU time in training here
(30 s vs 1.6 s of CPU for 12 epochs of an 8x8-digits MLP) without changing any result the
tests check.
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
