"""Converter ``tensors``: any ``images.pt`` + ``labels.pt`` pair (e.g. DD-Ranking's published sets,
``methods/<METHOD>/distilled/<DATASET>/IPC<k>/``, with ``lr.pt``), or ``images_<N>.pt`` with
``--iteration N``.

Images are float (normalised: give ``--dataset`` or ``--mean/--std``, unless the folder is
DD-Ranking's ``<DATASET>/IPC<k>/`` naming a preset; ``--zca`` as MTT). Labels are (M,) class
indices, or 2-D float: probabilities when every row is a distribution, else logits (a note says
which). The method is not in these files, so no ``distillation`` is recorded (a note says so;
a ``ladd export --format ddranking`` folder's ``metadata.json`` records it, and it is kept): the
``datm``, ``tesla``, ``mtt`` and ``glad`` converters read the same pair and record theirs, and
``auto`` picks them when the files say which (``runs.family``: ``lr.pt`` or logits -> datm,
probabilities -> tesla); with class-index labels and no ``lr.pt`` auto picks ``tensors``. Reader in
``runs.py``; facts in ``docs/upstream-formats.md``.
"""

from __future__ import annotations

from pathlib import Path

from . import COMMON, FLOAT_IMAGES, ConversionResult, Converter, ConvertOptions, register
from .common import finish
from .runs import read_run, sniff_family


@register
class Tensors(Converter):
    name = "tensors"
    summary = "images.pt + labels.pt (+ lr.pt) of any code base; records no method"
    looks_for = "images.pt + labels.pt with class-index labels and no lr.pt"
    options = COMMON | FLOAT_IMAGES | {"iteration"}

    def sniff(self, path: Path) -> str | None:
        return sniff_family(path, self.name)

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        return finish(read_run(source, options, self.name), output, options, self.name)
