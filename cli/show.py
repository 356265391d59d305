"""``ladd show``: draw a D_LA file into a PNG."""

from __future__ import annotations

from pathlib import Path

import click

from . import common
from .common import fail_cleanly


@click.command(name="show")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The PNG picture to write.")
@click.option("--index", "indices", type=int, multiple=True, metavar="I",
              help="An image to show with its N x N sub-images (repeatable, at most 16; default 0).")
@click.option("--per-class", type=int, default=None, metavar="K",
              help="Instead: a grid of the first K images of each class (1..32; default 8 for a plain set D).")
@click.option("--cell", type=int, default=96, show_default=True,
              help="Side in pixels each image and sub-image is drawn at (16..512).")
@click.option("--top", type=int, default=2, show_default=True,
              help="Dense labels captioned under each sub-image (1..5).")
@click.option("--epoch", type=int, default=None, metavar="E",
              help="Instead: the crops of a batch of epoch E of the relabel stream, with their top soft labels.")
@click.option("--batch", type=int, default=None, metavar="B",
              help="With --epoch: the batch, counted inside the epoch (default 0).")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@fail_cleanly
def command(file: Path, output: Path, indices: tuple[int, ...], per_class: int | None, cell: int, top: int,
            epoch: int | None, batch: int | None, force: bool) -> None:
    """Draw FILE into a PNG: images with their sub-images and top dense labels, images per class, or a
    batch of its relabel stream.

    A D_LA with dense labels: each chosen image, its N x N sub-images as the student sees them (spec
    section 5), each captioned with its top dense labels, the hard and soft labels, and a legend. A
    plain distilled set D (or --per-class): one row of images per class. --epoch E [--batch B]: the
    first 64 records of that batch of the relabel stream, each crop rebuilt as spec 5.1 says (box,
    resize, flip, mix) and captioned with its image, hard label and top soft labels (--top of them)."""
    from ladd_format.viz.show import show
    result = show(file, output, indices=indices, per_class=per_class, cell=cell, top=top, overwrite=force,
                  epoch=epoch, batch=batch)
    common.notes(result.notes)
    click.echo(f"wrote {output} ({result.kind}, {result.width}x{result.height} px)")
