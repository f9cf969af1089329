"""Keras-style layers as ``torch.nn.Module`` objects.

Shapes: users give and see Keras shapes (``(height, width, channels)`` for images).
Inside the model tensors use PyTorch's NCHW layout; ``Sequential`` permutes an NHWC
batch once at its input (a free view, which is exactly channels_last memory format), so
the classic Keras code runs unchanged while convolutions use PyTorch's native kernels.
Sequences are Keras's (steps, features) per sample and are never permuted: Conv1D and
MaxPooling1D transpose to torch's (N, C, L) around their kernels, LSTM and GRU run torch's
fused kernels batch-first, Dense applies to the last axis.

Each layer is built lazily by ``build(shape)`` from the per-sample input shape in
PyTorch layout (``(C, H, W)`` for images) and returns its output shape. ``flops(shape)``
counts floating-point operations per sample (a multiply-add is 2 FLOPs).

A layer called on its own (``Dense(4)(torch.randn(2, 3))``, or inside any torch module)
builds itself from its first input, as a Keras layer does. It takes the layout it
computes in: vectors and sequences as in Keras ((N, features), (N, steps, features),
integer ids for Embedding), but image batches as (N, C, H, W), PyTorch's layout -- only
``Sequential`` turns Keras's (N, H, W, C) into it. Its weights are float32 on the input's
device. A layer built this way keeps its weights when added to a ``Sequential`` that
gives it the same per-sample shape.

Unnamed layers are named as in Keras: the snake_case class name with a per-session
counter ('dense', 'dense_1', 'conv2d', ...; ``brisk.utils.clear_session()`` resets it).

Example::

    import brisk
    from brisk.layers import Dense
    model = brisk.Sequential([Dense(64, activation="relu", input_shape=(784,)), Dense(10)])
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brisk.api.activations import activation_name, get_activation
from brisk.engine.freeze import set_trainable
from brisk.utils import auto_name

Shape = tuple[int, ...]


def _is_int(v: Any) -> bool:
    """A Python or NumPy int (np.int64(3) counts, as it does for fit's batch_size) that fits
    torch's int64 sizes, never a bool (True is no size) nor a float holding an integer."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and -(2**63) <= v < 2**63


def _pair(v: Any, name: str) -> tuple[int, int]:
    if _is_int(v):
        v = (v, v)
    if (
        not isinstance(v, (tuple, list))
        or len(v) != 2
        or not all(_is_int(i) and i > 0 for i in v)
    ):
        raise ValueError(f"{name}: expected a positive int or a pair of positive ints, got {v!r}")
    return int(v[0]), int(v[1])


def _positive_int(v: Any, name: str) -> int:
    if not _is_int(v) or v <= 0:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return int(v)


def _bool(v: Any, name: str) -> bool:
    # bool(v) would take "no" or "False" as True
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {v!r}")
    return bool(v)


def _check_padding(padding: str) -> str:
    if padding not in ("valid", "same"):
        raise ValueError(f"padding: expected 'valid' or 'same', got {padding!r}")
    return padding


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow/Keras 'same' padding: output = ceil(size / s); extra pixel at the end."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _initialize(weight: torch.Tensor, name: str, fan_in: int, fan_out: int) -> None:
    with torch.no_grad():
        if name == "glorot_uniform":  # Keras default: U(-a, a), a = sqrt(6 / (fan_in + fan_out))
            a = math.sqrt(6.0 / (fan_in + fan_out))
            weight.uniform_(-a, a)
        elif name == "glorot_normal":
            weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)))
        elif name == "he_uniform":
            a = math.sqrt(6.0 / fan_in)
            weight.uniform_(-a, a)
        elif name == "he_normal":
            weight.normal_(0.0, math.sqrt(2.0 / fan_in))
        elif name == "zeros":
            weight.zero_()
        else:
            raise ValueError(
                f"kernel_initializer: unknown {name!r}; expected one of "
                "'glorot_uniform', 'glorot_normal', 'he_uniform', 'he_normal', 'zeros'"
            )


def _build_on_first_call(layer: Layer, args: tuple) -> None:
    """Forward pre-hook of an unbuilt layer: build it from the first input's per-sample
    shape (Keras builds a layer on its first call), then the hook removes itself, so a
    built layer pays nothing per call (nor in torch.compile or torch.fx graphs)."""
    if not layer.built:
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise TypeError(
                f"{type(layer).__name__} {layer.name!r}: to build on its first call the layer "
                "needs a torch.Tensor batch with a leading batch axis, got "
                f"{type(x).__name__ if not isinstance(x, torch.Tensor) else tuple(x.shape)}")
        layer._build_for(tuple(x.shape[1:]))
        layer._built_by_call = True
        layer.to(x.device)
    layer._build_hook.remove()


class Layer(nn.Module):
    """Base of brisk layers: lazily built from the input shape (PyTorch layout) by
    ``Sequential``, or by the first call (see the module docstring for the layouts).

    ``name``: a str; unnamed layers get Keras's automatic name (the snake_case class name
    and a per-session counter: 'dense', 'dense_1', ...). Raises ``TypeError`` for a name
    that is not a str, ``ValueError`` for a bad ``input_shape``."""

    #: layers that need PyTorch's NCHW image layout (Sequential permutes NHWC input for them)
    spatial = False
    #: the class name the automatic name is made from (Keras: the layer's class name)
    _name_class: str | None = None

    def __init__(self, input_shape: Shape | None = None, name: str | None = None):
        super().__init__()
        if name is None:
            name = auto_name(self._name_class or type(self).__name__)
        elif not isinstance(name, str) or not name:
            raise TypeError(f"name: expected a non-empty str, got {name!r}")
        if input_shape is not None:
            if not isinstance(input_shape, (tuple, list)) or not all(
                isinstance(d, int) and d > 0 for d in input_shape
            ):
                raise ValueError(
                    f"input_shape: expected a tuple of positive ints without the batch axis, "
                    f"got {input_shape!r}"
                )
            input_shape = tuple(input_shape)
        self.input_shape = input_shape
        self.name = name
        self.built = False
        self.output_shape: Shape | None = None
        self._built_for: Shape | None = None  # the per-sample input shape it was built for
        self._trainable = True
        self._build_hook = self.register_forward_pre_hook(_build_on_first_call)

    @property
    def trainable(self) -> bool:
        """Keras's flag: False freezes this layer's weights (and everything below it) in
        ``fit``; a frozen BatchNormalization runs in inference mode. See
        ``brisk.engine.freeze``."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        set_trainable(self, value)
        self._trainable = bool(value)

    def build(self, shape: Shape) -> Shape:
        self.built = True
        self.output_shape = tuple(shape)
        self._build_hook.remove()  # built: no per-call build check any more
        return self.output_shape

    def _build_for(self, shape: Shape) -> Shape:
        """Build for per-sample ``shape`` (PyTorch layout) unless already built for it: a
        built layer keeps its weights, as in Keras. Raises ``ValueError`` when it was built
        by a call for another shape (its weights would not fit)."""
        shape = tuple(shape)
        if self.built and self._built_for == shape:
            return self.output_shape
        if self.built and getattr(self, "_built_by_call", False):
            raise ValueError(
                f"{type(self).__name__} {self.name!r} was built for per-sample input shape "
                f"{self._built_for} (PyTorch layout) and is now given {shape}")
        out = tuple(self.build(shape))
        self._built_for = shape
        return out

    def flops(self, shape: Shape) -> int:
        return 0

    def get_config(self) -> dict:
        cfg: dict[str, Any] = {"name": self.name}
        if self.input_shape is not None:
            cfg["input_shape"] = list(self.input_shape)
        return cfg

    def extra_repr(self) -> str:
        cfg = {k: v for k, v in self.get_config().items() if v is not None and k != "name"}
        return ", ".join(f"{k}={v!r}" for k, v in cfg.items())


class Input(Layer):
    """Declares the per-sample input shape (Keras layout, no batch axis)."""

    _name_class = "InputLayer"  # Keras: keras.Input makes an InputLayer, 'input_layer'

    def __init__(self, shape: Shape, name: str | None = None):
        if shape is None or not isinstance(shape, (tuple, list)):
            raise ValueError(
                f"shape: Input needs a tuple such as (784,) or (28, 28, 1), got {shape!r}")
        super().__init__(input_shape=tuple(shape), name=name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def get_config(self) -> dict:
        return {"shape": list(self.input_shape), "name": self.name}


class Dense(Layer):
    """Fully connected layer on the last axis: ``activation(x @ W + b)``. Per-sample
    inputs are vectors (features,) or sequences (steps, features) -> (steps, units), as
    Keras; images raise ``ValueError`` (flatten or pool them first)."""

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        input_shape: Shape | None = None,
        kernel_initializer: str = "glorot_uniform",
        name: str | None = None,
    ):
        super().__init__(input_shape, name)
        self.units = _positive_int(units, "units")
        self.activation = activation_name(activation)
        self._act = get_activation(activation)
        self.use_bias = _bool(use_bias, "use_bias")
        self.kernel_initializer = kernel_initializer
        _initialize(torch.empty(1, 1), kernel_initializer, 1, 1)  # validate the name early
        self.linear: nn.Linear | None = None

    def build(self, shape: Shape) -> Shape:
        if len(shape) not in (1, 2):
            raise ValueError(
                f"Dense expects flat per-sample inputs (features,) or sequences (steps, "
                f"features), got shape {shape}; add Flatten() or GlobalAveragePooling2D() "
                "before it"
            )
        self.linear = nn.Linear(shape[-1], self.units, bias=self.use_bias)
        _initialize(self.linear.weight, self.kernel_initializer, shape[-1], self.units)
        if self.use_bias:
            nn.init.zeros_(self.linear.bias)
        return super().build((*shape[:-1], self.units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._act(self.linear(x))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def flops(self, shape: Shape) -> int:
        steps = shape[0] if len(shape) == 2 else 1
        return steps * (2 * shape[-1] * self.units + (self.units if self.use_bias else 0))

    def get_config(self) -> dict:
        return {
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            **super().get_config(),
        }


class Conv2D(Layer):
    """2-D convolution over images; Keras arguments, PyTorch kernels underneath."""

    spatial = True

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: str = "valid",
        activation: str | None = None,
        use_bias: bool = True,
        input_shape: Shape | None = None,
        kernel_initializer: str = "glorot_uniform",
        name: str | None = None,
    ):
        super().__init__(input_shape, name)
        self.filters = _positive_int(filters, "filters")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = _check_padding(padding)
        self.activation = activation_name(activation)
        self._act = get_activation(activation)
        self.use_bias = _bool(use_bias, "use_bias")
        self.kernel_initializer = kernel_initializer
        self.conv: nn.Conv2d | None = None
        self._pad: tuple[int, int, int, int] | None = None  # asymmetric 'same' only

    def build(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(
                f"Conv2D expects image inputs of shape (height, width, channels), got a "
                f"per-sample shape of rank {len(shape)}; add a channel axis, e.g. x[..., None]"
            )
        c, h, w = shape
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        pad, oh, ow = self._geometry(h, w)
        self.conv = nn.Conv2d(c, self.filters, (kh, kw), (sh, sw), pad, bias=self.use_bias)
        _initialize(self.conv.weight, self.kernel_initializer, c * kh * kw, self.filters * kh * kw)
        if self.use_bias:
            nn.init.zeros_(self.conv.bias)
        return super().build((self.filters, oh, ow))

    def _geometry(self, h: int, w: int) -> tuple[Any, int, int]:
        """(symmetric padding for torch, output height, width); Keras's asymmetric 'same'
        padding goes to ``self._pad`` (applied before the convolution)."""
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        if self.padding == "same":
            (t, b), (left, right) = _same_pads(h, kh, sh), _same_pads(w, kw, sw)
            pad: Any = 0
            if t == b and left == right:
                pad = (t, left)
            else:
                self._pad = (left, right, t, b)
            return pad, -(-h // sh), -(-w // sw)
        if h < kh or w < kw:
            raise ValueError(
                f"{type(self).__name__} kernel_size {self.kernel_size} is larger than its "
                f"input {h}x{w}"
            )
        return 0, (h - kh) // sh + 1, (w - kw) // sw + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._act(self.forward_logits(x))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self._pad is not None:
            x = F.pad(x, self._pad)
        return self.conv(x)

    def flops(self, shape: Shape) -> int:
        c = shape[0]
        f, oh, ow = self.output_shape
        kh, kw = self.kernel_size
        return (2 * c * kh * kw + (1 if self.use_bias else 0)) * f * oh * ow

    def get_config(self) -> dict:
        return {
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            **super().get_config(),
        }


class DepthwiseConv2D(Conv2D):
    """One ``kernel_size`` filter per input channel, ``depth_multiplier`` of them (Keras
    ``DepthwiseConv2D``): torch's grouped convolution, groups = channels. The Keras kernel
    is (kh, kw, channels, depth_multiplier)."""

    def __init__(self, kernel_size: int | tuple[int, int], strides: int | tuple[int, int] = 1,
                 padding: str = "valid", depth_multiplier: int = 1,
                 activation: str | None = None, use_bias: bool = True,
                 input_shape: Shape | None = None, name: str | None = None):
        super().__init__(1, kernel_size, strides, padding, activation, use_bias, input_shape,
                         name=name)
        self.depth_multiplier = _positive_int(depth_multiplier, "depth_multiplier")

    def build(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(f"DepthwiseConv2D expects images, got rank {len(shape)}")
        c, h, w = shape
        pad, oh, ow = self._geometry(h, w)
        out = c * self.depth_multiplier
        self.conv = nn.Conv2d(c, out, self.kernel_size, self.strides, pad, groups=c,
                              bias=self.use_bias)
        kh, kw = self.kernel_size
        _initialize(self.conv.weight, "glorot_uniform", kh * kw, self.depth_multiplier * kh * kw)
        if self.use_bias:
            nn.init.zeros_(self.conv.bias)
        self.filters = out
        return Layer.build(self, (out, oh, ow))

    def flops(self, shape: Shape) -> int:
        f, oh, ow = self.output_shape
        kh, kw = self.kernel_size
        return (2 * kh * kw + (1 if self.use_bias else 0)) * f * oh * ow

    def get_config(self) -> dict:
        cfg = super().get_config()
        for k in ("filters", "kernel_initializer"):
            cfg.pop(k)
        return {**cfg, "depth_multiplier": self.depth_multiplier}


class SeparableConv2D(Conv2D):
    """A depthwise convolution (no bias) then a 1x1 convolution to ``filters`` (Keras
    ``SeparableConv2D``); Keras kernels (kh, kw, channels, depth_multiplier) and
    (1, 1, channels * depth_multiplier, filters)."""

    def __init__(self, filters: int, kernel_size: int | tuple[int, int],
                 strides: int | tuple[int, int] = 1, padding: str = "valid",
                 depth_multiplier: int = 1, activation: str | None = None,
                 use_bias: bool = True, input_shape: Shape | None = None,
                 name: str | None = None):
        super().__init__(filters, kernel_size, strides, padding, activation, use_bias,
                         input_shape, name=name)
        self.depth_multiplier = _positive_int(depth_multiplier, "depth_multiplier")
        self.depthwise: nn.Conv2d | None = None

    def build(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(f"SeparableConv2D expects images, got rank {len(shape)}")
        c, h, w = shape
        pad, oh, ow = self._geometry(h, w)
        mid = c * self.depth_multiplier
        kh, kw = self.kernel_size
        self.depthwise = nn.Conv2d(c, mid, self.kernel_size, self.strides, pad, groups=c, bias=False)
        self.conv = nn.Conv2d(mid, self.filters, 1, bias=self.use_bias)
        _initialize(self.depthwise.weight, "glorot_uniform", kh * kw, self.depth_multiplier * kh * kw)
        _initialize(self.conv.weight, "glorot_uniform", mid, self.filters)
        if self.use_bias:
            nn.init.zeros_(self.conv.bias)
        return Layer.build(self, (self.filters, oh, ow))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self._pad is not None:
            x = F.pad(x, self._pad)
        return self.conv(self.depthwise(x))

    def flops(self, shape: Shape) -> int:
        f, oh, ow = self.output_shape
        kh, kw = self.kernel_size
        mid = shape[0] * self.depth_multiplier
        return (2 * kh * kw * mid + 2 * mid * f + (1 if self.use_bias else 0) * f) * oh * ow

    def get_config(self) -> dict:
        cfg = super().get_config()
        cfg.pop("kernel_initializer")
        return {**cfg, "depth_multiplier": self.depth_multiplier}


class _Pooling2D(Layer):
    spatial = True
    _kind = "max"

    def __init__(
        self,
        pool_size: int | tuple[int, int] = (2, 2),
        strides: int | tuple[int, int] | None = None,
        padding: str = "valid",
        input_shape: Shape | None = None,
        name: str | None = None,
    ):
        super().__init__(input_shape, name)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = _pair(strides, "strides") if strides is not None else self.pool_size
        self.padding = _check_padding(padding)
        self._pad: tuple[int, int, int, int] | None = None

    def build(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects image inputs (height, width, channels), "
                f"got a per-sample shape of rank {len(shape)}"
            )
        c, h, w = shape
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        if self.padding == "same":
            (t, b), (left, right) = _same_pads(h, kh, sh), _same_pads(w, kw, sw)
            if t or b or left or right:
                self._pad = (left, right, t, b)
            oh, ow = -(-h // sh), -(-w // sw)
        else:
            if h < kh or w < kw:
                raise ValueError(f"{type(self).__name__} pool_size {self.pool_size} > input {h}x{w}")
            oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        return super().build((c, oh, ow))

    def flops(self, shape: Shape) -> int:
        c, oh, ow = self.output_shape
        return c * oh * ow * self.pool_size[0] * self.pool_size[1]

    def get_config(self) -> dict:
        return {
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": self.padding,
            **super().get_config(),
        }


class MaxPooling2D(_Pooling2D):
    """Max over ``pool_size`` windows (Keras 'same' pads with -inf, so padding never wins)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._pad is not None:
            x = F.pad(x, self._pad, value=float("-inf"))
        return F.max_pool2d(x, self.pool_size, self.strides)


class AveragePooling2D(_Pooling2D):
    """Mean over ``pool_size`` windows; with 'same', padded pixels are not counted (Keras)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._pad is None:
            return F.avg_pool2d(x, self.pool_size, self.strides)
        summed = F.avg_pool2d(F.pad(x, self._pad), self.pool_size, self.strides)
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        counted = F.avg_pool2d(F.pad(ones, self._pad), self.pool_size, self.strides)
        return summed / counted


class GlobalAveragePooling2D(Layer):
    """Mean over height and width: (H, W, C) -> (C,)."""

    spatial = True

    def build(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(f"GlobalAveragePooling2D expects images, got rank {len(shape)}")
        return super().build((shape[0],))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def flops(self, shape: Shape) -> int:
        return math.prod(shape)


class GlobalMaxPooling2D(Layer):
    """Max over height and width: (H, W, C) -> (C,) (Keras ``GlobalMaxPooling2D``)."""

    spatial = True

    def build(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(f"GlobalMaxPooling2D expects images, got rank {len(shape)}")
        return super().build((shape[0],))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))

    def flops(self, shape: Shape) -> int:
        return math.prod(shape)


class ZeroPadding2D(Layer):
    """Zeros around images (Keras ``ZeroPadding2D``): ``padding`` is an int, a pair
    (rows, columns) added on both sides, or ((top, bottom), (left, right))."""

    spatial = True

    def __init__(self, padding: Any = (1, 1), input_shape: Shape | None = None,
                 name: str | None = None):
        super().__init__(input_shape, name)
        p = padding
        if isinstance(p, int) and not isinstance(p, bool):
            p = ((p, p), (p, p))
        elif isinstance(p, (tuple, list)) and len(p) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in p):
            p = ((p[0], p[0]), (p[1], p[1]))
        if not (isinstance(p, (tuple, list)) and len(p) == 2 and all(
                isinstance(q, (tuple, list)) and len(q) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in q)
                for q in p)):
            raise ValueError("padding: expected an int >= 0, a pair, or ((top, bottom), "
                             f"(left, right)), got {padding!r}")
        self.padding = (tuple(p[0]), tuple(p[1]))

    def build(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(f"ZeroPadding2D expects images, got rank {len(shape)}")
        (t, b), (left, r) = self.padding
        return super().build((shape[0], shape[1] + t + b, shape[2] + left + r))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (t, b), (left, r) = self.padding
        return F.pad(x, (left, r, t, b))

    def get_config(self) -> dict:
        return {"padding": [list(q) for q in self.padding], **super().get_config()}


class LayerNormalization(Layer):
    """Normalise each sample over its last Keras axis (the channels of an image), then
    scale and shift (Keras ``LayerNormalization``, ``axis=-1``, ``epsilon=1e-3``)."""

    spatial = True  # images are NCHW inside: the Keras channel axis is axis 1

    def __init__(self, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 input_shape: Shape | None = None, name: str | None = None):
        super().__init__(input_shape, name)
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not epsilon > 0:
            raise ValueError(f"epsilon: expected a positive float, got {epsilon!r}")
        self.epsilon, self.center, self.scale = float(epsilon), bool(center), bool(scale)
        self.gamma: nn.Parameter | None = None
        self.beta: nn.Parameter | None = None

    def build(self, shape: Shape) -> Shape:
        # images arrive as (C, H, W): the Keras last axis is axis 1 of the batch here
        self._channel_dim = 1 if len(shape) == 3 else -1
        c = shape[0] if len(shape) == 3 else shape[-1]
        self.gamma = nn.Parameter(torch.ones(c)) if self.scale else None
        self.beta = nn.Parameter(torch.zeros(c)) if self.center else None
        return super().build(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._channel_dim == 1:
            x = x.movedim(1, -1)
        y = F.layer_norm(x, x.shape[-1:], self.gamma, self.beta, self.epsilon)
        return y.movedim(-1, 1) if self._channel_dim == 1 else y

    def flops(self, shape: Shape) -> int:
        return 5 * math.prod(shape)

    def get_config(self) -> dict:
        return {"epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                **super().get_config()}


class Normalization(Layer):
    """``(x - mean) / max(sqrt(variance), 1e-7)`` per feature (Keras ``Normalization``):
    ``axis=-1`` normalises each channel (the last Keras axis), ``axis=None`` with one mean
    and variance. Give ``mean``/``variance``, or call ``adapt(data)`` on training data
    (Keras layout, (N, ..., channels); the population variance, as Keras). The statistics
    are non-trainable weights, saved with the model. ``invert=True`` undoes it.

    Without statistics (no ``mean``/``variance``, no ``adapt``) it is the identity (mean 0,
    variance 1). Raises ``ValueError`` for an axis other than -1 or None, for only one of
    ``mean``/``variance``, or for statistics of the wrong length."""

    #: per-channel statistics: image inputs are laid out NCHW (channel axis 1) inside
    spatial = True

    def __init__(self, axis: int | None = -1, mean: Any = None, variance: Any = None,
                 invert: bool = False, input_shape: Shape | None = None, name: str | None = None):
        super().__init__(input_shape, name)
        if axis not in (-1, None):
            raise ValueError(f"axis: brisk supports -1 (the channels) or None, got {axis!r}")
        if (mean is None) != (variance is None):
            raise ValueError("mean and variance: give both or neither")
        self.axis, self.invert = axis, bool(invert)
        self._given = None if mean is None else (
            torch.as_tensor(mean, dtype=torch.float32).reshape(-1),
            torch.as_tensor(variance, dtype=torch.float32).reshape(-1))

    def adapt(self, data: Any) -> None:
        """Mean and (population) variance of ``data`` per channel, or overall."""
        x = torch.as_tensor(np.asarray(data) if not torch.is_tensor(data) else data,
                            dtype=torch.float64)
        if x.dim() < 1 or x.shape[0] == 0:
            raise ValueError(f"data: expected samples on axis 0, got shape {tuple(x.shape)}")
        flat = x.reshape(-1) if self.axis is None else x.reshape(-1, x.shape[-1])
        mean, var = flat.mean(0), flat.var(0, unbiased=False)
        self._given = (mean.float().reshape(-1), var.float().reshape(-1))
        if self.built:
            self._load(int(flat.shape[0]))
        else:
            self._count = int(flat.shape[0])

    def build(self, shape: Shape) -> Shape:
        self._channel_first = len(shape) == 3  # images arrive as (C, H, W)
        c = 1 if self.axis is None else (shape[0] if self._channel_first else shape[-1])
        self.register_buffer("mean", torch.zeros(c))
        self.register_buffer("variance", torch.ones(c))
        self.register_buffer("count", torch.zeros(()))
        out = super().build(shape)
        if self._given is not None:
            self._load(getattr(self, "_count", 0))
        return out

    def _load(self, count: int) -> None:
        mean, var = self._given
        if mean.numel() not in (1, self.mean.numel()):
            raise ValueError(f"mean: {mean.numel()} values for {self.mean.numel()} channels")
        with torch.no_grad():
            self.mean.copy_(mean.expand_as(self.mean))
            self.variance.copy_(var.expand_as(self.variance))
            self.count.fill_(count)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean, self.variance.sqrt().clamp_min(1e-7)
        if self.axis is not None and self._channel_first and x.dim() == 4:
            mean, std = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
        if self.invert:
            return x * std + mean
        return (x - mean) / std

    def flops(self, shape: Shape) -> int:
        return 2 * math.prod(shape)

    def get_config(self) -> dict:
        return {"axis": self.axis, "invert": self.invert, **super().get_config()}


class RandomFlip(Layer):
    """Mirror each image left-right and/or up-down with probability 1/2, in training only
    (Keras ``RandomFlip``; identity in ``evaluate``/``predict``). Batched on the device
    (``brisk.augment.flip_lr`` underneath); ``seed`` makes the flips reproducible.

    Raises ``ValueError`` for a mode other than 'horizontal', 'vertical' or
    'horizontal_and_vertical'."""

    spatial = True
    MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode: str = "horizontal_and_vertical", seed: int | None = None,
                 input_shape: Shape | None = None, name: str | None = None):
        super().__init__(input_shape, name)
        if mode not in self.MODES:
            raise ValueError(f"mode: expected one of {', '.join(self.MODES)}, got {mode!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed: expected an int or None, got {seed!r}")
        self.mode, self.seed = mode, seed
        self._gen: torch.Generator | None = None

    def build(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(f"RandomFlip expects images, got rank {len(shape)}")
        return super().build(shape)

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        from brisk.data.augment import flip_lr

        g = self._generator(x.device)
        if self.mode != "vertical":
            x = flip_lr(x, 0.5, g)
        if self.mode != "horizontal":
            flip = torch.rand(x.shape[0], generator=g, device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(2), x)
        return x

    def get_config(self) -> dict:
        return {"mode": self.mode, "seed": self.seed, **super().get_config()}


class _RandomAffineLayer(Layer):
    """Shared by RandomRotation, RandomTranslation and RandomZoom: Keras's fill_mode,
    interpolation, seed and fill_value; identity outside training; one seeded generator."""

    spatial = True

    def __init__(self, fill_mode: str, interpolation: str, seed: int | None,
                 fill_value: float, input_shape: Shape | None, name: str | None):
        from brisk.data.augment import _check_modes

        super().__init__(input_shape, name)
        _check_modes(fill_mode, interpolation)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed: expected an int or None, got {seed!r}")
        if (isinstance(fill_value, bool) or not isinstance(fill_value, numbers.Real)
                or not math.isfinite(fill_value)):
            raise ValueError(f"fill_value: expected a finite number, got {fill_value!r}")
        self.fill_mode, self.interpolation = fill_mode, interpolation
        self.seed, self.fill_value = seed, float(fill_value)
        self._gen: torch.Generator | None = None

    def build(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects images (height, width, channels), got a "
                f"per-sample shape of rank {len(shape)}: {shape}")
        return super().build(shape)

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            # identity, as Keras, and no branch on the tensor so torch.fx can trace it.
            # (Keras also casts to float here; fit/evaluate/predict feed floats anyway.)
            return x
        return self._augment(x, self._generator(x.device))

    def _augment(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "seed": self.seed, "fill_value": self.fill_value, **super().get_config()}


def _factor_config(factor: Any) -> Any:
    return [float(v) for v in factor] if isinstance(factor, (tuple, list)) else float(factor)


class RandomRotation(_RandomAffineLayer):
    """Rotate each image by its own random angle in training only (Keras 3
    ``keras.layers.RandomRotation``, same arguments and defaults; identity in
    ``evaluate``/``predict``). One batched ``grid_sample`` on the device
    (``brisk.augment.random_rotation`` underneath); ``seed`` makes the draws reproducible.

    Args:
        factor: a number ``f`` in [-1, 1], for angles uniform in ``[-f, f]`` x 360 degrees,
            or a ``(lower, upper)`` pair; positive angles turn counter-clockwise.
        fill_mode: points outside the image: 'reflect' (Keras's default,
            ``d c b a | a b c d``), 'wrap', 'constant' (``fill_value``) or 'nearest'.
        interpolation: 'bilinear' (default) or 'nearest'.
        seed: an int for reproducible draws, or None (the global torch RNG).
        fill_value: the constant for ``fill_mode='constant'`` (default 0.0).

    Input and output: NHWC images given to a ``Sequential`` (NCHW inside it), any dtype;
    in training the output is float (integer input becomes float32, as Keras), in
    inference the input itself. Raises ``ValueError``
    naming the argument for a factor outside [-1, 1], an unknown ``fill_mode`` or
    ``interpolation``, a non-int seed or a non-finite ``fill_value``, and in ``build`` for
    inputs that are not images.

    Example::

        >>> import brisk
        >>> m = brisk.Sequential([brisk.layers.Input((28, 28, 1)),
        ...                       brisk.layers.RandomRotation(0.1, seed=0)])
        >>> m.count_params()
        0
    """

    def __init__(self, factor: float | tuple[float, float], fill_mode: str = "reflect",
                 interpolation: str = "bilinear", seed: int | None = None,
                 fill_value: float = 0.0, input_shape: Shape | None = None,
                 name: str | None = None):
        from brisk.data.augment import factor_range

        super().__init__(fill_mode, interpolation, seed, fill_value, input_shape, name)
        self.lower, self.upper = factor_range(factor, "factor")
        self.factor = _factor_config(factor)

    def _augment(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        from brisk.data.augment import random_rotation

        return random_rotation(x, (self.lower, self.upper), g, self.fill_mode,
                               self.interpolation, self.fill_value)

    def get_config(self) -> dict:
        return {"factor": self.factor, **super().get_config()}


class RandomTranslation(_RandomAffineLayer):
    """Shift each image by its own random amount in training only (Keras 3
    ``keras.layers.RandomTranslation``, same arguments and defaults; identity in
    ``evaluate``/``predict``). One batched ``grid_sample`` on the device
    (``brisk.augment.random_translation``); shifts are sub-pixel (bilinear by default).

    Args:
        height_factor: a number ``f`` in [-1, 1], for shifts uniform in ``[-f, f]`` x height
            pixels, or a ``(lower, upper)`` pair; positive shifts move the image down.
        width_factor: the same in fractions of the width; positive moves right.
        fill_mode, interpolation, seed, fill_value: as ``RandomRotation`` (Keras defaults
            'reflect', 'bilinear', None, 0.0).

    Input and output: NHWC images given to a ``Sequential`` (NCHW inside it); float
    output. Raises ``ValueError`` naming the argument as ``RandomRotation`` does.

    Example::

        >>> import brisk
        >>> brisk.layers.RandomTranslation(0.1, 0.1, fill_mode="constant")
        RandomTranslation(height_factor=0.1, width_factor=0.1, fill_mode='constant', interpolation='bilinear', fill_value=0.0)
    """  # noqa: E501

    def __init__(self, height_factor: float | tuple[float, float],
                 width_factor: float | tuple[float, float], fill_mode: str = "reflect",
                 interpolation: str = "bilinear", seed: int | None = None,
                 fill_value: float = 0.0, input_shape: Shape | None = None,
                 name: str | None = None):
        from brisk.data.augment import factor_range

        super().__init__(fill_mode, interpolation, seed, fill_value, input_shape, name)
        self._height = factor_range(height_factor, "height_factor")
        self._width = factor_range(width_factor, "width_factor")
        self.height_factor = _factor_config(height_factor)
        self.width_factor = _factor_config(width_factor)

    def _augment(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        from brisk.data.augment import random_translation

        return random_translation(x, self._height, self._width, g, self.fill_mode,
                                  self.interpolation, self.fill_value)

    def get_config(self) -> dict:
        return {"height_factor": self.height_factor, "width_factor": self.width_factor,
                **super().get_config()}


class RandomZoom(_RandomAffineLayer):
    """Zoom each image by its own random amount in training only (Keras 3
    ``keras.layers.RandomZoom``, same arguments and defaults; identity in
    ``evaluate``/``predict``). One batched ``grid_sample`` on the device
    (``brisk.augment.random_zoom``).

    Args:
        height_factor: a number ``f`` in (-1, 1], for a vertical zoom of ``1 + u`` with
            ``u`` uniform in ``[-f, f]``, or a ``(lower, upper)`` pair. As Keras: a positive
            value zooms OUT (the image shrinks, the border is filled), a negative one zooms in.
        width_factor: the same for the horizontal axis; None (default) uses the vertical
            draw for both, keeping the aspect ratio.
        fill_mode, interpolation, seed, fill_value: as ``RandomRotation`` (Keras defaults
            'reflect', 'bilinear', None, 0.0).

    Input and output: NHWC images given to a ``Sequential`` (NCHW inside it); float
    output. Raises ``ValueError`` naming the argument for a factor outside (-1, 1], and
    as ``RandomRotation`` does for the others.

    Example::

        >>> import brisk
        >>> brisk.layers.RandomZoom(0.2).width_factor is None
        True
    """

    def __init__(self, height_factor: float | tuple[float, float],
                 width_factor: float | tuple[float, float] | None = None,
                 fill_mode: str = "reflect", interpolation: str = "bilinear",
                 seed: int | None = None, fill_value: float = 0.0,
                 input_shape: Shape | None = None, name: str | None = None):
        from brisk.data.augment import factor_range

        super().__init__(fill_mode, interpolation, seed, fill_value, input_shape, name)
        self._height = factor_range(height_factor, "height_factor", low_open=True)
        self._width = (None if width_factor is None
                       else factor_range(width_factor, "width_factor", low_open=True))
        self.height_factor = _factor_config(height_factor)
        self.width_factor = None if width_factor is None else _factor_config(width_factor)

    def _augment(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        from brisk.data.augment import random_zoom

        return random_zoom(x, self._height, self._width, g, self.fill_mode,
                           self.interpolation, self.fill_value)

    def get_config(self) -> dict:
        return {"height_factor": self.height_factor, "width_factor": self.width_factor,
                **super().get_config()}


class Rescaling(Layer):
    """``x * scale + offset`` (Keras ``keras.layers.Rescaling``); integer inputs such as
    uint8 images become float32 first. ``Rescaling(1 / 255)`` maps 0..255 pixels to 0..1,
    ``Rescaling(1 / 127.5, offset=-1)`` to -1..1.

    brisk feeds uint8 arrays to the model as Keras does, unscaled (stored as uint8 on the
    device, cast per batch); scaling is this layer's job, or ``DeviceLoader(mean=, std=)``.

    Raises ``ValueError`` for a non-finite or non-numeric ``scale``/``offset``.
    """

    def __init__(self, scale: float, offset: float = 0.0, input_shape: Shape | None = None,
                 name: str | None = None):
        super().__init__(input_shape, name)
        for arg, v in (("scale", scale), ("offset", offset)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"{arg}: expected a finite number, got {v!r}")
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # An integer tensor times a Python float is float32 (torch's type promotion): no
        # cast, and no branch on the tensor, so torch.fx can trace it (compress, quantize).
        x = x * self.scale
        return x + self.offset if self.offset else x

    def flops(self, shape: Shape) -> int:
        return (2 if self.offset else 1) * math.prod(shape)

    def get_config(self) -> dict:
        return {"scale": self.scale, "offset": self.offset, **super().get_config()}


class Flatten(Layer):
    """Flattens each sample to a vector, in Keras's order: an image is read as
    (height, width, channels), so a Dense after it takes Keras's weights as they are.

    Inside the model images are NCHW; Flatten views them as NHWC first (free for the
    NHWC input Sequential permuted, which is channels_last in memory; one copy otherwise).
    ``order='chw'`` (set only for files saved by brisk before format version 2) keeps the
    old NCHW order those files' Dense weights were trained with."""

    spatial = True  # an image input is permuted to NCHW, and Flatten reads it back as NHWC

    def __init__(self, input_shape: Shape | None = None, name: str | None = None,
                 order: str = "hwc"):
        super().__init__(input_shape, name)
        if order not in ("hwc", "chw"):
            raise ValueError(f"order: expected 'hwc' (Keras) or 'chw', got {order!r}")
        self.order = order
        self._to_hwc = False

    def build(self, shape: Shape) -> Shape:
        self._to_hwc = len(shape) == 3 and self.order == "hwc"  # images: (C, H, W) here
        return super().build((math.prod(shape),))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._to_hwc:  # a Python flag set at build: no branch on the tensor (fx traces it)
            x = x.permute(0, 2, 3, 1)
        return x.flatten(1)

    def get_config(self) -> dict:
        cfg = super().get_config()
        if self.order != "hwc":
            cfg["order"] = self.order
        return cfg


class Dropout(Layer):
    """Zeroes a fraction ``rate`` of inputs while training, scaling the rest by 1/(1-rate)."""

    def __init__(self, rate: float, input_shape: Shape | None = None, name: str | None = None):
        super().__init__(input_shape, name)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= rate < 1.0:
            raise ValueError(f"rate: expected a float in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.rate, self.training)

    def get_config(self) -> dict:
        return {"rate": self.rate, **super().get_config()}


class BatchNormalization(Layer):
    """Batch normalization over the channel (last Keras) axis.

    Keras's ``momentum=0.99`` keeps 99% of the running statistic per step; PyTorch's
    ``momentum`` is the weight of the new batch, so it is ``1 - momentum`` here.
    """

    spatial = True  # images: channels are axis 1 inside the model (NHWC input permuted)

    def __init__(
        self,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        input_shape: Shape | None = None,
        name: str | None = None,
    ):
        super().__init__(input_shape, name)
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum: expected a float in [0, 1), got {momentum!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not epsilon > 0:
            raise ValueError(f"epsilon: expected a positive float, got {epsilon!r}")
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.bn: nn.Module | None = None

    def build(self, shape: Shape) -> Shape:
        cls = {1: nn.BatchNorm1d, 3: nn.BatchNorm2d}.get(len(shape))
        if cls is None:
            raise ValueError(f"BatchNormalization supports vectors and images, got rank {len(shape)}")
        self.bn = cls(shape[0], eps=self.epsilon, momentum=1.0 - self.momentum)
        return super().build(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        if not bn.training:
            return bn(x)
        n = x.numel() // x.shape[1]  # values per channel in this batch
        if n == 1:
            return self._single_sample(x)
        before = bn.running_var.detach().clone()
        out = bn(x)
        # torch moves the moving variance towards the batch's unbiased variance, Keras
        # towards the biased one (keras BatchNormalization: ops.moments): with
        # new = (1 - m) * old + m * v_u and v_b = v_u * (n - 1) / n, Keras's value is
        # new - (new - (1 - m) * old) / n; two C-length ops, no pass over x. Through .data:
        # torch's backward keeps a reference to running_var (and never reads it in training).
        rv = bn.running_var.data
        rv.sub_((rv - (1.0 - bn.momentum) * before) / n)
        return out

    def _single_sample(self, x: torch.Tensor) -> torch.Tensor:
        """A training batch of one sample (e.g. the last of 33 at batch size 32), where torch
        refuses to normalise; Keras trains on it: the batch mean is the sample, the (biased)
        variance 0, so the output is beta and the moving statistics move towards them."""
        bn = self.bn
        shape = (1, -1) + (1,) * (x.dim() - 2)
        with torch.no_grad():
            mean = x.detach().reshape(-1).float()
            bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), bn.momentum)
            bn.running_var.mul_(1.0 - bn.momentum)  # towards the batch variance, 0
            bn.num_batches_tracked.add_(1)
        centred = x - x  # x minus its batch mean: zeros, with a zero gradient
        return centred * (bn.weight / math.sqrt(bn.eps)).reshape(shape) + bn.bias.reshape(shape)

    def flops(self, shape: Shape) -> int:
        return 2 * math.prod(shape)

    def get_config(self) -> dict:
        return {"momentum": self.momentum, "epsilon": self.epsilon, **super().get_config()}


class Activation(Layer):
    """Applies an activation by name: 'relu', 'gelu', 'silu', 'tanh', 'sigmoid', 'softmax'..."""

    def __init__(self, activation: str, input_shape: Shape | None = None, name: str | None = None):
        super().__init__(input_shape, name)
        self.activation = activation_name(activation)
        self._act = get_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._act(x)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def flops(self, shape: Shape) -> int:
        return math.prod(shape)

    def get_config(self) -> dict:
        return {"activation": self.activation, **super().get_config()}


# ----------------------------------------------------------------------------- sequences
# A sequence is (batch, steps, features) at the Keras front (channels_last) and stays in
# that layout between layers: Sequential never permutes a rank-2 per-sample input (only
# rank-3 images, for the ``spatial`` layers). Conv1D and MaxPooling1D transpose to torch's
# (N, C, L) around the kernel.


def _single(v: Any, name: str) -> int:
    """Keras's 1-D int arguments: an int or a 1-tuple/list of one positive int."""
    if isinstance(v, (tuple, list)) and len(v) == 1:
        v = v[0]
    if not _is_int(v) or v <= 0:
        raise ValueError(f"{name}: expected a positive int (or a 1-tuple of one), got {v!r}")
    return int(v)


def _sequence_shape(layer: Layer, shape: Shape) -> tuple[int, int]:
    if len(shape) != 2:
        raise ValueError(
            f"{type(layer).__name__} expects sequences, per-sample shape (steps, features), got "
            f"{tuple(shape)}; an Embedding or Reshape((steps, features)) makes one")
    return int(shape[0]), int(shape[1])


class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (Keras ``Reshape``; no batch axis, one entry
    may be -1), in Keras's row-major order of the channels_last layout.

    Images: inside a ``Sequential`` images are NCHW (see the module docstring), so an image
    input (rank 3, shown as (H, W, C)) is read in Keras's (H, W, C) order, and a rank-3
    ``target_shape`` is taken as (H, W, C) and handed on as NCHW to the image layers after
    it: the result is Keras's, value for value. Rank-1, rank-2 (sequences) and higher
    targets stay in Keras layout. Outside a ``Sequential``, called directly, the layer
    expects the same layout (rank-3 samples as (C, H, W)).

    Raises ``ValueError`` for a target that is not a tuple of positive ints with at most one
    -1, or whose size does not fit the input.

    Example::

        model = brisk.Sequential([Input((784,)), Reshape((28, 28, 1)), Conv2D(8, 3)])
    """

    spatial = True  # it reads and writes images in the NCHW layout Sequential uses inside

    def __init__(self, target_shape: Shape, input_shape: Shape | None = None,
                 name: str | None = None):
        super().__init__(input_shape, name)
        t = target_shape
        if not (isinstance(t, (tuple, list)) and len(t) > 0 and all(
                _is_int(d) and (d > 0 or d == -1) for d in t)
                and sum(d == -1 for d in t) <= 1):
            raise ValueError("target_shape: expected a tuple of positive ints with at most one "
                             f"-1, without the batch axis, got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in t)
        self._from_image = self._to_image = False

    def build(self, shape: Shape) -> Shape:
        size = math.prod(shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"target_shape: {self.target_shape} does not fit an input of "
                                 f"shape {self._keras(shape)} ({size} values)")
            out = tuple(size // known if d == -1 else d for d in self.target_shape)
        else:
            out = self.target_shape
        if math.prod(out) != size:
            raise ValueError(f"target_shape: {self.target_shape} has {math.prod(out)} values, "
                             f"the input {self._keras(shape)} has {size}")
        self._from_image, self._to_image = len(shape) == 3, len(out) == 3
        self._out = out
        return super().build((out[2], out[0], out[1]) if self._to_image else out)

    @staticmethod
    def _keras(shape: Shape) -> Shape:
        return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._from_image:
            x = x.permute(0, 2, 3, 1)  # NCHW -> Keras's NHWC order
        x = x.reshape(x.shape[0], *self._out)
        return x.permute(0, 3, 1, 2) if self._to_image else x

    def get_config(self) -> dict:
        return {"target_shape": list(self.target_shape), **super().get_config()}


class Conv1D(Layer):
    """1-D convolution over the steps of a sequence (Keras ``Conv1D``): per-sample input
    (steps, channels), output (new_steps, filters), float32; torch's ``nn.Conv1d`` on a
    (N, C, L) view underneath. Keras defaults: ``strides=1``, ``padding='valid'``,
    ``dilation_rate=1``, ``kernel_initializer='glorot_uniform'`` (fans k * in, k * out),
    zero bias. ``padding='same'`` pads as TensorFlow (new_steps = ceil(steps / strides),
    an odd extra step at the end); ``'causal'`` pads ``dilation_rate * (kernel_size - 1)``
    zeros at the start, so output t sees only inputs <= t. The Keras kernel is
    (kernel_size, in, filters).

    Raises ``ValueError`` for non-positive sizes, an unknown padding, strides > 1 together
    with dilation_rate > 1 (as Keras), a non-sequence input, or a kernel longer than a
    'valid' input.

    Example::

        model = brisk.Sequential([Input((100, 8)), Conv1D(16, 5, padding="causal")])
    """

    def __init__(self, filters: int, kernel_size: int | tuple[int], strides: int | tuple[int] = 1,
                 padding: str = "valid", dilation_rate: int | tuple[int] = 1,
                 activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", input_shape: Shape | None = None,
                 name: str | None = None):
        super().__init__(input_shape, name)
        self.filters = _positive_int(filters, "filters")
        self.kernel_size = _single(kernel_size, "kernel_size")
        self.strides = _single(strides, "strides")
        self.dilation_rate = _single(dilation_rate, "dilation_rate")
        if padding not in ("valid", "same", "causal"):
            raise ValueError(f"padding: expected 'valid', 'same' or 'causal', got {padding!r}")
        if self.strides > 1 and self.dilation_rate > 1:
            raise ValueError("strides: strides > 1 cannot be combined with dilation_rate > 1 "
                             f"(Keras), got strides={self.strides}, "
                             f"dilation_rate={self.dilation_rate}")
        self.padding = padding
        self.activation = activation_name(activation)
        self._act = get_activation(activation)
        self.use_bias = _bool(use_bias, "use_bias")
        self.kernel_initializer = kernel_initializer
        _initialize(torch.empty(1, 1), kernel_initializer, 1, 1)  # validate the name early
        self.conv: nn.Conv1d | None = None
        self._pad: tuple[int, int] = (0, 0)

    def build(self, shape: Shape) -> Shape:
        steps, c = _sequence_shape(self, shape)
        k, s, d = self.kernel_size, self.strides, self.dilation_rate
        span = d * (k - 1) + 1  # steps one output sees
        if self.padding == "same":
            out = -(-steps // s)
            total = max((out - 1) * s + span - steps, 0)
            self._pad = (total // 2, total - total // 2)
        elif self.padding == "causal":
            self._pad = (span - 1, 0)
            out = (steps - 1) // s + 1
        else:
            if steps < span:
                raise ValueError(f"Conv1D kernel_size {k} (dilation_rate {d}) is longer than "
                                 f"its input of {steps} steps")
            out = (steps - span) // s + 1
        self.conv = nn.Conv1d(c, self.filters, k, s, dilation=d, bias=self.use_bias)
        _initialize(self.conv.weight, self.kernel_initializer, c * k, self.filters * k)
        if self.use_bias:
            nn.init.zeros_(self.conv.bias)
        return super().build((out, self.filters))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._act(self.forward_logits(x))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (N, L, C) -> torch's (N, C, L), a view
        if self._pad != (0, 0):
            x = F.pad(x, self._pad)
        return self.conv(x).transpose(1, 2)

    def flops(self, shape: Shape) -> int:
        out, f = self.output_shape
        return (2 * shape[1] * self.kernel_size + (1 if self.use_bias else 0)) * f * out

    def get_config(self) -> dict:
        return {"filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding,
                "dilation_rate": self.dilation_rate, "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
                **super().get_config()}


class MaxPooling1D(Layer):
    """Max over windows of ``pool_size`` steps (Keras ``MaxPooling1D``; defaults
    ``pool_size=2``, ``strides=None`` meaning ``pool_size``, ``padding='valid'``): per-sample
    (steps, features) -> (new_steps, features). 'same' gives ceil(steps / strides) steps,
    padding with -inf (padding never wins), as Keras.

    Raises ``ValueError`` for non-positive sizes, an unknown padding, a non-sequence input,
    or a window longer than a 'valid' input."""

    def __init__(self, pool_size: int | tuple[int] = 2, strides: int | tuple[int] | None = None,
                 padding: str = "valid", input_shape: Shape | None = None,
                 name: str | None = None):
        super().__init__(input_shape, name)
        self.pool_size = _single(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _single(strides, "strides")
        self.padding = _check_padding(padding)
        self._pad: tuple[int, int] = (0, 0)

    def build(self, shape: Shape) -> Shape:
        steps, c = _sequence_shape(self, shape)
        k, s = self.pool_size, self.strides
        if self.padding == "same":
            self._pad = _same_pads(steps, k, s)
            out = -(-steps // s)
        else:
            if steps < k:
                raise ValueError(f"MaxPooling1D pool_size {k} > input of {steps} steps")
            out = (steps - k) // s + 1
        return super().build((out, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        if self._pad != (0, 0):
            x = F.pad(x, self._pad, value=float("-inf"))
        return F.max_pool1d(x, self.pool_size, self.strides).transpose(1, 2)

    def flops(self, shape: Shape) -> int:
        return math.prod(self.output_shape) * self.pool_size

    def get_config(self) -> dict:
        return {"pool_size": self.pool_size, "strides": self.strides, "padding": self.padding,
                **super().get_config()}


class GlobalAveragePooling1D(Layer):
    """Mean over the steps (Keras ``GlobalAveragePooling1D``): (steps, features) ->
    (features,). Raises ``ValueError`` for a non-sequence input."""

    def build(self, shape: Shape) -> Shape:
        return super().build((_sequence_shape(self, shape)[1],))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)

    def flops(self, shape: Shape) -> int:
        return math.prod(shape)


class Embedding(Layer):
    """A vector of ``output_dim`` floats per integer id in [0, ``input_dim``) (Keras
    ``Embedding``): per-sample ids of any shape, e.g. (steps,), become
    (steps, output_dim) float32; torch's ``nn.Embedding`` underneath (the weight is Keras's
    (input_dim, output_dim) ``embeddings``).

    Ids may come as integer tensors or as floats holding integers (``DeviceLoader`` and
    ``fit`` store integer feature arrays as float32, exact up to 2**24); floats are
    truncated to int64 as Keras casts them. On the CPU the ids are checked: ``ValueError``
    for an id outside [0, input_dim) or a non-integer value. On an accelerator that check
    would cost a host synchronisation per step, so an out-of-range id there is torch's
    device-side index assert (Keras's torch backend raises IndexError).

    Defaults from Keras 3: ``embeddings_initializer='uniform'`` is U(-0.05, 0.05);
    ``mask_zero=False``. Masking is not implemented: ``mask_zero=True`` raises
    ``ValueError``, as do non-positive dims and an unknown initializer.

    Example::

        model = brisk.Sequential([Input((20,)), Embedding(1000, 16), GlobalAveragePooling1D()])
    """

    INITIALIZERS = ("uniform", "random_uniform", "glorot_uniform", "glorot_normal",
                    "he_uniform", "he_normal", "zeros")

    def __init__(self, input_dim: int, output_dim: int,
                 embeddings_initializer: str = "uniform", mask_zero: bool = False,
                 input_shape: Shape | None = None, name: str | None = None):
        super().__init__(input_shape, name)
        self.input_dim = _positive_int(input_dim, "input_dim")
        self.output_dim = _positive_int(output_dim, "output_dim")
        if embeddings_initializer not in self.INITIALIZERS:
            raise ValueError(f"embeddings_initializer: unknown {embeddings_initializer!r}; "
                             f"expected one of {', '.join(self.INITIALIZERS)}")
        if mask_zero:
            raise ValueError("mask_zero: brisk does not implement Keras's masking (padding id 0 "
                             "skipped by later layers); use mask_zero=False")
        self.embeddings_initializer = embeddings_initializer
        self.mask_zero = False
        self.embedding: nn.Embedding | None = None

    def build(self, shape: Shape) -> Shape:
        self.embedding = nn.Embedding(self.input_dim, self.output_dim)
        w = self.embedding.weight
        if self.embeddings_initializer in ("uniform", "random_uniform"):
            with torch.no_grad():
                w.uniform_(-0.05, 0.05)  # Keras RandomUniform's defaults
        else:
            _initialize(w, self.embeddings_initializer, self.input_dim, self.output_dim)
        return super().build((*shape, self.output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.device.type == "cpu" and not (
                torch.compiler.is_compiling()):
            self._check_ids(x)
        return self.embedding(x.long())  # a no-op for int64 ids

    def _check_ids(self, x: torch.Tensor) -> None:
        if x.is_floating_point() and not bool((x == x.trunc()).all()):
            raise ValueError("x: Embedding takes integer ids; got non-integer values")
        if x.numel() and (bool(x.min() < 0) or bool(x.max() >= self.input_dim)):
            raise ValueError(f"x: Embedding ids must be in [0, {self.input_dim}) (input_dim); "
                             f"got ids in [{x.min().item():g}, {x.max().item():g}]")

    def get_config(self) -> dict:
        return {"input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": self.embeddings_initializer,
                "mask_zero": self.mask_zero, **super().get_config()}


class _RNN(Layer):
    """Shared by LSTM and GRU: torch's fused kernel (``torch.lstm``/``torch.gru``, cuDNN on
    CUDA) over this layer's own parameters, in torch's layout (weight_ih (gates * units,
    in), weight_hh (gates * units, units)); ``Sequential.get_weights`` gives Keras's."""

    _gates, _kind, _bias_adds = 4, "LSTM", 1

    def __init__(self, units: int, activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform",
                 recurrent_initializer: str = "orthogonal", return_sequences: bool = False,
                 return_state: bool = False, input_shape: Shape | None = None,
                 name: str | None = None):
        super().__init__(input_shape, name)
        self.units = _positive_int(units, "units")
        for arg, value, want in (("activation", activation, "tanh"),
                                 ("recurrent_activation", recurrent_activation, "sigmoid")):
            if not isinstance(value, str) or value.lower() != want:  # None is 'linear'
                raise ValueError(f"{arg}: brisk's {self._kind} runs torch's fused kernel, which "
                                 f"computes {want!r} (Keras's default); got {value!r}")
        if return_state:
            raise ValueError("return_state: a Sequential passes one tensor between layers; "
                             "brisk supports return_state=False only")
        self.activation, self.recurrent_activation = "tanh", "sigmoid"
        self.use_bias = _bool(use_bias, "use_bias")
        self.return_sequences, self.return_state = _bool(return_sequences, "return_sequences"), False
        _initialize(torch.empty(1, 1), kernel_initializer, 1, 1)  # validate the names early
        if recurrent_initializer != "orthogonal":
            try:
                _initialize(torch.empty(1, 1), recurrent_initializer, 1, 1)
            except ValueError:
                raise ValueError(f"recurrent_initializer: unknown {recurrent_initializer!r}; "
                                 "expected 'orthogonal' or a kernel initializer name") from None
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.weight_ih: nn.Parameter | None = None
        self.weight_hh: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None

    def build(self, shape: Shape) -> Shape:
        steps, d = _sequence_shape(self, shape)
        g, u = self._gates * self.units, self.units
        self.weight_ih = nn.Parameter(torch.empty(g, d))
        self.weight_hh = nn.Parameter(torch.empty(g, u))
        # Keras computes the fans on its (in, gates * units) and (units, gates * units) kernels
        _initialize(self.weight_ih, self.kernel_initializer, d, g)
        if self.recurrent_initializer == "orthogonal":
            nn.init.orthogonal_(self.weight_hh)  # orthonormal columns = Keras's rows
        else:
            _initialize(self.weight_hh, self.recurrent_initializer, u, g)
        if self.use_bias:
            self.bias = nn.Parameter(self._initial_bias())
        return super().build((steps, u) if self.return_sequences else (u,))

    def _params(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def _run(self, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = x.new_zeros(1, x.shape[0], self.units)
        if x.is_cuda:
            # cuDNN wants every weight in one buffer (nn.LSTM's flatten_parameters) and warns
            # otherwise; ours are separate tensors of a few KB, copied per call.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="RNN module weights are not part")
                out = self._run(x, h0)
        else:
            out = self._run(x, h0)
        return out if self.return_sequences else out[:, -1]

    def flops(self, shape: Shape) -> int:
        steps, d = shape
        g = self._gates * self.units
        return steps * (2 * (d + self.units) * g + (self._bias_adds if self.use_bias else 0) * g)

    def get_config(self) -> dict:
        return {"units": self.units, "activation": self.activation,
                "recurrent_activation": self.recurrent_activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "recurrent_initializer": self.recurrent_initializer,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                **super().get_config()}


class LSTM(_RNN):
    """Long short-term memory over a sequence (Keras ``LSTM``): per-sample (steps, features)
    -> (units,), or (steps, units) with ``return_sequences=True``; float32. torch's fused
    ``torch.lstm`` kernel (cuDNN on CUDA) with Keras's gates, initial state zeros.

    Weights as Keras: kernel (in, 4 * units), recurrent_kernel (units, 4 * units) and ONE
    bias (4 * units,), gates in the order i, f, c, o (torch's i, f, g, o); torch's second
    bias is a zero constant, so ``count_params()`` is Keras's. Keras 3 defaults:
    ``kernel_initializer='glorot_uniform'``, ``recurrent_initializer='orthogonal'``, zero
    bias with ``unit_forget_bias=True`` (the forget gate's bias starts at 1).

    Raises ``ValueError`` for an ``activation`` other than 'tanh' or a
    ``recurrent_activation`` other than 'sigmoid' (the fused kernel computes only those),
    for ``return_state=True``, for a non-positive ``units`` and for a non-sequence input.

    Example::

        model = brisk.Sequential([Input((20,)), Embedding(1000, 16), LSTM(32), Dense(1)])
    """

    _gates, _kind, _bias_adds = 4, "LSTM", 1

    def __init__(self, units: int, activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform",
                 recurrent_initializer: str = "orthogonal", unit_forget_bias: bool = True,
                 return_sequences: bool = False, return_state: bool = False,
                 input_shape: Shape | None = None, name: str | None = None):
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, return_sequences, return_state, input_shape,
                         name)
        self.unit_forget_bias = _bool(unit_forget_bias, "unit_forget_bias")

    def _initial_bias(self) -> torch.Tensor:
        b = torch.zeros(4 * self.units)
        if self.unit_forget_bias:
            b[self.units:2 * self.units] = 1.0
        return b

    def _run(self, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        params = [self.weight_ih, self.weight_hh]
        if self.use_bias:  # torch adds b_ih + b_hh; Keras has one bias
            params += [self.bias, torch.zeros_like(self.bias)]
        return torch.lstm(x, (h0, h0), params, self.use_bias, 1, 0.0, self.training, False,
                          True)[0]

    def get_config(self) -> dict:
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRU(_RNN):
    """Gated recurrent unit over a sequence (Keras ``GRU``, ``reset_after=True``, its
    default): per-sample (steps, features) -> (units,), or (steps, units) with
    ``return_sequences=True``; float32. torch's fused ``torch.gru`` kernel (cuDNN on CUDA),
    which applies the reset gate after the recurrent matmul, as Keras's reset_after=True.

    Weights as Keras: kernel (in, 3 * units), recurrent_kernel (units, 3 * units), bias
    (2, 3 * units) (input bias, recurrent bias), gates in Keras's order z, r, h (torch's
    is r, z, n: ``Sequential.get_weights``/``set_weights`` reorder). Keras 3 defaults:
    ``kernel_initializer='glorot_uniform'``, ``recurrent_initializer='orthogonal'``, zero
    bias.

    Raises ``ValueError`` for ``reset_after=False`` (torch has no kernel for it), an
    ``activation`` other than 'tanh' or a ``recurrent_activation`` other than 'sigmoid',
    ``return_state=True``, a non-positive ``units`` and a non-sequence input.

    Example::

        model = brisk.Sequential([Input((50, 3)), GRU(16, return_sequences=True), GRU(8)])
    """

    _gates, _kind, _bias_adds = 3, "GRU", 2

    def __init__(self, units: int, activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform",
                 recurrent_initializer: str = "orthogonal", return_sequences: bool = False,
                 return_state: bool = False, reset_after: bool = True,
                 input_shape: Shape | None = None, name: str | None = None):
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, return_sequences, return_state, input_shape,
                         name)
        if reset_after is not True:
            raise ValueError("reset_after: torch's fused GRU applies the reset gate after the "
                             f"recurrent matmul; brisk supports reset_after=True only, got "
                             f"{reset_after!r}")
        self.reset_after = True

    def _initial_bias(self) -> torch.Tensor:
        return torch.zeros(2, 3 * self.units)  # rows: input bias, recurrent bias

    def _run(self, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        params = [self.weight_ih, self.weight_hh]
        if self.use_bias:
            params += [self.bias[0], self.bias[1]]
        return torch.gru(x, h0, params, self.use_bias, 1, 0.0, self.training, False, True)[0]

    def get_config(self) -> dict:
        return {**super().get_config(), "reset_after": self.reset_after}


LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (
        Input,
        Rescaling,
        Normalization,
        RandomFlip,
        RandomRotation,
        RandomTranslation,
        RandomZoom,
        Dense,
        Conv2D,
        DepthwiseConv2D,
        SeparableConv2D,
        MaxPooling2D,
        AveragePooling2D,
        GlobalAveragePooling2D,
        GlobalMaxPooling2D,
        ZeroPadding2D,
        LayerNormalization,
        Flatten,
        Dropout,
        BatchNormalization,
        Activation,
        Reshape,
        Conv1D,
        MaxPooling1D,
        GlobalAveragePooling1D,
        Embedding,
        LSTM,
        GRU,
    )
}

__all__ = [*LAYERS, "Layer"]
