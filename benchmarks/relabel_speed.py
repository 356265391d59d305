"""`ladd relabel` throughput: the relabel pass against the bare teacher forward on the same crops,
measured in one run, with where the pass's time goes.

Usage::

    .venv/bin/python benchmarks/relabel_speed.py                # saves results/relabel_speed.json and updates
                                                                # its section of RESULTS/relabel-speed.md
    .venv/bin/python benchmarks/relabel_speed.py --render-only  # re-render the section from the saved JSON
    .venv/bin/python benchmarks/relabel_speed.py --quick        # tiny sizes, prints only
    .venv/bin/python benchmarks/relabel_speed.py --results-key relabel_speed_gpu   # a CUDA run, its own section

For each configuration a plain set of M random uint8 images is written and a teacher with random
weights is saved (the weights do not change the timing): ConvNet-D3 (width 128, 100 classes) at
32 px and ConvNet-D5 (width 128, 10 classes) at 128 px as ``ladd train-labeler`` checkpoints, and
torchvision's ResNet-18 (1000 classes) at 224 px as a ``torch.save`` state_dict given with ``--arch
resnet18`` (ImageNet-1K's teacher; nothing is downloaded). Crops are the images' size (``ladd
relabel``'s default), SRe2L's augmentation (RandomResizedCrop scale 0.08-1, flip, CutMix), the
default stream codec of the set's class count (:func:`~ladd_format.stream.default_stream_codec`: top-5
in uint8 with a rank-24 tail; ``uint8`` for the 10-class set), float32 on the CPU and bfloat16 on
CUDA. Three things are timed:

- pass: :mod:`ladd_format.labeler.relabel_pass` as :func:`~ladd_format.labeler.relabel_pass.relabel`
  runs it (``ladd relabel`` without the command line), in its three phases: setup (checks, input
  and teacher digests, teacher loaded), labeling (draws, gather, crop kernel, teacher, encode on a
  thread, one file per epoch) and writing (the output: images copied, stream written, checksummed);
- bare forward: the same teacher on the same batches' crops, already built, mixed and normalised in
  memory, cut into the pass's forward slices at the pass's precision, the logits copied back to the
  host batch by batch; E times over the first epoch's crops, so as many records as the pass
  (the compute floor; target: pass >= 0.9x of it);
- breakdown: the labeling phase's steps one after another (the device synchronised after each), in
  milliseconds per 1,000 records: the draws (counter-based generator), gathering the stored images,
  the crop kernel (``source_floats`` + ``crop_batch``, spec 5.1), the teacher (normalise + forward),
  fitting the tail basis (a codec with a tail: ``fit_tail_basis`` on the logits of the first
  min(Q, 4,096) records, which are labeled first, as the pass's pre-pass does; 0 without a tail),
  copying the logits back and encoding them, and the epoch files. The pass overlaps the encoding
  with the next batch; the rest runs in sequence, so the breakdown says where the gap to the bare
  forward goes. The crop kernel's host-side part (each record's gather indices and weights, numpy)
  is also timed apart: it runs on the CPU whatever the device, and on a GPU the device waits for it.

Only the CPU is measured unless CUDA is available; no GPU figure is invented.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _common import Output, add_output_args, gpu_line  # noqa: E402
from ladd_format import DLAWriter  # noqa: E402
from ladd_format.labeler import relabel_pass as rp  # noqa: E402
from ladd_format.labeler.checkpoint import save_checkpoint  # noqa: E402
from ladd_format.labeler.label_pass import forward_limit, labeler_logits  # noqa: E402
from ladd_format.pixels import denormalize, normalize  # noqa: E402
from ladd_format.relabel_config import RelabelConfig  # noqa: E402
from ladd_format.stream.tail import fit_tail_basis  # noqa: E402
from ladd_format.torch.models import build_model  # noqa: E402
from ladd_format.torch.stream_crops import _axis_tables, crop_batch, source_floats  # noqa: E402

WORK = HERE / "_work" / "relabel_speed"          # its own folder: the other benchmarks keep theirs

#: the teachers measured: arch -> (its name in the tables, classes, how it is saved)
TEACHERS = {"convnet-d3": ("ConvNet-D3 w128", 100, "checkpoint"),
            "convnet-d5": ("ConvNet-D5 w128", 10, "checkpoint"),
            "resnet18": ("ResNet-18 (torchvision)", 1000, "state_dict")}
#: the breakdown's steps, in the order the pass runs them: (key, column title)
STEPS = (("draws", "draws"), ("gather", "gather images"), ("crop", "crop kernel"), ("teacher", "teacher"),
         ("fit", "fit the tail basis"), ("encode", "copy back + encode"), ("save", "epoch files"))
TARGET = 0.9                                      # the issue's: pass >= 0.9x the bare forward
#: the crop kernel's host-side part, timed apart (it is inside the step "crop")
TABLES = "crop_tables"


# -- configurations: (arch, side, images M, epochs E, batch B, repeats) ----------------------------------
#: 2 CPU cores: each configuration's pass takes 5-10 s (the fixed costs, setup and copying the images, a
#: small share of it, as in a real stream of many epochs)
CPU_CONFIGS = (("convnet-d3", 32, 512, 4, 256, 3), ("convnet-d5", 128, 32, 4, 32, 3), ("resnet18", 224, 32, 3, 32, 3))
#: a GPU: SRe2L's batch of 1,024 where the set holds that many images; many epochs over few images, as in
#: a real stream (300 epochs), so that the fixed costs (setup, copying the images) weigh as little as there
GPU_CONFIGS = (("convnet-d3", 32, 8192, 8, 1024, 3), ("convnet-d5", 128, 2048, 4, 512, 3),
               ("resnet18", 224, 1024, 16, 1024, 3))
#: --quick: every code path (a checkpoint and a torchvision teacher), tiny
QUICK_CONFIGS = (("convnet-d3", 32, 16, 2, 8, 1), ("resnet18", 64, 4, 1, 4, 1))


def write_plain(path: Path, m: int, side: int, classes: int) -> None:
    """A plain set of ``m`` random uint8 ``3 x side x side`` images (``pixel255``)."""
    images = np.random.default_rng(0).integers(0, 256, (m, 3, side, side), dtype=np.uint8)
    with DLAWriter(path, num_classes=classes, image_shape=(3, side, side), mean=(0.5,) * 3, std=(0.25,) * 3,
                   overwrite=True) as w:
        w.append(images, np.arange(m) % classes)


def save_teacher(folder: Path, arch: str, side: int, classes: int) -> tuple[Path, str | None]:
    """A random-weight teacher saved the way ``ladd relabel`` takes it: ``(path, --arch or None)``."""
    torch.manual_seed(0)
    if TEACHERS[arch][2] == "state_dict":
        import torchvision.models as tvm
        model = tvm.get_model(arch, weights=None, num_classes=classes)
        path = folder / f"{arch}.pt"
        torch.save(model.state_dict(), path)
        return path, arch
    model = build_model(arch, num_classes=classes, image_size=side).eval()
    meta = {"arch": arch, "arch_kwargs": {}, "num_classes": classes, "channels": 3, "image_size": side,
            "mean": [0.5] * 3, "std": [0.25] * 3, "class_names": [str(i) for i in range(classes)], "epoch": 0,
            "training_data": "none (random weights, timing only)"}
    path = folder / "teacher.safetensors"
    save_checkpoint(model, meta, path)
    return path, None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn``."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run_pass(source: Path, teacher: Path, output: Path, config: RelabelConfig) -> dict:
    """One library pass, as :func:`relabel_pass.relabel` runs it, its phases timed (seconds)."""
    t0 = time.perf_counter()
    plan = rp.prepare(source, teacher, output, config)
    t1 = time.perf_counter()
    rp.generate(plan)
    t2 = time.perf_counter()
    rp.assemble(plan)
    t3 = time.perf_counter()
    return {"setup": t1 - t0, "labeling": t2 - t1, "writing": t3 - t2, "total": t3 - t0}


def epoch_crops(plan, images, mean: torch.Tensor, std: torch.Tensor) -> list[torch.Tensor]:
    """The first epoch's crops, batch by batch, as the pass builds them, normalised for the teacher
    (what the bare forward runs on)."""
    t_mean = torch.tensor(plan.teacher.mean, dtype=torch.float32, device=plan.device).view(1, -1, 1, 1)
    t_std = torch.tensor(plan.teacher.std, dtype=torch.float32, device=plan.device).view(1, -1, 1, 1)
    out = []
    for draw in plan.draws.epoch(0):
        crops = _crops(plan, draw, images, mean, std)
        out.append(normalize(crops, t_mean, t_std).contiguous())
    sync(plan.device)
    return out


def _crops(plan, draw, images, mean, std) -> torch.Tensor:
    """The pass's crops of one batch (``relabel_pass.label_batch`` without the teacher)."""
    return _crop_stored(plan, draw, images.gather(draw.image), mean, std)


def bare_forward(plan, batches: list[torch.Tensor], epochs: int = 1) -> list[torch.Tensor]:
    """The teacher on the built crops, ``epochs`` times over: each batch in the pass's forward slices,
    its float32 logits copied to the host. Returns the last time's logits, batch by batch."""
    model, precision = plan.teacher.model, plan.precision
    out = []
    with torch.inference_mode():
        for _ in range(epochs):
            out = []
            for crops in batches:
                step = forward_limit(plan.config.forward_batch, tuple(crops.shape[-2:]), crops.device)
                out.append(torch.cat([labeler_logits(model, crops[a:a + step], precision)
                                      for a in range(0, len(crops), step)]).cpu())
    return out


def breakdown(plan, images, mean: torch.Tensor, std: torch.Tensor, scratch: Path) -> dict:
    """Seconds spent in each of :data:`STEPS` over every epoch, run one after another (the device
    synchronised after each step); the epoch files go to the folder ``scratch``. A codec with a tail
    first labels the batches holding the first min(Q, 4,096) records and fits the basis on their
    logits (step ``fit``), as the pass's pre-pass does; those batches are not labeled again."""
    spent = dict.fromkeys([k for k, _ in STEPS] + [TABLES], 0.0)
    codec, temperature, device = plan.spec.codec, plan.spec.temperature, plan.device

    def clock(key: str, fn):
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        spent[key] += time.perf_counter() - t0
        return out

    def label(draw) -> torch.Tensor:
        stored = clock("gather", lambda: images.gather(draw.image))
        clock(TABLES, lambda: crop_tables(draw, plan.crop_size))               # apart: not in the sum
        crops = clock("crop", lambda: _crop_stored(plan, draw, stored, mean, std))
        return clock("teacher", lambda: rp.teacher_logits(plan.teacher, crops, plan.precision,
                                                          plan.config.forward_batch))

    scratch.mkdir(parents=True, exist_ok=True)
    draws = [clock("draws", lambda: list(plan.draws.epoch(epoch))) for epoch in range(plan.epochs)]
    tail, ready = None, {}
    if codec.tail_rank is not None:
        n, held = rp.fit_records(plan), {}
        for key in ((e, b) for e in range(plan.epochs) for b in range(len(draws[e]))):
            if sum(len(z) for z in held.values()) >= n:
                break
            logits = label(draws[key[0]][key[1]])
            held[key] = clock("encode", lambda: logits.cpu().numpy())
        tail = clock("fit", lambda: fit_tail_basis(np.concatenate(list(held.values()))[:n], codec.tail_rank))
        ready = {key: clock("encode", lambda: codec.encode_logits(z, temperature, tail=tail))
                 for key, z in held.items()}
    for epoch in range(plan.epochs):
        parts = []
        for b, draw in enumerate(draws[epoch]):
            if (epoch, b) in ready:                                            # labeled before the fit
                parts.append(ready.pop((epoch, b)))
                continue
            logits = label(draw)
            parts.append(clock("encode", lambda: codec.encode_logits(logits.cpu().numpy(), temperature, tail=tail)))
        clock("save", lambda: rp._save_epoch(scratch / rp.EPOCH_FILE.format(epoch),
                                              {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}))
    shutil.rmtree(scratch)
    return spent


def crop_tables(draw, crop_size: tuple[int, int]) -> None:
    """The crop kernel's host-side work for one batch: the per-record gather indices and weights of
    both axes (``stream_crops._axis_tables``, numpy), which ``crop_batch`` computes before its device
    passes."""
    top, left, h, w = draw.box.T
    _axis_tables(left, w, crop_size[1], draw.flip)
    _axis_tables(top, h, crop_size[0], None)


def _crop_stored(plan, draw, stored: torch.Tensor, mean, std) -> torch.Tensor:
    """The crop kernel on one batch's gathered stored images, as ``relabel_pass.label_batch`` runs it."""
    crops = crop_batch(source_floats(stored, plan.space), draw.box, draw.flip, plan.crop_size, mix=plan.spec.mix,
                       mix_partner=draw.mix_partner, mix_box=draw.mix_box, mix_lambda=draw.mix_lambda)
    return denormalize(crops, mean, std) if plan.space == "normalized" else crops


def flops_per_crop(model: torch.nn.Module, side: int) -> float:
    """FLOPs of one crop's forward (``FlopCounterMode``: a multiply-add counts 2), on the CPU."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    cpu_model = copy.deepcopy(model).float().cpu()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        cpu_model(torch.zeros(1, 3, side, side))
    return float(counter.get_total_flops())


def bench(arch: str, side: int, m: int, epochs: int, batch: int, repeats: int, device: str,
          precision: str) -> dict:
    """One configuration's throughputs (records/s), phases and breakdown, as plain data."""
    label, classes, _ = TEACHERS[arch]
    folder = WORK / f"{arch}_{side}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source, output = folder / "d.dla.h5", folder / "out.dla.h5"
    write_plain(source, m, side, classes)
    teacher, tv_arch = save_teacher(folder, arch, side, classes)
    config = RelabelConfig(arch=tv_arch, epochs=epochs, batch_size=batch, device=device, precision=precision,
                           overwrite=True)
    records = m * epochs

    plan = rp.prepare(source, teacher, output, config, create=False)          # the pass's plan, for the other two
    passes, bare, breakdowns = [], [], []
    with rp.open_dla(source) as f:
        k = plan.image_shape[0]
        mean = torch.tensor(f.mean, dtype=torch.float32, device=plan.device).view(1, k, 1, 1)
        std = torch.tensor(f.std, dtype=torch.float32, device=plan.device).view(1, k, 1, 1)
        images = rp._Images(f, plan.device)                                   # the pass's own image cache
        batches = epoch_crops(plan, images, mean, std)
        run_pass(source, teacher, output, config)                             # warm-ups (cuDNN, allocator, caches)
        bare_forward(plan, batches, 1)
        for _ in range(repeats):             # interleaved: a machine whose load changes slows all three alike
            passes.append(run_pass(source, teacher, output, config))
            bare += timed(lambda: (bare_forward(plan, batches, epochs), sync(plan.device)), 1)
            breakdowns.append(breakdown(plan, images, mean, std, folder / "breakdown"))
        del batches
    flops = flops_per_crop(plan.teacher.model, side)
    codec = plan.spec.codec.label
    shutil.rmtree(folder)
    med = {key: statistics.median(p[key] for p in passes) for key in passes[0]}
    steps = {key: statistics.median(b[key] for b in breakdowns) for key in breakdowns[0]}
    return {"name": f"{label}, {side} px", "arch": arch, "side": side, "classes": classes, "m": m, "epochs": epochs,
            "batch": batch, "records": records, "precision": precision, "device": device, "codec": codec,
            "forward_slice": forward_limit(config.forward_batch, (side, side), plan.device),
            "repeats": repeats, "passes": passes, "phases": med, "bare_s": bare, "breakdowns": breakdowns,
            "pass": records / med["total"], "labeling": records / med["labeling"],
            "bare": records / statistics.median(bare), "steps": steps, "flops": flops}


def measure(quick: bool, partial=None) -> dict:
    """Every configuration's figures, as plain data, and the device they ran on; ``partial(data)``,
    when given, after each configuration (what a run stopped by a time limit keeps)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    configs = QUICK_CONFIGS if quick else GPU_CONFIGS if device == "cuda" else CPU_CONFIGS
    precision = "bfloat16" if device == "cuda" else "float32"
    data = {"device": device, "gpu": gpu_line() if device == "cuda" else None,
            "gpu_name": torch.cuda.get_device_name(0) if device == "cuda" else None,
            "threads": torch.get_num_threads(), "rows": []}
    for config in configs:
        load = os.getloadavg()[0]
        data["rows"].append(bench(*config, device=device, precision=precision))
        data["rows"][-1]["load"] = [load, os.getloadavg()[0]]     # other processes' share of the cores
        if partial is not None:
            partial(data)
    shutil.rmtree(WORK, ignore_errors=True)
    return data


# -- the page ----------------------------------------------------------------------------------------
def title(payload: dict) -> str:
    d = payload["data"]
    return "`ladd relabel` throughput" + (f" on {d['gpu_name']}" if d["device"] == "cuda" else " on the CPU") \
        + " (against the bare teacher forward)"


def verdict(ratio: float) -> str:
    return f"{ratio:.2f}x {'PASS' if ratio >= TARGET else 'FAIL'}"


def render(payload: dict) -> str:
    """The section (title excluded) from the saved data."""
    d = payload["data"]
    device, rows = d["device"], d["rows"]
    lines = [f"- Machine: {payload['machine']}; device: {device}"
             + (f" = {d['gpu']}" if device == "cuda"
                else " (CUDA not available on this machine: no GPU figure is reported)"),
             f"- Date: {payload['date']}; command: `{payload['command']}`; medians of each row's repeats after a "
             "warm-up pass; each repeat runs the pass, the bare forward and the breakdown in turn, so that a change "
             "in the machine's load affects all three alike."]
    if payload.get("note"):
        lines.append(f"- {payload['note']}")
    loads = [v for r in rows for v in r.get("load", [])]
    if loads and device == "cpu":
        lines.append(f"- 1-minute load average of the machine before and after each configuration: "
                     f"{min(loads):.1f}-{max(loads):.1f} on {d['threads']} threads (above about {d['threads']}, other "
                     "processes took a share of the cores and the figures are noisy).")
    lines += ["- Random uint8 images and a random-weight teacher (timing depends on neither); crops of the images' "
              "size, SRe2L's augmentation (RandomResizedCrop scale 0.08-1, flip, CutMix), `bilinear-antialias` "
              "crop kernel, the default stream codec of the set's class count (`default_stream_codec`; the codec "
              "column says which); "
              "precision: float32 on the CPU, bfloat16 autocast on CUDA, the same for the bare forward; "
              "forward slice = crops per teacher forward (`--forward-batch` 512, on the CPU at most "
              "32 x 224 x 224 input pixels).",
              "- pass = `relabel_pass.prepare` + `generate` + `assemble`, what `ladd relabel` runs; bare forward = "
              "the teacher alone on the same batches' crops, built, mixed and normalised beforehand, in the same "
              "forward slices, logits copied to the host batch by batch. Records = images x epochs.",
              "",
              "| teacher | precision | images | epochs | batch | records | codec | pass records/s | bare forward "
              f"records/s | pass / bare (>= {TARGET}) | labeling phase records/s | labeling / bare | setup s | "
              "writing s | GFLOP / crop |",
              "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ph = r["phases"]
        lines.append(f"| {r['name']} | {r['precision']} | {r['m']:,} | {r['epochs']} | {r['batch']:,} | "
                     f"{r['records']:,} | `{r['codec']}` | {r['pass']:,.0f} | {r['bare']:,.0f} | "
                     f"{verdict(r['pass'] / r['bare'])} | {r['labeling']:,.0f} | {r['labeling'] / r['bare']:.2f}x | "
                     f"{ph['setup']:.2f} | {ph['writing']:.2f} | {r['flops'] / 1e9:.3f} |")
    lines += ["", "Where the labeling phase's time goes: each step run alone, one after another, the device "
              "synchronised after each, in ms per 1,000 records (share of their sum). The pass runs the same "
              "steps (the encoding overlapped with the next batch).", "",
              "| teacher | " + " | ".join(t for _, t in STEPS) + " | sum | crop kernel records/s | "
              "crop kernel / teacher | of the crop kernel: its host-side tables (numpy) |",
              "|---|" + "---:|" * (len(STEPS) + 4)]
    for r in rows:
        steps, n = r["steps"], r["records"]
        total = sum(steps.get(k, 0.0) for k, _ in STEPS)
        cells = ["-" if k not in steps else f"{1e3 * 1e3 * steps[k] / n:,.1f} ({100 * steps[k] / total:.0f}%)"
                 for k, _ in STEPS]                       # "-": a step the saved figures predate
        tables = steps.get(TABLES)
        lines.append(f"| {r['name']} | " + " | ".join(cells) + f" | {1e3 * 1e3 * total / n:,.1f} | "
                     f"{n / steps['crop']:,.0f} | {steps['crop'] / steps['teacher']:.2f} | "
                     + ("-" if tables is None else f"{1e3 * 1e3 * tables / n:,.1f} ({100 * tables / steps['crop']:.0f}%)")
                     + " |")
    lines += ["", "The crop kernel's host-side tables (each record's gather indices and weights, computed in numpy, "
              "timed apart) run on the CPU whatever the device; on a GPU the device waits for them."]
    lines += ["", *gap_lines(rows)]
    return "\n".join(lines)


def gap_lines(rows: list[dict]) -> list[str]:
    """One line per row: the gap between the pass and the bare forward, in the breakdown's terms."""
    out = ["The gap, per 1,000 records: pass - bare = setup + writing + (labeling phase - bare), and the labeling "
           "phase - bare = crop kernel + (draws + gather + tail fit + epoch files) + (teacher step - bare forward: "
           "normalising, slicing) + rest (the encoding not hidden behind the next batch, and noise):", ""]
    for r in rows:
        n = r["records"]
        per = {k: 1e6 * v / n for k, v in r["steps"].items()}
        ph = {k: 1e6 * v / n for k, v in r["phases"].items()}
        bare = 1e6 / r["bare"]
        others = per["draws"] + per["gather"] + per.get("fit", 0.0) + per["save"]
        rest = ph["labeling"] - (sum(per.get(k, 0.0) for k, _ in STEPS) - per["encode"])
        out.append(f"- {r['name']} ({r['precision']}): pass {ph['total']:,.1f} ms - bare {bare:,.1f} ms = "
                   f"{ph['total'] - bare:+,.1f} ms = setup {ph['setup']:,.1f} + writing {ph['writing']:,.1f} + "
                   f"({ph['labeling'] - bare:+,.1f} = crop kernel {per['crop']:,.1f} + draws, gather, "
                   f"{'tail fit, ' if 'fit' in per else ''}epoch files "
                   f"{others:,.1f} + teacher step - bare {per['teacher'] - bare:+,.1f} + rest {rest:+,.1f}).")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes; print only unless --data-dir/--results")
    p.add_argument("--results-key", default="relabel_speed",
                   help="the results section (RESULTS/relabel-speed.md) to write, and the name of its JSON (a GPU "
                        "run writes its own beside the CPU one: relabel_speed_gpu)")
    p.add_argument("--note", default=None,
                   help="a line saved with the figures and shown on the page (e.g. what else the machine was running)")
    add_output_args(p)
    args = p.parse_args(argv)
    out = Output.from_args(args)
    if out.render_only:
        payload = out.load(args.results_key)
    else:
        extra = {"note": args.note} if args.note else None
        partial_name = f"{args.results_key}.partial"
        keep = (lambda data: out.save(partial_name, data, extra=extra)) if out.write else None
        payload = out.save(args.results_key, measure(args.quick, keep), extra=extra)
        (out.data_dir / f"{partial_name}.json").unlink(missing_ok=True)
    section = render(payload)
    print(section)
    out.update(args.results_key, f"## {title(payload)}\n\n" + section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
