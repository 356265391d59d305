"""Converter ``folder``: an ImageFolder tree ``ROOT/<class>/<image>``, or what ``ladd export --format
folder`` writes (its root or its ``images/``: the images in index order, the labels and
normalisation from its ``.npy`` files and ``metadata.json``, :mod:`.exported`).

Classes are the subfolders sorted by name; the class index is the position (torchvision's
ImageFolder rule) and the folder names are recorded as class names (``--class-names`` or a
``--dataset`` preset with names take precedence). Without ``--dataset`` or ``--mean/--std`` the
normalisation is computed from the images (``common.finish``). Only image files directly in each class folder are
read (by suffix: .png .jpg .jpeg .bmp .webp .gif .tif .tiff; other files, nested and hidden folders
are ignored). Every image must have the same size; images of other modes (L, RGBA, P, ...) are
converted to RGB, with a note. Pixels are stored as decoded (uint8): PNG inputs exactly; for JPEG
inputs the report says the compression was lossy upstream.

Provenance: the tree is one ``inputs`` entry (folder, file count, total size, one SHA-256 over the
sorted ``(relative path, file sha256)`` list), not one entry per image -- listing every file of a
distilled ImageNet would bloat ``/provenance``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError, LaddError
from ..presets import get_preset
from . import COMMON, ConversionResult, Converter, ConvertOptions, register
from .common import RawSet, finish
from .exported import METADATA, export_root, read_folder_export
from .images import class_folders, image_files, read_image_folder
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
