"""The benchmarks' measured data as JSON: save/load round trip and ``--render-only`` (no timing)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture()
def bench(monkeypatch):
    """Import benchmark modules from benchmarks/ (they import each other by bare name)."""
    monkeypatch.syspath_prepend(str(BENCH))

    def load(name: str):
        return importlib.import_module(name)
    return load


def test_save_load_round_trip(bench, tmp_path):
    common = bench("_common")
    np = pytest.importorskip("numpy")
    data = {"rows": [{"name": "a", "x": 1.0 / 3, "n": np.int64(7)}], "arr": np.arange(3), "t": (1, 2),
            "timing": common.Timing([0.5, 0.25])}
    saved = common.save_json("demo", data, tmp_path, machine_line="test machine", command="python x.py")
    assert (tmp_path / "demo.json").exists()
    loaded = common.load_json("demo", tmp_path)
    assert loaded == saved
    assert loaded["machine"] == "test machine" and loaded["command"] == "python x.py"
    assert loaded["name"] == "demo" and loaded["date"].endswith("UTC")
    d = loaded["data"]
    assert d["rows"][0]["x"] == 1.0 / 3          # floats round-trip exactly
    assert d["rows"][0]["n"] == 7 and d["arr"] == [0, 1, 2] and d["t"] == [1, 2]
    revived = common.revive_timings(d)
    assert isinstance(revived["timing"], common.Timing) and revived["timing"].median == 0.375


def test_load_missing_says_so(bench, tmp_path):
    common = bench("_common")
    with pytest.raises(SystemExit, match="not found"):
        common.load_json("nothing", tmp_path)


def test_update_results_keeps_other_sections(bench, tmp_path):
    common = bench("_common")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n<!-- a:start -->\nold a\n<!-- a:end -->\n\n"
                       "<!-- b:start -->\nkeep b\n<!-- b:end -->\n")
    common.update_results("a", "new a", results)
    text = results.read_text()
    assert "new a" in text and "old a" not in text and "keep b" in text


def cli_startup_fixture() -> dict:
    return {"name": "cli_startup", "machine": "Fixture CPU, 2 logical cores", "command": "python benchmarks/cli_startup.py",
            "date": "2026-01-02 03:04 UTC",
            "data": {"repeats": 3,
                     "file": {"images": 200, "image_shape": [3, 32, 32], "classes": 10, "dense": "N = 5, float32",
                              "bytes": 123456},
                     "rows": [{"command": "ladd --help", "plain": [0.2, 0.3, 0.25], "torch_first": [1.0, 1.2, 1.1]},
                              {"command": "ladd info FILE", "plain": [0.3, 0.3, 0.3], "torch_first": [1.5, 1.5, 1.5]}],
                     "import_torch": [0.9, 1.0, 0.95], "python_bare": [0.02, 0.03, 0.025],
                     "cli_imports_torch": False}}


def test_render_only_cli_startup(bench, tmp_path, capsys):
    cli_startup = bench("cli_startup")
    (tmp_path / "cli_startup.json").write_text(json.dumps(cli_startup_fixture()))
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n<!-- cli_startup:start -->\nstale\n<!-- cli_startup:end -->\n")
    assert cli_startup.main(["--render-only", "--data-dir", str(tmp_path), "--results", str(results)]) == 0
    text = results.read_text()
    assert "stale" not in text
    assert "## CLI start-up" in text and "Fixture CPU" in text and "2026-01-02 03:04 UTC" in text
    assert "| `ladd --help` | 250 (200-300) | 1,100 (1,000-1,200) | 4.4x |" in text
    assert "| `ladd info FILE` | 300 (300-300) | 1,500 (1,500-1,500) | 5.0x |" in text
    assert "start 4.4-5.0x faster" in text
    # rendering twice from the same JSON gives the same text
    again = tmp_path / "again.md"
    cli_startup.main(["--render-only", "--data-dir", str(tmp_path), "--results", str(again)])
    block = text[text.index("<!-- cli_startup:start -->"):]
    assert again.read_text().endswith(block)
    assert "stale" not in capsys.readouterr().out


def test_quick_writes_nothing_by_default(bench, tmp_path):
    common = bench("_common")
    ns = type("Args", (), {"quick": True, "data_dir": None, "results": None, "render_only": False})()
    assert common.Output.from_args(ns).write is False
    ns.data_dir = tmp_path
    out = common.Output.from_args(ns)
    assert out.write is True and out.data_dir == tmp_path and out.results is None     # each section's page
    ns = type("Args", (), {"quick": False, "data_dir": None, "results": None, "render_only": True})()
    out = common.Output.from_args(ns)
    assert out.write and out.data_dir == common.RESULTS_DIR



def test_render_only_demo_students_reproduces_the_committed_section(bench, tmp_path):
    """The committed RESULTS section is what the committed JSON renders to (no figure typed by hand)."""
    demo_students = bench("demo_students")
    results = tmp_path / "RESULTS.md"
    assert demo_students.main(["--render-only", "--results", str(results)]) == 0
    rendered = results.read_text()
    block = rendered[rendered.index("<!-- demo_students:start -->"):rendered.index("<!-- demo_students:end -->")]
    committed = (BENCH / "RESULTS" / "demo-students.md").read_text()
    assert block in committed


def test_mutation_summary_counts_statuses_and_lists_survivors(bench, tmp_path, monkeypatch):
    mutation = bench("mutation")
    mutants = tmp_path / "mutants" / "ladd_format"
    mutants.mkdir(parents=True)
    (mutants / "geometry.py.meta").write_text(json.dumps({"exit_code_by_key": {
        "ladd_format.geometry.x_a__mutmut_1": 1, "ladd_format.geometry.x_a__mutmut_2": 0,
        "ladd_format.geometry.x_a__mutmut_3": -24, "ladd_format.geometry.x_a__mutmut_4": None,
        "ladd_format.geometry.x_a__mutmut_5": 1}}))
    data = mutation.collect(tmp_path / "mutants")
    module = data["modules"]["ladd_format/geometry.py"]
    assert module["counts"] == {"killed": 2, "survived": 1, "timeout": 1, "not checked": 1}
    assert module["survivors"] == ["ladd_format.geometry.x_a__mutmut_2"]
    assert mutation.score(module["counts"]) == (3, 4, 75.0)
    text = mutation.render({"machine": "m", "date": "d", "command": "c", "data": data})
    assert "| `ladd_format/geometry.py` | 5 | 4 | 2 | 1 | 1 | 0 | 0 | 1 | 75.0% | 50.0% |" in text
    assert "x_a__mutmut_2" in text
    # a survivor listed as equivalent leaves the score's denominator and is shown with its reason
    monkeypatch.setitem(mutation.EQUIVALENT, "ladd_format.geometry.x_a__mutmut_2", "same output")
    data = mutation.collect(tmp_path / "mutants")
    assert mutation.score(data["modules"]["ladd_format/geometry.py"]["counts"]) == (3, 3, 100.0)
    text = mutation.render({"machine": "m", "date": "d", "command": "c", "data": data})
    assert "| `ladd_format/geometry.py` | 5 | 3 | 2 | 1 | 0 | 1 | 0 | 1 | 100.0% | 66.7% |" in text
    assert "x_a__mutmut_2 (equivalent: same output)" in text


def test_mutation_samples_large_modules_uniformly_and_reproducibly(bench, tmp_path):
    mutation = bench("mutation")
    names = [f"m.x_f__mutmut_{i}" for i in range(1000)]
    picked = mutation.sample_of(names)
    assert len(picked) == mutation.SAMPLE_SIZE == len(set(picked)) and set(picked) <= set(names)
    assert picked == mutation.sample_of(list(reversed(names)))              # the order given does not matter
    assert mutation.sample_of(names[:mutation.SAMPLE_ABOVE]) == sorted(names[:mutation.SAMPLE_ABOVE])
    groups = mutation.samples_of(names)
    assert groups["sample"] == picked and len(groups["held-out"]) == mutation.HELD_OUT_SIZE
    assert not set(groups["held-out"]) & set(picked)                        # held out: none of the first sample
    second = set(groups["second held-out"])
    assert len(second) == mutation.HELD_OUT_SIZE and not second & (set(picked) | set(groups["held-out"]))
    numbers = sorted(int(n.rsplit("_", 1)[1]) for n in picked)              # spread over the whole range
    assert numbers[0] < 100 and numbers[-1] > 900
    low, high = mutation.wilson(135, 150)
    assert 83.0 < low < 90.0 < high < 95.0                                   # 90% observed: 84-94%
    assert mutation.wilson(150, 150)[1] == 100.0


def test_planted_bugs_edits_apply_once_and_render(bench):
    """Every planted bug's edit matches its file exactly once (a refactor that moves the code must
    update the bug, not silently skip it), and the table says whether each met the target."""
    planted = bench("planted_bugs")
    root = BENCH.parent
    for name, _, path, old, new in planted.BUGS:
        text = (root / path).read_text()
        if "# mutmut generated" in text:
            pytest.skip("the sources are mutmut's rewritten copies here")
        assert text.count(old) == 1, name
        assert old != new
    payload = {"machine": "m", "date": "d", "command": "c", "data": {"rows": [
        {"name": "a", "what": "bug a", "file": "x.py", "failed": ["tests/t1.py::x", "tests/t2.py::y"],
         "files": ["tests/t1.py", "tests/t2.py"]},
        {"name": "b", "what": "bug b", "file": "x.py", "failed": ["tests/t1.py::x"], "files": ["tests/t1.py"]}]}}
    text = planted.render(payload)
    assert "| bug a | `x.py` | 2 | 2 (t1, t2) | yes |" in text and "| bug b | `x.py` | 1 | 1 (t1) | NO |" in text


def test_scale_inputs_are_npz_files_numpy_reads_back(bench, tmp_path):
    """The streamed npz members hold exactly the arrays written; the dense labels are probabilities
    whose largest entry is the image's class."""
    import numpy as np
    scale = bench("scale")
    path = scale.write_inputs(tmp_path, m=6, classes=12, side=16, dense=True)
    with np.load(path) as z:
        assert z["images"].shape == (6, 3, 16, 16) and z["images"].dtype == np.uint8
        assert np.array_equal(z["images"], scale._images(0, 6, 16))
        assert np.array_equal(z["labels"], np.arange(6) % 12)
        dense = z["dense_labels"]
        assert dense.shape == (6, 25, 12) and dense.dtype == np.float32
        assert np.allclose(dense.sum(axis=-1), 1, rtol=0, atol=1e-5)
        assert np.array_equal(dense.argmax(axis=-1), np.broadcast_to((np.arange(6) % 12)[:, None], (6, 25)))
        assert int(z["n"]) == 5 and float(z["ratio"]) == 0.625


@pytest.mark.mutation_skip
def test_scale_runs_every_command_at_a_small_shape(bench, tmp_path):
    """Every step of benchmarks/scale.py runs and exits 0 (40 images of 20 classes at 32 px), and the
    section renders each step with a measured peak memory. Nothing is timed against a bound."""
    scale = bench("scale")
    args = type("Args", (), dict(ipc=2, classes=20, side=32, codec="topk:k=5,values=float16", label_images=4,
                                 device="cpu", work=str(tmp_path / "work"), shards=2, micro_batch=2, test_images=10,
                                 no_jpeg=False))()
    data = scale.run(args)
    assert [s["rc"] for s in data["steps"]] == [0] * len(data["steps"]) and len(data["steps"]) == 17
    assert all(s["peak_rss_mb"] > 0 for s in data["steps"])
    assert data["loader"].startswith("items 40 ") and data["loader_stored"].startswith("items 40 ")
    text = scale.render({"machine": "m", "date": "d", "command": "c", "data": {**data, "gpu": None}})
    assert "| verify | " in text and "failed" not in text and "`augment --shards 2 (4 images)`: " in text
    assert "sre2l/ (JPEG)" in text
    held, streamed = data["whole_set_accuracies"]
    assert held is not None and held == streamed and "(the same student)" in text


@pytest.mark.mutation_skip
def test_the_device_steps_of_scale_run_alone_and_report_the_data_wait(bench, tmp_path):
    """--steps device (the GPU session's profile) leaves out the steps a GPU does not change, keeps
    what the loaders, the label pass and evaluate read, rewrites a partial JSON after every step, and
    the streamed evaluate reports the share of its training spent waiting for batches."""
    scale = bench("scale")
    args = type("Args", (), dict(ipc=2, classes=20, side=32, codec="topk:k=5,values=float16", label_images=4,
                                 device="cpu", work=str(tmp_path / "work"), shards=1, micro_batch=2, test_images=10,
                                 no_jpeg=False, steps="device", whole_evaluate="stream", step_timeout=300))()
    partial = tmp_path / "data" / "scale_gpu.partial.json"
    data = scale.run(args, partial)
    names = [s["step"] for s in data["steps"]]
    assert [s["rc"] for s in data["steps"]] == [0] * len(names), data["steps"]
    assert [n.split(" (")[0].split(",")[0] for n in names] == [
        "convert npz", "DLADataset epoch", "DLADataset(stored=True) epoch + decode_batch", "convert npz", "augment",
        "evaluate", "evaluate --stream"], names
    assert "plain.npz" not in data["input_bytes"] and not (tmp_path / "work" / "sre2l").exists()
    assert json.loads(partial.read_text())["steps"] == data["steps"]
    streamed = data["steps"][-1]
    assert 0 <= streamed["data_wait_share"] <= 1
    assert "data_wait_share" not in data["steps"][-2]          # 4 images: held in memory, no reader
    text = scale.render({"machine": "m", "date": "d", "command": "c", "data": {**data, "gpu": None}})
    assert f"evaluate --stream, all 40 images: {100 * streamed['data_wait_share']:.1f}%" in text


def test_the_label_pass_gpu_section_checks_the_imagenet_targets(bench):
    """A GPU run's ResNet-18 row gives the IPC 50 time (1.25 M sub-images, < 60 s) and every row its
    share of the matmul ceiling measured in the same run; a CPU run (no ceiling) gives neither share."""
    label_pass = bench("label_pass")
    rows = [{"name": "ResNet-18 (1000 classes), 224 px, bfloat16", "pass": 25_000.0, "flops": 3.64e9},
            {"name": "ConvNet-D5 w128, 128 px, bfloat16", "pass": 10_000.0, "flops": 1.72e9}]
    text = "\n".join(label_pass.resnet_lines(rows, 700.0))
    assert "labelled and written in about 50 s at this pass rate (target < 60 s: PASS" in text
    assert "ResNet-18 (1000 classes), 224 px, bfloat16 91.0 TFLOP/s (13.0%)" in text
    assert "ConvNet-D5 w128, 128 px, bfloat16 17.2 TFLOP/s (2.5%)" in text
    rows[0]["pass"] = 20_000.0
    assert "about 62 s at this pass rate (target < 60 s: FAIL" in "\n".join(label_pass.resnet_lines(rows, None))
    assert "TFLOP/s" not in "\n".join(label_pass.resnet_lines(rows, None))


def test_a_scale_step_past_its_timeout_is_killed_and_recorded(bench, tmp_path):
    """A step that outlives --step-timeout is killed with the processes it started; the run records
    'timeout' and no peak memory instead of stopping."""
    import sys

    scale = bench("scale")
    marker = tmp_path / "grandchild-finished"
    grandchild = tmp_path / "grandchild.py"
    grandchild.write_text(f"import time\ntime.sleep(3)\nopen({str(marker)!r}, 'w').close()\n")
    child = tmp_path / "child.py"
    child.write_text(f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, {str(grandchild)!r}])\n"
                     "time.sleep(60)\n")
    result = scale.run_step("sleeper", [sys.executable, str(child)], tmp_path / "scale.log", timeout=1)
    assert result["rc"] == "timeout" and result["seconds"] < 30 and result["peak_rss_mb"] is None
    text = scale.render({"machine": "m", "date": "d", "command": "c", "data": {
        "images": 1, "ipc": 1, "classes": 1, "side": 8, "codec": "c", "input_bytes": {}, "file_bytes": {},
        "label_images": 0, "device": "cpu", "steps": [result]}})
    assert "| sleeper | " in text and " | - | timeout |" in text and "`sleeper` failed" in text
    import time
    time.sleep(4)
    assert not marker.exists()                 # the grandchild was killed too


@pytest.mark.parametrize("temperature,key", [("1", "students_c1000"), ("0.25", "students_c1000_t025")])
def test_render_only_students_c1000_reproduces_the_committed_section(bench, tmp_path, temperature, key):
    """The C = 1000 students' sections are what the committed JSON renders to, and every codec's row
    reports its difference to float32 from the same seeds (paired)."""
    students = bench("students_c1000")
    results = tmp_path / "RESULTS.md"
    assert students.main(["--render-only", "--results", str(results), "--temperature", temperature]) == 0
    rendered = results.read_text()
    block = rendered[rendered.index(f"<!-- {key}:start -->"):rendered.index(f"<!-- {key}:end -->")]
    assert block in (BENCH / "RESULTS" / "students-c1000.md").read_text()
    data = json.loads((BENCH / "results" / f"{key}.json").read_text())["data"]
    seeds = data["settings"]["seeds"]
    assert all(len(row["accuracies"]) == seeds for row in data["rows"])
    assert [row["codec"] for row in data["rows"]] == [None, *data["settings"]["codecs"]]


def test_students_c1000_pairs_seeds_and_composes_three_real_digits(bench):
    students = bench("students_c1000")
    np = pytest.importorskip("numpy")
    ref = {"accuracies": [0.40, 0.70]}
    assert students._delta({"accuracies": [0.50, 0.60]}, ref) == "+0.00 ± 10.00"   # paired: +10 and -10 points
    d1k = students.Digits1000()
    images, labels = students.composites(d1k, 1, "test", seed=0)
    assert images.shape == (1000, 3, 24, 24) and images.dtype == np.uint8 and labels.tolist() == list(range(1000))
    assert not images[:, :, :8].any() and not images[:, :, 16:].any()       # the digits fill rows 8-15 only
    # class 123 shows a test-split 1, 2 and 3, left to right: each 8x8 block is one of that digit's images
    pool = d1k.pools["test"]
    for position, digit in enumerate((1, 2, 3)):
        block = images[123, 0, 8:16, 8 * position:8 * position + 8]
        candidates = (d1k.x[pool[digit]] * 255).round().numpy().astype(np.uint8)
        assert any(np.array_equal(block, c) for c in candidates)
        others = (d1k.x[pool[(digit + 1) % 10]] * 255).round().numpy().astype(np.uint8)
        assert not any(np.array_equal(block, c) for c in others)


def test_the_scale_gpu_profile_labels_every_image_in_whole_batches(bench):
    """scale.py --device cuda labels all the images and trains the ResNet-18 student in whole
    batches; the CPU profile labels 64 in micro-batches of 1; given values win."""
    scale = bench("scale")

    def args(**kw):
        return type("Args", (), {"device": "cpu", "label_images": None, "micro_batch": None, **kw})()
    assert scale.profile(args(), 10_000) == (64, 1)
    assert scale.profile(args(device="cuda"), 10_000) == (10_000, 64)
    assert scale.profile(args(device="cuda", label_images=500, micro_batch=8), 10_000) == (500, 8)
    assert scale.profile(args(label_images=20_000), 10_000) == (10_000, 1)


def test_render_only_scale_ipc50_reproduces_the_committed_section(bench, tmp_path):
    """The IPC 50 section (its table and its comparison with the IPC 10 run) is what the committed
    JSON renders to; the comparison names every step both runs measured."""
    scale = bench("scale")
    results = tmp_path / "RESULTS.md"
    assert scale.main(["--render-only", "--results-key", "scale_ipc50", "--results", str(results)]) == 0
    rendered = results.read_text()
    block = rendered[rendered.index("<!-- scale_ipc50:start -->"):rendered.index("<!-- scale_ipc50:end -->")]
    assert block in (BENCH / "RESULTS" / "scale.md").read_text()
    data = json.loads((BENCH / "results" / "scale_ipc50.json").read_text())["data"]
    assert data["images"] == 50_000 and all(s["rc"] == 0 for s in data["steps"])
    assert all(block.count(f"| {s['step']} |") == 2 for s in data["steps"])     # in both tables


# -- one page per benchmark family ---------------------------------------------------------------------
MARKER = r"<!-- (\w+):start -->"


def test_every_section_is_on_its_page_once_and_every_page_is_indexed(bench):
    """_common.PAGES puts each section a benchmark writes on one page; that page holds it exactly once and
    no other page holds it; every page is linked from the index, benchmarks/RESULTS.md."""
    import re
    common = bench("_common")
    pages = {path.name: path.read_text() for path in common.PAGES_DIR.glob("*.md")}
    assert set(common.PAGES.values()) <= set(pages)
    for key, name in common.PAGES.items():
        assert pages[name].count(f"<!-- {key}:start -->") == 1 and pages[name].count(f"<!-- {key}:end -->") == 1, key
        assert all(f"<!-- {key}:start -->" not in text for other, text in pages.items() if other != name), key
    hand_written = {"gpu_notes"}          # sections no script writes (gpu.md)
    on_pages = {key for text in pages.values() for key in re.findall(MARKER, text)}
    assert on_pages - set(common.PAGES) == hand_written
    index = common.RESULTS.read_text()
    assert all(f"](RESULTS/{name})" in index for name in pages), "a results page is missing from the index"
    assert "<!--" not in index                # the index holds no section: each is on its page


def test_update_results_writes_the_sections_page(bench, tmp_path, monkeypatch):
    common = bench("_common")
    monkeypatch.setattr(common, "PAGES_DIR", tmp_path)
    (tmp_path / "loader.md").write_text("# Loader\n\n<!-- torch_loader:start -->\nold\n<!-- torch_loader:end -->\n")
    common.update_results("torch_loader", "new")
    assert "new" in (tmp_path / "loader.md").read_text() and "old" not in (tmp_path / "loader.md").read_text()
    assert common.page("students_ipc_h200") == tmp_path / "students.md"          # a suffixed key: its base's page
    with pytest.raises(SystemExit, match="PAGES names no results page"):
        common.page("nothing_known")


# (script, arguments, the JSON it renders from): every script whose sections are saved as JSON
RENDERS = [
    ("container_io", [], "container_io"), ("row_checks", [], "row_checks"), ("size_mtt", [], "size_mtt"),
    ("storage", [], "storage-table1"), ("torch_loader", [], "torch_loader"), ("label_pass", [], "label_pass"),
    ("convert_speed", [], "convert_speed"), ("students_c1000", [], "students_c1000"),
    ("students_c1000", ["--temperature", "0.25"], "students_c1000_t025"), ("demo_students", [], "demo_students"),
    ("ladd_memory", [], "ladd_memory"), ("scale", [], "scale"), ("scale", ["--results-key", "scale_ipc50"], "scale_ipc50"),
    ("adversarial", [], "adversarial"), ("planted_bugs", [], "planted_bugs"), ("mutation", [], "mutation"),
    ("cli_startup", [], "cli_startup"), ("stream_codecs", [], "stream_codecs"), ("stream_tail_rank", [], "stream_tail_rank"),
]


@pytest.mark.parametrize("script,args,name", RENDERS, ids=[" ".join([s, *a]) for s, a, _ in RENDERS])
def test_render_only_re_renders_the_committed_page(bench, tmp_path, script, args, name):
    """``--render-only`` of each benchmark, run on a copy of its committed page, gives that page back
    unchanged: every measured section is what its saved JSON renders to."""
    if not (BENCH / "results" / f"{name}.json").exists():
        pytest.skip(f"benchmarks/results/{name}.json is not committed: the section is kept as rendered")
    common = bench("_common")
    key = args[-1] if "--results-key" in args else name.replace("-", "_").replace("storage_table1", "storage")
    committed = common.page(key)
    copy = tmp_path / committed.name
    copy.write_text(committed.read_text())
    assert bench(script).main(["--render-only", "--results", str(copy), *args]) == 0
    assert copy.read_text() == committed.read_text()
