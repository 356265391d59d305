"""An existing output is refused before any work: every command that writes one says "exists; pass
--force" (one line, exit 1) before it reads its input whole, trains or labels anything, and leaves the
existing output as it was. "Before any work" is checked by what did not happen (the reading or training
function was not called, no progress line, no checkpoint), never by timing."""

import shutil

import h5py
import numpy as np
import pytest

import ladd_cli.convert as cli_convert
import ladd_format.demo as demo_module
from ladd_cli.main import main
from ladd_format import DLAWriter

from conftest import write_dla


def never(name: str, calls: list):
    """A stand-in for a function that must not run: records the call, then fails loudly."""
    def called(*args, **kwargs):
        calls.append(name)
        raise AssertionError(f"{name} ran although the output exists")
    return called


def refused(result, output, before: bytes | None = None) -> None:
    """One ``exists; pass --force`` line, exit 1, no progress and no traceback; ``output`` unchanged."""
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [f"ladd: error: {output}: exists; pass --force to replace it"], result.output
    if before is not None:
        assert output.read_bytes() == before


@pytest.fixture
def existing(tmp_path):
    path = tmp_path / "existing.out"
    path.write_bytes(b"keep me")
    return path


def test_convert_refuses_before_reading_its_input(tmp_path, existing, runner, monkeypatch):
    np.savez(tmp_path / "in.npz", images=np.zeros((4, 3, 8, 8), np.uint8), labels=np.arange(4))
    calls = []
    monkeypatch.setattr(cli_convert, "convert", never("convert", calls))
    for fmt in ("npz", "auto"):
        refused(runner.invoke(main, ["convert", fmt, str(tmp_path / "in.npz"), "-o", str(existing)]), existing,
                b"keep me")
    assert calls == []


def test_upgrade_refuses_before_verifying_its_input(tmp_path, existing, runner, monkeypatch):
    import ladd_format.upgrade as upgrade_module
    src = tmp_path / "old.dla.h5"
    shutil.copyfile(write_dla(tmp_path / "new.dla.h5"), src)
    with h5py.File(src, "r+") as f:
        del f["row_sha256"]
        del f.attrs["root_sha256"]
        f.attrs["format_version"] = "1.0"
    calls = []
    monkeypatch.setattr(upgrade_module, "verify", never("verify", calls))
    refused(runner.invoke(main, ["upgrade", str(src), "-o", str(existing)]), existing, b"keep me")
    assert calls == []


def test_augment_refuses_before_loading_the_labeler(tmp_path, existing, runner, monkeypatch):
    import ladd_format.labeler.label_pass as augment_module
    calls = []
    monkeypatch.setattr(augment_module, "load_checkpoint", never("load_checkpoint", calls))
    src = write_dla(tmp_path / "d.dla.h5", codec=None)
    result = runner.invoke(main, ["augment", str(src), "--labeler", str(tmp_path / "l.safetensors"),
                                  "-o", str(existing)])
    refused(result, existing, b"keep me")
    assert calls == []


@pytest.mark.parametrize("fmt", ["npz", "ddranking", "folder"])
def test_export_refuses_before_reading_the_file(tmp_path, runner, monkeypatch, fmt):
    import ladd_format.export as export_module
    src = write_dla(tmp_path / "d.dla.h5")
    output = tmp_path / f"out.{fmt}"
    output.mkdir() if fmt != "npz" else output.write_bytes(b"keep me")
    calls = []
    monkeypatch.setattr(export_module, "open_dla", never("open_dla", calls))
    refused(runner.invoke(main, ["export", str(src), "--format", fmt, "-o", str(output)]), output,
            b"keep me" if fmt == "npz" else None)
    assert calls == []


def test_show_refuses_before_drawing(tmp_path, existing, runner, monkeypatch):
    import ladd_format.viz.show as show_module
    calls = []
    monkeypatch.setattr(show_module, "open_dla", never("open_dla", calls))
    src = write_dla(tmp_path / "d.dla.h5")
    refused(runner.invoke(main, ["show", str(src), "-o", str(existing)]), existing, b"keep me")
    assert calls == []


@pytest.mark.parametrize("earlier", ["labeler-e010.safetensors", "metrics.json"])
def test_train_labeler_refuses_an_earlier_runs_folder_before_loading_data(tmp_path, runner, monkeypatch, earlier):
    import ladd_format.labeler as labeler_package
    out = tmp_path / "ckpts"
    out.mkdir()
    (out / earlier).write_bytes(b"keep me")
    calls = []
    monkeypatch.setattr(labeler_package, "load_source", never("load_source", calls))
    result = runner.invoke(main, ["train-labeler", "digits", "-o", str(out), "--epochs", "1"])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [f"ladd: error: {out}: already holds labeler checkpoints; pass --force to "
                                          "replace them"]
    assert calls == [] and [p.name for p in out.iterdir()] == [earlier] and (out / earlier).read_bytes() == b"keep me"


def test_demo_refuses_a_folder_it_did_not_make_before_any_work(tmp_path, runner, monkeypatch):
    work = tmp_path / "mine"
    work.mkdir()
    (work / "report.md").write_text("my own notes\n")
    calls = []
    monkeypatch.setattr(demo_module, "load_source", never("load_source", calls))
    monkeypatch.setattr(demo_module, "_run", never("_run", calls))
    result = runner.invoke(main, ["demo", "--quick", "--workdir", str(work)])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        f"ladd: error: {work}: holds files `ladd demo` did not write (no {demo_module.MARKER} marker); pass --force "
        "to write the demo's files into it (files of the same names are replaced), or choose another --workdir"]
    assert calls == [] and [p.name for p in work.iterdir()] == ["report.md"]
    assert (work / "report.md").read_text() == "my own notes\n"
    file = tmp_path / "a-file"
    file.write_text("x")
    result = runner.invoke(main, ["demo", "--quick", "--workdir", str(file)])
    assert result.exit_code == 1 and "is not a folder" in result.stderr and file.read_text() == "x"


def _quick_run(workdir, settings, echo, show_progress):
    (workdir / "report.md").write_text("the demo's report\n")
    return {}


def test_demo_reuses_its_own_folder_and_takes_a_foreign_one_with_force(tmp_path, runner, monkeypatch):
    """`make demo` twice: the second run finds the first's marker and replaces its files; an empty or
    new folder is taken; a foreign one only with --force (which marks it)."""
    monkeypatch.setattr(demo_module, "_run", _quick_run)
    work = tmp_path / "demo-out"
    for _ in range(2):
        result = runner.invoke(main, ["demo", "--workdir", str(work)])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in work.iterdir()) == [demo_module.MARKER, "report.md"]
    legacy = tmp_path / "legacy"                      # a version that wrote no marker: its report.json says it
    legacy.mkdir()
    (legacy / "report.json").write_text('{"settings": {}, "rows": []}')
    assert runner.invoke(main, ["demo", "--workdir", str(legacy)]).exit_code == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "report.json").write_text('{"mine": 1}')
    assert runner.invoke(main, ["demo", "--workdir", str(foreign)]).exit_code == 1
    assert runner.invoke(main, ["demo", "--workdir", str(foreign), "--force"]).exit_code == 0
    assert (foreign / demo_module.MARKER).exists() and (foreign / "report.json").read_text() == '{"mine": 1}'


def test_the_demos_own_files_do_not_make_a_folder_foreign(tmp_path):
    with DLAWriter(tmp_path / "x.dla.h5", num_classes=2, image_shape=(1, 2, 2), mean=(0.5,), std=(0.5,)) as w:
        w.append(np.zeros((2, 1, 2, 2), np.uint8), np.arange(2))
    assert not demo_module.is_demo_folder(tmp_path)
    (tmp_path / demo_module.MARKER).write_text("")
    assert demo_module.is_demo_folder(tmp_path)
    assert demo_module.check_workdir(tmp_path) == tmp_path
