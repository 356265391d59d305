"""The crops of a relabel stream (spec 5.1): crop, resize, flip and mix a batch of records.

:func:`crop_batch` is THE kernel of 5.1 for ``resize`` = ``bilinear-antialias``: ``ladd relabel`` calls it
to make what the teacher labels, the replay loader (:mod:`ladd_format.torch.replay`) to rebuild the
student's inputs, ``--check-teacher`` to recompute a few slots. The same input gives the same bits, on
any CPU, any thread count and any batch composition:

- the interpolation weights are computed in numpy (float32 arithmetic, the formulas of PyTorch's
  ``interpolate(mode="bilinear", align_corners=False, antialias=True)``), per record and per axis;
- they are applied as separable passes, W first, then H (PyTorch's order), each a sum over the
  filter's taps in a fixed order of an exact gather, an elementwise float32 multiply and an
  elementwise float32 add (no matrix product, whose summation order depends on the BLAS, the CPU
  and the thread count); a tap outside a record's filter has weight 0 and adds +0.0;
- a flip reverses the order of a record's output columns (exact), CutMix copies pixels (exact),
  MixUp is ``c_r * lam + c_p * (1 - lam)`` with ``lam`` and ``1 - lam`` in float32, one multiply
  each and one add.

Elementwise float32 multiplies, adds and divisions are correctly rounded on every device, so a GPU
computes the same bits as the CPU (``tests/test_stream_crops.py`` checks it where CUDA is present).
The result agrees with a per-record ``F.interpolate(..., antialias=True)`` of the crop within float
rounding (tests: 2e-6 on 0..1 values). Records are resized a chunk at a time, in buffers a caller
may keep from batch to batch (:func:`resize_crops`); neither changes a bit.

:func:`pil_crop_batch` is the ``pil-bilinear`` path of 5.1 (Pillow's ``crop`` + ``resize(BILINEAR)`` on
the uint8 image, ``/ 255``), which is what torchvision's ``RandomResizedCrop`` does to a PIL image in
SRe2L's loader; flip and mix as above. ``docs/relabel.md`` gives how far apart the two paths are.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from ..spec import STREAM_MIXES
from ..spec.limits import MAX_CROP_SIDE

__all__ = ["axis_weights", "crop_batch", "mix_crops", "pil_crop_batch", "resize_crops", "source_floats"]

#: the float dtype every crop is computed and returned in
CROP_DTYPE = torch.float32
#: records resized together on the CPU: their float32 sources take about this many bytes (the
#: passes' temporaries are a few times it; the result does not depend on it)
CHUNK_BYTES = 2 << 20
#: the same on a GPU (or any other device), where larger chunks are faster
CHUNK_BYTES_DEVICE = 512 << 20
#: CutMix/MixUp on the CPU run one channel and one band of rows at a time: the copy of the partners'
#: band (n records x rows x width float32) takes about this many bytes (the result does not depend on it)
MIX_BYTES = 4 << 20


# -- interpolation weights (numpy, exact float32 arithmetic) ----------------------------------------
@lru_cache(maxsize=4096)
def axis_weights(length: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """The bilinear-antialias filter resizing one axis of ``length`` pixels to ``out`` pixels.

    Returns ``(first, weights)``: ``first`` int64 (out,), the first input pixel of each output pixel's
    filter, and ``weights`` float32 (out, J), the weights of input pixels ``first + j``, j < J (0 past
    the filter's end; J is the widest filter). The arithmetic is PyTorch's antialiased bilinear
    kernel (``align_corners=False``), in its float32/float64 mix: scale = length / out (float32),
    centre = scale * (i + 0.5), support = scale when the axis shrinks (scale >= 1) else 1, triangle
    filter 1 - |x| at ``(j + first - centre + 0.5) / max(scale, 1)``, weights normalised by their sum.
    Cached: the arrays are shared, treat them as read-only.
    """
    if not (1 <= length and 1 <= out <= MAX_CROP_SIDE):
        raise ValueError(f"cannot resize an axis of {length} pixels to {out}")
    f32 = np.float32
    scale = f32(length) / f32(out)
    shrinks = scale >= 1.0
    support = f32(scale) if shrinks else f32(1.0)
    invscale = f32(1.0 / np.float64(scale)) if shrinks else f32(1.0)
    i = np.arange(out, dtype=np.float64)
    centre = (np.float64(scale) * (i + 0.5)).astype(f32)
    first = np.maximum(np.trunc((centre - support).astype(np.float64) + 0.5), 0).astype(np.int64)
    stop = np.minimum(np.trunc((centre + support).astype(np.float64) + 0.5).astype(np.int64), length)
    size = stop - first
    taps = int(size.max())
    j = np.arange(taps, dtype=np.int64)
    position = (first[:, None] + j[None, :]).astype(f32) - centre[:, None]          # float32
    x = ((position.astype(np.float64) + 0.5) * np.float64(invscale)).astype(f32)
    x = np.abs(x)
    w = np.where(x < 1.0, (1.0 - x.astype(np.float64)).astype(f32), f32(0.0))
    w = np.where(j[None, :] < size[:, None], w, f32(0.0)).astype(f32)
    total = np.zeros(out, dtype=f32)
    for t in range(taps):                      # sequential float32 sum, as the kernel adds them
        total = (total + w[:, t]).astype(f32)
    safe = np.where(total != 0, total, f32(1.0))
    w = np.where(total[:, None] != 0, (w / safe[:, None]).astype(f32), w).astype(f32)
    first.setflags(write=False)
    w.setflags(write=False)
    return first, w


def _axis_tables(starts: np.ndarray, lengths: np.ndarray, out: int, reverse: np.ndarray | None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-record gather indices (n, out, J) int64 (absolute source pixels) and weights (n, out, J)
    float32 for one axis; ``reverse`` (n,) bool reverses a record's output order (the flip)."""
    n = len(starts)
    tables = {int(length): axis_weights(int(length), out) for length in np.unique(lengths)}
    taps = max(w.shape[1] for _, w in tables.values())
    index = np.empty((n, out, taps), dtype=np.int64)
    weight = np.zeros((n, out, taps), dtype=np.float32)
    for length, (first, w) in tables.items():
        rows = np.flatnonzero(lengths == length)
        # taps past a filter's end have weight 0; their index is clamped inside the source
        local = np.minimum(first[:, None] + np.arange(taps)[None, :], length - 1)
        index[rows] = starts[rows, None, None] + local[None]
        weight[rows, :, :w.shape[1]] = w[None]
    if reverse is not None and reverse.any():
        index[reverse] = index[reverse, ::-1]
        weight[reverse] = weight[reverse, ::-1]
    return index, weight


def _take(workspace: dict, name: str, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A float32 tensor of ``shape`` from ``workspace`` (grown when too small): the passes' temporaries
    are reused from chunk to chunk and, when the caller keeps the workspace, from batch to batch, so a
    long replay does not allocate and free batch-sized blocks (which fragments the C heap)."""
    numel = 1
    for side in shape:
        numel *= int(side)
    buffer = workspace.get(name)
    if buffer is None or buffer.numel() < numel or buffer.device != device:
        buffer = torch.empty(max(numel, 1), dtype=CROP_DTYPE, device=device)
        workspace[name] = buffer
    return buffer[:numel].view(shape)


def _resize_pass(x: torch.Tensor, index: np.ndarray, weight: np.ndarray, workspace: dict, name: str
                 ) -> torch.Tensor:
    """One axis: ``x`` (n, L, R) float32 rows along the resized axis -> (n * out, R), where output row
    o of record i is sum_j weight[i, o, j] * x[i, index[i, o, j]], added in order j = 0, 1, ..."""
    n, length, rest = x.shape
    out, taps = index.shape[1], index.shape[2]
    device = x.device
    flat = x.reshape(n * length, rest)
    base = (np.arange(n, dtype=np.int64) * length)[:, None, None]
    rows = torch.from_numpy(np.ascontiguousarray((index + base).transpose(2, 0, 1))).to(device)   # (J, n, out)
    wts = torch.from_numpy(np.ascontiguousarray(weight.transpose(2, 0, 1))).to(device)            # (J, n, out)
    acc = _take(workspace, name, (n * out, rest), device)
    torch.index_select(flat, 0, rows[0].reshape(-1), out=acc).mul_(wts[0].reshape(-1, 1))
    if taps > 1:
        tap = _take(workspace, "tap", (n * out, rest), device)
        for j in range(1, taps):
            acc.add_(torch.index_select(flat, 0, rows[j].reshape(-1), out=tap).mul_(wts[j].reshape(-1, 1)))
    return acc


# -- argument checks --------------------------------------------------------------------------------
def _int_array(value, shape_tail: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value)
    if array.dtype.kind not in "iub" or array.ndim != 1 + len(shape_tail) or array.shape[1:] != shape_tail:
        raise ValueError(f"{name} must be an integer array of shape (n, {', '.join(map(str, shape_tail))}), "
                         f"got {array.dtype} {array.shape}")
    return array.astype(np.int64)


def _check_crop_size(crop_size) -> tuple[int, int]:
    h_out, w_out = (int(v) for v in crop_size)
    if not (1 <= h_out <= MAX_CROP_SIDE and 1 <= w_out <= MAX_CROP_SIDE):
        raise ValueError(f"crop_size sides must lie in 1..{MAX_CROP_SIDE}, got {tuple(crop_size)}")
    return h_out, w_out


def _records(n: int, height: int, width: int, box, flip) -> tuple[np.ndarray, np.ndarray]:
    boxes = _int_array(box, (4,), "box")
    flips = np.asarray(flip.cpu() if isinstance(flip, torch.Tensor) else flip)
    if boxes.shape[0] != n or flips.shape != (n,):
        raise ValueError(f"box and flip must have one row per record ({n}), got {boxes.shape} and {flips.shape}")
    if flips.dtype.kind not in "iub" or not np.isin(flips, (0, 1)).all():
        raise ValueError("flip must hold 0 or 1 (or booleans)")
    top, left, h, w = boxes.T
    if n and ((top < 0).any() or (left < 0).any() or (h < 1).any() or (w < 1).any()
              or (top + h > height).any() or (left + w > width).any()):
        raise ValueError(f"every box must have height, width >= 1 and lie inside the {height}x{width} image")
    return boxes, flips.astype(bool)


def _mix_arguments(n: int, crop: tuple[int, int], mix: str, mix_partner, mix_box, mix_lambda):
    """Checked mix arguments: (partner int64 (n,) or None, box (4,) or None, lam float32 or None)."""
    if mix not in STREAM_MIXES:
        raise ValueError(f"mix must be one of {', '.join(STREAM_MIXES)}, got {mix!r}")
    if mix == "none":
        return None, None, None
    partner = np.asarray(mix_partner.cpu() if isinstance(mix_partner, torch.Tensor) else mix_partner)
    if partner.shape != (n,) or partner.dtype.kind not in "iu" or (n and (partner.min() < 0 or partner.max() >= n)):
        raise ValueError(f"mix_partner must be (n,) = ({n},) integers in [0, {n})")
    if mix == "cutmix":
        box = np.asarray(mix_box.cpu() if isinstance(mix_box, torch.Tensor) else mix_box)
        if box.shape != (4,) or box.dtype.kind not in "iu":
            raise ValueError("mix_box must be 4 integers [top, left, height, width] (crop pixels)")
        t, l, h, w = (int(v) for v in box)
        if t < 0 or l < 0 or h < 0 or w < 0 or t + h > crop[0] or l + w > crop[1]:
            raise ValueError(f"mix_box {[t, l, h, w]} must lie inside the {crop[0]}x{crop[1]} crop")
        return partner.astype(np.int64), np.array([t, l, h, w], dtype=np.int64), None
    lam = np.float32(mix_lambda if not isinstance(mix_lambda, torch.Tensor) else mix_lambda.item())
    if not (np.isfinite(lam) and 0.0 <= lam <= 1.0):
        raise ValueError(f"mix_lambda must be a finite number in [0, 1], got {mix_lambda!r}")
    return partner.astype(np.int64), None, lam


def _rows_per_band(crops: torch.Tensor, width: int) -> int:
    """Rows of one channel a mix step handles at once: the partners' copy of ``n`` records' band
    (``n x rows x width`` float32) takes about :data:`MIX_BYTES` on the CPU, :data:`CHUNK_BYTES_DEVICE`
    elsewhere (at least one row)."""
    budget = MIX_BYTES if crops.device.type == "cpu" else CHUNK_BYTES_DEVICE
    return max(1, budget // max(1, crops.shape[0] * width * crops.element_size()))


def _mix(crops: torch.Tensor, partner, box, lam) -> torch.Tensor:
    """5.1 step 3 on the flipped crops (n, K, h, w) float32, IN PLACE: CutMix copies the partners'
    pixels inside the box (read before any is written), MixUp is ``c * lam + c_p * (1 - lam)``
    (float32, elementwise; the partners' term computed from the unmixed crops first).

    Each output pixel depends on the same (channel, row, column) of the partner only, so the step runs
    one channel and one band of rows at a time: the partners' copy read before writing is one band
    (about :data:`MIX_BYTES`), not the batch, and every value is the same as in one whole-batch step."""
    if partner is None:
        return crops
    index = torch.from_numpy(partner).to(crops.device)
    if box is not None:
        t, l, h, w = (int(v) for v in box)
        rows = _rows_per_band(crops, w)
        for c in range(crops.shape[1]):
            for top in range(t, t + h, rows):
                region = crops[:, c, top:min(t + h, top + rows), l:l + w]
                region.copy_(region[index])                  # the gather copies first
        return crops
    rows = _rows_per_band(crops, crops.shape[3])
    for c in range(crops.shape[1]):
        for top in range(0, crops.shape[2], rows):
            band = crops[:, c, top:top + rows]
            other = band[index].mul_(float(np.float32(1.0) - lam))   # 1 - lam in float32 (exact as a Python float)
            band.mul_(float(lam)).add_(other)
            del other
    return crops


def mix_crops(crops: torch.Tensor, mix: str = "none", mix_partner=None, mix_box=None, mix_lambda=None
              ) -> torch.Tensor:
    """Spec 5.1 step 3 on a batch's flipped crops ``(n, K, h_out, w_out)`` float32, in place (and
    returned): ``none`` leaves them, ``cutmix`` copies the partner's pixels inside ``mix_box``,
    ``mixup`` blends ``c * lam + c_p * (1 - lam)``."""
    n, _, h_out, w_out = crops.shape
    partner, box, lam = _mix_arguments(n, (h_out, w_out), mix, mix_partner, mix_box, mix_lambda)
    return _mix(crops, partner, box, lam)


# -- the kernels ------------------------------------------------------------------------------------
def source_floats(images, space: str = "pixel255") -> torch.Tensor:
    """Stored images -> the float32 values :func:`crop_batch` resizes (the canonical input, so that
    the labeler's and the loader's crops are the same bits): ``pixel255`` uint8 ``/ 255`` (a float32
    division), other spaces (``pixel01``, ``normalized``, ``zca``) cast to float32 as stored.
    Accepts a numpy array or a tensor (kept on its device)."""
    x = torch.as_tensor(images) if not isinstance(images, torch.Tensor) else images
    if space == "pixel255":
        # a divisor tensor on the images' device: CUDA multiplies by the reciprocal of a CPU scalar divisor
        return x.to(CROP_DTYPE).div_(torch.full((), 255.0, dtype=CROP_DTYPE, device=x.device))
    return x.to(CROP_DTYPE)


def records_per_chunk(image_shape: Sequence[int], device: torch.device | str) -> int:
    """Records resized together: their float32 ``(K, H, W)`` sources take about :data:`CHUNK_BYTES`
    (CPU) or :data:`CHUNK_BYTES_DEVICE` (other devices), so the passes' temporaries stay a few times that."""
    k, height, width = (int(v) for v in image_shape)
    budget = CHUNK_BYTES if torch.device(device).type == "cpu" else CHUNK_BYTES_DEVICE
    return max(1, budget // max(1, k * height * width * 4))


def resize_crops(sources: torch.Tensor, box, flip, crop_size: tuple[int, int] | Sequence[int], *,
                 out: torch.Tensor | None = None, workspace: dict | None = None) -> torch.Tensor:
    """Spec 5.1 steps 1-2 (crop, ``bilinear-antialias`` resize, flip) of n records, no mixing:
    ``(n, K, H, W)`` float sources -> ``(n, K, h_out, w_out)`` float32 (written into ``out`` when
    given). Records are resized a chunk at a time (each record's bits do not depend on the others);
    ``workspace``, a dict the caller keeps (initially empty), holds the temporaries from call to call."""
    if sources.ndim != 4 or not sources.is_floating_point():
        raise ValueError(f"sources must be a floating-point (n, K, H, W) tensor, got {sources.dtype} "
                         f"{tuple(sources.shape)}")
    n, k, height, width = sources.shape
    h_out, w_out = _check_crop_size(crop_size)
    boxes, flips = _records(n, height, width, box, flip)
    if out is None:
        out = torch.empty((n, k, h_out, w_out), dtype=CROP_DTYPE, device=sources.device)
    elif out.shape != (n, k, h_out, w_out) or out.dtype != CROP_DTYPE:
        raise ValueError(f"out must be a float32 tensor of shape {(n, k, h_out, w_out)}")
    workspace = {} if workspace is None else workspace
    step = records_per_chunk(sources.shape[1:], sources.device)
    for start in range(0, n, step):
        stop = min(n, start + step)
        _resize(sources[start:stop], boxes[start:stop], flips[start:stop], out[start:stop], workspace)
    return out


def _resize(sources: torch.Tensor, boxes: np.ndarray, flips: np.ndarray, out: torch.Tensor, workspace: dict) -> None:
    n, k, height, width = sources.shape
    h_out, w_out = out.shape[2:]
    device = sources.device
    top, left, h, w = boxes.T
    col_index, col_weight = _axis_tables(left, w, w_out, flips)
    row_index, row_weight = _axis_tables(top, h, h_out, None)
    # W pass: the pass's rows are source columns: (n, W, K, H) -> (n * w_out, K * H)
    by_column = _take(workspace, "columns", (n, width, k, height), device)
    by_column.copy_(sources.permute(0, 3, 1, 2))
    wide = _resize_pass(by_column.view(n, width, k * height), col_index, col_weight, workspace, "wide")
    # H pass: the pass's rows are source rows: (n, H, K, w_out) -> (n * h_out, K * w_out)
    by_row = _take(workspace, "rows", (n, height, k, w_out), device)
    by_row.copy_(wide.view(n, w_out, k, height).permute(0, 3, 2, 1))
    tall = _resize_pass(by_row.view(n, height, k * w_out), row_index, row_weight, workspace, "tall")
    out.copy_(tall.view(n, h_out, k, w_out).permute(0, 2, 1, 3))


def crop_batch(sources: torch.Tensor, box, flip, crop_size: tuple[int, int] | Sequence[int], *,
               mix: str = "none", mix_partner=None, mix_box=None, mix_lambda=None) -> torch.Tensor:
    """Spec 5.1 steps 1-3 for one batch of records, with the ``bilinear-antialias`` kernel.

    Args:
        sources: ``(n, K, H, W)`` floating-point tensor on any device: record r's source image
            (gathered: ``images[image[r]]``), e.g. :func:`source_floats` of the stored images.
        box: ``(n, 4)`` integers [top, left, height, width] inside the ``H x W`` image.
        flip: ``(n,)`` booleans or 0/1: mirror the resized crop along W.
        crop_size: ``(h_out, w_out)``.
        mix: ``"none"``, ``"cutmix"`` or ``"mixup"`` (``/stream`` ``mix``).
        mix_partner: ``(n,)`` partner positions inside the batch (cutmix, mixup).
        mix_box: 4 integers [top, left, height, width] in crop pixels (cutmix).
        mix_lambda: λ in [0, 1] (mixup; used as float32).

    Returns:
        ``(n, K, h_out, w_out)`` float32 on the sources' device. Deterministic: the same input gives
        the same bits on any device, CPU and thread count, whatever else is in the batch.
    """
    n = sources.shape[0] if sources.ndim == 4 else 0
    h_out, w_out = _check_crop_size(crop_size)
    partner, mbox, lam = _mix_arguments(n, (h_out, w_out), mix, mix_partner, mix_box, mix_lambda)
    crops = resize_crops(sources, box, flip, (h_out, w_out))
    return _mix(crops, partner, mbox, lam)


def pil_crop_batch(sources_uint8: np.ndarray, box, flip, crop_size: tuple[int, int] | Sequence[int], *,
                   mix: str = "none", mix_partner=None, mix_box=None, mix_lambda=None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Spec 5.1 steps 1-3 with ``resize`` = ``pil-bilinear``: per record, Pillow's
    ``Image.crop((left, top, left + width, top + height)).resize((w_out, h_out), Image.BILINEAR)`` of
    the uint8 image (what torchvision's ``resized_crop`` / ``RandomResizedCrop`` does to a PIL image),
    then ``/ 255`` as torchvision's ``to_tensor`` does (float32), then flip and mix as
    :func:`crop_batch`.

    Args:
        sources_uint8: ``(n, K, H, W)`` uint8 array (or CPU tensor), record r's source image; K = 1
            and 3 go through Pillow as ``L`` and ``RGB`` images, other K one ``L`` image per channel.
        device: where the result goes (default CPU).

    Returns:
        ``(n, K, h_out, w_out)`` float32.
    """
    from PIL import Image

    array = np.asarray(sources_uint8.cpu() if isinstance(sources_uint8, torch.Tensor) else sources_uint8)
    if array.ndim != 4 or array.dtype != np.uint8:
        raise ValueError(f"the pil-bilinear path needs (n, K, H, W) uint8 images, got {array.dtype} {array.shape}")
    n, k, height, width = array.shape
    h_out, w_out = _check_crop_size(crop_size)
    boxes, flips = _records(n, height, width, box, flip)
    partner, mbox, lam = _mix_arguments(n, (h_out, w_out), mix, mix_partner, mix_box, mix_lambda)
    out = np.empty((n, k, h_out, w_out), dtype=np.uint8)
    for r in range(n):
        top, left, h, w = (int(v) for v in boxes[r])
        region = (left, top, left + w, top + h)
        if k == 3:
            image = Image.fromarray(np.ascontiguousarray(array[r].transpose(1, 2, 0)))
            out[r] = np.asarray(image.crop(region).resize((w_out, h_out), Image.BILINEAR)).transpose(2, 0, 1)
        else:
            for c in range(k):
                image = Image.fromarray(np.ascontiguousarray(array[r, c]))
                out[r, c] = np.asarray(image.crop(region).resize((w_out, h_out), Image.BILINEAR))
    crops = torch.from_numpy(out).to(CROP_DTYPE).div_(255.0).to(device or "cpu")   # torchvision's to_tensor
    if flips.any():
        mask = torch.from_numpy(flips).to(crops.device)
        crops[mask] = crops[mask].flip(-1)
    return _mix(crops, partner, mbox, lam)
