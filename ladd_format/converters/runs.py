"""The run-folder reader shared by the trajectory-matching family (``mtt``, ``glad``, ``datm``,
``tesla``), ``tensors`` and the DD-Ranking tensors of ``dc``: their runs save ``images_*.pt`` /
``labels_*.pt`` tensors (facts in ``docs/upstream-formats.md``).

Images are float32 normalised (or ZCA) tensors as the methods save them; a uint8 tensor is read as
pixels. INPUT is a run folder (``*_best.pt``, or ``--iteration N``; a folder without
``images_best.pt`` but with DD-Ranking's unsuffixed ``images.pt`` is read as that) or the images
file itself (the labels file is its sibling with ``images`` replaced by ``labels``; ``lr`` likewise
for the learned learning rate, recorded as the root attribute ``learned_lr``). An unsuffixed
``.../<DATASET>/IPC<k>/images.pt`` (DD-Ranking's published sets) names its dataset: ``finish``
applies that preset (``ddranking.dataset_folder``; ``CIFAR10_ZCA`` is cifar10).

ZCA: a ``zca`` token in the images file's, its folder's or the ``<DATASET>`` folder's name says the
images are whitened (``ddranking.zca_name``; space ``zca``); an ``images_zca_*.pt`` sibling or
DATM on CIFAR is only a sign (:func:`zca_signs`), which ``finish`` refuses without ``--zca`` or
``--no-zca``. A ``ladd export --format ddranking`` folder's ``metadata.json`` overrides both and
gives method, space, order and the rest (:mod:`.exported`).

:func:`family` tells the code bases apart for the converters' ``sniff`` (GLaD pads iterations to 5
digits; DATM saves ``lr_*.pt`` or 2-D float logits; TESLA 2-D probabilities; MTT class indices). For
DD-Ranking's unsuffixed ``images.pt`` + ``labels.pt`` the same evidence decides (``lr.pt`` or 2-D
logits -> DATM, 2-D probabilities -> TESLA); with 1-D class indices and no ``lr.pt`` the files do
not tell the method (MTT, GLaD, TESLA and DC/DSA/DM all save class indices), so it is ``tensors``,
which records no ``distillation`` rather than a guessed one.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from ..errors import InputError, LaddError
from . import ConvertOptions
from .common import RawSet, as_array, load_pt
from .ddranking import dataset_folder, zca_name
from .exported import METADATA, apply_ddranking, export_format, load_metadata

PADDING = {"mtt": 0, "datm": 0, "tesla": 0, "glad": 5, "tensors": 0}
ITERATION = re.compile(r"images_(\d+)\.pt")
#: the files a run writes: images_<it>.pt or images_best.pt (not images_zca_*.pt, not DC-fork names)
RUN_IMAGES = re.compile(r"images_(\d+|best)\.pt")
RUN_LR = re.compile(r"lr_(\d+|best)\.pt")
UNSUFFIXED = "images.pt"
#: the converters that read run files; an export recording another method is read by ``tensors``
RUN_CONVERTERS = ("datm", "tesla", "mtt", "glad")


def run_files(source: Path, method: str, iteration: int | None) -> tuple[Path, Path, Path | None]:
    """(images file, labels file, learning-rate file or None) of a run folder or an images file."""
    if source.is_dir():
        if method == "tensors":
            tag = "" if iteration is None else f"_{iteration}"
        elif iteration is None:
            tag = "_best"
            if not (source / "images_best.pt").exists() and (source / UNSUFFIXED).exists():
                tag = ""                         # DD-Ranking's published sets: images.pt, labels.pt, lr.pt
        else:
            tag = f"_{iteration:0{PADDING[method]}d}" if PADDING[method] else f"_{iteration}"
        images = source / f"images{tag}.pt"
        if not images.exists():
            found = sorted(p.name for p in source.glob("images*.pt"))[:6]
            also = " (nor DD-Ranking's unsuffixed images.pt)" if tag == "_best" else ""
            raise InputError(f"no {images.name}{also} in this run folder (found: {', '.join(found) or 'no images*.pt'})"
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


def zca_signs(images_file: Path, method: str, dataset: str | None) -> str | None:
    """Signs that these images may be ZCA-whitened, or None: signs, not a record, so
    ``common._zca_space`` asks for --zca or --no-zca."""
    siblings = sorted(images_file.parent.glob("images_zca_*.pt"))
    if siblings:
        return f"the run folder holds {siblings[0].name}, which the ZCA runs write"
    if method == "datm" and (dataset or "").startswith("cifar"):
        return "DATM's CIFAR configurations use ZCA"
    return None


def soft_kind_of(labels: np.ndarray) -> str:
    rows_ok = np.all(labels >= 0) and np.allclose(labels.sum(axis=1), 1, atol=1e-3)
    return "probs" if rows_ok else "logits"


def read_pair(images_file: Path, labels_file: Path, lr_file: Path | None, method: str | None,
              indices_only: bool = False, soft_kind: str | None = None) -> RawSet:
    """The images, labels (and learned learning rate) tensors of one set. ``method`` decides how
    2-D float labels are read (``datm`` logits, ``tesla`` probabilities, else by their rows),
    unless ``soft_kind`` (what an export's metadata records) says; ``indices_only`` refuses them
    (methods that save class indices)."""
    images = as_array(load_pt(images_file), images_file, "images")
    if images.dtype != np.uint8:              # uint8 tensors are pixels; float ones the normalised trainer input
        images = images.astype(np.float32, copy=False)
    labels = as_array(load_pt(labels_file), labels_file, "labels")
    raw = RawSet(images=images, space="pixel255" if images.dtype == np.uint8 else "normalized", method=method,
                 inputs=[images_file, labels_file], labels_input=labels_file)
    if images.ndim != 4:
        raise InputError(f"images must be (M, C, H, W), got shape {images.shape}", images_file)
    if labels.ndim == 0:
        raise InputError(f"labels must be (M,) int or (M, C) float, got a scalar {labels.dtype}", labels_file)
    if labels.shape[0] != images.shape[0]:
        raise InputError(f"{images.shape[0]} images but {labels.shape[0]} labels", labels_file)
    if labels.ndim == 1:
        if not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"1-D labels must be integer class indices, got {labels.dtype}", labels_file)
        raw.labels = labels.astype(np.int64)
    elif labels.ndim == 2 and np.issubdtype(labels.dtype, np.floating):
        if indices_only:
            raise InputError(f"{method} saves int64 class indices, these labels are float {labels.shape}: "
                             "convert with datm (logits) or tesla (probabilities)", labels_file)
        kind = soft_kind or {"datm": "logits", "tesla": "probs"}.get(method or "") or soft_kind_of(labels)
        if kind == "probs" and soft_kind_of(labels) != "probs":
            raise InputError("tesla teacher labels must be probabilities (rows >= 0 summing to 1)", labels_file)
        raw.soft, raw.soft_kind = labels.astype(np.float32), kind
        if method is None and soft_kind is None:
            raw.notes.append(f"2-D float labels read as {kind}")
    else:
        raise InputError(f"labels must be (M,) int or (M, C) float, got {labels.dtype} {labels.shape}", labels_file)
    if lr_file is not None:
        lr = as_array(load_pt(lr_file), lr_file, "learning rate")
        if lr.size != 1:
            raise InputError(f"the learning rate must be a scalar, got shape {lr.shape}", lr_file)
        raw.root_attrs["learned_lr"] = float(lr.reshape(()))
        raw.inputs.append(lr_file)
    return raw


def read_run(source: Path, options: ConvertOptions, method: str) -> RawSet:
    images_file, labels_file, lr_file = run_files(source, method, options.iteration)
    known = None if method == "tensors" else method     # tensors: the method is not in the files
    exported = None
    if images_file.name == UNSUFFIXED and (images_file.parent / METADATA).exists():
        meta = load_metadata(images_file.parent)         # a damaged metadata.json is refused, not passed over
        if meta.get("format") == "ddranking":
            exported, known = meta, None                 # the export's metadata says how to read the labels
    kind = exported.get("soft_labels_kind") if exported is not None else None
    raw = read_pair(images_file, labels_file, lr_file, known, indices_only=method in ("mtt", "glad"),
                    soft_kind=kind if kind in ("logits", "probs") else None)
    named = dataset_folder(images_file) if images_file.name == UNSUFFIXED else None
    if named is not None:
        preset, token, ipc = named
        raw.report["ddranking_folder"] = {"dataset": token, "ipc": ipc}
        if preset is not None:
            raw.dataset, raw.dataset_from = preset, f"DD-Ranking's folder {token}/{images_file.parent.name}/"
    if raw.images.dtype != np.uint8:
        raw.zca_evidence = zca_name(images_file)
        if raw.zca_evidence:
            raw.space = "zca"
        raw.zca_hint = zca_signs(images_file, method, options.dataset or raw.dataset)
    if exported is not None:
        apply_ddranking(raw, exported, images_file.parent / METADATA)
        recorded = raw.method
        if method != "tensors" and recorded not in (None, method):
            raise InputError(f"{METADATA} records distillation {recorded}, format {method} would record {method}: "
                             "convert with auto or tensors", images_file.parent / METADATA)
        raw.method = recorded if recorded is not None or method == "tensors" else method
    if raw.method is None and exported is not None:
        raw.notes.append(f"distillation not recorded: the exported file recorded none ({METADATA})")
    elif raw.method is None:
        raw.notes.append("distillation not recorded: images.pt + labels.pt do not say which method made them "
                         "(convert with datm, tesla, mtt, glad or dc to record it)")
    return raw


# -- sniffing --------------------------------------------------------------------------------------
def _labels_kind(labels_file: Path) -> str | None:
    """``logits`` / ``probs`` for 2-D float labels, None otherwise (or unreadable)."""
    try:
        stat = labels_file.stat()
        return _cached_kind(str(labels_file), stat.st_mtime_ns, stat.st_size)
    except (OSError, LaddError):
        return None


@functools.lru_cache(maxsize=8)
def _cached_kind(path: str, mtime_ns: int, size: int) -> str | None:
    """Read once per file version: auto asks datm, tesla and mtt in turn."""
    labels = as_array(load_pt(Path(path)), Path(path), "labels")
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.floating):
        return None
    return soft_kind_of(labels)


def _unsuffixed(folder: Path) -> tuple[str, str]:
    """The code base of DD-Ranking's unsuffixed ``images.pt`` + ``labels.pt`` (module docstring);
    for a ``ladd export --format ddranking`` folder, the method its ``metadata.json`` records
    (``tensors`` for a method that is not a run converter's: ``tensors`` records the metadata's)."""
    if export_format(folder) == "ddranking":
        try:
            recorded = (load_metadata(folder) or {}).get("ladd_metadata", {}).get("distillation")
        except (LaddError, OSError, AttributeError):
            recorded = None
        fmt = recorded if recorded in RUN_CONVERTERS else "tensors"
        said = f"distillation {recorded}" if recorded else "no distillation"
        return fmt, f"ladd export --format ddranking folder, {METADATA} records {said}"
    if (folder / "lr.pt").is_file():
        return "datm", "DD-Ranking images.pt + labels.pt + lr.pt: DATM saves the learned learning rate"
    labels = folder / "labels.pt"
    kind = _labels_kind(labels) if labels.is_file() else None
    if kind == "logits":
        return "datm", "DD-Ranking images.pt + labels.pt holding 2-D float logits, as DATM saves"
    if kind == "probs":
        return "tesla", "DD-Ranking images.pt + labels.pt holding 2-D probabilities, as TESLA's teacher labels"
    return "tensors", ("images.pt + labels.pt with class-index labels and no lr.pt: the method is not in the "
                       "files")


def family(path: Path) -> tuple[str, str] | None:
    """``(code base, reason)`` for a run folder of ``images_*.pt`` + ``labels_*.pt``, one of its
    ``images_<it>.pt`` / ``images_best.pt`` files, or DD-Ranking's unsuffixed ``images.pt`` (+
    ``labels.pt``) folder or file; None for anything else.

    Run files: GLaD if iterations are zero-padded to 5 digits; DATM if ``lr_*.pt`` exists or the
    labels are 2-D float logits; TESLA if they are 2-D probabilities; else MTT. The labels read are
    the images file's sibling, else ``labels_best.pt``, else the first ``labels_*.pt``. Run files
    come before an unsuffixed ``images.pt`` in the same folder. Unsuffixed: :func:`_unsuffixed`."""
    try:
        if path.is_file():
            if path.name == UNSUFFIXED:
                return _unsuffixed(path.parent)
            if not RUN_IMAGES.fullmatch(path.name):
                return None
            folder, images_file = path.parent, path
        elif path.is_dir():
            runs = any(RUN_IMAGES.fullmatch(p.name) for p in path.glob("images_*.pt"))
            if not (runs and any(path.glob("labels_*.pt"))):
                if (path / UNSUFFIXED).is_file() and (path / "labels.pt").is_file():
                    return _unsuffixed(path)
                return None
            folder, images_file = path, None
        else:
            return None
        iterations = [m.group(1) for p in folder.glob("images_*.pt") if (m := ITERATION.fullmatch(p.name))]
        padded = sorted(s for s in iterations if len(s) == 5 and s.startswith("0"))
        if padded:
            return "glad", f"iterations zero-padded to 5 digits, e.g. images_{padded[0]}.pt"
        lr = sorted(p for p in folder.glob("lr_*.pt") if RUN_LR.fullmatch(p.name))
        if lr:
            return "datm", f"learned learning rate file {lr[0].name}"
        if images_file is not None:
            labels_file = images_file.with_name(images_file.name.replace("images", "labels", 1))
        else:
            labels_file = folder / "labels_best.pt"
            if not labels_file.exists():
                labels_file = next(iter(sorted(folder.glob("labels_*.pt"))), labels_file)
    except OSError:
        return None
    kind = _labels_kind(labels_file) if labels_file.exists() else None
    if kind == "logits":
        return "datm", f"{labels_file.name} holds 2-D float logits"
    if kind == "probs":
        return "tesla", f"{labels_file.name} holds 2-D probabilities"
    return "mtt", "images_*.pt + labels_*.pt with class-index labels"


def sniff_family(path: Path, method: str) -> str | None:
    found = family(path)
    return found[1] if found is not None and found[0] == method else None
