"""Each codec's stored-value rules (spec 6) at their boundaries, with the exact problem each one reports.

The expectations are written out by hand: a row exactly at a limit is accepted and one unit past it is
refused, so an off-by-one or a changed constant in a check fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from ladd_format.codecs import make_codec
from ladd_format.errors import CodecError

C = 10


def uint8_rows(*sums: int) -> np.ndarray:
    """Rows of C uint8 values with the given sums (all of the mass in the first classes)."""
    rows = np.zeros((len(sums), C), np.uint8)
    for i, s in enumerate(sums):
        rows[i, 0] = min(s, 255)
        rows[i, 1] = s - min(s, 255)
    return rows


def test_uint8_rows_may_be_off_255_by_at_most_c_over_2():
    codec = make_codec("uint8")
    assert codec.check({"probs": uint8_rows(255, 250, 260)}, C) == []        # off by exactly C/2 = 5
    assert codec.check({"probs": uint8_rows(255, 249)}, C) == [
        "uint8 rows must sum to 255 within C/2 = 5, worst row sums to 249"]
    # the worst row is named, not the first one
    assert codec.check({"probs": uint8_rows(255, 252, 300, 258)}, C) == [
        "uint8 rows must sum to 255 within C/2 = 5, worst row sums to 300"]


def test_uint8_decode_renormalises_each_row_and_maps_zero_rows_to_uniform():
    codec = make_codec("uint8")
    stored = np.zeros((2, 4), np.uint8)
    stored[0] = (200, 50, 5, 0)
    decoded = codec.decode({"probs": stored}, 4)
    assert decoded.dtype == np.float32
    np.testing.assert_allclose(decoded[0], np.array([200, 50, 5, 0]) / 255, rtol=1e-6)
    np.testing.assert_allclose(decoded[1], [0.25] * 4, rtol=1e-6)


def topk(index, values):
    return {"topk_index": np.asarray(index, "<u2"), "topk_prob": np.asarray(values)}


def test_topk_class_indices_below_c_and_distinct_per_row():
    codec = make_codec("topk", k=3, values="float16")
    ok = topk([[9, 0, 1], [9, 0, 1]], np.full((2, 3), 0.3, np.float16))   # the same classes in two rows is fine
    assert codec.check(ok, C) == []
    assert codec.check(topk([[10, 0, 1]], np.full((1, 3), 0.3, np.float16)), C) == [
        "class indices must be < C = 10, found 10"]
    # a repeat in the last two places of a row of three, and in the first two
    for row in ([1, 5, 5], [4, 4, 2]):
        assert codec.check(topk([row], np.full((1, 3), 0.3, np.float16)), C) == [
            "class indices must be distinct within each row"]


def test_topk_uint8_row_sum_limits():
    codec = make_codec("topk", k=2, values="uint8")
    def rows(*sums):
        v = np.zeros((len(sums), 2), np.uint8)
        v[:, 0] = [min(s, 255) for s in sums]
        v[:, 1] = [s - min(s, 255) for s in sums]
        return topk(np.tile([0, 1], (len(sums), 1)), v)
    # at most 255 + k/2 = 256; at least 255 k/C - k/2 = 50
    assert codec.check(rows(256, 50), C) == []
    assert codec.check(rows(257), C) == ["uint8 values must sum to <= 255 + k/2 per row, found 257"]
    assert codec.check(rows(49), C) == [
        "uint8 values of the top 2 of 10 classes must sum to >= 255 k/C - k/2 per row, found 49"]


def test_topk_float_row_sum_limits():
    codec = make_codec("topk", k=2, values="float32")
    idx = [[0, 1]]
    assert codec.check(topk(idx, np.array([[0.6, 0.4009]], np.float32)), C) == []
    assert codec.check(topk(idx, np.array([[0.6, 0.4011]], np.float32)), C) == [
        "values must sum to <= 1 + 1e-3 per row, found 1.0011"]
    assert codec.check(topk(idx, np.array([[0.1, 0.0991]], np.float32)), C) == []   # k/C - 1e-3 = 0.199
    assert codec.check(topk(idx, np.array([[0.1, 0.0989]], np.float32)), C) == [
        "the top 2 of 10 classes must hold >= k/C - 1e-3 of the mass per row, found 0.1989"]


@pytest.mark.parametrize("values", ["float16", "float32", "uint8"])
def test_topk_decode_spreads_the_rest_evenly(values):
    codec = make_codec("topk", k=2, values=values)
    p = np.array([[0.5, 0.0, 0.3, 0.05, 0.05, 0.05, 0.05]])
    decoded = codec.decode(codec.encode(p), 7)
    expected = np.array([[0.5, 0.04, 0.3, 0.04, 0.04, 0.04, 0.04]])
    np.testing.assert_allclose(decoded, expected, atol={"uint8": 2e-3, "float16": 1e-4, "float32": 1e-6}[values])
    # all classes kept: the decode is the stored row, renormalised
    full = make_codec("topk", k=7, values="float32")
    np.testing.assert_allclose(full.decode(full.encode(p), 7), p / p.sum(), rtol=1e-6)


def test_topk_settings_and_limits_say_what_is_allowed():
    with pytest.raises(CodecError) as e:
        make_codec("topk", k=2, values="int8")
    assert str(e.value) == "topk values must be one of float32, float16, uint8, got 'int8'"
    codec = make_codec("topk", k=2)
    assert set(codec.layout(5, 65536)) == {"topk_index", "topk_prob"}       # uint16 indices reach 65535
    with pytest.raises(CodecError) as e:
        codec.layout(5, 65537)
    assert str(e.value) == "topk stores uint16 indices, so C must be <= 65536, got 65537"
    with pytest.raises(CodecError) as e:                                     # (M, N, C): C is the last axis
        make_codec("topk", k=4).encode(np.full((2, 5, 3), 1 / 3))
    assert str(e.value) == "topk k = 4 exceeds the number of classes 3"


def test_topk_from_dense_reads_k_however_h5py_returns_it():
    topk_class = type(make_codec("topk", k=1))
    for k in (3, np.int64(3), np.array(3), np.array([3])):
        codec = topk_class.from_dense({"k": k}, {"topk_prob": np.zeros((1, 3), np.float32)})
        assert codec.k == 3 and codec.values == "float32"
    assert topk_class.from_dense({"k": 2}, object()).values == "float16"    # no datasets to look at: the default
    with pytest.raises(CodecError) as e:
        topk_class.from_dense({}, {})
    assert str(e.value) == "codec topk needs the /dense attribute k (an integer >= 1)"


@pytest.mark.parametrize("values", ["float16", "float32", "uint8"])
def test_topk_encode_breaks_ties_by_the_lower_class_and_stores_its_value_type(values):
    rng = np.random.default_rng(0)
    p = rng.choice([0.1, 0.2, 0.3], size=(4, 1000))
    p /= p.sum(axis=-1, keepdims=True)
    stored = make_codec("topk", k=50, values=values).encode(p)
    assert stored["topk_prob"].dtype == np.dtype({"float16": "<f2", "float32": "<f4", "uint8": "u1"}[values])
    assert stored["topk_index"].dtype == np.dtype("<u2")
    for row, index in zip(p, stored["topk_index"]):
        top = np.flatnonzero(row == row.max())[:50]                          # ascending class index
        assert list(index) == list(top)


def test_quantize_unit_clips_both_ends_before_rounding():
    from ladd_format.codecs.base import quantize_unit
    got = quantize_unit(np.array([-0.5, 0.0, 0.3, 0.5, 1.0, 1.5, 2.5], np.float32))
    assert got.dtype == np.uint8
    assert got.tolist() == [0, 0, 77, 128, 255, 255, 255]     # floor(255 p + 0.5) of p clipped to [0, 1]


def test_codec_text_syntax_errors_say_exactly_what_is_wrong():
    from ladd_format.codecs import codec_names, parse_codec_config
    cases = {
        '{"k": 2': "codec JSON does not parse: Expecting ',' delimiter at character 7",
        '{"k": 2}': f"a codec needs a name; known: {', '.join(codec_names())}",
        "topk:k": "codec parameters are KEY=VALUE separated by commas, got 'k' in 'topk:k'",
        "topk:=3": "codec parameters are KEY=VALUE separated by commas, got '=3' in 'topk:=3'",
        "topk:k=": "codec parameters are KEY=VALUE separated by commas, got 'k=' in 'topk:k='",
        "topk:k=2,k=3": "codec parameter 'k' given twice in 'topk:k=2,k=3'",
        ":k=2": f"a codec needs a name; known: {', '.join(codec_names())}",
    }
    for text, message in cases.items():
        with pytest.raises(CodecError) as e:
            parse_codec_config(text)
        assert str(e.value) == message, text
    assert ", " in ", ".join(codec_names()) and len(codec_names()) >= 4
    # the first "=" splits: the value keeps any later one (and is then a string, not an integer)
    assert parse_codec_config("topk:k=2=3") == {"name": "topk", "k": "2=3"}


@pytest.mark.parametrize("name,dtype", [("float32", np.float32), ("float16", np.float16)])
def test_float_codecs_store_their_own_dtype_and_report_nan(name, dtype):
    codec = make_codec(name)
    p = np.array([[0.25, 0.75]])
    stored = codec.encode(p)
    assert stored["probs"].dtype == dtype
    bad = stored["probs"].copy()
    bad[0, 0] = np.nan
    problems = codec.check({"probs": bad}, 2)
    assert problems[0] == "1 values are NaN or infinite", problems


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_value_counts_as_zero_in_the_row_sum(bad):
    """[bad, 0]: one non-finite value, and the row (with it read as 0) sums to 0, off by 1."""
    problems = make_codec("float32").check({"probs": np.array([[bad, 0.0]], np.float32)}, 2)
    assert len(problems) == 2, problems
    assert problems[0] == "1 values are NaN or infinite"
    assert problems[1].startswith("rows must sum to 1 within ") and problems[1].endswith("worst row is off by 1")


def test_float_values_rules_count_and_bound_exactly():
    codec = make_codec("float32")
    assert codec.check({"probs": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)}, 2) == []      # 0 and 1 are inside
    problems = codec.check({"probs": np.array([[np.nan, np.inf, 0.5]], np.float32)}, 3)
    assert problems[0] == "2 values are NaN or infinite"
    problems = codec.check({"probs": np.array([[1.5, -0.5]], np.float32)}, 2)
    assert problems == ["values must lie in [0, 1], found min -0.5, max 1.5"]                 # finite: no NaN line
    problems = codec.check({"probs": np.array([[1.25, 0.0]], np.float32)}, 2)
    assert problems[0] == "values must lie in [0, 1], found min 0, max 1.25"


def test_codec_repr_names_the_class_and_its_settings():
    assert repr(make_codec("topk", k=3, values="uint8")) == "TopKCodec(k=3, values='uint8')"
    assert repr(make_codec("uint8")) == "Uint8Codec()"


def test_codec_from_file_refusals_word_for_word():
    from ladd_format.codecs import codec_from_file

    class Damaged:
        def get(self, name):
            raise OSError("object header damaged")
    cases = [({}, None, "/dense attribute 'codec' is missing"),
             ({"codec": b"to\xffpk"}, {}, "unknown codec 'to\ufffdpk'"),
             ({"codec": np.int64(3)}, {}, "/dense attribute 'codec' must be a string, got np.int64(3)"),
             ({"codec": "topk", "k": 2}, Damaged(), "codec 'topk' cannot be read from /dense: object header damaged")]
    for attrs, group, message in cases:
        with pytest.raises(CodecError) as e:
            codec_from_file(attrs, group)
        assert str(e.value).startswith(message), (str(e.value), message)
    assert codec_from_file({"codec": b"topk", "k": 2}, {}).k == 2                   # bytes read as UTF-8


def test_codec_settings_refusals_word_for_word():
    with pytest.raises(CodecError) as e:
        make_codec("topk", k=2, size=3, depth=1)
    assert str(e.value).startswith("codec 'topk' takes no parameter 'depth', 'size'; its form is topk:k=K,")
    with pytest.raises(CodecError) as e:
        make_codec("topk", k="many")
    assert str(e.value) == "topk needs an integer k >= 1, got 'many'"


def test_a_non_finite_value_beside_a_one_is_only_the_non_finite_problem():
    """[NaN, 1]: the NaN reads as 0, so the row is [0, 1]: 1 is inside [0, 1] and the row sums to 1."""
    assert make_codec("float32").check({"probs": np.array([[np.nan, 1.0]], np.float32)}, 2) == [
        "1 values are NaN or infinite"]


def test_a_plug_in_codec_that_rejects_its_settings_is_one_codec_error(monkeypatch):
    from ladd_format.codecs import base

    class Strict(base.Codec):
        name = "strict"

        def __init__(self, level: int = 1):
            if level > 3:
                raise ValueError(f"level {level} > 3")
    monkeypatch.setitem(base._REGISTRY, "strict", Strict)
    with pytest.raises(CodecError) as e:
        make_codec("strict", level=5)
    assert str(e.value) == "bad configuration for codec 'strict': level 5 > 3"
