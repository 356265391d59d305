"""The ``ladd`` command: a thin click layer over :mod:`ladd_format`, one module per command.

Each command lives in ``ladd_cli.<command>`` (``train-labeler`` in ``train_labeler``) as the click
command ``command``: it parses its options, calls one library function and prints the result. A
command that needs torch imports its library inside the command function, so ``ladd --help`` and
the light commands never load it. What the commands share (the one-line failure, bounds, the codec
option, progress) is :mod:`ladd_cli.common`.
"""

from __future__ import annotations

import click

from ladd_format import __version__

from . import augment, convert, demo, evaluate, export, info, relabel, show, size, train_labeler, upgrade, verify
from .common import set_up_logging

#: the modules of the commands, in the order ``ladd --help`` lists them (click sorts them by name)
COMMAND_MODULES = (augment, convert, demo, evaluate, export, info, relabel, show, size, train_labeler, upgrade, verify)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ladd")
@click.option("-v", "--verbose", is_flag=True,
              help="More detail on stderr: per-epoch loss lines (train-labeler, evaluate, demo) and one line per "
                   "labeled chunk (augment). Progress itself shows without it: a bar in a terminal, a plain line "
                   "every few seconds otherwise (LADD_PROGRESS_INTERVAL seconds, default 5).")
def main(verbose: bool) -> None:
    """ladd: label-augmented distilled datasets (D_LA) — convert, verify, measure, load.

    The container is specified in spec/dla-v1.md.
    """
    set_up_logging(verbose)


for _module in COMMAND_MODULES:
    main.add_command(_module.command)


if __name__ == "__main__":
    main()
