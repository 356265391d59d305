"""Storage part 3: codecs of the dense labels, bytes against fidelity, for C = 10 (the labels of
part 1's IPC-20 set) and C = 1000 (the digits-1000 proxy labeler, at T = 1, 0.5, 0.25); and the
`ladd size` check on a C = 1000 D_LA file. Draws plots/storage_codecs.png.

Usage::

    .venv/bin/python benchmarks/storage_codecs.py                # saves results/storage-codecs.json,
                                                                 # re-renders the storage section
    .venv/bin/python benchmarks/storage_codecs.py --render-only  # re-render from the saved JSON
    .venv/bin/python benchmarks/storage_codecs.py --quick        # tiny settings, prints only

Method and data: see the docstring of ``benchmarks/storage.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from storage_common import (N0, SUBSETS, base1k_images, c10_labels, check_file, d1k_logits, fidelity, ipc_set,
                            label_stats, load_images, log, part_main, settings, softmax_t, unpack_codecs, write_dla)
from ladd_format.codecs import make_codec
from ladd_format.labeler.sources import resize_uint8
from ladd_format.size import measure_arrays

NAME = "storage-codecs"


def codec_list(num_classes: int, extra_k: tuple[int, ...] = ()) -> list[tuple[str, object]]:
    out = [("float32", make_codec("float32")), ("float16", make_codec("float16")), ("uint8", make_codec("uint8"))]
    for k in (5, 10, 20) + extra_k:
        if k >= num_classes:
            continue        # k = C stores every class plus its index: never smaller than dense
        for values in ("uint8", "float16"):
            out.append((f"topk k={k} {values}", make_codec("topk", k=k, values=values)))
    return out


def codec_rows(probs: np.ndarray, images: dict[str, np.ndarray], labels: np.ndarray, num_classes: int,
               codecs, fid_probs: np.ndarray | None = None) -> list[dict]:
    """For each codec: dense bytes per image and overhead on each image set (zip), and fidelity on
    ``fid_probs`` (default ``probs``)."""
    fid_probs = probs if fid_probs is None else fid_probs
    keys = list(images)
    # zip members are compressed independently, so the dense members add the same bytes whatever the
    # images: the first image set is measured with each codec, the others' base once (the overhead is
    # then exactly what measure_arrays / `ladd size` gives for a file holding those images).
    bases = {key: measure_arrays(images[key], labels, None, num_classes).base_bytes for key in keys[1:]}
    rows = []
    for name, codec in codecs:
        stored = codec.encode(probs)
        row = {"codec": name, "raw_per_image": sum(v.nbytes for v in stored.values()) / len(probs)}
        r = measure_arrays(images[keys[0]], labels, stored, num_classes)
        for key in keys:
            row[f"bytes_{key}"] = r.dense_bytes / len(probs)
            row[f"pct_{key}"] = r.overhead_pct if key == keys[0] else 100.0 * r.dense_bytes / bases[key]
        q = codec.decode(codec.encode(fid_probs), num_classes)
        row.update(fidelity(fid_probs, q))
        rows.append(row)
    return rows




def plot_codecs(rows10: list[dict], rows1k: dict[float, list[dict]], base10: float, base1k: float,
                path: Path) -> None:
    """KL vs bytes per image: top-k codecs as lines over k (float16 solid, uint8 dashed), dense float16
    and uint8 as single markers; the shaded box is the target (overhead cap at 128 px, KL <= 0.05)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5))
    panels = ((axes[0], "C = 10: MTT labeler, IPC-20 set (128 px)", {1.0: rows10}, 0.7, base10),
              (axes[1], "C = 1000: digits-1000 proxy labeler (128 px base)", rows1k, 3.0, base1k))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, title, series, cap, base in panels:
        for i, (t, rows) in enumerate(sorted(series.items(), reverse=True)):
            c = colors[i]
            by = {r["codec"]: r for r in rows}
            for values, ls in (("float16", "-"), ("uint8", "--")):
                top = sorted((r for r in rows if r["codec"].startswith("topk") and r["codec"].endswith(values)),
                             key=lambda r: r["bytes_128"])
                if top:
                    ax.plot([r["bytes_128"] for r in top], [max(r["kl"], 1e-7) for r in top], ls, marker="o",
                            ms=4, color=c, label=f"topk {values}" + (f", T = {t:g}" if len(series) > 1 else ""))
                    if values == "float16":
                        for r in top:
                            ax.annotate(r["codec"].split()[1], (r["bytes_128"], max(r["kl"], 1e-7)), fontsize=7,
                                        xytext=(2, 4), textcoords="offset points", color=c)
            for name, marker in (("uint8", "s"), ("float16", "^")):
                r = by[name]
                ax.plot([r["bytes_128"]], [max(r["kl"], 1e-7)], marker, color=c, ms=7, mfc="none",
                        label=f"dense {name}" + (f", T = {t:g}" if len(series) > 1 else ""))
            ax.axvline(by["float32"]["bytes_128"], color="grey", ls=":", lw=1)
        ax.fill_between([1, cap / 100 * base], 1e-7, 0.05, color="green", alpha=0.08,
                        label=f"target: <= {cap:g}% overhead, KL <= 0.05")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(left=min(r["bytes_128"] for rows in series.values() for r in rows) / 1.5)
        ax.set_ylim(5e-8, 10)
        ax.set_xlabel("dense-label bytes per image (zip); dotted line: float32")
        ax.set_ylabel("mean KL(p || q), nats (values < 1e-7 drawn at 1e-7)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2 if len(series) > 1 else 1, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)



def measure(quick: bool, fresh: bool = False) -> dict:
    t_start = time.perf_counter()
    st = settings(quick)
    ipcs, temps = st["ipcs"], st["temps"]
    data = load_images()
    timing: dict = {}
    _, dense20 = c10_labels(data, quick, timing, fresh)

    # C = 10
    ipc_max_images, ipc_max_labels, ipc_max_dense = ipc_set(data, dense20, max(ipcs))
    real_rows = np.concatenate([dense20[(s, 0)] for s in SUBSETS])
    rows10 = codec_rows(ipc_max_dense, {"128": ipc_max_images}, ipc_max_labels, 10, codec_list(10))
    real_agree = {}
    for name, codec in codec_list(10):
        q = codec.decode(codec.encode(real_rows), 10)
        real_agree[name] = fidelity(real_rows, q)["top1"]
    base10 = measure_arrays(ipc_max_images, ipc_max_labels, None, 10).base_bytes / len(ipc_max_images)
    # the uint8 codec's top-1 disagreements and the top-2 gaps behind them (for the targets)
    u8c = make_codec("uint8")
    pr = ipc_max_dense.reshape(-1, 10).astype(np.float64)
    qr = u8c.decode(u8c.encode(ipc_max_dense), 10).reshape(-1, 10)
    dis = qr.argmax(-1) != pr.argmax(-1)
    top2 = np.sort(pr, -1)[:, -2:]
    gaps = (top2[:, 1] - top2[:, 0])[dis]
    u8_disagree = {"rows": len(pr), "count": int(dis.sum()), "max_gap": float(gaps.max()) if len(gaps) else None,
                   "real_rows": len(real_rows) * N0 * N0}

    # C = 1000 (digits-1000 proxy labeler)
    d1k = d1k_logits(quick, timing, fresh)
    logits1k, d1k_num = d1k["logits"], st["d1k_num"]
    log(f"digits-1000: {time.perf_counter() - t_start:.0f} s")
    acc1k_sub = float((logits1k.argmax(-1) == (np.arange(d1k_num) % 1000)[:, None]).mean())
    m1k = min(160, d1k_num)
    t = time.perf_counter()
    base128 = base1k_images(data, m1k)
    base224 = resize_uint8(base128, 224)
    labels1k = np.arange(m1k) % 1000
    rows1k, stats1k = [], []
    for temp in temps:
        probs = softmax_t(logits1k, temp)
        stats1k.append([temp, label_stats(probs)])
        fid_rows = probs if temp == 1.0 else probs[: max(m1k, d1k_num // 5)]
        rows1k.append([temp, codec_rows(probs[:m1k], {"128": base128, "224": base224}, labels1k, 1000,
                                        codec_list(1000, extra_k=st["extra_k"]), fid_probs=fid_rows)])
    timing["codecs C=1000"] = time.perf_counter() - t
    log(f"codecs: {time.perf_counter() - t_start:.0f} s")
    base1k = measure_arrays(base128, labels1k, None, 1000).base_bytes / m1k

    # the `ladd size` check on a C = 1000 file
    probs1 = softmax_t(logits1k, 1.0)[:m1k]
    mism, checked = [], []
    with tempfile.TemporaryDirectory(prefix="ladd-storage-") as tmp:
        for cname, codec in (("topk-20-float16", make_codec("topk", k=20, values="float16")),):
            path = Path(tmp) / f"imagenet1k-shape-128px-{cname}.dla.h5"
            write_dla(path, base128, labels1k, probs1, codec, 1000, None, "convnet-d3 (width 16), digits-1000")
            mism += check_file(path, base128, labels1k, codec.encode(probs1), 1000, None, st["zlevels"])
            checked.append(path.name)
    return {"quick": quick, "ipc_max": max(ipcs), "rows10_count": int(ipc_max_dense.shape[0] * 25),
            "base10": base10, "rows10": rows10, "real_agree": real_agree, "u8_disagree": u8_disagree,
            "d1k_steps": st["d1k_steps"], "d1k_num": d1k_num, "acc1k_full": d1k["acc_full"], "acc1k_sub": acc1k_sub,
            "m1k": m1k, "temps": list(temps), "base1k": base1k, "rows1k": rows1k, "stats1k": stats1k,
            "check": {"files": checked, "mismatches": mism},
            "elapsed": time.perf_counter() - t_start, "timing": timing}


def plot(payload: dict, folder: Path) -> None:
    d = payload["data"]
    if d["quick"]:
        return
    folder.mkdir(parents=True, exist_ok=True)
    rows1k, _ = unpack_codecs(d)
    plot_codecs(d["rows10"], rows1k, d["base10"], d["base1k"], folder / "storage_codecs.png")


def main(argv=None) -> int:
    return part_main(NAME, __doc__, measure, argv)


if __name__ == "__main__":
    raise SystemExit(main())
