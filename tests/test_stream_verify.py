"""Rules 16 (stream) and 17 (stream_digests): the verifier and the reader on damaged relabel streams.

The files come from ``conftest.write_dla(stream_mix=...)``: M = 12 images of 16 x 16, C = 10, a
stream of 2 epochs and 3 batches (4, 2 | 3 records, B = 4), crops 8 x 8, codec topk k = 3 uint8.
Each edit is resealed (``tamper``: row and batch digests, root digest) unless the test says
otherwise, so it breaks only the rule it is meant to break.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ladd_format import LaddError, open_dla, verify
from ladd_format import spec as S
from ladd_format.spec.rules import Rule

from conftest import flip_chunk_byte, rehash, replace_dataset, tamper, write_dla


def stream_file(tmp_path, mix="cutmix", codec="topk:k=3,values=uint8"):
    path = write_dla(tmp_path / "s.dla.h5", stream_mix=mix, stream_codec=codec)
    assert verify(path) == []
    return path


def rules_of(path) -> set[int]:
    return {p.rule_number for p in verify(path)}


def only_rule(path, rule: Rule, where: str | None = None, text: str | None = None):
    problems = verify(path)
    assert {p.rule for p in problems} == {rule}, [str(p) for p in problems]
    if where is not None:
        assert any(p.where == where for p in problems), [str(p) for p in problems]
    if text is not None:
        assert any(text in p.message for p in problems), [str(p) for p in problems]
    for p in problems:
        assert "\n" not in str(p) and str(path) in str(p)
    return problems


def set_values(name, fn):
    """An edit of dataset ``name``'s values through ``fn`` (on a copy), its sha256 made to agree."""
    def edit(f):
        data = f[name][()]
        fn(data)
        f[name][...] = data
        rehash(f[name])
    return edit


def reader_error(path, batch: int | None = None) -> LaddError:
    """The reader's one-line error: on opening, on ``.stream``, or on reading ``batch`` (every batch
    when None)."""
    with pytest.raises(LaddError) as err:
        with open_dla(path) as f:
            s = f.stream
            for b in (range(s.num_batches) if batch is None else [batch]):
                s.read_batch(b)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    return err.value


# -- valid files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mix", ["none", "cutmix", "mixup"])
@pytest.mark.parametrize("codec", ["topk:k=3,values=uint8", "uint8", "float16", "logits:float32"])
def test_valid_streams_verify_and_read(tmp_path, mix, codec):
    path = stream_file(tmp_path, mix, codec)
    with open_dla(path) as f:
        s = f.stream
        assert [len(b) for e in range(2) for b in s.read_epoch(e)] == [4, 2, 3]


def test_a_file_without_a_stream_verifies(tmp_path):
    path = write_dla(tmp_path / "d.dla.h5")
    assert verify(path) == []
    with h5py.File(path, "r") as h5:
        assert S.STREAM not in h5


def test_a_1_1_file_holding_a_stream_group_ignores_it(tmp_path):
    """/stream exists since 1.2; in a file that declares 1.1 it is an unknown group (section 2)."""
    path = stream_file(tmp_path)
    tamper(path, lambda f: f.attrs.__setitem__(S.VERSION_ATTR, "1.1"))
    with open_dla(path) as f:
        assert not f.has_stream
    tamper(path, lambda f: f[S.STREAM].attrs.__setitem__(S.MIX_ATTR, "blend"))
    assert verify(path) == []


def test_the_root_digest_covers_the_stream(tmp_path):
    path = stream_file(tmp_path)
    tamper(path, lambda f: f["stream/teacher"].attrs.__setitem__("epochs", np.int64(90)), reseal=False)
    only_rule(path, Rule.ROOT_DIGEST, "/")
    with pytest.raises(LaddError) as err:
        open_dla(path)
    assert err.value.rule == Rule.ROOT_DIGEST


def test_row_digests_do_not_list_the_stream(tmp_path):
    path = stream_file(tmp_path)
    with h5py.File(path, "r") as h5:
        listed = [v.decode() for v in h5[S.ROW_DIGESTS].attrs[S.ROW_DIGESTS_DATASETS]]
    assert listed == ["/images", "/labels", "/dense/probs"]
    # listing a stream dataset there is rule 13
    tamper(path, lambda f: f[S.ROW_DIGESTS].attrs.__setitem__(S.ROW_DIGESTS_DATASETS, [*listed, "/stream/image"]))
    assert rules_of(path) == {13}


# -- rule 17: batch digests ---------------------------------------------------------------------------
def test_a_changed_stream_value_is_rule_17_in_the_verifier_and_the_reader(tmp_path):
    path = stream_file(tmp_path)
    # box of record 5 (batch 1) changed, its sha256 made to agree, the batch digests left as written
    tamper(path, set_values("stream/box", lambda d: d.__setitem__((5, 0), 0 if d[5, 0] else 1)), rows=False)
    only_rule(path, Rule.STREAM_DIGESTS, "/stream/box", "batch 1 does not match its digest")
    with open_dla(path) as f:
        f.stream.read_batch(0)                  # the other batches still read
        f.stream.read_batch(2)
        with pytest.raises(LaddError) as err:
            f.stream.read_batch(1)
    assert err.value.rule == Rule.STREAM_DIGESTS and err.value.where == "/stream/box"
    assert "batch 1" in str(err.value)


def test_a_changed_stream_value_without_rehash_is_rules_11_and_17(tmp_path):
    path = stream_file(tmp_path, "mixup")
    def edit(f):
        f["stream/mix_lambda"][2] = 0.5 if f["stream/mix_lambda"][2] != 0.5 else 0.25
    tamper(path, edit, rows=False)
    problems = verify(path)
    assert {(p.rule_number, p.where) for p in problems} == {(11, "/stream/mix_lambda"), (17, "/stream/mix_lambda")}


def test_a_flipped_byte_of_a_stream_chunk_is_refused(tmp_path):
    path = stream_file(tmp_path)
    flip_chunk_byte(path, "stream/topk_index", 0, offset=4)
    problems = verify(path)
    assert {(p.rule_number, p.where) for p in problems} == {(11, "/stream/topk_index")}
    err = reader_error(path, 0)
    assert err.rule == Rule.STREAM_DIGESTS and err.where == "/stream/topk_index"


def test_digest_table_of_the_wrong_shape_is_rule_17(tmp_path):
    path = stream_file(tmp_path)
    tamper(path, lambda f: rehash(replace_dataset(f, "stream/batch_sha256", f["stream/batch_sha256"][:2])))
    only_rule(path, Rule.STREAM_DIGESTS, "/stream/batch_sha256", "shape")
    err = reader_error(path)
    assert err.rule == Rule.STREAM_DIGESTS and err.where == "/stream/batch_sha256"


def test_digest_table_listing_other_datasets_is_rule_17(tmp_path):
    path = stream_file(tmp_path, "none")
    listed = ["/stream/image", "/stream/flip", "/stream/box", "/stream/topk_index", "/stream/topk_prob"]
    tamper(path, lambda f: f["stream/batch_sha256"].attrs.__setitem__("datasets", listed))
    only_rule(path, Rule.STREAM_DIGESTS, "/stream/batch_sha256", "must list")
    assert reader_error(path).rule == Rule.STREAM_DIGESTS


# -- rule 16: declaration and layout ---------------------------------------------------------------
@pytest.mark.parametrize("key, value, text", [
    ("mix", "blend", "mix must be"), ("mode", "shuffled", "mode must be"), ("resize", "nearest", "resize must be"),
    ("temperature", -1.0, "temperature"), ("batch_size", 0, "batch_size"), ("kind", "scores", "kind"),
    ("codec", "float64", "unknown codec"), ("crop_size", np.array([8, 0]), "crop_size"),
    ("sampler", "{not json", "JSON"),
])
def test_a_wrong_attribute_is_rule_16_on_open_and_in_verify(tmp_path, key, value, text):
    path = stream_file(tmp_path)
    tamper(path, lambda f: f[S.STREAM].attrs.__setitem__(key, value))
    only_rule(path, Rule.STREAM, "/stream", text)
    with pytest.raises(LaddError) as err:
        open_dla(path)                                      # the header checks of opening include rule 16
    assert err.value.rule == Rule.STREAM and "\n" not in str(err.value)


def test_a_missing_attribute_or_teacher_is_rule_16(tmp_path):
    path = stream_file(tmp_path)
    tamper(path, lambda f: f[S.STREAM].attrs.__delitem__("epochs"))
    only_rule(path, Rule.STREAM, "/stream", "'epochs' is missing")
    path = write_dla(tmp_path / "t.dla.h5", stream_mix="cutmix")
    tamper(path, lambda f: f["stream/teacher"].attrs.__delitem__("arch"))
    only_rule(path, Rule.STREAM, "/stream/teacher", "arch")


def test_k_with_another_codec_is_rule_16(tmp_path):
    path = stream_file(tmp_path, codec="uint8")
    tamper(path, lambda f: f[S.STREAM].attrs.__setitem__("k", np.int64(3)))
    only_rule(path, Rule.STREAM, "/stream", "belongs to codec topk")


def test_stream_limits_are_rule_15(tmp_path):
    path = stream_file(tmp_path)
    tamper(path, lambda f: f[S.STREAM].attrs.__setitem__("epochs", np.int64(10_001)))
    only_rule(path, Rule.LIMITS, "/stream", "limit")


def test_a_missing_or_extra_dataset_is_rule_16(tmp_path):
    path = stream_file(tmp_path)
    tamper(path, lambda f: f.__delitem__("stream/mix_box"))
    problems = verify(path)
    assert {p.rule for p in problems} == {Rule.STREAM} and any(p.where == "/stream/mix_box" for p in problems)
    path = write_dla(tmp_path / "x.dla.h5", stream_mix="none")
    tamper(path, lambda f: rehash(f.create_dataset("stream/extra", data=np.zeros(9, np.int64), chunks=True,
                                                   fletcher32=True)))
    only_rule(path, Rule.STREAM, "/stream/extra", "not one of the stream's")


def test_a_wrong_dtype_or_shape_is_rule_16(tmp_path):
    path = stream_file(tmp_path)
    tamper(path, lambda f: rehash(replace_dataset(f, "stream/flip", f["stream/flip"][()].astype(np.int16))))
    only_rule(path, Rule.STREAM, "/stream/flip", "dtype must be uint8")
    path = write_dla(tmp_path / "y.dla.h5", stream_mix="cutmix")
    tamper(path, lambda f: rehash(replace_dataset(f, "stream/image", f["stream/image"][:8])))
    only_rule(path, Rule.STREAM, None, "shape must be")


# -- rule 16: starts -----------------------------------------------------------------------------------
def test_batch_start_not_increasing_is_rule_16(tmp_path):
    path = stream_file(tmp_path)
    tamper(path, set_values("stream/batch_start", lambda d: d.__setitem__(2, 4)))
    only_rule(path, Rule.STREAM, "/stream/batch_start", "increase strictly")
    err = reader_error(path)
    assert err.rule == Rule.STREAM and err.where == "/stream/batch_start"


def test_a_batch_longer_than_b_is_rule_16(tmp_path):
    path = stream_file(tmp_path)
    tamper(path, set_values("stream/batch_start", lambda d: d.__setitem__(1, 5)))   # batch 0: 5 records > B = 4
    only_rule(path, Rule.STREAM, "/stream/batch_start", "more than batch_size 4")
    assert reader_error(path).rule == Rule.STREAM


def test_epoch_start_beyond_the_batches_is_rule_16(tmp_path):
    path = stream_file(tmp_path)
    tamper(path, set_values("stream/epoch_start", lambda d: d.__setitem__(1, 3)))
    only_rule(path, Rule.STREAM, "/stream/epoch_start", "< 3")


def test_a_damaged_batch_start_is_refused_by_the_reader(tmp_path):
    path = stream_file(tmp_path)
    tamper(path, set_values("stream/batch_start", lambda d: None))
    tamper(path, lambda f: f["stream/batch_start"].attrs.__setitem__("sha256", "0" * 64))
    assert rules_of(path) == {11}
    err = reader_error(path)
    assert err.rule == Rule.STREAM and err.where == "/stream/batch_start"


# -- rule 16: values --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mix, name, edit, text", [
    ("cutmix", "image", lambda d: d.__setitem__(7, 12), "record 7: image index 12 is outside [0, M = 12)"),
    ("cutmix", "box", lambda d: d.__setitem__(7, [10, 0, 7, 3]), "record 7: box [10, 0, 7, 3]"),
    ("none", "box", lambda d: d.__setitem__((0, 3), 0), "is not inside 16 x 16"),
    ("none", "flip", lambda d: d.__setitem__(8, 2), "record 8: flip is 2, not 0 or 1"),
    ("cutmix", "mix_partner", lambda d: d.__setitem__(5, 2), "outside its batch of 2 records"),
    ("cutmix", "mix_box", lambda d: d.__setitem__(2, [4, 4, 5, 1]), "batch 2: box [4, 4, 5, 1]"),
    ("mixup", "mix_lambda", lambda d: d.__setitem__(1, 1.5), "batch 1: mix lambda 1.5 is not in [0, 1]"),
    # the codec's problems are reported against its values dataset, as /dense's are
    ("none", "topk_index", lambda d: d.__setitem__((3, 1), d[3, 0]), "distinct"),
    ("none", "topk_index", lambda d: d.__setitem__((3, 1), 10), "< C = 10"),
])
def test_a_value_out_of_bounds_is_rule_16_in_verify_and_read_batch(tmp_path, mix, name, edit, text):
    path = stream_file(tmp_path, mix)
    tamper(path, set_values(f"stream/{name}", edit))       # sha256 and batch digests agree: only 16 breaks
    where = "/stream/topk_prob" if name == "topk_index" else f"/stream/{name}"
    only_rule(path, Rule.STREAM, where, text)
    err = reader_error(path)
    assert err.rule == Rule.STREAM and err.where == where and text in str(err)


def test_non_finite_logits_are_rule_16(tmp_path):
    path = stream_file(tmp_path, "none", "logits:float16")
    tamper(path, set_values("stream/logits", lambda d: d.__setitem__((2, 3), np.inf)))
    only_rule(path, Rule.STREAM, "/stream/logits", "NaN or infinite")
    assert reader_error(path).rule == Rule.STREAM


def test_uint8_rows_off_their_sum_are_rule_16(tmp_path):
    path = stream_file(tmp_path, "none", "uint8")
    tamper(path, set_values("stream/probs", lambda d: d.__setitem__(4, 0)))
    only_rule(path, Rule.STREAM, "/stream/probs", "sum to 255")


def test_pil_resize_with_float_images_is_rule_16(tmp_path):
    path = stream_file(tmp_path)
    def edit(f):
        f[S.STREAM].attrs[S.RESIZE_ATTR] = S.RESIZE_PIL
        f[S.IMAGES].attrs[S.SPACE_ATTR] = "pixel01"
    tamper(path, edit)
    assert Rule.STREAM in {p.rule for p in verify(path)}


def test_a_stream_too_broken_to_read_still_has_its_checksums_checked(tmp_path):
    path = stream_file(tmp_path)
    def edit(f):
        f[S.STREAM].attrs["mix"] = "blend"
        f["stream/image"].attrs["sha256"] = "0" * 64
    tamper(path, edit)
    problems = verify(path)
    assert {(p.rule_number, p.where) for p in problems} == {(16, "/stream"), (11, "/stream/image")}


def test_a_stream_dataset_instead_of_a_group_is_one_rule_16_problem(tmp_path):
    path = write_dla(tmp_path / "d.dla.h5")
    tamper(path, lambda f: rehash(f.create_dataset("stream", data=np.zeros(3, np.int64), chunks=True,
                                                   fletcher32=True)))
    (problem,) = verify(path)
    assert (problem.rule, problem.where) == (Rule.STREAM, "/stream") and "must be a group" in problem.message
    with pytest.raises(LaddError) as err:
        open_dla(path)
    assert err.value.rule == Rule.STREAM
