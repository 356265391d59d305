"""Hostile inputs outside the container core: every failure is one line with bounded work.

The CLI's last resort, stale partial files, symbolic links at destinations and work folders,
FIFOs / folders / devices given as files, bounded ``.npz`` and ``.pt`` archives, bounded integer
options, labeler checkpoint metadata, and what ``size`` / ``export`` / ``info`` do with whatever a
(lax or strict) reader hands them. Small inputs made in ``tmp_path``; nothing is timed.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from ladd_cli import info as cli_info
from ladd_cli import size as cli_size
from ladd_cli.main import main
from ladd_format import LaddError, atomic, geometry
from ladd_format.errors import (GeometryError, InputError, LabelRangeError, MissingFieldError, OutputExistsError,
                                ShapeError)

from conftest import write_dla

try:                                   # the other engineer's digest sealing (spec 1.1), when present
    from ladd_format.integrity import reseal
except ImportError:                    # pragma: no cover - before spec 1.1 lands
    reseal = None


# -- helpers ---------------------------------------------------------------------------------------
def one_error_line(result, *needles) -> str:
    """The CLI failed (exit 1) with exactly one stderr line ``ladd: error: ...`` holding every needle,
    and no traceback anywhere."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ladd: error: "), lines[0]
    assert "Traceback" not in result.output
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if atomic.PARTIAL_INFIX in p.name)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class FifoWatch:
    """Records whether anyone opened the FIFO for reading (opening a FIFO blocks until a writer
    comes): it opens the write end as soon as a reader waits, so a regression fails, never hangs."""

    def __init__(self, path: Path):
        self.path, self.opened = path, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)   # ENXIO while no reader waits
            except OSError:
                time.sleep(0.01)
                continue
            self.opened = True
            os.close(fd)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def npy_bytes(shape, dtype, payload=b"", descr=None) -> bytes:
    buf = io.BytesIO()
    header = {"descr": descr or np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def write_zip(path: Path, members: dict, compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def forge_uncompressed_size(path: Path, member: str, size: int) -> None:
    """Rewrite the central directory's uncompressed size of ``member`` (a forged zip header)."""
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    while at >= 0:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + name_len].decode() == member:
            struct.pack_into("<I", data, at + 24, size)
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"no member {member}")


@pytest.fixture
def good(tmp_path) -> Path:
    return write_dla(tmp_path / "good.dla.h5", m=6, c=3, side=8, n=2)


@pytest.fixture
def good_npz(tmp_path) -> Path:
    path = tmp_path / "in.npz"
    np.savez(path, images=np.zeros((4, 3, 8, 8), np.uint8), labels=np.array([0, 1, 0, 1]))
    return path


# -- 1. the CLI's last resort ----------------------------------------------------------------------
def test_every_command_is_wrapped():
    def wrapped(fn):
        while fn is not None:
            if getattr(fn, "fails_cleanly", False):
                return True
            fn = getattr(fn, "__wrapped__", None)
        return False

    assert main.commands and [name for name, cmd in main.commands.items() if not wrapped(cmd.callback)] == []


@pytest.mark.parametrize("exc,shown", [
    (RuntimeError("boom\nsecond line"), "RuntimeError: boom"),
    (ValueError("bad value"), "ValueError: bad value"),
    (TypeError("not a number"), "TypeError: not a number"),
    (KeyError("num_classes"), "KeyError: 'num_classes'"),
    (IndexError("index 12 is out of bounds"), "IndexError: index 12 is out of bounds"),
    (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero"),
    (MemoryError(), "(MemoryError)"),
    (OSError("Can't read data (wrong B-tree signature)"), "OSError: Can't read data"),   # h5py's kind
])
def test_unexpected_exceptions_become_one_internal_error_line(good, runner, monkeypatch, exc, shown):
    def boom(*args, **kwargs):
        raise exc
    monkeypatch.setattr(cli_size, "measure_file", boom)
    monkeypatch.delenv("LADD_DEBUG", raising=False)
    line = one_error_line(runner.invoke(main, ["size", str(good)]), f"ladd: error: {good}: internal error (",
                          shown, "please report it")
    assert "second line" not in line


def test_an_os_error_with_an_errno_names_the_file_and_the_reason(good, runner, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.dla.h5")
    monkeypatch.setattr(cli_size, "measure_file", full)
    line = one_error_line(runner.invoke(main, ["size", str(good)]))
    assert line == "ladd: error: /data/out.dla.h5: No space left on device"


def test_ladd_debug_re_raises_the_unexpected_exception(good, runner, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(cli_size, "measure_file", boom)
    monkeypatch.setenv("LADD_DEBUG", "1")
    result = runner.invoke(main, ["size", str(good)])
    assert isinstance(result.exception, RuntimeError) and "ladd: error" not in result.output


def test_interrupt_and_usage_errors_keep_their_exit_status(good, runner, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_size, "measure_file", interrupted)
    result = runner.invoke(main, ["size", str(good)])
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert runner.invoke(main, ["size", str(good), "--method", "gzip"]).exit_code == 2


# -- 2. stale partials -------------------------------------------------------------------------------
def test_only_dead_writers_partials_are_removed_and_links_are_never_followed(tmp_path):
    dest = tmp_path / "out.dla.h5"
    dead = dead_pid()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    stale_file = tmp_path / f".out.dla.h5.partial-{dead}-0a1b2c3d"
    stale_file.write_bytes(b"half")
    stale_dir = tmp_path / f".out.dla.h5.partial-{dead}-00ff00ff"
    (stale_dir / "images").mkdir(parents=True)
    stale_link = tmp_path / f".out.dla.h5.partial-{dead}-deadbeef"
    stale_link.symlink_to(victim, target_is_directory=True)
    alive = [tmp_path / f".out.dla.h5.partial-{os.getpid()}-12345678", tmp_path / ".out.dla.h5.partial-1-abcdef01"]
    for path in alive:
        path.write_bytes(b"in progress")
    other = tmp_path / f".other.dla.h5.partial-{dead}-0a1b2c3d"
    other.write_bytes(b"not ours")

    removed = atomic.remove_stale_partials(dest)
    assert sorted(removed) == sorted([stale_file, stale_dir, stale_link])
    assert not os.path.lexists(stale_link) and (victim / "keep.txt").read_text() == "mine"
    assert all(p.exists() for p in alive) and other.exists()


def test_every_write_first_cleans_its_destinations_stale_partials(tmp_path, good, good_npz, runner):
    dead = dead_pid()
    for name in ("conv.dla.h5", "exp", "labeler-e001.safetensors"):
        (tmp_path / f".{name}.partial-{dead}-0badc0de").mkdir()
    assert runner.invoke(main, ["convert", "npz", str(good_npz), "-o", str(tmp_path / "conv.dla.h5")]).exit_code == 0
    assert runner.invoke(main, ["export", str(good), "-o", str(tmp_path / "exp")]).exit_code == 0
    import torch

    from ladd_format.labeler.checkpoint import save_checkpoint
    save_checkpoint(torch.nn.Linear(2, 2), {"arch": "x"}, tmp_path / "labeler-e001.safetensors")
    assert partials(tmp_path) == []


# -- 3. symbolic links, missing folders, folders where files are expected ----------------------------
def test_export_to_a_link_replaces_the_link_and_leaves_its_target(tmp_path, good, runner):
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    link = tmp_path / "out"
    link.symlink_to(target, target_is_directory=True)
    one_error_line(runner.invoke(main, ["export", str(good), "-o", str(link)]), str(link), "--force")
    assert runner.invoke(main, ["export", str(good), "-o", str(link), "--force"]).exit_code == 0
    assert not link.is_symlink() and (link / "hard_labels.npy").exists()
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"] and partials(tmp_path) == []

    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    link2 = tmp_path / "out.npz"
    link2.symlink_to(precious)
    assert runner.invoke(main, ["export", str(good), "--format", "npz", "-o", str(link2), "--force"]).exit_code == 0
    assert not link2.is_symlink() and precious.read_text() == "mine" and "labels" in np.load(link2)


def test_convert_to_a_link_replaces_the_link_and_a_dangling_link_counts_as_existing(tmp_path, good_npz, runner):
    precious = tmp_path / "precious.dla.h5"
    precious.write_text("mine")
    link = tmp_path / "link.dla.h5"
    link.symlink_to(precious)
    assert runner.invoke(main, ["convert", "npz", str(good_npz), "-o", str(link), "--force"]).exit_code == 0
    assert not link.is_symlink() and precious.read_text() == "mine"
    dangling = tmp_path / "dangling.dla.h5"
    dangling.symlink_to(tmp_path / "nowhere")
    one_error_line(runner.invoke(main, ["convert", "npz", str(good_npz), "-o", str(dangling)]), dangling, "exists")
    one_error_line(runner.invoke(main, ["export", str(link), "-o", str(dangling)]), dangling, "exists")
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists() and partials(tmp_path) == []


@pytest.mark.parametrize("kind", ["link", "file"])
def test_a_work_folder_that_is_not_a_real_folder_is_refused_by_name(tmp_path, good, runner, kind):
    out = tmp_path / "o.dla.h5"
    work = tmp_path / ".o.dla.h5.work"
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    if kind == "link":
        work.symlink_to(target, target_is_directory=True)
    else:
        work.write_text("not a folder")
    result = runner.invoke(main, ["augment", str(good), "--labeler", str(tmp_path / "any.safetensors"),
                                  "-o", str(out)])
    one_error_line(result, work, "work folder")
    assert os.path.lexists(work) and (target / "keep.txt").read_text() == "mine" and not out.exists()


def test_missing_output_folders_and_folders_as_outputs_are_one_line(tmp_path, good, good_npz, runner):
    (tmp_path / "adir").mkdir()
    missing = tmp_path / "missing" / "x.dla.h5"
    cases = [
        (["convert", "npz", str(good_npz), "-o", str(tmp_path / "adir")], "is a directory"),
        (["convert", "npz", str(good_npz), "-o", str(missing)], "output folder does not exist"),
        (["convert", "npz", str(good_npz), "-o", str(good_npz / "x.dla.h5")], "is not a folder"),
        (["export", str(good), "-o", str(missing)], "output folder does not exist"),
        (["export", str(good), "--format", "npz", "-o", str(good), "--force"], "must differ from the input"),
        (["train-labeler", "digits", "-o", str(good), "--epochs", "1"], "is not a folder"),
    ]
    for args, message in cases:
        one_error_line(runner.invoke(main, args), message)
    assert good.stat().st_size > 0 and partials(tmp_path) == []


# -- 4. FIFOs, folders and devices where a file is expected --------------------------------------------
def fifo_cases(tmp_path: Path, fifo: Path) -> list[tuple[list[str], Path]]:
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "images_best.pt")
    (run / "labels_best.pt").write_bytes(b"x")
    tree = tmp_path / "tree" / "cat"
    tree.mkdir(parents=True)
    os.mkfifo(tree / "a.png")
    npz_fifo = tmp_path / "fifo.npz"
    os.mkfifo(npz_fifo)
    names = tmp_path / "names.txt"
    os.mkfifo(names)
    out = str(tmp_path / "o.dla.h5")
    good = write_dla(tmp_path / "g.dla.h5", m=4, c=2, side=8, n=2)
    return [
        (["info", str(fifo)], fifo), (["size", str(fifo)], fifo), (["export", str(fifo), "-o", str(tmp_path / "e")], fifo),
        (["convert", "npz", str(fifo), "-o", out], fifo), (["convert", "auto", str(fifo), "-o", out], fifo),
        (["convert", "mtt", str(run), "-o", out], run / "images_best.pt"),
        (["convert", "folder", str(tree.parent), "-o", out], tree / "a.png"),
        (["convert", "npz", str(tmp_path / "n.npz"), "--class-names", str(names), "-o", out], names),
        (["augment", str(good), "--labeler", str(fifo), "-o", out], fifo),
        (["train-labeler", str(npz_fifo), "-o", str(tmp_path / "ck")], npz_fifo),
        (["evaluate", str(fifo), "--test", "digits-test"], fifo),
    ]


def test_fifos_are_refused_by_name_and_never_opened(tmp_path, runner):
    fifo = tmp_path / "in.dla.h5"
    os.mkfifo(fifo)
    np.savez(tmp_path / "n.npz", images=np.zeros((2, 3, 8, 8), np.uint8), labels=np.array([0, 1]))
    for args, named in fifo_cases(tmp_path, fifo):
        fifos = [p for p in (fifo, named) if p.exists() and not p.is_file()]
        watches = [FifoWatch(p) for p in set(fifos)]
        for watch in watches:
            watch.__enter__()
        try:
            result = runner.invoke(main, args)
        finally:
            for watch in watches:
                watch.__exit__()
        assert not any(w.opened for w in watches), f"{args}: a FIFO was opened"
        one_error_line(result, named, "FIFO")


def test_folders_and_devices_as_files_are_one_line(tmp_path, good, runner):
    folder = tmp_path / "adir.dla.h5"
    folder.mkdir()
    out = str(tmp_path / "o.dla.h5")
    for args in (["info", str(folder)], ["size", str(folder)], ["export", str(folder), "-o", str(tmp_path / "e")],
                 ["convert", "npz", str(folder), "-o", out],
                 ["augment", str(good), "--labeler", str(folder), "-o", out]):
        one_error_line(runner.invoke(main, args), folder, "is a directory")
    if Path("/dev/null").exists():
        for args in (["size", "/dev/null"], ["convert", "npz", "/dev/null", "-o", out]):
            one_error_line(runner.invoke(main, args), "/dev/null", "is a device")
    assert not Path(out).exists()


# -- 5. bounded archives and integer options -----------------------------------------------------------
def test_an_npz_declaring_terabytes_is_refused_before_loading(tmp_path, runner):
    from ladd_format.labeler.sources import load_source

    bomb = write_zip(tmp_path / "bomb.npz", {"images.npy": npy_bytes((1_000_000, 3, 1000, 1000), "u1"),
                                             "labels.npy": npy_bytes((4,), "<i8", np.arange(4).tobytes())})
    assert bomb.stat().st_size < 600
    for fmt in ("npz", "auto"):
        one_error_line(runner.invoke(main, ["convert", fmt, str(bomb), "-o", str(tmp_path / "o.dla.h5")]),
                       bomb, "'images.npy' declares 3,000,000,000,000 bytes")
    with pytest.raises(InputError, match="declares 3,000,000,000,000 bytes"):
        load_source(str(bomb))
    assert not (tmp_path / "o.dla.h5").exists()


@pytest.mark.parametrize("case,message", [
    ("ratio", "more than deflate's 1032x"),
    ("bzip2", "compression method 12"),
    ("object", "object arrays (pickles)"),
    ("not_npy", "is not a .npy array"),
    ("empty_dtype", "elements of the empty dtype"),
    ("stored_claims_more", "claims 1,000,000 bytes but stores"),
])
def test_npz_members_are_bounded_by_what_they_hold(tmp_path, runner, case, message):
    from ladd_format.converters.inputs import check_npz
    from ladd_format.converters.rawset import load_zca_stats

    path = tmp_path / "x.npz"
    labels = npy_bytes((2,), "<i8", np.arange(2).tobytes())
    if case == "ratio":
        write_zip(path, {"images.npy": npy_bytes((2, 3, 8, 8), "u1", bytes(384)), "labels.npy": labels})
        forge_uncompressed_size(path, "images.npy", 10 ** 9)
    elif case == "bzip2":
        write_zip(path, {"images.npy": npy_bytes((2,), "u1", bytes(2)), "labels.npy": labels}, zipfile.ZIP_BZIP2)
    elif case == "object":
        np.savez(path, images=np.array([{"a": 1}, None], dtype=object), labels=np.arange(2))
    elif case == "not_npy":
        write_zip(path, {"images.npy": b"just some bytes, not an array", "labels.npy": labels})
    elif case == "empty_dtype":
        write_zip(path, {"images.npy": npy_bytes((10 ** 12,), None, descr="|V0"), "labels.npy": labels})
    else:
        write_zip(path, {"images.npy": npy_bytes((2,), "u1", bytes(2)), "labels.npy": labels}, zipfile.ZIP_STORED)
        forge_uncompressed_size(path, "images.npy", 1_000_000)
    with pytest.raises(InputError, match=re.escape(message)) as info:
        check_npz(path)
    assert str(path) in str(info.value)
    one_error_line(runner.invoke(main, ["convert", "npz", str(path), "-o", str(tmp_path / "o.dla.h5")]), path, message)
    with pytest.raises(InputError, match=re.escape(message)):
        load_zca_stats(path)


@pytest.mark.parametrize("case,message", [("lzma", "compression method 14"), ("ratio", "more than deflate's 1032x")])
def test_zip_pt_files_are_bounded_before_torch_reads_them(tmp_path, case, message):
    from ladd_format.converters.inputs import load_pt

    path = tmp_path / "images_best.pt"
    if case == "lzma":
        write_zip(path, {"t/data.pkl": b"\x80\x02K\x01.", "t/version": b"3\n"}, zipfile.ZIP_LZMA)
    else:
        write_zip(path, {"t/data.pkl": b"\x80\x02K\x01.", "t/data/0": bytes(4096)})
        forge_uncompressed_size(path, "t/data/0", 10 ** 9)
    with pytest.raises(InputError, match=message) as info:
        load_pt(path)
    assert str(path) in str(info.value)


def test_a_real_pt_file_still_loads(tmp_path):
    import torch

    from ladd_format.converters.inputs import load_pt
    torch.save(torch.arange(6), tmp_path / "t.pt")
    assert load_pt(tmp_path / "t.pt").tolist() == list(range(6))


def test_grid_size_is_bounded():
    assert geometry.MAX_GRID_N == 64 and geometry.boxes(128, 128, 64, 0.5).shape == (64 * 64, 4)
    for n in (0, 65, 10 ** 6):
        with pytest.raises(ValueError, match="grid size n must lie in 1..64"):
            geometry.boxes(128, 128, n, 0.5)


def test_the_writer_stores_grids_up_to_45_and_refuses_larger_in_one_line(tmp_path):
    """The boxes of N = 45 fit one HDF5 attribute message, those of 46 do not (spec 2.4, note): the
    writer refuses N = 46 before creating anything, instead of HDF5's 'object header message is too
    large' at the end."""
    from ladd_format import DenseSpec, DLAWriter, open_dla
    from ladd_format.errors import InputError

    assert geometry.MAX_WRITTEN_GRID_N == 45
    images = np.zeros((1, 3, 64, 64), np.uint8)
    with DLAWriter(tmp_path / "45.dla.h5", num_classes=2, image_shape=(3, 64, 64), mean=(0.5,) * 3, std=(0.5,) * 3,
                   dense=DenseSpec(45, 0.5)) as w:
        w.append(images, [0], dense=np.full((1, 45 * 45, 2), 0.5, np.float32))
    with open_dla(tmp_path / "45.dla.h5") as f:
        assert f.boxes.shape == (2025, 4) and f.n == 45
    with pytest.raises(InputError, match=r"grid size N = 46: this writer stores N <= 45"):
        DLAWriter(tmp_path / "46.dla.h5", num_classes=2, image_shape=(3, 64, 64), mean=(0.5,) * 3, std=(0.5,) * 3,
                  dense=DenseSpec(46, 0.5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["45.dla.h5"]


def test_integer_options_that_size_allocations_are_bounded(tmp_path, good, runner):
    out = str(tmp_path / "o.dla.h5")
    lab = str(tmp_path / "l.safetensors")
    cases = [
        (["augment", str(good), "--labeler", lab, "-o", out, "-n", "46"], "-n (grid size N) must lie in 1..45, got 46"),
        (["augment", str(good), "--labeler", lab, "-o", out, "-n", "0"], "grid size"),
        (["augment", str(good), "--labeler", lab, "-o", out, "--shards", "100000"], "--shards must lie in 1..256"),
        (["train-labeler", "digits", "-o", str(tmp_path / "ck"), "--image-size", "100000"],
         "--image-size must lie in 1..4096"),
        (["train-labeler", "digits", "-o", str(tmp_path / "ck"), "--width", "0"], "--width must lie in 1..4096"),
        (["train-labeler", "digits", "-o", str(tmp_path / "ck"), "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["evaluate", str(good), "--test", "digits-test", "--seeds", "0"], "--seeds must be >= 1, got 0"),
        (["evaluate", str(good), "--test", "digits-test", "--arch-option", "depth=99999"], "values must lie in 0..4096"),
        (["size", str(good), "--method", "zstd", "--level", "99"], "zstd level must lie in"),
    ]
    for args, message in cases:
        result = runner.invoke(main, args)
        if result.exit_code == 2:              # click's usage error: one "Error:" line, no traceback
            assert message in result.output and "Traceback" not in result.output
        else:
            one_error_line(result, message)
    assert not Path(out).exists() and not (tmp_path / "ck").exists()


def test_a_class_count_inferred_from_a_huge_label_is_refused(tmp_path, runner):
    path = tmp_path / "big.npz"
    np.savez(path, images=np.zeros((2, 3, 8, 8), np.uint8), labels=np.array([0, 2 ** 40]))
    one_error_line(runner.invoke(main, ["convert", "npz", str(path), "-o", str(tmp_path / "o.dla.h5")]), path,
                   "1099511627777 classes (max(labels) + 1) lie outside the spec's 1..16777216")
    assert not (tmp_path / "o.dla.h5").exists()


def test_training_sources_bound_their_labels(tmp_path):
    from ladd_format.labeler.sources import load_source

    images = np.zeros((3, 3, 8, 8), np.uint8)
    cases = [(np.array([0, 1, 2 ** 40]), "labels must lie in 0..C-1"), (np.array([0, -1, 1]), "found -1..1"),
             (np.array([0.5, 1.0, 2.0]), "labels must be integers")]
    for labels, message in cases:
        path = tmp_path / "s.npz"
        np.savez(path, images=images, labels=labels)
        with pytest.raises(InputError, match=message):
            load_source(str(path))
    np.savez(tmp_path / "named.npz", images=images, labels=np.array([0, 1, 2]), class_names=np.array(["a", "b"]))
    with pytest.raises(InputError, match="the 2 class names"):
        load_source(str(tmp_path / "named.npz"))


# -- 6. labeler checkpoint metadata ----------------------------------------------------------------------
def _valid_meta() -> dict:
    return {"arch": "convnet-d3", "arch_kwargs": {"width": 4}, "num_classes": 3, "channels": 3, "image_size": 8,
            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "class_names": ["a", "b", "c"], "epoch": 1,
            "training_data": "test", "val_accuracy": 0.5}


@pytest.fixture(scope="module")
def tiny_state():
    from ladd_format.torch.models import build_model
    meta = _valid_meta()
    model = build_model(meta["arch"], num_classes=3, channels=3, image_size=8, **meta["arch_kwargs"])
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def _checkpoint(path: Path, state, meta) -> Path:
    from safetensors.torch import save_file
    text = meta if isinstance(meta, str) else json.dumps(meta)
    save_file(state, str(path), metadata={"ladd_labeler": text})
    return path


def _without(key):
    meta = _valid_meta()
    del meta[key]
    return meta


def _with(**changes):
    return {**_valid_meta(), **changes}


@pytest.mark.parametrize("meta,key", [
    (_with(mean="abc"), "'mean'"), (_with(mean=[0.5, 0.5]), "'mean'"), (_with(mean=[0.5, float("nan"), 0.5]), "'mean'"),
    (_with(std=[0.2, 0.0, 0.2]), "'std'"), (_without("epoch"), "epoch"), (_with(epoch=-1), "'epoch'"),
    (_with(num_classes=0), "'num_classes'"), (_with(num_classes="3"), "'num_classes'"),
    (_with(num_classes=3.5), "'num_classes'"), (_with(num_classes=True), "'num_classes'"),
    (_with(num_classes=10 ** 9), "'num_classes'"), (_with(channels=100000), "'channels'"),
    (_with(image_size=10 ** 6), "'image_size'"), (_with(arch=5), "'arch'"),
    (_with(arch_kwargs={"width": 10 ** 9}), "'arch_kwargs'"), (_with(arch_kwargs=[4]), "'arch_kwargs'"),
    (_with(arch_kwargs={"num_classes": 4}), "'arch_kwargs'"), (_with(class_names=["a"]), "'class_names'"),
    (_with(training_data=7), "'training_data'"), (_with(val_accuracy="high"), "'val_accuracy'"),
    (_with(num_classes=1000), "tensor"), (_with(arch="convnet-d5"), "tensor"), (_with(arch="nope"), "buildable"),
    ("not json", "not JSON"), ([1, 2], "JSON object"),
])
def test_checkpoint_metadata_is_checked_key_by_key(tmp_path, tiny_state, meta, key):
    from ladd_format.labeler.checkpoint import load_checkpoint

    path = _checkpoint(tmp_path / "bad.safetensors", tiny_state, meta)
    with pytest.raises(InputError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert str(path) in text and key in text and "\n" not in text


def test_a_valid_checkpoint_loads_and_a_bad_one_is_one_cli_line(tmp_path, tiny_state, runner):
    from ladd_format.labeler.checkpoint import load_checkpoint

    good = _checkpoint(tmp_path / "good.safetensors", tiny_state, _valid_meta())
    assert load_checkpoint(good).num_classes == 3
    bad = _checkpoint(tmp_path / "bad.safetensors", tiny_state, _with(mean="abc"))
    plain = write_dla(tmp_path / "d.dla.h5", m=3, c=3, side=8, codec=None)
    result = runner.invoke(main, ["augment", str(plain), "--labeler", str(bad), "-o", str(tmp_path / "o.dla.h5")])
    one_error_line(result, bad, "'mean'")


# -- 7. size, export and info on odd files -----------------------------------------------------------------
def _edit(path: Path, fn, seal: bool) -> Path:
    with h5py.File(path, "r+") as f:
        fn(f)
        if seal and reseal is not None:
            reseal(f)
    return path


def _set(obj: str, key: str, value):
    return lambda f: (f[obj] if obj != "/" else f).attrs.__setitem__(key, value)


def _relabel(value):
    def fn(f):
        labels = f["labels"][()]
        labels[1] = value
        f["labels"][...] = labels
    return fn


def _empty(f):
    for name in ("images", "labels", "dense/probs"):
        ds = f[name]
        shape, dtype = (0,) + ds.shape[1:], ds.dtype
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype, maxshape=(None,) + shape[1:],
                         chunks=(1,) + shape[1:] if len(shape) > 1 else (8,), fletcher32=True)


def _sparse(f):
    del f["images"]
    f.create_dataset("images", shape=(6, 3, 8, 100_000), dtype="u1", chunks=(1, 3, 8, 100_000), fletcher32=True)


EDITS = {   # name -> (edit, what my size/export checks say behind a lax reader, or None: nothing to refuse)
    "num_classes_0": (_set("/", "num_classes", 0), "num_classes must be an integer >= 1"),
    "no_images": (_empty, "holds no images"),
    "no_probs": (lambda f: f["dense"].__delitem__("probs"), "is missing"),
    "label_too_big": (_relabel(7), "label 7 of image 1 is outside 0..2"),
    "label_negative": (_relabel(-2), "label -2 of image 1 is outside 0..2"),
    "names_short": (_set("/", "class_names", np.array([b"a", b"b"])), "class_names has 2 entries for 3 classes"),
    "boxes_outside": (_set("dense", "boxes", np.array([[0, 0, 99, 99]] * 4, np.int32)), "inside the 8x8 image"),
    "boxes_flat": (_set("dense", "boxes", np.array([1, 2, 3], np.int32)), "inside the 8x8 image"),
    "n_100": (_set("dense", "n", 100), "grid size n must lie in 1..64"),
    "sparse_images": (_sparse, "but the file stores"),
}


@pytest.mark.parametrize("seal", [False, True], ids=["edited", "resealed"])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_odd_files_give_one_line_naming_the_file(tmp_path, runner, edit, seal):
    path = _edit(write_dla(tmp_path / "odd.dla.h5", m=6, c=3, side=8, n=2), EDITS[edit][0], seal)
    for args in (["export", str(path), "--format", "npz", "-o", str(tmp_path / "o.npz")], ["info", str(path)],
                 ["info", str(path), "--json"], ["size", str(path)]):
        one_error_line(runner.invoke(main, args), path)
    assert not (tmp_path / "o.npz").exists() and partials(tmp_path) == []


@pytest.mark.parametrize("seal", [False, True], ids=["edited", "resealed"])
def test_a_topk_index_beyond_the_classes_is_one_line(tmp_path, runner, seal):
    def beyond(f):
        index = f["dense/topk_index"][()]
        index[0, 0, 0] = 5
        f["dense/topk_index"][...] = index
    path = _edit(write_dla(tmp_path / "topk.dla.h5", m=6, c=3, side=8, n=2, codec="topk", codec_config={"k": 2}),
                 beyond, seal)
    out = tmp_path / "o.npz"
    for args in (["export", str(path), "--format", "npz", "-o", str(out)], ["info", str(path)], ["size", str(path)]):
        one_error_line(runner.invoke(main, args), path)
    assert not out.exists() and partials(tmp_path) == []
    from ladd_format.export import _dense
    with LaxReader(path) as view, pytest.raises(InputError, match="dense labels cannot be decoded") as info:
        _dense(view)                                                   # the decode itself indexes out of range
    assert str(path) in str(info.value) and "/dense" in str(info.value)


class LaxReader:
    """What a reader that checks nothing would hand ``size`` and ``export``: the raw values."""

    def __init__(self, path):
        self.path = Path(path)
        self.h5 = h5py.File(self.path, "r")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.h5.close()

    num_images = property(lambda self: self.h5["images"].shape[0])
    num_classes = property(lambda self: int(self.h5.attrs["num_classes"]))
    image_shape = property(lambda self: tuple(self.h5["images"].shape[1:]))
    has_dense = property(lambda self: "dense" in self.h5)
    has_soft_labels = property(lambda self: "soft_labels" in self.h5)
    n = property(lambda self: int(self.h5["dense"].attrs["n"]))
    ipc = property(lambda self: self.num_images / self.num_classes)

    @property
    def class_names(self):
        names = self.h5.attrs.get("class_names")
        return None if names is None else [str(v) for v in names]

    @property
    def codec(self):
        from ladd_format.codecs import codec_from_file
        return codec_from_file(self.h5["dense"].attrs, self.h5["dense"])

    def labels(self, start=0, stop=None):
        return self.h5["labels"][start:stop].astype(np.int64)

    def images(self, start=0, stop=None):
        return self.h5["images"][start:stop]

    def dense(self, start=0, stop=None):
        return self.codec.decode(self.dense_stored(start, stop), self.num_classes)

    def dense_stored(self, start=0, stop=None):
        return {name: self.h5["dense"][name][start:stop] for name in self.codec.layout(self.n ** 2, self.num_classes)}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_size_and_export_check_what_a_lax_reader_returns(tmp_path, runner, monkeypatch, edit):
    from ladd_format import export as export_module
    from ladd_format import size as size_module

    fn, message = EDITS[edit]
    path = _edit(write_dla(tmp_path / "odd.dla.h5", m=6, c=3, side=8, n=2), fn, seal=False)
    monkeypatch.setattr(size_module, "open_dla", LaxReader)
    monkeypatch.setattr(export_module, "open_dla", LaxReader)
    one_error_line(runner.invoke(main, ["export", str(path), "--format", "npz", "-o", str(tmp_path / "o.npz")]),
                   path, message)
    if edit not in ("label_too_big", "label_negative", "names_short", "boxes_outside", "boxes_flat", "n_100"):
        one_error_line(runner.invoke(main, ["size", str(path)]), path, message)   # size reads no labels or boxes
    assert not (tmp_path / "o.npz").exists() and partials(tmp_path) == []


def test_size_refuses_what_it_would_divide_by_and_datasets_the_file_cannot_hold(tmp_path):
    from ladd_format.size import measure_arrays
    from ladd_format.spec.checks import check_dataset

    images, labels = np.zeros((2, 3, 4, 4), np.uint8), np.array([0, 1])
    with pytest.raises(LaddError, match="num_classes must be an integer >= 1"):
        measure_arrays(images, labels, None, num_classes=0)
    with pytest.raises(LaddError, match="holds no images"):
        measure_arrays(images[:0], labels[:0], None, num_classes=2)
    assert measure_arrays(images, labels, None, num_classes=np.int64(2)).num_images == 2
    with h5py.File(tmp_path / "raw.h5", "w") as f:
        f.create_dataset("sparse", shape=(10 ** 6, 1000), dtype="u1", chunks=(1, 1000))
        f.create_dataset("external", shape=(8,), dtype="<i8", external=[("/dev/zero", 0, h5py.h5f.UNLIMITED)])
        f.create_dataset("scalar", data=3)
        f.create_dataset("strings", data=np.array([b"a", b"b"], dtype=h5py.string_dtype()))
        f.create_group("group")
        f.create_dataset("fine", data=np.arange(10))
    with h5py.File(tmp_path / "raw.h5", "r") as f:
        for name, error, message in [("sparse", ShapeError, "declares 1,000,000,000 bytes"),
                                     ("external", InputError, "stored outside this file"),
                                     ("scalar", ShapeError, "at least one axis"), ("strings", LaddError, "numbers"),
                                     ("group", MissingFieldError, "is not a dataset")]:
            with pytest.raises(error, match=message):
                check_dataset(f[name], tmp_path / "raw.h5")
        assert check_dataset(f["fine"], "raw.h5").shape == (10,)


def test_export_checks_raise_the_documented_errors(tmp_path):
    from ladd_format.export import check_exportable

    expected = {"label_too_big": LabelRangeError, "names_short": ShapeError, "boxes_outside": GeometryError,
                "n_100": GeometryError, "no_probs": MissingFieldError}
    for edit, error in expected.items():
        path = _edit(write_dla(tmp_path / f"{edit}.dla.h5", m=6, c=3, side=8, n=2), EDITS[edit][0], seal=False)
        with LaxReader(path) as view, pytest.raises(error, match=EDITS[edit][1]):
            check_exportable(view)
    with LaxReader(write_dla(tmp_path / "fine.dla.h5", m=6, c=3, side=8, n=2)) as view:
        assert check_exportable(view).tolist() == [0, 1, 2, 0, 1, 2]


def test_info_prints_odd_values_without_indexing_out_of_range(tmp_path, good, runner, monkeypatch):
    class OddFile:
        has_stream = False

        def __init__(self, path):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def info(self):
            return {"path": "x", "format_version": "1.1", "num_images": 0, "num_classes": 0, "ipc": "n/a",
                    "image_shape": [3, 8, 8], "image_dtype": "uint8", "space": "pixel255", "file_bytes": 10,
                    "class_names": "abc", "mean": [[0.5, 0.5]], "std": 0.25, "soft_labels": None,
                    "dense": {"n": 2, "ratio": "x", "codec": {"name": "float32"}, "temperature": None,
                              "boxes": [], "labeler": "none"},
                    "provenance": {"tool": "t", "inputs": 42}}

    monkeypatch.setattr(cli_info, "open_dla", OddFile)
    monkeypatch.setattr(cli_info, "scan_values", lambda f: None)
    result = runner.invoke(main, ["info", str(good)])
    assert result.exit_code == 0, result.output
    assert "IPC n/a" in result.output and "boxes       malformed" in result.output
    assert "0 input file(s)" in result.output and "R=x" in result.output


def test_a_checkpoint_destination_that_is_a_folder_is_refused(tmp_path):
    import torch

    from ladd_format.labeler.checkpoint import save_checkpoint
    (tmp_path / "labeler-e001.safetensors").mkdir()
    with pytest.raises(OutputExistsError, match="is a directory"):
        save_checkpoint(torch.nn.Linear(2, 2), {"arch": "x"}, tmp_path / "labeler-e001.safetensors")
    assert partials(tmp_path) == []


def forge_central_field(path: Path, member: str, offset: int, fmt: str, value: int) -> None:
    """Rewrite one field of ``member``'s central directory entry (offset from its signature)."""
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    while at >= 0:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + name_len].decode() == member:
            struct.pack_into(fmt, data, at + offset, value)
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"no member {member}")


def test_npz_archive_refusals_word_for_word(tmp_path):
    """Each archive check of converters.inputs on its own, with the whole message it gives."""
    from ladd_format.converters.inputs import check_npz

    def refused(path):
        with pytest.raises(InputError) as info:
            check_npz(path)
        return str(info.value)

    labels = npy_bytes((2,), "<i8", np.arange(2).tobytes())
    p = tmp_path / "not_zip.npz"
    p.write_bytes(b"not a zip at all" * 4)
    assert refused(p) == f"{p}: not a readable .npz archive (a zip archive): File is not a zip file"
    p = write_zip(tmp_path / "encrypted.npz", {"images.npy": labels})
    forge_central_field(p, "images.npy", 8, "<H", 0x1)                       # general purpose flag: encrypted
    assert refused(p) == f"{p}: member 'images.npy' is encrypted, which is refused"
    p = write_zip(tmp_path / "total.npz", {"a.npy": labels, "b.npy": labels})
    size = p.stat().st_size
    for name in ("a.npy", "b.npy"):                                          # each within 1032x of what it claims
        forge_central_field(p, name, 20, "<I", 100_000)                       # ... to hold compressed
        forge_central_field(p, name, 24, "<I", 100_000_000)
    assert refused(p) == f"{p}: members claim 200,000,000 bytes in all, more than 1032x the file's {size:,}"
    p = write_zip(tmp_path / "negative.npz", {"images.npy": npy_bytes((-1, 2), "<f8", bytes(16))})
    assert refused(p) == f"{p}: member 'images.npy' declares a negative shape (-1, 2)"
    short = npy_bytes((10,), "<f8", bytes(40))
    p = write_zip(tmp_path / "short.npz", {"images.npy": short})
    assert refused(p) == f"{p}: member 'images.npy' declares 80 bytes ((10,) float64) but holds 40: refused before " \
                         "loading"
    # a damaged local header: the directory reads, the member does not
    p = write_zip(tmp_path / "local.npz", {"images.npy": labels}, zipfile.ZIP_STORED)
    data = bytearray(p.read_bytes())
    data[0:4] = b"PK\x00\x00"
    p.write_bytes(bytes(data))
    assert refused(p) == f"{p}: not a readable .npz archive: Bad magic number for file header"


def test_npz_members_of_every_npy_version_are_read(tmp_path):
    from ladd_format.converters.inputs import check_npz

    members = {}
    for version in ((1, 0), (2, 0), (3, 0)):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.arange(6, dtype="<i4").reshape(2, 3), version=version)
        members[f"v{version[0]}.npy"] = buf.getvalue()
    p = write_zip(tmp_path / "versions.npz", members)
    assert check_npz(p) == {f"v{v}": ((2, 3), np.dtype("<i4")) for v in (1, 2, 3)}
