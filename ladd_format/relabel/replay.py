"""Which image each slot of an SRe2L relabel folder holds, rebuilt once and explicitly.

SRe2L stores no image index. Its relabel and training scripts both build the association the same
way: the ImageFolder's samples in their sorted order (class folders sorted, files sorted within each),
one ``torch.Generator`` seeded once with ``--fkd-seed`` (default 42), and, per epoch,
``BatchSampler(RandomSampler(ds, generator=g), B, drop_last=False)`` iterated to the end.

:func:`sre2l_indices` reproduces exactly that torch behaviour: ``RandomSampler.__iter__`` (without
replacement, ``num_samples`` = n) yields ``torch.randperm(n, generator=g)`` once per whole multiple of
n and then draws ``torch.randperm(n, generator=g)[:num_samples % n]`` -- an empty slice that still
advances the generator -- so every pass draws TWO permutations of n from g, and the first is the
epoch's order. A replay that draws one permutation per epoch matches epoch 0 only. The batch size
only cuts the order into batches (batch b is ``order[b*B:(b+1)*B]``, the last one short); it does not
change the order. The permutations come from the installed torch's CPU ``randperm``, so the replay
holds for a folder written by a torch release whose ``randperm`` draws the same numbers (checked in
the tests against ``RandomSampler`` + ``BatchSampler`` and ``DataLoader`` of the installed torch).

LPLD folders store the order (``sampler_indices_epoch.json``), G-VBSM and EDC folders the image of
every slot (element 6 of each batch file); :func:`sre2l_association` returns those as stored and
replays nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..stream.defaults import SRE2L_SEED  # SRe2L's --fkd-seed default
from ..errors import InputError
from ..spec.limits import MAX_STREAM_EPOCHS
from .sre2l import LAYOUT_LPLD, MAX_IMAGES, RelabelFolder

#: the most (epoch, slot) pairs :func:`sre2l_indices` holds at once (1 GiB of int64)
MAX_SLOTS = 1 << 27


def _check(num_images: int, batch_size: int, epochs: int, seed: int) -> None:
    for name, value, top in (("image count", num_images, MAX_IMAGES), ("batch size", batch_size, MAX_IMAGES),
                             ("epoch count", epochs, MAX_STREAM_EPOCHS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise InputError(f"the {name} must be an integer in 1..{top:,}, found {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 64:
        raise InputError(f"the sampler seed must be an integer in 0..2**64-1, found {seed!r}")


def sre2l_epoch_orders(num_images: int, epochs: int, seed: int = SRE2L_SEED) -> Iterator[np.ndarray]:
    """Each epoch's image order (int64 (num_images,)), one epoch at a time: two ``randperm`` draws
    per epoch from one generator seeded once, the first kept (see the module docstring)."""
    _check(num_images, 1, epochs, seed)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(num_images, generator=generator)
        torch.randperm(num_images, generator=generator)      # RandomSampler's trailing [:n % n] draw
        yield order.numpy()


def sre2l_indices(num_images: int, batch_size: int, epochs: int, seed: int = SRE2L_SEED) -> np.ndarray:
    """(epochs, num_images) int64: slot s of epoch e holds image ``[e, s]``, as SRe2L's
    ``BatchSampler(RandomSampler(ds, generator=g), B, drop_last=False)`` gives them over ``epochs``
    passes from ``g = torch.Generator().manual_seed(seed)``: torch's two ``randperm`` draws per pass,
    the first kept. Batch b is slots ``b*B..(b+1)*B-1`` (a batch size above the image count gives one
    short batch, as torch does)."""
    _check(num_images, batch_size, epochs, seed)
    if epochs * num_images > MAX_SLOTS:
        raise InputError(f"{epochs:,} epochs of {num_images:,} images are more than the {MAX_SLOTS:,} slots held at "
                         "once; take them epoch by epoch (sre2l_epoch_orders)")
    out = np.empty((epochs, num_images), dtype=np.int64)
    for e, order in enumerate(sre2l_epoch_orders(num_images, epochs, seed)):
        out[e] = order
    return out


def sre2l_association(folder: RelabelFolder, num_images: int | None = None, batch_size: int | None = None,
                      seed: int = SRE2L_SEED) -> np.ndarray | tuple[np.ndarray, ...]:
    """The image of every slot of ``folder``: for an SRe2L folder the replayed (E, N) order, for LPLD
    the stored per-epoch orders, for G-VBSM and EDC the (E, N) indices the batch files store (every
    file read, each epoch checked to be a permutation of the N images). ``num_images`` (the image
    folder's count) and ``batch_size`` (the batch size the run used), when given, must fit the
    folder's batches; a folder they cannot fit is refused in one line rather than associated wrongly."""
    b, nb, last = folder.batch_size, folder.batches_per_epoch, folder.last_batch_size
    if batch_size is not None and batch_size != b:
        raise InputError(f"the batch files hold batches of {b} (len(flip) of epoch_0/batch_0), not {batch_size}: "
                         "the sampler's batches cannot be associated with them", folder.root)
    if folder.layout == LAYOUT_LPLD:
        if num_images is not None and folder.num_images is not None and num_images != folder.num_images:
            raise InputError(f"the folder was scanned for {folder.num_images:,} images, not {num_images:,}",
                             folder.root)
        if num_images is not None:
            top = max(int(order.max()) for order in folder.stored_indices)
            if not nb * b <= num_images or top >= num_images:
                raise InputError(f"sampler_indices_epoch.json names image {top:,} and full epochs hold {nb} batches "
                                 f"of {b}, which {num_images:,} images cannot give", folder.root)
        return folder.stored_indices
    n = folder.num_images
    if num_images is not None and num_images != n:
        raise InputError(f"the batches hold {n:,} images ({nb} batches of {b}, the last {last}) but the image folder "
                         f"has {num_images:,}: the sampler replay cannot associate them", folder.root)
    if folder.indexed:
        if folder.epochs * n > MAX_SLOTS:
            raise InputError(f"{folder.epochs:,} epochs of {n:,} images are more than the {MAX_SLOTS:,} slots held at "
                             "once; read them batch by batch (RelabelFolder.batches)", folder.root)
        out = np.empty((folder.epochs, n), dtype=np.int64)
        for batch in folder.batches():
            start = batch.batch * b
            out[batch.epoch, start:start + len(batch.flip)] = batch.indices
        return out
    return sre2l_indices(n, b, folder.epochs, seed)
