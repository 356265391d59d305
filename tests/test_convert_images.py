"""``ladd convert folder|sre2l|rded|auto``: image trees written the way each code base writes them,
and ``auto`` choosing the right converter for every layout."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from ladd_cli.main import main
from ladd_format import open_dla, verify
from ladd_format.errors import InputError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1)


def run(runner, *args):
    result = runner.invoke(main, ["convert", *map(str, args)])
    assert "Traceback" not in result.output
    return result


def refused(result, tmp_path, before, *fragments):
    """Exit 1, one line naming what is wrong, nothing new written."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ladd: error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def decoded(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


def tree_digest(root, files) -> str:
    lines = sorted((f.relative_to(root).as_posix(), hashlib.sha256(f.read_bytes()).hexdigest()) for f in files)
    return hashlib.sha256("".join(f"{sha}  {rel}\n" for rel, sha in lines).encode()).hexdigest()


# -- writers, as each code base saves ---------------------------------------------------------
def write_imagefolder(root, counts=(("dog", 2), ("cat", 3), ("zebra", 1)), side=12, seed=0):
    """PNG ImageFolder; one grayscale and one RGBA image among them, plus a stray text file."""
    rng = np.random.default_rng(seed)
    written = []
    for name, count in counts:
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            im = Image.fromarray(pixels)
            if (name, i) == ("cat", 1):
                im = im.convert("L")
            if (name, i) == ("dog", 0):
                im = im.convert("RGBA")
            path = root / name / f"img_{i:02d}.png"
            im.save(path)
            written.append(path)
    (root / counts[0][0] / "notes.txt").write_text("not an image")
    return written


def sre2l_save(folder, images, targets, ind):
    """SRe2L's save path: denormalise (ImageNet), clamp to [0, 1], uint8(x*255) truncation, JPEG."""
    for x, cls in zip(images, targets):
        pixel = np.clip(x * IMAGENET_STD + IMAGENET_MEAN, 0, 1).transpose(1, 2, 0)
        d = folder / f"new{cls:03d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixel * 255).astype(np.uint8)).save(d / f"class{cls:03d}_id{ind:03d}.jpg")


def write_sre2l(exp, classes=(0, 2, 5), ipc=2, side=32, seed=0):
    rng = np.random.default_rng(seed)
    for ind in range(ipc):                                   # SRe2L saves one batch of all classes per id
        sre2l_save(exp, rng.normal(size=(len(classes), 3, side, side)), classes, ind)
    return sorted(exp.glob("new*/*.jpg"))


def write_rded(exp, classes=(0, 1, 3), ipc=2, side=32, factor=2, seed=0):
    """RDED: factor x factor mosaics, denormalised with ImageNet stats, uint8(x*255) without clamp."""
    rng = np.random.default_rng(seed)
    files = []
    for cls in classes:
        d = exp / "syn_data" / f"{cls:05d}"
        d.mkdir(parents=True)
        for i in range(ipc):
            tiles = [rng.uniform(0.05, 0.95, (3, side // factor, side // factor)) for _ in range(factor * factor)]
            rows = [np.concatenate(tiles[r * factor:(r + 1) * factor], axis=2) for r in range(factor)]
            normalized = (np.concatenate(rows, axis=1) - IMAGENET_MEAN) / IMAGENET_STD
            pixel = (normalized * IMAGENET_STD + IMAGENET_MEAN).transpose(1, 2, 0)
            path = d / f"class{cls:05d}_id{i:05d}.jpg"
            Image.fromarray((pixel * 255).astype(np.uint8)).save(path)
            files.append(path)
    return files


def float_images(m=20, side=8, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(m, 3, side, side)).astype(np.float32))


def hard_labels(m=20, c=10):
    return torch.arange(m) % c


def write_run(folder, kind):
    """Minimal run folders / files of the .pt code bases (file names as each saves them)."""
    folder.mkdir()
    x, y = float_images(), hard_labels()
    if kind == "mtt":
        for it in (0, 500):
            torch.save(x.requires_grad_(True), folder / f"images_{it}.pt")
            torch.save(y, folder / f"labels_{it}.pt")
        torch.save(x, folder / "images_best.pt")
        torch.save(y, folder / "labels_best.pt")
    elif kind == "glad":
        for it in ("00000", "00500", "best"):
            torch.save(x, folder / f"images_{it}.pt")
            torch.save(y, folder / f"labels_{it}.pt")
    elif kind in ("datm", "datm-no-lr"):
        logits = torch.randn(20, 10) * 3
        for it in ("0", "best"):
            torch.save(x, folder / f"images_{it}.pt")
            torch.save(logits, folder / f"labels_{it}.pt")
            if kind == "datm":
                torch.save(torch.tensor(0.01), folder / f"lr_{it}.pt")
    elif kind == "tesla":
        torch.save(x, folder / "images_best.pt")
        torch.save(torch.softmax(torch.randn(20, 10), dim=1), folder / "labels_best.pt")
    elif kind == "dc":
        torch.save({"data": [[x, y]], "accs_all_exps": {"ConvNet": [np.float64(0.5)]}},
                   folder / "res_DM_CIFAR10_ConvNet_2ipc.pt")
    elif kind == "tensors":
        torch.save(x, folder / "images.pt")
        torch.save(y, folder / "labels.pt")
    return folder


# -- folder -----------------------------------------------------------------------------------
def test_folder_png_pixels_labels_names_provenance(tmp_path, runner):
    root = tmp_path / "tree"
    written = write_imagefolder(root)
    out = tmp_path / "out.dla.h5"
    result = run(runner, "folder", root, "-o", out)
    assert result.exit_code == 0, result.output
    assert "mode L to RGB" in result.output and "mode RGBA to RGB" in result.output
    assert verify(out) == []
    order = sorted(written, key=lambda p: (p.parent.name, p.name))            # classes by name, then files
    with open_dla(out) as f:
        assert f.class_names == ["cat", "dog", "zebra"] and f.num_classes == 3
        assert f.labels().tolist() == [0, 0, 0, 1, 1, 2]
        assert np.array_equal(f.images(), np.stack([decoded(p) for p in order]))   # PNG: exact
        (inp,) = f.provenance["inputs"]
        assert inp == {"name": "tree/", "files": 6, "size": sum(p.stat().st_size for p in written),
                       "sha256": tree_digest(root, written)}
        assert f.provenance["converter"] == "folder"


def test_folder_dataset_preset_names_and_normalisation(tmp_path, runner):
    root = tmp_path / "tree"
    write_imagefolder(root, counts=[(f"c{i}", 1) for i in range(10)])
    out = tmp_path / "out.dla.h5"
    result = run(runner, "folder", root, "-o", out, "--dataset", "cifar10")
    assert result.exit_code == 0 and "not the folder names (first folder 'c0' is 'airplane')" in result.output
    with open_dla(out) as f:
        assert f.class_names[0] == "airplane" and np.allclose(f.mean, (0.4914, 0.4822, 0.4465))


# -- SRe2L ------------------------------------------------------------------------------------
def test_sre2l_jpeg_as_decoded_labels_from_folder_numbers(tmp_path, runner):
    exp = tmp_path / "recover" / "exp"
    files = write_sre2l(exp)
    (tmp_path / "recover" / "FKD" / "epoch_0").mkdir(parents=True)
    (tmp_path / "recover" / "FKD" / "epoch_0" / "batch_0.tar").write_bytes(b"x")
    out = tmp_path / "out.dla.h5"
    result = run(runner, "sre2l", exp, "-o", out)
    assert result.exit_code == 0, result.output
    assert "largest class folder number + 1 = 6" in result.output
    assert "relabel soft labels" in result.output and "not converted" in result.output
    assert verify(out) == []
    order = sorted(files, key=lambda p: (p.parent.name, p.name))
    with open_dla(out) as f:
        assert f.num_classes == 6 and f.labels().tolist() == [0, 0, 2, 2, 5, 5]
        assert np.array_equal(f.images(), np.stack([decoded(p) for p in order]))
        assert np.allclose(f.mean, IMAGENET_MEAN.ravel())
        report = f.provenance["report"]
        assert "JPEG" in report["images"] and "truncated" in report["images"]
        assert f.provenance["inputs"][0]["files"] == 6 and f.provenance["converter"] == "sre2l"


def test_sre2l_dataset_gives_class_count_and_names(tmp_path, runner):
    exp = tmp_path / "exp"
    write_sre2l(exp, classes=(0, 9), ipc=1)
    out = tmp_path / "out.dla.h5"
    result = run(runner, "sre2l", exp, "-o", out, "--dataset", "imagenette")
    assert result.exit_code == 0, result.output
    assert "no folder for 8 of 10 classes" in result.output and "relabel" not in result.output
    with open_dla(out) as f:
        assert f.num_classes == 10 and f.labels().tolist() == [0, 9] and f.class_names[9] == "parachute"


def test_sre2l_class_folder_beyond_the_preset(tmp_path, runner):
    exp = tmp_path / "exp"
    write_sre2l(exp, classes=(0, 12), ipc=1, side=8)
    result = run(runner, "sre2l", exp, "-o", tmp_path / "out.dla.h5", "--dataset", "cifar10")
    refused(result, tmp_path, ["exp"], "new012", "10 classes")


# -- RDED -------------------------------------------------------------------------------------
@pytest.mark.parametrize("inner", ["", "syn_data"])
def test_rded_exp_or_syn_data(tmp_path, runner, inner):
    exp = tmp_path / "exp"
    files = write_rded(exp)
    out = tmp_path / "out.dla.h5"
    result = run(runner, "rded", exp / inner if inner else exp, "-o", out, "--dataset", "cifar10")
    assert result.exit_code == 0, result.output
    assert "mosaics" in result.output and "no soft labels on disk" in result.output
    assert verify(out) == []
    with open_dla(out) as f:
        assert f.num_classes == 10 and f.labels().tolist() == [0, 0, 1, 1, 3, 3]
        assert np.array_equal(f.images(), np.stack([decoded(p) for p in files]))
        assert np.allclose(f.mean, IMAGENET_MEAN.ravel())      # RDED uses ImageNet stats for every dataset
        assert f.provenance["inputs"][0]["name"] == "syn_data/"
        assert "soft_labels" in f.provenance["report"] and "mosaic" in f.provenance["report"]


# -- auto -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,expected,dataset", [
    ("mtt", "mtt", "cifar10"), ("glad", "glad", "cifar10"), ("datm", "datm", "cifar10"),
    ("datm-no-lr", "datm", "cifar10"), ("tesla", "tesla", "cifar10"), ("dc", "dc", "cifar10"),
    ("tensors", "tensors", "cifar10"),
])
def test_auto_pt_layouts(tmp_path, runner, kind, expected, dataset):
    src = write_run(tmp_path / "run", kind)
    out = tmp_path / "out.dla.h5"
    no_zca = ["--no-zca"] if expected == "datm" else []        # DATM's CIFAR configurations use ZCA: say which
    result = run(runner, "auto", src, "-o", out, "--dataset", dataset, *no_zca)
    assert result.exit_code == 0, result.output
    assert f"note: auto: detected {expected} (" in result.output
    assert verify(out) == []
    with open_dla(out) as f:
        assert f.provenance["converter"] == expected and len(f) == 20


def test_auto_given_a_file(tmp_path, runner):
    run_dir = write_run(tmp_path / "run", "glad")
    out = tmp_path / "out.dla.h5"
    result = run(runner, "auto", run_dir / "images_00500.pt", "-o", out, "--dataset", "cifar10")
    assert result.exit_code == 0 and "detected glad" in result.output, result.output
    images = tmp_path / "arr.npz"
    np.savez(images, images=np.zeros((2, 3, 4, 4), np.uint8), labels=np.arange(2))
    result = run(runner, "auto", images, "-o", tmp_path / "npz.dla.h5")
    assert result.exit_code == 0 and "detected npz" in result.output, result.output


@pytest.mark.parametrize("layout,expected", [("sre2l", "sre2l"), ("rded", "rded"), ("rded-syn", "rded"),
                                             ("folder", "folder")])
def test_auto_image_layouts(tmp_path, runner, layout, expected):
    src = tmp_path / "src"
    if layout == "sre2l":
        write_sre2l(src, side=8)
    elif layout.startswith("rded"):
        write_rded(src, side=8)
        src = src / "syn_data" if layout == "rded-syn" else src
    else:
        write_imagefolder(src)
    out = tmp_path / "out.dla.h5"
    result = run(runner, "auto", src, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"note: auto: detected {expected} (" in result.output
    with open_dla(out) as f:
        assert f.provenance["converter"] == expected


# -- refusals ---------------------------------------------------------------------------------
def test_mixed_sizes_name_two_files(tmp_path, runner):
    root = tmp_path / "tree"
    write_imagefolder(root, counts=[("a", 1), ("b", 1)])
    Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(root / "b" / "img_01.png")
    result = run(runner, "folder", root, "-o", tmp_path / "out.dla.h5")
    refused(result, tmp_path, ["tree"], "a/img_00.png is 12x12", "b/img_01.png is 7x9")


@pytest.mark.parametrize("fmt", ["sre2l", "auto"])
def test_corrupt_jpeg_is_named(tmp_path, runner, fmt):
    exp = tmp_path / "exp"
    files = write_sre2l(exp, side=16)
    files[3].write_bytes(files[3].read_bytes()[:200])               # truncated JPEG
    result = run(runner, fmt, exp, "-o", tmp_path / "out.dla.h5")
    refused(result, tmp_path, ["exp"], str(files[3]), "unreadable or corrupt image")


@pytest.mark.parametrize("fmt,message", [("folder", "holds no class folders"), ("auto", "not a known layout"),
                                         ("rded", "expected an RDED run"), ("sre2l", "new000/")])
def test_empty_folder(tmp_path, runner, fmt, message):
    (tmp_path / "empty").mkdir()
    refused(run(runner, fmt, tmp_path / "empty", "-o", tmp_path / "out.dla.h5"), tmp_path, ["empty"], message)


def test_class_folders_without_images(tmp_path, runner):
    for name in ("a", "b"):
        (tmp_path / "tree" / name).mkdir(parents=True)
        (tmp_path / "tree" / name / "readme.txt").write_text("x")
    refused(run(runner, "folder", tmp_path / "tree", "-o", tmp_path / "out.dla.h5"), tmp_path, ["tree"],
            "holds no image files")


def test_auto_unknown_layout_points_to_the_list_of_formats(tmp_path, runner):
    src = tmp_path / "stuff"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data.csv").write_text("1,2")
    (src / "weights.pt").write_bytes(b"x")
    result = run(runner, "auto", src, "-o", tmp_path / "out.dla.h5")
    refused(result, tmp_path, ["stuff"], "not a known layout", "ladd convert --help")


def test_labeler_sources_share_the_reader(tmp_path):
    from ladd_format.labeler import load_source

    root = tmp_path / "tree"
    written = write_imagefolder(root, counts=[("1", 1), ("10", 1), ("2", 1)])
    source = load_source(str(root), image_size=8)
    assert source.images.shape == (3, 3, 8, 8) and source.class_names == ["1", "10", "2"]
    assert source.labels.tolist() == [0, 1, 2]
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(root / "2" / "odd.png")
    with pytest.raises(Exception, match="give --image-size"):
        load_source(str(root))
    (root / "2" / "odd.png").unlink()
    from ladd_format.converters.images import read_image_folder
    tree = read_image_folder(root)
    assert any("folder 10 is class 1" in note for note in tree.notes)
    assert np.array_equal(tree.images, np.stack([decoded(p) for p in written]))


# -- streamed reading: bounded memory ------------------------------------------------------------
def test_streamed_images_are_decoded_when_read_and_checked_against_the_first_pass(tmp_path):
    from ladd_format.converters.images import read_images
    from ladd_format.rows import Rows

    files = write_sre2l(tmp_path / "exp", side=16)
    read = read_images(files, tmp_path / "exp", stream=True)
    assert isinstance(read.images, Rows) and read.images.shape == (len(files), 3, 16, 16)
    assert np.array_equal(read.images[2:4], np.stack([decoded(f) for f in files[2:4]]))
    assert read.input.record()["files"] == len(files)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(files[1], format="JPEG")
    with pytest.raises(InputError, match="changed while it was being converted") as err:
        read.images[0:3]
    assert err.value.path == str(files[1])
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(files[4], format="JPEG")
    with pytest.raises(InputError, match="images differ in size"):
        read_images(files, tmp_path / "exp", stream=True)          # headers are checked in the first pass


def test_a_folder_converts_in_blocks_with_the_same_result(tmp_path, monkeypatch):
    import tracemalloc

    from ladd_format.converters import ConvertOptions, convert

    root = tmp_path / "tree"
    rng = np.random.default_rng(3)
    for c in range(4):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(150):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / f"class{c}" / f"{i}.png")
    convert("folder", root, tmp_path / "whole.dla.h5", ConvertOptions())            # also does the imports
    monkeypatch.setattr("ladd_format.rows.BLOCK_BYTES", 1 << 16)
    tracemalloc.start()
    try:
        convert("folder", root, tmp_path / "small.dla.h5", ConvertOptions())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 600 * 3 * 64 * 64 // 4          # the decoded set is 7.4 MB; blocks of 64 KiB are read
    with open_dla(tmp_path / "whole.dla.h5") as a, open_dla(tmp_path / "small.dla.h5") as b:
        assert np.array_equal(a.images(), b.images()) and np.array_equal(a.labels(), b.labels())
        assert np.allclose(a.mean, b.mean, rtol=1e-12, atol=0) and np.allclose(a.std, b.std, rtol=1e-12, atol=0)


def test_the_header_pass_submits_a_window_of_files_at_a_time():
    from ladd_format.converters.images import _windowed

    class Pool:
        sizes = []

        def map(self, fn, items):
            self.sizes.append(len(items))
            return map(fn, items)

    pool = Pool()
    assert list(_windowed(pool, lambda v: v * 2, list(range(10)), window=4)) == [v * 2 for v in range(10)]
    assert pool.sizes == [4, 4, 2]
