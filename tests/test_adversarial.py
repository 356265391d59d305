"""Issue "Hostile and damaged files": damaged and crafted files, killed writers and hostile pickles.

The cases and the classification live in ``benchmarks/adversarial.py`` (its docstring defines the
classes); this runs a small sample of each kind. Every damaged file must leave every reader's output
unchanged, or make ``verify`` fail and every reader whose output would differ raise a ``LaddError``;
every crafted file must be refused by ``verify`` with no traceback, hang, or read outside the file, and
every CLI command must refuse it in one line. The only timing is the hang guard (a 10 s alarm per call
and a watchdog per case in the worker processes).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
A = importlib.import_module("adversarial")

# the damage, kill and pickle cases run in worker processes (see conftest.py on mutation_skip)
pytestmark = pytest.mark.mutation_skip

PER_BASE = 24          # damages per base file: 7 files x 24 = 168, every flip kind and region kind
PICKLES = ("tensors-images", "mtt-labels-legacy", "datm-lr", "dc", "npz-object")


@pytest.fixture(scope="session")
def bases(tmp_path_factory):
    return A.make_base_files(tmp_path_factory.mktemp("adv-bases"), seed=0)


@pytest.fixture(scope="session")
def pool(tmp_path_factory):
    p = A.Pool(tmp_path_factory.mktemp("adv-work"), 2)
    yield p
    p.close()


@pytest.fixture(scope="session")
def flips(pool, bases):
    return A.run_flips(pool, bases, PER_BASE, seed=1, progress=False)


@pytest.fixture(scope="session")
def crafted(pool, bases, tmp_path_factory):
    return A.run_crafted(pool, tmp_path_factory.mktemp("adv-crafted"), bases)


def _describe(case: dict) -> str:
    mut = A.Mutation(**{k: case[k] for k in ("case", "base", "kind", "region", "name", "offset", "data", "length")})
    return f"{case['class']}: {mut.describe()}: {case['detail'][:300]}\n    reproduce: {mut.repro()}"


def test_region_map_finds_every_kind_of_region(bases):
    for name, path in bases.items():
        kinds = {r.kind for r in A.region_map(path)}
        expected = {"superblock", "object_header", "chunk_index", "attr_value", "global_heap", "chunk_images",
                    "chunk_labels"} | ({"chunk_dense"} if A.BASES[name][0] else set())
        assert expected <= kinds, (name, expected - kinds)
        regions = A.region_map(path)
        assert regions[0].start == 0 and regions[-1].end == path.stat().st_size
        assert all(a.end == b.start for a, b in zip(regions, regions[1:]))


def test_fletcher32_matches_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    np = pytest.importorskip("numpy")
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("x", data=np.arange(1001, dtype=np.int16), chunks=(1001,), fletcher32=True)
    with h5py.File(tmp_path / "f.h5") as f:
        _, raw = f["x"].id.read_direct_chunk((0,))
    assert A.fletcher32_chunk(raw[:-4]) == raw


def test_undamaged_files_read_back_cleanly(flips):
    """The oracle: every reader returns data and verify says OK on the files the writer wrote."""
    assert flips["base_problems"] == {}


def test_damages_cover_every_region_and_kind(flips, bases):
    for name, path in bases.items():
        regions = {r.kind for r in A.region_map(path)}
        tried = {c["region"] for c in flips["cases"] if c["base"] == name}
        kinds = {c["kind"] for c in flips["cases"] if c["base"] == name}
        assert regions <= tried, (name, regions - tried)
        assert {"bit", "byte", "burst", "word16", "attr"} <= kinds, (name, kinds)


@pytest.mark.parametrize("base", sorted(A.BASES))
def test_damage_is_never_silent_nor_a_traceback(flips, base):
    failing = [c for c in flips["cases"] if c["base"] == base and c["class"] not in A.PASSING]
    assert not failing, f"{len(failing)} of {PER_BASE} damages of {base}:\n" + "\n".join(map(_describe, failing))


#: the hostile stream files (spec 2.4 and 4.7 bounds; since 1.3 the tail's, 4.8 and rule 18)
STREAM_CASES = ("stream_epoch_start_1e9", "stream_batch_start_billions", "stream_batch_2_20", "stream_topk_k_gt_c",
                "stream_crop_size_0", "stream_crop_size_2_20", "stream_image_ge_m", "stream_box_outside",
                "stream_tail_coef_wrong_shape", "stream_tail_basis_nan", "stream_tail_scale_negative",
                "stream_tail_rank_huge", "stream_tail_digest_differs", "stream_tail_on_logits_stream")
#: what a hostile stream may add to a worker's resident memory (the worker holds torch, ~0.5 GiB)
STREAM_EXTRA_RSS = 256 << 20


@pytest.mark.parametrize("name", A.CRAFTED)
def test_crafted_file_is_refused_cleanly(crafted, name):
    r = crafted[name]
    readers = ", ".join(f"{k} {v}" for k, v in r["readers"].items())
    cli = "; ".join(f"ladd {k}: rc {v['rc']} {v['error'] or ''} {v['stderr'][-120:]!r}" for k, v in r["cli"].items())
    assert r["class"] in A.PASSING, (f"{name}: {r['class']}: {r['detail']}\n  verify: {r['verify']}\n  readers: "
                                     f"{readers}\n  cli: {cli}\n  reproduce: python benchmarks/adversarial.py "
                                     f"--replay-crafted {name}")
    assert r["verify"][0] == "invalid"
    assert all(v in ("ok", "ladd", "invalid") for v in r["readers"].values())
    for cmd, v in r["cli"].items():
        assert v["rc"] == 1 and v["error"] is None and len(v["stderr"].strip().splitlines()) == 1, (cmd, v)


def test_crafted_cases_are_the_documented_set():
    assert {"huge_rows_1e9", "external_raw", "external_link", "virtual_dataset", "fifo", "zip_bomb",
            "big_endian_labels", "topk_index_ge_c", *STREAM_CASES} <= set(A.CRAFTED)


@pytest.mark.parametrize("name", STREAM_CASES)
def test_hostile_stream_is_refused_in_one_line_without_a_large_allocation(crafted, pool, name):
    """Huge declared epoch_start, batch_start claiming billions of records, a batch of 2^20 records,
    topk k > C, crop_size 0 or 2^20, an image index >= M, a box outside the image, and a tail (1.3)
    whose coef has the wrong shape, whose basis holds a NaN, whose scale is negative, whose rank is
    huge, whose batch digest differs or that sits on a logits stream: verify refuses the
    file, the stream reader refuses before returning a record of the defect (a LaddError, one line),
    ``ladd verify/size/export`` exit 1 with one line, and no reader allocates more than STREAM_EXTRA_RSS."""
    r = crafted[name]
    assert r["verify"][0] == "invalid", r["verify"]
    assert r["readers"]["stream.batches"] == "ladd", r["readers"]
    assert all(v in ("ok", "ladd", "invalid") for v in r["readers"].values()), r["readers"]
    assert r["class"] in A.PASSING, (r["class"], r["detail"])
    assert r["peak_rss"] < pool.baseline_rss + STREAM_EXTRA_RSS, (r["peak_rss"] >> 20, pool.baseline_rss >> 20)
    for cmd in ("verify", "size", "export"):
        v = r["cli"][cmd]
        assert v["rc"] == 1 and v["error"] is None and len(v["stderr"].strip().splitlines()) == 1, (cmd, v)


@pytest.fixture(scope="module")
def kills(tmp_path_factory):
    return A.KillBench(tmp_path_factory.mktemp("adv-kills"), seed=3)


@pytest.mark.parametrize("with_old", [False, True])
def test_killed_convert_leaves_the_destination_absent_old_or_valid(kills, with_old):
    r = kills.kill_once("convert", with_old=with_old)
    assert r["ok"], r


def test_killed_export_leaves_the_destination_absent_old_or_complete(kills):
    r = kills.kill_once("export_npz", with_old=True)
    assert r["ok"], r


@pytest.fixture(scope="module")
def pickles(tmp_path_factory):
    return {c["name"]: c for c in A.pickle_cases(tmp_path_factory.mktemp("adv-pickles"))}


@pytest.mark.parametrize("name", PICKLES)
def test_hostile_pickle_is_refused_unrun(pickles, name):
    r = A.run_pickle_case(pickles[name])
    assert not r["code_ran"], r
    assert r["problem"] is None, r
