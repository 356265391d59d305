"""Write to a temporary file next to the destination, rename into place only when complete.

File-safety rules shared by every writer of the package (the D_LA writer, ``ladd export``, labeler
checkpoints, reports):

- A destination is written as a hidden sibling ``.NAME.partial-<pid>-<hex>`` in the same folder and
  renamed over ``NAME`` only when complete, so an existing destination is intact until then.
- Stale partials: a process killed mid-write leaves its ``.NAME.partial-<pid>-<hex>`` behind.
  :func:`remove_stale_partials` (called by :func:`check_destination`, hence before every write to
  ``NAME``) removes those of ``NAME`` whose ``<pid>`` is not a live process on this machine; a
  partial of a live process (or one this user may not signal) is kept. A stale partial that is a
  symbolic link is unlinked, never followed; folders are removed only when they are real folders.
  (A process on another machine writing to the same shared folder is not seen as alive: do not
  write one destination from two machines at once.)
- Symbolic links are never followed when writing: a destination that is a symbolic link (even a
  dangling one) counts as existing; with ``overwrite`` the link itself is replaced, its target is
  left untouched.
- Modes: outputs get the mode a new file gets, ``0o666`` less the process's umask, as ``open()``
  gives; a temporary file made by a library with a private mode (safetensors writes 0600) is set
  to it by :func:`follow_umask` before the rename.
- Messages name the command-line option that changes the outcome (``pass --force to replace it``);
  the Python keyword behind each option is documented with the function (``--force`` is
  ``overwrite=True``).
- Inputs: :func:`require_regular_file` refuses a FIFO, socket, device or folder given where a file
  is expected, before anything opens it (opening a FIFO blocks).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from typing import Iterator

from .errors import InputError, OutputExistsError

PARTIAL_INFIX = ".partial-"


def exists_or_link(path: str | os.PathLike) -> bool:
    """True when ``path`` exists or is a symbolic link (even a dangling one); never follows it."""
    return os.path.lexists(path)


def is_real_dir(path: str | os.PathLike) -> bool:
    """True for a folder that is not a symbolic link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def require_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path when it is a regular file (symbolic links to one are fine), else a
    one-line :class:`InputError`: missing, a folder, or a FIFO/socket/device (never opened)."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise InputError(f"no such {what}", p) from None
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror or type(exc).__name__}", p) from None
    if stat.S_ISDIR(mode):
        raise InputError(f"is a directory, expected a {what}", p)
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise InputError(f"is {kind}, expected a regular {what}; it was not opened", p)
    return p


def _pid_alive(pid: int) -> bool:
    """True unless ``pid`` is certainly not a live process on this machine."""
    if pid < 1:
        return True                     # not a writer's pid: not ours to judge, keep it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError, ValueError):
        return True                     # alive under another user, or not a pid we can ask about
    return True


def remove_entry(path: Path) -> None:
    """Remove ``path`` without following a symbolic link; best effort (it is garbage anyway)."""
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):
            shutil.rmtree(path)         # a real folder: rmtree does not follow links inside it
        else:
            os.unlink(path)             # files and symbolic links (the link, not its target)
    except OSError:
        pass


def remove_stale_partials(dest: str | os.PathLike) -> list[Path]:
    """Remove the stale ``.NAME.partial-<pid>-<hex>`` siblings of ``dest`` (module docstring).

    Returns the paths removed. Best effort: an entry that cannot be removed is left, silently; a
    missing folder is nothing to clean.
    """
    dest = Path(dest)
    pattern = re.compile(re.escape(f".{dest.name}{PARTIAL_INFIX}") + r"(\d{1,10})-[0-9a-f]+")
    removed = []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    for entry in entries:
        hit = pattern.fullmatch(entry.name)
        if hit is None or _pid_alive(int(hit.group(1))):
            continue
        path = dest.parent / entry.name
        remove_entry(path)
        if not exists_or_link(path):
            removed.append(path)
    return removed


def umask_file_mode() -> int:
    """``0o666`` less the process's umask: the mode ``open()`` gives a new file. Read from
    ``/proc/self/status`` where it can be (setting the umask to read it would race with threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def follow_umask(path: str | os.PathLike) -> None:
    """Give ``path`` (a temporary file this process made) the mode of a file made by ``open()``."""
    os.chmod(path, umask_file_mode())


def check_destination(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an existing destination unless ``overwrite``; refuse a missing parent folder and a
    destination that is a (real) folder. Removes the destination's stale partials first."""
    dest = Path(path)
    if is_real_dir(dest):
        raise OutputExistsError("is a directory, expected a file path", dest)
    if not dest.parent.is_dir():
        raise InputError("output folder does not exist" if not exists_or_link(dest.parent)
                         else "is not a folder, so the output cannot be written in it", dest.parent)
    remove_stale_partials(dest)
    if exists_or_link(dest) and not overwrite:
        raise OutputExistsError("exists; pass --force to replace it", dest)
    return dest


def temporary_sibling(dest: Path) -> Path:
    """A fresh hidden path in the destination's folder (same file system, so rename is atomic)."""
    return dest.with_name(f".{dest.name}{PARTIAL_INFIX}{os.getpid()}-{secrets.token_hex(4)}")


def commit(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Move a completed temporary file into place (atomic on POSIX). A destination that is a
    symbolic link is replaced as a link (its target is untouched); a folder is refused."""
    if exists_or_link(dest) and not overwrite:
        tmp.unlink(missing_ok=True)
        raise OutputExistsError("appeared while writing; pass --force to replace it", dest)
    if is_real_dir(dest):
        tmp.unlink(missing_ok=True)
        raise OutputExistsError("became a directory while writing; nothing was replaced", dest)
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
