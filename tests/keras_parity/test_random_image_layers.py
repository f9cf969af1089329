"""Keras's RandomRotation, RandomTranslation and RandomZoom on brisk.

Pinned values: Keras 3.15.1, torch backend (tools/keras_oracle/random_image_layers.py).
Random draws cannot be matched between libraries, so the geometry is pinned with ranges of
width 0 (Keras accepts them): factor (0.25, 0.25) is exactly 90 degrees, (-0.1, -0.1) is
36 degrees clockwise; a translation of (0.25 x 6, -0.3 x 5) = (1.5 down, 1.5 left) pixels; a
zoom of 1.5 (factor 0.5, out) and of (0.5 high, 1.4 wide). Each on the 6x5 image
``arange(30).reshape(6, 5)``, every fill_mode with fill_value=-1, both interpolations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.fx

import brisk
from brisk.layers import (
    Conv2D,
    Dense,
    Flatten,
    Input,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
    Rescaling,
)

# Keras: layer(x[None, :, :, None], training=True)[0, :, :, 0], rounded to 5 decimals.
KERAS = {
    "rot90/reflect/bilinear": [[6.5, 11.5, 16.5, 21.5, 26.5], [6, 11, 16, 21, 26], [5, 10, 15, 20, 25], [4, 9, 14, 19, 24], [3, 8, 13, 18, 23], [2.5, 7.5, 12.5, 17.5, 22.5]],
    "rot90/reflect/nearest": [[9, 14, 14, 24, 24], [9, 14, 14, 24, 24], [7, 12, 12, 22, 22], [2, 12, 12, 21, 21], [0, 10, 10, 20, 20], [0, 5, 10, 20, 20]],
    "rot90/wrap/bilinear": [[4.5, 9.5, 14.5, 19.5, 24.5], [6, 11, 16, 21, 26], [5, 10, 15, 20, 25], [4, 9, 14, 19, 24], [3, 8, 13, 18, 23], [4.5, 9.5, 14.5, 19.5, 24.5]],
    "rot90/wrap/nearest": [[9, 14, 14, 24, 24], [9, 14, 14, 24, 24], [7, 12, 12, 22, 22], [2, 12, 12, 21, 21], [0, 10, 10, 20, 20], [0, 5, 10, 20, 20]],
    "rot90/constant/bilinear": [[2.75, 5.25, 7.75, 10.25, 12.75], [6, 11, 16, 21, 26], [5, 10, 15, 20, 25], [4, 9, 14, 19, 24], [3, 8, 13, 18, 23], [0.75, 3.25, 5.75, 8.25, 10.75]],
    "rot90/constant/nearest": [[9, 14, 14, 24, 24], [9, 14, 14, 24, 24], [7, 12, 12, 22, 22], [2, 12, 12, 21, 21], [0, 10, 10, 20, 20], [0, 5, 10, 20, 20]],
    "rot90/nearest/bilinear": [[6.5, 11.5, 16.5, 21.5, 26.5], [6, 11, 16, 21, 26], [5, 10, 15, 20, 25], [4, 9, 14, 19, 24], [3, 8, 13, 18, 23], [2.5, 7.5, 12.5, 17.5, 22.5]],
    "rot90/nearest/nearest": [[9, 14, 14, 24, 24], [9, 14, 14, 24, 24], [7, 12, 12, 22, 22], [2, 12, 12, 21, 21], [0, 10, 10, 20, 20], [0, 5, 10, 20, 20]],
    "rot-36/reflect/bilinear": [[8.35264, 5.32621, 2.91782, 1.33955, 2.14857], [12.31022, 9.6806, 7.55069, 5.42079, 3.29088], [16.44338, 14.31347, 12.18356, 10.05366, 7.92375], [21.07626, 18.94634, 16.81644, 14.68652, 12.55662], [25.70912, 23.57922, 21.4493, 19.3194, 16.68978], [26.85143, 27.66044, 26.08218, 23.67378, 20.64736]],
    "rot-36/reflect/nearest": [[10, 5, 1, 1, 2], [10, 10, 6, 7, 3], [15, 16, 12, 13, 8], [21, 16, 17, 13, 14], [26, 22, 23, 19, 19], [27, 28, 28, 24, 19]],
    "rot-36/wrap/bilinear": [[12.17764, 6.44013, 2.91782, 4.09775, 19.6014], [14.30907, 9.6806, 7.55069, 5.42079, 3.29088], [16.44338, 14.31347, 12.18356, 10.05366, 7.92375], [21.07626, 18.94634, 16.81644, 14.68652, 12.55662], [25.70912, 23.57922, 21.4493, 19.3194, 14.69093], [9.39861, 24.90225, 26.08218, 22.55986, 16.82236]],
    "rot-36/wrap/nearest": [[14, 5, 1, 1, 27], [10, 10, 6, 7, 3], [15, 16, 12, 13, 8], [21, 16, 17, 13, 14], [26, 22, 23, 19, 19], [2, 28, 28, 24, 15]],
    "rot-36/constant/bilinear": [[-1, 3.56449, 2.91782, 1.08144, -0.04949], [5.65895, 9.6806, 7.55069, 5.42079, 3.29088], [16.44338, 14.31347, 12.18356, 10.05366, 7.92375], [21.07626, 18.94634, 16.81644, 14.68652, 12.55662], [25.70912, 23.57922, 21.4493, 19.3194, 7.84999], [7.40798, 24.4984, 26.08218, 16.80263, -1]],
    "rot-36/constant/nearest": [[-1, 5, 1, 1, -1], [10, 10, 6, 7, 3], [15, 16, 12, 13, 8], [21, 16, 17, 13, 14], [26, 22, 23, 19, 19], [-1, 28, 28, 24, -1]],
    "rot-36/nearest/bilinear": [[8.26514, 5.32621, 2.91782, 1.33955, 2.14857], [12.31022, 9.6806, 7.55069, 5.42079, 3.29088], [16.44338, 14.31347, 12.18356, 10.05366, 7.92375], [21.07626, 18.94634, 16.81644, 14.68652, 12.55662], [25.70912, 23.57922, 21.4493, 19.3194, 16.68978], [26.85143, 27.66044, 26.08218, 23.67378, 20.73486]],
    "rot-36/nearest/nearest": [[10, 5, 1, 1, 2], [10, 10, 6, 7, 3], [15, 16, 12, 13, 8], [21, 16, 17, 13, 14], [26, 22, 23, 19, 19], [27, 28, 28, 24, 19]],
    "tr/reflect/bilinear": [[4, 5, 6, 6.5, 6], [1.5, 2.5, 3.5, 4, 3.5], [4, 5, 6, 6.5, 6], [9, 10, 11, 11.5, 11], [14, 15, 16, 16.5, 16], [19, 20, 21, 21.5, 21]],
    "tr/reflect/nearest": [[7, 7, 9, 9, 8], [2, 2, 4, 4, 3], [2, 2, 4, 4, 3], [12, 12, 14, 14, 13], [12, 12, 14, 14, 13], [22, 22, 24, 24, 23]],
    "tr/wrap/bilinear": [[24, 25, 26, 24.5, 23], [14, 15, 16, 14.5, 13], [4, 5, 6, 4.5, 3], [9, 10, 11, 9.5, 8], [14, 15, 16, 14.5, 13], [19, 20, 21, 19.5, 18]],
    "tr/wrap/nearest": [[22, 22, 24, 24, 21], [2, 2, 4, 4, 1], [2, 2, 4, 4, 1], [12, 12, 14, 14, 11], [12, 12, 14, 14, 11], [22, 22, 24, 24, 21]],
    "tr/constant/bilinear": [[-1, -1, -1, -1, -1], [0.25, 0.75, 1.25, 0.25, -1], [4, 5, 6, 2.75, -1], [9, 10, 11, 5.25, -1], [14, 15, 16, 7.75, -1], [19, 20, 21, 10.25, -1]],
    "tr/constant/nearest": [[-1, -1, -1, -1, -1], [2, 2, 4, 4, -1], [2, 2, 4, 4, -1], [12, 12, 14, 14, -1], [12, 12, 14, 14, -1], [22, 22, 24, 24, -1]],
    "tr/nearest/bilinear": [[1.5, 2.5, 3.5, 4, 4], [1.5, 2.5, 3.5, 4, 4], [4, 5, 6, 6.5, 6.5], [9, 10, 11, 11.5, 11.5], [14, 15, 16, 16.5, 16.5], [19, 20, 21, 21.5, 21.5]],
    "tr/nearest/nearest": [[2, 2, 4, 4, 4], [2, 2, 4, 4, 4], [2, 2, 4, 4, 4], [12, 12, 14, 14, 14], [12, 12, 14, 14, 14], [22, 22, 24, 24, 24]],
    "zoom_out/reflect/bilinear": [[1.25, 1.75, 3.25, 4.75, 5.25], [1.25, 1.75, 3.25, 4.75, 5.25], [8.75, 9.25, 10.75, 12.25, 12.75], [16.25, 16.75, 18.25, 19.75, 20.25], [23.75, 24.25, 25.75, 27.25, 27.75], [23.75, 24.25, 25.75, 27.25, 27.75]],
    "zoom_out/reflect/nearest": [[0, 0, 2, 4, 4], [0, 0, 2, 4, 4], [10, 10, 12, 14, 14], [15, 15, 17, 19, 19], [25, 25, 27, 29, 29], [25, 25, 27, 29, 29]],
    "zoom_out/wrap/bilinear": [[27.75, 24.25, 25.75, 27.25, 23.75], [5.25, 1.75, 3.25, 4.75, 1.25], [12.75, 9.25, 10.75, 12.25, 8.75], [20.25, 16.75, 18.25, 19.75, 16.25], [27.75, 24.25, 25.75, 27.25, 23.75], [5.25, 1.75, 3.25, 4.75, 1.25]],
    "zoom_out/wrap/nearest": [[29, 25, 27, 29, 25], [4, 0, 2, 4, 0], [14, 10, 12, 14, 10], [19, 15, 17, 19, 15], [29, 25, 27, 29, 25], [4, 0, 2, 4, 0]],
    "zoom_out/constant/bilinear": [[-1, -1, -1, -1, -1], [-1, 1.75, 3.25, 4.75, -1], [-1, 9.25, 10.75, 12.25, -1], [-1, 16.75, 18.25, 19.75, -1], [-1, 24.25, 25.75, 27.25, -1], [-1, -1, -1, -1, -1]],
    "zoom_out/constant/nearest": [[-1, -1, -1, -1, -1], [-1, 0, 2, 4, -1], [-1, 10, 12, 14, -1], [-1, 15, 17, 19, -1], [-1, 25, 27, 29, -1], [-1, -1, -1, -1, -1]],
    "zoom_out/nearest/bilinear": [[0, 0.5, 2, 3.5, 4], [1.25, 1.75, 3.25, 4.75, 5.25], [8.75, 9.25, 10.75, 12.25, 12.75], [16.25, 16.75, 18.25, 19.75, 20.25], [23.75, 24.25, 25.75, 27.25, 27.75], [25, 25.5, 27, 28.5, 29]],
    "zoom_out/nearest/nearest": [[0, 0, 2, 4, 4], [0, 0, 2, 4, 4], [10, 10, 12, 14, 14], [15, 15, 17, 19, 19], [25, 25, 27, 29, 29], [25, 25, 27, 29, 29]],
    "zoom_hw/reflect/bilinear": [[6.25, 6.85, 8.25, 9.65, 10.25], [8.75, 9.35, 10.75, 12.15, 12.75], [11.25, 11.85, 13.25, 14.65, 15.25], [13.75, 14.35, 15.75, 17.15, 17.75], [16.25, 16.85, 18.25, 19.65, 20.25], [18.75, 19.35, 20.75, 22.15, 22.75]],
    "zoom_hw/reflect/nearest": [[5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19], [15, 16, 17, 18, 19], [20, 21, 22, 23, 24]],
    "zoom_hw/wrap/bilinear": [[9.45, 6.85, 8.25, 9.65, 7.05], [11.95, 9.35, 10.75, 12.15, 9.55], [14.45, 11.85, 13.25, 14.65, 12.05], [16.95, 14.35, 15.75, 17.15, 14.55], [19.45, 16.85, 18.25, 19.65, 17.05], [21.95, 19.35, 20.75, 22.15, 19.55]],
    "zoom_hw/wrap/nearest": [[9, 6, 7, 8, 5], [14, 11, 12, 13, 10], [14, 11, 12, 13, 10], [19, 16, 17, 18, 15], [19, 16, 17, 18, 15], [24, 21, 22, 23, 20]],
    "zoom_hw/constant/bilinear": [[0.45, 6.85, 8.25, 9.65, 1.25], [0.95, 9.35, 10.75, 12.15, 1.75], [1.45, 11.85, 13.25, 14.65, 2.25], [1.95, 14.35, 15.75, 17.15, 2.75], [2.45, 16.85, 18.25, 19.65, 3.25], [2.95, 19.35, 20.75, 22.15, 3.75]],
    "zoom_hw/constant/nearest": [[-1, 6, 7, 8, -1], [-1, 11, 12, 13, -1], [-1, 11, 12, 13, -1], [-1, 16, 17, 18, -1], [-1, 16, 17, 18, -1], [-1, 21, 22, 23, -1]],
    "zoom_hw/nearest/bilinear": [[6.25, 6.85, 8.25, 9.65, 10.25], [8.75, 9.35, 10.75, 12.15, 12.75], [11.25, 11.85, 13.25, 14.65, 15.25], [13.75, 14.35, 15.75, 17.15, 17.75], [16.25, 16.85, 18.25, 19.65, 20.25], [18.75, 19.35, 20.75, 22.15, 22.75]],
    "zoom_hw/nearest/nearest": [[5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19], [15, 16, 17, 18, 19], [20, 21, 22, 23, 24]],
}

CASES = {
    "rot90": lambda **k: RandomRotation((0.25, 0.25), **k),
    "rot-36": lambda **k: RandomRotation((-0.1, -0.1), **k),
    "tr": lambda **k: RandomTranslation((0.25, 0.25), (-0.3, -0.3), **k),
    "zoom_out": lambda **k: RandomZoom((0.5, 0.5), **k),
    "zoom_hw": lambda **k: RandomZoom((-0.5, -0.5), (0.4, 0.4), **k),
}
IMAGE = np.arange(30, dtype="float32").reshape(1, 6, 5, 1)  # NHWC, as a Keras user gives it


@pytest.mark.parametrize("key", sorted(KERAS))
def test_deterministic_geometry_matches_keras(key):
    # Keras's rot90 'nearest' rows are ties (half-pixel sources) that its float32 rounding
    # decides; brisk builds the matrix and coordinates in Keras's order of operations, so
    # they match too.
    name, fill_mode, interpolation = key.split("/")
    layer = CASES[name](fill_mode=fill_mode, interpolation=interpolation, fill_value=-1.0,
                        seed=1)
    m = brisk.Sequential([Input((6, 5, 1)), layer])
    m.train()
    out = m(IMAGE)  # a Sequential returns images as NCHW
    assert out.shape == (1, 1, 6, 5) and out.dtype == torch.float32
    np.testing.assert_allclose(out[0, 0].numpy(), np.array(KERAS[key]), rtol=0, atol=2e-5)


def test_directions_as_keras_documents():
    # Read off the pinned arrays: +90 degrees turns counter-clockwise (the top row of the
    # output is the input's right column, read downwards: 4.5 is between 4 and 9); a
    # positive height factor moves the image down and a negative width factor left; a
    # positive zoom factor zooms out (the image shrinks into a filled border).
    assert KERAS["rot90/constant/bilinear"][1] == [6, 11, 16, 21, 26]  # column 1, downwards
    assert KERAS["tr/constant/nearest"][0] == [-1] * 5  # the top row is vacated: moved down
    assert [r[-1] for r in KERAS["tr/constant/nearest"]] == [-1] * 6  # moved left
    assert KERAS["zoom_out/constant/nearest"][1] == [-1, 0, 2, 4, -1]


@pytest.mark.parametrize("make", list(CASES.values()), ids=list(CASES))
def test_shape_params_and_inference_identity_as_keras(make):
    # Keras: output_shape (None, 6, 5, 1), count_params 0, training=False returns the
    # input unchanged, as float32 for uint8 input (predict feeds brisk models floats).
    m = brisk.Sequential([Input((6, 5, 1)), make()])
    assert m.output_shape == (None, 6, 5, 1) and m.count_params() == 0
    m.eval()
    nchw = torch.from_numpy(IMAGE).permute(0, 3, 1, 2)
    assert torch.equal(m(IMAGE), nchw)
    pred = np.asarray(m.predict(np.repeat(IMAGE, 3, axis=0).astype("uint8"), verbose=0))
    assert pred.dtype == np.float32 and np.array_equal(pred, np.repeat(nchw.numpy(), 3, axis=0))
    m.train()
    assert m(IMAGE.astype("uint8")).dtype == torch.float32  # training: floats, as Keras


@pytest.mark.parametrize("make", list(CASES.values()), ids=list(CASES))
def test_inference_graph_traces_with_torch_fx(make):
    # compress (fold, quantize) traces the plain torch copy of a model with torch.fx; the
    # layer is kept as it is there, so its inference path must not branch on the tensor
    from brisk.compress.fold import to_torch

    m = brisk.Sequential([Input((6, 5, 1)), make(), Conv2D(2, 3)])
    m.eval()
    traced = torch.fx.symbolic_trace(to_torch(m).eval())
    x = torch.from_numpy(IMAGE)
    assert torch.equal(traced(x), m(x))


LAYERS = {
    "rotation": lambda seed: RandomRotation(0.2, seed=seed),
    "translation": lambda seed: RandomTranslation(0.2, (-0.1, 0.3), seed=seed),
    "zoom": lambda seed: RandomZoom((-0.3, 0.2), seed=seed),
    "zoom_hw": lambda seed: RandomZoom(0.2, 0.3, fill_mode="constant", seed=seed),
}


@pytest.mark.parametrize("make", list(LAYERS.values()), ids=list(LAYERS))
def test_seeded_reproducible_and_one_draw_per_sample(make):
    x = torch.rand(1, 12, 10, 2, generator=torch.Generator().manual_seed(0)).repeat(16, 1, 1, 1)

    def run(seed):
        m = brisk.Sequential([Input((12, 10, 2)), make(seed)])
        m.train()
        return m(x), m(x)

    a, a2 = run(3)
    b, _ = run(3)
    c, _ = run(4)
    assert torch.equal(a, b)  # the same seed: the same draws
    assert not torch.equal(a, c)  # another seed: others
    assert not torch.equal(a, a2)  # the next batch draws anew
    # the same image 16 times: 16 different transforms within one batch
    assert len({tuple(s.flatten().tolist()) for s in a}) == 16


def test_zoom_without_width_factor_keeps_the_aspect_ratio():
    # Keras: width_zoom = height_zoom, one draw for both axes. On a constant image with a
    # constant fill, a zoom out leaves a centred window whose height and width shrink alike.
    m = brisk.Sequential([Input((41, 41, 1)), RandomZoom((0.5, 1.0), fill_mode="constant",
                                                         interpolation="nearest", seed=0)])
    m.train()
    out = m(np.ones((8, 41, 41, 1), "float32"))[:, 0]
    rows, cols = (out == 1).any(2).sum(1), (out == 1).any(1).sum(1)
    assert torch.equal(rows, cols) and len(set(rows.tolist())) > 1


def test_fit_with_augmentation_layers_then_save_and_load(tmp_path):
    rs = np.random.RandomState(0)
    x = (rs.rand(32, 8, 8, 1) * 255).astype("uint8")
    y = rs.randint(0, 2, 32)
    m = brisk.Sequential([
        Input((8, 8, 1)),
        RandomRotation((-0.1, 0.2), fill_mode="constant", fill_value=3.0, seed=1),
        RandomTranslation(0.1, (0.0, 0.2), fill_mode="wrap", interpolation="nearest", seed=2),
        RandomZoom(0.2, (-0.1, 0.1), fill_mode="nearest", seed=3),
        Rescaling(1 / 255),
        Conv2D(2, 3, activation="relu"),
        Flatten(),
        Dense(2, activation="softmax"),
    ])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", seed=0)
    hist = m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert len(hist.history["loss"]) == 2 and all(map(math.isfinite, hist.history["loss"]))
    pred = m.predict(x, verbose=0)
    path = tmp_path / "aug.safetensors"
    m.save(path)
    again = brisk.models.load_model(path)
    for a, b in zip(m.layers[:3], again.layers[:3], strict=True):
        assert type(a) is type(b) and a.get_config() == b.get_config()
    assert again.layers[0].get_config()["factor"] == [-0.1, 0.2]
    assert again.layers[2].get_config()["width_factor"] == [-0.1, 0.1]
    np.testing.assert_array_equal(np.asarray(again.predict(x, verbose=0)), np.asarray(pred))
    # the rebuilt layer draws as a fresh one from the saved config: its seed came back
    fresh = RandomTranslation(**{k: v for k, v in m.layers[1].get_config().items()
                                 if k != "name"})
    again.train()
    batch = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.layers[1](batch), fresh(batch))
    assert again.layers[1].get_config()["seed"] == 2


@pytest.mark.parametrize(
    "make, arg",
    [
        (lambda: RandomRotation(1.5), "factor"),  # Keras: ValueError, range [-1, 1]
        (lambda: RandomRotation((0.1,)), "factor"),
        (lambda: RandomRotation("0.1"), "factor"),
        (lambda: RandomRotation(True), "factor"),
        (lambda: RandomRotation(float("nan")), "factor"),
        (lambda: RandomTranslation(0.1, 1.2), "width_factor"),  # Keras: ValueError
        (lambda: RandomTranslation((-1.5, 0.1), 0.1), "height_factor"),
        (lambda: RandomZoom(-1.0), "height_factor"),  # Keras: ValueError, range (-1, 1]
        (lambda: RandomZoom(0.1, (0.2, 1.1)), "width_factor"),
        (lambda: RandomRotation(0.1, fill_mode="mirror"), "fill_mode"),
        (lambda: RandomZoom(0.1, interpolation="bicubic"), "interpolation"),
        (lambda: RandomTranslation(0.1, 0.1, seed=1.5), "seed"),
        (lambda: RandomZoom(0.1, fill_value=float("inf")), "fill_value"),
        (lambda: RandomZoom(0.1, fill_value="0"), "fill_value"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(make, arg):
    # Keras raises NotImplementedError for an unknown fill_mode/interpolation; brisk's rule
    # is a ValueError naming the argument.
    with pytest.raises(ValueError, match=f"^{arg}: expected"):
        make()


@pytest.mark.parametrize("make", list(CASES.values()), ids=list(CASES))
def test_non_image_inputs_are_refused_in_build(make):
    with pytest.raises(ValueError, match="expects images"):
        brisk.Sequential([Input((4,)), make()])
    with pytest.raises(ValueError, match="expects images"):
        brisk.Sequential([Input((4, 3)), make()])
