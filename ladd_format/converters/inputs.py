"""Inputs are untrusted: the bounds every converter applies before it loads a file, and the one
safe ``.pt`` loader.

Inputs are untrusted and bounded before they are loaded: an input must be a regular file (a FIFO,
device or folder is refused unopened); an ``.npz`` (:func:`check_npz`) and a zip ``.pt``
(:func:`check_torch_zip`) are refused when a member is compressed with anything but deflate,
expands more than deflate can (1032x), or, for ``.npz``, declares in its ``.npy`` header more bytes
than it holds, or holds objects (pickles). A legacy (non-zip) ``.pt`` allocates the storage sizes
its pickle declares only virtually before torch checks them against the bytes present.

``.pt`` files are loaded by :func:`load_pt` (``torch.load(weights_only=True)``; numpy's scalar
reconstructor is allow-listed under its numpy 1 and numpy 2 names for DC results files). torch is
imported there only, after :func:`ladd_format.extras.require` (one line naming the ``torch`` extra
when it is missing).
"""

from __future__ import annotations

import math
import os
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import require_regular_file
from ..errors import InputError
from ..extras import require
from ..spec.limits import DEFLATE_MAX_RATIO as MAX_DEFLATE_RATIO

#: the largest ``.npy`` header read (numpy's own default limit)
MAX_NPY_HEADER = 10000


# -- bounded archives -------------------------------------------------------------------------------
def _zip_members(path: Path, what: str) -> list[zipfile.ZipInfo]:
    """The members of the zip at ``path``, each refused unless stored or deflated within deflate's
    largest ratio; the archive as a whole may not expand past 1032 x the file's size."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(f"not a readable {what} (a zip archive): {str(exc)[:160] or type(exc).__name__}",
                         path) from None
    total = 0
    for info in infos:
        name = info.filename[:80]
        if info.flag_bits & 0x1:
            raise InputError(f"member {name!r} is encrypted, which is refused", path)
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size > info.compress_size:
                raise InputError(f"member {name!r} claims {info.file_size:,} bytes but stores {info.compress_size:,}",
                                 path)
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > MAX_DEFLATE_RATIO * info.compress_size:
                raise InputError(f"member {name!r} claims {info.file_size:,} bytes from {info.compress_size:,} "
                                 f"compressed, more than deflate's {MAX_DEFLATE_RATIO}x: refused as a zip bomb", path)
        else:
            raise InputError(f"member {name!r} uses zip compression method {info.compress_type}; only stored and "
                             "deflate members are read", path)
        total += info.file_size
    size = os.stat(path).st_size
    if total > MAX_DEFLATE_RATIO * size:
        raise InputError(f"members claim {total:,} bytes in all, more than {MAX_DEFLATE_RATIO}x the file's {size:,}",
                         path)
    return infos


@dataclass(frozen=True)
class NpyMember:
    """One ``.npy`` member of an ``.npz``, its header parsed and bounded by :func:`npz_members`."""

    info: zipfile.ZipInfo
    header: int                        # bytes of the .npy header (the data follows)
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool


def npz_members(path: Path) -> dict[str, NpyMember]:
    """Bound an ``.npz`` before anything loads it: every member must be a ``.npy`` array whose header
    declares no more bytes than the member holds and no objects (see :func:`_zip_members` for the
    compression bounds). Reads only the zip directory and each header. A one-line
    :class:`InputError` names the file and the member."""
    path = require_regular_file(path)
    found = {}
    infos = _zip_members(path, ".npz archive")
    try:
        with zipfile.ZipFile(path) as zf:
            for info in infos:
                key = info.filename.removesuffix(".npy")
                found[key] = _npy_header(zf, info, path)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
        raise InputError(f"not a readable .npz archive: {str(exc)[:160] or type(exc).__name__}", path) from None
    return found


def check_npz(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """:func:`npz_members` as ``{key: (shape, dtype)}``."""
    return {key: (member.shape, member.dtype) for key, member in npz_members(path).items()}


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> NpyMember:
    name = info.filename[:80]
    fmt = np.lib.format
    with zf.open(info) as fp:
        try:
            version = fmt.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fp, max_header_size=MAX_NPY_HEADER)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = fmt.read_array_header_2_0(fp, max_header_size=MAX_NPY_HEADER)
            else:
                raise ValueError(f"unknown .npy version {version}")
        except (ValueError, SyntaxError, TypeError, EOFError) as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            raise InputError(f"member {name!r} is not a .npy array ({detail})", path) from None
        header = fp.tell()
    if dtype.hasobject:
        raise InputError(f"member {name!r} holds object arrays (pickles), which are refused; store strings as a "
                         "unicode array", path)
    if any(int(v) < 0 for v in shape):
        raise InputError(f"member {name!r} declares a negative shape {shape}", path)
    count = math.prod(int(v) for v in shape)
    if dtype.itemsize == 0 and count > 0:
        raise InputError(f"member {name!r} declares {count:,} elements of the empty dtype {dtype}", path)
    declared = count * dtype.itemsize
    if declared > info.file_size - header:
        raise InputError(f"member {name!r} declares {declared:,} bytes ({shape} {dtype}) but holds "
                         f"{max(0, info.file_size - header):,}: refused before loading", path)
    return NpyMember(info, header, tuple(int(v) for v in shape), dtype, bool(fortran))


def check_torch_zip(path: Path) -> None:
    """Bound a zip ``.pt`` (torch's format since 1.6) before ``torch.load``: stored or deflated
    members within deflate's ratio, 1032 x the file size in all. torch itself checks each tensor
    record's size against the shape its pickle declares. Legacy (non-zip) files are left to torch."""
    if zipfile.is_zipfile(path):
        _zip_members(path, "torch file")


# -- safe loading -----------------------------------------------------------------------------
#: the global names numpy's scalar reconstructor has in pickles: numpy 1 wrote the first (every DC
#: results file people hold), numpy 2 writes the second. torch's allow-list matches names, not objects.
NUMPY_SCALAR_NAMES = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar")
#: the dtypes of the numpy scalars allow-listed in DC results dicts (``accs_all_exps``)
NUMPY_SCALAR_DTYPES = ("float64", "float32", "int64", "int32")
#: how much of a refused global's name a refusal quotes
MAX_GLOBAL_NAME = 120


def _numpy_scalar_globals(dtypes: tuple[str, ...] = NUMPY_SCALAR_DTYPES) -> list:
    """The exact numpy globals a pickle of numpy scalars needs, for ``torch.serialization.safe_globals``:
    numpy's scalar reconstructor under both of its pickle names (:data:`NUMPY_SCALAR_NAMES`, as
    ``(object, name)`` pairs), ``numpy.dtype`` (which builds the scalar's dtype), and the dtype
    classes of ``dtypes`` (the unpickler's BUILD step sets their state): by default those of DC
    results dicts (:data:`NUMPY_SCALAR_DTYPES`). ``_codecs.encode`` (the scalar's bytes in protocol 2)
    is on torch's own allow-list."""
    scalar = np.float64(0).__reduce__()[0]          # the reconstructor itself, whatever numpy calls it
    return ([(scalar, name) for name in NUMPY_SCALAR_NAMES] + [np.dtype]
            + [type(np.dtype(name)) for name in dtypes])


def refused_pickle(text: str) -> str:
    """One line for a pickle torch's weights-only unpickler refused: which global (or class) it asked
    for, when torch's message names one, and that nothing was executed; torch's advice (which
    function to call to allow it) is not passed on."""
    hit = (re.search(r"GLOBAL ([A-Za-z_][\w.]*)", text) or re.search(r"but got <class '([\w.]+)'>", text)
           or re.search(r"Unsupported global: ([A-Za-z_][\w.]*)", text))
    if hit:
        name = hit.group(1)
        if len(name) > MAX_GLOBAL_NAME:
            name = name[:MAX_GLOBAL_NAME] + "..."
        return f"refused: the pickle asks for the global {name}, which is not on the allow-list; nothing was executed"
    return "refused: the pickle asks for code or objects outside the allow-list; nothing was executed"


def load_pt(path: Path, allow_numpy_scalars: bool = False,
            scalar_dtypes: tuple[str, ...] = NUMPY_SCALAR_DTYPES):
    """``torch.load(weights_only=True)``; a pickle that asks for anything else is refused unread.

    With ``allow_numpy_scalars`` the exact numpy globals of numpy scalars of ``scalar_dtypes`` are
    allow-listed (:func:`_numpy_scalar_globals`; by default the dtypes of DC results dicts).
    """
    require_regular_file(path)
    check_torch_zip(path)
    require("torch", f"reading {path.suffix or 'torch'} files")
    import torch  # only the .pt readers need torch; everything else in the converters is numpy

    try:
        if allow_numpy_scalars:
            with torch.serialization.safe_globals(_numpy_scalar_globals(scalar_dtypes)):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(refused_pickle(str(exc)), path) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        lines = str(exc).strip().splitlines()      # an empty file raises EOFError with no message
        detail = lines[0][:160] if lines else ("empty file" if path.stat().st_size == 0 else type(exc).__name__)
        raise InputError(f"not a readable torch file (truncated or corrupt?): {detail}", path) from None


def as_array(value, path: Path, what: str) -> np.ndarray:
    """A tensor (possibly with requires_grad) or array as a detached numpy array."""
    torch = sys.modules.get("torch")       # a tensor can only exist once torch is imported
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise InputError(f"{what} must be a tensor, found {type(value).__name__}", path)

