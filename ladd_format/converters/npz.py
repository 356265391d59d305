"""Converter ``npz``: a NumPy ``.npz`` of arrays -> D_LA (the generic way in for your own arrays, and
the way back from ``ladd export --format npz``).

Keys (spec names in brackets); every decision not listed here is ``rawset.finish``'s, the same as
for the other converters (normalisation, uint8 conversion, class count and names):
  images        uint8 (M, K, H, W) or (M, H, W, K) [/images] (``--layout``); (M, H, W) is read as
                K = 1. Float images need their ``space`` (pixel01, normalized, zca): the option,
                else a ``space`` key; they become uint8 unless ``--keep-float``, or a key
                ``image_dtype`` of ``float32``/``float16`` (written by ``ladd export``) says the
                images are stored floats.
  labels        (M,) integer class indices [/labels].
  num_classes   optional scalar (the input's own count).
  class_names   optional (C,) strings.
  mean, std     optional (K,) per-channel normalisation (the input's own statistics).
  dense_labels  optional (M, N*N, C) probabilities, with scalars ``n`` and ``ratio`` [/dense];
                optional ``temperature`` (default 1) and strings ``labeler_arch`` (default
                ``unknown``) and ``labeler_training_data`` [/dense/labeler]; stored with ``--codec``.
  soft_labels   optional (M, C) global soft labels, with ``soft_kind`` = logits (default) or probs.
  dense_stored_<name>  optional: the codec's stored datasets (``/dense/<name>``) as exported by
                ``ladd export --format npz``; with the codec ``ladd_metadata`` records (and no other
                ``--codec``) they are written as they are, after checking them against the codec's
                rules and against ``dense_labels`` (they must decode to it): decode -> encode is
                not the identity for the uint8 and topk codecs.
  ladd_metadata optional scalar string: JSON written by ``ladd export --format npz`` with what the
                keys above do not hold, so the file converts back to the same D_LA (see
                :data:`METADATA_KEYS`). It is untrusted input: at most :data:`MAX_METADATA_BYTES`,
                a JSON object of ``"version": 1``, every value type-checked (one line names the
                first wrong one); unknown keys are ignored with a note. What it records is written
                back as it was, and a ``--dataset`` naming another ``source_dataset`` is refused.
                ``--codec`` overrides its codec.

The export of the same format lives here too: :func:`write_export` (``ladd export --format npz``,
keys in :mod:`ladd_format.export`), which writes the keys this converter reads back.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np

from ..atomic import require_regular_file
from ..codecs import parse_codec
from ..errors import InputError, LaddError, ShapeError
from ..pixels import to_nchw
from ..reader import DLAFile, read_rows
from ..rows import WORKING_BYTES, block_rows, checked_row_bytes, npy_member_rows, row_bytes, write_npz_member
from ..size import stream_datasets, stream_member
from ..spec.checks import dense_datasets
from ..spec.names import DENSE_PATH, IMAGES, IMAGES_PATH, LABELS_PATH, SOFT_LABELS_PATH
from . import CODEC, COMMON, FLOAT_IMAGES, ConversionResult, Converter, ConvertOptions, Option, register
from .exporting import BATCH, decoded_dense, npz_metadata, ranges
from .inputs import npz_members
from .rawset import RawSet, finish

#: what float images hold (required for float inputs without a recorded space)
SPACE = Option("space", "choice", "What float images hold (npz; required for float inputs).",
               choices=("pixel01", "normalized", "zca"), common=False)
#: the axis order of the images
LAYOUT = Option("layout", "choice", "Axis order of the npz images.", default="auto", choices=("auto", "nchw", "nhwc"),
                common=False)
#: the largest ``ladd_metadata`` read (bytes as stored in the npz: 4 per character)
MAX_METADATA_BYTES = 1 << 20
METADATA_VERSION = 1
#: ``ladd_metadata``'s keys: what each restores
METADATA_KEYS = {
    "version": "1 (a higher version is refused)",
    "source_dataset": "root attribute source_dataset (string)",
    "distillation": "root attribute distillation (string)",
    "ipc": "root attribute ipc (integer >= 1, or null: the attribute was absent)",
    "learned_lr": "root attribute learned_lr (finite number)",
    "imagenet_class_ids": "root attribute imagenet_class_ids (C integers)",
    "soft_dtype": "the dtype /soft_labels was stored with (float16 or float32)",
    "dense": "{codec: the codec as parse_codec text, temperature: number > 0, labeler: the /dense/labeler "
             "attributes}",
}
MAX_TEXT = 4096
INT64 = 1 << 63
ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
INPUT_KEYS = {IMAGES_PATH: "images", LABELS_PATH: "labels", DENSE_PATH: "dense_labels", SOFT_LABELS_PATH: "soft_labels"}
FLOAT_DTYPES = ("float16", "float32")
#: prefix of the keys holding the codec's stored dense datasets as exported (written as they are)
STORED = "dense_stored_"


def _streamed(key: str) -> bool:
    """The keys whose rows are read as they are written (:mod:`ladd_format.rows`), never whole."""
    return key in ("images", "dense_labels", "subimages") or key.startswith(STORED)


def _load(path: Path) -> dict:
    """Every array of the archive, after :func:`~ladd_format.converters.inputs.npz_members` has
    bounded each member by the bytes it holds (nothing is allocated from an unchecked header). The
    large keys (:func:`_streamed`) come as :class:`~ladd_format.rows.Rows` read block by block
    while the D_LA is written, unless stored in Fortran order (then read whole); the rest whole."""
    require_regular_file(path)
    if not zipfile.is_zipfile(path):
        raise InputError("not a readable .npz archive (an .npz is a zip of .npy arrays)", path)
    members = npz_members(path)
    arrays = {}
    for key, member in members.items():
        if _streamed(key) and not member.fortran_order and len(member.shape) >= 1:
            arrays[key] = npy_member_rows(path, member.info, member.header, key, member.shape, member.dtype)
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise InputError("is a single .npy array, expected an .npz archive of named arrays", path)
            arrays.update({key: data[key] for key in data.files if key not in arrays})
            return arrays
    except LaddError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError("holds object arrays (pickles), which are refused; store strings as a "
                             "unicode array", path) from None
        raise InputError(f"not a readable .npz archive: {exc}", path) from None
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        raise InputError(f"not a readable .npz archive: {exc}", path) from None


def _scalar(arrays, key, path, cast):
    value = arrays[key]
    if not isinstance(value, np.ndarray):
        raise InputError(f"key {key!r} must be a .npy array", path)
    if value.size != 1:
        raise ShapeError(f"key {key!r} must be a scalar, got shape {value.shape}", path)
    item = value.reshape(()).item()
    if cast is int and (isinstance(item, float) and not item.is_integer() or isinstance(item, (bytes, complex))):
        raise InputError(f"key {key!r} must be an integer, got {item!r}", path)
    try:
        return cast(item)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"key {key!r} must be {'an integer' if cast is int else 'a ' + cast.__name__}, got "
                         f"{str(item)[:40]!r}", path) from None


def _bad(what: str, path: Path) -> InputError:
    return InputError(f"key ladd_metadata: {what}", path)


def _text(value, name: str, path: Path) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _bad(f"{name} must be a string of at most {MAX_TEXT} characters", path)
    return value


def _number(value, name: str, path: Path) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (isinstance(value, int) and not -INT64 <= value < INT64) or not math.isfinite(value)):
        raise _bad(f"{name} must be a finite number, got {str(value)[:40]!r}", path)
    return float(value)


def _labeler(value, path: Path) -> dict:
    """The ``/dense/labeler`` attributes: names of letters, digits and _, values strings, numbers
    or lists of at most 4096 numbers; ``arch`` a string."""
    if not isinstance(value, dict) or len(value) > 64:
        raise _bad("dense.labeler must be an object of at most 64 attributes", path)
    out = {}
    for key, item in value.items():
        if not ATTR_NAME.fullmatch(key):
            raise _bad(f"dense.labeler attribute name {key[:40]!r} is not a plain name", path)
        if isinstance(item, str):
            out[key] = _text(item, f"dense.labeler.{key}", path)
        elif isinstance(item, (bool, int)):
            if not -INT64 <= item < INT64:
                raise _bad(f"dense.labeler.{key} is outside the 64-bit integers", path)
            out[key] = item
        elif isinstance(item, float):
            out[key] = _number(item, f"dense.labeler.{key}", path)
        elif isinstance(item, list) and len(item) <= MAX_TEXT:
            if all(isinstance(v, int) and not isinstance(v, bool) and -INT64 <= v < INT64 for v in item):
                out[key] = list(item)
            else:
                out[key] = [_number(v, f"dense.labeler.{key}[]", path) for v in item]
        else:
            raise _bad(f"dense.labeler.{key} must be a string, a number or a list of numbers", path)
    if not isinstance(out.get("arch"), str):
        raise _bad("dense.labeler needs the string attribute arch", path)
    return out


def read_metadata(arrays: dict, raw: RawSet, path: Path) -> None:
    """Apply the ``ladd_metadata`` key (module docstring) to ``raw``."""
    value = arrays["ladd_metadata"]
    if value.size != 1 or value.dtype.kind not in "US":
        raise _bad(f"must be one string, got {value.dtype} {value.shape}", path)
    if value.nbytes > MAX_METADATA_BYTES:
        raise _bad(f"holds {value.nbytes:,} bytes, at most {MAX_METADATA_BYTES:,} are read", path)
    item = value.reshape(()).item()
    try:
        meta = json.loads(item.decode("utf-8") if isinstance(item, bytes) else item)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _bad(f"not valid JSON ({str(exc)[:80]})", path) from None
    apply_metadata(meta, raw, path, arrays)


def apply_metadata(meta, raw: RawSet, path: Path, arrays: dict | None = None) -> None:
    """Apply a parsed ``ladd_metadata`` object (:data:`METADATA_KEYS`) to ``raw``: an npz's key, or
    the ``ladd_metadata`` object of an export's ``metadata.json`` (``arrays``: the npz's other keys,
    checked against it where both say the same)."""
    arrays = {} if arrays is None else arrays
    if not isinstance(meta, dict):
        raise _bad("must be a JSON object", path)
    version = meta.get("version")
    if version != METADATA_VERSION:
        raise _bad(f"version {str(version)[:20]} is not read (this ladd reads version {METADATA_VERSION})", path)
    unknown = sorted(str(k)[:40] for k in meta if k not in METADATA_KEYS)
    if unknown:
        raw.notes.append(f"ladd_metadata keys not read (a newer ladd's?): {', '.join(unknown[:5])}")
    if "source_dataset" in meta:
        raw.source_dataset = _text(meta["source_dataset"], "source_dataset", path)
    if "distillation" in meta:
        raw.method = _text(meta["distillation"], "distillation", path)
    if "ipc" in meta:
        ipc = meta["ipc"]
        if ipc is not None and (isinstance(ipc, bool) or not isinstance(ipc, int) or not 1 <= ipc < INT64):
            raise _bad(f"ipc must be an integer >= 1 or null, got {str(ipc)[:40]!r}", path)
        raw.ipc, raw.ipc_known = ipc, True
    if "learned_lr" in meta:
        raw.root_attrs["learned_lr"] = _number(meta["learned_lr"], "learned_lr", path)
    if "imagenet_class_ids" in meta:
        ids = meta["imagenet_class_ids"]
        if (not isinstance(ids, list) or len(ids) > MAX_TEXT
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 31 for v in ids)):
            raise _bad(f"imagenet_class_ids must be a list of at most {MAX_TEXT} class ids", path)
        if raw.num_classes is not None and len(ids) != raw.num_classes:
            raise _bad(f"imagenet_class_ids has {len(ids)} entries for {raw.num_classes} classes", path)
        raw.root_attrs["imagenet_class_ids"] = np.asarray(ids, np.int64)
    if "soft_dtype" in meta:
        if meta["soft_dtype"] not in FLOAT_DTYPES:
            raise _bad(f"soft_dtype must be float16 or float32, got {str(meta['soft_dtype'])[:20]!r}", path)
        raw.soft_dtype = meta["soft_dtype"]
    dense = meta.get("dense")
    if dense is not None:
        if not isinstance(dense, dict):
            raise _bad("dense must be an object", path)
        if "codec" in dense:
            text = _text(dense["codec"], "dense.codec", path)
            try:
                parse_codec(text)
            except LaddError as exc:
                raise _bad(f"dense.codec: {exc.message}", path) from None
            raw.codec = text
        if "temperature" in dense:
            temperature = _number(dense["temperature"], "dense.temperature", path)
            if "temperature" in arrays and _scalar(arrays, "temperature", path, float) != temperature:
                raise _bad("dense.temperature disagrees with the key temperature", path)
            raw.dense_temperature = temperature
        if "labeler" in dense:
            labeler = _labeler(dense["labeler"], path)
            if "labeler_arch" in arrays and _scalar(arrays, "labeler_arch", path, str) != labeler["arch"]:
                raise _bad("dense.labeler.arch disagrees with the key labeler_arch", path)
            raw.dense_labeler = labeler
    raw.report["ladd_metadata"] = sorted(k for k in meta if k in METADATA_KEYS and k != "version")


def read_npz(source: Path, options: ConvertOptions) -> RawSet:
    arrays = _load(source)
    missing = [key for key in ("images", "labels") if key not in arrays]
    if missing:
        raise InputError(f"missing required key(s) {', '.join(missing)}; found {', '.join(sorted(arrays)) or 'none'}",
                         source)
    images = to_nchw(arrays["images"], options.get("layout"), source)
    m = images.shape[0]
    if m < 1:
        raise ShapeError("holds no images", source)
    labels = arrays["labels"]
    if labels.shape != (m,):
        raise ShapeError(f"labels must have shape ({m},) to match the images, got {labels.shape}", source)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be integers, got {labels.dtype}", source)

    space = options.get("space")
    if space is None and "space" in arrays:
        space = _scalar(arrays, "space", source, str)
    if images.dtype == np.uint8:
        if space not in (None, "pixel255"):
            raise InputError(f"images are uint8, so --space {space} does not apply", source)
        space = "pixel255"
    elif np.issubdtype(images.dtype, np.floating):
        if space is None:
            raise InputError(f"images are {images.dtype}: say what they hold with --space pixel01, normalized or zca",
                             source)
        if space not in ("pixel01", "normalized", "zca"):
            raise InputError(f"float images need space pixel01, normalized or zca, got {space!r}", source)
    else:
        raise InputError(f"images must be uint8 or floating point, got {images.dtype}", source)
    stored_dtype = _scalar(arrays, "image_dtype", source, str) if "image_dtype" in arrays else None
    if stored_dtype is not None and stored_dtype not in ("uint8",) + FLOAT_DTYPES:
        raise InputError(f"key image_dtype must be uint8, float16 or float32, got {stored_dtype!r}", source)

    raw = RawSet(images=images, space=space, labels=labels, inputs=[source], input_keys=INPUT_KEYS,
                 stored_dtype=stored_dtype)
    if "num_classes" in arrays:
        raw.num_classes = _scalar(arrays, "num_classes", source, int)
    if "class_names" in arrays:
        raw.class_names = [str(v) for v in arrays["class_names"].reshape(-1)]
    if "mean" in arrays and "std" in arrays:
        raw.mean, raw.std = arrays["mean"], arrays["std"]
        raw.report["normalization"] = "from the npz"
    if "dense_labels" in arrays:
        missing = [key for key in ("n", "ratio") if key not in arrays]
        if missing:
            raise InputError(f"dense_labels need the scalar key(s) {', '.join(missing)}", source)
        raw.dense = arrays["dense_labels"]
        raw.dense_n = _scalar(arrays, "n", source, int)
        raw.dense_ratio = _scalar(arrays, "ratio", source, float)
        raw.dense_labeler = {"arch": _scalar(arrays, "labeler_arch", source, str)
                             if "labeler_arch" in arrays else "unknown"}
        if "labeler_training_data" in arrays:
            raw.dense_labeler["training_data"] = _scalar(arrays, "labeler_training_data", source, str)
        if "temperature" in arrays:
            raw.dense_temperature = _scalar(arrays, "temperature", source, float)
        stored = {key[len(STORED):]: value for key, value in arrays.items() if key.startswith(STORED)}
        if stored:
            raw.dense_stored = stored
    if "soft_labels" in arrays:
        raw.soft = arrays["soft_labels"]
        raw.soft_kind = _scalar(arrays, "soft_kind", source, str) if "soft_kind" in arrays else "logits"
        if raw.soft_kind not in ("logits", "probs"):
            raise InputError(f"soft_kind must be logits or probs, got {raw.soft_kind!r}", source)
    if "ladd_metadata" in arrays:
        read_metadata(arrays, raw, source)
    return raw


@register
class Npz(Converter):
    name = "npz"
    summary = "NumPy .npz of images, labels and optional dense/soft labels (also ladd export --format npz)"
    looks_for = "an .npz file"
    options = COMMON + FLOAT_IMAGES + (SPACE, LAYOUT, CODEC)

    def sniff(self, path: Path) -> str | None:
        try:
            return "an .npz file" if path.is_file() and path.suffix.lower() == ".npz" else None
        except OSError:
            return None

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        return finish(read_npz(source, options), output, options, self.name)


# -- export (ladd export --format npz) ---------------------------------------------------------------
def _small(zf: zipfile.ZipFile, key: str, value) -> None:
    value = np.asarray(value)
    write_npz_member(zf, key, value.shape, value.dtype, [value])


class _Counter:
    """Wraps the block generators of :func:`write_export`, reporting rows written over all of them."""

    def __init__(self, total: int, progress):
        self.total, self.progress, self.done = total, progress, 0

    def __call__(self, parts):
        for part in parts:
            yield part
            self.done += len(part)
            if self.progress is not None:
                self.progress(self.done, self.total)


def write_export(f: DLAFile, out: Path, labels: np.ndarray, notes: list[str], subimages=None, progress=None,
                 with_stream: bool = False) -> None:
    """``ladd export --format npz`` to the file ``out`` (keys in :mod:`ladd_format.export`), written
    member by member and each member block by block (:data:`~ladd_format.rows.BLOCK_BYTES` at a
    time), so memory does not grow with the set; ``labels``: the checked hard labels;
    ``subimages(images) -> (B, P, K, H, W)`` adds the ``subimages`` member (None: not);
    ``with_stream``: the relabel stream's datasets as ``stream_<name>`` members, as stored (checked by
    :func:`~ladd_format.converters.exporting.check_stream_exportable` first), its attributes in ``ladd_metadata``;
    ``progress(rows written, rows)`` over the members that have one row per image."""
    with_subimages = subimages is not None
    m, image_shape = f.num_images, f.image_shape
    streamed = 1 + int(f.has_soft_labels)          # the members with one row per image: images, soft labels,
    if f.has_dense:                                 # dense labels, sub-images, the codec's stored datasets
        streamed += 1 + int(with_subimages) + (len(dense_datasets(f)) if f.codec.name != "float32" else 0)
    counted = _Counter(m * streamed, progress)
    image_rows = block_rows(row_bytes(f.h5[IMAGES]), BATCH)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        write_npz_member(zf, "images", (m, *image_shape), f.image_dtype,
                counted((f.images(a, b) for a, b in ranges(m, image_rows))))
        for key, value in (("labels", labels), ("num_classes", np.int64(f.num_classes)), ("mean", f.mean),
                           ("std", f.std), ("space", np.array(f.space)),
                           ("image_dtype", np.array(str(f.image_dtype)))):   # convert npz keeps float images float
            _small(zf, key, value)
        if f.class_names:
            _small(zf, "class_names", np.array(f.class_names))
        if f.has_dense:
            p, c = f.n * f.n, f.num_classes
            # decoding works in float64, so the blocks are sized by that, not by the float32 written
            write_npz_member(zf, "dense_labels", (m, p, c), np.float32,
                    counted((decoded_dense(f, a, b) for a, b in ranges(m, block_rows(p * c * WORKING_BYTES)))))
            for key, value in (("n", np.int64(f.n)), ("ratio", np.float64(f.ratio)),
                               ("temperature", np.float64(f.temperature)), ("boxes", f.boxes),
                               ("labeler_arch", np.array(str(f.labeler.get("arch", "unknown"))))):
                _small(zf, key, value)
            if with_subimages:
                dtype = np.uint8 if f.image_dtype == np.uint8 else np.float32
                rows = block_rows(p * math.prod(image_shape) * np.dtype(dtype).itemsize, BATCH)
                write_npz_member(zf, "subimages", (m, p, *image_shape), dtype,
                        counted((subimages(f.images(a, b)) for a, b in ranges(m, rows))))
        if f.has_soft_labels:
            rows = block_rows(4 * f.num_classes)
            write_npz_member(zf, "soft_labels", (m, f.num_classes), np.float32,
                    counted((f.soft_labels(a, b) for a, b in ranges(m, rows))))
            _small(zf, "soft_kind", np.array(f.soft_kind))
        if f.has_dense and f.codec.name != "float32":      # float32's stored rows are dense_labels themselves
            datasets = dense_datasets(f)
            rows = block_rows(checked_row_bytes(datasets.values()))   # each read takes all of them, checked
            for name, ds in datasets.items():
                write_npz_member(zf, f"dense_stored_{name}", ds.shape, ds.dtype,
                        counted((f.dense_stored(a, b)[name] for a, b in ranges(m, rows))))
        if with_stream:
            _stream_members(zf, f)
        _small(zf, "ladd_metadata", np.array(json.dumps(npz_metadata(f, stream=with_stream), sort_keys=True)))


def _stream_members(zf: zipfile.ZipFile, f: DLAFile) -> None:
    """Each dataset :func:`ladd_format.size.stream_datasets` names, as spec 7's member
    (:func:`~ladd_format.size.stream_member`: ``stream_image``, ``stream_tail_coef``) in its stored
    dtype and shape, read block by block."""
    for name, ds in stream_datasets(f).items():
        rows = block_rows(row_bytes(ds))
        write_npz_member(zf, stream_member(name), ds.shape, ds.dtype,
                         (read_rows(ds, a, b, f.path) for a, b in ranges(ds.shape[0], rows)))
