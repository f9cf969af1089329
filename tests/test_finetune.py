"""brisk.finetune: the two phases of the Keras transfer-learning guide, feature caching."""

import numpy as np
import pytest
import torch
from torch import nn

import brisk
from brisk.finetune import Finetuned, blocks, extract_features, finetune


def _backbone():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(0.3),
        nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _head():
    torch.manual_seed(1)
    return nn.Sequential(nn.Dropout(0.2), nn.Linear(6, 3))


def _data(n=96):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > 0).long() + (x[:, 0, 4:].mean((1, 2)) > 0).long()
    return x, y


def _snapshot(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_blocks_are_the_weighted_children_bottom_to_top_through_wrappers():
    b = _backbone()
    assert [type(m).__name__ for m in blocks(b)] == ["Conv2d", "BatchNorm2d", "Conv2d",
                                                      "BatchNorm2d"]

    class Wrapper(nn.Module):  # preprocessing around a model: its blocks are the model's
        def __init__(self, inner):
            super().__init__()
            self.inner, self.scale = inner, 2.0

        def forward(self, x):
            return self.inner(x * self.scale)

    assert blocks(Wrapper(b)) == blocks(b)
    nested = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Linear(2, 3)),
                           nn.ModuleList([nn.Linear(3, 3)]))
    assert blocks(nested) == [nested[0], nested[1][1], nested[2][0]]


def test_head_phase_keeps_the_backbone_bit_identical_and_its_batchnorm_statistics():
    x, y = _data()
    b, h = _backbone(), _head()
    before, head0 = _snapshot(b), _snapshot(h)
    r = finetune(b, h, x, y, epochs=(2, 0), batch_size=16, cache=False, seed=0, verbose=0)
    after = b.state_dict()
    for k, v in before.items():  # weights, running_mean/var and num_batches_tracked
        assert torch.equal(v, after[k]), k
    assert any(not torch.equal(v, h.state_dict()[k]) for k, v in head0.items())
    assert r.finetune_history is None and len(r.head_history.history["loss"]) == 2
    assert isinstance(r.model, Finetuned) and r.model.head is h


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_cached_features_train_the_same_head_as_the_full_path(cache, tmp_path):
    x, y = _data()
    heads = []
    for c in (False, str(tmp_path / "f.npy") if cache == "disk" else "memory"):
        b, h = _backbone(), _head()
        r = finetune(b, h, x, y, epochs=(3, 0), batch_size=16, cache=c, seed=5,
                     validation_split=0.25, verbose=0)
        heads.append((_snapshot(h), r.head_history.history))
    (a, ha), (c_, hc) = heads
    for k in a:
        torch.testing.assert_close(a[k], c_[k], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ha["val_loss"], hc["val_loss"], rtol=1e-5)
    if cache == "disk":
        f = np.load(tmp_path / "f.npy", mmap_mode="r")
        assert f.shape == (96, 6) and f.dtype == np.float32


def test_extract_features_is_the_backbone_in_inference_mode_batched():
    x, _ = _data(50)
    b = _backbone()
    b.train()
    f = extract_features(b, x, batch_size=7, verbose=0)
    assert b.training  # restored
    b.eval()
    with torch.no_grad():
        ref = b(x)
    assert f.shape == (50, 6) and f.dtype == torch.float32
    torch.testing.assert_close(f, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(b, x, batch_size=0)
    with pytest.raises(TypeError, match="x: expected a tensor or NumPy array"):
        extract_features(b, [1, 2])


def test_phase_two_trains_only_the_unfrozen_top_blocks_with_layer_wise_rates():
    x, y = _data()
    b, h = _backbone(), _head()
    start = _snapshot(b)
    r = finetune(b, h, x, y, epochs=(1, 2), learning_rate=(1e-2, 1e-2), unfreeze=2,
                 layer_decay=0.5, batch_size=16, seed=0, verbose=0)
    end = b.state_dict()
    for k in ("0.weight", "0.bias", "1.weight", "1.bias"):  # below the top two blocks
        assert torch.equal(start[k], end[k]), k
    for k in ("3.weight", "4.weight"):  # the top two blocks trained
        assert not torch.equal(start[k], end[k]), k
    # batchnorm='inference' (the default): no statistic moved, not even the unfrozen one's
    for k in ("1.running_mean", "4.running_mean", "4.running_var", "4.num_batches_tracked"):
        assert torch.equal(start[k], end[k]), k
    rates = {}
    for g in r.trainer.optimizer.param_groups:
        for p in g["params"]:
            rates[id(p)] = g["initial_lr"]
    assert {rates[id(p)] for p in h.parameters()} == {1e-2}
    assert {rates[id(p)] for p in b[4].parameters()} == {1e-2 * 0.5}  # the top block
    assert {rates[id(p)] for p in b[3].parameters()} == {1e-2 * 0.25}  # the next one
    assert not any(id(p) in rates for p in b[0].parameters())
    assert len(r.finetune_history.history["loss"]) == 2


def test_batchnorm_adapt_updates_only_the_unfrozen_blocks_statistics():
    x, y = _data()
    b, h = _backbone(), _head()
    start = _snapshot(b)
    finetune(b, h, x, y, epochs=(1, 1), unfreeze=1, batchnorm="adapt", batch_size=16,
             seed=0, verbose=0)
    end = b.state_dict()
    assert not torch.equal(start["4.running_mean"], end["4.running_mean"])  # unfrozen
    assert torch.equal(start["1.running_mean"], end["1.running_mean"])  # still frozen
    assert torch.equal(start["3.weight"], end["3.weight"])  # unfreeze=1: only the BN trains


def test_early_stopping_in_phase_two_falls_back_to_the_head_phase_when_worse():
    x, y = _data()
    b, h = _backbone(), _head()
    kw = dict(learning_rate=(1e-2, 5.0), optimizer="sgd", validation_split=0.25, batch_size=16,
              seed=0, verbose=0)
    with pytest.warns(UserWarning, match="phase 2 never improved val_loss on the head phase's"):
        r = finetune(b, h, x, y, epochs=(1, 6), patience=1, **kw)
    losses = r.finetune_history.history["val_loss"]
    assert len(losses) < 6  # a rate of 5 diverges: stopped early
    assert not r.model.training  # returned in eval mode
    ref_b, ref_h = _backbone(), _head()  # the same head phase alone
    ref = finetune(ref_b, ref_h, x, y, epochs=(1, 0), **kw)
    got, want = r.model.state_dict(), ref.model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    val = r.trainer.evaluate(x[72:], y[72:], verbose=0, return_dict=True)
    assert val["loss"] == pytest.approx(ref.head_history.history["val_loss"][-1], rel=1e-5)


def test_bad_arguments_are_refused_before_training(tmp_path):
    x, y = _data(16)
    b, h = _backbone(), _head()
    start = _snapshot(h)
    bad = [
        (dict(epochs=(0, 1)), ValueError, "epochs: the head phase needs at least 1 epoch"),
        (dict(epochs=(1, 2, 3)), ValueError, "epochs: expected one value or a pair"),
        (dict(learning_rate=(1e-3, -1.0)), ValueError, "learning_rate: expected positive finite"),
        (dict(epochs=(1, -1)), ValueError, "epochs: the head phase needs at least 1 epoch"),
        (dict(unfreeze=5), ValueError, "unfreeze: expected 'all' or a number of top blocks "
                                       "from 1 to 4"),
        (dict(layer_decay=0), ValueError, "layer_decay"),
        (dict(batchnorm="train"), ValueError, "batchnorm"),
        (dict(patience=-1), ValueError, "patience"),
        (dict(patience=1, monitor="val_acc"), ValueError, r"monitor: expected one of \["),
        (dict(epochs=(1, 1), warmup=1), ValueError, "warmup: 1 steps leave none of phase 2's 1"),
        (dict(cache="disk"), ValueError, "cache: expected 'auto', True, False, 'memory' or the"),
        (dict(cache=str(tmp_path / "missing" / "f.npy")), ValueError, "cache: the folder of"),
        (dict(cache="memory", augment=brisk.augment.FlipLR()), ValueError,
         "cache: cached features cannot be augmented"),
    ]
    for kwargs, err, msg in bad:
        with pytest.raises(err, match=msg):
            finetune(b, h, x, y, verbose=0, **kwargs)
    with pytest.raises(TypeError, match="backbone"):
        finetune("resnet", h, x, y)
    with pytest.raises(ValueError, match="cache: features are cached for arrays"):
        finetune(b, h, torch.utils.data.TensorDataset(x, y), cache="memory")
    assert all(torch.equal(v, h.state_dict()[k]) for k, v in start.items())


def test_augment_runs_the_full_path_when_cache_is_auto():
    x, y = _data(32)
    b, h = _backbone(), _head()
    r = finetune(b, h, x, y, epochs=(1, 0), augment=brisk.augment.FlipLR(), batch_size=16,
                 seed=0, verbose=0)
    assert r.trainer.module is r.model  # not the head on features


def test_brisk_finetune_command_offline(tmp_path, capsys):
    from brisk.cli import main

    out = tmp_path / "ft"
    argv = ["finetune", "--dataset", "digits", "--limit", "64", "--test-limit", "50",
            "--image-size", "32", "--epochs", "1", "--finetune-epochs", "1", "--unfreeze", "2",
            "--verbose", "0", "--out", str(out)]
    assert main(argv) == 0
    import json

    result = json.loads((out / "result.json").read_text())
    assert result["train_samples"] == 64 and result["test_samples"] == 50
    assert result["image_size"] == [32, 32] and 0 <= result["test_accuracy"] <= 1
    from safetensors.torch import load_file

    keys = load_file(out / "model.safetensors")
    assert "head.1.weight" in keys and keys["head.1.weight"].shape == (10, 1280)
    assert main(["finetune", "--model", "resnet_nope", "--dataset", "digits"]) == 2
    assert "resnet_nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["finetune", "--unfreeze", "some"])


def test_a_torchvision_resnet_frozen_and_unfrozen_by_blocks():
    """trainable on a torchvision model: the frozen part (weights and BatchNorm statistics)
    stays bit-identical through fit, its Dropout-free blocks unfrozen from the top only."""
    from brisk import applications

    torch.manual_seed(0)
    net = applications.get("resnet18", weights=None, include_top=False, pooling="avg",
                           input_shape=(32, 32, 3))
    names = [type(b).__name__ for b in blocks(net)]
    assert names == ["Conv2d", "BatchNorm2d"] + ["BasicBlock"] * 8  # conv1, bn1, layer1-4
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 3, (32,))
    start = _snapshot(net)
    head = nn.Linear(512, 3)
    finetune(net, head, x, y, epochs=(1, 1), unfreeze=1, batchnorm="adapt", batch_size=16,
             learning_rate=(1e-2, 1e-2), seed=0, verbose=0)
    end = net.state_dict()
    top = "model.layer4.1."  # layer4's last BasicBlock
    changed = {k for k in start if not torch.equal(start[k], end[k])}
    assert changed and all(k.startswith(top) for k in changed), sorted(changed)[:5]
    assert top + "bn2.running_mean" in changed  # adapt: the unfrozen block's statistics
    assert top + "conv1.weight" in changed


def test_frozen_modules_keep_dropout_active_in_training():
    """Keras's trainable=False: weights fixed, Dropout still drops while training."""
    net = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    net[0].trainable = False
    net[1].trainable = False
    seen = []
    net[1].register_forward_hook(lambda m, i, o: seen.append((o == 0).float().mean().item()))
    x, y = torch.rand(64, 8) + 0.1, torch.randint(0, 2, (64,))
    w0 = net[0].weight.clone()
    brisk.Trainer(net, optimizer="sgd", loss="cross_entropy").fit(x, y, batch_size=64,
                                                                   epochs=1, verbose=0)
    assert torch.equal(net[0].weight, w0)
    assert seen[-1] > 0.3  # about half the units dropped in the training step


@pytest.mark.parametrize("cache", ["memory", False])
def test_a_softmax_head_trains_as_its_logits_head(cache):
    """Keras's canonical head, Dense(k, activation='softmax'), and nn.Sequential(..., Softmax):
    the loss comes from the logits (as brisk.Sequential's), not a second softmax."""
    x, y = _data()
    torch.manual_seed(1)
    lin = nn.Linear(6, 3)
    dense = brisk.layers.Dense(3, activation="softmax")
    dense.build((6,))
    dense.linear.load_state_dict(lin.state_dict())
    torch_head = nn.Sequential(nn.Linear(6, 3), nn.Softmax(-1))
    torch_head[0].load_state_dict(lin.state_dict())
    runs = [finetune(_backbone(), h, x, y, epochs=(2, 0), batch_size=16, cache=cache, seed=0,
                     verbose=0) for h in (lin, dense, torch_head)]
    ref = runs[0].head_history.history["loss"]
    for r in runs[1:]:
        np.testing.assert_allclose(r.head_history.history["loss"], ref, rtol=1e-5)
    torch.testing.assert_close(dense.linear.weight, lin.weight, rtol=1e-5, atol=1e-6)
    probs = runs[1].trainer.predict(x[:5], verbose=0)  # the whole model, images in
    torch.testing.assert_close(torch.as_tensor(probs).sum(-1), torch.ones(5))


@pytest.mark.parametrize("layout", ["NHW", "NHWC"])
def test_augment_sees_nchw_images_whatever_the_input_layout(layout):
    x, y = _data(32)
    img = x[:, 0] if layout == "NHW" else x.permute(0, 2, 3, 1)
    seen = []

    def spy(xb, generator=None):
        seen.append(tuple(xb.shape))
        return xb.flip(-1)

    b, h = _backbone(), _head()
    finetune(b, h, img, y, epochs=(1, 0), augment=spy, batch_size=16, seed=0, verbose=0)
    assert seen and all(s == (16, 1, 8, 8) for s in seen)


def test_head_only_result_trainer_takes_images():
    x, y = _data(32)
    r = finetune(_backbone(), _head(), x, y, epochs=(1, 0), batch_size=16, seed=0, verbose=0)
    assert r.trainer.module is r.model
    torch.testing.assert_close(torch.as_tensor(r.trainer.predict(x[:4], verbose=0)),
                               r.model(x[:4]).detach(), rtol=1e-5, atol=1e-6)


def test_blocks_of_pretrained_families():
    from brisk import applications

    lite = applications.get("efficientnet_lite0", include_top=False, pooling="avg")
    names = {id(m): n for n, m in lite.named_modules()}
    got = [names[id(b)] for b in blocks(lite)]
    assert len(got) == 20 and got[:3] == ["model.conv_stem", "model.bn1", "model.blocks.0.0"]
    assert got[-3:] == ["model.blocks.6.0", "model.conv_head", "model.bn2"]  # 6.0 whole
    vit = applications.get("vit_b_16", weights=None, include_top=False, pooling="avg")
    names = {id(m): n for n, m in vit.named_modules()}
    got = [names[id(b)] for b in blocks(vit)]
    assert len(got) == 14 and got[1] == "model.encoder.layers.encoder_layer_0"
    mob = applications.get("mobilenet_v3_small", weights=None, include_top=False)
    assert len(blocks(mob)) == 13  # inverted residuals whole, not their conv layers
