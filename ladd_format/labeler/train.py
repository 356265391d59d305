"""Train a labeler g (paper Sec. 3.2): SGD on the source data, a checkpoint per save-epoch.

The paper trains a ConvNet-D5 with SGD (lr 0.01, batch 256) and keeps the early epoch-10
checkpoint, whose soft labels are more informative than a converged model's.

Checkpoints are kept at ``save_epochs``; by default (``None``) at five evenly spaced epochs ending
at the last, ``ceil(i * epochs / 5)`` for i = 1..5 (:func:`default_save_epochs`): 10, 20, 30, 40,
50 for 50 epochs, every epoch for 5 or fewer.

The validation split (``val_split``, drawn at random with the seed) measures each checkpoint. When
it misses some classes (a small source: IPC 1 with a 10% split holds 1 image) a warning names
them; with ``val_split=0`` there is no validation set and the records hold ``None`` for the
validation figures.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import atomic
from ..errors import InputError, OutputExistsError
from ..pixels import channel_stats, normalize, pixel255_to_pixel01
from ..provenance import TOOL
from ..torch.random_zoom import random_zoom
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
    save_epochs: tuple[int, ...] | None = None       # None: five evenly spaced, ending at `epochs`
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    val_split: float = 0.1
    flip: bool = False            # random horizontal flips (off: digits are not mirror-symmetric)
    min_crop: float = 1.0         # random square crops of side min_crop..1 of the image, resized back (1 = off)
    device: str = "auto"
    seed: int = 0


def default_save_epochs(epochs: int, count: int = 5) -> tuple[int, ...]:
    """``count`` evenly spaced epochs ending at ``epochs``: ``ceil(i * epochs / count)``, i = 1..count
    (fewer when ``epochs < count``: every epoch)."""
    return tuple(sorted({-(-i * epochs // count) for i in range(1, count + 1)}))


def resolve_save_epochs(save_epochs, epochs: int) -> tuple[int, ...]:
    """The epochs to keep, sorted: ``save_epochs``, or :func:`default_save_epochs` when ``None``;
    refused (one line naming ``--save-epochs``) when empty or outside ``1..epochs``."""
    if save_epochs is None:
        return default_save_epochs(epochs)
    keep = tuple(sorted(set(int(e) for e in save_epochs)))
    if not keep:
        raise InputError("--save-epochs names no epoch")
    bad = [e for e in keep if not 1 <= e <= epochs]
    if bad:
        raise InputError(f"--save-epochs {','.join(map(str, bad))} lie{'s' if len(bad) == 1 else ''} outside "
                         f"1..{epochs} (--epochs {epochs}); leave --save-epochs out to keep five evenly spaced "
                         f"epochs ending at {epochs}")
    return keep


def validation_coverage(labels: np.ndarray, val_idx: np.ndarray, class_names: list[str]) -> str | None:
    """A warning line when the validation split misses some classes (None when it covers them all)."""
    if len(val_idx) == 0:
        return None
    seen = set(np.unique(labels[val_idx]).tolist())
    missing = [c for c in range(len(class_names)) if c not in seen]
    if not missing:
        return None
    names = ", ".join(class_names[c] for c in missing[:10]) + (f", ... ({len(missing) - 10} more)"
                                                                if len(missing) > 10 else "")
    return (f"the validation split ({len(val_idx)} image(s)) misses {len(missing)} of the {len(class_names)} "
            f"classes ({names}): its accuracy says nothing about them; raise --val-split or add images")


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


#: the file beside the checkpoints that records the run (config, device, one record per checkpoint)
METRICS_NAME = "metrics.json"


def check_output_folder(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """The checkpoint folder: refused when it is not a folder, or holds checkpoints or a
    :data:`METRICS_NAME` of an earlier run and not ``overwrite``."""
    out = Path(out_dir)
    if os.path.lexists(out) and not out.is_dir():
        raise InputError("is not a folder; the labeler checkpoints are written into a folder", out)
    if out.exists() and not overwrite and (any(out.glob("labeler-e*.safetensors"))
                                           or os.path.lexists(out / METRICS_NAME)):
        raise OutputExistsError("already holds labeler checkpoints; pass --force to replace them", out)
    return out


def missing_folders(folder: Path) -> list[Path]:
    """The folders of ``folder``'s path that do not exist yet, deepest first (``mkdir(parents=True)``
    would create them)."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_if_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (ones this run created, deepest first) while they are empty; a folder
    with anything in it is kept, and so are those above it."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@deterministic_kernels
def train_labeler(source: Source, out_dir: str | os.PathLike, config: TrainConfig = TrainConfig(),
                  overwrite: bool = False, progress: Callable[[int, int, dict], None] | None = None,
                  step_progress: Callable[[int, int, int], None] | None = None,
                  warn: Callable[[str], None] | None = None) -> list[dict]:
    """Train on ``source``; save ``labeler-e{epoch:03d}.safetensors`` at each save-epoch into ``out_dir``.

    Returns one record per checkpoint (path, epoch, train/val accuracy, val entropy; the validation
    figures are ``None`` without a validation set); also written to ``out_dir/metrics.json``.
    ``progress(epoch, epochs, metrics)`` after each epoch (after that epoch's checkpoint, if any,
    is saved); ``step_progress(epoch, step, steps)`` after each optimiser step; ``warn(line)`` for
    warnings (default: the module's logger).

    ``out_dir`` is created when the first checkpoint is saved, so a run interrupted (or failing)
    before that leaves no folder behind; a run stopped later keeps the checkpoints it completed.
    """
    warn = warn or log.warning
    out = check_output_folder(out_dir, overwrite)
    created = missing_folders(out)
    try:
        return _train(source, out, config, progress, step_progress, warn)
    except BaseException:
        remove_if_empty(created)           # made just before a checkpoint that never completed
        raise


def _train(source: Source, out: Path, config: TrainConfig, progress, step_progress, warn) -> list[dict]:
    """:func:`train_labeler`'s work, once the output folder is checked."""
    if config.batch_size < 1 or config.epochs < 1:
        raise InputError(f"--batch-size and --epochs must be >= 1, got {config.batch_size} and {config.epochs}")
    config = replace(config, save_epochs=resolve_save_epochs(config.save_epochs, config.epochs))
    if not 0 < config.min_crop <= 1:
        raise InputError(f"--min-crop must lie in (0, 1], got {config.min_crop}")
    if not 0 <= config.val_split < 1:
        raise InputError(f"--val-split must lie in [0, 1), got {config.val_split}")
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
                         f"--val-split {config.val_split})")
    note = validation_coverage(source.labels, val_idx, source.class_names)
    if note is not None:
        warn(note)
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
            if step_progress is not None:
                step_progress(epoch, step + 1, steps_per_epoch)
        metrics = {"epoch": epoch, "loss": loss_sum / len(train_idx), "train_accuracy": correct / len(train_idx)}
        log.info("epoch %d/%d: loss %.4f, train accuracy %.3f", epoch, config.epochs, metrics["loss"],
                 metrics["train_accuracy"])
        if epoch in config.save_epochs:
            if len(val_idx):
                metrics["val_accuracy"], metrics["val_entropy"] = evaluate(model, val_x, val_y, mean, std, device)
            else:
                metrics["val_accuracy"] = metrics["val_entropy"] = None           # no validation set
            meta = {"arch": config.arch, "arch_kwargs": config.arch_kwargs, "num_classes": source.num_classes,
                    "channels": k, "image_size": size, "mean": mean_list, "std": std_list,
                    "class_names": source.class_names, "class_names_declared": source.classes_declared,
                    "epoch": epoch, "training_data": source.description,
                    "train_accuracy": metrics["train_accuracy"], "val_accuracy": metrics["val_accuracy"],
                    "val_entropy": metrics["val_entropy"], "seed": config.seed, "tool": TOOL,
                    "config": asdict(config)}
            out.mkdir(parents=True, exist_ok=True)
            path = save_checkpoint(model, meta, out / f"labeler-e{epoch:03d}.safetensors")
            records.append({"path": str(path), **metrics})
            val = metrics["val_accuracy"]
            log.info("epoch %d: saved %s (%s)", epoch, path,
                     "no validation set" if val is None else f"val accuracy {val:.3f}")
        if progress is not None:
            progress(epoch, config.epochs, metrics)
    with atomic.replace_file(out / METRICS_NAME, overwrite=True) as tmp:    # a link there is replaced, not followed
        tmp.write_text(json.dumps({"config": asdict(config), "device": str(device),
                                   "training_data": source.description, "checkpoints": records}, indent=2))
    return records
