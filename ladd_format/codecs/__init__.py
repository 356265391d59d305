"""Dense-label codecs, registered by name (spec section 6)."""

from . import float16, float32, topk, uint8  # noqa: F401  (registration side effect)
from .base import Codec, codec_names, make_codec, parse_codec, register

__all__ = ["Codec", "codec_names", "make_codec", "parse_codec", "register", "codec_from_file"]


def codec_from_file(attrs, dense_group) -> Codec:
    """The codec a file's ``/dense`` group was written with (name from ``codec``, k and the value
    dtype from the stored datasets)."""
    name = attrs.get("codec")
    if isinstance(name, bytes):
        name = name.decode()
    if name == "topk":
        values = "float16"
        if "topk_prob" in dense_group:
            values = {"f4": "float32", "f2": "float16", "u1": "uint8"}.get(
                dense_group["topk_prob"].dtype.str[1:], "float16")
        k = int(attrs.get("k", 0))
        return make_codec("topk", k=k, values=values)
    return make_codec(str(name))
