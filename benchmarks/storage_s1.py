"""Storage part 2: overhead vs N and R (the paper's Table S1 grid) on the 10 real ImageFruit images
with the ImageFruit labeler, float32, zip; and the accountings of "storage" tried against the
paper's S1 figures. Draws plots/storage_overhead_vs_n.png.

Usage::

    .venv/bin/python benchmarks/storage_s1.py                # saves results/storage-s1.json,
                                                             # re-renders the storage section
    .venv/bin/python benchmarks/storage_s1.py --render-only  # re-render from the saved JSON
    .venv/bin/python benchmarks/storage_s1.py --quick        # tiny settings, prints only

Method and data: see the docstring of ``benchmarks/storage.py``.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from storage_common import (GRID_N, GRID_R, N0, PAPER_OVERHEAD, PAPER_S1, R0, _npy, boxes, c10_labels, label_pass,
                            load_images, log, part_main, settings, subimages, unpack_s1)
from ladd_format.size import measure_arrays

NAME = "storage-s1"


def _pt(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    torch.save(torch.from_numpy(np.ascontiguousarray(a).copy()), buf)
    return buf.getvalue()


def zip_bytes(members: list[tuple[str, bytes]]) -> int:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return len(buf.getvalue())


def image_files(images: np.ndarray, fmt: str, quality: int | None = None) -> list[tuple[str, bytes]]:
    from PIL import Image

    out = []
    for i, im in enumerate(images):
        buf = io.BytesIO()
        pil = Image.fromarray(np.ascontiguousarray(im.transpose(1, 2, 0)))
        if fmt == "JPEG":
            pil.save(buf, "JPEG", quality=quality)
        else:
            pil.save(buf, "PNG", optimize=True)
        out.append((f"images/{i:05d}.{fmt.lower()}", buf.getvalue()))
    return out


def s1_accountings(images: np.ndarray, labels: np.ndarray, dense_by_n: dict[int, np.ndarray],
                   subs_by_n: dict[int, np.ndarray]) -> list[dict]:
    """Overhead % at each N under several accountings of what "storage" could have meant."""
    lab = ("labels.npy", _npy(labels.astype("<i8")))
    npy_base = [("images.npy", _npy(images)), lab]
    base_npy = zip_bytes(npy_base)
    rows = []

    def add(name, how, fn):
        rows.append({"name": name, "how": how, "pct": {n: fn(n) for n in dense_by_n}})

    spec = {n: measure_arrays(images, labels, {"probs": d}, 10).overhead_pct for n, d in dense_by_n.items()}
    add("spec section 7 (measured above)", "float32 (M, N², C) as one .npy member; images as one uint8 .npy",
        lambda n: spec[n])
    add("float64 labels", "same, labels as float64 (NumPy's default dtype)",
        lambda n: 100 * (zip_bytes(npy_base + [("dense.npy", _npy(dense_by_n[n].astype("<f8")))]) - base_npy) / base_npy)
    add("one .npy per sub-image", "a (C,) float32 .npy member per sub-image",
        lambda n: 100 * (zip_bytes(npy_base + [(f"dense/{i:05d}_{j:03d}.npy", _npy(d))
                                               for i, row in enumerate(dense_by_n[n]) for j, d in enumerate(row)])
                         - base_npy) / base_npy)
    add("one torch.save per image", "a torch.save'd (N², C) float32 tensor per image as a member",
        lambda n: 100 * (zip_bytes(npy_base + [(f"dense/{i:05d}.pt", _pt(row))
                                               for i, row in enumerate(dense_by_n[n])]) - base_npy) / base_npy)
    add("one torch.save per sub-image", "a torch.save'd (C,) float32 tensor per sub-image as a member",
        lambda n: 100 * (zip_bytes(npy_base + [(f"dense/{i:05d}_{j:03d}.pt", _pt(d))
                                               for i, row in enumerate(dense_by_n[n]) for j, d in enumerate(row)])
                         - base_npy) / base_npy)
    for fmt, q in (("PNG", None), ("JPEG", 95), ("JPEG", 75)):
        files = image_files(images, fmt, q) + [lab]
        base = zip_bytes(files)
        label = "PNG" if fmt == "PNG" else f"JPEG q={q}"
        add(f"images as {label} files", f"each image a {label} file in the zip; labels as in spec section 7",
            lambda n, files=files, base=base: 100 * (zip_bytes(files + [("dense.npy", _npy(dense_by_n[n]))]) - base) / base)
    add("bits counted as bytes", "8 x the spec figure (label size in bits over image size in bytes)",
        lambda n: 8 * spec[n])
    add("materialised sub-images", "N² uint8 sub-images per image instead of labels",
        lambda n: 100 * (zip_bytes(npy_base + [("subimages.npy", _npy(subs_by_n[n]))]) - base_npy) / base_npy)
    for r in rows:
        r["rms"] = float(np.sqrt(np.mean([(r["pct"][n] - PAPER_S1[n]) ** 2 for n in PAPER_S1 if n in r["pct"]])))
    return rows




def plot_overhead(grid: dict, s1rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in GRID_R:
        ax.plot(GRID_N, [grid[(n, r)] for n in GRID_N], "o-", ms=4, label=f"measured, R = {r}")
    ax.plot(list(PAPER_S1), list(PAPER_S1.values()), "ks--", label="paper Table S1")
    ax.plot([5], [PAPER_OVERHEAD], "r*", ms=12, label="paper Table 1 (N = 5)")
    best = min((r for r in s1rows if not r["name"].startswith("spec")), key=lambda r: r["rms"])
    ax.plot(list(best["pct"]), list(best["pct"].values()), "x:", color="grey",
            label=f"closest accounting: {best['name']}")
    ax.set_yscale("log")
    ax.set_xlabel("grid size N (N² sub-images per image)")
    ax.set_ylabel("dense-label overhead, % of base (zip)")
    ax.set_xticks(GRID_N)
    ax.set_title("Overhead vs N: 10 real MTT images, 128 px, C = 10, float32\n(the four measured R lines overlap)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)



def measure(quick: bool, fresh: bool = False) -> dict:
    t_start = time.perf_counter()
    st = settings(quick)
    grid_n, grid_r = st["grid_n"], st["grid_r"]
    data = load_images()
    timing: dict = {}
    models, dense20 = c10_labels(data, quick, timing, fresh)
    t = time.perf_counter()
    fruit = data["imagefruit"]
    grid, dense_by_n, subs_by_n = [], {}, {}
    for n in grid_n:
        for ratio in grid_r:
            d = dense20[("imagefruit", 0)] if (n, ratio) == (N0, R0) else label_pass(models["imagefruit"], fruit, n, ratio)
            grid.append({"n": n, "r": ratio, "pct": measure_arrays(fruit, np.arange(10), {"probs": d}, 10).overhead_pct})
            if ratio == R0:
                dense_by_n[n] = d
                subs = subimages(torch.from_numpy(fruit).float(), boxes(128, 128, n, R0))
                subs_by_n[n] = subs.round().clamp(0, 255).to(torch.uint8).numpy()
    timing["label S1 grid"] = time.perf_counter() - t
    log(f"S1 grid: {time.perf_counter() - t_start:.0f} s")
    s1rows = s1_accountings(fruit, np.arange(10), dense_by_n, subs_by_n)
    for r in s1rows:      # JSON: the N of each figure as a list, not dict keys
        r["pct"] = [[n, v] for n, v in r["pct"].items()]
    log(f"S1 accountings: {time.perf_counter() - t_start:.0f} s")
    return {"quick": quick, "grid_n": list(grid_n), "grid_r": list(grid_r), "grid": grid, "s1rows": s1rows,
            "elapsed": time.perf_counter() - t_start, "timing": timing}


def plot(payload: dict, folder: Path) -> None:
    d = payload["data"]
    if d["quick"]:
        return
    folder.mkdir(parents=True, exist_ok=True)
    grid, s1rows = unpack_s1(d)
    plot_overhead(grid, s1rows, folder / "storage_overhead_vs_n.png")


def main(argv=None) -> int:
    return part_main(NAME, __doc__, measure, argv)


if __name__ == "__main__":
    raise SystemExit(main())
