"""fold == unfolded in eval mode; fewer modules; refusals."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from brisk.compress import fold, make_permanent, prune


def randomize_bn(model, seed=0):
    """Non-trivial running stats and affine parameters (as after training)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                if m.affine:
                    m.weight.copy_(torch.randn(n, generator=g))
                    m.bias.copy_(torch.randn(n, generator=g))
    return model


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def count(model, kinds):
    return sum(isinstance(m, kinds) for m in model.modules())


def check(model, x, tol=1e-5):
    model.eval()
    with torch.no_grad():
        ref = model(x)
    folded = fold(model)
    with torch.no_grad():
        out = folded(x)
    assert rel_err(out, ref) < tol
    assert count(folded, (_BatchNorm, nn.Dropout, nn.Identity)) == 0
    assert len(list(folded.modules())) < len(list(model.modules()))
    return folded


def test_conv_bn_all_dims():
    torch.manual_seed(0)
    check(
        randomize_bn(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())),
        torch.randn(4, 3, 10, 10),
    )
    check(
        randomize_bn(nn.Sequential(nn.Conv1d(3, 8, 3), nn.BatchNorm1d(8), nn.Tanh())),
        torch.randn(4, 3, 20),
    )
    check(
        randomize_bn(nn.Sequential(nn.Conv3d(2, 4, 3, bias=False), nn.BatchNorm3d(4))),
        torch.randn(2, 2, 6, 6, 6),
    )
    f = check(
        randomize_bn(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, affine=False))),
        torch.randn(4, 3, 9, 9),
    )
    assert isinstance(f[0], nn.Conv2d) and len(f) == 1


def test_bn_trained_a_few_steps():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 4)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 1, 10, 10) * 3 + 1
    for _ in range(5):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    assert not torch.allclose(model[1].running_mean, torch.zeros(6))
    check(model, x)


def test_linear_bn_linear_linear_dropout():
    torch.manual_seed(0)
    model = randomize_bn(
        nn.Sequential(
            nn.Linear(20, 30),
            nn.BatchNorm1d(30),
            nn.ReLU(),
            nn.Linear(30, 25),
            nn.Dropout(0.5),
            nn.Linear(25, 10),
            nn.Identity(),
            nn.Linear(10, 5),
        )
    )
    f = check(model, torch.randn(8, 20))
    assert [type(m) for m in f] == [nn.Linear, nn.ReLU, nn.Linear]
    assert f[2].weight.shape == (5, 30)


def test_bottleneck_is_not_merged():
    model = nn.Sequential(nn.Linear(100, 2), nn.Linear(2, 100)).eval()
    f = fold(model)
    assert len(f) == 2  # merging would cost 10000 MACs instead of 400


def test_nested_sequential():
    torch.manual_seed(0)
    inner = nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(0.1)
    )
    model = randomize_bn(
        nn.Sequential(
            nn.Conv2d(3, 4, 1),
            nn.BatchNorm2d(4),
            inner,
            nn.Sequential(nn.Identity()),
            nn.Flatten(),
            nn.Linear(4 * 5 * 5, 3),
        )
    )
    f = check(model, torch.randn(2, 3, 5, 5))
    assert isinstance(f[1], nn.Sequential) and len(f[1]) == 2


class Block(nn.Module):
    """Tiny ResNet basic block: conv-bn-relu-conv-bn + skip."""

    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = Block(8)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(8, 10)
        self.head_bn = nn.BatchNorm1d(10)

    def forward(self, x):
        x = self.block(self.stem(x))
        x = F.dropout(x.mean(dim=(2, 3)), p=0.2, training=False)
        return self.head_bn(self.head(self.drop(x)))


def test_fx_residual_model():
    torch.manual_seed(0)
    model = randomize_bn(Net())
    before = copy.deepcopy(model.state_dict())
    f = check(model, torch.randn(4, 3, 12, 12))
    assert isinstance(f, torch.fx.GraphModule)
    assert count(f, nn.Conv2d) == 3 and count(f, nn.Linear) == 1
    assert "dropout" not in f.code
    # the input is left untouched
    assert count(model, _BatchNorm) == 4
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_refusals():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="training mode; call model.eval"):
        fold(model)
    model.eval()
    prune(model, amount=0.5)
    with pytest.raises(ValueError, match="make_permanent"):
        fold(model)
    make_permanent(model)
    assert isinstance(fold(model)[0], nn.Conv2d)

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: not traceable
                return self.fc(x)
            return x

    with pytest.raises(TypeError, match="not traceable.*nn.Sequential"):
        fold(Branchy().eval())


def test_brisk_sequential_folds_to_equal_torch_modules():
    import brisk
    from brisk.compress import to_torch
    from brisk.layers import (
        Activation,
        BatchNormalization,
        Conv2D,
        Dense,
        Dropout,
        GlobalAveragePooling2D,
        MaxPooling2D,
    )

    torch.manual_seed(0)
    model = brisk.Sequential(
        [
            # 'same' with an even kernel: asymmetric padding, kept as ZeroPad2d
            Conv2D(6, 4, padding="same", input_shape=(9, 9, 2)),
            BatchNormalization(),
            Activation("relu"),
            MaxPooling2D(2, padding="same"),  # -inf padding
            Conv2D(8, 3, activation="relu"),
            BatchNormalization(),  # after a non-linearity: must stay
            GlobalAveragePooling2D(),
            Dropout(0.5),
            Dense(12),
            BatchNormalization(),
            Dense(5, activation="softmax"),
        ]
    )
    x = torch.randn(16, 9, 9, 2)  # Keras layout (N, H, W, C)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x * 2 + 0.5)  # BatchNorm running statistics from data
    randomize_bn(model)
    model.eval()
    with torch.no_grad():
        ref = model(x)
        plain = to_torch(model)
        assert isinstance(plain, nn.Sequential) and not plain.training
        assert torch.equal(plain(x), ref)
        folded = fold(model)
        out = folded(x)
    assert isinstance(folded, nn.Sequential)
    assert rel_err(out, ref) < 1e-5
    assert count(folded, _BatchNorm) == 1  # the BN after the ReLU cannot be folded
    assert count(folded, nn.Dropout) == 0
    assert count(model, _BatchNorm) == 3  # the brisk model is left untouched
    model.train()
    with pytest.raises(ValueError, match="training mode"):
        fold(model)


class SharedOutput(nn.Module):
    """The conv's and the linear's outputs feed their BatchNorm *and* another branch:
    folding either BN into its layer would change what the other branch sees."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc, self.bn1 = nn.Linear(4, 6), nn.BatchNorm1d(6)

    def forward(self, x):
        y = self.conv(x)
        z = self.bn(y) + y  # y also feeds the residual branch
        h = self.fc(z.mean(dim=(2, 3)))
        return self.bn1(h) * h.sigmoid()


def test_bn_is_not_merged_into_a_layer_whose_output_feeds_another_branch():
    torch.manual_seed(0)
    model = randomize_bn(SharedOutput()).eval()
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        ref = model(x)
        out = fold(model)(x)
    assert rel_err(out, ref) < 1e-5
    folded = fold(model)
    assert count(folded, _BatchNorm) == 2  # both kept: neither could be merged


def test_a_layer_called_twice_is_not_folded():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.bn = nn.Linear(4, 4), nn.BatchNorm1d(4)

        def forward(self, x):
            return self.bn(self.fc(x)) + self.fc(x)

    model = randomize_bn(Twice()).eval()
    x = torch.randn(6, 4)
    with torch.no_grad():
        assert rel_err(fold(model)(x), model(x)) < 1e-5


class Chain(nn.Module):
    """Linear-BN-Linear-Linear through forward (not a Sequential): the fx path."""

    def __init__(self):
        super().__init__()
        self.a, self.bn = nn.Linear(6, 8), nn.BatchNorm1d(8)
        self.b, self.c = nn.Linear(8, 7), nn.Linear(7, 3, bias=False)

    def forward(self, x):
        return self.c(self.b(self.bn(self.a(x))))


def test_fx_graph_folds_bn_then_merges_the_linear_chain():
    torch.manual_seed(0)
    model = randomize_bn(Chain()).eval()
    x = torch.randn(5, 6)
    with torch.no_grad():
        ref = model(x)
        folded = fold(model)
        assert rel_err(folded(x), ref) < 1e-5
    assert isinstance(folded, torch.fx.GraphModule)
    linears = [m for m in folded.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 and linears[0].weight.shape == (3, 6)
    assert count(folded, _BatchNorm) == 0


def test_functional_dropout_is_removed_only_when_not_training():
    class Drops(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            x = F.dropout(x, 0.3, False)  # positional training=False: an identity
            x = F.dropout(self.fc(x), p=0.5, training=False)
            return F.dropout(x, 0.1, True)  # training=True: random even in eval, kept

    folded = fold(Drops().eval())
    assert folded.code.count("functional.dropout(") == 1 and "training = True" in folded.code
    x = torch.randn(3, 4)
    with torch.no_grad():
        torch.manual_seed(1)
        a = folded(x)
        torch.manual_seed(1)
        b = Drops.forward(folded, x)  # the original code on the same weights and RNG
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("sizes, merged", [((4, 2, 4), True), ((5, 2, 5), False),
                                           ((3, 9, 2), True), ((8, 8, 8), True)])
def test_linear_pairs_merge_when_it_costs_no_more_multiply_adds(sizes, merged):
    """in*out <= in*mid + mid*out: (4,2,4) is 16 <= 16, merged; (5,2,5) 25 > 20, kept."""
    i, m, o = sizes
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(i, m), nn.Linear(m, o)).eval()
    f = fold(model)
    assert len(f) == (1 if merged else 2)
    x = torch.randn(4, i)
    with torch.no_grad():
        assert rel_err(f(x), model(x)) < 1e-5


def test_batchnorm_without_running_stats_is_not_folded():
    """track_running_stats=False: eval uses the batch's statistics; nothing is constant."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    f = fold(model)
    assert count(f, _BatchNorm) == 1
    x = torch.randn(4, 3, 6, 6)
    with torch.no_grad():
        assert rel_err(f(x), model(x)) < 1e-5
    lin = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False)).eval()
    assert count(fold(lin), _BatchNorm) == 1


def test_batchnorm_after_a_non_foldable_layer_stays():
    torch.manual_seed(0)
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4),
                                       nn.Flatten(), nn.Linear(16, 2))).eval()
    f = fold(model)
    assert count(f, _BatchNorm) == 1
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        assert rel_err(f(x), model(x)) < 1e-5


def test_nested_sequential_of_one_layer_and_custom_blocks_inside_a_sequential():
    torch.manual_seed(0)
    model = randomize_bn(nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        Block(4),  # a traceable custom block: folded through fx
        nn.Sequential(nn.ReLU()),  # one module: kept
        nn.Sequential(nn.Dropout(), nn.Identity()),  # nothing left: dropped
        nn.Flatten(), nn.Linear(4 * 5 * 5, 2),
    )).eval()
    f = check(model, torch.randn(2, 3, 5, 5))
    assert [type(m) for m in f][2:] == [nn.Sequential, nn.Flatten, nn.Linear]
    assert isinstance(f[0], nn.Conv2d) and isinstance(f[1], torch.fx.GraphModule)
    assert count(f[1], _BatchNorm) == 0 and count(f[1], nn.Conv2d) == 2
    assert len(f[2]) == 1


def test_fold_rejects_non_modules_and_parametrized_weights():
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module, got int"):
        fold(3)
    model = nn.Sequential(nn.Linear(3, 3)).eval()
    torch.nn.utils.parametrize.register_parametrization(model[0], "weight", nn.Identity())
    model.eval()
    with pytest.raises(ValueError, match="parametrized weights.*make_permanent"):
        fold(model)


# ------------------------------------------------- to_torch: every layer kind and activation
ACTIVATION_NAMES = ["relu", "gelu", "silu", "swish", "tanh", "sigmoid", "elu", "leaky_relu",
                    "linear"]


def built(layers, input_shape):
    import brisk

    torch.manual_seed(0)
    model = brisk.Sequential(layers)
    model.build(input_shape)
    return model.eval()


def same_outputs(model, x):
    """to_torch(model) computes model's function; returns the plain module."""
    from brisk.compress import to_torch

    plain = to_torch(model)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), rtol=1e-6, atol=1e-6)
    return plain


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_to_torch_converts_every_activation_name(name):
    from brisk.compress.fold import ChannelsFirst
    from brisk.layers import Activation, Dense

    model = built([Dense(7, activation=name, input_shape=(5,)), Activation(name)], (5,))
    x = torch.randn(6, 5) * 3  # negative inputs too: elu / leaky_relu / gelu differ there
    plain = same_outputs(model, x)
    assert isinstance(plain[0], nn.Linear) and not isinstance(plain[0], ChannelsFirst)
    n_act = 0 if name == "linear" else 2
    assert len(plain) == 1 + n_act
    assert not any(isinstance(m, type(model.layers[0])) for m in plain.modules())


def test_to_torch_softmax_axis_follows_the_per_sample_rank():
    from brisk.layers import Activation, Conv2D, Dense, Flatten

    # rank 2 per sample (N, 3, 5): the last axis
    seq = built([Activation("softmax", input_shape=(3, 5))], (3, 5))
    x = torch.randn(4, 3, 5) * 2
    out = same_outputs(seq, x)(x)
    torch.testing.assert_close(out, torch.softmax(x, dim=-1))
    # images (rank 3): the channel axis, after a Conv2D and as an Activation layer
    img = built([Conv2D(4, 3, activation="softmax", input_shape=(6, 6, 2)),
                 Conv2D(3, 1), Activation("softmax")], (6, 6, 2))
    x = torch.randn(2, 6, 6, 2) * 2
    out = same_outputs(img, x)(x)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2, 4, 4))
    # vectors (rank 1): the features
    vec = built([Flatten(input_shape=(2, 3)), Dense(4, activation="softmax")], (2, 3))
    x = torch.randn(5, 2, 3)
    out = same_outputs(vec, x)(x)
    torch.testing.assert_close(out.sum(dim=-1), torch.ones(5))


def test_to_torch_flattens_a_nested_brisk_sequential_in_place():
    import brisk
    from brisk.layers import Dense

    inner = brisk.Sequential([Dense(5, activation="relu"), Dense(2)])
    model = brisk.Sequential([Dense(4, input_shape=(3,)), inner])
    x = torch.randn(4, 3)
    plain = same_outputs(model, x)
    assert [type(m) for m in plain] == [nn.Linear, nn.Linear, nn.ReLU, nn.Linear]
    assert plain[1] is not inner.layers[0].linear  # a copy: the model is left as it was


def test_to_torch_pooling_flatten_and_foreign_modules():
    from brisk.compress.fold import ChannelsFirst, ChannelsLast
    from brisk.layers import AveragePooling2D, Dense, Flatten, MaxPooling2D

    model = built([
        # 'same', asymmetric windows and strides: padded with -inf, never a maximum
        MaxPooling2D((3, 2), strides=(2, 1), padding="same", input_shape=(7, 6, 3)),
        AveragePooling2D((2, 3), strides=(1, 2)),
        AveragePooling2D(2, padding="same"),  # padded pixels not counted: kept as is
        Flatten(),
        nn.Tanh(),  # any torch module in a brisk.Sequential is kept
        Dense(4, activation="softmax"),
    ], (7, 6, 3))
    x = -(torch.rand(3, 7, 6, 3) + 0.5)  # all negative: zero padding would win the max
    plain = same_outputs(model, x)
    assert [type(m) for m in plain] == [
        ChannelsFirst, nn.ConstantPad2d, nn.MaxPool2d, nn.AvgPool2d, AveragePooling2D,
        ChannelsLast, nn.Flatten, nn.Tanh, nn.Linear, nn.Softmax,  # Keras's (H, W, C) order
    ]
    # MaxPooling2D's output by hand: -inf padding (left 0, right 1, top 1, bottom 1)
    xc = x.permute(0, 3, 1, 2)
    ref = F.max_pool2d(F.pad(xc, (0, 1, 1, 1), value=float("-inf")), (3, 2), (2, 1))
    with torch.no_grad():
        torch.testing.assert_close(plain[:3](x), ref)
        torch.testing.assert_close(plain[:4](x), F.avg_pool2d(ref, (2, 3), (1, 2)))


def test_to_torch_refusals_and_other_modules(monkeypatch):
    import brisk
    from brisk.api.activations import ACTIVATIONS
    from brisk.compress import to_torch
    from brisk.layers import Dense

    plain = nn.Linear(2, 2)
    assert to_torch(plain) is plain
    with pytest.raises(ValueError) as e:
        to_torch(brisk.Sequential([Dense(3)]))
    assert str(e.value) == (
        "to_torch: the brisk.Sequential is not built yet; train it or call build(input_shape)"
    )
    # an activation registered by the user has no torch module to become
    monkeypatch.setitem(ACTIVATIONS, "mish", F.mish)
    model = built([Dense(3, activation="mish", input_shape=(4,))], (4,))
    with pytest.raises(ValueError) as e:
        to_torch(model)
    assert str(e.value) == "to_torch: activation 'mish' has no torch module equivalent"


# ------------------------------------------------------------- fold: exact refusals, copies
def test_fold_error_messages_are_exact():
    with pytest.raises(TypeError) as e:
        fold("model")
    assert str(e.value) == "model: expected a torch.nn.Module, got str"
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError) as e:
        fold(model)
    assert str(e.value) == (
        "fold: model is in training mode; call model.eval() first (BatchNorm is folded "
        "with its running statistics, which only eval mode uses)"
    )
    model.eval()
    prune(model, amount=0.5)
    with pytest.raises(ValueError) as e:
        fold(model)
    assert str(e.value) == (
        "fold: model carries pruning masks (weight_orig * weight_mask); call "
        "brisk.compress.make_permanent(model) first"
    )
    shared = nn.Sequential(nn.Linear(3, 3)).eval()
    torch.nn.utils.parametrize.register_parametrization(shared[0], "weight", nn.Identity())
    shared.eval()
    with pytest.raises(ValueError) as e:
        fold(shared)
    assert str(e.value) == (
        "fold: model has parametrized weights (e.g. share_weights); call "
        "brisk.compress.make_permanent(model) first"
    )


def test_fold_untraceable_message_names_the_model_and_the_fx_error():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(TypeError) as e:
        fold(Branchy().eval())
    cause = e.value.__cause__
    assert type(cause).__name__ == "TraceError"
    assert str(e.value) == (
        f"fold: Branchy is not traceable by torch.fx (TraceError: {cause}); fold supports "
        "nn.Sequential and fx-traceable modules -- build the model as an nn.Sequential "
        "(data-dependent control flow cannot be traced)"
    )


class TwoPaths(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.act, self.out = nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)

    def forward(self, x):
        return self.out(self.act(self.fc(x))) + x[:, :2]


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)),  # nothing to fold
    TwoPaths,  # the fx path
])
def test_folded_model_does_not_share_weights_with_the_input(make):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(3, 4)
    folded = fold(model)
    with torch.no_grad():
        before = folded(x)
        for p in model.parameters():
            p.add_(1.0)  # editing the original afterwards ...
        torch.testing.assert_close(folded(x), before)  # ... leaves the copy alone
        assert not torch.allclose(model(x), before)


# -------------------------------------------------------------- fold: what must not be folded
def test_linear_then_batchnorm2d_over_channels_is_not_folded():
    """Linear acts on the last axis, BatchNorm2d on dim 1: not a foldable pair."""
    torch.manual_seed(0)
    model = randomize_bn(nn.Sequential(nn.Linear(5, 4), nn.BatchNorm2d(4))).eval()
    x = torch.randn(2, 4, 3, 5)
    with torch.no_grad():
        torch.testing.assert_close(fold(model)(x), model(x))
    assert count(fold(model), _BatchNorm) == 1


class FunctionalBN(nn.Module):
    """F.batch_norm(training=False) is no dropout: it must stay in the graph."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("mean", torch.tensor([0.5, -1.0, 2.0]))
        self.register_buffer("var", torch.tensor([0.25, 4.0, 1.0]))

    def forward(self, x):
        return F.batch_norm(self.fc(x), self.mean, self.var, training=False)


class LinearReused(nn.Module):
    """``b`` is called twice: merging ``a`` into it would change the second call."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.b(self.a(x)) + self.b(x)


class KeywordCalls(nn.Module):
    """Modules called with keyword arguments: kept as they are (outputs unchanged)."""

    def __init__(self):
        super().__init__()
        self.drop, self.fc = nn.Dropout(0.5), nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(input=self.drop(input=x))


@pytest.mark.parametrize("cls", [FunctionalBN, LinearReused, KeywordCalls])
def test_fx_fold_keeps_the_outputs_of_unusual_graphs(cls):
    torch.manual_seed(0)
    model = randomize_bn(cls()).eval()
    x = torch.randn(5, 4)
    with torch.no_grad():
        ref = model(x)
        out = fold(model)(x)
    torch.testing.assert_close(out, ref)


def test_linear_batchnorm1d_fold_refuses_inputs_it_would_get_wrong():
    # BatchNorm1d on (N, C, L) normalises axis 1 while the folded Linear scales the last
    # axis: for 3-D inputs the fold is not exact, so the folded Linear refuses them.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    net.eval()
    folded = fold(net)
    x2 = torch.randn(6, 5)
    torch.testing.assert_close(folded(x2), net(x2), rtol=1e-5, atol=1e-5)  # exact for 2-D
    with pytest.raises(ValueError) as e:
        folded(torch.randn(3, 4, 5))
    assert str(e.value) == (
        "fold: this Linear carries the BatchNorm1d that followed it, which is exact only for "
        "(N, features) inputs; got an input of shape (3, 4, 5), where the BatchNorm1d "
        "normalised axis 1 instead: fold the original model without it")
    with pytest.raises(ValueError) as e:  # the input given by keyword is checked too
        folded[0](input=torch.randn(3, 4, 5))
    assert "got an input of shape (3, 4, 5)" in str(e.value)
    torch.testing.assert_close(folded[0](input=x2), folded[0](x2))
