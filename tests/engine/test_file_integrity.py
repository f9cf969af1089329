"""Files that can't hurt you: a flipped bit in a brisk weights file, model file or checkpoint
is a clear error, not silently different weights (torch.load ignores the zip's CRC32s and
safetensors has no checksum: the first tests show both load such a file), and every failure
to load one, a truncation included, is a ValueError naming the file."""

import json
import struct
import zipfile

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import brisk
from brisk.engine.checkpoint import (
    CHECKSUM_KEY,
    checksum,
    load_checkpoint,
    save_checkpoint,
    save_safetensors,
)

FORMATS = ["checkpoint", "model", "weights"]


def _model():
    torch.manual_seed(0)
    return brisk.Sequential([brisk.layers.Dense(8, activation="relu", input_shape=(4,)),
                             brisk.layers.Dense(3)])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A model trained one epoch (so the checkpoint has optimizer state) and its three
    files: ``Trainer.save_checkpoint``, ``save`` and ``save_weights``."""
    folder = tmp_path_factory.mktemp("files")
    m = _model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    m.fit(rng.random((32, 4), dtype=np.float32), rng.integers(0, 3, 32), epochs=1,
          batch_size=8, verbose=0)
    paths = {f: str(folder / n) for f, n in
             zip(FORMATS, ["c.pt", "m.safetensors", "w.safetensors"], strict=True)}
    m.trainer.save_checkpoint(paths["checkpoint"])
    m.save(paths["model"])
    m.save_weights(paths["weights"])
    return m, paths


def _load(fmt, path):
    """The file's model weights, read by brisk's loader for its format."""
    if fmt == "checkpoint":
        return load_checkpoint(path)["model"]
    if fmt == "model":
        return brisk.load_model(path).state_dict()
    m = _model()
    m.load_weights(path)
    return m.state_dict()


def _damaged(src, dst, flip_at=None, bit=0, keep=None):
    """A copy of ``src`` with one bit flipped at byte ``flip_at`` or cut to ``keep`` bytes."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    if flip_at is not None:
        data[flip_at] ^= 1 << bit
    if keep is not None:
        del data[keep:]
    with open(dst, "wb") as f:
        f.write(data)
    return str(dst)


def _offset(path, tensor):
    """Where ``tensor``'s bytes lie in the file (they occur there once)."""
    with open(path, "rb") as f:
        data = f.read()
    raw = tensor.contiguous().numpy().tobytes()
    assert data.count(raw) == 1
    return data.find(raw)


def _raises_naming(path, fn, match=None):
    with pytest.raises(ValueError, match=match) as e:
        fn()
    assert repr(str(path)) in str(e.value), str(e.value)


def _bytes(t):
    return t.contiguous().reshape(-1).view(torch.uint8)


def _same(a, b):
    """Nested payloads equal: tensors bit for bit, other values by ==."""
    if torch.is_tensor(a):
        return (torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(_bytes(a), _bytes(b)))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and (a == b or a != a and b != b)  # nan == nan here


def test_without_a_checksum_torch_and_safetensors_load_a_flipped_bit_silently(files, tmp_path):
    m, paths = files
    w = m.state_dict()["layers.0.linear.weight"]
    at = _offset(paths["checkpoint"], w) + 5
    bad = _damaged(paths["checkpoint"], tmp_path / "c.pt", at, bit=3)
    loaded = torch.load(bad, weights_only=True)["model"]["layers.0.linear.weight"]
    assert not torch.equal(loaded, w) and (loaded != w).sum() == 1
    with zipfile.ZipFile(bad) as z:  # the zip's CRC32 sees it; torch.load does not check
        assert z.testzip() is not None
    for fmt in ("model", "weights"):
        bad = _damaged(paths[fmt], tmp_path / f"{fmt}.safetensors", _offset(paths[fmt], w) + 5, 3)
        loaded = load_file(bad)["layers.0.linear.weight"]
        assert not torch.equal(loaded, w) and (loaded != w).sum() == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_intact_files_load_the_same_weights(files, fmt):
    m, paths = files
    assert _same(dict(_load(fmt, paths[fmt])), dict(m.state_dict()))


def _tensors_in(fmt, m, paths):
    """Tensors whose bytes the flips hit: weights and biases, and in a checkpoint also
    optimizer moments and the torch RNG state."""
    sd = m.state_dict()
    out = [sd["layers.0.linear.weight"], sd["layers.1.linear.bias"]]
    if fmt == "checkpoint":
        state = load_checkpoint(paths["checkpoint"])
        out += [state["optimizer"]["state"][0]["exp_avg"],
                state["optimizer"]["state"][3]["exp_avg_sq"], state["rng"]["torch"]]
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_flipped_bit_in_tensor_data_is_a_checksum_error_naming_the_file(files, fmt, tmp_path):
    m, paths = files
    for i, t in enumerate(_tensors_in(fmt, m, paths)):
        start, n = _offset(paths[fmt], t), t.numel() * t.element_size()
        for at, bit in [(start, 0), (start + n // 2, 7), (start + n - 1, 3)]:
            bad = _damaged(paths[fmt], tmp_path / f"{fmt}{i}-{at}", at, bit)
            _raises_naming(bad, lambda bad=bad: _load(fmt, bad), "checksum mismatch")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_truncation_is_a_value_error_naming_the_file(files, fmt, tmp_path):
    _, paths = files
    with open(paths[fmt], "rb") as f:
        size = len(f.read())
    for tenth in range(10):
        bad = _damaged(paths[fmt], tmp_path / f"{fmt}-{tenth}", keep=size * tenth // 10)
        _raises_naming(bad, lambda bad=bad: _load(fmt, bad))


def test_a_failed_load_changes_no_weight(files, tmp_path):
    m, paths = files
    w = m.state_dict()["layers.0.linear.weight"]
    bad = _damaged(paths["weights"], tmp_path / "w", _offset(paths["weights"], w) + 1)
    target = _model()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    _raises_naming(bad, lambda: target.load_weights(bad), "checksum mismatch")
    assert _same(dict(target.state_dict()), before)
    bad = _damaged(paths["checkpoint"], tmp_path / "c", _offset(paths["checkpoint"], w) + 1)
    trainer = m.trainer
    before = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    _raises_naming(bad, lambda: trainer.load_checkpoint(bad), "checksum mismatch")
    assert _same(dict(trainer.module.state_dict()), before)


def _header_span(path):
    """Byte range of a safetensors file's JSON header (after its 8-byte length)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    return range(8, 8 + n)


@pytest.mark.parametrize("fmt", ["model", "weights"])
def test_bit_flips_all_over_the_safetensors_header_fail_or_change_nothing(files, fmt, tmp_path):
    # A flip in every byte of the header (bit = byte index mod 8): an error naming the
    # file, or the very same model (a flip in the padding or the checksum's own key name).
    _, paths = files
    want = _loaded(fmt, paths[fmt])
    for at in _header_span(paths[fmt]):
        bad = _damaged(paths[fmt], tmp_path / fmt, at, at % 8)
        try:
            got = _loaded(fmt, bad)
        except ValueError as e:
            assert repr(bad) in str(e), str(e)
        else:
            assert _same(got, want), at


def _loaded(fmt, path):
    """What loading a safetensors file gives: the weights, and for a model its config."""
    if fmt == "model":
        m = brisk.load_model(path)
        return dict(m.state_dict()), m.get_config()
    return dict(_load(fmt, path)), None


def test_a_flipped_bit_in_the_model_config_is_caught(files, tmp_path):
    # "relu" -> "selu" is one bit (0x72 -> 0x73) and still a valid model: only the
    # checksum, which covers the metadata, tells
    _, paths = files
    with open(paths["model"], "rb") as f:
        at = f.read().find(b'relu')
    bad = _damaged(paths["model"], tmp_path / "m.safetensors", at, 0)
    with safe_open(bad, framework="pt") as f:
        config = json.loads(f.metadata()["brisk"])
    assert config["layers"][0]["config"]["activation"] == "selu"
    _raises_naming(bad, lambda: brisk.load_model(bad), "checksum mismatch")


def _pickle_span(path):
    """Byte range of the pickle (``data.pkl``, stored uncompressed) in a torch.save zip."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data.pkl"))
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
    start = info.header_offset + 30 + name_len + extra_len
    return range(start, start + info.file_size)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bit_flips_all_over_the_checkpoint_pickle_fail_or_change_nothing(files, tmp_path):
    # A flip in every third byte of the pickle (bit = byte index mod 8; ~5 ms a load)
    _, paths = files
    path = paths["checkpoint"]
    want = load_checkpoint(path)
    silent = 0  # flips that torch.load alone reads as a different payload
    for at in _pickle_span(path)[::3]:
        bad = _damaged(path, tmp_path / "c.pt", at, at % 8)
        try:
            got = load_checkpoint(bad)
        except ValueError as e:
            assert repr(bad) in str(e), str(e)
            if "checksum mismatch" in str(e):
                raw = torch.load(bad, weights_only=True)
                raw.pop(CHECKSUM_KEY, None)
                silent += not _same(raw, want)
        else:  # only a flip in the checksum's key name goes unverified; it changes no value
            assert all(_same(got[k], v) for k, v in want.items()), at
    assert silent > 0  # what the checksum is for: numbers and strings in the pickle


def test_files_without_a_checksum_still_load(files, tmp_path):
    # as older brisk versions wrote them
    m, paths = files
    state = m.trainer.state_dict()
    torch.save(state, tmp_path / "old.pt")
    save_checkpoint(tmp_path / "new.pt", state)
    assert _same(load_checkpoint(tmp_path / "old.pt"), load_checkpoint(tmp_path / "new.pt"))
    for fmt in ("model", "weights"):
        with safe_open(paths[fmt], framework="pt") as f:
            meta = {k: v for k, v in f.metadata().items() if k != CHECKSUM_KEY}
        old = str(tmp_path / f"old-{fmt}.safetensors")
        save_file(load_file(paths[fmt]), old, metadata=meta)
        assert _same(dict(_load(fmt, old)), dict(m.state_dict()))


def test_the_checksum_key_is_reserved_and_removed_on_load(files, tmp_path):
    _, paths = files
    state = load_checkpoint(paths["checkpoint"])
    assert CHECKSUM_KEY not in state
    assert CHECKSUM_KEY in torch.load(paths["checkpoint"], weights_only=True)
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "x.pt", {CHECKSUM_KEY: "0"})
    with pytest.raises(ValueError, match="reserved"):
        save_safetensors(tmp_path / "x.safetensors", {"w": torch.ones(1)}, {CHECKSUM_KEY: "0"})
    for fmt in ("model", "weights"):
        with safe_open(paths[fmt], framework="pt") as f:
            assert len(f.metadata()[CHECKSUM_KEY]) == 8


def test_checksum_sees_dtype_shape_structure_and_values():
    z = torch.zeros(6)
    base = checksum({"w": z, "n": 1})
    assert checksum({"w": z.clone(), "n": 1}) == base  # the content, not the object
    others = [{"w": z.int(), "n": 1}, {"w": z.reshape(2, 3), "n": 1}, {"w": z, "n": 1.0},
              {"w": z, "n": True}, {"n": 1, "w": z}, {"v": z, "n": 1}, {"w": [z], "n": 1},
              {"w": z, "n": 2}, {"w": z, "n": 1, "m": None}]
    assert len({base, *map(checksum, others)}) == 1 + len(others)
    assert checksum({"w": torch.zeros(2, device="meta")}) is None  # no data to check


def test_a_meta_load_reads_no_data_and_verifies_none(files):
    _, paths = files
    state = load_checkpoint(paths["checkpoint"], map_location="meta")
    assert CHECKSUM_KEY not in state and state["model"]["layers.0.linear.weight"].is_meta


def test_files_get_the_permissions_a_plain_open_would_give(tmp_path):
    # mkstemp's temp files are 0600; renamed over the target they made every saved model,
    # checkpoint and --out file unreadable to other users (review find)
    import os

    from brisk.engine.checkpoint import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.txt", "x")
        assert os.stat(tmp_path / "new.txt").st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.txt", "x")
        assert os.stat(tmp_path / "private.txt").st_mode & 0o777 == 0o600
        (tmp_path / "kept.txt").write_text("old")
        os.chmod(tmp_path / "kept.txt", 0o640)  # an existing file keeps its mode
        atomic_write_text(tmp_path / "kept.txt", "new")
        assert os.stat(tmp_path / "kept.txt").st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_the_wrong_kind_of_file_is_named_for_what_it_is(tmp_path):
    import brisk

    m = brisk.Sequential([brisk.layers.Input((4,)), brisk.layers.Dense(2)])
    m.compile(optimizer="adam", loss="mse")
    m.save_weights(tmp_path / "w.safetensors")
    m.trainer.save_checkpoint(tmp_path / "c.pt")
    with pytest.raises(ValueError) as e:
        brisk.load_model(tmp_path / "w.safetensors")
    assert str(e.value) == (f"load_model: {str(tmp_path / 'w.safetensors')!r} is a weights file "
                            "(save_weights), without the architecture: build the model and "
                            "call load_weights")
    for call, what in ((lambda p: brisk.load_model(p), "load_model"),
                       (lambda p: m.load_weights(p), "load_weights")):
        with pytest.raises(ValueError) as e:
            call(tmp_path / "c.pt")
        assert str(e.value).startswith(f"{what}: {str(tmp_path / 'c.pt')!r}: a checkpoint (torch "
                                       "zip file), not a ")
        assert str(e.value).endswith(": load it with trainer.load_checkpoint")
        with pytest.raises(ValueError, match="is a folder, not a "):
            call(tmp_path)
    with pytest.raises(ValueError, match="is a folder, not a checkpoint"):
        m.trainer.load_checkpoint(tmp_path)


def test_set_weights_on_a_pruned_model_survives_the_next_forward():
    # the values went into the derived `weight`, which torch's prune hook recomputes from
    # weight_orig at the next forward: set_weights was silently undone (review find)
    import numpy as np

    import brisk
    from brisk.compress import prune

    m = brisk.Sequential([brisk.layers.Input((4,)), brisk.layers.Dense(3, use_bias=False)])
    prune(m, amount=0.5)
    mask = m.layers[0].linear.weight_mask.detach().numpy().T.copy()
    new = np.arange(12, dtype="float32").reshape(4, 3) + 1
    m.set_weights([new])
    x = np.eye(4, dtype="float32")
    np.testing.assert_array_equal(m.predict(x, verbose=0), new * mask)  # kernel rows, masked
    np.testing.assert_array_equal(m.get_weights()[0], new * mask)
