"""Students trained on relabel streams: does the ladd stream teach as well as SRe2L's files and the teacher?

Usage::

    .venv/bin/python benchmarks/stream_students.py                # ~20 min on 2 CPU cores; saves
                                                                  # results/stream_students.json and writes
                                                                  # benchmarks/RESULTS/stream-students.md
    .venv/bin/python benchmarks/stream_students.py --render-only  # re-render from the saved JSON
    .venv/bin/python benchmarks/stream_students.py --quick        # tiny settings, prints only

Offline data only (nothing may be downloaded here): scikit-learn's **digits** (C = 10: 8 x 8 digits
resized to 24 px; D = 10 random train images per class; test: the held-out split) and the **digits-1000**
stand-in of ``stream_codecs.py`` / ``students_c1000.py`` (C = 1000: three digits side by side on a 24 px
canvas; D = one random train composite per class; test: two composites per class from the test split's
digits). Teachers: a ConvNet-D3 (width 32) trained on the digits train split with random resized crops and
flips; the digits-1000 labeler (ConvNet-D3 width 16, 800 Adam steps) of ``storage_common.Digits1000``.

One stream per seed s, generated as SRe2L generates its labels: the image order of SRe2L's loader
(``BatchSampler(RandomSampler(D, generator=g))``, g seeded once with 42 + s), per slot a
RandomResizedCrop box (scale (0.08, 1), ratio (3/4, 4/3), torchvision's draw, integer pixels) and a flip
(1/2), per batch one CutMix partner permutation and one box (SRe2L's ``rand_bbox``, Beta(1, 1)); the crop is
made as SRe2L makes it (PIL crop of the uint8 image and BILINEAR resize to the image size, flip, ToTensor),
normalised, CutMixed, and the teacher's logits of that input are the record's label. The same records are
stored two ways:

- (a) **SRe2L's layout**: ``epoch_e/batch_b.tar`` written as ``generate_soft_label.py`` writes them (float32
  fractions, bool flips, int64 partners, a float lambda, four ``numpy.int64``, float16 logits), read by a
  faithful copy of SRe2L's training loader (``stream_common.SRe2LLoader``: the sampler replay, ``torch.load``,
  ``resized_crop`` of the PIL image from the stored fractions, flip, normalise, CutMix with the stored box);
  target softmax(logits / T).
- (b) **the ladd stream**: one file written by the package's writer with the release's default stream codec
  (``default_stream_codec(C)``: ``topk:k=5,values=uint8,tail=24`` for C = 1000, top-5 probabilities and spec
  1.3's rank-24 low-rank tail, its basis fitted as ``ladd relabel`` fits it, on the float32 logits of the
  first ``TAIL_FIT_RECORDS`` records before the first batch is written; ``uint8`` probabilities for C = 10,
  where C <= 3k + r + 2), resize ``pil-bilinear`` (what the teacher saw), labels stored at T = 1 (``ladd
  relabel``'s default), read through the replay loader of ``ladd_format.torch`` with ``temperature=T`` (the
  stored q re-tempered, q^(1/T) renormalised) when the student trains at T != 1. Where the replay loader's
  labels of the first batch differ from the package's numpy decode (``StreamReader.probs``, the tail
  included) by more than 1e-5, the loader's inputs are used with the numpy labels, and the page says so.
- (b1) **the ladd stream with spec 1.2's default** ``topk:k=20,values=uint8`` (no tail; the rest of the mass
  spread evenly), written from the same logits in the same pass, read as (b): what the tail changes. At
  C = 10 spec 1.2's default fell back to ``uint8``, (b)'s codec, and (b1) is not trained.

and three references on the same records: (c) **the teacher online**: the same inputs, the target
softmax(teacher(x) / T) computed at every step in float32; (d) **hard labels**: the same inputs, cross-entropy
to the image's class mixed by CutMix's area (lambda = 1 - box area / crop area); (e) **LADD's static dense
labels**: the teacher's labels (T = 1, re-tempered to the student's T as (b)'s) of the 5 x 5 sub-images
(R = 0.625) of each image, stored in a D_LA with the section-6 codec whose zip bytes come closest to (b)'s
stream bytes, the student shown one random sub-image per image and epoch (LADD's training: no flip, no mix)
with its stored label.

Students: ConvNet-D3 (width 16) trained from the same initial weights for every condition of a seed (seeds
paired), the same epochs and batches, AdamW (weight decay 0.01, SRe2L's; learning rate 3e-3 on digits and
1e-2 on digits-1000, where SRe2L's 1e-3 is too slow for these short runs: a one-seed pilot of (c) at T = 1
gave 85.8 / 90.3% on digits at 1e-3 / 3e-3 and 38.7 / 53.6 / 55.4% on digits-1000 at 1e-3 / 3e-3 / 1e-2)
with SRe2L's per-epoch cosine schedule, loss ``KLDivLoss(batchmean)(log_softmax(out / T), target)`` as SRe2L's
``train_FKD.py`` (no T^2 factor). The temperature is measured: (c) at each T of the sweep, seeds as below,
and the best mean accuracy fixes T for every condition ((c)'s row is the sweep's run at that T, on the same
seeds, so it carries the selection). Accuracy: top-1 on the test images; Δ: the per-seed
difference to (a) (and to (c)), mean ± std over seeds; "within paired-seed noise": the 95% interval of the mean
per-seed difference (Student's t with seeds - 1 degrees of freedom) holds 0.
"""

from __future__ import annotations

import argparse
import contextlib
import concurrent.futures as cf
import multiprocessing as mp
import shutil
import sys
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
from stream_common import (D1K_MEAN, D1K_STD, DEFAULT_1_2, DIGITS_MEAN, DIGITS_STD, WORK, Digits1000,  # noqa: E402
                           SRe2LLoader, composites, digits1000_teacher, digits_teacher, draw_epoch, load_model, log,
                           mean_std, pil_images, sampler_orders, sre2l_crops, sre2l_cutmix, write_sre2l_batch)
from ladd_format import geometry  # noqa: E402
from ladd_format.torch.models import build_model  # noqa: E402

NAME = KEY = "stream_students"
TITLE = "## Students on relabel streams: SRe2L's files vs the ladd stream vs the teacher online (digits, digits-1000)"
CONDITIONS = ("a", "b", "b1", "c", "d", "e")
CONDITION_NAMES = {"a": "(a) SRe2L layout, float16 logits, SRe2L's loader",
                   "b": "(b) ladd stream, default codec, replay loader",
                   "b1": "(b1) ladd stream, spec 1.2's default codec (no tail), replay loader",
                   "c": "(c) teacher online, same crops",
                   "d": "(d) hard labels, same crops",
                   "e": "(e) LADD static 5 x 5 dense labels"}
N_GRID, R_GRID = 5, 0.625
#: the temperature the streams store their labels at: ``ladd relabel``'s default (the teacher's own softmax)
STREAM_T = 1.0
DENSE_CANDIDATES = {10: ("float32", "float16", "uint8"),
                    1000: ("float16", "topk:k=100,values=float16", "topk:k=50,values=float16",
                           "topk:k=100,values=uint8", "topk:k=50,values=uint8", "topk:k=20,values=float16",
                           "topk:k=20,values=uint8", "topk:k=10,values=uint8")}


def settings(quick: bool) -> dict:
    if quick:
        sets = [dict(name="digits", classes=10, side=16, ipc=2, teacher_steps=30, epochs=3, batch=10, width=8),
                dict(name="digits-1000", classes=1000, side=24, ipc=1, teacher_steps=15, epochs=2, batch=100, width=8,
                     images=200, test_per_class=1)]
        return dict(datasets=sets, seeds=2, temps=[1.0, 4.0], lr=1e-3, wd=0.01, workers=None)
    sets = [dict(name="digits", classes=10, side=24, ipc=10, teacher_steps=600, epochs=200, batch=50, width=16,
                 lr=3e-3),
            dict(name="digits-1000", classes=1000, side=24, ipc=1, teacher_steps=800, epochs=100, batch=100,
                 width=16, test_per_class=2, lr=1e-2)]
    return dict(datasets=sets, seeds=3, temps=[1.0, 4.0, 20.0], lr=1e-3, wd=0.01, workers=None)


# --------------------------------------------------------------------------- data

def dataset(ds: dict) -> dict:
    """D (uint8 images, labels), the test set, the teacher's checkpoint and the normalisation."""
    if ds["name"] == "digits":
        from ladd_format.demo import random_real
        from ladd_format.labeler.sources import load_source

        train, test = load_source("digits", ds["side"]), load_source("digits-test", ds["side"])
        idx = random_real(train, ds["ipc"], 0)
        teacher = digits_teacher(train.images, train.labels, ds["teacher_steps"], ds["side"])
        return dict(x=train.images[idx], y=train.labels[idx], xt=test.images, yt=test.labels, teacher=str(teacher),
                    mean=DIGITS_MEAN, std=DIGITS_STD)
    d1k = Digits1000()
    teacher, _ = digits1000_teacher(ds["teacher_steps"])
    x, y = composites(d1k, ds["ipc"], "train", seed=5)
    xt, yt = composites(d1k, ds.get("test_per_class", 2), "test", seed=6)
    m = ds.get("images")
    if m:
        x, y = x[:m], y[:m]
    return dict(x=x, y=y, xt=xt, yt=yt, teacher=str(teacher), mean=D1K_MEAN, std=D1K_STD)


def stream_codecs(classes: int) -> dict[str, str]:
    """The stream codec of each ladd condition for C = ``classes``: (b) the release's default
    (``default_stream_codec(C)``: ``DEFAULT_STREAM_CODEC``, or ``uint8`` for a few classes), and (b1) spec
    1.2's default ``topk:k=20,values=uint8`` (``uint8`` where C < 20, as 1.2 fell back), left out where it
    is (b)'s codec."""
    from ladd_format.stream import SMALL_C_CODEC, default_stream_codec, parse_stream_codec

    b = default_stream_codec(classes).label
    old = parse_stream_codec(DEFAULT_1_2)
    b1 = DEFAULT_1_2 if old.codec.k <= classes else SMALL_C_CODEC
    return {"b": b} if b1 == b else {"b": b, "b1": b1}


def stream_writer(path: Path, ds: dict, data: dict, seed: int, t: float, codec: str, tail=None):
    """The writer of a ladd condition's stream (module docstring) with ``codec`` (text) and, for a codec
    with a tail, its basis ``tail``."""
    from ladd_format import DLAWriter
    from ladd_format.spec import RESIZE_PIL
    from ladd_format.stream import StreamSpec, parse_stream_codec

    side = ds["side"]
    c = parse_stream_codec(codec)
    spec = StreamSpec(epochs=ds["epochs"], batch_size=ds["batch"], crop_size=(side, side), resize=RESIZE_PIL,
                      mix="cutmix", codec=c, temperature=t,
                      teacher={"arch": "convnet-d3", "mean": list(data["mean"]), "std": list(data["std"])},
                      sampler={"replay": "sre2l", "seed": 42 + seed, "batch_size": ds["batch"]},
                      augmentation={"scale": [0.08, 1.0], "ratio": [0.75, 4 / 3], "flip": 0.5, "cutmix": 1.0,
                                    "generator": "numpy PCG64", "seed": 1000 + seed},
                      **({"tail": tail} if c.tail_rank is not None else {}))
    return DLAWriter(path, num_classes=ds["classes"], image_shape=data["x"].shape[1:], mean=data["mean"],
                     std=data["std"], stream=spec, converter="benchmarks/stream_students.py", overwrite=True)


@torch.inference_mode()
def generate(ds: dict, data: dict, seed: int, t: float, folder: Path) -> dict:
    """Seed ``seed``'s records: the SRe2L folder (a) and the ladd streams ((b), and (b1) where its codec
    differs), from one pass of the teacher over SRe2L-made crops (module docstring). A codec with a tail
    gets its basis as ``ladd relabel`` fits it: from the float32 logits of the first ``TAIL_FIT_RECORDS``
    records, before the first batch is written (the batches until then are held). Returns the paths,
    codecs and bytes."""
    from ladd_format.stream import parse_stream_codec
    from ladd_format.stream.tail import TAIL_FIT_RECORDS, fit_tail_basis

    x, y, side = data["x"], data["y"], ds["side"]
    teacher = load_model(Path(data["teacher"]))
    mean = torch.tensor(data["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(data["std"]).view(1, 3, 1, 1)
    pils = pil_images(x)
    sre2l = folder / f"sre2l-seed{seed}"
    shutil.rmtree(sre2l, ignore_errors=True)
    codecs = stream_codecs(ds["classes"])
    paths = {cond: folder / f"stream-{cond}-seed{seed}.dla.h5" for cond in codecs}
    ranks = [parse_stream_codec(c).tail_rank for c in codecs.values()]
    fit_records = TAIL_FIT_RECORDS if any(r is not None for r in ranks) else 0
    rng = np.random.default_rng(1000 + seed)
    tar_bytes = 0
    held: list = []                          # (epoch, batch, float32 logits) not yet written
    writers: dict = {}
    with contextlib.ExitStack() as stack:    # a writer left by an error discards its file

        def open_writers() -> None:
            logits = np.concatenate([z for _, _, z in held])[:fit_records] if held else None
            for cond, codec in codecs.items():
                r = parse_stream_codec(codec).tail_rank
                tail = fit_tail_basis(logits, r) if r is not None else None
                w = stack.enter_context(stream_writer(paths[cond], ds, data, seed, t, codec, tail))
                w.append(x, y)
                writers[cond] = w

        def write_held() -> None:
            for e, batch, z in held:
                for w in writers.values():
                    w.append_stream(e, batch.image, batch.box, batch.flip, mix_partner=batch.partner,
                                    mix_box=batch.mix_box, logits=z)
            held.clear()

        seen = 0
        for e, order in enumerate(sampler_orders(len(x), ds["epochs"], 42 + seed)):
            for b, batch in enumerate(draw_epoch(order, side, side, ds["batch"], rng)):
                coords = torch.from_numpy((batch.box / side).astype(np.float32))
                crops = sre2l_crops(pils, coords, torch.from_numpy(batch.flip), batch.image.tolist(), side)
                crops = (crops - mean) / std
                crops = sre2l_cutmix(crops, torch.from_numpy(batch.partner), batch.rc)
                logits = teacher(crops).float()
                tar_bytes += write_sre2l_batch(sre2l / f"epoch_{e}" / f"batch_{b}.tar", batch, side, logits)
                held.append((e, batch, logits.numpy()))
                seen += len(batch.image)
                if not writers and seen >= fit_records:
                    open_writers()
                if writers:
                    write_held()
        if not writers:                      # fewer records than TAIL_FIT_RECORDS: fitted on all of them
            open_writers()
            write_held()
    out = {"sre2l": str(sre2l), "sre2l_bytes": tar_bytes, "codec": codecs["b"], "stream": str(paths["b"]),
           "stream_bytes": stream_zip_bytes(paths["b"])}
    if "b1" in codecs:
        out.update(codec_b1=codecs["b1"], stream_b1=str(paths["b1"]), stream_b1_bytes=stream_zip_bytes(paths["b1"]))
    return out


def stream_zip_bytes(path: Path) -> int:
    """The stream's bytes as ``ladd size`` counts them (spec 7: zip of its datasets as ``.npy`` members, a
    tail's included)."""
    from ladd_format.size import measure_file

    return int(measure_file(path, "zip").stream.bytes)


@torch.inference_mode()
def dense_labels(data: dict, t: float) -> np.ndarray:
    """The teacher's softmax at ``t`` on the 5 x 5 sub-images of D: float64 ``(M, 25, C)``."""
    from ladd_format.torch import subimages

    teacher = load_model(Path(data["teacher"]))
    x = torch.from_numpy(data["x"]).float() / 255
    x = (x - torch.tensor(data["mean"]).view(1, 3, 1, 1)) / torch.tensor(data["std"]).view(1, 3, 1, 1)
    box = geometry.boxes(x.shape[2], x.shape[3], N_GRID, R_GRID)
    out = []
    for start in range(0, len(x), 100):
        subs = subimages(x[start:start + 100], box).flatten(0, 1)
        z = teacher(subs).double() / t
        out.append(torch.softmax(z, -1).view(-1, N_GRID * N_GRID, z.shape[-1]).numpy())
    return np.concatenate(out)


def write_dense(ds: dict, data: dict, probs: np.ndarray, target_bytes: float, folder: Path) -> dict:
    """(e)'s D_LA: the candidate codec whose dense zip bytes come closest to ``target_bytes``."""
    from ladd_format import DenseSpec, DLAWriter
    from ladd_format.codecs import parse_codec
    from ladd_format.size import measure_arrays

    best = None
    for codec in DENSE_CANDIDATES[ds["classes"]]:
        c = parse_codec(codec)
        size = measure_arrays(data["x"], data["y"], c.encode(probs), ds["classes"], method="zip")
        dense = size.dla_bytes - size.base_bytes
        if best is None or abs(dense - target_bytes) < abs(best[1] - target_bytes):
            best = (codec, dense)
    codec, dense = best
    path = folder / "dense.dla.h5"
    with DLAWriter(path, num_classes=ds["classes"], image_shape=data["x"].shape[1:], mean=data["mean"],
                   std=data["std"], dense=DenseSpec(N_GRID, R_GRID, parse_codec(codec), labeler={"arch": "convnet-d3"}),
                   converter="benchmarks/stream_students.py", overwrite=True) as w:
        w.append(data["x"], data["y"], dense=probs.astype(np.float32))
    return {"path": str(path), "codec": codec, "dense_bytes": int(dense)}


# --------------------------------------------------------------------------- the students

def _kl(out: torch.Tensor, target: torch.Tensor, t: float) -> torch.Tensor:
    return F.kl_div(F.log_softmax(out / t, -1), target, reduction="batchmean")


#: how far the replay loader's labels may be from the numpy decode (StreamCodec.decode) to be used as they are
LABELS_ATOL = 1e-5


class NumpyLabels:
    """(b)'s loader where the replay loader's labels differ from the package's numpy decode (a replay loader
    that does not decode a stream's tail yet): the replay loader's inputs, each batch's labels from
    ``StreamReader.probs`` (the numpy path, the tail included), re-tempered to ``t`` as the loader would."""

    def __init__(self, loader, t: float | None):
        self.loader, self.t = loader, t

    def epoch(self, e: int):
        self.loader.set_epoch(e)
        stream = self.loader.stream
        for b in self.loader.batches():
            inputs, _, _ = self.loader.batch(int(b))
            yield inputs, torch.from_numpy(stream.probs(stream.read_batch(int(b)), self.t))


def make_replay_loader(path: str, t: float) -> tuple[object, str]:
    """A ladd condition's loader and the path its labels are decoded by: ``ladd_format.torch.replay.ReplayLoader``
    on the CPU (the stream's own kernel, the labels stored at :data:`STREAM_T` re-tempered to the student's
    ``t``) when its labels of the first batch agree with the numpy decode within :data:`LABELS_ATOL`
    (``"replay loader"``); else :class:`NumpyLabels` (``"numpy StreamReader"``)."""
    from ladd_format.torch.replay import ReplayLoader

    temperature = None if t == STREAM_T else t
    loader = ReplayLoader(path, device="cpu", temperature=temperature)
    stream = loader.stream
    first = int(loader.epoch_batches(0)[0])
    theirs = loader.batch(first).probs.numpy()
    ours = stream.probs(stream.read_batch(first), temperature)
    if np.abs(theirs - ours).max() <= LABELS_ATOL:
        return loader, "replay loader"
    return NumpyLabels(loader, temperature), "numpy StreamReader"


def train_student(job: dict) -> dict:
    """One student (``job``: condition, seed, settings, paths); its test accuracy."""
    torch.set_num_threads(1)
    ds, data, cond, seed, t = job["ds"], job["data"], job["cond"], job["seed"], job["t"]
    side, batch = ds["side"], ds["batch"]
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model("convnet-d3", num_classes=ds["classes"], image_size=side, width=ds["width"])
    opt = torch.optim.AdamW(model.parameters(), lr=job["lr"], weight_decay=job["wd"])
    epochs = ds["epochs"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * s / epochs)))
    y = torch.from_numpy(data["y"])
    mean = torch.tensor(data["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(data["std"]).view(1, 3, 1, 1)
    teacher = load_model(Path(data["teacher"])) if cond == "c" else None
    decoded_by = None
    if cond in ("a", "c", "d"):
        loader = SRe2LLoader(Path(job["sre2l"]), pil_images(data["x"]), side, batch, data["mean"], data["std"],
                             seed=42 + seed)
    elif cond in ("b", "b1"):
        loader, decoded_by = make_replay_loader(job["stream"], t)
    else:
        dense = np.load(job["dense_probs"]).astype(np.float64)
        if t != STREAM_T:                    # stored at T = 1, re-tempered as the replay loader does
            dense = dense ** (STREAM_T / t)
            dense /= dense.sum(-1, keepdims=True)
        dense = dense.astype(np.float32)
        xs = (torch.from_numpy(data["x"]).float() / 255 - mean) / std
        box = geometry.boxes(side, side, N_GRID, R_GRID)
        rng = np.random.default_rng(5000 + seed)
    model.train()
    for e in range(epochs):
        if cond in ("a", "b", "b1", "c", "d"):
            it = loader.epoch(e)
        else:
            it = dense_epoch(xs, dense, box, batch, rng)
        for item in it:
            if cond == "a":
                inputs, target = item["x"], torch.softmax(item["logits"] / t, -1)
            elif cond in ("b", "b1"):
                inputs, target = item
            elif cond == "c":
                inputs = item["x"]
                with torch.no_grad():
                    target = torch.softmax(teacher(inputs).float() / t, -1)
            elif cond == "d":
                inputs = item["x"]
                r1, c1, r2, c2 = (int(v) for v in item["bbox"])
                lam = 1.0 - (r2 - r1) * (c2 - c1) / (side * side)
                own = F.one_hot(y[item["index"]], ds["classes"]).float()
                target = lam * own + (1 - lam) * own[item["mix_index"]]
            else:
                inputs, target = item
            out = model(inputs)
            loss = _kl(out, target, 1.0 if cond == "d" else t)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    xt = (torch.from_numpy(data["xt"]).float() / 255 - mean) / std
    with torch.no_grad():
        pred = torch.cat([model(xt[i:i + 500]).argmax(-1) for i in range(0, len(xt), 500)])
    acc = float((pred.numpy() == data["yt"]).mean())
    return {"acc": acc, "seconds": time.perf_counter() - started, "labels_decoded_by": decoded_by}


def dense_epoch(xs: torch.Tensor, dense: np.ndarray, box: np.ndarray, batch: int, rng: np.random.Generator):
    """(e): every image once in a random order, one random sub-image each, its stored label."""
    from ladd_format.torch import subimages

    order = rng.permutation(len(xs))
    pick = rng.integers(0, len(box), len(xs))
    for start in range(0, len(xs), batch):
        idx, j = order[start:start + batch], pick[order[start:start + batch]]
        crops = torch.cat([subimages(xs[i:i + 1], box[k:k + 1]) [:, 0] for i, k in zip(idx.tolist(), j.tolist())])
        yield crops, torch.from_numpy(dense[idx, j])


def run_jobs(jobs: list[dict], workers: int) -> list[dict]:
    done = [0]
    t0 = time.perf_counter()

    def report(job, res):
        done[0] += 1
        log(f"  student {done[0]}/{len(jobs)}: {job['ds']['name']} ({job['cond']}) T={job['t']:g} seed {job['seed']}: "
            f"{100 * res['acc']:.2f}% ({res['seconds']:.0f} s; {time.perf_counter() - t0:.0f} s in all)")
    if workers <= 1:
        out = []
        for job in jobs:
            out.append(train_student(job))
            report(job, out[-1])
        return out
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(train_student, job): i for i, job in enumerate(jobs)}
        out = [None] * len(jobs)
        for fut in cf.as_completed(futures):
            i = futures[fut]
            out[i] = fut.result()
            report(jobs[i], out[i])
    return out


def measure(quick: bool, workers: int, only: tuple[str, ...] | None = None, temperature: float | None = None,
            datasets: tuple[str, ...] | None = None) -> dict:
    st = settings(quick)
    if temperature is not None:             # no sweep: every condition at this T
        st["temps"] = [temperature]
    if datasets:
        st["datasets"] = [ds for ds in st["datasets"] if ds["name"] in datasets]
    folder = WORK / ("students-quick" if quick else "students")
    folder.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    results = []
    for ds in st["datasets"]:
        name = ds["name"]
        t0 = time.perf_counter()
        data = dataset(ds)
        timing[f"{name}: teacher and data"] = time.perf_counter() - t0
        sub = folder / name
        sub.mkdir(exist_ok=True)
        # the records of each seed: SRe2L's folder (a) and the stream (b), labels at T = 1
        t0 = time.perf_counter()
        gens = {s: generate(ds, data, s, STREAM_T, sub) for s in range(st["seeds"])}
        timing[f"{name}: generate streams"] = time.perf_counter() - t0
        base = dict(ds=ds, data=data, lr=ds.get("lr", st["lr"]), wd=st["wd"])
        sweep_jobs = [dict(base, cond="c", seed=s, t=t, sre2l=gens[s]["sre2l"])
                      for t in st["temps"] for s in range(st["seeds"])]
        t0 = time.perf_counter()
        sweep = run_jobs(sweep_jobs, workers)
        timing[f"{name}: temperature sweep"] = time.perf_counter() - t0
        by_t = {t: [r["acc"] for r, j in zip(sweep, sweep_jobs) if j["t"] == t] for t in st["temps"]}
        best_t = max(st["temps"], key=lambda t: np.mean(by_t[t]))
        log(f"{name}: temperature sweep {({t: round(100 * np.mean(v), 2) for t, v in by_t.items()})} -> T = {best_t:g}")
        t0 = time.perf_counter()
        probs = dense_labels(data, STREAM_T)
        target = float(np.mean([g["stream_bytes"] for g in gens.values()]))     # (e)'s bytes follow (b)'s
        dense = write_dense(ds, data, probs, target, sub)
        from ladd_format.codecs import parse_codec

        c = parse_codec(dense["codec"])
        np.save(sub / "dense_probs.npy", c.decode(c.encode(probs), ds["classes"]).astype(np.float32))
        timing[f"{name}: dense labels"] = time.perf_counter() - t0
        conds = [c for c in CONDITIONS if (only is None or c in only) and (c != "b1" or "stream_b1" in gens[0])]
        jobs = [dict(base, cond=cond, seed=s, t=best_t, sre2l=gens[s]["sre2l"],
                     stream=gens[s]["stream_b1" if cond == "b1" else "stream"],
                     dense_probs=str(sub / "dense_probs.npy"))
                for cond in conds for s in range(st["seeds"]) if not (cond == "c")]
        t0 = time.perf_counter()
        res = run_jobs(jobs, workers)
        timing[f"{name}: students"] = time.perf_counter() - t0
        rows = {cond: [None] * st["seeds"] for cond in conds}
        secs = {cond: [] for cond in conds}
        decoded = {}
        for j, r in zip(jobs, res):
            rows[j["cond"]][j["seed"]] = r["acc"]
            secs[j["cond"]].append(r["seconds"])
            if r.get("labels_decoded_by"):
                decoded.setdefault(j["cond"], set()).add(r["labels_decoded_by"])
        if "c" in rows:
            for j, r in zip(sweep_jobs, sweep):
                if j["t"] == best_t:
                    rows["c"][j["seed"]] = r["acc"]
                    secs["c"].append(r["seconds"])
        results.append({"dataset": {k: v for k, v in ds.items()}, "m": len(data["x"]), "test": len(data["xt"]),
                        "temps": {str(t): v for t, v in by_t.items()}, "best_t": best_t,
                        "stream_codec": gens[0]["codec"],
                        "stream_bytes": [g["stream_bytes"] for g in gens.values()],
                        "stream_b1_codec": gens[0].get("codec_b1"),
                        "stream_b1_bytes": ([g["stream_b1_bytes"] for g in gens.values()] if "codec_b1" in gens[0]
                                            else None),
                        "labels_decoded_by": {k: sorted(v) for k, v in decoded.items()},
                        "sre2l_bytes": [g["sre2l_bytes"] for g in gens.values()],
                        "dense": {k: v for k, v in dense.items() if k != "path"},
                        "accuracies": rows, "seconds": {k: float(np.mean(v)) if v else None for k, v in secs.items()}})
    return {"settings": st, "workers": workers, "results": results, "timing": timing}


# --------------------------------------------------------------------------- rendering

def _delta(a, b) -> tuple[float, float]:
    d = 100 * (np.asarray(a) - np.asarray(b))
    return float(d.mean()), float(d.std())


def _dfmt(a, b) -> str:
    if a is None or b is None or None in a or None in b:
        return "-"
    m, s = _delta(a, b)
    return f"{m:+.2f} ± {s:.2f}"


def render(payload: dict) -> str:
    d = payload["data"]
    st = d["settings"]
    lines = [f"- Machine: {payload['machine']}, CPU only; {d['workers']} student processes of one thread",
             f"- Date: {payload['date']}; command: `{payload['command']}` (ran in "
             + ", ".join(f"{k} {v:.0f} s" for k, v in d["timing"].items()) + ")",
             f"- Students: ConvNet-D3, AdamW (learning rate: per data set), weight decay {st['wd']:g}, cosine per "
             "epoch, KL at the "
             f"temperature T (no T^2), seeds 0-{st['seeds'] - 1} paired (seed s: the same initial weights, the same "
             "stream s). Accuracy: top-1 on the test set, mean ± std over seeds (%); Δ: per-seed difference, mean ± "
             "std (points). The method is in the script's docstring.", ""]
    for r in d["results"]:
        ds = r["dataset"]
        sweep = ", ".join(f"T = {float(t):g}: {mean_std(v)}" for t, v in r["temps"].items())
        lines += [f"### {ds['name']} (C = {ds['classes']}): D = {r['m']} images of {ds['side']} px, {ds['epochs']} "
                  f"epochs of batches of {ds['batch']}, student width {ds['width']}, lr {ds.get('lr', st['lr']):g}, "
                  f"test {r['test']} images", "",
                  (f"- Temperature sweep, (c) teacher online: {sweep}; T = {r['best_t']:g} is used below."
                   if len(r["temps"]) > 1 else f"- Temperature: T = {r['best_t']:g} for every condition (no sweep)."),
                  f"- Bytes per image of D (zip, `ladd size`): (a) SRe2L's files "
                  f"{np.mean(r['sre2l_bytes']) / r['m']:,.0f} B (as written: pickles, no compression); (b) the "
                  + (f"stream (`{r['stream_codec']}`) {np.mean(r['stream_bytes']) / r['m']:,.0f} B" if r["stream_bytes"]
                     else "stream not measured")
                  + (f"; (b1) the stream (`{r['stream_b1_codec']}`) {np.mean(r['stream_b1_bytes']) / r['m']:,.0f} B"
                     if r.get("stream_b1_bytes") else "") + "; (e) dense labels "
                  f"`{r['dense']['codec']}` {r['dense']['dense_bytes'] / r['m']:,.0f} B "
                  "(the section-6 codec closest to (b)'s bytes).", "",
                  *decode_notes(r),
                  "| labels | accuracy | Δ vs (a) | Δ vs (c) | s per student |", "|---|---:|---:|---:|---:|"]
        acc = r["accuracies"]
        for cond, values in acc.items():
            if None in values:
                continue
            secs = r["seconds"].get(cond)
            lines.append(f"| {CONDITION_NAMES[cond]} | {mean_std(values)} | "
                         f"{'-' if cond == 'a' else _dfmt(values, acc.get('a'))} | "
                         f"{'-' if cond == 'c' else _dfmt(values, acc.get('c'))} | "
                         f"{'-' if secs is None else f'{secs:.0f}'} |")
        notes = [noise_note(acc, x, y) for x, y in (("b", "a"), ("b", "c"), ("b1", "a"), ("b", "b1"), ("e", "b"))]
        lines += [""] + [n for n in notes if n] + per_seed_lines(acc) + [""]
    return "\n".join(lines).rstrip()


def decode_notes(r: dict) -> list[str]:
    """Which path decoded each ladd condition's labels, and (b1)'s absence where it equals (b); then a blank."""
    lines = []
    if r.get("stream_b1_codec") is None and "stream_b1_codec" in r:
        lines.append(f"- (b1) is not trained: at C = {r['dataset']['classes']} spec 1.2's default fell back to "
                     f"`{r['stream_codec']}`, (b)'s codec.")
    for cond, paths in sorted(r.get("labels_decoded_by", {}).items()):
        if paths != ["replay loader"]:
            lines.append(f"- ({cond})'s labels: decoded by {' and '.join(paths)} (the replay loader's labels differed "
                         f"from the package's numpy decode by more than {LABELS_ATOL:g}; its inputs are used).")
    return lines + [""] if lines else []


def per_seed_lines(acc: dict) -> list[str]:
    """Per-seed differences (points) of the ladd conditions against (a) and (c)."""
    out = []
    for x in ("b", "b1"):
        if x not in acc or None in acc[x]:
            continue
        for y in ("a", "c"):
            if y in acc and None not in acc[y]:
                d = 100 * (np.asarray(acc[x]) - np.asarray(acc[y]))
                out.append(f"- ({x}) − ({y}) per seed: " + ", ".join(f"{v:+.2f}" for v in d) + " points.")
    return out


def paired_ci(a, b) -> tuple[float, float] | None:
    """The 95% confidence interval (points) of the mean per-seed difference a - b (Student's t, n - 1
    degrees of freedom), or None with fewer than two seeds."""
    from scipy.stats import t as student_t

    d = 100 * (np.asarray(a, np.float64) - np.asarray(b, np.float64))
    if len(d) < 2:
        return None
    half = float(student_t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return float(d.mean()) - half, float(d.mean()) + half


def noise_note(acc: dict, x: str, y: str) -> str | None:
    """One line: the per-seed difference x - y, its 95% interval, and whether it is within paired-seed noise
    (the interval holds 0)."""
    if x not in acc or y not in acc or None in acc[x] or None in acc[y]:
        return None
    ci = paired_ci(acc[x], acc[y])
    if ci is None:
        return None
    m, _ = _delta(acc[x], acc[y])
    verdict = "within paired-seed noise" if ci[0] <= 0 <= ci[1] else "beyond paired-seed noise"
    return (f"- ({x}) − ({y}): {m:+.2f} points, 95% interval of the paired mean {ci[0]:+.2f} to {ci[1]:+.2f} "
            f"({len(acc[x])} seeds, Student's t): {verdict}.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings, print only")
    ap.add_argument("--workers", type=int, default=None, help="student processes (default: the usable cores)")
    ap.add_argument("--only", default=None, help="conditions to train, e.g. a,c,d (default all)")
    ap.add_argument("--temperature", type=float, default=None,
                    help="train every condition at this T, no sweep; saved as its own section stream_students_t<T>")
    ap.add_argument("--datasets", default=None, help="data sets to run, e.g. digits-1000 (default all)")
    add_output_args(ap)
    args = ap.parse_args(argv)
    out = Output.from_args(args)
    from ladd_format.train.pool import available_cores

    workers = args.workers or available_cores()
    only = tuple(args.only.split(",")) if args.only else None
    datasets = tuple(args.datasets.split(",")) if args.datasets else None
    name, title = NAME, TITLE
    if args.temperature is not None:
        name = f"{NAME}_t{args.temperature:g}".replace(".", "")
        title = TITLE.replace("(digits", f"at T = {args.temperature:g} (digits")
    return out.publish(name, title, render, measure=lambda: measure(args.quick, workers, only, args.temperature,
                                                                        datasets))


if __name__ == "__main__":
    sys.exit(main())
