"""Install extras: ``pip install ladd-format`` is the torch-free core, ``ladd-format[torch]`` adds the
framework, and the package list finds every package.

pyproject.toml's ``[project]`` tables are read here; .ci/core_only.sh installs the core alone in a
fresh venv and runs the commands (too slow for a test: it installs from the registries)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ladd_format.extras import EXTRAS

tomllib = pytest.importorskip("tomllib")      # Python >= 3.11
# reads the build files and runs setup.py in another process (see conftest.py on mutation_skip)
pytestmark = pytest.mark.mutation_skip

ROOT = Path(__file__).resolve().parents[1]
#: the core's distributions (the issue's list; tqdm draws the core commands' progress bars)
CORE = {"numpy", "h5py", "click", "zstandard", "pillow", "tqdm"}
#: import name of each torch-extra distribution whose import name differs
IMPORT_NAME = {"scikit-learn": "sklearn"}


def project() -> dict:
    """pyproject.toml's ``[project]`` table."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def distribution(requirement: str) -> str:
    """The distribution a requirement string names, lower case ("torch>=2.1" -> "torch")."""
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower()


def test_the_core_install_is_the_format_core_without_torch():
    assert {distribution(r) for r in project()["dependencies"]} == CORE


def test_the_torch_extra_brings_what_extras_require_checks():
    extra = project()["optional-dependencies"]["torch"]
    modules = {IMPORT_NAME.get(distribution(r), distribution(r)) for r in extra}
    assert modules == set(EXTRAS["torch"])


def test_every_extra_of_extras_py_is_declared():
    assert set(EXTRAS) <= set(project()["optional-dependencies"])


def test_dev_installs_the_torch_extra():
    """``make test`` installs ``.[dev]``: the tests need the torch side too."""
    assert "ladd-format[torch]" in project()["optional-dependencies"]["dev"]


def test_the_package_list_holds_every_package_and_ladd_cli():
    """setup.py's list: each folder of ladd_format/ with an __init__.py (a new one needs no edit) and
    cli/ as ladd_cli; nothing else (tests/ and benchmarks/ are not installed)."""
    code = ("import setuptools, sys\n"
            "setuptools.setup = lambda **kw: print('\\n'.join(kw['packages']))\n"
            "sys.argv = ['setup.py']\nexec(open('setup.py').read())\n")
    listed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    on_disk = {".".join(init.parent.relative_to(ROOT).parts)
               for init in (ROOT / "ladd_format").rglob("__init__.py") if "__pycache__" not in init.parts}
    on_disk |= {"ladd_cli" + "".join(f".{p}" for p in init.parent.relative_to(ROOT / "cli").parts)
                for init in (ROOT / "cli").rglob("__init__.py")}
    assert sorted(listed) == sorted(on_disk)
