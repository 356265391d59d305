"""Codec ``float16``: probabilities cast to IEEE half precision (round to nearest even)."""

from __future__ import annotations

import numpy as np

from .base import register
from .float32 import Float32Codec


@register
class Float16Codec(Float32Codec):
    name = "float16"
    dtype = np.dtype("<f2")
    # each value has relative error <= 2**-11; values below the float16 subnormal range are lost
    tolerance = 4e-3
