"""Converter ``glad``: a run folder of GLaD (Cazenavette et al., generative latent distillation)::

    logged_files/<dataset>/<run>/images_00500.pt, labels_00500.pt, images_best.pt, labels_best.pt

As MTT, with iterations zero-padded to 5 digits (``--iteration 500`` reads ``images_00500.pt``),
int64 class indices, no ZCA, and GLaD's own normalisation: CIFAR-10 its statistics, every other
dataset GLaD's default mean (:meth:`Glad.normalization`). GLaD's final ``res_*.pt``
results file goes through ``dc``. A folder of unsuffixed ``images.pt`` + ``labels.pt`` (DD-Ranking's
form) is read too, but ``auto`` cannot tell it is GLaD's. Reader in ``runs.py``; facts in
``docs/upstream-formats.md``.
"""

from __future__ import annotations

from . import register
from ..presets import Preset
from .runs import Evidence, RunFolder

#: GLaD's default statistics, which it keeps for every dataset but CIFAR-10
GLAD_DEFAULT_MEAN = (0.4377, 0.4438, 0.4728)
GLAD_DEFAULT_STD = (0.229, 0.224, 0.225)
#: the preset families whose GLaD runs normalise with the defaults (ImageNet subsets, CIFAR-100)
DEFAULT_FAMILIES = ("imagenet-subset", "cifar")


@register
class Glad(RunFolder):
    name = "glad"
    summary = "GLaD run folder (images_<5-digit it>.pt + labels_*.pt)"
    looks_for = "images_<5-digit iteration>.pt + labels_*.pt"
    code_base = "GLaD"
    padding = 5                        # images_00500.pt
    label_kind = "indices"
    rank = 0                           # padded iterations are the strongest evidence
    options = tuple(o for o in RunFolder.options if o.name not in ("zca", "zca_stats"))   # GLaD uses no ZCA

    def evidence(self, seen: Evidence) -> str | None:
        if seen.unsuffixed:
            return None
        padded = sorted(s for s in seen.iterations if len(s) == self.padding and s.startswith("0"))
        return f"iterations zero-padded to {self.padding} digits, e.g. images_{padded[0]}.pt" if padded else None

    def normalization(self, preset: Preset) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """GLaD keeps its default statistics for every dataset but CIFAR-10, so its ImageNet subsets and
        CIFAR-100 images use mean (0.4377, 0.4438, 0.4728), std (0.229, 0.224, 0.225) although the
        real data is normalised with the ImageNet mean."""
        if preset.name != "cifar10" and preset.family in DEFAULT_FAMILIES:
            return GLAD_DEFAULT_MEAN, GLAD_DEFAULT_STD
        return preset.mean, preset.std
