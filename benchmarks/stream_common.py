"""Shared by the relabel-stream benchmarks (stream_storage.py, stream_students.py, stream_replay.py):
the stand-in teachers (saved as ``ladd train-labeler`` checkpoints so that ``ladd relabel`` can load
them), SRe2L-style draws, SRe2L's batch-file layout (writer and a faithful reader: ``torch.load`` and
SRe2L's own PIL crop logic), and small number formats. Benchmarks import this module and
``_common.py``, never each other.

SRe2L facts used here (``relabel/utils_fkd.py`` and ``train/train_FKD.py`` of VILA-Lab/SRe2L; the layout in
``docs/upstream-formats.md``): one ``torch.save`` list per batch ``epoch_{e}/batch_{b}.tar`` =
[coords float32 (B, 4) fractions (top/H, left/W, height/H, width/W), flip bool (B,), mix_index int64 (B,),
mix_lam float, mix_bbox four ``numpy.int64`` (row1, col1, row2, col2), logits float16 (B, C)]; the
images of a batch come from ``BatchSampler(RandomSampler(ds, generator=g), B)`` with ``g`` seeded once;
the loader crops the PIL image with ``resized_crop(img, c0*H, c1*W, c2*H, c3*W, size, BILINEAR)`` (float
edges, which Pillow's ``crop`` rounds), flips, converts to a tensor, normalises, and pastes the partner's
box ``images[:, :, r1:r2, c1:c2] = images[index, :, r1:r2, c1:c2]``; the student's loss is
``KLDivLoss(batchmean)(log_softmax(out / T), softmax(logits / T))``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from storage_common import Digits1000  # noqa: E402
from ladd_format.torch.models import build_model  # noqa: E402

WORK = HERE / "_work" / "stream"
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)          # RandomResizedCrop's defaults, SRe2L's
D1K_MEAN, D1K_STD = (0.15, 0.15, 0.15), (0.3, 0.3, 0.3)  # Digits1000.norm
DIGITS_MEAN, DIGITS_STD = (0.1, 0.1, 0.1), (0.25, 0.25, 0.25)
IMAGENET = dict(images=10_000, classes=1000, size=224, epochs=300, batch=1024)   # SRe2L's ImageNet-1K IPC 10 run
TARGET_MB, MOONSHOT = 142, 80          # the storage targets: <= 1/40 of 5.67 GB; moonshot 1/80
#: spec 1.2's default stream codec (no tail): what the benchmarks compare the 1.3 default with
DEFAULT_1_2 = "topk:k=20,values=uint8"


def sre2l_reference() -> dict:
    """SRe2L's measured bytes (``stream_codecs.py``'s ``sre2l`` data: per-file bytes at B = 100, 256,
    1,024, the ImageNet-1K IPC 10 epoch and 300-epoch totals at B = 1,024)."""
    import json

    path = HERE / "results" / "stream_codecs.json"
    if not path.exists():
        raise SystemExit(f"{path} not found: run benchmarks/stream_codecs.py first (SRe2L's measured bytes)")
    return json.loads(path.read_text())["data"]["sre2l"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- teachers

def save_teacher(model: torch.nn.Module, path: Path, *, num_classes: int, image_size: int, width: int,
                 mean, std, training_data: str, epochs: int) -> Path:
    """``model`` (a ConvNet-D3) as a ``ladd train-labeler`` checkpoint (safetensors + metadata)."""
    from ladd_format.labeler.checkpoint import save_checkpoint

    meta = {"arch": "convnet-d3", "arch_kwargs": {"width": width}, "num_classes": num_classes, "channels": 3,
            "image_size": image_size, "mean": list(mean), "std": list(std), "epoch": epochs,
            "class_names": [str(c) for c in range(num_classes)], "class_names_declared": False,
            "training_data": training_data, "tool": "benchmarks/stream_common.py"}
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(model, meta, path)


def load_model(path: Path) -> torch.nn.Module:
    from ladd_format.labeler.checkpoint import load_checkpoint

    lab = load_checkpoint(path)
    return lab.model.eval()


def digits1000_teacher(steps: int) -> tuple[Path, dict]:
    """The digits-1000 labeler of ``storage_common.Digits1000`` (ConvNet-D3 width 16, ``steps`` Adam
    steps), cached as a checkpoint under benchmarks/_work/stream; ``(path, info)``."""
    path = WORK / f"teacher-d1k-{steps}.safetensors"
    info = {"steps": steps, "arch": "convnet-d3", "width": 16, "data": "digits-1000 train composites"}
    if not path.exists():
        t = time.perf_counter()
        with torch.inference_mode(False), torch.enable_grad():     # callers may be in inference mode
            model, last = Digits1000().train(steps)
        info["last_loss"] = last
        save_teacher(model, path, num_classes=1000, image_size=24, width=16, mean=D1K_MEAN, std=D1K_STD,
                     training_data="digits-1000 (sklearn digits, train split)", epochs=steps)
        log(f"trained the digits-1000 teacher in {time.perf_counter() - t:.0f} s")
    return path, info


def digits_teacher(train_x: np.ndarray, train_y: np.ndarray, steps: int, side: int) -> Path:
    """A C = 10 teacher on the digits train split: ConvNet-D3 width 32, Adam, random resized crops
    (scale 0.08-1) and flips, as the crops it will label; cached like :func:`digits1000_teacher`."""
    path = WORK / f"teacher-digits{side}-{steps}.safetensors"
    if path.exists():
        return path
    torch.manual_seed(0)
    g = np.random.default_rng(0)
    model = build_model("convnet-d3", num_classes=10, image_size=side, width=32)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.15)
    x = torch.from_numpy(train_x).float() / 255
    mean = torch.tensor(DIGITS_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(DIGITS_STD).view(1, 3, 1, 1)
    for _ in range(steps):
        pick = g.integers(0, len(x), 128)
        box = crop_params(len(pick), side, side, g)
        crops = torch.cat([F.interpolate(x[i:i + 1, :, t:t + h, l:l + w], size=(side, side), mode="bilinear",
                                         align_corners=False, antialias=True) for i, (t, l, h, w) in zip(pick, box)])
        flip = torch.from_numpy(g.random(len(pick)) < 0.5)
        crops = torch.where(flip.view(-1, 1, 1, 1), crops.flip(-1), crops)
        loss = F.cross_entropy(model((crops - mean) / std), torch.from_numpy(train_y[pick]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    save_teacher(model.eval(), path, num_classes=10, image_size=side, width=32, mean=DIGITS_MEAN, std=DIGITS_STD,
                 training_data="sklearn digits (train split)", epochs=steps)
    return path


def composites(d1k: Digits1000, per_class: int, split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` digits-1000 composites of every class: uint8 ``(1000 * per_class, 3, 24, 24)``, labels."""
    labels = torch.arange(1000 * per_class) % 1000
    x = d1k.compose(labels, torch.Generator().manual_seed(seed), split)
    return (x * 255).round().to(torch.uint8).numpy(), labels.numpy().astype(np.int64)


# --------------------------------------------------------------------------- SRe2L-style draws

def crop_params(n: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` boxes (top, left, h, w) in integer pixels, drawn as torchvision's
    ``RandomResizedCrop.get_params`` draws them (ten tries, then the centre crop clamped to the ratio)."""
    out = np.zeros((n, 4), np.int64)
    todo = np.arange(n)
    area = height * width
    lo, hi = math.log(RATIO[0]), math.log(RATIO[1])
    for _ in range(10):
        if not len(todo):
            break
        target = area * rng.uniform(*SCALE, len(todo))
        aspect = np.exp(rng.uniform(lo, hi, len(todo)))
        w = np.rint(np.sqrt(target * aspect)).astype(np.int64)
        h = np.rint(np.sqrt(target / aspect)).astype(np.int64)
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        sel = todo[ok]
        top = (rng.random(ok.sum()) * (height - h[ok] + 1)).astype(np.int64)
        left = (rng.random(ok.sum()) * (width - w[ok] + 1)).astype(np.int64)
        out[sel] = np.stack([top, left, h[ok], w[ok]], 1)
        todo = todo[~ok]
    if len(todo):
        ratio = width / height
        if ratio < RATIO[0]:
            w, h = width, int(round(width / RATIO[0]))
        elif ratio > RATIO[1]:
            h, w = height, int(round(height * RATIO[1]))
        else:
            w, h = width, height
        out[todo] = [(height - h) // 2, (width - w) // 2, h, w]
    return out


def rand_bbox(size: int, rng: np.random.Generator) -> tuple[list[int], float]:
    """SRe2L's ``rand_bbox`` on a square crop of ``size`` with lambda ~ Beta(1, 1): ``[r1, c1, r2, c2]``
    (half-open, rows first), lambda."""
    lam = float(rng.beta(1.0, 1.0))
    cut = int(size * np.sqrt(1.0 - lam))
    cx, cy = int(rng.integers(size)), int(rng.integers(size))
    return [int(np.clip(cx - cut // 2, 0, size)), int(np.clip(cy - cut // 2, 0, size)),
            int(np.clip(cx + cut // 2, 0, size)), int(np.clip(cy + cut // 2, 0, size))], lam


@dataclass
class Batch:
    """The draws of one batch: image index, box (top, left, h, w), flip, CutMix partner (slot in the
    batch), SRe2L's box (r1, c1, r2, c2) and lambda."""

    image: np.ndarray
    box: np.ndarray
    flip: np.ndarray
    partner: np.ndarray
    rc: list[int]
    lam: float

    @property
    def mix_box(self) -> np.ndarray:
        """The box as the stream stores it: (top, left, height, width) in crop pixels."""
        r1, c1, r2, c2 = self.rc
        return np.array([r1, c1, r2 - r1, c2 - c1], np.int64)


def draw_epoch(order: np.ndarray, side: int, crop: int, batch: int, rng: np.random.Generator) -> list[Batch]:
    """The batches of one epoch over ``order`` (image indices in generation order) of ``side`` px images."""
    box = crop_params(len(order), side, side, rng)
    flip = rng.random(len(order)) < 0.5
    out = []
    for start in range(0, len(order), batch):
        stop = min(len(order), start + batch)
        partner = rng.permutation(stop - start)
        rc, lam = rand_bbox(crop, rng)
        out.append(Batch(order[start:stop], box[start:stop], flip[start:stop], partner, rc, lam))
    return out


def sampler_orders(num_images: int, epochs: int, seed: int):
    """Each epoch's image order as SRe2L's loader draws it: ``BatchSampler(RandomSampler(range(M),
    generator=g), ...)`` iterated once per epoch from one generator seeded once with ``seed`` (two
    ``randperm`` draws per pass: ``ladd_format.relabel.replay``)."""
    g = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.RandomSampler(range(num_images), generator=g)
    for _ in range(epochs):
        # iterated to its end, as the loader does: the pass draws a second (empty) randperm at the end
        yield np.array(list(sampler), np.int64)


# --------------------------------------------------------------------------- crops

def pil_images(images: np.ndarray) -> list:
    """uint8 ``(M, 3, H, W)`` -> PIL RGB images (what ImageFolder's loader gives SRe2L)."""
    from PIL import Image

    return [Image.fromarray(np.ascontiguousarray(x.transpose(1, 2, 0))) for x in images]


def sre2l_crops(pils: list, coords: torch.Tensor, flip: torch.Tensor, index: list[int], crop: int) -> torch.Tensor:
    """SRe2L's ``RandomResizedCropWithCoords`` (stored coords) + ``RandomHorizontalFlipWithRes`` +
    ``ToTensor`` for the slots of one batch: float32 ``(n, 3, crop, crop)`` on the 0..1 scale."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as t_F

    out = []
    for k, i in enumerate(index):
        img = pils[i]
        c = coords[k]
        top, left = c[0].item() * img.size[1], c[1].item() * img.size[0]
        h, w = c[2].item() * img.size[1], c[3].item() * img.size[0]
        x = t_F.resized_crop(img, top, left, h, w, [crop, crop], InterpolationMode.BILINEAR)
        if bool(flip[k]):
            x = t_F.hflip(x)
        out.append(t_F.to_tensor(x))
    return torch.stack(out)


def sre2l_cutmix(images: torch.Tensor, index: torch.Tensor, bbox) -> torch.Tensor:
    """SRe2L's ``cutmix`` in ``fkd_load`` mode: the partner's box pasted in place (rows first)."""
    r1, c1, r2, c2 = (int(v) for v in bbox)
    images[:, :, r1:r2, c1:c2] = images[index, :, r1:r2, c1:c2]
    return images


# --------------------------------------------------------------------------- SRe2L's batch files

def write_sre2l_batch(path: Path, b: Batch, side: int, logits: torch.Tensor) -> int:
    """``epoch_{e}/batch_{i}.tar`` as SRe2L's ``generate_soft_label.py`` writes it (``--use-fp16``,
    ``--mix-type cutmix``); returns the file's bytes."""
    coords = torch.from_numpy((b.box / side).astype(np.float32))
    mix_bbox = [np.int64(v) for v in b.rc]
    saved = [coords, torch.from_numpy(b.flip.copy()), torch.from_numpy(b.partner.astype(np.int64)), b.lam, mix_bbox,
             logits.half()]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(saved, path)
    return path.stat().st_size


def load_sre2l_batch(path: Path) -> list:
    """SRe2L's ``torch.load(batch_config_path)``. Its torch (< 2.6) loaded with ``weights_only=False``;
    today's default refuses the numpy ints of the box, so the old default is passed explicitly."""
    return torch.load(path, weights_only=False)


@dataclass
class SRe2LLoader:
    """SRe2L's training loader over an ``epoch_{e}/batch_{b}.tar`` folder, faithfully: the seeded
    sampler replay for the image of each slot, ``torch.load`` of each batch file, its PIL crop, flip and
    ToTensor per slot, normalisation, and CutMix with the stored index and box. Yields
    ``(images (n, 3, crop, crop) normalised, image indices (n,), logits float32 (n, C))``."""

    root: Path
    pils: list
    crop: int
    batch: int
    mean: tuple
    std: tuple
    seed: int = 42
    _orders: list = field(default_factory=list)

    def __post_init__(self):
        self._gen = sampler_orders(len(self.pils), 10**6, self.seed)

    def epoch(self, e: int):
        """Epoch ``e``'s batches: dicts of ``x`` (normalised, mixed inputs), ``index`` (image of each slot),
        ``logits`` (float32), ``mix_index`` and ``bbox`` (SRe2L's stored partner slots and box)."""
        while len(self._orders) <= e:
            self._orders.append(next(self._gen))
        order = self._orders[e]
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        for b, start in enumerate(range(0, len(order), self.batch)):
            index = order[start:start + self.batch]
            path = self.root / f"epoch_{e}" / f"batch_{b}.tar"
            coords, flip, mix_index, _lam, mix_bbox, logits = load_sre2l_batch(path)
            x = (sre2l_crops(self.pils, coords, flip, index.tolist(), self.crop) - mean) / std
            x = sre2l_cutmix(x, mix_index, mix_bbox)
            yield {"x": x, "index": torch.from_numpy(index), "logits": logits.float(), "mix_index": mix_index,
                   "bbox": mix_bbox}


# --------------------------------------------------------------------------- labels

def softmax_np(z: np.ndarray, t: float) -> np.ndarray:
    z = np.asarray(z, np.float64) / t
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def kl_top1(logits16: np.ndarray, q: np.ndarray, t: float, floor: float = 1e-8) -> tuple[float, float, int]:
    """Sum over rows of KL(softmax(logits16 / t) || q) (nats; q floored at ``floor`` as the storage
    benchmark's ``fidelity`` does), the count of rows whose argmax agrees, and the row count."""
    p = softmax_np(logits16, t)
    q = np.asarray(q, np.float64)
    q = q / q.sum(-1, keepdims=True)
    q_eff = np.where(q > 0, q, np.minimum(p, floor))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(np.where(p > 0, q_eff, 1.0))), 0.0)
    return float(terms.sum()), int((q.argmax(-1) == p.argmax(-1)).sum()), len(p)


# --------------------------------------------------------------------------- bytes

def zip_npy_bytes(arrays: dict[str, np.ndarray]) -> int:
    """Spec 7's measure of ``arrays`` alone: a zip (deflate, level 6) of one ``.npy`` member each."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, a in arrays.items():
            member = io.BytesIO()
            np.save(member, np.ascontiguousarray(a), allow_pickle=False)
            zf.writestr(f"stream_{name.replace('/', '_')}.npy", member.getvalue())
    return len(buf.getvalue())


# --------------------------------------------------------------------------- formats

def fmt_b(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_kl(x: float) -> str:
    return "0" if x == 0 else ("< 1e-6" if x < 1e-6 else (f"{x:.1e}" if x < 1e-3 else f"{x:.4f}"))


def fmt_timing(timing: dict) -> str:
    return ", ".join(f"{k} {v:.0f} s" for k, v in timing.items())


def mean_std(values) -> str:
    v = 100 * np.asarray(values, np.float64)
    return f"{v.mean():.2f} ± {v.std():.2f}"
