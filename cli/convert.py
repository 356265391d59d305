"""``ladd convert``: a distillation output in one of the registered formats -> a D_LA file.

The flags are the converters' declared options (:func:`ladd_format.converters.all_options`): a new
option or format needs no edit here. ``convert()`` picks the converter (``auto``: by SOURCE's layout)
and refuses an option it does not read, before reading anything; that refusal is a usage error."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from ladd_format import LaddError
from ladd_format.atomic import check_destination, require_regular_file
from ladd_format.converters import (ConvertOptions, Option, UnreadOptions, all_options, convert, converter_names,
                                    formats_help)

from . import common
from .common import CODEC_HELP, codec_value, deprecated_codec_flags, fail_cleanly, fold_deprecated_codec_flags

#: the largest class-names file --class-names reads
MAX_CLASS_NAMES_BYTES = 64 << 20
#: where a value comes from when the user gave none
UNGIVEN = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None)


def _floats(ctx, param, text: str | None) -> tuple[float, ...] | None:
    """click callback of a per-channel option: ``0.485,0.456,0.406`` -> a tuple of floats."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {text!r}") from None


def read_class_names(path: Path) -> list[str]:
    """The class names of a text file, one a line (blank lines left out)."""
    require_regular_file(path, "class-names file")
    if path.stat().st_size > MAX_CLASS_NAMES_BYTES:
        raise LaddError(f"a class-names file is at most {MAX_CLASS_NAMES_BYTES:,} bytes", path)
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise LaddError(f"cannot read class names: {reason}", path) from None


#: click's arguments for each kind of converter option (``ladd_format.converters.KINDS``)
KIND_ARGS = {
    "flag": {"is_flag": True, "default": False},
    "switch": {"default": None},
    "int": {"type": int},
    "float": {"type": float},
    "text": {},
    "path": {"type": click.Path(path_type=Path)},
    "names_file": {"type": click.Path(path_type=Path)},
    "floats": {"callback": _floats},
    "choice": {},                                     # click.Choice of the option's choices
    "codec": {"callback": codec_value, "metavar": "CODEC"},
}


def click_option(option: Option):
    """The click option of a converter option, by its kind (:data:`KIND_ARGS`)."""
    flags = [f"{option.flag}/{option.negative_flag}" if option.kind == "switch" else option.flag, option.name]
    args = {"default": option.default, **KIND_ARGS[option.kind]}
    if option.kind == "choice":
        args["type"] = click.Choice(option.choices, case_sensitive=False)
    help_text = f"{CODEC_HELP} {option.help}" if option.kind == "codec" else option.help
    return click.option(*flags, help=help_text or None, show_default=option.default not in (None, False), **args)


def converter_options(fn):
    """Every converter's options as click options (in ``all_options()`` order), then the hidden
    deprecated ``--k``/``--topk-values``."""
    fn = deprecated_codec_flags(fn)
    for option in reversed(all_options()):
        fn = click_option(option)(fn)
    return fn


def given_options(ctx: click.Context) -> dict:
    """``{option name: value}`` of the converter options given on the command line, as the library
    takes them (class names read from their file, paths as text)."""
    values = {}
    for option in all_options():
        if ctx.get_parameter_source(option.name) in UNGIVEN:
            continue
        value = ctx.params[option.name]
        if option.kind == "names_file":
            value = read_class_names(value)
        elif option.kind == "path" and value is not None:
            value = str(value)
        values[option.name] = value
    return values


@click.command(name="convert", epilog="\b\nFormats:\n" + formats_help())
@click.argument("fmt", metavar="FORMAT", type=click.Choice(converter_names()))
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Destination .dla.h5 file.")
@converter_options
@click.pass_context
@fail_cleanly
def command(ctx, fmt, source, output, k, topk_values, **_):
    """Convert SOURCE (in FORMAT) into a D_LA file.

    Each format reads only some options (an option it does not read is refused); auto picks the
    format from SOURCE's layout and says which.
    """
    params = ctx.params
    if params["zca"] is False and params["zca_stats"] is not None:
        raise click.UsageError("--no-zca and --zca-stats contradict each other (--zca-stats inverts ZCA whitening)")
    if (params["mean"] is None) != (params["std"] is None):
        raise click.UsageError("give --mean and --std together")
    values = given_options(ctx)
    if k is not None or topk_values is not None:
        values["codec"] = fold_deprecated_codec_flags(params["codec"] or "float32", k, topk_values)
    if "zca_stats" in values:
        values["zca"] = True                          # --zca-stats: the images are ZCA-whitened
    options = ConvertOptions.from_values(values)
    check_destination(output, options.overwrite)      # before SOURCE is read
    try:
        with common.progress("convert", "images written") as bar:
            result = convert(fmt, source, output, options, progress=bar.set)
    except UnreadOptions as exc:
        raise click.UsageError(exc.message) from None
    common.notes(result.notes)
    click.echo(f"wrote {result.output} ({result.num_images} images)")
