"""converters.rawset.finish, the one path every converter ends in: each refusal with its exact
message and the file it names, and what the conversion report records (module docstring of
converters/rawset.py). The RawSets are built by hand, as a converter would hand them over."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from ladd_format import DLAFile
from ladd_format.converters import ConvertOptions
from ladd_format.converters.rawset import RawSet, finish
from ladd_format.errors import InputError, ShapeError

SRC, LABELS = Path("in/images.pt"), Path("in/labels.pt")


@pytest.fixture(autouse=True)
def inputs(tmp_path, monkeypatch):
    """The input files the provenance hashes, at the relative paths the messages name."""
    monkeypatch.chdir(tmp_path)
    for path in (SRC, LABELS):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"input")


def raw(**kw) -> RawSet:
    rng = np.random.default_rng(0)
    base = dict(images=rng.random((4, 3, 8, 8)).astype(np.float32), space="pixel01",
                labels=np.array([0, 1, 0, 1]), inputs=[SRC], num_classes=2)
    base.update(kw)
    return RawSet(**base)


def refusal(tmp_path, rawset, options=None, kind=InputError) -> str:
    out = tmp_path / "out.dla.h5"
    with pytest.raises(kind) as e:
        finish(rawset, out, options or ConvertOptions(), "test")
    assert not out.exists()
    return str(e.value)


def report(tmp_path, rawset, options=None) -> dict:
    out = tmp_path / "ok.dla.h5"
    finish(rawset, out, options or ConvertOptions(), "test")
    with DLAFile(out) as f:
        return f.provenance["report"]


def test_image_and_label_shape_refusals_name_the_file_that_holds_them(tmp_path):
    assert refusal(tmp_path, raw(images=np.zeros((4, 8, 8), np.float32)), kind=ShapeError) == \
        "in/images.pt: images must be (M, K, H, W), got shape (4, 8, 8)"
    soft1d = raw(labels=None, soft=np.zeros(4, np.float32), soft_kind="probs", labels_input=LABELS)
    assert refusal(tmp_path, soft1d, kind=ShapeError) == "in/labels.pt: soft labels must be (4, C), got (4,)"
    soft_rows = raw(labels=None, soft=np.zeros((3, 2), np.float32), soft_kind="probs", labels_input=LABELS)
    assert refusal(tmp_path, soft_rows, kind=ShapeError) == "in/labels.pt: soft labels must be (4, C), got (3, 2)"
    soft_c = raw(soft=np.full((4, 3), 1 / 3, np.float32), soft_kind="probs", labels_input=LABELS)
    assert refusal(tmp_path, soft_c, kind=ShapeError) == \
        "in/labels.pt: soft labels must have shape (4, 2), got (4, 3)"


def test_zca_refusals(tmp_path):
    uint8 = raw(images=np.zeros((4, 3, 8, 8), np.uint8), space="pixel255")
    assert refusal(tmp_path, uint8, ConvertOptions(zca=True)) == \
        "in/images.pt: images are uint8 pixels, so --zca/--zca-stats do not apply"
    # ZCA-whitened images have no uint8 form without --zca-stats: kept as float (space zca), said in a note
    result = finish(raw(), tmp_path / "z.dla.h5", ConvertOptions(zca=True, mean=(0.0,) * 3, std=(1.0,) * 3), "test")
    assert "images stored as float32 in space zca (ZCA-whitened: no uint8 form without --zca-stats)" in result.notes
    with DLAFile(tmp_path / "z.dla.h5") as f:
        assert f.space == "zca" and f.image_dtype == np.float32
    assert refusal(tmp_path, raw(zca_hint="a sign"), ConvertOptions(mean=(0.0,) * 3, std=(1.0,) * 3)) == (
        "in/images.pt: the images may be ZCA-whitened (a sign): say which with --zca (whitened; kept as float in "
        "space zca, or --zca-stats to invert) or --no-zca (normalised pixels)")
    assert refusal(tmp_path, raw(space="zca", zca_evidence="the folder name X_ZCA"),
                   ConvertOptions(zca=False, mean=(0.0,) * 3, std=(1.0,) * 3)) == (
        "in/images.pt: --no-zca contradicts the folder name X_ZCA, which says the images are ZCA-whitened: leave "
        "--no-zca out")
    assert refusal(tmp_path, raw(space_from="metadata.json (images_space normalized)"),
                   ConvertOptions(zca=True, mean=(0.0,) * 3, std=(1.0,) * 3)) == (
        "in/images.pt: --zca contradicts metadata.json (images_space normalized): leave --zca out")
    assert refusal(tmp_path, raw(space="weird"), ConvertOptions(mean=(0.0,) * 3, std=(1.0,) * 3)) == (
        "in/images.pt: float images in space weird have no uint8 form: give their space (pixel01, normalized, "
        "zca) or --keep-float")


def test_the_report_says_how_images_were_kept_and_which_preset_applied(tmp_path):
    r = report(tmp_path, raw(), ConvertOptions(keep_float=True, mean=(0.0,) * 3, std=(1.0,) * 3))
    assert r["images"] == "kept as float32 (space pixel01, --keep-float)"
    assert r["normalization"] == "from the command line"
    (tmp_path / "ok.dla.h5").unlink()
    labels10 = np.arange(4)
    r = report(tmp_path, raw(stored_dtype="float16", labels=labels10, num_classes=10), ConvertOptions(dataset="cifar10"))
    assert r["images"] == "kept as float16 (space pixel01, the input's image_dtype float16)"
    assert r["preset"] == "cifar10"


def test_zca_statistics_make_pixels_and_the_report_says_so(tmp_path):
    rng = np.random.default_rng(1)
    d = 3 * 8 * 8
    stats = tmp_path / "zca.npz"
    np.savez(stats, mean=np.zeros(d), inverse=np.eye(d))
    pixels = rng.random((4, 3, 8, 8)).astype(np.float32)
    r = report(tmp_path, raw(images=pixels, space="zca"), ConvertOptions(zca=True, zca_stats=str(stats)))
    assert r["normalization"] == "none (ZCA pipeline: no mean/std step)"
    assert r["zca"] == "inverted with the given statistics; pixels are on the 0..1 scale"
    with DLAFile(tmp_path / "ok.dla.h5") as f:
        assert f.image_dtype == np.uint8
        assert np.array_equal(f.images(), np.floor(pixels.astype(np.float64) * 255 + 0.5).astype(np.uint8))


def test_the_recorded_codec_is_used_and_reported_unless_one_is_given(tmp_path):
    dense = np.full((4, 4, 2), 0.5, np.float32)
    rawset = raw(dense=dense, dense_n=2, dense_ratio=0.625, codec="float16")
    r = report(tmp_path, rawset)
    assert r["codec"] == "as the input records it (ladd_metadata)"
    with DLAFile(tmp_path / "ok.dla.h5") as f:
        assert f.codec.text() == "float16"
    (tmp_path / "ok.dla.h5").unlink()
    r = report(tmp_path, rawset, ConvertOptions(codec="uint8"))
    assert "codec" not in r
    with DLAFile(tmp_path / "ok.dla.h5") as f:
        assert f.codec.text() == "uint8"


def test_preencoded_rows_are_checked_batch_by_batch_and_named_by_batch(tmp_path):
    from ladd_format.codecs import make_codec
    from ladd_format.converters.writing import BATCH, preencoded
    codec = make_codec("float32")
    m = BATCH + 44
    dense = np.full((m, 1, 2), 0.5, np.float32)

    def message(stored):
        with pytest.raises((InputError, ShapeError)) as e:
            preencoded(codec, stored, dense, 2, SRC)
        return str(e.value)

    good = dense.copy()
    assert preencoded(codec, {"probs": good}, dense, 2, SRC).stored["probs"] is good
    near = good.copy()
    near[5, 0] = [0.5 + 5e-7, 0.5 - 5e-7]                         # inside 1e-6: accepted
    preencoded(codec, {"probs": near}, dense, 2, SRC)
    for row, start in ((0, 0), (BATCH - 1, 0), (BATCH + 40, BATCH)):
        bad = good.copy()
        bad[row, 0] = [0.5 + 5e-6, 0.5 - 5e-6]                     # outside 1e-6 absolute (not relative)
        assert message({"probs": bad}) == (
            f"in/images.pt: dense_stored_* do not decode to dense_labels (images from {start}); remove the "
            "dense_stored_* keys to encode dense_labels afresh")
    assert message({"probs": good, "extra": good}) == \
        "in/images.pt: keys dense_stored_extra, dense_stored_probs are not codec float32's datasets (probs)"
    topk = make_codec("topk", k=1)
    with pytest.raises(InputError) as e:
        preencoded(topk, {"probs": good}, dense, 2, SRC)
    assert str(e.value) == f"in/images.pt: keys dense_stored_probs are not codec {topk.text()}'s datasets " \
                           "(topk_index, topk_prob)"
    assert message({"probs": good[:-1]}) == \
        f"in/images.pt: key dense_stored_probs must be ({m}, 1, 2) float32, got ({m - 1}, 1, 2) float32"
    assert message({"probs": good.astype(np.float64)}) == \
        f"in/images.pt: key dense_stored_probs must be ({m}, 1, 2) float32, got ({m}, 1, 2) float64"


def test_preencoded_hands_out_the_stored_rows_in_order():
    from ladd_format.codecs import make_codec
    from ladd_format.converters.writing import Preencoded
    rows = np.arange(10, dtype=np.float32).reshape(5, 1, 2)
    wrapped = Preencoded(make_codec("float32"), {"probs": rows})
    assert wrapped.name == "float32"                                  # everything else is the codec's
    assert np.array_equal(wrapped.encode(np.zeros((2, 1, 2)))["probs"], rows[:2])
    assert np.array_equal(wrapped.encode(np.zeros((3, 1, 2)))["probs"], rows[2:5])
    assert wrapped.cursor == 5


def test_a_bad_label_is_blamed_on_the_input_file_and_key_that_hold_it(tmp_path):
    """The writer finds the defect; finish re-points it at the input: the npz key when the converter
    names keys, else the labels file and the spec path."""
    labels = np.array([0, 1, 0, 2])
    options = ConvertOptions(mean=(0.0,) * 3, std=(1.0,) * 3)
    assert refusal(tmp_path, raw(labels=labels, input_keys={"/labels": "labels"}), options) == \
        "in/images.pt: key labels: labels must lie in [0, 2), found 0..2"
    assert refusal(tmp_path, raw(labels=labels, labels_input=LABELS), options) == \
        "in/labels.pt: /labels: labels must lie in [0, 2), found 0..2"


def test_class_count_and_normalisation_decisions_word_for_word(tmp_path):
    options = ConvertOptions(mean=(0.0,) * 3, std=(1.0,) * 3, num_classes=3)
    assert refusal(tmp_path, raw(), options) == "in/images.pt: --num-classes 3 disagrees with the input: 2 classes"
    one_class = raw(labels=np.zeros(4, np.int64), num_classes=1)
    assert report(tmp_path, one_class, ConvertOptions(mean=(0.0,) * 3, std=(1.0,) * 3))["normalization"] == \
        "from the command line"                                       # a single class is a valid D (spec: C >= 1)
    own = raw(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert refusal(tmp_path, own, ConvertOptions(mean=(0.4, 0.5, 0.5), std=(0.25, 0.25, 0.25))) == (
        "in/images.pt: --mean/--std disagree with the input's own normalisation (mean [0.5, 0.5, 0.5], std "
        "[0.25, 0.25, 0.25]); the images were normalised with one of them: leave --mean/--std out")
    (tmp_path / "ok.dla.h5").unlink()
    out = tmp_path / "ok.dla.h5"
    result = finish(raw(method="sre2l", default_mean=(0.485, 0.456, 0.406), default_std=(0.229, 0.224, 0.225)),
                    out, ConvertOptions(), "test")
    assert "normalisation: sre2l's ImageNet mean/std (give --dataset or --mean/--std otherwise)" in result.notes
    with DLAFile(out) as f:
        assert f.provenance["report"]["normalization"] == \
            "sre2l's ImageNet mean/std (no --dataset or --mean/--std given)"


def test_as_array_takes_tensors_and_arrays_and_names_anything_else():
    import torch

    from ladd_format.converters.inputs import as_array
    a = np.arange(3)
    assert as_array(a, SRC, "images") is a
    t = torch.arange(3.0, requires_grad=True)
    assert np.array_equal(as_array(t, SRC, "images"), [0.0, 1.0, 2.0])
    with pytest.raises(InputError) as e:
        as_array([1, 2], SRC, "images")
    assert str(e.value) == "in/images.pt: images must be a tensor, found list"


def test_a_corrupt_torch_file_is_named_with_torchs_first_line(tmp_path):
    import torch

    from ladd_format.converters.inputs import load_pt
    whole = tmp_path / "whole.pt"
    torch.save({"a": torch.zeros(100)}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InputError) as e:
        load_pt(cut)
    assert str(e.value).startswith(f"{cut}: not a readable torch file (truncated or corrupt?): PytorchStreamReader "
                                   "failed reading zip archive")
    assert "\n" not in str(e.value)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(InputError) as e:
        load_pt(empty)
    assert str(e.value) == f"{empty}: not a readable torch file (truncated or corrupt?): empty file"


MS = dict(mean=(0.0,) * 3, std=(1.0,) * 3)


def test_every_input_refusal_of_finish_word_for_word(tmp_path):
    rng = np.random.default_rng(0)
    nan_images = rng.random((4, 3, 8, 8)).astype(np.float32)
    nan_images[1, 0, 0, :2] = np.nan
    cases = [
        (raw(images=np.zeros((4, 3, 8, 8), np.int32)), ConvertOptions(**MS),
         "in/images.pt: images must be uint8 or floating point, got int32"),
        (raw(images=nan_images), ConvertOptions(**MS),
         "in/images.pt: images contain 2 NaN or infinite value(s); they are neither pixels nor storable floats"),
        (raw(labels=None), ConvertOptions(**MS), "in/images.pt: no labels found"),
        (raw(labels=np.arange(3), labels_input=LABELS), ConvertOptions(**MS), "in/labels.pt: 4 images but 3 labels"),
        (raw(), ConvertOptions(mean=(0.0, 0.0), std=(1.0,) * 3),
         "in/images.pt: mean and std must have 3 values (one per channel), got 2 and 3"),
        (raw(dense=np.full((4, 9, 2), 0.5, np.float32), dense_n=2, dense_ratio=0.5), ConvertOptions(**MS),
         "in/images.pt: dense_labels must have shape (4, 4, 2) for n = 2 and 2 classes, got (4, 9, 2)"),
        (raw(class_names=["a", "b", "c"]), ConvertOptions(**MS), "in/images.pt: 3 class names (the input) for 2 classes"),
        (raw(), ConvertOptions(class_names=["a"], **MS), "in/images.pt: 1 class names (--class-names) for 2 classes"),
        (raw(dataset="cifar10", dataset_from="the folder name CIFAR10"), ConvertOptions(**MS),
         "in/images.pt: preset cifar10 (named by the folder name CIFAR10) has 10 classes, the files 2"),
        (raw(num_classes=None), ConvertOptions(dataset="cifar10", num_classes=12, **MS),
         "in/images.pt: preset cifar10 has 10 classes, the files 12"),
        (raw(num_classes=None, labels=np.array([0, 1, 0, 1 << 24])), ConvertOptions(**MS),
         f"in/images.pt: {(1 << 24) + 1} classes (max(labels) + 1) lie outside the spec's 1..{1 << 24} (spec 2.4)"),
        (raw(dataset="cifar100", dataset_from="the folder name"), ConvertOptions(dataset="cifar10", **MS),
         "in/images.pt: --dataset cifar10 conflicts with the folder name, which names cifar100"),
        (raw(source_dataset="Tiny"), ConvertOptions(dataset="cifar10", **MS),
         "in/images.pt: --dataset cifar10 conflicts with the input's recorded source_dataset 'Tiny'"),
    ]
    for rawset, options, message in cases:
        assert refusal(tmp_path, rawset, options, kind=(InputError, ShapeError)) == message


def test_what_finish_decides_is_said_in_the_notes_and_the_report(tmp_path):
    out = tmp_path / "n.dla.h5"
    soft = np.full((4, 10), 0.05, np.float32)
    soft[[0, 1, 2, 3], [0, 1, 0, 1]] = 0.55
    rawset = raw(labels=None, soft=soft, soft_kind="probs", num_classes=None, zca_hint="values below 0",
                 dataset="imagenette", dataset_from="the folder name", labels_input=LABELS)
    result = finish(rawset, out, ConvertOptions(zca=False), "test")
    assert "hard labels are the argmax of the probs" in result.notes
    assert ("dataset imagenette from the folder name: its preset's classes and normalisation apply (--dataset "
            "imagenette says the same; another --dataset is refused)") in result.notes
    with DLAFile(out) as f:
        r = f.provenance["report"]
        assert f.labels().tolist() == [0, 1, 0, 1]
        assert f.num_classes == 10 and "ipc" not in f.h5.attrs         # 4 images do not divide into 10 classes
        assert f.h5.attrs["imagenet_class_ids"].tolist()[:3] == [0, 217, 482]
    assert r["hard_labels"] == "argmax of the probs"
    assert r["zca"] == "not ZCA-whitened (--no-zca; sign: values below 0)"
    assert r["dataset"] == "imagenette, named by the folder name"
    assert r["preset"] == "imagenette"
    assert r["normalization"].startswith("preset imagenette as ")


def test_class_count_from_the_labels_and_ipc_from_the_count(tmp_path):
    out = tmp_path / "c.dla.h5"
    result = finish(raw(num_classes=None, labels=np.array([0, 1, 0, 1])), out, ConvertOptions(**MS), "test")
    assert "num_classes not given (--num-classes or --dataset): taken from max(labels) + 1 = 2" in result.notes
    with DLAFile(out) as f:
        assert f.num_classes == 2 and f.ipc == 2
        assert f.provenance["report"]["num_classes"] == "max(labels) + 1"


def test_statistics_from_the_images_when_nothing_gives_them(tmp_path):
    out = tmp_path / "s.dla.h5"
    rawset = raw()
    result = finish(rawset, out, ConvertOptions(), "test")
    assert ("mean/std not given (--dataset or --mean/--std): computed from the images themselves on the 0..1 "
            "scale") in result.notes
    with DLAFile(out) as f:
        assert f.provenance["report"]["normalization"] == "computed from the images (0..1 scale)"
        x = rawset.images.astype(np.float64)
        assert np.allclose(f.mean, x.mean(axis=(0, 2, 3)), atol=1e-12)


def test_an_input_whose_own_statistics_differ_from_its_preset_keeps_its_own(tmp_path):
    out = tmp_path / "p.dla.h5"
    own = raw(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), num_classes=10, labels=np.arange(4))
    result = finish(own, out, ConvertOptions(dataset="cifar10"), "test")
    assert ("the input records its own mean/std, which differ from preset cifar10's: the input's are kept"
            in result.notes)
    with DLAFile(out) as f:
        assert f.mean.tolist() == [0.5, 0.5, 0.5] and f.provenance["report"]["normalization"] == "from the input"


def test_the_refusals_and_report_lines_of_a_set_without_its_own_class_count(tmp_path):
    empty = raw(images=np.zeros((0, 3, 8, 8), np.float32), labels=np.zeros(0, np.int64), num_classes=None)
    assert refusal(tmp_path, empty) == \
        "in/images.pt: 0 classes (max(labels) + 1) lie outside the spec's 1..16777216 (spec 2.4)"
    soft = raw(num_classes=None, labels=None, soft=np.full((4, 3), 1 / 3), soft_kind="probs", labels_input=LABELS)
    assert refusal(tmp_path, soft, ConvertOptions(num_classes=5)) == \
        "in/images.pt: --num-classes 5 disagrees with the width of the soft labels: 3 classes"
    assert report(tmp_path, raw(num_classes=10), ConvertOptions(dataset="cifar10"))["normalization"] == \
        "preset cifar10 as the method used it"


@pytest.mark.parametrize("soft, kind, message", [
    (np.full((4, 2), 0.3), "probs", "probability rows must sum to 1, worst is off by 0.4"),
    (np.full((4, 2), 1e39), "logits", "logits contain NaN or infinite values"),   # finite in float64 only
])
def test_soft_labels_the_writer_refuses_are_blamed_on_the_labels_file(tmp_path, soft, kind, message):
    from ladd_format.errors import ProbabilityError
    rawset = raw(soft=soft, soft_kind=kind, labels_input=LABELS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # the one line only: no numpy overflow warning before it
        assert refusal(tmp_path, rawset, kind=ProbabilityError) == f"in/labels.pt: /soft_labels: {message}"


def test_zca_statistics_of_another_size_name_their_file(tmp_path):
    stats = tmp_path / "zca.npz"
    np.savez(stats, mean=np.zeros(12), inverse=np.eye(12))
    rawset = raw(space="zca", images=np.zeros((4, 3, 8, 8), np.float32))
    assert refusal(tmp_path, rawset, ConvertOptions(zca=True, zca_stats=str(stats))) == \
        f"{stats}: ZCA statistics are for 12 values per image, the images have 192"


@pytest.mark.parametrize("exc, detail", [
    (__import__("pickle").UnpicklingError("Weights only load failed.\n  Unsupported global: GLOBAL os.system was "
                                          "not an allowed global\nCheck the documentation"),
     "refused: the pickle asks for the global os.system, which is not on the allow-list; nothing was executed"),
    (__import__("pickle").UnpicklingError("Weights only load failed.\nsecond line"),
     "refused: the pickle asks for code or objects outside the allow-list; nothing was executed"),
    (RuntimeError("y" * 300 + "\nsecond line"), "not a readable torch file (truncated or corrupt?): " + "y" * 160),
    (RuntimeError(""), "not a readable torch file (truncated or corrupt?): RuntimeError"),
])
def test_a_torch_file_that_fails_to_load_is_one_line_naming_why(tmp_path, monkeypatch, exc, detail):
    import torch

    from ladd_format.converters.inputs import load_pt
    path = tmp_path / "x.pt"
    torch.save(torch.zeros(2), path)

    def failing(*args, **kwargs):
        raise exc
    monkeypatch.setattr(torch, "load", failing)
    with pytest.raises(InputError) as e:
        load_pt(path)
    assert str(e.value) == f"{path}: {detail}"
