"""A pretrained model's input preprocessing, applied to whole batches on their device.

Example::

    pre = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), size=(224, 224))
    x = torch.randint(0, 256, (8, 64, 64, 3), dtype=torch.uint8)   # NHWC uint8, 0..255
    pre(x).shape                                  # torch.Size([8, 3, 224, 224]), normalised
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "nearest-exact")


class Preprocess(nn.Module):
    """uint8 or [0, 1] float images -> the normalised float batch a pretrained model expects.

    Input: a batch of images, a tensor (or NumPy array) of shape ``(N, C, H, W)`` (torch's
    layout), ``(N, H, W, C)`` (Keras's; recognised by its last axis having 1 or 3 entries
    when axis 1 has neither) or ``(N, H, W)`` (grayscale), with ``C`` 1 or 3 (RGB order);
    dtype uint8 with values 0..255, or floating point with values in [0, 1]. float64 is
    computed in float32; float16/bfloat16 stay as they are. The work happens on the
    batch's own device, once per batch:

    1. uint8 -> float, divided by 255;
    2. one channel -> three (the same values; ImageNet models take RGB);
    3. resized to ``size`` (``torch.nn.functional.interpolate`` with ``interpolation``,
       antialiased for bilinear/bicubic, as torchvision's ``Resize``) when ``size`` is set
       and the batch's (H, W) differ; aspect ratios are not kept (no crop);
    4. ``(x - mean) / std`` per channel.

    Output: ``(N, 3, H', W')`` float NCHW. Raises ``ValueError`` for another rank or channel
    count, ``TypeError`` for other dtypes (bool, integers other than uint8).

    ``mean``/``std`` are on the [0, 1] scale (ImageNet's ``(0.485, 0.456, 0.406)`` /
    ``(0.229, 0.224, 0.225)``); they are non-persistent buffers, so they follow
    ``.to(device)`` and stay out of ``state_dict()``.

    ``unit_images = True`` tells ``brisk.Trainer`` that this model takes floats in [0, 1]:
    it divides uint8 batches by 255 for it, where it would otherwise cast them to 0..255
    floats as Keras does.
    """

    unit_images = True  # read by brisk.Trainer (engine/trainer.py): uint8 batches -> [0, 1]

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 size: tuple[int, int] | None = None, interpolation: str = "bilinear"):
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std: expected 3 values each (RGB), got {mean!r}, {std!r}")
        if any(float(s) <= 0 for s in std):
            raise ValueError(f"std: expected positive values, got {std!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation: expected one of {INTERPOLATIONS}, got {interpolation!r}")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.interpolation = interpolation
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"images: expected a tensor or NumPy array, got {type(x).__name__}")
        x = x.to(self.mean.device, non_blocking=True)
        if x.dim() == 3:
            x = x.unsqueeze(1)  # (N, H, W): grayscale
        if x.dim() != 4:
            raise ValueError(f"images: expected (N, C, H, W), (N, H, W, C) or (N, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] not in (1, 3):
            if x.shape[-1] not in (1, 3):
                raise ValueError(f"images: expected 1 or 3 channels on axis 1 (NCHW) or the last "
                                 f"axis (NHWC), got shape {tuple(x.shape)}")
            x = x.permute(0, 3, 1, 2)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        elif x.dtype == torch.float64:
            x = x.float()
        elif not x.is_floating_point():
            raise TypeError(f"images: expected uint8 (0..255) or floating point (0..1), got {x.dtype}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            smooth = self.interpolation in ("bilinear", "bicubic")
            x = F.interpolate(x, size=self.size, mode=self.interpolation,
                              align_corners=False if smooth else None, antialias=smooth)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        mean = tuple(round(v, 4) for v in self.mean.flatten().tolist())
        std = tuple(round(v, 4) for v in self.std.flatten().tolist())
        return f"size={self.size}, interpolation={self.interpolation!r}, mean={mean}, std={std}"
