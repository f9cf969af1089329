"""Batched, seeded, on-device image augmentation over NCHW tensors.

Each function takes a whole batch ``(N, C, H, W)`` (float or uint8), draws one random number
per sample from ``generator`` on the tensor's device and returns a new tensor: the input is
never modified and there is no Python loop over samples. The same generator seed gives the
same output. The classes (``RandomCrop``, ``FlipLR``, ``Cutout``) are configured callables
``(x, generator=None) -> x`` for :func:`compose` and ``DeviceLoader(transform=...)``.

Geometric resampling (:func:`affine`, :func:`rotate`, :func:`zoom`, and :func:`translate`
with sub-pixel shifts or a fill mode) is one ``F.grid_sample`` per batch with Keras 3's
conventions (``keras.ops.image.affine_transform``, torch backend): pixel centres at integer
coordinates, fill modes 'reflect' ``(d c b a | a b c d | d c b a)``, 'wrap', 'constant'
(``fill``) and 'nearest', interpolation 'bilinear' or 'nearest' (ties round half to even).
:func:`random_rotation`, :func:`random_translation` and :func:`random_zoom` draw one
transform per sample with the semantics of Keras's ``RandomRotation``, ``RandomTranslation``
and ``RandomZoom`` layers (which ``brisk.layers`` wraps); inside :func:`compose` give them
their settings with ``functools.partial``.

Example::

    >>> import torch
    >>> aug = compose(RandomCrop(padding=4), FlipLR(p=0.5), Cutout(size=8))
    >>> x = torch.rand(16, 3, 32, 32)
    >>> aug(x, torch.Generator().manual_seed(0)).shape
    torch.Size([16, 3, 32, 32])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "FILL_MODES",
    "INTERPOLATIONS",
    "Compose",
    "Cutout",
    "FlipLR",
    "RandomCrop",
    "affine",
    "compose",
    "cutout",
    "flip_lr",
    "random_crop",
    "random_rotation",
    "random_translation",
    "random_zoom",
    "rotate",
    "translate",
    "zoom",
]

#: Keras's fill modes for points outside the image (``keras.layers.RandomRotation`` & co.)
FILL_MODES = ("reflect", "wrap", "constant", "nearest")
#: Keras's interpolations for the geometric transforms
INTERPOLATIONS = ("bilinear", "nearest")


def _check_batch(x: torch.Tensor) -> tuple[int, int, int, int]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x: expected an NCHW batch (N, C, H, W), got shape {tuple(x.shape)}")
    return tuple(x.shape)  # type: ignore[return-value]


def _check_int(v, name: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {v!r}")
    return v


def _fill_value(x: torch.Tensor, fill: float) -> float | int:
    # A Python scalar of x's kind keeps the result in x's dtype (uint8 stays uint8).
    return float(fill) if x.is_floating_point() else int(fill)


def _window(
    x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, p: int, fill: float
) -> torch.Tensor:
    """out[n] = pad(x, p, fill)[n, :, oy[n] : oy[n] + H, ox[n] : ox[n] + W], oy/ox in [0, 2p].

    One pad and one gather over the flattened padded image: about 2x faster on CPU than
    gathering rows and columns separately, and three kernels on a GPU.
    """
    n, c, h, w = x.shape
    hp, wp = h + 2 * p, w + 2 * p
    padded = F.pad(x, (p, p, p, p), value=_fill_value(x, fill)).reshape(n, c, hp * wp)
    r = torch.arange(h, device=x.device)
    q = torch.arange(w, device=x.device)
    flat = ((oy[:, None, None] + r[:, None]) * wp + ox[:, None, None] + q).reshape(n, 1, h * w)
    return padded.gather(2, flat.expand(n, c, h * w)).view(n, c, h, w)


def translate(
    x: torch.Tensor,
    dx: float | torch.Tensor,
    dy: float | torch.Tensor,
    fill: float = 0.0,
    fill_mode: str = "constant",
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Shift images right by ``dx`` and down by ``dy`` pixels, filling the vacated border.

    ``dx``/``dy`` are numbers (the same shift for all) or tensors of shape ``(N,)`` (one shift
    per sample); negative values shift left/up. Integer shifts with ``fill_mode='constant'``
    (the default) are an exact gather that keeps ``x``'s dtype; with tensors, the largest
    shift is read back to the host once (a sync on GPUs); ``random_crop`` never needs that.
    Float shifts or another ``fill_mode`` (see :data:`FILL_MODES`) resample through
    :func:`affine` (float output, no sync), as Keras's ``RandomTranslation`` does.

    Raises ``ValueError`` for a bad shape, ``fill_mode`` or ``interpolation``.

    Example::

        >>> import torch
        >>> x = torch.arange(9.).reshape(1, 1, 3, 3)
        >>> translate(x, dx=1, dy=0)[0, 0]
        tensor([[0., 0., 1.],
                [0., 3., 4.],
                [0., 6., 7.]])
        >>> translate(x, dx=0.5, dy=0, fill_mode="nearest")[0, 0].round(decimals=4)
        tensor([[0.0000, 0.5000, 1.5000],
                [3.0000, 3.5000, 4.5000],
                [6.0000, 6.5000, 7.5000]])
    """
    n, _, h, w = _check_batch(x)
    _check_modes(fill_mode, interpolation)
    shifts = []
    for name, v in (("dx", dx), ("dy", dy)):
        t = torch.as_tensor(v, device=x.device)
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"{name}: expected a number or a number tensor, got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(n)
        elif t.shape != (n,):
            raise ValueError(
                f"{name}: expected a number or shape ({n},), got shape {tuple(t.shape)}")
        shifts.append(t)
    if fill_mode != "constant" or any(t.is_floating_point() for t in shifts):
        sx, sy = (t.float() for t in shifts)
        one, zero = torch.ones_like(sx), torch.zeros_like(sx)
        # Keras's translation matrix [[1, 0, -dx], [0, 1, -dy]]
        m = torch.stack((one, zero, -sx, zero, one, -sy), 1).view(n, 2, 3)
        return affine(x, m, fill_mode, interpolation, fill)
    sx, sy = (t.long().clamp(-size, size) for t, size in zip(shifts, (w, h), strict=True))
    if isinstance(dx, int) and isinstance(dy, int):  # no device round trip for plain ints
        p = max(min(abs(dx), w), min(abs(dy), h))
    else:
        p = int(torch.maximum(sx.abs().max(), sy.abs().max()))
    if p == 0:
        return x.clone()
    return _window(x, p - sy, p - sx, p, fill)


# ------------------------------------------------------------------- affine resampling
def _check_modes(fill_mode: str, interpolation: str) -> None:
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode: expected one of {', '.join(FILL_MODES)}, got {fill_mode!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation: expected one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")


def _per_sample(v: float | torch.Tensor, name: str, n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(v, device=device)
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name}: expected a number or a float tensor, got dtype {t.dtype}")
    if t.ndim == 0:
        t = t.expand(n)
    elif t.shape != (n,):
        raise ValueError(f"{name}: expected a number or shape ({n},), got shape {tuple(t.shape)}")
    return t.float()


def affine(
    x: torch.Tensor,
    matrix: torch.Tensor,
    fill_mode: str = "constant",
    interpolation: str = "bilinear",
    fill: float = 0.0,
) -> torch.Tensor:
    """Resample each image through its own affine map, in one ``F.grid_sample`` call.

    ``matrix`` is ``(N, 2, 3)`` (or ``(2, 3)`` for all) in pixels, Keras's
    ``affine_transform`` convention: output pixel (column ``c``, row ``r``) reads the input at
    column ``m[0,0]*c + m[0,1]*r + m[0,2]``, row ``m[1,0]*c + m[1,1]*r + m[1,2]``, pixel
    centres at integers. Points outside the image follow ``fill_mode`` (Keras's, and its
    defaults: 'constant' with ``fill``=0; also 'reflect' = half-sample symmetric
    ``d c b a | a b c d``, 'wrap', 'nearest'); ``interpolation`` is 'bilinear' or 'nearest'
    (ties round half to even, as Keras's torch backend). Returns float: ``x``'s dtype if
    floating, else float32 (Keras outputs floats). Coordinates pass through grid_sample's
    normalised [-1, 1] grid, so a pixel read at a whole-pixel position may carry float32
    rounding (about 1e-7 relative) where Keras's gather is exact.

    Raises ``TypeError``/``ValueError`` for a non-NCHW ``x``, a matrix of another shape, or
    an unknown ``fill_mode``/``interpolation``.

    Example::

        >>> import torch
        >>> x = torch.arange(6.).reshape(1, 1, 2, 3)
        >>> m = torch.tensor([[-1., 0., 2.], [0., 1., 0.]])  # mirror left-right
        >>> affine(x, m)[0, 0].round(decimals=4)
        tensor([[2., 1., 0.],
                [5., 4., 3.]])
    """
    n, _, h, w = _check_batch(x)
    _check_modes(fill_mode, interpolation)
    m = torch.as_tensor(matrix, device=x.device)
    if m.shape == (2, 3):
        m = m.expand(n, 2, 3)
    if m.shape != (n, 2, 3):
        raise ValueError(f"matrix: expected shape ({n}, 2, 3) or (2, 3), got {tuple(m.shape)}")
    m = m.float()
    row = torch.arange(h, device=x.device, dtype=torch.float32)[:, None]
    col = torch.arange(w, device=x.device, dtype=torch.float32)
    # (N, H, W) source coordinates, summed in the order of Keras's einsum (then the offset)
    m = m[:, :, :, None, None]
    sc = (row * m[:, 0, 1] + col * m[:, 0, 0]) + m[:, 0, 2]
    sr = (row * m[:, 1, 1] + col * m[:, 1, 0]) + m[:, 1, 2]
    return _sample(x, sc, sr, fill_mode, interpolation, fill)


def _sample(
    x: torch.Tensor, sc: torch.Tensor, sr: torch.Tensor, fill_mode: str, interpolation: str,
    fill: float,
) -> torch.Tensor:
    """x at source pixel coordinates (column ``sc``, row ``sr``, each (N, H, W))."""
    src = x if x.is_floating_point() else x.float()
    h, w = x.shape[2:]
    if interpolation == "nearest":  # round first: each fill mode then sees whole pixels
        sc, sr = sc.round(), sr.round()
    if fill_mode == "wrap":
        sc, sr = sc.remainder(w), sr.remainder(h)
        if interpolation == "bilinear":
            # between the last pixel and the first, bilinear blends the two (Keras wraps
            # each neighbour index): append column 0 after column W-1 and row 0 after row H-1
            src = F.pad(src, (0, 1, 0, 1), mode="circular")
            h, w = h + 1, w + 1
    if fill_mode == "constant" and fill != 0:
        src = src - fill  # zeros padding on (x - fill), plus fill: padding with fill
    # grid_sample's 'reflection' with align_corners=False reflects about the outer pixel
    # edges (-0.5, size - 0.5): Keras's 'reflect'; 'border' clamps: Keras's 'nearest'
    padding = {"constant": "zeros", "nearest": "border", "reflect": "reflection",
               "wrap": "border"}[fill_mode]
    grid = torch.stack(((2 * sc + 1) / w - 1, (2 * sr + 1) / h - 1), dim=-1)
    out = F.grid_sample(src, grid.to(src.dtype), mode=interpolation, padding_mode=padding,
                        align_corners=False)
    return out + fill if fill_mode == "constant" and fill != 0 else out


def rotate(
    x: torch.Tensor,
    angle: float | torch.Tensor,
    fill_mode: str = "constant",
    interpolation: str = "bilinear",
    fill: float = 0.0,
) -> torch.Tensor:
    """Rotate each image counter-clockwise by ``angle`` degrees about its centre.

    ``angle`` is a number or a tensor of shape ``(N,)``; the centre is ((W-1)/2, (H-1)/2),
    in pixels, so a non-square image keeps its size and loses its corners (Keras's
    ``RandomRotation`` geometry). ``fill_mode``/``interpolation``/``fill`` as :func:`affine`.

    Example::

        >>> import torch
        >>> x = torch.arange(9.).reshape(1, 1, 3, 3)
        >>> rotate(x, 90.0)[0, 0].round()
        tensor([[2., 5., 8.],
                [1., 4., 7.],
                [0., 3., 6.]])
    """
    n, _, h, w = _check_batch(x)
    a = _per_sample(angle, "angle", n, x.device) * torch.tensor(math.pi / 180.0)
    cos, sin = a.cos(), a.sin()
    cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
    # Keras's _compute_affine_matrix without shear or scale, in its order of operations
    m = torch.stack((cos, -sin, cx - cx * cos - cy * -sin,
                     sin, cos, cy - cx * sin - cy * cos), 1).view(n, 2, 3)
    return affine(x, m, fill_mode, interpolation, fill)


def zoom(
    x: torch.Tensor,
    height_zoom: float | torch.Tensor,
    width_zoom: float | torch.Tensor | None = None,
    fill_mode: str = "constant",
    interpolation: str = "bilinear",
    fill: float = 0.0,
) -> torch.Tensor:
    """Scale each image about its centre: output pixel at offset ``d`` from the centre reads
    the input at ``zoom * d``, so ``zoom > 1`` zooms out (the image shrinks, borders are
    filled) and ``zoom < 1`` zooms in (Keras's ``RandomZoom`` uses ``zoom = 1 + factor``).

    ``height_zoom``/``width_zoom`` are positive numbers or ``(N,)`` tensors; ``width_zoom``
    None keeps the aspect ratio (= ``height_zoom``). ``fill_mode``/``interpolation``/``fill``
    as :func:`affine`.

    Example::

        >>> import torch
        >>> x = torch.arange(9.).reshape(1, 1, 3, 3)
        >>> zoom(x, 2.0, interpolation="nearest")[0, 0]
        tensor([[0., 0., 0.],
                [0., 4., 0.],
                [0., 0., 0.]])
    """
    n, _, h, w = _check_batch(x)
    zh = _per_sample(height_zoom, "height_zoom", n, x.device)
    zw = zh if width_zoom is None else _per_sample(width_zoom, "width_zoom", n, x.device)
    zero = torch.zeros_like(zh)
    # Keras's _get_zoom_matrix: [[zw, 0, (W-1)/2 (1-zw)], [0, zh, (H-1)/2 (1-zh)]]
    m = torch.stack((zw, zero, ((w - 1.0) / 2.0) * (1.0 - zw),
                     zero, zh, ((h - 1.0) / 2.0) * (1.0 - zh)), 1).view(n, 2, 3)
    return affine(x, m, fill_mode, interpolation, fill)


# ------------------------------------------------ Keras's random geometric layers, as functions
def factor_range(
    factor: Any, name: str, low: float = -1.0, high: float = 1.0, low_open: bool = False
) -> tuple[float, float]:
    """Keras's factor rule: a number ``f`` means ``(-|f|, |f|)``, a pair is sorted; every
    number must lie in ``[low, high]`` (``(low, high]`` with ``low_open``).

    Raises ``ValueError`` naming ``name`` otherwise.

    Example::

        >>> factor_range(0.2, "factor"), factor_range((0.3, -0.1), "factor")
        ((-0.2, 0.2), (-0.1, 0.3))
    """
    interval = f"{'(' if low_open else '['}{low}, {high}]"
    msg = f"{name}: expected a number or a pair of numbers in {interval}, got {factor!r}"
    pair = isinstance(factor, (tuple, list))
    values = list(factor) if pair else [factor]
    if pair and len(values) != 2:
        raise ValueError(msg)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(msg)
        if v > high or v < low or (low_open and v == low):
            raise ValueError(msg)
    if pair:
        lo, hi = sorted(float(v) for v in values)
        return lo, hi
    f = abs(float(values[0]))
    return -f, f


def _uniform(lo: float, hi: float, n: int, generator: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    # Keras's torch backend: (maxval - minval) * rand + minval, float32
    return (hi - lo) * torch.rand(n, generator=generator, device=device) + lo


def random_rotation(
    x: torch.Tensor,
    factor: float | tuple[float, float],
    generator: torch.Generator | None = None,
    fill_mode: str = "reflect",
    interpolation: str = "bilinear",
    fill: float = 0.0,
) -> torch.Tensor:
    """Rotate each image by its own angle, uniform in ``factor`` x 360 degrees (counter-
    clockwise for positive), as Keras's ``RandomRotation`` (defaults: 'reflect', 'bilinear').

    ``factor``: a number in [-1, 1] (range ``(-|f|, |f|)``) or a (lower, upper) pair, in
    fractions of a full turn. Raises ``ValueError`` for a factor outside [-1, 1].

    Example::

        >>> import torch
        >>> x = torch.rand(8, 3, 32, 32)
        >>> random_rotation(x, 0.1, torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """
    n = _check_batch(x)[0]
    lo, hi = factor_range(factor, "factor")
    angle = _uniform(lo * 360.0, hi * 360.0, n, generator, x.device)
    return rotate(x, angle, fill_mode, interpolation, fill)


def random_translation(
    x: torch.Tensor,
    height_factor: float | tuple[float, float],
    width_factor: float | tuple[float, float],
    generator: torch.Generator | None = None,
    fill_mode: str = "reflect",
    interpolation: str = "bilinear",
    fill: float = 0.0,
) -> torch.Tensor:
    """Shift each image by its own amount, uniform in ``height_factor`` x H pixels down and
    ``width_factor`` x W pixels right (negative: up/left), as Keras's ``RandomTranslation``.

    Factors: a number in [-1, 1] (range ``(-|f|, |f|)``) or a (lower, upper) pair. Raises
    ``ValueError`` for a factor outside [-1, 1].

    Example::

        >>> import torch
        >>> x = torch.rand(8, 3, 32, 32)
        >>> random_translation(x, 0.1, 0.1, torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """
    n, _, h, w = _check_batch(x)
    hl, hh = factor_range(height_factor, "height_factor")
    wl, wh = factor_range(width_factor, "width_factor")
    dy = _uniform(hl, hh, n, generator, x.device) * h  # Keras draws the height first
    dx = _uniform(wl, wh, n, generator, x.device) * w
    return translate(x, dx, dy, fill, fill_mode, interpolation)


def random_zoom(
    x: torch.Tensor,
    height_factor: float | tuple[float, float],
    width_factor: float | tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
    fill_mode: str = "reflect",
    interpolation: str = "bilinear",
    fill: float = 0.0,
) -> torch.Tensor:
    """Zoom each image by its own amount, as Keras's ``RandomZoom``: ``zoom = 1 + factor``
    with the factor uniform in ``height_factor``; positive zooms out, negative zooms in.
    ``width_factor`` None zooms both axes by the same draw (keeps the aspect ratio).

    Factors: a number in (-1, 1] (range ``(-|f|, |f|)``) or a (lower, upper) pair. Raises
    ``ValueError`` for a factor outside (-1, 1].

    Example::

        >>> import torch
        >>> x = torch.rand(8, 3, 32, 32)
        >>> random_zoom(x, 0.2, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """
    n = _check_batch(x)[0]
    hl, hh = factor_range(height_factor, "height_factor", low_open=True)
    zh = _uniform(1.0 + hl, 1.0 + hh, n, generator, x.device)
    zw = None
    if width_factor is not None:
        wl, wh = factor_range(width_factor, "width_factor", low_open=True)
        zw = _uniform(1.0 + wl, 1.0 + wh, n, generator, x.device)
    return zoom(x, zh, zw, fill_mode, interpolation, fill)


def random_crop(
    x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None, fill: float = 0.0
) -> torch.Tensor:
    """Pad each image by ``padding`` (with ``fill``) and take a random HxW crop per sample.

    Equivalent to a random translation by -padding..padding pixels on each axis.

    Example::

        >>> import torch
        >>> x = torch.rand(8, 3, 32, 32)
        >>> random_crop(x, padding=4, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """
    n, _, _, _ = _check_batch(x)
    p = _check_int(padding, "padding", 0)
    if p == 0:
        return x.clone()
    offsets = torch.randint(0, 2 * p + 1, (2, n), generator=generator, device=x.device)
    return _window(x, offsets[0], offsets[1], p, fill)


def flip_lr(
    x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``.

    Example::

        >>> import torch
        >>> x = torch.arange(4.).reshape(1, 1, 2, 2)
        >>> flip_lr(x, p=1.0)[0, 0]
        tensor([[1., 0.],
                [3., 2.]])
    """
    n, _, _, _ = _check_batch(x)
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
    flip = torch.rand(n, generator=generator, device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(
    x: torch.Tensor, size: int, generator: torch.Generator | None = None, fill: float = 0.0
) -> torch.Tensor:
    """Set a ``size`` x ``size`` square to ``fill`` in each image (DeVries & Taylor, 2017).

    The square's centre is uniform over the image, so near the border the square is clipped.

    Example::

        >>> import torch
        >>> y = cutout(torch.ones(4, 3, 32, 32), size=8, generator=torch.Generator().manual_seed(0))
        >>> bool(((y == 0).sum(dim=(1, 2, 3)) <= 3 * 64).all())
        True
    """
    n, _, h, w = _check_batch(x)
    size = _check_int(size, "size", 1)
    cy = torch.randint(0, h, (n,), generator=generator, device=x.device)
    cx = torch.randint(0, w, (n,), generator=generator, device=x.device)
    y0, x0 = (cy - size // 2)[:, None], (cx - size // 2)[:, None]
    r = torch.arange(h, device=x.device)
    c = torch.arange(w, device=x.device)
    in_rows = (r >= y0) & (r < y0 + size)  # (N, H)
    in_cols = (c >= x0) & (c < x0 + size)  # (N, W)
    box = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (N, 1, H, W)
    return torch.where(box, _fill_value(x, fill), x)  # 2x faster than masked_fill on CPU


# ----------------------------------------------------------------------------- callables
def _fill_repr(fill: float) -> str:
    return "" if fill == 0 else f", fill={fill!r}"


class RandomCrop:
    """``random_crop`` with fixed settings, as ``(x, generator=None) -> x``.

    Example::

        >>> RandomCrop(padding=4)
        RandomCrop(padding=4)
    """

    def __init__(self, padding: int = 4, fill: float = 0.0) -> None:
        self.padding = _check_int(padding, "padding", 0)
        self.fill = fill

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return random_crop(x, self.padding, generator=generator, fill=self.fill)

    def __repr__(self) -> str:
        return f"RandomCrop(padding={self.padding}{_fill_repr(self.fill)})"


class FlipLR:
    """``flip_lr`` with fixed settings, as ``(x, generator=None) -> x``.

    Example::

        >>> FlipLR(p=0.5)
        FlipLR(p=0.5)
    """

    def __init__(self, p: float = 0.5) -> None:
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return flip_lr(x, self.p, generator=generator)

    def __repr__(self) -> str:
        return f"FlipLR(p={self.p})"


class Cutout:
    """``cutout`` with fixed settings, as ``(x, generator=None) -> x``.

    Example::

        >>> Cutout(size=8)
        Cutout(size=8)
    """

    def __init__(self, size: int = 8, fill: float = 0.0) -> None:
        self.size = _check_int(size, "size", 1)
        self.fill = fill

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return cutout(x, self.size, generator=generator, fill=self.fill)

    def __repr__(self) -> str:
        return f"Cutout(size={self.size}{_fill_repr(self.fill)})"


class Compose:
    """Apply transforms in order, each called as ``fn(x, generator=generator)``.

    Example::

        >>> Compose([RandomCrop(2), FlipLR()])
        Compose(RandomCrop(padding=2), FlipLR(p=0.5))
    """

    def __init__(self, fns: list[Callable[..., torch.Tensor]]) -> None:
        for i, f in enumerate(fns):
            if not callable(f):
                raise TypeError(
                    f"fns[{i}]: expected a callable (x, generator=None) -> x, got {f!r}"
                )
        self.fns = list(fns)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for f in self.fns:
            x = f(x, generator=generator)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(f) for f in self.fns) + ")"


def compose(*fns: Callable[..., torch.Tensor]) -> Compose:
    """Chain transforms into one ``(x, generator=None) -> x`` callable.

    Accepts the classes above or any function taking ``(x, generator=...)``, such as
    ``flip_lr`` itself.

    Example::

        >>> import torch
        >>> aug = compose(RandomCrop(padding=2), flip_lr)
        >>> aug(torch.zeros(2, 1, 8, 8), torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 8, 8])
    """
    return Compose(list(fns))
