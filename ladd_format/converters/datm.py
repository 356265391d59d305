"""Converter ``datm``: a run folder of DATM (Guo et al., difficulty-aligned trajectory matching)::

    logged_files/<dataset>/<ipc>/<model>/<run>/Normal/images_<it>.pt, labels_<it>.pt, lr_<it>.pt

Labels are learned LOGITS (M, C) -> ``/soft_labels`` (kind logits), hard label = their argmax;
``lr_<it>.pt`` (the learned learning rate) -> root attribute ``learned_lr``. Images as MTT
(normalised, or ZCA for the CIFAR configurations: without ``--zca`` or ``--no-zca``, or a name with a
``zca`` token, a CIFAR run is refused).
DD-Ranking's published sets (``methods/DATM/distilled/<DATASET>/IPC<k>/images.pt``,
``labels.pt``, ``lr.pt``, unsuffixed) are read from their folder or ``images.pt``; the
``<DATASET>`` folder name gives the dataset preset. Reader in ``runs.py``; facts in
``docs/upstream-formats.md``.
"""

from __future__ import annotations

from pathlib import Path

from . import COMMON, FLOAT_IMAGES, ConversionResult, Converter, ConvertOptions, register
from .common import finish
from .runs import read_run, sniff_family


@register
class Datm(Converter):
    name = "datm"
    summary = "DATM run folder (images_*.pt, labels_*.pt logits, lr_*.pt) or DD-Ranking images.pt + labels.pt + lr.pt"
    looks_for = "images_*.pt + labels_*.pt (or images.pt + labels.pt) with an lr file or 2-D float logits"
    options = COMMON | FLOAT_IMAGES | {"iteration"}

    def sniff(self, path: Path) -> str | None:
        return sniff_family(path, self.name)

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        return finish(read_run(source, options, self.name), output, options, self.name)
