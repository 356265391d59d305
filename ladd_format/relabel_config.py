"""``ladd relabel``'s settings: one :class:`RelabelConfig`, its defaults and help (the one place).

Each field's default is the pass's default and its metadata names the command-line flag and the
help; ``ladd relabel`` builds its click options from :func:`relabel_options`. The defaults are
SRe2L's relabel settings (300 epochs, batch 1024, seed 42, RandomResizedCrop scale (0.08, 1),
CutMix) with this package's default stream codec. torch-free, like :mod:`.augment_config`: the CLI
builds the options while ``ladd --help`` stays torch-free. The pass is
:mod:`ladd_format.labeler.relabel_pass`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from .augment_config import PRECISIONS
from .config_options import ConfigOption, config_options
from .config_options import option_field as _option
from .spec import RESIZE_ANTIALIAS, STREAM_MIXES, STREAM_RESIZES
from .spec.limits import MAX_CROP_SIDE, MAX_STREAM_BATCH, MAX_STREAM_EPOCHS
from .stream.codec import DEFAULT_STREAM_CODEC, SMALL_C_CODEC
from .stream.defaults import SRE2L_BATCH_SIZE, SRE2L_EPOCHS, SRE2L_SCALE, SRE2L_SEED


@dataclass(frozen=True)
class RelabelConfig:
    """The relabel pass's settings; each default is ``ladd relabel``'s."""

    arch: str | None = _option(None, "--arch", metavar="NAME", help=(
        "The teacher is this torchvision classification architecture (resnet18, resnet50, ...) and --teacher its "
        "state_dict (safetensors or a weights-only torch.save); without --arch, --teacher is a `ladd train-labeler` "
        "checkpoint."))
    teacher_mean: tuple[float, float, float] | None = _option(None, "--teacher-mean", metavar="R G B", help=(
        "The per-channel mean a torchvision teacher normalises its 0..1 inputs with (default ImageNet's)."))
    teacher_std: tuple[float, float, float] | None = _option(None, "--teacher-std", metavar="R G B", help=(
        "The per-channel std of a torchvision teacher (default ImageNet's)."))
    epochs: int = _option(SRE2L_EPOCHS, "--epochs", help=f"Epochs E to generate (1..{MAX_STREAM_EPOCHS}); SRe2L's {SRE2L_EPOCHS}.")
    batch_size: int = _option(SRE2L_BATCH_SIZE, "--batch-size", help=(
        f"Records per batch B (1..{MAX_STREAM_BATCH}; CutMix/MixUp pair records inside a batch); SRe2L's {SRE2L_BATCH_SIZE}. "
        "Each epoch visits every image once, in batches of B, the last one shorter."))
    crop_size: int | None = _option(None, "--crop-size", metavar="S", help=(
        f"Crops are resized to S x S (1..{MAX_CROP_SIDE}); default: the images' height x width."))
    seed: int = _option(SRE2L_SEED, "--seed", help=(
        f"Seed of the counter-based generator every draw comes from (0..2**64-1); SRe2L's {SRE2L_SEED}."))
    mix: str = _option("cutmix", "--mix", choices=STREAM_MIXES, help=(
        "Mix the crops of a batch: cutmix (SRe2L's: Beta(1, 1), one box per batch), mixup (Beta(1, 1)) or none."))
    scale: tuple[float, float] = _option(SRE2L_SCALE, "--scale", metavar="MIN MAX", help=(
        "RandomResizedCrop's range of the crop's area as a fraction of the image's."))
    ratio: tuple[float, float] = _option((3 / 4, 4 / 3), "--ratio", metavar="MIN MAX", help=(
        "RandomResizedCrop's range of the crop's aspect ratio (width / height)."))
    codec: str | None = _option(None, "--codec", metavar="CODEC", help=(
        "How the soft labels are stored: a dense-label codec of the probabilities (float32, float16, uint8, "
        "topk:k=K,values=V, and a topk one with a low-rank tail: topk:k=K,values=V,tail=R) or the teacher's logits "
        f"(logits:float16, logits:float32). Default: {DEFAULT_STREAM_CODEC} (its tail basis fitted on the first "
        f"records' logits), or {SMALL_C_CODEC} for a set of so few classes that C bytes a record are no more."))
    temperature: float = _option(1.0, "--temperature", help=(
        "Softmax temperature T: probability codecs store softmax(logits / T); logits codecs record T."))
    resize: str = _option(RESIZE_ANTIALIAS, "--resize", choices=STREAM_RESIZES, help=(
        "The crop kernel (spec 5.1): bilinear-antialias (on the device), or pil-bilinear (Pillow on the uint8 "
        "image, SRe2L's; uint8 images only)."))
    device: str = _option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
    precision: str = _option("auto", "--precision", choices=PRECISIONS, help=(
        "Teacher arithmetic: auto = bfloat16 on CUDA, float32 on the CPU; float32 on CUDA turns TF32 off."))
    forward_batch: int = _option(512, "--forward-batch", help=(
        "Crops per teacher forward (on the CPU at most 32 x 224 x 224 input pixels per forward)."))
    overwrite: bool = _option(False, "--force", help="Replace OUTPUT if it exists.")
    allow_mismatch: bool = _option(False, "--allow-mismatch", help=(
        "Label, with a warning, although the teacher was trained on other class names than the file's."))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "RelabelConfig":
        """The config of the fields named in ``values`` (other keys are ignored; a path given for a
        text field becomes its text; tuples stay tuples)."""
        kwargs = {}
        for option in relabel_options():
            if option.name in values and values[option.name] is not None:
                value = values[option.name]
                if isinstance(value, Path):
                    value = os.fspath(value)
                elif isinstance(value, list):
                    value = tuple(value)
                kwargs[option.name] = value
        return cls(**kwargs)

    def manifest(self) -> dict:
        """The settings that decide the stream's contents (a resumed pass must match them)."""
        skip = ("device", "forward_batch", "overwrite", "allow_mismatch")
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self) if f.name not in skip}


def relabel_options() -> tuple[ConfigOption, ...]:
    """Every field of :class:`RelabelConfig` as an option, in field order."""
    return config_options(RelabelConfig)
