"""The relabel-stream benchmarks (benchmarks/stream_storage.py, stream_students.py, stream_replay.py): their
pages, ``--render-only`` from the committed JSON, the rendering's arithmetic on small fixtures, the faithful
SRe2L loader against the stream's own replay, and a tiny rehearsal of the storage benchmark (no timing)."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
NAMES = ("stream_storage", "stream_students", "stream_replay")


@pytest.fixture()
def bench(monkeypatch):
    """Import benchmark modules from benchmarks/ (they import each other by bare name)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module


def test_each_stream_benchmark_has_its_page(bench):
    common = bench("_common")
    pages = {name: common.page(name).name for name in NAMES}
    assert pages == {"stream_storage": "stream-storage.md", "stream_students": "stream-students.md",
                     "stream_replay": "stream-replay.md"}


@pytest.mark.parametrize("name, key, args", [(n, n, []) for n in NAMES]
                         + [("stream_students", "stream_students_t1", ["--temperature", "1"])])
def test_render_only_reproduces_the_committed_section(bench, tmp_path, name, key, args):
    """The committed page's section is what the committed JSON renders to (no figure typed by hand)."""
    module = bench(name)
    assert (BENCH / "results" / f"{key}.json").exists(), f"benchmarks/results/{key}.json is not committed"
    results = tmp_path / "page.md"
    assert module.main(["--render-only", "--results", str(results), *args]) == 0
    rendered = results.read_text()
    block = rendered[rendered.index(f"<!-- {key}:start -->"):rendered.index(f"<!-- {key}:end -->")]
    assert block in (BENCH / "RESULTS" / f"{name.replace('_', '-')}.md").read_text()


# -- rendering arithmetic on fixtures -----------------------------------------------------------------

def storage_fixture() -> dict:
    sre2l = {"imagenet_total": 6_000_000_000, "imagenet_per_slot": 2000.0}
    side = {"imagenet": {"records": 100, "images": 10_000, "side": 224, "crop": 8.0, "mix": 2.0, "raw": 15.0},
            "stand-in": {"records": 100, "images": 10_000, "side": 24, "crop": 6.0, "mix": 2.0, "raw": 15.0}}

    def f(zip_per, epochs):
        records = 10_000 * epochs
        return {"file": records * zip_per + 17_000_000, "zip": records * zip_per, "zstd3": records * zip_per,
                "zstd19": records * zip_per, "raw": records * 60, "stored": records * zip_per, "records": records,
                "epochs": epochs, "batches": 10 * epochs, "sre2l_estimate": records * 2000,
                "group_epochs": 1, "zip_per_record_groups": [zip_per - 1, zip_per + 1],
                "label_zip": records * (zip_per - 8),
                "dtypes": {"image": "int32", "box": "uint16", "topk_prob": "uint8"}}
    fid = {"kl": 0.5, "top1": 0.95, "kl20": 0.01, "top1_20": 0.95, "rows": 1000}
    return {"name": "stream_storage", "machine": "Fixture CPU", "command": "python benchmarks/stream_storage.py",
            "date": "2026-01-02 03:04 UTC",
            "data": {"settings": {"epochs": 300, "batch": 1024, "per_class": 10, "teacher_steps": 800, "seed": 0,
                                  "temperature": 1.0, "fidelity_every": 10},
                     "made": {"m": 10_000, "side": 24, "crop_top1_own_class": 0.03,
                              "fidelity": {"topk:k=20,values=uint8": fid, "topk:k=10,values=uint8": fid}},
                     "files": {"topk:k=20,values=uint8": f(40.0, 300), "topk:k=10,values=uint8": f(24.0, 300),
                               "logits:float16": f(1700.0, 20)},
                     "side": side, "sre2l": sre2l,
                     "imagenet": {"images": 10_000, "size": 224, "epochs": 300, "batch": 1024},
                     "timing": {"write the files": 100.0, "write: crops": 5.0}}}


def test_storage_rendering_scales_and_judges_the_target(bench):
    storage = bench("stream_storage")
    text = storage.render(storage_fixture())
    # 40 B per record x 3,000,000 = 120 MB, 1/50 of 6 GB: under 1/40, not 1/80
    assert "| `topk:k=20,values=uint8` | 120.0 MB | 1/50.0 |" in text
    # label 40 - 8 (the file's labels alone) + 10 (224 px side) = 42 B per record: 126 MB
    assert "| 126.0 MB | 1/47.6 | yes |" in text
    # 24 - 8 + 10 = 26 B: 78 MB, 1/76.9: under 1/40, not the moonshot; the float16 logits scaled from 20 epochs
    assert "| 78.0 MB | 1/76.9 | yes |" in text
    assert "| `logits:float16` | 5,100.0 MB (scaled from 20) | 1/1.2 |" in text
    assert "| 0.5000 | 95.00% | 0.0100 | 95.00% |" in text
    assert "(39.0-41.0 over groups of 1 epochs)" in text


def students_fixture() -> dict:
    acc = {"a": [0.80, 0.82, 0.84], "b": [0.81, 0.82, 0.86], "c": [0.80, 0.83, 0.84], "d": [0.60, 0.62, 0.61],
           "e": [0.70, 0.71, 0.75]}
    r = {"dataset": {"name": "digits", "classes": 10, "side": 24, "epochs": 200, "batch": 50, "width": 16},
         "m": 100, "test": 360, "temps": {"1.0": [0.8, 0.83, 0.84], "4.0": [0.7, 0.7, 0.7]}, "best_t": 1.0,
         "stream_codec": "uint8", "stream_bytes": [300_000, 300_000, 300_000], "sre2l_bytes": [900_000] * 3,
         "dense": {"codec": "float32", "dense_bytes": 100_000}, "accuracies": acc,
         "seconds": {k: 5.0 for k in acc}}
    return {"name": "stream_students", "machine": "Fixture CPU", "command": "python benchmarks/stream_students.py",
            "date": "2026-01-02 03:04 UTC",
            "data": {"settings": {"seeds": 3, "lr": 0.003, "wd": 0.01, "temps": [1.0, 4.0]}, "workers": 2,
                     "results": [r], "timing": {"students": 10.0}}}


def test_students_rendering_pairs_the_seeds(bench):
    students = bench("stream_students")
    text = students.render(students_fixture())
    # (b) - (a) per seed: +1, 0, +2 points -> mean +1.00, std 0.82; 95% interval +1 -/+ 4.303 * 1 / sqrt(3)
    assert "| (b) ladd stream, default codec, replay loader | 83.00 ± 2.16 | +1.00 ± 0.82 |" in text
    assert "| (d) hard labels, same crops | 61.00 ± 0.82 | -21.00 ± 1.41 |" in text
    assert "- (b) − (a): +1.00 points, 95% interval of the paired mean -1.48 to +3.48 (3 seeds" in text
    assert "within paired-seed noise." in text
    # (e) - (b): -11 points on every seed: beyond the noise
    assert "- (e) − (b): -11.00 points" in text and "beyond paired-seed noise." in text
    assert "T = 1: 82.33 ± 1.70, T = 4: 70.00 ± 0.00; T = 1 is used below" in text
    assert "(b) the stream (`uint8`) 3,000 B" in text and "(e) dense labels `float32` 1,000 B" in text


def replay_fixture() -> dict:
    exact = [{"side": 24, "crop": 24, "resize": "bilinear-antialias", "batches": 4, "records": 512, "values": 884_736,
              "differ": 0}]
    conv = {"images": 32, "side": 96, "crop": 64, "epochs": 2, "batch": 8,
            "kernels": {"pil-bilinear": {"max_abs": 0.0, "mean_abs": 0.0, "values": 100, "equal": 100, "max_abs_255": 0.0,
                                         "records": 64},
                        "bilinear-antialias": {"max_abs": 2 / 255, "mean_abs": 0.001, "values": 100, "equal": 10,
                                               "max_abs_255": 2.0, "records": 64}}}
    speed = {"records": 10_000, "side": 224, "batch": 1024, "threads": 1, "files": 10, "sre2l_bytes": 20_000_000,
             "stream_bytes": 1_600_000_000, "open_seconds": 0.05, "codec": "topk:k=5,values=uint8,tail=24",
             "gather_bytes": 4 << 20,
             "sre2l_read": [0.02, 0.02, 0.03], "sre2l_labels": [0.1, 0.1, 0.1], "stream_records": [0.01, 0.01, 0.01],
             "stream_read": [0.2, 0.2, 0.2], "stream_crops": [10.0, 11.0, 12.0],
             "stream_crops_whole_gather": [12.0, 12.5, 13.0], "sre2l_crops": [20.0, 20.0, 20.0]}
    runs = [{"file": "224 px", "batch": 1024, "reuse": reuse, "epochs": e, "records": e * 10_000, "maxrss_kib": kib,
             "seconds": 1.0} for e, reuse, kib in ((0, True, 560_000), (1, True, 1_200_000), (1, False, 1_800_000))]
    runs += [{"file": "224 px", "batch": 256, "reuse": True, "epochs": e, "records": e * 10_000, "maxrss_kib": kib,
              "seconds": 1.0} for e, kib in ((1, 740_000), (3, 742_000))]
    runs += [{"file": "24 px", "batch": 1024, "reuse": True, "epochs": e, "records": e * 10_000, "maxrss_kib": kib,
              "seconds": 1.0} for e, kib in ((0, 400_000), (1, 500_000), (10, 510_000), (100, 512_000))]
    floors = {"torch": 520_000, "imports": 537_000, "batch_1024": 1_122_000, "batch_256": 670_000}
    return {"name": "stream_replay", "machine": "Fixture CPU", "command": "python benchmarks/stream_replay.py",
            "date": "2026-01-02 03:04 UTC",
            "data": {"settings": {"exact_images": 512, "exact_epochs": 2, "exact_batch": 128}, "exact": exact,
                     "converted": conv, "speed": speed,
                     "memory": {"images": 10_000, "stream_epochs": 100, "batch": 1024, "file_bytes": 80_000_000,
                                "runs": runs, "floors": floors, "side": 224,
                                "batch_input_bytes": {"1024": 1024 * 3 * 224 * 224 * 4, "256": 256 * 3 * 224 * 224 * 4}},
                     "timing": {"loader speed": 60.0}}}


def test_replay_rendering_states_each_target(bench):
    replay = bench("stream_replay")
    text = replay.render(replay_fixture())
    assert "| 24 px | 24 px | `bilinear-antialias` | 4 | 512 | 884,736 | 0 |" in text
    assert "| `pil-bilinear` | 64 | 0 | 0.00 | 0 | 100.00% | 0 (the same Pillow calls) |" in text
    assert "the records alone at 2.00x the speed of `torch.load` of SRe2L's files (met)" in text
    assert "records and labels as probabilities at 0.50x (NOT met)" in text
    assert "with crops, 1.82x SRe2L's loader (1.60x with each batch's images gathered in one read)" in text
    assert ("- 224 px, B = 1,024, the default: peak 1,172 MiB (target < 1 GB: NOT met); its floor 1,096 MiB (over 1 GB "
            "before the loader holds anything); the loader's share +76 MiB.") in text
    assert ("- 224 px, B = 256, the default: peak 725 MiB (target < 1 GB: met); its floor 654 MiB (under 1 GB before "
            "the loader holds anything); the loader's share +70 MiB; 1 and 3 epochs: 723 and 725 MiB.") in text
    assert "- 24 px: from 1 to 100 epochs the peak moves by +12 MiB (largest 500 MiB)." in text
    assert "| `import torch` | 508 MiB |" in text
    worse = copy.deepcopy(replay_fixture())
    worse["data"]["memory"]["runs"][3]["maxrss_kib"] = 1_000_000
    assert "B = 256, the default: peak 977 MiB (target < 1 GB: NOT met)" in replay.render(worse)


def test_sre2l_sampler_replay_draws_two_permutations_per_epoch(bench):
    """The faithful loader's image order is SRe2L's (the package's replay, checked against torch there)."""
    common = bench("stream_common")
    from ladd_format.relabel.replay import sre2l_indices

    orders = np.stack(list(common.sampler_orders(37, 3, 42)))
    assert np.array_equal(orders, sre2l_indices(37, 8, 3, 42))


def test_sre2l_layout_and_the_stream_give_the_student_the_same_inputs(bench, tmp_path, monkeypatch):
    """(a) SRe2L's files through the faithful loader and (b) the ladd stream through the replay loader hold
    the same records: the same images per slot, the same crops (within float rounding of the normalisation),
    and labels from the same logits."""
    students = bench("stream_students")
    common = bench("stream_common")
    from ladd_format.torch.models import build_model

    torch.manual_seed(0)
    teacher = common.save_teacher(build_model("convnet-d3", num_classes=10, image_size=16, width=4).eval(),
                                  tmp_path / "t.safetensors", num_classes=10, image_size=16, width=4,
                                  mean=common.DIGITS_MEAN, std=common.DIGITS_STD, training_data="random", epochs=0)
    rng = np.random.default_rng(0)
    data = {"x": rng.integers(0, 256, (12, 3, 16, 16), dtype=np.uint8), "y": np.arange(12) % 10,
            "teacher": str(teacher), "mean": common.DIGITS_MEAN, "std": common.DIGITS_STD}
    ds = {"name": "digits", "classes": 10, "side": 16, "epochs": 2, "batch": 5}
    made = students.generate(ds, data, seed=1, t=2.0, folder=tmp_path)
    assert made["codec"] == "uint8" and made["stream_bytes"] > 0
    sre2l = common.SRe2LLoader(Path(made["sre2l"]), common.pil_images(data["x"]), 16, 5, data["mean"], data["std"],
                               seed=43)
    from ladd_format.reader import open_dla
    from ladd_format.torch.replay import ReplayLoader

    with ReplayLoader(made["stream"], device="cpu") as loader, open_dla(made["stream"]) as f:
        for e in range(2):
            theirs = list(sre2l.epoch(e))
            ours = list(loader.epoch(e))
            records = [f.stream.read_batch(b) for b in f.stream.epoch_batches(e)]
            assert len(theirs) == len(ours) == len(records) == 3
            for a, (inputs, probs), rec in zip(theirs, ours, records):
                assert np.array_equal(a["index"].numpy(), rec.image)
                assert torch.allclose(a["x"], inputs, atol=1e-5, rtol=0)
                want = torch.softmax(a["logits"] / 2.0, -1)
                assert (probs - want).abs().max() < 0.01         # uint8 probabilities at T = 2


def test_storage_rehearsal_writes_and_measures_real_files(bench, tmp_path, monkeypatch):
    """A tiny stream_storage run: three real files by the package's writer, measured by `ladd size`."""
    storage = bench("stream_storage")
    common = bench("stream_common")
    monkeypatch.setattr(common, "WORK", tmp_path)
    monkeypatch.setattr(storage, "WORK", tmp_path)
    d = storage.measure(True, {"images": 60, "epochs": 2, "logits_epochs": 1, "batch": 32, "teacher_steps": 2,
                               "fidelity_every": 1, "side_images": 60})
    files = d["files"]
    from ladd_format.stream import default_stream_codec

    default = default_stream_codec(1000).label
    assert set(files) == {default, "topk:k=20,values=uint8", "topk:k=10,values=uint8", "logits:float16"}
    assert files["topk:k=20,values=uint8"]["records"] == 120 and files["logits:float16"]["records"] == 60
    # the default's tail (spec 1.3) is in its bytes: coef and scale per record, mean and basis once
    assert files[default]["label_zip"] > files[default]["tail_zip"] > files[default]["tail_fixed_zip"] > 0
    # k = 10 stores fewer bytes than k = 20, which stores far fewer than the float16 logits
    per = {c: f["zip"] / f["records"] for c, f in files.items()}
    assert per["topk:k=10,values=uint8"] < per["topk:k=20,values=uint8"] < per["logits:float16"] / 10
    fid = d["made"]["fidelity"]["topk:k=20,values=uint8"]
    assert fid["rows"] == 120 and 0 < fid["kl"] and 0 <= fid["top1"] <= 1
    payload = {"name": "stream_storage", "machine": "m", "command": "c", "date": "d",
               "data": json.loads(json.dumps(d, default=lambda x: x.tolist()))}
    assert "| `logits:float16` | 1 | 60 |" in storage.render(payload)


def test_replay_rehearsal_finds_the_crops_exact(bench, tmp_path, monkeypatch):
    """A tiny stream_replay run of its exactness checks: ``ladd relabel``'s teacher saw exactly the crops the
    replay loader rebuilds (both kernels, growing and shrinking crops), and a converted SRe2L folder's
    ``pil-bilinear`` crops are SRe2L's own crops of the same JPEGs."""
    replay = bench("stream_replay")
    common = bench("stream_common")
    monkeypatch.setattr(common, "WORK", tmp_path)
    st = {**replay.settings(True), "exact_images": 24, "exact_epochs": 1, "exact_batch": 8}
    teacher, _ = common.digits1000_teacher(2)
    rows = replay.exact_relabel(st, tmp_path, teacher)
    assert [(r["side"], r["resize"]) for r in rows] == [(24, "bilinear-antialias"), (24, "pil-bilinear"),
                                                          (st["big_side"], "bilinear-antialias"),
                                                          (st["big_side"], "pil-bilinear")]
    assert all(r["records"] == 24 and r["values"] == 24 * 3 * 24 * 24 and r["differ"] == 0 for r in rows)
    converted = replay.exact_convert(st, tmp_path)
    pil = converted["kernels"]["pil-bilinear"]
    assert pil["records"] == 24 and pil["max_abs"] == 0.0
    assert 0 < converted["kernels"]["bilinear-antialias"]["max_abs"] <= 2 / 255
