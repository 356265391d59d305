"""``ladd info``: a summary of a D_LA file (shapes, classes, normalisation, dense labels, relabel stream,
provenance)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ladd_format import open_dla
from ladd_format.atomic import require_regular_file
from ladd_format.codecs import parse_codec
from ladd_format.spec.checks import scan_values

from .common import fail_cleanly

#: width of the key column of `ladd info` (the longest key, "soft labels")
INFO_KEY_WIDTH = 11


@click.command(name="info")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@fail_cleanly
def command(file: Path, as_json: bool) -> None:
    """Summarise a D_LA file: shapes, classes, normalisation, dense labels, relabel stream, provenance."""
    with open_dla(require_regular_file(file)) as f:
        data = f.info()
        scan_values(f)            # labels and dense labels through the reader's checks (not the images)
        stream = f.stream if f.has_stream else None   # its attributes and starts checked here (4.7)
        if "stream" not in data:
            data["stream"] = None if stream is None else stream.info()
        stream_rows = [] if stream is None else _stream_rows(stream)
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
    _dense_rows(data["dense"])
    if stream_rows:
        for key, value in stream_rows:
            _row(key, value)
    else:
        _row("stream", "none (no relabel stream)")
    prov = data["provenance"]
    if isinstance(prov, dict) and prov:
        inputs = prov.get("inputs")
        _row("provenance", f"{prov.get('tool')} via {prov.get('converter')}, {prov.get('created')}, "
                           f"{len(inputs) if isinstance(inputs, list) else 0} input file(s)")
    _row("root digest", data.get("root_sha256") or "none (format 1.0)")
    if data.get("content_sha256"):
        _row("content", f"{data['content_sha256']} (content digest: as the root digest, without /provenance)")


def _dense_rows(dense: dict | None) -> None:
    """The rows of the dense labels: N, R, T and codec, the boxes, the labeler."""
    if dense is None:
        _row("dense", "none (plain distilled set D)")
        return
    codec = parse_codec(dense["codec"]).text()
    _row("dense", f"N={dense['n']} ({dense['n'] ** 2} sub-images), R={_num(dense['ratio'])}, "
                  f"T={_num(dense['temperature'])}, codec {codec}")
    boxes = dense["boxes"]
    if isinstance(boxes, list) and boxes and all(isinstance(b, list) and len(b) == 4 for b in boxes):
        top, left, bh, bw = boxes[0]
        _row("boxes", f"{bh}x{bw} crops, first [{top}, {left}], last {boxes[-1][:2]}")
    else:
        _row("boxes", f"malformed ({len(boxes) if isinstance(boxes, list) else 0} rows of 4 "
                      "expected N*N): run `ladd verify`")
    labeler = dense["labeler"] if isinstance(dense["labeler"], dict) else {}
    _row("labeler", ", ".join(f"{k}={_value(v)}" for k, v in labeler.items()))


def _stream_rows(s) -> list[tuple[str, str]]:
    """The rows of a relabel stream (spec 4.7), from its reader ``s``: the schedule, the crops, the labels,
    the teacher and, when recorded, the sampler and the augmentation."""
    spec = s.spec
    h_out, w_out = spec.crop_size
    rows = [("stream", f"{s.epochs} epoch(s), {s.num_batches} batch(es) of <= {spec.batch_size}, "
                       f"{s.num_records:,} records; mode {spec.mode}"),
            ("crops", f"{h_out}x{w_out} ({spec.resize}), mix {spec.mix}"),
            ("labels", f"codec {spec.codec.label} (kind {spec.codec.kind}), T={_num(spec.temperature)}"),
            ("teacher", ", ".join(f"{k}={_value(v)}" for k, v in spec.teacher.items()) or "none")]
    for key, value in (("sampler", spec.sampler), ("augment", spec.augmentation)):
        if value:
            rows.append((key, json.dumps(value, sort_keys=True, default=str)))
    return rows


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
