"""The deployment stage (paper Sec. 3.3): train a fresh student on a D or D_LA file, test it.

Modes:
- ``hard``: cross-entropy on the images with their hard labels (the baseline D);
- ``soft``: cross-entropy against the file's global soft labels;
- ``ladd``: the paper's Eq. 5 with the dense labels (:func:`ladd_format.torch.ladd_loss`).

The same augmentation (random scale 0.8-1 and shift, optional horizontal flip; per sample) is
applied in every mode, to the global batch and to the rebuilt sub-images alike. With
``sub_per_image = K`` each step uses K of the N*N sub-images (the same random K for the batch) and
scales the local term by N*N / K under ``reduction="sum"`` (an unbiased estimate of Eq. 5's sum;
with the default ``"mean"`` the K terms are simply averaged), which makes CPU runs affordable; the
default uses all of them.

The local term is averaged over the sub-images by default (``reduction="mean"``,
``--reduction mean``); Eq. 5's literal sum is ``reduction="sum"`` (``--reduction sum``), measured
about 9 points worse at IPC 1 on digits: 82.4 +- 4.9% vs 91.3 +- 1.4% (92.6 vs 96.0% at IPC 5;
benchmarks/RESULTS.md, section ``students_loss``).

By default (``stream=None``) a set that takes at most :data:`HOLD_LIMIT_BYTES` (1 GiB) as stored is
held in memory (uint8 images, the codec's encoded dense labels; each batch is decoded and normalised
on the training device), since a student passes over it hundreds of times; a larger set is
streamed: only the batch being trained and the next one are held, each batch read from the file
(its rows checked against their digests, as every read is) on a reader thread while the previous
one trains. ``stream=True`` (``--stream``) and ``stream=False`` (``--in-memory``) force either. A
streamed student is the same as an in-memory one with the same seed (the same batches, the same
decoded values), so the choice changes memory and time only. The limit: on 10,000 images at 224 px
(1.5 GB as stored) holding peaked at 2.6-2.7 GB and streaming at 1.3 GB on a 2-core CPU, streaming
taking 0.97x and 1.10x the held time in two runs (benchmarks/RESULTS.md, scale); the issue's budget
is 2 GB per command, of which torch's import takes about 0.5 GB.

Memory and time on a CPU. A LADD step forwards every image and its N*N sub-images; ``ladd_loss``
runs them in checkpointed chunks within its memory budget (``config.sub_chunk``, ``--sub-chunk``;
:mod:`ladd_format.torch.loss`), so a step's memory does not grow with its number of views. An
allocation failure (a large model, large images) ends in one line naming ``--micro-batch``,
``--sub-per-image`` and ``--sub-chunk`` (:data:`MEMORY_HINT`). The defaults are the paper's (300
epochs, 3 seeds), which can take hours on a CPU: after the first epoch a run that will take at
least :data:`ESTIMATE_NOTE_SECONDS` says how long (:class:`RunEstimate`, printed by the CLI) and
which options shorten it.

One student's training is :mod:`.student`; several train at once in :mod:`.pool`.

Test data (:mod:`.testset`) must fit the file: the same channels and image size (or
``--resize-test``: bilinear, antialiased, to the file's size), the same number of classes when the
test set declares its classes, and labels in ``0..C-1``. The training split of digits is refused.
A ``.dla.h5`` test set is read a batch at a time (a test set of any size); test images are
normalised with the training file's mean/std.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from typing import Callable

import numpy as np

from ..errors import InputError, NoDenseLabelsError
from ..labeler.sources import Source
from ..reader import open_dla
from ..torch import DLADataset
from ..torch.device import resolve_device
from ..torch.models import build_model
from .pool import StudentJob, run_students
# re-exported: the names a caller of evaluate needs (their homes are .student and .testset)
from .student import (HOLD_LIMIT_BYTES, MODES, EvalConfig, memory_hint, streams,  # noqa: F401
                      train_student)
from .testset import TestBatches, TestFile, accuracy, check_test_fits, load_test_source  # noqa: F401


#: a run whose first epochs say it will take at least this many seconds in all is told so (RunEstimate)
ESTIMATE_NOTE_SECONDS = 120.0


class RunEstimate:
    """How long a run of ``total`` epochs will take, from the time its first epochs took.

    ``note(done)`` is called with the epochs done so far (over every student); once ``parallel``
    epochs are done (one per worker process) it returns, once, a line estimating the whole run
    (start-up included, so a little high) when that is at least :data:`ESTIMATE_NOTE_SECONDS`,
    naming the options that shorten it; otherwise None."""

    def __init__(self, total: int, parallel: int = 1, clock: Callable[[], float] = time.monotonic):
        self.total, self.parallel, self.clock = total, max(1, parallel), clock
        self.started = clock()
        self.said = False

    def note(self, done: int) -> str | None:
        if self.said or done < min(self.parallel, self.total):
            return None
        self.said = True
        elapsed = self.clock() - self.started
        whole = elapsed * self.total / done
        if whole < ESTIMATE_NOTE_SECONDS:
            return None
        from ..progress import format_seconds
        return (f"this run will take about {format_seconds(whole)} ({done} of {self.total} epochs took "
                f"{format_seconds(elapsed)}); --epochs, --seeds or --sub-per-image K (ladd mode) shorten it")


def evaluate(path: str | os.PathLike, test: Source | TestFile, config: EvalConfig = EvalConfig(),
             progress: Callable[[int, int, float], None] | None = None,
             epoch_progress: Callable[[int, int, float], None] | None = None, workers: int = 1) -> dict:
    """Train ``config.seeds`` students on the file and report their test accuracy (mean, std).

    ``progress(students done, seeds, accuracy)`` after each student; ``epoch_progress(epochs done,
    seeds * epochs, loss)`` after each epoch of each student (the epoch's mean training loss).
    ``workers > 1`` on the CPU trains the seeds in that many processes
    (:mod:`ladd_format.train.pool`), each with ``config.threads`` torch threads (default: the
    cores shared out). A student's weights depend on its thread count (by about 1e-8 after a few
    epochs: the order of float sums), not on the worker count, so a run repeats exactly when
    ``config.threads`` is given.
    """
    if config.mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, got {config.mode!r}")
    device = resolve_device(config.device)
    if config.mode == "ladd":
        with open_dla(path) as f:
            if not f.has_dense:
                raise NoDenseLabelsError("no dense labels (this is a plain distilled set D): --mode ladd needs them; "
                                         "run `ladd augment` first, or evaluate with --mode hard", path, "/dense")
    config = replace(config, stream=streams(path, config))
    ds = DLADataset(path, dense=config.mode == "ladd", soft_labels=config.mode == "soft",
                    in_memory=not config.stream)
    test_batches = TestBatches(test, ds, device)
    k, h, _ = ds.image_shape
    try:
        build_model(config.arch, num_classes=ds.num_classes, channels=k, image_size=h, **(config.arch_kwargs or {}))
    except (ValueError, TypeError) as exc:
        raise InputError(f"student {config.arch} {config.arch_kwargs or ''}: {exc}".replace(" : ", ": ")) from None
    accs = []
    timing: dict = {}
    total_epochs = config.seeds * config.epochs
    if device.type == "cpu" and (workers > 1 and config.seeds > 1 or config.threads):
        accs = _evaluate_in_pool(path, test, config, workers, progress, epoch_progress)
    for seed in range(config.seeds if not accs else 0):
        on_epoch = None
        if epoch_progress is not None:
            def on_epoch(epoch, loss, _before=seed * config.epochs):
                epoch_progress(_before + epoch, total_epochs, loss)
        with memory_hint(path):
            try:
                model = train_student(ds, config, seed, device, on_epoch, timing)
            except ValueError as exc:
                raise InputError(str(exc), path) from None
            accs.append(accuracy(model, test_batches, device))
        if progress is not None:
            progress(seed + 1, config.seeds, accs[-1])
    return {"file": str(path), "test": test.description, "mode": config.mode, "arch": config.arch,
            "accuracies": accs, "mean": float(np.mean(accs)), "std": float(np.std(accs)),
            "data_wait": _data_wait(timing), "config": {k: v for k, v in asdict(config).items()}}


def _data_wait(timing: dict) -> dict | None:
    """``{"train_seconds", "data_wait_seconds", "share"}`` over every student of a streamed run
    (:func:`train_student`'s ``timing``); None when the set was held (no reader to wait for) or the
    students trained in worker processes (not measured there)."""
    if "train_seconds" not in timing:
        return None
    train, wait = timing["train_seconds"], timing["data_wait_seconds"]
    return {"train_seconds": round(train, 3), "data_wait_seconds": round(wait, 3),
            "share": round(wait / train, 4) if train > 0 else 0.0}


def _evaluate_in_pool(path, test: Source | TestFile, config: EvalConfig, workers: int, progress, epoch_progress) -> list[float]:
    epochs_done: dict[int, int] = {}
    finished: list[float] = []

    def on_epoch(seed, epoch, loss):
        epochs_done[seed] = epoch
        if epoch_progress is not None:
            epoch_progress(sum(epochs_done.values()), config.seeds * config.epochs, loss)

    def on_done(seed, acc):
        finished.append(acc)
        if progress is not None:
            progress(len(finished), config.seeds, acc)
    jobs = [StudentJob(seed, os.fspath(path), replace(config, device="cpu"), seed) for seed in range(config.seeds)]
    by_seed = run_students(jobs, test, workers, on_epoch, on_done, threads=config.threads)
    return [by_seed[seed] for seed in range(config.seeds)]
