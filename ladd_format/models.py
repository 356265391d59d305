"""Labeler and student architectures, registered by name.

``convnet-d3`` / ``-d4`` / ``-d5``: the ConvNet of the dataset-distillation literature — per block a
3x3 convolution (width 128, padding 1), instance normalisation (affine), ReLU and 2x2 average
pooling; then one linear classifier. Depth 3 suits 32 px images, 4 suits 64 px, 5 suits 128 px.
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
