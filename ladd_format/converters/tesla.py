"""Converter ``tesla``: a run folder of TESLA (Cui et al., memory-efficient trajectory matching)::

    logged_files/<dataset>/<run>/images_best.pt, labels_best.pt

Labels are int64 class indices, or with TESLA's ``--teacher_label`` PROBABILITIES (M, C) ->
``/soft_labels`` (kind probs), hard label = their argmax. Images as MTT. DD-Ranking's unsuffixed
``images.pt`` + ``labels.pt`` are read too. Reader in ``runs.py``; facts in
``docs/upstream-formats.md``.
"""

from __future__ import annotations

from pathlib import Path

from . import COMMON, FLOAT_IMAGES, ConversionResult, Converter, ConvertOptions, register
from .common import finish
from .runs import read_run, sniff_family


@register
class Tesla(Converter):
    name = "tesla"
    summary = "TESLA run folder (images_*.pt + labels_*.pt, class indices or teacher probabilities)"
    looks_for = "images_*.pt + labels_*.pt (or images.pt + labels.pt) with 2-D probabilities"
    options = COMMON | FLOAT_IMAGES | {"iteration"}

    def sniff(self, path: Path) -> str | None:
        return sniff_family(path, self.name)

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        return finish(read_run(source, options, self.name), output, options, self.name)
