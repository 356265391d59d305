"""``ladd upgrade``: rewrite a valid format-1.0 file as 1.1."""

from __future__ import annotations

from pathlib import Path

import click

from ladd_format.atomic import check_destination

from .common import fail_cleanly


@click.command(name="upgrade")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The 1.1 file to write.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@fail_cleanly
def command(src: Path, output: Path, force: bool) -> None:
    """Rewrite a valid format-1.0 file SRC as 1.1 (adds the root and row digests; contents unchanged)."""
    from ladd_format.upgrade import upgrade

    check_destination(output, force)                  # before SRC is verified whole
    upgrade(src, output, overwrite=force)
    click.echo(f"wrote {output} (format 1.1)")
