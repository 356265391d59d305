"""``ladd export``: ImageFolder / npz for other frameworks, with or without materialised sub-images."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ladd_cli.main import main
from ladd_format import open_dla, verify

from conftest import hand_boxes, hand_subimages, write_dla


def test_folder_export_is_an_imagefolder(tmp_path, runner):
    src = write_dla(tmp_path / "a.dla.h5", m=6, c=3, class_names=["cat", "dog", "sea lion"], soft_kind="probs")
    out = tmp_path / "out"
    result = runner.invoke(main, ["export", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "images").iterdir()) == ["0000_cat", "0001_dog", "0002_sea_lion"]
    with open_dla(src) as f:
        images, labels, dense, soft = f.images(), f.labels(), f.dense(), f.soft_labels()
    png = np.asarray(Image.open(out / "images" / "0002_sea_lion" / "000002.png"))
    assert np.array_equal(png.transpose(2, 0, 1), images[2]) and labels[2] == 2
    assert np.array_equal(np.load(out / "hard_labels.npy"), labels)
    assert np.array_equal(np.load(out / "dense_labels.npy"), dense)
    assert np.array_equal(np.load(out / "soft_labels.npy"), soft)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["dense"]["n"] == 3 and meta["soft_labels_kind"] == "probs" and len(meta["source"]["sha256"]) == 64
    from torchvision.datasets import ImageFolder
    folder = ImageFolder(out / "images")
    assert [folder.targets[i] for i in range(len(folder))] == sorted(labels.tolist())


def test_folder_export_with_subimages(tmp_path, runner):
    src = write_dla(tmp_path / "a.dla.h5", m=4, c=2, side=16, n=3)
    out = tmp_path / "out"
    assert runner.invoke(main, ["export", str(src), "-o", str(out), "--subimages"]).exit_code == 0
    with open_dla(src) as f:
        images, dense, boxes = f.images(), f.dense(), f.boxes
    assert boxes.tolist() == [list(b) for b in hand_boxes(16, 16, 3, 0.625)]
    expected = torch.floor(hand_subimages(torch.from_numpy(images).float(), 3, 0.625) + 0.5).clamp(0, 255)  # spec 4.1
    expected = expected.to(torch.uint8).numpy()
    png = np.asarray(Image.open(out / "subimages" / "0001" / "000001_04.png")).transpose(2, 0, 1)
    assert np.array_equal(png, expected[1, 4])
    labels = np.load(out / "subimage_labels.npy")
    assert labels.shape == (4 * 9, 2) and np.array_equal(labels[1 * 9 + 4], dense[1, 4])
    assert len(list((out / "subimages").rglob("*.png"))) == 36


def test_npz_export_converts_back(tmp_path, runner):
    src = write_dla(tmp_path / "a.dla.h5", m=5, codec="float32", soft_kind="logits")
    npz = tmp_path / "a.npz"
    assert runner.invoke(main, ["export", str(src), "--format", "npz", "-o", str(npz)]).exit_code == 0
    back = tmp_path / "b.dla.h5"
    result = runner.invoke(main, ["convert", "npz", str(npz), "-o", str(back)])
    assert result.exit_code == 0, result.output
    assert verify(back) == []
    with open_dla(src) as a, open_dla(back) as b:
        assert np.array_equal(a.images(), b.images()) and np.array_equal(a.labels(), b.labels())
        assert np.array_equal(a.dense(), b.dense()) and np.array_equal(a.soft_labels(), b.soft_labels())
        assert np.allclose(a.mean, b.mean) and a.soft_kind == b.soft_kind == "logits"


def test_npz_export_with_subimages(tmp_path, runner):
    src = write_dla(tmp_path / "a.dla.h5", m=3, side=16, n=3)
    npz = tmp_path / "a.npz"
    assert runner.invoke(main, ["export", str(src), "--format", "npz", "-o", str(npz), "--subimages"]).exit_code == 0
    stored = np.load(npz)["subimages"]
    assert stored.shape == (3, 9, 3, 16, 16)
    with open_dla(src) as f:
        images = torch.from_numpy(f.images()).float()
    expected = torch.floor(hand_subimages(images, 3, 0.625) + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    assert stored.dtype == np.uint8 and np.array_equal(stored, expected)


def test_export_refusals(tmp_path, runner):
    plain = write_dla(tmp_path / "d.dla.h5", codec=None)
    out = tmp_path / "out"
    result = runner.invoke(main, ["export", str(plain), "-o", str(out), "--subimages"])
    assert result.exit_code == 1 and "ladd augment" in result.output and not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(main, ["export", str(plain), "-o", str(out)])
    assert result.exit_code == 1 and "--force" in result.output and (out / "keep.txt").exists()
    assert runner.invoke(main, ["export", str(plain), "-o", str(out), "--force"]).exit_code == 0
    assert not (out / "keep.txt").exists() and (out / "hard_labels.npy").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("dtype,space", [("float32", "pixel01"), ("float16", "normalized"), ("float32", "zca")])
def test_npz_export_of_float_images_converts_back_losslessly(tmp_path, runner, dtype, space):
    """The exporter writes ``image_dtype``; ``convert npz`` keeps such images float (no --keep-float)."""
    from ladd_format import DLAWriter

    rng = np.random.default_rng(5)
    images = rng.uniform(0, 1, size=(4, 3, 8, 8)).astype(dtype)
    src = tmp_path / "f.dla.h5"
    with DLAWriter(src, num_classes=2, image_shape=(3, 8, 8), mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2),
                   image_dtype=dtype, space=space, converter="test") as w:
        w.append(images, np.array([0, 1, 0, 1]))
    npz = tmp_path / "f.npz"
    assert runner.invoke(main, ["export", str(src), "--format", "npz", "-o", str(npz)]).exit_code == 0
    back = tmp_path / "back.dla.h5"
    result = runner.invoke(main, ["convert", "npz", str(npz), "-o", str(back)])
    assert result.exit_code == 0, result.output
    assert "uint8 conversion" not in result.output and verify(back) == []
    with open_dla(src) as a, open_dla(back) as b:
        assert b.image_dtype == a.image_dtype and b.space == a.space == space
        assert np.array_equal(a.images(), b.images()) and np.array_equal(a.labels(), b.labels())
        assert np.array_equal(a.mean, b.mean) and np.array_equal(a.std, b.std)


# -- export npz -> convert npz: the same file back ---------------------------------------------------
LABELER = {"arch": "convnet-d5", "epochs": 50, "training_data": "imagenette train", "weights_sha256": "ab" * 32,
           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def augmented(path, codec: str):
    """A D_LA as ``ladd augment`` writes one: dense labels with a labeler description and a
    temperature, float16 teacher probabilities, every optional root attribute."""
    from conftest import make_arrays, softmax
    from ladd_format import DenseSpec, DLAWriter
    from ladd_format.codecs import parse_codec

    images, labels, dense = make_arrays(m=20, c=10, side=16, n=3, sharp=10)
    soft = softmax(np.random.default_rng(3).normal(size=(20, 10))).astype(np.float16)
    spec = DenseSpec(n=3, ratio=0.625, codec=parse_codec(codec), temperature=2.0, labeler=dict(LABELER))
    with DLAWriter(path, num_classes=10, image_shape=(3, 16, 16), mean=(0.485, 0.456, 0.406),
                   std=(0.229, 0.224, 0.225), dense=spec, soft_kind="probs", soft_dtype="float16",
                   class_names=[f"class {i}" for i in range(10)], source_dataset="imagenette", distillation="mtt",
                   ipc=2, converter="augment", created="2020-01-01T00:00:00Z",
                   root_attrs={"learned_lr": 0.0123, "imagenet_class_ids": np.arange(10, dtype=np.int64) * 7}) as w:
        w.append(images, labels, dense=dense, soft=soft)
    return path


def h5_objects(path):
    """Every group and dataset of a file: name -> (attributes, (dtype, values) for datasets)."""
    import h5py

    out = {}
    with h5py.File(path, "r") as h5:
        def visit(name, obj):
            data = (obj.dtype, obj[()]) if isinstance(obj, h5py.Dataset) else None
            out[name] = ({k: np.asarray(v) for k, v in obj.attrs.items()}, data)
        out["/"] = ({k: np.asarray(v) for k, v in h5.attrs.items()}, None)
        h5.visititems(visit)
    return out


@pytest.mark.parametrize("codec", ["topk:k=3,values=uint8", "uint8", "topk:k=4,values=float16", "float16"])
def test_npz_export_converts_back_to_the_same_file(tmp_path, runner, codec):
    """Equal datasets and equal root, /dense, /dense/labeler and dataset attributes; only
    /provenance differs (created, converter npz, the npz as input, report), hence root_sha256."""
    src = augmented(tmp_path / "a.dla.h5", codec)
    npz = tmp_path / "a.npz"
    assert runner.invoke(main, ["export", str(src), "--format", "npz", "-o", str(npz)]).exit_code == 0
    back = tmp_path / "b.dla.h5"
    result = runner.invoke(main, ["convert", "npz", str(npz), "-o", str(back)])
    assert result.exit_code == 0, result.output
    assert verify(back) == []
    a, b = h5_objects(src), h5_objects(back)
    assert set(a) == set(b)
    for name in a:
        (attrs_a, data_a), (attrs_b, data_b) = a[name], b[name]
        if name == "provenance":
            differ = {k for k in attrs_a.keys() | attrs_b.keys()
                      if k not in attrs_a or k not in attrs_b or not np.array_equal(attrs_a[k], attrs_b[k])}
            assert differ == {"created", "converter", "inputs", "report"}, differ
            continue
        skip = {"root_sha256"} if name == "/" else set()
        assert attrs_a.keys() == attrs_b.keys(), name
        for key in attrs_a.keys() - skip:
            assert np.array_equal(attrs_a[key], attrs_b[key]), (name, key)
        if data_a is not None:
            assert data_a[0] == data_b[0] and np.array_equal(data_a[1], data_b[1]), name
    assert not np.array_equal(a["/"][0]["root_sha256"], b["/"][0]["root_sha256"])
    with open_dla(back) as f:
        assert f.codec.text() == codec and f.labeler["epochs"] == 50 and f.temperature == 2.0
        assert f.provenance["report"]["codec"] == "as the input records it (ladd_metadata)"


def test_a_given_codec_overrides_the_recorded_one(tmp_path, runner):
    src = augmented(tmp_path / "a.dla.h5", "topk:k=3,values=uint8")
    npz = tmp_path / "a.npz"
    assert runner.invoke(main, ["export", str(src), "--format", "npz", "-o", str(npz)]).exit_code == 0
    back = tmp_path / "b.dla.h5"
    result = runner.invoke(main, ["convert", "npz", str(npz), "-o", str(back), "--codec", "float16"])
    assert result.exit_code == 0, result.output
    assert "is not the recorded codec topk:k=3,values=uint8: dense labels encoded afresh" in result.output
    with open_dla(src) as a, open_dla(back) as b:
        assert b.codec.text() == "float16" and b.labeler == a.labeler
        assert np.allclose(a.dense(), b.dense(), rtol=0, atol=1e-3)


def _rewrite(npz, **changes):
    with np.load(npz) as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update(changes)
    np.savez(npz, **arrays)


@pytest.mark.parametrize("change,message", [
    ({"ladd_metadata": np.array("{not json")}, "key ladd_metadata: not valid JSON"),
    ({"ladd_metadata": np.array('{"version": 2}')}, "version 2 is not read"),
    ({"ladd_metadata": np.array('{"version": 1, "ipc": "two"}')}, "ipc must be an integer >= 1 or null"),
    ({"ladd_metadata": np.array('{"version": 1, "learned_lr": NaN}')}, "learned_lr must be a finite number"),
    ({"ladd_metadata": np.array('{"version": 1, "dense": {"codec": "zip"}}')}, "dense.codec"),
    ({"ladd_metadata": np.array('{"version": 1, "dense": {"labeler": {"bad name": 1, "arch": "x"}}}')},
     "is not a plain name"),
    ({"ladd_metadata": np.array(["a", "b"])}, "must be one string"),
    ({"ladd_metadata": np.array("x" * (300_000))}, "at most 1,048,576 are read"),
    ({"dense_stored_topk_prob": np.zeros((20, 9, 3), np.uint8)}, "dense_stored_*"),
])
def test_ladd_metadata_is_untrusted_input(tmp_path, runner, change, message):
    src = augmented(tmp_path / "a.dla.h5", "topk:k=3,values=uint8")
    npz = tmp_path / "a.npz"
    assert runner.invoke(main, ["export", str(src), "--format", "npz", "-o", str(npz)]).exit_code == 0
    _rewrite(npz, **change)
    out = tmp_path / "out" / "b.dla.h5"
    out.parent.mkdir()
    result = runner.invoke(main, ["convert", "npz", str(npz), "-o", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"ladd: error: {npz}: ") and message in line, line
    assert list(out.parent.iterdir()) == []


def test_a_dataset_other_than_the_recorded_one_is_refused(tmp_path, runner):
    src = augmented(tmp_path / "a.dla.h5", "float16")
    npz = tmp_path / "a.npz"
    assert runner.invoke(main, ["export", str(src), "--format", "npz", "-o", str(npz)]).exit_code == 0
    out = tmp_path / "b.dla.h5"
    result = runner.invoke(main, ["convert", "npz", str(npz), "-o", str(out), "--dataset", "cifar10"])
    assert result.exit_code == 1 and not out.exists()
    assert "--dataset cifar10 conflicts with the input's recorded source_dataset 'imagenette'" in result.output
    same = runner.invoke(main, ["convert", "npz", str(npz), "-o", str(out), "--dataset", "imagenette"])
    assert same.exit_code == 0, same.output


def test_npz_export_decodes_and_copies_dense_rows_in_blocks_of_their_working_copies(tmp_path, monkeypatch):
    """Decoding and the codec's checks work in float64/int64 (8 bytes a value), so the dense blocks
    are sized by that, not by the bytes written: sized by the written bytes the export peaked at
    1,183 KB here at 64 KiB blocks (448 MB at 32 MiB on 50,000 ImageNet-shaped images)."""
    import importlib
    import tracemalloc


    monkeypatch.setattr(importlib.import_module("ladd_format.rows"), "BLOCK_BYTES", 64 << 10)
    export_module = importlib.import_module("ladd_format.export")
    path = write_dla(tmp_path / "topk.dla.h5", m=1200, c=200, side=8, n=5, codec="topk",
                     codec_config={"k": 8, "values": "float16"}, batch=400)
    export_module.export(path, tmp_path / "warm.npz", "npz")
    tracemalloc.start()
    try:
        export_module.export(path, tmp_path / "set.npz", "npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with np.load(tmp_path / "set.npz") as z, open_dla(path) as f:
        np.testing.assert_allclose(z["dense_labels"], f.dense(), rtol=0, atol=1e-7)
        assert np.array_equal(z["dense_stored_topk_index"], f.dense_stored()["topk_index"])
    assert peak < 8 * (64 << 10), peak
