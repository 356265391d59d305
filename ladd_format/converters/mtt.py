"""Converter ``mtt``: a run folder of MTT (Cazenavette et al., ``buffer.py`` / ``distill.py``)::

    logged_files/<dataset>/<run>/images_<it>.pt, labels_<it>.pt, images_best.pt, labels_best.pt

float32 images normalised with the dataset's mean/std (``--dataset`` or ``--mean/--std``), or
ZCA-whitened (``--zca`` or a name with a ``zca`` token: kept as float, or ``--zca-stats`` to invert);
int64 class indices.
``--iteration N`` reads ``images_N.pt``; INPUT may be the images file itself, or a folder holding
DD-Ranking's unsuffixed ``images.pt`` + ``labels.pt``. Reader in ``runs.py`` (:class:`~.runs.RunFolder`); facts in
``docs/upstream-formats.md``.
"""

from __future__ import annotations

from . import register
from .runs import Evidence, RunFolder


@register
class Mtt(RunFolder):
    name = "mtt"
    summary = "MTT run folder (images_<it>.pt + labels_<it>.pt, class indices) or one images_*.pt"
    looks_for = "images_*.pt + labels_*.pt with class-index labels"
    code_base = "MTT"
    label_kind = "indices"             # int64 class indices
    rank = 3                           # the plain run: asked after GLaD's, DATM's and TESLA's evidence

    def evidence(self, seen: Evidence) -> str | None:
        return None if seen.unsuffixed else "images_*.pt + labels_*.pt with class-index labels"
