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

A relabel stream (spec 4.7) goes into the npz as ``stream_<name>`` members, spec 7's names (every
``/stream`` dataset but ``batch_sha256``, in its stored dtype), with its attributes and teacher in
``ladd_metadata["stream"]`` (:func:`~ladd_format.converters.exporting.stream_metadata`); ``ladd convert
npz`` does not read it back. ``folder`` and ``ddranking`` have no place for one: they refuse such a file
in one line unless ``drop_stream`` (``--drop-stream``), and then a note says the stream is left out.

``ddranking``: the folder DD-Ranking's evaluators load (``images.pt``, ``labels.pt``, ``lr.pt`` and
a ``metadata.json``; rules in :mod:`ladd_format.converters.ddranking`).

Each format's writer lives next to its importer: ``write_export`` of
:mod:`ladd_format.converters.folder`, :mod:`~ladd_format.converters.npz` and
:mod:`~ladd_format.converters.ddranking`; what they share (the checks, decoded rows,
``ladd_metadata``) is :mod:`ladd_format.converters.exporting`. This module opens the file, checks
it, and replaces the destination only with a complete output.

Round trips: every format's metadata records what ``ladd convert`` needs (the npz's
``ladd_metadata``; ``metadata.json`` of the folders holds the same object), so ``ladd convert auto``
of an export, with no flags, rebuilds a file with the same content digest
(:func:`ladd_format.integrity.content_digest`) wherever the export holds the data exactly: npz
always; ddranking for files without dense labels whose images are uint8, normalised or ZCA floats;
folder for uint8 images with no dense labels or a float32/float16 codec (PNG holds uint8 pixels,
and ``dense_labels.npy`` the decoded probabilities). The ddranking writer needs torch (the
``torch`` extra: without it, one line says so); importing this module loads no torch.

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

The source is untrusted: before anything is written, :func:`check_exportable` refuses in one line
what export would divide by, index with or allocate from unchecked
(:mod:`ladd_format.converters.exporting`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from . import atomic
from .converters.exporting import check_exportable, check_stream_exportable, decoded_dense as _dense  # noqa: F401
from .errors import InputError, NoDenseLabelsError, OutputExistsError
from .extras import require
from .pixels import round_half_up
from .reader import DLAFile, open_dla
from .spec.names import DENSE_PATH

FORMATS = ("folder", "npz", "ddranking")


def _writer(fmt: str):
    """``write_export`` of ``fmt``'s module: ``(f, out, labels, notes, subimages=, progress=)``."""
    from .converters import ddranking, folder, npz

    return {"folder": folder.write_export, "npz": npz.write_export, "ddranking": ddranking.write_export}[fmt]


def _subimages_uint8(f: DLAFile, images: np.ndarray) -> np.ndarray:
    """``(B, K, H, W)`` stored images -> ``(B, P, K, H, W)`` uint8 sub-images.

    The one place below the torch layer that calls into it, and only for ``--subimages``: the
    sub-images must come from the same kernel the loader and the labeler pass use (spec 5)."""
    require("torch", "export --subimages")
    import torch

    from .torch.subimages import subimages as rebuild

    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    subs = rebuild(x, f.boxes)
    if images.dtype == np.uint8:
        subs = round_half_up(subs).clamp(0, 255)          # spec 4.1's rounding, as for whole images
    return subs.to(torch.uint8).numpy() if images.dtype == np.uint8 else subs.numpy()


def export(path: str | os.PathLike, out: str | os.PathLike, fmt: str = "folder", with_subimages: bool = False,
           overwrite: bool = False, notes: list[str] | None = None, progress=None, drop_stream: bool = False) -> Path:
    """Export the D_LA at ``path`` to ``out`` as ``folder``, ``npz`` or ``ddranking`` (see module
    docstring). Notes for the user (what was reordered or left out) are appended to ``notes``.
    A relabel stream goes into an npz; ``folder`` and ``ddranking`` refuse a file with one unless
    ``drop_stream`` (then a note says it is left out; :func:`check_stream_exportable`).
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
            raise NoDenseLabelsError("no dense labels, hence no sub-images: run `ladd augment` first", f.path, DENSE_PATH)
        labels = check_exportable(f)
        stream = check_stream_exportable(f, fmt, drop_stream, notes)
        write = _writer(fmt)
        tmp = atomic.temporary_sibling(dest)
        try:
            if fmt != "npz":                    # folder and ddranking write a folder
                tmp.mkdir()
            extra = {"with_stream": stream} if fmt == "npz" else {}
            write(f, tmp, labels, notes, subimages=(lambda images: _subimages_uint8(f, images)) if with_subimages
                  else None, progress=progress, **extra)
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
