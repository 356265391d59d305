"""One exception class per kind of defect (spec section 8).

Every error carries the file path and, where it applies, the dataset or attribute concerned, and
renders as a single line: ``FILE: /dataset: what was expected``.
"""

from __future__ import annotations

import os


class LaddError(Exception):
    """Base class of every error the library raises on bad input."""

    rule = "general"

    def __init__(self, message: str, path: str | os.PathLike | None = None, where: str | None = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.where = where
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = [p for p in (self.path, self.where) if p]
        parts.append(self.message)
        return ": ".join(parts)


class NotHDF5Error(LaddError):
    rule = "file"


class TruncatedFileError(LaddError):
    rule = "file"


class FormatError(LaddError):
    """The file is HDF5 but not a D_LA container (wrong or missing ``format``)."""

    rule = "format"


class UnsupportedVersionError(LaddError):
    rule = "format"


class MissingFieldError(LaddError):
    """A required dataset, group or attribute is absent."""


class ShapeError(LaddError):
    pass


class DtypeError(LaddError):
    pass


class AttributeValueError(LaddError):
    """An attribute is present but its value is not allowed."""


class LabelRangeError(LaddError):
    rule = "labels"


class ProbabilityError(LaddError):
    """Probabilities that are not finite, outside [0, 1], or rows that do not sum to 1."""


class GeometryError(LaddError):
    """Boxes that are outside the image or disagree with spec section 5."""

    rule = "dense"


class FilterError(LaddError):
    rule = "filters"


class ChecksumError(LaddError):
    """A chunk whose fletcher32 fails, or a dataset whose SHA-256 differs from its attribute."""

    rule = "checksums"


class CodecError(LaddError):
    """Unknown codec or a codec configuration that cannot be used."""


class InputError(LaddError):
    """Input arrays handed to the writer or a converter are unusable."""


class OutputExistsError(LaddError):
    """The destination exists and overwriting was not asked for."""


class NoDenseLabelsError(LaddError):
    """Code that needs dense labels was given a plain distilled set D."""
