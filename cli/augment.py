"""``ladd augment``: label every sub-image of a plain distilled set with a labeler (D -> D_LA).

The options of the pass are :class:`ladd_format.augment_config.AugmentConfig`'s fields (its defaults
and help, the one place); the torchrun entry point builds its own from the same fields."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ladd_format.augment_config import AugmentConfig, augment_options
from ladd_format.extras import require
from ladd_format.spec.limits import MAX_WRITTEN_GRID_N

from .common import (bounded, codec_value, deprecated_codec_flags, fail_cleanly, fold_deprecated_codec_flags, interrupted,
                     notes)

#: the most local processes ``--shards`` starts
MAX_SHARDS = 256


def config_options(fn):
    """:class:`AugmentConfig`'s fields as click options (``--codec`` checked as one value, with the
    hidden deprecated ``--k``/``--topk-values``)."""
    fn = deprecated_codec_flags(fn)
    for option in reversed(augment_options()):
        if option.is_flag:
            fn = click.option(*option.flags, option.name, is_flag=True, help=option.help)(fn)
            continue
        extra = {"callback": codec_value} if option.name == "codec" else {}
        help_text = option.help + (" (--k and --topk-values are deprecated.)" if option.name == "codec" else "")
        fn = click.option(*option.flags, option.name, default=option.default, show_default=option.default is not None,
                          type=click.Choice(option.choices) if option.choices else option.type,
                          metavar=option.metavar, help=help_text, **extra)(fn)
    return fn


@click.command(name="augment")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--labeler", type=click.Path(path_type=Path), required=True, help="Checkpoint (.safetensors).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted pass from its last completed chunk.")
@click.option("--shards", type=int, default=1, show_default=True,
              help="Label in this many local processes (one per GPU with CUDA).")
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
    try:
        with _ImageProgress() as bar:
            if shards > 1:
                from ladd_format.labeler.distributed import augment_sharded
                result = augment_sharded(source, labeler, output, config, shards, resume, progress=bar)
            else:
                result = augment(source, labeler, output, config, resume=resume, progress=bar, notify=_note)
    except AugmentInterrupted as exc:
        interrupted(_kept(exc.kept, ctx))
    click.echo(f"wrote {result.output}")


def _note(line: str) -> None:
    notes([line])


class _ImageProgress:
    """``augment``'s progress in images, made at the first report, which comes after every check
    and gives the images a resumed pass already has."""

    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from ladd_format.progress import Progress
        if self.bar is None:
            self.bar = Progress("augment", total, "images", initial=done, stream=sys.stderr)
        self.bar.set(done)

    def __enter__(self) -> "_ImageProgress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.bar is not None:
            self.bar.close(ok=exc_type is None)


def _kept(state, ctx: click.Context) -> str:
    """What an interrupted pass kept (a ``WorkState``, None: nothing), and the command that resumes."""
    if state is None:
        return "nothing was written"
    of = "" if state.total_chunks is None else f" of {state.total_chunks}"
    images = "" if state.images is None else f" ({state.images} of {state.num_images} images)"
    return (f"kept {state.chunks}{of} labeled chunk(s){images} in {state.work}; "
            f"to label only the rest, run: {_resume_command(ctx)}")


def _resume_command(ctx: click.Context) -> str:
    """The command line of ``ctx`` as given (options at their defaults left out) plus ``--resume``."""
    words = ["ladd", ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            words.append(str(value))
        elif param.name == "resume" or value is None or value == param.default or value is False:
            continue
        elif getattr(param, "is_flag", False):
            words.append(max(param.opts, key=len))
        else:
            words += [max(param.opts, key=len), str(value)]
    words.append("--resume")
    return " ".join(shlex.quote(w) for w in words)
