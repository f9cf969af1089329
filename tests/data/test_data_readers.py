"""Dataset readers: IDX, CIFAR-10 binary/python, checksums, download, offline errors, stats."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error

import numpy as np
import pytest

from brisk.data import datasets as ds

# ----------------------------------------------------------------------------- writers
_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def idx_bytes(arr: np.ndarray) -> bytes:
    head = struct.pack(">HBB", 0, _CODES[arr.dtype.type], arr.ndim)
    head += struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path, data: bytes, gz: bool = False) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return hashlib.md5(path.read_bytes()).hexdigest()


def small_mnist(folder, n_train=5, n_test=3, seed=0, gz=True):
    """Official-format MNIST files with random content; returns (arrays, md5 per file name)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    md5 = {}
    for stem, a in arrays.items():
        name = stem + (".gz" if gz else "")
        md5[name] = write(folder / name, idx_bytes(a), gz=gz)
    return arrays, md5


def check_mnist(result, arrays):
    (xt, yt), (xv, yv) = result
    np.testing.assert_array_equal(xt, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(yt, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(xv, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(yv, arrays["t10k-labels-idx1-ubyte"])
    assert xt.dtype == np.uint8 and yt.dtype == np.int64 and yv.dtype == np.int64


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def fail(url, *a, **k):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(ds, "urlopen", fail)
    return calls


# ----------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_roundtrip(tmp_path, gz, dtype):
    a = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    if dtype == np.uint8:
        a = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    write(tmp_path / "f", idx_bytes(a), gz=gz)
    out = ds.read_idx(tmp_path / "f")
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x00\x01" + b[2:], "not an IDX file"),  # magic must start with 0000
        (lambda b: b[:2] + b"\x07" + b[3:], "not an IDX file"),  # unknown dtype code
        (lambda b: b[:-1], "payload"),  # one pixel short
        (lambda b: b + b"\x00", "payload"),  # one byte extra
        (lambda b: b[:6], "header"),  # dims cut off
        (lambda b: b[:2], "not an IDX file"),
    ],
)
def test_read_idx_rejects_corrupt(tmp_path, mutate, message):
    good = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    write(tmp_path / "bad-idx3-ubyte", mutate(good))
    with pytest.raises(ValueError, match=message) as e:
        ds.read_idx(tmp_path / "bad-idx3-ubyte")
    assert "bad-idx3-ubyte" in str(e.value)


def test_read_idx_truncated_gzip(tmp_path):
    blob = gzip.compress(idx_bytes(np.arange(3000, dtype=np.int32)))
    (tmp_path / "t.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="t.gz.*(corrupt|truncated)"):
        ds.read_idx(tmp_path / "t.gz")


def test_load_mnist_gz_files_with_md5(tmp_path, monkeypatch, no_network):
    arrays, md5 = small_mnist(tmp_path / "mnist")
    monkeypatch.setitem(ds.CHECKSUMS, "mnist", md5)
    # Both the root and the dataset folder itself work.
    check_mnist(ds.load_mnist(tmp_path, download=False), arrays)
    check_mnist(ds.load_mnist(tmp_path / "mnist", download=True), arrays)
    assert no_network == []


def test_load_mnist_raw_files_need_no_md5(tmp_path, no_network):
    arrays, _ = small_mnist(tmp_path, gz=False)
    check_mnist(ds.load_mnist(tmp_path), arrays)
    assert no_network == []


def test_md5_mismatch_names_file_and_both_sums(tmp_path, no_network):
    _, md5 = small_mnist(tmp_path / "mnist")  # official names, not the official content
    with pytest.raises(ds.ChecksumError) as e:
        ds.load_mnist(tmp_path)
    msg = str(e.value)
    name = next(n for n in ds.CHECKSUMS["mnist"] if n in msg)
    assert ds.CHECKSUMS["mnist"][name] in msg and md5[name] in msg
    assert str(tmp_path / "mnist" / name) in msg
    assert no_network == []  # a bad file is reported, never silently replaced


def test_fashion_and_mnist_side_by_side(tmp_path, monkeypatch):
    mn, md5_m = small_mnist(tmp_path / "mnist", seed=1)
    fa, md5_f = small_mnist(tmp_path / "fashion-mnist", seed=2)
    monkeypatch.setitem(ds.CHECKSUMS, "mnist", md5_m)
    monkeypatch.setitem(ds.CHECKSUMS, "fashion-mnist", md5_f)
    check_mnist(ds.load_mnist(tmp_path, download=False), mn)
    check_mnist(ds.load_fashion_mnist(tmp_path, download=False), fa)
    # Uncompressed files (no md5 to tell them apart): the dataset's folder wins over the root.
    raw_m, _ = small_mnist(tmp_path / "raw", seed=3, gz=False)
    raw_f, _ = small_mnist(tmp_path / "raw" / "fashion-mnist", seed=4, gz=False)
    check_mnist(ds.load_fashion_mnist(tmp_path / "raw", download=False), raw_f)
    check_mnist(ds.load_mnist(tmp_path / "raw", download=False), raw_m)


def test_inconsistent_label_file(tmp_path, monkeypatch):
    arrays, md5 = small_mnist(tmp_path)
    md5["t10k-labels-idx1-ubyte.gz"] = write(
        tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(7, np.uint8)), gz=True
    )
    monkeypatch.setitem(ds.CHECKSUMS, "mnist", md5)
    with pytest.raises(ValueError, match="t10k-images.*3 images.*7 labels"):
        ds.load_mnist(tmp_path, download=False)


def test_md5_is_cached_per_path_size_mtime(tmp_path, monkeypatch):
    arrays, md5 = small_mnist(tmp_path)
    monkeypatch.setitem(ds.CHECKSUMS, "mnist", md5)
    monkeypatch.setattr(ds, "_MD5_CACHE", {})
    calls = []
    real = hashlib.md5
    monkeypatch.setattr(ds.hashlib, "md5", lambda *a: calls.append(1) or real(*a))
    ds.load_mnist(tmp_path, download=False)
    assert len(calls) == 4
    ds.load_mnist(tmp_path, download=False)
    assert len(calls) == 4  # nothing re-hashed
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    ds.load_mnist(tmp_path, download=False)
    assert len(calls) == 5  # a changed mtime is re-checked


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("BRISK_DATA_DIR", str(tmp_path / "env"))
    assert ds.data_root() == tmp_path / "env"
    assert ds.data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("BRISK_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ds.data_root() == tmp_path / "xdg" / "brisk"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ds.data_root() == tmp_path / "home" / ".cache" / "brisk"


def test_env_var_is_used(tmp_path, monkeypatch, no_network):
    arrays, _ = small_mnist(tmp_path / "mnist", gz=False)
    monkeypatch.setenv("BRISK_DATA_DIR", str(tmp_path))
    check_mnist(ds.load_mnist(), arrays)


# ----------------------------------------------------------------------------- download
def test_offline_error_lists_files_and_how_to_fix(tmp_path, no_network):
    with pytest.raises(ds.DatasetNotFoundError) as e:
        ds.load_mnist(tmp_path)
    assert isinstance(e.value, OSError)
    msg = str(e.value)
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        assert stem + ".gz" in msg
    assert "BRISK_DATA_DIR" in msg and "data_dir" in msg and "ossci-datasets" in msg
    assert no_network  # it did try
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []  # no partial downloads


def test_download_false_never_touches_network(tmp_path, no_network):
    with pytest.raises(ds.DatasetNotFoundError, match="BRISK_DATA_DIR"):
        ds.load_fashion_mnist(tmp_path, download=False)
    with pytest.raises(ds.DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        ds.load_cifar10(tmp_path, download=False)
    assert no_network == []


class _FakeResponse(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def test_download_verifies_and_writes_atomically(tmp_path, monkeypatch):
    src = tmp_path / "server"
    arrays, md5 = small_mnist(src)
    monkeypatch.setitem(ds.CHECKSUMS, "mnist", md5)
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        return _FakeResponse((src / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(ds, "urlopen", fake_urlopen)
    cache = tmp_path / "cache"
    check_mnist(ds.load_mnist(cache), arrays)
    assert len(urls) == 4 and all(
        u.startswith("https://ossci-datasets.s3.amazonaws.com/mnist/") for u in urls
    )
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(md5)
    check_mnist(ds.load_mnist(cache), arrays)
    assert len(urls) == 4  # second load is from the cache


def test_download_with_wrong_content_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(
        ds, "urlopen", lambda url, timeout=None: _FakeResponse(b"<html>error</html>")
    )
    with pytest.raises(ds.DatasetNotFoundError, match="md5"):
        ds.load_mnist(tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# ----------------------------------------------------------------------------- CIFAR-10
_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def cifar_batches(seed=0, n=3):
    """Six (images NHWC uint8, labels) batches: five train, one test."""
    rng = np.random.default_rng(seed)
    return [
        (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n))
        for _ in range(6)
    ]


def bin_record_bytes(x, y) -> bytes:
    chw = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
    return np.concatenate([y.astype(np.uint8)[:, None], chw], axis=1).tobytes()


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 ``str`` opcodes, like the official CIFAR pickles."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def py2_dumps(obj) -> bytes:
    f = io.BytesIO()
    Py2Pickler(f, protocol=2).dump(obj)
    # numpy 1.x under Python 2 named the module numpy.core.multiarray.
    return f.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def batch_pickle(x, y, i, py2=True) -> bytes:
    d = {
        b"batch_label": b"batch %d" % i,
        b"labels": [int(v) for v in y],
        b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1).copy(),
        b"filenames": [b"img_%d.png" % k for k in range(len(x))],
    }
    return py2_dumps(d) if py2 else pickle.dumps(d, protocol=4)


def write_cifar(folder, batches, kind, py2=True):
    names = _TRAIN + ["test_batch"]
    for i, (name, (x, y)) in enumerate(zip(names, batches, strict=True)):
        if kind == "bin":
            write(folder / (name + ".bin"), bin_record_bytes(x, y))
        else:
            write(folder / name, batch_pickle(x, y, i, py2))


def make_tar(path, folder, arcdir):
    with tarfile.open(path, "w:gz") as tf:
        for p in sorted(folder.iterdir()):
            tf.add(p, arcname=f"{arcdir}/{p.name}")
        readme = tarfile.TarInfo(f"{arcdir}/readme.html")
        tf.addfile(readme, io.BytesIO(b""))
    return hashlib.md5(path.read_bytes()).hexdigest()


def check_cifar(result, batches):
    (xt, yt), (xv, yv) = result
    np.testing.assert_array_equal(xt, np.concatenate([b[0] for b in batches[:5]]))
    np.testing.assert_array_equal(yt, np.concatenate([b[1] for b in batches[:5]]))
    np.testing.assert_array_equal(xv, batches[5][0])
    np.testing.assert_array_equal(yv, batches[5][1])
    assert xt.shape[1:] == (32, 32, 3) and xt.dtype == np.uint8 and yt.dtype == np.int64
    assert xt.flags.c_contiguous


@pytest.mark.parametrize(
    "kind, sub", [("bin", "cifar-10-batches-bin"), ("py", "cifar-10-batches-py")]
)
def test_cifar_extracted_batches(tmp_path, kind, sub, no_network):
    b = cifar_batches()
    write_cifar(tmp_path / "cifar-10" / sub, b, kind)
    check_cifar(ds.load_cifar10(tmp_path), b)
    check_cifar(ds.load_cifar10(tmp_path / "cifar-10" / sub), b)  # the batch folder itself
    assert no_network == []


def test_cifar_python3_pickles(tmp_path, no_network):
    b = cifar_batches(seed=3)
    write_cifar(tmp_path / "cifar-10-batches-py", b, "py", py2=False)
    check_cifar(ds.load_cifar10(tmp_path), b)


@pytest.mark.parametrize(
    "kind, name, arcdir",
    [
        ("bin", "cifar-10-binary.tar.gz", "cifar-10-batches-bin"),
        ("py", "cifar-10-python.tar.gz", "cifar-10-batches-py"),
    ],
)
def test_cifar_archives(tmp_path, monkeypatch, kind, name, arcdir, no_network):
    b = cifar_batches(seed=1)
    write_cifar(tmp_path / "src", b, kind)
    (tmp_path / "cifar-10").mkdir()
    md5 = make_tar(tmp_path / "cifar-10" / name, tmp_path / "src", arcdir)
    monkeypatch.setitem(ds.CHECKSUMS, "cifar-10", {**ds.CHECKSUMS["cifar-10"], name: md5})
    check_cifar(ds.load_cifar10(tmp_path), b)


def test_cifar_archive_md5_mismatch(tmp_path, no_network):
    b = cifar_batches()
    write_cifar(tmp_path / "src", b, "py")
    actual = make_tar(tmp_path / "cifar-10-python.tar.gz", tmp_path / "src", "cifar-10-batches-py")
    with pytest.raises(ds.ChecksumError) as e:
        ds.load_cifar10(tmp_path)
    msg = str(e.value)
    assert (
        "cifar-10-python.tar.gz" in msg
        and actual in msg
        and "c58f30108f718f92721af3b95e74349a" in msg
    )


def test_cifar_truncated_archive(tmp_path, monkeypatch):
    b = cifar_batches()
    write_cifar(tmp_path / "src", b, "bin")
    p = tmp_path / "cifar-10-binary.tar.gz"
    make_tar(p, tmp_path / "src", "cifar-10-batches-bin")
    p.write_bytes(p.read_bytes()[:-200])
    md5 = hashlib.md5(p.read_bytes()).hexdigest()
    monkeypatch.setitem(ds.CHECKSUMS, "cifar-10", {"cifar-10-binary.tar.gz": md5})
    with pytest.raises(ValueError, match="cifar-10-binary.tar.gz.*(corrupt|truncated)"):
        ds.load_cifar10(tmp_path, download=False)


def test_cifar_truncated_bin_batch(tmp_path):
    b = cifar_batches()
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar(folder, b, "bin")
    p = folder / "data_batch_3.bin"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(ValueError, match="data_batch_3.bin.*truncated"):
        ds.load_cifar10(tmp_path, download=False)


@pytest.mark.parametrize("name", ["data_batch_2.bin", "test_batch.bin"])
def test_cifar_bin_batch_cut_on_a_record_boundary(tmp_path, name):
    # a whole number of records, one short: the byte count alone cannot tell
    b = cifar_batches(n=4)
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar(folder, b, "bin")
    p = folder / name
    p.write_bytes(p.read_bytes()[: -(1 + 32 * 32 * 3)])
    with pytest.raises(ValueError) as e:
        ds.load_cifar10(tmp_path, download=False)
    assert str(e.value) == (f"{p}: 3 records where the other CIFAR-10 batches hold 4; "
                            "truncated or corrupt file")


def test_cifar_truncated_pickle(tmp_path):
    b = cifar_batches()
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, b, "py")
    p = folder / "test_batch"
    p.write_bytes(p.read_bytes()[:-1000])
    with pytest.raises(ValueError, match="test_batch.*(corrupt|truncated)"):
        ds.load_cifar10(tmp_path, download=False)


def test_cifar_bad_labels(tmp_path):
    b = cifar_batches()
    b[0] = (b[0][0], np.full(len(b[0][1]), 11))
    write_cifar(tmp_path / "cifar-10-batches-bin", b, "bin")
    with pytest.raises(ValueError, match="labels must be 0..9"):
        ds.load_cifar10(tmp_path, download=False)


# ----------------------------------------------------------------------------- unpickler
class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_evil_pickle_really_is_evil(tmp_path):
    """Control: plain pickle.loads runs the command, so the next test can fail."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Evil(f"touch {marker}"), protocol=2))
    assert marker.exists()


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    b = cifar_batches()
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, b, "py")
    (folder / "data_batch_2").write_bytes(
        pickle.dumps({b"data": _Evil(f"touch {marker}")}, protocol=2)
    )
    with pytest.raises(pickle.UnpicklingError) as e:
        ds.load_cifar10(tmp_path, download=False)
    assert "system" in str(e.value) and "data_batch_2" in str(e.value)
    assert not marker.exists()

    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        ds.RestrictedUnpickler(io.BytesIO(pickle.dumps(_EvalEvil())), encoding="bytes").load()
    # The bytes helper only decodes latin1; it is no general codec gateway.
    blob = pickle.dumps(b"abc", protocol=2).replace(b"latin1", b"rot13x")
    with pytest.raises(pickle.UnpicklingError):
        ds.RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()


# ----------------------------------------------------------------------------- digits, stats
def test_load_digits():
    from sklearn.datasets import load_digits

    (xt, yt), (xv, yv) = ds.load_digits()
    assert xt.shape == (1437, 8, 8) and xv.shape == (360, 8, 8)
    assert xt.dtype == np.uint8 and yt.dtype == np.int64
    d = load_digits()
    ref = np.round(d.images * 255 / 16).astype(np.uint8)
    x = np.concatenate([xt, xv])
    y = np.concatenate([yt, yv])
    # The split is a permutation of the sklearn data: sort both by content and compare.
    key = lambda a: np.lexsort(a.reshape(len(a), -1).T)  # noqa: E731
    np.testing.assert_array_equal(x[key(x)], ref[key(ref)])
    assert sorted(y.tolist()) == sorted(d.target.tolist())
    assert x.max() == 255 and x.min() == 0
    (xt2, _), _ = ds.load_digits()
    np.testing.assert_array_equal(xt, xt2)  # deterministic


def test_compute_stats_per_channel():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (37, 5, 4, 3), dtype=np.uint8)
    mean, std = ds.compute_stats(x, chunk_size=7)
    v = x.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, v.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, v.std(0), rtol=1e-12)
    f = rng.random((10, 6, 6))
    m1, s1 = ds.compute_stats(f)
    assert m1 == pytest.approx((f.mean(),)) and s1 == pytest.approx((f.std(),))
    with pytest.raises(ValueError, match="x"):
        ds.compute_stats(np.zeros((0, 2, 2), np.uint8))


# ----------------------------------------------------------------------------- real files
MNIST_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_real_mnist(data_dir):
    (xt, yt), (xv, yv) = ds.load_mnist(data_dir=data_dir, download=False)
    assert xt.shape == (60000, 28, 28) and xv.shape == (10000, 28, 28)
    assert xt.dtype == np.uint8 and yt.dtype == np.int64 and yv.shape == (10000,)
    assert np.bincount(yt).tolist() == MNIST_COUNTS
    mean, std = ds.compute_stats(xt)
    assert round(mean[0], 4) == 0.1307 and round(std[0], 4) == 0.3081
    assert ((round(mean[0], 4),), (round(std[0], 4),)) == ds.STATS["mnist"]
    # The dataset folder itself works too.
    (xt2, _), _ = ds.load_mnist(data_dir=data_dir / "mnist", download=False)
    np.testing.assert_array_equal(xt, xt2)


def test_real_fashion_mnist(data_dir):
    (xt, yt), (xv, yv) = ds.load_fashion_mnist(data_dir=data_dir, download=False)
    assert xt.shape == (60000, 28, 28) and xv.shape == (10000, 28, 28)
    assert np.bincount(yt).tolist() == [6000] * 10
    assert np.bincount(yv).tolist() == [1000] * 10
    mean, std = ds.compute_stats(xt)
    assert ((round(mean[0], 4),), (round(std[0], 4),)) == ds.STATS["fashion-mnist"]
