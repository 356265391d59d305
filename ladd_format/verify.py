"""The verifier: every rule of spec section 8, each failure one :class:`LaddError` naming the file,
the dataset and what was expected.

Each dataset is read once, block by block: the blocks feed the SHA-256 and the value checks, and a
block whose fletcher32 fails is narrowed down to its chunk.

Every problem carries the number of the rule it breaks (``LaddError.rule_number`` and ``.rule``):
the rule being run when it was found, except that a failed fletcher32 or SHA-256 (or a missing
``sha256`` attribute), found while a dataset is read for another rule, is rule 11 (checksums).

:data:`CHECKS` maps every :class:`~ladd_format.spec.rules.Rule` to the function that decides it.
:func:`check` returns a :class:`VerifyResult` (the problems, and a valid file's version and digests,
from one opening); :func:`verify` returns the problems alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from . import geometry, integrity
from . import spec as S
from .codecs import codec_from_file, dense_attr_owners
from .errors import (
    AttributeValueError,
    ChecksumError,
    CodecError,
    ContainmentError,
    DigestError,
    DtypeError,
    FilterError,
    GeometryError,
    LabelRangeError,
    LaddError,
    LimitError,
    MissingFieldError,
    ProbabilityError,
    ShapeError,
    StreamError,
)
from .h5io import attr_dict, check_format, open_h5, text
from .rows import checked_row_bytes
from .spec import limits
from .spec.limits import MAX_CHUNKS_PER_READ, READ_BLOCK_BYTES
from .spec.rules import Rule
from .stream import checks as stream_checks
from .stream.declaration import StreamSpec


#: One check per rule of spec section 8: the function that decides the rule (a method of the
#: verifier, or the shared function it calls). Registered with :func:`checks`; every Rule has one
#: (``tests/test_spec_rules.py``).
CHECKS: dict[Rule, Callable] = {}


def checks(*rules: Rule) -> Callable[[Callable], Callable]:
    """Register the decorated function as the check of ``rules`` (one function may decide several
    rules that one pass over the object headers finds together)."""
    def register(fn: Callable) -> Callable:
        for rule in rules:
            if rule in CHECKS:
                raise ValueError(f"rule {rule} has two checks: {CHECKS[rule].__qualname__}, {fn.__qualname__}")
            CHECKS[rule] = fn
        return fn
    return register


checks(Rule.FILE)(open_h5)                # the file opens as HDF5 (a readable, complete file)
checks(Rule.FORMAT)(check_format)         # format and format_version


# The error class of each rule that integrity's structure and chunk checks report (all they report).
_PROBLEM_CLASS = {Rule.FILE: LaddError, Rule.FILTERS: FilterError, Rule.CHECKSUMS: ChecksumError, Rule.SELF_CONTAINED: ContainmentError,
                  Rule.LIMITS: LimitError}


#: the message of a soft-label (or other float) row that holds NaN or an infinity
NON_FINITE = "values are NaN or infinite"


def soft_label_issues(rows: np.ndarray, kind: str) -> list[tuple[str, int]]:
    """What breaks the value part of rule 6 (spec 4.3) in ``rows`` of ``/soft_labels`` ``(B, C)``:
    ``(message, first row breaking it)`` per kind of problem (empty when the rows hold). Logits must
    be finite; probabilities finite, in [0, 1], each row summing to 1 within ``SOFT_PROBS_TOLERANCE``.
    The verifier and the reader (for every row it returns) both ask this."""
    v = np.asarray(rows, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0:
        return []
    finite = np.isfinite(v).all(axis=1)
    if not finite.all():
        return [(NON_FINITE, int(np.flatnonzero(~finite)[0]))]
    if kind != "probs":
        return []
    found = []
    outside = ((v < 0) | (v > 1)).any(axis=1)
    if outside.any():
        found.append(("probabilities must lie in [0, 1]", int(np.flatnonzero(outside)[0])))
    off = np.abs(v.sum(axis=1) - 1) > S.SOFT_PROBS_TOLERANCE
    if off.any():
        message = f"probability rows must sum to 1 within {S.SOFT_PROBS_TOLERANCE}"
        found.append((message, int(np.flatnonzero(off)[0])))
    return found


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class _Verifier:
    """Runs the rules. With ``read_data=False`` it checks what the object headers and attributes
    decide (every rule but the values and checksums of the datasets' contents): what a reader checks
    when it opens a file."""

    def __init__(self, path: Path, h5: h5py.File, read_data: bool = True,
                 progress: Callable[[int, int], None] | None = None):
        self.path = path
        self.h5 = h5
        self.read_data = read_data
        self.progress = progress      # (MB of data read, MB of the file), after each block scanned
        self.read_bytes = 0
        self.file_bytes = 0           # the file's size, once rule 15 has read it
        self.problems: list[LaddError] = []
        self.rule: Rule = Rule.FORMAT  # the rule being run
        self.minor = 0
        self.version: tuple[int, int] | None = None   # (MAJOR, MINOR) once rule 2 holds
        self.row_digests: h5py.Dataset | None = None   # /row_sha256 once its layout is checked
        self.row_columns: dict[str, int] = {}
        self.stream_digests: h5py.Dataset | None = None   # /stream/batch_sha256 once its layout is checked
        self.stream_batch_start: np.ndarray | None = None  # /stream/batch_start once rule 16 found it valid
        self.scanned: set[str] = set()                     # paths of the datasets read for rule 11
        self.image_space: str | None = None

    def fail(self, cls: type[LaddError], where: str, message: str, rule: Rule | None = None) -> None:
        """Report a problem under ``rule``, by default the rule being run."""
        self.problems.append(cls(message, self.path, where).at_rule(rule or self.rule))

    # -- reading with checksums -----------------------------------------------------------
    @checks(Rule.CHECKSUMS)
    def scan(self, ds: h5py.Dataset, on_block: Callable[[np.ndarray], None] | None = None) -> None:
        """Read ``ds`` block by block: check fletcher32 (by reading), SHA-256, and values.

        Rule 10 ran first: every dataset is chunked, little-endian and has at least one axis."""
        if not self.read_data:
            return
        self.scanned.add(ds.name)
        column = self.row_columns.get(ds.name)
        bad_rows: list[int] = []
        rows = ds.shape[0]
        chunk_rows = ds.chunks[0]
        row_bytes = max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64)))
        block_rows = max(chunk_rows, min((READ_BLOCK_BYTES // row_bytes) // chunk_rows, MAX_CHUNKS_PER_READ) * chunk_rows)
        digest = hashlib.sha256()
        bad_chunks: list[tuple[int, int]] = []
        for start in range(0, rows, block_rows):
            stop = min(rows, start + block_rows)
            try:
                block = ds[start:stop]
            except OSError:
                bad_chunks.extend(self._bad_chunks(ds, start, stop, chunk_rows))
                continue
            if not bad_chunks:
                le = block.astype(block.dtype.newbyteorder("<"), copy=False)
                digest.update(np.ascontiguousarray(le).tobytes())
            if column is not None and len(bad_rows) < 1:
                bad_rows.extend(self._rows_off_digest(block, start, column))
            if on_block is not None:
                on_block(block)
            if self.progress is not None:
                self.read_bytes += block.nbytes
                self.progress(self.read_bytes // 10**6, max(self.read_bytes, self.file_bytes) // 10**6)
        if bad_chunks:
            self._report_bad_chunks(ds, bad_chunks)
            return
        if bad_rows:
            self.fail(DigestError, ds.name, f"row {bad_rows[0]} does not match its digest in /{S.ROW_DIGESTS} "
                      "(spec 2.2): the data is damaged", Rule.ROW_DIGESTS)
        self._check_sha256(ds, digest)

    def _report_bad_chunks(self, ds: h5py.Dataset, bad_chunks: list[tuple[int, int]]) -> None:
        a, b = bad_chunks[0]
        more = f" (and {len(bad_chunks) - 1} more chunks)" if len(bad_chunks) > 1 else ""
        self.fail(ChecksumError, ds.name,
                  f"fletcher32 checksum fails in the chunk holding rows {a}..{b - 1}{more}: the data is corrupt",
                  Rule.CHECKSUMS)

    def _check_sha256(self, ds: h5py.Dataset, digest) -> None:
        """Rule 11: the running SHA-256 of all of ``ds``'s data equals its ``sha256`` attribute."""
        expected = ds.attrs.get(S.SHA256_ATTR)
        if expected is None:
            self.fail(MissingFieldError, ds.name, f"attribute {S.SHA256_ATTR!r} is missing", Rule.CHECKSUMS)
        elif text(expected) != digest.hexdigest():
            self.fail(ChecksumError, ds.name,
                      f"SHA-256 of the data is {digest.hexdigest()[:16]}..., attribute sha256 says "
                      f"{text(expected)[:16]}...: the data changed after writing", Rule.CHECKSUMS)

    def _rows_off_digest(self, block: np.ndarray, start: int, column: int) -> list[int]:
        """Rows of ``block`` (starting at row ``start``) whose SHA-256 differs from /row_sha256."""
        try:
            stored = self.row_digests[start:start + block.shape[0], column]
        except OSError:
            return []  # the checksum scan of /row_sha256 reports it
        differ = np.any(integrity.row_digests(block) != stored, axis=1)
        return [start + int(i) for i in np.flatnonzero(differ)[:1]]

    @staticmethod
    def _bad_chunks(ds, start, stop, chunk_rows):
        bad = []
        for a in range(start, stop, chunk_rows):
            b = min(stop, a + chunk_rows)
            try:
                ds[a:b]
            except OSError:
                bad.append((a, b))
        return bad

    # -- rules ----------------------------------------------------------------------------
    def run(self) -> list[LaddError]:
        # rules 14 and 15 first, from the object headers and attribute types: nothing is allocated
        # or looped over on the strength of a declared size before the sizes are known to be bounded
        # and backed by bytes, and no attribute value is read before its type is known to be allowed
        file_bytes = self.file_bytes = self.path.stat().st_size
        self.check_structure()
        if self.problems:
            if any(p.rule_number == 1 for p in self.problems):
                return self.problems
            try:  # a file that is not a D_LA at all is named as such (rule 2), not by its layout
                check_format(self.h5, self.path)
            except LaddError as exc:
                return [exc.at_rule(Rule.FORMAT)]
            return self.problems
        try:
            self.version = check_format(self.h5, self.path)
            self.minor = self.version[1]
        except LaddError as exc:
            return [exc.at_rule(Rule.FORMAT)]  # nothing else can be interpreted
        except Exception as exc:  # noqa: BLE001 - damaged metadata
            return [LaddError(f"root attributes cannot be read ({integrity._first_line(exc)})", self.path, "/")
                    .at_rule(Rule.FILE)]
        if self.read_data:  # every chunk problem names its rule (11 or 15)
            for ds in self._datasets():
                for p in integrity.chunk_problems(ds, file_bytes):
                    self.fail(_PROBLEM_CLASS[p.rule], p.where, p.message, p.rule)
            if self.problems:
                return self.problems
        self.guarded(Rule.ROOT_DIGEST, self.check_root_digest, "/")
        num_classes = self.guarded(Rule.ROOT, self.check_root, "/")
        self.guarded(Rule.ROW_DIGESTS, self.check_row_digest_layout, S.ROW_DIGESTS_PATH)
        m, k, h, w = self.guarded(Rule.IMAGES, self.check_images, S.IMAGES_PATH) or (None,) * 4
        self.guarded(Rule.LABELS, lambda: self.check_labels(m, num_classes), S.LABELS_PATH)
        self.guarded(Rule.SOFT_LABELS, lambda: self.check_soft_labels(m, num_classes), S.SOFT_LABELS_PATH)
        self.guarded(Rule.NORMALIZATION, lambda: self.check_normalization(k), S.NORMALIZATION_PATH)
        self.guarded(Rule.DENSE, lambda: self.check_dense(m, num_classes, h, w), S.DENSE_PATH)
        self.guarded(Rule.PROVENANCE, self.check_provenance, S.PROVENANCE_PATH)
        self.guarded(Rule.STREAM_DIGESTS, lambda: self.check_stream_digest_layout(num_classes),
                     S.stream_path(S.STREAM_BATCH_DIGESTS))
        self.guarded(Rule.STREAM, lambda: self.check_stream(m, num_classes, k, h, w), S.STREAM_PATH)
        self.guarded(Rule.STREAM_TAIL, lambda: self.check_stream_tail(num_classes), S.STREAM_TAIL_PATH)
        # rule 10 (filters) ran with rules 14 and 15; rule 11 (checksums) and the row digests of
        # rule 13 run inside rules 4, 5, 6 and 8, as each dataset is read once
        return self.problems

    @checks(Rule.FILTERS, Rule.SELF_CONTAINED, Rule.LIMITS)
    def check_structure(self) -> None:
        """Rules 10, 14 and 15 (and rule 1 for damaged headers) from the object headers alone, in
        one walk of the file; the chunk-index part of rule 15 (:func:`integrity.chunk_problems`) runs
        next, before any dataset is read."""
        for p in integrity.structure_problems(self.h5, self.file_bytes):
            self.fail(_PROBLEM_CLASS[p.rule], p.where, p.message, p.rule)

    def _datasets(self) -> list[h5py.Dataset]:
        found = []
        self.h5.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
        return found

    @checks(Rule.ROOT_DIGEST)
    def check_root_digest(self) -> None:
        stored = self.h5.attrs.get(S.ROOT_DIGEST)
        if stored is None:
            if self.minor >= S.DIGESTS_SINCE_MINOR:
                self.fail(MissingFieldError, "/", f"root attribute {S.ROOT_DIGEST!r} is missing (required since "
                          f"format 1.{S.DIGESTS_SINCE_MINOR})")
            return
        actual = integrity.root_digest(self.h5)
        if text(stored) != actual:
            self.fail(DigestError, "/", f"root digest is {actual[:16]}..., attribute {S.ROOT_DIGEST} says "
                      f"{text(stored)[:16]}...: an attribute or the layout changed after writing (spec 2.1)")

    @checks(Rule.ROW_DIGESTS)
    def check_row_digest_layout(self) -> None:
        ds = self.h5.get(S.ROW_DIGESTS)
        if ds is None:
            if self.minor >= S.DIGESTS_SINCE_MINOR:
                self.fail(MissingFieldError, S.ROW_DIGESTS_PATH, "required dataset is missing (required since "
                          f"format 1.{S.DIGESTS_SINCE_MINOR})")
            return
        if not isinstance(ds, h5py.Dataset):
            self.fail(MissingFieldError, S.ROW_DIGESTS_PATH, "must be a dataset, found a group")
            return
        codec_datasets: list[str] = []
        dense = self.h5.get(S.DENSE)
        if isinstance(dense, h5py.Group):
            try:
                c = int(self.h5.attrs[S.NUM_CLASSES_ATTR])
                codec_datasets = list(codec_from_file(dense.attrs, dense).layout(1, c))
            except (LaddError, ValueError, TypeError, KeyError):
                codec_datasets = []  # rule 8 reports the codec
        expected = integrity.row_datasets(self.h5, codec_datasets)
        names = ds.attrs.get(S.ROW_DIGESTS_DATASETS)
        listed = None if names is None else [text(v) for v in np.atleast_1d(names)]
        if listed != expected:
            self.fail(AttributeValueError, ds.name, f"attribute {S.ROW_DIGESTS_DATASETS!r} must list {expected}, "
                      f"got {listed}")
            return
        images = self.h5.get(S.IMAGES)
        if not isinstance(images, h5py.Dataset) or images.ndim != 4:
            return  # rule 4 reports it; the rows cannot be counted
        shape = (images.shape[0], len(expected), integrity.DIGEST_BYTES)
        if ds.dtype != np.uint8 or ds.shape != shape:
            self.fail(ShapeError, ds.name, f"must be uint8 of shape {shape}, got {ds.dtype} {ds.shape}")
            return
        self.scan(ds)
        self.row_digests = ds
        self.row_columns = {path: i for i, path in enumerate(expected)}

    def guarded(self, rule: Rule, check, where: str):
        """Run one rule; a file too malformed for the rule to even inspect is reported, not raised.

        Problems found while it runs are reported under ``rule`` unless they name another one."""
        self.rule = rule
        try:
            return check()
        except LaddError as exc:
            self.problems.append(exc.at_rule(Rule.CHECKSUMS if isinstance(exc, ChecksumError) else rule))
        except Exception as exc:  # noqa: BLE001 - a malformed or damaged file, never a traceback
            self.fail(LaddError, where, f"malformed beyond checking ({type(exc).__name__}: {exc})")
        return None

    @checks(Rule.ROOT)
    def check_root(self) -> int | None:
        a = self.h5.attrs
        c = a.get(S.NUM_CLASSES_ATTR)
        if c is None:
            self.fail(MissingFieldError, "/", "root attribute 'num_classes' is missing")
            return None
        if not _is_int(c) or int(c) < 1:
            self.fail(AttributeValueError, "/", f"num_classes must be an integer >= 1, got {c!r}")
            return None
        c = int(c)
        if c > limits.MAX_CLASSES:
            self.fail(LimitError, "/", f"num_classes {c} is above the limit {limits.MAX_CLASSES} (spec 2.4)",
                      Rule.LIMITS)
            return None
        if S.CLASS_NAMES_ATTR in a:
            names = np.atleast_1d(a[S.CLASS_NAMES_ATTR])
            if h5py.check_string_dtype(a.get_id(S.CLASS_NAMES_ATTR).dtype) is None:
                self.fail(DtypeError, "/", f"class_names must be strings, got {names.dtype}")
            elif names.shape != (c,):
                self.fail(ShapeError, "/", f"class_names must have {c} entries, has {names.size}")
        if S.IPC_ATTR in a and (not _is_int(a[S.IPC_ATTR]) or int(a[S.IPC_ATTR]) < 1):
            self.fail(AttributeValueError, "/", f"ipc must be an integer >= 1, got {a['ipc']!r}")
        return c

    def _dataset(self, name: str) -> h5py.Dataset | None:
        obj = self.h5.get(name)
        if obj is None:
            self.fail(MissingFieldError, S.path_of(name), "required dataset is missing")
            return None
        if not isinstance(obj, h5py.Dataset):
            self.fail(MissingFieldError, S.path_of(name), "must be a dataset, found a group")
            return None
        return obj

    @checks(Rule.IMAGES)
    def check_images(self):
        ds = self._dataset(S.IMAGES)
        if ds is None:
            return None, None, None, None
        if ds.ndim != 4 or ds.shape[0] < 1 or min(ds.shape) < 1:
            self.fail(ShapeError, ds.name, f"must be (M, K, H, W) with M >= 1 and positive sides, got {ds.shape}")
            return None, None, None, None
        m, k, h, w = ds.shape
        space = text(ds.attrs.get(S.SPACE_ATTR, ""))
        self.image_space = space
        dtype = ds.dtype
        if dtype == np.uint8:
            if space != S.SPACE_UINT8:
                self.fail(AttributeValueError, ds.name, f"uint8 images must have space 'pixel255', got {space!r}")
        elif dtype in (np.float16, np.float32):
            if space not in S.SPACES_FLOAT:
                self.fail(AttributeValueError, ds.name,
                          f"float images must have space in {list(S.SPACES_FLOAT)}, got {space!r}")
        else:
            self.fail(DtypeError, ds.name, f"dtype must be uint8, float16 or float32, got {dtype}")
        if ds.chunks is not None and ds.chunks != (1, k, h, w):
            self.fail(ShapeError, ds.name, f"chunk shape must be (1, {k}, {h}, {w}), got {ds.chunks}")
        nonfinite = [0]

        def count_nonfinite(block):
            nonfinite[0] += int(np.sum(~np.isfinite(block)))
        self.scan(ds, count_nonfinite if dtype.kind == "f" else None)
        if dtype.kind == "f" and nonfinite[0]:
            self.fail(ProbabilityError, ds.name, f"{nonfinite[0]} pixel values are NaN or infinite")
        return m, k, h, w

    @checks(Rule.LABELS)
    def check_labels(self, m, num_classes):
        ds = self._dataset(S.LABELS)
        if ds is None:
            return
        if m is not None and ds.shape != (m,):
            self.fail(ShapeError, ds.name, f"shape must be ({m},) to match /images, got {ds.shape}")
        if ds.dtype.kind not in "iu":  # rule 10 already refused big-endian types
            self.fail(DtypeError, ds.name, f"dtype must be an integer type, got {ds.dtype.str}")
            self.scan(ds)
            return
        seen = {"lo": None, "hi": None, "bad": 0}

        def on_block(block):
            if block.size and num_classes is not None:
                seen["bad"] += int(np.sum((block < 0) | (block >= num_classes)))
                lo, hi = int(block.min()), int(block.max())
                seen["lo"] = lo if seen["lo"] is None else min(seen["lo"], lo)
                seen["hi"] = hi if seen["hi"] is None else max(seen["hi"], hi)
        self.scan(ds, on_block)
        if seen["bad"]:
            self.fail(LabelRangeError, ds.name, f"{seen['bad']} labels outside [0, {num_classes}): "
                      f"found {seen['lo']}..{seen['hi']}")

    @checks(Rule.SOFT_LABELS)
    def check_soft_labels(self, m, num_classes):
        ds = self.h5.get(S.SOFT_LABELS)
        if ds is None:
            return
        kind = text(ds.attrs.get(S.KIND_ATTR, ""))
        if kind not in S.SOFT_KINDS:
            self.fail(AttributeValueError, ds.name, f"attribute kind must be one of {list(S.SOFT_KINDS)}, got {kind!r}")
        if m is not None and num_classes is not None and ds.shape != (m, num_classes):
            self.fail(ShapeError, ds.name, f"shape must be ({m}, {num_classes}), got {ds.shape}")
        if ds.dtype not in (np.float16, np.float32):
            self.fail(DtypeError, ds.name, f"dtype must be float16 or float32, got {ds.dtype}")
            self.scan(ds)
            return
        issues: list[str] = []

        def on_block(block):
            issues.extend(message for message, _ in soft_label_issues(block, kind))
        self.scan(ds, on_block)
        for msg in dict.fromkeys(issues):
            self.fail(ProbabilityError, ds.name, msg)

    @checks(Rule.NORMALIZATION)
    def check_normalization(self, k):
        g = self.h5.get(S.NORMALIZATION)
        if g is None:
            self.fail(MissingFieldError, S.NORMALIZATION_PATH, "required group is missing")
            return
        for key in (S.MEAN_ATTR, S.STD_ATTR):
            if key not in g.attrs:
                self.fail(MissingFieldError, S.NORMALIZATION_PATH, f"attribute {key!r} is missing")
                continue
            v = np.atleast_1d(np.asarray(g.attrs[key], dtype=np.float64))
            if k is not None and v.shape != (k,):
                self.fail(ShapeError, S.NORMALIZATION_PATH, f"{key} must have {k} values (one per channel), has {v.size}")
            if not np.all(np.isfinite(v)):
                self.fail(AttributeValueError, S.NORMALIZATION_PATH, f"{key} must be finite")
            if key == S.STD_ATTR and np.any(v <= 0):
                self.fail(AttributeValueError, S.NORMALIZATION_PATH, f"std must be > 0, got {v.tolist()}")

    @checks(Rule.DENSE)
    def check_dense(self, m, num_classes, h, w):
        g = self.h5.get(S.DENSE)
        if g is None:
            return
        a = g.attrs
        where = S.DENSE_PATH
        for key in S.DENSE_REQUIRED_ATTRS:
            if key not in a:
                self.fail(MissingFieldError, where, f"attribute {key!r} is missing")
        if any(key not in a for key in (S.N_ATTR, S.RATIO_ATTR, S.CODEC_ATTR)):
            return
        n, ratio = a[S.N_ATTR], a[S.RATIO_ATTR]
        if not _is_int(n) or int(n) < 1:
            self.fail(AttributeValueError, where, f"n must be an integer >= 1, got {n!r}")
            return
        n = int(n)
        if n > limits.MAX_GRID_N or n * n * (num_classes or 1) > limits.MAX_DENSE_ROW_VALUES:
            self.fail(LimitError, where, f"n = {n} with {num_classes} classes is above the limits N <= "
                      f"{limits.MAX_GRID_N}, N*N*C <= {limits.MAX_DENSE_ROW_VALUES} (spec 2.4)", Rule.LIMITS)
            return
        ratio = float(ratio)
        if not (math.isfinite(ratio) and 0 < ratio <= 1):
            self.fail(AttributeValueError, where, f"ratio must be in (0, 1], got {ratio}")
            return
        if S.RESIZE_ATTR in a and text(a[S.RESIZE_ATTR]) != geometry.RESIZE:
            self.fail(AttributeValueError, where, f"resize must be {geometry.RESIZE!r}, got {text(a[S.RESIZE_ATTR])!r}")
        if S.TEMPERATURE_ATTR in a:
            t = float(a[S.TEMPERATURE_ATTR])
            if not (math.isfinite(t) and t > 0):
                self.fail(AttributeValueError, where, f"temperature must be > 0, got {t}")
        if S.BOXES_ATTR in a and h is not None:
            stored = np.asarray(a[S.BOXES_ATTR])
            if not geometry.boxes_inside(stored, h, w):
                self.fail(GeometryError, where, f"boxes must be an integer (N*N, 4) array [top, left, height, "
                          f"width] inside the {h}x{w} image")
            else:
                try:
                    expected = geometry.boxes(h, w, n, ratio)
                except ValueError as exc:
                    self.fail(GeometryError, where, f"geometry: {exc}")
                else:
                    if stored.shape != expected.shape or not np.array_equal(stored, expected):
                        self.fail(GeometryError, where, f"boxes disagree with spec section 5 for {h}x{w}, N={n}, "
                                  f"R={ratio}: expected first box {expected[0].tolist()}")
        for key, owners in dense_attr_owners().items():
            if key in a and text(a[S.CODEC_ATTR]) not in owners:
                self.fail(AttributeValueError, where, f"attribute {key} belongs to codec {' or '.join(owners)} only, "
                          f"codec is {text(a[S.CODEC_ATTR])!r}")
        if "labeler" not in g or S.ARCH_ATTR not in g["labeler"].attrs:
            self.fail(MissingFieldError, S.LABELER_PATH, "group with attribute 'arch' is required")
        try:
            codec = codec_from_file(a, g)
            layout = codec.layout(n * n, num_classes or 1)
        except CodecError as exc:
            self.fail(CodecError, where, exc.message)
            return
        present = {}
        for name, (tail, dtype) in layout.items():
            ds = g.get(name)
            if ds is None:
                self.fail(MissingFieldError, S.dense_path(name), f"dataset required by codec {codec.name!r} is missing")
                continue
            if m is not None and ds.shape != (m, *tail):
                self.fail(ShapeError, ds.name, f"shape must be {(m, *tail)}, got {ds.shape}")
                continue
            if ds.dtype != dtype:
                self.fail(DtypeError, ds.name, f"dtype must be {np.dtype(dtype)} for codec {codec.name!r}, got {ds.dtype}")
                continue
            self.scan(ds)
            present[name] = ds
        if len(present) != len(layout) or num_classes is None:
            return
        self._check_dense_values(codec, present, num_classes)

    def _check_dense_values(self, codec, datasets: dict[str, h5py.Dataset], num_classes: int) -> None:
        if not self.read_data:
            return
        rows = next(iter(datasets.values())).shape[0]
        step = max(1, READ_BLOCK_BYTES // max(1, checked_row_bytes(datasets.values())))
        issues: dict[str, int] = {}
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            try:
                block = {name: ds[start:stop] for name, ds in datasets.items()}
            except OSError:
                return  # already reported by the checksum scan
            for msg in codec.check(block, num_classes):
                issues.setdefault(msg, start)
        target = S.dense_path(codec.values_dataset)
        for msg, start in issues.items():
            self.fail(ProbabilityError, target, f"{msg} (first seen in images from {start})")

    # -- the relabel stream (rules 16, 17) -------------------------------------------------------
    def _stream_group(self, report: bool = True) -> h5py.Group | None:
        """``/stream`` of a file of format 1.2 or later (earlier files have none: a group of that name
        there is unknown to them, and ignored as section 2 says); a dataset of that name is reported
        (rule 16) when ``report``."""
        g = self.h5.get(S.STREAM)
        if g is None or self.minor < S.STREAM_SINCE_MINOR:
            return None
        if not isinstance(g, h5py.Group):
            if report:
                self.fail(StreamError, S.STREAM_PATH, "must be a group, found a dataset", Rule.STREAM)
            return None
        return g

    def _stream_spec(self, g: h5py.Group, num_classes: int | None) -> StreamSpec | None:
        """The stream's declaration when its attributes hold (rule 16 reports them otherwise)."""
        if stream_checks.attribute_problems(g, num_classes, None, None):
            return None
        return stream_checks.spec_from_group(g)

    @checks(Rule.STREAM_DIGESTS)
    def check_stream_digest_layout(self, num_classes: int | None) -> None:
        """Rule 17's layout: ``/stream/batch_sha256`` present, uint8 (NB, D, 32), its ``datasets``
        listing exactly the stream's datasets in 4.7's order; its own data read (rule 11). The
        digests of every batch are compared while rule 16 reads the stream (:meth:`check_stream`)."""
        g = self._stream_group(report=False)
        if g is None or num_classes is None:
            return
        spec = self._stream_spec(g, num_classes)
        if spec is None:
            return  # rule 16 reports the declaration; the digested datasets cannot be told
        where = S.stream_path(S.STREAM_BATCH_DIGESTS)
        ds = g.get(S.STREAM_BATCH_DIGESTS)
        if not isinstance(ds, h5py.Dataset):
            self.fail(MissingFieldError, where, "required dataset is missing" if ds is None else
                      "must be a dataset, found a group")
            return
        expected = [S.stream_path(name) for name in spec.digested(num_classes)]
        names = ds.attrs.get(S.ROW_DIGESTS_DATASETS)
        listed = None if names is None else [text(v) for v in np.atleast_1d(names)]
        if listed != expected:
            self.fail(AttributeValueError, where, f"attribute {S.ROW_DIGESTS_DATASETS!r} must list {expected}, "
                      f"got {listed}")
            return
        starts = g.get(S.STREAM_BATCH_START)
        if not isinstance(starts, h5py.Dataset) or starts.ndim != 1:
            return  # rule 16 reports it; the batches cannot be counted
        shape = (starts.shape[0], len(expected), integrity.DIGEST_BYTES)
        if ds.dtype != np.uint8 or ds.shape != shape:
            self.fail(ShapeError, where, f"must be uint8 of shape {shape}, got {ds.dtype} {ds.shape}")
            return
        self.scan(ds)
        self.stream_digests = ds

    @checks(Rule.STREAM)
    def check_stream(self, m, num_classes, k, h, w) -> None:
        """Rule 16 (4.7, 5.1; the stream's limits of 2.4 are rule 15): the attributes and
        ``/stream/teacher``, the datasets of the declared mix and codec with their shapes and dtypes
        and no other, ``epoch_start``/``batch_start`` as 4.7 says, and every value within its bounds.
        The datasets are read once, in blocks of whole batches of about ``READ_BLOCK_BYTES`` of
        working copies: each block feeds the dataset's SHA-256 (rule 11), the batch digests (rule
        17, when its layout held) and the value checks."""
        g = self._stream_group()
        if g is None:
            return
        try:
            self._check_stream(g, m, num_classes, k, h, w)
        finally:
            # a stream too broken to be read batch by batch still has every dataset's sha256 checked (rule 11)
            for ds in g.values():
                if isinstance(ds, h5py.Dataset) and ds.name not in self.scanned and ds.ndim >= 1:
                    self.scan(ds)

    def _check_stream(self, g: h5py.Group, m, num_classes, k, h, w) -> None:
        problems = stream_checks.attribute_problems(g, num_classes, k, self.image_space)
        for p in problems:
            self.fail(LimitError if p.rule == Rule.LIMITS else StreamError, p.where, p.message, p.rule)
        if problems or num_classes is None:
            return
        spec = stream_checks.spec_from_group(g)
        layout, q, nb = stream_checks.layout_problems(g, spec, num_classes)
        layout = [p for p in layout if p.rule != Rule.STREAM_DIGESTS]   # rule 17's own check reports those
        for p in layout:
            self.fail(LimitError if p.rule == Rule.LIMITS else StreamError, p.where, p.message, p.rule)
        if layout or not self.read_data:
            return
        starts = {}
        for name in (S.STREAM_EPOCH_START, S.STREAM_BATCH_START):
            blocks: list[np.ndarray] = []
            before = len(self.problems)
            self.scan(g[name], blocks.append)
            if len(self.problems) != before:
                return  # unreadable or damaged (rule 11): the batches cannot be told
            starts[name] = np.concatenate(blocks).astype(np.int64) if blocks else np.zeros(0, np.int64)
        found = stream_checks.starts_problems(starts[S.STREAM_EPOCH_START], starts[S.STREAM_BATCH_START], q,
                                              int(spec.batch_size))
        for name, message in found:
            self.fail(StreamError, S.stream_path(name), f"{message} (spec 4.7)")
        if found:
            return
        self.stream_batch_start = starts[S.STREAM_BATCH_START]
        self._scan_stream(g, spec, num_classes, starts[S.STREAM_BATCH_START], q, m, h, w)

    def _scan_stream(self, g: h5py.Group, spec: StreamSpec, num_classes: int, batch_start: np.ndarray, q: int,
                     m, h, w) -> None:
        """Read every digested stream dataset once, in blocks of whole batches, for rules 11, 16, 17."""
        names = spec.digested(num_classes)
        datasets = {name: g[name] for name in names}
        lengths = np.append(batch_start[1:], q) - batch_start
        record_bytes = checked_row_bytes(ds for name, ds in datasets.items() if not spec.per_batch(name))
        running = {name: hashlib.sha256() for name in names}
        broken: set[str] = set()          # datasets with an unreadable chunk (reported under rule 11)
        values: dict[str, str] = {}       # dataset -> the first value problem found
        mismatch: dict[str, int] = {}     # dataset -> the first batch off its digest
        labels = list(spec.codec.layout(num_classes))
        for b0, b1, r0, rows in self._batch_blocks(datasets, batch_start, q, record_bytes, spec.per_batch,
                                                   running, broken):
            self._compare_batch_digests(names, rows, batch_start, b0, b1, mismatch)
            if all(name in rows for name in (S.STREAM_IMAGE, S.STREAM_BOX, S.STREAM_FLIP, *spec.mix_datasets(),
                                              *labels)):
                found = stream_checks.batch_problems(
                    spec, num_classes, m, h, w, rows[S.STREAM_IMAGE], rows[S.STREAM_BOX], rows[S.STREAM_FLIP],
                    rows.get(S.STREAM_MIX_PARTNER), rows.get(S.STREAM_MIX_BOX), rows.get(S.STREAM_MIX_LAMBDA),
                    {name: rows[name] for name in labels}, lengths=np.repeat(lengths[b0:b1], lengths[b0:b1]),
                    record_offset=r0, batch_offset=b0)
                for name, message in found:
                    values.setdefault(name, message)
        self._finish_digests(datasets, broken, running, mismatch, S.STREAM_BATCH_DIGESTS, "4.7", Rule.STREAM_DIGESTS)
        for name, message in values.items():
            self.fail(StreamError, S.stream_path(name), f"{message} (spec 4.7)")

    def _batch_blocks(self, datasets: dict[str, h5py.Dataset], batch_start: np.ndarray, q: int, record_bytes: int,
                      per_batch: Callable[[str], bool], running: dict, broken: set[str]):
        """Read ``datasets`` once, in blocks of whole batches (at least one, about READ_BLOCK_BYTES of
        records): yields ``(b0, b1, r0, rows)`` for batches [b0, b1), whose first record is r0, with each
        readable dataset's rows (per-batch datasets: rows b0..b1). Every block read is added to its
        dataset's ``running`` SHA-256; a dataset with an unreadable chunk is reported (rule 11), put in
        ``broken`` and read no more."""
        self.scanned.update(ds.name for ds in datasets.values())
        nb = int(batch_start.shape[0])
        ends = np.append(batch_start[1:], q)
        block_records = max(1, READ_BLOCK_BYTES // max(1, record_bytes))
        b0 = 0
        while b0 < nb:
            b1 = max(b0 + 1, int(np.searchsorted(batch_start, batch_start[b0] + block_records, side="left")))
            r0, r1 = int(batch_start[b0]), int(ends[b1 - 1])
            rows: dict[str, np.ndarray] = {}
            for name, ds in datasets.items():
                if name in broken:
                    continue
                a, z = (b0, b1) if per_batch(name) else (r0, r1)
                try:
                    rows[name] = ds[a:z]
                except OSError:
                    broken.add(name)
                    self._report_bad_chunks(ds, self._bad_chunks(ds, a, z, ds.chunks[0]))
                    continue
                block = rows[name]
                running[name].update(np.ascontiguousarray(block.astype(block.dtype.newbyteorder("<"), copy=False)))
                if self.progress is not None:
                    self.read_bytes += block.nbytes
                    self.progress(self.read_bytes // 10**6, max(self.read_bytes, self.file_bytes) // 10**6)
            yield b0, b1, r0, rows
            b0 = b1

    def _finish_digests(self, datasets: dict[str, h5py.Dataset], broken: set[str], running: dict,
                        mismatch: dict[str, int], table: str, section: str, rule: Rule) -> None:
        """After :meth:`_batch_blocks`: each dataset read whole against its ``sha256`` (rule 11), and the
        first batch off its digest in the table ``table`` (a name inside ``/stream``) reported under ``rule``."""
        for name, ds in datasets.items():
            if name in broken:
                continue
            self._check_sha256(ds, running[name])
            if name in mismatch:
                self.fail(DigestError, ds.name, f"batch {mismatch[name]} does not match its digest in "
                          f"{S.stream_path(table)} (spec {section}): the data is damaged", rule)

    def _compare_batch_digests(self, names: list[str], rows: dict[str, np.ndarray], batch_start: np.ndarray,
                               b0: int, b1: int, mismatch: dict[str, int], table_ds: h5py.Dataset | None = None
                               ) -> None:
        """Rule 17's comparison for batches [b0, b1): each dataset's rows of each batch against its
        entry in ``/stream/batch_sha256`` (when that held its layout), or in ``table_ds`` (rule 18:
        ``/stream/tail/batch_sha256``); the first batch off is recorded per dataset in ``mismatch``."""
        table_ds = self.stream_digests if table_ds is None else table_ds
        if table_ds is None:
            return
        try:
            table = table_ds[b0:b1]
        except OSError:
            return  # the checksum scan of /stream/batch_sha256 reported it
        r0 = int(batch_start[b0])
        for column, name in enumerate(names):
            if name not in rows or name in mismatch:
                continue
            data = rows[name]
            for b in range(b0, b1):
                if StreamSpec.per_batch(name):
                    piece = data[b - b0:b - b0 + 1]
                else:
                    a = int(batch_start[b]) - r0
                    z = (int(batch_start[b + 1]) if b + 1 < len(batch_start) else r0 + data.shape[0]) - r0
                    piece = data[a:z]
                piece = np.ascontiguousarray(piece.astype(piece.dtype.newbyteorder("<"), copy=False))
                if hashlib.sha256(memoryview(piece.reshape(-1).view(np.uint8))).digest() != table[b - b0, column].tobytes():
                    mismatch[name] = b
                    break

    # -- the tail of a top-k stream (rule 18, since 1.3) -----------------------------------------
    @checks(Rule.STREAM_TAIL)
    def check_stream_tail(self, num_classes: int | None) -> None:
        """Rule 18 (4.8, since 1.3): when ``/stream/tail`` is present in a file of format 1.3 or
        later, the stream is kind probs, codec topk, k < C; ``rank`` an integer from 1 to
        min(C, 256); exactly the five datasets with their shapes and dtypes; mean and basis finite;
        every scale finite and >= 0; ``batch_sha256`` listing coef and scale, and every batch of both
        matching its digest (when rule 16 found ``batch_start`` valid). Every tail dataset is read
        once (rule 11). Below 1.3 an object of that name is ignored."""
        g = self._stream_group(report=False)
        if g is None or num_classes is None or not stream_checks.has_tail(g, self.minor):
            return
        tail = g[S.STREAM_TAIL]
        try:
            self._check_stream_tail(g, num_classes)
        finally:
            if isinstance(tail, h5py.Group):      # every dataset's sha256 is checked, broken tail or not (rule 11)
                for ds in tail.values():
                    if isinstance(ds, h5py.Dataset) and ds.name not in self.scanned and ds.ndim >= 1:
                        self.scan(ds)

    def _check_stream_tail(self, g: h5py.Group, num_classes: int) -> None:
        problems, _ = stream_checks.tail_layout_problems(g, num_classes)
        for p in problems:
            self.fail(StreamError, p.where, p.message, p.rule)
        if problems or not self.read_data:
            return
        whole: dict[str, list[np.ndarray]] = {S.STREAM_TAIL_MEAN: [], S.STREAM_TAIL_BASIS: []}
        for name, blocks in whole.items():
            self.scan(g[name], blocks.append)
        for name, message in stream_checks.basis_problems(*(np.concatenate(b) if b else np.zeros(0)
                                                             for b in whole.values())):
            self.fail(StreamError, S.stream_path(name), message)
        table = g[S.STREAM_TAIL_DIGESTS]
        before = len(self.problems)
        self.scan(table)
        table_ok = len(self.problems) == before
        scale_issue: list[str] = []

        def check_scale(block: np.ndarray, offset: int) -> None:
            message = None if scale_issue else stream_checks.scale_problem(block, offset)
            if message:
                scale_issue.append(message)

        batch_start = self.stream_batch_start
        if batch_start is None or not table_ok:       # the batches cannot be told: values and sha256 only
            self.scan(g[S.STREAM_TAIL_COEF])
            read = [0]

            def on_scale(block: np.ndarray) -> None:
                check_scale(block, read[0])
                read[0] += block.shape[0]

            self.scan(g[S.STREAM_TAIL_SCALE], on_scale)
        else:
            self._scan_tail_batches(g, batch_start, table, check_scale)
        if scale_issue:
            self.fail(StreamError, S.stream_path(S.STREAM_TAIL_SCALE), scale_issue[0])

    def _scan_tail_batches(self, g: h5py.Group, batch_start: np.ndarray, table: h5py.Dataset,
                           check_scale: Callable[[np.ndarray, int], None]) -> None:
        """Read ``coef`` and ``scale`` once, in blocks of whole batches: their SHA-256 (rule 11), every
        batch against ``/stream/tail/batch_sha256`` and the scales' values (rule 18)."""
        names = list(S.STREAM_TAIL_DIGESTED)
        datasets = {name: g[name] for name in names}
        q = int(datasets[S.STREAM_TAIL_SCALE].shape[0])
        running = {name: hashlib.sha256() for name in names}
        broken: set[str] = set()
        mismatch: dict[str, int] = {}
        for b0, b1, r0, rows in self._batch_blocks(datasets, batch_start, q, checked_row_bytes(datasets.values()),
                                                   lambda name: False, running, broken):
            self._compare_batch_digests(names, rows, batch_start, b0, b1, mismatch, table)
            if S.STREAM_TAIL_SCALE in rows:
                check_scale(rows[S.STREAM_TAIL_SCALE], r0)
        self._finish_digests(datasets, broken, running, mismatch, S.STREAM_TAIL_DIGESTS, "4.8", Rule.STREAM_TAIL)

    @checks(Rule.PROVENANCE)
    def check_provenance(self):
        g = self.h5.get(S.PROVENANCE)
        if g is None:
            self.fail(MissingFieldError, S.PROVENANCE_PATH, "required group is missing")
            return
        for key in S.PROVENANCE_REQUIRED_ATTRS:
            if key not in g.attrs:
                self.fail(MissingFieldError, S.PROVENANCE_PATH, f"attribute {key!r} is missing")
        if S.INPUTS_ATTR in g.attrs:
            try:
                inputs = json.loads(text(g.attrs[S.INPUTS_ATTR]))
                if not isinstance(inputs, list):
                    raise ValueError
            except ValueError:
                self.fail(AttributeValueError, S.PROVENANCE_PATH, "inputs must be a JSON list")


@dataclass
class VerifyResult:
    """What ``ladd verify`` reports about one file, read in one opening.

    ``problems``: every rule broken, each a :class:`LaddError` carrying its rule (empty when valid).
    ``format_version``: ``"MAJOR.MINOR"`` as the file declares it ("" when rule 2 fails).
    ``root_sha256``: the stored root digest (spec 2.1), None in a 1.0 file or when there are problems.
    ``content_sha256``: the content digest (2.1, derived), None when there are problems.
    ``stream``: for a valid file with a relabel stream, what rules 16 and 17 checked,
    ``{"epochs": E, "batches": NB, "records": Q}``; None otherwise."""

    problems: list[LaddError]
    format_version: str = ""
    root_sha256: str | None = None
    content_sha256: str | None = None
    stream: dict | None = None

    @property
    def ok(self) -> bool:
        """True when the file breaks no rule."""
        return not self.problems

    def seal(self) -> dict:
        """``{"format_version", "root_sha256", "content_sha256"}``: the JSON fields of a valid file."""
        return {"format_version": self.format_version, "root_sha256": self.root_sha256,
                "content_sha256": self.content_sha256}


def check(path: str | os.PathLike, progress: Callable[[int, int], None] | None = None) -> VerifyResult:
    """Check a file against every rule of the spec (section 8), opening it once.

    Returns a :class:`VerifyResult`: the problems found, each carrying the rule of spec section 8 it
    breaks (``rule_number``, ``rule``), and, for a valid file, its version and digests.
    ``progress(MB read, MB of the file)`` after each block of data scanned."""
    p = Path(path)
    try:
        h5 = open_h5(p)
    except LaddError as exc:
        return VerifyResult([exc.at_rule(Rule.FILE)])
    with h5:
        verifier = _Verifier(p, h5, progress=progress)
        try:
            problems = verifier.run()
            version = "" if verifier.version is None else "{}.{}".format(*verifier.version)
            if problems:
                return VerifyResult(problems, version)
            stored = h5.attrs.get(S.ROOT_DIGEST)
            return VerifyResult([], version, None if stored is None else text(stored),
                                integrity.content_digest_of(h5), _stream_counts(h5, verifier.version))
        except Exception as exc:  # noqa: BLE001 - h5py raises many kinds on damaged metadata
            # damage below what the rules can name (HDF5 metadata): one problem under rule 1
            damaged = LaddError(f"HDF5 structure is damaged ({integrity._first_line(exc)})", p, "/").at_rule(Rule.FILE)
            return VerifyResult([damaged])


def _stream_counts(h5: h5py.File, version: tuple[int, int] | None) -> dict | None:
    """E, NB and Q of a verified file's stream (its shapes, already checked), or None without one (below
    1.2 a group named /stream is not a stream: spec 4.7)."""
    if S.STREAM not in h5 or version is None or version < (S.SUPPORTED_MAJOR, S.STREAM_SINCE_MINOR):
        return None
    group = h5[S.STREAM]
    return {"epochs": int(group[S.STREAM_EPOCH_START].shape[0]), "batches": int(group[S.STREAM_BATCH_START].shape[0]),
            "records": int(group[S.STREAM_IMAGE].shape[0])}


def verify(path: str | os.PathLike, progress: Callable[[int, int], None] | None = None) -> list[LaddError]:
    """Check a file against every rule of the spec. Returns the problems found (empty when valid),
    each carrying the number and name of the rule of spec section 8 it breaks (``rule_number``,
    ``rule``). ``progress(MB read, MB of the file)`` after each block of data scanned.
    :func:`check` returns the same problems with the file's version and digests."""
    return check(path, progress).problems


def header_problems(path: Path, h5: h5py.File) -> list[LaddError]:
    """The rules decided by object headers and attributes alone (no dataset is read except the
    cheap attribute checks): what :func:`ladd_format.open_dla` checks on open."""
    return _Verifier(path, h5, read_data=False).run()


def summary(problems: list[LaddError]) -> dict:
    """The verifier's result as JSON-ready data: per problem the rule number and name (spec section
    8), the dataset or group, the message and the error class."""
    return {"ok": not problems,
            "problems": [{"rule": p.rule_number, "rule_name": p.rule_name, "where": p.where, "message": p.message,
                          "error": type(p).__name__} for p in problems]}


__all__ = ["CHECKS", "VerifyResult", "attr_dict", "check", "header_problems", "soft_label_issues", "summary", "verify"]
