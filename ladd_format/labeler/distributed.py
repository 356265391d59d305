"""The labeler pass on several processes (GPUs, or CPU processes with gloo).

Each rank labels a disjoint contiguous range of chunks into the shared work folder; after a
barrier, rank 0 assembles the one D_LA. The output is identical to the single-process pass (the
chunks, and what is computed for each, are the same).

Launch with torchrun (one process per GPU)::

    torchrun --nproc-per-node 4 -m ladd_format.labeler.distributed IN.dla.h5 --labeler CKPT -o OUT.dla.h5

or from the CLI on one machine: ``ladd augment ... --shards K`` (spawns K local processes). CPU
ranks share the machine's cores (:func:`cpu_threads` torch threads each) rather than each taking
all of them; the test suite holds the sharded file equal to the single-process one on the CPU.

The process plumbing here (:func:`rank_config`, :func:`run_rank_steps`, :func:`spawn_ranks`,
:func:`torchrun_main`) is also ``ladd relabel``'s (:mod:`ladd_format.labeler.relabel_pass`), whose
ranks label ranges of epochs the same way.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import replace
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..augment_config import AugmentConfig, augment_options
from ..config_options import add_argparse_options
from ..reader import open_dla
from .label_pass import (AugmentResult, assemble, class_mismatch, done_images, interrupt_keeps, label_chunks, prepare,
                         set_up_work, work_state)

log = logging.getLogger(__name__)


def shard(num_chunks: int, rank: int, world: int) -> list[int]:
    """Contiguous, disjoint chunk ranges covering ``range(num_chunks)``."""
    per, extra = divmod(num_chunks, world)
    start = rank * per + min(rank, extra)
    return list(range(start, start + per + (1 if rank < extra else 0)))


def cpu_threads(world: int) -> int:
    """Torch threads of one CPU rank: this machine's cores shared among the ``world`` ranks (at least 1)."""
    return max(1, (os.cpu_count() or 1) // world)


def rank_config(config, rank: int, world: int):
    """``config`` (an Augment- or RelabelConfig) for one rank: with CUDA the rank's GPU (LOCAL_RANK);
    on the CPU the same config, torch's threads set to the rank's share of the cores."""
    if config.device in ("auto", "cuda") and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
        return replace(config, device=f"cuda:{local}")
    if not str(config.device).startswith("cuda"):
        torch.set_num_threads(cpu_threads(world))     # the ranks share the cores instead of each taking all
    return config


def run_rank_steps(rank: int, set_up: Callable[[], Any], label: Callable[[], Any], assemble: Callable[[], Any]) -> None:
    """The steps of one rank, between barriers: rank 0 sets the work folder up, every rank labels its
    range, rank 0 assembles the one file."""
    if rank == 0:
        set_up()
    dist.barrier()
    label()
    dist.barrier()
    if rank == 0:
        assemble()
    dist.barrier()


def backend(device: str) -> str:
    """The process group's backend for ranks on ``device``: nccl with CUDA, else gloo."""
    return "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"


def run_rank(rank: int, world: int, source, labeler, output, config: AugmentConfig, resume: bool) -> None:
    """The body of one rank; the process group must be initialised."""
    config = rank_config(config, rank, world)
    plan = prepare(source, labeler, output, config, resume, create=False)  # the same checks on every rank
    run_rank_steps(rank, lambda: set_up_work(plan, resume),
                   lambda: label_chunks(plan, shard(plan.num_chunks, rank, world)), lambda: assemble(plan))


def _spawned(rank: int, world: int, port: int, body: Callable[..., None], args: tuple) -> None:
    """One spawned rank: ``body(rank, world, *args)`` in a process group on this machine (``args[3]``: the config)."""
    dist.init_process_group(backend(args[3].device), init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        body(rank, world, *args)
    finally:
        dist.destroy_process_group()


def spawn_ranks(body: Callable[..., None], args: tuple, shards: int, done: Callable[[], int], total: int,
                progress: Callable[[int, int], None] | None, poll_seconds: float) -> None:
    """Start ``shards`` local ranks running ``body(rank, world, *args)`` and wait for them; every
    ``poll_seconds`` ``progress(done(), total)`` where ``done()`` grew (and once at the end)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stop = threading.Event()

    def watch() -> None:
        last = -1
        while not stop.wait(poll_seconds):
            count = done()
            if count > last and progress is not None:
                progress(count, total)
                last = count

    watcher = threading.Thread(target=watch, name="ladd-shard-progress", daemon=True)
    watcher.start()
    try:
        mp.spawn(_spawned, args=(shards, port, body, args), nprocs=shards, join=True)
    finally:
        stop.set()
        watcher.join()
    if progress is not None:
        progress(total, total)


def torchrun_main(body: Callable[..., None], args: tuple) -> int:
    """A torchrun rank (RANK / WORLD_SIZE / LOCAL_RANK from the environment): ``body(rank, world,
    *args)`` in the job's process group (``args[3]``: the config)."""
    dist.init_process_group(backend(args[3].device))
    try:
        body(dist.get_rank(), dist.get_world_size(), *args)
    finally:
        dist.destroy_process_group()
    return 0


def augment_sharded(source, labeler, output, config: AugmentConfig, shards: int, resume: bool = False,
                    progress: Callable[[int, int], None] | None = None, poll_seconds: float = 0.5) -> AugmentResult:
    """Run the pass in ``shards`` local processes (one per GPU when CUDA is used).

    Every check runs here first, so bad input fails with one clear error before any process starts.
    ``progress(images done, images in all)`` is called from this process, which counts the completed
    chunk files in the work folder every ``poll_seconds`` while the ranks run (and once at the end).
    A Ctrl-C ends in :class:`~ladd_format.labeler.label_pass.AugmentInterrupted`, as ``augment``'s does.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    started = time.perf_counter()
    with interrupt_keeps(output, config.batch_size) as known:
        plan = prepare(source, labeler, output, replace(config, device="cpu"), resume, create=False)
        known["num_images"] = plan.num_images
        if config.allow_mismatch:               # the ranks' prepare says nothing (create=False): say it once here
            with open_dla(source) as f:
                mismatch = class_mismatch(plan.labeler, f.class_names)
            if mismatch is not None:
                log.warning("%s: %s; labeling anyway (--allow-mismatch)", source, mismatch)
        resumed_chunks, resumed_images = done_images(plan) if resume else (0, 0)
        _spawn_ranks(plan, source, labeler, output, config, shards, resume, progress, poll_seconds)
    return AugmentResult(plan.output, plan.num_images, plan.num_chunks, resumed_chunks, resumed_images,
                         time.perf_counter() - started)


def _spawn_ranks(plan, source, labeler, output, config: AugmentConfig, shards: int, resume: bool,
                 progress: Callable[[int, int], None] | None, poll_seconds: float) -> None:
    """Start the ranks and wait for them, reporting the images of the chunk files they write."""
    def done() -> int:
        state = work_state(output, config.batch_size, plan.num_images)
        return 0 if state is None else state.images     # None: not made yet, or assembled and removed

    spawn_ranks(run_rank, (source, labeler, output, config, resume), shards, done, plan.num_images, progress,
                poll_seconds)


def parser() -> argparse.ArgumentParser:
    """The torchrun entry point's options: SOURCE, --labeler, -o, --resume, and every
    :class:`~ladd_format.augment_config.AugmentConfig` option (the defaults of ``ladd augment``)."""
    p = argparse.ArgumentParser(prog="python -m ladd_format.labeler.distributed", description=__doc__.split("\n")[0])
    p.add_argument("source")
    p.add_argument("--labeler", required=True, help="Checkpoint (.safetensors).")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--resume", action="store_true", help="Continue an interrupted pass from its last completed chunk.")
    add_argparse_options(p, augment_options())
    return p


def main(argv=None) -> int:
    """torchrun entry point (reads RANK / WORLD_SIZE / LOCAL_RANK from the environment)."""
    a = parser().parse_args(argv)
    return torchrun_main(run_rank, (a.source, a.labeler, a.output, AugmentConfig.from_values(vars(a)), a.resume))


if __name__ == "__main__":
    sys.exit(main())
