"""``ladd upgrade`` (spec section 9): a valid 1.0, 1.1 or 1.2 file is rewritten as the current version
(1.3) with the same contents and no stream; a current file is refused, nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import one_line, write_dla

from ladd_cli.main import main
from ladd_format import LaddError, integrity, open_dla, verify
from ladd_format.errors import InputError
from ladd_format.spec import FORMAT_VERSION
from ladd_format.upgrade import upgrade

VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"


def _version(path: Path) -> str:
    with h5py.File(path, "r") as f:
        return integrity.string_value(f.attrs["format_version"]).decode()


def _pin(path: Path, version: str) -> Path:
    """A file the writer just wrote, given an earlier minor version (a 1.1 file is a 1.2 file without
    /stream but for format_version), resealed so it verifies."""
    with h5py.File(path, "r+") as f:
        integrity.set_string(f.attrs, "format_version", version)
        integrity.reseal(f, rows=False)
    assert verify(path) == []
    return path


def _everything_but_version(path: Path) -> dict:
    """Every object's attributes (canonical records) and every dataset's bytes, except the root's
    format_version and root_sha256: what "the same contents" means."""
    out = {}
    with h5py.File(path, "r") as f:
        for name, obj in integrity.objects(f):
            attrs = {key: integrity.attribute_record(key, obj.attrs.get_id(key), obj.attrs[key])
                     for key in obj.attrs if not (name == "/" and key in ("format_version", "root_sha256"))}
            data = obj[()].tobytes() if isinstance(obj, h5py.Dataset) else None
            out[name] = (type(obj).__name__, attrs, data)
    return out


@pytest.fixture
def file_1_1(tmp_path) -> Path:
    return _pin(write_dla(tmp_path / "v11.dla.h5", soft_kind="probs"), "1.1")


def test_upgrade_1_1_gains_the_current_version_and_a_new_root_digest(file_1_1, tmp_path):
    out = upgrade(file_1_1, tmp_path / "up.dla.h5")
    assert _version(file_1_1) == "1.1" and _version(out) == FORMAT_VERSION == "1.3"
    assert verify(out) == []
    assert _everything_but_version(out) == _everything_but_version(file_1_1)      # row digests included
    with h5py.File(file_1_1, "r") as a, h5py.File(out, "r") as b:
        assert "stream" not in b                                                   # no stream is added
        assert a.attrs["root_sha256"] != b.attrs["root_sha256"]                   # it covers format_version
        assert integrity.string_value(b.attrs["root_sha256"]).decode() == integrity.root_digest(b)
    with open_dla(file_1_1) as a, open_dla(out) as b:
        assert a.version == (1, 1) and b.version == (1, 3) and not b.has_stream
        assert np.array_equal(a.images(), b.images()) and np.array_equal(a.labels(), b.labels())
        assert np.array_equal(a.dense(), b.dense()) and np.array_equal(a.soft_labels(), b.soft_labels())


def test_upgrade_the_1_1_spec_vector(tmp_path):
    src = Path(shutil.copy(VECTORS / "topk_uint8.dla.h5", tmp_path / "topk_uint8.dla.h5"))
    out = upgrade(src, tmp_path / "up.dla.h5")
    assert _version(out) == FORMAT_VERSION and verify(out) == []
    assert _everything_but_version(out) == _everything_but_version(src)


def test_upgrade_1_0_gains_row_digests_and_the_current_version(tmp_path):
    src = Path(shutil.copy(VECTORS / "legacy_1_0.dla.h5", tmp_path / "legacy.dla.h5"))
    out = upgrade(src, tmp_path / "up.dla.h5")
    assert _version(out) == FORMAT_VERSION and verify(out) == []
    with h5py.File(out, "r") as f:
        assert "row_sha256" in f and "root_sha256" in f.attrs and "stream" not in f
    with open_dla(src) as a, open_dla(out) as b:
        assert a.version == (1, 0) and b.version == (1, 3)
        assert np.array_equal(a.images(), b.images()) and np.array_equal(a.labels(), b.labels())


def test_upgrade_refuses_a_current_file_and_writes_nothing(tmp_path):
    current = write_dla(tmp_path / "now.dla.h5")
    assert _version(current) == FORMAT_VERSION
    with pytest.raises(InputError, match=rf"is already format {FORMAT_VERSION}; nothing to upgrade"):
        upgrade(current, tmp_path / "up.dla.h5")
    assert not (tmp_path / "up.dla.h5").exists()
    upgraded = upgrade(_pin(write_dla(tmp_path / "old.dla.h5"), "1.1"), tmp_path / "up2.dla.h5")
    with pytest.raises(InputError, match="already"):
        upgrade(upgraded, tmp_path / "again.dla.h5")


def test_upgrade_refuses_a_newer_minor(tmp_path):
    newer = _pin(write_dla(tmp_path / "new.dla.h5"), "1.9")
    with pytest.raises(InputError, match=rf"is already format 1.9, newer than {FORMAT_VERSION}"):
        upgrade(newer, tmp_path / "up.dla.h5")
    assert not (tmp_path / "up.dla.h5").exists()


def test_upgrade_refuses_a_1_1_file_holding_a_stream_group(file_1_1, tmp_path):
    """/stream means nothing in a 1.1 file (a 1.1 reader ignores it): upgrading would give it 1.2's
    meaning unchecked, so it is refused, nothing written."""
    with h5py.File(file_1_1, "r+") as f:
        f.create_group("stream").attrs["note"] = "not a stream"
        integrity.reseal(f, rows=False)
    assert verify(file_1_1) == []
    with pytest.raises(InputError, match="/stream"):
        upgrade(file_1_1, tmp_path / "up.dla.h5")
    assert not (tmp_path / "up.dla.h5").exists()


def test_upgrade_refuses_an_invalid_file(file_1_1, tmp_path):
    with h5py.File(file_1_1, "r+") as f:
        f["normalization"].attrs["mean"] = np.array([0.25, 0.5, 0.5])     # root digest left as it was
    with pytest.raises(LaddError, match="root digest"):
        upgrade(file_1_1, tmp_path / "up.dla.h5")
    assert not (tmp_path / "up.dla.h5").exists()


def test_cli_upgrade_writes_the_current_version_and_refuses_it_in_one_line(file_1_1, tmp_path, runner):
    out = tmp_path / "up.dla.h5"
    result = runner.invoke(main, ["upgrade", str(file_1_1), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {out} (format {FORMAT_VERSION})"
    assert verify(out) == [] and _version(out) == FORMAT_VERSION
    again = runner.invoke(main, ["upgrade", str(out), "-o", str(tmp_path / "again.dla.h5")])
    assert again.exit_code == 1 and "Traceback" not in again.output
    assert one_line(again) == f"ladd: error: {out}: is already format {FORMAT_VERSION}; nothing to upgrade"
    assert not (tmp_path / "again.dla.h5").exists()
