"""DeviceLoader: the whole dataset as tensors on the training device, batches by gather.

A ``torch.utils.data.DataLoader`` over a ``TensorDataset`` indexes one sample at a time in
Python and collates the results; at small batch sizes that per-sample work dominates. Here the
data is stored once on the device (uint8 images stay uint8: 4x less memory than float32), an
epoch is one seeded ``randperm`` on the device, and batches are ``index_select`` gathers of the
stored tensor by slices of that permutation, followed by the float conversion and
normalisation (done for a few batches at a time to amortise per-op overhead) and the optional
per-batch augmentation, all on the device. There is no Python loop over samples anywhere.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["DeviceLoader"]

Transform = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]

_M64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _mix(*values: int) -> int:
    """A well-spread 63-bit seed from small integers: (seed, epoch) pairs never collide
    the way ``seed + epoch`` would (seed 0 epoch 1 == seed 1 epoch 0)."""
    h = 0
    for v in values:
        h = _splitmix64(h ^ (int(v) & _M64))
    return h >> 1


def _as_tensor(a: Any, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach()
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as e:  # ragged lists and the like
            raise TypeError(f"{name}: expected a numpy array or torch tensor ({e})") from e
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise TypeError(
            f"{name}: expected a numeric numpy array or torch tensor, got dtype {a.dtype}"
        )
    if not a.flags.writeable or not a.flags.c_contiguous or a.dtype.byteorder == ">":
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
        if not a.flags.writeable:
            a = a.copy()
    return torch.from_numpy(a)


class DeviceLoader:
    """Iterate ``(x, y)`` batches of in-memory data that lives on the training device.

    Args:
        x: inputs, numpy array or tensor, first axis = samples. ``uint8`` is stored as is (4x
            less memory) and each batch becomes float32 with the same values, 0..255, as Keras
            feeds them; scale with ``rescale=1/255``, ``mean``/``std`` or a ``Rescaling``
            layer in the model. Other dtypes are stored as float32.
        y: targets or None (then batches are just ``x``). Integer labels become int64, float
            targets float32.
        batch_size: samples per batch (the last one is smaller unless ``drop_last``).
        shuffle: a fresh seeded permutation every epoch; else the stored order.
        drop_last: drop the final partial batch.
        device: where batches are produced (default ``'cpu'``).
        seed: with the epoch number, determines the order and the augmentation randomness.
        transform: ``transform(x_batch, generator) -> x_batch`` applied after conversion and
            normalisation, e.g. ``brisk.augment.compose(RandomCrop(4), FlipLR())``. The
            generator is a device generator seeded from (seed, epoch, rank).
        sample_weight: per-sample weights, shape (N,) (Keras's ``fit(sample_weight=)``):
            batches are then ``(x, y, w)``, shuffled together.
        rescale: multiply each batch by this factor (Keras's ``Rescaling(scale)``), e.g.
            ``1/255`` for uint8 images in 0..1: ``x * (1/255)``, within one float32 ulp of
            ``x / 255``; 0 and 255 map exactly to 0 and 1.
        mean, std: per-channel normalisation ``(x - mean) / std`` on the 0..1 scale (see
            ``brisk.data.STATS``): uint8 data is divided by 255 first. Computed as
            ``x * scale - shift`` with the constants folded
            in float64 (a few float32 ulps from the three-step formula). One value for ``(N, H, W)`` data; C values for 4-D data, on
            the last axis for Keras NHWC input and on axis 1 for NCHW input.
        channels_last_input: which axis of 4-D ``x`` is the channel axis for ``mean``/``std``:
            True = last (NHWC), False = axis 1 (NCHW), None = whichever has ``len(mean)``
            entries, the last axis winning a tie. Batches keep the layout they were given in.
        pin_memory: for CUDA when the data stays in CPU memory: gather each batch into pinned
            staging buffers and copy it with ``non_blocking=True`` (default True there).
        integer_inputs: token ids for an embedding: integer ``x`` is stored as int64 and its
            batches stay int64, unscaled (then ``mean``/``std``/``rescale``/``transform``
            raise ``ValueError``). A float ``x`` is unaffected. ``brisk.Trainer`` sets it for
            models that contain an ``nn.Embedding``.
        resident: store the data on ``device``. None: always on CPU; on CUDA when the dataset
            takes less than half the free GPU memory, else it stays in CPU memory and each
            batch is copied over, one batch ahead.

    Epochs: ``set_epoch(e)`` fixes the epoch used by following iterations (as with
    ``DistributedSampler``); without it, each new iteration advances the epoch by one, so
    the order changes every epoch like a plain shuffled DataLoader. The same seed, epoch and
    device always give the same order (CPU and CUDA generators give different ones).

    Example::

        >>> import numpy as np
        >>> x = np.arange(10 * 4, dtype=np.uint8).reshape(10, 2, 2)
        >>> loader = DeviceLoader(x, np.arange(10), batch_size=4, mean=[0.5], std=[0.25])
        >>> len(loader), loader.num_samples
        (3, 10)
        >>> [tuple(xb.shape) for xb, yb in loader]
        [(4, 2, 2), (4, 2, 2), (2, 2, 2)]
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        batch_size: int = 32,
        shuffle: bool = True,
        drop_last: bool = False,
        device: str | torch.device | None = None,
        seed: int = 0,
        transform: Transform | None = None,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        channels_last_input: bool | None = None,
        pin_memory: bool | None = None,
        resident: bool | None = None,
        rescale: float | None = None,
        sample_weight: Any = None,
        integer_inputs: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"batch_size: expected a positive int, got {batch_size!r}")
        if batch_size <= 0:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed: expected an int, got {seed!r}")
        if transform is not None and not callable(transform):
            raise TypeError(
                f"transform: expected a callable (x, generator) -> x, got {transform!r}"
            )
        if rescale is not None and (isinstance(rescale, bool) or not isinstance(rescale, (int, float))
                                    or not math.isfinite(rescale) or rescale == 0):
            raise ValueError(f"rescale: expected a finite non-zero number or None, got {rescale!r}")
        if rescale is not None and (mean is not None or std is not None):
            raise ValueError("rescale: give rescale or mean/std, not both (mean and std are "
                             "on the 0..1 scale: uint8 data is divided by 255 for them)")
        if channels_last_input not in (None, True, False):
            raise TypeError(
                f"channels_last_input: expected True, False or None, got {channels_last_input!r}"
            )

        xt = _as_tensor(x, "x")
        # Token ids for an embedding: integer features stay exact int64 batches.
        self.integer_inputs = bool(integer_inputs) and not xt.is_floating_point()
        if self.integer_inputs and (mean is not None or std is not None or rescale is not None
                                    or transform is not None):
            raise ValueError("integer_inputs: token ids are not scaled or transformed; give "
                             "no mean, std, rescale or transform")
        if xt.ndim == 0 or len(xt) == 0:
            raise ValueError(
                f"x: expected a non-empty array with samples on axis 0, got shape {tuple(xt.shape)}"
            )
        yt = None
        if y is not None:
            yt = _as_tensor(y, "y")
            if yt.ndim == 0 or len(yt) != len(xt):
                raise ValueError(
                    f"x and y: different numbers of samples ({len(xt)} vs "
                    f"{len(yt) if yt.ndim else 'a scalar'})"
                )

        wt = None
        if sample_weight is not None:
            if yt is None:
                raise ValueError("sample_weight: needs y (weights belong to labelled samples)")
            wt = _as_tensor(sample_weight, "sample_weight")
            if wt.dim() == 2 and wt.shape[1] == 1:
                wt = wt.reshape(-1)
            if wt.dim() != 1 or len(wt) != len(xt):
                raise ValueError(f"sample_weight: expected shape ({len(xt)},), got {tuple(wt.shape)}")
            if not bool(torch.isfinite(wt.double()).all()) or bool((wt < 0).any()):
                raise ValueError("sample_weight: expected finite weights >= 0")

        self.device = torch.device(device if device is not None else "cpu")
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.transform = transform
        self.rank, self.world_size = 0, 1
        self._n = len(xt)
        self.num_samples = self._n  # per epoch, for this shard (before drop_last)
        self._epoch: int | None = None  # set by set_epoch
        self._auto_epoch = 0  # next epoch when set_epoch is never called

        # Storage dtypes: uint8 images stay uint8 (converted per batch); the rest float32/int64.
        x_dtype = torch.uint8 if xt.dtype == torch.uint8 else torch.float32
        if self.integer_inputs:
            x_dtype = torch.int64
        y_dtype = None
        if yt is not None:
            y_dtype = torch.float32 if yt.is_floating_point() else torch.int64
        nbytes = self._n * math.prod(xt.shape[1:]) * x_dtype.itemsize
        if yt is not None:
            nbytes += self._n * math.prod(yt.shape[1:]) * 8

        if resident is None:
            if self.device.type == "cuda" and xt.device != self.device:
                free, _total = torch.cuda.mem_get_info(self.device)
                resident = nbytes < 0.5 * free  # leave half for the model, activations
            else:
                resident = True
        self.resident = bool(resident) or xt.device == self.device
        store = self.device if self.resident else torch.device("cpu")
        self._staged = self.device.type == "cuda" and not self.resident
        self.pin_memory = self._staged and (pin_memory is None or bool(pin_memory))

        # Convert the dtype where the data already is (float64 -> float32 halves the copy).
        self._x = xt.to(x_dtype).to(store).contiguous()
        self._y = None if yt is None else yt.to(y_dtype).to(store).contiguous()
        self._w = None if wt is None else wt.to(torch.float32).to(store).contiguous()
        # Each batch becomes x * scale - shift: the (x / 255 - mean) / std of the docs as one
        # multiply and one subtract (within 2 float32 ulps of the three-step formula, and
        # about 30% faster than dividing: division is the slowest vector op on CPUs).
        self._scale: float | torch.Tensor | None
        self._shift: torch.Tensor | None
        self._scale, self._shift = self._affine(
            mean,
            std,
            tuple(xt.shape),
            channels_last_input,
            255.0 if x_dtype == torch.uint8 else 1.0,
            rescale,
        )
        self._sample_elems = max(1, math.prod(xt.shape[1:]))
        self._chunk_batches: int | None = None  # None: chosen per epoch by _batches_per_chunk

    # ------------------------------------------------------------------ setup helpers
    def _affine(self, mean, std, shape, channels_last_input, divisor, rescale=None):
        """(scale, shift) with batch = x * scale - shift, or (None, None) for a plain cast."""
        if mean is None and std is None:
            return (None if rescale is None else float(rescale)), None
        if mean is None or std is None:
            raise ValueError("mean and std: give both or neither")
        m = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float64).reshape(-1)
        if len(m) == 0 or len(m) != len(s):
            raise ValueError(
                f"mean and std: expected the same non-zero length, got {len(m)} and {len(s)}"
            )
        if not bool((s > 0).all()):
            raise ValueError(f"std: expected positive values, got {s.tolist()}")
        c = len(m)
        if c > 1:
            if len(shape) != 4:
                raise ValueError(
                    f"mean: {c} values, but x of shape {shape} has a single channel; give one value"
                )
            if channels_last_input is None:
                axis = -1 if shape[-1] == c else (1 if shape[1] == c else None)
            else:
                axis = -1 if channels_last_input else 1
            if axis is None or shape[axis] != c:
                where = {None: "last or second", True: "last", False: "second"}[channels_last_input]
                raise ValueError(
                    f"mean: {c} values, but x of shape {shape} does not have {c} channels on "
                    f"its {where} axis (channels_last_input={channels_last_input})"
                )
            view = (c,) if axis == -1 else (c, 1, 1)  # NHWC: last axis; NCHW: axis 1
            m, s = m.reshape(view), s.reshape(view)
        f32 = dict(dtype=torch.float32, device=self.device)
        # float64 here so the only float32 roundings are those of the two per-batch ops.
        return (1.0 / (divisor * s)).to(**f32), (m / s).to(**f32)

    # ------------------------------------------------------------------ public API
    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the following iterations (order and augmentation randomness).

        Example::

            >>> loader = DeviceLoader(list(range(6)), batch_size=6)
            >>> loader.set_epoch(3)
            >>> a = next(iter(loader)); b = next(iter(loader))
            >>> bool((a == b).all())
            True
        """
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch: expected a non-negative int, got {epoch!r}")
        self._epoch = int(epoch)

    def shard(self, rank: int, world_size: int) -> DeviceLoader:
        """This rank's part of every epoch, for data-parallel training.

        All ranks draw the same permutation from the shared seed and rank ``r`` takes positions
        ``r, r + world_size, ...``. When the sample count is not divisible by ``world_size`` the
        permutation is padded by wrapping around to its start (as ``DistributedSampler`` does),
        so every rank gets ``ceil(n / world_size)`` samples and a few samples appear twice per
        epoch. The data tensors are shared, not copied.

        Example::

            >>> loader = DeviceLoader(list(range(10)), batch_size=2)
            >>> [s.num_samples for s in (loader.shard(0, 3), loader.shard(2, 3))]
            [4, 4]
        """
        for name, v in (("rank", rank), ("world_size", world_size)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name}: expected an int, got {v!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"rank, world_size: expected 0 <= rank < world_size, got {rank}, {world_size}"
            )
        if self.world_size != 1:
            raise ValueError("shard: this loader is already a shard; shard the full loader")
        out = copy.copy(self)
        out.rank, out.world_size = int(rank), int(world_size)
        out.num_samples = math.ceil(self._n / world_size)
        out._epoch, out._auto_epoch = self._epoch, 0
        return out

    def __iter__(self) -> Iterator[Any]:
        if self._epoch is not None:
            epoch = self._epoch
        else:
            epoch = self._auto_epoch
            self._auto_epoch += 1
        return self._iterate(epoch)

    def __repr__(self) -> str:
        y = "None" if self._y is None else f"{self._y.dtype}{tuple(self._y.shape)}"
        shard = f", rank={self.rank}, world_size={self.world_size}" if self.world_size > 1 else ""
        return (
            f"DeviceLoader(x={self._x.dtype}{tuple(self._x.shape)}, y={y}, "
            f"batch_size={self.batch_size}, shuffle={self.shuffle}, drop_last={self.drop_last}, "
            f"device={self.device}, resident={self.resident}{shard})"
        )

    # ------------------------------------------------------------------ iteration
    def _order(self, epoch: int) -> torch.Tensor:
        """This epoch's sample indices for this shard, on the storage device."""
        dev = self._x.device
        if self.shuffle:
            g = torch.Generator(device=dev)
            g.manual_seed(_mix(self.seed, epoch))
            order = torch.randperm(self._n, generator=g, device=dev)
        else:
            order = torch.arange(self._n, device=dev)
        if self.world_size > 1:
            total = self.num_samples * self.world_size
            if total > self._n:  # wrap around (repeat when world_size > n)
                order = order.repeat(math.ceil(total / self._n))[:total]
            order = order[self.rank :: self.world_size]
        return order

    def _batches_per_chunk(self) -> int:
        """How many batches to gather and convert with one set of ops.

        Per-op overhead (~3 us on CPU, a ~5 us kernel launch on CUDA) dominates small batches,
        so small batches are gathered a few at a time. On CUDA: up to 4M elements. On CPU the
        chunk stays within torch's 32768-element parallel grain when torch uses several
        threads: on this project's 2-core machine, 2**18-element chunks ran MNIST at batch 32
        at 1.6 M samples/s when idle but 33 k/s while another process held a core (the
        intra-op threads wait on the descheduled one). Single-threaded, 2**18 is safe and
        gave 1.28 vs 1.0 M samples/s.
        """
        if self._chunk_batches is not None:
            return self._chunk_batches
        if self.device.type == "cuda":
            elems = 1 << 22
        else:
            elems = 1 << (18 if torch.get_num_threads() == 1 else 15)
        return max(1, elems // (self.batch_size * self._sample_elems))

    def _convert(self, xb: torch.Tensor) -> torch.Tensor:
        """Stored dtype -> normalised float32; xb is always a fresh gather, never the store."""
        if self.integer_inputs:
            return xb
        if xb.dtype != torch.float32:
            xb = xb.to(torch.float32)
        if self._scale is not None:
            xb = xb.mul_(self._scale)
        if self._shift is not None:
            xb = xb.sub_(self._shift)
        return xb

    def _finish(self, xb: torch.Tensor, yb: torch.Tensor | None, gen, wb=None):
        xb = self._convert(xb)
        if self.transform is not None:
            xb = self.transform(xb, gen)
        if wb is not None:
            return xb, yb, wb
        return xb if yb is None else (xb, yb)

    def _iterate(self, epoch: int) -> Iterator[Any]:
        order = self._order(epoch)
        gen = None
        if self.transform is not None:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(_mix(self.seed, epoch, self.rank, 1))  # distinct from the order's
        bs = self.batch_size
        stop = len(order) - len(order) % bs if self.drop_last else len(order)
        if self._staged:
            yield from self._iterate_staged(order, stop, gen)
            return
        x, y, w, tf = self._x, self._y, self._w, self.transform
        step = bs * self._batches_per_chunk()  # a whole number of batches per chunk
        for c in range(0, stop, step):
            idx = order[c : min(c + step, stop)]
            xc = self._convert(x.index_select(0, idx))
            yc = None if y is None else y.index_select(0, idx)
            wc = None if w is None else w.index_select(0, idx)
            for b in range(0, len(idx), bs):
                xb = xc[b : b + bs]  # a view; the transform sees exactly one batch
                if tf is not None:
                    xb = tf(xb, gen)
                if wc is not None:
                    yield xb, yc[b : b + bs], wc[b : b + bs]
                else:
                    yield xb if yc is None else (xb, yc[b : b + bs])

    def _iterate_staged(self, order: torch.Tensor, stop: int, gen) -> Iterator[Any]:
        """CUDA with CPU-resident data: gather on the CPU, copy one batch ahead."""
        bs, x, y, w = self.batch_size, self._x, self._y, self._w
        starts = list(range(0, stop, bs))
        if not self.pin_memory or w is not None:  # weights: the plain copy (no staging buffers)
            for s in starts:
                idx = order[s : s + bs]
                xb = x.index_select(0, idx).to(self.device)
                yb = None if y is None else y.index_select(0, idx).to(self.device)
                wb = None if w is None else w.index_select(0, idx).to(self.device)
                yield self._finish(xb, yb, gen, wb)
            return
        # Two pinned staging buffers: batch i is gathered into buffer i % 2 while batch i - 1
        # is in use; before reusing a buffer we wait for the copy that last read it.
        xbuf = [torch.empty((bs, *x.shape[1:]), dtype=x.dtype, pin_memory=True) for _ in range(2)]
        ybuf = (
            [None, None]
            if y is None
            else [torch.empty((bs, *y.shape[1:]), dtype=y.dtype, pin_memory=True) for _ in range(2)]
        )
        done: list[torch.cuda.Event | None] = [None, None]
        copy_stream = torch.cuda.Stream(device=self.device)

        def stage(i: int):
            k = i % 2
            if done[k] is not None:
                done[k].synchronize()
            idx = order[starts[i] : starts[i] + bs]
            xs = torch.index_select(x, 0, idx, out=xbuf[k][: len(idx)])
            ys = None if y is None else torch.index_select(y, 0, idx, out=ybuf[k][: len(idx)])
            with torch.cuda.stream(copy_stream):
                xb = xs.to(self.device, non_blocking=True)
                yb = None if ys is None else ys.to(self.device, non_blocking=True)
                done[k] = torch.cuda.Event()
                done[k].record(copy_stream)
            return xb, yb, done[k]

        nxt = stage(0) if starts else None
        for i in range(len(starts)):
            xb, yb, ev = nxt
            if i + 1 < len(starts):
                nxt = stage(i + 1)  # gather and launch the next copy before this batch's compute
            cur = torch.cuda.current_stream(self.device)
            cur.wait_event(ev)
            # Allocated on copy_stream, used on the compute stream: tell the caching allocator.
            xb.record_stream(cur)
            if yb is not None:
                yb.record_stream(cur)
            yield self._finish(xb, yb, gen)
