"""The labeler pass's settings (``ladd augment``): one :class:`AugmentConfig`, its defaults and help.

Every setting of the pass is a field of :class:`AugmentConfig`; the field's default is the pass's
default, and its metadata names the command-line flag and the help text. Both command lines build
their options from :func:`augment_options` -- ``ladd augment`` (click) and the torchrun entry point
``python -m ladd_format.labeler.distributed`` (argparse,
:func:`ladd_format.config_options.add_argparse_options`) -- so a new setting or a changed default is
one edit here.

This module needs neither torch nor the labeler: the CLI builds ``ladd augment``'s options from it
while ``ladd --help`` stays torch-free. The pass itself is :mod:`ladd_format.labeler.label_pass`,
which also defines what it returns (:class:`AugmentResult`) and reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .codecs import codec_help
from .config_options import ConfigOption, config_options
from .config_options import option_field as _option
from .spec.limits import MAX_GRID_N, MAX_WRITTEN_GRID_N

#: the labeler's arithmetic: auto = bfloat16 on CUDA, float32 on the CPU
PRECISIONS = ("auto", "bfloat16", "float32")
#: on the CPU, a labeler forward sees at most this many input pixels (32 sub-images at 224 px, 98 at
#: 128 px, the whole forward batch at 32 px): its activations, not the chunk, bound the pass's memory
CPU_FORWARD_PIXELS = 32 * 224 * 224


@dataclass
class AugmentConfig:
    """The labeler pass's settings; each default is the pass's (and ``ladd augment``'s) default."""

    n: int = _option(5, "-n", help=(
        f"Grid size N (N*N sub-images), at most {MAX_WRITTEN_GRID_N}: the most this package writes (the (N*N, 4) "
        f"boxes attribute must fit one compact HDF5 attribute message); readers accept files up to "
        f"N = {MAX_GRID_N} (spec 2.4)."))
    ratio: float = _option(0.625, "-r", "--ratio", help="Sub-image ratio R.")
    codec: str = _option("float32", "--codec", metavar="CODEC", help=codec_help())
    temperature: float = _option(1.0, "--temperature", help="Softmax temperature T of the labeler's logits.")
    device: str = _option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
    batch_size: int = _option(256, "--batch-size", help=(
        "Images per chunk (the unit a pass saves, and resumes from); each chunk is N*N times as many sub-images."))
    forward_batch: int = _option(512, "--forward-batch", help=(
        f"Sub-images per labeler forward (halved by itself on CUDA out-of-memory; on the CPU at most "
        f"{CPU_FORWARD_PIXELS // (224 * 224)} x 224 x 224 input pixels per forward)."))
    precision: str = _option("auto", "--precision", choices=PRECISIONS, help=(
        "Labeler arithmetic: auto = bfloat16 on CUDA, float32 on the CPU; float32 on CUDA turns TF32 off."))
    resize: bool = _option(False, "--resize", help="Resize sub-images to the labeler's input size when it differs.")
    overwrite: bool = _option(False, "--force", help="Replace OUTPUT if it exists.")
    allow_mismatch: bool = _option(False, "--allow-mismatch", help=(
        "Label, with a warning, although the labeler was trained on other classes than the file's."))
    zca_stats: str | None = _option(None, "--zca-stats", metavar="FILE", help=(
        "ZCA-whitened SOURCE: the .npz of convert --zca-stats (mean + inverse, or train_images), to un-whiten "
        "the images for the labeler (the file keeps them whitened)."))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "AugmentConfig":
        """The config of the fields named in ``values`` (other keys, such as a command's ``output``,
        are ignored; a path given for a text field becomes its text)."""
        kwargs = {}
        for option in augment_options():
            if option.name in values:
                value = values[option.name]
                kwargs[option.name] = os.fspath(value) if isinstance(value, Path) else value
        return cls(**kwargs)


def augment_options() -> tuple[ConfigOption, ...]:
    """Every field of :class:`AugmentConfig` as an option, in field order."""
    return config_options(AugmentConfig)
