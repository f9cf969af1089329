"""Exact tests of ``brisk.engine.checkpoint``: the atomic writer (stale temps, fsync order,
file modes, text encoding), checksums against CRC32s computed here from the documented
byte layout, the load errors' full messages, ``plain_state_dict`` and ``refresh_pruned``.

Every object is built inside its test (mutmut switches a mutant on only while a test runs).
"""

import fcntl
import os
import stat
import zlib

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from brisk.engine import checkpoint
from brisk.engine.checkpoint import (
    CHECKSUM_KEY,
    atomic_write,
    atomic_write_text,
    checksum,
    load_checkpoint,
    load_safetensors,
    plain_state_dict,
    refresh_pruned,
    remove_stale_temps,
    save_checkpoint,
    save_safetensors,
)


def _crc(*chunks: bytes) -> str:
    """CRC32 of the chunks in order, as ``checksum`` documents it (8 hex digits)."""
    return f"{zlib.crc32(b''.join(chunks)):08x}"


def _raw(t: torch.Tensor) -> bytes:
    return t.contiguous().numpy().tobytes()


# --- remove_stale_temps ---------------------------------------------------------------


def test_remove_stale_temps_returns_the_full_paths_it_removed_and_skips_what_it_cannot(
        tmp_path):
    removable = [".a.pt.x1y2.brisk-tmp", ".a.pt.zz.brisk-tmp"]
    others = [".b.pt.q.brisk-tmp", ".a.pt.x1.brisk-tmp.bak", "a.pt", "a.pt.brisk-tmp"]
    for name in removable + others:
        (tmp_path / name).write_text("partial")
    (tmp_path / ".a.pt.dir.brisk-tmp").mkdir()  # matches, but unlink fails: skipped
    removed = remove_stale_temps(tmp_path / "a.pt")
    assert sorted(removed) == [os.path.join(str(tmp_path), n) for n in sorted(removable)]
    assert sorted(os.listdir(tmp_path)) == sorted(others + [".a.pt.dir.brisk-tmp"])


def test_remove_stale_temps_of_a_relative_path_names_them_absolutely(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".w.safetensors.k9.brisk-tmp").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert remove_stale_temps(os.path.join("sub", "w.safetensors")) == [
        str(tmp_path / "sub" / ".w.safetensors.k9.brisk-tmp")]
    assert remove_stale_temps(tmp_path / "missing-folder" / "w.safetensors") == []


# --- atomic_write ---------------------------------------------------------------------


def test_atomic_write_fsyncs_the_writable_temp_then_chmods_renames_and_fsyncs_the_folder(
        tmp_path, monkeypatch):
    events = []
    real = {n: getattr(os, n) for n in ("fsync", "chmod", "replace")}

    def fsync(fd):
        st = os.fstat(fd)
        kind = "file" if stat.S_ISREG(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "?"
        events.append(("fsync", kind, fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE))
        real["fsync"](fd)

    def chmod(path, mode):
        events.append(("chmod", os.path.basename(path).startswith(".out.bin."), mode))
        real["chmod"](path, mode)

    def replace(src, dst):
        events.append(("replace", os.path.basename(src).endswith(".brisk-tmp"), str(dst)))
        real["replace"](src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "chmod", chmod)
    monkeypatch.setattr(os, "replace", replace)
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "out.bin", lambda tmp: open(tmp, "wb").write(b"\x00data"))
    finally:
        os.umask(old)
    # the data is on disk (fsync of a read-write descriptor) before the rename points at it
    assert events == [("fsync", "file", os.O_RDWR), ("chmod", True, 0o640),
                      ("replace", True, str(tmp_path / "out.bin")),
                      ("fsync", "dir", os.O_RDONLY)]
    assert (tmp_path / "out.bin").read_bytes() == b"\x00data"


def test_a_writer_that_removes_its_temp_file_then_fails_raises_its_own_error(tmp_path):
    def write(tmp):
        os.unlink(tmp)  # the cleanup's unlink then fails, and must not mask this error
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError) as e:
        atomic_write(tmp_path / "x.pt", write)
    assert str(e.value) == "writer failed"
    assert os.listdir(tmp_path) == []


def test_a_failed_rename_removes_the_temp_file(tmp_path):
    (tmp_path / "d").mkdir()  # os.replace of a file over a folder fails
    with pytest.raises(OSError):
        atomic_write(tmp_path / "d", lambda tmp: open(tmp, "w").write("x"))
    assert os.listdir(tmp_path) == ["d"] and os.listdir(tmp_path / "d") == []


def test_files_get_0o666_less_the_umask_or_the_existing_mode_and_the_umask_is_kept(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "new.txt", "x")
        assert os.stat(tmp_path / "new.txt").st_mode & 0o7777 == 0o640
        assert os.umask(0o002) == 0o027  # reading it put it straight back
        atomic_write_text(tmp_path / "new2.txt", "x")
        assert os.stat(tmp_path / "new2.txt").st_mode & 0o7777 == 0o664
        (tmp_path / "kept.sh").write_text("old")
        os.chmod(tmp_path / "kept.sh", 0o2751)  # every permission bit of the old file stays
        atomic_write_text(tmp_path / "kept.sh", "new")
        assert os.stat(tmp_path / "kept.sh").st_mode & 0o7777 == 0o2751
        assert (tmp_path / "kept.sh").read_text() == "new"
        assert os.umask(0o002) == 0o002
    finally:
        os.umask(old)


def test_atomic_write_text_writes_utf8_without_newline_translation_whatever_the_platform(
        tmp_path, monkeypatch):
    # as on Windows: a cp1252 default encoding and "\r\n" line ends (the pure-Python io,
    # which reads both at open time, stands in for the builtin one)
    import _pyio

    monkeypatch.setattr(checkpoint, "open", _pyio.open, raising=False)
    monkeypatch.setattr(os, "linesep", "\r\n")
    monkeypatch.setattr(_pyio, "text_encoding",
                        lambda encoding, stacklevel=2: "cp1252" if encoding is None else encoding)
    text = "é€ line\nnext\r\nlast\n"
    atomic_write_text(tmp_path / "h.json", text)
    assert (tmp_path / "h.json").read_bytes() == text.encode("utf-8")


# --- checksum ---------------------------------------------------------------------------


def test_checksum_is_the_crc32_of_the_documented_layout():
    assert checksum({"w": torch.zeros(2), "step": 3}) == "e0d48307" == _crc(
        b"D2", b"str:'w'", b"Ttorch.float32(2,)", bytes(8), b"str:'step'", b"int:3")
    x = torch.arange(6, dtype=torch.int16).reshape(2, 3)
    payload = {"x": x.t(), "p": [1, 0.1, True, "é", b"\x00", None, 1j, (2,)]}
    assert checksum(payload) == _crc(
        b"D2", b"str:'x'", b"Ttorch.int16(3, 2)", _raw(x.t()), b"str:'p'", b"L8", b"int:1",
        b"float:0.1", b"bool:True", "str:'é'".encode(), b"bytes:b'\\x00'", b"NoneType:None",
        b"complex:1j", b"L1", b"int:2")


def test_checksum_counts_other_values_by_type_name_only():
    class Opaque:
        pass

    assert checksum([{5}, Opaque()]) == _crc(b"L2", b"set", b"Opaque")
    assert checksum(Opaque()) == _crc(b"Opaque") != checksum(None)


def test_checksum_is_none_when_any_tensor_has_no_data():
    assert checksum([1, {"a": torch.zeros(1)}, torch.empty(3, device="meta")]) is None


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
def test_checksum_of_a_quantized_tensor_counts_its_integer_values():
    q = torch.quantize_per_tensor(torch.tensor([0.5, 1.0, -1.0]), 0.5, 3, torch.quint8)
    assert checksum(q) == _crc(b"Ttorch.quint8(3,)", bytes([4, 5, 1]))


def test_checksum_of_a_sparse_tensor_counts_its_dense_values():
    dense = torch.tensor([[0.0, 1.5, 0.0], [2.0, 0.0, 0.0]])
    assert checksum(dense.to_sparse()) == _crc(b"Ttorch.float32(2, 3)", _raw(dense))


def test_checksum_of_a_conjugate_view_counts_its_values():
    z = torch.tensor([1 + 2j, -3j], dtype=torch.complex64)
    assert checksum(z.conj()) == _crc(b"Ttorch.complex64(2,)", _raw(torch.conj_physical(z)))


# --- checkpoints ----------------------------------------------------------------------


def test_save_checkpoint_stores_the_checksum_and_load_verifies_and_removes_it(tmp_path):
    path = tmp_path / "c.pt"
    w = torch.tensor([1.0, -2.0])
    save_checkpoint(path, {"w": w, "step": 7})
    raw = torch.load(path, weights_only=True)
    assert list(raw) == ["w", "step", CHECKSUM_KEY]
    assert raw[CHECKSUM_KEY] == _crc(b"D2", b"str:'w'", b"Ttorch.float32(2,)", _raw(w),
                                     b"str:'step'", b"int:7")
    state = load_checkpoint(path)
    assert list(state) == ["w", "step"] and torch.equal(state["w"], w) and state["step"] == 7


def test_a_payload_without_data_is_saved_without_a_checksum(tmp_path):
    save_checkpoint(tmp_path / "m.pt", {"w": torch.empty(2, device="meta")})
    assert list(torch.load(tmp_path / "m.pt", weights_only=True)) == ["w"]


def test_the_reserved_keys_are_refused_with_exact_messages(tmp_path):
    with pytest.raises(ValueError) as e:
        save_checkpoint(tmp_path / "c.pt", {CHECKSUM_KEY: "0"})
    assert str(e.value) == "save_checkpoint: 'brisk.crc32' is a reserved key"
    with pytest.raises(ValueError) as e:
        save_safetensors(tmp_path / "w.safetensors", {"w": torch.ones(1)}, {CHECKSUM_KEY: "0"})
    assert str(e.value) == "save_safetensors: 'brisk.crc32' is a reserved metadata key"
    assert os.listdir(tmp_path) == []


def test_a_checksum_mismatch_names_the_file_and_both_checksums(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 3})
    raw = torch.load(path, weights_only=True)
    stored = raw[CHECKSUM_KEY]
    assert stored == _crc(b"D1", b"str:'step'", b"int:3")
    raw["step"] = 4
    torch.save(raw, path)
    computed = _crc(b"D1", b"str:'step'", b"int:4")
    with pytest.raises(ValueError) as e:
        load_checkpoint(path)
    assert str(e.value) == (f"checkpoint {str(path)!r}: checksum mismatch: the file is corrupt "
                            f"(stored {stored!r}, computed {computed!r})")


def test_load_checkpoint_errors_name_the_file_exactly(tmp_path):
    missing = tmp_path / "none.pt"
    with pytest.raises(FileNotFoundError) as e:
        load_checkpoint(missing)
    assert str(e.value) == f"checkpoint: no such file {str(missing)!r}"
    with pytest.raises(ValueError) as e:
        load_checkpoint(tmp_path)
    assert str(e.value) == f"checkpoint {str(tmp_path)!r}: is a folder, not a checkpoint"
    save_safetensors(tmp_path / "w.safetensors", {"w": torch.ones(2)})
    with pytest.raises(ValueError) as e:
        load_checkpoint(tmp_path / "w.safetensors")
    assert str(e.value) == (f"checkpoint {str(tmp_path / 'w.safetensors')!r}: a safetensors "
                            "weights file, not a checkpoint (load it with load_model or "
                            "load_weights)")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError) as e:
        load_checkpoint(tmp_path / "list.pt")
    assert str(e.value) == (f"checkpoint {str(tmp_path / 'list.pt')!r}: expected a dict "
                            "payload, got list")


def test_an_unreadable_checkpoint_gives_the_first_line_of_the_reason(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError) as e:
        load_checkpoint(path)
    cause = e.value.__cause__
    assert cause is not None
    first = str(cause).splitlines()[0][:200]
    assert str(e.value) == (f"checkpoint {str(path)!r}: corrupt, truncated or not a checkpoint "
                            f"({type(cause).__name__}: {first})")
    assert "NoneType" not in str(e.value)


@pytest.mark.parametrize("error, reason", [
    (lambda: OSError("x" * 199 + "yz" + "\nsecond line"), "OSError: " + "x" * 199 + "y"),
    (lambda: RuntimeError(), "RuntimeError: "),
    (lambda: KeyError("k"), "KeyError: 'k'"),
])
def test_the_reason_is_the_type_and_at_most_200_characters_of_the_first_line(
        tmp_path, monkeypatch, error, reason):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1})
    err = error()

    def fail(*args, **kwargs):
        raise err

    monkeypatch.setattr(torch, "load", fail)
    with pytest.raises(ValueError) as e:
        load_checkpoint(path)
    assert str(e.value) == (f"checkpoint {str(path)!r}: corrupt, truncated or not a checkpoint "
                            f"({reason})")
    assert e.value.__cause__ is err


# --- safetensors ------------------------------------------------------------------------


def test_save_safetensors_stores_the_checksum_of_sorted_metadata_and_tensors(tmp_path):
    path = tmp_path / "w.safetensors"
    b, a = torch.tensor([1.0, 2.0]), torch.tensor([[3]], dtype=torch.int32)
    save_safetensors(path, {"b": b, "a": a}, {"z": "1", "k": "v"})
    tensors, meta = load_safetensors(path, "src")
    want = _crc(b"L2", b"D2", b"str:'k'", b"str:'v'", b"str:'z'", b"str:'1'",
                b"D2", b"str:'a'", b"Ttorch.int32(1, 1)", _raw(a),
                b"str:'b'", b"Ttorch.float32(2,)", _raw(b))
    assert meta == {"z": "1", "k": "v", CHECKSUM_KEY: want}
    assert sorted(tensors) == ["a", "b"]
    assert torch.equal(tensors["a"], a) and torch.equal(tensors["b"], b)
    save_safetensors(tmp_path / "plain.safetensors", {"b": b})
    assert load_safetensors(tmp_path / "plain.safetensors", "src")[1] == {
        CHECKSUM_KEY: _crc(b"L2", b"D0", b"D1", b"str:'b'", b"Ttorch.float32(2,)", _raw(b))}


def test_a_safetensors_checksum_mismatch_starts_with_the_source(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    w = torch.tensor([1.0, 2.0])
    save_safetensors(path, {"w": w}, {"k": "v"})
    _, meta = load_safetensors(path, "src")
    save_file({"w": w}, str(path), metadata={"k": "u", CHECKSUM_KEY: meta[CHECKSUM_KEY]})
    with pytest.raises(ValueError) as e:
        load_safetensors(path, "load_weights: 'w'")
    computed = _crc(b"L2", b"D1", b"str:'k'", b"str:'u'", b"D1", b"str:'w'",
                    b"Ttorch.float32(2,)", _raw(w))
    assert str(e.value) == ("load_weights: 'w': checksum mismatch: the file is corrupt "
                            f"(stored {meta[CHECKSUM_KEY]!r}, computed {computed!r})")


def test_load_safetensors_errors_use_the_default_kind_and_exact_messages(tmp_path):
    with pytest.raises(ValueError) as e:
        load_safetensors(tmp_path, "src")
    assert str(e.value) == "src: is a folder, not a safetensors file"
    torch.save({"a": 1}, tmp_path / "c.pt")
    with pytest.raises(ValueError) as e:
        load_safetensors(tmp_path / "c.pt", "src")
    assert str(e.value) == ("src: a checkpoint (torch zip file), not a safetensors file: load "
                            "it with trainer.load_checkpoint")
    with pytest.raises(ValueError) as e:
        load_safetensors(tmp_path / "c.pt", "load_model: 'c.pt'", kind="model file")
    assert str(e.value) == ("load_model: 'c.pt': a checkpoint (torch zip file), not a model "
                            "file: load it with trainer.load_checkpoint")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage!!")
    with pytest.raises(ValueError) as e:
        load_safetensors(bad, "src")
    cause = e.value.__cause__
    assert cause is not None
    assert str(e.value) == ("src: truncated, corrupt or not a safetensors file "
                            f"({type(cause).__name__}: {str(cause).splitlines()[0][:200]})")
    assert "NoneType" not in str(e.value)


def test_a_safetensors_read_error_gives_its_reason(tmp_path, monkeypatch):
    import safetensors

    err = ValueError("b" * 300)

    def fail(*args, **kwargs):
        raise err

    monkeypatch.setattr(safetensors, "safe_open", fail)
    (tmp_path / "w.safetensors").write_bytes(b"12345678{}")
    with pytest.raises(ValueError) as e:
        load_safetensors(tmp_path / "w.safetensors", "src", kind="weights file")
    assert str(e.value) == f"src: truncated, corrupt or not a weights file (ValueError: {'b' * 200})"
    assert e.value.__cause__ is err


def test_is_safetensors_reads_the_json_brace_after_the_length(tmp_path):
    from brisk.engine.checkpoint import _is_safetensors, _is_torch_zip

    (tmp_path / "s").write_bytes(b"12345678{")
    (tmp_path / "short").write_bytes(b"1234567{")
    (tmp_path / "other").write_bytes(b"12345678[{")
    assert _is_safetensors(tmp_path / "s") is True
    assert _is_safetensors(tmp_path / "short") is False
    assert _is_safetensors(tmp_path / "other") is False
    assert _is_safetensors(tmp_path / "missing") is False  # unreadable: not one
    assert _is_torch_zip(tmp_path / "missing") is False
    (tmp_path / "z").write_bytes(b"PK\x03\x04rest")
    (tmp_path / "z2").write_bytes(b"PK\x03\x05rest")
    assert _is_torch_zip(tmp_path / "z") is True and _is_torch_zip(tmp_path / "z2") is False


# --- pruned models ----------------------------------------------------------------------


class _Net(nn.Module):
    """A pruned Linear, then a parameter named ``*_orig`` and a buffer named ``*_mask``
    without their partners (not pruning state), then a second pruned Linear."""

    def __init__(self):
        super().__init__()
        self.scale_orig = nn.Parameter(torch.tensor([2.0, 3.0]))
        self.register_buffer("attn_mask", torch.tensor([[1.0, 0.0], [5.0, 0.0]]).t())
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(torch.arange(1.0, 7.0).reshape(2, 3))
            self.a.bias.copy_(torch.tensor([0.5, -0.5]))
            self.b.weight.copy_(torch.tensor([[7.0, -8.0], [9.0, 10.0]]))
        prune.custom_from_mask(self.a, "weight", torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
        prune.custom_from_mask(self.b, "weight", torch.tensor([[0.0, 1.0], [1.0, 1.0]]))


def test_plain_state_dict_folds_masks_and_keeps_unpaired_orig_and_mask_names():
    net = _Net()
    assert list(net.state_dict()) == ["scale_orig", "attn_mask", "a.bias", "a.weight_orig",
                                      "a.weight_mask", "b.weight_orig", "b.weight_mask"]
    out = plain_state_dict(net)
    assert list(out) == ["scale_orig", "attn_mask", "a.bias", "a.weight", "b.weight"]
    want = {"scale_orig": torch.tensor([2.0, 3.0]),
            "attn_mask": torch.tensor([[1.0, 5.0], [0.0, 0.0]]),
            "a.bias": torch.tensor([0.5, -0.5]),
            "a.weight": torch.tensor([[1.0, 0.0, 3.0], [0.0, 5.0, 0.0]]),
            "b.weight": torch.tensor([[0.0, -8.0], [9.0, 10.0]])}
    for k, v in want.items():
        assert torch.equal(out[k], v), k
        assert out[k].is_contiguous() and not out[k].requires_grad, k
    plain = nn.Linear(3, 2)
    plain.load_state_dict({"weight": out["a.weight"], "bias": out["a.bias"]})


def test_refresh_pruned_recomputes_every_pruned_weight_now():
    net = _Net()
    other = nn.Linear(2, 2)
    other.register_forward_pre_hook(lambda m, args: None)  # not a pruning method
    model = nn.Sequential(net, other)
    before = other.weight.detach().clone()
    with torch.no_grad():
        net.a.weight_orig.copy_(torch.full((2, 3), 2.0))
        net.b.weight_orig.mul_(-1)
    assert net.a.weight[0, 0] == 1.0  # stale until the next forward
    refresh_pruned(model)
    assert torch.equal(net.a.weight, torch.tensor([[2.0, 0.0, 2.0], [0.0, 2.0, 0.0]]))
    assert torch.equal(net.b.weight, torch.tensor([[0.0, 8.0], [-9.0, -10.0]]))
    assert torch.equal(other.weight, before)
