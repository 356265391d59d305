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

import h5py
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
    stream: StreamSize | None = None  # the relabel stream, reported apart (spec 7; None: the file has none)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class StreamSize:
    """A relabel stream's bytes (spec 7, since 1.2), apart from base and D_LA. Bytes per record are
    per (image, epoch) slot: one record is one image in one epoch."""

    epochs: int                # E
    batches: int               # NB
    records: int               # Q
    num_classes: int           # C
    raw_bytes: int             # uncompressed bytes of the stream_<name>.npy arrays as stored
    bytes: int                 # the archive of stream_<name>.npy members (zip), or the sum of their zstd frames
    bytes_per_record: float    # bytes / records
    stored_bytes: int          # HDF5 storage of every /stream dataset in the file (digests and starts included)
    sre2l_bytes: int           # the same batches in SRe2L's layout (sre2l_stream_bytes), an estimate
    sre2l_ratio: float         # sre2l_bytes / bytes: the stream is 1/ratio of SRe2L's layout


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
        stream = stream_members(f) if f.has_stream else []
        if progress is not None:
            _counted(base + dense + ([soft] if soft is not None else []) + stream, progress)
        report = _measure(base, dense, soft, f.num_classes, _ipc(f), method, level)
        if stream:
            report.stream = _measure_stream(f, stream, report.method, report.level)
        return report


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


# -- relabel streams (spec 7, since 1.2) -----------------------------------------------------------
#: SRe2L's batch files as measured (benchmarks/stream_codecs.py, ``benchmarks/results/stream_codecs.json``
#: ``sre2l.file_bytes``): bytes of one ``torch.save`` of its six-element list at C = 1000, by batch size
SRE2L_MEASURED_FILE_BYTES = {100: 205_021, 256: 520_861, 1024: 2_076_061}
SRE2L_MEASURED_CLASSES = 1000
#: the model's largest difference from ``torch.save`` (bytes per file), over the three measurements and
#: over random B in 1..5000, C in 2..21843, batch numbers 0..999 checked against torch 2.14 (docs/relabel.md)
SRE2L_MODEL_ERROR_BYTES = 0
#: the estimate's one-line description (``ladd size`` prints it)
SRE2L_LAYOUT = "one torch.save per batch: float32 boxes, flips, int64 CutMix partners, float16 logits"

# torch.save's zip (torch >= 2.x, as SRe2L's files are written by current torch): records in this order,
# each a local header (30 B + name + a 4 B padding field, padded so that the data starts on a multiple
# of 64), the data, and a 16 B data descriptor; then a central directory entry per record (46 B +
# name), the zip64 end record and locator (56 + 20 B) and the end record (22 B). ``data.pkl`` is 645 B
# for B = 100, C = 1000 and grows with the pickle's integers (1, 2 or 4 bytes each by magnitude).
_TORCH_ALIGN = 64
_LOCAL_HEADER, _PAD_FIELD, _DESCRIPTOR, _CENTRAL, _END = 30, 4, 16, 46, 22 + 56 + 20
_SRE2L_PICKLE_REF = 645


def _pickle_int_bytes(value: int) -> int:
    """Bytes of one non-negative int in a protocol-2 pickle: BININT1 / BININT2 / BININT (opcode included)."""
    return 2 if value < 256 else 3 if value < 65536 else 5


def _sre2l_pickle_ints(b: int, c: int) -> list[int]:
    """The integers SRe2L's pickle holds that depend on B and C: each storage's numel, each tensor's
    size and stride (coords (B, 4), flip (B,), mix_index (B,), logits (B, C))."""
    return [4 * b, b, b, b * c, b, 4, b, b, b, c, 4, 1, 1, 1, c, 1]


def sre2l_file_bytes(records: int, num_classes: int, batch_number: int = 0) -> int:
    """Bytes of SRe2L's ``epoch_e/batch_{batch_number}.tar`` holding ``records`` slots of ``num_classes``
    classes, as ``torch.save`` writes it with ``--use-fp16`` and CutMix (its ``relabel.sh``): the zip
    layout above, derived record by record, equal to the files :data:`SRE2L_MEASURED_FILE_BYTES`
    gives (error :data:`SRE2L_MODEL_ERROR_BYTES`). Torch-free: nothing is written."""
    b, c = int(records), int(num_classes)
    if b < 1 or c < 1:
        raise ValueError(f"records and num_classes must be >= 1, got {b} and {c}")
    widths = sum(map(_pickle_int_bytes, _sre2l_pickle_ints(b, c)))
    pickle = _SRE2L_PICKLE_REF + widths - sum(map(_pickle_int_bytes, _sre2l_pickle_ints(100, 1000)))
    prefix = f"batch_{int(batch_number)}/"
    records_ = (("data.pkl", pickle), (".format_version", 1), (".storage_alignment", 2), ("byteorder", 6),
                ("data/0", 16 * b), ("data/1", b), ("data/2", 8 * b), ("data/3", 2 * b * c), ("version", 2),
                (".data/serialization_id", 40))
    cursor = central = 0
    for name, size in records_:
        start = cursor + _LOCAL_HEADER + len(prefix + name) + _PAD_FIELD
        cursor = start + (-start) % _TORCH_ALIGN + size + _DESCRIPTOR
        central += _CENTRAL + len(prefix + name)
    return cursor + central + _END


def sre2l_stream_bytes(batch_lengths: np.ndarray, batch_numbers: np.ndarray, num_classes: int) -> int:
    """SRe2L's bytes for a stream: the sum of :func:`sre2l_file_bytes` over its batches, batch b of
    ``batch_lengths[b]`` records numbered ``batch_numbers[b]`` inside its epoch (file ``batch_{n}.tar``);
    computed once per distinct (length, digits of n), so a stream of 2^22 batches costs little."""
    lengths = np.asarray(batch_lengths, dtype=np.int64).reshape(-1)
    numbers = np.asarray(batch_numbers, dtype=np.int64).reshape(-1)
    if lengths.size == 0:
        return 0
    digits = 1 + sum((numbers >= 10 ** k).astype(np.int64) for k in range(1, 19))
    total = 0
    for (n, d), count in zip(*np.unique(np.stack([lengths, digits], axis=1), axis=0, return_counts=True)):
        total += int(count) * sre2l_file_bytes(int(n), num_classes, 10 ** (int(d) - 1) if d > 1 else 0)
    return total


def stream_datasets(f) -> dict[str, object]:
    """The stream's datasets spec 7 measures, name (inside ``/stream``) -> h5py dataset, in the order of
    4.7's table: ``epoch_start``, ``batch_start``, ``image``, ``box``, ``flip``, the mix datasets, the
    label datasets, then (since 1.3, when the stream has a tail) ``tail/mean``, ``tail/basis``,
    ``tail/coef``, ``tail/scale``; the batch digests left out, as the other digests are. Each is
    bounded by :func:`~ladd_format.spec.checks.check_dataset` (nothing read); ``f.stream`` has checked
    the attributes, the starts (4.7) and the tail's layout (4.8)."""
    s = f.stream
    group = f.h5[S.STREAM]
    names = [S.STREAM_EPOCH_START, S.STREAM_BATCH_START, *s.spec.digested(s.num_classes)]
    if s.tail is not None:
        names += [name for name in S.STREAM_TAIL_MEMBERS if name != S.STREAM_TAIL_DIGESTS]
    return {name: check_dataset(group[name], f.path) for name in names}


def stream_member(name: str) -> str:
    """Spec 7's member name (without ``.npy``) of the stream dataset ``name`` (inside ``/stream``):
    ``image`` -> ``stream_image``, ``tail/coef`` -> ``stream_tail_coef``."""
    return "stream_" + name.replace("/", "_")


def check_stream_batches(f) -> None:
    """Read every batch of ``f``'s stream through its reader, so that its checks apply (rule 17's batch
    digests, rule 16's bounds, the codec's tolerances): a stream ``ladd verify`` refuses for its values
    is neither measured nor exported as if it were fine. One batch in memory at a time."""
    s = f.stream
    for b in range(s.num_batches):
        s.read_batch(b)


def stream_members(f) -> list[_Member]:
    """The members ``stream_<name>`` (:func:`stream_member`) of :func:`stream_datasets` (read raw, block
    by block), after :func:`check_stream_batches` has read the stream once through its reader."""
    check_stream_batches(f)
    return [_dataset_member(stream_member(name), ds, f.path) for name, ds in stream_datasets(f).items()]


def stream_stored_bytes(f) -> int:
    """Bytes the file spends on ``/stream``'s datasets, ``/stream/tail``'s included (1.3): the sum of
    their HDF5 storage sizes (``H5Dget_storage_size``: chunks as stored, compressed or not; attributes
    and object headers not counted)."""
    group = f.h5[S.STREAM]
    names = [name for name in group if group.get(name, getclass=True) is h5py.Dataset]
    if f.stream.tail is not None:
        names += list(S.STREAM_TAIL_MEMBERS)
    return sum(int(group[name].id.get_storage_size()) for name in names)


def sre2l_estimate(f) -> int:
    """SRe2L's bytes for ``f``'s stream (:func:`sre2l_stream_bytes`): one file per stored batch, numbered
    inside its epoch, with the stream's batch lengths and class count."""
    s = f.stream
    batch_start, epoch_start = s.batch_start, s.epoch_start          # checked by the reader (4.7)
    lengths = np.diff(np.append(batch_start, s.num_records))
    batches = np.arange(s.num_batches, dtype=np.int64)
    numbers = batches - epoch_start[np.searchsorted(epoch_start, batches, side="right") - 1]
    return sre2l_stream_bytes(lengths, numbers, s.num_classes)


def _measure_stream(f, members: list[_Member], method: str, level: int | None) -> StreamSize:
    """The stream's figures (:class:`StreamSize`) by ``method``: the zip archive of ``members`` alone, or
    the sum of their zstd frames at ``level``."""
    s = f.stream
    if method == "zip":
        nbytes = _zip_sizes(members, [])[0]
    else:
        nbytes = sum(_zstd_size(m, level) for m in members)
    sre2l = sre2l_estimate(f)
    return StreamSize(epochs=s.epochs, batches=s.num_batches, records=s.num_records, num_classes=s.num_classes,
                      raw_bytes=sum(m.nbytes for m in members), bytes=nbytes,
                      bytes_per_record=nbytes / max(1, s.num_records), stored_bytes=stream_stored_bytes(f),
                      sre2l_bytes=sre2l, sre2l_ratio=sre2l / nbytes if nbytes else 0.0)
