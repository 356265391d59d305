"""``SubSampler``: the paper's sub-sampling S as a module holding a file's boxes."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from .. import geometry
from ..errors import GeometryError
from ..reader import open_dla
from ..spec.names import DENSE_PATH
from .subimages import subimages


class SubSampler(nn.Module):
    """Rebuild the N*N sub-images of a batch: ``(B, K, H, W)`` -> ``(B, N*N, K, H', W')``.

    A thin shell around :func:`subimages`; ``size`` defaults to the input's own size.
    """

    def __init__(self, boxes: np.ndarray, image_size: tuple[int, int], size: tuple[int, int] | None = None):
        super().__init__()
        boxes = np.asarray(boxes, dtype=np.int64)
        height, width = int(image_size[0]), int(image_size[1])
        if not geometry.boxes_inside(boxes, height, width):
            raise GeometryError(f"boxes must be (P, 4) rows [top, left, height, width] inside the "
                                f"{height}x{width} images")
        self.boxes = boxes
        self.image_size = (height, width)
        self.size = size

    @classmethod
    def from_file(cls, path: str | os.PathLike, size: tuple[int, int] | None = None) -> "SubSampler":
        """The sub-sampler of a D_LA file (its stored boxes; a plain set D has none)."""
        with open_dla(path) as f:
            boxes = f.boxes
            _, height, width = f.image_shape
        try:
            return cls(boxes, (height, width), size)
        except GeometryError as exc:
            raise GeometryError(exc.message, path, DENSE_PATH) from None

    @classmethod
    def from_geometry(cls, height: int, width: int, n: int, ratio: float) -> "SubSampler":
        return cls(geometry.boxes(height, width, n, ratio), (height, width))

    @property
    def num_sub(self) -> int:
        return len(self.boxes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(f"images are {tuple(images.shape[-2:])}, the boxes are for {self.image_size}")
        return subimages(images, self.boxes, self.size)

    def rows(self, images: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of ``self(images).flatten(0, 1)`` (sub-image ``j`` of image ``i`` is row
        ``i * num_sub + j``), built without the others: ``(stop - start, K, H', W')``. At most three
        :func:`subimages` calls (a partial first image, whole images, a partial last image)."""
        if tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(f"images are {tuple(images.shape[-2:])}, the boxes are for {self.image_size}")
        p = self.num_sub
        if not 0 <= start < stop <= images.shape[0] * p:
            raise ValueError(f"rows {start}:{stop} outside the {images.shape[0] * p} sub-images")
        parts = []
        row = start
        while row < stop:
            i, j = divmod(row, p)
            whole = (stop - row) // p if j == 0 else 0
            if whole:
                parts.append(subimages(images[i:i + whole], self.boxes, self.size).flatten(0, 1))
                row += whole * p
            else:
                end = min(p, j + stop - row)
                parts.append(subimages(images[i:i + 1], self.boxes[j:end], self.size).flatten(0, 1))
                row += end - j
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def extra_repr(self) -> str:
        return f"num_sub={self.num_sub}, image_size={self.image_size}, size={self.size}"
