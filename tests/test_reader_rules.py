"""Spec rules that readers hold for what they return, on files damaged as an attacker would damage
them (every digest recomputed: the dataset's ``sha256``, the row digests and the root digest), so
that only the value rule itself can catch the change.

- Rule 6 (spec 4.3): probability soft labels lie in [0, 1] and each row sums to 1. Section 8: a
  reader checks the values the rules bound for every row it returns; ``open_dla(...).soft_labels()``
  and ``DLADataset(soft_labels=True)`` refuse such a row, naming the file, the dataset and the row.
- Rule 8's codec tolerances (dense rows) and rules 4/5 (finite pixels, label range) were already
  held by the reader: kept here as the list of what section 8 covers.
- Section 2: a fixed-length string's value is its bytes up to the first NUL: the reader, ``info``
  and the verifier agree on it, and the writer refuses a string holding a NUL.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import edit_values, write_dla

from ladd_cli.main import main
from ladd_format import DLAWriter, integrity, open_dla, verify
from ladd_format.errors import InputError, LabelRangeError, ProbabilityError
from ladd_format.torch import DLADataset

BAD_ROW = 4


def forge(path, dataset: str, fn) -> None:
    """Edit the values of ``dataset`` with ``fn`` and recompute every digest, as an attacker would."""
    with h5py.File(path, "r+") as h5:
        edit_values(h5, dataset, fn)
        integrity.reseal(h5)


def negative(data):
    """Row BAD_ROW becomes [-0.5, 1.5, 0, ...]: it still sums to 1, but leaves [0, 1]."""
    data[BAD_ROW] = 0
    data[BAD_ROW, :2] = (-0.5, 1.5)


def half(data):
    """Row BAD_ROW is halved: values in [0, 1], summing to 0.5."""
    data[BAD_ROW] *= 0.5


DAMAGE = {"negative": (negative, r"lie in \[0, 1\]"), "sums to 0.5": (half, "sum to 1")}


@pytest.fixture(params=["float32", "float16"])
def soft_dtype(request):
    return request.param


def forged_soft(tmp_path, damage: str, soft_dtype: str = "float32"):
    path = write_dla(tmp_path / "soft.dla.h5", soft_kind="probs", **({} if soft_dtype == "float32"
                                                                     else {"soft_dtype": soft_dtype}))
    fn, _ = DAMAGE[damage]
    forge(path, "soft_labels", fn)
    return path


def expect_row_error(exc_info, path) -> None:
    line = str(exc_info.value)
    assert line.startswith(f"{path}: /soft_labels: row {BAD_ROW}: ") and "\n" not in line, line
    assert exc_info.value.rule_number == 6


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_verify_rejects_the_forged_file_under_rule_6(tmp_path, damage, soft_dtype):
    path = forged_soft(tmp_path, damage, soft_dtype)
    assert {p.rule_number for p in verify(path)} == {6}       # only the value rule sees it


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_open_dla_soft_labels_refuses_the_row(tmp_path, damage, soft_dtype):
    path = forged_soft(tmp_path, damage, soft_dtype)
    _, message = DAMAGE[damage]
    with open_dla(path) as f:
        assert f.soft_labels(0, BAD_ROW).shape == (BAD_ROW, 10)           # the rows before it still read
        assert f.soft_labels(BAD_ROW + 1).shape == (12 - BAD_ROW - 1, 10)  # and the rows after it
        for start, stop in ((0, None), (BAD_ROW, BAD_ROW + 1), (2, 8), (-12 + BAD_ROW, -7)):
            with pytest.raises(ProbabilityError, match=message) as e:
                f.soft_labels(start, stop)
            expect_row_error(e, path)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("in_memory", [False, True])
def test_dla_dataset_refuses_the_row(tmp_path, damage, in_memory):
    path = forged_soft(tmp_path, damage)
    if in_memory:                               # everything is read at construction: refused there
        with pytest.raises(ProbabilityError) as e:
            DLADataset(path, soft_labels=True, in_memory=True)
        expect_row_error(e, path)
        return
    ds = DLADataset(path, soft_labels=True)
    ok = ds[BAD_ROW - 1][3]
    assert torch.isclose(ok.sum(), torch.tensor(1.0), atol=1e-3) and bool((ok >= 0).all())
    for read in (lambda: ds[BAD_ROW], lambda: ds.batch([7, BAD_ROW, 0]), lambda: ds.targets([BAD_ROW])):
        with pytest.raises(ProbabilityError) as e:
            read()
        expect_row_error(e, path)
    assert ds.batch([0, 1], targets=False)[0].shape[0] == 2            # no soft labels asked: no refusal


def test_logit_soft_labels_may_be_any_finite_value(tmp_path):
    """Rule 6 bounds logits only by finiteness: negative rows that do not sum to 1 are valid."""
    path = write_dla(tmp_path / "logits.dla.h5", soft_kind="logits")
    forge(path, "soft_labels", negative)
    assert verify(path) == []
    with open_dla(path) as f:
        assert f.soft_labels()[BAD_ROW, 0] == -0.5


def test_dense_rows_and_labels_were_already_held(tmp_path):
    """The other value rules of section 8 for returned rows (already held before rule 6 was): dense
    rows off their codec's tolerance (rule 8) and labels outside [0, C) (rule 5), forged the same way."""
    path = write_dla(tmp_path / "dense.dla.h5")
    forge(path, "dense/probs", half)
    assert {p.rule_number for p in verify(path)} == {8}
    with open_dla(path) as f, pytest.raises(ProbabilityError, match="/dense/probs"):
        f.dense(BAD_ROW, BAD_ROW + 1)
    with pytest.raises(ProbabilityError):
        DLADataset(path)[BAD_ROW]
    path = write_dla(tmp_path / "labels.dla.h5")
    forge(path, "labels", lambda data: data.__setitem__(BAD_ROW, 10))
    with open_dla(path) as f, pytest.raises(LabelRangeError):
        f.labels()


# -- section 2: a string's value ends at its first NUL --------------------------------------------------
def store_fixed(obj, name: str, stored) -> None:
    width = max(len(v) for v in stored) if isinstance(stored, list) else len(stored)
    obj.attrs.create(name, np.array(stored, dtype=f"S{width}"), dtype=h5py.string_dtype("utf-8", width))


def test_class_names_end_at_the_first_nul_for_reader_info_and_verify(tmp_path, runner):
    path = write_dla(tmp_path / "names.dla.h5", class_names=[f"c{i}" for i in range(10)])
    with h5py.File(path, "r+") as h5:
        store_fixed(h5, "class_names", [b"cat\0dog"] + [f"c{i}".encode() for i in range(1, 10)])
        store_fixed(h5, "source_dataset", b"cifar10\0imagenet")
        store_fixed(h5["images"], "space", b"pixel255\0zca")
        assert bytes(h5.attrs["class_names"][0]) == b"cat\0dog"            # h5py keeps what follows the NUL
        integrity.reseal(h5)
    assert verify(path) == []                                               # the values are valid
    with open_dla(path) as f:
        assert f.class_names[:2] == ["cat", "c1"] and f.space == "pixel255"
        assert f.info()["class_names"][0] == "cat" and f.info()["source_dataset"] == "cifar10"
    data = json.loads(runner.invoke(main, ["info", str(path), "--json"]).output)
    assert data["class_names"][0] == "cat" and data["source_dataset"] == "cifar10"
    result = runner.invoke(main, ["info", str(path)])
    assert "names       cat, c1," in result.output and "dog" not in result.output


def test_the_root_digest_covers_values_not_the_bytes_after_a_nul(tmp_path):
    """Spec 2.1 hashes a string's value; bytes after its NUL are not part of it (nor of what a
    reader returns), so changing them keeps the digest, and changing the value does not."""
    path = write_dla(tmp_path / "d.dla.h5", class_names=[f"c{i}" for i in range(10)])
    names = [f"c{i}".encode() for i in range(10)]
    with h5py.File(path, "r+") as h5:
        store_fixed(h5, "class_names", [b"c0\0aaa"] + names[1:])
        integrity.reseal(h5)
        sealed = integrity.root_digest(h5)
        store_fixed(h5, "class_names", [b"c0\0bbbbb"] + names[1:])
        assert integrity.root_digest(h5) == sealed
        store_fixed(h5, "class_names", names)                              # the same values, no NUL at all
        assert integrity.root_digest(h5) == sealed
        store_fixed(h5, "class_names", [b"c9\0aaa"] + names[1:])
        assert integrity.root_digest(h5) != sealed


def test_the_writer_refuses_a_string_holding_a_nul(tmp_path):
    images = np.zeros((1, 1, 2, 2), np.uint8)
    for kwargs in ({"class_names": ["a\0b", "c"]}, {"source_dataset": "cifar\0x"}, {"distillation": "m\0"}):
        out = tmp_path / "o.dla.h5"
        with pytest.raises(InputError, match="NUL"):
            with DLAWriter(out, num_classes=2, image_shape=(1, 2, 2), mean=(0.5,), std=(0.25,), **kwargs) as w:
                w.append(images, np.array([0]))
        assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("soft_kind", ["probs", "logits"])
@pytest.mark.parametrize("in_memory", [False, True], ids=["file", "memory"])
def test_every_soft_label_dla_dataset_returns_is_a_probability_row(tmp_path, soft_kind, in_memory):
    """``DLADataset`` returns soft labels as probabilities whatever the file stores (logits through
    a softmax, spec 4.3), so what it returns holds rule 6's bounds for probabilities on every path:
    one item, ``batch()`` and ``targets()``."""
    path = write_dla(tmp_path / "soft.dla.h5", soft_kind=soft_kind)
    ds = DLADataset(path, soft_labels=True, in_memory=in_memory)
    order = [7, 2, 2, 11, 0]
    for what, soft in (("items", torch.stack([ds[i][3] for i in order])), ("batch", ds.batch(order)[3]),
                       ("targets", ds.targets(order)[1])):
        assert soft.shape == (len(order), 10) and soft.dtype == torch.float32, what
        assert bool(((soft >= 0) & (soft <= 1)).all()), what
        assert torch.allclose(soft.sum(-1), torch.ones(len(order)), rtol=0, atol=1e-3), what


def test_every_string_the_format_names_is_read_up_to_its_first_nul(tmp_path):
    """The codec, the resize rule and the soft-label kind too: a NUL and bytes after it change nothing."""
    path = write_dla(tmp_path / "d.dla.h5", codec="uint8", soft_kind="probs")
    with open_dla(path) as f:
        dense, soft = f.dense(), f.soft_labels()
    with h5py.File(path, "r+") as h5:
        store_fixed(h5["dense"], "codec", b"uint8\0float32")
        store_fixed(h5["dense"], "resize", b"bilinear-antialias\0nearest")
        store_fixed(h5["soft_labels"], "kind", b"probs\0logits")
        integrity.reseal(h5)
    assert verify(path) == []
    with open_dla(path) as f:
        assert f.codec.name == "uint8" and f.soft_kind == "probs"
        assert np.array_equal(f.dense(), dense) and np.array_equal(f.soft_labels(), soft)
