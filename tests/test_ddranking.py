"""DD-Ranking's layouts (facts in ``docs/upstream-formats.md``): ``ladd convert`` reads its published
sets (unsuffixed ``images.pt`` / ``labels.pt`` / ``lr.pt`` through datm, tesla, mtt or tensors;
``images_<M>_<D>_<ipc>_best.pt`` tensors through dc), ``auto`` says which it chose and why,
``ladd export --format ddranking`` writes the tensors DD-Ranking's evaluators load, and a set
converted and exported again gives the same tensors back.

Fixtures are written here with ``torch.save`` as DD-Ranking publishes them; the real DC pair in
``../shared/data/ddranking/DC-DSA-DM`` is read when present (skipped, saying why, when absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ladd_format import DLAWriter, DenseSpec, open_dla
from ladd_format.codecs import make_codec
from ladd_format.presets import CIFAR10_NAMES, CIFAR_MEAN, CIFAR_STD

from conftest import cli, ok, softmax
from test_convert_runs import assert_pixels, grouped_labels, normalise, pixels, zca_fit, zca_white

SHARED_DC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ddranking" / "DC-DSA-DM"
REAL_IMAGES = "images_DC_CIFAR10_1_best.pt"
REAL_LABELS = "labels_DC_CIFAR10_1_best.pt"
#: one uint8 step in normalised units is 1/255/std; rounding moves a value at most half of it
HALF_STEP = 0.5 / 255 / np.asarray(CIFAR_STD).reshape(1, 3, 1, 1)


def load(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)     # what DD-Ranking's user does


# -- fixtures as DD-Ranking publishes them ---------------------------------------------------------
def published(tmp_path: Path, labels: str = "logits", lr: bool = True, zca: bool = False, method: str = "DATM",
              dataset: str = "CIFAR10", ipc: int = 10, seed: int = 0) -> Path:
    """``methods/<method>/distilled/<dataset>/IPC<ipc>/`` with images.pt (CIFAR-normalised, or
    ZCA-whitened), labels.pt (``logits``, ``probs`` or ``hard`` class-major) and lr.pt."""
    folder = tmp_path / "methods" / method / "distilled" / dataset / f"IPC{ipc}"
    folder.mkdir(parents=True)
    m = 10 * ipc
    pix = pixels(m=m, side=8, seed=seed)
    if zca:
        train = np.random.default_rng(seed + 1).uniform(0, 1, size=(300, 3, 8, 8))
        mu, forward, _ = zca_fit(train)
        images = zca_white(pix, mu, forward)
    else:
        images = normalise(pix, CIFAR_MEAN, CIFAR_STD)
    z = torch.tensor(np.random.default_rng(seed + 2).normal(size=(m, 10)) * 3, dtype=torch.float32)
    target = {"logits": z, "probs": torch.softmax(z, dim=1), "hard": grouped_labels(10, ipc)}[labels]
    torch.save(images, folder / "images.pt")
    torch.save(target if labels == "hard" else target.requires_grad_(True), folder / "labels.pt")
    if lr:
        torch.save(torch.tensor(0.0123, dtype=torch.float32).requires_grad_(True), folder / "lr.pt")
    return folder


def dc_result(tmp_path: Path) -> tuple[Path, dict]:
    """``methods/DC-DSA-DM/result/`` with DM CIFAR-10 IPC 2 tensors (``_best`` and ``_0``) beside a
    results file whose data[0] holds other images; returns the folder and the pixels of each."""
    folder = tmp_path / "result"
    folder.mkdir()
    pix = {tag: pixels(m=20, side=8, seed=seed) for tag, seed in (("best", 30), ("0", 31), ("res", 32))}
    for tag in ("best", "0"):
        torch.save(normalise(pix[tag], CIFAR_MEAN, CIFAR_STD).detach(), folder / f"images_DM_CIFAR10_2_{tag}.pt")
        torch.save(grouped_labels(10, 2), folder / f"labels_DM_CIFAR10_2_{tag}.pt")
    torch.save({"data": [[normalise(pix["res"], CIFAR_MEAN, CIFAR_STD).detach(), grouped_labels(10, 2)]],
                "accs_all_exps": {"ConvNet": [np.float64(0.5)]}}, folder / "res_DM_CIFAR10_ConvNet_2ipc.pt")
    return folder, pix


# -- convert: the unsuffixed published sets -------------------------------------------------------
def test_published_datm_set_converts_with_the_dataset_its_folder_names(tmp_path, runner):
    folder = published(tmp_path)
    out = tmp_path / "datm.dla.h5"
    refused = cli(runner, "convert", "datm", folder, "-o", out, "--keep-float")
    assert refused.exit_code == 1 and not out.exists()                  # the sign sees the named dataset:
    assert "DATM's CIFAR configurations use ZCA" in refused.output and "--no-zca" in refused.output   # say which
    result = ok(runner, "convert", "datm", folder, "-o", out, "--keep-float", "--no-zca")
    assert "dataset cifar10 from DD-Ranking's folder CIFAR10/IPC10/" in result.output
    with open_dla(out) as f:
        assert f.attrs["distillation"] == "datm" and f.attrs["source_dataset"] == "cifar10"
        assert f.class_names == list(CIFAR10_NAMES) and f.ipc == 10
        assert np.allclose(f.mean, CIFAR_MEAN) and np.allclose(f.std, CIFAR_STD)
        assert f.soft_kind == "logits" and np.array_equal(f.soft_labels(), load(folder / "labels.pt").detach().numpy())
        assert f.attrs["learned_lr"] == float(np.float32(0.0123))
        assert [i["name"] for i in f.provenance["inputs"]] == ["images.pt", "labels.pt", "lr.pt"]


def test_the_images_pt_file_itself_and_mtt_read_the_unsuffixed_layout(tmp_path, runner):
    folder = published(tmp_path, labels="hard", lr=False, method="MTT")
    ok(runner, "convert", "mtt", folder / "images.pt", "-o", tmp_path / "a.dla.h5")
    ok(runner, "convert", "mtt", folder, "-o", tmp_path / "b.dla.h5")
    with open_dla(tmp_path / "a.dla.h5") as a, open_dla(tmp_path / "b.dla.h5") as b:
        assert a.attrs["distillation"] == b.attrs["distillation"] == "mtt"
        assert np.array_equal(a.images(), b.images()) and np.array_equal(a.labels(), np.repeat(np.arange(10), 10))


def test_a_dataset_that_conflicts_with_the_folder_is_refused(tmp_path, runner):
    folder = published(tmp_path)
    out = tmp_path / "o.dla.h5"
    result = cli(runner, "convert", "datm", folder, "-o", out, "--dataset", "cifar100")
    assert result.exit_code == 1 and not out.exists()
    (line,) = result.output.strip().splitlines()
    assert "--dataset cifar100 conflicts with DD-Ranking's folder CIFAR10/IPC10/, which names cifar10" in line


@pytest.mark.parametrize("labels,lr,expected,reason", [
    ("logits", True, "datm", "DD-Ranking images.pt + labels.pt + lr.pt: DATM saves the learned learning rate"),
    ("logits", False, "datm", "DD-Ranking images.pt + labels.pt holding 2-D float logits, as DATM saves"),
    ("probs", False, "tesla", "DD-Ranking images.pt + labels.pt holding 2-D probabilities"),
    ("hard", False, "tensors", "class-index labels and no lr.pt: the method is not in the files"),
])
@pytest.mark.parametrize("given", ["folder", "images.pt"])
def test_auto_says_which_method_it_chose_and_why(tmp_path, runner, labels, lr, expected, reason, given):
    folder = published(tmp_path, labels=labels, lr=lr)
    src = folder if given == "folder" else folder / "images.pt"
    out = tmp_path / "o.dla.h5"
    no_zca = ["--no-zca"] if expected == "datm" else []        # DATM's CIFAR configurations use ZCA: say which
    result = ok(runner, "convert", "auto", src, "-o", out, "--keep-float", *no_zca)
    assert f"note: auto: detected {expected} (" in result.output and reason in result.output
    with open_dla(out) as f:
        assert f.provenance["converter"] == expected
        assert f.attrs.get("distillation") == (None if expected == "tensors" else expected)
        assert f.attrs["source_dataset"] == "cifar10"


# -- convert: the DC-DSA-DM tensors --------------------------------------------------------------
def test_dc_reads_the_tensor_pair_and_its_name(tmp_path, runner):
    folder, pix = dc_result(tmp_path)
    out = tmp_path / "best.dla.h5"
    result = ok(runner, "convert", "dc", folder, "-o", out)
    assert "dataset cifar10 from the file name images_DM_CIFAR10_2_best.pt" in result.output
    assert "also holds res_DM_CIFAR10_ConvNet_2ipc.pt, not read" in result.output
    with open_dla(out) as f:
        assert_pixels(f.images(), pix["best"])
        assert f.attrs["distillation"] == "dm" and f.attrs["source_dataset"] == "cifar10" and f.ipc == 2
        assert f.class_names == list(CIFAR10_NAMES) and np.allclose(f.mean, CIFAR_MEAN)
        assert [i["name"] for i in f.provenance["inputs"]] == ["images_DM_CIFAR10_2_best.pt",
                                                               "labels_DM_CIFAR10_2_best.pt"]
        assert f.provenance["report"]["not_read"] == ["res_DM_CIFAR10_ConvNet_2ipc.pt"]
    # --experiment N means experiment N in both forms: the _N tensors, data[N] of the results file
    ok(runner, "convert", "dc", folder, "-o", tmp_path / "e0.dla.h5", "--experiment", "0")
    ok(runner, "convert", "dc", folder / "res_DM_CIFAR10_ConvNet_2ipc.pt", "-o", tmp_path / "r0.dla.h5",
       "--experiment", "0")
    ok(runner, "convert", "dc", folder / "images_DM_CIFAR10_2_0.pt", "-o", tmp_path / "f0.dla.h5")
    with open_dla(tmp_path / "e0.dla.h5") as e0, open_dla(tmp_path / "r0.dla.h5") as r0, \
            open_dla(tmp_path / "f0.dla.h5") as f0:
        assert_pixels(e0.images(), pix["0"])
        assert np.array_equal(f0.images(), e0.images())
        assert_pixels(r0.images(), pix["res"])
        assert r0.attrs["distillation"] == "dm" and r0.attrs["source_dataset"] == "cifar10"   # res_ names too


def test_auto_detects_the_dc_tensor_pair(tmp_path, runner):
    folder, _ = dc_result(tmp_path)
    result = ok(runner, "convert", "auto", folder, "-o", tmp_path / "o.dla.h5")
    assert ("note: auto: detected dc (DD-Ranking images_DM_CIFAR10_2_best.pt + labels_DM_CIFAR10_2_best.pt)"
            in result.output)


def case_conflicting_dataset(folder):
    return [folder, "--dataset", "cifar100"], "--dataset cifar100 conflicts with the file name"


def case_missing_experiment(folder):
    return [folder, "--experiment", "5"], "no experiment 5 for DM_CIFAR10_2 in the folder (tags present: best, 0"


def case_two_sets(folder):
    for kind in ("images", "labels"):
        (folder / f"{kind}_DC_CIFAR10_2_best.pt").write_bytes((folder / f"{kind}_DM_CIFAR10_2_best.pt").read_bytes())
    return [folder], "the folder holds 2 DD-Ranking sets (DC_CIFAR10_2, DM_CIFAR10_2)"


def case_float_labels(folder):
    torch.save(torch.randn(20, 10), folder / "labels_DM_CIFAR10_2_best.pt")
    return [folder], "dm saves int64 class indices"


DC_BAD = [case_conflicting_dataset, case_missing_experiment, case_two_sets, case_float_labels]


@pytest.mark.parametrize("case", DC_BAD, ids=[c.__name__[5:] for c in DC_BAD])
def test_dc_tensor_refusals_are_one_line(tmp_path, runner, case):
    folder, _ = dc_result(tmp_path)
    args, message = case(folder)
    out = tmp_path / "out" / "o.dla.h5"
    out.parent.mkdir()
    result = cli(runner, "convert", "dc", *args, "-o", out)
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("ladd: error: ") and message in line, line
    assert list(out.parent.iterdir()) == []


# -- round trips: convert, export --format ddranking, compare the tensors ---------------------------
def export_dd(runner, src: Path, out: Path):
    result = ok(runner, "export", src, "--format", "ddranking", "-o", out)
    files = sorted(p.name for p in out.iterdir())
    return result, files, json.loads((out / "metadata.json").read_text())


def test_round_trip_keep_float_gives_the_same_tensors(tmp_path, runner):
    folder = published(tmp_path)
    out = tmp_path / "d.dla.h5"
    ok(runner, "convert", "datm", folder, "-o", out, "--keep-float", "--no-zca")
    _, files, meta = export_dd(runner, out, tmp_path / "dd")
    assert files == ["images.pt", "labels.pt", "lr.pt", "metadata.json"]
    for name in ("images.pt", "labels.pt", "lr.pt"):
        back, orig = load(tmp_path / "dd" / name), load(folder / name).detach()
        assert back.dtype == orig.dtype and back.shape == orig.shape and torch.equal(back, orig), name
    assert meta["images_space"] == "normalized" and meta["soft_labels_kind"] == "logits"
    assert meta["learned_lr"] == float(np.float32(0.0123)) and meta["source_dataset"] == "cifar10"


def test_round_trip_through_uint8_is_within_the_rounding(tmp_path, runner):
    folder = published(tmp_path, labels="probs")
    out = tmp_path / "d.dla.h5"
    ok(runner, "convert", "tesla", folder, "-o", out)
    result, files, meta = export_dd(runner, out, tmp_path / "dd")
    assert "images (pixel255) written normalised with the file's mean/std" in result.output
    images, orig = load(tmp_path / "dd" / "images.pt"), load(folder / "images.pt").detach()
    assert images.dtype == torch.float32 and images.shape == orig.shape
    assert np.all(np.abs(images.numpy() - orig.numpy()) <= HALF_STEP + 1e-5)   # pixels in [0, 1]: no clipping
    assert not torch.equal(images, orig)                                      # it did go through uint8
    assert torch.equal(load(tmp_path / "dd" / "labels.pt"), load(folder / "labels.pt").detach())
    assert torch.equal(load(tmp_path / "dd" / "lr.pt"), load(folder / "lr.pt").detach())
    assert meta["stored_space"] == "pixel255" and meta["images_space"] == "normalized"


def test_round_trip_of_zca_images(tmp_path, runner):
    folder = published(tmp_path, zca=True)
    out = tmp_path / "z.dla.h5"
    ok(runner, "convert", "datm", folder, "-o", out, "--zca", "--keep-float")
    _, _, meta = export_dd(runner, out, tmp_path / "dd")
    assert torch.equal(load(tmp_path / "dd" / "images.pt"), load(folder / "images.pt").detach())
    assert torch.equal(load(tmp_path / "dd" / "labels.pt"), load(folder / "labels.pt").detach())
    assert meta["images_space"] == "zca"


@pytest.fixture
def real_dc() -> Path:
    if not (SHARED_DC / REAL_IMAGES).is_file() or not (SHARED_DC / REAL_LABELS).is_file():
        pytest.skip(f"the real DD-Ranking DC pair is not in {SHARED_DC} (../shared/data is absent here)")
    return SHARED_DC


def test_real_dc_pair_converts_and_exports_back(tmp_path, runner, real_dc):
    orig_images, orig_labels = load(real_dc / REAL_IMAGES), load(real_dc / REAL_LABELS)
    exact = tmp_path / "exact.dla.h5"
    result = ok(runner, "convert", "auto", real_dc, "-o", exact, "--keep-float")
    assert f"auto: detected dc (DD-Ranking {REAL_IMAGES} + {REAL_LABELS})" in result.output
    with open_dla(exact) as f:
        assert f.attrs["distillation"] == "dc" and f.attrs["source_dataset"] == "cifar10"
        assert f.class_names == list(CIFAR10_NAMES) and np.allclose(f.mean, CIFAR_MEAN)
    export_dd(runner, exact, tmp_path / "exact")
    assert torch.equal(load(tmp_path / "exact" / "images.pt"), orig_images)
    assert torch.equal(load(tmp_path / "exact" / "labels.pt"), orig_labels)
    assert not (tmp_path / "exact" / "lr.pt").exists()           # DC learns no learning rate
    # through uint8: exact up to the rounding wherever the optimised pixels were inside [0, 1]
    quantised = tmp_path / "u8.dla.h5"
    ok(runner, "convert", "dc", real_dc, "-o", quantised)
    export_dd(runner, quantised, tmp_path / "u8")
    back, orig = load(tmp_path / "u8" / "images.pt").numpy(), orig_images.numpy()
    pix = orig * np.asarray(CIFAR_STD).reshape(1, 3, 1, 1) + np.asarray(CIFAR_MEAN).reshape(1, 3, 1, 1)
    inside = (pix >= 0) & (pix <= 1)
    assert 0.5 < inside.mean() < 1                                 # the real file does leave [0, 1]
    diff = np.abs(back - orig)
    assert np.all(diff <= HALF_STEP + 1e-5, where=inside)
    assert torch.equal(load(tmp_path / "u8" / "labels.pt"), orig_labels)


# -- export --format ddranking: the rules ---------------------------------------------------------------
def write(path: Path, labels, *, images=None, space=None, dtype="uint8", soft_kind=None, dense=False,
          root_attrs=None) -> Path:
    m = len(labels)
    rng = np.random.default_rng(9)
    if images is None:
        images = rng.integers(0, 256, size=(m, 3, 8, 8), dtype=np.uint8)
    soft = None
    if soft_kind:
        soft = softmax(rng.normal(size=(m, 3))).astype(np.float32)
    spec = DenseSpec(n=2, ratio=0.75, codec=make_codec("float32")) if dense else None
    with DLAWriter(path, num_classes=3, image_shape=(3, 8, 8), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
                   image_dtype=dtype, space=space, soft_kind=soft_kind, dense=spec, converter="test",
                   root_attrs=root_attrs) as w:
        w.append(images, np.asarray(labels), soft=soft,
                 dense=softmax(rng.normal(size=(m, 4, 3))).astype(np.float32) if dense else None)
    return path


def test_hard_labels_not_class_major_are_reordered_and_said(tmp_path, runner):
    labels = [2, 0, 1, 1, 0, 2]
    src = write(tmp_path / "a.dla.h5", labels)
    result, files, meta = export_dd(runner, src, tmp_path / "dd")
    assert "reordered class-major" in result.output and "lr.pt" not in files
    order = np.argsort(labels, kind="stable")
    with open_dla(src) as f:
        expected = (f.images()[order].astype(np.float64) / 255 - np.array([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1)) \
            / np.array([0.2, 0.25, 0.3]).reshape(1, 3, 1, 1)
    assert load(tmp_path / "dd" / "labels.pt").tolist() == [0, 0, 1, 1, 2, 2]
    assert np.allclose(load(tmp_path / "dd" / "images.pt").numpy(), expected, rtol=0, atol=1e-6)
    assert meta["source_index"] == order.tolist() and meta["ipc"] == 2


def test_unequal_images_per_class_are_refused_and_nothing_is_left(tmp_path, runner):
    src = write(tmp_path / "a.dla.h5", [0, 0, 1, 2])
    out = tmp_path / "dd"
    result = cli(runner, "export", src, "--format", "ddranking", "-o", out)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "assumes the same number of images per class" in line and "class 1 has 1 images, class 0 2" in line
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_soft_labels_float16_pixel01_and_dense(tmp_path, runner):
    pix = np.random.default_rng(4).uniform(0, 1, size=(4, 3, 8, 8)).astype(np.float16)
    src = write(tmp_path / "a.dla.h5", [1, 0, 2, 0], images=pix, space="pixel01", dtype="float16",
                soft_kind="probs", dense=True, root_attrs={"learned_lr": 0.5})
    result, files, meta = export_dd(runner, src, tmp_path / "dd")
    assert "dense labels are not exported" in result.output and "reordered" not in result.output
    assert files == ["images.pt", "labels.pt", "lr.pt", "metadata.json"]
    expected = (pix.astype(np.float64) - np.array([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1)) \
        / np.array([0.2, 0.25, 0.3]).reshape(1, 3, 1, 1)
    images = load(tmp_path / "dd" / "images.pt")
    assert images.dtype == torch.float32 and np.allclose(images.numpy(), expected, rtol=0, atol=1e-6)
    with open_dla(src) as f:
        assert torch.equal(load(tmp_path / "dd" / "labels.pt"), torch.from_numpy(f.soft_labels()))  # order kept
    lr = load(tmp_path / "dd" / "lr.pt")
    assert lr.dtype == torch.float32 and lr.dim() == 0 and lr.item() == 0.5
    assert meta["soft_labels_kind"] == "probs" and meta["stored_space"] == "pixel01"


def test_subimages_are_refused_for_ddranking(tmp_path, runner):
    src = write(tmp_path / "a.dla.h5", [0, 1, 2], dense=True)
    result = cli(runner, "export", src, "--format", "ddranking", "-o", tmp_path / "dd", "--subimages")
    assert result.exit_code == 1 and "--subimages applies to --format folder and npz" in result.output
    assert not (tmp_path / "dd").exists()
