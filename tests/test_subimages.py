"""Spec section 5 in torch: the batched crop-and-resize equals torchvision's resized_crop box by box."""

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from ladd_format.geometry import boxes
from ladd_format.torch import subimages


@pytest.mark.parametrize("side", [32, 64, 128, 224])
@pytest.mark.parametrize("n", [1, 3, 5, 7])
def test_matches_torchvision_resized_crop(side, n):
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(side * n))
    b = boxes(side, side, n, 0.625)
    out = subimages(x, b)
    assert out.shape == (2, n * n, 3, side, side)
    for j, (top, left, h, w) in enumerate(b.tolist()):
        ref = TF.resized_crop(x, top, left, h, w, [side, side], antialias=True)
        assert torch.allclose(out[:, j], ref, atol=1e-5)


def test_unequal_crop_sizes_and_output_size():
    x = torch.rand(1, 3, 40, 30)
    b = np.array([[0, 0, 20, 10], [5, 5, 30, 25], [0, 0, 20, 10]])
    out = subimages(x, b, size=(16, 12))
    for j, (top, left, h, w) in enumerate(b.tolist()):
        ref = TF.resized_crop(x, top, left, h, w, [16, 12], antialias=True)
        assert torch.allclose(out[:, j], ref, atol=1e-5)


def test_refuses_boxes_outside_and_integer_images():
    with pytest.raises(ValueError, match="inside"):
        subimages(torch.rand(1, 3, 8, 8), [[0, 0, 9, 8]])
    with pytest.raises(TypeError, match="floating point"):
        subimages(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), [[0, 0, 4, 4]])
