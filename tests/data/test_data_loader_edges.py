"""DeviceLoader edge cases: seeding reference values, exact normalisation constants, input
conversion, argument checks and their messages, device placement, chunk sizes, repr.

Expected values come from independent computations: a reference SplitMix64, torch's own
``randperm`` seeded by hand, numpy float32 arithmetic, hand-written strings.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from brisk.data import DeviceLoader
from brisk.data.loader import _mix, _splitmix64

M64 = (1 << 64) - 1


def ref_splitmix64(z):
    """SplitMix64 (Steele, Lea, Flood 2014), the finaliser of java.util.SplittableRandom."""
    z = (z + 0x9E3779B97F4A7C15) % (1 << 64)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % (1 << 64)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % (1 << 64)
    return z ^ (z >> 31)


def ref_mix(*values):
    h = 0
    for v in values:
        h = ref_splitmix64(h ^ (v % (1 << 64)))
    return h >> 1


def ref_perm(n, seed, epoch):
    g = torch.Generator()
    g.manual_seed(ref_mix(seed, epoch))
    return torch.randperm(n, generator=g)


def ids(loader):
    return torch.cat([yb for _, yb in loader])


def indexed(n):
    return np.arange(n, dtype=np.float32).reshape(n, 1), np.arange(n)


# ---------------------------------------------------------------------- seeding


def test_splitmix64_matches_the_reference():
    # Published first outputs of SplitMix64 seeded with 0 (state advanced by the golden gamma).
    assert _splitmix64(0) == 0xE220A8397B1DCDAF
    assert _splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4
    for z in (0, 1, 2, 12345, 0xDEADBEEF, 1 << 40, (1 << 63) + 7, M64, 0x0123456789ABCDEF):
        assert _splitmix64(z) == ref_splitmix64(z), hex(z)
        assert 0 <= _splitmix64(z) <= M64


def test_mix_matches_the_reference():
    for values in [(0,), (0, 0), (0, 1), (1, 0), (5, 3), (7, 2, 1, 1), (2**40, 9), (-1, 3)]:
        assert _mix(*values) == ref_mix(*values), values
        assert 0 <= _mix(*values) < 1 << 63


def test_order_is_randperm_seeded_by_mix_of_seed_and_epoch():
    x, y = indexed(37)
    loader = DeviceLoader(x, y, batch_size=5, seed=11)
    for epoch in (0, 1, 2):  # auto-advancing epochs: 0, 1, 2
        assert torch.equal(ids(loader), ref_perm(37, 11, epoch)), epoch
    loader.set_epoch(7)
    assert torch.equal(ids(loader), ref_perm(37, 11, 7))
    # Defaults: seed 0, batch size 32.
    default = DeviceLoader(*indexed(70))
    assert default.seed == 0 and default.batch_size == 32
    assert [len(yb) for _, yb in default] == [32, 32, 6]
    assert torch.equal(ids(default), ref_perm(70, 0, 1))  # second iteration: epoch 1


def test_shard_orders_are_the_reference_permutation_strided():
    x, y = indexed(11)
    full = DeviceLoader(x, y, batch_size=4, seed=3)
    perm = ref_perm(11, 3, 0)
    wrapped = torch.cat([perm, perm])[:12]
    for r in (0, 1):
        s = full.shard(r, 2)
        assert s.num_samples == 6 and len(s) == 2
        assert torch.equal(ids(s), wrapped[r::2])  # first iteration of a fresh shard: epoch 0
    one = full.shard(0, 1)  # world_size 1 is allowed: the whole epoch
    assert one.world_size == 1 and torch.equal(ids(one), perm)
    with pytest.raises(ValueError) as e:
        full.shard(0, 2).shard(0, 2)
    assert str(e.value) == "shard: this loader is already a shard; shard the full loader"
    # More ranks than samples: the permutation repeats.
    tiny = DeviceLoader(*indexed(3), batch_size=1, seed=3, shuffle=False)
    assert [ids(tiny.shard(r, 5)).tolist() for r in range(5)] == [[0], [1], [2], [0], [1]]


def test_transform_generator_seed_is_mix_of_seed_epoch_rank_1():
    seeds = []

    def spy(xb, g):
        seeds.append(g.initial_seed())
        return xb

    x, y = indexed(8)
    loader = DeviceLoader(x, y, batch_size=4, seed=5, transform=spy)
    assert loader.rank == 0 and loader.world_size == 1
    loader.set_epoch(2)
    list(loader)
    assert seeds == [ref_mix(5, 2, 0, 1)] * 2
    seeds.clear()
    shard = loader.shard(1, 2)
    list(shard)
    assert seeds == [ref_mix(5, 2, 1, 1)]


def test_transform_sees_none_generator_never_without_transform():
    batches = list(DeviceLoader(*indexed(5), batch_size=2, shuffle=False))
    assert [yb.tolist() for _, yb in batches] == [[0, 1], [2, 3], [4]]


def test_set_epoch_rejects_non_ints():
    loader = DeviceLoader(*indexed(4))
    for bad, shown in ((True, "True"), (1.5, "1.5"), (-2, "-2"), ("1", "'1'")):
        with pytest.raises(ValueError) as e:
            loader.set_epoch(bad)
        assert str(e.value) == f"epoch: expected a non-negative int, got {shown}"
    loader.set_epoch(np.int64(3))
    assert torch.equal(ids(loader), ref_perm(4, 0, 3))


# ---------------------------------------------------------------------- normalisation


def folded(x, mean, std, divisor, view):
    """The documented computation: x * float32(1/(divisor*std)) - float32(mean/std), the
    constants folded in float64 and each op rounded once in float32 (numpy)."""
    m = np.asarray(mean, dtype=np.float64).reshape(view)
    s = np.asarray(std, dtype=np.float64).reshape(view)
    scale = (1.0 / (divisor * s)).astype(np.float32)
    shift = (m / s).astype(np.float32)
    return x.astype(np.float32) * scale - shift


# Constants whose float32 rounding differs when folded in float32 instead of float64.
MEAN3, STD3 = [0.1, 0.13, 0.456], [0.3, 0.31, 0.224]


def test_normalisation_constants_are_folded_in_float64_nhwc():
    rng = np.random.default_rng(10)
    x = rng.integers(0, 256, (5, 3, 4, 3), dtype=np.uint8)
    for cl in (None, True):
        xb = next(iter(DeviceLoader(x, batch_size=5, shuffle=False, mean=MEAN3, std=STD3,
                                    channels_last_input=cl)))
        assert xb.dtype == torch.float32
        np.testing.assert_array_equal(xb.numpy(), folded(x, MEAN3, STD3, 255.0, (3,)))
        three_step = (x / 255.0 - np.array(MEAN3)) / np.array(STD3)
        np.testing.assert_allclose(xb.numpy(), three_step, rtol=0, atol=2e-6)


def test_normalisation_constants_are_folded_in_float64_nchw():
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (4, 3, 3, 5), dtype=np.uint8)
    for cl in (None, False):
        xb = next(iter(DeviceLoader(x, batch_size=4, shuffle=False, mean=MEAN3, std=STD3,
                                    channels_last_input=cl)))
        np.testing.assert_array_equal(xb.numpy(), folded(x, MEAN3, STD3, 255.0, (3, 1, 1)))


def test_scalar_normalisation_of_uint8_and_float_data():
    x = np.arange(256, dtype=np.uint8).reshape(64, 2, 2)
    xb = torch.cat(list(DeviceLoader(x, batch_size=64, shuffle=False, mean=0.456, std=0.224)))
    np.testing.assert_array_equal(xb.numpy(), folded(x, [0.456], [0.224], 255.0, (1,)))
    xf = np.linspace(-1, 1, 30).reshape(10, 3)
    xb = next(iter(DeviceLoader(xf, batch_size=10, shuffle=False, mean=0.1, std=0.3)))
    np.testing.assert_array_equal(xb.numpy(), folded(xf, [0.1], [0.3], 1.0, (1,)))


def test_mean_std_message_and_channel_axis_messages():
    x = np.zeros((2, 3, 4, 4), np.uint8)
    with pytest.raises(ValueError) as e:
        DeviceLoader(x, mean=None, std=[0.5])
    assert str(e.value) == "mean and std: give both or neither"
    cases = [
        (None, np.zeros((2, 5, 4, 2), np.uint8), "last or second"),
        (True, x, "last"),
        (False, np.zeros((2, 4, 4, 3), np.uint8), "second"),
    ]
    for cl, data, where in cases:
        with pytest.raises(ValueError) as e:
            DeviceLoader(data, mean=MEAN3, std=STD3, channels_last_input=cl)
        assert str(e.value) == (
            f"mean: 3 values, but x of shape {data.shape} does not have 3 channels on its "
            f"{where} axis (channels_last_input={cl})"
        )


def test_channels_last_true_uses_the_last_axis_even_when_axis_1_matches():
    rng = np.random.default_rng(12)
    x = rng.integers(0, 256, (2, 3, 3, 3), dtype=np.uint8)  # every axis could be the channel
    last = next(iter(DeviceLoader(x, batch_size=2, shuffle=False, mean=MEAN3, std=STD3,
                                  channels_last_input=True)))
    np.testing.assert_array_equal(last.numpy(), folded(x, MEAN3, STD3, 255.0, (3,)))
    first = next(iter(DeviceLoader(x, batch_size=2, shuffle=False, mean=MEAN3, std=STD3,
                                   channels_last_input=False)))
    np.testing.assert_array_equal(first.numpy(), folded(x, MEAN3, STD3, 255.0, (3, 1, 1)))


# ---------------------------------------------------------------------- input conversion


def test_lists_and_bools_are_accepted():
    xb, yb = next(iter(DeviceLoader([[1.5, 2.0], [3.0, 4.0]], [0, 1], batch_size=2,
                                    shuffle=False)))
    assert xb.tolist() == [[1.5, 2.0], [3.0, 4.0]] and yb.tolist() == [0, 1]
    xb = next(iter(DeviceLoader(np.array([True, False, True]), batch_size=3, shuffle=False)))
    assert xb.dtype == torch.float32 and xb.tolist() == [1.0, 0.0, 1.0]
    xb = next(iter(DeviceLoader([3, 1, 2], batch_size=3, shuffle=False)))  # 1-D x
    assert xb.tolist() == [3.0, 1.0, 2.0]


def test_bad_input_messages():
    with pytest.raises(TypeError) as e:
        DeviceLoader(np.array(["a", "b"]))
    assert str(e.value) == "x: expected a numeric numpy array or torch tensor, got dtype <U1"
    with pytest.raises(TypeError) as e:
        DeviceLoader(np.array([None, 1], dtype=object))
    assert str(e.value) == "x: expected a numeric numpy array or torch tensor, got dtype object"
    with pytest.raises(TypeError) as e:
        DeviceLoader(np.zeros(3), np.array([1j, 2j, 3j]))
    assert str(e.value) == "y: expected a numeric numpy array or torch tensor, got dtype complex128"
    ragged = [[1, 2], [3]]
    try:
        np.asarray(ragged)
    except Exception as err:  # noqa: BLE001 - numpy's own message is part of ours
        cause = err
    with pytest.raises(TypeError) as e:
        DeviceLoader(ragged)
    assert str(e.value) == f"x: expected a numpy array or torch tensor ({cause})"
    with pytest.raises(ValueError) as e:
        DeviceLoader(np.float32(2.0))
    assert str(e.value) == "x: expected a non-empty array with samples on axis 0, got shape ()"
    with pytest.raises(ValueError) as e:
        DeviceLoader(np.zeros((3, 2)), np.int64(4))
    assert str(e.value) == "x and y: different numbers of samples (3 vs a scalar)"
    with pytest.raises(ValueError) as e:
        DeviceLoader(np.zeros((3, 2)), np.zeros(2))
    assert str(e.value) == "x and y: different numbers of samples (3 vs 2)"


def test_argument_type_messages():
    x = np.zeros((4, 2))
    for bad, shown in ((2.5, "2.5"), (True, "True"), ("3", "'3'")):
        with pytest.raises(TypeError) as e:
            DeviceLoader(x, seed=bad)
        assert str(e.value) == f"seed: expected an int, got {shown}"
    assert DeviceLoader(x, seed=np.int32(4)).seed == 4
    with pytest.raises(TypeError) as e:
        DeviceLoader(x, channels_last_input="yes")
    assert str(e.value) == "channels_last_input: expected True, False or None, got 'yes'"
    loader = DeviceLoader(x)
    with pytest.raises(TypeError) as e:
        loader.shard(0.5, 2)
    assert str(e.value) == "rank: expected an int, got 0.5"
    with pytest.raises(TypeError) as e:
        loader.shard(0, 2.0)
    assert str(e.value) == "world_size: expected an int, got 2.0"
    with pytest.raises(ValueError) as e:
        loader.shard(2, 2)
    assert str(e.value) == "rank, world_size: expected 0 <= rank < world_size, got 2, 2"


def test_non_contiguous_and_big_endian_arrays_are_copied_in_native_order():
    base = np.arange(24, dtype=np.float32).reshape(6, 4)
    cases = [
        base[::-1],  # negative strides: torch.from_numpy refuses them
        base[:, ::2],  # positive strides, not contiguous
        base.astype(">f4"),  # big-endian, contiguous
        base.astype(">f4")[::-1],
        base.astype(">i4"),
    ]
    for a in cases:
        xb = next(iter(DeviceLoader(a, np.arange(6), batch_size=6, shuffle=False)))[0]
        assert xb.dtype == torch.float32
        assert xb.tolist() == np.asarray(a, dtype=np.float64).tolist()


def test_read_only_arrays_are_copied_without_warning():
    for a in (np.arange(6, dtype=np.float32), np.arange(6, dtype=np.uint8),
              np.arange(6, dtype=">f4")):
        a.flags.writeable = False
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch warns about non-writable numpy arrays
            loader = DeviceLoader(a, a, batch_size=6, shuffle=False)
        xb, yb = next(iter(loader))
        assert yb.tolist() == np.asarray(a, dtype=np.float64).tolist()
        np.testing.assert_allclose(xb.numpy(), a, rtol=1e-7)  # uint8 too: fed unscaled
        assert loader._x.is_contiguous()


# ---------------------------------------------------------------------- device placement


def test_cpu_data_is_resident_and_not_pinned():
    x = np.arange(12.0).reshape(6, 2)  # float64 input: stored as float32
    for resident in (None, True, False):
        loader = DeviceLoader(x, np.arange(6), resident=resident)
        assert loader.resident is True  # already on the device
        assert loader.pin_memory is False
        assert loader.device == torch.device("cpu")
        assert loader._x.dtype == torch.float32 and loader._y.dtype == torch.int64


def test_meta_device_storage_follows_resident():
    """A non-CUDA device (meta: shapes only) exercises the placement logic without a GPU."""
    x, y = np.arange(12.0, dtype=np.float32).reshape(6, 2), np.arange(6)
    loader = DeviceLoader(x, y, batch_size=4, device="meta", shuffle=False, mean=0.5, std=0.5)
    assert loader.device == torch.device("meta")
    assert loader.resident is True and loader.pin_memory is False
    assert loader._x.device.type == "meta" and loader._y.device.type == "meta"
    assert loader._scale.device.type == "meta" and loader._shift.device.type == "meta"
    assert loader._order(0).device.type == "meta"
    batches = list(loader)
    assert [(tuple(xb.shape), xb.device.type, yb.device.type) for xb, yb in batches] == [
        ((4, 2), "meta", "meta"),
        ((2, 2), "meta", "meta"),
    ]
    # resident=False off CUDA: the data stays in CPU memory, not staged, not pinned.
    off = DeviceLoader(x, y, batch_size=4, device="meta", resident=False)
    assert off.resident is False and off.pin_memory is False
    assert off._x.device.type == "cpu" and off._y.device.type == "cpu"
    assert off.device == torch.device("meta")


# ---------------------------------------------------------------------- chunk sizes


def test_batches_per_chunk_follows_the_documented_element_budget(monkeypatch):
    # The thread count is faked, not set: a real multi-threaded OpenMP pool in a process
    # that later forks (mutmut's children) hangs the children in libgomp.
    for n_threads, budget in ((1, 1 << 18), (2, 1 << 15), (3, 1 << 15)):
        monkeypatch.setattr(torch, "get_num_threads", lambda n=n_threads: n)
        assert DeviceLoader(np.zeros(10), batch_size=1)._batches_per_chunk() == budget
        assert DeviceLoader(np.zeros((10, 4, 8)), batch_size=2)._batches_per_chunk() == (
            budget // 64
        )
        # A batch over the budget: one batch per chunk.
        assert DeviceLoader(np.zeros((2, 600, 600)), batch_size=1)._batches_per_chunk() == 1
    monkeypatch.undo()
    loader = DeviceLoader(np.zeros(10), batch_size=1)
    loader._chunk_batches = 3
    assert loader._batches_per_chunk() == 3


# ---------------------------------------------------------------------- repr and epochs


def test_repr():
    x = np.zeros((5, 2, 3), np.uint8)
    assert repr(DeviceLoader(x)) == (
        "DeviceLoader(x=torch.uint8(5, 2, 3), y=None, batch_size=32, shuffle=True, "
        "drop_last=False, device=cpu, resident=True)"
    )
    loader = DeviceLoader(np.zeros((5, 2)), np.ones((5, 1)), batch_size=2, shuffle=False,
                          drop_last=True)
    assert repr(loader) == (
        "DeviceLoader(x=torch.float32(5, 2), y=torch.float32(5, 1), batch_size=2, "
        "shuffle=False, drop_last=True, device=cpu, resident=True)"
    )
    assert repr(loader.shard(1, 2)) == (
        "DeviceLoader(x=torch.float32(5, 2), y=torch.float32(5, 1), batch_size=2, "
        "shuffle=False, drop_last=True, device=cpu, resident=True, rank=1, world_size=2)"
    )


def test_shard_starts_its_own_epoch_count_at_zero():
    full = DeviceLoader(*indexed(9), batch_size=9, seed=4)
    list(full)
    list(full)  # the full loader is at epoch 2 now
    shard = full.shard(0, 3)
    for epoch in (0, 1, 2):
        assert torch.equal(ids(shard), ref_perm(9, 4, epoch)[0::3]), epoch


# ---------------------------------------------------------------------- argument checks, exact


RESCALE_MSG = "rescale: expected a finite non-zero number or None, got {}"
BOTH_MSG = ("rescale: give rescale or mean/std, not both (mean and std are on the 0..1 scale: "
            "uint8 data is divided by 255 for them)")
TOKENS_MSG = ("integer_inputs: token ids are not scaled or transformed; give no mean, std, "
              "rescale or transform")


@pytest.mark.parametrize("bad, shown", [(float("inf"), "inf"), (float("-inf"), "-inf"),
                                        (float("nan"), "nan"), (0, "0"), (0.0, "0.0"),
                                        (True, "True"), (False, "False"), ("a", "'a'"),
                                        ("0.5", "'0.5'")])
def test_rescale_rejects_each_bad_value_with_the_full_message(bad, shown):
    with pytest.raises(ValueError) as e:
        DeviceLoader(np.zeros((3, 2), np.float32), rescale=bad)
    assert str(e.value) == RESCALE_MSG.format(shown)


@pytest.mark.parametrize("good", [1, 1.0, 2, -0.5, 0.25])
def test_rescale_accepts_finite_non_zero_numbers_and_scales_batches(good):
    loader = DeviceLoader(np.array([[2.0], [4.0]], np.float32), batch_size=2, shuffle=False,
                          rescale=good)
    assert loader._scale == float(good) and loader._shift is None
    assert next(iter(loader)).tolist() == [[2.0 * good], [4.0 * good]]


@pytest.mark.parametrize("which", ["mean", "std", "both"])
def test_rescale_with_mean_or_std_is_refused_with_the_full_message(which):
    kw = {"mean": 0.5, "std": 0.25}
    if which != "both":
        kw = {which: kw[which]}
    with pytest.raises(ValueError) as e:
        DeviceLoader(np.zeros((3, 2), np.uint8), rescale=0.5, **kw)
    assert str(e.value) == BOTH_MSG


def test_integer_inputs_attribute_is_exactly_a_bool():
    ints = np.array([[1, 2], [3, 4]], np.int32)
    assert DeviceLoader(ints, integer_inputs=True).integer_inputs is True
    assert DeviceLoader(np.array([[1, 2]], np.uint8), integer_inputs=True).integer_inputs is True
    assert DeviceLoader(ints).integer_inputs is False
    assert DeviceLoader(ints, integer_inputs=False).integer_inputs is False
    floats = np.array([[1.5, 2.0]], np.float32)
    assert DeviceLoader(floats, integer_inputs=True).integer_inputs is False
    assert DeviceLoader(floats).integer_inputs is False
    # Token ids stay exact int64 batches; the float path converts to float32.
    loader = DeviceLoader(ints, batch_size=2, shuffle=False, integer_inputs=True)
    assert loader._x.dtype == torch.int64
    xb = next(iter(loader))
    assert xb.dtype == torch.int64 and xb.tolist() == [[1, 2], [3, 4]]
    assert DeviceLoader(floats, integer_inputs=True)._x.dtype == torch.float32


@pytest.mark.parametrize("which", ["mean", "std", "rescale", "transform", "all"])
def test_integer_inputs_refuse_each_of_mean_std_rescale_transform_alone(which):
    values = {"mean": 0.5, "std": 0.25, "rescale": 0.5, "transform": lambda xb, g: xb}
    kw = dict(values) if which == "all" else {which: values[which]}
    if which == "all":
        del kw["rescale"]  # rescale with mean/std is refused earlier, by its own check
    with pytest.raises(ValueError) as e:
        DeviceLoader(np.array([[1, 2], [3, 4]], np.int64), integer_inputs=True, **kw)
    assert str(e.value) == TOKENS_MSG


@pytest.mark.parametrize("which", ["mean_std", "rescale", "transform"])
def test_float_inputs_with_integer_inputs_keep_mean_std_rescale_transform(which):
    x = np.array([[1.0], [3.0]], np.float32)
    kw = {"mean_std": {"mean": 1.0, "std": 2.0}, "rescale": {"rescale": 0.5},
          "transform": {"transform": lambda xb, g: xb + 1}}[which]
    loader = DeviceLoader(x, batch_size=2, shuffle=False, integer_inputs=True, **kw)
    assert loader.integer_inputs is False
    expected = {"mean_std": [[0.0], [1.0]], "rescale": [[0.5], [1.5]],
                "transform": [[2.0], [4.0]]}[which]
    assert next(iter(loader)).tolist() == expected


def test_sample_weight_messages():
    x, y = np.zeros((3, 2), np.float32), np.arange(3)
    with pytest.raises(ValueError) as e:
        DeviceLoader(x, sample_weight=np.ones(3))
    assert str(e.value) == "sample_weight: needs y (weights belong to labelled samples)"
    with pytest.raises(TypeError) as e:
        DeviceLoader(x, y, sample_weight=np.array(["a", "b", "c"]))
    assert str(e.value) == (
        "sample_weight: expected a numeric numpy array or torch tensor, got dtype <U1"
    )
    for shape, shown in (((4,), "(4,)"), ((2,), "(2,)"), ((3, 2), "(3, 2)"),
                         ((1, 3), "(1, 3)"), ((3, 1, 1), "(3, 1, 1)"), ((4, 1), "(4,)")):
        with pytest.raises(ValueError) as e:
            DeviceLoader(x, y, sample_weight=np.ones(shape))
        assert str(e.value) == f"sample_weight: expected shape (3,), got {shown}", shape
    for bad in ([1.0, float("nan"), 1.0], [1.0, float("inf"), 1.0], [1.0, -0.5, 2.0],
                [float("-inf"), 1.0, 1.0]):
        with pytest.raises(ValueError) as e:
            DeviceLoader(x, y, sample_weight=np.array(bad))
        assert str(e.value) == "sample_weight: expected finite weights >= 0", bad


def test_sample_weight_column_and_zero_weights_are_accepted():
    x, y = np.zeros((3, 2), np.float32), np.arange(3)
    loader = DeviceLoader(x, y, batch_size=3, shuffle=False,
                          sample_weight=np.array([[0.0], [1.5], [2.0]]))
    assert loader._w.shape == (3,) and loader._w.dtype == torch.float32
    xb, yb, wb = next(iter(loader))
    assert yb.tolist() == [0, 1, 2] and wb.tolist() == [0.0, 1.5, 2.0]
    loader = DeviceLoader(x, y, batch_size=2, shuffle=False, sample_weight=[0, 0, 0])
    assert [wb.tolist() for _, _, wb in loader] == [[0.0, 0.0], [0.0]]


def test_sample_weights_are_stored_on_the_device():
    x, y = np.zeros((3, 2), np.float32), np.arange(3)
    loader = DeviceLoader(x, y, device="meta", sample_weight=np.ones(3))
    assert loader._w.device.type == "meta" and loader._w.shape == (3,)
    off = DeviceLoader(x, y, device="meta", resident=False, sample_weight=np.ones(3))
    assert off._w.device.type == "cpu"


def test_mean_is_converted_in_float64_before_folding():
    # 1/3 rounded to float32 first would give a different float32 shift (3.3333335).
    loader = DeviceLoader(np.zeros(4, np.float32), mean=[1 / 3], std=[0.1])
    assert loader._shift.dtype == torch.float32
    assert loader._shift.tolist() == [float(np.float32(np.float64(1 / 3) / np.float64(0.1)))]
    assert loader._scale.tolist() == [float(np.float32(1.0 / np.float64(0.1)))]
    assert loader._shift.tolist() != [float(np.float32(np.float64(np.float32(1 / 3)) / 0.1))]


# ---------------------------------------------------------------------- CUDA placement logic
# Faked on a CPU-only build: torch.cuda's queries are replaced, and the data stays in CPU
# memory (resident=False) so nothing is copied to a GPU.


def fake_cuda(monkeypatch, current=1, free=None, calls=None):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)

    def mem_get_info(device=None):
        if calls is not None:
            calls.append(device)
        return free, 10 * free

    if free is not None:
        monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)


def test_cuda_without_index_takes_the_current_device(monkeypatch):
    fake_cuda(monkeypatch, current=1)
    x = np.zeros((4, 2), np.float32)
    loader = DeviceLoader(x, device="cuda", resident=False)
    assert loader.device == torch.device("cuda", 1)
    assert loader.device.index == 1 and loader.device.type == "cuda"
    loader = DeviceLoader(x, device="cuda:2", resident=False)
    assert loader.device == torch.device("cuda", 2)
    loader = DeviceLoader(x, device=torch.device("cuda"), resident=False)
    assert loader.device == torch.device("cuda", 1)


def test_cuda_with_cpu_data_is_staged_and_pinned_by_default(monkeypatch):
    fake_cuda(monkeypatch, current=0)
    x = np.zeros((4, 2), np.float32)
    for pin, expected in ((None, True), (True, True), (False, False), (0, False), (1, True)):
        loader = DeviceLoader(x, device="cuda", resident=False, pin_memory=pin)
        assert loader.resident is False and loader._staged is True
        assert loader.pin_memory is expected, pin
        assert loader._x.device.type == "cpu"


def test_cuda_chunks_use_the_4m_element_budget(monkeypatch):
    fake_cuda(monkeypatch, current=0)
    assert DeviceLoader(np.zeros((4, 1)), batch_size=1, device="cuda",
                        resident=False)._batches_per_chunk() == 1 << 22
    assert DeviceLoader(np.zeros((4, 8, 4)), batch_size=2, device="cuda",
                        resident=False)._batches_per_chunk() == (1 << 22) // 64


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only build: the GPU copy "
                    "must fail to show the resident decision")
def test_resident_none_on_cuda_compares_the_dataset_bytes_with_half_the_free_memory(monkeypatch):
    # x: 4 samples of 3x5 float32 = 240 bytes; y: 4 x 2 labels stored as 8-byte int64 = 64.
    x, y = np.zeros((4, 3, 5), np.float32), np.zeros((4, 2), np.int64)
    nbytes = 4 * 15 * 4 + 4 * 2 * 8
    for free in (2 * nbytes, 2 * nbytes - 2, 100):
        calls = []
        fake_cuda(monkeypatch, current=0, free=free, calls=calls)
        loader = DeviceLoader(x, y, device="cuda")  # too big: stays in CPU memory, staged
        assert loader.resident is False and loader._staged is True, free
        assert loader._x.device.type == "cpu"
        assert calls == [torch.device("cuda", 0)]
    for free in (2 * nbytes + 2, 2 * nbytes + 100, 10**9):
        fake_cuda(monkeypatch, current=0, free=free)
        # Fits: resident on the GPU, so the copy is attempted (and fails on this build).
        with pytest.raises((AssertionError, RuntimeError)):
            DeviceLoader(x, y, device="cuda")
    # Without y, only x counts: 240 bytes.
    fake_cuda(monkeypatch, current=0, free=480)
    assert DeviceLoader(x, device="cuda").resident is False
    fake_cuda(monkeypatch, current=0, free=482)
    with pytest.raises((AssertionError, RuntimeError)):
        DeviceLoader(x, device="cuda")
