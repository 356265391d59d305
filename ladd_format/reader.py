"""Lazy reader of D_LA files.

Opening reads only the root attributes and checks what every use needs (format, version, the
``/images`` and ``/labels`` datasets); arrays are read on request, a slice at a time. Full checking
is :func:`ladd_format.verify`.

Example::

    with open_dla("set.dla.h5") as f:
        x = f.images(0, 8)        # (8, K, H, W) as stored (uint8 by default)
        y = f.labels()            # (M,) int64
        yd = f.dense(0, 8)        # (8, N*N, C) float32, decoded from any codec
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from . import integrity
from . import spec as S
from .spec.rules import Rule
from .codecs import Codec, codec_from_file
from .errors import (
    ChecksumError,
    DigestError,
    DtypeError,
    LabelRangeError,
    LaddError,
    MissingFieldError,
    NoDenseLabelsError,
    NoStreamError,
    ProbabilityError,
)
from .h5io import attr_dict, check_format, open_h5, text
from .stream.reader import StreamReader
from .verify import NON_FINITE, header_problems, soft_label_issues

#: Exceptions h5py raises on damaged HDF5 structures; a reader turns them into one LaddError line.
H5_ERRORS = (OSError, RuntimeError, ValueError, TypeError, KeyError, IndexError, SystemError, AttributeError)


def read_rows(ds: h5py.Dataset, start: int, stop: int, path) -> np.ndarray:
    """Read rows [start, stop) of a dataset; a failing fletcher32 (or damaged HDF5 metadata on the
    way to the rows) becomes :class:`ChecksumError`."""
    try:
        return ds[start:stop]
    except H5_ERRORS as exc:
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ChecksumError(f"rows {start}..{stop - 1} cannot be read (chunk checksum failed or HDF5 "
                            f"metadata damaged: {detail})", path, ds.name) from None


class DLAFile:
    """An open D_LA file. Use as a context manager or call :meth:`close`.

    Opening checks every rule that the object headers and attributes decide (spec section 8, all but
    the contents of the datasets), the root digest included, so a file is refused before any value
    is believed; it costs a few milliseconds and reads no dataset. Every read then checks the
    fletcher32 of its chunks, the SHA-256 of each row it returns against ``/row_sha256`` (1.1
    files; ``check_rows=False`` skips it) and the values the rules bound (labels in [0, C), soft-label
    probabilities in [0, 1] summing to 1, the codec's tolerances, finite floats). Every failure is a
    one-line :class:`LaddError`.
    """

    def __init__(self, path: str | os.PathLike, check_rows: bool = True):
        self.path = Path(path)
        self.h5 = open_h5(self.path)
        try:
            problems = header_problems(self.path, self.h5)
            if problems:
                raise problems[0]
            self.version = check_format(self.h5, self.path)
        except LaddError:
            self.h5.close()
            raise
        except Exception as exc:  # h5py raises many kinds (SystemError, UnicodeDecodeError, ...) on damage
            self.h5.close()
            raise LaddError(f"HDF5 structure is damaged ({integrity._first_line(exc)})", self.path, "/",
                            rule=Rule.FILE) from None
        except BaseException:
            self.h5.close()
            raise
        # A read-only file does not change: keep handles and the shapes every read needs, so a
        # single-item read costs one HDF5 read per dataset, not a lookup of groups and attributes.
        self._images = self.h5[S.IMAGES]
        self._labels = self.h5[S.LABELS]
        self._num_images = int(self._images.shape[0])
        self._num_classes = int(self.h5.attrs[S.NUM_CLASSES_ATTR])
        self._dense = self.h5[S.DENSE] if S.DENSE in self.h5 else None
        self._dense_datasets: dict[str, h5py.Dataset] | None = None
        self._n: int | None = None
        self._codec: Codec | None = None
        self._soft_kind: str | None = None
        self._stream = None
        self._row_digests = self.h5[S.ROW_DIGESTS] if check_rows and S.ROW_DIGESTS in self.h5 else None
        self._row_columns: dict[str, int] = {}
        self._digest_rows: np.ndarray | None = None
        if self._row_digests is not None:
            names = self._row_digests.attrs[S.ROW_DIGESTS_DATASETS]
            self._row_columns = {text(v): i for i, v in enumerate(np.atleast_1d(names))}

    def _digest_table(self) -> np.ndarray:
        """All of ``/row_sha256``, read once and checked against its own ``sha256`` (it is at most
        M x D x 32 bytes, bounded by the file's size through rule 15)."""
        if self._digest_rows is None:
            ds = self._row_digests
            table = read_rows(ds, 0, ds.shape[0], self.path)
            if hashlib.sha256(np.ascontiguousarray(table).tobytes()).hexdigest() != text(ds.attrs.get(S.SHA256_ATTR, "")):
                raise ChecksumError("SHA-256 differs from its sha256 attribute: the row digests are damaged",
                                    self.path, ds.name)
            self._digest_rows = table
        return self._digest_rows

    def _rows(self, ds: h5py.Dataset, start: int, stop: int, name: str) -> np.ndarray:
        """Rows [start, stop) of ``ds`` (whose path is ``name``), each checked against its digest in
        ``/row_sha256``."""
        rows = read_rows(ds, start, stop, self.path)
        column = self._row_columns.get(name)
        if column is None or rows.shape[0] == 0:
            return rows
        if start < 0:
            start = max(0, start + ds.shape[0])
        table = self._digest_table()
        if rows.shape[0] == 1 and rows.flags.c_contiguous and (rows.dtype.itemsize == 1
                                                               or rows.dtype == rows.dtype.newbyteorder("<")):
            # one item (what a DataLoader asks for): hash the row's bytes as they are
            if hashlib.sha256(memoryview(rows.reshape(-1).view(np.uint8))).digest() == table[start, column].tobytes():
                return rows
        stored = table[start:start + rows.shape[0], column]
        actual = integrity.row_digests(rows)
        if actual.tobytes() != stored.tobytes():
            bad = int(np.flatnonzero(np.any(actual != stored, axis=1))[0])
            raise DigestError(f"row {start + bad} does not match its digest in /{S.ROW_DIGESTS}: the "
                              "data is damaged", self.path, name, rule=Rule.ROW_DIGESTS)
        return rows

    # -- metadata -------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return attr_dict(self.h5.attrs)

    @property
    def num_images(self) -> int:
        return self._num_images

    def __len__(self) -> int:
        return self.num_images

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.h5[S.IMAGES].shape[1:])

    @property
    def image_dtype(self) -> np.dtype:
        return self.h5[S.IMAGES].dtype

    @property
    def space(self) -> str:
        return text(self.h5[S.IMAGES].attrs.get(S.SPACE_ATTR, S.SPACE_UINT8))

    @property
    def class_names(self) -> list[str] | None:
        names = self.h5.attrs.get(S.CLASS_NAMES_ATTR)
        return None if names is None else [text(v) for v in names]

    @property
    def ipc(self) -> float:
        if S.IPC_ATTR in self.h5.attrs:
            return int(self.h5.attrs[S.IPC_ATTR])
        return self.num_images / self.num_classes

    def _attr(self, obj, key: str, rule: Rule):
        """Attribute ``key`` of ``obj`` or a one-line :class:`MissingFieldError` under ``rule``."""
        try:
            return obj.attrs[key]
        except KeyError:
            raise MissingFieldError(f"attribute {key!r} is missing", self.path, obj.name, rule=rule) from None

    def _normalization(self, key: str) -> np.ndarray:
        if S.NORMALIZATION not in self.h5:
            raise MissingFieldError("group /normalization is missing", self.path, S.NORMALIZATION_PATH,
                                    rule=Rule.NORMALIZATION)
        return np.asarray(self._attr(self.h5[S.NORMALIZATION], key, Rule.NORMALIZATION), dtype=np.float64)

    @property
    def mean(self) -> np.ndarray:
        return self._normalization("mean")

    @property
    def std(self) -> np.ndarray:
        return self._normalization("std")

    @property
    def provenance(self) -> dict:
        if S.PROVENANCE not in self.h5:
            return {}
        out = attr_dict(self.h5[S.PROVENANCE].attrs)
        for key in (S.INPUTS_ATTR, S.REPORT_ATTR):
            if key in out:
                try:
                    out[key] = json.loads(out[key])
                except (TypeError, ValueError):
                    pass
        return out

    # -- dense labels ---------------------------------------------------------------------
    @property
    def has_dense(self) -> bool:
        return self._dense is not None

    def _dense_group(self) -> h5py.Group:
        if self._dense is None:
            raise NoDenseLabelsError("no dense labels (this is a plain distilled set D): "
                                     "run `ladd augment` first", self.path, S.DENSE_PATH)
        return self._dense

    @property
    def n(self) -> int:
        if self._n is None:
            self._n = int(self._attr(self._dense_group(), S.N_ATTR, Rule.DENSE))
        return self._n

    @property
    def ratio(self) -> float:
        return float(self._attr(self._dense_group(), S.RATIO_ATTR, Rule.DENSE))

    @property
    def temperature(self) -> float:
        return float(self._attr(self._dense_group(), S.TEMPERATURE_ATTR, Rule.DENSE))

    @property
    def boxes(self) -> np.ndarray:
        """``(N*N, 4)`` int32 rows [top, left, height, width] (spec 5)."""
        return np.asarray(self._attr(self._dense_group(), S.BOXES_ATTR, Rule.DENSE), dtype=np.int32)

    @property
    def codec(self) -> Codec:
        if self._codec is None:
            g = self._dense_group()
            self._codec = codec_from_file(g.attrs, g)
        return self._codec

    @property
    def labeler(self) -> dict:
        g = self._dense_group()
        return attr_dict(self.h5[S.LABELER].attrs) if S.LABELER in self.h5 else {}

    def dense_stored(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """The stored dense arrays for images [start, stop), as the codec wrote them."""
        if self._dense_datasets is None:
            g = self._dense_group()
            # the constructor's header check refused a file that lacks one of these (spec 8)
            self._dense_datasets = {name: g[name] for name in self.codec.layout(self.n * self.n, self.num_classes)}
        stop = self.num_images if stop is None else stop
        stored = {name: self._rows(ds, start, stop, S.dense_path(name))
                  for name, ds in self._dense_datasets.items()}
        for message in self.codec.check(stored, self.num_classes):
            raise ProbabilityError(f"{message} (images from {start})", self.path, S.dense_path(self.codec.values_dataset),
                                  rule=Rule.DENSE)
        return stored

    def dense(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Decoded dense labels of images [start, stop): ``(B, N*N, C)`` float32 probabilities."""
        return self.codec.decode(self.dense_stored(start, stop), self.num_classes)

    # -- relabel stream (spec 4.7) -------------------------------------------------------
    @property
    def has_stream(self) -> bool:
        """True when the file holds a relabel stream: a ``/stream`` group in a file of format 1.2 or
        later (earlier versions have none; a reader ignores what it does not know, section 2)."""
        return self.version[1] >= S.STREAM_SINCE_MINOR and isinstance(self.h5.get(S.STREAM), h5py.Group)

    @property
    def stream(self) -> StreamReader:
        """The relabel stream (:class:`~ladd_format.stream.reader.StreamReader`); on first access its
        attributes, layout and ``epoch_start``/``batch_start`` are checked (rule 16). Raises
        :class:`NoStreamError` for a file without one."""
        if self._stream is None:
            if not self.has_stream:
                raise NoStreamError("no relabel stream in this file (spec 4.7): run `ladd relabel` or convert one",
                                    self.path, S.STREAM_PATH)
            self._stream = StreamReader(self.h5, self.path, self.num_images, self.num_classes, self.image_shape,
                                        self.space)
        return self._stream

    # -- arrays ---------------------------------------------------------------------------
    def images(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Images [start, stop) as stored: ``(B, K, H, W)`` uint8 (or float16/float32)."""
        stop = self.num_images if stop is None else stop
        images = self._rows(self._images, start, stop, S.IMAGES_PATH)
        if images.dtype.kind == "f" and not np.all(np.isfinite(images)):
            raise ProbabilityError(f"pixel values of images from {start} are NaN or infinite", self.path, S.IMAGES_PATH,
                                  rule=Rule.IMAGES)
        return images

    def labels(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Hard labels [start, stop) as ``(B,)`` int64 class indices."""
        stop = self.num_images if stop is None else stop
        if self._labels.dtype.kind not in "iu":
            raise DtypeError(f"/labels must be integers, found {self._labels.dtype}", self.path, S.LABELS_PATH,
                             rule=Rule.LABELS)
        labels = self._rows(self._labels, start, stop, S.LABELS_PATH)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise LabelRangeError(f"labels of images from {start} lie outside [0, {self.num_classes})",
                                  self.path, S.LABELS_PATH)
        return labels.astype(np.int64, copy=False)

    @property
    def has_soft_labels(self) -> bool:
        return S.SOFT_LABELS in self.h5

    @property
    def soft_kind(self) -> str | None:
        """``logits`` or ``probs`` (spec 4.3; checked on open), None without soft labels."""
        if self._soft_kind is None and self.has_soft_labels:
            self._soft_kind = text(self.h5[S.SOFT_LABELS].attrs.get(S.KIND_ATTR))
        return self._soft_kind

    def soft_labels(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Global soft labels [start, stop) as stored (``soft_kind`` says logits or probs), float32.

        Every row returned holds rule 6 (spec 4.3): finite, and for probabilities in [0, 1] with
        rows summing to 1; a row that does not raises :class:`ProbabilityError` naming it."""
        if not self.has_soft_labels:
            raise MissingFieldError("no global soft labels in this file", self.path, S.SOFT_LABELS_PATH)
        stop = self.num_images if stop is None else stop
        stored = self._rows(self.h5[S.SOFT_LABELS], start, stop, S.SOFT_LABELS_PATH)
        for message, row in soft_label_issues(stored, self.soft_kind):
            if message == NON_FINITE:
                raise ProbabilityError(f"soft labels of images from {start} are NaN or infinite", self.path,
                                       S.SOFT_LABELS_PATH, rule=Rule.SOFT_LABELS)
            first = (start if start >= 0 else start + self.num_images) + row
            raise ProbabilityError(f"row {first}: {message} (spec 4.3)", self.path, S.SOFT_LABELS_PATH,
                                   rule=Rule.SOFT_LABELS)
        return stored.astype(np.float32)

    # -- summary --------------------------------------------------------------------------
    def held_bytes(self, dense: bool = True, soft_labels: bool = False) -> int:
        """Bytes the arrays take once read into memory as stored (uncompressed; images, labels, the
        codec's dense arrays when ``dense``, soft labels as float32 when ``soft_labels``), from the
        datasets' shapes: nothing is read."""
        def nbytes(shape, itemsize: int) -> int:
            return int(np.prod(shape, dtype=np.int64)) * itemsize

        total = nbytes(self._images.shape, self._images.dtype.itemsize) + nbytes(self._labels.shape, 8)
        if dense and self.has_dense:
            g = self._dense_group()
            total += sum(nbytes(g[name].shape, g[name].dtype.itemsize)
                         for name in self.codec.layout(self.n * self.n, self.num_classes))
        if soft_labels and self.has_soft_labels:
            total += nbytes(self.h5[S.SOFT_LABELS].shape, 4)
        return total

    def info(self) -> dict:
        """A JSON-able summary of the file (what ``ladd info`` prints)."""
        k, h, w = self.image_shape
        out = {
            "path": str(self.path),
            "format_version": text(self.h5.attrs[S.VERSION_ATTR]),
            "num_images": self.num_images,
            "num_classes": self.num_classes,
            "ipc": self.ipc,
            "image_shape": [k, h, w],
            "image_dtype": str(self.image_dtype),
            "space": self.space,
            "file_bytes": self.path.stat().st_size,
        }
        for key in ("source_dataset", "distillation", "class_names", "learned_lr"):
            if key in self.h5.attrs:
                out[key] = self.attrs[key]
        out.update(self.seal())
        if S.NORMALIZATION in self.h5:
            out["mean"] = self.mean.tolist()
            out["std"] = self.std.tolist()
        out["soft_labels"] = self.soft_kind
        if self.has_dense:
            out["dense"] = {"n": self.n, "ratio": self.ratio, "codec": self.codec.config(),
                            "temperature": self.temperature, "boxes": self.boxes.tolist(),
                            "labeler": self.labeler}
        else:
            out["dense"] = None
        if self.has_stream:
            out["stream"] = self.stream.info()
        out["provenance"] = self.provenance
        return out

    def seal(self) -> dict:
        """The file's digests (spec 2.1): ``root_sha256`` as stored (None in a 1.0 file, which has
        none; checked on open) and ``content_sha256``, the content digest, derived here (equal for
        two files holding the same data, whatever their ``/provenance``)."""
        digest = self.h5.attrs.get(S.ROOT_DIGEST)
        return {"root_sha256": None if digest is None else text(digest),
                "content_sha256": integrity.content_digest_of(self.h5)}

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> DLAFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_dla(path: str | os.PathLike, check_rows: bool = True) -> DLAFile:
    """Open a D_LA (or plain D) file lazily; raises a one-line :class:`LaddError` on bad files.

    See :class:`DLAFile` for what is checked on open and on every read."""
    return DLAFile(path, check_rows=check_rows)
