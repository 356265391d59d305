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


def test_refusals_say_exactly_what_is_wrong():
    images = torch.zeros(1, 3, 8, 8)
    cases = [((torch.zeros(3, 8, 8), [[0, 0, 8, 8]]), "images must be (B, K, H, W), got shape (3, 8, 8)"),
             ((images, [[0, 0, 8, 8, 1]]), "boxes must be (P, 4), got shape (1, 5)"),
             ((images, [0, 0, 8, 8]), "boxes must be (P, 4), got shape (4,)")]
    # one bad value at a time: each of the six bounds on its own
    for box in ([-1, 0, 4, 4], [0, -1, 4, 4], [0, 0, 0, 4], [0, 0, 4, 0], [5, 0, 4, 4], [0, 5, 4, 4]):
        cases.append(((images, [[0, 0, 8, 8], box]), "boxes must lie inside the 8x8 images"))
    for args, message in cases:
        with pytest.raises(ValueError) as e:
            subimages(*args)
        assert str(e.value) == message, args
    with pytest.raises(TypeError) as e:                               # 7.5 is no pixel edge: refused, not cut
        subimages(images, [[0.0, 0.0, 7.5, 8.0]])
    assert str(e.value) == "boxes must be integers (spec 5), got float64"
    # the same boxes as int32, int64, a list or a CPU tensor give the same sub-images
    b = boxes(8, 8, 2, 0.625)
    ref = subimages(torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), b)
    for form in (b.astype(np.int64), b.tolist(), torch.from_numpy(b.astype(np.int64))):
        got = subimages(torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), form)
        assert torch.equal(got, ref)


def test_antialias_only_when_an_axis_shrinks():
    from ladd_format.torch.subimages import needs_antialias
    assert needs_antialias((8, 8), (8, 8)) is False            # equal: no axis shrinks
    assert needs_antialias((9, 8), (8, 8)) is True
    assert needs_antialias((8, 9), (8, 8)) is True
    assert needs_antialias((5, 8), (8, 8)) is False            # upsampling only
    assert needs_antialias((9, 4), (10, 4)) is False           # each axis against its own output side
    assert needs_antialias((4, 9), (4, 10)) is False
