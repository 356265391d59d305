"""The run-folder converters: the trajectory-matching family (``mtt``, ``glad``, ``datm``,
``tesla``) and ``tensors`` read ``images_*.pt`` / ``labels_*.pt`` tensors (facts in
``docs/upstream-formats.md``) through one base class, :class:`RunFolder`, whose hooks hold what
differs between the code bases; each converter's module states its own:

- file naming: :attr:`RunFolder.padding` (GLaD pads iterations to 5 digits) and
  :meth:`RunFolder.images_name` (``tensors`` reads unsuffixed ``images.pt``);
- the label kind: :attr:`RunFolder.label_kind` (class ``indices``; DATM's ``logits``; TESLA's
  ``probs``; None: decided by the rows);
- the learned learning rate: :attr:`RunFolder.saves_lr` (DATM), its sniff evidence; an
  ``lr_<it>.pt`` beside the images is read by every run converter (root attribute ``learned_lr``);
- normalisation: :meth:`~ladd_format.converters.Converter.normalization` (GLaD's default mean);
- ZCA: :meth:`RunFolder.zca_sign` (DATM's CIFAR configurations);
- the sniff evidence: :meth:`RunFolder.evidence`, asked in :attr:`RunFolder.rank` order by
  :func:`recognise`, so that at most one run converter claims a folder.

Images are float32 normalised (or ZCA) tensors as the methods save them; a uint8 tensor is read as
pixels. INPUT is a run folder (``*_best.pt``, or ``--iteration N``; a folder without
``images_best.pt`` but with DD-Ranking's unsuffixed ``images.pt`` is read as that) or the images
file itself (the labels file is its sibling with ``images`` replaced by ``labels``; ``lr`` likewise
for the learned learning rate, recorded as the root attribute ``learned_lr``). An unsuffixed
``.../<DATASET>/IPC<k>/images.pt`` (DD-Ranking's published sets) names its dataset: ``finish``
applies that preset (``ddranking.dataset_folder``; ``CIFAR10_ZCA`` is cifar10).

ZCA: a ``zca`` token in the images file's, its folder's or the ``<DATASET>`` folder's name says the
images are whitened (``ddranking.zca_name``; space ``zca``); an ``images_zca_*.pt`` sibling or a
method's :meth:`RunFolder.zca_sign` is only a sign (:func:`zca_signs`), which ``finish`` refuses
without ``--zca`` or ``--no-zca``. A ``ladd export --format ddranking`` folder's ``metadata.json``
overrides both and gives method, space, order and the rest (:mod:`.exported`).

For DD-Ranking's unsuffixed ``images.pt`` + ``labels.pt`` the same evidence decides (``lr.pt`` or
2-D logits -> DATM, 2-D probabilities -> TESLA); with 1-D class indices and no ``lr.pt`` the files
do not tell the method (MTT, GLaD, TESLA and DC/DSA/DM all save class indices), so it is
``tensors``, which records no ``distillation`` rather than a guessed one.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import InputError, LaddError
from . import COMMON, FLOAT_IMAGES, _REGISTRY, ConversionResult, Converter, ConvertOptions, Option
from .ddranking import dataset_folder, zca_name
from .exported import METADATA, apply_ddranking, export_format, load_metadata
from .inputs import as_array, load_pt
from .rawset import RawSet, finish

#: ``--iteration N``: read ``images_<N>.pt`` (padded as the code base pads) instead of ``images_best.pt``
ITERATION = Option("iteration", "int", "Run folders: images_<N>.pt instead of images_best.pt.", common=False)
ITERATION_FILE = re.compile(r"images_(\d+)\.pt")
#: the files a run writes: images_<it>.pt or images_best.pt (not images_zca_*.pt, not DC-fork names)
RUN_IMAGES = re.compile(r"images_(\d+|best)\.pt")
RUN_LR = re.compile(r"lr_(\d+|best)\.pt")
UNSUFFIXED = "images.pt"
#: what a method saves as labels: class indices, logits, probabilities, or None (read by the rows)
LABEL_KINDS = ("indices", "logits", "probs", None)


@dataclass
class Evidence:
    """What a run folder (or one of its images files) shows, for the converters' evidence hooks.

    ``unsuffixed``: DD-Ranking's ``images.pt`` + ``labels.pt``; ``iterations``: the ``<it>`` of
    the folder's ``images_<it>.pt``; ``lr_files``: ``lr_<it|best>.pt`` (or ``lr.pt`` beside
    unsuffixed files); ``labels_file``: the labels whose kind is read, when asked."""

    folder: Path
    unsuffixed: bool
    iterations: tuple[str, ...] = ()
    lr_files: tuple[Path, ...] = ()
    labels_file: Path | None = None

    @cached_property
    def labels_kind(self) -> str | None:
        """``logits`` / ``probs`` for 2-D float labels, None otherwise (or unreadable); read once."""
        if self.labels_file is None or not self.labels_file.exists():
            return None
        return _labels_kind(self.labels_file)


class RunFolder(Converter):
    """A converter of ``images_<it>.pt`` + ``labels_<it>.pt`` run folders; subclasses state their
    code base's facts in the class attributes and hooks below (module docstring)."""

    code_base: str = ""                # the code base's name as its authors write it (messages)
    padding: int = 0                   # digits iterations are zero-padded to in file names (0: none)
    label_kind: str | None = "indices"  # what the method saves as labels (LABEL_KINDS)
    records_method: bool = True        # False: the files do not say the method (tensors)
    saves_lr: bool = False             # the method saves its learned learning rate (lr_<it>.pt): evidence of it
    rank: int = 10                     # the order evidence is asked in (lower first): one claims a run
    options = COMMON + FLOAT_IMAGES + (ITERATION,)

    def images_name(self, iteration: int | None) -> str:
        """The images file of ``iteration`` (None: the best)."""
        if iteration is None:
            return "images_best.pt"
        return f"images_{iteration:0{self.padding}d}.pt" if self.padding else f"images_{iteration}.pt"

    def evidence(self, seen: Evidence) -> str | None:
        """Why ``seen`` is this code base's run (a reason), or None."""
        return None

    def zca_sign(self, dataset: str | None) -> str | None:
        """A sign that the method's images of ``dataset`` may be ZCA-whitened, or None."""
        return None

    def sniff(self, path: Path) -> str | None:
        found = recognise(path)
        return found[1] if found is not None and found[0] == self.name else None

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        return finish(self.read(source, options), output, options, self.name)

    def run_files(self, source: Path, iteration: int | None) -> tuple[Path, Path, Path | None]:
        """(images file, labels file, learning-rate file or None) of a run folder or an images file."""
        if source.is_dir():
            name = self.images_name(iteration)
            fallback = iteration is None and name != UNSUFFIXED
            if fallback and not (source / name).exists() and (source / UNSUFFIXED).exists():
                name = UNSUFFIXED                # DD-Ranking's published sets: images.pt, labels.pt, lr.pt
            images = source / name
            if not images.exists():
                found = sorted(p.name for p in source.glob("images*.pt"))[:6]
                also = " (nor DD-Ranking's unsuffixed images.pt)" if fallback else ""
                hint = f"; {self.code_base} pads iterations to {self.padding} digits" if self.padding else ""
                raise InputError(f"no {images.name}{also} in this run folder (found: "
                                 f"{', '.join(found) or 'no images*.pt'}){hint}", source)
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

    def read(self, source: Path, options: ConvertOptions) -> RawSet:
        """The run's :class:`RawSet` (module docstring)."""
        images_file, labels_file, lr_file = self.run_files(source, options.get("iteration"))
        known = self.name if self.records_method else None   # tensors: the method is not in the files
        exported = None
        if images_file.name == UNSUFFIXED and (images_file.parent / METADATA).exists():
            meta = load_metadata(images_file.parent)         # a damaged metadata.json is refused, not passed over
            if meta.get("format") == "ddranking":
                exported, known = meta, None                 # the export's metadata says how to read the labels
        kind = exported.get("soft_labels_kind") if exported is not None else None
        label_kind = self.label_kind if exported is None else ("indices" if self.label_kind == "indices" else None)
        raw = read_pair(images_file, labels_file, lr_file, known, label_kind=label_kind,
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
            raw.zca_hint = zca_signs(images_file, self, options.dataset or raw.dataset)
        if exported is not None:
            apply_ddranking(raw, exported, images_file.parent / METADATA)
            recorded = raw.method
            if self.records_method and recorded not in (None, self.name):
                raise InputError(f"{METADATA} records distillation {recorded}, format {self.name} would record "
                                 f"{self.name}: convert with auto or tensors", images_file.parent / METADATA)
            raw.method = recorded if recorded is not None or not self.records_method else self.name
        if raw.method is None and exported is not None:
            raw.notes.append(f"distillation not recorded: the exported file recorded none ({METADATA})")
        elif raw.method is None:
            raw.notes.append("distillation not recorded: images.pt + labels.pt do not say which method made them "
                             "(convert with datm, tesla, mtt, glad or dc to record it)")
        return raw


def zca_signs(images_file: Path, converter: RunFolder, dataset: str | None) -> str | None:
    """Signs that these images may be ZCA-whitened, or None: signs, not a record, so
    ``rawset._zca_space`` asks for --zca or --no-zca."""
    siblings = sorted(images_file.parent.glob("images_zca_*.pt"))
    if siblings:
        return f"the run folder holds {siblings[0].name}, which the ZCA runs write"
    return converter.zca_sign(dataset)


def soft_kind_of(labels: np.ndarray) -> str:
    rows_ok = np.all(labels >= 0) and np.allclose(labels.sum(axis=1), 1, atol=1e-3)
    return "probs" if rows_ok else "logits"


def read_pair(images_file: Path, labels_file: Path, lr_file: Path | None, method: str | None,
              label_kind: str | None = None, soft_kind: str | None = None) -> RawSet:
    """The images, labels (and learned learning rate) tensors of one set, made by ``method`` (None:
    unknown). ``label_kind`` is what the method saves (:data:`LABEL_KINDS`): ``indices`` refuses
    2-D float labels, ``logits`` / ``probs`` read them so, None decides by their rows -- unless
    ``soft_kind`` (what an export's metadata records) says."""
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
        if label_kind == "indices":
            raise InputError(f"{method} saves int64 class indices, these labels are float {labels.shape}: "
                             "convert with datm (logits) or tesla (probabilities)", labels_file)
        kind = soft_kind or label_kind or soft_kind_of(labels)
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


def run_converters() -> list[RunFolder]:
    """The registered run-folder converters, in the order their evidence is asked (:attr:`RunFolder.rank`)."""
    return sorted((c for c in _REGISTRY.values() if isinstance(c, RunFolder)), key=lambda c: (c.rank, c.name))


def _evidence(path: Path) -> Evidence | None:
    """What ``path`` shows: a run folder of ``images_*.pt`` + ``labels_*.pt``, one of its
    ``images_<it>.pt`` / ``images_best.pt`` files, or DD-Ranking's unsuffixed ``images.pt`` (+
    ``labels.pt``) folder or file; None for anything else. Run files come before an unsuffixed
    ``images.pt`` in the same folder. The labels asked about are the images file's sibling, else
    ``labels_best.pt``, else the first ``labels_*.pt``."""
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
    iterations = tuple(m.group(1) for p in folder.glob("images_*.pt") if (m := ITERATION_FILE.fullmatch(p.name)))
    lr = tuple(sorted(p for p in folder.glob("lr_*.pt") if RUN_LR.fullmatch(p.name)))
    if images_file is not None:
        labels_file = images_file.with_name(images_file.name.replace("images", "labels", 1))
    else:
        labels_file = folder / "labels_best.pt"
        if not labels_file.exists():
            labels_file = next(iter(sorted(folder.glob("labels_*.pt"))), labels_file)
    return Evidence(folder, False, iterations, lr, labels_file)


def _unsuffixed(folder: Path) -> Evidence:
    lr = folder / "lr.pt"
    return Evidence(folder, True, (), (lr,) if lr.is_file() else (), folder / "labels.pt")


def _exported(folder: Path) -> tuple[str, str]:
    """For a ``ladd export --format ddranking`` folder: the method its ``metadata.json`` records
    (``tensors`` for a method that is not a run converter's: ``tensors`` records the metadata's)."""
    try:
        recorded = (load_metadata(folder) or {}).get("ladd_metadata", {}).get("distillation")
    except (LaddError, OSError, AttributeError):
        recorded = None
    methods = {c.name for c in run_converters() if c.records_method}
    fmt = recorded if recorded in methods else "tensors"
    said = f"distillation {recorded}" if recorded else "no distillation"
    return fmt, f"ladd export --format ddranking folder, {METADATA} records {said}"


def recognise(path: Path) -> tuple[str, str] | None:
    """``(run converter, reason)`` for ``path``: the first run converter (by rank) whose
    :meth:`RunFolder.evidence` answers for what ``path`` shows (:func:`_evidence`), or the method an
    export's ``metadata.json`` records; None when ``path`` is no run. Never raises."""
    try:
        seen = _evidence(path)
        if seen is None:
            return None
        if seen.unsuffixed and export_format(seen.folder) == "ddranking":
            return _exported(seen.folder)
        for converter in run_converters():
            reason = converter.evidence(seen)
            if reason:
                return converter.name, reason
    except OSError:
        return None
    return None
