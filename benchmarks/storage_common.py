"""Shared by the storage benchmarks (storage_table1.py, storage_s1.py, storage_codecs.py,
storage_compressors.py; storage.py runs them all): the MTT images and their variants, the C = 10
labelers and labels, the digits-1000 proxy labeler, the `ladd size` check, number formats, the C = 10
labeler of ``size_mtt.py``, and the assembly of the ``storage`` section (its page:
``benchmarks/RESULTS/storage.md``) from the parts' saved JSON. Benchmarks import this module and
``_common.py``, never each other (storage.py alone imports its four parts).

The method and data of every part are described in the docstring of ``benchmarks/storage.py``.
The C = 10 labels and the digits-1000 logits are cached under ``benchmarks/_work/storage`` (keyed by
their settings) so that each part runs alone without the others retraining the same labelers; delete
that folder (``make clean``) or pass ``--fresh`` to retrain.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from click.testing import CliRunner  # noqa: E402

from _common import Output, add_output_args  # noqa: E402,F401
from ladd_cli.main import main as ladd  # noqa: E402
from ladd_format import DenseSpec, DLAWriter  # noqa: E402
from ladd_format.geometry import boxes  # noqa: E402
from ladd_format.size import measure_arrays, measure_file  # noqa: E402
from ladd_format.torch import subimages  # noqa: E402
from ladd_format.torch.models import build_model  # noqa: E402

DATA = Path(os.environ.get("LADD_SHARED_DATA", ROOT.parent / "shared" / "data")) / "mtt_distilled_128.npz"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)   # ImageNet statistics, as MTT used
PLOTS = HERE / "plots"
CACHE = HERE / "_work" / "storage"
SUBSETS = ("imagefruit", "imagesquawk")
N0, R0 = 5, 0.625
PAPER_OVERHEAD = 2.5                                    # Table 1: dense labels, N = 5
PAPER_T1 = {1: 100.1, 5: 20.7, 10: 10.0, 20: 5.0}       # Table 1: one more image per class
PAPER_S1 = {3: 7.5, 5: 20.7, 7: 40.2, 9: 66.3}          # Table S1: dense labels vs N
GRID_N = (3, 5, 7, 9)
GRID_R = (0.5, 0.625, 0.75, 0.885)
KL_FLOOR = 1e-8
RESULTS_KEY = "storage"
TITLE = "## Storage of dense labels: Table 1, Table S1, codecs, zip vs zstd"
PARTS = ("storage-table1", "storage-s1", "storage-codecs", "storage-compressors")   # JSON names, in order


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train_labeler(images: np.ndarray, steps: int, seed: int) -> torch.nn.Module:
    """ConvNet-D5 (width 64) on random resized crops of ``images`` (10 images, one per class)."""
    torch.manual_seed(seed)
    model = build_model("convnet-d5", num_classes=10, image_size=128, width=64)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = normalise(torch.from_numpy(images).float() / 255)
    y = torch.arange(10)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        scale = torch.empty(1).uniform_(0.4, 1.0, generator=g).item()
        side = max(16, int(128 * scale))
        top, left = (torch.randint(0, 129 - side, (2,), generator=g)).tolist()
        crop = F.interpolate(x[:, :, top:top + side, left:left + side], size=(128, 128), mode="bilinear",
                             align_corners=False, antialias=True)
        if torch.rand(1, generator=g).item() < 0.5:
            crop = crop.flip(-1)
        loss = F.cross_entropy(model(crop), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def fidelity(p32: np.ndarray, q: np.ndarray) -> dict:
    """Decoded ``q`` against the float32 labels ``p32`` (rows over the last axis)."""
    p = p32.reshape(-1, p32.shape[-1]).astype(np.float64)
    q = q.reshape(p.shape).astype(np.float64)
    qn = q / q.sum(-1, keepdims=True)       # float16 rows decode as cast, summing to 1 only within 4e-3
    # a decoded 0 where p > 0 would make KL infinite: such q is floored at KL_FLOOR (or at p when p is
    # smaller still, so that the floor never creates a negative term)
    q_eff = np.where(qn > 0, qn, np.minimum(p, KL_FLOOR))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(np.where(p > 0, q_eff, 1.0))), 0.0)
    return {"max_abs": float(np.abs(q - p).max()), "kl": float(terms.sum(-1).mean()),
            "tv": float(0.5 * np.abs(q - p).sum(-1).mean()),
            "top1": float((q.argmax(-1) == p.argmax(-1)).mean())}


def label_stats(p: np.ndarray) -> dict:
    rows = p.reshape(-1, p.shape[-1]).astype(np.float64)
    h = -(rows * np.log(np.clip(rows, 1e-300, 1))).sum(-1)
    top = -np.sort(-rows, axis=-1)
    out = {"entropy": float(h.mean()), "top1_mass": float(top[:, 0].mean())}
    for k in (5, 10, 20, 50):
        if k < rows.shape[-1]:
            out[f"mass{k}"] = float(top[:, :k].sum(-1).mean())
    return out


# --------------------------------------------------------------------------- labels and images

# (transpose, horizontal flip, vertical flip, negative) of variant v. A row of pixels is a contiguous byte
# run; variants 0-7 share no row (flips reverse rows, transposes turn columns into rows, the negative
# changes every byte), so no compressor can reuse one variant's bytes for another. Variants 8-9
# (IPC 20 only) are vertical flips of 0-1: the same rows reordered, which a zstd window could reuse but
# deflate's 32 KiB window cannot (they lie 160 images, 7.5 MiB, after them).
VARIANTS = [(0, 0, 0, 0), (0, 1, 0, 0), (1, 0, 0, 0), (1, 1, 0, 0),
            (0, 0, 0, 1), (0, 1, 0, 1), (1, 0, 0, 1), (1, 1, 0, 1),
            (0, 0, 1, 0), (0, 1, 1, 0)]
DISTINCT = 8


def variant(images: np.ndarray, v: int) -> np.ndarray:
    """Variant ``v`` of ``(B, 3, H, W)`` uint8 images (see VARIANTS)."""
    transpose, hflip, vflip, negative = VARIANTS[v]
    x = images
    if transpose:
        x = np.swapaxes(x, 2, 3)
    if hflip:
        x = x[:, :, :, ::-1]
    if vflip:
        x = x[:, :, ::-1, :]
    if negative:
        x = 255 - x
    return np.ascontiguousarray(x)


@torch.inference_mode()
def label_pass(model: torch.nn.Module, images: np.ndarray, n: int, ratio: float,
               max_sub: int = 64) -> np.ndarray:
    """Labeler pass at T = 1: ``(M, 3, 128, 128)`` uint8 -> ``(M, n*n, 10)`` float32 probabilities."""
    bx = boxes(images.shape[2], images.shape[3], n, ratio)
    per = max(1, max_sub // len(bx))
    model = model.to(memory_format=torch.channels_last)
    out = []
    for start in range(0, len(images), per):
        x = normalise(torch.from_numpy(images[start:start + per]).float() / 255)
        subs = subimages(x, bx).flatten(0, 1).contiguous(memory_format=torch.channels_last)
        out.append(torch.softmax(model(subs), -1).view(-1, len(bx), model.classifier.out_features).numpy())
    return np.concatenate(out).astype(np.float32)


def ipc_set(data: dict, dense20: dict, ipc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels, dense labels of the IPC-``ipc`` set (see the module docstring)."""
    imgs, labs, dens = [], [], []
    for j in range(ipc):
        s, v = SUBSETS[j % 2], j // 2
        imgs.append(variant(data[s], v))
        labs.append(np.arange(10))
        dens.append(dense20[(s, v)])
    return np.concatenate(imgs), np.concatenate(labs), np.concatenate(dens)


# --------------------------------------------------------------------------- digits-1000 proxy

class Digits1000:
    """Three real 8x8 scikit-learn digits side by side on a 24x24 canvas; class = the 3-digit number."""

    size = 24

    def __init__(self):
        from sklearn.datasets import load_digits

        d = load_digits()
        order = np.random.default_rng(0).permutation(len(d.target))   # the split of sources.digits
        cut = int(0.8 * len(order))
        self.x = torch.from_numpy((d.images / 16.0).astype(np.float32))
        self.pools = {}
        for name, idx in (("train", order[:cut]), ("test", order[cut:])):
            lists = [idx[d.target[idx] == c] for c in range(10)]
            m = min(len(v) for v in lists)
            self.pools[name] = torch.from_numpy(np.stack([v[:m] for v in lists]))   # (10, m)

    def compose(self, cls: torch.Tensor, g: torch.Generator, split: str) -> torch.Tensor:
        """``(B,)`` classes -> ``(B, 3, 24, 24)`` float images in [0, 1] (grey, 3 channels)."""
        pool = self.pools[split]
        digits = torch.stack([cls // 100, cls // 10 % 10, cls % 10], 1)
        pick = pool[digits, torch.randint(0, pool.shape[1], digits.shape, generator=g)]
        out = torch.zeros(len(cls), self.size, self.size)
        for p in range(3):
            out[:, 8:16, 8 * p:8 * p + 8] = self.x[pick[:, p]]
        return out[:, None].expand(-1, 3, -1, -1).contiguous()

    @staticmethod
    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x - 0.15) / 0.3

    def train(self, steps: int, batch: int = 256, lr: float = 0.01, seed: int = 0) -> tuple[torch.nn.Module, float]:
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model = build_model("convnet-d3", num_classes=1000, image_size=self.size, width=16)
        model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
        for _ in range(steps):
            y = torch.randint(0, 1000, (batch,), generator=g)
            x = self.compose(y, g, "train")
            side = max(8, int(self.size * torch.empty(1).uniform_(0.55, 1.0, generator=g).item()))
            top, left = torch.randint(0, self.size - side + 1, (2,), generator=g).tolist()
            x = F.interpolate(x[:, :, top:top + side, left:left + side], size=(self.size, self.size),
                              mode="bilinear", align_corners=False)
            loss = F.cross_entropy(model(self.norm(x).contiguous(memory_format=torch.channels_last)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        return model.eval(), float(loss.detach())

    @torch.inference_mode()
    def logits(self, model: torch.nn.Module, num: int) -> tuple[np.ndarray, float]:
        """Logits ``(num, 25, 1000)`` of the sub-images of one held-out composite per class (class
        i % 1000 for image i), and the full-image top-1 accuracy of the labeler on them."""
        g = torch.Generator().manual_seed(1)
        cls = torch.arange(num) % 1000
        x = self.norm(self.compose(cls, g, "test"))
        acc = float((model(x).argmax(-1) == cls).float().mean())
        out = []
        for start in range(0, num, 100):
            subs = subimages(x[start:start + 100], boxes(self.size, self.size, N0, R0)).flatten(0, 1)
            out.append(model(subs.contiguous(memory_format=torch.channels_last)).view(-1, N0 * N0, 1000))
        return torch.cat(out).double().numpy(), acc


def softmax_t(logits: np.ndarray, t: float) -> np.ndarray:
    z = logits / t
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _pt(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    torch.save(torch.from_numpy(np.ascontiguousarray(a).copy()), buf)
    return buf.getvalue()


# --------------------------------------------------------------------------- the `ladd size` check

def check_file(path: Path, images, labels, stored, c: int, ipc, levels=(None, 19)) -> list[str]:
    """Every number of ``ladd size --json`` (zip, zstd 3, zstd 19) and of measure_file for ``path``
    against measure_arrays on the arrays written; returns the mismatches."""
    bad = []
    runner = CliRunner()
    for method, level in (("zip", None),) + tuple(("zstd", lv) for lv in levels):
        args = ["size", str(path), "--json", "--method", method] + ([] if level is None else ["--level", str(level)])
        res = runner.invoke(ladd, args)
        cli = json.loads(res.output)
        cli.pop("file")
        want = measure_arrays(images, labels, stored, c, method=method, level=level, ipc=ipc).as_dict()
        got = measure_file(path, method=method, level=level).as_dict()
        for key, value in want.items():
            if cli[key] != value or got[key] != value:
                bad.append(f"{path.name} {method}/{level} {key}: benchmark {value!r}, ladd size {cli[key]!r}, "
                           f"measure_file {got[key]!r}")
    return bad


def write_dla(path: Path, images, labels, probs, codec, c: int, ipc: int | None, labeler: str) -> None:
    with DLAWriter(path, num_classes=c, image_shape=images.shape[1:], mean=MEAN, std=STD,
                   dense=DenseSpec(N0, R0, codec, labeler={"arch": labeler}), ipc=ipc,
                   converter="benchmarks/storage_common.py", inputs=[DATA]) as w:
        w.append(images, labels, dense=probs)


# --------------------------------------------------------------------------- report helpers

def fmt_pct(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}%"


def fmt_kl(x: float) -> str:
    if abs(x) < 1e-6:
        return "< 1e-6"
    return f"{x:.1e}" if x < 1e-3 else f"{x:.4f}"



# --------------------------------------------------------------------------- settings and cached labels

def settings(quick: bool) -> dict:
    """Every size setting of the storage parts (``--quick``: tiny, for a smoke test)."""
    return dict(ipcs=(1, 2) if quick else (1, 5, 10, 20), grid_n=(3, 5) if quick else GRID_N,
                grid_r=(0.625,) if quick else GRID_R, steps=3 if quick else 60,
                d1k_steps=15 if quick else 800, d1k_num=40 if quick else 1000,
                temps=(1.0,) if quick else (1.0, 0.5, 0.25), extra_k=() if quick else (50, 100),
                zlevels=(None,) if quick else (None, 19))


def load_images() -> dict[str, np.ndarray]:
    return {s: np.load(DATA)[s] for s in SUBSETS}


def c10_labels(data: dict, quick: bool, timing: dict, fresh: bool = False):
    """The two C = 10 labelers (one per subset, trained as in size_mtt.py) and their N = 5 labels of
    every variant the IPC sets use: ``(models, dense20)``, ``dense20[(subset, variant)]``."""
    st = settings(quick)
    top_v = (max(st["ipcs"]) + 1) // 2
    path = CACHE / f"c10-steps{st['steps']}-v{top_v}.pt"
    if path.exists() and not fresh:
        saved = torch.load(path, weights_only=False)
        models = {}
        for s in SUBSETS:
            m = build_model("convnet-d5", num_classes=10, image_size=128, width=64)
            m.load_state_dict(saved["models"][s])
            models[s] = m.eval()
        timing["C=10 labelers and labels"] = "cached"
        return models, {tuple(k): v for k, v in saved["dense20"]}
    t = time.perf_counter()
    models = {s: train_labeler(data[s], st["steps"], seed=i) for i, s in enumerate(SUBSETS)}
    timing["train C=10 labelers"] = time.perf_counter() - t
    t = time.perf_counter()
    dense20 = {(s, v): label_pass(models[s], variant(data[s], v), N0, R0) for s in SUBSETS for v in range(top_v)}
    timing["label IPC sets"] = time.perf_counter() - t
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save({"models": {s: m.state_dict() for s, m in models.items()},
                "dense20": [(list(k), v) for k, v in dense20.items()]}, path)
    return models, dense20


def d1k_logits(quick: bool, timing: dict, fresh: bool = False) -> dict:
    """The digits-1000 labeler's logits of one held-out composite per class, with its accuracy:
    ``{"logits", "acc_full", "last_loss"}`` (cached like c10_labels)."""
    st = settings(quick)
    path = CACHE / f"d1k-steps{st['d1k_steps']}-num{st['d1k_num']}.pt"
    if path.exists() and not fresh:
        timing["digits-1000 labeler and logits"] = "cached"
        return torch.load(path, weights_only=False)
    t = time.perf_counter()
    d1k = Digits1000()
    model1k, last_loss = d1k.train(st["d1k_steps"])
    timing["train digits-1000 labeler"] = time.perf_counter() - t
    t = time.perf_counter()
    logits1k, acc1k_full = d1k.logits(model1k, st["d1k_num"])
    timing["label digits-1000"] = time.perf_counter() - t
    out = {"logits": logits1k, "acc_full": acc1k_full, "last_loss": last_loss}
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


def base1k_images(data: dict, m1k: int) -> np.ndarray:
    """The C = 1000 sets' 128 px images: the 20 real ones under variants 0-7, first ``m1k``."""
    return np.concatenate([variant(np.concatenate([data[s] for s in SUBSETS]), v) for v in range(DISTINCT)])[:m1k]


def unpack_s1(d: dict) -> tuple[dict, list[dict]]:
    """Part 2 (storage_s1): ``grid[(n, r)]`` and the accountings with ``pct[n]``, from the JSON data."""
    grid = {(g["n"], g["r"]): g["pct"] for g in d["grid"]}
    s1rows = [{**r, "pct": {int(n): v for n, v in r["pct"]}} for r in d["s1rows"]]
    return grid, s1rows


def unpack_codecs(d: dict) -> tuple[dict, dict]:
    """Part 3 (storage_codecs): ``rows1k[T]`` and ``stats1k[T]`` keyed by the temperature, from the JSON data."""
    return {t: rows for t, rows in d["rows1k"]}, {t: s for t, s in d["stats1k"]}


def result_dict(r) -> dict:
    """A measure_arrays result (SizeReport) as plain data: every field (its ``ipc`` is M / C, a float)."""
    return r.as_dict()


def fmt_timing(timing: dict) -> str:
    return ", ".join(f"{k} {v:.0f} s" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in timing.items())


# --------------------------------------------------------------------------- the parts' command line

def part_main(name: str, doc: str, measure, argv=None) -> int:
    """Command line of one storage part: measure (unless ``--render-only``), save ``name``.json, print
    this part as ``storage.py`` renders it, then, when the run writes, re-render the whole ``storage``
    section from the parts' JSON (``storage.py --render-only``, run as a command: the rendering is
    storage.py's, and a part never imports another script)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings; print only unless --data-dir/--results")
    parser.add_argument("--fresh", action="store_true", help="retrain the labelers instead of using the cache")
    parser.add_argument("--no-plots", action="store_true", help="do not redraw plots/*.png")
    parser.add_argument("--no-section", action="store_true",
                        help="print this part only; do not re-render the storage section (storage.py does it)")
    add_output_args(parser)
    args = parser.parse_args(argv)
    out = Output.from_args(args)
    if out.render_only:
        payload = out.load(name)
    else:
        if not DATA.exists():
            print(f"skipped: {DATA} not found (the real MTT images live in ../shared/data)")
            return 0
        payload = out.save(name, measure(args.quick, args.fresh))
    if out.write and not args.no_plots and can_plot():
        plot = getattr(sys.modules[measure.__module__], "plot", None)
        if plot is not None:
            plot(payload, plots_dir(out))
    with tempfile.TemporaryDirectory() as tmp:
        folder = out.data_dir if out.write else Path(tmp)
        if not out.write:                   # a print-only run: the payload goes where storage.py reads it
            (folder / f"{name}.json").write_text(json.dumps(payload))
        print(run_storage(["--render-only", "--part", name, "--data-dir", str(folder)]), end="")
    if out.write and not args.no_section:
        run_storage(["--render-only", "--data-dir", str(out.data_dir)]
                    + (["--results", str(out.results)] if out.results is not None else []))
    return 0


def run_storage(args: list[str]) -> str:
    """Run ``storage.py`` with ``args``; its standard output (it says on stderr why, should it fail)."""
    command = [sys.executable, str(HERE / "storage.py"), *args]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        log("`python benchmarks/storage.py " + " ".join(args) + "` failed")
    return done.stdout


def can_plot() -> bool:
    """Whether matplotlib (the ``bench`` extra) is installed; says so when it is not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("matplotlib not installed (pip install -e '.[bench]'): plots/*.png not redrawn")
        return False
    return True


def plots_dir(out: Output) -> Path:
    """benchmarks/plots, or ``<data-dir>/plots`` when the data go elsewhere (a trial run)."""
    from _common import RESULTS_DIR

    return PLOTS if out.data_dir.resolve() == RESULTS_DIR.resolve() else out.data_dir / "plots"


def load_parts(out: Output) -> dict | None:
    """Every part's payload from ``out.data_dir``, or None while one is missing."""
    folder = out.data_dir
    if not all((folder / f"{p}.json").exists() for p in PARTS):
        missing = [p for p in PARTS if not (folder / f"{p}.json").exists()]
        print(f"storage section not rendered: no JSON yet for {', '.join(missing)} in {folder}", file=sys.stderr)
        return None
    return {p: out.load(p) for p in PARTS}


def render_storage(out: Output, render_section) -> str | None:
    """Render the ``storage`` section from the parts' JSON with ``render_section`` (storage.py's)
    and write it (when ``out.write``)."""
    parts = load_parts(out)
    if parts is None:
        return None
    section = render_section(parts)
    out.update(RESULTS_KEY, TITLE + "\n\n" + section)
    return section
