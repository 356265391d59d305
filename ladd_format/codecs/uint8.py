"""Codec ``uint8``: s = floor(255 p + 0.5); decoded as s / 255 with each row renormalised."""

from __future__ import annotations

import numpy as np

from .base import PROBS, Codec, normalize_rows, normalize_tensor_rows, quantize_unit, register


@register
class Uint8Codec(Codec):
    name = "uint8"
    values_dataset = PROBS

    def layout(self, num_sub, num_classes):
        return {PROBS: ((num_sub, num_classes), np.dtype("u1"))}

    def encode(self, probs):
        return {PROBS: quantize_unit(np.asarray(probs))}

    def decode(self, stored, num_classes):
        return normalize_rows(np.asarray(stored[PROBS]).astype(np.float64) / 255.0, num_classes)

    def decode_tensor(self, stored, num_classes, dtype=None):
        import torch

        return normalize_tensor_rows(stored[PROBS].to(dtype or torch.float32) / 255.0, num_classes)

    def check(self, stored, num_classes):
        s = np.asarray(stored[PROBS]).astype(np.int64).sum(axis=-1)
        dev = np.abs(s - 255)
        if dev.size and dev.max() > num_classes / 2:
            return [f"uint8 rows must sum to 255 within C/2 = {num_classes / 2:g}, "
                    f"worst row sums to {int(s.flat[int(np.argmax(dev))])}"]
        return []
