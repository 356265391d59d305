"""Reading a relabel stream (spec 4.7): :class:`StreamReader`, what ``DLAFile.stream`` returns.

On construction (the first access to ``DLAFile.stream``) it checks rule 16's attributes and layout
and reads ``epoch_start`` and ``batch_start`` whole (bounded by 2.4: NB <= 2^22), checked against
their ``sha256`` and 4.7's values. Every batch it returns is checked: fletcher32 (by reading), the
rule-17 digest of every dataset read, and rule 16's bounds (images < M, boxes inside H x W, flips
0/1, partners inside the batch, mix box inside ``crop_size``, λ in [0, 1], the codec's tolerance).
Every failure is one :class:`~ladd_format.errors.LaddError` line naming the file and the dataset,
carrying rule 16 (``stream``) or 17 (``stream_digests``).

A file of format 1.3 or later may hold ``/stream/tail`` (4.8, the low-rank tail of a top-k stream): its
rank, members, shapes and dtypes (rule 18) are checked on construction and its ``mean`` and
``basis`` read whole (bounded: C <= 65536 for topk, r <= 256), checked against their ``sha256``
(rule 11) and for finite values (rule 18); each batch's ``coef`` and ``scale`` rows are checked
against ``/stream/tail/batch_sha256`` and for scales finite and >= 0 (rule 18), and the labels are
decoded with the tail. Below 1.3 an object of that name is ignored. numpy and h5py only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import h5py
import numpy as np

from .. import spec as S
from ..errors import ChecksumError, DigestError, LaddError, StreamError
from ..h5io import check_format, text
from ..spec.rules import Rule
from . import checks
from .batch import StreamBatch
from .declaration import StreamSpec
from .tail import TailBasis

#: exceptions h5py raises on damaged chunks or metadata while reading
_H5_ERRORS = (OSError, RuntimeError, ValueError, TypeError, KeyError, IndexError, SystemError, AttributeError)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__


class StreamReader:
    """The relabel stream of an open D_LA file (``open_dla(path).stream``).

    ``spec`` (:class:`StreamSpec`), ``num_records`` (Q), ``num_batches`` (NB), ``epochs`` (E),
    ``num_classes`` (C), ``tail`` (the :class:`~ladd_format.stream.tail.TailBasis` of
    ``/stream/tail``, or None); ``epoch_batches(e)`` the global batch numbers of epoch e,
    ``batch_length(b)``, ``read_batch(b)``, ``read_epoch(e)``, ``probs(batch)``, ``info()``.
    ``version``: the file's (MAJOR, MINOR), read from its root when None.
    """

    def __init__(self, h5: h5py.File, path, num_images: int, num_classes: int, image_shape: tuple[int, int, int],
                 space: str, version: tuple[int, int] | None = None):
        self.path = path
        self.h5 = h5
        self.num_images = int(num_images)
        self.num_classes = int(num_classes)
        k, self.height, self.width = (int(v) for v in image_shape)
        group = h5[S.STREAM]
        self.tail: TailBasis | None = None
        try:
            minor = (check_format(h5, path) if version is None else version)[1]
            self._raise_first(checks.attribute_problems(group, self.num_classes, k, space))
            if checks.has_tail(group, minor):
                self._raise_first(checks.tail_layout_problems(group, self.num_classes)[0])
                self.tail = self._read_basis(group)
            self.spec: StreamSpec = checks.spec_from_group(group, self.tail)
            problems, q, nb = checks.layout_problems(group, self.spec, self.num_classes)
            self._raise_first(problems)
        except LaddError:
            raise
        except _H5_ERRORS as exc:
            raise StreamError(f"cannot be read ({_first_line(exc)})", path, S.STREAM_PATH) from None
        self.num_records, self.num_batches = q, nb
        self.epochs = int(self.spec.epochs)
        self.group = group
        self._epoch_start = self._read_start(S.STREAM_EPOCH_START)
        self._batch_start = self._read_start(S.STREAM_BATCH_START)
        for name, message in checks.starts_problems(self._epoch_start, self._batch_start, q, self.spec.batch_size):
            raise StreamError(f"{message} (spec 4.7)", path, S.stream_path(name))
        self._names = self.spec.digested(self.num_classes)
        self._datasets = {name: group[name] for name in self._names}
        self._digests = group[S.STREAM_BATCH_DIGESTS]
        listed = self._digests.attrs.get(S.ROW_DIGESTS_DATASETS)
        listed = None if listed is None else [text(v) for v in np.atleast_1d(listed)]
        expected = [S.stream_path(name) for name in self._names]
        if listed != expected:
            raise DigestError(f"attribute {S.ROW_DIGESTS_DATASETS!r} must list {expected}, got {listed}", path,
                              self._digests.name, rule=Rule.STREAM_DIGESTS)
        self._tail_datasets = {} if self.tail is None else {name: group[name] for name in S.STREAM_TAIL_DIGESTED}
        self._tail_digests = None if self.tail is None else group[S.STREAM_TAIL_DIGESTS]

    def _raise_first(self, problems) -> None:
        for p in problems:
            raise StreamError(p.message, self.path, p.where).at_rule(p.rule)

    def _read_whole(self, ds: h5py.Dataset, rule: Rule) -> np.ndarray:
        """A dataset whose shape is bounded, read whole and checked against its ``sha256`` (rule 11);
        an unreadable chunk is rule 11 too."""
        try:
            values = ds[()]
        except _H5_ERRORS as exc:
            raise ChecksumError(f"cannot be read (chunk checksum failed or HDF5 metadata damaged: {_first_line(exc)})",
                                self.path, ds.name, rule=rule) from None
        actual = hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()
        if actual != text(ds.attrs.get(S.SHA256_ATTR, "")):
            raise ChecksumError("SHA-256 differs from its sha256 attribute: the data is damaged (spec 4.7)", self.path,
                                ds.name, rule=rule)
        return values

    def _read_basis(self, group: h5py.Group) -> TailBasis:
        """``/stream/tail`` ``mean`` and ``basis`` (their layout checked: (C,) and (r, C) float32,
        r <= 256), read whole, checked (rules 11 and 18)."""
        mean = self._read_whole(group[S.STREAM_TAIL_MEAN], Rule.CHECKSUMS)
        basis = self._read_whole(group[S.STREAM_TAIL_BASIS], Rule.CHECKSUMS)
        for name, message in checks.basis_problems(mean, basis):
            raise StreamError(message, self.path, S.stream_path(name)).at_rule(Rule.STREAM_TAIL)
        return TailBasis(mean, basis)

    def _read_start(self, name: str) -> np.ndarray:
        """``epoch_start`` or ``batch_start`` whole (its shape is bounded: E <= 10,000, NB <= 2^22),
        checked against its ``sha256``."""
        return self._read_whole(self.group[name], Rule.STREAM).astype(np.int64)

    # -- structure ----------------------------------------------------------------------------------
    def epoch_batches(self, epoch: int) -> range:
        """The global batch numbers of epoch ``epoch`` (0..E-1)."""
        e = int(epoch)
        if not 0 <= e < self.epochs:
            raise IndexError(f"epoch {epoch} is outside 0..{self.epochs - 1}")
        stop = int(self._epoch_start[e + 1]) if e + 1 < self.epochs else self.num_batches
        return range(int(self._epoch_start[e]), stop)

    def epoch_of(self, batch: int) -> int:
        """The epoch that holds global batch ``batch``."""
        return int(np.searchsorted(self._epoch_start, int(batch), side="right")) - 1

    def _bounds(self, batch: int) -> tuple[int, int]:
        b = int(batch)
        if not 0 <= b < self.num_batches:
            raise IndexError(f"batch {batch} is outside 0..{self.num_batches - 1}")
        stop = int(self._batch_start[b + 1]) if b + 1 < self.num_batches else self.num_records
        return int(self._batch_start[b]), stop

    def batch_length(self, batch: int) -> int:
        """Records of global batch ``batch`` (1..B)."""
        start, stop = self._bounds(batch)
        return stop - start

    @property
    def batch_start(self) -> np.ndarray:
        """``(NB,)`` int64: the first record of each batch (checked; a copy)."""
        return self._batch_start.copy()

    @property
    def epoch_start(self) -> np.ndarray:
        """``(E,)`` int64: the first batch of each epoch (checked; a copy)."""
        return self._epoch_start.copy()

    # -- reading -----------------------------------------------------------------------------------
    def _read(self, ds: h5py.Dataset, start: int, stop: int, batch: int, rule: Rule = Rule.STREAM_DIGESTS
              ) -> np.ndarray:
        try:
            return ds[start:stop]
        except _H5_ERRORS as exc:
            raise ChecksumError(f"batch {batch} cannot be read (chunk checksum failed or HDF5 metadata damaged: "
                                f"{_first_line(exc)})", self.path, ds.name, rule=rule) from None

    def _read_tail(self, start: int, stop: int, batch: int) -> dict[str, np.ndarray]:
        """Batch ``batch``'s rows of ``tail/coef`` and ``tail/scale`` (records start..stop-1), checked
        against ``/stream/tail/batch_sha256`` and for scales finite and >= 0 (rule 18); a chunk that
        cannot be read (fletcher32) is rule 11."""
        rows = {name: self._read(ds, start, stop, batch, Rule.CHECKSUMS) for name, ds in self._tail_datasets.items()}
        digests = self._read(self._tail_digests, batch, batch + 1, batch, Rule.CHECKSUMS)[0]
        for column, name in enumerate(S.STREAM_TAIL_DIGESTED):
            data = np.ascontiguousarray(rows[name])
            if hashlib.sha256(memoryview(data.reshape(-1).view(np.uint8))).digest() != digests[column].tobytes():
                raise DigestError(f"batch {batch} (records {start}..{stop - 1}) does not match its digest in "
                                  f"{self._tail_digests.name}: the data is damaged", self.path, S.stream_path(name),
                                  rule=Rule.STREAM_TAIL)
        message = checks.scale_problem(rows[S.STREAM_TAIL_SCALE], start)
        if message:
            raise StreamError(f"batch {batch}: {message}", self.path, S.stream_path(S.STREAM_TAIL_SCALE),
                              rule=Rule.STREAM_TAIL)
        return rows

    def read_batch(self, batch: int) -> StreamBatch:
        """Global batch ``batch`` (0..NB-1), every dataset checked against its batch digest (rule 17)
        and every value against rule 16's bounds."""
        start, stop = self._bounds(batch)
        b = int(batch)
        rows = {}
        for name, ds in self._datasets.items():
            rows[name] = self._read(ds, b, b + 1, b) if StreamSpec.per_batch(name) else self._read(ds, start, stop, b)
        digests = self._read(self._digests, b, b + 1, b)[0]
        for column, name in enumerate(self._names):
            data = np.ascontiguousarray(rows[name])
            if hashlib.sha256(memoryview(data.reshape(-1).view(np.uint8))).digest() != digests[column].tobytes():
                raise DigestError(f"batch {b} (records {start}..{stop - 1}) does not match its digest in "
                                  f"{self._digests.name}: the data is damaged", self.path, S.stream_path(name),
                                  rule=Rule.STREAM_DIGESTS)
        spec = self.spec
        labels = {name: rows[name] for name in spec.codec.layout(self.num_classes)}
        for name, message in checks.batch_problems(
                spec, self.num_classes, self.num_images, self.height, self.width, rows[S.STREAM_IMAGE],
                rows[S.STREAM_BOX], rows[S.STREAM_FLIP], rows.get(S.STREAM_MIX_PARTNER), rows.get(S.STREAM_MIX_BOX),
                rows.get(S.STREAM_MIX_LAMBDA), labels, record_offset=start, batch_offset=b):
            raise StreamError(f"batch {b}: {message} (spec 4.7)", self.path, S.stream_path(name))
        if self.tail is not None:
            labels.update(self._read_tail(start, stop, b))
        mix_box = rows.get(S.STREAM_MIX_BOX)
        mix_lambda = rows.get(S.STREAM_MIX_LAMBDA)
        partner = rows.get(S.STREAM_MIX_PARTNER)
        return StreamBatch(
            epoch=self.epoch_of(b), index=b, image=rows[S.STREAM_IMAGE].astype(np.int64),
            box=rows[S.STREAM_BOX].astype(np.int64), flip=rows[S.STREAM_FLIP].astype(bool),
            mix_partner=None if partner is None else partner.astype(np.int64),
            mix_box=None if mix_box is None else mix_box[0].astype(np.int64),
            mix_lambda=None if mix_lambda is None else float(mix_lambda[0]), labels=labels)

    def read_epoch(self, epoch: int) -> Iterator[StreamBatch]:
        """The batches of epoch ``epoch`` in order, each read and checked as :meth:`read_batch`."""
        for b in self.epoch_batches(epoch):
            yield self.read_batch(b)

    def probs(self, batch: StreamBatch, temperature: float | None = None) -> np.ndarray:
        """``batch``'s labels as ``(n, C)`` float32 probabilities at the stored temperature, or
        re-tempered to ``temperature`` (:meth:`StreamCodec.decode`; with the tail when the stream has one)."""
        return batch.probs(self.spec.codec, self.num_classes, temperature, self.spec.temperature, self.tail)

    def info(self) -> dict:
        """A JSON-able summary (what ``ladd info`` prints of the stream)."""
        spec = self.spec
        return {"epochs": self.epochs, "batches": self.num_batches, "records": self.num_records,
                "batch_size": int(spec.batch_size), "mode": spec.mode, "mix": spec.mix,
                "crop_size": [int(v) for v in spec.crop_size], "resize": spec.resize, "codec": spec.codec.label,
                "kind": spec.codec.kind, "tail_rank": spec.codec.tail_rank, "temperature": float(spec.temperature), "teacher": dict(spec.teacher),
                "sampler": spec.sampler, "augmentation": spec.augmentation}


__all__ = ["StreamReader"]
