"""Spec section 6: the dense-label codecs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ladd_format.codecs import codec_names, make_codec
from ladd_format.errors import CodecError

from conftest import softmax

CONFIGS = [("float32", {}), ("float16", {}), ("uint8", {}),
           ("topk", {"k": 3, "values": "float16"}), ("topk", {"k": 2, "values": "uint8"}),
           ("topk", {"k": 4, "values": "float32"})]


def probs_strategy(c_max=12):
    return st.integers(2, c_max).flatmap(lambda c: arrays(
        np.float64, (3, 4, c), elements=st.floats(-20, 20, allow_nan=False))).map(softmax)


def test_registry_lists_the_spec_codecs():
    assert codec_names() == ["float16", "float32", "topk", "uint8"]


@pytest.mark.parametrize("name,config", CONFIGS)
def test_config_round_trips(name, config):
    codec = make_codec(name, **config)
    assert make_codec(**codec.config()) == codec


@pytest.mark.parametrize("name,config", CONFIGS)
@settings(max_examples=40, deadline=None)
@given(p=probs_strategy())
def test_decoded_rows_are_distributions(name, config, p):
    codec = make_codec(name, **config)
    c = p.shape[-1]
    if config.get("k", 0) > c:
        return
    q = codec.decode(codec.encode(p), c)
    assert q.dtype == np.float32 and q.shape == p.shape
    assert np.all(q >= 0) and np.all(q <= 1)
    # float16 decodes by a plain cast (spec 6), so its rows sum to 1 only within its tolerance
    assert np.allclose(q.sum(-1), 1, atol=4e-3 if name == "float16" else 1e-5)
    assert codec.check(codec.encode(p), c) == []


@settings(max_examples=40, deadline=None)
@given(p=probs_strategy())
def test_float_codecs_error_bounds(p):
    c = p.shape[-1]
    assert np.abs(make_codec("float32").decode(make_codec("float32").encode(p), c) - p).max() < 1e-7
    assert np.abs(make_codec("float16").decode(make_codec("float16").encode(p), c) - p).max() <= 2 ** -11
    # uint8: rounding error <= 1/510 per value, then renormalisation by a sum within C/510 of 1
    q = make_codec("uint8").decode(make_codec("uint8").encode(p), c)
    assert np.abs(q - p).max() <= (1 / 510) * (1 + c) + 1e-6


def test_uint8_encoding_rounds_to_nearest():
    p = np.array([[[0.5 / 255, 1.49 / 255, 1 - 1.99 / 255]]])
    assert make_codec("uint8").encode(p)["probs"].tolist() == [[[1, 1, 253]]]


def test_uint8_zero_row_decodes_uniform():
    q = make_codec("uint8").decode({"probs": np.zeros((1, 1, 4), np.uint8)}, 4)
    assert np.allclose(q, 0.25)


def test_topk_keeps_largest_in_descending_order_ties_to_lower_index():
    p = np.array([[[0.1, 0.3, 0.3, 0.05, 0.25]]])
    enc = make_codec("topk", k=3, values="float32").encode(p)
    assert enc["topk_index"].tolist() == [[[1, 2, 4]]]
    assert enc["topk_index"].dtype == np.uint16


def test_topk_spreads_the_rest_evenly():
    codec = make_codec("topk", k=2, values="float32")
    p = np.array([[[0.5, 0.3, 0.1, 0.1]]])
    q = codec.decode(codec.encode(p), 4)
    assert np.allclose(q, [[[0.5, 0.3, 0.1, 0.1]]], atol=1e-7)
    p = np.array([[[0.6, 0.3, 0.07, 0.03]]])
    q = codec.decode(codec.encode(p), 4)
    assert np.allclose(q, [[[0.6, 0.3, 0.05, 0.05]]], atol=1e-7)


def test_topk_with_k_equal_c_is_lossless_up_to_value_precision():
    p = softmax(np.random.default_rng(0).normal(size=(2, 3, 5)))
    codec = make_codec("topk", k=5, values="float32")
    assert np.allclose(codec.decode(codec.encode(p), 5), p, atol=1e-6)


def test_topk_k_larger_than_classes_is_refused():
    with pytest.raises(CodecError):
        make_codec("topk", k=6).encode(np.full((1, 1, 5), 0.2))
    with pytest.raises(CodecError):
        make_codec("topk", k=6).layout(25, 5)


@pytest.mark.parametrize("config", [{"k": 0}, {"values": "int8"}, {"bogus": 1}])
def test_bad_codec_configuration_is_refused(config):
    with pytest.raises(CodecError):
        make_codec("topk", **config)


def test_unknown_codec_is_refused():
    with pytest.raises(CodecError, match="unknown codec"):
        make_codec("bfloat8")


def test_check_flags_stored_values_outside_tolerance():
    assert make_codec("float32").check({"probs": np.array([[[0.5, 0.6]]], np.float32)}, 2)
    assert make_codec("float32").check({"probs": np.array([[[np.nan, 1.0]]], np.float32)}, 2)
    assert make_codec("float32").check({"probs": np.array([[[-0.1, 1.1]]], np.float32)}, 2)
    assert make_codec("uint8").check({"probs": np.array([[[200, 200]]], np.uint8)}, 2)
    bad_index = {"topk_index": np.array([[[0, 0]]], np.uint16), "topk_prob": np.array([[[0.5, 0.2]]], np.float16)}
    assert make_codec("topk", k=2).check(bad_index, 4)
    out_of_range = {"topk_index": np.array([[[0, 9]]], np.uint16), "topk_prob": np.array([[[0.5, 0.2]]], np.float16)}
    assert make_codec("topk", k=2).check(out_of_range, 4)
