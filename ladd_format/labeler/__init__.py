"""Labelers: training (``ladd train-labeler``), checkpoints, and the labeler pass (``ladd augment``)."""

from .augment import AugmentConfig, augment
from .checkpoint import Labeler, load_checkpoint, save_checkpoint
from .sources import Source, load_source
from .train import TrainConfig, train_labeler

__all__ = ["AugmentConfig", "Labeler", "Source", "TrainConfig", "augment", "load_checkpoint", "load_source",
           "save_checkpoint", "train_labeler"]
