"""Random zoom, shift and flip on a batch: the one augmentation the labeler and the students use.

``random_zoom`` crops from each image a square view of a random side fraction ``s`` in
``[min_scale, max_scale]`` at a random position inside the image and resizes it back to the full
size (bilinear, reflection at borders); with ``flip`` half the views are mirrored. It is an affine
warp, so a whole batch costs one ``grid_sample``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_zoom(x: torch.Tensor, generator: torch.Generator, min_scale: float = 0.8, max_scale: float = 1.0,
                flip: bool = False) -> torch.Tensor:
    """Per-sample random zoom (view side ``min_scale``-``max_scale`` of the image), shift, optional flip."""
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
    b = x.shape[0]
    scale = torch.empty(b).uniform_(min_scale, max_scale, generator=generator)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * (1 - scale).unsqueeze(1)
    sign = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(b)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = scale * sign
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
