"""A settings dataclass as command-line options: the one way :mod:`.augment_config` and
:mod:`.relabel_config` turn their fields into flags.

Each field is declared with :func:`option_field` (its default, flags, help, choices, metavar in the
field's metadata); :func:`config_options` lists the fields as :class:`ConfigOption` rows, from which
the click commands (``cli/common.py``) and the torchrun entry points (:func:`add_argparse_options`)
build their options. torch-free, so ``ladd --help`` stays torch-free.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any


def option_field(default, *flags: str, help: str, choices: tuple[str, ...] | None = None,
                 metavar: str | None = None):
    """A settings field with its command-line flags and help (the field's metadata)."""
    return field(default=default, metadata={"flags": flags, "help": help, "choices": choices, "metavar": metavar})


@dataclass(frozen=True)
class ConfigOption:
    """One settings field as a command-line option."""

    name: str                          #: the field (and the option's destination name)
    flags: tuple[str, ...]             #: e.g. ("-r", "--ratio"); ("--force",) for ``overwrite``
    type: type                         #: int, float or str; bool: an on/off flag (default False)
    nargs: int                         #: 1, or the length of a tuple field
    default: Any                       #: the field's default
    help: str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    @property
    def is_flag(self) -> bool:
        return self.type is bool


def plain_type(annotation) -> tuple[type, int]:
    """``(type, nargs)`` of a field's annotation: ``int | None`` -> (int, 1), ``tuple[float, float]`` -> (float, 2)."""
    inner = annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(inner) is tuple:
        items = typing.get_args(inner)
        return items[0], len(items)
    return inner, 1


def config_options(config_class: type) -> tuple[ConfigOption, ...]:
    """Every field of the dataclass ``config_class`` (declared with :func:`option_field`) as an
    option, in field order."""
    hints = typing.get_type_hints(config_class)
    out = []
    for f in fields(config_class):
        kind, nargs = plain_type(hints[f.name])
        out.append(ConfigOption(f.name, f.metadata["flags"], kind, nargs, f.default, f.metadata["help"],
                                f.metadata["choices"], f.metadata["metavar"]))
    return tuple(out)


def add_argparse_options(parser: argparse.ArgumentParser, options: tuple[ConfigOption, ...]) -> None:
    """Add ``options`` to an argparse ``parser`` (destinations: the field names, so
    ``Config.from_values(vars(parser.parse_args()))`` is the config)."""
    for option in options:
        if option.is_flag:
            parser.add_argument(*option.flags, dest=option.name, action="store_true", help=option.help)
            continue
        metavar = option.metavar
        if metavar is not None and option.nargs > 1 and len(metavar.split()) == option.nargs:
            metavar = tuple(metavar.split())           # "MIN MAX": one name per value
        parser.add_argument(*option.flags, dest=option.name, type=option.type, default=option.default,
                            nargs=None if option.nargs == 1 else option.nargs, choices=option.choices,
                            metavar=metavar, help=option.help)
