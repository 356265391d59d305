"""Converters from distillation outputs to D_LA files, registered by name.

Each converter is one module exposing a function ``convert(source, output, options) ->
ConversionResult`` decorated with :func:`register_converter`. The CLI lists them from the registry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import InputError

ConverterFn = Callable[[Path, Path, "ConvertOptions"], "ConversionResult"]
_REGISTRY: dict[str, ConverterFn] = {}


@dataclass
class ConvertOptions:
    """Options common to the converters; each converter documents which it reads."""

    codec: str = "float32"
    k: int = 10
    topk_values: str = "float16"
    space: str | None = None           # for float image inputs: pixel01, normalized, zca
    layout: str = "auto"               # auto, nchw, nhwc
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    num_classes: int | None = None
    class_names: Sequence[str] | None = None
    overwrite: bool = False
    dataset: str | None = None         # preset: cifar10, cifar100, tinyimagenet, imagenet, imagenette, ...
    keep_float: bool = False           # store float images losslessly instead of uint8
    zca: bool = False                  # the images are ZCA-whitened
    zca_stats: str | None = None       # .npz with mean + inverse, or train_images to refit (eps 0.1)
    iteration: int | None = None       # run folders: images_<iteration>.pt instead of images_best.pt
    experiment: int = 0                # DC results files: which experiment


@dataclass
class ConversionResult:
    output: Path
    num_images: int
    notes: list[str] = field(default_factory=list)


def register_converter(name: str) -> Callable[[ConverterFn], ConverterFn]:
    def wrap(fn: ConverterFn) -> ConverterFn:
        _REGISTRY[name] = fn
        return fn
    return wrap


def converter_names() -> list[str]:
    return sorted(_REGISTRY)


def convert(fmt: str, source: str | os.PathLike, output: str | os.PathLike,
            options: ConvertOptions | None = None) -> ConversionResult:
    """Convert ``source`` in format ``fmt`` to a D_LA file at ``output``."""
    try:
        fn = _REGISTRY[fmt]
    except KeyError:
        raise InputError(f"unknown input format {fmt!r}; known: {', '.join(converter_names())}") from None
    return fn(Path(source), Path(output), options or ConvertOptions())


from . import auto, dc, folder, npz, rded, sre2l, torch_runs  # noqa: E402,F401  (registration side effect)
