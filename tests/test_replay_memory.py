"""The replay loader's memory, structurally (no RSS, no timing): one inputs buffer by default, kept
batches emptied rather than overwritten, no references to past batches, bounded temporaries, and the
banded CutMix/MixUp giving the whole-batch values.
"""

import weakref

import numpy as np
import pytest
import torch

from ladd_format.torch import replay as replay_module
from ladd_format.torch import stream_crops
from ladd_format.torch.replay import ReplayLoader
from ladd_format.torch.stream_crops import mix_crops

from test_replay_loader import _expected_crops, write_stream


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    return write_stream(tmp_path_factory.mktemp("memory") / "cut.dla.h5", mix="cutmix")


def _fresh_batches(path):
    with ReplayLoader(path, reuse_inputs=False) as loader:
        return [tuple(t.clone() for t in batch) for batch in loader]


def test_the_default_builds_every_batch_in_one_buffer(stream):
    path = stream[0]
    want = _fresh_batches(path)
    with ReplayLoader(path) as loader:
        assert loader.reuse_inputs
        pointers = []
        for (inputs, probs, labels), (w_inputs, w_probs, w_labels) in zip(loader, want, strict=True):
            assert torch.equal(inputs, w_inputs) and torch.equal(probs, w_probs) and torch.equal(labels, w_labels)
            pointers.append(inputs.untyped_storage().data_ptr())
        assert len(pointers) == 4 and len(set(pointers)) == 1


def test_a_batch_kept_past_the_next_is_emptied_not_overwritten(stream):
    path = stream[0]
    want = _fresh_batches(path)
    with ReplayLoader(path) as loader:
        kept = list(loader)
        assert [b.inputs.numel() for b in kept[:-1]] == [0, 0, 0]       # used, they fail: no newer pixels
        assert torch.equal(kept[-1].inputs, want[-1][0])
        for b, w in zip(kept, want, strict=True):                         # labels are never reused
            assert torch.equal(b.probs, w[1]) and torch.equal(b.labels, w[2])
        pairs = list(loader.epoch(0))
        assert pairs[0][0].numel() == 0 and torch.equal(pairs[-1][0], want[-1][0])


def test_a_backward_pass_deferred_past_the_next_batch_fails_loudly(stream):
    with ReplayLoader(stream[0]) as loader:
        it = iter(loader)
        inputs = next(it).inputs
        model = torch.nn.Conv2d(3, 2, 3)
        loss = model(inputs).sum()
        next(it)
        with pytest.raises(RuntimeError, match="inplace"):
            loss.backward()


def test_without_reuse_each_batch_is_its_own_and_the_loader_keeps_none(stream):
    path = stream[0]
    want = _fresh_batches(path)
    with ReplayLoader(path, reuse_inputs=False) as loader:
        kept = list(loader)
        assert len({b.inputs.untyped_storage().data_ptr() for b in kept}) == len(kept)
        for b, w in zip(kept, want, strict=True):
            assert all(torch.equal(x, y) for x, y in zip(b, w))
        refs = [weakref.ref(t) for t in kept[0]]
        del kept, b
        loader.batch(1)
        assert all(r() is None for r in refs)       # nothing of a batch survives in the loader


def test_crops_is_a_new_tensor_even_with_reuse(stream):
    path, images, _, written = stream
    with ReplayLoader(path) as loader:
        crops = loader.crops(0)
        batch = loader.batch(1)
        assert crops.untyped_storage().data_ptr() != batch.inputs.untyped_storage().data_ptr()
        assert crops.numel() > 0 and torch.equal(crops, _expected_crops(images, written[0][1], "cutmix"))


def test_temporaries_are_bounded_by_their_limits(stream, monkeypatch):
    """Each read of stored images is at most GATHER_BYTES (or one kernel chunk), and the crop kernel's
    kept workspace a few chunks, whatever the batch size."""
    path, images, _, _ = stream
    per_image = images[0].nbytes
    monkeypatch.setattr(replay_module, "GATHER_BYTES", 2 * per_image)
    monkeypatch.setattr(stream_crops, "CHUNK_BYTES", 4 * images[0].size)          # one record a chunk
    with ReplayLoader(path, reuse_inputs=False) as loader:
        reads = []
        original = loader._images.batch

        def spy(indices, **kwargs):
            out = original(indices, **kwargs)
            reads.append(out[0].numel() * out[0].element_size())
            return out

        loader._images.batch = spy
        for _ in loader:
            pass
        assert reads and max(reads) <= 2 * per_image
        assert len(reads) >= sum(len(rec["image"]) for _, rec, _ in stream[3][:4]) // 2
        kept = sum(t.numel() * t.element_size() for t in loader._workspace.values())
        assert 0 < kept <= 5 * 4 * images[0].size       # columns, wide, tap, rows, tall: one record each


@pytest.mark.parametrize("mix", ["cutmix", "mixup"])
def test_banded_mix_gives_the_whole_batch_values(monkeypatch, mix):
    rng = np.random.default_rng(7)
    n, k, h, w = 6, 3, 10, 12
    crops = torch.from_numpy(rng.random((n, k, h, w), dtype=np.float32))
    partner = rng.permutation(n)
    monkeypatch.setattr(stream_crops, "MIX_BYTES", 1)                   # one row a band
    assert stream_crops._rows_per_band(crops, w) == 1
    if mix == "cutmix":
        box = np.array([2, 3, 6, 7])
        want = crops.clone()
        want[:, :, 2:8, 3:10] = crops[torch.from_numpy(partner)][:, :, 2:8, 3:10]
        got = mix_crops(crops.clone(), "cutmix", mix_partner=partner, mix_box=box)
    else:
        lam = np.float32(0.37)
        want = crops * float(lam) + crops[torch.from_numpy(partner)] * float(np.float32(1.0) - lam)
        got = mix_crops(crops.clone(), "mixup", mix_partner=partner, mix_lambda=float(lam))
    assert torch.equal(got, want)
