"""Reading image files into uint8 arrays: the one ImageFolder reader of the package.

Used by the image converters (``folder``, ``sre2l``, ``rded``) and by the labeler's training
sources. Every file is read once: its bytes are hashed (SHA-256, for the provenance record) and
decoded from memory with Pillow, several files at a time on threads (Pillow releases the GIL while
decoding). Images become RGB ``(K=3, H, W)`` uint8; other modes (L, RGBA, P, CMYK, ...) are converted
and the conversion is reported.

Untrusted trees: an entry with an image suffix that is not a regular file (a FIFO, socket or device,
possibly behind a symbolic link) is refused by name before anything opens it (opening a FIFO
blocks); Pillow's decompression-bomb limit bounds each image. The converters stream (``stream``:
a first pass hashes each file and reads its header, then the images are decoded block by block as
the D_LA is written); the labeler's training sources decode the set whole, which must fit in this
machine's memory (checked from the first image's size before allocating).

Provenance: a folder of thousands of images is recorded as ONE ``inputs`` entry (the folder, its file
count, total size and one SHA-256 over the sorted ``(relative path, file sha256)`` list), not one
entry per file -- see :class:`ladd_format.provenance.FolderInput`.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..provenance import FolderInput
from ..rows import Rows

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
JPEG_SUFFIXES = (".jpg", ".jpeg")
THREADS = min(8, os.cpu_count() or 1)


def is_image(path: Path) -> bool:
    """True for a regular file with an image suffix; an image-named FIFO, socket or device raises
    :class:`InputError` (never opened); folders and other files are False."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False                     # a dangling link: nothing to read
    if stat.S_ISREG(mode):
        return True
    if stat.S_ISDIR(mode):
        return False
    raise InputError("has an image suffix but is not a regular file (a FIFO, socket or device); it was not opened",
                     path)


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes, or None when unknown."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def natural_key(name: str):
    """Sort key that orders embedded numbers by value (``id999`` before ``id1000``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def image_files(folder: Path, natural: bool = False) -> list[Path]:
    """The image files directly in ``folder`` (by suffix; other files and subfolders ignored), sorted
    by name (or by :func:`natural_key`)."""
    files = [p for p in folder.iterdir() if is_image(p)]
    return sorted(files, key=(lambda p: natural_key(p.name)) if natural else (lambda p: p.name))


@dataclass
class ReadImages:
    images: np.ndarray | Rows                # (M, 3, H, W) uint8 (Rows when streamed)
    input: FolderInput                        # provenance record of the files read
    notes: list[str] = field(default_factory=list)
    converted_modes: dict = field(default_factory=dict)   # mode -> (count, first file)
    jpeg_files: int = 0


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read image: {exc.strerror}", file) from None


@contextmanager
def _opened(data: bytes, file: Path):
    """The Pillow image of ``data``; anything Pillow cannot read becomes one InputError naming ``file``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode.startswith(("I", "F")):   # Pillow's RGB conversion clips these to 8 bits, unscaled
                raise InputError(f"{im.mode} images (16-bit or float) are not read; save them with 8 bits per "
                                 "channel", file)
            yield im
    except UnidentifiedImageError:
        raise InputError("unreadable or corrupt image (not an image file Pillow can identify)", file) from None
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError) as exc:
        detail = (str(exc).splitlines() or [""])[0][:120] or type(exc).__name__
        raise InputError(f"unreadable or corrupt image ({detail})", file) from None


def _decode(file: Path, image_size: int | None, expected_sha: str | None = None):
    from PIL import Image

    data = _read_bytes(file)
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha is not None and sha != expected_sha:
        raise InputError("changed while it was being converted (its SHA-256 differs from the first read)", file)
    with _opened(data, file) as im:
        mode = im.mode
        rgb = im.convert("RGB")          # decodes the whole file: truncation shows here
    if image_size is not None and rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.BILINEAR)
    return np.asarray(rgb).transpose(2, 0, 1), mode, len(data), sha


def _probe(file: Path):
    """``(shape (3, H, W), mode, bytes, sha256)`` of an image file from its header, not decoded."""
    data = _read_bytes(file)
    with _opened(data, file) as im:
        mode, (width, height) = im.mode, im.size
    return (3, height, width), mode, len(data), hashlib.sha256(data).hexdigest()


def read_images(files: list[Path], root: Path, image_size: int | None = None, size_hint: str = "",
                stream: bool = False) -> ReadImages:
    """Decode ``files`` (all under ``root``) into one ``(M, 3, H, W)`` uint8 array.

    Raises :class:`InputError` naming the file that is unreadable, or two files of different sizes
    (``size_hint`` is appended to that message). ``image_size`` resizes every image to a square side
    (bilinear) instead.

    ``stream``: a first pass reads each file's bytes (SHA-256) and header (size, mode) only, and
    the images are :class:`~ladd_format.rows.Rows` decoded block by block when read (each file's
    SHA-256 checked against the first pass), so memory does not grow with the set; a file that
    fails to decode is named then. Not with ``image_size``.
    """
    if not files:
        raise InputError(f"holds no image files (looked for {', '.join(IMAGE_SUFFIXES)})", root)
    if stream and image_size is not None:
        raise ValueError("stream does not resize")
    images = None
    records, modes = [], {}
    first_shape = None
    pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="ladd-decode")
    try:
        each = _windowed(pool, _probe if stream else (lambda f: _decode(f, image_size)), files)
        for i, (file, (chw, mode, size, sha)) in enumerate(zip(files, each)):
            shape = chw if stream else chw.shape
            if first_shape is None:
                first_shape = shape
                need = len(files) * int(np.prod(shape, dtype=np.int64))
                limit = memory_bytes()
                if not stream and limit is not None and need > limit:
                    raise InputError(f"{len(files)} images of {shape[2]}x{shape[1]} pixels decode to "
                                     f"{need:,} bytes, more than this machine's {limit:,} bytes of memory", root)
                if not stream:
                    images = np.empty((len(files), *shape), np.uint8)
            elif shape != first_shape:
                raise InputError(f"images differ in size: {files[0].relative_to(root).as_posix()} is "
                                 f"{first_shape[2]}x{first_shape[1]}, {file.relative_to(root).as_posix()} is "
                                 f"{shape[2]}x{shape[1]} (width x height){size_hint}", root)
            if not stream:
                images[i] = chw
            if mode != "RGB":
                count, example = modes.get(mode, (0, file))
                modes[mode] = (count + 1, example)
            records.append((file.relative_to(root).as_posix(), size, sha))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)      # on an error: no further decoding
    if stream:
        images = Rows((len(files), *first_shape), np.uint8,
                      lambda a, b: _decode_rows(files[a:b], [r[2] for r in records[a:b]], first_shape))
    out = ReadImages(images=images, input=FolderInput(root, records), converted_modes=modes,
                     jpeg_files=sum(f.suffix.lower() in JPEG_SUFFIXES for f in files))
    for mode, (count, example) in sorted(modes.items()):
        out.notes.append(f"converted {count} image(s) of mode {mode} to RGB (e.g. "
                         f"{example.relative_to(root).as_posix()})")
    return out


def _windowed(pool: ThreadPoolExecutor, fn, items: list, window: int = 4 * THREADS * 32):
    """``pool.map(fn, items)`` in order, submitting ``window`` items at a time: the futures (and the
    results waiting to be taken) do not grow with the number of files."""
    for start in range(0, len(items), window):
        yield from pool.map(fn, items[start:start + window])


def _decode_rows(files: list[Path], shas: list[str], shape: tuple[int, int, int]) -> np.ndarray:
    """Decode ``files`` (on threads) into ``(B, *shape)`` uint8; each must have the SHA-256 and the
    size the first pass found."""
    out = np.empty((len(files), *shape), np.uint8)
    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="ladd-decode") as pool:
        for i, (file, (chw, _, _, _)) in enumerate(zip(files, pool.map(_decode, files, [None] * len(files), shas))):
            if chw.shape != shape:
                raise InputError(f"decodes to {chw.shape[2]}x{chw.shape[1]} pixels, its header said "
                                 f"{shape[2]}x{shape[1]}", file)
            out[i] = chw
    return out


@dataclass
class ImageFolder:
    images: np.ndarray | Rows          # (M, 3, H, W) uint8 (Rows when streamed)
    labels: np.ndarray                 # (M,) int64, index of the class folder in name order
    class_names: list[str]
    input: FolderInput
    notes: list[str] = field(default_factory=list)
    jpeg_files: int = 0
    converted_modes: dict = field(default_factory=dict)   # mode -> number of images converted to RGB


def class_folders(root: Path) -> list[Path]:
    """Subfolders of ``root`` sorted by name, hidden ones (``.name``) left out."""
    if not root.is_dir():
        raise InputError("no such folder" if not root.exists() else "is not a folder", root)
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def read_image_folder(root: Path, image_size: int | None = None, size_hint: str = "",
                      stream: bool = False) -> ImageFolder:
    """An ImageFolder tree ``ROOT/<class>/<image>``: classes are the subfolders sorted by name (the
    class index is the position, as torchvision's ImageFolder), images the image files directly in
    each (by suffix; other files, nested folders and hidden folders are ignored)."""
    folders = class_folders(root)
    if not folders:
        raise InputError("holds no class folders (expected ROOT/<class>/<image>)", root)
    files, labels, empty = [], [], []
    for c, folder in enumerate(folders):
        found = image_files(folder)
        if not found:
            empty.append(folder.name)
        files += found
        labels += [c] * len(found)
    read = read_images(files, root, image_size, size_hint, stream)
    names = [p.name for p in folders]
    notes = list(read.notes)
    if empty:
        notes.append(f"{len(empty)} class folder(s) hold no images but keep their class index: "
                     f"{', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}")
    if all(n.isdigit() for n in names) and names != sorted(names, key=int):
        moved = next(n for i, n in enumerate(names) if n != sorted(names, key=int)[i])
        notes.append(f"warning: class folders are numbers but the class index follows name order "
                     f"(torchvision ImageFolder's rule): folder {moved} is class {names.index(moved)}")
    return ImageFolder(read.images, np.asarray(labels, np.int64), names, read.input, notes, read.jpeg_files,
                       {mode: count for mode, (count, _) in read.converted_modes.items()})


@dataclass
class NumberedFolders:
    images: np.ndarray | Rows          # (M, 3, H, W) uint8 (Rows when streamed)
    labels: np.ndarray                 # (M,) int64: the number in the class folder's name
    input: FolderInput
    notes: list[str] = field(default_factory=list)
    jpeg_files: int = 0
    converted_modes: dict = field(default_factory=dict)


def numbered_class_folders(root: Path, pattern: str) -> tuple[list[tuple[int, Path]], list[str]]:
    """``(class number, folder)`` for the subfolders whose name fully matches ``pattern`` (one group:
    the number), sorted by number; and the names of the other subfolders."""
    matched, other = [], []
    for folder in class_folders(root):
        hit = re.fullmatch(pattern, folder.name)
        if hit:
            matched.append((int(hit.group(1)), folder))
        else:
            other.append(folder.name)
    return sorted(matched, key=lambda item: item[0]), other


def read_numbered_folders(root: Path, pattern: str, example: str, stream: bool = False) -> NumberedFolders:
    """Images of class folders named by their class number (``new007``, ``00007``): the label is that
    number, not the folder's position, so classes without a folder keep the numbering."""
    folders, other = numbered_class_folders(root, pattern)
    if not folders:
        raise InputError(f"holds no class folders named like {example}", root)
    files, labels = [], []
    for number, folder in folders:
        found = image_files(folder, natural=True)
        files += found
        labels += [number] * len(found)
    read = read_images(files, root, stream=stream)
    notes = list(read.notes)
    if other:
        notes.append(f"ignored {len(other)} folder(s) not named like {example}: "
                     f"{', '.join(other[:3])}{', ...' if len(other) > 3 else ''}")
    return NumberedFolders(read.images, np.asarray(labels, np.int64), read.input, notes, read.jpeg_files,
                           {mode: count for mode, (count, _) in read.converted_modes.items()})


def numbered_rawset(read: NumberedFolders, options, method: str, root: Path, folder_name, upstream: str,
                    default_stats: tuple[tuple[float, ...], tuple[float, ...]]):
    """The RawSet of an SRe2L / RDED tree: labels from the folder numbers, the class count from
    ``--num-classes``, ``--dataset`` or the largest number + 1 (said in a note), the method's
    documented normalisation ``default_stats`` (mean, std) as its default (``rawset.finish`` uses it
    when neither ``--mean/--std`` nor ``--dataset`` is given), and the JPEG loss recorded in the report."""
    from ..presets import get_preset
    from .rawset import RawSet

    raw = RawSet(images=read.images, space="pixel255", labels=read.labels, method=method, inputs=[read.input],
                 notes=list(read.notes))
    preset = get_preset(options.dataset) if options.dataset else None
    top = int(read.labels.max())
    if options.num_classes is not None:
        num_classes, given = int(options.num_classes), "--num-classes"
    elif preset is not None:
        num_classes, given = preset.num_classes, f"--dataset {preset.name}"
    else:
        num_classes, given = top + 1, None
        raw.notes.append(f"num_classes not given (--dataset or --num-classes): taken as the largest class folder "
                         f"number + 1 = {num_classes}")
        raw.report["num_classes"] = "largest class folder number + 1"
    if top >= num_classes:
        raise InputError(f"class folder {folder_name(top)} is beyond the {num_classes} classes of {given}", root)
    missing = sorted(set(range(num_classes)) - set(np.unique(read.labels).tolist()))
    if missing:
        raw.notes.append(f"no folder for {len(missing)} of {num_classes} classes (e.g. "
                         f"{', '.join(folder_name(c) for c in missing[:3])}); the class numbers are kept")
        raw.report["classes_without_images"] = len(missing)
    raw.num_classes = num_classes
    raw.default_mean, raw.default_std = default_stats     # the method's documented default
    if read.jpeg_files:
        raw.report["images"] = (f"{read.jpeg_files} of {len(read.images)} files are JPEG, stored as decoded (uint8); "
                                f"{upstream}: the float images before that are not on disk")
        raw.notes.append("JPEG images stored as decoded; the JPEG compression upstream was already lossy "
                         "(recorded in /provenance report)")
    else:
        raw.report["images"] = "stored as decoded (uint8)"
    if read.converted_modes:
        raw.report["converted_to_rgb"] = read.converted_modes
    return raw
