"""The ``ladd`` command: a thin click layer over :mod:`ladd_format`.

Every command turns a :class:`ladd_format.LaddError` into one line on stderr and exit status 1;
usage errors exit 2 (click's convention). Any other exception is a bug or an environment failure:
an ``OSError`` with an errno (disk full, permission denied) becomes ``ladd: error: FILE: <reason>``,
anything else ``ladd: error: FILE: internal error (<type>: <first line>); please report it``, both
with exit status 1 and no traceback; ``LADD_DEBUG=1`` in the environment re-raises them instead.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path

import click

from ladd_format import LaddError, __version__, open_dla, verify
from ladd_format.atomic import check_destination, require_regular_file
from ladd_format.codecs import codec_usage, parse_codec, parse_codec_config
from ladd_format.converters import (
    ConvertOptions,
    convert,
    converter_names,
    formats_help,
    get_converter,
)
from ladd_format.errors import CodecError
from ladd_format.geometry import MAX_GRID_N, MAX_WRITTEN_GRID_N
from ladd_format.presets import preset_names
from ladd_format.progress import Progress
from ladd_format.size import METHODS, measure_file, scan_values
from ladd_format.verify import summary

#: the arguments that name what a command works on, in the order a failure line names the first
SUBJECT_ARGUMENTS = ("file", "source", "workdir", "output")
#: the largest image side a command resizes to, and the largest width of an architecture it builds
MAX_IMAGE_SIDE = 4096
MAX_WIDTH = 4096
MAX_SHARDS = 256
#: seconds before convert, size and export show progress (a small set's run prints nothing more)
PROGRESS_DELAY = 2.0
MAX_CLASS_NAMES_BYTES = 64 << 20


def one_line(text: str, limit: int = 400) -> str:
    """``text`` on one line (line breaks folded into spaces), at most ``limit`` characters."""
    line = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _subject(kwargs: dict) -> str | None:
    for key in SUBJECT_ARGUMENTS:
        if kwargs.get(key) is not None:
            return str(kwargs[key])
    return None


def failure_line(exc: BaseException, subject: str | None) -> str:
    """The one line an unexpected exception becomes (module docstring)."""
    prefix = f"{subject}: " if subject else ""
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        where = exc.filename if exc.filename is not None else subject
        return one_line(f"{where}: {exc.strerror}" if where is not None else exc.strerror)
    first = (str(exc).strip().splitlines() or [""])[0].strip()
    what = type(exc).__name__ + (f": {first}" if first else "")
    return one_line(f"{prefix}internal error ({what[:300]}); please report it")


def bounded(flag: str, value: int | None, low: int, high: int | None = None) -> None:
    """Refuse (one ``ladd: error:`` line, exit 1) an integer option that sizes an allocation or a
    loop outside ``low..high``."""
    if value is not None and (value < low or (high is not None and value > high)):
        span = f"lie in {low}..{high}" if high is not None else f"be >= {low}"
        raise LaddError(f"{flag} must {span}, got {value}")


def fail_cleanly(fn):
    """Turn every failure into ``ladd: error: <one line>`` and exit status 1 (module docstring)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LaddError as exc:
            click.echo(f"ladd: error: {one_line(str(exc), 2000)}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("ladd: interrupted; nothing was written", err=True)
            sys.exit(130)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise                                   # usage errors: click prints them (exit 2)
        except BrokenPipeError:                      # `ladd info FILE | head`: the reader left
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - flushing at exit must not fail again
            except OSError:
                pass
            sys.exit(1)
        except Exception as exc:
            if os.environ.get("LADD_DEBUG") == "1":
                raise
            click.echo(f"ladd: error: {failure_line(exc, _subject(kwargs))}", err=True)
            sys.exit(1)
    wrapper.fails_cleanly = True
    return wrapper


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {text!r}") from None


def _codec_value(ctx, param, value: str | None) -> str | None:
    """click callback of ``--codec``: the codec text value, checked by ``parse_codec``."""
    if value is None:
        return None
    try:
        parse_codec(value)
    except CodecError as exc:
        raise click.BadParameter(exc.message) from None
    return value


CODEC_HELP = (f"Dense-label codec, one value: {codec_usage()} (or the JSON of its configuration); "
              "parameters left out take their defaults.")


#: ``--allow-mismatch``, one option for every command that refuses inputs made for other data (README,
#: *Mismatches*): the command then goes on, with a warning on stderr
allow_mismatch_option = click.option(
    "--allow-mismatch", is_flag=True,
    help="Go on, with a warning, where the inputs disagree about the data instead of refusing: a labeler trained on "
         "other classes (augment), a test set of other classes or another dataset (evaluate).")


def _fold_deprecated_codec_flags(codec: str, k: int | None, values: str | None) -> str:
    """Fold the deprecated ``--k``/``--topk-values`` into the ``--codec`` value (one warning line)."""
    if k is None and values is None:
        return codec
    config = parse_codec(codec).config()
    given = parse_codec_config(codec)
    for flag, key, value in (("--k", "k", k), ("--topk-values", "values", values)):
        if value is None:
            continue
        if key not in config:
            raise click.UsageError(f"{flag} applies only to a codec with a {key} parameter, not {config['name']!r}; "
                                   f"use --codec {codec_usage()}")
        if key in given:
            raise click.UsageError(f"{flag} and --codec {codec} both set {key}; give it in --codec only")
        config[key] = value
    try:
        folded = parse_codec(config).text()
    except CodecError as exc:
        raise click.UsageError(exc.message) from None
    click.echo(f"ladd: warning: --k/--topk-values are deprecated; use --codec {folded}", err=True)
    return folded


class _StderrLog(logging.Handler):
    """The package's log on stderr, looked up at each line (so a swapped sys.stderr is honoured):
    warnings as ``ladd: warning: ...``, INFO lines (``-v``) as they are."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.levelno >= logging.WARNING:
                text = f"ladd: {record.levelname.lower()}: {text}"
            click.echo(one_line(text, 2000), err=True)
        except Exception:               # noqa: BLE001 - logging must never fail the command
            self.handleError(record)


def _set_up_logging(verbose: bool) -> None:
    package = logging.getLogger("ladd_format")
    if not any(isinstance(h, _StderrLog) for h in package.handlers):
        package.addHandler(_StderrLog())
    package.setLevel(logging.INFO if verbose else logging.WARNING)


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
    _set_up_logging(verbose)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@fail_cleanly
def info(file: Path, as_json: bool) -> None:
    """Summarise a D_LA file: shapes, classes, normalisation, dense labels, provenance."""
    with open_dla(require_regular_file(file)) as f:
        data = f.info()
        scan_values(f)            # labels and dense labels through the reader's checks (not the images)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    # the reader checks what it returns only as far as every use needs: print defensively
    k, h, w = data["image_shape"]
    click.echo(str(file))
    _row("format", f"D_LA {data['format_version']}")
    _row("file size", _bytes(data["file_bytes"]))
    _row("images", f"{data['num_images']} x {k}x{h}x{w} {data['image_dtype']} ({data['space']})")
    _row("classes", f"{data['num_classes']}, IPC {_num(data.get('ipc'), '.4g')}")
    names = data.get("class_names")
    if names:
        names = [str(v) for v in (names if isinstance(names, (list, tuple)) else [names])]
        more = f", ... ({len(names)} in all)" if len(names) > 10 else ""
        _row("names", ", ".join(names[:10]) + more)
    for key, label in (("source_dataset", "source"), ("distillation", "distilled"), ("learned_lr", "learned lr")):
        if key in data:
            _row(label, _value(data[key]))
    if "mean" in data:
        _row("normalise", f"mean {_fmt(data['mean'])}, std {_fmt(data['std'])}")
    _row("soft labels", data["soft_labels"] or "none")
    dense = data["dense"]
    if dense is None:
        _row("dense", "none (plain distilled set D)")
    else:
        codec = parse_codec(dense["codec"]).text()
        _row("dense", f"N={dense['n']} ({dense['n'] ** 2} sub-images), R={_num(dense['ratio'])}, "
                      f"T={_num(dense['temperature'])}, codec {codec}")
        boxes = dense["boxes"]
        if (isinstance(boxes, list) and boxes and all(isinstance(b, list) and len(b) == 4 for b in boxes)):
            top, left, bh, bw = boxes[0]
            _row("boxes", f"{bh}x{bw} crops, first [{top}, {left}], last {boxes[-1][:2]}")
        else:
            _row("boxes", f"malformed ({len(boxes) if isinstance(boxes, list) else 0} rows of 4 "
                          "expected N*N): run `ladd verify`")
        labeler = dense["labeler"] if isinstance(dense["labeler"], dict) else {}
        _row("labeler", ", ".join(f"{k}={_value(v)}" for k, v in labeler.items()))
    prov = data["provenance"]
    if isinstance(prov, dict) and prov:
        inputs = prov.get("inputs")
        _row("provenance", f"{prov.get('tool')} via {prov.get('converter')}, {prov.get('created')}, "
                           f"{len(inputs) if isinstance(inputs, list) else 0} input file(s)")
    _row("root digest", data.get("root_sha256") or "none (format 1.0)")
    if data.get("content_sha256"):
        _row("content", f"{data['content_sha256']} (content digest: as the root digest, without /provenance)")


#: width of the key column of `ladd info` (the longest key, "soft labels")
INFO_KEY_WIDTH = 11


def _row(key: str, value: str) -> None:
    """One `ladd info` line: two spaces, the key padded to INFO_KEY_WIDTH, a space, the value."""
    click.echo(f"  {key:<{INFO_KEY_WIDTH}} {value}")


def _num(value, spec: str = "g") -> str:
    """A number formatted with ``spec``, or as it is when it is not one (a malformed attribute)."""
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def _fmt(values) -> str:
    """A vector as ``(a, b, c)``, each number to 4 significant digits (nested lists as they are)."""
    flat = values if isinstance(values, (list, tuple)) else [values]
    return "(" + ", ".join(_num(v, ".4g") if not isinstance(v, (list, tuple)) else str(v) for v in flat) + ")"


def _value(value) -> str:
    """An attribute value for `ladd info`: floats to 4 significant digits, vectors as :func:`_fmt`."""
    if isinstance(value, float):
        return _num(value, ".4g")
    if isinstance(value, (list, tuple)):
        return _fmt(value)
    return str(value)


def _bytes(count) -> str:
    """A size in binary units and exact bytes: ``326.8 KiB (334,612 bytes)``."""
    try:
        count = int(count)
    except (TypeError, ValueError):
        return str(count)
    value, unit = float(count), None
    for name in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            break
        value, unit = value / 1024, name
    return f"{count:,} bytes" if unit is None else f"{value:.1f} {unit} ({count:,} bytes)"


@main.command(name="verify")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@fail_cleanly
def verify_cmd(file: Path, as_json: bool) -> None:
    """Check FILE against every rule of the spec. Exit 0 and print OK, or exit 1 with one line per
    problem, ending with the number and name of the spec rule it breaks (section 8)."""
    with Progress("verify", None, "MB read", stream=sys.stderr, delay=PROGRESS_DELAY) as bar:
        problems = verify(file, progress=bar.set)
    seal = None if problems else seal_of(file)
    if as_json:
        click.echo(json.dumps({"file": str(file), **summary(problems), **(seal or {})}, indent=2))
    elif not problems:
        click.echo(f"OK {file}")
        if seal["root_sha256"]:
            click.echo(f"format {seal['format_version']}, root digest {seal['root_sha256']} (compare it with the "
                       "one the publisher gives)")
        click.echo(f"content digest {seal['content_sha256']} (the same data has the same one, whoever made the "
                   "file and when)")
        if not seal["root_sha256"]:
            click.echo(f"note: format {seal['format_version']} has no root or row digests: damage to an attribute "
                       f"is not detected, and readers do not check items one by one; `ladd upgrade {file} -o NEW` "
                       "writes a 1.1 copy", err=True)
    else:
        for problem in problems:
            click.echo(f"{problem} [rule {problem.rule_label}]")
        click.echo(f"FAILED {file}: {len(problems)} problem(s)", err=True)
    sys.exit(0 if not problems else 1)


def seal_of(file: Path) -> dict:
    """The version, root digest and content digest (spec 2.1) of a file verify accepted."""
    with open_dla(file) as f:
        return {"format_version": f"{f.version[0]}.{f.version[1]}", **f.seal()}


@main.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The 1.1 file to write.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@fail_cleanly
def upgrade(src: Path, output: Path, force: bool) -> None:
    """Rewrite a valid format-1.0 file SRC as 1.1 (adds the root and row digests; contents unchanged)."""
    from ladd_format.upgrade import upgrade as upgrade_file

    check_destination(output, force)                  # before SRC is verified whole
    upgrade_file(src, output, overwrite=force)
    click.echo(f"wrote {output} (format 1.1)")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(METHODS), default="zip", show_default=True,
              help="zip: the paper's measure (deflate, Python's zipfile); zstd: one frame per array.")
@click.option("--level", type=int, default=None, help="zstd level (default 3).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@fail_cleanly
def size(file: Path, method: str, level: int | None, as_json: bool) -> None:
    """Compressed size of FILE's arrays and the dense-label overhead (spec section 7)."""
    with Progress("size", None, "MB read", stream=sys.stderr, delay=PROGRESS_DELAY) as bar:
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


@main.command(name="convert", epilog="\b\nFormats:\n" + formats_help())
@click.argument("fmt", metavar="FORMAT", type=click.Choice(converter_names()))
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Destination .dla.h5 file.")
@click.option("--codec", default=None, callback=_codec_value, metavar="CODEC",
              help=CODEC_HELP + " Only npz carries dense labels; default: the codec the npz records "
                   "(ladd export writes it), else float32. (--k and --topk-values are deprecated.)")
@click.option("--k", type=int, default=None, hidden=True, help="Deprecated: use --codec NAME:k=K.")
@click.option("--topk-values", type=click.Choice(["float32", "float16", "uint8"]), default=None, hidden=True,
              help="Deprecated: use --codec NAME:values=V.")
@click.option("--space", type=click.Choice(["pixel01", "normalized", "zca"]), default=None,
              help="What float images hold (npz; required for float inputs).")
@click.option("--layout", type=click.Choice(["auto", "nchw", "nhwc"]), default="auto", show_default=True,
              help="Axis order of the npz images.")
@click.option("--mean", default=None, help="Per-channel mean, e.g. 0.485,0.456,0.406.")
@click.option("--std", default=None, help="Per-channel std, e.g. 0.229,0.224,0.225.")
@click.option("--num-classes", type=int, default=None)
@click.option("--dataset", type=click.Choice(preset_names(), case_sensitive=False), default=None,
              help="Preset: classes, names and the normalisation the method used.")
@click.option("--keep-float", is_flag=True, help="Store float images losslessly (float32, with their space).")
@click.option("--zca/--no-zca", default=None,
              help="The images are (not) ZCA-whitened; default: what the input says (a name with a zca token, "
                   "an export's metadata.json); a mere sign without either flag is refused.")
@click.option("--zca-stats", type=click.Path(path_type=Path), default=None,
              help=".npz with mean + inverse, or train_images (0..1) to refit the ZCA (eps 0.1).")
@click.option("--class-names", "class_names_file", type=click.Path(path_type=Path), default=None,
              help="Text file, one class name per line.")
@click.option("--iteration", type=int, default=None, help="Run folders: images_<N>.pt instead of images_best.pt.")
@click.option("--experiment", type=int, default=None,
              help="dc: experiment N (data[N] of a res_*.pt, or DD-Ranking images_..._<N>.pt); default: data[0], "
                   "or the _best tensors.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.pass_context
@fail_cleanly
def convert_cmd(ctx, fmt, source, output, codec, k, topk_values, space, layout, mean, std, num_classes, dataset,
                keep_float, zca, zca_stats, class_names_file, iteration, experiment, force):
    """Convert SOURCE (in FORMAT) into a D_LA file.

    Each format reads only some options (an option it does not read is refused); auto picks the
    format from SOURCE's layout and says which.
    """
    from click.core import ParameterSource

    from ladd_format.converters.auto import detect

    # the options given on the command line, as ConvertOptions fields
    field = {"class_names_file": "class_names", "force": "overwrite", "k": "codec", "topk_values": "codec"}
    given = {}
    for param in ctx.command.params:
        if isinstance(param, click.Option) and param.name != "output" and ctx.get_parameter_source(param.name) not in (
                ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None):
            negative = param.secondary_opts and ctx.params.get(param.name) is False    # --no-zca
            given[param.name] = param.secondary_opts[0] if negative else max(param.opts, key=len)
    converter, why = get_converter(fmt), ""
    if fmt == "auto" and set(given) - {"force"}:
        detected, reason = detect(source)
        converter, why = get_converter(detected), f" (auto: detected {detected} ({reason}))"
    stray = [flag for name, flag in given.items() if field.get(name, name) not in converter.options]
    if stray:
        raise click.UsageError(f"{', '.join(stray)}: not read by format {converter.name}{why}; "
                               f"{converter.name} reads {converter.flags()}")
    if zca is False and zca_stats is not None:
        raise click.UsageError("--no-zca and --zca-stats contradict each other (--zca-stats inverts ZCA whitening)")
    if k is not None or topk_values is not None:
        codec = _fold_deprecated_codec_flags(codec or "float32", k, topk_values)
    class_names = None
    if class_names_file is not None:
        require_regular_file(class_names_file, "class-names file")
        if class_names_file.stat().st_size > MAX_CLASS_NAMES_BYTES:
            raise LaddError(f"a class-names file is at most {MAX_CLASS_NAMES_BYTES:,} bytes", class_names_file)
        try:
            class_names = [line.strip() for line in class_names_file.read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise LaddError(f"cannot read class names: {reason}", class_names_file) from None
    options = ConvertOptions(codec=codec, space=space, layout=layout, mean=_floats(mean), std=_floats(std),
                             num_classes=num_classes, overwrite=force, dataset=dataset, keep_float=keep_float,
                             zca=True if zca_stats is not None else zca,
                             zca_stats=None if zca_stats is None else str(zca_stats), class_names=class_names,
                             iteration=iteration, experiment=experiment)
    if (options.mean is None) != (options.std is None):
        raise click.UsageError("give --mean and --std together")
    check_destination(output, force)                  # before SOURCE is read
    with Progress("convert", None, "images written", stream=sys.stderr, delay=PROGRESS_DELAY) as bar:
        result = convert(fmt, source, output, options, progress=bar.set)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {result.output} ({result.num_images} images)")


@main.command(name="train-labeler")
@click.argument("source")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Folder for the checkpoints.")
@click.option("--arch", default="convnet-d5", show_default=True,
              help="convnet-d3/-d4/-d5 or a torchvision classifier (resnet18, alexnet, vgg11, ...).")
@click.option("--width", type=int, default=None, help="ConvNet width (default 128).")
@click.option("--epochs", type=int, default=50, show_default=True)
@click.option("--save-epochs", default=None,
              help="Epochs to keep a checkpoint of, comma-separated [default: five evenly spaced epochs ending at "
                   "--epochs, ceil(i*EPOCHS/5): 10,20,30,40,50 for 50 epochs, every epoch for 5 or fewer].")
@click.option("--lr", type=float, default=0.01, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--image-size", type=int, default=None,
              help="Resize training images to this side (default: their own size; 32 for digits).")
@click.option("--val-split", type=float, default=0.1, show_default=True,
              help="Share of SOURCE held out to measure each checkpoint (0: no validation set); a warning names "
                   "the classes it misses.")
@click.option("--flip", is_flag=True, help="Random horizontal flips while training.")
@click.option("--min-crop", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Random square crops of MIN_CROP..1 of each side, resized back (1 = off, the default). The "
                   "labeler then sees views like the sub-images, yet on digits its dense labels gave students about 2 "
                   "points worse than whole-image training (benchmarks/RESULTS.md); the demo trains on whole images.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace checkpoints already in OUTPUT.")
@fail_cleanly
def train_labeler_cmd(source, output, arch, width, epochs, save_epochs, lr, batch_size, image_size, val_split,
                      flip, min_crop, device, seed, force):
    """Train a labeler on SOURCE: an ImageFolder directory, an .npz (images, labels), or `digits`
    (scikit-learn's bundled digits, offline)."""
    from ladd_format.labeler import TrainConfig, load_source, train_labeler
    from ladd_format.labeler.train import check_output_folder, resolve_save_epochs
    from ladd_format.progress import Progress
    bounded("--width", width, 1, MAX_WIDTH)
    bounded("--image-size", image_size, 1, MAX_IMAGE_SIDE)
    bounded("--epochs", epochs, 1)
    bounded("--batch-size", batch_size, 1)
    keep = None
    if save_epochs is not None:
        try:
            keep = tuple(int(v) for v in save_epochs.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"expected comma-separated epochs, got {save_epochs!r}",
                                     param_hint="'--save-epochs'") from None
    keep = resolve_save_epochs(keep, epochs)           # before the data is loaded
    if not 0 <= val_split < 1:
        raise LaddError(f"--val-split must lie in [0, 1), got {val_split}")
    check_output_folder(output, force)
    data = load_source(source, image_size)
    config = TrainConfig(arch=arch, arch_kwargs={"width": width} if width else {}, epochs=epochs,
                         save_epochs=keep, lr=lr, batch_size=batch_size, val_split=val_split, flip=flip,
                         min_crop=min_crop, device=device, seed=seed)
    click.echo(f"training {arch} on {data.description}, {data.num_classes} classes; checkpoints at epoch(s) "
               f"{','.join(map(str, keep))}", err=True)
    saved: list[int] = []                              # the epochs whose checkpoint this run saved
    try:
        with Progress("train-labeler", epochs, "epochs", stream=sys.stderr) as bar:
            def on_step(epoch, step, steps):
                if step < steps:                       # the epoch's end is on_epoch's, with its loss
                    bar.set(epoch - 1 + step / steps)

            def on_epoch(epoch, total, metrics):
                saved.extend([epoch] if epoch in keep else [])
                bar.set(epoch, postfix=f"epoch {epoch} loss {metrics['loss']:.3f}, train acc "
                                       f"{metrics['train_accuracy']:.3f}")
            records = train_labeler(data, output, config, overwrite=force, progress=on_epoch,
                                    step_progress=on_step, warn=lambda line: bar.write(f"ladd: warning: {line}"))
    except KeyboardInterrupt:
        kept = (f"kept the checkpoint(s) of epoch(s) {','.join(map(str, saved))} in {output} (no metrics.json: "
                "the run did not finish)" if saved else "nothing was written")
        click.echo(f"ladd: interrupted; {kept}", err=True)
        sys.exit(130)
    for r in records:
        val = ("no validation set" if r["val_accuracy"] is None else
               f"val acc {r['val_accuracy']:.3f}  val entropy {r['val_entropy']:.3f} nats")
        click.echo(f"epoch {r['epoch']:>3}: {r['path']}  train acc {r['train_accuracy']:.3f}  {val}")


@main.command(name="augment")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--labeler", type=click.Path(path_type=Path), required=True, help="Checkpoint (.safetensors).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("-n", type=int, default=5, show_default=True,
              help=f"Grid size N (N*N sub-images), at most {MAX_WRITTEN_GRID_N}: the most this package writes (the "
                   f"(N*N, 4) boxes attribute must fit one compact HDF5 attribute message); readers accept files "
                   f"up to N = {MAX_GRID_N} (spec 2.4).")
@click.option("-r", "--ratio", type=float, default=0.625, show_default=True, help="Sub-image ratio R.")
@click.option("--codec", default="float32", show_default=True, callback=_codec_value, metavar="CODEC",
              help=CODEC_HELP + " (--k and --topk-values are deprecated.)")
@click.option("--k", type=int, default=None, hidden=True, help="Deprecated: use --codec NAME:k=K.")
@click.option("--topk-values", type=click.Choice(["float32", "float16", "uint8"]), default=None, hidden=True,
              help="Deprecated: use --codec NAME:values=V.")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Images per chunk.")
@click.option("--forward-batch", type=int, default=512, show_default=True,
              help="Sub-images per labeler forward (halved by itself on CUDA out-of-memory; on the CPU at most "
                   "32 x 224 x 224 input pixels per forward).")
@click.option("--precision", type=click.Choice(["auto", "bfloat16", "float32"]), default="auto", show_default=True,
              help="Labeler arithmetic: auto = bfloat16 on CUDA, float32 on the CPU; float32 on CUDA turns TF32 off.")
@click.option("--resize", is_flag=True, help="Resize sub-images to the labeler's input size.")
@click.option("--resume", is_flag=True, help="Continue an interrupted pass from its last completed chunk.")
@click.option("--shards", type=int, default=1, show_default=True,
              help="Label in this many local processes (one per GPU with CUDA).")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--zca-stats", type=click.Path(path_type=Path), default=None,
              help="ZCA-whitened SOURCE: the .npz of convert --zca-stats (mean + inverse, or train_images), to "
                   "un-whiten the images for the labeler (the file keeps them whitened).")
@allow_mismatch_option
@fail_cleanly
def augment_cmd(source, labeler, output, n, ratio, codec, k, topk_values, temperature, device, batch_size,
                forward_batch, precision, resize, resume, shards, force, allow_mismatch, zca_stats):
    """Label every sub-image of the distilled set SOURCE with a labeler: D -> D_LA.

    Ctrl-C keeps the chunks already labeled (in the hidden work folder .OUTPUT.work beside OUTPUT);
    the same command with --resume labels only the rest."""
    from ladd_format.labeler import AugmentConfig, augment
    bounded("-n (grid size N)", n, 1, MAX_WRITTEN_GRID_N)
    bounded("--shards", shards, 1, MAX_SHARDS)
    codec = _fold_deprecated_codec_flags(codec, k, topk_values)
    config = AugmentConfig(n=n, ratio=ratio, codec=codec, temperature=temperature, device=device,
                           batch_size=batch_size, forward_batch=forward_batch, precision=precision,
                           resize=resize, overwrite=force, allow_mismatch=allow_mismatch,
                           zca_stats=None if zca_stats is None else str(zca_stats))
    try:
        if shards > 1:
            from ladd_format.labeler.distributed import augment_sharded
            with _ChunkProgress(source, batch_size) as bar:
                augment_sharded(source, labeler, output, config, shards, resume, progress=bar.chunks)
        else:
            with _ChunkProgress(source, batch_size) as bar:
                augment(source, labeler, output, config, resume=resume, progress=bar.chunks,
                        notify=lambda line: click.echo(f"note: {line}", err=True))
    except KeyboardInterrupt:
        click.echo(f"ladd: {_interrupted_augment(source, output, batch_size)}", err=True)
        sys.exit(130)
    click.echo(f"wrote {output}")


class _ChunkProgress:
    """``augment``'s progress in images (the library reports chunks): made at the first report,
    which comes after every check and gives the chunks a resumed pass already has."""

    def __init__(self, source: Path, batch_size: int):
        self.source, self.batch_size, self.bar, self.num_images = source, batch_size, None, 0

    def chunks(self, done: int, total: int) -> None:
        from ladd_format.progress import Progress
        if self.bar is None:
            with open_dla(self.source) as f:
                self.num_images = f.num_images
            self.bar = Progress("augment", self.num_images, "images", initial=self.images(done), stream=sys.stderr)
        self.bar.set(self.images(done))

    def images(self, chunks: int) -> int:
        return min(self.num_images, chunks * self.batch_size)

    def __enter__(self) -> "_ChunkProgress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.bar is not None:
            self.bar.close(ok=exc_type is None)


def _interrupted_augment(source: Path, output: Path, batch_size: int) -> str:
    """The line an interrupted ``ladd augment`` ends with: what was kept, and the command that resumes."""
    from ladd_format.labeler.augment import work_state
    try:
        with open_dla(source) as f:
            num_images = f.num_images
    except Exception:                    # noqa: BLE001 - the message is all that is left to give
        num_images = None
    try:
        state = work_state(output, batch_size, num_images)
    except OSError:
        state = None
    if state is None:
        return "interrupted; nothing was written"
    of = "" if state["total_chunks"] is None else f" of {state['total_chunks']}"
    images = "" if state["images"] is None else f" ({state['images']} of {state['num_images']} images)"
    return (f"interrupted; kept {state['chunks']}{of} labeled chunk(s){images} in {state['work']}; "
            f"to label only the rest, run: {_resume_command(click.get_current_context())}")


def _resume_command(ctx: click.Context) -> str:
    """The command line of ``ctx`` as given (options at their defaults left out) plus ``--resume``."""
    import shlex
    words = ["ladd", ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            words.append(str(value))
        elif param.name == "resume" or value is None or value == param.default or value is False:
            continue
        elif getattr(param, "is_flag", False):
            words.append(max(param.opts, key=len))
        else:
            words += [max(param.opts, key=len), str(value)]
    words.append("--resume")
    return " ".join(shlex.quote(w) for w in words)


@main.command(name="evaluate")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--test", "test_source", required=True,
              help="Test data: an .npz (images, labels), an ImageFolder, digits-test (scikit-learn digits' "
                   "held-out split, rendered at FILE's size), or a .dla.h5 file (read a batch at a time: a test set "
                   "of any size). It must match FILE's channels, image size and classes.")
@click.option("--resize-test", is_flag=True,
              help="Resize test images of another size to FILE's (bilinear, antialiased) instead of refusing them.")
@click.option("--arch", default="convnet-d3", show_default=True)
@click.option("--width", type=int, default=None,
              help="Architecture width (ConvNet default 128).")
@click.option("--arch-option", "arch_options", multiple=True, metavar="KEY=VALUE",
              help="Further integer keyword of the architecture, e.g. depth=4 for vit-cifar (repeatable).")
@click.option("--mode", type=click.Choice(["hard", "soft", "ladd"]), default="ladd", show_default=True)
@click.option("--epochs", type=int, default=300, show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--flip", is_flag=True, help="Random horizontal flips in the augmentation.")
@click.option("--sub-per-image", type=int, default=None,
              help="ladd mode: use K random sub-images per step (their terms averaged; with --reduction sum, "
                   "summed and scaled by N*N/K).")
@click.option("--micro-batch", type=int, default=None,
              help="Images per forward/backward; each batch's gradients are accumulated over its micro-batches "
                   "(the memory of a step then grows with this, not --batch-size: at 224 px a ResNet-18 LADD "
                   "step holds 26 views per image). BatchNorm sees micro-batches. Default: the whole batch.")
@click.option("--sub-chunk", type=int, default=None,
              help="ladd mode: images and sub-images per forward pass of the loss, each pass run again in the "
                   "backward pass instead of held (same gradients, a second forward pass). Default: as many "
                   "as fit the loss's memory budget (ladd_format.torch.loss; no chunks for a BatchNorm student); "
                   "0: all at once.")
@click.option("--stream/--in-memory", default=None,
              help="--stream: read each batch from FILE while the previous one trains, holding two batches; "
                   "--in-memory: hold the whole set as stored (uint8 images, encoded dense labels). Either way "
                   "the students are the same, and each row's digest is checked as it is read. Default: held when "
                   "the set takes at most 1 GiB as stored, streamed above (a note on stderr says so).")
@click.option("--reduction", type=click.Choice(["sum", "mean"]), default="mean", show_default=True,
              help="ladd mode: average the local term over the sub-images, or sum it as Eq. 5 does literally; "
                   "the sum measured 82.4 vs 91.3% (mean) at IPC 1 on digits, about 9 points worse "
                   "(benchmarks/RESULTS.md, students_loss).")
@click.option("--device", default="auto", show_default=True)
@click.option("--workers", type=int, default=None,
              help="CPU: train the seeds in this many processes at once (default: one per core, at most one "
                   "per seed, when the rounds keep 80% of them busy: 2 for 2, 4 or 5 seeds on 2 cores, 1 "
                   "process with every core's threads for 3; 1 on a GPU). On a machine other work shares, "
                   "--workers <cores> --threads 1 degrades least.")
@click.option("--threads", type=int, default=None,
              help="CPU: torch threads per student (default: the cores shared among the workers). A seed gives "
                   "the same accuracy for the same thread count, whatever --workers.")
@click.option("--json", "as_json", is_flag=True)
@allow_mismatch_option
@fail_cleanly
def evaluate_cmd(file, test_source, resize_test, arch, width, arch_options, mode, epochs, lr, batch_size, seeds, flip,
                 sub_per_image, micro_batch, sub_chunk, stream, reduction, device, workers, threads, as_json,
                 allow_mismatch):
    """Train fresh students on FILE and report their test accuracy (mean +- std over seeds)."""
    from ladd_format.experiments.evaluate import HOLD_LIMIT_BYTES, EvalConfig, evaluate, load_test_source, streams
    from ladd_format.experiments.testset import check_test_fits
    from ladd_format.progress import Progress
    bounded("--width", width, 1, MAX_WIDTH)
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--seeds", seeds),
                        ("--sub-per-image", sub_per_image), ("--micro-batch", micro_batch)):
        bounded(flag, value, 1)
    bounded("--workers", workers, 1, 256)
    bounded("--threads", threads, 1, 1024)
    bounded("--sub-chunk", sub_chunk, 0)
    arch_kwargs = {"width": width} if width else {}
    for option in arch_options:
        key, _, value = option.partition("=")
        try:
            arch_kwargs[key.strip()] = int(value)
        except ValueError:
            raise click.BadParameter(f"expected KEY=INTEGER, got {option!r}", param_hint="--arch-option") from None
        if not 0 <= arch_kwargs[key.strip()] <= MAX_WIDTH:
            raise click.BadParameter(f"values must lie in 0..{MAX_WIDTH}, got {option!r}", param_hint="--arch-option")
    with open_dla(require_regular_file(file)) as f:
        shape, num_classes, class_names = f.image_shape, f.num_classes, f.class_names
        dataset = f.attrs.get("source_dataset")
    if max(shape[1:]) > MAX_IMAGE_SIDE and (resize_test or test_source == "digits-test"):
        raise LaddError(f"images are {shape[1]}x{shape[2]}; test images are made that size, at most "
                        f"{MAX_IMAGE_SIDE} a side", file, "/images")
    test = load_test_source(test_source, shape, resize=resize_test)
    try:                                                     # before any training
        mismatch = check_test_fits(test, shape, num_classes, class_names=class_names,
                                   dataset=dataset if isinstance(dataset, str) else None, allow_mismatch=allow_mismatch)
    except LaddError as exc:
        raise type(exc)(exc.message, exc.path or file, exc.where) from None
    if mismatch is not None:
        click.echo(f"ladd: warning: {file}: {mismatch}; testing anyway (--allow-mismatch)", err=True)
    config = EvalConfig(arch=arch, arch_kwargs=arch_kwargs or None, mode=mode, epochs=epochs,
                        lr=lr, batch_size=batch_size, seeds=seeds, device=device, flip=flip,
                        sub_per_image=sub_per_image, reduction=reduction, threads=threads, micro_batch=micro_batch,
                        sub_chunk=sub_chunk, stream=stream)
    if stream is None and streams(file, config):
        click.echo(f"evaluate: {file} takes more than {HOLD_LIMIT_BYTES / 2**30:g} GiB held in memory; each batch "
                   "is read from the file instead (--in-memory holds it)", err=True)
    if workers is None:
        from ladd_format.experiments.pool import default_workers
        workers = default_workers(device, seeds)
    from ladd_format.experiments.evaluate import RunEstimate
    from ladd_format.experiments.report import accuracy_text
    estimate = RunEstimate(seeds * epochs, min(workers, seeds))       # one epoch of each worker, then the note
    with Progress("evaluate", seeds * epochs, "epochs", stream=sys.stderr) as bar:
        def on_epoch(done, total, loss):
            bar.set(done, postfix=f"loss {loss:.3f}")
            note = estimate.note(done)
            if note:
                bar.write(f"note: {note}")

        def on_student(done, total, acc):
            bar.write(f"student {done}/{total}: test accuracy {100 * acc:.2f}%")
        result = evaluate(file, test, config, progress=on_student, epoch_progress=on_epoch, workers=workers)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"{file}: {mode} mode, {arch}: test accuracy "
                   f"{accuracy_text(result['mean'], result['std'], seeds, 2, count=True)} ({test.description})")
        if result["data_wait"] is not None:
            wait = result["data_wait"]
            click.echo(f"streamed: training waited {wait['data_wait_seconds']:.1f} s of {wait['train_seconds']:.1f} s "
                       f"({100 * wait['share']:.1f}%) for batches read from the file")


@main.command(name="export")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["folder", "npz", "ddranking"]), default="folder",
              show_default=True,
              help="folder: ImageFolder PNGs + labels as .npy/JSON; npz: one archive `ladd convert npz` reads "
                   "back to the same file; ddranking: images.pt, labels.pt (+ lr.pt) as DD-Ranking loads them.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--subimages", is_flag=True, help="Also materialise the N*N sub-images with their soft labels.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@fail_cleanly
def export_cmd(file: Path, fmt: str, output: Path, subimages: bool, force: bool) -> None:
    """Export FILE for frameworks that cannot run ladd-format."""
    from ladd_format.export import export
    notes: list[str] = []
    with Progress("export", None, "rows written", stream=sys.stderr, delay=PROGRESS_DELAY) as bar:
        export(file, output, fmt, with_subimages=subimages, overwrite=force, notes=notes, progress=bar.set)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {output}")


@main.command(name="show")
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
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@fail_cleanly
def show_cmd(file: Path, output: Path, indices: tuple[int, ...], per_class: int | None, cell: int, top: int,
             force: bool) -> None:
    """Draw FILE into a PNG: images with their sub-images and top dense labels, or images per class.

    A D_LA with dense labels: each chosen image, its N x N sub-images as the student sees them (spec
    section 5), each captioned with its top dense labels, the hard and soft labels, and a legend. A
    plain distilled set D (or --per-class): one row of images per class."""
    from ladd_format.experiments.show import show
    result = show(file, output, indices=indices, per_class=per_class, cell=cell, top=top, overwrite=force)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {output} ({result.kind}, {result.width}x{result.height} px)")


def _ipc_list(ctx, param, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        ipcs = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not ipcs or min(ipcs) < 1:
        raise click.BadParameter(f"IPC values must be >= 1, got {value!r}")
    return ipcs


@main.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True)
@click.option("--ipc", "ipcs", default=None, callback=_ipc_list,
              help="Images per class of the demo sets, comma-separated [default: 1,5; --quick: 1].")
@click.option("--seeds", type=int, default=None, help="Student seeds per row (default 3; --quick: 1).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the labeler and of the image draw.")
@click.option("--quick", is_flag=True, help="Smoke-test profile: tiny labeler, 20-epoch students, one seed.")
@click.option("--device", default="auto", show_default=True)
@click.option("--force", is_flag=True,
              help="Write into a non-empty WORKDIR that an earlier demo did not make (files of the names the demo "
                   "writes are replaced). A folder of an earlier demo is reused without it.")
@fail_cleanly
def demo(workdir: Path, ipcs: tuple[int, ...] | None, seeds: int | None, seed: int, quick: bool, device: str,
         force: bool) -> None:
    """The main job on scikit-learn's digits: labeler -> D -> D_LA -> verify -> size -> students -> report.

    WORKDIR is the demo's own folder: a new or empty folder, or one an earlier demo wrote (its files
    are replaced); any other folder needs --force. Ctrl-C in a folder the run made removes it."""
    from dataclasses import replace

    from ladd_format.experiments.demo import DemoSettings, check_workdir, quick_settings, run_demo
    bounded("--seeds", seeds, 1)
    settings = quick_settings() if quick else DemoSettings()
    settings = replace(settings, ipcs=ipcs or settings.ipcs, seed=seed, seeds=seeds or settings.seeds,
                       student=replace(settings.student, device=device))
    if settings.seeds < 1:
        raise click.BadParameter("--seeds must be >= 1")
    check_workdir(workdir, force)                         # before any work
    existed = os.path.lexists(workdir)
    try:
        run_demo(workdir, settings, echo=click.echo, force=force)
    except KeyboardInterrupt:
        kept = (f"the demo's files written so far are in {workdir}" if existed and os.path.lexists(workdir)
                else "nothing was written")
        click.echo(f"ladd: interrupted; {kept}", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
