"""Spec section 6: the dense-label codecs."""

import ast
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ladd_format.codecs import (codec_class, codec_from_file, codec_names, codec_usage, make_codec, parse_codec,
                                parse_codec_config)
from ladd_format.errors import CodecError
from ladd_format.reader import open_dla

from conftest import softmax, write_dla

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


# -- one value per codec: text / JSON form, rebuilt from a file, nothing else knows its name ------

# a strategy of configurations per registered codec; a new codec must add its own here
CONFIG_STRATEGIES = {
    "float32": st.just({}),
    "float16": st.just({}),
    "uint8": st.just({}),
    "topk": st.fixed_dictionaries({"k": st.integers(1, 1000),
                                   "values": st.sampled_from(["float32", "float16", "uint8"])}),
}
any_codec = st.sampled_from(sorted(CONFIG_STRATEGIES)).flatmap(
    lambda name: CONFIG_STRATEGIES[name].map(lambda config: make_codec(name, **config)))


def test_every_registered_codec_has_a_config_strategy():
    assert sorted(CONFIG_STRATEGIES) == codec_names()


@settings(max_examples=80, deadline=None)
@given(codec=any_codec)
def test_text_and_json_forms_round_trip_for_every_codec(codec):
    text = codec.text()
    assert parse_codec(text) == codec and parse_codec(f"  {text}  ") == codec
    assert parse_codec(json.dumps(codec.config())) == codec
    assert parse_codec(codec.config()) == codec and parse_codec(codec) is codec
    assert parse_codec_config(text) == codec.config()
    assert "\n" not in text and " " not in text
    assert set(codec.dense_attrs()) == set(type(codec).dense_attr_names)
    assert codec.label() and "/" not in codec.label()


def test_text_form_examples():
    assert parse_codec("float32") == make_codec("float32")
    assert parse_codec("topk:k=50,values=float16") == make_codec("topk", k=50, values="float16")
    assert parse_codec("topk") == make_codec("topk")               # parameters left out take their defaults
    assert parse_codec_config("topk:k=5") == {"name": "topk", "k": 5}
    assert make_codec("topk", k=3, values="uint8").text() == "topk:k=3,values=uint8"
    assert make_codec("topk", k=3, values="uint8").label() == "topk3-uint8"
    assert make_codec("uint8").label() == "uint8"
    assert codec_usage() == "float16, float32, topk:k=K,values=float16|float32|uint8, uint8"


@pytest.mark.parametrize("text,match", [
    ("", "needs a name"), ("bfloat8", "unknown codec 'bfloat8'"), ("topk:k=abc", "integer k"),
    ("topk:k=2.5", "integer k"), ("topk:k=0", "k >= 1"), ("topk:k", "KEY=VALUE"), ("topk:k=3,k=4", "twice"),
    ("topk:values=int8", "values must be one of"), ("topk:kk=3", "takes no parameter 'kk'"),
    ("float32:k=3", "takes no parameter 'k'"), ("{bad json", "does not parse"), ('{"k": 3}', "needs a name"),
    ("[1, 2]", "unknown codec"), ('{"name": "topk", "k": [3]}', "integer k"),
    ('{"name": "topk", "k": true}', "integer k"), ("topk:k=3,values=float16\nuint8", "values must be one of"),
])
def test_parse_errors_are_one_line_codec_errors(text, match):
    with pytest.raises(CodecError, match=match) as info:
        parse_codec(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name,config", CONFIGS)
def test_from_dense_rebuilds_the_codec_from_a_written_file(tmp_path, name, config):
    codec = make_codec(name, **config)
    path = write_dla(tmp_path / "f.dla.h5", c=10, codec=name, codec_config=config)
    with h5py.File(path, "r") as f:
        g = f["dense"]
        assert type(codec).from_dense(dict(g.attrs), g) == codec
        assert codec_from_file(g.attrs, g) == codec
        assert {key: g.attrs[key] for key in type(codec).dense_attr_names} == codec.dense_attrs()
        assert codec.values_dataset in g and set(codec.layout(9, 10)) <= set(g)
    with open_dla(path) as f:
        assert f.codec == codec


def test_every_registered_codec_is_in_the_file_round_trip():
    assert sorted({name for name, _ in CONFIGS}) == codec_names()


class _Dataset:
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.shape = (1, 9, 3)


@pytest.mark.parametrize("attrs,datasets,match", [
    ({}, {}, "'codec' is missing"),
    ({"codec": 5}, {}, "must be a string"),
    ({"codec": np.array([1, 2])}, {}, "must be a string"),
    ({"codec": "bfloat8"}, {}, "unknown codec"),
    ({"codec": b"topk"}, {}, "needs the /dense attribute k"),
    ({"codec": "topk", "k": "three"}, {}, "integer"),
    ({"codec": "topk", "k": np.array([3, 4])}, {}, "integer"),
    ({"codec": "topk", "k": 2.5}, {}, "integer"),
    ({"codec": "topk", "k": True}, {}, "integer"),
    ({"codec": "topk", "k": np.int64(0)}, {}, "k >= 1"),
])
def test_codec_from_file_refuses_malformed_dense_attributes(attrs, datasets, match):
    with pytest.raises(CodecError, match=match) as info:
        codec_from_file(attrs, datasets)
    assert "\n" not in str(info.value)


def test_codec_from_file_takes_the_value_type_from_the_stored_dataset():
    for values in ("float32", "float16", "uint8"):
        codec = codec_from_file({"codec": "topk", "k": np.int64(3)}, {"topk_prob": _Dataset(np.dtype(values))})
        assert codec == make_codec("topk", k=3, values=values)
    # an unusable dtype falls back to the default value type; the verifier then reports the dtype
    assert codec_from_file({"codec": "topk", "k": 3}, {"topk_prob": _Dataset("i4")}) == make_codec("topk", k=3)
    assert codec_class("uint8").from_dense({"codec": "uint8"}, {}) == make_codec("uint8")


# modules outside ladd_format/codecs/ must not name a codec (a new codec is one new file). Codec
# names that are also numpy dtype names (float32, float16, uint8) cannot be told apart from dtypes,
# so the scan looks for the others (today: topk), as string constants equal to or starting with one.
ROOT = Path(__file__).resolve().parents[1]
# (path relative to the repository, string constant): why it cannot be avoided
ALLOWED_CODEC_STRINGS: dict[tuple[str, str], str] = {
    ("ladd_format/demo.py", "topk:k=3,values=uint8"):
        "the demo's list of codec values to compare is data (the README/RESULTS tables), not a branch on a name",
    ("cli/main.py", "topk_values"):
        "the deprecated --topk-values flag of convert: its parameter name maps to ConvertOptions.codec",
}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def codec_name_strings(path: Path, names: list[str]) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstring_nodes(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and any(node.value.startswith(name) for name in names)]


@pytest.mark.mutation_skip
def test_no_module_outside_the_codecs_package_names_a_codec():
    names = [name for name in codec_names() if not hasattr(np, name)]
    assert "topk" in names
    files = [p for p in sorted((ROOT / "ladd_format").rglob("*.py")) if "codecs" not in p.relative_to(ROOT).parts]
    files += sorted((ROOT / "cli").glob("*.py"))
    assert len(files) > 20
    found = [f"{path.relative_to(ROOT)}:{line}: {value!r}" for path in files
             for line, value in codec_name_strings(path, names)
             if (str(path.relative_to(ROOT)), value) not in ALLOWED_CODEC_STRINGS]
    assert not found, "codec names outside ladd_format/codecs/ (use the Codec interface):\n" + "\n".join(found)


def test_the_codec_name_scan_sees_strings_but_not_docstrings(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('"""topk in a docstring."""\n\n\ndef f(c):\n    """topk"""\n    # topk\n'
                   '    return c == "topk" or f"topk{c}" or "x"\n')
    assert codec_name_strings(src, ["topk"]) == [(7, "topk"), (7, "topk")]
