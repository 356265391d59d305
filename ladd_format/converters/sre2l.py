"""Converter ``sre2l``: the recovered images of an SRe2L run (facts in ``docs/upstream-formats.md``)::

    <exp>/new{cls:03d}/class{cls:03d}_id{i:03d}.jpg        224x224 for ImageNet

SRe2L denormalises with the ImageNet mean/std, clamps to [0, 1], truncates ``uint8(x * 255)`` and
saves JPEG at PIL's default quality: the files are stored as decoded (uint8), and the report says the
float images were lost upstream. The label is the number in the folder name (not the folder's
position: folders may be missing for some classes); the class count is ``--num-classes``, else the
``--dataset`` preset, else the largest number + 1 (said in a note). Without ``--dataset`` or
``--mean/--std`` the normalisation recorded is SRe2L's ImageNet mean/std.

SRe2L's relabel soft labels (``epoch_*/batch_*.tar``) are NOT converted: they are logits of the
random crops of each training epoch, and the image ids are not stored (SRe2L rebuilds them by
replaying a seeded sampler). When such a folder lies in INPUT or beside it, a note says so.

Provenance: the image tree is one ``inputs`` entry (folder, file count, total size, one SHA-256 over
the sorted ``(relative path, file sha256)`` list), not one entry per image -- a distilled ImageNet
has thousands of files.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import LaddError
from ..presets import IMAGENET_MEAN, IMAGENET_STD
from . import COMMON, ConversionResult, Converter, ConvertOptions, register
from .images import class_folders, numbered_rawset, read_numbered_folders
from .rawset import finish

FOLDER = r"new(\d{3,})"
#: SRe2L denormalises with the ImageNet mean/std: the normalisation recorded without --dataset or --mean/--std
SRE2L_MEAN, SRE2L_STD = IMAGENET_MEAN, IMAGENET_STD
UPSTREAM = "SRe2L clamped to [0, 1], truncated uint8(x*255) and saved JPEG at PIL's default quality (75)"


def relabel_folder(source: Path) -> Path | None:
    """A folder holding SRe2L relabel output (``epoch_*/batch_*.tar``): INPUT itself or a sibling."""
    candidates = [source]
    try:
        candidates += sorted(p for p in source.parent.iterdir() if p.is_dir() and p != source)
    except OSError:
        pass
    for folder in candidates:
        try:
            if next(folder.glob("epoch_*/batch_*.tar"), None) is not None:
                return folder
        except OSError:
            continue
    return None


def sniff_layout(path: Path) -> str | None:
    """A reason when ``path`` holds ``new???/class???_id???.jpg`` folders."""
    try:
        if not path.is_dir():
            return None
        for folder in class_folders(path):
            if re.fullmatch(FOLDER, folder.name) and any(
                    re.fullmatch(r"class\d{3,}_id\d{3,}\.jpg", p.name) for p in folder.iterdir()):
                return f"folders new???/ with class???_id???.jpg files, e.g. {folder.name}/"
    except (OSError, LaddError):
        pass
    return None


@register
class Sre2l(Converter):
    name = "sre2l"
    summary = "SRe2L recovered images: <exp>/new<cls:03d>/class<cls:03d>_id<i:03d>.jpg"
    looks_for = "new???/class???_id???.jpg"
    options = COMMON

    def sniff(self, path: Path) -> str | None:
        return sniff_layout(path)

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        read = read_numbered_folders(source, FOLDER, "new000/", stream=True)
        raw = numbered_rawset(read, options, "sre2l", source, lambda c: f"new{c:03d}", UPSTREAM,
                              (SRE2L_MEAN, SRE2L_STD))
        found = relabel_folder(source)
        if found is not None:
            raw.notes.append(f"SRe2L relabel soft labels found in {found} (epoch_*/batch_*.tar) are not converted: "
                             "they label random crops of each epoch and do not store image ids")
            raw.report["soft_labels"] = "SRe2L relabel files (per-epoch random crops, no image ids) not converted"
        else:
            raw.report["soft_labels"] = "none converted (SRe2L's relabel files are per random crop, without image ids)"
        return finish(raw, output, options, self.name)
