"""The checks rules 16 (``stream``) and 18 (``stream_tail``) name, shared by the writer, the reader and
the verifier (spec 4.7, 4.8, 2.4). numpy and h5py only.

Every function returns problems, never raises on bad values: :class:`~ladd_format.integrity.Problem`
(rule, where, message) for the declaration and the layout (where: the path of the object), and
``(dataset name, message)`` pairs for values (the caller names the file and the rule). Nothing here
allocates on the strength of a declared size: shapes are compared, and values are checked in the
arrays the caller read (a batch, or a block of a dataset whose rows the caller bounded).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import h5py
import numpy as np

from .. import spec as S
from ..codecs.topk import TopKCodec
from ..errors import LaddError
from ..h5io import text
from ..integrity import Problem
from ..spec import limits
from ..spec.rules import Rule
from .codec import StreamCodec
from .declaration import StreamSpec
from .tail import TailBasis, max_tail_rank

#: dtype requirement of the datasets whose dtype the spec leaves to the writer ("any integer")
ANY_INTEGER = "any integer"


def _int(value) -> int | None:
    """An integer attribute's value, or None when it is not one integer."""
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(()).item()
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    return None


def _is_string(attrs, key: str) -> bool:
    return h5py.check_string_dtype(attrs.get_id(key).dtype) is not None if hasattr(attrs, "get_id") else \
        isinstance(attrs[key], (str, bytes))


# -- the declaration (attributes of /stream and /stream/teacher) ------------------------------------
def attribute_problems(group: h5py.Group, num_classes: int | None, channels: int | None = None,
                       image_space: str | None = None) -> list[Problem]:
    """Rule 16's attribute part (4.7) and the stream's limits of 2.4 (rule 15): every required
    attribute present with a valid value, ``k`` only with codec ``topk``, ``/stream/teacher`` with
    ``arch`` (and ``mean``/``std`` of length K = ``channels`` when given), ``pil-bilinear`` only with
    ``pixel255`` images. Reads attributes only."""
    found: list[Problem] = []
    a = group.attrs
    where = S.STREAM_PATH

    def fail(message: str, rule: Rule = Rule.STREAM, at: str = where) -> None:
        found.append(Problem(rule, at, message))

    for key in S.STREAM_REQUIRED_ATTRS:
        if key not in a:
            fail(f"attribute {key!r} is missing")
    if found:
        return found
    for key, top in ((S.STREAM_EPOCHS_ATTR, limits.MAX_STREAM_EPOCHS), (S.BATCH_SIZE_ATTR, limits.MAX_STREAM_BATCH)):
        value = _int(a[key])
        if value is None or value < 1:
            fail(f"{key} must be an integer >= 1, got {a[key]!r}")
        elif value > top:
            fail(f"{key} = {value} is above the limit {top} (spec 2.4)", Rule.LIMITS)
    batch_size = _int(a[S.BATCH_SIZE_ATTR])
    crop = np.asarray(a[S.CROP_SIZE_ATTR])
    if crop.shape != (2,) or crop.dtype.kind not in "iu":
        fail(f"crop_size must be an integer array of 2 values (h_out, w_out), got {crop.dtype} {crop.shape}")
    elif crop.min() < 1:
        fail(f"crop_size sides must be >= 1, got {crop.tolist()}")
    elif crop.max() > limits.MAX_CROP_SIDE:
        fail(f"crop_size sides must be <= {limits.MAX_CROP_SIDE} (spec 2.4), got {crop.tolist()}", Rule.LIMITS)
    for key, allowed in ((S.MODE_ATTR, S.STREAM_MODES), (S.RESIZE_ATTR, S.STREAM_RESIZES), (S.MIX_ATTR, S.STREAM_MIXES)):
        value = text(a[key]) if _is_string(a, key) else repr(a[key])
        if value not in allowed:
            fail(f"{key} must be one of {list(allowed)}, got {value!r}")
    if (_is_string(a, S.RESIZE_ATTR) and text(a[S.RESIZE_ATTR]) == S.RESIZE_PIL and image_space is not None
            and image_space != S.SPACE_UINT8):
        fail(f"resize {S.RESIZE_PIL!r} needs {S.SPACE_UINT8} images (5.1), the images are {image_space}")
    t = a[S.TEMPERATURE_ATTR]
    t = t.reshape(()).item() if isinstance(t, np.ndarray) and t.size == 1 else t
    if not isinstance(t, (int, float, np.integer, np.floating)) or isinstance(t, bool) \
            or not (math.isfinite(float(t)) and float(t) > 0):
        fail(f"temperature must be a number > 0, got {t!r}")
    for key in (S.SAMPLER_ATTR, S.AUGMENTATION_ATTR):
        if key in a:
            try:
                json.loads(text(a[key]))
            except ValueError:
                fail(f"{key} must be a JSON document")
    try:
        codec = StreamCodec.from_attrs(a, group)
        if num_classes is not None:
            codec.layout(num_classes)
            if batch_size is not None and batch_size * num_classes > limits.MAX_STREAM_BATCH_VALUES:
                fail(f"batch_size {batch_size} x {num_classes} classes exceeds {limits.MAX_STREAM_BATCH_VALUES} "
                     "values (spec 2.4)", Rule.LIMITS)
    except LaddError as exc:
        fail(exc.message)
    teacher = group.get("teacher")
    if not isinstance(teacher, h5py.Group) or S.ARCH_ATTR not in teacher.attrs:
        fail("group with attribute 'arch' is required", at=S.TEACHER_PATH)
    elif channels is not None:
        for key in (S.MEAN_ATTR, S.STD_ATTR):
            if key in teacher.attrs:
                v = np.atleast_1d(np.asarray(teacher.attrs[key]))
                if v.shape != (channels,) or v.dtype.kind not in "iuf" or not np.all(np.isfinite(v)):
                    fail(f"{key} must be {channels} finite numbers (one per channel), got {v.dtype} {v.shape}",
                         at=S.TEACHER_PATH)
    return found


def spec_from_group(group: h5py.Group, tail: TailBasis | None = None) -> StreamSpec:
    """The :class:`StreamSpec` of a ``/stream`` whose attributes :func:`attribute_problems` passed;
    ``tail``: the basis of its ``/stream/tail`` (read and checked by the caller, a 1.3 reader: rule
    18), or None to read the stream without its tail."""
    a = group.attrs

    def json_attr(key):
        return json.loads(text(a[key])) if key in a else None

    teacher = {}
    if S.TEACHER in group.file:
        for key, value in group.file[S.TEACHER].attrs.items():
            if isinstance(value, (bytes, str)):
                value = text(value)
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, np.generic):
                value = value.item()
            teacher[key] = value
    return StreamSpec(
        epochs=int(_int(a[S.STREAM_EPOCHS_ATTR])), batch_size=int(_int(a[S.BATCH_SIZE_ATTR])),
        crop_size=tuple(int(v) for v in np.asarray(a[S.CROP_SIZE_ATTR])), mode=text(a[S.MODE_ATTR]),
        resize=text(a[S.RESIZE_ATTR]), mix=text(a[S.MIX_ATTR]),
        codec=StreamCodec.from_attrs(a, group, None if tail is None else tail.rank),
        temperature=float(np.asarray(a[S.TEMPERATURE_ATTR]).reshape(())), teacher=teacher,
        sampler=json_attr(S.SAMPLER_ATTR), augmentation=json_attr(S.AUGMENTATION_ATTR), tail=tail)


# -- the tail (/stream/tail, rule 18, since 1.3) ---------------------------------------------------
def has_tail(group: h5py.Group, minor: int) -> bool:
    """True when a ``/stream`` of a file of format 1.``minor`` holds a group named ``tail``, which
    rule 18 governs (1.3 or later; below 1.3 readers and verifiers ignore it). A dataset of that
    name is not a tail: it is one of the datasets rule 16 refuses in ``/stream``, and only rule 16
    reports it."""
    return int(minor) >= S.TAIL_SINCE_MINOR and isinstance(group.get(S.STREAM_TAIL), h5py.Group)


def _member(name: str) -> str:
    """``"tail/coef"`` -> ``"coef"``: a tail member's name inside ``/stream/tail``."""
    return name.split("/", 1)[1]


def tail_layout_problems(group: h5py.Group, num_classes: int) -> tuple[list[Problem], int | None]:
    """Rule 18's structure from attributes and object headers (4.8, since 1.3): ``/stream/tail`` a
    group, allowed only with kind ``probs``, codec ``topk`` and k < C; ``rank`` an integer from 1
    to min(C, 256); exactly ``mean`` (C,) float32, ``basis`` (r, C) float32, ``coef`` (Q, r) int8,
    ``scale`` (Q,) float16 and ``batch_sha256`` (NB, 2, 32) uint8 listing coef and scale, no other
    member (Q from ``/stream/image``, NB from ``/stream/batch_start``). Returns (problems, r), r
    None when it cannot be told. Nothing is read but attributes."""
    found: list[Problem] = []

    def fail(message: str, at: str = S.STREAM_TAIL_PATH) -> None:
        found.append(Problem(Rule.STREAM_TAIL, at, message))

    tail = group.get(S.STREAM_TAIL)
    if not isinstance(tail, h5py.Group):
        fail("must be a group, found a dataset")
        return found, None
    c = int(num_classes)
    a = group.attrs
    kind = text(a[S.KIND_ATTR]) if S.KIND_ATTR in a and _is_string(a, S.KIND_ATTR) else None
    codec = text(a[S.CODEC_ATTR]) if S.CODEC_ATTR in a and _is_string(a, S.CODEC_ATTR) else None
    k = _int(a[S.K_ATTR]) if S.K_ATTR in a else None
    if kind != "probs" or codec != TopKCodec.name:
        fail(f"a tail is allowed only in a stream of kind 'probs' with codec {TopKCodec.name!r}, this one is kind {kind!r}, "
             f"codec {codec!r} (spec 4.8)")
    elif k is not None and k >= c:
        fail(f"a tail needs k < C, the stream has k = {k} of C = {c} classes (spec 4.8)")
    rank = _int(tail.attrs[S.TAIL_RANK_ATTR]) if S.TAIL_RANK_ATTR in tail.attrs else None
    top = max_tail_rank(c)
    if S.TAIL_RANK_ATTR not in tail.attrs:
        fail(f"attribute {S.TAIL_RANK_ATTR!r} is missing")
    elif rank is None or not 1 <= rank <= top:
        value = tail.attrs[S.TAIL_RANK_ATTR]
        shown = value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value
        fail(f"attribute {S.TAIL_RANK_ATTR} must be an integer from 1 to min(C, {limits.TAIL_RANK_MAX}) = {top}, "
             f"got {shown!r} (spec 4.8, 2.4)")
        rank = None
    image, starts = group.get(S.STREAM_IMAGE), group.get(S.STREAM_BATCH_START)
    q = int(image.shape[0]) if isinstance(image, h5py.Dataset) and image.ndim >= 1 else None
    nb = int(starts.shape[0]) if isinstance(starts, h5py.Dataset) and starts.ndim >= 1 else None
    r = rank
    expected = {S.STREAM_TAIL_MEAN: ((c,), np.dtype("<f4")), S.STREAM_TAIL_BASIS: ((r, c), np.dtype("<f4")),
                S.STREAM_TAIL_COEF: ((q, r), np.dtype("i1")), S.STREAM_TAIL_SCALE: ((q,), np.dtype("<f2")),
                S.STREAM_TAIL_DIGESTS: ((nb, len(S.STREAM_TAIL_DIGESTED), 32), np.dtype("u1"))}
    for name, (shape, dtype) in expected.items():
        path = S.stream_path(name)
        ds = tail.get(_member(name))
        if ds is None:
            fail("required dataset is missing", path)
            continue
        if not isinstance(ds, h5py.Dataset):
            fail("must be a dataset, found a group", path)
            continue
        if ds.dtype != dtype:
            fail(f"dtype must be {dtype.name}, got {ds.dtype}", path)
        if ds.ndim != len(shape) or any(want is not None and got != want for got, want in zip(ds.shape, shape)):
            told = tuple("?" if v is None else v for v in shape)
            fail(f"shape must be ({', '.join(map(str, told))}{',' if len(told) == 1 else ''}), got {ds.shape}", path)
    digests = tail.get(_member(S.STREAM_TAIL_DIGESTS))
    if isinstance(digests, h5py.Dataset):
        listed = digests.attrs.get(S.ROW_DIGESTS_DATASETS)
        listed = None if listed is None else [text(v) for v in np.atleast_1d(listed)]
        wanted = [S.stream_path(name) for name in S.STREAM_TAIL_DIGESTED]
        if listed != wanted:
            fail(f"attribute {S.ROW_DIGESTS_DATASETS!r} must list {wanted}, got {listed}", digests.name)
    members = {_member(name) for name in S.STREAM_TAIL_MEMBERS}
    for name in tail:
        if name not in members:
            fail(f"is not a member of {S.STREAM_TAIL_PATH} (only {', '.join(sorted(members))}; spec 4.8)",
                 f"{S.STREAM_TAIL_PATH}/{name}")
    return found, rank


def basis_problems(mean: np.ndarray, basis: np.ndarray) -> list[tuple[str, str]]:
    """Rule 18's values of ``mean`` and ``basis``: finite. ``(dataset name, message)`` pairs."""
    found = []
    for name, values in ((S.STREAM_TAIL_MEAN, mean), (S.STREAM_TAIL_BASIS, basis)):
        bad = int(np.sum(~np.isfinite(np.asarray(values, dtype=np.float64))))
        if bad:
            found.append((name, f"{bad} values are NaN or infinite; they must be finite (spec 4.8)"))
    return found


def scale_problem(scale: np.ndarray, offset: int = 0) -> str | None:
    """Rule 18's values of ``scale``: finite and >= 0. Records are numbered from ``offset``."""
    v = np.asarray(scale, dtype=np.float64)
    bad = ~(np.isfinite(v) & (v >= 0))
    if not bad.any():
        return None
    r = int(np.flatnonzero(bad)[0])
    return f"record {offset + r}: tail scale {float(v[r])!r} is not a finite number >= 0 (spec 4.8)"


# -- the layout (datasets, from object headers) -----------------------------------------------------
def expected_layout(spec: StreamSpec, num_classes: int, records: int, batches: int
                    ) -> dict[str, tuple[tuple[int, ...], np.dtype | str]]:
    """Every dataset ``/stream`` must hold (4.7), name -> (shape, dtype or :data:`ANY_INTEGER`),
    for Q = ``records`` and NB = ``batches`` (taken from ``image`` and ``batch_start``)."""
    q, nb = int(records), int(batches)
    out: dict[str, tuple[tuple[int, ...], np.dtype | str]] = {
        S.STREAM_EPOCH_START: ((int(spec.epochs),), np.dtype("<i8")),
        S.STREAM_BATCH_START: ((nb,), np.dtype("<i8")),
        S.STREAM_IMAGE: ((q,), ANY_INTEGER),
        S.STREAM_BOX: ((q, 4), ANY_INTEGER),
        S.STREAM_FLIP: ((q,), np.dtype("u1")),
    }
    if spec.mix in ("cutmix", "mixup"):
        out[S.STREAM_MIX_PARTNER] = ((q,), ANY_INTEGER)
    if spec.mix == "cutmix":
        out[S.STREAM_MIX_BOX] = ((nb, 4), ANY_INTEGER)
    if spec.mix == "mixup":
        out[S.STREAM_MIX_LAMBDA] = ((nb,), np.dtype("<f4"))
    for name, (tail, dtype) in spec.codec.layout(num_classes).items():
        out[name] = ((q, *tail), dtype)
    out[S.STREAM_BATCH_DIGESTS] = ((nb, len(spec.digested(num_classes)), 32), np.dtype("u1"))
    return out


def layout_problems(group: h5py.Group, spec: StreamSpec, num_classes: int) -> tuple[list[Problem], int, int]:
    """Rule 16's dataset part from object headers: the datasets of :func:`expected_layout` present
    with their shapes and dtypes, no other dataset in ``/stream``, and Q, NB within 2.4 (rule 15).
    Returns (problems, Q, NB); Q and NB are 0 when they cannot be told."""
    found: list[Problem] = []
    image, starts = group.get(S.STREAM_IMAGE), group.get(S.STREAM_BATCH_START)
    q = int(image.shape[0]) if isinstance(image, h5py.Dataset) and image.ndim >= 1 else 0
    nb = int(starts.shape[0]) if isinstance(starts, h5py.Dataset) and starts.ndim >= 1 else 0
    if q > limits.MAX_STREAM_RECORDS:
        found.append(Problem(Rule.LIMITS, S.stream_path(S.STREAM_IMAGE),
                             f"{q} records, more than {limits.MAX_STREAM_RECORDS} (spec 2.4)"))
    if nb > limits.MAX_STREAM_BATCHES:
        found.append(Problem(Rule.LIMITS, S.stream_path(S.STREAM_BATCH_START),
                             f"{nb} batches, more than {limits.MAX_STREAM_BATCHES} (spec 2.4)"))
    expected = expected_layout(spec, num_classes, q, nb)
    for name, (shape, dtype) in expected.items():
        path = S.stream_path(name)
        ds = group.get(name)
        if ds is None:
            found.append(Problem(Rule.STREAM if name != S.STREAM_BATCH_DIGESTS else Rule.STREAM_DIGESTS, path,
                                 f"required dataset is missing (mix {spec.mix!r}, kind {spec.codec.kind!r}, "
                                 f"codec {spec.codec.label!r})"))
            continue
        rule = Rule.STREAM_DIGESTS if name == S.STREAM_BATCH_DIGESTS else Rule.STREAM
        if not isinstance(ds, h5py.Dataset):
            found.append(Problem(rule, path, "must be a dataset, found a group"))
            continue
        if ds.shape != shape:
            found.append(Problem(rule, path, f"shape must be {shape}, got {ds.shape}"))
        if dtype == ANY_INTEGER:
            if ds.dtype.kind not in "iu":
                found.append(Problem(rule, path, f"dtype must be an integer type, got {ds.dtype}"))
        elif ds.dtype != dtype:
            found.append(Problem(rule, path, f"dtype must be {np.dtype(dtype).name}, got {ds.dtype}"))
    for name, obj in group.items():
        if isinstance(obj, h5py.Dataset) and name not in expected:
            found.append(Problem(Rule.STREAM, S.stream_path(name), f"dataset is not one of the stream's for mix "
                                 f"{spec.mix!r} and codec {spec.codec.label!r} (spec 4.7)"))
    return found, q, nb


# -- values ------------------------------------------------------------------------------------------
def starts_problems(epoch_start: np.ndarray, batch_start: np.ndarray, records: int, batch_size: int
                    ) -> list[tuple[str, str]]:
    """4.7's values of ``epoch_start`` (E,) and ``batch_start`` (NB,) for Q = ``records``: both
    start at 0 and increase strictly, each < NB (resp. < Q), and every batch holds 1 to B records."""
    found = []
    nb, q = int(batch_start.shape[0]), int(records)
    for name, starts, count, unit in ((S.STREAM_EPOCH_START, epoch_start, nb, "batches"),
                                      (S.STREAM_BATCH_START, batch_start, q, "records")):
        s = np.asarray(starts, dtype=np.int64)
        if s.size == 0 or s[0] != 0:
            found.append((name, f"must start at 0, got {s[:1].tolist()}"))
            continue
        steps = np.diff(s)
        if steps.size and steps.min() <= 0:
            i = int(np.flatnonzero(steps <= 0)[0]) + 1
            found.append((name, f"must increase strictly: entry {i} is {int(s[i])} after {int(s[i - 1])}"))
            continue
        if s[-1] >= count:
            found.append((name, f"entries must be < {count} ({unit}), the last is {int(s[-1])}"))
    if found:
        return found
    lengths = np.diff(np.append(np.asarray(batch_start, dtype=np.int64), q))
    if lengths.size and lengths.max() > batch_size:
        b = int(np.argmax(lengths))
        found.append((S.STREAM_BATCH_START, f"batch {b} holds {int(lengths[b])} records, more than batch_size "
                      f"{batch_size}"))
    return found


def image_problem(image: np.ndarray, num_images: int, offset: int = 0) -> str | None:
    """Image indices in [0, M). Records are numbered from ``offset`` in the messages (as are
    batches in the functions below)."""
    v = np.asarray(image)
    if v.size == 0:
        return None
    lo, hi = int(v.min()), int(v.max())
    if lo < 0 or hi >= num_images:
        r = int(np.flatnonzero((v < 0) | (v >= num_images))[0])
        return f"record {offset + r}: image index {int(v[r])} is outside [0, M = {num_images})"
    return None


def box_problem(box: np.ndarray, height: int, width: int, *, empty_ok: bool = False, unit: str = "record",
                offset: int = 0) -> str | None:
    """Boxes [top, left, height, width] inside an ``height`` x ``width`` image: top, left >= 0,
    height, width >= 1 (>= 0 with ``empty_ok``, the mix boxes), top + height <= H, left + width <= W.
    No sum can overflow (differences of int64 values no larger than the image sides)."""
    b = np.asarray(box)
    if b.ndim != 2 or b.shape[1] != 4 or (b.size and b.dtype.kind not in "iu"):
        return f"boxes must be integers of shape (n, 4), got {b.dtype} {b.shape}"
    if b.size == 0:
        return None
    if b.dtype == np.uint64 and b.max() > np.iinfo(np.int64).max:
        return f"box values reach {int(b.max())}, beyond any image"
    top, left, h, w = b.astype(np.int64).T
    least = 0 if empty_ok else 1
    ok = (top >= 0) & (left >= 0) & (h >= least) & (w >= least) & (h <= height) & (w <= width) \
        & (top <= height - h) & (left <= width - w)
    if ok.all():
        return None
    r = int(np.flatnonzero(~ok)[0])
    return f"{unit} {offset + r}: box {b[r].tolist()} [top, left, height, width] is not inside {height} x {width}"


def partner_problem(partner: np.ndarray, lengths: np.ndarray, offset: int = 0) -> str | None:
    """Mix partners in [0, records of their batch); ``lengths`` (n,) is each record's batch length."""
    p = np.asarray(partner)
    if p.size == 0:
        return None
    bad = (p < 0) | (p >= lengths)
    if not bad.any():
        return None
    r = int(np.flatnonzero(bad)[0])
    return f"record {offset + r}: mix partner {int(p[r])} is outside its batch of {int(lengths[r])} records"


def lambda_problem(values: np.ndarray, offset: int = 0) -> str | None:
    """Mix λ finite and in [0, 1]."""
    v = np.asarray(values, dtype=np.float64)
    bad = ~(np.isfinite(v) & (v >= 0) & (v <= 1))
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    return f"batch {offset + i}: mix lambda {float(v.reshape(-1)[i])!r} is not in [0, 1]"


def flip_problem(values: np.ndarray, offset: int = 0) -> str | None:
    """Flips 0 or 1."""
    v = np.asarray(values)
    bad = (v != 0) & (v != 1)
    if not bad.any():
        return None
    r = int(np.flatnonzero(bad)[0])
    return f"record {offset + r}: flip is {int(v[r])}, not 0 or 1"


def batch_problems(spec: StreamSpec, num_classes: int, num_images: int, height: int, width: int,
                   image: np.ndarray, box: np.ndarray, flip: np.ndarray, mix_partner: np.ndarray | None,
                   mix_box: np.ndarray | None, mix_lambda: np.ndarray | None, labels: Mapping[str, np.ndarray],
                   lengths: np.ndarray | None = None, record_offset: int = 0, batch_offset: int = 0
                   ) -> list[tuple[str, str]]:
    """Rule 16's value bounds for the rows of one batch (or of a block of records, with
    ``lengths``, each record's batch length, for the partners): images < M, boxes inside the image,
    flips 0/1, partners inside their batch, mix boxes inside the crop, λ in [0, 1], labels within the
    codec's tolerance. ``mix_box`` is (k, 4) and ``mix_lambda`` (k,) for k batches. Messages number
    records from ``record_offset`` and batches from ``batch_offset``. Returns ``(dataset name,
    message)`` per problem. ``num_images`` or ``height`` None skips that check (the verifier, when
    rule 4 could not tell M, H, W)."""
    found: list[tuple[str, str]] = []

    def add(name: str, message: str | None) -> None:
        if message:
            found.append((name, message))

    if num_images is not None:
        add(S.STREAM_IMAGE, image_problem(image, num_images, record_offset))
    if height is not None:
        add(S.STREAM_BOX, box_problem(box, height, width, offset=record_offset))
    add(S.STREAM_FLIP, flip_problem(flip, record_offset))
    if mix_partner is not None:
        n = np.full(np.shape(mix_partner), np.asarray(image).shape[0]) if lengths is None else lengths
        add(S.STREAM_MIX_PARTNER, partner_problem(mix_partner, n, record_offset))
    if mix_box is not None:
        h_out, w_out = spec.crop_size
        add(S.STREAM_MIX_BOX, box_problem(np.asarray(mix_box).reshape(-1, 4), h_out, w_out, empty_ok=True,
                                          unit="batch", offset=batch_offset))
    if mix_lambda is not None:
        add(S.STREAM_MIX_LAMBDA, lambda_problem(mix_lambda, batch_offset))
    for message in spec.codec.check(labels, num_classes):
        where = f"records {record_offset}..{record_offset + np.asarray(image).shape[0] - 1}"
        add(spec.codec.values_dataset, f"{message} ({where})")
    return found


__all__ = ["ANY_INTEGER", "attribute_problems", "basis_problems", "batch_problems", "box_problem", "expected_layout",
           "flip_problem", "has_tail", "image_problem", "lambda_problem", "layout_problems", "partner_problem",
           "scale_problem", "spec_from_group", "starts_problems", "tail_layout_problems"]
