"""The ``ladd`` command: info, demo, and the one-line error contract."""

import json

import pytest

from cli.main import main
from ladd_format import verify

from conftest import write_dla


def test_info_text_and_json(dla_file, runner):
    result = runner.invoke(main, ["info", str(dla_file)])
    assert result.exit_code == 0
    assert "12 x 3x16x16 uint8 (pixel255)" in result.output and "N=3 (9 sub-images)" in result.output
    data = json.loads(runner.invoke(main, ["info", str(dla_file), "--json"]).output)
    assert data["num_images"] == 12 and data["dense"]["codec"] == {"name": "float32"}
    assert data["dense"]["boxes"][0] == [0, 0, 10, 10]


def test_info_plain_set(tmp_path, runner):
    path = write_dla(tmp_path / "d.dla.h5", codec=None)
    result = runner.invoke(main, ["info", str(path)])
    assert result.exit_code == 0 and "plain distilled set D" in result.output


@pytest.mark.parametrize("command", ["info", "size"])
def test_missing_file_is_one_line(tmp_path, runner, command):
    result = runner.invoke(main, [command, str(tmp_path / "nope.dla.h5")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"ladd: error: {tmp_path / 'nope.dla.h5'}: no such file"]


def test_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and "0.1.0" in result.output


def test_demo_runs_end_to_end(tmp_path, runner):
    result = runner.invoke(main, ["demo", "--workdir", str(tmp_path), "--ipc", "2", "--epochs", "1", "--width", "8"])
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("*.dla.h5"))
    assert len(files) == 5 and all(verify(f) == [] for f in files)   # D and one D_LA per codec
    assert "[4/4] storage" in result.output and "topk3-uint8" in result.output
