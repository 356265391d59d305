"""Converters from distillation outputs to D_LA files: one small class per input format, registered
by name.

A converter declares what it is and what it reads::

    @register
    class Mtt(Converter):
        name = "mtt"                                   # the FORMAT argument of ``ladd convert``
        summary = "MTT run folder: images_<it>.pt + labels_<it>.pt"     # one line, in --help
        looks_for = "images_*.pt + labels_*.pt with class-index labels" # auto's refusal lists it
        options = COMMON | FLOAT_IMAGES | {"iteration"}                 # ConvertOptions fields read

        def sniff(self, path) -> str | None:           # a reason when it recognises ``path``
        def convert(self, source, output, options) -> ConversionResult:

``sniff`` is cheap: file names and layout, at most one small labels tensor. ``auto`` asks the
converters' ``sniff`` in the order of :data:`ladd_format.converters.auto.ORDER`, then any converter
it does not list. Every module of this package is imported with it, so a new format is one new file. Every converter
reads its input into a :class:`~ladd_format.converters.common.RawSet` and hands it to the one
:func:`~ladd_format.converters.common.finish` (the defaults are documented there).

An option a converter does not read must be left at its default: :func:`convert` refuses it (the
CLI refuses it earlier, as a usage error, naming the flag).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

from ..errors import InputError


@dataclass
class ConvertOptions:
    """Options of the converters; each converter declares in ``options`` which of these it reads."""

    codec: str | None = None           # dense labels (npz only): text for parse_codec, e.g. topk:k=50,values=float16;
    #                                    None: the codec the npz records (ladd_metadata), else float32
    space: str | None = None           # float image inputs (npz): pixel01, normalized, zca
    layout: str = "auto"               # npz: auto, nchw, nhwc
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    num_classes: int | None = None
    class_names: Sequence[str] | None = None
    overwrite: bool = False
    dataset: str | None = None         # preset: cifar10, cifar100, tinyimagenet, imagenet, imagenette, ...
    keep_float: bool = False           # store float images losslessly instead of uint8
    zca: bool | None = None            # True: the images are ZCA-whitened (--zca); False: they are not
    #                                    (--no-zca); None: the input decides (common._zca_space)
    zca_stats: str | None = None       # .npz with mean + inverse, or train_images to refit (eps 0.1)
    iteration: int | None = None       # run folders: images_<iteration>.pt instead of images_best.pt
    experiment: int | None = None      # dc: experiment N (res_*.pt data[N], DD-Ranking images_..._N.pt);
    #                                    None: data[0] of a results file, _best of DD-Ranking tensors


#: read by every converter (they all go through ``common.finish``)
COMMON = frozenset({"overwrite", "dataset", "mean", "std", "num_classes", "class_names"})
#: read by converters whose input may hold float images
FLOAT_IMAGES = frozenset({"keep_float", "zca", "zca_stats"})


@dataclass
class ConversionResult:
    output: Path
    num_images: int
    notes: list[str] = field(default_factory=list)


class Converter:
    """One input format. Subclasses set the class attributes and implement ``convert``."""

    name: str = ""
    summary: str = ""                  # one line, listed by ``ladd convert --help``
    looks_for: str = ""                # what sniff recognises, in a few words
    options: frozenset[str] = COMMON   # the ConvertOptions fields this converter reads

    def sniff(self, path: Path) -> str | None:
        """A reason when ``path`` looks like this converter's input, else None. Never raises."""
        return None

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        raise NotImplementedError

    def flags(self) -> str:
        """The options it reads, as command-line flags (``--force`` is everyone's, left out)."""
        return ", ".join(option_flag(name) for name in sorted(self.options - {"overwrite"}))


_REGISTRY: dict[str, Converter] = {}


def register(cls: type[Converter]) -> type[Converter]:
    """Class decorator: make a converter available by its ``name``."""
    converter = cls()
    unknown = set(converter.options) - {f.name for f in fields(ConvertOptions)}
    if not cls.name or not cls.summary or unknown:
        raise TypeError(f"converter {cls.__name__} needs a name and a summary, and options among the "
                        f"ConvertOptions fields (unknown: {sorted(unknown)})")
    _REGISTRY[cls.name] = converter
    return cls


def option_flag(name: str) -> str:
    """The command-line flag of a ConvertOptions field."""
    return "--force" if name == "overwrite" else "--" + name.replace("_", "-")


def converter_names() -> list[str]:
    return sorted(_REGISTRY)


def get_converter(name: str) -> Converter:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown input format {name!r}; known: {', '.join(converter_names())}") from None


def formats_help() -> str:
    """One line per format with its summary (the epilog of ``ladd convert --help``)."""
    width = max(map(len, _REGISTRY))
    return "\n".join(f"  {name:<{width}}  {_REGISTRY[name].summary}" for name in converter_names())


def unread_options(converter: Converter, given: set[str]) -> list[str]:
    """The fields in ``given`` that ``converter`` does not read, sorted."""
    return sorted(set(given) - set(converter.options))


def check_options(converter: Converter, options: ConvertOptions) -> None:
    """Refuse options the converter does not read that are not at their defaults."""
    defaults = ConvertOptions()
    given = {f.name for f in fields(options) if getattr(options, f.name) != getattr(defaults, f.name)}
    stray = unread_options(converter, given)
    if stray:
        raise InputError(f"{', '.join(map(option_flag, stray))} not read by format {converter.name}; "
                         f"{converter.name} reads {converter.flags()}")


def convert(fmt: str, source: str | os.PathLike, output: str | os.PathLike,
            options: ConvertOptions | None = None, progress=None) -> ConversionResult:
    """Convert ``source`` in format ``fmt`` to a D_LA file at ``output``; ``progress(images
    written, images)`` after each batch the writer takes (``None`` inside a running conversion,
    as ``auto`` calls the format it detected: the outer conversion's ``progress``)."""
    from .common import WRITE_PROGRESS

    converter = get_converter(fmt)
    options = options or ConvertOptions()
    check_options(converter, options)
    token = WRITE_PROGRESS.set(progress if progress is not None else WRITE_PROGRESS.get())
    try:
        return converter.convert(Path(source), Path(output), options)
    finally:
        WRITE_PROGRESS.reset(token)


# Registration side effect: every module of this package is imported, so a new converter is one
# new file (helper modules without a converter register nothing). auto.py reads the registry when
# it runs, not when it is imported.
import importlib as _importlib  # noqa: E402
import pkgutil as _pkgutil  # noqa: E402

for _module in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    _importlib.import_module(f"{__name__}.{_module}")
