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

from storage_common import (N0, PAPER_OVERHEAD, PAPER_T1, R0, SUBSETS, c10_labels, check_file, fmt_pct,  # noqa: F401
                            ipc_set, ladd, load_images, log, part_main, result_dict, settings, write_dla)
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


def derived(d: dict) -> dict:
    """Figures the text and the targets use: image deflate ratios and what 2.5% would need."""
    t1 = d["t1"]
    img_ratio = [r["images_bytes"] / (r["images"] * 3 * 128 * 128) for r in t1]
    raw_ratio = 100 * 25 * 10 * 4 / (3 * 128 * 128)
    dense_ratio = float(np.mean([r["dense_bytes"] / (r["images"] * 1000) for r in t1]))
    return {"img_ratio": img_ratio, "raw_ratio": raw_ratio, "dense_ratio": dense_ratio,
            "need": raw_ratio * dense_ratio / PAPER_OVERHEAD, "ovs": [r["overhead_pct"] for r in t1]}


def render_part(payload: dict) -> list[str]:
    d = payload["data"]
    out: list[str] = []
    A = out.append
    t1, ipcs = d["t1"], d["ipcs"]
    A("### 1. Table 1 reproduced (C = 10, 128 px, N = 5, R = 0.625, float32, zip)")
    A("")
    A("Images: the 20 real MTT images (ImageFruit, ImageSquawk; one per class). Class c at IPC k holds k images; "
      "the j-th is variant j // 2 of the real class-c image of ImageFruit (j even) or ImageSquawk (j odd): "
      "variants 0-3 are the image itself, its horizontal flip, its transpose and its flipped transpose, 4-7 "
      "their negatives (255 - x), 8-9 (IPC 20 only) vertical flips of 0-1. They are exact rearrangements of "
      "real pixels (or a byte bijection of them), so each compresses like a real MTT image; variants 0-7 share "
      "no pixel row (a contiguous byte run), so no compressor can reuse one's bytes for another, and 8-9, whose "
      "rows are those of 0-1 reordered, lie 7.5 MiB after them, far beyond deflate's 32 KiB window. IPC 1 is "
      "the 10 ImageFruit images. Dense labels: a labeler pass over every image (variants included) by its "
      f"subset's labeler (size_mtt.py's: ConvNet-D5 width 64, {d['steps']} SGD steps on random crops of the subset's "
      f"10 images; top-1 of the real images' sub-images = the image's class: {d['acc_real']:.0%}; mean entropy "
      f"{d['entropy_real']:.2f} nats on the real images, {d['entropy_max']:.2f} on the IPC-{max(ipcs)} set).")
    A("")
    A("| IPC | images | base D bytes | D_LA bytes | dense bytes | overhead | paper | IPC+1 | paper IPC+1 |")
    A("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    paper = {int(k): v for k, v in PAPER_T1.items()}
    for r in t1:
        ipc, m = int(r["ipc"]), r["images"]
        A(f"| {ipc} | {m} | {r['base_bytes']:,} | {r['dla_bytes']:,} | {r['dense_bytes']:,} | {fmt_pct(r['overhead_pct'])} | "
          f"{PAPER_OVERHEAD if ipc in paper else '-'}{'%' if ipc in paper else ''} | "
          f"{fmt_pct(r['ipc_plus_one_pct'], 1)} | {str(paper[ipc]) + '%' if ipc in paper else '-'} |")
    A("")
    x = derived(d)
    img_ratio, raw_ratio, dense_ratio, ovs = x["img_ratio"], x["raw_ratio"], x["dense_ratio"], x["ovs"]
    A(f"Why the overhead does not depend on IPC: both the dense labels (1,000 raw bytes per image) and the images "
      f"(49,152 raw bytes) cost a fixed amount per image: deflate compresses each image on its own (its 32 KiB "
      f"window is smaller than one 48 KiB image) to {min(img_ratio):.1%}-{max(img_ratio):.1%} of raw, and the "
      f"float32 probabilities to {dense_ratio:.1%}, so overhead = {raw_ratio:.2f}% (raw ratio) x "
      f"{dense_ratio:.3f} / {np.mean(img_ratio):.3f} = {raw_ratio * dense_ratio / np.mean(img_ratio):.2f}%, at "
      f"every IPC (measured {min(ovs):.2f}-{max(ovs):.2f}%). IPC+1 is 1/IPC of the base by definition "
      "(100.0/20.0/10.0/5.0%); the paper's 100.1% at IPC 1 is that plus the labels' bytes. Its 20.7% at IPC 5 "
      "breaks the 100/IPC pattern of its own row (20.0% expected) and equals its Table S1 figure for N = 5, "
      "which suggests a copied cell.")
    A("")
    A(f"Against the paper's 2.5%: {np.mean(ovs):.2f}% on average ({np.mean(ovs) - PAPER_OVERHEAD:+.2f} points). "
      f"With labels compressing as here, 2.5% needs images that deflate to {x['need']:.1%} of raw instead of "
      f"{np.mean(img_ratio):.1%}: the paper's ImageNette distilled images (not available offline) would have to be "
      "smoother than these MTT ImageFruit/ImageSquawk ones, or its archive held per-label bytes it does not "
      "describe (part 2 measures such accountings).")
    A("")
    return out


def main(argv=None) -> int:
    return part_main(NAME, __doc__, measure, render_part, argv)


if __name__ == "__main__":
    raise SystemExit(main())
