"""The paper's training loss (Eq. 5): CE(h(x_i), y_i) + sum_j CE(h(S_j(x_i)), y^d_ij).

The local term is averaged over the N*N sub-images by default (``reduction="mean"``); the paper's
literal sum is ``reduction="sum"`` (``ladd evaluate --reduction sum``). Measured on digits
(benchmarks/RESULTS.md, section ``students_loss``: ConvNet-D3 students, 25 sub-images, 3 seeds),
the sum gave 82.4 +- 4.9% at IPC 1 and 92.6 +- 0.7% at IPC 5, the mean 91.3 +- 1.4% and
96.0 +- 0.1%: summing weights the local term 25x the global one and cost about 9 points at IPC 1.

Memory. A batch of B images is B * (N*N + 1) views through the model: at 128 px with N = 5 a batch
of 64 is 1,664 forward passes whose activations autograd keeps for the backward pass (35 MiB each
for ConvNet-D3: 57 GB). Eq. 5 is a sum over views, so :func:`ladd_loss` runs them in chunks: each
chunk's crop-and-resize, augmentation and forward pass runs under
:func:`torch.utils.checkpoint.checkpoint` (non-reentrant), which keeps only the chunk's logits and
runs the chunk again, one at a time, in the backward pass. The loss, its value and its gradients are
those of the unchunked loss (equal within float rounding: the same sums in another order; tested to
1e-5 relative), at the price of a second forward pass of the chunked views (on the CPU measured
no slower in all, as the whole batch's memory costs time too: 16 s chunked against 17 s whole for
two steps at 128 px, batch 4; benchmarks/RESULTS.md, ``ladd_memory``). The chunk is chosen so that its activations take at most :data:`CHUNK_BUDGET_BYTES`,
measured once per model and view size (:func:`view_bytes`); a batch whose views all fit runs as one
pass, unchanged. ``sub_chunk=0`` never chunks.

What differs when chunking, and how it is handled:

- BatchNorm in training mode normalises with the statistics of the views it is given, so it would
  see a chunk instead of the whole batch (as with ``ladd evaluate --micro-batch``). The automatic
  choice therefore never chunks a model with a BatchNorm layer in training mode (the project's own
  students use instance norm); a chunk given explicitly is honoured, the BatchNorm layers see its
  statistics, and their running statistics are updated once per chunk (restored after the
  backward pass's second run).
- ``augment``: a plain callable is applied to the whole batch of sub-images at once, as before, so
  its random draws are unchanged; the augmented sub-images (``B*N*N*K*H'*W'`` floats) are then held.
  An augmentation that has ``draw(n)`` (the random parameters of ``n`` views, a tensor with one
  row per view) and ``apply(x, params)`` methods (the students'
  :class:`ladd_format.train.student.StudentAugment` is one) draws the whole batch's parameters
  once, in the same order, and is applied inside each chunk, so nothing is held and the second
  run gives the same views.
- Random layers (dropout) draw again in the second run from the saved RNG state, as
  :func:`~torch.utils.checkpoint.checkpoint` does by default.
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .subsampler import SubSampler

REDUCTIONS = ("sum", "mean")

#: bytes of saved activations one chunk of views may hold for the backward pass (module docstring):
#: 7 sub-images of ConvNet-D3 at 128 px (35 MiB each), 102 at 32 px (2.5 MiB each)
CHUNK_BUDGET_BYTES = 256 << 20

_VIEW_BYTES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy against probability targets: ``-(target * log_softmax(logits)).sum(-1)``."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def batch_stat_layers(model: nn.Module) -> list[nn.Module]:
    """The model's BatchNorm layers in training mode: those whose output depends on the other views
    of the pass."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]


def view_bytes(model: nn.Module, shape: tuple[int, int, int], dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> int:
    """Bytes of activations autograd saves for one ``(K, H, W)`` view through ``model`` (parameters
    not counted), measured with a forward pass of one zero image and remembered per model, shape,
    dtype, device and training mode. The global RNG state is left as it was."""
    device = torch.device(device)
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module                     # a wrapper's own forward would prepare a reduction
    key = (tuple(int(v) for v in shape), dtype, device, model.training)
    known = _VIEW_BYTES.setdefault(model, {})
    if key not in known:
        own = {p.untyped_storage().data_ptr() for p in model.parameters()}
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in own:
                storages[ptr] = t.untyped_storage().nbytes()
            return t
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(torch.zeros((1, *key[0]), dtype=dtype, device=device))
        known[key] = max(1, sum(storages.values()))
    return known[key]


def auto_chunk(model: nn.Module, shape: tuple[int, int, int], dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu", budget: int = CHUNK_BUDGET_BYTES) -> int:
    """Views of ``shape`` per chunk so that a chunk's activations take at most ``budget`` bytes
    (at least 1); 0 (no chunking) for a model with BatchNorm in training mode or with autograd off."""
    if batch_stat_layers(model) or not torch.is_grad_enabled():
        return 0
    return max(1, budget // view_bytes(model, shape, dtype, device))


def _checkpointed(fn: Callable[..., torch.Tensor], batch_stats: list[nn.Module], *args) -> torch.Tensor:
    """``fn(*args)`` under non-reentrant checkpointing; BatchNorm running statistics that the
    backward pass's second run updates are put back as the first run left them."""
    if not batch_stats:
        return checkpoint(fn, *args, use_reentrant=False)
    runs = [0]
    buffers = [buf for layer in batch_stats for buf in layer.buffers()]

    def once(*inner):
        runs[0] += 1
        if runs[0] == 1:
            return fn(*inner)
        saved = [buf.clone() for buf in buffers]
        try:
            return fn(*inner)
        finally:
            with torch.no_grad():
                for buf, value in zip(buffers, saved):
                    buf.copy_(value)
    return checkpoint(once, *args, use_reentrant=False)


def ladd_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, dense: torch.Tensor,
              sampler: SubSampler, *, reduction: str = "mean", local_weight: float = 1.0,
              augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
              sub_chunk: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 5 of LADD on a batch.

    Args:
        model: the student h.
        images: ``(B, K, H, W)`` float, as the model takes them (normalised); the sub-images are
            rebuilt from these on their device (normalising and the bilinear resize commute, since
            the resize weights sum to 1).
        labels: ``(B,)`` int64 hard labels.
        dense: ``(B, N*N, C)`` float probabilities, one row per sub-image.
        sampler: the file's :class:`SubSampler` (``dataset.sampler``).
        reduction: ``"mean"`` (default) averages the local term over the N*N sub-images;
            ``"sum"`` sums it, the paper's literal Eq. 5, measured about 9 points worse at IPC 1
            on digits (82.4 vs 91.3%, benchmarks/RESULTS.md ``students_loss``; module docstring).
        local_weight: weight of the local (sub-image) term.
        augment: optional callable applied to the global batch and, separately, to the batch of
            rebuilt sub-images (``(B*N*N, K, H, W)``); with ``draw``/``apply`` methods it is
            applied a chunk at a time (module docstring).
        sub_chunk: views (images and sub-images) per forward pass, each pass checkpointed (module
            docstring); ``None`` (default) chooses it from :data:`CHUNK_BUDGET_BYTES`
            (:func:`auto_chunk`); 0 runs the whole batch at once.

    Returns:
        ``(loss, {"global": ..., "local": ...})``: loss = global + local_weight * local, each term a
        mean over the B images (detached copies for logging in the dict).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if sub_chunk is not None and sub_chunk < 0:
        raise ValueError(f"sub_chunk must be >= 0 (0: no chunking), got {sub_chunk}")
    b, p = images.shape[0], sampler.num_sub
    if dense.shape[:2] != (b, p):
        raise ValueError(f"dense labels must be (B={b}, N*N={p}, C), got {tuple(dense.shape)}")
    chunk = sub_chunk
    if chunk is None:
        k, height, width = images.shape[1:]
        side = sampler.size or (height, width)
        shape = (k, max(height, side[0]), max(width, side[1]))
        chunk = auto_chunk(model, shape, images.dtype, images.device)
    if chunk == 0 or b * (p + 1) <= chunk:
        global_ce, per_sub = _whole(model, images, labels, dense, sampler, augment)
    else:
        global_ce, per_sub = _chunked(model, images, labels, dense, sampler, augment, chunk)
    global_term = global_ce.mean()
    per_sub = per_sub.view(b, p)
    local_term = per_sub.sum(dim=1).mean() if reduction == "sum" else per_sub.mean()
    loss = global_term + local_weight * local_term
    return loss, {"global": global_term.detach(), "local": local_term.detach()}


def _whole(model, images, labels, dense, sampler, augment) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image global and per-sub-image local cross-entropies, every view in two passes."""
    subs = sampler(images).flatten(0, 1)                       # (B*P, K, H', W')
    x = images
    if augment is not None:
        x, subs = augment(x), augment(subs)
    global_ce = F.cross_entropy(model(x), labels, reduction="none")
    per_sub = soft_cross_entropy(model(subs), dense.flatten(0, 1).to(subs.dtype))
    return global_ce, per_sub


def _chunked(model, images, labels, dense, sampler, augment, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_whole`'s cross-entropies, ``chunk`` views per checkpointed pass (module docstring)."""
    batch_stats = batch_stat_layers(model)
    b, p = images.shape[0], sampler.num_sub
    x = images if augment is None else augment(images)
    global_ce = torch.cat([F.cross_entropy(_checkpointed(model, batch_stats, x[s:s + chunk]), labels[s:s + chunk],
                                           reduction="none") for s in range(0, b, chunk)])
    targets = dense.flatten(0, 1)
    split = augment is not None and callable(getattr(augment, "draw", None)) and \
        callable(getattr(augment, "apply", None))
    if augment is not None and not split:
        held = augment(sampler(images).flatten(0, 1))           # a plain callable: one call, as unchunked

        def views(start: int, stop: int) -> torch.Tensor:
            return model(held[start:stop])
    else:
        params = augment.draw(b * p) if split else None

        def views(start: int, stop: int) -> torch.Tensor:
            subs = sampler.rows(images, start, stop)
            return model(subs if params is None else augment.apply(subs, params[start:stop]))
    per_sub = []
    for start in range(0, b * p, chunk):
        stop = min(b * p, start + chunk)
        logits = _checkpointed(views, batch_stats, start, stop)
        per_sub.append(soft_cross_entropy(logits, targets[start:stop].to(logits.dtype)))
    return global_ce, torch.cat(per_sub)
