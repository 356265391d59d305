"""What the three exports (``ladd export --format folder | npz | ddranking``) share: the checks
before anything is written (:func:`check_exportable`), decoded dense rows, the images as pixels,
and ``ladd_metadata`` (:func:`npz_metadata`: what ``ladd convert`` needs to rebuild the file).
Each format's writer lives next to its importer (:mod:`.npz`, :mod:`.folder`, :mod:`.ddranking`);
:func:`ladd_format.export.export` dispatches to them.

The source is untrusted: before anything is written, :func:`check_exportable` refuses in one line a
file with no images or no classes, datasets the file cannot hold (``size.check_dataset``), labels
outside ``0..C-1``, a class-name list of the wrong length, a grid N beyond
:data:`~ladd_format.spec.limits.MAX_GRID_N`, boxes that are not ``(N*N, 4)`` inside the image, and
dense datasets whose shape is not the codec's.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GeometryError, InputError, LabelRangeError, ShapeError
from ..geometry import boxes_inside
from ..pixels import stored_to_uint8
from ..reader import DLAFile
from ..spec.checks import check_counts, check_dataset, dense_datasets
from ..spec.limits import MAX_GRID_N
from ..spec.names import (BOXES_ATTR, DENSE, DENSE_PATH, IMAGES, IMAGES_PATH, LABELS, LABELS_PATH, ROOT_PATH,
                          SOFT_LABELS, SOFT_LABELS_PATH)

#: images per block of an export (a block is also bounded by ``rows.BLOCK_BYTES``)
BATCH = 64


def check_exportable(f: DLAFile) -> np.ndarray:
    """Refuse (one line) what export would divide by, index with or allocate from unchecked
    (module docstring); returns the hard labels, read once."""
    check_counts(f.num_images, f.num_classes, f.path)
    h5 = f.h5
    check_dataset(h5[IMAGES], f.path)
    check_dataset(h5[LABELS], f.path)
    if f.has_soft_labels:
        soft = check_dataset(h5[SOFT_LABELS], f.path)
        if soft.shape != (f.num_images, f.num_classes):
            raise ShapeError(f"must have shape ({f.num_images}, {f.num_classes}), got {soft.shape}", f.path,
                             SOFT_LABELS_PATH)
    labels = f.labels()
    bad = np.flatnonzero((labels < 0) | (labels >= f.num_classes))
    if bad.size:
        raise LabelRangeError(f"label {int(labels[bad[0]])} of image {int(bad[0])} is outside 0..{f.num_classes - 1}",
                              f.path, LABELS_PATH)
    names = f.class_names
    if names is not None and len(names) != f.num_classes:
        raise ShapeError(f"class_names has {len(names)} entries for {f.num_classes} classes", f.path, ROOT_PATH)
    if f.has_dense:
        n = f.n
        if not 1 <= n <= MAX_GRID_N:
            raise GeometryError(f"grid size n must lie in 1..{MAX_GRID_N}, got {n}", f.path, DENSE_PATH)
        boxes = np.asarray(f.h5[DENSE].attrs.get(BOXES_ATTR))
        _, h, w = f.image_shape
        if boxes.shape != (n * n, 4) or not np.issubdtype(boxes.dtype, np.integer) or not boxes_inside(boxes, h, w):
            raise GeometryError(f"boxes must be {n * n} integer rows [top, left, height, width] inside the "
                                f"{h}x{w} image, got shape {boxes.shape}", f.path, DENSE_PATH)
        dense_datasets(f)
    return labels


def decoded_dense(f: DLAFile, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Decoded dense labels, or a one-line error when the stored values cannot be decoded."""
    stop = f.num_images if stop is None else stop
    try:
        dense = f.dense(start, stop)
    except (IndexError, ValueError, TypeError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(f"dense labels cannot be decoded ({detail}); run `ladd verify`", f.path, DENSE_PATH) from None
    expected = (stop - start, f.n * f.n, f.num_classes)
    if dense.shape != expected:
        raise ShapeError(f"decoded dense labels have shape {dense.shape}, expected {expected}", f.path, DENSE_PATH)
    return dense


def uint8_images(f: DLAFile, start: int, stop: int) -> np.ndarray:
    pixels = stored_to_uint8(f.images(start, stop), f.space)
    if pixels is None:
        raise InputError(f"images in space {f.space!r} have no pixel form; export them with --format npz",
                         f.path, IMAGES_PATH)
    return pixels


def npz_metadata(f: DLAFile) -> dict:
    """What ``ladd_metadata`` records (module docstring; read back by ``converters.npz``)."""
    attrs = f.attrs
    meta: dict = {"version": 1, "ipc": int(attrs["ipc"]) if "ipc" in attrs else None}
    for key in ("source_dataset", "distillation"):
        if key in attrs:
            meta[key] = str(attrs[key])
    if "learned_lr" in attrs:
        meta["learned_lr"] = float(attrs["learned_lr"])
    if "imagenet_class_ids" in attrs:
        meta["imagenet_class_ids"] = [int(v) for v in np.asarray(attrs["imagenet_class_ids"]).reshape(-1)]
    if f.has_soft_labels:
        meta["soft_dtype"] = str(f.h5[SOFT_LABELS].dtype)
    if f.has_dense:
        labeler = {key: value for key, value in f.labeler.items() if _jsonable(value)}
        meta["dense"] = {"codec": f.codec.text(), "temperature": float(f.temperature), "labeler": labeler}
    return meta


def _jsonable(value) -> bool:
    """A labeler attribute ``convert npz`` reads back: a string, a finite number or a list of them
    (anything else -- complex, NaN, nested -- is left out of ``ladd_metadata``)."""
    if isinstance(value, list):
        return all(isinstance(v, (int, float)) and _jsonable(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int))


def ranges(total: int, rows: int):
    for start in range(0, total, rows):
        yield start, min(total, start + rows)
