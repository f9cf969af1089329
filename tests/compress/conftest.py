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


@pytest.fixture(scope="session")
def mnist_mlp(mnist):
    """A 784-256-128-10 MLP after one epoch of Adam on real MNIST (~96% test accuracy, ~1.5 s
    on one thread) and the data as normalised (N, 784) float32 tensors:
    (model in eval mode, (x_train, y_train), (x_test, y_test))."""
    import torch.nn as nn

    (xtr, ytr), (xte, yte) = mnist

    def flat(a):
        return (torch.as_tensor(a).float().reshape(len(a), -1) / 255.0 - 0.1307) / 0.3081

    xtr, xte = flat(xtr), flat(xte)
    ytr, yte = torch.as_tensor(ytr).long(), torch.as_tensor(yte).long()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 128):
        idx = perm[i : i + 128]
        opt.zero_grad()
        nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
        opt.step()
    return model.eval(), (xtr, ytr), (xte, yte)
