"""Train several students at once on the CPU: one process per core, one thread each.

Why processes and not torch's threads: the students of ``ladd evaluate`` and the demo are small
(a ConvNet-D3 on 32 px images), where torch's intra-op threads scale below the core count (two
threads gave 1.5-1.9x one thread on quiet 2-core machines) and, on some machines, collapse when
another process shares the cores (a LADD IPC 5 row took 1.4-1.8x longer with 2 threads than with
2 one-thread processes there). Independent students in one single-threaded process per core use
every core and degrade gracefully under sharing: the demo's 18 students took 112 s in the pool
against 145 s with 2 threads on a quiet 2-core machine, 191 s against 400 s beside one busy
process; measured in benchmarks/RESULTS.md ("The demo's students"). :func:`default_workers` uses
the pool only when its rounds keep the cores busy.

A student's result does not depend on the worker count: on the CPU each (file, mode, seed) trains
the same weights in any process with one thread. A run with ``workers=1`` trains in this process
with torch's current thread count (on a GPU, always so).

Workers are started with ``spawn`` (a fork of a process whose OpenMP pool is running can
deadlock), so each imports torch once (about 2 s); each keeps the datasets it has loaded.

Ctrl-C: a terminal sends SIGINT to the whole process group, workers included. The workers ignore
it (they are started while this process ignores it, so they ignore it from their first
instruction, before Python could print a traceback), and this process, on its KeyboardInterrupt,
terminates them at once and re-raises: one line from the caller, no worker traceback, and no
waiting for a student to finish. This process ignores SIGINT only while it starts the processes
(milliseconds: the test set travels with each job, not with the start-up data, whose write to a
starting worker would otherwise wait for its interpreter to read it); a Ctrl-C in those
milliseconds is lost, and a second one stops the run.

Progress: ``on_epoch(key, epoch, mean loss)`` after every epoch of every student (sent through a
queue from the workers), ``on_done(key, accuracy)`` when a student is tested.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import signal
import threading
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Hashable

from ..labeler.sources import Source
from .student import StudentJob, train_and_test

if TYPE_CHECKING:
    from .testset import TestFile

#: seconds between polls of the progress queue while students train
POLL = 0.25


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                   # not Linux
        return max(1, os.cpu_count() or 1)


#: the pool is used when its rounds keep at least this share of the workers busy on average
#: (torch's threads reach 0.75-0.95 of the cores on 2 cores; a pool's idle last round costs more)
MIN_POOL_USE = 0.8


def default_workers(device: str, jobs: int, cores: int | None = None) -> int:
    """How many processes train ``jobs`` students: 1 on a GPU; on the CPU one per core (at most one
    per job) when that keeps the workers busy, i.e. ``jobs / (workers * rounds) >= MIN_POOL_USE``;
    otherwise 1 (one process with every core's threads). 3 seeds on 2 cores (use 0.75: a second
    round with one core idle) took 1.03-1.4x as long in 2 one-thread processes as in one two-thread
    process on quiet machines, while the demo's 18 students (use 1.0) took 0.78x as long in the pool
    (benchmarks/RESULTS.md, "The demo's students")."""
    from ..torch.device import resolve_device
    if resolve_device(device).type != "cpu":
        return 1
    cores = available_cores() if cores is None else cores
    workers = max(1, min(cores, jobs))
    rounds = -(-jobs // workers)
    return workers if jobs >= workers * rounds * MIN_POOL_USE else 1


# -- the worker side -------------------------------------------------------------------------------
_STATE: dict = {}


def _init_worker(test: Source | TestFile | None, progress_queue, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # started so; kept so (module docstring)
    import torch
    torch.set_num_threads(threads)
    _STATE.update(test=test, queue=progress_queue, datasets={})


def _train_one(job: StudentJob, test: Source | TestFile | None = None, on_epoch: Callable | None = None) -> float:
    test = test if test is not None else _STATE["test"]
    datasets = _STATE.setdefault("datasets", {})
    if on_epoch is None and _STATE.get("queue") is not None:
        q = _STATE["queue"]

        def on_epoch(epoch: int, loss: float) -> None:
            q.put((job.key, epoch, loss))
    return train_and_test(job.path, test, replace(job.config, seeds=1), job.seed, datasets, on_epoch)


# -- the caller's side -----------------------------------------------------------------------------
@contextmanager
def _children_ignore_sigint():
    """Ignore SIGINT in this process while the block starts processes, which then ignore it from
    their start (an ignored signal stays ignored across exec); the old handler is put back after.
    Only the main thread can change handlers: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's workers now (an interrupt or an error: their students are not needed)."""
    processes = getattr(pool, "_processes", None) or {}      # ProcessPoolExecutor's own: no public way
    for process in list(processes.values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def run_students(jobs: list[StudentJob], test: Source | TestFile, workers: int = 1,
                 on_epoch: Callable[[Hashable, int, float], None] | None = None,
                 on_done: Callable[[Hashable, float], None] | None = None,
                 threads: int | None = None) -> dict[Hashable, float]:
    """Train and test every job; ``{key: test accuracy}``. ``workers > 1`` runs them in that many
    processes (CPU only) of ``threads`` torch threads each (default: the cores shared out, at least
    1); errors in a worker are raised here. ``workers=1`` trains here, with ``threads`` threads
    (default: torch's current count)."""
    results: dict[Hashable, float] = {}
    if workers <= 1 or len(jobs) <= 1:
        import torch
        before = torch.get_num_threads()
        _STATE.clear()
        try:
            if threads:
                torch.set_num_threads(threads)
            for job in jobs:
                tick = None if on_epoch is None else (lambda e, loss, key=job.key: on_epoch(key, e, loss))
                results[job.key] = _train_one(job, test, tick)
                if on_done is not None:
                    on_done(job.key, results[job.key])
        finally:
            torch.set_num_threads(before)
            _STATE.clear()
        return results
    workers = min(workers, len(jobs))
    threads = threads or max(1, available_cores() // workers)
    context = multiprocessing.get_context("spawn")

    def drain() -> None:
        while True:
            try:
                key, epoch, loss = progress_queue.get_nowait()
            except queue_module.Empty:
                return
            if on_epoch is not None:
                on_epoch(key, epoch, loss)

    pool = None
    try:
        with _children_ignore_sigint():         # the queue's helper process and the workers start here
            progress_queue = context.Queue()
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                       initializer=_init_worker, initargs=(None, progress_queue, threads))
            pending: dict[Future, StudentJob] = {pool.submit(_train_one, job, test): job for job in jobs}
        while pending:
            done, _ = wait(pending, timeout=POLL, return_when=FIRST_COMPLETED)
            drain()
            for future in done:
                job = pending.pop(future)
                results[job.key] = future.result()
                if on_done is not None:
                    on_done(job.key, results[job.key])
    except BaseException:
        if pool is not None:
            _stop(pool)
        raise
    pool.shutdown(wait=True)
    drain()
    return results


__all__ = ["StudentJob", "available_cores", "default_workers", "run_students"]
