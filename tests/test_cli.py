"""The ``ladd`` command: info, demo, and the one-line error contract."""

import json
import shlex

import pytest
from PIL import Image

from ladd_cli.main import main
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


def test_demo_quick_runs_end_to_end_and_writes_its_report(tmp_path, runner):
    result = runner.invoke(main, ["demo", "--quick", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("*.dla.h5"))
    assert len(files) == 6 and all(verify(f) == [] for f in files)   # D at IPC 1 and 2, one D_LA per codec
    assert "[5/5] students" in result.output and "baseline++" in result.output

    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["method"] for r in report["rows"]] == ["hard", "LADD", "baseline++"]
    assert all(0 <= a <= 1 for r in report["rows"] for a in r["accuracies"])
    assert report["rows"][1]["bytes"] > report["rows"][0]["bytes"]          # dense labels cost bytes
    md = (tmp_path / "report.md").read_text()
    assert "![report](report.png)" in md and "baseline++" in md and "ladd evaluate" in md
    with Image.open(tmp_path / "report.png") as img:
        img.verify()
    with Image.open(tmp_path / "report.png") as img:
        assert img.width > 600 and img.height > 300

    # `ladd evaluate` with the report's command line reproduces the demo's LADD number exactly
    args = shlex.split(report["rows"][1]["command"])[1:] + ["--json"]
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.output[again.output.index("{"):])["accuracies"] == report["rows"][1]["accuracies"]


def test_demo_rejects_a_bad_ipc_list(tmp_path, runner):
    result = runner.invoke(main, ["demo", "--quick", "--workdir", str(tmp_path), "--ipc", "1,x"])
    assert result.exit_code == 2 and "comma-separated" in result.output
    assert not list(tmp_path.iterdir())
