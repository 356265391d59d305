"""The pixel rules, defined once (spec 4.1 and 4.4): the image spaces and the ways between them.

    pixel255 (uint8 0..255)  --/255-->  pixel01 (float, 0..1 scale)  --(x - mean) / std-->  normalized
                             <--quantize (floor(255 p + 0.5), clipped)--      <--x * std + mean--

``zca`` images have no way back without the inverse transform (``converters/rawset.py`` applies
it when given the statistics).

The writer, the converters, ``ladd export``, the torch dataset and the labeler pass all go through
these functions. The elementwise ones (:func:`pixel255_to_pixel01`, :func:`normalize`,
:func:`denormalize`) use arithmetic operators only, so they work unchanged on numpy arrays and on
torch tensors (on any device); the caller shapes ``mean``/``std`` to broadcast, e.g. ``(1, K, 1, 1)``.
The rest are numpy (the format core needs numpy and h5py only).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import InputError, ShapeError
from .rows import Rows, block_rows, blocks

PIXEL_MAX = 255
SPACES = ("pixel255", "pixel01", "normalized", "zca")
CHANNEL_COUNTS = (1, 3, 4)           # what an image axis of this length is taken to be channels


# -- elementwise: numpy arrays and torch tensors alike ---------------------------------------------
def pixel255_to_pixel01(x):
    """uint8 (or float) 0..255 pixels -> floats on the 0..1 scale (``x / 255``)."""
    return x / float(PIXEL_MAX)


def normalize(pixel01, mean, std):
    """0..1 pixels -> the trainer's input (spec 4.4): ``(x - mean) / std``."""
    return (pixel01 - mean) / std


def denormalize(normalized, mean, std):
    """Normalised values -> 0..1 pixels: ``x * std + mean`` (the inverse of :func:`normalize`)."""
    return normalized * std + mean


def round_half_up(x):
    """``floor(x + 0.5)``: the rounding of spec 4.1, elementwise on numpy arrays and torch tensors
    alike (``// 1`` is a true floor for both); the caller clips to 0..255."""
    return (x + 0.5) // 1


def to_model_input(x, space: str, mean, std, *, apply_normalization: bool = True):
    """Stored image values in ``space`` -> what a model sees: ``pixel255`` and ``pixel01`` are
    brought to 0..1 and normalised with the file's ``mean``/``std`` (unless
    ``apply_normalization`` is false); ``normalized`` and ``zca`` are returned as stored."""
    if space == "pixel255":
        x = pixel255_to_pixel01(x)
    if apply_normalization and space in ("pixel255", "pixel01"):
        x = normalize(x, mean, std)
    return x


# -- numpy ----------------------------------------------------------------------------------------
def channel_shape(values, k: int) -> np.ndarray:
    """Per-channel values as a float64 ``(1, K, 1, 1)`` array that broadcasts over ``(M, K, H, W)``."""
    return np.asarray(values, np.float64).reshape(1, k, 1, 1)


def to_pixel01(images: np.ndarray, space: str, mean, std) -> np.ndarray:
    """Float images in ``pixel01`` or ``normalized`` space -> float64 pixels on the 0..1 scale."""
    x = images.astype(np.float64)
    if space == "normalized":
        k = x.shape[1]
        x = denormalize(x, channel_shape(mean, k), channel_shape(std, k))
    return x


def quantize(pixel01: np.ndarray) -> np.ndarray:
    """0..1 floats -> uint8 pixels: ``floor(255 p + 0.5)`` (round half up), clipped to 0..255
    (spec 4.1: how a writer turns float pixels into ``pixel255``)."""
    return np.clip(round_half_up(pixel01 * float(PIXEL_MAX)), 0, PIXEL_MAX).astype(np.uint8)


def loss_report(pixel01: np.ndarray, stored_uint8: np.ndarray) -> dict:
    """What rounding to uint8 lost: fraction of values clipped and PSNR (dB, peak 1) of the result."""
    clipped = float(np.mean((pixel01 < -0.5 / PIXEL_MAX) | (pixel01 > 1 + 0.5 / PIXEL_MAX)))
    mse = float(np.mean((stored_uint8.astype(np.float64) / PIXEL_MAX - pixel01.astype(np.float64)) ** 2))
    psnr = math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
    return {"clipped_fraction": clipped, "psnr_db": psnr}


class Uint8Quantizer:
    """Float images (``pixel01`` or ``normalized``) -> uint8 pixels, block after block, counting what
    rounding loses over every block (:meth:`report`).

    The same float64 arithmetic, in the same order, as :func:`to_pixel01` + :func:`quantize` +
    :func:`loss_report` (the definitions; the tests hold them equal), done in place on a
    cache-sized block of images at a time (1 MB of float64): about 5x faster than whole-array
    passes on an ImageNette-sized set (500 x 3 x 128 x 128).
    """

    def __init__(self, space: str, mean, std, k: int):
        self.space = space
        self.scale, self.shift = channel_shape(std, k), channel_shape(mean, k)
        self.clipped, self.squares, self.count = 0, 0.0, 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        stored = np.empty(images.shape, np.uint8)
        block = max(1, (1 << 17) // max(1, int(np.prod(images.shape[1:]))))
        for start in range(0, images.shape[0], block):
            pixel01 = images[start:start + block].astype(np.float64)
            if self.space == "normalized":
                pixel01 *= self.scale
                pixel01 += self.shift
            q = pixel01 * float(PIXEL_MAX)
            q += 0.5
            np.floor(q, out=q)
            np.clip(q, 0, PIXEL_MAX, out=q)
            stored[start:start + block] = q
            self.clipped += (int(np.count_nonzero(pixel01 < -0.5 / PIXEL_MAX))
                             + int(np.count_nonzero(pixel01 > 1 + 0.5 / PIXEL_MAX)))
            q /= float(PIXEL_MAX)
            q -= pixel01
            flat = q.reshape(-1)
            self.squares += float(np.einsum("i,i->", flat, flat))   # not np.dot: BLAS threads stall on a busy CPU
        self.count += images.size
        return stored

    def report(self) -> dict:
        """:func:`loss_report` over every value quantised so far."""
        n = max(1, self.count)
        mse = self.squares / n
        psnr = math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
        return {"clipped_fraction": self.clipped / n, "psnr_db": psnr}


def to_uint8(images: np.ndarray, space: str, mean, std) -> tuple[np.ndarray, dict]:
    """Float images (``pixel01`` or ``normalized``) -> (uint8 pixels, :func:`loss_report` of them),
    by :class:`Uint8Quantizer`."""
    quantizer = Uint8Quantizer(space, mean, std, images.shape[1])
    stored = quantizer(images)
    return stored, quantizer.report()


def stored_to_uint8(images: np.ndarray, space: str) -> np.ndarray | None:
    """Stored images -> uint8 pixels for PNG files: ``pixel255`` as they are, ``pixel01`` quantised;
    None for ``normalized``/``zca`` (no pixel form without more information)."""
    if images.dtype == np.uint8:
        return images
    if space != "pixel01":
        return None
    return quantize(images.astype(np.float64))


def channel_stats(images) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (float64, length K) of ``(M, K, H, W)`` images on the 0..1 scale
    (uint8 divided by 255); a channel with std 0 gets std 1, so normalising never divides by 0.
    Two passes over blocks of :data:`~ladd_format.rows.BLOCK_BYTES` of float64 (an array or :class:`~ladd_format.rows.Rows`):
    the mean, then the squared deviations from it."""
    k = images.shape[1]
    count = images.shape[0] * math.prod(images.shape[2:])
    rows = block_rows(8 * math.prod(images.shape[1:]))

    def pixel01(block):
        x = block.astype(np.float64)
        return pixel255_to_pixel01(x) if images.dtype == np.uint8 else x

    if count == 0:
        return np.full(k, np.nan), np.ones(k)
    sums = np.zeros(k)
    for _, block in blocks(images, rows):
        sums += pixel01(block).sum(axis=(0, 2, 3))
    mean = sums / count
    squares = np.zeros(k)
    for _, block in blocks(images, rows):
        d = pixel01(block) - mean.reshape(1, k, 1, 1)
        squares += np.einsum("mkhw,mkhw->k", d, d)
    std = np.sqrt(squares / count)
    return mean, np.where(std > 0, std, 1.0)


def to_nchw(images, layout: str, path: Path | None = None):
    """``(M, K, H, W)``, ``(M, H, W, K)`` or ``(M, H, W)`` -> contiguous ``(M, K, H, W)``.

    ``layout`` is ``auto`` (channels are the axis of length 1, 3 or 4; channels-first wins when
    both could be), ``nchw`` or ``nhwc``. ``path`` is named in errors. :class:`~ladd_format.rows.Rows`
    give Rows that transpose each block as it is read."""
    if images.ndim == 3:
        return _per_block(images, lambda x: x[:, None], (1, *images.shape[1:]))
    if images.ndim != 4:
        raise ShapeError(f"images must be (M, K, H, W) or (M, H, W, K), got shape {images.shape}", path)
    if layout == "auto":
        first, last = images.shape[1] in CHANNEL_COUNTS, images.shape[3] in CHANNEL_COUNTS
        if last and not first:
            layout = "nhwc"
        elif first:
            layout = "nchw"
        else:
            raise ShapeError(f"cannot tell the channel axis of images with shape {images.shape}; "
                             "pass --layout nchw or nhwc", path)
    if layout == "nhwc":
        m, h, w, k = images.shape
        return _per_block(images, lambda x: np.ascontiguousarray(x.transpose(0, 3, 1, 2)), (k, h, w))
    if layout != "nchw":
        raise InputError(f"layout must be auto, nchw or nhwc, got {layout!r}", path)
    return images if isinstance(images, Rows) else np.ascontiguousarray(images)


def _per_block(images, fn, tail):
    return images.map(fn, tail) if isinstance(images, Rows) else np.ascontiguousarray(fn(images))
