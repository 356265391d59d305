"""Converter ``tensors``: any ``images.pt`` + ``labels.pt`` pair (e.g. DD-Ranking's repackaged DATM
outputs, with ``lr.pt``), or ``images_<N>.pt`` with ``--iteration N``.

Images are float (normalised: give ``--dataset`` or ``--mean/--std``; ``--zca`` as MTT). Labels are
(M,) class indices, or 2-D float: probabilities when every row is a distribution, else logits (a
note says which). Reader in ``runs.py``; facts in ``docs/upstream-formats.md``.
"""

from __future__ import annotations

from pathlib import Path

from . import COMMON, FLOAT_IMAGES, ConversionResult, Converter, ConvertOptions, register
from .common import finish
from .runs import read_run


@register
class Tensors(Converter):
    name = "tensors"
    summary = "images.pt + labels.pt (+ lr.pt) of any code base, e.g. DD-Ranking"
    looks_for = "images.pt + labels.pt"
    options = COMMON | FLOAT_IMAGES | {"iteration"}

    def sniff(self, path: Path) -> str | None:
        try:
            if path.is_file() and path.name == "images.pt":
                return "an images.pt file"
            if path.is_dir() and (path / "images.pt").is_file() and (path / "labels.pt").is_file():
                return "images.pt + labels.pt"
        except OSError:
            pass
        return None

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        return finish(read_run(source, options, self.name), output, options, self.name)
