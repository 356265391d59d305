"""Spec 1.3's low-rank tail written by the producers of relabel streams: ``ladd relabel`` and ``ladd convert
sre2l --relabel`` take the default codec from ``default_stream_codec(C)`` (top-5 in uint8 with a rank-24 tail
above 41 classes, ``uint8`` up to 41), fit the tail basis on the teacher's logits of the first
min(Q, TAIL_FIT_RECORDS) records in stream order before the first batch is written, and keep the bytes of a
resumed or sharded pass equal to one uninterrupted process's. Tiny sets (16 x 16 images), tiny random teachers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import cli, ok, one_line, write_dla

from ladd_format import open_dla, verify
from ladd_format.errors import InputError
from ladd_format.labeler import relabel_pass
from ladd_format.labeler.relabel_pass import TAIL_FILE, RelabelConfig, RelabelInterrupted, relabel, work_folder
from ladd_format.labeler.teacher import load_teacher, teacher_logits
from ladd_format.relabel import convert as relabel_convert
from ladd_format.stream import DEFAULT_STREAM_CODEC, TailBasis, default_stream_codec, parse_stream_codec
from ladd_format.stream.codec import softmax64
from ladd_format.stream.tail import encode_tail
from ladd_format.torch.stream_crops import crop_batch, source_floats

from test_convert_relabel import CROP, experiment, refused, stream_batches, tiny_teacher
from test_convert_relabel import run as convert
from test_relabel_command import EPOCH, make_teacher

M, SIDE = 12, 16
C = 50                                  # more than 41 classes: the default codec has a tail
#: 3 epochs of 12 images in batches of 5 (3 batches an epoch, the last of 2): Q = 36 records
CONFIG = RelabelConfig(epochs=3, batch_size=5, device="cpu")
ARGS = ["--epochs", "3", "--batch-size", "5", "--device", "cpu"]


@pytest.fixture(scope="module")
def teacher50(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("teacher50") / "t.safetensors", num_classes=C)


@pytest.fixture
def source50(tmp_path):
    return write_dla(tmp_path / "in.dla.h5", m=M, c=C, side=SIDE, n=2, codec="uint8")


def record_logits(out, teacher) -> np.ndarray:
    """float64 (Q, C): the teacher's logits of every record of ``out``'s stream in stream order, from the
    crops rebuilt from the stored records (the replay kernel: bit-identical to what the pass labelled)."""
    lab = load_teacher(teacher)
    rows = []
    with open_dla(out) as f:
        s, images = f.stream, f.images()
        for b in range(s.num_batches):
            batch = s.read_batch(b)
            crops = crop_batch(source_floats(images[batch.image], f.space), batch.box, batch.flip,
                               s.spec.crop_size, mix=s.spec.mix, mix_partner=batch.mix_partner, mix_box=batch.mix_box)
            rows.append(teacher_logits(lab, crops).numpy().astype(np.float64))
    return np.concatenate(rows)


def captured_energy(rows: np.ndarray, tail: TailBasis) -> float:
    """The fraction of the centred rows' squared norm inside the span of the tail's basis."""
    centred = rows - tail.mean.astype(np.float64)
    q, _ = np.linalg.qr(tail.basis.astype(np.float64).T)
    return float(np.sum((centred @ q) ** 2) / np.sum(centred ** 2))


def kl_rows(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over rows of KL(p || q), float64, q floored at 1e-30."""
    p, q = p.astype(np.float64), np.maximum(q.astype(np.float64), 1e-30)
    return float(np.mean(np.sum(np.where(p > 0, p * (np.log(np.maximum(p, 1e-300)) - np.log(q)), 0.0), axis=1)))


def retemper(q: np.ndarray, stored_t: float, t: float) -> np.ndarray:
    """q^(T_s / t), each row renormalised (what a student at temperature t takes from a probs stream)."""
    v = np.power(q.astype(np.float64), stored_t / t)
    return v / v.sum(axis=1, keepdims=True)


# -- the default codec -------------------------------------------------------------------------------------
def test_default_codec_by_class_count():
    assert default_stream_codec(41).label == "uint8"
    assert default_stream_codec(42).label == DEFAULT_STREAM_CODEC == "topk:k=5,values=uint8,tail=24"
    assert default_stream_codec(42).tail_rank == 24


def test_relabel_of_42_classes_or_more_writes_a_verified_tail(tmp_path, runner, source50, teacher50):
    out = tmp_path / "o.dla.h5"
    ok(runner, "relabel", source50, "--teacher", teacher50, "-o", out, *ARGS)
    assert verify(out) == []
    with h5py.File(out) as h:
        assert "stream/tail" in h and int(h["stream/tail"].attrs["rank"]) == 24
        assert h["stream/tail/coef"].shape == (36, 24) and h["stream/tail/scale"].shape == (36,)
    z = record_logits(out, teacher50)
    with open_dla(out) as f:
        s = f.stream
        assert s.spec.codec.label == DEFAULT_STREAM_CODEC
        tail = s.tail
        assert tail is not None and tail.rank == 24 and tail.num_classes == C
        # fitted on the first min(Q, 4096) = all 36 records' logits: their mean, and a basis spanning what
        # the best rank-24 basis of those rows spans (36 rows: at least the leading 24 directions)
        np.testing.assert_allclose(tail.mean, z.mean(axis=0), rtol=0, atol=1e-4)
        centred = z - z.mean(axis=0)
        sv = np.linalg.svd(centred, compute_uv=False)
        best = float(np.sum(sv[:24] ** 2) / np.sum(sv ** 2))
        assert captured_energy(z, tail) == pytest.approx(best, abs=1e-4)
        # every record's tail is encode_tail of its logits in that basis (a coefficient may round the other way)
        coef, scale = [], []
        for b in range(s.num_batches):
            labels = s.read_batch(b).labels
            coef.append(labels["tail/coef"])
            scale.append(labels["tail/scale"])
        want_coef, want_scale = encode_tail(z, tail)
        np.testing.assert_allclose(np.concatenate(scale).astype(np.float64), want_scale.astype(np.float64),
                                   rtol=2e-3, atol=0)
        assert np.abs(np.concatenate(coef).astype(np.int64) - want_coef.astype(np.int64)).max() <= 1


def test_relabel_fits_on_the_first_records_in_stream_order(tmp_path, monkeypatch, source50, teacher50):
    """With TAIL_FIT_RECORDS = 7 (a batch and two records of the next), the basis's mean is the mean of
    the first 7 records' logits, not of all 36."""
    monkeypatch.setattr(relabel_pass, "TAIL_FIT_RECORDS", 7)
    labelled: list[int] = []
    label_batch = relabel_pass.label_batch

    def counted(plan, draw, *args):
        labelled.append(len(draw))
        return label_batch(plan, draw, *args)
    monkeypatch.setattr(relabel_pass, "label_batch", counted)
    out = relabel(source50, teacher50, tmp_path / "o.dla.h5", CONFIG).output
    assert labelled == [5, 5, 2] * 3            # the pre-pass's two batches are not labeled again
    z = record_logits(out, teacher50)
    with open_dla(out) as f:
        tail = f.stream.tail
    np.testing.assert_allclose(tail.mean, z[:7].mean(axis=0), rtol=0, atol=1e-4)
    assert np.abs(tail.mean - z.mean(axis=0)).max() > 1e-2
    # 7 rows centred have rank 6: 6 vectors, the rest zero rows (not rounding noise)
    assert np.all(tail.basis[6:] == 0) and np.all(np.abs(tail.basis[:6]).max(axis=1) > 0)


def test_relabel_of_41_classes_takes_uint8(tmp_path, runner):
    src = write_dla(tmp_path / "in.dla.h5", m=6, c=41, side=SIDE, n=2, codec="uint8")
    teacher = make_teacher(tmp_path / "t.safetensors", num_classes=41)
    out = tmp_path / "o.dla.h5"
    ok(runner, "relabel", src, "--teacher", teacher, "-o", out, "--epochs", "1", "--batch-size", "6",
       "--device", "cpu")
    with open_dla(out) as f:
        assert f.stream.spec.codec.label == "uint8" and f.stream.tail is None
    with h5py.File(out) as h:
        assert "stream/tail" not in h


@pytest.mark.parametrize("codec, message", [
    ("topk:k=5,values=uint8,tail=300", "tail must be an integer rank from 1 to 256"),
    ("topk:k=5,values=uint8,tail=60", "tail rank 60 exceeds min(C, 256) = 50"),
    ("topk:k=50,values=uint8,tail=4", "a tail needs k < C"),
])
def test_relabel_refuses_a_typed_tail_the_classes_cannot_hold(tmp_path, runner, source50, teacher50, codec,
                                                               message):
    before = sorted(p.name for p in tmp_path.iterdir())
    line = one_line(cli(runner, "relabel", source50, "--teacher", teacher50, "-o", tmp_path / "o.dla.h5", *ARGS,
                        "--codec", codec))
    assert message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# -- resume and shards ------------------------------------------------------------------------------------
def test_interrupted_then_resumed_with_a_tail_gives_the_uninterrupted_bytes(tmp_path, monkeypatch, source50,
                                                                           teacher50):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    whole = relabel(source50, teacher50, tmp_path / "whole.dla.h5", CONFIG).output
    out = tmp_path / "cut.dla.h5"

    def stop_in_epoch_two(done, total):
        if done > M + 5:                          # epoch 0 saved, epoch 1 under way
            raise KeyboardInterrupt
    with pytest.raises(RelabelInterrupted) as info:
        relabel(source50, teacher50, out, CONFIG, progress=stop_in_epoch_two)
    assert info.value.kept.epochs == 1 and not out.exists()
    assert (work_folder(out) / TAIL_FILE).is_file()          # the basis epoch 0 was encoded with
    result = relabel(source50, teacher50, out, CONFIG, resume=True)
    assert result.resumed_epochs == 1
    assert out.read_bytes() == whole.read_bytes()


def test_a_resumed_pass_encodes_with_the_stored_basis(tmp_path, monkeypatch, source50, teacher50):
    """The work folder's basis is the one the rest of the pass uses (not fitted again); a damaged one is
    refused in one line naming it."""
    out = tmp_path / "cut.dla.h5"
    with pytest.raises(RelabelInterrupted):
        relabel(source50, teacher50, out, CONFIG,
                progress=lambda d, t: (_ for _ in ()).throw(KeyboardInterrupt) if d > M + 5 else None)
    path = work_folder(out) / TAIL_FILE
    with np.load(path) as z:
        mean, basis = z["mean"], z["basis"]
        labels = {name.removeprefix("labels/"): z[name] for name in z.files if name.startswith("labels/")}
    other = TailBasis(mean + np.float32(0.5), -basis)
    relabel_pass._save_prefix(path, relabel_pass.TailPrefix(other, labels))
    relabel(source50, teacher50, out, CONFIG, resume=True)
    with open_dla(out) as f:
        assert f.stream.tail == other
    # a damaged basis file
    with pytest.raises(RelabelInterrupted):
        relabel(source50, teacher50, out, RelabelConfig(epochs=3, batch_size=5, device="cpu", overwrite=True),
                progress=lambda d, t: (_ for _ in ()).throw(KeyboardInterrupt) if d > M + 5 else None)
    good = path.read_bytes()
    with np.load(path) as z:
        mean, basis, digest = z["mean"], z["basis"], z["sha256"]
        labels = {name.removeprefix("labels/"): z[name] for name in z.files if name.startswith("labels/")}
    raw = bytearray(good)
    raw[good.find(basis.tobytes()[:16])] ^= 0x40                   # a flipped bit: the zip's CRC fails
    path.write_bytes(bytes(raw))
    again = RelabelConfig(epochs=3, batch_size=5, device="cpu", overwrite=True)
    with pytest.raises(InputError, match="tail basis file is unreadable") as info:
        relabel(source50, teacher50, out, again, resume=True)
    assert "\n" not in str(info.value) and TAIL_FILE in str(info.value)
    changed = basis.copy()
    changed[0, 0] += 1                                              # a readable file whose basis is not its digest's
    with open(path, "wb") as fh:
        np.savez(fh, mean=mean, basis=changed, sha256=digest, **{f"labels/{k}": v for k, v in labels.items()})
    with pytest.raises(InputError, match="tail basis file does not match its digest"):
        relabel(source50, teacher50, out, again, resume=True)


@pytest.mark.mutation_skip
def test_two_gloo_processes_with_a_tail_give_the_single_process_file(tmp_path, monkeypatch, runner, source50,
                                                                    teacher50):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    single = tmp_path / "one.dla.h5"
    ok(runner, "relabel", source50, "--teacher", teacher50, "-o", single, *ARGS)
    sharded = relabel_pass.relabel_sharded(source50, teacher50, tmp_path / "two.dla.h5", CONFIG, shards=2).output
    with h5py.File(sharded) as h:
        assert "stream/tail" in h
    assert sharded.read_bytes() == single.read_bytes()


# -- ladd convert sre2l --relabel ------------------------------------------------------------------------
def tail_experiment(tmp_path, classes=C, **kwargs):
    """An SRe2L-layout image tree and relabel folder of ``classes`` classes (1 image each, batches of 8, 2
    epochs), the logits a tiny teacher's (structured, as a real teacher's are)."""
    return experiment(tmp_path, classes=tuple(range(classes)), ipc=1, epochs=2, batch_size=8,
                      teacher=tiny_teacher(None, classes, seed=3), **kwargs)


def folder_logits(written) -> np.ndarray:
    """float32 (Q, C): the folder's float16 logits in stream order (epochs, then batches)."""
    keys = sorted(written.batches)
    return np.concatenate([written.batches[key][5].numpy().astype(np.float32) for key in keys])


def test_convert_with_the_default_codec_fits_a_tail_closer_at_t20(tmp_path, runner):
    exp, written = tail_experiment(tmp_path)
    out = tmp_path / "set.dla.h5"
    result = convert(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "-o", out)
    assert result.exit_code == 0, result.output
    assert verify(out) == []
    z = folder_logits(written)
    spec, batches, _ = stream_batches(out)
    assert spec.codec.label == DEFAULT_STREAM_CODEC
    with open_dla(out) as f:
        tail = f.stream.tail
        assert "rank 24" in f.provenance["report"]["stream"]["tail"]
    np.testing.assert_allclose(tail.mean, z.astype(np.float64).mean(axis=0), rtol=0, atol=1e-5)   # Q = 100 < 4096
    labels = {key: np.concatenate([b.labels[key] for b in batches]) for key in batches[0].labels}
    with_tail = spec.codec.decode(labels, C, tail=tail)
    even = spec.codec.codec.decode({k: v for k, v in labels.items() if not k.startswith("tail/")}, C)
    for t in (20.0, 1.0):                        # SRe2L's students' temperature, and the stored one
        target = softmax64(z.astype(np.float64), t)
        kl_tail = kl_rows(target, retemper(with_tail, 1.0, t))
        kl_even = kl_rows(target, retemper(even, 1.0, t))
        assert kl_tail < 0.5 * kl_even, (t, kl_tail, kl_even)


def test_convert_fits_on_the_first_records_in_stream_order(tmp_path, runner, monkeypatch):
    monkeypatch.setattr(relabel_convert, "TAIL_FIT_RECORDS", 10)     # batch 0 (8 records) and 2 of batch 1
    exp, written = tail_experiment(tmp_path)
    out = tmp_path / "set.dla.h5"
    assert convert(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "-o", out).exit_code == 0
    z = folder_logits(written).astype(np.float64)
    with open_dla(out) as f:
        tail = f.stream.tail
    np.testing.assert_allclose(tail.mean, z[:10].mean(axis=0), rtol=0, atol=1e-5)
    assert np.abs(tail.mean - z.mean(axis=0)).max() > 1e-2


def test_convert_of_an_lpld_pool_gets_a_tail(tmp_path, runner):
    exp, written = tail_experiment(tmp_path, lpld_steps=9)
    out = tmp_path / "set.dla.h5"
    result = convert(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "-o", out)
    assert result.exit_code == 0, result.output
    assert verify(out) == []
    spec, _, _ = stream_batches(out)
    with open_dla(out) as f:
        assert spec.mode == "pool" and f.stream.tail is not None and f.stream.tail.rank == 24


def test_convert_keeps_logits_float16_without_a_tail(tmp_path, runner):
    exp, written = tail_experiment(tmp_path)
    out = tmp_path / "set.dla.h5"
    result = convert(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--stream-codec",
                     "logits:float16", "-o", out)
    assert result.exit_code == 0, result.output
    _, batches, _ = stream_batches(out)
    stored = np.concatenate([b.labels["logits"] for b in batches])
    want = np.concatenate([written.batches[key][5].numpy() for key in sorted(written.batches)])
    assert np.array_equal(stored.view(np.uint16), want.view(np.uint16))
    with h5py.File(out) as h:
        assert "stream/tail" not in h


def test_convert_of_41_classes_takes_uint8(tmp_path, runner):
    exp, written = tail_experiment(tmp_path, classes=41)
    out = tmp_path / "set.dla.h5"
    result = convert(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "-o", out)
    assert result.exit_code == 0, result.output
    assert "41 classes: stored as uint8" in result.output
    spec, _, _ = stream_batches(out)
    assert spec.codec.label == "uint8"


@pytest.mark.parametrize("codec, message", [
    ("topk:k=5,values=uint8,tail=300", "tail must be an integer rank from 1 to 256"),
    ("topk:k=5,values=uint8,tail=60", "tail rank 60 exceeds min(C, 256) = 50"),
])
def test_convert_refuses_a_typed_tail_the_classes_cannot_hold(tmp_path, runner, codec, message):
    exp, written = experiment(tmp_path, classes=tuple(range(C)), ipc=1, epochs=1, batch_size=8)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = convert(runner, "sre2l", exp, "--relabel", written.root, "--crop-size", CROP, "--stream-codec", codec,
                     "-o", tmp_path / "o.dla.h5")
    refused(result, tmp_path, before, message)

