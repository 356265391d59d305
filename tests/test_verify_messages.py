"""Spec section 8, word for word: for one damage at a time, the verifier's whole answer (rule,
where, error class and message of every problem) is the one written here. A user reads these
lines; a check that names the wrong place, loses its numbers or stops early fails here."""

import sys

import h5py
import numpy as np
import pytest

from ladd_format import verify
from ladd_format.verify import _Verifier

from conftest import edit_values, rehash, replace_dataset, tamper, write_dla

verify_module = sys.modules["ladd_format.verify"]  # the package exports the function under the same name


def answer(path):
    problems = verify(path)
    assert all(p.path == str(path) for p in problems), "every problem names the file"
    return [(p.rule_number, p.where, type(p).__name__, p.message) for p in problems]


def _rewrite(f, name, data, chunks=True, **attrs):
    """Replace dataset ``name`` by ``data``, set ``attrs`` and make its sha256 agree."""
    ds = replace_dataset(f, name, data, chunks=chunks)
    ds.attrs.update(attrs)
    rehash(ds)


@pytest.fixture
def soft_file(tmp_path):
    return write_dla(tmp_path / "soft.dla.h5", soft_kind="probs")


# -- rules 2, 3 and 13: format, root attributes, row digests ---------------------------------------

def test_a_file_of_another_format_is_rule_2_and_nothing_else(dla_file):
    tamper(dla_file, lambda f: f.attrs.__setitem__("format", "something-else"))
    assert answer(dla_file) == [(2, "/", "FormatError", "not a D_LA container: format is 'something-else', "
                                "expected 'ladd-dla'")]


def test_an_hdf5_file_that_is_no_d_la_is_named_by_format_not_by_its_layout(tmp_path):
    """An unchunked dataset breaks rule 10, but a file without the format attribute is not a D_LA at all."""
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(5)
    assert [(p.rule_number, p.where, type(p).__name__) for p in verify(path)] == [(2, "/", "FormatError")]


def test_num_classes_missing(dla_file):
    tamper(dla_file, lambda f: f.attrs.__delitem__("num_classes"))
    assert answer(dla_file)[0] == (3, "/", "MissingFieldError", "root attribute 'num_classes' is missing")


@pytest.mark.parametrize("key, value, problem", [
    ("class_names", ["a", "b"], ("ShapeError", "class_names must have 10 entries, has 2")),
    ("class_names", np.arange(10), ("DtypeError", "class_names must be strings, got int64")),
    ("ipc", 0, ("AttributeValueError", "ipc must be an integer >= 1, got np.int64(0)")),
    ("num_classes", 2.5, ("AttributeValueError", "num_classes must be an integer >= 1, got np.float64(2.5)")),
], ids=["class-names-count", "class-names-type", "ipc", "num-classes"])
def test_root_attribute_problems(dla_file, key, value, problem):
    tamper(dla_file, lambda f: f.attrs.__setitem__(key, value))
    assert answer(dla_file)[0] == (3, "/", *problem)


def test_row_digests_listing_other_datasets(dla_file):
    tamper(dla_file, lambda f: f["row_sha256"].attrs.__setitem__("datasets", ["/images", "/labels"]), rows=False)
    assert answer(dla_file) == [(13, "/row_sha256", "AttributeValueError", "attribute 'datasets' must list "
                                 "['/images', '/labels', '/dense/probs'], got ['/images', '/labels']")]


def test_a_chunk_the_shape_needs_but_the_file_lacks(dla_file):
    def extra(f):
        ds = f.create_dataset("extra", shape=(64,), chunks=(8,), dtype=np.int64, fletcher32=True)
        ds[:8] = 7
    tamper(dla_file, extra)
    assert answer(dla_file) == [(15, "/extra", "LimitError",
                                 "1 of the 8 chunks the shape needs are stored (spec 2.4: every chunk is written)")]


# -- rule 4: images --------------------------------------------------------------------------------

def test_images_of_the_wrong_rank(dla_file):
    tamper(dla_file, lambda f: _rewrite(f, "images", f["images"][()][:, 0]))
    assert answer(dla_file)[0] == (4, "/images", "ShapeError",
                                   "must be (M, K, H, W) with M >= 1 and positive sides, got (12, 16, 16)")


def test_non_finite_pixels_are_counted_over_every_block(dla_file, monkeypatch):
    def to_float(f):
        x = f["images"][()].astype(np.float32) / 255
        x[0, 0, 0, 0] = np.nan
        x[4, 1, 2, 3] = np.inf
        x[4, 2, 5, 5] = -np.inf
        _rewrite(f, "images", x, chunks=(1, 3, 16, 16), space="pixel01")
    tamper(dla_file, to_float)
    monkeypatch.setattr(verify_module, "READ_BLOCK_BYTES", 1)  # one image per block
    assert answer(dla_file) == [(4, "/images", "ProbabilityError", "3 pixel values are NaN or infinite")]


# -- rule 5: labels --------------------------------------------------------------------------------

def test_labels_out_of_range_name_the_lowest_and_highest_over_every_block(dla_file, monkeypatch):
    def spread(f):
        y = f["labels"][()].copy()
        y[1], y[6], y[10] = -3, 12, 11
        _rewrite(f, "labels", y, chunks=(1,))
    tamper(dla_file, spread)
    monkeypatch.setattr(verify_module, "READ_BLOCK_BYTES", 1)
    assert answer(dla_file) == [(5, "/labels", "LabelRangeError", "3 labels outside [0, 10): found -3..12")]


def test_float_labels_are_a_dtype_problem(dla_file):
    tamper(dla_file, lambda f: _rewrite(f, "labels", f["labels"][()].astype(np.float32)))
    assert answer(dla_file) == [(5, "/labels", "DtypeError", "dtype must be an integer type, got <f4")]


# -- rule 6: soft labels ---------------------------------------------------------------------------

def test_soft_labels_of_the_wrong_shape(soft_file):
    tamper(soft_file, lambda f: _rewrite(f, "soft_labels", np.full((12, 11), 1 / 11, np.float32)))
    assert answer(soft_file) == [(6, "/soft_labels", "ShapeError", "shape must be (12, 10), got (12, 11)")]


def test_soft_labels_of_a_float64_dtype(soft_file):
    tamper(soft_file, lambda f: _rewrite(f, "soft_labels", f["soft_labels"][()].astype(np.float64)))
    assert answer(soft_file) == [(6, "/soft_labels", "DtypeError", "dtype must be float16 or float32, got float64")]


def test_soft_labels_without_a_kind(soft_file):
    tamper(soft_file, lambda f: f["soft_labels"].attrs.__delitem__("kind"))
    assert answer(soft_file) == [(6, "/soft_labels", "AttributeValueError",
                                  "attribute kind must be one of ['logits', 'probs'], got ''")]


def test_soft_labels_with_nan(soft_file):
    tamper(soft_file, lambda f: edit_values(f, "soft_labels", lambda p: p.__setitem__((3, 2), np.nan)))
    assert answer(soft_file) == [(6, "/soft_labels", "ProbabilityError", "values are NaN or infinite")]


def test_probability_rows_that_do_not_sum_to_one(soft_file):
    tamper(soft_file, lambda f: edit_values(f, "soft_labels", lambda p: p.__setitem__(5, p[5] / 2)))
    assert answer(soft_file) == [(6, "/soft_labels", "ProbabilityError",
                                  "probability rows must sum to 1 within 0.001")]


def test_one_hot_probabilities_are_valid(soft_file):
    """A probability of exactly 0 (or 1) is inside [0, 1]."""
    one_hot = np.eye(10, dtype=np.float32)[np.arange(12) % 10]
    tamper(soft_file, lambda f: edit_values(f, "soft_labels", lambda p: p.__setitem__(..., one_hot)))
    assert answer(soft_file) == []


# -- rule 7: normalization -------------------------------------------------------------------------

def test_normalization_group_missing(dla_file):
    tamper(dla_file, lambda f: f.__delitem__("normalization"))
    assert answer(dla_file) == [(7, "/normalization", "MissingFieldError", "required group is missing")]


def test_a_missing_mean_does_not_hide_a_bad_std(dla_file):
    def edit(f):
        g = f["normalization"]
        del g.attrs["mean"]
        g.attrs["std"] = np.array([0.5, 0.0, 0.5])
    tamper(dla_file, edit)
    assert answer(dla_file) == [(7, "/normalization", "MissingFieldError", "attribute 'mean' is missing"),
                                (7, "/normalization", "AttributeValueError", "std must be > 0, got [0.5, 0.0, 0.5]")]


def test_normalization_values_not_finite(dla_file):
    tamper(dla_file, lambda f: f["normalization"].attrs.__setitem__("mean", np.array([0.5, np.nan, 0.5])))
    assert answer(dla_file) == [(7, "/normalization", "AttributeValueError", "mean must be finite")]


# -- rule 8: dense labels --------------------------------------------------------------------------

def test_boxes_off_the_grid_name_the_expected_first_box(dla_file):
    """16x16, N = 3, R = 0.625: crops of round(10) pixels at offsets 0, 3, 6."""
    def shift(f):
        boxes = f["dense"].attrs["boxes"].copy()
        boxes[0, 0] += 1
        f["dense"].attrs["boxes"] = boxes
    tamper(dla_file, shift)
    assert answer(dla_file) == [(8, "/dense", "GeometryError", "boxes disagree with spec section 5 for 16x16, N=3, "
                                 "R=0.625: expected first box [0, 0, 10, 10]")]


def test_an_attribute_of_other_codecs_names_them_all(dla_file, monkeypatch):
    monkeypatch.setattr(verify_module, "dense_attr_owners", lambda: {"k": ["topk", "sparse"]})
    tamper(dla_file, lambda f: f["dense"].attrs.__setitem__("k", 3))
    assert answer(dla_file) == [(8, "/dense", "AttributeValueError",
                                 "attribute k belongs to codec topk or sparse only, codec is 'float32'")]


def test_labeler_group_missing(dla_file):
    tamper(dla_file, lambda f: f.__delitem__("dense/labeler"))
    assert answer(dla_file) == [(8, "/dense/labeler", "MissingFieldError", "group with attribute 'arch' is required")]


def test_a_grid_within_n_but_too_many_values_per_image_is_a_limit(dla_file):
    """N = 64 is allowed, but 64*64 sub-images x 5,000 classes is above N*N*C <= 2^24."""
    def edit(f):
        f.attrs["num_classes"] = 5000
        f["dense"].attrs["n"] = 64
    tamper(dla_file, edit)
    assert 64 * 64 * 5000 > 1 << 24
    assert answer(dla_file) == [(15, "/dense", "LimitError", "n = 64 with 5000 classes is above the limits N <= 64, "
                                 "N*N*C <= 16777216 (spec 2.4)")]


# -- rule 9: provenance ----------------------------------------------------------------------------

def test_provenance_group_missing(dla_file):
    tamper(dla_file, lambda f: f.__delitem__("provenance"))
    assert answer(dla_file) == [(9, "/provenance", "MissingFieldError", "required group is missing")]


def test_provenance_inputs_not_a_list(dla_file):
    tamper(dla_file, lambda f: f["provenance"].attrs.__setitem__("inputs", '{"a": 1}'))
    assert answer(dla_file) == [(9, "/provenance", "AttributeValueError", "inputs must be a JSON list")]


# -- a rule that cannot even inspect the file ------------------------------------------------------

RULES = [("check_root_digest", 12, "/"), ("check_row_digest_layout", 13, "/row_sha256"),
         ("check_images", 4, "/images"), ("check_labels", 5, "/labels"), ("check_soft_labels", 6, "/soft_labels"),
         ("check_normalization", 7, "/normalization"), ("check_dense", 8, "/dense"),
         ("check_provenance", 9, "/provenance")]


@pytest.mark.parametrize("method, rule, where", RULES, ids=[r[0] for r in RULES])
def test_a_rule_that_crashes_is_one_problem_where_it_looked_and_the_rest_still_run(soft_file, monkeypatch,
                                                                                   method, rule, where):
    def crash(self, *args):
        raise RuntimeError("boom")
    monkeypatch.setattr(_Verifier, method, crash)
    assert answer(soft_file) == [(rule, where, "LaddError", "malformed beyond checking (RuntimeError: boom)")]


def test_without_the_class_count_the_dense_rule_checks_shapes_for_one_class(soft_file, monkeypatch):
    monkeypatch.setattr(_Verifier, "check_root", lambda self: 1 / 0)
    assert answer(soft_file) == [(3, "/", "LaddError",
                                  "malformed beyond checking (ZeroDivisionError: division by zero)"),
                                 (8, "/dense/probs", "ShapeError", "shape must be (12, 9, 1), got (12, 9, 10)")]


def test_root_attributes_that_cannot_be_read(dla_file, monkeypatch):
    def unreadable(h5, path):
        raise OSError("Unable to read attribute (bad heap)\nsecond line")
    monkeypatch.setattr(verify_module, "check_format", unreadable)
    assert answer(dla_file) == [(1, "/", "LaddError", "root attributes cannot be read "
                                 "(OSError: Unable to read attribute (bad heap))")]

