"""Progress a log can see: plain lines when stderr is not a terminal, driven here by a fake clock."""

import io
import subprocess
import sys

import pytest

from ladd_format.progress import DEFAULT_INTERVAL, Progress, default_interval, format_seconds


class FakeClock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FlushLog(io.StringIO):
    """A non-terminal stream that records what had been flushed at each flush."""

    def __init__(self):
        super().__init__()
        self.flushed = []

    def flush(self):
        super().flush()
        self.flushed.append(self.getvalue())


def lines(stream) -> list[str]:
    return stream.getvalue().splitlines()


def test_plain_lines_at_the_first_update_every_interval_and_the_last():
    clock, log = FakeClock(), FlushLog()
    bar = Progress("augment", 10, "images", stream=log, interval=5, clock=clock)
    for t, done in ((0.5, 1), (1.0, 2), (5.4, 4), (5.6, 5), (6.0, 6), (7.0, 10)):
        clock.now = 100 + t
        bar.set(done)
    bar.close()
    assert lines(log) == [
        "augment: 1/10 images (10%), 0.5 s elapsed, ~4.5 s left",      # the first update
        "augment: 5/10 images (50%), 5.6 s elapsed, ~5.6 s left",      # 5.1 s after the last line
        "augment: 10/10 images (100%), 7.0 s elapsed",                  # the last, however soon
    ]
    written = lines(log)                                              # each line flushed as it is written
    assert log.flushed == ["".join(line + "\n" for line in written[:i]) for i in (1, 2, 3)]


def test_resumed_work_counts_but_the_estimate_uses_this_runs_rate():
    clock, log = FakeClock(), io.StringIO()
    with Progress("augment", 100, "images", initial=40, stream=log, interval=5, clock=clock) as bar:
        clock.now += 2
        bar.set(50)                  # 10 images in 2 s: 50 left take 10 s
    assert lines(log) == ["augment: 50/100 images (50%), 2.0 s elapsed, ~10.0 s left"]


def test_close_writes_the_last_state_once_and_nothing_after_a_failure():
    clock, log = FakeClock(), io.StringIO()
    bar = Progress("label", None, "chunks", stream=log, interval=5, clock=clock)
    for _ in range(3):
        clock.now += 1
        bar.update()
    clock.now += 1
    bar.close()
    bar.close()
    assert lines(log) == ["label: 1 chunks, 1.0 s elapsed", "label: 3 chunks, 4.0 s elapsed"]

    failed = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with Progress("label", 10, "chunks", stream=failed, interval=5, clock=clock) as bar:
            bar.update()
            bar.update()
            raise KeyboardInterrupt
    assert lines(failed) == ["label: 1/10 chunks (10%), 0.0 s elapsed"]


def test_fractions_postfix_and_messages():
    clock, log = FakeClock(), io.StringIO()
    bar = Progress("train-labeler", 50, "epochs", stream=log, interval=0, clock=clock)
    clock.now += 3
    bar.set(2.5, postfix="loss 0.500")
    bar.write("ladd: warning: something")
    assert lines(log) == ["train-labeler: 2.5/50 epochs (5%), 3.0 s elapsed, ~57.0 s left; loss 0.500",
                          "ladd: warning: something"]


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LADD_PROGRESS_INTERVAL", "0")
    assert default_interval() == 0
    clock, log = FakeClock(), io.StringIO()
    bar = Progress("evaluate", 4, "epochs", stream=log, clock=clock)
    for _ in range(4):
        clock.now += 0.1
        bar.update()
    assert len(lines(log)) == 4
    for bad in ("soon", "-1"):
        monkeypatch.setenv("LADD_PROGRESS_INTERVAL", bad)
        assert default_interval() == DEFAULT_INTERVAL
    monkeypatch.delenv("LADD_PROGRESS_INTERVAL")
    assert default_interval() == DEFAULT_INTERVAL == 5.0


def test_a_terminal_gets_a_tqdm_bar_and_disable_writes_nothing():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    with Progress("augment", 10, "images", stream=tty, clock=FakeClock()) as bar:
        bar.set(10)
    assert "10/10" in tty.getvalue() and "elapsed" not in tty.getvalue() and "\r" in tty.getvalue()
    quiet = io.StringIO()
    with Progress("augment", 10, "images", stream=quiet, disable=True) as bar:
        bar.set(10)
        bar.write("hidden")
    assert quiet.getvalue() == ""


def test_format_seconds():
    assert format_seconds(12.14) == "12.1 s"
    assert format_seconds(245) == "4 min 05 s"
    assert format_seconds(2 * 3600 + 3 * 60 + 10) == "2 h 03 min"


@pytest.mark.mutation_skip
def test_the_progress_module_does_not_load_torch():
    code = "import sys, ladd_format.progress; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_no_estimate_from_the_first_two_percent():
    clock, log = FakeClock(), io.StringIO()
    bar = Progress("demo students", 3600, "epochs", stream=log, interval=0, clock=clock)
    clock.now += 4
    bar.set(1)                   # 1 epoch in 4 s is start-up, not a rate: no "~4 h left"
    clock.now += 4
    bar.set(720)                 # 20%: an estimate
    assert lines(log) == ["demo students: 1/3600 epochs (0%), 4.0 s elapsed",
                          "demo students: 720/3600 epochs (20%), 8.0 s elapsed, ~32.0 s left"]


def test_a_delay_keeps_short_runs_quiet_and_long_ones_reported():
    clock, log = FakeClock(), io.StringIO()
    with Progress("convert", 10, "images", stream=log, interval=5, clock=clock, delay=2) as bar:
        clock.now += 1.5
        bar.set(10)                                   # done within the delay: nothing at all
    assert lines(log) == []
    clock, log = FakeClock(), io.StringIO()
    with Progress("convert", 10, "images", stream=log, interval=5, clock=clock, delay=2) as bar:
        clock.now += 1.0
        bar.set(2)                                    # before the delay: not shown
        clock.now += 1.5
        bar.set(5)                                    # the first update after it
        clock.now += 0.5
    assert lines(log) == ["convert: 5/10 images (50%), 2.5 s elapsed, ~2.5 s left"]
    clock, log = FakeClock(), io.StringIO()
    with Progress("size", None, "MB", stream=log, clock=clock, delay=2) as bar:
        bar.set(1)
        clock.now += 3                                # closed after the delay: the last state
    assert lines(log) == ["size: 1 MB, 3.0 s elapsed"]


def test_convert_verify_size_and_export_report_progress_to_the_end(tmp_path, monkeypatch):
    """The library calls: monotonic counts ending at the total; the CLI shows them after its delay
    (0 here), and prints nothing more for a short run with the default delay."""
    import numpy as np
    from click.testing import CliRunner

    import ladd_cli.common as common
    from ladd_cli.main import main
    from ladd_format.converters import ConvertOptions, convert
    from ladd_format.export import export
    from ladd_format.size import measure_file

    images = np.random.default_rng(0).integers(0, 256, (40, 3, 32, 32), dtype=np.uint8)
    dense = np.full((40, 4, 10), 0.1, np.float32)
    np.savez(tmp_path / "in.npz", images=images, labels=np.arange(40) % 10, dense_labels=dense, n=2, ratio=0.75)
    monkeypatch.setattr("ladd_format.rows.BLOCK_BYTES", 20 * (3 * 32 * 32 + 4 * 10 * 4))   # 20 images and labels
    calls = {"convert": [], "size": [], "export": [], "verify": []}
    convert("npz", tmp_path / "in.npz", tmp_path / "a.dla.h5", ConvertOptions(codec="uint8"),
            progress=lambda d, t: calls["convert"].append((d, t)))
    measure_file(tmp_path / "a.dla.h5", progress=lambda d, t: calls["size"].append((d, t)))
    export(tmp_path / "a.dla.h5", tmp_path / "a.npz", "npz", progress=lambda d, t: calls["export"].append((d, t)))
    from ladd_format import verify
    assert verify(tmp_path / "a.dla.h5", progress=lambda d, t: calls["verify"].append((d, t))) == []
    assert calls["convert"] == [(20, 40), (40, 40)]
    assert calls["verify"] and all(d <= t for d, t in calls["verify"])
    assert calls["export"][-1] == (120, 120) and len(calls["export"]) >= 3       # images, dense, stored
    assert calls["size"] and all(t == calls["size"][0][1] for _, t in calls["size"])
    for seen in calls.values():
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    runner = CliRunner()
    quiet = runner.invoke(main, ["convert", "npz", str(tmp_path / "in.npz"), "-o", str(tmp_path / "b.dla.h5")])
    assert quiet.exit_code == 0 and "images written" not in quiet.output
    monkeypatch.setattr(common, "PROGRESS_DELAY", 0.0)
    shown = runner.invoke(main, ["convert", "npz", str(tmp_path / "in.npz"), "-o", str(tmp_path / "c.dla.h5")])
    assert shown.exit_code == 0 and "convert: 40/40 images written (100%)" in shown.output


def test_a_run_that_never_reported_writes_no_closing_line():
    """A closing "convert: 0 images written" after the work is done would contradict the command's own
    "wrote ... (100 images)": a run that never reported progress writes nothing."""
    clock, log = FakeClock(), io.StringIO()
    with Progress("convert", None, "images written", stream=log, clock=clock, delay=2):
        clock.now += 3                                # long enough to be shown, but nothing was reported
    assert lines(log) == []
    with Progress("convert", None, "images written", stream=log, clock=clock, delay=0) as bar:
        bar.set(0, 100)                               # reported, even if zero: shown
    assert lines(log) == ["convert: 0/100 images written (0%), 0.0 s elapsed"]


def test_convert_auto_reports_the_images_the_detected_format_writes(tmp_path, monkeypatch):
    """`convert auto` runs the format it detects through convert() again: that inner call keeps the
    outer progress, so the last line counts the images written, never "0 images written"."""
    import numpy as np
    from click.testing import CliRunner

    import ladd_cli.common as common
    from ladd_cli.main import main
    np.savez(tmp_path / "in.npz", images=np.zeros((100, 3, 8, 8), np.uint8), labels=np.arange(100) % 10)
    monkeypatch.setattr(common, "PROGRESS_DELAY", 0.0)
    result = CliRunner().invoke(main, ["convert", "auto", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.h5")])
    assert result.exit_code == 0, result.output
    shown = [line for line in result.stderr.splitlines() if line.startswith("convert:")]
    assert shown and shown[-1].startswith("convert: 100/100 images written (100%)"), result.stderr
    assert not any(" 0 images written" in line for line in shown)
    assert result.stdout.strip().endswith("(100 images)")
