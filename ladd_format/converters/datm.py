"""Converter ``datm``: a run folder of DATM (Guo et al., difficulty-aligned trajectory matching)::

    logged_files/<dataset>/<ipc>/<model>/<run>/Normal/images_<it>.pt, labels_<it>.pt, lr_<it>.pt

Labels are learned LOGITS (M, C) -> ``/soft_labels`` (kind logits), hard label = their argmax;
``lr_<it>.pt`` (the learned learning rate) -> root attribute ``learned_lr``. Images as MTT
(normalised, or ZCA for the CIFAR configurations: without ``--zca`` or ``--no-zca``, or a name with a
``zca`` token, a CIFAR run is refused).
DD-Ranking's published sets (``methods/DATM/distilled/<DATASET>/IPC<k>/images.pt``,
``labels.pt``, ``lr.pt``, unsuffixed) are read from their folder or ``images.pt``; the
``<DATASET>`` folder name gives the dataset preset. Reader in ``runs.py`` (:class:`~.runs.RunFolder`); facts in
``docs/upstream-formats.md``.
"""

from __future__ import annotations

from . import register
from .runs import Evidence, RunFolder


@register
class Datm(RunFolder):
    name = "datm"
    summary = "DATM run folder (images_*.pt, labels_*.pt logits, lr_*.pt) or DD-Ranking images.pt + labels.pt + lr.pt"
    looks_for = "images_*.pt + labels_*.pt (or images.pt + labels.pt) with an lr file or 2-D float logits"
    code_base = "DATM"
    label_kind = "logits"              # learned logits (M, C)
    saves_lr = True                    # lr_<it>.pt, DD-Ranking's lr.pt
    rank = 1

    def evidence(self, seen: Evidence) -> str | None:
        """DATM alone saves the learned learning rate (``lr_<it>.pt``, DD-Ranking's ``lr.pt``), and
        learned logits."""
        if self.saves_lr and seen.lr_files:
            if seen.unsuffixed:
                return "DD-Ranking images.pt + labels.pt + lr.pt: DATM saves the learned learning rate"
            return f"learned learning rate file {seen.lr_files[0].name}"
        if seen.labels_kind == "logits":
            if seen.unsuffixed:
                return "DD-Ranking images.pt + labels.pt holding 2-D float logits, as DATM saves"
            return f"{seen.labels_file.name} holds 2-D float logits"
        return None

    def zca_sign(self, dataset: str | None) -> str | None:
        return "DATM's CIFAR configurations use ZCA" if (dataset or "").startswith("cifar") else None
