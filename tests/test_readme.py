"""The README's and docs/' promises a newcomer acts on: their Python snippets run as printed, the
command table (docs/cli.md) names exactly the commands there are, the README's set-up is the two make
targets, its architecture section names the modules there are, every link resolves, and the documents
point at nothing outside the repository and say nothing of how or when the work was done."""

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

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TEXT = README.read_text()
DOCS = {name: ROOT / "docs" / f"{name}.md" for name in ("format", "converters", "cli", "loader", "evidence")}
# every document a reader is pointed to: README, docs/, the results index and its pages
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "RESULTS.md",
             *sorted((ROOT / "benchmarks" / "RESULTS").glob("*.md"))]
README_MAX_LINES = 250


def python_blocks() -> list[str]:
    texts = [TEXT, *(path.read_text() for path in DOCS.values())]
    return [b for text in texts for b in re.findall(r"```python\n(.*?)```", text, flags=re.S)]


def block_with(word: str) -> str:
    found = [b for b in python_blocks() if word in b]
    assert len(found) == 1, f"expected one python block with {word!r} in README and docs/, found {len(found)}"
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
    section = DOCS["cli"].read_text().split("\n## ", 1)[0]
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
    for path in [README, *DOCS.values()]:
        text = path.read_text()
        assert "../shared" not in text and "the issue" not in text, path.name


def test_the_readme_is_a_front_door_to_the_docs():
    """Within about 250 lines, and it links every topic page of docs/ and the results index."""
    assert len(TEXT.splitlines()) <= README_MAX_LINES
    for name, path in DOCS.items():
        assert path.exists(), f"docs/{name}.md is missing"
        assert f"](docs/{name}.md" in TEXT, f"the README does not link docs/{name}.md"
    assert "](benchmarks/RESULTS.md)" in TEXT


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(path):
    """Relative links point at files of the repository, and #anchors at headings of their file."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{path.name}: link to {target} points at nothing"
        assert linked.is_relative_to(ROOT), f"{path.name}: link to {target} leaves the repository"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{path.name}: {target} names no heading of {linked.name}"


WORK_WORDS = r"\bsessions?\b|\bissues? ?#?[0-9]+|\(issue:|\btoday\b|\bthe issue\b|hand-written, [0-9]{4}-"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_speak_of_the_project_not_of_the_work(path):
    """No work-period labels ("this session", "issue 15", "hand-written, <date>") in the documents."""
    found = re.findall(WORK_WORDS, path.read_text(), flags=re.I)
    assert not found, f"{path.relative_to(ROOT)} speaks of the work: {found}"


def architecture() -> str:
    return TEXT.split("## Architecture", 1)[1].split("\n## ", 1)[0]


def modules_named(block: str) -> set[str]:
    """The single-word names of the architecture block's lists: module or folder names."""
    names = set()
    block = re.sub(r"\n +", " ", block)                      # a wrapped line continues the one above it
    for segment in re.split(r"[,;:+()\[\]\n]|\s[0-9]\.\s", block):
        segment = segment.strip().rstrip("/")
        if re.fullmatch(r"[a-z][a-z0-9_]*(\.py)?", segment):
            names.add(segment.removesuffix(".py"))
    return names


def test_the_architecture_section_matches_the_tree():
    """Every module or folder the layer diagram names exists, every subpackage of ladd_format is in it,
    and every path the 'where a new piece goes' list names exists."""
    section = architecture()
    block = section.split("```", 2)[1]
    package = ROOT / "ladd_format"
    existing = {p.stem for p in package.rglob("*.py")} | {p.name for p in package.rglob("*") if p.is_dir()}
    existing |= {p.stem for p in (ROOT / "cli").glob("*.py")} | {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    existing |= {"ladd_format", "ladd_cli", "cli", "spec", "tests",
                                                                  "benchmarks", "vectors", "numpy", "h5py", "torch"}
    missing = sorted(modules_named(block) - existing)
    assert not missing, f"the README's architecture names modules that do not exist: {missing}"
    subpackages = sorted(p.parent.name for p in package.glob("*/__init__.py"))
    assert all(f"{name}/" in block for name in subpackages), (subpackages, block)
    # every module is named, except the files of the per-format folders (one file per codec or format)
    listed = [p for p in package.glob("*.py")] + [p for name in subpackages if name not in ("codecs", "converters")
                                                  for p in (package / name).glob("*.py")]
    unnamed = sorted(str(p.relative_to(package)) for p in listed
                     if p.stem != "__init__" and p.stem not in modules_named(block))
    assert not unnamed, f"modules the README's architecture does not name: {unnamed}"
    for path in re.findall(r"`((?:ladd_format|cli|spec|benchmarks)/[^`<>*]+)`", section):
        assert (ROOT / path).exists(), f"the README's architecture names {path}, which does not exist"


@pytest.mark.parametrize("name", ["show", "export", "evaluate", "convert"])
def test_commands_the_readme_explains_have_help_that_matches(runner, name):
    result = runner.invoke(cli_group, [name, "--help"])
    assert result.exit_code == 0
    if name == "export":
        assert "ddranking" in result.output
    if name == "convert":
        for fmt in ("auto", "datm", "dc", "npz", "folder", "sre2l", "rded", "tensors"):
            assert re.search(rf"^\s+{fmt}\s", result.output, flags=re.M), fmt


NOT_LADD_OPTIONS = {"--help", "--render-only", "--nproc-per-node"}     # click's, the benchmarks', torchrun's


def test_every_option_the_documents_name_exists():
    """Every ``--option`` the README and docs/ name is an option of some ``ladd`` command."""
    known = {opt for command in [cli_group, *cli_group.commands.values()] for param in command.params
             for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]}
    for path in [README, *DOCS.values()]:
        named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", path.read_text()))
        assert not named - known - NOT_LADD_OPTIONS, f"{path.name} names options no command has: {named - known}"
