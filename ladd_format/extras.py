"""Optional dependencies: the format core needs numpy and h5py only; the rest comes with extras.

``pip install ladd-format`` gives the format core and the commands that read, check, size, draw,
export and convert without a framework (info, verify, size, show, upgrade, export npz/folder,
convert npz and image folders). ``pip install 'ladd-format[torch]'`` adds torch and torchvision for
the loader, the labeler, augment, evaluate, demo, the ``.pt`` converters and the ddranking export.
A module that needs an extra calls :func:`require` before importing it, so that a missing extra is
one line naming what to install, not an ImportError from deep inside.
"""

from __future__ import annotations

import importlib.util

from .errors import MissingExtraError

#: extra name -> the importable modules it brings (pyproject.toml [project.optional-dependencies])
EXTRAS: dict[str, tuple[str, ...]] = {"torch": ("torch", "torchvision", "safetensors", "sklearn")}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (empty when the extra is installed)."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` naming ``what`` needs and how to install it, unless every
    module of ``extra`` can be imported."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(f"{what} needs the '{extra}' extra ({', '.join(absent)} not installed): "
                                f"pip install 'ladd-format[{extra}]'")
