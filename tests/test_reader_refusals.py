"""The reader's refusals word for word, each with the file and the spec path it names; damage that
the row digests catch in every row dataset, and what is checked after them."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import flip_chunk_byte, write_dla

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


@pytest.mark.parametrize("dataset", ["images", "labels", "dense/probs"])
def test_reading_to_the_end_of_a_damaged_dataset_names_the_rows(tmp_path, dataset):
    """stop=None reads to the end; a failing chunk names rows 0..M-1 in one line (no traceback)."""
    path = write_dla(tmp_path / "d.dla.h5", m=12)
    flip_chunk_byte(path, dataset, 0, offset=2)
    with DLAFile(path) as f:
        read = {"images": f.images, "labels": f.labels, "dense/probs": f.dense_stored}[dataset]
        with pytest.raises(LaddError) as e:
            read()
    assert str(e.value).startswith(f"{path}: /{dataset}: rows 0..11 cannot be read (chunk checksum failed or "
                                   "HDF5 metadata damaged: ")


def test_data_level_refusals_behind_valid_digests(tmp_path):
    path = write_dla(tmp_path / "l.dla.h5", m=12)
    rewrite_row(path, "labels", 3, 10)                                     # C = 10: one past the last class
    with DLAFile(path) as f:
        assert f.labels(0, 3).tolist() == [0, 1, 2]
        with pytest.raises(LaddError) as e:
            f.labels(2, 6)
    assert str(e.value) == f"{path}: /labels: labels of images from 2 lie outside [0, 10)"
    path = write_dla(tmp_path / "t.dla.h5", m=12, codec="topk", codec_config={"k": 2})
    rewrite_row(path, "dense/topk_index", 4, 12)
    with DLAFile(path) as f, pytest.raises(LaddError) as e:
        f.dense(0, 8)
    assert str(e.value) == f"{path}: /dense/topk_prob: class indices must be < C = 10, found 12 (images from 0)"


def test_the_summary_names_the_file_and_mean_std_are_float64_whatever_is_stored(tmp_path):
    path = write_dla(tmp_path / "m.dla.h5")
    with h5py.File(path, "r+") as h5:
        for key in ("mean", "std"):
            h5["normalization"].attrs[key] = h5["normalization"].attrs[key].astype(np.float32)
        integrity.reseal(h5)
    with DLAFile(path) as f:
        assert f.info()["path"] == str(path)
        assert f.mean.dtype == f.std.dtype == np.float64
        assert np.allclose(f.mean, [0.485, 0.456, 0.406], atol=1e-7)


def test_the_reader_does_not_lean_on_its_header_check_alone(tmp_path, monkeypatch):
    """With the opening check switched off, the lazy reads still refuse in one line."""
    import importlib
    reader = importlib.import_module("ladd_format.reader")
    monkeypatch.setattr(reader, "header_problems", lambda path, h5: [])
    path = write_dla(tmp_path / "a.dla.h5")
    with h5py.File(path, "r+") as h5:
        del h5["dense"].attrs["ratio"]
        del h5["normalization"]
        data = h5["labels"][()].astype(np.float64)
        del h5["labels"]
        h5["labels"] = data
    with DLAFile(path) as f:
        for read, message in ((lambda: f.ratio, "/dense: attribute 'ratio' is missing"),
                              (lambda: f.mean, "/normalization: group /normalization is missing"),
                              (lambda: f.labels(), "/labels: /labels must be integers, found float64")):
            with pytest.raises(LaddError) as e:
                read()
            assert str(e.value) == f"{path}: {message}"


def test_the_row_digest_table_is_itself_checked(tmp_path):
    path = write_dla(tmp_path / "r.dla.h5", m=12)
    with h5py.File(path, "r+") as h5:                       # one digest changed, its sha256 attribute not
        table = h5["row_sha256"]
        row = table[2:3]
        row[0, 0, 0] ^= 0xFF
        table[2:3] = row
    with DLAFile(path) as f, pytest.raises(LaddError) as e:
        f.labels()
    assert str(e.value) == f"{path}: /row_sha256: SHA-256 differs from its sha256 attribute: the row digests " \
                           "are damaged"
    path = write_dla(tmp_path / "c.dla.h5", m=12)
    flip_chunk_byte(path, "row_sha256", 0, offset=2)                    # the table's own chunk fails its checksum
    with DLAFile(path) as f, pytest.raises(LaddError) as e:
        f.labels()
    assert str(e.value).startswith(f"{path}: /row_sha256: rows 0..11 cannot be read (chunk checksum failed")


def test_float_images_with_nan_behind_a_valid_digest_are_refused(tmp_path):
    from conftest import MEAN, STD

    from ladd_format import DLAWriter
    path = tmp_path / "f.dla.h5"
    images = np.random.default_rng(0).uniform(size=(6, 3, 8, 8)).astype(np.float32)
    with DLAWriter(path, num_classes=2, image_shape=(3, 8, 8), mean=MEAN, std=STD, image_dtype="float32",
                   space="pixel01") as w:
        w.append(images, np.arange(6) % 2)
    rewrite_row(path, "images", 4, np.nan)
    with DLAFile(path) as f:
        assert np.array_equal(f.images(0, 4), images[:4])
        with pytest.raises(LaddError) as e:
            f.images(3, 6)
    assert str(e.value) == f"{path}: /images: pixel values of images from 3 are NaN or infinite"


def test_negative_starts_count_from_the_end_and_are_still_checked(tmp_path):
    path = write_dla(tmp_path / "n.dla.h5", m=12)
    with DLAFile(path) as f:
        everything = f.labels()
        assert np.array_equal(f.labels(-12), everything)             # start + M = 0
        assert np.array_equal(f.labels(-3), everything[-3:])
        assert np.array_equal(f.images(-1), f.images(11, 12))        # one row: the single-row digest path
        assert np.array_equal(f.dense_stored(-2)["probs"], f.dense_stored(10, 12)["probs"])


def test_a_read_error_without_words_is_named_by_its_type(tmp_path):
    from ladd_format.reader import read_rows

    class Failing:
        name = "/images"
        shape = (3,)

        def __getitem__(self, index):
            raise OSError()
    with pytest.raises(LaddError) as e:
        read_rows(Failing(), 0, 3, tmp_path / "x.dla.h5")
    assert str(e.value) == f"{tmp_path / 'x.dla.h5'}: /images: rows 0..2 cannot be read (chunk checksum failed or " \
                           "HDF5 metadata damaged: OSError)"


def test_damage_below_the_rules_on_opening_is_one_line_naming_the_root(tmp_path, monkeypatch):
    import importlib
    reader = importlib.import_module("ladd_format.reader")
    path = write_dla(tmp_path / "o.dla.h5")

    def broken(path, h5):
        raise SystemError("H5Aread failed\nmore")
    monkeypatch.setattr(reader, "header_problems", broken)
    with pytest.raises(LaddError) as e:
        DLAFile(path)
    assert str(e.value) == f"{path}: /: HDF5 structure is damaged (SystemError: H5Aread failed)"
