"""Labeler and student architectures, registered by name.

``convnet-d3`` / ``-d4`` / ``-d5``: the ConvNet of the dataset-distillation literature — per block a
3x3 convolution (width 128, padding 1), instance normalisation (affine), ReLU and 2x2 average
pooling; then one linear classifier. Depth 3 suits 32 px images, 4 suits 64 px, 5 suits 128 px.

The cross-architecture protocol of the paper (AlexNet, VGG11, ResNet18, ViT) needs students that
take small images; torchvision's ImageNet versions downsample 32 px inputs to almost nothing. The
``-cifar`` variants are the usual small-image adaptations, each with a ``width`` keyword so that CPU
runs stay affordable (the defaults are the standard widths):

- ``alexnet-cifar``: five 5x5/3x3 convolutions (widths w, 1.5w, 2w, 1.5w, 1.5w; w = 128), ReLU,
  2x2 max pooling after the 1st, 2nd and 5th, no normalisation, one linear classifier;
- ``vgg11-cifar``: VGG-11's eight 3x3 convolutions (w, M, 2w, M, 4w, 4w, M, 8w, 8w, M, 8w, 8w, M;
  w = 64) with instance normalisation, global average pooling, one linear classifier;
- ``resnet18-cifar``: ResNet-18 (four stages of two basic blocks, widths w..8w, w = 64) with a 3x3
  stride-1 stem and no max pooling, instance normalisation, global average pooling;
- ``vit-cifar``: torchvision's VisionTransformer with 4x4 patches, ``depth`` 6 blocks, ``width``
  192, 3 heads, MLP 2x width.

Instance normalisation (GroupNorm with one group per channel) follows the ConvNet: the statistics of
a batch do not depend on how many of its items are sub-images.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn
    return wrap


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def torchvision_names() -> list[str]:
    """Classification architectures of torchvision (built untrained: nothing is downloaded)."""
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def build_model(name: str, num_classes: int, channels: int = 3, image_size: int = 32, **kwargs) -> nn.Module:
    """Build an architecture by name with its head sized to ``num_classes``, randomly initialised.

    Names: the registered ConvNets (``convnet-d3/-d4/-d5``, keyword ``width``), or any torchvision
    classifier (``resnet18``, ``alexnet``, ``vgg11``, ...; 3 channels). The model is checked with
    one forward pass at ``image_size`` so an architecture that cannot take that size fails here.
    """
    if name in _REGISTRY:
        model = _REGISTRY[name](num_classes=num_classes, channels=channels, image_size=image_size, **kwargs)
    elif name in torchvision_names():
        if channels != 3:
            raise ValueError(f"torchvision architecture {name!r} takes 3 channels, the images have {channels}")
        import torchvision.models as tvm

        model = tvm.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    else:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(model_names())} and the torchvision "
                         "classifiers (e.g. resnet18, alexnet, vgg11)")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, image_size, image_size))
    except RuntimeError as exc:
        raise ValueError(f"architecture {name!r} cannot take {image_size}x{image_size} images: "
                         f"{str(exc).splitlines()[0]}") from None
    return model.train(was_training)


class ConvNet(nn.Module):
    """ConvNet-D{depth}: (conv3x3 -> InstanceNorm(affine) -> ReLU -> AvgPool2) x depth -> Linear."""

    def __init__(self, num_classes: int, channels: int = 3, image_size: int = 32, depth: int = 3,
                 width: int = 128):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch, side = channels, image_size
        for _ in range(depth):
            layers += [nn.Conv2d(in_ch, width, 3, padding=1),
                       nn.GroupNorm(width, width, affine=True),  # = instance norm with affine
                       nn.ReLU(inplace=True), nn.AvgPool2d(2)]
            in_ch, side = width, side // 2
        if side < 1:
            raise ValueError(f"image size {image_size} is too small for depth {depth}")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


for _depth in (3, 4, 5):
    register_model(f"convnet-d{_depth}")(
        lambda num_classes, channels=3, image_size=32, _d=_depth, **kw: ConvNet(
            num_classes, channels, image_size, depth=_d, **kw))


def _instance_norm(channels: int) -> nn.Module:
    return nn.GroupNorm(channels, channels, affine=True)


class AlexNetSmall(nn.Module):
    def __init__(self, num_classes: int, channels: int = 3, image_size: int = 32, width: int = 128):
        super().__init__()
        w1, w2, w3 = width, width * 3 // 2, width * 2
        self.features = nn.Sequential(
            nn.Conv2d(channels, w1, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(w1, w2, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(w2, w3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w3, w2, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w2, w2, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        side = image_size // 8
        if side < 1:
            raise ValueError(f"image size {image_size} is too small for alexnet-cifar (needs >= 8)")
        self.classifier = nn.Linear(w2 * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class VGG11Small(nn.Module):
    PLAN = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")

    def __init__(self, num_classes: int, channels: int = 3, image_size: int = 32, width: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = channels
        for item in self.PLAN:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(in_ch, item * width, 3, padding=1), _instance_norm(item * width),
                           nn.ReLU(inplace=True)]
                in_ch = item * width
        if image_size < 32:
            raise ValueError(f"image size {image_size} is too small for vgg11-cifar (needs >= 32)")
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False), _instance_norm(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), _instance_norm(out_ch))
        self.shortcut = (nn.Identity() if stride == 1 and in_ch == out_ch else
                         nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                       _instance_norm(out_ch)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18Small(nn.Module):
    def __init__(self, num_classes: int, channels: int = 3, image_size: int = 32, width: int = 64):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1, bias=False), _instance_norm(width),
                                   nn.ReLU(inplace=True)]
        in_ch = width
        for stage, mult in enumerate((1, 2, 4, 8)):
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(in_ch, width * mult, stride))
                in_ch = width * mult
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _vit_small(num_classes: int, channels: int = 3, image_size: int = 32, width: int = 192, depth: int = 6,
               heads: int = 3, patch: int = 4) -> nn.Module:
    from torchvision.models import VisionTransformer

    if channels != 3:
        raise ValueError(f"vit-cifar takes 3 channels, the images have {channels}")
    if image_size % patch:
        raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
    return VisionTransformer(image_size=image_size, patch_size=patch, num_layers=depth, num_heads=heads,
                             hidden_dim=width, mlp_dim=2 * width, num_classes=num_classes)


register_model("alexnet-cifar")(AlexNetSmall)
register_model("vgg11-cifar")(VGG11Small)
register_model("resnet18-cifar")(ResNet18Small)
register_model("vit-cifar")(_vit_small)
