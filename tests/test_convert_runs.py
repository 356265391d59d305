"""``ladd convert mtt|glad|datm|tesla|tensors|dc``: fixtures written exactly as each code base writes
its outputs (facts in ``docs/upstream-formats.md``), converted through the CLI.

Images are the method's normalisation applied to known 0..1 pixels, so the uint8 round trip can be
checked to one grey level: ``|stored - round(255 * pixel)| <= 1``.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from ladd_cli.main import main
from ladd_format import open_dla
from ladd_format.pixels import loss_report, quantize, to_pixel01, to_uint8
from ladd_format.converters.glad import GLAD_DEFAULT_MEAN, GLAD_DEFAULT_STD
from ladd_format.presets import CIFAR10_NAMES, CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, get_preset

from conftest import softmax

IMAGENETTE_IDS = [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]


# -- fixtures as the code bases write them --------------------------------------------------------
def pixels(m=20, side=16, seed=0, low=0.0, high=1.0) -> np.ndarray:
    """Known 0..1 pixels (float64), (m, 3, side, side), each (k + f) / 255 with its fraction f in
    [0.05, 0.45] or [0.55, 0.95]: half round up, half down, every one at least 0.05 grey levels from
    a tie, so that a converter's float32 arithmetic (errors near 1e-6 levels) cannot change how it
    rounds and the stored pixels are known exactly (:func:`expected_uint8`)."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(low, high, size=(m, 3, side, side))
    f = 0.05 + 0.4 * rng.uniform(size=v.shape) + 0.5 * (rng.uniform(size=v.shape) < 0.5)
    return (np.floor(255 * v) + f) / 255


def expected_uint8(pix: np.ndarray) -> np.ndarray:
    """Spec 4.1 by hand: clip to [0, 1], then floor(255 p + 0.5)."""
    return np.floor(255 * np.clip(pix, 0.0, 1.0) + 0.5).astype(np.uint8)


def normalise(pix: np.ndarray, mean, std) -> torch.Tensor:
    """``transforms.Normalize`` as the methods applied it, float32, optimised (requires_grad)."""
    m = np.asarray(mean).reshape(1, 3, 1, 1)
    s = np.asarray(std).reshape(1, 3, 1, 1)
    return torch.tensor((pix - m) / s, dtype=torch.float32).requires_grad_(True)


def grouped_labels(num_classes: int, ipc: int) -> torch.Tensor:
    """MTT / DC style: ``[0]*ipc + [1]*ipc + ...`` as int64."""
    return torch.tensor(np.array([np.ones(ipc) * i for i in range(num_classes)]), dtype=torch.long).view(-1)


def save_run(folder, tag: str, images: torch.Tensor, labels: torch.Tensor, lr: torch.Tensor | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(images, folder / f"images_{tag}.pt")
    torch.save(labels, folder / f"labels_{tag}.pt")
    if lr is not None:
        torch.save(lr, folder / f"lr_{tag}.pt")
    return folder


def mtt_run(tmp_path, seed=0, pix=None):
    """``logged_files/ImageNette/<run>/`` with images_best.pt (pixels ``pix``) and images_500.pt."""
    pix = pixels(seed=seed) if pix is None else pix
    folder = tmp_path / "logged_files" / "ImageNette" / "fresh-sun-1"
    save_run(folder, "0", normalise(pixels(seed=seed + 7), IMAGENET_MEAN, IMAGENET_STD), grouped_labels(10, 2))
    save_run(folder, "500", normalise(pixels(seed=seed + 1), IMAGENET_MEAN, IMAGENET_STD), grouped_labels(10, 2))
    save_run(folder, "best", normalise(pix, IMAGENET_MEAN, IMAGENET_STD), grouped_labels(10, 2))
    return folder, pix


def zca_fit(train: np.ndarray, eps: float = 0.1):
    """Kornia's ZCAWhitening(eps, compute_inv=True) fit: flatten, unbiased covariance, SVD."""
    x = train.reshape(len(train), -1).astype(np.float64)
    mu = x.mean(axis=0)
    cov = (x - mu).T @ (x - mu) / (len(x) - 1)
    u, s, _ = np.linalg.svd(cov)
    forward = u @ np.diag((s + eps) ** -0.5) @ u.T
    inverse = u @ np.diag((s + eps) ** 0.5) @ u.T
    return mu, forward, inverse


def zca_white(pix: np.ndarray, mu, forward) -> torch.Tensor:
    white = (pix.reshape(len(pix), -1) - mu) @ forward
    return torch.tensor(white.reshape(pix.shape), dtype=torch.float32).requires_grad_(True)


# -- helpers ----------------------------------------------------------------------------------------
def run(runner, fmt, *args):
    result = runner.invoke(main, ["convert", fmt, *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


def converted(runner, fmt, src, out, *args):
    result = run(runner, fmt, src, "-o", out, *args)
    assert result.exit_code == 0, result.output
    check = runner.invoke(main, ["verify", str(out)])
    assert check.exit_code == 0 and check.output.startswith("OK"), check.output
    return result


def assert_pixels(stored: np.ndarray, pix: np.ndarray):
    """Exactly the spec's rounding of the known pixels (no slack: :func:`pixels` keeps off ties)."""
    assert stored.dtype == np.uint8 and stored.shape == pix.shape
    expected = expected_uint8(pix)
    wrong = int(np.count_nonzero(stored != expected))
    assert wrong == 0, f"{wrong} of {stored.size} pixels differ from floor(255 p + 0.5)"


def assert_inputs(f, *paths):
    inputs = f.provenance["inputs"]
    assert [i["name"] for i in inputs] == [p.name for p in paths]
    for record, path in zip(inputs, paths):
        assert record["size"] == path.stat().st_size
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


# -- each code base -----------------------------------------------------------------------------
def test_mtt_imagenette(tmp_path, runner):
    folder, pix = mtt_run(tmp_path)
    out = tmp_path / "mtt.dla.h5"
    result = converted(runner, "mtt", folder, out, "--dataset", "imagenette")
    assert "note: uint8 conversion: 0.00% of values clipped" in result.output
    with open_dla(out) as f:
        assert_pixels(f.images(), pix)
        assert np.array_equal(f.labels(), np.repeat(np.arange(10), 2))
        assert not f.has_soft_labels and f.space == "pixel255"
        assert f.class_names == list(get_preset("imagenette").class_names)
        assert f.class_names[0] == "tench" and f.num_classes == 10 and f.ipc == 2
        assert np.allclose(f.mean, IMAGENET_MEAN) and np.allclose(f.std, IMAGENET_STD)
        attrs = f.attrs
        assert attrs["source_dataset"] == "imagenette" and attrs["distillation"] == "mtt"
        assert list(attrs["imagenet_class_ids"]) == IMAGENETTE_IDS
        report = f.provenance["report"]
        loss = report["uint8_conversion"]
        assert loss["clipped_fraction"] == 0 and 45 < loss["psnr_db"] < 70
        assert f.provenance["converter"] == "mtt"
        assert_inputs(f, folder / "images_best.pt", folder / "labels_best.pt")


def test_mtt_images_file_and_iteration(tmp_path, runner):
    folder, _ = mtt_run(tmp_path)
    out = tmp_path / "it.dla.h5"
    converted(runner, "mtt", folder, out, "--dataset", "imagenette", "--iteration", "500")
    with open_dla(out) as f:
        assert_pixels(f.images(), pixels(seed=1))
        assert [i["name"] for i in f.provenance["inputs"]] == ["images_500.pt", "labels_500.pt"]
    out0 = tmp_path / "file.dla.h5"          # the images file itself: labels_0.pt is its sibling
    converted(runner, "mtt", folder / "images_0.pt", out0, "--dataset", "imagenette")
    with open_dla(out0) as f:
        assert_pixels(f.images(), pixels(seed=7))
        assert [i["name"] for i in f.provenance["inputs"]] == ["images_0.pt", "labels_0.pt"]


def test_mtt_out_of_range_pixels_are_reported(tmp_path, runner):
    pix = pixels(low=-0.25, high=1.25, seed=3)
    folder, _ = mtt_run(tmp_path, pix=pix)
    out = tmp_path / "clip.dla.h5"
    result = converted(runner, "mtt", folder, out, "--dataset", "imagenette")
    expected = float(np.mean((pix < -0.5 / 255) | (pix > 1 + 0.5 / 255)))
    with open_dla(out) as f:
        loss = f.provenance["report"]["uint8_conversion"]
        assert loss["clipped_fraction"] > 0 and math.isclose(loss["clipped_fraction"], expected, rel_tol=1e-6)
        assert loss["psnr_db"] < 30
        stored = f.images()
        assert_pixels(stored, np.clip(pix, 0, 1))           # clipped, then rounded
    assert f"note: uint8 conversion: {expected:.2%} of values clipped, PSNR" in result.output


def test_mtt_keep_float_is_lossless(tmp_path, runner):
    folder, _ = mtt_run(tmp_path)
    out = tmp_path / "float.dla.h5"
    result = converted(runner, "mtt", folder, out, "--dataset", "imagenette", "--keep-float")
    assert "uint8 conversion" not in result.output
    saved = torch.load(folder / "images_best.pt", weights_only=True).detach().numpy()
    with open_dla(out) as f:
        assert f.image_dtype == np.float32 and f.space == "normalized"
        assert np.array_equal(f.images(), saved)
        assert np.allclose(f.mean, IMAGENET_MEAN)
        assert "uint8_conversion" not in f.provenance["report"]


def test_glad_padding_and_its_own_normalisation(tmp_path, runner):
    folder = tmp_path / "logged_files" / "imagenet-nette" / "glad-run"
    pix, pix500 = pixels(seed=10), pixels(seed=11)
    save_run(folder, "best", normalise(pix, GLAD_DEFAULT_MEAN, GLAD_DEFAULT_STD), grouped_labels(10, 2))
    save_run(folder, "00500", normalise(pix500, GLAD_DEFAULT_MEAN, GLAD_DEFAULT_STD), grouped_labels(10, 2))
    out = tmp_path / "glad.dla.h5"
    converted(runner, "glad", folder, out, "--dataset", "imagenette")
    with open_dla(out) as f:
        assert_pixels(f.images(), pix)
        assert np.allclose(f.mean, GLAD_DEFAULT_MEAN) and np.allclose(f.std, GLAD_DEFAULT_STD)
        assert not np.allclose(f.mean, IMAGENET_MEAN)            # unlike MTT on the same subset
        assert f.attrs["distillation"] == "glad" and list(f.attrs["imagenet_class_ids"]) == IMAGENETTE_IDS
        assert "glad" in f.provenance["report"]["normalization"]
    out500 = tmp_path / "glad500.dla.h5"
    converted(runner, "glad", folder, out500, "--dataset", "imagenette", "--iteration", "500")
    with open_dla(out500) as f:
        assert_pixels(f.images(), pix500)
        assert f.provenance["inputs"][0]["name"] == "images_00500.pt"
    # MTT's unpadded name is not there: the error says GLaD pads
    (folder / "images_00500.pt").rename(folder / "images_500.pt")
    result = run(runner, "glad", folder, "-o", tmp_path / "x.dla.h5", "--dataset", "imagenette", "--iteration", "500")
    assert result.exit_code == 1 and "5 digits" in result.output


def test_glad_cifar10_uses_cifar_statistics(tmp_path, runner):
    folder = tmp_path / "glad-cifar"
    pix = pixels(side=8, seed=12)
    save_run(folder, "best", normalise(pix, CIFAR_MEAN, CIFAR_STD), grouped_labels(10, 2))
    out = tmp_path / "g.dla.h5"
    converted(runner, "glad", folder, out, "--dataset", "cifar10")
    with open_dla(out) as f:
        assert_pixels(f.images(), pix)
        assert np.allclose(f.mean, CIFAR_MEAN) and f.class_names == list(CIFAR10_NAMES)


def test_datm_logits_and_learned_lr(tmp_path, runner):
    folder = tmp_path / "logged_files" / "Tiny" / "1" / "ConvNetD4" / "run" / "Normal"
    pix = pixels(m=200, side=8, seed=20)
    logits = torch.tensor(np.random.default_rng(21).normal(size=(200, 200)) * 3, dtype=torch.float32)
    images = normalise(pix, IMAGENET_MEAN, IMAGENET_STD) * 1.0         # saved without detach: a non-leaf
    save_run(folder, "best", images, logits.requires_grad_(True),
             torch.tensor(0.0123, dtype=torch.float32).requires_grad_(True))
    out = tmp_path / "datm.dla.h5"
    result = converted(runner, "datm", folder, out, "--dataset", "tinyimagenet")
    assert "hard labels are the argmax of the logits" in result.output
    assert "ZCA" not in result.output
    with open_dla(out) as f:
        assert_pixels(f.images(), pix)
        assert f.soft_kind == "logits"
        assert np.array_equal(f.soft_labels(), logits.detach().numpy())
        assert np.array_equal(f.labels(), logits.detach().numpy().argmax(1))
        assert f.attrs["learned_lr"] == pytest.approx(np.float32(0.0123), abs=0)
        assert f.attrs["distillation"] == "datm" and f.attrs["source_dataset"] == "tinyimagenet"
        assert f.class_names is None and "imagenet_class_ids" not in f.attrs
        assert_inputs(f, folder / "images_best.pt", folder / "labels_best.pt", folder / "lr_best.pt")


def test_datm_cifar_asks_whether_the_images_are_zca(tmp_path, runner):
    """DATM's CIFAR configurations use ZCA: a sign, not a record, so --zca or --no-zca must say which
    (refused in one line naming the evidence and both flags, nothing written); --no-zca is recorded."""
    folder = tmp_path / "datm-cifar"
    logits = torch.randn(20, 10, generator=torch.Generator().manual_seed(0))
    save_run(folder, "best", normalise(pixels(side=8), CIFAR_MEAN, CIFAR_STD), logits, torch.tensor(0.01))
    out = tmp_path / "d.dla.h5"
    result = run(runner, "datm", folder, "-o", out, "--dataset", "cifar10")
    assert result.exit_code == 1 and not out.exists()
    (line,) = result.output.strip().splitlines()
    assert "DATM's CIFAR configurations use ZCA" in line and "--zca" in line and "--no-zca" in line
    converted(runner, "datm", folder, out, "--dataset", "cifar10", "--no-zca")
    with open_dla(out) as f:
        assert f.space == "pixel255" and f.provenance["report"]["zca"].startswith("not ZCA-whitened (--no-zca")


def test_tesla_teacher_probabilities(tmp_path, runner):
    folder = tmp_path / "logged_files" / "CIFAR10" / "tesla-run"
    pix = pixels(side=8, seed=30)
    probs = torch.softmax(torch.tensor(np.random.default_rng(31).normal(size=(20, 10)) * 2, dtype=torch.float32), 1)
    save_run(folder, "best", normalise(pix, CIFAR_MEAN, CIFAR_STD), probs)
    out = tmp_path / "tesla.dla.h5"
    converted(runner, "tesla", folder, out, "--dataset", "cifar10")
    with open_dla(out) as f:
        assert_pixels(f.images(), pix)
        assert f.soft_kind == "probs" and np.array_equal(f.soft_labels(), probs.numpy())
        assert np.array_equal(f.labels(), probs.numpy().argmax(1))
        assert f.attrs["distillation"] == "tesla" and f.class_names == list(CIFAR10_NAMES)
        assert np.allclose(f.mean, CIFAR_MEAN) and np.allclose(f.std, CIFAR_STD)


def test_tesla_hard_labels(tmp_path, runner):
    folder = save_run(tmp_path / "tesla-hard", "best", normalise(pixels(side=8, seed=32), CIFAR_MEAN, CIFAR_STD),
                      grouped_labels(10, 2))
    out = tmp_path / "t.dla.h5"
    converted(runner, "tesla", folder, out, "--dataset", "cifar10")
    with open_dla(out) as f:
        assert not f.has_soft_labels and np.array_equal(f.labels(), np.repeat(np.arange(10), 2))


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_tensors_dd_ranking(tmp_path, runner, kind):
    folder = tmp_path / "dd-ranking"
    folder.mkdir()
    pix = pixels(m=100, side=8, seed=40)
    z = np.random.default_rng(41).normal(size=(100, 100)).astype(np.float32) * 2
    soft = softmax(z).astype(np.float32) if kind == "probs" else z
    torch.save(normalise(pix, CIFAR_MEAN, CIFAR_STD), folder / "images.pt")
    torch.save(torch.tensor(soft), folder / "labels.pt")
    torch.save(torch.tensor(0.01), folder / "lr.pt")
    out = tmp_path / "tensors.dla.h5"
    result = converted(runner, "tensors", folder, out, "--dataset", "cifar100")
    assert f"2-D float labels read as {kind}" in result.output
    with open_dla(out) as f:
        assert_pixels(f.images(), pix)
        assert f.soft_kind == kind and np.array_equal(f.soft_labels(), soft)
        assert f.attrs["learned_lr"] == pytest.approx(0.01)
        assert "distillation" not in f.attrs          # the pair does not say the method: none is guessed
        assert f.class_names[:2] == ["apple", "aquarium_fish"] and f.num_classes == 100


@pytest.mark.parametrize("name,method", [("res_DC_CIFAR10_ConvNet_2ipc.pt", "dc"),
                                         ("res_DM_CIFAR10_ConvNet_2ipc.pt", "dm")])
def test_dc_results_dict(tmp_path, runner, name, method):
    pixs = [pixels(side=8, seed=50 + e) for e in range(3)]
    data = [[normalise(p, CIFAR_MEAN, CIFAR_STD).detach().clone(), grouped_labels(10, 2)] for p in pixs]
    src = tmp_path / name
    torch.save({"data": data, "accs_all_exps": {"ConvNet": [np.float64(0.41), np.float64(0.43)]}}, src)
    out = tmp_path / "dc.dla.h5"
    result = converted(runner, "dc", src, out, "--dataset", "cifar10")
    assert "experiment 0 of 3" in result.output
    with open_dla(out) as f:
        assert_pixels(f.images(), pixs[0])
        assert np.array_equal(f.labels(), np.repeat(np.arange(10), 2))
        assert f.attrs["distillation"] == method and f.provenance["converter"] == "dc"
        assert f.provenance["report"]["experiment"] == "0 of 3"
        assert_inputs(f, src)
    out2 = tmp_path / "dc2.dla.h5"
    converted(runner, "dc", tmp_path, out2, "--dataset", "cifar10", "--experiment", "2")   # the folder works too
    with open_dla(out2) as f:
        assert_pixels(f.images(), pixs[2])


def test_mean_std_from_the_command_line(tmp_path, runner):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    pix = pixels(side=8, seed=60)
    folder = save_run(tmp_path / "run", "best", normalise(pix, mean, std), grouped_labels(4, 5))
    out = tmp_path / "o.dla.h5"
    converted(runner, "mtt", folder, out, "--mean", "0.5,0.4,0.3", "--std", "0.2,0.25,0.3")
    with open_dla(out) as f:
        assert_pixels(f.images(), pix)
        assert np.allclose(f.mean, mean) and f.num_classes == 4 and f.class_names is None


@pytest.mark.parametrize("shape,space", [((5, 3, 128, 128), "normalized"), ((37, 3, 8, 8), "pixel01"),
                                         ((3, 1, 300, 300), "normalized")])
def test_blockwise_uint8_equals_the_definitions(shape, space):
    loc, scale = (0.5, 0.6) if space == "pixel01" else (0.0, 3.0)        # some pixels out of range
    x = np.random.default_rng(80).normal(loc, scale, size=shape).astype(np.float32)
    k = shape[1]
    mean, std = IMAGENET_MEAN[:k], IMAGENET_STD[:k]
    stored, report = to_uint8(x, space, mean, std)
    pixel01 = to_pixel01(x, space, mean, std)
    reference = quantize(pixel01)
    assert np.array_equal(stored, reference)
    expected = loss_report(pixel01, reference)
    assert report["clipped_fraction"] == pytest.approx(expected["clipped_fraction"], rel=1e-12)
    assert report["clipped_fraction"] > 0.05 and report["psnr_db"] == pytest.approx(expected["psnr_db"], rel=1e-9)


# -- ZCA -------------------------------------------------------------------------------------------
@pytest.fixture
def zca_case(tmp_path):
    """A CIFAR-like ZCA run (8x8 to keep the SVD small): whitened images_best.pt, an inverted
    images_zca_500.pt sibling, and the statistics of the training set."""
    train = np.random.default_rng(70).uniform(0, 1, size=(400, 3, 8, 8))
    train = 0.5 * train + 0.5 * train.mean(axis=1, keepdims=True)      # correlated channels
    mu, forward, inverse = zca_fit(train)
    pix = pixels(side=8, seed=71)
    folder = save_run(tmp_path / "logged_files" / "CIFAR10" / "zca-run", "best", zca_white(pix, mu, forward),
                      grouped_labels(10, 2))
    torch.save(torch.tensor(pix, dtype=torch.float32), folder / "images_zca_500.pt")
    stats = tmp_path / "zca_stats.npz"
    np.savez(stats, mean=mu, inverse=inverse)
    refit = tmp_path / "train.npz"
    np.savez(refit, train_images=train.astype(np.float32))
    return folder, pix, stats, refit


def test_zca_without_stats_is_kept_as_float(tmp_path, runner, zca_case):
    """ZCA-whitened images have no uint8 form without the inverse: --zca alone stores them as float."""
    folder, *_ = zca_case
    out = tmp_path / "z.dla.h5"
    result = converted(runner, "mtt", folder, out, "--dataset", "cifar10", "--zca")
    assert "images stored as float32 in space zca" in result.output
    saved = torch.load(folder / "images_best.pt", weights_only=True).detach().numpy()
    with open_dla(out) as f:
        assert f.space == "zca" and f.image_dtype == np.float32 and np.array_equal(f.images(), saved)


def test_zca_keep_float(tmp_path, runner, zca_case):
    folder, *_ = zca_case
    out = tmp_path / "z.dla.h5"
    converted(runner, "mtt", folder, out, "--dataset", "cifar10", "--zca", "--keep-float")
    saved = torch.load(folder / "images_best.pt", weights_only=True).detach().numpy()
    with open_dla(out) as f:
        assert f.space == "zca" and f.image_dtype == np.float32 and np.array_equal(f.images(), saved)


@pytest.mark.parametrize("which", ["mean+inverse", "train_images"])
def test_zca_stats_invert(tmp_path, runner, zca_case, which):
    folder, pix, stats, refit = zca_case
    out = tmp_path / "z.dla.h5"
    result = converted(runner, "mtt", folder, out, "--dataset", "cifar10",
                       "--zca-stats", stats if which == "mean+inverse" else refit)
    assert "warning" not in result.output
    with open_dla(out) as f:
        assert_pixels(f.images(), pix)
        assert np.allclose(f.mean, 0) and np.allclose(f.std, 1)         # ZCA pipeline: no mean/std step
        assert "inverted" in f.provenance["report"]["zca"]
        assert f.class_names == list(CIFAR10_NAMES)


def test_zca_siblings_ask_for_zca_or_no_zca(tmp_path, runner, zca_case):
    """An images_zca_*.pt sibling is a sign, not a record (the fixture's folder name zca-run would
    decide: a copy under a neutral name is asked about)."""
    import shutil
    folder = shutil.copytree(zca_case[0], zca_case[0].parent / "run-a")
    out = tmp_path / "z.dla.h5"
    result = run(runner, "mtt", folder, "-o", out, "--dataset", "cifar10")
    assert result.exit_code == 1 and not out.exists()
    (line,) = result.output.strip().splitlines()
    assert "the run folder holds images_zca_500.pt" in line and "--zca" in line and "--no-zca" in line
    converted(runner, "mtt", folder, out, "--dataset", "cifar10", "--no-zca")
    with open_dla(out) as f:
        assert "images_zca_500.pt" in f.provenance["report"]["zca"]


# -- bad input: one line, exit 1, nothing written ---------------------------------------------------
class Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def case_wrong_format(tmp):
    folder = save_run(tmp / "run", "best", normalise(pixels(side=8), CIFAR_MEAN, CIFAR_STD), torch.randn(20, 10))
    return "mtt", folder, ["--dataset", "cifar10"], folder / "labels_best.pt", "convert with datm (logits) or tesla"


def case_missing_labels(tmp):
    folder = save_run(tmp / "run", "best", normalise(pixels(side=8), CIFAR_MEAN, CIFAR_STD), grouped_labels(10, 2))
    (folder / "labels_best.pt").unlink()
    return "mtt", folder, ["--dataset", "cifar10"], folder / "images_best.pt", "labels_best.pt is missing"


def case_count_mismatch(tmp):
    folder = save_run(tmp / "run", "best", normalise(pixels(side=8), CIFAR_MEAN, CIFAR_STD), grouped_labels(10, 3))
    return "mtt", folder, ["--dataset", "cifar10"], folder / "labels_best.pt", "20 images but 30 labels"


def case_truncated(tmp):
    folder = save_run(tmp / "run", "best", normalise(pixels(side=8), CIFAR_MEAN, CIFAR_STD), grouped_labels(10, 2))
    path = folder / "images_best.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "mtt", folder, ["--dataset", "cifar10"], path, "truncated or corrupt"


def case_empty_file(tmp):
    folder = save_run(tmp / "run", "best", normalise(pixels(side=8), CIFAR_MEAN, CIFAR_STD), grouped_labels(10, 2))
    (folder / "labels_best.pt").write_bytes(b"")
    return "mtt", folder, ["--dataset", "cifar10"], folder / "labels_best.pt", "empty file"


def case_non_finite_images(tmp):
    images = normalise(pixels(side=8), CIFAR_MEAN, CIFAR_STD).detach()
    images[0, 0, 0, 0], images[3, 1, 2, 2] = float("nan"), float("inf")      # a diverged run
    folder = save_run(tmp / "run", "best", images, grouped_labels(10, 2))
    return "mtt", folder, ["--dataset", "cifar10"], folder / "images_best.pt", "2 NaN or infinite value(s)"


def case_labels_out_of_range(tmp):
    folder = save_run(tmp / "run", "best", normalise(pixels(side=8), CIFAR_MEAN, CIFAR_STD),
                      grouped_labels(10, 2) - 1)
    return "mtt", folder, ["--dataset", "cifar10"], folder / "labels_best.pt", "labels must lie in [0, 10)"


def case_malicious_images(tmp):
    folder = save_run(tmp / "run", "best", normalise(pixels(side=8), CIFAR_MEAN, CIFAR_STD), grouped_labels(10, 2))
    torch.save([Payload(tmp / "MARKER")], folder / "images_best.pt")
    return "mtt", folder, ["--dataset", "cifar10"], folder / "images_best.pt", "refused"


def case_malicious_dc(tmp):
    src = tmp / "res_DC_CIFAR10_ConvNet_2ipc.pt"
    torch.save({"data": [[torch.zeros(20, 3, 8, 8), grouped_labels(10, 2)]],
                "accs_all_exps": {"ConvNet": [np.float64(0.4), Payload(tmp / "MARKER")]}}, src)
    return "dc", src, ["--dataset", "cifar10"], src, "refused"


def case_no_normalisation(tmp):
    folder = save_run(tmp / "run", "best", normalise(pixels(side=8), CIFAR_MEAN, CIFAR_STD), grouped_labels(10, 2))
    return "tesla", folder, [], folder / "images_best.pt", "--dataset"


def case_experiment_out_of_range(tmp):
    src = tmp / "res_DSA_CIFAR10_ConvNet_2ipc.pt"
    torch.save({"data": [[normalise(pixels(side=8), CIFAR_MEAN, CIFAR_STD).detach(), grouped_labels(10, 2)]],
                "accs_all_exps": {"ConvNet": [np.float64(0.4)]}}, src)
    return "dc", src, ["--dataset", "cifar10", "--experiment", "1"], src, "--experiment 1 is out of range"


def case_preset_class_count(tmp):
    folder = save_run(tmp / "run", "best", normalise(pixels(side=8), CIFAR_MEAN, CIFAR_STD),
                      torch.randn(20, 10))
    return "datm", folder, ["--dataset", "cifar100"], folder / "images_best.pt", "preset cifar100 has 100 classes"


BAD = [case_wrong_format, case_missing_labels, case_count_mismatch, case_truncated, case_empty_file,
       case_non_finite_images, case_labels_out_of_range, case_malicious_images, case_malicious_dc,
       case_no_normalisation, case_experiment_out_of_range, case_preset_class_count]


@pytest.mark.parametrize("case", BAD, ids=[c.__name__[5:] for c in BAD])
def test_bad_input_is_refused_with_one_line(tmp_path, runner, case):
    fmt, src, extra, named, message = case(tmp_path)
    outdir = tmp_path / "out"
    outdir.mkdir()
    result = run(runner, fmt, src, "-o", outdir / "o.dla.h5", *extra)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ladd: error: {named}: "), result.output
    assert message in lines[0]
    assert list(outdir.iterdir()) == []
    assert not (tmp_path / "MARKER").exists()
    if case is case_no_normalisation:
        assert "--mean" in lines[0] and "--std" in lines[0]


def test_malicious_pickle_is_never_executed(tmp_path):
    """The fixture itself is live: plain ``torch.load(weights_only=False)`` would run it."""
    path = tmp_path / "evil.pt"
    torch.save(Payload(tmp_path / "MARKER"), path)
    torch.load(path, weights_only=False).close()
    assert (tmp_path / "MARKER").exists()


def test_existing_output_needs_force(tmp_path, runner):
    folder, pix = mtt_run(tmp_path)
    out = tmp_path / "out.dla.h5"
    out.write_bytes(b"keep me")
    result = run(runner, "mtt", folder, "-o", out, "--dataset", "imagenette")
    assert result.exit_code == 1 and "--force" in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ladd: error: {out}")
    assert out.read_bytes() == b"keep me"
    converted(runner, "mtt", folder, out, "--dataset", "imagenette", "--force")
    with open_dla(out) as f:
        assert_pixels(f.images(), pix)


def test_round_half_up_is_one_rule_for_numpy_and_torch():
    """pixels.round_half_up rounds ties up (spec 4.1) on numpy arrays and torch tensors alike, where
    numpy's and torch's own round() go to even."""
    import torch

    from ladd_format.pixels import round_half_up

    ties = [0.5, 1.5, 2.5, 254.5, -0.5, 3.49999, 3.50001]
    want = [1.0, 2.0, 3.0, 255.0, 0.0, 3.0, 4.0]
    assert round_half_up(np.array(ties)).tolist() == want
    assert round_half_up(torch.tensor(ties, dtype=torch.float64)).tolist() == want
    assert np.round(np.array(ties[:3])).tolist() == [0.0, 2.0, 2.0]      # what it replaces in export


@pytest.mark.parametrize("arrays,message", [
    ({"train_images": np.zeros((1, 3, 4, 4))}, "train_images must be (N, ...) with N >= 2 images, got shape (1, 3, 4, 4)"),
    ({"train_images": np.zeros((2, 3, 65, 64))}, "train_images hold 12,480 values per image; refitting ZCA takes a "
                                                 "12,480 x 12,480 covariance, at most 12,288 values per image"),
    ({"mean": np.zeros(48)}, "needs keys mean + inverse, or train_images"),
    ({"inverse": np.zeros((48, 48))}, "needs keys mean + inverse, or train_images"),
])
def test_zca_statistics_files_are_refused_with_what_is_wrong(tmp_path, arrays, message):
    from ladd_format.converters.rawset import load_zca_stats
    from ladd_format.errors import InputError
    path = tmp_path / "zca.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError) as info:
        load_zca_stats(path)
    assert info.value.message == message and str(path) in str(info.value)


def test_zca_refit_and_inversion_by_hand(tmp_path):
    """Refitting from train_images is kornia's fit (unbiased covariance, SVD, sqrt(s + eps)); the
    inversion is x @ T_inv + mu per flattened image, and statistics of another size are refused."""
    from ladd_format.converters.rawset import invert_zca, load_zca_stats
    from ladd_format.errors import InputError
    train = np.random.default_rng(5).uniform(0, 1, size=(50, 3, 2, 2))
    np.savez(tmp_path / "t.npz", train_images=train)
    mu, inverse = load_zca_stats(tmp_path / "t.npz", eps=0.1)
    want_mu, forward, want_inverse = zca_fit(train, eps=0.1)
    assert np.allclose(mu, want_mu, rtol=0, atol=1e-12) and np.allclose(inverse, want_inverse, rtol=0, atol=1e-10)
    white = zca_white(train, want_mu, forward).detach().numpy().astype(np.float64)
    back = invert_zca(white, mu, inverse, tmp_path / "t.npz")
    assert back.shape == train.shape and np.allclose(back, train, atol=1e-5)
    with pytest.raises(InputError, match="ZCA statistics are for 12 values per image, the images have 48"):
        invert_zca(np.zeros((2, 3, 4, 4)), mu, inverse, tmp_path / "t.npz")


@pytest.mark.parametrize("scalar", [np.float64(0.5), np.float32(0.25), np.int64(3), np.int32(2)])
def test_dc_results_numpy_scalars_of_each_allowed_dtype_load(tmp_path, scalar):
    """DC results dicts hold numpy scalars: each of the four allow-listed dtypes loads with the
    allow-list, and is refused without it (weights_only)."""
    from ladd_format.converters.inputs import load_pt
    from ladd_format.errors import InputError
    src = tmp_path / "res.pt"
    torch.save({"accs_all_exps": {"ConvNet": [scalar]}}, src)
    got = load_pt(src, allow_numpy_scalars=True)["accs_all_exps"]["ConvNet"][0]
    assert got == scalar and got.dtype == scalar.dtype
    with pytest.raises(InputError, match="refused"):
        load_pt(src)


def test_normalisation_values_compare_flattened_within_1e_6_absolute():
    """--mean/--std against an input's own: any shape of the same values is the same, within 1e-6 absolute."""
    from ladd_format.converters.rawset import _same
    assert _same(np.full((1, 3, 1, 1), 0.5), [0.5, 0.5, 0.5])
    assert _same([0.5, 0.5, 0.5], np.full((3, 1, 1), 0.5))
    assert _same([0.5], [0.5000009])                  # inside 1e-6
    assert not _same([0.5], [0.500003])               # outside 1e-6 (a relative tolerance would let it in)
    assert not _same([0.5, 0.5], [0.5, 0.5, 0.5])


def test_zca_statistics_which_keys_decide(tmp_path):
    """mean + inverse win over train_images; train_images alone (or beside only one of them) is refitted,
    after its bounds are checked; train_images may be (N, D) already flat; a (1, D) mean is read as (D,)."""
    from ladd_format.converters.rawset import invert_zca, load_zca_stats
    from ladd_format.errors import InputError
    one = np.zeros((1, 3, 2, 2))
    for partial in ({"mean": np.zeros(12)}, {"inverse": np.eye(12)}):
        np.savez(tmp_path / "p.npz", train_images=one, **partial)
        with pytest.raises(InputError) as e:
            load_zca_stats(tmp_path / "p.npz")
        assert str(e.value) == f"{tmp_path / 'p.npz'}: train_images must be (N, ...) with N >= 2 images, got shape " \
                               "(1, 3, 2, 2)"
    np.savez(tmp_path / "both.npz", train_images=one, mean=np.full((1, 12), 0.5), inverse=2 * np.eye(12))
    mu, inverse = load_zca_stats(tmp_path / "both.npz")
    assert mu.shape == (12,) and np.all(mu == 0.5) and np.array_equal(inverse, 2 * np.eye(12))
    back = invert_zca(np.ones((2, 3, 2, 2)), mu, inverse, tmp_path / "both.npz")
    assert np.all(back == 2.5)
    flat = np.random.default_rng(0).uniform(0, 1, size=(20, 12))
    np.savez(tmp_path / "flat.npz", train_images=flat)
    mu, inverse = load_zca_stats(tmp_path / "flat.npz")
    assert np.allclose(mu, flat.mean(axis=0), rtol=0, atol=1e-12) and inverse.shape == (12, 12)


def test_zca_statistics_of_the_wrong_size_are_refused_whichever_part_is_wrong(tmp_path):
    from ladd_format.converters.rawset import invert_zca
    from ladd_format.errors import InputError
    images, stats = np.zeros((2, 3, 2, 2)), tmp_path / "s.npz"
    for mean, inverse in ((np.zeros(12), np.eye(11)), (np.zeros(11), np.eye(12))):
        with pytest.raises(InputError) as e:
            invert_zca(images, mean, inverse, stats)
        assert str(e.value) == f"{stats}: ZCA statistics are for {mean.shape[0]} values per image, the images have 12"


def test_zca_refit_size_limit_is_inclusive_and_unreadable_values_are_named(tmp_path, monkeypatch):
    from ladd_format.converters import rawset as common
    from ladd_format.errors import InputError
    monkeypatch.setattr(common, "MAX_ZCA_VALUES", 12)                # the limit, scaled down to a 12 x 12 fit
    np.savez(tmp_path / "at.npz", train_images=np.random.default_rng(0).uniform(size=(5, 3, 2, 2)))
    assert common.load_zca_stats(tmp_path / "at.npz")[1].shape == (12, 12)
    np.savez(tmp_path / "over.npz", train_images=np.zeros((5, 13)))
    with pytest.raises(InputError, match="train_images hold 13 values per image"):
        common.load_zca_stats(tmp_path / "over.npz")
    np.savez(tmp_path / "text.npz", train_images=np.array([["abc"] * 3] * 2))
    with pytest.raises(InputError) as e:
        common.load_zca_stats(tmp_path / "text.npz")
    assert str(e.value).startswith(f"{tmp_path / 'text.npz'}: not a readable ZCA statistics .npz: could not "
                                   "convert string to float: ")          # numpy's own words follow


def test_weights_only_holds_even_when_the_environment_asks_torch_to_drop_it(tmp_path, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns off torch's default; load_pt asks for weights_only itself."""
    from fractions import Fraction

    from ladd_format.converters.inputs import load_pt
    from ladd_format.errors import InputError
    src = tmp_path / "images_best.pt"
    torch.save({"x": Fraction(1, 2)}, src)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(InputError, match="refused: the pickle asks for the global fractions.Fraction, which is not "
                                         "on the allow-list; nothing was executed"):
        load_pt(src)
