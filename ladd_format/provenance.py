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


def describe_input(path: str | os.PathLike) -> dict:
    """``{"name", "size", "sha256"}`` of one input file."""
    p = Path(path)
    return {"name": p.name, "size": p.stat().st_size, "sha256": file_sha256(p)}


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
