"""The relabel pass (``ladd relabel``): generate a relabel stream (spec 4.7) for a distilled set.

For each epoch e < E the pass draws the records of the epoch from the counter-based generator
(:class:`~ladd_format.stream.draws.StreamDraws`: every image once, in batches of B, each with a
RandomResizedCrop box, a flip and the batch's CutMix/MixUp), builds each batch's crops with THE
kernel of spec 5.1 (:func:`ladd_format.torch.stream_crops.crop_batch` on the device, or
``pil_crop_batch`` for ``resize`` = ``pil-bilinear``), labels them with the teacher
(:func:`~ladd_format.labeler.teacher.teacher_logits`) and encodes the labels with the stream codec.
The crops the teacher sees are exactly those a reader rebuilds from the stored records: the
sources are :func:`~ladd_format.torch.stream_crops.source_floats` of the stored images (for
``normalized`` images the crops are brought back to 0..1 pixels, ``x * std + mean``, before the
teacher's own normalisation).

Work folder and resume (as ``ladd augment``): each finished epoch's encoded labels are saved
atomically as ``epoch_NNNNNN.npz`` in the hidden folder ``.OUT.work`` beside the output, with a
manifest of everything that decides the stream (input and teacher digests, every setting that
changes a record or a label). ``resume=True`` keeps the finished epochs when the manifest matches
and refuses (one line) a work folder made with other settings; without it an old work folder is
discarded, saying so. Only the labels are saved: the records are recomputed from the generator when
the file is assembled, which is what makes an interrupted and resumed pass give the same bytes as
an uninterrupted one (with ``SOURCE_DATE_EPOCH`` set: the provenance time is the only other
difference). A Ctrl-C ends in :class:`RelabelInterrupted`, saying what the work folder keeps.

Codec: the default is :func:`~ladd_format.stream.default_stream_codec` of the set's class count (top-5
in uint8 with a rank-24 low-rank tail, or ``uint8`` for a set of few classes). A codec given explicitly
is used as given (one that cannot hold the classes, k >= C or a tail rank > C, is refused in one line).

The low-rank tail (spec 4.7, ``/stream/tail``): for a codec with a tail, the basis is fitted
(:func:`~ladd_format.stream.tail.fit_tail_basis`) before any epoch is labeled, from the teacher's
logits of the first min(Q, :data:`~ladd_format.stream.tail.TAIL_FIT_RECORDS`) records in stream order
(a pre-pass over the whole batches that hold them: the same batches, crops and teacher forward as the
main pass, which then takes the pre-pass's encoded labels of those batches instead of labeling them
again). Basis and labels are saved in the work folder (:data:`TAIL_FILE`, with their digest, checked
when read back) and every epoch, shard and resumed pass uses them, so that the bytes are the
uninterrupted single-process pass's.

When every epoch is done the output is written by :class:`~ladd_format.writer.DLAWriter` (temporary
file, then rename): the input's images, labels, soft labels and dense labels (their stored bytes,
unchanged), its class names and root attributes, and the stream, batch by batch.

Shards (:func:`relabel_sharded`, ``ladd relabel --shards K``, or ``torchrun ... -m
ladd_format.labeler.relabel_pass``): each rank labels a contiguous range of epochs into the shared
work folder; rank 0 fits the tail basis (when the codec has one) while the others wait, and
assembles the one file, the single-process pass's.

Not built: ZCA-whitened inputs (crops of whitened images cannot be un-whitened), RDED's patch
shuffle (spec 1.2 cannot record it), MixUp/CutMix with Beta parameters other than 1.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .. import atomic
from .. import spec as S
from ..errors import CodecError, InputError
from ..pixels import denormalize
from ..provenance import TOOL, file_sha256
from ..reader import open_dla
from ..relabel_config import RelabelConfig
from ..spec import limits
from ..stream import StreamSpec, default_stream_codec, parse_stream_codec
from ..stream.counter_rng import COUNTER_LIMIT
from ..stream.draws import AugmentParams, BatchDraws, StreamDraws
from ..stream.tail import TAIL_FIT_RECORDS, TailBasis, fit_tail_basis
from ..torch.device import resolve_device
from ..torch.stream_crops import crop_batch, pil_crop_batch, source_floats
from ..writer import DenseSpec, DLAWriter
from . import resumable
from .label_pass import KEPT_ROOT_ATTRS
from .resumable import PassInterrupted, check_work_folder, finished_indices, save_whole, work_folder
from .sources import names_preview, same_class_names
from .teacher import Teacher, check_crops, load_teacher, resolve_precision, teacher_logits

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]    # (records done, records in all)
#: a set whose stored images take at most this many bytes is read into memory once (and moved to a
#: CUDA device once); a larger one is read batch by batch, image by image
IMAGE_CACHE_BYTES = 2 << 30
#: images copied into the output per writer call: about this many bytes
COPY_BLOCK_BYTES = 64 << 20
EPOCH_FILE = "epoch_{:06d}.npz"
#: the work folder's tail basis (a codec with a low-rank tail): mean, basis, the pre-pass's encoded
#: labels and their digest (:class:`TailPrefix`)
TAIL_FILE = "tail_basis.npz"


@dataclass
class RelabelPlan:
    """Everything the pass needs, checked (:func:`prepare`)."""

    source: Path
    output: Path
    work: Path
    config: RelabelConfig
    teacher: Teacher
    num_images: int
    num_classes: int
    image_shape: tuple[int, int, int]        #: (K, H, W)
    space: str
    crop_size: tuple[int, int]
    draws: StreamDraws
    spec: StreamSpec
    device: torch.device
    precision: str
    #: a codec with a tail: its basis and the pre-pass's labels (:func:`tail_prefix`)
    prefix: TailPrefix | None = None

    @property
    def epochs(self) -> int:
        return self.config.epochs

    @property
    def total_records(self) -> int:
        return self.epochs * self.num_images

    def epoch_path(self, epoch: int) -> Path:
        return self.work / EPOCH_FILE.format(epoch)

    def done(self, epoch: int) -> bool:
        return self.epoch_path(epoch).exists()

    def done_epochs(self) -> list[int]:
        return [e for e in range(self.epochs) if self.done(e)]


@dataclass(frozen=True)
class RelabelState:
    """What an interrupted pass left in its work folder."""

    work: Path
    epochs: int                     #: finished epochs kept
    total_epochs: int | None


class RelabelInterrupted(PassInterrupted):
    """A Ctrl-C during the pass: ``kept`` says what the work folder holds for ``resume`` (a
    :class:`RelabelState`; None: nothing)."""

    kept: RelabelState | None


@dataclass(frozen=True)
class RelabelResult:
    """What a finished pass did."""

    output: Path
    epochs: int
    batches: int                    #: NB, batches over all epochs
    records: int                    #: Q
    resumed_epochs: int             #: epochs an earlier, interrupted pass had finished
    seconds: float                  #: wall time of the call



# -- checks -----------------------------------------------------------------------------------------
def _bounded(flag: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise InputError(f"{flag} must be an integer in {low}..{high}, got {value}")
    return int(value)


def check_config(config: RelabelConfig) -> None:
    """One-line refusals of settings no stream can be generated with."""
    _bounded("--epochs", config.epochs, 1, limits.MAX_STREAM_EPOCHS)
    _bounded("--batch-size", config.batch_size, 1, limits.MAX_STREAM_BATCH)
    if config.crop_size is not None:
        _bounded("--crop-size", config.crop_size, 1, limits.MAX_CROP_SIDE)
    _bounded("--seed", config.seed, 0, COUNTER_LIMIT - 1)
    _bounded("--forward-batch", config.forward_batch, 1, 1 << 20)
    if not (math.isfinite(config.temperature) and config.temperature > 0):
        raise InputError(f"--temperature must be a finite number > 0, got {config.temperature}")
    try:
        augment_params(config).check()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if config.resize not in S.STREAM_RESIZES:
        raise InputError(f"--resize must be one of {', '.join(S.STREAM_RESIZES)}, got {config.resize!r}")
    if config.codec is not None:
        parse_stream_codec(config.codec)             # CodecError: one line


def augment_params(config: RelabelConfig) -> AugmentParams:
    return AugmentParams(scale=tuple(config.scale), ratio=tuple(config.ratio), mix=config.mix)


def prepare(source: str | os.PathLike, teacher_path: str | os.PathLike, output: str | os.PathLike,
            config: RelabelConfig = RelabelConfig(), resume: bool = False, create: bool = True,
            notify: Callable[[str], None] | None = None) -> RelabelPlan:
    """Check everything before any work; set up (or, with ``resume``, reuse) the work folder."""
    src, out = Path(source), Path(output)
    check_config(config)
    atomic.check_destination(out, config.overwrite)
    atomic.require_regular_file(src, "input file")
    if src.resolve() == out.resolve():
        raise InputError("the output must differ from the input", out)
    check_work_folder(work_folder(out))
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    with open_dla(src) as f:
        if f.has_stream:
            raise InputError("already holds a relabel stream; a file holds one: relabel a file without one",
                             src, S.STREAM_PATH)
        k, height, width = f.image_shape
        space, num_images, num_classes, class_names = f.space, f.num_images, f.num_classes, f.class_names
    if space == "zca":
        raise InputError("images are ZCA-whitened: ladd relabel crops pixels (pixel255, pixel01 or normalized "
                         "images); whitened crops cannot be brought back to pixels for the teacher", src, S.IMAGES_PATH)
    if config.resize == S.RESIZE_PIL and space != S.SPACE_UINT8:
        raise InputError(f"--resize {S.RESIZE_PIL} crops uint8 images with Pillow; these are {space}", src,
                         S.IMAGES_PATH)
    crop = (config.crop_size, config.crop_size) if config.crop_size is not None else (height, width)
    if max(crop) > limits.MAX_CROP_SIDE:
        raise InputError(f"the images are {height}x{width}, more than a crop side may be ({limits.MAX_CROP_SIDE}); "
                         "give --crop-size", src)
    per_batch = min(config.batch_size, num_images)
    if per_batch * num_classes > limits.MAX_STREAM_BATCH_VALUES:
        raise InputError(f"a batch of {per_batch} records x {num_classes} classes exceeds the stream's "
                         f"{limits.MAX_STREAM_BATCH_VALUES} label values per batch (spec 2.4); lower --batch-size", src)
    batches = config.epochs * -(-num_images // config.batch_size)
    if batches > limits.MAX_STREAM_BATCHES or config.epochs * num_images > limits.MAX_STREAM_RECORDS:
        raise InputError(f"{config.epochs} epochs of {num_images} images make {batches} batches and "
                         f"{config.epochs * num_images} records, beyond the stream's {limits.MAX_STREAM_BATCHES} "
                         f"batches or {limits.MAX_STREAM_RECORDS} records (spec 2.4)", src)
    codec = parse_stream_codec(config.codec) if config.codec is not None else default_stream_codec(num_classes)
    try:
        codec.layout(num_classes)
    except CodecError as exc:
        raise InputError(f"--codec {codec.label}: {exc.message}", src) from None
    teacher = load_teacher(teacher_path, config.arch, num_classes, device, config.teacher_mean, config.teacher_std)
    check_crops(teacher, k, crop)
    if teacher.class_names is not None and class_names is not None \
            and not same_class_names(teacher.class_names, class_names):
        mismatch = (f"the teacher was trained on other classes ({names_preview(teacher.class_names)}) than the "
                    f"file's ({names_preview(class_names)}): its soft labels would name the wrong classes")
        if not config.allow_mismatch:
            raise InputError(f"{mismatch}; pass --allow-mismatch to label anyway", src)
        if create:
            log.warning("%s: %s; labeling anyway (--allow-mismatch)", src, mismatch)
    draws = StreamDraws(config.seed, num_images, (height, width), config.batch_size, crop, augment_params(config))
    sampler, augmentation = draws.describe()
    spec = StreamSpec(epochs=config.epochs, batch_size=config.batch_size, crop_size=crop, mode="epochs",
                      resize=config.resize, mix=config.mix, codec=codec, temperature=float(config.temperature),
                      teacher=teacher.describe(), sampler=sampler, augmentation=augmentation)
    config = replace(config, codec=codec.label, precision=precision)
    plan = RelabelPlan(src, out, work_folder(out), config, teacher, num_images, num_classes, (k, height, width),
                       space, crop, draws, spec, device, precision)
    if create:
        set_up_work(plan, resume, notify)
    return plan


# -- the work folder --------------------------------------------------------------------------------
def _manifest(plan: RelabelPlan) -> dict:
    return {"input_sha256": file_sha256(plan.source), "teacher_sha256": plan.teacher.weights_sha256,
            "num_images": plan.num_images, "crop_size": list(plan.crop_size), **plan.config.manifest()}


def set_up_work(plan: RelabelPlan, resume: bool, notify: Callable[[str], None] | None = None) -> int:
    """Create the work folder, or reuse it with ``resume``; returns the epochs already finished."""
    manifest = _manifest(plan)

    def resumed(done: int) -> str:
        return (f"resumed: {done} of {plan.epochs} epochs were already labeled in {plan.work}; labeling the "
                f"other {plan.epochs - done}")

    def refusal(old) -> str:
        changed = sorted(key for key in manifest if not isinstance(old, dict) or old.get(key) != manifest[key])
        return ("the work folder of an earlier pass was made with a different input, teacher or "
                f"settings ({', '.join(changed[:4]) or 'unreadable manifest'}); run without --resume to start over")

    return resumable.set_up_work(plan.work, manifest, resume, notify or log.info, unit="epoch",
                                 finished=lambda: len(plan.done_epochs()), resumed=resumed, refusal=refusal)


def work_state(output: str | os.PathLike, epochs: int | None = None) -> RelabelState | None:
    """The finished epochs an interrupted pass toward ``output`` left, or None when there are none."""
    found = finished_indices(output, "epoch_[0-9]*.npz")
    return RelabelState(found[0], len(found[1]), epochs) if found is not None and found[1] else None


# -- generating -------------------------------------------------------------------------------------
class _Images:
    """The stored images of the input, gathered by index: held in memory (on a CUDA device when
    there is one) up to :data:`IMAGE_CACHE_BYTES`, else read image by image."""

    def __init__(self, f, device: torch.device):
        self.f = f
        self.device = device
        nbytes = f.num_images * math.prod(f.image_shape) * np.dtype(f.image_dtype).itemsize
        self.held = None
        if nbytes <= IMAGE_CACHE_BYTES:
            step = max(1, COPY_BLOCK_BYTES // max(1, nbytes // f.num_images))
            held = np.concatenate([f.images(a, min(f.num_images, a + step)) for a in range(0, f.num_images, step)])
            self.held = torch.from_numpy(held).to(device if device.type == "cuda" else "cpu")

    def gather(self, index: np.ndarray) -> torch.Tensor:
        """Stored images ``index`` (n,) as a tensor (stored dtype) on the pass's device."""
        if self.held is not None:
            return self.held[torch.from_numpy(index).to(self.held.device)].to(self.device)
        rows = np.stack([self.f.images(int(i), int(i) + 1)[0] for i in index])
        return torch.from_numpy(rows).to(self.device)


@dataclass
class _Inputs:
    """What labeling a batch needs from the input file: its normalisation (``(1, K, 1, 1)`` tensors on the
    pass's device) and its stored images."""

    mean: torch.Tensor
    std: torch.Tensor
    images: _Images

    @classmethod
    def of(cls, f, plan: RelabelPlan) -> "_Inputs":
        k = plan.image_shape[0]
        mean = torch.tensor(f.mean, dtype=torch.float32, device=plan.device).view(1, k, 1, 1)
        std = torch.tensor(f.std, dtype=torch.float32, device=plan.device).view(1, k, 1, 1)
        return cls(mean, std, _Images(f, plan.device))

    def logits(self, plan: RelabelPlan, draw: BatchDraws) -> torch.Tensor:
        """The teacher's float32 logits ``(n, C)`` of one batch (:func:`label_batch`)."""
        return label_batch(plan, draw, self.images.gather(draw.image), self.mean, self.std)


def label_batch(plan: RelabelPlan, draw: BatchDraws, stored_images: torch.Tensor, mean: torch.Tensor,
                std: torch.Tensor) -> torch.Tensor:
    """The teacher's float32 logits ``(n, C)`` of one batch's mixed crops (module docstring)."""
    mix = dict(mix=plan.spec.mix, mix_partner=draw.mix_partner, mix_box=draw.mix_box, mix_lambda=draw.mix_lambda)
    if plan.spec.resize == S.RESIZE_PIL:
        crops = pil_crop_batch(stored_images.cpu().numpy(), draw.box, draw.flip, plan.crop_size, device=plan.device,
                               **mix)
    else:
        crops = crop_batch(source_floats(stored_images, plan.space), draw.box, draw.flip, plan.crop_size, **mix)
    if plan.space == "normalized":
        crops = denormalize(crops, mean, std)
    return teacher_logits(plan.teacher, crops, plan.precision, plan.config.forward_batch)


def generate(plan: RelabelPlan, epochs: list[int] | None = None, progress: Progress | None = None) -> int:
    """Label the given epochs (default: every epoch not done yet) into the work folder; returns how
    many. ``progress(records done, records in all)`` after each batch's labels are encoded."""
    todo = [e for e in (range(plan.epochs) if epochs is None else epochs) if not plan.done(e)]
    if not todo:
        return 0
    done = len(plan.done_epochs()) * plan.num_images
    codec, temperature = plan.spec.codec, plan.spec.temperature
    with open_dla(plan.source) as f:
        inputs = _Inputs.of(f, plan)
        prefix = tail_prefix(plan, inputs)
        tail, labelled = (None, 0) if prefix is None else (prefix.basis, prefix.records)

        def encode(logits: torch.Tensor) -> dict[str, np.ndarray]:
            return codec.encode_logits(logits.cpu().numpy(), temperature, tail=tail)

        def batch_labels(epoch: int, draw: BatchDraws) -> dict[str, np.ndarray] | torch.Tensor:
            """The pre-pass's encoded labels of a batch it labeled, else the teacher's logits of it."""
            start = epoch * plan.num_images + draw.positions[0]
            if start < labelled:
                return {name: v[start:start + len(draw)] for name, v in prefix.labels.items()}
            return inputs.logits(plan, draw)

        # the labels are copied back and encoded on a thread while the device labels the next batch
        with ThreadPoolExecutor(1, thread_name_prefix="ladd-encode") as encoder:
            for epoch in todo:
                parts = []
                for draw in plan.draws.epoch(epoch):
                    labels = batch_labels(epoch, draw)
                    parts.append(encoder.submit(encode, labels) if isinstance(labels, torch.Tensor)
                                 else encoder.submit(dict, labels))
                    done += len(draw)
                    if len(parts) > 1:                       # one batch in flight at most
                        parts[-2].result()
                        if progress is not None:
                            progress(done - len(draw), plan.total_records)
                encoded = [part.result() for part in parts]
                stored = {name: np.concatenate([p[name] for p in encoded]) for name in encoded[0]}
                _save_epoch(plan.epoch_path(epoch), stored)
                if progress is not None:
                    progress(done, plan.total_records)
                log.info("epoch %d/%d labeled (%d records)", epoch + 1, plan.epochs, plan.num_images)
    return len(todo)


# -- the low-rank tail -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TailPrefix:
    """A codec with a tail: its basis and the encoded labels of the pre-pass's records, the first
    ``records`` in stream order (whole batches holding the first :func:`fit_records`), which the main
    pass takes as they are instead of labeling them again."""

    basis: TailBasis
    labels: dict[str, np.ndarray]       #: the epoch files' arrays (:func:`_epoch_layout`), ``records`` rows each

    @property
    def records(self) -> int:
        return int(next(iter(self.labels.values())).shape[0])


def fit_records(plan: RelabelPlan) -> int:
    """How many records the tail basis is fitted on: the first min(Q, TAIL_FIT_RECORDS) in stream order."""
    return min(plan.total_records, TAIL_FIT_RECORDS)


def _prefix_draws(plan: RelabelPlan) -> Iterator[tuple[int, BatchDraws]]:
    """``(epoch, draws)`` of the batches, in stream order, that hold the first :func:`fit_records` records."""
    n, have = fit_records(plan), 0
    for epoch in range(plan.epochs):
        for draw in plan.draws.epoch(epoch):
            if have >= n:
                return
            yield epoch, draw
            have += len(draw)


def prefix_records(plan: RelabelPlan) -> int:
    """The records of the batches of :func:`_prefix_draws` (>= :func:`fit_records`, at a batch boundary)."""
    return sum(len(draw) for _, draw in _prefix_draws(plan))


def fit_threads() -> int:
    """torch's CPU threads while the pre-pass labels its batches: the CPUs this process may run on
    (the same in a single pass, in every shard and in a resumed pass on one machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                       # no sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


@contextmanager
def _cpu_threads(device: torch.device, threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside the block (on a CPU ``device``), then restored."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prefix_logits(plan: RelabelPlan, inputs: _Inputs) -> list[np.ndarray]:
    """The pre-pass: float32 ``(n_b, C)`` logits of each batch of :func:`_prefix_draws`, each batch
    labeled whole, as the main pass labels it (CutMix mixes inside a batch).

    On the CPU they are computed with :func:`fit_threads` threads whatever the process's own count (a
    shard takes its share of the cores): a CPU teacher's logits change in their last bits with the
    thread count, and the basis keeps them unquantised; without this a sharded pass would store
    another basis than the single-process pass."""
    with _cpu_threads(plan.device, fit_threads()):
        return [inputs.logits(plan, draw).to(torch.float32).cpu().numpy() for _, draw in _prefix_draws(plan)]


def fit_prefix(plan: RelabelPlan, inputs: _Inputs) -> TailPrefix:
    """Label the pre-pass's batches (:func:`prefix_logits`), fit the basis on the logits of the first
    :func:`fit_records` records (:func:`~ladd_format.stream.tail.fit_tail_basis`) and encode those
    batches with it, batch by batch as the main pass encodes."""
    codec, temperature = plan.spec.codec, plan.spec.temperature
    logits = prefix_logits(plan, inputs)
    basis = fit_tail_basis(np.concatenate(logits)[:fit_records(plan)], codec.tail_rank)
    parts = [codec.encode_logits(z, temperature, tail=basis) for z in logits]
    return TailPrefix(basis, {name: np.concatenate([p[name] for p in parts]) for name in parts[0]})


def _prefix_arrays(prefix: TailPrefix) -> dict[str, np.ndarray]:
    """The arrays of :data:`TAIL_FILE` but its digest: ``mean``, ``basis`` and ``labels/<name>``."""
    return {"mean": prefix.basis.mean, "basis": prefix.basis.basis,
            **{f"labels/{name}": array for name, array in prefix.labels.items()}}


def _prefix_digest(arrays: dict[str, np.ndarray]) -> bytes:
    """SHA-256 over the arrays in name order: each name, dtype, shape and C-order bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        h.update(array.tobytes())
    return h.digest()


def _save_prefix(path: Path, prefix: TailPrefix) -> None:
    arrays = _prefix_arrays(prefix)
    digest = np.frombuffer(_prefix_digest(arrays), dtype=np.uint8)
    save_whole(path, lambda fh: np.savez(fh, sha256=digest, **arrays))


def _load_prefix(plan: RelabelPlan, path: Path) -> TailPrefix:
    """The work folder's :data:`TAIL_FILE`, checked: the members, their shapes and dtypes, the basis
    finite, and the digest."""
    atomic.require_regular_file(path, "tail basis file")
    rank, c, rows = plan.spec.codec.tail_rank, plan.num_classes, prefix_records(plan)
    again = "run without --resume to start over"
    expected = {"mean": ((c,), np.dtype("<f4")), "basis": ((rank, c), np.dtype("<f4")),
                **{f"labels/{name}": ((rows, *tail), np.dtype(dtype)) for name, (tail, dtype) in
                   _epoch_layout(plan).items()}}
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"tail basis file is unreadable ({(str(exc).splitlines() or [''])[0][:120]}); {again}",
                         path) from None
    digest = arrays.pop("sha256", None)
    if set(arrays) != set(expected):
        raise InputError(f"tail basis file holds {sorted(arrays)}, expected {sorted(expected)}; {again}", path)
    for name, (shape, dtype) in expected.items():
        if arrays[name].shape != shape or arrays[name].dtype != dtype:
            raise InputError(f"tail basis file holds {name} {arrays[name].dtype} {arrays[name].shape}, expected "
                             f"{dtype} {shape}; {again}", path)
    if digest is None or digest.dtype != np.uint8 or digest.tobytes() != _prefix_digest(arrays):
        raise InputError(f"tail basis file does not match its digest; {again}", path)
    try:
        basis = TailBasis(arrays.pop("mean"), arrays.pop("basis"))
    except CodecError as exc:
        raise InputError(f"tail basis file: {exc.message}; {again}", path) from None
    return TailPrefix(basis, {name.removeprefix("labels/"): array for name, array in arrays.items()})


def tail_prefix(plan: RelabelPlan, inputs: _Inputs | None = None) -> TailPrefix | None:
    """The stream's :class:`TailPrefix` (None for a codec without a tail); its basis also becomes
    ``plan.spec.tail``. The one in the work folder (:data:`TAIL_FILE`, checked), else made now
    (:func:`fit_prefix`, with ``inputs`` or the input file opened here) and saved there before any
    epoch is labeled with its basis."""
    rank = plan.spec.codec.tail_rank
    if rank is None:
        return None
    if plan.prefix is not None:
        return plan.prefix
    path = plan.work / TAIL_FILE
    if os.path.lexists(path):
        prefix = _load_prefix(plan, path)
    else:
        log.info("fitting the rank-%d tail basis on the teacher's logits of the first %d records",
                 rank, fit_records(plan))
        if inputs is None:
            with open_dla(plan.source) as f:
                prefix = fit_prefix(plan, _Inputs.of(f, plan))
        else:
            prefix = fit_prefix(plan, inputs)
        _save_prefix(path, prefix)
    plan.prefix = prefix
    plan.spec = replace(plan.spec, tail=prefix.basis)
    return prefix


def _save_epoch(dest: Path, stored: dict[str, np.ndarray]) -> None:
    save_whole(dest, lambda fh: np.savez(fh, **stored))      # an epoch file exists only when complete


def _load_epoch(plan: RelabelPlan, epoch: int) -> dict[str, np.ndarray]:
    """A finished epoch's stored labels, checked against the codec's layout."""
    path = atomic.require_regular_file(plan.epoch_path(epoch), "epoch file")
    layout = _epoch_layout(plan)
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = {name: z[name] for name in z.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"epoch file is unreadable ({(str(exc).splitlines() or [''])[0][:120]}); run without "
                         "--resume to start over", path) from None
    for name, (tail, dtype) in layout.items():
        array = stored.get(name)
        if array is None or array.shape != (plan.num_images, *tail) or array.dtype != dtype:
            got = "missing" if array is None else f"{array.dtype} {array.shape}"
            raise InputError(f"epoch file holds {name} {got}, expected {np.dtype(dtype)} {(plan.num_images, *tail)}; "
                             "run without --resume to start over", path)
    return {name: stored[name] for name in layout}


def _epoch_layout(plan: RelabelPlan) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The arrays of an epoch file: the codec's label datasets and, with a tail, its coefficients and
    scales (name inside ``/stream`` -> (row tail, dtype))."""
    codec = plan.spec.codec
    return {**codec.layout(plan.num_classes), **codec.tail_layout()}


# -- assembling -------------------------------------------------------------------------------------
class _StoredDense:
    """The input's dense codec, whose ``encode`` hands out the input's stored rows (set in ``rows``
    before each append), so that the dense labels are copied byte for byte (decode -> encode is not
    the identity for uint8 and topk)."""

    def __init__(self, codec):
        self.codec = codec
        self.rows: dict[str, np.ndarray] = {}

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def encode(self, probs: np.ndarray) -> dict[str, np.ndarray]:
        return self.rows


def assemble(plan: RelabelPlan) -> Path:
    """Write the output from the input and the finished epochs, then remove the work folder."""
    missing = [e for e in range(plan.epochs) if not plan.done(e)]
    if missing:
        raise InputError(f"{len(missing)} epochs are not labeled yet (first: {missing[0]})", plan.work)
    c = plan.config
    tail_prefix(plan)                              # the work folder's basis into plan.spec (a codec with a tail)
    with open_dla(plan.source) as f:
        attrs = f.attrs
        dense = None
        if f.has_dense:
            dense = DenseSpec(f.n, f.ratio, _StoredDense(f.codec), f.temperature, f.labeler or {"arch": "unknown"})
        soft_dtype = str(f.h5[S.SOFT_LABELS].dtype) if f.has_soft_labels else "float32"
        writer = DLAWriter(
            plan.output, num_classes=f.num_classes, image_shape=f.image_shape, mean=f.mean, std=f.std,
            image_dtype=str(f.image_dtype), space=f.space, dense=dense, soft_kind=f.soft_kind, soft_dtype=soft_dtype,
            class_names=f.class_names, source_dataset=attrs.get("source_dataset"),
            distillation=attrs.get("distillation"), ipc=attrs.get("ipc"), converter="relabel",
            root_attrs={key: attrs[key] for key in KEPT_ROOT_ATTRS if key in attrs},
            inputs=[plan.source, plan.teacher.path],
            report={"teacher": plan.teacher.path.name if plan.teacher.path else None, "tool": TOOL,
                    "crop_size": list(plan.crop_size), "config": plan.config.manifest()},
            overwrite=c.overwrite, stream=plan.spec)
        with writer:
            row = max(1, math.prod(f.image_shape) * np.dtype(f.image_dtype).itemsize)
            step = max(1, COPY_BLOCK_BYTES // row)
            for a in range(0, f.num_images, step):
                b = min(f.num_images, a + step)
                probs = None
                if dense is not None:
                    dense.codec.rows = f.dense_stored(a, b)
                    probs = f.codec.decode(dense.codec.rows, f.num_classes)
                writer.append(f.images(a, b), f.labels(a, b), dense=probs,
                              soft=f.soft_labels(a, b) if f.has_soft_labels else None)
            for epoch in range(plan.epochs):
                stored = _load_epoch(plan, epoch)
                for draw in plan.draws.epoch(epoch):
                    a, b = draw.positions
                    writer.append_stream(epoch, draw.image, draw.box, draw.flip, draw.mix_partner, draw.mix_box,
                                         draw.mix_lambda, stored={name: v[a:b] for name, v in stored.items()})
    check_work_folder(plan.work)
    shutil.rmtree(plan.work)
    return plan.output


def relabel(source: str | os.PathLike, teacher: str | os.PathLike, output: str | os.PathLike,
            config: RelabelConfig = RelabelConfig(), resume: bool = False, progress: Progress | None = None,
            notify: Callable[[str], None] | None = None) -> RelabelResult:
    """Generate a relabel stream for the set at ``source`` with ``teacher`` and write ``output``
    (module docstring). ``progress(records done, records in all)``: once before labeling (what a
    resumed pass already has), then after each batch. A Ctrl-C keeps the finished epochs and raises
    :class:`RelabelInterrupted`."""
    started = time.perf_counter()
    with interrupt_keeps(output) as known:
        plan = prepare(source, teacher, output, config, resume, notify=notify)
        known["epochs"] = plan.epochs
        resumed = len(plan.done_epochs())
        if progress is not None:
            progress(resumed * plan.num_images, plan.total_records)
        generate(plan, progress=progress)
        assemble(plan)
    batches = plan.epochs * plan.draws.batches_per_epoch
    return RelabelResult(plan.output, plan.epochs, batches, plan.total_records, resumed, time.perf_counter() - started)


def interrupt_keeps(output: str | os.PathLike):
    """Turn a KeyboardInterrupt inside the block into :class:`RelabelInterrupted` with the
    :func:`work_state` toward ``output``; the block sets ``known["epochs"]`` once it knows it."""
    return resumable.interrupt_keeps(RelabelInterrupted, lambda known: work_state(output, known.get("epochs")))


# -- shards: several processes (GPUs, or CPU processes with gloo) into one file -----------------------
def run_rank(rank: int, world: int, source, teacher, output, config: RelabelConfig, resume: bool) -> None:
    """The body of one rank (the process group initialised): the rank labels a contiguous range of
    epochs into the shared work folder; rank 0 sets the folder up (with the tail basis) and assembles
    the one file. The output is the single-process pass's: the same epochs, each computed as it would
    be there, all encoded with the one tail basis in the work folder."""
    from .distributed import rank_config, run_rank_steps, shard
    config = rank_config(config, rank, world)
    plan = prepare(source, teacher, output, config, resume, create=False)   # the same checks on every rank

    def set_up() -> None:
        set_up_work(plan, resume)
        tail_prefix(plan)           # rank 0 fits (or checks) the tail basis; the others read it after the barrier

    run_rank_steps(rank, set_up, lambda: generate(plan, shard(plan.epochs, rank, world)), lambda: assemble(plan))


def relabel_sharded(source, teacher, output, config: RelabelConfig, shards: int, resume: bool = False,
                    progress: Progress | None = None, notify: Callable[[str], None] | None = None,
                    poll_seconds: float = 0.5) -> RelabelResult:
    """:func:`relabel` in ``shards`` local processes (one per GPU with CUDA, else CPU processes with
    gloo). Every check runs here first, so bad input fails in one line before any process starts;
    ``progress(records done, records in all)`` counts the finished epoch files every
    ``poll_seconds``. A Ctrl-C ends in :class:`RelabelInterrupted`."""
    from .distributed import spawn_ranks
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    started = time.perf_counter()
    with interrupt_keeps(output) as known:
        on_cuda = torch.cuda.is_available() and (config.device == "auto" or str(config.device).startswith("cuda"))
        precision = resolve_precision(config.precision, torch.device("cuda" if on_cuda else "cpu"))
        # the checks, with the teacher on the CPU and the ranks' precision (what their manifest records)
        plan = prepare(source, teacher, output, replace(config, device="cpu", precision=precision), resume,
                       create=False)
        known["epochs"] = plan.epochs
        if resume and atomic.is_real_dir(plan.work):
            set_up_work(plan, resume, notify)        # refuses a changed setting here, in one line
        resumed = len(plan.done_epochs()) if resume else 0

        def done() -> int:
            state = work_state(output, plan.epochs)
            return 0 if state is None else state.epochs * plan.num_images

        spawn_ranks(run_rank, (source, teacher, output, config, resume), shards, done, plan.total_records, progress,
                    poll_seconds)
    return RelabelResult(plan.output, plan.epochs, plan.epochs * plan.draws.batches_per_epoch, plan.total_records,
                         resumed, time.perf_counter() - started)


def parser():
    """The torchrun entry point's options: SOURCE, --teacher, -o, --resume and every
    :class:`~ladd_format.relabel_config.RelabelConfig` option (``ladd relabel``'s defaults)."""
    import argparse

    from ..config_options import add_argparse_options
    from ..relabel_config import relabel_options
    p = argparse.ArgumentParser(prog="python -m ladd_format.labeler.relabel_pass",
                                description="ladd relabel on the ranks of a torchrun job, into one file.")
    p.add_argument("source")
    p.add_argument("--teacher", required=True)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--resume", action="store_true")
    add_argparse_options(p, relabel_options())
    return p


def main(argv=None) -> int:
    """torchrun entry point (RANK / WORLD_SIZE / LOCAL_RANK from the environment)::

        torchrun --nproc-per-node 4 -m ladd_format.labeler.relabel_pass IN.dla.h5 --teacher CKPT -o OUT.dla.h5
    """
    from .distributed import torchrun_main
    a = parser().parse_args(argv)
    return torchrun_main(run_rank, (a.source, a.teacher, a.output, RelabelConfig.from_values(vars(a)), a.resume))


if __name__ == "__main__":
    import sys
    sys.exit(main())
