"""Reading back what ``ladd export`` writes, so that an export converts back to the same content.

``ladd export --format ddranking`` and ``--format folder`` leave a ``metadata.json`` beside the data
(``"format": "ddranking"`` / ``"folder"``; folder exports made before the key existed are known by
their ``files.hard_labels``). The converters that read those folders (the run converters for
DD-Ranking's ``images.pt`` + ``labels.pt``, ``folder`` for the export root) take from it, before
any flag:

- the method (``distillation``: ``dc`` comes back as ``dc``, not as ``tensors``' nothing), the
  dataset name, IPC, learned lr, ImageNet class ids and the soft-label dtype, from its
  ``ladd_metadata`` object (the npz export's ``ladd_metadata``, read by
  :func:`ladd_format.converters.npz.apply_metadata`);
- the classes (count and names) and the normalisation (``mean``/``std``: the input's own record);
- the image space: ``images_space`` ``zca`` decides that the images are ZCA-whitened (kept as
  float), ``normalized`` that they are not (``--zca`` is then refused, and DATM's CIFAR sign is
  not asked about); the stored dtype and space (``stored_dtype``, ``stored_space``) decide how
  the images are stored again (uint8 through the same rounding, floats as they were);
- DD-Ranking's class-major reordering is undone (``source_index``), and hard labels that were not
  the soft labels' argmax come back (``hard_labels``).

A flag that contradicts the metadata is refused in one line (``--dataset``, ``--mean/--std``,
``--num-classes``, ``--zca``/``--no-zca``; the same rules as for any input's own record, in
``rawset.finish``); ``--class-names`` and ``--keep-float`` are choices, not contradictions, and
apply. The metadata is untrusted: at most :data:`MAX_METADATA_BYTES`, a JSON object, every value
checked before use (one line naming ``metadata.json`` otherwise).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from ..atomic import require_regular_file
from ..errors import InputError, ShapeError

METADATA = "metadata.json"
#: the largest ``metadata.json`` read: a ddranking export lists one source index per image
MAX_METADATA_BYTES = 64 << 20
#: the spaces an export's ``images_space`` / ``stored_space`` may name
SPACES = ("pixel255", "pixel01", "normalized", "zca")
STORED_DTYPES = ("uint8", "float16", "float32")
#: a folder export's class folder ``<cccc>[_<name>]`` and image ``<index:06d>.png``
CLASS_FOLDER = re.compile(r"(\d{4,})(?:_.*)?")
IMAGE_FILE = re.compile(r"(\d{6,})\.png")


def _bad(what: str, path: Path) -> InputError:
    return InputError(f"{what} (ladd export's metadata)", path)


def load_metadata(folder: Path) -> dict | None:
    """The parsed ``metadata.json`` in ``folder``, or None when there is none. Bounded, one-line
    :class:`InputError` when it cannot be read or is not a JSON object."""
    path = folder / METADATA
    if not path.exists() and not path.is_symlink():
        return None
    require_regular_file(path, "metadata file")
    size = path.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise _bad(f"holds {size:,} bytes, at most {MAX_METADATA_BYTES:,} are read", path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _bad(f"not valid JSON ({str(exc)[:80]})", path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path) from None
    if not isinstance(meta, dict):
        raise _bad("must be a JSON object", path)
    return meta


def export_format(folder: Path) -> str | None:
    """``ddranking`` or ``folder`` when ``folder`` holds a ``ladd export`` of that format (by its
    ``metadata.json``), else None. Never raises (for ``sniff``); a broken ``metadata.json`` is
    refused later, by the converter that reads it."""
    try:
        meta = load_metadata(folder)
    except (InputError, OSError):
        return None
    if meta is None:
        return None
    fmt = meta.get("format")
    if fmt == "ddranking" and (folder / "images.pt").is_file():
        return "ddranking"
    files = meta.get("files")
    legacy = fmt is None and isinstance(files, dict) and files.get("hard_labels") == "hard_labels.npy"
    if (fmt == "folder" or legacy) and (folder / "images").is_dir():
        return "folder"
    return None


# -- checked values ---------------------------------------------------------------------------------
def _int(meta: dict, key: str, path: Path, low: int = 1, high: int = 1 << 62) -> int:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{key} must be an integer in {low}..{high}, got {str(value)[:40]!r}", path)
    return value


def _floats(meta: dict, key: str, count: int, path: Path, positive: bool = False) -> tuple[float, ...]:
    value = meta.get(key)
    if (not isinstance(value, list) or len(value) != count
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                       and (v > 0 or not positive) for v in value)):
        kind = "positive finite numbers" if positive else "finite numbers"
        raise _bad(f"{key} must be {count} {kind}, got {str(value)[:60]}", path)
    return tuple(float(v) for v in value)


def _choice(meta: dict, key: str, allowed, path: Path) -> str:
    value = meta.get(key)
    if value not in allowed:
        raise _bad(f"{key} must be one of {', '.join(allowed)}, got {str(value)[:40]!r}", path)
    return value


def _names(meta: dict, count: int, path: Path) -> list[str] | None:
    names = meta.get("class_names")
    if names is None:
        return None
    if not isinstance(names, list) or len(names) != count or not all(isinstance(n, str) and len(n) <= 4096
                                                                     for n in names):
        raise _bad(f"class_names must be {count} strings or null", path)
    return names


def _indices(value, m: int, what: str, path: Path, high: int) -> np.ndarray:
    if not isinstance(value, list) or len(value) != m or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < high for v in value):
        raise _bad(f"{what} must be {m} integers in 0..{high - 1}", path)
    return np.asarray(value, np.int64)


def apply_common(raw, meta: dict, path: Path, m: int, image_shape: tuple[int, ...]) -> None:
    """What both exports record: image count and shape (checked against the data), classes,
    normalisation and ``ladd_metadata`` (module docstring)."""
    from .npz import apply_metadata

    if _int(meta, "num_images", path) != m:
        raise _bad(f"num_images {meta.get('num_images')} disagrees with the {m} images beside it", path)
    shape = meta.get("image_shape")
    if shape is not None and list(shape) != list(image_shape):
        raise _bad(f"image_shape {str(shape)[:40]} disagrees with the images beside it, {list(image_shape)}", path)
    k = image_shape[0]
    raw.num_classes = _int(meta, "num_classes", path)
    raw.class_names = _names(meta, raw.num_classes, path)
    raw.mean = _floats(meta, "mean", k, path)
    raw.std = _floats(meta, "std", k, path, positive=True)
    raw.report["normalization"] = f"from {METADATA}"
    if "ladd_metadata" in meta:
        apply_metadata(meta["ladd_metadata"], raw, path)
    else:                                   # an export written before ladd_metadata: what it says
        for key, attr in (("source_dataset", "source_dataset"), ("distillation", "method")):
            if isinstance(meta.get(key), str):
                setattr(raw, attr, meta[key])
    raw.report["export_metadata"] = f"{METADATA} of ladd export --format {meta.get('format') or 'folder'}"


# -- ddranking --------------------------------------------------------------------------------------
def apply_ddranking(raw, meta: dict, path: Path) -> None:
    """Apply a ddranking export's ``metadata.json`` (at ``path``) to the RawSet read from the
    ``images.pt`` + ``labels.pt`` beside it (module docstring)."""
    m = raw.images.shape[0]
    apply_common(raw, meta, path, m, raw.images.shape[1:])
    space = _choice(meta, "images_space", ("normalized", "zca"), path)
    stored_space = _choice(meta, "stored_space", SPACES, path)
    stored_dtype = _choice(meta, "stored_dtype", STORED_DTYPES, path)
    if (space == "zca") != (stored_space == "zca"):
        raise _bad(f"images_space {space} and stored_space {stored_space} disagree", path)
    if raw.images.dtype == np.uint8:
        raise _bad("images.pt holds uint8 values; the export writes float32", path)
    raw.zca_evidence = None
    if space == "zca":
        raw.space, raw.zca_evidence = "zca", f"{METADATA} (images_space zca)"
    else:
        raw.space, raw.space_from = "normalized", f"{METADATA} (images_space normalized)"
        raw.zca_hint = None                        # the export says what the images are
    if stored_space == "pixel01":                  # the export normalised them: back to 0..1
        k = raw.images.shape[1]
        mean = np.asarray(raw.mean, np.float64).reshape(1, k, 1, 1)
        std = np.asarray(raw.std, np.float64).reshape(1, k, 1, 1)
        raw.images = raw.images.astype(np.float64) * std + mean
        raw.space = "pixel01"
    if stored_dtype != "uint8":
        raw.stored_dtype = stored_dtype            # floats stored as they were; uint8 through the rounding
    if raw.soft is not None:
        kind = _choice(meta, "soft_labels_kind", ("logits", "probs"), path)
        raw.soft_kind = kind
        if "hard_labels" in meta:
            raw.labels = _indices(meta["hard_labels"], m, "hard_labels", path, raw.num_classes)
        else:
            raw.labels = None                      # the argmax of the soft labels, as the export checked
    if "source_index" in meta:
        index = _indices(meta["source_index"], m, "source_index", path, m)
        if np.unique(index).size != m:
            raise _bad("source_index must be a permutation of the rows", path)
        inverse = np.argsort(index)                # exported row j is row index[j] of the source file
        raw.images = raw.images[inverse]
        if raw.labels is not None:
            raw.labels = raw.labels[inverse]
        if raw.soft is not None:
            raw.soft = raw.soft[inverse]
        raw.report["order"] = "DD-Ranking's class-major order undone (metadata.json source_index)"


# -- folder -----------------------------------------------------------------------------------------
def _npy(path: Path, shape: tuple[int, ...], kinds: str) -> np.ndarray:
    """A ``.npy`` of the export, memory-mapped after its header is checked against ``shape``."""
    require_regular_file(path)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"not a readable .npy array ({(str(exc).splitlines() or [''])[0][:120]})", path) from None
    if array.shape != shape or array.dtype.kind not in kinds:
        raise ShapeError(f"must be {shape} ({'integers' if kinds == 'iu' else 'floats'}), got {array.dtype} "
                         f"{array.shape}", path)
    return array


def export_root(source: Path) -> Path | None:
    """The root of a folder export when ``source`` is it or its ``images/`` folder, else None."""
    if export_format(source) == "folder":
        return source
    if source.name == "images" and export_format(source.parent) == "folder":
        return source.parent
    return None


def read_folder_export(root: Path):
    """The RawSet of a folder export at ``root`` (module docstring): the PNGs in index order,
    ``hard_labels.npy``, ``soft_labels.npy`` and ``dense_labels.npy`` when listed, and
    ``metadata.json``."""
    from .rawset import RawSet
    from .images import image_files, read_images

    path = root / METADATA
    meta = load_metadata(root)
    m = _int(meta, "num_images", path)
    c = _int(meta, "num_classes", path)
    shape = meta.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise _bad(f"image_shape must be 3 positive integers, got {str(shape)[:40]}", path)
    k = shape[0]
    if k not in (1, 3):
        raise _bad(f"{k}-channel PNG exports are not read back (RGB or grey only); export with --format npz", path)
    labels = np.array(_npy(root / "hard_labels.npy", (m,), "iu"), np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= c):
        raise InputError(f"labels must lie in 0..{c - 1}", root / "hard_labels.npy")
    files: dict[int, Path] = {}
    for folder in sorted(p for p in (root / "images").iterdir() if p.is_dir() and not p.name.startswith(".")):
        hit = CLASS_FOLDER.fullmatch(folder.name)
        if hit is None:
            raise InputError("is not a class folder of a ladd export (<cccc>[_<name>])", folder)
        for file in image_files(folder):
            index = IMAGE_FILE.fullmatch(file.name)
            if index is None or int(index.group(1)) >= m or int(index.group(1)) in files:
                raise InputError(f"is not one of the export's images 000000.png..{m - 1:06d}.png", file)
            i = int(index.group(1))
            if labels[i] != int(hit.group(1)):
                raise InputError(f"lies in class folder {folder.name}, but hard_labels.npy gives image {i} class "
                                 f"{labels[i]}", file)
            files[i] = file
    if len(files) != m:
        missing = next(i for i in range(m) if i not in files)
        raise InputError(f"holds {len(files)} of the {m} images metadata.json lists (first missing: {missing:06d}.png)",
                         root / "images")
    read = read_images([files[i] for i in range(m)], root / "images", stream=True)
    images = read.images
    if images.shape[1:] != (3, shape[1], shape[2]):
        raise _bad(f"image_shape {shape} disagrees with the PNGs ({images.shape[3]}x{images.shape[2]} pixels)", path)
    if k == 1:
        images = images.map(lambda block: block[:, :1], tail=(1, shape[1], shape[2]))
    raw = RawSet(images=images, space="pixel255", labels=labels, inputs=[read.input, root / "hard_labels.npy"])
    apply_common(raw, meta, path, m, (k, shape[1], shape[2]))
    listed = meta.get("files") if isinstance(meta.get("files"), dict) else {}
    if "soft_labels" in listed:
        raw.soft = _npy(root / "soft_labels.npy", (m, c), "f")
        raw.soft_kind = _choice(meta, "soft_labels_kind", ("logits", "probs"), path)
        raw.inputs.append(root / "soft_labels.npy")
    dense = meta.get("dense")
    if "dense_labels" in listed:
        if not isinstance(dense, dict):
            raise _bad("dense must describe the dense labels listed in files", path)
        n = _int(dense, "n", path, 1, 1 << 10)
        ratio = dense.get("ratio")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise _bad(f"dense.ratio must be a number in (0, 1], got {str(ratio)[:40]!r}", path)
        raw.dense = _npy(root / "dense_labels.npy", (m, n * n, c), "f")
        raw.dense_n, raw.dense_ratio = n, float(ratio)
        raw.inputs.append(root / "dense_labels.npy")
    stored = meta.get("space")
    if stored not in (None, "pixel255"):
        raw.notes.append(f"the exported file stored {stored} float images; the PNGs hold their uint8 form, stored "
                         "as it is")
    raw.report["images"] = "the export's PNGs in index order (uint8, as decoded)"
    return raw
