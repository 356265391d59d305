"""``ladd show``: the picture's geometry, the exact pixels of its cells, its captions, and its refusals.

``ladd show`` needs no torch (it draws the sub-images with Pillow); the tests that compare its pixels
with the torch kernel or torchvision skip without the torch extra. tests/test_cli_extras.py runs it
with torch hidden."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from ladd_cli.main import main
from ladd_format import geometry, open_dla
from ladd_format.viz import show as S
from ladd_format.pixels import round_half_up

from conftest import write_dla

NAMES = ["cat", "dog", "bird"]


def png(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def student_view(image_chw: np.ndarray, box, side: tuple[int, int]) -> np.ndarray:
    """Sub-image ``box`` of a uint8 image as torchvision builds it (spec 5), rounded half up to uint8."""
    torch = pytest.importorskip("torch")
    TF = pytest.importorskip("torchvision.transforms.v2.functional")
    top, left, h, w = (int(v) for v in box)
    x = TF.resized_crop(torch.from_numpy(image_chw).float(), top, left, h, w, list(side), antialias=True)
    return round_half_up(x).clamp(0, 255).to(torch.uint8).numpy()


def nearest_up(chw: np.ndarray, factor: int) -> np.ndarray:
    """(K, H, W) -> (H*f, W*f, 3): every pixel a f x f block (what nearest-neighbour scaling by f draws)."""
    hwc = chw.transpose(1, 2, 0)
    if hwc.shape[2] == 1:
        hwc = np.repeat(hwc, 3, axis=2)
    return np.kron(hwc, np.ones((factor, factor, 1), dtype=np.uint8))


def partials(folder) -> list:
    return [p for p in folder.iterdir() if ".partial-" in p.name]


@pytest.fixture
def named_dla(tmp_path):
    return write_dla(tmp_path / "named.dla.h5", m=4, c=3, side=16, n=3, class_names=NAMES, soft_kind="logits")


def dense_geometry(n: int, cell: int, top: int, count: int) -> tuple[int, int, int, int]:
    """(width, height, grid x, panel height) recomputed from the layout in show.py's docstring."""
    big = 3 * cell
    row = cell + top * S.LINE + S.PAD
    panel = 2 * S.TITLE_LINE + max(big, n * row - S.PAD) + S.GAP
    width = max(S.MIN_WIDTH, 2 * S.MARGIN + big + S.GAP + n * cell + (n - 1) * S.PAD)
    height = S.MARGIN + S.TITLE_LINE + count * panel + S.DENSE_LEGEND_LINES * S.LINE + S.MARGIN
    return width, height, S.MARGIN + big + S.GAP, panel


def test_subimage_cells_hold_the_students_subimages_pixel_for_pixel(named_dla, tmp_path, runner):
    out = tmp_path / "show.png"
    cell, n, top = 64, 3, 2                              # 16 px images drawn at 64 px: nearest-neighbour x 4
    result = runner.invoke(main, ["show", str(named_dla), "--index", "1", "--index", "3", "--cell", str(cell),
                                  "-o", str(out)])
    assert result.exit_code == 0, result.output
    pixels = png(out)
    width, height, grid_x, panel = dense_geometry(n, cell, top, count=2)
    assert pixels.shape == (height, width, 3)
    with open_dla(named_dla) as f:
        images, boxes = f.images(), f.boxes
    for p, index in enumerate((1, 3)):
        for j in range(n * n):
            r, c = divmod(j, n)
            x = grid_x + c * (cell + S.PAD)
            y = S.MARGIN + S.TITLE_LINE + p * panel + 2 * S.TITLE_LINE + r * (cell + top * S.LINE + S.PAD)
            drawn = pixels[y:y + cell, x:x + cell].astype(int)
            expected = nearest_up(student_view(images[index], boxes[j], (16, 16)), cell // 16).astype(int)
            # tolerance: 1 level of 255 (the same float kernel; only a .5 rounding tie could differ)
            assert np.abs(drawn - expected).max() <= 1, (index, j)
            caption = pixels[y + cell + 1:y + cell + 1 + top * S.LINE, x:x + cell]
            assert (caption < 200).any(), f"caption of sub-image {j} of image {index} is blank"
    # the framed cells carry their frame colour just outside the cell; the others do not
    framed = dict(zip((j for j, _ in S.framed_subimages(n)), S.FRAME_COLOURS))
    assert sorted(framed) == [0, 2, 4, 6, 8]                   # corners and centre of a 3 x 3 grid
    for j in range(n * n):
        r, c = divmod(j, n)
        x = grid_x + c * (cell + S.PAD)
        y = S.MARGIN + S.TITLE_LINE + 2 * S.TITLE_LINE + r * (cell + top * S.LINE + S.PAD)
        border = tuple(int(v) for v in pixels[y + cell // 2, x - 1])
        assert (border == framed[j]) if j in framed else (border == S.BG), j


# Pillow (show) against the torch kernel (ladd_format.torch.subimages), measured on the cases below (and
# on 400 more random images and boxes when these tolerances were set):
# - float output, 0..255 scale: at most 0.0022 apart (float32 rounding of the kernel's source
#   coordinates; Pillow computes its weights in double). Exactly equal for N=5, R=0.625 at 32 and 128 px.
# - rounded to uint8: at most 1 level apart (only where a value sits on a .5 rounding tie), and on
#   average at most 0.0080 levels over an image's sub-images (0 for N=5, R=0.625 at 32 and 128 px).
FLOAT_TOLERANCE = 0.005           # measured worst 0.0022
UINT8_MAX_TOLERANCE = 1           # measured worst 1
UINT8_MEAN_TOLERANCE = 0.01       # measured worst 0.0080
KERNEL_CASES = [(32, 32, 5, 0.625), (128, 128, 5, 0.625), (16, 16, 3, 0.5), (48, 64, 4, 0.8), (28, 28, 5, 0.625),
                (17, 23, 6, 0.37)]


def kernel_vs_pillow(image: np.ndarray, boxes: np.ndarray) -> tuple[float, int, float]:
    """(max float difference, max uint8 difference, mean uint8 difference) between the torch kernel's
    sub-images of a ``(K, H, W)`` float32 image and show's Pillow ones."""
    torch = pytest.importorskip("torch")
    from ladd_format.torch.subimages import subimages
    kernel = subimages(torch.from_numpy(image)[None], boxes)[0].numpy()
    drawn = S.subimage_pixels(image, boxes)
    assert drawn.shape == kernel.shape and drawn.dtype == np.float32
    rounded = np.abs(S.to_uint8(drawn).astype(int) - S.to_uint8(kernel).astype(int))
    return float(np.abs(drawn - kernel).max()), int(rounded.max()), float(rounded.mean())


@pytest.mark.parametrize("h, w, n, ratio", KERNEL_CASES, ids=lambda v: str(v))
def test_pillow_subimages_match_the_torch_kernel_on_the_spec_boxes(h, w, n, ratio):
    rng = np.random.default_rng(h * 1000 + w)
    boxes = geometry.boxes(h, w, n, ratio)
    for k in (1, 3):
        image = rng.integers(0, 256, (k, h, w), dtype=np.uint8).astype(np.float32)
        far, worst, mean = kernel_vs_pillow(image, boxes)
        assert far <= FLOAT_TOLERANCE and worst <= UINT8_MAX_TOLERANCE and mean <= UINT8_MEAN_TOLERANCE, \
            (k, far, worst, mean)
        if (h, w, n, ratio) in ((32, 32, 5, 0.625), (128, 128, 5, 0.625)):
            assert far == 0.0                    # exact: 20/32 and 80/128 are exact binary fractions


def test_pillow_subimages_match_the_torch_kernel_on_random_boxes():
    """Any integer box inside any image (squashed, 1-pixel, whole-image), uint8 and float pixels."""
    rng = np.random.default_rng(2026)
    for _ in range(12):
        h, w = (int(v) for v in rng.integers(2, 97, 2))
        bh, bw = rng.integers(1, h + 1, 16), rng.integers(1, w + 1, 16)
        boxes = np.stack([rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1), bh, bw], axis=1).astype(np.int32)
        boxes[0] = (0, 0, h, w)                  # R = 1: the image itself
        boxes[1] = (h - 1, w - 1, 1, 1)          # one pixel, enlarged to the whole image
        for image in (rng.integers(0, 256, (3, h, w), dtype=np.uint8).astype(np.float32),
                      (rng.random((1, h, w)) * 255).astype(np.float32)):
            far, worst, mean = kernel_vs_pillow(image, boxes)
            assert far <= FLOAT_TOLERANCE and worst <= UINT8_MAX_TOLERANCE and mean <= UINT8_MEAN_TOLERANCE, \
                ((h, w), far, worst, mean)
        assert np.array_equal(S.subimage_pixels(image, boxes)[0], image)
        assert np.all(S.subimage_pixels(image, boxes)[1] == image[:, -1, -1, None, None])


def test_show_never_imports_torch():
    """Not at module level, not inside a function: the sub-images are drawn with Pillow."""
    import ast
    tree = ast.parse(open(S.__file__).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [("." * node.level) + (node.module or "")]
        else:
            continue
        assert not any({"torch", "torchvision"} & set(name.lstrip(".").split(".")) for name in names), names
        assert "require" not in [alias.name for alias in node.names], names


def test_stored_values_become_0_to_255_without_torch():
    values = np.random.default_rng(3).normal(size=(2, 3, 4, 5)).astype(np.float32)
    mean, std = np.array([0.4, 0.5, 0.6]), np.array([0.2, 0.25, 0.3])
    x = S.Pixels("normalized", mean, std, 3).to_255(values)
    assert x.dtype == np.float32
    expected = (values.astype(np.float64) * std.reshape(1, 3, 1, 1) + mean.reshape(1, 3, 1, 1)) * 255.0
    assert np.allclose(x, expected, atol=1e-3)
    z = S.Pixels("zca", None, None, 3).to_255(values)
    assert np.allclose(z.min(axis=(1, 2, 3)), 0) and np.allclose(z.max(axis=(1, 2, 3)), 255)
    assert np.array_equal(S.to_uint8(np.array([-3.0, 0.5, 1.49, 254.5, 300.0])), [0, 1, 1, 255, 255])


def test_captions_are_red_exactly_where_the_top_dense_label_is_not_the_hard_label(named_dla, tmp_path, runner):
    out = tmp_path / "show.png"
    cell, n, top = 64, 3, 2
    assert runner.invoke(main, ["show", str(named_dla), "--cell", str(cell), "-o", str(out)]).exit_code == 0
    pixels = png(out).astype(int)
    _, _, grid_x, _ = dense_geometry(n, cell, top, count=1)
    with open_dla(named_dla) as f:
        label, dense = int(f.labels(0, 1)[0]), f.dense(0, 1)[0]
    reds = []
    for j in range(n * n):
        r, c = divmod(j, n)
        x = grid_x + c * (cell + S.PAD)
        y = S.MARGIN + S.TITLE_LINE + 2 * S.TITLE_LINE + r * (cell + top * S.LINE + S.PAD) + cell + 1
        line = pixels[y:y + S.LINE, x:x + cell]
        reddish = (line[..., 0] > 150) & (line[..., 1] < 120) & (line[..., 2] < 120)
        reds.append(bool(reddish.any()))
    expected = [int(dense[j].argmax()) != label for j in range(n * n)]
    assert reds == expected and any(expected) and not all(expected)


def test_caption_text_cannot_be_misread():
    font = S.load_font(11)
    assert S.label_text(font, 1, 0.41, NAMES, 500) == "1: dog (41%)"
    assert S.label_text(font, 1, 0.41, None, 500) == "class 1: 41%"
    assert S.label_text(font, 2, 0.004, NAMES, 500) == "2: bird (0.4%)"
    assert S.label_text(font, 1, None, NAMES, 500) == "1: dog"
    squeezed = S.label_text(font, 1, 0.41, ["x", "a rather long class name"], 80)
    assert squeezed.startswith("1: a") and squeezed.endswith("... (41%)") and S._length(font, squeezed) <= 80
    assert S.shown_names(["0", "1", "2"]) is None and S.shown_names(NAMES) == NAMES


def test_images_larger_than_the_cell_are_box_filtered(tmp_path, runner):
    path = write_dla(tmp_path / "big.dla.h5", m=2, c=2, side=40, n=1, ratio=0.5)
    out = tmp_path / "show.png"
    cell = 20                                          # 40 px sub-images drawn at 20 px: each pixel a 2x2 mean
    assert runner.invoke(main, ["show", str(path), "--cell", str(cell), "--top", "1", "-o", str(out)]).exit_code == 0
    pixels = png(out).astype(float)
    width, height, grid_x, _ = dense_geometry(1, cell, 1, count=1)
    assert pixels.shape == (height, width, 3)
    with open_dla(path) as f:
        sub = student_view(f.images(0, 1)[0], f.boxes[0], (40, 40)).astype(float)
    y = S.MARGIN + S.TITLE_LINE + 2 * S.TITLE_LINE
    drawn = pixels[y:y + cell, grid_x:grid_x + cell].transpose(2, 0, 1)
    means = sub.reshape(3, 20, 2, 20, 2).mean(axis=(2, 4))
    assert np.abs(drawn - means).max() <= 1.0          # Pillow's box filter rounds the mean: within 1 level


def test_plain_set_gives_images_per_class(tmp_path, runner):
    path = write_dla(tmp_path / "plain.dla.h5", m=9, c=3, side=8, codec=None, class_names=NAMES)
    out = tmp_path / "plain.png"
    result = runner.invoke(main, ["show", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "per-class" in result.output
    pixels = png(out)
    cell, k = S.CELL, 3                                  # 3 images per class < the default 8: 3 columns
    row = cell + S.LINE + S.PAD
    width = max(S.MIN_WIDTH, 2 * S.MARGIN + S.LABEL_W + k * cell + (k - 1) * S.PAD)
    height = S.MARGIN + S.TITLE_LINE + 3 * row + S.CLASS_LEGEND_LINES * S.LINE + S.MARGIN
    assert pixels.shape == (height, width, 3)
    with open_dla(path) as f:
        images, labels = f.images(), f.labels()
    for r in range(3):
        y = S.MARGIN + S.TITLE_LINE + r * row
        assert (pixels[y:y + S.TITLE_LINE, S.MARGIN:S.MARGIN + S.LABEL_W - 8] < 200).any()   # the row label
        for col, i in enumerate(np.flatnonzero(labels == r)):
            x = S.MARGIN + S.LABEL_W + col * (cell + S.PAD)
            assert np.array_equal(pixels[y:y + cell, x:x + cell], nearest_up(images[i], cell // 8)), (r, i)
    # --per-class on a D_LA draws the same kind of grid, K columns
    dla = write_dla(tmp_path / "d.dla.h5", m=9, c=3, side=8)
    result = runner.invoke(main, ["show", str(dla), "--per-class", "2", "-o", str(tmp_path / "d.png")])
    assert result.exit_code == 0, result.output
    assert png(tmp_path / "d.png").shape[1] == max(S.MIN_WIDTH, 2 * S.MARGIN + S.LABEL_W + 2 * cell + S.PAD)


@pytest.mark.parametrize("args, message", [
    (["--index", "4"], "--index 4 is out of range: the file holds 4 image(s), indices 0..3"),
    (["--index", "-1"], "--index -1 is out of range"),
    (["--index", "0"] * 17, "a picture shows at most 16 images"),
    (["--cell", "8"], "--cell must lie in 16..512, got 8"),
    (["--top", "9"], "--top must lie in 1..5, got 9"),
    (["--per-class", "0"], "--per-class must lie in 1..32, got 0"),
    (["--per-class", "2", "--index", "1"], "not both"),
])
def test_bad_options_fail_in_one_line_and_write_nothing(named_dla, tmp_path, runner, args, message):
    out = tmp_path / "out.png"
    result = runner.invoke(main, ["show", str(named_dla), "-o", str(out), *args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ladd: error: ") and message in lines[0], result.output
    assert not out.exists() and partials(tmp_path) == []


def test_bad_files_fail_in_one_line_and_write_nothing(tmp_path, runner):
    text = tmp_path / "notes.txt"
    text.write_text("not HDF5\n")
    damaged = write_dla(tmp_path / "damaged.dla.h5", m=4, c=3, side=16, n=3)
    with h5py.File(damaged, "r") as f:                                    # image 2's chunk on disk
        offset = f["images"].id.get_chunk_info(2).byte_offset
    data = bytearray(damaged.read_bytes())
    data[offset:offset + 16] = bytes(255 - v for v in data[offset:offset + 16])
    damaged.write_bytes(bytes(data))
    plain = write_dla(tmp_path / "plain.dla.h5", m=4, c=3, side=16, codec=None)
    huge = write_dla(tmp_path / "huge.dla.h5", m=1, c=2, side=16, n=40)   # 40 x 40 sub-images at 512 px
    out = tmp_path / "out.png"
    for args, message in [([str(text)], "notes.txt"), ([str(damaged), "--index", "0", "--index", "1",
                                                        "--index", "2", "--index", "3"], "damaged.dla.h5"),
                          ([str(plain), "--index", "0"], "use --per-class"),
                          ([str(huge), "--cell", "512"], "the picture would be"),
                          ([str(tmp_path / "missing.dla.h5")], "no such file")]:
        result = runner.invoke(main, ["show", *args, "-o", str(out)])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, (args, result.output)
        assert lines[0].startswith("ladd: error: ") and message in lines[0] and "Traceback" not in result.output
        assert not out.exists() and partials(tmp_path) == []


def test_an_existing_picture_is_kept_without_force(named_dla, tmp_path, runner):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    result = runner.invoke(main, ["show", str(named_dla), "-o", str(out)])
    assert result.exit_code == 1 and "--force" in result.output and out.read_bytes() == b"keep me"
    assert runner.invoke(main, ["show", str(named_dla), "-o", str(out), "--force"]).exit_code == 0
    assert png(out).shape[2] == 3


def test_the_demo_report_panel_is_the_show_picture(named_dla):
    from ladd_format.viz.demo_figures import draw_subimage_panel
    with open_dla(named_dla) as f:
        expected = S.draw_dense(f, [2], cell=64)
    panel = draw_subimage_panel(named_dla, index=2, cell=64)
    assert panel.size == expected.size and np.array_equal(np.asarray(panel), np.asarray(expected))
