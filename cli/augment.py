"""``ladd augment``: label every sub-image of a plain distilled set with a labeler (D -> D_LA).

The options of the pass are :class:`ladd_format.augment_config.AugmentConfig`'s fields (its defaults
and help, the one place); the torchrun entry point builds its own from the same fields.

What both labeling passes (this one and ``ladd relabel``) share is here too: ``--shards``' bound,
the progress bar (:class:`PassProgress`), and the end of an interrupted pass (:func:`run_pass`: what
the work folder kept and the command that resumes)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from ladd_format.augment_config import AugmentConfig, augment_options
from ladd_format.extras import require
from ladd_format.progress import Progress
from ladd_format.spec.limits import MAX_WRITTEN_GRID_N

from .common import (bounded, codec_value, config_click_options, deprecated_codec_flags, fail_cleanly,
                     fold_deprecated_codec_flags, interrupted, note)

#: the most local processes ``--shards`` starts
MAX_SHARDS = 256


def config_options(fn):
    """:class:`AugmentConfig`'s fields as click options (``--codec`` checked as one value, with the
    hidden deprecated ``--k``/``--topk-values``)."""
    return config_click_options(augment_options(), _codec_checked)(deprecated_codec_flags(fn))


def _codec_checked(option) -> dict:
    """``--codec``: checked by its callback, its help naming the deprecated flags."""
    if option.name != "codec":
        return {}
    return {"callback": codec_value, "help": option.help + " (--k and --topk-values are deprecated.)"}


def pass_arguments(model: str, model_help: str, resume_help: str, shards_help: str):
    """A decorator adding what both labeling passes take, in this order: SOURCE, the ``model``
    option (``--labeler``, ``--teacher``: a required path), ``-o``/``--output``, ``--resume``, ``--shards``."""
    def decorate(fn):
        fn = click.option("--shards", type=int, default=1, show_default=True, help=shards_help)(fn)
        fn = click.option("--resume", is_flag=True, help=resume_help)(fn)
        fn = click.option("-o", "--output", type=click.Path(path_type=Path), required=True)(fn)
        fn = click.option(model, type=click.Path(path_type=Path), required=True, help=model_help)(fn)
        return click.argument("source", type=click.Path(path_type=Path))(fn)
    return decorate


@click.command(name="augment")
@pass_arguments("--labeler", "Checkpoint (.safetensors).", "Continue an interrupted pass from its last completed chunk.",
                "Label in this many local processes (one per GPU with CUDA).")
@config_options
@click.pass_context
@fail_cleanly
def command(ctx, source, labeler, output, resume, shards, k, topk_values, **values):
    """Label every sub-image of the distilled set SOURCE with a labeler: D -> D_LA.

    Ctrl-C keeps the chunks already labeled (in the hidden work folder .OUTPUT.work beside OUTPUT);
    the same command with --resume labels only the rest."""
    require("torch", "ladd augment")
    from ladd_format.labeler import AugmentInterrupted, augment
    bounded("-n (grid size N)", values["n"], 1, MAX_WRITTEN_GRID_N)
    bounded("--shards", shards, 1, MAX_SHARDS)
    values["codec"] = fold_deprecated_codec_flags(values["codec"], k, topk_values)
    config = AugmentConfig.from_values(values)

    def run(bar: PassProgress):
        if shards > 1:
            from ladd_format.labeler.distributed import augment_sharded
            return augment_sharded(source, labeler, output, config, shards, resume, progress=bar)
        return augment(source, labeler, output, config, resume=resume, progress=bar, notify=note)

    result = run_pass(ctx, run, PassProgress("augment", "images"), AugmentInterrupted, _kept)
    click.echo(f"wrote {result.output}")


def _kept(state) -> str:
    """What an interrupted pass kept (a ``WorkState``)."""
    of = "" if state.total_chunks is None else f" of {state.total_chunks}"
    images = "" if state.images is None else f" ({state.images} of {state.num_images} images)"
    return f"{state.chunks}{of} labeled chunk(s){images}"


class PassProgress:
    """A labeling pass's progress bar on stderr (``what``, counted in ``unit``), made at the first
    report, which comes after every check and gives what a resumed pass already has."""

    def __init__(self, what: str, unit: str):
        self.what, self.unit = what, unit
        self.bar: Progress | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = Progress(self.what, total, self.unit, initial=done, stream=sys.stderr)
        self.bar.set(done)

    def __enter__(self) -> "PassProgress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.bar is not None:
            self.bar.close(ok=exc_type is None)


def resume_command(ctx: click.Context) -> str:
    """The command line of ``ctx`` as given (options at their defaults left out) plus ``--resume``."""
    words = ["ladd", ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        default = tuple(param.default) if isinstance(param.default, list) else param.default
        if isinstance(param, click.Argument):
            words.append(str(value))
        elif param.name == "resume" or value is None or value == default or value is False:
            continue
        elif getattr(param, "is_flag", False):
            words.append(max(param.opts, key=len))
        else:
            items = value if isinstance(value, (tuple, list)) else (value,)
            words += [max(param.opts, key=len), *map(str, items)]
    words.append("--resume")
    return " ".join(shlex.quote(w) for w in words)


Result = TypeVar("Result")


def run_pass(ctx: click.Context, run: Callable[[PassProgress], Result], bar: PassProgress,
             interruption: type[BaseException], kept: Callable[[Any], str]) -> Result:
    """``run(bar)``, a labeling pass reporting to ``bar``; its ``interruption`` (a Ctrl-C, carrying
    the work folder's state in ``.kept``, None: nothing) ends the command as :func:`interrupted`:
    ``kept <kept(state)> in <work folder>; to label only the rest, run: <the command with --resume>``."""
    try:
        with bar:
            return run(bar)
    except interruption as exc:
        state = exc.kept
        if state is None:
            interrupted("nothing was written")
        interrupted(f"kept {kept(state)} in {state.work}; to label only the rest, run: {resume_command(ctx)}")
