"""Training data for a labeler: an ImageFolder directory, an ``.npz``, or ``digits``.

Every source becomes ``(images uint8 (M, K, S, S), labels int64 (M,), class_names)``.
``digits`` is scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 10 classes),
upsampled (bilinear, antialias) to 3 channels at the requested size: the offline default.

Sources are untrusted: an ``.npz`` is bounded member by member before loading
(:func:`ladd_format.converters.inputs.check_npz`), a FIFO or device is refused unopened, labels must
lie in ``0..C-1`` with C at most :data:`MAX_CLASSES`, and images are resized to at most
:data:`MAX_IMAGE_SIDE` pixels a side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import require_regular_file
from ..errors import InputError
# MAX_IMAGE_SIDE: the largest side images are resized to (``--image-size``); MAX_CLASSES: the largest
# class count a source may imply (its largest label + 1, or its class names). Both: spec/limits.py.
from ..spec.limits import MAX_IMAGE_SIDE
from ..spec.limits import MAX_LABELER_CLASSES as MAX_CLASSES

DIGITS_SPLIT_SEED = 0
DIGITS_TRAIN_FRACTION = 0.8
#: the dataset name of scikit-learn's digits (a D_LA's ``source_dataset``; what ``digits-test`` is)
DIGITS_DATASET = "sklearn-digits"


@dataclass
class Source:
    images: np.ndarray           # (M, K, S, S) uint8
    labels: np.ndarray           # (M,) int64
    class_names: list[str]
    description: str
    #: False when the classes were inferred from the largest label (an .npz without class_names),
    #: so the source may simply lack its last classes
    classes_declared: bool = True
    #: the dataset's name when known (:data:`DIGITS_DATASET` for digits), as a D_LA's ``source_dataset``
    dataset: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def resize_uint8(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """``(M, K, H, W)`` uint8 -> ``(M, K, size, size)`` (or ``(M, K, *size)``) uint8 (bilinear, antialias)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if images.shape[2:] == hw:
        return images
    out = []
    for start in range(0, len(images), 512):
        x = torch.from_numpy(images[start:start + 512]).float()
        x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
        out.append(x.round().clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out)


def digits(image_size: int = 32, split: str = "train") -> Source:
    """scikit-learn digits, fixed 80/20 split (seed 0): ``train`` or ``test``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(data.target))
    cut = int(DIGITS_TRAIN_FRACTION * len(order))
    idx = order[:cut] if split == "train" else order[cut:]
    x = torch.from_numpy((data.images[idx] / 16.0).astype(np.float32))[:, None]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1).numpy()
    return Source(images, data.target[idx].astype(np.int64), [str(c) for c in range(10)],
                  f"sklearn digits ({split} split, {len(idx)} images, {image_size}px RGB)", dataset=DIGITS_DATASET)


def _name_key(name: str) -> str:
    return " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())


def same_class_names(a: list[str], b: list[str]) -> bool:
    """True when two class-name lists name the same classes in the same order, up to case and
    ``_``/``-``/spaces (``English_springer`` is ``English springer``)."""
    return len(a) == len(b) and all(_name_key(x) == _name_key(y) for x, y in zip(a, b))


def names_preview(names, shown: int = 4) -> str:
    """The first ``shown`` class names, quoted and cut at 20 characters, and how many there are in
    all: the way a mismatch line shows a list of names."""
    names = list(names)
    more = f", ... {len(names)} in all" if len(names) > shown else ""
    return ", ".join(repr(str(v)[:20]) for v in names[:shown]) + more


def same_dataset(a: str, b: str) -> bool:
    """True when two dataset names are one name up to case and punctuation (``CIFAR-10`` is ``cifar10``)."""
    def key(name: str) -> str:
        return "".join(ch for ch in str(name).lower() if ch.isalnum())
    return key(a) == key(b)


def npz(path: Path, image_size: int | None, square: bool = True) -> Source:
    """An .npz of ``images`` and ``labels`` (and optionally ``class_names``); ``square=False`` keeps
    non-square images as they are when no ``image_size`` is given."""
    from ..converters.inputs import check_npz
    from ..pixels import to_nchw

    members = check_npz(path)
    if "images" not in members or "labels" not in members:
        raise InputError(f"needs keys 'images' and 'labels'; found {', '.join(sorted(members)) or 'none'}", path)
    if not np.issubdtype(members["labels"][1], np.integer):
        raise InputError(f"labels must be integers, got {members['labels'][1]}", path)
    try:
        with np.load(path, allow_pickle=False) as data:
            images = to_nchw(data["images"], "auto", path)
            labels = data["labels"].astype(np.int64)
            names = [str(v) for v in data["class_names"].reshape(-1)] if "class_names" in data else None
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"not a readable .npz of images and labels: {exc}", path) from None
    if images.dtype != np.uint8:
        raise InputError(f"training images must be uint8, got {images.dtype}", path)
    if labels.shape != (len(images),) or not len(images):
        raise InputError(f"labels must have shape ({len(images)},) with at least one image, got {labels.shape}", path)
    top = int(labels.max())
    if int(labels.min()) < 0 or top >= (len(names) if names else MAX_CLASSES):
        bound = f"the {len(names)} class names" if names else f"{MAX_CLASSES} classes"
        raise InputError(f"labels must lie in 0..C-1 (C: {bound}), found {int(labels.min())}..{top}", path)
    if names is not None and len(names) > MAX_CLASSES:
        raise InputError(f"{len(names)} class names, at most {MAX_CLASSES}", path)
    declared = names is not None
    names = names or [str(c) for c in range(top + 1)]
    if image_size is not None:
        images = resize_uint8(images, image_size)
    elif square and images.shape[2] != images.shape[3]:
        raise InputError(f"images are {images.shape[2]}x{images.shape[3]}; give --image-size to make them square",
                         path)
    return Source(images, labels, names, f"{path.name} ({len(images)} images)", declared)


def image_folder(path: Path, image_size: int | None, size_hint: str = "; give --image-size") -> Source:
    from ..converters.images import read_image_folder

    folder = read_image_folder(path, image_size, size_hint=size_hint)
    return Source(folder.images, folder.labels, folder.class_names, f"{path.name} ({len(folder.images)} images)")


def load_source(source: str, image_size: int | None = None) -> Source:
    """``digits``, an ``.npz`` file, or an ImageFolder directory."""
    if image_size is not None and not 1 <= int(image_size) <= MAX_IMAGE_SIDE:
        raise InputError(f"image size must lie in 1..{MAX_IMAGE_SIDE}, got {image_size}")
    if source in ("digits", "digits-train"):
        return digits(image_size or 32, "train")
    if source == "digits-test":
        return digits(image_size or 32, "test")
    path = Path(source)
    if path.is_dir():
        return image_folder(path, image_size)
    if path.suffix == ".npz" and os.path.lexists(path):
        return npz(require_regular_file(path, ".npz file"), image_size)
    raise InputError("is neither 'digits', an .npz file nor an ImageFolder directory", path)
