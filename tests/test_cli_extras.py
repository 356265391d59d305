"""Without the torch extra: the light commands work, and a command that needs torch says in one line
which extra to install (exit 1, no traceback).

Each command runs in a fresh interpreter whose import system cannot see torch, torchvision,
safetensors or scikit-learn (a ``sitecustomize`` on PYTHONPATH makes every finder answer "not
found" for them, as on an install without the extra), on a spec vector."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# fresh interpreters (see conftest.py on mutation_skip)
pytestmark = pytest.mark.mutation_skip

ROOT = Path(__file__).resolve().parents[1]
VECTOR = ROOT / "spec" / "vectors" / "uint8.dla.h5"
HIDDEN = ("torch", "torchvision", "safetensors", "sklearn")
EXTRA = "ladd-format[torch]"

SITECUSTOMIZE = f'''
import sys

HIDDEN = {HIDDEN!r}


class _Hide:
    """A finder of sys.meta_path that answers "not found" for the hidden packages."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.finder, attr)


sys.meta_path[:] = [_Hide(finder) for finder in sys.meta_path]
'''


@pytest.fixture(scope="module")
def no_torch_env(tmp_path_factory) -> dict:
    """The environment of an interpreter that cannot import the torch extra's packages."""
    folder = tmp_path_factory.mktemp("no_torch")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    env.pop("LADD_DEBUG", None)
    return env


def ladd(env: dict, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ladd_cli.main", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_the_extra_is_really_hidden(no_torch_env):
    for name in HIDDEN:
        result = subprocess.run([sys.executable, "-c", f"import {name}"], env=no_torch_env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, name


@pytest.mark.parametrize("args", [("--help",), ("info", VECTOR), ("verify", VECTOR), ("size", VECTOR),
                                  ("info", "--json", VECTOR), ("convert", "--help"), ("evaluate", "--help")],
                         ids=lambda args: " ".join(map(str, args)).replace(str(VECTOR), "VECTOR"))
def test_light_commands_work_without_torch(no_torch_env, args):
    result = ladd(no_torch_env, *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and result.stdout


def test_export_npz_and_convert_npz_work_without_torch(no_torch_env, tmp_path):
    exported, back = tmp_path / "v.npz", tmp_path / "back.dla.h5"
    result = ladd(no_torch_env, "export", VECTOR, "--format", "npz", "-o", exported)
    assert result.returncode == 0, result.stderr
    result = ladd(no_torch_env, "convert", "npz", exported, "-o", back)
    assert result.returncode == 0, result.stderr
    assert ladd(no_torch_env, "verify", back).returncode == 0


@pytest.mark.parametrize("args", [(), ("--index", "1", "--cell", "32"), ("--per-class", "2")],
                         ids=["sub-images", "index", "per-class"])
def test_show_works_without_torch(no_torch_env, tmp_path, args):
    """``ladd show`` draws the sub-images with Pillow: a PNG, no torch needed."""
    out = tmp_path / "show.png"
    result = ladd(no_torch_env, "show", VECTOR, "-o", out, *args)
    assert result.returncode == 0, result.stderr
    kind = "per-class" if "--per-class" in args else "sub-images"
    assert "Traceback" not in result.stderr and f"wrote {out} ({kind}," in result.stdout, result.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width >= 640 and picture.height > 0


def one_line_naming_the_extra(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a command refused for want of the extra (exit 1, nothing on stdout)."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ladd: error: ") and EXTRA in lines[0], lines[0]
    return lines[0]


def test_evaluate_without_torch_names_the_extra_in_one_line(no_torch_env):
    line = one_line_naming_the_extra(ladd(no_torch_env, "evaluate", VECTOR, "--test", "digits-test"))
    assert "ladd evaluate" in line


@pytest.mark.parametrize("args", [
    ("augment", VECTOR, "--labeler", "labeler.safetensors", "-o", "out.dla.h5"),
    ("relabel", VECTOR, "--teacher", "t.safetensors", "-o", "out.dla.h5"),
    ("train-labeler", "digits", "-o", "labeler"),
    ("demo", "--workdir", "demo-out", "--quick"),
    ("export", VECTOR, "--format", "ddranking", "-o", "dd"),
], ids=lambda args: " ".join(map(str, args[:1] + args[-3:-2])))
def test_every_command_that_needs_torch_names_the_extra(no_torch_env, args, tmp_path):
    one_line_naming_the_extra(ladd(no_torch_env, *args, cwd=tmp_path))
    assert list(tmp_path.iterdir()) == []                     # nothing written


def test_convert_of_a_pt_run_folder_names_the_extra(no_torch_env, tmp_path):
    """A ``.pt`` format needs torch to read its tensors: one line, the output not written."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("images_best.pt", "labels_best.pt"):
        (run / name).write_bytes(np.zeros(16, np.uint8).tobytes())
    one_line_naming_the_extra(ladd(no_torch_env, "convert", "mtt", run, "-o", tmp_path / "out.dla.h5"))
    assert not (tmp_path / "out.dla.h5").exists()
