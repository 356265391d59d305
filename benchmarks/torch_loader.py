"""PyTorch-side benchmark: sub-image rebuild vs materialised sub-images, LADD step share, DataLoader.

Usage::

    .venv/bin/python benchmarks/torch_loader.py                # full run (~4 min on 2 cores): saves
                                                               # results/torch_loader.json, updates RESULTS/loader.md
    .venv/bin/python benchmarks/torch_loader.py --render-only  # re-render the section from the saved JSON
    .venv/bin/python benchmarks/torch_loader.py --quick        # smoke test (< 20 s), prints only

Measured in one run, on the CPU (torch's default thread count, reported), and on CUDA only when
``torch.cuda.is_available()`` (otherwise the report says so; no GPU figure is ever estimated):

1. Sub-images rebuilt per second. A batch of B=256 images 3x128x128 (random uint8 pixels,
   normalised to float32 as ``DLADataset`` returns them), N=5, R=0.625: 256 x 25 = 6,400 sub-images
   80x80 -> 128x128. On the fly: ``subimages()`` on the batch (the global images are already in memory
   for the global loss term, so reading them is not counted on either side). Materialised: the same
   6,400 sub-images stored as a trainer would store them, uint8 ``(6400, 3, 128, 128)`` in HDF5, in
   two layouts: (a) like our container, chunked one sub-image per chunk with fletcher32; (b) one
   contiguous dataset without checksum (the cheapest HDF5 read). The read goes in slices of 256
   sub-images (a trainer's batch; it also bounds memory: 12.6 MB uint8 + 50 MB float32 per slice
   instead of 315 MB + 1.26 GB); each slice is converted to model-ready float32 (``/255`` then
   ``(x - mean) / std``, what ``DLADataset.to_float`` does). One timing = opening the file + all 25
   slices. Files were just written, so reads are warm-cache: the CPU cost, not the disk. The ratio
   on-the-fly / materialised is the issue's target (>= 1.0x). A breakdown of ``subimages()``
   (replaying its steps: crop+stack, ``interpolate`` with antialias, scatter into the output) shows
   where the time goes.
2. The rebuild's share of one ConvNet-D5 (width 128) training step: zero_grad + ``ladd_loss``
   (forward on the global batch and on its sub-images) + backward + SGD step. On the CPU a small
   batch (8 images -> 200 sub-images; full-batch CPU steps take minutes); the rebuild alone
   (``sampler(images)``) on the same batch. The issue's target (< 10% of the step) is for a GPU; the
   CPU share is informational.
3. Loader throughput: ``DataLoader(DLADataset(path), batch_size=64, shuffle=True, num_workers=w)``
   for w in 0, 2, 4 (fork context), and ``in_memory=True`` with 0 workers, over a D_LA file of 1,000
   images 3x128x128 with float32 dense labels N=5, C=10 written with ``DLAWriter`` into
   ``benchmarks/_work/`` (deleted afterwards). Workers are not persistent, so every epoch starts its
   workers: an epoch's time includes start-up, reported separately as the time to the first batch.

Every timing: one untimed warm-up, then repeats; tables report the median (best in brackets).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _common import Output, Timing, add_output_args, gpu_line, revive_timings  # noqa: E402
from ladd_format import DenseSpec, DLAWriter  # noqa: E402
from ladd_format.codecs import make_codec  # noqa: E402
from ladd_format.torch.models import build_model  # noqa: E402
from ladd_format.torch import DLADataset, SubSampler, ladd_loss  # noqa: E402

WORK = HERE / "_work"

N_DENSE, RATIO, NUM_CLASSES = 5, 0.625, 10
SIDE = 128
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
REBUILD_TARGET = 1.0      # on the fly at least as fast as reading materialised sub-images
STEP_SHARE_TARGET = 10.0  # rebuild under 10% of a training step (on a GPU)
CUDA_NA = "CUDA: not available on this machine (not measured)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_repeated(fn, repeats: int, device: torch.device = torch.device("cpu"), warmup: int = 1) -> Timing:
    """``warmup`` untimed calls, then ``repeats`` timed calls (synchronising CUDA around each)."""
    samples = []
    for i in range(warmup + repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        dt = time.perf_counter() - t0
        if i >= warmup:
            samples.append(dt)
    return Timing(samples)


def normalise(u8: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 (x/255 - mean) / std, in place after the conversion."""
    mean = torch.tensor(MEAN, device=u8.device).view(3, 1, 1)
    std = torch.tensor(STD, device=u8.device).view(3, 1, 1)
    return u8.float().div_(255.0).sub_(mean).div_(std)


def random_images(m: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(m, 3, SIDE, SIDE), dtype=np.uint8)


def random_dense(m: int, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).standard_normal((m, N_DENSE * N_DENSE, NUM_CLASSES)) * 2.0
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


# -- 1. sub-images: on the fly vs materialised ------------------------------------------------------
def bench_rebuild(images_u8: np.ndarray, sampler: SubSampler, device: torch.device, repeats: int) -> Timing:
    x = normalise(torch.from_numpy(images_u8).to(device))
    holder = {}

    def run():
        holder.pop("out", None)            # free the previous output before allocating the next
        holder["out"] = sampler(x)

    t = time_repeated(run, repeats, device)
    assert tuple(holder["out"].shape) == (len(images_u8), sampler.num_sub, 3, SIDE, SIDE)
    holder.clear()
    return t


def profile_rebuild(images_u8: np.ndarray, boxes: np.ndarray, repeats: int) -> dict:
    """Replay ``subimages()``'s steps on the CPU (one crop size: one group) and time each."""
    x = normalise(torch.from_numpy(images_u8))
    b, k = x.shape[:2]
    p = len(boxes)
    h, w = int(boxes[0, 2]), int(boxes[0, 3])
    assert all(int(r[2]) == h and int(r[3]) == w for r in boxes), "profile assumes one crop size"
    members = list(range(p))
    st: dict = {}

    def stack():
        st["crops"] = torch.stack([x[:, :, int(t):int(t) + h, int(l):int(l) + w] for t, l, _, _ in boxes], dim=1)

    def interp(aa: bool):
        def run():
            st.pop("resized", None)
            st["resized"] = F.interpolate(st["crops"].reshape(b * p, k, h, w), size=(SIDE, SIDE), mode="bilinear",
                                          align_corners=False, antialias=aa)
        return run

    res = {"stack": time_repeated(stack, repeats), "interp_aa": time_repeated(interp(True), repeats)}
    aa_out = st.pop("resized")
    res["interp_plain"] = time_repeated(interp(False), repeats)
    res["aa_max_diff"] = float((aa_out - st["resized"]).abs().max())
    st["resized"] = aa_out
    out = x.new_empty((b, p, k, SIDE, SIDE))
    res["scatter_index"] = time_repeated(
        lambda: out.__setitem__((slice(None), members), st["resized"].reshape(b, p, k, SIDE, SIDE)), repeats)
    res["scatter_slice"] = time_repeated(
        lambda: out.__setitem__(slice(None), st["resized"].reshape(b, p, k, SIDE, SIDE)), repeats)
    res["shape"] = (b, p, k, h, w)
    st.clear()
    return res


def materialise(images_u8: np.ndarray, sampler: SubSampler, folder: Path) -> dict[str, Path]:
    """Write the uint8 sub-images (as a trainer would store them) in two HDF5 layouts, plus the D_LA."""
    b, p = len(images_u8), sampler.num_sub
    shape = (b * p, 3, SIDE, SIDE)
    paths = {"chunked": folder / "subimages_chunked_f32.h5", "contiguous": folder / "subimages_contiguous.h5",
             "dla": folder / "images.dla.h5"}
    with h5py.File(paths["chunked"], "w") as hc, h5py.File(paths["contiguous"], "w") as hp:
        dc = hc.create_dataset("subimages", shape=shape, dtype=np.uint8, chunks=(1, 3, SIDE, SIDE), fletcher32=True)
        dp = hp.create_dataset("subimages", shape=shape, dtype=np.uint8)
        for s in range(0, b, 8):
            x = torch.from_numpy(images_u8[s:s + 8]).float()          # pixel space, 0..255
            subs = sampler(x).round_().clamp_(0, 255).to(torch.uint8).flatten(0, 1).numpy()
            dc[s * p:s * p + len(subs)] = subs
            dp[s * p:s * p + len(subs)] = subs
    labels = np.arange(b, dtype=np.int64) % NUM_CLASSES
    with DLAWriter(paths["dla"], num_classes=NUM_CLASSES, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD,
                   dense=DenseSpec(n=N_DENSE, ratio=RATIO, codec=make_codec("float32")), overwrite=True) as wr:
        wr.append(images_u8, labels, dense=random_dense(b, 1))
    return paths


def bench_materialised_read(path: Path, total: int, slice_rows: int, repeats: int) -> Timing:
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)

    def run():
        n = 0
        with h5py.File(path, "r") as h:
            ds = h["subimages"]
            for s in range(0, total, slice_rows):
                a = ds[s:s + slice_rows]
                t = torch.from_numpy(a).float().div_(255.0).sub_(mean).div_(std)
                n += t.shape[0]
        assert n == total

    return time_repeated(run, repeats)


# -- 2. the rebuild's share of a training step ------------------------------------------------------
def bench_step(batch: int, sampler: SubSampler, device: torch.device, repeats: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = build_model("convnet-d5", num_classes=NUM_CLASSES, image_size=SIDE).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = normalise(torch.from_numpy(random_images(batch, seed)).to(device))
    labels = torch.arange(batch, device=device) % NUM_CLASSES
    dense = torch.from_numpy(random_dense(batch, seed)).to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss, _ = ladd_loss(model, images, labels, dense, sampler)
        loss.backward()
        opt.step()

    t_step = time_repeated(step, repeats, device)
    t_rebuild = time_repeated(lambda: sampler(images), max(repeats, 5), device)
    width = model.classifier.in_features // ((SIDE // 32) ** 2)
    return {"batch": batch, "subs": batch * sampler.num_sub, "step": t_step, "rebuild": t_rebuild,
            "width": width, "share": 100 * t_rebuild.median / t_step.median}


# -- 3. loader throughput --------------------------------------------------------------------------
def write_loader_set(path: Path, m: int, seed: int) -> None:
    images = random_images(m, seed)
    labels = np.arange(m, dtype=np.int64) % NUM_CLASSES
    dense = random_dense(m, seed)
    with DLAWriter(path, num_classes=NUM_CLASSES, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD,
                   dense=DenseSpec(n=N_DENSE, ratio=RATIO, codec=make_codec("float32")), overwrite=True) as w:
        for s in range(0, m, 100):
            w.append(images[s:s + 100], labels[s:s + 100], dense=dense[s:s + 100])


def run_epoch(loader: DataLoader, m: int) -> tuple[float, float]:
    """(epoch seconds, seconds to the first batch) with a fresh iterator (workers started anew)."""
    t0 = time.perf_counter()
    first = None
    n = 0
    for i, (x, y, d) in enumerate(loader):
        if i == 0:
            first = time.perf_counter() - t0
        n += len(y)
    total = time.perf_counter() - t0
    assert n == m and x.dtype == torch.float32 and d.shape[1:] == (N_DENSE * N_DENSE, NUM_CLASSES)
    return total, first


def bench_loader(path: Path, m: int, workers: int, in_memory: bool, repeats: int) -> dict:
    t0 = time.perf_counter()
    ds = DLADataset(path, in_memory=in_memory)
    construct = time.perf_counter() - t0
    kw = {"multiprocessing_context": "fork"} if workers > 0 else {}
    epochs, firsts = [], []
    with warnings.catch_warnings():  # "4 workers > suggested max 2": deliberate here, said in the report
        warnings.filterwarnings("ignore", message=".*worker processes in total.*")
        loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=workers, **kw)
        run_epoch(loader, m)  # warm-up epoch
        for _ in range(repeats):
            e, f = run_epoch(loader, m)
            epochs.append(e)
            firsts.append(f)
    ds.close()
    return {"workers": workers, "in_memory": in_memory, "construct": construct, "epoch": Timing(epochs),
            "first": Timing(firsts), "m": m}


# -- reporting -------------------------------------------------------------------------------------
def cuda_line() -> str:
    if not torch.cuda.is_available():
        return CUDA_NA
    return f"CUDA: {gpu_line()}"


def rate(n: int, t: Timing) -> str:
    return f"{n / t.median:,.0f} ({n / t.best:,.0f})"


def ms(t: Timing) -> str:
    return f"{1e3 * t.median:,.0f} ({1e3 * t.best:,.0f})"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def measure(args) -> dict:
    """Every timing of the three parts as plain data (Timing objects become {"samples": [...]})."""
    if args.quick:
        batch, repeats, step_batch, step_repeats, loader_m, loader_repeats = 32, 2, 1, 1, 192, 2
    else:
        batch, repeats, step_batch, step_repeats, loader_m, loader_repeats = 256, 5, 8, 3, 1000, 5
    slice_rows = 256
    cpu = torch.device("cpu")
    cuda = torch.device("cuda") if torch.cuda.is_available() else None
    sampler = SubSampler.from_geometry(SIDE, SIDE, N_DENSE, RATIO)
    p = sampler.num_sub
    total_subs = batch * p
    if cuda is None:
        print(CUDA_NA)

    WORK.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="torch_loader-", dir=WORK))
    t_start = time.perf_counter()
    try:
        # 1. rebuild vs materialised
        images_u8 = random_images(batch, args.seed)
        print(f"[1] rebuild {total_subs:,} sub-images on the CPU ...", flush=True)
        t_cpu = bench_rebuild(images_u8, sampler, cpu, repeats)
        t_cuda = None
        if cuda is not None:
            t_cuda = bench_rebuild(images_u8, sampler.to(cuda), cuda, repeats)
        print("[1] profile subimages() steps ...", flush=True)
        prof = profile_rebuild(images_u8, sampler.boxes, max(2, repeats // 2))
        print("[1] materialise and read ...", flush=True)
        paths = materialise(images_u8, sampler, folder)
        sizes = {k: v.stat().st_size for k, v in paths.items()}
        t_chunked = bench_materialised_read(paths["chunked"], total_subs, slice_rows, repeats)
        t_contig = bench_materialised_read(paths["contiguous"], total_subs, slice_rows, repeats)
        for v in paths.values():
            v.unlink()

        # 2. step share
        print(f"[2] ConvNet-D5 step, {step_batch} images on the CPU ...", flush=True)
        step_cpu = bench_step(step_batch, sampler, cpu, step_repeats, args.seed)
        step_cuda = None
        if cuda is not None:
            try:
                step_cuda = bench_step(args.cuda_step_batch, sampler, cuda, max(step_repeats, 10), args.seed)
            except torch.cuda.OutOfMemoryError as exc:
                step_cuda = {"error": f"out of memory at {args.cuda_step_batch} images: {str(exc).splitlines()[0]}"}
                torch.cuda.empty_cache()

        # 3. loader
        print(f"[3] DataLoader over {loader_m} images ...", flush=True)
        set_path = folder / "loader.dla.h5"
        write_loader_set(set_path, loader_m, args.seed + 1)
        set_size = set_path.stat().st_size
        loads = [bench_loader(set_path, loader_m, w, False, loader_repeats) for w in (0, 2, 4)]
        loads.append(bench_loader(set_path, loader_m, 0, True, loader_repeats))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        try:
            WORK.rmdir()  # only when empty
        except OSError:
            pass
    elapsed = time.perf_counter() - t_start
    return {"batch": batch, "repeats": repeats, "step_repeats": step_repeats, "loader_m": loader_m,
            "loader_repeats": loader_repeats, "slice_rows": slice_rows, "total_subs": total_subs,
            "t_cpu": t_cpu, "t_cuda": t_cuda, "prof": prof, "sizes": sizes, "images_nbytes": images_u8.nbytes,
            "t_chunked": t_chunked, "t_contig": t_contig, "step_cpu": step_cpu, "step_cuda": step_cuda,
            "cuda_step_batch": args.cuda_step_batch, "set_size": set_size, "loads": loads, "elapsed": elapsed,
            "cuda_line": cuda_line(), "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}


def render(payload: dict) -> str:
    """The section, title included, from the saved data."""
    d = revive_timings(payload["data"])
    batch, repeats, step_repeats, loader_m = d["batch"], d["repeats"], d["step_repeats"], d["loader_m"]
    loader_repeats, slice_rows, total_subs = d["loader_repeats"], d["slice_rows"], d["total_subs"]
    t_cpu, t_cuda, prof, sizes = d["t_cpu"], d["t_cuda"], d["prof"], d["sizes"]
    t_chunked, t_contig, step_cpu, step_cuda = d["t_chunked"], d["t_contig"], d["step_cpu"], d["step_cuda"]
    set_size, loads, elapsed, threads = d["set_size"], d["loads"], d["elapsed"], d["threads"]
    r_chunked = t_chunked.median / t_cpu.median      # (subs/s on the fly) / (subs/s materialised)
    r_contig = t_contig.median / t_cpu.median
    lines = [
        "## PyTorch side: sub-image rebuild, LADD step share, DataLoader throughput"
        + (f" (GPU machine, {d['gpu_name']})" if d["gpu_name"] else ""),
        "",
        f"- Machine: {payload['machine']}",
        f"- {d['cuda_line']}",
        f"- Date: {payload['date']}",
        f"- Command: `{payload['command']}` (ran in {elapsed:.0f} s)",
        f"- Method: see the script's docstring. Synthetic data (random uint8 pixels, softmax float32 dense "
        f"labels), N={N_DENSE}, R={RATIO} (crops 80x80 resized to 128x128, bilinear, antialias). Each timing: "
        f"1 warm-up + repeats ({repeats} for part 1, {step_repeats} for the step, {loader_repeats} epochs for "
        f"the loader); tables show median (best). HDF5 reads are warm-cache (files just written). The "
        f"machine's {d['cpu_count']} cores are shared with the rest of the system, so repeat-to-repeat "
        f"spread (median vs best) is part of the result.",
        "",
        f"### 1. Sub-images per second: rebuilt on the fly vs read materialised ({batch} images -> "
        f"{total_subs:,} sub-images)",
        "",
        "| path | seconds per batch | sub-images/s | on-the-fly / this | target |",
        "|---|---:|---:|---:|---|",
        f"| on the fly, `subimages()` CPU ({threads} threads) | {t_cpu.median:.2f} ({t_cpu.best:.2f}) "
        f"| {rate(total_subs, t_cpu)} | 1.00x | - |",
    ]
    if t_cuda is not None:
        lines.append(f"| on the fly, `subimages()` CUDA | {t_cuda.median:.4f} ({t_cuda.best:.4f}) | "
                     f"{rate(total_subs, t_cuda)} | {t_cpu.median / t_cuda.median:.2f}x CPU | - |")
    else:
        lines.append("| on the fly, `subimages()` CUDA | not measured | not measured | - | - |")
    lines += [
        f"| materialised uint8, 1 sub-image/chunk + fletcher32, read in slices of {slice_rows} + to float32 "
        f"| {t_chunked.median:.2f} ({t_chunked.best:.2f}) | {rate(total_subs, t_chunked)} | {r_chunked:.2f}x "
        f"| >= {REBUILD_TARGET:.1f}x: {verdict(r_chunked >= REBUILD_TARGET)} |",
        f"| materialised uint8, contiguous, no checksum, same slices + to float32 "
        f"| {t_contig.median:.2f} ({t_contig.best:.2f}) | {rate(total_subs, t_contig)} | {r_contig:.2f}x "
        f"| >= {REBUILD_TARGET:.1f}x: {verdict(r_contig >= REBUILD_TARGET)} |",
        "",
        f"File sizes for the same {batch} images: D_LA (uint8 images + labels + float32 dense labels, "
        f"`DLAWriter`) {sizes['dla'] / 1e6:,.2f} MB; materialised sub-images {sizes['chunked'] / 1e6:,.2f} MB "
        f"(chunked + fletcher32) / {sizes['contiguous'] / 1e6:,.2f} MB (contiguous) = "
        f"{sizes['chunked'] / sizes['dla']:.1f}x the D_LA file and {sizes['chunked'] / d['images_nbytes']:.1f}x "
        f"the raw images alone ({d['images_nbytes'] / 1e6:,.2f} MB).",
        "",
    ]
    b_, p_, k_, h_, w_ = prof["shape"]
    crops_mb = b_ * p_ * k_ * h_ * w_ * 4 / 1e6
    out_mb = b_ * p_ * k_ * SIDE * SIDE * 4 / 1e6
    parts = prof["stack"].median + prof["interp_aa"].median + prof["scatter_index"].median
    lean = prof["stack"].median + prof["interp_plain"].median + prof["scatter_slice"].median
    lines += [
        f"Where `subimages()` spends its CPU time (its steps replayed on the same batch, median of "
        f"{len(prof['stack'].samples)}; crops {crops_mb:,.0f} MB, output {out_mb:,.0f} MB float32; replayed "
        f"sum {1e3 * parts:,.0f} ms against {1e3 * t_cpu.median:,.0f} ms for the `subimages()` call above):",
        "",
        "| step | ms | share of the replayed sum |",
        "|---|---:|---:|",
        f"| crop + `torch.stack` ({p_} views -> ({b_}, {p_}, {k_}, {h_}, {w_})) | {ms(prof['stack'])} "
        f"| {100 * prof['stack'].median / parts:.0f}% |",
        f"| `F.interpolate` bilinear, antialias=True, {h_}x{w_} -> {SIDE}x{SIDE} | {ms(prof['interp_aa'])} "
        f"| {100 * prof['interp_aa'].median / parts:.0f}% |",
        f"| `out[:, members] = ...` (advanced-index scatter) | {ms(prof['scatter_index'])} "
        f"| {100 * prof['scatter_index'].median / parts:.0f}% |",
        f"| (for comparison) same interpolate, antialias=False | {ms(prof['interp_plain'])} | - |",
        f"| (for comparison) `out[:] = ...` (slice copy) | {ms(prof['scatter_slice'])} | - |",
        "",
        f"For this upscale ({h_} -> {SIDE}) antialias changes nothing: max |antialias - plain| = "
        f"{prof['aa_max_diff']:.1e} over the batch, yet the antialias kernel costs "
        f"{prof['interp_aa'].median / prof['interp_plain'].median:.1f}x the plain one on this CPU. Summing "
        f"measured steps (not a measured run): crop + stack + interpolate without antialias + slice copy = "
        f"{1e3 * lean:,.0f} ms, i.e. {total_subs / lean:,.0f} sub-images/s, {t_chunked.median / lean:.2f}x the "
        f"chunked + fletcher32 read: {'still short of' if lean > t_chunked.median else 'enough for'} the CPU target.",
        "",
        "### 2. Rebuild share of one ConvNet-D5 training step (`ladd_loss` forward + backward + SGD step)",
        "",
        "| device | images (+ sub-images) | width | step ms | rebuild ms | rebuild share | target |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| CPU | {step_cpu['batch']} (+{step_cpu['subs']}) | {step_cpu['width']} | {ms(step_cpu['step'])} | "
        f"{ms(step_cpu['rebuild'])} | {step_cpu['share']:.1f}% | informational (target is for a GPU) |",
    ]
    if step_cuda is None:
        lines.append("| CUDA | - | - | not measured | not measured | not measured | < 10% on a GPU: not measured |")
    elif "error" in step_cuda:
        lines.append(f"| CUDA | {d['cuda_step_batch']} | 128 | {step_cuda['error']} | - | - | not measured |")
    else:
        ok = step_cuda["share"] < STEP_SHARE_TARGET
        lines.append(f"| CUDA | {step_cuda['batch']} (+{step_cuda['subs']}) | {step_cuda['width']} | "
                     f"{ms(step_cuda['step'])} | {ms(step_cuda['rebuild'])} | {step_cuda['share']:.1f}% | "
                     f"< {STEP_SHARE_TARGET:.0f}%: {verdict(ok)} |")
    cores = d["cpu_count"]
    lines += [
        "",
        f"### 3. DataLoader throughput (batch 64, shuffle, fork; {loader_m:,} images 3x{SIDE}x{SIDE} uint8 + "
        f"float32 dense N={N_DENSE} C={NUM_CLASSES}, file {set_size / 1e6:.1f} MB)",
        "",
        f"This machine has {cores} logical cores, so 4 workers oversubscribe it. Start-up = time to the first "
        f"batch of an epoch (forking the workers, each opening the file, the first 64 items); the main process "
        f"does nothing else here, whereas in training it would be busy with the model.",
        "",
        "| dataset | workers | items/s (full epoch) | epoch ms | first batch ms (start-up) "
        "| items/s after the first batch | dataset construction ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in loads:
        name = "`DLADataset(path, in_memory=True)`" if r["in_memory"] else "`DLADataset(path)`"
        steady = (r["m"] - 64) / (r["epoch"].median - r["first"].median)
        lines.append(f"| {name} | {r['workers']} | {rate(r['m'], r['epoch'])} | {ms(r['epoch'])} | {ms(r['first'])} "
                     f"| {steady:,.0f} | {1e3 * r['construct']:,.0f} |")
    verdicts = [
        f"On the fly (CPU, {threads} threads) vs materialised, chunked + fletcher32: "
        f"{r_chunked:.2f}x -> >= {REBUILD_TARGET:.1f}x: {verdict(r_chunked >= REBUILD_TARGET)}",
        f"On the fly (CPU) vs materialised, contiguous without checksum: {r_contig:.2f}x -> "
        f">= {REBUILD_TARGET:.1f}x: {verdict(r_contig >= REBUILD_TARGET)}",
    ]
    if t_cuda is not None:
        rc = t_chunked.median / t_cuda.median
        verdicts.append(f"On the fly (CUDA) vs materialised, chunked + fletcher32 (CPU read): {rc:.2f}x -> "
                        f">= {REBUILD_TARGET:.1f}x: {verdict(rc >= REBUILD_TARGET)}")
    else:
        verdicts.append(f"On the fly on CUDA: {CUDA_NA}")
    verdicts.append(f"Rebuild share of a step on the CPU: {step_cpu['share']:.1f}% (informational; the "
                    f"< {STEP_SHARE_TARGET:.0f}% target is for a GPU)")
    if step_cuda is not None and "error" not in step_cuda:
        verdicts.append(f"Rebuild share of a step on CUDA: {step_cuda['share']:.1f}% -> < {STEP_SHARE_TARGET:.0f}%: "
                        f"{verdict(step_cuda['share'] < STEP_SHARE_TARGET)}")
    else:
        verdicts.append(f"Rebuild share of a step on a GPU: {CUDA_NA}")
    lines += ["", "Targets:", "", *[f"- {v}" for v in verdicts]]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small smoke-test run (< 20 s); writes nothing unless --data-dir/--results")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results-key", default="torch_loader",
                    help="the results section (RESULTS/loader.md) to write, and the name of its JSON (a GPU machine's run writes "
                         "its own beside the CPU one)")
    ap.add_argument("--cuda-step-batch", type=int, default=16,
                    help="images per training step on CUDA (each brings 25 sub-images); CPU uses 8 (quick: 1)")
    add_output_args(ap)
    args = ap.parse_args(argv)
    out = Output.from_args(args)
    payload = out.load(args.results_key) if out.render_only else out.save(args.results_key, measure(args))
    section = render(payload)
    print()
    print(section)
    out.update(args.results_key, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
