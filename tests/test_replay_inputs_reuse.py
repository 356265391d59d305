"""The replay loader's memory: chunked gathers and the reused inputs buffer change no bit.

The loader gathers a batch's images a few at a time (``GATHER_BYTES``) and converts and resizes them a
kernel chunk at a time; ``reuse_inputs=True`` builds every batch in one kept buffer. Both must give
exactly the crops of one ``crop_batch`` call of the whole batch.
"""

import pytest
import torch

from ladd_format.torch import replay as replay_module
from ladd_format.torch.replay import ReplayLoader

from test_replay_loader import _expected_crops, write_stream


@pytest.mark.parametrize("mix", ["none", "cutmix", "mixup"])
def test_chunked_gathers_give_crop_batch_bits(tmp_path, monkeypatch, mix):
    path, images, _, written = write_stream(tmp_path / f"{mix}.dla.h5", mix=mix)
    # two records a kernel chunk, four (two chunks) a read: every batch spans several reads
    monkeypatch.setattr(replay_module, "records_per_chunk", lambda shape, device: 2)
    monkeypatch.setattr(replay_module, "GATHER_BYTES", 4 * images[0].nbytes)
    with ReplayLoader(path) as loader:
        for b, (_, rec, _) in enumerate(written):
            assert torch.equal(loader.crops(b), _expected_crops(images, rec, mix))


@pytest.mark.parametrize("mix", ["cutmix", "mixup"])
def test_reused_inputs_buffer_gives_the_same_batches(tmp_path, mix):
    path, _, _, _ = write_stream(tmp_path / f"{mix}.dla.h5", mix=mix)
    with ReplayLoader(path) as fresh:
        expected = [(inputs.clone(), probs, labels) for inputs, probs, labels in fresh]
    with ReplayLoader(path, reuse_inputs=True) as loader:
        pointers = set()
        for (inputs, probs, labels), (want, want_probs, want_labels) in zip(loader, expected, strict=True):
            assert torch.equal(inputs, want)
            assert torch.equal(probs, want_probs) and torch.equal(labels, want_labels)
            pointers.add(inputs.untyped_storage().data_ptr())
        assert len(pointers) == 1          # one buffer for every batch (the first batch is the largest)
