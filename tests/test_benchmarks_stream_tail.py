"""The relabel-stream benchmarks with spec 1.3's low-rank tail: stream_codecs.py's tail rows (encoded and
decoded by the package's StreamCodec), stream_students.py's conditions (b) (the release's default) and (b1)
(spec 1.2's default, no tail), and the bytes of a tail that ``ladd size`` may leave out. No timing."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture()
def bench(monkeypatch):
    """Import benchmark modules from benchmarks/ (they import each other by bare name)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module


def test_students_compare_the_default_with_spec_1_2s_default(bench):
    """(b) is the release's default for C (its uint8 fallback at C = 10); (b1), spec 1.2's top-20 without a
    tail, is trained only where it differs from (b)."""
    students = bench("stream_students")
    from ladd_format.stream import default_stream_codec

    assert students.stream_codecs(10) == {"b": "uint8"}
    codecs = students.stream_codecs(1000)
    assert codecs == {"b": default_stream_codec(1000).label, "b1": "topk:k=20,values=uint8"}
    assert default_stream_codec(1000).tail_rank is not None


def low_rank_logits(n: int, c: int, rank: int, seed: int = 0) -> np.ndarray:
    """Logits of a rank-``rank`` structure plus a little noise: float32 ``(n, c)``."""
    rng = np.random.default_rng(seed)
    z = 2.0 * rng.standard_normal((n, rank)) @ rng.standard_normal((rank, c)) + 0.05 * rng.standard_normal((n, c))
    return z.astype(np.float32)


def test_codecs_tail_rows_keep_the_tail_that_the_even_residual_loses(bench):
    """A tail row's bytes per slot are its arrays' (top-5 uint16 index + uint8 value, r int8 + a float16 scale),
    its fixed basis apart; on logits of rank 4 a rank-4 tail decodes far closer to the reference than top-5's
    even residual, and re-tempered to T = 20 as well."""
    codecs = bench("stream_codecs")
    from ladd_format.codecs import parse_codec
    from storage_common import fidelity

    logits32 = low_rank_logits(300, codecs.C, 4)
    logits16 = logits32.astype(np.float16)
    base = (np.zeros((10, 3, 4, 4), np.uint8), np.arange(10))
    st = {"temps": [1.0], "retemper": 20.0, "tail_ks": [5], "tail_values": ["uint8"], "tail_ranks": [4]}
    (row,) = codecs.tail_rows(st, logits32, logits16, base, np.arange(300), None)
    assert row["kind"] == "topk:k=5,values=uint8,tail=4" and row["tail_rank"] == 4
    assert row["bytes"]["raw"] == pytest.approx(5 * 2 + 5 + 4 + 2)
    assert row["fixed_bytes"]["raw"] == 4 * codecs.C * (4 + 1) and row["fixed_bytes"]["zstd19"] > 0
    even = parse_codec("topk:k=5,values=uint8")
    p = codecs.softmax(logits16, 1.0)
    even_kl = fidelity(p, even.decode(even.encode(p), codecs.C))["kl"]
    assert row["kl"] < 0.25 * even_kl
    even20 = fidelity(codecs.softmax(logits16, 20.0), codecs.retemper(even.decode(even.encode(p), codecs.C), 20.0))["kl"]
    assert row["retempered"]["kl"] < 0.25 * even20


def test_codecs_imagenet_total_counts_a_tails_basis_once(bench):
    codecs = bench("stream_codecs")
    d = {"side": {"imagenet": {"crop": {"zstd19": 7.0}, "mix": {"zstd19": 1.0}}},
         "imagenet": {"images": 10_000, "epochs": 300}}
    plain = {"bytes": {"zstd19": 30.0}}
    tail = {"bytes": {"zstd19": 30.0}, "fixed_bytes": {"zstd19": 90_000}}
    assert codecs.imagenet_bytes(d, plain) == 38.0 * 3_000_000
    assert codecs.imagenet_bytes(d, tail) == 38.0 * 3_000_000 + 90_000


def test_students_generate_writes_the_tail_stream_and_spec_1_2s(bench, tmp_path):
    """For C = 1000 one pass writes (b) with its tail (basis fitted on the first records' float32 logits, as
    ``ladd relabel`` does) and (b1) without; (b)'s loader gives the package's numpy decode of the tail."""
    students = bench("stream_students")
    common = bench("stream_common")
    from ladd_format.reader import open_dla
    from ladd_format.stream.tail import fit_tail_basis
    from ladd_format.torch.models import build_model

    torch.manual_seed(0)
    teacher = common.save_teacher(build_model("convnet-d3", num_classes=1000, image_size=16, width=4).eval(),
                                  tmp_path / "t.safetensors", num_classes=1000, image_size=16, width=4,
                                  mean=common.D1K_MEAN, std=common.D1K_STD, training_data="random", epochs=0)
    rng = np.random.default_rng(0)
    data = {"x": rng.integers(0, 256, (12, 3, 16, 16), dtype=np.uint8), "y": np.arange(12),
            "teacher": str(teacher), "mean": common.D1K_MEAN, "std": common.D1K_STD}
    ds = {"name": "digits-1000", "classes": 1000, "side": 16, "epochs": 2, "batch": 5}
    made = students.generate(ds, data, seed=0, t=1.0, folder=tmp_path)
    assert made["codec"] == students.stream_codecs(1000)["b"] and made["codec_b1"] == "topk:k=20,values=uint8"
    with open_dla(made["stream"]) as f, open_dla(made["stream_b1"]) as f1:
        assert f1.stream.tail is None and f.stream.tail is not None
        # fitted on the float32 logits of every record (24 < TAIL_FIT_RECORDS), in stream order
        logits = np.concatenate([common.load_sre2l_batch(Path(made["sre2l"]) / f"epoch_{e}" / f"batch_{b}.tar")[5]
                                 .float().numpy() for e in range(2) for b in range(3)])
        refit = fit_tail_basis(logits, f.stream.tail.rank)
        assert np.abs(refit.mean - f.stream.tail.mean).max() < 1e-2     # the tar holds the logits as float16
        records = [f.stream.read_batch(b) for b in f.stream.epoch_batches(1)]
        want = [f.stream.probs(r, 4.0) for r in records]
    loader, decoded_by = students.make_replay_loader(made["stream"], 4.0)
    assert decoded_by in ("replay loader", "numpy StreamReader")
    got = [probs.numpy() for _, probs in loader.epoch(1)]
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        assert np.abs(g - w).max() <= students.LABELS_ATOL
    assert made["stream_bytes"] > made["stream_b1_bytes"] / 10 > 0
