"""Keras-style layers as ``torch.nn.Module`` objects.

Shapes: users give and see Keras shapes (``(height, width, channels)`` for images).
Inside the model tensors use PyTorch's NCHW layout; ``Sequential`` permutes an NHWC
batch once at its input (a free view, which is exactly channels_last memory format), so
the classic Keras code runs unchanged while convolutions use PyTorch's native kernels.

Each layer is built lazily by ``build(shape)`` from the per-sample input shape in
PyTorch layout (``(C, H, W)`` for images) and returns its output shape. ``flops(shape)``
counts floating-point operations per sample (a multiply-add is 2 FLOPs).

Example::

    import brisk
    from brisk.layers import Dense
    model = brisk.Sequential([Dense(64, activation="relu", input_shape=(784,)), Dense(10)])
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brisk.api.activations import activation_name, get_activation
from brisk.engine.freeze import set_trainable

Shape = tuple[int, ...]


def _pair(v: Any, name: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v, v)
    if (
        not isinstance(v, (tuple, list))
        or len(v) != 2
        or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in v)
    ):
        raise ValueError(f"{name}: expected a positive int or a pair of positive ints, got {v!r}")
    return int(v[0]), int(v[1])


def _positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return v


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


class Layer(nn.Module):
    """Base of brisk layers: lazily built from the input shape (PyTorch layout)."""

    #: layers that need PyTorch's NCHW image layout (Sequential permutes NHWC input for them)
    spatial = False

    def __init__(self, input_shape: Shape | None = None, name: str | None = None):
        super().__init__()
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
        self._trainable = True

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
        return self.output_shape

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
    """Fully connected layer on the last axis: ``activation(x @ W + b)``."""

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
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        _initialize(torch.empty(1, 1), kernel_initializer, 1, 1)  # validate the name early
        self.linear: nn.Linear | None = None

    def build(self, shape: Shape) -> Shape:
        if len(shape) != 1:
            raise ValueError(
                f"Dense expects flat per-sample inputs (features,), got shape {shape}; "
                "add Flatten() or GlobalAveragePooling2D() before it"
            )
        self.linear = nn.Linear(shape[0], self.units, bias=self.use_bias)
        _initialize(self.linear.weight, self.kernel_initializer, shape[0], self.units)
        if self.use_bias:
            nn.init.zeros_(self.linear.bias)
        return super().build((self.units,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._act(self.linear(x))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def flops(self, shape: Shape) -> int:
        return 2 * shape[0] * self.units + (self.units if self.use_bias else 0)

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
        self.use_bias = bool(use_bias)
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
    """Flattens each sample to a vector."""

    def build(self, shape: Shape) -> Shape:
        return super().build((math.prod(shape),))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class Dropout(Layer):
    """Zeroes a fraction ``rate`` of inputs while training, scaling the rest by 1/(1-rate)."""

    def __init__(self, rate: float, input_shape: Shape | None = None, name: str | None = None):
        super().__init__(input_shape, name)
        if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
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


LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (
        Input,
        Rescaling,
        Normalization,
        RandomFlip,
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
    )
}

__all__ = [*LAYERS, "Layer"]
