"""The ``ladd`` command: a thin click layer over :mod:`ladd_format`.

Every command turns a :class:`ladd_format.LaddError` into one line on stderr and exit status 1;
usage errors exit 2 (click's convention).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

import click

from ladd_format import LaddError, __version__, open_dla, verify
from ladd_format.codecs import codec_names
from ladd_format.converters import ConvertOptions, convert, converter_names
from ladd_format.size import METHODS, measure_file
from ladd_format.verify import summary


def fail_cleanly(fn):
    """Turn library errors into ``ladd: error: <one line>`` and exit status 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LaddError as exc:
            click.echo(f"ladd: error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("ladd: interrupted; nothing was written", err=True)
            sys.exit(130)
    return wrapper


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {text!r}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ladd")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
def main(verbose: bool) -> None:
    """ladd: label-augmented distilled datasets (D_LA) — convert, verify, measure, load.

    The container is specified in spec/dla-v1.md.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@fail_cleanly
def info(file: Path, as_json: bool) -> None:
    """Summarise a D_LA file: shapes, classes, normalisation, dense labels, provenance."""
    with open_dla(file) as f:
        data = f.info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    k, h, w = data["image_shape"]
    click.echo(f"{file}  (D_LA format {data['format_version']}, {data['file_bytes']:,} bytes)")
    click.echo(f"  images      {data['num_images']} x {k}x{h}x{w} {data['image_dtype']} ({data['space']})")
    click.echo(f"  classes     {data['num_classes']}   IPC {data['ipc']:g}")
    if data.get("class_names"):
        names = ", ".join(data["class_names"][:10]) + (" ..." if len(data["class_names"]) > 10 else "")
        click.echo(f"  names       {names}")
    for key in ("source_dataset", "distillation"):
        if key in data:
            click.echo(f"  {key:<11} {data[key]}")
    if "mean" in data:
        click.echo(f"  normalise   mean {_fmt(data['mean'])}  std {_fmt(data['std'])}")
    click.echo(f"  soft labels {data['soft_labels'] or 'none'}")
    dense = data["dense"]
    if dense is None:
        click.echo("  dense       none (plain distilled set D)")
    else:
        codec = ", ".join(f"{k}={v}" for k, v in dense["codec"].items())
        click.echo(f"  dense       N={dense['n']} ({dense['n'] ** 2} sub-images), R={dense['ratio']:g}, "
                   f"T={dense['temperature']:g}, codec {codec}")
        top, left, bh, bw = dense["boxes"][0]
        click.echo(f"  boxes       {bh}x{bw} crops, first [{top}, {left}], last {dense['boxes'][-1][:2]}")
        click.echo(f"  labeler     {', '.join(f'{k}={v}' for k, v in dense['labeler'].items())}")
    prov = data["provenance"]
    if prov:
        click.echo(f"  provenance  {prov.get('tool')} via {prov.get('converter')}, {prov.get('created')}, "
                   f"{len(prov.get('inputs') or [])} input file(s)")


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


@main.command(name="verify")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_cmd(file: Path, as_json: bool) -> None:
    """Check FILE against every rule of the spec. Exit 0 and print OK, or exit 1 with one line per
    problem."""
    problems = verify(file)
    if as_json:
        click.echo(json.dumps({"file": str(file), **summary(problems)}, indent=2))
    elif not problems:
        click.echo(f"OK {file}")
    else:
        for problem in problems:
            click.echo(str(problem))
        click.echo(f"FAILED {file}: {len(problems)} problem(s)", err=True)
    sys.exit(0 if not problems else 1)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(METHODS), default="zip", show_default=True,
              help="zip: the paper's measure (deflate, Python's zipfile); zstd: one frame per array.")
@click.option("--level", type=int, default=None, help="zstd level (default 3).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@fail_cleanly
def size(file: Path, method: str, level: int | None, as_json: bool) -> None:
    """Compressed size of FILE's arrays and the dense-label overhead (spec section 7)."""
    report = measure_file(file, method=method, level=level)
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


@main.command(name="convert")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(converter_names()))
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Destination .dla.h5 file.")
@click.option("--codec", type=click.Choice(codec_names()), default="float32", show_default=True,
              help="How dense labels are stored.")
@click.option("--k", type=int, default=10, show_default=True, help="k of the topk codec.")
@click.option("--topk-values", type=click.Choice(["float32", "float16", "uint8"]), default="float16",
              show_default=True, help="Value type of the topk codec.")
@click.option("--space", type=click.Choice(["pixel01", "normalized", "zca"]), default=None,
              help="What float images hold (required for float inputs).")
@click.option("--layout", type=click.Choice(["auto", "nchw", "nhwc"]), default="auto", show_default=True)
@click.option("--mean", default=None, help="Per-channel mean, e.g. 0.485,0.456,0.406.")
@click.option("--std", default=None, help="Per-channel std, e.g. 0.229,0.224,0.225.")
@click.option("--num-classes", type=int, default=None)
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@fail_cleanly
def convert_cmd(fmt, source, output, codec, k, topk_values, space, layout, mean, std, num_classes, force):
    """Convert SOURCE (in FORMAT) into a D_LA file."""
    options = ConvertOptions(codec=codec, k=k, topk_values=topk_values, space=space, layout=layout,
                             mean=_floats(mean), std=_floats(std), num_classes=num_classes, overwrite=force)
    if (options.mean is None) != (options.std is None):
        raise click.UsageError("give --mean and --std together")
    result = convert(fmt, source, output, options)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {result.output} ({result.num_images} images)")


@main.command(name="export")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["folder", "npz"]), default="folder", show_default=True,
              help="folder: ImageFolder PNGs + labels as .npy/JSON; npz: one archive `ladd convert npz` reads.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--subimages", is_flag=True, help="Also materialise the N*N sub-images with their soft labels.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@fail_cleanly
def export_cmd(file: Path, fmt: str, output: Path, subimages: bool, force: bool) -> None:
    """Export FILE for frameworks that cannot run ladd-format."""
    from ladd_format.export import export
    export(file, output, fmt, with_subimages=subimages, overwrite=force)
    click.echo(f"wrote {output}")


@main.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True)
@click.option("--ipc", type=int, default=10, show_default=True, help="Images per class in the demo set.")
@click.option("--seed", type=int, default=0, show_default=True)
@fail_cleanly
def demo(workdir: Path, ipc: int, seed: int) -> None:
    """Run the main job on an embedded default: scikit-learn's digits -> D_LA -> verify -> size."""
    from ladd_format.demo import run_demo
    run_demo(workdir, ipc=ipc, seed=seed, echo=click.echo)


if __name__ == "__main__":
    main()
