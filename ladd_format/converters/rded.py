"""Converter ``rded``: the synthetic images of an RDED run (facts in ``docs/upstream-formats.md``)::

    <exp>/syn_data/{cls:05d}/class{cls:05d}_id{i:05d}.jpg     INPUT is <exp> or <exp>/syn_data

Each image is a factor x factor mosaic of crops (RDED's default 2x2); it is stored whole, and the
factor is not in the files (a note says so). RDED writes no labels: its teacher labels online while
training, so there are no soft labels on disk; the hard label is the number in the class folder name
(classes without a folder keep their numbering; the class count is ``--num-classes``, else the
``--dataset`` preset, else the largest number + 1). RDED denormalises with the ImageNet mean/std for
every dataset, truncates ``uint8(x * 255)`` without clamping and saves JPEG: the files are stored as
decoded (uint8), the normalisation recorded is the ImageNet one (``--mean/--std`` override it), and
the report says the float images were lost upstream.

Provenance: the image tree is one ``inputs`` entry (folder, file count, total size, one SHA-256 over
the sorted ``(relative path, file sha256)`` list), not one entry per image.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError, LaddError
from ..presets import IMAGENET_MEAN, IMAGENET_STD, Preset
from . import COMMON, ConversionResult, Converter, ConvertOptions, register
from .images import class_folders, numbered_rawset, read_numbered_folders
from .rawset import finish

FOLDER = r"(\d{5})"
#: RDED denormalises with the ImageNet mean/std for every dataset
RDED_MEAN, RDED_STD = IMAGENET_MEAN, IMAGENET_STD
UPSTREAM = "RDED truncated uint8(x*255) without clamping and saved JPEG at PIL's default quality"


def syn_data(source: Path) -> Path:
    """The folder of class folders: ``<exp>/syn_data`` or INPUT itself."""
    if (source / "syn_data").is_dir():
        return source / "syn_data"
    if any(f.name.isdigit() and len(f.name) == 5 for f in class_folders(source)):
        return source
    raise InputError("expected an RDED run: <exp>/syn_data/<5-digit class>/ or the syn_data folder itself", source)


def sniff_layout(path: Path) -> str | None:
    """A reason when ``path`` is an RDED run (``syn_data/``) or its syn_data folder (5-digit class folders)."""
    try:
        if not path.is_dir():
            return None
        if (path / "syn_data").is_dir():
            return "a syn_data/ folder"
        if any(f.name.isdigit() and len(f.name) == 5 for f in class_folders(path)):
            return "5-digit class folders"
    except (OSError, LaddError):
        pass
    return None


@register
class Rded(Converter):
    name = "rded"
    summary = "RDED synthetic images: <exp>/syn_data/<cls:05d>/class<cls:05d>_id<i:05d>.jpg"
    looks_for = "syn_data/ or 5-digit class folders"
    options = COMMON

    def sniff(self, path: Path) -> str | None:
        return sniff_layout(path)

    def normalization(self, preset: Preset) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """RDED's ImageNet mean/std, whatever the dataset."""
        return RDED_MEAN, RDED_STD

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        root = syn_data(source)
        read = read_numbered_folders(root, FOLDER, "00000/", stream=True)
        raw = numbered_rawset(read, options, "rded", root, lambda c: f"{c:05d}", UPSTREAM,
                              (RDED_MEAN, RDED_STD))
        raw.notes.append("RDED images are mosaics of factor x factor crops (default 2x2), stored whole")
        raw.notes.append("RDED labels with its teacher online: no soft labels on disk, the hard label is the class "
                         "folder")
        raw.report["mosaic"] = "each image is a factor x factor mosaic of crops (RDED default 2x2); factor not recorded"
        raw.report["soft_labels"] = "none on disk: RDED's teacher labels online at training time"
        return finish(raw, output, options, self.name)
