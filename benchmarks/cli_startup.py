"""CLI start-up: wall time of ``ladd --help``, ``ladd info``, ``ladd verify`` and ``ladd size`` on a small
D_LA file, against the same commands with torch imported first (what every command paid when the CLI
imported torch at start-up) and against ``python -c "import torch"`` alone.

Usage::

    .venv/bin/python benchmarks/cli_startup.py                # ~1-2 minutes on 2 CPU cores; saves
                                                              # results/cli_startup.json and writes the
                                                              # section of RESULTS/cli-startup.md
    .venv/bin/python benchmarks/cli_startup.py --render-only  # re-render the section from the saved JSON
    .venv/bin/python benchmarks/cli_startup.py --quick        # 2 runs each; prints only

Each command line runs as a fresh process (``subprocess.run``, output discarded) once as a warm-up
(page cache, .pyc files) and then ``--repeats`` times; the table gives the median and the min-max of
those runs. "ladd" is the installed entry point ``.venv/bin/ladd``; "torch first + ladd" is
``python -c "import torch, sys; from ladd_cli.main import main; sys.argv = [...]; main()"``, the same
command with torch imported before the CLI. The D_LA file (200 images of 3x32x32, C = 10, N = 5
float32 dense labels) is written by the script with ``ladd_format.DLAWriter`` in a temporary folder.
Timings depend on the machine and its load: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _common import Output, add_output_args  # noqa: E402

NAME = KEY = "cli_startup"
TITLE = "## CLI start-up"
PY = sys.executable
LADD = str(Path(PY).with_name("ladd"))
COMMANDS = (("--help",), ("info", "FILE"), ("verify", "FILE"), ("size", "FILE"))


def write_file(path: Path, m: int = 200, seed: int = 0) -> dict:
    """A small D_LA file: ``m`` random 3x32x32 images, C = 10, N = 5 float32 dense labels."""
    from ladd_format import DenseSpec, DLAWriter
    from ladd_format.codecs import make_codec

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(m, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(m) % 10
    z = rng.standard_normal((m, 25, 10)).astype(np.float32)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    with DLAWriter(path, num_classes=10, image_shape=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                   dense=DenseSpec(5, 0.625, make_codec("float32"), labeler={"arch": "none (random)"}),
                   ipc=m // 10, converter="benchmarks/cli_startup.py") as w:
        w.append(images, labels, dense=probs)
    return {"images": m, "image_shape": [3, 32, 32], "classes": 10, "dense": "N = 5, float32",
            "bytes": path.stat().st_size}


def time_runs(argv: list[str], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` runs of ``argv`` after one warm-up; each must exit 0."""
    samples = []
    for k in range(repeats + 1):
        t = time.perf_counter()
        res = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        dt = time.perf_counter() - t
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {res.returncode}:\n{res.stderr}")
        if k:
            samples.append(dt)
    return samples


def torch_first(args: list[str]) -> list[str]:
    return [PY, "-c", "import torch, sys; from ladd_cli.main import main; "
            f"sys.argv = {['ladd', *args]!r}; main()"]


def measure(repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="ladd-cli-startup-") as tmp:
        path = Path(tmp) / "small.dla.h5"
        file = write_file(path)
        rows = []
        for cmd in COMMANDS:
            args = [str(path) if a == "FILE" else a for a in cmd]
            plain = time_runs([LADD, *args], repeats)
            with_torch = time_runs(torch_first(args), repeats)
            rows.append({"command": "ladd " + " ".join(cmd), "plain": plain, "torch_first": with_torch})
            print(f"{rows[-1]['command']}: {statistics.median(plain):.3f} s, torch first "
                  f"{statistics.median(with_torch):.3f} s", file=sys.stderr)
        import_torch = time_runs([PY, "-c", "import torch"], repeats)
        bare = time_runs([PY, "-c", "pass"], repeats)
    probe = subprocess.run([PY, "-c", "import sys; from ladd_cli.main import main; print('torch' in sys.modules)"],
                           capture_output=True, text=True)
    return {"repeats": repeats, "file": file, "rows": rows, "import_torch": import_torch, "python_bare": bare,
            "cli_imports_torch": probe.stdout.strip() == "True"}


def fmt(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e3:,.0f} ({min(samples) * 1e3:,.0f}-{max(samples) * 1e3:,.0f})"


def render(payload: dict) -> str:
    d = payload["data"]
    med = statistics.median
    lines = [
        f"- Machine: {payload['machine']}",
        f"- Date: {payload['date']}; command: `{payload['command']}` (regenerate the figures with "
        "`python benchmarks/cli_startup.py`; re-render this text from `benchmarks/results/cli_startup.json` with "
        "`python benchmarks/cli_startup.py --render-only`)",
        f"- Method: each command line a fresh process, 1 warm-up + {d['repeats']} runs; milliseconds, median (min-max). "
        f"File: {d['file']['images']} random {'x'.join(map(str, d['file']['image_shape']))} images, C = "
        f"{d['file']['classes']}, dense {d['file']['dense']} ({d['file']['bytes']:,} B), written by the script. "
        "\"torch first\" runs `python -c \"import torch, sys; from ladd_cli.main import main; sys.argv = [...]; "
        "main()\"`: the same command with torch imported before the CLI, as the old CLI did for every command. "
        f"Importing `ladd_cli.main` imports torch now: {'yes' if d['cli_imports_torch'] else 'no'}.",
        "",
        "| command | ladd, ms | torch first + ladd, ms | torch first / ladd (medians) |",
        "|---|---:|---:|---:|",
    ]
    ratios = []
    for r in d["rows"]:
        ratio = med(r["torch_first"]) / med(r["plain"])
        ratios.append(ratio)
        lines.append(f"| `{r['command']}` | {fmt(r['plain'])} | {fmt(r['torch_first'])} | {ratio:.1f}x |")
    lines.append(f"| `python -c \"import torch\"` | - | {fmt(d['import_torch'])} | - |")
    lines.append(f"| `python -c \"pass\"` (interpreter start) | {fmt(d['python_bare'])} | - | - |")
    lines.append("")
    saved = [med(r["torch_first"]) - med(r["plain"]) for r in d["rows"]]
    lines.append(f"In this run the commands that do not need torch start {min(ratios):.1f}-{max(ratios):.1f}x "
                 f"faster than with torch imported first ({min(saved) * 1e3:,.0f}-{max(saved) * 1e3:,.0f} ms saved "
                 f"per command); `import torch` alone takes {med(d['import_torch']) * 1e3:,.0f} ms "
                 f"(interpreter start included).")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 runs each; print only unless --data-dir/--results")
    ap.add_argument("--repeats", type=int, default=None, help="runs per command line after the warm-up (default 5)")
    add_output_args(ap)
    args = ap.parse_args(argv)
    return Output.from_args(args).publish(KEY, TITLE, render,
                                          lambda: measure(args.repeats or (2 if args.quick else 5)))


if __name__ == "__main__":
    raise SystemExit(main())
