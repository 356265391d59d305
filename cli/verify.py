"""``ladd verify``: check a file against every rule of the spec and print the result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ladd_format.spec.rules import Rule
from ladd_format.verify import check, summary

from . import common
from .common import fail_cleanly


@click.command(name="verify")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@fail_cleanly
def command(file: Path, as_json: bool) -> None:
    """Check FILE against every rule of the spec. Exit 0 and print OK, or exit 1 with one line per
    problem, ending with the number and name of the spec rule it breaks (section 8)."""
    with common.progress("verify", "MB read") as bar:
        result = check(file, progress=bar.set)
    # what the verifier checked of a valid file's relabel stream, {"epochs", "batches", "records"} (None: no
    # stream); read from the result, as the digests are: the file is opened once (tests/test_cli.py)
    stream = result.stream if result.ok else None
    if as_json:
        click.echo(json.dumps({"file": str(file), **summary(result.problems),
                               **({**result.seal(), "stream": stream} if result.ok else {})}, indent=2))
    elif result.ok:
        click.echo(f"OK {file}")
        if stream is not None:
            click.echo(f"relabel stream: {stream['epochs']} epoch(s), {stream['batches']:,} batch(es), "
                       f"{stream['records']:,} records checked (rules {int(Rule.STREAM)} and "
                       f"{int(Rule.STREAM_DIGESTS)}: bounds, codec, every batch digest)")
        if result.root_sha256:
            click.echo(f"format {result.format_version}, root digest {result.root_sha256} (compare it with the one "
                       "the publisher gives)")
        click.echo(f"content digest {result.content_sha256} (the same data has the same one, whoever made the file "
                   "and when)")
        if not result.root_sha256:
            click.echo(f"note: format {result.format_version} has no root or row digests: damage to an attribute is "
                       f"not detected, and readers do not check items one by one; `ladd upgrade {file} -o NEW` writes "
                       "a 1.1 copy", err=True)
    else:
        for problem in result.problems:
            click.echo(f"{problem} [rule {problem.rule_label}]")
        click.echo(f"FAILED {file}: {len(result.problems)} problem(s)", err=True)
    sys.exit(0 if result.ok else 1)
