"""DD-Ranking's layouts (NUS-HPC-AI-Lab/DD-Ranking, the field's benchmark): the names it gives its
files, read by the converters, and the folder ``ladd export --format ddranking`` writes.

It publishes distilled sets in two layouts (facts in ``docs/upstream-formats.md``):

- ``methods/<METHOD>/distilled/<DATASET>/IPC<k>/images.pt``, ``labels.pt``, ``lr.pt`` -- unsuffixed
  tensors, read by the run converters (``datm``, ``tesla``, ``mtt``, ``glad``; ``tensors`` when the
  labels do not tell the method). :func:`dataset_folder` reads the dataset from the
  ``<DATASET>/IPC<k>`` folder names.
- ``methods/DC-DSA-DM/result/images_<METHOD>_<DATASET>_<ipc>_best.pt`` and ``labels_...`` (or
  ``_<exp>`` in place of ``_best``), read by ``dc``; :func:`parse_name` reads the method, dataset,
  IPC and tag from the name.

Its evaluators take the tensors as loaded: ``compute_metrics(image_tensor=images,
soft_labels=labels, syn_lr=lr)``, or with hard labels ``compute_metrics(image_tensor=images,
syn_lr=lr)``, which assumes them class-major (``[0]*ipc + [1]*ipc + ...``). :func:`write_export`
writes that form from a D_LA (the ``ddranking`` branch of :func:`ladd_format.export.export`):

- ``images.pt``: float32 (M, K, H, W) in the space the method trained in -- ``pixel255`` and
  ``pixel01`` images are brought to 0..1 and normalised with the file's ``/normalization``
  (``(x - mean) / std``, computed in float64); ``normalized`` and ``zca`` images as stored
  (float16 widened to float32, exactly).
- ``labels.pt``: the file's ``/soft_labels`` as stored (logits or probabilities, float32) when it
  has them; else the hard labels, int64 (M,). DD-Ranking's hard-label evaluation ignores the
  labels file and assumes class-major order with equal IPC: hard labels with unequal counts per
  class are refused (one line); equal counts in another order are reordered class-major (stable:
  images of one class keep their order), said in a note, and ``metadata.json`` gives each row's
  index in the source file (``source_index``). With soft labels the order is kept as stored.
- ``lr.pt``: 0-dim float32, only when the file records ``learned_lr``.
- ``metadata.json``: what a reader needs to use the tensors (space, normalisation, label kind,
  classes, source file digest), the hard labels when soft labels are exported and the hard labels
  are not their argmax (``hard_labels``), and ``ladd_metadata`` (what ``ladd convert`` needs to
  rebuild the file, as the npz export records it; read back by :mod:`.exported`). Dense labels
  have no place in DD-Ranking's layout and are not written (a note says so).

Every tensor is a plain ``torch.save`` of a contiguous CPU tensor, loadable with
``torch.load(weights_only=True)``. torch is imported inside :func:`write_export` only: this module
is imported with the converters, which must not load torch at import.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..extras import require
from ..presets import PRESETS
from ..spec.names import LABELS_PATH

#: ``images_<METHOD>_<DATASET>_<ipc>_<best|exp>.pt`` (and the same for labels_ / lr_)
NAME = re.compile(r"(?P<kind>images|labels|lr)_(?P<method>[A-Za-z0-9-]+)_(?P<dataset>[A-Za-z0-9-]+)_"
                  r"(?P<ipc>\d{1,9})_(?P<tag>best|\d{1,9})\.pt")
#: images converted to float64 at a time when writing
BATCH = 256
#: the ``IPC<k>`` folder of the published sets
IPC_FOLDER = re.compile(r"ipc(\d{1,9})", re.IGNORECASE)
#: dataset names as the code bases spell them (lower case, without - and _) -> preset
ALIASES = {"tiny": "tinyimagenet", "tinyimagenet200": "tinyimagenet", "imagenet1k": "imagenet",
           "in1k": "imagenet"}


#: a name's tokens: runs of letters and digits (``CIFAR10_ZCA`` -> cifar10, zca)
TOKEN = re.compile(r"[a-z0-9]+")
#: the token that says a set's images are ZCA-whitened (DD-Ranking's ``CIFAR10_ZCA`` folder)
ZCA_TOKEN = "zca"
#: tokens before ``zca`` that say the opposite (``no_zca``)
NOT_ZCA = frozenset({"no", "non", "not", "wo", "without"})


def says_zca(name: str) -> bool:
    """Whether a folder or file name says ZCA: a ``zca`` token (case-insensitive, between non-letters,
    ``CIFAR10_ZCA``, ``zca-cifar10``), not after ``no`` / ``without`` (``no_zca``)."""
    tokens = TOKEN.findall(name.lower())
    return any(t == ZCA_TOKEN and (i == 0 or tokens[i - 1] not in NOT_ZCA) for i, t in enumerate(tokens))


def dataset_named(token: str) -> str | None:
    """The preset a code base's dataset name means (``CIFAR10`` -> ``cifar10``, ``Tiny`` ->
    ``tinyimagenet``, ``CIFAR10_ZCA`` -> ``cifar10``: a ``zca`` token says how the images were
    whitened, not which dataset), or None when it names no preset."""
    key = "".join(t for t in TOKEN.findall(token.lower()) if t != ZCA_TOKEN)
    key = ALIASES.get(key, key)
    return key if key in PRESETS else None


def parse_name(path: Path) -> dict | None:
    """``{"kind", "method", "dataset", "ipc", "tag"}`` of a DD-Ranking / DC-fork tensor file name,
    or None for other names. ``tag`` is ``best`` or the experiment number as text."""
    hit = NAME.fullmatch(path.name)
    if hit is None:
        return None
    out = hit.groupdict()
    out["ipc"] = int(out["ipc"])
    return out


def sibling(images: Path, kind: str) -> Path:
    """The ``labels_`` / ``lr_`` file of the same set as an ``images_`` file."""
    return images.with_name(kind + images.name[len("images"):])


def sets_in(folder: Path) -> dict[tuple[str, str, int], dict[str, Path]]:
    """The DD-Ranking tensor sets of a folder: ``(METHOD, DATASET, ipc) -> {tag: images file}``,
    counting only images files whose labels file lies beside them."""
    found: dict[tuple[str, str, int], dict[str, Path]] = {}
    for path in sorted(folder.glob("images_*.pt")):
        parsed = parse_name(path)
        if parsed is None or not sibling(path, "labels").is_file():
            continue
        found.setdefault((parsed["method"], parsed["dataset"], parsed["ipc"]), {})[parsed["tag"]] = path
    return found


def zca_name(images: Path) -> str | None:
    """Which name says ZCA (:func:`says_zca`): the images file's, its folder's or (in DD-Ranking's
    ``<DATASET>/IPC<k>/`` layout) its dataset folder's, as words for a note; None when none does.
    Folders further up are not read: a project folder's name says nothing about one set."""
    named = [("file", images.name), ("folder", images.parent.name)]
    if IPC_FOLDER.fullmatch(images.parent.name):
        named.append(("folder", images.parent.parent.name))
    for kind, name in named:
        if name and says_zca(name.removeprefix("images_zca_")):
            return f"the {kind} name {name}"
    return None


def dataset_folder(images: Path) -> tuple[str | None, str, int] | None:
    """For an unsuffixed ``.../<DATASET>/IPC<k>/images.pt``: ``(preset or None, the DATASET folder
    name, k)``; None when the folder is not named ``IPC<k>``."""
    parent = images.parent
    hit = IPC_FOLDER.fullmatch(parent.name)
    if hit is None or not parent.parent.name:
        return None
    token = parent.parent.name
    return dataset_named(token), token, int(hit.group(1))


# -- writing ----------------------------------------------------------------------------------------
def class_major_order(labels: np.ndarray, num_classes: int, path) -> tuple[np.ndarray | None, int]:
    """``(order, ipc)``: None when ``labels`` already read ``[0]*ipc + [1]*ipc + ...``, else the
    stable permutation that makes them so. Unequal counts per class are refused (one line)."""
    counts = np.bincount(labels, minlength=num_classes)
    if counts.size == 0 or np.any(counts != counts[0]) or counts[0] == 0:
        low, high = int(counts.argmin()), int(counts.argmax())
        raise InputError(f"DD-Ranking's hard-label evaluation assumes the same number of images per class in "
                         f"class-major order; class {low} has {int(counts[low])} images, class {high} "
                         f"{int(counts[high])}: export --format npz or folder instead", path, LABELS_PATH)
    ipc = int(counts[0])
    expected = np.repeat(np.arange(num_classes), ipc)
    if np.array_equal(labels, expected):
        return None, ipc
    return np.argsort(labels, kind="stable"), ipc


def write_export(f, out: Path, labels: np.ndarray, notes: list[str], subimages=None, progress=None) -> None:
    """Write ``images.pt``, ``labels.pt`` (and ``lr.pt``) and ``metadata.json`` of the open D_LA
    ``f`` into the (new, empty) folder ``out`` (module docstring). ``labels`` are the checked hard
    labels; notes for the user are appended to ``notes``; ``ladd_metadata`` (the npz export's, see
    :func:`~ladd_format.converters.exporting.npz_metadata`) is recorded for ``ladd convert``.
    DD-Ranking's layout has no place for sub-images (:func:`ladd_format.export.export` refuses
    ``--subimages`` before opening the file; ``subimages`` is ignored); ``progress`` is not reported
    (one ``torch.save`` of the whole set)."""
    require("torch", "export --format ddranking")
    import torch

    from ..pixels import to_model_input
    from ..provenance import file_sha256
    from .exporting import npz_metadata

    ladd_metadata = npz_metadata(f)

    k = f.image_shape[0]
    space = f.space
    m = f.num_images
    mean = np.asarray(f.mean, np.float64).reshape(1, k, 1, 1)
    std = np.asarray(f.std, np.float64).reshape(1, k, 1, 1)
    order = None
    if not f.has_soft_labels:
        order, ipc = class_major_order(labels, f.num_classes, f.path)     # refused before anything is read
    position = np.arange(m) if order is None else np.argsort(order)      # row i of the file -> its row out
    images = np.empty((m, *f.image_shape), np.float32)
    for start in range(0, m, BATCH):                                      # float64 one batch at a time
        stop = min(m, start + BATCH)
        stored = f.images(start, stop)
        if space in ("pixel255", "pixel01"):
            batch = to_model_input(stored.astype(np.float64), space, mean, std)
        else:
            batch = stored                         # normalized / zca as stored (float16 -> float32 is exact)
        images[position[start:stop]] = batch
    out_space = "normalized" if space in ("pixel255", "pixel01") else space
    if out_space != space:
        notes.append(f"images ({space}) written normalised with the file's mean/std, as float32: the space the "
                     "method trained in")
    meta: dict = {"format": "ddranking", "num_images": f.num_images, "num_classes": f.num_classes,
                  "image_shape": list(f.image_shape), "images_space": out_space, "stored_space": space,
                  "stored_dtype": str(f.image_dtype), "mean": f.mean.tolist(), "std": f.std.tolist()}
    if f.has_soft_labels:
        target = f.soft_labels()
        meta["labels"] = f"soft labels ({f.soft_kind}), float32 (M, C), as stored in /soft_labels"
        meta["soft_labels_kind"] = f.soft_kind
        meta["usage"] = "compute_metrics(image_tensor=images, soft_labels=labels, syn_lr=lr)"
        if not np.array_equal(labels, target.argmax(axis=1)):
            meta["hard_labels"] = labels.astype(np.int64).tolist()     # labels.pt holds only the soft labels
    else:
        target = labels.astype(np.int64)
        meta["labels"] = "hard labels, int64 (M,), class-major"
        meta["ipc"] = ipc
        meta["usage"] = "compute_metrics(image_tensor=images, syn_lr=lr)  # hard labels, class-major"
        if order is not None:
            target = target[order]
            meta["source_index"] = order.tolist()
            notes.append("hard labels were not class-major: images and labels reordered class-major (stable), as "
                         "DD-Ranking assumes; metadata.json source_index gives each row's index in the file")
    files = {"images": "images.pt", "labels": "labels.pt"}
    torch.save(torch.from_numpy(np.ascontiguousarray(images)), out / "images.pt")
    torch.save(torch.from_numpy(np.ascontiguousarray(target)), out / "labels.pt")
    attrs = f.attrs
    if "learned_lr" in attrs:
        lr = float(attrs["learned_lr"])
        torch.save(torch.tensor(lr, dtype=torch.float32), out / "lr.pt")
        files["lr"] = "lr.pt"
        meta["learned_lr"] = lr
    else:
        notes.append("the file records no learned_lr: no lr.pt written (pass syn_lr to DD-Ranking yourself)")
    if f.has_dense:
        notes.append("dense labels are not exported: DD-Ranking's layout has no place for them")
    for key in ("source_dataset", "distillation"):
        if key in attrs:
            meta[key] = attrs[key]
    meta["class_names"] = f.class_names
    meta["files"] = files
    meta["source"] = {"name": f.path.name, "sha256": file_sha256(f.path)}
    meta["ladd_metadata"] = ladd_metadata
    (out / "metadata.json").write_text(json.dumps(meta, indent=2))
