"""Converter ``mtt``: a run folder of MTT (Cazenavette et al., ``buffer.py`` / ``distill.py``)::

    logged_files/<dataset>/<run>/images_<it>.pt, labels_<it>.pt, images_best.pt, labels_best.pt

float32 images normalised with the dataset's mean/std (``--dataset`` or ``--mean/--std``), or
ZCA-whitened (``--zca`` or a name with a ``zca`` token: kept as float, or ``--zca-stats`` to invert);
int64 class indices.
``--iteration N`` reads ``images_N.pt``; INPUT may be the images file itself, or a folder holding
DD-Ranking's unsuffixed ``images.pt`` + ``labels.pt``. Reader in ``runs.py``; facts in
``docs/upstream-formats.md``.
"""

from __future__ import annotations

from pathlib import Path

from . import COMMON, FLOAT_IMAGES, ConversionResult, Converter, ConvertOptions, register
from .common import finish
from .runs import read_run, sniff_family


@register
class Mtt(Converter):
    name = "mtt"
    summary = "MTT run folder (images_<it>.pt + labels_<it>.pt, class indices) or one images_*.pt"
    looks_for = "images_*.pt + labels_*.pt with class-index labels"
    options = COMMON | FLOAT_IMAGES | {"iteration"}

    def sniff(self, path: Path) -> str | None:
        return sniff_family(path, self.name)

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        return finish(read_run(source, options, self.name), output, options, self.name)
