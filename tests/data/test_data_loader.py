"""DeviceLoader: coverage per epoch, seeding, sharding, storage dtype, normalisation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brisk.data import DeviceLoader
from brisk.data.augment import FlipLR, RandomCrop, compose


def indexed(n=103):
    """x[i] = i (as a 1x1 float image) and y[i] = i: every batch tells which samples it holds."""
    return np.arange(n, dtype=np.float32).reshape(n, 1, 1), np.arange(n)


def epoch_ids(loader):
    out = []
    for xb, yb in loader:
        assert torch.equal(xb.reshape(-1).long(), yb)  # x and y stay paired
        out.append(yb)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def test_every_sample_once_with_partial_last_batch():
    x, y = indexed(103)
    loader = DeviceLoader(x, y, batch_size=10)
    assert len(loader) == 11 and loader.num_samples == 103
    sizes = [len(yb) for _, yb in loader]
    assert sizes == [10] * 10 + [3]
    ids = epoch_ids(loader)
    assert sorted(ids.tolist()) == list(range(103))
    assert ids.tolist() != list(range(103))  # shuffled


def test_drop_last():
    x, y = indexed(103)
    loader = DeviceLoader(x, y, batch_size=10, drop_last=True)
    assert len(loader) == 10
    ids = epoch_ids(loader)
    assert len(ids) == 100 and len(set(ids.tolist())) == 100
    assert [len(b) for _, b in loader] == [10] * 10


def test_no_shuffle_keeps_order():
    x, y = indexed(25)
    assert epoch_ids(DeviceLoader(x, y, batch_size=4, shuffle=False)).tolist() == list(range(25))


def test_order_is_seeded_per_epoch():
    x, y = indexed(50)
    a = DeviceLoader(x, y, batch_size=7, seed=5)
    b = DeviceLoader(x, y, batch_size=7, seed=5)
    a.set_epoch(2)
    b.set_epoch(2)
    e2 = epoch_ids(a)
    assert torch.equal(e2, epoch_ids(b))
    assert torch.equal(e2, epoch_ids(a))  # set_epoch pins the epoch
    b.set_epoch(3)
    assert not torch.equal(e2, epoch_ids(b))
    c = DeviceLoader(x, y, batch_size=7, seed=6)
    c.set_epoch(2)
    assert not torch.equal(e2, epoch_ids(c))


def test_epoch_advances_without_set_epoch():
    x, y = indexed(50)
    auto = DeviceLoader(x, y, batch_size=8, seed=1)
    first, second = epoch_ids(auto), epoch_ids(auto)
    assert not torch.equal(first, second)
    pinned = DeviceLoader(x, y, batch_size=8, seed=1)
    pinned.set_epoch(0)
    assert torch.equal(first, epoch_ids(pinned))
    pinned.set_epoch(1)
    assert torch.equal(second, epoch_ids(pinned))


@pytest.mark.parametrize("n, world", [(100, 4), (103, 4), (10, 3), (5, 8)])
def test_shards_disjoint_equal_and_covering(n, world):
    x, y = indexed(n)
    full = DeviceLoader(x, y, batch_size=3, seed=9)
    shards = [full.shard(r, world) for r in range(world)]
    for s in shards:
        s.set_epoch(4)
    full.set_epoch(4)
    parts = [epoch_ids(s) for s in shards]
    per = -(-n // world)
    assert all(len(p) == per and s.num_samples == per for p, s in zip(parts, shards, strict=True))
    assert all(len(s) == -(-per // 3) for s in shards)
    order = epoch_ids(full)  # the shared permutation, wrapped to per * world entries
    wrapped = order.repeat(-(-per * world // n))[: per * world]
    for r, p in enumerate(parts):
        assert torch.equal(p, wrapped[r::world])
    allids = torch.cat(parts)
    assert set(allids.tolist()) == set(range(n))  # covering
    if n % world == 0:
        assert len(set(allids.tolist())) == n  # disjoint
    else:
        # Only the wrapped padding repeats samples, each from the permutation's start.
        counts = torch.bincount(allids, minlength=n)
        assert int(counts.sum()) == per * world and int((counts > 1).sum()) <= per * world - n


def test_shard_bad_args():
    loader = DeviceLoader(*indexed(10), batch_size=2)
    with pytest.raises(ValueError, match="rank"):
        loader.shard(3, 3)
    with pytest.raises(ValueError, match="world_size"):
        loader.shard(0, 0)
    with pytest.raises(TypeError, match="rank"):
        loader.shard(0.5, 2)
    with pytest.raises(ValueError, match="already"):
        loader.shard(0, 2).shard(0, 2)


def test_uint8_stays_uint8_and_converts_per_batch():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 5, 5), dtype=np.uint8)
    loader = DeviceLoader(x, rng.integers(0, 10, 20).astype(np.int32), batch_size=20, shuffle=False)
    assert loader._x.dtype == torch.uint8 and loader._x.shape == (20, 5, 5)
    assert loader._y.dtype == torch.int64
    xb, yb = next(iter(loader))
    assert xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert torch.equal(xb, torch.from_numpy(x).float())  # fed unscaled, as Keras feeds it
    loader = DeviceLoader(x, batch_size=20, shuffle=False, rescale=1 / 255)
    assert loader._x.dtype == torch.uint8
    xb = next(iter(loader))
    close_to(xb, torch.from_numpy(x).double() / 255)
    assert xb[x == 255].eq(1.0).all() and xb[x == 0].eq(0.0).all()


def close_to(batch, ref64):
    """float32 batch equals the float64 formula to float32 rounding (a few ulps)."""
    assert batch.dtype == torch.float32 and batch.shape == ref64.shape
    torch.testing.assert_close(batch.double(), ref64, rtol=0, atol=5e-7)


def test_normalisation_values_nhwc_nchw_and_single_channel():
    rng = np.random.default_rng(1)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.5, 0.3]
    m, s = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
    x = rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    xb = next(iter(DeviceLoader(x, batch_size=6, shuffle=False, mean=mean, std=std)))
    close_to(xb, (torch.from_numpy(x).double() / 255 - m) / s)

    xc = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # NCHW
    xb = next(
        iter(
            DeviceLoader(
                xc, batch_size=6, shuffle=False, mean=mean, std=std, channels_last_input=False
            )
        )
    )
    close_to(xb, (torch.from_numpy(xc).double() / 255 - m[:, None, None]) / s[:, None, None])
    xb2 = next(iter(DeviceLoader(xc, batch_size=6, shuffle=False, mean=mean, std=std)))
    assert torch.equal(xb, xb2)  # auto-detected channel axis

    g = np.array([[[0, 255, 51]]], dtype=np.uint8)
    xb = next(iter(DeviceLoader(g, batch_size=1, mean=[0.5], std=[0.5])))
    assert xb[0, 0, :2].tolist() == [-1.0, 1.0]  # the ends are exact
    close_to(xb, torch.tensor([[[-1.0, 1.0, -0.6]]], dtype=torch.float64))


def test_float_inputs_and_targets():
    x = np.linspace(-3, 3, 24).reshape(6, 4)  # float64
    y = np.linspace(0, 1, 6)
    xb, yb = next(iter(DeviceLoader(x, y, batch_size=6, shuffle=False)))
    assert xb.dtype == torch.float32 and yb.dtype == torch.float32
    assert torch.equal(xb, torch.from_numpy(x).float()) and torch.equal(
        yb, torch.from_numpy(y).float()
    )
    # Normalisation applies to float input too, without the /255.
    xb = next(iter(DeviceLoader(x, batch_size=6, shuffle=False, mean=1.0, std=2.0)))
    close_to(xb, (torch.from_numpy(x) - 1.0) / 2.0)
    # The stored data is never modified by the in-place normalisation.
    loader = DeviceLoader(torch.ones(4, 2), batch_size=4, mean=0.5, std=0.5)
    list(loader), list(loader)
    assert torch.equal(loader._x, torch.ones(4, 2))


def test_x_only_and_tensor_input():
    x = torch.arange(12, dtype=torch.uint8).reshape(12, 1)
    batches = list(DeviceLoader(x, batch_size=5, shuffle=False, rescale=1 / 255))
    assert [tuple(b.shape) for b in batches] == [(5, 1), (5, 1), (2, 1)]
    close_to(torch.cat(batches), x.double() / 255)


def test_transform_gets_a_seeded_generator():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (40, 1, 8, 8), dtype=np.uint8)
    seen = []

    def spy(xb, g):
        seen.append(g)
        return xb + 1

    xb = next(iter(DeviceLoader(x, batch_size=40, shuffle=False, transform=spy)))
    assert isinstance(seen[0], torch.Generator)
    close_to(xb, torch.from_numpy(x).double() + 1)

    aug = compose(RandomCrop(2), FlipLR())
    runs = []
    for _ in range(2):
        loader = DeviceLoader(x, batch_size=16, seed=3, transform=aug)
        loader.set_epoch(1)
        runs.append(torch.cat(list(loader)))
    assert torch.equal(runs[0], runs[1])  # augmentation is seeded
    # Same samples in the same order, other epoch: other augmentation draws.
    fixed = DeviceLoader(x, batch_size=40, shuffle=False, seed=3, transform=aug)
    fixed.set_epoch(1)
    e1 = next(iter(fixed))
    assert torch.equal(e1, next(iter(fixed)))
    fixed.set_epoch(2)
    assert not torch.equal(e1, next(iter(fixed)))


def test_bad_inputs():
    x, y = indexed(10)
    with pytest.raises(ValueError, match="x and y"):
        DeviceLoader(x, y[:9])
    with pytest.raises(ValueError, match="x"):
        DeviceLoader(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(x, y, batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):
        DeviceLoader(x, y, batch_size=2.5)
    with pytest.raises(TypeError, match="batch_size"):
        DeviceLoader(x, y, batch_size=True)
    with pytest.raises(ValueError, match="mean"):
        DeviceLoader(np.zeros((4, 8, 8, 3), np.uint8), mean=[0.5, 0.5], std=[0.5, 0.5])
    with pytest.raises(ValueError, match="mean"):
        DeviceLoader(np.zeros((4, 8, 8), np.uint8), mean=[0.5, 0.5, 0.5], std=[1, 1, 1])
    with pytest.raises(ValueError, match="mean and std"):
        DeviceLoader(x, mean=[0.5, 0.2], std=[0.5])
    with pytest.raises(ValueError, match="mean and std"):
        DeviceLoader(x, mean=0.5)
    with pytest.raises(ValueError, match="std"):
        DeviceLoader(x, mean=0.5, std=0.0)
    with pytest.raises(ValueError, match="mean"):
        DeviceLoader(
            np.zeros((4, 3, 8, 8), np.uint8), mean=[0.5] * 3, std=[1] * 3, channels_last_input=True
        )
    with pytest.raises(TypeError, match="transform"):
        DeviceLoader(x, transform="flip")
    with pytest.raises(TypeError, match="x"):
        DeviceLoader(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="epoch"):
        DeviceLoader(x).set_epoch(-1)


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_do_not_depend_on_chunking(drop_last):
    """Several batches are gathered and converted at once; the batches must not show it."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (103, 1, 6, 6), dtype=np.uint8)
    y = np.arange(103)
    runs = []
    for chunk in (1, 3, 1000):
        loader = DeviceLoader(
            x,
            y,
            batch_size=10,
            seed=2,
            drop_last=drop_last,
            mean=[0.3],
            std=[0.2],
            transform=compose(RandomCrop(1), FlipLR()),
        )
        loader._chunk_batches = chunk
        runs.append(list(loader))
    for other in runs[1:]:
        assert len(other) == len(runs[0]) == (10 if drop_last else 11)
        for (xa, ya), (xb, yb) in zip(runs[0], other, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_data_package_does_not_import_engine():
    """brisk.data sits below the engine: no import of brisk.engine (or brisk itself) inside."""
    import ast
    from pathlib import Path

    import brisk.data

    for path in Path(brisk.data.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith("brisk.engine"), f"{path.name} imports {name}"
                assert name != "brisk", f"{path.name} imports the top-level brisk package"


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("with_y", [True, False])
def test_staged_path_gives_the_resident_paths_batches(drop_last, with_y):
    """CUDA with CPU-resident data gathers on the host and copies batch by batch (the
    'staged' path). Its unpinned branch runs on the CPU too: forced here, it must yield
    exactly the batches of the resident path (order, pairing, normalisation, transform)."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (53, 1, 4, 4), dtype=np.uint8)
    y = np.arange(53) if with_y else None
    kwargs = dict(batch_size=8, seed=7, drop_last=drop_last, mean=[0.4], std=[0.25],
                  transform=compose(RandomCrop(1), FlipLR()))
    resident = DeviceLoader(x, y, **kwargs)
    staged = DeviceLoader(x, y, **kwargs)
    staged._staged, staged.pin_memory = True, False
    for epoch in (0, 1):
        resident.set_epoch(epoch)
        staged.set_epoch(epoch)
        a, b = list(resident), list(staged)
        assert len(a) == len(b) == (6 if drop_last else 7)
        for ba, bb in zip(a, b, strict=True):
            if with_y:
                assert torch.equal(ba[0], bb[0]) and torch.equal(ba[1], bb[1])
            else:
                assert torch.equal(ba, bb)
