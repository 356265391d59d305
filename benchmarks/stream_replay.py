"""Relabel streams replayed: exact crops, the loader's speed against SRe2L's files, and its memory.

Usage::

    .venv/bin/python benchmarks/stream_replay.py                # ~10 min on 2 CPU cores; saves
                                                                # results/stream_replay.json and writes
                                                                # benchmarks/RESULTS/stream-replay.md
    .venv/bin/python benchmarks/stream_replay.py --render-only  # re-render from the saved JSON
    .venv/bin/python benchmarks/stream_replay.py --quick        # tiny settings, prints only

Three measurements (the teacher is the digits-1000 labeler of ``stream_codecs.py``, cached under
benchmarks/_work/stream):

1. **Exact replay.**
   - ``ladd relabel`` (the library's ``relabel``, one process, CPU) generates a stream from a set of digits-1000
     composites; the crops its teacher labels are recorded at the call of ``teacher_logits`` (the function
     is wrapped for the run, nothing else changed); the replay loader (``ReplayLoader.crops``, the stream's own
     kernel) rebuilds every batch, and every float32 value is compared bit for bit (count of values that
     differ; must be 0). For both kernels (``bilinear-antialias``, ``pil-bilinear``), on 24 px images cropped
     to 24 px (every crop grows) and on 96 px images cropped to 24 px (most crops shrink).
   - A converted SRe2L folder: SRe2L's image tree (``new???/class???_id???.jpg``, JPEG) and its relabel folder
     written as SRe2L writes them (``tests/_upstream.py``: the sampler seeded 42 over ImageFolder's order,
     ``get_params`` boxes as float32 fractions, numpy-1-era pickles), converted with ``ladd convert sre2l EXP
     --relabel DIR``. For every record, SRe2L's own crop (its loader: ``torch.load``, the PIL image of the
     JPEG, ``resized_crop`` from the stored fractions, flip, ``to_tensor``, CutMix with the stored box) against
     the loader's ``pil-bilinear`` crop (tolerance 0: the same Pillow calls on the same decoded pixels) and its
     ``bilinear-antialias`` crop (the device kernel; how far it is from Pillow's, no tolerance claimed).
2. **Loader speed** at ImageNet-1K IPC 10 shape: one epoch of 10,000 records at 224 px in batches of 1,024,
   from a file of 10,000 images of 224 x 224 (digits-1000 composites upsampled, uint8) with the default codec
   (``default_stream_codec(1000)``: top-5 uint8 and a rank-24 tail, the basis fitted on the first 4,096 records'
   logits as the writer does), and the same epoch written as SRe2L's ten ``batch_b.tar`` files (float16 logits).
   Timed in one run, each the median of ``repeats`` passes after a warm-up pass (files in the page cache):
   - SRe2L: ``torch.load`` of the ten files (``weights_only=False``, as its torch read them); and with the labels
     made probabilities as its student's loss makes them (``softmax(logits.float() / T)``);
   - stream: ``StreamReader.read_batch`` of the epoch's batches (every dataset's digest checked); and with the
     labels decoded to float32 (n, 1000) probabilities (``decode_on_device`` on the CPU, the tail in float64) --
     the file opened once before (its open is timed apart);
   - with crops, ``crop_repeats`` rounds, the three loaders in turn within a round (a change of load on the
     shared machine falls on all three): the stream's ``ReplayLoader.epoch(0)`` (images read, crops, flips,
     CutMix, normalisation, labels) with its default gathers (``GATHER_BYTES`` of images a read); the same with
     each batch's images gathered in one read (``GATHER_BYTES`` unbounded: the loader before chunked gathers);
     and SRe2L's loader on PIL images already decoded in memory (no JPEG decoding, which favours SRe2L):
     ``torch.load``, ``resized_crop``, flip, ``to_tensor``, normalise, CutMix.
   The labels of the 224 px epoch are the teacher's on each crop downsampled to 24 px.
3. **Peak memory**: fresh processes that import only what they name (``python -c``), peak RSS ``VmHWM`` of
   ``/proc/self/status`` (not ``ru_maxrss``, which Linux keeps across ``execve``):
   - the floors: ``import torch``; ``import torch`` and ``ladd_format.torch.replay``; ``import torch`` and one
     float32 batch of inputs (B x 3 x 224 x 224, written) at B = 1,024 and B = 256 (the largest power of two
     whose floor stays under 1 GB);
   - the replay loader (crops included, the default ``reuse_inputs=True``) on the 224 px file above: E = 0
     (open only) and 1, and E = 1 with ``reuse_inputs=False``; on a 224 px file of the same images with a
     B = 256 stream of random logits: E = 1 and 3; the loader's share is its peak minus the floor at its B;
   - a 24 px stream of 10,000 images x 100 epochs, B = 1,024 (random logits through the default codec, as the
     memory does not depend on them), E = 0 (open only), 1, 10, 100: whether the peak grows with E.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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
from stream_common import (D1K_MEAN, D1K_STD, IMAGENET, WORK, Digits1000, composites, digits1000_teacher,  # noqa: E402
                           load_model, load_sre2l_batch, log, sre2l_crops, sre2l_cutmix)

NAME = KEY = "stream_replay"
TITLE = "## Relabel streams replayed: exact crops, loader speed against SRe2L's files, peak memory"


def settings(quick: bool) -> dict:
    if quick:
        return dict(teacher_steps=15, exact_images=64, exact_epochs=2, exact_batch=16, big_side=48,
                    convert=dict(classes=4, ipc=3, side=48, crop=32, epochs=2, batch=4),
                    speed=dict(images=300, side=64, batch=128, repeats=2, crop_repeats=1),
                    rss=dict(images=300, epochs=3, batch=128, runs=[0, 1, 3], big=True, small_batch=32,
                             small_epochs=2))
    return dict(teacher_steps=800, exact_images=1000, exact_epochs=3, exact_batch=256, big_side=96,
                convert=dict(classes=16, ipc=4, side=96, crop=64, epochs=3, batch=16),
                speed=dict(images=IMAGENET["images"], side=IMAGENET["size"], batch=IMAGENET["batch"], repeats=5,
                           crop_repeats=3),
                rss=dict(images=10_000, epochs=100, batch=1024, runs=[0, 1, 10, 100], big=True, small_batch=256,
                         small_epochs=3))


def write_set(path: Path, images: np.ndarray, labels: np.ndarray, stream=None, stream_batches=None) -> Path:
    """A 1.0-style set (uint8 images, digits-1000 normalisation), with a stream when given."""
    from ladd_format import DLAWriter

    with DLAWriter(path, num_classes=1000, image_shape=images.shape[1:], mean=D1K_MEAN, std=D1K_STD,
                   stream=stream, converter="benchmarks/stream_replay.py", overwrite=True) as w:
        for start in range(0, len(images), 1000):
            w.append(images[start:start + 1000], labels[start:start + 1000])
        for e, b, stored in (stream_batches or ()):
            w.append_stream(e, b.image, b.box, b.flip, mix_partner=b.mix_partner, mix_box=b.mix_box, stored=stored)
    return path


def upsample(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 images resized to ``side`` px (bilinear), in blocks."""
    out = np.empty((len(images), 3, side, side), np.uint8)
    for start in range(0, len(images), 500):
        x = torch.from_numpy(images[start:start + 500]).float()
        y = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        out[start:start + 500] = y.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


# --------------------------------------------------------------------------- 1. exact replay

def relabel_recorded(source: Path, teacher: Path, out: Path, resize: str, st: dict) -> list[torch.Tensor]:
    """``ladd relabel``'s pass on ``source``, the crops its teacher labelled recorded in call order."""
    import ladd_format.labeler.relabel_pass as rp
    from ladd_format.relabel_config import RelabelConfig

    recorded: list[torch.Tensor] = []
    original = rp.teacher_logits

    def recording(t, crops01, *args, **kwargs):
        recorded.append(crops01.detach().to("cpu", copy=True))
        return original(t, crops01, *args, **kwargs)

    config = RelabelConfig(epochs=st["exact_epochs"], batch_size=st["exact_batch"], crop_size=24, resize=resize,
                           device="cpu", overwrite=True)
    rp.teacher_logits = recording
    try:
        rp.relabel(source, teacher, out, config)
    finally:
        rp.teacher_logits = original
    return recorded


def exact_relabel(st: dict, folder: Path, teacher: Path) -> list[dict]:
    from ladd_format.spec import STREAM_RESIZES
    from ladd_format.torch.replay import ReplayLoader

    images, labels = composites(Digits1000(), 1, "train", seed=5)
    images, labels = images[:st["exact_images"]], labels[:st["exact_images"]]
    rows = []
    for side in (24, st["big_side"]):
        src = write_set(folder / f"exact-src-{side}.dla.h5", images if side == 24 else upsample(images, side), labels)
        for resize in STREAM_RESIZES:
            out = folder / f"exact-{side}-{resize}.dla.h5"
            recorded = relabel_recorded(src, teacher, out, resize, st)
            differ = values = 0
            with ReplayLoader(out, device="cpu") as loader:
                batches = loader.stream.num_batches
                for b in range(batches):
                    got = loader.crops(b).contiguous()
                    want = recorded[b].contiguous()
                    if got.shape != want.shape or got.dtype != want.dtype:
                        raise SystemExit(f"batch {b}: the loader's crops are {tuple(got.shape)} {got.dtype}, the "
                                         f"teacher's {tuple(want.shape)} {want.dtype}")
                    differ += int((got.view(torch.int32) != want.view(torch.int32)).sum())
                    values += want.numel()
            if len(recorded) != batches:
                raise SystemExit(f"the teacher was called {len(recorded)} times for {batches} batches")
            rows.append({"side": side, "crop": 24, "resize": resize, "batches": batches,
                         "records": batches and sum(len(r) for r in recorded), "values": values, "differ": differ})
            log(f"  exact replay {side} px -> 24, {resize}: {differ} of {values:,} values differ")
    return rows


def exact_convert(st: dict, folder: Path) -> dict:
    """A converted SRe2L folder: the loader's crops against SRe2L's own crop of the same JPEG."""
    from click.testing import CliRunner
    from PIL import Image
    from torchvision.datasets import ImageFolder

    from ladd_cli.main import main as ladd
    from ladd_format.spec import RESIZE_ANTIALIAS, RESIZE_PIL
    from ladd_format.torch.replay import ReplayLoader
    sys.path.insert(0, str(ROOT / "tests"))
    from _upstream import write_relabel_folder, write_sre2l_images

    c = st["convert"]
    root = folder / "convert"
    shutil.rmtree(root, ignore_errors=True)
    exp, fkd, out = root / "exp", root / "fkd", root / "set.dla.h5"
    write_sre2l_images(exp, classes=tuple(range(c["classes"])), ipc=c["ipc"], side=c["side"])
    write_relabel_folder(fkd, batch_size=c["batch"], epochs=c["epochs"], classes=c["classes"], mix="cutmix",
                         numpy1=True, crop=c["crop"], images=exp)
    result = CliRunner().invoke(ladd, ["convert", "sre2l", str(exp), "--relabel", str(fkd), "--crop-size",
                                       str(c["crop"]), "-o", str(out)])
    if result.exit_code != 0:
        raise SystemExit(f"ladd convert sre2l failed: {result.output.strip()}")
    samples = ImageFolder(str(exp)).samples
    pils = [Image.open(p).convert("RGB") for p, _ in samples]           # ImageFolder's loader
    from stream_common import sampler_orders

    orders = list(sampler_orders(len(pils), c["epochs"], 42))
    stats = {}
    for kernel in (RESIZE_PIL, RESIZE_ANTIALIAS):
        worst, total, count, exact = 0.0, 0.0, 0, 0
        records = 0
        with ReplayLoader(out, device="cpu", kernel=kernel) as loader:
            for e in range(c["epochs"]):
                for j, b in enumerate(loader.epoch_batches(e)):
                    coords, flip, index, _lam, bbox, _logits = load_sre2l_batch(fkd / f"epoch_{e}" / f"batch_{j}.tar")
                    slots = orders[e][j * c["batch"]:(j + 1) * c["batch"]].tolist()
                    theirs = sre2l_cutmix(sre2l_crops(pils, coords, flip, slots, c["crop"]), index, bbox)
                    ours = loader.crops(int(b))
                    diff = (ours - theirs).abs()
                    worst = max(worst, float(diff.max()))
                    total += float(diff.sum())
                    count += diff.numel()
                    exact += int((diff == 0).sum())
                    records += len(slots)
        stats[kernel] = {"max_abs": worst, "mean_abs": total / count, "values": count, "equal": exact,
                         "max_abs_255": worst * 255, "records": records}
        log(f"  converted SRe2L folder, {kernel}: max |diff| {worst:.3g} ({worst * 255:.2f} / 255)")
    return {"images": len(pils), "side": c["side"], "crop": c["crop"], "epochs": c["epochs"], "batch": c["batch"],
            "kernels": stats}


# --------------------------------------------------------------------------- 2. loader speed

def speed_files(st: dict, folder: Path, teacher: Path) -> tuple[Path, Path, dict]:
    """The 224 px one-epoch stream (default codec) and the same epoch as SRe2L's batch files."""
    from ladd_format.stream import StreamSpec, default_stream_codec
    from ladd_format.stream.draws import AugmentParams, StreamDraws
    from ladd_format.stream.tail import TAIL_FIT_RECORDS, fit_tail_basis
    from ladd_format.torch.stream_crops import crop_batch
    from stream_common import Batch, write_sre2l_batch

    sp = st["speed"]
    side, m = sp["side"], sp["images"]
    base, labels = composites(Digits1000(), -(-m // 1000), "train", seed=5)
    images = upsample(base[:m], side)
    labels = labels[:m]
    model = load_model(teacher)
    draws = StreamDraws(0, m, (side, side), sp["batch"], (side, side), AugmentParams())
    codec = default_stream_codec(1000)
    sampler, augmentation = draws.describe()
    mean = torch.tensor(D1K_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(D1K_STD).view(1, 3, 1, 1)
    sre2l = folder / "speed-sre2l"
    shutil.rmtree(sre2l, ignore_errors=True)
    batches, orders = [], []
    with torch.inference_mode():
        for j, b in enumerate(draws.epoch(0)):
            x = torch.from_numpy(images[b.image]).float() / 255
            crops = crop_batch(x, b.box, b.flip, (side, side), mix="cutmix", mix_partner=b.mix_partner,
                               mix_box=b.mix_box)
            small = F.interpolate(crops, size=(24, 24), mode="bilinear", align_corners=False, antialias=True)
            logits = model((small - mean) / std).float()
            t, left, h, w = (int(v) for v in b.mix_box)
            rc = [t, left, t + h, left + w]
            write_sre2l_batch(sre2l / "epoch_0" / f"batch_{j}.tar", Batch(b.image, b.box, b.flip, b.mix_partner, rc, 0.5),
                              side, logits)
            batches.append((b, logits.numpy()))
            orders.append(b.image)
    # the writer's basis: the first TAIL_FIT_RECORDS records' logits in stream order (spec 10)
    tail = (fit_tail_basis(np.concatenate([z for _, z in batches])[:TAIL_FIT_RECORDS], codec.tail_rank)
            if codec.tail_rank else None)
    spec = StreamSpec(epochs=1, batch_size=sp["batch"], crop_size=(side, side), mix="cutmix", codec=codec,
                      teacher={"arch": "convnet-d3", "mean": list(D1K_MEAN), "std": list(D1K_STD)},
                      sampler=sampler, augmentation=augmentation, tail=tail)
    path = write_set(folder / "speed.dla.h5", images, labels, spec,
                     [(0, b, codec.encode_logits(z, 1.0, tail=tail)) for b, z in batches])
    r = st["rss"]
    small = random_logit_stream(folder / f"speed-b{r['small_batch']}.dla.h5", images, labels, r["small_batch"],
                                r["small_epochs"])
    return path, sre2l, {"images": m, "side": side, "batch": sp["batch"], "records": m, "files": len(orders),
                         "sre2l_bytes": sum(p.stat().st_size for p in (sre2l / "epoch_0").iterdir()),
                         "order": np.concatenate(orders), "codec": codec.label, "small_path": small}


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each of ``fns`` (no warm-up), ``repeats`` rounds, the functions in turn within a round,
    so that a change of machine load falls on all of them."""
    out = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t)
    return out


def timed(fn, repeats: int, warm: bool = True) -> list[float]:
    if warm:
        fn()                                     # warm-up: the files in the page cache, lazy imports done
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def loader_speed(st: dict, folder: Path, teacher: Path) -> dict:
    from ladd_format.reader import open_dla
    from ladd_format.torch import replay as replay_module
    from ladd_format.torch.replay import ReplayLoader, decode_on_device
    from stream_common import pil_images

    sp = st["speed"]
    t0 = time.perf_counter()
    path, sre2l, info = speed_files(st, folder, teacher)
    made = time.perf_counter() - t0
    files = sorted((sre2l / "epoch_0").iterdir(), key=lambda p: int(p.stem.split("_")[1]))
    order = info.pop("order")

    def sre2l_read():
        for p in files:
            load_sre2l_batch(p)

    def sre2l_labels():                  # the labels as the student's loss takes them: softmax(logits / T)
        for p in files:
            torch.softmax(load_sre2l_batch(p)[5].float() / temp, -1)

    t = time.perf_counter()
    f = open_dla(path)
    s = f.stream
    opened = time.perf_counter() - t
    codec, c, temp = s.spec.codec, s.num_classes, s.spec.temperature

    def stream_records():
        for b in s.epoch_batches(0):
            s.read_batch(b)

    def stream_read():
        for b in s.epoch_batches(0):
            rec = s.read_batch(b)
            decode_on_device(codec, rec.labels, c, "cpu", None, temp, s.tail)

    loader = ReplayLoader(path, device="cpu")

    def stream_crops():
        for _ in loader.epoch(0):
            pass

    def whole_batch_gather():          # the loader before it gathered images GATHER_BYTES at a time
        saved = replay_module.GATHER_BYTES
        replay_module.GATHER_BYTES = 1 << 62
        try:
            stream_crops()
        finally:
            replay_module.GATHER_BYTES = saved

    with open_dla(path) as g:
        pils = pil_images(g.images())

    def sre2l_crops_epoch():
        mean = torch.tensor(D1K_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(D1K_STD).view(1, 3, 1, 1)
        for j, p in enumerate(files):
            coords, flip, index, _lam, bbox, logits = load_sre2l_batch(p)
            x = (sre2l_crops(pils, coords, flip, order[j * sp["batch"]:(j + 1) * sp["batch"]].tolist(), sp["side"])
                 - mean) / std
            sre2l_cutmix(x, index, bbox)
            logits.float()

    try:
        out = {"made_seconds": made, "open_seconds": opened, **info, "threads": torch.get_num_threads(),
               "sre2l_read": timed(sre2l_read, sp["repeats"]), "sre2l_labels": timed(sre2l_labels, sp["repeats"]),
               "stream_records": timed(stream_records, sp["repeats"]), "stream_read": timed(stream_read, sp["repeats"]),
               "gather_bytes": replay_module.GATHER_BYTES,
               **interleaved({"stream_crops": stream_crops, "stream_crops_whole_gather": whole_batch_gather,
                              "sre2l_crops": sre2l_crops_epoch}, sp["crop_repeats"])}
    finally:
        loader.close()
        f.close()
    out["stream_bytes"] = path.stat().st_size
    log(f"  speed: SRe2L torch.load {np.median(out['sre2l_read']):.3f} s, stream records and labels "
        f"{np.median(out['stream_read']):.3f} s, stream with crops {np.median(out['stream_crops']):.2f} s, SRe2L with "
        f"crops {np.median(out['sre2l_crops']):.2f} s")
    return out, path


# --------------------------------------------------------------------------- 3. peak memory

def random_logit_stream(path: Path, images: np.ndarray, labels: np.ndarray, batch: int, epochs: int) -> Path:
    """A stream of ``epochs`` epochs of ``batch``-record batches over ``images`` (SRe2L-style draws, CutMix),
    labelled with random logits through the default codec (the memory does not depend on the values; the
    tail basis fitted on the first records' logits, as the writer does)."""
    from ladd_format.stream import StreamSpec, default_stream_codec
    from ladd_format.stream.draws import AugmentParams, StreamDraws
    from ladd_format.stream.tail import TAIL_FIT_RECORDS, fit_tail_basis

    side = images.shape[-1]
    draws = StreamDraws(0, len(images), (side, side), batch, (side, side), AugmentParams())
    codec = default_stream_codec(1000)
    sampler, augmentation = draws.describe()
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((TAIL_FIT_RECORDS, 1000), np.float32) * 3
    tail = fit_tail_basis(logits, codec.tail_rank) if codec.tail_rank else None
    spec = StreamSpec(epochs=epochs, batch_size=batch, crop_size=(side, side), mix="cutmix", codec=codec,
                      teacher={"arch": "random logits"}, sampler=sampler, augmentation=augmentation, tail=tail)

    def batches():
        for e in range(epochs):
            for b in draws.epoch(e):
                z = rng.standard_normal((len(b), 1000), np.float32) * 3
                yield e, b, codec.encode_logits(z, 1.0, tail=tail)
    return write_set(path, images, labels, spec, batches())


def rss_file(st: dict, folder: Path) -> Path:
    """The 24 px, ``epochs``-epoch stream of the memory runs (random logits, default codec)."""
    r = st["rss"]
    images, labels = composites(Digits1000(), -(-r["images"] // 1000), "train", seed=5)
    return random_logit_stream(folder / "rss.dla.h5", images[:r["images"]], labels[:r["images"]], r["batch"],
                               r["epochs"])


#: the child processes' programs: only what they name is imported (not this script's imports), and each
#: prints its peak RSS (``VmHWM``, KiB) as JSON
_PEAK = ("import json, re; print(json.dumps({'maxrss_kib': int(re.search(r'VmHWM:\\s+(\\d+)', "
         "open('/proc/self/status').read()).group(1)), **out}))")
FLOOR_PROGRAMS = {
    "torch": "import torch\nout = {}\n",
    "imports": "import torch\nimport ladd_format.torch.replay\nout = {}\n",
    "batch": "import sys, torch\nx = torch.empty((int(sys.argv[1]), 3, int(sys.argv[2]), int(sys.argv[2])))\n"
             "x.fill_(0.5)\nout = {}\n",
}
REPLAY_PROGRAM = """import sys, time
from ladd_format.torch.replay import ReplayLoader
path, epochs, reuse = sys.argv[1], int(sys.argv[2]), bool(int(sys.argv[3]))
t = time.perf_counter()
records = 0
with ReplayLoader(path, device="cpu", wrap=True, reuse_inputs=reuse) as loader:
    for e in range(epochs):
        for inputs, probs in loader.epoch(e):
            records += len(inputs)
out = {"records": records, "seconds": time.perf_counter() - t}
"""


def child(program: str, *args) -> dict:
    """Run ``program`` (Python source) in a fresh interpreter with ``args``; its JSON line."""
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    done = subprocess.run([sys.executable, "-c", program + _PEAK, *map(str, args)], stdout=subprocess.PIPE,
                          text=True, check=True, cwd=ROOT, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_rss(path: Path, epochs: int, reuse: bool = True) -> dict:
    return child(REPLAY_PROGRAM, path, epochs, int(reuse))


def memory(st: dict, folder: Path, big: Path | None, small: Path | None) -> dict:
    """Peak RSS of fresh processes: the floors (torch; torch and the loader's imports; torch and one batch
    of inputs at B and at the small B), the 224 px replays (B = speed batch: the default and
    ``reuse_inputs=False``; the small B: 1 and ``small_epochs`` epochs) and the 24 px replays over E epochs."""
    r, side = st["rss"], st["speed"]["side"]
    floors = {"torch": child(FLOOR_PROGRAMS["torch"])["maxrss_kib"],
              "imports": child(FLOOR_PROGRAMS["imports"])["maxrss_kib"]}
    for b in (st["speed"]["batch"], r["small_batch"]):
        floors[f"batch_{b}"] = child(FLOOR_PROGRAMS["batch"], b, side)["maxrss_kib"]
    log("  floors (MiB): " + ", ".join(f"{k} {v / 1024:.0f}" for k, v in floors.items()))
    runs = []
    if big is not None:
        for e, reuse in ((0, True), (1, True), (1, False)):
            out = peak_rss(big, e, reuse)
            runs.append({"file": f"{side} px", "batch": st["speed"]["batch"], "epochs": e, "reuse": reuse, **out})
            log(f"  peak RSS, {e} epochs of the {side} px stream, B = {st['speed']['batch']}, reuse {reuse}: "
                f"{out['maxrss_kib'] / 1024:.0f} MiB")
    if small is not None:
        for e in (1, r["small_epochs"]):
            out = peak_rss(small, e)
            runs.append({"file": f"{side} px", "batch": r["small_batch"], "epochs": e, "reuse": True, **out})
            log(f"  peak RSS, {e} epochs of the {side} px stream, B = {r['small_batch']}: {out['maxrss_kib'] / 1024:.0f} MiB")
    t0 = time.perf_counter()
    path = rss_file(st, folder)
    made = time.perf_counter() - t0
    for e in r["runs"]:
        out = peak_rss(path, e)
        runs.append({"file": "24 px", "batch": r["batch"], "epochs": e, "reuse": True, **out})
        log(f"  peak RSS, {e} epochs of the 24 px stream: {out['maxrss_kib'] / 1024:.0f} MiB ({out['seconds']:.0f} s)")
    return {"made_seconds": made, "images": r["images"], "stream_epochs": r["epochs"], "batch": r["batch"],
            "file_bytes": path.stat().st_size, "runs": runs, "floors": floors, "side": side,
            "batch_input_bytes": {b: b * 3 * side ** 2 * 4 for b in (st["speed"]["batch"], r["small_batch"])}}


#: torch threads of every timing and replay: one, so that the stream's torch kernels and SRe2L's Pillow
#: calls each use one core, and a busy second core (the machine is shared) does not stall torch's
#: parallel regions (measured: one epoch of 300 crops of 64 px took 0.04 s on one thread, 2.0 s on two
#: with the other core busy)
THREADS = 1


def measure(quick: bool) -> dict:
    torch.set_num_threads(THREADS)
    st = settings(quick)
    folder = WORK / ("replay-quick" if quick else "replay")
    folder.mkdir(parents=True, exist_ok=True)
    timing = {}
    teacher, _ = digits1000_teacher(st["teacher_steps"])
    t = time.perf_counter()
    exact = exact_relabel(st, folder, teacher)
    timing["exact replay (ladd relabel)"] = time.perf_counter() - t
    t = time.perf_counter()
    converted = exact_convert(st, folder)
    timing["exact replay (converted SRe2L)"] = time.perf_counter() - t
    t = time.perf_counter()
    speed, big = loader_speed(st, folder, teacher)
    small = Path(speed.pop("small_path"))
    timing["loader speed"] = time.perf_counter() - t
    t = time.perf_counter()
    mem = memory(st, folder, big if st["rss"]["big"] else None, small if st["rss"]["big"] else None)
    timing["peak memory"] = time.perf_counter() - t
    if not quick:
        shutil.rmtree(folder, ignore_errors=True)
    return {"settings": st, "exact": exact, "converted": converted, "speed": speed, "memory": mem, "timing": timing}


# --------------------------------------------------------------------------- rendering

def _med(v) -> float:
    return float(np.median(v))


def _rng(v, scale=1.0, fmt="{:.3f}") -> str:
    return f"{fmt.format(_med(v) * scale)} ({fmt.format(min(v) * scale)}-{fmt.format(max(v) * scale)})"


def render(payload: dict) -> str:
    d = payload["data"]
    st, sp, mem, conv = d["settings"], d["speed"], d["memory"], d["converted"]
    lines = [f"- Machine: {payload['machine']}, CPU only",
             f"- Date: {payload['date']}; command: `{payload['command']}` (ran in "
             + ", ".join(f"{k} {v:.0f} s" for k, v in d["timing"].items()) + ")",
             "- Method: the script's docstring.", "",
             "### Exact replay", "",
             f"`ladd relabel` ({st['exact_images']} digits-1000 composites, {st['exact_epochs']} epochs of batches of "
             f"{st['exact_batch']}, the digits-1000 teacher, CPU): the crops its teacher labelled against "
             "`ReplayLoader.crops` of the written file, float32 bit patterns compared.", "",
             "| images | crop | kernel | batches | records | float32 values | values that differ |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in d["exact"]:
        lines.append(f"| {r['side']} px | {r['crop']} px | `{r['resize']}` | {r['batches']} | {r['records']:,} | "
                     f"{r['values']:,} | {r['differ']} |")
    lines += ["", f"Converted SRe2L folder ({conv['images']} JPEG images of {conv['side']} px, {conv['epochs']} epochs "
              f"of batches of {conv['batch']}, crops of {conv['crop']} px, CutMix; `ladd convert sre2l EXP --relabel "
              "DIR`): every record's crop from the loader against SRe2L's own crop of the same JPEG (0..1 scale).", "",
              "| loader kernel | records | max abs difference | (in 1/255) | mean abs difference | values equal | tolerance |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for kernel, s in conv["kernels"].items():
        tol = "0 (the same Pillow calls)" if kernel == "pil-bilinear" else "none claimed (the device kernel)"
        lines.append(f"| `{kernel}` | {s['records']:,} | {s['max_abs']:.3g} | {s['max_abs_255']:.2f} | "
                     f"{s['mean_abs']:.3g} | {100 * s['equal'] / s['values']:.2f}% | {tol} |")
    ratio_records = _med(sp["sre2l_read"]) / _med(sp["stream_records"])
    ratio_read = _med(sp["sre2l_labels"]) / _med(sp["stream_read"])
    ratio_crops = _med(sp["sre2l_crops"]) / _med(sp["stream_crops"])
    ratio_whole = _med(sp["sre2l_crops"]) / _med(sp["stream_crops_whole_gather"])
    lines += ["", "### Loader speed", "",
              f"One epoch of {sp['records']:,} records at {sp['side']} px in batches of {sp['batch']:,} (C = 1000, "
              f"codec `{sp['codec']}`), {sp['threads']} torch thread{'' if sp['threads'] == 1 else 's'}; seconds per epoch, median (min-max) of "
              f"{len(sp['stream_read'])} passes after a warm-up; with crops, {len(sp['stream_crops'])} rounds of the "
              f"three loaders in turn (no warm-up). SRe2L's {sp['files']} files: {sp['sre2l_bytes'] / 1e6:,.1f} MB; "
              f"the stream file (images included): {sp['stream_bytes'] / 1e6:,.1f} MB; opening it (`open_dla` + "
              f"`.stream`): {sp['open_seconds']:.3f} s, once per run.", "",
              "| what is read | seconds per epoch | records / s | speed vs SRe2L |", "|---|---:|---:|---:|",
              f"| SRe2L: `torch.load` of the epoch's batch files | {_rng(sp['sre2l_read'])} | "
              f"{sp['records'] / _med(sp['sre2l_read']):,.0f} | 1x |",
              f"| stream: the records (`read_batch`: every dataset's digest and the rule-16 bounds checked) | "
              f"{_rng(sp['stream_records'])} | {sp['records'] / _med(sp['stream_records']):,.0f} | {ratio_records:.2f}x |",
              f"| SRe2L: `torch.load` and the labels as probabilities (softmax(logits / T), float32) | "
              f"{_rng(sp['sre2l_labels'])} | {sp['records'] / _med(sp['sre2l_labels']):,.0f} | 1x |",
              f"| stream: the records and the labels decoded to probabilities (`decode_on_device`, float32; the tail "
              f"in float64) | {_rng(sp['stream_read'])} | {sp['records'] / _med(sp['stream_read']):,.0f} | "
              f"{ratio_read:.2f}x |",
              f"| SRe2L: its loader with crops (PIL, in-memory decoded images) | {_rng(sp['sre2l_crops'], fmt='{:.2f}')} | "
              f"{sp['records'] / _med(sp['sre2l_crops']):,.0f} | 1x |",
              f"| stream: `ReplayLoader.epoch` with crops (images gathered {sp['gather_bytes'] >> 20} MiB at a time, "
              f"the default) | {_rng(sp['stream_crops'], fmt='{:.2f}')} | "
              f"{sp['records'] / _med(sp['stream_crops']):,.0f} | {ratio_crops:.2f}x |",
              f"| stream: the same, each batch's images gathered in one read (the loader before chunked gathers) | "
              f"{_rng(sp['stream_crops_whole_gather'], fmt='{:.2f}')} | "
              f"{sp['records'] / _med(sp['stream_crops_whole_gather']):,.0f} | {ratio_whole:.2f}x |",
              "", f"Reading (target >= 1x): the records alone at {ratio_records:.2f}x the speed of `torch.load` of "
              f"SRe2L's files ({'met' if ratio_records >= 1 else 'NOT met'}); records and labels as probabilities at "
              f"{ratio_read:.2f}x ({'met' if ratio_read >= 1 else 'NOT met'}); with crops, {ratio_crops:.2f}x SRe2L's "
              f"loader ({ratio_whole:.2f}x with each batch's images gathered in one read).", ""]
    lines += render_memory(mem)
    return "\n".join(lines)


def render_memory(mem: dict) -> list[str]:
    """The peak-memory section: the floors, the replays, and one line per target."""
    mib = 1 / 1024
    fl = mem["floors"]
    inputs = {int(k): v for k, v in mem["batch_input_bytes"].items()}      # JSON keys are text
    side = mem["side"]
    big = [r for r in mem["runs"] if r["file"] != "24 px"]
    small = [r for r in mem["runs"] if r["file"] == "24 px"]
    lines = ["### Peak memory", "",
             "Peak RSS (`VmHWM`) of fresh processes that import only what they name. The floor a loader cannot go "
             "below: importing torch, then writing one float32 batch of inputs (B x 3 x h x w); the loader's share is "
             f"its peak minus that floor. {side} px: the speed file above (its images read per batch; default "
             f"codec), and for B = {min(inputs):,} the same images with a stream of random logits; 24 px: "
             f"{mem['images']:,} images x {mem['stream_epochs']} epochs, batches of {mem['batch']:,} "
             f"({mem['file_bytes'] / 1e6:,.1f} MB file, random logits). Target: < 1 GB (10^9 bytes = 954 MiB).", "",
             "| process | peak RSS |", "|---|---:|",
             f"| `import torch` | {fl['torch'] * mib:,.0f} MiB |",
             f"| `import torch` and the loader's module (`ladd_format.torch.replay`: h5py, the package) | "
             f"{fl['imports'] * mib:,.0f} MiB |"]
    for b in sorted(inputs, reverse=True):
        lines.append(f"| floor at B = {b:,}: `import torch` and one batch of inputs ({inputs[b] / 2**20:,.0f} MiB) | "
                     f"{fl[f'batch_{b}'] * mib:,.0f} MiB |")
    lines += ["", "| file | B | inputs | epochs replayed | records | peak RSS | loader's share (peak - floor) | "
              "seconds |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in mem["runs"]:
        floor = fl.get(f"batch_{r['batch']}") if r["file"] != "24 px" else None
        share = f"{(r['maxrss_kib'] - floor) * mib:+,.0f} MiB" if floor and r["epochs"] else ""
        lines.append(f"| {r['file']} | {r['batch']:,} | {'one reused buffer (default)' if r['reuse'] else 'one tensor a batch'} | "
                     f"{r['epochs']} | {r['records']:,} | {r['maxrss_kib'] * mib:,.0f} MiB | {share} | {r['seconds']:.1f} |")
    lines.append("")
    for b in dict.fromkeys(r["batch"] for r in big):
        runs = [r for r in big if r["batch"] == b and r["reuse"] and r["epochs"] > 0]
        if not runs:
            continue
        top = max(r["maxrss_kib"] for r in runs) * mib
        floor = fl[f"batch_{b}"] * mib
        lines.append(f"- {side} px, B = {b:,}, the default: peak {top:,.0f} MiB (target < 1 GB: "
                     f"{'met' if top * 2**20 < 1e9 else 'NOT met'}); its floor {floor:,.0f} MiB "
                     f"({'under' if floor * 2**20 < 1e9 else 'over'} 1 GB before the loader holds anything); "
                     f"the loader's share {top - floor:+,.0f} MiB"
                     + (f"; {runs[0]['epochs']} and {runs[-1]['epochs']} epochs: {runs[0]['maxrss_kib'] * mib:,.0f} and "
                        f"{runs[-1]['maxrss_kib'] * mib:,.0f} MiB" if len(runs) > 1 else "") + ".")
    fresh = [r for r in big if not r["reuse"]]
    if fresh:
        lines.append(f"- With `reuse_inputs=False` (one inputs tensor a batch) at B = {fresh[0]['batch']:,}: peak "
                     f"{fresh[0]['maxrss_kib'] * mib:,.0f} MiB, the batch the loop still holds while the next is made "
                     "included.")
    replayed = [r for r in small if r["epochs"] > 0]
    if len(replayed) > 1:
        growth = (replayed[-1]["maxrss_kib"] - replayed[0]["maxrss_kib"]) * mib
        lines.append(f"- 24 px: from {replayed[0]['epochs']} to {replayed[-1]['epochs']} epochs the peak moves by "
                     f"{growth:+,.0f} MiB (largest {max(r['maxrss_kib'] for r in replayed) * mib:,.0f} MiB).")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings, print only")
    add_output_args(ap)
    args = ap.parse_args(argv)
    out = Output.from_args(args)
    return out.publish(NAME, TITLE, render, measure=lambda: measure(args.quick))


if __name__ == "__main__":
    sys.exit(main())
