"""`ladd size` on 20 real MTT distilled 128x128 images with N=5 float32 dense labels.

Usage::

    .venv/bin/python benchmarks/size_mtt.py                # saves results/size_mtt.json and updates the
                                                           # size_mtt section of RESULTS/storage.md
    .venv/bin/python benchmarks/size_mtt.py --render-only  # re-render the section from the saved JSON
    .venv/bin/python benchmarks/size_mtt.py --quick        # fewer labeler steps, prints only

Images: ``../shared/data/mtt_distilled_128.npz`` (MTT, IPC 1, ImageFruit and ImageSquawk, 10
classes each; read in place, never copied into the repository). Skips with a message when absent.

Dense labels come from a real labeler pass, not random numbers: no ImageNet-subset training data
exists offline, so for each subset a ConvNet-D5 (width 64 rather than the paper's 128, to keep the
CPU run short) is trained for a few dozen SGD steps on random resized crops of that subset's own 10
images, then labels the 25 sub-images (N=5, R=62.5%, spec section 5) of each image at T=1. The
sensitivity table shows why the exact labeler hardly matters for the storage figure: float32
probabilities cost about the same whatever their distribution, unless they are degenerate.

The file is measured with the ``ladd size`` command itself (``--json``), so the numbers here are
exactly what a user sees.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from click.testing import CliRunner  # noqa: E402

from ladd_cli.main import main as ladd  # noqa: E402
from _common import Output, add_output_args  # noqa: E402
from ladd_format import DenseSpec, DLAWriter, verify  # noqa: E402
from ladd_format.codecs import make_codec  # noqa: E402
from ladd_format.geometry import boxes  # noqa: E402
from ladd_format.size import measure_arrays  # noqa: E402
from ladd_format.torch import subimages  # noqa: E402
from storage_common import DATA, MEAN, STD, normalise, train_labeler  # noqa: E402

N, RATIO, PAPER_PCT = 5, 0.625, 2.5


@torch.inference_mode()
def dense_labels(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(images).float() / 255
    subs = subimages(x, boxes(128, 128, N, RATIO))                      # (10, 25, 3, 128, 128)
    logits = model(normalise(subs.reshape(-1, 3, 128, 128)))
    return torch.softmax(logits, -1).reshape(len(images), N * N, 10).numpy().astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def measure(steps: int) -> dict:
    """Labelers, the D_LA file, `ladd size` on it and the sensitivity rows, as plain data."""
    data = np.load(DATA)
    subsets = ["imagefruit", "imagesquawk"]
    images = np.concatenate([data[s] for s in subsets])                 # (20, 3, 128, 128) uint8
    labels = np.concatenate([np.arange(10)] * 2)
    dense, accs = [], []
    for i, name in enumerate(subsets):
        model = train_labeler(data[name], steps, seed=i)
        d = dense_labels(model, data[name])
        dense.append(d)
        accs.append(float((d.argmax(-1) == np.arange(10)[:, None]).mean()))
    dense = np.concatenate(dense)
    entropy = float(-(dense * np.log(np.clip(dense, 1e-12, 1))).sum(-1).mean())

    with tempfile.TemporaryDirectory(prefix="ladd-size-mtt-") as tmp:
        path = Path(tmp) / "mtt20.dla.h5"
        with DLAWriter(path, num_classes=10, image_shape=(3, 128, 128), mean=MEAN, std=STD,
                       dense=DenseSpec(N, RATIO, make_codec("float32"),
                                       labeler={"arch": "convnet-d5 (width 64)", "epochs": steps,
                                                "training_data": "random crops of the 10 images of each subset"}),
                       source_dataset="imagefruit+imagesquawk", distillation="mtt", ipc=2,
                       converter="benchmarks/size_mtt.py", inputs=[DATA]) as w:
            w.append(images, labels, dense=dense)
        assert verify(path) == []
        runner = CliRunner()
        zip_json = json.loads(runner.invoke(ladd, ["size", str(path), "--json"]).output)
        zstd_json = json.loads(runner.invoke(ladd, ["size", str(path), "--method", "zstd", "--json"]).output)
        text = runner.invoke(ladd, ["size", str(path)]).output.replace(str(path), "mtt20.dla.h5")

    raw_img, raw_dense = images.nbytes, dense.nbytes
    per_subset = [measure_arrays(data[s], np.arange(10), {"probs": dense[10 * i:10 * i + 10]}, 10)
                  for i, s in enumerate(subsets)]

    rng = np.random.default_rng(0)
    sens = [("labeler pass (above)", dense)]
    for sharp in (1.0, 3.0, 10.0):
        sens.append((f"softmax of N(0, {sharp:g}^2) logits", softmax(rng.normal(size=dense.shape) * sharp)
                     .astype(np.float32)))
    sens.append(("one-hot (degenerate)", np.eye(10, dtype=np.float32)[rng.integers(0, 10, dense.shape[:2])]))
    sens.append(("uniform 0.1 (degenerate)", np.full(dense.shape, 0.1, np.float32)))
    sens_rows = [{"name": name, **measure_arrays(images, labels, {"probs": d}, 10).as_dict()} for name, d in sens]
    zip_json.pop("file", None)
    zstd_json.pop("file", None)
    return {"steps": steps, "accs": accs, "entropy": entropy, "ladd_size_text": text, "zip": zip_json,
            "zstd": zstd_json, "raw_img": raw_img, "raw_dense": raw_dense,
            "per_subset": [{"name": name, **r.as_dict()} for name, r in zip(subsets, per_subset)],
            "sensitivity": sens_rows}


def render(payload: dict) -> str:
    """The size_mtt section (title excluded) from the saved data."""
    d = payload["data"]
    steps, accs, entropy, text = d["steps"], d["accs"], d["entropy"], d["ladd_size_text"]
    zip_json, zstd_json, raw_img, raw_dense = d["zip"], d["zstd"], d["raw_img"], d["raw_dense"]
    img_ratio = zip_json["images_bytes"] / raw_img
    dense_ratio = zip_json["dense_bytes"] / raw_dense
    needed_img_ratio = (100 * raw_dense / raw_img) * dense_ratio / PAPER_PCT

    lines = [
        f"- Data: {DATA.name} from ../shared/data — 20 real MTT distilled images (ImageFruit and ImageSquawk, "
        "IPC 1 each, 3x128x128 uint8), stored as one set with C = 10, IPC 2.",
        f"- Dense labels: N = {N}, R = {RATIO} (80x80 crops at offsets 0, 12, 24, 36, 48), float32, from a "
        f"ConvNet-D5 (width 64) labeler per subset trained {steps} SGD steps on random crops of that subset's "
        f"images (top-1 of sub-images = source image's class: {accs[0]:.0%} / {accs[1]:.0%}; mean entropy "
        f"{entropy:.2f} nats, uniform would be {np.log(10):.2f}).",
        f"- Command: `python benchmarks/size_mtt.py` on {payload['date'][:10]}; "
        "numbers are the `ladd size --json` output for the written file.",
        "",
        "`ladd size mtt20.dla.h5`:",
        "",
        "```",
        text.rstrip(),
        "```",
        "",
        "| measure | base D bytes | D_LA bytes | overhead | IPC+1 | paper |",
        "|---|---:|---:|---:|---:|---:|",
        f"| zip (paper's method) | {zip_json['base_bytes']:,} | {zip_json['dla_bytes']:,} | "
        f"{zip_json['overhead_pct']:.2f}% | {zip_json['ipc_plus_one_pct']:.1f}% | {PAPER_PCT}% |",
        f"| zstd level 3 | {zstd_json['base_bytes']:,} | {zstd_json['dla_bytes']:,} | "
        f"{zstd_json['overhead_pct']:.2f}% | {zstd_json['ipc_plus_one_pct']:.1f}% | - |",
    ]
    for r in d["per_subset"]:
        lines.append(f"| zip, {r['name']} alone (IPC 1) | {r['base_bytes']:,} | {r['dla_bytes']:,} | "
                     f"{r['overhead_pct']:.2f}% | {r['ipc_plus_one_pct']:.1f}% | - |")
    lines += [
        "",
        "Where the overhead comes from (zip): per image, the dense labels are 25 x 10 float32 = 1,000 raw bytes "
        f"against 49,152 raw bytes of pixels, a raw ratio of {100 * raw_dense / raw_img:.2f}%. Deflate shrinks the "
        f"pixels of these optimised images to {img_ratio:.1%} of their size and the float32 probabilities to "
        f"{dense_ratio:.1%} (the low mantissa bits are noise to it), so the overhead is "
        f"{100 * raw_dense / raw_img:.2f}% x {dense_ratio:.3f} / {img_ratio:.3f} = {zip_json['overhead_pct']:.2f}%. "
        "It does not depend on IPC: both parts grow by the same amount per image.",
        "",
        f"Against the paper's 2.5%: we measure {zip_json['overhead_pct']:.2f}% "
        f"({zip_json['overhead_pct'] - PAPER_PCT:+.2f} points). The paper's figure is for ImageNette distilled "
        "images; with labels compressing as here, 2.5% needs images that zip to "
        f"{needed_img_ratio:.1%} of raw instead of {img_ratio:.1%} (smoother images than these MTT ones), "
        "or extra bytes per label the paper does not describe (e.g. "
        "`torch.save` pickles, per-file zip headers). The paper does not state its serialisation, so the "
        "remaining gap cannot be attributed more exactly; our measure is specified in spec section 7.",
        "",
        "Sensitivity of the overhead to the label distribution (same 20 images, zip):",
        "",
        "| dense labels | dense bytes (zip) | overhead |",
        "|---|---:|---:|",
    ]
    for r in d["sensitivity"]:
        lines.append(f"| {r['name']} | {r['dense_bytes']:,} | {r['overhead_pct']:.2f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few labeler steps; print only unless --data-dir/--results")
    parser.add_argument("--steps", type=int, default=60, help="labeler SGD steps per subset")
    add_output_args(parser)
    args = parser.parse_args(argv)
    out = Output.from_args(args)
    if out.render_only:
        payload = out.load("size_mtt")
    else:
        if not DATA.exists():
            print(f"skipped: {DATA} not found (the real MTT images live in ../shared/data)")
            return 0
        payload = out.save("size_mtt", measure(3 if args.quick else args.steps))
    section = render(payload)
    print(section)
    out.update("size_mtt", "## `ladd size` on 20 real MTT images\n\n" + section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
