"""ImageNet-1K scale: C = 1000 classes, 224 px, IPC x 1000 images, every `ladd` command end to end, each
timed and its peak memory (RSS) measured as its own process.

Usage::

    .venv/bin/python benchmarks/scale.py                 # CPU profile: IPC 10 (10,000 images), ~18 min on
                                                         # 2 cores; saves results/scale.json and writes the
                                                         # section of RESULTS/scale.md; needs ~9 GB of disk
                                                         # under benchmarks/_work/scale
    .venv/bin/python benchmarks/scale.py --ipc 50 --skip-label-pass --whole-evaluate stream \
        --results-key scale_ipc50                        # memory against IPC: 50,000 images, ~1 h, ~30 GB of disk
    python3 benchmarks/scale.py --device cuda --steps device --whole-evaluate stream --shards 1 \
        --results-key scale_gpu                          # the GPU profile: every image labelled (250,000
                                                         # sub-images) and the ResNet-18 student on all of
                                                         # them; run by benchmarks/gpu_session.sh scale; not
                                                         # yet run (no GPU lent since it was written)
    .venv/bin/python benchmarks/scale.py --ipc 1 --quick   # 1,000 images, a few minutes, prints only
    .venv/bin/python benchmarks/scale.py --render-only [--results-key scale_ipc50]

Each input and output file is deleted as soon as no later step reads it (its size is recorded first),
so the disk holds at most the inputs and about two converted files at once.

What runs (each step is one `ladd` command, or one `python -c` for the loader, in its own process:
its wall time and peak RSS, from ``os.wait4``, are what the table shows):

1. inputs, written by this script in bounded memory (not timed): ``plain.npz`` (uint8 NCHW images and
   labels) and ``dense.npz`` (the same images, plus 1000-way dense labels of shape (M, 25, 1000),
   float32, as ``ladd export --format npz`` writes them). The images are smooth random fields (8x8
   blocks plus noise), not photographs: timings and memory do not depend on content, compressed
   sizes do (random pixels compress less than photographs). The dense labels are softmaxes of random
   logits with the image's class raised (top-1 probability about 0.5): a stand-in for a real labeler's.
   Also an SRe2L-style tree of the same images as JPEG files (PIL's default quality, as SRe2L saves).
2. ``ladd convert npz`` of both (``--num-classes`` and ImageNet's mean/std; the dense one with ``--codec``);
   ``ladd convert sre2l`` and ``ladd convert folder`` of the JPEG tree (the RDED converter reads its
   tree with the same code);
3. ``ladd augment`` with a torchvision ResNet-18 labeler (random weights: the timing does not depend
   on them) at 224 px, on the first ``--label-images`` images only where the CPU is too slow for all
   of them (the table says how many), in chunks of a quarter of them on the CPU (augment's default
   chunk on a GPU); then the same with
   ``--shards 2`` (two processes sharing the cores): the shape of the multi-process scaling;
4. ``ladd verify``, ``ladd size`` (zip and zstd), ``ladd info``, ``ladd export --format npz`` of the
   dense file;
5. one epoch of :class:`ladd_format.torch.DLADataset` through a ``DataLoader`` (batch 256, 2 workers):
   images and decoded dense labels, as a training loop receives them; then the same with
   ``stored=True`` (uint8 images and the codec's rows cross the processes) and
   ``decode_batch`` on each batch in the main process (the training device's place);
6. ``ladd evaluate``: one epoch of a ResNet-18 student in ``ladd`` mode (all 25 sub-images) on the
   labelled images, in micro-batches of ``--micro-batch`` images, tested on ``--test-images``
   generated images. Not on all 10,000 images on a CPU: one epoch over 26 views of each is hours on
   2 cores. Then the memory of ``evaluate`` on the whole set: one epoch of a small student (ConvNet-D3
   width 4, one sub-image per step) on all the images of the dense file, with the set held in memory
   (``--in-memory``; the default holds only sets up to 1 GiB as stored, and this one is 1.5 GB) and
   with ``--stream``; the two must give the same student (same test accuracy).

``evaluate --json`` reports how long a streamed run's training waited for its batches (the reader
thread's reads not hidden behind the steps); the section gives that share for each streamed run (the
issue's target on a GPU: < 10% with a ResNet-18 student).

``--steps device`` runs only the steps a GPU changes (the dense convert the loaders and evaluate read,
the loaders, the label pass, evaluate) and skips writing the plain npz and the JPEG tree;
``--step-timeout S`` kills a step (and what it started) after S seconds and goes on, recording exit
``timeout``. After every step the steps so far are written to ``<data dir>/<key>.partial.json``
(deleted when the run ends), so a run stopped from outside keeps what it measured.

``--skip-label-pass`` leaves out the steps whose size is set by ``--label-images`` rather than by the
IPC (the small convert, both label passes, the ResNet-18 ``evaluate``); ``--whole-evaluate`` picks the
whole-set ``evaluate`` runs (``held,stream``, ``stream``, or ``none``).

No GPU figure is produced unless ``--device cuda`` runs on a machine with one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import Output, add_output_args, gpu_line  # noqa: E402

from ladd_format.rows import write_npz_member  # noqa: E402

NAME = KEY = "scale"
TITLE = "## ImageNet-1K scale: every command at C = 1000, 224 px"
TITLES = {KEY: TITLE, "scale_ipc50": "## ImageNet-1K scale at IPC 50: memory against the number of images",
          "scale_gpu": "## ImageNet-1K scale on a GPU: every command at C = 1000, 224 px"}
#: the run a section is compared with: the IPC 50 section with the IPC 10 run (``results/scale.json``)
BASES = {"scale_ipc50": "scale"}
WORK = HERE / "_work" / "scale"
N, RATIO = 5, 0.625
CHUNK = 250            # images generated and written per step
LADD = [sys.executable, "-m", "ladd_cli.main"]
MEAN, STD = "0.485,0.456,0.406", "0.229,0.224,0.225"   # ImageNet's, as --dataset imagenet sets them
# Each step runs under this small Python parent, which reports the peak RSS of its one child: a child
# forked straight from this (large) process would count this process's memory at the fork in its peak.
MEASURE = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


# -- inputs ------------------------------------------------------------------------------------------

def _images(start: int, stop: int, side: int) -> np.ndarray:
    """Deterministic smooth random images (8x8 blocks plus noise) for rows start..stop."""
    rng = np.random.default_rng(start)
    coarse = rng.integers(0, 256, (stop - start, 3, side // 8, side // 8), dtype=np.int16)
    fine = np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3)
    return np.clip(fine + rng.integers(-12, 13, fine.shape, dtype=np.int16), 0, 255).astype(np.uint8)


def _dense(labels: np.ndarray, classes: int, seed: int) -> np.ndarray:
    """(B, N*N, C) float32 probabilities: softmax of random logits, the image's class raised by 6."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (len(labels), N * N, classes)).astype(np.float32)
    logits[np.arange(len(labels)), :, labels] += 6.0 + rng.normal(0.0, 0.5, (len(labels), N * N)).astype(np.float32)
    logits -= logits.max(axis=-1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=-1, keepdims=True)


def write_inputs(work: Path, m: int, classes: int, side: int, dense: bool) -> Path:
    path = work / ("dense.npz" if dense else "plain.npz")
    labels = np.arange(m, dtype=np.int64) % classes
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        write_npz_member(zf, "images", (m, 3, side, side), np.uint8,
                      (_images(a, min(m, a + CHUNK), side) for a in range(0, m, CHUNK)))
        write_npz_member(zf, "labels", (m,), np.int64, [labels])
        if dense:
            write_npz_member(zf, "dense_labels", (m, N * N, classes), np.float32,
                          (_dense(labels[a:a + CHUNK], classes, a) for a in range(0, m, CHUNK)))
            write_npz_member(zf, "n", (), np.int64, [np.int64(N)])
            write_npz_member(zf, "ratio", (), np.float64, [np.float64(RATIO)])
    tmp.replace(path)
    return path


def write_jpeg_tree(work: Path, m: int, classes: int, side: int) -> Path:
    """An SRe2L-style tree ``new{c:03d}/class{c:03d}_id{i:03d}.jpg`` of the npz's images, saved as SRe2L
    saves them: PIL's default JPEG quality."""
    from PIL import Image

    root = work / "sre2l"
    for c in range(classes):
        (root / f"new{c:03d}").mkdir(parents=True, exist_ok=True)
    for a in range(0, m, CHUNK):
        block = _images(a, min(m, a + CHUNK), side)
        for j, chw in enumerate(block):
            i = a + j
            c = i % classes
            Image.fromarray(chw.transpose(1, 2, 0)).save(root / f"new{c:03d}" / f"class{c:03d}_id{i // classes:03d}.jpg")
    return root


def write_test_npz(work: Path, m: int, classes: int, side: int) -> Path:
    path = work / "test.npz"
    np.savez(path, images=_images(10**6, 10**6 + m, side), labels=np.arange(m, dtype=np.int64) % classes)
    return path


def save_resnet_labeler(path: Path, classes: int, side: int) -> None:
    import torch

    from ladd_format.labeler.checkpoint import save_checkpoint
    from ladd_format.torch.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=classes, image_size=side).eval()
    meta = {"arch": "resnet18", "arch_kwargs": {}, "num_classes": classes, "channels": 3, "image_size": side,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "class_names": [str(i) for i in range(classes)], "epoch": 0,
            "training_data": "none (random weights, timing only)"}
    save_checkpoint(model, meta, path)


# -- one measured step -------------------------------------------------------------------------------

def run_step(name: str, argv: list[str], log: Path, env: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``argv`` as its own process; its wall time, peak RSS and exit status. After ``timeout``
    seconds the step and everything it started are killed (exit ``"timeout"``, no peak recorded).
    An ``evaluate --json`` step also reports its ``data_wait`` share (streamed runs)."""
    shown = argv[len(LADD):] if argv[:len(LADD)] == LADD else ["python", "-c", "..."]
    print(f"[scale] {name}: {' '.join(shown)}", file=sys.stderr, flush=True)
    with open(log, "ab") as out:
        out.write(f"\n== {name}: {argv}\n".encode())
        out.flush()
        offset = out.tell()
        peak = log.with_name("peak_rss_kb")
        peak.unlink(missing_ok=True)
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", MEASURE, str(peak), *argv], stdout=out, stderr=out, cwd=ROOT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = "timeout"
        wall = time.perf_counter() - start
    rss_mb = round(int(peak.read_text()) / 1024, 1) if peak.exists() else None     # None: killed, not measured
    result = {"step": name, "seconds": round(wall, 2), "peak_rss_mb": rss_mb, "rc": rc}
    print(f"[scale] {name}: {wall:.1f} s, peak RSS {rss_mb if rss_mb is None else round(rss_mb)} MB, exit {rc}",
          file=sys.stderr, flush=True)
    with open(log, "rb") as f:
        f.seek(offset)
        output = f.read().decode(errors="replace")
    share = re.search(r'"data_wait": \{[^}]*"share": ([0-9.eE+-]+)', output)
    if share:
        result["data_wait_share"] = float(share.group(1))
    if rc != 0:
        result["error"] = " | ".join(output.strip().splitlines()[-3:])
    return result


LOADER = """
import sys, time, torch
from torch.utils.data import DataLoader
from ladd_format.torch import DLADataset
ds = DLADataset(sys.argv[1])
loader = DataLoader(ds, batch_size=256, num_workers=2)
start = time.perf_counter(); items = 0
for image, label, dense in loader:
    items += image.shape[0]
print(f"items {items} seconds {time.perf_counter() - start:.3f}")
"""


LOADER_STORED = """
import sys, time, torch
from torch.utils.data import DataLoader
from ladd_format.torch import DLADataset
ds = DLADataset(sys.argv[1], stored=True)
loader = DataLoader(ds, batch_size=256, num_workers=2)
start = time.perf_counter(); items = 0
for image, label, rows in loader:
    x, dense = ds.decode_batch(image, rows)      # on the training device: here the CPU
    items += x.shape[0]
print(f"stored items {items} seconds {time.perf_counter() - start:.3f}")
"""


def profile(args, m: int) -> tuple[int, int]:
    """(images labelled by augment, the ResNet-18 evaluate's micro-batch): as given, else the CPU
    profile's 64 images in micro-batches of 1, or a GPU's all images in whole batches of 64."""
    gpu = args.device != "cpu"
    labeled = args.label_images if args.label_images is not None else (m if gpu else 64)
    return min(m, labeled), args.micro_batch if args.micro_batch is not None else (64 if gpu else 1)


#: the steps ``--steps device`` leaves out: they use no device, and the CPU profile measures them
HOST_ONLY = ("convert npz (images, labels)", "convert sre2l", "convert folder", "verify", "size ", "info",
             "export ")


def run(args, partial: Path | None = None) -> dict:
    """Every step; ``partial`` (a path) is rewritten after each step with the steps so far."""
    work = Path(args.work)
    if work.exists():
        if any(work.iterdir()) and not (work / "scale.log").exists():
            raise SystemExit(f"{work}: not empty and not a folder of this benchmark; refusing to empty it")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log = work / "scale.log"
    m = args.ipc * args.classes
    t0 = time.perf_counter()
    device_only = getattr(args, "steps", "all") == "device"
    plain_npz = write_inputs(work, m, args.classes, args.side, dense=False) if not device_only else None
    dense_npz = write_inputs(work, m, args.classes, args.side, dense=True)
    labeled, micro = profile(args, m)
    tree = write_jpeg_tree(work, m, args.classes, args.side) if not (args.no_jpeg or device_only) else None
    test_npz = write_test_npz(work, args.test_images, args.classes, args.side)
    made = time.perf_counter() - t0
    label_pass = not getattr(args, "skip_label_pass", False)
    small_npz = work / "small.npz"
    if label_pass:
        with zipfile.ZipFile(small_npz, "w", zipfile.ZIP_STORED) as zf:
            write_npz_member(zf, "images", (labeled, 3, args.side, args.side), np.uint8,
                             [_images(0, labeled, args.side)])
            write_npz_member(zf, "labels", (labeled,), np.int64, [np.arange(labeled, dtype=np.int64) % args.classes])
        save_resnet_labeler(work / "resnet18.safetensors", args.classes, args.side)
    sizes = {p.name: p.stat().st_size for p in (plain_npz, dense_npz) if p is not None}
    if tree is not None:
        sizes["sre2l/ (JPEG)"] = sum(f.stat().st_size for f in tree.rglob("*.jpg"))
    out = {name: work / f"{name}.dla.h5" for name in ("plain", "dense", "small", "augmented", "sharded", "jpeg",
                                                      "folder")}
    common = ["--num-classes", str(args.classes), "--mean", MEAN, "--std", STD]
    # on the CPU chunks of a quarter of the images (16), so that --shards has chunks to share out among
    # its processes; on a GPU augment's default chunk (256 images), whose reads overlap the labeler
    augment_chunks = ["--batch-size", str(max(1, labeled // 4))] if args.device == "cpu" else []
    whole_runs = [w for w in getattr(args, "whole_evaluate", "held,stream").split(",") if w and w != "none"]
    # files no later step reads, deleted after the step named (sizes recorded first)
    drop = {"convert npz (images, labels)": [p for p in (plain_npz, out["plain"]) if p is not None],
            "convert sre2l (JPEG tree)": [out["jpeg"]], "convert folder (same JPEG tree)": [out["folder"]],
            "export --format npz": [work / "export.npz"]}
    steps = [
        ("convert npz (images, labels)", LADD + ["convert", "npz", str(plain_npz), "-o", str(out["plain"]),
                                                *common]),
        (f"convert npz (+ dense, {args.codec})", LADD + ["convert", "npz", str(dense_npz), "-o", str(out["dense"]),
                                                         *common, "--codec", args.codec]),
        *([("convert sre2l (JPEG tree)", LADD + ["convert", "sre2l", str(tree), "-o", str(out["jpeg"]),
                                                  "--num-classes", str(args.classes)]),
           ("convert folder (same JPEG tree)", LADD + ["convert", "folder", str(tree), "-o", str(out["folder"]),
                                                        "--mean", MEAN, "--std", STD])] if tree else []),
        ("verify", LADD + ["verify", str(out["dense"])]),
        ("size --method zip", LADD + ["size", str(out["dense"]), "--json"]),
        ("size --method zstd", LADD + ["size", str(out["dense"]), "--method", "zstd", "--json"]),
        ("info", LADD + ["info", str(out["dense"])]),
        ("export --format npz", LADD + ["export", str(out["dense"]), "--format", "npz", "-o",
                                        str(work / "export.npz")]),
        ("DLADataset epoch (DataLoader, 2 workers)", [sys.executable, "-c", LOADER, str(out["dense"])]),
        ("DLADataset(stored=True) epoch + decode_batch (2 workers)",
         [sys.executable, "-c", LOADER_STORED, str(out["dense"])]),
        *([(f"convert npz ({labeled} images, for augment)", LADD + ["convert", "npz", str(small_npz), "-o",
                                                               str(out["small"]), *common]),
        (f"augment, ResNet-18 at {args.side} px ({labeled} images)",
         LADD + ["augment", str(out["small"]), "--labeler", str(work / "resnet18.safetensors"), "-o",
                 str(out["augmented"]), "--codec", args.codec, "--device", args.device, *augment_chunks]),
        *([(f"augment --shards {args.shards} ({labeled} images)",
            LADD + ["augment", str(out["small"]), "--labeler", str(work / "resnet18.safetensors"), "-o",
                    str(out["sharded"]), "--codec", args.codec, "--device", args.device, *augment_chunks,
                    "--shards", str(args.shards)])] if args.shards > 1 else []),
        (f"evaluate, ResNet-18 student at {args.side} px, ladd mode ({labeled} images, 1 epoch)",
         LADD + ["evaluate", str(out["augmented"]), "--test", str(test_npz), "--arch", "resnet18", "--mode", "ladd",
                 "--epochs", "1", "--seeds", "1", "--batch-size", "64", "--micro-batch", str(micro),
                 "--device", args.device, "--json"])] if label_pass else []),
        *[(f"evaluate{' --stream' if stream else ''}, all {m:,} images: ConvNet-D3 w4 student, ladd mode with 1 "
           f"sub-image per step, micro-batch 16, 1 epoch" + ("" if stream else " (set held in memory)"),
           LADD + ["evaluate", str(out["dense"]), "--test", str(test_npz), "--arch", "convnet-d3", "--width", "4",
                   "--mode", "ladd", "--sub-per-image", "1", "--epochs", "1", "--seeds", "1", "--batch-size", "256",
                   "--micro-batch", "16", "--device", args.device, "--json", "--stream" if stream else "--in-memory"])
          for stream in (False, True) if ("stream" if stream else "held") in whole_runs],
    ]
    drop[f"convert npz (+ dense, {args.codec})"] = [dense_npz]
    if tree is not None:
        drop["convert folder (same JPEG tree)"].append(tree)
    if device_only:
        steps = [(name, argv) for name, argv in steps if not name.startswith(HOST_ONLY)]
    results, files = [], {}
    timeout = getattr(args, "step_timeout", None)
    for name, argv in steps:
        results.append(run_step(name, argv, log, timeout=timeout))
        if partial is not None:         # what has run so far, should the run itself be stopped
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"steps": results, "device": args.device, "images": m}, indent=1))
        for path in drop.get(name, []):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                files[path.name] = path.stat().st_size
                path.unlink()
    files.update({p.name: p.stat().st_size for p in work.iterdir() if p.suffix in (".h5", ".npz")})
    # the accuracies of the two whole-set evaluate runs (held, streamed): the same seed must give the same
    whole = [part for part in log.read_text().split("\n== ") if part.startswith("evaluate") and "all " in part[:40]]
    accuracies = [re.findall(r'"accuracies": \[([^\]]*)\]', part) for part in whole]
    loader_line = [ln for ln in log.read_text().splitlines() if ln.startswith("items ")]
    stored_line = [ln for ln in log.read_text().splitlines() if ln.startswith("stored items ")]
    return {"images": m, "classes": args.classes, "side": args.side, "ipc": args.ipc, "codec": args.codec,
            "label_images": labeled, "device": args.device, "inputs_seconds": round(made, 1),
            "input_bytes": sizes, "file_bytes": files, "steps": results,
            "loader": loader_line[-1] if loader_line else None,
            "loader_stored": stored_line[-1].removeprefix("stored ") if stored_line else None,
            "whole_set_accuracies": [[float(v) for v in found[-1].split(",")] if found else None
                                     for found in accuracies]}


def render(payload: dict) -> str:
    d = payload["data"]
    lines = [f"- Machine: {payload['machine']}" + (f"; GPU: {d['gpu']}" if d.get("gpu") else ""),
             f"- Date: {payload['date']}; command: `{payload['command']}`",
             f"- Set: {d['images']:,} images ({d['ipc']} per class) x {d['classes']} classes, 3x{d['side']}x{d['side']} "
             f"uint8; dense labels N = {N}, R = {RATIO}, codec `{d['codec']}`; generated inputs (see "
             "`benchmarks/scale.py`): "
             + ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in d["input_bytes"].items()),
             "- Each step is its own process (started from a small parent); peak RSS is the largest resident "
             "memory of that process or of any one worker it started (`os.wait4`). Wall seconds include the "
             "start of Python and the imports (~0.4 s).",
             "", "| step | seconds | peak RSS (MB) | exit |", "|---|---:|---:|---:|"]
    for s in d["steps"]:
        peak = "-" if s["peak_rss_mb"] is None else f"{s['peak_rss_mb']:,.0f}"
        lines.append(f"| {s['step']} | {s['seconds']:.1f} | {peak} | {s['rc']} |")
    lines.append("")
    lines.append("Files: " + ", ".join(f"`{k}` {v / 2**20:,.0f} MiB" for k, v in sorted(d["file_bytes"].items())))
    if d.get("loader"):
        items, secs = d["loader"].split()[1], float(d["loader"].split()[3])
        lines.append(f"\nLoader: {int(items):,} items in {secs:.1f} s ({int(items) / secs:,.0f} items/s).")
    if d.get("loader_stored"):
        items, secs = d["loader_stored"].split()[1], float(d["loader_stored"].split()[3])
        lines.append(f"Loader with `stored=True` (uint8 images and top-k rows cross the processes; `decode_batch` "
                     f"normalises and decodes each batch in the main process): {int(items):,} items in {secs:.1f} s "
                     f"({int(items) / secs:,.0f} items/s).")
    label = [s for s in d["steps"] if s["step"].startswith("augment") and s["rc"] == 0]
    if label:
        sub = d["label_images"] * N * N
        lines.append(f"\nLabel pass: {d['label_images']} images ({sub:,} sub-images) in {label[0]['seconds']:.1f} s, "
                     f"{sub / label[0]['seconds']:,.1f} sub-images/s on {d['device']}"
                     + (f": all {d['images'] * N * N:,} sub-images would take about "
                        f"{d['images'] * N * N / (sub / label[0]['seconds']) / 3600:,.1f} h"
                        if d["label_images"] < d["images"] else "") + "."
                     + (f" ImageNet-1K at IPC 50 (1.25 M sub-images) at this rate: about {1.25e6 * label[0]['seconds'] / sub:,.0f} s "
                        f"(target < 60 s, end to end: read, label, encode, write)." if d["device"] != "cpu" else ""))
    sharded = [s for s in d["steps"] if s["step"].startswith("augment --shards") and s["rc"] == 0]
    if label and sharded:
        lines.append(f"\n`{sharded[0]['step']}`: {sharded[0]['seconds']:.1f} s against {label[0]['seconds']:.1f} s in one "
                     f"process ({label[0]['seconds'] / sharded[0]['seconds']:.2f}x), each process with its share of "
                     "the cores' threads.")
    accs = d.get("whole_set_accuracies") or []
    if len(accs) == 1 and accs[0]:
        lines.append(f"\nWhole-set `evaluate`: test accuracy {accs[0][0]:.4f}.")
    if len(accs) == 2 and all(accs):
        lines.append(f"\nWhole-set `evaluate`: test accuracy {accs[0][0]:.4f} held in memory, {accs[1][0]:.4f} "
                     f"streamed ({'the same student' if accs[0] == accs[1] else 'DIFFERENT: a bug'}).")
    waits = [s for s in d["steps"] if s.get("data_wait_share") is not None]
    if waits:
        lines.append("\nData wait of the streamed `evaluate` runs (the share of the training time the loop waited "
                     "for the reader thread's next batch; target on a GPU: < 10%): "
                     + "; ".join(f"{s['step'].split(':')[0]}: {100 * s['data_wait_share']:.1f}%" for s in waits) + ".")
    failed = [s for s in d["steps"] if s["rc"] != 0]
    for s in failed:
        lines.append(f"\n`{s['step']}` failed: {s.get('error', '')}")
    return "\n".join(lines)


def _same_step(name: str) -> str:
    return re.sub(r"all [\d,]+ images", "all the images", name)


def compare(payload: dict, base: dict, base_name: str) -> str:
    """This run's steps against ``base``'s (another IPC, saved as ``results/{base_name}.json``): peak
    memory and time of each step both ran, and the memory each 10,000 more images added."""
    d, b = payload["data"], base["data"]
    before = {_same_step(s["step"]): s for s in b["steps"]}
    per = 10_000 / (d["images"] - b["images"]) if d["images"] != b["images"] else 0.0
    lines = [f"Against the IPC {b['ipc']} run of the same code ({b['images']:,} images, {base['date']}, "
             f"`results/{base_name}.json`; a different hour of the shared machine, so times compare "
             "loosely):", "",
             f"| step | peak RSS at IPC {b['ipc']} (MB) | at IPC {d['ipc']} (MB) | MB per 10,000 more images | "
             f"seconds at IPC {b['ipc']} | at IPC {d['ipc']} | time ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
    for s in d["steps"]:
        old = before.get(_same_step(s["step"]))
        if old is None or s["rc"] or old["rc"]:
            continue
        lines.append(f"| {s['step']} | {old['peak_rss_mb']:,.0f} | {s['peak_rss_mb']:,.0f} | "
                     f"{(s['peak_rss_mb'] - old['peak_rss_mb']) * per:+,.0f} | {old['seconds']:.1f} | "
                     f"{s['seconds']:.1f} | {s['seconds'] / old['seconds']:.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--codec", default="topk:k=10,values=float16")
    parser.add_argument("--label-images", type=int, default=None,
                        help="images labelled by `ladd augment` (default: 64 on the CPU, all of them on a GPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shards", type=int, default=2, help="processes of the sharded label pass (1: not run)")
    parser.add_argument("--micro-batch", type=int, default=None,
                        help="the ResNet-18 evaluate's images per forward/backward (default: 1 on the CPU, the whole "
                             "batch of 64 on a GPU)")
    parser.add_argument("--test-images", type=int, default=200, help="evaluate's test set")
    parser.add_argument("--no-jpeg", action="store_true", help="skip the JPEG tree and its converters")
    parser.add_argument("--skip-label-pass", action="store_true",
                        help="leave out the steps sized by --label-images, not by the IPC (module docstring)")
    parser.add_argument("--whole-evaluate", default="held,stream",
                        help="the whole-set evaluate runs: held,stream | held | stream | none")
    parser.add_argument("--results-key", default=KEY, choices=sorted(TITLES),
                        help="the JSON and the section of RESULTS/scale.md this run writes (scale_ipc50: the IPC 50 run)")
    parser.add_argument("--steps", choices=("all", "device"), default="all",
                        help="device: only the steps a GPU changes (the dense convert they read, the loaders, the "
                             "label pass, evaluate); the others are the CPU profile's")
    parser.add_argument("--step-timeout", type=float, default=None,
                        help="seconds after which a step is killed (recorded as exit 'timeout'); the run goes on")
    parser.add_argument("--work", default=str(WORK))
    parser.add_argument("--quick", action="store_true", help="print only unless --data-dir/--results")
    add_output_args(parser)
    args = parser.parse_args(argv)
    unknown = set(args.whole_evaluate.split(",")) - {"held", "stream", "none"}
    if unknown:
        parser.error(f"--whole-evaluate takes held, stream or none (comma-separated), got {', '.join(sorted(unknown))}")
    gpu = gpu_line() if args.device != "cpu" else None
    out = Output.from_args(args)
    show = render
    base = BASES.get(args.results_key)
    if base and (out.data_dir / f"{base}.json").exists():
        def show(payload):
            return render(payload) + "\n\n" + compare(payload, out.load(base), base)
    partial = out.data_dir / f"{args.results_key}.partial.json" if out.write and not out.render_only else None

    def measure():
        data = {**run(args, partial), "gpu": gpu}
        if partial is not None:
            partial.unlink(missing_ok=True)
        return data
    return out.publish(args.results_key, TITLES[args.results_key], show, measure)


if __name__ == "__main__":
    sys.exit(main())
