"""Ctrl-C in ``ladd train-labeler`` and ``ladd demo``: one line, exit status 130, no traceback, and no
output folder left behind where there was none (a run that says "nothing was written" wrote nothing);
what an interrupted run did keep is said."""


import pytest

import ladd_format.demo as demo_module
import ladd_format.labeler.train as train_module
from ladd_cli.main import main
from ladd_format.labeler import TrainConfig, load_source, train_labeler

from conftest import interrupt_ladd

def interrupt_when(args: list[str], started: str) -> tuple[int, str]:
    """``ladd ARGS`` interrupted once a stderr line starts with ``started``: (exit status, stderr)."""
    return interrupt_ladd(args, started)


def ladd_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ladd:")]


@pytest.mark.mutation_skip
def test_ctrl_c_in_train_labeler_leaves_no_folder(tmp_path):
    out = tmp_path / "new" / "ckpts"                 # two folders that do not exist yet
    rc, stderr = interrupt_when(["train-labeler", "digits", "-o", str(out), "--arch", "convnet-d3", "--width", "8",
                                 "--epochs", "500", "--save-epochs", "500"], "train-labeler: ")
    assert "Traceback" not in stderr, stderr
    assert rc == 130, stderr
    assert ladd_lines(stderr) == ["ladd: interrupted; nothing was written"], stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.mutation_skip
def test_ctrl_c_in_demo_leaves_no_work_folder(tmp_path):
    work = tmp_path / "demo-out"
    rc, stderr = interrupt_when(["demo", "--quick", "--workdir", str(work)], "demo labeler: ")
    assert "Traceback" not in stderr, stderr
    assert rc == 130, stderr
    assert ladd_lines(stderr) == ["ladd: interrupted; nothing was written"], stderr
    assert not work.exists()


def test_an_interrupt_after_a_checkpoint_says_which_were_kept(tmp_path, runner, monkeypatch):
    real, saved = train_module.save_checkpoint, []

    def save_then_stop(model, meta, path):            # Ctrl-C while the second checkpoint is saved
        if saved:
            raise KeyboardInterrupt
        saved.append(path)
        return real(model, meta, path)
    monkeypatch.setattr(train_module, "save_checkpoint", save_then_stop)
    out = tmp_path / "ckpts"
    result = runner.invoke(main, ["train-labeler", "digits", "-o", str(out), "--arch", "convnet-d3", "--width", "8",
                                  "--epochs", "2", "--save-epochs", "1,2"])
    assert result.exit_code == 130, result.output
    assert result.stderr.splitlines()[-1] == (f"ladd: interrupted; kept the checkpoint(s) of epoch(s) 1 in {out} "
                                              "(no metrics.json: the run did not finish)")
    assert sorted(p.name for p in out.iterdir()) == ["labeler-e001.safetensors"]      # no partial file either


def test_a_failure_before_the_first_checkpoint_leaves_no_folder(tmp_path):
    out = tmp_path / "a" / "b"

    def stop(epoch, step, steps):
        raise KeyboardInterrupt
    config = TrainConfig(arch="convnet-d3", arch_kwargs={"width": 8}, epochs=1, batch_size=256)
    with pytest.raises(KeyboardInterrupt):
        train_labeler(load_source("digits"), out, config, step_progress=stop)
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(KeyboardInterrupt):
        train_labeler(load_source("digits"), existing, config, step_progress=stop)
    assert existing.is_dir()                                       # a folder the run did not make stays


def _interrupted_run(workdir, settings, echo, show_progress):
    """The demo's work stopped by Ctrl-C after it wrote a labeler and a file."""
    (workdir / "labeler").mkdir(exist_ok=True)
    (workdir / "labeler" / "labeler-e003.safetensors").write_bytes(b"new")
    (workdir / "digits_ipc1_D.dla.h5").write_bytes(b"new")
    raise KeyboardInterrupt


def test_an_interrupted_demo_removes_the_folder_it_made_and_keeps_an_earlier_demos(tmp_path, runner, monkeypatch):
    monkeypatch.setattr(demo_module, "_run", _interrupted_run)
    fresh = tmp_path / "fresh"
    result = runner.invoke(main, ["demo", "--quick", "--workdir", str(fresh)])
    assert result.exit_code == 130 and result.stderr.splitlines() == ["ladd: interrupted; nothing was written"]
    assert not fresh.exists()

    earlier = tmp_path / "earlier"                   # an earlier demo's folder: its files stay, and it says so
    earlier.mkdir()
    (earlier / demo_module.MARKER).write_text("demo\n")
    (earlier / "report.md").write_text("old report\n")
    result = runner.invoke(main, ["demo", "--quick", "--workdir", str(earlier)])
    assert result.exit_code == 130
    assert result.stderr.splitlines() == [f"ladd: interrupted; the demo's files written so far are in {earlier}"]
    assert (earlier / "report.md").read_text() == "old report\n" and (earlier / "digits_ipc1_D.dla.h5").exists()

    empty = tmp_path / "empty"                       # an empty folder the user made: it stays, empty
    empty.mkdir()
    result = runner.invoke(main, ["demo", "--quick", "--workdir", str(empty)])
    assert result.exit_code == 130 and empty.is_dir()


def test_a_made_folder_keeps_what_the_demo_did_not_write(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    for name in (demo_module.MARKER, "digits_ipc1_uint8.dla.h5", ".digits_ipc1_uint8.dla.h5.work", "report.png",
                 "notes.txt"):
        (work / name).write_text("x")
    (work / "labeler").mkdir()
    demo_module.remove_demo_files(work)
    assert [p.name for p in work.iterdir()] == ["notes.txt"]
