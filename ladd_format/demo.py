"""The main job on an embedded default (``ladd demo`` / ``make demo``).

Real data, no download: scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes,
fixed 80/20 train/test split), upsampled to 32x32 RGB.

1. A labeler g: ConvNet-D3 (width 64) trained on the training split with SGD, keeping the early
   checkpoint as the paper does (``ladd train-labeler``).
2. A distilled set D: ``ipc`` random real training images per class (the strong baseline of
   "A Label is Worth a Thousand Images"), written as a plain D file.
3. The labeler pass (``ladd augment``): N x N = 5 x 5 sub-images per image, R = 62.5%, one D_LA
   per codec; each is verified and measured.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from .labeler import AugmentConfig, TrainConfig, augment, load_source, train_labeler
from .reader import open_dla
from .size import measure_file
from .verify import verify
from .writer import DLAWriter

log = logging.getLogger(__name__)

N, RATIO, SIDE = 5, 0.625, 32
CODECS = (("float32", {}), ("float16", {}), ("uint8", {}), ("topk", {"k": 3, "topk_values": "uint8"}))


def codec_label(codec: str, extra: dict) -> str:
    return codec if codec != "topk" else f"topk{extra['k']}-{extra['topk_values']}"


def run_demo(workdir: Path, ipc: int = 10, seed: int = 0, epochs: int = 10, width: int = 64,
             echo: Callable[[str], None] = print) -> dict:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    train = load_source("digits", SIDE)

    config = TrainConfig(arch="convnet-d3", arch_kwargs={"width": width}, epochs=epochs, save_epochs=(epochs,),
                         batch_size=256, device="auto", seed=seed)
    record = train_labeler(train, workdir / "labeler", config, overwrite=True)[-1]
    echo(f"[1/4] labeler: ConvNet-D3 (width {width}) trained {epochs} epochs on {train.description}: "
         f"validation accuracy {record['val_accuracy']:.3f} -> {Path(record['path']).name}")

    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.choice(np.flatnonzero(train.labels == c), ipc, replace=False) for c in range(10)])
    plain = workdir / f"digits_ipc{ipc}_D.dla.h5"
    mean = train.images.astype(np.float64).mean(axis=(0, 2, 3)) / 255
    std = train.images.astype(np.float64).std(axis=(0, 2, 3)) / 255
    with DLAWriter(plain, num_classes=10, image_shape=(3, SIDE, SIDE), mean=mean, std=std,
                   class_names=train.class_names, source_dataset="sklearn-digits", distillation="random-real",
                   ipc=ipc, converter="demo", overwrite=True) as w:
        w.append(train.images[chosen], train.labels[chosen])
    echo(f"[2/4] distilled set D: {len(chosen)} random real training images ({ipc} per class), "
         f"3x{SIDE}x{SIDE} uint8 -> {plain.name}")

    files = {}
    for codec, extra in CODECS:
        name = codec_label(codec, extra)
        out = workdir / f"digits_ipc{ipc}_{name}.dla.h5"
        augment(plain, record["path"], out, AugmentConfig(n=N, ratio=RATIO, codec=codec, overwrite=True, **extra))
        problems = verify(out)
        if problems:
            raise RuntimeError(f"demo produced an invalid file: {problems[0]}")
        files[name] = out
    with open_dla(files["float32"]) as f, open_dla(files["topk3-uint8"]) as g:
        agree = float((f.dense().argmax(-1) == g.dense().argmax(-1)).mean())
        centre = float((f.dense()[:, N * N // 2].argmax(-1) == f.labels()).mean())
    echo(f"[3/4] labeler pass: {N}x{N} sub-images of 20x20 px per image; wrote and verified {len(files)} D_LA "
         f"files (centre sub-image top-1 = hard label on {centre:.0%} of images; topk3-uint8 keeps float32's "
         f"top-1 on {agree:.1%} of sub-images)")

    echo("[4/4] storage (spec section 7; zip = the paper's measure):")
    echo(f"      {'codec':<12} {'base D':>10} {'D_LA':>10} {'overhead':>9} {'IPC+1':>8}")
    table = {}
    for name, out in files.items():
        r = measure_file(out, "zip")
        table[name] = r.as_dict()
        echo(f"      {name:<12} {r.base_bytes:>10,} {r.dla_bytes:>10,} {r.overhead_pct:>8.2f}% "
             f"{r.ipc_plus_one_pct:>7.2f}%")
    echo(f"Next: `ladd info {files['float32']}`, `ladd verify ...`, `ladd size ... --method zstd`.")
    return {"files": {k: str(v) for k, v in files.items()}, "sizes": table, "labeler": record}


__all__ = ["run_demo"]
