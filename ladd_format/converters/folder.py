"""Converter ``folder``: an ImageFolder tree ``ROOT/<class>/<image>``, or what ``ladd export --format
folder`` writes (its root or its ``images/``: the images in index order, the labels and
normalisation from its ``.npy`` files and ``metadata.json``, :mod:`.exported`).

Classes are the subfolders sorted by name; the class index is the position (torchvision's
ImageFolder rule) and the folder names are recorded as class names (``--class-names`` or a
``--dataset`` preset with names take precedence). Without ``--dataset`` or ``--mean/--std`` the
normalisation is computed from the images (``rawset.finish``). Only image files directly in each class folder are
read (by suffix: .png .jpg .jpeg .bmp .webp .gif .tif .tiff; other files, nested and hidden folders
are ignored). Every image must have the same size; images of other modes (L, RGBA, P, ...) are
converted to RGB, with a note. Pixels are stored as decoded (uint8): PNG inputs exactly; for JPEG
inputs the report says the compression was lossy upstream.

The export of the same format lives here too: :func:`write_export` (``ladd export --format folder``,
layout in :mod:`ladd_format.export`).

Provenance: the tree is one ``inputs`` entry (folder, file count, total size, one SHA-256 over the
sorted ``(relative path, file sha256)`` list), not one entry per image -- listing every file of a
distilled ImageNet would bloat ``/provenance``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..errors import InputError, LaddError
from ..presets import get_preset
from ..provenance import file_sha256
from ..reader import DLAFile
from ..rows import block_rows, row_bytes, write_npy
from ..spec.names import IMAGES, IMAGES_PATH
from . import COMMON, ConversionResult, Converter, ConvertOptions, register
from .exported import METADATA, export_root, read_folder_export
from .exporting import BATCH, decoded_dense, npz_metadata, ranges, uint8_images
from .images import class_folders, image_files, read_image_folder
from .rawset import RawSet, finish
from .rded import sniff_layout as rded_layout
from .sre2l import sniff_layout as sre2l_layout


@register
class Folder(Converter):
    name = "folder"
    summary = "ImageFolder tree ROOT/<class>/<image> (class index = folder position in name order)"
    looks_for = "class folders of images"
    options = COMMON

    def sniff(self, path: Path) -> str | None:
        """A ``ladd export --format folder`` (its root or its ``images/``), or class folders holding
        images, other than the SRe2L and RDED layouts (whose folder names are the class numbers)."""
        try:
            root = export_root(path) if path.is_dir() else None
            if root is not None:
                return f"ladd export --format folder ({root.name}/{METADATA} + images/)"
            if not path.is_dir() or sre2l_layout(path) or rded_layout(path):
                return None
            if any(image_files(f) for f in class_folders(path)):
                return "class folders holding images"
        except (OSError, LaddError):
            pass
        return None

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        root = export_root(source) if source.is_dir() else None
        if root is not None:                     # an export: its metadata.json and .npy labels (exported.py)
            raw = read_folder_export(root)
            if root != source:
                raw.notes.append(f"read the whole export {root} ({METADATA}, labels), not only its images/")
            return finish(raw, output, options, self.name)
        tree = read_image_folder(source, stream=True)
        count = len(tree.class_names)
        if options.num_classes is not None and options.num_classes != count:
            raise InputError(f"--num-classes {options.num_classes} disagrees with the {count} class folders (the "
                             "class index is the folder's position in name order)", source)
        preset = get_preset(options.dataset) if options.dataset else None
        names_from_preset = preset is not None and preset.class_names is not None
        notes = list(tree.notes)
        if options.class_names is None and names_from_preset and list(preset.class_names) != tree.class_names:
            notes.append(f"class names from --dataset {preset.name}, not the folder names (first folder "
                         f"{tree.class_names[0]!r} is {preset.class_names[0]!r})")
        raw = RawSet(images=tree.images, space="pixel255", labels=tree.labels, inputs=[tree.input], notes=notes,
                     num_classes=count, class_names=None if names_from_preset else tree.class_names)
        raw.report["classes"] = f"{count} class folders in name order"
        if tree.jpeg_files:
            raw.report["images"] = (f"{tree.jpeg_files} of {len(tree.images)} files are JPEG, stored as decoded "
                                    "(uint8); JPEG compression was already lossy upstream")
        else:
            raw.report["images"] = "stored as decoded (uint8)"
        if tree.converted_modes:
            raw.report["converted_to_rgb"] = tree.converted_modes
        return finish(raw, output, options, self.name)


# -- export (ladd export --format folder) ---------------------------------------------------------------
def _class_dir(c: int, names: list[str] | None) -> str:
    if not names:
        return f"{c:04d}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", names[c]).strip("_")[:60]
    return f"{c:04d}_{safe}" if safe else f"{c:04d}"


def folder_metadata(f: DLAFile, files: dict) -> dict:
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


def write_export(f: DLAFile, out: Path, labels: np.ndarray, notes: list[str], subimages=None, progress=None) -> None:
    """``ladd export --format folder`` into the new, empty folder ``out`` (layout in
    :mod:`ladd_format.export`); ``labels``: the checked hard labels; ``subimages(images) -> (B, P,
    K, H, W) uint8`` materialises the sub-images too (None: not); ``progress(images written, images)``."""
    with_subimages = subimages is not None
    if f.image_shape[0] not in (1, 3, 4):
        raise InputError(f"PNG holds 1, 3 or 4 channels, the images have {f.image_shape[0]}", f.path, IMAGES_PATH)
    names = f.class_names
    files: dict[str, str] = {"hard_labels": "hard_labels.npy"}
    for c in np.unique(labels):
        (out / "images" / _class_dir(int(c), names)).mkdir(parents=True, exist_ok=True)
        if with_subimages:
            (out / "subimages" / _class_dir(int(c), names)).mkdir(parents=True, exist_ok=True)
    rows = block_rows((1 + (f.n * f.n if with_subimages else 0)) * row_bytes(f.h5[IMAGES]), BATCH)
    for start, stop in ranges(f.num_images, rows):
        if progress is not None:
            progress(start, f.num_images)
        images = uint8_images(f, start, stop)
        subs = subimages(images) if with_subimages else None
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
        write_npy(out / "dense_labels.npy", (m, p, c), np.float32, (decoded_dense(f, a, b) for a, b in ranges(m, rows)))
        files["dense_labels"] = "dense_labels.npy"
        if with_subimages:
            write_npy(out / "subimage_labels.npy", (m * p, c), np.float32,
                      (decoded_dense(f, a, b).reshape(-1, c) for a, b in ranges(m, rows)))
            files["subimage_labels"] = "subimage_labels.npy"
    if f.has_soft_labels:
        write_npy(out / "soft_labels.npy", (m, f.num_classes), np.float32,
                  (f.soft_labels(a, b) for a, b in ranges(m, block_rows(4 * f.num_classes))))
        files["soft_labels"] = "soft_labels.npy"
    (out / "metadata.json").write_text(json.dumps(folder_metadata(f, files), indent=2))
    if progress is not None:
        progress(f.num_images, f.num_images)
