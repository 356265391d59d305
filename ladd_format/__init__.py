"""ladd-format: the D_LA container for label-augmented distilled datasets (spec/dla-v1.md)."""

from .errors import LaddError
from .reader import DLAFile, open_dla
from .verify import verify
from .version import __version__
from .writer import DenseSpec, DLAWriter

__all__ = ["__version__", "DLAFile", "DLAWriter", "DenseSpec", "LaddError", "open_dla", "verify"]
