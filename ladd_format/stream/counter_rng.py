"""The counter-based generator of ``ladd relabel``: every random draw of a relabel stream as a pure
function of (seed, epoch, slot, draw), in 64-bit integer arithmetic only (numpy ``uint64``), so that
the same seed gives the same numbers on any machine and any numpy or torch release.

Definition (``docs/relabel.md``, "The counter-based generator", says the same). All arithmetic is
modulo 2**64 on unsigned 64-bit integers; ``>>`` is a logical shift, ``^`` exclusive or.

- ``G = 0x9E3779B97F4A7C15`` (SplitMix64's increment, the golden ratio times 2**64);
- ``mix64(z)``, SplitMix64's finaliser::

      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
      z = (z ^ (z >> 27)) * 0x94D049BB133111EB
      z =  z ^ (z >> 31)

- ``step(key, n) = mix64(key + G * (n + 1))``: the (n+1)-th output of SplitMix64 started from the
  state ``key`` (so ``step(seed, 0)`` is the first number SplitMix64 seeded with ``seed`` gives);
- the word of a draw::

      word(seed, epoch, slot, draw) = step(step(step(seed, epoch), slot), draw)

  with ``seed``, ``epoch``, ``slot`` and ``draw`` integers in [0, 2**64).

For a fixed parent key, ``step`` is a bijection of its counter (``G`` is odd and ``mix64`` is
invertible), so two draws that differ in one counter only never share a word.

Conversions of a word ``w``:

- uniform float in [0, 1): ``(w >> 11) * 2**-53`` (53 bits, exact in IEEE-754 double);
- uniform integer in [0, n), 1 <= n <= 2**32: ``((w >> 32) * n) >> 32`` (integers only; the bias is
  below n / 2**32).

What each (slot, draw) means for a stream (which record, which attempt of RandomResizedCrop) is
:mod:`ladd_format.stream.draws`'s. numpy only (no torch): the format core may import it.
"""

from __future__ import annotations

import numpy as np

#: the name ``/stream`` ``sampler`` and ``augmentation`` record for this generator (bump on any change)
GENERATOR = "splitmix64-counter"
GOLDEN = 0x9E3779B97F4A7C15         #: SplitMix64's increment G
MIX1 = 0xBF58476D1CE4E5B9           #: the finaliser's first multiplier
MIX2 = 0x94D049BB133111EB           #: the finaliser's second multiplier
#: one past the largest counter or seed
COUNTER_LIMIT = 1 << 64
#: the largest n of :func:`below`
MAX_BELOW = 1 << 32
#: 2**-53: a 53-bit integer times this is a float in [0, 1)
UNIT = 1.0 / (1 << 53)

_U64 = np.uint64


def _as_u64(values, name: str) -> np.ndarray:
    """Integers in [0, 2**64) as a uint64 array (refused, one line, outside it)."""
    arr = np.asarray(values)
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype.kind not in "iu" and not (arr.dtype == object and all(isinstance(v, int) for v in arr.flat)):
        raise ValueError(f"{name} must be integers, got {arr.dtype}")
    if arr.size and (min(int(v) for v in arr.flat) < 0 or max(int(v) for v in arr.flat) >= COUNTER_LIMIT):
        raise ValueError(f"{name} must lie in [0, 2**64)")
    if arr.dtype == object:
        return np.array([int(v) for v in arr.flat], dtype=np.uint64).reshape(arr.shape)
    return arr.astype(np.uint64)


def mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (module docstring), elementwise."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> _U64(30))) * _U64(MIX1)
        z = (z ^ (z >> _U64(27))) * _U64(MIX2)
        return z ^ (z >> _U64(31))


def step(key: np.ndarray, counter: np.ndarray) -> np.ndarray:
    """``mix64(key + G * (counter + 1))`` modulo 2**64, elementwise (broadcasting)."""
    key = np.asarray(key, dtype=np.uint64)
    counter = np.asarray(counter, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix64(key + _U64(GOLDEN) * (counter + _U64(1)))


def words(seed: int, epoch, slot, draw) -> np.ndarray:
    """``word(seed, epoch, slot, draw)`` as uint64, broadcasting ``epoch``, ``slot`` and ``draw``
    (integers in [0, 2**64), scalars or arrays)."""
    key = _as_u64(seed, "seed")
    return step(step(step(key, _as_u64(epoch, "epoch")), _as_u64(slot, "slot")), _as_u64(draw, "draw"))


def uniform(w: np.ndarray) -> np.ndarray:
    """Words -> float64 in [0, 1): ``(w >> 11) * 2**-53``."""
    w = np.asarray(w, dtype=np.uint64)
    return (w >> _U64(11)).astype(np.float64) * UNIT


def below(w: np.ndarray, n) -> np.ndarray:
    """Words -> int64 in [0, n) for 1 <= n <= 2**32 (elementwise ``n``): ``((w >> 32) * n) >> 32``."""
    w = np.asarray(w, dtype=np.uint64)
    n = np.asarray(n)
    if n.size and (int(n.min()) < 1 or int(n.max()) > MAX_BELOW):
        raise ValueError(f"below(): n must lie in 1..2**32, got {int(n.min())}..{int(n.max())}")
    with np.errstate(over="ignore"):
        return (((w >> _U64(32)) * n.astype(np.uint64)) >> _U64(32)).astype(np.int64)


class CounterRNG:
    """The generator of one seed: ``rng.words(epoch, slot, draw)``, ``rng.uniform(...)``,
    ``rng.below(..., n)`` (module docstring)."""

    def __init__(self, seed: int):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < COUNTER_LIMIT:
            raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
        self.seed = int(seed)

    def words(self, epoch, slot, draw) -> np.ndarray:
        return words(self.seed, epoch, slot, draw)

    def uniform(self, epoch, slot, draw) -> np.ndarray:
        return uniform(self.words(epoch, slot, draw))

    def below(self, epoch, slot, draw, n) -> np.ndarray:
        return below(self.words(epoch, slot, draw), n)

    def describe(self) -> dict:
        """What ``/stream`` ``sampler`` records of it: ``{"generator": ..., "seed": ...}``."""
        return {"generator": GENERATOR, "seed": self.seed}
