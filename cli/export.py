"""``ladd export``: a D_LA file as an ImageFolder, an npz or DD-Ranking's tensors."""

from __future__ import annotations

from pathlib import Path

import click

from . import common
from .common import fail_cleanly


@click.command(name="export")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["folder", "npz", "ddranking"]), default="folder",
              show_default=True,
              help="folder: ImageFolder PNGs + labels as .npy/JSON; npz: one archive `ladd convert npz` reads "
                   "back to the same file; ddranking: images.pt, labels.pt (+ lr.pt) as DD-Ranking loads them.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--subimages", is_flag=True, help="Also materialise the N*N sub-images with their soft labels.")
@click.option("--drop-stream", is_flag=True,
              help="Export a file with a relabel stream without it (folder and ddranking cannot hold one and "
                   "refuse it otherwise; npz keeps it as stream_* members).")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@fail_cleanly
def command(file: Path, fmt: str, output: Path, subimages: bool, drop_stream: bool, force: bool) -> None:
    """Export FILE for frameworks that cannot run ladd-format."""
    from ladd_format.export import export
    notes: list[str] = []
    with common.progress("export", "rows written") as bar:
        export(file, output, fmt, with_subimages=subimages, overwrite=force, notes=notes, progress=bar.set,
               drop_stream=drop_stream)
    common.notes(notes)
    click.echo(f"wrote {output}")
