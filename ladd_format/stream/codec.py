"""The soft-label codec of a relabel stream (spec 4.7, section 6): kind ``probs`` through a section-6
codec, or kind ``logits`` stored as float16/float32. numpy only.

Rows are one per record: a codec's stored arrays are ``(n, C)`` or ``(n, k)`` here, where ``/dense``
stores ``(M, P, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .. import spec as S
from ..codecs import Codec, codec_class, dense_attr_owners, make_codec, parse_codec_config
from ..codecs.base import normalize_rows
from ..codecs.topk import INDEX as TOPK_INDEX
from ..codecs.topk import TopKCodec
from ..errors import CodecError
from ..h5io import text
from ..spec.limits import TAIL_RANK_MAX
from .tail import FLOAT16_MAX, TailBasis, decode_with_tail, encode_tail, max_tail_rank

#: the option of a stream codec's text that adds the low-rank tail (spec 1.3): ``topk:...,tail=R``
TAIL_OPTION = "tail"
#: the stream codec ``ladd relabel`` and the converters use unless told otherwise, as text:
#: ``topk:k=5,values=uint8,tail=24``: the top 5 in uint8 and a rank-24 tail (spec 1.3), chosen by
#: benchmarks/RESULTS/stream-codecs.md and stream-students.md (docs/relabel.md has the reading)
DEFAULT_STREAM_CODEC = f"{TopKCodec(k=5, values='uint8').text()},{TAIL_OPTION}=24"
#: what the default becomes for a set of at most 3k + r + 2 classes (:func:`default_stream_codec`):
#: ``uint8``, whose C raw bytes a record are then no more than the default's
SMALL_C_CODEC = "uint8"
#: the text form of kind ``logits``: ``logits:float16`` or ``logits:float32``
LOGITS_PREFIX = "logits"


def softmax64(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(z / T)`` over the last axis, computed in float64 (spec 6 encodes from float64)."""
    v = np.asarray(z, dtype=np.float64) / float(temperature)
    v = v - v.max(axis=-1, keepdims=True)
    e = np.exp(v)
    return e / e.sum(axis=-1, keepdims=True)


def _int_attr(value) -> int | None:
    """An integer attribute's value, or None when it is not one integer."""
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(()).item()
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    return None


@dataclass(frozen=True)
class StreamCodec:
    """How a stream stores its labels (spec 4.7 ``kind``/``codec``/``k``).

    kind ``probs``: ``codec`` is a section-6 codec of the probabilities softmax(z / T);
    kind ``logits``: ``logits_dtype`` is ``float16`` or ``float32`` and the label is softmax(stored / T).
    ``label`` is the text form (``topk:k=5,values=uint8,tail=24``, ``logits:float16``):
    ``parse_stream_codec`` of it gives an equal codec. ``tail_rank``: r of the low-rank tail
    (``/stream/tail``, spec 1.3; kind ``probs`` with codec ``topk`` only), or None.
    """

    kind: str
    codec: Codec | None
    logits_dtype: str | None
    label: str
    tail_rank: int | None = None

    # -- layout ----------------------------------------------------------------------------
    def layout(self, num_classes: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """The label datasets inside ``/stream``, in the order of 4.7's table: name -> (row tail,
        dtype); ``(n, *tail)`` for n records. Raises :class:`CodecError` when the codec cannot hold
        ``num_classes`` classes (topk: k <= C <= 65536)."""
        if self.kind == "logits":
            return {S.STREAM_LOGITS: ((int(num_classes),), np.dtype(self.logits_dtype).newbyteorder("<"))}
        out = {name: (tuple(tail[1:]), np.dtype(dtype))
               for name, (tail, dtype) in self.codec.layout(1, int(num_classes)).items()}
        if self.tail_rank is not None:
            self._check_tail_fits(int(num_classes))
        return out

    def _check_tail_fits(self, num_classes: int) -> None:
        """The tail's own bounds for C classes (4.7, 2.4): k < C and 1 <= r <= min(C, 256)."""
        if self.codec.k >= num_classes:
            raise CodecError(f"a tail needs k < C: codec {self.label} has k = {self.codec.k} for {num_classes} classes")
        if self.tail_rank > max_tail_rank(num_classes):
            raise CodecError(f"tail rank {self.tail_rank} exceeds min(C, {TAIL_RANK_MAX}) = {max_tail_rank(num_classes)} "
                             f"for {num_classes} classes")

    def tail_layout(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """The tail's per-record datasets (names relative to ``/stream``), as :meth:`layout`:
        ``tail/coef`` (r,) int8 and ``tail/scale`` () float16; empty without a tail."""
        if self.tail_rank is None:
            return {}
        return {S.STREAM_TAIL_COEF: ((int(self.tail_rank),), np.dtype("i1")),
                S.STREAM_TAIL_SCALE: ((), np.dtype("<f2"))}

    @property
    def values_dataset(self) -> str:
        """The label dataset problems with the values are reported against (``probs``, ``topk_prob``, ``logits``)."""
        return S.STREAM_LOGITS if self.kind == "logits" else self.codec.values_dataset

    def attrs(self) -> dict:
        """The ``/stream`` attributes this codec sets: ``kind``, ``codec`` and, for topk, ``k``."""
        if self.kind == "logits":
            return {S.KIND_ATTR: "logits", S.CODEC_ATTR: self.logits_dtype}
        return {S.KIND_ATTR: "probs", S.CODEC_ATTR: self.codec.name, **self.codec.dense_attrs()}

    # -- encoding and decoding ---------------------------------------------------------------
    def encode_logits(self, logits: np.ndarray, temperature: float, tail: TailBasis | None = None
                      ) -> dict[str, np.ndarray]:
        """``(n, C)`` float logits z -> the stored arrays. Kind ``probs``: p = softmax(z / T) in
        float64, then the codec (section 6); kind ``logits``: z cast once to the stored dtype (the
        temperature is applied when decoding). With a tail (``tail_rank`` set) the result also holds
        ``tail/coef`` and ``tail/scale`` (:func:`~ladd_format.stream.tail.encode_tail` in ``tail``,
        the stream's basis). Raises :class:`CodecError` on non-finite logits, on logits beyond the
        float16 range for ``logits:float16``, and on a tail basis missing, of another rank or of
        another class count, or given to a codec without a tail."""
        z = np.asarray(logits)
        if z.ndim != 2:
            raise CodecError(f"logits must be (n, C), got shape {z.shape}")
        if z.dtype.kind not in "fiu":
            raise CodecError(f"logits must be numbers, got {z.dtype}")
        if not np.all(np.isfinite(z)):
            raise CodecError("logits contain NaN or infinite values")
        if self.kind == "logits":
            if self.logits_dtype == "float16" and z.size and np.abs(z).max() > FLOAT16_MAX:
                raise CodecError(f"logits reach {float(np.abs(z).max()):.6g}, beyond the float16 range "
                                 f"({FLOAT16_MAX:g}); store them as logits:float32")
            return {S.STREAM_LOGITS: z.astype(np.float64).astype(np.dtype(self.logits_dtype).newbyteorder("<"))}
        self._check_tail_basis(tail, z.shape[1])
        out = self.codec.encode(softmax64(z, temperature))
        if self.tail_rank is not None:
            out[S.STREAM_TAIL_COEF], out[S.STREAM_TAIL_SCALE] = encode_tail(z, tail)
        return out

    def _check_tail_basis(self, tail: TailBasis | None, num_classes: int) -> None:
        """A basis given exactly when the codec has a tail, of its rank and of ``num_classes`` classes."""
        if self.tail_rank is None:
            if tail is not None:
                raise CodecError(f"codec {self.label} has no tail, but a tail basis was given")
            return
        if not isinstance(tail, TailBasis):
            raise CodecError(f"codec {self.label} needs its tail basis (TailBasis; fit_tail_basis), got "
                             f"{type(tail).__name__}")
        if tail.rank != self.tail_rank or tail.num_classes != int(num_classes):
            raise CodecError(f"codec {self.label} needs a tail basis of rank {self.tail_rank} over {num_classes} "
                             f"classes, got rank {tail.rank} over {tail.num_classes}")

    def decode(self, stored: Mapping[str, np.ndarray], num_classes: int, temperature: float | None = None,
               stored_temperature: float = 1.0, tail: TailBasis | None = None) -> np.ndarray:
        """The stored arrays of n records -> ``(n, C)`` float32 probabilities.

        ``temperature`` None: the label as stored, i.e. section 6's decode for kind ``probs`` and
        softmax(stored / T_stored) for kind ``logits``. ``temperature`` t given (a student training at
        another temperature): kind ``logits`` gives softmax(stored / t); kind ``probs`` gives the
        decoded q raised to the power T_stored / t, each row renormalised (a row of zeros decodes to
        1/C everywhere), which is softmax(z / t) exactly when q = softmax(z / T_stored).

        A codec with a tail needs ``tail`` (the stream's basis) and ``stored`` holding ``tail/coef``
        and ``tail/scale``: the leftover mass is then spread by the low-rank logits
        (:func:`~ladd_format.stream.tail.decode_with_tail`, at T_stored) instead of evenly."""
        c = int(num_classes)
        if self.kind == "logits":
            t = float(stored_temperature if temperature is None else temperature)
            return softmax64(np.asarray(stored[S.STREAM_LOGITS]), t).astype(np.float32)
        if self.tail_rank is None:
            q = self.codec.decode(dict(stored), c)
        else:
            self._check_tail_basis(tail, c)
            missing = [key for key in (*self.codec.layout(1, c), *self.tail_layout()) if key not in stored]
            if missing:
                raise CodecError(f"codec {self.label} decodes {', '.join(missing)} too, which were not given")
            q = decode_with_tail(stored[TOPK_INDEX], TopKCodec.stored_values(stored), stored[S.STREAM_TAIL_COEF],
                                 stored[S.STREAM_TAIL_SCALE], tail, float(stored_temperature), self.codec.values)
        if temperature is None or float(temperature) == float(stored_temperature):
            return q
        power = float(stored_temperature) / float(temperature)
        return normalize_rows(np.power(q.astype(np.float64), power), c)

    def check(self, stored: Mapping[str, np.ndarray], num_classes: int) -> list[str]:
        """Problems of the stored rows against section 6's tolerances (kind ``logits``: finite);
        empty when every row holds."""
        if self.kind == "logits":
            v = np.asarray(stored[S.STREAM_LOGITS])
            bad = int(np.sum(~np.isfinite(v)))
            return [f"{bad} logits are NaN or infinite"] if bad else []
        return self.codec.check(dict(stored), int(num_classes))

    # -- reading -----------------------------------------------------------------------------
    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], datasets: Mapping[str, Any] | None = None,
                   tail_rank: int | None = None) -> "StreamCodec":
        """The codec a file's ``/stream`` declares, from its attributes (``kind``, ``codec``, ``k``)
        and, for topk, the dtype of the stored ``topk_prob`` (``datasets``: h5py datasets or anything
        with a ``dtype``; float16 values when absent). ``tail_rank``: the ``rank`` of the file's
        ``/stream/tail`` (read and bounded by the caller, a 1.3 reader), or None for no tail. Files
        are untrusted: anything missing or malformed raises a one-line :class:`CodecError`."""
        for key in (S.KIND_ATTR, S.CODEC_ATTR):
            if key not in attrs:
                raise CodecError(f"{S.STREAM_PATH} attribute {key!r} is missing")
        kind, name = text(attrs[S.KIND_ATTR]), text(attrs[S.CODEC_ATTR])
        if kind not in S.STREAM_KINDS:
            raise CodecError(f"{S.STREAM_PATH} kind must be one of {list(S.STREAM_KINDS)}, got {kind!r}")
        if kind == "probs":
            codec_type = codec_class(name)        # an unknown codec is named as such first
        for key, owners in dense_attr_owners().items():
            if key in attrs and (kind != "probs" or name not in owners):
                raise CodecError(f"{S.STREAM_PATH} attribute {key} belongs to codec {' or '.join(owners)} only, "
                                 f"codec is {name!r}")
        if kind == "logits":
            if name not in S.STREAM_LOGIT_CODECS:
                raise CodecError(f"{S.STREAM_PATH} kind logits needs codec {' or '.join(S.STREAM_LOGIT_CODECS)}, "
                                 f"got {name!r}")
            return parse_stream_codec(f"{LOGITS_PREFIX}:{name}")
        for key in codec_type.dense_attr_names:
            if key not in attrs or _int_attr(attrs[key]) is None or _int_attr(attrs[key]) < 1:
                raise CodecError(f"codec {name} needs the {S.STREAM_PATH} attribute {key} (an integer >= 1)")
        try:
            codec = codec_type.from_dense(attrs, datasets or {})
        except CodecError:
            raise
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise CodecError(f"codec {name!r} cannot be read from {S.STREAM_PATH}: {exc}") from None
        return with_tail(codec, tail_rank)

    def __repr__(self) -> str:
        return f"StreamCodec({self.label!r})"

    def __hash__(self) -> int:
        return hash((self.kind, self.label))


def with_tail(codec: Codec, tail_rank: int | None) -> StreamCodec:
    """The kind-``probs`` stream codec of section-6 ``codec``, with a tail of rank ``tail_rank``
    (None: none). A tail needs codec ``topk`` and 1 <= rank <= :data:`TAIL_RANK_MAX`; else a
    one-line :class:`CodecError` (k < C and rank <= C are checked by :meth:`StreamCodec.layout`)."""
    if tail_rank is None:
        return StreamCodec("probs", codec, None, codec.text())
    if not isinstance(codec, TopKCodec):
        raise CodecError(f"a tail ({TAIL_OPTION}=R) needs codec topk, got {codec.text()!r}")
    if not isinstance(tail_rank, (int, np.integer)) or isinstance(tail_rank, bool) \
            or not 1 <= int(tail_rank) <= TAIL_RANK_MAX:
        raise CodecError(f"{TAIL_OPTION} must be an integer rank from 1 to {TAIL_RANK_MAX}, got {tail_rank!r}")
    r = int(tail_rank)
    return StreamCodec("probs", codec, None, f"{codec.text()},{TAIL_OPTION}={r}", r)


def parse_stream_codec(value: str | StreamCodec) -> StreamCodec:
    """A stream codec from its text: any section-6 codec text or JSON (kind ``probs``:
    ``topk:k=20,values=uint8``, ``float16``, ``uint8``, ...), a ``topk`` one with a tail
    (``topk:k=5,values=uint8,tail=24``, or ``"tail": 24`` in its JSON; spec 1.3), or
    ``logits:float16`` / ``logits:float32`` (kind ``logits``). A :class:`StreamCodec` is returned as
    it is. Unknown names and bad parameters raise a one-line :class:`CodecError`."""
    if isinstance(value, StreamCodec):
        return value
    if isinstance(value, Codec):
        return StreamCodec("probs", value, None, value.text())
    raw = str(value).strip()
    head, sep, rest = raw.partition(":")
    if head.strip() == LOGITS_PREFIX:
        dtype = rest.strip()
        if not sep or dtype not in S.STREAM_LOGIT_CODECS:
            raise CodecError(f"logits are stored as {' or '.join(f'{LOGITS_PREFIX}:{d}' for d in S.STREAM_LOGIT_CODECS)}, "
                             f"got {raw!r}")
        return StreamCodec("logits", None, dtype, f"{LOGITS_PREFIX}:{dtype}")
    config = parse_codec_config(raw)
    tail_rank = config.pop(TAIL_OPTION, None)
    return with_tail(make_codec(config.pop("name"), **config), tail_rank)   # with_tail: a tail needs topk


def default_stream_codec(num_classes: int) -> StreamCodec:
    """The codec a stream of ``num_classes`` classes gets when none is typed: :data:`DEFAULT_STREAM_CODEC`,
    or :data:`SMALL_C_CODEC` when C <= 3k + r + 2 of the default (41: uint8's C raw bytes a record are
    then no more than the default's 3k + r + 2, and the default needs k < C anyway)."""
    default = parse_stream_codec(DEFAULT_STREAM_CODEC)
    if int(num_classes) <= 3 * default.codec.k + int(default.tail_rank or 0) + 2:
        return parse_stream_codec(SMALL_C_CODEC)
    return default


__all__ = ["DEFAULT_STREAM_CODEC", "SMALL_C_CODEC", "TAIL_OPTION", "StreamCodec", "default_stream_codec",
           "parse_stream_codec", "softmax64", "with_tail"]
