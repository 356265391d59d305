"""Export a D_LA for frameworks that cannot run ladd-format (``ladd export``).

``folder``: an ImageFolder tree of PNGs plus the labels as ``.npy`` and a ``metadata.json``::

    OUT/images/<cccc>[_<name>]/<index:06d>.png     class folders sort in class-index order
    OUT/hard_labels.npy        (M,) int64
    OUT/dense_labels.npy       (M, N*N, C) float32, decoded     (D_LA only)
    OUT/soft_labels.npy        (M, C) float32 as stored         (when present; kind in metadata)
    OUT/metadata.json          classes, normalisation, geometry, codec, files, source SHA-256
    with --subimages (D_LA only):
    OUT/subimages/<cccc>[_<name>]/<index:06d>_<j:02d>.png   the N*N sub-images (spec section 5)
    OUT/subimage_labels.npy    (M*N*N, C) float32, row i*N*N + j is sub-image j of image i

``npz``: one archive with the keys ``ladd convert npz`` reads (so it converts back losslessly up to
the codec: dense labels are exported decoded), plus ``subimages`` (M, N*N, K, H, W) with
``--subimages``.

Sub-images are rebuilt from the image as float and, for uint8 images, rounded half up to uint8
(spec 4.1, ``pixels.round_half_up``) for PNG/npz; a trainer that
wants the exact float sub-images should rebuild them with :func:`ladd_format.torch.subimages`.
Outputs appear only when complete (temporary sibling, then rename).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from . import atomic
from .errors import InputError, NoDenseLabelsError
from .pixels import round_half_up, stored_to_uint8
from .provenance import file_sha256
from .reader import DLAFile, open_dla

FORMATS = ("folder", "npz")
BATCH = 64


def _class_dir(c: int, names: list[str] | None) -> str:
    if not names:
        return f"{c:04d}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", names[c]).strip("_")[:60]
    return f"{c:04d}_{safe}" if safe else f"{c:04d}"


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
    info = f.info()
    meta = {key: info.get(key) for key in ("num_images", "num_classes", "class_names", "image_shape", "space",
                                           "mean", "std", "source_dataset", "distillation", "ipc")}
    meta["dense"] = info["dense"]
    meta["soft_labels_kind"] = f.soft_kind
    meta["files"] = files
    meta["source"] = {"name": f.path.name, "sha256": file_sha256(f.path)}
    return meta


def _save_png(path: Path, chw: np.ndarray) -> None:
    from PIL import Image

    hwc = np.transpose(chw, (1, 2, 0))
    Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc).save(path, format="PNG")


def export_folder(f: DLAFile, out: Path, with_subimages: bool) -> None:
    if f.image_shape[0] not in (1, 3, 4):
        raise InputError(f"PNG holds 1, 3 or 4 channels, the images have {f.image_shape[0]}", f.path, "/images")
    names = f.class_names
    labels = f.labels()
    files: dict[str, str] = {"hard_labels": "hard_labels.npy"}
    for c in np.unique(labels):
        (out / "images" / _class_dir(int(c), names)).mkdir(parents=True, exist_ok=True)
        if with_subimages:
            (out / "subimages" / _class_dir(int(c), names)).mkdir(parents=True, exist_ok=True)
    for start in range(0, f.num_images, BATCH):
        stop = min(f.num_images, start + BATCH)
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
    if f.has_dense:
        dense = f.dense()
        np.save(out / "dense_labels.npy", dense)
        files["dense_labels"] = "dense_labels.npy"
        if with_subimages:
            np.save(out / "subimage_labels.npy", dense.reshape(-1, dense.shape[-1]))
            files["subimage_labels"] = "subimage_labels.npy"
    if f.has_soft_labels:
        np.save(out / "soft_labels.npy", f.soft_labels())
        files["soft_labels"] = "soft_labels.npy"
    (out / "metadata.json").write_text(json.dumps(_metadata(f, files), indent=2))


def export_npz(f: DLAFile, out: Path, with_subimages: bool) -> None:
    arrays: dict[str, np.ndarray] = {
        "images": f.images(), "labels": f.labels(), "num_classes": np.int64(f.num_classes),
        "mean": f.mean, "std": f.std, "space": np.array(f.space),
        "image_dtype": np.array(str(f.image_dtype))}     # convert npz keeps float images float
    if f.class_names:
        arrays["class_names"] = np.array(f.class_names)
    if f.has_dense:
        arrays.update(dense_labels=f.dense(), n=np.int64(f.n), ratio=np.float64(f.ratio),
                      temperature=np.float64(f.temperature), boxes=f.boxes,
                      labeler_arch=np.array(str(f.labeler.get("arch", "unknown"))))
        if with_subimages:
            arrays["subimages"] = np.concatenate([_subimages_uint8(f, f.images(s, min(f.num_images, s + BATCH)))
                                                  for s in range(0, f.num_images, BATCH)])
    if f.has_soft_labels:
        arrays.update(soft_labels=f.soft_labels(), soft_kind=np.array(f.soft_kind))
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)


def export(path: str | os.PathLike, out: str | os.PathLike, fmt: str = "folder", with_subimages: bool = False,
           overwrite: bool = False) -> Path:
    """Export the D_LA at ``path`` to ``out`` as ``folder`` or ``npz`` (see module docstring)."""
    if fmt not in FORMATS:
        raise InputError(f"export format must be one of {FORMATS}, got {fmt!r}")
    dest = Path(out)
    if dest.exists() and not overwrite:
        raise InputError("exists; pass --force to replace it", dest)
    if not dest.parent.is_dir():
        raise InputError("output folder does not exist", dest.parent)
    with open_dla(path) as f:
        if with_subimages and not f.has_dense:
            raise NoDenseLabelsError("no dense labels, hence no sub-images: run `ladd augment` first", f.path, "/dense")
        tmp = atomic.temporary_sibling(dest)
        try:
            if fmt == "folder":
                tmp.mkdir()
                export_folder(f, tmp, with_subimages)
            else:
                export_npz(f, tmp, with_subimages)
            _replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            raise
    return dest


def _replace(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` to ``dest``; an existing ``dest`` is moved aside first and removed after."""
    if not dest.exists():
        os.replace(tmp, dest)
        return
    old = atomic.temporary_sibling(dest)
    os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old) if old.is_dir() else old.unlink()
