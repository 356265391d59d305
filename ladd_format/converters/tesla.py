"""Converter ``tesla``: a run folder of TESLA (Cui et al., memory-efficient trajectory matching)::

    logged_files/<dataset>/<run>/images_best.pt, labels_best.pt

Labels are int64 class indices, or with TESLA's ``--teacher_label`` PROBABILITIES (M, C) ->
``/soft_labels`` (kind probs), hard label = their argmax. Images as MTT. DD-Ranking's unsuffixed
``images.pt`` + ``labels.pt`` are read too. Reader in ``runs.py`` (:class:`~.runs.RunFolder`); facts in
``docs/upstream-formats.md``.
"""

from __future__ import annotations

from . import register
from .runs import Evidence, RunFolder


@register
class Tesla(RunFolder):
    name = "tesla"
    summary = "TESLA run folder (images_*.pt + labels_*.pt, class indices or teacher probabilities)"
    looks_for = "images_*.pt + labels_*.pt (or images.pt + labels.pt) with 2-D probabilities"
    code_base = "TESLA"
    label_kind = "probs"               # 2-D float labels are teacher probabilities; 1-D are class indices
    rank = 2

    def evidence(self, seen: Evidence) -> str | None:
        if seen.labels_kind != "probs":
            return None
        if seen.unsuffixed:
            return "DD-Ranking images.pt + labels.pt holding 2-D probabilities, as TESLA's teacher labels"
        return f"{seen.labels_file.name} holds 2-D probabilities"
