"""The teacher of ``ladd relabel``: the model whose soft labels of the crops a stream records.

:func:`load_teacher` takes either

- a ``ladd train-labeler`` checkpoint (safetensors with its metadata, :mod:`.checkpoint`): the
  architecture, class count, channels and normalisation come from the file; or
- ``arch`` = the name of a torchvision classification architecture (``resnet18``, ``resnet50``,
  ``mobilenet_v2``, ...) and a state_dict file: safetensors, or a weights-only ``torch.save`` (a
  mapping of tensor names to tensors, or a dict holding one under ``state_dict``, ``model`` or
  ``model_state_dict``; a ``module.`` prefix on every key, as DistributedDataParallel saves, is
  removed). Pickles load with ``weights_only=True``: nothing in the file is executed. The model is
  built with the file's class count (``num_classes``) and its tensor shapes are compared on torch's
  ``meta`` device before anything is allocated. The normalisation is ImageNet's unless given.

Every refusal is one line naming the file: missing, unreadable, an unknown architecture, a class
count other than the data's, a state_dict that does not fit the architecture.

:func:`teacher_logits` labels crops given on the 0..1 pixel scale: it normalises them with the
teacher's mean and std and runs the model, in bfloat16 autocast on CUDA (``precision="auto"``) and
float32 on the CPU, returning float32 logits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import atomic
from ..augment_config import PRECISIONS
from ..errors import InputError
from ..pixels import normalize
from ..presets import IMAGENET_MEAN, IMAGENET_STD
from ..provenance import file_sha256
from ..torch.models import torchvision_names
from .checkpoint import declared_class_names, load_checkpoint
from .label_pass import forward_limit, labeler_logits
from .sources import MAX_CLASSES

#: keys of a ``torch.save`` dict that may hold the state_dict itself (checked in this order)
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
#: the prefix DistributedDataParallel gives every key
DDP_PREFIX = "module."


@dataclass
class Teacher:
    """A loaded teacher (eval mode) and what ``/stream/teacher`` records of it (spec 4.7)."""

    model: torch.nn.Module
    mean: tuple[float, ...]          #: (K,) the normalisation of its inputs, on the 0..1 pixel scale
    std: tuple[float, ...]           #: (K,)
    arch: str
    weights_sha256: str              #: SHA-256 of the weights file
    num_classes: int
    training_data: str | None = None
    epochs: int | None = None
    path: Path | None = None         #: the weights file
    class_names: list[str] | None = None   #: the classes it was trained on, when its file declares them

    @property
    def channels(self) -> int:
        return len(self.mean)

    def describe(self) -> dict:
        """The attributes of ``/stream/teacher`` (those unknown left out)."""
        out = {"arch": self.arch, "weights_sha256": self.weights_sha256, "mean": list(self.mean),
               "std": list(self.std)}
        if self.training_data:
            out["training_data"] = self.training_data
        if self.epochs is not None:
            out["epochs"] = int(self.epochs)
        return out


def load_teacher(path: str | os.PathLike, arch: str | None = None, num_classes: int | None = None,
                 device: str | torch.device = "cpu", mean=None, std=None) -> Teacher:
    """Load a teacher (module docstring). ``num_classes``: the data's class count; a teacher with
    another is refused. ``mean``/``std``: the normalisation of a torchvision teacher (default
    ImageNet's); a train-labeler checkpoint carries its own."""
    p = atomic.require_regular_file(path, "teacher file")
    if arch is None:
        if mean is not None or std is not None:
            raise InputError("a train-labeler checkpoint carries its own mean and std; give them only with --arch", p)
        lab = load_checkpoint(p, device)
        teacher = Teacher(lab.model, tuple(lab.meta["mean"]), tuple(lab.meta["std"]), lab.meta["arch"], lab.sha256,
                          lab.num_classes, lab.meta.get("training_data") or None, int(lab.meta["epoch"]), p,
                          declared_class_names(lab.meta))
    else:
        teacher = _load_torchvision(p, arch, num_classes, device, mean, std)
    if num_classes is not None and teacher.num_classes != num_classes:
        raise InputError(f"the teacher has {teacher.num_classes} classes, the data {num_classes}", p)
    return teacher


def _load_torchvision(p: Path, arch: str, num_classes: int | None, device, mean, std) -> Teacher:
    if arch not in torchvision_names():
        raise InputError(f"unknown architecture {arch[:60]!r}: --arch takes a torchvision classification "
                         "architecture (e.g. resnet18, resnet50, mobilenet_v2, efficientnet_b0)", p)
    num_classes = 1000 if num_classes is None else int(num_classes)
    if not 1 <= num_classes <= MAX_CLASSES:
        raise InputError(f"the class count must lie in 1..{MAX_CLASSES}, got {num_classes}", p)
    mean = tuple(float(v) for v in (IMAGENET_MEAN if mean is None else mean))
    std = tuple(float(v) for v in (IMAGENET_STD if std is None else std))
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise InputError(f"a torchvision teacher takes 3 channels: give 3 means and 3 positive stds, got {mean} "
                         f"and {std}", p)
    state = read_state_dict(p)
    _check_fit(arch, num_classes, {k: tuple(v.shape) for k, v in state.items()}, p)
    import torchvision.models as tvm
    try:
        model = tvm.get_model(arch, weights=None, num_classes=num_classes)
        model.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise InputError(f"the state_dict does not fit {arch}: {(str(exc).splitlines() or [''])[0][:160]}",
                         p) from None
    return Teacher(model.to(device).eval(), mean, std, arch, file_sha256(p), num_classes, path=p)


def read_state_dict(p: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file or a weights-only ``torch.save`` (module docstring)."""
    with open(p, "rb") as fh:
        head = fh.read(2)
    if head[:2] == b"PK" or head[:1] == b"\x80":           # torch.save: a zip archive, or a legacy pickle
        try:
            loaded = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:        # noqa: BLE001 - any unpickling failure is the file's: one line
            raise InputError(f"not a weights-only torch.save state_dict (loaded with weights_only=True): "
                             f"{(str(exc).splitlines() or [''])[0][:160]}", p) from None
        state = _state_of(loaded)
        if state is None:
            raise InputError("holds no state_dict: expected a mapping of tensor names to tensors, or a dict with one "
                             f"under {', '.join(STATE_DICT_KEYS)}", p)
    else:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            state = load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"neither a safetensors file nor a torch.save state_dict: "
                             f"{(str(exc).splitlines() or [''])[0][:160]}", p) from None
    if not state:
        raise InputError("the state_dict holds no tensors", p)
    if all(key.startswith(DDP_PREFIX) for key in state):
        state = {key[len(DDP_PREFIX):]: value for key, value in state.items()}
    return state


def _state_of(loaded) -> dict[str, torch.Tensor] | None:
    """A mapping of names to tensors found in what ``torch.load`` returned, or None."""
    if isinstance(loaded, dict) and loaded and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                   for k, v in loaded.items()):
        return dict(loaded)
    if isinstance(loaded, dict):
        for key in STATE_DICT_KEYS:
            if key in loaded:
                return _state_of(loaded[key])
    return None


def _check_fit(arch: str, num_classes: int, stored: dict[str, tuple[int, ...]], p: Path) -> None:
    """Compare the file's tensor shapes with ``arch``'s, built on the ``meta`` device (no memory);
    a head sized for another class count is named as such."""
    import torchvision.models as tvm
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in tvm.get_model(arch, weights=None,
                                                                     num_classes=num_classes).state_dict().items()}
    except Exception:                  # noqa: BLE001 - an op without a meta kernel: load_state_dict decides
        return
    differ = sorted(k for k in set(expected) | set(stored) if expected.get(k) != stored.get(k))
    if not differ:
        return
    heads = {stored[k][0] for k in differ if k in stored and k in expected and expected[k][0] == num_classes
             and stored[k][1:] == expected[k][1:]}
    if len(heads) == 1 and all(k in stored and k in expected for k in differ):
        raise InputError(f"the teacher has {heads.pop()} classes, the data {num_classes}", p)
    key = differ[0]
    raise InputError(f"the state_dict does not fit {arch}: tensor {key[:80]!r} is {stored.get(key, 'missing')} in "
                     f"the file, {arch} needs {expected.get(key, 'none')}", p)


def check_crops(teacher: Teacher, channels: int, crop_size: tuple[int, int]) -> None:
    """Refuse (one line) crops the teacher cannot take: another channel count, or a size its
    layers cannot run on (one forward of a zero crop)."""
    if channels != teacher.channels:
        raise InputError(f"the teacher takes {teacher.channels} channels, the images have {channels}", teacher.path)
    device = next(teacher.model.parameters()).device
    try:
        with torch.inference_mode():
            out = teacher.model(torch.zeros(1, channels, *crop_size, device=device))
    except RuntimeError as exc:
        raise InputError(f"the teacher ({teacher.arch}) cannot take {crop_size[0]}x{crop_size[1]} crops: "
                         f"{(str(exc).splitlines() or [''])[0][:160]}; choose another --crop-size", teacher.path) from None
    if tuple(out.shape) != (1, teacher.num_classes):
        raise InputError(f"the teacher's output is {tuple(out.shape)} for one crop, expected (1, "
                         f"{teacher.num_classes})", teacher.path)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bfloat16`` on CUDA, ``float32`` elsewhere; other values checked."""
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    return precision


@torch.inference_mode()
def teacher_logits(teacher: Teacher, crops01: torch.Tensor, precision: str = "auto",
                   forward_batch: int = 512) -> torch.Tensor:
    """``(n, K, h, w)`` crops on the 0..1 pixel scale (on the teacher's device) -> ``(n, C)``
    float32 logits: normalised with the teacher's mean and std, then the model, ``forward_batch``
    crops at a time (on the CPU at most :data:`~ladd_format.augment_config.CPU_FORWARD_PIXELS`
    input pixels per forward). ``precision``: ``auto`` (bfloat16 autocast on CUDA, float32 on the
    CPU), ``bfloat16`` or ``float32`` (TF32 off)."""
    device = crops01.device
    precision = resolve_precision(precision, device)
    k = crops01.shape[1]
    mean = torch.tensor(teacher.mean, dtype=torch.float32, device=device).view(1, k, 1, 1)
    std = torch.tensor(teacher.std, dtype=torch.float32, device=device).view(1, k, 1, 1)
    step = forward_limit(forward_batch, tuple(crops01.shape[-2:]), device)
    out = [labeler_logits(teacher.model, normalize(crops01[a:a + step], mean, std), precision)
           for a in range(0, crops01.shape[0], step)]
    return torch.cat(out) if out else torch.empty(0, teacher.num_classes, device=device)
