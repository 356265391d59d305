"""Codec ``float32``: probabilities stored as float32, decoded as stored (spec 6)."""

from __future__ import annotations

import numpy as np

from .base import PROBS, Codec, float_row_problems, register


@register
class Float32Codec(Codec):
    name = "float32"
    values_dataset = PROBS
    dtype = np.dtype("<f4")
    tolerance = 1e-3

    def layout(self, num_sub, num_classes):
        return {PROBS: ((num_sub, num_classes), self.dtype)}

    def encode(self, probs):
        # spec 6: p is taken as float64 and cast once (float16 directly from float64)
        return {PROBS: np.asarray(probs, dtype=np.float64).astype(self.dtype)}

    def decode(self, stored, num_classes):
        return np.asarray(stored[PROBS]).astype(np.float32)

    def decode_tensor(self, stored, num_classes, dtype=None):
        import torch

        return stored[PROBS].to(dtype or torch.float32)

    def check(self, stored, num_classes):
        return float_row_problems(np.asarray(stored[PROBS]), self.tolerance)
