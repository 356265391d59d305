"""What every ``ladd`` command shares: the one-line failure, the bounds on sizing options, the codec
and mismatch options, options built from a settings dataclass, progress on stderr and the
package's log.

Every command turns a :class:`ladd_format.LaddError` into one line on stderr and exit status 1;
usage errors exit 2 (click's convention). Any other exception is a bug or an environment failure:
an ``OSError`` with an errno (disk full, permission denied) becomes ``ladd: error: FILE: <reason>``,
anything else ``ladd: error: FILE: internal error (<type>: <first line>); please report it``, both
with exit status 1 and no traceback; ``LADD_DEBUG=1`` in the environment re-raises them instead.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Any, Callable, Iterable, NoReturn

import click

from ladd_format import LaddError
from ladd_format.codecs import codec_help, codec_usage, parse_codec, parse_codec_config
from ladd_format.config_options import ConfigOption
from ladd_format.errors import CodecError
from ladd_format.progress import Progress

#: the arguments that name what a command works on, in the order a failure line names the first
SUBJECT_ARGUMENTS = ("file", "source", "workdir", "output")
#: seconds before convert, verify, size and export show progress (a small set's run prints nothing more)
PROGRESS_DELAY = 2.0


def one_line(text: str, limit: int = 400) -> str:
    """``text`` on one line (line breaks folded into spaces), at most ``limit`` characters."""
    line = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _subject(kwargs: dict) -> str | None:
    for key in SUBJECT_ARGUMENTS:
        if kwargs.get(key) is not None:
            return str(kwargs[key])
    return None


def failure_line(exc: BaseException, subject: str | None) -> str:
    """The one line an unexpected exception becomes (module docstring)."""
    prefix = f"{subject}: " if subject else ""
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        where = exc.filename if exc.filename is not None else subject
        return one_line(f"{where}: {exc.strerror}" if where is not None else exc.strerror)
    first = (str(exc).strip().splitlines() or [""])[0].strip()
    what = type(exc).__name__ + (f": {first}" if first else "")
    return one_line(f"{prefix}internal error ({what[:300]}); please report it")


def bounded(flag: str, value: int | None, low: int, high: int | None = None) -> None:
    """Refuse (one ``ladd: error:`` line, exit 1) an integer option that sizes an allocation or a
    loop outside ``low..high``."""
    if value is not None and (value < low or (high is not None and value > high)):
        span = f"lie in {low}..{high}" if high is not None else f"be >= {low}"
        raise LaddError(f"{flag} must {span}, got {value}")


def interrupted(kept: str) -> NoReturn:
    """End an interrupted command: ``ladd: interrupted; <kept>`` on stderr, exit status 130."""
    click.echo(f"ladd: interrupted; {kept}", err=True)
    sys.exit(130)


def fail_cleanly(fn):
    """Turn every failure into ``ladd: error: <one line>`` and exit status 1 (module docstring)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LaddError as exc:
            click.echo(f"ladd: error: {one_line(str(exc), 2000)}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            interrupted("nothing was written")
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise                                   # usage errors: click prints them (exit 2)
        except BrokenPipeError:                      # `ladd info FILE | head`: the reader left
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - flushing at exit must not fail again
            except OSError:
                pass
            sys.exit(1)
        except Exception as exc:
            if os.environ.get("LADD_DEBUG") == "1":
                raise
            click.echo(f"ladd: error: {failure_line(exc, _subject(kwargs))}", err=True)
            sys.exit(1)
    wrapper.fails_cleanly = True
    return wrapper


def progress(what: str, unit: str) -> Progress:
    """The progress of a command whose total the library gives: on stderr after PROGRESS_DELAY."""
    return Progress(what, None, unit, stream=sys.stderr, delay=PROGRESS_DELAY)


def notes(lines) -> None:
    """Each of the library's notes as ``note: <line>`` on stderr."""
    for line in lines:
        click.echo(f"note: {line}", err=True)


def note(line: str) -> None:
    """One of the library's notes as ``note: <line>`` on stderr."""
    notes([line])


def codec_value(ctx, param, value: str | None) -> str | None:
    """click callback of ``--codec``: the codec text value, checked by ``parse_codec``."""
    if value is None:
        return None
    try:
        parse_codec(value)
    except CodecError as exc:
        raise click.BadParameter(exc.message) from None
    return value


CODEC_HELP = codec_help()


def deprecated_codec_flags(fn):
    """The hidden ``--k`` and ``--topk-values`` of a command with ``--codec`` (fold them with
    :func:`fold_deprecated_codec_flags`)."""
    fn = click.option("--topk-values", type=click.Choice(["float32", "float16", "uint8"]), default=None, hidden=True,
                      help="Deprecated: use --codec NAME:values=V.")(fn)
    return click.option("--k", type=int, default=None, hidden=True, help="Deprecated: use --codec NAME:k=K.")(fn)


def fold_deprecated_codec_flags(codec: str, k: int | None, values: str | None) -> str:
    """Fold the deprecated ``--k``/``--topk-values`` into the ``--codec`` value (one warning line)."""
    if k is None and values is None:
        return codec
    config = parse_codec(codec).config()
    given = parse_codec_config(codec)
    for flag, key, value in (("--k", "k", k), ("--topk-values", "values", values)):
        if value is None:
            continue
        if key not in config:
            raise click.UsageError(f"{flag} applies only to a codec with a {key} parameter, not {config['name']!r}; "
                                   f"use --codec {codec_usage()}")
        if key in given:
            raise click.UsageError(f"{flag} and --codec {codec} both set {key}; give it in --codec only")
        config[key] = value
    try:
        folded = parse_codec(config).text()
    except CodecError as exc:
        raise click.UsageError(exc.message) from None
    click.echo(f"ladd: warning: --k/--topk-values are deprecated; use --codec {folded}", err=True)
    return folded


#: ``--allow-mismatch``, one option for every command that refuses inputs made for other data (README,
#: *Mismatches*): the command then goes on, with a warning on stderr
allow_mismatch_option = click.option(
    "--allow-mismatch", is_flag=True,
    help="Go on, with a warning, where the inputs disagree about the data instead of refusing: a labeler trained on "
         "other classes (augment), a test set of other classes or another dataset (evaluate).")


def config_click_options(options: Iterable[ConfigOption],
                         adjust: Callable[[ConfigOption], dict[str, Any]] | None = None):
    """A decorator adding ``options`` (a settings dataclass's fields,
    :func:`ladd_format.config_options.config_options`) as click options, in their order; ``adjust(option)``
    gives keyword arguments that replace or add to a valued option's (a callback, a longer help)."""
    def decorate(fn):
        for option in reversed(tuple(options)):
            if option.is_flag:
                fn = click.option(*option.flags, option.name, is_flag=True, help=option.help)(fn)
                continue
            kwargs = dict(default=option.default, show_default=option.default is not None,
                          type=click.Choice(option.choices) if option.choices else option.type, nargs=option.nargs,
                          metavar=option.metavar, help=option.help)
            kwargs.update(adjust(option) if adjust is not None else {})
            fn = click.option(*option.flags, option.name, **kwargs)(fn)
        return fn
    return decorate


class StderrLog(logging.Handler):
    """The package's log on stderr, looked up at each line (so a swapped sys.stderr is honoured):
    warnings as ``ladd: warning: ...``, INFO lines (``-v``) as they are."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.levelno >= logging.WARNING:
                text = f"ladd: {record.levelname.lower()}: {text}"
            click.echo(one_line(text, 2000), err=True)
        except Exception:               # noqa: BLE001 - logging must never fail the command
            self.handleError(record)


def set_up_logging(verbose: bool) -> None:
    """The package's log on stderr (:class:`StderrLog`), INFO lines with ``-v``."""
    package = logging.getLogger("ladd_format")
    if not any(isinstance(h, StderrLog) for h in package.handlers):
        package.addHandler(StderrLog())
    package.setLevel(logging.INFO if verbose else logging.WARNING)
