"""Labelers: training (``ladd train-labeler``), checkpoints, and the labeler pass (``ladd augment``)."""

from ..extras import require

# before anything imports torch: without the extra, one line naming it (not an ImportError from deep inside)
require("torch", "the labeler (ladd train-labeler, ladd augment)")

from .label_pass import AugmentConfig, AugmentInterrupted, AugmentResult, augment  # noqa: E402
from .checkpoint import Labeler, load_checkpoint, save_checkpoint  # noqa: E402
from .sources import Source, load_source  # noqa: E402
from .train import TrainConfig, train_labeler  # noqa: E402

__all__ = ["AugmentConfig", "AugmentInterrupted", "AugmentResult", "Labeler", "Source", "TrainConfig", "augment",
           "load_checkpoint", "load_source", "save_checkpoint", "train_labeler"]
