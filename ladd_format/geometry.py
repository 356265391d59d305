"""Sub-image geometry: the paper's sub-sampling S as boxes (spec section 5).

Pure integer arithmetic; every reader and writer calls :func:`boxes` so that the stored boxes,
the labeler pass and the rebuilt sub-images can never drift apart.
"""

from __future__ import annotations

import math

import numpy as np

from .spec import RESIZE_ANTIALIAS
from .spec.limits import MAX_GRID_N, MAX_WRITTEN_GRID_N  # noqa: F401  (readers' N <= 64, the writer's N <= 45)

#: the resize of section 5 (``/dense`` ``resize``; a stream's default, 5.1)
RESIZE = RESIZE_ANTIALIAS


def crop_length(length: int, ratio: float) -> int:
    """Crop length along one axis: floor(R * L + 0.5), in double precision (spec 5)."""
    if not 0.0 < ratio <= 1.0:                  # NaN and infinities fail this too
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    if length < 1:
        raise ValueError(f"image side must be >= 1, got {length}")
    crop = math.floor(ratio * length + 0.5)     # <= floor(length + 0.5) = length, as ratio <= 1
    if crop < 1:
        raise ValueError(f"ratio {ratio} gives an empty crop of a {length}-pixel side")
    return crop


def offsets(length: int, crop: int, n: int) -> list[int]:
    """Crop offsets along one axis of ``length`` pixels (spec 5), exact integer form."""
    if n < 1:
        raise ValueError(f"grid size n must be >= 1, got {n}")
    span = length - crop
    if n == 1:
        return [(span + 1) // 2]
    return [(2 * i * span + (n - 1)) // (2 * (n - 1)) for i in range(n)]


def boxes(height: int, width: int, n: int, ratio: float) -> np.ndarray:
    """Boxes of the N*N sub-images of an ``height`` x ``width`` image.

    Returns an ``(n*n, 4)`` int32 array of rows [top, left, height, width], row-major:
    box ``j = row * n + col``. ``n`` must lie in 1..:data:`MAX_GRID_N`.
    """
    if not 1 <= n <= MAX_GRID_N:
        raise ValueError(f"grid size n must lie in 1..{MAX_GRID_N}, got {n}")
    h = crop_length(height, ratio)
    w = crop_length(width, ratio)
    tops = offsets(height, h, n)
    lefts = offsets(width, w, n)
    out = np.empty((n * n, 4), dtype=np.int32)
    for row, top in enumerate(tops):
        for col, left in enumerate(lefts):
            out[row * n + col] = (top, left, h, w)
    return out


def boxes_inside(box_array: np.ndarray, height: int, width: int) -> bool:
    """True when ``box_array`` is an integer (k, 4) array whose every box has positive size and lies inside
    an ``height`` x ``width`` image. Floats are refused, not truncated; no sum can overflow."""
    b = np.asarray(box_array)
    if b.ndim != 2 or b.shape[1] != 4 or b.dtype.kind not in "iu":
        return False
    b = b.astype(np.int64)          # a uint64 above int64's range turns negative here, and fails ">= 0" below
    top, left, h, w = b.T
    return bool(np.all((top >= 0) & (left >= 0) & (h >= 1) & (w >= 1)
                       & (top <= height - h) & (left <= width - w)))   # no int64 overflow for any h, w >= 1
