"""Relabel streams: does the low-rank tail (spec 1.3) still help when the teacher's logits are not low-rank?

Usage::

    .venv/bin/python benchmarks/stream_tail_rank.py                # ~4-8 min on 2 CPU cores; saves
                                                                   # results/stream_tail_rank.json and writes
                                                                   # benchmarks/RESULTS/stream-tail-rank.md
    .venv/bin/python benchmarks/stream_tail_rank.py --render-only  # re-render from the saved JSON
    .venv/bin/python benchmarks/stream_tail_rank.py --quick        # tiny settings, prints only

The default stream codec ``topk:k=5,values=uint8,tail=24`` was chosen on the digits-1000 stand-in
(``stream_codecs.py``), whose 1000 classes are three digits side by side: its teacher's logits are close to
low-rank by construction (a class is three choices of ten). This benchmark measures the same codecs on a
second stand-in built without that structure, and on digits-1000 again with the same method, side by side.

Teachers (ConvNet-D3, 24 px, C = 1000, 800 Adam steps, OneCycle lr 0.01, batches of 256 random resized crops):

- digits-1000: the labeler of ``storage_common.Digits1000`` (width 16; ``stream_common.digits1000_teacher``,
  the teacher of ``stream_codecs.py``, cached under benchmarks/_work/stream); D = one random train composite
  per class (``stream_codecs.composites``).
- prototypes-1000: 1000 random smooth RGB prototypes (one per class: 3 x 12 x 12 standard Gaussian noise
  upsampled bilinearly to 24 px, the whole set standardised to mean 0, deviation 1); an instance of class y
  is prototype y times a per-channel gain U(0.7, 1.3) plus 0.6 N(0, 1) pixel noise. Width 32 (its task is
  harder); torch seed 0, one generator seeded 0 for the prototypes and the training draws. D = one instance
  per class (generator seeded 5), clipped to [-3, 3] and stored as uint8 (x + 3) / 6 * 255; the teacher
  sees 6 x - 3 of the [0, 1] crops (mean 0.5, deviation 1/6), i.e. the instance values again. Its
  accuracy on fresh instances (one per class, generator seeded 9) is reported.

Stream (both teachers): ``stream_codecs.draw_stream`` (``epochs`` epochs of the ``images`` images, each
drawn once an epoch in a random order, SRe2L-style RandomResizedCrop (scale (0.08, 1), ratio (3/4, 4/3))
and flip 1/2, CutMix inside batches of ``batch``, seed 0) and ``stream_codecs.teacher_logits`` (the
teacher's float32 logits of the mixed crops, and their float16 cast, SRe2L's stored values). The first
``fit_records`` records (``TAIL_FIT_RECORDS``, 4,096, as the writer) are the fit rows; every figure of
fidelity is over the records after them.

Rank: the share of the variance of the centred float32 logits of the fit rows that their r leading
principal directions explain (squared singular values), r = 8, 16, 24, 32, 64.

Codecs (each encoded and decoded by the package, as a written stream is): spec 1.2's default
``topk:k=20,values=uint8``, ``topk:k=10,values=uint8``, the release's default (``DEFAULT_STREAM_CODEC``,
``topk:k=5,values=uint8,tail=24``), ``topk:k=5,values=uint8,tail=32`` and ``topk:k=10,values=uint8,tail=24``.
The basis is ``fit_tail_basis`` of the fit rows' float32 logits; each record's float32 logits are encoded
by ``StreamCodec.encode_logits(z, T, tail=basis)`` and decoded by ``StreamCodec.decode(stored, C,
stored_temperature=T, tail=basis)``:

- T = 1 (the teacher's own softmax, ``ladd relabel``'s default) and T = 0.25 (sharper, as ImageNet teachers
  are): stored and decoded at T, against softmax(float16 logits / T);
- re-tempered: the label stored at T = 1, decoded for a student at T = 20 (SRe2L's ``-T 20``):
  ``decode(stored, C, temperature=20, stored_temperature=1, tail=basis)``, as the replay loader does,
  against softmax(float16 logits / 20).

Mean KL(reference || decoded) in nats (a decoded 0 floored at 1e-8, as ``stream_codecs.py``) and top-1
agreement. Bytes a record: the label datasets of every record of the stream (top-k index and values;
``tail/coef`` and ``tail/scale``) stored as the writer stores ``/stream`` datasets (HDF5 chunks of about
``STREAM_CHUNK_BYTES`` with shuffle, gzip ``STREAM_GZIP_LEVEL`` and fletcher32, constants of
``ladd_format.writer``; ``get_storage_size`` of each dataset in an in-memory file), divided by the record
count. The tail's ``mean`` and ``basis`` ((r + 1) x C float32, once per file, stored uncompressed) are given
apart: at ImageNet-1K IPC 10 x 300 epochs (3,000,000 records) they add 0.03 B a record at r = 24.
Both defaults are taken from where they are defined (``DEFAULT_STREAM_CODEC``, ``stream_common.DEFAULT_1_2``)
and saved with the figures, so the page's verdicts name the defaults of the run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _common import Output, add_output_args  # noqa: E402
from stream_common import (DEFAULT_1_2, IMAGENET, WORK, digits1000_teacher, fmt_b, fmt_kl,  # noqa: E402
                           fmt_timing, load_model, log, save_teacher, softmax_np)
from storage_common import Digits1000, fidelity as label_fidelity  # noqa: E402
import stream_codecs  # noqa: E402  (its SRe2L-style draws and teacher pass: the stream of the codec benchmark)
from ladd_format.stream import DEFAULT_STREAM_CODEC, parse_stream_codec  # noqa: E402
from ladd_format.stream.tail import TAIL_FIT_RECORDS, fit_tail_basis  # noqa: E402
from ladd_format.torch.models import build_model  # noqa: E402
from ladd_format.writer import STREAM_CHUNK_BYTES, STREAM_GZIP_LEVEL  # noqa: E402

NAME = KEY = "stream_tail_rank"
TITLE = ("## Relabel streams: does the low-rank tail help when the teacher's logits are not low-rank? "
         "(digits-1000, prototypes-1000)")
C = 1000
SIDE = 24                                  # both stand-ins' image side
RANKS = (8, 16, 24, 32, 64)                # the ranks whose explained variance is reported
TEMPS = (1.0, 0.25)                        # stored and decoded at T
RETEMPER = 20.0                            # stored at T = 1, decoded for a student at T = 20 (SRe2L's -T 20)
TEACHERS = ("digits-1000", "prototypes-1000")
#: the codecs compared: spec 1.2's default, top-10, the release's default, and two tails around it
CODECS = tuple(dict.fromkeys((DEFAULT_1_2, "topk:k=10,values=uint8", DEFAULT_STREAM_CODEC,
                              "topk:k=5,values=uint8,tail=32", "topk:k=10,values=uint8,tail=24")))
PROTO_GAIN = (0.7, 1.3)                    # per-channel gain of a prototype instance, uniform
PROTO_NOISE = 0.6                          # deviation of a prototype instance's pixel noise
PROTO_GRID = 12                            # prototypes are Gaussian noise at 12 x 12, upsampled to SIDE
PROTO_CLIP = (-3.0, 3.0)                   # instance values stored as uint8 over this range
BLOCK = 2000                               # rows per decoding block


def settings(quick: bool) -> dict:
    if quick:
        return dict(images=100, epochs=2, batch=50, seed=0, digits_steps=15, proto_steps=15, proto_width=32,
                    fit_records=100)
    return dict(images=1000, epochs=10, batch=100, seed=0, digits_steps=800, proto_steps=800, proto_width=32,
                fit_records=TAIL_FIT_RECORDS)


# --------------------------------------------------------------------------- the prototypes-1000 stand-in

def prototypes(g: torch.Generator) -> torch.Tensor:
    """One smooth random RGB prototype per class: ``(C, 3, SIDE, SIDE)`` float, the set standardised."""
    base = torch.randn(C, 3, PROTO_GRID, PROTO_GRID, generator=g)
    proto = F.interpolate(base, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    return (proto - proto.mean()) / proto.std()


def prototype_instances(proto: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Instances of classes ``y``: prototype x per-channel gain U(0.7, 1.3) + 0.6 N(0, 1); ``(B, 3, SIDE, SIDE)``."""
    x = proto[y]
    gain = torch.empty(len(y), 3, 1, 1).uniform_(*PROTO_GAIN, generator=g)
    return x * gain + PROTO_NOISE * torch.randn(x.shape, generator=g)


def proto_norm(x: torch.Tensor) -> torch.Tensor:
    """The prototypes teacher's input: [0, 1] crops of the uint8 instances back to their values (6 x - 3)."""
    lo, hi = PROTO_CLIP
    return x * (hi - lo) + lo


def train_prototypes_teacher(steps: int, width: int) -> tuple[torch.nn.Module, torch.Tensor, dict]:
    """ConvNet-D3 on fresh instances: ``steps`` Adam steps (OneCycle, lr 0.01) of 256 random resized crops
    (side 0.55-1 of the image), as ``Digits1000.train``; the model, the prototypes and ``info``."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    proto = prototypes(g)
    model = build_model("convnet-d3", num_classes=C, image_size=SIDE, width=width)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=steps, pct_start=0.15)
    loss = torch.zeros(())
    for _ in range(steps):
        y = torch.randint(0, C, (256,), generator=g)
        x = prototype_instances(proto, y, g)
        side = max(8, int(SIDE * torch.empty(1).uniform_(0.55, 1.0, generator=g).item()))
        top, left = torch.randint(0, SIDE - side + 1, (2,), generator=g).tolist()
        x = F.interpolate(x[:, :, top:top + side, left:left + side], size=(SIDE, SIDE), mode="bilinear",
                          align_corners=False)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval(), proto, {"last_loss": float(loss.detach())}


def prototypes_teacher(steps: int, width: int) -> tuple[torch.nn.Module, torch.Tensor, dict]:
    """The prototypes-1000 teacher, cached as a checkpoint under benchmarks/_work/stream (the prototypes are
    redrawn from their seed); the model as loaded back, the prototypes and ``info``."""
    path = WORK / f"teacher-proto1k-w{width}-{steps}.safetensors"
    info = {"steps": steps, "width": width}
    if path.exists():
        proto = prototypes(torch.Generator().manual_seed(0))
        info["cached"] = True
    else:
        t = time.perf_counter()
        with torch.inference_mode(False), torch.enable_grad():
            model, proto, trained = train_prototypes_teacher(steps, width)
        info.update(trained, train_s=time.perf_counter() - t)
        lo, hi = PROTO_CLIP
        save_teacher(model, path, num_classes=C, image_size=SIDE, width=width, mean=(-lo / (hi - lo),) * 3,
                     std=(1 / (hi - lo),) * 3, training_data="prototypes-1000 (benchmarks/stream_tail_rank.py)",
                     epochs=steps)
        log(f"trained the prototypes-1000 teacher in {info['train_s']:.0f} s")
    model = load_model(path)
    with torch.inference_mode():
        y = torch.arange(C)
        fresh = prototype_instances(proto, y, torch.Generator().manual_seed(9))
        info["accuracy"] = float((model(fresh).argmax(-1) == y).float().mean())
    return model, proto, info


def prototype_images(proto: torch.Tensor, m: int) -> np.ndarray:
    """D: one instance per class (generator seeded 5), the first ``m``, as uint8 ``(m, 3, SIDE, SIDE)``."""
    lo, hi = PROTO_CLIP
    inst = prototype_instances(proto, torch.arange(C), torch.Generator().manual_seed(5))
    return ((inst.clamp(lo, hi) - lo) / (hi - lo) * 255).round().to(torch.uint8).numpy()[:m]


@contextlib.contextmanager
def teacher_normalisation(norm):
    """``stream_codecs.teacher_logits`` normalises crops with ``Digits1000.norm``: ``norm`` instead, meanwhile."""
    saved = Digits1000.__dict__["norm"]
    Digits1000.norm = staticmethod(norm)
    try:
        yield
    finally:
        Digits1000.norm = saved


# --------------------------------------------------------------------------- the two streams

def label_stream(model: torch.nn.Module, images: np.ndarray, st: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """The stream's float32 logits and float16 cast (``stream_codecs``' draws and teacher pass), and the
    share of records whose argmax is the drawn image's class (image i is of class i)."""
    stream = stream_codecs.draw_stream(len(images), SIDE, st["epochs"], st["batch"], st["seed"])
    logits32, logits16 = stream_codecs.teacher_logits(model, images, stream, st["batch"])
    own = float((logits32.argmax(-1) == stream["index"] % C).mean())
    return logits32, logits16, own


def teacher_stream(name: str, st: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """``name``'s stream: float32 logits, float16 logits, and what the page says of the teacher."""
    t = time.perf_counter()
    if name == "digits-1000":
        path, info = digits1000_teacher(st["digits_steps"])
        model = load_model(path)
        info = {"steps": info["steps"], "width": info["width"]}
        images = stream_codecs.composites(Digits1000(), st["images"])
        logits32, logits16, own = label_stream(model, images, st)
    else:
        model, proto, info = prototypes_teacher(st["proto_steps"], st["proto_width"])
        with teacher_normalisation(proto_norm):
            logits32, logits16, own = label_stream(model, prototype_images(proto, st["images"]), st)
    info.update(own_class=own, label_s=time.perf_counter() - t)
    return logits32, logits16, info


# --------------------------------------------------------------------------- measures

def variance_explained(logits: np.ndarray, ranks=RANKS) -> dict[str, float]:
    """The share of the centred rows' variance that their r leading principal directions explain, per r."""
    z = np.asarray(logits, np.float64)
    singular = np.linalg.svd(z - z.mean(0), compute_uv=False)
    share = np.cumsum(singular ** 2) / np.sum(singular ** 2)
    return {str(r): float(share[min(r, len(share)) - 1]) for r in ranks}


def stored_bytes(arrays: dict[str, np.ndarray]) -> int:
    """Bytes of the HDF5 storage of ``arrays`` (each ``(n, ...)``, rows = records) as the writer stores
    ``/stream`` datasets: resizable, chunks of ``STREAM_CHUNK_BYTES`` // (bytes a row) rows, shuffle, gzip
    ``STREAM_GZIP_LEVEL``, fletcher32; summed ``get_storage_size`` in an in-memory file."""
    import h5py

    total = 0
    with h5py.File(f"tail-rank-{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False) as f:
        for name, a in arrays.items():
            a = np.ascontiguousarray(a)
            row_bytes = max(1, int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize)
            ds = f.create_dataset(name.replace("/", "_"), data=a, maxshape=(None, *a.shape[1:]),
                                  chunks=(max(1, STREAM_CHUNK_BYTES // row_bytes), *a.shape[1:]), shuffle=True,
                                  compression="gzip", compression_opts=STREAM_GZIP_LEVEL, fletcher32=True)
            total += int(ds.id.get_storage_size())
    return total


def blocks(start: int, stop: int):
    for s in range(start, stop, BLOCK):
        yield slice(s, min(stop, s + BLOCK))


def fidelity(logits16: np.ndarray, t: float, decode, start: int) -> dict:
    """Mean KL(softmax(logits16 / t) || decode(rows)), top-1 agreement and zeroed mass (the reference's mean
    mass on the classes decoded as exactly 0, which the KL counts at its 1e-8 floor) over the rows from
    ``start``, block by block (``storage_common.fidelity``, as ``stream_codecs.py``)."""
    n = len(logits16) - start
    acc = {"kl": 0.0, "top1": 0.0, "zeroed_mass": 0.0}
    for sl in blocks(start, len(logits16)):
        p, q = softmax_np(logits16[sl], t), decode(sl)
        f = label_fidelity(p, q)
        f["zeroed_mass"] = float(np.where(q <= 0, p, 0.0).sum(-1).mean())
        for key in acc:
            acc[key] += f[key] * (sl.stop - sl.start) / n
    return acc


def codec_rows(logits32: np.ndarray, logits16: np.ndarray, fit: int) -> tuple[list[dict], dict]:
    """One row per codec of :data:`CODECS`: bytes a record (all records, at each stored T) and fidelity (the
    records after the ``fit`` rows) at each T of :data:`TEMPS` and re-tempered from T = 1 to :data:`RETEMPER`;
    and the tail bases' fixed bytes per rank."""
    slots = len(logits32)
    bases, fixed = {}, {}
    rows = []
    for text in CODECS:
        codec = parse_stream_codec(text)
        r = codec.tail_rank
        if r is not None and r not in bases:
            bases[r] = fit_tail_basis(logits32[:fit], r)
            fixed[str(r)] = {"raw": int(bases[r].mean.nbytes + bases[r].basis.nbytes)}
        tail = bases.get(r)
        row = {"codec": codec.label, "tail_rank": r, "bytes": {}, "fidelity": {}}
        for t in TEMPS:
            parts: dict[str, list] = {}
            for sl in blocks(0, slots):
                for key, v in codec.encode_logits(logits32[sl], t, tail=tail).items():
                    parts.setdefault(key, []).append(v)
            stored = {key: np.concatenate(v) for key, v in parts.items()}
            row["bytes"][str(t)] = {"stored": stored_bytes(stored) / slots,
                                    "raw": sum(a.nbytes for a in stored.values()) / slots}

            def decode(sl, temperature=None, t=t, stored=stored):
                return codec.decode({key: v[sl] for key, v in stored.items()}, C, temperature=temperature,
                                    stored_temperature=t, tail=tail)
            row["fidelity"][str(t)] = fidelity(logits16, t, decode, fit)
            if t == 1.0:
                row["fidelity"]["retempered"] = fidelity(
                    logits16, RETEMPER, lambda sl, d=decode: d(sl, temperature=RETEMPER), fit)
        rows.append(row)
        f = row["fidelity"]
        log(f"  {text}: {row['bytes']['1.0']['stored']:.1f} B/record, KL T=1 {f['1.0']['kl']:.4g} "
            f"T=0.25 {f['0.25']['kl']:.4g} T={RETEMPER:g} {f['retempered']['kl']:.4g}, "
            f"top-1 {100 * f['1.0']['top1']:.2f}%")
    return rows, fixed


def measure(quick: bool) -> dict:
    st = settings(quick)
    out = {"settings": st, "default_stream_codec": DEFAULT_STREAM_CODEC, "default_1_2": DEFAULT_1_2,
           "retemper": RETEMPER, "writer_fit_records": TAIL_FIT_RECORDS,
           "writer": {"chunk_bytes": STREAM_CHUNK_BYTES, "gzip_level": STREAM_GZIP_LEVEL}, "teachers": {}}
    for name in TEACHERS:
        log(f"{name}:")
        timing = {}
        t = time.perf_counter()
        logits32, logits16, info = teacher_stream(name, st)
        timing["teacher and stream"] = time.perf_counter() - t
        fit = min(st["fit_records"], len(logits32))
        t = time.perf_counter()
        variance = variance_explained(logits32[:fit])
        rows, fixed = codec_rows(logits32, logits16, fit)
        timing["codecs"] = time.perf_counter() - t
        out["teachers"][name] = {"teacher": info, "records": len(logits32), "fit_records": fit,
                                 "variance_explained": variance, "rows": rows, "fixed_bytes": fixed,
                                 "timing": timing}
    return out


# --------------------------------------------------------------------------- rendering

def _temp_label(key: str, retemper: float) -> str:
    return f"T = 1 re-tempered to T = {retemper:g}" if key == "retempered" else f"T = {float(key):g}"


def _zeroed(x: float) -> str:
    return "0" if x == 0 else (f"{x:.1e}" if x < 1e-3 else f"{x:.3f}")


def _beats(a: dict, b: dict) -> str:
    """``beats``, ``does not beat`` or ``mixed``: fidelity ``a`` against ``b`` (``kl``, ``top1``): beats when
    its KL is lower and its top-1 agreement no lower, does not beat when the KL is higher and the agreement
    no higher."""
    if a["kl"] < b["kl"] and a["top1"] >= b["top1"]:
        return "beats"
    if a["kl"] > b["kl"] and a["top1"] <= b["top1"]:
        return "does not beat"
    return "mixed"


def _times(a: float, b: float) -> str:
    """``a`` against ``b`` (both >= 0) as "n x lower" or "n x higher"."""
    if a == b:
        return "equal"
    if a < b:
        return f"{b / a:,.0f}x lower" if a > 0 and b / a >= 10 else (f"{b / a:.2f}x lower" if a > 0 else "lower")
    return f"{a / b:,.0f}x higher" if b > 0 and a / b >= 10 else (f"{a / b:.2f}x higher" if b > 0 else "higher")


def verdict(name: str, d: dict) -> list[str]:
    """Per temperature, whether the default beats spec 1.2's default on ``name``'s stream: it beats when its
    KL is lower and its top-1 agreement no lower, loses when the KL is higher and the agreement no higher."""
    rows = {r["codec"]: r for r in d["teachers"][name]["rows"]}
    new, old = rows.get(d["default_stream_codec"]), rows.get(d["default_1_2"])
    if new is None or old is None or new is old:
        return []
    lines = []
    for key in ("1.0", "0.25", "retempered"):
        a, b = new["fidelity"][key], old["fidelity"][key]
        word = {"mixed": "does not clearly beat (mixed)"}.get(_beats(a, b), _beats(a, b))
        lines.append(f"- {name}, {_temp_label(key, d['retemper'])}: the default {word} spec 1.2's default "
                     f"(mean KL {fmt_kl(a['kl'])} vs {fmt_kl(b['kl'])}, {_times(a['kl'], b['kl'])}; top-1 "
                     f"agreement {100 * a['top1']:.1f}% vs {100 * b['top1']:.1f}%).")
    return lines


def beats_everywhere(d: dict) -> dict[str, dict[str, float]]:
    """The codecs that beat spec 1.2's default (:func:`_beats`) at each temperature on every teacher, each
    with its bytes a record at T = 1 per teacher."""
    out = {}
    olds = {name: {r["codec"]: r for r in t["rows"]}.get(d["default_1_2"]) for name, t in d["teachers"].items()}
    if any(old is None for old in olds.values()):
        return out
    first = next(iter(d["teachers"].values()))
    for codec in [r["codec"] for r in first["rows"] if r["codec"] != d["default_1_2"]]:
        per = {}
        for name, t in d["teachers"].items():
            row = {r["codec"]: r for r in t["rows"]}.get(codec)
            if row is None or any(_beats(row["fidelity"][k], olds[name]["fidelity"][k]) != "beats"
                                  for k in ("1.0", "0.25", "retempered")):
                break
            per[name] = row["bytes"]["1.0"]["stored"]
        else:
            out[codec] = per
    return out


def render(payload: dict) -> str:
    d = payload["data"]
    st, rt = d["settings"], d["retemper"]
    timing = "; ".join(f"{name}: {fmt_timing(t['timing'])}" for name, t in d["teachers"].items())
    dig, pro = d["teachers"].get("digits-1000"), d["teachers"].get("prototypes-1000")
    lines = [f"- Machine: {payload['machine']}, CPU only",
             f"- Date: {payload['date']}; command: `{payload['command']}` (ran in {timing})"]
    if dig:
        lines.append(f"- digits-1000 teacher: ConvNet-D3 width {dig['teacher']['width']}, {dig['teacher']['steps']} "
                     f"Adam steps (the teacher of `stream_codecs.py`); D = {st['images']:,} images, one random "
                     "train composite per class (three scikit-learn digits side by side). Its argmax on the mixed "
                     f"crops is the image's own class on {100 * dig['teacher']['own_class']:.1f}% of the records.")
    if pro:
        lines.append(f"- prototypes-1000 teacher: ConvNet-D3 width {pro['teacher']['width']}, "
                     f"{pro['teacher']['steps']} Adam steps on instances of {C} random smooth RGB prototypes "
                     f"({PROTO_GRID} x {PROTO_GRID} Gaussian noise upsampled to {SIDE} px; instance = prototype x "
                     f"per-channel gain U{PROTO_GAIN} + {PROTO_NOISE} N(0, 1)); "
                     f"{100 * pro['teacher']['accuracy']:.1f}% top-1 on fresh instances. D = {st['images']:,} images, "
                     "one instance per class. Its argmax on the mixed crops is the image's own class on "
                     f"{100 * pro['teacher']['own_class']:.1f}% of the records.")
    any_t = next(iter(d["teachers"].values()))
    writer_fit, w = d["writer_fit_records"], d["writer"]
    fixed = sorted(any_t["fixed_bytes"].items(), key=lambda kv: int(kv[0]))
    inet_records = IMAGENET["images"] * IMAGENET["epochs"]
    fit_note = ("the writer's `TAIL_FIT_RECORDS`" if any_t["fit_records"] == writer_fit
                else f"quick settings; the writer fits on the first {writer_fit:,}")
    lines += [
        f"- Streams: {st['epochs']} epochs x {st['images']:,} images = {any_t['records']:,} records a teacher, "
        f"SRe2L-style crops (RandomResizedCrop scale (0.08, 1), flip 1/2, CutMix inside batches of {st['batch']}; "
        "`stream_codecs.py`'s draws, seed 0). Fit rows: the first "
        f"{any_t['fit_records']:,} records ({fit_note}); every KL and agreement is over the "
        f"{any_t['records'] - any_t['fit_records']:,} records after them.",
        "- Encoded and decoded by the package: `fit_tail_basis` of the fit rows' float32 logits, "
        "`StreamCodec.encode_logits(z, T, tail=basis)`, `StreamCodec.decode(stored, C, stored_temperature=T, "
        "tail=basis)`; re-tempered: stored at T = 1, `decode(..., temperature="
        f"{rt:g}, stored_temperature=1, tail=basis)` as the replay loader does. Reference: softmax(float16 logits / T) "
        "(SRe2L's stored values). Mean KL(reference || decoded) in nats, a decoded 0 floored at 1e-8; zeroed mass: "
        "the reference's mean mass on the classes decoded as exactly 0 (a top-k value stored as uint8 0 without a "
        "tail), which that floor stands for.",
        "- Bytes a record: the label datasets (top-k index and values; `tail/coef`, `tail/scale`) of all records "
        f"stored as the writer stores `/stream` datasets (HDF5 chunks of {w['chunk_bytes'] // 1024} KiB, shuffle + "
        f"gzip level {w['gzip_level']}, fletcher32), at the temperature the labels are stored at. A tail's `mean` "
        "and `basis` ((r + 1) x C float32, once a file) are apart: "
        + ", ".join(f"r = {r}: {b['raw'] / 1e3:,.0f} kB" for r, b in fixed)
        + f" (at ImageNet-1K IPC 10 x {IMAGENET['epochs']} epochs, {inet_records:,} records, at most "
        f"{max(b['raw'] for _, b in fixed) / inet_records:.2f} B a record).",
        "",
        "Share of the centred logits' variance explained by the leading r principal directions (fit rows):",
        "",
        "| teacher | " + " | ".join(f"r = {r}" for r in any_t["variance_explained"]) + " |",
        "|---|" + "---:|" * len(any_t["variance_explained"])]
    for name, t in d["teachers"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}%" for v in t["variance_explained"].values()) + " |")
    lines += ["",
              f"| teacher | codec | B/record T = 1 | B/record T = 0.25 | KL T = 1 | top-1 T = 1 | KL T = 0.25 | "
              f"top-1 T = 0.25 | KL T = 1 -> {rt:g} | top-1 T = 1 -> {rt:g} | zeroed mass T = 1 -> {rt:g} |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t in d["teachers"].items():
        for r in t["rows"]:
            f = r["fidelity"]
            label = f"`{r['codec']}`"
            if r["codec"] == d["default_stream_codec"]:
                label = f"**{label} (the default)**"
            elif r["codec"] == d["default_1_2"]:
                label += " (spec 1.2's default)"
            lines.append(f"| {name} | {label} | {fmt_b(r['bytes']['1.0']['stored'])} | "
                         f"{fmt_b(r['bytes']['0.25']['stored'])} | "
                         + " | ".join(f"{fmt_kl(f[k]['kl'])} | {100 * f[k]['top1']:.1f}%"
                                      for k in ("1.0", "0.25", "retempered"))
                         + f" | {_zeroed(f['retempered']['zeroed_mass'])} |")
    verdicts = [line for name in d["teachers"] for line in verdict(name, d)]
    everywhere = beats_everywhere(d)
    if verdicts:
        lines += ["", f"The default (`{d['default_stream_codec']}`) against spec 1.2's default (`{d['default_1_2']}`), "
                  "per teacher and temperature (beats: lower mean KL and top-1 agreement no lower; does not beat: "
                  "higher KL and agreement no higher; mixed otherwise):", "", *verdicts]
    else:
        lines += ["", "The default is spec 1.2's default: there is nothing to compare."]
    if everywhere:
        lines += ["", "Codecs that beat spec 1.2's default at every temperature on both teachers: " + "; ".join(
            f"`{c}` (" + " and ".join(f"{fmt_b(b)} B a record on {n}" for n, b in per.items()) + ")"
            for c, per in everywhere.items()) + "."]
    else:
        lines += ["", "No codec beats spec 1.2's default at every temperature on both teachers."]
    lines += ["", "Neither stand-in is an ImageNet teacher: both are 24 px ConvNets trained offline on synthetic "
              "1000-class data, and an ImageNet teacher's logits may be closer to or further from low rank than "
              "either. The two teachers show how the tail fares on logits of two different ranks, not what it does "
              "on an ImageNet teacher's."]
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
