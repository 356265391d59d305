"""Write to a temporary file next to the destination, rename into place only when complete."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

from .errors import InputError, OutputExistsError


def check_destination(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an existing destination unless ``overwrite``; refuse a missing parent folder."""
    dest = Path(path)
    if dest.is_dir():
        raise OutputExistsError("is a directory, expected a file path", dest)
    if dest.exists() and not overwrite:
        raise OutputExistsError("exists; pass --force (overwrite=True) to replace it", dest)
    if not dest.parent.is_dir():
        raise InputError("output folder does not exist", dest.parent)
    return dest


def temporary_sibling(dest: Path) -> Path:
    """A fresh hidden path in the destination's folder (same file system, so rename is atomic)."""
    return dest.with_name(f".{dest.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")


def commit(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Move a completed temporary file into place (atomic on POSIX)."""
    if dest.exists() and not overwrite:
        tmp.unlink(missing_ok=True)
        raise OutputExistsError("appeared while writing; pass --force to replace it", dest)
    os.replace(tmp, dest)


def discard(tmp: Path) -> None:
    tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def replace_file(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """``with replace_file(dest) as tmp:`` write ``tmp``; it becomes ``dest`` only if the block succeeds."""
    dest = check_destination(path, overwrite)
    tmp = temporary_sibling(dest)
    try:
        yield tmp
    except BaseException:
        discard(tmp)
        raise
    commit(tmp, dest, overwrite)
