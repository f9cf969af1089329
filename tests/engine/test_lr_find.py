"""lr_find: the exponential sweep is exact, its suggestion is sensible where the answer is
known (linear regression: gradient descent is stable below 2/L, L the largest Hessian
eigenvalue), and the trainer is left exactly as it was."""

import copy
import random

import numpy as np
import pytest
import torch

import brisk
from brisk.engine.lr_find import LRFindResult, lr_find, suggest_lr
from brisk.layers import BatchNormalization, Dense, Dropout

N, D = 256, 5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one thread avoids intra-op thread hand-offs, which on a
    busy 2-core machine cost ~10 ms per op (measured: batch_norm 18 ms per call)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def regression():
    """y = x w + 0.5 + noise, with feature scales 3..0.2 (condition number ~200)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g) * torch.tensor([3.0, 1.0, 1.0, 0.5, 0.2])
    y = x @ torch.randn(D, 1, generator=g) + 0.5 + 0.1 * torch.randn(N, 1, generator=g)
    return x, y


def two_over_L(x):
    """GD on the MSE is stable iff lr < 2/L, L = top eigenvalue of H = 2 [x 1]^T [x 1] / n."""
    xa = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    return 2.0 / torch.linalg.eigvalsh(2 * xa.T @ xa / len(x)).max().item()


def test_full_batch_sweep_matches_hand_written_gd_and_diverges_past_2_over_L():
    x, y = regression()
    bound = two_over_L(x)
    net = torch.nn.Linear(D, 1)
    w0, b0 = net.weight.detach().clone(), net.bias.detach().clone()
    # 'gd': one full-batch step per lr, accumulated over 4 chunks of 64 samples
    trainer = brisk.Trainer(net, optimizer="gd", loss="mse", seed=0)
    r = lr_find(trainer, x, y, start_lr=1e-4, end_lr=10.0, num_steps=100, batch_size=64)

    n = len(r.lrs)
    assert r.lrs == pytest.approx([1e-4 * 1e5 ** (i / 99) for i in range(n)], rel=1e-12)
    # the same sweep written out by hand: w -= lr_i * grad of the full-batch MSE
    w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    expected = []
    for lr in r.lrs:
        loss = ((x @ w.T + b - y) ** 2).mean()
        expected.append(loss.item())
        gw, gb = torch.autograd.grad(loss, (w, b))
        with torch.no_grad():
            w -= lr * gw
            b -= lr * gb
    stable = [i for i, lr in enumerate(r.lrs) if lr < bound]
    assert r.raw_losses[: len(stable)] == pytest.approx(expected[: len(stable)], rel=1e-4)
    # below 2/L every GD step lowers the loss (descent lemma) ...
    assert all(r.raw_losses[i + 1] < r.raw_losses[i] for i in stable)
    # ... past it the loss blows up and the sweep stops well before end_lr
    assert n < 100 and bound < r.lrs[-1] < 10 * bound
    assert r.losses[-1] > 4.0 * min(r.losses)
    assert max(r.raw_losses) > 100 * r.raw_losses[0]
    # smoothed = bias-corrected EMA of the raw losses
    avg = 0.0
    for i, (raw, sm) in enumerate(zip(r.raw_losses, r.losses, strict=True)):
        avg = 0.98 * avg + 0.02 * raw
        assert sm == pytest.approx(avg / (1 - 0.98 ** (i + 1)), rel=1e-9)
    # the suggestion is inside the stable range, not orders of magnitude below it
    assert bound / 50 < r.suggestion < bound, (r.suggestion, bound)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_minibatch_suggestion_is_below_the_stability_bound(optimizer):
    x, y = regression()
    bound = two_over_L(x)
    torch.manual_seed(0)
    trainer = brisk.Trainer(torch.nn.Linear(D, 1), optimizer=optimizer, loss="mse", seed=0)
    r = lr_find(trainer, x, y, start_lr=1e-5, end_lr=10.0, batch_size=32)
    assert len(r.lrs) < 100  # diverged before 10
    # Heavy-ball momentum m (torch's SGD momentum) is stable for lr < 2 (1 + m) / L, and
    # its steady-state step is lr / (1 - m): the good rates are ~(1 - m) times SGD's.
    m = 0.0 if optimizer == "sgd" else 0.9
    assert bound * (1 - m) / 50 < r.suggestion < bound * (1 + m), (r.suggestion, bound)
    if optimizer == "sgd":
        assert r.lrs[-1] > bound  # still decreasing below 2/L


def test_suggestion_is_steepest_descent_before_the_minimum():
    lrs = [10.0**e for e in range(-5, 1)]
    assert suggest_lr(lrs, [2.0, 1.9, 1.0, 0.8, 0.7, 9.0]) == 1e-4  # 1.9 -> 1.0 is steepest
    # a steep rise after the minimum is not a candidate, nor is the minimum itself
    assert suggest_lr(lrs, [2.0, 1.8, 1.7, 1.65, 0.2, 50.0]) == 1e-2
    assert suggest_lr(lrs, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) is None  # never fell
    # skip_start: a noisy early dip takes no part, unless the loss only rises after it
    assert suggest_lr(lrs, [2.0, 0.5, 1.9, 1.8, 0.4, 9.0]) == 1e-5
    assert suggest_lr(lrs, [2.0, 0.5, 1.9, 1.8, 0.4, 9.0], skip_start=2) == 1e-2
    assert suggest_lr(lrs, [2.0, 0.5, 1.9, 1.8, 1.9, 9.0], skip_start=2) == 1e-3
    assert suggest_lr(lrs, [2.0, 0.5, 1.9, 2.0, 2.1, 9.0], skip_start=2) == 1e-5
    assert suggest_lr(lrs, [2.0, 1.0, float("nan"), 0.5, 3.0, 9.0]) == 1e-5  # NaN: no slope
    assert suggest_lr(lrs[:1], [1.0]) is None
    with pytest.raises(ValueError, match="losses: expected one loss per lr"):
        suggest_lr(lrs, [1.0, 2.0])
    with pytest.raises(ValueError, match="skip_start: expected an integer >= 0"):
        suggest_lr(lrs, [1.0] * 6, skip_start=-1)


def _model():
    return brisk.Sequential(
        [
            Dense(16, activation="relu", input_shape=(6,)),
            BatchNormalization(),
            Dropout(0.3),
            Dense(16, activation="relu"),
            Dense(3, activation="softmax"),
        ]
    )


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 6, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()


def _rng_states():
    return torch.get_rng_state(), random.getstate(), np.random.get_state()


def _same_tree(a, b):
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tree(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tree(u, v) for u, v in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("optimizer", ["momentum", "adam", "gd", "muon", "schedulefree_adamw"])
def test_trainer_is_restored_bit_for_bit(optimizer):
    x, y = _data()
    model = _model()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)  # optimizer state exists
    trainer = model.trainer
    model.eval()
    weights = copy.deepcopy(model.state_dict())  # BN running stats included
    opt_state = copy.deepcopy(trainer.optimizer.state_dict())
    opt = trainer.optimizer
    step, rng = trainer.global_step, _rng_states()
    next(model.parameters()).grad = torch.ones_like(next(model.parameters()))

    r = lr_find(model, x, y, num_steps=30, batch_size=16)
    assert len(r.lrs) >= 10

    assert _same_tree(model.state_dict(), weights)
    assert trainer.optimizer is opt and _same_tree(opt.state_dict(), opt_state)
    assert trainer.global_step == step and not model.training
    assert all(not m.training for m in model.modules())
    assert torch.equal(next(model.parameters()).grad, torch.ones_like(next(model.parameters())))
    now = _rng_states()
    assert torch.equal(now[0], rng[0]) and now[1] == rng[1]
    assert np.array_equal(now[2][1], rng[2][1]) and now[2][2:] == rng[2][2:]


def test_later_fit_is_identical_with_and_without_lr_find():
    x, y = _data()
    results = []
    for run_lr_find in (False, True):
        torch.manual_seed(5)  # model init, fit's shuffle seed and dropout use the global RNG
        model = _model()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        if run_lr_find:
            lr_find(model, x, y, num_steps=20, batch_size=16)
            assert model.trainer.optimizer is None  # built for the test, then dropped
        model.fit(x, y, epochs=2, batch_size=32, verbose=0)
        results.append([p.detach().clone() for p in model.state_dict().values()])
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_plot_is_written_and_str_is_one_line(tmp_path):
    x, y = regression()
    trainer = brisk.Trainer(torch.nn.Linear(D, 1), optimizer="sgd", loss="mse", seed=0)
    path = tmp_path / "lr.png"
    r = lr_find(trainer, x, y, num_steps=40, batch_size=N, start_lr=1e-4, end_lr=10, plot=path)
    assert isinstance(r, LRFindResult)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    text = str(r)
    assert "\n" not in text and f"{r.suggestion:.3g}" in text and f"{len(r.lrs)} steps" in text


def test_no_suggestion_when_the_loss_never_falls():
    x, y = regression()
    trainer = brisk.Trainer(torch.nn.Linear(D, 1), optimizer="sgd", loss="mse", seed=0)
    r = lr_find(trainer, x, y, start_lr=1.0, end_lr=100.0, num_steps=20, batch_size=N)
    assert r.raw_losses[1] > r.raw_losses[0]  # 1.0 > 2/L: the first step already diverges
    assert r.suggestion is None and "no suggestion" in str(r)
    assert len(r.lrs) < 20


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"start_lr": 0.0}, r"start_lr: expected a number > 0"),
        ({"start_lr": -1e-3}, r"start_lr"),
        ({"start_lr": float("nan")}, r"start_lr"),
        ({"start_lr": "1e-3"}, r"start_lr"),
        ({"end_lr": 1e-7}, r"end_lr: expected a finite rate above start_lr"),
        ({"start_lr": 1.0, "end_lr": 0.5}, r"end_lr"),
        ({"end_lr": float("inf")}, r"end_lr"),
        ({"num_steps": 1}, r"num_steps: expected an integer >= 2"),
        ({"num_steps": 10.0}, r"num_steps"),
        ({"num_steps": True}, r"num_steps"),
        ({"smooth": 1.0}, r"smooth: expected a number in \[0, 1\)"),
        ({"smooth": -0.1}, r"smooth"),
        ({"diverge": 1.0}, r"diverge: expected a number > 1"),
        ({"batch_size": 0}, r"batch_size: expected a positive integer"),
    ],
)
def test_bad_arguments_raise_value_error_and_touch_nothing(kwargs, match):
    x, y = regression()
    net = torch.nn.Linear(D, 1)
    before = copy.deepcopy(net.state_dict())
    trainer = brisk.Trainer(net, optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=match):
        lr_find(trainer, x, y, **kwargs)
    assert _same_tree(net.state_dict(), before) and trainer.optimizer is None


def test_bad_types_and_data():
    x, y = regression()
    trainer = brisk.Trainer(torch.nn.Linear(D, 1), optimizer="sgd", loss="mse")
    with pytest.raises(TypeError, match="trainer: expected a brisk.Trainer"):
        lr_find(torch.nn.Linear(D, 1), x, y)
    with pytest.raises(ValueError, match="not compiled"):
        lr_find(_model(), x, y)
    with pytest.raises(TypeError, match="plot: expected a file path"):
        lr_find(trainer, x, y, plot=3)
    with pytest.raises(ValueError, match="y: x has 256 samples but y has 10"):
        lr_find(trainer, x, y[:10])
    with pytest.raises(ValueError, match="loss: this Trainer has no loss"):
        lr_find(brisk.Trainer(torch.nn.Linear(D, 1), loss=None), x, y)
