"""The architecture registry: ConvNets and the small-image (-cifar) students of the cross-arch protocol."""

import pytest
import torch

from ladd_format.torch.random_zoom import random_zoom
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


def test_random_zoom_flips_about_half_and_never_without_flip():
    """With flip=True each view is mirrored with probability 1/2: over 400 full views the count of
    mirrored ones lies within 4.5 standard deviations (+-45) of 200; without flip none is."""
    x = torch.rand(400, 3, 12, 12)
    flipped = random_zoom(x, torch.Generator().manual_seed(3), 1.0, 1.0, flip=True)
    mirrored = [bool(torch.allclose(f, i.flip(-1), atol=1e-6)) for f, i in zip(flipped, x)]
    kept = [bool(torch.allclose(f, i, atol=1e-6)) for f, i in zip(flipped, x)]
    assert all(m != k for m, k in zip(mirrored, kept))          # each view is one or the other
    assert 155 <= sum(mirrored) <= 245
    plain = random_zoom(x, torch.Generator().manual_seed(3), 1.0, 1.0, flip=False)
    assert torch.allclose(plain, x, atol=1e-6)


def test_random_zoom_changes_its_input():
    """A zoom of 0.8-1 with a random shift crops another view: nearly every output differs from its
    input by a visible amount (a view at scale ~1 and no shift may not), and an identity "zoom" would
    change none."""
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 4:12, 4:12] = 1.0                                    # a bright square with sharp edges
    y = random_zoom(x, torch.Generator().manual_seed(0), 0.8, 1.0)
    change = (y - x).abs().amax(dim=(1, 2, 3))
    assert (change > 0.1).float().mean() > 0.9 and float(change.mean()) > 0.3
