"""compile=True: a compiled model trains like an eager one, and its saved weights (no
``_orig_mod.`` keys) load into an uncompiled model with equal outputs."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import brisk
from brisk.layers import Dense, Flatten, Rescaling


def test_compiled_training_saves_plain_weights_that_load_uncompiled(tmp_path):
    (x, y), (xt, yt) = brisk.datasets.load_digits()
    x, y = x[:1408], y[:1408]  # 22 full batches of 64: compiled training drops no batch

    def train(compile):
        brisk.utils.set_random_seed(0)  # built (weights drawn) at construction
        model = brisk.Sequential([Rescaling(1 / 255, input_shape=x.shape[1:]), Flatten(),
                                  Dense(32, activation="relu"),
                                  Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], compile=compile, seed=0)
        model.fit(x, y, epochs=8, batch_size=64, verbose=0)
        return model

    eager, model = train(False), train(True)
    # Same seed, same batches: the compiled run follows the eager one (inductor may
    # reorder float sums, so equal within float32 round-off, not bit for bit).
    np.testing.assert_allclose(model.predict(xt), eager.predict(xt), rtol=1e-3, atol=1e-4)
    assert model.evaluate(xt, yt)[1] > 0.8  # 176 Adam steps at 1e-3: a sanity bound

    model.save(tmp_path / "m.safetensors")
    keys = list(load_file(tmp_path / "m.safetensors"))
    assert keys and not any("_orig_mod" in k for k in keys)
    plain = brisk.load_model(tmp_path / "m.safetensors", compile=False)
    np.testing.assert_allclose(plain.predict(xt), model.predict(xt), rtol=1e-5, atol=1e-6)

    # The engine's own weight file and checkpoint are plain too.
    model.trainer.save(tmp_path / "w.safetensors")
    assert set(load_file(tmp_path / "w.safetensors")) == set(keys)
    model.trainer.save_checkpoint(tmp_path / "c.pt")
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    assert not any("_orig_mod" in k for k in ckpt["model"])


def test_a_module_compiled_by_the_user_is_unwrapped():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    trainer = brisk.Trainer(torch.compile(net, backend="eager"), loss="cross_entropy")
    assert trainer.module is net and trainer.compile is True
    assert not any("_orig_mod" in k for k in trainer.state_dict()["model"])


def test_compile_argument_is_checked():
    with pytest.raises(ValueError, match="compile: expected a bool or a torch.compile mode"):
        brisk.Trainer(nn.Linear(2, 2), compile="fast")
