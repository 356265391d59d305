"""Labeler checkpoints: weights in safetensors (no pickle, nothing executed on load) with their
metadata as JSON in the safetensors header.

Metadata keys: ``arch``, ``arch_kwargs``, ``num_classes``, ``channels``, ``image_size``, ``mean``,
``std``, ``class_names``, ``class_names_declared`` (false when the training data gave no names and
they were made from the label numbers), ``epoch``, ``training_data``, ``train_accuracy``,
``val_accuracy``, ``val_entropy`` (mean prediction entropy in nats), ``seed``, ``tool``.

A checkpoint is untrusted: :func:`validate_meta` checks every key the package uses, with its type and
range (``arch`` a name; ``arch_kwargs`` an object of integers 0..4096, finite floats or booleans;
``num_classes`` 1..65536; ``channels`` 1..64; ``image_size`` 1..4096; ``mean``/``std`` one finite
number per channel, std > 0; ``epoch`` >= 0; ``class_names`` one string per class; ``training_data``
a string; the accuracies and entropy finite numbers), and the architecture it describes is built on
torch's ``meta`` device and its tensor shapes compared with the file's before any real allocation.
Every refusal is one line naming the checkpoint and the key.

Saving goes through :mod:`ladd_format.atomic` (temporary sibling, then rename; the destination's
stale partials are removed first; a symbolic link at the destination is replaced, not followed).
safetensors writes its file with mode 0600; the checkpoint is given the umask's mode (0644 under
the usual umask 022) like every other output (:func:`ladd_format.atomic.follow_umask`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import atomic
from ..errors import InputError
from ..torch.models import build_model
from ..provenance import file_sha256
from .sources import MAX_CLASSES, MAX_IMAGE_SIDE

META_KEY = "ladd_labeler"
MAX_CHANNELS = 64
#: the largest integer an ``arch_kwargs`` entry may hold (widths, depths, heads)
MAX_ARCH_INT = 4096
#: keywords ``build_model`` sets itself, so ``arch_kwargs`` may not
RESERVED_KWARGS = ("name", "num_classes", "channels", "image_size", "weights")


def _show(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(meta: dict, key: str, low: int, high: int | None, path) -> int:
    value = meta[key]
    if type(value) is not int or value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise InputError(f"labeler metadata key {key!r} must be an integer {span}, got {_show(value)}", path)
    return value


def _numbers(meta: dict, key: str, count: int, path, positive: bool = False) -> list[float]:
    value = meta[key]
    ok = (isinstance(value, list) and len(value) == count
          and all(type(v) in (int, float) and math.isfinite(v) and (v > 0 or not positive) for v in value))
    if not ok:
        what = "positive " if positive else ""
        raise InputError(f"labeler metadata key {key!r} must be a list of {count} finite {what}numbers (one per "
                         f"channel), got {_show(value)}", path)
    return [float(v) for v in value]


def validate_meta(meta, path) -> dict:
    """``meta`` when every key the package uses has its type and range (module docstring); else a
    one-line :class:`InputError` naming ``path`` and the key."""
    if not isinstance(meta, dict):
        raise InputError(f"labeler metadata must be a JSON object, got {_show(meta)}", path)
    missing = [key for key in ("arch", "num_classes", "channels", "image_size", "mean", "std", "epoch")
               if key not in meta]
    if missing:
        raise InputError(f"labeler metadata lacks the key(s) {', '.join(missing)}", path)
    arch = meta["arch"]
    if not isinstance(arch, str) or not arch or len(arch) > 100:
        raise InputError(f"labeler metadata key 'arch' must be an architecture name, got {_show(arch)}", path)
    kwargs = meta.get("arch_kwargs", {})
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise InputError(f"labeler metadata key 'arch_kwargs' must be an object, got {_show(kwargs)}", path)
    for key, value in kwargs.items():
        ok = (key.isidentifier() and key not in RESERVED_KWARGS
              and (type(value) is bool or (type(value) is int and 0 <= value <= MAX_ARCH_INT)
                   or (type(value) is float and math.isfinite(value))))
        if not ok:
            raise InputError(f"labeler metadata key 'arch_kwargs' entry {key[:40]!r} must be an integer "
                             f"0..{MAX_ARCH_INT}, a finite number or a boolean, got {_show(value)}", path)
    num_classes = _integer(meta, "num_classes", 1, MAX_CLASSES, path)
    channels = _integer(meta, "channels", 1, MAX_CHANNELS, path)
    _integer(meta, "image_size", 1, MAX_IMAGE_SIDE, path)
    _integer(meta, "epoch", 0, None, path)
    _numbers(meta, "mean", channels, path)
    _numbers(meta, "std", channels, path, positive=True)
    if "training_data" in meta and not isinstance(meta["training_data"], str):
        raise InputError(f"labeler metadata key 'training_data' must be a string, got {_show(meta['training_data'])}",
                         path)
    names = meta.get("class_names")
    if names is not None and not (isinstance(names, list) and len(names) == num_classes
                                  and all(isinstance(v, str) for v in names)):
        raise InputError(f"labeler metadata key 'class_names' must be a list of {num_classes} strings, got "
                         f"{_show(names)}", path)
    if "class_names_declared" in meta and type(meta["class_names_declared"]) is not bool:
        raise InputError(f"labeler metadata key 'class_names_declared' must be true or false, got "
                         f"{_show(meta['class_names_declared'])}", path)
    for key in ("train_accuracy", "val_accuracy", "val_entropy"):
        value = meta.get(key)
        if value is not None and not (type(value) in (int, float) and math.isfinite(value)):
            raise InputError(f"labeler metadata key {key!r} must be a finite number, got {_show(value)}", path)
    return meta


def declared_class_names(meta: dict) -> list[str] | None:
    """The class names the labeler was trained on, when its training data declared them (a
    checkpoint without ``class_names_declared``, from an earlier version, counts as declared);
    ``None`` otherwise."""
    names = meta.get("class_names")
    return names if names is not None and meta.get("class_names_declared", True) else None


def _build(meta: dict):
    return build_model(meta["arch"], num_classes=meta["num_classes"], channels=meta["channels"],
                       image_size=meta["image_size"], **(meta.get("arch_kwargs") or {}))


def _check_shapes(meta: dict, stored: dict[str, tuple[int, ...]], path) -> None:
    """Build the described architecture on the ``meta`` device (no memory) and compare its tensor
    shapes with the file's, so that no real allocation follows a forged description."""
    try:
        with torch.device("meta"):
            expected = {key: tuple(value.shape) for key, value in _build(meta).state_dict().items()}
    except (ValueError, TypeError) as exc:
        raise InputError(f"checkpoint metadata does not describe a buildable labeler: "
                         f"{(str(exc).splitlines() or [''])[0][:160]}", path) from None
    except Exception:                  # noqa: BLE001 - an op without a meta kernel: the real build decides
        return
    for key in sorted(set(expected) | set(stored)):
        if expected.get(key) != stored.get(key):
            raise InputError(f"checkpoint weights do not fit its metadata: tensor {key[:80]!r} is "
                             f"{stored.get(key, 'missing')} in the file, {meta['arch']} needs "
                             f"{expected.get(key, 'none')}", path)


@dataclass
class Labeler:
    model: torch.nn.Module
    meta: dict
    path: Path
    sha256: str

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    def describe(self) -> dict:
        """What ``/dense/labeler`` records (spec 4.5)."""
        return {"arch": self.meta["arch"], "epochs": int(self.meta["epoch"]),
                "training_data": self.meta.get("training_data", ""), "weights_sha256": self.sha256,
                "mean": self.meta["mean"], "std": self.meta["std"], "checkpoint": self.path.name}


def save_checkpoint(model: torch.nn.Module, meta: dict, path: str | os.PathLike) -> Path:
    dest = atomic.check_destination(path, overwrite=True)      # also removes its stale partials
    tmp = atomic.temporary_sibling(dest)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    try:
        save_file(state, str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
        atomic.follow_umask(tmp)                 # safetensors creates it 0600
        atomic.commit(tmp, dest, overwrite=True)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Labeler:
    """Load a labeler; any file that is not our safetensors checkpoint is refused, never executed."""
    p = atomic.require_regular_file(path, "checkpoint file")
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as fh:
            header = fh.metadata() or {}
            shapes = {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"not a safetensors labeler checkpoint (pickles are refused, never loaded): "
                         f"{(str(exc).splitlines() or [''])[0][:160]}", p) from None
    if META_KEY not in header:
        raise InputError("safetensors file without ladd labeler metadata; train it with `ladd train-labeler`", p)
    try:
        meta = json.loads(header[META_KEY])
    except ValueError as exc:
        raise InputError(f"labeler metadata is not JSON: {str(exc)[:120]}", p) from None
    validate_meta(meta, p)
    _check_shapes(meta, shapes, p)
    try:
        state = load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"not a safetensors labeler checkpoint (pickles are refused, never loaded): "
                         f"{(str(exc).splitlines() or [''])[0][:160]}", p) from None
    try:
        model = _build(meta)
        model.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise InputError(f"checkpoint metadata or weights do not fit: {(str(exc).splitlines() or [''])[0][:160]}",
                         p) from None
    return Labeler(model.to(device).eval(), meta, p, file_sha256(p))
