"""Provenance records (spec 4.6): creation time, tool, converter, inputs with size and SHA-256."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from .errors import InputError
from .version import __version__

TOOL = f"ladd-format {__version__}"

#: The reproducible-builds variable (https://reproducible-builds.org/specs/source-date-epoch/):
#: when set, an integer number of seconds since 1970-01-01 00:00:00 UTC that replaces the current
#: time in ``/provenance`` ``created``, so two conversions of the same input are the same file.
SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"
CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    """The creation time a writer records (spec 4.6): ISO 8601 UTC with a ``Z`` suffix, to the second.

    ``SOURCE_DATE_EPOCH``, when set (and not empty), gives the time instead of the clock; a value
    that is not a non-negative integer of seconds raises :class:`InputError` naming the variable."""
    epoch = source_date_epoch()
    moment = datetime.now(timezone.utc) if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)
    return moment.strftime(CREATED_FORMAT)


def source_date_epoch() -> int | None:
    """``SOURCE_DATE_EPOCH`` as seconds since the epoch, or None when unset or empty."""
    value = os.environ.get(SOURCE_DATE_EPOCH)
    if value is None or value == "":
        return None
    if not re.fullmatch(r"[0-9]+", value):
        raise InputError(f"environment variable {SOURCE_DATE_EPOCH}={value[:40]!r} is not an integer number of "
                         "seconds since 1970-01-01 UTC (as `date +%s` prints); unset it or fix it")
    seconds = int(value)
    try:
        datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise InputError(f"environment variable {SOURCE_DATE_EPOCH}={value[:40]!r} is beyond the dates a "
                         "creation time can hold (year 9999)") from None
    return seconds


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


class FolderInput(os.PathLike):
    """A folder read as many files (an image tree), recorded as ONE ``inputs`` entry.

    Listing every image of a distilled ImageNet (thousands of files) would bloat ``/provenance``, so
    the entry is ``{"name": "<folder>/", "size": total bytes, "sha256": digest, "files": count}``
    where the digest is the SHA-256 of the lines ``"<file sha256>  <relative path>\n"`` (POSIX
    separators) sorted by relative path -- the output of ``sha256sum`` over the files in byte order
    of their paths, so ``cd FOLDER && printf '%s\n' PATHS | LC_ALL=C sort | xargs sha256sum | sha256sum``
    reproduces it. ``files`` holds ``(relative path, size, sha256)`` of each file that was read.
    It is path-like (the folder), so errors can name it.
    """

    def __init__(self, root: str | os.PathLike, files):
        self.root = Path(root)
        self.files = sorted((str(rel), int(size), str(sha)) for rel, size, sha in files)

    def __fspath__(self) -> str:
        return os.fspath(self.root)

    def __repr__(self) -> str:
        return f"FolderInput({os.fspath(self.root)!r}, {len(self.files)} files)"

    def digest(self) -> str:
        return folder_digest((rel, sha) for rel, _, sha in self.files)

    def record(self) -> dict:
        return {"name": self.root.name + "/", "size": sum(size for _, size, _ in self.files),
                "sha256": self.digest(), "files": len(self.files)}


def folder_digest(entries) -> str:
    """SHA-256 over ``(relative path, file sha256)`` pairs, as :class:`FolderInput` defines it."""
    digest = hashlib.sha256()
    for rel, sha in sorted(entries):
        digest.update(f"{sha}  {rel}\n".encode("utf-8"))
    return digest.hexdigest()


def describe_input(path: str | os.PathLike) -> dict:
    """``{"name", "size", "sha256"}`` of one input file; a :class:`FolderInput` gives its own record."""
    if isinstance(path, FolderInput):
        return path.record()
    p = Path(path)
    return {"name": p.name, "size": p.stat().st_size, "sha256": file_sha256(p)}


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
