"""Converters from distillation outputs to D_LA files: one small class per input format, registered
by name.

A converter declares what it is, what it reads and which options it takes::

    @register
    class Dc(Converter):
        name = "dc"                                    # the FORMAT argument of ``ladd convert``
        summary = "DC / DSA / DM: res_*.pt results file ..."           # one line, in --help
        looks_for = "a res_*.pt results file, ..."                     # auto's refusal lists it
        options = COMMON + (KEEP_FLOAT, EXPERIMENT)                    # the Options it reads

        def sniff(self, path) -> str | None:           # a reason when it recognises ``path``
        def convert(self, source, output, options) -> ConversionResult:

An :class:`Option` is declared once (name, kind, help, default) and shared by the converters that
read it: the common ones below are fields of :class:`ConvertOptions` (``finish`` reads them), a
format's own ones (``iteration`` of the run folders, ``experiment`` of ``dc``, ``space`` and
``layout`` of ``npz``) are declared in its module and passed in ``ConvertOptions.format_options``.
:func:`all_options` lists them all (the CLI builds ``convert``'s flags from it); :func:`convert`
refuses, before reading anything, an option the chosen converter does not read
(:class:`UnreadOptions`).

``sniff`` is cheap: file names and layout, at most one small labels tensor. ``auto`` asks the
converters' ``sniff`` in the order of :data:`ladd_format.converters.auto.ORDER`, then any converter
it does not list. Every module of this package is imported with it, so a new format is one new file.
Every converter reads its input into a :class:`~ladd_format.converters.rawset.RawSet` and hands it to
the one :func:`~ladd_format.converters.rawset.finish` (the defaults are documented there). The
run-folder converters (``mtt``, ``glad``, ``datm``, ``tesla``, ``tensors``) share
:class:`~ladd_format.converters.runs.RunFolder`, whose hooks hold each method's facts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import InputError
from ..presets import Preset, preset_names

#: the kinds of option, for a front end to build its flags: flag (on/off), switch (--x/--no-x, default
#: None), int, float (one number), text (a string the converter checks), path, floats (one per channel),
#: choice (among ``choices``), codec (``codecs.parse_codec`` text), names_file (a text file of class
#: names, one a line, which the front end reads)
KINDS = ("flag", "switch", "int", "float", "text", "path", "floats", "choice", "codec", "names_file")


@dataclass(frozen=True)
class Option:
    """One option of ``ladd convert``, declared once and listed by each converter that reads it.

    ``common``: a field of :class:`ConvertOptions` (read by ``finish``); else a key of
    ``ConvertOptions.format_options`` (read by the converter's own reader)."""

    name: str
    kind: str
    help: str
    default: Any = None
    choices: tuple[str, ...] = ()
    common: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise TypeError(f"option {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")

    @property
    def flag(self) -> str:
        """The command-line flag: ``--force`` for ``overwrite``, else ``--`` + the name with dashes."""
        return option_flag(self.name)

    @property
    def negative_flag(self) -> str | None:
        """``--no-<name>`` of a switch (``--no-zca``), else None."""
        return "--no-" + self.name.replace("_", "-") if self.kind == "switch" else None

    def check(self, value) -> None:
        """Refuse a format option's value of the wrong type (one line naming the flag)."""
        if value is None:
            return
        if self.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(f"{self.flag} takes an integer, got {value!r}")
        if self.kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(f"{self.flag} takes a number, got {value!r}")
        if self.kind == "text" and not isinstance(value, str):
            raise InputError(f"{self.flag} takes text, got {value!r}")
        if self.kind == "choice" and value not in self.choices:
            raise InputError(f"{self.flag} takes one of {', '.join(self.choices)}, got {value!r}")


# -- the options finish() reads: fields of ConvertOptions -----------------------------------------------
CODEC = Option("codec", "codec", "Only npz carries dense labels; default: the codec the npz records (ladd export "
               "writes it), else float32. (--k and --topk-values are deprecated.)")
MEAN = Option("mean", "floats", "Per-channel mean, e.g. 0.485,0.456,0.406.")
STD = Option("std", "floats", "Per-channel std, e.g. 0.229,0.224,0.225.")
NUM_CLASSES = Option("num_classes", "int", "")
DATASET = Option("dataset", "choice", "Preset: classes, names and the normalisation the method used.",
                 choices=tuple(preset_names()))
KEEP_FLOAT = Option("keep_float", "flag", "Store float images losslessly (float32, with their space).", False)
ZCA = Option("zca", "switch", "The images are (not) ZCA-whitened; default: what the input says (a name with a zca "
             "token, an export's metadata.json); a mere sign without either flag is refused.")
ZCA_STATS = Option("zca_stats", "path", ".npz with mean + inverse, or train_images (0..1) to refit the ZCA (eps 0.1).")
CLASS_NAMES = Option("class_names", "names_file", "Text file, one class name per line.")
OVERWRITE = Option("overwrite", "flag", "Replace OUTPUT if it exists.", False)

#: read by every converter (they all go through ``rawset.finish``)
COMMON = (MEAN, STD, NUM_CLASSES, DATASET, CLASS_NAMES, OVERWRITE)
#: read by converters whose input may hold float images
FLOAT_IMAGES = (KEEP_FLOAT, ZCA, ZCA_STATS)
#: the common options in the order of ``ladd convert --help``
COMMON_ORDER = (CODEC, MEAN, STD, NUM_CLASSES, DATASET, KEEP_FLOAT, ZCA, ZCA_STATS, CLASS_NAMES)


@dataclass
class ConvertOptions:
    """Options of a conversion: the fields ``finish`` reads for every format, and the chosen
    format's own options by name (``format_options``: ``iteration``, ``experiment``, ``space``,
    ``layout``; a key present is an option given). Each converter declares which it reads."""

    codec: str | None = None           # dense labels (npz only): text for parse_codec, e.g. topk:k=50,values=float16;
    #                                    None: the codec the npz records (ladd_metadata), else float32
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    num_classes: int | None = None
    class_names: Sequence[str] | None = None
    overwrite: bool = False
    dataset: str | None = None         # preset: cifar10, cifar100, tinyimagenet, imagenet, imagenette, ...
    keep_float: bool = False           # store float images losslessly instead of uint8
    zca: bool | None = None            # True: the images are ZCA-whitened (--zca); False: they are not
    #                                    (--no-zca); None: the input decides (rawset._zca_space)
    zca_stats: str | None = None       # .npz with mean + inverse, or train_images to refit (eps 0.1)
    format_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "ConvertOptions":
        """Options from ``{option name: value}`` of the options given (common names become fields,
        the others ``format_options``); an unknown name is refused."""
        common = {f.name for f in fields(cls)} - {"format_options"}
        unknown = sorted(name for name in values if name not in common and name not in _OPTIONS)
        if unknown:
            raise InputError(f"unknown convert option(s) {', '.join(unknown)}")
        return cls(**{k: v for k, v in values.items() if k in common},
                   format_options={k: v for k, v in values.items() if k not in common})

    def get(self, name: str):
        """A format option's value: as given, else its declared default."""
        if name in self.format_options:
            return self.format_options[name]
        return _OPTIONS[name].default

    def given(self) -> set[str]:
        """The names of the options given: fields away from their defaults, and every format option."""
        defaults = ConvertOptions()
        return ({f.name for f in fields(self) if f.name != "format_options"
                 and getattr(self, f.name) != getattr(defaults, f.name)} | set(self.format_options))


@dataclass
class ConversionResult:
    """What a conversion did: the file, the images written, the notes for the user, which converter
    read SOURCE and why (``reason``: auto's evidence; None when the format was named), and the
    provenance report written to the file."""

    output: Path
    num_images: int
    notes: list[str] = field(default_factory=list)
    converter: str = ""
    reason: str | None = None
    report: dict = field(default_factory=dict)


class Converter:
    """One input format. Subclasses set the class attributes and implement ``convert``."""

    name: str = ""
    summary: str = ""                  # one line, listed by ``ladd convert --help``
    looks_for: str = ""                # what sniff recognises, in a few words
    options: tuple[Option, ...] = COMMON   # the options this converter reads

    @property
    def option_names(self) -> frozenset[str]:
        return frozenset(option.name for option in self.options)

    def sniff(self, path: Path) -> str | None:
        """A reason when ``path`` looks like this converter's input, else None. Never raises."""
        return None

    def choose(self, source: Path) -> tuple["Converter", str | None]:
        """The converter that reads ``source`` and why (None: named, not chosen); ``auto`` overrides."""
        return self, None

    def normalization(self, preset: Preset) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The (mean, std) this method normalised images of ``preset`` with: the dataset's own, unless
        the method's code base used others (GLaD, RDED override this)."""
        return preset.mean, preset.std

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        raise NotImplementedError

    def flags(self) -> str:
        """The options it reads, as command-line flags (``--force`` is everyone's, left out)."""
        return ", ".join(option_flag(name) for name in sorted(self.option_names - {"overwrite"}))


_REGISTRY: dict[str, Converter] = {}
#: every option some converter reads, by name: one declaration each
_OPTIONS: dict[str, Option] = {option.name: option for option in COMMON_ORDER + (OVERWRITE,)}


def register(cls: type[Converter]) -> type[Converter]:
    """Class decorator: make a converter available by its ``name``; its options join the registry
    (an option name declared twice, differently, is refused)."""
    converter = cls()
    fields_ = {f.name for f in fields(ConvertOptions)} - {"format_options"}
    wrong = [o.name for o in converter.options if not isinstance(o, Option) or o.common != (o.name in fields_)
             or _OPTIONS.get(o.name, o) != o]
    if not cls.name or not cls.summary or wrong:
        raise TypeError(f"converter {cls.__name__} needs a name and a summary, and Options declared once (common "
                        f"ones among the ConvertOptions fields; wrong: {sorted(map(str, wrong))})")
    for option in converter.options:
        _OPTIONS[option.name] = option
    _REGISTRY[cls.name] = converter
    return cls


def option_flag(name: str) -> str:
    """The command-line flag of an option."""
    return "--force" if name == "overwrite" else "--" + name.replace("_", "-")


def all_options() -> list[Option]:
    """Every option some converter reads, each once: the common ones in ``--help`` order, then the
    formats' own by name, ``overwrite`` (``--force``) last."""
    own = sorted((o for o in _OPTIONS.values() if not o.common), key=lambda o: o.name)
    return list(COMMON_ORDER) + own + [OVERWRITE]


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


def method_normalization(preset: Preset, method: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) ``method`` normalised images of ``preset`` with: its converter's
    :meth:`Converter.normalization` hook, the preset's own numbers for a method no converter is
    named after."""
    converter = _REGISTRY.get(method or "")
    return converter.normalization(preset) if converter is not None else (preset.mean, preset.std)


class UnreadOptions(InputError):
    """Options given that the chosen converter does not read (raised before anything is read).

    ``flags``: the flags, sorted; ``converter``: its name; ``reason``: auto's reason for choosing
    it (None when named); ``reads``: the flags it does read."""

    def __init__(self, converter: Converter, names: list[str], reason: str | None = None):
        self.flags = [option_flag(name) for name in names]
        self.converter, self.reason, self.reads = converter.name, reason, converter.flags()
        why = f" (auto: detected {converter.name} ({reason}))" if reason else ""
        super().__init__(f"{', '.join(self.flags)}: not read by format {converter.name}{why}; "
                         f"{converter.name} reads {self.reads}")


def unread_options(converter: Converter, given: set[str]) -> list[str]:
    """The option names in ``given`` that ``converter`` does not read, sorted."""
    return sorted(set(given) - converter.option_names)


def check_options(converter: Converter, options: ConvertOptions, reason: str | None = None) -> None:
    """Refuse options given (:meth:`ConvertOptions.given`) that ``converter`` does not read
    (:class:`UnreadOptions`), format options no converter declares, and format option values of the
    wrong type."""
    unknown = sorted(k for k in options.format_options if k not in _OPTIONS or _OPTIONS[k].common)
    if unknown:
        raise InputError(f"unknown format option(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(o.name for o in _OPTIONS.values() if not o.common))}")
    stray = unread_options(converter, options.given())
    if stray:
        raise UnreadOptions(converter, stray, reason)
    for name, value in options.format_options.items():
        _OPTIONS[name].check(value)


def convert(fmt: str, source: str | os.PathLike, output: str | os.PathLike,
            options: ConvertOptions | None = None, progress=None) -> ConversionResult:
    """Convert ``source`` in format ``fmt`` (``auto``: the format its layout shows) to a D_LA file at
    ``output``; ``progress(images written, images)`` after each batch the writer takes. The result
    names the converter that read ``source`` and, for ``auto``, why it was chosen (also the first
    note). Options it does not read are refused first (:class:`UnreadOptions`)."""
    from ..errors import LaddError
    from .writing import WRITE_PROGRESS

    source, output = Path(source), Path(output)
    options = options or ConvertOptions()
    chosen, reason = get_converter(fmt).choose(source)
    check_options(chosen, options, reason)
    token = WRITE_PROGRESS.set(progress if progress is not None else WRITE_PROGRESS.get())
    try:
        result = chosen.convert(source, output, options)
    except LaddError as exc:
        if reason is None:
            raise
        raise type(exc)(f"{exc.message} [auto: detected {chosen.name} ({reason})]", exc.path, exc.where) from None
    finally:
        WRITE_PROGRESS.reset(token)
    result.converter, result.reason = chosen.name, reason
    if reason is not None:
        result.notes.insert(0, f"auto: detected {chosen.name} ({reason})")
    return result


# Registration side effect: every module of this package is imported, so a new converter is one
# new file (helper modules without a converter register nothing). auto.py reads the registry when
# it runs, not when it is imported.
import importlib as _importlib  # noqa: E402
import pkgutil as _pkgutil  # noqa: E402

for _module in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    _importlib.import_module(f"{__name__}.{_module}")
