"""Files as upstream code bases write them, rebuilt for the tests (upstream facts: docs/upstream-formats.md).

- :func:`as_numpy1`: a ``torch.save`` zip whose pickle names numpy's scalar reconstructor as numpy 1
  did (``numpy.core.multiarray.scalar``), made from one saved today by renaming that global inside
  ``data.pkl`` (the GLOBAL opcode is newline-terminated text: no length to fix).
- :func:`write_relabel_folder`: an SRe2L relabel folder (``epoch_{e}/batch_{b}.tar``) written the way
  SRe2L's ``generate_soft_label.py`` writes it: torchvision's ``RandomResizedCrop.get_params`` boxes as
  float32 fractions, collated bool flips, ``torch.randperm`` partners, ``np.random.beta`` lambdas, the
  CutMix box as four ``numpy.int64`` from ``np.clip``, float16 logits, one ``BatchSampler(RandomSampler(ds,
  generator=g), B)`` over all epochs; with ``lpld_steps``, LPLD's variant (``drop_last=True``, stopped
  after that many batches, ``sampler_indices_epoch.json``). Given an image tree (``images``) its
  dataset is torchvision's ``ImageFolder`` of that tree, and given a ``teacher`` the logits are the
  teacher's of the crops SRe2L's relabel script makes: ``resized_crop`` of the PIL image (BILINEAR),
  ``hflip``, ``to_tensor``, ``normalize``, CutMix/MixUp on the batch, ``teacher(x).half()``.
  With ``layout="gvbsm"``, G-VBSM's variant (``relabel/generate_soft_label_with_db.py``: ``batch_config
  = [coords, flip, mix_index, mix_lam, mix_bbox, output, index]``, the DataLoader's collated int64
  dataset index appended). With ``layout="edc"``, EDC's ImageNet branches (the same plus ``indices_status``,
  the patch order ``ShufflePatchesWithIndex`` leaves at ``torch.zeros(2, 2).int()`` under
  ``ap_shuffle=False``, collated to int32 (B, 2, 2)); EDC crops the float tensor of ``to_tensor``
  (``resized_crop(..., antialias=True)``), saves the box divided by the sides swapped
  ``(i/W, j/H, h/W, w/H)``, and its ``relabel.sh`` draws scale (0.5, 1).
- :func:`write_sre2l_images`: SRe2L's recovered images, ``new{cls:03d}/class{cls:03d}_id{i:03d}.jpg``
  saved by PIL at its default JPEG quality.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, RandomSampler, default_collate
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms import functional as TF

NUMPY1_SCALAR = b"cnumpy.core.multiarray\nscalar\n"
NUMPY2_SCALAR = b"cnumpy._core.multiarray\nscalar\n"


def pickle_bytes(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith("data.pkl")]
        return zf.read(name)


def as_numpy1(modern: Path, path: Path, expect: int | None = 1) -> Path:
    """``modern`` (a torch.save zip written here) rewritten at ``path`` with numpy 1's scalar global;
    ``expect`` is how often the global must appear (None: any number, zero included)."""
    with zipfile.ZipFile(modern) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            member = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                if expect is not None:
                    assert member.count(NUMPY2_SCALAR) == expect
                member = member.replace(NUMPY2_SCALAR, NUMPY1_SCALAR)
            dst.writestr(info.filename, member)
    return path


def rand_bbox(size, lam, rng: np.random.RandomState):
    """SRe2L's ``rand_bbox``: "W" is size[2] (rows), so the box is (row1, col1, row2, col2) of numpy ints."""
    W, H = size[2], size[3]
    cut_rat = np.sqrt(1.0 - lam)
    cut_w, cut_h = int(W * cut_rat), int(H * cut_rat)
    cx, cy = rng.randint(W), rng.randint(H)
    return [np.clip(cx - cut_w // 2, 0, W), np.clip(cy - cut_h // 2, 0, H),
            np.clip(cx + cut_w // 2, 0, W), np.clip(cy + cut_h // 2, 0, H)]


class _Indices(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


@dataclass
class Written:
    """What :func:`write_relabel_folder` wrote: per (epoch, batch) the saved list, and the truth beside it."""

    root: Path
    sizes: np.ndarray                              # (N, 2) source (H, W) per image
    batches: dict = field(default_factory=dict)    # (e, b) -> the six-element list saved
    pixels: dict = field(default_factory=dict)     # (e, b) -> (b, 4) int (i, j, h, w) from get_params
    orders: list = field(default_factory=list)     # per epoch: the sampler's image order (generation order)


def write_sre2l_images(exp: Path, classes=(0, 1, 2), ipc=4, side=24, seed=0, ids=None) -> list[Path]:
    """SRe2L's recovered images under ``exp`` (uint8 pixels, JPEG at PIL's default quality 75), ``ipc``
    per class numbered 0..ipc-1, or numbered ``ids``; returns the files written."""
    rng = np.random.default_rng(seed)
    written = []
    for cls in classes:
        folder = exp / f"new{cls:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in (range(ipc) if ids is None else ids):
            base = rng.integers(0, 256, size=(3, 3, 3)).astype(np.float64)        # smooth, JPEG-friendly
            pixels = np.kron(base, np.ones((side // 3 + 1, side // 3 + 1, 1)))[:side, :side]
            pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
            path = folder / f"class{cls:03d}_id{i:03d}.jpg"
            Image.fromarray(pixels).save(path)
            written.append(path)
    return written


def sre2l_inputs(pils, slots, boxes, flip, crop, mean, std) -> torch.Tensor:
    """The normalised crops SRe2L's relabel script feeds its teacher (before the mix)."""
    out = []
    for s, (i, j, h, w), f in zip(slots, boxes, flip.tolist()):
        x = TF.resized_crop(pils[s], i, j, h, w, [crop, crop], InterpolationMode.BILINEAR)
        if f:
            x = TF.hflip(x)
        out.append(TF.normalize(TF.to_tensor(x), mean, std))
    return torch.stack(out)


def edc_inputs(pils, slots, boxes, flip, crop, mean, std) -> torch.Tensor:
    """The normalised crops EDC's ImageNet relabel script feeds its teachers (before the mix):
    ``to_tensor`` first, then ``resized_crop`` of the float tensor with antialias, ``hflip``, ``normalize``."""
    out = []
    for s, (i, j, h, w), f in zip(slots, boxes, flip.tolist()):
        x = TF.resized_crop(TF.to_tensor(pils[s]), i, j, h, w, [crop, crop], InterpolationMode.BILINEAR,
                            antialias=True)
        if f:
            x = TF.hflip(x)
        out.append(TF.normalize(x, mean, std))
    return torch.stack(out)


def write_relabel_folder(root: Path, num_images=10, batch_size=4, epochs=3, classes=7, mix="cutmix",
                         numpy1=False, crop=16, seed=0, lpld_steps: int | None = None, images: Path | None = None,
                         teacher=None, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                         sampler_seed=42, layout: str = "sre2l") -> Written:
    """An SRe2L-layout relabel folder at ``root`` (see the module docstring); the sampler is seeded
    ``sampler_seed``. With ``images`` (an image tree) the dataset is its ImageFolder (``num_images``
    ignored); with ``teacher`` (a module) the logits are its, of the crops normalised by ``mean``/``std``.
    ``layout`` "gvbsm" or "edc" writes those variants (module docstring)."""
    assert layout in ("sre2l", "gvbsm", "edc")
    edc = layout == "edc"
    root.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.RandomState(seed)
    pils = None
    if images is not None:
        dataset = ImageFolder(str(images))
        pils = [dataset.loader(path) for path, _ in dataset.samples]
        num_images = len(pils)
        rng.randint(12, 40, size=(num_images, 2))
        sizes = np.array([[im.height, im.width] for im in pils])
    else:
        sizes = rng.randint(12, 40, size=(num_images, 2))
    crop_params = RandomResizedCrop(crop, scale=(0.5, 1.0) if edc else (0.08, 1.0), ratio=(3 / 4, 4 / 3))
    sampler = RandomSampler(_Indices(num_images), generator=torch.Generator().manual_seed(sampler_seed))
    batches = BatchSampler(sampler, batch_size, drop_last=lpld_steps is not None)
    out = Written(root, sizes)
    counter = 0
    run_epochs = epochs if lpld_steps is None else lpld_steps // len(batches) + 1
    json_order: dict[str, list[int]] = {}
    for e in range(run_epochs):
        (root / f"epoch_{e}").mkdir()
        order = []
        for b, slots in enumerate(batches):
            torch.manual_seed(seed * 1000 + e * 100 + b)           # the crops' and flips' global draws
            boxes = [crop_params.get_params(torch.empty(3, *sizes[i]), crop_params.scale, crop_params.ratio)
                     for i in slots]
            rows, cols = (1, 0) if edc else (0, 1)      # EDC divides by img.shape[2] (W) and [1] (H)
            coords = torch.stack([torch.FloatTensor((i / sizes[s][rows], j / sizes[s][cols], h / sizes[s][rows],
                                                     w / sizes[s][cols]))
                                  for s, (i, j, h, w) in zip(slots, boxes)])
            flip = torch.tensor([bool(torch.rand(1) < 0.5) for _ in slots])
            n = len(slots)
            if mix == "cutmix":
                index, lam = torch.randperm(n), rng.beta(1.0, 1.0)
                box = rand_bbox((n, 3, crop, crop), lam, rng)
            elif mix == "mixup":
                index, lam, box = torch.randperm(n), rng.beta(0.8, 0.8), None
            else:
                index = lam = box = None
            logits = (torch.randn(n, classes, generator=gen) * 4).half()
            if teacher is not None:
                x = (edc_inputs if edc else sre2l_inputs)(pils, slots, boxes, flip, crop, mean, std)
                if mix == "cutmix":
                    r1, c1, r2, c2 = (int(v) for v in box)
                    x[:, :, r1:r2, c1:c2] = x[index, :, r1:r2, c1:c2]
                elif mix == "mixup":
                    x = lam * x + (1 - lam) * x[index]
                with torch.no_grad():
                    logits = teacher(x).half()
            saved = [coords, flip, index, lam, box, logits]
            if layout != "sre2l":                               # the DataLoader's collated dataset index
                saved.append(default_collate([int(i) for i in slots]))
            if edc:                                             # indices_status: ap_shuffle=False leaves zeros
                saved.append(default_collate([torch.zeros(2, 2).int() for _ in slots]))
            path = root / f"epoch_{e}" / f"batch_{b}.tar"
            if numpy1:
                modern = path.with_suffix(".numpy2")
                torch.save(saved, modern)
                as_numpy1(modern, path, expect=1 if mix == "cutmix" else 0)
                modern.unlink()
            else:
                torch.save(saved, path)
            out.batches[e, b] = saved
            out.pixels[e, b] = np.array(boxes)
            order += slots
            counter += 1
            if lpld_steps is not None and counter == lpld_steps:
                break
        out.orders.append(np.array(order))
        json_order[str(e)] = order
    if lpld_steps is not None:
        (root / "sampler_indices_epoch.json").write_text(json.dumps(json_order))
    return out
