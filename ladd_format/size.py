"""Storage accounting: the paper's zip measurement made exact (spec section 7).

Each stored array is serialised as ``.npy`` and streamed, a block at a time, into a zip archive
(``ZIP_DEFLATED``, default level) or into one zstd frame per array. ``base`` holds the images and
hard labels; ``D_LA`` adds the dense arrays as stored. Works from a file (:func:`measure_file`) or
from arrays in memory (:func:`measure_arrays`), with identical numbers for identical arrays.

Files are untrusted: before a dataset is read, :func:`~ladd_format.spec.checks.check_dataset` bounds it by what the file
holds (no external or virtual storage, numeric dtype, declared bytes at most 1032 times the bytes
stored, deflate's largest ratio), and a file with no images or fewer than one class is refused in
one line rather than divided by.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np
import zstandard

from .atomic import require_regular_file
from . import spec as S
from .errors import AttributeValueError, InputError, ShapeError
from .reader import open_dla, read_rows
from .rows import checked_row_bytes
from .spec.checks import check_counts, check_dataset, dense_datasets
from .spec.limits import MAX_CHUNKS_PER_READ, READ_BLOCK_BYTES
from .spec.rules import Rule

METHODS = ("zip", "zstd")
DEFAULT_ZSTD_LEVEL = 3
MIN_ZSTD_LEVEL = -(1 << 17)


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else 0.0


@dataclass
class SizeReport:
    """Sizes in bytes; percentages relative to ``base_bytes``."""

    method: str
    level: int | None
    num_images: int
    num_classes: int
    ipc: float
    raw_base_bytes: int        # uncompressed bytes of images + labels
    raw_dense_bytes: int       # uncompressed bytes of the dense arrays as stored
    images_bytes: int          # compressed bytes of the images member alone
    base_bytes: int
    dla_bytes: int
    dense_bytes: int           # dla_bytes - base_bytes
    overhead_pct: float
    ipc_plus_one_bytes: float
    ipc_plus_one_pct: float
    soft_labels_bytes: int | None  # global soft labels compressed alone, reported separately

    def as_dict(self) -> dict:
        return asdict(self)


class _Member:
    """One array to serialise: its name, dtype, shape and a block iterator."""

    def __init__(self, name: str, dtype: np.dtype, shape: tuple, blocks: Callable[[], Iterator[np.ndarray]]):
        self.name, self.dtype, self.shape, self.blocks = name, np.dtype(dtype), tuple(shape), blocks

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def header(self) -> bytes:
        buf = io.BytesIO()
        meta = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        try:
            np.lib.format.write_array_header_1_0(buf, meta)
        except ValueError:
            buf = io.BytesIO()
            np.lib.format.write_array_header_2_0(buf, meta)
        return buf.getvalue()


def _array_member(name: str, array: np.ndarray) -> _Member:
    array = np.ascontiguousarray(array)
    return _Member(name, array.dtype, array.shape, lambda: iter([array]))


def _dataset_member(name: str, ds, path, read: Callable[[int, int], np.ndarray] | None = None,
                    row_bytes: int | None = None) -> _Member:
    """A stored dataset as a member, read ``read(start, stop)`` rows at a time (default: raw rows);
    a file's datasets are read through its reader, so that its checks apply. ``row_bytes``: what
    one row costs the read (default: its stored bytes), which sizes the blocks."""
    check_dataset(ds, path)
    rows = ds.shape[0]
    row_bytes = max(1, row_bytes or ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64)))
    step = max(1, min(READ_BLOCK_BYTES // row_bytes, MAX_CHUNKS_PER_READ * ds.chunks[0] if ds.chunks else READ_BLOCK_BYTES))
    read = read or (lambda start, stop: read_rows(ds, start, stop, path))

    def blocks():
        for start in range(0, rows, step):
            block = read(start, min(rows, start + step))
            if block.shape[1:] != ds.shape[1:]:
                raise ShapeError(f"rows {start}.. read as {block.shape}, the dataset is {ds.shape}", path, ds.name)
            yield block
    return _Member(name, ds.dtype, ds.shape, blocks)


def _bytes_of(block: np.ndarray, dtype: np.dtype) -> memoryview:
    return memoryview(np.ascontiguousarray(block, dtype=dtype)).cast("B")


def _zip_sizes(base: list[_Member], dense: list[_Member]) -> tuple[int, int, int]:
    """(base archive bytes, D_LA archive bytes, compressed images member bytes)."""
    with tempfile.TemporaryDirectory(prefix="ladd-size-") as tmp:
        path = os.path.join(tmp, "set.zip")

        def add(zf: zipfile.ZipFile, member: _Member) -> None:
            header = member.header()
            big = len(header) + member.nbytes >= zipfile.ZIP64_LIMIT
            with zf.open(member.name + ".npy", "w", force_zip64=big) as out:
                out.write(header)
                for block in member.blocks():
                    out.write(_bytes_of(block, member.dtype))

        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for member in base:
                add(zf, member)
            images_bytes = zf.getinfo(base[0].name + ".npy").compress_size
        base_bytes = os.path.getsize(path)
        if dense:
            with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
                for member in dense:
                    add(zf, member)
        return base_bytes, os.path.getsize(path), images_bytes


def _zstd_size(member: _Member, level: int) -> int:
    class Counter(io.RawIOBase):
        def __init__(self):
            self.count = 0

        def writable(self):
            return True

        def write(self, data):
            self.count += len(data)
            return len(data)

    sink = Counter()
    header = member.header()
    cctx = zstandard.ZstdCompressor(level=level)
    with cctx.stream_writer(sink, size=len(header) + member.nbytes, closefd=False) as writer:
        writer.write(header)
        for block in member.blocks():
            writer.write(_bytes_of(block, member.dtype))
    return sink.count


def _measure(base: list[_Member], dense: list[_Member], soft: _Member | None, num_classes: int,
             ipc: float, method: str, level: int | None) -> SizeReport:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    num_images = base[0].shape[0]
    check_counts(num_images, num_classes, None)
    if method == "zip":
        level = None
        base_bytes, dla_bytes, images_bytes = _zip_sizes(base, dense)
        soft_bytes = None if soft is None else _zip_sizes([soft], [])[0]
    else:
        level = DEFAULT_ZSTD_LEVEL if level is None else int(level)
        if not MIN_ZSTD_LEVEL <= level <= zstandard.MAX_COMPRESSION_LEVEL:
            raise InputError(f"zstd level must lie in {MIN_ZSTD_LEVEL}..{zstandard.MAX_COMPRESSION_LEVEL}, got {level}")
        sizes = [_zstd_size(m, level) for m in base]
        images_bytes = sizes[0]
        base_bytes = sum(sizes)
        dla_bytes = base_bytes + sum(_zstd_size(m, level) for m in dense)
        soft_bytes = None if soft is None else _zstd_size(soft, level)
    plus_one = num_classes * images_bytes / num_images
    return SizeReport(
        method=method, level=level, num_images=num_images, num_classes=num_classes, ipc=ipc,
        raw_base_bytes=sum(m.nbytes for m in base), raw_dense_bytes=sum(m.nbytes for m in dense),
        images_bytes=images_bytes, base_bytes=base_bytes, dla_bytes=dla_bytes,
        dense_bytes=dla_bytes - base_bytes, overhead_pct=_pct(dla_bytes - base_bytes, base_bytes),
        ipc_plus_one_bytes=plus_one, ipc_plus_one_pct=_pct(plus_one, base_bytes),
        soft_labels_bytes=soft_bytes)


def _counted(members: list[_Member], progress: Callable[[int, int], None]) -> None:
    """Make each member's blocks report ``progress(MB read so far, MB in all)`` as they are read."""
    total = sum(m.nbytes for m in members)
    done = [0]

    def wrap(blocks):
        def counted():
            for block in blocks():
                done[0] += block.nbytes
                progress(done[0] // 10**6, total // 10**6)
                yield block
        return counted

    for member in members:
        member.blocks = wrap(member.blocks)


def measure_file(path: str | os.PathLike, method: str = "zip", level: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> SizeReport:
    """Size accounting of a D_LA file, streaming its datasets (bounded memory); ``progress(MB
    read, MB in all)`` after each block."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    with open_dla(require_regular_file(path)) as f:
        h5 = f.h5
        check_counts(f.num_images, f.num_classes, f.path)
        # every block is read through the reader, so its checks (row digests, label range, codec
        # values) apply: a file verify refuses for its values is not measured as if it were fine
        base = [_dataset_member("images", h5[S.IMAGES], f.path, f.images),
                _dataset_member("labels", h5[S.LABELS], f.path, f.labels)]
        dense = []
        if f.has_dense:
            stored = dense_datasets(f)
            checked = checked_row_bytes(stored.values())       # each block reads all of them, checked
            for name, ds in stored.items():
                dense.append(_dataset_member(f"dense_{name}", ds, f.path,
                                             lambda a, b, name=name: f.dense_stored(a, b)[name], checked))
        soft = None
        if f.has_soft_labels:
            ds = check_dataset(h5[S.SOFT_LABELS], f.path)
            if ds.shape != (f.num_images, f.num_classes):
                raise ShapeError(f"must have shape ({f.num_images}, {f.num_classes}), got {ds.shape}", f.path, ds.name)
            soft = _dataset_member("soft_labels", ds, f.path, f.soft_labels)
        if progress is not None:
            _counted(base + dense + ([soft] if soft is not None else []), progress)
        return _measure(base, dense, soft, f.num_classes, _ipc(f), method, level)


def _ipc(f) -> float:
    """The file's IPC (its ``ipc`` attribute, else M / C), or a one-line error naming the attribute."""
    try:
        ipc = float(f.ipc)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        raise AttributeValueError(f"root attribute 'ipc' must be one integer, got {f.h5.attrs.get('ipc')!r}",
                                  f.path, S.ROOT_PATH, rule=Rule.ROOT) from None
    if not math.isfinite(ipc):
        raise AttributeValueError(f"ipc must be finite, got {ipc}", f.path, S.ROOT_PATH, rule=Rule.ROOT)
    return ipc


def measure_arrays(images: np.ndarray, labels: np.ndarray, dense: dict[str, np.ndarray] | None,
                   num_classes: int, method: str = "zip", level: int | None = None,
                   ipc: float | None = None) -> SizeReport:
    """Size accounting of arrays as they would be stored.

    ``dense`` is a codec's output, keyed by the stored names (``{"probs": ...}`` or
    ``{"topk_index": ..., "topk_prob": ...}``), exactly what ``codec.encode`` returns.

    ``labels`` are counted as int64, as the reference writer stores them.
    """
    base = [_array_member("images", images), _array_member("labels", np.asarray(labels, dtype="<i8"))]
    dense_members = [_array_member(f"dense_{k}", v) for k, v in (dense or {}).items()]
    check_counts(len(images), num_classes, None)
    ipc = len(images) / num_classes if ipc is None else ipc
    return _measure(base, dense_members, None, num_classes, ipc, method, level)
