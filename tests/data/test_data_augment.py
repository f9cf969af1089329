"""Batched augmentation: shapes, identities, determinism, crop/cutout geometry, purity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brisk.data import augment as A


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def x():
    return torch.rand(64, 3, 12, 10, generator=gen(123)) + 0.5  # no zeros, all distinct


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, g: A.random_crop(x, 3, g),
        lambda x, g: A.flip_lr(x, 0.5, g),
        lambda x, g: A.cutout(x, 5, g),
        lambda x, g: A.compose(A.RandomCrop(2), A.FlipLR(), A.Cutout(4))(x, g),
    ],
)
def test_shape_dtype_purity_and_determinism(x, fn):
    before = x.clone()
    a = fn(x, gen(0))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(x, before)  # input untouched
    assert torch.equal(a, fn(x, gen(0)))  # same seed, same result
    assert not torch.equal(a, fn(x, gen(1)))  # another seed, another result
    u8 = (x * 100).to(torch.uint8)
    b = fn(u8, gen(0))
    assert b.dtype == torch.uint8 and b.shape == u8.shape


def test_flip_identities(x):
    assert torch.equal(A.flip_lr(x, 1.0), x.flip(3))
    assert torch.equal(A.flip_lr(A.flip_lr(x, 1.0), 1.0), x)
    assert torch.equal(A.flip_lr(x, 0.0), x)
    once = A.flip_lr(x, 0.5, gen(7))
    assert torch.equal(A.flip_lr(once, 0.5, gen(7)), x)  # same mask twice = identity
    flipped = (once == x.flip(3)).flatten(1).all(1)
    kept = (once == x).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54  # about half of 64


def test_zero_shift_is_identity(x):
    assert torch.equal(A.random_crop(x, 0, gen(0)), x)
    assert A.random_crop(x, 0).data_ptr() != x.data_ptr()  # a new tensor, not an alias
    assert torch.equal(A.translate(x, 0, 0), x)


def test_translate_matches_slicing(x):
    out = A.translate(x, dx=2, dy=-3, fill=-1.0)
    ref = torch.full_like(x, -1.0)
    ref[:, :, : 12 - 3, 2:] = x[:, :, 3:, : 10 - 2]
    assert torch.equal(out, ref)
    dx = torch.tensor([1, -1] * 32)
    out = A.translate(x, dx=dx, dy=0)
    assert torch.equal(out[0, :, :, 1:], x[0, :, :, :-1]) and bool((out[0, :, :, 0] == 0).all())
    assert torch.equal(out[1, :, :, :-1], x[1, :, :, 1:]) and bool((out[1, :, :, -1] == 0).all())
    assert bool((A.translate(x, 20, 0) == 0).all())  # shifted out entirely
    with pytest.raises(ValueError, match="dx"):
        A.translate(x, dx=torch.zeros(3, dtype=torch.long), dy=0)
    with pytest.raises(TypeError, match="dy"):
        A.translate(x, dx=0, dy=True)


def test_translate_with_float_shifts_or_fill_modes_resamples(x):
    # whole-pixel shifts through the grid_sample path agree with the exact gather
    exact = A.translate(x, dx=2, dy=-3, fill=-1.0)
    torch.testing.assert_close(A.translate(x, dx=2.0, dy=-3.0, fill=-1.0), exact)
    torch.testing.assert_close(A.translate(x, 3, -2, fill_mode="wrap"),
                               x.roll((-2, 3), dims=(2, 3)))
    # Keras's 'reflect' repeats the edge pixel (d c b a | a b c d); 'nearest' clamps
    out = A.translate(x, 2, 0, fill_mode="reflect")
    torch.testing.assert_close(out[..., 2:], x[..., :-2])
    torch.testing.assert_close(out[..., :2], x[..., [1, 0]])
    out = A.translate(x, 0, -2, fill_mode="nearest")
    torch.testing.assert_close(out[:, :, -3:], x[:, :, -1:].expand(-1, -1, 3, -1))
    half = A.translate(x, 0.5, 0, fill_mode="nearest")  # bilinear: the mean of neighbours
    torch.testing.assert_close(half[..., 1:], (x[..., 1:] + x[..., :-1]) / 2)
    per_sample = A.translate(x, torch.tensor([1.0, -1.0] * 32), 0)
    torch.testing.assert_close(per_sample, A.translate(x, torch.tensor([1, -1] * 32), 0))


def test_rotate_and_zoom_geometry(x):
    sq = x[:, :, :9, :9]  # odd square: the centre is a pixel, a quarter turn is exact
    torch.testing.assert_close(A.rotate(sq, 90.0), sq.rot90(1, dims=(2, 3)))  # counter-clockwise
    torch.testing.assert_close(A.rotate(sq, -90.0), sq.rot90(-1, dims=(2, 3)))
    torch.testing.assert_close(A.rotate(x, 0.0), x)
    torch.testing.assert_close(A.zoom(x, 1.0), x)
    # zoom 2 about the centre of a 9x9 image reads every other pixel of the middle
    torch.testing.assert_close(A.zoom(sq, 0.5)[..., ::2, ::2], sq[..., 2:7, 2:7])
    out = A.zoom(sq, 2.0, fill=-1.0, interpolation="nearest")
    torch.testing.assert_close(out[..., 2:7, 2:7], sq[..., ::2, ::2])
    assert bool((out[..., 0, :] == -1).all())  # zoomed out: the border is filled
    u8 = (x * 100).to(torch.uint8)
    assert A.rotate(u8, 30.0).dtype == torch.float32  # Keras outputs floats


@pytest.mark.parametrize("fn", [
    lambda x, g: A.random_rotation(x, 0.2, g),
    lambda x, g: A.random_translation(x, 0.2, (0.0, 0.3), g, fill_mode="wrap"),
    lambda x, g: A.random_zoom(x, (-0.3, 0.3), 0.2, g, fill_mode="constant"),
])
def test_random_geometry_is_seeded_pure_and_per_sample(x, fn):
    before = x.clone()
    a = fn(x, gen(0))
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(x, before)
    assert torch.equal(a, fn(x, gen(0))) and not torch.equal(a, fn(x, gen(1)))
    same = fn(x[:1].expand(8, -1, -1, -1), gen(0))
    assert len({tuple(s.flatten().tolist()) for s in same}) == 8  # one draw per sample


def test_random_geometry_composes_with_partial_for_the_loader(x):
    from functools import partial

    aug = A.compose(partial(A.random_rotation, factor=0.1), partial(A.random_zoom, height_factor=0.1))
    assert aug(x, gen(0)).shape == x.shape


@pytest.mark.parametrize("call, arg", [
    (lambda x: A.rotate(x, 10.0, fill_mode="mirror"), "fill_mode"),
    (lambda x: A.zoom(x, 1.2, interpolation="cubic"), "interpolation"),
    (lambda x: A.affine(x, torch.eye(3)), "matrix"),
    (lambda x: A.rotate(x, torch.zeros(3)), "angle"),
    (lambda x: A.random_rotation(x, 2.0), "factor"),
    (lambda x: A.random_zoom(x, -1.0), "height_factor"),
    (lambda x: A.random_translation(x, 0.1, (0.1, 0.2, 0.3)), "width_factor"),
])
def test_geometry_arguments_are_checked(x, call, arg):
    with pytest.raises(ValueError, match=f"^{arg}: expected"):
        call(x)


def test_random_crop_is_one_window_of_the_padded_image(x):
    p, fill = 3, -2.0
    out = A.random_crop(x, p, gen(5), fill=fill)
    padded = F.pad(x, (p, p, p, p), value=fill)
    h, w = x.shape[-2:]
    offsets = set()
    for i in range(len(x)):
        hits = [
            (oy, ox)
            for oy in range(2 * p + 1)
            for ox in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, oy : oy + h, ox : ox + w])
        ]
        assert len(hits) == 1, f"sample {i}: {len(hits)} matching windows"
        offsets.add(hits[0])
    assert len(offsets) > 20  # offsets really vary per sample (49 possible)


def test_random_crop_uint8_equals_float(x):
    u8 = (x * 100).to(torch.uint8)
    assert torch.equal(
        A.random_crop(u8, 2, gen(3)), A.random_crop(u8.float(), 2, gen(3)).to(torch.uint8)
    )


def test_cutout_zeroes_one_clipped_square():
    x = torch.rand(256, 2, 16, 14, generator=gen(0)) + 1.0
    size = 6
    out = A.cutout(x, size, gen(9))
    zero = out == 0
    assert torch.equal(zero[:, 0], zero[:, 1])  # same square in every channel
    assert torch.equal(out[~zero], x[~zero])  # everything else untouched
    full = 0
    clipped = [0, 0]  # squares cut by the top/bottom, by the left/right border
    for z in zero[:, 0]:
        rows = z.any(1).nonzero().flatten()
        cols = z.any(0).nonzero().flatten()
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        assert int(z.sum()) == (r1 - r0) * (c1 - c0)  # a filled rectangle
        assert bool(z[r0:r1, c0:c1].all())
        for axis, (lo, hi, n) in enumerate(((r0, r1, 16), (c0, c1, 14))):
            assert hi - lo == size or (hi - lo < size and (lo == 0 or hi == n))
            clipped[axis] += hi - lo < size
        full += (r1 - r0, c1 - c0) == (size, size)
    # Centre uniform over the image (DeVries & Taylor): both kinds of clipping occur.
    assert full > 50 and min(clipped) > 30
    assert bool((A.cutout(x, 40, gen(0)) == 0).all())  # larger than the image: all of it


def test_compose_order_and_plain_functions(x):
    seq = A.compose(A.FlipLR(1.0), lambda t, generator=None: t * 2)
    assert torch.equal(seq(x), x.flip(3) * 2)
    c = A.compose(A.RandomCrop(2), A.flip_lr)  # plain function, generator by keyword
    a = c(x, gen(4))
    g = gen(4)
    ref = A.flip_lr(A.random_crop(x, 2, generator=g), generator=g)
    assert torch.equal(a, ref)
    assert repr(A.compose(A.RandomCrop(4), A.FlipLR(0.5), A.Cutout(8))) == (
        "Compose(RandomCrop(padding=4), FlipLR(p=0.5), Cutout(size=8))"
    )


def test_bad_inputs(x):
    with pytest.raises(ValueError, match="NCHW"):
        A.flip_lr(x[0])
    with pytest.raises(TypeError, match="x"):
        A.random_crop(x.numpy())
    with pytest.raises(ValueError, match="p"):
        A.flip_lr(x, 1.5)
    with pytest.raises(ValueError, match="size"):
        A.cutout(x, 0)
    with pytest.raises(ValueError, match="padding"):
        A.RandomCrop(-1)
    with pytest.raises(TypeError, match="fns"):
        A.compose(A.FlipLR(), "crop")
