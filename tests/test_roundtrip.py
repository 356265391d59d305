"""Round trips keep their meaning: ``ladd export`` then ``ladd convert auto`` with no flags gives a
file with the same content (the content digest: the canonical form without ``/provenance``).

The metadata each export writes (``metadata.json`` of the ddranking and folder exports, the npz's
``ladd_metadata``) carries the dataset, method, IPC, learned lr, classes, normalisation, image space
and dtype, label kinds and order, so nothing has to be typed again. A flag that contradicts it is
refused in one line. Also: ``--codec`` for an npz without dense labels is refused (an unread flag).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ladd_format import DenseSpec, DLAWriter, open_dla
from ladd_format.codecs import parse_codec
from ladd_format.integrity import content_digest

from conftest import cli, ok, one_line, softmax

NAMES = ["cat", "dog", "owl"]
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def write(path: Path, labels, *, dtype="uint8", space=None, soft_kind=None, soft_dtype="float32", codec=None,
          channels=3, hard_from_soft=True, **attrs) -> Path:
    """A D_LA with 3 classes and 8x8 images, its optional parts as asked; ``attrs``: source_dataset,
    distillation, ipc, root_attrs."""
    labels = np.asarray(labels)
    m = len(labels)
    rng = np.random.default_rng(m)
    if dtype == "uint8":
        images = rng.integers(0, 256, size=(m, channels, 8, 8), dtype=np.uint8)
    else:
        images = rng.normal(size=(m, channels, 8, 8)).astype(dtype)
    soft = None
    if soft_kind is not None:
        logits = rng.normal(size=(m, 3)) * 3
        logits[np.arange(m), labels] += 10 if hard_from_soft else 0       # argmax = the hard label (or not)
        soft = (softmax(logits) if soft_kind == "probs" else logits).astype(np.float32)
    dense = None
    if codec is not None:
        dense = DenseSpec(n=2, ratio=0.75, codec=parse_codec(codec), temperature=2.0,
                          labeler={"arch": "convnet-d3", "epoch": 4})
    with DLAWriter(path, num_classes=3, image_shape=(channels, 8, 8), mean=MEAN[:channels], std=STD[:channels],
                   image_dtype=dtype, space=space, soft_kind=soft_kind, soft_dtype=soft_dtype, dense=dense,
                   class_names=NAMES, converter="test", **attrs) as w:
        w.append(images, labels, soft=soft,
                 dense=softmax(rng.normal(size=(m, 4, 3)) * 2).astype(np.float32) if dense else None)
    return path


def round_trip(runner, tmp_path: Path, src: Path, fmt: str, *flags, pointed: str = "") -> Path:
    exported = tmp_path / ("exported.npz" if fmt == "npz" else "exported")
    ok(runner, "export", src, "--format", fmt, "-o", exported)
    back = tmp_path / "back.dla.h5"
    ok(runner, "convert", "auto", exported / pointed if pointed else exported, "-o", back, *flags)
    return back


# -- ddranking ----------------------------------------------------------------------------------------
DDRANKING_CASES = {
    # uint8 pixels, hard labels not class-major (exported reordered, source_index undoes it), DC's method
    "dc-hard-unordered": dict(labels=[2, 0, 1, 1, 0, 2], distillation="dc", source_dataset="mydata", ipc=2),
    # normalised float32, logits, a learned lr, no ipc attribute
    "datm-logits": dict(labels=[0, 1, 2, 0, 1, 2], dtype="float32", space="normalized", soft_kind="logits",
                        distillation="datm", root_attrs={"learned_lr": 0.0123}),
    # float16 images and float16 probabilities whose argmax is not the hard label
    "float16-probs": dict(labels=[0, 0, 1, 2, 2, 1], dtype="float16", space="normalized", soft_kind="probs",
                          soft_dtype="float16", hard_from_soft=False, distillation="tesla"),
    # ZCA floats
    "zca": dict(labels=[0, 1, 2, 2, 1, 0], dtype="float32", space="zca", soft_kind="logits", distillation="datm"),
}


@pytest.mark.parametrize("case", sorted(DDRANKING_CASES))
def test_a_ddranking_export_converts_back_to_the_same_content(tmp_path, runner, case):
    kwargs = dict(DDRANKING_CASES[case])
    src = write(tmp_path / "src.dla.h5", kwargs.pop("labels"), **kwargs)
    back = round_trip(runner, tmp_path, src, "ddranking")
    assert content_digest(back) == content_digest(src)
    with open_dla(back) as f, open_dla(src) as s:
        assert f.attrs.get("distillation") == s.attrs.get("distillation")      # dc is dc, not tensors


def test_a_ddranking_export_of_dc_is_read_by_tensors_and_keeps_dc(tmp_path, runner):
    src = write(tmp_path / "src.dla.h5", [0, 1, 2], distillation="dc")
    exported = tmp_path / "dd"
    ok(runner, "export", src, "--format", "ddranking", "-o", exported)
    result = ok(runner, "convert", "auto", exported, "-o", tmp_path / "back.dla.h5")
    assert "auto: detected tensors (ladd export --format ddranking folder, metadata.json records distillation dc)" \
        in result.output
    assert "distillation not recorded" not in result.output
    with open_dla(tmp_path / "back.dla.h5") as f:
        assert f.attrs["distillation"] == "dc" and f.provenance["report"]["export_metadata"].startswith("metadata.json")


# -- folder -------------------------------------------------------------------------------------------
FOLDER_CASES = {
    "plain": dict(labels=[0, 2, 2, 0, 0, 2], source_dataset="mydata", distillation="sre2l"),   # class 1 has no image
    "soft-float16": dict(labels=[1, 0, 2, 1], soft_kind="probs", soft_dtype="float16", hard_from_soft=False),
    "dense-float32": dict(labels=[0, 1, 2, 0], codec="float32", distillation="mtt", ipc=1),
    "dense-float16": dict(labels=[2, 1, 0, 1], codec="float16"),
    "grey": dict(labels=[0, 1, 2], channels=1),
}


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
@pytest.mark.parametrize("pointed", ["", "images"])
def test_a_folder_export_converts_back_from_its_root_or_its_images(tmp_path, runner, case, pointed):
    kwargs = dict(FOLDER_CASES[case])
    src = write(tmp_path / "src.dla.h5", kwargs.pop("labels"), **kwargs)
    back = round_trip(runner, tmp_path, src, "folder", pointed=pointed)
    assert content_digest(back) == content_digest(src)


def test_a_folder_export_whose_files_disagree_is_refused_in_one_line(tmp_path, runner):
    src = write(tmp_path / "src.dla.h5", [0, 1, 2])
    exported = tmp_path / "exported"
    ok(runner, "export", src, "--format", "folder", "-o", exported)
    np.save(exported / "hard_labels.npy", np.array([0, 2, 2]))
    line = one_line(cli(runner, "convert", "auto", exported, "-o", tmp_path / "x.dla.h5"))
    assert "000001.png" in line and "hard_labels.npy gives image 1 class 2" in line
    assert not (tmp_path / "x.dla.h5").exists()


# -- npz ----------------------------------------------------------------------------------------------
def test_an_npz_export_converts_back_to_the_same_content(tmp_path, runner):
    src = write(tmp_path / "src.dla.h5", [0, 1, 2, 2], codec="topk:k=2,values=uint8", soft_kind="logits",
                distillation="dc", source_dataset="cifar10", ipc=1)
    assert content_digest(round_trip(runner, tmp_path, src, "npz")) == content_digest(src)


# -- flags against the metadata -----------------------------------------------------------------------------
@pytest.mark.parametrize("flags,message", [
    (["--dataset", "cifar100"], "--dataset cifar100 conflicts with the input's recorded source_dataset 'cifar10'"),
    (["--mean", "0.1,0.1,0.1", "--std", "0.2,0.2,0.2"], "--mean/--std disagree with the input's own normalisation"),
    (["--num-classes", "4"], "--num-classes 4 disagrees with the input: 3 classes"),
    (["--zca"], "--zca contradicts metadata.json (images_space normalized)"),
])
def test_a_flag_that_contradicts_the_export_metadata_is_refused(tmp_path, runner, flags, message):
    src = write(tmp_path / "src.dla.h5", [0, 1, 2], source_dataset="cifar10", distillation="dc")
    exported = tmp_path / "dd"
    ok(runner, "export", src, "--format", "ddranking", "-o", exported)
    out = tmp_path / "x.dla.h5"
    line = one_line(cli(runner, "convert", "auto", exported, "-o", out, *flags))
    assert message in line and not out.exists()


def test_a_damaged_export_metadata_is_one_line(tmp_path, runner):
    src = write(tmp_path / "src.dla.h5", [0, 1, 2])
    exported = tmp_path / "dd"
    ok(runner, "export", src, "--format", "ddranking", "-o", exported)
    meta = json.loads((exported / "metadata.json").read_text())
    meta["source_index"] = [0, 0, 1]
    (exported / "metadata.json").write_text(json.dumps(meta))
    line = one_line(cli(runner, "convert", "auto", exported, "-o", tmp_path / "x.dla.h5"))
    assert "metadata.json: source_index must be a permutation of the rows (ladd export's metadata)" in line


# -- --codec that nothing would read ------------------------------------------------------------------------
def test_codec_for_an_npz_without_dense_labels_is_refused(tmp_path, runner):
    src = tmp_path / "plain.npz"
    np.savez(src, images=np.zeros((4, 3, 8, 8), np.uint8), labels=np.arange(4) % 2)
    out = tmp_path / "x.dla.h5"
    line = one_line(cli(runner, "convert", "npz", src, "-o", out, "--codec", "uint8"))
    assert line == (f"ladd: error: {src}: the input holds no dense labels (key dense_labels), so --codec uint8 does "
                    "not apply: leave it out")
    assert not out.exists()


def test_export_metadata_that_is_not_json_is_refused_not_passed_over(tmp_path, runner):
    src = write(tmp_path / "src.dla.h5", [0, 1, 2], dtype="float32", space="normalized", soft_kind="logits",
                root_attrs={"learned_lr": 0.01})
    exported = tmp_path / "dd"
    ok(runner, "export", src, "--format", "ddranking", "-o", exported)
    (exported / "metadata.json").write_text("{not json")
    out = tmp_path / "x.dla.h5"
    line = one_line(cli(runner, "convert", "datm", exported, "-o", out))
    assert f"{exported / 'metadata.json'}: not valid JSON" in line and not out.exists()
