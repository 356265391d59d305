"""Ctrl-C during a multi-seed ``ladd evaluate`` whose seeds train in spawned worker processes: one
line, exit status 130, no traceback from any process (a terminal sends SIGINT to the whole process
group, workers included), and the command ends without waiting for a student to finish."""

import time
from pathlib import Path

import numpy as np
import pytest

from ladd_format import DenseSpec, DLAWriter
from ladd_format.labeler import load_source

from conftest import INTERRUPT_TIMEOUT, interrupt_ladd, softmax

@pytest.fixture(scope="module")
def digits_dla(tmp_path_factory) -> Path:
    train = load_source("digits")
    pick = np.concatenate([np.flatnonzero(train.labels == c)[:3] for c in range(10)])
    rng = np.random.default_rng(0)
    dense = softmax(rng.normal(size=(30, 25, 10))).astype(np.float32)
    path = tmp_path_factory.mktemp("interrupt") / "d.dla.h5"
    with DLAWriter(path, num_classes=10, image_shape=(3, 32, 32), mean=(0.3,) * 3, std=(0.3,) * 3,
                   dense=DenseSpec(5, 0.625)) as w:
        w.append(train.images[pick], train.labels[pick], dense=dense)
    return path


def spawned_workers(parent: int) -> list[int]:
    """The multiprocessing workers ``parent`` has spawned (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def interrupt(path: Path, when: str) -> tuple[int, str]:
    """Run a 2-seed, 2-worker evaluate in its own process group and send the group SIGINT, as a
    terminal does: ``when`` is ``"epoch N"`` (after the progress line of the N-th epoch) or
    ``"workers starting"`` (0.3 s after both spawned workers exist: their interpreters still start
    up, where an interrupt used to print their tracebacks; this process ignores SIGINT for the
    milliseconds it takes to start them, pool.py). Returns (exit status, stderr)."""
    args = ["evaluate", str(path), "--test", "digits-test", "--width", "8", "--epochs", "10000", "--seeds", "2",
            "--workers", "2", "--threads", "1", "--sub-per-image", "2"]
    if when != "workers starting":
        return interrupt_ladd(args, started=f"evaluate: {int(when.split()[1])}/")

    def workers_starting(proc, lines) -> None:
        deadline = time.monotonic() + INTERRUPT_TIMEOUT * 3
        while len(spawned_workers(proc.pid)) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.01)
        time.sleep(0.3)
    return interrupt_ladd(args, ready=workers_starting)


@pytest.mark.mutation_skip
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the spawned workers in /proc (Linux)")
@pytest.mark.parametrize("when", ["workers starting", "epoch 1", "epoch 3", "workers starting", "epoch 5"])
def test_ctrl_c_in_a_pooled_evaluate_is_one_line_and_exit_130(digits_dla, when):
    rc, stderr = interrupt(digits_dla, when)
    assert "Traceback" not in stderr, stderr
    assert rc == 130, stderr
    assert [line for line in stderr.splitlines() if line.startswith("ladd:")] == \
        ["ladd: interrupted; nothing was written"], stderr
