"""Names and constants of the D_LA container, version 1.0 (``spec/dla-v1.md``)."""

FORMAT = "ladd-dla"
FORMAT_VERSION = "1.0"
SUPPORTED_MAJOR = 1

IMAGES = "images"
LABELS = "labels"
SOFT_LABELS = "soft_labels"
NORMALIZATION = "normalization"
DENSE = "dense"
LABELER = "dense/labeler"
PROVENANCE = "provenance"

SPACES_FLOAT = ("pixel01", "normalized", "zca")
SPACE_UINT8 = "pixel255"
SOFT_KINDS = ("logits", "probs")

# HDF5 filter ids allowed by spec section 2: shuffle (2), fletcher32 (3), gzip/deflate (1).
ALLOWED_FILTERS = {"gzip", "shuffle", "fletcher32"}

SOFT_PROBS_TOLERANCE = 1e-3


def parse_version(text: str) -> tuple[int, int]:
    """Parse ``MAJOR.MINOR``; raise ValueError on anything else."""
    major, minor = str(text).split(".")
    if not (major.isdigit() and minor.isdigit()):
        raise ValueError(text)
    return int(major), int(minor)
