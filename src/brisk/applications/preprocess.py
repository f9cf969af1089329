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

    The first float batch a ``Preprocess`` sees must lie in [0, 1] (within [-0.5, 1.5]):
    0..255 floats (what Keras's applications take) or already normalised images raise
    ``ValueError`` rather than being misread; later batches are not checked (a check per
    batch would be a host sync per step). A 3-D batch whose last axis is 3 (a single
    (H, W, 3) image) is refused too.

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
        self._range_checked = False  # float inputs: [0, 1] checked on the first batch
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
            if x.shape[-1] == 3 and x.shape[0] > 3:
                raise ValueError(f"images: a 3-D batch is read as (N, H, W) grayscale, and this "
                                 f"one's last axis is 3: a single (H, W, 3) image? Add the batch "
                                 f"axis (x[None]); got shape {tuple(x.shape)}")
            x = x.unsqueeze(1)  # (N, H, W): grayscale
        if x.dim() != 4:
            raise ValueError(f"images: expected (N, C, H, W), (N, H, W, C) or (N, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] not in (1, 3):
            if x.shape[-1] not in (1, 3):
                raise ValueError(f"images: expected 1 or 3 channels on axis 1 (NCHW) or the last "
                                 f"axis (NHWC), got shape {tuple(x.shape)}")
            x = x.permute(0, 3, 1, 2)
        was_float = x.dtype != torch.uint8
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        elif x.dtype == torch.float64:
            x = x.float()
        elif not x.is_floating_point():
            raise TypeError(f"images: expected uint8 (0..255) or floating point (0..1), got {x.dtype}")
        if was_float and not self._range_checked:  # once, the first float batch: no per-step sync
            lo, hi = float(x.amin()), float(x.amax())
            if hi > 1.5 or lo < -0.5:
                raise ValueError(
                    f"images: float images are read as values in [0, 1] (uint8 as 0..255); this "
                    f"batch spans [{lo:.3g}, {hi:.3g}]: divide 0..255 floats by 255 (Keras's "
                    f"applications take 0..255 floats), pass uint8, or undo a normalisation "
                    f"(the model applies its own mean and std)")
            self._range_checked = True
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
