"""What every converter shares: safe loading of ``.pt`` files, the float -> uint8 step with a report
of what it lost, ZCA inversion, and writing the base set D.

A converter module only finds its files and reads them into a :class:`RawSet`; :func:`finish`
turns any RawSet into a verified-by-construction D_LA base file.
"""

from __future__ import annotations

import pickle
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, LaddError
from ..pixels import to_uint8
from ..presets import get_preset, normalization
from ..writer import DLAWriter
from . import ConversionResult, ConvertOptions

BATCH = 256


# -- safe loading -----------------------------------------------------------------------------
def _numpy_scalar_globals() -> list:
    """The exact numpy globals a DC results dict needs (numpy scalars in ``accs_all_exps``)."""
    import numpy

    found = []
    for module, name in (("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")):
        try:
            mod = __import__(module, fromlist=[name])
            found.append(getattr(mod, name))
        except (ImportError, AttributeError):
            pass
    found.append(numpy.dtype)
    found += [type(numpy.dtype(t)) for t in ("float64", "float32", "int64", "int32")]
    return found


def load_pt(path: Path, allow_numpy_scalars: bool = False):
    """``torch.load(weights_only=True)``; a pickle that asks for anything else is refused unread.

    With ``allow_numpy_scalars`` the exact numpy globals of DC results dicts are allow-listed.
    """
    if not path.is_file():
        raise InputError("no such file", path)
    import torch  # only the .pt readers need torch; everything else in the converters is numpy

    try:
        if allow_numpy_scalars:
            with torch.serialization.safe_globals(_numpy_scalar_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else "")
        raise InputError(f"refused: the pickle asks for code or objects outside the allow-list, and was not "
                         f"executed ({detail.strip()[:160]})", path) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        lines = str(exc).strip().splitlines()      # an empty file raises EOFError with no message
        detail = lines[0][:160] if lines else ("empty file" if path.stat().st_size == 0 else type(exc).__name__)
        raise InputError(f"not a readable torch file (truncated or corrupt?): {detail}", path) from None


def as_array(value, path: Path, what: str) -> np.ndarray:
    """A tensor (possibly with requires_grad) or array as a detached numpy array."""
    torch = sys.modules.get("torch")       # a tensor can only exist once torch is imported
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise InputError(f"{what} must be a tensor, found {type(value).__name__}", path)


# -- the raw set a converter reads ----------------------------------------------------------------
@dataclass
class RawSet:
    images: np.ndarray                 # (M, K, H, W) float (space below) or uint8
    space: str                         # normalized | pixel01 | zca | pixel255
    labels: np.ndarray | None = None   # (M,) hard labels
    soft: np.ndarray | None = None     # (M, C) soft labels
    soft_kind: str | None = None       # logits | probs
    method: str = "unknown"
    inputs: list[Path] = field(default_factory=list)
    root_attrs: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    zca_hint: str | None = None        # why the images may be ZCA-whitened
    labels_input: Path | None = None   # the file holding the labels, when not inputs[0] (errors name it)
    mean: tuple | None = None          # statistics the method applied, when the files say so
    std: tuple | None = None


def load_zca_stats(path: Path, eps: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """ZCA statistics from an ``.npz``: ``mean`` (D,) and ``inverse`` (D, D) as saved, or the
    training images ``train_images`` (N, K, H, W) in 0..1 to refit kornia's transform with ``eps``."""
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


def _read_class_names(options: ConvertOptions, num_classes: int, preset) -> list[str] | None:
    if options.class_names is not None:
        names = list(options.class_names)
    elif preset is not None and preset.class_names is not None:
        names = list(preset.class_names)
    else:
        return None
    if len(names) != num_classes:
        raise InputError(f"{len(names)} class names given for {num_classes} classes")
    return names


def finish(raw: RawSet, output: Path, options: ConvertOptions, converter: str) -> ConversionResult:
    """Turn a converter's :class:`RawSet` into a D_LA base file (no dense labels)."""
    notes, report = list(raw.notes), dict(raw.report)
    src = raw.inputs[0] if raw.inputs else None
    labels_src = raw.labels_input or src
    images = raw.images
    if images.ndim != 4:
        raise InputError(f"images must be (M, K, H, W), got shape {images.shape}", src)
    m = images.shape[0]
    # min/max show NaN and inf without a full-size temporary
    if images.dtype != np.uint8 and images.size and not (np.isfinite(images.min()) and np.isfinite(images.max())):
        bad = int(np.count_nonzero(~np.isfinite(images)))
        raise InputError(f"images contain {bad} NaN or infinite value(s); they are neither pixels nor "
                         "storable floats", src)
    preset = get_preset(options.dataset) if options.dataset else None

    # labels: hard indices as they are; soft labels -> /soft_labels with the argmax as hard label
    soft, labels = raw.soft, raw.labels
    if soft is not None:
        if soft.ndim != 2 or soft.shape[0] != m:
            raise InputError(f"soft labels must be ({m}, C), got {soft.shape}", src)
        if labels is None:
            labels = soft.argmax(axis=1)
            report["hard_labels"] = f"argmax of the {raw.soft_kind}"
            notes.append(f"hard labels are the argmax of the {raw.soft_kind}")
    if labels is None:
        raise InputError("no labels found", src)
    labels = np.asarray(labels).reshape(-1)
    if labels.shape != (m,):
        raise InputError(f"{m} images but {labels.shape[0]} labels", src)
    num_classes = (soft.shape[1] if soft is not None else
                   options.num_classes or (preset.num_classes if preset else int(labels.max()) + 1))
    if preset is not None and num_classes != preset.num_classes:
        raise InputError(f"preset {preset.name} has {preset.num_classes} classes, the files {num_classes}", src)

    # normalisation: the files, then the command line, then the preset (with the method's quirk)
    if raw.mean is not None:
        mean, std = raw.mean, raw.std
    elif options.mean is not None:
        mean, std = options.mean, options.std
        report["normalization"] = "from the command line"
    elif preset is not None:
        mean, std = normalization(preset, raw.method)
        report["normalization"] = f"preset {preset.name} as {raw.method} used it"
    elif images.dtype == np.uint8 or raw.space == "pixel01":
        mean, std = (0.0,) * images.shape[1], (1.0,) * images.shape[1]
        report["normalization"] = "none given: mean 0, std 1"
        notes.append("no --dataset or --mean/--std: recorded normalisation mean 0, std 1")
    else:
        raise InputError("float images need their normalisation: give --dataset NAME (presets: "
                         "cifar10, cifar100, tinyimagenet, imagenet, imagenette, ...) or --mean and --std", src)

    space = raw.space
    if options.zca:
        space = "zca"
    elif raw.zca_hint and images.dtype != np.uint8:
        notes.append(f"warning: {raw.zca_hint}; if these images are ZCA-whitened, convert with --zca")
        report["zca_warning"] = raw.zca_hint
    if space == "zca":
        if options.zca_stats is not None:
            mu, inv = load_zca_stats(Path(options.zca_stats))
            images = invert_zca(images, mu, inv, Path(options.zca_stats))
            space = "pixel01"                       # MTT's ZCA acts on ToTensor() pixels in [0, 1]
            mean, std = (0.0,) * images.shape[1], (1.0,) * images.shape[1]
            report["zca"] = "inverted with the given statistics; pixels are on the 0..1 scale"
            report["normalization"] = "none (ZCA pipeline: no mean/std step)"
        elif not options.keep_float:
            raise InputError("ZCA-whitened images cannot become uint8 pixels without the inverse transform: pass "
                             "--zca-stats FILE (mean + inverse, or the training images), or --keep-float to "
                             "store them as they are (space zca)", src)

    if images.dtype == np.uint8:
        stored, image_dtype, out_space = images, "uint8", None
    elif options.keep_float:
        stored = images.astype(np.float32, copy=False)
        image_dtype, out_space = "float32", space
        report["images"] = f"kept as float32 (space {space})"
    else:
        stored, loss = to_uint8(images, space, mean, std)
        report["uint8_conversion"] = loss
        image_dtype, out_space = "uint8", None
        notes.append(f"uint8 conversion: {loss['clipped_fraction']:.2%} of values clipped, "
                     f"PSNR {loss['psnr_db']:.1f} dB against the float images")

    root = dict(raw.root_attrs)
    if preset is not None and preset.imagenet_ids:
        root["imagenet_class_ids"] = np.asarray(preset.imagenet_ids, np.int64)
    if options.dataset:
        report["preset"] = preset.name
    ipc = m // num_classes if m % num_classes == 0 else None
    writer = DLAWriter(output, num_classes=num_classes, image_shape=stored.shape[1:], mean=mean, std=std,
                       image_dtype=image_dtype, space=out_space,
                       soft_kind=raw.soft_kind if soft is not None else None,
                       class_names=_read_class_names(options, num_classes, preset),
                       source_dataset=preset.name if preset else None, distillation=raw.method, ipc=ipc,
                       converter=converter, inputs=raw.inputs, report=report, root_attrs=root,
                       overwrite=options.overwrite)
    write_batches(writer, stored, labels, soft=None if soft is None else soft.astype(np.float32, copy=False),
                  blame=lambda exc: (labels_src if exc.where in ("/labels", "/soft_labels") else src, exc.where))
    return ConversionResult(output=output, num_images=m, notes=notes)


def write_batches(writer: DLAWriter, images: np.ndarray, labels: np.ndarray, *, dense: np.ndarray | None = None,
                  soft: np.ndarray | None = None, blame=None) -> None:
    """Append the arrays in batches and close the writer. The writer names the destination in its
    errors, but the defect is in the input: ``blame(exc) -> (path, where)`` re-points the error."""
    with writer:
        for start in range(0, len(images), BATCH):
            stop = min(len(images), start + BATCH)
            try:
                writer.append(images[start:stop], labels[start:stop],
                              dense=None if dense is None else dense[start:stop],
                              soft=None if soft is None else soft[start:stop])
            except LaddError as exc:
                if blame is None:
                    raise
                path, where = blame(exc)
                raise type(exc)(exc.message, path, where) from None
