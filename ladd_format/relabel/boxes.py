"""Crop boxes stored as fractions of the source image (SRe2L's element 0) as integer source pixels.

numpy only. SRe2L stores ``(top/H, left/W, height/H, width/W)`` as float32, from integer pixels of
the source file (``RandomResizedCrop.get_params``), and its loader rebuilds the crop with
torchvision's ``resized_crop`` on a PIL image: ``img.crop((left, top, left + width, top + height))``
with ``left = float(c1) * W`` etc. (the float32 value widened to a Python float, times the size).
Pillow's ``Image.crop`` rounds each EDGE with Python's ``round``, i.e. round-half-to-even.

:func:`fractions_to_pixels` does exactly that, in float64 with ``numpy.rint`` (also round-half-to-even,
the same result as Python's ``round`` on a float64): ``top = rint(c0*H)``, ``bottom = rint(c0*H + c2*H)``,
``left = rint(c1*W)``, ``right = rint(c1*W + c3*W)``, then ``height = bottom - top`` and
``width = right - left``. Rounding the edges rather than the height and width matters only at a half;
for values written by upstream (an integer divided by the size, rounded to float32) every product is
within float32 rounding of an integer, and the result equals ``round(c * size)`` for each of the four.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

#: the largest source image side accepted (pixels)
MAX_SOURCE_SIDE = 1 << 16


def fractions_to_pixels(coords: np.ndarray, sizes, path=None) -> np.ndarray:
    """``coords`` (n, 4) fractions ``(top/H, left/W, height/H, width/W)`` and each image's ``(H, W)``
    (``sizes`` (n, 2), or one ``(H, W)`` for all) -> (n, 4) int64 ``(top, left, height, width)``
    as Pillow's crop rounds them (see the module docstring). A box that is empty or reaches outside its
    image is refused (one line naming the first such slot); Pillow would pad it with black instead."""
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 4 or coords.dtype.kind != "f":
        raise InputError(f"crop fractions must be a float (n, 4) array, found {coords.dtype} {coords.shape}", path)
    n = coords.shape[0]
    sizes = np.asarray(sizes)
    if sizes.dtype.kind not in "iu":
        raise InputError(f"image sizes must be integers, found {sizes.dtype}", path)
    if sizes.shape == (2,):
        sizes = np.broadcast_to(sizes, (n, 2))
    if sizes.shape != (n, 2):
        raise InputError(f"image sizes must be (H, W) or ({n}, 2), found {sizes.shape}", path)
    if n and (sizes.min() < 1 or sizes.max() > MAX_SOURCE_SIDE):
        raise InputError(f"image sides must be 1..{MAX_SOURCE_SIDE}", path)
    if not np.isfinite(coords).all():
        raise InputError("crop fractions hold NaN or infinity", path)
    c = coords.astype(np.float64)
    h = sizes[:, 0].astype(np.float64)
    w = sizes[:, 1].astype(np.float64)
    top_f, left_f = c[:, 0] * h, c[:, 1] * w
    top, left = np.rint(top_f), np.rint(left_f)
    bottom, right = np.rint(top_f + c[:, 2] * h), np.rint(left_f + c[:, 3] * w)
    bad = (top < 0) | (left < 0) | (bottom > h) | (right > w) | (bottom <= top) | (right <= left)
    if bad.any():
        s = int(np.flatnonzero(bad)[0])
        raise InputError(f"slot {s}: crop box (top {top[s]:.0f}, left {left[s]:.0f}, bottom {bottom[s]:.0f}, "
                         f"right {right[s]:.0f}) is empty or outside its {sizes[s, 0]}x{sizes[s, 1]} image "
                         f"({int(bad.sum())} such slots)", path)
    return np.stack([top, left, bottom - top, right - left], axis=1).astype(np.int64)
