"""The numbered rules of spec section 8 (``spec/dla-v1.md``): one enum, the only place rule numbers live.

``Rule.DENSE`` is rule 8: ``int(Rule.DENSE) == Rule.DENSE.number == 8``, ``Rule.DENSE.label ==
"dense"`` (the name the spec gives it), ``Rule.DENSE.section`` the section of the spec that states
what it checks. An error that breaks a rule carries it (:attr:`ladd_format.errors.LaddError.rule`);
the verifier registers one check per rule (:data:`ladd_format.verify.CHECKS`).
"""

from enum import IntEnum


class Rule(IntEnum):
    """A rule of spec section 8: its number (the enum value), its name and its section."""

    def __new__(cls, number: int, section: str, summary: str) -> "Rule":
        member = int.__new__(cls, number)
        member._value_ = number
        member.section = section
        member.summary = summary
        return member

    FILE = 1, "2", "the file is a readable, complete HDF5 file"
    FORMAT = 2, "3", "format is ladd-dla; format_version is MAJOR.MINOR with MAJOR = 1"
    ROOT = 3, "3", "num_classes >= 1; class_names C strings; ipc >= 1"
    IMAGES = 4, "4.1", "/images present, 4-D, M >= 1, dtype and space, chunk (1, K, H, W)"
    LABELS = 5, "4.2", "/labels present, shape (M,), integers in [0, C)"
    SOFT_LABELS = 6, "4.3", "/soft_labels, when present: shape (M, C), float, kind, values"
    NORMALIZATION = 7, "4.4", "/normalization present: mean, std of length K, finite, std > 0"
    DENSE = 8, "4.5, 5, 6", "/dense, when present: attributes, boxes, codec datasets and tolerances, labeler"
    PROVENANCE = 9, "4.6", "/provenance present with created, tool, converter and inputs"
    FILTERS = 10, "2", "every dataset chunked, little-endian, fletcher32, no other filter"
    CHECKSUMS = 11, "2", "every chunk reads back; every dataset's SHA-256 equals its sha256"
    ROOT_DIGEST = 12, "2.1", "root_sha256 equals the digest of the canonical form"
    ROW_DIGESTS = 13, "2.2", "/row_sha256 lists the row datasets, has shape (M, D, 32), every row matches"
    SELF_CONTAINED = 14, "2.3", "hard links only, one path per object, no external or virtual storage"
    LIMITS = 15, "2.4", "every declared size within the limits and backed by the file's bytes"
    STREAM = 16, "4.7, 5.1", "/stream, when present: attributes, teacher, datasets, starts, bounded values, codec"
    STREAM_DIGESTS = 17, "4.7", "/stream/batch_sha256 lists the stream's datasets, (NB, D, 32), every batch matches"
    STREAM_TAIL = 18, "4.8", "/stream/tail, when present: topk probs with k < C, rank, mean, basis, coef, scale, digests"

    @property
    def number(self) -> int:
        """The rule's number in spec section 8."""
        return int(self)

    @property
    def label(self) -> str:
        """The rule's name as spec section 8 writes it (``"root_digest"``)."""
        return self.name.lower()

    def __str__(self) -> str:
        """``"8 dense"``: how tools name the rule."""
        return f"{self.number} {self.label}"
