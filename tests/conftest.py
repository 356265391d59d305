"""Shared fixtures: small real files written by the library itself."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ladd_format import DenseSpec, DLAWriter, integrity
from ladd_format.codecs import make_codec

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def pytest_collection_modifyitems(config, items):
    """Under `make mutation` (LADD_MUTATION=1) only: leave out the tests marked ``mutation_skip`` and run the
    rest fastest first.

    The marked tests run the code in other processes (subprocesses, process pools, DataLoader workers, gloo
    groups) or scan the source files. A subprocess imports the installed package, not mutmut's mutated copy,
    so it cannot kill a mutant; mutmut forks one worker per mutant, and a fork that starts torch's thread
    pool or a process pool has deadlocked there (counted as a timeout, i.e. a kill that is not one); and the
    source scans read mutmut's copies, ten times the size. They all run in `make test`. Leaving tests out can
    only lower the mutation score. Fastest first (by mutmut's recorded durations) lets ``pytest -x`` stop a
    killed mutant early; the order does not change which mutants are killed.
    """
    if not os.environ.get("LADD_MUTATION"):
        return
    skipped = [item for item in items if item.get_closest_marker("mutation_skip")]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if not item.get_closest_marker("mutation_skip")]
    stats = Path("mutmut-stats.json")   # mutmut runs the tests inside its mutants/ folder
    if stats.is_file():
        try:
            durations = json.loads(stats.read_text()).get("duration_by_test", {})
        except ValueError:
            return
        items.sort(key=lambda item: durations.get(item.nodeid, 0.0))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def make_arrays(m=12, c=10, side=16, n=3, seed=0, sharp=3.0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(m, 3, side, side), dtype=np.uint8)
    labels = np.arange(m) % c
    dense = softmax(rng.normal(size=(m, n * n, c)) * sharp).astype(np.float32)
    return images, labels, dense


def append_small_stream(writer, mix: str, num_images: int, num_classes: int, side: int, seed: int = 0) -> None:
    """Two epochs of a small relabel stream (batch lengths 4, 2 | 3; crops 8 x 8) for
    ``write_dla(stream_mix=...)``."""
    rng = np.random.default_rng(seed + 7)
    for epoch, lengths in enumerate(([4, 2], [3])):
        for n in lengths:
            h, w = rng.integers(1, side + 1, n), rng.integers(1, side + 1, n)
            box = np.stack([rng.integers(0, side - h + 1), rng.integers(0, side - w + 1), h, w], axis=1)
            kw = {"mix_partner": rng.permutation(n)} if mix != "none" else {}
            kw.update({"cutmix": {"mix_box": np.array([1, 2, 3, 4])}, "mixup": {"mix_lambda": 0.25}}.get(mix, {}))
            writer.append_stream(epoch, rng.integers(0, num_images, n), box, rng.integers(0, 2, n).astype(bool),
                                 logits=rng.normal(size=(n, num_classes)) * 3, **kw)


def write_dla(path: Path, m=12, c=10, side=16, n=3, ratio=0.625, codec="float32", codec_config=None,
              batch=5, soft_kind=None, seed=0, stream_mix=None, stream_codec="topk:k=3,values=uint8",
              **kwargs) -> Path:
    """A small D_LA; with ``stream_mix`` (``none``, ``cutmix``, ``mixup``) also a relabel stream of 2
    epochs and 3 batches (B = 4) stored with ``stream_codec`` (a codec with a tail, ``tail=R``, gets a
    basis fitted on random logits)."""
    if stream_mix is not None:
        from ladd_format.stream import StreamSpec, fit_tail_basis, parse_stream_codec

        stream_codec = parse_stream_codec(stream_codec)
        tail = None if stream_codec.tail_rank is None else fit_tail_basis(
            np.random.default_rng(seed + 11).normal(size=(32, c)) * 3, stream_codec.tail_rank)
        kwargs["stream"] = StreamSpec(epochs=2, batch_size=4, crop_size=(8, 8), mix=stream_mix,
                                      codec=stream_codec, teacher={"arch": "test"}, tail=tail)
    images, labels, dense = make_arrays(m, c, side, n, seed)
    spec = None
    if codec is not None:
        spec = DenseSpec(n=n, ratio=ratio, codec=make_codec(codec, **(codec_config or {})),
                         labeler={"arch": "test", "epochs": 1})
    soft = np.random.default_rng(seed + 1).normal(size=(m, c)).astype(np.float32) if soft_kind else None
    if soft_kind == "probs":
        soft = softmax(soft)
    with DLAWriter(path, num_classes=c, image_shape=(3, side, side), mean=MEAN, std=STD, dense=spec,
                   soft_kind=soft_kind, converter="test", **kwargs) as w:
        for start in range(0, m, batch):
            stop = min(m, start + batch)
            w.append(images[start:stop], labels[start:stop],
                     dense=dense[start:stop] if spec else None,
                     soft=soft[start:stop] if soft is not None else None)
        if stream_mix is not None:
            append_small_stream(w, stream_mix, m, c, side, seed)
    return path


def tamper(path, fn, reseal=True, rows=True):
    """Edit the file with h5py, then (by default) recompute its row digests (``rows``) and root
    digest, so the edit breaks only the rule it is meant to break, not also rules 12 and 13."""
    with h5py.File(path, "r+") as f:
        fn(f)
        if reseal:
            integrity.reseal(f, rows=rows)
    return path


def replace_dataset(f, name, data, chunks=True, **kwargs):
    """Rewrite dataset ``name`` as ``data`` (chunked, fletcher32, h5py options ``kwargs``), keeping its
    attributes (its ``sha256`` too: :func:`rehash` makes it agree)."""
    attrs = dict(f[name].attrs)
    del f[name]
    ds = f.create_dataset(name, data=data, chunks=chunks, fletcher32=True, **kwargs)
    ds.attrs.update(attrs)
    return ds


def edit_values(f, name, fn):
    """Change the values of dataset ``name`` in place (``fn`` edits a copy) and its sha256 with them."""
    data = f[name][()]
    fn(data)
    f[name][...] = data
    rehash(f[name])


def rehash(ds):
    """Set ``sha256`` to the digest of the data as it now is, so that only the rule meant breaks."""
    data = np.asarray(ds[()])
    le = np.ascontiguousarray(data.astype(data.dtype.newbyteorder("<"), copy=False))
    ds.attrs["sha256"] = hashlib.sha256(le.tobytes()).hexdigest()
    return ds


#: the real upstream files (read only), a sibling of the repository: ``../shared/data``
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; the test is skipped, saying so, where the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the real upstream files are not in {SHARED_DATA} (../shared/data is absent here)")
    return SHARED_DATA


@pytest.fixture
def dla_file(tmp_path) -> Path:
    return write_dla(tmp_path / "set.dla.h5")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()

def cli(runner, *args):
    """``ladd ARGS`` through click's runner (arguments made text); never a traceback."""
    from ladd_cli.main import main

    result = runner.invoke(main, [*map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


def ok(runner, *args):
    """``ladd ARGS`` that must succeed."""
    result = cli(runner, *args)
    assert result.exit_code == 0, result.output
    return result


def one_line(result) -> str:
    """The one ``ladd: error:`` line of a run that failed with exit 1."""
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("ladd: error: ")
    return line


def hand_boxes(height: int, width: int, n: int, ratio: float) -> list[tuple[int, int, int, int]]:
    """Spec section 5 written out independently of ladd_format.geometry: crop side floor(R*S + 0.5),
    offsets floor(i*(S - s)/(N - 1) + 0.5) (the centre for N = 1), rows first."""
    import math
    h, w = math.floor(ratio * height + 0.5), math.floor(ratio * width + 0.5)

    def offsets(size, side):
        if n == 1:
            return [math.floor((size - side) / 2 + 0.5)]
        return [math.floor(i * (size - side) / (n - 1) + 0.5) for i in range(n)]
    return [(top, left, h, w) for top in offsets(height, h) for left in offsets(width, w)]


def hand_subimages(images, n: int, ratio: float):
    """(B, K, H, W) float tensor -> (B, N*N, K, H, W): torchvision's resized_crop (bilinear,
    antialiased) of every box of :func:`hand_boxes`, one crop at a time; the expectation that tests
    compare ladd_format.torch.subimages and its users with."""
    import torch
    from torchvision.transforms.v2 import functional as TF
    height, width = images.shape[-2:]
    return torch.stack([TF.resized_crop(images, top, left, h, w, [height, width], antialias=True)
                        for top, left, h, w in hand_boxes(height, width, n, ratio)], dim=1)


def flip_chunk_byte(path: Path, name: str, chunk: int, offset: int = 20) -> None:
    """Damage one stored byte of chunk ``chunk`` of dataset ``name`` (its fletcher32 then fails)."""
    with h5py.File(path) as f:
        info = f[name].id.get_chunk_info(chunk)
    data = bytearray(path.read_bytes())
    data[info.byte_offset + offset] ^= 0xFF
    path.write_bytes(bytes(data))


#: generous: an interrupted command must end well within this after SIGINT, and start within three times it
INTERRUPT_TIMEOUT = 60


def interrupt_ladd(args: list[str], started: str | None = None, ready=None) -> tuple[int, str]:
    """Run ``ladd ARGS`` in its own process group and send the group SIGINT, as a terminal does:
    once a stderr line starts with ``started`` (its progress: the work has begun), or when
    ``ready(proc, lines)`` returns (it waits for its own moment; ``lines`` fills as stderr is read).
    Returns (exit status, stderr)."""
    import signal
    import subprocess
    import sys
    import threading

    env = dict(os.environ, LADD_PROGRESS_INTERVAL="0", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "ladd_cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    lines: list[str] = []
    reached = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if started is not None and line.startswith(started):
                reached.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if ready is None:
            assert reached.wait(INTERRUPT_TIMEOUT * 3), "".join(lines)
        else:
            ready(proc, lines)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=INTERRUPT_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    return proc.returncode, "".join(lines)
