"""``ladd export``: ImageFolder / npz for other frameworks, with or without materialised sub-images."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ladd_cli.main import main
from ladd_format import open_dla, verify
from ladd_format.torch import subimages

from conftest import write_dla


def test_folder_export_is_an_imagefolder(tmp_path, runner):
    src = write_dla(tmp_path / "a.dla.h5", m=6, c=3, class_names=["cat", "dog", "sea lion"], soft_kind="probs")
    out = tmp_path / "out"
    result = runner.invoke(main, ["export", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "images").iterdir()) == ["0000_cat", "0001_dog", "0002_sea_lion"]
    with open_dla(src) as f:
        images, labels, dense, soft = f.images(), f.labels(), f.dense(), f.soft_labels()
    png = np.asarray(Image.open(out / "images" / "0002_sea_lion" / "000002.png"))
    assert np.array_equal(png.transpose(2, 0, 1), images[2]) and labels[2] == 2
    assert np.array_equal(np.load(out / "hard_labels.npy"), labels)
    assert np.array_equal(np.load(out / "dense_labels.npy"), dense)
    assert np.array_equal(np.load(out / "soft_labels.npy"), soft)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["dense"]["n"] == 3 and meta["soft_labels_kind"] == "probs" and len(meta["source"]["sha256"]) == 64
    from torchvision.datasets import ImageFolder
    folder = ImageFolder(out / "images")
    assert [folder.targets[i] for i in range(len(folder))] == sorted(labels.tolist())


def test_folder_export_with_subimages(tmp_path, runner):
    src = write_dla(tmp_path / "a.dla.h5", m=4, c=2, side=16, n=3)
    out = tmp_path / "out"
    assert runner.invoke(main, ["export", str(src), "-o", str(out), "--subimages"]).exit_code == 0
    with open_dla(src) as f:
        images, dense, boxes = f.images(), f.dense(), f.boxes
    expected = torch.floor(subimages(torch.from_numpy(images).float(), boxes) + 0.5).clamp(0, 255)  # spec 4.1: ties up
    expected = expected.to(torch.uint8).numpy()
    png = np.asarray(Image.open(out / "subimages" / "0001" / "000001_04.png")).transpose(2, 0, 1)
    assert np.array_equal(png, expected[1, 4])
    labels = np.load(out / "subimage_labels.npy")
    assert labels.shape == (4 * 9, 2) and np.array_equal(labels[1 * 9 + 4], dense[1, 4])
    assert len(list((out / "subimages").rglob("*.png"))) == 36


def test_npz_export_converts_back(tmp_path, runner):
    src = write_dla(tmp_path / "a.dla.h5", m=5, codec="float32", soft_kind="logits")
    npz = tmp_path / "a.npz"
    assert runner.invoke(main, ["export", str(src), "--format", "npz", "-o", str(npz)]).exit_code == 0
    back = tmp_path / "b.dla.h5"
    result = runner.invoke(main, ["convert", "npz", str(npz), "-o", str(back)])
    assert result.exit_code == 0, result.output
    assert verify(back) == []
    with open_dla(src) as a, open_dla(back) as b:
        assert np.array_equal(a.images(), b.images()) and np.array_equal(a.labels(), b.labels())
        assert np.array_equal(a.dense(), b.dense()) and np.array_equal(a.soft_labels(), b.soft_labels())
        assert np.allclose(a.mean, b.mean) and a.soft_kind == b.soft_kind == "logits"


def test_npz_export_with_subimages(tmp_path, runner):
    src = write_dla(tmp_path / "a.dla.h5", m=3, side=16, n=3)
    npz = tmp_path / "a.npz"
    assert runner.invoke(main, ["export", str(src), "--format", "npz", "-o", str(npz), "--subimages"]).exit_code == 0
    assert np.load(npz)["subimages"].shape == (3, 9, 3, 16, 16)


def test_export_refusals(tmp_path, runner):
    plain = write_dla(tmp_path / "d.dla.h5", codec=None)
    out = tmp_path / "out"
    result = runner.invoke(main, ["export", str(plain), "-o", str(out), "--subimages"])
    assert result.exit_code == 1 and "ladd augment" in result.output and not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(main, ["export", str(plain), "-o", str(out)])
    assert result.exit_code == 1 and "--force" in result.output and (out / "keep.txt").exists()
    assert runner.invoke(main, ["export", str(plain), "-o", str(out), "--force"]).exit_code == 0
    assert not (out / "keep.txt").exists() and (out / "hard_labels.npy").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("dtype,space", [("float32", "pixel01"), ("float16", "normalized"), ("float32", "zca")])
def test_npz_export_of_float_images_converts_back_losslessly(tmp_path, runner, dtype, space):
    """The exporter writes ``image_dtype``; ``convert npz`` keeps such images float (no --keep-float)."""
    from ladd_format import DLAWriter

    rng = np.random.default_rng(5)
    images = rng.uniform(0, 1, size=(4, 3, 8, 8)).astype(dtype)
    src = tmp_path / "f.dla.h5"
    with DLAWriter(src, num_classes=2, image_shape=(3, 8, 8), mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2),
                   image_dtype=dtype, space=space, converter="test") as w:
        w.append(images, np.array([0, 1, 0, 1]))
    npz = tmp_path / "f.npz"
    assert runner.invoke(main, ["export", str(src), "--format", "npz", "-o", str(npz)]).exit_code == 0
    back = tmp_path / "back.dla.h5"
    result = runner.invoke(main, ["convert", "npz", str(npz), "-o", str(back)])
    assert result.exit_code == 0, result.output
    assert "uint8 conversion" not in result.output and verify(back) == []
    with open_dla(src) as a, open_dla(back) as b:
        assert b.image_dtype == a.image_dtype and b.space == a.space == space
        assert np.array_equal(a.images(), b.images()) and np.array_equal(a.labels(), b.labels())
        assert np.array_equal(a.mean, b.mean) and np.array_equal(a.std, b.std)
