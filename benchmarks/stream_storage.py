"""Relabel-stream storage at ImageNet-1K IPC 10 shape: real files (spec 1.2, and 1.3 with a tail), written by
the package's writer.

Usage::

    .venv/bin/python benchmarks/stream_storage.py                # ~15 min on 2 CPU cores; saves
                                                                 # results/stream_storage.json and writes
                                                                 # benchmarks/RESULTS/stream-storage.md
    .venv/bin/python benchmarks/stream_storage.py --render-only  # re-render from the saved JSON
    .venv/bin/python benchmarks/stream_storage.py --quick        # tiny settings, prints only

``stream_codecs.py`` chose the default stream codec from arrays; this benchmark writes the files. The
shape is SRe2L's ImageNet-1K IPC 10 run: M = 10,000 images, C = 1000 classes, E = 300 epochs, batches of
B = 1,024 (ten per epoch, the last of 784), 3,000,000 records.

- Images: 10 random train composites per class of the digits-1000 stand-in (``storage_common.Digits1000``:
  three scikit-learn digits side by side, class = the 3-digit number), 24 px, uint8. No 1000-class data
  set or model exists offline, and 24 px keeps the teacher affordable on two CPU cores; the crop boxes
  of 24 px images are smaller numbers than those of 224 px ones, so the side information (image index,
  box, flip, CutMix partner and box) is ALSO measured on draws at 224 px and the ImageNet-shape totals use
  that (below).
- Draws: ``ladd relabel``'s (``ladd_format.stream.draws.StreamDraws``, the counter-based generator,
  seed 0): epoch order, RandomResizedCrop (scale (0.08, 1), ratio (3/4, 4/3)), flip 1/2, CutMix per batch.
- Labels: the digits-1000 teacher (ConvNet-D3 width 16, 800 Adam steps; the labeler of ``stream_codecs.py``)
  on each batch's crops made by the stream kernel (``ladd_format.torch.stream_crops.crop_batch``,
  ``bilinear-antialias``, 24 px), flipped and CutMixed, normalised with the teacher's mean/std. Its float32
  logits go to the writer (``DLAWriter.append_stream``), which encodes them with the file's codec at the
  stream's temperature T = 1 (the teacher's own softmax, ``ladd relabel``'s default).
- Files: one per codec, all from the same records: the release's default for C = 1000
  (``default_stream_codec(1000)``: ``topk:k=5,values=uint8,tail=24``, top-5 probabilities and spec 1.3's
  rank-24 tail, its basis fitted as ``ladd relabel`` fits it, on the float32 logits of the first
  ``TAIL_FIT_RECORDS`` (4,096) records in stream order), spec 1.2's default ``topk:k=20,values=uint8``, the
  smaller ``topk:k=10,values=uint8``, and ``logits:float16`` (SRe2L's values). The top-k files hold all 300 epochs;
  writing and measuring 300 epochs of float16 logits (6 GB raw) is not affordable here, so that file holds
  the first ``logits_epochs`` (20) and its bytes are scaled linearly to 300 epochs (``--epochs`` writes
  fewer epochs of every file, scaled the same way). The bytes per record of every group of epochs, each
  compressed alone, show how little they vary from epoch to epoch (the spread).
- Bytes: the file's HDF5 storage of ``/stream`` (the writer's shuffle + gzip chunks, digests and starts
  included) and its size on disk; the stream as ``ladd size`` measures it (``ladd_format.size.measure_file``:
  spec 7's zip of ``stream_<name>.npy`` members, and zstd level 3); bytes per record (one image in
  one epoch); the ratio to SRe2L's measured layout (``stream_codecs.py``: 2,027.5 B per slot at B = 1,024,
  6.08 GB for 300 epochs). Spread: the zip bytes per record of each group of epochs compressed alone.
- ImageNet shape: the file's label datasets alone (zip; a tail's ``coef`` and ``scale`` included, and its
  ``mean`` and ``basis`` once) per record, plus the side information measured on a
  stream drawn at 224 px (the same generator, 10,000 images of 224 x 224, the writer's dtypes), both zip.
- Fidelity: every ``fidelity_every``-th epoch, each probability codec's decoded label against
  softmax(float16 logits / T) (SRe2L's stored values): mean KL (a decoded 0 floored at 1e-8, as
  ``stream_codecs.py``) and top-1 agreement; and re-tempered to T = 20 (SRe2L's students' temperature) as the
  replay loader does it (``decode(temperature=20)``) against softmax(float16 logits / 20).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _common import Output, add_output_args  # noqa: E402
from stream_common import (D1K_MEAN, D1K_STD, DEFAULT_1_2, IMAGENET, MOONSHOT, TARGET_MB, WORK, Digits1000,  # noqa: E402
                           composites,
                           digits1000_teacher, fmt_b, fmt_kl, kl_top1, load_model, log, sre2l_reference,
                           zip_npy_bytes)

NAME = KEY = "stream_storage"
TITLE = "## Relabel streams at ImageNet-1K IPC 10 shape: a real file per codec (digits-1000 teacher)"
LOGITS_CODEC = "logits:float16"
RETEMPER = 20.0


def settings(quick: bool) -> dict:
    from ladd_format.stream import default_stream_codec

    # the release's default for C = 1000, spec 1.2's, the smaller top-10 and SRe2L's values, each once
    codecs = list(dict.fromkeys([default_stream_codec(1000).label, DEFAULT_1_2, "topk:k=10,values=uint8",
                                 LOGITS_CODEC]))
    if quick:
        return dict(per_class=1, images=300, epochs=4, batch=128, logits_epochs=2, fidelity_every=2, groups=2,
                    teacher_steps=15, temperature=1.0, seed=0, codecs=codecs, side_epochs=1, side_images=500)
    return dict(per_class=10, images=10_000, epochs=300, batch=1024, logits_epochs=20, fidelity_every=10, groups=10,
                teacher_steps=800, temperature=1.0, seed=0, codecs=codecs, side_epochs=10, side_images=10_000)


def stream_spec(codec: str, epochs: int, st: dict, draws, crop: int, tail=None):
    from ladd_format.spec import RESIZE_ANTIALIAS
    from ladd_format.stream import StreamSpec, parse_stream_codec

    sampler, augmentation = draws.describe()
    return StreamSpec(epochs=epochs, batch_size=st["batch"], crop_size=(crop, crop), resize=RESIZE_ANTIALIAS,
                      mix="cutmix", codec=parse_stream_codec(codec), temperature=st["temperature"],
                      teacher={"arch": "convnet-d3", "epochs": st["teacher_steps"], "mean": list(D1K_MEAN),
                               "std": list(D1K_STD), "training_data": "digits-1000 (sklearn digits, train split)"},
                      sampler=sampler, augmentation=augmentation, **({"tail": tail} if tail is not None else {}))


def teacher_logits(teacher, x01: torch.Tensor, b, side: int) -> np.ndarray:
    """The teacher's float32 logits of batch ``b``'s crops (``crop_batch``, flipped and CutMixed, normalised)."""
    from ladd_format.torch.stream_crops import crop_batch

    mean = torch.tensor(D1K_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(D1K_STD).view(1, 3, 1, 1)
    crops = crop_batch(x01[torch.from_numpy(b.image)], b.box, b.flip, (side, side), mix="cutmix",
                       mix_partner=b.mix_partner, mix_box=b.mix_box)
    return teacher(((crops - mean) / std).contiguous(memory_format=torch.channels_last)).float().numpy()


@torch.inference_mode()
def fit_tails(codecs: dict, teacher, x01: torch.Tensor, draws, side: int, epochs: int) -> dict:
    """Each tail codec's basis, fitted as ``ladd relabel`` fits it before the first batch is written:
    ``fit_tail_basis`` of the float32 logits of the first ``TAIL_FIT_RECORDS`` records in stream order
    (the draws are counter-based: the same batches are drawn again when the files are written)."""
    from ladd_format.stream.tail import TAIL_FIT_RECORDS, fit_tail_basis

    ranks = {c: codec.tail_rank for c, codec in codecs.items() if codec.tail_rank is not None}
    if not ranks:
        return {}
    logits, seen, e = [], 0, 0
    while seen < TAIL_FIT_RECORDS and e < epochs:
        for b in draws.epoch(e):
            logits.append(teacher_logits(teacher, x01, b, side))
            seen += len(b.image)
            if seen >= TAIL_FIT_RECORDS:
                break
        e += 1
    z = np.concatenate(logits)[:TAIL_FIT_RECORDS]
    return {c: fit_tail_basis(z, r) for c, r in ranks.items()}


def write_files(st: dict, folder: Path, timing: dict) -> dict:
    """Draw, crop, label and write every file (module docstring); the fidelity sums on the way."""
    from ladd_format import DLAWriter
    from ladd_format.stream import parse_stream_codec
    from ladd_format.stream.draws import AugmentParams, StreamDraws
    t0 = time.perf_counter()
    d1k = Digits1000()
    teacher_path, info = digits1000_teacher(st["teacher_steps"])
    teacher = load_model(teacher_path)
    images, labels = composites(d1k, st["per_class"], "train", seed=5)
    images, labels = images[:st["images"]], labels[:st["images"]]
    m, side = len(images), images.shape[-1]
    timing["teacher and images"] = time.perf_counter() - t0
    draws = StreamDraws(st["seed"], m, (side, side), st["batch"], (side, side), AugmentParams())
    x01 = torch.from_numpy(images).float() / 255
    codecs = {c: parse_stream_codec(c) for c in st["codecs"]}
    tick = time.perf_counter()
    tails = fit_tails(codecs, teacher, x01, draws, side, st["epochs"])
    timing["fit the tail basis"] = time.perf_counter() - tick
    probs_codecs = [c for c in st["codecs"] if codecs[c].kind == "probs"]
    paths = {c: folder / f"stream-{i}.dla.h5" for i, c in enumerate(st["codecs"])}
    epochs_of = {c: (st["logits_epochs"] if codecs[c].kind == "logits" else st["epochs"]) for c in st["codecs"]}
    fid = {c: {"kl": 0.0, "top1": 0, "kl20": 0.0, "top1_20": 0, "rows": 0} for c in probs_codecs}
    own = 0
    t = st["temperature"]
    tim = {"draws": 0.0, "crops and teacher": 0.0, "encode": 0.0, "write": 0.0, "fidelity": 0.0}
    with torch.inference_mode(), contextlib.ExitStack() as stack:   # a writer left by an error discards its file
        writers = {c: stack.enter_context(DLAWriter(
            paths[c], num_classes=1000, image_shape=images.shape[1:], mean=D1K_MEAN, std=D1K_STD,
            stream=stream_spec(c, epochs_of[c], st, draws, side, tails.get(c)), class_names=[f"{k:03d}" for k in range(1000)],
            source_dataset="digits-1000 (sklearn digits)", distillation="random-real",
            converter="benchmarks/stream_storage.py", overwrite=True)) for c in st["codecs"]}
        for w in writers.values():
            w.append(images, labels)
        for e in range(st["epochs"]):
            tick = time.perf_counter()
            batches = list(draws.epoch(e))
            tim["draws"] += time.perf_counter() - tick
            for b in batches:
                tick = time.perf_counter()
                logits = teacher_logits(teacher, x01, b, side)
                tim["crops and teacher"] += time.perf_counter() - tick
                own += int((logits.argmax(-1) == labels[b.image]).sum())
                for c in st["codecs"]:
                    if e >= epochs_of[c]:
                        continue
                    tick = time.perf_counter()
                    stored = codecs[c].encode_logits(logits, t, tail=tails.get(c))
                    tim["encode"] += time.perf_counter() - tick
                    tick = time.perf_counter()
                    writers[c].append_stream(e, b.image, b.box, b.flip, mix_partner=b.mix_partner,
                                             mix_box=b.mix_box, stored=stored)
                    tim["write"] += time.perf_counter() - tick
                    if c in fid and e % st["fidelity_every"] == 0:
                        tick = time.perf_counter()
                        ref16 = logits.astype(np.float16)
                        kl, top1, n = kl_top1(ref16, codecs[c].decode(stored, 1000, stored_temperature=t,
                                                                      tail=tails.get(c)), t)
                        kl20, top20, _ = kl_top1(ref16, codecs[c].decode(stored, 1000, temperature=RETEMPER,
                                                                          stored_temperature=t, tail=tails.get(c)),
                                                 RETEMPER)
                        f = fid[c]
                        f["kl"] += kl
                        f["top1"] += top1
                        f["kl20"] += kl20
                        f["top1_20"] += top20
                        f["rows"] += n
                        tim["fidelity"] += time.perf_counter() - tick
            if e % 10 == 0 or e == st["epochs"] - 1:
                log(f"  epoch {e + 1}/{st['epochs']} ({time.perf_counter() - t0:.0f} s)")
        tick = time.perf_counter()
        for w in writers.values():
            w.close()
        tim["close"] = time.perf_counter() - tick
    timing.update({f"write: {k}": v for k, v in tim.items()})
    return {"paths": {c: str(p) for c, p in paths.items()}, "epochs_of": epochs_of, "teacher": info,
            "m": m, "side": side, "fidelity": {c: {"kl": f["kl"] / f["rows"], "top1": f["top1"] / f["rows"],
                                                    "kl20": f["kl20"] / f["rows"], "top1_20": f["top1_20"] / f["rows"],
                                                    "rows": f["rows"]} for c, f in fid.items()},
            "crop_top1_own_class": own / (m * st["epochs"])}


def file_bytes(path: Path, groups: int) -> dict:
    """``ladd size``'s stream figures (zip, zstd 3), the HDF5 storage, the file's size, and
    the zip bytes per record of each of ``groups`` equal epoch groups compressed alone."""
    import h5py

    from ladd_format.size import measure_file
    from ladd_format.spec import names as SN

    out = {"file": path.stat().st_size}
    for key, method, level in (("zip", "zip", None), ("zstd3", "zstd", 3)):
        tick = time.perf_counter()
        s = measure_file(path, method, level).stream
        out[key] = s.bytes
        out[f"{key}_seconds"] = time.perf_counter() - tick
        out.update(raw=s.raw_bytes, stored=s.stored_bytes, records=s.records, epochs=s.epochs, batches=s.batches,
                   sre2l_estimate=s.sre2l_bytes)
    with h5py.File(path, "r") as h5:
        g = h5[SN.STREAM]
        epoch_start, batch_start = g[SN.STREAM_EPOCH_START][:], g[SN.STREAM_BATCH_START][:]
        q, nb = len(g[SN.STREAM_IMAGE]), len(batch_start)
        names = [n for n in g if isinstance(g[n], h5py.Dataset) and n not in (SN.STREAM_EPOCH_START,
                                                                               SN.STREAM_BATCH_START)
                 and not n.endswith("sha256")]
        # a tail (spec 1.3): its per-record coef and scale go with the labels; its mean and basis are stored once
        names += [n for n in (SN.STREAM_TAIL_COEF, SN.STREAM_TAIL_SCALE) if n in g]
        fixed = {n: g[n][:] for n in (SN.STREAM_TAIL_MEAN, SN.STREAM_TAIL_BASIS) if n in g}
        e = len(epoch_start)
        per = max(1, e // groups)
        spread = []
        for start in range(0, e - per + 1, per):
            b0, b1 = epoch_start[start], (epoch_start[start + per] if start + per < e else nb)
            r0, r1 = batch_start[b0], (batch_start[b1] if b1 < nb else q)
            arrays = {n: (g[n][b0:b1] if g[n].shape[0] == nb else g[n][r0:r1]) for n in names}
            spread.append(zip_npy_bytes(arrays) / (r1 - r0))
        out["group_epochs"] = per
        out["zip_per_record_groups"] = spread
        labels = [n for n in names if n.startswith(("topk", "logits", "probs", SN.STREAM_TAIL + "/"))]
        out["label_zip"] = zip_npy_bytes({**{n: g[n][:] for n in labels}, **fixed})   # the labels alone, all records
        tail = [n for n in labels if n.startswith(SN.STREAM_TAIL + "/")]
        out["tail_zip"] = zip_npy_bytes({**{n: g[n][:] for n in tail}, **fixed}) if fixed else 0
        out["tail_fixed_zip"] = zip_npy_bytes(fixed) if fixed else 0
        out["dtypes"] = {n: str(g[n].dtype) for n in names}
    return out


def side_information(st: dict, dtypes: dict) -> dict:
    """Zip bytes per record of the side information (image, box, flip, mix partner, mix box) of a stream
    drawn at ImageNet shape (``side_images`` images of 224 px, B = 1,024, ``side_epochs`` epochs) in the
    writer's dtypes, and of the same at the stand-in's 24 px for comparison."""
    from ladd_format.stream.draws import AugmentParams, StreamDraws

    out = {}
    for name, side, m in (("imagenet", IMAGENET["size"], st["side_images"]), ("stand-in", 24, st["images"])):
        draws = StreamDraws(st["seed"] + 1, m, (side, side), st["batch"], (side, side), AugmentParams())
        parts = {"image": [], "box": [], "flip": [], "mix_partner": [], "mix_box": []}
        for e in range(st["side_epochs"]):
            for b in draws.epoch(e):
                parts["image"].append(b.image)
                parts["box"].append(b.box)
                parts["flip"].append(b.flip.astype(np.uint8))
                parts["mix_partner"].append(b.mix_partner)
                parts["mix_box"].append(b.mix_box[None])
        arrays = {k: np.concatenate(v).astype(dtypes.get(k, v[0].dtype)) for k, v in parts.items()}
        records = len(arrays["image"])
        crop = {k: arrays[k] for k in ("image", "box", "flip")}
        mix = {k: arrays[k] for k in ("mix_partner", "mix_box")}
        out[name] = {"records": records, "images": m, "side": side,
                     "crop": zip_npy_bytes(crop) / records, "mix": zip_npy_bytes(mix) / records,
                     "raw": sum(a.nbytes for a in arrays.values()) / records}
    return out


def measure(quick: bool, overrides: dict | None = None) -> dict:
    st = {**settings(quick), **(overrides or {})}
    folder = WORK / ("storage-quick" if quick else "storage")
    folder.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    made = write_files(st, folder, timing)
    timing["write the files"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    files = {c: file_bytes(Path(p), st["groups"] if made["epochs_of"][c] == st["epochs"] else
                           max(1, min(st["groups"], made["epochs_of"][c] // 2)))
             for c, p in made["paths"].items()}
    timing["measure the files"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dtypes = next(iter(files.values()))["dtypes"]
    side = side_information(st, dtypes)
    timing["side information at 224 px"] = time.perf_counter() - t0
    sre2l = sre2l_reference()
    if not quick:
        for p in made["paths"].values():       # the 24 px files are rebuilt by the next run; keep none
            Path(p).unlink(missing_ok=True)
    from ladd_format.stream import default_stream_codec
    from ladd_format.stream.tail import TAIL_FIT_RECORDS

    return {"settings": st, "default_stream_codec": default_stream_codec(1000).label, "tail_fit_records": TAIL_FIT_RECORDS,
            "made": {k: v for k, v in made.items() if k != "paths"}, "files": files, "side": side,
            "sre2l": sre2l, "imagenet": IMAGENET, "timing": timing}


# --------------------------------------------------------------------------- rendering

def per_record(f: dict, key: str) -> float:
    return f[key] / f["records"]


def scaled_total(f: dict, key: str, epochs: int, epochs_run: int) -> float:
    """``key`` bytes scaled linearly from ``epochs_run`` to ``epochs`` epochs."""
    return f[key] * epochs / epochs_run


def imagenet_total(d: dict, codec: str) -> float:
    """ImageNet-1K IPC 10 x 300 epochs: the codec's label bytes per record (the file's label datasets alone,
    zip) plus the side information measured at 224 px (zip)."""
    f, side = d["files"][codec], d["side"]
    label = f["label_zip"] / f["records"]
    inet = side["imagenet"]
    return (label + inet["crop"] + inet["mix"]) * d["imagenet"]["images"] * d["imagenet"]["epochs"]


def render(payload: dict) -> str:
    d = payload["data"]
    st, made, sre = d["settings"], d["made"], d["sre2l"]
    sre_total, sre_slot = sre["imagenet_total"], sre["imagenet_per_slot"]
    inet = d["imagenet"]
    full = made["m"] == inet["images"] and st["batch"] == inet["batch"]
    lines = [f"- Machine: {payload['machine']}, CPU only",
             f"- Date: {payload['date']}; command: `{payload['command']}` (ran in "
             + ", ".join(f"{k} {v:.0f} s" for k, v in d["timing"].items() if not k.startswith("write: ")) + "; of the "
             "writing: " + ", ".join(f"{k[7:]} {v:.0f} s" for k, v in d["timing"].items() if k.startswith("write: ")) + ")",
             f"- Files: {made['m']:,} images of {made['side']} px (digits-1000 composites, {st['per_class']} per class), "
             f"C = 1000, {st['epochs']} epochs of batches of {st['batch']:,}, written by `DLAWriter.append_stream`; "
             f"draws of `ladd relabel` (seed {st['seed']}); labels: the digits-1000 teacher ({st['teacher_steps']} "
             f"Adam steps) on `crop_batch` crops, stored at T = {st['temperature']:g}; the teacher's argmax is the "
             f"image's own class on {100 * made['crop_top1_own_class']:.1f}% of the records. "
             + (f"ImageNet-1K IPC 10 shape except the image side and the epochs: {st['epochs']} of 300 written "
                f"(float16 logits: {st.get('logits_epochs', st['epochs'])}), the bytes scaled linearly to 300."
                if full and st["epochs"] != inet["epochs"] else
                f"ImageNet-1K IPC 10 shape except the image side; the `logits:float16` file holds the first "
                f"{st['logits_epochs']} epochs, its bytes scaled linearly to 300."
                if full and st.get("logits_epochs", st["epochs"]) != st["epochs"] else
                "ImageNet-1K IPC 10 shape except the image side." if full else "NOT the ImageNet shape (a rehearsal)."),
             f"- SRe2L's layout (measured by `stream_codecs.py`): {sre_slot:,.1f} B per slot at B = 1,024, "
             f"{sre_total / 1e9:.2f} GB for ImageNet-1K IPC 10 x 300 epochs. Target: <= 1/40 (<= {TARGET_MB} MB); "
             f"moonshot <= 1/{MOONSHOT}.",
             "- Bytes per record = per (image, epoch). zip / zstd: `ladd size` (spec 7: each stream dataset a `.npy` "
             "member, `batch_sha256` left out); HDF5: the storage of every `/stream` dataset in the file (shuffle + "
             "gzip chunks, digests and starts included); spread: zip bytes per record of each group of epochs "
             "compressed alone (min-max).", "",
             "| codec | epochs written | records | file on disk | HDF5 /stream | B/record HDF5 | zip | B/record zip "
             "(spread) | zstd 3 | B/record zstd 3 | vs SRe2L per record (zip) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c, f in d["files"].items():
        spread = f["zip_per_record_groups"]
        lines.append(f"| {codec_cell(d, c)} | {f['epochs']} | {f['records']:,} | {f['file'] / 1e6:,.1f} MB | "
                     f"{f['stored'] / 1e6:,.1f} MB | {fmt_b(per_record(f, 'stored'))} | {f['zip'] / 1e6:,.1f} MB | "
                     f"{fmt_b(per_record(f, 'zip'))} ({fmt_b(min(spread))}-{fmt_b(max(spread))} over groups of "
                     f"{f['group_epochs']} epochs) | {f['zstd3'] / 1e6:,.1f} MB | "
                     f"{fmt_b(per_record(f, 'zstd3'))} | 1/{sre_slot / per_record(f, 'zip'):.1f} |")
    side = d["side"]
    dtypes = next(iter(d["files"].values()))["dtypes"]
    shown = ", ".join(f"{k} {v}" for k, v in dtypes.items() if not k.startswith(("topk", "logits", "probs", "tail/")))
    lines += ["", f"Side information per record (zip, the writer's dtypes {shown}): "
              + "; ".join(f"{name} ({s['images']:,} images of {s['side']} px, {s['records']:,} records): crop "
                          f"(image, box, flip) {fmt_b(s['crop'])} B, mix (partner, box) {fmt_b(s['mix'])} B, raw "
                          f"{fmt_b(s['raw'])} B" for name, s in side.items()) + ".", "",
              f"At ImageNet-1K IPC 10 x {inet['epochs']} epochs ({inet['images'] * inet['epochs']:,} records): the "
              "file's bytes (scaled linearly where fewer epochs were written), and the ImageNet-shape estimate: "
              "the label bytes per record of the file (its label datasets alone, zip) plus the side information "
              "at 224 px (zip).", "",
              "| codec | file's stream, zip (at 300 epochs) | ratio to SRe2L | file's /stream HDF5 (at 300 epochs) | ratio "
              "| ImageNet shape (224 px side information), zip | ratio | <= 1/40? | mean KL vs float16 logits (T = "
              f"{st['temperature']:g}) | top-1 agreement | KL at T = {RETEMPER:g} (re-tempered) | top-1 at T = {RETEMPER:g} |",
              "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for c, f in d["files"].items():
        run = f["epochs"]
        zip_total = scaled_total(f, "zip", inet["epochs"], run) * (inet["images"] / made["m"])
        h5_total = scaled_total(f, "stored", inet["epochs"], run) * (inet["images"] / made["m"])
        est = imagenet_total(d, c)
        verdict = ("yes, and 1/80" if est <= sre_total / MOONSHOT else "yes") if est <= min(TARGET_MB * 1e6, sre_total / 40) else "no"
        fid = made["fidelity"].get(c)
        fcells = (f"{fmt_kl(fid['kl'])} | {100 * fid['top1']:.2f}% | {fmt_kl(fid['kl20'])} | {100 * fid['top1_20']:.2f}%"
                  if fid else "0 (the reference) | 100% | 0 | 100%")
        scaled = "" if run == inet["epochs"] else f" (scaled from {run})"
        lines.append(f"| {codec_cell(d, c)} | {zip_total / 1e6:,.1f} MB{scaled} | 1/{sre_total / zip_total:.1f} | "
                     f"{h5_total / 1e6:,.1f} MB{scaled} | 1/{sre_total / h5_total:.1f} | {est / 1e6:,.1f} MB | "
                     f"1/{sre_total / est:.1f} | {verdict} | {fcells} |")
    lines += ["", f"Fidelity on every {st['fidelity_every']}th epoch ({next(iter(made['fidelity'].values()))['rows']:,} "
              "records per codec): KL(softmax(float16 logits / T) || decoded) in nats, a decoded 0 floored at 1e-8; "
              f"re-tempered: the label stored at T = {st['temperature']:g} decoded at T = {RETEMPER:g} as the replay "
              f"loader's `temperature=` does (q^(T_stored / {RETEMPER:g}) renormalised) against softmax(float16 "
              f"logits / {RETEMPER:g})."]
    tails = {c: f for c, f in d["files"].items() if f.get("tail_zip")}
    if tails:
        lines += ["", "The tail (spec 1.3, `/stream/tail`): "
                  + "; ".join(f"`{c}`: {f['tail_zip'] / f['records']:,.1f} B per record zip (`tail/coef` int8 and "
                              f"`tail/scale` float16), its fixed mean and basis {f['tail_fixed_zip'] / 1e3:,.0f} kB "
                              f"once, both in the label bytes above" for c, f in tails.items())
                  + f". The basis is fitted as `ladd relabel` fits it: the first {d['tail_fit_records']:,} records' float32 "
                  "logits in stream order."]
    return "\n".join(lines)


def codec_cell(d: dict, codec: str) -> str:
    """A codec's table cell, marked when it is the release's default (``default_stream_codec(1000)`` when
    this ran) or spec 1.2's."""
    if codec == d.get("default_stream_codec"):
        return f"**`{codec}` (the default)**"
    if "default_stream_codec" in d and codec == DEFAULT_1_2:
        return f"`{codec}` (spec 1.2's default)"
    return f"`{codec}`"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings, print only")
    ap.add_argument("--epochs", type=int, default=None, help="epochs written (default 300; fewer are scaled to 300)")
    ap.add_argument("--logits-epochs", type=int, default=None, help="epochs of the logits:float16 file (default 20)")
    add_output_args(ap)
    args = ap.parse_args(argv)
    out = Output.from_args(args)

    overrides = {k: v for k, v in (("epochs", args.epochs), ("logits_epochs", args.logits_epochs)) if v}
    run = lambda: measure(args.quick, overrides)  # noqa: E731
    return out.publish(NAME, TITLE, render, measure=run)


if __name__ == "__main__":
    sys.exit(main())
