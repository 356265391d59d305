"""Writing support of the converters: the batches :func:`write_batches` hands the writer, the
progress of the running conversion, and :class:`Preencoded` rows (an exported npz's stored codec
rows, written as they are).
"""

from __future__ import annotations

from contextvars import ContextVar

import numpy as np

from ..errors import InputError, LaddError, ShapeError
from ..rows import block_rows, row_bytes
from ..writer import DLAWriter

BATCH = 256
#: ``progress(images written, images)`` of the running :func:`~ladd_format.converters.convert`
#: (set there, so that no converter has to pass it on); None: no report
WRITE_PROGRESS: ContextVar = ContextVar("ladd_write_progress", default=None)


class Preencoded:
    """A codec whose rows are already encoded (an exported npz's ``dense_stored_*`` arrays), so
    they are written as they are: decode -> encode is not the identity for the ``uint8`` and
    ``topk`` codecs (rounding, ties), and an exported file must convert back to the same datasets.
    Everything but ``encode`` is the wrapped codec's; ``encode`` ignores the probabilities it is
    given (the checked decode of these rows, see :func:`preencoded`) and hands out the next rows,
    in the order :func:`write_batches` appends them."""

    def __init__(self, codec, stored: dict[str, np.ndarray]):
        self.codec = codec
        self.stored = stored
        self.cursor = 0

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def encode(self, probs: np.ndarray) -> dict[str, np.ndarray]:
        stop = self.cursor + len(probs)
        rows = {name: array[self.cursor:stop] for name, array in self.stored.items()}
        self.cursor = stop
        return rows


def preencoded(codec, stored: dict[str, np.ndarray], dense: np.ndarray, num_classes: int, src) -> Preencoded:
    """Check untrusted stored rows against ``codec`` (its datasets, shapes, dtypes and value rules)
    and against ``dense`` (they must decode to it within 1e-6), then wrap them (:class:`Preencoded`)."""
    m, p = dense.shape[:2]
    layout = codec.layout(p, num_classes)
    if set(stored) != set(layout):
        raise InputError(f"keys {', '.join('dense_stored_' + k for k in sorted(stored))} are not codec "
                         f"{codec.text()}'s datasets ({', '.join(sorted(layout))})", src)
    for name, (tail, dtype) in layout.items():
        array = stored[name]
        if array.shape != (m, *tail) or array.dtype != np.dtype(dtype):
            raise ShapeError(f"key dense_stored_{name} must be {(m, *tail)} {np.dtype(dtype)}, got {array.shape} "
                             f"{array.dtype}", src)
    for start in range(0, m, BATCH):
        rows = {name: array[start:start + BATCH] for name, array in stored.items()}
        for problem in codec.check(rows, num_classes):
            raise InputError(f"dense_stored_*: {problem} (images from {start})", src)
        decoded = codec.decode(rows, num_classes)
        if not np.allclose(decoded, dense[start:start + BATCH], rtol=0, atol=1e-6):
            raise InputError(f"dense_stored_* do not decode to dense_labels (images from {start}); remove the "
                             "dense_stored_* keys to encode dense_labels afresh", src)
    return Preencoded(codec, stored)


def write_batches(writer: DLAWriter, images, labels: np.ndarray, *, dense=None, soft: np.ndarray | None = None,
                  blame=None, measured=None, after=None) -> None:
    """Append the arrays (numpy arrays or :class:`~ladd_format.rows.Rows`) in batches of at most
    :data:`BATCH` images and :data:`~ladd_format.rows.BLOCK_BYTES` of images and dense labels, and
    close the writer; ``after(writer)`` (when given) appends what follows the images (a relabel
    stream) and ``measured()`` (when given) returns report entries measured while writing, both
    before the close. The writer names the destination in its errors, but the defect is
    in the input: ``blame(exc) -> (path, where)`` re-points the error (an input that cannot be
    read names itself)."""
    report = WRITE_PROGRESS.get()
    per_row = row_bytes(images) + (0 if dense is None else row_bytes(dense))
    rows = block_rows(per_row, BATCH)
    with writer:
        for start in range(0, len(images), rows):
            stop = min(len(images), start + rows)
            batch = (images[start:stop], None if dense is None else dense[start:stop])
            try:
                writer.append(batch[0], labels[start:stop], dense=batch[1],
                              soft=None if soft is None else soft[start:stop])
            except LaddError as exc:
                if blame is None:
                    raise
                path, where = blame(exc)
                raise type(exc)(exc.message, path, where) from None
            if report is not None:
                report(stop, len(images))
        if after is not None:
            after(writer)
        if measured is not None:
            writer.update_report(measured())
