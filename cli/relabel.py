"""``ladd relabel``: generate a relabel stream (spec 4.7) for a distilled set with a teacher.

The options of the pass are :class:`ladd_format.relabel_config.RelabelConfig`'s fields (its defaults
and help, the one place)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ladd_format.extras import require
from ladd_format.relabel_config import relabel_options

from .augment import MAX_SHARDS
from .common import bounded, fail_cleanly, interrupted, notes


def config_options(fn):
    """:class:`RelabelConfig`'s fields as click options."""
    for option in reversed(relabel_options()):
        if option.is_flag:
            fn = click.option(*option.flags, option.name, is_flag=True, help=option.help)(fn)
            continue
        fn = click.option(*option.flags, option.name, default=option.default, show_default=option.default is not None,
                          type=click.Choice(option.choices) if option.choices else option.type, nargs=option.nargs,
                          metavar=option.metavar, help=option.help)(fn)
    return fn


@click.command(name="relabel")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--teacher", type=click.Path(path_type=Path), required=True,
              help="The teacher: a `ladd train-labeler` checkpoint, or with --arch a state_dict file.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted pass from its last finished epoch.")
@click.option("--shards", type=int, default=1, show_default=True,
              help="Label in this many local processes (one per GPU with CUDA), each a range of epochs.")
@config_options
@click.pass_context
@fail_cleanly
def command(ctx, source, teacher, output, resume, shards, **values):
    """Generate a relabel stream for the distilled set SOURCE: for every epoch and image, a random crop
    (RandomResizedCrop, flip, CutMix or MixUp inside the batch) and the teacher's soft label of it,
    every draw from a counter-based generator (the same command gives the same file on any machine).
    OUTPUT holds everything SOURCE holds plus the stream.

    Ctrl-C keeps the finished epochs (in the hidden work folder .OUTPUT.work beside OUTPUT); the same
    command with --resume labels only the rest."""
    require("torch", "ladd relabel")
    from ladd_format.labeler.relabel_pass import RelabelConfig, RelabelInterrupted, relabel, relabel_sharded
    bounded("--shards", shards, 1, MAX_SHARDS)
    config = RelabelConfig.from_values(values)
    try:
        with _RecordProgress() as bar:
            if shards > 1:
                result = relabel_sharded(source, teacher, output, config, shards, resume, progress=bar, notify=_note)
            else:
                result = relabel(source, teacher, output, config, resume=resume, progress=bar, notify=_note)
    except RelabelInterrupted as exc:
        interrupted(_kept(exc.kept, ctx))
    click.echo(f"wrote {result.output}: {result.epochs} epochs, {result.batches} batches, {result.records} records "
               f"in {result.seconds:.1f} s")


def _note(line: str) -> None:
    notes([line])


class _RecordProgress:
    """``relabel``'s progress in records, made at the first report (after every check)."""

    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from ladd_format.progress import Progress
        if self.bar is None:
            self.bar = Progress("relabel", total, "records", initial=done, stream=sys.stderr)
        self.bar.set(done)

    def __enter__(self) -> "_RecordProgress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.bar is not None:
            self.bar.close(ok=exc_type is None)


def _kept(state, ctx: click.Context) -> str:
    """What an interrupted pass kept (None: nothing), and the command that resumes."""
    if state is None:
        return "nothing was written"
    of = "" if state.total_epochs is None else f" of {state.total_epochs}"
    return (f"kept {state.epochs}{of} labeled epoch(s) in {state.work}; to label only the rest, run: "
            f"{_resume_command(ctx)}")


def _resume_command(ctx: click.Context) -> str:
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
