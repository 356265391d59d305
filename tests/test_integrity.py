"""Spec 1.1: the root digest, row digests, self-containment and limits, as readers meet them.

Damage here is made byte by byte in the file (not through h5py), as bit rot or a bad transfer would
make it; every case asserts what a reader returns for the damaged item.
"""

import shutil

import h5py
import numpy as np
import pytest
from conftest import write_dla

from ladd_format import DLAWriter, LaddError, integrity, open_dla, verify
from ladd_format import spec as S
from ladd_format.errors import DigestError
from ladd_format.upgrade import upgrade


def _chunk_offset(path, name, index=0):
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(index)
    return info.byte_offset, info.size


def _patch(path, offset, data: bytes):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))


def test_attribute_value_flip_is_refused_on_open(dla_file):
    raw = dla_file.read_bytes()
    where = raw.find(np.float64(0.485).tobytes())
    assert where > 0
    _patch(dla_file, where + 7, bytes([raw[where + 7] ^ 0x40]))        # 0.485 -> 0.97: a high byte
    with pytest.raises(DigestError, match="root digest"):
        open_dla(dla_file)
    assert {p.rule_number for p in verify(dla_file)} == {12}


def test_fletcher32_blind_spot_is_caught_by_the_row_digest(tmp_path):
    """A 16-bit word 0x0000 -> 0xFFFF keeps fletcher32 (it sums modulo 65535): HDF5 returns the
    changed pixels without complaint, the reader refuses the row, and verify names the damage."""
    images = np.full((3, 1, 4, 4), 7, np.uint8)
    images[1, 0, 0, :2] = 0                                   # one 0x0000 word at the start of row 1
    path = tmp_path / "a.dla.h5"
    with DLAWriter(path, num_classes=2, image_shape=(1, 4, 4), mean=(0.5,), std=(0.25,)) as w:
        w.append(images, np.array([0, 1, 0]))
    offset, _ = _chunk_offset(path, "images", 1)
    assert path.read_bytes()[offset:offset + 2] == b"\x00\x00"
    _patch(path, offset, b"\xff\xff")
    with h5py.File(path, "r") as f:
        assert f["images"][1, 0, 0, :2].tolist() == [255, 255]   # fletcher32 did not notice
    with open_dla(path) as f:
        with pytest.raises(DigestError, match="row 1"):
            f.images(1, 2)
        assert np.array_equal(f.images(0, 1), images[:1])       # the other rows still read
    assert {p.rule_number for p in verify(path)} == {11, 13}


def test_rows_read_back_equal_and_checked_when_intact(dla_file):
    with open_dla(dla_file) as f, open_dla(dla_file, check_rows=False) as g:
        assert np.array_equal(f.images(), g.images()) and np.array_equal(f.dense(), g.dense())
        assert f._row_digests is not None and g._row_digests is None


def test_external_link_is_never_followed(dla_file, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["x"] = np.frombuffer(b"SECRET!!" * 4, np.uint8)
    with h5py.File(dla_file, "r+") as f:
        f["extra"] = h5py.ExternalLink(str(other), "/x")
        integrity.reseal(f)
    with pytest.raises(LaddError, match="external link"):
        open_dla(dla_file)
    assert {p.rule_number for p in verify(dla_file)} == {14}


def test_declared_sizes_beyond_the_file_are_refused_before_reading(dla_file):
    with h5py.File(dla_file, "r+") as f:
        f.create_dataset("extra", shape=(10**9, 8), chunks=(1024, 8), dtype=np.float64, fletcher32=True)
        integrity.reseal(f)
    with pytest.raises(LaddError, match="declares"):
        open_dla(dla_file)


def test_dense_n_beyond_the_limit_is_refused(dla_file):
    with h5py.File(dla_file, "r+") as f:
        f["dense"].attrs["n"] = np.int64(10**4)
        integrity.reseal(f)
    problems = verify(dla_file)
    assert [p.rule_number for p in problems] == [15]
    with pytest.raises(LaddError, match="limits"):
        open_dla(dla_file)


def test_upgrade_1_0_to_1_1_keeps_contents(tmp_path):
    src = tmp_path / "old.dla.h5"
    shutil.copyfile(write_dla(tmp_path / "new.dla.h5"), src)
    with h5py.File(src, "r+") as f:
        del f["row_sha256"]
        del f.attrs["root_sha256"]
        f.attrs["format_version"] = "1.0"
    assert verify(src) == []
    out = upgrade(src, tmp_path / "up.dla.h5")
    assert verify(out) == []
    with open_dla(src) as a, open_dla(out) as b:
        assert a.version == (1, 0) and b.version == S.parse_version(S.FORMAT_VERSION)
        assert np.array_equal(a.images(), b.images()) and np.array_equal(a.dense(), b.dense())
        assert a.info()["dense"] == b.info()["dense"]
    with pytest.raises(LaddError, match="already"):
        upgrade(out, tmp_path / "again.dla.h5")


def test_cli_verify_prints_the_root_digest_and_upgrade_writes_1_1(tmp_path):
    from click.testing import CliRunner
    from ladd_cli.main import main

    runner = CliRunner()
    src = tmp_path / "old.dla.h5"
    shutil.copyfile(write_dla(tmp_path / "new.dla.h5"), src)
    with h5py.File(src, "r") as f:
        digest = f.attrs["root_sha256"].decode()
    result = runner.invoke(main, ["verify", str(tmp_path / "new.dla.h5")])
    assert result.exit_code == 0 and f"root digest {digest}" in result.output
    with h5py.File(src, "r+") as f:
        del f["row_sha256"]
        del f.attrs["root_sha256"]
        f.attrs["format_version"] = "1.0"
    result = runner.invoke(main, ["verify", str(src)])
    assert result.exit_code == 0 and "format 1.0 has no root or row digests" in result.output
    result = runner.invoke(main, ["upgrade", str(src), "-o", str(tmp_path / "up.dla.h5")])
    assert result.exit_code == 0, result.output
    assert verify(tmp_path / "up.dla.h5") == []
    again = runner.invoke(main, ["upgrade", str(src), "-o", str(tmp_path / "up.dla.h5")])
    assert again.exit_code == 1 and "exists" in again.output and "Traceback" not in again.output
