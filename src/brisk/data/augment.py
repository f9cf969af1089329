"""Batched, seeded, on-device image augmentation over NCHW tensors.

Each function takes a whole batch ``(N, C, H, W)`` (float or uint8), draws one random number
per sample from ``generator`` on the tensor's device and returns a new tensor: the input is
never modified and there is no Python loop over samples. The same generator seed gives the
same output. The classes (``RandomCrop``, ``FlipLR``, ``Cutout``) are configured callables
``(x, generator=None) -> x`` for :func:`compose` and ``DeviceLoader(transform=...)``.

Example::

    >>> import torch
    >>> aug = compose(RandomCrop(padding=4), FlipLR(p=0.5), Cutout(size=8))
    >>> x = torch.rand(16, 3, 32, 32)
    >>> aug(x, torch.Generator().manual_seed(0)).shape
    torch.Size([16, 3, 32, 32])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "Compose",
    "Cutout",
    "FlipLR",
    "RandomCrop",
    "compose",
    "cutout",
    "flip_lr",
    "random_crop",
    "translate",
]


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
    x: torch.Tensor, dx: int | torch.Tensor, dy: int | torch.Tensor, fill: float = 0.0
) -> torch.Tensor:
    """Shift images right by ``dx`` and down by ``dy`` pixels, filling the vacated border.

    ``dx``/``dy`` are ints (the same shift for all) or int tensors of shape ``(N,)``
    (one shift per sample); negative values shift left/up. With tensors, the largest shift is
    read back to the host once (a sync on GPUs); ``random_crop`` never needs that.

    Example::

        >>> import torch
        >>> x = torch.arange(9.).reshape(1, 1, 3, 3)
        >>> translate(x, dx=1, dy=0)[0, 0]
        tensor([[0., 0., 1.],
                [0., 3., 4.],
                [0., 6., 7.]])
    """
    n, _, h, w = _check_batch(x)
    shifts = []
    for name, v, size in (("dx", dx, w), ("dy", dy, h)):
        t = torch.as_tensor(v, device=x.device)
        if t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"{name}: expected an int or an int tensor, got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(n)
        elif t.shape != (n,):
            raise ValueError(f"{name}: expected an int or shape ({n},), got shape {tuple(t.shape)}")
        shifts.append(t.long().clamp(-size, size))  # a shift by the full size is all fill
    sx, sy = shifts
    if isinstance(dx, int) and isinstance(dy, int):  # no device round trip for plain ints
        p = max(min(abs(dx), w), min(abs(dy), h))
    else:
        p = int(torch.maximum(sx.abs().max(), sy.abs().max()))
    if p == 0:
        return x.clone()
    return _window(x, p - sy, p - sx, p, fill)


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
