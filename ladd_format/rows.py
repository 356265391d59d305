"""Arrays of rows read a block at a time, so a converter or an export never holds a whole set.

:class:`Rows` stands in for an ``(M, ...)`` array wherever the code only slices it by rows: it has
``shape``, ``dtype``, ``ndim``, ``len()`` and ``rows[a:b]`` (a numpy array of rows ``a..b-1``), and
``np.asarray(rows)`` reads it whole (for the inputs that are small by nature). :meth:`Rows.map`
applies a per-block transform lazily (a transpose, a dtype). :func:`npy_member_rows` reads one
``.npy`` member of an ``.npz`` archive, stored or deflated, sequentially through :mod:`zipfile`
(so the member's CRC is checked when its end is read); a slice before the last one read starts the
member again. :func:`write_npy_member`, :func:`write_npz_member` and :func:`write_npy` are the way out: one
``.npy`` written block by block.

:func:`block_rows` sizes the blocks: as many rows as fit in :data:`BLOCK_BYTES` (32 MiB), at least
one and at most ``cap``. Numpy and the standard library only (the format core).
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from .errors import InputError

#: the bytes of one block of rows read or written at a time
BLOCK_BYTES = 32 << 20


def block_rows(row_bytes: int, cap: int | None = None) -> int:
    """Rows per block: as many as fit in :data:`BLOCK_BYTES`, at least 1, at most ``cap``."""
    rows = max(1, BLOCK_BYTES // max(1, int(row_bytes)))
    return rows if cap is None else max(1, min(rows, int(cap)))


def row_bytes(array) -> int:
    """Bytes of one row of an ``(M, ...)`` array or :class:`Rows`."""
    return math.prod(array.shape[1:]) * np.dtype(array.dtype).itemsize


#: the bytes a stored value costs once a codec checks or decodes it (its int64/float64 working copies)
WORKING_BYTES = 8


def checked_row_bytes(arrays) -> int:
    """Bytes one row of the ``(M, ...)`` arrays (a codec's datasets, read together) costs when read
    through the codec's checks, which work in int64/float64 copies: :data:`WORKING_BYTES` a value,
    whatever the stored dtype. Blocks of dense rows are sized by this, not by the stored bytes (by
    those, a block of top-k rows made 5-9x its bytes in temporaries)."""
    return WORKING_BYTES * sum(math.prod(a.shape[1:]) for a in arrays)


class Rows:
    """An ``(M, ...)`` array read by rows on demand: ``read(start, stop)`` returns rows
    ``start..stop-1`` as a numpy array of ``shape[1:]`` rows and dtype ``dtype``."""

    def __init__(self, shape: tuple[int, ...], dtype, read: Callable[[int, int], np.ndarray]):
        if len(shape) < 1:
            raise ValueError("Rows need at least one axis")
        self.shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self._read = read

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            index = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= index < self.shape[0]:
                raise IndexError(f"row {key} outside 0..{self.shape[0] - 1}")
            return self._read(index, index + 1)[0]
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("Rows take an integer or a slice of consecutive rows")
        start, stop, _ = key.indices(self.shape[0])
        return self._read(start, max(start, stop))

    def __array__(self, dtype=None, copy=None):
        whole = self._read(0, self.shape[0])
        return whole if dtype is None else whole.astype(dtype)

    def map(self, fn: Callable[[np.ndarray], np.ndarray], tail: tuple[int, ...] | None = None,
            dtype=None) -> Rows:
        """Rows whose blocks are ``fn(block)``, of row shape ``tail`` and ``dtype`` (default: these)."""
        tail = self.shape[1:] if tail is None else tuple(tail)
        return Rows((self.shape[0], *tail), self.dtype if dtype is None else dtype,
                    lambda a, b: fn(self._read(a, b)))

    def astype(self, dtype, copy: bool = True) -> Rows:
        dtype = np.dtype(dtype)
        if dtype == self.dtype and not copy:
            return self
        return self.map(lambda block: block.astype(dtype), dtype=dtype)


def as_rows(array) -> Rows:
    """``array`` as :class:`Rows` (Rows are returned as they are)."""
    if isinstance(array, Rows):
        return array
    return Rows(array.shape, array.dtype, lambda a, b: array[a:b])


def blocks(array, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, block)`` over an array or :class:`Rows` in blocks of ``rows`` (default: :func:`block_rows`)."""
    rows = block_rows(row_bytes(array)) if rows is None else rows
    for start in range(0, len(array), rows):
        yield start, array[start:start + rows]


class _MemberReader:
    """Sequential reader of one member's data (after its ``.npy`` header)."""

    def __init__(self, path: Path, info: zipfile.ZipInfo, header: int, key: str, row: int, dtype: np.dtype,
                 rows: int):
        self.path, self.info, self.header, self.key = path, info, header, key
        self.row, self.dtype, self.rows = row, dtype, rows
        self.zf = self.fp = None
        self.position = 0          # rows already read from self.fp

    def _open(self) -> None:
        self.close()
        self.zf = zipfile.ZipFile(self.path)
        self.fp = self.zf.open(self.info)
        self._skip(self.header)
        self.position = 0

    def _skip(self, count: int) -> None:
        while count > 0:
            got = len(self.fp.read(min(count, BLOCK_BYTES)))
            if got == 0:
                raise EOFError("ends early")
            count -= got

    def read(self, start: int, stop: int, tail: tuple[int, ...]) -> np.ndarray:
        try:
            if self.fp is None or start < self.position:
                self._open()
            self._skip((start - self.position) * self.row)
            want = (stop - start) * self.row
            data = self.fp.read(want) if want else b""
            if len(data) != want:
                raise EOFError("ends early")
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
            self.close()
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            raise InputError(f"key {self.key}: its data cannot be read ({detail})", self.path) from None
        self.position = stop
        if stop == self.rows:
            self.close()                # read to the end (its CRC checked): no handle left open
        return np.frombuffer(data, self.dtype).reshape((stop - start, *tail))

    def close(self) -> None:
        for handle in (self.fp, self.zf):
            if handle is not None:
                handle.close()
        self.zf = self.fp = None


def npy_member_rows(path: Path, info: zipfile.ZipInfo, header: int, key: str, shape: tuple[int, ...],
                    dtype: np.dtype) -> Rows:
    """Rows of the C-order ``.npy`` member ``info`` of the archive at ``path`` whose header takes
    ``header`` bytes (the caller parsed and bounded it); read as needed, never whole. Arrays are
    read-only. A member that ends early or fails its CRC raises one :class:`InputError` naming
    ``path`` and ``key``."""
    dtype = np.dtype(dtype)
    tail = tuple(shape[1:])
    reader = _MemberReader(path, info, header, key, math.prod(tail) * dtype.itemsize, dtype, shape[0])
    return Rows(shape, dtype, lambda a, b: reader.read(a, b, tail))


def write_npy_member(fp, shape: tuple[int, ...], dtype, parts: Iterable[np.ndarray]) -> None:
    """Write one C-order ``.npy`` of ``shape`` and ``dtype`` to the open binary ``fp``, its data
    the concatenation of ``parts`` (each converted to ``dtype``); ValueError when they hold
    another number of values than ``shape`` declares."""
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    np.lib.format.write_array_header_2_0(fp, header)
    written, expected = 0, math.prod(shape)
    for part in parts:
        part = np.ascontiguousarray(part, dtype=dtype)
        written += part.size
        if written > expected:
            break
        fp.write(part.reshape(-1).view(np.uint8))
    if written != expected:
        raise ValueError(f"{written} values written for an array of shape {tuple(shape)}")


def write_npz_member(zf: zipfile.ZipFile, key: str, shape: tuple[int, ...], dtype, parts: Iterable[np.ndarray]) -> None:
    """:func:`write_npy_member` as the member ``key.npy`` of the open zip ``zf`` (stored, as
    ``np.savez`` writes; zip64 so that members of any size fit)."""
    with zf.open(f"{key}.npy", "w", force_zip64=True) as fp:
        write_npy_member(fp, shape, dtype, parts)


def write_npy(path: str | os.PathLike, shape: tuple[int, ...], dtype, parts: Iterable[np.ndarray]) -> None:
    """:func:`write_npy_member` to a new file at ``path``."""
    with open(path, "wb") as fp:
        write_npy_member(fp, shape, dtype, parts)
