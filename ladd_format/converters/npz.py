"""Converter ``npz``: a NumPy ``.npz`` of arrays -> D_LA (the generic way in for your own arrays, and
the way back from ``ladd export --format npz``).

Keys (spec names in brackets); every decision not listed here is ``common.finish``'s, the same as
for the other converters (normalisation, uint8 conversion, class count and names):
  images        uint8 (M, K, H, W) or (M, H, W, K) [/images] (``--layout``); (M, H, W) is read as
                K = 1. Float images need their ``space`` (pixel01, normalized, zca): the option,
                else a ``space`` key; they become uint8 unless ``--keep-float``, or a key
                ``image_dtype`` of ``float32``/``float16`` (written by ``ladd export``) says the
                images are stored floats.
  labels        (M,) integer class indices [/labels].
  num_classes   optional scalar (the input's own count).
  class_names   optional (C,) strings.
  mean, std     optional (K,) per-channel normalisation (the input's own statistics).
  dense_labels  optional (M, N*N, C) probabilities, with scalars ``n`` and ``ratio`` [/dense];
                optional ``temperature`` (default 1) and strings ``labeler_arch`` (default
                ``unknown``) and ``labeler_training_data`` [/dense/labeler]; stored with ``--codec``.
  soft_labels   optional (M, C) global soft labels, with ``soft_kind`` = logits (default) or probs.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..atomic import require_regular_file
from ..errors import InputError, LaddError, ShapeError
from ..pixels import to_nchw
from . import COMMON, FLOAT_IMAGES, ConversionResult, Converter, ConvertOptions, register
from .common import RawSet, check_npz, finish

INPUT_KEYS = {"/images": "images", "/labels": "labels", "/dense": "dense_labels", "/soft_labels": "soft_labels"}
FLOAT_DTYPES = ("float16", "float32")


def _load(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive, after :func:`~ladd_format.converters.common.check_npz` has
    bounded each member by the bytes it holds (nothing is allocated from an unchecked header)."""
    require_regular_file(path)
    if not zipfile.is_zipfile(path):
        raise InputError("not a readable .npz archive (an .npz is a zip of .npy arrays)", path)
    check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise InputError("is a single .npy array, expected an .npz archive of named arrays", path)
            return {key: data[key] for key in data.files}
    except LaddError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError("holds object arrays (pickles), which are refused; store strings as a "
                             "unicode array", path) from None
        raise InputError(f"not a readable .npz archive: {exc}", path) from None
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        raise InputError(f"not a readable .npz archive: {exc}", path) from None


def _scalar(arrays, key, path, cast):
    value = arrays[key]
    if not isinstance(value, np.ndarray):
        raise InputError(f"key {key!r} must be a .npy array", path)
    if value.size != 1:
        raise ShapeError(f"key {key!r} must be a scalar, got shape {value.shape}", path)
    item = value.reshape(()).item()
    if cast is int and (isinstance(item, float) and not item.is_integer() or isinstance(item, (bytes, complex))):
        raise InputError(f"key {key!r} must be an integer, got {item!r}", path)
    try:
        return cast(item)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"key {key!r} must be {'an integer' if cast is int else 'a ' + cast.__name__}, got "
                         f"{str(item)[:40]!r}", path) from None


def read_npz(source: Path, options: ConvertOptions) -> RawSet:
    arrays = _load(source)
    missing = [key for key in ("images", "labels") if key not in arrays]
    if missing:
        raise InputError(f"missing required key(s) {', '.join(missing)}; found {', '.join(sorted(arrays)) or 'none'}",
                         source)
    images = to_nchw(arrays["images"], options.layout, source)
    m = images.shape[0]
    if m < 1:
        raise ShapeError("holds no images", source)
    labels = arrays["labels"]
    if labels.shape != (m,):
        raise ShapeError(f"labels must have shape ({m},) to match the images, got {labels.shape}", source)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be integers, got {labels.dtype}", source)

    space = options.space
    if space is None and "space" in arrays:
        space = _scalar(arrays, "space", source, str)
    if images.dtype == np.uint8:
        if space not in (None, "pixel255"):
            raise InputError(f"images are uint8, so --space {space} does not apply", source)
        space = "pixel255"
    elif np.issubdtype(images.dtype, np.floating):
        if space is None:
            raise InputError(f"images are {images.dtype}: say what they hold with --space pixel01, normalized or zca",
                             source)
        if space not in ("pixel01", "normalized", "zca"):
            raise InputError(f"float images need space pixel01, normalized or zca, got {space!r}", source)
    else:
        raise InputError(f"images must be uint8 or floating point, got {images.dtype}", source)
    stored_dtype = _scalar(arrays, "image_dtype", source, str) if "image_dtype" in arrays else None
    if stored_dtype is not None and stored_dtype not in ("uint8",) + FLOAT_DTYPES:
        raise InputError(f"key image_dtype must be uint8, float16 or float32, got {stored_dtype!r}", source)

    raw = RawSet(images=images, space=space, labels=labels, inputs=[source], input_keys=INPUT_KEYS,
                 stored_dtype=stored_dtype)
    if "num_classes" in arrays:
        raw.num_classes = _scalar(arrays, "num_classes", source, int)
    if "class_names" in arrays:
        raw.class_names = [str(v) for v in arrays["class_names"].reshape(-1)]
    if "mean" in arrays and "std" in arrays:
        raw.mean, raw.std = arrays["mean"], arrays["std"]
        raw.report["normalization"] = "from the npz"
    if "dense_labels" in arrays:
        missing = [key for key in ("n", "ratio") if key not in arrays]
        if missing:
            raise InputError(f"dense_labels need the scalar key(s) {', '.join(missing)}", source)
        raw.dense = arrays["dense_labels"]
        raw.dense_n = _scalar(arrays, "n", source, int)
        raw.dense_ratio = _scalar(arrays, "ratio", source, float)
        raw.dense_labeler = {"arch": _scalar(arrays, "labeler_arch", source, str)
                             if "labeler_arch" in arrays else "unknown"}
        if "labeler_training_data" in arrays:
            raw.dense_labeler["training_data"] = _scalar(arrays, "labeler_training_data", source, str)
        if "temperature" in arrays:
            raw.dense_temperature = _scalar(arrays, "temperature", source, float)
    if "soft_labels" in arrays:
        raw.soft = arrays["soft_labels"]
        raw.soft_kind = _scalar(arrays, "soft_kind", source, str) if "soft_kind" in arrays else "logits"
        if raw.soft_kind not in ("logits", "probs"):
            raise InputError(f"soft_kind must be logits or probs, got {raw.soft_kind!r}", source)
    return raw


@register
class Npz(Converter):
    name = "npz"
    summary = "NumPy .npz of images, labels and optional dense/soft labels (also ladd export --format npz)"
    looks_for = "an .npz file"
    options = COMMON | FLOAT_IMAGES | {"space", "layout", "codec"}

    def sniff(self, path: Path) -> str | None:
        try:
            return "an .npz file" if path.is_file() and path.suffix.lower() == ".npz" else None
        except OSError:
            return None

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        return finish(read_npz(source, options), output, options, self.name)
