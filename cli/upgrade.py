"""``ladd upgrade``: rewrite a valid format-1.0 or 1.1 file as the current version (spec FORMAT_VERSION)."""

from __future__ import annotations

from pathlib import Path

import click

from ladd_format.atomic import check_destination
from ladd_format.spec import FORMAT_VERSION

from .common import fail_cleanly


@click.command(name="upgrade")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help=f"The {FORMAT_VERSION} file to write.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@fail_cleanly
def command(src: Path, output: Path, force: bool) -> None:
    """Rewrite a valid format-1.0 or 1.1 file SRC as the current version (contents unchanged, no stream
    added; a new root digest, and a 1.0 file gains the row digests). A current file is refused."""
    from ladd_format.upgrade import upgrade

    check_destination(output, force)                  # before SRC is verified whole
    upgrade(src, output, overwrite=force)
    click.echo(f"wrote {output} (format {FORMAT_VERSION})")
