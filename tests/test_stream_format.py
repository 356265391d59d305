"""Relabel streams (spec 1.2, 4.7): the writer's DLAWriter(stream=...).append_stream, the reader's
DLAFile.stream, the stream codecs, and the writer's refusals."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

from ladd_format import DLAWriter, LaddError, open_dla
from ladd_format import spec as S
from ladd_format.codecs import make_codec
from ladd_format.errors import NoStreamError
from ladd_format.spec.rules import Rule
from ladd_format.stream import DEFAULT_STREAM_CODEC, StreamBatch, StreamSpec, parse_stream_codec
from ladd_format.stream.codec import softmax64

from conftest import MEAN, STD, write_dla

C = 10
M = 7
SIDE = 16
CROP = (12, 10)
#: batch lengths per epoch: unequal counts and lengths (B = 4)
EPOCHS = ([4, 2, 3], [4], [1, 4])
CODECS = ["topk:k=3,values=uint8", "topk:k=3,values=float16", "uint8", "float16", "float32",
          "logits:float16", "logits:float32"]
MIXES = ["none", "cutmix", "mixup"]


def make_batches(mix: str, epochs=EPOCHS, seed: int = 0, num_images: int = M) -> list[dict]:
    """The append_stream arguments of every batch, in order (logits as float64)."""
    rng = np.random.default_rng(seed)
    out = []
    for e, lengths in enumerate(epochs):
        for n in lengths:
            h = rng.integers(1, SIDE + 1, n)
            w = rng.integers(1, SIDE + 1, n)
            top = rng.integers(0, SIDE - h + 1)
            left = rng.integers(0, SIDE - w + 1)
            kw = dict(epoch=e, image=rng.integers(0, num_images, n), box=np.stack([top, left, h, w], 1),
                      flip=rng.integers(0, 2, n).astype(bool), logits=rng.normal(size=(n, C)) * 3)
            if mix != "none":
                kw["mix_partner"] = rng.permutation(n)
            if mix == "cutmix":
                kw["mix_box"] = np.array([2, 1, 5, 9])
            if mix == "mixup":
                kw["mix_lambda"] = float(rng.uniform())
            out.append(kw)
    return out


#: the default codec (top-5 with a rank-24 tail) needs C >= 24 and a tail basis: the small files here use
#: top-3 without a tail
SMALL_CODEC = parse_stream_codec("topk:k=3,values=uint8")


def write_stream(path, mix="none", codec=SMALL_CODEC, batches=None, epochs=EPOCHS, mode="epochs",
                 temperature=1.0, images_first=False, **spec_kw):
    """A small file with M images and a stream; returns (path, batches, spec)."""
    batches = make_batches(mix, epochs) if batches is None else batches
    spec = StreamSpec(epochs=len(epochs), batch_size=4, crop_size=CROP, mode=mode, mix=mix,
                      codec=parse_stream_codec(codec), temperature=temperature,
                      teacher={"arch": "convnet", "epochs": 5, "weights_sha256": "ab" * 32}, **spec_kw)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (M, 3, SIDE, SIDE), dtype=np.uint8)
    with DLAWriter(path, num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD, stream=spec,
                   converter="test") as w:
        if images_first:
            w.append(images, np.arange(M) % C)
        for kw in batches:
            w.append_stream(**kw)
        if not images_first:
            w.append(images, np.arange(M) % C)
    return path, batches, spec


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_every_codec_and_mix(tmp_path, codec, mix):
    path, batches, spec = write_stream(tmp_path / "s.dla.h5", mix, codec, temperature=2.0)
    sc = parse_stream_codec(codec)
    with open_dla(path) as f:
        assert f.has_stream
        s = f.stream
        assert (s.epochs, s.num_batches, s.num_records, s.num_classes) == (3, 6, 18, C)
        assert s.spec.codec.label == sc.label and s.spec.mix == mix and s.spec.temperature == 2.0
        assert [list(s.epoch_batches(e)) for e in range(3)] == [[0, 1, 2], [3], [4, 5]]
        read = [b for e in range(3) for b in s.read_epoch(e)]
        assert [len(b) for b in read] == [4, 2, 3, 4, 1, 4]
        assert [s.batch_length(b) for b in range(6)] == [4, 2, 3, 4, 1, 4]
        for b, (got, kw) in enumerate(zip(read, batches)):
            assert isinstance(got, StreamBatch) and got.index == b and got.epoch == kw["epoch"]
            np.testing.assert_array_equal(got.image, kw["image"])
            np.testing.assert_array_equal(got.box, kw["box"])
            np.testing.assert_array_equal(got.flip, kw["flip"])
            assert got.image.dtype == np.int64 and got.box.dtype == np.int64 and got.flip.dtype == bool
            if mix == "none":
                assert got.mix_partner is None and got.mix_box is None and got.mix_lambda is None
            else:
                np.testing.assert_array_equal(got.mix_partner, kw["mix_partner"])
            if mix == "cutmix":
                np.testing.assert_array_equal(got.mix_box, kw["mix_box"])
                assert got.mix_lambda is None
            if mix == "mixup":
                assert got.mix_lambda == pytest.approx(kw["mix_lambda"], abs=1e-7)   # stored as float32
                assert got.mix_box is None
            expected = sc.encode_logits(kw["logits"], 2.0)
            assert set(got.labels) == set(expected)
            for name in expected:
                np.testing.assert_array_equal(got.labels[name], expected[name])
                assert got.labels[name].dtype == expected[name].dtype
            probs = s.probs(got)
            assert probs.dtype == np.float32 and probs.shape == (len(got), C)
            np.testing.assert_allclose(probs.sum(1), 1, atol=4e-3)   # float16 probs decode as stored (6)
            if sc.kind == "logits" or sc.label in ("float32", "float16"):
                np.testing.assert_allclose(probs, softmax64(kw["logits"], 2.0), atol=2e-3)


def test_stream_dtypes_filters_and_digests_as_written(tmp_path):
    path, batches, _ = write_stream(tmp_path / "s.dla.h5", "cutmix", "topk:k=3,values=uint8")
    with h5py.File(path, "r") as h5:
        assert h5.attrs[S.VERSION_ATTR] in (S.FORMAT_VERSION.encode(), S.FORMAT_VERSION)
        g = h5[S.STREAM]
        assert g[S.STREAM_IMAGE].dtype == np.dtype("<i4")
        assert g[S.STREAM_BOX].dtype == np.dtype("<u2")
        assert g[S.STREAM_MIX_PARTNER].dtype == np.dtype("<u2")
        assert g[S.STREAM_MIX_BOX].dtype == np.dtype("<u2")
        assert g[S.STREAM_FLIP].dtype == np.uint8
        for name in (S.STREAM_IMAGE, S.STREAM_BOX, "topk_prob", S.STREAM_BATCH_START):
            assert g[name].compression == "gzip" and g[name].shuffle and g[name].fletcher32
        assert h5[S.IMAGES].compression is None
        names = [v.decode() for v in g[S.STREAM_BATCH_DIGESTS].attrs[S.ROW_DIGESTS_DATASETS]]
        assert names == ["/stream/image", "/stream/box", "/stream/flip", "/stream/mix_partner", "/stream/mix_box",
                         "/stream/topk_index", "/stream/topk_prob"]
        table = g[S.STREAM_BATCH_DIGESTS][()]
        assert table.shape == (6, 7, 32)
        starts = g[S.STREAM_BATCH_START][()]
        np.testing.assert_array_equal(starts, [0, 4, 6, 9, 13, 14])
        np.testing.assert_array_equal(g[S.STREAM_EPOCH_START][()], [0, 3, 4])
        # entry [b, d]: the SHA-256 of batch b's rows of dataset d (4.7), computed independently here
        bounds = list(zip(starts, [*starts[1:], 18]))
        for d, name in enumerate(names):
            data = h5[name][()]
            for b, (a, z) in enumerate(bounds):
                rows = data[b:b + 1] if name == "/stream/mix_box" else data[a:z]
                assert hashlib.sha256(np.ascontiguousarray(rows).tobytes()).digest() == table[b, d].tobytes()
        # /row_sha256 does not list the stream (2.2, 4.7)
        rows = [v.decode() for v in h5[S.ROW_DIGESTS].attrs[S.ROW_DIGESTS_DATASETS]]
        assert rows == ["/images", "/labels"]


def test_stream_appended_before_after_or_between_images_gives_the_same_arrays(tmp_path):
    a, batches, _ = write_stream(tmp_path / "a.dla.h5", "mixup", "float16")
    b, _, _ = write_stream(tmp_path / "b.dla.h5", "mixup", "float16", batches=batches, images_first=True)
    with open_dla(a) as fa, open_dla(b) as fb:
        assert fa.seal()["content_sha256"] == fb.seal()["content_sha256"]


def test_pool_mode_and_declaration_round_trip(tmp_path):
    path, _, spec = write_stream(tmp_path / "s.dla.h5", mode="pool", epochs=([4, 4, 4],),
                                 sampler={"replay": "lpld", "seed": 3}, augmentation={"scale": [0.08, 1.0]},
                                 resize=S.RESIZE_PIL)
    with open_dla(path) as f:
        s = f.stream
        assert s.spec.mode == "pool" and s.epochs == 1 and list(s.epoch_batches(0)) == [0, 1, 2]
        assert s.spec.sampler == {"replay": "lpld", "seed": 3}
        assert s.spec.augmentation == {"scale": [0.08, 1.0]}
        assert s.spec.resize == S.RESIZE_PIL and s.spec.crop_size == CROP and s.spec.batch_size == 4
        assert s.spec.teacher == {"arch": "convnet", "epochs": 5, "weights_sha256": "ab" * 32}
        assert s.spec == spec                     # the declaration reads back equal
        info = s.info()
        assert info["mode"] == "pool" and info["records"] == 12 and info["codec"] == "topk:k=3,values=uint8"
        assert f.info()["stream"]["batches"] == 3


def test_file_without_stream_reads_and_says_so(tmp_path):
    path = write_dla(tmp_path / "d.dla.h5")
    with open_dla(path) as f:
        assert not f.has_stream
        assert "stream" not in f.info()
        with pytest.raises(NoStreamError) as err:
            f.stream
        assert str(path) in str(err.value) and "/stream" in str(err.value)
    with h5py.File(path, "r") as h5:
        assert h5.attrs[S.VERSION_ATTR] in (S.FORMAT_VERSION.encode(), S.FORMAT_VERSION)


def test_non_stream_content_is_the_same_with_or_without_a_stream(tmp_path):
    """A 1.2 file's images, labels and dense labels are written as before: the same row digests and
    the same sha256 of every non-stream dataset, with a stream added or not."""
    path, _, _ = write_stream(tmp_path / "s.dla.h5")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (M, 3, SIDE, SIDE), dtype=np.uint8)
    plain = tmp_path / "p.dla.h5"
    with DLAWriter(plain, num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD, converter="test") as w:
        w.append(images, np.arange(M) % C)
    with h5py.File(path, "r") as a, h5py.File(plain, "r") as b:
        for name in (S.IMAGES, S.LABELS, S.ROW_DIGESTS):
            assert a[name].attrs[S.SHA256_ATTR] == b[name].attrs[S.SHA256_ATTR]
            np.testing.assert_array_equal(a[name][()], b[name][()])


# -- codecs ---------------------------------------------------------------------------------------
def test_parse_stream_codec_forms():
    assert parse_stream_codec(DEFAULT_STREAM_CODEC).label == "topk:k=5,values=uint8,tail=24"
    c = parse_stream_codec("logits:float16")
    assert (c.kind, c.codec, c.logits_dtype) == ("logits", None, "float16")
    assert c.layout(5) == {"logits": ((5,), np.dtype("<f2"))}
    p = parse_stream_codec("uint8")
    assert (p.kind, p.codec, p.label) == ("probs", make_codec("uint8"), "uint8")
    assert p.attrs() == {"kind": "probs", "codec": "uint8"}
    assert parse_stream_codec("topk:k=4,values=float16").attrs() == {"kind": "probs", "codec": "topk", "k": 4}
    assert parse_stream_codec(p) is p
    for bad in ("logits:int8", "logits", "nonsense"):
        with pytest.raises(LaddError) as err:
            parse_stream_codec(bad)
        assert "\n" not in str(err.value)


def test_decode_and_retempering():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, C)) * 4
    for label in ("logits:float32", "float32"):
        c = parse_stream_codec(label)
        stored = c.encode_logits(z, 2.0)
        np.testing.assert_allclose(c.decode(stored, C, stored_temperature=2.0), softmax64(z, 2.0), atol=1e-6)
        # taken to T = 5 (logits: softmax(z / 5); probs: q ** (2 / 5) renormalised)
        np.testing.assert_allclose(c.decode(stored, C, 5.0, stored_temperature=2.0), softmax64(z, 5.0), atol=1e-5)
        np.testing.assert_allclose(c.decode(stored, C, 0.5, stored_temperature=2.0), softmax64(z, 0.5), atol=1e-4)
    # a row of zeros (uint8 of a flat label over many classes) re-tempers to uniform, not NaN
    u = parse_stream_codec("uint8")
    out = u.decode({"probs": np.zeros((1, C), np.uint8)}, C, 0.5)
    np.testing.assert_allclose(out, np.full((1, C), 1 / C), atol=1e-7)
    # topk at the stored temperature equals the section-6 decode
    t = parse_stream_codec("topk:k=3,values=float16")
    stored = t.encode_logits(z, 1.0)
    np.testing.assert_array_equal(t.decode(stored, C), make_codec("topk", k=3, values="float16").decode(stored, C))


def test_logits_beyond_float16_are_refused():
    with pytest.raises(LaddError, match="float16 range"):
        parse_stream_codec("logits:float16").encode_logits(np.array([[1e5, 0.0]]), 1.0)
    with pytest.raises(LaddError, match="NaN"):
        parse_stream_codec("float32").encode_logits(np.array([[np.nan, 0.0]]), 1.0)


# -- writer refusals ------------------------------------------------------------------------------
def _refused(tmp_path, mutate, match, mix="cutmix", spec_kw=None, at_close=False):
    """Write a stream whose batches ``mutate`` edits; the writer must refuse in one line naming the
    destination, and leave nothing there."""
    dest = tmp_path / "out.dla.h5"
    batches = make_batches(mix)
    mutate(batches)
    spec = StreamSpec(epochs=len(EPOCHS), batch_size=4, crop_size=CROP, mix=mix,
                      **{"codec": SMALL_CODEC, **(spec_kw or {})})
    with pytest.raises(LaddError) as err:
        with DLAWriter(dest, num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD, stream=spec) as w:
            w.append(np.zeros((M, 3, SIDE, SIDE), np.uint8), np.arange(M) % C)
            for kw in batches:
                w.append_stream(**kw)
    message = str(err.value)
    assert "\n" not in message and str(dest) in message
    assert match in message, message
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    return err.value


def test_writer_refuses_an_epoch_going_back(tmp_path):
    def back(b):
        b[4]["epoch"] = 0       # after batch 3 of epoch 1
    _refused(tmp_path, back, "never back")


def test_writer_refuses_a_skipped_epoch(tmp_path):
    def skip(b):
        b[3]["epoch"] = 2
    _refused(tmp_path, skip, "none skipped")


def test_writer_refuses_wrong_shapes(tmp_path):
    def short_box(b):
        b[0]["box"] = b[0]["box"][:3]
    _refused(tmp_path, short_box, "/stream/box")

    def long_batch(b):
        for key in ("image", "flip", "mix_partner"):
            b[0][key] = np.concatenate([b[0][key], b[0][key][:1]])
        b[0]["box"] = np.concatenate([b[0]["box"], b[0]["box"][:1]])
        b[0]["logits"] = np.concatenate([b[0]["logits"], b[0]["logits"][:1]])
    _refused(tmp_path, long_batch, "batch_size 4")

    def wrong_logits(b):
        b[1]["logits"] = b[1]["logits"][:, :5]
    _refused(tmp_path, wrong_logits, "logits must be")


def test_writer_refuses_a_box_outside_the_image(tmp_path):
    def outside(b):
        b[2]["box"][1] = [10, 0, 7, 4]      # top + height = 17 > 16
    _refused(tmp_path, outside, "not inside 16 x 16")

    def empty(b):
        b[2]["box"][1] = [0, 0, 0, 4]
    _refused(tmp_path, empty, "/stream/box")


def test_writer_refuses_a_partner_outside_the_batch(tmp_path):
    def outside(b):
        b[1]["mix_partner"] = np.array([0, 2])   # batch of 2
    _refused(tmp_path, outside, "outside its batch")


def test_writer_refuses_a_mix_box_outside_the_crop(tmp_path):
    def outside(b):
        b[0]["mix_box"] = np.array([0, 0, 13, 1])   # crop is 12 x 10
    _refused(tmp_path, outside, "/stream/mix_box")


def test_writer_refuses_mix_arguments_of_another_mix(tmp_path):
    def lam(b):
        b[0]["mix_lambda"] = 0.5
    _refused(tmp_path, lam, "not allowed with mix 'cutmix'")
    _refused(tmp_path, lambda b: b[0].update(mix_lambda=1.5), "not in [0, 1]", mix="mixup")


def test_writer_refuses_an_image_index_at_or_beyond_m_at_close(tmp_path):
    def beyond(b):
        b[5]["image"][0] = M
    err = _refused(tmp_path, beyond, f"image index {M} is outside [0, M = {M})")
    assert err.where == "/stream/image"


def test_writer_refuses_fewer_epochs_than_declared(tmp_path):
    _refused(tmp_path, lambda b: b.__delitem__(slice(4, None)), "declares 3 epochs, 2 were appended")


def test_writer_refuses_stored_labels_of_the_wrong_dtype_or_tolerance(tmp_path):
    codec = parse_stream_codec("uint8")

    def wrong_dtype(b):
        b[0].pop("logits")
        b[0]["stored"] = {"probs": np.full((4, C), 0.1, np.float32)}
    _refused(tmp_path, wrong_dtype, "stored probs must be uint8", spec_kw={"codec": codec})

    def off_sum(b):
        b[0].pop("logits")
        b[0]["stored"] = {"probs": np.full((4, C), 200, np.uint8)}
    _refused(tmp_path, off_sum, "tolerance", spec_kw={"codec": codec})

    def both(b):
        b[0]["stored"] = {"probs": np.full((4, C), 26, np.uint8)}
    _refused(tmp_path, both, "exactly one of", spec_kw={"codec": codec})


def test_writer_takes_stored_labels_as_written(tmp_path):
    codec = parse_stream_codec("uint8")
    batches = make_batches("none", ([3],))
    stored = {"probs": np.array([[26] * 9 + [21]] * 3, np.uint8)}
    batches[0].pop("logits")
    batches[0]["stored"] = stored
    path, _, _ = write_stream(tmp_path / "s.dla.h5", "none", codec, batches=batches, epochs=([3],))
    with open_dla(path) as f:
        np.testing.assert_array_equal(f.stream.read_batch(0).labels["probs"], stored["probs"])


@pytest.mark.parametrize("kw, match", [
    ({"epochs": 0}, "epochs must be"), ({"batch_size": 1 << 17}, "batch_size must be"),
    ({"crop_size": (0, 4)}, "crop_size"), ({"mix": "blend"}, "mix must be"), ({"mode": "x"}, "mode must be"),
    ({"temperature": 0.0}, "temperature"), ({"teacher": {}}, "arch"),
    ({"codec": parse_stream_codec("topk:k=11,values=uint8")}, "exceeds the number of classes"),
])
def test_writer_refuses_a_bad_declaration(tmp_path, kw, match):
    dest = tmp_path / "out.dla.h5"
    spec = StreamSpec(**{"epochs": 1, "batch_size": 4, "crop_size": CROP, "codec": SMALL_CODEC, **kw})
    with pytest.raises(LaddError, match=match) as err:
        DLAWriter(dest, num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD, stream=spec)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_pil_resize_needs_uint8_images(tmp_path):
    spec = StreamSpec(epochs=1, batch_size=4, crop_size=CROP, resize=S.RESIZE_PIL, codec=SMALL_CODEC)
    with pytest.raises(LaddError, match="uint8"):
        DLAWriter(tmp_path / "o.dla.h5", num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD,
                  image_dtype="float32", space="pixel01", stream=spec)


def test_append_stream_without_a_declared_stream_is_refused(tmp_path):
    dest = tmp_path / "o.dla.h5"
    w = DLAWriter(dest, num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD)
    with pytest.raises(LaddError, match="no stream was declared"):
        w.append_stream(**make_batches("none")[0])
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_more_epochs_than_declared(tmp_path):
    def extra(b):
        b.append({**b[-1], "epoch": 3})
    _refused(tmp_path, extra, "the stream declares 3 epochs (0..2)")


def test_writer_refuses_a_negative_image_index_at_once(tmp_path):
    _refused(tmp_path, lambda b: b[0]["image"].__setitem__(0, -1), "image indices must lie in [0, M)")


def test_read_batch_and_epoch_outside_the_stream_raise_index_error(tmp_path):
    path, _, _ = write_stream(tmp_path / "s.dla.h5")
    with open_dla(path) as f:
        with pytest.raises(IndexError):
            f.stream.read_batch(6)
        with pytest.raises(IndexError):
            f.stream.epoch_batches(3)


def test_a_declaration_takes_its_codec_as_text_and_any_integer_crop_size():
    a = StreamSpec(epochs=1, batch_size=2, crop_size=[4, np.int64(5)], codec="logits:float16")
    b = StreamSpec(epochs=1, batch_size=2, crop_size=(4, 5), codec=parse_stream_codec("logits:float16"))
    assert a == b and a.crop_size == (4, 5) and isinstance(a.crop_size[1], int)
    assert hash(a.codec) == hash(b.codec)
    with pytest.raises(LaddError):
        StreamSpec(epochs=1, batch_size=2, crop_size=(4, 4), codec="logits:int4")
