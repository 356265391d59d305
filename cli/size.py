"""``ladd size``: the compressed size of a file's arrays and the dense-label overhead (spec section 7)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ladd_format.size import METHODS, SRE2L_LAYOUT, StreamSize, measure_file

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
    if report.stream is not None:
        _stream_rows(report.stream)


def _stream_rows(st: StreamSize) -> None:
    """The relabel stream's lines: its archive (apart from base and D_LA), bytes per record, its bytes in the
    file, and the estimate of the same batches in SRe2L's layout with the ratio."""
    click.echo(f"  relabel stream: {st.epochs} epoch(s), {st.batches} batch(es), {st.records:,} records "
               "(one record = one image in one epoch), measured apart from base and D_LA")
    rows = [
        ("stream (stream_*.npy)", st.bytes, f"{st.bytes_per_record:,.1f} B per record (image and epoch)"),
        ("stream in this file (HDF5)", st.stored_bytes, "storage of the /stream datasets, digests included"),
        ("same stream, SRe2L layout", st.sre2l_bytes,
         f"estimate; the stream is 1/{st.sre2l_ratio:,.1f} of it" if st.sre2l_ratio else "estimate"),
    ]
    for name, value, note in rows:
        click.echo(f"  {name:<28} {value:>14,} B  {note}")
    click.echo(f"  (SRe2L layout, {st.sre2l_bytes / max(1, st.records):,.1f} B per record: {SRE2L_LAYOUT}; "
               "docs/relabel.md)")
