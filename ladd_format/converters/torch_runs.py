"""Converters for the trajectory-matching family, whose runs save ``images_*.pt`` / ``labels_*.pt``
tensors (facts in ``docs/upstream-formats.md``):

- ``mtt``: ``images_<it>.pt`` / ``labels_<it>.pt`` (or ``*_best.pt``), int64 labels, images
  normalised with the dataset's mean/std (or ZCA-whitened with ``--zca``);
- ``glad``: the same with 5-digit iterations ``images_00500.pt``, and GLaD's own normalisation;
- ``datm``: labels are learned LOGITS (M, C) -> ``/soft_labels`` (kind logits), hard label = argmax;
  ``lr_<it>.pt`` (the learned learning rate) -> root attribute ``learned_lr``;
- ``tesla``: int64 labels, or with ``--teacher_label`` PROBABILITIES (M, C) -> kind probs;
- ``tensors``: any ``images.pt`` + ``labels.pt`` pair (e.g. DD-Ranking's repackaged DATM outputs,
  with ``lr.pt``); float 2-D labels are probabilities when every row is a distribution, else logits.

INPUT is a run folder (``*_best.pt``, or ``--iteration N``) or the images file itself (the labels
file is its sibling with ``images`` replaced by ``labels``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from . import ConversionResult, ConvertOptions, register_converter
from .common import RawSet, as_array, finish, load_pt

PADDING = {"mtt": 0, "datm": 0, "tesla": 0, "glad": 5, "tensors": 0}


def run_files(source: Path, method: str, iteration: int | None) -> tuple[Path, Path, Path | None]:
    """(images file, labels file, learning-rate file or None) of a run folder or an images file."""
    if source.is_dir():
        if method == "tensors":
            tag = "" if iteration is None else f"_{iteration}"
        elif iteration is None:
            tag = "_best"
        else:
            tag = f"_{iteration:0{PADDING[method]}d}" if PADDING[method] else f"_{iteration}"
        images = source / f"images{tag}.pt"
        if not images.exists():
            found = sorted(p.name for p in source.glob("images*.pt"))[:6]
            raise InputError(f"no {images.name} in this run folder (found: {', '.join(found) or 'no images*.pt'})"
                             + ("; GLaD pads iterations to 5 digits" if method == "glad" else ""), source)
    else:
        images = source
        if not images.exists():
            raise InputError("no such file", images)
        if "images" not in images.name:
            raise InputError("expected an images*.pt file or a run folder", images)
    labels = images.with_name(images.name.replace("images", "labels", 1))
    if not labels.exists():
        raise InputError(f"the labels file {labels.name} is missing beside it", images)
    lr = images.with_name(images.name.replace("images", "lr", 1))
    return images, labels, lr if lr.exists() else None


def zca_signs(images_file: Path, method: str, options: ConvertOptions) -> str | None:
    """Why these images may be ZCA-whitened although --zca was not given, or None."""
    if options.zca:
        return None
    siblings = sorted(images_file.parent.glob("images_zca_*.pt"))
    if siblings:
        return f"the run folder holds {siblings[0].name}, which the ZCA runs write"
    if method == "datm" and (options.dataset or "").startswith("cifar"):
        return "DATM's CIFAR configurations use ZCA"
    return None


def soft_kind_of(labels: np.ndarray) -> str:
    rows_ok = np.all(labels >= 0) and np.allclose(labels.sum(axis=1), 1, atol=1e-3)
    return "probs" if rows_ok else "logits"


def read_run(source: Path, options: ConvertOptions, method: str) -> RawSet:
    images_file, labels_file, lr_file = run_files(source, method, options.iteration)
    images = as_array(load_pt(images_file), images_file, "images").astype(np.float32, copy=False)
    labels = as_array(load_pt(labels_file), labels_file, "labels")
    raw = RawSet(images=images, space="normalized", method=method, inputs=[images_file, labels_file],
                 labels_input=labels_file)
    if images.ndim != 4:
        raise InputError(f"images must be (M, C, H, W), got shape {images.shape}", images_file)
    if labels.shape[0] != images.shape[0]:
        raise InputError(f"{images.shape[0]} images but {labels.shape[0]} labels", labels_file)
    if labels.ndim == 1:
        if not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"1-D labels must be integer class indices, got {labels.dtype}", labels_file)
        raw.labels = labels.astype(np.int64)
    elif labels.ndim == 2 and np.issubdtype(labels.dtype, np.floating):
        if method == "mtt" or method == "glad":
            raise InputError(f"{method} saves int64 class indices, these labels are float {labels.shape}: "
                             "convert with datm (logits) or tesla (probabilities)", labels_file)
        kind = {"datm": "logits", "tesla": "probs"}.get(method) or soft_kind_of(labels)
        if kind == "probs" and soft_kind_of(labels) != "probs":
            raise InputError("tesla teacher labels must be probabilities (rows >= 0 summing to 1)", labels_file)
        raw.soft, raw.soft_kind = labels.astype(np.float32), kind
        if method == "tensors":
            raw.notes.append(f"2-D float labels read as {kind}")
    else:
        raise InputError(f"labels must be (M,) int or (M, C) float, got {labels.dtype} {labels.shape}", labels_file)
    if lr_file is not None:
        lr = as_array(load_pt(lr_file), lr_file, "learning rate")
        if lr.size != 1:
            raise InputError(f"the learning rate must be a scalar, got shape {lr.shape}", lr_file)
        raw.root_attrs["learned_lr"] = float(lr.reshape(()))
        raw.inputs.append(lr_file)
    raw.zca_hint = zca_signs(images_file, method, options)
    return raw


def _converter(method: str):
    def convert(source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        return finish(read_run(source, options, method), output, options, method)
    convert.__name__ = f"convert_{method}"
    convert.__doc__ = f"``{method}`` run folder or images file -> D_LA base set."
    return register_converter(method)(convert)


for _method in ("mtt", "glad", "datm", "tesla", "tensors"):
    _converter(_method)
