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

    b"BRISKCMP" | u32 version (1) | u32 header length | header | payload

The header is JSON (utf-8) compressed with zlib (it is ~5% of a LeNet file otherwise); it
lists every tensor (name, shape, dtype, encoding, offsets into the payload).
Writes are atomic (temporary file in the same directory, then ``os.replace``).

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
"""

from __future__ import annotations

import heapq
import io
import json
import lzma
import os
import struct
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.utils.prune as tprune
from torch.nn.utils import parametrize

from brisk.compress.prune import _choice, _targets, copy_model, is_pruned, make_permanent
from brisk.engine.checkpoint import atomic_write

__all__ = ["SharedWeights", "kmeans_1d", "load", "save", "share_weights", "size_report"]

MAGIC = b"BRISKCMP"
VERSION = 1
ENTROPY = ("huffman", "lzma", "zlib", "none")
MAX_CODE_LEN = 16  # bits; keeps the decoder's lookup table at 2**16 entries


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


def _huffman_decode(buf: bytes, alphabet: int, n: int, nbits: int) -> np.ndarray:
    lengths = np.frombuffer(buf[:alphabet], dtype=np.uint8).astype(np.int64)
    codes = _canonical_codes(lengths)
    L = int(lengths.max())
    table_sym = np.zeros(1 << L, dtype=np.int64)
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
    return sym_at[pos]


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
        width = max(1, int(alphabet - 1).bit_length())
        data, nbits = _pack(sym.astype(np.int64), np.full(len(sym), width))
        info["nbits"] = nbits
    else:
        raw = sym.astype(np.uint8 if alphabet <= 256 else "<u2").tobytes()
        if coder == "lzma":
            data = lzma.compress(
                raw, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}]
            )
        else:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: no header
            data = c.compress(raw) + c.flush()
    payload.write(data)
    info["nbytes"] = len(data)
    return info


def _decode_stream(info: dict, coder: str, payload: memoryview) -> np.ndarray:
    n, alphabet = info["n"], info["alphabet"]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    buf = bytes(payload[info["offset"] : info["offset"] + info["nbytes"]])
    if coder == "huffman":
        return _huffman_decode(buf, alphabet, n, info["nbits"])
    if coder == "none":
        width = max(1, int(alphabet - 1).bit_length())
        bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8))[: n * width].reshape(n, width)
        return (bits.astype(np.int64) << np.arange(width - 1, -1, -1)).sum(axis=1)
    if coder == "lzma":
        raw = lzma.decompress(
            buf, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}]
        )
    else:
        raw = zlib.decompress(buf, -15)
    return np.frombuffer(raw, dtype=np.uint8 if alphabet <= 256 else "<u2").astype(np.int64)


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


def _raw_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(_DTYPES[_NAME_OF[t.dtype]][1]).tobytes()


def _from_raw(buf: bytes, dtype: str, shape: list[int]) -> torch.Tensor:
    if dtype == "bfloat16":
        return (
            torch.from_numpy(np.frombuffer(buf, "<i2").copy()).view(torch.bfloat16).reshape(shape)
        )
    return torch.from_numpy(np.frombuffer(buf, _DTYPES[dtype][1]).copy()).reshape(shape)


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
    parametrisations are made permanent on a copy.

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
    header = {
        "format": "brisk.compress",
        "version": VERSION,
        "entropy": entropy,
        "tensors": entries,
        "metadata": dict(metadata or {}),
    }
    head = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    blob = MAGIC + struct.pack("<II", VERSION, len(head)) + head + payload.getvalue()

    path = os.fspath(path)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(blob)

    atomic_write(path, write)  # readers see the old file or the new one, never a part
    return {
        "path": path,
        "bytes": len(blob),
        "header_bytes": len(head) + 16,
        "tensors": {e["name"]: e["nbytes"] for e in entries},
    }


# ------------------------------------------------------------------- load
def _read(path: str | os.PathLike) -> tuple[dict, memoryview]:
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != MAGIC:
        raise ValueError(f"path: {os.fspath(path)!r} is not a brisk compressed file (bad magic)")
    version, hlen = struct.unpack("<II", data[8:16])
    if version != VERSION:
        raise ValueError(f"path: file format version {version}; this brisk reads version {VERSION}")
    try:
        header = json.loads(zlib.decompress(data[16 : 16 + hlen]))
    except (zlib.error, ValueError) as e:
        raise ValueError(f"path: {os.fspath(path)!r} has a corrupt header ({e})") from e
    return header, memoryview(data)[16 + hlen :]


def _decode_tensor(e: dict, coder: str, payload: memoryview) -> torch.Tensor:
    shape, dtype = e["shape"], e["dtype"]
    if e["kind"] == "raw":
        stored = e.get("stored_dtype", dtype)
        t = _from_raw(bytes(payload[e["offset"] : e["offset"] + e["nbytes"]]), stored, shape)
        return t.to(_DTYPES[dtype][0])
    numel = int(np.prod(shape)) if shape else 1
    if e["kind"] == "sparse":
        stored = e.get("stored_dtype", dtype)
        pos = _symbols_to_positions(_decode_stream(e["skips"], coder, payload), e["index_bits"])
        size = torch.empty((), dtype=_DTYPES[stored][0]).element_size() * len(pos)
        vals = _from_raw(bytes(payload[e["offset"] : e["offset"] + size]), stored, [len(pos)])
        flat = torch.zeros(numel, dtype=vals.dtype)
        flat[torch.from_numpy(pos)] = vals
        return flat.reshape(shape).to(_DTYPES[dtype][0])
    cbo, ncb = e["codebook"]["offset"], e["codebook"]["n"]
    cb = np.frombuffer(bytes(payload[cbo : cbo + 4 * ncb]), "<f4")
    flat = np.zeros(numel, dtype=np.float32)
    vals = _decode_stream(e["values"], coder, payload)
    if e["sparse"]:
        pos = _symbols_to_positions(_decode_stream(e["skips"], coder, payload), e["index_bits"])
        flat[pos] = cb[vals]
    else:
        table = np.concatenate([np.zeros(1, np.float32), cb])
        flat = table[vals]
    return torch.from_numpy(flat.copy()).reshape(shape).to(_DTYPES[dtype][0])


def load(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module | OrderedDict:
    """Read a file written by ``save``. With ``model`` (an instance of the same
    architecture) the weights are loaded into it and it is returned (a pruned model gets
    ``weight_orig`` = the weights and ``weight_mask`` = their nonzeros); otherwise the
    state_dict is returned.

    Example::

        model = load("lenet.brisk", model=LeNet5())
        state = load("lenet.brisk")
    """
    header, payload = _read(path)
    state = OrderedDict(
        (e["name"], _decode_tensor(e, header["entropy"], payload)) for e in header["tensors"]
    )
    if model is None:
        return state
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module or None, got {type(model).__name__}")
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise ValueError(
            "load: model has parametrized weights (share_weights); call make_permanent(model) first"
        )
    target = model.state_dict()
    mapped = OrderedDict()
    for k, v in state.items():
        if k in target:
            mapped[k] = v
        elif k + "_orig" in target and k + "_mask" in target:  # pruned model: orig * mask
            mapped[k + "_orig"] = v
            mapped[k + "_mask"] = (v != 0).to(target[k + "_mask"].dtype)
        else:
            mapped[k] = v  # let load_state_dict name the mismatch
    model.load_state_dict(mapped, strict=True)
    for m in model.modules():  # pruned modules: refresh weight = orig * mask now, not at forward
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, tprune.BasePruningMethod):
                setattr(m, hook._tensor_name, hook.apply_mask(m))
    return model


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
