"""Files that can't hurt you: crafted, corrupt and truncated Deep Compression files.

Every failure of ``load(path)`` is a ``ValueError("load: '<path>': <what>")`` raised before
anything large is allocated; a brisk.Sequential travels with its config and comes back
working. The crafted files are written here byte by byte (``pack``), independently of
``save``, with a correct CRC32 so that the checks behind the checksum are exercised too.
Layout: b"BRISKCMP" | u32 version | u32 header length | u32 CRC32 of the rest (version 2) |
zlib JSON header | payload.
"""

import json
import lzma
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
import torch.nn as nn

from brisk.api.layers import Conv2D, Dense, Flatten, Input
from brisk.api.sequential import Sequential
from brisk.compress import load, prune, save
from brisk.compress.export import MAX_RATIO

LZMA2 = [{"id": lzma.FILTER_LZMA2, "preset": 9}]


# ------------------------------------------------------------------ helpers
def layout(version: int, head: bytes, payload: bytes = b"") -> bytes:
    """Magic, version, header length, (version 2) the CRC32 of header + payload, header,
    payload."""
    crc = struct.pack("<I", zlib.crc32(head + payload)) if version >= 2 else b""
    return b"BRISKCMP" + struct.pack("<II", version, len(head)) + crc + head + payload


def pack(header: dict, payload: bytes, prefix_version: int | None = None) -> bytes:
    """A file in the documented layout: the header's missing fields filled in (version 2,
    the payload's size), the prefix's version the header's unless given."""
    header = {"version": 2, **header}
    if header["version"] >= 2:
        header = {"payload_bytes": len(payload), **header}
    head = zlib.compress(json.dumps(header).encode())
    return layout(prefix_version or header["version"], head, payload)


def as_version_1(header: dict) -> dict:
    """A version 2 header as version 1 wrote it: no payload size (and no CRC32)."""
    return {**{k: v for k, v in header.items() if k != "payload_bytes"}, "version": 1}


def unpack(data: bytes) -> tuple[dict, bytes]:
    version, hlen = struct.unpack("<II", data[8:16])
    start = 16 if version == 1 else 20
    return json.loads(zlib.decompress(data[start : start + hlen])), data[start + hlen :]


def expect_error(path, *fragments: str) -> str:
    """load(path) raises ValueError naming the file and saying each fragment."""
    with pytest.raises(ValueError) as info:
        load(path)
    msg = str(info.value)
    assert msg.startswith(f"load: {os.fspath(path)!r}: "), msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def dense_shared(shape, stream: dict, entropy: str, codebook_n: int = 1, nnz: int = 0) -> dict:
    """Header of one weight-shared tensor stored densely (one symbol per element)."""
    entry = {
        "name": "w", "shape": list(shape), "dtype": "float32", "kind": "shared", "bits": 5,
        "sparse": False, "nnz": nnz, "codebook": {"offset": 0, "n": codebook_n},
        "values": dict(stream, alphabet=codebook_n + 1), "nbytes": 4 * codebook_n,
    }  # fmt: skip
    return {"format": "brisk.compress", "entropy": entropy, "tensors": [entry], "metadata": {}}


def lzma_zeros(gib: int) -> bytes:
    """A raw LZMA2 stream of ``gib`` GiB of zero bytes, ~160 KB per GiB: one 16 MiB
    piece (each starts with a dictionary reset, so pieces concatenate) repeated."""
    piece = lzma.compress(
        bytes(1 << 24), format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 0}]
    )
    return piece[:-1] * (gib << 6) + b"\x00"  # strip each piece's end marker, end once


def small_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 16, generator=g)
    w[w.abs() < 0.7] = 0  # ~50% zeros: sparse storage
    conv = torch.randn(4, 2, 3, 3, generator=g)
    conv[conv.abs() < 0.5] = 0
    return {"w": w, "b": torch.randn(16, generator=g), "conv": conv, "n": torch.arange(3)}


# ------------------------------------------------------------------- bombs
BOMB_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # torch imports; 2 GiB can't
from brisk.compress import load
for path in sys.argv[1:]:
    try:
        load(path)
        print("LOADED", path)
    except ValueError as e:
        print("ValueError:", e)
"""


def test_lzma_bombs_are_refused_without_allocating(tmp_path):
    stream = lzma_zeros(2)  # 2 GiB of symbols in ~320 KB
    assert len(stream) < 400_000
    info = {"offset": 4, "n": 0, "nbytes": len(stream)}
    payload = np.float32(0.5).tobytes() + stream
    # (1) declares the 2**31 elements it decodes to (8 GiB as float32): over MAX_RATIO
    huge = tmp_path / "huge.brisk"
    huge.write_bytes(pack(dense_shared([1 << 31], dict(info, n=1 << 31), "lzma"), payload))
    # (2) declares 1000 symbols: the bounded decompression stops at 1001 bytes
    liar = tmp_path / "liar.brisk"
    liar.write_bytes(pack(dense_shared([10, 100], dict(info, n=1000), "lzma"), payload))
    run = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT, str(huge), str(liar)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert len(lines) == 2, run.stdout + run.stderr[-3000:]
    assert lines[0].startswith(f"ValueError: load: {str(huge)!r}: ") and "MAX_RATIO" in lines[0]
    assert lines[1].startswith(f"ValueError: load: {str(liar)!r}: ")
    assert "lzma stream decodes to more than 1,000 bytes" in lines[1]


def test_header_bombs(tmp_path):
    path = tmp_path / "h.brisk"
    head = zlib.compress(b" " * (17 << 20), 9)  # 17 MiB of JSON whitespace in ~17 KB
    path.write_bytes(layout(2, head))
    expect_error(path, "header decodes to more than 16,777,216 bytes")
    path.write_bytes(layout(2, zlib.compress(b"[" * 100_000)))  # deeper than the parser goes
    expect_error(path, "header is not valid JSON")
    path.write_bytes(layout(2, zlib.compress(b"\xff{}")))
    expect_error(path, "header is not valid JSON")


# ----------------------------------------------------------------- Huffman
@pytest.mark.parametrize(
    ("lengths", "why"),
    [
        ([40, 1], "Huffman code length 40 exceeds 16 bits"),  # a 2**40-entry table
        ([17, 1], "Huffman code length 17 exceeds 16 bits"),
        ([1, 1, 1], "Kraft's inequality"),  # three 1-bit codes
        ([2, 1, 1, 2], "Kraft's inequality"),
        ([0, 0], "Huffman code has no symbols"),
    ],
)
def test_huffman_code_lengths_are_checked_before_the_table(tmp_path, lengths, why):
    alphabet = len(lengths)
    stream = bytes(lengths) + bytes(8)  # 64 bits of code data
    payload = np.zeros(alphabet - 1, np.float32).tobytes() + stream
    info = {"offset": 4 * (alphabet - 1), "n": 32, "nbits": 64, "nbytes": len(stream)}
    header = dense_shared([4, 8], info, "huffman", codebook_n=alphabet - 1)
    path = tmp_path / "h.brisk"
    path.write_bytes(pack(header, payload))
    expect_error(path, "tensor 'w': ", why)


def test_huffman_stream_that_does_not_hold_n_codes(tmp_path):
    stream = bytes([1, 1]) + bytes([0xFF] * 8)  # codes '0' and '1': 64 bits = 64 symbols
    payload = np.float32(0.5).tobytes() + stream
    info = {"offset": 4, "n": 32, "nbits": 64, "nbytes": len(stream)}
    path = tmp_path / "h.brisk"
    path.write_bytes(pack(dense_shared([4, 8], info, "huffman", nnz=32), payload))
    expect_error(path, "does not hold 32 codes in exactly 64 bits")
    lengths = bytes([2, 1])  # '0' -> symbol 1, '10' -> symbol 0, '11' is no code
    stream = lengths + bytes([0b11000000]) + bytes(3)
    info = {"offset": 4, "n": 32, "nbits": 32, "nbytes": len(stream)}
    path.write_bytes(pack(dense_shared([4, 8], info, "huffman", nnz=32), payload[:4] + stream))
    expect_error(path, "does not hold 32 codes")


# ------------------------------------------------------------ huge shapes
def test_huge_shapes_are_refused_before_allocating(tmp_path):
    path = tmp_path / "s.brisk"
    header = {"format": "brisk.compress", "entropy": "huffman", "metadata": {}}
    raw = {"name": "x", "shape": [1 << 40], "dtype": "float32", "kind": "raw", "offset": 0}
    path.write_bytes(pack(dict(header, tensors=[dict(raw, nbytes=4 << 40)]), bytes(64)))
    expect_error(path, "tensor 'x': nbytes must be an integer in [0, 64], got 4398046511104")
    path.write_bytes(pack(dict(header, tensors=[dict(raw, nbytes=64)]), bytes(64)))
    expect_error(path, "4,398,046,511,104 bytes, not 64")
    # a sparse tensor with no nonzeros costs no payload: only the size limit stands
    empty = {"offset": 0, "n": 0, "alphabet": 32, "nbytes": 0}
    sparse = {"name": "x", "shape": [1 << 20, 1 << 20], "dtype": "float32", "kind": "sparse",
              "index_bits": 5, "nnz": 0, "skips": empty, "offset": 0, "nbytes": 0}  # fmt: skip
    path.write_bytes(pack(dict(header, tensors=[sparse]), b""))
    expect_error(path, "decode to 4,398,046,511,104 bytes, more than MAX_RATIO = 1024")
    values = {"offset": 4, "n": 1 << 40, "nbits": 1 << 40, "nbytes": 2 + (1 << 37)}
    path.write_bytes(pack(dense_shared([1 << 40], values, "huffman"), bytes(64)))
    expect_error(path, "lie outside the 64-byte payload")
    for shape in ([-1, 4], [2.0, 4], "8x16", [True], [1] * 65, [10**30]):
        path.write_bytes(pack(dict(header, tensors=[dict(raw, shape=shape, nbytes=0)]), b""))
        expect_error(path, "tensor 'x': shape must be a list of at most 64 non-negative integers")


# ------------------------------------------------- every header field checked
def _saved(tmp_path, **kw):
    path = tmp_path / "m.brisk"
    save(small_state(), path, **kw)
    return path, *unpack(path.read_bytes())


def _set(key, value):
    def f(h):
        h[key] = value

    return f


def _t(i, *keys, value=None, delete=False):
    """Set (or delete) header['tensors'][i][keys...]."""

    def f(h):
        d = h["tensors"][i]
        for k in keys[:-1]:
            d = d[k]
        if delete:
            del d[keys[-1]]
        else:
            d[keys[-1]] = value(d[keys[-1]]) if callable(value) else value

    return f


# small_state() saved with bits=5: 0 'w' shared sparse, 1 'b' raw, 2 'conv' shared, 3 'n' raw
FIELD_CASES = [
    (_set("format", "pickle"), "format is 'pickle', not 'brisk.compress'"),
    (_set("version", 1), "header: version 1 differs from the prefix's 2"),
    (_set("entropy", "brotli"), "entropy must be one of huffman, lzma, zlib, none; got 'brotli'"),
    (_set("tensors", {"w": 1}), "tensors must be a list"),
    (_set("metadata", [1]), "metadata must be a JSON object"),
    (_set("config", "Sequential"), "config must be a JSON object"),
    (_set("payload_bytes", "1"), "payload_bytes must be an integer"),
    (_set("payload_bytes", 10**9), "the header says 1,000,000,000 (truncated?)"),
    (_t(0, "name", value=5), "tensor 0: name must be a string"),
    (_t(1, "name", value="w"), "tensor 'w' is listed twice"),
    (_t(0, "dtype", value="object"), "tensor 'w': dtype must be one of"),
    (_t(0, "dtype", value=["float32"]), "tensor 'w': dtype must be one of"),
    (
        _t(0, "dtype", value="int64"),
        "tensor 'w': a shared tensor must be floating, got dtype int64",
    ),
    (_t(0, "kind", value="pickle"), "tensor 'w': kind must be one of raw, sparse, shared"),
    (_t(0, "kind", delete=True), "tensor 'w': 'kind' is missing"),
    (_t(0, "bits", value=9), "tensor 'w': bits must be an integer in [1, 8], got 9"),
    (_t(0, "bits", value=True), "bits must be an integer in [1, 8], got True"),
    (_t(0, "index_bits", value=0), "index_bits must be an integer in [1, 8], got 0"),
    (_t(0, "nnz", value=10**6), "nnz must be an integer in [0, 128]"),
    (_t(0, "sparse", value="yes"), "sparse must be true or false"),
    (_t(0, "codebook", "n", value=300), "codebook: n must be an integer in [1, 32], got 300"),
    (_t(0, "codebook", "offset", value=10**9), "codebook: bytes 1,000,000,000.."),
    (_t(0, "values", "n", value=lambda n: n + 1), "values: n must be an integer in"),
    (_t(0, "values", "alphabet", value=33), "values: alphabet must be"),
    (_t(0, "values", "nbits", value=lambda n: n * 64), "values: nbits must be an integer in"),
    (_t(0, "values", "nbits", value=3), "values: nbits must be an integer in"),
    (_t(0, "values", "nbytes", value=10**9), "values: bytes"),
    (_t(0, "values", "offset", value=-1), "values: offset must be an integer >= 0"),
    (_t(0, "skips", "n", value=10**6), "skips: n must be an integer in"),
    (_t(0, "skips", delete=True), "tensor 'w': 'skips' is missing"),
    (_t(1, "nbytes", value=60), "tensor 'b': 16 float32 elements are 64 bytes, not 60"),
    (_t(1, "offset", value=lambda o: o + 10**6), "tensor 'b': bytes"),
    (_t(1, "stored_dtype", value="int8"), "stored_dtype must be one of float32, float16"),
    (
        _t(3, "stored_dtype", value="float16"),
        "stored_dtype float16 needs a floating dtype, got int64",
    ),
    (_t(3, "shape", value=[4]), "tensor 'n': 4 int64 elements are 32 bytes, not 24"),
]


@pytest.mark.parametrize(("mutate", "why"), FIELD_CASES)
def test_every_header_field_is_checked(tmp_path, mutate, why):
    path, header, payload = _saved(tmp_path)
    mutate(header)
    path.write_bytes(pack(header, payload, prefix_version=2))
    expect_error(path, why)


def test_header_entry_of_the_wrong_type(tmp_path):
    path, header, payload = _saved(tmp_path)
    header["tensors"][2] = [1, 2]
    path.write_bytes(pack(header, payload))
    expect_error(path, "tensor 2: expected a JSON object, got [1, 2]")
    path.write_bytes(layout(2, zlib.compress(b"[]")))  # the header itself a list
    expect_error(path, "header: expected a JSON object, got []")


def test_prefix_checks(tmp_path):
    path, header, payload = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:8] + struct.pack("<I", 3) + data[12:])
    expect_error(path, "file format version 3; this brisk reads versions (1, 2)")
    path.write_bytes(data[:12] + struct.pack("<I", len(data)) + data[16:])
    expect_error(path, f"header length {len(data):,} runs past the end")
    head = zlib.compress(json.dumps(header).encode())
    path.write_bytes(layout(2, head[:-1], payload))  # CRC32 right, zlib stream cut short
    expect_error(path, "header is truncated")
    path.write_bytes(layout(2, head + b"\0", payload))
    expect_error(path, "header is followed by 1 stray bytes")
    crc = struct.unpack("<I", data[16:20])[0]
    path.write_bytes(data[:16] + struct.pack("<I", crc ^ 1) + data[20:])
    expect_error(path, "the CRC32 of the header and payload does not match (corrupt file)")
    path.write_bytes(b"")
    expect_error(path, "not a brisk compressed file (0 bytes, no BRISKCMP prefix)")


# ------------------------------------------------------------ stream contents
def _one_sparse(tmp_path, skips: bytes, n: int, nnz: int, numel: int = 8, coder="zlib"):
    """A lossless sparse tensor of ``numel`` float32 whose skip symbols are ``skips``."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = c.compress(skips) + c.flush() if coder == "zlib" else skips
    info = {"offset": 0, "n": n, "alphabet": 32, "nbytes": len(data)}
    if coder == "none":
        info["nbits"] = 5 * n
    entry = {"name": "w", "shape": [1, numel], "dtype": "float32", "kind": "sparse",
             "index_bits": 5, "nnz": nnz, "skips": info, "offset": len(data),
             "nbytes": len(data) + 4 * nnz}  # fmt: skip
    header = {"format": "brisk.compress", "entropy": coder, "tensors": [entry], "metadata": {}}
    path = tmp_path / "sp.brisk"
    path.write_bytes(pack(header, data + np.ones(nnz, np.float32).tobytes()))
    return path


def test_sparse_positions_must_lie_inside_the_tensor(tmp_path):
    path = _one_sparse(tmp_path, bytes([20]), n=1, nnz=1)  # skip 20 zeros in a tensor of 8
    expect_error(path, "tensor 'w': skips give 1 positions (last 20), expected 1 below 8")
    path = _one_sparse(tmp_path, bytes([31, 2]), n=2, nnz=1, numel=40)  # escape: 31 + 2 + 1
    assert load(path)["w"].nonzero().tolist() == [[0, 33]]
    path = _one_sparse(tmp_path, bytes([31, 31]), n=2, nnz=1, numel=80)  # escapes only
    expect_error(path, "skips give 0 positions (last None), expected 1 below 80")
    path = _one_sparse(tmp_path, bytes([0b10100000]), n=1, nnz=1, coder="none")  # 20 again
    expect_error(path, "expected 1 below 8")


def test_stream_symbols_and_lengths(tmp_path):
    path = _one_sparse(tmp_path, bytes([40]), n=1, nnz=1, numel=80)
    expect_error(path, "stream symbol 40 is outside its alphabet of 32")
    path = _one_sparse(tmp_path, bytes([1, 2]), n=1, nnz=1)  # stream holds 2 symbols, n = 1
    expect_error(path, "zlib stream decodes to more than 1 bytes")
    for coder in ("lzma", "zlib"):
        data = (
            lzma.compress(bytes(10), format=lzma.FORMAT_RAW, filters=LZMA2)
            if coder == "lzma"
            else zlib.compress(bytes(10))[2:-4]  # raw deflate
        )
        info = {"offset": 4, "n": 32, "nbytes": len(data)}
        path.write_bytes(pack(dense_shared([4, 8], info, coder), bytes(4) + data))
        expect_error(path, f"tensor 'w': {coder} stream decodes to 10 bytes, not 32")
        path.write_bytes(pack(dense_shared([4, 8], info, coder), bytes(4) + data[:-2] + b"\0\0"))
        msg = expect_error(path, f"tensor 'w': {coder} stream")
        assert "corrupt" in msg or "truncated" in msg or "not 32" in msg or "stray" in msg


# --------------------------------------------------------- flips, truncation
def _mlp(compiled=True):
    torch.manual_seed(0)
    model = Sequential([Input((8,)), Dense(16, activation="relu"), Dense(3, activation="softmax")])
    if compiled:
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
    return model


@pytest.mark.parametrize("source", ["state", "sequential"])
def test_every_bit_flip_is_an_error(tmp_path, source):
    path = tmp_path / "m.brisk"
    save(small_state() if source == "state" else _mlp(), path)
    data = path.read_bytes()
    (hlen,) = struct.unpack("<I", data[12:16])
    body = 20 + hlen
    header_positions = range(0, body)  # the prefix and every header byte
    payload_positions = np.linspace(body, len(data) - 1, 40).astype(int).tolist()
    for i in [*header_positions, *payload_positions]:
        flipped = bytearray(data)
        flipped[i] ^= 1 << (i % 8)
        path.write_bytes(bytes(flipped))
        msg = expect_error(path)
        if i >= body:
            assert "CRC32" in msg, (i, msg)


@pytest.mark.parametrize("source", ["state", "sequential"])
def test_truncations_are_errors(tmp_path, source):
    path = tmp_path / "m.brisk"
    save(small_state() if source == "state" else _mlp(), path)
    data = path.read_bytes()
    for tenth in range(10):
        path.write_bytes(data[: len(data) * tenth // 10])
        expect_error(path)


@pytest.mark.parametrize("entropy", ["huffman", "lzma", "zlib", "none"])
def test_version_1_flips_load_or_raise_value_error(tmp_path, entropy):
    """Without a checksum (version 1) a flip reaches the decoders: they load or raise
    ValueError naming the file, never another error."""
    path = tmp_path / "v1.brisk"
    save(small_state(), path, entropy=entropy)
    header, payload = unpack(path.read_bytes())
    header = as_version_1(header)
    for i in np.linspace(0, len(payload) - 1, 60).astype(int):
        for bit in (0, 7):
            flipped = bytearray(payload)
            flipped[i] ^= 1 << bit
            path.write_bytes(pack(header, bytes(flipped)))
            try:
                out = load(path)
            except ValueError as e:
                assert str(e).startswith(f"load: {str(path)!r}: "), e
            else:
                assert sorted(out) == sorted(small_state())


# ------------------------------------------------------------- version 1
def test_version_1_files_still_load(tmp_path):
    path = tmp_path / "m.brisk"
    save(small_state(), path, bits=None)
    header, payload = unpack(path.read_bytes())
    header = as_version_1(header)
    v1 = tmp_path / "v1.brisk"
    v1.write_bytes(pack(header, payload))
    out = load(v1)
    for k, v in small_state().items():
        assert torch.equal(out[k], v), k
    v1.write_bytes(pack(header, payload[:-4]))  # no CRC: the bounds still hold
    expect_error(v1, "lie outside the")


# ------------------------------------------------------ saving what loads
def test_save_refuses_a_file_load_would_refuse(tmp_path):
    sd = {"w": torch.zeros(1000, 1000), "b": torch.ones(10)}
    path = tmp_path / "z.brisk"
    with pytest.raises(ValueError, match=r"save: 'w' \(1,000,000 elements\).*sparse=False"):
        save(sd, path)  # all-zero sparse tensor: 4 MB from no payload bytes
    assert not path.exists()
    for entropy in ("huffman", "none"):  # the suggested settings: >= 1 bit per element
        info = save(sd, path, sparse=False, entropy=entropy)
        assert info["bytes"] * MAX_RATIO > 4_000_040
        assert torch.equal(load(path)["w"], sd["w"])
    with pytest.raises(ValueError, match="over the format's limit of 16,777,216"):
        save(sd, path, sparse=False, metadata={"notes": "x" * (17 << 20)})


# ---------------------------------------------------------- brisk.Sequential
def _conv():
    torch.manual_seed(1)
    model = Sequential([Input((8, 8, 1)), Conv2D(4, 3, activation="relu"), Flatten(), Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    return model


@pytest.mark.parametrize("make", [_mlp, _conv])
def test_sequential_round_trip_is_exact_and_compiled(tmp_path, make):
    model = make()
    model.layers[0].trainable = False
    prune(model, amount=0.5)  # saved as plain weights, zeros kept
    path = tmp_path / "m.brisk"
    save(model, path, bits=None)  # lossless
    loaded = load(path)
    assert type(loaded) is Sequential
    assert loaded.get_config() == model.get_config()  # layers, flags, compile settings
    assert loaded.layers[0].trainable is False
    x = np.random.default_rng(0).standard_normal((5, *model.input_shape[1:])).astype("float32")
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.trainer is not None  # compiled again: evaluate / fit work
    assert load(path, compile=False)._trainer is None
    # weight-shared (lossy) files rebuild the model too, with the shared weights
    save(model, path)
    assert isinstance(load(path), Sequential)


def test_files_without_a_config_return_the_state_dict(tmp_path):
    path = tmp_path / "m.brisk"
    save(nn.Sequential(nn.Linear(4, 2)), path)
    assert list(load(path)) == ["0.weight", "0.bias"]
    unbuilt = Sequential([Dense(3)])
    save(unbuilt, path)  # not built: no weights to describe, no config
    assert "config" not in unpack(path.read_bytes())[0]


def _with_config(tmp_path, edit):
    path = tmp_path / "m.brisk"
    save(_mlp(), path, bits=None)
    header, payload = unpack(path.read_bytes())
    edit(header)
    path.write_bytes(pack(header, payload))
    return path


def _layer(i, **cfg):
    def edit(h):
        h["config"]["layers"][i]["config"].update(cfg)

    return edit


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda h: h["config"]["layers"][0].update({"class": "os.system"}),
         "invalid model config (ValueError: config: unknown layer class 'os.system'"),
        (lambda h: h.update(config=["Dense"]), "header: config must be a JSON object"),
        (lambda h: h["config"].update(format="keras"), "invalid model config"),
        (lambda h: h["config"].update(layers=5), "invalid model config (TypeError"),
        (_layer(1, units=4), "'layers.1.linear.weight' is [3, 16] in the file, [4, 16] in the"),
        (_layer(0, units=1 << 40), "do not match the file's model config"),  # meta: no memory
        (_layer(0, bogus=1), "invalid model config (TypeError"),
        (lambda h: h["config"]["compile"].update(optimizer={"config": {"name": "nope"}}),
         "invalid compile settings"),
    ],
)  # fmt: skip
def test_crafted_configs(tmp_path, edit, why):
    path = _with_config(tmp_path, edit)
    expect_error(path, why)


def test_load_into_a_model_checks_shapes_before_decoding(tmp_path):
    path = tmp_path / "m.brisk"
    save(_mlp(), path)
    other = Sequential([Input((8,)), Dense(16), Dense(5)])
    with pytest.raises(ValueError) as info:
        load(path, model=other)
    msg = str(info.value)
    assert msg.startswith(f"load: {str(path)!r}: the file's tensors do not match the model")
    assert "is [3, 16] in the file, [5, 16] in the model" in msg
    pruned = prune(_mlp(compiled=False), amount=0.3)  # weight_orig / weight_mask names
    load(path, model=pruned)
