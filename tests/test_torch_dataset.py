"""Issue: load a D_LA into any trainer — DLADataset, workers under fork and spawn, DDP shards."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, DistributedSampler

from ladd_format import DenseSpec, DLAWriter, open_dla
from ladd_format.codecs import make_codec
from ladd_format.errors import GeometryError, MissingFieldError, NoDenseLabelsError
from ladd_format.torch import DLADataset, SubSampler, ladd_loss

from conftest import MEAN, STD, make_arrays, write_dla

M = 20


def indexed_file(path, codec="float32", m=M):
    """Image i carries its index in pixel [0, 0, 0], so a loader's output says which items it saw."""
    images, labels, dense = make_arrays(m, side=16, n=3)
    images[:, 0, 0, 0] = np.arange(m)
    soft = np.random.default_rng(3).normal(size=(m, 10)).astype(np.float32)
    config = {"k": 3} if codec == "topk" else {}
    with DLAWriter(path, num_classes=10, image_shape=(3, 16, 16), mean=MEAN, std=STD, soft_kind="logits",
                   dense=DenseSpec(3, 0.625, make_codec(codec, **config))) as w:
        w.append(images, labels, dense=dense, soft=soft)
    return path


def item_ids(images: torch.Tensor, ds: DLADataset) -> list[int]:
    pixel = images[:, 0, 0, 0] * ds.std[0, 0, 0] + ds.mean[0, 0, 0]
    return [int(v) for v in torch.round(pixel * 255).tolist()]


def test_three_lines_train_step(tmp_path):
    path = indexed_file(tmp_path / "set.dla.h5")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))
    # the README's three lines:
    ds = DLADataset(path)
    for images, labels, dense in DataLoader(ds, batch_size=8, shuffle=True):
        loss, parts = ladd_loss(model, images, labels, dense, ds.sampler)
        loss.backward()
    assert torch.isfinite(loss) and set(parts) == {"global", "local"}
    assert all(p.grad is not None for p in model.parameters())


def test_items_are_normalised_images_labels_and_decoded_dense(tmp_path):
    path = indexed_file(tmp_path / "set.dla.h5")
    ds = DLADataset(path, soft_labels=True)
    with open_dla(path) as f:
        raw, labels, dense, soft = f.images(), f.labels(), f.dense(), f.soft_labels()
    image, label, d, s = ds[7]
    expected = (torch.from_numpy(raw[7]).float() / 255 - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    assert image.dtype == torch.float32 and torch.allclose(image, expected, atol=1e-6)
    assert label == labels[7] and torch.equal(d, torch.from_numpy(dense[7]))
    assert torch.allclose(s, torch.softmax(torch.from_numpy(soft[7]), -1))
    assert len(ds) == M and torch.equal(ds[-1][0], ds[M - 1][0])
    with pytest.raises(IndexError):
        ds[M]
    raw_ds = DLADataset(path, normalize=False)
    assert torch.allclose(raw_ds[7][0], torch.from_numpy(raw[7]).float() / 255)


@pytest.mark.parametrize("codec", ["float16", "uint8", "topk"])
def test_any_codec_decodes_to_float32_rows(tmp_path, codec):
    ds = DLADataset(indexed_file(tmp_path / "set.dla.h5", codec=codec))
    _, _, dense = ds[3]
    assert dense.dtype == torch.float32 and dense.shape == (9, 10)
    assert torch.allclose(dense.sum(-1), torch.ones(9), atol=4e-3)


def test_in_memory_equals_lazy(tmp_path):
    path = indexed_file(tmp_path / "set.dla.h5")
    lazy, mem = DLADataset(path, soft_labels=True), DLADataset(path, soft_labels=True, in_memory=True)
    for i in (0, 5, M - 1):
        for a, b in zip(lazy[i], mem[i]):
            assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


@pytest.mark.mutation_skip
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_two_workers_sees_each_item_once(tmp_path, context):
    path = indexed_file(tmp_path / "set.dla.h5")
    ds = DLADataset(path)
    ds[0]  # the parent holds an open handle: workers must not use it
    loader = DataLoader(ds, batch_size=3, shuffle=True, num_workers=2, multiprocessing_context=context,
                        generator=torch.Generator().manual_seed(0))
    seen = [i for images, _, _ in loader for i in item_ids(images, ds)]
    assert sorted(seen) == list(range(M))


def _ddp_worker(rank, world, port, path, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ds = DLADataset(path)
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(1)
        seen = [i for images, _, _ in DataLoader(ds, batch_size=4, sampler=sampler) for i in item_ids(images, ds)]
        gathered = [None] * world
        dist.all_gather_object(gathered, seen)
        if rank == 0:
            np.save(os.path.join(out_dir, "shards.npy"), np.array(gathered, dtype=object), allow_pickle=True)
    finally:
        dist.destroy_process_group()


@pytest.mark.mutation_skip
def test_distributed_sampler_two_gloo_processes_disjoint_and_covering(tmp_path):
    path = indexed_file(tmp_path / "set.dla.h5")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(path), str(tmp_path)), nprocs=2, join=True)
    a, b = np.load(tmp_path / "shards.npy", allow_pickle=True)
    assert len(a) == len(b) == M // 2
    assert set(a).isdisjoint(b) and sorted([*a, *b]) == list(range(M))


def test_plain_set_needs_augment_first(tmp_path):
    path = write_dla(tmp_path / "d.dla.h5", codec=None)
    with pytest.raises(NoDenseLabelsError, match=r"d\.dla\.h5.*run `ladd augment` first"):
        DLADataset(path)
    ds = DLADataset(path, dense=False)
    image, label = ds[0]
    with pytest.raises(NoDenseLabelsError, match="ladd augment"):
        ds.sampler
    with pytest.raises(MissingFieldError, match="soft labels"):
        DLADataset(path, dense=False, soft_labels=True)


def test_boxes_outside_the_image_are_refused(tmp_path):
    with pytest.raises(GeometryError, match="inside"):
        SubSampler(np.array([[0, 0, 17, 10]]), (16, 16))
    path = write_dla(tmp_path / "a.dla.h5")
    import h5py
    from ladd_format import integrity
    with h5py.File(path, "r+") as f:
        f["dense"].attrs["boxes"] = np.array([[8, 8, 10, 10]] * 9, np.int32)
        integrity.reseal(f)  # a crafted file, not a damaged one: its root digest agrees
    with pytest.raises(GeometryError, match=r"a\.dla\.h5"):
        SubSampler.from_file(path)
    with pytest.raises(GeometryError):
        DLADataset(path).sampler


def test_subsampler_matches_file_geometry(tmp_path):
    path = write_dla(tmp_path / "a.dla.h5", side=32, n=5)
    s = SubSampler.from_file(path)
    assert s.num_sub == 25 and s(torch.rand(2, 3, 32, 32)).shape == (2, 25, 3, 32, 32)
    with pytest.raises(ValueError, match="boxes are for"):
        s(torch.rand(2, 3, 16, 16))


def test_a_batch_through_the_loss_equals_a_hand_computation(tmp_path):
    """DLADataset + ladd_loss against the spec done by hand: pixels / 255 normalised with the file's
    mean/std, sub-images from torchvision's resized_crop at the spec's boxes (conftest.hand_subimages),
    the local term averaged over the sub-images. A model that sees pixel positions makes a crop at
    the wrong place, or a summed local term, miss by far more than the tolerance."""
    from conftest import hand_subimages
    path = write_dla(tmp_path / "set.dla.h5", m=12, side=16, n=3)
    ds = DLADataset(path)
    images, labels, dense = next(iter(DataLoader(ds, batch_size=12, shuffle=False)))
    with open_dla(path) as f:
        raw, stored_dense = f.images(), f.dense()
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    by_hand = (torch.from_numpy(raw).double() / 255 - mean.double()) / std.double()
    assert torch.allclose(images.double(), by_hand, rtol=0, atol=1e-6)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10)).double()
    with torch.no_grad():
        model[1].weight.normal_(0, 0.3)
    x, d = by_hand, torch.from_numpy(stored_dense).double()
    loss, parts = ladd_loss(model, x, labels, d, ds.sampler)
    g = torch.nn.functional.cross_entropy(model(x), labels)
    subs = hand_subimages(x, 3, 0.625)                                    # (12, 9, 3, 16, 16)
    log_p = torch.log_softmax(model(subs.flatten(0, 1)), -1).view(12, 9, 10)
    local = -(d * log_p).sum(-1).mean()
    assert torch.allclose(parts["global"], g, rtol=1e-9) and torch.allclose(parts["local"], local, rtol=1e-9)
    assert torch.allclose(loss, g + local, rtol=1e-9)
