"""benchmarks/relabel_speed.py (`ladd relabel` against the bare teacher forward): the bare forward runs
on the very crops the pass labels, ``--quick`` runs end to end, ``--render-only`` re-renders the page
from the saved JSON, and the GPU session script has the step (no timing is asserted)."""

from __future__ import annotations

import importlib
import json
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture()
def bench(monkeypatch):
    """Import benchmark modules from benchmarks/ (they import each other by bare name)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module


def test_pages_map_the_relabel_sections(bench):
    common = bench("_common")
    assert common.page("relabel_speed").name == "relabel-speed.md"
    assert common.page("relabel_speed_gpu").name == "relabel-speed.md"


@pytest.mark.parametrize("arch, side", [("convnet-d3", 32), ("resnet18", 32)])
def test_bare_forward_runs_on_the_pass_crops(bench, tmp_path, arch, side):
    """The bare forward's logits are the pass's own (relabel_pass.label_batch) for every batch of the
    first epoch: the benchmark compares the same work, crops, slices and precision."""
    rs = bench("relabel_speed")
    rp = rs.rp
    source, output = tmp_path / "d.dla.h5", tmp_path / "out.dla.h5"
    classes = rs.TEACHERS[arch][1]
    rs.write_plain(source, 6, side, classes)
    teacher, tv_arch = rs.save_teacher(tmp_path, arch, side, classes)
    config = rs.RelabelConfig(arch=tv_arch, epochs=1, batch_size=4, device="cpu", precision="float32")
    plan = rp.prepare(source, teacher, output, config, create=False)
    with rp.open_dla(source) as f:
        mean = torch.tensor(f.mean).view(1, 3, 1, 1)
        std = torch.tensor(f.std).view(1, 3, 1, 1)
        images = rp._Images(f, plan.device)
        batches = rs.epoch_crops(plan, images, mean, std)
        bare = rs.bare_forward(plan, batches)
        draws = list(plan.draws.epoch(0))
        assert [len(b) for b in bare] == [len(d) for d in draws] == [4, 2]
        for draw, logits in zip(draws, bare):
            expected = rp.label_batch(plan, draw, images.gather(draw.image), mean, std)
            assert logits.shape == (len(draw), classes)
            torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert not output.exists() and not rp.work_folder(output).exists()     # create=False: nothing written


def test_quick_runs_and_render_only_rerenders(bench, tmp_path, monkeypatch):
    rs = bench("relabel_speed")
    monkeypatch.setattr(rs, "WORK", tmp_path / "work")          # not benchmarks/_work, where a real run may be
    results = tmp_path / "page.md"
    assert rs.main(["--quick", "--data-dir", str(tmp_path), "--results", str(results), "--note", "a test note"]) == 0
    payload = json.loads((tmp_path / "relabel_speed.json").read_text())
    d = payload["data"]
    assert payload["note"] == "a test note"
    assert [(r["arch"], r["side"]) for r in d["rows"]] == [(a, s) for a, s, *_ in rs.QUICK_CONFIGS]
    for r in d["rows"]:
        assert r["records"] == r["m"] * r["epochs"]
        assert r["pass"] > 0 and r["bare"] > 0 and r["labeling"] > 0 and r["flops"] > 0
        assert set(r["steps"]) == {k for k, _ in rs.STEPS} | {rs.TABLES} and all(v >= 0 for v in r["steps"].values())
        assert set(r["phases"]) == {"setup", "labeling", "writing", "total"}
        assert len(r["load"]) == 2 and len(r["breakdowns"]) == len(r["bare_s"]) == len(r["passes"]) == r["repeats"]
    from ladd_format.stream import default_stream_codec

    assert r["codec"] == default_stream_codec(1000).label  # ResNet-18's 1000 classes: the default, with a tail
    assert r["steps"]["fit"] > 0                          # its tail basis fitted, as its own step
    first = results.read_text()
    assert "<!-- relabel_speed:start -->" in first and "a test note" in first
    assert not rs.WORK.exists()                          # the work folder is cleaned up
    assert not (tmp_path / "relabel_speed.partial.json").exists()      # a finished run leaves no partial file

    results.write_text("# page\n\n<!-- relabel_speed:start -->\nstale\n<!-- relabel_speed:end -->\n")
    assert rs.main(["--render-only", "--data-dir", str(tmp_path), "--results", str(results)]) == 0
    assert results.read_text() == first.replace("# Benchmark results", "# page")


def fixture_payload() -> dict:
    row = {"name": "ConvNet-D3 w128, 32 px", "arch": "convnet-d3", "side": 32, "classes": 100, "m": 1000,
           "epochs": 2, "batch": 250, "records": 2000, "precision": "float32", "device": "cpu",
           "codec": "topk:k=20,values=uint8", "forward_slice": 512, "repeats": 3,
           "passes": [], "phases": {"setup": 0.5, "labeling": 4.0, "writing": 0.5, "total": 5.0},
           "bare_s": [4.0, 4.0, 4.0], "pass": 400.0, "labeling": 500.0, "bare": 500.0,
           "steps": {"draws": 0.2, "gather": 0.1, "crop": 0.5, "teacher": 3.0, "encode": 0.1, "save": 0.1,
                     "crop_tables": 0.1},
           "flops": 1.0e8, "load": [1.5, 4.25]}
    return {"name": "relabel_speed", "machine": "Fixture CPU, 2 logical cores", "command":
            "python benchmarks/relabel_speed.py", "date": "2026-01-02 03:04 UTC", "note": "Shared cores.",
            "data": {"device": "cpu", "gpu": None, "gpu_name": None, "threads": 2, "rows": [row]}}


def test_render_only_from_fixture(bench, tmp_path):
    rs = bench("relabel_speed")
    (tmp_path / "relabel_speed.json").write_text(json.dumps(fixture_payload()))
    results = tmp_path / "page.md"
    assert rs.main(["--render-only", "--data-dir", str(tmp_path), "--results", str(results)]) == 0
    text = results.read_text()
    assert "## `ladd relabel` throughput on the CPU (against the bare teacher forward)" in text
    assert "Fixture CPU" in text and "2026-01-02 03:04 UTC" in text and "- Shared cores." in text
    assert "no GPU figure is reported" in text
    assert "before and after each configuration: 1.5-4.2 on 2 threads" in text
    assert ("| ConvNet-D3 w128, 32 px | float32 | 1,000 | 2 | 250 | 2,000 | `topk:k=20,values=uint8` | 400 | 500 | "
            "0.80x FAIL | 500 | 1.00x | 0.50 | 0.50 | 0.100 |") in text
    # 4 s of steps over 2,000 records: 2 ms per record; the crop kernel 0.5 s = 250 ms per 1,000 (12%), of
    # which its host tables 0.1 s (20%), not counted again in the sum; figures saved before the tail fit
    # was a step show "-" in its column
    assert ("| ConvNet-D3 w128, 32 px | 100.0 (5%) | 50.0 (2%) | 250.0 (12%) | 1,500.0 (75%) | - | 50.0 (2%) | "
            "50.0 (2%) | 2,000.0 | 4,000 | 0.17 | 50.0 (20%) |") in text
    # pass 2,500 ms - bare 2,000 ms = +500 = setup 250 + writing 250 + (0 = 250 + 200 + (1,500 - 2,000) + rest)
    assert ("pass 2,500.0 ms - bare 2,000.0 ms = +500.0 ms = setup 250.0 + writing 250.0 + (+0.0 = crop kernel "
            "250.0 + draws, gather, epoch files 200.0 + teacher step - bare -500.0 + rest +50.0)") in text


def test_gpu_session_has_the_relabel_step():
    script = (BENCH / "gpu_session.sh").read_text()
    assert "relabel_speed.py --results-key relabel_speed_gpu" in script
    assert subprocess.run(["bash", "-n", str(BENCH / "gpu_session.sh")]).returncode == 0
    usage = subprocess.run(["bash", str(BENCH / "gpu_session.sh"), "nothing"], capture_output=True, text=True)
    assert usage.returncode == 2 and "relabel" in usage.stderr
