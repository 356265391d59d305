"""No import circle in ``ladd_format/`` or ``benchmarks/``: the imports are read from the source (ast).

Every ``import`` statement counts, wherever it stands: at module level, inside a function (a lazy
import is still a dependency, and a circle of lazy imports is still a circle a reader must untangle),
and under ``if TYPE_CHECKING:``. An edge goes from a module to the module it names: ``from .x import
y`` to ``x`` (or to ``x.y`` when that is a module), ``from . import z`` to ``z``; importing a
submodule is not counted as importing its parent package, since a package's ``__init__`` importing
its own submodules is how packages are made. A benchmark script's bare ``import storage_common``
names ``benchmarks/storage_common.py`` (the scripts put their folder on ``sys.path``). Imports built
at run time (``importlib.import_module(f"...")``) are not seen.

A failure lists every circle: the modules of each strongly connected part of the graph, and one
path around it (``a -> b -> c -> a``) with the line of each import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOTS = {"ladd_format": ROOT / "ladd_format", "benchmarks": ROOT / "benchmarks"}
# source scans (see conftest.py on mutation_skip)
pytestmark = pytest.mark.mutation_skip


def module_name(path: Path) -> str:
    """``ladd_format/labeler/label_pass.py`` -> ``ladd_format.labeler.label_pass`` (a package: its ``__init__``)."""
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def modules(root: str) -> dict[str, Path]:
    """Every module under ``ROOTS[root]`` (work folders and caches left out)."""
    found = {}
    for path in sorted(ROOTS[root].rglob("*.py")):
        parts = path.relative_to(ROOTS[root]).parts
        if any(part.startswith(("_work", "__pycache__", ".")) for part in parts[:-1]):
            continue
        found[module_name(path)] = path
    return found


ALL = {**modules("ladd_format"), **modules("benchmarks")}
#: the benchmark scripts by bare name (``storage_common``), as a script imports a sibling
SCRIPTS = {name.removeprefix("benchmarks.") for name in ALL if name.startswith("benchmarks.")}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The known module that importing ``name`` runs: ``name`` itself, else its longest known prefix
    (``pkg.mod.attr`` -> ``pkg.mod``); None outside the graph."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imported_names(path: Path, name: str) -> list[tuple[str, int]]:
    """(absolute dotted name, line) of every import in ``path``, any depth, as written: ``from a
    import b`` gives ``a.b`` (a submodule or a name in ``a``; :func:`resolve` tells which)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    in_benchmarks = name.startswith("benchmarks.")
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if in_benchmarks and target.partition(".")[0] in SCRIPTS:
                target = f"benchmarks.{target}"           # a script's sibling, found through sys.path
            found.append((target, node.lineno))
    return found


def graph(known: dict[str, Path]) -> dict[str, dict[str, int]]:
    """``{module: {imported module: line of the first such import}}`` within ``known``."""
    edges: dict[str, dict[str, int]] = {name: {} for name in known}
    for name, path in known.items():
        for target, line in imported_names(path, name):
            resolved = resolve(target, known)
            if resolved is not None and resolved != name:
                edges[name].setdefault(resolved, line)
    return edges


def circles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[list[str]] = []

    def visit(v: str) -> None:                     # the graph is small (a few hundred modules)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                parts.append(sorted(part))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(parts)


def path_around(part: list[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """One circle through the first module of ``part``, staying inside it (breadth-first: a shortest one)."""
    start, members = part[0], set(part)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(edges[v]):
                if w == start:
                    route = [v]
                    while route[-1] != start:
                        route.append(came_from[route[-1]])
                    return route[::-1] + [start]
                if w in members and w not in came_from:
                    came_from[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no circle through {start} in {part}")


def describe(part: list[str], edges: dict[str, dict[str, int]]) -> str:
    route = path_around(part, edges)
    steps = " -> ".join(f"{a} (line {edges[a][b]})" for a, b in zip(route, route[1:])) + f" -> {route[-1]}"
    return f"{len(part)} modules ({', '.join(part)}): {steps}"


def circle_report(known: dict[str, Path]) -> list[str]:
    edges = graph(known)
    return [describe(part, edges) for part in circles(edges)]


# -- the checker on small made-up graphs ----------------------------------------------------------------
def test_a_circle_is_found_and_named():
    edges = {"a": {"b": 3}, "b": {"c": 7}, "c": {"a": 1, "d": 2}, "d": {}, "e": {"d": 5}}
    assert circles(edges) == [["a", "b", "c"]]
    assert describe(["a", "b", "c"], edges) == "3 modules (a, b, c): a (line 3) -> b (line 7) -> c (line 1) -> a"


def test_a_lazy_import_is_an_edge(tmp_path):
    """A function-level import counts: a lazy import closes a circle as surely as a top-level one."""
    mod = tmp_path / "m.py"
    mod.write_text("import os\n\ndef f():\n    from ladd_format.reader import open_dla\n    return open_dla\n")
    assert ("ladd_format.reader.open_dla", 4) in imported_names(mod, "ladd_format.m")
    assert resolve("ladd_format.reader.open_dla", ALL) == "ladd_format.reader"


def test_relative_imports_resolve_to_modules():
    edges = graph(ALL)
    assert "ladd_format.train.student" in edges["ladd_format.train.pool"]
    assert "ladd_format.train.pool" in edges["ladd_format.train.evaluate"]
    assert "ladd_format.labeler.label_pass" in edges["ladd_format.labeler.distributed"]


# -- the tree ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("root", ["ladd_format", "benchmarks"])
def test_no_import_circle(root):
    """No circle among the modules under ``root`` (each line: the modules of one circle, then one path
    around it with the line of each import)."""
    found = circle_report(modules(root))
    assert not found, f"import circles in {root}/:\n" + "\n".join(found)
