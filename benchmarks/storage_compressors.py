"""Storage part 4: zip (the paper's measure) vs zstd levels 3 and 19: sizes (``measure_arrays``) and
compress / decompress throughput of the same ``.npy`` serialisations (zlib level 6 raw deflate, as
zipfile uses it; zstandard one frame per array), one thread. Sizes are deterministic; the
throughput figures are timings (run on a quiet machine).

Usage::

    .venv/bin/python benchmarks/storage_compressors.py                # saves results/storage-compressors.json,
                                                                      # re-renders the storage section
    .venv/bin/python benchmarks/storage_compressors.py --render-only  # re-render from the saved JSON
    .venv/bin/python benchmarks/storage_compressors.py --quick        # tiny settings, prints only

Method and data: see the docstring of ``benchmarks/storage.py``.
"""

from __future__ import annotations

import time
import zlib

import zstandard

from storage_common import (_npy, base1k_images, c10_labels, d1k_logits, ipc_set, load_images, part_main, settings,
                            softmax_t)
from ladd_format.codecs import make_codec
from ladd_format.size import measure_arrays

import numpy as np

NAME = "storage-compressors"


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def speed_rows(sets: dict[str, tuple[np.ndarray, np.ndarray, dict, int]], repeats: int,
               levels: tuple[int, ...] = (3, 19)) -> list[dict]:
    rows = []
    for set_name, (images, labels, dense, c) in sets.items():
        members = [_npy(images), _npy(labels.astype("<i8"))] + [_npy(v) for v in dense.values()]
        raw = sum(map(len, members))
        for method, level in (("zip", None),) + tuple(("zstd", lv) for lv in levels):
            r = measure_arrays(images, labels, dense, c, method=method, level=level)
            if method == "zip":
                def comp():
                    out = []
                    for m in members:
                        z = zlib.compressobj(6, zlib.DEFLATED, -15)
                        out.append(z.compress(m) + z.flush())
                    return out
                packed = comp()

                def decomp():
                    for m in packed:
                        zlib.decompressobj(-15).decompress(m)
            else:
                cctx = zstandard.ZstdCompressor(level=level)

                def comp(cctx=cctx):
                    return [cctx.compress(m) for m in members]
                packed = comp()
                dctx = zstandard.ZstdDecompressor()

                def decomp(dctx=dctx, packed=packed):
                    for m in packed:
                        dctx.decompress(m)
            reps = 1 if level == 19 else repeats
            tc = _best(comp, reps)
            td = _best(decomp, repeats)
            rows.append({"set": set_name, "method": "zip (deflate 6)" if method == "zip" else f"zstd {level}",
                         "raw": raw, "base": r.base_bytes, "dla": r.dla_bytes, "dense": r.dense_bytes,
                         "pct": r.overhead_pct, "comp": raw / tc / 1e6, "decomp": raw / td / 1e6})
    return rows






def measure(quick: bool, fresh: bool = False) -> dict:
    t_start = time.perf_counter()
    st = settings(quick)
    ipcs = st["ipcs"]
    data = load_images()
    timing: dict = {}
    _, dense20 = c10_labels(data, quick, timing, fresh)
    d1k = d1k_logits(quick, timing, fresh)
    m1k = min(160, st["d1k_num"])
    base128 = base1k_images(data, m1k)
    labels1k = np.arange(m1k) % 1000
    probs1 = softmax_t(d1k["logits"], 1.0)[:m1k]
    t = time.perf_counter()
    i10 = min(10, max(ipcs))
    im10, lb10, de10 = ipc_set(data, dense20, i10)
    speed_sets = {
        f"C=10, IPC {i10}, float32 dense": (im10, lb10, {"probs": de10}, 10),
        f"C=10, IPC {i10}, uint8 dense": (im10, lb10, make_codec("uint8").encode(de10), 10),
        f"C=1000, 128 px, M={m1k}, float32 dense": (base128, labels1k, {"probs": probs1}, 1000),
        f"C=1000, 128 px, M={m1k}, topk k=20 float16": (base128, labels1k,
                                                         make_codec("topk", k=20, values="float16").encode(probs1), 1000),
    }
    if quick:
        speed_sets = {k: v for k, v in speed_sets.items() if "float32" in k and "C=10," in k}
    speed = speed_rows(speed_sets, repeats=1 if quick else 3, levels=(3,) if quick else (3, 19))
    timing["zip vs zstd"] = time.perf_counter() - t
    return {"quick": quick, "repeats": 1 if quick else 3, "speed": speed,
            "elapsed": time.perf_counter() - t_start, "timing": timing}


def main(argv=None) -> int:
    return part_main(NAME, __doc__, measure, argv)


if __name__ == "__main__":
    raise SystemExit(main())
