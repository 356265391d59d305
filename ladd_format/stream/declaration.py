"""What a file's ``/stream`` declares (spec 4.7): :class:`StreamSpec`. numpy only."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from .. import spec as S
from ..spec import limits
from .codec import DEFAULT_STREAM_CODEC, StreamCodec, parse_stream_codec
from .tail import TailBasis

#: the datasets of one row per record (Q rows) other than the labels, in the order of the batch digests
RECORD_DATASETS = (S.STREAM_IMAGE, S.STREAM_BOX, S.STREAM_FLIP)


def _default_codec() -> StreamCodec:
    return parse_stream_codec(DEFAULT_STREAM_CODEC)


@dataclass(frozen=True)
class StreamSpec:
    """The declaration of a relabel stream, the attributes of ``/stream`` and ``/stream/teacher`` (4.7).

    epochs: E, the number of stored epochs (each holds >= 1 batch).
    batch_size: B, the batch size the stream was generated with; every batch holds 1 to B records.
    crop_size: (h_out, w_out), the size every crop is resized to (each side 1 to 2^16).
    mode: ``epochs`` (training epoch e uses stored epoch e) or ``pool`` (LPLD: a pool of batches).
    resize: ``bilinear-antialias`` or ``pil-bilinear`` (5.1; ``pil-bilinear`` needs uint8 images).
    mix: ``none``, ``cutmix`` or ``mixup``.
    codec: how the labels are stored (:class:`StreamCodec`, or its text, e.g. ``logits:float16``).
    temperature: T > 0 (kind ``probs``: labels are softmax(z / T); ``logits``: softmax(stored / T)).
    teacher: ``/stream/teacher`` attributes: ``arch`` required; ``epochs``, ``training_data``,
        ``weights_sha256``, ``mean``, ``std`` optional (None values are left out).
    sampler, augmentation: JSON-able dicts stored as the JSON attributes of the same names, or None.
    tail: the basis of the low-rank tail (``/stream/tail`` ``mean`` and ``basis``, spec 4.8):
        required when, and only when, ``codec.tail_rank`` is set, of that rank and C classes
        (:func:`~ladd_format.stream.tail.fit_tail_basis` of the first records' logits).
    """

    epochs: int
    batch_size: int
    crop_size: tuple[int, int]
    mode: str = "epochs"
    resize: str = S.RESIZE_ANTIALIAS
    mix: str = "none"
    codec: StreamCodec = field(default_factory=_default_codec)
    temperature: float = 1.0
    teacher: dict = field(default_factory=lambda: {S.ARCH_ATTR: "unknown"})
    sampler: dict | None = None
    augmentation: dict | None = None
    tail: TailBasis | None = None

    def __post_init__(self) -> None:
        # conveniences, so that equal declarations compare equal: a codec given as text is parsed
        # (a bad one raises its one-line CodecError), a crop size of integers becomes a tuple of ints
        if isinstance(self.codec, str):
            object.__setattr__(self, "codec", parse_stream_codec(self.codec))
        crop = self.crop_size
        if isinstance(crop, (list, tuple, np.ndarray)) and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in crop):
            object.__setattr__(self, "crop_size", tuple(int(v) for v in crop))

    # -- what the declaration implies ------------------------------------------------------------
    def mix_datasets(self) -> tuple[str, ...]:
        """The mix datasets of this ``mix``, in the order of the batch digests: ``mix_partner`` and
        ``mix_box`` (cutmix), ``mix_partner`` and ``mix_lambda`` (mixup), none for ``none``."""
        if self.mix == "cutmix":
            return (S.STREAM_MIX_PARTNER, S.STREAM_MIX_BOX)
        if self.mix == "mixup":
            return (S.STREAM_MIX_PARTNER, S.STREAM_MIX_LAMBDA)
        return ()

    def digested(self, num_classes: int) -> list[str]:
        """The names (inside ``/stream``) of the datasets ``/stream/batch_sha256`` covers, in the
        order of its ``datasets`` attribute (4.7): image, box, flip, the mix datasets, the labels."""
        return [*RECORD_DATASETS, *self.mix_datasets(), *self.codec.layout(num_classes)]

    @staticmethod
    def per_batch(name: str) -> bool:
        """True for the datasets of one row per batch (``mix_box``, ``mix_lambda``), False for one row per record."""
        return name in (S.STREAM_MIX_BOX, S.STREAM_MIX_LAMBDA)

    def problems(self, num_classes: int) -> list[str]:
        """What makes this declaration unusable for a file of ``num_classes`` classes (4.7, 2.4):
        one message per problem, empty when it can be written."""
        found = []
        for name, value, top in (("epochs", self.epochs, limits.MAX_STREAM_EPOCHS),
                                 ("batch_size", self.batch_size, limits.MAX_STREAM_BATCH)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 1 <= int(value) <= top:
                found.append(f"{name} must be an integer from 1 to {top}, got {value!r}")
        if not found and int(self.batch_size) * int(num_classes) > limits.MAX_STREAM_BATCH_VALUES:
            found.append(f"batch_size {self.batch_size} x {num_classes} classes exceeds {limits.MAX_STREAM_BATCH_VALUES} "
                         "values (one batch's labels <= 256 MiB of float32, spec 2.4)")
        crop = tuple(self.crop_size) if isinstance(self.crop_size, (tuple, list, np.ndarray)) else ()
        if len(crop) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                     and 1 <= int(v) <= limits.MAX_CROP_SIDE for v in crop):
            found.append(f"crop_size must be two integers (h_out, w_out) from 1 to {limits.MAX_CROP_SIDE}, "
                         f"got {self.crop_size!r}")
        for name, value, allowed in (("mode", self.mode, S.STREAM_MODES), ("resize", self.resize, S.STREAM_RESIZES),
                                     ("mix", self.mix, S.STREAM_MIXES)):
            if value not in allowed:
                found.append(f"{name} must be one of {list(allowed)}, got {value!r}")
        if not isinstance(self.codec, StreamCodec):
            found.append(f"codec must be a StreamCodec (parse_stream_codec), got {self.codec!r}")
        else:
            try:
                self.codec.layout(num_classes)
            except Exception as exc:  # noqa: BLE001 - CodecError: k > C, C > 65536 for topk, tail bounds
                found.append(getattr(exc, "message", str(exc)))
            found.extend(self._tail_problems(num_classes))
        t = self.temperature
        if not isinstance(t, (int, float, np.floating, np.integer)) or not (math.isfinite(float(t)) and float(t) > 0):
            found.append(f"temperature must be a finite number > 0, got {t!r}")
        if not isinstance(self.teacher, dict) or not self.teacher.get(S.ARCH_ATTR):
            found.append("teacher description needs at least 'arch'")
        for name, value in ((S.SAMPLER_ATTR, self.sampler), (S.AUGMENTATION_ATTR, self.augmentation)):
            if value is not None:
                try:
                    json.dumps(value, allow_nan=False)
                except (TypeError, ValueError) as exc:
                    found.append(f"{name} must be JSON-able: {exc}")
        return found

    def _tail_problems(self, num_classes: int) -> list[str]:
        """The tail basis given exactly when the codec has a tail, of its rank and C classes."""
        rank = self.codec.tail_rank
        if rank is None:
            return [] if self.tail is None else [f"a tail basis was given, but codec {self.codec.label!r} has no tail"]
        if not isinstance(self.tail, TailBasis):
            return [f"codec {self.codec.label!r} needs tail=TailBasis (fit_tail_basis of the first records' logits), "
                    f"got {type(self.tail).__name__}"]
        if self.tail.rank != rank or self.tail.num_classes != int(num_classes):
            return [f"tail basis has rank {self.tail.rank} over {self.tail.num_classes} classes, codec "
                    f"{self.codec.label!r} needs rank {rank} over {num_classes}"]
        return []


__all__ = ["RECORD_DATASETS", "StreamSpec"]
