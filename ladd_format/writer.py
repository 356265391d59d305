"""Streaming writer of D_LA files (spec sections 2-6).

Batches are appended in order, so sets larger than memory can be written. The file is built under a
temporary name in the destination folder and renamed into place only by :meth:`DLAWriter.close`
after every digest is written; an exception, or a killed process, leaves the destination as it was.

Example::

    with DLAWriter("set.dla.h5", num_classes=10, image_shape=(3, 128, 128),
                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                   dense=DenseSpec(n=5, ratio=0.625, codec=make_codec("float32"))) as w:
        w.append(images_uint8, labels, dense=probs)      # (B,3,128,128), (B,), (B,25,10)
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import atomic, geometry, integrity, provenance
from . import spec as S
from .codecs import Codec, make_codec
from .errors import InputError, ProbabilityError, ShapeError

CHUNK_TARGET_BYTES = 1 << 16  # row-chunked datasets other than /images: about 64 KiB per chunk
INPUT_PROB_TOLERANCE = 1e-3


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
                 hasher: ThreadPoolExecutor):
        self.dtype = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)
        self.tail = tuple(tail)
        self.ds = group.create_dataset(
            name, shape=(0, *self.tail), maxshape=(None, *self.tail), dtype=self.dtype,
            chunks=(chunk_rows, *self.tail), fletcher32=True)
        self.digest = hashlib.sha256()
        self.hasher = hasher
        self.rows = 0

    def append(self, block: np.ndarray) -> np.ndarray:
        """Append rows; returns their SHA-256 digests ``(B, 32)`` (spec 2.2)."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        n = block.shape[0]
        hashed = self.hasher.submit(self._hash, block)
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

    def finish(self) -> None:
        self.ds.attrs[S.SHA256_ATTR] = self.digest.hexdigest()


def _rows_per_chunk(tail: Sequence[int], itemsize: int) -> int:
    row_bytes = max(1, int(np.prod(tail, dtype=np.int64)) * itemsize)
    return max(1, CHUNK_TARGET_BYTES // row_bytes)


def _string_array(values: Iterable[str]) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=h5py.string_dtype("utf-8"))


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
                 max_chunk_rows: int | None = None):
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
        lab = self.h5.create_group(S.LABELER)
        for key, value in dense.labeler.items():
            if value is None:
                continue
            if key in (S.MEAN_ATTR, S.STD_ATTR):
                value = np.asarray(value, dtype=np.float64)
            elif isinstance(value, (int, np.integer)):
                value = np.int64(value)
            lab.attrs[key] = value
        for name, (tail, dtype) in dense.codec.layout(dense.num_sub, self.num_classes).items():
            self.dense_streams[name] = _Stream(g, name, tail, dtype,
                                               self._chunk_rows(tail, np.dtype(dtype).itemsize), self.hasher)

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
            streams = [self.images, self.labels, *self.dense_streams.values(), self.row_digests]
            if self.soft is not None:
                streams.append(self.soft)
            for stream in streams:
                stream.finish()
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
