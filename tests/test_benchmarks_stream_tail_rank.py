"""benchmarks/stream_tail_rank.py: the default stream codec (spec 1.3's low-rank tail) against spec 1.2's default
on two stand-in teachers, one with low-rank logits (digits-1000) and one without (prototypes-1000). Quick mode
runs and ``--render-only`` re-renders it; the bytes are the writer's storage; the page states the verdicts.
No timing."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture()
def rank(monkeypatch):
    """benchmarks/stream_tail_rank.py as a module (benchmarks import their helpers by bare name)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("stream_tail_rank")


def test_the_section_has_its_page(rank):
    common = importlib.import_module("_common")
    assert common.page(rank.KEY) == common.PAGES_DIR / "stream-tail-rank.md"


def test_codecs_are_the_two_defaults_and_their_neighbours(rank):
    from ladd_format.stream import DEFAULT_STREAM_CODEC

    assert rank.CODECS[0] == "topk:k=20,values=uint8" and DEFAULT_STREAM_CODEC in rank.CODECS
    assert set(rank.CODECS) >= {"topk:k=10,values=uint8", "topk:k=5,values=uint8,tail=32",
                                "topk:k=10,values=uint8,tail=24"}


def test_stored_bytes_are_the_writers_storage_of_the_label_datasets(rank, tmp_path):
    """The bytes the benchmark reports for a codec's arrays equal what DLAWriter stores for the same datasets."""
    import h5py
    from conftest import write_dla

    path = write_dla(tmp_path / "s.h5", stream_mix="none", stream_codec="topk:k=3,values=uint8,tail=4")
    names = ["topk_index", "topk_prob", "tail/coef", "tail/scale"]
    with h5py.File(path, "r") as f:
        arrays = {name: f["stream"][name][()] for name in names}
        written = sum(f["stream"][name].id.get_storage_size() for name in names)
    assert rank.stored_bytes(arrays) == written


def test_variance_explained_reaches_one_at_the_logits_rank(rank):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((200, 5)) @ rng.standard_normal((5, 60)) + 3.0
    share = rank.variance_explained(z, ranks=(2, 5, 8))
    assert share["2"] < share["5"] and share["5"] == pytest.approx(1.0, abs=1e-9) and share["8"] == pytest.approx(1.0)


def test_the_teacher_normalisation_is_patched_only_inside(rank):
    from storage_common import Digits1000

    x = torch.full((1, 3, 2, 2), 0.5)
    before = Digits1000.norm(x)
    with pytest.raises(RuntimeError):
        with rank.teacher_normalisation(rank.proto_norm):
            assert torch.equal(Digits1000.norm(x), torch.zeros_like(x))      # 6 * 0.5 - 3
            raise RuntimeError("a failure inside")
    assert torch.equal(Digits1000.norm(x), before)


def test_prototype_images_are_deterministic_and_stored_over_the_clip_range(rank):
    proto = rank.prototypes(torch.Generator().manual_seed(0))
    a = rank.prototype_images(proto, 20)
    assert a.shape == (20, 3, rank.SIDE, rank.SIDE) and a.dtype == np.uint8
    assert np.array_equal(a, rank.prototype_images(rank.prototypes(torch.Generator().manual_seed(0)), 20))
    inst = rank.prototype_instances(proto, torch.arange(rank.C), torch.Generator().manual_seed(5))[:20].clamp(-3, 3)
    back = rank.proto_norm(torch.from_numpy(a).float() / 255)
    assert (back - inst).abs().max() <= 6 / 255 / 2 + 1e-5                  # within half a uint8 step


def test_quick_run_saves_its_json_and_render_only_re_renders_the_page(rank, tmp_path, monkeypatch):
    monkeypatch.setattr(rank, "WORK", tmp_path / "work")              # the teachers' caches, not benchmarks/_work
    monkeypatch.setattr(importlib.import_module("stream_common"), "WORK", tmp_path / "work")
    page = tmp_path / "page.md"
    page.write_text("# page\n")
    assert rank.main(["--quick", "--data-dir", str(tmp_path), "--results", str(page)]) == 0
    text = page.read_text()
    assert text.count("<!-- stream_tail_rank:start -->") == 1 and rank.TITLE in text
    data = json.loads((tmp_path / "stream_tail_rank.json").read_text())["data"]
    assert list(data["teachers"]) == list(rank.TEACHERS)
    for name, t in data["teachers"].items():
        assert [r["codec"] for r in t["rows"]] == list(rank.CODECS)
        assert t["records"] == 200 and t["fit_records"] == 100
        shares = list(t["variance_explained"].values())
        assert all(0 < a <= b <= 1 + 1e-12 for a, b in zip(shares, shares[1:]))
        for r in t["rows"]:
            k = int(r["codec"].split("k=")[1].split(",")[0])
            tail = 0 if r["tail_rank"] is None else r["tail_rank"] + 2          # r int8 + a float16 scale
            assert r["bytes"]["1.0"]["raw"] == 3 * k + tail                    # uint16 index + uint8 value
            assert 0 < r["bytes"]["1.0"]["stored"]
            for key in ("1.0", "0.25", "retempered"):
                assert 0 <= r["fidelity"][key]["kl"] < np.inf and 0 <= r["fidelity"][key]["top1"] <= 1
    assert f"- {rank.TEACHERS[1]}, T = 1:" in text and "Neither stand-in is an ImageNet teacher" in text

    again = tmp_path / "again.md"
    again.write_text("# page\n")
    assert rank.main(["--render-only", "--data-dir", str(tmp_path), "--results", str(again)]) == 0
    assert again.read_text() == text


def fidelity(kl1: float, top1: float, kl025: float, top025: float, kl20: float, top20: float,
             zeroed20: float = 0.0) -> dict:
    return {"1.0": {"kl": kl1, "top1": top1, "zeroed_mass": 0.0},
            "0.25": {"kl": kl025, "top1": top025, "zeroed_mass": 0.0},
            "retempered": {"kl": kl20, "top1": top20, "zeroed_mass": zeroed20}}


def row(codec: str, rank_: int | None, fid: dict, stored: float) -> dict:
    b = {"stored": stored, "raw": stored * 2}
    return {"codec": codec, "tail_rank": rank_, "bytes": {"1.0": b, "0.25": b}, "fidelity": fid}


FIXTURE = {
    "name": "stream_tail_rank", "machine": "a test machine", "command": "python benchmarks/stream_tail_rank.py",
    "date": "2000-01-01 00:00 UTC",
    "data": {
        "settings": {"images": 1000, "epochs": 10, "batch": 100, "seed": 0, "digits_steps": 800,
                     "proto_steps": 800, "proto_width": 32, "fit_records": 4096},
        "default_stream_codec": "topk:k=5,values=uint8,tail=24", "default_1_2": "topk:k=20,values=uint8",
        "retemper": 20.0, "writer_fit_records": 4096, "writer": {"chunk_bytes": 262144, "gzip_level": 4},
        "teachers": {
            "digits-1000": {
                "teacher": {"steps": 800, "width": 16, "own_class": 0.034}, "records": 10000, "fit_records": 4096,
                "variance_explained": {"8": 0.8, "16": 0.936, "24": 0.96, "32": 0.983, "64": 0.995},
                "rows": [row("topk:k=20,values=uint8", None, fidelity(0.646, 0.92, 0.5, 0.99, 0.0086, 0.92), 32.6),
                         row("topk:k=5,values=uint8,tail=24", 24,
                             fidelity(0.0666, 0.945, 0.05, 0.99, 0.0003, 0.945), 33.2)],
                "fixed_bytes": {"24": {"raw": 100000}}, "timing": {"teacher and stream": 5.0, "codecs": 30.0}},
            "prototypes-1000": {
                "teacher": {"steps": 800, "width": 32, "own_class": 0.2, "accuracy": 0.99}, "records": 10000,
                "fit_records": 4096,
                "variance_explained": {"8": 0.5, "16": 0.7, "24": 0.8, "32": 0.85, "64": 0.93},
                "rows": [row("topk:k=20,values=uint8", None, fidelity(0.40, 0.992, 0.30, 0.999, 0.24, 0.992, 0.0123),
                             32.0),
                         row("topk:k=5,values=uint8,tail=24", 24,
                             fidelity(0.43, 0.992, 0.20, 0.998, 0.0037, 0.993), 33.0)],
                "fixed_bytes": {"24": {"raw": 100000}}, "timing": {"teacher and stream": 100.0, "codecs": 30.0}},
        },
    },
}


def test_render_states_per_teacher_and_temperature_whether_the_default_beats_spec_1_2s(rank):
    text = rank.render(copy.deepcopy(FIXTURE))
    verdicts = [line for line in text.splitlines() if line.startswith(("- digits-1000, T", "- prototypes-1000, T"))]
    assert verdicts == [
        "- digits-1000, T = 1: the default beats spec 1.2's default (mean KL 0.0666 vs 0.6460, 9.70x lower; "
        "top-1 agreement 94.5% vs 92.0%).",
        "- digits-1000, T = 0.25: the default beats spec 1.2's default (mean KL 0.0500 vs 0.5000, 10x lower; "
        "top-1 agreement 99.0% vs 99.0%).",
        "- digits-1000, T = 1 re-tempered to T = 20: the default beats spec 1.2's default (mean KL 3.0e-04 vs "
        "0.0086, 29x lower; top-1 agreement 94.5% vs 92.0%).",
        "- prototypes-1000, T = 1: the default does not beat spec 1.2's default (mean KL 0.4300 vs 0.4000, "
        "1.07x higher; top-1 agreement 99.2% vs 99.2%).",
        "- prototypes-1000, T = 0.25: the default does not clearly beat (mixed) spec 1.2's default (mean KL "
        "0.2000 vs 0.3000, 1.50x lower; top-1 agreement 99.8% vs 99.9%).",
        "- prototypes-1000, T = 1 re-tempered to T = 20: the default beats spec 1.2's default (mean KL 0.0037 vs "
        "0.2400, 65x lower; top-1 agreement 99.3% vs 99.2%).",
    ]
    assert "**`topk:k=5,values=uint8,tail=24` (the default)**" in text
    assert "`topk:k=20,values=uint8` (spec 1.2's default)" in text
    assert "| prototypes-1000 | 50.0% | 70.0% | 80.0% | 85.0% | 93.0% |" in text
    assert "Neither stand-in is an ImageNet teacher" in text
    assert "| 0.2400 | 99.2% | 0.012 |" in text                          # KL, top-1 and zeroed mass at T = 20
    assert "No codec beats spec 1.2's default at every temperature on both teachers." in text
    assert "(the writer's `TAIL_FIT_RECORDS`)" in text and "chunks of 256 KiB, shuffle + gzip level 4" in text
    assert "r = 24: 100 kB (at ImageNet-1K IPC 10 x 300 epochs, 3,000,000 records, at most 0.03 B a record)" in text


def test_render_names_the_codecs_that_beat_spec_1_2s_default_everywhere(rank):
    payload = copy.deepcopy(FIXTURE)
    for name, b in (("digits-1000", 41.5), ("prototypes-1000", 43.6)):
        t = payload["data"]["teachers"][name]
        old = t["rows"][0]["fidelity"]
        better = {k: {"kl": v["kl"] / 2, "top1": v["top1"], "zeroed_mass": 0.0} for k, v in old.items()}
        t["rows"].append(row("topk:k=10,values=uint8,tail=24", 24, better, b))
    payload["data"]["teachers"]["prototypes-1000"]["rows"][1]["fidelity"]["1.0"]["top1"] = 0.999  # mixed at T = 1
    text = rank.render(payload)
    assert ("Codecs that beat spec 1.2's default at every temperature on both teachers: "
            "`topk:k=10,values=uint8,tail=24` (41.5 B a record on digits-1000 and 43.6 B a record on "
            "prototypes-1000).") in text
    assert ("- prototypes-1000, T = 1: the default does not clearly beat (mixed) spec 1.2's default (mean KL "
            "0.4300 vs 0.4000, 1.07x higher; top-1 agreement 99.9% vs 99.2%).") in text


def test_render_says_nothing_of_a_verdict_when_the_defaults_coincide(rank):
    payload = copy.deepcopy(FIXTURE)
    payload["data"]["default_stream_codec"] = payload["data"]["default_1_2"]
    text = rank.render(payload)
    assert not [line for line in text.splitlines() if line.startswith(("- digits-1000, T", "- prototypes-1000, T"))]
    assert "The default is spec 1.2's default: there is nothing to compare." in text
