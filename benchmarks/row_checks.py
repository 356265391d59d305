"""Cost of the spec 1.1 checks a reader makes: ``open_dla`` (every header rule and the root
digest) and ``DLADataset`` items with and without the per-row digest check (``check_rows``).

Usage::

    .venv/bin/python benchmarks/row_checks.py                # ~30 s on 2 CPU cores; saves
                                                             # results/row_checks.json and writes the
                                                             # "Reader checks" section of RESULTS/container-io.md
    .venv/bin/python benchmarks/row_checks.py --render-only  # re-render from the saved JSON
    .venv/bin/python benchmarks/row_checks.py --quick        # fewer repeats; prints only

The file (256 random 3x128x128 uint8 images, C = 10, N = 5 float32 dense labels) is written by the
script. Both settings are timed in the same run, alternating, ``--repeats`` passes over every item
each; the ratio of the medians is the figure (items/s vary with the machine and its load).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _common import Output, add_output_args

NAME = KEY = "row_checks"
TITLE = "## Reader checks (spec 1.1)"


def write_file(path: Path, m: int = 256, side: int = 128) -> None:
    from ladd_format import DenseSpec, DLAWriter
    from ladd_format.codecs import make_codec

    rng = np.random.default_rng(0)
    z = rng.standard_normal((m, 25, 10))
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    with DLAWriter(path, num_classes=10, image_shape=(3, side, side), mean=(0.5,) * 3, std=(0.25,) * 3,
                   dense=DenseSpec(5, 0.625, make_codec("float32"))) as w:
        w.append(rng.integers(0, 256, (m, 3, side, side), dtype=np.uint8), np.arange(m) % 10, dense=probs)


def measure(repeats: int) -> dict:
    from ladd_format import open_dla
    from ladd_format.torch.dataset import DLADataset

    with tempfile.TemporaryDirectory(prefix="ladd-row-checks-") as tmp:
        path = Path(tmp) / "set.dla.h5"
        write_file(path)
        opens = []
        for _ in range(repeats * 8):
            t = time.perf_counter()
            open_dla(path).close()
            opens.append(time.perf_counter() - t)
        rates: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(repeats):
            for key, check in (("on", True), ("off", False)):
                ds = DLADataset(path, check_rows=check)
                ds[0]
                t = time.perf_counter()
                for i in range(len(ds)):
                    ds[i]
                rates[key].append(len(ds) / (time.perf_counter() - t))
                print(f"check_rows={check}: {rates[key][-1]:,.0f} items/s", file=sys.stderr)
    return {"items": 256, "image": "3x128x128 uint8", "dense": "C = 10, N = 5, float32", "open_s": opens,
            "items_per_s": rates}


def render(payload: dict) -> str:
    d = payload["data"]
    med = statistics.median
    on, off = med(d["items_per_s"]["on"]), med(d["items_per_s"]["off"])
    return "\n".join([
        f"- Machine: {payload['machine']}",
        f"- Date: {payload['date']}; command: `{payload['command']}` (re-render with `--render-only`)",
        f"- Method: {d['items']} random {d['image']} images, dense {d['dense']}; `DLADataset[i]` over every item, "
        f"no workers, {len(d['items_per_s']['on'])} passes per setting, alternating; medians (min-max).",
        "",
        "| | value |",
        "|---|---:|",
        f"| `open_dla` (header rules + root digest), ms | {med(d['open_s']) * 1e3:.1f} "
        f"({min(d['open_s']) * 1e3:.1f}-{max(d['open_s']) * 1e3:.1f}) |",
        f"| items/s, row digests checked (default) | {on:,.0f} ({min(d['items_per_s']['on']):,.0f}-"
        f"{max(d['items_per_s']['on']):,.0f}) |",
        f"| items/s, `check_rows=False` | {off:,.0f} ({min(d['items_per_s']['off']):,.0f}-"
        f"{max(d['items_per_s']['off']):,.0f}) |",
        f"| checked / unchecked | {on / off:.2f}x |",
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 passes; print only unless --data-dir/--results")
    ap.add_argument("--repeats", type=int, default=None, help="passes per setting (default 5)")
    add_output_args(ap)
    args = ap.parse_args(argv)
    return Output.from_args(args).publish(KEY, TITLE, render,
                                          lambda: measure(args.repeats or (2 if args.quick else 5)))


if __name__ == "__main__":
    raise SystemExit(main())
