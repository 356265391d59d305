"""Spec section 5: the sub-image geometry."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladd_format import geometry


@pytest.mark.parametrize("side,n,ratio,crop,offsets", [
    (128, 5, 0.625, 80, [0, 12, 24, 36, 48]),   # the paper's numbers
    (32, 5, 0.625, 20, [0, 3, 6, 9, 12]),
    (224, 5, 0.625, 140, [0, 21, 42, 63, 84]),
    (64, 3, 0.5, 32, [0, 16, 32]),
    (30, 1, 0.5, 15, [8]),
])
def test_spec_table_vectors(side, n, ratio, crop, offsets):
    b = geometry.boxes(side, side, n, ratio)
    assert b.dtype == np.int32 and b.shape == (n * n, 4)
    assert set(b[:, 2]) == {crop} and set(b[:, 3]) == {crop}
    assert sorted(set(b[:, 0])) == offsets and sorted(set(b[:, 1])) == offsets


def test_boxes_are_row_major():
    b = geometry.boxes(128, 96, 5, 0.625)
    # j = row * N + col: the row (top) changes slowest, the column (left) fastest
    assert b[1, 0] == b[0, 0] and b[1, 1] > b[0, 1]
    assert b[5, 0] > b[0, 0] and b[5, 1] == b[0, 1]


def test_non_square_images_use_each_axis():
    b = geometry.boxes(48, 64, 3, 0.5)
    assert set(b[:, 2]) == {24} and set(b[:, 3]) == {32}
    assert sorted(set(b[:, 0])) == [0, 12, 24] and sorted(set(b[:, 1])) == [0, 16, 32]


@given(side_h=st.integers(1, 300), side_w=st.integers(1, 300), n=st.integers(1, 9),
       ratio=st.floats(0.01, 1.0))
def test_boxes_inside_and_spanning(side_h, side_w, n, ratio):
    try:
        b = geometry.boxes(side_h, side_w, n, ratio)
    except ValueError:
        assert round(ratio * min(side_h, side_w) + 1e-9) < 1 or ratio * min(side_h, side_w) < 0.5
        return
    assert geometry.boxes_inside(b, side_h, side_w)
    if n > 1:  # first crop at the top-left corner, last one flush with the bottom-right corner
        assert b[0, 0] == 0 and b[0, 1] == 0
        assert b[-1, 0] + b[-1, 2] == side_h and b[-1, 1] + b[-1, 3] == side_w


@given(length=st.integers(1, 1000), crop_frac=st.floats(0.01, 1.0), n=st.integers(2, 12))
def test_integer_offsets_equal_the_float_formula(length, crop_frac, n):
    crop = max(1, min(length, int(crop_frac * length)))
    float_form = [int(np.floor(i * (length - crop) / (n - 1) + 0.5)) for i in range(n)]
    assert geometry.offsets(length, crop, n) == float_form


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, float("nan")])
def test_bad_ratio_is_refused(ratio):
    with pytest.raises(ValueError):
        geometry.boxes(32, 32, 5, ratio)


def test_boxes_inside_rejects_outside():
    assert not geometry.boxes_inside(np.array([[0, 0, 33, 10]]), 32, 32)
    assert not geometry.boxes_inside(np.array([[-1, 0, 10, 10]]), 32, 32)
    assert geometry.boxes_inside(np.array([[22, 22, 10, 10]]), 32, 32)


@pytest.mark.parametrize("box,inside", [
    ([0, 0, 1, 1], True), ([31, 0, 1, 1], True), ([0, 31, 1, 1], True), ([0, 0, 32, 32], True),
    ([-1, 0, 1, 1], False),     # top above the image
    ([0, -1, 1, 1], False),     # left of the image
    ([0, 0, 0, 1], False),      # empty height
    ([0, 0, 1, 0], False),      # empty width
    ([31, 0, 2, 1], False),     # past the bottom by one row
    ([0, 31, 1, 2], False),     # past the right edge by one column
])
def test_boxes_inside_every_edge_of_every_rule(box, inside):
    """Each of the six conditions at its boundary, on a 32 x 32 image, alone and beside a good box."""
    assert geometry.boxes_inside(np.array([box]), 32, 32) is inside
    assert geometry.boxes_inside(np.array([[0, 0, 32, 32], box]), 32, 32) is inside
    # the rules are per axis: the same box on a 32-row, 64-column image
    wide = geometry.boxes_inside(np.array([box]), 32, 64)
    assert wide is (inside or box == [0, 31, 1, 2])


@pytest.mark.parametrize("array", [np.zeros(4, np.int64), np.zeros((2, 3), np.int64), np.zeros((1, 4, 1), np.int64),
                                   np.zeros((1, 5), np.int64)])
def test_boxes_inside_refuses_other_shapes(array):
    array[..., 2:] = 1
    assert geometry.boxes_inside(array, 32, 32) is False


def test_boxes_inside_refuses_non_integer_and_wrapping_boxes():
    # a float box is no box (the spec stores integers); truncating 7.5 to 7 would let it pass
    assert geometry.boxes_inside(np.array([[7.5, 0.0, 1.0, 1.0]]), 8, 8) is False
    assert geometry.boxes_inside(np.array([[0.0, 0.0, 8.0, 8.0]]), 8, 8) is False
    # uint64 arithmetic wraps: top = 2**64 - 1 plus height 1 is 0, "inside" unless checked as signed
    assert geometry.boxes_inside(np.array([[2**64 - 1, 0, 1, 1]], dtype=np.uint64), 8, 8) is False
    assert geometry.boxes_inside(np.array([[7, 0, 1, 1]], dtype=np.uint64), 8, 8) is True
    # the largest int64 top plus height 1 overflows int64 if added
    for dtype in (np.int64, np.uint64):
        assert geometry.boxes_inside(np.array([[2**63 - 1, 0, 1, 1]], dtype=dtype), 8, 8) is False
        assert geometry.boxes_inside(np.array([[0, 2**63 - 1, 1, 1]], dtype=dtype), 8, 8) is False
    assert geometry.boxes_inside(np.array([[7, 0, 1, 1]], dtype=np.int8), 8, 8) is True


def test_geometry_refusals_word_for_word():
    cases = [(lambda: geometry.crop_length(10, 0.0), "ratio must be in (0, 1], got 0.0"),
             (lambda: geometry.crop_length(10, float("inf")), "ratio must be in (0, 1], got inf"),
             (lambda: geometry.crop_length(10, float("nan")), "ratio must be in (0, 1], got nan"),
             (lambda: geometry.crop_length(0, 0.5), "image side must be >= 1, got 0"),
             (lambda: geometry.crop_length(10, 0.04), "ratio 0.04 gives an empty crop of a 10-pixel side"),
             (lambda: geometry.offsets(10, 5, 0), "grid size n must be >= 1, got 0"),
             (lambda: geometry.boxes(10, 10, 0, 0.5), "grid size n must lie in 1..64, got 0"),
             (lambda: geometry.boxes(10, 10, 65, 0.5), "grid size n must lie in 1..64, got 65")]
    for call, message in cases:
        with pytest.raises(ValueError) as e:
            call()
        assert str(e.value) == message


def test_crop_length_at_the_edges_of_the_ratio_and_the_rounding():
    assert geometry.crop_length(10, 1.0) == 10                 # the whole side
    assert geometry.crop_length(10, 0.05) == 1                 # 0.5 rounds up to one pixel
    assert geometry.crop_length(7, 0.5) == 4                   # 3.5 rounds up (half up, not to even)
    assert geometry.crop_length(9, 0.5) == 5                   # 4.5 rounds up
    assert geometry.crop_length(1, 1.0) == 1
    assert len(geometry.boxes(4, 4, 64, 0.5)) == 64 * 64       # the largest grid


def test_a_single_crop_is_centred_in_whole_pixels():
    """N = 1: o = floor((L - l)/2 + 0.5) = ((L - l) + 1) div 2, an int: a span of 14 gives 7, not 7.5."""
    for length, crop, want in ((29, 15, 7), (30, 15, 8), (15, 15, 0)):
        got = geometry.offsets(length, crop, 1)
        assert got == [want] and all(type(v) is int for v in got)
