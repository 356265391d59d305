"""The reader's refusals word for word, each with the file and the spec path it names; damage that
the row digests catch in every row dataset, and what is checked after them."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import write_dla

from ladd_format import DLAFile
from ladd_format import integrity
from ladd_format.errors import DigestError, LaddError


def rewrite_row(path, dataset: str, row: int, value) -> None:
    """Change one row of ``dataset`` and seal the file again (row and root digests), as a careful forger would."""
    with h5py.File(path, "r+") as h5:
        ds = h5[dataset]
        data = ds[row:row + 1]
        data[...] = value
        ds[row:row + 1] = data
        integrity.reseal(h5)


def test_plain_sets_say_what_they_lack(tmp_path):
    path = write_dla(tmp_path / "plain.dla.h5", codec=None)
    with DLAFile(path) as f:
        with pytest.raises(LaddError) as e:
            f.soft_labels()
        assert str(e.value) == f"{path}: /soft_labels: no global soft labels in this file"
        with pytest.raises(LaddError) as e:
            f.dense()
        assert str(e.value) == f"{path}: /dense: no dense labels (this is a plain distilled set D): run `ladd " \
                               "augment` first"


def test_a_missing_codec_dataset_is_named(tmp_path):
    path = write_dla(tmp_path / "d.dla.h5")
    with h5py.File(path, "r+") as h5:
        del h5["dense/probs"]
        integrity.reseal(h5)
    with pytest.raises(LaddError) as e:           # refused on opening, before any read looks for it
        DLAFile(path)
    assert str(e.value) == f"{path}: /dense/probs: dataset required by codec 'float32' is missing"


@pytest.mark.parametrize("dataset", ["dense/probs", "soft_labels"])
def test_a_damaged_row_of_any_row_dataset_is_caught_by_its_digest(tmp_path, dataset):
    path = write_dla(tmp_path / "d.dla.h5", soft_kind="probs")
    with h5py.File(path, "r+") as h5:
        ds = h5[dataset]
        row = ds[7:8]
        row[0, ..., 0] += 0.25
        ds[7:8] = row
    with DLAFile(path) as f:
        read = f.dense_stored if dataset == "dense/probs" else f.soft_labels
        read(0, 5)                                                       # rows before it still read
        with pytest.raises(DigestError) as e:
            read(5, 10)
    assert str(e.value) == f"{path}: /{dataset}: row 7 does not match its digest in /row_sha256: the data is damaged"


def test_non_finite_soft_labels_behind_a_valid_digest_are_refused(tmp_path):
    path = write_dla(tmp_path / "d.dla.h5", soft_kind="logits")
    rewrite_row(path, "soft_labels", 6, np.nan)
    with DLAFile(path) as f:
        assert f.soft_labels(0, 6).shape == (6, 10)
        with pytest.raises(LaddError) as e:
            f.soft_labels(4, 8)
    assert str(e.value) == f"{path}: /soft_labels: soft labels of images from 4 are NaN or infinite"
