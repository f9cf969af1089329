"""Data: dataset readers (``datasets``), the device-resident loader and batched augmentation.

Example::

    >>> from brisk.data import DeviceLoader, load_digits
    >>> (x, y), _ = load_digits()
    >>> loader = DeviceLoader(x, y, batch_size=256)
    >>> xb, yb = next(iter(loader))
    >>> xb.dtype, yb.dtype
    (torch.float32, torch.int64)
"""

# Nothing here imports brisk.engine: the engine depends on data, never the reverse.
from brisk.data import augment
from brisk.data.datasets import (
    STATS,
    ChecksumError,
    DatasetNotFoundError,
    compute_stats,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)
from brisk.data.loader import DeviceLoader

__all__ = [
    "STATS",
    "ChecksumError",
    "DatasetNotFoundError",
    "DeviceLoader",
    "augment",
    "compute_stats",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
]
