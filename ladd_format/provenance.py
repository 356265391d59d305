"""Provenance records (spec 4.6): creation time, tool, converter, inputs with size and SHA-256."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from . import __version__

TOOL = f"ladd-format {__version__}"


def utc_now() -> str:
    """Current UTC time as ISO 8601 with a ``Z`` suffix, to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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
