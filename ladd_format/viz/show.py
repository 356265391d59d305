"""``ladd show``: a picture of what a D_LA file holds (Pillow only; no plotting library).

Three kinds of picture:

- **sub-images** (a file with dense labels): for each chosen image, a title with its index, hard
  label and global soft label (when the file has one), the whole image with coloured frames on the
  boxes of its corner and centre sub-images, and the N x N grid of its sub-images as the student
  sees them (spec section 5), drawn with Pillow (no torch): each of the file's boxes (``f.boxes``,
  integer [top, left, height, width]) is cropped and enlarged to the image's own H x W by Pillow's
  bilinear resize on float (mode ``F``) pixels, then rounded half up to uint8 as ``ladd export
  --subimages`` does. That is the function of the training kernel (:func:`ladd_format.torch.subimages`:
  crop, then bilinear with ``align_corners=False`` and the crop's edge pixel repeated; its antialias
  acts only where an axis shrinks, and R <= 1 never shrinks one), so the drawn sub-images equal the
  kernel's within the tolerance tests/test_show.py holds them to (measured: at most 1 level of 255,
  only on a .5 rounding tie, and under 0.01 of a level on average; identical for N=5, R=0.625 at
  32 and 128 px). Each cell is
  captioned with the sub-image's top dense labels, one per line, as ``CLASS: NAME PP%`` (``class
  CLASS: PP%`` when the file has no class names); a red caption marks a sub-image whose top dense
  label is not the image's hard label. A cell whose sub-image is framed in the image on the left
  has a frame of the same colour. A legend at the bottom says all this in the picture itself.
- **images per class** (a plain distilled set D, or ``--per-class``): one row per class (the class
  index and name on the left), the first K images of the class in file order, each captioned with
  its index in the file (what ``--index`` takes).

- **a batch of a relabel stream** (``--epoch E [--batch B]``, spec 4.7): the first records of the batch,
  each the crop the teacher saw, rebuilt as spec 5.1 says by Pillow (:func:`stream_crops`: box, resize
  to ``crop_size``, flip, mix), captioned with its image index and hard label, its flip and mix
  partner, and its top soft labels (decoded as stored, at the stream's temperature); a red caption
  marks a record whose top soft label is not its image's hard label.

Every image (and sub-image) is drawn into a square cell of ``cell`` pixels: scaled, keeping its
aspect ratio, so that its longer side is ``cell``, and centred. Scaling up uses nearest-neighbour
(every stored pixel becomes a visible block); scaling down uses Pillow's box filter (the mean of
the pixels each output pixel covers).

Layout, in pixels (the tests recompute it from these constants)::

    sub-images:  width  = max(MIN_WIDTH, 2*MARGIN + BIG + GAP + N*cell + (N-1)*PAD), BIG = 3*cell
                 height = MARGIN + TITLE_LINE + n_images * panel + DENSE_LEGEND_LINES*LINE + MARGIN
                 panel  = 2*TITLE_LINE + max(BIG, N*row - PAD) + GAP,  row = cell + top*LINE + PAD
                 cell (r, c) of image p: x = MARGIN + BIG + GAP + c*(cell + PAD),
                                         y = MARGIN + TITLE_LINE + p*panel + 2*TITLE_LINE + r*row
    per class:   width  = max(MIN_WIDTH, 2*MARGIN + LABEL_W + K*cell + (K-1)*PAD), K = min(per_class,
                          the largest number of images of a class shown), at least 1
                 height = MARGIN + TITLE_LINE + rows*(cell + LINE + PAD) + CLASS_LEGEND_LINES*LINE + MARGIN
                 cell k of row r: x = MARGIN + LABEL_W + k*(cell + PAD),
                                  y = MARGIN + TITLE_LINE + r*(cell + LINE + PAD)
    stream:      n = min(records of the batch, SHOWN_STREAM_RECORDS), columns = min(n, STREAM_COLUMNS),
                 rows = ceil(n / columns), row = cell + (1 + top)*LINE + PAD
                 width  = max(MIN_WIDTH, 2*MARGIN + columns*cell + (columns-1)*PAD)
                 height = MARGIN + 2*TITLE_LINE + rows*row + STREAM_LEGEND_LINES*LINE + MARGIN
                 cell i: x = MARGIN + (i % columns)*(cell + PAD), y = MARGIN + 2*TITLE_LINE + (i // columns)*row

Pixels other than ``pixel255``: ``pixel01`` is scaled by 255, ``normalized`` is denormalised with
``/normalization`` first (both then rounded as spec 4.1 says), and ``zca`` images, which have no
pixel form, are each stretched from their minimum to their maximum (the legend says so).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import atomic
from ..errors import InputError, NoDenseLabelsError
from ..pixels import denormalize, round_half_up
from ..reader import DLAFile, open_dla
from ..spec import RESIZE_PIL

CELL = 96                      #: default cell side, pixels
MIN_CELL, MAX_CELL = 16, 512
TOP, MAX_TOP = 2, 5            #: dense labels captioned per sub-image
MAX_INDICES = 16               #: images one sub-image picture shows at most
PER_CLASS, MAX_PER_CLASS = 8, 32
MAX_CLASS_ROWS = 64            #: classes a per-class picture shows at most (the first ones)
MAX_SIDE = 20_000              #: the largest picture side, pixels
MAX_PIXELS = 100_000_000       #: and the largest picture area

MARGIN, PAD, GAP = 10, 6, 16
LINE, TITLE_LINE = 14, 18      #: caption and legend line height, title line height
LABEL_W = 140                  #: width of the class-name column of the per-class picture
MIN_WIDTH = 640                #: wide enough for the legend lines
FRAME = 2                      #: frame width; frames are drawn outside a cell, inside PAD
DENSE_LEGEND_LINES = 6
CLASS_LEGEND_LINES = 3
STREAM_LEGEND_LINES = 4
STREAM_COLUMNS = 8             #: records per row of the stream picture
SHOWN_STREAM_RECORDS = 64        #: records of a batch the stream picture shows at most (the first ones)

BG, INK, MUTED = (255, 255, 255), (20, 20, 20), (110, 110, 110)
MISMATCH = (214, 39, 40)       #: caption colour: top dense label != hard label
FRAME_COLOURS = ((31, 119, 180), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75))


def load_font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                      # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _length(font, text: str) -> float:
    try:
        return font.getlength(text)
    except AttributeError:                 # very old Pillow: a rough width
        return 6.0 * len(text)


def fit(font, text: str, width: float) -> str:
    """``text`` cut (with "...") to at most ``width`` pixels in ``font``."""
    if _length(font, text) <= width:
        return text
    while text and _length(font, text + "...") > width:
        text = text[:-1]
    return text + "..." if text else ""


def percent(p: float) -> str:
    """A probability as a percentage that cannot be read as part of a class index: ``41%``."""
    p = 100.0 * float(p)
    return f"{p:.0f}%" if p >= 1 or p == 0 else f"{p:.1f}%"


def label_text(font, c: int, p: float | None, names: list[str] | None, width: float) -> str:
    """``1: one (41%)`` (``class 1: 41%`` without names; ``1: one`` / ``class 1`` when ``p`` is None),
    shortening the name to fit ``width``."""
    tail = "" if p is None else f" ({percent(p)})"
    name = names[c] if names and 0 <= c < len(names) else None
    if name is None:
        tail = "" if p is None else " " + percent(p)
        text = f"class {c}" + ("" if p is None else ":" + tail)
        return text if _length(font, text) <= width else fit(font, f"{c}:{tail}", width)
    full = f"{c}: {name}{tail}"
    if _length(font, full) <= width:
        return full
    head, short = f"{c}: ", name
    while short and _length(font, f"{head}{short}...{tail}") > width:
        short = short[:-1]
    return f"{head}{short}...{tail}" if short else fit(font, f"{c}:{tail}", width)


def shown_names(names: list[str] | None) -> list[str] | None:
    """The class names worth printing: None when there are none or each name is just its index
    (``"0"``, ``"1"``, ...: ``7: 7 (39%)`` says less than ``class 7: 39%``)."""
    if not names or all(str(name).strip() == str(i) for i, name in enumerate(names)):
        return None
    return names


# -- pixels ---------------------------------------------------------------------------------------
@dataclass
class Pixels:
    """How a file's stored values become 0..255 floats for display."""

    space: str
    mean: np.ndarray | None
    std: np.ndarray | None
    channels: int

    @classmethod
    def of(cls, f: DLAFile) -> Pixels:
        space = f.space
        mean = std = None
        if space == "normalized":
            mean, std = f.mean, f.std
        return cls(space, mean, std, f.image_shape[0])

    def to_255(self, stored: np.ndarray) -> np.ndarray:
        """``(B, K, H, W)`` stored values -> float32 on the 0..255 scale (zca: stretched)."""
        x = np.asarray(stored).astype(np.float64)
        if self.space == "pixel255" or stored.dtype == np.uint8:
            return x.astype(np.float32)
        if self.space == "normalized":
            shape = (1, -1, 1, 1)
            x = denormalize(x, np.asarray(self.mean, np.float64).reshape(shape),
                            np.asarray(self.std, np.float64).reshape(shape))
        elif self.space == "zca":
            low = x.min(axis=(1, 2, 3), keepdims=True)
            span = np.maximum(x.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
            x = (x - low) / span
        return (x * 255.0).astype(np.float32)

    def note(self) -> str:
        what = {"pixel255": "uint8 pixels as stored",
                "pixel01": "pixel01 floats x 255, rounded half up",
                "normalized": "normalized floats denormalised with /normalization, x 255, rounded",
                "zca": "zca floats (no pixel form): each image stretched min..max to 0..255"}
        text = "pixels: " + what.get(self.space, self.space)
        if self.channels == 2 or self.channels > 3:
            text += f"; {'channel 0' if self.channels == 2 else 'channels 0-2'} of {self.channels} shown"
        return text


def to_uint8(x: np.ndarray) -> np.ndarray:
    """0..255 floats -> uint8, rounded half up and clipped (spec 4.1)."""
    return np.clip(round_half_up(np.asarray(x)), 0, 255).astype(np.uint8)


def subimage_pixels(image: np.ndarray, boxes: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """The sub-images of one ``(K, H, W)`` image of 0..255 floats, ``(P, K, height, width)`` float32, by
    Pillow: each box ``[top, left, h, w]`` cropped, then resized to ``size`` (default ``(H, W)``) with
    Pillow's bilinear filter, channel by channel on float (mode ``F``) pixels.

    For the enlargements of spec 5 (R <= 1) this is :func:`ladd_format.torch.subimages`: Pillow's
    bilinear filter on a crop is ``align_corners=False`` bilinear with the crop's edge pixel repeated,
    and the kernel's antialias acts only where an axis shrinks. Cropping first matters: with
    ``resize(box=...)`` Pillow reads the pixels just outside the box at its edges (up to 80 levels
    off the kernel on random images). Float pixels keep Pillow from rounding to uint8 between its
    horizontal and vertical passes (uint8 RGB: up to 1 level off, 0.2 on average)."""
    k, height, width = image.shape
    out_h, out_w = (height, width) if size is None else (int(size[0]), int(size[1]))
    box_array = np.asarray(boxes)
    out = np.empty((len(box_array), k, out_h, out_w), np.float32)
    for j, (t, left, h, w) in enumerate(box_array.tolist()):
        for c in range(k):
            crop = np.ascontiguousarray(image[c, t:t + h, left:left + w], dtype=np.float32)   # mode "F"
            out[j, c] = np.asarray(Image.fromarray(crop).resize((out_w, out_h), Image.BILINEAR))
    return out


def to_pil(chw: np.ndarray) -> Image.Image:
    """A ``(K, H, W)`` uint8 image as an RGB picture (K = 1: grey; K = 2: channel 0; K > 3: 0-2)."""
    k = chw.shape[0]
    if k >= 3:
        return Image.fromarray(np.ascontiguousarray(chw[:3].transpose(1, 2, 0)), "RGB")
    return Image.fromarray(np.ascontiguousarray(chw[0]), "L").convert("RGB")


def cell_size(h: int, w: int, cell: int) -> tuple[int, int]:
    """(width, height) of an ``h`` x ``w`` image scaled so that its longer side is ``cell``."""
    scale = cell / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def resample_for(h: int, w: int, cell: int) -> int:
    """Nearest-neighbour when the image grows (or keeps its size), box filter when it shrinks."""
    return Image.NEAREST if cell >= max(h, w) else Image.BOX


def paste_cell(canvas: Image.Image, chw: np.ndarray, x: int, y: int, cell: int) -> None:
    """Draw a ``(K, H, W)`` uint8 image scaled into the ``cell`` x ``cell`` square at (x, y), centred."""
    h, w = chw.shape[1:]
    size = cell_size(h, w, cell)
    img = to_pil(chw)
    if img.size != size:
        img = img.resize(size, resample_for(h, w, cell))
    canvas.paste(img, (x + (cell - size[0]) // 2, y + (cell - size[1]) // 2))


# -- checks ---------------------------------------------------------------------------------------
def _bounded(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InputError(f"{what} must lie in {low}..{high}, got {value}")


def check_size(width: int, height: int) -> None:
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise InputError(f"the picture would be {width:,} x {height:,} pixels, over the limit ({MAX_SIDE:,} a "
                         f"side, {MAX_PIXELS:,} in all): show fewer images or pass a smaller --cell")


# -- sub-images -----------------------------------------------------------------------------------
def framed_subimages(n: int) -> list[tuple[int, str]]:
    """(sub-image j, where) of the framed sub-images: the corners and, for odd N, the centre."""
    if n == 1:
        return [(0, "the only sub-image")]
    picks = [(0, "top-left"), (n - 1, "top-right")]
    if n % 2 == 1:
        picks.append(((n // 2) * n + n // 2, "centre"))
    picks += [(n * (n - 1), "bottom-left"), (n * n - 1, "bottom-right")]
    return picks


@dataclass
class DenseGeometry:
    n: int
    cell: int
    top: int
    count: int                           # images shown

    @property
    def big(self) -> int:
        return 3 * self.cell

    @property
    def row(self) -> int:
        return self.cell + self.top * LINE + PAD

    @property
    def body(self) -> int:
        return max(self.big, self.n * self.row - PAD)

    @property
    def panel(self) -> int:
        return 2 * TITLE_LINE + self.body + GAP

    @property
    def grid_x(self) -> int:
        return MARGIN + self.big + GAP

    @property
    def width(self) -> int:
        return max(MIN_WIDTH, 2 * MARGIN + self.big + GAP + self.n * self.cell + (self.n - 1) * PAD)

    @property
    def height(self) -> int:
        return MARGIN + TITLE_LINE + self.count * self.panel + DENSE_LEGEND_LINES * LINE + MARGIN

    def panel_y(self, p: int) -> int:
        return MARGIN + TITLE_LINE + p * self.panel

    def cell_xy(self, p: int, j: int) -> tuple[int, int]:
        r, c = divmod(j, self.n)
        return self.grid_x + c * (self.cell + PAD), self.panel_y(p) + 2 * TITLE_LINE + r * self.row


@dataclass
class ImageView:
    """What one panel shows: an image, its sub-images and its labels."""

    index: int
    image: np.ndarray                    # (K, H, W) uint8
    subs: np.ndarray                     # (P, K, H, W) uint8
    label: int
    dense: np.ndarray                    # (P, C) probabilities
    soft: np.ndarray | None = None       # (C,) probabilities
    soft_kind: str | None = None


def read_view(f: DLAFile, index: int, pixels: Pixels, boxes: np.ndarray) -> ImageView:
    x = pixels.to_255(f.images(index, index + 1))
    subs = to_uint8(subimage_pixels(x[0], boxes))
    soft = None
    if f.has_soft_labels:
        soft = f.soft_labels(index, index + 1)[0].astype(np.float64)
        if f.soft_kind == "logits":
            e = np.exp(soft - soft.max())
            soft = e / e.sum()
    return ImageView(index=index, image=to_uint8(x)[0], subs=subs, label=int(f.labels(index, index + 1)[0]),
                     dense=f.dense(index, index + 1)[0], soft=soft, soft_kind=f.soft_kind)


def check_indices(f: DLAFile, indices) -> list[int]:
    indices = [0] if not indices else [int(i) for i in indices]
    if len(indices) > MAX_INDICES:
        raise InputError(f"--index is given {len(indices)} times; a picture shows at most {MAX_INDICES} images",
                         f.path)
    for i in indices:
        if not 0 <= i < f.num_images:
            raise InputError(f"--index {i} is out of range: the file holds {f.num_images} image(s), "
                             f"indices 0..{f.num_images - 1}", f.path)
    return indices


def _swatch(draw: ImageDraw.ImageDraw, x: float, y: int, colour, font, text: str, frame: bool = True) -> float:
    if frame:
        draw.rectangle([x, y + 2, x + 10, y + 12], outline=colour, width=FRAME)
    else:
        draw.rectangle([x, y + 2, x + 10, y + 12], fill=colour)
    draw.text((x + 14, y), text, fill=INK, font=font)
    return x + 14 + _length(font, text) + 12


def draw_dense(f: DLAFile, indices=None, cell: int = CELL, top: int = TOP, title: str | None = None) -> Image.Image:
    """The sub-image picture of images ``indices`` (default [0]) of an open D_LA ``f``."""
    if not f.has_dense:
        raise NoDenseLabelsError("no dense labels (a plain distilled set D): the sub-image picture needs them; "
                                 "use --per-class for a grid of the images", f.path, "/dense")
    _bounded("--cell", cell, MIN_CELL, MAX_CELL)
    _bounded("--top", top, 1, MAX_TOP)
    indices = check_indices(f, indices)
    n, boxes = f.n, f.boxes
    top = min(top, f.num_classes)
    geo = DenseGeometry(n=n, cell=cell, top=top, count=len(indices))
    check_size(geo.width, geo.height)
    pixels = Pixels.of(f)
    names = shown_names(f.class_names)
    _, h, w = f.image_shape

    font, small = load_font(13), load_font(11)
    canvas = Image.new("RGB", (geo.width, geo.height), BG)
    draw = ImageDraw.Draw(canvas)
    header = title if title is not None else (
        f"{f.path.name}: {f.num_images} images, {f.num_classes} classes; dense labels N={n}, R={f.ratio:g}, "
        f"codec {f.codec.text()}")
    draw.text((MARGIN, MARGIN), fit(font, header, geo.width - 2 * MARGIN), fill=INK, font=font)
    framed = framed_subimages(n)
    text_w = geo.width - 2 * MARGIN
    for p, index in enumerate(indices):
        view = read_view(f, index, pixels, boxes)
        y0 = geo.panel_y(p)
        label = label_text(font, view.label, None, names, text_w)
        draw.text((MARGIN, y0), fit(font, f"image {index}  -  hard label {label}", text_w), fill=INK, font=font)
        if view.soft is None:
            soft_line = "global soft label: none in this file"
        else:
            order = np.argsort(-view.soft, kind="stable")[:top]
            how = "softmax of the stored logits" if view.soft_kind == "logits" else "stored probabilities"
            soft_line = (f"global soft label ({how}): "
                         + ",  ".join(label_text(font, int(c), view.soft[c], names, text_w) for c in order))
        draw.text((MARGIN, y0 + TITLE_LINE), fit(font, soft_line, text_w), fill=MUTED, font=font)
        body_y = y0 + 2 * TITLE_LINE
        # the whole image and the frames of the chosen boxes
        paste_cell(canvas, view.image, MARGIN, body_y, geo.big)
        bw, bh = cell_size(h, w, geo.big)
        ox, oy = MARGIN + (geo.big - bw) // 2, body_y + (geo.big - bh) // 2
        sx, sy = bw / w, bh / h
        for (j, _), colour in zip(framed, FRAME_COLOURS):
            t, l_, hh, ww = (int(v) for v in boxes[j])
            draw.rectangle([ox + l_ * sx, oy + t * sy, ox + (l_ + ww) * sx - 1, oy + (t + hh) * sy - 1],
                           outline=colour, width=FRAME)
        # the N x N sub-images, captioned
        frame_of = {j: colour for (j, _), colour in zip(framed, FRAME_COLOURS)}
        for j in range(n * n):
            x, y = geo.cell_xy(p, j)
            paste_cell(canvas, view.subs[j], x, y, cell)
            if j in frame_of:
                draw.rectangle([x - FRAME, y - FRAME, x + cell + FRAME - 1, y + cell + FRAME - 1],
                               outline=frame_of[j], width=FRAME)
            order = np.argsort(-view.dense[j], kind="stable")[:top]
            colour = INK if int(order[0]) == view.label else MISMATCH
            for line, c in enumerate(order):
                text = label_text(small, int(c), view.dense[j, c], names, cell + PAD - 2)
                draw.text((x, y + cell + 1 + line * LINE), text, fill=colour if line == 0 else MUTED, font=small)

    # legend
    y = geo.height - MARGIN - DENSE_LEGEND_LINES * LINE
    x = float(MARGIN)
    draw.text((x, y), "frames:", fill=INK, font=small)
    x += _length(small, "frames:") + 8
    for (_, where), colour in zip(framed, FRAME_COLOURS):
        x = _swatch(draw, x, y, colour, small, where)
    draw.text((MARGIN, y + LINE), fit(small, "a frame marks a sub-image's box in the whole image (left) and the "
                                      "same sub-image in the grid (right)", text_w), fill=INK, font=small)
    _swatch(draw, MARGIN, y + 2 * LINE, MISMATCH, small,
            "red caption: the sub-image's top dense label is not the image's hard label", frame=False)
    form = "as 'class: name (probability)'" if names else "as 'class C: probability'"
    draw.text((MARGIN, y + 3 * LINE), fit(small, f"captions: the top {top} dense label(s) of each sub-image, {form}",
                                          text_w), fill=INK, font=small)
    how = "nearest" if resample_for(h, w, cell) == Image.NEAREST else "box filter"
    draw.text((MARGIN, y + 4 * LINE), fit(small, f"sub-images as the student sees them (spec 5): {boxes[0][2]}x"
                                          f"{boxes[0][3]} crops resized to {h}x{w} (bilinear, antialias); "
                                          f"drawn at {cell} px, {how}", text_w), fill=INK, font=small)
    draw.text((MARGIN, y + 5 * LINE), fit(small, pixels.note(), text_w), fill=INK, font=small)
    return canvas


# -- images per class -----------------------------------------------------------------------------
def draw_per_class(f: DLAFile, per_class: int = PER_CLASS, cell: int = CELL) -> tuple[Image.Image, list[str]]:
    """Rows of the first ``per_class`` images of each class; returns the picture and notes."""
    _bounded("--per-class", per_class, 1, MAX_PER_CLASS)
    _bounded("--cell", cell, MIN_CELL, MAX_CELL)
    notes = []
    c_all = f.num_classes
    rows = min(c_all, MAX_CLASS_ROWS)
    if rows < c_all:
        notes.append(f"the file has {c_all} classes; the picture shows the first {rows}")
    labels = f.labels()
    counts = np.bincount(labels, minlength=c_all)
    columns = max(1, min(per_class, int(counts[:rows].max()) if rows else 0))
    width = max(MIN_WIDTH, 2 * MARGIN + LABEL_W + columns * cell + (columns - 1) * PAD)
    row_h = cell + LINE + PAD
    height = MARGIN + TITLE_LINE + rows * row_h + CLASS_LEGEND_LINES * LINE + MARGIN
    check_size(width, height)
    pixels = Pixels.of(f)
    names = shown_names(f.class_names)
    font, small = load_font(13), load_font(11)
    canvas = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(canvas)
    kind = "D_LA" if f.has_dense else "plain distilled set D"
    header = (f"{f.path.name}: {f.num_images} images, {c_all} classes ({kind}); the first {per_class} images "
              f"of each class" + (f", classes 0..{rows - 1}" if rows < c_all else ""))
    text_w = width - 2 * MARGIN
    draw.text((MARGIN, MARGIN), fit(font, header, text_w), fill=INK, font=font)
    h, w = f.image_shape[1:]
    for r in range(rows):
        y = MARGIN + TITLE_LINE + r * row_h
        members = np.flatnonzero(labels == r)
        draw.text((MARGIN, y), label_text(font, r, None, names, LABEL_W - 8), fill=INK, font=font)
        draw.text((MARGIN, y + TITLE_LINE), f"{members.size} image(s)", fill=MUTED, font=small)
        for k, i in enumerate(members[:per_class].tolist()):
            x = MARGIN + LABEL_W + k * (cell + PAD)
            image = to_uint8(pixels.to_255(f.images(i, i + 1)))[0]
            paste_cell(canvas, image, x, y, cell)
            draw.text((x, y + cell + 1), fit(small, f"#{i}", cell + PAD - 2), fill=MUTED, font=small)
    y = height - MARGIN - CLASS_LEGEND_LINES * LINE
    draw.text((MARGIN, y), fit(small, "rows: class index: name (left), then the first images of the class in file "
                               "order; #i is the image's index (ladd show --index i)", text_w), fill=INK, font=small)
    how = "nearest-neighbour" if resample_for(h, w, cell) == Image.NEAREST else "box-filtered"
    draw.text((MARGIN, y + LINE), fit(small, f"images of {h}x{w} drawn at {cell} px ({how})", text_w),
              fill=INK, font=small)
    draw.text((MARGIN, y + 2 * LINE), fit(small, pixels.note(), text_w), fill=INK, font=small)
    return canvas, notes


# -- a batch of a relabel stream -------------------------------------------------------------------
@dataclass
class StreamGeometry:
    """The layout of the stream picture (module docstring): ``count`` records in rows of ``columns``."""

    count: int
    cell: int
    top: int

    @property
    def columns(self) -> int:
        return max(1, min(self.count, STREAM_COLUMNS))

    @property
    def rows(self) -> int:
        return -(-self.count // self.columns)

    @property
    def row(self) -> int:
        return self.cell + (1 + self.top) * LINE + PAD

    @property
    def width(self) -> int:
        return max(MIN_WIDTH, 2 * MARGIN + self.columns * self.cell + (self.columns - 1) * PAD)

    @property
    def height(self) -> int:
        return MARGIN + 2 * TITLE_LINE + self.rows * self.row + STREAM_LEGEND_LINES * LINE + MARGIN

    def cell_xy(self, i: int) -> tuple[int, int]:
        r, c = divmod(i, self.columns)
        return MARGIN + c * (self.cell + PAD), MARGIN + 2 * TITLE_LINE + r * self.row


def stream_crops(images: dict[int, np.ndarray], batch, positions: list[int], crop_size: tuple[int, int],
                 resize: str, mix: str) -> dict[int, np.ndarray]:
    """The inputs the teacher saw for the records at ``positions`` of ``batch`` (a
    :class:`~ladd_format.stream.StreamBatch`), rebuilt as spec 5.1 says, by Pillow: position -> ``(K,
    h_out, w_out)`` float32 on the 0..255 scale. ``images``: image index -> ``(K, H, W)`` 0..255 floats
    (every image of the records and of their mix partners).

    1. crop ``box`` and resize to ``crop_size``: ``pil-bilinear`` with Pillow's BILINEAR on the uint8
       channels (spec 5.1 exactly, before its division by 255); ``bilinear-antialias`` with Pillow's
       BILINEAR on float (mode ``F``) pixels, which antialiases where an axis shrinks as section 5's
       kernel does (:func:`subimage_pixels`; equal to the kernel within display rounding, not bit for bit);
    2. mirror along W where ``flip``; 3. mix inside the batch: ``cutmix`` pastes ``mix_box`` of the
       partner's flipped crop, ``mixup`` blends ``λ c_r + (1 - λ) c_p``."""
    h_out, w_out = int(crop_size[0]), int(crop_size[1])
    needed = set(positions)
    if mix != "none" and batch.mix_partner is not None:
        needed |= {int(batch.mix_partner[r]) for r in positions}
    flipped: dict[int, np.ndarray] = {}
    for r in sorted(needed):
        src = images[int(batch.image[r])]
        t, left, h, w = (int(v) for v in batch.box[r])
        if resize == RESIZE_PIL:
            crop = np.stack([np.asarray(Image.fromarray(to_uint8(ch)[t:t + h, left:left + w], "L")
                                        .resize((w_out, h_out), Image.BILINEAR)) for ch in src]).astype(np.float32)
        else:
            crop = subimage_pixels(src, np.array([[t, left, h, w]]), (h_out, w_out))[0]
        flipped[r] = crop[:, :, ::-1].copy() if bool(batch.flip[r]) else crop
    out = {}
    for r in positions:
        c = flipped[r].copy()
        if mix == "cutmix" and batch.mix_box is not None:
            p = int(batch.mix_partner[r])
            t, left, h, w = (int(v) for v in batch.mix_box)
            c[:, t:t + h, left:left + w] = flipped[p][:, t:t + h, left:left + w]
        elif mix == "mixup" and batch.mix_lambda is not None:
            lam = float(batch.mix_lambda)
            c = lam * c + (1.0 - lam) * flipped[int(batch.mix_partner[r])]
        out[r] = c
    return out


def _stream_batch_number(s, epoch: int, batch: int, path) -> int:
    """The global batch number of batch ``batch`` of epoch ``epoch``, or a one-line error."""
    if not 0 <= epoch < s.epochs:
        raise InputError(f"--epoch {epoch} is out of range: the stream holds {s.epochs} epoch(s), "
                         f"0..{s.epochs - 1}", path)
    numbers = s.epoch_batches(epoch)
    if not 0 <= batch < len(numbers):
        raise InputError(f"--batch {batch} is out of range: epoch {epoch} holds {len(numbers)} batch(es), "
                         f"0..{len(numbers) - 1}", path)
    return int(numbers[batch])


def draw_stream(f: DLAFile, epoch: int, batch: int = 0, cell: int = CELL, top: int = TOP
                ) -> tuple[Image.Image, list[str]]:
    """The picture of batch ``batch`` (counted inside the epoch) of epoch ``epoch`` of ``f``'s relabel
    stream: the first :data:`SHOWN_STREAM_RECORDS` records' crops (:func:`stream_crops`), each captioned
    with its image, hard label, flip, mix partner and top soft labels. Returns the picture and notes."""
    _bounded("--cell", cell, MIN_CELL, MAX_CELL)
    _bounded("--top", top, 1, MAX_TOP)
    s = f.stream                                  # NoStreamError (one line) when the file has none
    spec = s.spec
    b = _stream_batch_number(s, epoch, batch, f.path)
    data = s.read_batch(b)                        # checked: the batch digests, the bounds, the codec
    n = len(data)
    shown = list(range(min(n, SHOWN_STREAM_RECORDS)))
    notes = [] if n <= len(shown) else [f"batch {batch} of epoch {epoch} holds {n} records; the picture shows "
                                        f"the first {len(shown)}"]
    top = min(top, f.num_classes)
    geo = StreamGeometry(count=len(shown), cell=cell, top=top)
    check_size(geo.width, geo.height)
    pixels = Pixels.of(f)
    needed = {int(data.image[r]) for r in shown}
    if spec.mix != "none" and data.mix_partner is not None:
        needed |= {int(data.image[int(data.mix_partner[r])]) for r in shown}
    images = {i: pixels.to_255(f.images(i, i + 1))[0] for i in sorted(needed)}
    crops = stream_crops(images, data, shown, spec.crop_size, spec.resize, spec.mix)
    stored = {name: np.asarray(v)[:len(shown)] for name, v in data.labels.items()}
    probs = spec.codec.decode(stored, f.num_classes, None, spec.temperature, tail=s.tail)   # 1.3: with the tail
    hard = f.labels()
    names = shown_names(f.class_names)
    h_out, w_out = spec.crop_size

    font, small = load_font(13), load_font(11)
    canvas = Image.new("RGB", (geo.width, geo.height), BG)
    draw = ImageDraw.Draw(canvas)
    text_w = geo.width - 2 * MARGIN
    mix_text = {"cutmix": f"cutmix box {[int(v) for v in data.mix_box]}" if data.mix_box is not None else "cutmix",
                "mixup": f"mixup lambda {float(data.mix_lambda):.3g}" if data.mix_lambda is not None else "mixup"}
    header = (f"{f.path.name}: relabel stream, epoch {epoch} of 0..{s.epochs - 1}, batch {batch} of "
              f"0..{len(s.epoch_batches(epoch)) - 1} (stored batch {b}), {n} records")
    draw.text((MARGIN, MARGIN), fit(font, header, text_w), fill=INK, font=font)
    second = (f"crops {h_out}x{w_out} ({spec.resize}), {mix_text.get(spec.mix, 'no mix')}; labels {spec.codec.label}, "
              f"T={spec.temperature:g}, teacher {spec.teacher.get('arch', 'unknown')}")
    draw.text((MARGIN, MARGIN + TITLE_LINE), fit(font, second, text_w), fill=MUTED, font=font)
    for i, r in enumerate(shown):
        x, y = geo.cell_xy(i)
        paste_cell(canvas, to_uint8(crops[r]), x, y, cell)
        image = int(data.image[r])
        label = int(hard[image])
        bits = [f"#{image} ({label})"] + (["flip"] if bool(data.flip[r]) else [])
        if spec.mix != "none" and data.mix_partner is not None:
            bits.append(f"<-{int(data.mix_partner[r])}")
        draw.text((x, y + cell + 1), fit(small, " ".join(bits), cell + PAD - 2), fill=MUTED, font=small)
        order = np.argsort(-probs[i], kind="stable")[:top]
        colour = INK if int(order[0]) == label else MISMATCH
        for line, c in enumerate(order):
            text = label_text(small, int(c), probs[i, c], names, cell + PAD - 2)
            draw.text((x, y + cell + 1 + (1 + line) * LINE), text, fill=colour if line == 0 else MUTED, font=small)

    y = geo.height - MARGIN - STREAM_LEGEND_LINES * LINE
    how = "nearest" if resample_for(h_out, w_out, cell) == Image.NEAREST else "box filter"
    draw.text((MARGIN, y), fit(small, f"each cell: a record's input to the teacher (spec 5.1: crop, resize to "
                               f"{h_out}x{w_out}, flip, mix), drawn at {cell} px, {how}",
                               text_w), fill=INK, font=small)
    draw.text((MARGIN, y + LINE), fit(small, "captions: #image (its hard label), 'flip' when mirrored, '<-p' its mix "
                                      f"partner's slot in the batch; then its top {top} soft label(s)", text_w),
              fill=INK, font=small)
    _swatch(draw, MARGIN, y + 2 * LINE, MISMATCH, small,
            "red caption: the record's top soft label is not its image's hard label", frame=False)
    draw.text((MARGIN, y + 3 * LINE), fit(small, pixels.note(), text_w), fill=INK, font=small)
    return canvas, notes


# -- the command ----------------------------------------------------------------------------------
@dataclass
class ShowResult:
    output: Path
    width: int
    height: int
    kind: str                                 # "sub-images", "per-class" or "stream"
    notes: list[str] = field(default_factory=list)


def show(path: str | os.PathLike, output: str | os.PathLike, indices=None, per_class: int | None = None,
         cell: int = CELL, top: int = TOP, overwrite: bool = False, epoch: int | None = None,
         batch: int | None = None) -> ShowResult:
    """Draw FILE (``path``) into the PNG ``output``, written atomically (nothing on failure).

    A D_LA with dense labels gives the sub-image picture of ``indices`` (default [0]); a plain
    distilled set D, or ``per_class`` given, gives the per-class grid; ``epoch`` given, the crops of
    batch ``batch`` (default 0, counted inside the epoch) of that epoch of the relabel stream. ``indices``
    together with ``per_class`` is refused, as is ``indices`` for a plain set, and ``epoch`` with either."""
    atomic.check_destination(output, overwrite)          # refuse early, before any drawing
    if indices and per_class is not None:
        raise InputError("give --index (the sub-images of chosen images) or --per-class (a grid of images "
                         "per class), not both")
    if epoch is not None and (indices or per_class is not None):
        raise InputError("--epoch draws a batch of the relabel stream; it does not combine with --index or --per-class")
    if batch is not None and epoch is None:
        raise InputError("--batch needs --epoch (the batch is counted inside its epoch)")
    with open_dla(atomic.require_regular_file(path)) as f:
        if epoch is not None:
            picture, notes = draw_stream(f, epoch, 0 if batch is None else batch, cell, top)
            kind = "stream"
        elif per_class is not None or (not f.has_dense and not indices):
            picture, notes = draw_per_class(f, PER_CLASS if per_class is None else per_class, cell)
            kind = "per-class"
        else:
            picture, notes, kind = draw_dense(f, indices, cell, top), [], "sub-images"
    with atomic.replace_file(output, overwrite=overwrite) as tmp:
        picture.save(tmp, format="PNG")
    return ShowResult(Path(output), picture.width, picture.height, kind, notes)
