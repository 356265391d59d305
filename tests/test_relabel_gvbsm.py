"""G-VBSM and EDC relabel folders: SRe2L's six elements plus the image index of every slot (element 6,
int64 (B,)), and for EDC's ImageNet branches a patch order (element 7, int32 zeros (B, 2, 2)), written as
upstream writes them (tests/_upstream.py, numpy-1-era pickles included). The reader recognises the
layout and checks the index; ``ladd convert sre2l --relabel`` stores the files' own indices (no sampler
replay), checks that each epoch is a permutation of the images, refuses a patch-shuffled EDC folder;
every bad folder is one line with nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ladd_format import open_dla, verify
from ladd_format.errors import InputError
from ladd_format.relabel import read_relabel_folder, scan_relabel_folder, sre2l_association
from ladd_format.relabel.replay import sre2l_epoch_orders

from _upstream import NUMPY1_SCALAR, pickle_bytes, write_relabel_folder
from test_convert_relabel import CLASSES, CROP, experiment, refused, run, sample_rows, stream_batches, tiny_teacher


def one_line(exc: pytest.ExceptionInfo, *parts: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text, text
    for part in parts:
        assert part in text, text
    return text


def resave(path: Path, edit) -> None:
    """Load a batch file as upstream wrote it, ``edit`` the list, save it back."""
    from ladd_format.converters.inputs import load_pt

    saved = load_pt(path, allow_numpy_scalars=True, scalar_dtypes=("int64",))
    edit(saved)
    torch.save(saved, path)


def setitem(i, value):
    def edit(saved):
        saved[i] = value(saved) if callable(value) else value
    return edit


# -- the reader -------------------------------------------------------------------------------------
@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2", "numpy1"])
@pytest.mark.parametrize("mix", ["cutmix", "mixup", "none"])
def test_a_gvbsm_folder_reads_back_with_its_stored_indices(tmp_path, mix, numpy1):
    written = write_relabel_folder(tmp_path / "fkd", num_images=10, batch_size=4, epochs=3, classes=7, mix=mix,
                                   numpy1=numpy1, crop=16, layout="gvbsm")
    if mix == "cutmix":
        assert (NUMPY1_SCALAR in pickle_bytes(tmp_path / "fkd" / "epoch_1" / "batch_1.tar")) == numpy1
    folder, batches = read_relabel_folder(tmp_path / "fkd", crop_size=16)
    assert (folder.layout, folder.indexed, folder.epochs, folder.batch_size, folder.num_images) == \
        ("gvbsm", True, 3, 4, 10)
    assert folder.mix == mix and folder.stored_indices is None
    for got in batches:
        saved = written.batches[got.epoch, got.batch]
        assert len(saved) == 7 and saved[6].dtype == torch.int64
        assert got.indices.dtype == np.int64 and np.array_equal(got.indices, saved[6].numpy())
        assert np.array_equal(got.indices, written.orders[got.epoch][got.batch * 4:got.batch * 4 + 4])
        assert np.array_equal(got.coords, saved[0].numpy()) and np.array_equal(got.flip, saved[1].numpy())
    association = sre2l_association(folder, num_images=10, batch_size=4)
    assert np.array_equal(association, np.stack(written.orders))


def test_an_edc_folder_reads_back_and_its_boxes_are_edcs_pixels(tmp_path):
    """EDC divides top and height by W, left and width by H; non-square sources show the swap."""
    from ladd_format.relabel.convert import edc_fractions_to_pixels

    written = write_relabel_folder(tmp_path / "fkd", num_images=9, batch_size=4, epochs=2, classes=7, crop=16,
                                   layout="edc")
    assert any(h != w for h, w in written.sizes)
    folder, batches = read_relabel_folder(tmp_path / "fkd", crop_size=16)
    assert (folder.layout, folder.indexed, folder.num_images) == ("edc", True, 9)
    for got in batches:
        saved = written.batches[got.epoch, got.batch]
        assert len(saved) == 8 and saved[7].dtype == torch.int32 and saved[7].shape == (len(got.flip), 2, 2)
        assert np.array_equal(got.indices, saved[6].numpy())
        for s, image in enumerate(got.indices):
            box = edc_fractions_to_pixels(got.coords[s:s + 1], tuple(written.sizes[image]))
            assert box[0].tolist() == written.pixels[got.epoch, got.batch][s].tolist()


def test_an_edc_box_outside_its_image_is_refused():
    from ladd_format.relabel.convert import edc_fractions_to_pixels

    with pytest.raises(InputError) as exc:
        edc_fractions_to_pixels(np.array([[0.5, 0.0, 0.75, 0.6]], np.float32), (20, 10))   # width 0.6 x H = 12 > W
    one_line(exc, "slot 0", "EDC crop box", "outside its 20x10 image")


@pytest.fixture
def gvbsm(tmp_path) -> Path:
    write_relabel_folder(tmp_path / "fkd", num_images=10, batch_size=4, epochs=3, classes=7, crop=16, layout="gvbsm")
    return tmp_path / "fkd"


def read_refused(root: Path, *parts: str, **kwargs) -> str:
    with pytest.raises(InputError) as exc:
        read_relabel_folder(root, **kwargs)
    return one_line(exc, *parts)


@pytest.mark.parametrize("where", ["epoch_0/batch_0.tar", "epoch_1/batch_1.tar", "epoch_2/batch_2.tar"])
@pytest.mark.parametrize("value, parts", [
    (10, ["image index (element 6) of slot 1 is 10, outside 0..9", "the 10 images of the folder's batches"]),
    (-1, ["image index (element 6) of slot 1 is -1, outside"]),
])
def test_an_index_outside_the_images_is_refused(gvbsm, where, value, parts):
    def edit(saved):
        saved[6][1] = value
    resave(gvbsm / where, edit)
    read_refused(gvbsm, where, *parts)


@pytest.mark.parametrize("value, part", [
    (lambda s: s[6].to(torch.int32), "image index (element 6) must be int64, found int32"),
    (lambda s: s[6].double(), "image index (element 6) must be int64, found float64"),
    (lambda s: s[6].tolist(), "image index (element 6) must be a dense tensor, found list"),
    (lambda s: s[6][:-1], "image index (element 6) must be (4,) as flip is 4 long"),
])
def test_an_index_of_another_type_is_refused(gvbsm, value, part):
    resave(gvbsm / "epoch_1" / "batch_0.tar", setitem(6, value))
    read_refused(gvbsm, "epoch_1/batch_0.tar", part)


def test_the_layout_changing_between_files_is_refused(gvbsm):
    resave(gvbsm / "epoch_1" / "batch_1.tar", lambda saved: saved.pop())
    read_refused(gvbsm, "epoch_1/batch_1.tar", "holds SRe2L's list of six where epoch_0/batch_0 holds G-VBSM's list "
                 "of seven", "one layout per folder")


def test_an_sre2l_folder_gaining_an_index_is_refused(tmp_path):
    write_relabel_folder(tmp_path / "fkd", num_images=10, batch_size=4, epochs=2, crop=16)
    resave(tmp_path / "fkd" / "epoch_1" / "batch_2.tar", lambda saved: saved.append(torch.arange(2)))
    read_refused(tmp_path / "fkd", "epoch_1/batch_2.tar", "G-VBSM's list of seven", "epoch_0/batch_0 holds SRe2L's")


def test_an_index_twice_in_one_epoch_is_refused_when_streamed(gvbsm):
    folder = scan_relabel_folder(gvbsm)                      # the scan reads two files: it cannot see this
    resave(gvbsm / "epoch_2" / "batch_1.tar", setitem(6, lambda s: torch.load(
        gvbsm / "epoch_2" / "batch_0.tar", weights_only=False)[6]))
    scan_relabel_folder(gvbsm)
    with pytest.raises(InputError) as exc:
        list(folder.batches())
    one_line(exc, "epoch_2/batch_1.tar", "appears twice in epoch 2", "cannot be associated")
    assert len(list(folder.batches(range(2)))) == 6         # the other epochs are fine


def test_an_index_beside_lplds_json_is_refused(gvbsm):
    (gvbsm / "sampler_indices_epoch.json").write_text('{"0": [], "1": [], "2": []}')
    read_refused(gvbsm, "epoch_0/batch_0.tar", "G-VBSM's list of seven", "sampler_indices_epoch.json",
                 "two associations")


def test_a_gvbsm_image_count_the_batches_do_not_hold_is_refused(gvbsm):
    with pytest.raises(InputError) as exc:
        scan_relabel_folder(gvbsm, num_images=11)
    one_line(exc, "the batches hold 10 images", "11 were given")


@pytest.mark.parametrize("value, part", [
    (lambda s: torch.stack([torch.tensor([[1, 0], [0, 1]])] * len(s[1])),
     "patch order (element 7) is not all 0: the teacher saw patch-shuffled crops"),
    (lambda s: torch.zeros(len(s[1]), 2, 2), "patch order (element 7) must be int32 or int64, found float32"),
    (lambda s: torch.zeros(len(s[1]), 3, 2, dtype=torch.int32), "patch order (element 7) must be (4, 2, k)"),
    (lambda s: None, "patch order (element 7) must be a dense tensor, found NoneType"),
])
def test_a_patch_shuffled_or_odd_edc_file_is_refused(tmp_path, value, part):
    write_relabel_folder(tmp_path / "fkd", num_images=10, batch_size=4, epochs=2, crop=16, layout="edc")
    resave(tmp_path / "fkd" / "epoch_1" / "batch_1.tar", setitem(7, value))
    read_refused(tmp_path / "fkd", "epoch_1/batch_1.tar", part)


# -- ladd convert sre2l --relabel -----------------------------------------------------------------------
@pytest.mark.parametrize("mix", ["cutmix", "mixup", "none"])
def test_a_gvbsm_folder_becomes_a_stream_of_its_stored_indices(tmp_path, runner, mix):
    """Written with sampler seed 7 and converted without --sampler-seed: a replay (seed 42) would differ."""
    exp, written = experiment(tmp_path, mix=mix, numpy1=True, layout="gvbsm", sampler_seed=7)
    out = tmp_path / "set.dla.h5"
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--stream-codec",
                 "logits:float16", "-o", out)
    assert result.exit_code == 0, result.output
    assert verify(out) == []
    rows = sample_rows(exp, out)
    spec, batches, epochs = stream_batches(out)
    assert (spec.mode, spec.resize, spec.mix, spec.sampler) == ("epochs", "pil-bilinear", mix, {"stored": "gvbsm"})
    assert spec.augmentation["gvbsm_defaults"]["scale"] == [0.08, 1.0]
    assert [len(e) for e in epochs] == [3, 3, 3]
    replay = list(sre2l_epoch_orders(10, 3, 42))                       # what a replay of SRe2L's default gives
    assert not any(np.array_equal(replay[e], written.orders[e]) for e in range(3))
    for e, numbers in enumerate(epochs):
        for b, number in enumerate(numbers):
            got, saved = batches[number], written.batches[e, b]
            assert np.array_equal(got.image, rows[saved[6].numpy()])                  # the file's own indices
            assert np.array_equal(got.box, written.pixels[e, b])
            assert np.array_equal(got.labels["logits"].view(np.uint16), saved[5].numpy().view(np.uint16))
        assert sorted(np.concatenate([batches[n].image for n in numbers]).tolist()) == list(range(10))
    with open_dla(out) as f:
        report = f.provenance["report"]["stream"]
    assert report["layout"] == "gvbsm" and "element 6" in report["association"]


def test_an_edc_folder_becomes_an_antialias_stream(tmp_path, runner):
    teacher_path = tmp_path / "teacher.safetensors"
    teacher = tiny_teacher(teacher_path, len(CLASSES), seed=1)
    exp, written = experiment(tmp_path, layout="edc", teacher=teacher, epochs=2, numpy1=True)
    scale = max(float(np.abs(b[5].numpy().astype(np.float32)).max()) for b in written.batches.values())
    out = tmp_path / "set.dla.h5"
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--stream-codec",
                 "logits:float16", "--check-teacher", teacher_path, "-o", out)
    assert result.exit_code == 0, result.output
    assert verify(out) == []
    rows = sample_rows(exp, out)
    spec, batches, epochs = stream_batches(out)
    assert (spec.resize, spec.sampler) == ("bilinear-antialias", {"stored": "edc"})
    assert spec.augmentation["edc_defaults"]["scale"] == [0.5, 1.0]
    for e, numbers in enumerate(epochs):
        for b, number in enumerate(numbers):
            saved = written.batches[e, b]
            assert np.array_equal(batches[number].image, rows[saved[6].numpy()])
            assert np.array_equal(batches[number].box, written.pixels[e, b])
    with open_dla(out) as f:
        report = f.provenance["report"]["stream"]
    assert report["layout"] == "edc" and "all 0" in report["patch_shuffle"]
    # the teacher on the stream's own antialias crops gives the folder's logits within float16 rounding
    assert report["teacher_check"]["max_abs_logit_difference"] <= 2 ** -10 * scale * 2 + 1e-3


@pytest.mark.parametrize("layout, where, edit, parts", [
    ("gvbsm", "epoch_1/batch_1.tar", lambda s: s[6].__setitem__(0, 10), ["image index (element 6) of slot 0 is 10"]),
    ("gvbsm", "epoch_1/batch_1.tar", setitem(6, lambda s: s[6].to(torch.int32)), ["must be int64, found int32"]),
    ("gvbsm", "epoch_2/batch_1.tar", lambda s: s.pop(), ["holds SRe2L's list of six", "one layout per folder"]),
    ("gvbsm", "epoch_2/batch_0.tar", setitem(6, lambda s: s[6][[0, 0, 2, 3]]), ["appears twice in epoch 2"]),
    ("edc", "epoch_1/batch_2.tar", setitem(7, lambda s: torch.ones(len(s[1]), 2, 2, dtype=torch.int64)),
     ["patch order (element 7) is not all 0", "spec 1.2 has no patch-shuffle field"]),
])
def test_a_bad_indexed_folder_is_refused_with_nothing_written(tmp_path, runner, layout, where, edit, parts):
    exp, written = experiment(tmp_path, layout=layout, numpy1=True)
    resave(written.root / where, edit)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "-o", tmp_path / "o.dla.h5")
    refused(result, tmp_path, before, where, *parts)


def test_a_sampler_seed_for_a_folder_that_stores_its_images_is_refused(tmp_path, runner):
    """G-VBSM stores every slot's image: --sampler-seed would replay nothing, so it is refused, not ignored."""
    exp, written = experiment(tmp_path, layout="gvbsm")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--sampler-seed", 7,
                 "-o", tmp_path / "set.dla.h5")
    refused(result, tmp_path, before, "--sampler-seed", "gvbsm folder stores the image of every slot")
