"""Reproducible files and the content digest (spec 2.1, 4.6).

- ``SOURCE_DATE_EPOCH`` (reproducible-builds.org) sets ``/provenance`` ``created``, so converting the
  same input twice gives the same root digest and the same bytes (HDF5 stores no object times);
- the content digest is the root digest's canonical form without ``/provenance``: equal for two files
  that hold the same data, different as soon as the data differ; ``ladd verify`` and ``ladd info``
  print it;
- ``ladd info`` shows ``learned_lr`` when the file has it.
"""

import json

import h5py
import numpy as np
import pytest
from conftest import MEAN, STD, make_arrays, write_dla

from ladd_cli.main import main
from ladd_format import DenseSpec, DLAWriter, LaddError, integrity, open_dla, verify
from ladd_format.codecs import make_codec
from ladd_format.errors import InputError

EPOCH = "1700000000"                 # 2023-11-14T22:13:20Z
EPOCH_TEXT = "2023-11-14T22:13:20Z"


def root_of(path) -> str:
    with open_dla(path) as f:
        return f.seal()["root_sha256"]


def created_of(path) -> str:
    with open_dla(path) as f:
        return f.provenance["created"]


def npz_input(tmp_path):
    images, labels, dense = make_arrays(6, c=10, side=8, n=2)
    src = tmp_path / "in.npz"
    np.savez(src, images=images, labels=labels, num_classes=10, dense_labels=dense, n=2, ratio=0.625)
    return src


# -- SOURCE_DATE_EPOCH ------------------------------------------------------------------------------
def test_two_conversions_with_source_date_epoch_are_the_same_file(tmp_path, runner, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    src = npz_input(tmp_path)
    outs = [tmp_path / "a.dla.h5", tmp_path / "b.dla.h5"]
    for out in outs:
        result = runner.invoke(main, ["convert", "npz", str(src), "-o", str(out)])
        assert result.exit_code == 0, result.output
    assert [created_of(p) for p in outs] == [EPOCH_TEXT, EPOCH_TEXT]
    assert root_of(outs[0]) == root_of(outs[1])
    assert outs[0].read_bytes() == outs[1].read_bytes()        # byte for byte, not only the digests


def test_the_writer_takes_created_from_source_date_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert created_of(write_dla(tmp_path / "zero.dla.h5")) == "1970-01-01T00:00:00Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    assert created_of(write_dla(tmp_path / "epoch.dla.h5")) == EPOCH_TEXT
    # an explicit time still wins, and an empty variable counts as unset (the clock)
    assert created_of(write_dla(tmp_path / "given.dla.h5", created="2020-02-02T02:02:02Z")) == "2020-02-02T02:02:02Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "")
    assert created_of(write_dla(tmp_path / "now.dla.h5")) != EPOCH_TEXT


@pytest.mark.parametrize("value", ["yesterday", "1.5", "-1", " 17", "1e9", "99999999999999999999"])
def test_a_malformed_source_date_epoch_is_one_line_naming_the_variable(tmp_path, runner, monkeypatch, value):
    src = npz_input(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    out = tmp_path / "out.dla.h5"
    result = runner.invoke(main, ["convert", "npz", str(src), "-o", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ladd: error: ") and "SOURCE_DATE_EPOCH" in lines[0], lines
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.npz"]   # nothing left behind
    with pytest.raises(InputError, match="SOURCE_DATE_EPOCH"):
        write_dla(tmp_path / "api.dla.h5")


def test_hdf5_stores_no_object_times(tmp_path):
    """HDF5 can stamp every object with its creation and modification times, which would make two
    writes of the same data differ; the writer's files carry none (h5py's default, held here)."""
    path = write_dla(tmp_path / "a.dla.h5", soft_kind="logits")
    with h5py.File(path, "r") as f:
        objects = [f] + [f[name] for name in _names(f)]
        for obj in objects:
            info = h5py.h5o.get_info(obj.id)
            assert (info.ctime, info.mtime, info.atime, info.btime) == (0, 0, 0, 0), obj.name


def _names(f):
    names = []
    f.visit(names.append)
    return names


# -- the content digest ---------------------------------------------------------------------------
def write_set(path, images=None, mean=MEAN, converter="test", **kwargs):
    """The set of :func:`conftest.make_arrays` (its ``images`` replaced when given), float32 dense labels."""
    made, labels, dense = make_arrays()
    images = made if images is None else images
    spec = DenseSpec(n=3, ratio=0.625, codec=make_codec("float32"), labeler={"arch": "test", "epochs": 1})
    with DLAWriter(path, num_classes=10, image_shape=(3, 16, 16), mean=mean, std=STD, dense=spec,
                   converter=converter, **kwargs) as w:
        w.append(images, labels, dense=dense)
    return path


def test_files_differing_only_in_provenance_share_the_content_digest(tmp_path):
    a = write_set(tmp_path / "a.dla.h5", created="2026-01-01T00:00:00Z", converter="npz")
    b = write_set(tmp_path / "b.dla.h5", created="2026-06-01T12:00:00Z", converter="folder",
                  report={"note": "another route"})
    assert verify(a) == [] and verify(b) == []
    assert root_of(a) != root_of(b)
    assert integrity.content_digest(a) == integrity.content_digest(b)
    assert len(integrity.content_digest(a)) == 64 and integrity.content_digest(a) == integrity.content_digest(a).lower()
    with open_dla(a) as f:
        assert f.seal() == {"root_sha256": root_of(a), "content_sha256": integrity.content_digest(a)}


def test_changed_data_or_attributes_change_the_content_digest(tmp_path):
    base = integrity.content_digest(write_set(tmp_path / "base.dla.h5"))
    images = make_arrays()[0]
    images[3, 1, 2, 2] ^= 1                                         # one pixel, one bit
    assert integrity.content_digest(write_set(tmp_path / "pixel.dla.h5", images=images)) != base
    mean = write_set(tmp_path / "mean.dla.h5", mean=(0.5, 0.456, 0.406))
    assert integrity.content_digest(mean) != base
    # provenance nested deeper is provenance too: a group under /provenance changes nothing
    nested = write_set(tmp_path / "nested.dla.h5")
    with h5py.File(nested, "r+") as f:
        f["provenance"].create_group("extra").attrs["x"] = np.int64(1)
        integrity.reseal(f)
    assert verify(nested) == [] and integrity.content_digest(nested) == base


def test_content_digest_refuses_files_it_cannot_walk_in_one_line(tmp_path):
    with pytest.raises(LaddError, match="no such file"):
        integrity.content_digest(tmp_path / "missing.dla.h5")
    (tmp_path / "text.dla.h5").write_text("not hdf5")
    with pytest.raises(LaddError, match="HDF5"):
        integrity.content_digest(tmp_path / "text.dla.h5")
    linked = write_dla(tmp_path / "linked.dla.h5")
    with h5py.File(linked, "r+") as f:
        f["extra"] = h5py.SoftLink("/labels")
    with pytest.raises(LaddError, match="soft link"):
        integrity.content_digest(linked)


def test_verify_and_info_print_both_digests(tmp_path, runner):
    path = write_dla(tmp_path / "a.dla.h5")
    root, content = root_of(path), integrity.content_digest(path)
    result = runner.invoke(main, ["verify", str(path)])
    assert result.exit_code == 0 and f"root digest {root}" in result.output
    assert f"content digest {content}" in result.output
    data = json.loads(runner.invoke(main, ["verify", str(path), "--json"]).output)
    assert data["root_sha256"] == root and data["content_sha256"] == content
    rows = info_rows(runner, path)
    assert rows["root digest"] == root and rows["content"].split()[0] == content
    data = json.loads(runner.invoke(main, ["info", str(path), "--json"]).output)
    assert data["root_sha256"] == root and data["content_sha256"] == content


def test_a_1_0_file_has_a_content_digest_but_no_root_digest(tmp_path, runner):
    path = write_dla(tmp_path / "old.dla.h5")
    with h5py.File(path, "r+") as f:
        del f["row_sha256"]
        del f.attrs["root_sha256"]
        f.attrs["format_version"] = "1.0"
    content = integrity.content_digest(path)
    result = runner.invoke(main, ["verify", str(path)])
    assert result.exit_code == 0 and f"content digest {content}" in result.output
    rows = info_rows(runner, path)
    assert rows["root digest"].startswith("none") and rows["content"].split()[0] == content


def info_rows(runner, path) -> dict:
    result = runner.invoke(main, ["info", str(path)])
    assert result.exit_code == 0, result.output
    return {line[2:13].rstrip(): line[14:] for line in result.output.splitlines()[1:]}


# -- ladd info: learned_lr ----------------------------------------------------------------------------
def test_info_shows_learned_lr(tmp_path, runner):
    path = write_dla(tmp_path / "datm.dla.h5", root_attrs={"learned_lr": np.float64(0.0123456789)})
    assert info_rows(runner, path)["learned lr"] == "0.01235"
    data = json.loads(runner.invoke(main, ["info", str(path), "--json"]).output)
    assert data["learned_lr"] == 0.0123456789
    plain = write_dla(tmp_path / "plain.dla.h5")
    assert "learned lr" not in info_rows(runner, plain)
    assert "learned_lr" not in json.loads(runner.invoke(main, ["info", str(plain), "--json"]).output)
