"""Spec section 8: the verifier catches every defect, one clear line each; ``ladd verify`` exits 1."""

import shutil

import h5py
import numpy as np
import pytest

from cli.main import main
from ladd_format import open_dla, verify
from ladd_format import errors as E

from conftest import write_dla


def tamper(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)
    return path


def replace_dataset(f, name, data, **kwargs):
    attrs = dict(f[name].attrs)
    del f[name]
    ds = f.create_dataset(name, data=data, chunks=True, fletcher32=True, **kwargs)
    for key, value in attrs.items():
        ds.attrs[key] = value
    return ds


def problems_of(path):
    problems = verify(path)
    assert problems, "the defect was not detected"
    for p in problems:
        assert "\n" not in str(p) and str(path) in str(p)
    return problems


def has(problems, cls, where=None, text=None):
    return any(isinstance(p, cls) and (where is None or p.where == where)
               and (text is None or text in p.message) for p in problems)


def test_valid_file_passes(dla_file, runner):
    assert verify(dla_file) == []
    result = runner.invoke(main, ["verify", str(dla_file)])
    assert result.exit_code == 0 and result.output.startswith("OK ")


def test_rule_file_not_hdf5(tmp_path):
    path = tmp_path / "x.dla.h5"
    path.write_bytes(b"this is not an HDF5 file at all" * 10)
    (p,) = verify(path)
    assert isinstance(p, E.NotHDF5Error) and "not an HDF5 file" in str(p)


def test_rule_file_truncated(dla_file):
    data = dla_file.read_bytes()
    dla_file.write_bytes(data[: len(data) // 2])
    (p,) = problems_of(dla_file)
    assert isinstance(p, E.TruncatedFileError) and "truncated" in p.message


def test_rule_format_wrong(dla_file):
    tamper(dla_file, lambda f: f.attrs.__setitem__("format", "something-else"))
    (p,) = problems_of(dla_file)
    assert isinstance(p, E.FormatError) and "'something-else'" in p.message


def test_rule_format_unknown_major_version(dla_file):
    tamper(dla_file, lambda f: f.attrs.__setitem__("format_version", "2.0"))
    (p,) = problems_of(dla_file)
    assert isinstance(p, E.UnsupportedVersionError) and "2.0" in p.message
    with pytest.raises(E.UnsupportedVersionError):
        open_dla(dla_file)


def test_rule_format_higher_minor_version_is_accepted(dla_file):
    tamper(dla_file, lambda f: f.attrs.__setitem__("format_version", "1.7"))
    assert verify(dla_file) == []


@pytest.mark.parametrize("name", ["images", "labels"])
def test_rule_missing_dataset(dla_file, name):
    tamper(dla_file, lambda f: f.__delitem__(name))
    assert has(problems_of(dla_file), E.MissingFieldError, f"/{name}")
    with pytest.raises(E.MissingFieldError):
        open_dla(dla_file)


def test_rule_missing_dense_dataset(dla_file):
    tamper(dla_file, lambda f: f.__delitem__("dense/probs"))
    assert has(problems_of(dla_file), E.MissingFieldError, "/dense/probs")


def test_rule_labels_shape_mismatch(dla_file):
    tamper(dla_file, lambda f: replace_dataset(f, "labels", np.zeros(11, np.int64)))
    assert has(problems_of(dla_file), E.ShapeError, "/labels", "(12,)")


def test_rule_dense_shape_mismatch(dla_file):
    tamper(dla_file, lambda f: replace_dataset(f, "dense/probs", np.full((12, 9, 9), 1 / 9, np.float32)))
    assert has(problems_of(dla_file), E.ShapeError, "/dense/probs")


def test_rule_dtype_mismatch(dla_file):
    tamper(dla_file, lambda f: replace_dataset(f, "labels", np.zeros(12, np.float32)))
    assert has(problems_of(dla_file), E.DtypeError, "/labels")


def test_rule_dense_dtype_disagrees_with_codec(dla_file):
    tamper(dla_file, lambda f: replace_dataset(f, "dense/probs", np.full((12, 9, 10), 0.1, np.float64)))
    assert has(problems_of(dla_file), E.DtypeError, "/dense/probs", "float32")


def test_rule_labels_out_of_range(dla_file):
    def fn(f):
        f["labels"][3] = 10  # still passes its checksums chunk-wise? fletcher32 is recomputed on write
    tamper(dla_file, fn)
    problems = problems_of(dla_file)
    assert has(problems, E.LabelRangeError, "/labels", "outside [0, 10)")
    assert has(problems, E.ChecksumError, "/labels", "SHA-256")  # data changed after writing


@pytest.mark.parametrize("value,text", [(np.nan, "NaN"), (-0.5, "[0, 1]"), (0.5, "sum to 1")])
def test_rule_dense_probabilities(dla_file, value, text):
    def fn(f):
        f["dense/probs"][2, 4, 7] = value
    tamper(dla_file, fn)
    assert has(problems_of(dla_file), E.ProbabilityError, "/dense/probs", text)


def test_rule_soft_label_probs(tmp_path):
    path = write_dla(tmp_path / "s.dla.h5", soft_kind="probs")
    tamper(path, lambda f: f["soft_labels"].__setitem__((0, 0), 3.0))
    assert has(problems_of(path), E.ProbabilityError, "/soft_labels")


def test_rule_checksum_flipped_byte_in_chunk(dla_file):
    with h5py.File(dla_file) as f:
        info = f["images"].id.get_chunk_info(5)
    data = bytearray(dla_file.read_bytes())
    data[info.byte_offset + 100] ^= 0xFF
    dla_file.write_bytes(bytes(data))
    problems = problems_of(dla_file)
    assert has(problems, E.ChecksumError, "/images", "fletcher32")
    assert "rows 5..5" in str(problems[0])
    with open_dla(dla_file) as f:
        f.images(0, 5)  # the intact chunks still read
        with pytest.raises(E.ChecksumError, match="rows 5..5"):
            f.images(5, 6)


def test_rule_checksum_sha256_mismatch(dla_file):
    tamper(dla_file, lambda f: f["images"].attrs.__setitem__("sha256", "0" * 64))
    assert has(problems_of(dla_file), E.ChecksumError, "/images", "SHA-256")


def test_rule_checksum_missing_sha256(dla_file):
    tamper(dla_file, lambda f: f["images"].attrs.__delitem__("sha256"))
    assert has(problems_of(dla_file), E.MissingFieldError, "/images", "sha256")


def test_rule_filters_fletcher32_required(dla_file):
    def fn(f):
        data, attrs = f["labels"][()], dict(f["labels"].attrs)
        del f["labels"]
        ds = f.create_dataset("labels", data=data, chunks=True)
        ds.attrs.update(attrs)
    tamper(dla_file, fn)
    assert has(problems_of(dla_file), E.FilterError, "/labels", "fletcher32")


def test_rule_dense_boxes_disagree_with_geometry(dla_file):
    def fn(f):
        boxes = f["dense"].attrs["boxes"]
        boxes[0, 0] = 1
        f["dense"].attrs["boxes"] = boxes
    tamper(dla_file, fn)
    assert has(problems_of(dla_file), E.GeometryError, "/dense", "spec section 5")


def test_rule_dense_boxes_outside_image(dla_file):
    tamper(dla_file, lambda f: f["dense"].attrs.__setitem__("boxes", np.array([[10, 10, 16, 16]] * 9, np.int32)))
    assert has(problems_of(dla_file), E.GeometryError, "/dense", "inside")


def test_rule_dense_unknown_codec(dla_file):
    tamper(dla_file, lambda f: f["dense"].attrs.__setitem__("codec", "bfloat8"))
    assert has(problems_of(dla_file), E.CodecError, "/dense", "unknown codec")


def test_rule_dense_labeler_required(dla_file):
    tamper(dla_file, lambda f: f.__delitem__("dense/labeler"))
    assert has(problems_of(dla_file), E.MissingFieldError, "/dense/labeler")


def test_rule_normalization(dla_file):
    tamper(dla_file, lambda f: f["normalization"].attrs.__setitem__("std", np.array([0.2, 0.0])))
    problems = problems_of(dla_file)
    assert has(problems, E.ShapeError, "/normalization") and has(problems, E.AttributeValueError, "/normalization")


def test_rule_images_space(dla_file):
    tamper(dla_file, lambda f: f["images"].attrs.__setitem__("space", "pixel01"))
    assert has(problems_of(dla_file), E.AttributeValueError, "/images", "pixel255")


def test_rule_provenance(dla_file):
    tamper(dla_file, lambda f: f["provenance"].attrs.__setitem__("inputs", "{not json"))
    assert has(problems_of(dla_file), E.AttributeValueError, "/provenance", "JSON")


def test_rule_root_num_classes(dla_file):
    tamper(dla_file, lambda f: f.attrs.__setitem__("num_classes", 0))
    assert has(problems_of(dla_file), E.AttributeValueError, "/", "num_classes")


@pytest.mark.parametrize("codec,config", [("uint8", {}), ("topk", {"k": 3, "values": "float16"})])
def test_rule_dense_quantised_codecs(tmp_path, codec, config):
    path = write_dla(tmp_path / "q.dla.h5", codec=codec, codec_config=config)
    assert verify(path) == []
    if codec == "uint8":
        tamper(path, lambda f: f["dense/probs"].__setitem__((0, 0), np.full(10, 200, np.uint8)))
        target = "/dense/probs"
    else:
        tamper(path, lambda f: f["dense/topk_index"].__setitem__((0, 0), np.array([1, 1, 2], np.uint16)))
        target = "/dense/topk_prob"
    assert has(problems_of(path), E.ProbabilityError, target)


def test_cli_verify_prints_one_line_per_problem_and_exits_1(dla_file, runner, tmp_path):
    copy = tmp_path / "copy.dla.h5"
    shutil.copy(dla_file, copy)
    def fn(f):
        f.attrs["num_classes"] = 3
        f["images"].attrs["sha256"] = "0" * 64
    tamper(copy, fn)
    result = runner.invoke(main, ["verify", str(copy)])
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(verify(copy)) >= 2
    assert all(line.startswith(str(copy) + ": /") for line in lines)
    assert "Traceback" not in result.output


def test_cli_verify_on_garbage_file(tmp_path, runner):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"\x00" * 100)
    result = runner.invoke(main, ["verify", str(path)])
    assert result.exit_code == 1 and "not an HDF5 file" in result.output and "Traceback" not in result.output


def test_rule_dense_k_only_with_topk(dla_file):
    tamper(dla_file, lambda f: f["dense"].attrs.__setitem__("k", 3))
    assert has(problems_of(dla_file), E.AttributeValueError, "/dense", "topk only")


def test_rule_dense_topk_rows_hold_at_least_k_over_c(tmp_path):
    path = write_dla(tmp_path / "q.dla.h5", codec="topk", codec_config={"k": 3, "values": "float16"})
    tamper(path, lambda f: f["dense/topk_prob"].__setitem__((0, 0), np.zeros(3, np.float16)))
    assert has(problems_of(path), E.ProbabilityError, "/dense/topk_prob", "k/C")


def test_malformed_layouts_are_reported_not_raised(dla_file, runner):
    def fn(f):
        del f["labels"]
        f["labels"] = 3                     # a scalar dataset
        del f["normalization"]
        f.create_group("normalization")     # without mean/std
        del f["dense"].attrs["n"]
    tamper(dla_file, fn)
    problems = problems_of(dla_file)
    assert has(problems, E.ShapeError, "/labels") and has(problems, E.MissingFieldError, "/dense", "'n'")
    assert has(problems, E.MissingFieldError, "/normalization", "'mean'")
    for command in (["verify"], ["info"], ["size"]):
        result = runner.invoke(main, [*command, str(dla_file)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
