"""ZCA-whitened images: what the input says decides, a mere sign asks, and a ZCA file is labeled.

- A folder or file name with a ``zca`` token (DD-Ranking's ``methods/DATM/distilled/CIFAR10_ZCA/``)
  or an export's ``metadata.json`` (``"images_space": "zca"``) decides: the dataset is recognised
  (``CIFAR10_ZCA`` -> cifar10) and the images are stored as ZCA-space floats, with no flag.
- A sign that is not a record (DATM's CIFAR configurations, an ``images_zca_*.pt`` sibling) is
  refused without ``--zca`` or ``--no-zca``, in one line naming the file, the evidence and both.
- ``augment`` labels a ZCA file through the inverse transform (``--zca-stats``): labelers are
  trained on pixels. Without it, one line says which option and which file it takes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import cli, ok, one_line
from ladd_format import DLAWriter, open_dla, verify
from ladd_format.integrity import content_digest
from ladd_format.presets import CIFAR10_NAMES

from test_ddranking import published

ZCA_FOLDER = "CIFAR10_ZCA"


@pytest.mark.parametrize("name,zca", [
    ("CIFAR10_ZCA", True), ("cifar10-zca", True), ("ZCA", True), ("zca_run", True), ("images_best.pt", False),
    ("CIFAR10", False), ("no_zca", False), ("CIFAR10_without_ZCA", False), ("pizza", False), ("zcabin", False),
])
def test_which_names_say_zca(name, zca):
    from ladd_format.converters.ddranking import says_zca
    assert says_zca(name) is zca


@pytest.mark.parametrize("token,preset", [("CIFAR10_ZCA", "cifar10"), ("cifar100-zca", "cifar100"),
                                          ("CIFAR10", "cifar10"), ("ZCA", None)])
def test_a_zca_token_does_not_hide_the_dataset(token, preset):
    from ladd_format.converters.ddranking import dataset_named
    assert dataset_named(token) == preset


@pytest.mark.parametrize("fmt", ["auto", "datm"])
def test_ddranking_cifar10_zca_folder_is_recognised_and_stored_as_zca_floats(tmp_path, runner, fmt):
    folder = published(tmp_path, zca=True, dataset=ZCA_FOLDER)
    out = tmp_path / "z.dla.h5"
    result = ok(runner, "convert", fmt, folder, "-o", out)
    assert f"images are ZCA-whitened: the folder name {ZCA_FOLDER} says so" in result.output
    assert f"dataset cifar10 from DD-Ranking's folder {ZCA_FOLDER}/IPC10/" in result.output
    saved = torch.load(folder / "images.pt", weights_only=True).detach().numpy()
    with open_dla(out) as f:
        assert f.space == "zca" and f.image_dtype == np.float32 and np.array_equal(f.images(), saved)
        assert f.attrs["source_dataset"] == "cifar10" and f.class_names == list(CIFAR10_NAMES)
        assert f.attrs["distillation"] == "datm"
    assert verify(out) == []


def test_no_zca_against_a_zca_name_is_refused(tmp_path, runner):
    folder = published(tmp_path, zca=True, dataset=ZCA_FOLDER)
    out = tmp_path / "z.dla.h5"
    line = one_line(cli(runner, "convert", "auto", folder, "-o", out, "--no-zca"))
    assert f"--no-zca contradicts the folder name {ZCA_FOLDER}, which says the images are ZCA-whitened" in line
    assert not out.exists()


def test_a_sign_without_zca_or_no_zca_is_refused_naming_both(tmp_path, runner):
    """DD-Ranking's DATM CIFAR-10 folder without the ZCA token: DATM's CIFAR configurations use ZCA
    -- a sign, so the user must say (before: a note, and ZCA values stored as pixels)."""
    folder = published(tmp_path, zca=True)
    out = tmp_path / "z.dla.h5"
    line = one_line(cli(runner, "convert", "auto", folder, "-o", out))
    assert str(folder / "images.pt") in line and "DATM's CIFAR configurations use ZCA" in line
    assert "--zca" in line and "--no-zca" in line and not out.exists()
    ok(runner, "convert", "auto", folder, "-o", out, "--zca")
    with open_dla(out) as f:
        assert f.space == "zca"


def test_export_metadata_decides_the_space(tmp_path, runner):
    """export --format ddranking of a ZCA file, then convert auto with no flag: ZCA again, same
    content; a flag contradicting the metadata is refused."""
    folder = published(tmp_path, zca=True, dataset=ZCA_FOLDER)
    first = tmp_path / "z.dla.h5"
    ok(runner, "convert", "auto", folder, "-o", first)
    dd = tmp_path / "exported"
    ok(runner, "export", first, "--format", "ddranking", "-o", dd)
    assert json.loads((dd / "metadata.json").read_text())["images_space"] == "zca"
    back = tmp_path / "back.dla.h5"
    result = ok(runner, "convert", "auto", dd, "-o", back)
    assert "images are ZCA-whitened: metadata.json (images_space zca) says so" in result.output
    assert content_digest(back) == content_digest(first)
    line = one_line(cli(runner, "convert", "auto", dd, "-o", tmp_path / "x.dla.h5", "--no-zca"))
    assert "--no-zca contradicts metadata.json (images_space zca)" in line


def test_export_metadata_saying_normalized_silences_the_sign_and_refuses_zca(tmp_path, runner):
    folder = published(tmp_path)                         # DATM CIFAR-10, normalised
    first = tmp_path / "n.dla.h5"
    ok(runner, "convert", "datm", folder, "-o", first, "--no-zca", "--keep-float")
    dd = tmp_path / "exported"
    ok(runner, "export", first, "--format", "ddranking", "-o", dd)
    back = tmp_path / "back.dla.h5"
    ok(runner, "convert", "auto", dd, "-o", back)         # no --no-zca needed: the metadata says
    assert content_digest(back) == content_digest(first)
    line = one_line(cli(runner, "convert", "auto", dd, "-o", tmp_path / "x.dla.h5", "--zca"))
    assert "--zca contradicts metadata.json (images_space normalized)" in line


# -- augment: a ZCA file is labeled through the inverse transform ----------------------------------------
SIDE = 8


@pytest.fixture(scope="module")
def zca_setup(tmp_path_factory):
    """A pixel-space labeler (digits at 8 px), the ZCA of its training images (kornia's, eps 0.1), and
    the same 20 images as a pixel file and as a ZCA-whitened file."""
    from ladd_format.labeler import TrainConfig, load_source, train_labeler

    from test_convert_runs import zca_fit

    root = tmp_path_factory.mktemp("zca-augment")
    digits = load_source("digits", image_size=SIDE)
    labeler = train_labeler(digits, root / "labeler", TrainConfig(arch="convnet-d3", arch_kwargs={"width": 8},
                                                                   epochs=1, save_epochs=(1,), batch_size=256))
    train = digits.images[:600].astype(np.float64) / 255
    mu, forward, inverse = zca_fit(train)
    stats = root / "zca.npz"
    np.savez(stats, mean=mu, inverse=inverse)
    images, labels = digits.images[:20], digits.labels[:20]
    white = ((images.reshape(20, -1) / 255 - mu) @ forward).reshape(images.shape).astype(np.float32)
    files = {}
    for name, stored, space, dtype in (("pixels", images, None, "uint8"), ("zca", white, "zca", "float32")):
        files[name] = root / f"{name}.dla.h5"
        with DLAWriter(files[name], num_classes=10, image_shape=(3, SIDE, SIDE), mean=(0.5,) * 3, std=(0.25,) * 3,
                       image_dtype=dtype, space=space, class_names=digits.class_names) as w:
            w.append(stored, labels)
    return labeler[-1]["path"], stats, files


def test_augment_refuses_a_zca_file_without_the_statistics_naming_the_option(tmp_path, runner, zca_setup):
    labeler, _, files = zca_setup
    out = tmp_path / "la.dla.h5"
    line = one_line(cli(runner, "augment", files["zca"], "--labeler", labeler, "-o", out, "-n", "2"))
    assert "images are ZCA-whitened and labelers take pixels" in line
    assert "--zca-stats FILE" in line and "ladd convert --zca-stats" in line and not out.exists()


def test_augment_labels_a_zca_file_through_the_inverse_as_it_labels_the_pixels(tmp_path, runner, zca_setup):
    labeler, stats, files = zca_setup
    ok(runner, "augment", files["pixels"], "--labeler", labeler, "-o", tmp_path / "p.dla.h5", "-n", "2")
    ok(runner, "augment", files["zca"], "--labeler", labeler, "-o", tmp_path / "z.dla.h5", "-n", "2",
       "--zca-stats", stats)
    assert verify(tmp_path / "z.dla.h5") == []
    with open_dla(tmp_path / "p.dla.h5") as p, open_dla(tmp_path / "z.dla.h5") as z, open_dla(files["zca"]) as src:
        assert z.space == "zca" and np.array_equal(z.images(), src.images())     # the file keeps its ZCA images
        pixel_probs = p.dense()
        assert np.ptp(pixel_probs) > 0.1                    # the labeler says something: the comparison means one
        # un-whitened in float32: the labeler sees the pixels within ~1e-5, its probabilities agree closely
        assert np.allclose(z.dense(), pixel_probs, rtol=0, atol=1e-3)


def test_augment_refuses_zca_stats_for_a_pixel_file(tmp_path, runner, zca_setup):
    labeler, stats, files = zca_setup
    line = one_line(cli(runner, "augment", files["pixels"], "--labeler", labeler, "-o", tmp_path / "x.dla.h5",
                        "--zca-stats", stats))
    assert "--zca-stats applies to ZCA-whitened images; these are pixel255" in line
