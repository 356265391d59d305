"""Conversion speed: `ladd convert mtt --dataset imagenette` against a bare torch.load + numpy.save.

Usage::

    .venv/bin/python benchmarks/convert_speed.py                # full run: saves results/convert_speed.json,
                                                                # updates RESULTS/conversion.md
    .venv/bin/python benchmarks/convert_speed.py --render-only  # re-render the section from the saved JSON
    .venv/bin/python benchmarks/convert_speed.py --quick        # IPC 10, prints only

Input: an ImageNette-shaped MTT output written as MTT writes it (``docs/upstream-formats.md``):
``images_best.pt`` = float32 (500, 3, 128, 128) (IPC 50), saved with ``requires_grad=True``, holding
known 0..1 pixels (uniform random) normalised with the ImageNet mean/std, and ``labels_best.pt`` =
int64 ``[0]*50 + [1]*50 + ...``, both with ``torch.save`` into ``benchmarks/_work/convert_speed/``
(deleted afterwards).

Timed, in the same run, interleaved (one untimed warm-up of each, then 3 rounds; median):

- baseline: ``torch.load`` of both files (``weights_only=True``, torch's default), ``detach().numpy()``,
  ``numpy.save`` of both arrays -- the least a conversion to another container must do;
- ``convert("mtt", folder, out, ConvertOptions(dataset="imagenette"))``: load (weights_only), float ->
  uint8 with the loss report (clipped fraction, PSNR), D_LA write (per-image chunks, fletcher32,
  SHA-256 of every dataset, SHA-256 of both input files for ``/provenance``), atomic rename;
- the same with ``keep_float=True`` (float32 images stored as they are, space ``normalized``).

Target: each conversion within 2x the baseline. The destination is deleted before every run, so no
run pays for replacing a file. Files go to the page cache (no fsync on any side).

Then each step of a conversion is timed alone (median of 3) to show where the time goes: the
``weights_only`` load, the float -> uint8 rounding with its loss report (blockwise ``to_uint8``, and
the whole-array reference definitions it replaced), the SHA-256 of the input files, the D_LA writes
of the uint8 and float32 images, and ``numpy.save`` alone. Run it on an otherwise idle machine.
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

from _common import Output, add_output_args  # noqa: E402
from ladd_format import DLAWriter, open_dla, verify  # noqa: E402
from ladd_format.converters import ConvertOptions, convert  # noqa: E402
from ladd_format.converters.inputs import load_pt  # noqa: E402
from ladd_format.pixels import loss_report, quantize, to_pixel01, to_uint8  # noqa: E402
from ladd_format.provenance import file_sha256  # noqa: E402

WORK = HERE / "_work" / "convert_speed"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
NUM_CLASSES, SIDE = 10, 128
TARGET = 2.0
ROUNDS = 3
LOAD = "`torch.load` of both files (`weights_only=True`)"
U8 = "float -> uint8 + loss report (`to_uint8`, blockwise)"
U8_OLD = "the same, whole-array passes (`to_pixel01` + `quantize` + `loss_report`, the definitions)"
SHA = "SHA-256 of both input files (`/provenance` inputs)"
W32 = "D_LA write, float32 images (fletcher32, SHA-256 per dataset)"
NPY = "`numpy.save` of the float32 images + labels (the baseline's write)"


def write_run(folder: Path, ipc: int, seed: int = 0) -> np.ndarray:
    """MTT's ``images_best.pt`` / ``labels_best.pt``; returns the 0..1 pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pix = rng.random((NUM_CLASSES * ipc, 3, SIDE, SIDE), dtype=np.float32)
    x = (pix - np.asarray(MEAN, np.float32).reshape(1, 3, 1, 1)) / np.asarray(STD, np.float32).reshape(1, 3, 1, 1)
    images = torch.from_numpy(x).requires_grad_(True)
    labels = torch.tensor(np.array([np.ones(ipc) * i for i in range(NUM_CLASSES)]), dtype=torch.long).view(-1)
    torch.save(images, folder / "images_best.pt")
    torch.save(labels, folder / "labels_best.pt")
    return pix


def baseline(folder: Path, dest: Path) -> None:
    images = torch.load(folder / "images_best.pt", map_location="cpu").detach().numpy()
    labels = torch.load(folder / "labels_best.pt", map_location="cpu").detach().numpy()
    baseline_save(images, labels, dest)


def baseline_save(images: np.ndarray, labels: np.ndarray, dest: Path) -> None:
    np.save(dest / "images.npy", images)
    np.save(dest / "labels.npy", labels)


def clear(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)


def measure(quick: bool) -> dict:
    """The timed runs and the steps timed alone, as plain data (seconds)."""
    ipc = 10 if quick else 50
    load_before = os.getloadavg()[0]
    t_start = time.perf_counter()
    shutil.rmtree(WORK, ignore_errors=True)
    folder, dest = WORK / "run", WORK / "out"
    try:
        pix = write_run(folder, ipc)
        in_bytes = sum(p.stat().st_size for p in folder.iterdir())
        runs = {
            "baseline": lambda: baseline(folder, dest / "baseline"),
            "uint8": lambda: convert("mtt", folder, dest / "uint8" / "u8.dla.h5", ConvertOptions(dataset="imagenette")),
            "keep-float": lambda: convert("mtt", folder, dest / "keep-float" / "f32.dla.h5",
                                          ConvertOptions(dataset="imagenette", keep_float=True)),
        }
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for rnd in range(ROUNDS + 1):                    # round 0 is the untimed warm-up
            for name, fn in runs.items():
                clear(dest / name)
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                if rnd:
                    samples[name].append(dt)
        # the outputs of the last round are right (checked outside the timings)
        with open_dla(dest / "uint8" / "u8.dla.h5") as f:
            err = np.abs(f.images().astype(np.int64) - np.round(255 * pix.astype(np.float64)).astype(np.int64))
            assert err.max() <= 1 and f.attrs["distillation"] == "mtt"
            u8_bytes = (dest / "uint8" / "u8.dla.h5").stat().st_size
            psnr = f.provenance["report"]["uint8_conversion"]["psnr_db"]
        with open_dla(dest / "keep-float" / "f32.dla.h5") as f:
            assert f.space == "normalized" and f.image_dtype == np.float32
            f32_bytes = (dest / "keep-float" / "f32.dla.h5").stat().st_size
        assert verify(dest / "uint8" / "u8.dla.h5") == [] and verify(dest / "keep-float" / "f32.dla.h5") == []
        npy_bytes = sum(p.stat().st_size for p in (dest / "baseline").glob("*.npy"))

        # where the time goes: the steps of a conversion, each timed alone (median of ROUNDS)
        images = load_pt(folder / "images_best.pt").detach().numpy()
        labels = load_pt(folder / "labels_best.pt").numpy()
        stored, _ = to_uint8(images, "normalized", MEAN, STD)
        inputs = [folder / "images_best.pt", folder / "labels_best.pt"]

        def write(arr, dtype, space):
            with DLAWriter(dest / "part" / "p.dla.h5", num_classes=NUM_CLASSES, image_shape=arr.shape[1:],
                           mean=MEAN, std=STD, image_dtype=dtype, space=space, converter="bench") as w:
                w.append(arr, labels)

        steps = {
            LOAD: lambda: [load_pt(p) for p in inputs],
            U8: lambda: to_uint8(images, "normalized", MEAN, STD),
            U8_OLD: lambda: loss_report(pix01 := to_pixel01(images, "normalized", MEAN, STD), quantize(pix01)),
            SHA: lambda: [file_sha256(p) for p in inputs],
            "D_LA write, uint8 images (fletcher32, SHA-256 per dataset)": lambda: write(stored, "uint8", None),
            W32: lambda: write(images, "float32", "normalized"),
            NPY: lambda: baseline_save(images, labels, dest / "part"),
        }
        parts = {}
        for name, fn in steps.items():
            times = []
            for _ in range(ROUNDS):
                clear(dest / "part")                    # deleting the last output is not timed
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            parts[name] = statistics.median(times)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)

    return {"ipc": ipc, "in_bytes": in_bytes, "samples": samples, "u8_bytes": u8_bytes, "f32_bytes": f32_bytes,
            "npy_bytes": npy_bytes, "psnr": psnr, "parts": [[name, dt] for name, dt in parts.items()],
            "elapsed": time.perf_counter() - t_start, "load_before": load_before, "load_after": os.getloadavg()[0],
            "cpu_count": os.cpu_count()}


def render(payload: dict) -> str:
    """The convert_speed section (title excluded) from the saved data."""
    d = payload["data"]
    ipc, in_bytes, samples, psnr = d["ipc"], d["in_bytes"], d["samples"], d["psnr"]
    u8_bytes, f32_bytes, npy_bytes = d["u8_bytes"], d["f32_bytes"], d["npy_bytes"]
    parts = dict(d["parts"])
    med = {name: statistics.median(v) for name, v in samples.items()}
    base = med["baseline"]
    rows = [
        ("bare `torch.load` + `numpy.save` (baseline)", "baseline", npy_bytes, None),
        ("`convert mtt --dataset imagenette` (uint8)", "uint8", u8_bytes, True),
        ("`convert mtt --dataset imagenette --keep-float`", "keep-float", f32_bytes, True),
    ]
    passed = all(med[key] / base <= TARGET for _, key, _, target in rows if target)
    m = NUM_CLASSES * ipc
    lines = [
        f"- Machine: {payload['machine']}",
        f"- Date: {payload['date']}",
        f"- Command: `{payload['command']}` (ran in {d['elapsed']:.0f} s; "
        f"1-minute load average {d['load_before']:.2f} before, {d['load_after']:.2f} after, on {d['cpu_count']} cores)",
        f"- Input: MTT run folder as MTT writes it: `images_best.pt` float32 ({m}, 3, {SIDE}, {SIDE}) "
        f"(ImageNette, IPC {ipc}; uniform random 0..1 pixels normalised with the ImageNet mean/std, saved with "
        f"requires_grad=True) + `labels_best.pt` int64 ({m},); {in_bytes / 1e6:.1f} MB on disk.",
        "- Method: the three jobs interleaved, one untimed warm-up each, then "
        f"{ROUNDS} rounds; table shows the median (best). Destination deleted before each run; page cache, "
        "no fsync; inputs warm in the page cache. The conversion includes everything `ladd convert` does: "
        "`weights_only` load, float -> uint8 with the loss report, per-image chunks with fletcher32, SHA-256 "
        "of every dataset and of both input files, atomic rename. "
        f"uint8 result: max |stored - round(255 x pixel)| <= 1, PSNR {psnr:.1f} dB; both outputs pass `verify`.",
        "",
        "| job | output bytes | seconds, median (best) | / baseline | target |",
        "|---|---:|---:|---:|---|",
    ]
    for label, key, nbytes, target in rows:
        ratio = med[key] / base
        verdict = f"<= {TARGET:g}x: {'PASS' if ratio <= TARGET else 'FAIL'}" if target else "-"
        lines.append(f"| {label} | {nbytes:,} | {med[key]:.3f} ({min(samples[key]):.3f}) | {ratio:.2f}x | {verdict} |")
    lines += [
        "",
        f"Where the time goes: the steps of a conversion timed alone (median of {ROUNDS}), with their share of "
        "the baseline's time:",
        "",
        "| step | seconds | / baseline |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {dt:.3f} | {dt / base:.2f}x |" for name, dt in parts.items()]
    floor = parts[LOAD] + parts[SHA]
    lines += [
        "",
        f"{'What a conversion costs beyond' if passed else 'Why the target is missed'}: loading and hashing "
        f"the inputs alone take {floor:.3f} s "
        f"({floor / base:.2f}x the baseline) -- the SHA-256 of every input file is part of the spec's "
        "`/provenance` (4.6), and the baseline hashes nothing. The container write then costs more than "
        f"`numpy.save` ({parts[W32] / parts[NPY]:.1f}x for the float32 images: one chunk per image, "
        "fletcher32 per chunk, SHA-256 per dataset; see the container I/O section), and the uint8 path adds the "
        f"float64 rounding with its loss report ({parts[U8] / base:.2f}x the baseline, after the blockwise "
        f"rewrite; the whole-array form takes {parts[U8_OLD]:.3f} s). Hashing the inputs on a thread while "
        "the arrays load and round would hide most of the SHA-256 step on two cores; the checksums themselves "
        "are what a D_LA file promises, so they stay.",
    ]
    lines += ["", f"Overall: {'PASS' if passed else 'FAIL'} (target: each conversion within {TARGET:g}x the baseline)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="IPC 10 (100 images); print only unless --data-dir/--results")
    add_output_args(parser)
    args = parser.parse_args(argv)
    out = Output.from_args(args)
    payload = out.load("convert_speed") if out.render_only else out.save("convert_speed", measure(args.quick))
    section = render(payload)
    print(section)
    out.update("convert_speed", "## Conversion speed: `ladd convert mtt` vs torch.load + numpy.save\n\n" + section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
