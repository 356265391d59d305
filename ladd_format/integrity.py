"""Spec 1.1 integrity: the root digest, the per-row digests, self-containment and size limits.

Everything here needs numpy and h5py only and reads no dataset contents except the rows asked for:

- :func:`root_digest` hashes the canonical form of spec section 2.1 (every object's path, kind,
  type and shape, and every attribute of every object) — cheap, so readers check it on open;
- :func:`content_digest` is the same hash without ``/provenance`` (derived, never stored): two files
  with the same data have the same content digest whoever wrote them, and when;
- :func:`row_digests` gives the SHA-256 of each row of an array (spec 2.2, ``/row_sha256``);
- :func:`structure_problems` finds what spec 2.3 forbids (links other than hard links, external raw
  storage, virtual datasets, unknown filters) and what breaks the limits of spec 2.4, looking only
  at object headers, so it runs before anything is allocated or looped over.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from . import spec as S
from .errors import LaddError
from .h5io import open_h5
from .spec.rules import Rule
# the limits of spec 2.4 (one definition each, in spec/limits.py)
from .spec.limits import (DEFLATE_MAX_RATIO, MAX_ATTRIBUTE_BYTES, MAX_ATTRIBUTES, MAX_CHUNK_BYTES, MAX_OBJECTS,
                          MAX_RANK, MAX_ROW_BYTES)

ALLOWED_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32"}
NUMERIC_KINDS = "iuf"
DIGEST_BYTES = 32


@dataclass
class Problem:
    """One finding: the spec rule number it breaks, the object, and what was expected."""

    rule: Rule
    where: str
    message: str


# -- canonical form (spec 2.1) --------------------------------------------------------------------
def _field(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data


def _shape_text(shape) -> bytes:
    return ",".join(str(int(v)) for v in shape).encode("ascii")


def type_name(dtype: np.dtype) -> str | None:
    """The canonical type name of a dataset or attribute dtype, or None when spec 2.1 does not allow it."""
    if h5py.check_string_dtype(dtype) is not None:
        return "string"
    if dtype.kind in NUMERIC_KINDS and dtype.itemsize in (1, 2, 4, 8) and not dtype.fields \
            and not (dtype.kind == "f" and dtype.itemsize == 1):
        return dtype.newbyteorder("<").name if dtype.itemsize > 1 else dtype.name
    return None


def _string_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, np.bytes_):
        return bytes(value)
    return str(value).encode("utf-8")


def string_value(value) -> bytes:
    """A string's value as spec section 2 defines it: its bytes up to the first NUL (a fixed-length
    string is padded with NULs, and nothing after a NUL belongs to the value)."""
    return _string_bytes(value).split(b"\0", 1)[0]


def attribute_record(name: str, attr_id: h5py.h5a.AttrID, value) -> bytes:
    """The canonical record of one attribute (spec 2.1)."""
    kind = type_name(attr_id.dtype)
    shape = attr_id.shape or ()
    if kind == "string":
        if shape == ():
            payload = string_value(value.item() if isinstance(value, np.ndarray) else value)
        else:
            payload = b"".join(_field(string_value(v)) for v in np.asarray(value, dtype=object).reshape(-1))
    else:
        arr = np.asarray(value)
        payload = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False)).tobytes()
    return (_field(b"attribute") + _field(name.encode("utf-8")) + _field(kind.encode("ascii"))
            + _field(_shape_text(shape)) + _field(payload))


def object_record(path: str, obj) -> bytes:
    """The canonical record of one object (spec 2.1), without its attributes."""
    if isinstance(obj, h5py.Dataset):
        return (_field(b"object") + _field(path.encode("utf-8")) + _field(b"dataset")
                + _field(type_name(obj.dtype).encode("ascii")) + _field(_shape_text(obj.shape)))
    return _field(b"object") + _field(path.encode("utf-8")) + _field(b"group")


def objects(h5: h5py.File) -> list[tuple[str, object]]:
    """Every object as (path, h5py object), root first, then by the UTF-8 bytes of the path.

    Call only after :func:`structure_problems` found nothing (links are then all hard links and
    the object count is bounded)."""
    found: list[tuple[str, object]] = []

    def visit(name, obj):
        found.append(("/" + name, obj))
    h5.visititems(visit)
    found.sort(key=lambda item: item[0].encode("utf-8"))
    return [("/", h5), *found]


def root_digest(h5: h5py.File) -> str:
    """SHA-256 (lowercase hex) of the canonical form of spec 2.1: every object and attribute except
    the root's ``root_sha256``."""
    return _canonical_digest(h5, provenance=True)


def content_digest_of(h5: h5py.File) -> str:
    """The content digest (spec 2.1) of an open file: SHA-256 (lowercase hex) of the canonical form
    of the root digest without ``/provenance`` (that group, its attributes and anything under it).
    Derived, never stored: equal for two files that hold the same data whoever made them, whenever.

    Call only after :func:`structure_problems` found nothing (as for :func:`root_digest`)."""
    return _canonical_digest(h5, provenance=False)


def content_digest(path: str | os.PathLike) -> str:
    """The content digest (spec 2.1) of the file at ``path``: lowercase hex SHA-256.

    The file's object headers are checked first (spec 2.3, 2.4: what :func:`root_digest` needs to
    walk the file safely); a file that breaks them raises the one-line :class:`LaddError` of the
    first problem. Nothing else is checked: ``ladd verify`` says whether the file is valid."""
    p = Path(path)
    with open_h5(p) as h5:
        problems = structure_problems(h5, file_size(p))
        if problems:
            raise LaddError(problems[0].message, p, problems[0].where).at_rule(problems[0].rule)
        try:
            return content_digest_of(h5)
        except Exception as exc:  # noqa: BLE001 - h5py's errors on damaged headers come in many kinds
            raise LaddError(f"HDF5 object headers are damaged ({_first_line(exc)})", p, "/").at_rule(Rule.FILE) from None


def _in_provenance(path: str) -> bool:
    """Whether an object path is ``/provenance`` or lies under it."""
    group = S.PROVENANCE_PATH
    return path == group or path.startswith(group + "/")


def _canonical_digest(h5: h5py.File, provenance: bool) -> str:
    """SHA-256 of the canonical form of spec 2.1, with or without the objects of ``/provenance``."""
    digest = hashlib.sha256()
    for path, obj in objects(h5):
        if not provenance and _in_provenance(path):
            continue
        digest.update(object_record(path, obj))
        names = sorted(obj.attrs.keys(), key=lambda n: n.encode("utf-8"))
        for name in names:
            if path == "/" and name == S.ROOT_DIGEST:
                continue
            digest.update(attribute_record(name, obj.attrs.get_id(name), obj.attrs[name]))
    return digest.hexdigest()


# -- per-row digests (spec 2.2) -------------------------------------------------------------------
def row_digests(rows: np.ndarray) -> np.ndarray:
    """``(B, 32)`` uint8: the SHA-256 of each row's little-endian C-order bytes."""
    little = rows.dtype.newbyteorder("<")
    if rows.dtype.itemsize > 1 and rows.dtype != little:
        rows = rows.astype(little)
    rows = np.ascontiguousarray(rows)
    count = rows.shape[0]
    data = memoryview(rows.reshape(-1).view(np.uint8)) if rows.size else memoryview(b"")
    step = len(data) // count if count else 0
    out = bytearray()
    for i in range(count):
        out += hashlib.sha256(data[i * step:(i + 1) * step]).digest()
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(count, DIGEST_BYTES)


def row_datasets(h5: h5py.File, codec_datasets: list[str]) -> list[str]:
    """The paths that ``/row_sha256`` must cover, in the order of spec 2.2."""
    names = [S.IMAGES_PATH, S.LABELS_PATH]
    if S.SOFT_LABELS in h5:
        names.append(S.SOFT_LABELS_PATH)
    names.extend(S.dense_path(name) for name in codec_datasets)
    return names


# -- structure and limits (spec 2.3, 2.4) ---------------------------------------------------------
def _filters(plist) -> list[int]:
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


def declared_bytes(ds: h5py.Dataset) -> int:
    return int(np.prod(ds.shape, dtype=object)) * ds.dtype.itemsize if ds.shape else ds.dtype.itemsize


def structure_problems(h5: h5py.File, file_bytes: int) -> list[Problem]:
    """Rules 14 (self-contained) and 15 (limits) from the object headers only; nothing is read
    from any dataset and nothing outside the file is opened. Damaged metadata is rule 1."""
    try:
        return _structure_problems(h5, file_bytes)
    except Exception as exc:  # noqa: BLE001 - h5py's errors on damaged headers come in many kinds
        return [Problem(Rule.FILE, "/", f"HDF5 object headers are damaged ({_first_line(exc)})")]


def _writes_fixed_strings(h5: h5py.File) -> bool:
    """True for a file written as 1.1 or later: its ``format_version`` is a fixed-length string
    (1.0 writers used variable-length strings). Decided from the attribute's type, unread."""
    if S.VERSION_ATTR not in h5.attrs:
        return False
    info = h5py.check_string_dtype(h5.attrs.get_id(S.VERSION_ATTR).dtype)
    return info is not None and info.length is not None


def _structure_problems(h5: h5py.File, file_bytes: int) -> list[Problem]:
    problems: list[Problem] = []
    fixed = _writes_fixed_strings(h5)
    links: list[tuple[str, object]] = []

    def visit_link(name, link):
        links.append((name, link))
        return True if len(links) > MAX_OBJECTS else None
    try:
        h5.visititems_links(visit_link)  # walks hard links only; never follows soft or external ones
    except Exception as exc:  # noqa: BLE001 - damaged link tables raise SystemError, UnicodeDecodeError, ...
        return [Problem(Rule.FILE, "/", f"the object tree cannot be walked ({_first_line(exc)})")]
    if len(links) > MAX_OBJECTS:
        return [Problem(Rule.LIMITS, "/", f"more than {MAX_OBJECTS} objects (spec 2.4)")]
    for name, link in links:
        if not isinstance(name, str):
            return [Problem(Rule.SELF_CONTAINED, "/", f"link name {name!r} is not UTF-8 text (spec 2)")]
        if not isinstance(link, h5py.HardLink):
            kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
            problems.append(Problem(Rule.SELF_CONTAINED, "/" + name, f"is {kind}; only hard links are allowed and no link is "
                                    "followed (spec 2.3)"))
    if problems:
        return problems
    for name, _ in links:
        try:
            obj = h5[name]
            hard_links = h5py.h5o.get_info(obj.id).rc
        except Exception as exc:  # noqa: BLE001
            problems.append(Problem(Rule.FILE, "/" + name, f"object cannot be opened ({_first_line(exc)})"))
            continue
        if hard_links != 1:
            problems.append(Problem(Rule.SELF_CONTAINED, "/" + name, f"has {hard_links} hard links; every object has exactly one "
                                    "path (spec 2.3)"))
            continue
        problems.extend(_attribute_problems("/" + name, obj, fixed))
        if isinstance(obj, h5py.Dataset):
            problems.extend(_dataset_problems("/" + name, obj, file_bytes))
    problems.extend(_attribute_problems("/", h5, fixed))
    return problems


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__


def _attribute_problems(path: str, obj, fixed_strings: bool = False) -> list[Problem]:
    problems = []
    try:
        names = list(obj.attrs.keys())
    except Exception as exc:  # noqa: BLE001
        return [Problem(Rule.FILE, path, f"attributes cannot be read ({_first_line(exc)})")]
    if len(names) > MAX_ATTRIBUTES:
        return [Problem(Rule.LIMITS, path, f"has {len(names)} attributes, more than {MAX_ATTRIBUTES} (spec 2.4)")]
    for name in names:
        if not isinstance(name, str):
            problems.append(Problem(Rule.SELF_CONTAINED, path, f"attribute name {name!r} is not UTF-8 text (spec 2)"))
            continue
        try:
            aid = obj.attrs.get_id(name)
        except Exception as exc:  # noqa: BLE001
            problems.append(Problem(Rule.FILE, path, f"attribute {name!r} cannot be read ({_first_line(exc)})"))
            continue
        kind = type_name(aid.dtype)
        shape = aid.shape
        if kind is None or shape is None or len(shape) > 2 or (kind == "string" and len(shape) > 1):
            problems.append(Problem(Rule.SELF_CONTAINED, path, f"attribute {name!r} has type {aid.dtype} and shape {shape}: only "
                                    "numbers, strings, 1-D arrays of them and 2-D arrays of numbers are allowed (spec 2.1)"))
            continue
        if kind == "string" and fixed_strings and h5py.check_string_dtype(aid.dtype).length is None:
            problems.append(Problem(Rule.SELF_CONTAINED, path, f"attribute {name!r} is a variable-length string: since 1.1 strings "
                                    "are fixed-length (spec 2), so no value lives in HDF5's global heap"))
            continue
        if kind != "string" and int(np.prod(shape, dtype=object)) * aid.dtype.itemsize > MAX_ATTRIBUTE_BYTES:
            problems.append(Problem(Rule.LIMITS, path, f"attribute {name!r} declares more than {MAX_ATTRIBUTE_BYTES} bytes"))
        elif kind == "string" and shape and shape[0] > MAX_ATTRIBUTE_BYTES // 8:
            problems.append(Problem(Rule.LIMITS, path, f"attribute {name!r} declares {shape[0]} strings (spec 2.4)"))
    return problems


def _dataset_problems(path: str, ds: h5py.Dataset, file_bytes: int) -> list[Problem]:
    problems = []
    if type_name(ds.dtype) in (None, "string"):
        return [Problem(Rule.SELF_CONTAINED, path, f"dtype {ds.dtype} is not a number type (spec 2.1)")]
    if ds.dtype.byteorder == ">":
        return [Problem(Rule.FILTERS, path, f"dtype {ds.dtype.str} is big-endian; datasets are little-endian (spec section 2)")]
    if ds.ndim == 0:
        return [Problem(Rule.FILTERS, path, "is a scalar dataset; every dataset is chunked, so has at least one axis (spec 2)")]
    if ds.ndim > MAX_RANK:
        return [Problem(Rule.LIMITS, path, f"rank {ds.ndim}: datasets have at most {MAX_RANK} axes (spec 2.4)")]
    try:
        plist = ds.id.get_create_plist()
        layout = plist.get_layout()
        external = plist.get_external_count()
    except Exception as exc:  # noqa: BLE001
        return [Problem(Rule.FILE, path, f"storage properties cannot be read ({_first_line(exc)})")]
    if external:
        return [Problem(Rule.SELF_CONTAINED, path, "uses external raw storage (data in another file); refused, never read (spec 2.3)")]
    if layout == h5py.h5d.VIRTUAL:
        return [Problem(Rule.SELF_CONTAINED, path, "is a virtual dataset (data in other datasets or files); refused (spec 2.3)")]
    if layout != h5py.h5d.CHUNKED:
        return [Problem(Rule.FILTERS, path, "must be chunked (spec section 2)")]
    filters = _filters(plist)
    for fid in filters:
        if fid not in ALLOWED_FILTERS:
            problems.append(Problem(Rule.FILTERS, path, f"filter id {fid} is not allowed (only fletcher32, shuffle, gzip)"))
    if 3 not in filters:
        problems.append(Problem(Rule.FILTERS, path, "must carry the fletcher32 checksum filter"))
    row_bytes = int(np.prod(ds.shape[1:], dtype=object)) * ds.dtype.itemsize
    chunk_bytes = int(np.prod(ds.chunks, dtype=object)) * ds.dtype.itemsize
    if row_bytes > MAX_ROW_BYTES:
        problems.append(Problem(Rule.LIMITS, path, f"one row is {row_bytes} bytes, more than {MAX_ROW_BYTES} (spec 2.4)"))
    if chunk_bytes > MAX_CHUNK_BYTES:
        problems.append(Problem(Rule.LIMITS, path, f"one chunk is {chunk_bytes} bytes, more than {MAX_CHUNK_BYTES} (spec 2.4)"))
    ratio = DEFLATE_MAX_RATIO if 1 in filters else 1
    if declared_bytes(ds) > ratio * file_bytes:
        problems.append(Problem(Rule.LIMITS, path, f"declares {declared_bytes(ds)} bytes of data in a file of {file_bytes} "
                                "bytes (spec 2.4: declared sizes must fit in the file)"))
    return problems


def chunk_problems(ds: h5py.Dataset, file_bytes: int) -> list[Problem]:
    """Rule 15's chunk-index part, for the verifier: every chunk the shape needs is allocated, and
    the allocated chunks fit in the file. Walks the chunk index (bounded by the file's bytes)."""
    expected = 1
    for size, chunk in zip(ds.shape, ds.chunks):
        expected *= -(-int(size) // int(chunk))
    try:
        allocated = ds.id.get_num_chunks()
        stored = ds.id.get_storage_size()
    except Exception as exc:  # noqa: BLE001
        return [Problem(Rule.CHECKSUMS, ds.name, f"chunk index cannot be read ({_first_line(exc)})")]
    problems = []
    if allocated != expected:
        problems.append(Problem(Rule.LIMITS, ds.name, f"{allocated} of the {expected} chunks the shape needs are stored "
                                "(spec 2.4: every chunk is written)"))
    if stored > file_bytes:
        problems.append(Problem(Rule.LIMITS, ds.name, f"chunk index claims {stored} bytes, more than the file's {file_bytes}"))
    return problems


def file_size(path: str | os.PathLike) -> int:
    return os.stat(path).st_size


def fixed_length_strings(h5: h5py.File) -> None:
    """Rewrite every variable-length string attribute of a writable file as a fixed-length UTF-8
    string (spec 2, since 1.1): what the writer does before sealing a file."""
    found = [h5]
    h5.visititems(lambda name, obj: found.append(obj))
    for obj in found:
        for name in list(obj.attrs.keys()):
            info = h5py.check_string_dtype(obj.attrs.get_id(name).dtype)
            if info is None or info.length is not None:
                continue
            value = obj.attrs[name]
            del obj.attrs[name]
            set_string(obj.attrs, name, value)


def set_string(attrs, name: str, value) -> None:
    """Store a string, or a 1-D array of strings, as fixed-length UTF-8 (empty strings take 1 byte)."""
    if isinstance(value, (str, bytes, np.bytes_)) or (isinstance(value, np.ndarray) and value.shape == ()):
        data = _string_bytes(value.item() if isinstance(value, np.ndarray) else value)
        attrs.create(name, np.array(data, dtype=f"S{max(1, len(data))}"),
                     dtype=h5py.string_dtype("utf-8", max(1, len(data))))
        return
    items = [_string_bytes(v) for v in np.asarray(value, dtype=object).reshape(-1)]
    width = max([1, *(len(v) for v in items)])
    attrs.create(name, np.array(items, dtype=f"S{width}"), dtype=h5py.string_dtype("utf-8", width))


def _reseal_stream_digests(h5: h5py.File) -> None:
    """Recompute ``/stream/batch_sha256`` (4.7) from the stream's datasets and ``batch_start`` as
    they now are, when they still make sense together (else leave it as it is): a dataset of NB rows
    is digested row by row, any other batch by batch of ``batch_start``."""
    ds = h5.get(S.stream_path(S.STREAM_BATCH_DIGESTS))
    starts = h5.get(S.stream_path(S.STREAM_BATCH_START))
    if not (isinstance(ds, h5py.Dataset) and ds.ndim == 3 and isinstance(starts, h5py.Dataset) and starts.ndim == 1):
        return
    names = [v.decode() if isinstance(v, bytes) else str(v)
             for v in np.atleast_1d(ds.attrs.get(S.ROW_DIGESTS_DATASETS, []))]
    start = starts[()].astype(np.int64)
    nb = start.shape[0]
    table = ds[()]
    if table.shape[0] != nb or nb == 0 or np.any(np.diff(start) <= 0) or start[0] != 0:
        return
    for column, name in enumerate(names[:table.shape[1]]):
        source = h5.get(name)
        if not isinstance(source, h5py.Dataset) or source.ndim < 1:
            continue
        data = source[()]
        if data.shape[0] == nb and name.endswith(("/" + S.STREAM_MIX_BOX, "/" + S.STREAM_MIX_LAMBDA)):
            table[:, column] = row_digests(data)
            continue
        if start[-1] >= data.shape[0]:
            continue
        ends = np.append(start[1:], data.shape[0])
        for b in range(nb):
            piece = np.ascontiguousarray(data[start[b]:ends[b]])
            table[b, column] = np.frombuffer(hashlib.sha256(piece.tobytes()).digest(), np.uint8)
    ds[...] = table
    set_string(ds.attrs, S.SHA256_ATTR, hashlib.sha256(np.ascontiguousarray(table).tobytes()).hexdigest())


def reseal(h5: h5py.File, rows: bool = True) -> None:
    """Recompute ``/row_sha256`` (and ``/stream/batch_sha256``) from the rows as they now are and
    then the root digest, in a file open for writing. For building test files that break exactly one other rule (a damaged file
    stays damaged only if it is not resealed); the digests detect damage, not forgery (spec 2.1)."""
    stream_rows = rows
    ds = h5.get(S.ROW_DIGESTS)
    if rows and isinstance(ds, h5py.Dataset) and ds.ndim == 3:
        names = [v.decode() if isinstance(v, bytes) else str(v)
                 for v in np.atleast_1d(ds.attrs.get(S.ROW_DIGESTS_DATASETS, []))]
        rows = ds[()]
        for column, name in enumerate(names):
            source = h5.get(name)
            if isinstance(source, h5py.Dataset) and source.ndim >= 1 and source.shape[0] == rows.shape[0] \
                    and column < rows.shape[1]:
                rows[:, column] = row_digests(source[()])
        ds[...] = rows
        set_string(ds.attrs, S.SHA256_ATTR, hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest())
    if stream_rows:
        _reseal_stream_digests(h5)
    if S.ROOT_DIGEST in h5.attrs:
        fixed_length_strings(h5)
        set_string(h5.attrs, S.ROOT_DIGEST, root_digest(h5))
