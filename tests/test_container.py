"""Writer and reader: the container round-trips, streams, and never leaves a half-written file."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from ladd_format import DenseSpec, DLAWriter, LaddError, open_dla, verify
from ladd_format.codecs import make_codec
from ladd_format.errors import (InputError, NoDenseLabelsError, OutputExistsError, ProbabilityError,
                                ShapeError)

from conftest import MEAN, STD, make_arrays, write_dla


def test_round_trip_float32(tmp_path):
    path = write_dla(tmp_path / "a.dla.h5", m=12, batch=5)
    images, labels, dense = make_arrays(12)
    with open_dla(path) as f:
        assert len(f) == 12 and f.num_classes == 10 and f.image_shape == (3, 16, 16)
        assert np.array_equal(f.images(), images)
        assert np.array_equal(f.labels(), labels)
        assert np.array_equal(f.dense(), dense)
        assert np.array_equal(f.dense(3, 7), dense[3:7])
        assert np.allclose(f.mean, MEAN) and np.allclose(f.std, STD)
        assert f.boxes.shape == (9, 4) and f.n == 3 and f.ratio == 0.625
        assert f.labeler == {"arch": "test", "epochs": 1}
        assert f.space == "pixel255" and f.ipc == 1.2
    assert verify(path) == []


@pytest.mark.parametrize("codec,config", [("float16", {}), ("uint8", {}), ("topk", {"k": 4, "values": "uint8"})])
def test_round_trip_other_codecs_within_tolerance(tmp_path, codec, config):
    path = write_dla(tmp_path / "a.dla.h5", codec=codec, codec_config=config)
    _, _, dense = make_arrays(12)
    with open_dla(path) as f:
        q = f.dense()
        assert f.codec == make_codec(codec, **config)
    assert verify(path) == []
    assert np.allclose(q.sum(-1), 1, atol=4e-3)
    assert np.mean(q.argmax(-1) == dense.argmax(-1)) > 0.95


def test_streamed_batches_equal_one_batch(tmp_path):
    a = write_dla(tmp_path / "a.dla.h5", batch=1)
    b = write_dla(tmp_path / "b.dla.h5", batch=100)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for name in ("images", "labels", "dense/probs"):
            assert fa[name].attrs["sha256"] == fb[name].attrs["sha256"]


def test_sha256_attribute_is_digest_of_little_endian_c_order_bytes(dla_file):
    with h5py.File(dla_file) as f:
        data = f["dense/probs"][()]
        stored = f["dense/probs"].attrs["sha256"]           # a fixed-length UTF-8 string (spec 2): bytes
        assert stored.decode("utf-8") == hashlib.sha256(data.astype("<f4").tobytes()).hexdigest()


def test_every_string_attribute_is_fixed_length(tmp_path):
    """Spec 2 (1.1): no string lives in HDF5's global heap, whose damage can hang the HDF5 library."""
    path = write_dla(tmp_path / "a.dla.h5", soft_kind="logits", class_names=[f"c{i}" for i in range(10)])
    with h5py.File(path) as f:
        objects = [f]
        f.visititems(lambda n, o: objects.append(o))
        strings = [(o.name, k) for o in objects for k in o.attrs
                   if h5py.check_string_dtype(o.attrs.get_id(k).dtype) is not None]
        assert len(strings) >= 12
        for name, key in strings:
            assert h5py.check_string_dtype(f[name].attrs.get_id(key).dtype).length is not None, (name, key)


def test_every_dataset_has_fletcher32_and_chunks(tmp_path):
    path = write_dla(tmp_path / "a.dla.h5", soft_kind="logits")
    with h5py.File(path) as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert sorted(names) == ["dense/probs", "images", "labels", "row_sha256", "soft_labels"]
        for name in names:
            assert f[name].fletcher32 and f[name].chunks
        assert f["images"].chunks == (1, 3, 16, 16)


def test_plain_set_without_dense(tmp_path):
    path = write_dla(tmp_path / "d.dla.h5", codec=None, soft_kind="probs")
    assert verify(path) == []
    with open_dla(path) as f:
        assert not f.has_dense and f.soft_kind == "probs"
        assert np.allclose(f.soft_labels().sum(-1), 1, atol=1e-6)
        with pytest.raises(NoDenseLabelsError, match="run `ladd augment` first"):
            f.dense()


def test_float_images_keep_their_space(tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32)
    path = tmp_path / "f.dla.h5"
    with DLAWriter(path, num_classes=2, image_shape=(3, 8, 8), mean=MEAN, std=STD,
                   image_dtype="float32", space="pixel01") as w:
        w.append(x, [0, 1, 0, 1])
    with open_dla(path) as f:
        assert f.space == "pixel01" and np.array_equal(f.images(), x)
    assert verify(path) == []


def test_nothing_appears_until_close(tmp_path):
    path = tmp_path / "a.dla.h5"
    images, labels, _ = make_arrays(4)
    w = DLAWriter(path, num_classes=10, image_shape=(3, 16, 16), mean=MEAN, std=STD)
    w.append(images, labels)
    assert not path.exists()
    w.close()
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == ["a.dla.h5"]


def test_existing_output_is_refused_without_overwrite(tmp_path):
    path = tmp_path / "a.dla.h5"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="exists"):
        write_dla(path)
    assert path.read_bytes() == b"precious"
    write_dla(path, overwrite=True)
    assert verify(path) == []


@pytest.mark.parametrize("bad,error", [
    ({"labels": np.array([0, 1, 2, 10])}, InputError),
    ({"labels": np.array([0, 1, -1, 2])}, InputError),
    ({"images": np.zeros((4, 3, 16, 15), np.uint8)}, ShapeError),
    ({"images": np.zeros((4, 3, 16, 16), np.float32)}, InputError),
    ({"dense": np.full((4, 9, 10), np.nan, np.float32)}, ProbabilityError),
    ({"dense": np.full((4, 9, 10), -0.1, np.float32)}, ProbabilityError),
    ({"dense": np.full((4, 9, 10), 0.2, np.float32)}, ProbabilityError),
    ({"dense": np.full((4, 8, 10), 0.1, np.float32)}, ShapeError),
])
def test_bad_batch_leaves_existing_destination_intact(tmp_path, bad, error):
    path = tmp_path / "a.dla.h5"
    path.write_bytes(b"precious")
    images, labels, dense = make_arrays(4, n=3)
    args = {"images": images, "labels": labels, "dense": dense} | bad
    w = DLAWriter(path, num_classes=10, image_shape=(3, 16, 16), mean=MEAN, std=STD, overwrite=True,
                  dense=DenseSpec(n=3, ratio=0.625))
    with pytest.raises(error) as info:
        w.append(**args)
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["a.dla.h5"]


def test_empty_set_is_refused(tmp_path):
    with pytest.raises(InputError, match="no images"):
        DLAWriter(tmp_path / "a.dla.h5", num_classes=2, image_shape=(3, 4, 4), mean=MEAN, std=STD).close()
    assert list(tmp_path.iterdir()) == []


def test_exception_inside_with_block_discards_the_file(tmp_path):
    path = tmp_path / "a.dla.h5"
    images, labels, _ = make_arrays(4)
    with pytest.raises(RuntimeError):
        with DLAWriter(path, num_classes=10, image_shape=(3, 16, 16), mean=MEAN, std=STD) as w:
            w.append(images, labels)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.mutation_skip
def test_killed_write_leaves_destination_as_it_was(tmp_path):
    path = tmp_path / "a.dla.h5"
    write_dla(path)
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        from ladd_format import DLAWriter
        w = DLAWriter({str(path)!r}, num_classes=10, image_shape=(3, 16, 16), mean=(0,0,0), std=(1,1,1),
                      overwrite=True)
        for i in range(10_000):
            w.append(np.zeros((8, 3, 16, 16), np.uint8), np.zeros(8, np.int64))
            if i == 2:
                print("writing", flush=True)
            time.sleep(0.01)
        w.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert path.read_bytes() == before
    assert verify(path) == []
    # the killed process leaves only its hidden temporary file behind, never a partial destination
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "a.dla.h5"]
    assert all(name.startswith(".a.dla.h5.partial-") for name in leftovers)


def test_reader_refuses_non_files(tmp_path):
    with pytest.raises(LaddError, match="no such file"):
        open_dla(tmp_path / "missing.dla.h5")
    with pytest.raises(LaddError, match="directory"):
        open_dla(tmp_path)


def test_class_names_and_root_attributes(tmp_path):
    path = write_dla(tmp_path / "a.dla.h5", class_names=[f"c{i}" for i in range(10)],
                     source_dataset="imagenette", distillation="mtt", ipc=1)
    with open_dla(path) as f:
        assert f.class_names == [f"c{i}" for i in range(10)]
        info = f.info()
        assert info["source_dataset"] == "imagenette" and info["distillation"] == "mtt" and info["ipc"] == 1
        assert info["provenance"]["converter"] == "test" and info["provenance"]["inputs"] == []
        assert info["provenance"]["created"].endswith("Z")


def test_a_failed_append_discards_everything_and_closes_the_writer(tmp_path):
    """A bad batch after good ones: the writer aborts (temporary file removed, HDF5 handle closed),
    the destination keeps its old bytes, and the writer refuses further appends and closes as a no-op."""
    from ladd_format.errors import LaddError
    dest = tmp_path / "set.dla.h5"
    dest.write_bytes(b"old contents")
    images, labels, _ = make_arrays(4, side=8)
    w = DLAWriter(dest, num_classes=10, image_shape=(3, 8, 8), mean=MEAN, std=STD, overwrite=True)
    w.append(images[:2], labels[:2])
    assert len(list(tmp_path.iterdir())) == 2                     # the destination and the hidden temporary file
    h5 = w.h5
    pending = w.hasher.submit(time.sleep, 0.3)                     # hashing still running when the batch fails
    with pytest.raises(LaddError):
        w.append(images[2:], np.array([3, 99]))                    # label 99 >= C
    assert [p.name for p in tmp_path.iterdir()] == ["set.dla.h5"] and dest.read_bytes() == b"old contents"
    assert not h5.id.valid                                         # the handle was closed
    assert pending.done()                                          # the hashing thread was waited for ...
    with pytest.raises(RuntimeError):
        w.hasher.submit(int)                                       # ... and shut down
    with pytest.raises(LaddError, match="closed"):
        w.append(images[:1], labels[:1])
    assert w.close() == dest and dest.read_bytes() == b"old contents"


@pytest.mark.parametrize("failing", ["ThreadPoolExecutor", "h5py.File"])
def test_a_writer_that_fails_to_start_raises_its_own_error_and_leaves_nothing(tmp_path, monkeypatch, failing):
    """The first steps of the constructor fail (no thread pool, no HDF5 file yet): the cause comes
    out, not an error of the clean-up, and no temporary file is left."""
    from ladd_format import writer as writer_module

    def boom(*args, **kwargs):
        raise OSError("boom")
    if failing == "ThreadPoolExecutor":
        monkeypatch.setattr(writer_module, "ThreadPoolExecutor", boom)
    else:
        monkeypatch.setattr(writer_module.h5py, "File", boom)
    with pytest.raises(OSError, match="boom"):
        DLAWriter(tmp_path / "set.dla.h5", num_classes=10, image_shape=(3, 8, 8), mean=MEAN, std=STD)
    assert list(tmp_path.iterdir()) == []


def test_dense_spec_refusals_word_for_word(tmp_path):
    from ladd_format.codecs import make_codec
    from ladd_format.errors import InputError
    dest = tmp_path / "d.dla.h5"
    cases = [(DenseSpec(n=3, ratio=0.01, codec=make_codec("float32"), labeler={"arch": "a"}),
              "dense geometry: ratio 0.01 gives an empty crop of a 16-pixel side"),
             (DenseSpec(n=3, ratio=0.5, codec=make_codec("float32"), labeler={"epochs": 1}),
              "labeler description needs at least 'arch'")]
    for spec, message in cases:
        with pytest.raises(InputError) as e:
            DLAWriter(dest, num_classes=10, image_shape=(3, 16, 16), mean=MEAN, std=STD, dense=spec)
        assert str(e.value) == f"{dest}: {message}"
        assert list(tmp_path.iterdir()) == []


def test_labeler_mean_and_std_are_stored_as_float64(tmp_path):
    from ladd_format.codecs import make_codec
    path = tmp_path / "d.dla.h5"
    images, labels, dense = make_arrays(4, side=16)
    spec = DenseSpec(n=3, ratio=0.625, codec=make_codec("float32"),
                     labeler={"arch": "a", "mean": np.array([0.5, 0.5, 0.5], np.float32), "std": (1, 1, 1),
                              "epochs": np.int32(3), "skipped": None})
    with DLAWriter(path, num_classes=10, image_shape=(3, 16, 16), mean=MEAN, std=STD, dense=spec) as w:
        w.append(images, labels, dense=dense)
    with h5py.File(path) as h5:
        attrs = h5["dense/labeler"].attrs
        assert attrs["mean"].dtype == attrs["std"].dtype == np.float64
        assert attrs["std"].tolist() == [1.0, 1.0, 1.0]
        assert attrs["epochs"].dtype == np.int64 and "skipped" not in attrs


def _writer(path, **kw):
    base = dict(num_classes=10, image_shape=(3, 8, 8), mean=MEAN, std=STD)
    base.update(kw)
    return DLAWriter(path, **base)


def test_every_append_refusal_word_for_word(tmp_path):
    """Each check of DLAWriter.append on its own, with the destination and the spec path it names."""
    from ladd_format.codecs import make_codec
    from ladd_format.errors import LaddError as Error
    dest = tmp_path / "w.dla.h5"
    u8 = np.zeros((2, 3, 8, 8), np.uint8)
    f32 = np.zeros((2, 3, 8, 8), np.float32)
    nan = f32.copy()
    nan[0, 0, 0, 0] = np.nan
    big = f32.copy()
    big[1, 2, 3, 4] = 65504.5
    dense_spec = DenseSpec(n=2, ratio=0.5, codec=make_codec("float32"), labeler={"arch": "a"})
    probs = np.full((2, 4, 10), 0.1, np.float32)
    floats = dict(image_dtype="float32", space="pixel01")
    cases = [
        ({}, (u8[:, :, :, :7], [0, 1]), "/images: images must be (B, 3, 8, 8), got (2, 3, 8, 7)"),
        ({}, (f32, [0, 1]), "/images: images must be uint8 for space pixel255, got float32"),
        (floats, (u8, [0, 1]), "/images: images must be floating point for space pixel01, got uint8"),
        (floats, (nan, [0, 1]), "/images: images contain NaN or infinite values"),
        (dict(image_dtype="float16", space="pixel01"), (big, [0, 1]),
         "/images: images exceed the float16 range (65504); store them as float32"),
        ({}, (u8, [0, 1, 2]), "/labels: labels must be (2,) to match the images, got (3,)"),
        ({}, (u8, [0.0, 1.5]), "/labels: labels must be integers, got float64"),
        ({}, (u8, [0, 10]), "/labels: labels must lie in [0, 10), found 0..10"),
        (dict(dense=dense_spec), (u8, [0, 1]), "/dense: dense probabilities were declared but not given"),
        ({}, (u8, [0, 1], probs), "/dense: dense probabilities given but no DenseSpec was declared"),
        (dict(soft_kind="logits"), (u8, [0, 1]), "/soft_labels: soft labels were declared but not given"),
        ({}, (u8, [0, 1], None, np.zeros((2, 10))), "/soft_labels: soft labels given but no soft_kind was declared"),
        (dict(soft_kind="logits"), (u8, [0, 1], None, np.zeros((2, 9))),
         "/soft_labels: soft labels must be (2, 10), got (2, 9)"),
        (dict(soft_kind="logits"), (u8, [0, 1], None, np.full((2, 10), np.inf)),
         "/soft_labels: logits contain NaN or infinite values"),
    ]
    for kwargs, args, message in cases:
        w = _writer(dest, **kwargs)
        images, labels, *rest = args
        dense = rest[0] if rest else None
        soft = rest[1] if len(rest) > 1 else None
        with pytest.raises(Error) as e:
            w.append(images, labels, dense=dense, soft=soft)
        assert str(e.value) == f"{dest}: {message}"
        assert not dest.exists()
    w = _writer(dest, image_dtype="float16", space="pixel01")
    edge = f32.copy()
    edge[0, 0, 0, 0] = 65504.0                                         # the largest float16: accepted
    w.append(edge, np.array([0.0, 1.0]))                               # integral float labels are accepted
    w.append(edge[:0], np.zeros(0, np.int64))                          # an empty batch adds nothing
    assert w.close() == dest and w.close() == dest                     # closing twice is harmless
    with open_dla(dest) as f:
        assert f.num_images == 2 and f.labels().tolist() == [0, 1]
    with pytest.raises(Error) as e:
        w.append(edge, [0, 1])
    assert str(e.value) == f"{dest}: writer is closed"


def test_a_root_attribute_the_spec_does_not_allow_is_refused_on_closing(tmp_path):
    dest = tmp_path / "r.dla.h5"
    w = _writer(dest, root_attrs={"weird": np.complex64(1)})
    w.append(np.zeros((2, 3, 8, 8), np.uint8), [0, 1])
    with pytest.raises(LaddError) as e:
        w.close()
    assert str(e.value) == (f"{dest}: /: attribute 'weird' has type complex64 and shape (): only numbers, strings, "
                            "1-D arrays of them and 2-D arrays of numbers are allowed (spec 2.1)")
    assert list(tmp_path.iterdir()) == []


def test_every_writer_setting_refusal_word_for_word(tmp_path):
    from ladd_format.errors import LaddError as Error
    dest = tmp_path / "s.dla.h5"
    cases = [(dict(num_classes=0), "num_classes must be >= 1, got 0"),
             (dict(image_shape=(3, 0, 8)), "image_shape must be (K, H, W) with positive sides, got (3, 0, 8)"),
             (dict(image_shape=(3, 8)), "image_shape must be (K, H, W) with positive sides, got (3, 8)"),
             (dict(space="pixel01"), "uint8 images have space 'pixel255', not 'pixel01'"),
             (dict(image_dtype="float32", space="pixel255"),
              "float images need space in ('pixel01', 'normalized', 'zca'), got 'pixel255'"),
             (dict(image_dtype="int16"), "images must be uint8, float16 or float32, not int16"),
             (dict(soft_kind="scores"), "soft label kind must be one of ('logits', 'probs'), got 'scores'")]
    for kwargs, message in cases:
        with pytest.raises(Error) as e:
            _writer(dest, **kwargs)
        assert str(e.value) == f"{dest}: {message}"
    assert list(tmp_path.iterdir()) == []


def test_probability_soft_labels_are_checked_as_probabilities(tmp_path):
    from ladd_format.errors import LaddError as Error
    dest = tmp_path / "p.dla.h5"
    u8 = np.zeros((2, 3, 8, 8), np.uint8)
    for soft, message in ((np.full((2, 10), 1.5), "probabilities must lie in [0, 1], found 1.5..1.5"),
                          (np.full((2, 9), 0.1), "probabilities must be (2, 10), got (2, 9)")):
        w = _writer(dest, soft_kind="probs")
        with pytest.raises(Error) as e:
            w.append(u8, [0, 1], soft=soft)
        assert str(e.value) == f"{dest}: /soft_labels: {message}"
    w = _writer(dest, soft_kind="logits")                             # logits: any finite values
    w.append(u8, [0, 1], soft=np.full((2, 10), 1.5))
    w.close()


def test_writer_layout_choices(tmp_path):
    """One hashing thread (digest updates stay in order); labels in chunks of 4096 rows; mean/std of any
    shape holding K values; a wrong count named with the values given."""
    from ladd_format.errors import LaddError as Error
    dest = tmp_path / "l.dla.h5"
    w = _writer(dest, mean=np.array([[0.5, 0.5, 0.5]]), std=[[0.25], [0.25], [0.25]])
    assert w.hasher._max_workers == 1
    w.append(np.zeros((2, 3, 8, 8), np.uint8), [0, 1])
    w.close()
    with h5py.File(dest) as h5:
        assert h5["labels"].chunks == (4096,)
    with open_dla(dest) as f:
        assert f.mean.tolist() == [0.5] * 3 and f.std.tolist() == [0.25] * 3
    for name, kwargs, shown in (("mean", dict(mean=(0.5, 0.5)), "[0.5, 0.5]"),
                                ("std", dict(std=(0.2, np.nan, 0.2)), "[0.2, nan, 0.2]")):
        with pytest.raises(Error) as e:
            _writer(tmp_path / "bad.dla.h5", **kwargs)
        assert str(e.value) == f"{tmp_path / 'bad.dla.h5'}: {name} must be 3 finite values (one per channel), got {shown}"
