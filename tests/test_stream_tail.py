"""The low-rank tail of a top-k relabel stream (spec 1.3, 4.7 ``/stream/tail``, rule 18): the numpy
API (fit, encode, decode), the stream codec's text and default, the writer, the reader, the verifier
and their refusals of hostile tails."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from ladd_format import DLAWriter, LaddError, integrity, open_dla
from ladd_format import spec as S
from ladd_format.codecs import parse_codec
from ladd_format.errors import CodecError
from ladd_format.h5io import text
from ladd_format.spec.limits import TAIL_RANK_MAX
from ladd_format.spec.rules import Rule
from ladd_format.stream import (DEFAULT_STREAM_CODEC, SMALL_C_CODEC, TAIL_FIT_RECORDS, VALUE_ROUNDING, StreamSpec,
                                TailBasis, decode_with_tail, default_stream_codec, encode_tail, fit_tail_basis,
                                parse_stream_codec, tail_logits, tail_mass_slack)
from ladd_format.stream.codec import softmax64
from ladd_format.stream.tail import tail_entry_cap
from ladd_format.upgrade import upgrade
from ladd_format.verify import verify

from conftest import MEAN, STD, edit_values, rehash, replace_dataset, tamper

C = 40
M = 6
SIDE = 16
CROP = (8, 8)
#: batch lengths per epoch (B = 5)
EPOCHS = ([5, 3], [4, 5, 2])
TAIL_CODEC = "topk:k=3,values=uint8,tail=4"


def teacher_logits(n: int, seed: int = 0, classes: int = C, rank: int = 6) -> np.ndarray:
    """Logits with a low-rank structure plus noise, as a teacher's are (n, classes) float32."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(rank, classes))
    return (rng.normal(size=(n, rank)) @ factors * 1.5 + rng.normal(size=(n, classes)) * 0.3).astype(np.float32)


def make_batches(seed: int = 0, epochs=EPOCHS) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    total = sum(sum(e) for e in epochs)
    logits = teacher_logits(total, seed)
    at = 0
    for e, lengths in enumerate(epochs):
        for n in lengths:
            h = rng.integers(1, SIDE + 1, n)
            w = rng.integers(1, SIDE + 1, n)
            out.append(dict(epoch=e, image=rng.integers(0, M, n),
                            box=np.stack([rng.integers(0, SIDE - h + 1), rng.integers(0, SIDE - w + 1), h, w], 1),
                            flip=rng.integers(0, 2, n).astype(bool), mix_partner=rng.permutation(n),
                            mix_box=np.array([1, 2, 3, 4]), logits=logits[at:at + n]))
            at += n
    return out


def write_tail_stream(path, codec: str = TAIL_CODEC, temperature: float = 4.0, batches=None, tail=None):
    """A small cutmix stream with a tail (fitted on the batches' logits unless given); returns
    (path, batches, spec)."""
    batches = make_batches() if batches is None else batches
    sc = parse_stream_codec(codec)
    if tail is None and sc.tail_rank:
        tail = fit_tail_basis(np.concatenate([kw["logits"] for kw in batches]), sc.tail_rank)
    spec = StreamSpec(epochs=len(EPOCHS), batch_size=5, crop_size=CROP, mix="cutmix", codec=sc,
                      temperature=temperature, teacher={"arch": "convnet"}, tail=tail)
    images = np.random.default_rng(1).integers(0, 256, (M, 3, SIDE, SIDE), dtype=np.uint8)
    with DLAWriter(path, num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD, stream=spec,
                   converter="test") as w:
        for kw in batches:
            w.append_stream(**kw)
        w.append(images, np.arange(M) % C)
    return path, batches, spec


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """Mean KL(p || q) over rows, float64."""
    p = np.asarray(p, np.float64)
    q = np.maximum(np.asarray(q, np.float64), 1e-30)
    return float(np.mean(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0), axis=1)))


# -- the numpy API --------------------------------------------------------------------------------
def test_codec_text_and_default():
    codec = parse_stream_codec(DEFAULT_STREAM_CODEC)
    assert DEFAULT_STREAM_CODEC == "topk:k=5,values=uint8,tail=24"
    assert codec.label == DEFAULT_STREAM_CODEC and codec.tail_rank == 24 and codec.codec.k == 5
    assert parse_stream_codec(codec.label) == codec
    assert parse_stream_codec('{"name": "topk", "k": 5, "values": "uint8", "tail": 24}') == codec
    assert parse_stream_codec("topk:k=5,values=uint8").tail_rank is None
    # the fallback for few classes: C <= 3k + r + 2 = 41
    assert default_stream_codec(41).label == SMALL_C_CODEC
    assert default_stream_codec(42) == codec
    assert default_stream_codec(1000) == codec


@pytest.mark.parametrize("text, match", [
    ("uint8:tail=3", "needs codec topk"),
    ("topk:k=3,values=uint8,tail=0", "from 1 to 256"),
    (f"topk:k=3,values=uint8,tail={TAIL_RANK_MAX + 1}", "from 1 to 256"),
    ("topk:k=3,values=uint8,tail=x", "from 1 to 256"),
    ("logits:float16,tail=3", "logits are stored as"),
])
def test_bad_tail_codec_texts_are_refused_in_one_line(text, match):
    with pytest.raises(CodecError, match=match) as err:
        parse_stream_codec(text)
    assert "\n" not in str(err.value)


def test_dense_codec_with_tail_is_refused():
    with pytest.raises(CodecError, match="tail") as err:
        parse_codec("topk:k=3,values=uint8,tail=4")
    assert "\n" not in str(err.value)


def test_layout_refuses_rank_above_c_and_k_equal_c():
    with pytest.raises(CodecError, match="exceeds min"):
        parse_stream_codec("topk:k=2,values=uint8,tail=9").layout(8)
    with pytest.raises(CodecError, match="k < C"):
        parse_stream_codec("topk:k=8,values=uint8,tail=2").layout(8)
    parse_stream_codec("topk:k=2,values=uint8,tail=8").layout(8)


def test_fit_is_the_contracts_svd_with_fixed_signs():
    z = teacher_logits(300)
    tail = fit_tail_basis(z, 5)
    assert tail.rank == 5 and tail.num_classes == C
    assert tail.mean.dtype == np.float32 and tail.basis.dtype == np.float32
    rows = z.astype(np.float64)
    mean = rows.mean(0)
    _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)
    np.testing.assert_array_equal(tail.mean, mean.astype(np.float32))
    np.testing.assert_allclose(np.abs(tail.basis), np.abs(vt[:5]).astype(np.float32), atol=1e-6)
    lead = np.argmax(np.abs(tail.basis), axis=1)
    assert np.all(tail.basis[np.arange(5), lead] > 0)
    np.testing.assert_allclose(tail.basis @ tail.basis.T, np.eye(5), atol=1e-5)


def test_fit_uses_only_the_first_records_and_pads_zero_rows():
    z = teacher_logits(TAIL_FIT_RECORDS + 50)
    changed = z.copy()
    changed[TAIL_FIT_RECORDS:] += 100.0        # records beyond the fit window change nothing
    assert fit_tail_basis(z, 3) == fit_tail_basis(changed, 3)
    few = fit_tail_basis(teacher_logits(2), 4)     # 2 rows centred: 1 vector, then zero rows
    assert few.rank == 4 and np.all(few.basis[1:] == 0) and np.any(few.basis[0] != 0)


@pytest.mark.parametrize("n", [2, 5, 8, 9])
def test_fit_on_at_most_rank_rows_zeroes_the_rounding_noise(n):
    """n rows centred have rank n - 1 at most: the vectors past it (singular values at rounding
    level, which differ from one machine to the next) are zero rows, and the others are the SVD's."""
    z = teacher_logits(n, seed=5)
    tail = fit_tail_basis(z, 8)
    live = min(n - 1, 8)
    assert np.all(tail.basis[live:] == 0)
    assert np.all(np.abs(tail.basis[:live]).max(axis=1) > 0.1)
    _, _, vt = np.linalg.svd(z.astype(np.float64) - z.astype(np.float64).mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(tail.basis[:live]), np.abs(vt[:live]).astype(np.float32), atol=1e-5)


def test_fit_zeroes_the_directions_below_matrix_rank_tolerance():
    """Rows of exact rank 3 (integer factors) plus a mean: more rows than classes (the QR path) and
    a rank of 6; the centred rows' singular values past the third are at most s_max max(n, C) 2^-52
    (numpy's matrix_rank tolerance), so rows 3..5 are zero; identical rows give an all-zero basis."""
    rng = np.random.default_rng(2)
    z = (rng.integers(-3, 4, (128, 3)) @ rng.integers(-3, 4, (3, C)) + rng.integers(-5, 6, C)).astype(np.float32)
    centred = z.astype(np.float64) - z.astype(np.float64).mean(0)
    assert np.linalg.matrix_rank(centred) == 3
    tail = fit_tail_basis(z, 6)
    assert np.all(tail.basis[3:] == 0) and np.all(np.abs(tail.basis[:3]).max(axis=1) > 0.1)
    flat = fit_tail_basis(np.repeat(z[:1], 10, axis=0), 4)
    assert np.all(flat.basis == 0) and np.array_equal(flat.mean, z[0])


@pytest.mark.parametrize("rank", [0, C + 1, TAIL_RANK_MAX + 1, 2.0, True])
def test_fit_refuses_bad_ranks(rank):
    with pytest.raises(CodecError):
        fit_tail_basis(teacher_logits(10), rank)


def test_fit_and_encode_refuse_non_finite_logits():
    z = teacher_logits(10)
    z[3, 4] = np.nan
    with pytest.raises(CodecError, match="NaN"):
        fit_tail_basis(z, 2)
    with pytest.raises(CodecError, match="NaN"):
        encode_tail(z, fit_tail_basis(teacher_logits(10), 2))


def test_encode_quantises_as_the_contract_says():
    z = teacher_logits(50)
    tail = fit_tail_basis(z, 4)
    coef, scale = encode_tail(z, tail)
    assert coef.dtype == np.int8 and coef.shape == (50, 4) and scale.dtype == np.float16 and scale.shape == (50,)
    c = (z.astype(np.float64) - tail.mean.astype(np.float64)) @ tail.basis.astype(np.float64).T
    expect_scale = (np.abs(c).max(1) / 127).astype(np.float16)
    np.testing.assert_array_equal(scale, expect_scale)
    expect = np.clip(np.rint(c / expect_scale.astype(np.float64)[:, None]), -127, 127).astype(np.int8)
    np.testing.assert_array_equal(coef, expect)
    assert np.abs(coef).max() == 127
    # a record equal to the mean: scale 0, coefficients 0
    coef0, scale0 = encode_tail(tail.mean[None].astype(np.float64), tail)
    assert scale0[0] == 0 and np.all(coef0 == 0)


def test_tail_logits_reconstruct_the_logits():
    z = teacher_logits(200)
    tail = fit_tail_basis(z, 8)
    zhat = tail_logits(*encode_tail(z, tail), tail)
    assert zhat.dtype == np.float64 and zhat.shape == z.shape
    err = np.abs(zhat - z).max(1) / np.abs(z - z.mean(0)).max(1)
    assert np.median(err) < 0.3       # rank 8 of a rank-6 signal plus noise: close


def test_decode_with_tail_follows_the_formula():
    z = teacher_logits(30)
    t = 3.0
    tail = fit_tail_basis(z, 4)
    coef, scale = encode_tail(z, tail)
    topk = parse_stream_codec("topk:k=3,values=uint8").codec.encode(softmax64(z, t))
    v = topk["topk_prob"].astype(np.float64) / 255
    got = decode_with_tail(topk["topk_index"], v, coef, scale, tail, t, "uint8")
    assert got.dtype == np.float32 and got.shape == (30, C)
    # the formula written out row by row
    zhat = tail.mean.astype(np.float64) + scale.astype(np.float64)[:, None] * (
        coef.astype(np.float64) @ tail.basis.astype(np.float64))
    for i in range(30):
        u = np.exp((zhat[i] - zhat[i].max()) / t)
        kept = topk["topk_index"][i][v[i] > 0]          # I: the top-k entries stored above 0
        inside = np.zeros(C, bool)
        inside[kept] = True
        m_hat = u[~inside].sum() / u.sum()
        rho, delta = 1 - v[i][v[i] > 0].sum(), 3 / 510      # delta = k e, uint8 values
        m = max(0.0, min(rho + delta, max(rho - delta, m_hat)))
        q = np.where(inside, 0.0, np.minimum(m * u / u[~inside].sum(), v[i].min() + 1 / 510))  # step 4's cap
        q[kept] = v[i][v[i] > 0]
        np.testing.assert_allclose(got[i], (q / q.sum()).astype(np.float32), rtol=1e-6, atol=1e-9)
    # a tail-less top-k decode spreads the rest evenly: the tail is closer to the teacher
    even = parse_stream_codec("topk:k=3,values=uint8").decode(topk, C)
    assert kl(softmax64(z, t), got) < 0.5 * kl(softmax64(z, t), even)


def test_decode_with_tail_spreads_the_tail_over_entries_stored_as_zero():
    """Spec 4.8: a top-k entry stored as 0 is outside I and gets its share of the tail, capped (step
    4) at v_min + e = 0 + 1/510 with the other tail classes: the stored 0 says each of them is below
    1/510."""
    tail = TailBasis(np.array([3.0, 1.0, 2.0, 0.0], np.float32), np.zeros((1, 4), np.float32))
    zero = np.zeros((1, 1), np.int8), np.zeros(1, np.float16)
    got = decode_with_tail(np.array([[0, 1]]), np.array([[128 / 255, 0.0]]), *zero, tail, 1.0, "uint8")
    u = np.exp(np.array([3.0, 1.0, 2.0, 0.0]) - 3.0)
    m_hat = u[1:].sum() / u.sum()                   # 0.356, outside rho -+ delta = 0.498 -+ 0.004
    m = 1 - 128 / 255 - 2 / 510
    assert m_hat < m and np.all(m * u[1:] / u[1:].sum() > 1 / 510)
    want = np.array([128 / 255, 1 / 510, 1 / 510, 1 / 510])
    np.testing.assert_allclose(got[0], want / want.sum(), rtol=1e-6)
    assert got[0, 1] > 0
    # a small tail, below the cap: the class stored as 0 gets its share of m
    tail = TailBasis(np.array([9.0, 1.0, 2.0, 0.0], np.float32), np.zeros((1, 4), np.float32))
    got = decode_with_tail(np.array([[0, 1]]), np.array([[254 / 255, 0.0]]), *zero, tail, 1.0, "uint8")
    u = np.exp(np.array([9.0, 1.0, 2.0, 0.0]) - 9.0)
    m = max(1 / 255 - 2 / 510, min(1 / 255 + 2 / 510, u[1:].sum() / u.sum()))
    want = np.array([254 / 255, *(m * u[1:] / u[1:].sum())])
    assert np.all(want[1:] < 1 / 510)
    np.testing.assert_allclose(got[0], want / want.sum(), rtol=1e-6)


def test_decode_with_tail_zero_tail_mass_and_zero_rows():
    tail = TailBasis(np.array([50.0, 0, 0, 0], np.float32), np.zeros((1, 4), np.float32))
    index = np.array([[0, 1]])
    # u outside I underflows to 0: those classes get 0, not NaN
    got = decode_with_tail(index, np.array([[0.5, 0.5]]), np.zeros((1, 1), np.int8), np.zeros(1, np.float16), tail,
                           0.01, "float32")
    np.testing.assert_array_equal(got, [[0.5, 0.5, 0, 0]])
    assert not np.isnan(got).any()


def bad_basis(rank: int = 4, classes: int = C, seed: int = 7) -> TailBasis:
    """A basis unrelated to :func:`teacher_logits` and far from them: its low-rank logits put their
    mass anywhere."""
    rng = np.random.default_rng(seed)
    return TailBasis((rng.normal(size=classes) * 8).astype(np.float32),
                     (rng.normal(size=(rank, classes)) * 4).astype(np.float32))


def test_value_rounding_and_slack_are_the_specs():
    """Spec 4.8 step 3: e = 1/510 (uint8), 2^-12 (float16), 2^-25 (float32); delta = k e."""
    assert VALUE_ROUNDING == {"uint8": 1 / 510, "float16": 2.0 ** -12, "float32": 2.0 ** -25}
    assert tail_mass_slack(5, "uint8") == 5 / 510 and tail_mass_slack(3, "float16") == 3 * 2.0 ** -12
    with pytest.raises(CodecError, match="float64"):
        tail_mass_slack(3, "float64")


def bad_basis_stream(values: str, k: int = 3, t: float = 2.0) -> tuple[dict, TailBasis, np.ndarray]:
    """Top-k labels of :func:`teacher_logits` (60 records) whose tail coefficients are those of other
    logits in :func:`bad_basis`: (stored, the bad basis, v the decoded top-k values (60, k))."""
    z = teacher_logits(60, seed=3)
    codec = parse_stream_codec(f"topk:k={k},values={values},tail=4")
    stored = codec.encode_logits(z, t, tail=fit_tail_basis(z, 4))
    bad = bad_basis()
    stored["tail/coef"], stored["tail/scale"] = encode_tail(teacher_logits(60, seed=11), bad)
    return stored, bad, parse_codec(f"topk:k={k},values={values}").stored_values(stored)


def uncapped_tail(stored: dict, tail: TailBasis, v: np.ndarray, t: float, values: str) -> tuple[np.ndarray, ...]:
    """Spec 4.8 steps 1-3 written out: (inside (n, C) the mask of I, m_hat (n,), rho (n,), the tail
    entries m u_j / sum_{i not in I} u_i before step 4's cap (n, C), 0 inside I)."""
    zhat = tail_logits(stored["tail/coef"], stored["tail/scale"], tail)
    u = np.exp((zhat - zhat.max(1, keepdims=True)) / t)
    inside = np.zeros(u.shape, bool)
    np.put_along_axis(inside, stored["topk_index"].astype(np.int64), v > 0, axis=1)
    rest = np.where(inside, 0, u).sum(1)
    m_hat = rest / u.sum(1)
    rho = 1 - np.where(v > 0, v, 0).sum(1)
    delta = v.shape[1] * VALUE_ROUNDING[values]
    m = np.maximum(0, np.minimum(rho + delta, np.maximum(rho - delta, m_hat)))
    return inside, m_hat, rho, np.where(inside, 0, m[:, None] * u / rest[:, None])


@pytest.mark.parametrize("values", ["uint8", "float16", "float32"])
def test_a_bad_basis_keeps_the_stored_topk_within_their_rounding(values):
    """Spec 4.8 step 3: whatever the basis, the tail mass stays within rho -+ k e and step 4 only
    lowers the tail, so after the row's normalisation each kept top-k value q_j is at least
    v_j / (1 + delta) (the row's sum is at most 1 + delta); a tail mass taken as the low-rank logits
    give it (no clamp) would move them by far more than delta."""
    k, t = 3, 2.0
    stored, bad, v = bad_basis_stream(values, k, t)
    q = parse_stream_codec(f"topk:k={k},values={values},tail=4").decode(stored, C, stored_temperature=t,
                                                                         tail=bad).astype(np.float64)
    got = np.take_along_axis(q, stored["topk_index"].astype(np.int64), axis=1)
    delta = k * VALUE_ROUNDING[values]
    kept = v > 0
    # q_j = v_j / (sum_I v + sum of the capped tail), that sum <= sum_I v + m <= 1 + delta; float32 output
    assert np.all(got[kept] / v[kept] >= 1 / (1 + delta) - 2.0 ** -23)
    _, m_hat, rho, _ = uncapped_tail(stored, bad, v, t, values)
    assert np.max(np.abs(m_hat - rho)) > 10 * delta


@pytest.mark.parametrize("values", ["uint8", "float16", "float32"])
def test_a_bad_basis_puts_no_tail_class_above_the_smallest_stored_value(values):
    """Spec 4.8 step 4: before the row is divided by its sum, every class outside I gets at most
    v_min + e, v_min the smallest of the record's k stored values; so the decoded argmax is a stored
    top-k class whenever the stored top-1 exceeds v_min + e. A bad basis concentrates the tail mass
    on a few classes, which the clamp alone (step 3) would put far above the stored top-k."""
    k, t = 3, 2.0
    stored, bad, v = bad_basis_stream(values, k, t)
    q = parse_stream_codec(f"topk:k={k},values={values},tail=4").decode(stored, C, stored_temperature=t,
                                                                         tail=bad).astype(np.float64)
    index = stored["topk_index"].astype(np.int64)
    inside, _, _, uncapped = uncapped_tail(stored, bad, v, t, values)
    cap = v.min(1) + VALUE_ROUNDING[values]
    # the row's sum before step 5, from a class of I: q_j = v_j / sum
    got = np.take_along_axis(q, index, axis=1)
    row_sum = np.where(v > 0, v, 0).sum(1) / np.where(v > 0, got, 0).sum(1)
    tail_before = np.where(inside, 0, q) * row_sum[:, None]
    assert np.all(tail_before <= cap[:, None] * (1 + 2.0 ** -20) + 1e-12)      # float32 output: 2^-24 each
    # the cap binds: steps 1-3 alone put some tail classes far above it
    assert np.max(uncapped - cap[:, None]) > 0.05
    assert np.any(np.argmax(uncapped, 1) != index[:, 0])
    above = v.max(1) > cap
    assert above.sum() > 40
    top = np.argmax(q, 1)
    assert np.all(np.any(index == top[:, None], axis=1)[above])
    np.testing.assert_allclose(q.sum(1), 1, atol=1e-6)


def test_a_big_tail_logit_is_capped_at_the_smallest_stored_value():
    """Spec 4.8 step 4 by hand: C = 10, top-3 uint8 codes 60, 50, 10 (sum 120, within section 6's
    bounds); the low-rank logits put nearly all their mass on class 9. Steps 1-3 give class 9 the
    tail mass m = rho + delta = 135/255 + 3/510, above the top-1's 60/255; step 4 caps it at
    10/255 + 1/510, so the decoded argmax stays class 0."""
    classes = 10
    mean = np.zeros(classes, np.float32)
    mean[9] = 40.0
    tail = TailBasis(mean, np.zeros((1, classes), np.float32))
    zero = np.zeros((1, 1), np.int8), np.zeros(1, np.float16)
    codes = np.array([60, 50, 10])
    got = decode_with_tail(np.array([[0, 1, 2]]), codes[None] / 255, *zero, tail, 1.0, "uint8")[0].astype(np.float64)
    rho, delta, cap = 135 / 255, 3 / 510, 10 / 255 + 1 / 510
    u = np.exp(mean.astype(np.float64) - 40.0)
    m_hat = u[3:].sum() / u.sum()
    m = max(rho - delta, min(rho + delta, m_hat))
    assert m == rho + delta
    share = m * u[3:] / u[3:].sum()
    assert share[-1] > 60 / 255 > cap                  # without the cap class 9 would be the argmax
    want = np.array([*codes / 255, *np.minimum(share, cap)])
    assert want[9] == cap
    np.testing.assert_allclose(got, want / want.sum(), rtol=1e-6, atol=1e-12)
    assert int(np.argmax(got)) == 0
    assert got[9] * want.sum() <= cap + 1e-12 * want.sum() + cap * 2.0 ** -23


def test_tail_entry_cap_is_the_smallest_stored_value_plus_its_rounding():
    """v_min + e per record, the stored zeros included (spec 4.8 step 4)."""
    v = np.array([[0.5, 0.25, 0.0], [0.75, 0.5, 0.125]])
    np.testing.assert_array_equal(tail_entry_cap(v, "uint8"), [[1 / 510], [0.125 + 1 / 510]])
    np.testing.assert_array_equal(tail_entry_cap(v, "float16"), [[2.0 ** -12], [0.125 + 2.0 ** -12]])
    with pytest.raises(CodecError, match="float64"):
        tail_entry_cap(v, "float64")


def test_a_row_whose_top_k_hold_all_the_mass_gets_what_rounding_leaves():
    """rho = 1 - sum_I v <= 0 (uint8 codes summing to 255 or 256): the tail gets
    m = max(0, min(rho + delta, m_hat)), so at most delta of the mass, and still some when rho + delta
    > 0; the low-rank logits' own share (here about a half) is not used."""
    tail = TailBasis(np.zeros(6, np.float32), np.zeros((1, 6), np.float32))    # m_hat = 4/6 for I of 2
    zero = np.zeros((1, 1), np.int8), np.zeros(1, np.float16)
    index = np.array([[0, 1]])
    got = decode_with_tail(index, np.array([[200 / 255, 55 / 255]]), *zero, tail, 1.0, "uint8")[0]
    m = 0 + 2 / 510                                  # rho = 0, delta = 2/510 < m_hat = 2/3
    np.testing.assert_allclose(got, np.array([200 / 255, 55 / 255, *[m / 4] * 4]) / (1 + m), rtol=1e-6)
    assert np.all(got[2:] > 0)
    # codes summing to 256 (allowed: <= 255 + k/2): rho + delta = -1/255 + 1/255 = 0, no tail
    got = decode_with_tail(index, np.array([[201 / 255, 55 / 255]]), *zero, tail, 1.0, "uint8")[0]
    np.testing.assert_allclose(got, [201 / 256, 55 / 256, 0, 0, 0, 0], rtol=1e-6, atol=1e-15)   # float64's rho
    # float32 values summing to 1 exactly: at most 2 x 2^-25 for the tail
    got = decode_with_tail(index, np.array([[0.75, 0.25]]), *zero, tail, 1.0, "float32")[0]
    assert 0 < got[2:].sum() <= 2 * 2.0 ** -25 * (1 + 1e-6)


def test_a_tail_mass_within_the_rounding_is_the_low_rank_logits_own():
    """When m_hat lies within rho -+ delta the clamp changes nothing: m = m_hat exactly."""
    tail = TailBasis(np.array([3.0, 1.0, 2.0, 0.0], np.float32), np.zeros((1, 4), np.float32))
    zero = np.zeros((1, 1), np.int8), np.zeros(1, np.float16)
    u = np.exp(np.array([3.0, 1.0, 2.0, 0.0]) - 3.0)
    m_hat = u[1:].sum() / u.sum()
    v0 = np.float16(1 - m_hat + 2.0 ** -13)            # rho = m_hat - 2^-13, within delta = 2^-12
    got = decode_with_tail(np.array([[0]]), np.array([[float(v0)]]), *zero, tail, 1.0, "float16")[0]
    want = np.array([float(v0), *(m_hat * u[1:] / u[1:].sum())])
    np.testing.assert_allclose(got, want / want.sum(), rtol=1e-6)


def test_codec_encode_decode_needs_the_matching_basis():
    codec = parse_stream_codec(TAIL_CODEC)
    z = teacher_logits(20)
    tail = fit_tail_basis(z, 4)
    stored = codec.encode_logits(z, 2.0, tail=tail)
    assert set(stored) == {"topk_index", "topk_prob", "tail/coef", "tail/scale"}
    q = codec.decode(stored, C, stored_temperature=2.0, tail=tail)
    np.testing.assert_allclose(q.sum(1), 1, atol=1e-6)
    with pytest.raises(CodecError, match="tail basis"):
        codec.encode_logits(z, 2.0)
    with pytest.raises(CodecError, match="rank 4"):
        codec.encode_logits(z, 2.0, tail=fit_tail_basis(z, 3))
    with pytest.raises(CodecError, match="tail basis"):
        codec.decode(stored, C, stored_temperature=2.0)
    with pytest.raises(CodecError, match="no tail"):
        parse_stream_codec("topk:k=3,values=uint8").encode_logits(z, 2.0, tail=tail)
    # a student at another temperature: q^(T/t) renormalised, as every kind-probs stream
    q5 = codec.decode(stored, C, temperature=5.0, stored_temperature=2.0, tail=tail)
    expect = q.astype(np.float64) ** (2.0 / 5.0)
    np.testing.assert_allclose(q5, expect / expect.sum(1, keepdims=True), rtol=1e-5)


def test_spec_needs_a_basis_exactly_with_a_tail(tmp_path):
    tail = fit_tail_basis(teacher_logits(20), 4)
    base = dict(epochs=1, batch_size=4, crop_size=CROP)
    assert StreamSpec(**base, codec=TAIL_CODEC, tail=tail).problems(C) == []
    assert "needs tail=TailBasis" in StreamSpec(**base, codec=TAIL_CODEC).problems(C)[0]
    assert "has no tail" in StreamSpec(**base, codec="topk:k=3,values=uint8", tail=tail).problems(C)[0]
    assert "rank 3" in StreamSpec(**base, codec=TAIL_CODEC, tail=fit_tail_basis(teacher_logits(20), 3)).problems(C)[0]
    with pytest.raises(LaddError, match="needs tail=TailBasis"):
        DLAWriter(tmp_path / "x.dla.h5", num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD,
                  stream=StreamSpec(**base, codec=TAIL_CODEC))
    assert not (tmp_path / "x.dla.h5").exists()


# -- writer and reader ---------------------------------------------------------------------------
def test_round_trip_writes_the_tail_and_decodes_with_it(tmp_path):
    path, batches, spec = write_tail_stream(tmp_path / "t.dla.h5")
    assert verify(path) == []
    with h5py.File(path, "r") as h5:
        assert text(h5.attrs[S.VERSION_ATTR]) == "1.3"
        g = h5[S.STREAM_TAIL_PATH]
        assert int(g.attrs[S.TAIL_RANK_ATTR]) == 4
        assert sorted(g) == ["basis", "batch_sha256", "coef", "mean", "scale"]
        assert g["coef"].shape == (19, 4) and g["coef"].dtype == np.int8
        assert g["scale"].shape == (19,) and g["scale"].dtype == np.float16
        assert g["batch_sha256"].shape == (5, 2, 32)
        assert [text(v) for v in g["batch_sha256"].attrs["datasets"]] == ["/stream/tail/coef", "/stream/tail/scale"]
        for name in g:
            assert g[name].fletcher32 and g[name].chunks is not None and "sha256" in g[name].attrs
        # the stream's own digests do not list the tail
        assert all("tail" not in text(v) for v in h5["/stream/batch_sha256"].attrs["datasets"])
    with open_dla(path) as f:
        s = f.stream
        assert s.tail == spec.tail and s.spec.codec.label == TAIL_CODEC and s.spec.tail == spec.tail
        assert s.info()["tail_rank"] == 4
        for b, kw in enumerate(batches):
            got = s.read_batch(b)
            stored = spec.codec.encode_logits(kw["logits"], 4.0, tail=spec.tail)
            assert set(got.labels) == set(stored)
            for name in stored:
                np.testing.assert_array_equal(got.labels[name], stored[name])
            probs = s.probs(got)
            expect = decode_with_tail(stored["topk_index"], stored["topk_prob"] / 255.0, stored["tail/coef"],
                                      stored["tail/scale"], spec.tail, 4.0, "uint8")
            np.testing.assert_array_equal(probs, expect)
            even = spec.codec.codec.decode(stored, C)      # what a reader ignoring the tail decodes
            assert kl(softmax64(kw["logits"], 4.0), probs) < 0.5 * kl(softmax64(kw["logits"], 4.0), even)


def test_stream_without_tail_decodes_bit_for_bit_as_before(tmp_path):
    path, batches, spec = write_tail_stream(tmp_path / "n.dla.h5", codec="topk:k=3,values=uint8")
    with h5py.File(path, "r") as h5:
        assert S.STREAM_TAIL not in h5[S.STREAM]
    with open_dla(path) as f:
        s = f.stream
        assert s.tail is None and s.info()["tail_rank"] is None
        for b, kw in enumerate(batches):
            got = s.read_batch(b)
            assert set(got.labels) == {"topk_index", "topk_prob"}
            np.testing.assert_array_equal(s.probs(got), spec.codec.codec.decode(got.labels, C))


def test_stored_labels_with_a_tail(tmp_path):
    batches = make_batches()
    every = np.concatenate([kw["logits"] for kw in batches])
    codec = parse_stream_codec(TAIL_CODEC)
    tail = fit_tail_basis(every, 4)
    stored_batches = []
    for kw in batches:
        kw = dict(kw)
        kw["stored"] = codec.encode_logits(kw.pop("logits"), 4.0, tail=tail)
        stored_batches.append(kw)
    path, _, _ = write_tail_stream(tmp_path / "a.dla.h5", batches=batches)
    path2, _, _ = write_tail_stream(tmp_path / "b.dla.h5", batches=stored_batches, tail=tail)
    with open_dla(path) as a, open_dla(path2) as b:
        for i in range(a.stream.num_batches):
            np.testing.assert_array_equal(a.stream.probs(a.stream.read_batch(i)), b.stream.probs(b.stream.read_batch(i)))
    bad = [dict(kw) for kw in stored_batches]
    bad[0]["stored"] = dict(bad[0]["stored"])
    bad[0]["stored"]["tail/scale"] = -bad[0]["stored"]["tail/scale"] - 1
    with pytest.raises(LaddError, match="finite number >= 0") as err:
        write_tail_stream(tmp_path / "c.dla.h5", batches=bad, tail=tail)
    assert "\n" not in str(err.value) and not (tmp_path / "c.dla.h5").exists()
    bad[0]["stored"] = {k: v for k, v in stored_batches[0]["stored"].items() if k != "tail/coef"}
    with pytest.raises(LaddError, match="tail/coef"):
        write_tail_stream(tmp_path / "d.dla.h5", batches=bad, tail=tail)


# -- versions: upgrade, and a tail in a file below 1.3 ---------------------------------------------
VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"


def _set_version(path: Path, version: str) -> Path:
    with h5py.File(path, "r+") as f:
        integrity.set_string(f.attrs, S.VERSION_ATTR, version)
        integrity.reseal(f, rows=False)
    return path


def test_upgrade_a_1_2_stream_to_1_3_keeps_it_and_adds_no_tail(tmp_path):
    src = Path(shutil.copy(VECTORS / "stream_cutmix_topk_uint8.dla.h5", tmp_path / "s12.dla.h5"))
    out = upgrade(src, tmp_path / "s13.dla.h5")
    assert verify(out) == []
    with open_dla(src) as a, open_dla(out) as b:
        assert a.version == (1, 2) and b.version == (1, 3) and b.stream.tail is None
        for i in range(a.stream.num_batches):
            np.testing.assert_array_equal(a.stream.probs(a.stream.read_batch(i)), b.stream.probs(b.stream.read_batch(i)))
    with h5py.File(out, "r") as h5:
        assert S.STREAM_TAIL not in h5[S.STREAM]


def test_a_tail_below_1_3_is_ignored_and_not_upgraded(tmp_path):
    """Below 1.3 /stream/tail means nothing: verify and the reader ignore it (the stream decodes with
    section 6's even tail), and upgrade refuses to give it 1.3's meaning."""
    path, batches, spec = write_tail_stream(tmp_path / "t.dla.h5")
    _set_version(path, "1.2")
    assert verify(path) == []
    with open_dla(path) as f:
        s = f.stream
        assert s.tail is None and s.spec.codec.label == "topk:k=3,values=uint8"
        got = s.read_batch(0)
        assert set(got.labels) == {"topk_index", "topk_prob"}
        np.testing.assert_array_equal(s.probs(got), spec.codec.codec.decode(got.labels, C))
    with pytest.raises(LaddError, match="/stream/tail") as err:
        upgrade(path, tmp_path / "up.dla.h5")
    assert "\n" not in str(err.value) and not (tmp_path / "up.dla.h5").exists()


# -- hostile tails: each refused in one line by verify (rule 18) and by the reader -----------------
def _reseal_tail_digests(f: h5py.File) -> None:
    starts = np.append(f["stream/batch_start"][()], f["stream/image"].shape[0])
    table = f["stream/tail/batch_sha256"]
    for b in range(len(starts) - 1):
        for column, name in enumerate(("coef", "scale")):
            rows = np.ascontiguousarray(f[f"stream/tail/{name}"][starts[b]:starts[b + 1]])
            table[b, column] = np.frombuffer(hashlib.sha256(rows.tobytes()).digest(), np.uint8)
    rehash(table)


def _scale_negative(f):
    edit_values(f, "stream/tail/scale", lambda a: a.__setitem__(2, -1.0))
    _reseal_tail_digests(f)


def _scale_nan(f):
    edit_values(f, "stream/tail/scale", lambda a: a.__setitem__(0, np.nan))
    _reseal_tail_digests(f)


def _coef_wrong_shape(f):
    replace_dataset(f, "stream/tail/coef", np.zeros((19, 5), np.int8))
    rehash(f["stream/tail/coef"])


def _coef_wrong_dtype(f):
    replace_dataset(f, "stream/tail/coef", np.zeros((19, 4), np.int16))
    rehash(f["stream/tail/coef"])


def _logits_stream(f):
    """The tail moved onto a stream of kind logits (its own datasets as such a stream needs)."""
    g = f["stream"]
    n = g["image"].shape[0]
    for name in ("topk_index", "topk_prob"):
        del g[name]
    del g.attrs["k"]
    g.attrs["kind"], g.attrs["codec"] = "logits", "float16"
    ds = g.create_dataset("logits", data=np.zeros((n, C), "<f2"), chunks=True, fletcher32=True)
    rehash(ds)
    starts = np.append(g["batch_start"][()], n)
    table = np.stack([np.stack([np.frombuffer(hashlib.sha256(np.ascontiguousarray(g[name][a:b] if name != "mix_box"
                                                                                   else g[name][i:i + 1]).tobytes())
                                              .digest(), np.uint8)
                                for name in ("image", "box", "flip", "mix_partner", "mix_box", "logits")])
                      for i, (a, b) in enumerate(zip(starts[:-1], starts[1:]))])
    attrs = dict(g["batch_sha256"].attrs)
    del g["batch_sha256"]
    ds = g.create_dataset("batch_sha256", data=table, chunks=True, fletcher32=True)
    ds.attrs.update(attrs)
    integrity.set_string(ds.attrs, "datasets", np.array([f"/stream/{n}" for n in ("image", "box", "flip",
                         "mix_partner", "mix_box", "logits")], dtype=object))
    rehash(ds)


HOSTILE = {
    "basis-nan": (lambda f: edit_values(f, "stream/tail/basis", lambda a: a.__setitem__((1, 3), np.nan)), "basis"),
    "mean-inf": (lambda f: edit_values(f, "stream/tail/mean", lambda a: a.__setitem__(0, np.inf)), "mean"),
    "scale-negative": (_scale_negative, "scale"),
    "scale-nan": (_scale_nan, "scale"),
    "rank-huge": (lambda f: f["stream/tail"].attrs.__setitem__("rank", np.int64(1 << 40)), "rank"),
    "rank-zero": (lambda f: f["stream/tail"].attrs.__setitem__("rank", np.int64(0)), "rank"),
    "rank-not-integer": (lambda f: f["stream/tail"].attrs.__setitem__("rank", 2.5), "rank"),
    "rank-missing": (lambda f: f["stream/tail"].attrs.__delitem__("rank"), "rank"),
    "coef-wrong-shape": (_coef_wrong_shape, "coef"),
    "coef-wrong-dtype": (_coef_wrong_dtype, "coef"),
    "basis-wrong-rank": (lambda f: replace_dataset(f, "stream/tail/basis", np.zeros((3, C), "<f4")) and
                         rehash(f["stream/tail/basis"]), "basis"),
    "coef-digest-differs": (lambda f: edit_values(f, "stream/tail/coef", lambda a: a.__setitem__((5, 1), a[5, 1] ^ 1)),
                            "coef"),
    "digests-list-wrong": (lambda f: integrity.set_string(f["stream/tail/batch_sha256"].attrs, "datasets", np.array(
        ["/stream/tail/scale", "/stream/tail/coef"], dtype=object)), "batch_sha256"),
    "member-missing": (lambda f: f["stream/tail"].__delitem__("scale"), "scale"),
    "member-extra": (lambda f: rehash(f["stream/tail"].create_dataset("extra", data=np.zeros(3), chunks=True,
                                                                      fletcher32=True)), "extra"),
    "tail-is-a-dataset": (lambda f: (f["stream"].__delitem__("tail"), rehash(f["stream"].create_dataset(
        "tail", data=np.zeros(3), chunks=True, fletcher32=True))), "/stream/tail"),
    "tail-on-logits-stream": (_logits_stream, "kind"),
}


@pytest.fixture(scope="module")
def tail_file(tmp_path_factory) -> Path:
    return write_tail_stream(tmp_path_factory.mktemp("tail") / "t.dla.h5")[0]


def _read_all(path: Path) -> None:
    with open_dla(path) as f:
        s = f.stream
        for b in range(s.num_batches):
            s.probs(s.read_batch(b))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tail_is_refused_in_one_line(tail_file, tmp_path, case):
    edit, word = HOSTILE[case]
    path = Path(shutil.copy(tail_file, tmp_path / f"{case}.dla.h5"))
    tamper(path, edit)
    problems = verify(path)
    # a dataset named tail is not a tail (rule 18 governs a group): it is a dataset /stream may not
    # hold, which rule 16 alone reports (spec 8, rule 18)
    rule = Rule.STREAM if case == "tail-is-a-dataset" else Rule.STREAM_TAIL
    assert {p.rule for p in problems} == {rule}, [f"{p} [{p.rule_label}]" for p in problems]
    assert any(word in str(p) for p in problems) and all("\n" not in str(p) for p in problems)
    with pytest.raises(LaddError) as err:
        _read_all(path)
    assert err.value.rule is rule and "\n" not in str(err.value) and str(path) in str(err.value)


def test_rule_11_covers_the_tail(tail_file, tmp_path):
    """A damaged tail chunk or sha256 is rule 11, as for every dataset."""
    path = Path(shutil.copy(tail_file, tmp_path / "c.dla.h5"))
    tamper(path, lambda f: f["stream/tail/mean"].attrs.__setitem__("sha256", "0" * 64))
    assert {p.rule for p in verify(path)} == {Rule.CHECKSUMS}
    with pytest.raises(LaddError) as err:
        _read_all(path)
    assert err.value.rule is Rule.CHECKSUMS and "/stream/tail/mean" in str(err.value)


# -- size (spec 7): the stream archive holds the tail's datasets -------------------------------------
def test_size_counts_the_tail_as_stream_tail_members(tmp_path):
    from ladd_format.size import measure_file, stream_datasets, stream_member, stream_members, stream_stored_bytes

    path, _, _ = write_tail_stream(tmp_path / "t.dla.h5")
    plain, _, _ = write_tail_stream(tmp_path / "p.dla.h5", codec="topk:k=3,values=uint8")
    with open_dla(path) as f:
        names = list(stream_datasets(f))
        assert names[-4:] == ["tail/mean", "tail/basis", "tail/coef", "tail/scale"]
        assert "tail/batch_sha256" not in names and "batch_sha256" not in names
        assert [m.name for m in stream_members(f)][-4:] == ["stream_tail_mean", "stream_tail_basis",
                                                          "stream_tail_coef", "stream_tail_scale"]
        tail_storage = sum(int(f.h5[f"/stream/{n}"].id.get_storage_size()) for n in S.STREAM_TAIL_MEMBERS)
        with open_dla(plain) as g:
            assert stream_stored_bytes(f) == stream_stored_bytes(g) + tail_storage
    assert stream_member("tail/coef") == "stream_tail_coef" and stream_member("image") == "stream_image"
    with_tail, without = measure_file(path).stream, measure_file(plain).stream
    # raw data bytes: 19 records x (4 coef + 2 scale bytes) + mean and basis (40 + 160 float32)
    extra = with_tail.raw_bytes - without.raw_bytes
    assert extra == 19 * (4 + 2) + (40 + 4 * 40) * 4
    assert with_tail.bytes > without.bytes


# -- the commands on a stream with a tail ----------------------------------------------------------
def test_info_verify_size_show_understand_a_tail(runner, tail_file, tmp_path):
    from conftest import ok

    info = ok(runner, "info", tail_file).output
    assert "codec topk:k=3,values=uint8,tail=4" in info and "1.3" in info
    assert ok(runner, "verify", tail_file).exit_code == 0
    assert "stream (stream_*.npy)" in ok(runner, "size", tail_file).output
    out = tmp_path / "b.png"
    assert f"wrote {out}" in ok(runner, "show", tail_file, "-o", out, "--epoch", 0, "--batch", 0).output


def test_a_damaged_tail_chunk_is_rule_11(tmp_path):
    from conftest import flip_chunk_byte

    path, _, _ = write_tail_stream(tmp_path / "t.dla.h5")
    flip_chunk_byte(path, "stream/tail/scale", 0)
    assert Rule.CHECKSUMS in {p.rule for p in verify(path)}
    with pytest.raises(LaddError) as err:
        _read_all(path)
    assert err.value.rule is Rule.CHECKSUMS and "/stream/tail/scale" in str(err.value)


def test_export_npz_names_the_tail_members_as_spec_7(runner, tail_file, tmp_path):
    """``ladd export --format npz`` of a stream with a tail: the tail's datasets are the members
    ``stream_tail_mean``, ``stream_tail_basis``, ``stream_tail_coef``, ``stream_tail_scale`` (spec 7's
    names, as ``ladd size`` measures them), as stored; ``ladd_metadata`` carries the rank."""
    from conftest import ok

    out = tmp_path / "t.npz"
    ok(runner, "export", tail_file, "--format", "npz", "-o", out)
    with np.load(out) as npz, h5py.File(tail_file, "r") as h5:
        tail_keys = sorted(k for k in npz.files if k.startswith("stream_tail"))
        assert tail_keys == ["stream_tail_basis", "stream_tail_coef", "stream_tail_mean", "stream_tail_scale"]
        assert not [k for k in npz.files if "/" in k]
        for name in ("mean", "basis", "coef", "scale"):
            stored = h5[f"stream/tail/{name}"][()]
            assert npz[f"stream_tail_{name}"].dtype == stored.dtype
            np.testing.assert_array_equal(npz[f"stream_tail_{name}"], stored)
        meta = json.loads(str(npz["ladd_metadata"]))["stream"]
    assert meta["tail_rank"] == 4 and meta["codec_text"] == TAIL_CODEC
