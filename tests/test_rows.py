"""Bounded memory: rows read and written a block at a time (``ladd_format.rows``), and the
converters, the export and the labeler pass that go through them."""

import json
import math
import tracemalloc
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ladd_format import open_dla, verify
from ladd_format.converters import ConvertOptions, convert
from ladd_format.converters.inputs import npz_members
from ladd_format.errors import InputError
from ladd_format.export import export
from ladd_format.pixels import channel_stats, to_uint8
from ladd_format.rows import Rows, as_rows, block_rows, npy_member_rows, write_npy, write_npy_member

from conftest import make_arrays, write_dla


def member_rows(path, key):
    member = npz_members(path)[key]
    return npy_member_rows(path, member.info, member.header, key, member.shape, member.dtype)


def test_rows_slice_map_and_read_whole():
    data = np.arange(24, dtype=np.int32).reshape(6, 4)
    reads = []
    rows = Rows(data.shape, data.dtype, lambda a, b: reads.append((a, b)) or data[a:b])
    assert (rows.shape, rows.ndim, rows.size, rows.nbytes, len(rows)) == ((6, 4), 2, 24, 96, 6)
    assert rows[1:3].tolist() == data[1:3].tolist() and rows[-1].tolist() == data[5].tolist()
    assert rows[4:100].shape == (2, 4) and rows[5:2].shape == (0, 4)
    with pytest.raises(IndexError):
        rows[6]
    with pytest.raises(TypeError):
        rows[::2]
    doubled = rows.map(lambda b: b[:, :2] * 2, (2,), np.int64)
    assert doubled.shape == (6, 2) and doubled.dtype == np.int64 and doubled[2:4].tolist() == [[16, 18], [24, 26]]
    assert np.asarray(rows.astype(np.float32)).dtype == np.float32
    assert rows.astype(np.int32, copy=False) is rows
    assert np.array_equal(np.asarray(rows), data) and as_rows(rows) is rows
    assert np.array_equal(as_rows(data)[2:5], data[2:5])


def test_block_rows_bounds():
    assert block_rows(1 << 20) == 32 and block_rows(1 << 40) == 1 and block_rows(0) == 32 << 20
    assert block_rows(1 << 20, cap=8) == 8 and block_rows(1 << 40, cap=8) == 1


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_member_rows_read_forward_backward_and_as_stored(tmp_path, save):
    images = np.random.default_rng(0).integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
    big_endian = np.arange(40 * 5, dtype=">f4").reshape(40, 5)
    path = tmp_path / "a.npz"
    save(path, images=images, values=big_endian)
    rows = member_rows(path, "images")
    assert rows.shape == images.shape and rows.dtype == np.uint8
    assert np.array_equal(rows[0:7], images[0:7]) and np.array_equal(rows[20:40], images[20:40])
    assert np.array_equal(rows[3:5], images[3:5])           # before the last read: starts the member again
    assert np.array_equal(np.asarray(rows), images)
    values = member_rows(path, "values")
    assert values.dtype == np.dtype(">f4") and np.array_equal(values[10:12], big_endian[10:12])


def test_damaged_member_data_is_one_line_naming_file_and_key(tmp_path):
    images = np.zeros((50, 3, 8, 8), np.uint8)
    images[17, 1] = 7                                       # a marker to find in the stored bytes
    path = tmp_path / "a.npz"
    np.savez(path, images=images, labels=np.zeros(50, np.int64))
    data = bytearray(path.read_bytes())
    at = data.index(bytes([7] * 64))
    data[at + 3] = 9                                        # CRC-32 of the member no longer holds
    path.write_bytes(bytes(data))
    rows = member_rows(path, "images")
    assert rows[0:10].shape == (10, 3, 8, 8)                # what is read before the end is handed out
    with pytest.raises(InputError) as err:
        rows[10:50]
    assert str(err.value).startswith(f"{path}: key images: its data cannot be read (Bad CRC-32")
    out = tmp_path / "out.dla.h5"
    with pytest.raises(InputError, match="key images: its data cannot be read"):
        convert("npz", path, out, ConvertOptions(num_classes=10))
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


def test_write_npy_parts_round_trip_and_wrong_count(tmp_path):
    parts = [np.arange(6, dtype=np.int64).reshape(2, 3), np.arange(6, 9).reshape(1, 3)]
    write_npy(tmp_path / "a.npy", (3, 3), ">i2", parts)
    back = np.load(tmp_path / "a.npy")
    assert back.dtype == np.dtype(">i2") and back.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    write_npy(tmp_path / "s.npy", (), "<U5", [np.array("hello")])
    assert np.load(tmp_path / "s.npy").item() == "hello"
    with pytest.raises(ValueError, match="5 values written for an array of shape \\(2, 3\\)"):
        write_npy(tmp_path / "b.npy", (2, 3), np.int64, [np.arange(5)])
    with pytest.raises(ValueError, match="9 values written"):
        with open(tmp_path / "c.npy", "wb") as fp:
            write_npy_member(fp, (2, 3), np.int64, [np.arange(6), np.arange(3)])


def test_channel_stats_in_blocks_equals_the_definition(monkeypatch):
    images = np.random.default_rng(1).integers(0, 256, (37, 3, 9, 7), dtype=np.uint8)
    x = images / 255.0
    monkeypatch.setattr("ladd_format.pixels.blocks", lambda a, rows: ((s, a[s:s + 5]) for s in range(0, len(a), 5)))
    mean, std = channel_stats(as_rows(images))
    assert np.allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12, atol=0)
    assert np.allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-12, atol=0)


def _npz(path, m, side, c=10, floats=False, seed=0):
    images, labels, dense = make_arrays(m, c=c, side=side, n=3, seed=seed)
    if floats:
        images = images.astype(np.float32) / 255 + np.float32(0.3 / 255)
        np.savez_compressed(path, images=images, labels=labels, dense_labels=dense, n=3, ratio=0.5,
                            num_classes=c, space="pixel01")
    else:
        np.savez(path, images=images, labels=labels, dense_labels=dense, n=3, ratio=0.5, num_classes=c)
    return images, labels, dense


@pytest.mark.parametrize("floats", [False, True])
def test_block_size_does_not_change_the_converted_file(tmp_path, monkeypatch, floats):
    images, _, _ = _npz(tmp_path / "in.npz", 30, 16, floats=floats)
    whole = convert("npz", tmp_path / "in.npz", tmp_path / "whole.dla.h5", ConvertOptions())
    monkeypatch.setattr("ladd_format.rows.BLOCK_BYTES", 3000)       # a few images per block
    small = convert("npz", tmp_path / "in.npz", tmp_path / "small.dla.h5", ConvertOptions())
    assert whole.notes == small.notes
    with open_dla(whole.output) as a, open_dla(small.output) as b:
        for name in ("images", "labels", *(f"dense/{key}" for key in a.dense_stored(0, 1))):
            assert np.array_equal(a.h5[name][()], b.h5[name][()])
        report_a, report_b = a.provenance["report"], b.provenance["report"]
    assert verify(small.output) == []
    if floats:
        _, expected = to_uint8(images, "pixel01", (0.0,) * 3, (1.0,) * 3)
        for report in (report_a, report_b):
            assert report["uint8_conversion"]["psnr_db"] == pytest.approx(expected["psnr_db"], rel=1e-9)
            assert report["uint8_conversion"]["clipped_fraction"] == expected["clipped_fraction"]
    else:
        assert report_a == report_b and "uint8_conversion" not in report_a


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_convert_and_export_npz_hold_blocks_not_the_set(tmp_path, monkeypatch):
    """numpy reports its buffers to tracemalloc: the peak of Python-side allocations stays a small
    fraction (1/8) of the 29 MB of images and dense labels when blocks are 64 KiB (whole arrays would
    take at least all of it; what remains is of constant size: 1 MiB SHA-256 reads, imports)."""
    _npz(tmp_path / "warm.npz", 4, 64)
    convert("npz", tmp_path / "warm.npz", tmp_path / "warm.dla.h5", ConvertOptions())   # imports done
    export(tmp_path / "warm.dla.h5", tmp_path / "warm_out.npz", "npz")
    export(tmp_path / "warm.dla.h5", tmp_path / "warm_folder", "folder")
    images, _, dense = _npz(tmp_path / "in.npz", 2400, 64)
    monkeypatch.setattr("ladd_format.rows.BLOCK_BYTES", 1 << 16)
    budget = (images.nbytes + dense.nbytes) // 8
    del images, dense
    out = tmp_path / "out.dla.h5"
    assert _peak(lambda: convert("npz", tmp_path / "in.npz", out, ConvertOptions())) < budget
    assert _peak(lambda: export(out, tmp_path / "back.npz", "npz")) < budget
    assert _peak(lambda: export(out, tmp_path / "folder", "folder")) < budget
    with np.load(tmp_path / "back.npz") as back, open_dla(out) as f:
        assert np.array_equal(back["images"][::97], f.images()[::97])
        assert np.array_equal(back["dense_labels"][5:9], f.dense(5, 9))
        assert json.loads(back["ladd_metadata"].item())["version"] == 1
    assert np.array_equal(np.load(tmp_path / "folder" / "dense_labels.npy")[2300:], np.load(tmp_path / "back.npz")[
        "dense_labels"][2300:])


def test_exported_npz_members_are_stored_npy_in_any_order_np_load_reads(tmp_path):
    path = write_dla(tmp_path / "a.dla.h5", m=9, codec="topk", codec_config={"k": 3})
    export(path, tmp_path / "a.npz", "npz", with_subimages=True)
    with zipfile.ZipFile(tmp_path / "a.npz") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    with np.load(tmp_path / "a.npz") as data, open_dla(path) as f:
        assert data["subimages"].shape == (9, 9, 3, 16, 16) and data["subimages"].dtype == np.uint8
        stored = f.dense_stored()
        assert set(k for k in data.files if k.startswith("dense_stored_")) == {f"dense_stored_{k}" for k in stored}
        for key, value in stored.items():
            assert np.array_equal(data[f"dense_stored_{key}"], value)


def test_label_images_builds_only_the_sub_images_a_forward_takes(monkeypatch):
    import importlib

    A = importlib.import_module("ladd_format.labeler.label_pass")

    built = []
    real = A.subimages

    def counting(x, boxes, size=None):
        built.append(x.shape[0])
        return real(x, boxes, size)

    monkeypatch.setattr(A, "subimages", counting)
    boxes = np.array([[0, 0, 8, 8], [0, 8, 8, 8], [8, 0, 8, 8], [8, 8, 8, 8]])
    x = torch.rand(10, 3, 16, 16)
    model = SimpleNamespace(model=lambda t: t.mean(dim=(2, 3)))
    small, _ = A.label_images(model, x, boxes, (8, 8), 1.0, "float32", 6)    # 30 KB of sub-images: one rebuild
    assert built == [10]
    built.clear()
    monkeypatch.setattr(A, "SUBIMAGE_BUFFER_BYTES", 0)
    probs, _ = A.label_images(model, x, boxes, (8, 8), 1.0, "float32", 6)   # slices of 6 of the 40 sub-images
    assert built == [2, 2, 2, 2, 2, 2, 1] and max(built) <= math.ceil(6 / 4) + 1
    assert torch.equal(small, probs)
    whole = torch.softmax(real(x, boxes, (8, 8)).mean(dim=(3, 4)), dim=-1)
    assert torch.allclose(probs, whole, rtol=0, atol=1e-6)


def test_cpu_forward_is_bounded_by_input_pixels():
    from ladd_format.labeler.label_pass import CPU_FORWARD_PIXELS, forward_limit

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert forward_limit(512, (224, 224), cpu) == 32 == CPU_FORWARD_PIXELS // 224 ** 2
    assert forward_limit(512, (128, 128), cpu) == 98 and forward_limit(512, (32, 32), cpu) == 512
    assert forward_limit(512, (4096, 4096), cpu) == 1 and forward_limit(512, (224, 224), cuda) == 512


def test_verify_and_size_reads_touch_a_bounded_number_of_chunks(tmp_path, monkeypatch):
    """HDF5 holds ~3.5 KB per chunk of a read selection: with tiny one-image chunks, 8 MiB blocks
    touched 43,000 chunks (150 MB). Reads of /images now touch at most MAX_CHUNKS_PER_READ."""
    import h5py

    from ladd_format import DLAWriter
    from ladd_format import size as size_module
    from ladd_format.size import measure_file

    verify_module = __import__("sys").modules["ladd_format.verify"]
    monkeypatch.setattr(verify_module, "MAX_CHUNKS_PER_READ", 7)
    monkeypatch.setattr(size_module, "MAX_CHUNKS_PER_READ", 7)
    path = tmp_path / "tiny.dla.h5"
    with DLAWriter(path, num_classes=2, image_shape=(1, 2, 2), mean=(0.5,), std=(0.5,)) as w:
        w.append(np.zeros((50, 1, 2, 2), np.uint8), np.zeros(50, np.int64))
    spans = []
    real = h5py.Dataset.__getitem__

    def spy(self, key):
        if self.name == "/images" and isinstance(key, slice):
            spans.append(len(range(*key.indices(self.shape[0]))))
        return real(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    assert verify(path) == []
    verified = list(spans)
    measure_file(path)
    assert verified and max(verified) == 7 and sum(verified) == 50
    assert max(spans[len(verified):]) == 7
