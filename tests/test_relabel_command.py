"""Issue 30, `ladd relabel`: generating a relabel stream with a teacher (ladd_format.labeler.relabel_pass,
ladd_format.labeler.teacher, cli/relabel.py). Tiny sets (16 x 16 images) and a tiny random teacher."""

from __future__ import annotations

import hashlib
import re

import h5py
import numpy as np
import pytest
import torch

from conftest import cli, interrupt_ladd, ok, one_line, write_dla

from ladd_format import open_dla, verify
from ladd_format.errors import InputError
from ladd_format.labeler import save_checkpoint
from ladd_format.labeler import relabel_pass
from ladd_format.labeler.relabel_pass import RelabelConfig, RelabelInterrupted, relabel, work_folder
from ladd_format.labeler.teacher import load_teacher, teacher_logits
from ladd_format.torch.models import build_model
from ladd_format.torch.stream_crops import crop_batch, pil_crop_batch, source_floats

EPOCH = "1700000000"
M, C, SIDE = 12, 10, 16
#: a run small enough for a test: 3 epochs of 12 images in batches of 5 (3 batches an epoch, the last of 2)
ARGS = ["--epochs", "3", "--batch-size", "5", "--device", "cpu"]


def make_teacher(path, num_classes=C, seed=0, names=None, size=SIDE):
    """A random convnet-d3 (width 8) for ``size`` px inputs as a train-labeler checkpoint."""
    torch.manual_seed(seed)
    model = build_model("convnet-d3", num_classes=num_classes, channels=3, image_size=size, width=8)
    meta = {"arch": "convnet-d3", "arch_kwargs": {"width": 8}, "num_classes": num_classes, "channels": 3,
            "image_size": size, "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.3], "epoch": 2,
            "training_data": "random"}
    if names is not None:
        meta.update(class_names=names, class_names_declared=True)
    return save_checkpoint(model, meta, path)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("teacher") / "t.safetensors")


@pytest.fixture(scope="module")
def teacher8(tmp_path_factory):
    """A teacher of 8 x 8 crops (of the 16 x 16 images)."""
    return make_teacher(tmp_path_factory.mktemp("teacher8") / "t8.safetensors", size=8)


@pytest.fixture
def source(tmp_path):
    return write_dla(tmp_path / "in.dla.h5", m=M, c=C, side=SIDE, n=2, codec="uint8", soft_kind="probs")


def run(runner, source, teacher, out, *extra):
    return ok(runner, "relabel", source, "--teacher", teacher, "-o", out, *ARGS, *extra)


def digests(path) -> dict[str, str]:
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj.attrs["sha256"])
                     if isinstance(obj, h5py.Dataset) and "sha256" in obj.attrs else None)
    return out


# -- the file ------------------------------------------------------------------------------------------
def test_same_command_twice_gives_the_same_bytes(tmp_path, runner, monkeypatch, source, teacher):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    a, b = tmp_path / "a.dla.h5", tmp_path / "b.dla.h5"
    result = run(runner, source, teacher, a, "--codec", "topk:k=3,values=uint8")
    assert "3 epochs, 9 batches, 36 records" in result.output
    run(runner, source, teacher, b, "--codec", "topk:k=3,values=uint8")
    assert a.read_bytes() == b.read_bytes()
    assert verify(a) == []
    assert not work_folder(a).exists()
    # everything the input held is kept, byte for byte (the dense uint8 labels are not re-encoded)
    before, after = digests(source), digests(a)
    for name in ("images", "labels", "soft_labels", "dense/probs"):
        assert after[name] == before[name], name


def test_another_seed_gives_other_records(tmp_path, runner, source, teacher):
    run(runner, source, teacher, tmp_path / "a.dla.h5", "--seed", "1")
    run(runner, source, teacher, tmp_path / "b.dla.h5", "--seed", "2")
    a, b = digests(tmp_path / "a.dla.h5"), digests(tmp_path / "b.dla.h5")
    for name in ("stream/image", "stream/box", "stream/mix_box"):
        assert a[name] != b[name], name
    assert a["images"] == b["images"]


def test_counts_boxes_and_declaration(tmp_path, runner, source, teacher8):
    out = tmp_path / "o.dla.h5"
    teacher = teacher8
    run(runner, source, teacher, out, "--crop-size", "8", "--scale", "0.3", "0.9", "--seed", "7")
    with open_dla(out) as f:
        s = f.stream
        assert (s.epochs, s.num_batches, s.num_records) == (3, 9, 36)
        spec = s.spec
        assert spec.crop_size == (8, 8) and spec.batch_size == 5 and spec.mix == "cutmix"
        assert spec.codec.label == "uint8"          # the default (top-5, rank-24 tail) takes uint8 for C <= 41
        sha = hashlib.sha256(teacher.read_bytes()).hexdigest()
        assert spec.teacher["weights_sha256"] == sha and spec.teacher["arch"] == "convnet-d3"
        assert list(spec.teacher["mean"]) == pytest.approx([0.5, 0.4, 0.3])
        assert spec.sampler["seed"] == 7 and spec.augmentation["scale"] == [0.3, 0.9]
        for e in range(3):
            batches = list(s.read_epoch(e))
            assert [len(b) for b in batches] == [5, 5, 2]
            assert sorted(np.concatenate([b.image for b in batches]).tolist()) == list(range(M))
            for b in batches:
                top, left, h, w = b.box.T
                assert np.all((top >= 0) & (left >= 0) & (h >= 1) & (w >= 1) & (top + h <= SIDE) & (left + w <= SIDE))
                assert np.all(h * w >= np.floor(0.3 * SIDE * SIDE * 0.9))   # scale >= 0.3 (rounding aside)
                t, l_, mh, mw = b.mix_box
                assert t + mh <= 8 and l_ + mw <= 8
                assert sorted(b.mix_partner.tolist()) == list(range(len(b)))
                p = b.probs(spec.codec, C)
                assert np.allclose(p.sum(1), 1, atol=0.02)


@pytest.mark.parametrize("mix", ["none", "mixup"])
def test_other_mixes(tmp_path, runner, source, teacher, mix):
    out = tmp_path / "o.dla.h5"
    run(runner, source, teacher, out, "--mix", mix, "--codec", "float16")
    assert verify(out) == []
    with open_dla(out) as f:
        b = f.stream.read_batch(0)
        assert b.mix_box is None
        if mix == "none":
            assert b.mix_partner is None and b.mix_lambda is None
        else:
            assert 0 <= b.mix_lambda <= 1 and sorted(b.mix_partner.tolist()) == list(range(5))


# -- exact replay ----------------------------------------------------------------------------------------
def _capture_crops(monkeypatch) -> list[torch.Tensor]:
    """The crops the pass hands the teacher, batch by batch."""
    seen: list[torch.Tensor] = []
    real = relabel_pass.teacher_logits

    def spy(teacher, crops, *args, **kwargs):
        seen.append(crops.clone())
        return real(teacher, crops, *args, **kwargs)
    monkeypatch.setattr(relabel_pass, "teacher_logits", spy)
    return seen


@pytest.mark.parametrize("resize", ["bilinear-antialias", "pil-bilinear"])
def test_stored_records_rebuild_the_teachers_input_and_label(tmp_path, monkeypatch, source, teacher8, resize):
    """Each record's crop rebuilt from the stored records with the replay kernel is bit-identical to what the
    teacher labelled, and the teacher's label of it equals the stored label (logits:float32, 1e-5)."""
    seen = _capture_crops(monkeypatch)
    out = tmp_path / "o.dla.h5"
    relabel(source, teacher8, out, RelabelConfig(epochs=2, batch_size=5, device="cpu", codec="logits:float32",
                                                 resize=resize, crop_size=8))
    lab = load_teacher(teacher8)
    with open_dla(out) as f:
        s = f.stream
        images = f.images()
        assert s.num_batches == len(seen) == 6
        for b in range(s.num_batches):
            batch = s.read_batch(b)
            mix = dict(mix="cutmix", mix_partner=batch.mix_partner, mix_box=batch.mix_box)
            if resize == "pil-bilinear":
                crops = pil_crop_batch(images[batch.image], batch.box, batch.flip, (8, 8), **mix)
            else:
                crops = crop_batch(source_floats(images[batch.image], f.space), batch.box, batch.flip, (8, 8), **mix)
            assert torch.equal(crops, seen[b]), b
            logits = teacher_logits(lab, crops).numpy()
            np.testing.assert_allclose(batch.labels["logits"], logits, rtol=0, atol=1e-5)


def test_normalized_images_are_brought_to_pixels_for_the_teacher(tmp_path, monkeypatch, teacher):
    """Float images in space `normalized`: the crops of the stored values, then x * std + mean (0..1
    pixels) for the teacher."""
    from ladd_format import DLAWriter
    rng = np.random.default_rng(0)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)
    pixels = rng.random((6, 3, SIDE, SIDE)).astype(np.float32)
    stored = ((pixels - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None])
    src = tmp_path / "n.dla.h5"
    with DLAWriter(src, num_classes=C, image_shape=(3, SIDE, SIDE), mean=mean, std=std, image_dtype="float32",
                   space="normalized") as w:
        w.append(stored.astype(np.float32), np.arange(6) % C)
    seen = _capture_crops(monkeypatch)
    relabel(src, teacher, tmp_path / "o.dla.h5", RelabelConfig(epochs=1, batch_size=6, device="cpu", mix="none"))
    with open_dla(tmp_path / "o.dla.h5") as f:
        batch = f.stream.read_batch(0)
        crops = crop_batch(torch.from_numpy(pixels[batch.image]), batch.box, batch.flip, (SIDE, SIDE))
    np.testing.assert_allclose(seen[0].numpy(), crops.numpy(), rtol=0, atol=1e-5)


# -- resume ------------------------------------------------------------------------------------------------
def test_interrupted_then_resumed_gives_the_uninterrupted_bytes(tmp_path, monkeypatch, source, teacher):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    config = RelabelConfig(epochs=3, batch_size=5, device="cpu", codec="topk:k=4,values=float16")
    whole = relabel(source, teacher, tmp_path / "whole.dla.h5", config).output
    out = tmp_path / "cut.dla.h5"

    def stop_in_epoch_two(done, total):
        if done > M + 5:                          # epoch 0 saved, epoch 1 under way
            raise KeyboardInterrupt
    with pytest.raises(RelabelInterrupted) as info:
        relabel(source, teacher, out, config, progress=stop_in_epoch_two)
    assert info.value.kept.epochs == 1 and not out.exists()
    notes: list[str] = []
    calls: list[tuple[int, int]] = []
    result = relabel(source, teacher, out, config, resume=True, notify=notes.append,
                     progress=lambda d, t: calls.append((d, t)))
    assert result.resumed_epochs == 1 and calls[0] == (M, 3 * M)
    assert "resumed: 1 of 3 epochs" in notes[0]
    assert out.read_bytes() == whole.read_bytes()


def test_ctrl_c_keeps_finished_epochs_and_resume_finishes_the_same_file(tmp_path, monkeypatch, source, teacher):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    args = ["relabel", str(source), "--teacher", str(teacher), "--epochs", "40", "--batch-size", "5",
            "--device", "cpu"]
    whole, cut = tmp_path / "whole.dla.h5", tmp_path / "cut.dla.h5"

    def after_two_epochs(proc, lines):
        import time
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            done = [int(m.group(1)) for line in list(lines) if (m := re.match(r"relabel: (\d+)/", line))]
            if done and done[-1] > 2 * M:
                return
            time.sleep(0.05)
        raise AssertionError("".join(lines))
    code, err = interrupt_ladd([*args, "-o", str(cut)], ready=after_two_epochs)
    assert code == 130, err
    assert "ladd: interrupted; kept" in err and "--resume" in err and not cut.exists()
    resume = err.split("run: ", 1)[1].strip().splitlines()[0]
    assert resume.endswith("--resume") and "--epochs 40" in resume
    from click.testing import CliRunner
    runner = CliRunner()
    ok(runner, *args, "-o", cut, "--resume")
    ok(runner, *args, "-o", whole)
    assert cut.read_bytes() == whole.read_bytes()


def test_resume_with_a_changed_setting_is_refused(tmp_path, runner, source, teacher):
    out = tmp_path / "o.dla.h5"
    with pytest.raises(RelabelInterrupted):
        relabel(source, teacher, out, RelabelConfig(epochs=3, batch_size=5, device="cpu"),
                progress=lambda d, t: (_ for _ in ()).throw(KeyboardInterrupt) if d > M else None)
    line = one_line(cli(runner, "relabel", source, "--teacher", teacher, "-o", out, *ARGS, "--seed", "9",
                        "--resume"))
    assert "different" in line and "seed" in line
    assert work_folder(out).exists() and not out.exists()


# -- bad input ---------------------------------------------------------------------------------------------
def _nothing_written(out) -> None:
    assert not out.exists() and not work_folder(out).exists()


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "0"], "--epochs must be an integer in 1..10000"),
    (["--crop-size", "0"], "--crop-size must be an integer in 1..65536"),
    (["--batch-size", "0"], "--batch-size"),
    (["--temperature", "0"], "--temperature"),
    (["--scale", "0.5", "0.1"], "--scale"),
    (["--codec", "topk:k=11,values=uint8"], "exceeds the number of classes"),
    (["--codec", "topk:k=20,values=uint8"], "exceeds the number of classes"),   # 1.2's default, typed: as given
    (["--codec", "topk:k=5,values=uint8,tail=24"], "tail rank 24 exceeds"),     # the default's text, typed: as given
])
def test_bad_settings_are_one_line(tmp_path, runner, source, teacher, extra, message):
    out = tmp_path / "o.dla.h5"
    line = one_line(cli(runner, "relabel", source, "--teacher", teacher, "-o", out, *ARGS, *extra))
    assert message in line
    _nothing_written(out)


def test_missing_teacher_and_class_mismatch_are_one_line(tmp_path, runner, source):
    out = tmp_path / "o.dla.h5"
    line = one_line(cli(runner, "relabel", source, "--teacher", tmp_path / "none.safetensors", "-o", out, *ARGS))
    assert "none.safetensors" in line and "no such teacher file" in line
    seven = make_teacher(tmp_path / "seven.safetensors", num_classes=7)
    line = one_line(cli(runner, "relabel", source, "--teacher", seven, "-o", out, *ARGS))
    assert "the teacher has 7 classes, the data 10" in line
    _nothing_written(out)


def test_a_teacher_of_other_class_names_is_refused_unless_allowed(tmp_path, runner, teacher):
    src = write_dla(tmp_path / "named.dla.h5", m=M, c=C, side=SIDE, codec=None, class_names=[f"k{i}" for i in range(C)])
    named = make_teacher(tmp_path / "named.safetensors", names=[f"c{i}" for i in range(C)])
    out = tmp_path / "o.dla.h5"
    line = one_line(cli(runner, "relabel", src, "--teacher", named, "-o", out, *ARGS))
    assert "other classes" in line and "--allow-mismatch" in line
    _nothing_written(out)
    result = ok(runner, "relabel", src, "--teacher", named, "-o", out, *ARGS, "--allow-mismatch")
    assert "ladd: warning:" in result.output and out.exists()
    ok(runner, "relabel", src, "--teacher", teacher, "-o", tmp_path / "p.dla.h5", *ARGS)   # no names: no check


def test_a_file_that_already_holds_a_stream_is_refused(tmp_path, runner, source, teacher):
    out = tmp_path / "o.dla.h5"
    run(runner, source, teacher, out)
    again = tmp_path / "again.dla.h5"
    line = one_line(cli(runner, "relabel", out, "--teacher", teacher, "-o", again, *ARGS))
    assert "already holds a relabel stream" in line
    _nothing_written(again)


# -- torchvision teachers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet_state(tmp_path_factory):
    import torchvision.models as tvm
    torch.manual_seed(0)
    return tvm.resnet18(num_classes=C).state_dict()


def test_torchvision_teacher_from_safetensors_and_torch_save(tmp_path, runner, source, resnet_state):
    from safetensors.torch import save_file
    st, pt, ddp = tmp_path / "r.safetensors", tmp_path / "r.pt", tmp_path / "ddp.pth"
    save_file({k: v.contiguous() for k, v in resnet_state.items()}, str(st))
    torch.save(resnet_state, pt)
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet_state.items()}, "epoch": 3}, ddp)
    a, b, c = (load_teacher(p, "resnet18", C) for p in (st, pt, ddp))
    x = torch.rand(2, 3, SIDE, SIDE)
    assert torch.equal(teacher_logits(a, x), teacher_logits(b, x)) and torch.equal(teacher_logits(a, x),
                                                                                   teacher_logits(c, x))
    assert a.weights_sha256 == hashlib.sha256(st.read_bytes()).hexdigest() and a.arch == "resnet18"
    assert a.mean == pytest.approx((0.485, 0.456, 0.406))
    out = tmp_path / "o.dla.h5"
    ok(runner, "relabel", source, "--teacher", pt, "--arch", "resnet18", "-o", out, "--epochs", "1",
       "--batch-size", "12", "--device", "cpu", "--teacher-mean", "0.5", "0.5", "0.5")
    with open_dla(out) as f:
        assert f.stream.spec.teacher["arch"] == "resnet18"
        assert list(f.stream.spec.teacher["mean"]) == [0.5, 0.5, 0.5]


def test_torchvision_teacher_refusals(tmp_path, runner, source, resnet_state):
    import torchvision.models as tvm
    pt = tmp_path / "r.pt"
    torch.save(resnet_state, pt)
    out = tmp_path / "o.dla.h5"
    line = one_line(cli(runner, "relabel", source, "--teacher", pt, "--arch", "resnet_nine", "-o", out, *ARGS))
    assert "unknown architecture 'resnet_nine'" in line
    line = one_line(cli(runner, "relabel", source, "--teacher", pt, "--arch", "resnet34", "-o", out, *ARGS))
    assert "does not fit resnet34" in line
    five = tmp_path / "five.pt"
    torch.save(tvm.resnet18(num_classes=5).state_dict(), five)
    line = one_line(cli(runner, "relabel", source, "--teacher", five, "--arch", "resnet18", "-o", out, *ARGS))
    assert "the teacher has 5 classes, the data 10" in line
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"PK\x03\x04 not a zip")
    line = one_line(cli(runner, "relabel", source, "--teacher", junk, "--arch", "resnet18", "-o", out, *ARGS))
    assert "junk.pt" in line and "weights-only" in line
    _nothing_written(out)
    with pytest.raises(InputError, match="holds no state_dict"):
        torch.save({"epoch": 3}, tmp_path / "empty.pt")
        load_teacher(tmp_path / "empty.pt", "resnet18", C)


# -- shards -------------------------------------------------------------------------------------------------
@pytest.mark.mutation_skip
def test_two_gloo_processes_give_the_single_process_file(tmp_path, monkeypatch, runner, source, teacher):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    single = tmp_path / "one.dla.h5"
    run(runner, source, teacher, single, "--codec", "topk:k=4,values=float16")
    reports: list[tuple[int, int]] = []
    sharded = relabel_pass.relabel_sharded(
        source, teacher, tmp_path / "two.dla.h5",
        RelabelConfig(epochs=3, batch_size=5, device="cpu", codec="topk:k=4,values=float16"), shards=2,
        progress=lambda done, total: reports.append((done, total)), poll_seconds=0.01).output
    assert sharded.read_bytes() == single.read_bytes()
    # the parent counts the records of the epoch files the ranks write: never backwards, ending at all 36
    assert reports[-1] == (36, 36) and [d for d, _ in reports] == sorted(d for d, _ in reports)
    line = one_line(cli(runner, "relabel", source, "--teacher", teacher, "-o", tmp_path / "x.dla.h5", *ARGS,
                        "--shards", "0"))
    assert "--shards must lie in 1..256" in line


def test_the_torchrun_entry_point_takes_the_commands_options():
    a = relabel_pass.parser().parse_args(["in.dla.h5", "--teacher", "t.safetensors", "-o", "o.dla.h5", "--scale",
                                          "0.2", "0.9", "--epochs", "7", "--mix", "mixup", "--force"])
    config = RelabelConfig.from_values(vars(a))
    assert (config.scale, config.epochs, config.mix, config.overwrite) == ((0.2, 0.9), 7, "mixup", True)
    assert config.ratio == RelabelConfig().ratio and config.seed == 42
