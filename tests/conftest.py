"""Shared fixtures: the real MNIST files from ../shared/data (never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# precision='auto' picks bf16-mixed on CPUs with native bf16 (brisk.engine.precision); the
# suite's exact values must not depend on the CPU that runs it, so 'auto' is fp32 here
# (and in the processes tests start) unless a test or the caller says otherwise.
os.environ.setdefault("BRISK_AUTO_PRECISION", "fp32")
# threads='auto' adapts the thread count to the machine's load, which changes the last bits
# of a CPU's sums; the suite's bit-exact comparisons (resume, DDP, kill -9) must not depend
# on the load, so it leaves torch's count alone (tests of the policy pass threads='auto')
os.environ.setdefault("BRISK_THREADS", "none")

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("BRISK_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "mnist").is_dir():
        pytest.fail(f"real datasets not found at {DATA_DIR} (set BRISK_TEST_DATA)")
    return DATA_DIR


@pytest.fixture(scope="session")
def mnist(data_dir):
    from brisk import datasets

    return datasets.load_mnist(data_dir=data_dir)
