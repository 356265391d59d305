"""Export a D_LA for frameworks that cannot run ladd-format (``ladd export``).

``folder``: an ImageFolder tree of PNGs plus the labels as ``.npy`` and a ``metadata.json``::

    OUT/images/<cccc>[_<name>]/<index:06d>.png     class folders sort in class-index order
    OUT/hard_labels.npy        (M,) int64
    OUT/dense_labels.npy       (M, N*N, C) float32, decoded     (D_LA only)
    OUT/soft_labels.npy        (M, C) float32 as stored         (when present; kind in metadata)
    OUT/metadata.json          classes, normalisation, geometry, codec, files, source SHA-256, and
                               ladd_metadata (as the npz's): ``ladd convert auto OUT`` rebuilds the file
    with --subimages (D_LA only):
    OUT/subimages/<cccc>[_<name>]/<index:06d>_<j:02d>.png   the N*N sub-images (spec section 5)
    OUT/subimage_labels.npy    (M*N*N, C) float32, row i*N*N + j is sub-image j of image i

``npz``: one archive with the keys ``ladd convert npz`` reads, plus ``subimages`` (M, N*N, K, H, W)
with ``--subimages``. Dense labels are exported decoded (float32), and for codecs other than
float32 also as stored (``dense_stored_<dataset>``: decode -> encode is not the identity for uint8
and topk, so ``convert npz`` writes these back as they are); what the keys do not hold goes
into the JSON string key ``ladd_metadata`` (the codec as its one-value text, the temperature and
every ``/dense/labeler`` attribute, ``source_dataset``, ``distillation``, ``ipc``, ``learned_lr``,
``imagenet_class_ids``, the soft-label dtype), so ``ladd convert npz`` rebuilds a file with equal
datasets and equal root and ``/dense`` attributes; only ``/provenance`` (a new creation time,
converter ``npz``, the npz as input) and therefore ``root_sha256`` differ.

``ddranking``: the folder DD-Ranking's evaluators load (``images.pt``, ``labels.pt``, ``lr.pt`` and
a ``metadata.json``; rules in :mod:`ladd_format.converters.ddranking`).

Round trips: every format's metadata records what ``ladd convert`` needs (the npz's
``ladd_metadata``; ``metadata.json`` of the folders holds the same object), so ``ladd convert auto``
of an export, with no flags, rebuilds a file with the same content digest
(:func:`ladd_format.integrity.content_digest`) wherever the export holds the data exactly: npz
always; ddranking for files without dense labels whose images are uint8, normalised or ZCA floats;
folder for uint8 images with no dense labels or a float32/float16 codec (PNG holds uint8 pixels,
and ``dense_labels.npy`` the decoded probabilities). Its writer needs torch and
is imported only in that branch, so importing this module loads no torch.

Every ``.npy`` (in the folder, or as a member of the npz, stored as ``np.savez`` stores them) is
written block by block (:mod:`ladd_format.rows`), so memory does not grow with the set; only
DD-Ranking's ``images.pt`` is one tensor that ``torch.save`` writes whole.

Sub-images are rebuilt from the image as float and, for uint8 images, rounded half up to uint8
(spec 4.1, ``pixels.round_half_up``) for PNG/npz; a trainer that
wants the exact float sub-images should rebuild them with :func:`ladd_format.torch.subimages`.
Outputs appear only when complete (temporary sibling, then rename); the destination's stale
partials of killed exports are removed first (:func:`ladd_format.atomic.remove_stale_partials`).
An existing OUT (with ``overwrite``) is replaced whole; when OUT is a symbolic link, the link itself
is replaced and its target left untouched (never removed through the link).

The source is untrusted: before anything is written, :func:`check_exportable` refuses in one line a
file with no images or no classes, datasets the file cannot hold (``size.check_dataset``), labels
outside ``0..C-1``, a class-name list of the wrong length, a grid N beyond
:data:`~ladd_format.geometry.MAX_GRID_N`, boxes that are not ``(N*N, 4)`` inside the image, and
dense datasets whose shape is not the codec's.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np

from . import atomic
from .errors import (GeometryError, InputError, LabelRangeError, NoDenseLabelsError, OutputExistsError,
                     ShapeError)
from .geometry import MAX_GRID_N, boxes_inside
from .pixels import round_half_up, stored_to_uint8
from .provenance import file_sha256
from .reader import DLAFile, open_dla
from .rows import WORKING_BYTES, block_rows, checked_row_bytes, row_bytes, write_npy, write_npz_member
from .size import check_counts, check_dataset, dense_datasets

FORMATS = ("folder", "npz", "ddranking")
BATCH = 64


def _class_dir(c: int, names: list[str] | None) -> str:
    if not names:
        return f"{c:04d}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", names[c]).strip("_")[:60]
    return f"{c:04d}_{safe}" if safe else f"{c:04d}"


def check_exportable(f: DLAFile) -> np.ndarray:
    """Refuse (one line) what export would divide by, index with or allocate from unchecked
    (module docstring); returns the hard labels, read once."""
    check_counts(f.num_images, f.num_classes, f.path)
    h5 = f.h5
    check_dataset(h5["images"], f.path)
    check_dataset(h5["labels"], f.path)
    if f.has_soft_labels:
        soft = check_dataset(h5["soft_labels"], f.path)
        if soft.shape != (f.num_images, f.num_classes):
            raise ShapeError(f"must have shape ({f.num_images}, {f.num_classes}), got {soft.shape}", f.path,
                             "/soft_labels")
    labels = f.labels()
    bad = np.flatnonzero((labels < 0) | (labels >= f.num_classes))
    if bad.size:
        raise LabelRangeError(f"label {int(labels[bad[0]])} of image {int(bad[0])} is outside 0..{f.num_classes - 1}",
                              f.path, "/labels")
    names = f.class_names
    if names is not None and len(names) != f.num_classes:
        raise ShapeError(f"class_names has {len(names)} entries for {f.num_classes} classes", f.path, "/")
    if f.has_dense:
        n = f.n
        if not 1 <= n <= MAX_GRID_N:
            raise GeometryError(f"grid size n must lie in 1..{MAX_GRID_N}, got {n}", f.path, "/dense")
        boxes = np.asarray(f.h5["dense"].attrs.get("boxes"))
        _, h, w = f.image_shape
        if boxes.shape != (n * n, 4) or not np.issubdtype(boxes.dtype, np.integer) or not boxes_inside(boxes, h, w):
            raise GeometryError(f"boxes must be {n * n} integer rows [top, left, height, width] inside the "
                                f"{h}x{w} image, got shape {boxes.shape}", f.path, "/dense")
        dense_datasets(f)
    return labels


def _dense(f: DLAFile, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Decoded dense labels, or a one-line error when the stored values cannot be decoded."""
    stop = f.num_images if stop is None else stop
    try:
        dense = f.dense(start, stop)
    except (IndexError, ValueError, TypeError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(f"dense labels cannot be decoded ({detail}); run `ladd verify`", f.path, "/dense") from None
    expected = (stop - start, f.n * f.n, f.num_classes)
    if dense.shape != expected:
        raise ShapeError(f"decoded dense labels have shape {dense.shape}, expected {expected}", f.path, "/dense")
    return dense


def _uint8_images(f: DLAFile, start: int, stop: int) -> np.ndarray:
    pixels = stored_to_uint8(f.images(start, stop), f.space)
    if pixels is None:
        raise InputError(f"images in space {f.space!r} have no pixel form; export them with --format npz",
                         f.path, "/images")
    return pixels


def _subimages_uint8(f: DLAFile, images: np.ndarray) -> np.ndarray:
    """``(B, K, H, W)`` stored images -> ``(B, P, K, H, W)`` uint8 sub-images.

    The one place below the torch layer that calls into it, and only for ``--subimages``: the
    sub-images must come from the same kernel the loader and the labeler pass use (spec 5)."""
    import torch

    from .torch.subimages import subimages as rebuild

    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    subs = rebuild(x, f.boxes)
    if images.dtype == np.uint8:
        subs = round_half_up(subs).clamp(0, 255)          # spec 4.1's rounding, as for whole images
    return subs.to(torch.uint8).numpy() if images.dtype == np.uint8 else subs.numpy()


def _metadata(f: DLAFile, files: dict) -> dict:
    """The folder export's ``metadata.json``: what a reader needs, and (``ladd_metadata``, as the npz
    records it) what ``ladd convert`` needs to rebuild the file."""
    info = f.info()
    meta = {"format": "folder"}
    meta |= {key: info.get(key) for key in ("num_images", "num_classes", "class_names", "image_shape", "space",
                                           "mean", "std", "source_dataset", "distillation", "ipc")}
    meta["dense"] = info["dense"]
    meta["soft_labels_kind"] = f.soft_kind
    meta["files"] = files
    meta["source"] = {"name": f.path.name, "sha256": file_sha256(f.path)}
    meta["ladd_metadata"] = npz_metadata(f)
    return meta


def _save_png(path: Path, chw: np.ndarray) -> None:
    from PIL import Image

    hwc = np.transpose(chw, (1, 2, 0))
    Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc).save(path, format="PNG")


def export_folder(f: DLAFile, out: Path, with_subimages: bool, labels: np.ndarray | None = None,
                  progress=None) -> None:
    if f.image_shape[0] not in (1, 3, 4):
        raise InputError(f"PNG holds 1, 3 or 4 channels, the images have {f.image_shape[0]}", f.path, "/images")
    names = f.class_names
    labels = check_exportable(f) if labels is None else labels
    files: dict[str, str] = {"hard_labels": "hard_labels.npy"}
    for c in np.unique(labels):
        (out / "images" / _class_dir(int(c), names)).mkdir(parents=True, exist_ok=True)
        if with_subimages:
            (out / "subimages" / _class_dir(int(c), names)).mkdir(parents=True, exist_ok=True)
    rows = block_rows((1 + (f.n * f.n if with_subimages else 0)) * row_bytes(f.h5["images"]), BATCH)
    for start, stop in _ranges(f.num_images, rows):
        if progress is not None:
            progress(start, f.num_images)
        images = _uint8_images(f, start, stop)
        subs = _subimages_uint8(f, images) if with_subimages else None
        for k in range(stop - start):
            i = start + k
            folder = _class_dir(int(labels[i]), names)
            _save_png(out / "images" / folder / f"{i:06d}.png", images[k])
            if subs is not None:
                for j in range(subs.shape[1]):
                    _save_png(out / "subimages" / folder / f"{i:06d}_{j:02d}.png", subs[k, j])
    np.save(out / "hard_labels.npy", labels)
    m = f.num_images
    if f.has_dense:
        p, c = f.n * f.n, f.num_classes
        rows = block_rows(p * c * 4)
        write_npy(out / "dense_labels.npy", (m, p, c), np.float32, (_dense(f, a, b) for a, b in _ranges(m, rows)))
        files["dense_labels"] = "dense_labels.npy"
        if with_subimages:
            write_npy(out / "subimage_labels.npy", (m * p, c), np.float32,
                      (_dense(f, a, b).reshape(-1, c) for a, b in _ranges(m, rows)))
            files["subimage_labels"] = "subimage_labels.npy"
    if f.has_soft_labels:
        write_npy(out / "soft_labels.npy", (m, f.num_classes), np.float32,
                  (f.soft_labels(a, b) for a, b in _ranges(m, block_rows(4 * f.num_classes))))
        files["soft_labels"] = "soft_labels.npy"
    (out / "metadata.json").write_text(json.dumps(_metadata(f, files), indent=2))
    if progress is not None:
        progress(f.num_images, f.num_images)


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
        meta["soft_dtype"] = str(f.h5["soft_labels"].dtype)
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


def _ranges(total: int, rows: int):
    for start in range(0, total, rows):
        yield start, min(total, start + rows)


def _small(zf: zipfile.ZipFile, key: str, value) -> None:
    value = np.asarray(value)
    write_npz_member(zf, key, value.shape, value.dtype, [value])


class _Counter:
    """Wraps the block generators of :func:`export_npz`, reporting rows written over all of them."""

    def __init__(self, total: int, progress):
        self.total, self.progress, self.done = total, progress, 0

    def __call__(self, parts):
        for part in parts:
            yield part
            self.done += len(part)
            if self.progress is not None:
                self.progress(self.done, self.total)


def export_npz(f: DLAFile, out: Path, with_subimages: bool, labels: np.ndarray | None = None,
               progress=None) -> None:
    """The npz of the module docstring, written member by member and each member block by block
    (:data:`~ladd_format.rows.BLOCK_BYTES` at a time), so memory does not grow with the set;
    ``progress(rows written, rows)`` over the members that have one row per image."""
    labels = check_exportable(f) if labels is None else labels
    m, image_shape = f.num_images, f.image_shape
    streamed = 1 + int(f.has_soft_labels)          # the members with one row per image: images, soft labels,
    if f.has_dense:                                 # dense labels, sub-images, the codec's stored datasets
        streamed += 1 + int(with_subimages) + (len(dense_datasets(f)) if f.codec.name != "float32" else 0)
    counted = _Counter(m * streamed, progress)
    image_rows = block_rows(row_bytes(f.h5["images"]), BATCH)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        write_npz_member(zf, "images", (m, *image_shape), f.image_dtype,
                counted((f.images(a, b) for a, b in _ranges(m, image_rows))))
        for key, value in (("labels", labels), ("num_classes", np.int64(f.num_classes)), ("mean", f.mean),
                           ("std", f.std), ("space", np.array(f.space)),
                           ("image_dtype", np.array(str(f.image_dtype)))):   # convert npz keeps float images float
            _small(zf, key, value)
        if f.class_names:
            _small(zf, "class_names", np.array(f.class_names))
        if f.has_dense:
            p, c = f.n * f.n, f.num_classes
            # decoding works in float64, so the blocks are sized by that, not by the float32 written
            write_npz_member(zf, "dense_labels", (m, p, c), np.float32,
                    counted((_dense(f, a, b) for a, b in _ranges(m, block_rows(p * c * WORKING_BYTES)))))
            for key, value in (("n", np.int64(f.n)), ("ratio", np.float64(f.ratio)),
                               ("temperature", np.float64(f.temperature)), ("boxes", f.boxes),
                               ("labeler_arch", np.array(str(f.labeler.get("arch", "unknown"))))):
                _small(zf, key, value)
            if with_subimages:
                dtype = np.uint8 if f.image_dtype == np.uint8 else np.float32
                rows = block_rows(p * math.prod(image_shape) * np.dtype(dtype).itemsize, BATCH)
                write_npz_member(zf, "subimages", (m, p, *image_shape), dtype,
                        counted((_subimages_uint8(f, f.images(a, b)) for a, b in _ranges(m, rows))))
        if f.has_soft_labels:
            rows = block_rows(4 * f.num_classes)
            write_npz_member(zf, "soft_labels", (m, f.num_classes), np.float32,
                    counted((f.soft_labels(a, b) for a, b in _ranges(m, rows))))
            _small(zf, "soft_kind", np.array(f.soft_kind))
        if f.has_dense and f.codec.name != "float32":      # float32's stored rows are dense_labels themselves
            datasets = dense_datasets(f)
            rows = block_rows(checked_row_bytes(datasets.values()))   # each read takes all of them, checked
            for name, ds in datasets.items():
                write_npz_member(zf, f"dense_stored_{name}", ds.shape, ds.dtype,
                        counted((f.dense_stored(a, b)[name] for a, b in _ranges(m, rows))))
        _small(zf, "ladd_metadata", np.array(json.dumps(npz_metadata(f), sort_keys=True)))


def export(path: str | os.PathLike, out: str | os.PathLike, fmt: str = "folder", with_subimages: bool = False,
           overwrite: bool = False, notes: list[str] | None = None, progress=None) -> Path:
    """Export the D_LA at ``path`` to ``out`` as ``folder``, ``npz`` or ``ddranking`` (see module
    docstring). Notes for the user (what was reordered or left out) are appended to ``notes``.
    ``progress(done, total)``: images (folder) or rows of the per-image members (npz) written."""
    if fmt not in FORMATS:
        raise InputError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if with_subimages and fmt == "ddranking":
        raise InputError("--subimages applies to --format folder and npz; DD-Ranking's layout has no place for them")
    notes = [] if notes is None else notes
    dest = Path(out)
    if not dest.parent.is_dir():
        raise InputError("output folder does not exist" if not atomic.exists_or_link(dest.parent)
                         else "is not a folder, so the output cannot be written in it", dest.parent)
    atomic.remove_stale_partials(dest)
    if atomic.exists_or_link(dest) and not overwrite:
        raise OutputExistsError("exists; pass --force to replace it", dest)
    src = atomic.require_regular_file(path)
    if dest.parent.resolve() / dest.name in (src.resolve(), src.parent.resolve() / src.name):
        raise InputError("the output must differ from the input", dest)
    with open_dla(src) as f:
        if with_subimages and not f.has_dense:
            raise NoDenseLabelsError("no dense labels, hence no sub-images: run `ladd augment` first", f.path, "/dense")
        labels = check_exportable(f)
        tmp = atomic.temporary_sibling(dest)
        try:
            if fmt == "folder":
                tmp.mkdir()
                export_folder(f, tmp, with_subimages, labels, progress)
            elif fmt == "ddranking":
                from .converters.ddranking import write_folder   # needs torch: imported only here

                tmp.mkdir()
                write_folder(f, tmp, labels, notes, npz_metadata(f))
            else:
                export_npz(f, tmp, with_subimages, labels, progress)
            _replace(tmp, dest)
        except BaseException:
            _remove(tmp)
            raise
    return dest


def _remove(path: Path) -> None:
    """Remove a file, a symbolic link (never what it points to) or a real folder; missing is fine."""
    if atomic.is_real_dir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _replace(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` to ``dest``; an existing ``dest`` is moved aside first and removed after (a
    symbolic link is moved and unlinked as a link: its target is never touched)."""
    if not atomic.exists_or_link(dest):
        os.replace(tmp, dest)
        return
    old = atomic.temporary_sibling(dest)
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        os.replace(old, dest)          # put the original back: the destination stays intact
        raise
    _remove(old)
