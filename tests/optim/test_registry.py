"""Optimizer specs: lookup, parameter groups, fused/foreach, Muon, schedule-free, errors."""

from __future__ import annotations

import copy
import functools
import pickle

import pytest
import torch
from torch import nn

from brisk.optim import registry
from brisk.optim.registry import (
    GD,
    OPTIMIZERS,
    SGD,
    Adam,
    AdamW,
    CombinedOptimizer,
    Muon,
    RMSprop,
    ScheduleFreeAdamW,
    ScheduleFreeSGD,
    get,
    get_optimizer,
    param_groups,
)


def mlp():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


class MuonNet(nn.Module):
    """Conv2d + BatchNorm, then Linear-ReLU-Linear-ReLU-Linear with biases."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.l1 = nn.Linear(4 * 4 * 4, 16)
        self.l2 = nn.Linear(16, 16)
        self.l3 = nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x))).flatten(1)
        return self.l3(torch.relu(self.l2(torch.relu(self.l1(h)))))


def ids(params):
    return {id(p) for p in params}


def group_params(opt, i):
    return opt.param_groups[i]["params"]


# ----------------------------------------------------------------------------- lookup


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_name_builds_with_initial_lr(name):
    opt, spec = get_optimizer(name, mlp())
    assert isinstance(spec, OPTIMIZERS[name])
    assert isinstance(opt, torch.optim.Optimizer)
    n = sum(len(g["params"]) for g in opt.param_groups)
    assert n == 4
    for g in opt.param_groups:
        assert g["initial_lr"] == g["lr"]
    assert get(spec.get_config()) == spec  # config round trip
    assert repr(spec).startswith(type(spec).__name__ + "(learning_rate=")
    pickle.loads(pickle.dumps(spec))


@pytest.mark.parametrize(
    "alias,cls",
    [
        ("ADAM", Adam),
        ("AdamW", AdamW),
        ("schedule-free-adamw", ScheduleFreeAdamW),
        ("ScheduleFree_SGD", ScheduleFreeSGD),
        (" rmsprop ", RMSprop),
    ],
)
def test_names_are_case_and_separator_tolerant(alias, cls):
    assert type(get(alias)) is cls
    assert type(get(cls)) is cls  # a spec class works too


def test_keras_defaults():
    assert Adam().epsilon == 1e-7 and Adam().learning_rate == 1e-3
    assert AdamW().weight_decay == 0.004
    assert SGD().learning_rate == 0.01 and GD().learning_rate == 0.1
    assert registry.Adadelta().learning_rate == 0.001 and registry.Adadelta().rho == 0.95
    assert registry.Adagrad().initial_accumulator_value == 0.1
    opt = RMSprop(rho=0.8).build(mlp())
    assert opt.defaults["alpha"] == 0.8 and opt.defaults["eps"] == 1e-7


def test_lr_alias_and_override():
    assert SGD(lr=0.3).learning_rate == 0.3
    assert SGD(learning_rate=0.3, lr=0.3).learning_rate == 0.3
    assert get("adam", learning_rate=0.02).learning_rate == 0.02
    spec = Adam()
    other = get(spec, learning_rate=0.5)
    assert other.learning_rate == 0.5 and spec.learning_rate == 1e-3  # copied, not changed
    opt, _ = get_optimizer("sgd", mlp(), learning_rate=0.25)
    assert all(g["lr"] == 0.25 == g["initial_lr"] for g in opt.param_groups)


def test_gd_is_full_batch_sgd():
    spec = get("gd")
    assert spec.full_batch is True and SGD().full_batch is False
    assert spec.schedule_free is False
    opt = spec.build(mlp())
    assert type(opt) is torch.optim.SGD and opt.defaults["lr"] == 0.1


def test_built_optimizer_used_as_is_and_callables():
    net = mlp()
    built = torch.optim.SGD(net.parameters(), lr=0.2)
    opt, spec = get_optimizer(built, net)
    assert opt is built and spec is None and built.param_groups[0]["initial_lr"] == 0.2
    opt, spec = get_optimizer(functools.partial(torch.optim.Adam, lr=0.004), net)
    assert type(opt) is torch.optim.Adam and spec is None
    assert opt.param_groups[0]["lr"] == 0.004 == opt.param_groups[0]["initial_lr"]
    opt, _ = get_optimizer(functools.partial(torch.optim.Adam, lr=0.004), net, learning_rate=0.1)
    assert opt.param_groups[0]["lr"] == 0.1


# ----------------------------------------------------------------------------- bad input


def test_unknown_name_suggests_close_names():
    with pytest.raises(
        ValueError, match=r"optimizer: unknown name 'adma'.*'adam'.*valid names: sgd"
    ):
        get("adma")
    with pytest.raises(ValueError, match=r"'rmsprop'"):
        get_optimizer("rmsprp", mlp())


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: SGD(learning_rate=-0.1), r"learning_rate: expected a finite number >= 0"),
        (lambda: Adam(learning_rate=float("nan")), r"learning_rate: expected a finite number"),
        (lambda: SGD(momentum=1.0), r"momentum: expected a number in \[0, 1\)"),
        (lambda: SGD(momentum=-0.1), r"momentum: expected a number in \[0, 1\)"),
        (lambda: Adam(beta_1=1.0), r"beta_1: expected a number in \[0, 1\)"),
        (lambda: Adam(beta_2=-0.5), r"beta_2: expected a number in \[0, 1\)"),
        (lambda: Adam(epsilon=0.0), r"epsilon: expected a finite number > 0"),
        (lambda: AdamW(weight_decay=-1e-4), r"weight_decay: expected a finite number >= 0"),
        (
            lambda: SGD(learning_rate=0.1, lr=0.2),
            r"lr and learning_rate: both given with different values",
        ),
        (lambda: SGD(nesterov=True), r"nesterov"),
        (lambda: Muon(momentum=1.0), r"momentum"),
        (lambda: Muon(adamw_betas=(0.9, 1.5)), r"adamw_betas\[1\]"),
        (lambda: ScheduleFreeSGD(momentum=0.0), r"momentum"),
        (lambda: get_optimizer("sgd", mlp(), learning_rate=-1.0), r"learning_rate"),
    ],
)
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_types():
    with pytest.raises(TypeError, match="learning_rate: expected a number"):
        Adam(learning_rate="fast")
    with pytest.raises(TypeError, match="optimizer: expected"):
        get(42)
    with pytest.raises(TypeError, match="optimizer: expected"):
        get_optimizer(3.0, mlp())
    with pytest.raises(TypeError, match="decay_filter"):
        AdamW(decay_filter="bias")
    with pytest.raises(ValueError, match="no trainable parameters"):
        Adam().build(nn.ReLU())


# ----------------------------------------------------------------------------- groups


class NormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.lin = nn.Linear(6, 6)
        self.bn = nn.BatchNorm1d(6)
        self.ln = nn.LayerNorm(6)
        self.rms = nn.RMSNorm(6)
        self.gn = nn.GroupNorm(2, 6)
        self.frozen = nn.Linear(6, 6)
        self.frozen.requires_grad_(False)


def test_weight_decay_skips_biases_and_norms():
    net = NormNet()
    opt = AdamW(weight_decay=0.1).build(net)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert ids(group_params(opt, 0)) == ids([net.emb.weight, net.lin.weight])
    no_decay = [
        net.lin.bias,
        *net.bn.parameters(),
        *net.ln.parameters(),
        *net.rms.parameters(),
        *net.gn.parameters(),
    ]
    assert ids(group_params(opt, 1)) == ids(no_decay)
    # frozen parameters are left out entirely
    assert not ids(net.frozen.parameters()) & ids(p for g in opt.param_groups for p in g["params"])


def test_decay_filter_override_and_no_decay():
    net = NormNet()
    groups = param_groups(net, 0.1, decay_filter=lambda name, p: True)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.1
    assert len(groups[0]["params"]) == 10
    groups = param_groups(net, 0.1, decay_filter=lambda name, p: name.startswith("ln."))
    assert ids(groups[0]["params"]) == ids(net.ln.parameters())
    assert len(param_groups(net, 0.0)) == 1  # no decay: a single group
    groups = param_groups(nn.Linear(3, 3), 0.5)  # bias-only leftovers still form a group
    assert [len(g["params"]) for g in groups] == [1, 1]


def test_weight_decay_really_skips_bias():
    """AdamW with lr>0, zero gradients: only the decayed weight shrinks."""
    net = nn.Linear(3, 3)
    opt = AdamW(learning_rate=0.1, weight_decay=0.5).build(net)
    w, b = net.weight.detach().clone(), net.bias.detach().clone()
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(net.weight.detach(), w * (1 - 0.1 * 0.5))
    torch.testing.assert_close(net.bias.detach(), b)


# ----------------------------------------------------------------------------- fused / foreach


def test_impl_choice():
    for cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adagrad):
        assert registry._impl_kwargs(cls, "cpu") == {"fused": True}
        assert registry._impl_kwargs(cls, torch.device("cuda", 0)) == {"fused": True}
        assert registry._impl_kwargs(cls, "mps") == {"foreach": True}
    for cls in (torch.optim.RMSprop, torch.optim.NAdam, torch.optim.Adadelta):
        assert registry._impl_kwargs(cls, "cpu") == {"foreach": True}
    assert Adam().build(mlp()).defaults["fused"] is True
    assert RMSprop().build(mlp()).defaults["foreach"] is True


@pytest.mark.parametrize(
    "spec",
    [
        SGD(learning_rate=0.1),
        SGD(learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        Adam(learning_rate=0.01, amsgrad=True, weight_decay=0.01),
        AdamW(learning_rate=0.01, weight_decay=0.1),
        registry.Adagrad(learning_rate=0.05),
    ],
    ids=repr,
)
def test_fused_matches_foreach(spec, monkeypatch):
    torch.manual_seed(0)
    base = mlp()
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    results = {}
    for impl in ("fused", "foreach"):
        net = copy.deepcopy(base)
        monkeypatch.setattr(registry, "_impl_kwargs",
                            lambda cls, dev, groups=None, impl=impl: {impl: True})
        opt = spec.build(net)
        assert opt.defaults[impl] is True
        for _ in range(5):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        results[impl] = [p.detach() for p in net.parameters()]
    moved = max(
        (a - b).abs().max().item() for a, b in zip(results["fused"], base.parameters(), strict=True)
    )
    assert moved > 1e-3
    for a, b in zip(results["fused"], results["foreach"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- Muon


def test_muon_gets_exactly_the_hidden_weights():
    net = MuonNet()
    opt = Muon().build(net)
    assert isinstance(opt, CombinedOptimizer)
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and type(adamw) is torch.optim.AdamW
    assert ids(p for g in muon.param_groups for p in g["params"]) == ids(
        [net.conv.weight, net.l1.weight, net.l2.weight]
    )
    rest = [net.conv.bias, *net.bn.parameters(), net.l1.bias, net.l2.bias, *net.l3.parameters()]
    assert ids(p for g in adamw.param_groups for p in g["params"]) == ids(rest)
    assert muon.param_groups[0]["lr"] == 0.02 and adamw.param_groups[0]["lr"] == 3e-4
    assert adamw.param_groups[0]["betas"] == (0.9, 0.95)
    assert all("initial_lr" in g for g in opt.param_groups) and len(opt.param_groups) == 2


def test_muon_output_layer_by_name_and_embeddings():
    net = MuonNet()
    muon, _ = Muon(output_layer="l2").build(net).optimizers
    assert ids(muon.param_groups[0]["params"]) == ids(
        [net.conv.weight, net.l1.weight, net.l3.weight]
    )
    emb = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 8), nn.Linear(8, 20))
    muon, adamw = Muon(adamw_weight_decay=0.1).build(emb).optimizers
    assert ids(muon.param_groups[0]["params"]) == ids([emb[1].weight])
    assert ids(adamw.param_groups[0]["params"]) == ids([emb[0].weight, emb[2].weight])  # decayed
    assert (
        adamw.param_groups[0]["weight_decay"] == 0.1
        and adamw.param_groups[1]["weight_decay"] == 0.0
    )
    with pytest.raises(ValueError, match="output_layer: no module named 'l4'.*'l1'"):
        Muon(output_layer="l4").build(net)


def test_muon_conv_update_is_torch_muon_on_the_matrix_view():
    torch.manual_seed(0)
    w = torch.randn(8, 3, 3, 3)
    grads = [torch.randn(8, 3, 3, 3) for _ in range(3)]
    conv = nn.Parameter(w.clone())
    ours = registry._MatrixMuon([conv], lr=0.05, momentum=0.9, weight_decay=0.1)
    mat = nn.Parameter(w.reshape(8, 27).clone())
    ref = torch.optim.Muon([mat], lr=0.05, momentum=0.9, weight_decay=0.1)
    cl = nn.Parameter(w.clone().to(memory_format=torch.channels_last))
    ours_cl = registry._MatrixMuon([cl], lr=0.05, momentum=0.9, weight_decay=0.1)
    for g in grads:
        conv.grad, mat.grad = g.clone(), g.reshape(8, 27).clone()
        cl.grad = g.clone().to(memory_format=torch.channels_last)
        ours.step(), ref.step(), ours_cl.step()
    assert (conv.detach() - w).abs().max() > 1e-2
    torch.testing.assert_close(conv.detach().reshape(8, 27), mat.detach(), rtol=0, atol=0)
    # channels_last filters: same update up to bfloat16 rounding in Newton-Schulz
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl.detach(), conv.detach(), rtol=0, atol=1e-3)


def test_muon_steps_reduce_the_loss():
    torch.manual_seed(0)
    net = MuonNet()
    x, y = torch.randn(64, 2, 6, 6), torch.randint(0, 3, (64,))
    opt = Muon(learning_rate=0.1, adamw_lr=1e-2).build(net)
    w0 = net.l1.weight.detach().clone()
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))
    assert (net.l1.weight.detach() - w0).abs().max() > 1e-2  # Muon moved the hidden weights


def test_combined_optimizer_groups_state_and_state_dict():
    torch.manual_seed(0)
    net = MuonNet()
    x, y = torch.randn(8, 2, 6, 6), torch.randint(0, 3, (8,))

    def step(o, n):
        o.zero_grad()
        nn.functional.cross_entropy(n(x), y).backward()
        o.step()

    opt = Muon().build(net)
    step(opt, net)
    assert len(opt.state) == 10 and net.l3.weight in opt.state and opt.state[net.conv.weight]
    twin = copy.deepcopy(net)
    twin_opt = Muon().build(twin)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    step(opt, net), step(twin_opt, twin)
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the engine's schedule writes group['lr']: it reaches the sub-optimizers
    for g in opt.param_groups:
        g["lr"] = 0.0
    before = [p.detach().clone() for p in net.parameters()]
    step(opt, net)
    for a, b in zip(net.parameters(), before, strict=True):
        torch.testing.assert_close(a.detach(), b, rtol=0, atol=0)
    # torch schedulers accept it
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    assert [g["lr"] for g in opt.optimizers[0].param_groups] == [0.01]
    del sched
    with pytest.raises(ValueError, match="state_dict"):
        opt.load_state_dict({"optimizers": []})
    with pytest.raises(TypeError):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)]})


# ----------------------------------------------------------------------------- schedule-free


@pytest.mark.parametrize(
    "spec", [ScheduleFreeAdamW(learning_rate=0.01), ScheduleFreeSGD(learning_rate=0.1)], ids=repr
)
def test_schedule_free_train_eval_switch(spec):
    torch.manual_seed(0)
    assert spec.schedule_free is True and spec.full_batch is False
    net = mlp()
    opt, _ = get_optimizer(spec, net)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    opt.train()
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    train_w = [p.detach().clone() for p in net.parameters()]
    opt.eval()
    eval_w = [p.detach().clone() for p in net.parameters()]
    assert max((a - b).abs().max().item() for a, b in zip(train_w, eval_w, strict=True)) > 1e-4
    opt.train()
    for a, p in zip(train_w, net.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), a, rtol=1e-5, atol=1e-6)
    assert SGD().schedule_free is False
