"""What the dense labels buy: student accuracy on digits (the demo's data), four experiments.

Usage::

    .venv/bin/python benchmarks/students.py                       # all sections -> RESULTS/students.md
    .venv/bin/python benchmarks/students.py --only ipc,codec      # some sections
    .venv/bin/python benchmarks/students.py --quick               # tiny settings, prints only
    python benchmarks/students.py --device cuda --only ipc,archfull  # on a GPU machine

Sections (each written to its own part of RESULTS/students.md as soon as it finishes):

- ``ipc``: the demo's table at IPC 1, 5 and 10 over 3 seeds: hard labels on D, Eq. 5 on the D_LA
  (uint8 codec), hard labels on IPC+1 (baseline++), with each file's zip size.
- ``loss``: the investigation of the first LADD loss: labeler trained without / with random crops
  down to R, and the local term summed (Eq. 5) / averaged over sub-images; with the labelers'
  sub-image accuracy on the test split.
- ``arch``: cross-architecture at IPC 1: ConvNet-D3, ResNet-18, VGG-11, AlexNet and a small ViT
  (the ``-cifar`` small-image variants, widths reduced for the CPU), labeler ConvNet-D3.
- ``codec``: the student codec's effect: float32 vs float16 vs uint8 vs top-3 uint8.
- ``epochs``: which labeler checkpoint: ConvNet-D3 checkpoints after 2, 5, 10, 20 and 50 epochs
  of one run (constant lr, so epoch 20 is the demo's labeler), LADD students at IPC 1 and 5.
- ``archfull``: cross-architecture at IPC 1 and 10 with every student at its registry width
  (ConvNet-D3 128, ResNet-18 64, VGG-11 64, AlexNet 128, ViT 192 x 6): for a GPU machine.

``--device cuda`` trains the labeler and the students on the GPU and writes each section under
``students_<name>_gpu`` (``--results-suffix``), beside the CPU sections.

Every student uses the demo's settings (:class:`ladd_format.demo.DemoSettings`) unless a row says
otherwise; the same file with ``ladd evaluate`` and the printed options gives the same numbers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _common import gpu_line, machine, update_results  # noqa: E402
from ladd_format import geometry  # noqa: E402
from ladd_format.demo import (CODECS, N, RATIO, SIDE, DemoSettings, codec_label, label_augment,  # noqa: E402
                              quick_settings, random_real, student_row, train_demo_labeler, write_plain_set)
from ladd_format.labeler import TrainConfig, load_checkpoint, load_source, train_labeler  # noqa: E402
from ladd_format.size import measure_file  # noqa: E402
from ladd_format.torch import subimages  # noqa: E402

WORK = HERE / "_work" / "students"
ARCHS = (("convnet-d3", {"width": 32}), ("resnet18-cifar", {"width": 16}), ("vgg11-cifar", {"width": 32}),
         ("alexnet-cifar", {"width": 64}), ("vit-cifar", {"width": 96, "depth": 4}))
ARCHS_FULL = (("convnet-d3", {"width": 128}), ("resnet18-cifar", {"width": 64}), ("vgg11-cifar", {"width": 64}),
              ("alexnet-cifar", {"width": 128}), ("vit-cifar", {"width": 192, "depth": 6}))


def fmt(row: dict) -> str:
    return f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f}"


class Bench:
    def __init__(self, settings: DemoSettings):
        self.s = settings
        self.train, self.test = load_source("digits", SIDE), load_source("digits-test", SIDE)
        WORK.mkdir(parents=True, exist_ok=True)
        self._labelers: dict[float, dict] = {}
        self._plain: dict[int, Path] = {}

    def labeler(self, min_crop: float) -> dict:
        if min_crop not in self._labelers:
            t = time.perf_counter()
            self._labelers[min_crop] = train_demo_labeler(self.train, WORK / f"labeler-crop{min_crop}",
                                                          replace(self.s, labeler_min_crop=min_crop),
                                                          self.s.student.device)
            print(f"labeler min_crop={min_crop}: val {self._labelers[min_crop]['val_accuracy']:.3f} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
        return self._labelers[min_crop]

    def plain(self, ipc: int) -> Path:
        if ipc not in self._plain:
            self._plain[ipc] = write_plain_set(WORK / f"D_ipc{ipc}.dla.h5", self.train,
                                               random_real(self.train, ipc, self.s.seed), ipc)
        return self._plain[ipc]

    def dla(self, ipc: int, codec: str = "uint8", min_crop: float | None = None) -> Path:
        min_crop = self.s.labeler_min_crop if min_crop is None else min_crop
        name = codec_label(codec)
        out = WORK / f"DLA_ipc{ipc}_{name}_crop{min_crop}.dla.h5"
        if not out.exists():
            label_augment(self.plain(ipc), self.labeler(min_crop)["path"], out, codec)
        return out

    def row(self, method: str, ipc: int, path: Path, mode: str, **config) -> dict:
        base = measure_file(self.plain(ipc), "zip").dla_bytes
        return student_row(method, ipc, path, base, self.test, replace(self.s.student, mode=mode, **config), print)

    def header(self, title: str, started: float) -> list[str]:
        st = self.s.student
        where = (f"labeler and students on {gpu_line()}" if st.device == "cuda"
                 else "CPU only")
        return [f"## {title}" + (f" — GPU machine ({torch.cuda.get_device_name(0)})" if st.device == "cuda" else ""),
                "", f"Run {_dt.date.today().isoformat()} on {machine()}, {where}; "
                f"{time.perf_counter() - started:.0f} s. Data: {self.test.description}, students tested on all of it. "
                f"Labeler: ConvNet-D3 width {self.s.labeler_width}, {self.s.labeler_epochs} epochs. Students "
                f"(unless a row says otherwise): {st.arch} width {(st.arch_kwargs or {}).get('width')}, "
                f"{st.epochs} epochs, SGD lr {st.lr}, {st.seeds} seeds, LADD with {st.sub_per_image} random "
                f"sub-images per step, local term `{st.reduction}`. Accuracy: mean ± std over seeds (%).", ""]

    # --- sections -------------------------------------------------------------------------------
    def section_ipc(self, ipcs=(1, 5, 10)) -> str:
        started = time.perf_counter()
        lines = ["| IPC | hard (D) | LADD (D_LA, uint8) | baseline++ (IPC+1) | D zip bytes | LADD extra | "
                 "baseline++ extra | LADD − baseline++ |", "|---|---|---|---|---|---|---|---|"]
        for ipc in ipcs:
            hard = self.row("hard", ipc, self.plain(ipc), "hard")
            ladd = self.row("LADD", ipc, self.dla(ipc), "ladd")
            plus = self.row("baseline++", ipc, self.plain(ipc + 1), "hard")
            lines.append(f"| {ipc} | {fmt(hard)} | {fmt(ladd)} | {fmt(plus)} | {hard['bytes']:,} | "
                         f"+{ladd['extra_pct']:.1f}% | +{plus['extra_pct']:.1f}% | "
                         f"{100 * (ladd['mean'] - plus['mean']):+.1f} |")
        return "\n".join(self.header("Students: hard vs LADD vs baseline++ at IPC 1, 5, 10 (the demo's table)",
                                     started) + lines)

    def subimage_quality(self, min_crop: float, path: str | None = None) -> dict:
        lab = load_checkpoint(path or self.labeler(min_crop)["path"])
        mean = torch.tensor(lab.meta["mean"]).view(1, -1, 1, 1)
        std = torch.tensor(lab.meta["std"]).view(1, -1, 1, 1)
        x = (torch.from_numpy(self.test.images).float() / 255 - mean) / std
        y = torch.from_numpy(self.test.labels)
        with torch.no_grad():
            lab.model.eval()
            full = lab.model(x).argmax(-1)
            p = lab.model(subimages(x, geometry.boxes(SIDE, SIDE, N, RATIO)).flatten(0, 1)).softmax(-1)
        p = p.view(len(x), N * N, -1)
        hit = (p.argmax(-1) == y[:, None]).float().mean(0)
        return {"full": float((full == y).float().mean()), "sub": float(hit.mean()), "centre": float(hit[N * N // 2]),
                "corners": float(hit[[0, N - 1, N * (N - 1), N * N - 1]].mean()),
                "p_true": float(p.gather(-1, y[:, None, None].expand(-1, N * N, 1)).mean())}

    def section_loss(self, ipcs=(1, 5)) -> str:
        started = time.perf_counter()
        q = {c: self.subimage_quality(c) for c in (1.0, self.s.labeler_min_crop)}
        lines = ["Labelers on the test split (top-1 against the true class; `p(true)`: mean probability of the "
                 "true class over all sub-images):", "",
                 "| labeler training | full image | all 25 sub-images | centre | 4 corners | p(true) |",
                 "|---|---|---|---|---|---|"]
        for c, r in q.items():
            what = "no crops (first demo)" if c == 1.0 else f"random crops {c:.1%}-100% of each side"
            lines.append(f"| {what} | {100 * r['full']:.1f} | {100 * r['sub']:.1f} | {100 * r['centre']:.1f} | "
                         f"{100 * r['corners']:.1f} | {r['p_true']:.3f} |")
        lines += ["", "| IPC | hard | LADD, no-crop labeler, sum | no-crop, mean | crop labeler, sum | crop, mean |",
                  "|---|---|---|---|---|---|"]
        for ipc in ipcs:
            cells = [fmt(self.row("hard", ipc, self.plain(ipc), "hard"))]
            for c in (1.0, self.s.labeler_min_crop):
                for red in ("sum", "mean"):
                    cells.append(fmt(self.row("LADD", ipc, self.dla(ipc, min_crop=c), "ladd", reduction=red)))
            lines.append(f"| {ipc} | " + " | ".join(cells) + " |")
        return "\n".join(self.header("Students: investigating the first LADD loss (labeler crops, sum vs mean)",
                                     started) + lines)

    def section_arch(self, ipcs=(1,), archs=ARCHS, what: str = "cross-architecture") -> str:
        started = time.perf_counter()
        lines = ["| IPC | student | hard (D) | LADD (D_LA, uint8) | baseline++ (IPC+1) | LADD − hard | "
                 "LADD − baseline++ |", "|---|---|---|---|---|---|---|"]
        for ipc in ipcs:
            for arch, kw in archs:
                cfg = {"arch": arch, "arch_kwargs": kw}
                hard = self.row("hard", ipc, self.plain(ipc), "hard", **cfg)
                ladd = self.row("LADD", ipc, self.dla(ipc), "ladd", **cfg)
                plus = self.row("baseline++", ipc, self.plain(ipc + 1), "hard", **cfg)
                name = f"{arch} ({', '.join(f'{k} {v}' for k, v in kw.items())})"
                lines.append(f"| {ipc} | {name} | {fmt(hard)} | {fmt(ladd)} | {fmt(plus)} | "
                             f"{100 * (ladd['mean'] - hard['mean']):+.1f} | "
                             f"{100 * (ladd['mean'] - plus['mean']):+.1f} |")
        at = ", ".join(str(i) for i in ipcs)
        return "\n".join(self.header(f"Students: {what} at IPC {at} (labeler ConvNet-D3)", started) + lines)

    def section_archfull(self, ipcs=(1, 10)) -> str:
        return self.section_arch(ipcs, ARCHS_FULL, "cross-architecture, full widths")

    def section_epochs(self, ipcs=(1, 5), epochs=(2, 5, 10, 20, 50)) -> str:
        started = time.perf_counter()
        cfg = TrainConfig(arch="convnet-d3", arch_kwargs={"width": self.s.labeler_width}, epochs=max(epochs),
                          save_epochs=tuple(epochs), batch_size=256, min_crop=self.s.labeler_min_crop,
                          device=self.s.student.device, seed=self.s.seed)
        records = train_labeler(self.train, WORK / "labeler-epochs", cfg, overwrite=True)
        lines = ["| labeler epoch | val acc | val entropy (nats) | centre sub-image top-1 | p(true) over sub-images | "
                 + " | ".join(f"LADD IPC {i}" for i in ipcs) + " |", "|---" * (5 + len(ipcs)) + "|"]
        for rec in records:
            q = self.subimage_quality(self.s.labeler_min_crop, rec["path"])
            cells = []
            for ipc in ipcs:
                out = WORK / f"DLA_ipc{ipc}_uint8_epoch{rec['epoch']}.dla.h5"
                label_augment(self.plain(ipc), rec["path"], out, "uint8")
                cells.append(fmt(self.row("LADD", ipc, out, "ladd")))
            lines.append(f"| {rec['epoch']} | {100 * rec['val_accuracy']:.1f} | {rec['val_entropy']:.3f} | "
                         f"{100 * q['centre']:.1f} | {q['p_true']:.3f} | " + " | ".join(cells) + " |")
        hard = [fmt(self.row("hard", ipc, self.plain(ipc), "hard")) for ipc in ipcs]
        lines.append("| (hard labels, no labeler) | - | - | - | - | " + " | ".join(hard) + " |")
        return "\n".join(self.header("Students: which labeler checkpoint (early stopping)", started) + lines)

    def section_codec(self, ipcs=(1, 5)) -> str:
        started = time.perf_counter()
        lines = ["| IPC | codec | D_LA zip bytes | extra over D | LADD accuracy |", "|---|---|---|---|---|"]
        for ipc in ipcs:
            for codec in CODECS:
                path = self.dla(ipc, codec)
                r = self.row("LADD", ipc, path, "ladd")
                lines.append(f"| {ipc} | {codec_label(codec)} | {r['bytes']:,} | +{r['extra_pct']:.1f}% | "
                             f"{fmt(r)} |")
        return "\n".join(self.header("Students: does the dense-label codec cost accuracy?", started) + lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="ipc,loss,arch,codec")
    ap.add_argument("--quick", action="store_true", help="tiny settings, print only")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--results-suffix", default=None, help="appended to each section's key (default: _gpu on cuda)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available on this machine")
    suffix = args.results_suffix if args.results_suffix is not None else ("_gpu" if args.device == "cuda" else "")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    settings = quick_settings() if args.quick else DemoSettings()
    settings = replace(settings, student=replace(settings.student, device=args.device))
    bench = Bench(settings)
    small = ({"ipc": {"ipcs": (1, 2)}, "loss": {"ipcs": (1,)}, "codec": {"ipcs": (1,)}, "archfull": {"ipcs": (1,)},
              "epochs": {"ipcs": (1,), "epochs": (1, 3)}}
             if args.quick else {})
    for name in args.only.split(","):
        text = getattr(bench, f"section_{name}")(**small.get(name, {}))
        print(text, flush=True)
        if not args.quick:
            update_results(f"students_{name}{suffix}", text)


if __name__ == "__main__":
    main()
