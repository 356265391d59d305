"""Converter ``dc``: DatasetCondensation-family results files (DC / DSA / DM, and GLaD's final
results file), ``res_<method>_<dataset>_<model>_<ipc>ipc.pt``::

    {'data': [[images, labels], ...one per experiment], 'accs_all_exps': {model: [numpy scalars]}}

Read with ``torch.load(weights_only=True)`` and only the exact numpy scalar globals these files
need allow-listed. ``--experiment`` picks the entry of ``data`` (default 0). Images are normalised
with the dataset's mean/std (give ``--dataset`` or ``--mean/--std``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from . import COMMON, ConversionResult, Converter, ConvertOptions, register
from .common import RawSet, as_array, finish, load_pt


def method_from_name(path: Path) -> str:
    parts = path.stem.split("_")
    return parts[1].lower() if len(parts) > 2 and parts[0] == "res" else "dc"


def read_results(source: Path, options: ConvertOptions) -> RawSet:
    if source.is_dir():
        found = sorted(source.glob("res_*.pt"))
        if len(found) != 1:
            raise InputError(f"expected one res_*.pt results file in the folder, found {len(found)}", source)
        source = found[0]
    data = load_pt(source, allow_numpy_scalars=True)
    if not isinstance(data, dict) or "data" not in data:
        raise InputError("not a DC results dict (no 'data' key)", source)
    experiments = data["data"]
    if not isinstance(experiments, (list, tuple)) or not experiments:
        raise InputError("'data' must be a non-empty list of [images, labels]", source)
    if not 0 <= options.experiment < len(experiments):
        raise InputError(f"--experiment {options.experiment} is out of range: the file has {len(experiments)}",
                         source)
    entry = experiments[options.experiment]
    if not isinstance(entry, (list, tuple)) or len(entry) < 2:
        raise InputError(f"data[{options.experiment}] must be [images, labels]", source)
    images = as_array(entry[0], source, "images").astype(np.float32, copy=False)
    labels = as_array(entry[1], source, "labels")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be (M,) integers, got {labels.dtype} {labels.shape}", source)
    raw = RawSet(images=images, space="normalized", labels=labels.astype(np.int64), method=method_from_name(source),
                 inputs=[source])
    raw.report["experiment"] = f"{options.experiment} of {len(experiments)}"
    if len(experiments) > 1:
        raw.notes.append(f"converted experiment {options.experiment} of {len(experiments)} (--experiment)")
    return raw


def _results_file(path: Path) -> bool:
    return path.name.startswith("res_") and path.suffix == ".pt"


@register
class Dc(Converter):
    name = "dc"
    summary = "DC / DSA / DM (and GLaD's final) res_<method>_<dataset>_<model>_<ipc>ipc.pt results file"
    looks_for = "a res_*.pt results file"
    options = COMMON | {"keep_float", "experiment"}

    def sniff(self, path: Path) -> str | None:
        try:
            if path.is_file() and _results_file(path):
                return "a res_*.pt results file"
            if path.is_dir() and any(_results_file(p) for p in path.glob("res_*.pt")):
                return "a res_*.pt results file"
        except OSError:
            pass
        return None

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        return finish(read_results(source, options), output, options, self.name)
