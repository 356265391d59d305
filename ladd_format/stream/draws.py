"""The random draws of ``ladd relabel``: epoch order, RandomResizedCrop boxes, flips and the batch
mix (CutMix or MixUp), every number from the counter-based generator
(:mod:`ladd_format.stream.counter_rng`) at a documented (epoch, slot, draw), in numpy only.

The same seed and parameters give the same records on any machine: the generator is integer
arithmetic, and every float step below uses only IEEE-754 double ``+ - * /`` and ``sqrt`` (correctly
rounded by the standard, and never fused by numpy) and rounding to integers; the logarithm and
exponential the aspect ratio needs are computed with fixed series (:func:`det_log`, :func:`det_exp`)
instead of the platform's libm, whose last bit may differ between machines.

Epoch e of a set of M images (H x W pixels) with batch size B:

- *Order*: image i gets the key ``word(seed, e, i, ORDER)``; the epoch visits the images in the
  order of their keys (a stable sort: equal keys, which have probability about M**2 / 2**65, keep
  index order). Its record at position p (0..M-1) is image ``order[p]``; batch j of the epoch holds
  positions ``j*B`` .. ``min(M, (j+1)*B) - 1`` (the last batch may be short); its global batch
  number is ``e * ceil(M / B) + j``.
- *Crop* of the record at position p (torchvision's ``RandomResizedCrop.get_params``, ``scale``
  (s0, s1) and ``ratio`` (r0, r1)): for attempt a = 0..9, with ``u_k = uniform(word(seed, e, p,
  CROP + 4a + k))``::

      target = (H * W) * (s0 + (s1 - s0) * u_0)
      aspect = det_exp(det_log(r0) + (det_log(r1) - det_log(r0)) * u_1)
      w = round(sqrt(target * aspect)),  h = round(sqrt(target / aspect))     (round half to even)
      if 0 < w <= W and 0 < h <= H:
          top = below(word(.., CROP + 4a + 2), H - h + 1);  left = below(word(.., CROP + 4a + 3), W - w + 1)
          the box is [top, left, h, w]; stop

  When no attempt fits, torchvision's centre fallback: W/H < r0: w = W, h = round(W / r0);
  W/H > r1: h = H, w = round(H * r1); else the whole image; top = (H - h) // 2, left = (W - w) // 2
  (h and w at least 1, which torchvision's fallback does not ensure for ratios far from the image's).
- *Flip*: ``uniform(word(seed, e, p, FLIP)) < flip`` (0.5: torchvision's RandomHorizontalFlip).
- *Mix* of batch j (slot j, domain BATCH), on crops of h_out x w_out pixels:

  - ``cutmix`` (SRe2L's ``rand_bbox``, its axes named properly): lam = ``uniform(word(.., MIX + 0))``
    (Beta(1, 1)); ``cut = sqrt(1 - lam)``; ``ch = floor(h_out * cut)``, ``cw = floor(w_out * cut)``;
    centre ``cy = below(word(.., MIX + 1), h_out)``, ``cx = below(word(.., MIX + 2), w_out)``;
    ``t = clip(cy - ch // 2, 0, h_out)``, ``b = clip(cy + ch // 2, 0, h_out)`` (``l``, ``r`` likewise
    along W); the box is [t, l, b - t, r - l];
  - ``mixup``: lam = ``uniform(word(.., MIX + 0))`` as float32 (Beta(1, 1); other alphas are not
    built); the record's input is lam * own + (1 - lam) * partner's;
  - both: the partner of position q of the batch is ``argsort(word(.., MIX + 3 + q) for q < n)``
    (stable), a permutation of the batch.

Draw numbers: ``domain * 2**48 + n`` with domain 0 (:data:`CROP`/:data:`FLIP`, slot = position in
the epoch), 1 (:data:`ORDER`, slot = image index) and 2 (:data:`MIX`, slot = batch of the epoch).

RDED's patch shuffle is not built (spec 1.2's stream has no way to record it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .counter_rng import GENERATOR, MAX_BELOW, CounterRNG

#: draw numbers (module docstring): domain * 2**48 + n
DOMAIN_SHIFT = 48
FLIP = 0                               #: domain 0: the flip of a record
CROP = 1                               #: domain 0: CROP + 4a + k, attempt a, k = 0 scale, 1 ratio, 2 top, 3 left
ORDER = 1 << DOMAIN_SHIFT              #: domain 1: the sort key of an image
MIX = 2 << DOMAIN_SHIFT                #: domain 2: MIX + 0 lambda, + 1 centre row, + 2 centre column, + 3 + q partner
#: RandomResizedCrop's attempts before its centre fallback (torchvision's 10)
ATTEMPTS = 10
#: the mixes this module draws (spec STREAM_MIXES)
MIXES = ("none", "cutmix", "mixup")
#: the largest side a box may span (the generator's integers are < 2**32)
MAX_SIDE = MAX_BELOW - 1
#: ln 2 (the double nearest it); with the fixed series below, the only constant of det_log/det_exp
LN2 = 0.6931471805599453
_LOG_TERMS = 16                        # atanh series terms: |y| <= 0.1716, y**33 / 33 < 1e-26
_EXP_TERMS = 18                        # Taylor terms: |r| <= 0.347, r**18 / 18! < 1e-23


def det_log(x: float) -> float:
    """Natural logarithm of a positive finite float with IEEE-754 ``+ - * /`` only (the same bits on
    every machine): ``x = m * 2**k`` with m in [sqrt(1/2), sqrt(2)) (exact), then
    ``log m = 2 * atanh(y)``, ``y = (m - 1) / (m + 1)``, by its series to y**33 (Horner), plus k * ln 2."""
    x = float(x)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"det_log() takes a positive finite number, got {x}")
    m, k = math.frexp(x)                  # x = m * 2**k, m in [0.5, 1), exact
    if m < 0.7071067811865476:
        m, k = m * 2.0, k - 1
    y = (m - 1.0) / (m + 1.0)
    y2 = y * y
    s = 1.0 / (2 * _LOG_TERMS + 1)
    for j in range(_LOG_TERMS - 1, -1, -1):
        s = s * y2 + 1.0 / (2 * j + 1)
    return 2.0 * y * s + k * LN2


def det_exp(v: np.ndarray) -> np.ndarray:
    """``exp`` of a float64 array with IEEE-754 ``+ - * /`` only: ``v = k * ln2 + r``
    (k = rint(v / ln2)), ``exp r`` by its Taylor series to r**17 (Horner, coefficients 1/j!), times
    2**k (exact, ``ldexp``). |v| must stay below 700."""
    v = np.asarray(v, dtype=np.float64)
    if v.size and not np.all(np.abs(v) < 700):
        raise ValueError("det_exp() takes |v| < 700")
    k = np.rint(v / LN2)
    r = v - k * LN2
    p = np.full_like(r, 1.0 / math.factorial(_EXP_TERMS - 1))
    for j in range(_EXP_TERMS - 2, -1, -1):
        p = p * r + 1.0 / math.factorial(j)
    return np.ldexp(p, k.astype(np.int64))


@dataclass(frozen=True)
class AugmentParams:
    """The augmentation of a generated stream (``/stream`` ``augmentation`` records :meth:`describe`)."""

    scale: tuple[float, float] = (0.08, 1.0)        #: RandomResizedCrop's area fraction range
    ratio: tuple[float, float] = (3 / 4, 4 / 3)     #: RandomResizedCrop's aspect ratio (w / h) range
    flip: float = 0.5                               #: probability of a horizontal flip
    mix: str = "cutmix"                             #: none, cutmix or mixup

    def check(self) -> None:
        """ValueError (one line) for parameters no stream can be drawn with."""
        s0, s1 = (float(v) for v in self.scale)
        r0, r1 = (float(v) for v in self.ratio)
        if not (math.isfinite(s0) and math.isfinite(s1) and 0 < s0 <= s1 <= 1):
            raise ValueError(f"--scale must be two numbers 0 < MIN <= MAX <= 1, got {s0:g} {s1:g}")
        if not (math.isfinite(r0) and math.isfinite(r1) and 1e-3 <= r0 <= r1 <= 1e3):
            raise ValueError(f"--ratio must be two numbers 0.001 <= MIN <= MAX <= 1000, got {r0:g} {r1:g}")
        if not 0 <= self.flip <= 1:
            raise ValueError(f"the flip probability must lie in [0, 1], got {self.flip:g}")
        if self.mix not in MIXES:
            raise ValueError(f"--mix must be one of {', '.join(MIXES)}, got {self.mix!r}")

    def describe(self, seed: int) -> dict:
        """The ``augmentation`` JSON of ``/stream`` (spec 4.7)."""
        out = {"generator": GENERATOR, "seed": int(seed), "crop": "RandomResizedCrop",
               "scale": [float(v) for v in self.scale], "ratio": [float(v) for v in self.ratio],
               "attempts": ATTEMPTS, "flip": float(self.flip), "mix": self.mix}
        if self.mix == "cutmix":
            out["cutmix_beta"] = 1.0
        elif self.mix == "mixup":
            out["mixup_alpha"] = 1.0
        return out


@dataclass(frozen=True, eq=False)
class BatchDraws:
    """The draws of one batch, shaped as :class:`ladd_format.stream.StreamBatch` without labels."""

    epoch: int
    index: int                       #: global batch number b
    image: np.ndarray                #: int64 (n,)
    box: np.ndarray                  #: int64 (n, 4) top, left, height, width (image pixels)
    flip: np.ndarray                 #: bool (n,)
    mix_partner: np.ndarray | None = None   #: int64 (n,), positions inside this batch
    mix_box: np.ndarray | None = None       #: int64 (4,) top, left, height, width (crop pixels), cutmix
    mix_lambda: float | None = None         #: float32 value, mixup
    positions: tuple[int, int] = field(default=(0, 0))   #: [first, last + 1) positions in the epoch

    def __len__(self) -> int:
        return len(self.image)


class StreamDraws:
    """Every draw of a generated stream (module docstring) for M images of H x W pixels."""

    def __init__(self, seed: int, num_images: int, image_hw: tuple[int, int], batch_size: int,
                 crop_size: tuple[int, int], params: AugmentParams = AugmentParams()):
        params.check()
        self.rng = CounterRNG(seed)
        self.num_images = int(num_images)
        self.height, self.width = (int(v) for v in image_hw)
        self.batch_size = int(batch_size)
        self.crop_size = tuple(int(v) for v in crop_size)
        self.params = params
        if self.num_images < 1 or self.batch_size < 1:
            raise ValueError(f"need at least one image and a batch size >= 1, got {num_images} and {batch_size}")
        if not (1 <= self.height <= MAX_SIDE and 1 <= self.width <= MAX_SIDE):
            raise ValueError(f"image sides must lie in 1..{MAX_SIDE}, got {self.height}x{self.width}")
        if len(self.crop_size) != 2 or not all(1 <= v <= MAX_SIDE for v in self.crop_size):
            raise ValueError(f"crop sides must lie in 1..{MAX_SIDE}, got {self.crop_size}")
        self.log_ratio = (det_log(params.ratio[0]), det_log(params.ratio[1]))

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.num_images // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """int64 (M,): the image at each position of ``epoch``."""
        keys = self.rng.words(epoch, np.arange(self.num_images, dtype=np.uint64), ORDER)
        return np.argsort(keys, kind="stable").astype(np.int64)

    def boxes(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """int64 (n, 4) RandomResizedCrop boxes [top, left, height, width] of the records at ``positions``."""
        pos = np.asarray(positions, dtype=np.uint64)[:, None]
        attempt = np.arange(ATTEMPTS, dtype=np.uint64)[None, :] * np.uint64(4) + np.uint64(CROP)
        u_scale = self.rng.uniform(epoch, pos, attempt)
        u_ratio = self.rng.uniform(epoch, pos, attempt + np.uint64(1))
        (s0, s1), (l0, l1) = self.params.scale, self.log_ratio
        area = float(self.height * self.width)
        target = area * (float(s0) + (float(s1) - float(s0)) * u_scale)
        aspect = det_exp(l0 + (l1 - l0) * u_ratio)
        w = np.rint(np.sqrt(target * aspect)).astype(np.int64)
        h = np.rint(np.sqrt(target / aspect)).astype(np.int64)
        fits = (w > 0) & (w <= self.width) & (h > 0) & (h <= self.height)
        n = len(pos)
        out = np.empty((n, 4), dtype=np.int64)
        any_fit = fits.any(axis=1)
        first = np.argmax(fits, axis=1)
        rows = np.flatnonzero(any_fit)
        if len(rows):
            a = first[rows]
            hh, ww = h[rows, a], w[rows, a]
            draw = a.astype(np.uint64) * np.uint64(4) + np.uint64(CROP)
            top = self.rng.below(epoch, pos[rows, 0], draw + np.uint64(2), self.height - hh + 1)
            left = self.rng.below(epoch, pos[rows, 0], draw + np.uint64(3), self.width - ww + 1)
            out[rows] = np.stack([top, left, hh, ww], axis=1)
        out[~any_fit] = self.fallback_box()
        return out

    def fallback_box(self) -> tuple[int, int, int, int]:
        """torchvision's centre crop when no attempt fits (module docstring)."""
        height, width = self.height, self.width
        r0, r1 = (float(v) for v in self.params.ratio)
        in_ratio = float(width) / float(height)
        if in_ratio < r0:
            w, h = width, int(round(width / r0))
        elif in_ratio > r1:
            h, w = height, int(round(height * r1))
        else:
            h, w = height, width
        h, w = max(1, min(height, h)), max(1, min(width, w))
        return (height - h) // 2, (width - w) // 2, h, w

    def flips(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """bool (n,): the flips of the records at ``positions``."""
        pos = np.asarray(positions, dtype=np.uint64)
        return self.rng.uniform(epoch, pos, FLIP) < float(self.params.flip)

    def mix(self, epoch: int, batch: int, n: int) -> tuple[np.ndarray | None, np.ndarray | None, float | None]:
        """``(mix_partner, mix_box, mix_lambda)`` of batch ``batch`` of ``epoch`` holding ``n`` records."""
        mode = self.params.mix
        if mode == "none":
            return None, None, None
        partner = np.argsort(self.rng.words(epoch, batch, np.uint64(MIX + 3) + np.arange(n, dtype=np.uint64)),
                             kind="stable").astype(np.int64)
        lam = float(self.rng.uniform(epoch, batch, MIX)[()])
        if mode == "mixup":
            return partner, None, float(np.float32(lam))
        h_out, w_out = self.crop_size
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h_out * cut), int(w_out * cut)
        cy = int(self.rng.below(epoch, batch, MIX + 1, h_out)[()])
        cx = int(self.rng.below(epoch, batch, MIX + 2, w_out)[()])
        t, b = min(max(cy - ch // 2, 0), h_out), min(max(cy + ch // 2, 0), h_out)
        left, r = min(max(cx - cw // 2, 0), w_out), min(max(cx + cw // 2, 0), w_out)
        return partner, np.array([t, left, b - t, r - left], dtype=np.int64), None

    def batch(self, epoch: int, j: int, order: np.ndarray | None = None) -> BatchDraws:
        """Batch ``j`` (0..batches_per_epoch-1) of ``epoch``; ``order``: :meth:`order` of the epoch
        when the caller has it."""
        if not 0 <= j < self.batches_per_epoch:
            raise ValueError(f"batch {j} of an epoch of {self.batches_per_epoch}")
        order = self.order(epoch) if order is None else order
        start, stop = j * self.batch_size, min(self.num_images, (j + 1) * self.batch_size)
        positions = np.arange(start, stop, dtype=np.int64)
        partner, mix_box, lam = self.mix(epoch, j, stop - start)
        return BatchDraws(epoch, epoch * self.batches_per_epoch + j, order[start:stop].copy(),
                          self.boxes(epoch, positions), self.flips(epoch, positions), partner, mix_box, lam,
                          (start, stop))

    def epoch(self, epoch: int):
        """The batches of ``epoch``, in order (an iterator of :class:`BatchDraws`)."""
        order = self.order(epoch)
        for j in range(self.batches_per_epoch):
            yield self.batch(epoch, j, order)

    def describe(self) -> tuple[dict, dict]:
        """``(sampler, augmentation)`` JSON of ``/stream`` (spec 4.7)."""
        sampler = {**self.rng.describe(), "order": "argsort of per-image keys, each epoch a permutation",
                   "batch_size": self.batch_size, "drop_last": False}
        return sampler, self.params.describe(self.rng.seed)
