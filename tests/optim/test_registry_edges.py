"""Optimizer specs: exact error messages, Keras defaults reaching the torch optimizer,
the lr/decay_filter plumbing of every spec, the implementation choice by device, Muon's
split and CombinedOptimizer's plumbing.

Every spec is built inside the test body; expected values are Keras's documented
defaults, torch's/schedulefree's own attributes or hand-made numbers.
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from brisk.optim import registry as R


def raises_exactly(exc, msg, fn, *args, **kwargs):
    with pytest.raises(exc) as e:
        fn(*args, **kwargs)
    assert str(e.value) == msg
    return e


def mlp():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def ids(params):
    return {id(p) for p in params}


def keep_all(name, p):
    return True


ALL_SPECS = [
    R.SGD,
    R.Momentum,
    R.GD,
    R.Adam,
    R.AdamW,
    R.RMSprop,
    R.Adagrad,
    R.Adadelta,
    R.Nadam,
    R.Muon,
    R.ScheduleFreeAdamW,
    R.ScheduleFreeSGD,
]


# ----------------------------------------------------------------------------- plumbing


def test_every_spec_takes_lr_alias_and_decay_filter():
    for cls in ALL_SPECS:
        spec = cls(lr=0.3, decay_filter=keep_all)
        assert spec.learning_rate == 0.3, cls
        assert spec.decay_filter is keep_all, cls
        raises_exactly(
            TypeError,
            "decay_filter: expected a callable (name, param) -> bool, got 'bias'",
            cls,
            decay_filter="bias",
        )


def test_sgd_family_positional_arguments():
    for cls in (R.SGD, R.Momentum, R.GD):
        spec = cls(0.2, 0.5, True, 0.25)
        assert (spec.learning_rate, spec.momentum, spec.nesterov, spec.weight_decay) == (
            0.2,
            0.5,
            True,
            0.25,
        ), cls
        opt = spec.build(mlp())
        assert opt.defaults["nesterov"] is True and opt.defaults["momentum"] == 0.5
    m = R.Momentum()
    assert (m.learning_rate, m.momentum, m.nesterov, m.weight_decay) == (0.01, 0.9, False, 0.0)
    g = R.GD()
    assert (g.learning_rate, g.momentum, g.nesterov, g.weight_decay) == (0.1, 0.0, False, 0.0)
    assert R.Momentum(weight_decay=0.1).nesterov is False


def test_keras_defaults_reach_the_torch_optimizer():
    net = mlp()
    d = R.Adam().build(net).defaults
    assert (d["lr"], d["betas"], d["eps"], d["amsgrad"]) == (0.001, (0.9, 0.999), 1e-7, False)
    assert R.Adam(amsgrad=True).amsgrad is True
    d = R.AdamW().build(net).defaults
    assert (d["lr"], d["betas"], d["eps"], d["amsgrad"]) == (0.001, (0.9, 0.999), 1e-7, False)
    w = R.AdamW(0.01, 0.1, 0.8, 0.9, 1e-3, True)
    assert (w.learning_rate, w.weight_decay, w.beta_1, w.beta_2, w.epsilon, w.amsgrad) == (
        0.01,
        0.1,
        0.8,
        0.9,
        1e-3,
        True,
    )
    d = R.RMSprop().build(net).defaults
    assert (d["lr"], d["alpha"], d["eps"], d["momentum"], d["centered"]) == (
        0.001,
        0.9,
        1e-7,
        0.0,
        False,
    )
    assert R.RMSprop().weight_decay == 0.0 and R.RMSprop(centered=True).centered is True
    assert R.RMSprop(centered=True).build(net).defaults["centered"] is True
    d = R.Adagrad().build(net).defaults
    assert (d["lr"], d["initial_accumulator_value"], d["eps"]) == (0.001, 0.1, 1e-7)
    assert R.Adagrad().weight_decay == 0.0
    d = R.Adadelta().build(net).defaults
    assert (d["lr"], d["rho"], d["eps"]) == (0.001, 0.95, 1e-7)
    assert R.Adadelta().weight_decay == 0.0
    d = R.Nadam().build(net).defaults
    assert (d["lr"], d["betas"], d["eps"], d["momentum_decay"]) == (
        0.001,
        (0.9, 0.999),
        1e-7,
        4e-3,
    )
    assert R.Nadam().weight_decay == 0.0
    assert R.Nadam(beta_1=0.8, beta_2=0.99).build(net).defaults["betas"] == (0.8, 0.99)
    # every built group has the no-decay default (weight decay only where asked)
    for cls in (R.RMSprop, R.Adagrad, R.Adadelta, R.Nadam):
        assert [g["weight_decay"] for g in cls().build(net).param_groups] == [0.0], cls


def test_implementation_choice_reaches_each_optimizer():
    net = mlp()
    fused = (R.SGD, R.Momentum, R.GD, R.Adam, R.AdamW, R.Adagrad)
    for cls in fused:
        d = cls().build(net).defaults
        assert d["fused"] is True and not d.get("foreach"), cls
        # a device without fused kernels (mps) gets foreach, whatever the parameters' device
        d = cls().build(net, device="mps").defaults
        assert d["foreach"] is True and not d.get("fused"), cls
        opt, _ = R.get_optimizer(cls.name, net, device="mps")
        assert opt.defaults["foreach"] is True and not opt.defaults.get("fused"), cls
    for cls in (R.RMSprop, R.Adadelta, R.Nadam):
        d = cls().build(net).defaults
        assert d["foreach"] is True and not d.get("fused"), cls


# ----------------------------------------------------------------------------- messages


def test_spec_argument_messages_are_exact():
    raises_exactly(
        ValueError,
        "nesterov: Nesterov momentum needs momentum in (0, 1), got momentum=0",
        R.SGD,
        nesterov=True,
    )
    raises_exactly(TypeError, "epsilon: expected a number, got 'x'", R.Adam, epsilon="x")
    raises_exactly(
        ValueError,
        "momentum: schedule-free SGD needs momentum in (0, 1), got 0",
        R.ScheduleFreeSGD,
        momentum=0,
    )
    raises_exactly(
        ValueError,
        "adamw_betas: expected a pair (beta_1, beta_2), got (0.9, 0.95, 0.99)",
        R.Muon,
        adamw_betas=(0.9, 0.95, 0.99),
    )
    raises_exactly(
        ValueError,
        "adamw_betas: expected a pair (beta_1, beta_2), got 0.9",
        R.Muon,
        adamw_betas=0.9,
    )
    raises_exactly(
        TypeError,
        "output_layer: expected a module name or an nn.Module, got 3",
        R.Muon,
        output_layer=3,
    )
    unit = [
        (R.RMSprop, "rho"),
        (R.RMSprop, "momentum"),
        (R.Adadelta, "rho"),
        (R.Nadam, "beta_1"),
        (R.Nadam, "beta_2"),
        (R.Muon, "momentum"),
        (R.ScheduleFreeAdamW, "beta_1"),
        (R.ScheduleFreeAdamW, "beta_2"),
        (R.ScheduleFreeSGD, "momentum"),
    ]
    for cls, arg in unit:
        raises_exactly(
            ValueError, f"{arg}: expected a number in [0, 1), got 1.0", cls, **{arg: 1.0}
        )
    for arg, bad in (("adamw_betas[0]", (1.0, 0.9)), ("adamw_betas[1]", (0.9, 1.0))):
        raises_exactly(
            ValueError, f"{arg}: expected a number in [0, 1), got 1.0", R.Muon, adamw_betas=bad
        )
    for cls in (R.RMSprop, R.Adagrad, R.Adadelta, R.Nadam, R.ScheduleFreeAdamW):
        raises_exactly(
            ValueError, "epsilon: expected a finite number > 0, got 0.0", cls, epsilon=0.0
        )
    nonneg = [
        (R.Adagrad, "initial_accumulator_value"),
        (R.Nadam, "momentum_decay"),
        (R.Muon, "adamw_lr"),
        (R.Muon, "adamw_weight_decay"),
    ]
    for cls, arg in nonneg:
        raises_exactly(
            ValueError, f"{arg}: expected a finite number >= 0, got -1.0", cls, **{arg: -1.0}
        )
    for cls in (R.ScheduleFreeAdamW, R.ScheduleFreeSGD):
        for bad in (-1, 1.5, True):
            raises_exactly(
                ValueError,
                f"warmup_steps: expected an integer >= 0, got {bad!r}",
                cls,
                warmup_steps=bad,
            )


def test_param_groups_messages():
    raises_exactly(
        ValueError,
        "weight_decay: expected a finite number >= 0, got -1.0",
        R.param_groups,
        mlp(),
        -1.0,
    )
    raises_exactly(
        TypeError,
        "decay_filter: expected a callable (name, param) -> bool, got 'x'",
        R.param_groups,
        mlp(),
        0.1,
        decay_filter="x",
    )


def test_spec_repr_and_equality():
    assert (
        repr(R.SGD()) == "SGD(learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0)"
    )
    assert R.SGD(momentum=0.9) != R.Momentum()  # same config, different class
    assert R.Adam(learning_rate=0.5) != R.Adam()
    assert R.Adam() == R.Adam()


def test_get_optimizer_messages_and_lr_override():
    net = mlp()
    raises_exactly(
        TypeError,
        "optimizer: the callable returned int, expected a torch.optim.Optimizer",
        R.get_optimizer,
        lambda params: 3,
        net,
    )
    built = torch.optim.SGD(net.parameters(), lr=0.2)
    raises_exactly(
        ValueError,
        "learning_rate: expected a finite number >= 0, got -1.0",
        R.get_optimizer,
        built,
        net,
        learning_rate=-1.0,
    )
    opt, spec = R.get_optimizer(built, net, learning_rate=0.5)
    assert opt is built and spec is None
    assert [(g["lr"], g["initial_lr"]) for g in opt.param_groups] == [(0.5, 0.5)]


# ----------------------------------------------------------------------------- schedule-free


def test_schedule_free_arguments_reach_the_optimizer():
    net = mlp()
    spec = R.ScheduleFreeAdamW(0.01, 0.8, 0.9, 1e-6, 0.0, 7)
    d = spec.build(net).defaults
    assert (d["lr"], d["betas"], d["eps"], d["warmup_steps"]) == (0.01, (0.8, 0.9), 1e-6, 7)
    d = R.ScheduleFreeAdamW().build(net).defaults
    assert (d["lr"], d["betas"], d["eps"], d["warmup_steps"]) == (0.0025, (0.9, 0.999), 1e-8, 0)
    assert R.ScheduleFreeAdamW().weight_decay == 0.0
    d = R.ScheduleFreeSGD(0.5, 0.8, 0.0, 3).build(net).defaults
    assert (d["lr"], d["momentum"], d["warmup_steps"]) == (0.5, 0.8, 3)
    sgd = R.ScheduleFreeSGD()
    assert (sgd.learning_rate, sgd.momentum, sgd.weight_decay, sgd.warmup_steps) == (
        1.0,
        0.9,
        0.0,
        0,
    )
    assert R.ScheduleFreeSGD(warmup_steps=5).warmup_steps == 5


def test_schedule_free_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "schedulefree", None)  # import -> ImportError
    raises_exactly(
        ImportError,
        "schedule-free optimizers need the 'schedulefree' package: pip install schedulefree",
        R.ScheduleFreeAdamW().build,
        mlp(),
    )


# ----------------------------------------------------------------------------- Muon


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(4, 4)
        self.l2 = nn.Linear(4, 4)
        self.l3 = nn.Linear(4, 4)
        self.l4 = nn.Linear(4, 2)


def test_muon_arguments_reach_both_optimizers():
    net = Net()
    muon, adamw = (
        R.Muon(learning_rate=0.03, momentum=0.8, nesterov=False, weight_decay=0.0)
        .build(net)
        .optimizers
    )
    g = muon.param_groups[0]
    assert (g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (0.03, 0.8, False, 0.0)
    assert R.Muon().nesterov is True
    assert R.Muon(nesterov=1).nesterov is True
    g = R.Muon(weight_decay=0.05).build(net).optimizers[0].param_groups[0]
    assert (g["nesterov"], g["weight_decay"]) == (True, 0.05)
    assert adamw.defaults["fused"] is True and not adamw.defaults.get("foreach")
    _, adamw = R.Muon().build(net, device="mps").optimizers
    assert adamw.defaults["foreach"] is True and not adamw.defaults.get("fused")
    # the parameters' device picks the implementation when no device is given (meta: foreach)
    meta = nn.Sequential(nn.Linear(3, 3, device="meta"), nn.Linear(3, 2, device="meta"))
    _, adamw = R.Muon().build(meta).optimizers
    assert adamw.defaults["foreach"] is True and not adamw.defaults.get("fused")
    # decay_filter reaches the AdamW part
    _, adamw = R.Muon(adamw_weight_decay=0.1, decay_filter=keep_all).build(net).optimizers
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.1]
    assert ids(adamw.param_groups[0]["params"]) == ids(
        [net.l1.bias, net.l2.bias, net.l3.bias, net.l4.weight, net.l4.bias]
    )


def test_muon_build_errors():
    raises_exactly(
        TypeError,
        "model: Muon needs the nn.Module (to find the output layer), got list",
        R.Muon().build,
        list(mlp().parameters()),
    )
    raises_exactly(ValueError, "model: it has no trainable parameters", R.Muon().build, nn.ReLU())
    net = Net()
    raises_exactly(
        ValueError,
        "output_layer: the module is not part of the model",
        R.Muon(output_layer=nn.Linear(2, 2)).build,
        net,
    )
    raises_exactly(
        ValueError,
        "output_layer: no module named 'zzz' in the model",
        R.Muon(output_layer="zzz").build,
        net,
    )
    # at most three suggestions (difflib: ratio 0.5 for all four; ties sorted descending)
    raises_exactly(
        ValueError,
        "output_layer: no module named 'l5' in the model; did you mean 'l4', 'l3', 'l2'?",
        R.Muon(output_layer="l5").build,
        net,
    )
    spec = R.Muon()
    spec.output_layer = 3  # bypassing __init__'s check: build checks again
    raises_exactly(
        TypeError, "output_layer: expected a module name or an nn.Module, got 3", spec.build, net
    )


def test_muon_output_layer_as_module_and_model_without_linear():
    net = Net()
    muon, adamw = R.Muon(output_layer=net.l2).build(net).optimizers
    assert ids(muon.param_groups[0]["params"]) == ids([net.l1.weight, net.l3.weight, net.l4.weight])
    conv = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 1))
    opt = R.Muon().build(conv)  # no nn.Linear: every filter is hidden
    muon, adamw = opt.optimizers
    assert ids(muon.param_groups[0]["params"]) == ids([conv[0].weight, conv[1].weight])
    assert ids(adamw.param_groups[0]["params"]) == ids([conv[0].bias, conv[1].bias])
    assert repr(opt) == "CombinedOptimizer(_MatrixMuon, AdamW)"


def test_matrix_muon_errors_and_skipped_parameters():
    raises_exactly(
        ValueError,
        "Muon: parameters must have ndim >= 2, got shape (3,)",
        R._MatrixMuon,
        [nn.Parameter(torch.zeros(3))],
        lr=0.1,
    )
    sparse = nn.Parameter(torch.ones(3, 3))
    opt = R._MatrixMuon([sparse], lr=0.1)
    sparse.grad = torch.ones(3, 3).to_sparse()
    raises_exactly(RuntimeError, "Muon does not support sparse gradients", opt.step)
    odd = nn.Parameter(torch.randn(2, 3, 4).permute(1, 0, 2))  # strides (4, 12, 1)
    odd.grad = torch.ones(3, 2, 4)
    opt = R._MatrixMuon([odd], lr=0.1)
    raises_exactly(
        RuntimeError,
        "Muon: cannot view a parameter of shape (3, 2, 4) and strides (4, 12, 1) as a matrix",
        opt.step,
    )
    # a parameter without a gradient is skipped, the following ones are still updated
    torch.manual_seed(0)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    g = torch.randn(4, 3)
    pa, pb = nn.Parameter(a.clone()), nn.Parameter(b.clone())
    ours = R._MatrixMuon([pa, pb], lr=0.1)
    pb.grad = g.clone()
    ours.step()
    ref_p = nn.Parameter(b.clone())
    ref = torch.optim.Muon([ref_p], lr=0.1)
    ref_p.grad = g.clone()
    ref.step()
    torch.testing.assert_close(pa.detach(), a, rtol=0, atol=0)
    torch.testing.assert_close(pb.detach(), ref_p.detach(), rtol=0, atol=0)
    assert (pb.detach() - b).abs().max() > 1e-3


# ----------------------------------------------------------------------------- combined


def two_opts():
    a = nn.Parameter(torch.ones(2))
    b = nn.Parameter(torch.ones(3))
    return a, b, torch.optim.SGD([a], lr=0.1, momentum=0.9), torch.optim.Adam([b], lr=0.1)


def test_combined_optimizer_messages():
    raises_exactly(
        ValueError, "optimizers: expected at least one optimizer", R.CombinedOptimizer, []
    )
    raises_exactly(
        TypeError,
        "optimizers: expected torch.optim.Optimizer instances, got int",
        R.CombinedOptimizer,
        [3],
    )
    a, _, sgd, _ = two_opts()
    raises_exactly(
        ValueError,
        "optimizers: a parameter appears in more than one optimizer",
        R.CombinedOptimizer,
        [sgd, torch.optim.Adam([a])],
    )
    _, _, sgd, adam = two_opts()
    opt = R.CombinedOptimizer([sgd, adam])
    raises_exactly(
        TypeError,
        "CombinedOptimizer: add the group to one of .optimizers instead",
        opt.add_param_group,
        {"params": [nn.Parameter(torch.zeros(1))]},
    )
    raises_exactly(
        ValueError,
        "state_dict: expected {'optimizers': [2 state dicts]}",
        opt.load_state_dict,
        [sgd.state_dict(), adam.state_dict()],
    )
    assert repr(opt) == "CombinedOptimizer(SGD, Adam)"


def test_combined_optimizer_state_routing():
    a, b, sgd, adam = two_opts()
    opt = R.CombinedOptimizer([sgd, adam])
    a.grad, b.grad = torch.ones(2), torch.ones(3)
    opt.step()
    assert opt.state[b] is adam.state[b] and opt.state[a] is sgd.state[a]
    stranger = nn.Parameter(torch.zeros(1))
    assert stranger not in opt.state and b in opt.state
    with pytest.raises(KeyError) as e:
        opt.state[stranger]
    assert e.value.args == ("parameter is not optimized by this CombinedOptimizer",)
    opt.state[b] = {"mark": 1}
    assert adam.state[b] == {"mark": 1} and b not in sgd.state
    del opt.state[b]
    assert b not in adam.state and a in sgd.state


def test_combined_optimizer_step_zero_grad_and_load():
    a, b, sgd, adam = two_opts()
    opt = R.CombinedOptimizer([sgd, adam])
    a.grad, b.grad = torch.ones(2), torch.ones(3)
    assert opt.step() is None
    assert opt.step(lambda: 1.5) == 1.5
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    a.grad = torch.ones(2)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(a.grad, torch.zeros(2))
    state = opt.state_dict()
    _, _, sgd2, adam2 = two_opts()
    other = R.CombinedOptimizer([sgd2, adam2])
    other.load_state_dict(state)
    assert len(other.param_groups) == 2
    assert other.param_groups[0] is sgd2.param_groups[0]
    assert other.param_groups[1] is adam2.param_groups[0]


def test_combined_optimizer_train_eval_reach_schedule_free_parts():
    import schedulefree

    a, _, sgd, _ = two_opts()
    b = nn.Parameter(torch.ones(3))
    sf = schedulefree.SGDScheduleFree([b], lr=0.1)
    opt = R.CombinedOptimizer([sgd, sf])
    opt.train()
    assert sf.param_groups[0]["train_mode"] is True
    opt.eval()
    assert sf.param_groups[0]["train_mode"] is False
    opt.train()
    assert sf.param_groups[0]["train_mode"] is True


# ----------------------------------------------------------- FSDP shards and the fused kernel

@pytest.mark.parametrize("name, torch_cls", [("SGD", torch.optim.SGD),
                                             ("Adagrad", torch.optim.Adagrad)])
def test_specs_whose_fused_kernel_refuses_shards_hand_their_groups_to_the_check(
        monkeypatch, name, torch_cls):
    """SGD's and Adagrad's fused kernels take no DTensor (torch 2.13), so their spec asks
    ``_any_sharded`` about its own parameter groups; faked here to say 'sharded' for any
    list of groups (a real DTensor needs a process group)."""
    seen = []

    def sharded(groups):
        seen.append(groups)
        return groups is not None

    monkeypatch.setattr(R, "_any_sharded", sharded)
    opt = getattr(R, name)().build(mlp())
    assert type(opt) is torch_cls
    assert opt.defaults["foreach"] is True and not opt.defaults.get("fused")
    assert len(seen) == 1 and [len(g["params"]) for g in seen[0]] == [4]


def test_without_torch_distributed_no_weights_are_sharded(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.distributed.tensor", None)  # import fails
    assert R._any_sharded([{"params": list(mlp().parameters())}]) is False


def test_adams_weight_decay_defaults_to_none_applied():
    opt = R.Adam().build(mlp())
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0]
    assert R.Adam().weight_decay == 0.0


def test_a_users_subclass_takes_kerass_clipping_keywords():
    """OptimizerSpec.__init_subclass__ wraps a subclass's own __init__ (once) so it takes
    clipnorm/global_clipnorm/clipvalue; its get_config works without a learning-rate
    schedule attribute."""

    class Lion(R.OptimizerSpec):
        name = "lion"

        def __init__(self, learning_rate=1e-4, beta=0.9):
            """Lion (Chen et al. 2023)."""
            self.learning_rate, self.beta = learning_rate, beta

    spec = Lion(3e-4, clipnorm=2, clipvalue=0.25)
    assert (spec.clipnorm, spec.global_clipnorm, spec.clipvalue) == (2.0, None, 0.25)
    assert Lion.__init__.__doc__ == "Lion (Chen et al. 2023)."
    assert spec.get_config() == {"name": "lion", "learning_rate": 3e-4, "beta": 0.9,
                                 "clipnorm": 2.0, "clipvalue": 0.25}

    class Alias(Lion):
        __init__ = Lion.__init__  # already wrapped: not wrapped again

    assert Alias.__init__ is Lion.__init__

    class Inherits(Lion):  # no __init__ of its own: Lion's wrapper serves
        pass

    assert Inherits(global_clipnorm=1.5).global_clipnorm == 1.5
    raises_exactly(ValueError, "clipvalue: expected a positive number or None, got -1",
                   Lion, clipvalue=-1)
