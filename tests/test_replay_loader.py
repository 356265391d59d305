"""The replay loader of a relabel stream (ladd_format.torch.replay; spec 4.7, 5.1, docs/relabel.md).

Streams written with DLAWriter.append_stream; the loader's crops must be the bits crop_batch gives for
the stored records (what `ladd relabel` hands the teacher), its targets the stored labels decoded.
"""

import numpy as np
import pytest
import torch

from ladd_format import DLAWriter, open_dla
from ladd_format import spec as S
from ladd_format.errors import LaddError
from ladd_format.stream import StreamSpec, parse_stream_codec
from ladd_format.stream.counter_rng import CounterRNG
from ladd_format.torch import replay as replay_module
from ladd_format.torch.replay import ReplayLoader, pool_batches, rank_share
from ladd_format.torch.stream_crops import crop_batch, pil_crop_batch, source_floats

from conftest import MEAN, STD

M, C, SIDE, CROP = 10, 7, 24, 16


def _records(rng, n, mix):
    h = rng.integers(3, SIDE + 1, n)
    w = rng.integers(3, SIDE + 1, n)
    box = np.stack([rng.integers(0, SIDE - h + 1), rng.integers(0, SIDE - w + 1), h, w], 1)
    out = dict(image=rng.integers(0, M, n), box=box, flip=rng.random(n) < 0.5)
    if mix != "none":
        out["mix_partner"] = rng.permutation(n)
    if mix == "cutmix":
        out["mix_box"] = np.array([2, 3, 5, 6])
    if mix == "mixup":
        out["mix_lambda"] = float(rng.random())
    return out


def write_stream(path, *, epochs=3, batches=(4, 3, 4), batch_size=5, mix="none", codec="topk:k=3,values=uint8",
                 mode="epochs", resize=S.RESIZE_ANTIALIAS, temperature=1.0, seed=0, space_float=False):
    """A stream of ``epochs`` epochs with ``batches[e]`` batches each (the last batch of an epoch short);
    returns the file and what was appended: [(epoch, records, logits)]."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (M, 3, SIDE, SIDE), dtype=np.uint8)
    labels = np.arange(M) % C
    spec = StreamSpec(epochs=epochs, batch_size=batch_size, crop_size=(CROP, CROP + 2), mode=mode, resize=resize,
                      mix=mix, codec=parse_stream_codec(codec), temperature=temperature, teacher={"arch": "test"})
    written = []
    with DLAWriter(path, num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD, converter="test",
                   stream=spec) as w:
        w.append(images, labels)
        for e in range(epochs):
            for j in range(batches[e]):
                n = batch_size if j < batches[e] - 1 else batch_size - 2
                rec = _records(rng, n, mix)
                logits = rng.normal(size=(n, C)) * 3
                w.append_stream(e, logits=logits, **rec)
                written.append((e, rec, logits))
    return path, images, labels, written


@pytest.fixture(scope="module")
def cutmix_stream(tmp_path_factory):
    return write_stream(tmp_path_factory.mktemp("replay") / "cut.dla.h5", mix="cutmix")


def _expected_crops(images, rec, mix, kernel=S.RESIZE_ANTIALIAS):
    args = {key: rec[key] for key in ("mix_partner", "mix_box", "mix_lambda") if key in rec}
    if kernel == S.RESIZE_PIL:
        return pil_crop_batch(images[rec["image"]], rec["box"], rec["flip"], (CROP, CROP + 2), mix=mix, **args)
    return crop_batch(source_floats(images[rec["image"]]), rec["box"], rec["flip"], (CROP, CROP + 2), mix=mix, **args)


def test_crops_are_crop_batch_of_each_stored_record_bitwise(tmp_path):
    path, images, _, written = write_stream(tmp_path / "plain.dla.h5")
    with ReplayLoader(path) as loader:
        for b, (_, rec, _) in enumerate(written):
            crops = loader.crops(b)
            for r in range(len(rec["image"])):
                alone = crop_batch(source_floats(images[rec["image"][r:r + 1]]), rec["box"][r:r + 1],
                                   rec["flip"][r:r + 1], (CROP, CROP + 2))
                assert torch.equal(crops[r], alone[0])


@pytest.mark.parametrize("mix", ["cutmix", "mixup"])
def test_mixed_crops_and_targets(tmp_path, mix):
    path, images, labels, written = write_stream(tmp_path / f"{mix}.dla.h5", mix=mix)
    with ReplayLoader(path) as loader, open_dla(path) as f:
        s = f.stream
        for b, (_, rec, _) in enumerate(written):
            inputs, probs, hard = loader.batch(b)
            crops = _expected_crops(images, rec, mix)
            assert torch.equal(loader.crops(b), crops)
            mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
            assert torch.equal(inputs, (crops - mean) / std)
            assert probs.dtype == torch.float32 and probs.shape == (len(rec["image"]), C)
            np.testing.assert_allclose(probs.numpy(), s.probs(s.read_batch(b)), atol=1e-6)
            assert torch.equal(hard, torch.from_numpy(labels[rec["image"]]).long())


def test_set_epoch_changes_the_batches(cutmix_stream):
    path, _, _, written = cutmix_stream
    with ReplayLoader(path, reuse_inputs=False) as loader:   # keeps batches
        assert list(loader.batches()) == [0, 1, 2, 3] and len(loader) == 4
        loader.set_epoch(1)
        assert list(loader.batches()) == [4, 5, 6] and len(loader) == 3
        first = [x for x, _, _ in loader]
        assert len(first) == 3 and torch.equal(first[0], loader.batch(4).inputs)
        loader.set_epoch(2)
        assert list(loader.batches()) == [7, 8, 9, 10]
        assert not torch.equal(next(iter(loader)).inputs[:3], first[0][:3])


def test_epoch_beyond_the_stream_is_refused_unless_wrap(cutmix_stream):
    path = cutmix_stream[0]
    with ReplayLoader(path) as loader:
        with pytest.raises(LaddError) as err:
            loader.set_epoch(3)
        assert "epoch 3 is beyond the stream's 3 epochs" in str(err.value) and "\n" not in str(err.value)
        assert loader.current_epoch == 0
    with ReplayLoader(path, wrap=True) as loader:
        loader.set_epoch(4)
        assert list(loader.batches()) == [4, 5, 6]


def test_two_ranks_split_whole_batches(cutmix_stream):
    path = cutmix_stream[0]
    shares = []
    for rank in (0, 1):
        with ReplayLoader(path, rank=rank, world_size=2) as loader:
            shares.append([list(loader.batches(e)) for e in range(3)])
    # epoch 0: 4 batches, each exactly once over the two ranks
    assert sorted(shares[0][0] + shares[1][0]) == [0, 1, 2, 3] and shares[0][0] == [0, 2]
    # epoch 1: 3 batches -> 2 each (padded from the start, as DistributedSampler pads): all covered
    assert len(shares[0][1]) == len(shares[1][1]) == 2 and set(shares[0][1] + shares[1][1]) == {4, 5, 6}
    with ReplayLoader(path, rank=1, world_size=2, drop_last=True) as loader:
        assert list(loader.batches(1)) == [5]
    assert list(rank_share(np.arange(7), 2, 3)) == [2, 5, 1]


def test_rank_and_world_come_from_torch_distributed(tmp_path, cutmix_stream):
    import torch.distributed as dist
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        with ReplayLoader(cutmix_stream[0]) as loader:
            assert (loader.rank, loader.world_size) == (0, 1) and len(loader) == 4
    finally:
        dist.destroy_process_group()
    with pytest.raises(ValueError):
        ReplayLoader(cutmix_stream[0], rank=2, world_size=2)


def test_pool_mode_draws_are_deterministic_and_documented(tmp_path):
    path = write_stream(tmp_path / "pool.dla.h5", mode="pool")[0]
    nb = 11
    with ReplayLoader(path, seed=7) as a, ReplayLoader(path, seed=7) as b:
        assert len(a) == 4                           # default: the batches of stored epoch 0
        for e in (0, 1, 5, 400):                     # any training epoch: a pool has no end
            a.set_epoch(e)
            b.set_epoch(e)
            assert list(a.batches()) == list(b.batches())
            expect = [int(CounterRNG(7).below(e, j, 0, nb)) for j in range(4)]
            assert list(a.batches()) == expect
        assert list(a.epoch_batches(0)) != list(a.epoch_batches(1))
    with ReplayLoader(path, seed=8, pool_batches=9) as c:
        assert len(c) == 9 and all(0 <= x < nb for x in c.batches())
    assert list(pool_batches(nb, 3, 5, 7)) == list(pool_batches(nb, 3, 5, 7))


def test_temperature_and_logits_codec(tmp_path):
    path, _, _, written = write_stream(tmp_path / "logits.dla.h5", codec="logits:float32", temperature=2.0)
    with open_dla(path) as f, ReplayLoader(path, temperature=4.0) as hot, ReplayLoader(path) as plain:
        s = f.stream
        for b in range(3):
            stored = s.read_batch(b)
            np.testing.assert_allclose(plain.batch(b).probs.numpy(), s.probs(stored), atol=1e-6)
            np.testing.assert_allclose(hot.batch(b).probs.numpy(), s.probs(stored, temperature=4.0), atol=1e-6)
    path = write_stream(tmp_path / "u8.dla.h5", codec="uint8", temperature=2.0)[0]
    with open_dla(path) as f, ReplayLoader(path, temperature=1.0) as loader:
        s = f.stream
        np.testing.assert_allclose(loader.batch(0).probs.numpy(), s.probs(s.read_batch(0), temperature=1.0), atol=1e-6)


def test_pil_kernel_and_images_read_per_batch(tmp_path):
    path, images, _, written = write_stream(tmp_path / "pil.dla.h5", resize=S.RESIZE_PIL, mix="cutmix")
    with ReplayLoader(path) as default, ReplayLoader(path, images="file") as per_batch, \
            ReplayLoader(path, kernel=S.RESIZE_ANTIALIAS) as device_kernel:
        assert default.kernel == S.RESIZE_PIL       # the stream's own resize
        for b, (_, rec, _) in enumerate(written[:4]):
            expect = _expected_crops(images, rec, "cutmix", S.RESIZE_PIL)
            assert torch.equal(default.crops(b), expect) and torch.equal(per_batch.crops(b), expect)
            diff = (device_kernel.crops(b) - expect).abs().max().item()
            assert 0 < diff < 1.01 / 255              # the two paths: one uint8 step apart at most
    with pytest.raises(ValueError):
        ReplayLoader(path, kernel="nearest")


def test_images_held_or_read_per_batch(cutmix_stream, monkeypatch):
    path = cutmix_stream[0]
    with ReplayLoader(path) as held:
        assert held._images.in_memory
        monkeypatch.setattr(replay_module, "IMAGES_IN_MEMORY_BYTES", 100)
        with ReplayLoader(path) as streamed:
            assert not streamed._images.in_memory
            for b in range(11):
                assert torch.equal(held.crops(b), streamed.crops(b))


def test_sre2l_style_epoch_adapter(cutmix_stream):
    path = cutmix_stream[0]
    with ReplayLoader(path, reuse_inputs=False) as loader:   # keeps batches
        pairs = list(loader.epoch(1))
        assert loader.current_epoch == 1 and len(pairs) == 3
        for (images, targets), b in zip(pairs, (4, 5, 6)):
            ref = loader.batch(b)
            assert torch.equal(images, ref.inputs) and torch.equal(targets, ref.probs)


def test_a_file_without_a_stream_is_refused_in_one_line(tmp_path):
    from conftest import write_dla
    path = write_dla(tmp_path / "plain.dla.h5", codec=None)
    with pytest.raises(LaddError) as err:
        ReplayLoader(path)
    assert "no relabel stream" in str(err.value) and "\n" not in str(err.value)


def test_bad_settings_are_refused(cutmix_stream):
    path = cutmix_stream[0]
    for bad in (dict(pool_batches=0), dict(seed=-1), dict(temperature=0.0), dict(images="disk"),
                dict(kernel="bicubic"), dict(rank=0, world_size=0)):
        with pytest.raises(ValueError):
            ReplayLoader(path, **bad)
    with ReplayLoader(path) as loader, pytest.raises(ValueError):
        loader.set_epoch(-1)


def test_one_batch_read_at_a_time(cutmix_stream, monkeypatch):
    # the labels of a batch are read when the loop reaches it, never an epoch ahead
    with ReplayLoader(cutmix_stream[0]) as loader:
        reads = []
        read = loader.stream.read_batch
        monkeypatch.setattr(loader.stream, "read_batch", lambda b: reads.append(b) or read(b))
        seen = 0
        for _ in loader:
            seen += 1
            assert len(reads) == seen
        assert replay_module.bound_heap_growth() in (True, False)


def _ddp_worker(rank, world, rendezvous, path, out_dir):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        with ReplayLoader(path) as loader:              # rank and world size from torch.distributed
            shares = [[int(b) for b in loader.batches(e)] for e in range(3)]
            first = loader.batch(shares[0][0]).inputs.sum().item()
        gathered = [None] * world
        dist.all_gather_object(gathered, (shares, first))
        if rank == 0:
            np.save(f"{out_dir}/shares.npy", np.array(gathered, dtype=object), allow_pickle=True)
    finally:
        dist.destroy_process_group()


@pytest.mark.mutation_skip
def test_two_gloo_processes_share_every_epoch(cutmix_stream, tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous"), str(cutmix_stream[0]),
                                                   str(tmp_path)), nprocs=2, join=True)
    (a, first_a), (b, first_b) = np.load(tmp_path / "shares.npy", allow_pickle=True)
    assert a[0] == [0, 2] and b[0] == [1, 3]
    assert len(a[1]) == len(b[1]) == 2 and set(a[1] + b[1]) == {4, 5, 6}
    assert sorted(a[2] + b[2]) == [7, 8, 9, 10]
    with ReplayLoader(cutmix_stream[0]) as loader:           # each rank rebuilt the same bits as one process
        assert first_a == loader.batch(0).inputs.sum().item() and first_b == loader.batch(1).inputs.sum().item()
