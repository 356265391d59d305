"""The raw set a converter reads, and the ONE :func:`finish` that turns any converter's
:class:`RawSet` into a D_LA file.

A converter only finds its files and reads them into a RawSet; every decision below is taken here,
the same way for every format (npz included), and written to ``/provenance`` ``report``:

- The dataset. ``--dataset NAME`` names a preset; else the input may name one itself: a DC /
  DD-Ranking file name (``images_<METHOD>_<DATASET>_<ipc>_best.pt``,
  ``res_<METHOD>_<DATASET>_<MODEL>_<ipc>ipc.pt``) or DD-Ranking's ``<DATASET>/IPC<k>/images.pt``
  folders (``RawSet.dataset``; a note says where it came from). An input that names another preset
  than ``--dataset``, or an exported npz whose ``ladd_metadata`` records another
  ``source_dataset``, is refused in one line. The dataset (given or named) decides, below, the
  class count, class names, mean/std, and records ``source_dataset`` (and, for ImageNet subsets,
  ``imagenet_class_ids``). Every converter honours ``--dataset`` this way.
- Normalisation (mean/std), first that applies: (1) the input's own record (``mean``/``std`` keys
  of an npz; a run's files never hold them) -- ``--mean/--std`` that disagree with it are refused
  (the images were normalised with one of them), a dataset preset whose statistics differ is noted
  and not applied; (2) ``--mean/--std``; (3) the dataset's preset (given or named by the input),
  as the method used it (its converter's ``normalization`` hook: GLaD's default mean, RDED's
  ImageNet); (4) the method's documented default (SRe2L, RDED: ImageNet); (5) for uint8 or 0..1 (``pixel01``)
  images, computed from the images themselves on the 0..1 scale (``pixels.channel_stats``; a note
  says so) -- such images hold their pixels, so the record is only what a trainer should apply.
  Normalised float images with none of (1)-(4) are refused: their pixels cannot be recovered.
  After ``--zca-stats`` inverts ZCA-whitened images the pixels are on the 0..1 scale with no
  mean/std step: mean 0, std 1.
- Images: uint8 inputs are stored as they are. Float inputs become uint8 (the spec's default form:
  ``pixels.Uint8Quantizer``, clipped fraction and PSNR reported and noted) unless ``--keep-float`` or the
  input itself says its images are stored floats (npz key ``image_dtype``, written by ``ladd export
  --format npz``); kept floats are float32 (float16 when the input is float16), with their space.
  ZCA-whitened images become uint8 only through ``--zca-stats``; else they are kept as float (space
  ``zca``). Whether images are ZCA-whitened: ``--zca`` / ``--no-zca``, else what the input says (a
  folder or file name with a ``zca`` token, an export's ``metadata.json``, an npz's space); a mere
  sign (:func:`_zca_space`) without either flag is refused.
- Classes: the count is the input's own (npz ``num_classes``, the class folders, the width of soft
  or dense labels), else ``--num-classes``, else the dataset's preset, else max(label) + 1
  (noted); a preset or ``--num-classes`` that disagrees with the input is refused. Names:
  ``--class-names``, else the input's own (npz ``class_names``; ImageFolder names when the preset
  has none), else the preset's.
- Labels: hard labels as given; soft labels (logits/probs) go to ``/soft_labels`` and, without hard
  labels, their argmax is the hard label (noted). Dense labels (npz) are written with the ``codec``
  option (one text value, ``codecs.parse_codec``), else the codec the input records (npz
  ``ladd_metadata``, written by ``ladd export --format npz``), else ``float32``. ``codec`` given for
  an input without dense labels is refused (an option that would be ignored is never accepted).
- What the input records beyond that (an exported npz's ``ladd_metadata``: ``distillation``,
  ``ipc``, ``learned_lr``, ``imagenet_class_ids``, the labeler's attributes and temperature, the
  soft-label dtype) is written back as it was.

"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..codecs import parse_codec
from ..errors import InputError, ShapeError
from ..pixels import Uint8Quantizer, channel_stats
from ..presets import get_preset
from ..rows import as_rows, blocks
from ..spec.limits import MAX_CLASSES
from ..spec.names import LABELS_PATH, SOFT_LABELS_PATH
from ..writer import DenseSpec, DLAWriter
from . import ConversionResult, ConvertOptions, method_normalization
from .inputs import check_npz
from .writing import preencoded, write_batches


# -- the raw set a converter reads ----------------------------------------------------------------
@dataclass
class RawSet:
    """What a converter read, before any decision: :func:`finish` takes those (module docstring)."""

    images: np.ndarray                 # (M, K, H, W) float (space below) or uint8
    space: str                         # normalized | pixel01 | zca | pixel255
    labels: np.ndarray | None = None   # (M,) hard labels
    soft: np.ndarray | None = None     # (M, C) soft labels
    soft_kind: str | None = None       # logits | probs
    method: str | None = None          # the distillation method, when known (recorded as ``distillation``)
    inputs: list = field(default_factory=list)
    root_attrs: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    zca_hint: str | None = None        # why the images may be ZCA-whitened (a sign, not a record: see _zca_space)
    zca_evidence: str | None = None    # what in the input says its images are ZCA-whitened (space zca), a noun
    #                                    phrase: "the folder name CIFAR10_ZCA", "metadata.json (images_space zca)"
    space_from: str | None = None      # what in the input records a space other than zca (export metadata)
    labels_input: Path | None = None   # the file holding the labels, when not inputs[0] (errors name it)
    input_keys: dict | None = None     # spec path -> input key, to name keys in errors (npz)
    # what the input itself says (the first choice of finish)
    mean: tuple | None = None          # statistics the method applied, when the files say so
    std: tuple | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    stored_dtype: str | None = None    # the image dtype the input asks to store (npz key image_dtype)
    # the method's documented normalisation, used when neither the input, the options nor a preset give one
    default_mean: tuple | None = None
    default_std: tuple | None = None
    # dense labels (npz): (M, n*n, C) probabilities with their geometry and labeler
    dense: np.ndarray | None = None
    dense_n: int | None = None
    dense_ratio: float | None = None
    dense_temperature: float = 1.0
    dense_labeler: dict = field(default_factory=lambda: {"arch": "unknown"})
    # the dataset the input itself names (a preset name) and where (see the module docstring)
    dataset: str | None = None
    dataset_from: str | None = None
    # what an exported npz records (``ladd_metadata``), written back as it was
    source_dataset: str | None = None  # recorded as is (it need not be a preset)
    ipc: int | None = None
    ipc_known: bool = False            # True: ``ipc`` is the input's own (None: the attribute was absent)
    codec: str | None = None           # the dense codec, as parse_codec text or JSON
    dense_stored: dict | None = None   # the codec's stored rows as exported (npz dense_stored_*), name -> array
    soft_dtype: str = "float32"
    # a relabel stream (``ladd_format.relabel.convert.RelabelStream``, sre2l --relabel): ``spec`` (a
    # StreamSpec) is declared to the writer and ``write(writer)`` appends its batches after the images
    stream: object | None = None


#: the largest image (values per image) whose ZCA is refitted: a D x D covariance (12288: 64x64 RGB)
MAX_ZCA_VALUES = 3 * 64 * 64


def load_zca_stats(path: Path, eps: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """ZCA statistics from an ``.npz``: ``mean`` (D,) and ``inverse`` (D, D) as saved, or the
    training images ``train_images`` (N, K, H, W) in 0..1 to refit kornia's transform with ``eps``."""
    members = check_npz(path)
    if "train_images" in members and not ("mean" in members and "inverse" in members):
        shape = members["train_images"][0]
        values = math.prod(shape[1:])
        if len(shape) < 2 or shape[0] < 2:
            raise InputError(f"train_images must be (N, ...) with N >= 2 images, got shape {shape}", path)
        if values > MAX_ZCA_VALUES:
            raise InputError(f"train_images hold {values:,} values per image; refitting ZCA takes a "
                             f"{values:,} x {values:,} covariance, at most {MAX_ZCA_VALUES:,} values per image", path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "mean" in data and "inverse" in data:
                return data["mean"].astype(np.float64).reshape(-1), data["inverse"].astype(np.float64)
            if "train_images" in data:
                x = data["train_images"].astype(np.float64).reshape(len(data["train_images"]), -1)
            else:
                raise InputError("needs keys mean + inverse, or train_images", path)
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable ZCA statistics .npz: {exc}", path) from None
    mu = x.mean(axis=0)
    cov = (x - mu).T @ (x - mu) / (len(x) - 1)            # unbiased, as kornia
    u, s, _ = np.linalg.svd(cov)
    inverse = u @ np.diag(np.sqrt(s + eps)) @ u.T
    return mu, inverse


def invert_zca(images: np.ndarray, mean: np.ndarray, inverse: np.ndarray, path: Path) -> np.ndarray:
    """x_white -> x_white @ T_inv + mu, per image flattened (kornia's convention)."""
    m = images.shape[0]
    flat = images.reshape(m, -1).astype(np.float64)
    if inverse.shape != (flat.shape[1], flat.shape[1]) or mean.shape != (flat.shape[1],):
        raise InputError(f"ZCA statistics are for {mean.shape[0]} values per image, the images have "
                         f"{flat.shape[1]}", path)
    return (flat @ inverse + mean).reshape(images.shape)


def _class_names(raw: RawSet, options: ConvertOptions, num_classes: int, preset, src) -> list[str] | None:
    if options.class_names is not None:
        names, given = list(options.class_names), "--class-names"
    elif raw.class_names is not None:
        names, given = list(raw.class_names), "the input"
    elif preset is not None and preset.class_names is not None:
        names, given = list(preset.class_names), f"preset {preset.name}"
    else:
        return None
    if len(names) != num_classes:
        raise InputError(f"{len(names)} class names ({given}) for {num_classes} classes", src)
    return names


def _num_classes(raw: RawSet, options: ConvertOptions, preset, labels: np.ndarray, notes, report, src) -> int:
    own = [(raw.num_classes, "the input"),
           (None if raw.soft is None else raw.soft.shape[1], "the width of the soft labels"),
           (None if raw.dense is None or raw.dense.ndim != 3 else raw.dense.shape[2], "the width of the dense labels")]
    found = next(((int(c), why) for c, why in own if c is not None), None)
    if found is not None:
        num_classes, why = found
        if options.num_classes is not None and int(options.num_classes) != num_classes:
            raise InputError(f"--num-classes {options.num_classes} disagrees with {why}: {num_classes} classes", src)
    elif options.num_classes is not None:
        num_classes = int(options.num_classes)
    elif preset is not None:
        num_classes = preset.num_classes
    else:
        num_classes = int(labels.max()) + 1 if labels.size else 0
        notes.append(f"num_classes not given (--num-classes or --dataset): taken from max(labels) + 1 = {num_classes}")
        report["num_classes"] = "max(labels) + 1"
    if preset is not None and num_classes != preset.num_classes:
        named = "" if options.dataset else f" (named by {raw.dataset_from})"
        raise InputError(f"preset {preset.name}{named} has {preset.num_classes} classes, the files {num_classes}",
                         src)
    if not 1 <= num_classes <= MAX_CLASSES:
        raise InputError(f"{num_classes} classes ({report.get('num_classes') or 'as given'}) lie outside the spec's "
                         f"1..{MAX_CLASSES} (spec 2.4)", src)
    return num_classes


def _dataset(raw: RawSet, options: ConvertOptions, notes, report, src):
    """The dataset preset: ``--dataset``, else the one the input names (module docstring); a
    conflict between them is refused in one line."""
    given = get_preset(options.dataset) if options.dataset else None
    if given is not None:
        if raw.dataset is not None and raw.dataset != given.name:
            raise InputError(f"--dataset {given.name} conflicts with {raw.dataset_from}, which names {raw.dataset}",
                             src)
        recorded = (raw.source_dataset or "").lower()
        if recorded and recorded != given.name:
            raise InputError(f"--dataset {given.name} conflicts with the input's recorded source_dataset "
                             f"{raw.source_dataset!r}", src)
        return given
    if raw.dataset is None:
        return None
    preset = get_preset(raw.dataset)
    notes.append(f"dataset {preset.name} from {raw.dataset_from}: its preset's classes and normalisation apply "
                 f"(--dataset {preset.name} says the same; another --dataset is refused)")
    report["dataset"] = f"{preset.name}, named by {raw.dataset_from}"
    return preset


def _zca_space(raw: RawSet, options: ConvertOptions, images, notes, report, src) -> str:
    """The space the float images are in, ZCA decided by the one rule (README, converters):

    - ``--zca`` (or ``--zca-stats``): ZCA-whitened; refused when the input records another space
      (``raw.space_from``);
    - ``--no-zca`` (``options.zca is False``): as the input reads; refused when the input says ZCA
      (``raw.zca_evidence``: a folder or file name with a ``zca`` token, export metadata, an npz);
    - neither: what the input says decides (a note names it); a mere sign (``raw.zca_hint``: an
      ``images_zca_*.pt`` sibling, DATM's CIFAR configurations) is refused in one line naming the
      evidence and both flags -- ZCA-whitened values stored as normalised pixels would be
      read, shown and labeled as pixels without a word.
    """
    if images.dtype == np.uint8:
        if options.zca:
            raise InputError("images are uint8 pixels, so --zca/--zca-stats do not apply", src)
        return raw.space
    said = raw.zca_evidence or ("the input's space" if raw.space == "zca" else None)
    if options.zca:
        if raw.space != "zca" and raw.space_from:
            raise InputError(f"--zca contradicts {raw.space_from}: leave --zca out", src)
        report["zca"] = "ZCA-whitened (--zca)"
        return "zca"
    if options.zca is False:
        if said:
            raise InputError(f"--no-zca contradicts {said}, which says the images are ZCA-whitened: leave --no-zca "
                             "out", src)
        if raw.zca_hint:
            report["zca"] = f"not ZCA-whitened (--no-zca; sign: {raw.zca_hint})"
        return raw.space
    if said:
        notes.append(f"images are ZCA-whitened: {said} says so")
        report["zca"] = f"ZCA-whitened: {said} says so"
        return "zca"
    if raw.zca_hint and not raw.space_from:
        raise InputError(f"the images may be ZCA-whitened ({raw.zca_hint}): say which with --zca (whitened; kept as "
                         "float in space zca, or --zca-stats to invert) or --no-zca (normalised pixels)", src)
    return raw.space


def _same(a, b) -> bool:
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=0, atol=1e-6))


def _normalisation(raw: RawSet, options: ConvertOptions, preset, images: np.ndarray, space: str, notes, report, src):
    """(mean, std) by the precedence of the module docstring."""
    if raw.mean is not None:
        if options.mean is not None and not (_same(options.mean, raw.mean) and _same(options.std, raw.std)):
            raise InputError(f"--mean/--std disagree with the input's own normalisation (mean "
                             f"{np.round(np.asarray(raw.mean, np.float64), 4).tolist()}, std "
                             f"{np.round(np.asarray(raw.std, np.float64), 4).tolist()}); the images were "
                             "normalised with one of them: leave --mean/--std out", src)
        if preset is not None:
            p_mean, p_std = method_normalization(preset, raw.method)
            if not (_same(p_mean, raw.mean) and _same(p_std, raw.std)):
                notes.append(f"the input records its own mean/std, which differ from preset {preset.name}'s: the "
                             "input's are kept")
        report.setdefault("normalization", "from the input")
        return raw.mean, raw.std
    if options.mean is not None:
        report["normalization"] = "from the command line"
        return options.mean, options.std
    if preset is not None:
        report["normalization"] = f"preset {preset.name} as {raw.method or 'the method'} used it"
        return method_normalization(preset, raw.method)
    if raw.default_mean is not None:
        report["normalization"] = f"{raw.method}'s ImageNet mean/std (no --dataset or --mean/--std given)"
        notes.append(f"normalisation: {raw.method}'s ImageNet mean/std (give --dataset or --mean/--std otherwise)")
        return raw.default_mean, raw.default_std
    if images.dtype == np.uint8 or space == "pixel01":
        report["normalization"] = "computed from the images (0..1 scale)"
        notes.append("mean/std not given (--dataset or --mean/--std): computed from the images themselves "
                     "on the 0..1 scale")
        return channel_stats(images)
    raise InputError(f"float images in space {space} need the normalisation that was applied: give --dataset NAME "
                     "(presets: cifar10, cifar100, tinyimagenet, imagenet, imagenette, ...) or --mean and --std", src)


def finish(raw: RawSet, output: Path, options: ConvertOptions, converter: str) -> ConversionResult:
    """Turn a converter's :class:`RawSet` into a D_LA file, taking every decision of the module
    docstring the same way for every converter."""
    notes, report = list(raw.notes), dict(raw.report)
    src = raw.inputs[0] if raw.inputs else None
    labels_src = raw.labels_input or src
    images = raw.images
    if images.ndim != 4:
        raise ShapeError(f"images must be (M, K, H, W), got shape {images.shape}", src)
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise InputError(f"images must be uint8 or floating point, got {images.dtype}", src)
    m, k = images.shape[:2]
    bad = 0 if images.dtype == np.uint8 else sum(int(np.count_nonzero(~np.isfinite(block)))
                                                 for _, block in blocks(images))
    if bad:
        raise InputError(f"images contain {bad} NaN or infinite value(s); they are neither pixels nor "
                         "storable floats", src)
    preset = _dataset(raw, options, notes, report, src)

    # labels: hard indices as they are; soft labels -> /soft_labels with the argmax as hard label
    soft, labels = raw.soft, raw.labels
    if soft is not None:
        if soft.ndim != 2 or soft.shape[0] != m:
            raise ShapeError(f"soft labels must be ({m}, C), got {soft.shape}", labels_src)
        if labels is None:
            labels = soft.argmax(axis=1)
            report["hard_labels"] = f"argmax of the {raw.soft_kind}"
            notes.append(f"hard labels are the argmax of the {raw.soft_kind}")
    if labels is None:
        raise InputError("no labels found", src)
    labels = np.asarray(labels).reshape(-1)
    if labels.shape != (m,):
        raise InputError(f"{m} images but {labels.shape[0]} labels", labels_src)
    num_classes = _num_classes(raw, options, preset, labels, notes, report, src)
    if soft is not None and soft.shape[1] != num_classes:
        raise ShapeError(f"soft labels must have shape ({m}, {num_classes}), got {soft.shape}", labels_src)

    # ZCA: inverted with the statistics (then 0..1 pixels, no mean/std step), else kept as float
    space = _zca_space(raw, options, images, notes, report, src)
    mean = std = None
    if space == "zca" and options.zca_stats is not None:
        mu, inv = load_zca_stats(Path(options.zca_stats))
        images = invert_zca(np.asarray(images), mu, inv, Path(options.zca_stats))
        space = "pixel01"                       # MTT's ZCA acts on ToTensor() pixels in [0, 1]
        mean, std = (0.0,) * k, (1.0,) * k
        report["zca"] = "inverted with the given statistics; pixels are on the 0..1 scale"
        report["normalization"] = "none (ZCA pipeline: no mean/std step)"
    if mean is None:
        mean, std = _normalisation(raw, options, preset, images, space, notes, report, src)
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    if mean.shape != (k,) or std.shape != (k,):
        raise ShapeError(f"mean and std must have {k} values (one per channel), got {mean.size} and {std.size}", src)

    quantizer = None
    keep = images.dtype != np.uint8 and (options.keep_float or raw.stored_dtype in ("float16", "float32")
                                         or space == "zca")
    if images.dtype == np.uint8:
        stored, image_dtype, out_space = images, "uint8", None
    elif keep:
        image_dtype = "float16" if images.dtype == np.float16 or raw.stored_dtype == "float16" else "float32"
        stored, out_space = images.astype(image_dtype, copy=False), space
        if options.keep_float:
            why = "--keep-float"
        elif raw.stored_dtype in ("float16", "float32"):
            why = f"the input's image_dtype {raw.stored_dtype}"
        else:
            why = "ZCA-whitened images have no uint8 form without the inverse transform (--zca-stats)"
            notes.append(f"images stored as {image_dtype} in space zca (ZCA-whitened: no uint8 form without "
                         "--zca-stats)")
        report["images"] = f"kept as {image_dtype} (space {space}, {why})"
    elif space not in ("pixel01", "normalized"):
        raise InputError(f"float images in space {space} have no uint8 form: give their space (pixel01, normalized, "
                         "zca) or --keep-float", src)
    else:
        quantizer = Uint8Quantizer(space, mean, std, k)     # block by block as the writer takes them
        stored = as_rows(images).map(quantizer, dtype=np.uint8)
        image_dtype, out_space = "uint8", None

    dense_spec, dense = None, raw.dense
    if dense is None and options.codec is not None:
        raise InputError(f"the input holds no dense labels (key dense_labels), so --codec {options.codec} does not "
                         "apply: leave it out", src)
    if dense is not None:
        n = int(raw.dense_n)
        if dense.ndim != 3 or dense.shape != (m, n * n, num_classes):
            raise ShapeError(f"dense_labels must have shape ({m}, {n * n}, {num_classes}) for n = {n} and "
                             f"{num_classes} classes, got {dense.shape}", src)
        codec = parse_codec(options.codec or raw.codec or "float32")
        if options.codec is None and raw.codec is not None:
            report["codec"] = "as the input records it (ladd_metadata)"
        if raw.dense_stored is not None:
            if raw.codec is not None and codec == parse_codec(raw.codec):
                codec = preencoded(codec, raw.dense_stored, dense, num_classes, src)
                report["dense_rows"] = "written as the input stores them (dense_stored_*)"
            else:
                notes.append(f"--codec {codec.text()} is not the recorded codec {raw.codec}: dense labels encoded "
                             "afresh from dense_labels")
        dense_spec = DenseSpec(n=n, ratio=float(raw.dense_ratio), codec=codec,
                               temperature=raw.dense_temperature, labeler=dict(raw.dense_labeler))

    root = dict(raw.root_attrs)
    if preset is not None and preset.imagenet_ids:
        root["imagenet_class_ids"] = np.asarray(preset.imagenet_ids, np.int64)
    if preset is not None:
        report["preset"] = preset.name
    if raw.ipc_known:
        ipc = raw.ipc
    else:
        ipc = m // num_classes if num_classes and m % num_classes == 0 else None
    writer = DLAWriter(output, num_classes=num_classes, image_shape=stored.shape[1:], mean=mean, std=std,
                       image_dtype=image_dtype, space=out_space, dense=dense_spec,
                       soft_kind=raw.soft_kind if soft is not None else None, soft_dtype=raw.soft_dtype,
                       class_names=_class_names(raw, options, num_classes, preset, src),
                       source_dataset=preset.name if preset else raw.source_dataset, distillation=raw.method,
                       ipc=ipc,
                       converter=converter, inputs=raw.inputs, report=report, root_attrs=root,
                       overwrite=options.overwrite, stream=None if raw.stream is None else raw.stream.spec)
    if raw.input_keys is not None:
        keys = raw.input_keys
        blame = lambda exc: (src, f"key {keys.get(exc.where, exc.where)}")  # noqa: E731
    else:
        blame = lambda exc: (labels_src if exc.where in (LABELS_PATH, SOFT_LABELS_PATH) else src, exc.where)  # noqa: E731
    measured = None
    if quantizer is not None:
        measured = lambda: {"uint8_conversion": quantizer.report()}  # noqa: E731
    if soft is not None:
        with np.errstate(over="ignore"):     # a float64 logit beyond float32 becomes inf: the writer refuses it
            soft = soft.astype(np.float32, copy=False)
    write_batches(writer, stored, labels, dense=dense, soft=soft, blame=blame, measured=measured,
                  after=None if raw.stream is None else raw.stream.write)
    if quantizer is not None:
        loss = quantizer.report()
        notes.append(f"uint8 conversion: {loss['clipped_fraction']:.2%} of values clipped, "
                     f"PSNR {loss['psnr_db']:.1f} dB against the float images")
    return ConversionResult(output=output, num_images=m, notes=notes, converter=converter, report=report)

