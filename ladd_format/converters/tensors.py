"""Converter ``tensors``: any ``images.pt`` + ``labels.pt`` pair (e.g. DD-Ranking's published sets,
``methods/<METHOD>/distilled/<DATASET>/IPC<k>/``, with ``lr.pt``), or ``images_<N>.pt`` with
``--iteration N``.

Images are float (normalised: give ``--dataset`` or ``--mean/--std``, unless the folder is
DD-Ranking's ``<DATASET>/IPC<k>/`` naming a preset; ``--zca`` as MTT). Labels are (M,) class
indices, or 2-D float: probabilities when every row is a distribution, else logits (a note says
which). The method is not in these files, so no ``distillation`` is recorded (a note says so;
a ``ladd export --format ddranking`` folder's ``metadata.json`` records it, and it is kept): the
``datm``, ``tesla``, ``mtt`` and ``glad`` converters read the same pair and record theirs, and
``auto`` picks them when the files say which (their evidence hooks: ``lr.pt`` or logits -> datm,
probabilities -> tesla); with class-index labels and no ``lr.pt`` auto picks ``tensors``. Reader in
``runs.py``; facts in ``docs/upstream-formats.md``.
"""

from __future__ import annotations

from . import register
from .runs import UNSUFFIXED, Evidence, RunFolder


@register
class Tensors(RunFolder):
    name = "tensors"
    summary = "images.pt + labels.pt (+ lr.pt) of any code base; records no method"
    looks_for = "images.pt + labels.pt with class-index labels and no lr.pt"
    label_kind = None                  # 2-D float labels: probabilities when every row is one, else logits
    records_method = False             # the files do not say which method made them
    rank = 4                           # only when no method's evidence answers

    def images_name(self, iteration: int | None) -> str:
        return UNSUFFIXED if iteration is None else f"images_{iteration}.pt"

    def evidence(self, seen: Evidence) -> str | None:
        if not seen.unsuffixed:
            return None
        return "images.pt + labels.pt with class-index labels and no lr.pt: the method is not in the files"
