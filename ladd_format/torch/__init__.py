"""PyTorch side of ladd-format: sub-image rebuild, Dataset, the LADD loss (Eq. 5), and the crop kernel
and replay loader of relabel streams (spec 5.1).

Three lines into a training loop::

    ds = DLADataset("set.dla.h5")
    for images, labels, dense in DataLoader(ds, batch_size=64, shuffle=True):
        loss, parts = ladd_loss(model, images, labels, dense, ds.sampler)
"""

from ..extras import require

# before anything imports torch: without the extra, one line naming it (not an ImportError from deep inside)
require("torch", "the torch loader and sub-image kernel (ladd_format.torch)")

from .dataset import DLADataset  # noqa: E402
from .loss import ladd_loss, soft_cross_entropy  # noqa: E402
from .subimages import subimages  # noqa: E402
from .replay import ReplayBatch, ReplayLoader  # noqa: E402
from .stream_crops import crop_batch, pil_crop_batch  # noqa: E402
from .subsampler import SubSampler  # noqa: E402

__all__ = ["DLADataset", "ReplayBatch", "ReplayLoader", "SubSampler", "crop_batch", "ladd_loss", "pil_crop_batch",
           "soft_cross_entropy", "subimages"]
