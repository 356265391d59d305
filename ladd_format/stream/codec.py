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
from ..codecs import Codec, codec_class, dense_attr_owners, parse_codec
from ..codecs.base import normalize_rows
from ..codecs.topk import TopKCodec
from ..errors import CodecError
from ..h5io import text

#: the stream codec ``ladd relabel`` and the converters use unless told otherwise, as text:
#: ``topk:k=20,values=uint8`` (benchmarks/RESULTS/stream-codecs.md: 1/49 of SRe2L's bytes at T = 1)
DEFAULT_STREAM_CODEC = TopKCodec(k=20, values="uint8").text()
#: what the default becomes for a set of fewer classes than its k: ``uint8`` (C bytes a record, fewer than top-k's 3k)
SMALL_C_CODEC = "uint8"
#: the text form of kind ``logits``: ``logits:float16`` or ``logits:float32``
LOGITS_PREFIX = "logits"
#: the largest finite float16 value: logits beyond it cannot be stored as float16
FLOAT16_MAX = 65504.0


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
    ``label`` is the text form (``topk:k=20,values=uint8``, ``logits:float16``): ``parse_stream_codec``
    of it gives an equal codec.
    """

    kind: str
    codec: Codec | None
    logits_dtype: str | None
    label: str

    # -- layout ----------------------------------------------------------------------------
    def layout(self, num_classes: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """The label datasets inside ``/stream``, in the order of 4.7's table: name -> (row tail,
        dtype); ``(n, *tail)`` for n records. Raises :class:`CodecError` when the codec cannot hold
        ``num_classes`` classes (topk: k <= C <= 65536)."""
        if self.kind == "logits":
            return {S.STREAM_LOGITS: ((int(num_classes),), np.dtype(self.logits_dtype).newbyteorder("<"))}
        return {name: (tuple(tail[1:]), np.dtype(dtype))
                for name, (tail, dtype) in self.codec.layout(1, int(num_classes)).items()}

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
    def encode_logits(self, logits: np.ndarray, temperature: float) -> dict[str, np.ndarray]:
        """``(n, C)`` float logits z -> the stored arrays. Kind ``probs``: p = softmax(z / T) in
        float64, then the codec (section 6); kind ``logits``: z cast once to the stored dtype (the
        temperature is applied when decoding). Raises :class:`CodecError` on non-finite logits, and
        on logits beyond the float16 range for ``logits:float16``."""
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
        return self.codec.encode(softmax64(z, temperature))

    def decode(self, stored: Mapping[str, np.ndarray], num_classes: int, temperature: float | None = None,
               stored_temperature: float = 1.0) -> np.ndarray:
        """The stored arrays of n records -> ``(n, C)`` float32 probabilities.

        ``temperature`` None: the label as stored, i.e. section 6's decode for kind ``probs`` and
        softmax(stored / T_stored) for kind ``logits``. ``temperature`` t given (a student training at
        another temperature): kind ``logits`` gives softmax(stored / t); kind ``probs`` gives the
        decoded q raised to the power T_stored / t, each row renormalised (a row of zeros decodes to
        1/C everywhere), which is softmax(z / t) exactly when q = softmax(z / T_stored)."""
        c = int(num_classes)
        if self.kind == "logits":
            t = float(stored_temperature if temperature is None else temperature)
            return softmax64(np.asarray(stored[S.STREAM_LOGITS]), t).astype(np.float32)
        q = self.codec.decode(dict(stored), c)
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
    def from_attrs(cls, attrs: Mapping[str, Any], datasets: Mapping[str, Any] | None = None) -> "StreamCodec":
        """The codec a file's ``/stream`` declares, from its attributes (``kind``, ``codec``, ``k``)
        and, for topk, the dtype of the stored ``topk_prob`` (``datasets``: h5py datasets or anything
        with a ``dtype``; float16 values when absent). Files are untrusted: anything missing or
        malformed raises a one-line :class:`CodecError`."""
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
        return cls("probs", codec, None, codec.text())

    def __repr__(self) -> str:
        return f"StreamCodec({self.label!r})"

    def __hash__(self) -> int:
        return hash((self.kind, self.label))


def parse_stream_codec(value: str | StreamCodec) -> StreamCodec:
    """A stream codec from its text: any section-6 codec text or JSON (kind ``probs``:
    ``topk:k=20,values=uint8``, ``float16``, ``uint8``, ...) or ``logits:float16`` /
    ``logits:float32`` (kind ``logits``). A :class:`StreamCodec` is returned as it is. Unknown
    names raise a one-line :class:`CodecError`."""
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
    codec = parse_codec(raw)
    return StreamCodec("probs", codec, None, codec.text())


__all__ = ["DEFAULT_STREAM_CODEC", "StreamCodec", "parse_stream_codec", "softmax64"]
