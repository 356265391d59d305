"""The paper's Eq. 5, against a hand-written loop over images and sub-images."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from ladd_format.geometry import boxes
from ladd_format.torch import SubSampler, ladd_loss


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 5))


def batch(b=3, side=16, n=3, c=5):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(b, 3, side, side, generator=g)
    labels = torch.randint(0, c, (b,), generator=g)
    dense = torch.softmax(torch.randn(b, n * n, c, generator=g) * 2, -1)
    return images, labels, dense


def hand_loop(model, images, labels, dense, sampler, reduction, weight):
    total_global, total_local = 0.0, 0.0
    for i in range(len(images)):
        total_global = total_global + F.cross_entropy(model(images[i:i + 1]), labels[i:i + 1])
        per_image = 0.0
        for j, (top, left, h, w) in enumerate(sampler.boxes.tolist()):
            sub = TF.resized_crop(images[i:i + 1], top, left, h, w, list(images.shape[-2:]), antialias=True)
            log_p = F.log_softmax(model(sub), -1)[0]
            per_image = per_image - (dense[i, j] * log_p).sum()
        total_local = total_local + (per_image if reduction == "sum" else per_image / sampler.num_sub)
    g, l = total_global / len(images), total_local / len(images)
    return g + weight * l, g, l


@pytest.mark.parametrize("reduction,weight", [("sum", 1.0), ("mean", 0.5)])
def test_equals_hand_written_loop(reduction, weight):
    model = tiny_model()
    images, labels, dense = batch()
    sampler = SubSampler.from_geometry(16, 16, 3, 0.625)
    loss, parts = ladd_loss(model, images, labels, dense, sampler, reduction=reduction, local_weight=weight)
    ref, g, l = hand_loop(model, images, labels, dense, sampler, reduction, weight)
    assert torch.allclose(loss, ref, atol=1e-5)
    assert torch.allclose(parts["global"], g, atol=1e-5) and torch.allclose(parts["local"], l, atol=1e-5)


def test_gradients_flow_to_every_parameter():
    model = tiny_model()
    images, labels, dense = batch()
    loss, _ = ladd_loss(model, images, labels, dense, SubSampler.from_geometry(16, 16, 3, 0.625))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_augment_sees_global_and_local_batches():
    seen = []

    def augment(x):
        seen.append(tuple(x.shape))
        return x.flip(-1)
    images, labels, dense = batch(b=2)
    ladd_loss(tiny_model(), images, labels, dense, SubSampler.from_geometry(16, 16, 3, 0.625), augment=augment)
    assert seen == [(2, 3, 16, 16), (18, 3, 16, 16)]


def test_perfect_local_targets_lower_the_local_term():
    model = tiny_model()
    images, labels, _ = batch()
    sampler = SubSampler.from_geometry(16, 16, 3, 0.625)
    with torch.no_grad():
        own = torch.softmax(model(sampler(images).flatten(0, 1)), -1).view(3, 9, 5)
    _, good = ladd_loss(model, images, labels, own, sampler)
    _, bad = ladd_loss(model, images, labels, torch.roll(own, 1, dims=-1), sampler)
    assert good["local"] < bad["local"]


def test_bad_arguments():
    images, labels, dense = batch()
    sampler = SubSampler.from_geometry(16, 16, 3, 0.625)
    with pytest.raises(ValueError, match="reduction"):
        ladd_loss(tiny_model(), images, labels, dense, sampler, reduction="max")
    with pytest.raises(ValueError, match="N\\*N=9"):
        ladd_loss(tiny_model(), images, labels, dense[:, :4], sampler)


def test_the_local_term_is_averaged_by_default_and_summed_on_request():
    """Default reduction "mean": the local term is the mean over the N*N sub-images; "sum" is N*N
    times it (Eq. 5 literally)."""
    model = tiny_model()
    images, labels, dense = batch()
    sampler = SubSampler.from_geometry(16, 16, 3, 0.625)
    _, default = ladd_loss(model, images, labels, dense, sampler)
    _, mean = ladd_loss(model, images, labels, dense, sampler, reduction="mean")
    _, summed = ladd_loss(model, images, labels, dense, sampler, reduction="sum")
    assert torch.equal(default["local"], mean["local"])
    assert torch.allclose(summed["local"], 9 * mean["local"], rtol=1e-5)


def position_model():
    """A model whose logits depend on where every pixel is (no pooling): a linear map of the flat
    image, with weights large enough that moving a crop by one pixel moves the loss by far more than
    float32 rounding."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 5))
    with torch.no_grad():
        model[1].weight.normal_(0, 0.3)
    return model.double()


@pytest.mark.parametrize("reduction,weight", [("sum", 1.0), ("mean", 1.0), ("mean", 0.25)])
def test_equals_hand_loop_with_a_model_that_sees_crop_positions(reduction, weight):
    """Eq. 5 against a hand loop over images and sub-images whose crops come from torchvision's
    resized_crop, in float64 with a tolerance of 1e-9 relative; the same hand loop with top and left
    swapped, or with the sum and the mean exchanged, differs by far more than that tolerance."""
    model = position_model()
    images, labels, dense = batch()
    images, dense = images.double(), dense.double()
    sampler = SubSampler.from_geometry(16, 16, 3, 0.625)
    loss, parts = ladd_loss(model, images, labels, dense, sampler, reduction=reduction, local_weight=weight)
    ref, g, l = hand_loop(model, images, labels, dense, sampler, reduction, weight)
    assert torch.allclose(loss, ref, rtol=1e-9, atol=0)
    assert torch.allclose(parts["global"], g, rtol=1e-9, atol=0) and torch.allclose(parts["local"], l, rtol=1e-9, atol=0)
    swapped = SubSampler(sampler.boxes[:, [1, 0, 3, 2]], (16, 16))
    other, _, _ = hand_loop(model, images, labels, dense, swapped, reduction, weight)
    assert abs(float((other - ref).detach())) > 1e-3 * abs(float(ref.detach()))
    flipped, _, _ = hand_loop(model, images, labels, dense, sampler, "mean" if reduction == "sum" else "sum", weight)
    assert abs(float((flipped - ref).detach())) > 1e-2 * abs(float(ref.detach()))


def test_non_square_images_keep_their_height_and_width():
    """On 16x24 images every sub-image is resized back to 16x24 (height first), as torchvision's
    resized_crop gives it; a linear model of the flat image only accepts that shape."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 24, 5)).double()
    g = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, 16, 24, generator=g, dtype=torch.float64)
    labels = torch.tensor([1, 3])
    dense = torch.softmax(torch.randn(2, 9, 5, generator=g, dtype=torch.float64), -1)
    sampler = SubSampler.from_geometry(16, 24, 3, 0.625)
    assert sampler.boxes.tolist()[1] == [0, 5, 10, 15]        # crops 10x15; left floor(9/2 + 0.5) = 5
    loss, _ = ladd_loss(model, images, labels, dense, sampler)
    ref, _, _ = hand_loop(model, images, labels, dense, sampler, "mean", 1.0)
    assert torch.allclose(loss, ref, rtol=1e-9, atol=0)


def test_soft_cross_entropy_is_per_row_on_the_last_axis_of_any_rank():
    """(B, N, C) logits: each of the B*N rows is its own distribution (the last axis), by hand."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    target = torch.softmax(torch.randn(2, 3, 5, generator=g, dtype=torch.float64), -1)
    from ladd_format.torch.loss import soft_cross_entropy
    out = soft_cross_entropy(logits, target)
    assert out.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            z = logits[i, j]
            log_p = z - torch.log(torch.exp(z).sum())
            assert out[i, j].item() == pytest.approx(-(target[i, j] * log_p).sum().item(), rel=1e-12)


def test_the_loss_keeps_the_model_dtype_when_the_labels_are_float32():
    """A bfloat16 student with float32 dense labels (as the loader gives them): the labels follow the
    sub-images' dtype, so no term is promoted to float32."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).to(torch.bfloat16)
    images, labels, dense = batch(b=2, side=8, n=2)
    loss, terms = ladd_loss(model, images.to(torch.bfloat16), labels, dense, SubSampler(boxes(8, 8, 2, 0.625), (8, 8)))
    assert dense.dtype == torch.float32
    assert loss.dtype == terms["local"].dtype == terms["global"].dtype == torch.bfloat16
