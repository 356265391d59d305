"""One exception class per kind of defect (spec section 8).

Every error carries the file path and, where it applies, the dataset or attribute concerned, and
renders as a single line: ``FILE: /dataset: what was expected``.
"""

from __future__ import annotations

import os

from .spec.rules import Rule

#: The numbered rules of spec section 8, number -> name (derived from :class:`~ladd_format.spec.rules.Rule`).
RULES = {rule.number: rule.label for rule in Rule}


class LaddError(Exception):
    """Base class of every error the library raises on bad input.

    ``rule`` is the :class:`~ladd_format.spec.rules.Rule` of spec section 8 the error breaks, or
    ``None`` for an error that is not about a D_LA file breaking a rule (bad input to a converter
    or the writer, a usage error, a missing extra). Every subclass states its class-wide value
    explicitly (the rule when the kind of error decides it, else ``None``); a raise site whose kind
    does not decide it passes ``rule=`` (or calls :meth:`at_rule`), and every problem the verifier
    reports carries the rule under which it was found. A subclass of a kind (``class
    UnreadOptions(InputError)``) inherits its kind's rule.
    """

    rule: Rule | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if LaddError in cls.__bases__ and "rule" not in cls.__dict__:  # a kind of error states its rule
            raise TypeError(f"{cls.__name__} must state its rule: a spec Rule, or None for an error that is no rule")

    def __init__(self, message: str, path: str | os.PathLike | None = None, where: str | None = None,
                 rule: Rule | int | None = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.where = where
        if rule is not None:
            self.rule = Rule(rule)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = [p for p in (self.path, self.where) if p]
        parts.append(self.message)
        return ": ".join(parts)

    def at_rule(self, rule: Rule | int) -> "LaddError":
        """Record on this error that it breaks ``rule`` of spec section 8; returns self."""
        self.rule = Rule(rule)
        return self

    @property
    def rule_number(self) -> int | None:
        """The number of :attr:`rule` (spec section 8), or None for an error that is no rule."""
        return None if self.rule is None else self.rule.number

    @property
    def rule_name(self) -> str | None:
        """The name of :attr:`rule` (``"normalization"``), or None for an error that is no rule."""
        return None if self.rule is None else self.rule.label

    @property
    def rule_label(self) -> str:
        """``"7 normalization"``, or ``"none"`` for an error tied to no numbered rule."""
        return "none" if self.rule is None else str(self.rule)


class NotHDF5Error(LaddError):
    rule = Rule.FILE


class TruncatedFileError(LaddError):
    rule = Rule.FILE


class FormatError(LaddError):
    """The file is HDF5 but not a D_LA container (wrong or missing ``format``)."""

    rule = Rule.FORMAT


class UnsupportedVersionError(LaddError):
    rule = Rule.FORMAT


class MissingFieldError(LaddError):
    """A required dataset, group or attribute is absent."""

    rule = None  # the kind does not decide the rule: readers and the verifier name it where raised


class ShapeError(LaddError):
    rule = None  # the kind does not decide the rule: readers and the verifier name it where raised


class DtypeError(LaddError):
    rule = None  # the kind does not decide the rule: readers and the verifier name it where raised


class AttributeValueError(LaddError):
    """An attribute is present but its value is not allowed."""

    rule = None  # the kind does not decide the rule: readers and the verifier name it where raised


class LabelRangeError(LaddError):
    rule = Rule.LABELS


class ProbabilityError(LaddError):
    """Probabilities that are not finite, outside [0, 1], or rows that do not sum to 1."""

    rule = None  # the kind does not decide the rule: readers and the verifier name it where raised


class GeometryError(LaddError):
    """Boxes that are outside the image or disagree with spec section 5."""

    rule = Rule.DENSE


class FilterError(LaddError):
    rule = Rule.FILTERS


class ChecksumError(LaddError):
    """A chunk whose fletcher32 fails, or a dataset whose SHA-256 differs from its attribute."""

    rule = Rule.CHECKSUMS


class DigestError(LaddError):
    """The root digest or a row digest (spec 1.1) disagrees with the file: it was damaged."""

    rule = None  # named where raised: 12 (root_digest) or 13 (row_digests)


class ContainmentError(LaddError):
    """Links, external storage or virtual datasets: data outside the file (spec 2.3)."""

    rule = Rule.SELF_CONTAINED


class LimitError(LaddError):
    """A declared size beyond the limits of spec 2.4, or not backed by the file's bytes."""

    rule = Rule.LIMITS


class CodecError(LaddError):
    """Unknown codec or a codec configuration that cannot be used."""

    rule = None  # the kind does not decide the rule: readers and the verifier name it where raised


class InputError(LaddError):
    """Input arrays handed to the writer or a converter are unusable."""

    rule = None  # no spec rule: bad input to the writer or a converter


class OutputExistsError(LaddError):
    """The destination exists and overwriting was not asked for."""

    rule = None  # no spec rule: a usage error


class NoDenseLabelsError(LaddError):
    """Code that needs dense labels was given a plain distilled set D."""

    rule = None  # no spec rule: a valid plain set D handed to code that needs dense labels


class NoStreamError(LaddError):
    """Code that needs a relabel stream (``DLAFile.stream``) was given a file without ``/stream``."""

    rule = None  # no spec rule: a valid file without a stream handed to code that needs one


class StreamError(LaddError):
    """A relabel stream that breaks rule 16 (spec 4.7): its declaration, layout, starts or values."""

    rule = Rule.STREAM


class MissingExtraError(LaddError):
    """A command or module needs an optional dependency that is not installed (``extras.require``)."""

    rule = None  # no spec rule: an optional dependency is missing
