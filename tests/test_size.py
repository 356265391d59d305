"""Spec section 7: storage accounting, and ``ladd size``."""

import io
import json
import os
import zipfile

import numpy as np
import pytest
import zstandard

from ladd_cli.main import main
from ladd_format import open_dla
from ladd_format.size import measure_arrays, measure_file

from conftest import write_dla


def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def zip_size(tmp_path, arrays: dict) -> int:
    """The paper's measure, written independently: np.save each array into a zip, read the size."""
    path = tmp_path / "independent.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            zf.writestr(name + ".npy", npy_bytes(array))
    return os.path.getsize(path)


@pytest.mark.parametrize("codec,config", [("float32", {}), ("topk", {"k": 3, "values": "uint8"})])
def test_zip_sizes_equal_an_independent_zip_of_npy_files(tmp_path, codec, config):
    path = write_dla(tmp_path / "a.dla.h5", m=20, side=32, n=5, codec=codec, codec_config=config)
    with open_dla(path) as f:
        base = {"images": f.images(), "labels": f.labels()}
        dense = {f"dense_{k}": v for k, v in f.dense_stored().items()}
    report = measure_file(path)
    assert report.base_bytes == zip_size(tmp_path, base)
    assert report.dla_bytes == zip_size(tmp_path, base | dense)
    assert report.dense_bytes == report.dla_bytes - report.base_bytes
    assert report.overhead_pct == pytest.approx(100 * report.dense_bytes / report.base_bytes)


def test_zstd_sizes_are_frames_of_npy_bytes(tmp_path):
    path = write_dla(tmp_path / "a.dla.h5", m=10, side=16)
    with open_dla(path) as f:
        arrays = [f.images(), f.labels(), f.dense_stored()["probs"]]
    frames = [len(zstandard.ZstdCompressor(level=3).compress(npy_bytes(a))) for a in arrays]
    report = measure_file(path, "zstd")
    assert report.base_bytes == frames[0] + frames[1]
    assert report.dla_bytes == sum(frames)


def test_file_and_arrays_give_identical_numbers(tmp_path):
    path = write_dla(tmp_path / "a.dla.h5", m=10, side=16)
    with open_dla(path) as f:
        images, labels, stored, c = f.images(), f.labels(), f.dense_stored(), f.num_classes
    for method in ("zip", "zstd"):
        assert measure_file(path, method) == measure_arrays(images, labels, stored, c, method)


def test_ipc_plus_one_is_c_images_at_the_average_compressed_cost(tmp_path):
    path = write_dla(tmp_path / "a.dla.h5", m=20, c=10, codec=None)
    r = measure_file(path)
    assert r.ipc == 2 and r.dense_bytes == 0 and r.overhead_pct == 0
    assert r.ipc_plus_one_bytes == pytest.approx(10 * r.images_bytes / 20)
    assert r.ipc_plus_one_pct == pytest.approx(100 * r.ipc_plus_one_bytes / r.base_bytes)


def test_float32_dense_labels_cost_what_their_entropy_says(tmp_path):
    # 25 x 10 float32 per 32x32 random image: raw 1,000 B vs 3,072 B, and neither compresses much
    path = write_dla(tmp_path / "a.dla.h5", m=40, side=32, n=5)
    r = measure_file(path)
    assert 0.2 < r.dense_bytes / r.raw_dense_bytes <= 1.01
    assert 20 < r.overhead_pct < 35


def test_cli_size_json_keys(tmp_path, runner):
    path = write_dla(tmp_path / "a.dla.h5")
    result = runner.invoke(main, ["size", str(path), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    for key in ("method", "base_bytes", "dla_bytes", "overhead_pct", "ipc_plus_one_pct"):
        assert key in data
    assert data["method"] == "zip" and data == {"file": str(path), **measure_file(path).as_dict()}
    text = runner.invoke(main, ["size", str(path), "--method", "zstd"])
    assert text.exit_code == 0 and "overhead" in text.output and "zstd level 3" in text.output


def test_cli_size_on_bad_file(tmp_path, runner):
    path = tmp_path / "bad.dla.h5"
    path.write_bytes(b"nope")
    result = runner.invoke(main, ["size", str(path)])
    assert result.exit_code == 1 and result.output.startswith("ladd: error: ") and "Traceback" not in result.output


def test_verify_and_size_check_dense_values_in_blocks_of_their_working_copies(tmp_path, monkeypatch):
    """The codecs' value checks work in int64/float64 copies of the stored values, so the blocks
    are sized by those (8 bytes a value), not by the stored bytes: sized by the stored bytes, a
    block of top-k rows made 5-6x its bytes in temporaries (945 KB for verify, 1,303 KB for size
    at 64 KiB blocks here; 210 and 237 MB at 8 MiB on 50,000 ImageNet-shaped images)."""
    import importlib
    import tracemalloc

    verify_module = importlib.import_module("ladd_format.verify")
    size_module = importlib.import_module("ladd_format.size")
    block = 64 << 10
    for module in (verify_module, size_module):
        monkeypatch.setattr(module, "READ_BLOCK_BYTES", block)
    path = write_dla(tmp_path / "topk.dla.h5", m=1200, c=200, side=8, n=5, codec="topk",
                     codec_config={"k": 8, "values": "float16"}, batch=400)
    for name, run, bound in (("verify", lambda: verify_module.verify(path), 4 * block),
                             ("size", lambda: measure_file(path, "zstd"), 12 * block)):
        run()                          # imports and one-time caches outside the measured run
        tracemalloc.start()
        try:
            result = run()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert result == [] if name == "verify" else result.dla_bytes > 0
        assert peak < bound, (name, peak)
