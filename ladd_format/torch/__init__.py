"""PyTorch side of ladd-format: sub-image rebuild, Dataset, and the LADD loss (Eq. 5).

Three lines into a training loop::

    ds = DLADataset("set.dla.h5")
    for images, labels, dense in DataLoader(ds, batch_size=64, shuffle=True):
        loss, parts = ladd_loss(model, images, labels, dense, ds.sampler)
"""

from .dataset import DLADataset
from .loss import ladd_loss, soft_cross_entropy
from .subimages import subimages
from .subsampler import SubSampler

__all__ = ["DLADataset", "SubSampler", "ladd_loss", "soft_cross_entropy", "subimages"]
