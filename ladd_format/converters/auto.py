"""Converter ``auto``: recognise a run folder or file by its layout and hand it to the right converter,
saying which (a note ``auto: detected <format> (reason)``). What it looks for, in order:

- a file: ``*.npz`` -> npz; ``res_*.pt`` -> dc; ``images.pt`` -> tensors; ``images_<it>.pt`` -> its
  run folder's family (below), converting that file;
- ``images_*.pt`` + ``labels_*.pt`` -> GLaD if iterations are zero-padded to 5 digits
  (``images_00500.pt``); DATM if ``lr_*.pt`` exists or the labels are 2-D float logits; TESLA if
  they are 2-D probabilities; else MTT;
- ``images.pt`` + ``labels.pt`` -> tensors; ``res_*.pt`` -> dc;
- ``new???/class???_id???.jpg`` -> sre2l; ``syn_data/`` or 5-digit class folders -> rded;
  other class folders holding images -> folder.

Anything else is refused with the list of what was looked for.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InputError, LaddError
from . import _REGISTRY, ConversionResult, ConvertOptions, register_converter
from .common import as_array, load_pt
from .images import class_folders, image_files
from .torch_runs import soft_kind_of as soft_kind

LOOKED_FOR = ("images_*.pt + labels_*.pt (mtt, glad, datm, tesla), images.pt + labels.pt (tensors), res_*.pt (dc), "
              "an .npz file (npz), new???/class???_id???.jpg (sre2l), syn_data/ or 5-digit class folders (rded), "
              "class folders of images (folder)")
ITERATION = re.compile(r"images_(\d+)\.pt")


def _labels_kind(labels_file: Path) -> str | None:
    """``logits`` / ``probs`` for 2-D float labels, None otherwise."""
    labels = as_array(load_pt(labels_file), labels_file, "labels")
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.floating):
        return None
    return soft_kind(labels)


def run_family(folder: Path, images_file: Path | None, options: ConvertOptions) -> tuple[str, str]:
    """Which trajectory-matching code base wrote this run folder, and why."""
    iterations = [m.group(1) for p in folder.glob("images_*.pt") if (m := ITERATION.fullmatch(p.name))]
    padded = sorted(s for s in iterations if len(s) == 5 and s.startswith("0"))
    if padded:
        return "glad", f"iterations zero-padded to 5 digits, e.g. images_{padded[0]}.pt"
    lr = sorted(folder.glob("lr_*.pt"))
    if lr:
        return "datm", f"learned learning rate file {lr[0].name}"
    if images_file is not None:
        labels_file = images_file.with_name(images_file.name.replace("images", "labels", 1))
    else:
        tag = "best" if options.iteration is None else str(options.iteration)
        labels_file = folder / f"labels_{tag}.pt"
        if not labels_file.exists():
            labels_file = next(iter(sorted(folder.glob("labels_*.pt"))), labels_file)
    if labels_file.exists():
        kind = _labels_kind(labels_file)
        if kind == "logits":
            return "datm", f"{labels_file.name} holds 2-D float logits"
        if kind == "probs":
            return "tesla", f"{labels_file.name} holds 2-D probabilities"
    return "mtt", "images_*.pt + labels_*.pt with class-index labels"


def detect(source: Path, options: ConvertOptions) -> tuple[str, str]:
    """``(format, reason)`` for ``source``; :class:`InputError` when no layout matches."""
    if source.is_file():
        name = source.name
        if source.suffix.lower() == ".npz":
            return "npz", "an .npz file"
        if name.startswith("res_") and name.endswith(".pt"):
            return "dc", "a res_*.pt results file"
        if name == "images.pt":
            return "tensors", "an images.pt file"
        if ITERATION.fullmatch(name) or name == "images_best.pt":
            return run_family(source.parent, source, options)
        raise InputError(f"auto: not a known input file; looked for {LOOKED_FOR}", source)
    if not source.is_dir():
        raise InputError("no such file or folder", source)
    if any(source.glob("images_*.pt")) and any(source.glob("labels_*.pt")):
        return run_family(source, None, options)
    if (source / "images.pt").is_file() and (source / "labels.pt").is_file():
        return "tensors", "images.pt + labels.pt"
    if any(source.glob("res_*.pt")):
        return "dc", "a res_*.pt results file"
    folders = class_folders(source)
    for folder in folders:
        if re.fullmatch(r"new\d{3,}", folder.name) and any(
                re.fullmatch(r"class\d{3,}_id\d{3,}\.jpg", p.name) for p in folder.iterdir()):
            return "sre2l", f"folders new???/ with class???_id???.jpg files, e.g. {folder.name}/"
    if (source / "syn_data").is_dir():
        return "rded", "a syn_data/ folder"
    if any(re.fullmatch(r"\d{5}", f.name) for f in folders):
        return "rded", "5-digit class folders"
    if any(image_files(f) for f in folders):
        return "folder", "class folders holding images"
    raise InputError(f"auto: not a known layout; looked for {LOOKED_FOR}", source)


@register_converter("auto")
def convert(source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
    fmt, reason = detect(source, options)
    try:
        result = _REGISTRY[fmt](source, output, options)
    except LaddError as exc:                 # say what was chosen, on the same single line
        raise type(exc)(f"{exc.message} [auto: detected {fmt} ({reason})]", exc.path, exc.where) from None
    result.notes.insert(0, f"auto: detected {fmt} ({reason})")
    return result
