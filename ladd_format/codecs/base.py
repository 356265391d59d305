"""The codec interface and registry for dense labels (spec section 6).

A codec turns float probabilities ``(B, P, C)`` into the arrays stored under ``/dense`` and back to
float32 probabilities. Each codec is one small class in its own module, registered by name, with a
JSON-able configuration that round-trips through :meth:`Codec.config` / :func:`make_codec`.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Mapping

import numpy as np

from ..errors import CodecError

#: the one dataset inside /dense of the float32, float16 and uint8 codecs (spec 4.5)
PROBS = "probs"

_REGISTRY: dict[str, type["Codec"]] = {}


class Codec:
    """Base class. Subclasses set ``name`` and ``values_dataset`` and implement ``layout``,
    ``encode``, ``decode`` and ``check``; a codec with parameters also overrides ``config``,
    ``dense_attrs`` (with ``dense_attr_names``) and ``from_dense``. Nothing outside a codec's own
    module knows its name or parameters: writer, reader, verifier and CLI go through this interface.
    """

    name: ClassVar[str]
    #: the stored dataset under ``/dense`` holding the probability values; problems found by
    #: :meth:`check` are reported against it
    values_dataset: ClassVar[str]
    #: names of the extra ``/dense`` attributes this codec writes (the keys of :meth:`dense_attrs`);
    #: on a file written with another codec they are an error
    dense_attr_names: ClassVar[tuple[str, ...]] = ()

    def config(self) -> dict:
        """JSON-able configuration; ``make_codec(**codec.config())`` rebuilds an equal codec."""
        return {"name": self.name}

    def dense_attrs(self) -> dict:
        """Extra attributes of ``/dense`` this codec needs (e.g. ``k``)."""
        return {}

    @classmethod
    def from_dense(cls, attrs: Mapping[str, Any], datasets: Mapping[str, Any]) -> "Codec":
        """The codec a file's ``/dense`` group was written with, from its attributes and stored
        datasets (h5py datasets or anything with a ``dtype`` and ``shape``). Files are untrusted:
        a missing or malformed parameter raises :class:`CodecError`."""
        return cls()

    @classmethod
    def usage(cls) -> str:
        """The codec's text form for help texts, e.g. ``uint8`` or ``topk:k=K,values=float16|uint8``."""
        return cls.name

    def label(self) -> str:
        """A short label for file names and tables (e.g. ``uint8``); the name unless overridden."""
        return self.name

    def layout(self, num_sub: int, num_classes: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Stored datasets under ``/dense``: name -> (per-image shape, dtype)."""
        raise NotImplementedError

    def encode(self, probs: np.ndarray) -> dict[str, np.ndarray]:
        """``(B, P, C)`` float probabilities -> stored arrays, each ``(B, P, ...)``."""
        raise NotImplementedError

    def decode(self, stored: dict[str, np.ndarray], num_classes: int) -> np.ndarray:
        """Stored arrays ``(B, P, ...)`` -> ``(B, P, C)`` float32 probabilities."""
        raise NotImplementedError

    def check(self, stored: dict[str, np.ndarray], num_classes: int) -> list[str]:
        """Problems with stored values against the codec's tolerance (spec 6); empty when fine."""
        raise NotImplementedError

    def decode_tensor(self, stored: dict, num_classes: int, dtype=None):
        """:meth:`decode` of torch tensors ``(B, P, ...)``, on their device, in ``dtype`` (default
        float32): the training device's decode (``DLADataset.decode_batch``). The codecs that
        override it compute there and agree with :meth:`decode` within 1e-6; this default decodes
        with numpy on the CPU and moves the result. torch is imported only when this is called
        (the format core does not need it)."""
        import torch

        rows = {key: value.cpu().numpy() for key, value in stored.items()}
        device = next(iter(stored.values())).device
        return torch.from_numpy(self.decode(rows, num_classes)).to(device, dtype or torch.float32)

    def text(self) -> str:
        """The codec as one short value, e.g. ``uint8`` or ``topk:k=50,values=float16``;
        ``parse_codec(codec.text())`` rebuilds an equal codec (the CLI's ``--codec`` takes it)."""
        params = [f"{key}={value}" for key, value in sorted(self.config().items()) if key != "name"]
        return self.name + (":" + ",".join(params) if params else "")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codec) and self.config() == other.config()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def register(cls: type[Codec]) -> type[Codec]:
    """Class decorator: make a codec available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def codec_names() -> list[str]:
    return sorted(_REGISTRY)


def codec_class(name: str) -> type[Codec]:
    """The registered codec class called ``name``; :class:`CodecError` naming the known ones if none."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise CodecError(f"unknown codec {name!r}; known: {', '.join(codec_names())}") from None


def codec_classes() -> list[type[Codec]]:
    """Every registered codec class, sorted by name."""
    return [_REGISTRY[name] for name in codec_names()]


def make_codec(name: str, **config) -> Codec:
    """Build a registered codec by name with its configuration."""
    cls = codec_class(name)
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(config) - set(params))
        if unknown:
            raise CodecError(f"codec {name!r} takes no parameter {', '.join(map(repr, unknown))}; "
                             f"its form is {cls.usage()}")
    try:
        return cls(**config)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"bad configuration for codec {name!r}: {exc}") from None


def _parse_value(text: str):
    """A configuration value of the text form: an integer when it reads as one, else the string."""
    try:
        return int(text)
    except ValueError:
        return text


def parse_codec(spec: str | dict | "Codec") -> "Codec":
    """A codec from its one-value form: text (``float32``, ``topk:k=50,values=float16``), the JSON
    of :meth:`Codec.config` (``{"name": "topk", "k": 50, "values": "float16"}``, as a dict or as
    text), or a codec (returned as it is). Unknown names and bad parameters raise
    :class:`CodecError` naming the known codecs or the codec's own rule."""
    if isinstance(spec, Codec):
        return spec
    config = parse_codec_config(spec)
    name = config.pop("name")
    return make_codec(name, **config)


def parse_codec_config(spec: str | dict | "Codec") -> dict:
    """The configuration a codec value spells out, as written: ``{"name": ..., <the parameters
    given>}`` (a codec gives its full :meth:`Codec.config`). Syntax errors and a missing name raise
    :class:`CodecError`; the parameters are not checked against the codec (:func:`parse_codec` does)."""
    if isinstance(spec, Codec):
        return spec.config()
    if isinstance(spec, dict):
        config = dict(spec)
    else:
        text = str(spec).strip()
        if text.startswith("{"):
            import json

            try:
                config = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CodecError(f"codec JSON does not parse: {exc.msg} at character {exc.pos}") from None
            # text starting with "{" parses to an object or not at all: config is a dict here
        else:
            name, _, params = text.partition(":")
            config = {"name": name.strip()}
            for item in filter(None, (part.strip() for part in params.split(","))):
                key, eq, value = item.partition("=")
                if not eq or not key.strip() or not value.strip():
                    raise CodecError(f"codec parameters are KEY=VALUE separated by commas, got {item!r} in {text!r}")
                if key.strip() in config:
                    raise CodecError(f"codec parameter {key.strip()!r} given twice in {text!r}")
                config[key.strip()] = _parse_value(value.strip())
    name = config.get("name")
    if not isinstance(name, str) or not name:
        raise CodecError(f"a codec needs a name; known: {', '.join(codec_names())}")
    return config


def quantize_unit(values: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 ``floor(255 * p + 0.5)`` (spec 6)."""
    return np.floor(np.clip(values, 0.0, 1.0).astype(np.float64) * 255.0 + 0.5).astype(np.uint8)


def normalize_rows(q: np.ndarray, num_classes: int) -> np.ndarray:
    """Divide each row (last axis) by its sum; a row summing to 0 becomes uniform 1/C."""
    q = q.astype(np.float64, copy=False)
    sums = q.sum(axis=-1, keepdims=True)
    zero = sums == 0
    out = np.where(zero, 1.0 / num_classes, q / np.where(zero, 1.0, sums))
    return out.astype(np.float32)


def normalize_tensor_rows(q, num_classes: int):
    """:func:`normalize_rows` of a torch tensor, in its dtype and on its device."""
    import torch

    sums = q.sum(dim=-1, keepdim=True)
    zero = sums == 0
    uniform = torch.tensor(1.0 / num_classes, dtype=q.dtype, device=q.device)   # broadcast, not an (n, C) fill
    return torch.where(zero, uniform, q / torch.where(zero, torch.ones_like(sums), sums))


def unit_interval_problems(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Stored float probabilities must be finite and in [0, 1]. Returns the problems and the values
    as float64 with non-finite entries zeroed (for further row checks)."""
    problems = []
    v = values.astype(np.float64)
    if v.size and 0.0 <= v.min() and v.max() <= 1.0:  # NaN fails both comparisons: one pass each
        return problems, v
    if not np.all(np.isfinite(v)):
        problems.append(f"{int(np.sum(~np.isfinite(v)))} values are NaN or infinite")
        v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    if np.any(v < 0) or np.any(v > 1):
        problems.append(f"values must lie in [0, 1], found min {v.min():.4g}, max {v.max():.4g}")
    return problems, v


def float_row_problems(values: np.ndarray, tolerance: float) -> list[str]:
    """Checks shared by the float codecs: finite, in [0, 1], rows summing to 1 within tolerance."""
    problems, v = unit_interval_problems(values)
    dev = np.abs(v.sum(axis=-1) - 1.0)
    if dev.size and dev.max() > tolerance:
        problems.append(f"rows must sum to 1 within {tolerance:g}, worst row is off by {dev.max():.4g}")
    return problems
