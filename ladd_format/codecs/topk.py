"""Codec ``topk``: the k largest probabilities and their class indices; the rest of the mass is
spread evenly over the other C - k classes on decoding (spec 6)."""

from __future__ import annotations

import numpy as np

from ..errors import CodecError
from ..spec.limits import MAX_TOPK_CLASSES
from ..spec.names import K_ATTR
from .base import Codec, normalize_rows, normalize_tensor_rows, quantize_unit, register, unit_interval_problems

#: the codec's two datasets inside /dense (spec 4.5)
INDEX, VALUES = "topk_index", "topk_prob"
VALUE_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "uint8": np.dtype("u1")}


#: below this many classes a full sort of each row is as fast as selecting the k largest first
FULL_SORT_CLASSES = 64


def top_indices(p: np.ndarray, k: int) -> np.ndarray:
    """The indices of the k largest values of each row of ``p`` (float64 (..., C)), in descending
    order, ties broken by the lower class index (spec 6): exactly what a stable sort of ``-p`` gives,
    its first k. The k largest are selected first (``argpartition``) and only they are sorted, by
    value then class index; a row whose k-th value ties with a value outside the selection, or that
    holds a NaN, takes the full stable sort (which alone decides which of the tied classes are kept).
    int64 (..., k)."""
    c = p.shape[-1]
    if k >= c or c <= FULL_SORT_CLASSES or p.size == 0:
        return np.argsort(-p, axis=-1, kind="stable")[..., :k]
    neg = -p.reshape(-1, c)
    picked = np.argpartition(neg, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(neg, picked, axis=1)
    kth = values.max(axis=1, keepdims=True)
    order = np.lexsort((picked, values), axis=1)            # by value, then by class index
    index = np.take_along_axis(picked, order, axis=1)
    full = ((neg == kth).sum(axis=1) != (values == kth).sum(axis=1)) | np.isnan(kth[:, 0])
    if full.any():
        index[full] = np.argsort(neg[full], axis=1, kind="stable")[:, :k]
    return index.reshape(p.shape[:-1] + (k,))


@register
class TopKCodec(Codec):
    name = "topk"
    values_dataset = VALUES
    dense_attr_names = (K_ATTR,)

    def __init__(self, k: int = 10, values: str = "float16"):
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or int(k) < 1:
            raise CodecError(f"topk needs an integer k >= 1, got {k!r}")
        if not isinstance(values, str) or values not in VALUE_DTYPES:
            raise CodecError(f"topk values must be one of {', '.join(VALUE_DTYPES)}, got {values!r}")
        self.k = int(k)
        self.values = values

    def config(self):
        return {"name": self.name, "k": self.k, "values": self.values}

    def dense_attrs(self):
        return {"k": self.k}

    @classmethod
    def from_dense(cls, attrs, datasets):
        """k from the ``k`` attribute; the value type from the stored ``topk_prob`` dtype (the
        default when the dataset is missing or of another dtype, which the verifier reports)."""
        if "k" not in attrs:
            raise CodecError("codec topk needs the /dense attribute k (an integer >= 1)")
        k = attrs[K_ATTR]
        if isinstance(k, np.ndarray) and k.shape in ((), (1,)):
            k = k.reshape(()).item()
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
            raise CodecError(f"/dense attribute k must be an integer >= 1, got {k!r}")
        values = "float16"
        stored = datasets.get(VALUES) if hasattr(datasets, "get") else None
        dtype = getattr(stored, "dtype", None)
        for name, value_dtype in VALUE_DTYPES.items():
            if dtype is not None and np.dtype(dtype) == value_dtype:
                values = name
        return cls(k=int(k), values=values)

    @classmethod
    def usage(cls):
        return f"{cls.name}:k=K,values={'|'.join(sorted(VALUE_DTYPES))}"

    def label(self):
        return f"{self.name}{self.k}-{self.values}"

    def layout(self, num_sub, num_classes):
        if self.k > num_classes:
            raise CodecError(f"topk k = {self.k} exceeds the number of classes {num_classes}")
        if num_classes > MAX_TOPK_CLASSES:
            raise CodecError(f"topk stores uint16 indices, so C must be <= {MAX_TOPK_CLASSES}, got {num_classes}")
        return {INDEX: ((num_sub, self.k), np.dtype("<u2")),
                VALUES: ((num_sub, self.k), VALUE_DTYPES[self.values])}

    def encode(self, probs):
        p = np.asarray(probs, dtype=np.float64)  # spec 6: encoding works on float64
        if self.k > p.shape[-1]:
            raise CodecError(f"topk k = {self.k} exceeds the number of classes {p.shape[-1]}")
        index = top_indices(p, self.k)
        top = np.take_along_axis(p, index, axis=-1)
        if self.values == "uint8":
            stored = quantize_unit(top)
        else:
            stored = top.astype(VALUE_DTYPES[self.values])
        return {INDEX: index.astype("<u2"), VALUES: stored}

    @staticmethod
    def stored_values(stored) -> np.ndarray:
        """The stored top-k values as float64 probabilities (uint8: s / 255)."""
        raw = np.asarray(stored[VALUES])
        v = raw.astype(np.float64)
        return v / 255.0 if raw.dtype == np.uint8 else v

    def decode(self, stored, num_classes):
        index = np.asarray(stored[INDEX]).astype(np.int64)
        v = self.stored_values(stored)
        k = index.shape[-1]
        if k < num_classes:
            raw = np.asarray(stored[VALUES])
            if raw.dtype == np.uint8:   # the rest from the integers: exactly 0 when they sum to 255 or more
                left = np.maximum(0, 255 - raw.astype(np.int64).sum(axis=-1, keepdims=True)) / 255.0
            else:
                left = np.maximum(0.0, 1.0 - v.sum(axis=-1, keepdims=True))
            rest = left / (num_classes - k)
            out = np.broadcast_to(rest, index.shape[:-1] + (num_classes,)).copy()
        else:
            out = np.zeros(index.shape[:-1] + (num_classes,), dtype=np.float64)
        np.put_along_axis(out, index, v, axis=-1)
        return normalize_rows(out, num_classes)

    def decode_tensor(self, stored, num_classes, dtype=None):
        import torch

        raw = stored[VALUES]
        v = raw.to(dtype or torch.float32)
        v = v / 255.0 if raw.dtype == torch.uint8 else v
        index = stored[INDEX].long()
        k = index.shape[-1]
        shape = (*index.shape[:-1], num_classes)
        if k < num_classes:
            if raw.dtype == torch.uint8:   # the rest from the integers, as decode
                left = (255 - raw.long().sum(dim=-1, keepdim=True)).clamp_min(0).to(v.dtype) / 255.0
            else:
                left = (1.0 - v.sum(dim=-1, keepdim=True)).clamp_min(0.0)
            rest = left / (num_classes - k)
            out = rest.expand(shape).clone()
        else:
            out = torch.zeros(shape, dtype=v.dtype, device=v.device)
        out.scatter_(-1, index, v)
        return normalize_tensor_rows(out, num_classes)

    def check(self, stored, num_classes):
        problems = []
        index = np.asarray(stored[INDEX]).astype(np.int64)
        raw = np.asarray(stored[VALUES])
        if index.size and index.max() >= num_classes:
            problems.append(f"class indices must be < C = {num_classes}, found {int(index.max())}")
        if index.shape[-1] > 1:
            ordered = np.sort(index, axis=-1)
            if np.any(ordered[..., 1:] == ordered[..., :-1]):
                problems.append("class indices must be distinct within each row")
        k = raw.shape[-1]
        if raw.dtype == np.uint8:
            s = raw.astype(np.int64).sum(axis=-1)
            if s.size and s.max() > 255 + k / 2:
                problems.append(f"uint8 values must sum to <= 255 + k/2 per row, found {int(s.max())}")
            if s.size and s.min() < 255 * k / num_classes - k / 2:
                problems.append(f"uint8 values of the top {k} of {num_classes} classes must sum to >= "
                                f"255 k/C - k/2 per row, found {int(s.min())}")
            return problems
        value_problems, v = unit_interval_problems(raw)
        problems += value_problems
        s = v.sum(axis=-1)
        if s.size and s.max() > 1 + 1e-3:
            problems.append(f"values must sum to <= 1 + 1e-3 per row, found {s.max():.6g}")
        if s.size and s.min() < k / num_classes - 1e-3:
            problems.append(f"the top {k} of {num_classes} classes must hold >= k/C - 1e-3 of the mass per row, "
                            f"found {s.min():.6g}")
        return problems
