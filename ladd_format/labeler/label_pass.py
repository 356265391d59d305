"""The labeler pass (paper Algorithm 1, batched): D -> D_LA.

Images are read in chunks, moved to the device, normalised with the labeler's statistics, cut into
their N*N sub-images by :func:`ladd_format.torch.subimages` (the function every reader uses),
labeled (softmax at temperature T), and each finished chunk's probabilities are saved atomically as
one file in a work folder next to the output. Reading the next chunk and saving the last one run on
threads while the device computes. When every chunk is done the D_LA is assembled by the streaming
writer (temporary file, then rename) and the work folder removed.

ZCA-whitened files (space ``zca``): labelers are trained on pixels (``train-labeler`` reads
images), so each chunk is un-whitened (``x @ inverse + mean``, kornia's convention) with the ZCA
statistics ``zca_stats`` names -- the ``.npz`` that ``ladd convert --zca-stats`` reads -- before the
labeler's normalisation; the D_LA keeps the whitened images. Without them the pass is refused in
one line saying which option and file (:data:`ZCA_NEEDS_STATS`).

Resume: a killed or interrupted pass leaves the work folder with its completed chunks
(:func:`work_state` counts them); ``resume=True`` (``ladd augment ... --resume``) keeps every
completed chunk whose manifest matches (same input, labeler and parameters), says so through
``notify`` (how many chunks and images were already labeled), and labels only the rest. The destination is
never a half-valid file. Sharding (several processes or GPUs) labels disjoint contiguous ranges of
chunks into the same work folder; one process assembles (:mod:`ladd_format.labeler.distributed`).

Settings: :class:`~ladd_format.augment_config.AugmentConfig` (its defaults are ``ladd augment``'s).
What the pass returns is an :class:`AugmentResult`; it reports progress in images; a Ctrl-C ends in
:class:`AugmentInterrupted`, which says what the work folder keeps (:class:`WorkState`).

The work folder ``.OUT.work`` must be a real folder: a symbolic link or a file there is refused in
one line naming it (it is never removed, followed or written through). Chunk files are written by
exclusive creation (a planted file or link at a temporary name is replaced, not written through)
and read back memory-mapped, their shape checked before they are copied. The grid N is bounded by
:data:`ladd_format.spec.limits.MAX_WRITTEN_GRID_N` (what the writer can store).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import atomic, geometry
from ..augment_config import CPU_FORWARD_PIXELS, PRECISIONS, AugmentConfig  # noqa: F401 (AugmentConfig re-exported)
from ..codecs import parse_codec
from ..errors import InputError
from ..pixels import denormalize, normalize, pixel255_to_pixel01
from ..provenance import TOOL, file_sha256
from ..reader import open_dla
from ..spec.names import IMAGES_PATH
from ..torch.subimages import subimages
from ..writer import DenseSpec, DLAWriter
from .checkpoint import Labeler, load_checkpoint
from ..torch.device import cudnn_settings, resolve_device
from . import resumable
from .resumable import PassInterrupted, check_work_folder, finished_indices, save_whole, work_folder

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]   # (images done, images in all)
#: optional root attributes (spec 3) the D_LA keeps from its plain set, besides those DLAWriter takes by name
KEPT_ROOT_ATTRS = ("imagenet_class_ids", "learned_lr")


@dataclass
class Plan:
    source: Path
    output: Path
    work: Path
    config: AugmentConfig
    labeler: Labeler
    num_images: int
    boxes: np.ndarray
    out_size: tuple[int, int]

    @property
    def num_chunks(self) -> int:
        return -(-self.num_images // self.config.batch_size)

    def chunk_range(self, idx: int) -> tuple[int, int]:
        start = idx * self.config.batch_size
        return start, min(self.num_images, start + self.config.batch_size)

    def chunk_path(self, idx: int) -> Path:
        return self.work / f"chunk_{idx:06d}.npy"

    def done(self, idx: int) -> bool:
        return self.chunk_path(idx).exists()


def prepare(source: str | os.PathLike, labeler_path: str | os.PathLike, output: str | os.PathLike,
            config: AugmentConfig = AugmentConfig(), resume: bool = False, create: bool = True,
            notify: Callable[[str], None] | None = None) -> Plan:
    """Check everything before any work; set up (or, with ``resume``, reuse) the work folder."""
    src, out = Path(source), Path(output)
    atomic.check_destination(out, config.overwrite)
    if src.resolve() == out.resolve():
        raise InputError("the output must differ from the input", out)
    check_work_folder(work_folder(out))
    if not 1 <= config.n <= geometry.MAX_WRITTEN_GRID_N:
        raise InputError(f"-n (grid size N) must lie in 1..{geometry.MAX_WRITTEN_GRID_N}, got {config.n} (the "
                         "(N*N, 4) boxes attribute of a larger N does not fit one HDF5 attribute message)")
    device = resolve_device(config.device)
    if config.precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {config.precision!r}")
    if config.forward_batch < 1 or config.batch_size < 1:
        raise InputError(f"--batch-size and --forward-batch must be >= 1, got {config.batch_size} and "
                         f"{config.forward_batch}")
    if config.precision == "auto":
        config = replace(config, precision="bfloat16" if device.type == "cuda" else "float32")
    labeler = load_checkpoint(labeler_path, device)
    with open_dla(src) as f:
        k, h, w = f.image_shape
        check_zca(f, config.zca_stats)
        if labeler.num_classes != f.num_classes:
            raise InputError(f"the labeler has {labeler.num_classes} classes, the file {f.num_classes}", src)
        if int(labeler.meta["channels"]) != k:
            raise InputError(f"the labeler takes {labeler.meta['channels']} channels, the images have {k}", src)
        mismatch = class_mismatch(labeler, f.class_names)
        if mismatch is not None and not config.allow_mismatch:
            raise InputError(f"{mismatch}; pass --allow-mismatch to label anyway", src)
        if mismatch is not None and create:
            log.warning("%s: %s; labeling anyway (--allow-mismatch)", src, mismatch)
        size = labeler.image_size
        if (h, w) != (size, size) and not config.resize:
            raise InputError(f"the labeler takes {size}x{size} images, these are {h}x{w}; pass --resize to resize "
                             "the sub-images to the labeler's size", src)
        try:
            boxes = geometry.boxes(h, w, config.n, config.ratio)
        except ValueError as exc:
            raise InputError(f"sub-image geometry: {exc}", src) from None
        num_images = f.num_images
    codec = parse_codec(config.codec)              # CodecError (one line) on a bad value
    codec.layout(config.n ** 2, labeler.num_classes)
    config = replace(config, codec=codec.text())   # one canonical text in the report
    if not (config.temperature > 0):
        raise InputError(f"--temperature must be > 0, got {config.temperature}")
    plan = Plan(src, out, work_folder(out), config, labeler, num_images, boxes, (size, size))
    if create:
        set_up_work(plan, resume, notify)
    return plan


#: why a ZCA-whitened file needs --zca-stats (labelers are trained on pixels: train-labeler reads images)
ZCA_NEEDS_STATS = ("images are ZCA-whitened and labelers take pixels (train-labeler trains on images): pass "
                   "--zca-stats FILE, the .npz `ladd convert --zca-stats` reads (the ZCA's mean + inverse, or "
                   "train_images: the 0..1 training images it was fitted on), to un-whiten each chunk for the "
                   "labeler; the file keeps its ZCA images")


def check_zca(f, zca_stats: str | None) -> None:
    """A ZCA-whitened file is labeled through the inverse transform, so it needs ``zca_stats``
    (:data:`ZCA_NEEDS_STATS`), checked here against the image size; other files refuse it."""
    if f.space != "zca":
        if zca_stats is not None:
            raise InputError(f"--zca-stats applies to ZCA-whitened images; these are {f.space or 'pixel255'}",
                             f.path, IMAGES_PATH)
        return
    if zca_stats is None:
        raise InputError(ZCA_NEEDS_STATS, f.path, IMAGES_PATH)
    mean, _ = zca_inverse(zca_stats)
    values = math.prod(f.image_shape)
    if mean.shape != (values,):
        raise InputError(f"ZCA statistics are for {mean.shape[0]} values per image, the images have {values}",
                         Path(zca_stats))


def zca_inverse(zca_stats: str) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (D,), inverse (D, D))`` of the ZCA whitening, read (or refitted) from ``zca_stats``
    exactly as the converters read ``--zca-stats`` (:func:`~ladd_format.converters.rawset.load_zca_stats`);
    once per file version in a process (``prepare`` checks it, ``label_chunks`` applies it; a refit
    on a training set takes seconds). Callers must not modify the arrays."""
    path = Path(zca_stats)
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None:
        from ..converters.rawset import load_zca_stats
        return load_zca_stats(path)                 # names the missing file in its one-line error
    return _zca_inverse(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _zca_inverse(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    from ..converters.rawset import load_zca_stats

    return load_zca_stats(Path(path))


def class_mismatch(labeler: Labeler, file_names: list[str] | None) -> str | None:
    """What differs between the classes the labeler was trained on and the file's, or ``None``.
    Compared: the class names, in order, up to case and ``_``/``-`` (:func:`.sources.same_class_names`),
    when the checkpoint declares them (:func:`.checkpoint.declared_class_names`) and the file has
    them; the class count and channels are checked apart (they cannot differ at all)."""
    from .checkpoint import declared_class_names
    from .sources import names_preview, same_class_names
    ours = declared_class_names(labeler.meta)
    if ours is None or file_names is None or same_class_names(ours, file_names):
        return None
    return (f"the labeler was trained on other classes ({names_preview(ours)}) than the file's "
            f"({names_preview(file_names)}): its dense labels would name the wrong classes")


def _manifest(plan: Plan) -> dict:
    c = plan.config
    manifest = {"input_sha256": file_sha256(plan.source), "labeler_sha256": plan.labeler.sha256, "n": c.n,
                "ratio": c.ratio, "temperature": c.temperature, "batch_size": c.batch_size, "resize": c.resize,
                "precision": c.precision, "num_images": plan.num_images}
    if c.zca_stats is not None:
        manifest["zca_stats_sha256"] = file_sha256(Path(c.zca_stats))
    return manifest


def chunk_images(num_images: int, batch_size: int, chunks) -> int:
    """How many images the chunks with the given indices cover."""
    return sum(max(0, min(num_images, (i + 1) * batch_size) - i * batch_size) for i in chunks)


@dataclass(frozen=True)
class WorkState:
    """What a pass toward an output has left in its work folder (the totals None when unknown)."""

    work: Path                      #: the work folder
    chunks: int                     #: completed chunks kept
    total_chunks: int | None        #: chunks in all
    images: int | None              #: images in the completed chunks
    num_images: int | None          #: images in the file


def work_state(output: str | os.PathLike, batch_size: int, num_images: int | None = None) -> WorkState | None:
    """What an interrupted pass toward ``output`` left in its work folder (the totals ``None`` when
    ``num_images`` is not given), or ``None`` when there is no work folder or it holds no completed chunk."""
    found = finished_indices(output, "chunk_[0-9]*.npy")
    if found is None or not found[1]:
        return None
    work, done = found
    if num_images is None:
        return WorkState(work, len(done), None, None, None)
    return WorkState(work, len(done), -(-num_images // batch_size), chunk_images(num_images, batch_size, done),
                     num_images)


class AugmentInterrupted(PassInterrupted):
    """A Ctrl-C during the pass: ``kept`` is what the work folder holds for ``resume`` (a
    :class:`WorkState`; None: nothing)."""

    kept: WorkState | None


@dataclass(frozen=True)
class AugmentResult:
    """What a finished pass did (the CLI prints it; nothing needs reopening)."""

    output: Path                    #: the D_LA written
    num_images: int                 #: images in the file (all of them labeled)
    chunks: int                     #: chunks in all (``config.batch_size`` images each, the last one fewer)
    resumed_chunks: int             #: chunks an earlier, interrupted pass had labeled (``resume``)
    resumed_images: int             #: the images of those chunks
    seconds: float                  #: wall time of the call

    @property
    def labeled(self) -> int:
        """Images this call labeled."""
        return self.num_images - self.resumed_images


def set_up_work(plan: Plan, resume: bool, notify: Callable[[str], None] | None = None) -> int:
    """Create the work folder, or reuse it with ``resume``; returns the number of chunks already
    labeled. ``notify(line)`` says what was resumed or discarded (default: logged at INFO)."""
    def resumed(done: int) -> str:
        images = done_images(plan)[1]
        return (f"resumed: {done} of {plan.num_chunks} chunks ({images} of {plan.num_images} images) were "
                f"already labeled in {plan.work}; labeling the other {plan.num_chunks - done}")

    return resumable.set_up_work(
        plan.work, _manifest(plan), resume, notify or log.info, unit="chunk", finished=lambda: done_images(plan)[0],
        resumed=resumed, refusal=lambda old: "the work folder of an earlier pass was made with a different input, "
                                             "labeler or parameters; run without --resume to start over")


def to_labeler_input(images: torch.Tensor, space: str, file_mean: torch.Tensor, file_std: torch.Tensor,
                     lab_mean: torch.Tensor, lab_std: torch.Tensor,
                     zca: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Stored images on the device -> float, normalised as the labeler was trained. ``zca``:
    ``(mean (D,), inverse (D, D))`` that un-whiten ``zca`` images to 0..1 pixels (kornia's
    convention, per image flattened: ``x @ inverse + mean``)."""
    x = images.float()
    if images.dtype == torch.uint8:
        x = pixel255_to_pixel01(x)
    elif space == "normalized":
        x = denormalize(x, file_mean, file_std)
    elif space == "zca":
        if zca is None:
            raise InputError(ZCA_NEEDS_STATS)
        x = (x.flatten(1) @ zca[1] + zca[0]).view(x.shape)
    return normalize(x, lab_mean, lab_std)


def labeler_logits(model: torch.nn.Module, subs: torch.Tensor, precision: str) -> torch.Tensor:
    """float32 logits of one slice of sub-images at the pass's precision (``bfloat16``: autocast and
    channels_last on CUDA; ``float32``: TF32 off)."""
    if subs.device.type == "cuda":
        subs = subs.contiguous(memory_format=torch.channels_last)
    with cudnn_settings(allow_tf32=precision != "float32"), \
            torch.autocast(subs.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        return model(subs).float()


#: a chunk whose sub-images take at most this many bytes (float32) has them rebuilt in one call; a
#: larger one (256 images at 224 px: 3.9 GB) rebuilds only those of each forward's slice
SUBIMAGE_BUFFER_BYTES = 64 << 20


def forward_limit(forward_batch: int, out_size: tuple[int, int], device: torch.device) -> int:
    """Sub-images per labeler forward: ``forward_batch``, on the CPU at most
    :data:`CPU_FORWARD_PIXELS` input pixels (at least 1)."""
    if device.type == "cuda":
        return forward_batch
    return max(1, min(forward_batch, CPU_FORWARD_PIXELS // (out_size[0] * out_size[1])))


@torch.inference_mode()
def label_images(labeler: Labeler, x: torch.Tensor, boxes: np.ndarray, out_size: tuple[int, int],
                 temperature: float, precision: str = "float32", forward_batch: int = 512
                 ) -> tuple[torch.Tensor, int]:
    """``(B, K, H, W)`` labeler-normalised floats -> ``(B, N*N, C)`` float32 probabilities.

    Normalising before sub-sampling equals normalising each sub-image: the resize weights sum to 1.
    The labeler sees ``forward_batch`` sub-images at a time (the image-major sequence of the
    B x N*N sub-images, cut in slices); beyond :data:`SUBIMAGE_BUFFER_BYTES` only the sub-images of
    the images a slice covers are built for it, so memory does not grow with the chunk; on CUDA
    out-of-memory the slice is halved and retried. ``precision``: ``bfloat16`` (autocast, channels_last on CUDA) or ``float32`` (TF32
    off, so CUDA matches the CPU to float32 rounding). Returns the probabilities and the forward
    batch that fitted (the caller passes it on).
    """
    b, p = x.shape[0], len(boxes)
    whole = None
    if b * p * x.shape[1] * out_size[0] * out_size[1] * 4 <= SUBIMAGE_BUFFER_BYTES:
        whole = subimages(x, boxes, out_size).flatten(0, 1)        # small: one rebuild for the chunk
    logits, start = [], 0
    while start < b * p:
        stop = min(b * p, start + forward_batch)
        first, last = start // p, -(-stop // p)
        try:
            subs = whole[start:stop] if whole is not None else \
                subimages(x[first:last], boxes, out_size).flatten(0, 1)[start - first * p:stop - first * p]
            logits.append(labeler_logits(labeler.model, subs, precision))
        except torch.cuda.OutOfMemoryError:
            if forward_batch == 1:
                raise InputError("the labeler does not fit in GPU memory even one sub-image at a time; "
                                 "use --device cpu", getattr(labeler, "path", None)) from None
            forward_batch = max(1, forward_batch // 2)
            log.warning("CUDA out of memory: labeling %d sub-images per forward from now on", forward_batch)
            torch.cuda.empty_cache()
            continue
        start += len(logits[-1])
    probs = torch.softmax(torch.cat(logits) / temperature, dim=-1)
    return probs.view(b, p, -1), forward_batch


def label_chunks(plan: Plan, chunk_ids: list[int] | None = None, progress: Progress | None = None) -> int:
    """Label the given chunks (default: every chunk not done yet); returns how many were labeled.
    ``progress(images done, images in the file)`` after each chunk is saved (the images of every
    chunk done, these and others)."""
    todo = [i for i in (range(plan.num_chunks) if chunk_ids is None else chunk_ids) if not plan.done(i)]
    if not todo:
        return 0
    lab = plan.labeler
    device = next(lab.model.parameters()).device
    forward_batch = forward_limit(plan.config.forward_batch, plan.out_size, device)
    k = int(lab.meta["channels"])
    lab_mean = torch.tensor(lab.meta["mean"], dtype=torch.float32, device=device).view(1, k, 1, 1)
    lab_std = torch.tensor(lab.meta["std"], dtype=torch.float32, device=device).view(1, k, 1, 1)
    zca = None
    if plan.config.zca_stats is not None:
        zca = tuple(torch.tensor(a, dtype=torch.float32, device=device) for a in zca_inverse(plan.config.zca_stats))
    with open_dla(plan.source) as f:
        space = f.space
        file_mean = torch.tensor(f.mean, dtype=torch.float32, device=device).view(1, k, 1, 1)
        file_std = torch.tensor(f.std, dtype=torch.float32, device=device).view(1, k, 1, 1)

        def read(idx: int) -> torch.Tensor:
            a, b = plan.chunk_range(idx)
            t = torch.from_numpy(f.images(a, b))
            return t.pin_memory() if device.type == "cuda" else t

        def save(idx: int, probs: np.ndarray) -> None:
            dest = plan.chunk_path(idx)         # a chunk file exists only when complete
            save_whole(dest, lambda fh: np.save(fh, probs), tmp=dest.with_suffix(".tmp"))

        waiting = set(todo)
        done = chunk_images(plan.num_images, plan.config.batch_size,
                            (i for i in range(plan.num_chunks) if i not in waiting))
        with ThreadPoolExecutor(1, thread_name_prefix="ladd-read") as reader, \
                ThreadPoolExecutor(1, thread_name_prefix="ladd-write") as writer:
            upcoming = reader.submit(read, todo[0])
            writes = []
            for pos, idx in enumerate(todo):
                images = upcoming.result()
                if pos + 1 < len(todo):
                    upcoming = reader.submit(read, todo[pos + 1])
                x = to_labeler_input(images.to(device, non_blocking=True), space, file_mean, file_std,
                                     lab_mean, lab_std, zca)
                probs, forward_batch = label_images(lab, x, plan.boxes, plan.out_size, plan.config.temperature,
                                                    plan.config.precision, forward_batch)
                writes.append((idx, writer.submit(save, idx, probs.cpu().numpy())))
                while len(writes) > 2 or (writes and writes[0][1].done()):
                    done = _finished(plan, writes.pop(0), done, progress)
            for pending in writes:
                done = _finished(plan, pending, done, progress)
    return len(todo)


def _finished(plan: Plan, pending, done: int, progress: Progress | None) -> int:
    """Wait for one chunk's save; count its images into ``done``, log it (INFO: ``ladd -v``), report it."""
    idx, future = pending
    future.result()
    a, b = plan.chunk_range(idx)
    done += b - a
    log.info("chunk %d/%d saved: images %d..%d labeled", idx + 1, plan.num_chunks, a, b - 1)
    if progress is not None:
        progress(done, plan.num_images)
    return done


def assemble(plan: Plan) -> Path:
    """Write the D_LA from the input file and the labeled chunks, then remove the work folder."""
    missing = [i for i in range(plan.num_chunks) if not plan.done(i)]
    if missing:
        raise InputError(f"{len(missing)} chunks are not labeled yet (first: {missing[0]})", plan.work)
    c = plan.config
    codec = parse_codec(c.codec)
    labeler = {key: value for key, value in plan.labeler.describe().items() if key != "checkpoint"}
    with open_dla(plan.source) as f:
        attrs = f.attrs
        writer = DLAWriter(
            plan.output, num_classes=f.num_classes, image_shape=f.image_shape, mean=f.mean, std=f.std,
            image_dtype=str(f.image_dtype), space=f.space,
            dense=DenseSpec(c.n, c.ratio, codec, c.temperature, labeler),
            soft_kind=f.soft_kind, class_names=f.class_names, source_dataset=attrs.get("source_dataset"),
            distillation=attrs.get("distillation"), ipc=attrs.get("ipc"), converter="augment",
            root_attrs={key: attrs[key] for key in KEPT_ROOT_ATTRS if key in attrs},
            inputs=[plan.source, plan.labeler.path],
            report={"labeler_checkpoint": plan.labeler.path.name, "resize": c.resize,
                    "labeler_input_size": list(plan.out_size), "tool": TOOL,
                    "config": {key: value for key, value in asdict(c).items()
                               if key not in ("overwrite", "allow_mismatch")}},
            overwrite=c.overwrite)
        with writer:
            for idx in range(plan.num_chunks):
                a, b = plan.chunk_range(idx)
                probs = _load_chunk(plan.chunk_path(idx), (b - a, c.n ** 2, f.num_classes))
                writer.append(f.images(a, b), f.labels(a, b), dense=probs,
                              soft=f.soft_labels(a, b) if f.has_soft_labels else None)
    check_work_folder(plan.work)
    shutil.rmtree(plan.work)
    return plan.output


def _load_chunk(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """A chunk file's probabilities, its header checked (memory-mapped) before anything is copied."""
    try:
        mapped = np.load(atomic.require_regular_file(path, "chunk file"), mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"chunk file is unreadable ({(str(exc).splitlines() or [''])[0][:120]}); run without "
                         "--resume to start over", path) from None
    if mapped.shape != shape or mapped.dtype.kind != "f":
        raise InputError(f"chunk file holds {mapped.dtype} {mapped.shape}, expected float {shape}", path)
    return np.array(mapped)


def done_images(plan: Plan) -> tuple[int, int]:
    """``(chunks, images)`` already labeled in the work folder of ``plan``."""
    done = [i for i in range(plan.num_chunks) if plan.done(i)]
    return len(done), chunk_images(plan.num_images, plan.config.batch_size, done)


def augment(source: str | os.PathLike, labeler_path: str | os.PathLike, output: str | os.PathLike,
            config: AugmentConfig = AugmentConfig(), resume: bool = False,
            progress: Progress | None = None, notify: Callable[[str], None] | None = None) -> AugmentResult:
    """Label every sub-image of the plain set at ``source`` and write the D_LA at ``output``.

    ``progress(images done, images in all)``: once before labeling (the images a resumed pass
    already has), then after each chunk; ``notify(line)``: what ``resume`` found (default: logged).
    An interruption (Ctrl-C) keeps the completed chunks in the work folder for ``resume`` and raises
    :class:`AugmentInterrupted` saying what was kept.
    """
    started = time.perf_counter()
    with interrupt_keeps(output, config.batch_size) as known:
        plan = prepare(source, labeler_path, output, config, resume, notify=notify)
        known["num_images"] = plan.num_images
        resumed_chunks, resumed_images = done_images(plan)
        if progress is not None:
            progress(resumed_images, plan.num_images)
        label_chunks(plan, progress=progress)
        assemble(plan)
    return AugmentResult(plan.output, plan.num_images, plan.num_chunks, resumed_chunks, resumed_images,
                         time.perf_counter() - started)


def interrupt_keeps(output: str | os.PathLike, batch_size: int):
    """Turn a KeyboardInterrupt inside the block into :class:`AugmentInterrupted` with the
    :func:`work_state` toward ``output``; the block sets ``known["num_images"]`` once it knows it."""
    return resumable.interrupt_keeps(AugmentInterrupted,
                                     lambda known: work_state(output, batch_size, known.get("num_images")))
