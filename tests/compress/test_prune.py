"""Pruning: exact counts (torch semantics), masks that survive training, schedules."""

import itertools
import math
import types

import pytest
import torch
import torch.nn as nn

from brisk.compress import (
    GradualPruning,
    format_sparsity_report,
    gradual_sparsity,
    is_pruned,
    iterative_prune,
    make_permanent,
    prune,
    sparsity_report,
)
from brisk.engine.callbacks import Callback


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(30, 40), nn.ReLU(), nn.Linear(40, 20), nn.ReLU(), nn.Linear(20, 5)
    )


def cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.ReLU(),
        nn.Conv2d(8, 6, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 7),
    )


def weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def zeros(t):
    return int((t == 0).sum())


@pytest.mark.parametrize("amount", [0.3, 0.5, 0.77, 1.0, 0.0])
def test_layer_l1_exact_count_and_smallest(amount):
    model = cnn()
    before = [w.detach().clone() for w in weights(model)]
    prune(model, amount=amount)
    for w0, w in zip(before, weights(model), strict=True):
        n = w.numel()
        assert zeros(w) == round(amount * n)
        if 0 < amount < 1:
            pruned, kept = w0[w == 0].abs(), w0[w != 0].abs()
            assert pruned.max() <= kept.min()  # L1: the smallest magnitudes go


def test_pruning_composes_like_torch_and_cumulative_false_is_total():
    model = mlp()
    prune(model, amount=0.5)
    prune(model, amount=0.5)  # 50% of the remaining
    for w in weights(model):
        n = w.numel()
        first = round(0.5 * n)
        assert zeros(w) == first + round(0.5 * (n - first))
    zero_sets = [(w == 0).clone() for w in weights(model)]
    prune(model, amount=0.9, cumulative=False)  # total 90% per layer
    for z0, w in zip(zero_sets, weights(model), strict=True):
        assert zeros(w) == round(0.9 * w.numel())
        assert (w[z0] == 0).all()  # masks only grow
    prune(model, amount=0.2, cumulative=False)  # below the current sparsity: no change
    for w in weights(model):
        assert zeros(w) == round(0.9 * w.numel())


def test_global_l1_exact_and_globally_smallest():
    model = mlp()
    before = torch.cat([w.detach().flatten().clone() for w in weights(model)])
    prune(model, amount=0.8, scope="global")
    after = torch.cat([w.detach().flatten() for w in weights(model)])
    total = after.numel()
    assert zeros(after) == round(0.8 * total)
    assert before[after == 0].abs().max() <= before[after != 0].abs().min()
    per_layer = [zeros(w) / w.numel() for w in weights(model)]
    assert max(per_layer) - min(per_layer) > 0.01  # global: layers end up different
    prune(model, amount=0.93, scope="global", cumulative=False)
    after = torch.cat([w.detach().flatten() for w in weights(model)])
    assert zeros(after) == round(0.93 * total)


def test_random_and_threshold():
    model = mlp()
    prune(model, amount=0.4, method="random")
    for w in weights(model):
        assert zeros(w) == round(0.4 * w.numel())
    model = mlp(1)
    eps = 0.05
    before = [w.detach().clone() for w in weights(model)]
    prune(model, threshold=eps, method="threshold")
    for w0, w in zip(before, weights(model), strict=True):
        assert torch.equal(w == 0, w0.abs() < eps)
        assert torch.equal(w[w != 0], w0[w != 0])


def test_structured_removes_whole_output_channels():
    model = cnn()
    prune(model, amount=0.5, method="ln_structured", n=2, dim=0)
    for w in weights(model):
        rows = w.reshape(w.shape[0], -1)
        dead = (rows == 0).all(dim=1)
        assert int(dead.sum()) == round(0.5 * w.shape[0])
        assert (rows[~dead] != 0).all()  # the others untouched
    prune(model, amount=0.75, method="ln_structured", cumulative=False)
    for w in weights(model):
        dead = (w.reshape(w.shape[0], -1) == 0).all(dim=1)
        assert int(dead.sum()) == round(0.75 * w.shape[0])


def test_layers_argument_by_name_and_module():
    model = mlp()
    prune(model, amount=0.5, layers=["0"])
    assert zeros(model[0].weight) == round(0.5 * 1200) and zeros(model[2].weight) == 0
    prune(model, amount=0.5, layers=[model[4]])
    assert zeros(model[4].weight) == 50
    rep = sparsity_report(model, layers=["0", model[4]])
    assert set(rep["layers"]) == {"0.weight", "4.weight"}


def test_zeros_survive_sgd_momentum_weight_decay_and_make_permanent():
    model = mlp()
    prune(model, amount=0.7, scope="global")
    masks = [(w == 0).clone() for w in weights(model)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    x, y = torch.randn(64, 30), torch.randint(0, 5, (64,))
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for m, w in zip(masks, weights(model), strict=True):
        assert (w[m] == 0).all()
    orig = [mod.weight_orig.detach().clone() for mod in model if hasattr(mod, "weight_orig")]
    assert any(
        (o[m] != 0).any() for o, m in zip(orig, masks, strict=True)
    )  # the hook, not the optimizer, keeps zeros
    make_permanent(model)
    assert not is_pruned(model)
    assert all(isinstance(w, nn.Parameter) for w in weights(model))
    assert not any(hasattr(mod, "weight_orig") for mod in model)
    for m, w in zip(masks, weights(model), strict=True):
        assert torch.equal(w == 0, m)


def test_validation_errors():
    model = mlp()
    with pytest.raises(ValueError, match="amount"):
        prune(model, amount=1.5)
    with pytest.raises(ValueError, match="amount"):
        prune(model, amount=-0.1)
    with pytest.raises(ValueError, match="amount"):
        prune(model)
    with pytest.raises(ValueError, match="threshold"):
        prune(model, method="threshold")
    with pytest.raises(ValueError, match="amount"):
        prune(model, method="threshold", threshold=0.1, amount=0.5)
    with pytest.raises(ValueError, match="did you mean 'l1'"):
        prune(model, amount=0.5, method="l2")
    with pytest.raises(ValueError, match="scope"):
        prune(model, amount=0.5, scope="globl")
    with pytest.raises(ValueError, match="ln_structured"):
        prune(model, amount=0.5, method="ln_structured", scope="global")
    with pytest.raises(ValueError, match="close names"):
        prune(model, amount=0.5, layers=["00"])
    with pytest.raises(ValueError, match="names include"):
        prune(model, amount=0.5, layers=["fc1"])
    with pytest.raises(TypeError, match="model"):
        prune("not a model", amount=0.5)
    assert not is_pruned(model)  # nothing was half-applied


def test_sparsity_report_and_format():
    model = mlp()
    prune(model, amount=0.25)
    rep = sparsity_report(model)
    assert rep["layers"]["0.weight"] == {"params": 1200, "zeros": 300, "sparsity": 0.25}
    assert rep["total"]["params"] == 1200 + 800 + 100
    assert rep["total"]["zeros"] == 300 + 200 + 25
    text = format_sparsity_report(model)
    assert "total" in text and "2.weight" in text and "25.00%" in text


# ------------------------------------------------------------------ schedules
def zhu_gupta(t, si, sf, t0, t1, dt):
    if t < t0:
        return si
    if t >= t1:
        return sf
    k = math.floor((t - t0) / dt)
    return sf + (si - sf) * (1 - k * dt / (t1 - t0)) ** 3


def test_gradual_sparsity_formula():
    for t in [0, 99, 100, 101, 150, 250, 555, 999, 1000, 1001, 5000]:
        got = gradual_sparsity(t, 0.1, 0.9, begin_step=100, end_step=1000, frequency=50)
        assert got == pytest.approx(zhu_gupta(t, 0.1, 0.9, 100, 1000, 50), abs=1e-12)
    assert gradual_sparsity(500, 0.0, 0.9, 0, 1000, 100) == pytest.approx(0.9 - 0.9 * 0.5**3)
    # staircase: constant between pruning steps
    assert gradual_sparsity(120, 0.0, 0.9, 0, 1000, 100) == gradual_sparsity(
        199, 0.0, 0.9, 0, 1000, 100
    )
    vals = [gradual_sparsity(t, 0.0, 0.8, 0, 1000, 10) for t in range(0, 1100, 10)]
    assert all(b >= a for a, b in itertools.pairwise(vals)) and vals[-1] == 0.8
    with pytest.raises(ValueError, match="end_step"):
        gradual_sparsity(0, 0.0, 0.9, 100, 100, 10)
    with pytest.raises(ValueError, match="frequency"):
        gradual_sparsity(0, 0.0, 0.9, 0, 100, 0)
    with pytest.raises(ValueError, match="final_sparsity"):
        gradual_sparsity(0, 0.0, 1.5, 0, 100, 10)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_gradual_pruning_callback_with_fake_trainer(scope):
    model = mlp()
    trainer = types.SimpleNamespace(global_step=0, module=model, stop_training=False)
    cb = GradualPruning(0.85, begin_step=10, end_step=60, frequency=10, scope=scope)
    cb.set_trainer(trainer)
    cb.set_params({"epochs": 1, "steps": 80})
    cb.on_train_begin()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(32, 30), torch.randint(0, 5, (32,))
    prev_zero = [torch.zeros_like(w, dtype=torch.bool) for w in weights(model)]
    seen = []
    for step in range(80):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        trainer.global_step += 1
        cb.on_train_batch_end(step)
        now = [(w == 0) for w in weights(model)]
        assert all(
            (n | ~p).all() for p, n in zip(prev_zero, now, strict=True)
        )  # once pruned, stays pruned
        prev_zero = now
        total = sparsity_report(model)["total"]
        seen.append(total["zeros"] / total["params"])
        expect = gradual_sparsity(trainer.global_step, 0.0, 0.85, 10, 60, 10)
        if scope == "global":
            assert total["zeros"] == round(expect * total["params"])
    logs = {}
    cb.on_epoch_end(0, logs)
    assert logs["sparsity"] == 0.85
    for w in weights(model):
        if scope == "layer":
            assert zeros(w) == round(0.85 * w.numel())
    assert seen[-1] == pytest.approx(0.85, abs=1e-3)
    assert len(set(seen)) >= 5  # several intermediate levels, not one jump


def test_gradual_pruning_end_step_from_params():
    model = mlp()
    cb = GradualPruning(0.5, frequency=5)
    cb.set_trainer(types.SimpleNamespace(global_step=0, module=model))
    cb.set_params({"epochs": 2, "steps": 10})
    cb.on_train_begin()
    assert cb.end_step == 20
    with pytest.raises(ValueError, match="scope"):
        GradualPruning(0.5, end_step=10, scope="everything")


def test_iterative_prune_rounds():
    model = mlp()
    x, y = torch.randn(64, 30), torch.randint(0, 5, (64,))
    log = []

    def fine_tune(m, r):
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
        log.append((r, [zeros(w) for w in weights(m)]))

    schedule = [0.5, 0.75, 0.9]
    iterative_prune(model, fine_tune, schedule=schedule)
    assert [r for r, _ in log] == [0, 1, 2]
    for (_, counts), s in zip(log, schedule, strict=True):
        assert counts == [round(s * w.numel()) for w in weights(model)]
    with pytest.raises(ValueError, match="schedule"):
        iterative_prune(mlp(), fine_tune, schedule=[0.5, 0.3])


def test_gradual_pruning_with_the_brisk_trainer():
    from brisk import Trainer

    model = mlp()
    x, y = torch.randn(512, 30), torch.randint(0, 5, (512,))
    seen = []

    class Spy(Callback):
        def on_train_batch_end(self, batch, logs=None):
            t = sparsity_report(self.model)["total"]
            seen.append((self.trainer.global_step, t["zeros"], t["params"]))

    gp = GradualPruning(0.8, begin_step=0, end_step=40, frequency=8)
    trainer = Trainer(model, optimizer="adam", loss="cross_entropy", device="cpu", seed=0)
    trainer.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[gp, Spy()])
    assert trainer.global_step == 64
    for step, z, n in seen:  # after each step the zeros follow the schedule exactly
        assert z == round(gradual_sparsity(step, 0.0, 0.8, 0, 40, 8) * n), step
    assert seen[-1][1] == round(0.8 * seen[-1][2])
    zero = [(w == 0).clone() for w in weights(model)]
    Trainer(model, optimizer="sgd", loss="cross_entropy", device="cpu").fit(
        x, y, batch_size=32, epochs=2, verbose=0
    )  # fine-tuning with the masks fixed
    make_permanent(model)
    for z, w in zip(zero, weights(model), strict=True):
        assert torch.equal(w == 0, z)


def test_a_model_saved_while_pruning_masks_are_attached_loads_as_a_plain_model(tmp_path):
    # issue 12: the files held weight_orig/weight_mask and load_model failed on "Missing key(s)"
    import brisk
    from brisk.compress import prune
    from brisk.layers import Dense, Input

    m = brisk.Sequential([Input((5,)), Dense(8, activation="relu"), Dense(3)])
    prune(m, 0.5)
    assert "layers.0.linear.weight_mask" in m.state_dict()  # masks attached
    m.save(tmp_path / "m.safetensors")
    m.save_weights(tmp_path / "w.safetensors")
    m.compile(loss="mse")
    m.trainer.save(tmp_path / "t.safetensors")
    x = torch.randn(6, 5)
    loaded = brisk.load_model(tmp_path / "m.safetensors")
    assert torch.equal(loaded(x), m(x))
    assert float((loaded.layers[0].linear.weight == 0).float().mean()) == 0.5
    fresh = brisk.Sequential([Input((5,)), Dense(8, activation="relu"), Dense(3)])
    fresh.load_weights(tmp_path / "w.safetensors")
    assert torch.equal(fresh(x), m(x))
    from safetensors.torch import load_file

    plain = load_file(tmp_path / "t.safetensors")
    assert sorted(plain) == sorted(fresh.state_dict())
    assert torch.equal(plain["layers.0.linear.weight"], m.layers[0].linear.weight)
