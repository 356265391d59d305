"""The checks a tool makes on a file's datasets before it reads them: what ``size``, ``info`` and
``export`` ask (``verify`` runs the full rules of section 8 instead).

Each bounds a dataset by what the file holds (spec 2.3-2.4: no external or virtual storage, a number
dtype, declared bytes at most :data:`~ladd_format.spec.limits.DEFLATE_MAX_RATIO` times the bytes
stored) or refuses what a summary would divide by (no images, fewer than one class), in one line
naming the rule it breaks. Nothing here reads a dataset's values except :func:`scan_values`, which
reads through the open file's reader and so its checks. numpy and h5py only.
"""

from __future__ import annotations

import math
import operator

import h5py

from ..errors import AttributeValueError, DtypeError, InputError, MissingFieldError, ShapeError
from ..rows import checked_row_bytes
from . import names as N
from .limits import DEFLATE_MAX_RATIO, EXPANSION_SLACK, READ_BLOCK_BYTES
from .rules import Rule

#: the rule of section 8 that governs each dataset's presence and shape, by path
_DATASET_RULES = {N.IMAGES_PATH: Rule.IMAGES, N.LABELS_PATH: Rule.LABELS, N.SOFT_LABELS_PATH: Rule.SOFT_LABELS,
                  N.ROW_DIGESTS_PATH: Rule.ROW_DIGESTS}


def rule_of(where: str | None) -> Rule | None:
    """The rule of section 8 that covers the dataset at path ``where`` (``/dense/...``: rule 8;
    ``/stream/...``: rule 16, ``/stream/batch_sha256`` rule 17, ``/stream/tail/...`` rule 18)."""
    if where is None:
        return None
    if where == N.DENSE_PATH or where.startswith(N.DENSE_PATH + "/"):
        return Rule.DENSE
    if where == N.STREAM_TAIL_PATH or where.startswith(N.STREAM_TAIL_PATH + "/"):
        return Rule.STREAM_TAIL
    if where == N.STREAM_PATH or where.startswith(N.STREAM_PATH + "/"):
        return Rule.STREAM_DIGESTS if where == N.stream_path(N.STREAM_BATCH_DIGESTS) else Rule.STREAM
    return _DATASET_RULES.get(where)


def check_dataset(ds, path, where: str | None = None) -> h5py.Dataset:
    """``ds`` when it is a numeric dataset of at least one axis whose declared bytes the file can
    hold; else a one-line :class:`~ladd_format.errors.LaddError` naming it. Nothing is read."""
    where = where or getattr(ds, "name", None)
    if not isinstance(ds, h5py.Dataset):
        raise MissingFieldError("is not a dataset", path, where, rule=rule_of(where))
    if ds.is_virtual or ds.external:
        raise InputError("is stored outside this file (virtual or external dataset), which is refused", path, where,
                         rule=Rule.SELF_CONTAINED)
    dtype = ds.dtype
    if dtype.kind not in "biuf" or dtype.itemsize == 0:
        raise DtypeError(f"must hold numbers, found dtype {dtype}", path, where, rule=Rule.SELF_CONTAINED)
    if ds.ndim < 1:
        raise ShapeError(f"must have at least one axis, found shape {ds.shape}", path, where, rule=Rule.LIMITS)
    declared = math.prod(int(v) for v in ds.shape) * dtype.itemsize
    stored = int(ds.id.get_storage_size())
    if declared > DEFLATE_MAX_RATIO * stored + EXPANSION_SLACK:
        raise ShapeError(f"declares {declared:,} bytes ({ds.shape} {dtype}) but the file stores {stored:,} bytes "
                         "of it (unwritten chunks or a forged shape)", path, where, rule=Rule.LIMITS)
    return ds


def check_counts(num_images: int, num_classes: int, path) -> None:
    """Refuse what sizes and percentages would divide by: no images, fewer than one class."""
    try:
        count = operator.index(num_classes)
    except TypeError:
        count = 0
    if isinstance(num_classes, bool) or count < 1:
        raise AttributeValueError(f"num_classes must be an integer >= 1, got {num_classes!r}", path, N.ROOT_PATH,
                                  rule=Rule.ROOT)
    if num_images < 1:
        raise ShapeError("holds no images; a D_LA holds at least one", path, N.IMAGES_PATH, rule=Rule.IMAGES)


def dense_datasets(f) -> dict:
    """The codec's datasets under ``/dense`` of an open file ``f`` (a :class:`~ladd_format.reader.DLAFile`),
    each present, bounded (:func:`check_dataset`) and shaped ``(M, *per-image shape)``; else a
    one-line error."""
    group = f.h5[N.DENSE]
    found = {}
    for name, (shape, _) in f.codec.layout(f.n * f.n, f.num_classes).items():
        if name not in group:
            raise MissingFieldError(f"dataset required by codec {f.codec.name!r} is missing", f.path,
                                    N.dense_path(name), rule=Rule.DENSE)
        ds = check_dataset(group[name], f.path)
        if ds.shape != (f.num_images, *shape):
            raise ShapeError(f"must have shape {(f.num_images, *shape)}, got {ds.shape}", f.path, ds.name,
                             rule=Rule.DENSE)
        found[name] = ds
    return found


def scan_values(f) -> None:
    """Read the labels, the dense arrays and the stream's batches of an open file once, in blocks of about
    :data:`~ladd_format.spec.limits.READ_BLOCK_BYTES`, through its reader's checks (row digests,
    label range, codec values); the images are not read. A defect raises the reader's one-line error
    (``ladd info`` calls this, so that a file ``verify`` refuses for its labels is not summarised as
    if it were fine)."""
    check_counts(f.num_images, f.num_classes, f.path)
    check_dataset(f.h5[N.LABELS], f.path)
    row = 8
    if f.has_dense:
        row += checked_row_bytes(dense_datasets(f).values())
    step = max(1, READ_BLOCK_BYTES // row)
    for start in range(0, f.num_images, step):
        stop = min(f.num_images, start + step)
        f.labels(start, stop)
        if f.has_dense:
            f.dense_stored(start, stop)
    if f.has_stream:                 # every batch through the stream reader's checks (rules 16, 17)
        stream = f.stream
        for batch in range(stream.num_batches):
            stream.read_batch(batch)
