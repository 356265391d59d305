"""Device helpers shared by the labeler, the labeler pass and the students: which device to run
on, and cuDNN settings for a block (deterministic training, TF32 off for float32 labelling)."""

from __future__ import annotations

import contextlib
import functools

import torch

from ..errors import InputError


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA device is available")
    return torch.device(device)


@contextlib.contextmanager
def cudnn_settings(**changes):
    """Change some cuDNN settings (``deterministic``, ``benchmark``, ``allow_tf32``) for a block,
    keeping the others as they are; restored on exit."""
    cudnn = torch.backends.cudnn
    now = {"enabled": cudnn.enabled, "benchmark": cudnn.benchmark, "deterministic": cudnn.deterministic,
           "allow_tf32": cudnn.allow_tf32}
    with cudnn.flags(**{**now, **changes}):
        yield


def deterministic_kernels(fn):
    """Run ``fn`` with cuDNN's deterministic algorithms (and no autotuning), so that a seed gives
    the same weights on the same GPU, as it does on the CPU."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with cudnn_settings(benchmark=False, deterministic=True):
            return fn(*args, **kwargs)
    return wrapper
