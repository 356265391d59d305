"""ladd-format: the D_LA container for label-augmented distilled datasets (spec/dla-v1.md)."""

__version__ = "0.1.0"

from .errors import LaddError  # noqa: E402
from .reader import DLAFile, open_dla  # noqa: E402
from .verify import verify  # noqa: E402
from .writer import DenseSpec, DLAWriter  # noqa: E402

__all__ = ["__version__", "DLAFile", "DLAWriter", "DenseSpec", "LaddError", "open_dla", "verify"]
