"""``ladd upgrade``: rewrite a valid file of an earlier minor version (1.0, 1.1 or 1.2) as the current
version, :data:`ladd_format.spec.FORMAT_VERSION` (1.3; spec section 9).

The contents do not change: every dataset and attribute is copied as it is, and no stream or tail is
added (a 1.3 file without ``/stream`` means what a 1.1 file means, and a 1.3 stream without
``/stream/tail`` what a 1.2 stream means). The copy gains ``format_version`` 1.3 and a new root
digest (spec 2.1, which covers ``format_version``); a 1.0 file also gains ``/row_sha256`` (spec 2.2)
and fixed-length strings. The source is verified in full first, so the digests seal data known to be
intact; the destination appears only when complete (temporary file, then rename), and is verified
before it is renamed into place. A file already at the current version (or newer) is refused: there
is nothing to upgrade. So is a file of an earlier version that holds an object named ``/stream``
(before 1.2) or ``/stream/tail`` (before 1.3): that name means nothing in its version, and upgrading
would give it a meaning without the checks of its rules (16 and 17; 18) having been made when it
was written.
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


#: (major, minor) of the version ``upgrade`` writes: the package's, spec/__init__.py's FORMAT_VERSION
CURRENT = S.parse_version(S.FORMAT_VERSION)


def upgrade(src: str | os.PathLike, dest: str | os.PathLike, overwrite: bool = False) -> Path:
    """Copy the valid 1.0, 1.1 or 1.2 file ``src`` to ``dest`` as a :data:`~ladd_format.spec.FORMAT_VERSION`
    file with the same contents; returns ``dest``. Raises a :class:`LaddError` (one line) for an
    invalid source, an :class:`InputError` for a source that is already current (or newer), holds
    ``/stream`` before 1.2 or ``/stream/tail`` before 1.3; nothing is written then."""
    src = Path(src)
    problems = verify(src)
    if problems:
        raise problems[0]
    with h5py.File(src, "r", locking=False) as h5:
        major, minor = check_format(h5, src)
        if (major, minor) >= CURRENT:
            newer = "" if (major, minor) == CURRENT else f", newer than {S.FORMAT_VERSION}"
            raise InputError(f"is already format {major}.{minor}{newer}; nothing to upgrade", src)
        if minor < S.STREAM_SINCE_MINOR and S.STREAM in h5:
            raise InputError(f"format {major}.{minor} holds {S.STREAM_PATH}, a name that means nothing before "
                             f"format {major}.{S.STREAM_SINCE_MINOR}; refusing to give it a stream's meaning", src)
        if minor < S.TAIL_SINCE_MINOR and S.STREAM_TAIL_PATH in h5:
            raise InputError(f"format {major}.{minor} holds {S.STREAM_TAIL_PATH}, a name that means nothing before "
                             f"format {major}.{S.TAIL_SINCE_MINOR}; refusing to give it a tail's meaning", src)
        has_row_digests = minor >= S.DIGESTS_SINCE_MINOR
    with atomic.replace_file(dest, overwrite=overwrite) as tmp:
        shutil.copyfile(src, tmp)
        with h5py.File(tmp, "r+") as h5:
            if not has_row_digests:
                _add_row_digests(h5)
            integrity.set_string(h5.attrs, S.VERSION_ATTR, S.FORMAT_VERSION)
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
