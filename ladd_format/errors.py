"""One exception class per kind of defect (spec section 8).

Every error carries the file path and, where it applies, the dataset or attribute concerned, and
renders as a single line: ``FILE: /dataset: what was expected``.
"""

from __future__ import annotations

import os


#: The numbered rules of spec section 8, number -> name.
RULES = {1: "file", 2: "format", 3: "root", 4: "images", 5: "labels", 6: "soft_labels",
         7: "normalization", 8: "dense", 9: "provenance", 10: "filters", 11: "checksums",
         12: "root_digest", 13: "row_digests", 14: "self_contained", 15: "limits"}


class LaddError(Exception):
    """Base class of every error the library raises on bad input.

    ``rule_number`` and ``rule`` name the rule of spec section 8 concerned. On the class they are a
    default for the kind of error (``None`` and ``"general"`` when the kind alone does not decide it);
    every problem the verifier reports carries on the instance the rule under which it was found
    (:meth:`at_rule`), so ``rule_number`` is never ``None`` there.
    """

    rule_number: int | None = None
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

    def at_rule(self, number: int) -> "LaddError":
        """Record on this error that it breaks rule ``number`` of spec section 8; returns self."""
        self.rule_number = number
        self.rule = RULES[number]
        return self

    @property
    def rule_label(self) -> str:
        """``"7 normalization"``, or ``"general"`` for an error tied to no numbered rule."""
        return self.rule if self.rule_number is None else f"{self.rule_number} {self.rule}"


class NotHDF5Error(LaddError):
    rule_number = 1
    rule = "file"


class TruncatedFileError(LaddError):
    rule_number = 1
    rule = "file"


class FormatError(LaddError):
    """The file is HDF5 but not a D_LA container (wrong or missing ``format``)."""

    rule_number = 2
    rule = "format"


class UnsupportedVersionError(LaddError):
    rule_number = 2
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
    rule_number = 5
    rule = "labels"


class ProbabilityError(LaddError):
    """Probabilities that are not finite, outside [0, 1], or rows that do not sum to 1."""


class GeometryError(LaddError):
    """Boxes that are outside the image or disagree with spec section 5."""

    rule_number = 8
    rule = "dense"


class FilterError(LaddError):
    rule_number = 10
    rule = "filters"


class ChecksumError(LaddError):
    """A chunk whose fletcher32 fails, or a dataset whose SHA-256 differs from its attribute."""

    rule_number = 11
    rule = "checksums"


class DigestError(LaddError):
    """The root digest or a row digest (spec 1.1) disagrees with the file: it was damaged."""

    rule_number = 12
    rule = "root_digest"


class ContainmentError(LaddError):
    """Links, external storage or virtual datasets: data outside the file (spec 2.3)."""

    rule_number = 14
    rule = "self_contained"


class LimitError(LaddError):
    """A declared size beyond the limits of spec 2.4, or not backed by the file's bytes."""

    rule_number = 15
    rule = "limits"


class CodecError(LaddError):
    """Unknown codec or a codec configuration that cannot be used."""


class InputError(LaddError):
    """Input arrays handed to the writer or a converter are unusable."""


class OutputExistsError(LaddError):
    """The destination exists and overwriting was not asked for."""


class NoDenseLabelsError(LaddError):
    """Code that needs dense labels was given a plain distilled set D."""


class MissingExtraError(LaddError):
    """A command or module needs an optional dependency that is not installed (``extras.require``)."""
