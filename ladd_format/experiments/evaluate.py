"""The deployment stage (paper Sec. 3.3): train a fresh student on a D or D_LA file, test it.

Modes:
- ``hard``: cross-entropy on the images with their hard labels (the baseline D);
- ``soft``: cross-entropy against the file's global soft labels;
- ``ladd``: the paper's Eq. 5 with the dense labels (:func:`ladd_format.torch.ladd_loss`).

The same augmentation (random scale 0.8-1 and shift, optional horizontal flip; per sample) is
applied in every mode, to the global batch and to the rebuilt sub-images alike. With
``sub_per_image = K`` each step uses K of the N*N sub-images (the same random K for the batch) and
scales the local term by N*N / K, an unbiased estimate of Eq. 5's sum that makes CPU runs
affordable; the default uses all of them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..torch.augmentation import random_zoom
from ..errors import InputError
from ..labeler.sources import Source
from ..torch.device import deterministic_kernels, resolve_device
from ..torch.models import build_model
from ..torch import DLADataset, SubSampler, ladd_loss, soft_cross_entropy

log = logging.getLogger(__name__)
MODES = ("hard", "soft", "ladd")


@dataclass
class EvalConfig:
    arch: str = "convnet-d3"
    arch_kwargs: dict | None = None
    mode: str = "ladd"
    epochs: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    seeds: int = 3
    device: str = "auto"
    flip: bool = False
    sub_per_image: int | None = None
    local_weight: float = 1.0
    reduction: str = "sum"


def random_affine(x: torch.Tensor, generator: torch.Generator, flip: bool) -> torch.Tensor:
    """The students' augmentation: random zoom to 0.8-1 of the view, shift, optional flip."""
    return random_zoom(x, generator, 0.8, 1.0, flip)


def _test_tensors(test: Source, ds: DLADataset, device) -> tuple[torch.Tensor, torch.Tensor]:
    if test.images.shape[1:] != tuple(ds.image_shape):
        raise InputError(f"test images are {test.images.shape[1:]}, the file's images {tuple(ds.image_shape)}")
    if int(test.labels.max()) >= ds.num_classes:
        raise InputError(f"test labels reach {int(test.labels.max())}, the file has {ds.num_classes} classes")
    x = ds.to_float(torch.from_numpy(test.images))
    return x.to(device), torch.from_numpy(test.labels).to(device)


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    model.train()
    return correct / len(x)


@deterministic_kernels
def train_student(ds: DLADataset, config: EvalConfig, seed: int, device) -> torch.nn.Module:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    k, h, w = ds.image_shape
    model = build_model(config.arch, num_classes=ds.num_classes, channels=k, image_size=h,
                        **(config.arch_kwargs or {})).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    items = [ds[i] for i in range(len(ds))]
    images = torch.stack([it[0] for it in items]).to(device)
    labels = torch.tensor([it[1] for it in items], device=device)
    extra = torch.stack([it[2] for it in items]).to(device) if config.mode in ("soft", "ladd") else None
    sampler = ds.sampler if config.mode == "ladd" else None

    def aug(x):
        return random_affine(x, gen, config.flip)

    for _ in range(config.epochs):
        perm = torch.randperm(len(images), generator=gen)
        for start in range(0, len(images), config.batch_size):
            idx = perm[start:start + config.batch_size].to(device)
            x, y = images[idx], labels[idx]
            if config.mode == "hard":
                loss = F.cross_entropy(model(aug(x)), y)
            elif config.mode == "soft":
                loss = soft_cross_entropy(model(aug(x)), extra[idx]).mean()
            else:
                dense, sub, weight = extra[idx], sampler, config.local_weight
                if config.sub_per_image and config.sub_per_image < sampler.num_sub:
                    pick = torch.randperm(sampler.num_sub, generator=gen)[:config.sub_per_image].sort().values
                    sub = SubSampler(sampler.boxes[pick.numpy()], sampler.image_size)
                    dense = dense[:, pick.to(device)]
                    if config.reduction == "sum":
                        weight = weight * sampler.num_sub / config.sub_per_image
                loss, _ = ladd_loss(model, x, y, dense, sub, reduction=config.reduction, local_weight=weight,
                                    augment=aug)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model


def evaluate(path: str | os.PathLike, test: Source, config: EvalConfig = EvalConfig(),
             progress: Callable[[int, int, float], None] | None = None) -> dict:
    """Train ``config.seeds`` students on the file and report their test accuracy (mean, std)."""
    if config.mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {config.mode!r}")
    device = resolve_device(config.device)
    ds = DLADataset(path, dense=config.mode == "ladd", soft_labels=config.mode == "soft", in_memory=True)
    x_test, y_test = _test_tensors(test, ds, device)
    k, h, _ = ds.image_shape
    try:
        build_model(config.arch, num_classes=ds.num_classes, channels=k, image_size=h, **(config.arch_kwargs or {}))
    except (ValueError, TypeError) as exc:
        raise InputError(f"student {config.arch} {config.arch_kwargs or ''}: {exc}".replace(" : ", ": ")) from None
    accs = []
    for seed in range(config.seeds):
        try:
            model = train_student(ds, config, seed, device)
        except ValueError as exc:
            raise InputError(str(exc), path) from None
        accs.append(accuracy(model, x_test, y_test))
        if progress is not None:
            progress(seed + 1, config.seeds, accs[-1])
    return {"file": str(path), "test": test.description, "mode": config.mode, "arch": config.arch,
            "accuracies": accs, "mean": float(np.mean(accs)), "std": float(np.std(accs)),
            "config": {k: v for k, v in asdict(config).items()}}
