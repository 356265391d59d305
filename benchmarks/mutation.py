"""Mutation testing of the format core with mutmut: the score per module and the surviving mutants.

Usage::

    make mutation                                   # mutmut run (hours on 2 cores; resumable), then this
    .venv/bin/python benchmarks/mutation.py         # summarise mutants/ into results/mutation.json and the
                                                    # "Mutation testing" section of RESULTS.md
    .venv/bin/python benchmarks/mutation.py --render-only

The modules are ``[tool.mutmut] only_mutate`` of pyproject.toml (the sub-image geometry and kernel,
the codecs, the pixel rules, verify, writer and reader, the loss and the converters' shared path).
mutmut changes one operator, constant or call at a time, runs the tests that cover the function
(``pytest -x``), and records the exit status in ``mutants/<module>.py.meta``; this script reads
those files. Score = (killed + timeout) / checked, as mutmut counts it (a mutant that makes the
covering tests hang or overrun 3x their time is detected); "not checked" are mutants the run did not
reach. ``mutmut show NAME`` prints a mutant's diff. Run mutmut with ``OMP_NUM_THREADS=1`` (``make mutation``
does): mutmut forks a worker per mutant from a process that has used torch, and a forked child of a
running OpenMP pool deadlocks, which mutmut would count as a timeout, i.e. a kill.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import Output, add_output_args  # noqa: E402

NAME = KEY = "mutation"
TITLE = "## Mutation testing of the format core (mutmut)"

STATUS = {1: "killed", 3: "killed", 0: "survived", None: "not checked", 5: "no tests", 33: "no tests",
          34: "skipped", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
          -11: "segfault", -9: "segfault", 37: "type check"}
DETECTED = ("killed", "timeout", "segfault")

# survivors judged equivalent (no behaviour a caller can observe changes), by mutant name, with why
EQUIVALENT: dict[str, str] = {
    "ladd_format.pixels.x_to_pixel01__mutmut_2": "astype(None) is astype(float64) in numpy",
    "ladd_format.pixels.x_loss_report__mutmut_20": "astype(None) is astype(float64) in numpy",
    "ladd_format.pixels.x_loss_report__mutmut_21": "astype(None) is astype(float64) in numpy",
    "ladd_format.codecs.base.x_register__mutmut_1": "registration runs at import, before mutmut switches the "
                                                    "mutant on; make_codec's tests would fail on it otherwise",
}


def collect(mutants: Path) -> dict:
    modules = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        module = str(meta.relative_to(mutants))[:-len(".meta")]
        data = json.loads(meta.read_text())
        statuses = {k: STATUS.get(v, "suspicious") for k, v in data.get("exit_code_by_key", {}).items()}
        modules[module] = {"counts": dict(Counter(statuses.values())),
                           "survivors": sorted(k for k, s in statuses.items() if s == "survived"),
                           "no_tests": sorted(k for k, s in statuses.items() if s == "no tests")}
    return {"modules": modules}


def score(counts: dict) -> tuple[int, int, float | None]:
    detected = sum(counts.get(s, 0) for s in DETECTED)
    checked = sum(v for k, v in counts.items() if k not in ("not checked", "skipped"))
    return detected, checked, (100.0 * detected / checked if checked else None)


def render(payload: dict) -> str:
    modules = payload["data"]["modules"]
    lines = [f"- Machine: {payload['machine']}",
             f"- Date: {payload['date']}; command: `make mutation` then `{payload['command']}` (re-render with "
             "`python benchmarks/mutation.py --render-only`)",
             "- Method: mutmut 3 (`[tool.mutmut]` in pyproject.toml), each mutant against the tests that cover its "
             "function, `pytest -x`, timeout 3x their duration + 5 s. Score = (killed + timeout) / checked. "
             "Target: >= 90% per module.",
             "",
             "| module | mutants | checked | killed | timeout | survived | no tests | not checked | score | killed only |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for module, m in modules.items():
        c = m["counts"]
        detected, checked, pct = score(c)
        total = sum(c.values())
        strict = "-" if not checked else f"{100.0 * c.get('killed', 0) / checked:.1f}%"
        lines.append(f"| `{module}` | {total:,} | {checked:,} | {c.get('killed', 0):,} | {c.get('timeout', 0):,} | "
                     f"{c.get('survived', 0):,} | {c.get('no tests', 0):,} | {c.get('not checked', 0):,} | "
                     f"{'-' if pct is None else f'{pct:.1f}%'} | {strict} |")
    lines.append("")
    lines.append("Surviving mutants (`mutmut show NAME` prints each):")
    lines.append("")
    for module, m in modules.items():
        if m["survivors"]:
            names = [s.split(".")[-1] + (f" (equivalent: {EQUIVALENT[s]})" if s in EQUIVALENT else "")
                     for s in m["survivors"]]
            lines.append(f"- `{module}` ({len(names)}): " + ", ".join(names))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=Path, default=ROOT / "mutants", help="mutmut's work folder")
    add_output_args(ap)
    args = ap.parse_args(argv)
    out = Output.from_args(args)
    if not out.render_only and not args.mutants.is_dir():
        raise SystemExit(f"{args.mutants} not found: run `make mutation` (or `mutmut run`) first")
    return out.publish(KEY, TITLE, render, lambda: collect(args.mutants))


if __name__ == "__main__":
    raise SystemExit(main())
