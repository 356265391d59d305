"""Converter ``glad``: a run folder of GLaD (Cazenavette et al., generative latent distillation)::

    logged_files/<dataset>/<run>/images_00500.pt, labels_00500.pt, images_best.pt, labels_best.pt

As MTT, with iterations zero-padded to 5 digits (``--iteration 500`` reads ``images_00500.pt``),
int64 class indices, no ZCA, and GLaD's own normalisation: CIFAR-10 its statistics, every other
dataset GLaD's default mean (``presets.normalization(preset, "glad")``). GLaD's final ``res_*.pt``
results file goes through ``dc``. A folder of unsuffixed ``images.pt`` + ``labels.pt`` (DD-Ranking's
form) is read too, but ``auto`` cannot tell it is GLaD's. Reader in ``runs.py``; facts in
``docs/upstream-formats.md``.
"""

from __future__ import annotations

from pathlib import Path

from . import COMMON, ConversionResult, Converter, ConvertOptions, register
from .common import finish
from .runs import read_run, sniff_family


@register
class Glad(Converter):
    name = "glad"
    summary = "GLaD run folder (images_<5-digit it>.pt + labels_*.pt)"
    looks_for = "images_<5-digit iteration>.pt + labels_*.pt"
    options = COMMON | {"keep_float", "iteration"}

    def sniff(self, path: Path) -> str | None:
        return sniff_family(path, self.name)

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        return finish(read_run(source, options, self.name), output, options, self.name)
