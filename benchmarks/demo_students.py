"""The demo's students: 18 small students in processes of one thread vs one process of torch's threads.

Usage::

    make demo                                                   # the files this script trains on
    .venv/bin/python benchmarks/demo_students.py                # ~12 minutes on 2 CPU cores; saves
                                                                # results/demo_students.json and writes the
                                                                # section of RESULTS/demo-students.md
    .venv/bin/python benchmarks/demo_students.py --render-only  # re-render the section from the saved JSON
    .venv/bin/python benchmarks/demo_students.py --quick        # 20 epochs, one seed; prints only

What is timed is step [5/5] of ``ladd demo`` alone, with the demo's own files (``--workdir``, default
demo-out, written by ``make demo``) and settings (6 rows x 3 seeds, ConvNet-D3 width 32, 200 epochs,
LADD with 4 sub-images per step), through the demo's own function (``student_rows``) in two ways:

- ``pool``: one process per core, one torch thread each (the demo's default, :mod:`ladd_format.train.pool`);
- ``threads``: every student in this process, one after another, with as many torch threads as cores
  (what the demo did before).

Each way runs on a quiet machine and again with one busy process (``python -c "while True: pass"``)
sharing the cores, as when a user's editor, browser or another job runs beside the demo. The
accuracies must not depend on the way (a seed trains the same weights with one thread in any
process; the ``threads`` way uses more threads, so its accuracies may differ in the last digits).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _common import Output, add_output_args  # noqa: E402

NAME = KEY = "demo_students"
TITLE = "## The demo's students: processes of one thread vs torch's threads (CPU)"


def demo_specs(workdir: Path, ipcs=(1, 5)) -> list[tuple]:
    """The demo's rows (method, ipc, file, mode, base bytes) from the files ``ladd demo`` left in ``workdir``."""
    from ladd_format.demo import STUDENT_CODEC, codec_label
    from ladd_format.size import measure_file

    specs = []
    for ipc in ipcs:
        plain, plus_one = workdir / f"digits_ipc{ipc}_D.dla.h5", workdir / f"digits_ipc{ipc + 1}_D.dla.h5"
        ladd = workdir / f"digits_ipc{ipc}_{codec_label(STUDENT_CODEC)}.dla.h5"
        for path in (plain, plus_one, ladd):
            if not path.exists():
                raise SystemExit(f"{path} not found: run `make demo` (or `ladd demo --workdir {workdir}`) first")
        base = measure_file(plain, "zip").dla_bytes
        specs += [("hard", ipc, plain, "hard", base), ("LADD", ipc, ladd, "ladd", base),
                  ("baseline++", ipc, plus_one, "hard", base)]
    return specs


def run_way(way: str, specs, test, config, cores: int) -> dict:
    import torch

    from ladd_format.demo import student_rows

    if way == "pool":
        workers, cfg = cores, replace(config, threads=1)
    else:
        workers, cfg = 1, replace(config, threads=cores)
    before = torch.get_num_threads()
    start = time.perf_counter()
    try:
        rows = student_rows(specs, test, cfg, workers, progress=None, show_progress=False)
    finally:
        torch.set_num_threads(before)
    seconds = time.perf_counter() - start
    return {"way": way, "workers": workers, "threads": cfg.threads, "seconds": seconds,
            "rows": [{"method": r["method"], "ipc": r["ipc"], "accuracies": r["accuracies"],
                      "done_at": r["seconds"]} for r in rows]}


def measure(workdir: Path, quick: bool) -> dict:
    from ladd_format.demo import SIDE, DemoSettings
    from ladd_format.train.pool import available_cores
    from ladd_format.labeler.sources import load_source

    config = DemoSettings().student
    if quick:
        config = replace(config, epochs=20, seeds=1)
    specs = demo_specs(workdir)
    test = load_source("digits-test", SIDE)
    cores = available_cores()
    runs = []
    for shared in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if shared else None
        try:
            for way in ("pool", "threads"):
                r = run_way(way, specs, test, config, cores)
                r["shared"] = shared
                runs.append(r)
                print(f"{'shared' if shared else 'quiet':<6} {way:<7} {r['seconds']:7.1f} s", file=sys.stderr)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    return {"cores": cores, "epochs": config.epochs, "seeds": config.seeds, "students": len(specs) * config.seeds,
            "sub_per_image": config.sub_per_image, "width": (config.arch_kwargs or {}).get("width"),
            "runs": runs}


def render(payload: dict) -> str:
    d = payload["data"]
    by = {(r["shared"], r["way"]): r for r in d["runs"]}
    lines = [
        f"- Machine: {payload['machine']}",
        f"- Date: {payload['date']}; command: `{payload['command']}` (after `make demo`; re-render this text "
        "from `benchmarks/results/demo_students.json` with `python benchmarks/demo_students.py --render-only`)",
        f"- What: step [5/5] of `ladd demo` alone, {d['students']} students (6 rows x {d['seeds']} seeds, ConvNet-D3 "
        f"width {d['width']}, {d['epochs']} epochs, LADD with {d['sub_per_image']} sub-images per step) on the "
        f"demo's files. pool: {d['cores']} processes of 1 torch thread (the demo's default); threads: one process, "
        f"the students one after another with {d['cores']} torch threads. shared: one busy process "
        "(`python -c \"while True: pass\"`) runs beside them. One run per cell.",
        "",
        "| machine state | pool (processes x 1 thread), s | threads (1 process), s | threads / pool |",
        "|---|---:|---:|---:|",
    ]
    for shared in (False, True):
        p, t = by[(shared, "pool")], by[(shared, "threads")]
        lines.append(f"| {'one busy process beside' if shared else 'quiet'} | {p['seconds']:.1f} | "
                     f"{t['seconds']:.1f} | {t['seconds'] / p['seconds']:.2f}x |")
    lines.append("")
    same = all(by[(s, "pool")]["rows"][i]["accuracies"] == by[(False, "pool")]["rows"][i]["accuracies"]
               for s in (False, True) for i in range(len(by[(False, "pool")]["rows"])))
    lines.append(f"The pool's accuracies are {'identical' if same else 'NOT identical'} quiet and shared "
                 "(one thread per student, whatever else runs).")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=ROOT / "demo-out", help="the folder `ladd demo` wrote")
    ap.add_argument("--quick", action="store_true", help="20 epochs, one seed; print only unless --data-dir/--results")
    add_output_args(ap)
    args = ap.parse_args(argv)
    return Output.from_args(args).publish(KEY, TITLE, render, lambda: measure(args.workdir, args.quick))


if __name__ == "__main__":
    raise SystemExit(main())
