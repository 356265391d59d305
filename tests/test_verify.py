"""Spec section 8: the verifier catches every defect, one clear line each; ``ladd verify`` exits 1."""

import json
import re
import shutil

import h5py
import numpy as np
import pytest

from ladd_cli.main import main
from ladd_format import open_dla, verify
from ladd_format import errors as E
from ladd_format.spec.rules import Rule
from ladd_format.verify import summary

from conftest import flip_chunk_byte, rehash, replace_dataset, tamper, write_dla


def _unsealed(fn, rows_only=False):
    """Damage applied without resealing the root digest (or, ``rows_only``, without the row digests)."""
    return ("path", lambda p: tamper(p, fn, reseal=rows_only, rows=False))


def _outside_file(kind):
    def fn(path):
        other = path.with_name("outside.h5")
        with h5py.File(other, "w") as g:
            g["x"] = np.arange(12)
        raw = path.with_name("outside.bin")
        raw.write_bytes(b"SECRET" * 16)

        def edit(f):
            if kind == "external-link":
                f["extra"] = h5py.ExternalLink(str(other), "/x")
            elif kind == "soft-link":
                f["extra"] = h5py.SoftLink("/labels")
            else:
                f.create_dataset("extra", shape=(96,), dtype=np.uint8, external=[(str(raw), 0, 96)])
        tamper(path, edit)
    return ("path", fn)


def _declared(shape, chunks, written):
    def fn(f):
        ds = f.create_dataset("extra", shape=shape, chunks=chunks, dtype=np.int64, fletcher32=True)
        if written:
            ds[:written] = 7
        ds.attrs["sha256"] = "0" * 64
    return fn


def assert_numbered(problems):
    """Every problem the verifier reports names its numbered rule of spec section 8, never "general"."""
    for p in problems:
        assert isinstance(p.rule, Rule) and p.rule_name == E.RULES[p.rule_number], (p, p.rule)


def problems_of(path):
    problems = verify(path)
    assert problems, "the defect was not detected"
    for p in problems:
        assert "\n" not in str(p) and str(path) in str(p)
    assert_numbered(problems)
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
    assert (p.rule_number, p.rule_name) == (1, "file")


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
    flip_chunk_byte(dla_file, "images", 5)
    problems = problems_of(dla_file)
    assert has(problems, E.ChecksumError, "/images", "fletcher32")
    # one bad chunk: named by its rows, without a count of more
    assert [p.message for p in problems if p.where == "/images"] == [
        "fletcher32 checksum fails in the chunk holding rows 5..5: the data is corrupt"]
    with open_dla(dla_file) as f:
        f.images(0, 5)  # the intact chunks still read
        with pytest.raises(E.ChecksumError, match="rows 5..5") as info:
            f.images(5, 6)
    assert (info.value.rule_number, info.value.rule_name) == (11, "checksums")  # outside verify: from the class


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
    numbers = [re.search(r" \[rule (\d+) (\w+)\]$", line) for line in lines]
    assert all(numbers) and [int(n[1]) for n in numbers] == [p.rule_number for p in verify(copy)]
    assert {int(n[1]) for n in numbers} >= {5, 11} and all(E.RULES[int(n[1])] == n[2] for n in numbers)
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
        f.create_dataset("labels", data=np.zeros((12, 2), np.int64), chunks=True, fletcher32=True)  # 2-D
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


def test_scalar_dataset_is_refused_before_anything_is_read(dla_file, runner):
    tamper(dla_file, lambda f: (f.__delitem__("labels"), f.__setitem__("labels", 3)))
    (problem,) = problems_of(dla_file)
    assert (problem.rule_number, problem.where) == (10, "/labels") and "scalar" in problem.message
    with pytest.raises(E.FilterError):
        open_dla(dla_file)


# -- every problem names the rule of spec section 8 it breaks ------------------------------------------

def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])




def _set(name, key, value):
    return lambda f: f[name].attrs.__setitem__(key, value)


def _delete_attr(name, key):
    return lambda f: f[name].attrs.__delitem__(key)


def _set_value(name, index, value):
    def fn(f):
        f[name][index] = value
        rehash(f[name])                     # the data changed but its sha256 agrees: rule 11 holds
    return fn


def _recreate(name, transform=None, **kwargs):
    """An edit that rewrites dataset ``name`` with h5py options ``kwargs`` (and its data through
    ``transform``), keeping its attributes."""
    def fn(f):
        data, attrs = f[name][()], dict(f[name].attrs)
        del f[name]
        f.create_dataset(name, data=data if transform is None else transform(data), **kwargs).attrs.update(attrs)
    return fn


# (rule, id, keyword arguments of write_dla, damage: a function of the open h5py.File or, for damage
# that is not an HDF5 edit, of the path). Each damage breaks exactly one rule.
DAMAGE = [
    (1, "file-truncated", {}, ("path", _truncate)),
    (1, "file-not-hdf5", {}, ("path", lambda p: p.write_bytes(b"not HDF5" * 64))),
    (2, "format-wrong", {}, _set("/", "format", "something-else")),
    (2, "format-version-missing", {}, _delete_attr("/", "format_version")),
    (2, "format-major-2", {}, _set("/", "format_version", "2.0")),
    (3, "root-ipc-zero", {}, _set("/", "ipc", 0)),
    (3, "root-class-names-count", {}, _set("/", "class_names", ["a", "b", "c"])),
    (4, "images-space", {}, _set("images", "space", "pixel01")),
    (4, "images-chunk-shape", {}, _recreate("images", chunks=(2, 3, 16, 16), fletcher32=True)),
    (5, "labels-out-of-range", {}, _set_value("labels", 3, 10)),
    (5, "labels-missing", {}, lambda f: f.__delitem__("labels")),
    (6, "soft-labels-kind", {"soft_kind": "probs"}, _set("soft_labels", "kind", "scores")),
    (6, "soft-labels-probs", {"soft_kind": "probs"}, _set_value("soft_labels", (0, 0), 3.0)),
    (6, "soft-labels-shape", {"soft_kind": "probs"}, lambda f: rehash(replace_dataset(
        f, "soft_labels", np.concatenate([f["soft_labels"][()], np.zeros((12, 1), np.float32)], axis=1)))),
    (7, "normalization-std-zero", {}, _set("normalization", "std", np.array([0.229, 0.0, 0.225]))),
    (7, "normalization-std-negative", {}, _set("normalization", "std", np.array([0.229, -0.2, 0.225]))),
    (7, "normalization-missing", {}, lambda f: f.__delitem__("normalization")),
    (8, "dense-resize", {}, _set("dense", "resize", "nearest")),
    (8, "dense-temperature-negative", {}, _set("dense", "temperature", -1.0)),
    (8, "dense-probs-values", {}, _set_value("dense/probs", (2, 4, 7), 0.5)),
    (8, "dense-labeler-missing", {}, lambda f: f.__delitem__("dense/labeler")),
    (12, "root-digest-attribute-changed", {}, _unsealed(_set("normalization", "mean", np.array([0.97, 0.456, 0.406])))),
    (12, "root-digest-missing", {}, _delete_attr("/", "root_sha256")),
    (13, "row-digest-row-changed", {}, _unsealed(_set_value("labels", 3, 1), rows_only=True)),
    (13, "row-digests-missing", {}, lambda f: f.__delitem__("row_sha256")),
    (13, "row-digests-list", {}, _set("row_sha256", "datasets", ["/images", "/labels", "/dense/other"])),
    (14, "external-link", {}, _outside_file("external-link")),
    (14, "soft-link", {}, _outside_file("soft-link")),
    (14, "external-raw-storage", {}, _outside_file("external-storage")),
    (15, "declared-rows-beyond-file", {}, _declared((10**9,), (4096,), 0)),
    (15, "chunks-not-written", {}, _declared((64,), (8,), 8)),
    (8, "dense-topk-index-repeated", {"codec": "topk", "codec_config": {"k": 3, "values": "float16"}},
     _set_value("dense/topk_index", (0, 0), np.array([1, 1, 2], np.uint16))),
    (9, "provenance-tool-missing", {}, _delete_attr("provenance", "tool")),
    (9, "provenance-inputs-not-json", {}, _set("provenance", "inputs", "{not json")),
    (10, "filters-no-fletcher32", {}, _recreate("labels", chunks=True)),
    (10, "filters-not-chunked", {}, _recreate("labels")),
    (11, "checksums-images-sha256", {}, _set("images", "sha256", "0" * 64)),
    (11, "checksums-labels-sha256-missing", {}, _delete_attr("labels", "sha256")),
    (11, "checksums-dense-sha256", {}, _set("dense/probs", "sha256", "0" * 64)),
    (11, "checksums-images-fletcher32", {}, ("path", lambda p: flip_chunk_byte(p, "images", 5))),
    (11, "checksums-dense-fletcher32", {}, ("path", lambda p: flip_chunk_byte(p, "dense/probs", 0))),
    (11, "checksums-stream-sha256", {"stream_mix": "cutmix"}, _set("stream/box", "sha256", "0" * 64)),
    (16, "stream-mix-unknown", {"stream_mix": "cutmix"}, _set("stream", "mix", "blend")),
    (16, "stream-image-beyond-m", {"stream_mix": "cutmix"}, _set_value("stream/image", 1, 12)),
    (16, "stream-teacher-missing", {"stream_mix": "none"}, lambda f: f.__delitem__("stream/teacher")),
    (17, "stream-batch-digest", {"stream_mix": "mixup"},
     _unsealed(_set_value("stream/mix_lambda", 1, 0.75), rows_only=True)),
    (17, "stream-batch-digests-list", {"stream_mix": "none"},
     _set("stream/batch_sha256", "datasets", ["/stream/image", "/stream/box"])),
    (18, "stream-tail-rank-above-c", {"stream_mix": "cutmix", "stream_codec": "topk:k=3,values=uint8,tail=2"},
     _set("stream/tail", "rank", np.int64(11))),
    (18, "stream-tail-basis-nan", {"stream_mix": "none", "stream_codec": "topk:k=3,values=uint8,tail=2"},
     _set_value("stream/tail/basis", (0, 0), np.nan)),
    (18, "stream-tail-batch-digest", {"stream_mix": "mixup", "stream_codec": "topk:k=3,values=uint8,tail=2"},
     _set_value("stream/tail/coef", (1, 0), 99)),
]


def damaged(tmp_path, write_kwargs, damage):
    path = write_dla(tmp_path / "d.dla.h5", **write_kwargs)
    assert verify(path) == []
    if isinstance(damage, tuple):
        damage[1](path)
    else:
        tamper(path, damage)
    return path


def json_problems(runner, path):
    """``ladd verify --json``: exit 1, and every problem names its numbered rule, never "general"."""
    result = runner.invoke(main, ["verify", "--json", str(path)])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["problems"]
    assert report["problems"] == summary(verify(path))["problems"]
    for p in report["problems"]:
        assert set(p) == {"rule", "rule_name", "where", "message", "error"}
        assert isinstance(p["rule"], int) and E.RULES[p["rule"]] == p["rule_name"] != "general"
        assert "general" not in json.dumps(p["rule"]) + p["rule_name"]
    assert_numbered(verify(path))
    return report["problems"]


def test_damage_table_covers_every_numbered_rule():
    assert {rule for rule, *_ in DAMAGE} == set(E.RULES) == set(range(1, 19))


@pytest.mark.parametrize("rule,kwargs,damage", [pytest.param(r, k, d, id=f"rule{r:02d}-{i}")
                                                for r, i, k, d in DAMAGE])
def test_verify_reports_the_rule_broken(tmp_path, runner, rule, kwargs, damage):
    problems = json_problems(runner, damaged(tmp_path, kwargs, damage))
    assert {p["rule"] for p in problems} == {rule}, problems


def test_std_not_positive_is_rule_7(dla_file, runner):
    tamper(dla_file, _set("normalization", "std", np.array([0.229, 0.0, 0.225])))
    (p,) = json_problems(runner, dla_file)
    assert (p["rule"], p["rule_name"], p["where"], p["error"]) == (7, "normalization", "/normalization",
                                                                    "AttributeValueError")
    assert "std must be > 0" in p["message"]


def test_bad_resize_is_rule_8(dla_file, runner):
    tamper(dla_file, _set("dense", "resize", "nearest"))
    (p,) = json_problems(runner, dla_file)
    assert (p["rule"], p["rule_name"], p["where"]) == (8, "dense", "/dense") and "resize" in p["message"]


def test_negative_temperature_is_rule_8(dla_file, runner):
    tamper(dla_file, _set("dense", "temperature", -1.0))
    (p,) = json_problems(runner, dla_file)
    assert (p["rule"], p["rule_name"], p["where"]) == (8, "dense", "/dense") and "temperature" in p["message"]


def test_missing_provenance_tool_is_rule_9(dla_file, runner):
    tamper(dla_file, _delete_attr("provenance", "tool"))
    (p,) = json_problems(runner, dla_file)
    assert (p["rule"], p["rule_name"], p["where"], p["error"]) == (9, "provenance", "/provenance",
                                                                    "MissingFieldError")
    assert "'tool'" in p["message"]


def test_checksum_found_while_checking_dense_is_rule_11(dla_file, runner):
    flip_chunk_byte(dla_file, "dense/probs", 0)
    (p,) = json_problems(runner, dla_file)
    assert (p["rule"], p["rule_name"], p["where"], p["error"]) == (11, "checksums", "/dense/probs",
                                                                    "ChecksumError")


def test_several_rules_broken_at_once_each_named(dla_file, runner):
    def fn(f):
        f.attrs["ipc"] = 0
        f["images"].attrs["sha256"] = "0" * 64
        f["dense"].attrs["temperature"] = 0.0
        del f["provenance"].attrs["tool"]
    tamper(dla_file, fn)
    assert [p["rule"] for p in json_problems(runner, dla_file)] == [3, 11, 8, 9]


def test_malformed_beyond_checking_names_the_rule_being_run(dla_file, runner):
    tamper(dla_file, _set("dense", "ratio", "not a number"))   # float() fails inside rule 8
    problems = json_problems(runner, dla_file)
    assert {p["rule"] for p in problems} == {8}


def test_errors_outside_verify_keep_a_meaningful_rule():
    assert (E.ChecksumError("x").rule_number, E.ChecksumError("x").rule_name) == (11, "checksums")
    assert E.ChecksumError("x").rule is Rule.CHECKSUMS
    assert E.InputError("x").rule is None and E.InputError("x").rule_number is None   # no spec rule
    assert E.InputError("x").rule_label == "none"
    assert E.MissingFieldError("x").at_rule(9).rule_label == "9 provenance"
    assert E.MissingFieldError.rule is None            # at_rule sets the instance, not the class


def test_a_bad_chunk_of_many_rows_is_named_by_its_own_rows(tmp_path):
    """/labels in chunks of 4 rows: damage in the second and third chunks names rows 4..7 and one more."""
    path = write_dla(tmp_path / "c.dla.h5", m=12, max_chunk_rows=4)
    with h5py.File(path) as f:
        assert f["labels"].chunks == (4,)
    for chunk in (1, 2):
        flip_chunk_byte(path, "labels", chunk)
    problems = [p for p in problems_of(path) if p.where == "/labels"]
    assert [p.message for p in problems] == [
        "fletcher32 checksum fails in the chunk holding rows 4..7 (and 1 more chunks): the data is corrupt"]


def test_damage_below_the_rules_is_one_rule_1_problem_naming_the_file(tmp_path, monkeypatch):
    """An exception from deep in h5py while checking becomes one problem under rule 1 with the file,
    "/" and the exception's first line."""
    import importlib
    verify_module = importlib.import_module("ladd_format.verify")
    path = write_dla(tmp_path / "d.dla.h5")

    def broken_run(self):
        raise SystemError("H5Oget_info failed\nsecond line")
    monkeypatch.setattr(verify_module._Verifier, "run", broken_run)
    problems = verify(path)
    assert len(problems) == 1 and problems[0].rule_number == 1
    assert str(problems[0]) == f"{path}: /: HDF5 structure is damaged (SystemError: H5Oget_info failed)"


def test_float_boxes_are_refused_even_when_their_values_are_right(tmp_path):
    """Spec 4.5: boxes is an int32 array; a float copy of the right values is not accepted."""
    path = write_dla(tmp_path / "b.dla.h5")
    tamper(path, lambda f: f["dense"].attrs.__setitem__("boxes", f["dense"].attrs["boxes"].astype(np.float64)))
    problems = [p for p in problems_of(path) if p.where == "/dense"]
    assert [p.message for p in problems] == [
        "boxes must be an integer (N*N, 4) array [top, left, height, width] inside the 16x16 image"]


def test_row_digest_layout_and_unchunked_datasets_word_for_word(tmp_path):
    missing = write_dla(tmp_path / "m.dla.h5")
    with h5py.File(missing, "r+") as h5:
        del h5["row_sha256"]
    assert "required dataset is missing (required since format 1.1)" in \
        [p.message for p in problems_of(missing) if p.where == "/row_sha256"]
    with h5py.File(missing, "r+") as h5:
        h5.create_group("row_sha256")
    assert [p.message for p in problems_of(missing) if p.where == "/row_sha256"] == ["must be a dataset, found a group"]
    flat = write_dla(tmp_path / "c.dla.h5")
    with h5py.File(flat, "r+") as h5:                         # /labels rewritten without chunks
        _recreate("labels")(h5)
    found = problems_of(flat)
    assert [p.message for p in found if p.where == "/labels"] == ["must be chunked (spec section 2)"]
    assert not any("structure is damaged" in p.message for p in found)


def _messages(path, where):
    return [p.message for p in problems_of(path) if p.where == where]


def test_non_finite_float_pixels_are_counted_over_the_whole_dataset(tmp_path):
    from conftest import MEAN, STD

    from ladd_format import DLAWriter
    path = tmp_path / "f.dla.h5"
    with DLAWriter(path, num_classes=2, image_shape=(3, 8, 8), mean=MEAN, std=STD, image_dtype="float32",
                   space="pixel01") as w:
        w.append(np.full((6, 3, 8, 8), 0.5, np.float32), np.arange(6) % 2)

    def poison(f):
        data = f["images"][()]
        data[0, 0, 0, 0] = np.nan
        data[5, 1, 2, 3] = np.inf
        data[5, 2, 2, 3] = -np.inf
        f["images"][...] = data
        rehash(f["images"])
    tamper(path, poison)
    assert _messages(path, "/images") == ["3 pixel values are NaN or infinite"]


def test_image_layout_problems_word_for_word(tmp_path):
    path = write_dla(tmp_path / "s.dla.h5")
    tamper(path, lambda f: f["images"].attrs.__delitem__("space"))
    assert _messages(path, "/images") == ["uint8 images must have space 'pixel255', got ''"]
    path = write_dla(tmp_path / "c.dla.h5")

    tamper(path, _recreate("images", chunks=(2, 3, 16, 16), fletcher32=True))
    assert _messages(path, "/images") == ["chunk shape must be (1, 3, 16, 16), got (2, 3, 16, 16)"]


def test_structure_problems_name_their_object_word_for_word(tmp_path):
    path = write_dla(tmp_path / "g.dla.h5")

    def regroup(f):
        del f["labels"]
        f.create_group("labels")
    tamper(path, regroup)
    assert "must be a dataset, found a group" in _messages(path, "/labels")
    path = write_dla(tmp_path / "n.dla.h5")
    tamper(path, lambda f: f.attrs.__setitem__("class_names", np.arange(10)))
    assert "class_names must be strings, got int64" in _messages(path, "/")
    path = write_dla(tmp_path / "r.dla.h5")

    tamper(path, _recreate("row_sha256", lambda d: d.astype(np.float64), chunks=True, fletcher32=True), reseal=False)
    shape = h5py.File(path)["row_sha256"].shape
    assert f"must be uint8 of shape {shape}, got float64 {shape}" in _messages(path, "/row_sha256")


def test_a_changed_label_is_named_by_its_row_digest(tmp_path):
    path = write_dla(tmp_path / "d.dla.h5")

    def change(f):
        f["labels"][3] = 7
        rehash(f["labels"])
    tamper(path, change, rows=False)
    assert _messages(path, "/labels") == [
        "row 3 does not match its digest in /row_sha256 (spec 2.2): the data is damaged"]


def test_too_many_classes_is_a_limit_problem(tmp_path):
    path = write_dla(tmp_path / "l.dla.h5")
    tamper(path, lambda f: f.attrs.__setitem__("num_classes", np.int64((1 << 24) + 1)))
    found = [p for p in problems_of(path) if p.where == "/" and "above the limit" in p.message]
    assert len(found) == 1 and isinstance(found[0], E.LimitError) and found[0].rule_name == "limits"
    assert found[0].message == f"num_classes {(1 << 24) + 1} is above the limit {1 << 24} (spec 2.4)"

