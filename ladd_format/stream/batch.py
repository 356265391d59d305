"""One stored batch of a relabel stream (spec 4.7): what the writer takes and the reader returns. numpy only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codec import StreamCodec
from .tail import TailBasis


@dataclass(frozen=True, eq=False)
class StreamBatch:
    """Batch ``index`` (global batch number b, 0..NB-1) of epoch ``epoch``: n records.

    image: int64 (n,) image indices into ``/images``.
    box: int64 (n, 4) crop boxes [top, left, height, width] in image pixels.
    flip: bool (n,), True: the resized crop is mirrored along W.
    mix_partner: int64 (n,) the partner's position inside this batch (cutmix, mixup), else None.
    mix_box: int64 (4,) [top, left, height, width] in crop pixels (cutmix), else None.
    mix_lambda: float λ in [0, 1] (mixup), else None.
    labels: the codec's stored arrays, n rows each (``probs``; ``topk_index`` + ``topk_prob``; ``logits``),
        and with a tail (spec 1.3) ``tail/coef`` (n, r) int8 and ``tail/scale`` (n,) float16.
    """

    epoch: int
    index: int
    image: np.ndarray
    box: np.ndarray
    flip: np.ndarray
    mix_partner: np.ndarray | None
    mix_box: np.ndarray | None
    mix_lambda: float | None
    labels: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def probs(self, codec: StreamCodec, num_classes: int, temperature: float | None = None,
              stored_temperature: float = 1.0, tail: TailBasis | None = None) -> np.ndarray:
        """The records' labels as ``(n, C)`` float32 probabilities (:meth:`StreamCodec.decode`;
        ``tail``: the stream's tail basis, needed when the codec has a tail)."""
        return codec.decode(self.labels, num_classes, temperature, stored_temperature, tail)


__all__ = ["StreamBatch"]
