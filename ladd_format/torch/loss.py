"""The paper's training loss (Eq. 5): CE(h(x_i), y_i) + sum_j CE(h(S_j(x_i)), y^d_ij).

The local term is averaged over the N*N sub-images by default (``reduction="mean"``); the paper's
literal sum is ``reduction="sum"`` (``ladd evaluate --reduction sum``). Measured on digits
(benchmarks/RESULTS.md, section ``students_loss``: ConvNet-D3 students, 25 sub-images, 3 seeds),
the sum gave 82.4 +- 4.9% at IPC 1 and 92.6 +- 0.7% at IPC 5, the mean 91.3 +- 1.4% and
96.0 +- 0.1%: summing weights the local term 25x the global one and cost about 9 points at IPC 1.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .subsampler import SubSampler

REDUCTIONS = ("sum", "mean")


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy against probability targets: ``-(target * log_softmax(logits)).sum(-1)``."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def ladd_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, dense: torch.Tensor,
              sampler: SubSampler, *, reduction: str = "mean", local_weight: float = 1.0,
              augment: Callable[[torch.Tensor], torch.Tensor] | None = None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 5 of LADD on a batch.

    Args:
        model: the student h.
        images: ``(B, K, H, W)`` float, as the model takes them (normalised); the sub-images are
            rebuilt from these on their device (normalising and the bilinear resize commute, since
            the resize weights sum to 1).
        labels: ``(B,)`` int64 hard labels.
        dense: ``(B, N*N, C)`` float probabilities, one row per sub-image.
        sampler: the file's :class:`SubSampler` (``dataset.sampler``).
        reduction: ``"mean"`` (default) averages the local term over the N*N sub-images;
            ``"sum"`` sums it, the paper's literal Eq. 5, measured about 9 points worse at IPC 1
            on digits (82.4 vs 91.3%, benchmarks/RESULTS.md ``students_loss``; module docstring).
        local_weight: weight of the local (sub-image) term.
        augment: optional callable applied to the global batch and, separately, to the batch of
            rebuilt sub-images (``(B*N*N, K, H, W)``).

    Returns:
        ``(loss, {"global": ..., "local": ...})``: loss = global + local_weight * local, each term a
        mean over the B images (detached copies for logging in the dict).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    b = images.shape[0]
    if dense.shape[:2] != (b, sampler.num_sub):
        raise ValueError(f"dense labels must be (B={b}, N*N={sampler.num_sub}, C), got {tuple(dense.shape)}")
    subs = sampler(images).flatten(0, 1)                       # (B*P, K, H', W')
    x = images
    if augment is not None:
        x, subs = augment(x), augment(subs)
    global_term = F.cross_entropy(model(x), labels)
    per_sub = soft_cross_entropy(model(subs), dense.flatten(0, 1).to(subs.dtype)).view(b, sampler.num_sub)
    local_term = per_sub.sum(dim=1).mean() if reduction == "sum" else per_sub.mean()
    loss = global_term + local_weight * local_term
    return loss, {"global": global_term.detach(), "local": local_term.detach()}
