"""Dense-label codecs, registered by name (spec section 6).

A codec is one module in this package holding one registered :class:`Codec` subclass; every module
here is imported (registration side effect), so a new codec is one new file.
"""

import importlib
import pkgutil

from ..errors import CodecError
from ..spec.names import CODEC_ATTR
from .base import (Codec, codec_class, codec_classes, codec_names, make_codec, parse_codec, parse_codec_config,
                   register)

__all__ = ["Codec", "codec_class", "codec_classes", "codec_help", "codec_names", "make_codec", "parse_codec", "parse_codec_config",
           "register", "codec_from_file", "dense_attr_owners", "codec_usage"]

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")


def codec_from_file(attrs, dense_group) -> Codec:
    """The codec a file's ``/dense`` group was written with: the class named by its ``codec``
    attribute rebuilds itself (:meth:`Codec.from_dense`). Files are untrusted: anything missing or
    malformed raises :class:`CodecError`."""
    if CODEC_ATTR not in attrs:
        raise CodecError("/dense attribute 'codec' is missing")
    name = attrs[CODEC_ATTR]
    if isinstance(name, bytes):  # a fixed-length string: its value ends at the first NUL (spec 2)
        name = name.split(b"\0", 1)[0].decode("utf-8", "replace")
    if not isinstance(name, str):
        raise CodecError(f"/dense attribute 'codec' must be a string, got {name!r}")
    cls = codec_class(name)
    try:
        return cls.from_dense(attrs, dense_group)
    except CodecError:
        raise
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise CodecError(f"codec {name!r} cannot be read from /dense: {exc}") from None


def codec_usage() -> str:
    """Every registered codec's text form, for help texts: ``float16, float32, topk:k=K,values=..., uint8``."""
    return ", ".join(cls.usage() for cls in codec_classes())


def codec_help() -> str:
    """The help text of a ``--codec`` option (``ladd augment``, ``ladd convert``)."""
    return (f"Dense-label codec, one value: {codec_usage()} (or the JSON of its configuration); parameters left out "
            "take their defaults.")


def dense_attr_owners() -> dict[str, list[str]]:
    """Each codec-specific ``/dense`` attribute -> the names of the codecs it belongs to."""
    owners: dict[str, list[str]] = {}
    for cls in codec_classes():
        for key in cls.dense_attr_names:
            owners.setdefault(key, []).append(cls.name)
    return owners
