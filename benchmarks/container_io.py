"""Container I/O benchmark: D_LA (HDF5, fletcher32 + SHA-256) against plain ``.npy`` files.

Usage::

    .venv/bin/python benchmarks/container_io.py                # full run: saves results/container_io.json,
                                                               # updates benchmarks/RESULTS/container-io.md
    .venv/bin/python benchmarks/container_io.py --render-only  # re-render the section from the saved JSON
    .venv/bin/python benchmarks/container_io.py --quick        # smoke test (a few seconds), prints only

Measured on the CPU, in one run, for two synthetic sets:

- ``imagenette``: M = 500 images uint8 (3, 128, 128) (C = 10, IPC 50) with float32 dense labels,
  N = 5, i.e. (M, 25, 10);
- ``cifar``: M = 1000 images uint8 (3, 32, 32) (C = 10, IPC 100), same dense labels.

Image content is uniform random uint8 and the dense labels are softmax probabilities of seeded
Gaussian logits. Nothing here is compressed, so content does not change the timings.

What is timed (throughput is raw array bytes: images + int64 labels + float32 dense, per second):

- write: :class:`DLAWriter` (batches of 64, and one batch of all M) against ``numpy.save`` of the
  same three arrays into the same folder. Each timing includes opening, writing and closing (the
  D_LA writer's close writes the digests and renames into place). Neither side calls fsync, so
  both measure writes into the OS page cache.
- read whole set: ``open_dla(p)`` then ``.images()``, ``.labels()``, ``.dense()``, against
  ``numpy.load`` of the three files, and against ``numpy.load(mmap_mode="r")`` + ``numpy.array``.
  The files were just written, so they are in the page cache: this is a warm-cache read, which
  measures the container's CPU cost rather than the disk.
- random access: latency of reading one image + its label + its dense labels, from a DLAFile kept
  open, against indexing memory-mapped ``.npy`` files (copying the item out with ``numpy.array``).

Each whole-set timing is repeated (5 times in full mode) after one warm-up; the table reports the
median (best in brackets). Random-access latencies pool every index of every pass.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _common import Output, Timing, add_output_args  # noqa: E402
from ladd_format import DLAWriter, DenseSpec, open_dla  # noqa: E402
from ladd_format.codecs import make_codec  # noqa: E402

WORK = HERE / "_work"

READ_TARGET = 0.8   # reading a whole set: at least 0.8x numpy.load's throughput
WRITE_TARGET = 0.5  # writing with checksums: at least 0.5x numpy.save's throughput

N_DENSE = 5
RATIO = 0.625
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass
class SetSpec:
    name: str
    ipc: int
    num_classes: int
    image_shape: tuple[int, int, int]

    @property
    def m(self) -> int:
        return self.ipc * self.num_classes


def make_set(spec: SetSpec, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m, c = spec.m, spec.num_classes
    images = rng.integers(0, 256, size=(m, *spec.image_shape), dtype=np.uint8)
    labels = np.repeat(np.arange(c, dtype=np.int64), spec.ipc)
    logits = rng.standard_normal((m, N_DENSE * N_DENSE, c)) * 2.0
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    return images, labels, probs.astype(np.float32)


def time_repeated(fn, repeats: int, setup=None) -> Timing:
    """One untimed warm-up call, then ``repeats`` timed calls; ``setup`` runs untimed before each."""
    samples = []
    for i in range(repeats + 1):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        if i > 0:
            samples.append(dt)
    return Timing(samples)


def remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def write_dla(path: Path, spec: SetSpec, images, labels, probs, batch: int) -> None:
    with DLAWriter(path, num_classes=spec.num_classes, image_shape=spec.image_shape, mean=MEAN, std=STD,
                   dense=DenseSpec(n=N_DENSE, ratio=RATIO, codec=make_codec("float32")),
                   ipc=spec.ipc, source_dataset=spec.name, overwrite=True) as w:
        for i in range(0, len(images), batch):
            w.append(images[i:i + batch], labels[i:i + batch], dense=probs[i:i + batch])


def npy_paths(folder: Path) -> dict[str, Path]:
    return {k: folder / f"{k}.npy" for k in ("images", "labels", "dense")}


def write_npy(paths: dict[str, Path], images, labels, probs) -> None:
    np.save(paths["images"], images)
    np.save(paths["labels"], labels)
    np.save(paths["dense"], probs)


def bench_set(spec: SetSpec, folder: Path, repeats: int, n_random: int, seed: int) -> dict:
    images, labels, probs = make_set(spec, seed)
    nbytes = images.nbytes + labels.nbytes + probs.nbytes
    dla = folder / f"{spec.name}.dla.h5"
    npy = npy_paths(folder)
    res: dict = {"spec": spec, "bytes": nbytes}

    # -- write ---------------------------------------------------------------------------------
    res["write_dla_64"] = time_repeated(lambda: write_dla(dla, spec, images, labels, probs, 64), repeats,
                                        setup=lambda: remove(dla))
    res["write_dla_all"] = time_repeated(lambda: write_dla(dla, spec, images, labels, probs, len(images)),
                                         repeats, setup=lambda: remove(dla))
    res["write_npy"] = time_repeated(lambda: write_npy(npy, images, labels, probs), repeats,
                                     setup=lambda: remove(*npy.values()))
    # the floor HDF5 itself sets: contiguous datasets, no chunks, no checksums, no digests
    plain = folder / f"{spec.name}.plain.h5"

    def write_plain():
        with h5py.File(plain, "w") as h:
            h.create_dataset("images", data=images)
            h.create_dataset("labels", data=labels)
            h.create_dataset("dense", data=probs)

    def read_plain():
        with h5py.File(plain, "r") as h:
            return h["images"][()], h["labels"][()], h["dense"][()]

    res["write_plain"] = time_repeated(write_plain, repeats, setup=lambda: remove(plain))

    # -- read whole set (files just written: page cache is warm) ------------------------------
    def read_dla():
        with open_dla(dla) as f:
            out = (f.images(), f.labels(), f.dense())
        return out

    def read_npy():
        return tuple(np.load(p) for p in npy.values())

    def read_mmap():
        return tuple(np.array(np.load(p, mmap_mode="r")) for p in npy.values())

    got = read_dla()
    assert np.array_equal(got[0], images) and np.array_equal(got[1], labels) and np.array_equal(got[2], probs)
    res["read_dla"] = time_repeated(read_dla, repeats)
    res["read_npy"] = time_repeated(read_npy, repeats)
    res["read_mmap"] = time_repeated(read_mmap, repeats)
    res["read_plain"] = time_repeated(read_plain, repeats)
    remove(plain)

    # -- single-item random access --------------------------------------------------------------
    rng = np.random.default_rng(seed + 1)
    idx = rng.integers(0, spec.m, size=n_random)
    passes = max(1, repeats)

    lat_dla: list[float] = []
    with open_dla(dla) as f:
        for i in idx[:20]:  # warm-up
            f.images(int(i), int(i) + 1), f.labels(int(i), int(i) + 1), f.dense(int(i), int(i) + 1)
        for _ in range(passes):
            for i in idx:
                i = int(i)
                t0 = time.perf_counter()
                f.images(i, i + 1)
                f.labels(i, i + 1)
                f.dense(i, i + 1)
                lat_dla.append(time.perf_counter() - t0)

    lat_npy: list[float] = []
    mm = [np.load(p, mmap_mode="r") for p in npy.values()]
    for i in idx[:20]:
        [np.array(a[int(i)]) for a in mm]
    for _ in range(passes):
        for i in idx:
            i = int(i)
            t0 = time.perf_counter()
            np.array(mm[0][i])
            np.array(mm[1][i])
            np.array(mm[2][i])
            lat_npy.append(time.perf_counter() - t0)
    del mm
    res["rand_dla"] = latency_summary(lat_dla)
    res["rand_npy"] = latency_summary(lat_npy)
    res["file_bytes_dla"] = dla.stat().st_size
    res["file_bytes_npy"] = sum(p.stat().st_size for p in npy.values())
    remove(dla, *npy.values())
    return res


def latency_summary(samples: list[float]) -> dict:
    """Median and 95th percentile of single-item latencies, in microseconds."""
    a = np.asarray(samples) * 1e6
    return {"count": len(a), "median_us": float(np.median(a)), "p95_us": float(np.percentile(a, 95))}


def to_data(res: dict) -> dict:
    """bench_set's result as plain data for save_json (Timing -> {"samples": [...]})."""
    s: SetSpec = res["spec"]
    return {**res, "spec": {"name": s.name, "ipc": s.ipc, "num_classes": s.num_classes,
                            "image_shape": list(s.image_shape)}}


def from_data(res: dict) -> dict:
    """The inverse of to_data on what load_json gives back."""
    out = {}
    for key, value in res.items():
        if key == "spec":
            value = SetSpec(value["name"], value["ipc"], value["num_classes"], tuple(value["image_shape"]))
        elif isinstance(value, dict) and set(value) == {"samples"}:
            value = Timing(value["samples"])
        out[key] = value
    return out


# -- reporting ----------------------------------------------------------------------------------
def mbps(nbytes: int, t: Timing) -> tuple[float, float]:
    """(median, best) throughput in MB/s (10^6 bytes)."""
    return nbytes / t.median / 1e6, nbytes / t.best / 1e6


def fmt_tp(nbytes: int, t: Timing) -> str:
    med, best = mbps(nbytes, t)
    return f"{med:,.0f} ({best:,.0f})"


def build_report(results: list[dict]) -> tuple[str, list[str], bool]:
    lines = []
    verdicts = []
    all_pass = True
    lines.append("| set | operation | ours MB/s | numpy MB/s | mmap+copy MB/s | ours / numpy | target |")
    lines.append("|---|---|---:|---:|---:|---:|---|")
    for r in results:
        s: SetSpec = r["spec"]
        nb = r["bytes"]
        label = f"{s.name} M={s.m} {s.image_shape}"
        npy_w = mbps(nb, r["write_npy"])[0]
        for key, what in (("write_dla_64", "write, batches of 64"), ("write_dla_all", f"write, one batch of {s.m}")):
            ratio = mbps(nb, r[key])[0] / npy_w
            ok = ratio >= WRITE_TARGET
            all_pass &= ok
            verdict = f">= {WRITE_TARGET}x: {'PASS' if ok else 'FAIL'}"
            lines.append(f"| {label} | {what} (vs numpy.save) | {fmt_tp(nb, r[key])} | {fmt_tp(nb, r['write_npy'])} "
                         f"| - | {ratio:.2f}x | {verdict} |")
            verdicts.append(f"{s.name}: {what} with checksums = {ratio:.2f}x numpy.save -> {verdict}")
        npy_r = mbps(nb, r["read_npy"])[0]
        ratio = mbps(nb, r["read_dla"])[0] / npy_r
        ratio_mm = mbps(nb, r["read_dla"])[0] / mbps(nb, r["read_mmap"])[0]
        ok = ratio >= READ_TARGET
        all_pass &= ok
        verdict = f">= {READ_TARGET}x: {'PASS' if ok else 'FAIL'}"
        lines.append(f"| {label} | read whole set (vs numpy.load) | {fmt_tp(nb, r['read_dla'])} "
                     f"| {fmt_tp(nb, r['read_npy'])} | {fmt_tp(nb, r['read_mmap'])} | {ratio:.2f}x "
                     f"({ratio_mm:.2f}x vs mmap) | {verdict} |")
        verdicts.append(f"{s.name}: read whole set = {ratio:.2f}x numpy.load -> {verdict}")
    lines.append("")
    lines.append("The floor HDF5 itself sets on this machine (h5py, contiguous datasets: no chunks, no fletcher32, "
                 "no SHA-256), same arrays, same run:")
    lines.append("")
    lines.append("| set | plain HDF5 write MB/s | / numpy.save | plain HDF5 read MB/s | / numpy.load |")
    lines.append("|---|---:|---:|---:|---:|")
    for r in results:
        s, nb = r["spec"], r["bytes"]
        lines.append(f"| {s.name} | {fmt_tp(nb, r['write_plain'])} | "
                     f"{mbps(nb, r['write_plain'])[0] / mbps(nb, r['write_npy'])[0]:.2f}x | "
                     f"{fmt_tp(nb, r['read_plain'])} | {mbps(nb, r['read_plain'])[0] / mbps(nb, r['read_npy'])[0]:.2f}x |")
    lines.append("")
    lines.append("Single-item random access (one image + its label + its dense labels), microseconds:")
    lines.append("")
    lines.append("| set | ours median | ours p95 | mmap .npy median | mmap .npy p95 | ours / numpy (median latency) |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for r in results:
        s = r["spec"]
        a, b = r["rand_dla"], r["rand_npy"]
        lines.append(f"| {s.name} | {a['median_us']:,.0f} | {a['p95_us']:,.0f} | {b['median_us']:,.1f} "
                     f"| {b['p95_us']:,.1f} | {a['median_us'] / b['median_us']:,.1f}x |")
    lines.append("")
    lines.append("Sizes: " + "; ".join(
        f"{r['spec'].name}: raw arrays {r['bytes'] / 1e6:.2f} MB, .dla.h5 {r['file_bytes_dla'] / 1e6:.2f} MB, "
        f".npy files {r['file_bytes_npy'] / 1e6:.2f} MB" for r in results) + ".")
    return "\n".join(lines), verdicts, all_pass


def measure(quick: bool, seed: int) -> dict:
    """Both sets' timings as plain data."""
    if quick:
        sets = [SetSpec("imagenette", 5, 10, (3, 128, 128)), SetSpec("cifar", 10, 10, (3, 32, 32))]
        repeats, n_random = 2, 50
    else:
        sets = [SetSpec("imagenette", 50, 10, (3, 128, 128)), SetSpec("cifar", 100, 10, (3, 32, 32))]
        repeats, n_random = 5, 500

    WORK.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="container_io-", dir=WORK))
    t_start = time.perf_counter()
    try:
        results = [bench_set(s, folder, repeats, n_random, seed + k) for k, s in enumerate(sets)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        try:
            WORK.rmdir()  # only when empty
        except OSError:
            pass
    return {"repeats": repeats, "n_random": n_random, "elapsed": time.perf_counter() - t_start,
            "sets": [to_data(r) for r in results]}


def render(payload: dict) -> tuple[str, bool]:
    """The section, title included, and whether every target passed, from the saved data."""
    d = payload["data"]
    repeats, n_random = d["repeats"], d["n_random"]
    table, verdicts, all_pass = build_report([from_data(r) for r in d["sets"]])
    header = [
        "## Container I/O: D_LA (HDF5) vs numpy .npy",
        "",
        f"- Machine: {payload['machine']}",
        f"- Date: {payload['date']}",
        f"- Command: `{payload['command']}` (ran in {d['elapsed']:.0f} s)",
        f"- Method: synthetic sets (random uint8 images, softmax float32 dense labels N={N_DENSE}, C=10), "
        f"float32 codec, no compression. Throughput counts raw array bytes (images + int64 labels + float32 "
        f"dense). Each whole-set timing: 1 warm-up + {repeats} runs; table shows median (best). Writes go "
        f"to the page cache (no fsync on either side); reads are warm-cache (files just written), so they "
        f"measure CPU cost, not the disk. D_LA writes include validation, SHA-256 and per-chunk fletcher32. "
        f"Random access: {n_random} random indices x {repeats} passes, DLAFile kept open; numpy side copies "
        f"the item out of memory-mapped .npy files.",
        "",
        table,
        "",
        "Targets:",
        "",
        *[f"- {v}" for v in verdicts],
        "",
        "Why the targets are missed (profiled on this machine; the figures above "
        "are the evidence): the spec requires a fletcher32 checksum on every chunk, one image per chunk, and a "
        "SHA-256 of every dataset. Reading 500 ImageNette images takes about 25 ms with fletcher32 against "
        "11 ms without it (same chunks), each chunk costs 10-14 us of HDF5 bookkeeping (this dominates the "
        "32 px set: 1,000 chunks of 3 KB), and opening an HDF5 file costs about 1 ms, as much as numpy.load "
        "needs for the whole CIFAR-shaped set. Writing adds SHA-256 at about 1 GB/s (25 ms for 25 MB, run on "
        "a worker thread beside the HDF5 write). The plain-HDF5 table shows the floor with none of these: "
        "0.5-0.8x numpy even then. Meeting 0.8x read / 0.5x write would need dropping per-chunk checksums or "
        "one-image chunks from the spec, which the format requires; the integrity guarantees were "
        "kept and the targets are reported as missed. Since spec 1.1 a reader also checks, on open, every "
        "header rule and the root digest (about 14 ms per open), and on every read the SHA-256 of each row "
        "and the codec's value bounds: the random-access table above shows what an item costs with them "
        "(benchmarks/row_checks.py separates the row-digest share). These figures were written by hand "
        "when the section was last profiled; the tables are this run's.",
    ]
    return "\n".join(header), all_pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke-test run; writes nothing unless --data-dir/--results")
    ap.add_argument("--seed", type=int, default=0)
    add_output_args(ap)
    args = ap.parse_args(argv)
    out = Output.from_args(args)
    payload = out.load("container_io") if out.render_only else out.save("container_io", measure(args.quick, args.seed))
    section, all_pass = render(payload)
    print(section)
    print()
    print("OVERALL:", "PASS" if all_pass else "FAIL (see targets above)")
    out.update("container_io", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
