"""``ladd size``: the compressed size of a file's arrays and the dense-label overhead (spec section 7)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ladd_format.size import METHODS, measure_file

from . import common
from .common import fail_cleanly


@click.command(name="size")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(METHODS), default="zip", show_default=True,
              help="zip: the paper's measure (deflate, Python's zipfile); zstd: one frame per array.")
@click.option("--level", type=int, default=None, help="zstd level (default 3).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@fail_cleanly
def command(file: Path, method: str, level: int | None, as_json: bool) -> None:
    """Compressed size of FILE's arrays and the dense-label overhead (spec section 7)."""
    with common.progress("size", "MB read") as bar:
        report = measure_file(file, method=method, level=level, progress=bar.set)
    if as_json:
        click.echo(json.dumps({"file": str(file), **report.as_dict()}, indent=2))
        return
    how = "zip (deflate level 6, Python zipfile)" if method == "zip" else f"zstd level {report.level}"
    click.echo(f"{file}: {report.num_images} images, {report.num_classes} classes, IPC {report.ipc:g}; {how}")
    rows = [
        ("base D (images + labels)", report.base_bytes, ""),
        ("D_LA (base + dense labels)", report.dla_bytes, ""),
        ("dense labels", report.dense_bytes, f"overhead {report.overhead_pct:+.2f}%"),
        ("one more image per class", round(report.ipc_plus_one_bytes), f"IPC+1 {report.ipc_plus_one_pct:+.2f}%"),
    ]
    if report.soft_labels_bytes is not None:
        rows.append(("global soft labels (apart)", report.soft_labels_bytes, ""))
    for name, value, note in rows:
        click.echo(f"  {name:<28} {value:>14,} B  {note}")
    if report.raw_dense_bytes == 0:
        click.echo("  (no dense labels: this is a plain distilled set D)")
