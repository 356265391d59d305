"""Train a labeler g (paper Sec. 3.2): SGD on the source data, a checkpoint per save-epoch.

The paper trains a ConvNet-D5 with SGD (lr 0.01, batch 256) and keeps the early epoch-10
checkpoint, whose soft labels are more informative than a converged model's.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__, atomic
from ..torch.augmentation import random_zoom
from ..errors import InputError, OutputExistsError
from ..pixels import channel_stats, normalize, pixel255_to_pixel01
from ..torch.models import build_model
from ..torch.device import deterministic_kernels, resolve_device
from .checkpoint import save_checkpoint
from .sources import Source

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    arch: str = "convnet-d5"
    arch_kwargs: dict = field(default_factory=dict)   # e.g. {"width": 32} for a small ConvNet
    epochs: int = 50
    save_epochs: tuple[int, ...] = (10, 20, 30, 40, 50)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    val_split: float = 0.1
    flip: bool = False            # random horizontal flips (off: digits are not mirror-symmetric)
    min_crop: float = 1.0         # random square crops of side min_crop..1 of the image, resized back (1 = off)
    device: str = "auto"
    seed: int = 0


def _normalise(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 batch -> the labeler's input (spec 4.4 rules, :mod:`ladd_format.pixels`)."""
    return normalize(pixel255_to_pixel01(batch.float()), mean, std)


@torch.no_grad()
def evaluate(model, images: torch.Tensor, labels: torch.Tensor, mean, std, device, batch_size=512):
    """(accuracy, mean prediction entropy in nats) on uint8 images."""
    model.eval()
    correct, entropy = 0, 0.0
    for start in range(0, len(images), batch_size):
        x = _normalise(images[start:start + batch_size].to(device), mean, std)
        p = torch.softmax(model(x).float(), -1)
        correct += int((p.argmax(-1).cpu() == labels[start:start + batch_size]).sum())
        entropy += float(-(p * torch.log(p.clamp_min(1e-12))).sum(-1).sum())
    model.train()
    n = max(1, len(images))
    return correct / n, entropy / n


def check_output_folder(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """The checkpoint folder: refused when it is not a folder, or holds checkpoints and not ``overwrite``."""
    out = Path(out_dir)
    if os.path.lexists(out) and not out.is_dir():
        raise InputError("is not a folder; the labeler checkpoints are written into a folder", out)
    if out.exists() and any(out.glob("labeler-e*.safetensors")) and not overwrite:
        raise OutputExistsError("already holds labeler checkpoints; pass --force to replace them", out)
    return out


@deterministic_kernels
def train_labeler(source: Source, out_dir: str | os.PathLike, config: TrainConfig = TrainConfig(),
                  overwrite: bool = False, progress: Callable[[int, int, dict], None] | None = None) -> list[dict]:
    """Train on ``source``; save ``labeler-e{epoch:03d}.safetensors`` at each save-epoch into ``out_dir``.

    Returns one record per checkpoint (path, epoch, train/val accuracy, val entropy); also written
    to ``out_dir/metrics.json``.
    """
    out = check_output_folder(out_dir, overwrite)
    bad = [e for e in config.save_epochs if not 1 <= e <= config.epochs]
    if bad:
        raise InputError(f"save-epochs {bad} lie outside 1..{config.epochs}")
    if not 0 < config.min_crop <= 1:
        raise InputError(f"min_crop must lie in (0, 1], got {config.min_crop}")
    if config.batch_size < 1 or config.epochs < 1:
        raise InputError(f"batch_size and epochs must be >= 1, got {config.batch_size} and {config.epochs}")
    if not 0 <= config.val_split < 1:
        raise InputError(f"val_split must lie in [0, 1), got {config.val_split}")
    if source.images.ndim != 4 or source.images.shape[2] != source.images.shape[3]:
        raise InputError(f"training images must be square (M, K, S, S), got {source.images.shape}")
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(source.labels))
    n_val = int(round(config.val_split * len(order)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if len(train_idx) == 0:
        raise InputError(f"no training images left after the validation split ({len(order)} images, "
                         f"val_split {config.val_split})")
    train_x = torch.from_numpy(source.images[train_idx])
    train_y = torch.from_numpy(source.labels[train_idx])
    val_x = torch.from_numpy(source.images[val_idx])
    val_y = torch.from_numpy(source.labels[val_idx])
    mean_arr, std_arr = channel_stats(source.images[train_idx])
    mean_list, std_list = mean_arr.tolist(), std_arr.tolist()
    k, size = source.images.shape[1], source.images.shape[2]
    mean = torch.tensor(mean_list, device=device).view(1, k, 1, 1)
    std = torch.tensor(std_list, device=device).view(1, k, 1, 1)

    try:
        model = build_model(config.arch, num_classes=source.num_classes, channels=k, image_size=size,
                            **config.arch_kwargs).to(device)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    use_amp = device.type == "cuda"
    gen = torch.Generator().manual_seed(config.seed)
    records = []
    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    for epoch in range(1, config.epochs + 1):
        model.train()
        perm = torch.randperm(len(train_idx), generator=gen)
        correct, loss_sum = 0, 0.0
        for step in range(steps_per_epoch):
            idx = perm[step * config.batch_size:(step + 1) * config.batch_size]
            x = _normalise(train_x[idx].to(device, non_blocking=True), mean, std)
            y = train_y[idx].to(device)
            if config.min_crop < 1 or config.flip:
                x = random_zoom(x, gen, config.min_crop, 1.0, config.flip)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += int((logits.argmax(-1) == y).sum())
            loss_sum += float(loss.detach()) * len(idx)
        metrics = {"epoch": epoch, "loss": loss_sum / len(train_idx), "train_accuracy": correct / len(train_idx)}
        if epoch in config.save_epochs:
            metrics["val_accuracy"], metrics["val_entropy"] = evaluate(model, val_x, val_y, mean, std, device)
            meta = {"arch": config.arch, "arch_kwargs": config.arch_kwargs, "num_classes": source.num_classes,
                    "channels": k, "image_size": size, "mean": mean_list, "std": std_list,
                    "class_names": source.class_names, "epoch": epoch, "training_data": source.description,
                    "train_accuracy": metrics["train_accuracy"], "val_accuracy": metrics["val_accuracy"],
                    "val_entropy": metrics["val_entropy"], "seed": config.seed, "tool": f"ladd-format {__version__}",
                    "config": asdict(config)}
            path = save_checkpoint(model, meta, out / f"labeler-e{epoch:03d}.safetensors")
            records.append({"path": str(path), **metrics})
            log.info("epoch %d: saved %s (val accuracy %.3f)", epoch, path, metrics["val_accuracy"])
        if progress is not None:
            progress(epoch, config.epochs, metrics)
    with atomic.replace_file(out / "metrics.json", overwrite=True) as tmp:    # a link there is replaced, not followed
        tmp.write_text(json.dumps({"config": asdict(config), "device": str(device),
                                   "training_data": source.description, "checkpoints": records}, indent=2))
    return records
