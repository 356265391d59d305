"""Issue 30, `ladd relabel`: the counter-based generator (ladd_format.stream.counter_rng) and the draws
of a generated stream (ladd_format.stream.draws): fixed outputs that pin the definition on every
machine, a reimplementation from the documented text, statistical sanity with stated bounds, and the
RandomResizedCrop/CutMix/MixUp draws against torchvision's and SRe2L's algorithms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ladd_format.stream import counter_rng as R
from ladd_format.stream.draws import AugmentParams, StreamDraws, det_exp, det_log

MASK = (1 << 64) - 1


# -- the generator, reimplemented from its documented definition with Python integers -----------------
def ref_mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def ref_step(key: int, n: int) -> int:
    return ref_mix64((key + 0x9E3779B97F4A7C15 * (n + 1)) & MASK)


def ref_word(seed: int, epoch: int, slot: int, draw: int) -> int:
    return ref_step(ref_step(ref_step(seed, epoch), slot), draw)


def test_step_is_splitmix64():
    # SplitMix64 seeded with 1234567: its first five outputs (the sequence of Vigna's reference code)
    expected = [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
                16408922859458223821]
    assert R.step(np.uint64(1234567), np.arange(5)).tolist() == expected


def test_fixed_words():
    """Pinned outputs: any change to the generator changes these (and every stream it made)."""
    assert int(R.words(0, 0, 0, 0)[()]) == 2558736989570252433
    assert int(R.words(42, 1, 2, 3)[()]) == 5894832198245594705
    assert R.uniform(R.words(0, 0, 0, np.arange(3))).tolist() == pytest.approx(
        [0.13870941, 0.97110208, 0.27783287], abs=5e-9)


def test_words_equal_the_documented_definition():
    rng = np.random.default_rng(0)
    seeds = [0, 1, 42, (1 << 63) + 5, MASK]
    for seed in seeds:
        counters = rng.integers(0, 1 << 62, size=(20, 3), dtype=np.int64).tolist() + [[MASK, MASK, MASK],
                                                                                    [0, MASK, 7]]
        for epoch, slot, draw in counters:
            assert int(R.words(seed, epoch, slot, draw)[()]) == ref_word(seed, epoch, slot, draw)


def test_conversions_are_the_documented_integer_formulas():
    w = R.words(7, 3, np.arange(1000), 0)
    u = R.uniform(w)
    assert np.all((u >= 0) & (u < 1))
    assert np.array_equal((u * 2.0 ** 53).astype(np.uint64), w >> np.uint64(11))      # exact: 53 bits
    for n in (1, 2, 7, 224, 1 << 32):
        b = R.below(w, n)
        assert b.tolist() == [((int(x) >> 32) * n) >> 32 for x in w]
        assert b.min() >= 0 and b.max() < n
    with pytest.raises(ValueError):
        R.below(w, 0)
    with pytest.raises(ValueError):
        R.below(w, (1 << 32) + 1)


def test_statistics():
    """1e5 uniforms: mean within 5 standard errors of 1/2 (sd 1/sqrt(12)), each decile within 5 sd of
    1e4; below(., 10): each value within 5 sd of 1e4; neighbouring draws uncorrelated (|r| < 5/sqrt(n))."""
    n = 100_000
    u = R.uniform(R.words(1, 0, np.arange(n), 0))
    assert abs(u.mean() - 0.5) < 5 / math.sqrt(12 * n)
    counts = np.bincount((u * 10).astype(int), minlength=10)
    sd = math.sqrt(n * 0.1 * 0.9)
    assert np.all(np.abs(counts - n / 10) < 5 * sd)
    digits = np.bincount(R.below(R.words(1, 2, 3, np.arange(n)), 10), minlength=10)
    assert np.all(np.abs(digits - n / 10) < 5 * sd)
    v = R.uniform(R.words(1, 0, np.arange(n), 1))     # the next draw of the same slots
    assert abs(np.corrcoef(u, v)[0, 1]) < 5 / math.sqrt(n)


def test_counters_are_checked():
    with pytest.raises(ValueError):
        R.CounterRNG(-1)
    with pytest.raises(ValueError):
        R.CounterRNG(1 << 64)
    with pytest.raises(ValueError):
        R.words(0, -1, 0, 0)
    assert R.CounterRNG(5).describe() == {"generator": R.GENERATOR, "seed": 5}


# -- deterministic log and exp -------------------------------------------------------------------------
def test_det_log_and_exp_are_accurate_and_pinned():
    for x in (0.08, 0.5, 0.75, 1.0, 4 / 3, 2.0, 1000.0, 1e-3):
        assert det_log(x) == pytest.approx(math.log(x), rel=1e-15, abs=1e-16)
    v = np.linspace(-7, 7, 2001)
    assert np.max(np.abs(det_exp(v) / np.exp(v) - 1)) < 2e-15
    # pinned bits: the same on every machine (only + - * / and exact scaling are used)
    assert det_log(0.75).hex() == "-0x1.269621134db92p-2"
    assert det_log(4 / 3).hex() == "0x1.269621134db92p-2"
    assert [float(v).hex() for v in det_exp(np.array([0.1, -0.2]))] == ["0x1.1aec7b35a00d4p+0", "0x1.a330ad6166159p-1"]


# -- the draws -------------------------------------------------------------------------------------------
def test_pinned_draws():
    """One small stream's first batch, pinned (the records any machine must draw for seed 42)."""
    d = StreamDraws(42, 12, (16, 16), 5, (16, 16))
    b = d.batch(0, 0)
    assert b.image.tolist() == [3, 5, 10, 6, 0]
    assert b.box.tolist() == [[2, 8, 9, 7], [0, 2, 14, 14], [1, 2, 15, 14], [1, 2, 15, 14], [9, 7, 5, 6]]
    assert b.flip.tolist() == [True, True, True, True, False]
    assert b.mix_partner.tolist() == [4, 0, 1, 3, 2]
    assert b.mix_box.tolist() == [0, 11, 7, 5]


def test_epochs_are_permutations_in_batches():
    d = StreamDraws(3, 23, (8, 8), 5, (8, 8))
    assert d.batches_per_epoch == 5
    orders = []
    for e in range(3):
        batches = list(d.epoch(e))
        assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
        assert [b.index for b in batches] == [e * 5 + j for j in range(5)]
        order = np.concatenate([b.image for b in batches])
        assert sorted(order.tolist()) == list(range(23))
        orders.append(order.tolist())
    assert orders[0] != orders[1] != orders[2]
    assert StreamDraws(4, 23, (8, 8), 5, (8, 8)).order(0).tolist() != orders[0]


def test_boxes_inside_the_image_and_special_cases():
    d = StreamDraws(0, 1000, (13, 29), 64, (8, 8))
    box = d.boxes(0, np.arange(1000))
    top, left, h, w = box.T
    assert np.all((top >= 0) & (left >= 0) & (h >= 1) & (w >= 1) & (top + h <= 13) & (left + w <= 29))
    whole = StreamDraws(0, 50, (16, 16), 8, (16, 16), AugmentParams(scale=(1, 1), ratio=(1, 1)))
    assert np.all(whole.boxes(0, np.arange(50)) == [0, 0, 16, 16])
    quarter = StreamDraws(0, 50, (16, 16), 8, (16, 16), AugmentParams(scale=(0.25, 0.25), ratio=(1, 1)))
    assert np.all(quarter.boxes(0, np.arange(50))[:, 2:] == [8, 8])
    # no attempt can fit (aspect 2..3 at the full area): torchvision's centre fallback
    wide = StreamDraws(0, 5, (16, 16), 8, (16, 16), AugmentParams(scale=(1, 1), ratio=(2, 3)))
    assert wide.boxes(0, np.arange(5)).tolist() == [[4, 0, 8, 16]] * 5


def test_boxes_follow_torchvision_random_resized_crop():
    """The area fraction, log aspect ratio and offsets of 20,000 boxes at 224 px against 20,000 of
    torchvision's RandomResizedCrop.get_params: each mean within 5 combined standard errors."""
    torch = pytest.importorskip("torch")
    from torchvision.transforms import RandomResizedCrop
    n, side = 20_000, 224
    ours = StreamDraws(11, n, (side, side), 256, (side, side)).boxes(0, np.arange(n)).astype(np.float64)
    torch.manual_seed(0)
    image = torch.empty(3, side, side)
    theirs = np.array([RandomResizedCrop.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(n)],
                      dtype=np.float64)

    def stats(b):
        return {"area": b[:, 2] * b[:, 3] / side ** 2, "log_aspect": np.log(b[:, 3] / b[:, 2]),
                "top": b[:, 0] / side, "left": b[:, 1] / side}
    a, t = stats(ours), stats(theirs)
    for key in a:
        se = math.sqrt(a[key].var() / n + t[key].var() / n)
        assert abs(a[key].mean() - t[key].mean()) < 5 * se, key


def test_flips_are_fair():
    n = 20_000
    flips = StreamDraws(5, n, (8, 8), 64, (8, 8)).flips(0, np.arange(n))
    assert abs(flips.mean() - 0.5) < 5 * math.sqrt(0.25 / n)


def test_cutmix_and_mixup_draws():
    d = StreamDraws(9, 40, (16, 16), 8, (12, 10))
    lams, areas = [], []
    for e in range(200):
        for b in d.epoch(e):
            assert sorted(b.mix_partner.tolist()) == list(range(len(b)))
            t, left, h, w = b.mix_box.tolist()
            assert t >= 0 and left >= 0 and h >= 0 and w >= 0 and t + h <= 12 and left + w <= 10
            areas.append(h * w / 120)
            assert b.mix_lambda is None
    # SRe2L's rand_bbox with lam ~ U(0, 1): the cut side is sqrt(1 - lam) of the crop's before clipping;
    # mean unclipped area 1/2, the clipped one lower
    assert 0.2 < np.mean(areas) < 0.5
    m = StreamDraws(9, 40, (16, 16), 8, (12, 10), AugmentParams(mix="mixup"))
    for e in range(200):
        for b in m.epoch(e):
            assert b.mix_box is None and 0 <= b.mix_lambda < 1
            assert b.mix_lambda == float(np.float32(b.mix_lambda))
            lams.append(b.mix_lambda)
    assert abs(np.mean(lams) - 0.5) < 5 * math.sqrt(1 / 12 / len(lams))
    none = StreamDraws(9, 40, (16, 16), 8, (12, 10), AugmentParams(mix="none")).batch(0, 0)
    assert none.mix_partner is None and none.mix_box is None and none.mix_lambda is None


@pytest.mark.parametrize("params, message", [
    (AugmentParams(scale=(0, 1)), "--scale"), (AugmentParams(scale=(0.5, 0.2)), "--scale"),
    (AugmentParams(scale=(0.5, 1.5)), "--scale"), (AugmentParams(ratio=(0, 1)), "--ratio"),
    (AugmentParams(ratio=(2, 1)), "--ratio"), (AugmentParams(mix="patch"), "--mix")])
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        StreamDraws(0, 4, (8, 8), 2, (8, 8), params)
