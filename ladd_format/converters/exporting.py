"""What the three exports (``ladd export --format folder | npz | ddranking``) share: the checks
before anything is written (:func:`check_exportable`, :func:`check_stream_exportable`), decoded dense
rows, the images as pixels, and ``ladd_metadata`` (:func:`npz_metadata`: what ``ladd convert`` needs to
rebuild the file; :func:`stream_metadata`: a relabel stream's attributes).
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
from ..size import check_stream_batches
from ..spec.checks import check_counts, check_dataset, dense_datasets
from ..spec.limits import MAX_GRID_N
from ..spec.names import (AUGMENTATION_ATTR, BATCH_SIZE_ATTR, BOXES_ATTR, CROP_SIZE_ATTR, DENSE, DENSE_PATH, IMAGES,
                          IMAGES_PATH, LABELS, LABELS_PATH, MIX_ATTR, MODE_ATTR, RESIZE_ATTR, ROOT_PATH, SAMPLER_ATTR,
                          SOFT_LABELS, SOFT_LABELS_PATH, STREAM_EPOCHS_ATTR, STREAM_PATH, TEMPERATURE_ATTR)

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


def check_stream_exportable(f: DLAFile, fmt: str, drop_stream: bool, notes: list[str]) -> bool:
    """Whether the export of ``f`` as ``fmt`` carries its relabel stream. ``npz`` does (its arrays as
    ``stream_<name>`` members, after every batch has been read through the stream's reader, so that its
    checks apply: :func:`ladd_format.size.check_stream_batches`); ``folder`` and ``ddranking`` cannot hold
    one: without ``drop_stream`` they are refused in one line (a stream is most of such a set's bytes, so
    an export without it is never made silently), with it a note says what is left out."""
    if not f.has_stream:
        return False
    s = f.stream
    what = f"a relabel stream ({s.epochs} epoch(s), {s.num_records:,} records)"
    if drop_stream:
        notes.append(f"{what} is not exported (--drop-stream)")
        return False
    if fmt != "npz":
        raise InputError(f"holds {what}, which --format {fmt} cannot hold: export with --format npz to keep it, "
                         "or pass --drop-stream to export the rest without it", f.path, STREAM_PATH)
    check_stream_batches(f)
    return True


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


def npz_metadata(f: DLAFile, stream: bool = False) -> dict:
    """What ``ladd_metadata`` records (module docstring; read back by ``converters.npz``); ``stream``:
    also the relabel stream's attributes (:func:`stream_metadata`), for an export that holds its arrays."""
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
    if stream and f.has_stream:
        meta["stream"] = stream_metadata(f)
    return meta


def stream_metadata(f: DLAFile) -> dict:
    """The relabel stream's attributes (spec 4.7) as JSON: ``/stream``'s under their attribute names
    (``epochs``, ``batch_size``, ``mode``, ``crop_size``, ``resize``, ``mix``, ``kind``, ``codec``, ``k``
    for topk, ``temperature``, ``sampler`` and ``augmentation`` when recorded), ``codec_text`` (the codec
    as ``parse_stream_codec`` reads it) and ``teacher`` (``/stream/teacher``'s attributes; values JSON
    cannot hold are left out), and ``tail_rank`` (``/stream/tail``'s ``rank``, spec 4.8) when the stream
    has a tail. The arrays travel as the ``stream_<name>`` members (the tail's as ``stream_tail_mean``,
    ``stream_tail_basis``, ``stream_tail_coef``, ``stream_tail_scale``)."""
    spec = f.stream.spec
    meta: dict = {STREAM_EPOCHS_ATTR: int(spec.epochs), BATCH_SIZE_ATTR: int(spec.batch_size), MODE_ATTR: spec.mode,
                  CROP_SIZE_ATTR: [int(v) for v in spec.crop_size], RESIZE_ATTR: spec.resize, MIX_ATTR: spec.mix,
                  **{key: (int(v) if isinstance(v, (int, np.integer)) else str(v))
                     for key, v in spec.codec.attrs().items()},
                  "codec_text": spec.codec.label, TEMPERATURE_ATTR: float(spec.temperature)}
    if spec.codec.tail_rank is not None:
        meta["tail_rank"] = int(spec.codec.tail_rank)
    for key, value in ((SAMPLER_ATTR, spec.sampler), (AUGMENTATION_ATTR, spec.augmentation)):
        if value is not None:
            meta[key] = value
    teacher = {key: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for key, v in spec.teacher.items()}
    meta["teacher"] = {key: v for key, v in teacher.items() if _jsonable(v)}
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
