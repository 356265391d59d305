"""LADD training memory at 128 px on the CPU: ``ladd_loss`` in checkpointed chunks against the
whole batch at once.

Every case runs as its own process under a small parent that sets an address-space cap
(:data:`CAP_BYTES`, so that an unchunked case cannot take the whole machine) and reports the
child's peak RSS (``ru_maxrss`` from ``wait4``):

- ``loop``: the README's loop (``DLADataset`` + ``DataLoader(batch_size=64, shuffle=True)`` +
  ``ladd_loss`` + SGD, ConvNet-D3) for one step over the set;
- ``evaluate``: ``ladd evaluate --mode ladd --epochs 1 --seeds 1`` (one step: the set is one batch);
- ``gradients``: one batch's gradients with ``sub_chunk=0`` and with the automatic chunk, their
  largest difference (the unchunked pass must fit under the cap, hence a small batch).

The set: 60 images at 128 px, 10 classes, N = 5 (25 sub-images), uint8 dense labels: the 20 real
MTT images of ``../shared/data/mtt_distilled_128.npz`` three times over when that file is present
(random images otherwise; memory and time do not depend on the pixels).

    .venv/bin/python benchmarks/ladd_memory.py            # about 8 minutes on 2 cores
    .venv/bin/python benchmarks/ladd_memory.py --render-only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _common import Output, add_output_args  # noqa: E402

NAME = "ladd_memory"
TITLE = "## LADD training memory at 128 px: `ladd_loss` in chunks"
WORK = HERE / "_work" / NAME
SHARED = ROOT.parent / "shared" / "data" / "mtt_distilled_128.npz"
#: the address-space cap of every case (the machine has 24 GB and other work)
CAP_BYTES = 8 << 30
IMAGES, CLASSES, SIDE, N, RATIO = 60, 10, 128, 5, 0.625
LADD = [sys.executable, "-m", "ladd_cli.main"]

# The parent of each case: caps the child's address space, reports its peak RSS in KB.
MEASURE = """
import os, resource, subprocess, sys
cap = int(sys.argv[2])
proc = subprocess.Popen(sys.argv[3:], preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)))
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""

LOOP = """
import json, sys, time, torch
from torch.utils.data import DataLoader
from ladd_format.torch import DLADataset, ladd_loss
from ladd_format.torch.loss import auto_chunk
from ladd_format.torch.models import build_model
path, batch, chunk = sys.argv[1], int(sys.argv[2]), None if sys.argv[3] == "auto" else int(sys.argv[3])
max_steps = int(sys.argv[4])
torch.manual_seed(0)
ds = DLADataset(path)
channels, size, _ = ds.image_shape
model = build_model("convnet-d3", num_classes=ds.num_classes, channels=channels, image_size=size)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
start = time.perf_counter()
steps = 0
for images, labels, dense in DataLoader(ds, batch_size=batch, shuffle=True):
    loss, parts = ladd_loss(model, images, labels, dense, ds.sampler, sub_chunk=chunk)
    opt.zero_grad(); loss.backward(); opt.step()
    steps += 1
    if steps == max_steps:
        break
used = auto_chunk(model, ds.image_shape) if chunk is None else chunk
print(json.dumps({"steps": steps, "seconds": time.perf_counter() - start, "chunk": used, "loss": float(loss)}))
"""

GRADIENTS = """
import json, sys, torch
from torch.utils.data import DataLoader
from ladd_format.torch import DLADataset, ladd_loss
from ladd_format.torch.loss import auto_chunk
from ladd_format.torch.models import build_model
path, batch = sys.argv[1], int(sys.argv[2])
ds = DLADataset(path)
images, labels, dense = next(iter(DataLoader(ds, batch_size=batch)))
channels, size, _ = ds.image_shape
torch.manual_seed(0)
model = build_model("convnet-d3", num_classes=ds.num_classes, channels=channels, image_size=size)
grads = {}
for chunk in (0, None):
    model.zero_grad()
    loss, _ = ladd_loss(model, images, labels, dense, ds.sampler, sub_chunk=chunk)
    loss.backward()
    grads[chunk] = (float(loss), [p.grad.clone() for p in model.parameters()])
(l0, g0), (l1, g1) = grads[0], grads[None]
abs_diff = max(float((a - b).abs().max()) for a, b in zip(g0, g1))
largest = max(float(a.abs().max()) for a in g0)
print(json.dumps({"batch": batch, "views": batch * 26, "chunk": auto_chunk(model, ds.image_shape),
                  "loss_whole": l0, "loss_chunked": l1, "max_abs_grad_diff": abs_diff,
                  "max_rel_grad_diff": abs_diff / largest, "max_abs_grad": largest}))
"""


def write_set(work: Path) -> tuple[Path, Path, str]:
    """The 60-image D_LA at 128 px and a test .npz; says where the images came from."""
    from ladd_format import DenseSpec, DLAWriter
    from ladd_format.codecs import make_codec
    rng = np.random.default_rng(0)
    if SHARED.exists():
        with np.load(SHARED) as z:
            real = np.concatenate([z["imagefruit"], z["imagesquawk"]])
        images, origin = np.concatenate([real] * (IMAGES // len(real))), f"the 20 real MTT images of {SHARED.name}, x3"
    else:
        images, origin = rng.integers(0, 256, (IMAGES, 3, SIDE, SIDE), dtype=np.uint8), "random images"
    labels = np.arange(IMAGES) % CLASSES
    logits = rng.normal(size=(IMAGES, N * N, CLASSES)) + 3 * np.eye(CLASSES)[labels][:, None]
    dense = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    path = work / "set128.dla.h5"
    path.unlink(missing_ok=True)
    with DLAWriter(path, num_classes=CLASSES, image_shape=(3, SIDE, SIDE), mean=(0.5,) * 3, std=(0.25,) * 3,
                   dense=DenseSpec(n=N, ratio=RATIO, codec=make_codec("uint8"))) as w:
        w.append(images, labels, dense=dense.astype(np.float32))
    test = work / "test128.npz"
    np.savez(test, images=images[:20], labels=labels[:20])
    return path, test, origin


def run_case(name: str, argv: list[str], work: Path, timeout: float = 900) -> dict:
    """``argv`` under the capped parent: wall seconds, peak RSS (MB), exit status, the last JSON line
    of its stdout and, on failure, its last stderr line."""
    peak = work / "peak_rss_kb"
    peak.unlink(missing_ok=True)
    print(f"[{NAME}] {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(peak), str(CAP_BYTES), *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    result = {"case": name, "seconds": round(wall, 1), "rc": proc.returncode,
              "peak_rss_mb": round(int(peak.read_text()) / 1024) if peak.exists() else None}
    if "{" in proc.stdout:
        data = json.loads(proc.stdout[proc.stdout.index("{"):])
        result.update({k: data[k] for k in ("steps", "chunk", "loss", "batch", "views", "loss_whole", "loss_chunked",
                                            "max_abs_grad_diff", "max_rel_grad_diff", "max_abs_grad", "mean")
                       if k in data})
    if proc.returncode != 0:
        result["error"] = (proc.stderr.strip().splitlines() or [""])[-1][:1000]
    print(f"[{NAME}] {name}: {result}", file=sys.stderr, flush=True)
    return result


def measure() -> dict:
    import torch
    WORK.mkdir(parents=True, exist_ok=True)
    path, test, origin = write_set(WORK)
    loop = [sys.executable, "-c", LOOP, str(path)]
    evaluate = LADD + ["evaluate", str(path), "--test", str(test), "--mode", "ladd", "--epochs", "1", "--seeds", "1",
                       "--json"]
    cases = [
        run_case("loop, batch 64, chunked (default)", loop + ["64", "auto", "1"], WORK),
        run_case("loop, batch 64, whole batch (sub_chunk=0)", loop + ["64", "0", "1"], WORK),
        run_case("loop, batch 4, chunked (default)", loop + ["4", "auto", "2"], WORK),
        run_case("loop, batch 4, whole batch (sub_chunk=0)", loop + ["4", "0", "2"], WORK),
        run_case("evaluate --mode ladd, chunked (default)", evaluate, WORK),
        run_case("evaluate --mode ladd --sub-chunk 0", evaluate + ["--sub-chunk", "0"], WORK),
        run_case("gradients, batch 4: whole vs chunked", [sys.executable, "-c", GRADIENTS, str(path), "4"], WORK),
    ]
    from ladd_format.torch.loss import CHUNK_BUDGET_BYTES
    return {"images": IMAGES, "classes": CLASSES, "budget_mib": CHUNK_BUDGET_BYTES >> 20, "side": SIDE, "n": N, "origin": origin, "cap_gb": CAP_BYTES / 2**30,
            "threads": torch.get_num_threads(), "cases": cases,
            "notes": "2 cores shared with other work while measured: times are indicative, peaks are not affected"}


def render(payload: dict) -> str:
    d = payload["data"]
    lines = [f"Machine: {payload['machine']}. Command: `{payload['command']}`.", "",
             f"{d['images']} images at {d['side']} px, {d['classes']} classes, N = {d['n']} ({d['n'] ** 2} "
             f"sub-images, 26 views an image), uint8 dense labels ({d['origin']}); ConvNet-D3 (width 128) students "
             f"on the CPU; every case in its own process under a {d['cap_gb']:g} GB address-space cap, peak RSS "
             "from `wait4`. Chunked: `ladd_loss`'s default (views in chunks of at most `CHUNK_BUDGET_BYTES` = "
             f"{d['budget_mib']} MiB of activations, each chunk run again in the backward pass); whole: `sub_chunk=0`, every view "
             "of the batch in one pass. The loop runs 1 step at batch 64 (the 60 images) and 2 at batch 4; "
             "evaluate one epoch (one step).", "",
             "| case | peak RSS | time | exit | chunk | note |", "|---|---:|---:|---:|---:|---|"]
    for c in d["cases"]:
        peak = "-" if c["peak_rss_mb"] is None else f"{c['peak_rss_mb']:,} MB"
        note = _failure(c.get("error", ""))
        if "max_abs_grad_diff" in c:
            note = (f"largest gradient difference {c['max_abs_grad_diff']:.1e}, {c['max_rel_grad_diff']:.1e} of the "
                    f"largest gradient ({c['max_abs_grad']:.1e}); loss {c['loss_whole']:.6f} whole, "
                    f"{c['loss_chunked']:.6f} chunked")
        elif "steps" in c:
            note = note or f"{c['steps']} step(s)"
        elif "mean" in c:
            note = note or f"1 epoch (1 step) and the test; test accuracy {100 * c['mean']:.1f}% (one epoch: no meaning)"
        lines.append(f"| {c['case']} | {peak} | {c['seconds']:.0f} s | {c['rc']} | {c.get('chunk', '')} | "
                     f"{note.replace('|', '/')} |")
    by = {c["case"]: c for c in d["cases"]}
    loop, ev = by["loop, batch 64, chunked (default)"], by["evaluate --mode ladd, chunked (default)"]
    grads = by["gradients, batch 4: whole vs chunked"]
    lines += ["", f"Headline: chunked, the README loop (batch 64) peaked at {loop['peak_rss_mb']:,} MB and `ladd evaluate "
              f"--mode ladd` at {ev['peak_rss_mb']:,} MB; the whole batch asked for one allocation of "
              f"{_asked_gb(by['loop, batch 64, whole batch (sub_chunk=0)']):.1f} GB. Chunked gradients equal the whole "
              f"batch's to {grads['max_abs_grad_diff']:.1e} ({grads['max_rel_grad_diff']:.1e} of the largest).",
              "", f"Notes: {d['notes']}. A case over the cap ends in an allocation failure (exit 1; `ladd "
              "evaluate` names the options that make a step hold less), where without the cap it would take "
              "the machine's memory."]
    return "\n".join(lines)


def _asked_gb(case: dict) -> float:
    """The refused allocation of a failed case, in GB (NaN where its error names none)."""
    asked = re.search(r"tried to allocate ([0-9]+) bytes", case.get("error", ""))
    return int(asked.group(1)) / 1e9 if asked else float("nan")


def _failure(error: str) -> str:
    """A failed case's last stderr line, told briefly: the allocation refused, and whether it came as
    `ladd evaluate`'s one line (which names the options) or as torch's exception."""
    if not error:
        return ""
    gb = _asked_gb({"error": error})
    what = f"one allocation of {gb:.1f} GB refused at the cap" if gb == gb else error[:200]
    if error.startswith("ladd: error:"):
        return f"{what}: one `ladd: error:` line, \"ran out of memory while training a student (...)\" and the options"
    return f"{what} ({error.split(':')[0]})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_args(parser)
    args = parser.parse_args(argv)
    return Output.from_args(args).publish(NAME, TITLE, render, measure)


if __name__ == "__main__":
    raise SystemExit(main())
