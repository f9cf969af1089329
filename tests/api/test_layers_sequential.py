import numpy as np
import pytest
import torch

import brisk
from brisk.layers import (
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Input,
    MaxPooling2D,
)


def keras_convnet():
    return brisk.Sequential([
        Input((28, 28, 1)),
        Conv2D(32, kernel_size=(3, 3), activation="relu"),
        MaxPooling2D(pool_size=(2, 2)),
        Conv2D(64, kernel_size=(3, 3), activation="relu"),
        MaxPooling2D(pool_size=(2, 2)),
        Flatten(),
        Dropout(0.5),
        Dense(10, activation="softmax"),
    ])


def test_sequential_is_a_module_with_keras_shapes():
    model = keras_convnet()
    model.build((28, 28, 1))
    assert isinstance(model, torch.nn.Module)
    assert model.output_shape == (None, 10)
    # Keras reports (None, 26, 26, 32) for the first conv: shapes shown in NHWC.
    text = model.summary(print_fn=None)
    assert "(None, 26, 26, 32)" in text and "(None, 5, 5, 64)" in text
    # Keras's published count for this convnet is 34,826.
    assert model.count_params() == 34826
    assert f"Total params: {sum(p.numel() for p in model.parameters()):,}" in text
    out = model(torch.rand(3, 28, 28, 1))
    assert out.shape == (3, 10)
    torch.testing.assert_close(out.sum(1), torch.ones(3))
    assert set(model.state_dict()) == {
        "layers.0.conv.weight", "layers.0.conv.bias", "layers.2.conv.weight",
        "layers.2.conv.bias", "layers.6.linear.weight", "layers.6.linear.bias"}


def test_summary_param_counts_and_flops():
    model = brisk.Sequential([Dense(64, activation="relu", input_shape=(784,)),
                              Dense(64, activation="relu"), Dense(10, activation="softmax")])
    text = model.summary(print_fn=None)
    n = sum(p.numel() for p in model.parameters())
    assert n == 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
    assert f"Total params: {n:,}" in text
    flops = 2 * (784 * 64 + 64 * 64 + 64 * 10) + 64 + 64 + 10
    assert f"FLOPs per sample (forward): {flops:,}" in text


def test_input_shape_from_first_batch_and_to_and_compile():
    model = brisk.Sequential([Dense(8, activation="tanh"), Dense(2)])
    assert not model.built
    y = model(torch.randn(5, 3))
    assert model.built and model.input_shape == (None, 3) and y.shape == (5, 2)
    model.to(torch.float64)
    assert model(torch.randn(2, 3, dtype=torch.float64)).dtype == torch.float64
    model.to(torch.float32)
    compiled = torch.compile(model, backend="eager")
    x = torch.randn(4, 3)
    torch.testing.assert_close(compiled(x), model(x))


def test_same_padding_and_pooling_match_keras_sizes():
    model = brisk.Sequential([
        Input((7, 9, 3)),
        Conv2D(4, 3, strides=2, padding="same"),   # ceil(7/2)=4, ceil(9/2)=5
        MaxPooling2D(3, strides=2, padding="same"),  # ceil(4/2)=2, ceil(5/2)=3
        AveragePooling2D(2, padding="same"),  # 1, 2
        BatchNormalization(),
        Activation("gelu"),
        GlobalAveragePooling2D(),
    ])
    model.build((7, 9, 3))
    shapes = [model._display_shape(s[1]) for s in model._shapes]
    assert shapes[:3] == [(None, 4, 5, 4), (None, 2, 3, 4), (None, 1, 2, 4)]
    assert model(torch.randn(2, 7, 9, 3)).shape == (2, 4)


def test_average_pooling_same_excludes_padding():
    pool = AveragePooling2D(2, padding="same")
    pool.build((1, 3, 3))
    x = torch.ones(1, 1, 3, 3)
    torch.testing.assert_close(pool(x), torch.ones(1, 1, 2, 2))


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="units"):
        Dense(0)
    with pytest.raises(ValueError, match="activation.*'relu'"):
        Dense(3, activation="rellu")
    with pytest.raises(ValueError, match="padding"):
        Conv2D(3, 3, padding="full")
    with pytest.raises(ValueError, match="rate"):
        Dropout(1.5)
    with pytest.raises(ValueError, match="channel axis"):  # built at construction, as in Keras
        brisk.Sequential([Conv2D(4, 3, input_shape=(28, 28))])


def test_predict_without_compile_and_shapes():
    model = brisk.Sequential([Dense(3, activation="softmax", input_shape=(4,))])
    p = model.predict(np.random.rand(10, 4).astype("float32"))
    assert isinstance(p, np.ndarray) and p.shape == (10, 3)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)


def test_save_load_roundtrip(tmp_path):
    model = keras_convnet()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.rand(64, 28, 28, 1).astype("float32")
    y = np.random.randint(0, 10, 64)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = brisk.load_model(path)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    # compiled again on load, as Keras does
    assert loaded.evaluate(x, y, return_dict=True).keys() == {"loss", "accuracy"}
    # an interrupted save never leaves a partial file behind
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_load_model_rejects_other_files(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a brisk model"):
        brisk.load_model(bad)


@pytest.mark.parametrize("optimizer", [
    brisk.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    brisk.optimizers.AdamW(learning_rate=3e-3),
    brisk.optimizers.get("schedulefree_adamw"),
])
def test_load_model_recompiles_with_an_optimizer_object(tmp_path, optimizer):
    m = brisk.Sequential([Dense(4, activation="relu", input_shape=(3,)), Dense(2)])
    m.compile(optimizer=optimizer, loss="mse")
    m.build((3,))
    m.save(tmp_path / "m.safetensors")
    again = brisk.load_model(tmp_path / "m.safetensors")
    assert again.trainer.optimizer_spec == optimizer
