"""DeviceLoader's staged path (CUDA device, data kept in CPU memory), checked on the CPU.

The staged path gathers each batch on the host and copies it to the device. Its unpinned
branch is plain torch and runs on the CPU when forced (``_staged = True``). Its pinned
branch needs CUDA (pinned staging buffers, a copy stream, events); here it runs against a
small fake of those CUDA calls that records what the loader asks for, so its logic is
checked without a GPU:

  - two staging buffers per tensor, allocated pinned, of shape (batch_size, *sample) and
    the stored dtype, used alternately (batch i in buffer i % 2);
  - before a buffer is reused, the event recorded after its last copy is synchronised;
  - every copy runs on the one copy stream, made for the loader's device, as
    ``.to(device, non_blocking=True)``, followed by an event recorded on that stream;
  - the compute stream (``current_stream(device)``) waits for batch i's event before batch
    i is yielded, and every yielded tensor is ``record_stream``-ed on it;
  - the batches are exactly those of the resident path (order, pairing, normalisation,
    transform with its seeded generator).

Every object is built inside the test body (mutmut switches a mutant on per test).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from brisk.data import DeviceLoader


def _collect(loader):
    """Every batch, cloned as it is yielded (a staged batch may alias a staging buffer)."""
    out = []
    for b in loader:
        out.append(tuple(t.clone() for t in b) if isinstance(b, tuple) else b.clone())
    return out


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for ba, bb in zip(a, b, strict=True):
        if isinstance(ba, tuple):
            assert isinstance(bb, tuple) and len(ba) == len(bb)
            for ta, tb in zip(ba, bb, strict=True):
                assert ta.dtype == tb.dtype and torch.equal(ta, tb)
        else:
            assert not isinstance(bb, tuple)
            assert ba.dtype == bb.dtype and torch.equal(ba, bb)


def _data(n=8):
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (n, 1, 2, 2), dtype=np.uint8)
    y = np.arange(100, 100 + n)
    w = (np.arange(n) + 1.0) / 4.0  # distinct weights: 0.25, 0.5, ...
    return x, y, w


# ---------------------------------------------------------------------- unpinned branch


@pytest.mark.parametrize("pin", [False, True])
def test_staged_weights_take_the_plain_copy_and_match_the_resident_batches(pin):
    """With sample weights the staged path copies plainly even when pinning is on (no
    staging buffers for weights): (x, y, w) batches identical to the resident path's."""
    x, y, w = _data(8)
    kwargs = dict(batch_size=3, seed=4, mean=[0.5], std=[0.25], sample_weight=w)
    resident = DeviceLoader(x, y, **kwargs)
    staged = DeviceLoader(x, y, **kwargs)
    staged._staged, staged.pin_memory = True, pin
    for epoch in (0, 1):
        resident.set_epoch(epoch)
        staged.set_epoch(epoch)
        a, b = _collect(resident), _collect(staged)
        assert [len(t) for t in b] == [3, 3, 3]
        assert [len(t[2]) for t in b] == [3, 3, 2]
        _assert_same_batches(a, b)
        # the weights follow their samples: w[i] = (y[i] - 99) / 4
        for _xb, yb, wb in b:
            assert wb.dtype == torch.float32
            assert wb.tolist() == ((yb - 99).double() / 4).tolist()


def test_staged_plain_copy_moves_every_tensor_to_the_device():
    """device='meta' with resident=False keeps the data in CPU memory; the staged copy must
    put x, y and w on the device (meta: shapes only, no GPU needed)."""
    x, y, w = _data(5)
    for weights in (w, None):
        loader = DeviceLoader(x, y, batch_size=2, device="meta", resident=False,
                              sample_weight=weights, shuffle=False)
        assert loader._x.device.type == "cpu"
        loader._staged, loader.pin_memory = True, False
        batches = list(loader)
        assert len(batches) == 3
        for b in batches:
            assert len(b) == (3 if weights is not None else 2)
            assert [t.device.type for t in b] == ["meta"] * len(b)
        assert [tuple(b[0].shape) for b in batches] == [(2, 1, 2, 2), (2, 1, 2, 2), (1, 1, 2, 2)]


# ---------------------------------------------------------------------- pinned branch, faked


class _FakeCuda:
    """Records the CUDA calls of the pinned staged path; tensors stay where they are."""

    def __init__(self, monkeypatch):
        self.empty_calls = []  # (shape, dtype, pin_memory) of every torch.empty
        self.buffers = []  # what those torch.empty calls returned
        self.streams = []  # every Stream made
        self.entered = []  # streams given to torch.cuda.stream(...)
        self.events = []  # every Event made, in order
        self.current_calls = []  # devices given to current_stream
        self.copies = []  # (.to args, kwargs, active stream, source storage) in a stream
        self.recorded = []  # (tensor, stream) of record_stream
        self.active = None
        self.compute = self.Stream(self, "compute")
        fake = self
        real_empty, real_to = torch.empty, torch.Tensor.to

        def empty(*args, **kwargs):
            fake.empty_calls.append((tuple(args[0]) if args and args[0] is not None else args,
                                     kwargs.get("dtype", "missing"),
                                     kwargs.get("pin_memory", "missing")))
            kwargs.pop("pin_memory", None)
            t = real_empty(*args, **kwargs)
            fake.buffers.append(t)
            return t

        def to(self_t, *args, **kwargs):
            if fake.active is not None:
                src = self_t.untyped_storage().data_ptr()
                fake.copies.append((args, dict(kwargs), fake.active, src))
            return real_to(self_t, *args, **kwargs)

        @contextlib.contextmanager
        def stream(s):
            fake.entered.append(s)
            prev, fake.active = fake.active, s
            try:
                yield
            finally:
                fake.active = prev

        def current_stream(device=None):
            fake.current_calls.append(device)
            return fake.compute

        def record_stream(self_t, s):
            fake.recorded.append((self_t, s))

        monkeypatch.setattr(torch, "empty", empty)
        monkeypatch.setattr(torch.Tensor, "to", to)
        monkeypatch.setattr(torch.Tensor, "record_stream", record_stream)
        monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: self.Stream(self, device))
        monkeypatch.setattr(torch.cuda, "Event", lambda: self.Event(self))
        monkeypatch.setattr(torch.cuda, "stream", stream)
        monkeypatch.setattr(torch.cuda, "current_stream", current_stream)

    class Stream:
        def __init__(self, fake, device):
            self.device = device
            self.waited = []
            if device != "compute":
                fake.streams.append(self)

        def wait_event(self, ev):
            self.waited.append(ev)

    class Event:
        def __init__(self, fake):
            self.recorded_on = []
            self.synced = 0
            fake.events.append(self)

        def record(self, s):
            self.recorded_on.append(s)

        def synchronize(self):
            self.synced += 1


def _pinned(loader):
    loader._staged, loader.pin_memory = True, True
    return loader


@pytest.mark.parametrize("targets", ["labels", "rows", None])
def test_pinned_staged_path_follows_the_copy_protocol(monkeypatch, targets):
    x, y, _ = _data(8)
    with_y = targets is not None
    if targets == "rows":  # 2-D float targets: staging buffers of shape (3, 2)
        y = np.stack([y / 8.0, -y / 16.0], axis=1)
    elif targets is None:
        y = None
    kwargs = dict(batch_size=3, seed=9, mean=[0.4], std=[0.2])
    expected = []
    for epoch in (0, 1):
        resident = DeviceLoader(x, y, **kwargs)
        resident.set_epoch(epoch)
        expected.append(_collect(resident))
    fake = _FakeCuda(monkeypatch)
    loader = _pinned(DeviceLoader(x, y, **kwargs))
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        before = (len(fake.empty_calls), len(fake.events), len(fake.recorded))
        got = _collect(loader)
        _assert_same_batches(expected[epoch], got)
        assert [len(b[0] if with_y else b) for b in got] == [3, 3, 2]

        # two pinned staging buffers per stored tensor, batch-sized, of the stored dtype
        bufs = fake.empty_calls[before[0]:]
        want = [((3, 1, 2, 2), torch.uint8, True)] * 2
        if targets == "labels":
            want += [((3,), torch.int64, True)] * 2
        elif targets == "rows":
            want += [((3, 2), torch.float32, True)] * 2
        assert bufs == want

        # one copy stream per epoch, made for the loader's device; every copy runs on it
        copy_stream = fake.streams[-1]
        assert copy_stream.device == loader.device
        assert fake.entered[-3:] == [copy_stream] * 3
        events = fake.events[before[1]:]
        assert len(events) == 3
        assert [e.recorded_on for e in events] == [[copy_stream]] * 3
        # buffer 0 is reused by batch 2: the event of batch 0 is waited for first, once
        assert [e.synced for e in events] == [1, 0, 0]
        # the compute stream of the loader's device waits for each batch's copy, in order
        assert fake.compute.waited[-3:] == events
        assert fake.current_calls[-3:] == [loader.device] * 3
        # every yielded tensor is recorded on the compute stream
        recorded = fake.recorded[before[2]:]
        assert len(recorded) == (6 if with_y else 3)
        assert all(s is fake.compute for _, s in recorded)
    # every copy inside the copy stream is .to(device, non_blocking=True)
    per_batch = 2 if with_y else 1
    assert len(fake.copies) == 2 * 3 * per_batch
    # ... and copies out of a staging buffer (gathered into it with index_select(out=))
    staging = {b.untyped_storage().data_ptr() for b in fake.buffers}
    for args, kw, active, src in fake.copies:
        assert args == (loader.device,)
        assert kw == {"non_blocking": True}
        assert active is not None and active is not fake.compute
        assert src in staging


def test_pinned_staged_path_puts_batches_on_the_device(monkeypatch):
    x, y, _ = _data(5)
    _FakeCuda(monkeypatch)
    loader = _pinned(DeviceLoader(x, y, batch_size=2, device="meta", resident=False,
                                  shuffle=False))
    batches = list(loader)
    assert [(tuple(xb.shape), xb.device.type, tuple(yb.shape), yb.device.type)
            for xb, yb in batches] == [
        ((2, 1, 2, 2), "meta", (2,), "meta"),
        ((2, 1, 2, 2), "meta", (2,), "meta"),
        ((1, 1, 2, 2), "meta", (1,), "meta"),
    ]


def test_pinned_staged_path_with_no_whole_batch_yields_nothing(monkeypatch):
    x, y, _ = _data(2)
    fake = _FakeCuda(monkeypatch)
    loader = _pinned(DeviceLoader(x, y, batch_size=3, drop_last=True))
    assert list(loader) == []
    assert fake.events == [] and fake.copies == []


def test_pinned_staged_path_gives_the_transform_its_seeded_generator(monkeypatch):
    """The transform gets the epoch's device generator (seeded from seed, epoch, rank), so
    random augmentation gives the resident path's batches exactly."""
    x, y, _ = _data(7)
    seen = []

    def jitter(xb, gen):
        seen.append(type(gen))
        return xb + torch.rand(xb.shape, generator=gen)

    kwargs = dict(batch_size=3, seed=2, transform=jitter)
    resident = DeviceLoader(x, y, **kwargs)
    resident.set_epoch(3)
    expected = _collect(resident)
    _FakeCuda(monkeypatch)
    loader = _pinned(DeviceLoader(x, y, **kwargs))
    loader.set_epoch(3)
    got = _collect(loader)
    _assert_same_batches(expected, got)
    assert seen == [torch.Generator] * 6
