"""Figures of the README and docs/ checked against the results pages (benchmarks/RESULTS/*.md,
indexed by benchmarks/RESULTS.md) and the JSON their sections are rendered from: each measured figure
the documents quote must be the committed result, rounded as printed, or, where they give a range
(the stated spread over runs), the committed result must lie inside that range. A benchmark re-run
that moves a figure out of what the documents say fails here until they are updated with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the documents that quote figures: the README's headline figures and docs/ (evidence.md holds most)
README = "\n\n".join(path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
FRONT = (ROOT / "README.md").read_text()
PAGES = ROOT / "benchmarks" / "RESULTS"
RESULTS = "\n\n".join(path.read_text() for path in sorted(PAGES.glob("*.md")))
JSON = ROOT / "benchmarks" / "results"
NUMBER = r"[0-9][0-9,]*(?:\.[0-9]+)?"


def section(key: str) -> str:
    """The section ``key`` as its results page holds it (benchmarks/_common.py's PAGES says which)."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    assert RESULTS.count(start) == 1 and RESULTS.count(end) == 1, f"the results pages hold no single section {key}"
    return RESULTS[RESULTS.index(start):RESULTS.index(end)]


def value(text: str) -> float:
    return float(text.replace(",", ""))


def decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def row(text: str, starts: str) -> list[str]:
    """The cells of the first table row of ``text`` whose first cell starts with ``starts``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith(starts):
            return cells
    raise AssertionError(f"no table row starting {starts!r}")


def cell_number(cell: str) -> float:
    return value(re.search(NUMBER, cell).group(0))


def readme(pattern: str, count: int = 1) -> list[tuple[str, ...]]:
    """Every match of ``pattern`` in the README and docs/ (whitespace-insensitive); at least ``count``."""
    found = re.findall(pattern.replace(" ", r"\s+"), README)
    assert len(found) >= count, f"the README and docs/ no longer say {pattern!r}"
    found = [f if isinstance(f, tuple) else (f,) for f in found]
    assert len(set(found)) == 1, f"the README and docs/ quote {pattern!r} with different figures: {found}"
    return found


def assert_rounds_to(measured: float, printed: str, what: str):
    half = 0.5 * 10 ** -decimals(printed)
    assert abs(measured - value(printed)) <= half + 1e-12, f"{what}: README {printed}, RESULTS {measured}"


def assert_within(measured: float, low: str, high: str, what: str):
    lo = value(low) - 0.5 * 10 ** -decimals(low)
    hi = value(high) + 0.5 * 10 ** -decimals(high)
    assert lo <= measured <= hi, f"{what}: RESULTS {measured} outside the README's {low}-{high}"


def assert_range_covers(values: list[float], pattern: str, what: str):
    for low, high in readme(pattern):
        for v in values:
            assert_within(v, low, high, what)


# -- storage -------------------------------------------------------------------------------------
def test_the_papers_two_and_a_half_percent():
    data = json.loads((JSON / "size_mtt.json").read_text())["data"]["zip"]
    for overhead, plus_one in readme(rf"\*\*({NUMBER})%\*\* overhead by the zip measure \(one more image per class: "
                                     rf"\+({NUMBER})% at IPC 2\)"):
        assert_rounds_to(data["overhead_pct"], overhead, "MTT overhead")
        assert_rounds_to(data["ipc_plus_one_pct"], plus_one, "MTT IPC+1")
    assert f"{data['overhead_pct']:.2f}%" in section("size_mtt")


def test_codec_figures():
    s = section("storage")
    c10 = s.split("**C = 10**")[1].split("**C = 1000**")[0]
    uint8, float32 = row(c10, "uint8"), row(c10, "float32")
    for overhead, f32, agreement in readme(rf"`uint8` for C = 10 \(({NUMBER})% overhead instead of ({NUMBER})%,\s+"
                                           rf"({NUMBER})% top-1 agreement\)"):
        assert_rounds_to(cell_number(uint8[3]), overhead, "uint8 overhead C=10")
        assert_rounds_to(cell_number(float32[3]), f32, "float32 overhead C=10")
        assert_rounds_to(cell_number(uint8[7]), agreement, "uint8 top-1 C=10")
    c1000 = s.split("**C = 1000**")[1]
    assert_rounds_to(cell_number(row(c1000, "float32")[3]),
                     readme(rf"C = 1000 at 128 px: float32 costs ({NUMBER})%")[0][0], "float32 overhead C=1000")
    sharp = row(c1000.split("The same labeler pass at lower temperature")[1], "0.25")
    k50 = sharp[-3].split("/")[0]                                   # topk k=50 float16: overhead at 128 px
    assert_rounds_to(cell_number(k50), readme(rf"\(k = 50: ({NUMBER})%")[0][0], "top-k 50 overhead, sharp labels")


# -- container and readers -------------------------------------------------------------------------
def test_container_speed_ranges_cover_the_committed_run():
    s = section("container_io")
    lines = [line for line in s.splitlines() if line.startswith("| ")]
    ratio = {}
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[1].startswith(("write", "read")):
            ratio.setdefault(cells[1].split(",")[0].split(" (")[0], []).append(cell_number(cells[5]))
    reads, writes = ratio["read whole set"], ratio["write"]
    assert len(reads) == 2 and len(writes) == 4
    assert_range_covers(reads, rf"reading a whole set runs at ({NUMBER})-({NUMBER})x `numpy.load`", "read / numpy")
    assert_range_covers(writes, rf"writing with checksums at ({NUMBER})-({NUMBER})x `numpy.save`", "write / numpy")
    items = [cell_number(r[1]) for r in (row(s.split("Single-item")[1], n) for n in ("imagenette", "cifar"))]
    assert_range_covers(items, rf"one item \(image \+ label \+ dense labels\) reads in ({NUMBER})-({NUMBER}) us",
                        "item latency")
    plain = s.split("The floor HDF5")[1].split("Single-item")[0]
    plain_write = [cell_number(row(plain, n)[2]) for n in ("imagenette", "cifar")]
    plain_read = [cell_number(row(plain, n)[4]) for n in ("imagenette", "cifar")]
    ((wl, wh, rl, rh),) = readme(rf"HDF5 with none of them reaches ({NUMBER})-({NUMBER})x / ({NUMBER})-({NUMBER})x")
    for v in plain_write:
        assert_within(v, wl, wh, "plain HDF5 write")
    for v in plain_read:
        assert_within(v, rl, rh, "plain HDF5 read")


def test_reader_check_costs():
    s = section("row_checks")
    opened = cell_number(row(s, "`open_dla`")[1])
    checked = cell_number(row(s, "items/s, row digests checked")[1])
    unchecked = cell_number(row(s, "items/s, `check_rows=False`")[1])
    share = cell_number(row(s, "checked / unchecked")[1])
    assert_range_covers([opened], rf"opening takes ({NUMBER})-({NUMBER}) ms", "open")
    assert_range_covers([checked], rf"about ({NUMBER})-({NUMBER}) items/s with the row checks", "checked items/s")
    assert_range_covers([checked], rf"serves ({NUMBER})-({NUMBER}) items/s with the row checks", "checked items/s")
    assert_range_covers([unchecked], rf"and ({NUMBER})-({NUMBER}) without \(", "unchecked items/s")
    assert_range_covers([unchecked], rf"row checks, ({NUMBER})-({NUMBER}) with `check_rows=False`", "unchecked items/s")
    assert_range_covers([share], rf"\(({NUMBER})-({NUMBER})x; SHA-256", "checked / unchecked")


def test_hostile_file_counts():
    s = section("adversarial")
    cells = row(s, "5,600")
    damages, unchanged, refused, silent, traceback, _, hang = (cell_number(c) for c in cells[:7])
    d = readme(rf"({NUMBER}) seeded damages of 7 files")[0][0]
    u = readme(rf"({NUMBER}) changed nothing a reader")[0][0]
    r = readme(rf"returns, ({NUMBER}) were refused")[0][0]
    assert (value(d), value(u), value(r)) == (damages, unchanged, refused)
    assert silent == traceback == hang == 0 and "**0 silent\nchanges, 0 tracebacks, 0 hangs**" in README
    crafted = int(re.search(r"Crafted hostile files \((\d+)\): refused (\d+)", s).group(1))
    assert re.search(r"Crafted hostile files \((\d+)\): refused \1\b", s)
    assert readme(r"(\d+) crafted hostile files all refused")[0] == (str(crafted),)
    kills = re.search(r"Kills: (\d+) SIGKILLed.*?destinations left invalid: (\d+)", s)
    assert readme(r"(\d+) writers killed mid-write left (\d+) invalid")[0] == kills.groups()
    pickles = re.search(r"Pickles: (\d+) hostile inputs; code ran (\d+) times", s)
    assert readme(r"(\d+) hostile pickles executed (\d+) times")[0] == pickles.groups()
    rss = re.search(r"Peak RSS of any case: (\d+) MiB in a worker.*?CLI subprocess.*?: (\d+) MiB", s)
    assert readme(r"peak memory (\d+) MiB for any CLI command \((\d+) MiB")[0] == (rss.group(2), rss.group(1))
    seconds = json.loads((JSON / "adversarial.json").read_text())["data"]["seconds"]
    assert_rounds_to(seconds, readme(rf"`benchmarks/adversarial.py`, ({NUMBER}) s on 2 cores")[0][0], "adversarial time")


# -- trainer side, labeler pass, conversion, start-up ---------------------------------------------
def test_trainer_side_figures():
    s = section("torch_loader")
    assert_rounds_to(cell_number(row(s, "materialised uint8, 1 sub-image/chunk")[3]),
                     readme(rf"runs at ({NUMBER})x the speed of reading them pre-materialised")[0][0], "rebuild / read")
    assert_rounds_to(cell_number(row(s, "CPU")[5]), readme(rf"rebuild is ({NUMBER})% of a ConvNet-D5 training step")[0][0],
                     "rebuild share")
    g = section("torch_loader_gpu")
    cells = row(g, "on the fly, `subimages()` CUDA")
    ((rate, times),) = readme(rf"({NUMBER}) sub-images/s rebuilt \(({NUMBER})x its 16-core CPU\)")
    assert abs(cell_number(cells[2]) - value(rate)) <= 500 and round(cell_number(cells[3])) == value(times)
    assert_rounds_to(cell_number(row(g, "CUDA")[5]), readme(rf"({NUMBER})% of a ConvNet-D5 step of 64 images")[0][0],
                     "GPU rebuild share")


def test_labeler_pass_figures():
    cpu = [cell_number(row(section("label_pass"), n)[5]) for n in ("ConvNet-D5 w128, 128 px", "ConvNet-D3 w128, 32 px")]
    assert_range_covers(cpu, rf"on the CPU ({NUMBER})-({NUMBER})x the bare labeler forward", "CPU pass / bare")
    g = section("label_pass_gpu")
    gpu = [cell_number(line.strip().strip("|").split("|")[5]) for line in g.splitlines() if line.startswith("| ConvNet")]
    assert len(gpu) == 4
    assert_range_covers(gpu, rf"on the H100 ({NUMBER})-({NUMBER})x", "GPU pass / bare")
    assert min(gpu) == value(readme(rf"on the H100 ({NUMBER})-")[0][0])
    assert max(gpu) == value(readme(rf"on the H100 {NUMBER}-({NUMBER})x")[0][0])
    bf16 = cell_number(row(g, "ConvNet-D5 w128, 128 px, bfloat16")[3])
    assert abs(bf16 - value(readme(rf"({NUMBER}) sub-images/s for a ConvNet-D5 at 128 px in bfloat16")[0][0])) <= 50
    assert "1.72 GFLOP per sub-image" in g and "1.72 GFLOP per sub-image" in README
    assert "0.0021 PFLOP" in g and "0.0021 PFLOP" in README
    minutes = re.search(rf"would take ({NUMBER}) min at this cuda throughput", g).group(1)
    assert value(minutes) <= 2.5 and "ImageNet-1K at IPC 50 in about 2 minutes" in README


def test_conversion_figures():
    s = section("convert_speed")
    seconds = cell_number(row(s, "`convert mtt --dataset imagenette` (uint8)")[2])
    times = [cell_number(row(s, "`convert mtt --dataset imagenette` (uint8)")[3]),
             cell_number(row(s, "`convert mtt --dataset imagenette --keep-float`")[3])]
    assert_rounds_to(seconds, readme(rf"converts in ({NUMBER}) s on the AMD EPYC")[0][0], "conversion seconds")
    assert_range_covers(times[:1], rf"({NUMBER})-({NUMBER})x a bare `torch.load` \+ `numpy.save`", "conversion / baseline")
    hashing = cell_number(row(s, "SHA-256 of both input files")[2])
    assert_range_covers([hashing], rf"hashing the inputs for provenance is ({NUMBER})-({NUMBER})x", "hashing share")


def test_start_up_figures():
    s = section("cli_startup")
    plain, torch_first = [], []
    for name in ("`ladd --help`", "`ladd info FILE`", "`ladd verify FILE`", "`ladd size FILE`"):
        cells = row(s, name)
        plain.append(cell_number(cells[1]) / 1000)
        torch_first.append(cell_number(cells[2]) / 1000)
    assert_range_covers(plain, rf"start in ({NUMBER})-({NUMBER}) s against", "start-up")
    assert_range_covers(torch_first, rf"against ({NUMBER})-({NUMBER}) s with torch imported first", "torch first")


# -- students ------------------------------------------------------------------------------------------
def test_the_students_table_is_the_committed_one():
    s = section("students_ipc")
    for ipc in ("1", "5", "10"):
        committed = row(s, ipc)
        shown = row(FRONT.split("## Headline figures", 1)[1], ipc)
        assert [c.strip("*") for c in shown[1:4]] == committed[1:4], (ipc, shown, committed)
        assert shown[4:6] == committed[5:7], (ipc, shown, committed)


def test_the_demo_student_pool_figures():
    s = section("demo_students")
    quiet, shared = row(s, "quiet"), row(s, "one busy process beside")
    slower = cell_number(shared[1]) / cell_number(quiet[1])
    threads_vs_pool = cell_number(shared[3])
    ((a, b),) = readme(rf"makes the students ({NUMBER})x slower; torch's threads in one process, the old way, then "
                       rf"took ({NUMBER})x as long as the pool")
    assert_rounds_to(slower, a, "shared / quiet")
    assert_rounds_to(threads_vs_pool, b, "threads / pool, shared")


@pytest.mark.parametrize("key", ["container_io", "row_checks", "size_mtt", "convert_speed", "cli_startup",
                                 "adversarial", "demo_students"])
def test_the_committed_sections_render_from_their_json(key):
    """Results sections the README and docs/ are checked against are what their saved JSON renders to
    (the benchmark's --render-only), so a hand edit of a results page cannot hide a measured change."""
    import importlib
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        module = importlib.import_module(key)
        payload = json.loads((JSON / f"{key}.json").read_text())
        text = module.render(payload) if hasattr(module, "render") else None
        text = text[0] if isinstance(text, tuple) else text
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    if text is None:
        pytest.skip(f"benchmarks/{key}.py renders through another function")
    assert text.strip().splitlines()[-1].strip() in section(key)


def numbers_in(text: str) -> list[float]:
    return [value(n) for n in re.findall(NUMBER, text)]


# (README sentence with the figures as groups, the RESULTS sections that hold them): every figure must
# be a number of those sections, as printed there or rounded to the README's decimals
QUOTED = [
    (rf"gives\s+({NUMBER})% at IPC 1 against ({NUMBER})% for the mean \(({NUMBER}) vs ({NUMBER})% at IPC 5\)",
     ["students_loss"]),
    (rf"\(IPC 1: ({NUMBER}) vs ({NUMBER})%; IPC 5:\s+({NUMBER}) vs ({NUMBER})%\)", ["students_loss"]),
    (rf"from epoch 2 to 50 \(IPC 1:\s+({NUMBER}) to ({NUMBER})%\)", ["students_epochs"]),
    (rf"standard deviation at IPC 5 \(({NUMBER})-({NUMBER})%\)", ["students_codec"]),
    (rf"\(\+({NUMBER}) to \+({NUMBER}) over hard at IPC 1\)", ["students_arch"]),
    (rf"gives ({NUMBER})% against ({NUMBER})-({NUMBER})% for hard labels", ["students_archloss_gpu", "students_archfull_gpu"]),
    (rf"centre sub-image's top-1 agreement with the true class from ({NUMBER})% to\s+({NUMBER})%", ["students_loss"]),
    (rf"float32 labels cost ({NUMBER})% at N=5", ["storage"]),
    (rf"The dense labels are ({NUMBER})% of the raw bytes", ["size_mtt"]),
]


@pytest.mark.parametrize("pattern,keys", QUOTED, ids=[str(i) for i in range(len(QUOTED))])
def test_quoted_figures_are_in_their_sections(pattern, keys):
    pool = [n for key in keys for n in numbers_in(section(key))]
    for match in readme(pattern):
        for printed in match:
            half = 0.5 * 10 ** -decimals(printed)
            assert any(abs(n - value(printed)) <= half + 1e-9 for n in pool), \
                f"README figure {printed} ({pattern}) is not in RESULTS {keys}"


@pytest.mark.mutation_skip                   # it reads the mutation run's own results
def test_the_mutation_scores():
    """The lowest module score the README quotes is the committed run's; its range for the second held-out
    samples is theirs as first measured (mutation.SECOND_HELD_OUT_FIRST_RUN, rendered in RESULTS)."""
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import mutation

    modules = json.loads((JSON / "mutation.json").read_text())["data"]["modules"]
    scores = [mutation.score(m["counts"])[2] for m in modules.values() if mutation.score(m["counts"])[1]]
    assert sorted(k for k, m in modules.items() if "second held-out" in m) == sorted(mutation.SECOND_HELD_OUT_FIRST_RUN)
    fresh = [100.0 * d / n for d, n in mutation.SECOND_HELD_OUT_FIRST_RUN.values()]
    lowest = readme(rf"every module of the format core scores at least ({NUMBER})%")[0][0]
    assert_rounds_to(min(scores), lowest, "lowest module score")
    low, high = readme(rf"the four large modules score ({NUMBER})-({NUMBER})%")[0]
    assert_rounds_to(min(fresh), low, "lowest second held-out score")
    assert_rounds_to(max(fresh), high, "highest second held-out score")


def test_the_scale_figures():
    """The ImageNet-1K-shape bullet quotes benchmarks/results/scale.json."""
    data = json.loads((JSON / "scale.json").read_text())["data"]
    steps = {s["step"]: s for s in data["steps"]}
    assert all(s["rc"] == 0 for s in steps.values())
    evaluate = next(s for name, s in steps.items() if name.startswith("evaluate"))
    commands = [s["peak_rss_mb"] for name, s in steps.items()
                if not name.startswith("evaluate") and not name.startswith("DLADataset")]
    low, high = readme(rf"every command but `evaluate` peaks at ({NUMBER})-({NUMBER}) MB of memory")[0]
    assert_rounds_to(min(commands), low, "lowest peak")
    assert_rounds_to(max(commands), high, "highest peak")
    verify_s = readme(rf"`verify` checks the 1.4 GiB file in ({NUMBER}) s")[0][0]
    assert_rounds_to(steps["verify"]["seconds"], verify_s, "verify seconds")
    plain, stored = readme(rf"serves ({NUMBER}) items/s \(({NUMBER}) with `stored=True`")[0]
    for line, printed in ((data["loader"], plain), (data["loader_stored"], stored)):
        items, seconds = line.split()[1], float(line.split()[3])
        assert_rounds_to(int(items) / seconds, printed, "loader items/s")
    peak = readme(rf"`evaluate` peaks at ({NUMBER}) GB with a ResNet-18 student")[0][0]
    assert_rounds_to(evaluate["peak_rss_mb"] / 1000, peak, "evaluate peak")
    held = next(s for name, s in steps.items() if name.startswith("evaluate, all"))
    streamed = next(s for name, s in steps.items() if name.startswith("evaluate --stream, all"))
    held_gb, stream_gb, stream_s, held_s = readme(
        rf"it peaks at ({NUMBER}) GB holding the set \(`--in-memory`\) and ({NUMBER}) GB streamed \(the default "
        rf"at this size\), which took ({NUMBER}) s against ({NUMBER}) s")[0]
    assert_rounds_to(held["peak_rss_mb"] / 1000, held_gb, "evaluate held peak")
    assert_rounds_to(streamed["peak_rss_mb"] / 1000, stream_gb, "evaluate streamed peak")
    assert_rounds_to(streamed["seconds"], stream_s, "evaluate streamed seconds")
    assert_rounds_to(held["seconds"], held_s, "evaluate held seconds")
    stored_peak = steps["DLADataset(stored=True) epoch + decode_batch (2 workers)"]["peak_rss_mb"] / 1000
    low, high = readme(rf"it peaked at ({NUMBER}) to ({NUMBER}) GB across runs")[0]
    assert value(low) - 0.05 <= stored_peak <= value(high) + 0.05
    assert_rounds_to(steps["DLADataset epoch (DataLoader, 2 workers)"]["peak_rss_mb"] / 1000,
                     readme(rf"main process peaks at ({NUMBER}) GB by default")[0][0], "loader peak")
    rate = readme(rf"The CPU labels ({NUMBER}) ResNet-18 sub-images/s")[0][0]
    label = next(s for name, s in steps.items() if name.startswith("augment, "))
    assert_rounds_to(data["label_images"] * 25 / label["seconds"], rate, "label pass rate")
    shards = next(s for name, s in steps.items() if name.startswith("augment --shards"))
    ratio = readme(rf"`--shards 2` on the same 2 cores runs at ({NUMBER})x")[0][0]
    assert_rounds_to(label["seconds"] / shards["seconds"], ratio, "shard speed-up")


def test_the_scale_ipc50_figures():
    """The IPC 50 sentence quotes benchmarks/results/scale_ipc50.json."""
    data = json.loads((JSON / "scale_ipc50.json").read_text())["data"]
    assert data["images"] == 50_000
    commands = [s["peak_rss_mb"] for s in data["steps"]
                if not s["step"].startswith(("evaluate", "DLADataset"))]
    low, high = readme(rf"every\s+command but `evaluate` peaked at ({NUMBER})-({NUMBER}) MB")[0]
    assert_rounds_to(min(commands), low, "IPC 50 lowest peak")
    assert_rounds_to(max(commands), high, "IPC 50 highest peak")
    streamed = next(s for s in data["steps"] if s["step"].startswith("evaluate --stream"))
    assert_rounds_to(streamed["peak_rss_mb"] / 1000, readme(rf"the streamed `evaluate` at ({NUMBER}) GB")[0][0],
                     "IPC 50 evaluate peak")
    share = readme(rf"its training waiting for the reader\s+({NUMBER})% of the time")[0][0]
    assert_rounds_to(100 * streamed["data_wait_share"], share, "IPC 50 data wait")


def test_the_c1000_student_figures():
    """The C = 1000 students' bullet quotes benchmarks/results/students_c1000*.json."""
    def accs(name):
        rows = json.loads((JSON / f"{name}.json").read_text())["data"]["rows"]
        return {r["codec"]: 100 * sum(r["accuracies"]) / len(r["accuracies"]) for r in rows}, rows

    sharp, sharp_rows = accs("students_c1000_t025")
    broad, _ = accs("students_c1000")
    k10, k20, k50, f32 = readme(rf"and 50 score ({NUMBER}), ({NUMBER}) and ({NUMBER})% against ({NUMBER})% for float32")[0]
    for printed, codec in ((k10, "topk:k=10,values=float16"), (k20, "topk:k=20,values=float16"),
                           (k50, "topk:k=50,values=float16"), (f32, "float32")):
        assert_rounds_to(sharp[codec], printed, f"T = 0.25 {codec}")
    low, high = readme(rf"at ({NUMBER})-({NUMBER})% of a 224 px image")[0]
    pcts = [r["pct_224"] for r in sharp_rows if r["codec"] and r["codec"].startswith("topk")]
    assert_rounds_to(min(pcts), low, "lowest top-k overhead")
    assert_rounds_to(max(pcts), high, "highest top-k overhead")
    l10, l20, l50, b32 = readme(rf"they lose ({NUMBER}), ({NUMBER}) and ({NUMBER}) points against float32's ({NUMBER})%")[0]
    for printed, codec in ((l10, "topk:k=10,values=float16"), (l20, "topk:k=20,values=float16"),
                           (l50, "topk:k=50,values=float16")):
        assert_rounds_to(broad["float32"] - broad[codec], printed, f"T = 1 loss of {codec}")
    assert_rounds_to(broad["float32"], b32, "T = 1 float32")
    assert_rounds_to(broad["float16"], readme(rf"`float16` does not \(({NUMBER})%\)")[0][0], "T = 1 float16")
    assert_rounds_to(broad[None], readme(rf"Hard labels alone score ({NUMBER})%")[0][0], "hard labels")


def test_the_planted_bugs():
    """The planted-bug count and the claim that every one fails at least two tests in two files are
    benchmarks/results/planted_bugs.json's."""
    rows = json.loads((JSON / "planted_bugs.json").read_text())["data"]["rows"]
    words = {10: "ten", 11: "eleven", 12: "twelve", 13: "thirteen"}
    assert f"plants {words[len(rows)]} known plausible bugs" in " ".join(README.split())
    for r in rows:
        files = {test.split("::")[0] for test in r["failed"]}
        assert len(r["failed"]) >= 2 and len(files) >= 2, r["name"]
    assert "every one fails at least two tests in two files" in " ".join(README.split())


def _stream_delta(section_key: str, heading: str, condition: str) -> tuple[str, str]:
    """The Δ vs (a) cell, as 'mean', 'std', of ``condition``'s row under ``heading`` in a stream_students section."""
    text = section(section_key)
    part = text[text.index(heading):]
    part = part[:part.index("\n### ")] if "\n### " in part else part
    cells = row(part, condition)
    mean, std = re.findall(r"[-+]?[0-9]+\.[0-9]+", cells[2])[:2]
    return mean, std


def test_the_relabel_stream_headline():
    """The README's relabel-stream bullet: the default codec's bytes at ImageNet-1K IPC 10 shape
    (stream-storage.md) and the students' paired differences (stream-students.md)."""
    storage = section("stream_storage")
    default = json.loads((JSON / "stream_storage.json").read_text())["data"]["default_stream_codec"]
    line = next(l for l in storage.splitlines() if l.startswith(f"| **`{default}` (the default)**") and "yes" in l)
    total, ratio = re.search(r"\| ([0-9.,]+) MB \| 1/([0-9.]+) \| yes", line).groups()
    mb, share = readme(rf"\(top-5 probabilities and a rank-24 low-rank tail\) takes \*\*({NUMBER}) MB\*\*, 1/({NUMBER})")[0]
    assert_rounds_to(value(total), mb, "default stream codec MB")
    assert_rounds_to(value(ratio), share, "default stream codec ratio")
    digits = _stream_delta("stream_students", "### digits (C = 10)", "(b)")
    hot = _stream_delta("stream_students", "### digits-1000", "(b)")
    cold = _stream_delta("stream_students_t1", "### digits-1000", "(b)")
    old = _stream_delta("stream_students", "### digits-1000", "(b1)")
    printed = readme(rf"on digits \(−({NUMBER}) ± ({NUMBER}) points\) and on a 1000-class stand-in at T = 1 "
                     rf"\(−({NUMBER}) ± ({NUMBER})\) and at SRe2L's T = 20 \(−({NUMBER}) ± ({NUMBER})\), where spec "
                     rf"1.2's top-20 default lost ({NUMBER}) points")[0]
    for (mean, std), (p_mean, p_std), what in ((digits, printed[0:2], "digits"), (cold, printed[2:4], "T = 1"),
                                               (hot, printed[4:6], "T = 20")):
        assert_rounds_to(-value(mean), p_mean, f"(b) - (a) {what}")
        assert_rounds_to(value(std), p_std, f"(b) - (a) spread {what}")
    assert_rounds_to(-value(old[0]), printed[6], "(b1) - (a) at T = 20")
