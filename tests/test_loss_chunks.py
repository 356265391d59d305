"""ladd_loss in chunks of views (checkpointed): the same loss and gradients as the whole batch,
a bounded number of views per forward pass, and the automatic chunk within its memory budget."""

import pytest
import torch
from torch import nn

from ladd_format.torch import SubSampler, ladd_loss
from ladd_format.torch.random_zoom import random_zoom, warp, zoom_thetas
from ladd_format.torch.loss import CHUNK_BUDGET_BYTES, auto_chunk, view_bytes
from ladd_format.torch.models import build_model

#: float32 sums in another order: gradients agree to this relative tolerance (and absolutely near 0)
RTOL, ATOL = 1e-4, 1e-6


def tiny_model(batch_norm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(4) if batch_norm else nn.GroupNorm(4, 4)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), norm, nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 5))


def batch(b=5, side=16, n=3, c=5):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(b, 3, side, side, generator=g)
    labels = torch.randint(0, c, (b,), generator=g)
    dense = torch.softmax(torch.randn(b, n * n, c, generator=g) * 2, -1)
    return images, labels, dense, SubSampler.from_geometry(side, side, n, 0.625)


class SplitZoom:
    """random_zoom with the draw/apply split ladd_loss uses to augment a chunk at a time."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, x):
        return random_zoom(x, self.gen, 0.8, 1.0, True)

    def draw(self, n):
        return zoom_thetas(n, self.gen, 0.8, 1.0, True)

    def apply(self, x, theta):
        return warp(x, theta)


class PlainZoom:
    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, x):
        return random_zoom(x, self.gen, 0.8, 1.0, True)


def gradients(sub_chunk, augment=None, reduction="mean", image_grad=False, batch_norm=False):
    model = tiny_model(batch_norm)
    images, labels, dense, sampler = batch()
    images.requires_grad_(image_grad)
    loss, parts = ladd_loss(model, images, labels, dense, sampler, reduction=reduction, local_weight=0.7,
                            augment=augment, sub_chunk=sub_chunk)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()] + ([images.grad.clone()] if image_grad else [])
    return loss.detach(), parts, grads


def assert_same(a, b):
    (loss_a, parts_a, grads_a), (loss_b, parts_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, rtol=RTOL, atol=ATOL)
    for key in ("global", "local"):
        torch.testing.assert_close(parts_a[key], parts_b[key], rtol=RTOL, atol=ATOL)
    assert len(grads_a) == len(grads_b)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, rtol=RTOL, atol=ATOL)


# 5 images x (9 + 1) views: 7 and 13 divide neither 5 nor 45; 9 is one image's sub-images; 1 is a view a pass
@pytest.mark.parametrize("chunk", [1, 7, 9, 13, 44])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_chunked_gradients_equal_the_whole_batch(chunk, reduction):
    assert_same(gradients(chunk, reduction=reduction), gradients(0, reduction=reduction))


@pytest.mark.parametrize("chunk", [4, 11])
@pytest.mark.parametrize("augment", [SplitZoom, PlainZoom])
def test_random_augmentation_gives_the_same_views_chunked(chunk, augment):
    """The same draws whether chunked or not: a split augmentation draws the batch's parameters once
    (and the backward pass's second run reuses them), a plain one is applied to the whole batch."""
    assert_same(gradients(chunk, augment(3)), gradients(0, augment(3)))


def test_split_augmentation_draws_as_the_plain_one():
    x = torch.randn(6, 3, 16, 16)
    torch.testing.assert_close(SplitZoom(5).apply(x, SplitZoom(5).draw(6)), PlainZoom(5)(x), rtol=0, atol=0)


def test_gradients_reach_the_images_through_chunks():
    """A distillation method that learns the images gets the same image gradients."""
    assert_same(gradients(6, SplitZoom(2), image_grad=True), gradients(0, SplitZoom(2), image_grad=True))


def test_no_forward_pass_sees_more_views_than_the_chunk():
    model = tiny_model()
    sizes = []
    model.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    images, labels, dense, sampler = batch()
    loss, _ = ladd_loss(model, images, labels, dense, sampler, sub_chunk=7)
    loss.backward()
    assert max(sizes) <= 7
    assert sum(sizes) == 2 * 5 * 10          # every view once forward, once again in the backward pass


@pytest.mark.parametrize("start,stop", [(0, 45), (0, 1), (3, 12), (8, 9), (9, 27), (10, 44), (44, 45)])
def test_subsampler_rows_are_a_slice_of_the_whole(start, stop):
    images, _, _, sampler = batch()
    torch.testing.assert_close(sampler.rows(images, start, stop), sampler(images).flatten(0, 1)[start:stop],
                               rtol=0, atol=0)


def test_auto_chunk_fits_the_budget_at_128px():
    """The default student at 128 px: 35 MiB of activations a view, so a README batch of 64 images
    (64 x 26 views, 57 GB at once) is chunked, each chunk within CHUNK_BUDGET_BYTES."""
    model = build_model("convnet-d3", num_classes=10, channels=3, image_size=128)
    chunk = auto_chunk(model, (3, 128, 128))
    per_view = view_bytes(model, (3, 128, 128))
    assert 20 << 20 < per_view < 60 << 20
    assert 1 <= chunk and chunk * per_view <= CHUNK_BUDGET_BYTES
    assert chunk < 64 * 26


def test_auto_chunk_leaves_the_rng_alone():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 8 * 8, 4))
    torch.manual_seed(3)
    before = torch.get_rng_state()
    auto_chunk(model, (3, 8, 8))
    assert torch.equal(torch.get_rng_state(), before)


def test_batch_norm_is_not_chunked_automatically():
    model = tiny_model(batch_norm=True)
    assert auto_chunk(model, (3, 16, 16)) == 0
    assert auto_chunk(model.eval(), (3, 16, 16)) > 0
    assert_same(gradients(None, batch_norm=True), gradients(0, batch_norm=True))


def test_batch_norm_running_statistics_are_updated_once_per_chunk():
    """An explicit chunk with BatchNorm: each chunk is a batch for it, counted once although the
    backward pass runs it again."""
    model = tiny_model(batch_norm=True)
    bn = model[1]
    images, labels, dense, sampler = batch()
    loss, _ = ladd_loss(model, images, labels, dense, sampler, sub_chunk=20)
    after_forward = (bn.running_mean.clone(), int(bn.num_batches_tracked))
    loss.backward()
    assert int(bn.num_batches_tracked) == after_forward[1] == 1 + 3    # 5 images in 1 chunk, 45 sub-images in 3
    torch.testing.assert_close(bn.running_mean, after_forward[0], rtol=0, atol=0)


def test_negative_chunk_is_refused():
    images, labels, dense, sampler = batch()
    with pytest.raises(ValueError, match="sub_chunk"):
        ladd_loss(tiny_model(), images, labels, dense, sampler, sub_chunk=-1)


def test_the_readme_quotes_the_memory_benchmark():
    """The *Memory* figures of the README and docs/ (docs/cli.md) are benchmarks/results/ladd_memory.json's (ladd_memory.py), and
    that run met the target: both peaks under 2 GB, gradients equal within 1e-5 of the largest."""
    import json
    import re
    from pathlib import Path

    from ladd_format.torch.loss import CHUNK_BUDGET_BYTES
    root = Path(__file__).resolve().parent.parent
    cases = {c["case"]: c for c in json.loads((root / "benchmarks/results/ladd_memory.json").read_text())["data"]["cases"]}
    loop, ev = cases["loop, batch 64, chunked (default)"], cases["evaluate --mode ladd, chunked (default)"]
    grads = cases["gradients, batch 4: whole vs chunked"]
    assert loop["peak_rss_mb"] < 2000 and ev["peak_rss_mb"] < 2000
    assert grads["max_rel_grad_diff"] < 1e-5
    readme = " ".join(" ".join(path.read_text() for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]).split())
    assert f"the loop of the README peaked at {loop['peak_rss_mb']:,} MB" in readme
    assert f"`ladd evaluate --mode ladd` at {ev['peak_rss_mb']:,} MB" in readme
    assert f"differed by at most {grads['max_abs_grad_diff']:.1e}" in readme
    assert f"at most {CHUNK_BUDGET_BYTES >> 20} MiB" in readme
    asked = re.search(r"tried to allocate ([0-9]+) bytes", cases["loop, batch 64, whole batch (sub_chunk=0)"]["error"])
    assert f"one {int(asked.group(1)) / 1e9:.1f} GB allocation" in readme
