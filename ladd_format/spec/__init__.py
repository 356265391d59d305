"""Names and constants of the D_LA container, version 1.3 (``spec/dla-v1.md``)."""

FORMAT = "ladd-dla"
FORMAT_VERSION = "1.3"
SUPPORTED_MAJOR = 1
#: From this minor version on, a file MUST carry the root digest and the per-row digests (spec 2.1, 2.2).
DIGESTS_SINCE_MINOR = 1

# Every dataset, group and attribute name: spec/names.py (re-exported here for ``S.IMAGES`` etc.).
from .names import *  # noqa: E402,F401,F403
from .names import (DENSE, IMAGES, LABELER, LABELS, NORMALIZATION, PROVENANCE, ROOT_DIGEST,  # noqa: E402,F401
                    ROW_DIGESTS, ROW_DIGESTS_DATASETS, SOFT_LABELS)

SPACES_FLOAT = ("pixel01", "normalized", "zca")
SPACE_UINT8 = "pixel255"
SOFT_KINDS = ("logits", "probs")

# /stream (4.7, since 1.2)
#: From this minor version on, a file MAY hold /stream.
STREAM_SINCE_MINOR = 2
#: From this minor version on, /stream MAY hold /stream/tail (4.7, the low-rank tail of a top-k stream).
TAIL_SINCE_MINOR = 3
STREAM_MODES = ("epochs", "pool")
STREAM_MIXES = ("none", "cutmix", "mixup")
STREAM_KINDS = ("probs", "logits")
#: the codecs of kind "logits" (the probability codecs are section 6's, ladd_format.codecs)
STREAM_LOGIT_CODECS = ("float16", "float32")
RESIZE_ANTIALIAS = "bilinear-antialias"   #: section 5's kernel (also /dense resize)
RESIZE_PIL = "pil-bilinear"               #: Pillow's BILINEAR on the uint8 image (5.1)
STREAM_RESIZES = (RESIZE_ANTIALIAS, RESIZE_PIL)

# HDF5 filter ids allowed by spec section 2: shuffle (2), fletcher32 (3), gzip/deflate (1).
ALLOWED_FILTERS = {"gzip", "shuffle", "fletcher32"}

SOFT_PROBS_TOLERANCE = 1e-3


def parse_version(text: str) -> tuple[int, int]:
    """Parse ``MAJOR.MINOR``; raise ValueError on anything else."""
    major, minor = str(text).split(".")
    if not (major.isdigit() and minor.isdigit()):
        raise ValueError(text)
    return int(major), int(minor)
