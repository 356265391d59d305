"""Labeler checkpoints: weights in safetensors (no pickle, nothing executed on load) with their
metadata as JSON in the safetensors header.

Metadata keys: ``arch``, ``arch_kwargs``, ``num_classes``, ``channels``, ``image_size``, ``mean``,
``std``, ``class_names``, ``epoch``, ``training_data``, ``train_accuracy``, ``val_accuracy``,
``val_entropy`` (mean prediction entropy in nats), ``seed``, ``tool``.
"""

from __future__ import annotations

import json
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

META_KEY = "ladd_labeler"


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
    dest = Path(path)
    tmp = atomic.temporary_sibling(dest)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    try:
        save_file(state, str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Labeler:
    """Load a labeler; any file that is not our safetensors checkpoint is refused, never executed."""
    p = Path(path)
    if not p.is_file():
        raise InputError("no such checkpoint file", p)
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as fh:
            header = fh.metadata() or {}
        state = load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"not a safetensors labeler checkpoint (pickles are refused, never loaded): {exc}",
                         p) from None
    if META_KEY not in header:
        raise InputError("safetensors file without ladd labeler metadata; train it with `ladd train-labeler`", p)
    try:
        meta = json.loads(header[META_KEY])
        model = build_model(meta["arch"], num_classes=int(meta["num_classes"]), channels=int(meta["channels"]),
                            image_size=int(meta["image_size"]), **meta.get("arch_kwargs", {}))
        model.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise InputError(f"checkpoint metadata or weights do not fit: {str(exc).splitlines()[0]}", p) from None
    return Labeler(model.to(device).eval(), meta, p, file_sha256(p))
