"""Spec 5.1: the crop kernel of a relabel stream (ladd_format.torch.stream_crops).

crop_batch against a per-record torch interpolate(antialias=True) of the crop (growing, shrinking and
mixed boxes, any aspect), its determinism (same bits twice, whatever else is in the batch), flip and
mix; pil_crop_batch against torchvision's resized_crop on a PIL image, bit for bit; and the distance
between the two paths that docs/relabel.md states.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TVF

from ladd_format.torch.stream_crops import axis_weights, crop_batch, pil_crop_batch, source_floats

#: crop_batch vs a per-record F.interpolate(antialias=True), on 0..1 values (float32 rounding only)
TOLERANCE = 2e-6


def _boxes(rng, n, height, width, low=1):
    h = rng.integers(low, height + 1, n)
    w = rng.integers(low, width + 1, n)
    return np.stack([rng.integers(0, height - h + 1), rng.integers(0, width - w + 1), h, w], 1)


def _reference(sources, box, flip, size):
    """Per record: torch's own antialiased bilinear resize of the crop, then the flip."""
    out = []
    for r, (t, l, h, w) in enumerate(box.tolist()):
        crop = F.interpolate(sources[r:r + 1, :, t:t + h, l:l + w].float(), size=size, mode="bilinear",
                             align_corners=False, antialias=True)[0]
        out.append(crop.flip(-1) if flip[r] else crop)
    return torch.stack(out)


def _natural(height=96, width=128, seed=0):
    """A natural-looking uint8 RGB image: scikit-learn's bundled photograph when present (offline),
    else smoothed noise with edges."""
    try:
        from sklearn.datasets import load_sample_image
        photo = load_sample_image("china.jpg")
        return np.ascontiguousarray(photo[100:100 + height * 2:2, 100:100 + width * 2:2].transpose(2, 0, 1))
    except Exception:  # noqa: BLE001 - the sample images are optional (scikit-learn missing or stripped)
        rng = np.random.default_rng(seed)
        base = rng.random((3, height // 8, width // 8))
        big = torch.nn.functional.interpolate(torch.from_numpy(base)[None], size=(height, width), mode="bicubic")[0]
        return (big.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def test_axis_weights_equal_torch_kernel_weights():
    # the weights torch applies, read off by resizing the identity: equal to the last bit
    for length in (1, 3, 16, 31, 100, 224):
        for out in (1, 5, 16, 33, 224):
            eye = torch.eye(length).view(1, length, 1, length)
            ref = F.interpolate(eye, size=(1, out), mode="bilinear", align_corners=False, antialias=True)
            ref = ref[0, :, 0, :].T.numpy()
            first, w = axis_weights(length, out)
            mine = np.zeros((out, length), np.float32)
            for o in range(out):
                for j in range(w.shape[1]):
                    if first[o] + j < length:
                        mine[o, first[o] + j] = w[o, j]
                    else:
                        assert w[o, j] == 0
            np.testing.assert_array_equal(mine, ref)


@pytest.mark.parametrize("case", ["grow", "shrink", "mixed", "thin"])
def test_crop_batch_matches_interpolate_antialias(case):
    rng = np.random.default_rng(["grow", "shrink", "mixed", "thin"].index(case))
    n, height, width = 24, 40, 56
    sources = torch.from_numpy(rng.random((n, 3, height, width), dtype=np.float32))
    size = {"grow": (64, 72), "shrink": (12, 9), "mixed": (30, 30), "thin": (7, 50)}[case]
    box = _boxes(rng, n, height, width)
    if case == "grow":
        box = _boxes(rng, n, min(height, 30), min(width, 30))
    flip = rng.random(n) < 0.5
    out = crop_batch(sources, box, flip, size)
    assert out.shape == (n, 3, *size) and out.dtype == torch.float32
    assert (out - _reference(sources, box, flip, size)).abs().max().item() <= TOLERANCE


def test_crop_batch_deterministic_and_independent_of_the_batch():
    rng = np.random.default_rng(3)
    sources = torch.from_numpy(rng.random((16, 3, 50, 50), dtype=np.float32))
    box = _boxes(rng, 16, 50, 50)
    flip = rng.random(16) < 0.5
    first = crop_batch(sources, box, flip, (32, 32))
    assert torch.equal(first, crop_batch(sources, box, flip, (32, 32)))
    for r in (0, 7, 15):       # a record alone (other filter widths in the batch or none) gives the same bits
        alone = crop_batch(sources[r:r + 1], box[r:r + 1], flip[r:r + 1], (32, 32))
        assert torch.equal(alone[0], first[r])
    order = rng.permutation(16)
    assert torch.equal(crop_batch(sources[order], box[order], flip[order], (32, 32)), first[order])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.equal(crop_batch(sources, box, flip, (32, 32)), first)
    finally:
        torch.set_num_threads(threads)


def test_uint8_source_floats_and_normalised_values():
    images = np.arange(2 * 3 * 8 * 8, dtype=np.int64).reshape(2, 3, 8, 8).astype(np.uint8)
    x = source_floats(images)
    assert x.dtype == torch.float32 and torch.equal(x, torch.from_numpy(images).float() / 255)
    box = np.array([[0, 0, 8, 8], [2, 1, 5, 6]])
    mean = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    a = (crop_batch(x, box, [0, 1], (6, 6)) - mean) / std
    b = crop_batch((x - mean) / std, box, [0, 1], (6, 6))
    assert (a - b).abs().max().item() <= 1e-5     # the kernel commutes with 4.4's normalisation


def test_flip_and_mix():
    rng = np.random.default_rng(4)
    sources = torch.from_numpy(rng.random((4, 3, 20, 20), dtype=np.float32))
    box = _boxes(rng, 4, 20, 20)
    plain = crop_batch(sources, box, [0, 0, 0, 0], (10, 12))
    flipped = crop_batch(sources, box, [1, 0, 1, 0], (10, 12))
    assert torch.equal(flipped[0], plain[0].flip(-1)) and torch.equal(flipped[1], plain[1])
    partner = np.array([1, 0, 3, 2])
    cut = crop_batch(sources, box, [1, 0, 1, 0], (10, 12), mix="cutmix", mix_partner=partner,
                     mix_box=np.array([2, 3, 4, 5]))
    expect = flipped.clone()
    expect[:, :, 2:6, 3:8] = flipped[partner][:, :, 2:6, 3:8]
    assert torch.equal(cut, expect)
    empty = crop_batch(sources, box, [1, 0, 1, 0], (10, 12), mix="cutmix", mix_partner=partner,
                       mix_box=np.array([0, 0, 0, 5]))
    assert torch.equal(empty, flipped)                          # an empty box mixes nothing
    lam = np.float32(0.3)
    up = crop_batch(sources, box, [1, 0, 1, 0], (10, 12), mix="mixup", mix_partner=partner, mix_lambda=lam)
    assert torch.equal(up, flipped * torch.tensor(lam) + flipped[partner] * torch.tensor(np.float32(1) - lam))
    identity = crop_batch(sources, box, [1, 0, 1, 0], (10, 12), mix="mixup", mix_partner=partner, mix_lambda=1.0)
    assert torch.equal(identity, flipped)


@pytest.mark.parametrize("bad", [
    dict(box=[[0, 0, 0, 4]]), dict(box=[[0, 0, 5, 4]]), dict(box=[[-1, 0, 2, 2]]), dict(box=[[0.0, 0, 2, 2]]),
    dict(flip=[2]), dict(crop_size=(0, 4)), dict(mix="cutmix", mix_partner=[1], mix_box=[0, 0, 2, 2]),
    dict(mix="cutmix", mix_partner=[0], mix_box=[0, 0, 5, 2]), dict(mix="mixup", mix_partner=[0], mix_lambda=1.5),
    dict(mix="mixup", mix_partner=[0], mix_lambda=float("nan")), dict(mix="shuffle"),
])
def test_bad_arguments_are_refused(bad):
    args = dict(box=[[0, 0, 2, 2]], flip=[0], crop_size=(4, 4))
    args.update(bad)
    with pytest.raises(ValueError):
        crop_batch(torch.zeros(1, 3, 4, 4), args.pop("box"), args.pop("flip"), args.pop("crop_size"), **args)


@pytest.mark.parametrize("channels", [1, 3])
def test_pil_path_equals_torchvision_resized_crop_on_pil(channels):
    rng = np.random.default_rng(channels)
    image = _natural()[:channels]
    n = 12
    box = _boxes(rng, n, image.shape[1], image.shape[2], low=4)
    flip = rng.random(n) < 0.5
    out = pil_crop_batch(np.repeat(image[None], n, 0), box, flip, (56, 64))
    pil = Image.fromarray(image[0] if channels == 1 else image.transpose(1, 2, 0))
    for r, (t, l, h, w) in enumerate(box.tolist()):
        ref = TVF.to_tensor(TVF.resized_crop(pil, t, l, h, w, [56, 64], interpolation=InterpolationMode.BILINEAR))
        if flip[r]:
            ref = ref.flip(-1)
        assert torch.equal(out[r], ref)


def test_pil_path_and_kernel_are_close_on_a_natural_image():
    # docs/relabel.md states these bounds: Pillow's uint8 rounding and fixed-point weights only
    rng = np.random.default_rng(5)
    image = _natural()
    n = 32
    box = _boxes(rng, n, image.shape[1], image.shape[2], low=24)
    flip = rng.random(n) < 0.5
    sources = np.repeat(image[None], n, 0)
    diff = (pil_crop_batch(sources, box, flip, (64, 64)) - crop_batch(source_floats(sources), box, flip, (64, 64)))
    diff = diff.abs()
    assert diff.mean().item() < 0.5 / 255        # measured 0.30/255 here, 0.27/255 on 224 px photographs
    assert diff.max().item() < 1.01 / 255        # one uint8 step (Pillow rounds its result to uint8)


def test_pil_path_refuses_float_images():
    with pytest.raises(ValueError):
        pil_crop_batch(np.zeros((1, 3, 4, 4), np.float32), [[0, 0, 2, 2]], [0], (4, 4))


def test_chunked_resize_gives_the_same_bits(monkeypatch):
    from ladd_format.torch import stream_crops
    rng = np.random.default_rng(6)
    sources = torch.from_numpy(rng.random((9, 3, 30, 30), dtype=np.float32))
    box = _boxes(rng, 9, 30, 30)
    flip = rng.random(9) < 0.5
    whole = crop_batch(sources, box, flip, (20, 24), mix="mixup", mix_partner=rng.permutation(9), mix_lambda=0.25)
    monkeypatch.setattr(stream_crops, "CHUNK_BYTES", 2 * 3 * 30 * 30 * 4)      # two records per chunk
    assert stream_crops.records_per_chunk((3, 30, 30), "cpu") == 2
    rng = np.random.default_rng(6)
    rng.random((9, 3, 30, 30), dtype=np.float32)
    _boxes(rng, 9, 30, 30)
    rng.random(9)
    assert torch.equal(crop_batch(sources, box, flip, (20, 24), mix="mixup", mix_partner=rng.permutation(9),
                                  mix_lambda=0.25), whole)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_gives_the_cpu_bits():
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (12, 3, 40, 48), dtype=np.uint8)
    box = _boxes(rng, 12, 40, 48)
    flip = rng.random(12) < 0.5
    for mix, extra in (("none", {}), ("cutmix", dict(mix_partner=rng.permutation(12), mix_box=[1, 2, 10, 12])),
                       ("mixup", dict(mix_partner=rng.permutation(12), mix_lambda=0.37))):
        cpu = crop_batch(source_floats(images), box, flip, (32, 36), mix=mix, **extra)
        gpu = crop_batch(source_floats(torch.from_numpy(images).cuda()), box, flip, (32, 36), mix=mix, **extra)
        assert torch.equal(gpu.cpu(), cpu)
