"""Random zoom, shift and flip on a batch: the one augmentation the labeler and the students use.

``random_zoom`` crops from each image a square view of a random side fraction ``s`` in
``[min_scale, max_scale]`` at a random position inside the image and resizes it back to the full
size (bilinear, reflection at borders); with ``flip`` half the views are mirrored. It is an affine
warp, so a whole batch costs one ``grid_sample``. It is split in two for callers that warp a batch
in parts (the chunked :func:`ladd_format.torch.ladd_loss`): :func:`zoom_thetas` draws the batch's
warps, :func:`warp` applies any rows of them; each image's warp is independent of the others.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def zoom_thetas(b: int, generator: torch.Generator, min_scale: float = 0.8, max_scale: float = 1.0,
                flip: bool = False) -> torch.Tensor:
    """The ``(b, 2, 3)`` affine warps of :func:`random_zoom` for ``b`` images (CPU, float32)."""
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
    scale = torch.empty(b).uniform_(min_scale, max_scale, generator=generator)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * (1 - scale).unsqueeze(1)
    sign = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(b)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = scale * sign
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    return theta


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp ``(b, K, H, W)`` images by ``(b, 2, 3)`` affine ``theta`` (bilinear, reflection)."""
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_zoom(x: torch.Tensor, generator: torch.Generator, min_scale: float = 0.8, max_scale: float = 1.0,
                flip: bool = False) -> torch.Tensor:
    """Per-sample random zoom (view side ``min_scale``-``max_scale`` of the image), shift, optional flip."""
    return warp(x, zoom_thetas(x.shape[0], generator, min_scale, max_scale, flip))
