"""Every batched read path of ``DLADataset`` gives what the per-item path (``ds[i]``) gives.

``batch()`` and ``targets()`` (what ``evaluate`` uses, held in memory or streamed from the file) and
``stored=True`` items collated and turned back by ``decode_batch`` decode whole batches at once; the
per-item path decodes one row. They must agree for every label kind (hard labels only, soft
probabilities, soft logits, dense labels, dense with soft) and every dense codec (float32, float16,
uint8, top-k with float32, float16 and uint8 values), in memory and from the file, for indices in
any order with repeats (a file-backed batch is read as runs of consecutive rows and put back in the
order asked for). The per-item path is itself checked once against the reader's arrays and the
spec's decoding (softmax of logits at temperature 1, spec 4.3).

Tolerance: ``TOL`` absolute on float32 values in [0, 1] (or normalised pixels): the batched and
per-item paths may sum rows in another order (numpy, torch), nothing more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from ladd_format import DenseSpec, DLAWriter, open_dla
from ladd_format.codecs import make_codec
from ladd_format.torch import DLADataset

from conftest import MEAN, STD, make_arrays, softmax

TOL = 1e-6
M, C, SIDE, N = 12, 10, 8, 2

CODECS = {
    "float32": ("float32", {}),
    "float16": ("float16", {}),
    "uint8": ("uint8", {}),
    "topk-float32": ("topk", {"k": 3, "values": "float32"}),
    "topk-float16": ("topk", {"k": 3, "values": "float16"}),
    "topk-uint8": ("topk", {"k": 3, "values": "uint8"}),
}
#: (dense codec or None, soft-label kind or None): hard labels only, soft only, dense (+ soft) per codec
KINDS = [(None, None), (None, "probs"), (None, "logits")] + [
    (codec, soft) for codec in CODECS for soft in (None, "probs", "logits")]

#: unsorted, repeated, negative: runs (0,1), (2,4), (5,8), (11,12) in the file, put back in this order
SHUFFLED = [7, 2, 2, 11, 0, 5, 6, 7, -1, 3]
INDEX_SETS = {"shuffled": SHUFFLED, "all-in-order": list(range(M)), "one": [5], "none": []}


def kind_id(kind) -> str:
    codec, soft = kind
    return f"{codec or 'no-dense'}+{soft or 'no-soft'}"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One file per label kind, written once for the module."""
    folder = tmp_path_factory.mktemp("batched")
    images, labels, dense = make_arrays(M, C, SIDE, N, seed=4)
    logits = np.random.default_rng(5).normal(0.0, 2.0, size=(M, C)).astype(np.float32)
    out = {}
    for codec, soft in KINDS:
        spec = None
        if codec is not None:
            name, config = CODECS[codec]
            spec = DenseSpec(n=N, ratio=0.625, codec=make_codec(name, **config), labeler={"arch": "test"})
        path = folder / f"{kind_id((codec, soft))}.dla.h5"
        soft_values = None if soft is None else (softmax(logits) if soft == "probs" else logits)
        with DLAWriter(path, num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD, dense=spec,
                       soft_kind=soft, converter="test") as w:
            for a, b in ((0, 5), (5, M)):
                w.append(images[a:b], labels[a:b], dense=None if spec is None else dense[a:b],
                         soft=None if soft_values is None else soft_values[a:b])
        out[(codec, soft)] = path
    return out


def dataset(path, kind, **kwargs) -> DLADataset:
    codec, soft = kind
    return DLADataset(path, dense=codec is not None, soft_labels=soft is not None, **kwargs)


def per_item(ds: DLADataset, indices) -> dict:
    """The per-item path, stacked: what ``ds[i]`` gives for each index, in order."""
    items = [ds[i] for i in indices]
    out = {"images": torch.stack([item[0] for item in items]) if items else None,
           "labels": torch.tensor([item[1] for item in items], dtype=torch.int64)}
    k = 2
    if ds.want_dense:
        out["dense"] = torch.stack([item[k] for item in items]) if items else None
        k += 1
    if ds.want_soft:
        out["soft"] = torch.stack([item[k] for item in items]) if items else None
    return out


def assert_close(got: torch.Tensor, want: torch.Tensor | None, what: str) -> None:
    assert got.dtype == torch.float32, what
    if want is None:                              # no index: the batch is empty
        assert got.shape[0] == 0, what
        return
    assert got.shape == want.shape, (what, got.shape, want.shape)
    diff = (got - want).abs().max().item() if got.numel() else 0.0
    assert diff <= TOL, f"{what}: batched and per-item differ by {diff:.3g}"


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_the_per_item_path_is_the_spec(files, kind):
    """The reference itself: ``ds[i]`` holds the reader's decoded dense rows and the soft labels
    as probabilities (logits through a softmax at temperature 1, spec 4.3)."""
    codec, soft = kind
    ds = dataset(files[kind], kind)
    ref = per_item(ds, range(M))
    with open_dla(files[kind]) as f:
        assert ref["labels"].tolist() == f.labels().tolist()
        if codec is not None:
            assert_close(ref["dense"], torch.from_numpy(f.dense()), "dense")
        if soft is not None:
            stored = f.soft_labels().astype(np.float64)
            want = softmax(stored) if soft == "logits" else stored
            assert_close(ref["soft"], torch.from_numpy(want.astype(np.float32)), "soft")
            assert torch.allclose(ref["soft"].sum(-1), torch.ones(M), atol=1e-3)


@pytest.mark.parametrize("in_memory", [False, True], ids=["file", "memory"])
@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_batch_equals_the_per_item_path(files, kind, in_memory):
    ds = dataset(files[kind], kind, in_memory=in_memory)
    reference = dataset(files[kind], kind)
    for name, indices in INDEX_SETS.items():
        want = per_item(reference, indices)
        images, labels, dense, soft = ds.batch(np.asarray(indices, dtype=np.int64))
        assert labels.dtype == torch.int64 and labels.tolist() == want["labels"].tolist(), name
        assert_close(ds.to_float(images), want["images"], f"{name}: images")
        assert (dense is None) == (not ds.want_dense) and (soft is None) == (not ds.want_soft), name
        if dense is not None:
            assert_close(dense, want["dense"], f"{name}: dense")
        if soft is not None:
            assert_close(soft, want["soft"], f"{name}: soft")
        images, labels, dense, soft = ds.batch(indices, targets=False)     # a list works as well
        assert dense is None and soft is None and labels.tolist() == want["labels"].tolist(), name
        assert_close(ds.to_float(images), want["images"], f"{name}: images without targets")


@pytest.mark.parametrize("in_memory", [False, True], ids=["file", "memory"])
@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_targets_equal_the_per_item_path(files, kind, in_memory):
    """``targets()``: the dense and soft labels ``evaluate --mode soft/ladd`` trains on."""
    ds = dataset(files[kind], kind, in_memory=in_memory)
    reference = dataset(files[kind], kind)
    for name, indices in INDEX_SETS.items():
        want = per_item(reference, indices)
        dense, soft = ds.targets(torch.tensor(indices, dtype=torch.int64).numpy())
        assert (dense is None) == (not ds.want_dense) and (soft is None) == (not ds.want_soft), name
        if dense is not None:
            assert_close(dense, want["dense"], f"{name}: dense")
        if soft is not None:
            assert_close(soft, want["soft"], f"{name}: soft")


@pytest.mark.parametrize("in_memory", [False, True], ids=["file", "memory"])
@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_stored_items_collated_and_decoded_equal_the_per_item_path(files, kind, in_memory):
    """``stored=True`` items through the DataLoader's collate, then ``decode_batch`` (the codec's
    ``decode_tensor``)."""
    ds = dataset(files[kind], kind, in_memory=in_memory, stored=True)
    reference = dataset(files[kind], kind)
    indices = SHUFFLED
    want = per_item(reference, indices)
    batch = default_collate([ds[i] for i in indices])
    images, labels = batch[0], batch[1]
    assert labels.tolist() == want["labels"].tolist()
    assert images.dtype == torch.uint8                                   # as stored, not normalised
    k = 2
    dense_rows = None
    if ds.want_dense:
        dense_rows = batch[k]
        assert isinstance(dense_rows, dict) and set(dense_rows) == set(ds.codec.layout(N * N, C))
        k += 1
    x, dense = ds.decode_batch(images, dense_rows)
    assert_close(x, want["images"], "images")
    if ds.want_dense:
        assert_close(dense, want["dense"], "dense")
    else:
        assert dense is None
    if ds.want_soft:
        assert_close(batch[k], want["soft"], "soft")
