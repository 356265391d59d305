"""The demo's results page: ``report.md``, ``report.png`` and ``report.json`` in the work folder.

The picture is drawn with Pillow (no plotting library needed): on the left what ``ladd show`` draws
for the first image of the student's D_LA (the image with frames on its corner and centre
sub-images, the N x N sub-images as the student sees them, each captioned with its top dense labels
as ``class: name (probability)``, and a legend; :mod:`.show`), on the right the accuracy bars
(mean, +- one std over seeds).
Every file is written to a temporary sibling and renamed.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from .. import atomic
from ..reader import open_dla
from ..train.accuracy import accuracy_table
from .show import BG, INK, draw_dense, load_font

COLOURS = {"hard": (120, 120, 120), "LADD": (31, 119, 180), "baseline++": (255, 127, 14)}


def draw_subimage_panel(path: Path, index: int = 0, cell: int = 64) -> Image.Image:
    """Image ``index`` of a D_LA with its N x N sub-images captioned by their top dense labels and a
    legend: the picture ``ladd show`` draws (:func:`ladd_format.viz.show.draw_dense`)."""
    with open_dla(path) as f:
        return draw_dense(f, [index], cell=cell)


def draw_accuracy_bars(rows: list[dict], width: int = 420, height: int = 360) -> Image.Image:
    """Grouped bars per IPC: hard, LADD, baseline++ (mean test accuracy, +- one std)."""
    font, small = load_font(14), load_font(11)
    canvas = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(canvas)
    draw.text((0, 0), "test accuracy (mean +- std over seeds)", fill=INK, font=font)
    left, right, top, bottom = 36, width - 8, 40, height - 40
    draw.line([left, top, left, bottom], fill=INK)
    draw.line([left, bottom, right, bottom], fill=INK)
    for tick in range(0, 101, 20):
        y = bottom - (bottom - top) * tick / 100
        draw.line([left - 4, y, left, y], fill=INK)
        draw.text((2, y - 7), f"{tick}%", fill=INK, font=small)
    ipcs = sorted({r["ipc"] for r in rows})
    methods = [m for m in COLOURS if any(r["method"] == m for r in rows)]
    group_w = (right - left) / max(1, len(ipcs))
    bar_w = group_w * 0.8 / max(1, len(methods))
    for g, ipc in enumerate(ipcs):
        gx = left + g * group_w + group_w * 0.1
        for m, method in enumerate(methods):
            row = next((r for r in rows if r["ipc"] == ipc and r["method"] == method), None)
            if row is None:
                continue
            x = gx + m * bar_w
            y = bottom - (bottom - top) * row["mean"]
            draw.rectangle([x + 2, y, x + bar_w - 2, bottom], fill=COLOURS[method])
            half = (bottom - top) * row["std"]
            cx = x + bar_w / 2
            draw.line([cx, y - half, cx, y + half], fill=INK, width=1)
            draw.text((x + 2, y - half - 14), f"{100 * row['mean']:.1f}", fill=INK, font=small)
        draw.text((gx + group_w * 0.3, bottom + 4), f"IPC {ipc}", fill=INK, font=small)
    lx = left + 4
    for method in methods:
        draw.rectangle([lx, height - 16, lx + 10, height - 6], fill=COLOURS[method])
        draw.text((lx + 14, height - 18), method, fill=INK, font=small)
        lx += 24 + 7 * len(method)
    return canvas


def results_figure(dla_path: Path, rows: list[dict]) -> Image.Image:
    """``report.png``: the sub-image panel of the D_LA's first image beside the accuracy bars."""
    left = draw_subimage_panel(dla_path)
    right = draw_accuracy_bars(rows, height=max(360, left.height))
    out = Image.new("RGB", (left.width + 24 + right.width, max(left.height, right.height)), BG)
    out.paste(left, (0, 0))
    out.paste(right, (left.width + 24, 0))
    return out


def results_markdown(result: dict) -> str:
    """``report.md``: the data, the accuracy and storage table, the settings chosen, and a command per row."""
    s = result["settings"]
    st = s["student"]
    lab = result["labeler"]
    crop_text = (f"random square crops of {s['labeler_min_crop']:.1%}-100% of each side"
                 if s["labeler_min_crop"] < 1 else "whole images (no crops; crops gave worse students, see "
                 "benchmarks/RESULTS.md)")
    lines = ["# ladd demo report", "",
             f"Data: {result['train']} (the labeler's data and the pool the distilled sets D draw random real "
             f"images from); students are tested on {result['test']}.", "",
             "![report](report.png)", "",
             "## Accuracy and storage", "",
             "Test accuracy of fresh students; `zip bytes` is the paper's measure of the file's images + labels "
             "(+ dense labels for LADD); `extra` is relative to D at the same IPC.", "",
             "```", *accuracy_table(result["rows"], result["settings"].get("n", 5)), "```", "",
             "## What was chosen", "",
             f"- Labeler: ConvNet-D3, width {s['labeler_width']}, {s['labeler_epochs']} epochs of SGD (lr 0.01, "
             f"batch 256), {crop_text}; validation accuracy {lab['val_accuracy']:.3f}; the centre sub-image's top "
             f"dense label equals the hard label on {result['centre_top1']:.0%} of the images.",
             f"- Dense labels: N = 5, R = 62.5%, codecs {', '.join(s['codecs'])}; students train on the `uint8` file (the spec's recommendation for C = 10; codec effect on accuracy in benchmarks/RESULTS.md).",
             f"- Students: {st['arch']}, width {(st['arch_kwargs'] or {}).get('width', 128)}, {st['epochs']} epochs, "
             f"SGD lr {st['lr']} momentum {st['momentum']} weight decay {st['weight_decay']}, batch {st['batch_size']}, "
             f"random zoom 80-100% and shift in every mode, {st['seeds']} seed(s).",
             f"- LADD loss: Eq. 5 with {st['sub_per_image'] or 'all'} random sub-images per step and the local term "
             f"{'averaged' if st['reduction'] == 'mean' else 'summed'} over sub-images "
             f"(`--reduction {st['reduction']}`; see benchmarks/RESULTS.md for sum vs mean).",
             f"- Time: {result['seconds']:.0f} s.", "",
             "## Reproduce a row", "", "```"]
    lines += [r["command"] for r in result["rows"]]
    lines += ["```", ""]
    return "\n".join(lines)


def write_results(workdir: Path, result: dict, dla_path: Path) -> list[Path]:
    """Write ``report.json``, ``report.md`` and ``report.png`` into ``workdir`` (each atomically); their paths."""
    workdir = Path(workdir)
    paths = [workdir / "report.json", workdir / "report.md", workdir / "report.png"]
    with atomic.replace_file(paths[0], overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2, default=str))
    with atomic.replace_file(paths[1], overwrite=True) as tmp:
        Path(tmp).write_text(results_markdown(result))
    with atomic.replace_file(paths[2], overwrite=True) as tmp:
        results_figure(dla_path, result["rows"]).save(tmp, format="PNG")
    return paths
