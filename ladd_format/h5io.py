"""Opening HDF5 files from strangers: one-line errors, regular files only, and the format check.

Shared by the reader and the verifier (numpy + h5py only).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import h5py
import numpy as np

from . import spec as S
from .spec.rules import Rule
from .errors import (
    FormatError,
    LaddError,
    MissingFieldError,
    NotHDF5Error,
    TruncatedFileError,
    UnsupportedVersionError,
)


def text(value) -> str:
    """An HDF5 string attribute as ``str`` (h5py may return bytes or numpy strings): its value, the
    bytes up to the first NUL (spec section 2), as UTF-8."""
    if isinstance(value, bytes):
        return value.split(b"\0", 1)[0].decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return text(value[()])
    return str(value).split("\0", 1)[0]


def attr_dict(attrs) -> dict:
    """HDF5 attributes as plain JSON-able Python values."""
    out = {}
    for key, value in attrs.items():
        if isinstance(value, np.ndarray):
            value = [text(v) if isinstance(v, (bytes, str)) else v for v in value.tolist()]
        elif isinstance(value, (bytes, np.bytes_)):
            value = text(value)
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def open_h5(path: str | os.PathLike) -> h5py.File:
    """Open an HDF5 file read-only, turning h5py's errors into one-line :class:`LaddError` s."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise LaddError("no such file", p, rule=Rule.FILE) from None
    except OSError as exc:
        raise LaddError(f"cannot be read ({exc.strerror})", p, rule=Rule.FILE) from None
    if stat.S_ISDIR(mode):
        raise LaddError("is a directory, expected a .dla.h5 file", p, rule=Rule.FILE)
    if not stat.S_ISREG(mode):
        raise NotHDF5Error("is not a regular file (a FIFO, socket or device); refused without reading", p)
    try:
        # no file locking: a read-only open must not fail or wait because another process holds a lock
        return h5py.File(p, "r", locking=False)
    except (RuntimeError, ValueError) as exc:
        raise NotHDF5Error(f"cannot be opened as HDF5: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}",
                           p) from None
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            raise TruncatedFileError("truncated HDF5 file (it ends before the data it declares)", p) from None
        if "signature" in msg.lower():
            raise NotHDF5Error("not an HDF5 file (no HDF5 signature)", p) from None
        raise NotHDF5Error(f"cannot be opened as HDF5: {msg}", p) from None


def check_format(h5: h5py.File, path) -> tuple[int, int]:
    """Spec rule 2: ``format`` and a supported ``format_version``; returns (major, minor)."""
    fmt = h5.attrs.get(S.FORMAT_ATTR)
    if fmt is None:
        raise FormatError(f"not a D_LA container: root attribute {S.FORMAT_ATTR!r} is missing", path, "/")
    if text(fmt) != S.FORMAT:
        raise FormatError(f"not a D_LA container: format is {text(fmt)!r}, expected {S.FORMAT!r}", path, "/")
    version = h5.attrs.get(S.VERSION_ATTR)
    if version is None:
        raise MissingFieldError(f"root attribute {S.VERSION_ATTR!r} is missing", path, "/", rule=Rule.FORMAT)
    try:
        major, minor = S.parse_version(text(version))
    except ValueError:
        raise UnsupportedVersionError(f"format_version {text(version)!r} is not MAJOR.MINOR", path, "/") from None
    if major != S.SUPPORTED_MAJOR:
        raise UnsupportedVersionError(
            f"format_version {text(version)} is not supported (this reader implements major version "
            f"{S.SUPPORTED_MAJOR}); upgrade ladd-format", path, "/")
    return major, minor


