"""Shared by the benchmark scripts: the machine line and the RESULTS.md section writer."""

from __future__ import annotations

import os
import platform
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


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


def update_results(key: str, section: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section delimited by ``<!-- key:start -->`` / ``<!-- key:end -->``;
    ``section`` is the whole text between them, title included."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{section.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in text and end in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"updated {path}")
