"""``ladd relabel``: generate a relabel stream (spec 4.7) for a distilled set with a teacher.

The options of the pass are :class:`ladd_format.relabel_config.RelabelConfig`'s fields (its defaults
and help, the one place)."""

from __future__ import annotations

import click

from ladd_format.extras import require
from ladd_format.relabel_config import relabel_options

from .augment import MAX_SHARDS, PassProgress, pass_arguments, run_pass
from .common import bounded, config_click_options, fail_cleanly, note

#: :class:`RelabelConfig`'s fields as click options
config_options = config_click_options(relabel_options())


@click.command(name="relabel")
@pass_arguments("--teacher", "The teacher: a `ladd train-labeler` checkpoint, or with --arch a state_dict file.",
                "Continue an interrupted pass from its last finished epoch.",
                "Label in this many local processes (one per GPU with CUDA), each a range of epochs.")
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

    def run(bar: PassProgress):
        if shards > 1:
            return relabel_sharded(source, teacher, output, config, shards, resume, progress=bar, notify=note)
        return relabel(source, teacher, output, config, resume=resume, progress=bar, notify=note)

    result = run_pass(ctx, run, PassProgress("relabel", "records"), RelabelInterrupted, _kept)
    click.echo(f"wrote {result.output}: {result.epochs} epochs, {result.batches} batches, {result.records} records "
               f"in {result.seconds:.1f} s")


def _kept(state) -> str:
    """What an interrupted pass kept (a ``RelabelState``)."""
    of = "" if state.total_epochs is None else f" of {state.total_epochs}"
    return f"{state.epochs}{of} labeled epoch(s)"
