"""The top-k codec selects the k largest values before sorting them (codecs/topk.py ``top_indices``):
its indices must be exactly those of spec 6's rule, a stable sort of -p (ties: lower class index first)."""

from __future__ import annotations

import numpy as np
import pytest

from ladd_format.codecs import parse_codec
from ladd_format.codecs.topk import FULL_SORT_CLASSES, top_indices


def reference(p: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-p, axis=-1, kind="stable")[..., :k]


@pytest.mark.parametrize("classes, k", [(1000, 20), (1000, 1), (100, 10), (65, 64), (200, 199)])
def test_selection_equals_the_stable_sort_on_random_rows(classes, k):
    rng = np.random.default_rng(classes + k)
    p = rng.dirichlet(np.full(classes, 0.1), size=300)
    assert classes > FULL_SORT_CLASSES
    assert np.array_equal(top_indices(p, k), reference(p, k))


@pytest.mark.parametrize("levels", [2, 3, 7])
def test_selection_equals_the_stable_sort_when_values_tie_at_the_boundary(levels):
    """Rows of a few distinct values: the k-th value ties with many others, inside and outside the k."""
    rng = np.random.default_rng(levels)
    p = rng.integers(0, levels, size=(500, 300)).astype(np.float64)
    p[:50] = 1.0                                                # whole rows tied
    for k in (1, 5, 20, 150):
        assert np.array_equal(top_indices(p, k), reference(p, k)), k


def test_a_row_with_nan_takes_the_full_sort_and_shapes_are_kept():
    rng = np.random.default_rng(0)
    p = rng.random((4, 3, 100))
    p[1, 2, 7] = np.nan
    assert np.array_equal(top_indices(p, 10), reference(p, 10))
    assert top_indices(p, 10).shape == (4, 3, 10)


def test_the_codec_stores_the_same_bytes_as_the_stable_sort():
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.full(1000, 0.05), size=(64, 1))
    p[::3, 0, :40] = 0.0125                                     # ties across the boundary of k = 20
    p /= p.sum(axis=-1, keepdims=True)
    stored = parse_codec("topk:k=20,values=uint8").encode(p)
    assert np.array_equal(stored["topk_index"], reference(p, 20).astype("<u2"))
