"""Converter ``npz``: a NumPy ``.npz`` of arrays -> D_LA (the generic way in for your own arrays).

Keys (spec names in brackets):
  images        uint8 (M, K, H, W) or (M, H, W, K) [/images]; (M, H, W) is read as K = 1; float
                images need ``space`` (pixel01, normalized, zca): the option, or a ``space`` key.
  labels        (M,) integer class indices [/labels].
  num_classes   optional scalar; else the option, else the last axis of dense_labels or
                soft_labels, else max(labels) + 1 (the choice is reported).
  class_names   optional (C,) strings.
  mean, std     optional (K,) per-channel normalisation; else the options; else computed from the
                images on the 0..1 scale (recorded in /provenance report).
  dense_labels  optional (M, N*N, C) probabilities, with scalars ``n`` and ``ratio`` [/dense];
                optional ``temperature`` (default 1) and strings ``labeler_arch`` (default
                ``unknown``) and ``labeler_training_data`` [/dense/labeler].
  soft_labels   optional (M, C) global soft labels, with ``soft_kind`` = logits (default) or probs.
"""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..codecs import make_codec
from ..errors import InputError, LaddError, ShapeError
from ..pixels import channel_stats, to_nchw
from ..writer import DenseSpec, DLAWriter
from .common import write_batches
from . import ConversionResult, ConvertOptions, register_converter

INPUT_KEYS = {"/images": "images", "/labels": "labels", "/dense": "dense_labels", "/soft_labels": "soft_labels"}


def _load(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError("no such file", path)
    if not zipfile.is_zipfile(path):
        raise InputError("not a readable .npz archive (an .npz is a zip of .npy arrays)", path)
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
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"not a readable .npz archive: {exc}", path) from None


def _scalar(arrays, key, path, cast):
    value = arrays[key]
    if value.size != 1:
        raise ShapeError(f"key {key!r} must be a scalar, got shape {value.shape}", path)
    return cast(value.reshape(()).item())


@register_converter("npz")
def convert(source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
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
    notes: list[str] = []
    report: dict = {}

    if options.space is None and "space" in arrays:
        options = replace(options, space=_scalar(arrays, "space", source, str))
    if images.dtype == np.uint8:
        if options.space not in (None, "pixel255"):
            raise InputError(f"images are uint8, so --space {options.space} does not apply", source)
        image_dtype, space = "uint8", None
    elif np.issubdtype(images.dtype, np.floating):
        if options.space is None:
            raise InputError(f"images are {images.dtype}: say what they hold with --space pixel01, normalized or zca",
                             source)
        image_dtype = "float16" if images.dtype == np.float16 else "float32"
        space = options.space
    else:
        raise InputError(f"images must be uint8 or floating point, got {images.dtype}", source)

    if "num_classes" in arrays:
        num_classes = _scalar(arrays, "num_classes", source, int)
    elif options.num_classes is not None:
        num_classes = int(options.num_classes)
    else:
        for key in ("dense_labels", "soft_labels"):
            if key in arrays and arrays[key].ndim >= 2:
                num_classes = int(arrays[key].shape[-1])
                source_of_c = f"the last axis of {key}"
                break
        else:
            num_classes = int(labels.max()) + 1
            source_of_c = "max(labels) + 1"
        notes.append(f"num_classes not given: taken from {source_of_c} = {num_classes}")
        report["num_classes"] = source_of_c

    class_names = options.class_names
    if class_names is None and "class_names" in arrays:
        class_names = [str(v) for v in arrays["class_names"].reshape(-1)]

    k = images.shape[1]
    if "mean" in arrays and "std" in arrays:
        mean, std = arrays["mean"], arrays["std"]
        report["normalization"] = "from the npz"
    elif options.mean is not None and options.std is not None:
        mean, std = options.mean, options.std
        report["normalization"] = "from the command line"
    elif space in ("normalized", "zca"):
        raise InputError(f"images in space {space!r} need the mean and std that were applied (--mean/--std)", source)
    else:
        mean, std = channel_stats(images)
        notes.append("mean/std not given: computed from the images themselves")
        report["normalization"] = "computed from the images (0..1 scale)"
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    if mean.shape != (k,) or std.shape != (k,):
        raise ShapeError(f"mean and std must have {k} values (one per channel), got {mean.size} and {std.size}",
                         source)

    dense_spec, dense = None, None
    if "dense_labels" in arrays:
        dense = arrays["dense_labels"]
        missing = [key for key in ("n", "ratio") if key not in arrays]
        if missing:
            raise InputError(f"dense_labels need the scalar key(s) {', '.join(missing)}", source)
        n = _scalar(arrays, "n", source, int)
        ratio = _scalar(arrays, "ratio", source, float)
        if dense.ndim != 3 or dense.shape != (m, n * n, num_classes):
            raise ShapeError(f"dense_labels must have shape ({m}, {n * n}, {num_classes}) for n = {n} and "
                             f"{num_classes} classes, got {dense.shape}", source)
        config = {"k": options.k, "values": options.topk_values} if options.codec == "topk" else {}
        labeler = {"arch": _scalar(arrays, "labeler_arch", source, str) if "labeler_arch" in arrays else "unknown"}
        if "labeler_training_data" in arrays:
            labeler["training_data"] = _scalar(arrays, "labeler_training_data", source, str)
        temperature = _scalar(arrays, "temperature", source, float) if "temperature" in arrays else 1.0
        dense_spec = DenseSpec(n=n, ratio=ratio, codec=make_codec(options.codec, **config),
                               temperature=temperature, labeler=labeler)

    soft, soft_kind = None, None
    if "soft_labels" in arrays:
        soft = arrays["soft_labels"]
        soft_kind = str(arrays["soft_kind"].reshape(()).item()) if "soft_kind" in arrays else "logits"
        if soft.shape != (m, num_classes):
            raise ShapeError(f"soft_labels must have shape ({m}, {num_classes}), got {soft.shape}", source)

    writer = DLAWriter(output, num_classes=num_classes, image_shape=images.shape[1:], mean=mean, std=std,
                       image_dtype=image_dtype, space=space, dense=dense_spec, soft_kind=soft_kind,
                       class_names=class_names, converter="npz", inputs=[source], report=report or None,
                       overwrite=options.overwrite)
    write_batches(writer, images, labels, dense=dense, soft=soft,
                  blame=lambda exc: (source, f"key {INPUT_KEYS.get(exc.where, exc.where)}"))
    return ConversionResult(output=output, num_images=m, notes=notes)
