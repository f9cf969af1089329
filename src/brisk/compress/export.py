"""Deep Compression file format: sparse storage + weight sharing + entropy coding.

Han, Mao & Dally (2016), "Deep Compression", as a single file:

1. **Pruned weights stored sparsely.** A weight tensor (any floating tensor with 2+ dims:
   Linear, Conv, ...) is flattened row-major; only its nonzeros are stored, each preceded by
   the number of zeros skipped since the previous one. Skips are symbols of ``index_bits``
   bits (5 for fully connected, 8 for conv weights, as in the paper); the largest symbol,
   ``E = 2**index_bits - 1``, is an escape meaning "skip E zeros, no weight here" -- the
   paper's padding zero, except that it costs no weight symbol.
2. **Weight sharing.** Each layer's nonzeros are clustered by 1-D k-means into a codebook
   of ``2**bits`` float32 centroids (5 bits fc, 8 bits conv by default), initialised
   linearly between min and max (the paper's recommendation), refined by vectorised Lloyd
   iterations; a weight is stored as its centroid index. If a layer already has at most
   ``2**bits`` distinct nonzero values (e.g. after ``share_weights`` and its codebook
   fine-tuning), those values are the codebook, exactly.
3. **Entropy coding** of the index and skip symbol streams: ``entropy='huffman'`` (default,
   a canonical Huffman coder in numpy, code lengths capped at 16 bits, stored per stream),
   ``'lzma'`` / ``'zlib'`` (stdlib, raw streams of one byte per symbol; *not* Huffman),
   or ``'none'`` (fixed-width bit packing). On LeNet-300-100 pruned to 8% (5-bit values,
   5-bit skips) Huffman gave the smallest file; see ``benchmarks/compression.py``.

``bits=None`` skips step 2: the nonzeros are stored exactly (float32 after their skips),
the lossless sparse file of a pruned model.

Everything else (biases, BatchNorm statistics, other buffers) is stored raw: floats as
``raw_dtype`` (float32 by default, float16 to halve them), integers as they are.

File layout (little-endian)::

    b"BRISKCMP" | u32 version (2) | u32 header length | u32 CRC32 | header | payload

The header is JSON (utf-8) compressed with zlib (it is ~5% of a LeNet file otherwise); it
lists every tensor (name, shape, dtype, encoding, offsets into the payload), the payload's
size, and, for a built ``brisk.Sequential`` of brisk layers, its ``get_config()``
(architecture and compile settings), so that ``load(path)`` returns the model itself. The
CRC32 covers everything after it, header and payload: zlib's adler32 covers the header's
JSON, not its compressed bytes (a flip in the padding bits of the deflate stream's last
byte goes unseen), and a fixed-width field keeps a file's size a function of its structure
(a CRC written in the JSON header would vary it by a byte or two). Version 1 files (no
CRC32 field, no payload size, no config) still load. Writes are atomic (temporary file in
the same directory, then ``os.replace``).

Files are untrusted input: ``load`` checks the prefix (magic, version, header length
within the file), both checksums, and every header field's type and range (offsets inside
the payload, counts consistent with the shapes) before decoding anything, so a flipped
bit or a truncation is a ``ValueError`` naming the file, never different weights. Sizes
are checked before anything is allocated:

- ``MAX_RATIO`` (1024): the tensors' decoded size (elements x bytes per element of their
  dtype) may be at most 1024x the file's size, so a file of ``n`` bytes makes ``load``
  allocate O(1024 n) bytes at most (a few times that in the decoders' temporaries), however
  crafted. Deep Compression files stay far below it (LeNet-300-100 at 8% nonzeros: ~40x);
  only near-empty sparse tensors reach it (an all-zero sparse tensor costs no payload byte)
  and ``save`` refuses to write such a file, pointing to ``sparse=False``, which costs at
  least one bit per element (32x for float32).
- lzma / zlib streams are decompressed with a bound of exactly the size they must decode
  to; Huffman code lengths are checked (at most ``MAX_CODE_LEN`` = 16 bits, Kraft's
  inequality) before the 2**16-entry lookup table is built.
- ``MAX_HEADER_BYTES`` (16 MiB): the decompressed header JSON.

``share_weights(model, bits)`` does step 2 in memory, as a parametrisation
``weight = codebook[index]``: training then updates the shared centroids with the sum of
the gradients of their weights (the paper's codebook fine-tuning), pruned zeros stay
zero, and ``save`` of that model stores exactly those values.

Example::

    from brisk.compress import prune, make_permanent, save, load, size_report
    prune(model, amount=0.92, scope="global"); make_permanent(model)
    save(model, "lenet.brisk", bits=5)
    load("lenet.brisk", model=fresh_model)         # weights = shared centroids
    size_report(model, "lenet.brisk")["ratio"]     # e.g. ~40x vs fp32 dense
    save(keras_model, "mlp.brisk"); load("mlp.brisk")  # a brisk.Sequential: the model back
"""

from __future__ import annotations

import contextlib
import heapq
import io
import json
import lzma
import math
import os
import struct
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from brisk.compress.prune import _choice, _targets, copy_model, is_pruned, make_permanent
from brisk.engine.checkpoint import atomic_write, refresh_pruned

__all__ = ["SharedWeights", "kmeans_1d", "load", "save", "share_weights", "size_report"]

MAGIC = b"BRISKCMP"
VERSION = 2  # 2: a CRC32 in the prefix, the payload's size and a Sequential's config
READS = (1, 2)
_PREFIX = {1: 16, 2: 20}  # bytes before the header: magic, version, header length (, CRC32)
ENTROPY = ("huffman", "lzma", "zlib", "none")
MAX_CODE_LEN = 16  # bits; keeps the decoder's lookup table at 2**16 entries
MAX_RATIO = 1024  # decoded bytes per file byte that load accepts (module docstring)
MAX_HEADER_BYTES = 1 << 24  # decompressed header JSON; ~300 B per tensor in practice
MAX_DIMS = 64  # torch's own limit on a tensor's dimensions
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9}]


class _Corrupt(ValueError):
    """What is wrong with a file, without its name; ``_naming`` adds it."""


@contextlib.contextmanager
def _naming(path: str | os.PathLike):
    """Turn ``_Corrupt('what')`` into ``ValueError("load: 'path': what")``."""
    try:
        yield
    except _Corrupt as e:
        raise ValueError(f"load: {os.fspath(path)!r}: {e}") from e


# ----------------------------------------------------------------- k-means
@torch.no_grad()
def kmeans_1d(values: torch.Tensor, k: int, iters: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster a 1-D tensor into at most ``k`` centroids; returns ``(codebook, assign)``
    with ``codebook`` sorted float32 and ``values ~= codebook[assign]``.

    Linear initialisation between min and max (Han et al. 2016), then Lloyd iterations:
    assignment by bucketing against the midpoints between sorted centroids (exact in 1-D),
    centroid = mean of its members (empty clusters keep their value). If there are at most
    ``k`` distinct values they are the codebook and ``codebook[assign] == values`` exactly.

    Example::

        v = torch.randn(1000)
        cb, a = kmeans_1d(v, 32)
        err = (cb[a] - v).abs().max()       # ~0.1: half a cluster width
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    v = values.detach().reshape(-1).float()
    if v.numel() == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    uniq = torch.unique(v)  # sorted
    if uniq.numel() <= k:
        return uniq, torch.searchsorted(uniq, v)
    v64 = v.double()
    c = torch.linspace(float(v64.min()), float(v64.max()), k, dtype=torch.float64)
    assign = None
    for _ in range(max(1, iters)):
        assign = torch.bucketize(v64, (c[1:] + c[:-1]) / 2)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.bincount(assign, weights=v64, minlength=k)
        new = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        done = torch.allclose(new, c, rtol=0, atol=1e-12)
        c = new
        if done:
            break
    cb = c.float()
    # Final assignment against the float32 codebook actually stored.
    assign = torch.bucketize(v, (cb[1:] + cb[:-1]) / 2)
    return cb, assign


# ---------------------------------------------------------- weight sharing
class SharedWeights(nn.Module):
    """Parametrisation ``weight = [0, *codebook][index]``: index 0 is a fixed zero
    (pruned weights), index i >= 1 the trainable centroid i-1. Autograd gives each
    centroid the sum of its weights' gradients (Han et al. 2016, codebook fine-tuning).
    Installed by ``share_weights``; build the optimizer after it so the codebooks train.

    Example::

        share_weights(model, bits=5)
        model[0].parametrizations.weight[0].codebook     # 32 trainable centroids
    """

    def __init__(self, codebook: torch.Tensor, index: torch.Tensor) -> None:
        super().__init__()
        self.codebook = nn.Parameter(codebook.clone())
        self.register_buffer("index", index.clone())

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        table = torch.cat([self.codebook.new_zeros(1), self.codebook])
        return table[self.index].to(original.dtype)


def _is_conv_weight(t: torch.Tensor) -> bool:
    return t.dim() >= 3


def _check_bits(arg: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 8:
        raise ValueError(f"{arg}: expected an integer number of bits in 1..8, got {v!r}")
    return v


def share_weights(
    model: nn.Module,
    bits: int = 5,
    conv_bits: int = 8,
    iters: int = 20,
    layers: Iterable[nn.Module | str] | None = None,
) -> nn.Module:
    """Weight sharing in place: each layer's nonzero weights become ``2**bits`` (Linear) or
    ``2**conv_bits`` (Conv) k-means centroids, kept trainable as a parametrisation so that
    fine-tuning updates the centroids (gradient summed per cluster); zeros stay zero.
    Pruning masks are made permanent first. ``make_permanent`` turns the shared weights
    back into plain tensors; ``save`` stores them exactly. Returns ``model``.

    Example::

        share_weights(model, bits=5)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)   # trains the codebooks
        ...
        save(model, "model.brisk")
    """
    _check_bits("bits", bits)
    _check_bits("conv_bits", conv_bits)
    targets = _targets(model, layers)
    if is_pruned(model):
        make_permanent(model)
    for name, m in targets:
        if parametrize.is_parametrized(m, "weight"):
            raise ValueError(
                f"share_weights: {name}.weight is already parametrized; call make_permanent first"
            )
        w = m.weight.detach()
        b = conv_bits if _is_conv_weight(w) else bits
        flat = w.reshape(-1)
        nz = flat != 0
        cb, assign = kmeans_1d(flat[nz], 2**b, iters)
        index = torch.zeros(flat.numel(), dtype=torch.long, device=w.device)
        index[nz] = assign.to(w.device) + 1
        parametrize.register_parametrization(
            m, "weight", SharedWeights(cb.to(w.device, w.dtype), index.view_as(w))
        )
    return model


# ----------------------------------------------------------------- Huffman
def _huffman_lengths(counts: np.ndarray, max_len: int = MAX_CODE_LEN) -> np.ndarray:
    """Code length per symbol (0 for absent symbols), at most ``max_len`` bits."""
    counts = counts.astype(np.int64)
    while True:
        present = np.flatnonzero(counts)
        lengths = np.zeros(len(counts), dtype=np.int64)
        if len(present) == 1:
            lengths[present] = 1
            return lengths
        heap = [(int(counts[s]), i, [int(s)]) for i, s in enumerate(present)]
        heapq.heapify(heap)
        tie = len(heap)
        while len(heap) > 1:
            c1, _, s1 = heapq.heappop(heap)
            c2, _, s2 = heapq.heappop(heap)
            lengths[s1 + s2] += 1
            heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
            tie += 1
        if lengths.max() <= max_len:
            return lengths
        # Too deep: flatten the distribution and retry (zlib-style heuristic).
        counts = np.where(counts > 0, (counts + 1) // 2, 0)


def _canonical_codes(lengths: np.ndarray) -> np.ndarray:
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev = 0, 0
    for s in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[s]) - prev
        codes[s] = code
        prev = int(lengths[s])
        code += 1
    return codes


def _pack(codes: np.ndarray, lens: np.ndarray) -> tuple[bytes, int]:
    """Concatenate variable-length codes (MSB first) into bytes; returns (bytes, n_bits)."""
    lens = lens.astype(np.int64)
    total = int(lens.sum())
    starts = np.cumsum(lens) - lens
    bits = np.zeros(total, dtype=np.uint8)
    for j in range(int(lens.max()) if len(lens) else 0):
        sel = lens > j
        bits[starts[sel] + j] = (codes[sel] >> (lens[sel] - 1 - j)) & 1
    return np.packbits(bits).tobytes(), total


def _huffman_encode(sym: np.ndarray, alphabet: int) -> tuple[bytes, int]:
    lengths = _huffman_lengths(np.bincount(sym, minlength=alphabet))
    codes = _canonical_codes(lengths)
    data, nbits = _pack(codes[sym], lengths[sym])
    return lengths.astype(np.uint8).tobytes() + data, nbits


def _check_code_lengths(lengths: np.ndarray) -> None:
    """A decodable prefix code, checked before its 2**L-entry table is built: 1..16 bits
    per present symbol and Kraft's inequality, sum of 2**-length <= 1."""
    used = lengths[lengths > 0]
    if not len(used):
        raise _Corrupt("Huffman code has no symbols")
    if used.max() > MAX_CODE_LEN:
        raise _Corrupt(f"Huffman code length {int(used.max())} exceeds {MAX_CODE_LEN} bits")
    if int(np.left_shift(1, MAX_CODE_LEN - used).sum()) > 1 << MAX_CODE_LEN:  # exact integers
        raise _Corrupt("Huffman code lengths violate Kraft's inequality (sum of 2**-len > 1)")


def _huffman_decode(buf: bytes, alphabet: int, n: int, nbits: int) -> np.ndarray:
    """``n`` symbols from ``buf`` = ``alphabet`` code lengths (bytes) + ``nbits`` bits of
    codes; raises ``ValueError`` unless they are exactly ``n`` valid codes."""
    lengths = np.frombuffer(buf[:alphabet], dtype=np.uint8).astype(np.int64)
    _check_code_lengths(lengths)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    codes = _canonical_codes(lengths)
    L = int(lengths.max())
    table_sym = np.full(1 << L, -1, dtype=np.int64)  # -1: no code starts with these bits
    table_len = np.ones(1 << L, dtype=np.int64)
    for s in np.flatnonzero(lengths):
        lo = int(codes[s]) << (L - int(lengths[s]))
        hi = (int(codes[s]) + 1) << (L - int(lengths[s]))
        table_sym[lo:hi], table_len[lo:hi] = s, lengths[s]
    bits = np.unpackbits(np.frombuffer(buf[alphabet:], dtype=np.uint8))[:nbits]
    bits = np.concatenate([bits, np.zeros(L, dtype=np.uint8)]).astype(np.int64)
    # The L-bit window starting at every bit position -> (symbol, length) there.
    window = np.zeros(nbits + 1, dtype=np.int64)
    for j in range(L):
        window = (window << 1) | bits[j : j + nbits + 1]
    sym_at, next_at = table_sym[window], np.minimum(np.arange(nbits + 1) + table_len[window], nbits)
    # Symbol i starts at next^i(0); pointer doubling finds all starts without a Python loop
    # per symbol: apply next^(2^k) where bit k of i is set.
    idx = np.arange(n)
    pos = np.zeros(n, dtype=np.int64)
    jump, k = next_at, 0
    while (1 << k) < n:
        sel = ((idx >> k) & 1).astype(bool)
        pos[sel] = jump[pos[sel]]
        jump = jump[jump]
        k += 1
    sym = sym_at[pos]
    end = int(pos[-1] + table_len[window[pos[-1]]])
    if (sym < 0).any() or end != nbits:
        raise _Corrupt(f"Huffman stream does not hold {n} codes in exactly {nbits} bits")
    return sym


# ------------------------------------------------------------ symbol streams
def _encode_stream(sym: np.ndarray, alphabet: int, coder: str, payload: io.BytesIO) -> dict:
    info: dict[str, Any] = {"offset": payload.tell(), "n": int(len(sym)), "alphabet": int(alphabet)}
    if len(sym) == 0:
        info["nbytes"] = 0
        return info
    if coder == "huffman":
        data, nbits = _huffman_encode(sym, alphabet)
        info["nbits"] = nbits
    elif coder == "none":
        data, nbits = _pack(sym.astype(np.int64), np.full(len(sym), _width(alphabet)))
        info["nbits"] = nbits
    else:
        raw = sym.astype(_byte_dtype(alphabet)).tobytes()
        if coder == "lzma":
            data = lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
        else:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: no header
            data = c.compress(raw) + c.flush()
    payload.write(data)
    info["nbytes"] = len(data)
    return info


def _width(alphabet: int) -> int:
    """Bits per symbol of the fixed-width coder ('none')."""
    return max(1, int(alphabet - 1).bit_length())


def _byte_dtype(alphabet: int) -> str:
    """One byte per symbol for the lzma / zlib coders, two above 256 symbols."""
    return "<u1" if alphabet <= 256 else "<u2"


def _decompress(d: Any, buf: bytes, limit: int, what: str) -> bytes:
    """All of ``buf`` through ``d`` (a zlib or lzma decompressor), never producing more
    than ``limit`` (>= 1: zlib reads 0 as no limit) bytes: a stream that would is refused,
    as is one that is cut short or followed by stray bytes."""
    try:
        out = d.decompress(buf, limit)
        # At the limit: one more byte decides between 'ends here' and 'decodes to more'.
        if not d.eof and d.decompress(getattr(d, "unconsumed_tail", b""), 1):
            raise _Corrupt(f"{what} decodes to more than {limit:,} bytes")
    except (zlib.error, lzma.LZMAError) as e:
        raise _Corrupt(f"{what} is corrupt ({e})") from e
    if not d.eof:
        raise _Corrupt(f"{what} is truncated")
    if d.unused_data:
        raise _Corrupt(f"{what} is followed by {len(d.unused_data)} stray bytes")
    return out


def _decode_stream(info: dict, coder: str, payload: memoryview) -> np.ndarray:
    """The symbols of a stream checked by ``_check_stream``; raises ``ValueError`` if they
    are not exactly ``n`` symbols of the alphabet."""
    n, alphabet = info["n"], info["alphabet"]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    buf = bytes(payload[info["offset"] : info["offset"] + info["nbytes"]])
    if coder == "huffman":
        sym = _huffman_decode(buf, alphabet, n, info["nbits"])
    elif coder == "none":
        width = _width(alphabet)
        bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8))[: n * width].reshape(n, width)
        sym = np.zeros(n, dtype=np.int64)
        for j in range(width):  # MSB first; one int64 per symbol, not per bit
            sym = (sym << 1) | bits[:, j]
    else:
        dt = np.dtype(_byte_dtype(alphabet))
        d = (
            lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
            if coder == "lzma"
            else zlib.decompressobj(-15)
        )
        raw = _decompress(d, buf, n * dt.itemsize, f"{coder} stream")
        if len(raw) != n * dt.itemsize:
            raise _Corrupt(f"{coder} stream decodes to {len(raw):,} bytes, not {n * dt.itemsize:,}")
        sym = np.frombuffer(raw, dtype=dt).astype(np.int64)
    if sym.max() >= alphabet:
        raise _Corrupt(f"stream symbol {int(sym.max())} is outside its alphabet of {alphabet}")
    return sym


def _skips_to_symbols(pos: np.ndarray, index_bits: int) -> np.ndarray:
    """Nonzero positions -> skip symbols, escape E = 2**b - 1 meaning 'E zeros, no weight'."""
    esc = (1 << index_bits) - 1
    skip = np.diff(pos, prepend=-1) - 1
    q, r = skip // esc, skip % esc
    ends = np.cumsum(q + 1) - 1
    out = np.full(int(ends[-1]) + 1 if len(ends) else 0, esc, dtype=np.int64)
    out[ends] = r
    return out


def _symbols_to_positions(sym: np.ndarray, index_bits: int) -> np.ndarray:
    esc = (1 << index_bits) - 1
    is_val = sym != esc
    advance = np.where(is_val, sym + 1, esc)
    return (np.cumsum(advance) - 1)[is_val]


# ------------------------------------------------------------------- save
def _plain_state_dict(model: nn.Module | Mapping) -> OrderedDict:
    if isinstance(model, Mapping):
        return OrderedDict((k, v) for k, v in model.items())
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model: expected a torch.nn.Module or a state_dict, got {type(model).__name__}"
        )
    if is_pruned(model) or any(parametrize.is_parametrized(m) for m in model.modules()):
        model = make_permanent(copy_model(model))
    return OrderedDict(model.state_dict())


_DTYPES = {
    "float32": (torch.float32, "<f4"),
    "float16": (torch.float16, "<f2"),
    "float64": (torch.float64, "<f8"),
    "bfloat16": (torch.bfloat16, None),
    "int64": (torch.int64, "<i8"),
    "int32": (torch.int32, "<i4"),
    "int16": (torch.int16, "<i2"),
    "int8": (torch.int8, "<i1"),
    "uint8": (torch.uint8, "<u1"),
    "bool": (torch.bool, "|b1"),
}
_NAME_OF = {v[0]: k for k, v in _DTYPES.items()}
_ITEMSIZE = {k: torch.empty(0, dtype=v[0]).element_size() for k, v in _DTYPES.items()}
_FLOATS = ("float32", "float16", "float64", "bfloat16")
_KINDS = ("raw", "sparse", "shared")


def _raw_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(_DTYPES[_NAME_OF[t.dtype]][1]).tobytes()


def _from_raw(payload: memoryview, offset: int, dtype: str, count: int) -> torch.Tensor:
    """``count`` elements of ``dtype`` at ``offset`` (checked to lie inside ``payload``)."""
    np_dtype = "<i2" if dtype == "bfloat16" else _DTYPES[dtype][1]
    t = torch.from_numpy(np.frombuffer(payload, np_dtype, count=count, offset=offset).copy())
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t


def _decoded_bytes(e: dict) -> int:
    """Bytes of the tensor an entry decodes to (its dtype, not the stored one)."""
    return math.prod(e["shape"]) * _ITEMSIZE[e["dtype"]]


def _check_ratio(entries: list[dict], file_bytes: int) -> None:
    total = sum(map(_decoded_bytes, entries))
    if total > MAX_RATIO * file_bytes:
        raise _Corrupt(
            f"its tensors decode to {total:,} bytes, more than MAX_RATIO = {MAX_RATIO} times "
            f"the file's {file_bytes:,} bytes"
        )


def _sequential_config(model: Any, state: Mapping[str, torch.Tensor]) -> dict | None:
    """``model.get_config()`` for a built ``brisk.Sequential`` of brisk layers whose config
    rebuilds exactly the tensors being saved; None otherwise (``load`` then returns the
    state_dict)."""
    from brisk.api.sequential import Sequential

    if not isinstance(model, Sequential) or not model.built:
        return None
    try:
        config = model.get_config()  # TypeError: a layer that is not a brisk layer
        want = _config_shapes(config)
    except (TypeError, _Corrupt):
        return None
    return config if want == {k: tuple(v.shape) for k, v in state.items()} else None


def save(
    model: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    bits: int | None = 5,
    sparse: bool = True,
    conv_bits: int = 8,
    index_bits: int = 5,
    conv_index_bits: int = 8,
    entropy: str = "huffman",
    raw_dtype: str = "float32",
    kmeans_iters: int = 20,
    metadata: Mapping[str, Any] | None = None,
) -> dict:
    """Write ``model`` (or a state_dict) as a Deep Compression file; returns
    ``{"path", "bytes", "tensors": {name: bytes}}``.

    Weight tensors (floating, 2+ dims) are clustered to ``2**bits`` centroids (Linear;
    ``conv_bits`` for conv weights) and, with ``sparse=True``, stored as skip/value symbol
    streams (``index_bits`` / ``conv_index_bits`` per skip); with ``sparse=False`` every
    element gets a symbol (0 = exact zero). ``bits=None``: no weight sharing -- the
    nonzeros are stored exactly, as ``raw_dtype`` values after their entropy-coded skips
    (a pruned model's lossless sparse file; with ``sparse=False`` weights are stored raw).
    ``entropy``: 'huffman', 'lzma', 'zlib' or 'none'. Other tensors are raw (floats as
    ``raw_dtype``: 'float32' or 'float16'). Pruning masks / shared-weight
    parametrisations are made permanent on a copy. A built ``brisk.Sequential`` of brisk
    layers also stores its ``get_config()`` (architecture, trainable flags, compile
    settings), so ``load(path)`` returns the model.

    Raises ``ValueError`` for a file ``load`` would refuse: one that decodes to more than
    ``MAX_RATIO`` times its size (near-empty sparse tensors: save with ``sparse=False``) or
    whose header exceeds ``MAX_HEADER_BYTES`` (huge ``metadata``).

    Example::

        save(model, "lenet.brisk", bits=5)
        save(model, "lenet-sparse.brisk", bits=None)    # lossless: float32 nonzeros
    """
    if bits is not None:
        _check_bits("bits", bits)
    for arg, v in (
        ("conv_bits", conv_bits),
        ("index_bits", index_bits),
        ("conv_index_bits", conv_index_bits),
    ):
        _check_bits(arg, v)
    entropy = _choice("entropy", entropy, ENTROPY)
    raw_dtype = _choice("raw_dtype", raw_dtype, ("float32", "float16"))
    state = _plain_state_dict(model)
    payload = io.BytesIO()
    entries = []
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"model: state_dict entry {name!r} is {type(t).__name__}, not a tensor")
        if t.is_quantized or t.dtype not in _NAME_OF:
            raise TypeError(
                f"model: {name!r} has dtype {t.dtype}; save the float model (before quantize)"
            )
        t = t.detach().cpu()
        start = payload.tell()
        e: dict[str, Any] = {"name": name, "shape": list(t.shape), "dtype": _NAME_OF[t.dtype]}
        if bits is None and sparse and t.is_floating_point() and t.dim() >= 2 and t.numel() > 0:
            # Lossless sparse: skips as symbols, then the nonzeros themselves.
            flat = t.reshape(-1)
            if t.dtype != getattr(torch, raw_dtype):
                flat = flat.to(getattr(torch, raw_dtype))
                e["stored_dtype"] = raw_dtype
            ib = conv_index_bits if _is_conv_weight(t) else index_bits
            pos = np.flatnonzero((flat != 0).numpy())
            e.update(kind="sparse", index_bits=ib, nnz=len(pos))
            e["skips"] = _encode_stream(_skips_to_symbols(pos, ib), 1 << ib, entropy, payload)
            e["offset"] = payload.tell()
            payload.write(_raw_bytes(flat[torch.from_numpy(pos)]))
        elif bits is not None and t.is_floating_point() and t.dim() >= 2 and t.numel() > 0:
            conv = _is_conv_weight(t)
            b = conv_bits if conv else bits
            flat = t.reshape(-1).float()
            nzmask = flat != 0
            cb, assign = kmeans_1d(flat[nzmask], 2**b, kmeans_iters)
            e.update(
                kind="shared",
                bits=b,
                sparse=sparse,
                nnz=int(nzmask.sum()),
                codebook={"offset": payload.tell(), "n": int(cb.numel())},
            )
            payload.write(cb.numpy().astype("<f4").tobytes())
            a = assign.numpy().astype(np.int64)
            if sparse:
                ib = conv_index_bits if conv else index_bits
                pos = np.flatnonzero(nzmask.numpy())
                e["index_bits"] = ib
                e["values"] = _encode_stream(a, int(cb.numel()), entropy, payload)
                e["skips"] = _encode_stream(_skips_to_symbols(pos, ib), 1 << ib, entropy, payload)
            else:
                dense = np.zeros(flat.numel(), dtype=np.int64)
                dense[nzmask.numpy()] = a + 1
                e["values"] = _encode_stream(dense, int(cb.numel()) + 1, entropy, payload)
        else:
            if t.is_floating_point() and t.dtype != getattr(torch, raw_dtype):
                t = t.to(getattr(torch, raw_dtype))
                e["stored_dtype"] = raw_dtype
            e.update(kind="raw", offset=payload.tell())
            payload.write(_raw_bytes(t))
        e["nbytes"] = payload.tell() - start
        entries.append(e)
    body = payload.getvalue()
    header = {
        "format": "brisk.compress",
        "version": VERSION,
        "entropy": entropy,
        "payload_bytes": len(body),
        "tensors": entries,
        "metadata": dict(metadata or {}),
    }
    config = _sequential_config(model, state)
    if config is not None:
        header["config"] = config
    text = json.dumps(header, separators=(",", ":")).encode()
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(
            f"save: the header would be {len(text):,} bytes, over the format's limit of "
            f"{MAX_HEADER_BYTES:,} (is metadata that large?)"
        )
    head = zlib.compress(text, 9)
    crc = zlib.crc32(body, zlib.crc32(head))  # of header + payload
    blob = MAGIC + struct.pack("<III", VERSION, len(head), crc) + head + body
    try:
        _check_ratio(entries, len(blob))
    except _Corrupt as e:  # name the tensor: the one decoding to the most per stored byte
        worst = max(entries, key=lambda t: _decoded_bytes(t) / max(t["nbytes"], 1))
        raise ValueError(
            f"save: {worst['name']!r} ({math.prod(worst['shape']):,} elements) takes "
            f"{worst['nbytes']:,} bytes, and the file would be refused by load: {e}; save with "
            "sparse=False and entropy='huffman' or 'none' (at least 1 bit per element)"
        ) from None

    path = os.fspath(path)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(blob)

    atomic_write(path, write)  # readers see the old file or the new one, never a part
    return {
        "path": path,
        "bytes": len(blob),
        "header_bytes": len(head) + _PREFIX[VERSION],
        "tensors": {e["name"]: e["nbytes"] for e in entries},
    }


# ------------------------------------------------------------- load: checks
def _clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters: a crafted header may hold megabytes in one
    field, and error messages quote it."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(v: Any) -> str:
    return _clip(repr(v), 60)


def _get(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, dict):
        raise _Corrupt(f"{where}: expected a JSON object, got {_short(d)}")
    if key not in d:
        raise _Corrupt(f"{where}: {key!r} is missing")
    return d[key]


def _int(d: Any, key: str, where: str, lo: int = 0, hi: int | None = None) -> int:
    v = _get(d, key, where)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        bounds = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise _Corrupt(f"{where}: {key} must be an integer {bounds}, got {_short(v)}")
    return v


def _one_of(d: Any, key: str, where: str, choices: Iterable[str]) -> str:
    v = _get(d, key, where)
    if not isinstance(v, str) or v not in choices:  # str first: v may be unhashable
        raise _Corrupt(f"{where}: {key} must be one of {', '.join(choices)}; got {_short(v)}")
    return v


def _region(d: dict, where: str, payload_bytes: int, nbytes: int | None = None) -> int:
    """Checks ``d['offset']`` and ``nbytes`` (default ``d['nbytes']``) against the payload;
    returns nbytes."""
    offset = _int(d, "offset", where)
    nbytes = _int(d, "nbytes", where) if nbytes is None else nbytes
    if offset + nbytes > payload_bytes:
        raise _Corrupt(
            f"{where}: bytes {offset:,}..{offset + nbytes:,} lie outside the "
            f"{payload_bytes:,}-byte payload"
        )
    return nbytes


def _check_shape(e: dict, where: str) -> int:
    """Checks ``e['shape']``; returns the number of elements."""
    shape = _get(e, "shape", where)
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63 for d in shape)
    ):
        raise _Corrupt(
            f"{where}: shape must be a list of at most {MAX_DIMS} non-negative integers, "
            f"got {_short(shape)}"
        )
    return math.prod(shape)


def _check_stream(
    s: Any, where: str, coder: str, payload_bytes: int, alphabet: int, n_lo: int, n_hi: int
) -> None:
    """A symbol stream of ``n`` in [n_lo, n_hi] symbols of ``alphabet``, inside the payload,
    its sizes consistent with ``coder``."""
    if _int(s, "alphabet", where) != alphabet:
        raise _Corrupt(f"{where}: alphabet must be {alphabet}, got {_short(s['alphabet'])}")
    n = _int(s, "n", where, n_lo, n_hi)
    nbytes = _region(s, where, payload_bytes)
    if n == 0:
        return
    if alphabet < 1:
        raise _Corrupt(f"{where}: {n} symbols of an empty alphabet")
    if coder == "huffman":
        if nbytes < alphabet:
            raise _Corrupt(f"{where}: {nbytes} bytes cannot hold its {alphabet} code lengths")
        _int(s, "nbits", where, n, 8 * (nbytes - alphabet))  # every code is >= 1 bit
    elif coder == "none":
        nbits = n * _width(alphabet)
        if _int(s, "nbits", where) != nbits or nbytes != -(-nbits // 8):
            raise _Corrupt(f"{where}: {n} symbols of {_width(alphabet)} bits need {nbits} bits")
    # lzma / zlib: decompressed with a bound of exactly the n symbols' bytes


def _check_skips(e: dict, where: str, coder: str, payload_bytes: int, numel: int, nnz: int):
    """Skip stream of a sparse tensor: one symbol per nonzero plus at most one escape per
    ``2**index_bits - 1`` zeros."""
    ib = _int(e, "index_bits", where, 1, 8)
    hi = nnz + (numel - nnz) // ((1 << ib) - 1)
    skips = _get(e, "skips", where)
    _check_stream(skips, f"{where}: skips", coder, payload_bytes, 1 << ib, nnz, hi)


def _check_raw(e: dict, where: str, coder: str, payload_bytes: int, numel: int, stored: str):
    nbytes = numel * _ITEMSIZE[stored]
    if _int(e, "nbytes", where) != nbytes:
        raise _Corrupt(
            f"{where}: {numel:,} {stored} elements are {nbytes:,} bytes, not {e['nbytes']!r}"
        )
    _region(e, where, payload_bytes, nbytes)


def _check_sparse(e: dict, where: str, coder: str, payload_bytes: int, numel: int, stored: str):
    nnz = _int(e, "nnz", where, 0, numel)
    _check_skips(e, where, coder, payload_bytes, numel, nnz)
    _region(e, f"{where}: values", payload_bytes, nnz * _ITEMSIZE[stored])


def _check_shared(e: dict, where: str, coder: str, payload_bytes: int, numel: int, stored: str):
    bits = _int(e, "bits", where, 1, 8)
    nnz = _int(e, "nnz", where, 0, numel)
    if not isinstance(_get(e, "sparse", where), bool):
        raise _Corrupt(f"{where}: sparse must be true or false, got {_short(e['sparse'])}")
    cb, cb_where = _get(e, "codebook", where), f"{where}: codebook"
    ncb = _int(cb, "n", cb_where, 1 if nnz else 0, 1 << bits)
    _region(cb, cb_where, payload_bytes, 4 * ncb)
    values, v_where = _get(e, "values", where), f"{where}: values"
    if e["sparse"]:
        _check_stream(values, v_where, coder, payload_bytes, ncb, nnz, nnz)
        _check_skips(e, where, coder, payload_bytes, numel, nnz)
    else:  # one symbol per element, 0 = zero
        _check_stream(values, v_where, coder, payload_bytes, ncb + 1, numel, numel)


_CHECK_KIND = {"raw": _check_raw, "sparse": _check_sparse, "shared": _check_shared}


def _check_entry(e: Any, i: int, coder: str, payload_bytes: int) -> str:
    """Every field of tensor entry ``i`` (types, ranges, regions); returns its name."""
    name = _get(e, "name", f"tensor {i}")
    if not isinstance(name, str):
        raise _Corrupt(f"tensor {i}: name must be a string, got {_short(name)}")
    where = f"tensor {_short(name)}"
    numel = _check_shape(e, where)
    dtype = _one_of(e, "dtype", where, tuple(_DTYPES))
    kind = _one_of(e, "kind", where, _KINDS)
    _int(e, "nbytes", where, 0, payload_bytes)
    stored = dtype
    if "stored_dtype" in e:
        stored = _one_of(e, "stored_dtype", where, ("float32", "float16"))
    if kind != "raw" and dtype not in _FLOATS:
        raise _Corrupt(f"{where}: a {kind} tensor must be floating, got dtype {dtype}")
    if stored != dtype and dtype not in _FLOATS:
        raise _Corrupt(f"{where}: stored_dtype {stored} needs a floating dtype, got {dtype}")
    _CHECK_KIND[kind](e, where, coder, payload_bytes, numel, stored)
    return name


def _check_header(
    header: Any, version: int, payload: memoryview, file_bytes: int, crc_ok: bool
) -> None:
    """The whole header against the prefix, the payload, the file's CRC32 (``crc_ok``) and
    the limits, before any tensor is decoded."""
    if _get(header, "format", "header") != "brisk.compress":
        raise _Corrupt(f"header: format is {_short(header['format'])}, not 'brisk.compress'")
    if _int(header, "version", "header") != version:
        raise _Corrupt(f"header: version {header['version']} differs from the prefix's {version}")
    coder = _one_of(header, "entropy", "header", ENTROPY)
    tensors = _get(header, "tensors", "header")
    if not isinstance(tensors, list):
        raise _Corrupt(f"header: tensors must be a list, got {_short(tensors)}")
    for key in ("metadata", "config"):
        if not isinstance(header.get(key, {}), dict):
            raise _Corrupt(f"header: {key} must be a JSON object, got {_short(header[key])}")
    if version >= 2:  # the checksum before the entries: a flipped bit names itself
        size = _int(header, "payload_bytes", "header")
        if size != len(payload):
            raise _Corrupt(
                f"the payload is {len(payload):,} bytes, the header says {size:,} (truncated?)"
            )
        if not crc_ok:
            raise _Corrupt("the CRC32 of the header and payload does not match (corrupt file)")
    names = [_check_entry(e, i, coder, len(payload)) for i, e in enumerate(tensors)]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise _Corrupt(f"tensor {_short(dup)} is listed twice")
    _check_ratio(tensors, file_bytes)


def _parse(data: bytes) -> tuple[dict, memoryview]:
    """(header, payload) of a whole file's bytes, every header field checked."""
    if len(data) < 16 or data[:8] != MAGIC:
        raise _Corrupt(
            f"not a brisk compressed file ({len(data)} bytes, no {MAGIC.decode()} prefix)"
        )
    version, hlen = struct.unpack_from("<II", data, 8)
    if version not in READS:
        raise _Corrupt(f"file format version {version}; this brisk reads versions {READS}")
    start = _PREFIX[version]
    if hlen > len(data) - start:
        raise _Corrupt(f"header length {hlen:,} runs past the end of the {len(data):,}-byte file")
    head = data[start : start + hlen]
    # Checked after the payload size, which tells a truncation from other damage.
    crc_ok = (
        version < 2 or zlib.crc32(memoryview(data)[start:]) == struct.unpack_from("<I", data, 16)[0]
    )
    text = _decompress(zlib.decompressobj(), head, MAX_HEADER_BYTES, "header")
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise _Corrupt(f"header is not valid JSON ({_clip(str(e))})") from e
    payload = memoryview(data)[start + hlen :]
    _check_header(header, version, payload, len(data), crc_ok)
    return header, payload


def _read(path: str | os.PathLike) -> tuple[dict, memoryview]:
    """The checked header and the payload of the file at ``path``."""
    with open(path, "rb") as f:
        data = f.read()
    with _naming(path):
        return _parse(data)


# ----------------------------------------------------------- load: decoding
def _positions(e: dict, coder: str, payload: memoryview, numel: int) -> np.ndarray:
    """Flat positions of a sparse tensor's nonzeros: exactly ``nnz``, all < ``numel``."""
    pos = _symbols_to_positions(_decode_stream(e["skips"], coder, payload), e["index_bits"])
    if len(pos) != e["nnz"] or (len(pos) and pos[-1] >= numel):
        last = int(pos[-1]) if len(pos) else None
        raise _Corrupt(
            f"skips give {len(pos)} positions (last {last}), expected {e['nnz']} below {numel}"
        )
    return pos


def _decode_tensor(e: dict, coder: str, payload: memoryview) -> torch.Tensor:
    shape, dtype, stored = e["shape"], e["dtype"], e.get("stored_dtype", e["dtype"])
    numel = math.prod(shape)
    if e["kind"] == "raw":
        flat = _from_raw(payload, e["offset"], stored, numel)
    elif e["kind"] == "sparse":
        pos = _positions(e, coder, payload, numel)
        flat = torch.zeros(numel, dtype=_DTYPES[stored][0])
        flat[torch.from_numpy(pos)] = _from_raw(payload, e["offset"], stored, len(pos))
    else:
        cb = np.frombuffer(payload, "<f4", count=e["codebook"]["n"], offset=e["codebook"]["offset"])
        vals = _decode_stream(e["values"], coder, payload)
        if e["sparse"]:
            out = np.zeros(numel, dtype=np.float32)
            out[_positions(e, coder, payload, numel)] = cb[vals]
        elif np.count_nonzero(vals) != e["nnz"]:
            raise _Corrupt(f"{np.count_nonzero(vals)} nonzero symbols, expected {e['nnz']}")
        else:
            out = np.concatenate([np.zeros(1, np.float32), cb])[vals]
        flat = torch.from_numpy(out)
    return flat.reshape(shape).to(_DTYPES[dtype][0])


def _decode_all(header: dict, payload: memoryview) -> OrderedDict:
    state = OrderedDict()
    for e in header["tensors"]:
        try:
            state[e["name"]] = _decode_tensor(e, header["entropy"], payload)
        except _Corrupt as err:
            raise _Corrupt(f"tensor {_short(e['name'])}: {err}") from err
    return state


# ---------------------------------------------------------- load: models
# Layer constructors check their own arguments, each with its own exception type.
_CONFIG_ERRORS = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
    RuntimeError,
    ArithmeticError,
)


def _config_shapes(config: dict) -> dict[str, tuple]:
    """Tensor names and shapes of the ``brisk.Sequential`` that ``config`` describes, from
    a model built on the meta device: no memory, whatever sizes the config names."""
    from brisk.api.sequential import Sequential

    try:
        with torch.device("meta"):
            skeleton = Sequential.from_config(config)
        return {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    except _CONFIG_ERRORS as e:
        raise _Corrupt(f"invalid model config ({type(e).__name__}: {_clip(str(e))})") from e


def _module_shapes(model: nn.Module) -> dict[str, tuple]:
    """The names and shapes a file must hold to load into ``model``: a pruned weight
    (``w_orig`` and ``w_mask``) is stored as ``w``."""
    target = model.state_dict()
    out = {}
    for k, v in target.items():
        pruned = (
            k.endswith(("_orig", "_mask")) and {k[:-5] + "_orig", k[:-5] + "_mask"} <= target.keys()
        )
        if not (pruned and k.endswith("_mask")):
            out[k[:-5] if pruned else k] = tuple(v.shape)
    return out


def _check_match(header: dict, want: dict[str, tuple], what: str) -> None:
    have = {e["name"]: tuple(e["shape"]) for e in header["tensors"]}
    if have == want:
        return
    diffs = (
        [f"{k!r} is {list(have[k])} in the file, {list(want[k])} in {what}"
         for k in want if k in have and have[k] != want[k]]
        + [f"{k!r} is missing from the file" for k in want if k not in have]
        + [f"{k!r} is not in {what}" for k in have if k not in want]
    )  # fmt: skip
    raise _Corrupt(
        f"the file's tensors do not match {what} ({len(diffs)} differences; first: "
        f"{'; '.join(diffs[:3])})"
    )


def _load_into(model: nn.Module, state: OrderedDict) -> nn.Module:
    target = model.state_dict()
    mapped = OrderedDict()
    for k, v in state.items():
        if k in target:
            mapped[k] = v
        else:  # pruned model (checked by _module_shapes): weight = orig * mask
            mapped[k + "_orig"] = v
            mapped[k + "_mask"] = (v != 0).to(target[k + "_mask"].dtype)
    model.load_state_dict(mapped, strict=True)
    refresh_pruned(model)  # pruned modules: weight = orig * mask now, not at the next forward
    return model


def _recompile(model: nn.Module, settings: Any) -> None:
    """``model.compile`` with the saved settings, as ``brisk.load_model`` does."""
    from brisk.api.sequential import compile_as_saved

    try:
        compile_as_saved(model, settings)
    except ValueError as e:
        raise _Corrupt(_clip(str(e))) from e


def load(
    path: str | os.PathLike, model: nn.Module | None = None, compile: bool = True
) -> nn.Module | OrderedDict:
    """Read a file written by ``save``.

    - ``model`` given (an instance of the same architecture): the weights are loaded into it
      and it is returned (a pruned model gets ``weight_orig`` = the weights and
      ``weight_mask`` = their nonzeros).
    - no ``model``, and the file holds a ``brisk.Sequential``'s config: that model, built
      from the config with the file's weights, and compiled again as saved (unless
      ``compile=False``).
    - otherwise the state_dict (an ``OrderedDict`` of CPU tensors, shapes and dtypes as
      saved).

    The file is checked before anything is decoded or allocated (see the module
    docstring): its structure, checksum and size limits, and that its tensor names and
    shapes are exactly those of ``model`` or of the config's model. Raises
    ``ValueError("load: '<path>': <what is wrong>")`` for any corrupt, truncated, crafted
    or mismatched file, ``OSError`` if it cannot be read, ``TypeError`` for a ``model`` that
    is not an ``nn.Module``.

    Example::

        model = load("lenet.brisk", model=LeNet5())
        state = load("lenet.brisk")
        mlp = load("mlp.brisk")        # saved from a brisk.Sequential: the compiled model
    """
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module or None, got {type(model).__name__}")
    if model is not None and any(parametrize.is_parametrized(m) for m in model.modules()):
        raise ValueError(
            "load: model has parametrized weights (share_weights); call make_permanent(model) first"
        )
    header, payload = _read(path)
    config = header.get("config") if model is None else None
    with _naming(path):
        if model is not None:
            _check_match(header, _module_shapes(model), "the model")
        elif config is not None:
            _check_match(header, _config_shapes(config), "the file's model config")
        state = _decode_all(header, payload)
        if model is not None:
            return _load_into(model, state)
        if config is None:
            return state
        from brisk.api.sequential import Sequential

        built = Sequential.from_config(config)
        built.load_state_dict(state)
        if compile:
            _recompile(built, config.get("compile"))
        return built


# ------------------------------------------------------------------ report
def size_report(model: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike) -> dict:
    """Compressed file size vs the fp32 dense ``torch.save(state_dict)`` of ``model``.

    Returns ``{"compressed_bytes", "dense_bytes", "ratio", "tensors": {name: bytes}}`` with
    ``compressed_bytes == os.path.getsize(path)`` and ``ratio = dense / compressed``.

    Example::

        r = size_report(model, "lenet.brisk"); print(f"{r['ratio']:.1f}x")
    """
    state = _plain_state_dict(model)
    dense = OrderedDict(
        (k, v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu())
        for k, v in state.items()
    )
    buf = io.BytesIO()
    torch.save(dense, buf)
    dense_bytes = buf.getbuffer().nbytes
    compressed = os.path.getsize(path)
    header, _ = _read(path)
    return {
        "path": os.fspath(path),
        "compressed_bytes": compressed,
        "dense_bytes": dense_bytes,
        "ratio": dense_bytes / compressed,
        "tensors": {e["name"]: e["nbytes"] for e in header["tensors"]},
    }
