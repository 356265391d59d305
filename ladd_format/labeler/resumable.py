"""The work folder of a resumable labeling pass (``ladd augment``'s chunks, ``ladd relabel``'s epochs).

A pass toward ``OUT`` saves each finished piece atomically in the hidden folder ``.OUT.work`` beside
it (:func:`work_folder`), with a manifest of everything that decides the output. :func:`set_up_work`
creates that folder, or with ``resume`` keeps it when the manifest matches (and refuses, one line,
one made with other settings); without ``resume`` an old folder is discarded, saying so. A Ctrl-C
inside :func:`interrupt_keeps` ends in the pass's :class:`PassInterrupted`, which says what the
folder keeps.

The work folder must be a real folder: a symbolic link or a file there is refused in one line
naming it (it is never removed, followed or written through); files in it are written by exclusive
creation (:func:`write_new`: a planted file or link at a temporary name is replaced, not written
through).
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import atomic
from ..errors import InputError

#: the manifest's name in a work folder
MANIFEST = "manifest.json"
Notify = Callable[[str], None]


def work_folder(output: Path) -> Path:
    """The work folder of a pass toward ``output``: ``.OUT.work`` beside it."""
    return output.with_name(f".{output.name}.work")


def check_work_folder(work: Path) -> None:
    """Refuse a work folder path that holds anything but a real folder (a symbolic link, a file)."""
    if os.path.lexists(work) and not atomic.is_real_dir(work):
        kind = "a symbolic link" if work.is_symlink() else "not a folder"
        raise InputError(f"the pass's work folder (beside the output) is {kind}; it is left as it is: remove it or choose "
                         "another output", work)


def write_new(path: Path, write: Callable[[Any], Any]) -> None:
    """Create ``path`` afresh (a file or link already there is removed first, never written through)
    and ``write(binary file)`` into it."""
    path.unlink(missing_ok=True)
    with open(path, "xb") as fh:
        write(fh)


def save_whole(dest: Path, write: Callable[[Any], Any], tmp: Path | None = None) -> None:
    """Write ``dest`` through a temporary file (``tmp``, default ``dest`` + ``.tmp``) renamed over it:
    ``dest`` exists only when complete."""
    tmp = dest.with_name(dest.name + ".tmp") if tmp is None else tmp
    write_new(tmp, write)
    os.replace(tmp, dest)


def finished_indices(output: str | os.PathLike, pattern: str) -> tuple[Path, list[int]] | None:
    """``(work folder, sorted indices)`` of the finished pieces (files ``PREFIX_NNNNNN.EXT``
    matching ``pattern``) in the work folder toward ``output``, or None when it is not a real folder."""
    work = work_folder(Path(output))
    if not atomic.is_real_dir(work):
        return None
    return work, sorted(int(p.stem.split("_")[1]) for p in work.glob(pattern) if p.stem.split("_")[1].isdigit())


def set_up_work(work: Path, manifest: dict, resume: bool, notify: Notify, *, unit: str, finished: Callable[[], int],
                resumed: Callable[[int], str], refusal: Callable[[Any], str]) -> int:
    """Create the work folder ``work`` with ``manifest``, or with ``resume`` keep it when its manifest
    is the same; returns the pieces already finished. ``finished()`` counts them, ``resumed(n)`` is
    the note of a resumed pass, ``refusal(old manifest or None)`` the refusal of a folder made with
    other settings; ``unit`` names a piece in the discard note ("chunk", "epoch")."""
    path = work / MANIFEST
    check_work_folder(work)
    if work.exists():
        if resume:
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError):
                old = None
            if old == manifest:
                done = finished()
                notify(resumed(done))
                return done
            raise InputError(refusal(old), work)
        notify(f"discarded the unfinished pass in {work} ({finished()} labeled {unit}(s)); --resume would have "
               "continued it")
        shutil.rmtree(work)
    elif resume:
        notify(f"nothing to resume ({work} does not exist): starting from the beginning")
    work.mkdir()
    save_whole(path, lambda fh: fh.write(json.dumps(manifest, indent=2).encode()), tmp=path.with_suffix(".tmp"))
    return 0


class PassInterrupted(KeyboardInterrupt):
    """A Ctrl-C during a pass: ``kept`` says what the work folder holds for ``resume`` (None: nothing)."""

    def __init__(self, kept: Any | None):
        super().__init__()
        self.kept = kept


@contextmanager
def interrupt_keeps(interruption: type[PassInterrupted], kept: Callable[[dict], Any]) -> Iterator[dict]:
    """Turn a KeyboardInterrupt inside the block into ``interruption(kept(known))`` (None where
    reading the folder fails); the block fills ``known`` with what ``kept`` needs once it knows it."""
    known: dict = {}
    try:
        yield known
    except interruption:
        raise
    except KeyboardInterrupt:
        try:
            state = kept(known)
        except OSError:
            state = None
        raise interruption(state) from None
