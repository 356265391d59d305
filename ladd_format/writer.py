"""Streaming writer of D_LA files (spec sections 2-6).

Batches are appended in order, so sets larger than memory can be written. The file is built under a
temporary name in the destination folder and renamed into place only by :meth:`DLAWriter.close`
after every digest is written; an exception, or a killed process, leaves the destination as it was.

Example::

    with DLAWriter("set.dla.h5", num_classes=10, image_shape=(3, 128, 128),
                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                   dense=DenseSpec(n=5, ratio=0.625, codec=make_codec("float32"))) as w:
        w.append(images_uint8, labels, dense=probs)      # (B,3,128,128), (B,), (B,25,10)

A relabel stream (spec 4.7) is declared with ``stream=StreamSpec(epochs=E, batch_size=B,
crop_size=(224, 224), mix="cutmix")`` and appended one batch at a time, in epoch order, before, after
or between the image batches::

        w.append_stream(epoch, image, box, flip, mix_partner=perm, mix_box=mix_box, logits=z)  # (n,), (n,4), (n,), (n,), (4,), (n,C)
"""

from __future__ import annotations

import hashlib
import math
import operator
import os
from array import array
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import atomic, geometry, integrity, provenance
from . import spec as S
from .codecs import Codec, make_codec
from .errors import InputError, LaddError, ProbabilityError, ShapeError
from .spec import limits
from .stream import checks as stream_checks
from .stream.declaration import StreamSpec

CHUNK_TARGET_BYTES = 1 << 16  # row-chunked datasets other than /images: about 64 KiB per chunk
INPUT_PROB_TOLERANCE = 1e-3
#: /stream datasets (4.7) carry HDF5's shuffle + gzip at this level (spec 2 allows both): a stream
#: is 40-100x the images and compresses about 2x; images and every other dataset stay uncompressed.
#: Measured on 60,000 records of topk:k=20,values=uint8 (C = 1000, peaked labels, RandomResizedCrop
#: boxes of 224 px images, CutMix), 75.2 raw bytes a record: levels 1 / 4 / 6 / 9 store 39.5 / 38.0
#: / 37.2 / 36.8 B a record, compress at 104 / 78 / 21 / 4 MB/s and decompress at 550 / 530 / 550 /
#: 310 MB/s (2-core CPU): level 4 is within 2% of the smallest at 4x level 6's writing speed.
STREAM_GZIP_LEVEL = 4
#: chunks of the /stream datasets hold about this many bytes uncompressed (a chunk is the unit gzip
#: compresses and a read decompresses). 256 KiB: a few batches of records of most codecs, as small
#: as 64 KiB chunks once compressed (38.1 against 38.2 B a record above), and small enough for
#: HDF5's default 1 MiB chunk cache, so reading a stream batch by batch decompresses each chunk once.
#: Reading the 600 batches of 100 records above one by one (``StreamReader.read_batch``, checked):
#: 82 ms with 256 KiB chunks, 112 ms with 64 KiB, 186 ms with 1 MiB (which the cache cannot hold).
STREAM_CHUNK_BYTES = 1 << 18


@dataclass
class DenseSpec:
    """What the ``/dense`` group of a D_LA declares (spec 4.5)."""

    n: int
    ratio: float
    codec: Codec = field(default_factory=lambda: make_codec("float32"))
    temperature: float = 1.0
    labeler: dict = field(default_factory=lambda: {"arch": "unknown"})

    @property
    def num_sub(self) -> int:
        return self.n * self.n


class _Stream:
    """One resizable, fletcher32-checksummed dataset with a running SHA-256 of its bytes.

    The SHA-256 of a block runs on a worker thread (hashlib releases the GIL) while HDF5 writes the
    same block; :meth:`append` returns only when both are done, so the caller may reuse its array.
    """

    def __init__(self, group: h5py.Group, name: str, tail: tuple[int, ...], dtype, chunk_rows: int,
                 hasher: ThreadPoolExecutor, gzip_level: int | None = None):
        self.dtype = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)
        self.tail = tuple(tail)
        filters = {} if gzip_level is None else {"shuffle": True, "compression": "gzip",
                                                  "compression_opts": int(gzip_level)}
        self.ds = group.create_dataset(
            name, shape=(0, *self.tail), maxshape=(None, *self.tail), dtype=self.dtype,
            chunks=(chunk_rows, *self.tail), fletcher32=True, **filters)
        self.digest = hashlib.sha256()
        self.hasher = hasher
        self.rows = 0

    def append(self, block: np.ndarray, whole: bool = False) -> np.ndarray:
        """Append rows; returns their SHA-256 digests ``(B, 32)`` (spec 2.2), or with ``whole`` the
        ``(32,)`` SHA-256 of all of the block's bytes (a stream's batch digest, 4.7)."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        n = block.shape[0]
        hashed = self.hasher.submit(self._hash_whole if whole else self._hash, block)
        try:
            self.ds.resize(self.rows + n, axis=0)
            self.ds[self.rows:self.rows + n] = block
        finally:
            digests = hashed.result()
        self.rows += n
        return digests

    def _hash(self, block: np.ndarray) -> np.ndarray:
        self.digest.update(memoryview(block).cast("B") if block.size else b"")
        return integrity.row_digests(block)

    def _hash_whole(self, block: np.ndarray) -> np.ndarray:
        data = memoryview(block).cast("B") if block.size else b""
        self.digest.update(data)
        return np.frombuffer(hashlib.sha256(data).digest(), dtype=np.uint8)

    def write_whole(self, array: np.ndarray) -> None:
        """Write the whole dataset at once (``epoch_start``, ``batch_start``) and its sha256."""
        self.append(array)
        self.finish()

    def finish(self) -> None:
        self.ds.attrs[S.SHA256_ATTR] = self.digest.hexdigest()


def _rows_per_chunk(tail: Sequence[int], itemsize: int) -> int:
    row_bytes = max(1, int(np.prod(tail, dtype=np.int64)) * itemsize)
    return max(1, CHUNK_TARGET_BYTES // row_bytes)


def _string_array(values: Iterable[str]) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=h5py.string_dtype("utf-8"))


def _write_model_attrs(group: h5py.Group, description: dict) -> None:
    """``/dense/labeler`` or ``/stream/teacher`` attributes (4.5): None values left out, mean/std as
    float64 arrays, integers as int64, strings as they are."""
    for key, value in description.items():
        if value is None:
            continue
        if key in (S.MEAN_ATTR, S.STD_ATTR):
            value = np.asarray(value, dtype=np.float64)
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = np.int64(value)
        group.attrs[key] = value


def _as_int(value) -> int | None:
    try:
        return None if isinstance(value, (bool, np.bool_)) else operator.index(value)
    except TypeError:
        return None


class DLAWriter:
    """Write a D_LA (or a plain distilled set D when ``dense`` is None) batch by batch.

    Args:
        path: destination file; nothing appears there until :meth:`close` succeeds.
        num_classes: C.
        image_shape: (K, H, W) of every image.
        image_dtype: ``uint8`` (space ``pixel255``), or ``float16`` / ``float32`` with ``space``.
        space: for float images, one of ``pixel01``, ``normalized``, ``zca``.
        mean, std: per-channel normalisation (K values each), spec 4.4.
        dense: the dense-label declaration, or None for a plain set D.
        stream: a relabel stream's declaration (spec 4.7), or None; its batches are appended with
            :meth:`append_stream`, before, after or between the image batches.
        soft_kind: ``logits`` or ``probs`` when global soft labels will be appended.
        overwrite: replace an existing destination (otherwise :class:`OutputExistsError`).
        converter, inputs, report: provenance (spec 4.6); ``inputs`` are paths of input files.
        created: the provenance time, ISO 8601 UTC with ``Z``; by default the time given by the
            environment variable ``SOURCE_DATE_EPOCH`` when it is set (reproducible files), else now.
        max_chunk_rows: cap on the rows per chunk of the datasets other than ``/images`` (whose
            chunks are always one image). By default chunks hold about 64 KiB (``/labels``: 4096
            rows); small caps keep tiny files small, e.g. the spec's test vectors.
    """

    def __init__(self, path: str | os.PathLike, *, num_classes: int, image_shape: Sequence[int],
                 mean: Sequence[float], std: Sequence[float], image_dtype: str = "uint8",
                 space: str | None = None, dense: DenseSpec | None = None,
                 soft_kind: str | None = None, soft_dtype: str = "float32",
                 class_names: Sequence[str] | None = None, source_dataset: str | None = None,
                 distillation: str | None = None, ipc: int | None = None,
                 converter: str = "python", inputs: Sequence[str | os.PathLike] = (),
                 report: dict | None = None, root_attrs: dict | None = None,
                 created: str | None = None, overwrite: bool = False,
                 max_chunk_rows: int | None = None, stream: StreamSpec | None = None):
        self.dest = atomic.check_destination(path, overwrite)
        self.overwrite = overwrite
        created = created or provenance.utc_now()   # SOURCE_DATE_EPOCH when set (spec 4.6); checked first
        self.num_classes = int(num_classes)
        if self.num_classes < 1:
            raise InputError(f"num_classes must be >= 1, got {num_classes}", self.dest)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ShapeError(f"image_shape must be (K, H, W) with positive sides, got {tuple(image_shape)}",
                             self.dest)
        self.image_shape = tuple(int(v) for v in image_shape)
        k, height, width = self.image_shape
        self.image_dtype = np.dtype(image_dtype)
        if self.image_dtype == np.uint8:
            if space not in (None, S.SPACE_UINT8):
                raise InputError(f"uint8 images have space {S.SPACE_UINT8!r}, not {space!r}", self.dest)
            self.space = S.SPACE_UINT8
        elif self.image_dtype in (np.float16, np.float32):
            if space not in S.SPACES_FLOAT:
                raise InputError(f"float images need space in {S.SPACES_FLOAT}, got {space!r}", self.dest)
            self.space = space
        else:
            raise InputError(f"images must be uint8, float16 or float32, not {self.image_dtype}", self.dest)
        self.mean = self._channel_stats("mean", mean, k)
        self.std = self._channel_stats("std", std, k)
        if np.any(self.std <= 0):
            raise InputError(f"std must be > 0 for every channel, got {self.std.tolist()}", self.dest)
        if class_names is not None and len(class_names) != self.num_classes:
            raise InputError(f"class_names has {len(class_names)} entries, num_classes is {self.num_classes}",
                             self.dest)
        texts = {f"class name {i}": v for i, v in enumerate(class_names or ())}
        texts.update(source_dataset=source_dataset or "", distillation=distillation or "")
        for key, value in texts.items():
            if "\0" in str(value):
                raise InputError(f"{key} {str(value)!r} contains a NUL character: a string's value ends at its "
                                 "first NUL (spec section 2)", self.dest)
        if soft_kind not in (None, *S.SOFT_KINDS):
            raise InputError(f"soft label kind must be one of {S.SOFT_KINDS}, got {soft_kind!r}", self.dest)
        self.soft_kind = soft_kind
        self.max_chunk_rows = max_chunk_rows
        self.dense = dense
        if dense is not None:
            self._check_dense_spec(dense, height, width)
        self.stream_spec = stream
        if stream is not None:
            self._check_stream_spec(stream)
        input_records = [provenance.describe_input(p) for p in inputs]

        self.tmp = atomic.temporary_sibling(self.dest)
        self._closed = False
        try:
            self.hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ladd-sha256")
            self.h5 = h5py.File(self.tmp, "w")
            self._write_header(class_names, source_dataset, distillation, ipc, root_attrs)
            self._write_provenance(converter, input_records, report, created)
            self.images = _Stream(self.h5, S.IMAGES, self.image_shape, self.image_dtype, 1, self.hasher)
            self.images.ds.attrs[S.SPACE_ATTR] = self.space
            self.labels = _Stream(self.h5, S.LABELS, (), np.int64, self._chunk_rows((), 8, 4096), self.hasher)
            self.soft = None
            if soft_kind is not None:
                tail = (self.num_classes,)
                self.soft = _Stream(self.h5, S.SOFT_LABELS, tail, soft_dtype,
                                    self._chunk_rows(tail, np.dtype(soft_dtype).itemsize), self.hasher)
                self.soft.ds.attrs[S.KIND_ATTR] = soft_kind
            self.dense_streams: dict[str, _Stream] = {}
            if dense is not None:
                self._write_dense_group(dense, height, width)
            self.row_paths = integrity.row_datasets(self.h5, list(self.dense_streams))
            tail = (len(self.row_paths), integrity.DIGEST_BYTES)
            self.row_digests = _Stream(self.h5, S.ROW_DIGESTS, tail, np.uint8, self._chunk_rows(tail, 1),
                                       self.hasher)
            self.row_digests.ds.attrs[S.ROW_DIGESTS_DATASETS] = _string_array(self.row_paths)
            self.stream_datasets: dict[str, _Stream] = {}
            if stream is not None:
                self._write_stream_group(stream, height, width)
        except BaseException:
            self._abort()
            raise

    # -- construction helpers -------------------------------------------------------------
    def _chunk_rows(self, tail: Sequence[int], itemsize: int, default: int | None = None) -> int:
        rows = default if default is not None else _rows_per_chunk(tail, itemsize)
        return rows if self.max_chunk_rows is None else max(1, min(rows, int(self.max_chunk_rows)))

    def _channel_stats(self, name: str, values, k: int) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if arr.shape != (k,) or not np.all(np.isfinite(arr)):
            raise InputError(f"{name} must be {k} finite values (one per channel), got {arr.tolist()}", self.dest)
        return arr

    def _check_dense_spec(self, dense: DenseSpec, height: int, width: int) -> None:
        if int(dense.n) > geometry.MAX_WRITTEN_GRID_N:
            raise InputError(f"grid size N = {dense.n}: this writer stores N <= {geometry.MAX_WRITTEN_GRID_N} (the "
                             "(N*N, 4) int64 boxes attribute must fit one HDF5 attribute message, < 64 KiB)",
                             self.dest)
        try:
            geometry.boxes(height, width, int(dense.n), float(dense.ratio))
        except ValueError as exc:
            raise InputError(f"dense geometry: {exc}", self.dest) from None
        if not (math.isfinite(dense.temperature) and dense.temperature > 0):
            raise InputError(f"temperature must be > 0, got {dense.temperature}", self.dest)
        if S.ARCH_ATTR not in dense.labeler:
            raise InputError("labeler description needs at least 'arch'", self.dest)
        dense.codec.layout(dense.num_sub, self.num_classes)  # raises CodecError when unusable

    def _write_header(self, class_names, source_dataset, distillation, ipc, root_attrs) -> None:
        a = self.h5.attrs
        a[S.FORMAT_ATTR] = S.FORMAT
        a[S.VERSION_ATTR] = S.FORMAT_VERSION
        a[S.NUM_CLASSES_ATTR] = np.int64(self.num_classes)
        if class_names is not None:
            a[S.CLASS_NAMES_ATTR] = _string_array(class_names)
        if source_dataset:
            a[S.SOURCE_DATASET_ATTR] = str(source_dataset)
        if distillation:
            a[S.DISTILLATION_ATTR] = str(distillation)
        if ipc is not None:
            a[S.IPC_ATTR] = np.int64(ipc)
        for key, value in (root_attrs or {}).items():
            a[key] = value
        norm = self.h5.create_group(S.NORMALIZATION)
        norm.attrs[S.MEAN_ATTR] = self.mean
        norm.attrs[S.STD_ATTR] = self.std

    def _write_provenance(self, converter, input_records, report, created) -> None:
        g = self.h5.create_group(S.PROVENANCE)
        g.attrs[S.CREATED_ATTR] = created
        g.attrs[S.TOOL_ATTR] = provenance.TOOL
        g.attrs[S.CONVERTER_ATTR] = str(converter)
        g.attrs[S.INPUTS_ATTR] = provenance.dumps(input_records)
        if report is not None:
            g.attrs[S.REPORT_ATTR] = provenance.dumps(report)
        self.report = None if report is None else dict(report)

    def update_report(self, entries: dict) -> None:
        """Add ``entries`` to the ``/provenance`` report before :meth:`close`: what a streamed
        conversion measures only while it writes (e.g. the loss of a uint8 conversion)."""
        if self._closed:
            raise InputError("writer is closed", self.dest)
        self.report = {**(self.report or {}), **entries}
        self.h5[S.PROVENANCE].attrs[S.REPORT_ATTR] = provenance.dumps(self.report)

    def _write_dense_group(self, dense: DenseSpec, height: int, width: int) -> None:
        g = self.h5.create_group(S.DENSE)
        g.attrs[S.N_ATTR] = np.int64(dense.n)
        g.attrs[S.RATIO_ATTR] = np.float64(dense.ratio)
        g.attrs[S.BOXES_ATTR] = geometry.boxes(height, width, int(dense.n), float(dense.ratio))
        g.attrs[S.RESIZE_ATTR] = geometry.RESIZE
        g.attrs[S.CODEC_ATTR] = dense.codec.name
        g.attrs[S.TEMPERATURE_ATTR] = np.float64(dense.temperature)
        for key, value in dense.codec.dense_attrs().items():
            g.attrs[key] = np.int64(value)
        _write_model_attrs(self.h5.create_group(S.LABELER), dense.labeler)
        for name, (tail, dtype) in dense.codec.layout(dense.num_sub, self.num_classes).items():
            self.dense_streams[name] = _Stream(g, name, tail, dtype,
                                               self._chunk_rows(tail, np.dtype(dtype).itemsize), self.hasher)

    # -- the relabel stream (spec 4.7) --------------------------------------------------
    def _check_stream_spec(self, spec: StreamSpec) -> None:
        if not isinstance(spec, StreamSpec):
            raise InputError(f"stream must be a StreamSpec, got {type(spec).__name__}", self.dest, S.STREAM_PATH)
        problems = spec.problems(self.num_classes)
        if spec.resize == S.RESIZE_PIL and self.space != S.SPACE_UINT8:
            problems.append(f"resize {S.RESIZE_PIL!r} needs uint8 ({S.SPACE_UINT8}) images (spec 5.1)")
        if problems:
            raise InputError(f"stream declaration: {problems[0]}", self.dest, S.STREAM_PATH)

    def _stream_dtypes(self, spec: StreamSpec, height: int, width: int) -> dict[str, np.dtype]:
        """This writer's dtypes for the datasets 4.7 leaves to it ("any integer"): ``image`` int32
        (the number of images M is known only at close, and a stream may be appended before the
        images; 4 bytes per record before compression, 10), ``box`` uint16 when H, W <= 65535 (else
        int32), ``mix_partner`` uint16 (a batch holds <= 2^16 records, so a partner is <= 65535),
        ``mix_box`` uint16 when both crop sides are <= 65535 (else int32). Fixed by the spec:
        ``flip`` uint8, ``mix_lambda`` float32, the labels the codec's."""
        crop_max = max(spec.crop_size)
        dtypes = {S.STREAM_IMAGE: np.dtype("<i4"),
                  S.STREAM_BOX: np.dtype("<u2") if max(height, width) <= 0xFFFF else np.dtype("<i4"),
                  S.STREAM_FLIP: np.dtype("u1"),
                  S.STREAM_MIX_PARTNER: np.dtype("<u2"),
                  S.STREAM_MIX_BOX: np.dtype("<u2") if crop_max <= 0xFFFF else np.dtype("<i4"),
                  S.STREAM_MIX_LAMBDA: np.dtype("<f4")}
        for name, (_, dtype) in spec.codec.layout(self.num_classes).items():
            dtypes[name] = np.dtype(dtype)
        return dtypes

    def _stream_chunk_rows(self, tail: Sequence[int], itemsize: int) -> int:
        row_bytes = max(1, int(np.prod(tail, dtype=np.int64)) * itemsize)
        return self._chunk_rows(tail, itemsize, max(1, STREAM_CHUNK_BYTES // row_bytes))

    def _write_stream_group(self, spec: StreamSpec, height: int, width: int) -> None:
        """``/stream`` with its attributes and ``/stream/teacher``, and its datasets, empty: rows are
        appended by :meth:`append_stream`; ``epoch_start`` and ``batch_start`` are written at close.
        Stream datasets carry shuffle + gzip (:data:`STREAM_GZIP_LEVEL`) and chunks of about
        :data:`STREAM_CHUNK_BYTES`; ``/stream/batch_sha256`` (incompressible) fletcher32 only."""
        g = self.h5.create_group(S.STREAM)
        a = g.attrs
        a[S.STREAM_EPOCHS_ATTR] = np.int64(spec.epochs)
        a[S.BATCH_SIZE_ATTR] = np.int64(spec.batch_size)
        a[S.MODE_ATTR] = spec.mode
        a[S.CROP_SIZE_ATTR] = np.asarray(spec.crop_size, dtype=np.int64)
        a[S.RESIZE_ATTR] = spec.resize
        a[S.MIX_ATTR] = spec.mix
        for key, value in spec.codec.attrs().items():
            a[key] = np.int64(value) if isinstance(value, (int, np.integer)) else value
        a[S.TEMPERATURE_ATTR] = np.float64(spec.temperature)
        for key, value in ((S.SAMPLER_ATTR, spec.sampler), (S.AUGMENTATION_ATTR, spec.augmentation)):
            if value is not None:
                a[key] = provenance.dumps(value)
        _write_model_attrs(g.create_group("teacher"), spec.teacher)
        dtypes = self._stream_dtypes(spec, height, width)
        tails = {S.STREAM_BOX: (4,), S.STREAM_MIX_BOX: (4,)}
        tails.update({name: tail for name, (tail, _) in spec.codec.layout(self.num_classes).items()})
        self.stream_paths = [S.stream_path(name) for name in spec.digested(self.num_classes)]
        for name in spec.digested(self.num_classes):
            tail, dtype = tails.get(name, ()), dtypes[name]
            self.stream_datasets[name] = _Stream(g, name, tail, dtype, self._stream_chunk_rows(tail, dtype.itemsize),
                                                 self.hasher, STREAM_GZIP_LEVEL)
        tail = (len(self.stream_paths), integrity.DIGEST_BYTES)
        self.stream_digests = _Stream(g, S.STREAM_BATCH_DIGESTS, tail, np.uint8, self._chunk_rows(tail, 1),
                                      self.hasher)
        self.stream_digests.ds.attrs[S.ROW_DIGESTS_DATASETS] = _string_array(self.stream_paths)
        self.tail_datasets: dict[str, _Stream] = {}
        self.tail_digests = None
        if spec.tail is not None:
            self._write_tail_group(g, spec)
        self._epoch_starts = array("q")
        self._batch_starts = array("q")
        self._stream_records = 0
        self._stream_epoch = -1
        self._stream_max_image = -1

    def _write_tail_group(self, g: h5py.Group, spec: StreamSpec) -> None:
        """``/stream/tail`` (4.8, since 1.3): attribute ``rank``, ``mean`` and ``basis`` written whole
        (fletcher32; float32 bits compress little), ``coef`` and ``scale`` empty (appended per batch,
        shuffle + gzip as the other stream datasets) and their batch digests."""
        tail = spec.tail
        group = g.create_group(S.STREAM_TAIL)
        group.attrs[S.TAIL_RANK_ATTR] = np.int64(tail.rank)
        c = tail.num_classes
        _Stream(g, S.STREAM_TAIL_MEAN, (), np.float32, max(1, min(c, self._stream_chunk_rows((), 4))),
                self.hasher).write_whole(tail.mean)
        _Stream(g, S.STREAM_TAIL_BASIS, (c,), np.float32, max(1, min(tail.rank, self._stream_chunk_rows((c,), 4))),
                self.hasher).write_whole(tail.basis)
        for name, (row, dtype) in spec.codec.tail_layout().items():
            self.tail_datasets[name] = _Stream(g, name, row, dtype, self._stream_chunk_rows(row, dtype.itemsize),
                                               self.hasher, STREAM_GZIP_LEVEL)
        row = (len(S.STREAM_TAIL_DIGESTED), integrity.DIGEST_BYTES)
        self.tail_digests = _Stream(g, S.STREAM_TAIL_DIGESTS, row, np.uint8, self._chunk_rows(row, 1), self.hasher)
        self.tail_digests.ds.attrs[S.ROW_DIGESTS_DATASETS] = _string_array(
            S.stream_path(name) for name in S.STREAM_TAIL_DIGESTED)

    def append_stream(self, epoch: int, image, box, flip, mix_partner=None, mix_box=None, mix_lambda=None,
                      logits=None, stored=None) -> None:
        """Append one batch of n records of the stream (spec 4.7) to epoch ``epoch``.

        Epochs come in order 0..E-1: a call with ``epoch`` e + 1 starts the next epoch (each epoch
        holds >= 1 batch), and none goes back or skips one. ``image`` (n,) image indices, ``box``
        (n, 4) [top, left, height, width] in image pixels, ``flip`` (n,) bool or 0/1; by the declared
        mix, ``mix_partner`` (n,) positions inside this batch (cutmix, mixup), ``mix_box`` (4,)
        [top, left, height, width] in crop pixels (cutmix), ``mix_lambda`` λ in [0, 1] (mixup). The
        labels: exactly one of ``logits`` ((n, C) float, encoded by the codec at the declared
        temperature, and in the declared tail basis when the codec has a tail) or ``stored`` (the
        codec's arrays as written, n rows each, its dtypes; with a tail also ``tail/coef`` (n, r)
        int8 and ``tail/scale`` (n,) float16, finite and >= 0).

        Every bound of rule 16 that does not need M is checked here, before anything is written
        (image < M is checked at :meth:`close`); a bad batch raises one line and discards the file,
        as :meth:`append` does."""
        if self._closed:
            raise InputError("writer is closed", self.dest)
        try:
            if self.stream_spec is None:
                raise InputError("no stream was declared (DLAWriter(..., stream=StreamSpec(...)))", self.dest,
                                 S.STREAM_PATH)
            epoch, rows = self._validate_stream_batch(epoch, image, box, flip, mix_partner, mix_box, mix_lambda,
                                                      logits, stored)
            if epoch != self._stream_epoch:
                self._epoch_starts.append(len(self._batch_starts))
                self._stream_epoch = epoch
            self._batch_starts.append(self._stream_records)
            digests = [self.stream_datasets[name].append(rows[name], whole=True) for name in self.stream_datasets]
            self.stream_digests.append(np.stack(digests)[None])
            if self.tail_digests is not None:
                digests = [self.tail_datasets[name].append(rows[name], whole=True) for name in S.STREAM_TAIL_DIGESTED]
                self.tail_digests.append(np.stack(digests)[None])
            n = len(rows[S.STREAM_IMAGE])
            self._stream_records += n
            self._stream_max_image = max(self._stream_max_image, int(rows[S.STREAM_IMAGE].max()))
        except BaseException:
            self._abort()
            raise

    def _validate_stream_batch(self, epoch, image, box, flip, mix_partner, mix_box, mix_lambda, logits, stored
                               ) -> tuple[int, dict[str, np.ndarray]]:
        """The checked rows of one stream batch, name -> array in the stored dtype (one row for the
        per-batch datasets), or a one-line :class:`InputError`."""
        spec = self.stream_spec

        def fail(message: str, name: str | None = None, cls=InputError):
            raise cls(message, self.dest, S.stream_path(name) if name else S.STREAM_PATH)

        e = _as_int(epoch)
        if e is None or e < 0:
            fail(f"epoch must be an integer >= 0, got {epoch!r}")
        if e < self._stream_epoch:
            fail(f"epoch {e} after epoch {self._stream_epoch}: epochs are appended in order, never back")
        if e > self._stream_epoch + 1:
            fail(f"epoch {e} after epoch {self._stream_epoch}: epochs are appended in order 0..{spec.epochs - 1}, "
                 "none skipped")
        if e >= spec.epochs:
            fail(f"epoch {e}: the stream declares {spec.epochs} epochs (0..{spec.epochs - 1})")
        if len(self._batch_starts) >= limits.MAX_STREAM_BATCHES:
            fail(f"more than {limits.MAX_STREAM_BATCHES} batches (spec 2.4)")
        image = np.asarray(image)
        if image.ndim != 1 or not 1 <= image.shape[0] <= spec.batch_size:
            fail(f"image must be (n,) with 1 <= n <= batch_size {spec.batch_size}, got shape {image.shape}",
                 S.STREAM_IMAGE, ShapeError)
        n = image.shape[0]
        if self._stream_records + n > limits.MAX_STREAM_RECORDS:
            fail(f"more than {limits.MAX_STREAM_RECORDS} records (spec 2.4)")
        if image.dtype.kind not in "iu":
            fail(f"image indices must be integers, got {image.dtype}", S.STREAM_IMAGE)
        int32_max = np.iinfo(np.int32).max
        if image.min() < 0 or image.max() > int32_max:
            fail(f"image indices must lie in [0, M), found {int(image.min())}..{int(image.max())}", S.STREAM_IMAGE)
        k, height, width = self.image_shape
        box = np.asarray(box)
        if box.shape != (n, 4) or box.dtype.kind not in "iu":
            fail(f"box must be integers of shape ({n}, 4), got {box.dtype} {box.shape}", S.STREAM_BOX, ShapeError)
        message = stream_checks.box_problem(box, height, width)
        if message:
            fail(message, S.STREAM_BOX)
        flip = np.asarray(flip)
        if flip.shape != (n,) or flip.dtype.kind not in "biu":
            fail(f"flip must be bool or 0/1 of shape ({n},), got {flip.dtype} {flip.shape}", S.STREAM_FLIP, ShapeError)
        message = stream_checks.flip_problem(flip.astype(np.int64))
        if message:
            fail(message, S.STREAM_FLIP)
        rows = {S.STREAM_IMAGE: image, S.STREAM_BOX: box, S.STREAM_FLIP: flip.astype(np.uint8)}
        given = {S.STREAM_MIX_PARTNER: mix_partner, S.STREAM_MIX_BOX: mix_box, S.STREAM_MIX_LAMBDA: mix_lambda}
        wanted = spec.mix_datasets()
        for name, value in given.items():
            if (value is None) == (name in wanted):
                fail(f"{name} is {'required' if name in wanted else 'not allowed'} with mix {spec.mix!r}", name)
        if mix_partner is not None:
            partner = np.asarray(mix_partner)
            if partner.shape != (n,) or partner.dtype.kind not in "iu":
                fail(f"mix_partner must be integers of shape ({n},), got {partner.dtype} {partner.shape}",
                     S.STREAM_MIX_PARTNER, ShapeError)
            message = stream_checks.partner_problem(partner, np.full(n, n))
            if message:
                fail(message, S.STREAM_MIX_PARTNER)
            rows[S.STREAM_MIX_PARTNER] = partner
        if mix_box is not None:
            mbox = np.asarray(mix_box)
            if mbox.shape != (4,) or mbox.dtype.kind not in "iu":
                fail(f"mix_box must be 4 integers [top, left, height, width], got {mbox.dtype} {mbox.shape}",
                     S.STREAM_MIX_BOX, ShapeError)
            message = stream_checks.box_problem(mbox[None], *spec.crop_size, empty_ok=True, unit="batch")
            if message:
                fail(f"{message} (the crop size)", S.STREAM_MIX_BOX)
            rows[S.STREAM_MIX_BOX] = mbox[None]
        if mix_lambda is not None:
            lam = np.asarray(mix_lambda)
            if lam.size != 1 or lam.dtype.kind not in "iuf":
                fail(f"mix_lambda must be one number, got {lam.dtype} {lam.shape}", S.STREAM_MIX_LAMBDA, ShapeError)
            message = stream_checks.lambda_problem(lam.reshape(1))
            if message:
                fail(message.replace("batch 0: ", ""), S.STREAM_MIX_LAMBDA)
            rows[S.STREAM_MIX_LAMBDA] = lam.reshape(1).astype(np.float32)
        rows.update(self._stream_labels(n, logits, stored))
        return e, rows

    def _stream_labels(self, n: int, logits, stored) -> dict[str, np.ndarray]:
        """The codec's arrays of one batch: ``logits`` encoded, or ``stored`` checked (shapes, dtypes,
        the codec's tolerance)."""
        spec = self.stream_spec
        codec = spec.codec
        layout = {**codec.layout(self.num_classes), **codec.tail_layout()}
        where = S.stream_path(codec.values_dataset)
        if (logits is None) == (stored is None):
            raise InputError("give exactly one of logits= or stored= for the labels of a stream batch", self.dest,
                             where)
        if logits is not None:
            z = np.asarray(logits)
            if z.shape != (n, self.num_classes):
                raise ShapeError(f"logits must be ({n}, {self.num_classes}), got {z.shape}", self.dest, where)
            try:
                return codec.encode_logits(z, spec.temperature, tail=spec.tail)
            except LaddError as exc:
                raise InputError(exc.message, self.dest, where) from None
        if not isinstance(stored, dict) or set(stored) != set(layout):
            raise InputError(f"stored labels must be a dict of {sorted(layout)} for codec {codec.label!r}, got "
                             f"{sorted(stored) if isinstance(stored, dict) else type(stored).__name__}", self.dest, where)
        out = {}
        for name, (tail, dtype) in layout.items():
            value = np.asarray(stored[name])
            if value.shape != (n, *tail) or value.dtype.newbyteorder("<") != np.dtype(dtype).newbyteorder("<"):
                raise ShapeError(f"stored {name} must be {np.dtype(dtype).name} of shape {(n, *tail)}, got "
                                 f"{value.dtype} {value.shape}", self.dest, S.stream_path(name))
            out[name] = value
        problems = codec.check(out, self.num_classes)
        if problems:
            raise ProbabilityError(f"stored labels break codec {codec.label!r}'s tolerance: {problems[0]}", self.dest,
                                   where)
        if codec.tail_rank is not None:
            message = stream_checks.scale_problem(out[S.STREAM_TAIL_SCALE])
            if message:
                raise ProbabilityError(message, self.dest, S.stream_path(S.STREAM_TAIL_SCALE))
        return out

    def _finish_stream(self) -> None:
        """Close checks of the stream (epochs appended = declared, image indices < M) and the data
        written at close: ``epoch_start``, ``batch_start`` and every sha256."""
        spec = self.stream_spec
        if self._stream_epoch + 1 != spec.epochs:
            raise InputError(f"the stream declares {spec.epochs} epochs, {self._stream_epoch + 1} were appended",
                             self.dest, S.STREAM_PATH)
        if self._stream_max_image >= self.images.rows:
            raise InputError(f"stream image index {self._stream_max_image} is outside [0, M = {self.images.rows}) "
                             "(the images appended)", self.dest, S.stream_path(S.STREAM_IMAGE))
        g = self.h5[S.STREAM]
        for name, values in ((S.STREAM_EPOCH_START, self._epoch_starts), (S.STREAM_BATCH_START, self._batch_starts)):
            data = np.frombuffer(values, dtype=np.int64).astype("<i8")
            chunk_rows = max(1, min(len(data), self._stream_chunk_rows((), 8)))
            _Stream(g, name, (), np.int64, chunk_rows, self.hasher, STREAM_GZIP_LEVEL).write_whole(data)
        for ds in (*self.stream_datasets.values(), self.stream_digests, *self.tail_datasets.values()):
            ds.finish()
        if self.tail_digests is not None:
            self.tail_digests.finish()

    # -- appending ------------------------------------------------------------------------
    def append(self, images: np.ndarray, labels: np.ndarray, dense: np.ndarray | None = None,
               soft: np.ndarray | None = None) -> None:
        """Append a batch of B images ``(B, K, H, W)``, hard labels ``(B,)`` and, as declared at
        construction, dense probabilities ``(B, N*N, C)`` and global soft labels ``(B, C)``.

        Every array is validated before anything is written, so a bad batch raises without touching
        the file's contents.
        """
        if self._closed:
            raise InputError("writer is closed", self.dest)
        try:
            images, labels, encoded, soft = self._validate(images, labels, dense, soft)
            digests = [self.images.append(images), self.labels.append(labels)]
            if self.soft is not None:
                digests.append(self.soft.append(soft))
            for name, stream in self.dense_streams.items():  # the order of /row_sha256 (spec 2.2)
                digests.append(stream.append(encoded[name]))
            self.row_digests.append(np.stack(digests, axis=1))
        except BaseException:
            self._abort()
            raise

    def _validate(self, images, labels, dense, soft):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != self.image_shape:
            raise ShapeError(f"images must be (B, {', '.join(map(str, self.image_shape))}), got {images.shape}",
                             self.dest, S.IMAGES_PATH)
        b = images.shape[0]
        if self.image_dtype == np.uint8:
            if images.dtype != np.uint8:
                raise InputError(f"images must be uint8 for space pixel255, got {images.dtype}", self.dest, S.IMAGES_PATH)
        else:
            if not np.issubdtype(images.dtype, np.floating):
                raise InputError(f"images must be floating point for space {self.space}, got {images.dtype}",
                                 self.dest, S.IMAGES_PATH)
            if not np.all(np.isfinite(images)):
                raise InputError("images contain NaN or infinite values", self.dest, S.IMAGES_PATH)
            if self.image_dtype == np.float16 and images.size and np.abs(images).max() > 65504:
                raise InputError("images exceed the float16 range (65504); store them as float32",
                                 self.dest, S.IMAGES_PATH)
        labels = np.asarray(labels)
        if labels.shape != (b,):
            raise ShapeError(f"labels must be ({b},) to match the images, got {labels.shape}", self.dest, S.LABELS_PATH)
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.mod(labels, 1) == 0):
                raise InputError(f"labels must be integers, got {labels.dtype}", self.dest, S.LABELS_PATH)
        labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise InputError(f"labels must lie in [0, {self.num_classes}), found {labels.min()}..{labels.max()}",
                             self.dest, S.LABELS_PATH)
        encoded = {}
        if self.dense is not None:
            if dense is None:
                raise InputError("dense probabilities were declared but not given", self.dest, S.DENSE_PATH)
            encoded = self.dense.codec.encode(self._check_probs(dense, (b, self.dense.num_sub, self.num_classes),
                                                                S.DENSE_PATH))
        elif dense is not None:
            raise InputError("dense probabilities given but no DenseSpec was declared", self.dest, S.DENSE_PATH)
        if self.soft is not None:
            if soft is None:
                raise InputError("soft labels were declared but not given", self.dest, S.SOFT_LABELS_PATH)
            expected = (b, self.num_classes)
            if self.soft_kind == "probs":
                soft = self._check_probs(soft, expected, S.SOFT_LABELS_PATH)
            else:
                soft = np.asarray(soft)
                if soft.shape != expected:
                    raise ShapeError(f"soft labels must be {expected}, got {soft.shape}", self.dest, S.SOFT_LABELS_PATH)
                if not np.all(np.isfinite(soft)):
                    raise ProbabilityError("logits contain NaN or infinite values", self.dest, S.SOFT_LABELS_PATH)
        elif soft is not None:
            raise InputError("soft labels given but no soft_kind was declared", self.dest, S.SOFT_LABELS_PATH)
        return images, labels, encoded, soft

    def _check_probs(self, probs, expected, where) -> np.ndarray:
        probs = np.asarray(probs)
        if probs.shape != expected:
            raise ShapeError(f"probabilities must be {expected}, got {probs.shape}", self.dest, where)
        p = probs.astype(np.float64)
        if not np.all(np.isfinite(p)):
            raise ProbabilityError("probabilities contain NaN or infinite values", self.dest, where)
        if p.size and (p.min() < 0 or p.max() > 1):
            raise ProbabilityError(f"probabilities must lie in [0, 1], found {p.min():.4g}..{p.max():.4g}",
                                   self.dest, where)
        dev = np.abs(p.sum(axis=-1) - 1)
        if dev.size and dev.max() > INPUT_PROB_TOLERANCE:
            raise ProbabilityError(f"probability rows must sum to 1, worst is off by {dev.max():.4g}",
                                   self.dest, where)
        return probs

    # -- finishing ------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return self.images.rows

    def close(self) -> Path:
        """Write digests, close, and move the file into place. Returns the destination."""
        if self._closed:
            return self.dest
        try:
            if self.images.rows == 0:
                raise InputError("no images were written; a D_LA holds at least one", self.dest)
            datasets = [self.images, self.labels, *self.dense_streams.values(), self.row_digests]
            if self.soft is not None:
                datasets.append(self.soft)
            for ds in datasets:
                ds.finish()
            if self.stream_spec is not None:
                self._finish_stream()
            integrity.fixed_length_strings(self.h5)
            self.h5.flush()
            problems = integrity.structure_problems(self.h5, 1 << 62)
            if problems:  # e.g. a root attribute of a type spec 2.1 does not allow
                raise InputError(f"{problems[0].where}: {problems[0].message}", self.dest)
            integrity.set_string(self.h5.attrs, S.ROOT_DIGEST, integrity.root_digest(self.h5))
            self.h5.close()
            self.hasher.shutdown()
            self._closed = True
            atomic.commit(self.tmp, self.dest, self.overwrite)
        except BaseException:
            self._abort()
            raise
        return self.dest

    def _abort(self) -> None:
        self._closed = True
        hasher = getattr(self, "hasher", None)
        if hasher is not None:
            hasher.shutdown(wait=True)
        h5 = getattr(self, "h5", None)
        if h5 is not None:
            try:
                h5.close()
            except Exception:  # noqa: BLE001 - closing a broken handle; the file is discarded anyway
                pass
        atomic.discard(self.tmp)

    def abort(self) -> None:
        """Discard everything written; the destination is left as it was."""
        self._abort()

    def __enter__(self) -> DLAWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()
