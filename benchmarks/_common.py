"""Shared by the benchmark scripts: the machine line and the RESULTS.md section writer."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line naming the CPU, cores and the library versions that matter for timings."""
    import h5py
    import numpy as np
    import torch

    return (f"{cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, numpy {np.__version__}, "
            f"h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")


def update_results(key: str, title: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section delimited by ``<!-- key:start -->`` / ``<!-- key:end -->``."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{title}\n\n{body}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in text and end in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"updated {path}")
