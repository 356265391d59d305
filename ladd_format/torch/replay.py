"""The replay loader of a relabel stream (spec 4.7, 5.1): each training epoch's batches, rebuilt.

For every stored batch it hands the trainer ``(inputs, probs, labels)`` on the training device:

- inputs: the records' crops rebuilt from the stored boxes with the stream's kernel
  (:func:`~ladd_format.torch.stream_crops.crop_batch` on the device, or Pillow's path for a
  ``pil-bilinear`` stream), flipped and mixed as stored, then normalised with ``/normalization``;
- probs: the stored soft labels decoded on the device, float32 ``(n, C)``, optionally re-tempered;
- labels: the hard labels ``labels[image[r]]``, int64 ``(n,)``.

Which stored batches make training epoch e (``docs/relabel.md``, "Loading a stream: the replay
loader"): mode ``epochs``, stored epoch e (e >= E refused unless ``wrap=True``: then e mod E); mode
``pool``, P batches drawn with replacement from all NB stored batches by the counter-based generator
of :mod:`ladd_format.stream.counter_rng`: ``b_j = below(word(seed, e, j, 0), NB)``, j = 0..P-1.
Under DDP, rank r of W takes positions ``r, r + W, r + 2W, ...`` of that list (whole batches: a
record's mix partner is always in its own batch), every rank the same count (the list padded from its
start, as ``DistributedSampler`` pads; ``drop_last=True`` drops the tail instead).

Memory: one batch of labels at a time; the images are held in memory as stored (uint8) when they take
at most :data:`IMAGES_IN_MEMORY_BYTES`, else read from the file as a batch needs them. A batch's crops
are its one batch-sized buffer: its images are gathered about :data:`GATHER_BYTES` at a time, converted
to float32 and resized a kernel chunk at a time (``stream_crops.CHUNK_BYTES``), mixed one channel and
one band of rows at a time (``stream_crops.MIX_BYTES``) and normalised in place; the labels are decoded
a batch at a time. With ``reuse_inputs=True`` (the default) every batch is built in the same buffer, so
the process holds one batch of inputs, not two (the one the loop still holds while the next is made).
Besides torch and that batch the loader then holds a few tens of MiB (``benchmarks/RESULTS/stream-replay.md``).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .. import spec as S
from ..codecs.base import normalize_tensor_rows
from ..errors import InputError
from ..reader import DLAFile, open_dla
from ..spec.limits import MAX_STREAM_BATCHES
from ..stream.counter_rng import CounterRNG
from ..stream.tail import TailBasis, tail_mass_slack
from .dataset import DLADataset
from .stream_crops import mix_crops, pil_crop_batch, records_per_chunk, resize_crops, source_floats

log = logging.getLogger(__name__)

#: images that take at most this many bytes as stored are read once and held; larger sets are read per
#: batch (the loader's peak memory then stays one batch of images and labels, whatever M and E)
IMAGES_IN_MEMORY_BYTES = 256 << 20
#: the stored images a batch's crops are made from are read (or gathered) about this many bytes at a time,
#: then converted and resized a kernel chunk at a time (the bits do not depend on it; larger reads were not
#: faster, measured: benchmarks/RESULTS/stream-replay.md)
GATHER_BYTES = 4 << 20
#: the default generator seed of mode ``pool``
POOL_SEED = 0
#: the draw counter of the pool generator: word(seed, epoch, position, POOL_DRAW)
POOL_DRAW = 0
#: glibc's malloc: blocks of at least this many bytes are mapped and returned to the system when freed
#: (:func:`bound_heap_growth`)
MMAP_THRESHOLD_BYTES = 4 << 20
#: mallopt's parameter number of M_MMAP_THRESHOLD (glibc malloc.h)
_M_MMAP_THRESHOLD = -3
#: the kernels :class:`ReplayLoader` accepts (``kernel=None``: the stream's own ``resize``)
KERNELS = S.STREAM_RESIZES


class ReplayBatch(NamedTuple):
    """One stored batch, rebuilt, on the training device."""

    inputs: torch.Tensor     #: (n, K, h_out, w_out) float32, normalised for the student
    probs: torch.Tensor      #: (n, C) float32 soft labels
    labels: torch.Tensor     #: (n,) int64 hard labels of the records' images


def _rows_to_tensors(rows: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """A codec's stored arrays as tensors on ``device``; unsigned index rows wider than a byte
    (uint16, uint32) as int32, which every device handles."""
    out = {}
    for key, value in rows.items():
        array = np.ascontiguousarray(value, dtype=np.int32 if value.dtype.kind == "u" and value.dtype.itemsize > 1
                                     else None)
        out[key] = torch.from_numpy(array).to(device, non_blocking=True)
    return out


class DeviceTail(NamedTuple):
    """A stream's tail basis (``/stream/tail``, spec 1.3) on the training device, in the decode's dtype."""

    mean: torch.Tensor    #: (C,)
    basis: torch.Tensor   #: (r, C)


def tail_dtype(device: torch.device | str) -> torch.dtype:
    """The dtype a tail is decoded (and labels re-tempered) in on ``device``: float64, as the spec
    computes it (the float32 labels then equal the numpy decode's, measured on the digits-1000
    teacher's logits), except on a device without float64 (Apple's ``mps``): float32, measured within
    3.0e-7 of the float64 decode as stored and 2.2e-6 re-tempered from T = 20 to t = 1 (the error
    grows with T/t; ``tests/test_replay_tail.py`` asserts 1e-6 and 5e-6)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def tail_on_device(tail: TailBasis, device: torch.device | str, dtype: torch.dtype | None = None) -> DeviceTail:
    """``tail``'s mean and basis as ``dtype`` tensors on ``device`` (default :func:`tail_dtype`)."""
    device = torch.device(device)
    dtype = tail_dtype(device) if dtype is None else dtype
    return DeviceTail(torch.from_numpy(tail.mean).to(device, dtype), torch.from_numpy(tail.basis).to(device, dtype))


def decode_tail_tensor(index: torch.Tensor, values: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor,
                       tail: DeviceTail, temperature: float, slack: float, rounding: float) -> torch.Tensor:
    """:func:`~ladd_format.stream.tail.decode_with_tail` (spec 4.8) on the tensors' device, in ``tail``'s
    dtype (not yet rounded): ``index`` (n, k) int64 top-k classes, ``values`` (n, k) their decoded
    probabilities v, ``coef`` (n, r) int8, ``scale`` (n,) float16, ``temperature`` the stream's T,
    ``slack`` delta = k e and ``rounding`` e (:func:`~ladd_format.stream.tail.tail_mass_slack` of the stored
    values' type, for k and for 1 value). I = the top-k classes whose v > 0 (an entry stored as 0 is a tail
    class)::

        zhat = mean + scale * (coef @ basis);  u = exp((zhat - max zhat) / T)
        m_hat = sum_{j not in I} u_j / sum_j u_j;  rho = 1 - sum_{j in I} v_j
        m = max(0, min(rho + delta, max(rho - delta, m_hat)))
        q_j = min(m u_j / sum_{i not in I} u_i, v_min + e) (j not in I; the first term 0 if that sum is 0)
        q_j = v_j (j in I);  v_min: the smallest of the k stored values (zeros included)
        each row divided by its sum (1/C when it is 0)

    Returns (n, C)."""
    dtype, device = tail.basis.dtype, tail.basis.device
    zero = torch.zeros((), dtype=dtype, device=device)
    values = values.to(dtype)
    kept = values > 0                                                                   # I
    zhat = (coef.to(dtype) @ tail.basis).mul_(scale.to(dtype).unsqueeze(1)).add_(tail.mean)
    u = zhat.sub_(zhat.amax(dim=1, keepdim=True)).div_(float(temperature)).exp_()      # in place: zhat becomes u
    outside = torch.ones(u.shape, dtype=torch.bool, device=device).scatter_(1, index, ~kept)
    total = u.sum(dim=1, keepdim=True)
    rest = torch.where(outside, u, zero).sum(dim=1, keepdim=True)
    rho = 1.0 - torch.where(kept, values, zero).sum(dim=1, keepdim=True)
    m = torch.maximum(torch.minimum(rho + slack, torch.maximum(rho - slack, rest / total)), zero)
    positive = rest > 0
    q = u.mul_(m).div_(torch.where(positive, rest, torch.ones((), dtype=dtype, device=device)))
    q.masked_fill_(~positive, 0.0)                   # rows whose tail mass is 0 (only where every u outside I is 0)
    q = torch.minimum(q, values.amin(dim=1, keepdim=True) + rounding)                  # step 4's cap
    q.scatter_(1, index, torch.where(kept, values, q.gather(1, index)))
    return normalize_tensor_rows(q, int(tail.mean.shape[0]))


def retemper(q: torch.Tensor, power: float, num_classes: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Labels ``q`` (n, C) raised to ``power`` = T_stored / t, each row renormalised (a row of zeros:
    1/C), float32. In ``dtype`` (default :func:`tail_dtype` of q's device): float64 is the numpy
    decode's arithmetic (``q`` as float64, ``q ** power``, rows divided by their sums); float32 goes
    through logarithms, ``exp(power * (log q - max log q))``, since ``q ** power`` itself underflows in
    float32 when power > 1 (a stream stored at T = 20 read at t = 1: every class below about 0.01)."""
    dtype = tail_dtype(q.device) if dtype is None else dtype
    if dtype == torch.float64:
        return normalize_tensor_rows(q.to(torch.float64).pow_(float(power)), int(num_classes)).to(torch.float32)
    logs = q.to(dtype).log()
    top = logs.amax(dim=1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros((), dtype=dtype, device=q.device))   # rows of zeros
    return normalize_tensor_rows(logs.sub_(top).mul_(float(power)).exp_(), int(num_classes)).to(torch.float32)


def decode_on_device(codec, stored: dict[str, np.ndarray], num_classes: int, device: torch.device | str,
                     temperature: float | None = None, stored_temperature: float = 1.0,
                     tail: TailBasis | DeviceTail | None = None) -> torch.Tensor:
    """:meth:`StreamCodec.decode <ladd_format.stream.StreamCodec.decode>` computed on ``device``, float32
    ``(n, C)``: kind ``logits`` softmax(z / t) (t = ``temperature``, else the stored T); kind ``probs``
    the codec's ``decode_tensor`` (float32; within 1e-6 of the numpy decode), re-tempered by
    :func:`retemper` to T_stored / t when a ``temperature`` t is given.

    A codec with a tail (spec 1.3) needs ``tail``, the stream's basis (a :class:`TailBasis`, or the
    :class:`DeviceTail` of :func:`tail_on_device`, which a loader makes once), and ``stored`` holding
    ``tail/coef`` and ``tail/scale``: :func:`decode_tail_tensor` in the tail's dtype (float64, the
    spec's arithmetic: the same float32 values as the numpy decode, measured), rounded once to float32,
    then re-tempered as above."""
    from ..codecs.topk import INDEX, VALUES

    device = torch.device(device)
    rows = _rows_to_tensors(stored, device)
    if codec.kind == "logits":
        t = float(stored_temperature if temperature is None else temperature)
        return torch.softmax(rows[S.STREAM_LOGITS].to(torch.float32) / t, dim=-1)
    if codec.tail_rank is None:
        q = codec.codec.decode_tensor(rows, int(num_classes)).to(torch.float32)
    else:
        if tail is None:
            raise ValueError(f"codec {codec.label} has a tail: decode_on_device needs the stream's tail basis")
        tail = tail_on_device(tail, device) if isinstance(tail, TailBasis) else tail
        if tuple(tail.basis.shape) != (codec.tail_rank, int(num_classes)):
            raise ValueError(f"codec {codec.label} needs a tail basis of rank {codec.tail_rank} over {num_classes} "
                             f"classes, got {tuple(tail.basis.shape)}")
        raw = rows[VALUES]
        values = raw.to(tail.basis.dtype)
        values = values / 255.0 if raw.dtype == torch.uint8 else values
        slack = tail_mass_slack(rows[INDEX].shape[-1], codec.codec.values)
        rounding = tail_mass_slack(1, codec.codec.values)
        q = decode_tail_tensor(rows[INDEX].long(), values, rows[S.STREAM_TAIL_COEF], rows[S.STREAM_TAIL_SCALE], tail,
                               float(stored_temperature), slack, rounding).to(torch.float32)
    if temperature is None or float(temperature) == float(stored_temperature):
        return q
    dtype = tail.basis.dtype if codec.tail_rank is not None else None
    return retemper(q, float(stored_temperature) / float(temperature), int(num_classes), dtype)


def bound_heap_growth() -> bool:
    """On Linux with glibc, fix malloc's mmap threshold at :data:`MMAP_THRESHOLD_BYTES` for this
    process. glibc otherwise raises the threshold (up to 32 MiB) each time a large mapped block is
    freed, after which the batch-sized temporaries of every batch come from the heap and fragment it:
    the resident memory of a replay then creeps up (measured at 224 px, B = 100, images held: peak
    990-1,029 MiB; with the threshold fixed, 926-928 MiB, flat over 12 epochs). Returns True when set;
    elsewhere (other C libraries, other systems) does nothing and returns False."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


def _world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world size): as given, else torch.distributed's when it is initialised, else (0, 1)."""
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
    rank, world_size = (0 if rank is None else int(rank)), (1 if world_size is None else int(world_size))
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in 0..world_size-1, got rank {rank} of {world_size}")
    return rank, world_size


def pool_batches(num_batches: int, epoch: int, count: int, seed: int = POOL_SEED) -> np.ndarray:
    """Mode ``pool``: the stored batches of training epoch ``epoch``, int64 (count,):
    ``b_j = below(word(seed, epoch, j, POOL_DRAW), num_batches)`` for j = 0..count-1 (with
    replacement; :mod:`ladd_format.stream.counter_rng`), the same on any machine and release."""
    if count < 0:
        raise ValueError(f"the pool draw count must be >= 0, got {count}")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    return CounterRNG(seed).below(int(epoch), np.arange(count, dtype=np.uint64), POOL_DRAW, int(num_batches))


def rank_share(batches: np.ndarray, rank: int, world_size: int, drop_last: bool = False) -> np.ndarray:
    """Rank ``rank``'s share of an epoch's batch list: positions ``rank, rank + W, ...``. Every rank
    gets the same count: ``ceil(len / W)``, the list padded with its own first entries (as
    ``DistributedSampler`` pads), or ``floor(len / W)`` with ``drop_last`` (the tail unused)."""
    n = len(batches)
    if world_size == 1:
        return np.asarray(batches, dtype=np.int64)
    per_rank = n // world_size if drop_last else -(-n // world_size)
    if n == 0 or per_rank == 0:
        return np.zeros(0, dtype=np.int64)
    positions = (rank + world_size * np.arange(per_rank)) % n
    return np.asarray(batches, dtype=np.int64)[positions]


class ReplayLoader:
    """Training epochs of a relabel stream, batch by batch, rebuilt on the training device.

    ::

        loader = ReplayLoader("set.dla.h5", device="cuda")
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            for inputs, probs, labels in loader:
                loss = soft_cross_entropy(model(inputs), probs).mean()   # or KL at a temperature

    Args:
        source: the ``.dla.h5`` file (or an open :class:`~ladd_format.reader.DLAFile`, used as is).
        device: where the crops are made and the labels decoded.
        kernel: ``None`` (default): the stream's ``resize`` (what the teacher saw, bit for bit);
            ``"bilinear-antialias"``: the device kernel for any stream; ``"pil-bilinear"``: Pillow on
            the CPU (uint8 ``pixel255`` images only).
        normalize: normalise ``pixel255``/``pixel01`` crops with the file's mean/std (``normalized`` and
            ``zca`` images are used as stored).
        temperature: re-temper the soft labels (see :func:`decode_on_device`); None: as stored.
        rank, world_size: this process's share (default: torch.distributed's when initialised).
        drop_last: under DDP, drop an epoch's last ``len % W`` batches instead of padding.
        wrap: mode ``epochs``: training epoch e >= E uses stored epoch e mod E (refused otherwise).
        pool_batches: mode ``pool``: batches per training epoch (default: the batches of stored epoch 0).
        seed: mode ``pool``: the generator seed of the draw.
        images: ``"auto"`` (held when at most :data:`IMAGES_IN_MEMORY_BYTES`), ``"memory"`` or ``"file"``.
        check_rows: check images and labels against their row digests (spec 2.2).
        bound_memory: call :func:`bound_heap_growth` (process-wide, glibc only) so that the resident
            memory stays flat over any number of epochs; False leaves malloc as it is.
        reuse_inputs: True (default): iteration, :meth:`epoch` and :meth:`batch` build every batch's
            ``inputs`` in one buffer the loader keeps (``bilinear-antialias`` kernel), so a batch's
            inputs are valid until the next batch is made. That is what a training loop needs (it
            uses the batch for one forward and backward pass, then asks for the next, as SRe2L's loop
            does), and the process then holds one batch of float32 inputs instead of two: the one the
            loop's variable still holds while the next is made, 588 MiB at 224 px and B = 1,024.
            Pass False where batches are kept beyond the next one (``list(loader)``, a prefetcher
            that runs ahead, inputs logged after the step): each batch then gets its own tensor.
            Kept anyway, a batch does not silently show the next one's pixels: before the buffer is
            reused, the inputs tensor handed out last is emptied (``set_()``: 0 elements), so using
            it fails (a backward pass deferred past the next batch fails too: autograd sees its
            saved input modified); views the caller made of it (``inputs[0]``) are not emptied.
            :meth:`crops` always returns a new tensor.
    """

    def __init__(self, source: str | os.PathLike | DLAFile, *, device: torch.device | str = "cpu",
                 kernel: str | None = None, normalize: bool = True, temperature: float | None = None,
                 rank: int | None = None, world_size: int | None = None, drop_last: bool = False,
                 wrap: bool = False, pool_batches: int | None = None, seed: int = POOL_SEED,
                 images: str = "auto", check_rows: bool = True, bound_memory: bool = True,
                 reuse_inputs: bool = True):
        if bound_memory:
            bound_heap_growth()
        self._owned = not isinstance(source, DLAFile)
        self.file = open_dla(source, check_rows=check_rows) if self._owned else source
        self._images: DLADataset | None = None
        self.reuse_inputs = bool(reuse_inputs)
        self._inputs: torch.Tensor | None = None     # the inputs buffer of reuse_inputs, kept from batch to batch
        self._handed: weakref.ref | None = None      # the view of it handed out last (not kept alive by the loader)
        try:
            self._setup(device, kernel, normalize, temperature, rank, world_size, drop_last, wrap, pool_batches,
                        seed, images, check_rows)
        except BaseException:
            self.close()
            raise

    def _setup(self, device, kernel, normalize, temperature, rank, world_size, drop_last, wrap, pool_batches,
               seed, images, check_rows) -> None:
        self.path = Path(self.file.path)
        self.stream = self.file.stream
        self.spec = self.stream.spec
        self.device = torch.device(device)
        self.kernel = self.spec.resize if kernel is None else kernel
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be None or one of {', '.join(KERNELS)}, got {kernel!r}")
        self.space = self.file.space
        if self.kernel == S.RESIZE_PIL and self.space != S.SPACE_UINT8:
            raise InputError(f"the {S.RESIZE_PIL} kernel needs uint8 ({S.SPACE_UINT8}) images, these are "
                             f"{self.space}: use kernel={S.RESIZE_ANTIALIAS!r}", self.path, S.IMAGES_PATH)
        if temperature is not None and not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.temperature = temperature
        self.normalize = normalize and self.space in (S.SPACE_UINT8, "pixel01")
        k = self.file.image_shape[0]
        self.mean = torch.as_tensor(self.file.mean, dtype=torch.float32).view(1, k, 1, 1).to(self.device)
        self.std = torch.as_tensor(self.file.std, dtype=torch.float32).view(1, k, 1, 1).to(self.device)
        self.rank, self.world_size = _world(rank, world_size)
        self.drop_last = drop_last
        self.wrap = wrap
        CounterRNG(seed)                       # refuses a seed outside [0, 2**64) now, not at the first draw
        self.seed = int(seed)
        self.pool_count = len(self.stream.epoch_batches(0)) if pool_batches is None else int(pool_batches)
        if not 1 <= self.pool_count <= MAX_STREAM_BATCHES:
            raise ValueError(f"pool_batches must lie in 1..{MAX_STREAM_BATCHES}, got {pool_batches}")
        if images not in ("auto", "memory", "file"):
            raise ValueError(f"images must be 'auto', 'memory' or 'file', got {images!r}")
        held = int(np.prod(self.file.image_shape)) * self.file.image_dtype.itemsize * self.file.num_images
        in_memory = images == "memory" or (images == "auto" and held <= IMAGES_IN_MEMORY_BYTES)
        self._images = DLADataset(self.path, dense=False, normalize=False, in_memory=in_memory,
                                  check_rows=check_rows)
        self.current_epoch = 0
        self._workspace: dict = {}     # the crop kernel's temporaries, kept from batch to batch
        self._tail = None if self.stream.tail is None else tail_on_device(self.stream.tail, self.device)

    # -- which batches ------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.spec.mode

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """All stored batches (global numbers) training epoch ``epoch`` uses, in order, before the
        rank split."""
        e = int(epoch)
        if e < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if self.mode == "pool":
            return pool_batches(self.stream.num_batches, e, self.pool_count, self.seed)
        epochs = self.stream.epochs
        if e >= epochs:
            if not self.wrap:
                raise InputError(f"epoch {e} is beyond the stream's {epochs} epochs (0..{epochs - 1}); pass "
                                 f"wrap=True to reuse stored epoch e mod {epochs}", self.path, S.STREAM_PATH)
            e %= epochs
        r = self.stream.epoch_batches(e)
        return np.arange(r.start, r.stop, dtype=np.int64)

    def batches(self, epoch: int | None = None) -> np.ndarray:
        """This rank's stored batches of training epoch ``epoch`` (default: the current one)."""
        e = self.current_epoch if epoch is None else epoch
        return rank_share(self.epoch_batches(e), self.rank, self.world_size, self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Make training epoch ``epoch`` the one iteration yields (checked now: a stream of E epochs
        refuses e >= E in one line unless ``wrap=True``)."""
        self.epoch_batches(epoch)
        self.current_epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.batches())

    def __iter__(self) -> Iterator[ReplayBatch]:
        for b in self.batches():
            yield self.batch(int(b))

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """SRe2L-style: ``for images, targets in loader.epoch(e)`` yields the mixed, normalised
        crops and their soft labels (probabilities) of training epoch ``e`` (this rank's share)."""
        self.set_epoch(epoch)
        for inputs, probs, _ in self:
            yield inputs, probs

    # -- one batch ---------------------------------------------------------------------------------
    def crops(self, batch: int) -> torch.Tensor:
        """Stored batch ``batch``'s mixed crops before normalisation (0..1 pixels for uint8 images),
        ``(n, K, h_out, w_out)`` float32 on the device: what the teacher labelled (5.1 steps 1-3). A new
        tensor on every call (never the ``reuse_inputs`` buffer)."""
        return self._crops(self.stream.read_batch(int(batch)), reuse=False)[0]

    def _crops(self, record, reuse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """A stored batch's mixed crops (float32, on the device; in the kept inputs buffer when
        ``reuse``) and hard labels. The device kernel
        gathers, converts and resizes a chunk of records at a time (each chunk's images read as stored,
        from memory or the file, then freed), so that besides the crops only chunk-sized buffers are
        held: the same bits as one :func:`crop_batch` call of the whole batch."""
        mix = dict(mix=self.spec.mix, mix_partner=record.mix_partner, mix_box=record.mix_box,
                   mix_lambda=record.mix_lambda)
        crop_size = tuple(int(v) for v in self.spec.crop_size)
        image = np.asarray(record.image, dtype=np.int64).reshape(-1)
        if self.kernel == S.RESIZE_PIL:
            distinct, inverse = np.unique(image, return_inverse=True)
            inverse = inverse.reshape(-1)
            stored, labels, _, _ = self._images.batch(distinct, targets=False)
            hard = labels[torch.from_numpy(inverse)].to(self.device, non_blocking=True)
            crops = pil_crop_batch(stored.numpy()[inverse], record.box, record.flip, crop_size, device=self.device,
                                   **mix)
            return crops, hard
        n = len(image)
        k = int(self.file.image_shape[0])
        crops = self._inputs_buffer((n, k, *crop_size), reuse)
        hard = torch.empty(n, dtype=torch.int64)
        step = records_per_chunk(self.file.image_shape, self.device)
        image_bytes = max(1, int(np.prod(self.file.image_shape)) * self.file.image_dtype.itemsize)
        read = max(step, GATHER_BYTES // image_bytes // step * step)     # records gathered per read
        for first in range(0, n, read):
            records = slice(first, min(n, first + read))
            distinct, inverse = np.unique(image[records], return_inverse=True)
            stored, labels, _, _ = self._images.batch(distinct, targets=False)
            inverse = torch.from_numpy(inverse.reshape(-1))
            hard[records] = labels[inverse]
            stored = stored.to(self.device, non_blocking=True)
            inverse = inverse.to(self.device)
            for start in range(records.start, records.stop, step):
                part = slice(start, min(records.stop, start + step))
                sources = source_floats(stored[inverse[start - first:part.stop - first]], self.space)
                resize_crops(sources, record.box[part], record.flip[part], crop_size, out=crops[part],
                             workspace=self._workspace)
                del sources
            del stored
        return mix_crops(crops, **mix), hard.to(self.device, non_blocking=True)

    def _inputs_buffer(self, shape: tuple[int, ...], reuse: bool) -> torch.Tensor:
        """A float32 ``shape`` tensor on the device for a batch's crops: a new one, or with ``reuse``
        a view of the buffer kept from batch to batch (grown when too small)."""
        if not reuse:
            return torch.empty(shape, dtype=torch.float32, device=self.device)
        previous = None if self._handed is None else self._handed()
        if previous is not None:
            previous.set_()     # the last batch's inputs, if still held, become empty: used, they fail loudly
        numel = int(np.prod(shape))
        if self._inputs is None or self._inputs.numel() < numel:
            self._inputs = None                      # the old buffer goes before the larger one is made
            self._inputs = torch.empty(max(numel, 1), dtype=torch.float32, device=self.device)
        view = self._inputs[:numel].view(shape)
        self._handed = weakref.ref(view)
        return view

    def batch(self, batch: int) -> ReplayBatch:
        """Stored batch ``batch`` (a global batch number, 0..NB-1) rebuilt: inputs, soft labels, hard labels.
        With ``reuse_inputs`` (the default) the inputs are the loader's kept buffer: valid until the next
        batch is made (see the class)."""
        record = self.stream.read_batch(int(batch))
        crops, labels = self._crops(record, self.reuse_inputs)
        inputs = crops.sub_(self.mean).div_(self.std) if self.normalize else crops   # (x - mean) / std, in place
        probs = decode_on_device(self.spec.codec, record.labels, self.stream.num_classes, self.device,
                                 self.temperature, self.spec.temperature, self._tail)
        return ReplayBatch(inputs, probs, labels)

    # -- closing -----------------------------------------------------------------------------------
    def close(self) -> None:
        if self._images is not None:
            self._images.close()
        if self._owned:
            self.file.close()

    def __enter__(self) -> ReplayLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["DeviceTail", "IMAGES_IN_MEMORY_BYTES", "KERNELS", "ReplayBatch", "ReplayLoader", "bound_heap_growth",
           "decode_on_device", "decode_tail_tensor", "pool_batches", "rank_share", "retemper", "tail_dtype",
           "tail_on_device"]
