"""The ``ladd`` command: info, demo, and the one-line error contract."""

import json
import os
import shlex
from pathlib import Path

import pytest
from PIL import Image

from ladd_cli.main import main
from ladd_format import verify
from ladd_format.spec import FORMAT_VERSION

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


def test_info_text_is_aligned_and_rounded_and_json_keeps_exact_values(tmp_path, runner):
    from ladd_format import DenseSpec, DLAWriter
    from ladd_format.codecs import make_codec

    from conftest import make_arrays
    path = tmp_path / "odd.dla.h5"
    mean, std = (0.48512345, 0.456, 0.406), (0.229, 0.22449999, 0.225)
    images, labels, dense = make_arrays(m=6, c=3, side=8, n=2)
    spec = DenseSpec(n=2, ratio=0.625, codec=make_codec("topk", k=2, values="float16"),
                     labeler={"arch": "x", "val_accuracy": 0.912345678})
    with DLAWriter(path, num_classes=3, image_shape=(3, 8, 8), mean=mean, std=std, dense=spec,
                   source_dataset="cifar10", distillation="mtt", converter="test") as w:
        w.append(images, labels, dense=dense)
    result = runner.invoke(main, ["info", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == str(path)
    for line in lines[1:]:       # "  " + key padded to 11 + " " + value: every value starts in column 14
        assert line[:2] == "  " and line[2] != " " and line[13] == " " and line[14] != " ", line
    rows = {line[2:13].rstrip(): line[14:] for line in lines[1:]}
    size = path.stat().st_size
    assert rows["format"] == f"D_LA {FORMAT_VERSION}" and rows["file size"] == f"{size / 1024:.1f} KiB ({size:,} bytes)"
    assert rows["source"] == "cifar10" and rows["distilled"] == "mtt" and rows["classes"] == "3, IPC 2"
    assert rows["normalise"] == "mean (0.4851, 0.456, 0.406), std (0.229, 0.2245, 0.225)"   # 4 significant digits
    assert rows["dense"] == "N=2 (4 sub-images), R=0.625, T=1, codec topk:k=2,values=float16"
    assert rows["labeler"] == "arch=x, val_accuracy=0.9123"
    data = json.loads(runner.invoke(main, ["info", str(path), "--json"]).output)
    assert data["mean"] == list(mean) and data["std"] == list(std) and data["file_bytes"] == size    # exact
    assert data["dense"]["labeler"]["val_accuracy"] == 0.912345678
    assert data["dense"]["codec"] == {"name": "topk", "k": 2, "values": "float16"}


@pytest.mark.parametrize("command", ["info", "size"])
def test_missing_file_is_one_line(tmp_path, runner, command):
    result = runner.invoke(main, [command, str(tmp_path / "nope.dla.h5")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"ladd: error: {tmp_path / 'nope.dla.h5'}: no such file"]


def test_augment_help_lists_the_codec_values_and_hides_the_deprecated_flags(runner):
    result = runner.invoke(main, ["augment", "-h"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--codec CODEC" in text
    assert "float16, float32, topk:k=K,values=float16|float32|uint8, uint8" in text
    options = [line.split()[0] for line in result.output.splitlines() if line.startswith("  -")]
    assert "--codec" in options and "--k" not in options and "--topk-values" not in options
    assert "(--k and --topk-" in text and "are deprecated.)" in text    # help wraps at hyphens


@pytest.mark.parametrize("args,message", [
    (["--codec", "bfloat8"], "unknown codec 'bfloat8'; known: float16, float32, topk, uint8"),
    (["--codec", "topk:k=zero"], "topk needs an integer k >= 1, got 'zero'"),
    (["--codec", "topk:k"], "codec parameters are KEY=VALUE"),
    (["--codec", "uint8:k=3"], "codec 'uint8' takes no parameter 'k'"),
    (["--k", "3"], "--k applies only to a codec with a k parameter, not 'float32'"),
    (["--codec", "uint8", "--topk-values", "uint8"], "--topk-values applies only to a codec with a values parameter"),
    (["--codec", "topk:k=3", "--k", "4"], "--k and --codec topk:k=3 both set k"),
    (["--codec", "topk:values=uint8", "--topk-values", "float16"], "--topk-values and --codec topk:values=uint8 both"),
    (["--codec", "topk", "--k", "0"], "topk needs an integer k >= 1, got 0"),
])
def test_augment_refuses_bad_codec_values_with_one_usage_line(tmp_path, dla_file, runner, args, message):
    out = tmp_path / "o.dla.h5"
    result = runner.invoke(main, ["augment", str(dla_file), "--labeler", str(tmp_path / "l.safetensors"),
                                  "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output and "warning" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == [dla_file]


def test_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and "0.1.0" in result.output


@pytest.mark.mutation_skip
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


@pytest.mark.parametrize("vector, text", [("topk_uint8", "codec topk:k=2,values=uint8"),
                                          ("uint8", "codec uint8"), ("float16", "codec float16")])
def test_info_shows_the_codec_as_its_one_value(runner, vector, text):
    """`ladd info` prints the codec in the form --codec takes, so it can be copied back."""
    path = Path(__file__).resolve().parents[1] / "spec" / "vectors" / f"{vector}.dla.h5"
    result = runner.invoke(main, ["info", str(path)])
    assert result.exit_code == 0, result.output
    dense_line = next(line for line in result.output.splitlines() if line.strip().startswith("dense"))
    assert dense_line.rstrip().endswith(text)


def test_the_grid_limit_is_the_written_one_in_help_and_docs(runner):
    """`ladd augment -n` stops at 45 (what this package writes); readers go to 64. The help and the
    docs say 45 for -n, and why, and keep the readers' 64 apart."""
    from ladd_format.geometry import MAX_GRID_N, MAX_WRITTEN_GRID_N
    assert (MAX_WRITTEN_GRID_N, MAX_GRID_N) == (45, 64)
    text = " ".join(runner.invoke(main, ["augment", "-h"]).output.split())
    assert f"at most {MAX_WRITTEN_GRID_N}: the most this package writes" in text
    assert f"readers accept files up to N = {MAX_GRID_N}" in text
    readme = documents()
    assert f"`-n` is at most {MAX_WRITTEN_GRID_N}:" in readme and "`-n` is at most 64" not in readme
    assert f"readers and `verify` accept files up to N = {MAX_GRID_N}" in readme
    result = runner.invoke(main, ["augment", "x.dla.h5", "--labeler", "l", "-o", "y.dla.h5", "-n", "46"])
    assert result.exit_code == 1 and "-n (grid size N) must lie in 1..45, got 46" in result.output


def test_min_crop_help_agrees_with_the_docs(runner):
    """The docs measured crops worse for students and keep them off by default; the help must not
    advise setting --min-crop to R, and leaves the figures to the docs (they change when measured again)."""
    text = " ".join(runner.invoke(main, ["train-labeler", "-h"]).output.split())
    help_text = text[text.index("--min-crop"):text.index("--device")]
    assert "Set it to the ratio" not in help_text
    assert "1 = off, the default" in help_text and "did worse" in help_text and "docs/cli.md" in help_text
    assert "points worse" not in help_text and "%" not in help_text
    docs = documents()
    assert "students trained on its dense labels are 2 points *worse*" in docs and "The default is off" in docs


def documents() -> str:
    """README.md and docs/*.md, their whitespace folded: what the help refers a user to."""
    root = Path(__file__).resolve().parents[1]
    paths = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return " ".join(" ".join(path.read_text().split()) for path in paths)


def test_convert_auto_detects_once_and_says_what_it_chose(tmp_path, runner, monkeypatch):
    """The library picks the format (and refuses options it does not read); the CLI does not detect it
    a second time, and prints the library's note naming the choice."""
    import numpy as np

    import ladd_format.converters.auto as auto

    np.savez(tmp_path / "in.npz", images=np.zeros((10, 3, 8, 8), np.uint8), labels=np.arange(10))
    calls, detect = [], auto.detect
    monkeypatch.setattr(auto, "detect", lambda source: calls.append(source) or detect(source))
    result = runner.invoke(main, ["convert", "auto", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.dla.h5"),
                                  "--num-classes", "10"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    assert any(line.startswith("note: auto: detected npz") for line in result.stderr.splitlines()), result.stderr
    stray = runner.invoke(main, ["convert", "auto", str(tmp_path / "in.npz"), "-o", str(tmp_path / "p.dla.h5"),
                                 "--iteration", "3"])
    assert stray.exit_code == 2 and "--iteration: not read by format npz (auto: detected npz" in stray.output
    assert len(calls) == 2 and not (tmp_path / "p.dla.h5").exists()


def test_verify_opens_the_file_once_and_prints_the_librarys_digests(dla_file, runner, monkeypatch):
    """`ladd verify` prints what the verifier read (version, root and content digests): it does not
    open the file again to find them."""
    import h5py

    from ladd_format import open_dla
    with open_dla(dla_file) as f:
        seal = f.seal()
    opened, init = [], h5py.File.__init__

    def counting(self, name, *args, **kwargs):
        if isinstance(name, (str, os.PathLike)):          # not ``.file`` of an object, which wraps its open id
            opened.append(name)
        init(self, name, *args, **kwargs)
    monkeypatch.setattr(h5py.File, "__init__", counting)
    result = runner.invoke(main, ["verify", str(dla_file), "--json"])
    assert result.exit_code == 0, result.output
    assert len(opened) == 1, opened
    data = json.loads(result.stdout)
    assert data["ok"] and data["format_version"] == FORMAT_VERSION
    assert (data["root_sha256"], data["content_sha256"]) == (seal["root_sha256"], seal["content_sha256"])
    text = runner.invoke(main, ["verify", str(dla_file)])
    assert f"root digest {seal['root_sha256']}" in text.stdout and f"content digest {seal['content_sha256']}" in text.stdout
