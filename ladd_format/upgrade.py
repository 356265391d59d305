"""``ladd upgrade``: rewrite a valid version-1.0 file as 1.1 (spec section 9).

The contents do not change: every dataset and attribute is copied as it is; the copy gains
``/row_sha256`` (spec 2.2), ``format_version`` 1.1 and the root digest (spec 2.1). The source is
verified in full first, so the digests seal data known to be intact; the destination appears only
when complete (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from . import atomic, integrity
from . import spec as S
from .codecs import codec_from_file
from .errors import InputError, LaddError
from .h5io import check_format
from .verify import verify
from .writer import CHUNK_TARGET_BYTES

BLOCK_ROWS = 1024


def upgrade(src: str | os.PathLike, dest: str | os.PathLike, overwrite: bool = False) -> Path:
    """Copy the 1.0 file ``src`` to ``dest`` as a 1.1 file; returns ``dest``."""
    src = Path(src)
    problems = verify(src)
    if problems:
        raise problems[0]
    with h5py.File(src, "r", locking=False) as h5:
        major, minor = check_format(h5, src)
        if minor >= S.DIGESTS_SINCE_MINOR:
            raise InputError(f"is already format {major}.{minor}; nothing to upgrade", src)
    with atomic.replace_file(dest, overwrite=overwrite) as tmp:
        shutil.copyfile(src, tmp)
        with h5py.File(tmp, "r+") as h5:
            _add_row_digests(h5)
            h5.attrs[S.VERSION_ATTR] = S.FORMAT_VERSION
            integrity.fixed_length_strings(h5)
            integrity.set_string(h5.attrs, S.ROOT_DIGEST, integrity.root_digest(h5))
        problems = verify(tmp)
        if problems:  # never hand out a file that its own verifier rejects
            raise LaddError(f"upgraded copy fails verification: {problems[0].message}", dest, rule=problems[0].rule)
    return Path(dest)


def _add_row_digests(h5: h5py.File) -> None:
    codec_sets: list[str] = []
    if S.DENSE in h5:
        g = h5[S.DENSE]
        num_sub = int(g.attrs[S.N_ATTR]) ** 2
        codec_sets = list(codec_from_file(g.attrs, g).layout(num_sub, int(h5.attrs[S.NUM_CLASSES_ATTR])))
    paths = integrity.row_datasets(h5, codec_sets)
    m = h5[S.IMAGES].shape[0]
    tail = (len(paths), integrity.DIGEST_BYTES)
    rows = max(1, CHUNK_TARGET_BYTES // (tail[0] * tail[1]))
    ds = h5.create_dataset(S.ROW_DIGESTS, shape=(m, *tail), dtype=np.uint8, chunks=(min(rows, m), *tail),
                           fletcher32=True)
    ds.attrs[S.ROW_DIGESTS_DATASETS] = np.array(paths, dtype=h5py.string_dtype("utf-8"))
    digest = hashlib.sha256()
    for start in range(0, m, BLOCK_ROWS):
        stop = min(m, start + BLOCK_ROWS)
        block = np.stack([integrity.row_digests(h5[path][start:stop]) for path in paths], axis=1)
        ds[start:stop] = block
        digest.update(block.tobytes())
    ds.attrs[S.SHA256_ATTR] = digest.hexdigest()
