"""``ladd convert npz``: the generic import, and its refusals."""

import numpy as np
import pytest

from ladd_cli.main import main
from ladd_format import open_dla, verify
from ladd_format.pixels import quantize

from conftest import make_arrays


def save(path, **arrays):
    np.savez(path, **arrays)
    return path


def run(runner, *args):
    result = runner.invoke(main, ["convert", "npz", *map(str, args)])
    assert "Traceback" not in result.output
    return result


def test_nchw_uint8_with_dense(tmp_path, runner):
    images, labels, dense = make_arrays(12, n=3)
    src = save(tmp_path / "in.npz", images=images, labels=labels, num_classes=10, dense_labels=dense, n=3,
               ratio=0.625, mean=np.array([0.5, 0.5, 0.5]), std=np.array([0.25, 0.25, 0.25]),
               class_names=np.array([f"class {i}" for i in range(10)]))
    out = tmp_path / "out.dla.h5"
    result = run(runner, src, "-o", out)
    assert result.exit_code == 0, result.output
    assert verify(out) == []
    with open_dla(out) as f:
        assert np.array_equal(f.images(), images) and np.array_equal(f.labels(), labels)
        assert np.array_equal(f.dense(), dense)
        assert f.class_names[3] == "class 3" and list(f.mean) == [0.5] * 3
        (inp,) = f.provenance["inputs"]
        assert inp["name"] == "in.npz" and inp["size"] == src.stat().st_size and len(inp["sha256"]) == 64
        assert f.provenance["converter"] == "npz"


def test_nhwc_layout_is_transposed(tmp_path, runner):
    images, labels, _ = make_arrays(6)
    src = save(tmp_path / "in.npz", images=images.transpose(0, 2, 3, 1), labels=labels)
    out = tmp_path / "out.dla.h5"
    result = run(runner, src, "-o", out)
    assert result.exit_code == 0, result.output
    assert "computed from the images" in result.output  # the decision is named
    with open_dla(out) as f:
        assert np.array_equal(f.images(), images)
        assert f.num_classes == 6  # max(labels) + 1, and said so
        assert f.provenance["report"]["normalization"].startswith("computed")


@pytest.mark.parametrize("codec,extra", [("uint8", []), ("float16", []), ("topk", ["--k", "3", "--topk-values", "uint8"])])
def test_codec_choice(tmp_path, runner, codec, extra):
    images, labels, dense = make_arrays(5, n=5, side=32)
    src = save(tmp_path / "in.npz", images=images, labels=labels, num_classes=10, dense_labels=dense, n=5, ratio=0.625)
    out = tmp_path / "out.dla.h5"
    assert run(runner, src, "-o", out, "--codec", codec, *extra).exit_code == 0
    with open_dla(out) as f:
        assert f.codec.name == codec
    assert verify(out) == []


def test_float_images_need_space_and_become_uint8_unless_keep_float(tmp_path, runner):
    images = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    src = save(tmp_path / "in.npz", images=images, labels=np.arange(4))
    out = tmp_path / "out.dla.h5"
    result = run(runner, src, "-o", out)
    assert result.exit_code == 1 and "--space" in result.output and not out.exists()
    result = run(runner, src, "-o", out, "--space", "pixel01")
    assert result.exit_code == 0, result.output
    assert "uint8 conversion" in result.output                  # float input becomes uint8 by default
    with open_dla(out) as f:
        assert f.space == "pixel255" and f.image_dtype == np.uint8
        assert np.array_equal(f.images(), quantize(images.astype(np.float64)))
        assert "uint8_conversion" in f.provenance["report"]
    kept = tmp_path / "kept.dla.h5"
    result = run(runner, src, "-o", kept, "--space", "pixel01", "--keep-float")
    assert result.exit_code == 0 and "uint8 conversion" not in result.output, result.output
    with open_dla(kept) as f:
        assert f.space == "pixel01" and f.image_dtype == np.float32 and np.array_equal(f.images(), images)


@pytest.mark.parametrize("arrays,message", [
    (lambda i, l, d: {"images": i}, "missing required key(s) labels"),
    (lambda i, l, d: {"labels": l}, "missing required key(s) images"),
    (lambda i, l, d: {"images": i, "labels": l[:-1]}, "labels must have shape (6,)"),
    (lambda i, l, d: {"images": i[:, 0, 0], "labels": l}, "images must be"),
    (lambda i, l, d: {"images": i, "labels": l, "num_classes": 3}, "labels must lie in [0, 3)"),
    (lambda i, l, d: {"images": i, "labels": l, "dense_labels": d}, "need the scalar key(s) n, ratio"),
    (lambda i, l, d: {"images": i, "labels": l, "dense_labels": d[:, :4], "n": 3, "ratio": 0.6},
     "dense_labels must have shape (6, 9, 10)"),
    (lambda i, l, d: {"images": i, "labels": l, "dense_labels": d * 0.5, "n": 3, "ratio": 0.6, "num_classes": 10},
     "sum to 1"),
    (lambda i, l, d: {"images": i, "labels": l.astype(float) + 0.5}, "labels must be integers"),
    (lambda i, l, d: {"images": i, "labels": l, "mean": np.zeros(2), "std": np.ones(2)}, "3 values"),
])
def test_bad_npz_is_refused_with_one_line(tmp_path, runner, arrays, message):
    images, labels, dense = make_arrays(6, n=3)
    src = save(tmp_path / "in.npz", **arrays(images, labels, dense))
    out = tmp_path / "out.dla.h5"
    result = run(runner, src, "-o", out)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ladd: error: ") and str(src) in lines[0], result.output
    assert message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz"]


def test_object_arrays_are_refused(tmp_path, runner):
    images, labels, _ = make_arrays(2)
    src = tmp_path / "in.npz"
    np.savez(src, images=images, labels=labels, class_names=np.array([object(), 1], dtype=object))
    result = run(runner, src, "-o", tmp_path / "out.dla.h5")
    assert result.exit_code == 1 and "pickle" in result.output


def test_not_an_npz(tmp_path, runner):
    src = tmp_path / "in.npz"
    src.write_text("hello")
    result = run(runner, src, "-o", tmp_path / "out.dla.h5")
    assert result.exit_code == 1 and "not a readable .npz" in result.output


def test_existing_output_needs_force(tmp_path, runner):
    images, labels, _ = make_arrays(4)
    src = save(tmp_path / "in.npz", images=images, labels=labels)
    out = tmp_path / "out.dla.h5"
    out.write_bytes(b"keep me")
    result = run(runner, src, "-o", out)
    assert result.exit_code == 1 and "--force" in result.output
    assert out.read_bytes() == b"keep me"
    assert run(runner, src, "-o", out, "--force").exit_code == 0
    assert verify(out) == []


def test_unknown_format_is_a_usage_error(tmp_path, runner):
    result = runner.invoke(main, ["convert", "nosuchformat", "x", "-o", str(tmp_path / "o.h5")])
    assert result.exit_code == 2 and "npz" in result.output


def exported(tmp_path, runner, codec="uint8"):
    from conftest import write_dla
    src = write_dla(tmp_path / "src.dla.h5", m=6, codec=codec, codec_config={"k": 3} if codec == "topk" else None)
    npz = tmp_path / "x.npz"
    assert runner.invoke(main, ["export", str(src), "--format", "npz", "-o", str(npz)]).exit_code == 0
    return src, dict(np.load(npz))


def tampered(tmp_path, runner, arrays):
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    result = runner.invoke(main, ["convert", "npz", str(bad), "-o", str(tmp_path / "out.dla.h5")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert not (tmp_path / "out.dla.h5").exists()
    lines = [line for line in result.output.splitlines() if line.startswith("ladd: error")]
    assert len(lines) == 1 and str(bad) in lines[0]
    return lines[0]


def test_exported_stored_dense_labels_convert_back_exactly(tmp_path, runner):
    src, arrays = exported(tmp_path, runner, "topk")
    assert {"dense_stored_topk_index", "dense_stored_topk_prob"} <= set(arrays)
    good = tmp_path / "good.npz"
    np.savez(good, **arrays)
    assert runner.invoke(main, ["convert", "npz", str(good), "-o", str(tmp_path / "b.dla.h5")]).exit_code == 0
    import h5py
    with h5py.File(src, "r") as a, h5py.File(tmp_path / "b.dla.h5", "r") as b:
        for name in ("topk_index", "topk_prob"):
            assert np.array_equal(a["dense"][name][()], b["dense"][name][()])


def test_stored_dense_labels_that_do_not_fit_their_codec_are_refused(tmp_path, runner):
    _, arrays = exported(tmp_path, runner, "uint8")
    stored = arrays["dense_stored_probs"]
    assert stored.dtype == np.uint8 and stored.shape == (6, 9, 10)
    missing = {k: v for k, v in arrays.items() if k != "dense_stored_probs"}
    missing["dense_stored_other"] = stored
    assert "are not codec" in tampered(tmp_path, runner, missing)
    wrong_dtype = dict(arrays, dense_stored_probs=stored.astype(np.uint16))
    assert "dense_stored_probs must be (6, 9, 10) uint8" in tampered(tmp_path, runner, wrong_dtype)
    wrong_shape = dict(arrays, dense_stored_probs=stored[:, :4])
    assert "dense_stored_probs must be (6, 9, 10) uint8" in tampered(tmp_path, runner, wrong_shape)
    broken = stored.copy()
    broken[3, 2] = 0
    broken[3, 2, 0] = 200                      # row sums to 200: outside 255 +- C/2 (the codec's rule)
    line = tampered(tmp_path, runner, dict(arrays, dense_stored_probs=broken))
    assert "dense_stored_*:" in line and "sum to 255" in line and "images from 0" in line
    moved = stored.copy()
    moved[4, 1] = np.roll(moved[4, 1], 1)      # still a valid uint8 row, another distribution
    assert not np.array_equal(moved[4, 1], stored[4, 1])
    line = tampered(tmp_path, runner, dict(arrays, dense_stored_probs=moved))
    assert "do not decode to dense_labels" in line and "remove the dense_stored_* keys" in line
