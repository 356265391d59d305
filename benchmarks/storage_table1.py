"""Storage part 1: the paper's Table 1 reproduced (C = 10, 128 px, N = 5, R = 0.625, float32, zip),
and the `ladd size` check on written D_LA files (part 0).

Usage::

    .venv/bin/python benchmarks/storage_table1.py                # saves results/storage-table1.json,
                                                                 # re-renders the storage section
    .venv/bin/python benchmarks/storage_table1.py --render-only  # re-render from the saved JSON
    .venv/bin/python benchmarks/storage_table1.py --quick        # tiny settings, prints only

Method and data: see the docstring of ``benchmarks/storage.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from storage_common import (SUBSETS, c10_labels, check_file, ipc_set, ladd, load_images, log, part_main, result_dict,
                            settings, write_dla)
from ladd_format.codecs import make_codec
from ladd_format.size import measure_arrays

NAME = "storage-table1"


def label_stats(p: np.ndarray) -> dict:
    rows = p.reshape(-1, p.shape[-1]).astype(np.float64)
    return {"entropy": float((-(rows * np.log(np.clip(rows, 1e-300, 1))).sum(-1)).mean())}


def measure(quick: bool, fresh: bool = False) -> dict:
    t_start = time.perf_counter()
    st = settings(quick)
    ipcs = st["ipcs"]
    data = load_images()
    timing: dict = {}
    _, dense20 = c10_labels(data, quick, timing, fresh)
    log(f"labels: {time.perf_counter() - t_start:.0f} s")

    t1 = []
    for ipc in ipcs:
        images, labels, dense = ipc_set(data, dense20, ipc)
        r = measure_arrays(images, labels, {"probs": dense}, 10)
        t1.append({**result_dict(r), "ipc": ipc, "images": int(images.shape[0])})   # ipc: the set's, an int
    _, _, ipc_max_dense = ipc_set(data, dense20, max(ipcs))
    real_rows = np.concatenate([dense20[(s, 0)] for s in SUBSETS])
    acc_real = float(np.mean([(dense20[(s, 0)].argmax(-1) == np.arange(10)[:, None]).mean() for s in SUBSETS]))

    # part 0: the `ladd size` check on written files
    mism, checked = [], []
    ladd_text = ""
    with tempfile.TemporaryDirectory(prefix="ladd-storage-") as tmp:
        chk_ipc = ipcs[1]
        images, labels, dense = ipc_set(data, dense20, chk_ipc)
        for cname, codec in (("float32", make_codec("float32")), ("uint8", make_codec("uint8"))):
            path = Path(tmp) / f"imagenette-shape-ipc{chk_ipc}-{cname}.dla.h5"
            write_dla(path, images, labels, dense, codec, 10, chk_ipc, "convnet-d5 (width 64)")
            mism += check_file(path, images, labels, codec.encode(dense), 10, chk_ipc, st["zlevels"])
            checked.append(path.name)
            if cname == "float32":
                ladd_text = CliRunner().invoke(ladd, ["size", str(path)]).output.replace(str(path), path.name)
    timing_total = time.perf_counter() - t_start
    return {"quick": quick, "ipcs": list(ipcs), "steps": st["steps"], "t1": t1, "acc_real": acc_real,
            "entropy_real": label_stats(real_rows)["entropy"], "entropy_max": label_stats(ipc_max_dense)["entropy"],
            "check": {"files": checked, "mismatches": mism, "methods": "zip, zstd 3" if quick else "zip, zstd 3, zstd 19",
                      "ladd_size_text": ladd_text},
            "elapsed": timing_total, "timing": timing}


def main(argv=None) -> int:
    return part_main(NAME, __doc__, measure, argv)


if __name__ == "__main__":
    raise SystemExit(main())
