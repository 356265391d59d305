"""An SRe2L/CDA, G-VBSM or EDC relabel folder, or LPLD's, as a relabel stream (spec 4.7): what
``ladd convert sre2l EXP --relabel DIR`` stores beside the images.

:func:`prepare_stream` takes every decision before anything is written, and refuses, in one line,
a folder that cannot become a stream:

- *Shape* (:func:`~.sre2l.scan_relabel_folder`): epochs, batch files, B from ``len(flip)`` of
  epoch_0/batch_0 (``--batch-size``, when given, must agree: the files are the sampler's batches),
  N from the last batch; N must equal the images stored (SRe2L); LPLD's stored indices must lie in
  0..M-1. The stream's sizes are checked against spec 2.4 (E, NB, records of a batch x C, Q).
- *Image order*: SRe2L's reader is torchvision's ``ImageFolder`` on the image tree, whose samples
  are the class folders sorted by name and, inside each, the files walked and sorted by name
  (:func:`imagefolder_paths`). The ``sre2l`` converter stores ``new???`` folders by number and
  files in natural order (``id999`` before ``id1000``), which ImageFolder sorts the other way: the
  association is rebuilt in ImageFolder's order and mapped to the stored rows by relative path
  (:func:`imagefolder_order`). A tree whose ImageFolder samples are not exactly the stored images
  (a folder not named ``new???``, a ``.ppm`` or ``.gif`` file, a nested folder) is refused.
- *Association*: SRe2L: replayed once, explicitly (:func:`~.replay.sre2l_epoch_orders`: the seed,
  two ``randperm`` draws per epoch, the first kept), one epoch at a time; LPLD: the stored
  ``sampler_indices_epoch.json``; G-VBSM and EDC: the image index each batch file stores (element
  6), each epoch a permutation of the images (:meth:`~.sre2l.RelabelFolder.batches`; a folder that
  breaks it is refused at the batch that does, and nothing is written). The stream stores the image
  index of every record; the replay or the stored source is recorded as the ``sampler`` attribute
  only (``{"stored": "gvbsm"}``).
- *Mode*: ``epochs`` for the SRe2L, G-VBSM and EDC layouts (training epoch e used epoch e's files);
  ``pool`` for LPLD, whose training draws stored batches at random (with replacement) rather than
  epoch e's batches in epoch e.
- *Boxes*: the fractions times the stored image's H and W, each edge rounded as Pillow's crop rounds
  it (:func:`~.boxes.fractions_to_pixels`). The ``sre2l`` converter stores every JPEG as decoded,
  never resized, so the stored images are the pixels the teacher's crops were cut from; images of
  different sizes are refused as without ``--relabel``. (A converter that resized the images would
  have to refuse: rescaled boxes on resampled pixels do not rebuild the teacher's input.) EDC's
  ImageNet branches divide by the sides swapped (``top/W, left/H, height/W, width/H``) and round each
  value on loading: :func:`edc_fractions_to_pixels` does the same.
- *Crops*: ``resize`` ``pil-bilinear`` (SRe2L's and G-VBSM's loaders crop and resize PIL uint8
  images); ``bilinear-antialias`` for EDC's layout (its relabel script crops the float tensor of
  ``ToTensor`` with ``resized_crop(..., antialias=True)``); ``crop_size`` (``--crop-size``, SRe2L's
  224 by default; the CutMix boxes must fit it). EDC's patch shuffle is not applied by its published
  relabel script (element 7 all 0); a folder whose patch order is not all 0 is refused (:mod:`.sre2l`).
- *Mix*: the files' own. CutMix: the partner permutation is ``mix_partner`` (slot s takes slot
  ``mix_index[s]``'s box) and the box ``(row1, col1, row2, col2)`` becomes ``[row1, col1, row2 -
  row1, col2 - col1]`` (top, left, height, width); the Beta draw SRe2L saves beside it is never used
  by its training and is not stored. MixUp: the weight becomes ``mix_lambda`` (float32).
- *Labels*: the files' logits through the stream codec (``--stream-codec``, default
  :func:`~ladd_format.stream.default_stream_codec` of the files' class count; ``logits:float16`` stores
  SRe2L's float16 values bit for bit) at ``--stream-temperature`` (default 1). A codec with a low-rank
  tail (the default's) has its basis fitted (:meth:`RelabelStream.fit_tail`, after the digests, before
  the writer opens) on the files' logits (float16 as float32) of the first min(Q,
  :data:`~ladd_format.stream.tail.TAIL_FIT_RECORDS`) records in stream order.
- *Teacher*: G-VBSM and EDC store the mean of several teachers' logits; ``--teacher-arch`` names
  what is recorded, and ``--check-teacher`` with one of them reports its difference from the mean.
- *Provenance*: the relabel folder is one ``inputs`` entry (its batch files and, for LPLD, the JSON,
  digested like an image tree); each file must still have that digest when it is loaded.

:meth:`RelabelStream.write` then appends the batches, one file in memory at a time.
:func:`check_teacher` recomputes a few records from the stored boxes with the teacher (the
``pil-bilinear`` crops SRe2L's teacher saw) and reports the largest logit difference.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import spec as S
from ..errors import CodecError, InputError, LaddError
from ..provenance import FolderInput, file_sha256
from ..spec import limits
from ..stream import DEFAULT_STREAM_CODEC, StreamSpec, default_stream_codec, parse_stream_codec
from ..stream.codec import with_tail
from ..stream.defaults import CHECK_SLOTS, SRE2L_CROP_SIDE, SRE2L_SEED
from ..stream.tail import TAIL_FIT_RECORDS, fit_tail_basis
from .boxes import fractions_to_pixels
from .replay import sre2l_epoch_orders
from .sre2l import (LAYOUT_EDC, LAYOUT_GVBSM, LAYOUT_LPLD, LAYOUT_SRE2L, MAX_IMAGES, SAMPLER_JSON, RelabelBatch,
                    RelabelFolder, scan_relabel_folder)

log = logging.getLogger(__name__)

#: the most records ``--check-teacher`` recomputes
MAX_CHECK_SLOTS = 4096
#: torchvision ``ImageFolder``'s ``IMG_EXTENSIONS``, matched against the lower-cased file name
IMAGEFOLDER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: what the ``augmentation`` attribute says of an upstream folder: the draws are stored, their parameters are not
SRE2L_AUGMENTATION = {"crop": "RandomResizedCrop", "flip": "horizontal", "recorded": False,
                      "sre2l_defaults": {"scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3], "flip_p": 0.5,
                                         "cutmix_beta": 1.0}}
#: the same for each layout: G-VBSM's relabel.sh keeps SRe2L's scale; EDC's uses (0.5, 1), batches of 100
AUGMENTATIONS = {
    LAYOUT_SRE2L: SRE2L_AUGMENTATION,
    LAYOUT_LPLD: SRE2L_AUGMENTATION,
    LAYOUT_GVBSM: {"crop": "RandomResizedCrop", "flip": "horizontal", "recorded": False,
                   "gvbsm_defaults": {"scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3], "flip_p": 0.5,
                                      "cutmix_beta": 1.0, "teachers": "mean of several"}},
    LAYOUT_EDC: {"crop": "RandomResizedCrop", "flip": "horizontal", "recorded": False,
                 "edc_defaults": {"scale": [0.5, 1.0], "ratio": [3 / 4, 4 / 3], "flip_p": 0.5, "cutmix_beta": 1.0,
                                  "teachers": "mean of several", "patch_shuffle": "none (element 7 all 0)"}},
}
#: how each layout's association is made, for the /provenance report
ASSOCIATIONS = {
    LAYOUT_LPLD: f"{SAMPLER_JSON} as stored (ImageFolder indices)",
    LAYOUT_GVBSM: "the image index stored in each batch file (element 6, ImageFolder indices), each epoch checked "
                  "to be a permutation of the images",
    LAYOUT_EDC: "the image index stored in each batch file (element 6, ImageFolder indices), each epoch checked "
                "to be a permutation of the images",
}


@dataclass(frozen=True)
class RelabelOptions:
    """What ``ladd convert sre2l --relabel`` is told (the flags of the same names)."""

    folder: Path
    sampler_seed: int = SRE2L_SEED
    batch_size: int | None = None            # None: len(flip) of epoch_0/batch_0, as SRe2L's reader
    crop_size: int = SRE2L_CROP_SIDE
    stream_codec: str | None = None          # None: default_stream_codec(the files' class count)
    stream_temperature: float = 1.0
    teacher_arch: str | None = None
    check_teacher: Path | None = None
    check_slots: int = CHECK_SLOTS


# -- ImageFolder's order ----------------------------------------------------------------------------
def imagefolder_paths(root: Path, limit: int = MAX_IMAGES) -> list[str]:
    """The samples torchvision's ``ImageFolder(root)`` lists, in its order, as POSIX paths relative to
    ``root``: the folders directly in ``root`` sorted by name (hidden ones included, as ImageFolder
    does), and in each, ``sorted(os.walk(folder, followlinks=True))`` with each folder's file names
    sorted, the files whose lower-cased name ends with one of :data:`IMAGEFOLDER_EXTENSIONS`. A folder
    reached twice (a symbolic-link loop) or more than ``limit`` samples are refused."""
    try:
        classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    except OSError as exc:
        raise InputError(f"cannot list the image folder: {exc.strerror or type(exc).__name__}", root) from None
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    for name in classes:
        for folder, _, files in sorted(os.walk(root / name, followlinks=True)):
            try:
                info = os.stat(folder)
            except OSError as exc:
                raise InputError(f"cannot read: {exc.strerror or type(exc).__name__}", Path(folder)) from None
            if (info.st_dev, info.st_ino) in seen:
                raise InputError("is reached twice (a symbolic-link loop); ImageFolder's walk would not end",
                                 Path(folder))
            seen.add((info.st_dev, info.st_ino))
            for file in sorted(files):
                if file.lower().endswith(IMAGEFOLDER_EXTENSIONS):
                    out.append(Path(folder, file).relative_to(root).as_posix())
                    if len(out) > limit:
                        raise InputError(f"holds more than {limit:,} images", root)
    return out


def imagefolder_order(root: Path, stored: list[str]) -> np.ndarray:
    """int64 (M,): ImageFolder sample i (:func:`imagefolder_paths`) is stored image ``[i]``, where
    ``stored`` lists the stored images' paths relative to ``root`` in the stored order. Refused in one
    line unless ImageFolder's samples are exactly the stored images."""
    listed = imagefolder_paths(root)
    position = {rel: i for i, rel in enumerate(stored)}
    unknown = next((rel for rel in listed if rel not in position), None)
    if unknown is not None or len(listed) != len(stored):
        listed_set = set(listed)
        missing = next((rel for rel in stored if rel not in listed_set), None)
        which = (f"ImageFolder also reads {unknown}, which the converter does not store" if unknown is not None
                 else f"ImageFolder does not read {missing}")
        raise InputError(f"SRe2L's reader (torchvision ImageFolder) lists {len(listed):,} images here, the sre2l "
                         f"converter stores {len(stored):,}: {which}; the relabel association cannot be mapped to "
                         "the stored images", root)
    return np.fromiter((position[rel] for rel in listed), dtype=np.int64, count=len(listed))


# -- the stream -------------------------------------------------------------------------------------
@dataclass(eq=False)
class RelabelStream:
    """A relabel folder ready to be written as ``/stream`` (:func:`prepare_stream`)."""

    folder: RelabelFolder
    spec: StreamSpec
    image_map: np.ndarray               # int64 (M,): ImageFolder sample -> stored image row
    image_hw: tuple[int, int]           # (H, W) of every stored image: the boxes' pixels
    seed: int | None                    # the sampler replay's seed (None: a stored association)
    input: FolderInput | None = None    # the folder's provenance entry (:meth:`digest`)
    sha256: dict[str, str] | None = None    # relative path -> digest of the first read (:meth:`digest`)
    report: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    progress: Callable[[int, int], None] | None = None   # progress(done, total) while writing, or None
    progress_base: int = 0              # units done before the stream (the images written)

    @property
    def num_batches(self) -> int:
        """NB: the batches of every epoch."""
        return sum(self.folder.batch_counts)

    @property
    def num_records(self) -> int:
        """Q: the records of every epoch."""
        return sum(self.folder.epoch_slots(e) for e in range(self.folder.epochs))

    def digest(self) -> FolderInput:
        """Read every file of the folder once for its provenance entry (:attr:`input`); each must still
        have its digest (:attr:`sha256`) when it is loaded."""
        self.input, self.sha256 = _folder_input(self.folder)
        return self.input

    def epoch_orders(self) -> Iterator[np.ndarray | None]:
        """Each epoch's ImageFolder sample indices in generation order (int64), one epoch at a time:
        SRe2L's sampler replayed, or LPLD's stored order; None per epoch where each batch file stores
        its own (G-VBSM, EDC)."""
        folder = self.folder
        if folder.indexed:
            yield from (None for _ in range(folder.epochs))
            return
        if folder.stored_indices is not None:
            yield from folder.stored_indices
            return
        yield from sre2l_epoch_orders(len(self.image_map), folder.epochs, self.seed)

    def records(self, batch: RelabelBatch, order: np.ndarray | None) -> dict:
        """The ``append_stream`` arguments of one batch file; ``order`` is its epoch's generation order
        (None: the batch's own stored indices)."""
        path = self.folder.path(batch.epoch, batch.batch)
        if batch.indices is not None:
            samples = batch.indices
        else:
            start = batch.batch * self.folder.batch_size
            samples = order[start:start + len(batch.flip)]
        if self.folder.layout == LAYOUT_EDC:
            box = edc_fractions_to_pixels(batch.coords, self.image_hw, path)
        else:
            box = fractions_to_pixels(batch.coords, np.asarray(self.image_hw, dtype=np.int64), path)
        mix_box = None
        if batch.mix_box is not None:
            r1, c1, r2, c2 = batch.mix_box
            mix_box = np.array([r1, c1, r2 - r1, c2 - c1], dtype=np.int64)
        mix_lambda = None if self.spec.mix != "mixup" else float(np.float32(batch.mix_lam))
        args = dict(epoch=batch.epoch, image=self.image_map[samples], box=box, flip=batch.flip.astype(bool),
                    mix_partner=batch.mix_index, mix_box=mix_box, mix_lambda=mix_lambda)
        codec = self.spec.codec
        if codec.kind == "logits" and np.dtype(codec.logits_dtype) == batch.logits.dtype:
            args["stored"] = {S.STREAM_LOGITS: batch.logits}       # the files' values, bit for bit
        else:
            args["logits"] = batch.logits
        return args

    def fit_tail(self) -> None:
        """With a codec that has a low-rank tail: fit its basis on the files' logits (as float32) of the
        first min(Q, TAIL_FIT_RECORDS) records in stream order and declare it (:attr:`spec` ``tail``);
        the batch files are read (each checked against its digest, :meth:`digest` first), nothing is
        written. Without a tail: nothing."""
        rank = self.spec.codec.tail_rank
        if rank is None:
            return
        n = min(self.num_records, TAIL_FIT_RECORDS)
        rows: list[np.ndarray] = []
        have = 0
        for batch in self.folder.batches(sha256=self.sha256):          # stream order: epochs, then batches
            rows.append(batch.logits[:n - have].astype(np.float32))
            have += len(rows[-1])
            if have == n:
                break
        self.spec = replace(self.spec, tail=fit_tail_basis(np.concatenate(rows), rank))
        self.report["tail"] = (f"rank {rank}: basis fitted on the files' logits of the first {n:,} records "
                               "(stream order)")

    def batches(self) -> Iterator[tuple[Path, dict]]:
        """``(batch file, append_stream arguments)`` of every batch in order, one file in memory at a time."""
        folder = self.folder
        for epoch, order in enumerate(self.epoch_orders()):
            for batch in folder.batches(range(epoch, epoch + 1), self.sha256):
                yield folder.path(batch.epoch, batch.batch), self.records(batch, order)

    def write(self, writer) -> None:
        """Append every batch to ``writer`` (a ``DLAWriter`` declared with :attr:`spec`), reporting
        ``progress(progress_base + records written, progress_base + Q)`` after each. A batch the
        writer refuses names its file."""
        report = self.progress
        total, done, epoch = self.num_records, 0, -1
        for path, args in self.batches():
            try:
                writer.append_stream(**args)
            except LaddError as exc:
                raise type(exc)(exc.message, path, exc.where) from None
            done += len(args["flip"])
            if args["epoch"] != epoch:
                epoch = args["epoch"]
                log.info("relabel stream: epoch %d/%d from %s", epoch + 1, self.folder.epochs, self.folder.root)
            if report is not None:
                report(self.progress_base + done, self.progress_base + total)


def edc_fractions_to_pixels(coords: np.ndarray, image_hw: tuple[int, int], path=None) -> np.ndarray:
    """EDC's ImageNet-branch crop fractions -> (n, 4) int64 ``(top, left, height, width)``.

    EDC's relabel script draws ``i, j, h, w = get_params(img)`` on the ``(C, H, W)`` tensor and saves
    ``(i / W, j / H, h / W, w / H)`` (``img.shape[2]`` is W, ``img.shape[1]`` is H); its loader takes
    ``round(c0 * W), round(c1 * H), round(c2 * W), round(c3 * H)`` (Python's round, half to even) and
    crops ``[top:top+height, left:left+width]``. This does the same in float64 with ``numpy.rint``; for
    a square image it is SRe2L's convention. ``coords`` are checked fractions (finite, in [0, 1]); a box
    that is empty or leaves the ``H x W`` image is refused in one line."""
    h, w = (int(v) for v in image_hw)
    scale = np.array([w, h, w, h], dtype=np.float64)
    box = np.rint(coords.astype(np.float64) * scale).astype(np.int64)
    top, left, height, width = box.T
    bad = (height < 1) | (width < 1) | (top + height > h) | (left + width > w)
    if bad.any():
        s = int(np.flatnonzero(bad)[0])
        raise InputError(f"slot {s}: EDC crop box (top {top[s]}, left {left[s]}, height {height[s]}, width "
                         f"{width[s]}; fractions of W, H, W, H) is empty or outside its {h}x{w} image "
                         f"({int(bad.sum())} such slots)", path)
    return box


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise InputError(f"--{name.replace('_', '-')} must be an integer from {low:,} to {high:,}, got {value!r}")
    return int(value)


def _stream_sizes(folder: RelabelFolder) -> None:
    """The stream a folder makes, against spec 2.4 (before anything is read beyond the scan)."""
    batches = sum(folder.batch_counts)
    records = sum(folder.epoch_slots(e) for e in range(folder.epochs))
    for what, value, top in (("batches over all epochs (NB)", batches, limits.MAX_STREAM_BATCHES),
                             ("records (Q)", records, limits.MAX_STREAM_RECORDS),
                             ("records of one batch x classes", folder.batch_size * folder.num_classes,
                              limits.MAX_STREAM_BATCH_VALUES)):
        if value > top:
            raise InputError(f"would make a stream of {value:,} {what}, more than the spec's {top:,} (2.4)",
                             folder.root)


def _problems_before_fit(spec: StreamSpec, num_classes: int) -> list[str]:
    """``spec.problems(num_classes)`` of a declaration whose tail basis is not fitted yet
    (:meth:`RelabelStream.fit_tail` reads the files after their digests): every problem but the missing
    basis, the tail's bounds (k < C, rank <= min(C, 256)) included."""
    codec = spec.codec
    if codec.tail_rank is None:
        return spec.problems(num_classes)
    found = replace(spec, codec=with_tail(codec.codec, None)).problems(num_classes)
    try:
        codec.layout(num_classes)
    except CodecError as exc:
        found.append(exc.message)
    return found


def _folder_input(folder: RelabelFolder) -> tuple[FolderInput, dict[str, str]]:
    """The folder's provenance entry and each file's digest (a first read of every batch file)."""
    records, digests = [], {}
    paths = [(folder.relative(e, b), folder.path(e, b)) for e in range(folder.epochs)
             for b in range(folder.batch_counts[e])]
    if folder.layout == LAYOUT_LPLD:
        paths.append((SAMPLER_JSON, folder.root / SAMPLER_JSON))
    for rel, path in paths:
        try:
            size, digest = os.stat(path).st_size, file_sha256(path)
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or type(exc).__name__}", path) from None
        records.append((rel, size, digest))
        digests[rel] = digest
    log.info("relabel folder %s: %d files digested", folder.root, len(records))
    return FolderInput(folder.root, records), digests


def prepare_stream(options: RelabelOptions, *, image_root: Path, stored_paths: list[str],
                   image_shape: tuple[int, int, int]) -> RelabelStream:
    """Scan and check the relabel folder ``options.folder`` for the images stored from ``image_root``
    (``stored_paths``: their paths relative to it, in the stored order; ``image_shape``: (K, H, W) of
    each) and decide the stream (module docstring). Nothing is written; a folder
    that cannot become a stream is refused in one line. The class count is the files' (``folder.
    num_classes``): the caller reconciles it with the set's, then calls :meth:`RelabelStream.digest`
    (a read of every file) before anything reads a batch."""
    crop = _check_int("crop_size", options.crop_size, 1, limits.MAX_CROP_SIDE)
    seed = options.sampler_seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 1 << 64:
        raise InputError(f"--sampler-seed must be an integer from 0 to 2**64-1, got {seed!r}")
    if options.batch_size is not None:
        _check_int("batch_size", options.batch_size, 1, limits.MAX_STREAM_BATCH)
    temperature = options.stream_temperature
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not (math.isfinite(temperature) and temperature > 0):
        raise InputError(f"--stream-temperature must be a finite number > 0, got {temperature!r}")
    codec = None
    if options.stream_codec is not None:
        try:
            codec = parse_stream_codec(options.stream_codec)
        except CodecError as exc:
            raise InputError(f"--stream-codec: {exc.message}") from None
    m = len(stored_paths)
    folder = scan_relabel_folder(options.folder, num_images=m, crop_size=crop)
    fallback = None
    if codec is None:
        codec = default_stream_codec(folder.num_classes)      # as `ladd relabel`
        if codec.label != DEFAULT_STREAM_CODEC:
            fallback = (f"{folder.num_classes} classes: stored as {codec.label}, the default stream codec for a set of "
                        f"so few classes ({DEFAULT_STREAM_CODEC} for more)")
    if options.batch_size is not None and options.batch_size != folder.batch_size:
        raise InputError(f"the batch files hold batches of {folder.batch_size} (len(flip) of epoch_0/batch_0), not "
                         f"--batch-size {options.batch_size}: the sampler's batches cannot be associated with them",
                         folder.root)
    _stream_sizes(folder)
    image_map = imagefolder_order(image_root, stored_paths)
    layout = folder.layout
    replayed = layout == LAYOUT_SRE2L
    teacher = {S.ARCH_ATTR: options.teacher_arch or "unknown"}
    spec = StreamSpec(epochs=folder.epochs, batch_size=folder.batch_size, crop_size=(crop, crop),
                      mode="pool" if layout == LAYOUT_LPLD else "epochs",
                      resize=S.RESIZE_ANTIALIAS if layout == LAYOUT_EDC else S.RESIZE_PIL, mix=folder.mix,
                      codec=codec, temperature=float(temperature), teacher=teacher,
                      sampler={"replay": "sre2l", "seed": int(seed), "batch_size": folder.batch_size} if replayed
                      else {"stored": layout},
                      augmentation={**AUGMENTATIONS[layout], "mix": folder.mix})
    problems = _problems_before_fit(spec, folder.num_classes)
    if problems:
        raise InputError(f"cannot store this folder as a stream: {problems[0]}", folder.root)
    if codec.kind == "logits" and np.dtype(codec.logits_dtype).itemsize < folder.logits_dtype.itemsize:
        note = f"the folder's {folder.logits_dtype} logits are stored as {codec.label} (rounded)"
    else:
        note = None
    stream = RelabelStream(folder=folder, spec=spec, image_map=image_map, image_hw=tuple(image_shape[1:3]),
                           seed=int(seed) if replayed else None)
    same = bool(np.array_equal(image_map, np.arange(m)))
    stream.report = {
        "from": folder.root.name + "/", "layout": folder.layout, "mode": spec.mode,
        "epochs": folder.epochs, "batches": stream.num_batches, "records": stream.num_records,
        "batch_size": folder.batch_size, "classes": folder.num_classes, "logits": str(folder.logits_dtype),
        "mix": folder.mix, "codec": codec.label, "temperature": float(temperature), "crop_size": crop,
        "association": ASSOCIATIONS.get(layout, f"replayed once: ImageFolder order, seed {int(seed)}, two randperm "
                                                "draws per epoch (the first kept), batches of B"),
        "image_order": ("ImageFolder's order is the stored order" if same else
                        "ImageFolder's order (names sorted) mapped to the stored order by path"),
        "boxes": (f"EDC's fractions of (W, H, W, H) x the stored {image_shape[1]}x{image_shape[2]} images, each "
                  "value rounded as EDC's loader rounds it (half to even)" if layout == LAYOUT_EDC else
                  f"fractions x the stored {image_shape[1]}x{image_shape[2]} images, each edge rounded as Pillow's "
                  "crop (half to even)"),
    }
    if layout == LAYOUT_EDC:
        stream.report["patch_shuffle"] = ("none: every file's patch order (element 7) is all 0, as EDC's relabel "
                                          "script writes it (ShufflePatchesWithIndex with ap_shuffle=False)")
    if folder.mix == "cutmix":
        stream.report["mix_lambda"] = "SRe2L's saved Beta draw is unused by its CutMix and not stored"
    stream.notes.append(f"relabel stream from {folder.root}: {folder.epochs} epochs, {stream.num_batches:,} batches "
                        f"of up to {folder.batch_size}, {stream.num_records:,} records, mode {spec.mode}, "
                        f"{folder.mix}, stored as {codec.label} at T = {float(temperature):g}")
    if note is not None:
        stream.notes.append(note)
        stream.report["logits_rounded"] = note
    if fallback is not None:
        stream.notes.append(fallback)
        stream.report["codec_chosen"] = fallback
    return stream


# -- --check-teacher ------------------------------------------------------------------------------
def check_slots(stream: RelabelStream, count: int) -> list[tuple[int, int, int]]:
    """``min(count, Q)`` records ``(epoch, batch, slot)`` spread evenly over the whole stream (record
    ``round(i * (Q - 1) / (count - 1))`` in stream order, i < count), for :func:`check_teacher`."""
    folder = stream.folder
    total = stream.num_records
    wanted = np.unique(np.linspace(0, total - 1, num=min(count, total)).round().astype(np.int64)).tolist()
    out, start = [], 0
    for e in range(folder.epochs):
        for b in range(folder.batch_counts[e]):
            n = folder.batch_length(e, b)
            while wanted and wanted[0] < start + n:
                out.append((e, b, wanted.pop(0) - start))
            start += n
    return out


def _load_teacher(path: Path, arch: str | None, num_classes: int):
    """A ``ladd train-labeler`` checkpoint (its own architecture and normalisation), else, with a
    torchvision ``arch``, a state_dict file (ImageNet's normalisation): ``labeler.teacher.load_teacher``."""
    from ..labeler.teacher import load_teacher
    from ..torch.models import torchvision_names

    if arch is None or arch not in torchvision_names():
        return load_teacher(path, num_classes=num_classes)
    return load_teacher(path, arch=arch, num_classes=num_classes)


def check_teacher(stream: RelabelStream, images, checkpoint: Path, arch: str | None = None,
                  count: int = CHECK_SLOTS) -> dict:
    """Recompute ``count`` records (:func:`check_slots`) from the stored boxes with the teacher at
    ``checkpoint`` (a ``ladd train-labeler`` checkpoint, or a state_dict with the torchvision ``arch``):
    each record and its mix partner are cut from ``images`` (the stored uint8 rows, (M, K, H, W), an
    array or Rows) with the crop the stream declares, the one the folder's teacher saw (``pil-bilinear``:
    Pillow crop + BILINEAR resize, as SRe2L and G-VBSM; ``bilinear-antialias`` on the pixels / 255, as
    EDC), flip, the batch's CutMix box or MixUp weight, run through the teacher on the CPU in float32,
    and compared with the folder's logits. Returns the report entry: the largest and the mean
    absolute logit difference over the records, and the teacher's file and digest."""
    import torch

    from ..labeler.teacher import check_crops, teacher_logits
    from ..torch.stream_crops import crop_batch, pil_crop_batch

    count = _check_int("check_slots", count, 1, MAX_CHECK_SLOTS)
    folder = stream.folder
    teacher = _load_teacher(Path(checkpoint), arch, folder.num_classes)
    check_crops(teacher, int(images.shape[1]), stream.spec.crop_size)
    picks = check_slots(stream, count)
    wanted = {e for e, _, _ in picks}
    orders = {e: order for e, order in enumerate(stream.epoch_orders()) if e in wanted}
    worst, total = 0.0, 0.0
    for e, b, s in picks:
        digest = None if stream.sha256 is None else stream.sha256[folder.relative(e, b)]
        batch = folder.read_batch(e, b, digest)
        args = stream.records(batch, orders[e])
        partner = s if args["mix_partner"] is None else int(args["mix_partner"][s])
        slots = [s] if partner == s else [s, partner]
        sources = np.stack([np.asarray(images[int(args["image"][i])]) for i in slots])
        mix_partner = None if args["mix_partner"] is None else np.array([len(slots) - 1, 0], np.int64)[:len(slots)]
        mix = dict(mix=stream.spec.mix, mix_partner=mix_partner, mix_box=args["mix_box"],
                   mix_lambda=args["mix_lambda"])
        if stream.spec.resize == S.RESIZE_ANTIALIAS:
            floats = torch.from_numpy(sources).to(torch.float32) / 255.0     # ToTensor's pixels, as EDC crops them
            crops = crop_batch(floats, args["box"][slots], args["flip"][slots], stream.spec.crop_size, **mix)
        else:
            crops = pil_crop_batch(sources, args["box"][slots], args["flip"][slots], stream.spec.crop_size, **mix)
        z = teacher_logits(teacher, crops[:1], precision="float32").double().cpu().numpy()[0]
        diff = float(np.abs(z - batch.logits[s].astype(np.float64)).max())
        worst, total = max(worst, diff), total + diff
    return {"checkpoint": Path(checkpoint).name, "weights_sha256": teacher.weights_sha256, "arch": teacher.arch,
            "records": len(picks), "max_abs_logit_difference": worst,
            "mean_max_abs_logit_difference": total / len(picks),
            "compared_with": f"the folder's {folder.logits_dtype} logits"}


__all__ = ["RelabelOptions", "RelabelStream", "SRE2L_CROP_SIDE", "check_slots", "check_teacher",
           "edc_fractions_to_pixels", "imagefolder_order", "imagefolder_paths", "prepare_stream"]
