"""Lazy reader of D_LA files.

Opening reads only the root attributes and checks what every use needs (format, version, the
``/images`` and ``/labels`` datasets); arrays are read on request, a slice at a time. Full checking
is :func:`ladd_format.verify`.

Example::

    with open_dla("set.dla.h5") as f:
        x = f.images(0, 8)        # (8, K, H, W) as stored (uint8 by default)
        y = f.labels()            # (M,) int64
        yd = f.dense(0, 8)        # (8, N*N, C) float32, decoded from any codec
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from . import spec as S
from .codecs import Codec, codec_from_file
from .errors import (ChecksumError, DtypeError, FormatError, LaddError, MissingFieldError,
                     NoDenseLabelsError, NotHDF5Error, TruncatedFileError, UnsupportedVersionError)


def text(value) -> str:
    """An HDF5 string attribute as ``str`` (h5py may return bytes or numpy strings)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return text(value[()])
    return str(value)


def attr_dict(attrs) -> dict:
    """HDF5 attributes as plain JSON-able Python values."""
    out = {}
    for key, value in attrs.items():
        if isinstance(value, np.ndarray):
            value = [text(v) if isinstance(v, (bytes, str)) else v for v in value.tolist()]
        elif isinstance(value, (bytes, np.bytes_)):
            value = text(value)
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def open_h5(path: str | os.PathLike) -> h5py.File:
    """Open an HDF5 file read-only, turning h5py's errors into one-line :class:`LaddError` s."""
    p = Path(path)
    if not p.exists():
        raise LaddError("no such file", p)
    if p.is_dir():
        raise LaddError("is a directory, expected a .dla.h5 file", p)
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            raise TruncatedFileError("truncated HDF5 file (it ends before the data it declares)", p) from None
        if "signature" in msg.lower():
            raise NotHDF5Error("not an HDF5 file (no HDF5 signature)", p) from None
        raise NotHDF5Error(f"cannot be opened as HDF5: {msg}", p) from None


def check_format(h5: h5py.File, path) -> tuple[int, int]:
    """Spec rule 2: ``format`` and a supported ``format_version``; returns (major, minor)."""
    fmt = h5.attrs.get("format")
    if fmt is None:
        raise FormatError("not a D_LA container: root attribute 'format' is missing", path, "/")
    if text(fmt) != S.FORMAT:
        raise FormatError(f"not a D_LA container: format is {text(fmt)!r}, expected {S.FORMAT!r}", path, "/")
    version = h5.attrs.get("format_version")
    if version is None:
        raise MissingFieldError("root attribute 'format_version' is missing", path, "/")
    try:
        major, minor = S.parse_version(text(version))
    except ValueError:
        raise UnsupportedVersionError(f"format_version {text(version)!r} is not MAJOR.MINOR", path, "/") from None
    if major != S.SUPPORTED_MAJOR:
        raise UnsupportedVersionError(
            f"format_version {text(version)} is not supported (this reader implements major version "
            f"{S.SUPPORTED_MAJOR}); upgrade ladd-format", path, "/")
    return major, minor


def read_rows(ds: h5py.Dataset, start: int, stop: int, path) -> np.ndarray:
    """Read rows [start, stop) of a dataset; a failing fletcher32 becomes :class:`ChecksumError`."""
    try:
        return ds[start:stop]
    except OSError as exc:
        raise ChecksumError(f"rows {start}..{stop - 1} cannot be read (chunk checksum failed: {exc})",
                            path, ds.name) from None


class DLAFile:
    """An open D_LA file. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.h5 = open_h5(self.path)
        try:
            self.version = check_format(self.h5, self.path)
            for name in (S.IMAGES, S.LABELS):
                if name not in self.h5 or not isinstance(self.h5[name], h5py.Dataset):
                    raise MissingFieldError(f"required dataset /{name} is missing", self.path, f"/{name}")
            if "num_classes" not in self.h5.attrs:
                raise MissingFieldError("root attribute 'num_classes' is missing", self.path, "/")
            shape = self.h5[S.IMAGES].shape
            if len(shape) != 4:
                raise LaddError(f"/images must be 4-D (M, K, H, W), got shape {shape}", self.path, "/images")
            if self.h5[S.LABELS].shape != (shape[0],):
                raise LaddError(f"/labels must have shape ({shape[0]},) to match /images, got "
                                f"{self.h5[S.LABELS].shape}", self.path, "/labels")
        except BaseException:
            self.h5.close()
            raise
        # A read-only file does not change: keep handles and the shapes every read needs, so a
        # single-item read costs one HDF5 read per dataset, not a lookup of groups and attributes.
        self._images = self.h5[S.IMAGES]
        self._labels = self.h5[S.LABELS]
        self._num_images = int(self._images.shape[0])
        self._num_classes = int(self.h5.attrs["num_classes"])
        self._dense = self.h5[S.DENSE] if S.DENSE in self.h5 else None
        self._dense_datasets: dict[str, h5py.Dataset] | None = None
        self._n: int | None = None
        self._codec: Codec | None = None

    # -- metadata -------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return attr_dict(self.h5.attrs)

    @property
    def num_images(self) -> int:
        return self._num_images

    def __len__(self) -> int:
        return self.num_images

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.h5[S.IMAGES].shape[1:])

    @property
    def image_dtype(self) -> np.dtype:
        return self.h5[S.IMAGES].dtype

    @property
    def space(self) -> str:
        return text(self.h5[S.IMAGES].attrs.get("space", S.SPACE_UINT8))

    @property
    def class_names(self) -> list[str] | None:
        names = self.h5.attrs.get("class_names")
        return None if names is None else [text(v) for v in names]

    @property
    def ipc(self) -> float:
        if "ipc" in self.h5.attrs:
            return int(self.h5.attrs["ipc"])
        return self.num_images / self.num_classes

    def _attr(self, obj, key: str):
        """Attribute ``key`` of ``obj`` or a one-line :class:`MissingFieldError`."""
        try:
            return obj.attrs[key]
        except KeyError:
            raise MissingFieldError(f"attribute {key!r} is missing", self.path, obj.name) from None

    def _normalization(self, key: str) -> np.ndarray:
        if S.NORMALIZATION not in self.h5:
            raise MissingFieldError("group /normalization is missing", self.path, "/normalization")
        return np.asarray(self._attr(self.h5[S.NORMALIZATION], key), dtype=np.float64)

    @property
    def mean(self) -> np.ndarray:
        return self._normalization("mean")

    @property
    def std(self) -> np.ndarray:
        return self._normalization("std")

    @property
    def provenance(self) -> dict:
        if S.PROVENANCE not in self.h5:
            return {}
        out = attr_dict(self.h5[S.PROVENANCE].attrs)
        for key in ("inputs", "report"):
            if key in out:
                try:
                    out[key] = json.loads(out[key])
                except (TypeError, ValueError):
                    pass
        return out

    # -- dense labels ---------------------------------------------------------------------
    @property
    def has_dense(self) -> bool:
        return self._dense is not None

    def _dense_group(self) -> h5py.Group:
        if self._dense is None:
            raise NoDenseLabelsError("no dense labels (this is a plain distilled set D): "
                                     "run `ladd augment` first", self.path, "/dense")
        return self._dense

    @property
    def n(self) -> int:
        if self._n is None:
            self._n = int(self._attr(self._dense_group(), "n"))
        return self._n

    @property
    def ratio(self) -> float:
        return float(self._attr(self._dense_group(), "ratio"))

    @property
    def temperature(self) -> float:
        return float(self._attr(self._dense_group(), "temperature"))

    @property
    def boxes(self) -> np.ndarray:
        """``(N*N, 4)`` int32 rows [top, left, height, width] (spec 5)."""
        return np.asarray(self._attr(self._dense_group(), "boxes"), dtype=np.int32)

    @property
    def codec(self) -> Codec:
        if self._codec is None:
            g = self._dense_group()
            self._codec = codec_from_file(g.attrs, g)
        return self._codec

    @property
    def labeler(self) -> dict:
        g = self._dense_group()
        return attr_dict(g["labeler"].attrs) if "labeler" in g else {}

    def dense_stored(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """The stored dense arrays for images [start, stop), as the codec wrote them."""
        if self._dense_datasets is None:
            g = self._dense_group()
            datasets = {}
            for name in self.codec.layout(self.n * self.n, self.num_classes):
                if name not in g:
                    raise MissingFieldError(f"dataset /dense/{name} required by codec {self.codec.name!r} is "
                                            "missing", self.path, f"/dense/{name}")
                datasets[name] = g[name]
            self._dense_datasets = datasets
        stop = self.num_images if stop is None else stop
        return {name: read_rows(ds, start, stop, self.path) for name, ds in self._dense_datasets.items()}

    def dense(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Decoded dense labels of images [start, stop): ``(B, N*N, C)`` float32 probabilities."""
        return self.codec.decode(self.dense_stored(start, stop), self.num_classes)

    # -- arrays ---------------------------------------------------------------------------
    def images(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Images [start, stop) as stored: ``(B, K, H, W)`` uint8 (or float16/float32)."""
        stop = self.num_images if stop is None else stop
        return read_rows(self._images, start, stop, self.path)

    def labels(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Hard labels [start, stop) as ``(B,)`` int64 class indices."""
        stop = self.num_images if stop is None else stop
        if self._labels.dtype.kind not in "iu":
            raise DtypeError(f"/labels must be integers, found {self._labels.dtype}", self.path, "/labels")
        return read_rows(self._labels, start, stop, self.path).astype(np.int64, copy=False)

    @property
    def has_soft_labels(self) -> bool:
        return S.SOFT_LABELS in self.h5

    @property
    def soft_kind(self) -> str | None:
        return text(self.h5[S.SOFT_LABELS].attrs.get("kind")) if self.has_soft_labels else None

    def soft_labels(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Global soft labels [start, stop) as stored (``soft_kind`` says logits or probs), float32."""
        if not self.has_soft_labels:
            raise MissingFieldError("no global soft labels in this file", self.path, "/soft_labels")
        stop = self.num_images if stop is None else stop
        return read_rows(self.h5[S.SOFT_LABELS], start, stop, self.path).astype(np.float32)

    # -- summary --------------------------------------------------------------------------
    def info(self) -> dict:
        """A JSON-able summary of the file (what ``ladd info`` prints)."""
        k, h, w = self.image_shape
        out = {
            "path": str(self.path),
            "format_version": text(self.h5.attrs["format_version"]),
            "num_images": self.num_images,
            "num_classes": self.num_classes,
            "ipc": self.ipc,
            "image_shape": [k, h, w],
            "image_dtype": str(self.image_dtype),
            "space": self.space,
            "file_bytes": self.path.stat().st_size,
        }
        for key in ("source_dataset", "distillation", "class_names"):
            if key in self.h5.attrs:
                out[key] = self.attrs[key]
        if S.NORMALIZATION in self.h5:
            out["mean"] = self.mean.tolist()
            out["std"] = self.std.tolist()
        out["soft_labels"] = self.soft_kind
        if self.has_dense:
            out["dense"] = {"n": self.n, "ratio": self.ratio, "codec": self.codec.config(),
                            "temperature": self.temperature, "boxes": self.boxes.tolist(),
                            "labeler": self.labeler}
        else:
            out["dense"] = None
        out["provenance"] = self.provenance
        return out

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> "DLAFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_dla(path: str | os.PathLike) -> DLAFile:
    """Open a D_LA (or plain D) file lazily; raises a one-line :class:`LaddError` on bad files."""
    return DLAFile(path)
