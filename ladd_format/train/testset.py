"""The test side of ``evaluate``: what ``--test`` names, whether it fits the training file, and its
images made into the student's input.

``--test`` takes ``digits-test``, an ``.npz`` of images and labels, an ImageFolder directory (all
three read into memory as uint8 pixels), or a ``.dla.h5`` file (:class:`TestFile`: a test set of any
size, e.g. ImageNet's 50,000 validation images converted once with ``ladd convert folder``; read a
batch at a time, each row checked against its digest, so it is never held).

Test images become the student's input the way the training file's images do: brought to 0..1
pixels from their own space (``pixel255``, ``pixel01``, or ``normalized`` with their own mean/std),
then normalised with the *training* file's mean/std (the inputs the student was trained on). ZCA
whitening is not stored in a file (spec 4), so a ZCA training file is tested only on a ZCA test
file (whitened the same way: the user's word), and a ZCA test file only with a ZCA training file.

A test set of other data is refused (:func:`mismatch_of`, unless ``allow_mismatch``): its class
names differ from the file's (in order, up to case and ``_``/``-``), where both have names; else
its dataset name differs from the file's ``source_dataset``, where both are known. ``digits-test``
has the names ``0``..``9`` and the dataset ``sklearn-digits``; an .npz has names when it holds
``class_names``, an ImageFolder its folder names, a ``.dla.h5`` its ``class_names`` and
``source_dataset``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..atomic import require_regular_file
from ..errors import InputError
from ..labeler.sources import (Source, digits, image_folder, names_preview, npz, resize_uint8, same_class_names,
                               same_dataset)
from ..reader import open_dla
from ..torch import DLADataset

#: what ``--test`` takes; the training split of digits is refused by name
TEST_SOURCES = "an .npz (images, labels), an ImageFolder directory, a .dla.h5 file, or digits-test"
TRAINING_SPLITS = ("digits", "digits-train")
#: on the CPU, a test forward sees at most this many input pixels (64 images at 224 px, all 512 at 32 px)
CPU_TEST_PIXELS = 64 * 224 * 224


@dataclass(frozen=True)
class TestFile:
    """A ``.dla.h5`` test set: what evaluate needs to know of it without reading its arrays (small
    to pickle into a worker process: the workers open the file themselves)."""
    path: str
    num_images: int
    num_classes: int
    image_shape: tuple
    space: str
    mean: tuple
    std: tuple
    description: str
    class_names: tuple | None = None
    dataset: str | None = None


#: the route to a .dla.h5 test set of another image size (the evaluate options that exist)
DLA_TEST_RESIZE_HINT = ("a .dla.h5 test set is read as stored: export it (ladd export TEST --format npz -o test.npz) "
                        "and pass test.npz with --resize-test")


def _shape(shape) -> str:
    return "x".join(str(int(v)) for v in shape)


def _check_shape(got, image_shape, hint: str) -> None:
    k, h, w = (int(v) for v in image_shape)
    got = tuple(int(v) for v in got)
    if got[0] != k:
        raise InputError(f"test images have {got[0]} channel(s) ({_shape(got)}), the file's images {k} "
                         f"({_shape(image_shape)}); channels are not converted")
    if got[1:] != (h, w):
        raise InputError(f"test images are {_shape(got[1:])} pixels, the file's images {h}x{w}{hint}")


def mismatch_of(test: Source | TestFile, class_names=None, dataset: str | None = None) -> str | None:
    """Why ``test`` is of other data than a file with ``class_names`` and ``source_dataset``
    ``dataset`` (module docstring), or ``None``."""
    ours = test.class_names if isinstance(test, TestFile) or test.classes_declared else None
    if ours is not None and class_names is not None:
        if same_class_names(list(ours), list(class_names)):
            return None
        return f"the test set's classes ({names_preview(ours)}) are not the file's ({names_preview(class_names)})"
    if test.dataset and dataset and not same_dataset(test.dataset, dataset):
        return f"the test set is {test.dataset!r}, the file's images come from {dataset!r}"
    return None


def check_test_fits(test: Source | TestFile, image_shape, num_classes: int, *, class_names=None,
                    dataset: str | None = None, allow_mismatch: bool = False) -> str | None:
    """Refuse test data that does not fit the file (one line naming both sides): other channels
    or image size, another number of declared classes, labels outside ``0..C-1``; and, where the
    file's ``class_names`` or ``dataset`` (its ``source_dataset``) are given, test data of another
    dataset (:func:`mismatch_of`) unless ``allow_mismatch``, which returns the mismatch as a
    note instead (``None`` when there is none). (A test file's labels lie in ``0..C-1`` by its
    own rules; each read checks them.)"""
    _check_fits(test, image_shape, num_classes)
    mismatch = mismatch_of(test, class_names, dataset)
    if mismatch is not None and not allow_mismatch:
        raise InputError(f"{mismatch}: a test of other data says nothing; pass --allow-mismatch to test anyway")
    return mismatch


def _check_fits(test: Source | TestFile, image_shape, num_classes: int) -> None:
    if isinstance(test, TestFile):
        _check_shape(test.image_shape, image_shape, f"; {DLA_TEST_RESIZE_HINT}")
        if test.num_classes != num_classes:
            raise InputError(f"the test set has {test.num_classes} classes, the file {num_classes}")
        if test.num_images == 0:
            raise InputError("the test set holds no images")
        return
    h, w = (int(v) for v in image_shape[1:])
    _check_shape(test.images.shape[1:], image_shape, f"; pass --resize-test to resize them to {h}x{w} (bilinear, "
                                                     "antialiased)")
    if test.classes_declared and test.num_classes != num_classes:
        raise InputError(f"the test set has {test.num_classes} classes, the file {num_classes}")
    if len(test.labels) == 0:
        raise InputError("the test set holds no images")
    low, high = int(test.labels.min()), int(test.labels.max())
    if low < 0 or high >= num_classes:
        raise InputError(f"test labels must lie in 0..{num_classes - 1} (the file has {num_classes} classes), "
                         f"found {low}..{high}")


def open_test_file(path: Path) -> TestFile:
    """A ``.dla.h5`` test set's description (its header is checked as any file's is)."""
    with open_dla(require_regular_file(path, ".dla.h5 file")) as f:
        names = f.class_names
        dataset = f.attrs.get("source_dataset")
        return TestFile(str(path), f.num_images, f.num_classes, tuple(int(v) for v in f.image_shape), f.space,
                        tuple(float(v) for v in f.mean), tuple(float(v) for v in f.std),
                        f"{path.name} ({f.num_images} images, read a batch at a time)",
                        None if names is None else tuple(names), dataset if isinstance(dataset, str) else None)


def load_test_source(source: str, image_shape, resize: bool = False) -> Source | TestFile:
    """``--test``: ``digits-test`` (rendered at the file's size from the 8x8 originals, like the
    training split), an .npz or an ImageFolder, read at their own size; ``resize`` resizes them to
    the file's ``(H, W)`` (bilinear, antialiased), otherwise another size is refused by
    :func:`check_test_fits`; or a ``.dla.h5`` file (:class:`TestFile`, never resized). The training
    split of digits (``digits``, ``digits-train``) is refused."""
    k, h, w = (int(v) for v in image_shape)
    if source in TRAINING_SPLITS:
        raise InputError(f"--test {source} is the training split of scikit-learn's digits, the images the labeler "
                         "and the distilled sets are drawn from; test on digits-test, the held-out 20%")
    if source == "digits-test":
        test = digits(h, "test")
    else:
        path = Path(source)
        hint = "; pass --resize-test to resize them to the file's size"
        if path.is_dir():
            test = image_folder(path, h if resize and h == w else None, size_hint=hint)
        elif path.suffix == ".npz" and os.path.lexists(path):
            test = npz(require_regular_file(path, ".npz file"), None, square=False)
        elif path.suffix == ".h5" and os.path.lexists(path):
            if resize:
                raise InputError(f"--resize-test applies to an .npz, a folder or digits-test; {DLA_TEST_RESIZE_HINT}",
                                 path)
            return open_test_file(path)
        else:
            raise InputError(f"--test takes {TEST_SOURCES}; this is none of them", path)
    got = tuple(test.images.shape[2:])
    if resize and got != (h, w) and test.images.shape[1] == k:
        test = replace(test, images=resize_uint8(test.images, (h, w)),
                       description=f"{test.description}, resized {got[0]}x{got[1]} -> {h}x{w}")
    return test


def test_input(train: DLADataset, space: str = "pixel255", mean=None, std=None) -> Callable:
    """Stored test images in ``space`` (with their own ``mean``/``std`` when ``normalized``) -> the
    student's input, made as ``train``'s images are (module docstring)."""
    if "zca" in (train.space, space):
        if train.space != space:
            which = "the file's images are ZCA-whitened and the test images are not" if train.space == "zca" \
                else "the test images are ZCA-whitened and the file's images are not"
            raise InputError(f"{which}; the whitening is not stored in a file, so evaluate cannot bring one to the "
                             "other: test a ZCA file on a .dla.h5 test set whitened the same way")
        return lambda x: x.to(torch.float32)
    if space == "pixel255" and train.space == "pixel255":
        return train.to_float               # the training images' own arithmetic
    own_mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    own_std = None if std is None else torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def convert(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32, copy=True)
        if space == "pixel255":
            x.div_(255.0)
        elif space == "normalized":
            x.mul_(own_std.to(x.device)).add_(own_mean.to(x.device))
        return x.sub_(train.mean.to(x.device)).div_(train.std.to(x.device))
    return convert


class TestBatches:
    """The test set on the student's side: ``(model-ready images, labels)`` batches on ``device``.
    A :class:`Source` is held on ``device`` as uint8; a :class:`TestFile` is read a batch at a time."""

    def __init__(self, test: Source | TestFile, train: DLADataset, device):
        check_test_fits(test, train.image_shape, train.num_classes)
        self.device = torch.device(device)
        self.image_shape = tuple(train.image_shape)
        if isinstance(test, TestFile):
            self._file = DLADataset(test.path, dense=False)
            self._held = None
            self.num_images = test.num_images
            self.to_float = test_input(train, test.space, test.mean, test.std)
        else:
            self._file = None
            self._held = (torch.from_numpy(np.ascontiguousarray(test.images)).to(self.device),
                          torch.from_numpy(test.labels).to(self.device))
            self.num_images = len(test.labels)
            self.to_float = test_input(train)

    def __len__(self) -> int:
        return self.num_images

    def batches(self, batch_size: int, device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every test image once, in order, ``batch_size`` at a time (on the CPU at most
        :data:`CPU_TEST_PIXELS` input pixels a batch)."""
        device = torch.device(device)
        if device.type == "cpu":
            batch_size = max(1, min(batch_size, CPU_TEST_PIXELS // max(1, self.image_shape[1] * self.image_shape[2])))
        for start in range(0, self.num_images, batch_size):
            stop = min(self.num_images, start + batch_size)
            if self._held is not None:
                x, y = self._held[0][start:stop], self._held[1][start:stop]
            else:
                x, y, _, _ = self._file.batch(np.arange(start, stop), targets=False)
            yield self.to_float(x.to(device)), y.to(device)


@torch.no_grad()
def accuracy(model, test: TestBatches, device, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on every image of ``test``."""
    model.eval()
    correct = 0
    for x, y in test.batches(batch_size, device):
        correct += int((model(x).argmax(-1) == y).sum())
    model.train()
    return correct / len(test)
