"""`ladd info`, `size`, `verify`, `show` and `export` on a file with a relabel stream (spec 4.7, 5.1, 7)."""

import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import zstandard
from PIL import Image

from ladd_format import open_dla
from ladd_format.size import (SRE2L_MEASURED_CLASSES, SRE2L_MEASURED_FILE_BYTES, SRE2L_MODEL_ERROR_BYTES,
                              sre2l_file_bytes, sre2l_stream_bytes)
from ladd_format.spec import RESIZE_PIL
from ladd_format.viz import show as V

from conftest import cli, ok, one_line, write_dla

#: spec 7's members of the stream archive, in 4.7's table order (batch_sha256 left out)
CUTMIX_MEMBERS = ["epoch_start", "batch_start", "image", "box", "flip", "mix_partner", "mix_box", "topk_index",
                  "topk_prob"]
STREAM_CODECS_JSON = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "stream_codecs.json"


@pytest.fixture
def stream_file(tmp_path) -> Path:
    """12 images, C = 10; a stream of 2 epochs, batches of 4, 2 | 3 records (9), cutmix, topk k=3 uint8."""
    return write_dla(tmp_path / "stream.dla.h5", stream_mix="cutmix")


def stream_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of /stream as stored, read with plain h5py."""
    with h5py.File(path, "r") as f:
        return {name: f["stream"][name][()] for name in f["stream"] if isinstance(f["stream"][name], h5py.Dataset)}


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


# -- info --------------------------------------------------------------------------------------------
def test_info_prints_the_stream(runner, stream_file):
    out = ok(runner, "info", stream_file).output
    assert "  stream      2 epoch(s), 3 batch(es) of <= 4, 9 records; mode epochs" in out
    assert "  crops       8x8 (bilinear-antialias), mix cutmix" in out
    assert "  labels      codec topk:k=3,values=uint8 (kind probs), T=1" in out
    assert "  teacher     arch=test" in out


def test_info_json_has_the_stream(runner, stream_file):
    data = json.loads(ok(runner, "info", stream_file, "--json").output)["stream"]
    assert (data["epochs"], data["batches"], data["records"], data["batch_size"]) == (2, 3, 9, 4)
    assert (data["mode"], data["mix"], data["crop_size"], data["resize"]) == ("epochs", "cutmix", [8, 8],
                                                                             "bilinear-antialias")
    assert (data["codec"], data["kind"], data["temperature"]) == ("topk:k=3,values=uint8", "probs", 1.0)
    assert data["teacher"] == {"arch": "test"}


def test_info_of_a_file_without_a_stream_says_none(runner, dla_file):
    assert "  stream      none (no relabel stream)" in ok(runner, "info", dla_file).output
    assert json.loads(ok(runner, "info", dla_file, "--json").output)["stream"] is None


# -- size --------------------------------------------------------------------------------------------
def test_size_measures_the_stream_apart_as_spec_7_says(runner, stream_file, tmp_path):
    arrays = stream_arrays(stream_file)
    # spec 7 written out: each stream dataset as stream_<name>.npy in a zip (deflate, level 6)
    archive = tmp_path / "stream.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in CUTMIX_MEMBERS:
            zf.writestr(f"stream_{name}.npy", npy(arrays[name]))
    report = json.loads(ok(runner, "size", stream_file, "--json").output)
    st = report["stream"]
    assert (st["epochs"], st["batches"], st["records"], st["num_classes"]) == (2, 3, 9, 10)
    assert st["bytes"] == archive.stat().st_size
    assert st["raw_bytes"] == sum(arrays[name].nbytes for name in CUTMIX_MEMBERS)
    assert st["bytes_per_record"] == pytest.approx(st["bytes"] / 9, rel=1e-12)
    with h5py.File(stream_file, "r") as f:
        stored = sum(f["stream"][name].id.get_storage_size() for name in arrays)
    assert st["stored_bytes"] == stored
    # the SRe2L estimate: one file per batch, batch_{j} numbered inside its epoch (lengths 4, 2 | 3)
    expected = sre2l_file_bytes(4, 10, 0) + sre2l_file_bytes(2, 10, 1) + sre2l_file_bytes(3, 10, 0)
    assert st["sre2l_bytes"] == expected
    assert st["sre2l_ratio"] == pytest.approx(expected / st["bytes"], rel=1e-12)
    # base and D_LA do not include the stream
    without = write_dla(tmp_path / "plain.dla.h5")
    plain = json.loads(ok(runner, "size", without, "--json").output)
    assert (report["base_bytes"], report["dla_bytes"]) == (plain["base_bytes"], plain["dla_bytes"])
    assert plain["stream"] is None


def test_size_zstd_sums_one_frame_per_stream_array(runner, stream_file):
    arrays = stream_arrays(stream_file)
    cctx = zstandard.ZstdCompressor(level=3)
    expected = sum(len(cctx.compress(npy(arrays[name]))) for name in CUTMIX_MEMBERS)
    st = json.loads(ok(runner, "size", stream_file, "--method", "zstd", "--json").output)["stream"]
    assert st["bytes"] == expected


def test_size_text_gives_bytes_per_record_and_the_sre2l_ratio(runner, stream_file):
    out = ok(runner, "size", stream_file).output
    st = json.loads(ok(runner, "size", stream_file, "--json").output)["stream"]
    assert "relabel stream: 2 epoch(s), 3 batch(es), 9 records" in out
    assert f"{st['bytes']:,} B  {st['bytes_per_record']:,.1f} B per record (image and epoch)" in out
    assert f"{st['sre2l_bytes']:,} B  estimate; the stream is 1/{st['sre2l_ratio']:,.1f} of it" in out
    assert f"{st['stored_bytes']:,} B  storage of the /stream datasets" in out


def test_size_refuses_a_stream_batch_that_fails_its_digest(runner, stream_file):
    with h5py.File(stream_file, "r+") as f:
        f["stream/image"][0] = (f["stream/image"][0] + 1) % 12      # the batch digest no longer matches
    line = one_line(cli(runner, "size", stream_file))
    assert "/stream" in line


# -- the SRe2L layout model --------------------------------------------------------------------------
def test_sre2l_model_equals_the_three_measured_files():
    for batch, measured in SRE2L_MEASURED_FILE_BYTES.items():
        assert abs(sre2l_file_bytes(batch, SRE2L_MEASURED_CLASSES) - measured) <= SRE2L_MODEL_ERROR_BYTES
    assert SRE2L_MODEL_ERROR_BYTES == 0
    assert (sre2l_file_bytes(100, 1000), sre2l_file_bytes(256, 1000), sre2l_file_bytes(1024, 1000)) == (
        205_021, 520_861, 2_076_061)


def test_sre2l_measured_figures_are_the_benchmarks():
    """The library's figures are the benchmark's measurements, and the model gives its ImageNet epoch."""
    if not STREAM_CODECS_JSON.is_file():
        pytest.skip(f"{STREAM_CODECS_JSON} is absent")
    sre = json.loads(STREAM_CODECS_JSON.read_text())["data"]["sre2l"]
    assert {int(k): v for k, v in sre["file_bytes"].items()} == SRE2L_MEASURED_FILE_BYTES
    last = sre["imagenet_last_batch"]
    lengths = [1024] * 9 + [last]                       # 10,000 images at B = 1,024
    assert sre2l_stream_bytes(np.array(lengths), np.arange(10), 1000) == sre["imagenet_epoch_bytes"]


def test_sre2l_model_equals_torch_save(tmp_path):
    """Against torch.save itself (where torch is installed), for batch sizes, class counts and batch numbers
    the measurements do not cover."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for b, c, number in ((1, 2, 0), (37, 7, 5), (100, 1000, 12), (300, 255, 123), (64, 1001, 7)):
        obj = [torch.rand(b, 4), torch.rand(b) < 0.5, torch.randperm(b), float(rng.random()),
               [np.int64(v) for v in rng.integers(0, 200, 4)], torch.randn(b, c).half()]
        path = tmp_path / f"batch_{number}.tar"         # the archive's records are named after the file
        torch.save(obj, path)
        assert path.stat().st_size == sre2l_file_bytes(b, c, number), (b, c, number)


# -- verify ------------------------------------------------------------------------------------------
def test_verify_counts_the_stream_records_it_checked(runner, stream_file):
    out = ok(runner, "verify", stream_file).output
    assert "relabel stream: 2 epoch(s), 3 batch(es), 9 records checked (rules 16 and 17" in out
    data = json.loads(ok(runner, "verify", stream_file, "--json").output)
    assert data["stream"] == {"epochs": 2, "batches": 3, "records": 9}


def test_verify_prints_a_broken_batch_digest_as_rule_17(runner, stream_file):
    with h5py.File(stream_file, "r+") as f:
        f["stream/flip"][0] = 1 - f["stream/flip"][0]
    result = cli(runner, "verify", stream_file)
    assert result.exit_code == 1
    assert any("/stream" in line and "[rule 17" in line for line in result.output.splitlines()), result.output


# -- show --------------------------------------------------------------------------------------------
def stream_picture_size(records: int, cell: int, top: int) -> tuple[int, int]:
    """The stream picture's size from the layout constants (viz/show.py's module docstring)."""
    columns = min(records, V.STREAM_COLUMNS)
    rows = -(-records // columns)
    width = max(V.MIN_WIDTH, 2 * V.MARGIN + columns * cell + (columns - 1) * V.PAD)
    height = V.MARGIN + 2 * V.TITLE_LINE + rows * (cell + (1 + top) * V.LINE + V.PAD) + V.STREAM_LEGEND_LINES * V.LINE \
        + V.MARGIN
    return width, height


@pytest.mark.parametrize("epoch, batch, records", [(0, 0, 4), (0, 1, 2), (1, 0, 3)])
def test_show_draws_a_batch_of_the_stream(runner, stream_file, tmp_path, epoch, batch, records):
    out = tmp_path / "batch.png"
    result = ok(runner, "show", stream_file, "-o", out, "--epoch", epoch, "--batch", batch, "--cell", 40, "--top", 3)
    with Image.open(out) as picture:
        size = picture.size
    assert size == stream_picture_size(records, 40, 3)
    assert f"wrote {out} (stream, {size[0]}x{size[1]} px)" in result.output


def test_show_cells_are_the_rebuilt_crops(tmp_path):
    """A cell holds the record's crop (drawn with nearest-neighbour at a whole multiple of the crop)."""
    path = write_dla(tmp_path / "s.dla.h5", stream_mix="none")
    out = tmp_path / "p.png"
    V.show(path, out, epoch=0, batch=0, cell=32)          # 8x8 crops drawn at 32 px: each pixel a 4x4 block
    with open_dla(path) as f:
        s = f.stream
        batch = s.read_batch(0)
        images = {int(i): f.images(int(i), int(i) + 1)[0].astype(np.float32) for i in batch.image}
        crops = V.stream_crops(images, batch, list(range(len(batch))), s.spec.crop_size, s.spec.resize, "none")
    geo = V.StreamGeometry(count=len(batch), cell=32, top=V.TOP)
    with Image.open(out) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    for i in range(len(batch)):
        x, y = geo.cell_xy(i)
        drawn = pixels[y:y + 32:4, x:x + 32:4].transpose(2, 0, 1)
        np.testing.assert_array_equal(drawn, V.to_uint8(crops[i]))


def test_show_crops_follow_spec_5_1_with_pillow(tmp_path):
    """pil-bilinear, written out from spec 5.1: Pillow crop + BILINEAR resize of the uint8 image, flip, then
    the partner's mix_box pasted (cutmix)."""
    path = write_dla(tmp_path / "s.dla.h5", stream_mix="cutmix")
    with open_dla(path) as f:
        s = f.stream
        batch = s.read_batch(0)
        stored = {int(i): f.images(int(i), int(i) + 1)[0] for i in batch.image}
        crops = V.stream_crops({i: v.astype(np.float32) for i, v in stored.items()}, batch,
                               list(range(len(batch))), (8, 8), RESIZE_PIL, "cutmix")

    def by_hand(r):
        t, left, h, w = (int(v) for v in batch.box[r])
        rgb = Image.fromarray(stored[int(batch.image[r])].transpose(1, 2, 0), "RGB")
        c = np.asarray(rgb.crop((left, t, left + w, t + h)).resize((8, 8), Image.BILINEAR), np.float32)
        c = c.transpose(2, 0, 1)
        return c[:, :, ::-1] if batch.flip[r] else c

    t, left, h, w = (int(v) for v in batch.mix_box)
    for r in range(len(batch)):
        expected = by_hand(r).copy()
        expected[:, t:t + h, left:left + w] = by_hand(int(batch.mix_partner[r]))[:, t:t + h, left:left + w]
        np.testing.assert_array_equal(crops[r], expected)


@pytest.mark.parametrize("mix", ["none", "cutmix", "mixup"])
def test_show_crops_match_the_replay_kernel(tmp_path, mix):
    """The bilinear-antialias crops drawn by Pillow (float pixels) equal the torch kernel of spec 5.1
    (ladd_format.torch.stream_crops) within 0.01 of a level of 255 (measured: under 1e-4)."""
    pytest.importorskip("torch")
    from ladd_format.torch.stream_crops import crop_batch
    import torch

    path = write_dla(tmp_path / "s.dla.h5", stream_mix=mix, side=20)
    with open_dla(path) as f:
        s = f.stream
        for b in range(s.num_batches):
            batch = s.read_batch(b)
            images = {int(i): f.images(int(i), int(i) + 1)[0].astype(np.float32) for i in batch.image}
            mine = V.stream_crops(images, batch, list(range(len(batch))), s.spec.crop_size, s.spec.resize, mix)
            sources = torch.from_numpy(np.stack([images[int(i)] for i in batch.image]))
            ref = crop_batch(sources, batch.box, batch.flip, s.spec.crop_size, mix=mix, mix_partner=batch.mix_partner,
                             mix_box=batch.mix_box, mix_lambda=batch.mix_lambda).numpy()
            assert np.abs(np.stack([mine[r] for r in range(len(batch))]) - ref).max() < 0.01


@pytest.mark.parametrize("args, words", [
    (["--epoch", "2"], "--epoch 2 is out of range: the stream holds 2 epoch(s)"),
    (["--epoch", "1", "--batch", "1"], "--batch 1 is out of range: epoch 1 holds 1 batch(es)"),
    (["--batch", "1"], "--batch needs --epoch"),
    (["--epoch", "0", "--index", "0"], "does not combine with --index or --per-class"),
])
def test_show_refuses_bad_stream_options_in_one_line(runner, stream_file, tmp_path, args, words):
    out = tmp_path / "p.png"
    assert words in one_line(cli(runner, "show", stream_file, "-o", out, *args))
    assert not out.exists()


def test_show_epoch_of_a_file_without_a_stream_is_one_line(runner, dla_file, tmp_path):
    out = tmp_path / "p.png"
    assert "no relabel stream" in one_line(cli(runner, "show", dla_file, "-o", out, "--epoch", "0"))
    assert not out.exists()


# -- export ------------------------------------------------------------------------------------------
def test_export_npz_carries_the_stream_arrays_and_attributes(runner, stream_file, tmp_path):
    out = tmp_path / "set.npz"
    ok(runner, "export", stream_file, "--format", "npz", "-o", out)
    arrays = stream_arrays(stream_file)
    with np.load(out) as npz:
        keys = [k for k in npz.files if k.startswith("stream_")]
        assert keys == [f"stream_{name}" for name in CUTMIX_MEMBERS]
        for name in CUTMIX_MEMBERS:
            assert npz[f"stream_{name}"].dtype == arrays[name].dtype
            np.testing.assert_array_equal(npz[f"stream_{name}"], arrays[name])
        meta = json.loads(str(npz["ladd_metadata"]))["stream"]
    with h5py.File(stream_file, "r") as f:
        attrs = f["stream"].attrs
        assert meta["epochs"] == int(attrs["epochs"]) == 2
        assert meta["batch_size"] == int(attrs["batch_size"]) == 4
        assert meta["crop_size"] == [int(v) for v in attrs["crop_size"]]
        for key in ("mode", "mix", "resize", "kind", "codec"):
            assert meta[key] == attrs[key].decode() if isinstance(attrs[key], bytes) else str(attrs[key])
        assert meta["k"] == int(attrs["k"]) and meta["temperature"] == float(attrs["temperature"])
    assert meta["codec_text"] == "topk:k=3,values=uint8" and meta["teacher"] == {"arch": "test"}


@pytest.mark.parametrize("fmt", ["folder", "ddranking"])
def test_export_without_room_for_the_stream_refuses_without_drop_stream(runner, stream_file, tmp_path, fmt):
    out = tmp_path / "out"
    line = one_line(cli(runner, "export", stream_file, "--format", fmt, "-o", out))
    assert f"which --format {fmt} cannot hold" in line and "--drop-stream" in line
    assert not out.exists()


def test_export_folder_with_drop_stream_exports_the_rest_and_says_so(runner, stream_file, tmp_path):
    out = tmp_path / "out"
    result = ok(runner, "export", stream_file, "--format", "folder", "-o", out, "--drop-stream")
    assert "a relabel stream (2 epoch(s), 9 records) is not exported (--drop-stream)" in result.output
    assert (out / "hard_labels.npy").is_file()
    assert "stream" not in json.loads((out / "metadata.json").read_text()).get("ladd_metadata", {})


def test_export_npz_with_drop_stream_leaves_it_out(runner, stream_file, tmp_path):
    out = tmp_path / "set.npz"
    result = ok(runner, "export", stream_file, "--format", "npz", "-o", out, "--drop-stream")
    assert "is not exported (--drop-stream)" in result.output
    with np.load(out) as npz:
        assert not [k for k in npz.files if k.startswith("stream_")]
        assert "stream" not in json.loads(str(npz["ladd_metadata"]))
