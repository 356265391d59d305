"""Rebuild the N*N sub-images of a batch of images on any device (spec section 5).

The one crop-and-resize kernel of the project: the labeler pass, the torch Dataset and the loss all
call :func:`subimages`, so stored dense labels and rebuilt sub-images cannot drift apart.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import boxes_inside


def subimages(images: torch.Tensor, boxes: np.ndarray | torch.Tensor | Sequence[Sequence[int]],
              size: tuple[int, int] | None = None) -> torch.Tensor:
    """Crop every box out of every image and resize it, batched.

    Args:
        images: ``(B, K, H, W)`` floating-point tensor on any device (convert uint8 to float first:
            the spec resizes float values).
        boxes: ``(P, 4)`` integer rows [top, left, height, width] inside the images.
        size: output ``(height, width)``; defaults to the images' own ``(H, W)``.

    Returns:
        ``(B, P, K, height, width)`` tensor of the images' dtype: bilinear, ``align_corners=False``,
        antialias on. One ``interpolate`` call per distinct crop size.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, K, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point (convert uint8 first), got {images.dtype}")
    box_array = np.asarray(boxes.cpu() if isinstance(boxes, torch.Tensor) else boxes)
    b, k, height, width = images.shape
    if box_array.ndim != 2 or box_array.shape[1] != 4:
        raise ValueError(f"boxes must be (P, 4), got shape {box_array.shape}")
    if box_array.dtype.kind not in "iu":
        raise TypeError(f"boxes must be integers (spec 5), got {box_array.dtype}")
    if not boxes_inside(box_array, height, width):
        raise ValueError(f"boxes must lie inside the {height}x{width} images")
    out_h, out_w = (height, width) if size is None else (int(size[0]), int(size[1]))
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for j, (_, _, h, w) in enumerate(box_array):
        groups[(int(h), int(w))].append(j)
    out = None
    for (h, w), members in groups.items():
        crops = torch.stack([images[:, :, int(box_array[j, 0]):int(box_array[j, 0]) + h,
                                    int(box_array[j, 1]):int(box_array[j, 1]) + w] for j in members], dim=1)
        resized = F.interpolate(crops.reshape(b * len(members), k, h, w), size=(out_h, out_w),
                                mode="bilinear", align_corners=False,
                                antialias=needs_antialias((h, w), (out_h, out_w)))
        resized = resized.reshape(b, len(members), k, out_h, out_w)
        if len(groups) == 1:
            return resized
        if out is None:
            out = images.new_empty((b, len(box_array), k, out_h, out_w))
        out[:, members] = resized
    return out


def needs_antialias(crop: tuple[int, int], output: tuple[int, int]) -> bool:
    """Antialiasing only acts when an axis shrinks. When no axis does, PyTorch's antialiased and
    plain bilinear kernels are the same function (they agree within float rounding, < 1e-6 on 0..1
    values), and the plain kernel is about twice as fast on the CPU."""
    return crop[0] > output[0] or crop[1] > output[1]
