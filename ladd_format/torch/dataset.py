"""``DLADataset``: a map-style torch Dataset over a D_LA file.

Safe with ``DataLoader(num_workers > 0)`` under fork and spawn: the constructor reads metadata
through a short-lived handle and closes it; each process opens its own handle on first access
(a handle inherited through fork is never used, and pickling drops it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import MissingFieldError, NoDenseLabelsError
from ..pixels import to_model_input
from ..reader import DLAFile, open_dla
from ..spec.names import DENSE_PATH, SOFT_LABELS_PATH
from .subsampler import SubSampler


class _InPlace:
    """A tensor whose ``/``, ``-`` (by tensors or numbers) act in place: so :func:`to_model_input`,
    written with operators for numpy and torch alike, runs without temporaries."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def __truediv__(self, other):
        self.tensor.div_(other)
        return self

    def __sub__(self, other):
        self.tensor.sub_(other)
        return self


def _row_tensors(rows: dict) -> dict:
    """A codec's stored rows of one item as tensors; unsigned index rows (uint16, uint32) as int32,
    which every torch collate and device handles."""
    return {key: torch.from_numpy(np.ascontiguousarray(value, dtype=np.int32 if value.dtype.kind == "u"
                                                       and value.dtype.itemsize > 1 else None))
            for key, value in rows.items()}


def _runs(distinct: np.ndarray) -> list[tuple[int, int]]:
    """Sorted distinct indices -> the ``[start, stop)`` runs of consecutive values that cover them
    exactly, in order (so the runs' rows, concatenated, are the rows of ``distinct``)."""
    breaks = np.flatnonzero(np.diff(distinct) != 1) + 1
    return [(int(run[0]), int(run[-1]) + 1) for run in np.split(distinct, breaks) if run.size]


class DLADataset(Dataset):
    """Items ``(image, label, dense)`` — or ``(image, label, dense, soft)`` with ``soft_labels=True``,
    or ``(image, label)`` with ``dense=False``.

    - image: ``(K, H, W)`` float32. uint8 pixels are divided by 255; ``pixel255``/``pixel01`` images
      are then normalised with the file's mean/std unless ``normalize=False``; ``normalized`` and
      ``zca`` images are returned as stored.
    - label: int, the hard label.
    - dense: ``(N*N, C)`` float32 probabilities, decoded from any codec.
    - soft: ``(C,)`` float32 probabilities (logits go through softmax at temperature 1, spec 4.3).

    With ``stored=True`` an item is what the file stores instead, for loaders whose workers should
    hand little across processes (a 224 px image is 150 KB as uint8, 602 KB as float32; top-k dense
    labels are a few hundred bytes, their decoded ``(25, 1000)`` floats 100 KB): the image as stored
    (uint8 or float tensor, not normalised, no ``transform``) and the dense labels as the codec's
    stored rows, ``{name: tensor}`` (index rows as int32). :meth:`decode_batch` then turns a
    collated batch into what the default items hold, on the training device.

    Args:
        path: the ``.dla.h5`` file.
        dense: require and return dense labels (a plain set D raises :class:`NoDenseLabelsError`).
        soft_labels: also return the global soft labels.
        in_memory: read everything once at construction (distilled sets are small): images as
            stored, dense labels encoded (decoded per item, or per :meth:`batch`).
        transform: optional callable applied to the image tensor after normalisation.
        check_rows: check every item against its row digest (spec 2.2; on by default: a damaged
            item raises a ``LaddError`` instead of reaching your model).
    """

    def __init__(self, path: str | os.PathLike, *, normalize: bool = True, dense: bool = True,
                 soft_labels: bool = False, in_memory: bool = False, transform=None, check_rows: bool = True,
                 stored: bool = False):
        self.path = Path(path)
        self.check_rows = check_rows
        self.normalize = normalize
        self.want_dense = dense
        self.want_soft = soft_labels
        self.transform = transform
        self.stored = stored
        if stored and transform is not None:
            raise ValueError("stored=True items are not normalised, so a transform cannot apply; apply it after "
                             "decode_batch")
        with open_dla(self.path, check_rows=check_rows) as f:
            if dense and not f.has_dense:
                raise NoDenseLabelsError("no dense labels (this is a plain distilled set D): run `ladd augment` "
                                         "first, or pass dense=False", self.path, DENSE_PATH)
            if soft_labels and not f.has_soft_labels:
                raise MissingFieldError("no global soft labels in this file", self.path, SOFT_LABELS_PATH)
            self.num_images = f.num_images
            self.num_classes = f.num_classes
            self.image_shape = f.image_shape
            self.space = f.space
            self.class_names = f.class_names
            self.soft_kind = f.soft_kind
            self.boxes = f.boxes if f.has_dense else None
            self.codec = f.codec if f.has_dense else None
            k = self.image_shape[0]
            self.mean = torch.as_tensor(f.mean, dtype=torch.float32).view(k, 1, 1)
            self.std = torch.as_tensor(f.std, dtype=torch.float32).view(k, 1, 1)
            self._memory = self._read_all(f) if in_memory else None
        self._file: DLAFile | None = None
        self._pid: int | None = None

    @property
    def in_memory(self) -> bool:
        """Whether the set was read into memory at construction (``in_memory=True``)."""
        return self._memory is not None

    # -- reading --------------------------------------------------------------------------
    def _read_all(self, f: DLAFile) -> dict:
        """The set as stored: images in their dtype (uint8: 4x smaller than float32) and the dense
        labels as the codec stores them (top-k: a few % of the decoded floats); decoded per item
        or per :meth:`batch`."""
        out = {"images": f.images(), "labels": f.labels()}
        if self.want_dense:
            out["dense"] = f.dense_stored()
        if self.want_soft:
            out["soft"] = f.soft_labels()
        return out

    def batch(self, indices, *, targets: bool = True) -> tuple:
        """Items ``indices`` as one batch, not yet on a device: ``(images as stored, labels int64,
        dense float32 or None, soft float32 or None)``; the images go through :meth:`to_float` on the
        training device (the uint8 ones cross to it as uint8). ``targets=False`` leaves out the
        dense and soft labels (nothing is decoded). An ``in_memory`` dataset gathers from memory
        (all its items in order share the held arrays' memory, not copied: treat them as
        read-only); otherwise the items are read from the file (consecutive indices in one read
        each, every row checked as :meth:`__getitem__` checks it), so only the batch is held."""
        idx = np.asarray(indices, dtype=np.int64)
        stored = self._gather(idx, targets)
        images = torch.from_numpy(np.ascontiguousarray(stored["images"]))
        labels = torch.from_numpy(stored["labels"])
        dense, soft = self._decode_targets(stored) if targets else (None, None)
        return images, labels, dense, soft

    def targets(self, indices) -> tuple:
        """The dense and soft labels of items ``indices``, decoded: ``(dense float32 or None, soft
        float32 or None)`` (the images are not gathered; from memory, or read from the file)."""
        idx = np.asarray(indices, dtype=np.int64)
        return self._decode_targets(self._gather(idx, True, images=False))

    def _decode_targets(self, stored: dict) -> tuple:
        dense = soft = None
        if self.want_dense:
            dense = torch.from_numpy(self.codec.decode(stored["dense"], self.num_classes).astype(np.float32,
                                                                                                copy=False))
        if self.want_soft:
            soft = torch.from_numpy(stored["soft"])
            soft = torch.softmax(soft, -1) if self.soft_kind == "logits" else soft
        return dense, soft

    def _gather(self, idx: np.ndarray, targets: bool, images: bool = True) -> dict:
        """Items ``idx`` as stored: ``{"images", "labels", "dense": {rows}, "soft"}`` (the targets
        only when ``targets``, the images only when ``images``)."""
        if idx.ndim != 1:
            raise ValueError(f"indices must be one-dimensional, got shape {idx.shape}")
        if idx.size and (idx.min() < -self.num_images or idx.max() >= self.num_images):
            raise IndexError(f"indices out of range for {self.num_images} images")
        idx = np.where(idx < 0, idx + self.num_images, idx)
        want = {"labels"} | ({"images"} if images else set())
        if targets:
            want |= {k for k, on in (("dense", self.want_dense), ("soft", self.want_soft)) if on}
        if self._memory is not None:
            if len(idx) == self.num_images and np.array_equal(idx, np.arange(self.num_images)):
                # the whole set in order: the held arrays themselves (no second copy of a large set)
                return {key: value for key, value in self._memory.items() if key in want}
            return {key: ({k: v[idx] for k, v in value.items()} if key == "dense" else value[idx])
                    for key, value in self._memory.items() if key in want}
        f = self._handle()
        distinct, inverse = np.unique(idx, return_inverse=True)
        runs = _runs(distinct) or [(0, 0)]       # no index: one empty read gives the empty shapes
        parts: dict[str, list] = {key: [] for key in want}
        for start, stop in runs:
            if "images" in want:
                parts["images"].append(f.images(start, stop))
            parts["labels"].append(f.labels(start, stop))
            if "dense" in want:
                parts["dense"].append(f.dense_stored(start, stop))
            if "soft" in want:
                parts["soft"].append(f.soft_labels(start, stop))
        # the runs' rows are the rows of ``distinct``; ``inverse`` puts them in the order asked for
        return {key: ({n: np.concatenate([v[n] for v in value])[inverse] for n in value[0]} if key == "dense"
                      else np.concatenate(value)[inverse])
                for key, value in parts.items()}

    def _handle(self) -> DLAFile:
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            self._file = open_dla(self.path, check_rows=self.check_rows)  # one handle per process, opened lazily
            self._pid = pid
        return self._file

    def _read(self, i: int) -> dict:
        """Item ``i`` as numpy arrays; ``dense`` decoded, or (``stored=True``) the codec's rows."""
        if self._memory is not None:
            item = {key: value[i] for key, value in self._memory.items() if key != "dense"}
            rows = {key: value[i:i + 1] for key, value in self._memory["dense"].items()} if self.want_dense else None
        else:
            f = self._handle()
            item = {"images": f.images(i, i + 1)[0], "labels": f.labels(i, i + 1)[0]}
            rows = f.dense_stored(i, i + 1) if self.want_dense else None
            if self.want_soft:
                item["soft"] = f.soft_labels(i, i + 1)[0]
        if rows is not None:
            item["dense"] = ({key: value[0] for key, value in rows.items()} if self.stored
                             else self.codec.decode(rows, self.num_classes)[0])
        return item

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int):
        i = int(index)
        if i < 0:
            i += self.num_images
        if not 0 <= i < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        item = self._read(i)
        image = torch.from_numpy(np.ascontiguousarray(item["images"]))
        if not self.stored:
            image = self.to_float(image)
            if self.transform is not None:
                image = self.transform(image)
        out = [image, int(item["labels"])]
        if self.want_dense:
            out.append(_row_tensors(item["dense"]) if self.stored
                       else torch.from_numpy(np.ascontiguousarray(item["dense"], dtype=np.float32)))
        if self.want_soft:
            soft = torch.from_numpy(np.ascontiguousarray(item["soft"], dtype=np.float32))
            out.append(torch.softmax(soft, -1) if self.soft_kind == "logits" else soft)
        return tuple(out)

    def decode_batch(self, images: torch.Tensor, dense: dict | None = None, device=None) -> tuple:
        """A collated ``stored=True`` batch -> ``(images, dense)`` as the default items hold them, on
        ``device`` (default: where the images are): images to float and normalised
        (:meth:`to_float`), the stored dense rows decoded by the codec's ``decode_tensor``
        (``None`` stays ``None``)."""
        device = images.device if device is None else torch.device(device)
        x = self.to_float(images.to(device, non_blocking=True))
        probs = None
        if dense is not None:
            rows = {key: value.to(device, non_blocking=True) for key, value in dense.items()}
            probs = self.codec.decode_tensor(rows, self.num_classes)
        return x, probs

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """Stored images (one ``(K,H,W)`` or a batch) -> float32 as the dataset returns them:
        :func:`~ladd_format.pixels.to_model_input`'s arithmetic, in the same order, done in place on
        one new float32 tensor (a batch of 256 images at 224 px is 154 MB: one allocation, not four)."""
        x = images.to(torch.float32, copy=True)
        out = to_model_input(_InPlace(x), self.space, self.mean.to(images.device), self.std.to(images.device),
                             apply_normalization=self.normalize)
        return out.tensor

    @property
    def sampler(self) -> SubSampler:
        """The file's sub-sampler S (its boxes), for :func:`ladd_loss` or your own loop."""
        if self.boxes is None:
            raise NoDenseLabelsError("no dense labels, hence no sub-image boxes: run `ladd augment` first",
                                     self.path, DENSE_PATH)
        return SubSampler(self.boxes, self.image_shape[1:])

    # -- pickling (spawned DataLoader workers) ---------------------------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown; nothing useful to report
            pass
