"""Issue: the labeler and the batched labeler pass — train-labeler, augment, resume, shards."""

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch

from ladd_cli.main import main
from ladd_format import DLAWriter, open_dla, verify
from ladd_format.codecs import make_codec
from ladd_format.errors import CodecError, InputError, OutputExistsError
from ladd_format.labeler import AugmentConfig, TrainConfig, augment, load_checkpoint, load_source, train_labeler
from ladd_format.labeler.label_pass import to_labeler_input, work_folder
from ladd_format.labeler.distributed import augment_sharded, shard
from ladd_format.torch import DLADataset, subimages

from conftest import hand_subimages

SMALL = TrainConfig(arch="convnet-d3", arch_kwargs={"width": 16}, epochs=3, save_epochs=(1, 3), batch_size=128)


@pytest.fixture(scope="session")
def digits():
    return load_source("digits")


@pytest.fixture(scope="session")
def labeler_ckpt(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("labeler")
    records = train_labeler(digits, out, SMALL)
    return records[-1]["path"]


@pytest.fixture
def plain_set(tmp_path, digits):
    path = tmp_path / "d.dla.h5"
    with DLAWriter(path, num_classes=10, image_shape=(3, 32, 32), mean=(0.3,) * 3, std=(0.3,) * 3,
                   soft_kind="logits") as w:
        w.append(digits.images[:40], digits.labels[:40], soft=np.zeros((40, 10), np.float32))
    return path


def dense_digest(path):
    with h5py.File(path) as f:
        return {name: f[name].attrs["sha256"] for name in ("images", "labels", "dense/probs", "soft_labels")}


def test_labeler_learns_and_records_its_metadata(labeler_ckpt):
    lab = load_checkpoint(labeler_ckpt)
    assert lab.meta["val_accuracy"] > 0.5          # chance is 0.1
    assert lab.meta["epoch"] == 3 and lab.meta["arch"] == "convnet-d3" and lab.num_classes == 10
    assert len(lab.meta["mean"]) == 3 and 0 < lab.meta["val_entropy"] < np.log(10)
    with open(labeler_ckpt, "rb") as fh:
        assert lab.sha256 == hashlib.sha256(fh.read()).hexdigest()
    assert os.path.exists(os.path.join(os.path.dirname(labeler_ckpt), "labeler-e001.safetensors"))


def test_training_is_deterministic_with_a_seed(tmp_path, digits):
    cfg = TrainConfig(arch="convnet-d3", arch_kwargs={"width": 8}, epochs=1, save_epochs=(1,), batch_size=256)
    a = train_labeler(digits, tmp_path / "a", cfg)[0]["path"]
    b = train_labeler(digits, tmp_path / "b", cfg)[0]["path"]
    sa, sb = load_checkpoint(a).model.state_dict(), load_checkpoint(b).model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_self_consistency_float32(tmp_path, plain_set, labeler_ckpt):
    out = augment(plain_set, labeler_ckpt, tmp_path / "la.dla.h5", AugmentConfig(batch_size=16)).output
    assert verify(out) == []
    lab = load_checkpoint(labeler_ckpt)
    ds = DLADataset(out, normalize=False)             # 0..1 pixels, as the labeler's normalisation expects
    with open_dla(out) as f:
        stored = f.dense()
        assert f.labeler["weights_sha256"] == lab.sha256 and f.labeler["arch"] == "convnet-d3"
    mean = torch.tensor(lab.meta["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(lab.meta["std"]).view(1, 3, 1, 1)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        subs = hand_subimages((images - mean) / std, 5, 0.625).flatten(0, 1)   # not the code under test
        again = torch.softmax(lab.model(subs), -1).view(len(ds), 25, 10).numpy()
    assert np.abs(again - stored).max() < 1e-5


def test_uint8_pass_stores_exactly_the_rounded_float32_pass(tmp_path, plain_set, labeler_ckpt):
    """The uint8 pass labels the same sub-images: its stored values are floor(255 p + 0.5) of the
    float32 pass's p exactly (spec 6), and its decoded rows are those values over their row sums."""
    import h5py
    ref = augment(plain_set, labeler_ckpt, tmp_path / "f32.dla.h5", AugmentConfig(batch_size=16)).output
    out = augment(plain_set, labeler_ckpt, tmp_path / "q.dla.h5", AugmentConfig(batch_size=16, codec="uint8")).output
    with open_dla(ref) as a, open_dla(out) as b:
        p, q = a.dense().astype(np.float64), b.dense().astype(np.float64)
    with h5py.File(out, "r") as f:
        stored = f["dense/probs"][()]
    assert stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, np.floor(np.clip(p, 0, 1) * 255 + 0.5))
    s = stored.astype(np.float64)
    np.testing.assert_allclose(q, s / s.sum(-1, keepdims=True), rtol=1e-6, atol=0)   # float32 decoding
    # the bound that follows: |r - p| <= 1/510 per value, row sums within C/510 of 1
    c = p.shape[-1]
    assert np.all(np.abs(p - q) <= (1 + c * p) / 510 / (1 - c / 510) + 1e-7)
    assert np.mean(p.argmax(-1) == q.argmax(-1)) > 0.97


@pytest.mark.parametrize("codec,tol", [("topk:k=5,values=float16", 0.15)])
def test_self_consistency_other_codecs(tmp_path, plain_set, labeler_ckpt, codec, tol):
    ref = augment(plain_set, labeler_ckpt, tmp_path / "f32.dla.h5", AugmentConfig(batch_size=16)).output
    out = augment(plain_set, labeler_ckpt, tmp_path / "q.dla.h5", AugmentConfig(batch_size=16, codec=codec)).output
    with open_dla(ref) as a, open_dla(out) as b:
        p, q = a.dense(), b.dense()
    assert np.abs(p - q).max() < tol
    assert np.mean(p.argmax(-1) == q.argmax(-1)) > 0.97


@pytest.mark.mutation_skip
def test_resume_after_kill_equals_uninterrupted_pass(tmp_path, plain_set, labeler_ckpt):
    whole = augment(plain_set, labeler_ckpt, tmp_path / "whole.dla.h5", AugmentConfig(batch_size=8)).output
    out = tmp_path / "resumed.dla.h5"
    script = textwrap.dedent(f"""
        import os, signal
        from ladd_format.labeler import AugmentConfig, augment
        def progress(done, total):              # in images: 2 chunks of 8
            if done == 16:
                os.kill(os.getpid(), signal.SIGKILL)
        augment({str(plain_set)!r}, {labeler_ckpt!r}, {str(out)!r}, AugmentConfig(batch_size=8), progress=progress)
    """)
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    chunks = sorted(p.name for p in work_folder(out).glob("chunk_*.npy"))
    assert 2 <= len(chunks) < 5
    labeled = []
    augment(plain_set, labeler_ckpt, out, AugmentConfig(batch_size=8), resume=True,
            progress=lambda done, total: labeled.append(done))
    assert labeled[0] > 8 and labeled[-1] == 40             # completed chunks (8 images each) were not labeled again
    assert verify(out) == [] and dense_digest(out) == dense_digest(whole)
    assert not work_folder(out).exists()


def test_resume_refuses_a_work_folder_of_other_parameters(tmp_path, plain_set, labeler_ckpt):
    out = tmp_path / "o.dla.h5"
    work_folder(out).mkdir()
    (work_folder(out) / "manifest.json").write_text('{"n": 3}')
    with pytest.raises(InputError, match="different input"):
        augment(plain_set, labeler_ckpt, out, AugmentConfig(batch_size=8), resume=True)
    augment(plain_set, labeler_ckpt, out, AugmentConfig(batch_size=8))   # without --resume: starts over
    assert verify(out) == []


@pytest.mark.mutation_skip
def test_two_gloo_processes_give_the_single_process_output(tmp_path, plain_set, labeler_ckpt):
    single = augment(plain_set, labeler_ckpt, tmp_path / "one.dla.h5", AugmentConfig(batch_size=8, device="cpu")).output
    sharded = tmp_path / "two.dla.h5"
    reports = []
    augment_sharded(plain_set, labeler_ckpt, sharded, AugmentConfig(batch_size=8, device="cpu"), shards=2,
                    progress=lambda done, total: reports.append((done, total)), poll_seconds=0.01)
    assert verify(sharded) == [] and dense_digest(sharded) == dense_digest(single)
    # the parent counts the images of the chunk files the ranks write: never backwards, ending at all 40
    assert reports[-1] == (40, 40) and all(total == 40 for _, total in reports)
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)


def test_shards_are_disjoint_contiguous_and_cover():
    for chunks in (1, 5, 8):
        for world in (1, 2, 3):
            parts = [shard(chunks, r, world) for r in range(world)]
            assert sum(parts, []) == list(range(chunks))


def test_resize_lets_a_labeler_of_another_size_label(tmp_path, digits, labeler_ckpt):
    path = tmp_path / "big.dla.h5"
    big = torch.nn.functional.interpolate(torch.from_numpy(digits.images[:8]).float(), size=(48, 48),
                                          mode="bilinear", antialias=True).round().to(torch.uint8).numpy()
    with DLAWriter(path, num_classes=10, image_shape=(3, 48, 48), mean=(0.3,) * 3, std=(0.3,) * 3) as w:
        w.append(big, digits.labels[:8])
    with pytest.raises(InputError, match="--resize"):
        augment(path, labeler_ckpt, tmp_path / "o.dla.h5")
    out = augment(path, labeler_ckpt, tmp_path / "o.dla.h5", AugmentConfig(resize=True)).output
    assert verify(out) == []
    with open_dla(out) as f:
        assert f.boxes[0].tolist() == [0, 0, 30, 30]


def test_bad_inputs_are_refused_and_nothing_is_written(tmp_path, plain_set, labeler_ckpt, runner):
    out = tmp_path / "o.dla.h5"
    five = tmp_path / "five.dla.h5"
    with DLAWriter(five, num_classes=5, image_shape=(3, 32, 32), mean=(0.3,) * 3, std=(0.3,) * 3) as w:
        w.append(np.zeros((2, 3, 32, 32), np.uint8), [0, 1])
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(200))
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"weights": Evil()}))
    cases = [
        ([str(five), "--labeler", labeler_ckpt], "the labeler has 10 classes, the file 5"),
        ([str(plain_set), "--labeler", str(junk)], "not a safetensors labeler checkpoint"),
        ([str(plain_set), "--labeler", str(evil)], "pickles are refused"),
        ([str(plain_set), "--labeler", str(tmp_path / "missing.safetensors")], "no such checkpoint"),
        ([str(plain_set), "--labeler", labeler_ckpt, "-n", "0"], "grid size"),
    ]
    for args, message in cases:
        result = runner.invoke(main, ["augment", *args, "-o", str(out)])
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert lines[-1].startswith("ladd: error:") and message in lines[-1] and "Traceback" not in result.output
    assert not marker.exists() and not out.exists() and not work_folder(out).exists()
    out.write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match="exists; pass --force to replace it$"):    # CLI words only
        augment(plain_set, labeler_ckpt, out)
    result = runner.invoke(main, ["augment", str(plain_set), "--labeler", labeler_ckpt, "-o", str(out)])
    assert result.output.splitlines() == [f"ladd: error: {out}: exists; pass --force to replace it"]
    assert out.read_bytes() == b"keep"


def test_augment_config_takes_one_codec_value(tmp_path, plain_set, labeler_ckpt):
    out = tmp_path / "o.dla.h5"
    for bad, message in [("bfloat8", "unknown codec 'bfloat8'"), ("topk:k=11", "exceeds the number of classes 10"),
                         ("topk:k=3,values=int4", "values must be one of")]:
        with pytest.raises(CodecError, match=message) as info:
            augment(plain_set, labeler_ckpt, out, AugmentConfig(codec=bad))
        assert "\n" not in str(info.value)
        assert not out.exists() and not work_folder(out).exists()
    assert not hasattr(AugmentConfig(), "k") and not hasattr(AugmentConfig(), "topk_values")
    # a codec object works too; the file's provenance records the canonical text value
    augment(plain_set, labeler_ckpt, out, AugmentConfig(batch_size=16, codec=make_codec("topk", k=2, values="uint8")))
    with open_dla(out) as f:
        assert f.codec == make_codec("topk", k=2, values="uint8")
    with h5py.File(out) as f:
        report = json.loads(f["provenance"].attrs["report"])
    assert report["config"]["codec"] == "topk:k=2,values=uint8"


def _dense_content(path):
    """Everything of /dense and the data, without what differs between two runs (times, paths)."""
    with h5py.File(path) as f:
        g = f["dense"]
        out = {key: np.asarray(value).tolist() for key, value in g.attrs.items()}
        for name, ds in g.items():
            if isinstance(ds, h5py.Dataset):
                out[name] = (str(ds.dtype), ds.shape, ds.attrs["sha256"])
        out["labeler"] = {key: np.asarray(value).tolist() for key, value in g["labeler"].attrs.items()}
        out["images"] = f["images"].attrs["sha256"]
        out["config"] = json.loads(f["provenance"].attrs["report"])["config"]
    return out


def test_cli_augment_codec_text_equals_the_deprecated_flags(tmp_path, plain_set, labeler_ckpt, runner):
    new, old = tmp_path / "new.dla.h5", tmp_path / "old.dla.h5"
    common = [str(plain_set), "--labeler", labeler_ckpt, "--batch-size", "16"]
    result = runner.invoke(main, ["augment", *common, "-o", str(new), "--codec", "topk:k=3,values=uint8"])
    assert result.exit_code == 0, result.output
    assert "deprecated" not in result.output
    result = runner.invoke(main, ["augment", *common, "-o", str(old), "--codec", "topk", "--k", "3",
                                  "--topk-values", "uint8"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == ("ladd: warning: --k/--topk-values are deprecated; "
                                             "use --codec topk:k=3,values=uint8")
    assert verify(new) == [] and verify(old) == []
    assert _dense_content(new) == _dense_content(old)
    with open_dla(new) as f:
        assert f.codec == make_codec("topk", k=3, values="uint8")
    # only one deprecated flag: the other parameter keeps the codec's default
    one = tmp_path / "one.dla.h5"
    result = runner.invoke(main, ["augment", *common, "-o", str(one), "--codec", "topk", "--topk-values", "float32"])
    assert result.exit_code == 0, result.output
    assert "use --codec topk:k=10,values=float32" in result.stderr
    with open_dla(one) as f:
        assert f.codec == make_codec("topk", k=10, values="float32")


def test_to_labeler_input_handles_every_space():
    x8 = torch.full((1, 3, 2, 2), 51, dtype=torch.uint8)
    m, s = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
    one = torch.zeros(1, 3, 1, 1)
    assert torch.allclose(to_labeler_input(x8, "pixel255", m, s, one * 0, one + 1), torch.full((1, 3, 2, 2), 0.2))
    assert torch.allclose(to_labeler_input(torch.full((1, 3, 2, 2), 0.2), "pixel01", m, s, one * 0, one + 1),
                          torch.full((1, 3, 2, 2), 0.2))
    normalized = (torch.full((1, 3, 2, 2), 0.2) - m) / s
    assert torch.allclose(to_labeler_input(normalized, "normalized", m, s, one * 0, one + 1),
                          torch.full((1, 3, 2, 2), 0.2), atol=1e-6)


def test_cli_train_labeler_then_augment_gives_a_verified_dla(tmp_path, plain_set, runner):
    ckpts = tmp_path / "ckpts"
    result = runner.invoke(main, ["train-labeler", "digits", "-o", str(ckpts), "--arch", "convnet-d3", "--width", "8",
                                  "--epochs", "2", "--save-epochs", "1,2", "--batch-size", "256"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in ckpts.iterdir()) == ["labeler-e001.safetensors", "labeler-e002.safetensors",
                                                       "metrics.json"]
    again = runner.invoke(main, ["train-labeler", "digits", "-o", str(ckpts), "--epochs", "1", "--save-epochs", "1"])
    assert again.exit_code == 1 and "--force" in again.output
    out = tmp_path / "la.dla.h5"
    result = runner.invoke(main, ["augment", str(plain_set), "--labeler", str(ckpts / "labeler-e001.safetensors"),
                                  "-o", str(out), "--codec", "topk:k=3", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["verify", str(out)]).exit_code == 0
    bad = runner.invoke(main, ["train-labeler", "digits", "-o", str(tmp_path / "x"), "--arch", "alexnet"])
    assert bad.exit_code == 1 and "cannot take 32x32" in bad.output and not (tmp_path / "x").exists()


def test_crop_training_teaches_the_labeler_sub_images(tmp_path, digits):
    """A labeler that has seen crops down to R labels the R-sized sub-images better than one that has not."""
    from ladd_format.geometry import boxes
    base = TrainConfig(arch="convnet-d3", arch_kwargs={"width": 16}, epochs=6, save_epochs=(6,), batch_size=128)
    test = load_source("digits-test")
    hits = {}
    for crop in (1.0, 0.625):
        rec = train_labeler(digits, tmp_path / str(crop), replace(base, min_crop=crop))[-1]
        lab = load_checkpoint(rec["path"])
        mean = torch.tensor(lab.meta["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(lab.meta["std"]).view(1, 3, 1, 1)
        x = (torch.from_numpy(test.images).float() / 255 - mean) / std
        with torch.no_grad():
            sub = subimages(x, boxes(32, 32, 5, 0.625))[:, 12]             # the centre sub-image
            hits[crop] = float((lab.model.eval()(sub).argmax(-1).numpy() == test.labels).mean())
    assert hits[0.625] > hits[1.0] + 0.05, hits


def test_min_crop_out_of_range_is_refused(tmp_path, digits, runner):
    with pytest.raises(InputError, match="--min-crop must lie in"):
        train_labeler(digits, tmp_path / "x", replace(SMALL, min_crop=0.0))
    result = runner.invoke(main, ["train-labeler", "digits", "-o", str(tmp_path / "y"), "--min-crop", "1.5"])
    assert result.exit_code == 2 and "1.5" in result.output


def test_forward_batch_slices_give_the_same_labels_and_bad_settings_are_refused(tmp_path, plain_set, labeler_ckpt):
    whole = augment(plain_set, labeler_ckpt, tmp_path / "a.dla.h5",
                    AugmentConfig(batch_size=16, forward_batch=400)).output
    sliced = augment(plain_set, labeler_ckpt, tmp_path / "b.dla.h5",
                     AugmentConfig(batch_size=16, forward_batch=7)).output
    with open_dla(whole) as a, open_dla(sliced) as b:
        assert np.abs(a.dense() - b.dense()).max() < 1e-6
        assert b.provenance["report"]["config"]["precision"] == "float32"      # auto on the CPU
    for bad in ({"forward_batch": 0}, {"precision": "fp8"}):
        with pytest.raises(InputError):
            augment(plain_set, labeler_ckpt, tmp_path / "c.dla.h5", AugmentConfig(**bad))
    assert not (tmp_path / "c.dla.h5").exists()


def test_label_images_halves_the_forward_batch_on_out_of_memory():
    from types import SimpleNamespace

    from ladd_format.labeler.label_pass import label_images

    seen = []

    def model(x):                     # a labeler that "runs out of memory" above 10 sub-images
        seen.append(len(x))
        if len(x) > 10:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return x.mean(dim=(2, 3))[:, :2].repeat(1, 5)

    x = torch.rand(8, 3, 16, 16)
    boxes = np.array([[0, 0, 10, 10], [6, 6, 10, 10], [3, 3, 10, 10]])        # 24 sub-images
    probs, fitted = label_images(SimpleNamespace(model=model), x, boxes, (16, 16), 1.0, "float32", 64)
    assert seen == [24, 24, 16, 8, 8, 8]          # 64 -> 32 -> 16 -> 8, then three slices of 8
    assert fitted == 8 and probs.shape == (8, 3, 10)
    ref, _ = label_images(SimpleNamespace(model=lambda t: t.mean(dim=(2, 3))[:, :2].repeat(1, 5)), x, boxes,
                          (16, 16), 1.0, "float32", 64)
    assert torch.allclose(probs, ref)


def test_a_labeler_that_never_fits_gives_one_clear_error(tmp_path, plain_set, labeler_ckpt, runner):
    from types import SimpleNamespace

    from ladd_format.labeler.label_pass import label_images

    def model(x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(InputError, match="does not fit in GPU memory"):
        label_images(SimpleNamespace(model=model, path="lab.safetensors"), torch.rand(2, 3, 16, 16),
                     np.array([[0, 0, 10, 10]]), (16, 16), 1.0, "float32", 4)
    out = tmp_path / "x.dla.h5"
    result = runner.invoke(main, ["augment", str(plain_set), "--labeler", labeler_ckpt, "-o", str(out),
                                  "--forward-batch", "0"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--batch-size and --forward-batch must be >= 1, got 256 and 0" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


# -- issue 13: defaults that work, progress a log can see -------------------------------------------
def _error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("ladd: error:") and "Traceback" not in result.output, result.output
    return lines[-1]


@pytest.fixture
def ipc1_npz(tmp_path, digits):
    """One training image per class (IPC 1): a 10% validation split holds one image."""
    pick = np.array([np.flatnonzero(digits.labels == c)[0] for c in range(10)])
    path = tmp_path / "ipc1.npz"
    np.savez(path, images=digits.images[pick], labels=digits.labels[pick])
    return path


def test_default_save_epochs_follow_epochs(tmp_path, ipc1_npz, runner):
    from ladd_format.labeler.train import default_save_epochs
    assert default_save_epochs(50) == (10, 20, 30, 40, 50)
    assert default_save_epochs(5) == (1, 2, 3, 4, 5)
    assert default_save_epochs(7) == (2, 3, 5, 6, 7)
    assert default_save_epochs(3) == (1, 2, 3) and default_save_epochs(1) == (1,)
    assert TrainConfig().save_epochs is None
    out = tmp_path / "ckpts"
    result = runner.invoke(main, ["train-labeler", str(ipc1_npz), "-o", str(out), "--arch", "convnet-d3",
                                  "--width", "4", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["labeler-e001.safetensors",
                                                                 "labeler-e002.safetensors"]
    assert json.loads((out / "metrics.json").read_text())["config"]["save_epochs"] == [1, 2]


def test_save_epochs_errors_name_the_option(tmp_path, digits, runner):
    out = tmp_path / "ckpts"
    line = _error_line(runner.invoke(main, ["train-labeler", "digits", "-o", str(out), "--epochs", "5",
                                            "--save-epochs", "10,20,3"]))
    assert "--save-epochs 10,20 lie outside 1..5 (--epochs 5)" in line and not out.exists()
    bad = runner.invoke(main, ["train-labeler", "digits", "-o", str(out), "--save-epochs", "ten"])
    assert bad.exit_code == 2 and "'--save-epochs'" in bad.output and "ten" in bad.output
    with pytest.raises(InputError, match=r"--save-epochs 9 lies outside 1\.\.3 \(--epochs 3\)"):
        train_labeler(digits, tmp_path / "x", replace(SMALL, save_epochs=(9,)))
    with pytest.raises(InputError, match="--save-epochs names no epoch"):
        train_labeler(digits, tmp_path / "x", replace(SMALL, save_epochs=()))


def test_a_validation_split_missing_classes_is_named(tmp_path, ipc1_npz, runner, monkeypatch):
    from ladd_format.labeler.train import validation_coverage
    labels = np.arange(10)
    assert validation_coverage(labels, np.arange(10), [str(c) for c in range(10)]) is None
    assert validation_coverage(labels, np.array([], int), [str(c) for c in range(10)]) is None
    note = validation_coverage(labels, np.array([4]), [str(c) for c in range(10)])
    assert note.startswith("the validation split (1 image(s)) misses 9 of the 10 classes (0, 1, 2, 3, 5, 6, 7, 8, "
                           "9)")
    monkeypatch.setenv("LADD_PROGRESS_INTERVAL", "0")
    result = runner.invoke(main, ["train-labeler", str(ipc1_npz), "-o", str(tmp_path / "a"), "--arch", "convnet-d3",
                                  "--width", "4", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("ladd: warning:")]
    assert len(warning) == 1 and "misses 9 of the 10 classes" in warning[0]
    assert "train-labeler: 1/1 epochs (100%)" in result.stderr          # progress a log sees


def test_no_validation_set_is_said_so(tmp_path, ipc1_npz, runner):
    out = tmp_path / "a"
    result = runner.invoke(main, ["train-labeler", str(ipc1_npz), "-o", str(out), "--arch", "convnet-d3",
                                  "--width", "4", "--epochs", "1", "--val-split", "0"])
    assert result.exit_code == 0, result.output
    assert "no validation set" in result.stdout and "val acc" not in result.stdout and "warning" not in result.output
    lab = load_checkpoint(out / "labeler-e001.safetensors")
    assert lab.meta["val_accuracy"] is None and lab.meta["val_entropy"] is None
    bad = runner.invoke(main, ["train-labeler", str(ipc1_npz), "-o", str(out), "--val-split", "1", "--force"])
    assert "--val-split must lie in [0, 1), got 1.0" in _error_line(bad)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_checkpoints_follow_the_umask(tmp_path, mask, mode):
    from ladd_format.labeler import save_checkpoint
    old = os.umask(mask)
    try:
        path = save_checkpoint(torch.nn.Linear(2, 2), {"arch": "test"}, tmp_path / "c.safetensors")
        metrics = tmp_path / "m.json"
        metrics.write_text("{}")                     # what every other output gets
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == mode == os.stat(metrics).st_mode & 0o777


def test_an_interrupted_augment_says_what_it_kept_and_how_to_resume(tmp_path, plain_set, labeler_ckpt, runner,
                                                                   monkeypatch):
    import shlex

    import ladd_format.labeler.label_pass as A
    whole = augment(plain_set, labeler_ckpt, tmp_path / "whole.dla.h5", AugmentConfig(batch_size=8)).output
    out = tmp_path / "o.dla.h5"
    real, calls = A.label_images, []

    def interrupted(*args, **kwargs):          # Ctrl-C while the third chunk is labeled
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(A, "label_images", interrupted)
    result = runner.invoke(main, ["augment", str(plain_set), "--labeler", labeler_ckpt, "-o", str(out),
                                  "--batch-size", "8"])
    assert result.exit_code == 130, result.output
    command = (f"ladd augment {plain_set} --labeler {labeler_ckpt} --output {out} --batch-size 8 --resume")
    assert result.stderr.splitlines()[-1] == (
        f"ladd: interrupted; kept 2 of 5 labeled chunk(s) (16 of 40 images) in {work_folder(out)}; "
        f"to label only the rest, run: {command}")
    assert not out.exists()
    monkeypatch.setattr(A, "label_images", real)
    resumed = runner.invoke(main, shlex.split(command)[1:])
    assert resumed.exit_code == 0, resumed.output
    assert (f"note: resumed: 2 of 5 chunks (16 of 40 images) were already labeled in {work_folder(out)}; "
            "labeling the other 3") in resumed.stderr
    assert verify(out) == [] and dense_digest(out) == dense_digest(whole)

    calls.clear()
    monkeypatch.setattr(A, "label_images", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    early = runner.invoke(main, ["augment", str(plain_set), "--labeler", labeler_ckpt, "-o", str(tmp_path / "e.h5")])
    assert early.exit_code == 130 and early.stderr.splitlines()[-1] == "ladd: interrupted; nothing was written"


def test_augment_progress_lines_in_a_log_and_verbose_chunk_lines(tmp_path, plain_set, labeler_ckpt, runner,
                                                                 monkeypatch):
    import logging
    monkeypatch.setenv("LADD_PROGRESS_INTERVAL", "0")
    args = ["augment", str(plain_set), "--labeler", labeler_ckpt, "--batch-size", "8"]
    try:
        result = runner.invoke(main, [*args, "-o", str(tmp_path / "a.dla.h5")])
        verbose = runner.invoke(main, ["-v", *args, "-o", str(tmp_path / "b.dla.h5")])
    finally:
        logging.getLogger("ladd_format").setLevel(logging.NOTSET)
    assert result.exit_code == 0 and verbose.exit_code == 0, result.output + verbose.output
    lines = [line.split(" images")[0] for line in result.stderr.splitlines() if line.startswith("augment: ")]
    assert lines == [f"augment: {n}/40" for n in (0, 8, 16, 24, 32, 40)]
    assert "chunk" not in result.stderr
    assert "chunk 1/5 saved: images 0..7 labeled" in verbose.stderr
    assert "chunk 5/5 saved: images 32..39 labeled" in verbose.stderr


def test_augment_keeps_the_plain_sets_optional_root_attributes(tmp_path, digits, labeler_ckpt):
    """learned_lr (DATM) and imagenet_class_ids (ImageNet subsets) survive the labeler pass, with
    the attributes DLAWriter takes by name."""
    src = tmp_path / "d.dla.h5"
    ids = np.arange(100, 110, dtype=np.int64)
    with DLAWriter(src, num_classes=10, image_shape=(3, 32, 32), mean=(0.3,) * 3, std=(0.3,) * 3,
                   source_dataset="imagenette", distillation="datm", ipc=2,
                   root_attrs={"learned_lr": 0.0125, "imagenet_class_ids": ids}) as w:
        w.append(digits.images[:20], digits.labels[:20])
    out = augment(src, labeler_ckpt, tmp_path / "la.dla.h5", AugmentConfig(batch_size=16)).output
    with open_dla(out) as f:
        attrs = f.attrs
        assert float(attrs["learned_lr"]) == 0.0125 and np.array_equal(attrs["imagenet_class_ids"], ids)
        assert (attrs["source_dataset"], attrs["distillation"], int(attrs["ipc"])) == ("imagenette", "datm", 2)
    assert verify(out) == []


# -- issue 29: one AugmentConfig, a result object, progress in images, an interrupt that says what it kept --
def test_the_torchrun_entry_point_builds_its_options_from_augment_config():
    """The torchrun parser has every AugmentConfig option (it had no --forward-batch and no
    --precision), with AugmentConfig's defaults: parsing no option gives AugmentConfig()."""
    from ladd_format.augment_config import augment_options
    from ladd_format.labeler.distributed import parser

    required = ["in.dla.h5", "--labeler", "l.safetensors", "-o", "out.dla.h5"]
    assert AugmentConfig.from_values(vars(parser().parse_args(required))) == AugmentConfig()
    given = parser().parse_args(required + ["--forward-batch", "7", "--precision", "float32", "-n", "3", "--force",
                                            "--zca-stats", "z.npz"])
    assert AugmentConfig.from_values(vars(given)) == AugmentConfig(forward_batch=7, precision="float32", n=3,
                                                                   overwrite=True, zca_stats="z.npz")
    usage = parser().format_usage()
    assert all(f"[{option.flags[0]}" in usage for option in augment_options())


def test_augment_options_are_the_config_fields_with_their_defaults():
    import dataclasses

    from ladd_format.augment_config import augment_options
    options = augment_options()
    assert [o.name for o in options] == [f.name for f in dataclasses.fields(AugmentConfig)]
    assert {o.name: o.default for o in options} == dataclasses.asdict(AugmentConfig())
    assert {o.name: o.type for o in options}["forward_batch"] is int and all(o.help for o in options)
    assert [o.flags for o in options if o.name == "overwrite"] == [("--force",)]


def test_augment_returns_what_it_did_and_reports_progress_in_images(tmp_path, plain_set, labeler_ckpt):
    seen = []
    result = augment(plain_set, labeler_ckpt, tmp_path / "o.dla.h5", AugmentConfig(batch_size=16),
                     progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 40), (16, 40), (32, 40), (40, 40)]          # 40 images in chunks of 16
    assert (result.output, result.num_images, result.chunks) == (tmp_path / "o.dla.h5", 40, 3)
    assert (result.resumed_chunks, result.resumed_images, result.labeled) == (0, 0, 40)
    assert result.seconds > 0 and verify(result.output) == []


def test_an_interrupted_pass_says_what_it_kept_and_a_resumed_one_what_it_found(tmp_path, plain_set, labeler_ckpt,
                                                                              monkeypatch):
    import ladd_format.labeler.label_pass as A
    from ladd_format.labeler import AugmentInterrupted

    out = tmp_path / "o.dla.h5"
    real, calls = A.label_images, []

    def interrupted(*args, **kwargs):          # Ctrl-C while the third chunk is labeled
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(A, "label_images", interrupted)
    with pytest.raises(AugmentInterrupted) as caught:
        augment(plain_set, labeler_ckpt, out, AugmentConfig(batch_size=8))
    kept = caught.value.kept
    assert (kept.work, kept.chunks, kept.total_chunks, kept.images, kept.num_images) == (work_folder(out), 2, 5, 16, 40)
    assert isinstance(caught.value, KeyboardInterrupt) and not out.exists()
    monkeypatch.setattr(A, "label_images", real)
    result = augment(plain_set, labeler_ckpt, out, AugmentConfig(batch_size=8), resume=True)
    assert (result.resumed_chunks, result.resumed_images, result.labeled, result.chunks) == (2, 16, 24, 5)


def test_an_interrupt_before_any_chunk_keeps_nothing(tmp_path, plain_set, labeler_ckpt, monkeypatch):
    import ladd_format.labeler.label_pass as A
    from ladd_format.labeler import AugmentInterrupted

    monkeypatch.setattr(A, "label_images", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(AugmentInterrupted) as caught:
        augment(plain_set, labeler_ckpt, tmp_path / "o.dla.h5", AugmentConfig(batch_size=8))
    assert caught.value.kept is None
