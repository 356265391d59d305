"""Students at C = 1000: do the dense-label codecs cost student accuracy with real 1000-way labels?

Usage::

    .venv/bin/python benchmarks/students_c1000.py                # ~35 min on 2 CPU cores; saves
                                                                 # results/students_c1000.json and writes
                                                                 # the "Students at C = 1000" section
    .venv/bin/python benchmarks/students_c1000.py --render-only  # re-render from the saved JSON
    .venv/bin/python benchmarks/students_c1000.py --quick        # tiny settings, prints only
    .venv/bin/python benchmarks/students_c1000.py --temperature 0.25  # sharper labels (~15 min): float32
                                                                 # and top-k only, its own section

Why this data: no 1000-class data set or 1000-way model exists offline on the machines this project
runs on, and nothing may be downloaded. The stand-in is the **digits-1000** task of the storage
benchmark (``storage_common.Digits1000``): three real handwritten scikit-learn digits side by side on
a 24 x 24 canvas, class = the 3-digit number (1000 classes), composites of the train split's digits
for training and of the test split's digits for testing. Its soft labels are real 1000-way outputs of
a trained network with real structure: a sub-image that cuts a digit off leaves the labeler unsure
between the numbers that share the digits it sees, so the labels are broad (mean entropy about 5
nats at T = 1), which is the hard case for top-k codecs. It is a stand-in, not ImageNet: an
ImageNet labeler's labels may be sharper, so the storage section also reports codec fidelity at
sharper temperatures.

Method (one run, every figure from it):

- Labeler: the storage benchmark's digits-1000 labeler (ConvNet-D3 width 16, Adam, 800 steps of 256
  random train composites with random crops; ``Digits1000.train``).
- D: ``ipc`` random train composites per class (the "random real images" baseline of Qin et al.),
  24 px, uint8. Test: 2 held-out composites per class from the test split (2,000 images).
- Dense labels: N = 5, R = 0.625, the labeler's softmax at T = 1 on every sub-image (the same
  sub-images ``ladd augment`` and the students rebuild), stored once per codec in its own D_LA file
  with the same images: float32 (the reference), float16, top-k (k = 10, 20, 50) with float16
  values, and top-k k = 20 with uint8 values.
- Fidelity of each codec's decoded rows against the float32 rows: mean KL, top-1 agreement; bytes:
  ``ladd size`` (zip) of each file, the dense labels' share per image, and the overhead over D.
- Students: ``ladd evaluate`` (the library's ``evaluate``) with the same seeds on every file: ConvNet-D3
  width 16, 100 epochs of batches of 32 (at 1,000 images the default batch of 256 gives 400 steps in
  all, too few at 1,000 classes: a pilot gave 1.2% LADD / 0.8% hard, against 27.6% / 9.8% with
  batches of 32), SGD lr 0.01, 4 random sub-images per step, local term averaged; hard-label students on D
  for reference. Seeds are paired: seed s of every codec starts from the same weights and draws the
  same batches and sub-images, so the per-seed difference to float32 isolates the codec.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _common import Output, add_output_args  # noqa: E402
from storage_common import (DATA, N0, R0, Digits1000, base1k_images, fidelity, label_stats,  # noqa: E402
                            load_images, softmax_t)
from ladd_format import DenseSpec, DLAWriter, geometry  # noqa: E402
from ladd_format.codecs import parse_codec  # noqa: E402
from ladd_format.train.evaluate import EvalConfig  # noqa: E402
from ladd_format.train.pool import StudentJob, run_students, available_cores  # noqa: E402
from ladd_format.labeler.sources import Source, resize_uint8  # noqa: E402
from ladd_format.size import measure_arrays, measure_file  # noqa: E402
from ladd_format.torch import subimages  # noqa: E402

NAME = KEY = "students_c1000"
TITLE = "## Students at C = 1000: do the codecs cost accuracy with real 1000-way labels? (digits-1000)"
SHARP_CODECS = ("float32", "topk:k=10,values=float16", "topk:k=20,values=float16", "topk:k=50,values=float16")


def name_for(temperature: float) -> str:
    """The JSON name and RESULTS key of a run at ``temperature``: T = 1 is ``students_c1000``."""
    return NAME if temperature == 1 else f"{NAME}_t{temperature:g}".replace(".", "")


def title_for(temperature: float) -> str:
    return TITLE if temperature == 1 else TITLE.replace("1000-way labels?", f"1000-way labels at T = {temperature:g}?")
CODECS = ("float32", "float16", "topk:k=10,values=float16", "topk:k=20,values=float16",
          "topk:k=50,values=float16", "topk:k=20,values=uint8")
MEAN, STD = (0.15, 0.15, 0.15), (0.3, 0.3, 0.3)     # Digits1000.norm


def settings(quick: bool) -> dict:
    if quick:
        return dict(ipc=1, labeler_steps=15, epochs=2, seeds=1, width=8, test_per_class=1, batch=64, lr=0.01,
                    temperature=1.0,
                    codecs=("float32", "topk:k=10,values=float16"))
    return dict(ipc=1, labeler_steps=800, epochs=100, seeds=3, width=16, test_per_class=2, batch=32, lr=0.01,
                codecs=CODECS, temperature=1.0)


def composites(d1k: Digits1000, per_class: int, split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` composites of every class from ``split``'s digits: uint8 ``(1000 * per_class, 3, 24, 24)``."""
    labels = torch.arange(1000 * per_class) % 1000
    x = d1k.compose(labels, torch.Generator().manual_seed(seed), split)
    return (x * 255).round().to(torch.uint8).numpy(), labels.numpy().astype(np.int64)


@torch.inference_mode()
def dense_probs(model: torch.nn.Module, images: np.ndarray, t: float = 1.0) -> np.ndarray:
    """The labeler's softmax at temperature ``t`` on the N x N sub-images of each image: ``(M, N*N, 1000)``."""
    box = geometry.boxes(images.shape[2], images.shape[3], N0, R0)
    out = []
    for start in range(0, len(images), 100):
        x = Digits1000.norm(torch.from_numpy(images[start:start + 100]).float() / 255)
        subs = subimages(x, box).flatten(0, 1).contiguous(memory_format=torch.channels_last)
        out.append(model(subs).view(-1, N0 * N0, 1000).double().numpy())
    return softmax_t(np.concatenate(out), t)


def write_set(path: Path, images, labels, probs=None, codec: str | None = None) -> Path:
    dense = None if codec is None else DenseSpec(N0, R0, parse_codec(codec), labeler={"arch": "convnet-d3",
                                                                                      "width": 16,
                                                                                      "source": "digits-1000"})
    with DLAWriter(path, num_classes=1000, image_shape=images.shape[1:], mean=MEAN, std=STD, dense=dense,
                   class_names=[f"{c:03d}" for c in range(1000)], source_dataset="digits-1000 (sklearn digits)",
                   distillation="random-real", ipc=len(images) // 1000, converter="benchmarks/students_c1000.py",
                   overwrite=True) as w:
        w.append(images, labels, **({} if probs is None else {"dense": probs}))
    return path


def image_bytes_224() -> float | None:
    """Zip bytes per image of an ImageNet-sized image as the storage section measures it: the 160
    MTT images of its C = 1000 rows (the 20 real ones under variants 0-7), upsampled to 224 px;
    None where ../shared/data is absent."""
    if not DATA.exists():
        return None
    images = resize_uint8(base1k_images(load_images(), 160), 224)
    return measure_arrays(images, np.arange(len(images)) % 1000, None, 1000).base_bytes / len(images)


def decoded(probs: np.ndarray, codec: str) -> np.ndarray:
    c = parse_codec(codec)
    return c.decode(c.encode(probs), 1000)


def measure(quick: bool, workers: int, overrides: dict | None = None) -> dict:
    st = {**settings(quick), **(overrides or {})}
    timing: dict[str, float] = {}
    t = time.perf_counter()
    d1k = Digits1000()
    model, last_loss = d1k.train(st["labeler_steps"])
    timing["train the labeler"] = time.perf_counter() - t
    x, y = composites(d1k, st["ipc"], "train", seed=5)
    xt, yt = composites(d1k, st["test_per_class"], "test", seed=6)
    with torch.inference_mode():
        full = model(Digits1000.norm(torch.from_numpy(xt).float() / 255).contiguous(memory_format=torch.channels_last))
    labeler_test_acc = float((full.argmax(-1).numpy() == yt).mean())
    t = time.perf_counter()
    probs = dense_probs(model, x, st["temperature"])
    timing["label D"] = time.perf_counter() - t
    stats = label_stats(probs)
    stats["sub_top1_true"] = float((probs.argmax(-1) == y[:, None]).mean())
    test = Source(xt, yt, [f"{c:03d}" for c in range(1000)],
                  f"digits-1000 test composites ({len(yt)} images, 24px, test-split digits)")
    per_image_224 = image_bytes_224()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ladd-c1000-") as tmp:
        tmp = Path(tmp)
        plain = write_set(tmp / "D.dla.h5", x, y)
        base = measure_file(plain, "zip").dla_bytes
        specs = [("hard", None, plain, "hard")]
        for codec in st["codecs"]:
            path = write_set(tmp / f"D_LA_{len(specs)}.dla.h5", x, y, probs, codec)
            specs.append(("LADD", codec, path, "ladd"))
        config = EvalConfig(arch="convnet-d3", arch_kwargs={"width": st["width"]}, epochs=st["epochs"], seeds=1,
                            lr=st["lr"], batch_size=st["batch"], sub_per_image=4, reduction="mean", device="cpu")
        jobs = [StudentJob((r, seed), str(path), replace(config, mode=mode), seed)
                for r, (_, _, path, mode) in enumerate(specs) for seed in range(st["seeds"])]
        t = time.perf_counter()
        done = [0]

        def on_done(key, acc):
            done[0] += 1
            print(f"  student {done[0]}/{len(jobs)}: row {key[0]} seed {key[1]}: {100 * acc:.2f}% "
                  f"({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
        accs = run_students(jobs, test, workers, on_done=on_done, threads=1 if workers > 1 else None)
        timing["students"] = time.perf_counter() - t
        for r, (method, codec, path, mode) in enumerate(specs):
            size = measure_file(path, "zip")
            row = {"method": method, "codec": codec, "bytes": size.dla_bytes,
                   "dense_bytes_per_image": (size.dla_bytes - base) / len(x),
                   "extra_pct": 100.0 * (size.dla_bytes - base) / base,
                   "pct_224": (None if per_image_224 is None
                               else 100.0 * (size.dla_bytes - base) / len(x) / per_image_224),
                   "accuracies": [accs[(r, s)] for s in range(st["seeds"])]}
            if codec is not None:
                row.update(fidelity(probs, decoded(probs, codec)))
            rows.append(row)
    return {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in st.items()},
            "workers": workers, "labeler_last_loss": last_loss, "labeler_test_acc": labeler_test_acc,
            "label_stats": stats, "base_bytes": base,
            "image_bytes_224": per_image_224, "rows": rows, "timing": timing, "m": len(x)}


def _acc(values) -> str:
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}"


def render(payload: dict) -> str:
    d = payload["data"]
    st, s = d["settings"], d["label_stats"]
    ref = next(r for r in d["rows"] if r["codec"] == "float32")
    lines = [f"- Machine: {payload['machine']}, CPU only",
             f"- Date: {payload['date']}; command: `{payload['command']}` (ran in "
             + ", ".join(f"{k} {v:.0f} s" for k, v in d["timing"].items()) + ")",
             f"- Data: digits-1000 (see the module docstring): D = {st['ipc']} random train composite(s) per "
             f"class ({d['m']} images, 3 x 24 x 24 uint8), test = {st['test_per_class']} held-out composites per "
             f"class from the test split's digits.",
             f"- Labeler: ConvNet-D3 width 16, {st['labeler_steps']} Adam steps (last loss {d['labeler_last_loss']:.2f}); "
             f"whole-image top-1 on the test composites {100 * d['labeler_test_acc']:.1f}%. Its dense labels of D "
             f"(N = 5, R = 0.625, T = {st.get('temperature', 1.0):g}): mean entropy {s['entropy']:.2f} nats (uniform: 6.91), mean top-1 "
             f"probability {s['top1_mass']:.3f}, mass in the top 10/20/50 {s['mass10']:.2f}/{s['mass20']:.2f}/"
             f"{s['mass50']:.2f}; the argmax is the image's own class on {100 * s['sub_top1_true']:.1f}% of the "
             "sub-images.",
             f"- Students: `ladd evaluate` ConvNet-D3 width {st['width']}, {st['epochs']} epochs, batch "
             f"{st['batch']}, SGD lr {st['lr']}, "
             f"4 random sub-images per step, local term averaged, seeds 0-{st['seeds'] - 1} (paired: the same "
             f"seed starts from the same weights and draws the same batches on every file), "
             f"{d['workers']} processes of one thread. Accuracy: mean ± std over seeds (%); "
             "Δ: mean ± std of the per-seed difference to float32 (points).",
             "",
             "- Bytes: `ladd size` (zip) of each file; dense B/image = (D_LA − D) / M; overhead on 224 px images ="
             " dense B/image over the zip bytes of one 224 px image as the storage section measures them "
             + (f"({d['image_bytes_224']:,.0f} B: its 160 MTT images upsampled; "
                "an upper bound, as upsampled images deflate better than native ones)."
                if d.get("image_bytes_224") else "(not measured: ../shared/data is absent)."),
             "",
             "| labels | file zip bytes | dense B/image | overhead on 224 px images | mean KL (nats) | "
             "top-1 agreement | student accuracy | Δ vs float32 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in d["rows"]:
        if r["codec"] is None:
            lines.append(f"| hard labels only (D) | {r['bytes']:,} | - | - | - | - | {_acc(r['accuracies'])} | "
                         f"{_delta(r, ref)} |")
            continue
        kl = "< 1e-6" if r["kl"] < 1e-6 else f"{r['kl']:.4f}"
        pct = "-" if r.get("pct_224") is None else f"{r['pct_224']:.1f}%"
        lines.append(f"| `{r['codec']}` | {r['bytes']:,} | {r['dense_bytes_per_image']:,.0f} | "
                     f"{pct} | {kl} | {100 * r['top1']:.2f}% | {_acc(r['accuracies'])} | "
                     f"{'-' if r is ref else _delta(r, ref)} |")
    return "\n".join(lines)


def _delta(row: dict, ref: dict) -> str:
    diff = 100 * (np.asarray(row["accuracies"]) - np.asarray(ref["accuracies"]))
    return f"{diff.mean():+.2f} ± {diff.std():.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings, print only")
    ap.add_argument("--workers", type=int, default=None, help="student processes (default: the usable cores)")
    ap.add_argument("--epochs", type=int, default=None, help="student epochs (default 100)")
    ap.add_argument("--seeds", type=int, default=None, help="students per file (default 3)")
    ap.add_argument("--batch-size", type=int, default=None, help="student batch (default 32)")
    ap.add_argument("--lr", type=float, default=None, help="student learning rate (default 0.01)")
    ap.add_argument("--ipc", type=int, default=None, help="images per class of D (default 1)")
    ap.add_argument("--temperature", type=float, default=1.0,
                    help="softmax temperature of the dense labels (default 1: the labeler's own); another T is "
                         f"saved as its own section (students_c1000_t<T>) and defaults to the codecs "
                         f"{'; '.join(SHARP_CODECS)}")
    ap.add_argument("--codecs", default=None, help="codec specs separated by ';' "
                    "(default: " + "; ".join(CODECS) + ")")
    add_output_args(ap)
    args = ap.parse_args(argv)
    out = Output.from_args(args)
    workers = args.workers or available_cores()
    overrides = {k: v for k, v in (("epochs", args.epochs), ("seeds", args.seeds), ("batch", args.batch_size),
                                   ("lr", args.lr), ("ipc", args.ipc)) if v is not None}
    if args.temperature <= 0:
        ap.error("--temperature must be > 0")
    overrides["temperature"] = args.temperature
    if args.temperature != 1 and not args.quick:
        overrides["codecs"] = SHARP_CODECS
    if args.codecs:
        overrides["codecs"] = tuple(c.strip() for c in args.codecs.split(";") if c.strip())
    return out.publish(name_for(args.temperature), title_for(args.temperature), render,
                       measure=lambda: measure(args.quick, workers, overrides))


if __name__ == "__main__":
    sys.exit(main())
