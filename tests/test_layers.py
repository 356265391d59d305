"""The package's layers point one way, and the format core and the read-only commands never load torch.

Layers, lowest first (README "Architecture"): the format core (numpy + h5py; ``spec/``, ``augment_config``
and the other top-level modules) -> converters and export -> ``torch/`` and ``relabel/`` -> ``labeler/``
-> ``train/`` (students) and ``viz/`` (pictures, Pillow; ``show`` draws sub-images with Pillow, torch-free)
-> ``demo`` -> the CLI (``ladd_cli``). A module may import from its own layer and the ones below it; the
documented exceptions (ALLOWED_UPWARD, each an import inside a function) are ``export``'s
``--subimages``, which calls the torch kernel so that the sub-images come from the same code as the
loader's, and ``convert sre2l --relabel``, whose converter reads the relabel folder with torch and
whose ``--check-teacher`` loads the teacher as ``ladd relabel`` does.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ladd_format"
CLI = ROOT / "cli"

LAYERS = {"core": 0, "converters": 1, "torch": 2, "relabel": 2, "labeler": 3, "train": 4, "viz": 4, "demo": 5,
          "cli": 6}
# function-level imports that reach a higher layer on purpose: (module, imported module)
ALLOWED_UPWARD = {("ladd_format.export", "ladd_format.torch.subimages"),
                  # `convert sre2l --relabel`: the converter reads the relabel folder with torch (relabel/), and
                  # its --check-teacher loads the teacher as `ladd relabel` does (labeler/teacher)
                  ("ladd_format.converters.sre2l", "ladd_format.relabel.convert"),
                  ("ladd_format.relabel.convert", "ladd_format.labeler.teacher")}
TORCH_MODULES = ("torch", "torchvision", "safetensors.torch")
# source scans and fresh interpreters (see conftest.py on mutation_skip)
pytestmark = pytest.mark.mutation_skip


def layer_of(module: str) -> int:
    parts = module.split(".")
    if parts[0] == "ladd_cli":
        return LAYERS["cli"]
    if len(parts) > 1 and parts[1] in ("converters", "export"):
        return LAYERS["converters"]
    if len(parts) > 1 and parts[1] in ("torch", "relabel", "labeler", "train", "viz", "demo"):
        return LAYERS[parts[1]]
    return LAYERS["core"]


def module_name(path: Path) -> str:
    if path.is_relative_to(CLI):
        rel = path.relative_to(CLI).with_suffix("")
        return ".".join(("ladd_cli",) + rel.parts).removesuffix(".__init__")
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(absolute module imported, at module level?) for every import of ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None or node.level and not node.module:
                found += [(f"{target}.{alias.name}", id(node) in top_level) for alias in node.names]
            else:
                found.append((target, id(node) in top_level))
    return found


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py")) + sorted(CLI.rglob("*.py"))


def test_layer_of_names_the_layers():
    assert layer_of("ladd_format.verify") == 0 and layer_of("ladd_format.pixels") == 0
    assert layer_of("ladd_format.converters.npz") == 1 and layer_of("ladd_format.export") == 1
    assert layer_of("ladd_format.torch.dataset") == 2 and layer_of("ladd_format.labeler.label_pass") == 3
    assert layer_of("ladd_format.relabel.sre2l") == 2
    assert layer_of("ladd_format.train.evaluate") == 4 and layer_of("ladd_format.viz.show") == 4
    assert layer_of("ladd_format.demo") == 5 and layer_of("ladd_cli.main") == 6
    assert layer_of("ladd_format.augment_config") == 0 and layer_of("ladd_format.spec.limits") == 0


@pytest.mark.parametrize("path", all_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    name = module_name(path)
    own = layer_of(name)
    for target, _ in imports_of(path):
        if not target.startswith(("ladd_format", "ladd_cli")) or (name, target) in ALLOWED_UPWARD:
            continue
        assert layer_of(target) <= own, f"{name} (layer {own}) imports {target} (layer {layer_of(target)})"


@pytest.mark.parametrize("path", [p for p in all_modules() if layer_of(module_name(p)) <= LAYERS["converters"]],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_core_and_converters_do_not_import_torch_at_module_level(path):
    for target, at_top in imports_of(path):
        if target.startswith(TORCH_MODULES) or target.startswith("ladd_format.torch"):
            assert not at_top, f"{module_name(path)} imports {target} at module level"


def test_every_upward_exception_exists():
    """The allow-list names real imports (a stale entry would hide nothing but mislead a reader)."""
    for module, target in ALLOWED_UPWARD:
        path = ROOT / (module.replace(".", "/") + ".py")
        assert (target, False) in imports_of(path)


def run_and_list_modules(code: str, tmp_path: Path) -> set[str]:
    out = tmp_path / "modules.json"
    script = code + f"\nimport json, sys\nopen({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules)))\n"
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, capture_output=True)
    return set(json.loads(out.read_text()))


def test_import_ladd_format_does_not_load_torch(tmp_path):
    loaded = run_and_list_modules(
        "import ladd_format, ladd_format.codecs, ladd_format.converters, ladd_format.export, "
        "ladd_format.pixels, ladd_format.size, ladd_format.verify, ladd_format.geometry", tmp_path)
    assert "torch" not in loaded and "torchvision" not in loaded


@pytest.mark.parametrize("args", [["--help"], ["info", "{file}"], ["verify", "{file}"], ["size", "{file}"],
                                  ["convert", "--help"], ["export", "{file}", "-o", "{out}"]],
                         ids=lambda a: a[0] if a[0] != "--help" else "help")
def test_read_only_commands_do_not_load_torch(args, tmp_path, dla_file):
    argv = ["ladd"] + [a.format(file=dla_file, out=tmp_path / "exported") for a in args]
    code = ("import sys\nfrom ladd_cli.main import main\nsys.argv = " + repr(argv) + "\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n")
    loaded = run_and_list_modules(code, tmp_path)
    assert "torch" not in loaded


def test_no_top_level_cli_package_is_installed(tmp_path):
    """The repository's cli/ folder installs as ``ladd_cli``; a bare ``cli`` would collide."""
    result = subprocess.run([sys.executable, "-c", "import cli"], cwd=tmp_path, capture_output=True)
    assert result.returncode != 0
    subprocess.run([sys.executable, "-c", "import ladd_cli.main"], cwd=tmp_path, check=True)


def test_augment_config_is_torch_free(tmp_path):
    """``ladd augment``'s options are built from AugmentConfig when the CLI is imported (``ladd --help``)."""
    loaded = run_and_list_modules("from ladd_format.augment_config import AugmentConfig, augment_options\n"
                                  "augment_options()", tmp_path)
    assert "torch" not in loaded and "ladd_format.labeler" not in loaded


#: code that makes the torch extra's packages unimportable in this interpreter, as on a core install
HIDE_TORCH = """
import sys
HIDDEN = ("torch", "torchvision", "safetensors", "sklearn")
class Hide:
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        return None if name.partition(".")[0] in HIDDEN else self.finder.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.finder, attr)
sys.meta_path[:] = [Hide(finder) for finder in sys.meta_path]
"""


@pytest.mark.parametrize("package", ["ladd_format.torch", "ladd_format.relabel", "ladd_format.labeler",
                                     "ladd_format.train",
                                     "ladd_format.labeler.label_pass", "ladd_format.train.evaluate"])
def test_a_package_that_needs_torch_names_the_extra(package, tmp_path):
    """Without torch, importing the torch side is one MissingExtraError naming the extra, raised
    before anything imports torch (not a ModuleNotFoundError from deep inside)."""
    code = HIDE_TORCH + (f"try:\n    import {package}\nexcept Exception as exc:\n"
                         "    print(type(exc).__name__, exc)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.startswith("MissingExtraError "), result.stdout + result.stderr
    assert "pip install 'ladd-format[torch]'" in result.stdout
