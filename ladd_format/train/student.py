"""One student of the deployment stage (paper Sec. 3.3): train a fresh model on a D or D_LA file, test it.

:class:`EvalConfig` is a student's settings; :func:`train_student` trains one, :func:`train_and_test`
trains and tests one (what :func:`ladd_format.train.evaluate.evaluate` does per seed, and what a
worker of :mod:`ladd_format.train.pool` does per :class:`StudentJob`). Modes, augmentation, memory
and streaming are described in :mod:`ladd_format.train.evaluate`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..labeler.sources import Source
from ..reader import open_dla
from ..torch import DLADataset, SubSampler, ladd_loss, soft_cross_entropy
from ..torch.device import deterministic_kernels, resolve_device
from ..torch.models import build_model
from ..torch.random_zoom import random_zoom, warp, zoom_thetas
from .testset import TestBatches, TestFile, accuracy

log = logging.getLogger(__name__)
MODES = ("hard", "soft", "ladd")


@dataclass
class EvalConfig:
    """A student's settings (``ladd evaluate``'s options; the paper's deployment defaults)."""

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
    reduction: str = "mean"       # "sum": Eq. 5 literally, ~9 points worse at IPC 1 (ladd_format.train.evaluate)
    threads: int | None = None    # CPU: torch threads per student (None: the cores shared among the workers)
    micro_batch: int | None = None  # images per forward/backward; a batch's gradients are accumulated (None: the batch)
    sub_chunk: int | None = None  # ladd mode: views per checkpointed forward pass in ladd_loss (None: chosen from
                                  # its memory budget, 0: the whole micro-batch at once; ladd_format.torch.loss)
    stream: bool | None = None    # read each batch from the file (True), hold the set (False), or hold it when it
                                  # takes at most HOLD_LIMIT_BYTES (None; ladd_format.train.evaluate)


#: ``stream=None`` holds a set that takes at most this many bytes as stored and streams a larger one
HOLD_LIMIT_BYTES = 1 << 30


def streams(path: str | os.PathLike, config: EvalConfig) -> bool:
    """Whether ``config`` trains on ``path`` streamed: ``config.stream`` when given; otherwise
    whether the set, as stored, takes more than :data:`HOLD_LIMIT_BYTES` (read from the file's
    shapes: no array is read)."""
    if config.stream is not None:
        return bool(config.stream)
    with open_dla(path) as f:
        return f.held_bytes(dense=config.mode == "ladd", soft_labels=config.mode == "soft") > HOLD_LIMIT_BYTES


#: the students' random zoom: each view shows this fraction (min, max) of the image's side
STUDENT_ZOOM = (0.8, 1.0)


def random_affine(x: torch.Tensor, generator: torch.Generator, flip: bool) -> torch.Tensor:
    """The students' augmentation: random zoom to 0.8-1 of the view, shift, optional flip."""
    return random_zoom(x, generator, *STUDENT_ZOOM, flip)


class StudentAugment:
    """:func:`random_affine` as a callable with the ``draw``/``apply`` split that lets
    :func:`ladd_format.torch.ladd_loss` warp the sub-images a chunk at a time (the same warps, drawn
    in the same order, as one call on the whole batch)."""

    def __init__(self, generator: torch.Generator, flip: bool):
        self.generator, self.flip = generator, flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return random_affine(x, self.generator, self.flip)

    def draw(self, n: int) -> torch.Tensor:
        return zoom_thetas(n, self.generator, *STUDENT_ZOOM, self.flip)

    def apply(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return warp(x, theta)


#: what an allocation failure becomes: the options that make a step hold less
MEMORY_HINT = ("ran out of memory while training a student ({reason}); a step holds less with --micro-batch M "
               "(images per forward/backward pass), --sub-per-image K (sub-images per image, ladd mode) or "
               "--sub-chunk C (images and sub-images per forward pass, ladd mode)")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure: MemoryError, or torch's RuntimeError from the CPU
    allocator ("can't allocate memory") or a GPU's ("out of memory")."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        words in text for words in ("can't allocate memory", "cannot allocate memory", "out of memory",
                                    "not enough memory"))


@contextmanager
def memory_hint(path: str | os.PathLike):
    """Turn an allocation failure inside the block into one :class:`InputError` naming
    :data:`MEMORY_HINT`'s options."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        asked = re.search(r"tried to allocate ([0-9]+) bytes", str(exc))
        reason = (f"an allocation of {int(asked.group(1)) / 1e9:.1f} GB failed" if asked
                  else " ".join(str(exc).split())[:160] or type(exc).__name__)
        raise InputError(MEMORY_HINT.format(reason=reason), path) from None


@deterministic_kernels
def train_student(ds: DLADataset, config: EvalConfig, seed: int, device,
                  on_epoch: Callable[[int, float], None] | None = None,
                  timing: dict | None = None) -> torch.nn.Module:
    """One student; ``on_epoch(epoch, mean training loss)`` after every epoch (also logged at INFO,
    which ``ladd -v`` shows).

    ``timing`` (a dict), when the set is streamed, receives ``train_seconds`` (the epochs' wall time)
    and ``data_wait_seconds``: the time the training loop spent waiting for the reader thread's next
    batch -- the loader's cost that the training did not hide. On a GPU the step's kernels run
    asynchronously, so the loop waits only where the reader is slower than the device."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    k, h, w = ds.image_shape
    model = build_model(config.arch, num_classes=ds.num_classes, channels=k, image_size=h,
                        **(config.arch_kwargs or {})).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    n_images = len(ds)
    if config.micro_batch is not None and config.micro_batch < 1:
        raise ValueError(f"micro_batch must be >= 1, got {config.micro_batch}")
    micro = config.micro_batch or config.batch_size
    want_targets = config.mode != "hard"
    streamed = not ds.in_memory
    if not streamed:
        # the set stays as stored (uint8 images, encoded dense labels): each micro-batch is decoded
        # and normalised on the training device
        images, labels, _, _ = ds.batch(np.arange(n_images), targets=False)
        images, labels = images.to(device), labels.to(device)
    sampler = ds.sampler if config.mode == "ladd" else None

    aug = StudentAugment(gen, config.flip)

    def read(batch: torch.Tensor) -> tuple:
        # a streamed batch from the file (on the reader thread): the same values the in-memory set
        # gives, since a codec decodes row by row
        return ds.batch(batch.numpy(), targets=want_targets)

    # streamed: a reader thread reads batch j + 1 while batch j trains (torch's kernels release the GIL)
    waited = 0.0
    started = time.perf_counter()
    with ThreadPoolExecutor(1, thread_name_prefix="ladd-evaluate-reader") if streamed else nullcontext() as reader:
        for epoch in range(1, config.epochs + 1):
            perm = torch.randperm(n_images, generator=gen)
            batches = [perm[start:start + config.batch_size] for start in range(0, n_images, config.batch_size)]
            pending = reader.submit(read, batches[0]) if streamed else None
            loss_sum = torch.zeros((), device=device)
            for j, batch in enumerate(batches):
                if streamed:
                    t0 = time.perf_counter()
                    b_images, b_labels, b_dense, b_soft = pending.result()
                    waited += time.perf_counter() - t0
                    pending = reader.submit(read, batches[j + 1]) if j + 1 < len(batches) else None
                sub, pick, weight = sampler, None, config.local_weight
                if config.mode == "ladd" and config.sub_per_image and config.sub_per_image < sampler.num_sub:
                    pick = torch.randperm(sampler.num_sub, generator=gen)[:config.sub_per_image].sort().values
                    sub = SubSampler(sampler.boxes[pick.numpy()], sampler.image_size)
                    if config.reduction == "sum":
                        weight = weight * sampler.num_sub / config.sub_per_image
                opt.zero_grad(set_to_none=True)
                for m0 in range(0, len(batch), micro):
                    part = batch[m0:m0 + micro]
                    if streamed:
                        cut = slice(m0, m0 + micro)
                        x, y = ds.to_float(b_images[cut].to(device)), b_labels[cut].to(device)
                        dense = None if b_dense is None else b_dense[cut]
                        soft = None if b_soft is None else b_soft[cut]
                    else:
                        idx = part.to(device)
                        x, y = ds.to_float(images[idx]), labels[idx]
                        dense, soft = ds.targets(part.numpy()) if want_targets else (None, None)
                    if config.mode == "hard":
                        loss = F.cross_entropy(model(aug(x)), y)
                    elif config.mode == "soft":
                        loss = soft_cross_entropy(model(aug(x)), soft.to(device)).mean()
                    else:
                        dense = dense.to(device) if pick is None else dense[:, pick].to(device)
                        loss, _ = ladd_loss(model, x, y, dense, sub, reduction=config.reduction,
                                            local_weight=weight, augment=aug, sub_chunk=config.sub_chunk)
                    (loss if len(part) == len(batch) else loss * (len(part) / len(batch))).backward()
                    loss_sum += loss.detach() * len(part)
                opt.step()
            mean_loss = float(loss_sum) / n_images          # one device sync per epoch
            log.info("student seed %d, epoch %d/%d: loss %.4f", seed, epoch, config.epochs, mean_loss)
            if on_epoch is not None:
                on_epoch(epoch, mean_loss)
    if timing is not None and streamed:
        timing["train_seconds"] = timing.get("train_seconds", 0.0) + time.perf_counter() - started
        timing["data_wait_seconds"] = timing.get("data_wait_seconds", 0.0) + waited
    return model


def train_and_test(path: str | os.PathLike, test: Source | TestFile, config: EvalConfig, seed: int,
                   datasets: dict | None = None, on_epoch: Callable[[int, float], None] | None = None) -> float:
    """One student of ``evaluate``: train with ``seed``, return its test accuracy. ``datasets``
    caches the loaded file and the test set by (file, mode, stream) across calls (a pool worker's)."""
    datasets = {} if datasets is None else datasets
    stream = streams(path, config)
    key = (os.fspath(path), config.mode, stream)
    if key not in datasets:
        ds = DLADataset(path, dense=config.mode == "ladd", soft_labels=config.mode == "soft", in_memory=not stream)
        datasets[key] = (ds, TestBatches(test, ds, torch.device("cpu")))
    ds, test_batches = datasets[key]
    device = resolve_device(config.device)
    with memory_hint(path):
        try:
            model = train_student(ds, config, seed, device, on_epoch)
        except ValueError as exc:
            raise InputError(str(exc), path) from None
        return accuracy(model, test_batches, device)


@dataclass(frozen=True)
class StudentJob:
    """One student: train on ``path`` with ``config`` (its ``seeds`` ignored) and ``seed``; ``key``
    names it in the results of :func:`ladd_format.train.pool.run_students`."""

    key: Hashable
    path: str
    config: EvalConfig
    seed: int
