"""The architecture registry: ConvNets and the small-image (-cifar) students of the cross-arch protocol."""

import pytest
import torch

from ladd_format.torch.augmentation import random_zoom
from ladd_format.torch.models import build_model, model_names

CIFAR = ["alexnet-cifar", "vgg11-cifar", "resnet18-cifar", "vit-cifar"]


@pytest.mark.parametrize("name", CIFAR)
def test_small_image_students_train_at_32px(name):
    torch.manual_seed(0)
    kw = {"width": 48, "depth": 2} if name == "vit-cifar" else {"width": 8}
    model = build_model(name, num_classes=7, image_size=32, **kw)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 7, (4,))
    out = model(x)
    assert out.shape == (4, 7)
    torch.nn.functional.cross_entropy(out, y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_width_scales_the_model():
    small = sum(p.numel() for p in build_model("resnet18-cifar", 10, width=8).parameters())
    large = sum(p.numel() for p in build_model("resnet18-cifar", 10, width=16).parameters())
    assert 3.5 < large / small < 4.1                          # convolutions grow with width squared


def test_registry_names_the_students():
    assert set(CIFAR) <= set(model_names())


@pytest.mark.parametrize("name,size,match", [("vgg11-cifar", 16, "too small"), ("alexnet-cifar", 4, "too small"),
                                             ("vit-cifar", 30, "patch size")])
def test_sizes_an_architecture_cannot_take_are_refused(name, size, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, 10, image_size=size)


def test_random_zoom_identity_crops_and_flips():
    x = torch.rand(3, 3, 12, 12)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(random_zoom(x, g, 1.0, 1.0), x, atol=1e-6)             # full view: unchanged
    flipped = random_zoom(x, torch.Generator().manual_seed(1), 1.0, 1.0, flip=True)
    assert all(torch.allclose(f, i, atol=1e-6) or torch.allclose(f, i.flip(-1), atol=1e-6)
               for f, i in zip(flipped, x))
    zoomed = random_zoom(x, g, 0.5, 0.5)
    assert zoomed.shape == x.shape and not torch.allclose(zoomed, x, atol=1e-3)
    with pytest.raises(ValueError, match="min_scale"):
        random_zoom(x, g, 0.0, 1.0)
