"""The replay loader decodes a stream's low-rank tail (spec 1.3, 4.8) on the device.

The numpy decode (``StreamCodec.decode`` with the stream's ``TailBasis``: ``ladd_format.stream.tail``)
is the reference. The loader's float64 decode rounds to the same float32 values within one float32
unit (1e-7 absolute; measured equal); the float32 variant (devices without float64) stays within the
tolerances ``tail_dtype`` states. Streams without a tail decode as before.
"""

import numpy as np
import pytest
import torch

from ladd_format import DLAWriter, open_dla
from ladd_format.stream import StreamSpec, parse_stream_codec
from ladd_format.stream.tail import fit_tail_basis
from ladd_format.torch.replay import ReplayLoader, decode_on_device, retemper, tail_on_device

from conftest import MEAN, STD

M, C, SIDE, CROP, RANK, K = 12, 40, 16, 12, 6, 3
CODEC = f"topk:k={K},values=uint8,tail={RANK}"
#: the float64 decode against the numpy reference: one float32 unit of a probability <= 1
F64_ATOL = 1e-7
#: the float32 decode (tail_dtype's statement): as stored, and re-tempered by T / t = 20
F32_ATOL, F32_ATOL_RETEMPERED = 1e-6, 5e-6


def _logits(rng, n):
    """Teacher-like logits: a few shared directions (what a low-rank tail captures) plus noise."""
    directions = np.random.default_rng(99).normal(size=(4, C))
    return rng.normal(size=(n, 4)) @ directions * 2.5 + rng.normal(size=(n, C)) * 0.5


def write_tail_stream(path, *, temperature=1.0, codec=CODEC, epochs=2, batches=3, batch_size=6, seed=0, sharpness=1.0):
    """A stream whose codec has a tail (logits multiplied by ``sharpness``); returns the file."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (M, 3, SIDE, SIDE), dtype=np.uint8)
    logits = [_logits(rng, batch_size) * sharpness for _ in range(epochs * batches)]
    stream_codec = parse_stream_codec(codec)
    tail = fit_tail_basis(np.concatenate(logits), stream_codec.tail_rank) if stream_codec.tail_rank else None
    spec = StreamSpec(epochs=epochs, batch_size=batch_size, crop_size=(CROP, CROP), mix="cutmix", codec=stream_codec,
                      temperature=temperature, teacher={"arch": "test"}, tail=tail)
    with DLAWriter(path, num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD, converter="test",
                   stream=spec) as w:
        w.append(images, np.arange(M) % C)
        for i, z in enumerate(logits):
            h = rng.integers(3, SIDE + 1, batch_size)
            wd = rng.integers(3, SIDE + 1, batch_size)
            box = np.stack([rng.integers(0, SIDE - h + 1), rng.integers(0, SIDE - wd + 1), h, wd], 1)
            w.append_stream(i // batches, image=rng.integers(0, M, batch_size), box=box,
                            flip=rng.random(batch_size) < 0.5, mix_partner=rng.permutation(batch_size),
                            mix_box=np.array([1, 2, 4, 5]), logits=z)
    return path


@pytest.fixture(scope="module")
def tail_streams(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tail")
    return {t: write_tail_stream(folder / f"t{t:g}.dla.h5", temperature=t) for t in (1.0, 20.0)}


def _reference(path, temperature=None):
    with open_dla(path) as f:
        s = f.stream
        assert s.tail is not None and s.spec.codec.tail_rank == RANK
        return [s.probs(s.read_batch(b), temperature=temperature) for b in range(s.num_batches)]


def _even_tail(path):
    """Section 6's decode, ignoring the tail (what a 1.2 reader, and the loader before 1.3, give)."""
    with open_dla(path) as f:
        s = f.stream
        return [s.spec.codec.codec.decode(s.read_batch(b).labels, C) for b in range(s.num_batches)]


@pytest.mark.parametrize("stored", [1.0, 20.0])
def test_loader_decodes_the_tail_as_the_numpy_reference(tail_streams, stored):
    path = tail_streams[stored]
    want, even = _reference(path), _even_tail(path)
    with ReplayLoader(path) as loader:
        got = [loader.batch(b).probs for b in range(loader.stream.num_batches)]
    for g, w, e in zip(got, want, even, strict=True):
        assert g.dtype == torch.float32 and g.shape == w.shape
        np.testing.assert_allclose(g.numpy(), w, rtol=0, atol=F64_ATOL)
        assert np.abs(w - e).max() > 100 * F64_ATOL          # the tail changes the label: the check has teeth


def test_top_k_entries_stored_as_zero_take_a_share_of_the_tail(tmp_path):
    """Peaked labels: uint8 stores some of the top-k values as 0; those classes are tail classes
    (spec 4.8), decoded from the low-rank logits, not 0."""
    path = write_tail_stream(tmp_path / "peaked.dla.h5", sharpness=4.0)
    with open_dla(path) as f:
        stored = f.stream.read_batch(0).labels
    zero = stored["topk_prob"] == 0
    assert zero.any(), "the fixture must store some top-k values as 0"
    with ReplayLoader(path) as loader:
        probs = loader.batch(0).probs.numpy()
    rows, cols = np.nonzero(zero)
    classes = stored["topk_index"][rows, cols].astype(np.int64)
    assert (probs[rows, classes] > 0).all()
    np.testing.assert_allclose(probs, _reference(path)[0], rtol=0, atol=F64_ATOL)


@pytest.mark.parametrize("stored, student", [(1.0, 4.0), (1.0, 20.0), (20.0, 1.0), (20.0, 5.0)])
def test_re_tempered_tail_labels_match_the_reference(tail_streams, stored, student):
    path = tail_streams[stored]
    want = _reference(path, temperature=student)
    with ReplayLoader(path, temperature=student) as loader:
        for b, w in enumerate(want):
            got = loader.batch(b).probs.numpy()
            # q^(T/t) of float32 labels equal to the reference's: the same float64 arithmetic after
            np.testing.assert_allclose(got, w, rtol=0, atol=max(1.0, stored / student) * F64_ATOL)
            np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


def test_float32_tail_decode_stays_within_its_stated_tolerance(tail_streams):
    """The float32 variant (devices without float64) against the float64 reference."""
    for stored, student, atol in ((1.0, None, F32_ATOL), (20.0, None, F32_ATOL), (20.0, 1.0, F32_ATOL_RETEMPERED),
                                  (1.0, 20.0, F32_ATOL)):
        path = tail_streams[stored]
        with open_dla(path) as f:
            s = f.stream
            tail32 = tail_on_device(s.tail, "cpu", torch.float32)
            assert tail32.basis.dtype == torch.float32
            for b in range(s.num_batches):
                rec = s.read_batch(b)
                got = decode_on_device(s.spec.codec, rec.labels, C, "cpu", student, stored, tail32).numpy()
                np.testing.assert_allclose(got, s.probs(rec, temperature=student), rtol=0, atol=atol)


def test_a_tail_codec_without_its_basis_is_refused(tail_streams):
    with open_dla(tail_streams[1.0]) as f:
        s = f.stream
        rec = s.read_batch(0)
        with pytest.raises(ValueError, match="tail"):
            decode_on_device(s.spec.codec, rec.labels, C, "cpu", None, 1.0)
        with pytest.raises(ValueError, match="rank"):
            other = fit_tail_basis(_logits(np.random.default_rng(1), 20), RANK - 1)
            decode_on_device(s.spec.codec, rec.labels, C, "cpu", None, 1.0, other)


def test_a_stream_without_a_tail_decodes_as_its_codec(tmp_path):
    """No tail: the labels as stored are the codec's own device decode, bit for bit (unchanged)."""
    path = write_tail_stream(tmp_path / "plain.dla.h5", codec=f"topk:k={K},values=uint8")
    with open_dla(path) as f, ReplayLoader(path) as loader:
        s = f.stream
        assert s.tail is None and loader.stream.tail is None
        for b in range(s.num_batches):
            rows = {key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in s.read_batch(b).labels.items()}
            want = s.spec.codec.codec.decode_tensor(rows, C).to(torch.float32)
            assert torch.equal(loader.batch(b).probs, want)


@pytest.mark.parametrize("codec", ["topk:k=5,values=float16", "float16", "uint8"])
def test_re_tempering_to_a_lower_temperature_does_not_underflow(codec):
    """Stored at T = 20, read at t = 1: q^20 of labels near 1/C underflows in float32 (every row then
    decoded to 1/C); the loader re-tempers in float64 (float32 through logarithms) as the numpy decode."""
    stream_codec = parse_stream_codec(codec)
    z = _logits(np.random.default_rng(3), 64) * 2
    stored = stream_codec.encode_logits(z, 20.0)
    want = stream_codec.decode(stored, C, 1.0, 20.0)
    assert want.max() > 5.0 / C                                # a peaked label, far from uniform
    got = decode_on_device(stream_codec, stored, C, "cpu", 1.0, 20.0).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    q = torch.from_numpy(stream_codec.decode(stored, C))
    np.testing.assert_allclose(retemper(q, 20.0, C, torch.float32).numpy(), want, rtol=0, atol=F32_ATOL_RETEMPERED)


@pytest.mark.parametrize("values", ["uint8", "float16", "float32"])
def test_the_device_decode_caps_each_tail_class_at_the_smallest_stored_value(values):
    """Spec 4.8 step 4 on the device (float64, the loader's dtype but on mps): a basis unrelated to
    the labels puts most of the tail mass on a few classes; each class outside the top k gets at most
    v_min + e before the row's division, so the decoded argmax is a stored top-k class, as the numpy
    decode (which has the cap) says. (Its logits span more than float32's exp can: the float32
    variant underflows the tail of some of these rows, so it is not compared here.)"""
    from ladd_format.stream import TailBasis, VALUE_ROUNDING, encode_tail
    from ladd_format.codecs import parse_codec

    rng = np.random.default_rng(7)
    stream_codec = parse_stream_codec(f"topk:k={K},values={values},tail={RANK}")
    z = _logits(np.random.default_rng(3), 60)
    stored = stream_codec.encode_logits(z, 2.0, tail=fit_tail_basis(z, RANK))
    bad = TailBasis((rng.normal(size=C) * 8).astype(np.float32), (rng.normal(size=(RANK, C)) * 4).astype(np.float32))
    stored["tail/coef"], stored["tail/scale"] = encode_tail(_logits(np.random.default_rng(11), 60), bad)
    want = stream_codec.decode(stored, C, stored_temperature=2.0, tail=bad)
    got = decode_on_device(stream_codec, stored, C, "cpu", None, 2.0, tail_on_device(bad, "cpu", torch.float64)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=F64_ATOL)
    index = stored["topk_index"].astype(np.int64)
    v = parse_codec(f"topk:k={K},values={values}").stored_values(stored)
    cap = v.min(1) + VALUE_ROUNDING[values]
    top = np.take_along_axis(got.astype(np.float64), index, axis=1)
    row_sum = np.where(v > 0, v, 0).sum(1) / np.where(v > 0, top, 0).sum(1)      # q_j = v_j / sum, j in I
    outside = np.ones(got.shape, bool)
    np.put_along_axis(outside, index, v <= 0, axis=1)
    assert np.all(np.where(outside, got, 0) * row_sum[:, None] <= cap[:, None] * (1 + 2.0 ** -20) + 1e-12)
    above = v.max(1) > cap
    assert above.sum() > 40
    assert np.all(np.any(index == np.argmax(got, 1)[:, None], axis=1)[above])
