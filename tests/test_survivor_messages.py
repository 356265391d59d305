"""Word for word: the writer's, reader's and verifier's answers that the mutation run showed no test
pinned down (benchmarks/RESULTS.md, *Mutation testing*). Each expectation is written out by hand."""

import hashlib
import sys
import threading

import h5py
import numpy as np
import pytest

from ladd_format import DenseSpec, DLAWriter, open_dla, verify
from ladd_format.codecs import make_codec
from ladd_format.errors import ChecksumError, InputError, ProbabilityError
from ladd_format.h5io import text
from ladd_format.reader import read_rows

from conftest import MEAN, STD, edit_values, flip_chunk_byte, make_arrays, rehash, replace_dataset, tamper, write_dla

verify_module = sys.modules["ladd_format.verify"]


def answer(path):
    return [(p.rule_number, p.where, type(p).__name__, p.message) for p in verify(path)]


# -- writer ----------------------------------------------------------------------------------------

def _writer(path, **kwargs):
    spec = DenseSpec(n=3, ratio=0.625, codec=make_codec("float32"), labeler={"arch": "test"})
    return DLAWriter(path, num_classes=10, image_shape=(3, 16, 16), mean=MEAN, std=STD, dense=spec, **kwargs)


def test_without_a_converter_name_the_provenance_says_python(tmp_path):
    images, labels, dense = make_arrays(m=2)
    with _writer(tmp_path / "a.dla.h5") as w:
        w.append(images, labels, dense=dense)
    with h5py.File(tmp_path / "a.dla.h5") as f:
        assert text(f["provenance"].attrs["converter"]) == "python"


def test_integer_channel_statistics_are_stored_as_float64(tmp_path):
    images, labels, _ = make_arrays(m=2)
    with DLAWriter(tmp_path / "a.dla.h5", num_classes=10, image_shape=(3, 16, 16), mean=(0, 0, 0), std=(1, 1, 1)) as w:
        w.append(images, labels)
    with h5py.File(tmp_path / "a.dla.h5") as f:
        assert f["normalization"].attrs["mean"].dtype == np.float64
        assert f["normalization"].attrs["std"].dtype == np.float64


def test_the_hashing_thread_is_named(tmp_path):
    images, labels, dense = make_arrays(m=2)
    with _writer(tmp_path / "a.dla.h5") as w:
        w.append(images, labels, dense=dense)
        names = [t.name for t in threading.enumerate()]
    assert any(name.startswith("ladd-sha256") for name in names)


@pytest.mark.parametrize("value, message", [
    (np.nan, "probabilities contain NaN or infinite values"),
    (np.inf, "probabilities contain NaN or infinite values"),
    (1.5, "probabilities must lie in [0, 1], found 0..1.5"),
])
def test_bad_dense_probabilities_name_the_file_and_dense(tmp_path, value, message):
    path = tmp_path / "a.dla.h5"
    images, labels, dense = make_arrays(m=2)
    dense = dense.astype(np.float64)
    dense[1, 2] = 0.0
    dense[1, 2, 4] = value
    w = _writer(path)
    with pytest.raises(ProbabilityError) as info:
        w.append(images, labels, dense=dense)
    w.abort()
    assert (info.value.message, info.value.path, info.value.where) == (message, str(path), "/dense")


def test_class_names_of_the_wrong_count_name_the_file(tmp_path):
    path = tmp_path / "a.dla.h5"
    with pytest.raises(InputError) as info:
        _writer(path, class_names=["a", "b"])
    assert (info.value.message, info.value.path) == ("class_names has 2 entries, num_classes is 10", str(path))


def test_an_empty_set_is_refused_word_for_word(tmp_path):
    path = tmp_path / "a.dla.h5"
    with pytest.raises(InputError) as info:
        _writer(path).close()
    assert (info.value.message, info.value.path) == ("no images were written; a D_LA holds at least one", str(path))


# -- reader ----------------------------------------------------------------------------------------

class _Unreadable:
    name = "/images"

    def __init__(self, message):
        self.message = message

    def __getitem__(self, key):
        raise OSError(self.message)


@pytest.mark.parametrize("message, detail", [
    ("x" * 300, "x" * 160),
    ("  first line\nsecond line", "first line"),
    ("", "OSError"),
])
def test_an_unreadable_row_range_names_the_first_160_characters_of_the_cause(message, detail):
    with pytest.raises(ChecksumError) as info:
        read_rows(_Unreadable(message), 4, 8, "set.dla.h5")
    assert info.value.message == ("rows 4..7 cannot be read (chunk checksum failed or HDF5 metadata damaged: "
                                  f"{detail})")
    assert (info.value.path, info.value.where) == ("set.dla.h5", "/images")


def test_soft_labels_to_the_end_of_a_damaged_dataset(tmp_path):
    path = write_dla(tmp_path / "s.dla.h5", soft_kind="probs")
    flip_chunk_byte(path, "soft_labels", 0)
    with open_dla(path) as f, pytest.raises(ChecksumError, match=r"rows 0\.\.11 cannot be read"):
        f.soft_labels()


def test_info_names_the_classes(tmp_path):
    path = write_dla(tmp_path / "a.dla.h5", class_names=[f"class {i}" for i in range(10)])
    with open_dla(path) as f:
        assert f.info()["class_names"] == [f"class {i}" for i in range(10)]


# -- verify ----------------------------------------------------------------------------------------

def test_dense_value_problems_name_the_first_image_they_are_seen_in(dla_file, monkeypatch):
    def bad_row(p):
        p[3, 0] = 0.5 / 10          # image 3's first sub-image sums to 0.5
    tamper(dla_file, lambda f: edit_values(f, "dense/probs", bad_row))
    monkeypatch.setattr(verify_module, "READ_BLOCK_BYTES", 1)  # one image per block
    (rule, where, kind, message), = answer(dla_file)
    assert (rule, where, kind) == (8, "/dense/probs", "ProbabilityError")
    assert message.endswith("(first seen in images from 3)")


def test_every_missing_dense_dataset_is_named(tmp_path):
    path = write_dla(tmp_path / "t.dla.h5", codec="topk", codec_config={"k": 3})

    def drop(f):
        del f["dense/topk_index"]
        del f["dense/topk_prob"]
    tamper(path, drop)
    problems = [(p.where, p.message) for p in verify(path)]
    assert ("/dense/topk_index", "dataset required by codec 'topk' is missing") in problems
    assert ("/dense/topk_prob", "dataset required by codec 'topk' is missing") in problems


def test_a_ratio_of_zero_is_refused(dla_file):
    tamper(dla_file, lambda f: f["dense"].attrs.__setitem__("ratio", 0.0))
    assert answer(dla_file) == [(8, "/dense", "AttributeValueError", "ratio must be in (0, 1], got 0.0")]


def test_a_ratio_whose_crops_are_empty_is_a_geometry_problem(dla_file):
    """R = 0.01 of 16 pixels rounds to a crop side of 0: the stored boxes cannot follow spec 5."""
    tamper(dla_file, lambda f: f["dense"].attrs.__setitem__("ratio", 0.01))
    (rule, where, kind, message), = answer(dla_file)
    assert (rule, where, kind) == (8, "/dense", "GeometryError") and message.startswith("geometry: ")


def test_a_changed_dataset_names_both_digests(dla_file):
    tamper(dla_file, lambda f: f["labels"].attrs.__setitem__("sha256", "ab" * 32))
    with h5py.File(dla_file) as f:
        actual = hashlib.sha256(f["labels"][()].astype("<i8").tobytes()).hexdigest()
    assert answer(dla_file) == [(11, "/labels", "ChecksumError", f"SHA-256 of the data is {actual[:16]}..., attribute "
                                 "sha256 says abababababababab...: the data changed after writing")]


def test_every_dense_dataset_of_the_wrong_dtype_is_named(tmp_path):
    path = write_dla(tmp_path / "t.dla.h5", codec="topk", codec_config={"k": 3})

    def retype(f):
        for name, dtype in (("dense/topk_index", np.int32), ("dense/topk_prob", np.float64)):
            rehash(replace_dataset(f, name, f[name][()].astype(dtype)))
    tamper(path, retype)
    assert [(p.where, p.message) for p in verify(path)] == [
        ("/dense/topk_index", "dtype must be uint16 for codec 'topk', got int32"),
        ("/dense/topk_prob", "dtype must be float16 for codec 'topk', got float64")]
