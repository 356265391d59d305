"""``ladd convert sre2l EXP --relabel DIR`` (and ``auto``): SRe2L/CDA/G-VBSM-layout relabel folders, and
LPLD's, written exactly as upstream writes them (numpy-1-era pickles included, tests/_upstream.py), stored as
a relabel stream whose records are the replayed association and Pillow's rounding of the boxes; the files'
float16 logits kept bit for bit with ``logits:float16``; ``--check-teacher`` recomputing records; every bad
folder refused in one line with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from ladd_cli.main import main
from ladd_format import open_dla, verify
from ladd_format.labeler.checkpoint import save_checkpoint
from ladd_format.relabel.convert import check_slots, imagefolder_paths
from ladd_format.stream import DEFAULT_STREAM_CODEC
from ladd_format.torch.models import build_model

from _upstream import write_relabel_folder, write_sre2l_images

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSES = (0, 1, 2, 3, 4)           # 5 classes x 2 images: 10 images, batches of 4 (the last 2)
CROP = 16


def run(runner, *args):
    result = runner.invoke(main, ["convert", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


def refused(result, tmp_path: Path, before: list[str], *fragments: str) -> str:
    """Exit 1, one ``ladd: error:`` line holding ``fragments``, nothing new in ``tmp_path``."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ladd: error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return lines[0]


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


def tiny_teacher(path: Path | None, classes: int, seed: int) -> torch.nn.Module:
    """A ConvNet-D3 of width 8 (a ``ladd train-labeler`` checkpoint at ``path``), its head scaled so that
    logits are a few units: a wrong teacher then differs by far more than float16's rounding."""
    torch.manual_seed(seed)
    model = build_model("convnet-d3", num_classes=classes, channels=3, image_size=CROP, width=8).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
    if path is not None:
        save_checkpoint(model, {"arch": "convnet-d3", "arch_kwargs": {"width": 8}, "num_classes": classes,
                                "channels": 3, "image_size": CROP, "mean": list(MEAN), "std": list(STD),
                                "epoch": 0}, path)
    return model


def experiment(tmp_path: Path, *, mix="cutmix", numpy1=True, teacher=None, ids=None, classes=CLASSES, ipc=2,
               epochs=3, batch_size=4, lpld_steps=None, sampler_seed=42, logit_classes=None, layout="sre2l"):
    """SRe2L's image tree (``exp/new???/class???_id???.jpg``) and, beside it, its relabel folder (``fkd``)
    made from that tree's ImageFolder, as SRe2L writes both (``layout``: G-VBSM's or EDC's variant)."""
    exp = tmp_path / "syn" / "exp"
    write_sre2l_images(exp, classes=classes, ipc=ipc, side=24, ids=ids)
    written = write_relabel_folder(tmp_path / "syn" / "fkd", batch_size=batch_size, epochs=epochs,
                                   classes=logit_classes or len(classes), mix=mix, numpy1=numpy1, crop=CROP,
                                   images=exp, teacher=teacher, mean=MEAN, std=STD, lpld_steps=lpld_steps,
                                   sampler_seed=sampler_seed, layout=layout)
    return exp, written


def stored_row(exp: Path) -> dict[str, int]:
    """Relative path -> row of the file, from the images themselves: each stored row is matched to the one
    JPEG that decodes to it (independent of any order the converter chose)."""
    return {p.relative_to(exp).as_posix(): p for p in exp.glob("new*/*.jpg")}


def sample_rows(exp: Path, out: Path) -> np.ndarray:
    """int64 (M,): ImageFolder sample i (torchvision's own listing) is stored row [i], found by pixels."""
    dataset = ImageFolder(str(exp))
    with open_dla(out) as f:
        images = f.images()
    rows = []
    for path, _ in dataset.samples:
        hits = [i for i in range(len(images)) if np.array_equal(images[i], decoded(Path(path)))]
        assert len(hits) == 1
        rows.append(hits[0])
    return np.array(rows)


def stream_batches(out: Path):
    with open_dla(out) as f:
        s = f.stream
        return s.spec, [s.read_batch(b) for b in range(s.num_batches)], [list(s.epoch_batches(e)) for e in
                                                                         range(s.epochs)]


# -- a folder as upstream writes it ----------------------------------------------------------------
@pytest.mark.parametrize("mix", ["cutmix", "mixup", "none"])
def test_an_upstream_sre2l_folder_becomes_the_replayed_stream(tmp_path, runner, mix):
    exp, written = experiment(tmp_path, mix=mix, numpy1=True)
    out = tmp_path / "set.dla.h5"
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--stream-codec",
                 "logits:float16", "-o", out)
    assert result.exit_code == 0, result.output
    assert verify(out) == []
    rows = sample_rows(exp, out)
    spec, batches, epochs = stream_batches(out)
    assert (spec.epochs, spec.batch_size, spec.crop_size, spec.mode, spec.mix) == (3, 4, (CROP, CROP), "epochs", mix)
    assert spec.resize == "pil-bilinear" and spec.codec.label == "logits:float16" and spec.temperature == 1.0
    assert spec.teacher == {"arch": "unknown"}
    assert spec.sampler == {"replay": "sre2l", "seed": 42, "batch_size": 4}
    assert [len(e) for e in epochs] == [3, 3, 3]
    for e, numbers in enumerate(epochs):
        for b, number in enumerate(numbers):
            got = batches[number]
            coords, flip, index, lam, box, logits = written.batches[e, b]
            slots = written.orders[e][b * 4:(b + 1) * 4]
            assert got.epoch == e and np.array_equal(got.image, rows[slots])        # the sampler that wrote it
            i, j, h, w = written.pixels[e, b].T                                      # get_params' integers
            assert np.array_equal(got.box, np.stack([i, j, h, w], axis=1))
            assert np.array_equal(got.flip, flip.numpy())
            stored = got.labels["logits"]
            assert stored.dtype == np.float16 and np.array_equal(stored.view(np.uint16),
                                                                 logits.numpy().view(np.uint16))
            if mix == "none":
                assert got.mix_partner is None and got.mix_box is None and got.mix_lambda is None
                continue
            assert np.array_equal(got.mix_partner, index.numpy())
            if mix == "cutmix":
                r1, c1, r2, c2 = (int(v) for v in box)
                assert got.mix_box.tolist() == [r1, c1, r2 - r1, c2 - c1] and got.mix_lambda is None
            else:
                assert got.mix_box is None and got.mix_lambda == pytest.approx(lam, abs=1e-7)
    with open_dla(out) as f:
        inputs = f.provenance["inputs"]
        report = f.provenance["report"]["stream"]
    assert [entry["name"] for entry in inputs] == ["exp/", "fkd/"] and inputs[1]["files"] == 9
    assert report["layout"] == "sre2l" and report["records"] == 30


def test_the_default_codec_stores_the_teachers_probabilities(tmp_path, runner):
    classes = tuple(range(45))                       # the default is top-k with a tail above 41 classes
    exp, written = experiment(tmp_path, classes=classes, ipc=1, epochs=2, batch_size=8)
    out = tmp_path / "set.dla.h5"
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "-o", out)
    assert result.exit_code == 0, result.output
    spec, batches, _ = stream_batches(out)
    assert spec.codec.label == DEFAULT_STREAM_CODEC and spec.codec.kind == "probs"
    k = spec.codec.codec.k
    first = batches[0]
    z = written.batches[0, 0][5].numpy().astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    with open_dla(out) as f:                     # the stored top-k, as section 6 decodes them (the even tail)
        q = spec.codec.codec.decode({name: v for name, v in first.labels.items() if not name.startswith("tail/")},
                                    f.num_classes)
    top = np.argsort(-p, axis=1)[:, :k]
    assert np.array_equal(np.sort(first.labels["topk_index"], axis=1), np.sort(top, axis=1))
    assert np.abs(np.take_along_axis(q, top, 1) - np.take_along_axis(p, top, 1)).max() < 3 / 255


# -- ImageFolder's order -----------------------------------------------------------------------------
def test_imagefolder_order_is_mapped_to_the_converters_order(tmp_path, runner):
    # id999 and id1000: the converter stores natural order (999 first), ImageFolder sorts names (1000 first)
    exp, written = experiment(tmp_path, ids=(7, 999, 1000), classes=(0, 1), epochs=2, batch_size=4,
                              mix="cutmix", numpy1=False)
    listed = imagefolder_paths(exp)
    assert listed == [Path(p).relative_to(exp).as_posix() for p, _ in ImageFolder(str(exp)).samples]
    assert listed[:3] == ["new000/class000_id007.jpg", "new000/class000_id1000.jpg", "new000/class000_id999.jpg"]
    out = tmp_path / "set.dla.h5"
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--stream-codec",
                 "logits:float16", "-o", out)
    assert result.exit_code == 0, result.output
    with open_dla(out) as f:
        images = f.images()
        assert "mapped" in f.provenance["report"]["stream"]["image_order"]
    assert np.array_equal(images[1], decoded(exp / "new000" / "class000_id999.jpg"))   # stored in natural order
    spec, batches, epochs = stream_batches(out)
    for e, numbers in enumerate(epochs):
        for b, number in enumerate(numbers):
            slots = written.orders[e][b * 4:(b + 1) * 4]
            for record, slot in zip(batches[number].image, slots):                    # pixels of the right file
                assert np.array_equal(images[record], decoded(exp / listed[slot]))


def test_an_image_imagefolder_reads_but_the_converter_does_not_is_refused(tmp_path, runner):
    exp, written = experiment(tmp_path, epochs=1)
    Image.new("RGB", (24, 24)).save(exp / "new000" / "extra.ppm")        # ImageFolder reads .ppm, sre2l does not
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "-o", tmp_path / "o.dla.h5")
    refused(result, tmp_path, before, "ImageFolder", "new000/extra.ppm")


# -- LPLD ----------------------------------------------------------------------------------------------
def test_lpld_uses_its_stored_order_as_a_pool(tmp_path, runner):
    exp, written = experiment(tmp_path, lpld_steps=5, batch_size=4, mix="cutmix", numpy1=True)   # 2 full batches/epoch
    out = tmp_path / "set.dla.h5"
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--stream-codec",
                 "logits:float16", "-o", out)
    assert result.exit_code == 0, result.output
    rows = sample_rows(exp, out)
    spec, batches, epochs = stream_batches(out)
    assert spec.mode == "pool" and spec.sampler == {"stored": "lpld"}
    assert [len(e) for e in epochs] == [2, 2, 1]                          # stopped after 5 batches
    order = json.loads((written.root / "sampler_indices_epoch.json").read_text())
    for e, numbers in enumerate(epochs):
        for b, number in enumerate(numbers):
            assert np.array_equal(batches[number].image, rows[order[str(e)][b * 4:(b + 1) * 4]])
            logits = written.batches[e, b][5].numpy()
            assert np.array_equal(batches[number].labels["logits"].view(np.uint16), logits.view(np.uint16))
    with open_dla(out) as f:
        assert f.provenance["inputs"][1]["files"] == 6                      # 5 batch files + the json


# -- the sampler's seed and batch size ---------------------------------------------------------------------
def test_the_sampler_seed_is_the_one_given(tmp_path, runner):
    exp, written = experiment(tmp_path, sampler_seed=7, epochs=2)
    out = tmp_path / "seven.dla.h5"
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--sampler-seed", 7,
                 "--batch-size", 4, "-o", out)
    assert result.exit_code == 0, result.output
    rows = sample_rows(exp, out)
    spec, batches, _ = stream_batches(out)
    assert spec.sampler["seed"] == 7
    assert np.array_equal(np.concatenate([x.image for x in batches[:3]]), rows[written.orders[0]])
    default = tmp_path / "default.dla.h5"
    assert run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "-o", default).exit_code == 0
    _, replayed, _ = stream_batches(default)
    assert not np.array_equal(np.concatenate([x.image for x in replayed[:3]]), rows[written.orders[0]])


def test_a_batch_size_the_files_do_not_hold_is_refused(tmp_path, runner):
    exp, written = experiment(tmp_path, epochs=1)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--batch-size", 5,
                 "-o", tmp_path / "o.dla.h5")
    refused(result, tmp_path, before, "batches of 4", "--batch-size 5")


# -- auto -------------------------------------------------------------------------------------------------
def test_auto_reads_relabel_with_the_sre2l_layout(tmp_path, runner):
    exp, written = experiment(tmp_path, epochs=1)
    out = tmp_path / "set.dla.h5"
    result = run(runner, "auto", exp, "--relabel", written.root, "--crop-size", CROP, "-o", out)
    assert result.exit_code == 0, result.output
    assert "auto: detected sre2l" in result.output
    assert "5 classes: stored as uint8" in result.output      # the default for a set of few classes
    with open_dla(out) as f:
        assert f.provenance["converter"] == "sre2l" and f.has_stream and f.stream.epochs == 1
        assert f.stream.spec.codec.label == "uint8"


def test_stream_options_without_relabel_are_refused(tmp_path, runner):
    exp, _ = experiment(tmp_path, epochs=1)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, "sre2l", exp, "--sampler-seed", 3, "-o", tmp_path / "o.dla.h5")
    refused(result, tmp_path, before, "--sampler-seed", "--relabel")


# -- --check-teacher ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mix", ["cutmix", "mixup"])
def test_check_teacher_recomputes_records_from_the_stored_boxes(tmp_path, runner, mix):
    teacher_path = tmp_path / "teacher.safetensors"
    teacher = tiny_teacher(teacher_path, len(CLASSES), seed=1)
    exp, written = experiment(tmp_path, teacher=teacher, mix=mix, epochs=2)
    scale = max(float(np.abs(b[5].numpy().astype(np.float32)).max()) for b in written.batches.values())
    assert scale > 2.0                                          # logits of a few units
    out = tmp_path / "right.dla.h5"
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--check-teacher",
                 teacher_path, "--check-slots", 6, "-o", out)
    assert result.exit_code == 0, result.output
    assert "--check-teacher teacher.safetensors: largest |logit difference| over 6 recomputed records" in result.output
    with open_dla(out) as f:
        checked = f.provenance["report"]["stream"]["teacher_check"]
    assert checked["records"] == 6 and checked["max_abs_logit_difference"] <= 2 ** -10 * scale * 2 + 1e-3
    wrong_path = tmp_path / "wrong.safetensors"
    tiny_teacher(wrong_path, len(CLASSES), seed=2)
    out = tmp_path / "wrong.dla.h5"
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--check-teacher",
                 wrong_path, "-o", out)
    assert result.exit_code == 0, result.output
    with open_dla(out) as f:
        checked = f.provenance["report"]["stream"]["teacher_check"]
    assert checked["records"] == 8 and checked["max_abs_logit_difference"] > 0.5


def test_check_slots_spread_over_the_batches(tmp_path):
    from ladd_format.relabel.convert import RelabelOptions, prepare_stream
    from ladd_format.converters.sre2l import stored_order

    exp, written = experiment(tmp_path, epochs=3)
    stream = prepare_stream(RelabelOptions(folder=written.root, crop_size=CROP), image_root=exp,
                            stored_paths=stored_order(exp), image_shape=(3, 24, 24))
    assert check_slots(stream, 4) == [(0, 0, 0), (1, 0, 0), (1, 2, 1), (2, 2, 1)]    # records 0, 10, 19, 29 of 30
    assert len(check_slots(stream, 8)) == 8 and len(set(check_slots(stream, 8))) == 8
    assert len(check_slots(stream, 100)) == 30                   # every record once


# -- bad input: one line, exit 1, nothing written ---------------------------------------------------------
def save_batch(path: Path, saved: list) -> None:
    torch.save(saved, path)


def bad_folder(tmp_path: Path, defect: str):
    exp, written = experiment(tmp_path, numpy1=True)
    root = written.root
    coords, flip, index, lam, box, logits = written.batches[2, 1]
    target = root / "epoch_2" / "batch_1.tar"                   # a file read while the stream is written
    if defect == "missing epoch":
        shutil.rmtree(root / "epoch_1")
    elif defect == "unequal batch files":
        (root / "epoch_1" / "batch_2.tar").unlink()
    elif defect == "unequal batch size":
        save_batch(target, [coords[:3], flip[:3], torch.arange(3), lam, box, logits[:3]])
    elif defect == "other globals":
        from fractions import Fraction
        save_batch(target, [coords, flip, index, Fraction(1, 2), box, logits])
    elif defect == "class count":
        save_batch(target, [coords, flip, index, lam, box, torch.zeros(4, len(CLASSES) + 1).half()])
    elif defect == "box outside":
        bad = coords.clone()
        bad[1, 0], bad[1, 2] = 0.5, 0.75                           # top + height = 1.25 of the image
        save_batch(target, [bad, flip, index, lam, box, logits])
    elif defect == "image count":
        next(exp.glob("new004/*.jpg")).unlink()
    else:
        raise AssertionError(defect)
    return exp, root


@pytest.mark.parametrize("defect, fragments", [
    ("missing epoch", ("epoch_1 is missing",)),
    ("unequal batch files", ("epoch_1 holds 2 batch files where epoch_0 holds 3",)),
    ("unequal batch size", ("batch_1.tar", "holds 3 slots where the folder's batches hold 4")),
    ("other globals", ("batch_1.tar", "fractions.Fraction", "not on the allow-list")),
    ("class count", ("batch_1.tar", "logits have 6 classes where epoch_0/batch_0's have 5")),
    ("box outside", ("batch_1.tar", "slot 1", "not a box inside the image")),
    ("image count", ("the batches hold 10 images", "9 were given")),
])
def test_a_bad_folder_is_refused_in_one_line(tmp_path, runner, defect, fragments):
    exp, root = bad_folder(tmp_path, defect)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, "sre2l", exp, "--relabel", root, "--crop-size", CROP, "-o", tmp_path / "o.dla.h5")
    refused(result, tmp_path, before, *fragments)


def test_logits_of_another_class_count_than_the_set_are_refused(tmp_path, runner):
    exp, written = experiment(tmp_path, epochs=1)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--num-classes", 10,
                 "-o", tmp_path / "o.dla.h5")
    refused(result, tmp_path, before, "the relabel logits have 5 classes, the set 10 (--num-classes 10)")


def test_lpld_json_naming_an_image_beyond_m_is_refused(tmp_path, runner):
    exp, written = experiment(tmp_path, lpld_steps=5)
    path = written.root / "sampler_indices_epoch.json"
    order = json.loads(path.read_text())
    order["1"][3] = 10                                           # M = 10 images: 0..9
    path.write_text(json.dumps(order))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "-o", tmp_path / "o.dla.h5")
    refused(result, tmp_path, before, "sampler_indices_epoch.json", "index 10 is outside 0..9")


def test_a_mix_box_beyond_the_crop_size_is_refused(tmp_path, runner):
    exp, written = experiment(tmp_path, epochs=1)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", 4, "-o", tmp_path / "o.dla.h5")
    refused(result, tmp_path, before, "mix box (element 4)", "4x4 crop")


@pytest.mark.parametrize("args, fragments", [
    (["--stream-codec", "topk:k=zz"], ("--stream-codec",)),
    (["--stream-temperature", "0"], ("--stream-temperature must be a finite number > 0",)),
    (["--crop-size", "0"], ("--crop-size must be an integer from 1",)),
    (["--check-slots", "3"], ("--check-slots needs --check-teacher",)),
])
def test_bad_stream_options_are_refused(tmp_path, runner, args, fragments):
    exp, written = experiment(tmp_path, epochs=1)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, "sre2l", exp, "--relabel", written.root, *args, "-o", tmp_path / "o.dla.h5")
    refused(result, tmp_path, before, *fragments)


def test_progress_counts_the_images_then_the_records(tmp_path):
    from ladd_format.converters import ConvertOptions, convert

    exp, written = experiment(tmp_path, epochs=2)
    seen = []
    options = ConvertOptions(format_options={"relabel": str(written.root), "crop_size": CROP})
    result = convert("sre2l", exp, tmp_path / "set.dla.h5", options, progress=lambda done, total: seen.append(
        (done, total)))
    assert result.num_images == 10
    assert {total for _, total in seen} == {10 + 20}                 # 10 images, then 2 epochs of 10 records
    assert [done for done, _ in seen] == sorted(done for done, _ in seen) and seen[-1] == (30, 30)
    assert (10, 30) in seen and (14, 30) in seen                     # the images, then the first batch of 4


def test_check_teacher_takes_a_torchvision_state_dict_with_teacher_arch(tmp_path, runner):
    torch.manual_seed(0)
    teacher = build_model("mobilenet_v3_small", num_classes=len(CLASSES), image_size=CROP).eval()
    with torch.no_grad():                                                # untrained logits are ~1e-6: a few units
        spread = float(teacher(torch.rand(8, 3, CROP, CROP)).std())
        teacher.classifier[-1].weight.mul_(3.0 / spread)
        teacher.classifier[-1].bias.zero_()
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    exp, written = experiment(tmp_path, teacher=teacher, epochs=2)       # ImageNet's normalisation: load_teacher's
    scale = max(float(np.abs(b[5].numpy().astype(np.float32)).max()) for b in written.batches.values())
    assert scale > 0.5
    out = tmp_path / "set.dla.h5"
    result = run(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--teacher-arch",
                 "mobilenet_v3_small", "--check-teacher", tmp_path / "teacher.pt", "-o", out)
    assert result.exit_code == 0, result.output
    with open_dla(out) as f:
        checked = f.provenance["report"]["stream"]["teacher_check"]
        assert f.stream.spec.teacher == {"arch": "mobilenet_v3_small"}
    assert checked["arch"] == "mobilenet_v3_small" and checked["records"] == 8
    assert checked["max_abs_logit_difference"] <= 2 ** -10 * scale * 2 + 1e-3


def test_a_batch_file_changed_after_its_digest_is_refused(tmp_path):
    from ladd_format.converters.sre2l import stored_order
    from ladd_format.errors import InputError
    from ladd_format.relabel.convert import RelabelOptions, prepare_stream

    exp, written = experiment(tmp_path, epochs=2)
    stream = prepare_stream(RelabelOptions(folder=written.root, crop_size=CROP), image_root=exp,
                            stored_paths=stored_order(exp), image_shape=(3, 24, 24))
    record = stream.digest().record()
    assert record["name"] == "fkd/" and record["files"] == 6
    shutil.copy(written.root / "epoch_0" / "batch_0.tar", written.root / "epoch_1" / "batch_0.tar")
    with pytest.raises(InputError) as exc:
        list(stream.batches())
    assert "epoch_1/batch_0.tar" in str(exc.value) and "changed while it was being converted" in str(exc.value)
