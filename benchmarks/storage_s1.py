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

from storage_common import (GRID_N, GRID_R, N0, PAPER_OVERHEAD, PAPER_S1, R0, _npy, boxes, c10_labels, fmt_pct,
                            label_pass, load_images, log, part_main, settings, subimages)
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


def unpack(d: dict) -> tuple[dict, list[dict]]:
    """``grid[(n, r)]`` and the accountings with ``pct[n]``, from the JSON data."""
    grid = {(g["n"], g["r"]): g["pct"] for g in d["grid"]}
    s1rows = [{**r, "pct": {int(n): v for n, v in r["pct"]}} for r in d["s1rows"]]
    return grid, s1rows


def render_part(payload: dict) -> list[str]:
    d = payload["data"]
    grid_n, grid_r = d["grid_n"], d["grid_r"]
    grid, s1rows = unpack(d)
    out: list[str] = []
    A = out.append
    A("### 2. Overhead vs N and R (Table S1 grid; 10 real ImageFruit images, float32, zip)")
    A("")
    A("| N \\ R | " + " | ".join(str(r) for r in grid_r) + " | paper S1 |")
    A("|---:|" + "---:|" * (len(grid_r) + 1))
    for n in grid_n:
        A(f"| {n} | " + " | ".join(fmt_pct(grid[(n, r)]) for r in grid_r) + f" | {PAPER_S1[n]}% |")
    A("")
    A("The overhead is N² x C float32 values per image against one image; R changes which pixels each sub-image "
      "sees, hence the label values, but not their count, so it moves the overhead only through how well the "
      "probabilities deflate (a few hundredths of a point). The paper's S1 figures are about 0.82% x N² "
      f"(7.5/9 = {7.5 / 9:.3f}, 20.7/25 = {20.7 / 25:.3f}, 40.2/49 = {40.2 / 49:.3f}, 66.3/81 = {66.3 / 81:.3f}) "
      f"against 2.5/25 = 0.100 in Table 1: the two tables differ by a factor of {20.7 / 2.5:.1f} at N = 5.")
    A("")
    A("Accountings tried against S1 (same images and labels, R = 0.625; RMS = root mean square distance to the "
      "S1 figures, in points):")
    A("")
    A("| accounting | what is stored | " + " | ".join(f"N={n}" for n in grid_n) + " | RMS vs S1 |")
    A("|---|---|" + "---:|" * (len(grid_n) + 1))
    A("| paper Table S1 | - | " + " | ".join(f"{PAPER_S1[n]}%" for n in grid_n) + " | - |")
    for r in s1rows:
        A(f"| {r['name']} | {r['how']} | " + " | ".join(fmt_pct(r["pct"][n], 1) for n in grid_n)
          + f" | {r['rms']:.1f} |")
    best = sorted((r for r in s1rows if not r["name"].startswith("spec")), key=lambda r: r["rms"])
    A("")
    if best[0]["rms"] <= 1.0:
        verdict = (f"S1 is reproduced, within {best[0]['rms']:.1f} points RMS, by \"{best[0]['name']}\", which is "
                   "not the accounting of Table 1's 2.5%: the two tables cannot share one accounting.")
    else:
        verdict = (f"Closest: \"{best[0]['name']}\" (RMS {best[0]['rms']:.1f} points), then \"{best[1]['name']}\" "
                   f"({best[1]['rms']:.1f}); none reproduces S1. S1 cannot be reproduced from what the paper "
                   "states: its figures are ~8.3x Table 1's at N = 5 for the same setting, so at most one of the two "
                   "tables follows the paper's described measure, and ours (spec section 7) agrees with Table 1 "
                   "within the image-compressibility gap of part 1, not with S1. A factor of 8 is what counting "
                   "label bits against image bytes would give, and per-sub-image label files or JPEG-stored images "
                   "land in the same range, but the paper gives no evidence for any of them.")
    pred = {n: 8 * PAPER_OVERHEAD * n * n / 25 for n in PAPER_S1}
    rms8 = float(np.sqrt(np.mean([(pred[n] - PAPER_S1[n]) ** 2 for n in PAPER_S1])))
    verdict += (" Read against the paper's own Table 1, S1 is 8 x its 2.5% scaled by N²/25: "
                + "/".join(f"{pred[n]:.1f}" for n in PAPER_S1) + "% against "
                + "/".join(str(PAPER_S1[n]) for n in PAPER_S1)
                + f"% (RMS {rms8:.1f} points), as if S1 counted the labels in bits and Table 1 in bytes; this fits, "
                "but is arithmetic on the paper's numbers, not evidence of what it did.")
    A(verdict)
    A("")
    A("![overhead vs N](plots/storage_overhead_vs_n.png)")
    A("")

    return out


def plot(payload: dict, folder: Path) -> None:
    d = payload["data"]
    if d["quick"]:
        return
    folder.mkdir(parents=True, exist_ok=True)
    grid, s1rows = unpack(d)
    plot_overhead(grid, s1rows, folder / "storage_overhead_vs_n.png")


def main(argv=None) -> int:
    return part_main(NAME, __doc__, measure, render_part, argv)


if __name__ == "__main__":
    raise SystemExit(main())
