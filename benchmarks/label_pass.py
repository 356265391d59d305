"""Labeler-pass throughput: `ladd augment` end to end against the bare labeler forward and against
the literal per-sub-image loop of the paper's Algorithm 1, measured in one run.

Usage::

    .venv/bin/python benchmarks/label_pass.py                # saves results/label_pass.json and updates
                                                             # the label_pass section of RESULTS/label-pass.md
    .venv/bin/python benchmarks/label_pass.py --render-only  # re-render the section from the saved JSON
    .venv/bin/python benchmarks/label_pass.py --quick        # tiny sizes, prints only
    .venv/bin/python benchmarks/label_pass.py --results-key label_pass_gpu   # a CUDA run, its own section

For each configuration (ConvNet-D5 width 128 at 128 px, the paper's labeler; ConvNet-D3 width 128
at 32 px; on a GPU also ResNet-18 with 1000 classes at 224 px, ImageNet-1K's labeler) a plain set D
of M random uint8 images is written, a labeler with random weights is saved (the weights do not
change the timing), and three ways of producing the same dense labels are timed:

- pass: :func:`ladd_format.labeler.label_pass` — read, normalise, rebuild sub-images, forward, softmax,
  encode (float32) and write the D_LA, assembly included;
- bare forward: the same labeler on the same sub-images already built and normalised in memory, in
  batches of the pass's chunk (the compute floor; target: pass >= 0.9x of it);
- Algorithm 1: for each image, for each of its N*N sub-images, one crop-and-resize and one forward
  of a batch of one (timed on a few images; target: pass >= 10x faster).

FLOPs per sub-image are counted with ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add
counts 2). On a GPU the pass's FLOP rate is set against the rate of a bfloat16 8192^3 matrix
product measured in the same run (the GPU's practical ceiling). Only the CPU is measured here unless
CUDA is available; no GPU figure is invented.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _common import Output, add_output_args, gpu_line  # noqa: E402
from ladd_format import DLAWriter  # noqa: E402
from ladd_format.geometry import boxes as make_boxes  # noqa: E402
from ladd_format.labeler import AugmentConfig, augment  # noqa: E402
from ladd_format.labeler.label_pass import assemble, forward_limit, label_chunks, labeler_logits, prepare  # noqa: E402
from ladd_format.labeler.checkpoint import save_checkpoint  # noqa: E402
from ladd_format.torch.models import build_model  # noqa: E402
from ladd_format.torch import subimages  # noqa: E402

WORK = HERE / "_work" / "label_pass"       # its own folder: the other benchmarks keep theirs
N, RATIO = 5, 0.625


def write_plain(path: Path, m: int, side: int, classes: int = 10) -> np.ndarray:
    images = np.random.default_rng(0).integers(0, 256, (m, 3, side, side), dtype=np.uint8)
    with DLAWriter(path, num_classes=classes, image_shape=(3, side, side), mean=(0.5,) * 3, std=(0.25,) * 3,
                   overwrite=True) as w:
        w.append(images, np.arange(m) % classes)
    return images


def save_labeler(path: Path, arch: str, side: int, classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=classes, image_size=side).eval()
    meta = {"arch": arch, "arch_kwargs": {}, "num_classes": classes, "channels": 3, "image_size": side,
            "mean": [0.5] * 3, "std": [0.25] * 3, "class_names": [str(i) for i in range(classes)], "epoch": 0,
            "training_data": "none (random weights, timing only)"}
    save_checkpoint(model, meta, path)
    return model


def flops_per_subimage(model: torch.nn.Module, side: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 3, side, side))
    return float(counter.get_total_flops())


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


#: the labelers measured: (arch, its name in the table, classes); ResNet-18 with ImageNet's 1000
#: classes at 224 px, the ConvNets with 10 at 128 and 32 px (the paper's labeler and a small one)
LABELERS = {"convnet-d5": ("ConvNet-D5 w128", 10), "convnet-d3": ("ConvNet-D3 w128", 10),
            "resnet18": ("ResNet-18 (1000 classes)", 1000)}


def bench(arch: str, side: int, m: int, chunk: int, loop_images: int, repeats: int, device: str,
          precision: str = "float32") -> dict:
    label, classes = LABELERS[arch]
    folder = WORK / f"{arch}_{side}"
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / "d.dla.h5"
    images = write_plain(plain, m, side, classes)
    ckpt = folder / "labeler.safetensors"
    model = save_labeler(ckpt, arch, side, classes).to(device)
    boxes = make_boxes(side, side, N, RATIO)
    subs_total = m * N * N

    out = folder / "la.dla.h5"
    cfg = AugmentConfig(n=N, ratio=RATIO, batch_size=chunk, device=device, precision=precision, overwrite=True)
    augment(plain, ckpt, out, cfg)                                            # warm-up
    phases = []

    def the_pass():                      # = augment(), with its two phases timed
        t0 = time.perf_counter()
        plan = prepare(plain, ckpt, out, cfg)
        label_chunks(plan)
        t1 = time.perf_counter()
        assemble(plan)
        phases.append((t1 - t0, time.perf_counter() - t1))
    t_pass = timed(the_pass, repeats)
    t_label = statistics.median(p[0] for p in phases)
    t_assemble = statistics.median(p[1] for p in phases)

    x = (torch.from_numpy(images).float().to(device) / 255 - 0.5) / 0.25
    built = subimages(x, boxes).flatten(0, 1)                                 # (M*25, 3, S, S), in memory

    step = min(chunk * N * N, forward_limit(cfg.forward_batch, (side, side), torch.device(device)))   # what the pass uses

    def bare():
        with torch.inference_mode():
            for start in range(0, len(built), step):
                torch.softmax(labeler_logits(model, built[start:start + step], precision), -1).cpu()
    bare()
    t_bare = timed(bare, repeats)

    def algorithm1():
        with torch.inference_mode():
            for i in range(loop_images):
                for top, left, h, w in boxes.tolist():
                    sub = TF.resized_crop(x[i:i + 1], top, left, h, w, [side, side], antialias=True)
                    torch.softmax(model(sub), -1).cpu()
    algorithm1()
    t_loop = timed(algorithm1, max(1, repeats - 1))
    flops = flops_per_subimage(model.cpu(), side)
    shutil.rmtree(folder)
    name = f"{label}, {side} px" + (f", {precision}" if device == "cuda" else "")
    return {"name": name, "m": m, "chunk": chunk, "subs": subs_total,
            "pass": subs_total / t_pass, "bare": subs_total / t_bare, "label": subs_total / t_label,
            "assemble": t_assemble, "total": t_pass,
            "loop": loop_images * N * N / t_loop, "flops": flops, "device": device}


def measure(quick: bool) -> dict:
    """Every configuration's throughputs, as plain data, and the device they ran on."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if quick:
        configs = [("convnet-d3", 32, 16, 8, 2, 1)]
    elif device == "cuda":        # enough sub-images to fill a GPU: 25,000 at 128 and 224 px, 102,400 at 32 px
        configs = [("convnet-d5", 128, 1000, 128, 4, 3), ("resnet18", 224, 1000, 128, 4, 3),
                   ("convnet-d3", 32, 4096, 512, 8, 3)]
    else:                         # (ResNet-18 at 224 px: scale.py's label pass, ~32 sub-images/s on 2 cores)
        configs = [("convnet-d5", 128, 32, 16, 2, 3), ("convnet-d3", 32, 256, 64, 8, 3)]
    precisions = ("bfloat16", "float32") if device == "cuda" else ("float32",)
    rows = [bench(d, s, m, c, loop, rep, device, prec) for d, s, m, c, loop, rep in configs for prec in precisions]
    shutil.rmtree(WORK, ignore_errors=True)
    return {"device": device, "gpu": gpu_line() if device == "cuda" else None,
            "gpu_name": torch.cuda.get_device_name(0) if device == "cuda" else None, "rows": rows,
            "matmul_tflops": matmul_tflops() if device == "cuda" else None}


def matmul_tflops(n: int = 8192, repeats: int = 10) -> float:
    """TFLOP/s of a bfloat16 n x n x n matrix product on random data on CUDA (the mean of ``repeats``
    after three warm-ups, CUDA events): the ceiling the labeler's rate is compared with."""
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (start.elapsed_time(end) / 1e3) / 1e12


def title(payload: dict) -> str:
    d = payload["data"]
    return ("Labeler pass throughput" + (f" on {d['gpu_name']}" if d["device"] == "cuda" else "")
            + " (labeler and the batched labeler pass)")


def render(payload: dict) -> str:
    """The section (title excluded) from the saved data."""
    d = payload["data"]
    device, rows = d["device"], d["rows"]
    lines = [f"- Machine: {payload['machine']}; device: {device}"
             + (f" = {d['gpu']}" if device == "cuda"
                else " (CUDA not available on this machine: no GPU figure is reported)"),
             f"- Date: {payload['date']}; command: "
             f"`{payload['command']}`; medians of 3 runs after a warm-up.",
             "- Random uint8 images and a random-weight labeler (timing does not depend on either); N = 5, "
             "R = 0.625, codec float32, chunk = images per pass chunk, at most 512 sub-images per labeler forward "
             "(on the CPU at most 32 x 224 x 224 input pixels: 98 at 128 px), the same for the bare forward; "
             "precision: the pass's `--precision` (float32 on CUDA turns TF32 off); Algorithm 1 runs in "
             "float32.",
             "",
             "| labeler | images | chunk | pass sub-img/s | bare forward sub-img/s | pass / bare (>= 0.9) "
             "| Algorithm 1 sub-img/s | pass / Alg. 1 (>= 10) | GFLOP / sub-img | pass GFLOP/s "
             "| labeling phase sub-img/s | writing the D_LA s (share) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio_bare, ratio_loop = r["pass"] / r["bare"], r["pass"] / r["loop"]
        lines.append(f"| {r['name']} | {r['m']} | {r['chunk']} | {r['pass']:,.0f} | {r['bare']:,.0f} | "
                     f"{ratio_bare:.2f}x {'PASS' if ratio_bare >= 0.9 else 'FAIL'} | {r['loop']:,.0f} | "
                     f"{ratio_loop:.1f}x {'PASS' if ratio_loop >= 10 else 'FAIL'} | {r['flops'] / 1e9:.3f} | "
                     f"{r['pass'] * r['flops'] / 1e9:,.0f} | {r['label']:,.0f} | "
                     f"{r['assemble']:.2f} ({100 * r['assemble'] / r['total']:.0f}%) |")
    d5 = next((r for r in rows if "D5" in r["name"]), None)
    if d5 is not None:
        paper = 50 * N * N * d5["flops"]
        lines += ["",
                  f"FLOPs: ConvNet-D5 at 128 px costs {d5['flops'] / 1e9:.2f} GFLOP per sub-image, so ImageNette at "
                  f"IPC 5 (50 images x 25 sub-images) is {paper / 1e15:.4f} PFLOP (the paper: 0.002 PFLOP). "
                  f"ImageNet-1K at IPC 50 (50,000 images, 1.25 M sub-images) would take "
                  f"{1.25e6 / d5['pass'] / 60:,.1f} min at this {device} throughput ({d5['name']}).",
                  *resnet_lines(rows, d.get("matmul_tflops")),
                  "", "The pass = the labeling phase (read, rebuild, forward, softmax, chunk files) + writing the "
                  "D_LA (images copied, dense labels encoded, every dataset checksummed)."]
    return "\n".join(lines)


def resnet_lines(rows: list[dict], peak: float | None) -> list[str]:
    """The issue's GPU targets from the rows: ImageNet-1K IPC 50 with the ResNet-18 labeler
    (1.25 M sub-images, target < 60 s), and each row's TFLOP/s against the measured matmul ceiling."""
    lines = []
    for r in rows:
        if r["name"].startswith("ResNet-18"):
            t = 1.25e6 / r["pass"]
            lines += ["", f"ImageNet-1K at IPC 50 with {r['name']}: 1.25 M sub-images labelled and written in about "
                          f"{t:,.0f} s at this pass rate (target < 60 s: {'PASS' if t < 60 else 'FAIL'}; "
                          "extrapolated from the measured rate, not run at that size)."]
    if peak:
        lines += ["", f"bfloat16 matrix product ceiling measured in this run: {peak:,.0f} TFLOP/s. Pass rate as a "
                      "share of it: " + "; ".join(f"{r['name']} {r['pass'] * r['flops'] / 1e12:,.1f} TFLOP/s "
                                                  f"({100 * r['pass'] * r['flops'] / 1e12 / peak:.1f}%)"
                                                  for r in rows) + "."]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes; print only unless --data-dir/--results")
    p.add_argument("--results-key", default="label_pass",
                   help="the results section (RESULTS/label-pass.md) to write, and the name of its JSON (a GPU run writes its own "
                        "beside the CPU one)")
    add_output_args(p)
    args = p.parse_args(argv)
    out = Output.from_args(args)
    payload = out.load(args.results_key) if out.render_only else out.save(args.results_key, measure(args.quick))
    section = render(payload)
    print(section)
    out.update(args.results_key, f"## {title(payload)}\n\n" + section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
