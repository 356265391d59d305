"""The spec text is sufficient: read every vector of ``spec/vectors/`` following ``spec/dla-v1.md``
alone, with plain ``h5py`` + ``numpy`` (+ ``json``, ``hashlib``, ``math``).

Nothing here imports ``ladd_format`` except the two tests at the end that check the package's reader
and verifier against the same vectors (they import it inside the test function). ``re``, ``pathlib``,
``subprocess``, ``sys`` and ``pytest`` are test plumbing only (parsing the spec's table, locating files,
running the generator).

Regenerate the vectors with ``.venv/bin/python spec/vectors/make_vectors.py``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "spec" / "dla-v1.md"
VECTORS = ROOT / "spec" / "vectors"

CODEC_VECTORS = ["float32", "float16", "uint8", "topk_float16", "topk_uint8"]
#: the vectors of format 1.1 (kept as they are in 1.2 and 1.3, spec section 9), the stream vectors of
#: 1.2 (4.7; kept as they are in 1.3) and the stream vector of 1.3 with a low-rank tail (4.7 /stream/tail)
VECTORS_1_1 = CODEC_VECTORS + ["plain", "float_images", "nul_strings"]
STREAM_VECTORS_1_2 = ["stream_cutmix_topk_uint8", "stream_mixup_logits_float16", "stream_pool_none_uint8"]
TAIL_VECTORS = ["stream_cutmix_topk_tail"]
STREAM_VECTORS = STREAM_VECTORS_1_2 + TAIL_VECTORS
ALL_VECTORS = VECTORS_1_1 + STREAM_VECTORS
#: each vector's format_version
VERSIONS = {**{name: "1.1" for name in VECTORS_1_1}, **{name: "1.2" for name in STREAM_VECTORS_1_2},
            **{name: "1.3" for name in TAIL_VECTORS}}
DENSE_VECTORS = CODEC_VECTORS + ["float_images"]
LEGACY = "legacy_1_0"
INVALID = VECTORS / "invalid"
TOL = 1e-6


def invalid_manifest() -> list[dict]:
    return json.loads((INVALID / "expected.json").read_text())


def h5_path(name: str) -> Path:
    return VECTORS / f"{name}.dla.h5"


def expected(name: str) -> dict:
    return json.loads((VECTORS / f"{name}.expected.json").read_text())


def text(value) -> str:
    """A string attribute's value (h5py may hand back bytes, str or a 0-d array): section 2, the
    bytes up to the first NUL."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    return utf8(value).decode("utf-8")


def datasets(h5: h5py.File) -> dict[str, h5py.Dataset]:
    out = {}
    h5.visititems(lambda name, obj: out.__setitem__("/" + name, obj) if isinstance(obj, h5py.Dataset) else None)
    return out


def is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# ---------------------------------------------------------------------------------------------
# Spec section 5, implemented from the text.
def crop_length(length: int, ratio: float) -> int:
    """h = floor(R*H + 0.5) in IEEE-754 double precision."""
    return math.floor(float(ratio) * length + 0.5)


def axis_offsets(length: int, crop: int, n: int) -> list[int]:
    if n == 1:
        return [((length - crop) + 1) // 2]
    return [(2 * i * (length - crop) + (n - 1)) // (2 * (n - 1)) for i in range(n)]


def axis_offsets_float(length: int, crop: int, n: int) -> list[int]:
    """The floor(... + 0.5) form the spec states next to the integer form."""
    if n == 1:
        return [math.floor((length - crop) / 2 + 0.5)]
    return [math.floor(i * (length - crop) / (n - 1) + 0.5) for i in range(n)]


def spec_boxes(height: int, width: int, n: int, ratio: float) -> list[list[int]]:
    h, w = crop_length(height, ratio), crop_length(width, ratio)
    assert h >= 1 and w >= 1, "a file whose h or w is 0 is invalid"
    tops, lefts = axis_offsets(height, h, n), axis_offsets(width, w, n)
    return [[top, left, h, w] for top in tops for left in lefts]  # j = row * N + col, row along H


# ---------------------------------------------------------------------------------------------
# Spec section 6, decode column, implemented from the text (float64 arithmetic, float32 result).
def normalise_rows(q: np.ndarray, num_classes: int) -> np.ndarray:
    sums = q.sum(axis=-1, keepdims=True)
    zero = sums == 0
    return np.where(zero, 1.0 / num_classes, q / np.where(zero, 1.0, sums))


def spec_decode(dense: h5py.Group, num_classes: int) -> np.ndarray:
    codec = text(dense.attrs["codec"])
    if codec in ("float32", "float16"):
        return dense["probs"][()].astype(np.float32)
    if codec == "uint8":
        q = dense["probs"][()].astype(np.float64) / 255.0
        return normalise_rows(q, num_classes).astype(np.float32)
    if codec == "topk":
        index = dense["topk_index"][()].astype(np.int64)
        raw = dense["topk_prob"][()]
        v = raw.astype(np.float64) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float64)
        k = index.shape[-1]
        assert k == int(dense.attrs["k"])
        if k < num_classes:
            rest = np.maximum(0.0, 1.0 - v.sum(axis=-1, keepdims=True)) / (num_classes - k)
        else:
            rest = np.zeros(v.shape[:-1] + (1,))
        out = np.broadcast_to(rest, index.shape[:-1] + (num_classes,)).copy()
        np.put_along_axis(out, index, v, axis=-1)
        return normalise_rows(out, num_classes).astype(np.float32)
    raise AssertionError(f"codec {codec!r} is not in spec section 6")


def topk_select(row, k: int) -> list[int]:
    """The k largest p of a row, in descending order, ties: lower class index first."""
    return sorted(range(len(row)), key=lambda c: (-row[c], c))[:k]


def check_decode(name: str, codec: str) -> None:
    exp = expected(name)
    with h5py.File(h5_path(name), "r") as h5:
        dense = h5["dense"]
        assert text(dense.attrs["codec"]) == codec
        c = int(h5.attrs["num_classes"])
        q = spec_decode(dense, c)
    want = np.asarray(exp["dense"]["decoded"], dtype=np.float64)
    m, p = exp["num_images"], exp["dense"]["n"] ** 2
    assert q.dtype == np.float32 and q.shape == (m, p, c) == want.shape
    assert np.max(np.abs(q.astype(np.float64) - want)) <= TOL
    if codec in ("uint8", "topk"):  # renormalised codecs: every decoded row sums to 1
        assert np.max(np.abs(q.astype(np.float64).sum(axis=-1) - 1.0)) <= 1e-6


# ---------------------------------------------------------------------------------------------
def test_vector_set_is_complete_and_small():
    assert (VECTORS / "geometry.json").is_file()
    present = sorted(p.name[: -len(".dla.h5")] for p in VECTORS.glob("*.dla.h5"))
    assert present == sorted(ALL_VECTORS + [LEGACY])
    for name in ALL_VECTORS + [LEGACY]:
        assert (VECTORS / f"{name}.expected.json").is_file()
        assert h5_path(name).stat().st_size < 100_000
    assert sorted(p.name for p in INVALID.glob("*.dla.h5")) == sorted(v["file"] for v in invalid_manifest())
    assert sum(p.stat().st_size for p in VECTORS.rglob("*") if p.is_file()) < 1_700_000


@pytest.mark.mutation_skip
def test_spec_readers_import_only_h5py_numpy_json_hashlib_math():
    """Module-level imports of this file: the spec readers need nothing from ladd_format."""
    tree = ast.parse(Path(__file__).read_text())
    plumbing = {"__future__", "ast", "re", "subprocess", "sys", "pathlib", "pytest"}
    for node in tree.body:
        if isinstance(node, ast.Import):
            mods = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mods = [node.module.split(".")[0]]
        else:
            continue
        for mod in mods:
            assert mod in {"h5py", "numpy", "json", "hashlib", "math"} | plumbing, mod


def test_geometry_formula_matches_vectors():
    cases = json.loads((VECTORS / "geometry.json").read_text())
    assert len(cases) >= 10
    for case in cases:
        h, w, n, r = case["height"], case["width"], case["n"], case["ratio"]
        assert spec_boxes(h, w, n, r) == case["boxes"], case
        assert len(case["boxes"]) == n * n
        for length, crop in ((h, crop_length(h, r)), (w, crop_length(w, r))):
            assert axis_offsets(length, crop, n) == axis_offsets_float(length, crop, n)
    # the cases the brief asks for are there
    keys = {(c["height"], c["width"], c["n"], c["ratio"]) for c in cases}
    for key in [(128, 128, 5, 0.625), (32, 32, 5, 0.625), (224, 224, 5, 0.625), (64, 64, 3, 0.5),
                (30, 30, 1, 0.5), (48, 64, 5, 0.625), (128, 128, 7, 0.885)]:
        assert key in keys
    # "computed in IEEE-754 double precision" matters: 0.58 * 25 = 14.499999999999998 -> 14
    assert spec_boxes(25, 25, 5, 0.58)[0][2] == 14


def test_geometry_table_of_spec_section_5():
    section = SPEC.read_text().split("## 5.")[1].split("## 6.")[0]
    rows = re.findall(r"^\| (\d+) x (\d+) \| (\d+) \| ([0-9.]+) \| (\d+) x (\d+) \| ([0-9, ]+?)(?: \(.*\))? \|$",
                      section, flags=re.M)
    assert len(rows) == 5, rows
    cases = {(c["height"], c["width"], c["n"], c["ratio"]): c["boxes"]
             for c in json.loads((VECTORS / "geometry.json").read_text())}
    for hh, ww, n, r, ch, cw, offs in rows:
        hh, ww, n, r, ch, cw = int(hh), int(ww), int(n), float(r), int(ch), int(cw)
        offsets = [int(v) for v in offs.split(",")]
        assert (crop_length(hh, r), crop_length(ww, r)) == (ch, cw)
        assert axis_offsets(hh, ch, n) == offsets and axis_offsets(ww, cw, n) == offsets
        assert cases[(hh, ww, n, r)] == spec_boxes(hh, ww, n, r)


@pytest.mark.parametrize("name", DENSE_VECTORS)
def test_dense_boxes_attribute_follows_geometry(name):
    exp = expected(name)
    with h5py.File(h5_path(name), "r") as h5:
        _, _, height, width = h5["images"].shape
        a = h5["dense"].attrs
        stored = np.asarray(a["boxes"])
        assert stored.dtype == np.int32 and stored.shape == (int(a["n"]) ** 2, 4)
        assert stored.tolist() == spec_boxes(height, width, int(a["n"]), float(a["ratio"]))
        assert stored.tolist() == exp["dense"]["boxes"]


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_root_attributes(name):
    exp = expected(name)
    with h5py.File(h5_path(name), "r") as h5:
        a = h5.attrs
        assert text(a["format"]) == "ladd-dla"
        version = re.fullmatch(r"(\d+)\.(\d+)", text(a["format_version"]))
        assert version and int(version.group(1)) == 1
        assert is_integer(a["num_classes"]) and int(a["num_classes"]) >= 1
        c = int(a["num_classes"])
        assert c == exp["num_classes"] == exp["root"]["num_classes"]
        if "class_names" in a:
            names = [text(v) for v in np.atleast_1d(a["class_names"])]
            assert len(names) == c and names == exp["root"]["class_names"]
        if "ipc" in a:
            assert is_integer(a["ipc"]) and int(a["ipc"]) >= 1 and int(a["ipc"]) == exp["root"]["ipc"]
        for key in ("source_dataset", "distillation"):
            if key in exp["root"]:
                assert text(a[key]) == exp["root"][key]
        assert set(a.keys()) == set(exp["root"])


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_fletcher32_and_allowed_filters(name):
    allowed = {1, 2, 3}  # HDF5 filter ids: deflate (gzip), shuffle, fletcher32
    exp = expected(name)["datasets"]
    with h5py.File(h5_path(name), "r") as h5:
        found = datasets(h5)
        assert set(found) == set(exp)
        for path, ds in found.items():
            assert ds.chunks is not None, path
            assert ds.fletcher32, path
            plist = ds.id.get_create_plist()
            ids = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
            assert 3 in ids and ids <= allowed, (path, ids)
            assert list(ds.chunks) == exp[path]["chunks"]
            ds[()]  # every chunk reads back: its fletcher32 matches
        m, k, h, w = h5["images"].shape
        assert h5["images"].chunks == (1, k, h, w)


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_numeric_datasets_little_endian_c_order(name):
    exp = expected(name)["datasets"]
    with h5py.File(h5_path(name), "r") as h5:
        for path, ds in datasets(h5).items():
            assert ds.dtype.str[0] in "<|", (path, ds.dtype.str)
            assert ds.dtype.str == exp[path]["dtype"] and list(ds.shape) == exp[path]["shape"]


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_sha256_rule(name):
    exp = expected(name)["datasets"]
    with h5py.File(h5_path(name), "r") as h5:
        for path, ds in datasets(h5).items():
            data = ds[()]
            raw = np.ascontiguousarray(data.astype(data.dtype.newbyteorder("<"))).tobytes()
            assert len(raw) == data.size * data.dtype.itemsize
            digest = hashlib.sha256(raw).hexdigest()
            attr = text(ds.attrs["sha256"])
            assert re.fullmatch(r"[0-9a-f]{64}", attr), path
            assert attr == digest == exp[path]["sha256"], path


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_images_and_labels(name):
    exp = expected(name)
    with h5py.File(h5_path(name), "r") as h5:
        images = h5["images"][()]
        space = text(h5["images"].attrs["space"])
        labels = h5["labels"][()]
        c = int(h5.attrs["num_classes"])
    assert images.ndim == 4 and images.shape[0] == exp["num_images"] >= 1
    assert list(images.shape[1:]) == exp["image_shape"]
    assert images.dtype.str == exp["image_dtype"] and space == exp["space"]
    if images.dtype == np.uint8:
        assert space == "pixel255"
    else:
        assert images.dtype in (np.float16, np.float32) and space in ("pixel01", "normalized", "zca")
    want = np.asarray(exp["images"], dtype=np.float64).astype(images.dtype)
    assert np.array_equal(images, want)  # every pixel, exactly
    assert hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest() == exp["images_sha256"]
    assert labels.dtype.kind in "iu" and labels.dtype.itemsize <= 8
    assert labels.shape == (images.shape[0],)
    assert labels.tolist() == exp["labels"] and all(0 <= v < c for v in labels.tolist())


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_normalization(name):
    exp = expected(name)["normalization"]
    with h5py.File(h5_path(name), "r") as h5:
        k = h5["images"].shape[1]
        g = h5["normalization"]
        mean, std = np.asarray(g.attrs["mean"]), np.asarray(g.attrs["std"])
    assert mean.dtype == np.float64 and std.dtype == np.float64
    assert mean.shape == std.shape == (k,)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)
    assert mean.tolist() == exp["mean"] and std.tolist() == exp["std"]


@pytest.mark.parametrize("name", ["plain", "float_images"])
def test_soft_labels(name):
    exp = expected(name)
    with h5py.File(h5_path(name), "r") as h5:
        ds = h5["soft_labels"]
        kind, values = text(ds.attrs["kind"]), ds[()]
        m, c = h5["images"].shape[0], int(h5.attrs["num_classes"])
        assert ("dense" in h5) == (exp["dense"] is not None)
    assert kind == exp["soft_labels"]["kind"] and values.dtype.str == exp["soft_labels"]["dtype"]
    assert values.shape == (m, c) and values.dtype in (np.float16, np.float32)
    assert np.array_equal(values, np.asarray(exp["soft_labels"]["values"]).astype(values.dtype))
    v = values.astype(np.float64)
    assert np.all(np.isfinite(v))
    if kind == "probs":
        assert v.min() >= 0 and v.max() <= 1 and np.max(np.abs(v.sum(axis=-1) - 1)) <= 1e-3
    else:
        assert kind == "logits"


def test_plain_set_has_no_dense_group():
    with h5py.File(h5_path("plain"), "r") as h5:
        assert "dense" not in h5
    assert expected("plain")["dense"] is None


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_provenance(name):
    exp = expected(name)["provenance"]
    with h5py.File(h5_path(name), "r") as h5:
        a = h5["provenance"].attrs
        got = {key: text(a[key]) for key in a}
    for key in ("created", "tool", "converter", "inputs"):
        assert key in got
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", got["created"])
    inputs = json.loads(got["inputs"])
    assert isinstance(inputs, list)
    assert all(set(i) == {"name", "size", "sha256"} for i in inputs)
    assert got == exp


@pytest.mark.parametrize("name", DENSE_VECTORS)
def test_dense_attributes_and_datasets(name):
    exp = expected(name)["dense"]
    with h5py.File(h5_path(name), "r") as h5:
        m, c = h5["images"].shape[0], int(h5.attrs["num_classes"])
        g = h5["dense"]
        a = g.attrs
        assert is_integer(a["n"]) and int(a["n"]) == exp["n"] >= 1
        assert np.asarray(a["ratio"]).dtype == np.float64 and float(a["ratio"]) == exp["ratio"]
        assert 0 < float(a["ratio"]) <= 1
        assert text(a["resize"]) == "bilinear-antialias"
        assert np.asarray(a["temperature"]).dtype == np.float64
        assert float(a["temperature"]) == exp["temperature"] > 0
        codec = text(a["codec"])
        assert codec == exp["codec"]
        assert text(g["labeler"].attrs["arch"]) == exp["labeler"]["arch"]
        p = int(a["n"]) ** 2
        names = {key for key in g if isinstance(g[key], h5py.Dataset)}
        if codec in ("float32", "float16", "uint8"):
            assert names == {"probs"} and "k" not in a
            assert g["probs"].shape == (m, p, c) and g["probs"].dtype == np.dtype(codec)
        else:
            assert codec == "topk" and names == {"topk_index", "topk_prob"}
            k = int(a["k"])
            assert is_integer(a["k"]) and 1 <= k <= c and k == exp["k"]
            assert g["topk_index"].shape == g["topk_prob"].shape == (m, p, k)
            assert g["topk_index"].dtype == np.uint16
            assert g["topk_prob"].dtype in (np.float32, np.float16, np.uint8)
            assert g["topk_prob"].dtype.str == exp["value_dtype"]


def test_decode_float32_codec():
    check_decode("float32", "float32")
    check_decode("float_images", "float32")


def test_decode_float16_codec():
    check_decode("float16", "float16")


def test_decode_uint8_codec():
    check_decode("uint8", "uint8")


@pytest.mark.parametrize("name", ["topk_float16", "topk_uint8"])
def test_decode_topk_codec(name):
    check_decode(name, "topk")


@pytest.mark.parametrize("name", DENSE_VECTORS)
def test_encode_rules_reproduce_stored_values(name):
    """Section 6, encode column, applied to the source probabilities gives the stored arrays."""
    exp = expected(name)["dense"]
    p = np.asarray(exp["source_probs"], dtype=np.float64)
    with h5py.File(h5_path(name), "r") as h5:
        g = h5["dense"]
        codec = text(g.attrs["codec"])
        stored = {key: g[key][()] for key in g if isinstance(g[key], h5py.Dataset)}

    def encode_values(values, dtype):
        if dtype == np.uint8:
            return np.floor(255.0 * values + 0.5).astype(np.uint8)
        return values.astype(dtype)

    if codec == "topk":
        k = exp["k"]
        index = np.asarray([[topk_select(row, k) for row in img] for img in p.tolist()])
        assert np.array_equal(stored["topk_index"], index)
        assert index.tolist() == exp["topk_index"]
        top = np.take_along_axis(p, index, axis=-1)
        assert np.array_equal(stored["topk_prob"], encode_values(top, stored["topk_prob"].dtype))
    else:
        assert np.array_equal(stored["probs"], encode_values(p, np.dtype(codec)))


@pytest.mark.parametrize("name,k", [("topk_float16", 3), ("topk_uint8", 2)])
def test_topk_tie_rule(name, k):
    """Ties: lower class index first (rows with exact ties in p, written out by hand here)."""
    by_hand = {
        3: {(0, 0): [0, 1, 2], (1, 4): [1, 3, 0], (2, 8): [0, 1, 2], (3, 2): [2, 0, 1], (3, 7): [0, 3, 1]},
        2: {(0, 0): [0, 1], (1, 4): [1, 3], (2, 8): [0, 1], (3, 2): [2, 0], (3, 7): [0, 3]},
    }[k]
    exp = expected(name)["dense"]
    ties = {(t["image"], t["sub"]): t["p"] for t in exp["tie_rows"]}
    assert set(ties) == set(by_hand)
    with h5py.File(h5_path(name), "r") as h5:
        index = h5["dense"]["topk_index"][()]
        values = h5["dense"]["topk_prob"][()].astype(np.float64)
    for (i, j), want in by_hand.items():
        assert topk_select(ties[(i, j)], k) == want
        assert index[i, j].tolist() == want
    # every row: values in descending order (encoding is monotone, so ties in p stay ties)
    assert np.all(np.diff(values, axis=-1) <= 0)


@pytest.mark.parametrize("name", DENSE_VECTORS)
def test_stored_values_within_codec_tolerance(name):
    """Section 6, second table."""
    with h5py.File(h5_path(name), "r") as h5:
        g = h5["dense"]
        c = int(h5.attrs["num_classes"])
        codec = text(g.attrs["codec"])
        stored = {key: g[key][()] for key in g if isinstance(g[key], h5py.Dataset)}
    if codec in ("float32", "float16"):
        v = stored["probs"].astype(np.float64)
        tol = 1e-3 if codec == "float32" else 4e-3
        assert np.all(np.isfinite(v)) and v.min() >= 0 and v.max() <= 1
        assert np.max(np.abs(v.sum(axis=-1) - 1)) <= tol
    elif codec == "uint8":
        s = stored["probs"].astype(np.int64).sum(axis=-1)
        assert np.max(np.abs(s - 255)) <= c / 2
    else:
        index, raw = stored["topk_index"].astype(np.int64), stored["topk_prob"]
        k = index.shape[-1]
        assert index.max() < c
        assert np.all(np.sort(index, axis=-1)[..., 1:] != np.sort(index, axis=-1)[..., :-1])
        if raw.dtype == np.uint8:
            assert raw.astype(np.int64).sum(axis=-1).max() <= 255 + k / 2
        else:
            v = raw.astype(np.float64)
            assert np.all(np.isfinite(v)) and v.min() >= 0 and v.max() <= 1
            assert v.sum(axis=-1).max() <= 1 + 1e-3


# ---------------------------------------------------------------------------------------------
# Spec sections 2.1 and 2.2, implemented from the text.
def framed(data: bytes) -> bytes:
    """F(b): the 8-byte little-endian length of b, then b."""
    return len(data).to_bytes(8, "little") + data


def canonical_type(dtype: np.dtype) -> str:
    if h5py.check_string_dtype(dtype) is not None:
        return "string"
    assert dtype.kind in "iuf", dtype
    return {"i": "int", "u": "uint", "f": "float"}[dtype.kind] + str(8 * dtype.itemsize)


def canonical_shape(shape) -> bytes:
    return ",".join(str(n) for n in shape).encode("ascii")


def utf8(value) -> bytes:
    """A string's value as bytes: section 2, up to the first NUL (h5py keeps what follows one)."""
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return raw.split(b"\0")[0]


def spec_root_digest(h5: h5py.File, content: bool = False) -> str:
    """Section 2.1's digest of the canonical form; ``content``: the content digest, the same form
    without the records of /provenance and of what lies under it."""
    paths = []
    h5.visit(lambda name: paths.append("/" + name))
    if content:
        paths = [p for p in paths if p != "/provenance" and not p.startswith("/provenance/")]
    out = hashlib.sha256()
    for path in ["/"] + sorted(paths, key=lambda p: p.encode("utf-8")):
        obj = h5[path]
        if isinstance(obj, h5py.Dataset):
            out.update(framed(b"object") + framed(path.encode("utf-8")) + framed(b"dataset")
                       + framed(canonical_type(obj.dtype).encode()) + framed(canonical_shape(obj.shape)))
        else:
            out.update(framed(b"object") + framed(path.encode("utf-8")) + framed(b"group"))
        for name in sorted(obj.attrs, key=lambda n: n.encode("utf-8")):
            if path == "/" and name == "root_sha256":
                continue
            aid = obj.attrs.get_id(name)
            kind = canonical_type(aid.dtype)
            value = obj.attrs[name]
            if kind == "string" and aid.shape == ():
                payload = utf8(value)
            elif kind == "string":
                payload = b"".join(framed(utf8(v)) for v in value)
            else:
                payload = np.asarray(value).astype(np.asarray(value).dtype.newbyteorder("<")).tobytes()
            out.update(framed(b"attribute") + framed(name.encode("utf-8")) + framed(kind.encode())
                       + framed(canonical_shape(aid.shape)) + framed(payload))
    return out.hexdigest()


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_root_digest_recomputed_from_the_spec_text(name):
    with h5py.File(h5_path(name), "r") as h5:
        stored = text(h5.attrs["root_sha256"])
        assert re.fullmatch(r"[0-9a-f]{64}", stored)
        assert spec_root_digest(h5) == stored == expected(name)["root_sha256"]
        version = text(h5.attrs["format_version"])
        assert version == expected(name)["root"]["format_version"] == VERSIONS[name]


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_row_digests_recomputed_from_the_spec_text(name):
    with h5py.File(h5_path(name), "r") as h5:
        rows = h5["row_sha256"]
        listed = [text(v) for v in rows.attrs["datasets"]]
        codec_sets = []
        if "dense" in h5:
            codec_sets = ["/dense/probs"] if "probs" in h5["dense"] else ["/dense/topk_index", "/dense/topk_prob"]
        assert listed == ["/images", "/labels"] + (["/soft_labels"] if "soft_labels" in h5 else []) + codec_sets
        digests = rows[()]
        assert digests.dtype == np.uint8 and digests.shape == (h5["images"].shape[0], len(listed), 32)
        for column, path in enumerate(listed):
            data = h5[path][()]
            for i in range(data.shape[0]):
                row = np.ascontiguousarray(data[i].astype(data.dtype.newbyteorder("<")))
                assert hashlib.sha256(row.tobytes()).digest() == digests[i, column].tobytes(), (path, i)


@pytest.mark.parametrize("name", ALL_VECTORS + [LEGACY])
def test_content_digest_recomputed_from_the_spec_text(name):
    with h5py.File(h5_path(name), "r") as h5:
        content = spec_root_digest(h5, content=True)
        assert "provenance" in h5 and re.fullmatch(r"[0-9a-f]{64}", content)
        assert content == expected(name)["content_sha256"]
        assert content != spec_root_digest(h5)                    # /provenance is left out, nothing else


def test_content_digests_of_different_vectors_differ():
    """The vectors hold different data (outside /provenance they differ), so their content digests
    differ, although they share their provenance (converter, creation time, no inputs)."""
    digests = {name: expected(name)["content_sha256"] for name in ALL_VECTORS + [LEGACY]}
    assert len(set(digests.values())) == len(digests)
    created = {expected(name)["provenance"]["created"] for name in ALL_VECTORS}
    assert len(created) == 1


def test_string_values_end_at_the_first_nul():
    """Section 2: a fixed-length string's value is its bytes up to the first NUL. The nul_strings
    vector stores bytes after a NUL; its values, and the canonical form, stop at the NUL."""
    exp = expected("nul_strings")
    with h5py.File(h5_path("nul_strings"), "r") as h5:
        for case in exp["nul_strings"]:
            obj = h5[case["object"]]
            aid = obj.attrs.get_id(case["attribute"])
            info = h5py.check_string_dtype(aid.dtype)
            assert info is not None and info.length is not None       # fixed-length, as since 1.1
            raw = obj.attrs[case["attribute"]]
            stored = [bytes(v) for v in raw] if np.ndim(raw) else [bytes(raw)]
            want = case["stored"] if isinstance(case["stored"], list) else [case["stored"]]
            assert [v.decode("utf-8") for v in stored] == want
            assert any(b"\0" in v for v in stored)                     # bytes after a NUL are stored
            values = [text(v) for v in stored]
            assert values == (case["value"] if isinstance(case["value"], list) else [case["value"]])
            assert all("\0" not in v for v in values)
        assert [text(v) for v in h5.attrs["class_names"]] == exp["root"]["class_names"] == ["cat", "dog"]
        assert text(h5["images"].attrs["space"]) == exp["space"] == "pixel255"
        assert spec_root_digest(h5) == text(h5.attrs["root_sha256"])


def test_root_digest_catches_a_changed_attribute_value():
    """The spec's digest changes when one attribute value does (the invalid vector 12 shows it)."""
    with h5py.File(INVALID / "12-attribute-changed.dla.h5", "r") as h5:
        assert spec_root_digest(h5) != text(h5.attrs["root_sha256"])
    with h5py.File(INVALID / "13-row-changed.dla.h5", "r") as h5:
        assert spec_root_digest(h5) == text(h5.attrs["root_sha256"])   # only a row changed
        assert hashlib.sha256(h5["labels"][2:3].tobytes()).digest() != h5["row_sha256"][2, 1].tobytes()


def test_legacy_1_0_vector_has_no_digests():
    exp = expected(LEGACY)
    with h5py.File(h5_path(LEGACY), "r") as h5:
        assert text(h5.attrs["format_version"]) == "1.0" == exp["format_version"]
        assert "root_sha256" not in h5.attrs and "row_sha256" not in h5
        assert h5["labels"][()].tolist() == exp["labels"]
        assert hashlib.sha256(h5["images"][()].tobytes()).hexdigest() == exp["images_sha256"]


# ---------------------------------------------------------------------------------------------
# Spec 4.7 (the relabel stream), 5.1 (its records), 6 (its labels) and 2.4 (its limits), implemented
# from the text: an independent reader of /stream.
STREAM_REQUIRED = ("epochs", "batch_size", "mode", "crop_size", "resize", "mix", "kind", "codec", "temperature")
STREAM_LIMITS = {"E": 10_000, "NB": 2 ** 22, "batch": 2 ** 16, "batch_values": 2 ** 26, "Q": 2 ** 31,
                 "crop": 2 ** 16}
PER_BATCH_DATASETS = ("mix_box", "mix_lambda")


def stream_label_names(kind: str, codec: str) -> list[str]:
    """The label datasets of 4.7's table for ``kind``/``codec``, in the table's order."""
    if kind == "logits":
        return ["logits"]
    return ["topk_index", "topk_prob"] if codec == "topk" else ["probs"]


def stream_mix_names(mix: str) -> list[str]:
    return {"none": [], "cutmix": ["mix_partner", "mix_box"], "mixup": ["mix_partner", "mix_lambda"]}[mix]


class StreamBreak(Exception):
    """A /stream that breaks rule ``rule`` (16, 17 or 18) of section 8."""

    def __init__(self, rule: int, why: str):
        super().__init__(f"rule {rule}: {why}")
        self.rule = rule


def spec_read_stream(h5: h5py.File, rules_minor: int | None = None) -> dict:
    """Read and check /stream following 4.7, 2.4 and 6 alone; returns the declaration, the arrays,
    the batch bounds and the decoded float32 labels. Raises :class:`StreamBreak` naming rule 16, 17
    or 18 at the first problem. ``rules_minor``: the minor version of the rules the reader knows
    (None: the file's); a reader of 1.2's rules ignores /stream/tail (section 9: it ignores what it
    does not know) and decodes section 6's top-k with an even tail."""
    def need(ok, rule: int, why: str):
        if not ok:
            raise StreamBreak(rule, why)

    g = h5["stream"]
    m, _, height, width = h5["images"].shape
    c = int(h5.attrs["num_classes"])
    a = g.attrs
    for key in STREAM_REQUIRED:
        need(key in a, 16, f"attribute {key} missing")
    d = {}
    for key in ("epochs", "batch_size"):
        need(is_integer(a[key]) and int(a[key]) >= 1, 16, f"{key} {a[key]!r}")
        d[key] = int(a[key])
    for key, allowed in (("mode", ("epochs", "pool")), ("resize", ("bilinear-antialias", "pil-bilinear")),
                         ("mix", ("none", "cutmix", "mixup")), ("kind", ("probs", "logits"))):
        d[key] = text(a[key])
        need(d[key] in allowed, 16, f"{key} {d[key]!r}")
    d["codec"] = text(a["codec"])
    codecs = ("float16", "float32") if d["kind"] == "logits" else ("float32", "float16", "uint8", "topk")
    need(d["codec"] in codecs, 16, f"codec {d['codec']!r} with kind {d['kind']}")
    need(("k" in a) == (d["codec"] == "topk"), 16, "k with, and only with, codec topk")
    if d["codec"] == "topk":
        need(is_integer(a["k"]) and 1 <= int(a["k"]) <= c, 16, f"k {a['k']!r}")
        d["k"] = int(a["k"])
    crop = np.asarray(a["crop_size"])
    need(crop.shape == (2,) and crop.dtype.kind in "iu", 16, "crop_size is not 2 integers")
    need(all(1 <= int(v) <= STREAM_LIMITS["crop"] for v in crop), 16, f"crop_size {crop.tolist()}")
    d["crop_size"] = [int(v) for v in crop]
    temperature = np.asarray(a["temperature"])
    need(temperature.dtype == np.float64 and temperature.shape == () and float(temperature) > 0
         and math.isfinite(float(temperature)), 16, "temperature")
    d["temperature"] = float(temperature)
    for key in ("sampler", "augmentation"):
        if key in a:
            d[key] = json.loads(text(a[key]))
    need("teacher" in g and isinstance(g["teacher"], h5py.Group) and "arch" in g["teacher"].attrs, 16,
         "/stream/teacher with arch")
    labels = stream_label_names(d["kind"], d["codec"])
    names = ["epoch_start", "batch_start", "image", "box", "flip"] + stream_mix_names(d["mix"]) + labels
    present = {key for key in g if isinstance(g[key], h5py.Dataset)}
    need(present == set(names) | {"batch_sha256"}, 16, f"datasets {sorted(present)}")
    x = {key: g[key][()] for key in names}
    e, nb, q = x["epoch_start"], x["batch_start"], x["image"]
    need(e.dtype == np.int64 and e.shape == (d["epochs"],), 16, "epoch_start shape or dtype")
    need(x["batch_start"].dtype == np.int64 and nb.ndim == 1 and nb.shape[0] >= 1, 16, "batch_start")
    num_batches, num_records = nb.shape[0], q.shape[0]
    need(d["epochs"] <= STREAM_LIMITS["E"] and num_batches <= STREAM_LIMITS["NB"]
         and num_records <= STREAM_LIMITS["Q"], 16, "2.4 limits")          # (rule 15 in a verifier)
    need(e[0] == 0 and np.all(np.diff(e) > 0) and e[-1] < num_batches, 16, f"epoch_start {e.tolist()}")
    need(nb[0] == 0 and np.all(np.diff(nb) > 0) and nb[-1] < num_records, 16, f"batch_start {nb.tolist()}")
    bounds = np.append(nb, num_records)
    lengths = np.diff(bounds)
    need(lengths.min() >= 1 and lengths.max() <= d["batch_size"], 16, f"batch lengths {lengths.tolist()}")
    need(lengths.max() <= STREAM_LIMITS["batch"] and lengths.max() * c <= STREAM_LIMITS["batch_values"], 16, "2.4")
    for key in ("image", "box", "mix_partner", "mix_box"):
        if key in x:
            need(x[key].dtype.kind in "iu", 16, f"{key} dtype {x[key].dtype}")
    need(q.shape == (num_records,) and q.min() >= 0 and q.max() < m, 16, f"image index outside [0, {m})")
    box = x["box"].astype(np.int64)
    need(box.shape == (num_records, 4), 16, "box shape")
    top, left, bh, bw = box.T
    need(np.all((top >= 0) & (left >= 0) & (bh >= 1) & (bw >= 1) & (top + bh <= height) & (left + bw <= width)),
         16, "box outside the image")
    need(x["flip"].dtype == np.uint8 and x["flip"].shape == (num_records,) and set(x["flip"].tolist()) <= {0, 1},
         16, "flip")
    batch_of = np.repeat(np.arange(num_batches), lengths)
    if "mix_partner" in x:
        partner = x["mix_partner"].astype(np.int64)
        need(partner.shape == (num_records,) and partner.min() >= 0 and np.all(partner < lengths[batch_of]), 16,
             "mix_partner outside its batch")
    if "mix_box" in x:
        mbox = x["mix_box"].astype(np.int64)
        need(mbox.shape == (num_batches, 4), 16, "mix_box shape")
        t, l_, mh, mw = mbox.T
        need(np.all((t >= 0) & (l_ >= 0) & (mh >= 0) & (mw >= 0) & (t + mh <= d["crop_size"][0])
                    & (l_ + mw <= d["crop_size"][1])), 16, "mix_box outside the crop")
    if "mix_lambda" in x:
        lam = x["mix_lambda"]
        need(lam.dtype == np.float32 and lam.shape == (num_batches,) and np.all(np.isfinite(lam))
             and lam.min() >= 0 and lam.max() <= 1, 16, "mix_lambda")
    if d["kind"] == "logits":
        z = x["logits"]
        need(z.shape == (num_records, c) and z.dtype == np.dtype(d["codec"]) and np.all(np.isfinite(z)), 16, "logits")
        v = z.astype(np.float64) / d["temperature"]
        v = np.exp(v - v.max(axis=-1, keepdims=True))
        decoded = (v / v.sum(axis=-1, keepdims=True)).astype(np.float32)
    else:
        width_ = d.get("k", c)
        for key in labels:
            need(x[key].shape == (num_records, width_), 16, f"{key} shape")
        if d["codec"] == "topk":
            need(x["topk_index"].dtype == np.uint16 and x["topk_prob"].dtype in (np.float32, np.float16, np.uint8),
                 16, "topk dtypes")
        else:
            need(x["probs"].dtype == np.dtype(d["codec"]), 16, "probs dtype")
        decoded = spec_decode(g, c)                      # section 6 (it reads codec, k and the datasets)
    file_minor = int(text(h5.attrs["format_version"]).split(".")[1])
    minor = file_minor if rules_minor is None else min(rules_minor, file_minor)
    tail = None
    if minor >= 3 and isinstance(g.get("tail"), h5py.Group):   # 1.3: the low-rank tail (rule 18; a dataset of
        #                                                     that name is one rule 16 refused above)
        tail = spec_read_tail(g, d, c, num_records, num_batches, bounds, need)
        decoded = spec_decode_with_tail(x["topk_index"], x["topk_prob"], tail, d["temperature"], c)
    # 4.7 batch digests (rule 17)
    table = g["batch_sha256"]
    listed = [text(v) for v in np.atleast_1d(table.attrs.get("datasets", []))]
    order = ["image", "box", "flip"] + stream_mix_names(d["mix"]) + labels
    need(listed == [f"/stream/{key}" for key in order], 17, f"batch_sha256 datasets {listed}")
    digests = table[()]
    need(digests.dtype == np.uint8 and digests.shape == (num_batches, len(order), 32), 17, "batch_sha256 shape")
    for col, key in enumerate(order):
        data = x[key]
        for b in range(num_batches):
            part = data[b:b + 1] if key in PER_BATCH_DATASETS else data[bounds[b]:bounds[b + 1]]
            raw = np.ascontiguousarray(part.astype(part.dtype.newbyteorder("<"))).tobytes()
            need(hashlib.sha256(raw).digest() == digests[b, col].tobytes(), 17, f"batch {b} of /stream/{key}")
    return {"declared": d, "x": x, "bounds": bounds, "batch_of": batch_of, "decoded": decoded, "tail": tail,
            "digests": [[digests[b, col].tobytes().hex() for col in range(len(order))] for b in range(num_batches)],
            "listed": listed}


TAIL_RANK_MAX = 256                                      # spec 2.4
TAIL_MEMBERS = ("mean", "basis", "coef", "scale", "batch_sha256")


def spec_read_tail(g: h5py.Group, d: dict, c: int, num_records: int, num_batches: int, bounds: np.ndarray,
                   need) -> dict:
    """/stream/tail following 4.7 (1.3) and rule 18 alone: allowed only with kind probs, codec topk and
    k < C; rank r an integer, 1 <= r <= min(C, 256); exactly mean (C,) float32, basis (r, C) float32,
    coef (Q, r) int8, scale (Q,) float16, batch_sha256 (NB, 2, 32) uint8 listing coef and scale;
    mean, basis finite; scale finite and >= 0; every batch of coef and scale matches its digest."""
    t = g["tail"]
    need(isinstance(t, h5py.Group), 18, "/stream/tail is not a group")
    need(d["kind"] == "probs" and d["codec"] == "topk" and d["k"] < c, 18, "a tail needs kind probs, codec topk, k < C")
    need("rank" in t.attrs and is_integer(t.attrs["rank"]), 18, "rank is not an integer")
    r = int(t.attrs["rank"])
    need(1 <= r <= min(c, TAIL_RANK_MAX), 18, f"rank {r} outside 1..min(C, 256)")
    need(set(t) == set(TAIL_MEMBERS), 18, f"members {sorted(t)}")
    shapes = {"mean": ((c,), "<f4"), "basis": ((r, c), "<f4"), "coef": ((num_records, r), "|i1"),
              "scale": ((num_records,), "<f2"), "batch_sha256": ((num_batches, 2, 32), "|u1")}
    y = {}
    for key, (shape, dtype) in shapes.items():
        need(isinstance(t[key], h5py.Dataset), 18, f"/stream/tail/{key} is not a dataset")
        need(t[key].shape == shape and t[key].dtype.str == dtype, 18, f"/stream/tail/{key} {t[key].dtype} {t[key].shape}")
        y[key] = t[key][()]
    need(np.all(np.isfinite(y["mean"])) and np.all(np.isfinite(y["basis"])), 18, "mean or basis not finite")
    scale = y["scale"].astype(np.float64)
    need(np.all(np.isfinite(scale)) and np.all(scale >= 0), 18, "scale not finite and >= 0")
    listed = [text(v) for v in np.atleast_1d(t["batch_sha256"].attrs.get("datasets", []))]
    need(listed == ["/stream/tail/coef", "/stream/tail/scale"], 18, f"tail batch_sha256 datasets {listed}")
    for col, key in enumerate(("coef", "scale")):
        for b in range(num_batches):
            part = y[key][bounds[b]:bounds[b + 1]]
            raw = np.ascontiguousarray(part.astype(part.dtype.newbyteorder("<"))).tobytes()
            need(hashlib.sha256(raw).digest() == y["batch_sha256"][b, col].tobytes(), 18,
                 f"batch {b} of /stream/tail/{key}")
    return {"rank": r, **y}


#: 4.8 step 3: e, the rounding bound of one stored top-k value, by its dtype
VALUE_ROUNDING = {np.dtype("u1"): 1 / 510, np.dtype("<f2"): 2.0 ** -12, np.dtype("<f4"): 2.0 ** -25}


def spec_tail_masses(index: np.ndarray, raw: np.ndarray, tail: dict, temperature: float, c: int, n: int):
    """4.8 steps 1-3 for record n: (u, I as a mask, m_hat, m): zhat = mean + scale * (coef @ basis);
    u_j = exp((zhat_j - max zhat) / T); I = the top-k indices whose value is above 0; m_hat =
    sum_{j not in I} u_j / sum_j u_j; rho = 1 - sum_{j in I} v_j, delta = k e;
    m = max(0, min(rho + delta, max(rho - delta, m_hat)))."""
    v = raw[n].astype(np.float64) / 255.0 if raw.dtype == np.uint8 else raw[n].astype(np.float64)
    zhat = tail["mean"].astype(np.float64) + float(tail["scale"][n]) * (
        tail["coef"][n].astype(np.float64) @ tail["basis"].astype(np.float64))
    u = np.exp((zhat - zhat.max()) / temperature)
    inside = np.zeros(c, dtype=bool)
    inside[index[n].astype(np.int64)[v > 0]] = True
    m_hat = u[~inside].sum() / u.sum()
    rho = 1.0 - v[v > 0].sum()
    delta = raw.shape[1] * VALUE_ROUNDING[raw.dtype]
    return u, inside, m_hat, max(0.0, min(rho + delta, max(rho - delta, m_hat)))


def spec_decode_with_tail(index: np.ndarray, raw: np.ndarray, tail: dict, temperature: float, c: int,
                          clamp: bool = True, cap: bool = True) -> np.ndarray:
    """4.8's decode, from the text: per record, in float64, u, I, m_hat and m of steps 1-3
    (:func:`spec_tail_masses`); step 4: q_j = v_j in I, else min(m * u_j / sum_{i not in I} u_i,
    v_min + e) (the first term 0 when that sum is 0; v_min the smallest of the k stored values,
    zeros included; e as in step 3); step 5: the row divided by its sum (1/C when it is 0); float32
    at the end. ``clamp`` False: m = m_hat (a reader without step 3's clamp); ``cap`` False: no
    v_min + e (a reader without step 4's cap); the tail vector must fail both."""
    v = raw.astype(np.float64) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float64)
    out = np.empty((index.shape[0], c), dtype=np.float64)
    for n in range(index.shape[0]):
        u, inside, m_hat, m = spec_tail_masses(index, raw, tail, temperature, c, n)
        m = m if clamp else m_hat
        rest = u[~inside].sum()
        q = np.where(inside, 0.0, m * u / rest if rest > 0 else 0.0)
        if cap:
            q = np.minimum(q, v[n].min() + VALUE_ROUNDING[raw.dtype])
        q[index[n].astype(np.int64)[v[n] > 0]] = v[n][v[n] > 0]
        out[n] = q
    return normalise_rows(out, c).astype(np.float32)


@pytest.mark.parametrize("name", STREAM_VECTORS)
def test_stream_declaration_follows_4_7(name):
    exp = expected(name)["stream"]
    with h5py.File(h5_path(name), "r") as h5:
        got = spec_read_stream(h5)
        teacher = {key: (text(v) if h5py.check_string_dtype(h5["stream/teacher"].attrs.get_id(key).dtype)
                         else np.asarray(v).tolist()) for key, v in h5["stream/teacher"].attrs.items()}
    d = got["declared"]
    for key in STREAM_REQUIRED:
        assert d[key] == exp["declared"][key], key
    for key in ("sampler", "augmentation"):
        assert d.get(key) == (json.loads(exp["declared"][key]) if key in exp["declared"] else None)
    assert d.get("k") == exp["declared"].get("k")
    assert teacher == exp["teacher"] and teacher["arch"]
    assert exp["num_epochs"] == d["epochs"] and exp["declared"]["mode"] in ("epochs", "pool")


@pytest.mark.parametrize("name", STREAM_VECTORS)
def test_stream_records_decode_per_4_7_and_5_1(name):
    """Record r of batch b: its image, box, flip, partner p = batch_start[b] + mix_partner[r], the
    batch's mix box or lambda, and hard label labels[image[r]] (5.1 step 4)."""
    exp = expected(name)
    s = exp["stream"]
    with h5py.File(h5_path(name), "r") as h5:
        got = spec_read_stream(h5)
        labels = h5["labels"][()]
    x, bounds, batch_of = got["x"], got["bounds"], got["batch_of"]
    assert x["epoch_start"].tolist() == s["epoch_start"] and x["batch_start"].tolist() == s["batch_start"]
    assert len(x["image"]) == s["num_records"] and len(bounds) - 1 == s["num_batches"]
    epochs = np.append(x["epoch_start"], len(bounds) - 1)
    assert np.diff(epochs).tolist() == s["epoch_batches"]
    assert x["image"].tolist() == s["image"] and x["box"].tolist() == s["box"] and x["flip"].tolist() == s["flip"]
    assert labels[x["image"]].tolist() == s["hard_label"]
    if "mix_partner" in x:
        partner = bounds[batch_of] + x["mix_partner"].astype(np.int64)
        assert x["mix_partner"].tolist() == s["mix_partner"] and partner.tolist() == s["partner"]
        assert np.all(batch_of[partner] == batch_of)                     # mixing stays inside the batch
    else:
        assert s["mix_partner"] is None and s["partner"] is None
    assert (x["mix_box"].tolist() if "mix_box" in x else None) == s["mix_box"]
    if "mix_lambda" in x:
        assert np.array_equal(x["mix_lambda"], np.asarray(s["mix_lambda"]).astype(np.float32))
    else:
        assert s["mix_lambda"] is None
    for key, values in s["stored_labels"].items():
        want = np.asarray(values).astype(x[key].dtype)
        assert np.array_equal(x[key], want), key
    assert {key: v.dtype.str for key, v in x.items()} == {k: v for k, v in s["dtypes"].items() if k != "batch_sha256"}


@pytest.mark.parametrize("name", STREAM_VECTORS)
def test_stream_labels_decode_per_section_6(name):
    s = expected(name)["stream"]
    with h5py.File(h5_path(name), "r") as h5:
        got = spec_read_stream(h5)
        c = int(h5.attrs["num_classes"])
    q = got["decoded"]
    want = np.asarray(s["decoded"], dtype=np.float64)
    assert q.dtype == np.float32 and q.shape == (s["num_records"], c) == want.shape
    assert np.max(np.abs(q.astype(np.float64) - want)) <= TOL
    assert np.max(np.abs(q.astype(np.float64).sum(axis=-1) - 1.0)) <= 1e-6


@pytest.mark.parametrize("name", [n for n in STREAM_VECTORS_1_2 if "logits" not in n])
def test_stream_encode_rules_reproduce_stored_labels(name):
    """Section 6's encode column applied to the source probabilities gives the stored label rows."""
    s = expected(name)["stream"]
    p = np.asarray(s["source_probs"], dtype=np.float64)
    with h5py.File(h5_path(name), "r") as h5:
        g = h5["stream"]
        codec = text(g.attrs["codec"])
        stored = {key: g[key][()] for key in ("probs", "topk_index", "topk_prob") if key in g}
    if codec == "topk":
        index = np.asarray([topk_select(row, int(s["declared"]["k"])) for row in p.tolist()])
        assert np.array_equal(stored["topk_index"], index)
        top = np.take_along_axis(p, index, axis=-1)
        values = stored["topk_prob"]
        want = np.floor(255.0 * top + 0.5) if values.dtype == np.uint8 else top
        assert np.array_equal(values, want.astype(values.dtype))
    elif codec == "uint8":
        assert np.array_equal(stored["probs"], np.floor(255.0 * p + 0.5).astype(np.uint8))
    else:
        assert np.array_equal(stored["probs"], p.astype(codec))


@pytest.mark.parametrize("name", STREAM_VECTORS)
def test_stream_batch_digests_recomputed_from_the_spec_text(name):
    s = expected(name)["stream"]
    with h5py.File(h5_path(name), "r") as h5:
        got = spec_read_stream(h5)
        assert "/stream/image" not in [text(v) for v in h5["row_sha256"].attrs["datasets"]]  # 4.7: not a row dataset
    assert got["listed"] == s["batch_sha256_datasets"] and got["digests"] == s["batch_sha256"]


@pytest.mark.parametrize("name", TAIL_VECTORS)
def test_stream_tail_decodes_per_1_3(name):
    """The tail read and checked from the text (rule 18) is the expected one, and the decode with it
    is the expected labels (the generator's 60-digit decimal decode, rounded to float32)."""
    s = expected(name)["stream"]
    with h5py.File(h5_path(name), "r") as h5:
        got = spec_read_stream(h5)
        c = int(h5.attrs["num_classes"])
    tail = got["tail"]
    assert tail is not None and tail["rank"] == s["tail"]["rank"]
    for key in ("mean", "basis", "scale"):
        assert np.array_equal(tail[key], np.asarray(s["tail"][key]).astype(tail[key].dtype)), key
    assert tail["coef"].tolist() == s["tail"]["coef"]
    assert [[row.tobytes().hex() for row in b] for b in tail["batch_sha256"]] == s["tail"]["batch_sha256"]
    q = got["decoded"]
    want = np.asarray(s["decoded"], dtype=np.float64)
    assert q.dtype == np.float32 and q.shape == (s["num_records"], c) == want.shape
    assert np.max(np.abs(q.astype(np.float64) - want)) <= TOL
    # the tail changes the labels: a reader that ignores it gets section 6's even tail
    assert np.max(np.abs(want - np.asarray(s["decoded_without_tail"]))) > 0.01
    # record 0 has scale 0: its low-rank logits are the mean
    assert float(tail["scale"][0]) == 0.0 and not tail["coef"][0].any()
    # record 2's second top-k value is stored as 0: outside I, that class gets its share of the tail
    zero = got["x"]["topk_prob"][2] == 0
    assert zero.any() and np.all(q[2, got["x"]["topk_index"][2][zero].astype(np.int64)] > 0)


@pytest.mark.parametrize("name", TAIL_VECTORS)
def test_tail_vector_needs_the_clamp_of_the_tail_mass(name):
    """4.8 step 3: the records whose top-k values were set by hand have a low-rank tail mass m_hat
    outside rho -+ k e, one below and one above; one has rho = 0 (it gets m = delta) and one rho +
    delta = 0 (no tail). A reader that takes m = m_hat gets those records wrong; every other record
    is the same either way."""
    s = expected(name)["stream"]
    with h5py.File(h5_path(name), "r") as h5:
        got = spec_read_stream(h5)
        c = int(h5.attrs["num_classes"])
    tail, x, t = got["tail"], got["x"], got["declared"]["temperature"]
    hand = s["tail"]["topk_set_by_hand"]
    assert hand and s["tail"]["clamped"] == hand
    delta = x["topk_prob"].shape[1] / 510
    below = above = 0
    for n in range(s["num_records"]):
        _, _, m_hat, m = spec_tail_masses(x["topk_index"], x["topk_prob"], tail, t, c, n)
        rho = 1 - x["topk_prob"][n].astype(np.float64).sum() / 255
        if n in hand:
            assert abs(m_hat - rho) > delta + 1e-9 and m != m_hat
            below += m_hat < rho - delta
            above += m_hat > rho + delta
        else:
            assert abs(m_hat - rho) <= delta and m == m_hat
    assert below >= 1 and above >= 1
    rhos = [1 - x["topk_prob"][n].astype(np.int64).sum() / 255 for n in hand]
    assert any(abs(r) < 1e-12 for r in rhos) and any(abs(r + delta) < 1e-12 for r in rhos)
    want = np.asarray(s["decoded"], dtype=np.float64)
    unclamped = spec_decode_with_tail(x["topk_index"], x["topk_prob"], tail, t, c, clamp=False).astype(np.float64)
    error = np.abs(unclamped - want).max(axis=1)
    assert np.all(error[hand] > 100 * TOL)
    assert np.all(np.delete(error, hand) <= TOL)


@pytest.mark.parametrize("name", TAIL_VECTORS)
def test_tail_vector_needs_the_cap_of_the_tail_entries(name):
    """4.8 step 4: the record whose top-k classes were set by hand stores the first and the third
    class of its tail's logits; the second, outside the top k, would get about its own probability,
    more than the stored third's value + e, and the cap lowers it to that. Its tail mass is within
    rho -+ k e (step 3 changes nothing). A reader without the cap gets that record wrong, and only it."""
    s = expected(name)["stream"]
    with h5py.File(h5_path(name), "r") as h5:
        got = spec_read_stream(h5)
        c = int(h5.attrs["num_classes"])
    tail, x, t = got["tail"], got["x"], got["declared"]["temperature"]
    by_hand = s["tail"]["topk_classes_set_by_hand"]
    assert by_hand and s["tail"]["capped"] == by_hand and not set(by_hand) & set(s["tail"]["clamped"])
    e = VALUE_ROUNDING[x["topk_prob"].dtype]
    want = np.asarray(s["decoded"], dtype=np.float64)
    for n in by_hand:
        u, inside, m_hat, m = spec_tail_masses(x["topk_index"], x["topk_prob"], tail, t, c, n)
        assert m == m_hat
        v = x["topk_prob"][n].astype(np.float64) / 255
        cap = v.min() + e
        share = np.where(inside, 0, m * u / u[~inside].sum())
        second = int(np.argmax(share))
        assert share[second] > cap + 1 / 255
        # after step 5 the capped class sits at cap / row sum, the row sum read off a stored class
        row_sum = v[0] / want[n, int(x["topk_index"][n][0])]
        assert abs(want[n, second] * row_sum - cap) <= 1e-6
    uncapped = spec_decode_with_tail(x["topk_index"], x["topk_prob"], tail, t, c, cap=False).astype(np.float64)
    error = np.abs(uncapped - want).max(axis=1)
    assert np.all(error[by_hand] > 100 * TOL)
    assert np.all(np.delete(error, by_hand) <= TOL)


@pytest.mark.parametrize("name", TAIL_VECTORS)
def test_a_1_2_reader_reads_the_1_3_tail_vector_ignoring_the_tail(name):
    """Section 9: a reader of 1.2's rules given the 1.3 tail vector reads its stream as 1.2 says,
    ignoring /stream/tail, and decodes section 6's top-k with an even tail."""
    s = expected(name)["stream"]
    with h5py.File(h5_path(name), "r") as h5:
        got = spec_read_stream(h5, rules_minor=2)
        c = int(h5.attrs["num_classes"])
        k = int(h5["stream"].attrs["k"])
    assert got["tail"] is None
    q = got["decoded"].astype(np.float64)
    assert np.max(np.abs(q - np.asarray(s["decoded_without_tail"]))) <= TOL
    index = got["x"]["topk_index"].astype(np.int64)
    v = got["x"]["topk_prob"].astype(np.float64) / 255.0
    outside = np.ones(q.shape, dtype=bool)
    np.put_along_axis(outside, index, False, axis=1)
    even = np.maximum(0.0, 1.0 - v.sum(axis=1)) / (c - k)
    for n in range(q.shape[0]):                           # every class outside the top k: the same value
        assert np.allclose(q[n][outside[n]], q[n][outside[n]][0], rtol=0, atol=1e-7)
        assert np.isclose(q[n][outside[n]][0] * (v[n].sum() + (c - k) * even[n]), even[n], atol=1e-6)


@pytest.mark.parametrize("name", TAIL_VECTORS)
def test_tail_vector_topk_is_the_encode_of_its_tail_logits(name):
    """The tail vector's top-k labels are section 6's encode of softmax(zhat / T) of its own tail
    (their classes except in the records whose classes were set by hand: the first and the third;
    their values except in the records whose values were set by hand)."""
    with h5py.File(h5_path(name), "r") as h5:
        got = spec_read_stream(h5)
    tail, x, t = got["tail"], got["x"], got["declared"]["temperature"]
    zhat = tail["mean"].astype(np.float64) + tail["scale"].astype(np.float64)[:, None] * (
        tail["coef"].astype(np.float64) @ tail["basis"].astype(np.float64))
    p = np.exp((zhat - zhat.max(axis=1, keepdims=True)) / t)
    p /= p.sum(axis=1, keepdims=True)
    k = got["declared"]["k"]
    index = np.asarray([topk_select(row, k) for row in p.tolist()])
    classes_by_hand = expected(name)["stream"]["tail"]["topk_classes_set_by_hand"]   # 4.8 step 4's cap
    for n in classes_by_hand:
        order = topk_select(p[n].tolist(), k + 1)
        index[n] = [order[0], order[2]]
    assert np.array_equal(x["topk_index"], index)
    top = np.take_along_axis(p, index, axis=1)
    encoded = np.floor(255.0 * top + 0.5).astype(np.uint8)
    hand = expected(name)["stream"]["tail"]["topk_set_by_hand"]   # values set by hand (4.8 step 3's clamp)
    assert np.array_equal(np.delete(x["topk_prob"], hand, axis=0), np.delete(encoded, hand, axis=0))
    assert all(not np.array_equal(x["topk_prob"][n], encoded[n]) for n in hand)


def spec_1_1_read(h5: h5py.File) -> dict:
    """A reader that knows only the 1.1 rules (spec section 9): it accepts a higher MINOR of MAJOR 1,
    checks the root digest (2.1: every object, /stream included), every dataset's sha256 and the row
    digests of 2.2, and reads images and labels; it ignores /stream otherwise."""
    major, minor = (int(v) for v in text(h5.attrs["format_version"]).split("."))
    assert major == 1 and minor >= 1
    assert spec_root_digest(h5) == text(h5.attrs["root_sha256"])
    for path, ds in datasets(h5).items():
        data = ds[()]
        raw = np.ascontiguousarray(data.astype(data.dtype.newbyteorder("<"))).tobytes()
        assert hashlib.sha256(raw).hexdigest() == text(ds.attrs["sha256"]), path
    listed = [text(v) for v in h5["row_sha256"].attrs["datasets"]]
    assert listed[:2] == ["/images", "/labels"] and not any(p.startswith("/stream") for p in listed)
    images, labels = h5["images"][()], h5["labels"][()]
    for column, path in enumerate(listed):
        data = h5[path][()]
        for i in range(data.shape[0]):
            digest = hashlib.sha256(np.ascontiguousarray(data[i].astype(data.dtype.newbyteorder("<"))).tobytes())
            assert digest.digest() == h5["row_sha256"][i, column].tobytes(), (path, i)
    return {"images": images, "labels": labels, "version": (major, minor)}


@pytest.mark.parametrize("name", STREAM_VECTORS)
def test_a_1_1_reader_reads_the_1_2_stream_vectors(name):
    """Section 9: a 1.1 reader given a 1.2 file reads its images and labels as before, verifies the
    root digest (which covers the stream) and each stream dataset's sha256, and ignores /stream."""
    exp = expected(name)
    with h5py.File(h5_path(name), "r") as h5:
        got = spec_1_1_read(h5)
        assert "stream" in h5 and "{}.{}".format(*got["version"]) == VERSIONS[name]
    assert np.array_equal(got["images"], np.asarray(exp["images"]).astype(got["images"].dtype))
    assert got["labels"].tolist() == exp["labels"]


@pytest.mark.parametrize("name", VECTORS_1_1)
def test_the_1_1_vectors_read_with_the_1_1_rules(name):
    with h5py.File(h5_path(name), "r") as h5:
        assert spec_1_1_read(h5)["version"] == (1, 1) and "stream" not in h5


def stream_invalid_cases() -> list[dict]:
    return [c for c in invalid_manifest() if c["rule"] in (16, 17, 18)]


def test_every_stream_rule_has_invalid_vectors():
    rules = [c["rule"] for c in stream_invalid_cases()]
    assert rules.count(16) >= 6 and rules.count(17) >= 2 and rules.count(18) >= 3


@pytest.mark.parametrize("case", stream_invalid_cases(), ids=lambda c: c["file"])
def test_the_spec_reader_finds_the_rule_each_invalid_stream_vector_breaks(case):
    with h5py.File(INVALID / case["file"], "r") as h5:
        assert spec_root_digest(h5) == text(h5.attrs["root_sha256"])      # only the stream's rule is broken
        with pytest.raises(StreamBreak) as info:
            spec_read_stream(h5)
    assert info.value.rule == case["rule"], info.value


# ---------------------------------------------------------------------------------------------
# The package against the same vectors (these tests may import ladd_format).
@pytest.mark.parametrize("case", invalid_manifest(), ids=lambda c: c["file"])
def test_package_verify_names_the_one_rule_each_invalid_vector_breaks(case):
    import ladd_format

    path = INVALID / case["file"]
    assert case["file"].startswith(f"{case['rule']:02d}-")
    assert {p.rule_number for p in ladd_format.verify(path)} == {case["rule"]}
    if case["file"] == "15-chunk-not-written.dla.h5":
        return  # spec 8: the chunk-index part of rule 15 is the verifier's (the row digests guard reads)
    if case["rule"] in (16, 17, 18):
        # spec 8: the reader checks the stream before it returns any record, and each batch it returns
        with pytest.raises(ladd_format.LaddError) as info:
            with ladd_format.open_dla(path) as f:
                stream = f.stream
                for b in range(stream.num_batches):
                    stream.read_batch(b)
        assert info.value.rule_number == case["rule"], info.value
        return
    with pytest.raises(ladd_format.LaddError):
        with ladd_format.open_dla(path) as f:
            f.labels()


def test_package_reads_the_legacy_1_0_vector():
    import ladd_format

    assert ladd_format.verify(h5_path(LEGACY)) == []
    with ladd_format.open_dla(h5_path(LEGACY)) as f:
        assert f.version == (1, 0) and f.labels().tolist() == expected(LEGACY)["labels"]

@pytest.mark.parametrize("name", ALL_VECTORS)
def test_package_reader_agrees_with_vectors(name):
    import ladd_format

    exp = expected(name)
    with ladd_format.open_dla(h5_path(name)) as f:
        assert f.num_images == exp["num_images"] and f.num_classes == exp["num_classes"]
        assert list(f.image_shape) == exp["image_shape"] and f.space == exp["space"]
        assert f.labels().tolist() == exp["labels"]
        assert np.array_equal(f.images(), np.asarray(exp["images"]).astype(f.image_dtype))
        if exp["dense"] is None:
            assert not f.has_dense
            return
        assert f.boxes.tolist() == exp["dense"]["boxes"]
        q = f.dense()
        assert q.dtype == np.float32
        assert np.max(np.abs(q.astype(np.float64) - np.asarray(exp["dense"]["decoded"]))) <= TOL
        # reading a slice decodes the same rows
        assert np.array_equal(f.dense(1, 3), q[1:3])


@pytest.mark.parametrize("name", STREAM_VECTORS)
def test_package_stream_reader_agrees_with_vectors(name):
    import ladd_format

    exp = expected(name)
    s = exp["stream"]
    with ladd_format.open_dla(h5_path(name)) as f:
        assert f.has_stream
        stream = f.stream
        assert (stream.num_records, stream.num_batches, stream.epochs) == (s["num_records"], s["num_batches"],
                                                                          s["num_epochs"])
        assert [len(stream.epoch_batches(e)) for e in range(stream.epochs)] == s["epoch_batches"]
        assert stream.spec.mix == s["declared"]["mix"] and list(stream.spec.crop_size) == s["declared"]["crop_size"]
        decoded = np.asarray(s["decoded"])
        for b in range(stream.num_batches):
            lo, hi = s["batch_start"][b], (s["batch_start"] + [s["num_records"]])[b + 1]
            batch = stream.read_batch(b)
            assert batch.image.tolist() == s["image"][lo:hi] and batch.box.tolist() == s["box"][lo:hi]
            assert batch.flip.tolist() == [bool(v) for v in s["flip"][lo:hi]]
            if s["mix_partner"] is not None:
                assert batch.mix_partner.tolist() == s["mix_partner"][lo:hi]
            if s["mix_box"] is not None:
                assert batch.mix_box.tolist() == s["mix_box"][b]
            if s["mix_lambda"] is not None:
                assert batch.mix_lambda == s["mix_lambda"][b]
            q = stream.probs(batch)
            assert q.dtype == np.float32 and np.max(np.abs(q.astype(np.float64) - decoded[lo:hi])) <= TOL


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_package_verify_accepts_every_vector(name):
    import ladd_format

    assert [str(p) for p in ladd_format.verify(h5_path(name))] == []


@pytest.mark.parametrize("name", ALL_VECTORS + [LEGACY])
def test_package_content_digest_agrees_with_vectors(name):
    from ladd_format import integrity, open_dla

    assert integrity.content_digest(h5_path(name)) == expected(name)["content_sha256"]
    with open_dla(h5_path(name)) as f:
        assert f.info()["content_sha256"] == expected(name)["content_sha256"]
        assert f.info()["root_sha256"] == expected(name).get("root_sha256")


def test_package_reads_string_values_up_to_the_first_nul():
    """The reader and the verifier take section 2's value: the nul_strings vector verifies (its
    /images space is 'pixel255' followed by a NUL and more bytes) and reads as its values."""
    import ladd_format

    exp = expected("nul_strings")
    assert ladd_format.verify(h5_path("nul_strings")) == []
    with ladd_format.open_dla(h5_path("nul_strings")) as f:
        assert f.class_names == exp["root"]["class_names"] == ["cat", "dog"]
        assert f.space == "pixel255" and f.attrs["source_dataset"] == "cifar10"
        assert f.info()["class_names"] == ["cat", "dog"]


# Floats that the generator derives in float64 (the source probabilities are a numpy softmax) may
# differ in the last bits between CPUs, since numpy picks SIMD paths (AVX2, AVX-512) at run time.
# What the spec fixes -- every stored dataset's bytes, through its SHA-256, shapes, dtypes, integers
# and strings -- must be identical; floats must agree to this relative tolerance (about 4,500 ulp of
# float64, far below anything stored: float32 spacing is 6e-8 relative).
DERIVED_FLOAT_RTOL = 1e-12


def json_differences(got, want, where="$") -> list[str]:
    """Where two parsed JSON values differ: exactly for everything but floats, which are compared
    with ``DERIVED_FLOAT_RTOL``. Returns human-readable paths (empty when they agree)."""
    if isinstance(want, float) or isinstance(got, float):
        ok = (isinstance(got, (int, float)) and isinstance(want, (int, float))
              and not isinstance(got, bool) and not isinstance(want, bool)
              and math.isclose(got, want, rel_tol=DERIVED_FLOAT_RTOL, abs_tol=0.0))
        return [] if ok else [f"{where}: {got!r} != {want!r}"]
    if type(got) is not type(want):
        return [f"{where}: type {type(got).__name__} != {type(want).__name__}"]
    if isinstance(want, dict):
        if set(got) != set(want):
            return [f"{where}: keys {sorted(set(got) ^ set(want))} differ"]
        return [d for key in sorted(want) for d in json_differences(got[key], want[key], f"{where}.{key}")]
    if isinstance(want, list):
        if len(got) != len(want):
            return [f"{where}: length {len(got)} != {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in json_differences(g, w, f"{where}[{i}]")]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


def test_json_differences_is_exact_except_for_float_tolerance():
    assert json_differences({"a": [1, "x", 0.1]}, {"a": [1, "x", 0.1 + 1e-17]}) == []
    assert json_differences({"a": 0.1}, {"a": 0.1 * (1 + 1e-9)}) != []       # beyond the tolerance
    assert json_differences({"sha256": "ab"}, {"sha256": "ac"}) != []         # strings exact
    assert json_differences([1, 2], [1, 3]) != [] and json_differences([1], [1, 1]) != []
    assert json_differences({"a": 1}, {"b": 1}) != [] and json_differences(True, 1) != []


@pytest.mark.mutation_skip
def test_make_vectors_is_deterministic(tmp_path):
    """Regenerating into a fresh folder gives the committed expected files and geometry.json, so the
    committed vectors are what the script writes (run it after any change to the format). Stored
    bytes (dataset SHA-256s), integers and strings must be identical on every CPU; floats derived
    in float64 are compared with ``DERIVED_FLOAT_RTOL``, never as text."""
    subprocess.run([sys.executable, str(VECTORS / "make_vectors.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, cwd=ROOT)
    produced = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(str(p.relative_to(VECTORS)) for p in VECTORS.rglob("*")
                       if p.is_file() and p.name != "make_vectors.py" and "__pycache__" not in p.parts)
    assert produced == committed
    for name in produced:
        if name.endswith(".json"):
            got = json.loads((tmp_path / name).read_text())
            want = json.loads((VECTORS / name).read_text())
            differences = json_differences(got, want)
            assert differences == [], f"{name}: {differences[:5]}"
