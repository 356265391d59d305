"""Spec 4.1 and 4.4 pixel rules (ladd_format.pixels) against values worked out by hand: ties round
up, clipping, the clipped fraction's strict bounds, the PSNR, the stored forms and the layouts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ladd_format.errors import InputError, ShapeError
from ladd_format.pixels import (channel_stats, denormalize, loss_report, normalize, pixel255_to_pixel01, quantize,
                                round_half_up, stored_to_uint8, to_nchw, to_pixel01, to_uint8)

# (0..1 value, uint8 by spec 4.1 floor(255 p + 0.5), clipped to 0..255) worked out by hand
CASES = [(0.0, 0), (0.5 / 255, 1), (1.5 / 255, 2), (2.5 / 255, 3), (3.5 / 255, 4), (254.5 / 255, 255),
         (0.49 / 255, 0), (1.51 / 255, 2), (1.0, 255), (-0.2, 0), (1.3, 255), (127.5 / 255, 128), (128.5 / 255, 129)]


def test_quantize_rounds_ties_up_and_clips():
    values = np.array([v for v, _ in CASES], np.float64)
    out = quantize(values)
    assert out.dtype == np.uint8
    assert out.tolist() == [q for _, q in CASES]


def test_round_half_up_on_exact_ties():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 3.0, 2.4999])
    assert round_half_up(x).tolist() == [1.0, 2.0, 3.0, 0.0, -1.0, 3.0, 2.0]


@pytest.mark.parametrize("space", ["pixel01", "normalized"])
def test_to_uint8_equals_the_rule_and_reports_the_loss(space):
    mean, std = (0.25, 0.5, 0.75), (0.5, 0.25, 2.0)
    rng = np.random.default_rng(0)
    k = rng.integers(0, 255, size=(4, 3, 5, 5))                 # 255 + f > 1 + 0.5/255 would be clipped
    frac = 0.05 + 0.4 * rng.uniform(size=k.shape) + 0.5 * (rng.uniform(size=k.shape) < 0.5)
    pix = (k + frac) / 255                                       # off ties: exact through the arithmetic
    pix[0, 0, 0, 0], pix[0, 0, 0, 1] = -0.3, 1.4                 # two values clipped
    expected = np.floor(255 * np.clip(pix, 0, 1) + 0.5).astype(np.uint8)
    m, s = np.array(mean).reshape(1, 3, 1, 1), np.array(std).reshape(1, 3, 1, 1)
    images = pix if space == "pixel01" else (pix - m) / s
    stored, report = to_uint8(images, space, mean, std)
    assert stored.dtype == np.uint8 and np.array_equal(stored, expected)
    assert report["clipped_fraction"] == pytest.approx(2 / pix.size, rel=1e-12)
    mse = np.mean((expected / 255 - pix) ** 2)
    assert report["psnr_db"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-9)
    # the reference functions say the same
    ref = quantize(to_pixel01(images, space, mean, std))
    assert np.array_equal(ref, expected)
    assert loss_report(to_pixel01(images, space, mean, std), ref) == pytest.approx(report, rel=1e-9)


def test_loss_report_bounds_are_strict_and_exact_pixels_have_infinite_psnr():
    exact = np.arange(256, dtype=np.float64) / 255
    report = loss_report(exact, np.arange(256).astype(np.uint8))
    assert report == {"clipped_fraction": 0.0, "psnr_db": math.inf}
    _, fast = to_uint8(exact.reshape(1, 1, 16, 16), "pixel01", (0.0,), (1.0,))
    assert fast == {"clipped_fraction": 0.0, "psnr_db": math.inf}
    # a value within half a step outside [0, 1] rounds to 0 or 255 unclipped; beyond that it is clipped
    edge = np.array([-0.5 / 255, 1 + 0.5 / 255, -0.51 / 255, 1 + 0.51 / 255])
    r = loss_report(edge, quantize(edge))
    assert r["clipped_fraction"] == 0.5
    _, fast = to_uint8(edge.reshape(1, 1, 2, 2), "pixel01", (0.0,), (1.0,))
    assert fast["clipped_fraction"] == 0.5


def test_normalisation_helpers_by_hand():
    x = np.array([0.0, 0.5, 1.0])
    assert normalize(x, 0.5, 0.25).tolist() == [-2.0, 0.0, 2.0]
    assert denormalize(np.array([-2.0, 0.0, 2.0]), 0.5, 0.25).tolist() == [0.0, 0.5, 1.0]
    assert pixel255_to_pixel01(np.array([0.0, 51.0, 255.0])).tolist() == [0.0, 0.2, 1.0]
    out = to_pixel01(np.array([[[[-2.0]], [[2.0]]]], np.float32), "normalized", (0.5, 0.5), (0.25, 0.1))
    assert out.dtype == np.float64 and out.ravel().tolist() == pytest.approx([0.0, 0.7], abs=1e-12)
    same = to_pixel01(np.array([[[[0.25]]]], np.float32), "pixel01", (9.0,), (9.0,))
    assert same.dtype == np.float64 and same.ravel().tolist() == [0.25]


def test_stored_to_uint8_forms():
    u = np.array([[[[7]]]], np.uint8)
    assert stored_to_uint8(u, "pixel255") is u
    f = np.array([[[[2.5 / 255, 1.2]]]], np.float32)
    out = stored_to_uint8(f, "pixel01")
    assert out.dtype == np.uint8 and out.ravel().tolist() == [3, 255]
    assert stored_to_uint8(f, "normalized") is None and stored_to_uint8(f, "zca") is None


def test_channel_stats_by_hand():
    images = np.zeros((2, 2, 1, 2), np.uint8)
    images[:, 0] = [[0, 255]]                  # channel 0: half 0, half 1 -> mean 0.5, std 0.5
    images[:, 1] = 51                          # channel 1: constant 0.2 -> std 0 becomes 1
    mean, std = channel_stats(images)
    assert mean.tolist() == pytest.approx([0.5, 0.2]) and std.tolist() == pytest.approx([0.5, 1.0])
    floats = images.astype(np.float64) / 255
    m2, s2 = channel_stats(floats)
    assert m2.tolist() == pytest.approx([0.5, 0.2]) and s2.tolist() == pytest.approx([0.5, 1.0])


def test_to_nchw_layouts():
    nhwc = np.arange(2 * 6 * 5 * 3).reshape(2, 6, 5, 3)
    out = to_nchw(nhwc, "auto")
    assert out.shape == (2, 3, 6, 5) and out.flags.c_contiguous
    assert out[1, 2, 3, 4] == nhwc[1, 3, 4, 2]
    assert np.array_equal(to_nchw(nhwc, "nhwc"), out)
    nchw = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert np.array_equal(to_nchw(nchw, "auto"), nchw) and np.array_equal(to_nchw(nchw, "nchw"), nchw)
    both = np.zeros((1, 3, 4, 3))                 # channels could be first or last: first wins
    assert to_nchw(both, "auto").shape == (1, 3, 4, 3)
    grey = np.zeros((2, 4, 5))
    assert to_nchw(grey, "auto").shape == (2, 1, 4, 5)
    with pytest.raises(ShapeError, match="channel axis"):
        to_nchw(np.zeros((1, 5, 6, 7)), "auto")
    with pytest.raises(ShapeError, match="images must be"):
        to_nchw(np.zeros((2, 3)), "auto")
    with pytest.raises(InputError, match="layout must be"):
        to_nchw(nchw, "chwn")


def test_to_nchw_errors_name_the_file_and_the_way_out():
    with pytest.raises(ShapeError) as e:
        to_nchw(np.zeros((1, 5, 6, 7)), "auto", Path("x.npz"))
    assert str(e.value) == ("x.npz: cannot tell the channel axis of images with shape (1, 5, 6, 7); "
                            "pass --layout nchw or nhwc")
    with pytest.raises(InputError) as e:
        to_nchw(np.zeros((1, 3, 4, 4)), "chwn", Path("x.npz"))
    assert str(e.value) == "x.npz: layout must be auto, nchw or nhwc, got 'chwn'"


def test_to_uint8_loss_of_a_single_pixel_by_hand():
    """One value, so the mean is that value's squared error (and a clipped one is all of the pixels)."""
    stored, report = to_uint8(np.full((1, 1, 1, 1), 0.3), "pixel01", (0.0,), (1.0,))
    assert stored.item() == 77                                   # floor(255 * 0.3 + 0.5) = floor(77.0)
    assert report["clipped_fraction"] == 0.0
    assert report["psnr_db"] == pytest.approx(10 * math.log10(1 / (77 / 255 - 0.3) ** 2), rel=1e-12)
    stored, report = to_uint8(np.full((1, 1, 1, 1), 1.5), "pixel01", (0.0,), (1.0,))
    assert stored.item() == 255 and report["clipped_fraction"] == 1.0
    assert report["psnr_db"] == pytest.approx(10 * math.log10(1 / 0.25), rel=1e-12)


def test_one_rounding_rule_for_pixels_and_uint8_labels_on_exact_ties():
    """Spec 4.1 (pixels) and spec 6 (uint8 dense labels) round the same way, floor(255 p + 0.5):
    on values where 255 p is exactly k + 1/2 in float64, both give k + 1 (never k, as round-half-even
    would for even k)."""
    from ladd_format.codecs import make_codec
    p = (2 * np.arange(255) + 1) / 510.0
    ties = p[(p * 255.0) % 1 == 0.5]
    assert len(ties) > 100                                    # most of them are exact ties
    up = np.floor(ties * 255.0) + 1
    assert np.array_equal(quantize(ties), up.astype(np.uint8))
    stored = make_codec("uint8").encode(ties.reshape(1, 1, -1))["probs"].ravel()
    assert np.array_equal(stored, up.astype(np.uint8))
