"""Regenerate the D_LA test vectors of spec/dla-v1.md (run: ``.venv/bin/python spec/vectors/make_vectors.py``).

Every file in this folder is written by this script, deterministically (fixed seed, fixed creation
time). For each ``<name>.dla.h5`` it writes ``<name>.expected.json``: what a reader following the
spec must get from the file. The expected decoded dense labels are computed here with exact rational
arithmetic (``fractions.Fraction``) from the stored values and the decode rules of spec section 6, so
they depend on neither the package's decoder nor any floating-point evaluation order; they are then
rounded once to float32 (written as the shortest decimal that reads back to that float32).

The source probabilities are chosen so that no encoding is ambiguous: every random value gives the
same uint8 code whether ``floor(255 p + 0.5)`` is evaluated exactly, in float64 or from float32 p,
the same float16 whether cast directly or through float32, and no two random values of a row tie, in
float64 or in float32. Ties are only the deliberate dyadic rows (``tie_rows``), which exercise the
top-k tie rule and an exact half (255 * 0.5 = 127.5 -> 128).

Vectors of earlier format versions (1.0, 1.1, 1.2) are written as such (``pin_version``) and, when
the folder already holds them with an unchanged expected file, left byte for byte as they are (spec
section 9): the 1.2 stream vectors and the invalid vectors of rules 16 and 17 stay 1.2 files. The 1.3
vector with a low-rank tail (``stream_cutmix_topk_tail``) and the invalid vectors of rule 18 are the
writer's version. The tail vector's stored values are chosen here (dyadic mean, basis and scales,
integer coefficients), and its top-k labels are encoded from the softmax of the tail's own logits
computed in 60-digit decimal arithmetic, so its bytes depend on no floating-point library, except
in four records whose top-k values are set by hand so that 4.8's clamp of the tail mass changes
them (``TAIL_SET_BY_HAND``) and one whose top-k classes are set by hand so that 4.8's cap of the
tail entries changes it (``TAIL_CLASSES_BY_HAND``); its expected labels are that decimal decode of
section 6 with the tail, rounded once to float32.

Usage: make_vectors.py [--out DIR]   (default: the folder holding this script)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import tempfile
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from ladd_format import DenseSpec, DLAWriter, open_dla, verify  # noqa: E402
from ladd_format.codecs import make_codec  # noqa: E402
from ladd_format.geometry import boxes  # noqa: E402
from ladd_format import integrity  # noqa: E402

# Chunk sizes are free in the spec apart from /images (one image per chunk). The reference writer
# sizes the other chunks for real sets (about 64 KiB, and 4096 rows for /labels), which would make
# each of these tiny vectors ~120-190 KB of chunk padding. Capping every chunk at 3 rows keeps the
# files small and makes /labels, /soft_labels and /dense span several chunks (the last one partial),
# so readers are exercised on multi-chunk reads.
MAX_CHUNK_ROWS = 3

#: The vectors of spec 1.1 (the codec, plain, float_images and nul_strings vectors and the invalid vectors of
#: rules 3-15) keep format_version 1.1 when regenerated (spec section 9: vectors of earlier versions remain
#: valid); the stream vectors of 1.2 (and the invalid vectors of rules 16, 17) keep 1.2; the tail vectors
#: are 1.3 (the writer's version).
VERSION_1_1 = "1.1"
VERSION_1_2 = "1.2"


SEED = 20260101
CREATED = "2026-01-01T00:00:00Z"
CONVERTER = "spec-vectors"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# (height, width, n, ratio, note)
GEOMETRY_CASES = [
    (128, 128, 5, 0.625, "spec table: the paper's geometry"),
    (32, 32, 5, 0.625, "spec table"),
    (224, 224, 5, 0.625, "spec table"),
    (64, 64, 3, 0.5, "spec table"),
    (30, 30, 1, 0.5, "spec table: N = 1, odd difference 15 -> offset 8"),
    (48, 64, 5, 0.625, "non-square; H offsets 4.5 per step, rounded half up"),
    (64, 48, 5, 0.625, "non-square, transposed"),
    (128, 128, 7, 0.885, "N = 7; crop 113.28 -> 113, offsets step 2.5"),
    (31, 31, 1, 0.5, "N = 1, crop 15.5 -> 16, odd difference 15"),
    (7, 9, 1, 0.3, "N = 1, non-square, odd difference 5 -> 3"),
    (224, 224, 4, 0.75, "224 px, N = 4"),
    (8, 8, 3, 0.625, "the codec vectors' geometry: crop 5, offsets 0, 2 (1.5 rounded up), 3"),
    (8, 12, 3, 0.625, "float_images geometry: crop width 7.5 + 0.5 -> 8"),
    (32, 32, 3, 1.0, "R = 1: every box is the whole image"),
    (1, 1, 2, 1.0, "smallest image, N = 2"),
    (5, 5, 2, 0.3, "double precision: 0.3 * 5 = 1.5 in float64 (exact binary value gives 1.49999...)"),
    (10, 10, 3, 0.95, "double precision: 0.95 * 10 = 9.5 in float64 -> crop 10"),
    (25, 25, 5, 0.58, "double precision: 0.58 * 25 = 14.499999999999998 in float64 -> crop 14, not 15"),
    (100, 60, 4, 0.565, "double precision: 0.565 * 100 = 56.49999999999999 in float64 -> crop 56"),
]


# ---------------------------------------------------------------------------------------------
# helpers
def f32(x) -> float:
    """Shortest decimal that reads back (via float64 then float32) to the float32 nearest ``x``."""
    return float(np.format_float_scientific(np.float32(x), unique=True))


def exact_list(arr: np.ndarray):
    """A float16/float32 array as nested lists of Python floats: the shortest decimals that read back
    (as float64, then cast to the array's dtype) to exactly the stored values."""
    a = np.asarray(arr)
    flat = [float(np.format_float_scientific(v, unique=True)) for v in a.reshape(-1)]
    assert np.array_equal(np.asarray(flat, dtype=np.float64).astype(a.dtype), a.reshape(-1))
    return np.asarray(flat, dtype=np.float64).reshape(a.shape).tolist()


def text(value) -> str:
    """A string attribute's value as str (fixed-length strings come back from h5py as bytes): the
    bytes up to the first NUL (spec section 2)."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    return value.split(b"\0", 1)[0].decode("utf-8") if isinstance(value, bytes) else str(value).split("\0", 1)[0]


def sha256_le(arr: np.ndarray) -> str:
    a = np.asarray(arr)
    if a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def unambiguous_value(p: float) -> bool:
    """Same uint8 code and float16 value under every reasonable evaluation (see module doc)."""
    exact = math.floor(Fraction(p) * 255 + Fraction(1, 2))
    as64 = math.floor(255.0 * p + 0.5)
    as32 = math.floor(255.0 * float(np.float32(p)) + 0.5)
    frac = (Fraction(p) * 255 + Fraction(1, 2)) % 1
    if not (exact == as64 == as32) or min(frac, 1 - frac) < Fraction(1, 10**6):
        return False
    return np.float16(p) == np.float16(np.float32(p))


def unambiguous_row(row: np.ndarray) -> bool:
    if not all(unambiguous_value(float(v)) for v in row):
        return False
    return len(set(row.tolist())) == row.size and len(set(row.astype(np.float32).tolist())) == row.size


# Deliberate ties (dyadic, so exact in every precision). Keys: (image, sub-image).
TIE_ROWS = {
    (0, 0): [0.25, 0.25, 0.25, 0.125, 0.125],   # k=2 drops tied class 2; uint8 64,64,64,32,32
    (1, 4): [0.125, 0.375, 0.125, 0.375, 0.0],  # k=3 -> [1, 3, 0]
    (2, 8): [0.2, 0.2, 0.2, 0.2, 0.2],          # uniform: k=3 -> [0, 1, 2]
    (3, 2): [0.0, 0.0, 1.0, 0.0, 0.0],          # one-hot: k=3 -> [2, 0, 1]
    (3, 7): [0.5, 0.0, 0.0, 0.5, 0.0],          # exact half: 127.5 -> 128; k=2 -> [0, 3]
}


def make_probs(rng: np.random.Generator, m: int, p: int, c: int, ties: dict) -> np.ndarray:
    out = np.empty((m, p, c), dtype=np.float64)
    for i in range(m):
        for j in range(p):
            if (i, j) in ties:
                out[i, j] = ties[(i, j)]
                continue
            while True:
                row = softmax(rng.normal(0.0, 1.5, size=c))
                if unambiguous_row(row):
                    break
            out[i, j] = row
    return out


# ---------------------------------------------------------------------------------------------
# exact decoding (spec section 6) and top-k selection, independent of the package
def _normalise(row: list[Fraction], c: int) -> list[Fraction]:
    total = sum(row, Fraction(0))
    if total == 0:
        return [Fraction(1, c)] * c
    return [v / total for v in row]


def exact_decode(codec: str, stored: dict[str, np.ndarray], c: int) -> np.ndarray:
    if codec in ("float32", "float16"):
        q = np.asarray(stored["probs"], dtype=np.float32)  # float16 -> float32 is exact
        return np.asarray([f32(v) for v in q.reshape(-1)], dtype=np.float64).reshape(q.shape)
    lead = (stored["probs"] if codec == "uint8" else stored["topk_index"]).shape[:-1]
    out = np.empty(lead + (c,), dtype=np.float64)
    for idx in np.ndindex(*lead):
        if codec == "uint8":
            q = [Fraction(int(s), 255) for s in stored["probs"][idx]]
        else:
            index = [int(v) for v in stored["topk_index"][idx]]
            raw = stored["topk_prob"][idx]
            if raw.dtype == np.uint8:
                v = [Fraction(int(s), 255) for s in raw]
            else:
                v = [Fraction(float(s)) for s in raw]
            k = len(index)
            rest = max(Fraction(0), 1 - sum(v, Fraction(0))) / (c - k) if k < c else Fraction(0)
            q = [rest] * c
            for cls, val in zip(index, v):
                q[cls] = val
        out[idx] = [f32(x) for x in _normalise(q, c)]
    return out


def select_topk(row, k: int) -> list[int]:
    """The k largest values, descending, ties by lower class index (spec 6)."""
    return sorted(range(len(row)), key=lambda cls: (-row[cls], cls))[:k]


# ---------------------------------------------------------------------------------------------
def read_back(path: Path) -> dict:
    """Everything a reader gets, read with h5py only; cross-checked against the writer's inputs."""
    with h5py.File(path, "r") as h5:
        datasets = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                digest = sha256_le(data)
                assert text(obj.attrs["sha256"]) == digest, (path, name)
                datasets["/" + name] = {"dtype": obj.dtype.str, "shape": list(obj.shape),
                                        "chunks": list(obj.chunks), "sha256": digest}
        h5.visititems(visit)
        stored = {name: h5["dense"][name][()] for name in h5["dense"]
                  if isinstance(h5["dense"][name], h5py.Dataset)} if "dense" in h5 else {}
    return {"datasets": datasets, "stored": stored}


def root_expected(h5: h5py.File) -> dict:
    out = {}
    for key, value in h5.attrs.items():
        if isinstance(value, np.ndarray):
            value = [text(v) for v in value.tolist()]
        elif isinstance(value, bytes):
            value = text(value)
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def pin_version(h5: h5py.File, version: str) -> None:
    """Give a file the writer just wrote (open for writing) the earlier ``format_version`` of the
    vector it reproduces and reseal its root digest: spec section 9 keeps the vectors of earlier
    versions as they are, and a 1.1 file is a 1.2 file without ``/stream`` but for this attribute."""
    integrity.set_string(h5.attrs, "format_version", version)
    _reseal(h5)


def write_vector(out_dir: Path, name: str, *, images, labels, num_classes, mean, std, space=None,
                 dense_codec=None, n=None, ratio=None, probs=None, temperature=1.0, labeler=None,
                 soft=None, soft_kind=None, soft_dtype="float32", tie_rows=None, edit=None,
                 version: str | None = VERSION_1_1, stream=None, stream_batches=None, stream_source=None,
                 **root) -> dict:
    """Write vector ``name`` and its expected file; ``edit(h5)``, when given, changes the written file
    (open for writing) before it is checked, and returns what to add to the expected file.
    ``version``: the ``format_version`` the vector keeps (:func:`pin_version`); None: the writer's.
    ``stream``: a StreamSpec, whose batches (``stream_batches``: the keyword arguments of each
    ``append_stream`` call) are appended after the images; ``stream_source``: the float64
    probabilities (kind probs) the stored labels were encoded from, for the expected file."""
    path = out_dir / f"{name}.dla.h5"
    k, height, width = images.shape[1:]
    dense = None
    if dense_codec is not None:
        dense = DenseSpec(n=n, ratio=ratio, codec=dense_codec, temperature=temperature,
                          labeler=labeler or {"arch": "unknown"})
    with DLAWriter(path, num_classes=num_classes, image_shape=(k, height, width), mean=mean, std=std,
                   image_dtype=str(images.dtype), space=space, dense=dense, soft_kind=soft_kind,
                   soft_dtype=soft_dtype, converter=CONVERTER, created=CREATED, overwrite=True,
                   max_chunk_rows=MAX_CHUNK_ROWS, stream=stream,
                   **root) as w:
        # two batches, so the streaming path (resize + append) is what wrote the file
        half = max(1, images.shape[0] // 2)
        for a, b in ((0, half), (half, images.shape[0])):
            w.append(images[a:b], labels[a:b],
                     dense=None if probs is None else probs[a:b],
                     soft=None if soft is None else soft[a:b])
        for batch in stream_batches or ():
            w.append_stream(**batch)
    extra = {}
    with h5py.File(path, "r+") as h5:
        if version is not None:
            pin_version(h5, version)
        if edit is not None:
            extra = edit(h5)

    problems = verify(path)
    assert problems == [], [str(p) for p in problems]
    back = read_back(path)

    with h5py.File(path, "r") as h5:
        stored_images = h5["images"][()]
        assert stored_images.dtype == images.dtype and np.array_equal(stored_images, images)
        expected = {
            "file": path.name,
            "root": root_expected(h5),
            "num_images": int(images.shape[0]),
            "num_classes": int(num_classes),
            "image_shape": [int(k), int(height), int(width)],
            "image_dtype": images.dtype.str,
            "space": text(h5["images"].attrs["space"]),
            "images": images.tolist() if images.dtype == np.uint8 else exact_list(images),
            "images_sha256": sha256_le(images),
            "labels": [int(v) for v in labels],
            "normalization": {"mean": list(map(float, mean)), "std": list(map(float, std))},
            "provenance": {key: text(h5["provenance"].attrs[key]) for key in h5["provenance"].attrs},
            "soft_labels": None,
            "dense": None,
            "datasets": back["datasets"],
            "root_sha256": text(h5.attrs["root_sha256"]),
            "row_sha256_datasets": [text(v) for v in h5["row_sha256"].attrs["datasets"]],
            **extra,
        }
    expected["content_sha256"] = integrity.content_digest(path)
    if soft is not None:
        stored_soft = np.asarray(soft).astype(soft_dtype)
        expected["soft_labels"] = {"kind": soft_kind, "dtype": np.dtype(soft_dtype).newbyteorder("<").str,
                                   "values": exact_list(stored_soft)}
    if dense is not None:
        codec_name = dense_codec.name
        stored = back["stored"]
        decoded = exact_decode(codec_name, stored, num_classes)
        d = {
            "n": int(n), "ratio": float(ratio), "resize": "bilinear-antialias", "codec": codec_name,
            "temperature": float(temperature), "labeler": labeler or {"arch": "unknown"},
            "boxes": boxes(height, width, n, ratio).tolist(),
            "source_probs": probs.tolist(),
            "decoded": decoded.tolist(),
        }
        if codec_name == "topk":
            kk = dense_codec.k
            d["k"] = kk
            d["value_dtype"] = stored["topk_prob"].dtype.str
            d["topk_index"] = [[select_topk(row, kk) for row in img] for img in probs.tolist()]
            assert np.array_equal(stored["topk_index"], np.asarray(d["topk_index"])), name
        else:
            d["value_dtype"] = stored["probs"].dtype.str
        if tie_rows:
            d["tie_rows"] = [{"image": i, "sub": j, "p": row} for (i, j), row in sorted(tie_rows.items())]
        expected["dense"] = d

        # the package's reader must agree with the exact decoding
        with open_dla(path) as f:
            got = f.dense()
        assert got.dtype == np.float32 and np.max(np.abs(got - decoded)) <= 1e-6, name

    if stream is not None:
        expected["stream"] = stream_expected(path, stream_batches, labels, stream_source)
    (out_dir / f"{name}.expected.json").write_text(json.dumps(expected, indent=None, sort_keys=True) + "\n")
    return expected


# Fixed-length strings whose stored bytes go on after a NUL (spec section 2: the value ends at the
# first NUL). (object, attribute, stored bytes); the values are what the NUL leaves.
NUL_STRINGS = [
    ("/", "class_names", [b"cat\0dog", b"dog"]),
    ("/", "source_dataset", b"cifar10\0imagenet"),
    ("/images", "space", b"pixel255\0zca"),
]


def _store_nul_strings(h5) -> dict:
    """Store :data:`NUL_STRINGS` as fixed-length UTF-8 strings and reseal the root digest (which
    covers the values only); returns what the expected file says about them."""
    shown = []
    for where, name, stored in NUL_STRINGS:
        width = max(len(v) for v in stored) if isinstance(stored, list) else len(stored)
        h5[where].attrs.create(name, np.array(stored, dtype=f"S{width}"), dtype=h5py.string_dtype("utf-8", width))
        raw = h5[where].attrs[name]
        raw = [bytes(v) for v in raw] if isinstance(raw, np.ndarray) and raw.ndim else bytes(raw)
        assert raw == stored, (name, raw)   # h5py hands back the bytes after the NUL
        value = [text(v) for v in stored] if isinstance(stored, list) else text(stored)
        decode = lambda b: b.decode("utf-8")  # noqa: E731
        shown.append({"object": where, "attribute": name, "value": value,
                      "stored": [decode(v) for v in stored] if isinstance(stored, list) else decode(stored)})
    _reseal(h5)
    return {"nul_strings": shown}


def make_nul_strings(out_dir: Path) -> None:
    """``nul_strings``: a valid plain set whose string attributes hold bytes after a NUL. Readers see
    the values (``cat``, ``cifar10``, ``pixel255``); the root digest covers the values only."""
    images = np.arange(2 * 1 * 4 * 4, dtype=np.uint8).reshape(2, 1, 4, 4) * 7
    write_vector(out_dir, "nul_strings", images=images, labels=np.array([1, 0], dtype=np.int64), num_classes=2,
                 mean=(0.5,), std=(0.25,), class_names=["cat", "dog"], source_dataset="cifar10",
                 edit=_store_nul_strings)


def make_legacy(out_dir: Path, rng: np.random.Generator) -> None:
    """``legacy_1_0``: a valid version-1.0 file (no root digest, no row digests), to show readers keep
    reading 1.0 files. Written by the 1.1 writer and then turned back into 1.0."""
    images = rng.integers(0, 256, size=(4, 1, 4, 4), dtype=np.uint8)
    labels = np.array([0, 1, 1, 0], dtype=np.int64)
    path = out_dir / "legacy_1_0.dla.h5"
    with DLAWriter(path, num_classes=2, image_shape=(1, 4, 4), mean=(0.5,), std=(0.25,), converter=CONVERTER,
                   created=CREATED, overwrite=True, max_chunk_rows=MAX_CHUNK_ROWS) as w:
        w.append(images, labels)
    with h5py.File(path, "r+") as h5:
        del h5["row_sha256"]
        del h5.attrs["root_sha256"]
        objects = [h5]
        h5.visititems(lambda name, obj: objects.append(obj))
        for obj in objects:  # 1.0 writers stored strings variable-length
            for key in list(obj.attrs):
                if h5py.check_string_dtype(obj.attrs.get_id(key).dtype) is not None:
                    value = obj.attrs[key]
                    del obj.attrs[key]
                    obj.attrs[key] = (text(value) if np.ndim(value) == 0
                                      else np.array([text(v) for v in value], dtype=h5py.string_dtype()))
        h5.attrs["format_version"] = "1.0"
    assert verify(path) == []
    expected = {"file": path.name, "format_version": "1.0", "images_sha256": sha256_le(images),
                "labels": labels.tolist(), "valid": True, "content_sha256": integrity.content_digest(path)}
    (out_dir / "legacy_1_0.expected.json").write_text(json.dumps(expected, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------
# Relabel streams (spec 4.7, 5.1; since 1.2). Their own generator, so that the draws of the 1.1
# vectors above stay what they were.
STREAM_SEED = SEED + 12
STREAM_DATASET_ORDER = ("image", "box", "flip", "mix_partner", "mix_box", "mix_lambda", "probs", "topk_index",
                        "topk_prob", "logits")   # 4.7: the order of /stream/batch_sha256's ``datasets``
PER_BATCH = ("mix_box", "mix_lambda")           # one row per batch; the others one row per record


def stream_record_batches(rng: np.random.Generator, lengths: list[list[int]], m: int, height: int, width: int,
                          crop: tuple[int, int], mix: str) -> list[dict]:
    """The records of a stream, one ``append_stream`` keyword dict per batch (labels added later):
    ``lengths[e]`` are the batch lengths of epoch e. The first batch starts with the whole image and
    a 1 x 1 box at the bottom-right corner; cutmix's first box is empty and its second the whole crop;
    mixup's first two lambdas are 0 and 1 (the bounds 4.7 allows)."""
    batches = []
    for epoch, sizes in enumerate(lengths):
        for n in sizes:
            h = rng.integers(1, height + 1, size=n)
            w = rng.integers(1, width + 1, size=n)
            top = rng.integers(0, height - h + 1)
            left = rng.integers(0, width - w + 1)
            box = np.stack([top, left, h, w], axis=1)
            if not batches:
                box[0] = (0, 0, height, width)
                box[1] = (height - 1, width - 1, 1, 1)
            batch = {"epoch": epoch, "image": rng.integers(0, m, size=n), "box": box,
                     "flip": rng.integers(0, 2, size=n).astype(bool)}
            if mix != "none":
                batch["mix_partner"] = rng.permutation(n)
            if mix == "cutmix":
                bh, bw = int(rng.integers(0, crop[0] + 1)), int(rng.integers(0, crop[1] + 1))
                mbox = [int(rng.integers(0, crop[0] - bh + 1)), int(rng.integers(0, crop[1] - bw + 1)), bh, bw]
                if len(batches) == 0:
                    mbox = [2, 1, 0, 3]                     # empty: mixes nothing
                elif len(batches) == 1:
                    mbox = [0, 0, crop[0], crop[1]]         # the whole crop
                batch["mix_box"] = np.asarray(mbox, dtype=np.int64)
            if mix == "mixup":
                lam = [0.0, 1.0][len(batches)] if len(batches) < 2 else int(rng.integers(0, 257)) / 256
                batch["mix_lambda"] = float(np.float32(lam))
            batches.append(batch)
    return batches


def encode_stream_probs(codec: str, probs: np.ndarray, k: int | None = None, values: str | None = None) -> dict:
    """Section 6's encode column applied to (n, C) float64 probabilities, exactly (the rows come from
    :func:`make_probs`, so every evaluation gives the same codes)."""
    def quantise(p):
        return np.asarray([[math.floor(Fraction(float(v)) * 255 + Fraction(1, 2)) for v in row] for row in p],
                          dtype=np.uint8).reshape(p.shape)
    if codec == "uint8":
        return {"probs": quantise(probs)}
    if codec in ("float16", "float32"):
        return {"probs": probs.astype(codec)}
    index = np.asarray([select_topk(row, k) for row in probs.tolist()], dtype=np.uint16)
    top = np.take_along_axis(probs, index.astype(np.int64), axis=-1)
    return {"topk_index": index, "topk_prob": quantise(top) if values == "uint8" else top.astype(values)}


def exact_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(z / T) of stored logits, in double precision (math.fsum), rounded once to float32."""
    out = []
    for row in np.asarray(logits, dtype=np.float64).tolist():
        top = max(row)
        e = [math.exp((v - top) / temperature) for v in row]
        total = math.fsum(e)
        out.append([f32(v / total) for v in e])
    return np.asarray(out, dtype=np.float64)


#: digits of the decimal arithmetic of the tail's decode (exp, sums, quotients): far beyond float32
TAIL_DIGITS = 60


def _decimal(x: Fraction) -> Decimal:
    return Decimal(x.numerator) / Decimal(x.denominator)


def exact_tail_logits(mean, basis, coef, scale) -> list[list[Fraction]]:
    """zhat = mean + scale * (coef @ basis) of every record, exactly (the stored values are binary
    fractions)."""
    m = [Fraction(float(v)) for v in mean]
    b = [[Fraction(float(v)) for v in row] for row in basis]
    out = []
    for cf, sc in zip(coef.tolist(), scale.astype(np.float64).tolist()):
        out.append([m[j] + Fraction(sc) * sum((Fraction(int(ci)) * b[i][j] for i, ci in enumerate(cf)), Fraction(0))
                    for j in range(len(m))])
    return out


def decimal_softmax(z: list[Fraction], temperature: float) -> list[Decimal]:
    """softmax(z / T) in TAIL_DIGITS-digit decimal arithmetic."""
    top = max(z)
    u = [(_decimal(v - top) / _decimal(Fraction(temperature))).exp() for v in z]
    total = sum(u, Decimal(0))
    return [v / total for v in u]


#: e of spec 4.8 step 3, the rounding bound of one stored top-k value, by its dtype (exact decimals)
VALUE_ROUNDING = {np.dtype("u1"): Decimal(1) / Decimal(510), np.dtype("<f2"): Decimal(2) ** -12,
                  np.dtype("<f4"): Decimal(2) ** -25}


def tail_mass(v: list[Decimal], u: list[Decimal], idx: list[int], k: int, dtype: np.dtype) -> tuple[Decimal, Decimal]:
    """(m_hat, m) of spec 4.8 step 3 for one record: m_hat = sum_{j not in I} u_j / sum_j u_j, and m
    = max(0, min(rho + delta, max(rho - delta, m_hat))) with rho = 1 - sum_{j in I} v_j (``v`` the
    values of I) and delta = k e."""
    rest = sum((u[j] for j in range(len(u)) if j not in idx), Decimal(0))
    m_hat = rest / sum(u, Decimal(0))
    rho = 1 - sum(v, Decimal(0))
    delta = k * VALUE_ROUNDING[np.dtype(dtype)]
    return m_hat, max(Decimal(0), min(rho + delta, max(rho - delta, m_hat)))


def exact_tail_decode(index: np.ndarray, values: np.ndarray, zhat: list[list[Fraction]], temperature: float,
                      c: int) -> tuple[np.ndarray, list[int], list[int]]:
    """Section 6's top-k decode with the tail (spec 4.8): v at the classes I, the top-k entries
    stored above 0; every other class min(m * u_j / sum_{i not in I} u_i, v_min + e) (the first
    term 0 when that sum is 0) with u = exp((zhat - max zhat) / T), m the low-rank tail mass m_hat
    clamped to rho -+ k e (:func:`tail_mass`), v_min the smallest of the k stored values (zeros
    included) and e their rounding bound; the row divided by its sum; TAIL_DIGITS-digit decimals,
    rounded once to float32. Also returns the records whose m_hat the clamp changed and those
    where the cap lowered some tail entry."""
    out, clamped, capped = [], [], []
    k = index.shape[1]
    with localcontext() as ctx:
        ctx.prec = TAIL_DIGITS
        for r, (every, raw, z) in enumerate(zip(index.tolist(), values, zhat)):
            v = [Decimal(int(s)) / Decimal(255) if values.dtype == np.uint8 else _decimal(Fraction(float(s)))
                 for s in raw]
            cap = min(v) + VALUE_ROUNDING[np.dtype(values.dtype)]
            idx = [cls for cls, val in zip(every, v) if val > 0]
            v = [val for val in v if val > 0]
            top = max(z)
            u = [(_decimal(x - top) / _decimal(Fraction(temperature))).exp() for x in z]
            rest = sum((u[j] for j in range(c) if j not in idx), Decimal(0))
            m_hat, m = tail_mass(v, u, idx, k, values.dtype)
            if m != m_hat:
                clamped.append(r)
            q = [Decimal(0) if j in idx or rest == 0 else m * u[j] / rest for j in range(c)]
            if any(x > cap for x in q):
                capped.append(r)
            q = [min(x, cap) for x in q]
            for cls, val in zip(idx, v):
                q[cls] = val
            total = sum(q, Decimal(0))
            out.append([f32(float(x / total)) if total else f32(1 / c) for x in q])
    return np.asarray(out, dtype=np.float64), clamped, capped


def stream_tail_expected(h5: h5py.File, stored: dict, temperature: float, c: int, bounds) -> dict:
    """What a 1.3 reader must get from ``/stream/tail``: its rank, mean, basis, coef, scale, batch
    digests, the decoded labels with the tail, and (``decoded_without_tail``) section 6's even decode
    a reader that ignores the tail gets."""
    g = h5["stream/tail"]
    tail = {key: g[key][()] for key in ("mean", "basis", "coef", "scale")}
    listed = [text(v) for v in g["batch_sha256"].attrs["datasets"]]
    assert listed == ["/stream/tail/coef", "/stream/tail/scale"]
    digests = [[sha256_le(tail[name.rsplit("/", 1)[1]][lo:hi]) for name in listed] for lo, hi in bounds]
    assert digests == [[row.tobytes().hex() for row in b] for b in g["batch_sha256"][()]]
    zhat = exact_tail_logits(tail["mean"], tail["basis"], tail["coef"], tail["scale"])
    decoded, clamped, capped = exact_tail_decode(stored["topk_index"], stored["topk_prob"], zhat, temperature, c)
    assert clamped == list(TAIL_SET_BY_HAND), clamped
    assert set(TAIL_CLASSES_BY_HAND) <= set(capped), capped
    return {"rank": int(g.attrs["rank"]), "mean": exact_list(tail["mean"]), "basis": exact_list(tail["basis"]),
            "coef": tail["coef"].tolist(), "scale": exact_list(tail["scale"]),
            "dtypes": {key: value.dtype.str for key, value in tail.items()},
            "batch_sha256_datasets": listed, "batch_sha256": digests, "decoded": decoded.tolist(),
            "topk_set_by_hand": list(TAIL_SET_BY_HAND), "clamped": clamped,
            "topk_classes_set_by_hand": list(TAIL_CLASSES_BY_HAND), "capped": capped}


def stream_expected(path: Path, batches: list[dict], labels: np.ndarray, source) -> dict:
    """What a reader following 4.7, 5.1 and 6 must get from the stream of ``path``: the declaration,
    the records (partner as a record number, hard label ``labels[image]``), the decoded labels and
    every batch digest; read with h5py and cross-checked against the batches given to the writer."""
    with h5py.File(path, "r") as h5:
        g = h5["stream"]
        a = g.attrs
        kind, codec = text(a["kind"]), text(a["codec"])
        c = int(h5.attrs["num_classes"])
        stored = {key: g[key][()] for key in g if isinstance(g[key], h5py.Dataset)}
        listed = [text(v) for v in g["batch_sha256"].attrs["datasets"]]
        teacher = {key: (text(v) if isinstance(v, bytes) else np.asarray(v).tolist())
                   for key, v in g["teacher"].attrs.items()}
        declared = {key: (text(v) if isinstance(v, bytes) else np.asarray(v).tolist()) for key, v in a.items()}
        batch_start, epoch_start = stored["batch_start"].tolist(), stored["epoch_start"].tolist()
        q, nb = int(stored["image"].shape[0]), len(batch_start)
        bounds = [(start, batch_start[b + 1] if b + 1 < nb else q) for b, start in enumerate(batch_start)]
        tail = None
        if "tail" in g and tuple(int(v) for v in text(h5.attrs["format_version"]).split(".")) >= (1, 3):
            tail = stream_tail_expected(h5, stored, float(declared["temperature"]), c, bounds)
    epoch_of = [max(e for e, first in enumerate(epoch_start) if first <= b) for b in range(nb)]
    assert len(batches) == nb and [hi - lo for lo, hi in bounds] == [len(x["image"]) for x in batches]
    assert epoch_of == [x["epoch"] for x in batches]
    for name in ("image", "box", "flip", "mix_partner"):
        if name in stored:
            assert np.array_equal(stored[name], np.concatenate([np.asarray(x[name]) for x in batches])), name
    if "mix_box" in stored:
        assert np.array_equal(stored["mix_box"], np.stack([x["mix_box"] for x in batches]))
    if "mix_lambda" in stored:
        assert stored["mix_lambda"].tolist() == [x["mix_lambda"] for x in batches]
    assert listed == [f"/stream/{n}" for n in STREAM_DATASET_ORDER if n in stored]
    digests = []
    for b, (lo, hi) in enumerate(bounds):
        row = []
        for path_name in listed:
            data = stored[path_name.rsplit("/", 1)[1]]
            part = data[b:b + 1] if path_name.rsplit("/", 1)[1] in PER_BATCH else data[lo:hi]
            row.append(sha256_le(part))
        digests.append(row)
    if kind == "logits":
        decoded = exact_softmax(stored["logits"], float(declared["temperature"]))
    else:
        decoded = exact_decode(codec, {key: stored[key] for key in ("probs", "topk_index", "topk_prob")
                                       if key in stored}, c)
    partner = None
    if "mix_partner" in stored:
        partner = [lo + int(p) for lo, hi in bounds for p in stored["mix_partner"][lo:hi]]
    out = {
        "declared": declared,            # every /stream attribute, as stored
        "teacher": teacher,
        "num_records": q, "num_batches": nb, "num_epochs": len(epoch_start),
        "epoch_start": epoch_start, "batch_start": batch_start,
        "epoch_batches": [sum(1 for e in epoch_of if e == epoch) for epoch in range(len(epoch_start))],
        "dtypes": {key: value.dtype.str for key, value in stored.items()},
        "image": stored["image"].tolist(), "box": stored["box"].tolist(),
        "flip": stored["flip"].tolist(),
        "mix_partner": None if partner is None else stored["mix_partner"].tolist(),
        "partner": partner,
        "mix_box": stored["mix_box"].tolist() if "mix_box" in stored else None,
        "mix_lambda": exact_list(stored["mix_lambda"]) if "mix_lambda" in stored else None,
        "hard_label": [int(labels[i]) for i in stored["image"].tolist()],
        "stored_labels": {key: (value.tolist() if value.dtype.kind in "iu" else exact_list(value))
                          for key, value in stored.items() if key in ("probs", "topk_index", "topk_prob", "logits")},
        "decoded": decoded.tolist(),
        "source_probs": None if source is None else np.asarray(source).tolist(),
        "batch_sha256_datasets": listed,
        "batch_sha256": digests,
    }
    if tail is not None:            # spec 1.3: "decoded" is the decode with the tail
        out["tail"] = tail
        out["decoded_without_tail"] = out["decoded"]
        out["decoded"] = tail["decoded"]
        decoded = np.asarray(tail["decoded"])
    # the package's stream reader must agree
    with open_dla(path) as f:
        s = f.stream
        assert (s.num_records, s.num_batches, s.epochs) == (q, nb, len(epoch_start))
        assert (s.tail is None) == (tail is None)
        for b in range(nb):
            got = s.read_batch(b)
            lo, hi = bounds[b]
            assert got.epoch == epoch_of[b] and np.array_equal(got.image, stored["image"][lo:hi])
            q32 = s.probs(got)
            assert q32.dtype == np.float32 and np.max(np.abs(q32 - decoded[lo:hi])) <= 1e-6, (path.name, b)
    return out


#: (name, mix, kind/codec text, epochs' batch lengths, B, crop, mode, resize, T); the integer dtypes
#: of the records are the writer's choice (4.7: any integer)
STREAM_VECTORS = [
    ("stream_cutmix_topk_uint8", "cutmix", "topk:k=3,values=uint8", [[4, 4, 2], [4, 3]], 4, (6, 5), "epochs",
     "bilinear-antialias", 4.0),
    ("stream_mixup_logits_float16", "mixup", "logits:float16", [[3, 3], [3, 1], [2, 3]], 3, (4, 4), "epochs",
     "bilinear-antialias", 2.0),
    ("stream_pool_none_uint8", "none", "uint8", [[5, 5, 3]], 5, (7, 7), "pool", "pil-bilinear", 1.0),
]


def make_streams(out_dir: Path) -> None:
    """The stream vectors of 1.2: one small set (M = 6 images of 3 x 10 x 12 uint8, C = 5) and, per
    entry of :data:`STREAM_VECTORS`, a stream over it written by the package's writer."""
    from ladd_format.stream import StreamSpec, parse_stream_codec

    rng = np.random.default_rng(STREAM_SEED)
    m, c, height, width = 6, 5, 10, 12
    images = rng.integers(0, 256, size=(m, 3, height, width), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 0], dtype=np.int64)
    teacher = {"arch": "resnet18", "epochs": 90, "training_data": "imagenette train",
               "weights_sha256": hashlib.sha256(b"teacher weights").hexdigest(),
               "mean": list(MEAN), "std": list(STD)}
    for name, mix, codec_text, lengths, batch_size, crop, mode, resize, temperature in STREAM_VECTORS:
        codec = parse_stream_codec(codec_text)
        batches = stream_record_batches(rng, lengths, m, height, width, crop, mix)
        q = sum(len(x["image"]) for x in batches)
        source = None
        if codec.kind == "logits":
            logits = rng.normal(0.0, 3.0, size=(q, c)).astype(codec.logits_dtype)
            parts = {"logits": logits}
        else:
            source = make_probs(rng, 1, q, c, {})[0]
            source[0] = [0.25, 0.25, 0.25, 0.125, 0.125]     # a tie (k = 3 keeps classes 0, 1, 2)
            config = codec.codec
            parts = encode_stream_probs(config.name, source, getattr(config, "k", None),
                                        getattr(config, "values", None))
        start = 0
        for batch in batches:
            n = len(batch["image"])
            batch["stored"] = {key: value[start:start + n] for key, value in parts.items()}
            start += n
        spec = StreamSpec(epochs=len(lengths), batch_size=batch_size, crop_size=crop, mode=mode, resize=resize,
                          mix=mix, codec=codec, temperature=temperature, teacher=teacher,
                          sampler={"stored": True, "note": "spec vector"} if mode == "pool" else None,
                          augmentation={"scale": [0.08, 1.0], "flip": 0.5, "mix": mix} if mix != "none" else None)
        write_vector(out_dir, name, images=images, labels=labels, num_classes=c, mean=MEAN, std=STD,
                     class_names=["tench", "springer", "cassette", "chainsaw", "church"],
                     source_dataset="imagenette", distillation="sre2l", version=VERSION_1_2, stream=spec,
                     stream_batches=batches, stream_source=source)
    make_tail_stream(out_dir, rng, images, labels, teacher)


#: the 1.3 vector with a tail: C = 8 classes over the 6 images above, top-2 in uint8, a rank-3 tail
TAIL_VECTOR = "stream_cutmix_topk_tail"
TAIL_C, TAIL_K, TAIL_RANK, TAIL_T = 8, 2, 3, 2.0
TAIL_LENGTHS = [[4, 3], [4, 2, 4]]
#: the tail vector's records whose top-k values are set by hand, not encoded from their tail's logits,
#: so that spec 4.8 step 3 clamps their tail mass: 12 (values lowered: m_hat < rho - delta), 13
#: (raised: m_hat > rho + delta), 14 (codes summing to 255: rho = 0, m = delta) and 15 (codes summing
#: to 256, the most section 6 allows for k = 2: rho + delta = 0, no tail)
TAIL_SET_BY_HAND = (12, 13, 14, 15)
#: the tail vector's records whose top-k classes are set by hand: the first and the third of their
#: tail's logits, with those classes' encoded values, so that the second, outside the top k, would get
#: more than the smallest stored value allows, and spec 4.8 step 4 caps it (the clamp of step 3 does
#: not change them: their m_hat is within rho -+ delta)
TAIL_CLASSES_BY_HAND = (16,)
#: the least gap between the second and the third probability of a record of TAIL_CLASSES_BY_HAND,
#: so that the cap (the third's stored value + 1/510) lowers the second by far more than float32's rounding
TAIL_CAP_GAP = Decimal(4) / Decimal(255)


def tail_stored(rng: np.random.Generator, q: int) -> tuple[dict, dict]:
    """The tail (mean, basis, coef, scale: binary fractions, exact in every precision) and the top-k
    labels encoded from the softmax of the tail's own logits at TAIL_T (section 6's encode, in
    TAIL_DIGITS-digit decimals; every code is checked to be far from a rounding boundary). Record 0
    has scale 0 (its logits are the mean), record 1 a coefficient of -127 and 127, record 2 a second
    top-k value that rounds to 0 (uint8 code 0: outside I, it takes its share of the tail); the
    records of :data:`TAIL_SET_BY_HAND` keep their top-k classes with values set by hand
    (:func:`set_topk_by_hand`); the records of :data:`TAIL_CLASSES_BY_HAND` store the first and
    the third class of their tail's logits (their coefficients redrawn until the second exceeds the
    third by :data:`TAIL_CAP_GAP`)."""
    mean = (rng.integers(-96, 97, TAIL_C) / 32).astype(np.float32)
    basis = (rng.integers(-128, 129, (TAIL_RANK, TAIL_C)) / 128).astype(np.float32)
    coef = rng.integers(-127, 128, (q, TAIL_RANK)).astype(np.int8)
    scale = (rng.integers(1, 65, q) / 512).astype(np.float16)
    coef[0], scale[0] = 0, 0
    coef[1, :2] = (-127, 127)
    scale[2] = 0.125
    while True:                      # record 2: a peaked row whose second value rounds to 0
        z = exact_tail_logits(mean, basis, coef[2:3], scale[2:3])[0]
        with localcontext() as ctx:
            ctx.prec = TAIL_DIGITS
            second = sorted(decimal_softmax(z, TAIL_T), reverse=True)[1]
        if second * 255 + Decimal("0.5") < Decimal("0.99"):
            break
        coef[2] = rng.integers(-127, 128, TAIL_RANK)
    for r in TAIL_CLASSES_BY_HAND:   # a second probability well above the third (the cap binds)
        while True:
            z = exact_tail_logits(mean, basis, coef[r:r + 1], scale[r:r + 1])[0]
            with localcontext() as ctx:
                ctx.prec = TAIL_DIGITS
                p = sorted(decimal_softmax(z, TAIL_T), reverse=True)
            if p[1] - p[2] > TAIL_CAP_GAP:
                break
            coef[r] = rng.integers(-127, 128, TAIL_RANK)
    zhat = exact_tail_logits(mean, basis, coef, scale)
    index = np.zeros((q, TAIL_K), np.uint16)
    values = np.zeros((q, TAIL_K), np.uint8)
    with localcontext() as ctx:
        ctx.prec = TAIL_DIGITS
        for r, z in enumerate(zhat):
            p = decimal_softmax(z, TAIL_T)
            order = sorted(range(TAIL_C), key=lambda cls: (-p[cls], cls))
            top = [order[0], order[2]] if r in TAIL_CLASSES_BY_HAND else order[:TAIL_K]
            index[r] = top
            for i, cls in enumerate(top):
                code = p[cls] * 255 + Decimal("0.5")
                frac = code - int(code)
                assert min(frac, 1 - frac) > Decimal("1e-9"), (r, cls)       # unambiguous under any evaluation
                values[r, i] = int(code)
    set_topk_by_hand(values)
    return ({"topk_index": index, "topk_prob": values, "tail/coef": coef, "tail/scale": scale},
            {"mean": mean, "basis": basis})


def set_topk_by_hand(values: np.ndarray) -> None:
    """The uint8 codes (k = 2) of the records of :data:`TAIL_SET_BY_HAND` (low, high, full, over), in
    place, from their encoded codes s: low keeps 70% of each (rounded up), high adds half of what the
    two leave below 255 (at least 4 codes) to the first, full sums to 255 and over to 256 (the first
    code takes the difference). The codes stay descending and within section 6's bounds
    (255 k / C - k / 2 <= sum <= 255 + k / 2); that the clamp changes each of these records, and no
    other, is checked when the expected labels are computed."""
    low, high, full, over = TAIL_SET_BY_HAND
    s = values.astype(np.int64)
    s[low] = -(-s[low] * 7 // 10)
    s[high, 0] += max(4, (255 - int(s[high].sum())) // 2)
    s[full, 0] = 255 - s[full, 1]
    s[over, 0] = 256 - s[over, 1]
    for r in TAIL_SET_BY_HAND:
        assert 255 >= s[r, 0] >= s[r, 1] > 0, (r, s[r])
        assert 255 * TAIL_K / TAIL_C - TAIL_K / 2 <= s[r].sum() <= 255 + TAIL_K / 2, (r, s[r])
    values[...] = s.astype(np.uint8)


def make_tail_stream(out_dir: Path, rng: np.random.Generator, images: np.ndarray, labels: np.ndarray,
                     teacher: dict) -> None:
    """The 1.3 stream vector with a low-rank tail (:data:`TAIL_VECTOR`), written by the package's writer."""
    from ladd_format.stream import StreamSpec, TailBasis, parse_stream_codec

    m, _, height, width = images.shape
    crop = (6, 6)
    batches = stream_record_batches(rng, TAIL_LENGTHS, m, height, width, crop, "cutmix")
    q = sum(len(x["image"]) for x in batches)
    parts, basis = tail_stored(rng, q)
    start = 0
    for batch in batches:
        n = len(batch["image"])
        batch["stored"] = {key: value[start:start + n] for key, value in parts.items()}
        start += n
    codec = parse_stream_codec(f"topk:k={TAIL_K},values=uint8,tail={TAIL_RANK}")
    spec = StreamSpec(epochs=len(TAIL_LENGTHS), batch_size=4, crop_size=crop, mix="cutmix", codec=codec,
                      temperature=TAIL_T, teacher=teacher, tail=TailBasis(basis["mean"], basis["basis"]),
                      augmentation={"scale": [0.08, 1.0], "flip": 0.5, "mix": "cutmix"})
    write_vector(out_dir, TAIL_VECTOR, images=images, labels=labels, num_classes=TAIL_C, mean=MEAN, std=STD,
                 class_names=["tench", "springer", "cassette", "chainsaw", "church", "horn", "truck", "ball"],
                 source_dataset="imagenette", distillation="sre2l", version=None, stream=spec,
                 stream_batches=batches)


# Invalid stream vectors (rules 16 and 17): a small valid stream, then one defect; every digest the
# defect does not concern is recomputed (``_reseal_stream``), so only the rule meant breaks.
def _base_stream_invalid(path: Path) -> None:
    """3 images of 1x4x4, C = 3; a cutmix stream of 2 epochs (batches of 3, 2 | 3 records), B = 3,
    crop 4 x 4, codec uint8."""
    from ladd_format.stream import StreamSpec, parse_stream_codec

    images = np.random.default_rng(SEED).integers(0, 256, size=(3, 1, 4, 4), dtype=np.uint8)
    spec = StreamSpec(epochs=2, batch_size=3, crop_size=(4, 4), mix="cutmix", codec=parse_stream_codec("uint8"),
                      teacher={"arch": "vector"})
    probs = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 127, 0], [85, 85, 85]], np.uint8)
    batches = [
        (0, [0, 1, 2], [[0, 0, 4, 4], [1, 1, 2, 3], [0, 2, 4, 2]], [0, 1, 0], [2, 0, 1], [1, 1, 2, 2], [0, 1, 2]),
        (0, [2, 0], [[3, 3, 1, 1], [0, 0, 2, 2]], [1, 1], [1, 0], [0, 0, 0, 0], [3, 4]),
        (1, [1, 1, 0], [[0, 0, 1, 4], [2, 0, 2, 4], [1, 1, 3, 3]], [0, 0, 1], [0, 2, 1], [0, 0, 4, 4], [4, 3, 0]),
    ]
    with DLAWriter(path, num_classes=3, image_shape=(1, 4, 4), mean=(0.5,), std=(0.25,), converter=CONVERTER,
                   created=CREATED, overwrite=True, max_chunk_rows=2, stream=spec) as w:
        w.append(images, np.array([0, 1, 2], dtype=np.int64))
        for epoch, image, box, flip, partner, mbox, rows in batches:
            w.append_stream(epoch, np.array(image), np.array(box), np.array(flip, bool), mix_partner=np.array(partner),
                            mix_box=np.array(mbox), stored={"probs": probs[rows]})
    with h5py.File(path, "r+") as h5:
        pin_version(h5, VERSION_1_2)
    assert verify(path) == []


def _reseal_stream(h5, digests: bool = True) -> None:
    """Recompute every /stream dataset's sha256 and (``digests``) the batch digests from the data as
    it now is (4.7's definition, with the stored batch_start), then the root digest."""
    g = h5["stream"]
    for key in g:
        if isinstance(g[key], h5py.Dataset) and key != "batch_sha256":
            g[key].attrs["sha256"] = sha256_le(g[key][()])
    if digests:
        table = g["batch_sha256"]
        starts = g["batch_start"][()].tolist()
        q = g["image"].shape[0]
        values = table[()]
        for b, lo in enumerate(starts):
            hi = starts[b + 1] if b + 1 < len(starts) else q
            for d, name in enumerate(text(v) for v in table.attrs["datasets"]):
                data = h5[name][()]
                part = data[b:b + 1] if name.rsplit("/", 1)[1] in PER_BATCH else data[lo:hi]
                values[b, d] = np.frombuffer(bytes.fromhex(sha256_le(part)), np.uint8)
        table[...] = values
    g["batch_sha256"].attrs["sha256"] = sha256_le(g["batch_sha256"][()])
    _reseal(h5)


def _set_stream_value(name: str, index, value, digests: bool = True):
    def edit(h5):
        data = h5["stream"][name][()]
        data[index] = value
        h5["stream"][name][...] = data
        _reseal_stream(h5, digests)
    return edit


def _stream_attr(name: str, value=None):
    def edit(h5):
        if value is None:
            del h5["stream"].attrs[name]
        else:
            h5["stream"].attrs[name] = value
        _reseal(h5)
    return edit


def _swap_digest_datasets(h5) -> None:
    table = h5["stream"]["batch_sha256"]
    listed = [text(v) for v in table.attrs["datasets"]]
    listed[0], listed[1] = listed[1], listed[0]
    integrity.set_string(table.attrs, "datasets", np.array(listed, dtype=object))
    _reseal(h5)


INVALID_STREAM = [
    ("16-stream-box-outside-image", 16, "/stream/box record 1 is [1, 1, 4, 3]: top + height = 5 > H = 4",
     _set_stream_value("box", (1, 2), 4)),
    ("16-stream-image-index-ge-m", 16, "/stream/image record 4 is 3, with M = 3 images",
     _set_stream_value("image", 4, 3)),
    ("16-stream-batch-start-not-increasing", 16, "/stream/batch_start is [0, 3, 3] (batch 1 empty, batch 2 of "
     "5 records > B = 3); batch digests recomputed for those starts", _set_stream_value("batch_start", 2, 3)),
    ("16-stream-batch-longer-than-batch-size", 16, "/stream batch_size 2, but batches 0 and 2 hold 3 records",
     _stream_attr("batch_size", np.int64(2))),
    ("16-stream-mix-partner-outside-batch", 16, "/stream/mix_partner record 3 is 2, batch 1 holds 2 records",
     _set_stream_value("mix_partner", 3, 2)),
    ("16-stream-missing-temperature", 16, "/stream has no temperature attribute (required)",
     _stream_attr("temperature")),
    ("17-stream-batch-digest-differs", 17, "/stream/flip record 0 changed 0 -> 1, its sha256 updated, the batch "
     "digest not", _set_stream_value("flip", 0, 1, digests=False)),
    ("17-stream-digests-list-wrong-datasets", 17, "/stream/batch_sha256 datasets lists /stream/box before "
     "/stream/image", _swap_digest_datasets),
]


# Invalid tail vectors (rule 18, since 1.3): a small valid stream with a tail, then one defect; every
# digest the defect does not concern is recomputed (``_reseal_tail``), so only rule 18 breaks.
def _base_tail_invalid(path: Path) -> None:
    """3 images of 1x4x4, C = 4; a cutmix stream of 2 epochs (batches of 3, 2 | 3 records), B = 3,
    crop 4 x 4, codec topk:k=1,values=uint8 with a rank-2 tail (format 1.3)."""
    from ladd_format.stream import StreamSpec, TailBasis, parse_stream_codec

    images = np.random.default_rng(SEED).integers(0, 256, size=(3, 1, 4, 4), dtype=np.uint8)
    tail = TailBasis(np.array([0.5, -0.25, 0.0, 1.0], np.float32),
                     np.array([[0.5, -0.5, 0.5, -0.5], [0.0, 0.75, -0.25, 0.125]], np.float32))
    spec = StreamSpec(epochs=2, batch_size=3, crop_size=(4, 4), mix="cutmix",
                      codec=parse_stream_codec("topk:k=1,values=uint8,tail=2"), teacher={"arch": "vector"}, tail=tail)
    index = np.array([[0], [1], [2], [3], [0], [1], [2], [3]], np.uint16)
    values = np.array([[200], [128], [255], [64], [100], [90], [180], [77]], np.uint8)
    coef = np.array([[1, -2], [127, 0], [0, 0], [-127, 5], [3, 3], [-1, 64], [10, -10], [0, 1]], np.int8)
    scale = np.array([0.5, 0.25, 0.0, 0.125, 1.0, 0.5, 0.0625, 2.0], np.float16)
    batches = [
        (0, [0, 1, 2], [[0, 0, 4, 4], [1, 1, 2, 3], [0, 2, 4, 2]], [0, 1, 0], [2, 0, 1], [1, 1, 2, 2], slice(0, 3)),
        (0, [2, 0], [[3, 3, 1, 1], [0, 0, 2, 2]], [1, 1], [1, 0], [0, 0, 0, 0], slice(3, 5)),
        (1, [1, 1, 0], [[0, 0, 1, 4], [2, 0, 2, 4], [1, 1, 3, 3]], [0, 0, 1], [0, 2, 1], [0, 0, 4, 4], slice(5, 8)),
    ]
    with DLAWriter(path, num_classes=4, image_shape=(1, 4, 4), mean=(0.5,), std=(0.25,), converter=CONVERTER,
                   created=CREATED, overwrite=True, max_chunk_rows=2, stream=spec) as w:
        w.append(images, np.array([0, 1, 2], dtype=np.int64))
        for epoch, image, box, flip, partner, mbox, rows in batches:
            w.append_stream(epoch, np.array(image), np.array(box), np.array(flip, bool), mix_partner=np.array(partner),
                            mix_box=np.array(mbox), stored={"topk_index": index[rows], "topk_prob": values[rows],
                                                            "tail/coef": coef[rows], "tail/scale": scale[rows]})
    assert verify(path) == []


def _reseal_tail(h5, digests: bool = True) -> None:
    """Recompute every /stream/tail dataset's sha256 and (``digests``) its batch digests from the data
    as it now is, then the root digest."""
    g = h5["stream/tail"]
    for key in g:
        if isinstance(g[key], h5py.Dataset) and key != "batch_sha256":
            g[key].attrs["sha256"] = sha256_le(g[key][()])
    if digests:
        table = g["batch_sha256"]
        starts = h5["stream/batch_start"][()].tolist() + [h5["stream/image"].shape[0]]
        values = table[()]
        for b in range(len(starts) - 1):
            for d, name in enumerate(("coef", "scale")):
                values[b, d] = np.frombuffer(bytes.fromhex(sha256_le(g[name][starts[b]:starts[b + 1]])), np.uint8)
        table[...] = values
    g["batch_sha256"].attrs["sha256"] = sha256_le(g["batch_sha256"][()])
    _reseal(h5)


def _set_tail_value(name: str, index, value, digests: bool = True):
    def edit(h5):
        data = h5["stream/tail"][name][()]
        data[index] = value
        h5["stream/tail"][name][...] = data
        _reseal_tail(h5, digests)
    return edit


def _tail_rank(value):
    def edit(h5):
        h5["stream/tail"].attrs["rank"] = value
        _reseal(h5)
    return edit


INVALID_TAIL = [
    ("18-stream-tail-scale-negative", 18, "/stream/tail/scale record 1 is -0.25 (must be finite and >= 0); its "
     "sha256 and batch digest recomputed", _set_tail_value("scale", 1, -0.25)),
    ("18-stream-tail-basis-not-finite", 18, "/stream/tail/basis[1, 2] is NaN; its sha256 recomputed",
     _set_tail_value("basis", (1, 2), np.nan)),
    ("18-stream-tail-rank-above-c", 18, "/stream/tail rank 5, more than C = 4 classes",
     _tail_rank(np.int64(5))),
    ("18-stream-tail-batch-digest-differs", 18, "/stream/tail/coef record 3 changed -127 -> -126, its sha256 "
     "updated, the tail's batch digest not", _set_tail_value("coef", (3, 0), -126, digests=False)),
]


# Invalid vectors: each breaks exactly one rule of spec section 8 (the file name starts with it).
def _base_invalid(path: Path, rng: np.random.Generator, extras: bool = False) -> None:
    """3 images of 1x4x4, C = 2; with ``extras`` also probability soft labels and N = 2 float32
    dense labels (for the vectors that break a rule of those)."""
    images = rng.integers(0, 256, size=(3, 1, 4, 4), dtype=np.uint8)
    kwargs = {}
    if extras:
        kwargs = {"soft_kind": "probs",
                  "dense": DenseSpec(n=2, ratio=0.5, codec=make_codec("float32"), labeler={"arch": "vector"})}
    with DLAWriter(path, num_classes=2, image_shape=(1, 4, 4), mean=(0.5,), std=(0.25,), converter=CONVERTER,
                   created=CREATED, overwrite=True, max_chunk_rows=2, class_names=["a", "b"], **kwargs) as w:
        if extras:
            soft = np.array([[0.75, 0.25], [0.5, 0.5], [0.125, 0.875]], np.float32)
            dense = np.tile(np.array([0.25, 0.75], np.float32), (3, 4, 1))
            w.append(images, np.array([0, 1, 0], dtype=np.int64), dense=dense, soft=soft)
        else:
            w.append(images, np.array([0, 1, 0], dtype=np.int64))
    with h5py.File(path, "r+") as h5:
        pin_version(h5, VERSION_1_1)


def _reseal(h5):
    integrity.reseal(h5, rows=False)


INVALID = [
    # (file stem, rule, what it breaks, edit of the open file; the edit reseals what it must keep valid)
    ("04-images-chunk-shape", 4, "/images chunked 2 images per chunk instead of 1 (values and digests unchanged)",
     lambda h5: _rechunk_images(h5)),
    ("06-soft-labels-shape", 6, "/soft_labels has C + 1 = 3 columns (rows still sum to 1; digests resealed)",
     lambda h5: _wide_soft_labels(h5)),
    ("08-temperature-zero", 8, "/dense temperature 0 (must be > 0)",
     lambda h5: (h5["dense"].attrs.__setitem__("temperature", 0.0), _reseal(h5))),
    ("03-class-names-not-strings", 3, "class_names stored as integers",
     lambda h5: (h5.attrs.__setitem__("class_names", np.array([0, 1], np.int64)), _reseal(h5))),
    ("10-labels-big-endian", 10, "/labels stored big-endian (values and digests unchanged)",
     lambda h5: _big_endian_labels(h5)),
    ("12-attribute-changed", 12, "/normalization mean 0.5 -> 0.75 after writing (root digest left as it was)",
     lambda h5: h5["normalization"].attrs.__setitem__("mean", np.array([0.75]))),
    ("13-row-changed", 13, "label of image 2 changed 0 -> 1, the dataset's sha256 updated, row digest not",
     lambda h5: _change_label(h5)),
    ("14-soft-link", 14, "/extra is a soft link to /labels", lambda h5: (
        h5.__setitem__("extra", h5py.SoftLink("/labels")), _reseal(h5))),
    ("14-external-link", 14, "/extra is an external link to outside.h5 (which does not exist)", lambda h5: (
        h5.__setitem__("extra", h5py.ExternalLink("outside.h5", "/x")), _reseal(h5))),
    ("14-external-storage", 14, "/extra keeps its data in outside.bin (external raw storage)", lambda h5: (
        h5.create_dataset("extra", shape=(16,), dtype=np.uint8, external=[("outside.bin", 0, 16)]),
        _reseal(h5))),
    ("15-declared-beyond-file", 15, "/extra declares 10^9 int64 rows that the file does not hold",
     lambda h5: (_extra(h5, (10**9,), (4096,), 0), _reseal(h5))),
    ("15-chunk-not-written", 15, "/extra needs 8 chunks, 1 is written",
     lambda h5: (_extra(h5, (64,), (8,), 8), _reseal(h5))),
]


def _extra(h5, shape, chunks, written):
    ds = h5.create_dataset("extra", shape=shape, chunks=chunks, dtype=np.int64, fletcher32=True)
    if written:
        ds[:written] = 7
    ds.attrs["sha256"] = sha256_le(ds[()]) if int(np.prod(shape)) < 10**6 else "0" * 64


def _rechunk_images(h5):
    data, attrs = h5["images"][()], dict(h5["images"].attrs)
    del h5["images"]
    ds = h5.create_dataset("images", data=data, chunks=(2, 1, 4, 4), fletcher32=True)
    ds.attrs.update(attrs)
    _reseal(h5)


def _wide_soft_labels(h5):
    attrs = dict(h5["soft_labels"].attrs)
    data = np.array([[0.5, 0.25, 0.25], [0.5, 0.5, 0.0], [0.125, 0.375, 0.5]], np.float32)
    del h5["soft_labels"]
    ds = h5.create_dataset("soft_labels", data=data, chunks=(2, 3), fletcher32=True)
    ds.attrs.update(attrs)
    ds.attrs["sha256"] = sha256_le(data)
    integrity.reseal(h5, rows=True)


def _big_endian_labels(h5):
    data, attrs = h5["labels"][()], dict(h5["labels"].attrs)
    del h5["labels"]
    ds = h5.create_dataset("labels", data=data.astype(">i8"), chunks=(2,), fletcher32=True)
    ds.attrs.update(attrs)
    _reseal(h5)


def _change_label(h5):
    h5["labels"][2] = 1
    h5["labels"].attrs["sha256"] = sha256_le(h5["labels"][()])
    _reseal(h5)


def make_invalid(out_dir: Path, rng: np.random.Generator) -> None:
    folder = out_dir / "invalid"
    folder.mkdir(exist_ok=True)
    manifest = []
    for stem, rule, what, edit in INVALID:
        path = folder / f"{stem}.dla.h5"
        _base_invalid(path, np.random.default_rng(SEED), extras=rule in (6, 8))
        with h5py.File(path, "r+") as h5:
            edit(h5)
        rules = sorted({p.rule_number for p in verify(path)})
        assert rules == [rule], (stem, rules, [str(p) for p in verify(path)])
        manifest.append({"file": path.name, "rule": rule, "breaks": what})
    for stem, rule, what, edit in INVALID_STREAM + INVALID_TAIL:
        path = folder / f"{stem}.dla.h5"
        (_base_tail_invalid if rule == 18 else _base_stream_invalid)(path)
        with h5py.File(path, "r+") as h5:
            edit(h5)
        rules = sorted({p.rule_number for p in verify(path)})
        assert rules == [rule], (stem, rules, [str(p) for p in verify(path)])
        manifest.append({"file": path.name, "rule": rule, "breaks": what})
    (folder / "expected.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def make_geometry(out_dir: Path) -> None:
    cases = []
    for height, width, n, ratio, note in GEOMETRY_CASES:
        cases.append({"height": height, "width": width, "n": n, "ratio": ratio, "note": note,
                      "boxes": boxes(height, width, n, ratio).tolist()})
    text = json.dumps(cases, separators=(",", ":"))
    (out_dir / "geometry.json").write_text(text.replace('},{', '},\n{') + "\n")


def _file_version(path: Path) -> str | None:
    with h5py.File(path, "r") as h5:
        return text(h5.attrs["format_version"]) if "format_version" in h5.attrs else None


def install(staging: Path, out: Path) -> list[str]:
    """Copy what :func:`generate` wrote into ``out``. A ``.dla.h5`` of an earlier format version than
    the writer's that ``out`` already holds is left as it is (spec section 9: the vectors of earlier
    versions stay as they are; the HDF5 library may lay the same contents out in other bytes), as long
    as its expected file is unchanged; returns the files kept."""
    from ladd_format.spec import FORMAT_VERSION

    kept = []
    for src in sorted(p for p in staging.rglob("*") if p.is_file()):
        rel = src.relative_to(staging)
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and src.name.endswith(".dla.h5") and _file_version(src) not in (None, FORMAT_VERSION) \
                and _file_version(dest) == _file_version(src):
            name = src.name.replace(".dla.h5", ".expected.json")   # the invalid vectors have none
            new, old = src.with_name(name), dest.with_name(name)
            same = (not new.exists() and not old.exists()) or (
                new.exists() and old.exists() and new.read_bytes() == old.read_bytes())
            if same:
                kept.append(str(rel))
                continue
        shutil.copyfile(src, dest)
    return kept


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ladd-vectors-") as tmp:
        generate(Path(tmp))
        kept = install(Path(tmp), args.out)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file() and p.suffix in (".h5", ".json"))
    print(f"wrote {len(list(args.out.glob('*.dla.h5')))} vectors and geometry.json to {args.out} ({total} bytes; "
          f"{len(kept)} files of earlier versions kept as they were)")


def generate(out: Path) -> None:
    """Write every vector, expected file and geometry.json into the empty folder ``out``."""
    rng = np.random.default_rng(SEED)

    make_geometry(out)

    # -- one tiny D_LA per codec: M=5 images of 3x8x8 uint8, C=5, N=3, R=0.625 ----------------
    m, c, n, ratio = 5, 5, 3, 0.625
    images = rng.integers(0, 256, size=(m, 3, 8, 8), dtype=np.uint8)
    images[0, 0, 0, :2] = (0, 255)  # both ends of the pixel range
    labels = rng.permutation(c).astype(np.int64)  # one image per class: ipc = 1
    probs = make_probs(rng, m, n * n, c, TIE_ROWS)
    names = ["tench", "springer", "cassette", "chainsaw", "church"]
    common = dict(images=images, labels=labels, num_classes=c, mean=MEAN, std=STD, n=n, ratio=ratio,
                  probs=probs, tie_rows=TIE_ROWS, class_names=names, source_dataset="imagenette",
                  distillation="random-real", ipc=1)
    labeler = {"arch": "resnet18", "epochs": 50, "training_data": "imagenette train"}
    write_vector(out, "float32", dense_codec=make_codec("float32"), labeler=labeler, **common)
    write_vector(out, "float16", dense_codec=make_codec("float16"), labeler=labeler, **common)
    write_vector(out, "uint8", dense_codec=make_codec("uint8"), labeler=labeler, **common)
    write_vector(out, "topk_float16", dense_codec=make_codec("topk", k=3, values="float16"),
                 temperature=4.0, **common)
    write_vector(out, "topk_uint8", dense_codec=make_codec("topk", k=2, values="uint8"),
                 temperature=4.0, **common)

    # -- plain distilled set D: no /dense, global soft labels as logits, K = 1 -----------------
    m2, c2 = 10, 5
    gray = rng.integers(0, 256, size=(m2, 1, 8, 8), dtype=np.uint8)
    labels2 = np.repeat(np.arange(c2), m2 // c2).astype(np.int64)
    logits = rng.normal(0.0, 3.0, size=(m2, c2)).astype(np.float32)
    write_vector(out, "plain", images=gray, labels=labels2, num_classes=c2, mean=(0.5,), std=(0.25,),
                 soft=logits, soft_kind="logits", class_names=["avión", "car", "église", "猫", "deer"],
                 source_dataset="cifar10", distillation="mtt", ipc=2)

    # -- float32 images on the 0..1 scale (values outside [0, 1] allowed), non-square ----------
    m3, c3 = 3, 4
    fimages = rng.normal(0.5, 0.35, size=(m3, 3, 8, 12)).astype(np.float32)
    labels3 = np.array([2, 0, 3], dtype=np.int64)
    probs3 = make_probs(rng, m3, 9, c3, {})
    soft3 = make_probs(rng, 1, m3, c3, {})[0]
    write_vector(out, "float_images", images=fimages, labels=labels3, num_classes=c3, mean=MEAN, std=STD,
                 space="pixel01", dense_codec=make_codec("float32"), n=3, ratio=0.625, probs=probs3,
                 labeler={"arch": "convnet", "mean": list(MEAN), "std": list(STD)},
                 soft=soft3, soft_kind="probs", soft_dtype="float16", distillation="datm")

    make_nul_strings(out)
    make_legacy(out, rng)
    make_streams(out)
    make_invalid(out, rng)


if __name__ == "__main__":
    main()
