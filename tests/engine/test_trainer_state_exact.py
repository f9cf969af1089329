"""Exact tests of the Trainer's checkpoint methods: ``_check_state``'s errors in full,
``load_state_dict`` (what lands where), ``_matched_optimizer_state`` (two groups of other
sizes, weights matched by name), ``state_dict``, ``save_checkpoint`` (schedule-free),
``_continuation`` and the module helpers ``_stateful_callbacks``, ``_pruned_in``.

Every object is built inside its test (mutmut switches a mutant on only while a test runs).
"""

import copy
import random

import numpy as np
import pytest
import torch
from torch import nn

import brisk
from brisk.engine.checkpoint import load_checkpoint
from brisk.engine.trainer import _pruned_in, _stateful_callbacks


def _groups_trainer(metrics=None, lr1=0.25):
    """Linear(3, 2) then Linear(2, 4); a torch Adam with groups [0.weight, 0.bias, 1.weight]
    and [1.bias]."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 4))
    opt = torch.optim.Adam([{"params": [net[0].weight, net[0].bias, net[1].weight]},
                            {"params": [net[1].bias], "lr": lr1}], lr=0.1)
    return brisk.Trainer(net, optimizer=opt, loss="mse", metrics=metrics or [], device="cpu")


def _plain_trainer(metrics=None):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 4))
    return brisk.Trainer(net, optimizer="sgd", loss="mse", metrics=metrics or [], device="cpu")


def _base(t):
    """A minimal valid checkpoint for ``t``'s model, made here by hand."""
    return {"model": {k: torch.full_like(v, 0.5) for k, v in t.module.state_dict().items()},
            "global_step": 0, "epoch": 0, "precision": t.precision.state_dict(),
            "rng": {"torch": torch.get_rng_state()}}


def _pos(**kw):
    return {"epoch": 0, "batch": 0, "pass": 0, "drawn": 0, "seed": 0, "batches": 0, **kw}


def _error(t, state, *source):
    with pytest.raises(ValueError) as e:
        t.load_state_dict(state, *source)
    return str(e.value)


# --- _check_state: every refusal, message in full --------------------------------------


def test_a_checkpoint_that_is_not_a_complete_dict_is_refused_with_exact_messages():
    t = _plain_trainer()
    assert _error(t, [1]) == "state: expected a checkpoint dict, got list"
    s = _base(t)
    del s["epoch"], s["rng"]
    assert _error(t, s) == "state: not a complete brisk checkpoint, missing ['epoch', 'rng']"
    s = _base(t)
    s["model"] = [1]
    assert _error(t, s) == "state: 'model' is not a state dict"


def test_weights_that_do_not_fit_list_at_most_five_keys_each_way():
    t = _plain_trainer()
    s = _base(t)
    s["model"].update({f"x{i}": torch.zeros(1) for i in range(7)})
    assert _error(t, s) == ("state: the weights do not fit this model (missing keys [], "
                            "unexpected keys ['x0', 'x1', 'x2', 'x3', 'x4'])")
    torch.manual_seed(0)
    wide = brisk.Trainer(nn.Sequential(*[nn.Linear(1, 1) for _ in range(3)]), optimizer="sgd",
                         loss="mse", device="cpu")
    s = _base(wide)
    s["model"] = {}
    assert _error(wide, s) == ("state: the weights do not fit this model (missing keys "
                               "['0.bias', '0.weight', '1.bias', '1.weight', '2.bias'], "
                               "unexpected keys [])")


def test_a_bad_train_model_is_refused_and_a_good_one_is_what_is_loaded():
    t = _plain_trainer()
    msg = "state: 'train_model' does not match 'model'"
    for bad in ([1],
                {"0.weight": torch.zeros(2, 3), "0.bias": torch.zeros(2),
                 "1.weight": torch.zeros(4, 2)},
                {"0.weight": torch.zeros(2, 3), "0.bias": [0.0, 0.0],
                 "1.weight": torch.zeros(4, 2), "1.bias": torch.zeros(4)},
                {"0.weight": torch.zeros(2, 3), "0.bias": torch.zeros(2),
                 "1.weight": torch.zeros(4, 2), "1.bias": torch.zeros(5)}):
        s = _base(t)
        s["train_model"] = bad
        assert _error(t, s) == msg
    s = _base(t)
    train = {"0.weight": torch.full((2, 3), 2.0), "0.bias": torch.full((2,), 3.0),
             "1.weight": torch.full((4, 2), 4.0), "1.bias": torch.full((4,), 5.0)}
    s["train_model"] = train
    t.load_state_dict(s)
    for k, v in t.module.state_dict().items():
        assert torch.equal(v, train[k]), k


def test_a_weight_of_another_shape_or_type_is_named():
    t = _plain_trainer()
    s = _base(t)
    s["model"]["1.weight"] = torch.zeros(2, 4)
    assert _error(t, s) == "state: weight '1.weight' is (2, 4), the model's is (4, 2)"
    s = _base(t)
    s["model"]["0.bias"] = [0.0, 0.0]
    assert _error(t, s) == "state: weight '0.bias' is list, the model's is (2,)"


def test_step_and_epoch_must_be_ints_at_least_zero():
    t = _plain_trainer()
    for key, value, shown in (("global_step", True, "True"), ("epoch", 1.5, "1.5"),
                              ("epoch", -1, "-1"), ("global_step", "3", "'3'")):
        s = _base(t)
        s[key] = value
        assert _error(t, s) == f"state: {key} must be an int >= 0, got {shown}"


def test_rng_and_optimizer_shapes_are_checked():
    t = _plain_trainer()
    for rng in ([1], {"torch": 1}, {}):
        s = _base(t)
        s["rng"] = rng
        assert _error(t, s) == "state: 'rng' must hold the torch generator state"
    for opt in ({"state": {}}, [1]):
        s = _base(t)
        s["optimizer"] = opt
        assert _error(t, s) == "state: 'optimizer' is not an optimizer state dict"


def test_numpy_and_python_rng_states_are_checked():
    t = _plain_trainer()
    for bad in (["MT19937", torch.zeros(624, dtype=torch.int64), 0, 0],
                ["MT19937", [0] * 624, 0, 0, 0.0],
                ["MT19937", torch.zeros(10, dtype=torch.int64), 0, 0, 0.0]):
        s = _base(t)
        s["rng"]["numpy"] = bad
        assert _error(t, s) == "state: rng 'numpy' is not a numpy generator state"
    for bad in ([3, torch.zeros(625, dtype=torch.int64)],
                [3, [0] * 625, None],
                [3, torch.zeros(10, dtype=torch.int64), None]):
        s = _base(t)
        s["rng"]["python"] = bad
        assert _error(t, s) == "state: rng 'python' is not a python random state"


def test_position_entries_are_checked_by_name():
    t = _plain_trainer()
    s = _base(t)
    s["position"] = [1, 2]
    assert _error(t, s) == "state: 'position' must be a dict"
    cases = [(_pos(epoch=-1), "epoch", "-1"), (_pos(batch=True), "batch", "True"),
             (_pos(**{"pass": 1.5}), "pass", "1.5"),
             ({k: v for k, v in _pos().items() if k != "drawn"}, "drawn", "None")]
    for pos, key, shown in cases:
        s = _base(t)
        s["position"] = pos
        assert _error(t, s) == f"state: position[{key!r}] must be an int >= 0, got {shown}"
    for pos, key, shown in ((_pos(seed=-1), "seed", "-1"), (_pos(batches=True), "batches", "True"),
                            (_pos(seed=1.5), "seed", "1.5"), (_pos(batches=-2), "batches", "-2")):
        s = _base(t)
        s["position"] = pos
        assert _error(t, s) == (f"state: position[{key!r}] must be an int >= 0 or None, "
                                f"got {shown}")
    s = _base(t)
    s["position"] = _pos(seed=None, batches=None)
    t.load_state_dict(s)  # None is allowed for both


def test_position_stats_must_fit_the_metrics():
    t = _plain_trainer(metrics=["mae"])
    good = {"sums": [torch.tensor(1.0), torch.tensor(2.0)], "counts": [1, 1],
            "metric_states": [None]}
    msg = "state: position['stats'] does not fit this trainer's 1 metrics"
    for bad in ("x", {**good, "sums": good["sums"][:1]}, {**good, "counts": [1, 1, 1]},
                {**good, "metric_states": []}):
        s = _base(t)
        s["position"] = _pos(batch=2, stats=bad)
        assert _error(t, s) == msg
    s = _base(t)
    s["position"] = _pos(batch=2, stats=good)
    t.load_state_dict(s)
    assert t._position["stats"] is good


def test_callbacks_and_grads_are_checked():
    t = _plain_trainer()
    for cbs in ({"A": 3}, [1]):
        s = _base(t)
        s["callbacks"] = cbs
        assert _error(t, s) == "state: 'callbacks' must map callback names to state dicts"
    for grads in ([1], {"nope": torch.zeros(1)}, {"0.bias": [0.0, 0.0]},
                  {"0.bias": torch.zeros(3)}):
        s = _base(t)
        s["grads"] = grads
        assert _error(t, s) == "state: 'grads' do not fit this model's parameters"


# --- load_state_dict: what lands where -------------------------------------------------


def test_load_state_dict_restores_every_part_exactly():
    t = _plain_trainer()
    np.random.seed(123)
    ns = np.random.get_state()
    want_np = np.random.rand(3)
    random.seed(5)
    ps = random.getstate()
    want_py = [random.random() for _ in range(3)]
    torch.manual_seed(9)
    ts = torch.get_rng_state()
    want_torch = torch.rand(3)
    s = _base(t)
    s.update(global_step=7, epoch=2)
    s["rng"] = {"torch": ts,
                "numpy": [ns[0], torch.from_numpy(ns[1].astype(np.int64)), ns[2], ns[3], ns[4]],
                "python": [ps[0], torch.tensor(ps[1], dtype=torch.int64), ps[2]],
                "cuda": torch.get_rng_state()}  # ignored on a CPU trainer
    s["position"] = {"epoch": 2, "batch": 3, "pass": 5, "drawn": 4, "seed": 11, "batches": 8,
                     "other": 1}
    s["callbacks"] = {"EarlyStopping": {"wait": 2}}
    s["grads"] = {"0.bias": torch.tensor([1.0, 2.0], dtype=torch.float64),
                  "1.weight": torch.ones(4, 2)}
    t.module[1].bias.grad = torch.ones(4)  # not in the checkpoint: cleared
    np.random.seed(999)
    random.seed(999)
    torch.manual_seed(999)
    assert t._loads == 0
    t.load_state_dict(s)
    assert np.array_equal(np.random.rand(3), want_np)
    assert [random.random() for _ in range(3)] == want_py
    assert torch.equal(torch.rand(3), want_torch)
    for k, v in t.module.state_dict().items():
        assert torch.equal(v, torch.full_like(v, 0.5)), k
    assert (t.global_step, t.epoch) == (7, 2)
    assert t._position == {"epoch": 2, "batch": 3, "pass": 5, "drawn": 4, "seed": 11,
                           "batches": 8}
    assert t._callback_states == {"EarlyStopping": {"wait": 2}}
    assert t.module[0].weight.grad is None and t.module[1].bias.grad is None
    assert t.module[0].bias.grad.dtype == torch.float32
    assert torch.equal(t.module[0].bias.grad, torch.tensor([1.0, 2.0]))
    assert torch.equal(t.module[1].weight.grad, torch.ones(4, 2))
    assert t.module[1].weight.grad is not s["grads"]["1.weight"]
    assert t._loads == 1
    t.load_state_dict(s)
    assert t._loads == 2


def test_an_older_checkpoint_starts_fresh_at_its_epoch_and_clears_callback_states():
    t = _plain_trainer()
    t._callback_states = {"x": {}}
    s = _base(t)
    s["epoch"] = 3
    t.load_state_dict(s)
    assert t._position == {"epoch": 3, "batch": 0, "pass": 3, "drawn": 0, "seed": None,
                           "batches": None}
    assert t._callback_states is None
    assert t.optimizer is None  # no optimizer state: none built


def test_a_pruned_checkpoint_loads_into_a_nested_unpruned_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Sequential(nn.Linear(3, 2)), nn.Linear(2, 4))
    t = brisk.Trainer(net, optimizer="sgd", loss="mse", device="cpu")
    s = _base(t)
    orig = torch.arange(6.0).reshape(2, 3)
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    del s["model"]["0.0.weight"]
    s["model"]["0.0.weight_orig"], s["model"]["0.0.weight_mask"] = orig, mask
    t.load_state_dict(s)
    lin = net[0][0]
    assert torch.equal(lin.weight_orig, orig) and torch.equal(lin.weight_mask, mask)
    assert torch.equal(lin.weight, orig * mask)
    assert set(t.module.state_dict()) == {"0.0.bias", "0.0.weight_orig", "0.0.weight_mask",
                                          "1.weight", "1.bias"}


def test_a_model_with_build_but_no_built_flag_is_not_rebuilt():
    calls = []

    class M(nn.Linear):
        def build(self, shape):
            calls.append(shape)

    torch.manual_seed(0)
    t = brisk.Trainer(M(3, 2), optimizer="sgd", loss="mse", device="cpu")
    s = _base(t)
    s["sample_shape"] = [3]
    t.load_state_dict(s)
    assert calls == []


# --- _matched_optimizer_state ---------------------------------------------------------


def _stepped_source(order):
    """An Adam over a twin model with its weights in ``order`` (group 1: 1.bias), stepped
    once; returns (its state dict, the names of its weights group by group, the twin)."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 4))
    named = dict(net.named_parameters())
    opt = torch.optim.Adam([{"params": [named[n] for n in order]},
                            {"params": [net[1].bias], "lr": 0.5}], lr=0.2)
    net(torch.randn(5, 3)).square().sum().backward()
    opt.step()
    by_name = {n: opt.state[p] for n, p in named.items()}
    return copy.deepcopy(opt.state_dict()), [list(order), ["1.bias"]], by_name


def test_optimizer_state_is_matched_by_name_across_another_order():
    t = _groups_trainer()
    sd, names, want = _stepped_source(["1.weight", "0.bias", "0.weight"])
    s = _base(t)
    s["optimizer"], s["optimizer_params"] = sd, names
    t.load_state_dict(s)
    for n, p in t.module.named_parameters():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(t.optimizer.state[p][key], want[n][key]), (n, key)
    assert [g["lr"] for g in t.optimizer.param_groups] == [0.2, 0.5]
    assert t.optimizer.param_groups[0]["params"] == [t.module[0].weight, t.module[0].bias,
                                                     t.module[1].weight]


def test_an_older_optimizer_state_without_names_maps_by_position():
    t = _groups_trainer()
    sd, _, want = _stepped_source(["0.weight", "0.bias", "1.weight"])
    s = _base(t)
    s["optimizer"] = sd
    sd["state"][2]["row"] = torch.zeros(1, 2)  # a factored state (Adafactor's) fits
    sd["state"][2]["col"] = torch.zeros(4, 1)
    t.load_state_dict(s)
    for n, p in t.module.named_parameters():
        assert torch.equal(t.optimizer.state[p]["exp_avg"], want[n]["exp_avg"]), n
    assert torch.equal(t.optimizer.state[t.module[1].weight]["row"], torch.zeros(1, 2))


def test_optimizer_states_that_do_not_fit_are_refused_with_exact_messages():
    t = _groups_trainer()
    sd, names, _ = _stepped_source(["1.weight", "0.bias", "0.weight"])

    def err(change, source=()):
        s = _base(t)
        s["optimizer"], s["optimizer_params"] = copy.deepcopy(sd), copy.deepcopy(names)
        change(s)
        return _error(t, s, *source)

    not_opt = "state: 'optimizer' is not an optimizer state dict"
    g0, g1 = sd["param_groups"]
    assert err(lambda s: s["optimizer"].update(param_groups=tuple(sd["param_groups"]))) == not_opt
    assert err(lambda s: s["optimizer"].update(state={0: 5})) == not_opt
    assert err(lambda s: s["optimizer"].update(state=[{}])) == not_opt
    groups = "state: the optimizer state has groups of {} weights, this optimizer [3, 1]"
    assert err(lambda s: s["optimizer"].update(param_groups=[g0])) == groups.format([3])
    assert err(lambda s: s["optimizer"].update(param_groups=[5, g1])) == groups.format([0, 1])
    no_params = {k: v for k, v in g0.items() if k != "params"}
    assert err(lambda s: s["optimizer"].update(param_groups=[no_params, g1])) == \
        groups.format([0, 1])
    assert err(lambda s: s["optimizer"].update(
        param_groups=[{**g0, "params": [0, 1]}, {**g1, "params": [2, 3]}])) == \
        groups.format([2, 2])
    bad_names = ("state: 'optimizer_params' does not list the optimizer's weights group by "
                 "group")
    for bad in ("x", [["a", "b", "c"]], [["a", "b"], ["c"]], [("a", "b", "c"), ["d"]],
                [["a", "b", 3], ["d"]]):
        assert err(lambda s, bad=bad: s.update(optimizer_params=bad)) == bad_names
    assert err(lambda s: s.update(optimizer_params=[["0.weight", "nope", "1.weight"],
                                                    ["1.bias"]])) == \
        "state: the optimizer state is for other weights (not in it: ['0.bias'])"
    assert err(lambda s: s.update(optimizer_params=[["a", "b", "c"], ["d"]])) == \
        ("state: the optimizer state is for other weights (not in it: "
         "['0.weight', '0.bias', '1.weight'])")
    # saved ids: 0 -> 1.weight, 1 -> 0.bias, 2 -> 0.weight, 3 -> 1.bias
    assert err(lambda s: s["optimizer"]["state"][1].update(exp_avg=torch.zeros(3))) == \
        "state: optimizer state 'exp_avg' is (3,) for a weight of (2,)"
    assert err(lambda s: s["optimizer"]["state"][2].update(exp_avg_sq=torch.zeros(6))) == \
        "state: optimizer state 'exp_avg_sq' is (6,) for a weight of (2, 3)"
    assert err(lambda s: s["optimizer"]["state"][2].update(exp_avg=torch.zeros(2, 2))) == \
        "state: optimizer state 'exp_avg' is (2, 2) for a weight of (2, 3)"
    assert err(lambda s: s["optimizer"]["state"][2].update(exp_avg=torch.zeros(2, 2)),
               ("ck",)) == "ck: optimizer state 'exp_avg' is (2, 2) for a weight of (2, 3)"
    assert t.optimizer.state == {} or all(not st for st in t.optimizer.state.values())


# --- state_dict ----------------------------------------------------------------------


class _Keeps:
    def __init__(self, v):
        self.v = v

    def state_dict(self):
        return {"v": self.v}

    def load_state_dict(self, state):
        self.v = state["v"]


class _SavesOnly:
    def state_dict(self):
        return {}


class _LoadsOnly:
    def load_state_dict(self, state):
        pass


class _NotCallable:
    state_dict = 5
    load_state_dict = 6


def test_state_dict_holds_exactly_its_keys():
    t = _groups_trainer()
    t._ensure_optimizer()
    t._position = {"epoch": 1, "batch": 0, "pass": 2, "drawn": 0, "seed": 7, "batches": 4,
                   "stats": "S"}
    t._stats, t._counts = [torch.tensor(3.0)], [5]
    sd = t.state_dict()
    assert set(sd) == {"model", "global_step", "epoch", "precision", "rng", "position",
                       "optimizer", "optimizer_params"}
    assert set(sd["rng"]) == {"torch", "numpy", "python"}
    assert sd["position"] == {"epoch": 1, "batch": 0, "pass": 2, "drawn": 0, "seed": 7,
                              "batches": 4}
    assert sd["optimizer_params"] == [["0.weight", "0.bias", "1.weight"], ["1.bias"]]


def test_state_dict_mid_epoch_holds_the_sums_only_when_there_are_some():
    t = _groups_trainer()
    t._position = {"epoch": 1, "batch": 2, "pass": 1, "drawn": 2, "seed": 7, "batches": 4}
    assert "stats" not in t.state_dict()["position"]  # no sums yet
    t._stats, t._counts = [torch.tensor(3.0)], [5]
    stats = t.state_dict()["position"]["stats"]
    assert set(stats) == {"sums", "counts", "metric_states"}
    assert torch.equal(stats["sums"][0], torch.tensor(3.0)) and len(stats["sums"]) == 1
    assert stats["counts"] == [5] and stats["metric_states"] == []


def test_state_dict_holds_the_stateful_callbacks_and_the_grads_there_are():
    t = _groups_trainer()
    t._callbacks = [_Keeps(1), object(), _Keeps(2), _SavesOnly(), _LoadsOnly()]
    t.module[1].bias.grad = torch.tensor([1.0, 2.0, 3.0, 4.0])
    sd = t.state_dict()
    assert sd["callbacks"] == {"_Keeps": {"v": 1}, "_Keeps_1": {"v": 2}}
    assert set(sd["grads"]) == {"1.bias"}
    assert torch.equal(sd["grads"]["1.bias"], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert sd["grads"]["1.bias"] is not t.module[1].bias.grad


def test_stateful_callbacks_are_keyed_by_class_name_then_a_count():
    a, b, c = _Keeps(1), _Keeps(2), _Keeps(3)
    other = _NotCallable()
    out = _stateful_callbacks([object(), a, _SavesOnly(), b, other, _LoadsOnly(), c])
    assert list(out) == ["_Keeps", "_Keeps_1", "_Keeps_2"]
    assert out["_Keeps"] is a and out["_Keeps_1"] is b and out["_Keeps_2"] is c
    assert _stateful_callbacks([]) == {}


# --- _pruned_in ------------------------------------------------------------------------


def test_pruned_in_lists_only_pairs_whose_plain_name_this_model_has():
    z = torch.zeros(1)
    theirs = {"layer.weight_orig": z, "layer.weight_mask": z,    # pruned there, plain here
              "other.bias_orig": z,                              # no mask: not a pair
              "again.weight_orig": z, "again.weight_mask": z,    # pruned here too
              "gone.weight_orig": z, "gone.weight_mask": z,      # not in this model
              "zz12345": z, "zz_mask": z}                        # no _orig suffix
    ours = {"layer.weight": z, "other.bias": z, "again.weight": z, "again.weight_orig": z,
            "zz": z}
    assert _pruned_in(theirs, ours) == ["layer.weight"]
    assert _pruned_in({}, ours) == []


# --- _continuation ---------------------------------------------------------------------


def test_continuation_positions_exactly():
    t = _groups_trainer()
    base = {"epoch": 2, "batch": 0, "pass": 7, "drawn": 0, "seed": 11, "batches": 4}
    t._position = {**base, "seed": None}
    assert t._continuation(2, None) is None
    t._position = dict(base)
    t._stats, t._counts = [torch.tensor(2.0)], [4]
    assert t._continuation(2, None) == base  # batch 0: no sums added
    assert t._continuation(3, None) is None
    assert t._continuation(3, None, restored=True) == base
    # mid-epoch in process: the epoch's sums so far
    t._position = {**base, "batch": 2, "drawn": 2}
    p = t._continuation(2, None)
    assert set(p) == set(base) | {"stats"}
    assert torch.equal(p["stats"]["sums"][0], torch.tensor(2.0))
    assert (p["stats"]["counts"], p["stats"]["metric_states"]) == ([4], [])
    # mid-epoch restored: the saved sums are kept; not at the epoch end: no roll-over
    t._position = {**base, "batch": 2, "drawn": 2, "stats": "saved"}
    assert t._continuation(3, None, restored=True) == {**base, "batch": 2, "drawn": 2,
                                                        "stats": "saved"}
    # after the epoch's last batch: continues as the start of the next epoch
    t._position = {**base, "batch": 4, "drawn": 4, "stats": "saved"}
    assert t._continuation(3, None) == {"epoch": 3, "batch": 0, "pass": 3, "drawn": 0,
                                        "seed": 11, "batches": 4, "stats": None}
    assert t._continuation(2, None) == {**base, "batch": 4, "drawn": 4, "stats": "saved"}
    # with steps_per_epoch, or another initial_epoch, no roll-over
    assert t._continuation(3, 5, restored=True) == {**base, "batch": 4, "drawn": 4,
                                                     "stats": "saved"}
    assert t._continuation(4, None, restored=True)["epoch"] == 2
    assert t._continuation(1, None, restored=True)["epoch"] == 2
    assert t._continuation(4, None) is None
    t._position = {**base, "batch": 5, "drawn": 5, "stats": "saved"}
    assert t._continuation(3, None)["epoch"] == 3  # past the end too
    t._position = {**base, "batch": 4, "drawn": 4, "batches": None, "stats": "saved"}
    assert t._continuation(3, None, restored=True)["epoch"] == 2  # unknown epoch length


# --- save_checkpoint -------------------------------------------------------------------


def test_save_checkpoint_of_a_torch_optimizer_in_training_mode(tmp_path):
    t = _groups_trainer()
    t._ensure_optimizer()
    t._set_optimizer_mode(True)
    t.save_checkpoint(tmp_path / "c.pt")
    s = load_checkpoint(tmp_path / "c.pt")
    assert "train_model" not in s
    assert t._optimizer_training is False


def test_save_checkpoint_of_an_untouched_schedule_free_trainer(tmp_path):
    torch.manual_seed(0)
    t = brisk.Trainer(nn.Linear(3, 2), optimizer="schedule_free_adamw", loss="mse",
                      device="cpu")
    t.save_checkpoint(tmp_path / "c.pt")
    assert "train_model" not in load_checkpoint(tmp_path / "c.pt")
    assert t._optimizer_training is False


def test_save_checkpoint_mid_training_with_schedule_free_keeps_both_weights(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 4))
    t = brisk.Trainer(net, optimizer="schedule_free_adamw", loss="mse", device="cpu")
    t._ensure_optimizer()
    t._set_optimizer_mode(True)
    for _ in range(3):
        net(torch.randn(5, 3)).square().sum().backward()
        t.optimizer.step()
        t.optimizer.zero_grad()
    live = {k: v.clone() for k, v in net.state_dict().items()}
    twin, twin_opt = copy.deepcopy((net, t.optimizer))
    twin_opt.eval()
    evals = {k: v.clone() for k, v in twin.state_dict().items()}
    assert not torch.equal(evals["0.weight"], live["0.weight"])
    t.save_checkpoint(tmp_path / "c.pt")
    s = load_checkpoint(tmp_path / "c.pt")
    assert set(s["model"]) == set(s["train_model"]) == set(live)
    for k in live:
        assert torch.equal(s["model"][k], evals[k]), k
        assert torch.equal(s["train_model"][k], live[k]), k
        assert torch.equal(net.state_dict()[k], live[k]), k
    assert "optimizer" in s
    assert all(g["train_mode"] is True for g in t.optimizer.param_groups)
    assert t._optimizer_training is True


def test_a_checkpoint_from_a_gpu_run_loads_on_the_cpu():
    """The CUDA generator's state in a GPU run's checkpoint is ignored on a CPU trainer
    (set only when this run is on CUDA), the rest restored."""
    torch.manual_seed(0)
    t = brisk.Trainer(torch.nn.Linear(3, 2), optimizer="sgd", loss="mse", device="cpu")
    t.fit(torch.randn(8, 3), torch.randn(8, 2), batch_size=4, verbose=0)
    state = t.state_dict()
    state["rng"]["cuda"] = torch.zeros(16, dtype=torch.uint8)  # as torch.cuda.get_rng_state
    u = brisk.Trainer(torch.nn.Linear(3, 2), optimizer="sgd", loss="mse", device="cpu")
    u.load_state_dict(state)
    assert u.global_step == t.global_step
    assert torch.equal(torch.get_rng_state(), state["rng"]["torch"])


def test_a_pruned_runs_optimizer_state_matches_an_unpruned_model_by_plain_names():
    """Pruning renames a weight to weight_orig; the optimizer state is keyed by the plain
    name, so a pruned run's momentum lands on the same weight of an unpruned model."""
    from torch.nn.utils import prune

    x, y = torch.randn(8, 3), torch.randn(8, 2)
    torch.manual_seed(0)
    pruned = nn.Linear(3, 2)
    prune.l1_unstructured(pruned, "weight", amount=0.5)
    t = brisk.Trainer(pruned, optimizer=brisk.optimizers.SGD(0.1, momentum=0.9), loss="mse",
                      device="cpu")
    t.fit(x, y, batch_size=4, verbose=0)
    assert [n for n, _ in pruned.named_parameters()] == ["bias", "weight_orig"]
    state = t.state_dict()
    assert state["optimizer_params"] == [["bias", "weight"]]
    plain = nn.Linear(3, 2)
    u = brisk.Trainer(plain, optimizer=brisk.optimizers.SGD(0.1, momentum=0.9), loss="mse",
                      device="cpu")
    u.fit(x, y, batch_size=4, verbose=0)
    u.load_state_dict(state)
    buf = {n: u.optimizer.state[p]["momentum_buffer"] for n, p in plain.named_parameters()}
    want = {n: t.optimizer.state[p]["momentum_buffer"] for n, p in pruned.named_parameters()}
    assert torch.equal(buf["bias"], want["bias"])
    assert torch.equal(buf.get("weight_orig", buf.get("weight")), want["weight_orig"])


def test_accumulate_gives_metrics_float32_outputs():
    """bf16 outputs (pure bf16) reach the metrics as float32: the softmax put back for the
    metrics (the loss took logits) computed in bf16 would be off by ~1e-3."""
    from brisk.engine.trainer import Trainer

    t = Trainer(torch.nn.Linear(3, 3), optimizer="sgd", loss="mse", metrics=["mse"])
    t._reset_stats()
    t._post, t._argmax_only = (lambda z: torch.softmax(z, -1)), False
    out = torch.tensor([[0.1, 1.3, -0.7], [2.1, 0.3, 0.9]], dtype=torch.bfloat16)
    y = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    t._accumulate(torch.tensor(0.5), out, y)
    logs = t._read_stats()
    expected = float(((torch.softmax(out.float(), -1) - y) ** 2).mean())
    in_bf16 = float(((torch.softmax(out, -1).float() - y) ** 2).mean())
    assert abs(in_bf16 - expected) > 1e-4  # the case tells the two apart
    assert logs["loss"] == 0.5 and logs["mse"] == pytest.approx(expected, rel=1e-6)
