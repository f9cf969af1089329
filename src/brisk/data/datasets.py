"""Dataset readers with checksums and optional download, returning Keras-shaped numpy arrays.

Every loader returns ``(x_train, y_train), (x_test, y_test)``: images as ``uint8`` in Keras
layout (``(N, 28, 28)`` for MNIST and Fashion-MNIST, ``(N, 32, 32, 3)`` channels-last for
CIFAR-10, ``(N, 8, 8)`` for digits) and labels as ``int64`` of shape ``(N,)``.

Where files are looked for, first match wins:

1. the ``data_dir`` argument, else ``$BRISK_DATA_DIR``, else ``$XDG_CACHE_HOME/brisk`` (default
   ``~/.cache/brisk``): call this the root;
2. inside the root, the dataset's own subdirectory (``mnist/``, ``fashion-mnist/``,
   ``cifar-10/``) first, then the root itself. So ``load_mnist("/data")`` and
   ``load_mnist("/data/mnist")`` both work.

Official archives are checked against their published md5 (cached per path, size and mtime so a
second load does not re-hash). Files that have no published md5 (uncompressed IDX files, the
extracted CIFAR batches) are validated by structure instead. Missing files are downloaded from
the official mirrors into ``root/<dataset>/`` when ``download=True``, verified, and written
atomically. Errors:

* :class:`DatasetNotFoundError` (a ``FileNotFoundError``, hence ``OSError``): files missing and
  not downloadable; the message lists the file names, the URLs and how to point brisk at them.
* :class:`ChecksumError` (a ``ValueError``): an official file whose md5 differs.
* ``ValueError`` naming the file: a corrupt or truncated file.
* ``pickle.UnpicklingError`` naming the global: a CIFAR pickle that references anything beyond
  numpy array reconstruction (it would run code; it is refused, never executed).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CHECKSUMS",
    "STATS",
    "ChecksumError",
    "DatasetNotFoundError",
    "RestrictedUnpickler",
    "compute_stats",
    "data_root",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
]

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

# Injectable for tests (monkeypatch ``brisk.data.datasets.urlopen``); never called with
# download=False.
urlopen: Callable[..., Any] = urllib.request.urlopen

#: Official md5 of each distribution file, per dataset. Uncompressed IDX files and extracted
#: CIFAR batches have no published md5 and are validated by structure instead.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar-10": {
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
        "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530",
    },
}

_MIRRORS: dict[str, list[str]] = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "cifar-10": ["https://www.cs.toronto.edu/~kriz/"],
}

#: Per-channel (mean, std) on the 0..1 scale, as used by torchvision and most papers.
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing and could not be downloaded (an ``OSError``)."""


class ChecksumError(ValueError):
    """A file's md5 differs from the official one."""


# ----------------------------------------------------------------------------- locations
def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The directory brisk reads datasets from (and downloads into).

    ``data_dir`` if given, else ``$BRISK_DATA_DIR``, else ``$XDG_CACHE_HOME/brisk`` (default
    ``~/.cache/brisk``).

    Example::

        >>> data_root("/data")
        PosixPath('/data')
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("BRISK_DATA_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "brisk"


def _search_dirs(root: Path, subdir: str) -> list[Path]:
    # The dataset's own subdirectory first: a root holding several datasets side by side
    # must not hand Fashion-MNIST files to load_mnist (they share file names).
    return [root / subdir, root] if root.name != subdir else [root]


def _download_dir(root: Path, subdir: str) -> Path:
    return root if root.name == subdir else root / subdir


# ----------------------------------------------------------------------------- checksums
_MD5_CACHE: dict[tuple[str, int, int], str] = {}


def _md5(path: Path) -> str:
    """md5 of a file, cached per (real path, size, mtime) for this process."""
    st = path.stat()
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _MD5_CACHE:
        h = hashlib.md5()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):  # 1 MiB reads
                h.update(chunk)
        _MD5_CACHE[key] = h.hexdigest()
    return _MD5_CACHE[key]


def _check_md5(path: Path, expected: str) -> None:
    actual = _md5(path)
    if actual != expected:
        raise ChecksumError(
            f"{path}: md5 mismatch (expected {expected}, got {actual}); the file is corrupt, "
            "truncated or not the official one. Delete it (brisk re-downloads it) or replace it "
            "with the official file."
        )


# ----------------------------------------------------------------------------- download
def _fetch(url: str, dest: Path, md5: str | None) -> None:
    """Download ``url`` to ``dest`` atomically (temp file in the same dir, then os.replace)."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urlopen(url, timeout=60) as resp:
            total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
            with tqdm(
                total=int(total) if total else None,
                unit="B",
                unit_scale=True,
                desc=dest.name,
                disable=None,
            ) as bar:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if md5 is not None and h.hexdigest() != md5:
            raise ChecksumError(f"{url}: downloaded file has md5 {h.hexdigest()}, expected {md5}")
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _download(dataset: str, name: str, dest_dir: Path) -> Path:
    """Fetch ``name`` from the first mirror that works; the errors of all if none does."""
    errors = []
    for base in _MIRRORS[dataset]:
        url = base + name
        try:
            _fetch(url, dest_dir / name, CHECKSUMS[dataset].get(name))
            return dest_dir / name
        except (OSError, ValueError) as e:  # URLError, HTTPError, timeouts are OSErrors
            errors.append(f"{url}: {e}")
    raise OSError("; ".join(errors))


def _not_found(
    dataset: str, names: list[str], dirs: list[Path], reason: str
) -> DatasetNotFoundError:
    urls = ", ".join(_MIRRORS[dataset])
    return DatasetNotFoundError(
        f"{dataset}: missing file(s) {', '.join(names)}; looked in "
        f"{', '.join(str(d) for d in dirs)}. {reason}\n"
        f"Get the official files from {urls} and put them in one of those folders, or point "
        f"brisk at the folder holding them with data_dir=... or the BRISK_DATA_DIR "
        f"environment variable (a '{dataset}/' subfolder is also searched)."
    )


# ----------------------------------------------------------------------------- IDX
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic number."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from e


def _parse_idx(data: bytes, name: str) -> np.ndarray:
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file (only {len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{name}: not an IDX file (magic bytes {data[:4].hex()}; expected 0000, a dtype "
            f"code in {sorted(hex(c) for c in _IDX_DTYPES)} and at least one dimension)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{name}: IDX payload is {len(data) - header} bytes, but dims {dims} of "
            f"{dtype} need {expected} (truncated or corrupt file)"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)  # native order, writable


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a writable native-endian numpy array.

    Validates the magic number, dtype code, dimensions and payload length; anything else
    raises ``ValueError`` naming the file.

    Example::

        x = read_idx("/data/mnist/t10k-images-idx3-ubyte.gz")
        x.shape, x.dtype  # ((10000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    return _parse_idx(_read_bytes(path), str(path))


_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _find_idx(dataset: str, stem: str, dirs: list[Path]) -> Path | None:
    """First valid candidate for one IDX file; raises the first md5 mismatch if none is."""
    mismatch: ChecksumError | None = None
    gz = stem + ".gz"
    # Official .gz first (md5-checked), then the uncompressed file under its usual names.
    raw_names = [stem, stem.replace("-idx", ".idx")]
    for d in dirs:
        p = d / gz
        if p.is_file():
            try:
                _check_md5(p, CHECKSUMS[dataset][gz])
                return p
            except ChecksumError as e:
                mismatch = mismatch or e
        for raw in raw_names:
            if (d / raw).is_file():
                return d / raw
    if mismatch is not None:
        raise mismatch
    return None


def _load_idx_dataset(dataset: str, data_dir, download: bool) -> Arrays:
    root = data_root(data_dir)
    dirs = _search_dirs(root, dataset)
    paths = {k: _find_idx(dataset, stem, dirs) for k, stem in _IDX_FILES.items()}
    missing = [_IDX_FILES[k] + ".gz" for k, p in paths.items() if p is None]
    if missing:
        if not download:
            raise _not_found(dataset, missing, dirs, "download=False, so nothing was fetched.")
        dest = _download_dir(root, dataset)
        try:
            for name in missing:
                _download(dataset, name, dest)
        except OSError as e:
            raise _not_found(dataset, missing, dirs, f"Download into {dest} failed: {e}") from e
        paths = {k: p or dest / (_IDX_FILES[k] + ".gz") for k, p in paths.items()}
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        px, py = paths[f"x_{split}"], paths[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(f"{px}: expected uint8 images (N, 28, 28), got {x.dtype} {x.shape}")
        if y.dtype != np.uint8 or y.ndim != 1:
            raise ValueError(f"{py}: expected uint8 labels (N,), got {y.dtype} {y.shape}")
        if len(x) != len(y):
            raise ValueError(f"{px} has {len(x)} images but {py} has {len(y)} labels")
        if y.size and y.max() > 9:
            raise ValueError(f"{py}: labels must be 0..9, found {int(y.max())}")
    return (
        (arrays["x_train"], arrays["y_train"].astype(np.int64)),
        (arrays["x_test"], arrays["y_test"].astype(np.int64)),
    )


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool = True) -> Arrays:
    """MNIST handwritten digits: 60000 train / 10000 test images (N, 28, 28) uint8, labels int64.

    Example::

        (x_train, y_train), (x_test, y_test) = load_mnist()  # or load_mnist(data_dir="/data")
        x_train.shape, y_train.dtype  # ((60000, 28, 28), dtype('int64'))
    """
    return _load_idx_dataset("mnist", data_dir, download)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, download: bool = True) -> Arrays:
    """Fashion-MNIST (Zalando): 60000 train / 10000 test images (N, 28, 28) uint8, int64 labels.

    Example::

        (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
        x_train.shape  # (60000, 28, 28)
    """
    return _load_idx_dataset("fashion-mnist", data_dir, download)


# ----------------------------------------------------------------------------- pickles
def _np_global(module: str, name: str):
    import importlib

    for mod in (module.replace("numpy.core", "numpy._core"), module):
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {module}.{name}")


def _latin1_encode(s: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes as _codecs.encode(text, 'latin1') in pickle protocols < 3.
    if encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return s.encode("latin1")


# Everything a (Python 2 or 3) pickle of dicts, lists, bytes and numpy arrays needs: numpy's
# array reconstruction, and the builtins protocols < 3 reference for bytes. Nothing else.
_SAFE_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _np_global(
        "numpy.core.multiarray", "_reconstruct"
    ),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _np_global(
        "numpy._core.multiarray", "_reconstruct"
    ),
    ("numpy.core.numeric", "_frombuffer"): lambda: _np_global("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): lambda: _np_global(
        "numpy._core.numeric", "_frombuffer"
    ),
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("builtins", "dict"): lambda: dict,
    ("builtins", "list"): lambda: list,
    ("builtins", "bytes"): lambda: bytes,
    ("builtins", "bytearray"): lambda: bytearray,
    ("__builtin__", "bytes"): lambda: bytes,
    ("__builtin__", "bytearray"): lambda: bytearray,
    ("_codecs", "encode"): lambda: _latin1_encode,
}


class _Refused(pickle.UnpicklingError):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only numpy-array and container globals.

    Any other global (``os.system``, ``builtins.eval``, ...) raises
    ``pickle.UnpicklingError`` naming it, before anything is called.

    Example::

        >>> import io, pickle, numpy as np
        >>> blob = pickle.dumps({b"data": np.zeros(3, np.uint8)}, protocol=4)
        >>> RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()[b"data"]
        array([0, 0, 0], dtype=uint8)
    """

    def find_class(self, module: str, name: str) -> Any:
        factory = _SAFE_GLOBALS.get((module, name))
        if factory is None:
            raise _Refused(
                f"refusing to load global '{module}.{name}': CIFAR pickles only need numpy "
                "arrays, and anything else could run code"
            )
        return factory()


def _load_pickle(data: bytes, name: str) -> Any:
    try:
        # Python 2 wrote the official pickles: its str must come back as bytes (keys b'data').
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as e:
        raise pickle.UnpicklingError(f"{name}: {e}") from None
    except Exception as e:  # truncated/corrupt pickles raise many different types
        raise ValueError(f"{name}: corrupt or truncated pickle ({type(e).__name__}: {e})") from e


# ----------------------------------------------------------------------------- CIFAR-10
_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST = ["test_batch"]
_CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte + CHW pixels


def _parse_cifar_bin(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) == 0 or len(data) % _CIFAR_RECORD:
        raise ValueError(
            f"{name}: {len(data)} bytes is not a whole number of CIFAR-10 records "
            f"({_CIFAR_RECORD} bytes each); truncated or corrupt file"
        )
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    y = rec[:, 0].astype(np.int64)
    x = rec[:, 1:].reshape(-1, 3, 32, 32)
    return x, y


def _parse_cifar_pickle(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = _load_pickle(data, name)
    if not isinstance(d, dict):
        raise ValueError(f"{name}: expected a dict batch, got {type(d).__name__}")
    x = d.get(b"data", d.get("data"))
    y = d.get(b"labels", d.get("labels"))
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{name}: expected b'data' as uint8 (N, 3072), got {got}")
    try:
        y = np.asarray(y, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: b'labels' is not a list of integers") from e
    if y.shape != (len(x),):
        raise ValueError(f"{name}: {len(x)} images but labels of shape {y.shape}")
    return x.reshape(-1, 3, 32, 32), y


def _check_cifar_counts(parts: list[tuple[np.ndarray, np.ndarray]], names: list[str]) -> None:
    """The six batches of a CIFAR-10 copy hold the same number of records (10,000 in the
    official files): a file cut short on a record boundary has fewer, and says so."""
    counts = [len(p[1]) for p in parts]
    want = max(set(counts), key=counts.count)  # the count most batches agree on
    for n, name in zip(counts, names, strict=True):
        if n != want:
            raise ValueError(f"{name}: {n} records where the other CIFAR-10 batches hold "
                             f"{want}; truncated or corrupt file")


def _cifar_split(parts: list[tuple[np.ndarray, np.ndarray]], names: list[str]):
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(
            f"{', '.join(names)}: labels must be 0..9, found {int(y.min())}..{int(y.max())}"
        )
    # CHW records -> Keras channels-last (N, 32, 32, 3), one contiguous copy.
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y


def _read_cifar_dir(d: Path, kind: str):
    parse = _parse_cifar_pickle if kind == "py" else _parse_cifar_bin
    suffix = "" if kind == "py" else ".bin"
    paths = [d / (n + suffix) for n in _CIFAR_TRAIN + _CIFAR_TEST]
    parts = [parse(p.read_bytes(), str(p)) for p in paths]
    names = [str(p) for p in paths]
    _check_cifar_counts(parts, names)
    return _cifar_split(parts[:5], names[:5]), _cifar_split(parts[5:], names[5:])


def _read_cifar_tar(path: Path, kind: str):
    parse = _parse_cifar_pickle if kind == "py" else _parse_cifar_bin
    suffix = "" if kind == "py" else ".bin"
    try:
        with tarfile.open(path, "r:gz") as tf:
            # Members are read into memory by name, never extracted: no path-traversal risk.
            members = {Path(m.name).name: m for m in tf.getmembers() if m.isfile()}
            parts = []
            for n in _CIFAR_TRAIN + _CIFAR_TEST:
                m = members.get(n + suffix)
                if m is None:
                    raise ValueError(f"{path}: archive has no member '{n + suffix}'")
                f = tf.extractfile(m)
                parts.append(parse(f.read(), f"{path}:{m.name}"))
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: corrupt or truncated archive ({e})") from e
    names = [f"{path}:{n}" for n in _CIFAR_TRAIN + _CIFAR_TEST]
    _check_cifar_counts(parts, names)
    return _cifar_split(parts[:5], names[:5]), _cifar_split(parts[5:], names[5:])


def _find_cifar(dirs: list[Path]):
    """(reader, source) for the first CIFAR-10 copy found, or None; md5-checks archives."""
    mismatch: ChecksumError | None = None
    for d in dirs:
        for sub, kind in (("cifar-10-batches-py", "py"), ("cifar-10-batches-bin", "bin")):
            suffix = "" if kind == "py" else ".bin"
            for folder in (d / sub, d):
                if all((folder / (n + suffix)).is_file() for n in _CIFAR_TRAIN + _CIFAR_TEST):
                    return lambda f=folder, k=kind: _read_cifar_dir(f, k)
        for name, kind in (("cifar-10-python.tar.gz", "py"), ("cifar-10-binary.tar.gz", "bin")):
            p = d / name
            if p.is_file():
                try:
                    _check_md5(p, CHECKSUMS["cifar-10"][name])
                    return lambda p=p, k=kind: _read_cifar_tar(p, k)
                except ChecksumError as e:
                    mismatch = mismatch or e
    if mismatch is not None:
        raise mismatch
    return None


def load_cifar10(data_dir: str | os.PathLike | None = None, download: bool = True) -> Arrays:
    """CIFAR-10: 50000 train / 10000 test images (N, 32, 32, 3) uint8 channels-last, int64 labels.

    Reads, in order of preference, the extracted python batches (``cifar-10-batches-py/``),
    the extracted binary batches (``cifar-10-batches-bin/``), ``cifar-10-python.tar.gz`` or
    ``cifar-10-binary.tar.gz``. Labels have shape ``(N,)`` (Keras returns ``(N, 1)``).
    Downloads ``cifar-10-python.tar.gz`` (about 163 MiB) when nothing is found.

    Example::

        (x_train, y_train), (x_test, y_test) = load_cifar10()
        x_train.shape  # (50000, 32, 32, 3)
    """
    root = data_root(data_dir)
    dirs = _search_dirs(root, "cifar-10")
    reader = _find_cifar(dirs)
    if reader is None:
        expected = [
            "cifar-10-python.tar.gz",
            "cifar-10-binary.tar.gz",
            "cifar-10-batches-py/{data_batch_1..5,test_batch}",
            "cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin",
        ]
        wanted = ["cifar-10-python.tar.gz (or any of: " + ", ".join(expected[1:]) + ")"]
        if not download:
            raise _not_found("cifar-10", wanted, dirs, "download=False, so nothing was fetched.")
        dest = _download_dir(root, "cifar-10")
        try:
            p = _download("cifar-10", "cifar-10-python.tar.gz", dest)
        except OSError as e:
            raise _not_found("cifar-10", wanted, dirs, f"Download into {dest} failed: {e}") from e
        return _read_cifar_tar(p, "py")
    return reader()


# ----------------------------------------------------------------------------- digits
def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Arrays:
    """scikit-learn's 8x8 digits (1797 images) as uint8 (N, 8, 8) 0..255, int64 labels.

    Offline (ships with scikit-learn). Values 0..16 are rescaled with ``round(v * 255 / 16)``.
    The split is a seeded permutation: 1437 train / 360 test with the defaults.

    Example::

        >>> (x_train, y_train), (x_test, y_test) = load_digits()
        >>> x_train.shape, x_test.shape, x_train.dtype
        ((1437, 8, 8), (360, 8, 8), dtype('uint8'))
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = math.ceil(len(x) * test_fraction)  # as sklearn's train_test_split: 360 of 1797
    test, train = perm[:n_test], perm[n_test:]
    return (x[train], y[train]), (x[test], y[test])


# ----------------------------------------------------------------------------- stats
def compute_stats(x: Any, chunk_size: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) on the 0..1 scale, for use as ``DeviceLoader(mean=, std=)``.

    uint8 input is divided by 255; float input is taken as is. The channel is the last axis of
    4-D ``(N, H, W, C)`` input; 3-D ``(N, H, W)`` (and 2-D ``(N, D)``) input is one channel.
    Accumulates in float64, ``chunk_size`` samples at a time, so memory stays bounded. The std is
    the population std (ddof=0), as in the published values of :data:`STATS`.

    Example::

        >>> import numpy as np
        >>> compute_stats(np.array([[[0, 255]]], dtype=np.uint8))
        ((0.5,), (0.5,))
    """
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: expected a numpy array or torch tensor, got {type(x).__name__}")
    if x.ndim not in (2, 3, 4) or len(x) == 0:
        raise ValueError(f"x: expected non-empty (N, D), (N, H, W) or (N, H, W, C), got {x.shape}")
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    channels = x.shape[-1] if x.ndim == 4 else 1
    scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
    n, mean, m2 = 0, np.zeros(channels), np.zeros(channels)
    for start in range(0, len(x), chunk_size):
        v = x[start : start + chunk_size].reshape(-1, channels).astype(np.float64) * scale
        k = len(v)
        cm = v.mean(axis=0)
        cm2 = ((v - cm) ** 2).sum(axis=0)
        # Chan et al. pairwise merge of (count, mean, sum of squared deviations).
        delta = cm - mean
        tot = n + k
        mean = mean + delta * (k / tot)
        m2 = m2 + cm2 + delta**2 * (n * k / tot)
        n = tot
    std = np.sqrt(m2 / n)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
