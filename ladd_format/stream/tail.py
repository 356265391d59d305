"""The low-rank tail of a top-k stream label (spec 1.3, 4.8 ``/stream/tail``; section 6's decode with a
tail). numpy only.

A top-k stream stores each record's k largest probabilities; section 6 spreads the rest of the mass
evenly over the other C - k classes, which loses the tail's ranking. ``/stream/tail`` adds, per
record, r int8 coefficients and one float16 scale of the teacher's logits in a basis shared by the
whole stream (``mean`` (C,), ``basis`` (r, C), float32)::

    zhat = mean + scale * (coef @ basis)                      (C values, float64)
    u_j  = exp((zhat_j - max_i zhat_i) / T)                    T: the stream's temperature
    m^   = sum_{j not in I} u_j / sum_j u_j                    (the low-rank logits' own tail mass)
    m    = max(0, min(rho + delta, max(rho - delta, m^)))      rho = 1 - sum_{j in I} v_j, delta = k e
    q_j  = v_j (j in I)
    q_j  = min(m * u_j / sum_{i not in I} u_i, v_min + e)      (j not in I; the first term 0 when that sum is 0)
    q   /= sum(q)                                              (a row of sum 0: 1/C everywhere)

with I the top-k classes stored above 0, v_min the smallest of the record's k stored values (those
stored as 0 included) and e the rounding bound of one stored value (:data:`VALUE_ROUNDING`),
computed in float64 and rounded once to float32: the tail mass is the low-rank logits' own, kept
within what the stored top-k values allow, and no class outside the top k gets more than the
smallest stored value allows: whatever the basis, before the row is divided by its sum no tail entry
exceeds the smallest stored value by more than e, and each stored value v_j decodes to at least
v_j / (1 + k e). A reader that
ignores the tail decodes section 6's top-k with an even tail, as for a 1.2 file.

The writer's recommended encoding (informative, what ``ladd`` writes): :func:`fit_tail_basis` (the
leading right singular vectors of the centred logits of the first :data:`TAIL_FIT_RECORDS` records,
signs fixed) and :func:`encode_tail` (coefficients quantised to int8 with one float16 scale a record).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codecs.base import normalize_rows
from ..errors import CodecError
from ..spec.limits import TAIL_RANK_MAX

#: records whose logits the writer fits the basis on: the first min(Q, 4096) in stream order (the
#: writer's choice, not a spec limit)
TAIL_FIT_RECORDS = 4096
#: the largest magnitude of a stored coefficient: coef = clip(rint(c / scale), -127, 127)
COEF_MAX = 127
#: the largest finite float16 (a record whose largest coefficient exceeds COEF_MAX x this cannot be stored; the
#: stream codec's float16 logits are bounded by it too)
FLOAT16_MAX = 65504.0
#: e of spec 4.8 step 3, by the top-k values' type: the most one stored value differs from the
#: probability it was encoded from (uint8: half of 1/255; float16 and float32: half an ulp below 1)
VALUE_ROUNDING = {"uint8": 1.0 / 510.0, "float16": 2.0 ** -12, "float32": 2.0 ** -25}


def max_tail_rank(num_classes: int) -> int:
    """The largest rank a tail of ``num_classes`` classes may have: min(C, TAIL_RANK_MAX) (spec 2.4)."""
    return min(int(num_classes), TAIL_RANK_MAX)


@dataclass(frozen=True, eq=False)
class TailBasis:
    """The basis of a stream's tail (``/stream/tail`` ``mean`` and ``basis``).

    mean: (C,) float32, the column mean of the logits the basis was fitted on.
    basis: (r, C) float32, r orthonormal directions in logit space (zero rows allowed).
    Two bases compare equal when both arrays are equal, bit for bit.
    """

    mean: np.ndarray
    basis: np.ndarray

    def __post_init__(self) -> None:
        mean = np.ascontiguousarray(np.asarray(self.mean), dtype="<f4")
        basis = np.ascontiguousarray(np.asarray(self.basis), dtype="<f4")
        if mean.ndim != 1 or basis.ndim != 2 or basis.shape[1] != mean.shape[0]:
            raise CodecError(f"a tail needs mean (C,) and basis (r, C), got {mean.shape} and {basis.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(basis))):
            raise CodecError("tail mean and basis must be finite")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "basis", basis)

    @property
    def rank(self) -> int:
        """r, the number of basis vectors."""
        return int(self.basis.shape[0])

    @property
    def num_classes(self) -> int:
        """C, the length of each vector."""
        return int(self.mean.shape[0])

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TailBasis) and np.array_equal(self.mean, other.mean)
                and np.array_equal(self.basis, other.basis))

    def __hash__(self) -> int:
        return hash((self.mean.tobytes(), self.basis.tobytes(), self.basis.shape))

    def __repr__(self) -> str:
        return f"TailBasis(rank={self.rank}, num_classes={self.num_classes})"


def _checked_logits(logits: np.ndarray) -> np.ndarray:
    """``(n, C)`` finite numbers as float64, else a one-line :class:`CodecError`."""
    z = np.asarray(logits)
    if z.ndim != 2:
        raise CodecError(f"logits must be (n, C), got shape {z.shape}")
    if z.dtype.kind not in "fiu":
        raise CodecError(f"logits must be numbers, got {z.dtype}")
    z = z.astype(np.float64)
    if not np.all(np.isfinite(z)):
        raise CodecError("logits contain NaN or infinite values")
    return z


def rank_tolerance(singular: np.ndarray, shape: tuple[int, int]) -> float:
    """The largest singular value of an (n, C) matrix that is rounding noise: s_max * max(n, C) *
    2^-52 (``numpy.linalg.matrix_rank``'s tolerance); ``singular`` its singular values, descending."""
    return float(singular[0]) * max(shape) * np.finfo(np.float64).eps if singular.size else 0.0


def fit_tail_basis(logits: np.ndarray, rank: int) -> TailBasis:
    """The writer's basis: rows = ``logits`` (n, C) of the first min(n, :data:`TAIL_FIT_RECORDS`)
    records, in float64; mean = their column mean; basis = the ``rank`` leading right singular
    vectors of the centred rows (``numpy.linalg.svd``), each signed so that its entry of largest
    magnitude is positive (ties: the lowest index). A vector whose singular value is at most
    :func:`rank_tolerance` (s_max * max(n, C) * 2^-52) spans rounding noise, which differs from one
    machine to the next, and is a zero row instead, as are the rows beyond min(n, C): n rows centred
    have rank n - 1 at most, so a basis fitted on n <= ``rank`` rows is the same on every machine.
    Both cast to float32. Raises :class:`CodecError` on a rank outside 1..min(C, 256), no rows, or
    non-finite logits."""
    z = _checked_logits(logits)
    n, c = z.shape
    if not isinstance(rank, (int, np.integer)) or isinstance(rank, bool) or not 1 <= int(rank) <= max_tail_rank(c):
        raise CodecError(f"tail rank must be an integer from 1 to min(C, {TAIL_RANK_MAX}) = {max_tail_rank(c)}, "
                         f"got {rank!r}")
    if n < 1:
        raise CodecError("a tail basis needs the logits of at least one record")
    r = int(rank)
    rows = z[:TAIL_FIT_RECORDS]
    mean = rows.mean(axis=0)
    centred = rows - mean
    if centred.shape[0] > c:
        # the right singular vectors of X are those of R (X = QR): the same decomposition, without
        # forming X's (n, C) left vectors (2x faster at 4096 x 1000 on 2 cores)
        centred = np.linalg.qr(centred, mode="r")
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    vectors = vt[:r][singular[:r] > rank_tolerance(singular, rows.shape)]
    lead = np.argmax(np.abs(vectors), axis=1)                       # first of equal magnitudes
    signs = np.where(vectors[np.arange(vectors.shape[0]), lead] < 0, -1.0, 1.0)
    basis = np.zeros((r, c), dtype=np.float64)
    basis[:vectors.shape[0]] = vectors * signs[:, None]
    return TailBasis(mean.astype(np.float32), basis.astype(np.float32))


def encode_tail(logits: np.ndarray, tail: TailBasis) -> tuple[np.ndarray, np.ndarray]:
    """The stored tail of n records: c = (z - mean) @ basis.T in float64 (mean, basis as stored,
    float32); scale = float16(max_j |c_j| / 127); coef = clip(rint(c / scale), -127, 127) as int8
    (all 0 when scale is 0). Returns (coef (n, r) int8, scale (n,) float16). Raises
    :class:`CodecError` on non-finite logits, a class count other than the basis's, or a scale beyond
    float16's range."""
    z = _checked_logits(logits)
    if z.shape[1] != tail.num_classes:
        raise CodecError(f"logits have {z.shape[1]} classes, the tail basis {tail.num_classes}")
    c = (z - tail.mean.astype(np.float64)) @ tail.basis.astype(np.float64).T
    peak = np.abs(c).max(axis=1) if c.shape[1] else np.zeros(c.shape[0])
    raw = peak / COEF_MAX
    if raw.size and raw.max() > FLOAT16_MAX:
        i = int(np.argmax(raw))
        raise CodecError(f"record {i}: tail coefficient {float(peak[i]):.6g} is beyond float16's range x {COEF_MAX}")
    scale = raw.astype("<f2")
    s64 = scale.astype(np.float64)
    nonzero = s64 > 0
    coef = np.zeros(c.shape, dtype=np.int8)
    if nonzero.any():
        coef[nonzero] = np.clip(np.rint(c[nonzero] / s64[nonzero, None]), -COEF_MAX, COEF_MAX).astype(np.int8)
    return coef, scale


def tail_logits(coef: np.ndarray, scale: np.ndarray, tail: TailBasis) -> np.ndarray:
    """zhat = mean + scale * (coef @ basis) of n records: (n, C) float64 (coef (n, r) int8, scale (n,) float16)."""
    products = np.asarray(coef).astype(np.float64) @ tail.basis.astype(np.float64)
    return tail.mean.astype(np.float64) + np.asarray(scale).astype(np.float64)[:, None] * products


def tail_mass_slack(k: int, values: str) -> float:
    """delta = k * e of spec 4.8 step 3: how far the tail mass may stray from rho = 1 - sum of the
    stored top-k values, for ``k`` values of type ``values`` (``uint8``, ``float16``, ``float32``;
    :data:`VALUE_ROUNDING`). Raises :class:`CodecError` on another type."""
    if values not in VALUE_ROUNDING:
        raise CodecError(f"top-k values must be one of {', '.join(VALUE_ROUNDING)}, got {values!r}")
    return int(k) * VALUE_ROUNDING[values]


def clamp_tail_mass(m_hat: np.ndarray, rho: np.ndarray, delta: float) -> np.ndarray:
    """m = max(0, min(rho + delta, max(rho - delta, m_hat))) (spec 4.8 step 3), elementwise, float64:
    the low-rank logits' tail mass ``m_hat`` kept within ``delta`` of ``rho`` = 1 - sum of the kept
    top-k values, and never below 0."""
    return np.maximum(0.0, np.minimum(rho + delta, np.maximum(rho - delta, m_hat)))


def tail_entry_cap(topk_values_f64: np.ndarray, values: str) -> np.ndarray:
    """v_min + e of spec 4.8 step 4, per record: the most a class outside the top k may get before
    the row is renormalised. ``topk_values_f64`` (n, k) the decoded top-k values (those stored as 0
    included), ``values`` their stored type (e of :data:`VALUE_ROUNDING`). Returns (n, 1) float64.
    Raises :class:`CodecError` on another type."""
    v = np.asarray(topk_values_f64, dtype=np.float64)
    return v.min(axis=-1, keepdims=True) + tail_mass_slack(1, values)


def decode_with_tail(topk_index: np.ndarray, topk_values_f64: np.ndarray, coef: np.ndarray, scale: np.ndarray,
                     tail: TailBasis, temperature: float, values: str) -> np.ndarray:
    """Section 6's top-k decode with the leftover mass spread by the low-rank logits (spec 1.3,
    4.8): ``topk_index`` (n, k) class indices, ``topk_values_f64`` (n, k) the decoded values v
    (uint8 s/255), ``coef`` (n, r), ``scale`` (n,), ``temperature`` T, the stream's, ``values`` the
    stored values' type (``uint8``, ``float16``, ``float32``: e of :data:`VALUE_ROUNDING`). I is the
    set of top-k indices whose value is above 0 (an entry stored as 0 takes its share of the tail
    like any class outside the top k). Every class j outside I gets min(m * u_j / sum_{i not in I}
    u_i, v_min + e) with u = exp((zhat - max zhat) / T), m the tail mass of u clamped to rho +- k e
    (:func:`clamp_tail_mass`; the first term 0 when that sum is 0) and v_min + e the cap of
    :func:`tail_entry_cap`; each row then divided by its sum (1/C when it is 0). float64
    throughout, (n, C) float32 returned."""
    index = np.asarray(topk_index).astype(np.int64)
    v = np.asarray(topk_values_f64, dtype=np.float64)
    delta = tail_mass_slack(index.shape[-1], values)
    zhat = tail_logits(coef, scale, tail)
    n, c = zhat.shape
    u = np.exp((zhat - zhat.max(axis=1, keepdims=True)) / float(temperature)) if c else zhat
    kept = v > 0                                   # I: the top-k entries stored above 0 (spec 4.8)
    outside = np.ones((n, c), dtype=bool)
    np.put_along_axis(outside, index, ~kept, axis=1)
    total = u.sum(axis=1, keepdims=True)
    rest = np.where(outside, u, 0.0).sum(axis=1, keepdims=True)
    rho = 1.0 - np.where(kept, v, 0.0).sum(axis=1, keepdims=True)
    m = clamp_tail_mass(rest / total, rho, delta)
    q = np.where(outside & (rest > 0), m * u / np.where(rest > 0, rest, 1.0), 0.0)
    q = np.minimum(q, tail_entry_cap(v, values))     # step 4's cap (0 stays 0: the cap is >= e > 0)
    np.put_along_axis(q, index, np.where(kept, v, np.take_along_axis(q, index, axis=1)), axis=1)
    return normalize_rows(q, c)


__all__ = ["COEF_MAX", "TAIL_FIT_RECORDS", "VALUE_ROUNDING", "TailBasis", "clamp_tail_mass", "decode_with_tail",
           "encode_tail", "fit_tail_basis", "max_tail_rank", "tail_entry_cap", "tail_logits", "tail_mass_slack"]
