"""Converter ``dc``: the DatasetCondensation family (DC / DSA / DM, and GLaD's final results file), in
either of the two forms their outputs are published in:

- the results file ``res_<METHOD>_<DATASET>_<MODEL>_<ipc>ipc.pt``::

      {'data': [[images, labels], ...one per experiment], 'accs_all_exps': {model: [numpy scalars]}}

  read with ``torch.load(weights_only=True)`` and only the exact numpy scalar globals these files
  need allow-listed;
- tensors ``images_<METHOD>_<DATASET>_<ipc>_best.pt`` + ``labels_<METHOD>_<DATASET>_<ipc>_best.pt``
  (``_<exp>`` in place of ``_best`` for experiment ``exp``), as DC forks save them and DD-Ranking
  publishes them in ``methods/DC-DSA-DM/result/`` (names parsed by ``ddranking.parse_name``).

INPUT is either file (a ``res_*.pt``, or the ``images_...`` tensor file) or a folder holding them.

``--experiment N`` means the same in both forms: experiment N of the run, counted as DC's
``for exp in range(num_exp)`` loop counts (0-based) -- ``data[N]`` of a results file, the
``images_..._<N>.pt`` tensors. Without it: ``data[0]`` of a results file (a note says so when it
holds more), and the ``_best`` tensors.

A folder: the DD-Ranking tensors come first. When it holds one set of them
(``<METHOD>_<DATASET>_<ipc>``) that set is read (``_best``, or ``_<N>`` with ``--experiment N``;
a missing one is refused, listing the tags present), and a ``res_*.pt`` beside them is not read:
a note names it (give that file as INPUT to convert it). Several sets are refused, listing them
(give the images file). Without tensors, the folder must hold exactly one ``res_*.pt``.

The method and dataset come from the file name: ``DC`` -> ``distillation`` ``dc``, ``DSA`` ->
``dsa``, ``DM`` -> ``dm`` (lower case), and a dataset name that is a preset (``CIFAR10`` ->
``cifar10``) is applied as if given with ``--dataset`` (its mean/std, class names; a note says so);
a ``--dataset`` naming another preset is refused in one line (``rawset.finish``). Images are the
float tensors the method trained on, normalised with the dataset's mean/std; labels 1-D class
indices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..presets import get_preset
from . import COMMON, KEEP_FLOAT, ConversionResult, Converter, ConvertOptions, Option, register
from .inputs import as_array, load_pt
from .rawset import RawSet, finish
from .ddranking import dataset_named, parse_name, sets_in, sibling
from .runs import read_pair


#: ``--experiment N``: experiment N of a results file (``data[N]``) or DD-Ranking's ``images_..._<N>.pt``
EXPERIMENT = Option("experiment", "int", "dc: experiment N (data[N] of a res_*.pt, or DD-Ranking images_..._<N>.pt); "
                    "default: data[0], or the _best tensors.", common=False)

def method_from_name(path: Path) -> str:
    parts = path.stem.split("_")
    return parts[1].lower() if len(parts) > 2 and parts[0] == "res" else "dc"


def _name_dataset(raw: RawSet, token: str, path: Path) -> None:
    """Record the dataset a file name gives (a preset, applied by ``finish``; else only reported)."""
    preset = dataset_named(token)
    raw.report["dataset_in_name"] = token
    if preset is not None:
        raw.dataset, raw.dataset_from = preset, f"the file name {path.name}"


def read_results(source: Path, options: ConvertOptions) -> RawSet:
    experiment = 0 if options.get("experiment") is None else options.get("experiment")
    data = load_pt(source, allow_numpy_scalars=True)
    if not isinstance(data, dict) or "data" not in data:
        raise InputError("not a DC results dict (no 'data' key)", source)
    experiments = data["data"]
    if not isinstance(experiments, (list, tuple)) or not experiments:
        raise InputError("'data' must be a non-empty list of [images, labels]", source)
    if not 0 <= experiment < len(experiments):
        raise InputError(f"--experiment {experiment} is out of range: the file has {len(experiments)}", source)
    entry = experiments[experiment]
    if not isinstance(entry, (list, tuple)) or len(entry) < 2:
        raise InputError(f"data[{experiment}] must be [images, labels]", source)
    images = as_array(entry[0], source, "images").astype(np.float32, copy=False)
    labels = as_array(entry[1], source, "labels")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be (M,) integers, got {labels.dtype} {labels.shape}", source)
    raw = RawSet(images=images, space="normalized", labels=labels.astype(np.int64), method=method_from_name(source),
                 inputs=[source])
    parts = source.stem.split("_")
    if len(parts) > 3 and parts[0] == "res":
        _name_dataset(raw, parts[2], source)
    raw.report["experiment"] = f"{experiment} of {len(experiments)}"
    if len(experiments) > 1:
        raw.notes.append(f"converted experiment {experiment} of {len(experiments)} (--experiment)")
    return raw


def read_tensors(images: Path, options: ConvertOptions) -> RawSet:
    """One ``images_<METHOD>_<DATASET>_<ipc>_<tag>.pt`` + ``labels_...`` pair (+ ``lr_...`` if any)."""
    name = parse_name(images)
    if name is None or name["kind"] != "images":
        raise InputError("expected a res_*.pt results file or an images_<METHOD>_<DATASET>_<ipc>_best.pt (or "
                         "_<exp>) tensor file", images)
    labels = sibling(images, "labels")
    if not labels.is_file():
        raise InputError(f"the labels file {labels.name} is missing beside it", images)
    lr = sibling(images, "lr")
    method = name["method"].lower()
    raw = read_pair(images, labels, lr if lr.is_file() else None, method, label_kind="indices")
    _name_dataset(raw, name["dataset"], images)
    raw.report["ddranking"] = {"method": name["method"], "dataset": name["dataset"], "ipc": name["ipc"],
                               "tag": name["tag"]}
    preset = get_preset(options.dataset or raw.dataset) if (options.dataset or raw.dataset) else None
    m = raw.images.shape[0]
    if preset is not None and m != name["ipc"] * preset.num_classes:
        raw.notes.append(f"warning: the name says IPC {name['ipc']}, but {m} images for {preset.num_classes} "
                         f"classes is not {name['ipc']} per class")
    return raw


def _pick(folder: Path, options: ConvertOptions) -> Path:
    """The images file of the one DD-Ranking set in ``folder`` (module docstring)."""
    found = sets_in(folder)
    if len(found) > 1:
        listed = ", ".join(f"{m}_{d}_{ipc}" for m, d, ipc in sorted(found)[:8])
        raise InputError(f"the folder holds {len(found)} DD-Ranking sets ({listed}{', ...' if len(found) > 8 else ''}): "
                         "give the images_<METHOD>_<DATASET>_<ipc>_<tag>.pt file of one", folder)
    (key, tags), = found.items()
    experiment = options.get("experiment")
    tag = "best" if experiment is None else str(experiment)
    if tag not in tags:
        have = ", ".join(sorted(tags, key=lambda t: (t != "best", int(t) if t.isdigit() else 0)))
        want = "_best" if experiment is None else f"experiment {experiment}"
        raise InputError(f"no {want} for {key[0]}_{key[1]}_{key[2]} in the folder (tags present: {have}; "
                         "--experiment N reads _<N>)", folder)
    return tags[tag]


def read(source: Path, options: ConvertOptions) -> RawSet:
    if source.is_dir():
        results = sorted(p for p in source.glob("res_*.pt") if _results_file(p))
        if sets_in(source):
            raw = read_tensors(_pick(source, options), options)
            if results:
                raw.notes.append(f"read the DD-Ranking tensors {raw.inputs[0].name}; the folder also holds "
                                 f"{results[0].name}{' and others' if len(results) > 1 else ''}, not read (give it "
                                 "as INPUT to convert it)")
                raw.report["not_read"] = [p.name for p in results]
            return raw
        if len(results) != 1:
            raise InputError(f"expected one res_*.pt results file or DD-Ranking images_<METHOD>_<DATASET>_<ipc>_best.pt "
                             f"+ labels_... tensors in the folder, found {len(results)} res_*.pt and no tensors", source)
        return read_results(results[0], options)
    if parse_name(source) is not None:
        return read_tensors(source, options)
    return read_results(source, options)


def _results_file(path: Path) -> bool:
    return path.name.startswith("res_") and path.suffix == ".pt"


def sniff_tensors(path: Path) -> str | None:
    """A reason when ``path`` is a DD-Ranking / DC-fork tensor file, or a folder holding such sets."""
    if path.is_file():
        name = parse_name(path)
        if name is None or name["kind"] != "images" or not sibling(path, "labels").is_file():
            return None
        return f"DD-Ranking {path.name} + {sibling(path, 'labels').name}"
    if not path.is_dir():
        return None
    found = sets_in(path)
    if len(found) == 1:
        (_, tags), = found.items()
        images = tags.get("best") or tags[sorted(tags)[0]]
        return f"DD-Ranking {images.name} + {sibling(images, 'labels').name}"
    if found:
        return f"DD-Ranking images_<METHOD>_<DATASET>_<ipc>_<tag>.pt tensors ({len(found)} sets)"
    return None


@register
class Dc(Converter):
    name = "dc"
    summary = "DC / DSA / DM: res_<M>_<D>_<model>_<ipc>ipc.pt results file, or DD-Ranking images_<M>_<D>_<ipc>_best.pt"
    looks_for = "a res_*.pt results file, or images_<M>_<D>_<ipc>_best.pt + labels_..."
    options = COMMON + (KEEP_FLOAT, EXPERIMENT)

    def sniff(self, path: Path) -> str | None:
        try:
            found = sniff_tensors(path)
            if found:
                return found
            if path.is_file() and _results_file(path):
                return "a res_*.pt results file"
            if path.is_dir() and any(_results_file(p) for p in path.glob("res_*.pt")):
                return "a res_*.pt results file"
        except OSError:
            pass
        return None

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        return finish(read(source, options), output, options, self.name)
