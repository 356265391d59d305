"""The CLI is one module per command: ``ladd_cli.<command>`` defines it (as ``command``), ``main`` only
registers them, and no module of ``cli/`` outgrows what one reader takes in (220 lines)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import click

from ladd_cli.main import COMMAND_MODULES, main

CLI = Path(__file__).resolve().parents[1] / "cli"
MAX_LINES = 220
#: the modules of cli/ that are not a command
SHARED = {"__init__", "main", "common"}
COMMANDS = {"augment", "convert", "demo", "evaluate", "export", "info", "relabel", "show", "size", "train-labeler",
            "upgrade", "verify"}


def test_each_command_is_registered_from_its_own_module():
    assert set(main.commands) == COMMANDS
    for name, cmd in main.commands.items():
        module_name = "ladd_cli." + name.replace("-", "_")
        module = importlib.import_module(module_name)
        assert module.command is cmd, name
        assert cmd.callback.__module__ == module_name, name


def test_every_module_of_cli_is_the_group_the_shared_part_or_one_command():
    modules = {path.stem for path in CLI.glob("*.py")}
    assert modules - SHARED == {name.replace("-", "_") for name in COMMANDS}
    assert {m.__name__.rpartition(".")[2] for m in COMMAND_MODULES} == modules - SHARED


def test_no_cli_module_is_over_220_lines():
    long = {path.name: n for path in sorted(CLI.glob("*.py")) if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"cli modules over {MAX_LINES} lines: {long}"


def test_main_defines_no_command_itself():
    tree = ast.parse((CLI / "main.py").read_text())
    decorated = [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                 and any("command" in ast.unparse(d) for d in node.decorator_list)]
    assert decorated == []


def test_the_cli_reads_no_file_itself():
    """Reading the file's attributes (root digest, sizes) is the library's: no cli module imports h5py."""
    for path in CLI.glob("*.py"):
        names = {alias.name for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
        modules = {node.module for node in ast.walk(ast.parse(path.read_text()))
                   if isinstance(node, ast.ImportFrom) and node.module}
        assert "h5py" not in names | modules, path.name


def test_help_texts_quote_no_measured_results():
    """Measured figures belong to the documents (they change when measured again), not to --help."""
    def texts(cmd: click.Command):
        yield cmd.help or ""
        for param in cmd.params:
            yield getattr(param, "help", None) or ""
    for name, cmd in main.commands.items():
        for text in texts(cmd):
            assert "RESULTS" not in text and "measured" not in text, (name, text)
