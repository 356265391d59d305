"""Read an SRe2L/CDA, G-VBSM or EDC relabel folder, or LPLD's variant of SRe2L's, into checked numpy arrays.

This is the reading half of the SRe2L relabel converter (:mod:`.convert` writes the stream). The
layout (``docs/upstream-formats.md`` has the upstream facts)::

    <root>/epoch_{e}/batch_{b}.tar        e = 0..E-1, b = 0..ceil(N/B)-1, one torch.save each
    <root>/sampler_indices_epoch.json     LPLD only: {"<e>": [dataset indices in generation order]}

Each file is a ``torch.save`` list of six: crop fractions (float32 (B, 4), ``(top/H, left/W,
height/H, width/W)`` of the source image), flips (bool (B,)), the CutMix/MixUp partner permutation
over batch slots (int64 (B,)) or None, the mix weight (a float) or None, the CutMix box (four numpy
int64 upstream names ``bbx1, bby1, bbx2, bby2`` but which index ``row1, col1, row2, col2``: rows
first, half-open, in pixels of the crop after the flip) or None, and the teacher's logits of the
mixed crops ((B, C) float16 or float32).

G-VBSM and EDC write the same six and append the image index of every slot; the layout is told by
the list's length (upstream: ``relabel/generate_soft_label_with_db.py`` of
shaoshitong/G_VBSM_Dataset_Condensation and shaoshitong/EDC, ``batch_config = [...]`` before
``torch.save``)::

    "gvbsm"  7: the six, then (6) the image index: int64 (B,), ImageFolder sample numbers (the
                DataLoader's collated ``index``); G-VBSM (every branch), EDC's CIFAR and Tiny branches
    "edc"    8: the seven, then (7) EDC's patch order: (B, 2, k) integers, written by its ImageNet
                branches; their relabel script runs ``ShufflePatchesWithIndex`` with
                ``ap_shuffle=False``, so no patch is shuffled and every value is 0 (int32 (B, 2, 2))

Each epoch of an indexed folder is one pass of ``RandomSampler`` (without replacement,
``drop_last=False``) over the N images, so its indices are a permutation of 0..N-1; every index is
checked to lie in 0..N-1 and :meth:`RelabelFolder.batches` refuses an index seen twice in an epoch.
A non-zero patch order means the teacher saw patch-shuffled crops, which a spec 1.2 stream cannot
record: such a file is refused. One layout per folder: every file holds a list of the first file's
length. EDC's ImageNet branches also cut their crops from a float tensor (``ToTensor`` first, then
``resized_crop(..., antialias=True)``) and divide the box by the sides swapped (``top/W, left/H,
height/W, width/H``); :mod:`.convert` turns that into pixels.

Nothing in the folder is trusted. :func:`scan_relabel_folder` reads the folder's names and two
files and states its shape, as SRe2L's own reader infers it: E from the epoch folders (0..E-1, no
gap), the batch files sorted by their integer suffix (0..nb-1, no gap, the same count in every
epoch), B from ``len(flip)`` of epoch_0/batch_0, N from the last batch's length (every batch is B
long except the last, which is as long in every epoch). Every file is loaded with
``torch.load(weights_only=True)`` and, beyond torch's own tensor globals, only numpy's int64 scalar
(its reconstructor under numpy 1's and numpy 2's names, ``numpy.dtype`` and the int64 dtype class:
:func:`ladd_format.converters.inputs.load_pt`); each list is checked against the folder's shape
(:meth:`RelabelFolder.batches`). A defect is one :class:`~ladd_format.errors.InputError` line naming
the file and the problem.

LPLD (label pruning) writes the same batch files with ``drop_last=True`` and stops after a budget of
batches, so the last epoch usually holds fewer batch files (a prefix 0..k-1); it stores the sampler's
order as ``sampler_indices_epoch.json`` (batch b of epoch e is the slice ``[b*B, (b+1)*B)`` of that
epoch's list). When the json is present, each epoch may hold any prefix of the full count, the json
must list exactly as many indices as the epoch's batches hold, and every index must be in 0..M-1
and appear once per epoch. Training then draws batches from that pool; which ones is not stored.

Memory: :meth:`RelabelFolder.batches` holds one file at a time; :func:`read_relabel_folder` holds a
whole folder and refuses one larger than a stated number of bytes.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..converters.inputs import load_pt
from ..errors import InputError
from ..provenance import file_sha256
from ..spec.limits import MAX_CLASSES, MAX_CROP_SIDE, MAX_STREAM_BATCH, MAX_STREAM_EPOCHS
from .boxes import MAX_SOURCE_SIDE

# The bounds that are facts of the format are the spec's (2.4): epoch folders <= MAX_STREAM_EPOCHS (E),
# slots of one batch <= MAX_STREAM_BATCH, mix boxes inside crops of sides <= MAX_CROP_SIDE. The ones
# below bound the upstream input only.
#: batch files one epoch folder may hold
MAX_BATCHES_PER_EPOCH = 1 << 16
#: images a relabel folder may cover (the association's M)
MAX_IMAGES = 1 << 26
#: bytes of one batch file (a 1,024-slot batch of 21,841 float32 logits is 90 MB)
MAX_BATCH_FILE_BYTES = 256 << 20
#: bytes of ``sampler_indices_epoch.json``
MAX_SAMPLER_JSON_BYTES = 256 << 20
#: other entries (files, folders) tolerated beside the epoch folders or the batch files
MAX_OTHER_ENTRIES = 64
#: bytes of batch files :func:`read_relabel_folder` holds in memory at once
MAX_READ_BYTES = 2 << 30
#: float32 rounding allowed when two fractions add up to the image's edge (two ulps at 1.0)
EDGE_SLACK = 2.0 ** -22

#: the sides ``k`` of EDC's patch order (element 7, (B, 2, k)) accepted
MAX_PATCH_FACTOR = 64
#: EDC's fractions are of the other side (``top/W``...): at most one side over the other (sides <= MAX_SOURCE_SIDE)
MAX_SWAPPED_FRACTION = float(MAX_SOURCE_SIDE)

SAMPLER_JSON = "sampler_indices_epoch.json"
#: a folder's layouts: SRe2L/CDA (no index), LPLD (SRe2L's files + SAMPLER_JSON), G-VBSM and EDC (an index per slot)
LAYOUT_SRE2L, LAYOUT_LPLD, LAYOUT_GVBSM, LAYOUT_EDC = "sre2l", "lpld", "gvbsm", "edc"
#: the layout a batch file's list length tells
LIST_LAYOUTS = {6: LAYOUT_SRE2L, 7: LAYOUT_GVBSM, 8: LAYOUT_EDC}
#: the layouts whose files store the image index of every slot (element 6)
INDEXED_LAYOUTS = (LAYOUT_GVBSM, LAYOUT_EDC)
LIST_NAMES = {LAYOUT_SRE2L: "SRe2L's list of six", LAYOUT_GVBSM: "G-VBSM's list of seven (+ the image index)",
              LAYOUT_EDC: "EDC's list of eight (+ the image index and a patch order)"}
EPOCH_NAME = re.compile(r"epoch_(\d{1,9})")
BATCH_NAME = re.compile(r"batch_(\d{1,9})\.tar")
MIX_KINDS = ("cutmix", "mixup", "none")
LOGIT_DTYPES = {torch.float16: np.dtype("float16"), torch.float32: np.dtype("float32")}


@dataclass(frozen=True, eq=False)
class RelabelBatch:
    """One checked batch file: slot s of this batch is slot ``s`` of epoch ``epoch``'s batch ``batch``."""

    epoch: int
    batch: int
    coords: np.ndarray              # float32 (b, 4): top/H, left/W, height/H, width/W of the source image
    flip: np.ndarray                # bool (b,): the resized crop flipped horizontally
    mix_index: np.ndarray | None    # int64 (b,): slot s takes slot mix_index[s]'s box (CutMix) / blend (MixUp)
    mix_lam: float | None           # the Beta draw (never used by SRe2L's training for CutMix)
    mix_box: tuple[int, int, int, int] | None   # (row1, col1, row2, col2), half-open, crop pixels after the flip
    logits: np.ndarray              # (b, C) float16 or float32: the teacher's raw logits of the mixed crops
    indices: np.ndarray | None      # int64 (b,): the slots' ImageFolder indices as stored (LPLD's JSON, G-VBSM's
                                    # and EDC's element 6), else None (SRe2L: replayed by .replay)


class _Loaded(NamedTuple):
    """One batch file's elements, each checked on its own (:func:`_load_batch`)."""

    coords: np.ndarray
    flip: np.ndarray
    mix_index: np.ndarray | None
    mix_lam: float | None
    mix_box: tuple[int, int, int, int] | None
    logits: np.ndarray
    indices: np.ndarray | None      # element 6 ("gvbsm", "edc")
    layout: str                     # LIST_LAYOUTS of the list's length


@dataclass(frozen=True, eq=False)
class RelabelFolder:
    """The checked shape of a relabel folder (:func:`scan_relabel_folder`); its batches are read on demand."""

    root: Path
    layout: str                     # "sre2l" (no index), "lpld" (SAMPLER_JSON), "gvbsm" or "edc" (element 6)
    epochs: int                     # E
    batch_size: int                 # B: len(flip) of epoch_0/batch_0
    batch_counts: tuple[int, ...]   # batch files per epoch (all nb for "sre2l")
    last_batch_size: int            # length of the last batch of a full epoch (1..B)
    num_images: int | None          # N: (nb-1)*B + last ("sre2l", "gvbsm", "edc"); "lpld": the M given, else None
    num_classes: int                # C
    logits_dtype: np.dtype          # float16 or float32, the same in every file
    mix: str                        # "cutmix", "mixup" or "none", the same in every file
    crop_size: tuple[int, int] | None   # the crop's (H, W) when given: bounds the mix boxes
    stored_indices: tuple[np.ndarray, ...] | None   # "lpld": per epoch, int64, generation order

    @property
    def indexed(self) -> bool:
        """Whether every batch file stores its slots' image index (G-VBSM, EDC)."""
        return self.layout in INDEXED_LAYOUTS

    @property
    def batches_per_epoch(self) -> int:
        """nb: the batch files of a full epoch."""
        return max(self.batch_counts)

    def path(self, epoch: int, batch: int) -> Path:
        return self.root / f"epoch_{epoch}" / f"batch_{batch}.tar"

    def batch_length(self, epoch: int, batch: int) -> int:
        """The slots batch ``batch`` of ``epoch`` must hold: B, but the last batch of a full epoch."""
        nb = self.batches_per_epoch
        return self.last_batch_size if batch == nb - 1 else self.batch_size

    def epoch_slots(self, epoch: int) -> int:
        return sum(self.batch_length(epoch, b) for b in range(self.batch_counts[epoch]))

    def read_batch(self, epoch: int, batch: int, sha256: str | None = None) -> RelabelBatch:
        """Batch ``batch`` of ``epoch``, loaded and checked against the folder's shape; with ``sha256``
        (the digest a first pass recorded for provenance) the file must still have it."""
        if not (0 <= epoch < self.epochs and 0 <= batch < self.batch_counts[epoch]):
            raise InputError(f"no batch {batch} in epoch {epoch}", self.root)
        path = self.path(epoch, batch)
        found = _load_batch(path, self.crop_size, sha256)
        _agree(found, path, self.batch_length(epoch, batch), self.num_classes, self.logits_dtype, self.mix,
               self.layout)
        indices = found.indices
        if self.indexed:
            _check_indices(indices, path, self.num_images)
        elif self.stored_indices is not None:
            start = batch * self.batch_size
            indices = self.stored_indices[epoch][start:start + self.batch_length(epoch, batch)]
        return RelabelBatch(epoch, batch, *found[:6], indices=indices)

    def batches(self, epochs: range | None = None, sha256: dict[str, str] | None = None) -> Iterator[RelabelBatch]:
        """Every batch of ``epochs`` (default all), in order, one file in memory at a time; ``sha256``
        (relative path -> digest, :meth:`relative`) the digests each file must still have. For an
        indexed folder (G-VBSM, EDC) an image index seen twice in one epoch is refused at the batch
        that repeats it: with every index in 0..N-1 and N slots, each epoch is then a permutation."""
        for epoch in epochs if epochs is not None else range(self.epochs):
            seen = np.zeros(self.num_images, dtype=bool) if self.indexed else None
            for batch in range(self.batch_counts[epoch]):
                digest = None if sha256 is None else sha256[self.relative(epoch, batch)]
                found = self.read_batch(epoch, batch, digest)
                if seen is not None:
                    _check_unseen(found.indices, seen, self.path(epoch, batch), epoch)
                yield found

    @staticmethod
    def relative(epoch: int, batch: int) -> str:
        """The batch file's path relative to the folder, POSIX separators (``epoch_0/batch_0.tar``)."""
        return f"epoch_{epoch}/batch_{batch}.tar"

    def file_bytes(self) -> int:
        return sum(os.stat(self.path(e, b)).st_size for e in range(self.epochs) for b in range(self.batch_counts[e]))


# -- the folder's names -----------------------------------------------------------------------------
def _listing(folder: Path, limit: int, what: str) -> list[os.DirEntry]:
    """The entries of ``folder`` (dot files left out), refused beyond ``limit``: the scan stops there."""
    entries = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                entries.append(entry)
                if len(entries) > limit:
                    raise InputError(f"holds more than {limit:,} {what}: refused before reading further", folder)
    except OSError as exc:
        raise InputError(f"cannot list the folder: {exc.strerror or type(exc).__name__}", folder) from None
    return entries


def _number(match: re.Match, entry: os.DirEntry, folder: Path) -> int:
    digits = match.group(1)
    if digits != str(int(digits)):
        raise InputError(f"{entry.name!r} has a leading zero; upstream writes the plain number", folder)
    return int(digits)


def _epoch_numbers(root: Path, max_epochs: int) -> tuple[list[int], bool]:
    entries = _listing(root, max_epochs + MAX_OTHER_ENTRIES, "entries")
    numbers, has_json = [], False
    for entry in entries:
        if entry.name == SAMPLER_JSON:
            has_json = True
            continue
        match = EPOCH_NAME.fullmatch(entry.name)
        if match is None:
            continue                        # not part of the layout (a log, the images...)
        if not entry.is_dir():
            raise InputError(f"{entry.name} is not a folder", root)
        numbers.append(_number(match, entry, root))
    if not numbers:
        raise InputError("no epoch_{e} folders: not an SRe2L-layout relabel folder", root)
    if len(numbers) > max_epochs:
        raise InputError(f"holds {len(numbers):,} epoch folders, more than the {max_epochs:,} accepted", root)
    missing = sorted(set(range(len(numbers))) - set(numbers))
    if missing:
        raise InputError(f"epoch folders must be epoch_0..epoch_{len(numbers) - 1} without a gap; "
                         f"epoch_{missing[0]} is missing ({len(missing)} missing)", root)
    return sorted(numbers), has_json


def _batch_count(folder: Path) -> int:
    entries = _listing(folder, MAX_BATCHES_PER_EPOCH + MAX_OTHER_ENTRIES, "entries")
    numbers = []
    for entry in entries:
        match = BATCH_NAME.fullmatch(entry.name)
        if match is None:
            raise InputError(f"unexpected entry {entry.name[:80]!r}: an epoch folder holds batch_{{b}}.tar files",
                             folder)
        try:
            info = entry.stat()
        except OSError as exc:
            raise InputError(f"cannot read {entry.name}: {exc.strerror or type(exc).__name__}", folder) from None
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{entry.name} is not a regular file", folder)
        if info.st_size > MAX_BATCH_FILE_BYTES:
            raise InputError(f"{entry.name} holds {info.st_size:,} bytes, more than the "
                             f"{MAX_BATCH_FILE_BYTES:,} a batch file may", folder)
        numbers.append(_number(match, entry, folder))
    if not numbers:
        raise InputError("holds no batch_{b}.tar files", folder)
    if len(numbers) > MAX_BATCHES_PER_EPOCH:
        raise InputError(f"holds {len(numbers):,} batch files, more than the {MAX_BATCHES_PER_EPOCH:,} accepted",
                         folder)
    missing = sorted(set(range(len(numbers))) - set(numbers))
    if missing:
        raise InputError(f"batch files must be batch_0..batch_{len(numbers) - 1}.tar without a gap; "
                         f"batch_{missing[0]}.tar is missing", folder)
    return len(numbers)


# -- one file ---------------------------------------------------------------------------------------
def _tensor(value, dtype: torch.dtype, what: str, path: Path) -> np.ndarray:
    if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
        raise InputError(f"{what} must be a dense tensor, found {type(value).__name__}", path)
    if value.dtype != dtype:
        raise InputError(f"{what} must be {str(dtype).removeprefix('torch.')}, found "
                         f"{str(value.dtype).removeprefix('torch.')}", path)
    return value.detach().cpu().numpy()


def _load_batch(path: Path, crop_size: tuple[int, int] | None, sha256: str | None = None) -> _Loaded:
    """The elements of one batch file, each checked on its own (:class:`_Loaded`): SRe2L's six, and
    G-VBSM's image index (element 6) and EDC's patch order (element 7) when the list holds them. With
    ``sha256``, the file must still have that digest (read just before it is loaded)."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise InputError(f"cannot read the batch file: {exc.strerror or type(exc).__name__}", path) from None
    if size > MAX_BATCH_FILE_BYTES:
        raise InputError(f"holds {size:,} bytes, more than the {MAX_BATCH_FILE_BYTES:,} a batch file may", path)
    if sha256 is not None:
        try:
            found = file_sha256(path)
        except OSError as exc:
            raise InputError(f"cannot read the batch file: {exc.strerror or type(exc).__name__}", path) from None
        if found != sha256:
            raise InputError("changed while it was being converted (its SHA-256 differs from the first read)", path)
    obj = load_pt(path, allow_numpy_scalars=True, scalar_dtypes=("int64",))
    if not isinstance(obj, (list, tuple)) or len(obj) not in LIST_LAYOUTS:
        found = f"a {type(obj).__name__} of {len(obj)}" if isinstance(obj, (list, tuple)) else type(obj).__name__
        raise InputError(f"an SRe2L batch file holds a list of six (coords, flip, mix index, mix lambda, mix box, "
                         f"logits), G-VBSM's seven (+ the image index), EDC's eight (+ a patch order), found {found}",
                         path)
    coords_t, flip_t, index_t, lam, box, logits_t = obj[:6]
    flip = _tensor(flip_t, torch.bool, "flip (element 1)", path)
    if flip.ndim != 1 or not 1 <= flip.shape[0] <= MAX_STREAM_BATCH:
        raise InputError(f"flip (element 1) must be (B,) with 1 <= B <= {MAX_STREAM_BATCH:,}, found {flip.shape}", path)
    b = flip.shape[0]
    coords = _tensor(coords_t, torch.float32, "coords (element 0)", path)
    if coords.shape != (b, 4):
        raise InputError(f"coords (element 0) must be ({b}, 4) as flip is {b} long, found {coords.shape}", path)
    _check_coords(coords, path, swapped=len(obj) == 8)
    mix_index = None
    if index_t is not None:
        mix_index = _tensor(index_t, torch.int64, "mix index (element 2)", path)
        if mix_index.shape != (b,) or not np.array_equal(np.sort(mix_index), np.arange(b)):
            raise InputError(f"mix index (element 2) must be a permutation of the {b} batch slots", path)
    if lam is not None:
        if type(lam) is not float or not 0.0 <= lam <= 1.0:
            raise InputError(f"mix lambda (element 3) must be a float in [0, 1], found "
                             f"{type(lam).__name__} {str(lam)[:40]}", path)
    mix_box = None if box is None else _check_box(box, crop_size, path)
    kinds = (mix_index is not None, lam is not None, mix_box is not None)
    if kinds not in ((True, True, True), (True, True, False), (False, False, False)):
        raise InputError("mix index, lambda and box (elements 2-4) must be all set (CutMix), index and lambda "
                         "(MixUp) or all None (no mix)", path)
    if isinstance(logits_t, torch.Tensor) and logits_t.dtype not in LOGIT_DTYPES:
        raise InputError(f"logits (element 5) must be float16 or float32, found "
                         f"{str(logits_t.dtype).removeprefix('torch.')}", path)
    logits = _tensor(logits_t, getattr(logits_t, "dtype", None), "logits (element 5)", path)
    if logits.ndim != 2 or logits.shape[0] != b or not 1 <= logits.shape[1] <= MAX_CLASSES:
        raise InputError(f"logits (element 5) must be ({b}, C) with 1 <= C <= {MAX_CLASSES:,}, found "
                         f"{logits.shape}", path)
    if not np.isfinite(logits).all():
        raise InputError("logits (element 5) hold NaN or infinity", path)
    indices = None
    if len(obj) >= 7:
        indices = _tensor(obj[6], torch.int64, "image index (element 6)", path)
        if indices.shape != (b,):
            raise InputError(f"image index (element 6) must be ({b},) as flip is {b} long, found {indices.shape}",
                             path)
        _check_indices(indices, path, None)
    if len(obj) == 8:
        _check_patch_order(obj[7], b, path)
    return _Loaded(coords, flip, mix_index, lam, mix_box, logits, indices, LIST_LAYOUTS[len(obj)])


def _check_indices(indices: np.ndarray, path: Path, num_images: int | None) -> None:
    """Element 6: every index in 0..num_images-1 (without a count, 0..MAX_IMAGES-1)."""
    top = MAX_IMAGES if num_images is None else num_images
    bad = (indices < 0) | (indices >= top)
    if bad.any():
        s = int(np.flatnonzero(bad)[0])
        within = (f"the {num_images:,} images of the folder's batches" if num_images is not None
                  else f"the {MAX_IMAGES:,} images accepted")
        raise InputError(f"image index (element 6) of slot {s} is {int(indices[s])}, outside 0..{top - 1:,} "
                         f"({within})", path)


def _check_unseen(indices: np.ndarray, seen: np.ndarray, path: Path, epoch: int) -> None:
    """An indexed epoch draws each image once: ``indices`` (in range) must not be in ``seen``, then are."""
    if seen[indices].any() or np.unique(indices).size != indices.size:
        here: set[int] = set()
        for twice in indices.tolist():          # the first slot whose image this epoch already holds
            if seen[twice] or twice in here:
                break
            here.add(twice)
        raise InputError(f"image index (element 6) {twice} appears twice in epoch {epoch}: each epoch is one pass "
                         "of RandomSampler over the images (each once), so the slots cannot be associated", path)
    seen[indices] = True


def _check_patch_order(value, b: int, path: Path) -> None:
    """Element 7 (EDC): (b, 2, k) integers, all 0 (no patch shuffled); any other value is a recorded shuffle."""
    if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
        raise InputError(f"patch order (element 7) must be a dense tensor, found {type(value).__name__}", path)
    if value.dtype not in (torch.int32, torch.int64):
        raise InputError(f"patch order (element 7) must be int32 or int64, found "
                         f"{str(value.dtype).removeprefix('torch.')}", path)
    if value.ndim != 3 or value.shape[0] != b or value.shape[1] != 2 or not 1 <= value.shape[2] <= MAX_PATCH_FACTOR:
        raise InputError(f"patch order (element 7) must be ({b}, 2, k) with 1 <= k <= {MAX_PATCH_FACTOR}, found "
                         f"{tuple(value.shape)}", path)
    if bool(value.any()):
        raise InputError("patch order (element 7) is not all 0: the teacher saw patch-shuffled crops (EDC's "
                         "ShufflePatchesWithIndex), which a relabel stream cannot record (spec 1.2 has no "
                         "patch-shuffle field)", path)


def _check_coords(coords: np.ndarray, path: Path, swapped: bool = False) -> None:
    """Element 0: fractions of a box inside the image. ``swapped`` (EDC's ImageNet layout): fractions of
    (W, H, W, H), which exceed 1 on a non-square image; only their sign and a ratio bound are checked
    here, the box against the image where its size is known (:func:`.convert.edc_fractions_to_pixels`)."""
    if not np.isfinite(coords).all():
        raise InputError("coords (element 0) hold NaN or infinity", path)
    c = coords.astype(np.float64)
    if swapped:
        bad = (c < 0).any(axis=1) | (c > MAX_SWAPPED_FRACTION).any(axis=1) | (c[:, 2] <= 0) | (c[:, 3] <= 0)
        if bad.any():
            s = int(np.flatnonzero(bad)[0])
            raise InputError(f"coords (element 0) of slot {s} ({', '.join(f'{v:.6g}' for v in coords[s])}) are not "
                             f"EDC's fractions of (W, H, W, H): in [0, {MAX_SWAPPED_FRACTION:g}], height and width "
                             "> 0", path)
        return
    bad = ((c < 0) | (c > 1)).any(axis=1) | (c[:, 2] <= 0) | (c[:, 3] <= 0)
    bad |= (c[:, 0] + c[:, 2] > 1 + EDGE_SLACK) | (c[:, 1] + c[:, 3] > 1 + EDGE_SLACK)
    if bad.any():
        s = int(np.flatnonzero(bad)[0])
        raise InputError(f"coords (element 0) of slot {s} ({', '.join(f'{v:.6g}' for v in coords[s])}) are not a "
                         "box inside the image: fractions in [0, 1], height and width > 0, top + height <= 1 and "
                         "left + width <= 1", path)


def _check_box(box, crop_size: tuple[int, int] | None, path: Path) -> tuple[int, int, int, int]:
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in box):
        raise InputError("mix box (element 4) must be four integers (row1, col1, row2, col2) or None", path)
    r1, c1, r2, c2 = (int(v) for v in box)
    rows, cols = crop_size if crop_size is not None else (MAX_CROP_SIDE, MAX_CROP_SIDE)
    if not (0 <= r1 <= r2 <= rows and 0 <= c1 <= c2 <= cols):
        within = f"the {rows}x{cols} crop" if crop_size is not None else f"0..{MAX_CROP_SIDE}"
        raise InputError(f"mix box (element 4) (row1 {r1}, col1 {c1}, row2 {r2}, col2 {c2}) is not a half-open "
                         f"box within {within}", path)
    return r1, c1, r2, c2


def _mix_kind(found) -> str:
    return "none" if found[2] is None else "cutmix" if found[4] is not None else "mixup"


def _agree(found: _Loaded, path: Path, length: int, classes: int, dtype: np.dtype, mix: str, layout: str) -> None:
    """A batch's elements against the folder's shape (what the first file set)."""
    expected = LAYOUT_SRE2L if layout == LAYOUT_LPLD else layout     # LPLD's files are SRe2L's
    if found.layout != expected:
        raise InputError(f"holds {LIST_NAMES[found.layout]} where epoch_0/batch_0 holds {LIST_NAMES[expected]}: one "
                         "layout per folder", path)
    b = found[1].shape[0]
    if b != length:
        raise InputError(f"holds {b} slots where the folder's batches hold {length} (B from epoch_0/batch_0, "
                         "every batch B long but the last of an epoch)", path)
    logits = found[5]
    if logits.shape[1] != classes:
        raise InputError(f"logits have {logits.shape[1]:,} classes where epoch_0/batch_0's have {classes:,}", path)
    if logits.dtype != dtype:
        raise InputError(f"logits are {logits.dtype} where epoch_0/batch_0's are {dtype}", path)
    if _mix_kind(found) != mix:
        raise InputError(f"mixes by {_mix_kind(found)} where epoch_0/batch_0 mixes by {mix}", path)


# -- LPLD's stored order ----------------------------------------------------------------------------
def _sampler_indices(path: Path, counts: list[int], lengths: list[int], bound: int, exact: int | None
                     ) -> tuple[np.ndarray, ...]:
    """``sampler_indices_epoch.json``: one list per epoch folder, ``lengths[e]`` indices in 0..bound-1, each
    once per epoch."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or type(exc).__name__}", path) from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError("is not a regular file", path)
    if info.st_size > MAX_SAMPLER_JSON_BYTES:
        raise InputError(f"holds {info.st_size:,} bytes, more than the {MAX_SAMPLER_JSON_BYTES:,} accepted", path)
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise InputError(f"not readable JSON: {str(exc)[:120]}", path) from None
    if not isinstance(data, dict):
        raise InputError(f"must be an object {{\"<epoch>\": [indices]}}, found {type(data).__name__}", path)
    keys = [str(e) for e in range(len(counts))]
    if set(data) != set(keys):
        extra = sorted(set(data) - set(keys), key=str)
        absent = [k for k in keys if k not in data]
        what = (f"epoch {absent[0]!r} has no list" if absent
                else f"names epoch {str(extra[0])[:20]!r}, which has no folder")
        raise InputError(f"must list exactly the epochs 0..{len(counts) - 1} of the epoch folders: {what}", path)
    orders = []
    for e, key in enumerate(keys):
        value = data[key]
        if not isinstance(value, list):
            raise InputError(f"epoch {key}: must be a list of indices, found {type(value).__name__}", path)
        if len(value) != lengths[e]:
            raise InputError(f"epoch {key}: lists {len(value):,} indices where its {counts[e]} batch files hold "
                             f"{lengths[e]:,} slots", path)
        order = None
        if all(type(v) is int for v in value):          # JSON gives int, float, bool, str, None, list, dict
            try:
                order = np.array(value, dtype=np.int64)
            except OverflowError:
                pass
        if order is None:
            raise InputError(f"epoch {key}: indices must be integers (int64)", path)
        if order.size and (order.min() < 0 or order.max() >= bound):
            bad = order[(order < 0) | (order >= bound)][0]
            limit = f"the {exact:,} images" if exact is not None else f"the {bound:,} images the batches allow"
            raise InputError(f"epoch {key}: index {bad} is outside 0..{bound - 1} ({limit})", path)
        if np.unique(order).size != order.size:
            raise InputError(f"epoch {key}: an index appears twice; the sampler draws each image once per epoch", path)
        orders.append(order)
    return tuple(orders)


# -- the folder -------------------------------------------------------------------------------------
def scan_relabel_folder(root: str | os.PathLike, num_images: int | None = None,
                        crop_size: int | tuple[int, int] | None = None,
                        max_epochs: int = MAX_STREAM_EPOCHS) -> RelabelFolder:
    """The checked shape of the relabel folder at ``root`` (see the module docstring); reads the names,
    epoch_0/batch_0, the last batch of a full epoch and, for LPLD, ``sampler_indices_epoch.json``.

    ``num_images`` (M, the image folder's count) is checked against the batches when given: SRe2L's,
    G-VBSM's and EDC's N must equal it; LPLD's stored indices must lie in 0..M-1 (without it, in
    0..the most images the batches allow). The layout is the first file's (the list's length), or
    "lpld" beside the JSON; G-VBSM's and EDC's indices in the two files read must lie in 0..N-1.
    ``crop_size`` (the teacher's input side, or (H, W)) bounds the mix boxes;
    without it they are bounded by 0..65,536. The batches themselves are read by
    :meth:`RelabelFolder.batches`."""
    root = Path(root)
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            raise InputError("is not a folder; a relabel folder holds epoch_{e}/batch_{b}.tar", root)
    except OSError as exc:
        raise InputError(f"cannot read the folder: {exc.strerror or type(exc).__name__}", root) from None
    if crop_size is not None:
        crop = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        if len(crop) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_CROP_SIDE
                                     for v in crop):
            raise InputError(f"the crop size must be 1..{MAX_CROP_SIDE} (or two such), found {crop_size!r}", root)
        crop_size = crop
    if num_images is not None and (isinstance(num_images, bool) or not isinstance(num_images, int)
                                   or not 1 <= num_images <= MAX_IMAGES):
        raise InputError(f"the image count must be an integer in 1..{MAX_IMAGES:,}, found {num_images!r}", root)
    epochs, has_json = _epoch_numbers(root, max_epochs)
    counts = [_batch_count(root / f"epoch_{e}") for e in epochs]
    nb = max(counts)
    if not has_json and any(c != nb for c in counts):
        e = next(e for e, c in enumerate(counts) if c != counts[0])
        raise InputError(f"epoch_{e} holds {counts[e]} batch files where epoch_0 holds {counts[0]}: every epoch "
                         "of an SRe2L folder holds the same batches (no sampler_indices_epoch.json: not LPLD)", root)
    first_path = root / "epoch_0" / "batch_0.tar"
    first = _load_batch(first_path, crop_size)
    if has_json and first.layout != LAYOUT_SRE2L:
        raise InputError(f"holds {LIST_NAMES[first.layout]} beside {SAMPLER_JSON}: an image index in the batch files "
                         "and LPLD's stored order are two associations; remove one", first_path)
    layout = LAYOUT_LPLD if has_json else first.layout
    batch_size, classes, dtype, mix = first[1].shape[0], first[5].shape[1], first[5].dtype, _mix_kind(first)
    full = counts.index(nb)
    last = batch_size
    if nb > 1:
        last_path = root / f"epoch_{full}" / f"batch_{nb - 1}.tar"
        found = _load_batch(last_path, crop_size)
        last = found[1].shape[0]
        if last > batch_size:
            raise InputError(f"the last batch holds {last} slots, more than the batch size {batch_size} "
                             "(len(flip) of epoch_0/batch_0)", last_path)
        _agree(found, last_path, last, classes, dtype, mix, layout)
    stored = None
    n_batches = (nb - 1) * batch_size + last
    if layout != LAYOUT_LPLD:
        if num_images is not None and num_images != n_batches:
            raise InputError(f"the batches hold {n_batches:,} images ({nb} batches of {batch_size}, the last "
                             f"{last}) but {num_images:,} were given", root)
        images = n_batches
        if first.indices is not None:
            _check_indices(first.indices, first_path, images)
            if nb > 1:
                _check_indices(found.indices, last_path, images)
    else:
        # LPLD drops each epoch's partial batch (drop_last) unless it prunes nothing: N < (nb + 1) * B
        bound = n_batches + batch_size - 1 if last == batch_size else n_batches
        if num_images is not None and not n_batches <= num_images <= bound:
            raise InputError(f"the batches hold {nb} batches of {batch_size} (the last {last}) a full epoch, "
                             f"which {num_images:,} images cannot give", root)
        lengths = [(c - 1) * batch_size + (last if c == nb else batch_size) for c in counts]
        stored = _sampler_indices(root / SAMPLER_JSON, counts, lengths, num_images or bound, num_images)
        images = num_images
    return RelabelFolder(root=root, layout=layout, epochs=len(epochs), batch_size=batch_size,
                         batch_counts=tuple(counts), last_batch_size=last, num_images=images,
                         num_classes=classes, logits_dtype=dtype, mix=mix, crop_size=crop_size,
                         stored_indices=stored)


def read_relabel_folder(root: str | os.PathLike, num_images: int | None = None,
                        crop_size: int | tuple[int, int] | None = None, max_epochs: int = MAX_STREAM_EPOCHS,
                        max_bytes: int = MAX_READ_BYTES) -> tuple[RelabelFolder, list[RelabelBatch]]:
    """The folder's shape and every batch, all checked; nothing is returned unless every file is good.
    A folder whose batch files add up to more than ``max_bytes`` is refused before any is loaded (use
    :meth:`RelabelFolder.batches` to stream it)."""
    folder = scan_relabel_folder(root, num_images=num_images, crop_size=crop_size, max_epochs=max_epochs)
    total = folder.file_bytes()
    if total > max_bytes:
        raise InputError(f"its batch files hold {total:,} bytes, more than the {max_bytes:,} read at once; "
                         "stream them batch by batch", folder.root)
    return folder, list(folder.batches())
