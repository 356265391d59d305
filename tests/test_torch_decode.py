"""Dense labels decoded on the training device (``Codec.decode_tensor``) and the loader items that
carry stored rows across processes (``DLADataset(..., stored=True)``)."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ladd_format import open_dla
from ladd_format.codecs import parse_codec
from ladd_format.codecs.base import Codec
from ladd_format.torch import DLADataset

from conftest import make_arrays, write_dla

CODECS = ["float32", "float16", "uint8", "topk:k=3,values=float16", "topk:k=4,values=uint8", "topk:k=10,values=float32"]


def tensors(stored):
    return {k: torch.from_numpy(v) for k, v in stored.items()}


@pytest.mark.parametrize("text", CODECS)
def test_device_decode_equals_the_codec_decode(text):
    _, _, probs = make_arrays(7, c=10, n=3, sharp=2.0)
    codec = parse_codec(text)
    stored = codec.encode(probs)
    expected = codec.decode(stored, 10)
    got = codec.decode_tensor(tensors(stored), 10)
    assert got.dtype == torch.float32 and got.shape == (7, 9, 10)
    assert np.allclose(got.numpy(), expected, rtol=0, atol=1e-6)
    assert type(codec).decode_tensor is not Codec.decode_tensor      # computed on the device, not moved there
    assert codec.decode_tensor(tensors(stored), 10, torch.float64).dtype == torch.float64


def test_device_decode_of_degenerate_rows_and_the_numpy_fallback():
    uint8, topk = parse_codec("uint8"), parse_codec("topk:k=3,values=float32")
    zero = {"probs": torch.zeros(1, 2, 4, dtype=torch.uint8)}
    assert torch.equal(uint8.decode_tensor(zero, 4), torch.full((1, 2, 4), 0.25))
    full = {"topk_index": torch.tensor([[[2, 0, 1]]], dtype=torch.uint16),
            "topk_prob": torch.tensor([[[0.5, 0.3, 0.0]]])}
    assert torch.allclose(topk.decode_tensor(full, 3), torch.tensor([[[0.375, 0.0, 0.625]]]))
    one = parse_codec("topk:k=1,values=float32")
    over = {"topk_index": torch.tensor([[[1]]]), "topk_prob": torch.tensor([[[1.25]]])}
    assert torch.allclose(one.decode_tensor(over, 3), torch.tensor([[[0.0, 1.0, 0.0]]]))   # the rest clamps to 0
    stored = uint8.encode(make_arrays(3, c=10, n=3)[2])
    fallback = Codec.decode_tensor(uint8, tensors(stored), 10)                          # any codec: numpy, moved
    assert torch.equal(fallback, torch.from_numpy(uint8.decode(stored, 10)))


@pytest.mark.parametrize("in_memory", [False, True])
def test_stored_items_collate_and_decode_to_the_default_items(tmp_path, in_memory):
    path = write_dla(tmp_path / "a.dla.h5", m=10, codec="topk", codec_config={"k": 3, "values": "uint8"})
    plain = DLADataset(path)
    ds = DLADataset(path, stored=True, in_memory=in_memory)
    image, label, rows = ds[3]
    assert image.dtype == torch.uint8 and label == plain[3][1]
    assert set(rows) == {"topk_index", "topk_prob"} and rows["topk_index"].dtype == torch.int32
    batches = list(DataLoader(ds, batch_size=4, num_workers=2))
    images = torch.cat([b[0] for b in batches])
    x, dense = ds.decode_batch(batches[0][0], batches[0][2])
    assert images.shape == (10, 3, 16, 16)
    for i in range(4):
        ref_image, _, ref_dense = plain[i]
        assert torch.allclose(x[i], ref_image, rtol=0, atol=1e-6)
        assert torch.allclose(dense[i], ref_dense, rtol=0, atol=1e-6)
    with open_dla(path) as f:
        assert np.array_equal(images.numpy(), f.images())


def test_stored_items_refuse_a_transform_and_leave_plain_sets_without_dense(tmp_path):
    path = write_dla(tmp_path / "a.dla.h5", m=4)
    with pytest.raises(ValueError, match="after decode_batch"):
        DLADataset(path, stored=True, transform=lambda x: x)
    ds = DLADataset(path, stored=True, dense=False)
    image, label = ds[1]
    x, dense = ds.decode_batch(image[None])
    assert dense is None and torch.allclose(x[0], DLADataset(path, dense=False)[1][0], rtol=0, atol=1e-6)
