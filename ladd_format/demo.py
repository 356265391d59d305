"""The main job on an embedded default (``ladd demo`` / ``make demo``).

Real data, no download: scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes).

1. A distilled set D: ``ipc`` random real training images per class (the strong baseline of
   "A Label is Worth a Thousand Images"), upsampled to 32x32 RGB uint8.
2. Dense labels: each image is cut into N x N = 5 x 5 sub-images (R = 62.5%, spec section 5) by
   :func:`ladd_format.subimages.subimages`, and a labeler gives each a soft label. The labeler here
   is a multinomial logistic regression on the 8x8 training images (trained in a second on the
   CPU) — a stand-in, named as such in the file, until ``ladd train-labeler`` provides the
   paper's ConvNet.
3. The arrays go through the generic ``npz`` converter into a D_LA, which is verified and measured
   with every codec.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import geometry
from .converters import ConvertOptions, convert
from .reader import open_dla
from .size import measure_file
from .torch import subimages
from .verify import verify

log = logging.getLogger(__name__)

N, RATIO, SIDE = 5, 0.625, 32


def digits_split(seed: int):
    """Digits as float 0..1 arrays ``(M, 8, 8)`` with labels, split 80/20 by ``seed``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(0.8 * len(y))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def upsample_rgb(x8: np.ndarray) -> np.ndarray:
    """``(M, 8, 8)`` floats 0..1 -> ``(M, 3, 32, 32)`` uint8 (bilinear, antialias)."""
    t = torch.from_numpy(x8)[:, None]
    t = F.interpolate(t, size=(SIDE, SIDE), mode="bilinear", align_corners=False, antialias=True)
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1).numpy()


def to_labeler_input(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, 32, 32)`` floats 0..1 -> the labeler's ``(B, 64)`` features (grey 8x8)."""
    grey = images.mean(dim=1, keepdim=True)
    return F.adaptive_avg_pool2d(grey, 8).reshape(len(images), 64).numpy()


def run_demo(workdir: Path, ipc: int = 10, seed: int = 0, echo: Callable[[str], None] = print) -> dict:
    from sklearn.linear_model import LogisticRegression

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = digits_split(seed)
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.choice(np.flatnonzero(y_train == c), ipc, replace=False) for c in range(10)])
    images = upsample_rgb(x_train[chosen])
    labels = y_train[chosen]
    echo(f"[1/4] distilled set D: {len(labels)} real digits images ({ipc} per class), 3x{SIDE}x{SIDE} uint8")

    train_features = to_labeler_input(torch.from_numpy(upsample_rgb(x_train)).float() / 255)
    labeler = LogisticRegression(max_iter=2000, C=1.0).fit(train_features, y_train)
    test_acc = labeler.score(to_labeler_input(torch.from_numpy(upsample_rgb(x_test)).float() / 255), y_test)
    boxes = geometry.boxes(SIDE, SIDE, N, RATIO)
    subs = subimages(torch.from_numpy(images).float() / 255, boxes)            # (M, 25, 3, 32, 32)
    feats = to_labeler_input(subs.reshape(-1, 3, SIDE, SIDE))
    dense = labeler.predict_proba(feats).reshape(len(labels), N * N, 10).astype(np.float32)
    echo(f"[2/4] dense labels: {N}x{N} sub-images of {boxes[0, 2]}x{boxes[0, 3]} px per image, labeled by a "
         f"logistic-regression stand-in labeler (test accuracy {test_acc:.3f})")

    npz = workdir / "digits_dla_arrays.npz"
    np.savez(npz, images=images, labels=labels, num_classes=np.int64(10), dense_labels=dense,
             n=np.int64(N), ratio=np.float64(RATIO), class_names=np.array([str(c) for c in range(10)]),
             labeler_arch=np.array("sklearn-logistic-regression-8x8 (demo stand-in)"),
             labeler_training_data=np.array(f"sklearn digits, 80% split, seed {seed}"))
    files = {}
    for codec, extra in (("float32", {}), ("float16", {}), ("uint8", {}), ("topk", {"k": 3, "topk_values": "uint8"})):
        name = codec if codec != "topk" else "topk3-uint8"
        out = workdir / f"digits_ipc{ipc}_{name}.dla.h5"
        convert("npz", npz, out, ConvertOptions(codec=codec, overwrite=True, **extra))
        problems = verify(out)
        if problems:
            raise RuntimeError(f"demo produced an invalid file: {problems[0]}")
        files[name] = out
    with open_dla(files["float32"]) as f:
        agree = float((f.dense().argmax(-1) == dense.argmax(-1)).mean())
    echo(f"[3/4] wrote and verified {len(files)} D_LA files in {workdir}/ (float32 decodes to the labeler's "
         f"top-1 on {agree:.0%} of sub-images)")

    echo("[4/4] storage (spec section 7; zip = the paper's measure):")
    echo(f"      {'codec':<12} {'base D':>10} {'D_LA':>10} {'overhead':>9} {'IPC+1':>8}")
    table = {}
    for name, out in files.items():
        r = measure_file(out, "zip")
        table[name] = r.as_dict()
        echo(f"      {name:<12} {r.base_bytes:>10,} {r.dla_bytes:>10,} {r.overhead_pct:>8.2f}% "
             f"{r.ipc_plus_one_pct:>7.2f}%")
    echo(f"Next: `ladd info {files['float32']}`, `ladd verify ...`, `ladd size ... --method zstd`.")
    return {"files": {k: str(v) for k, v in files.items()}, "sizes": table, "labeler_test_accuracy": test_acc}
