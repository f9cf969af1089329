"""Precision policy: every mode trains like fp32; fp16 skips overflowing steps; the scaler
state survives a checkpoint."""

import numpy as np
import pytest
import torch
from torch import nn

import brisk
from brisk.engine.precision import Precision, resolve_mode
from brisk.layers import Dense, Flatten, Rescaling


@pytest.fixture(scope="module")
def digits():
    return brisk.datasets.load_digits()


def _mlp(shape):
    brisk.utils.set_random_seed(0)  # built (weights drawn) at construction
    return brisk.Sequential([Rescaling(1 / 255, input_shape=shape), Flatten(),
                             Dense(64, activation="relu"), Dense(10, activation="softmax")])


@pytest.fixture(scope="module")
def fp32_accuracy(digits):
    (x, y), (xt, yt) = digits
    m = _mlp(x.shape[1:])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
              precision="fp32", seed=0)
    m.fit(x, y, epochs=10, batch_size=32, verbose=0)
    return m.evaluate(xt, yt)[1]


@pytest.mark.parametrize("mode", ["bf16-mixed", "fp16-mixed", "bf16"])
def test_each_mode_trains_to_the_fp32_accuracy_band(digits, fp32_accuracy, mode):
    (x, y), (xt, yt) = digits
    m = _mlp(x.shape[1:])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
              precision=mode, seed=0)
    m.fit(x, y, epochs=10, batch_size=32, verbose=0)
    acc = m.evaluate(xt, yt)[1]
    assert fp32_accuracy > 0.93
    # Half-precision rounding changes the trajectory, not the result: within 2 points.
    assert abs(acc - fp32_accuracy) <= 0.02, (mode, acc, fp32_accuracy)
    weight = m.layers[2].linear.weight  # after Rescaling and Flatten
    # Mixed modes keep float32 master weights; pure bf16 stores the weights in bfloat16.
    assert weight.dtype == (torch.bfloat16 if mode == "bf16" else torch.float32)
    if mode == "fp16-mixed":
        assert m.trainer.precision.skipped_steps == 0  # nothing overflowed on this data


def test_an_explicit_mode_is_kept_and_bad_modes_are_refused():
    assert resolve_mode("fp32", torch.device("cpu")) == ("fp32", "asked for")
    with pytest.raises(ValueError, match="precision: expected one of"):
        Precision("fp8", "cpu")
    with pytest.raises(ValueError, match="precision"):
        brisk.Trainer(nn.Linear(2, 2), precision="half")


def test_fp16_skips_overflowing_steps_and_counts_them():
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    trainer = brisk.Trainer(net, optimizer="sgd", loss="cross_entropy", precision="fp16-mixed")
    x = torch.randn(64, 4)
    y = torch.randint(0, 3, (64,))
    trainer.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)  # builds everything
    assert trainer.precision.skipped_steps == 0
    before = [p.detach().clone() for p in net.parameters()]
    scale = trainer.precision.scaler.get_scale()
    # 1e6 is finite in float32 but overflows float16 (max 65504): under autocast the
    # first batch's forward pass produces inf, so its gradients are inf/nan.
    bad = x.clone()
    bad[:16] = 1e6
    trainer.fit(bad[:16], y[:16], epochs=1, batch_size=16, verbose=0)
    assert trainer.precision.skipped_steps == 1
    for a, b in zip(before, net.parameters(), strict=True):
        assert torch.equal(a, b)  # the overflowing step changed nothing
    assert trainer.precision.scaler.get_scale() == scale / 2  # the scaler backed off
    trainer.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert trainer.precision.skipped_steps == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_scaler_state_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    bad = x.clone()
    bad[:16] = 1e6
    a = brisk.Trainer(nn.Linear(4, 3), optimizer="adam", loss="cross_entropy",
                      precision="fp16-mixed")
    a.fit(x, y, epochs=2, batch_size=16, verbose=0)
    a.fit(bad[:16], y[:16], epochs=1, batch_size=16, verbose=0)  # one skip, scale halved
    a.save_checkpoint(tmp_path / "fp16.pt")
    b = brisk.Trainer(nn.Linear(4, 3), optimizer="adam", loss="cross_entropy",
                      precision="fp16-mixed")
    b.fit(x[:16], y[:16], epochs=1, batch_size=16, verbose=0)
    assert b.precision.scaler.get_scale() != a.precision.scaler.get_scale()
    b.load_checkpoint(tmp_path / "fp16.pt")
    assert b.precision.skipped_steps == a.precision.skipped_steps == 1
    assert b.precision.scaler.state_dict() == a.precision.scaler.state_dict()
    # Resumed, both continue identically.
    for t in (a, b):
        t.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    # A checkpoint from another precision mode is refused, not silently mixed.
    c = brisk.Trainer(nn.Linear(4, 3), optimizer="adam", loss="cross_entropy", precision="fp32")
    c.fit(x[:16], y[:16], epochs=1, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match="precision: checkpoint was written with 'fp16-mixed'"):
        c.load_checkpoint(tmp_path / "fp16.pt")


class _TwoOptimizers:
    """A combined optimizer as brisk builds for Muon: the parts are in ``optimizers``."""

    def __init__(self, *optimizers):
        self.optimizers = list(optimizers)


def test_unscale_divides_every_part_of_a_combined_optimizer_by_the_scale():
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(3))
    opt = _TwoOptimizers(torch.optim.SGD([a], lr=0.1), torch.optim.SGD([b], lr=0.1))
    p = Precision("fp16-mixed", "cpu")
    p.scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    p.backward((a.sum() + 2 * b.sum()).float())
    assert a.grad.tolist() == [8.0, 8.0] and b.grad.tolist() == [16.0] * 3
    p.unscale(opt)
    assert a.grad.tolist() == [1.0, 1.0] and b.grad.tolist() == [2.0] * 3
    # a plain optimizer is its own single part
    c = nn.Parameter(torch.ones(1))
    p2 = Precision("fp16-mixed", "cpu")
    p2.scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    p2.backward(3 * c.sum())
    p2.unscale(torch.optim.SGD([c], lr=0.1))
    assert c.grad.tolist() == [3.0]


def test_load_state_dict_defaults_and_keeps_the_scaler_when_none_saved():
    p = Precision("fp16-mixed", "cpu")
    p._skipped.fill_(5)
    scaler_state = p.scaler.state_dict()
    p.load_state_dict({"mode": "fp16-mixed"})  # older checkpoint: no counter, no scaler
    assert p.skipped_steps == 0 and p.scaler.state_dict() == scaler_state
    q = Precision("fp32", "cpu")
    q.load_state_dict({"mode": "fp32", "skipped_steps": 2, "scaler": {"scale": 2.0}})
    assert q.skipped_steps == 2 and q.scaler is None


def test_repr_names_mode_and_device():
    assert repr(Precision("bf16", "cpu")) == "Precision('bf16', device='cpu')"


@pytest.mark.parametrize("front", ["torch", "keras"])
def test_pure_bf16_keeps_token_ids_exact(front):
    # bfloat16 holds integers exactly only up to 256: id 257 would become 256. A model with
    # an embedding gets its ids as they are (the embedding's output is bf16 either way):
    # int64 for a torch nn.Embedding, float32 ids too for brisk's Embedding layer.
    from brisk.layers import Embedding, Input

    if front == "torch":
        model = nn.Sequential(nn.Embedding(1000, 4), nn.Flatten())
        emb, ids = model[0], np.array([[257, 999], [3, 511]])
    else:
        model = brisk.Sequential([Input((2,)), Embedding(1000, 4), Flatten()])
        emb, ids = model.layers[0].embedding, np.array([[257, 999], [3, 511]], "float32")
    t = brisk.Trainer(model, loss="mse", precision="bf16")
    out = t.predict(ids)
    want = emb.weight.detach().float()[torch.as_tensor(ids).long()].flatten(1)
    np.testing.assert_array_equal(out, want.numpy())
    t.fit(ids, np.zeros((2, 8), "float32"), epochs=1, verbose=0)  # trains on the same ids


def test_pure_bf16_steps_on_float32_master_weights_exactly():
    """The optimizer updates a float32 copy of each bf16 weight with the bf16 gradient
    (Micikevicius et al. 2018); the weight is that copy rounded to bf16."""
    torch.manual_seed(0)
    p = Precision("bf16", "cpu")
    net = p.setup_module(nn.Linear(4, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    w0 = net.weight.detach().float()
    x = torch.randn(8, 4, dtype=torch.bfloat16)
    for _ in range(3):
        net(x).float().square().mean().backward()
        g = net.weight.grad.clone()
        assert g.dtype == torch.bfloat16
        before = p._masters.get(net.weight, w0).clone()
        p.step(opt)
        opt.zero_grad(set_to_none=True)
        master = p._masters[net.weight]
        assert master.dtype == torch.float32 and net.weight.dtype == torch.bfloat16
        assert torch.equal(master, before.add(g.float(), alpha=-0.01))  # SGD's own op
        assert torch.equal(net.weight.detach(), master.to(torch.bfloat16))
    assert opt.state == {} or all(v.dtype == torch.float32 for s in opt.state.values()
                                  for v in s.values() if torch.is_tensor(v))


def test_pure_bf16_keeps_updates_smaller_than_a_bf16_step():
    """An update below half a bf16 step of the weight is lost on bf16 weights (the cause of
    11% accuracy); the master keeps it until the weight moves."""
    p = Precision("bf16", "cpu")
    net = p.setup_module(nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        net.weight.fill_(1.0)  # bf16 values just below 1 are 2**-8 apart
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    for _ in range(3):
        net.weight.grad = torch.full_like(net.weight, 2**-11)  # an eighth of that step
        p.step(opt)
    assert net.weight.item() == 1.0  # 1 - 3 * 2**-11 rounds back to 1 in bf16 ...
    assert p._masters[net.weight].item() == 1 - 3 * 2**-11  # ... the master keeps it
    for _ in range(2):
        net.weight.grad = torch.full_like(net.weight, 2**-11)
        p.step(opt)
    assert net.weight.item() == 1 - 2**-8  # five eighths down: the nearer bf16 value


def test_pure_bf16_resumes_its_masters_from_a_checkpoint_exactly(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((96, 6), dtype=np.float32), rng.integers(0, 3, 96)

    def trainer():
        torch.manual_seed(0)
        return brisk.Trainer(nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)),
                             optimizer="adam", loss="cross_entropy", precision="bf16", seed=0)

    full = trainer()
    full.fit(x, y, batch_size=16, epochs=2, verbose=0)
    half = trainer()
    half.fit(x, y, batch_size=16, epochs=1, verbose=0)
    half.save_checkpoint(tmp_path / "c.pt")
    resumed = trainer()
    resumed.load_checkpoint(tmp_path / "c.pt")
    resumed.fit(x, y, batch_size=16, epochs=2, initial_epoch=1, verbose=0)
    for a, b in zip(full.module.parameters(), resumed.module.parameters(), strict=True):
        assert a.dtype == torch.bfloat16 and torch.equal(a, b)
        assert torch.equal(full.precision._masters[a], resumed.precision._masters[b])


def test_pure_bf16_masters_follow_weights_changed_between_fits():
    """A load_state_dict (or restored best weights) between fits: the next step starts from
    the loaded weights, not from the masters of the earlier fit."""
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 6), dtype=np.float32), rng.integers(0, 3, 64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    t = brisk.Trainer(net, optimizer=brisk.optimizers.SGD(learning_rate=0.5), loss="cross_entropy",
                      precision="bf16", seed=0)
    t.fit(x, y, batch_size=16, epochs=2, verbose=0)
    net.load_state_dict(fresh)  # back to the initial weights (cast to bf16)
    loaded = {k: v.clone() for k, v in net.state_dict().items()}
    t.optimizer.param_groups[0]["lr"] = 0.0  # a step that must change nothing
    t.fit(x, y, batch_size=16, epochs=1, verbose=0, schedule=lambda step: 0.0)
    for k, v in net.state_dict().items():
        assert torch.equal(v, loaded[k]), k


def test_auto_takes_a_pure_bf16_checkpoint_and_an_undecided_one_loads_anywhere(tmp_path,
                                                                               monkeypatch):
    monkeypatch.delenv("BRISK_AUTO_PRECISION", raising=False)

    def trainer(precision):
        torch.manual_seed(0)
        return brisk.Trainer(nn.Linear(4, 2), loss="cross_entropy", precision=precision)

    x, y = np.ones((8, 4), np.float32), np.zeros(8, np.int64)
    a = trainer("bf16")
    a.fit(x, y, epochs=1, verbose=0)
    a.save_checkpoint(tmp_path / "bf16.pt")
    b = trainer("auto")
    b.load_checkpoint(tmp_path / "bf16.pt")
    assert b.precision.mode == "bf16" and b.precision.reason == "the checkpoint's"
    b.fit(x, y, epochs=2, initial_epoch=1, verbose=0)
    assert next(b.module.parameters()).dtype == torch.bfloat16
    undecided = trainer("auto")
    monkeypatch.setattr("brisk.engine.precision.cpu_native_bf16", lambda: "AMX")
    undecided = trainer("auto")  # pending: nothing has run
    undecided.save_checkpoint(tmp_path / "auto.pt")
    c = trainer("fp32")
    c.load_checkpoint(tmp_path / "auto.pt")
    assert c.precision.mode == "fp32"
