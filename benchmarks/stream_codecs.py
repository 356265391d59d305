"""Relabel-stream codecs: what each stored soft label costs per (image, epoch), and how close it stays.

Usage::

    .venv/bin/python benchmarks/stream_codecs.py                # 8-12 min on 2 CPU cores; saves
                                                                # results/stream_codecs.json and writes
                                                                # benchmarks/RESULTS/stream-codecs.md
    .venv/bin/python benchmarks/stream_codecs.py --render-only  # re-render from the saved JSON
    .venv/bin/python benchmarks/stream_codecs.py --quick        # tiny settings, prints only

The evidence that chooses the default codec of the relabel stream (spec 1.2; its tail, spec 1.3). A relabel stream
stores, for every epoch and slot, the image index, an integer crop box, a flip, the mix and the teacher's
soft label of the (mixed) crop. SRe2L stores the label as the teacher's float16 logits (2 bytes x C) in a
``torch.save`` pickle per batch; that is what every candidate is compared with.

Teacher outputs, not random numbers. No 1000-class data set or model exists offline here, so the teacher
is the digits-1000 labeler of ``storage_common.Digits1000`` (ConvNet-D3 width 16, 800 Adam steps, as
``students_c1000.py`` trains it) and D is the same 1,000 random train composites (one per class, 24 px)
that ``students_c1000.py`` uses. For each of ``epochs`` epochs, each image of D is drawn once in a random
order, cropped SRe2L-style (RandomResizedCrop's parameters: scale (0.08, 1), ratio (3/4, 4/3), torchvision's
ten tries then the centre crop, integer pixels; bilinear resize back to 24 px; horizontal flip with
probability 1/2), CutMix is applied inside each batch exactly as SRe2L's ``cutmix`` does (one partner
permutation and one box per batch, lambda ~ Beta(1, 1)), and the teacher's logits of the mixed crops are
cast to float16, as SRe2L's ``--use-fp16`` stores them. Those float16 logits are the reference: the
reference label at temperature T is softmax(logits / T) in float64.

Candidates (each encoded by the project's codecs from ``ladd_format.codecs`` where one exists):
float16 logits (SRe2L's values), float16 and uint8 probabilities, top-k probabilities with float16 or
uint8 values (k = 5, 10, 20, 50, 100; the rest of the mass spread evenly on decoding), and top-k of the
logits with float16 values (decoded as the softmax over the k kept logits: the tail's mass is dropped);
and spec 1.3's top-k with a low-rank tail (k = 5, 10, 20; uint8 or float16 values; rank r = 16, 24, 32),
encoded and decoded by the package's ``StreamCodec`` as a written stream is: the basis fitted as the writer
fits it (``fit_tail_basis`` of the teacher's float32 logits of the first ``TAIL_FIT_RECORDS`` (4,096) slots
in stream order), each slot's logits encoded at the stream temperature (``encode_logits``: top-k
probabilities, int8 coefficients and a float16 scale), decoded with the tail (``decode(..., tail=)``). A
tail's fixed mean and basis ((r + 1) x C float32, once per file) are measured apart from the bytes per slot
and added once to the ImageNet totals.

Bytes: the stored arrays of all slots measured as the project's ``size`` measures them
(``ladd_format.size.measure_arrays``: each array a ``.npy`` member of a zip archive, deflate, or a zstd
frame, level 3 and 19), divided by the number of slots; rows in generation order (epoch-major), and
also image-major (all epochs of an image adjacent) at zstd 19. The spread is the range of the zstd-3
bytes per slot over four equal groups of epochs, each compressed alone. Side information per slot
(image index int32, box 4 x int16 source pixels, flip bit; the mix: partner slot int16 and one 4 x int16
box per batch) is measured twice: on the stand-in's stream (24 px sources) and on a stream of ImageNet-1K
IPC 10 shape (10,000 images of 224 x 224, SRe2L's synthetic images, batches of 1,024 as SRe2L's
``relabel.sh``), drawn with the same crop and CutMix parameters.

SRe2L's own bytes: batch files written with ``torch.save`` in its exact six-element layout (float32
coords, bool flips, int64 mix index, a Python float lambda, a list of four numpy int64, float16 logits),
for B = 100, 256 (its argparse default) and 1,024 (its ``relabel.sh``), and the total of one epoch of
ImageNet-1K IPC 10 at B = 1,024 (nine batches of 1,024 and one of 784) times 300 epochs.

Fidelity: mean KL(reference || decoded) in nats, total variation and top-1 agreement, at T = 1 (the
labeler's own softmax) and T = 0.25 (sharper, as ImageNet teachers are); and each label stored at T = 1
taken to T = 20 (SRe2L's students train with ``-T 20``: q^(1/20) renormalised, logits divided by 20)
against softmax(logits / 20).
"""

from __future__ import annotations

import argparse
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

from _common import Output, add_output_args  # noqa: E402
from storage_common import Digits1000, fidelity, label_stats  # noqa: E402
from stream_common import DEFAULT_1_2, RATIO, SCALE, crop_params  # noqa: E402
from ladd_format.codecs import parse_codec  # noqa: E402
from ladd_format.size import measure_arrays  # noqa: E402

NAME = KEY = "stream_codecs"
TITLE = "## Relabel streams: bytes and fidelity of each soft-label codec per (image, epoch) (digits-1000)"
C = 1000
IMAGENET = dict(images=10_000, size=224, epochs=300, batch=1024)   # SRe2L's ImageNet-1K IPC 10 run
SRE2L_GB = 5.67                      # the figure quoted for SRe2L's layout at ImageNet-1K IPC 10, 300 epochs (LPLD)
TARGET_MB = 142                      # the stream's storage target: <= 1/40 of 5.67 GB
BLOCK = 2000                         # rows per block of the fidelity and decoding passes


def settings(quick: bool) -> dict:
    if quick:
        return dict(images=100, epochs=2, labeler_steps=15, batch=50, temps=[1.0, 0.25], ks=[10],
                    side_epochs=1, groups=2, seed=0, retemper=20.0,
                    tail_ks=[5], tail_values=["uint8"], tail_ranks=[4])
    return dict(images=1000, epochs=20, labeler_steps=800, batch=100, temps=[1.0, 0.25],
                ks=[5, 10, 20, 50, 100], side_epochs=20, groups=4, seed=0, retemper=20.0,
                tail_ks=[5, 10, 20], tail_values=["uint8", "float16"], tail_ranks=[16, 24, 32])


# --------------------------------------------------------------------------- SRe2L-style draws

def cutmix_box(size: int, rng: np.random.Generator) -> tuple[list[int], float]:
    """SRe2L's ``rand_bbox`` on a square crop of ``size``: ``[r1, c1, r2, c2]`` (half-open) and lambda."""
    lam = float(rng.beta(1.0, 1.0))
    cut = int(size * np.sqrt(1.0 - lam))
    cx, cy = int(rng.integers(size)), int(rng.integers(size))
    return [int(np.clip(cx - cut // 2, 0, size)), int(np.clip(cy - cut // 2, 0, size)),
            int(np.clip(cx + cut // 2, 0, size)), int(np.clip(cy + cut // 2, 0, size))], lam


def draw_stream(m: int, size: int, epochs: int, batch: int, seed: int) -> dict:
    """The per-slot draws of a stream: image index, box, flip, CutMix partner slot, one box per batch."""
    rng = np.random.default_rng(seed)
    index, box, flip, partner, mixbox, lams = [], [], [], [], [], []
    for _ in range(epochs):
        order = rng.permutation(m)
        index.append(order)
        box.append(crop_params(m, size, size, rng))
        flip.append(rng.random(m) < 0.5)
        for start in range(0, m, batch):
            b = min(batch, m - start)
            partner.append(rng.permutation(b))
            bb, lam = cutmix_box(size, rng)
            mixbox.append(bb)
            lams.append(lam)
    return {"index": np.concatenate(index), "box": np.concatenate(box), "flip": np.concatenate(flip),
            "partner": np.concatenate(partner), "mixbox": np.asarray(mixbox, np.int64), "lam": lams}


@torch.inference_mode()
def teacher_logits(model, images: np.ndarray, s: dict, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's float32 logits of the stream's mixed crops, in generation order, and their float16 cast."""
    x = torch.from_numpy(images).float() / 255
    size = images.shape[-1]
    out = []
    n = len(s["index"])
    for b, start in enumerate(range(0, n, batch)):
        stop = min(n, start + batch)
        crops = []
        for r in range(start, stop):
            t, l, h, w = s["box"][r].tolist()
            c = F.interpolate(x[s["index"][r]][None, :, t:t + h, l:l + w], size=(size, size), mode="bilinear",
                              align_corners=False, antialias=True)
            crops.append(c.flip(-1) if s["flip"][r] else c)
        crops = torch.cat(crops)
        r1, c1, r2, c2 = s["mixbox"][b].tolist()
        perm = torch.from_numpy(s["partner"][start:stop])
        crops[:, :, r1:r2, c1:c2] = crops[perm, :, r1:r2, c1:c2]
        out.append(model(Digits1000.norm(crops).contiguous(memory_format=torch.channels_last)).float())
    logits = torch.cat(out).numpy()
    return logits, logits.astype(np.float16)


def composites(d1k: Digits1000, m: int, seed: int = 5) -> np.ndarray:
    """One random train composite per class (students_c1000's D), the first ``m``: uint8 ``(m, 3, 24, 24)``."""
    labels = torch.arange(1000) % 1000
    x = d1k.compose(labels, torch.Generator().manual_seed(seed), "train")
    return (x * 255).round().to(torch.uint8).numpy()[:m]


# --------------------------------------------------------------------------- SRe2L's file bytes

def sre2l_file_bytes(b: int, size: int, rng: np.random.Generator) -> int:
    """Bytes of one ``epoch_e/batch_b.tar`` written as SRe2L's ``save`` writes it (B slots, C = 1000)."""
    box = crop_params(b, size, size, rng)
    coords = torch.from_numpy((box / size).astype(np.float32))
    flip = torch.from_numpy(rng.random(b) < 0.5)
    mix_index = torch.randperm(b)
    bb, lam = cutmix_box(size, rng)
    mix_bbox = [np.int64(v) for v in bb]
    logits = torch.from_numpy(rng.standard_normal((b, C)).astype(np.float16))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batch_0.tar"
        torch.save([coords, flip, mix_index, lam, mix_bbox, logits], path)
        return path.stat().st_size


# --------------------------------------------------------------------------- bytes

METHODS = (("raw", None, None), ("zip", "zip", None), ("zstd3", "zstd", 3), ("zstd19", "zstd", 19))


def member_bytes(arrays: dict, base: tuple, method: str | None, level: int | None) -> int:
    """What ``arrays`` add to a set as the project's ``size`` measures it (``method`` None: raw bytes)."""
    if method is None:
        return int(sum(np.asarray(a).nbytes for a in arrays.values()))
    return measure_arrays(base[0], base[1], arrays, C, method=method, level=level).dense_bytes


def bytes_per_slot(arrays: dict, slots: int, base: tuple, image_major=None, groups=None) -> dict:
    """Raw, zip, zstd 3 and zstd 19 bytes per slot; zstd 19 of the rows in image-major order; the range of
    zstd 3 over ``groups`` (a list of row-index arrays, each compressed alone)."""
    out = {name: member_bytes(arrays, base, m, lv) / slots for name, m, lv in METHODS}
    if image_major is not None:
        reordered = {k: v[image_major] for k, v in arrays.items()}
        out["zstd19_image_major"] = member_bytes(reordered, base, "zstd", 19) / slots
    if groups:
        per = [member_bytes({k: v[g] for k, v in arrays.items()}, base, "zstd", 3) / len(g) for g in groups]
        out["zstd3_groups"] = per
    return out


def side_arrays(s: dict) -> tuple[dict, dict]:
    """The crop's side information (index, box, flip bits) and the mix's (partner slot, box per batch)."""
    crop = {"image_index": s["index"].astype("<i4"), "box": s["box"].astype("<i2"),
            "flip": np.packbits(s["flip"].astype(np.uint8))}
    mix = {"mix_partner": s["partner"].astype("<i2"), "mix_box": s["mixbox"].astype("<i2")}
    return crop, mix


# --------------------------------------------------------------------------- codecs

def softmax(logits16: np.ndarray, t: float) -> np.ndarray:
    z = logits16.astype(np.float64) / t
    z -= z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def topk_logits(logits16: np.ndarray, k: int) -> dict:
    index = np.argsort(-logits16.astype(np.float64), axis=-1, kind="stable")[:, :k]
    return {"topk_index": index.astype("<u2"), "topk_logit": np.take_along_axis(logits16, index, -1)}


def decode_topk_logits(stored: dict, t: float) -> np.ndarray:
    out = np.zeros((len(stored["topk_index"]), C))
    np.put_along_axis(out, stored["topk_index"].astype(np.int64), softmax(stored["topk_logit"], t), -1)
    return out


def candidates(ks) -> list[tuple[str, str]]:
    """(row name, kind): kind ``logits``, ``topk-logits:k`` or a codec spec of ``ladd_format.codecs``."""
    rows = [("float16 logits (SRe2L's values)", "logits"), ("float16 probabilities", "float16"),
            ("uint8 probabilities", "uint8")]
    for k in ks:
        rows += [(f"top-{k} probabilities, float16 values", f"topk:k={k},values=float16"),
                 (f"top-{k} probabilities, uint8 values", f"topk:k={k},values=uint8")]
    rows += [(f"top-{k} logits, float16 values (tail dropped)", f"topk-logits:{k}") for k in ks]
    return rows


def tail_candidates(st: dict) -> list[tuple[str, str]]:
    """(row name, stream codec text) of the spec-1.3 candidates: top-k probabilities with a low-rank tail
    of rank r (``tail_ks`` x ``tail_values`` x ``tail_ranks``)."""
    return [(f"top-{k} probabilities, {v} values + tail r = {r}", f"topk:k={k},values={v},tail={r}")
            for k in st.get("tail_ks", []) for v in st.get("tail_values", []) for r in st.get("tail_ranks", [])]


def stacked(encode, slots: int) -> dict:
    """``encode(block)`` of every block of rows, concatenated per stored array."""
    arrays: dict[str, list] = {}
    for sl in blocks(slots):
        for key, v in encode(sl).items():
            arrays.setdefault(key, []).append(v)
    return {key: np.concatenate(v) for key, v in arrays.items()}


def member_names(arrays: dict) -> dict:
    """The stream's relative paths (``tail/coef``) as flat member names (``tail_coef``) for the size measure."""
    return {key.replace("/", "_"): v for key, v in arrays.items()}


def tail_rows(st: dict, logits32: np.ndarray, logits16: np.ndarray, base: tuple, image_major, groups) -> list[dict]:
    """The rows of :func:`tail_candidates`, each encoded by the package's stream codec (spec 1.3): the basis
    fitted as the writer fits it (``fit_tail_basis`` of the float32 logits of the first
    ``TAIL_FIT_RECORDS`` records in stream order), the labels by ``StreamCodec.encode_logits`` at the stream
    temperature T, decoded by ``StreamCodec.decode`` with the tail. Bytes per slot: the per-record arrays
    (top-k index and values, ``tail/coef``, ``tail/scale``); the fixed ``tail/mean`` and ``tail/basis``
    (float32, (r + 1) x C) are measured once per rank as ``fixed_bytes``."""
    from ladd_format.stream import parse_stream_codec
    from ladd_format.stream.tail import TAIL_FIT_RECORDS, fit_tail_basis

    slots = len(logits16)
    fit_rows = min(slots, TAIL_FIT_RECORDS)
    bases, fixed = {}, {}
    for r in st.get("tail_ranks", []):
        bases[r] = fit_tail_basis(logits32[:fit_rows], r)
        fixed_arrays = {"tail_mean": bases[r].mean, "tail_basis": bases[r].basis}
        fixed[r] = {name: member_bytes(fixed_arrays, base, m, lv) for name, m, lv in METHODS}
    rows = []
    t0 = time.perf_counter()
    for name, text in tail_candidates(st):
        codec = parse_stream_codec(text)
        tail = bases[codec.tail_rank]
        for t in st["temps"]:
            arrays = stacked(lambda sl, t=t: codec.encode_logits(logits32[sl], t, tail=tail), slots)
            decode = lambda sl, a=arrays, t=t: codec.decode({n: v[sl] for n, v in a.items()}, C,  # noqa: E731
                                                            stored_temperature=t, tail=tail)
            size_row = bytes_per_slot(member_names(arrays), slots, base, image_major, groups)
            fid = fidelity_blocks(logits16, t, decode)
            row = {"name": name, "kind": codec.label, "temperature": t, "bytes": size_row, **fid,
                   "tail_rank": codec.tail_rank, "fixed_bytes": fixed[codec.tail_rank], "fit_records": fit_rows}
            if t == 1.0:
                tr = st["retemper"]
                again = lambda sl, a=arrays, tr=tr: codec.decode({n: v[sl] for n, v in a.items()}, C,  # noqa: E731
                                                                 temperature=tr, stored_temperature=1.0, tail=tail)
                row["retempered"] = fidelity_blocks(logits16, tr, again)
            rows.append(row)
            print(f"  {name} T={t:g}: {size_row['raw']:.0f} B raw, {size_row['zstd19']:.1f} B zstd19, "
                  f"KL {fid['kl']:.4g}, top-1 {100 * fid['top1']:.2f}% ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    return rows


def retemper(q: np.ndarray, t: float) -> np.ndarray:
    """A T = 1 label ``q`` at temperature ``t``: q^(1/t) renormalised (a decoded 0 stays 0)."""
    r = np.power(np.asarray(q, np.float64), 1.0 / t)
    return r / r.sum(-1, keepdims=True)


def blocks(n: int):
    for start in range(0, n, BLOCK):
        yield slice(start, min(n, start + BLOCK))


def fidelity_blocks(logits16: np.ndarray, t: float, decode) -> dict:
    """storage_common.fidelity of ``decode(rows)`` against softmax(logits16 / t), block by block."""
    n = len(logits16)
    acc = {"kl": 0.0, "tv": 0.0, "top1": 0.0, "max_abs": 0.0, "zeroed_mass": 0.0, "zeroed_rows": 0.0}
    for sl in blocks(n):
        p = softmax(logits16[sl], t)
        q = decode(sl)
        f = fidelity(p, q)
        w = (sl.stop - sl.start) / n
        for key in ("kl", "tv", "top1"):
            acc[key] += w * f[key]
        acc["max_abs"] = max(acc["max_abs"], f["max_abs"])
        zeroed = np.where(q <= 0, p, 0.0).sum(-1)   # the reference's mass on classes decoded as 0
        acc["zeroed_mass"] += w * float(zeroed.mean())
        acc["zeroed_rows"] += w * float((zeroed > 0).mean())
    return acc


def measure(quick: bool) -> dict:
    st = settings(quick)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    d1k = Digits1000()
    model, last_loss = d1k.train(st["labeler_steps"])
    timing["train the labeler"] = time.perf_counter() - t0
    images = composites(d1k, st["images"])
    m, size = len(images), images.shape[-1]
    base = (images, np.arange(m) % C)
    t0 = time.perf_counter()
    stream = draw_stream(m, size, st["epochs"], st["batch"], st["seed"])
    logits32, logits16 = teacher_logits(model, images, stream, st["batch"])
    timing["label the stream"] = time.perf_counter() - t0
    slots = len(logits16)
    epoch_of = np.repeat(np.arange(st["epochs"]), m)
    image_major = np.lexsort((epoch_of, stream["index"]))
    per = st["epochs"] // st["groups"]
    groups = [np.arange(g * per * m, (g + 1) * per * m) for g in range(st["groups"])]
    crop_acc = float((logits16.astype(np.float32).argmax(-1) == (stream["index"] % C)).mean())

    t0 = time.perf_counter()
    f32_ref = {}
    for t in st["temps"]:
        kl = 0.0
        for sl in blocks(slots):
            f = fidelity(softmax(logits32[sl], t), softmax(logits16[sl], t))
            kl += f["kl"] * (sl.stop - sl.start) / slots
        f32_ref[str(t)] = kl
    stats = {}
    for t in [*st["temps"], st["retemper"]]:
        parts = [label_stats(softmax(logits16[sl], t)) for sl in blocks(slots)]
        w = [(sl.stop - sl.start) / slots for sl in blocks(slots)]
        stats[str(t)] = {key: float(sum(wi * p[key] for wi, p in zip(w, parts))) for key in parts[0]}
        lost = {}
        for k in st["ks"]:
            mass = 0.0
            for sl, wi in zip(blocks(slots), w):
                p = softmax(logits16[sl], t)
                mass += wi * float(np.sort(p, -1)[:, -k:].sum(-1).mean())
            lost[str(k)] = 1.0 - mass
        stats[str(t)]["tail_mass"] = lost
    timing["label statistics"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rows = []
    logit_bytes = None
    for name, kind in candidates(st["ks"]):
        for t in st["temps"]:
            if kind == "logits":
                arrays = {"logits": logits16}
                decode = lambda sl, t=t: softmax(logits16[sl], t)  # noqa: E731
            elif kind.startswith("topk-logits:"):
                k = int(kind.split(":")[1])
                arrays = topk_logits(logits16, k)
                decode = lambda sl, a=arrays, t=t: decode_topk_logits({n: v[sl] for n, v in a.items()}, t)  # noqa: E731
            else:
                codec = parse_codec(kind)
                arrays = {}
                for sl in blocks(slots):
                    for key, v in codec.encode(softmax(logits16[sl], t)).items():
                        arrays.setdefault(key, []).append(v)
                arrays = {key: np.concatenate(v) for key, v in arrays.items()}
                decode = lambda sl, a=arrays, c=codec: c.decode({n: v[sl] for n, v in a.items()}, C)  # noqa: E731
            # logits (all k of them) do not depend on T: their bytes are measured once
            if kind == "logits" or kind.startswith("topk-logits:"):
                if t == st["temps"][0]:
                    logit_bytes = bytes_per_slot(arrays, slots, base, image_major, groups)
                size_row = logit_bytes
            else:
                size_row = bytes_per_slot(arrays, slots, base, image_major, groups)
            fid = fidelity_blocks(logits16, t, decode)
            row = {"name": name, "kind": kind, "temperature": t, "bytes": size_row, **fid}
            if t == 1.0:
                # the label stored at T = 1, the student's target at T = retemper: softmax(z / T') is
                # p^(1/T') renormalised; logits are divided by T' directly
                tr = st["retemper"]
                if kind == "logits":
                    again = lambda sl, tr=tr: softmax(logits16[sl], tr)  # noqa: E731
                elif kind.startswith("topk-logits:"):
                    again = lambda sl, a=arrays, tr=tr: decode_topk_logits({n: v[sl] for n, v in a.items()}, tr)  # noqa: E731
                else:
                    again = lambda sl, d=decode, tr=tr: retemper(d(sl), tr)  # noqa: E731
                row["retempered"] = fidelity_blocks(logits16, tr, again)
            rows.append(row)
            print(f"  {name} T={t:g}: {size_row['raw']:.0f} B raw, {size_row['zstd19']:.1f} B zstd19, "
                  f"KL {fid['kl']:.4g}, top-1 {100 * fid['top1']:.2f}% ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    timing["codecs"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows += tail_rows(st, logits32, logits16, base, image_major, groups)
    timing["tail codecs"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    crop, mix = side_arrays(stream)
    side = {"stand-in": {"crop": bytes_per_slot(crop, slots, base), "mix": bytes_per_slot(mix, slots, base)}}
    inet = draw_stream(IMAGENET["images"], IMAGENET["size"], st["side_epochs"], IMAGENET["batch"], st["seed"] + 1)
    crop, mix = side_arrays(inet)
    n_inet = len(inet["index"])
    side["imagenet"] = {"crop": bytes_per_slot(crop, n_inet, base), "mix": bytes_per_slot(mix, n_inet, base)}
    timing["side information"] = time.perf_counter() - t0

    rng = np.random.default_rng(7)
    files = {str(b): sre2l_file_bytes(b, IMAGENET["size"], rng) for b in (100, 256, 1024)}
    full, rest = divmod(IMAGENET["images"], IMAGENET["batch"])
    last = sre2l_file_bytes(rest, IMAGENET["size"], rng) if rest else 0
    epoch_bytes = full * files[str(IMAGENET["batch"])] + last
    sre2l = {"file_bytes": files, "per_slot": {b: v / int(b) for b, v in files.items()},
             "imagenet_epoch_bytes": epoch_bytes, "imagenet_last_batch": rest,
             "imagenet_total": epoch_bytes * IMAGENET["epochs"],
             "imagenet_per_slot": epoch_bytes / IMAGENET["images"]}
    from ladd_format.stream import DEFAULT_STREAM_CODEC

    return {"settings": st, "default_stream_codec": DEFAULT_STREAM_CODEC, "m": m, "slots": slots, "labeler_last_loss": last_loss, "crop_top1_own_class": crop_acc,
            "kl_float32_vs_float16_logits": f32_ref, "label_stats": stats, "rows": rows, "side": side,
            "side_imagenet_slots": n_inet, "sre2l": sre2l, "imagenet": IMAGENET, "timing": timing}


# --------------------------------------------------------------------------- rendering

def _b(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _kl(x: float) -> str:
    return "0" if x == 0 else ("< 1e-6" if x < 1e-6 else (f"{x:.1e}" if x < 1e-3 else f"{x:.4f}"))


def _zm(x: float) -> str:
    return "0" if x == 0 else (f"{x:.1e}" if x < 1e-3 else f"{x:.3f}")


def _spread(v: list[float]) -> str:
    return f"{_b(min(v))}-{_b(max(v))}" if v else "-"


def imagenet_bytes(d: dict, row: dict, key: str = "zstd19") -> float:
    """Bytes of ImageNet-1K IPC 10 x 300 epochs with ``row``'s labels (``key`` compression) plus the crop and
    mix side information measured at ImageNet shape (same compression)."""
    side = d["side"]["imagenet"]
    skey = "zstd19" if key == "zstd19_image_major" else key
    per_slot = row["bytes"][key] + side["crop"][skey] + side["mix"][skey]
    fixed = row.get("fixed_bytes", {}).get(skey, 0)        # a tail's mean and basis, stored once
    return per_slot * d["imagenet"]["images"] * d["imagenet"]["epochs"] + fixed


def row_name(d: dict, row: dict) -> str:
    """A row's name, marked when its codec is the release's default or spec 1.2's."""
    if row["kind"] == d.get("default_stream_codec"):
        return f"**{row['name']} (the default)**"
    if "default_stream_codec" in d and row["kind"] == DEFAULT_1_2:
        return f"{row['name']} (spec 1.2's default)"
    return row["name"]


def tail_notes(d: dict) -> list[str]:
    """The lines that describe the tail rows (none before they were measured)."""
    tails = [r for r in d["rows"] if "tail_rank" in r]
    if not tails:
        return []
    fixed = {}
    for r in tails:
        fixed.setdefault(r["tail_rank"], r["fixed_bytes"])
    return [
        f"- Default stream codec when this ran (`ladd_format.stream.DEFAULT_STREAM_CODEC`): "
        f"`{d['default_stream_codec']}`, marked in bold below; spec 1.2's default `{DEFAULT_1_2}` is marked too.",
        "- Tail rows (spec 1.3, `topk:...,tail=r`): top-k probabilities plus the low-rank tail, encoded by the "
        "package's `StreamCodec.encode_logits` from the teacher's float32 logits (what the writer is given) with "
        f"the basis fitted as the writer fits it (`fit_tail_basis` of the first {tails[0]['fit_records']:,} slots' "
        "float32 logits, in stream order), decoded by `StreamCodec.decode` with the tail; re-tempered as the "
        "replay loader does (`decode(temperature=20)`). Their bytes per slot count the top-k index and values, "
        "`tail/coef` (r x int8) and `tail/scale` (float16). The fixed `tail/mean` and `tail/basis` (float32, "
        "(r + 1) x C), stored once per file, are not in the per-slot figures: "
        + ", ".join(f"r = {r}: {b['zstd19'] / 1e3:,.1f} kB" for r, b in sorted(fixed.items()))
        + " (zstd 19); the ImageNet totals below add them once."]


def render(payload: dict) -> str:
    d = payload["data"]
    st, inet, sre = d["settings"], d["imagenet"], d["sre2l"]
    ref_slot = sre["per_slot"]["1024"]
    rt = st.get("retemper", 20.0)
    sre_total = sre["imagenet_total"]
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in d["timing"].items())
    lines = [f"- Machine: {payload['machine']}, CPU only",
             f"- Date: {payload['date']}; command: `{payload['command']}` (ran in {timing})",
             f"- Teacher: the digits-1000 labeler (ConvNet-D3 width 16, {st['labeler_steps']} Adam steps, last loss "
             f"{d['labeler_last_loss']:.2f}); D = {d['m']} random train composites (one per class, 24 px). "
             f"Stream: {st['epochs']} epochs x {d['m']} images = {d['slots']:,} slots; RandomResizedCrop scale (0.08, 1), "
             f"ratio (3/4, 4/3), flip 1/2, CutMix inside batches of {st['batch']} as SRe2L's `cutmix` (Beta(1, 1)); "
             f"the teacher's argmax on the mixed crops is the image's own class on "
             f"{100 * d['crop_top1_own_class']:.1f}% of the slots.",
             "- Reference: the teacher's logits cast to float16 (SRe2L's `--use-fp16`); reference label = "
             "softmax(logits / T). Casting to float16 moves the labels by a mean KL of "
             + " / ".join(f"{_kl(v)} at T = {float(t):g}" for t, v in d["kl_float32_vs_float16_logits"].items())
             + " against the float32 logits.",
             ]
    for t, s in d["label_stats"].items():
        tail = ", ".join(f"k = {k}: {v:.3f}" for k, v in s["tail_mass"].items())
        lines.append(f"- Labels at T = {float(t):g}: mean entropy {s['entropy']:.2f} nats (uniform: 6.91), mean top-1 "
                     f"probability {s['top1_mass']:.3f}; mass outside the top k: {tail}.")
    lines += [
        f"- SRe2L's files (`torch.save` of its six-element list, C = 1000, measured): "
        + ", ".join(f"B = {b}: {v:,} B per file, {sre['per_slot'][b]:,.1f} B per slot" for b, v in sre["file_bytes"].items())
        + f". ImageNet-1K IPC 10 at B = {inet['batch']:,} (SRe2L's `relabel.sh`; {inet['images'] // inet['batch']} files "
        f"of {inet['batch']:,} and one of {sre['imagenet_last_batch']}): {sre['imagenet_epoch_bytes']:,} B per epoch, "
        f"{sre_total / 1e9:.2f} GB ({sre_total / 2**30:.2f} GiB) for {inet['epochs']} epochs, "
        f"{sre['imagenet_per_slot']:,.1f} B per slot.",
        "- Bytes per slot (one image in one epoch): the stored arrays as `ladd size` measures them (each array a "
        "`.npy` in a zip archive / a zstd frame), over all slots; rows in generation order unless said. "
        f"Spread: the range of zstd-3 bytes per slot over {st['groups']} groups of {st['epochs'] // st['groups']} epochs, "
        "each compressed alone. KL(reference || decoded) in nats, a decoded 0 floored at 1e-8 as the storage "
        "benchmark's `fidelity` does; zeroed mass: the reference's mean mass on the classes a codec decodes as "
        "exactly 0 (float16 underflow, uint8 rounding, a dropped tail), where the KL without the floor is "
        f"infinite. Re-tempered: the label stored at T = 1, taken to T = {rt:g} as a student training at that "
        f"temperature would (q^(1/T) renormalised; logits divided by T), against softmax(logits / {rt:g}). "
        "Ratio: SRe2L's bytes per slot at B = 1,024 over the codec's zstd-19 bytes.",
        *tail_notes(d),
        "",
        "| label codec | T | raw B/slot | zip | zstd 3 (spread) | zstd 19 | zstd 19, image-major | vs SRe2L (zstd 19) "
        f"| mean KL | zeroed mass | TV | top-1 agreement | KL at T = {rt:g} (re-tempered) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in d["rows"]:
        b = r["bytes"]
        lines.append(f"| {row_name(d, r)} | {r['temperature']:g} | {_b(b['raw'])} | {_b(b['zip'])} | {_b(b['zstd3'])} "
                     f"({_spread(b.get('zstd3_groups', []))}) | {_b(b['zstd19'])} | {_b(b['zstd19_image_major'])} | "
                     f"1/{ref_slot / b['zstd19']:.1f} | {_kl(r['kl'])} | {_zm(r['zeroed_mass'])} | {r['tv']:.4f} | {100 * r['top1']:.2f}% | "
                     f"{_kl(r['retempered']['kl']) if 'retempered' in r else '-'} |")
    lines += ["", "Side information per slot (what a stream stores besides the label): image index int32, crop box "
              "4 x int16 source pixels, flip bit; the mix: CutMix partner slot int16 and one 4 x int16 box per batch.", "",
              "| stream | part | raw B/slot | zip | zstd 3 | zstd 19 |", "|---|---|---:|---:|---:|---:|"]
    names = {"stand-in": f"stand-in (24 px, {d['m']} images, batch {st['batch']})",
             "imagenet": f"ImageNet-1K IPC 10 shape ({inet['images']:,} images, {inet['size']} px, batch "
                         f"{inet['batch']:,}, {d['side_imagenet_slots']:,} slots)"}
    for which, parts in d["side"].items():
        for part, b in parts.items():
            lines.append(f"| {names[which]} | {part} | {_b(b['raw'])} | {_b(b['zip'])} | {_b(b['zstd3'])} | "
                         f"{_b(b['zstd19'])} |")
    target = TARGET_MB * 1e6
    lines += ["", f"At ImageNet-1K IPC 10 x {inet['epochs']} epochs ({inet['images'] * inet['epochs']:,} slots): labels "
              "at the stand-in's zstd-19 bytes per slot plus the crop and mix side information at ImageNet shape "
              f"(zstd 19); SRe2L's layout as measured above ({sre_total / 1e6:,.0f} MB). Target: <= {TARGET_MB} MB "
              f"(1/40 of {SRE2L_GB} GB); moonshot 1/80.", "",
              "| label codec | T | total MB (zstd 19) | ratio | total MB (image-major) | ratio | <= 1/40? |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for r in d["rows"]:
        a, b = imagenet_bytes(d, r), imagenet_bytes(d, r, "zstd19_image_major")
        best = min(a, b)
        verdict = ("yes, and 1/80" if best <= sre_total / 80 else "yes") if best <= min(target, sre_total / 40) else "no"
        lines.append(f"| {row_name(d, r)} | {r['temperature']:g} | {a / 1e6:,.0f} | 1/{sre_total / a:.1f} | "
                     f"{b / 1e6:,.0f} | 1/{sre_total / b:.1f} | {verdict} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings, print only")
    add_output_args(ap)
    args = ap.parse_args(argv)
    out = Output.from_args(args)
    return out.publish(NAME, TITLE, render, measure=lambda: measure(args.quick))


if __name__ == "__main__":
    sys.exit(main())
