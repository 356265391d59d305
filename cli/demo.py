"""``ladd demo``: the main job on scikit-learn's digits, end to end."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ladd_format.extras import require

from .common import bounded, fail_cleanly, interrupted


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


@click.command(name="demo")
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
def command(workdir: Path, ipcs: tuple[int, ...] | None, seeds: int | None, seed: int, quick: bool, device: str,
            force: bool) -> None:
    """The main job on scikit-learn's digits: labeler -> D -> D_LA -> verify -> size -> students -> report.

    WORKDIR is the demo's own folder: a new or empty folder, or one an earlier demo wrote (its files
    are replaced); any other folder needs --force. Ctrl-C in a folder the run made removes it."""
    from dataclasses import replace

    require("torch", "ladd demo")
    from ladd_format.demo import DemoSettings, check_workdir, quick_settings, run_demo
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
        interrupted(f"the demo's files written so far are in {workdir}" if existed and os.path.lexists(workdir)
                    else "nothing was written")
