"""The README's promises a newcomer acts on: its Python snippets run as printed, its command table
names exactly the commands there are, its set-up is the two make targets, and it points at nothing
outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ladd_cli.main import main as cli_group
from ladd_format import open_dla

from conftest import write_dla
from test_ddranking import published

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)


def block_with(word: str) -> str:
    found = [b for b in python_blocks() if word in b]
    assert len(found) == 1, f"expected one README python block with {word!r}, found {len(found)}"
    return found[0]


def run_block(code: str, replacements: dict[str, str], namespace: dict | None = None) -> dict:
    for old, new in replacements.items():
        assert old in code, f"the README block no longer mentions {old!r}"
        code = code.replace(old, new)
    namespace = {} if namespace is None else namespace
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


def test_the_training_loop_runs_as_printed_and_trains(tmp_path):
    path = write_dla(tmp_path / "d_la.dla.h5", m=20, side=32, n=5, codec="uint8")
    torch.manual_seed(0)
    ns = run_block(block_with("DLADataset("), {'"d_la.dla.h5"': repr(str(path))})
    model, loss, parts = ns["model"], ns["loss"], ns["parts"]
    assert sum(p.numel() for p in model.parameters()) > 0
    assert set(parts) == {"global", "local"} and torch.isfinite(loss)
    # the loop stepped the optimiser: the model is not the one build_model made
    torch.manual_seed(0)
    fresh = ns["build_model"]("convnet-d3", num_classes=10, channels=3, image_size=32)
    changed = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values())
               if a.is_floating_point()]
    assert any(changed)


def test_the_container_snippet_gives_the_shapes_it_comments(tmp_path):
    path = write_dla(tmp_path / "d_la.dla.h5", m=12, side=16, n=3, codec="topk", codec_config={"k": 3})
    ns = run_block(block_with("open_dla("), {'"d_la.dla.h5"': repr(str(path))})
    images, labels, dense = ns["images"], ns["labels"], ns["dense"]
    assert images.dtype == np.uint8 and images.shape == (12, 3, 16, 16)
    assert labels.dtype == np.int64 and labels.shape == (12,)
    assert dense.dtype == np.float32 and dense.shape == (12, 9, 10)


def test_the_writer_snippet_writes_a_valid_file(tmp_path):
    from ladd_format import verify
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=(4, 25)).astype(np.float32)
    batches = [(rng.integers(0, 256, (4, 3, 128, 128), dtype=np.uint8), np.arange(4), probs)]
    out = tmp_path / "out.dla.h5"
    run_block(block_with("DLAWriter("), {'"out.dla.h5"': repr(str(out))}, {"batches": batches})
    assert verify(out) == []
    with open_dla(out) as f:
        assert f.num_images == 4 and f.codec.name == "uint8"


def test_the_conversion_snippet_converts_a_ddranking_folder(tmp_path):
    folder = published(tmp_path, ipc=2)
    out = tmp_path / "d.dla.h5"
    ns = run_block(block_with("ConvertOptions("), {'"runs/datm_cifar10_ipc10"': repr(str(folder)),
                                                    '"d.dla.h5"': repr(str(out))})
    assert ns["result"].num_images == 20
    with open_dla(out) as f:
        assert f.attrs["distillation"] == "datm" and f.attrs["source_dataset"] == "cifar10"


def table_commands() -> list[str]:
    section = TEXT.split("## Command line", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `ladd ([a-z-]+)", section, flags=re.M)


def test_the_command_table_names_every_command_once():
    assert sorted(table_commands()) == sorted(cli_group.commands)


def test_the_walkthrough_uses_real_commands_and_options(runner):
    walk = TEXT.split("## Your own distilled set", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in walk.splitlines()]
    lines = [line for line in lines if line.startswith("ladd ")]
    assert len(lines) >= 8
    for line in lines:
        words = line.split()
        command = cli_group.commands[words[1]]
        known = {opt for param in command.params
                 for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]}   # --no-zca
        for word in words[2:]:
            if word.startswith("-"):
                assert word in known, f"README walkthrough: {words[1]} has no option {word}"


def test_two_setup_commands_and_nothing_outside_the_repository():
    setup = TEXT.split("## Set up", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in setup.strip().splitlines()] == [["make", "demo"], ["make", "test"]]
    assert "../shared" not in TEXT and "the issue" not in TEXT


@pytest.mark.parametrize("name", ["show", "export", "evaluate", "convert"])
def test_commands_the_readme_explains_have_help_that_matches(runner, name):
    result = runner.invoke(cli_group, [name, "--help"])
    assert result.exit_code == 0
    if name == "export":
        assert "ddranking" in result.output
    if name == "convert":
        for fmt in ("auto", "datm", "dc", "npz", "folder", "sre2l", "rded", "tensors"):
            assert re.search(rf"^\s+{fmt}\s", result.output, flags=re.M), fmt
