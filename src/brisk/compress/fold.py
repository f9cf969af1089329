"""Folding: a smaller, faster model with the same eval-mode outputs.

``fold(model)`` returns a new module (the input is left untouched) where

* a BatchNorm right after a Conv1d/2d/3d (matching BatchNorm1d/2d/3d) or after a Linear
  (BatchNorm1d over ``(N, features)``) is folded into that layer's weight and bias
  (``torch.nn.utils.fusion.fuse_conv_bn_eval`` / ``fuse_linear_bn_eval``);
* two directly consecutive Linear layers (nothing in between once Dropout/Identity are gone)
  become one, ``W = W2 W1``, ``b = W2 b1 + b2`` (computed in float64), when that does not
  cost more multiply-adds than the pair (a 1000-10-1000 bottleneck is left alone);
* Dropout (all kinds, and ``F.dropout(..., training=False)``) and Identity are removed.

It works on ``brisk.Sequential`` (converted to torch modules by ``to_torch``), on
``nn.Sequential`` (recursively; other containers inside are folded through
torch.fx when traceable) and on any module torch.fx can trace symbolically (a BatchNorm is
folded when its only input is a Conv/Linear call whose only user is that BatchNorm, and
each module is called once). Folding needs eval mode (BatchNorm uses its running
statistics there) and plain weights (call ``make_permanent`` on a pruned model first).

Example::

    import torch.nn as nn
    from brisk.compress import fold
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
    small = fold(model)          # Sequential(Conv2d, ReLU), same outputs in eval mode
"""

from __future__ import annotations

import copy
import functools
from collections import Counter, OrderedDict

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from brisk.compress.prune import is_pruned

__all__ = ["ChannelsFirst", "fold", "to_torch"]

_DROPOUT = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
_REMOVABLE = (*_DROPOUT, nn.Identity)
_F_DROPOUT = (
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.dropout3d,
    F.alpha_dropout,
    F.feature_alpha_dropout,
)
_BN_OF = {
    nn.Conv1d: nn.BatchNorm1d,
    nn.Conv2d: nn.BatchNorm2d,
    nn.Conv3d: nn.BatchNorm3d,
    nn.Linear: nn.BatchNorm1d,
}


def _bn_fusable(layer: nn.Module, bn: nn.Module) -> bool:
    kind = next((k for k in _BN_OF if type(layer) is k), None)
    if kind is None or not isinstance(bn, _BatchNorm) or not isinstance(bn, _BN_OF[kind]):
        return False
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return False  # batch statistics even in eval: nothing constant to fold
    out = layer.out_features if kind is nn.Linear else layer.out_channels
    return bn.num_features == out


def _fuse_bn(layer: nn.Module, bn: nn.Module) -> nn.Module:
    if isinstance(layer, nn.Linear):
        return _guard_2d(fuse_linear_bn_eval(layer, bn))
    return fuse_conv_bn_eval(layer, bn)


def _check_2d(module: nn.Module, args: tuple, kwargs: dict) -> None:
    x = args[0] if args else kwargs.get("input")  # Linear.forward(input), by keyword too
    if torch.is_tensor(x) and x.dim() != 2:
        raise ValueError(
            "fold: this Linear carries the BatchNorm1d that followed it, which is exact only "
            f"for (N, features) inputs; got an input of shape {tuple(x.shape)}, where the "
            "BatchNorm1d normalised axis 1 instead: fold the original model without it"
        )


def _guard_2d(linear: nn.Linear) -> nn.Linear:
    """A Linear folded with BatchNorm1d scales its output features (the last axis), which
    equals BatchNorm1d (axis 1) only for 2-D inputs; fold cannot see the input's shape, so
    the folded Linear refuses any other rank at run time instead of computing silently
    something else."""
    linear._brisk_2d_only = True
    linear.register_forward_pre_hook(_check_2d, with_kwargs=True)
    return linear


def _merge_ok(a: nn.Module, b: nn.Module) -> bool:
    if type(a) is not nn.Linear or type(b) is not nn.Linear or a.out_features != b.in_features:
        return False
    # Multiply-adds per sample: merged in*out vs in*mid + mid*out for the pair.
    return (
        a.in_features * b.out_features
        <= a.in_features * a.out_features + a.out_features * b.out_features
    )


@torch.no_grad()
def _merge_linear(a: nn.Linear, b: nn.Linear) -> nn.Linear:
    """The Linear computing ``b(a(x))``."""
    w2 = b.weight.double()
    bias = None
    if a.bias is not None:
        bias = w2 @ a.bias.double()
    if b.bias is not None:
        bias = b.bias.double() if bias is None else bias + b.bias.double()
    out = nn.Linear(
        a.in_features,
        b.out_features,
        bias=bias is not None,
        device=b.weight.device,
        dtype=b.weight.dtype,
    )
    out.weight.copy_(w2 @ a.weight.double())
    if bias is not None:
        out.bias.copy_(bias)
    if getattr(a, "_brisk_2d_only", False) or getattr(b, "_brisk_2d_only", False):
        _guard_2d(out)
    return out.eval()


# ------------------------------------------------------------- Sequential
def _fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    out: list[tuple[str, nn.Module]] = []
    for name, m in seq.named_children():
        if isinstance(m, _REMOVABLE):
            continue
        if isinstance(m, nn.Sequential):
            m = _fold_sequential(m)
            if len(m) == 0:
                continue
        elif len(list(m.children())):
            try:  # a custom block inside the Sequential: fold it when fx can trace it
                m = _fold_graph(m)
            except TypeError:
                pass
        if out and _bn_fusable(out[-1][1], m):
            out[-1] = (out[-1][0], _fuse_bn(out[-1][1], m))
        elif out and _merge_ok(out[-1][1], m):
            out[-1] = (out[-1][0], _merge_linear(out[-1][1], m))
        else:
            out.append((name, m))
    return nn.Sequential(OrderedDict(out))


# ---------------------------------------------------------------- torch.fx
def _set_module(root: nn.Module, target: str, new: nn.Module) -> None:
    *path, last = target.split(".")
    parent = root
    for p in path:
        parent = getattr(parent, p)
    setattr(parent, last, new)


def _single_input(node: fx.Node) -> fx.Node | None:
    if len(node.args) == 1 and not node.kwargs and isinstance(node.args[0], fx.Node):
        return node.args[0]
    return None


def _fold_graph(model: nn.Module) -> fx.GraphModule:
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # fx raises many types (TraceError, TypeError, ...)
        raise TypeError(
            f"fold: {type(model).__name__} is not traceable by torch.fx ({type(e).__name__}: {e}); "
            "fold supports nn.Sequential and fx-traceable modules -- build the model as an "
            "nn.Sequential (data-dependent control flow cannot be traced)"
        ) from e
    graph = gm.graph
    modules = dict(gm.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")

    for node in list(graph.nodes):
        if node.op == "call_module" and isinstance(modules[node.target], _REMOVABLE):
            src = _single_input(node)
            if src is not None:
                node.replace_all_uses_with(src)
                graph.erase_node(node)
        elif node.op == "call_function" and node.target in _F_DROPOUT:
            training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
            if training is False and isinstance(node.args[0], fx.Node):
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)

    def once(n: fx.Node) -> bool:
        return n.op == "call_module" and calls[n.target] == 1 and len(n.users) == 1

    changed = True
    while changed:  # merging can enable more merges (Linear-BN-Linear-Linear)
        changed = False
        for node in list(graph.nodes):
            if node.op != "call_module" or calls[node.target] != 1:
                continue
            prev = _single_input(node)
            if prev is None or not once(prev):
                continue
            a, b = modules[prev.target], modules[node.target]
            if _bn_fusable(a, b):
                fused = _fuse_bn(a, b)
                _set_module(gm, prev.target, fused)
                modules[prev.target] = fused
                node.replace_all_uses_with(prev)
                graph.erase_node(node)
                changed = True
            elif _merge_ok(a, b):
                merged = _merge_linear(a, b)
                _set_module(gm, node.target, merged)
                modules[node.target] = merged
                node.args = prev.args
                graph.erase_node(prev)
                changed = True
    graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm.eval()


# ------------------------------------------------------ brisk.Sequential
class ChannelsFirst(nn.Module):
    """``(N, H, W, C) -> (N, C, H, W)``: the input permute of a channels-last
    ``brisk.Sequential`` (a view; NHWC memory is channels_last NCHW)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


def _activation_module(name: str, out_rank: int) -> nn.Module | None:
    """The torch module computing brisk activation ``name`` on per-sample rank ``out_rank``."""
    if name == "linear":
        return None
    if name == "softmax":  # brisk: over channels (dim 1) for images, else the last axis
        return nn.Softmax(dim=1 if out_rank == 3 else -1)
    table = {
        "relu": nn.ReLU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "swish": nn.SiLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "elu": nn.ELU,
        "leaky_relu": functools.partial(nn.LeakyReLU, 0.2),  # Keras's slope, as brisk's
    }
    if name not in table:
        raise ValueError(f"to_torch: activation {name!r} has no torch module equivalent")
    return table[name]()


class ChannelsLast(nn.Module):
    """(N, C, H, W) -> (N, H, W, C), as brisk's Flatten reads an image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


def to_torch(model: nn.Module) -> nn.Sequential:
    """A plain ``torch.nn.Sequential`` computing the same function as a built
    ``brisk.Sequential`` (same input layout, same outputs, softmax included): each Keras
    layer becomes its torch modules (``Dense`` -> ``Linear`` + activation, ``Conv2D`` ->
    padding + ``Conv2d`` + activation, ...), with a leading ``ChannelsFirst`` when the model
    takes ``(N, H, W, C)`` images. The parameters are copies (pruning masks and all), so
    the result can be folded, quantized and traced by torch.fx without brisk's lazy
    building. Any other ``nn.Module`` is returned unchanged.

    Example::

        import brisk
        from brisk.layers import Dense, Flatten
        model = brisk.Sequential([Flatten(input_shape=(28, 28)),
                                  Dense(300, activation="relu"), Dense(10, activation="softmax")])
        model.build((28, 28))
        plain = to_torch(model)   # Sequential(Flatten, Linear, ReLU, Linear, Softmax(dim=-1))
    """
    from brisk.api import layers as L
    from brisk.api.sequential import Sequential

    if not isinstance(model, Sequential):
        return model
    if not model.built:
        raise ValueError(
            "to_torch: the brisk.Sequential is not built yet; train it or call build(input_shape)"
        )
    from brisk.compress.prune import copy_model

    src = copy_model(model)
    mods: list[nn.Module] = [ChannelsFirst()] if src.data_format == "channels_last" else []

    def flat(m: Sequential):  # a nested Sequential's layers in place: one layout inside
        for layer, (_, out_shape) in zip(m.layers, m._shapes, strict=True):
            yield from flat(layer) if isinstance(layer, Sequential) else [(layer, out_shape)]

    for layer, out_shape in flat(src):
        rank = len(out_shape)
        if isinstance(layer, L.Input):
            continue
        if isinstance(layer, L.Dense):
            mods.append(layer.linear)
            act = _activation_module(layer.activation, rank)
        elif isinstance(layer, L.Conv2D):
            if layer._pad is not None:
                mods.append(nn.ZeroPad2d(layer._pad))
            mods.append(layer.conv)
            act = _activation_module(layer.activation, rank)
        elif isinstance(layer, L.Activation):
            act = _activation_module(layer.activation, rank)
        elif isinstance(layer, L.MaxPooling2D):
            if layer._pad is not None:  # Keras 'same' pads with -inf
                mods.append(nn.ConstantPad2d(layer._pad, float("-inf")))
            mods.append(nn.MaxPool2d(layer.pool_size, layer.strides))
            act = None
        elif isinstance(layer, L.AveragePooling2D) and layer._pad is None:
            mods.append(nn.AvgPool2d(layer.pool_size, layer.strides))
            act = None
        elif isinstance(layer, L.GlobalAveragePooling2D):
            mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            act = None
        elif isinstance(layer, L.Flatten):
            if layer._to_hwc:  # Keras's (H, W, C) order for an image
                mods.append(ChannelsLast())
            mods.append(nn.Flatten())
            act = None
        elif isinstance(layer, L.Dropout):
            mods.append(nn.Dropout(layer.rate))
            act = None
        elif isinstance(layer, L.BatchNormalization):
            mods.append(layer.bn)
            act = None
        else:  # any other module (AveragePooling2D 'same' included) is kept as it is
            mods.append(layer)
            act = None
        if act is not None:
            mods.append(act)
    out = nn.Sequential(*mods)
    out.train(model.training)
    return out


# ------------------------------------------------------------------ public
def fold(model: nn.Module) -> nn.Module:
    """Return a folded copy of ``model`` (BatchNorm into Conv/Linear, Linear-Linear merged,
    Dropout/Identity removed); outputs equal the original's in eval mode (float32 rounding
    aside, ~1e-6 relative). ``nn.Sequential`` in, ``nn.Sequential`` out; a
    ``brisk.Sequential`` comes back as the folded ``nn.Sequential`` of its torch modules
    (``to_torch``), taking the same input; any other module comes back as a
    ``torch.fx.GraphModule``.

    Raises ValueError in training mode or with pruning masks / weight sharing still attached,
    TypeError when the module is neither an ``nn.Sequential`` nor fx-traceable.

    Example::

        model = nn.Sequential(nn.Linear(784, 300), nn.BatchNorm1d(300), nn.ReLU(),
                              nn.Dropout(0.5), nn.Linear(300, 10)).eval()
        small = fold(model)        # Sequential(Linear, ReLU, Linear)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if any(m.training for m in model.modules()):
        raise ValueError(
            "fold: model is in training mode; call model.eval() first (BatchNorm is folded "
            "with its running statistics, which only eval mode uses)"
        )
    if is_pruned(model):
        raise ValueError(
            "fold: model carries pruning masks (weight_orig * weight_mask); call "
            "brisk.compress.make_permanent(model) first"
        )
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise ValueError(
            "fold: model has parametrized weights (e.g. share_weights); call "
            "brisk.compress.make_permanent(model) first"
        )
    from brisk.api.sequential import Sequential

    if isinstance(model, Sequential):  # Keras layers -> torch modules (a copy), then fold
        return _fold_sequential(to_torch(model)).eval()
    model = copy.deepcopy(model)
    if isinstance(model, nn.Sequential):
        return _fold_sequential(model).eval()
    return _fold_graph(model)
