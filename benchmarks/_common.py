"""Shared by the benchmark scripts: the machine line, the results pages' section writer (each section
on its family's page in benchmarks/RESULTS/, indexed by benchmarks/RESULTS.md), and the measured data
saved as JSON (``save_json`` / ``load_json``, ``--render-only``)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"          # the index of the results pages
PAGES_DIR = Path(__file__).resolve().parent / "RESULTS"           # one page per benchmark family

# Which page holds each section (``<!-- key:start -->`` ... ``<!-- key:end -->``) a benchmark writes;
# a new benchmark adds its keys here and its page to the index, RESULTS.md.
PAGES = {
    "storage": "storage.md", "size_mtt": "storage.md",
    "container_io": "container-io.md", "row_checks": "container-io.md",
    "convert_speed": "conversion.md",
    "torch_loader": "loader.md", "torch_loader_gpu": "loader.md",
    "label_pass": "label-pass.md", "label_pass_gpu": "label-pass.md",
    "students_summary": "students.md", "students_ipc": "students.md", "students_loss": "students.md",
    "students_codec": "students.md", "students_arch": "students.md", "students_epochs": "students.md",
    "students_ipc_gpu": "students.md", "students_archfull_gpu": "students.md",
    "students_archloss_gpu": "students.md",
    "students_c1000": "students-c1000.md", "students_c1000_t025": "students-c1000.md",
    "stream_codecs": "stream-codecs.md",
    "stream_tail_rank": "stream-tail-rank.md",
    "relabel_speed": "relabel-speed.md", "relabel_speed_gpu": "relabel-speed.md",
    "stream_storage": "stream-storage.md", "stream_students": "stream-students.md",
    "stream_students_t1": "stream-students.md", "stream_replay": "stream-replay.md",
    "demo_students": "demo-students.md",
    "ladd_memory": "memory.md",
    "scale": "scale.md", "scale_ipc50": "scale.md",
    "adversarial": "adversarial.md",
    "planted_bugs": "planted-bugs.md",
    "mutation": "mutation.md",
    "cli_startup": "cli-startup.md",
}


def page(key: str) -> Path:
    """The results page that holds section ``key``: PAGES[key], else the page of the longest key of
    PAGES that ``key`` extends (``students_ipc_h200`` goes where ``students_ipc`` is)."""
    known = [k for k in PAGES if key == k or key.startswith(k + "_")]
    if not known:
        raise SystemExit(f"benchmarks/_common.py: PAGES names no results page for the section {key!r}")
    return PAGES_DIR / PAGES[max(known, key=len)]


@dataclass
class Timing:
    """Repeated timings in seconds."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)


def machine() -> str:
    """One line naming the CPU (with the flags that matter for hashing and kernels), the cores and
    the library versions that matter for timings."""
    import h5py
    import numpy as np
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        info = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
        if m:
            cpu = m.group(1).strip()
        f = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
        flags = set(f.group(1).split()) if f else set()
        shown = [x for x in ("sha_ni", "avx2", "avx512f") if x in flags]
        if shown:
            cpu += f" [{' '.join(shown)}]"
    except OSError:
        pass
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    return (f"{cpu}, {cores} logical cores ({usable} usable), {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, numpy {np.__version__}, h5py {h5py.__version__} "
            f"(HDF5 {h5py.version.hdf5_version}), torch {torch.__version__} ({torch.get_num_threads()} threads)")


def gpu_line() -> str | None:
    """The CUDA device the run used, or None where CUDA is not available (no GPU figure is reported)."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return (f"{torch.cuda.get_device_name(0)} ({props.total_memory / 2**30:.0f} GiB, "
            f"{props.multi_processor_count} SMs), CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
            f"TF32 in convolutions {'on' if torch.backends.cudnn.allow_tf32 else 'off'} (torch's default)")


def update_results(key: str, section: str, path: Path | None = None) -> None:
    """Replace (or append) the section delimited by ``<!-- key:start -->`` / ``<!-- key:end -->`` in
    ``path`` (default: the section's results page, :func:`page`); ``section`` is the whole text
    between the markers, title included."""
    path = page(key) if path is None else Path(path)
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{section.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in text and end in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"updated {path}")


# --------------------------------------------------------------------------- measured data as JSON
#
# A benchmark measures into plain data (dicts, lists, numbers, strings), saves it with save_json to
# benchmarks/results/<name>.json and renders its results page section(s) from what load_json gives back,
# so `--render-only` re-renders the very same text from the saved file without measuring.

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def command_line(argv: list[str] | None = None) -> str:
    """The command that ran this script, as ``python benchmarks/<script>.py [args]``."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0])
    try:
        script = script.resolve().relative_to(Path(__file__).resolve().parent.parent)
    except ValueError:
        pass
    return " ".join(["python", str(script), *(shlex.quote(a) for a in argv[1:])])


def _plain(x):
    """``json.dump`` default: numpy scalars and arrays, paths and Timing as plain values."""
    if hasattr(x, "tolist"):          # numpy scalar or array
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, Timing):
        return {"samples": list(x.samples)}
    if isinstance(x, (set, tuple)):
        return list(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def revive_timings(obj):
    """What load_json gives back with every ``{"samples": [...]}`` turned back into a Timing."""
    if isinstance(obj, dict):
        if set(obj) == {"samples"}:
            return Timing(list(obj["samples"]))
        return {k: revive_timings(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [revive_timings(v) for v in obj]
    return obj


def save_json(name: str, data, folder: Path | None = None, *, machine_line: str | None = None,
              command: str | None = None, extra: dict | None = None) -> dict:
    """Write ``{"name", "machine", "command", "date", "data"}`` to ``folder/<name>.json`` (default
    benchmarks/results) and return it as read back (so rendering from it equals rendering after
    ``--render-only``: dict keys are strings, tuples lists)."""
    folder = RESULTS_DIR if folder is None else Path(folder)
    payload = {"name": name,
               "machine": machine() if machine_line is None else machine_line,
               "command": command_line() if command is None else command,
               "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               **(extra or {}),
               "data": data}
    text = json.dumps(payload, indent=1, default=_plain, allow_nan=True)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(text + "\n")
    print(f"saved {path}", file=sys.stderr)
    return json.loads(text)


def load_json(name: str, folder: Path | None = None) -> dict:
    """The payload save_json wrote for ``name`` (``payload["data"]`` is the measured data)."""
    folder = RESULTS_DIR if folder is None else Path(folder)
    path = folder / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"{path} not found: run the benchmark without --render-only first")
    return json.loads(path.read_text())


def add_output_args(parser) -> None:
    """``--render-only``, ``--data-dir`` and ``--results`` (see :class:`Output`)."""
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: re-render the results page's section(s) from the saved JSON")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"folder of the measured data as JSON (default {RESULTS_DIR.relative_to(RESULTS_DIR.parent.parent)})")
    parser.add_argument("--results", type=Path, default=None,
                        help="the Markdown file to update (default: each section's page in benchmarks/RESULTS/)")


@dataclass
class Output:
    """Where a run saves its JSON and which Markdown file it updates (``results``; None: each section's
    page, :data:`PAGES`). A ``--quick`` run writes nothing unless ``--data-dir`` or ``--results`` is
    given (then it writes there, e.g. to a temporary folder)."""

    data_dir: Path
    results: Path | None
    write: bool
    render_only: bool

    @classmethod
    def from_args(cls, args) -> "Output":
        explicit = args.data_dir is not None or args.results is not None
        quick = bool(getattr(args, "quick", False))
        return cls(data_dir=args.data_dir or RESULTS_DIR, results=args.results,
                   write=explicit or not quick, render_only=args.render_only)

    def save(self, name: str, data, **kw) -> dict:
        """save_json where this run writes; otherwise the same round trip in memory."""
        if self.write:
            return save_json(name, data, self.data_dir, **kw)
        kw.setdefault("machine_line", machine())
        kw.setdefault("command", command_line())
        with tempfile.TemporaryDirectory() as tmp:
            return save_json(name, data, Path(tmp), **kw)

    def load(self, name: str) -> dict:
        return load_json(name, self.data_dir)

    def update(self, key: str, section: str) -> None:
        if self.write:
            update_results(key, section, self.results)

    def publish(self, name: str, title: str, render, measure=None, payload: dict | None = None) -> int:
        """The end of every benchmark's ``main``: the payload (given; or loaded with ``--render-only``;
        or ``measure()`` saved), rendered, printed, and written as the section ``name``
        under ``title`` (on its page). Returns the exit status 0."""
        if payload is None:
            payload = self.load(name) if self.render_only else self.save(name, measure())
        section = render(payload)
        section = section[0] if isinstance(section, tuple) else section
        print(section)
        self.update(name, f"{title}\n\n{section}")
        return 0
