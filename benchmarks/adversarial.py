"""Hostile and damaged files: seeded byte flips over every region of small D_LA files, crafted hostile
files, SIGKILLed writers and hostile pickles, each classified by what every reader did.

Usage::

    .venv/bin/python benchmarks/adversarial.py            # >= 5,000 flips + every crafted case, kills,
                                                          # pickles (~5-10 minutes on 2 cores); saves
                                                          # results/adversarial.json and writes the
                                                          # section of RESULTS/adversarial.md
    .venv/bin/python benchmarks/adversarial.py --quick    # a few hundred cases; prints only
    .venv/bin/python benchmarks/adversarial.py --render-only
    .venv/bin/python benchmarks/adversarial.py --replay float32 0x1a2b ff00   # one damaged file, every
                                                          # reader's outcome printed (BASE OFFSET HEXBYTES,
                                                          # or BASE truncate LENGTH; --replay-crafted NAME)

What is measured. Seven small valid files (``make_base_files``: every codec, soft labels with float
images, a plain set; 6 images of 3x16x16, C = 5, chunks of 2 rows) are damaged one way at a time:
single-bit flips, byte replacements, bursts of 4-64 random bytes, 0x0000 <-> 0xFFFF swaps of 16-bit
words inside chunk data (fletcher32 cannot see them), flips of attribute values and truncations,
spread over the regions of ``region_map`` (superblock, object headers, chunk index, group heaps,
global heap, attribute values, chunk data of each dataset, the rest). For each damaged file every
reader runs in a worker process (``--worker``; batched, with a 10 s alarm per call, an address-space
limit of 2 GiB above the worker's own, peak RSS per case from /proc VmHWM, and a watchdog that kills
and restarts the worker on a hang or crash): ``open_dla`` -> ``info()``, ``images()``, ``labels()``,
``dense()``, ``soft_labels()`` whole and per item, for a file with a relabel stream ``stream.info()``
and its first 16 batches (``read_batch``), ``DLADataset[i]`` per item, ``export(npz)`` and ``verify``.
The outcome of each call is compared with the undamaged file's (the oracle):

- unchanged: every reader returns exactly what it returned for the original (verify may say anything);
- refused: verify reports problems and every reader whose result differs raised a ``LaddError``;
- silent: a reader returned different data without raising, or verify said OK while a reader's
  outcome differed;
- traceback: an exception that is not a ``LaddError`` (reader or verify); crash: the worker died;
- hang: a call ran longer than 10 s; memory: peak RSS above 1 GiB (the worker holds torch, about
  0.5 GiB) or a MemoryError;
- multiline: a ``LaddError`` whose message spans lines (the CLI promises one line), or a CLI
  command that failed with other than one line on stderr;
- outside_read (crafted files): a reader returned bytes of a file outside the D_LA;
- cli_exit0 (crafted files): verify refuses the file but ``ladd info``, ``size`` or ``export`` exits 0
  on it (they may not read the defective part; counted as not passing, as the issue asks).

Crafted hostile files (``CRAFTED``, one function each) are checked the same way, except that a reader
may return data as long as verify refuses the file, no output holds bytes of a file outside it (a
marker), and every CLI command (``verify``, ``info``, ``size``, ``export``) exits non-zero with one
line on stderr. Crafted files get their digests recomputed (``restamp``: per-dataset ``sha256``,
``/row_sha256``, ``/stream/batch_sha256``, ``root_sha256``, stored as fixed-length strings as the
writer stores them) as a hostile writer would, so only the defect itself remains. The ``stream_*``
cases damage a small file with a cutmix stream (``write_stream_base``): declared sizes beyond spec 2.4
(10^9 epochs, a batch of 2^20 records, crop_size 0 or 2^20, topk k > C) and values beyond 4.7
(batch_start past the records, an image index >= M, a box outside the image). The ``stream_tail_*``
cases damage the same stream with a rank-2 low-rank tail (spec 1.3, 4.8, rule 18): coef of the wrong
shape, a NaN basis, a negative scale, rank 10^6 with a basis declared that large, a batch off its tail
digest, a tail on a stream of kind logits.
Kills: ``ladd convert npz``, ``ladd export`` and ``ladd augment`` are SIGKILLed at random points; the
destination must then be absent, the old file (byte-identical) or complete and valid. Pickles: .pt
files whose unpickling would run ``os.system`` go to every converter that reads .pt files (and an
object-array .npz, and a pickle as labeler checkpoint); the marker file must never appear and the
command must refuse in one line.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import queue
import random
import resource
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

NAME = KEY = "adversarial"
TITLE = "## Hostile and damaged files"
PY = sys.executable
LADD = str(Path(PY).with_name("ladd"))

HANG_S = 10.0                   # a call longer than this is a hang
RSS_LIMIT = 1 << 30             # peak RSS above this is a memory failure
AS_EXTRA = 2 << 30              # address space a worker may add to what it holds after its imports
WATCHDOG_S = 90.0               # a worker silent this long on one case is killed (the case is a hang)
MARKER = b"LADD-SECRET-OUTSIDE-MARKER-5e1f0c"

M, C, SIDE = 6, 5, 16
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CREATED = "2026-01-01T00:00:00Z"

#: name -> (codec text or None, N, soft kind, image dtype)
BASES = {
    "float32": ("float32", 2, None, "uint8"),
    "float16": ("float16", 3, None, "uint8"),
    "uint8": ("uint8", 2, None, "uint8"),
    "topk_f16": ("topk:k=3,values=float16", 3, None, "uint8"),
    "topk_u8": ("topk:k=3,values=uint8", 2, None, "uint8"),
    "soft_float": ("float16", 2, "probs", "float32"),
    "plain": (None, 0, None, "uint8"),
}

CLASSES = ("unchanged", "refused", "silent", "traceback", "crash", "hang", "memory", "multiline", "outside_read",
           "cli_exit0")
PASSING = ("unchanged", "refused")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# =============================================================================== base files
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def base_arrays(seed: int, n: int, float_images: bool):
    rng = np.random.default_rng(seed)
    images = np.clip(rng.normal(128, 90, size=(M, 3, SIDE, SIDE)), 0, 255).astype(np.uint8)
    images[:, :, :2, :] = 0          # flat rows: 16-bit words 0x0000 and 0xFFFF in the chunk data
    images[:, :, -2:, :] = 255
    labels = np.arange(M) % C
    dense = _softmax(rng.normal(size=(M, n * n, C)) * 3.0) if n else None
    soft = _softmax(rng.normal(size=(M, C)) * 2.0).astype(np.float32)
    if float_images:
        images = (images.astype(np.float32) / 255.0)
    return images, labels, dense, soft


def write_base(path: Path, name: str, seed: int = 0) -> Path:
    from ladd_format import DenseSpec, DLAWriter
    from ladd_format.codecs import parse_codec

    codec, n, soft_kind, image_dtype = BASES[name]
    images, labels, dense, soft = base_arrays(seed + sorted(BASES).index(name), n, image_dtype != "uint8")
    spec = None
    if codec is not None:
        spec = DenseSpec(n=n, ratio=0.625, codec=parse_codec(codec), temperature=2.0,
                         labeler={"arch": "convnet-d3", "epochs": 7})
    kwargs = dict(num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD, image_dtype=image_dtype,
                  dense=spec, soft_kind=soft_kind, class_names=[f"class-{c}" for c in range(C)],
                  source_dataset="cifar10", distillation="mtt", converter="adversarial", created=CREATED,
                  overwrite=True, max_chunk_rows=2)
    if image_dtype != "uint8":
        kwargs["space"] = "pixel01"
    with DLAWriter(path, **kwargs) as w:
        for start in range(0, M, 4):
            stop = min(M, start + 4)
            w.append(images[start:stop], labels[start:stop],
                     dense=None if dense is None else dense[start:stop],
                     soft=soft[start:stop] if soft_kind else None)
    return path


def make_base_files(folder: str | os.PathLike, seed: int = 0, names=None) -> dict[str, Path]:
    """Small valid files, one per entry of BASES, written with ``DLAWriter``; name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {name: write_base(folder / f"{name}.dla.h5", name, seed) for name in (names or BASES)}


#: the stream of the crafted stream cases' base file: batch lengths per epoch, B, crop size
STREAM_BATCHES = ([4, 4, 3], [4, 4])
STREAM_B, STREAM_CROP = 4, (8, 8)
#: crafted cases whose file holds a stream (the readers also read every batch of it)
STREAM_PREFIX = "stream_"


#: the codec of the crafted tail cases' base: top-3 with a rank-2 low-rank tail (spec 1.3, 4.8)
STREAM_TAIL_CODEC = "topk:k=3,values=uint8,tail=2"


def write_stream_base(path: Path, seed: int = 0, codec: str = "topk:k=3,values=uint8") -> Path:
    """The ``plain`` set with a cutmix relabel stream (topk k = 3, uint8 values; with ``codec``
    :data:`STREAM_TAIL_CODEC` also a rank-2 tail fitted on the stream's logits), written with
    ``DLAWriter(stream=...)``: the base of the crafted stream cases."""
    from ladd_format import DLAWriter
    from ladd_format.stream import StreamSpec, fit_tail_basis, parse_stream_codec

    images, labels, _, _ = base_arrays(seed, 0, False)
    rng = np.random.default_rng(seed + 99)
    stream_codec = parse_stream_codec(codec)
    tail = None
    if stream_codec.tail_rank:
        tail = fit_tail_basis(np.random.default_rng(seed + 98).normal(size=(64, C)) * 3, stream_codec.tail_rank)
    spec = StreamSpec(epochs=len(STREAM_BATCHES), batch_size=STREAM_B, crop_size=STREAM_CROP, mix="cutmix",
                      codec=stream_codec, temperature=2.0, teacher={"arch": "convnet-d3", "epochs": 7}, tail=tail)
    with DLAWriter(path, num_classes=C, image_shape=(3, SIDE, SIDE), mean=MEAN, std=STD, converter="adversarial",
                   created=CREATED, overwrite=True, max_chunk_rows=2, stream=spec) as w:
        w.append(images, labels)
        for epoch, lengths in enumerate(STREAM_BATCHES):
            for n in lengths:
                h, wd = rng.integers(1, SIDE + 1, n), rng.integers(1, SIDE + 1, n)
                box = np.stack([rng.integers(0, SIDE - h + 1), rng.integers(0, SIDE - wd + 1), h, wd], axis=1)
                w.append_stream(epoch, rng.integers(0, M, n), box, rng.integers(0, 2, n).astype(bool),
                                mix_partner=rng.permutation(n), mix_box=np.array([1, 2, 3, 4]),
                                logits=rng.normal(size=(n, C)) * 3)
    return path


def plan_of(path: str | os.PathLike, marker: bool = False) -> dict:
    """What the readers are asked for a file (from raw h5py, not the library under test)."""
    plan = {"has_dense": True, "has_soft": False, "has_stream": False, "m": M, "items": list(range(M)),
            "marker": marker}
    try:
        import h5py
        p = Path(path)
        if not p.is_file() or p.stat().st_size == 0:
            return plan
        with h5py.File(p, "r") as f:
            plan["has_dense"] = "dense" in f
            plan["has_soft"] = "soft_labels" in f
            plan["has_stream"] = "stream" in f
            try:
                m = int(f["images"].shape[0])
            except Exception:  # noqa: BLE001 - a crafted file may have no usable /images
                m = M
    except Exception:  # noqa: BLE001
        return plan
    plan["m"] = m
    plan["items"] = list(range(m)) if m <= M else [0, 1, m - 1]
    return plan


# =============================================================================== region map
@dataclass
class Region:
    start: int
    end: int
    kind: str
    name: str


REGION_KINDS = ("superblock", "object_header", "chunk_index", "group_index", "group_heap", "global_heap",
                "attr_value", "chunk_images", "chunk_labels", "chunk_dense", "chunk_soft", "chunk_other",
                "metadata")


def _chunk_kind(name: str) -> str:
    name = name.lstrip("/")
    if name == "images":
        return "chunk_images"
    if name == "labels":
        return "chunk_labels"
    if name == "soft_labels":
        return "chunk_soft"
    if name.startswith("dense/"):
        return "chunk_dense"
    return "chunk_other"


def region_map(path: str | os.PathLike) -> list[Region]:
    """Classify every byte of an HDF5 file into regions (runs of one kind and name), in file order."""
    import h5py

    data = Path(path).read_bytes()
    size = len(data)
    label = np.zeros(size, dtype=np.int32)          # index into names; 0 = metadata
    names: list[tuple[str, str]] = [("metadata", "unclassified (free space, continuation, padding)")]

    def mark(start, end, kind, name):
        start, end = max(0, int(start)), min(size, int(end))
        if end > start:
            names.append((kind, name))
            label[start:end] = len(names) - 1

    with h5py.File(path, "r") as f:
        objects = [("/", f)]
        f.visititems(lambda n, o: objects.append(("/" + n, o)))
        headers = {}
        header_chunks = {}
        for name, obj in objects:
            info = h5py.h5o.get_info(obj.id)
            headers[name] = (info.addr, info.addr + info.hdr.space.total)
            header_chunks[name] = _header_chunks(data, info.addr) or [headers[name]]
        mark(0, headers["/"][0], "superblock", "superblock")
        chunks: dict[int, str] = {}
        chunk_ranges = []
        for name, obj in objects:
            if isinstance(obj, h5py.Dataset) and obj.chunks is not None:
                for i in range(obj.id.get_num_chunks()):
                    ci = obj.id.get_chunk_info(i)
                    chunks[ci.byte_offset] = name
                    chunk_ranges.append((ci.byte_offset, ci.byte_offset + ci.size, name, ci.chunk_offset))
        in_chunk = np.zeros(size, dtype=bool)
        for a, b, _, _ in chunk_ranges:
            in_chunk[a:b] = True
        # signed metadata structures (HDF5 file format v0/v1 objects the default library version writes)
        for sig in (b"TREE", b"HEAP", b"SNOD", b"GCOL"):
            pos = data.find(sig)
            while pos >= 0:
                if not in_chunk[pos]:
                    _mark_signed(data, pos, sig, chunks, mark)
                pos = data.find(sig, pos + 1)
        for name, spans in header_chunks.items():
            for a, b in spans:
                mark(a, b, "object_header", name)
        for a, b, name, offset in chunk_ranges:
            mark(a, b, _chunk_kind(name), f"{name} chunk {tuple(int(v) for v in offset)}")
        # attribute values: numbers after their name inside the owner's header; strings in the global heap
        gheap = np.array([names[i][0] == "global_heap" for i in range(len(names))])[label]
        for name, obj in objects:
            ha, hb = headers[name]
            for key in obj.attrs.keys():
                try:
                    aid = obj.attrs.get_id(key)
                    value = obj.attrs[key]
                except Exception:  # noqa: BLE001
                    continue
                where = f"{name}@{key}"
                if h5py.check_string_dtype(aid.dtype) is not None:
                    for item in np.atleast_1d(np.asarray(value, dtype=object)).reshape(-1):
                        raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
                        if len(raw) < 2:
                            continue
                        pos = data.find(raw)
                        while pos >= 0 and not gheap[pos]:
                            pos = data.find(raw, pos + 1)
                        if pos >= 0:
                            mark(pos, pos + len(raw), "attr_value", where)
                    continue
                raw = np.ascontiguousarray(np.asarray(value).astype(aid.dtype, copy=False)).tobytes()
                if not raw:
                    continue
                for a, b in header_chunks[name]:       # the attribute message: name, type, space, value
                    npos = data.find(key.encode("utf-8") + b"\0", a, b)
                    vpos = data.find(raw, npos + len(key) + 1, min(b, npos + len(key) + 160 + len(raw))) \
                        if npos >= 0 else -1
                    if vpos >= 0:
                        mark(vpos, vpos + len(raw), "attr_value", where)
                        break
    regions: list[Region] = []
    if size == 0:
        return regions
    change = np.flatnonzero(np.diff(label)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [size]])
    for a, b in zip(starts.tolist(), ends.tolist()):
        kind, name = names[label[a]]
        regions.append(Region(a, b, kind, name))
    return regions


def _header_chunks(data: bytes, addr: int) -> list[tuple[int, int]]:
    """The chunks (start, end) of a version-1 object header: the first at ``addr``, the others
    named by its continuation messages (type 0x10). Empty when the header is not version 1."""
    size = len(data)
    try:
        if data[addr] != 1:
            return []
        (first_size,) = struct.unpack_from("<I", data, addr + 8)
        spans, todo, seen = [(addr, addr + 16 + first_size)], [(addr + 16, addr + 16 + first_size)], set()
        while todo:
            a, b = todo.pop()
            if (a, b) in seen or len(seen) > 64:
                continue
            seen.add((a, b))
            pos = a
            while pos + 8 <= b:
                mtype, msize = struct.unpack_from("<HH", data, pos)
                if mtype == 0x10 and msize >= 16:
                    off, length = struct.unpack_from("<QQ", data, pos + 8)
                    if 0 < off < size and 0 < length < size:
                        spans.append((off, off + length))
                        todo.append((off, off + length))
                pos += 8 + msize
        return spans
    except (IndexError, struct.error):
        return []


def _mark_signed(data: bytes, pos: int, sig: bytes, chunks: dict[int, str], mark) -> None:
    size = len(data)
    try:
        if sig == b"HEAP":              # local heap: 32-byte header, then its data segment
            seg_size, _, seg_addr = struct.unpack_from("<QQQ", data, pos + 8)
            mark(pos, pos + 32, "group_heap", "local heap header")
            if 0 < seg_addr < size and seg_size < size:
                mark(seg_addr, seg_addr + seg_size, "group_heap", "local heap data (link names)")
        elif sig == b"SNOD":            # symbol table node: 8 + 2K entries of 40 bytes (K = 4)
            mark(pos, pos + 8 + 8 * 40, "group_index", "symbol table node")
        elif sig == b"GCOL":            # global heap collection: its size is in the header
            (coll,) = struct.unpack_from("<Q", data, pos + 8)
            if 0 < coll <= size:
                mark(pos, pos + coll, "global_heap", "global heap (string attribute values)")
        elif sig == b"TREE":
            node_type, level, used = data[pos + 4], data[pos + 5], struct.unpack_from("<H", data, pos + 6)[0]
            if node_type == 0:          # group B-tree: K = 16, 8-byte keys
                mark(pos, pos + 24 + 33 * 8 + 32 * 8, "group_index", "group B-tree node")
                return
            for dims in range(2, 10):   # chunk B-tree: K = 32, keys of 8 + 8 * dims bytes
                ks = 8 + 8 * dims
                ok = used > 0
                for e in range(used):
                    child = struct.unpack_from("<Q", data, pos + 24 + ks + e * (ks + 8))[0]
                    last_dim = struct.unpack_from("<Q", data, pos + 24 + e * (ks + 8) + ks - 8)[0]
                    if last_dim != 0 or not (0 < child < size) or (level == 0 and child not in chunks):
                        ok = False
                        break
                if ok:
                    owner = chunks.get(struct.unpack_from("<Q", data, pos + 24 + ks)[0], "?") if level == 0 else "?"
                    mark(pos, pos + 24 + 65 * ks + 64 * 8, "chunk_index", f"chunk B-tree node of {owner}")
                    return
            mark(pos, pos + 24, "chunk_index", "B-tree node header")
    except struct.error:
        pass


# =============================================================================== mutations
@dataclass
class Mutation:
    case: str
    base: str
    kind: str          # bit, byte, burst, word16, attr, truncate
    region: str
    name: str
    offset: int
    data: str          # hex of the bytes written at offset ("" for truncate)
    length: int        # truncate: new length; otherwise len(data) // 2

    def apply(self, original: bytes) -> bytes:
        if self.kind == "truncate":
            return original[:self.length]
        raw = bytes.fromhex(self.data)
        out = bytearray(original)
        out[self.offset:self.offset + len(raw)] = raw
        return bytes(out)

    def describe(self) -> str:
        if self.kind == "truncate":
            return f"{self.base}: truncate to {self.length} bytes ({self.region} {self.name})"
        return f"{self.base}: {self.kind} at 0x{self.offset:x} -> {self.data} ({self.region} {self.name})"

    def repro(self) -> str:
        tail = f"truncate {self.length}" if self.kind == "truncate" else f"0x{self.offset:x} {self.data}"
        return f"python benchmarks/adversarial.py --replay {self.base} {tail}"


FLIP_WEIGHTS = {"bit": 0.35, "byte": 0.15, "burst": 0.13, "word16": 0.12, "attr": 0.17, "truncate": 0.08}


def _word16_positions(data: bytes, regions: list[Region], chunk_starts: dict) -> list[tuple[int, Region]]:
    out = []
    for r in regions:
        if not r.kind.startswith("chunk_"):
            continue
        origin = chunk_starts.get(r.name, r.start)
        first = r.start + ((r.start - origin) % 2)
        for pos in range(first, r.end - 1, 2):
            w = data[pos:pos + 2]
            if w in (b"\0\0", b"\xff\xff"):
                out.append((pos, r))
    return out


def make_mutations(base: str, path: str | os.PathLike, count: int, rng: random.Random,
                   regions: list[Region] | None = None) -> list[Mutation]:
    """``count`` seeded mutations of one file, spread over flip kinds (FLIP_WEIGHTS) and region kinds."""
    data = Path(path).read_bytes()
    regions = region_map(path) if regions is None else regions
    by_kind: dict[str, list[Region]] = defaultdict(list)
    for r in regions:
        by_kind[r.kind].append(r)
    chunk_starts = {}
    for r in regions:
        if r.kind.startswith("chunk_"):
            chunk_starts.setdefault(r.name, r.start)
    words = _word16_positions(data, regions, chunk_starts)
    kinds, weights = zip(*FLIP_WEIGHTS.items())
    out = []

    def pick(kind_list):
        kind = kind_list[0] if len(kind_list) == 1 else rng.choice(kind_list)
        rs = by_kind[kind]
        r = rng.choices(rs, weights=[x.end - x.start for x in rs])[0]
        return r, rng.randrange(r.start, r.end)

    region_kinds = sorted(by_kind)
    # first a bit flip in each region kind and one damage of each kind, then draws by FLIP_WEIGHTS
    opening = [("bit", k) for k in region_kinds] + [(k, None) for k in ("word16", "attr", "truncate", "byte", "burst")]
    turn = 0
    for i in range(count):
        forced = opening[i][1] if i < len(opening) else None
        kind = opening[i][0] if i < len(opening) else rng.choices(kinds, weights=weights)[0]
        case = f"{base}-{i}"
        if kind == "word16" and not words:
            kind = "bit"
        if kind == "attr" and not by_kind.get("attr_value"):
            kind = "bit"
        if kind == "truncate":
            if rng.random() < 0.5:
                r, pos = pick(sorted(by_kind))
                cut = rng.choice([r.start, pos])
            else:
                cut = rng.randrange(0, len(data))
                r = next(x for x in regions if x.start <= cut < x.end)
            out.append(Mutation(case, base, kind, r.kind, r.name, cut, "", cut))
            continue
        if kind == "word16":
            pos, r = rng.choice(words)
            new = b"\xff\xff" if data[pos:pos + 2] == b"\0\0" else b"\0\0"
            out.append(Mutation(case, base, kind, r.kind, r.name, pos, new.hex(), 2))
            continue
        if kind == "attr":
            r, pos = pick(["attr_value"])
        else:                                   # bit, byte, burst: the region kinds in turn
            r, pos = pick([forced or region_kinds[turn % len(region_kinds)]])
            turn += forced is None
        if kind == "burst":
            length = min(rng.randint(4, 64), len(data) - pos)
            new = bytes(rng.randrange(256) for _ in range(length))
        elif kind == "byte" or (kind == "attr" and rng.random() < 0.3):
            new = bytes([(data[pos] + rng.randrange(1, 256)) % 256])
        else:
            new = bytes([data[pos] ^ (1 << rng.randrange(8))])
        out.append(Mutation(case, base, kind, r.kind, r.name, pos, new.hex(), len(new)))
    return out


# =============================================================================== crafted hostile files
def fletcher32(data: bytes) -> int:
    """HDF5's fletcher32 (H5_checksum_fletcher32): big-endian 16-bit words, folded every 360 words."""
    n = len(data) // 2
    words = np.frombuffer(data[:2 * n], dtype=">u2").astype(np.int64)
    s1 = s2 = 0
    for a in range(0, n, 360):
        w = words[a:a + 360]
        t = len(w)
        s2 += t * s1 + int(np.dot(np.arange(t, 0, -1, dtype=np.int64), w))
        s1 += int(w.sum())
        s1 = (s1 & 0xFFFF) + (s1 >> 16)
        s2 = (s2 & 0xFFFF) + (s2 >> 16)
    if len(data) % 2:
        s1 += data[-1] << 8
        s2 += s1
        s1 = (s1 & 0xFFFF) + (s1 >> 16)
        s2 = (s2 & 0xFFFF) + (s2 >> 16)
    s1 = (s1 & 0xFFFF) + (s1 >> 16)
    s2 = (s2 & 0xFFFF) + (s2 >> 16)
    return ((s2 << 16) | s1) & 0xFFFFFFFF


def fletcher32_chunk(payload: bytes) -> bytes:
    """A chunk as HDF5's fletcher32 filter stores it: the payload, then its checksum (little-endian)."""
    return payload + struct.pack("<I", fletcher32(payload))


def _set_text(attrs, name: str, value: str) -> None:
    """A digest attribute stored as the writer stores it (a fixed-length string, spec 2 since 1.1), so
    that restamping adds no defect of its own."""
    from ladd_format import integrity
    integrity.set_string(attrs, name, value)


def restamp(path: str | os.PathLike) -> None:
    """Recompute every digest a hostile writer could recompute (per-dataset ``sha256``, ``/row_sha256``,
    ``root_sha256``), so a crafted file carries only its defect. Best effort: datasets over 64 MiB, or
    that cannot be read, keep what they had."""
    import h5py

    def small(ds):
        try:
            return int(np.prod(ds.shape, dtype=object)) * ds.dtype.itemsize <= (64 << 20)
        except Exception:  # noqa: BLE001
            return False

    with h5py.File(path, "r+") as f:
        datasets = []
        f.visititems(lambda n, o: datasets.append(o) if isinstance(o, h5py.Dataset) else None)
        for ds in datasets:
            if ds.name == "/row_sha256" or not small(ds) or ds.ndim == 0:
                continue
            try:
                arr = ds[()]
                le = arr.astype(arr.dtype.newbyteorder("<"), copy=False) if arr.dtype.itemsize > 1 else arr
                _set_text(ds.attrs, "sha256", hashlib.sha256(np.ascontiguousarray(le).tobytes()).hexdigest())
            except Exception:  # noqa: BLE001
                pass
        rows = f.get("row_sha256")
        if isinstance(rows, h5py.Dataset) and "datasets" in rows.attrs:
            try:
                from ladd_format import integrity
                table = rows[()]
                for col, name in enumerate(rows.attrs["datasets"]):
                    name = name.decode() if isinstance(name, bytes) else str(name)
                    ds = f.get(name)
                    if isinstance(ds, h5py.Dataset) and small(ds) and ds.ndim and ds.shape[0] == table.shape[0]:
                        table[:, col] = integrity.row_digests(ds[()])
                rows[...] = table
                le = table
                _set_text(rows.attrs, "sha256", hashlib.sha256(np.ascontiguousarray(le).tobytes()).hexdigest())
            except Exception:  # noqa: BLE001
                pass
        _restamp_stream(f, small)
        if "root_sha256" in f.attrs:
            try:
                from ladd_format import integrity
                _set_text(f.attrs, "root_sha256", integrity.root_digest(f))
            except Exception:  # noqa: BLE001
                pass


def _restamp_stream(f, small) -> None:
    """Recompute ``/stream/batch_sha256`` (spec 4.7) and its sha256 from the stream as it now is, as a
    hostile writer could; left as it is when batch_start makes no batches or a dataset is large."""
    import h5py

    table, starts = f.get("stream/batch_sha256"), f.get("stream/batch_start")
    if not (isinstance(table, h5py.Dataset) and isinstance(starts, h5py.Dataset) and table.ndim == 3
            and small(table) and small(starts)):
        return
    try:
        start = starts[()].astype(np.int64)
        digests = table[()]
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in table.attrs["datasets"]]
        if start.ndim != 1 or digests.shape[0] != start.shape[0] or start[0] != 0 or np.any(np.diff(start) <= 0):
            return
        for col, name in enumerate(names[:digests.shape[1]]):
            ds = f.get(name)
            if not (isinstance(ds, h5py.Dataset) and small(ds) and ds.ndim):
                continue
            data = ds[()]
            per_batch = name.endswith(("/mix_box", "/mix_lambda"))
            ends = np.append(start[1:], data.shape[0])
            for b in range(start.shape[0]):
                part = data[b:b + 1] if per_batch else data[start[b]:ends[b]]
                le = part.astype(part.dtype.newbyteorder("<"), copy=False) if part.dtype.itemsize > 1 else part
                digests[b, col] = np.frombuffer(hashlib.sha256(np.ascontiguousarray(le).tobytes()).digest(), np.uint8)
        table[...] = digests
        _set_text(table.attrs, "sha256", hashlib.sha256(np.ascontiguousarray(digests).tobytes()).hexdigest())
    except Exception:  # noqa: BLE001 - best effort, as restamp
        pass
    _restamp_tail(f, small, starts)


def _restamp_tail(f, small, starts) -> None:
    """Recompute ``/stream/tail/batch_sha256`` (spec 4.8: coef and scale per batch) and its sha256, as
    a hostile writer could; left as it is when the batches cannot be told or a dataset is large."""
    import h5py

    table = f.get("stream/tail/batch_sha256")
    if not (isinstance(table, h5py.Dataset) and table.ndim == 3 and small(table) and small(starts)):
        return
    try:
        start = starts[()].astype(np.int64)
        digests = table[()]
        if start.ndim != 1 or digests.shape[0] != start.shape[0] or start[0] != 0 or np.any(np.diff(start) <= 0):
            return
        for col, name in enumerate(("coef", "scale")[:digests.shape[1]]):
            ds = f.get(f"stream/tail/{name}")
            if not (isinstance(ds, h5py.Dataset) and small(ds) and ds.ndim):
                continue
            data = ds[()]
            ends = np.append(start[1:], data.shape[0])
            for b in range(start.shape[0]):
                part = data[start[b]:ends[b]]
                le = part.astype(part.dtype.newbyteorder("<"), copy=False) if part.dtype.itemsize > 1 else part
                digests[b, col] = np.frombuffer(hashlib.sha256(np.ascontiguousarray(le).tobytes()).digest(), np.uint8)
        table[...] = digests
        _set_text(table.attrs, "sha256", hashlib.sha256(np.ascontiguousarray(digests).tobytes()).hexdigest())
    except Exception:  # noqa: BLE001 - best effort, as restamp
        pass


def _copy_attrs(src, dst, skip=("sha256",)):
    for k, v in src.attrs.items():
        if k not in skip:
            dst.attrs[k] = v


def _replace(f, name, **kw):
    """Delete dataset ``name`` and create it again with ``kw`` (h5py create_dataset), keeping its attributes."""
    old = f[name]
    attrs = {k: v for k, v in old.attrs.items()}
    del f[name]
    ds = f.create_dataset(name, **kw)
    for k, v in attrs.items():
        ds.attrs[k] = v
    return ds


def _outside_h5(folder: Path) -> Path:
    """A valid-looking HDF5 file outside the D_LA, its /images full of the marker."""
    import h5py
    out = folder / "outside.h5"
    if not out.exists():
        raw = (MARKER * (M * 3 * SIDE * SIDE // len(MARKER) + 1))[:M * 3 * SIDE * SIDE]
        with h5py.File(out, "w") as f:
            ds = f.create_dataset("images", data=np.frombuffer(raw, np.uint8).reshape(M, 3, SIDE, SIDE),
                                  chunks=(1, 3, SIDE, SIDE), fletcher32=True)
            ds.attrs["space"] = "pixel255"
    return out


class Crafter:
    """The crafted hostile files: each method ``case_<name>(folder) -> Path``."""

    def __init__(self, bases: dict[str, Path]):
        self.bases = bases

    def _from(self, folder: Path, name: str, base: str, edit, stamp: bool = True) -> Path:
        import h5py
        dest = folder / f"{name}.dla.h5"
        shutil.copyfile(self.bases[base], dest)
        with h5py.File(dest, "r+") as f:
            edit(f)
        if stamp:
            restamp(dest)
        return dest

    # -- declared sizes -------------------------------------------------------------------
    def _huge_rows(self, folder, name, m):
        def edit(f):
            _replace(f, "images", shape=(m, 3, SIDE, SIDE), maxshape=(None, 3, SIDE, SIDE), dtype=np.uint8,
                     chunks=(1, 3, SIDE, SIDE), fletcher32=True)
            _replace(f, "labels", shape=(m,), maxshape=(None,), dtype=np.int64, chunks=(2,), fletcher32=True)
        return self._from(folder, name, "plain", edit)

    def case_huge_rows_1e9(self, folder):
        return self._huge_rows(folder, "huge_rows_1e9", 10 ** 9)

    def case_huge_rows_1e7(self, folder):
        return self._huge_rows(folder, "huge_rows_1e7", 10 ** 7)

    def case_dense_n_1e4(self, folder):
        return self._from(folder, "dense_n_1e4", "float32", lambda f: f["dense"].attrs.__setitem__("n", np.int64(10 ** 4)))

    def case_dense_n_1e5(self, folder):
        return self._from(folder, "dense_n_1e5", "float32", lambda f: f["dense"].attrs.__setitem__("n", np.int64(10 ** 5)))

    def case_dense_row_1e9(self, folder):
        def edit(f):
            f["dense"].attrs["n"] = np.int64(14142)            # P = 199,996,164 rows of C = 5: ~1e9 values
            _replace(f, "dense/probs", shape=(M, 14142 ** 2, C), maxshape=(None, 14142 ** 2, C), dtype=np.float32,
                     chunks=(1, 4096, C), fletcher32=True)
        return self._from(folder, "dense_row_1e9", "float32", edit)

    def case_chunk_0_8gb(self, folder):
        def edit(f):
            _replace(f, "images", shape=(M, 3, 16384, 16384), maxshape=(None, 3, 16384, 16384), dtype=np.uint8,
                     chunks=(1, 3, 16384, 16384), fletcher32=True)
        return self._from(folder, "chunk_0_8gb", "plain", edit)

    def case_zip_bomb(self, folder):
        """/labels looks like (6,) int64, but its one chunk is 10^8 rows (0.8 GB) of gzip'd zeros (~0.8 MB)."""
        import h5py

        def edit(f):
            ds = _replace(f, "labels", shape=(M,), maxshape=(None,), dtype=np.int64, chunks=(10 ** 8,),
                          compression="gzip", fletcher32=True)
            comp = zlib.compressobj(9)
            zeros = bytes(1 << 20)
            parts = [comp.compress(zeros) for _ in range(8 * 10 ** 8 // (1 << 20))]
            parts.append(comp.compress(bytes(8 * 10 ** 8 % (1 << 20))))
            parts.append(comp.flush())
            ds.id.write_direct_chunk((0,), fletcher32_chunk(b"".join(parts)))
            ds.attrs["sha256"] = hashlib.sha256(np.zeros(M, np.int64).tobytes()).hexdigest()
            assert isinstance(ds, h5py.Dataset)
        return self._from(folder, "zip_bomb", "plain", edit)

    # -- data outside the file ------------------------------------------------------------
    def case_external_raw(self, folder):
        secret = folder / "outside.bin"
        nbytes = M * 3 * SIDE * SIDE
        secret.write_bytes((MARKER * (nbytes // len(MARKER) + 1))[:nbytes])

        def edit(f):
            _replace(f, "images", shape=(M, 3, SIDE, SIDE), dtype=np.uint8, external=[(str(secret), 0, nbytes)])
        return self._from(folder, "external_raw", "plain", edit)

    def case_external_link(self, folder):
        import h5py
        outside = _outside_h5(folder)

        def edit(f):
            del f["images"]
            f["images"] = h5py.ExternalLink(str(outside), "/images")
        return self._from(folder, "external_link", "plain", edit)

    def case_virtual_dataset(self, folder):
        import h5py
        outside = _outside_h5(folder)

        def edit(f):
            attrs = dict(f["images"].attrs)
            del f["images"]
            layout = h5py.VirtualLayout(shape=(M, 3, SIDE, SIDE), dtype=np.uint8)
            layout[:] = h5py.VirtualSource(str(outside), "images", shape=(M, 3, SIDE, SIDE))
            ds = f.create_virtual_dataset("images", layout, fillvalue=0)
            for k, v in attrs.items():
                ds.attrs[k] = v
        return self._from(folder, "virtual_dataset", "plain", edit)

    def case_soft_link(self, folder):
        import h5py

        def edit(f):
            f.move("images", "stash")
            f["images"] = h5py.SoftLink("/stash")
        return self._from(folder, "soft_link", "plain", edit)

    def case_soft_link_dangling(self, folder):
        import h5py

        def edit(f):
            del f["images"]
            f["images"] = h5py.SoftLink("/nowhere")
        return self._from(folder, "soft_link_dangling", "plain", edit)

    # -- not a file -------------------------------------------------------------------------
    def case_fifo(self, folder):
        p = folder / "fifo.dla.h5"
        if not p.exists():
            os.mkfifo(p)
        return p

    def case_directory(self, folder):
        p = folder / "directory.dla.h5"
        p.mkdir(exist_ok=True)
        return p

    def case_empty_file(self, folder):
        p = folder / "empty.dla.h5"
        p.write_bytes(b"")
        return p

    # -- values -----------------------------------------------------------------------------
    def case_num_classes_0(self, folder):
        return self._from(folder, "num_classes_0", "float32", lambda f: f.attrs.__setitem__("num_classes", np.int64(0)))

    def case_numbers_as_strings(self, folder):
        def edit(f):
            f.attrs["num_classes"] = str(C)
            f["dense"].attrs["n"] = "2"
            f["dense"].attrs["ratio"] = "0.625"
        return self._from(folder, "numbers_as_strings", "float32", edit)

    def case_big_endian_labels(self, folder):
        def edit(f):
            values = f["labels"][()]
            _replace(f, "labels", data=values.astype(">i8"), maxshape=(None,), chunks=(2,), fletcher32=True)
        return self._from(folder, "big_endian_labels", "float32", edit)

    def case_integer_class_names(self, folder):
        return self._from(folder, "integer_class_names", "float32",
                          lambda f: f.attrs.__setitem__("class_names", np.arange(C, dtype=np.int64)))

    def case_missing_dense_probs(self, folder):
        return self._from(folder, "missing_dense_probs", "float32", lambda f: f["dense"].__delitem__("probs"))

    def case_topk_index_ge_c(self, folder):
        def edit(f):
            ds = f["dense/topk_index"]
            v = ds[()]
            v[0, 0, 0] = C + 7
            ds[...] = v
        return self._from(folder, "topk_index_ge_c", "topk_f16", edit)

    def case_topk_index_65535(self, folder):
        def edit(f):
            ds = f["dense/topk_index"]
            v = ds[()]
            v[1, 0, 1] = 65535
            ds[...] = v
        return self._from(folder, "topk_index_65535", "topk_u8", edit)

    def case_labels_ge_c(self, folder):
        def edit(f):
            v = f["labels"][()]
            v[2] = C + 3
            f["labels"][...] = v
        return self._from(folder, "labels_ge_c", "float32", edit)

    def case_labels_negative(self, folder):
        def edit(f):
            v = f["labels"][()]
            v[3] = -2
            f["labels"][...] = v
        return self._from(folder, "labels_negative", "plain", edit)

    def case_boxes_outside(self, folder):
        def edit(f):
            b = np.asarray(f["dense"].attrs["boxes"]).copy()
            b[:] = [100, 100, 8, 8]
            f["dense"].attrs["boxes"] = b.astype(np.int32)
        return self._from(folder, "boxes_outside", "float32", edit)

    def case_array_scalar_attrs(self, folder):
        def edit(f):
            f.attrs["num_classes"] = np.array([C, C], dtype=np.int64)
            f["dense"].attrs["n"] = np.array([2, 2], dtype=np.int64)
            f["dense"].attrs["ratio"] = np.array([0.625, 0.5])
        return self._from(folder, "array_scalar_attrs", "float32", edit)

    def case_format_version_2(self, folder):
        return self._from(folder, "format_version_2", "float32", lambda f: f.attrs.__setitem__("format_version", "2.0"))

    def case_images_is_group(self, folder):
        def edit(f):
            del f["images"]
            f.create_group("images")
        return self._from(folder, "images_is_group", "plain", edit)

    def case_nan_normalization(self, folder):
        def edit(f):
            f["normalization"].attrs["std"] = np.array([np.nan, 0.0, -1.0])
        return self._from(folder, "nan_normalization", "float32", edit)

    def case_many_objects(self, folder):
        def edit(f):
            g = f.create_group("junk")
            for i in range(3000):
                g.create_group(f"g{i}")
        return self._from(folder, "many_objects", "plain", edit)

    # -- relabel streams (spec 4.7, 2.4) ------------------------------------------------------
    def _stream_base(self, folder: Path) -> Path:
        """A small valid file with a cutmix stream (topk k = 3 uint8, 2 epochs of 3 and 2 batches, B = 4,
        crops 8 x 8) over a plain set of M images: what the stream cases damage."""
        path = folder / "stream_base.dla.h5"
        if "stream" not in self.bases:
            self.bases["stream"] = write_stream_base(path)
        return self.bases["stream"]

    def _from_stream(self, folder: Path, name: str, edit) -> Path:
        self._stream_base(folder)
        return self._from(folder, name, "stream", edit)

    def case_stream_epoch_start_1e9(self, folder):
        """epochs and /stream/epoch_start declare 10^9 epochs (8 GB of int64) the file does not hold."""
        def edit(f):
            f["stream"].attrs["epochs"] = np.int64(10 ** 9)
            _replace(f, "stream/epoch_start", shape=(10 ** 9,), dtype=np.int64, chunks=(4096,), fletcher32=True)
        return self._from_stream(folder, "stream_epoch_start_1e9", edit)

    def case_stream_batch_start_billions(self, folder):
        """/stream/batch_start claims its last batch starts at record 4 * 10^9 (the stream holds 22)."""
        def edit(f):
            v = f["stream/batch_start"][()]
            v[-1] = 4 * 10 ** 9
            f["stream/batch_start"][...] = v
        return self._from_stream(folder, "stream_batch_start_billions", edit)

    def case_stream_batch_2_20(self, folder):
        """One batch of 2^20 records (batch_size 2^20, every record dataset 2^20 rows, unwritten): over
        the 2^16 records a batch may hold, and 40 MB of declared rows in a file of 60 KB."""
        q = 1 << 20

        def edit(f):
            g = f["stream"]
            g.attrs["batch_size"] = np.int64(q)
            g.attrs["epochs"] = np.int64(1)
            for name in ("epoch_start", "batch_start"):
                _replace(f, f"stream/{name}", data=np.zeros(1, np.int64), chunks=(1,), fletcher32=True)
            for name in ("image", "box", "flip", "mix_partner", "topk_index", "topk_prob"):
                old = g[name]
                _replace(f, f"stream/{name}", shape=(q, *old.shape[1:]), dtype=old.dtype,
                         chunks=(4096, *old.shape[1:]), fletcher32=True)
            _replace(f, "stream/mix_box", data=np.zeros((1, 4), np.int64), chunks=(1, 4), fletcher32=True)
            _replace(f, "stream/batch_sha256", data=np.zeros((1, 7, 32), np.uint8), chunks=(1, 7, 32),
                     fletcher32=True)
        return self._from_stream(folder, "stream_batch_2_20", edit)

    def case_stream_topk_k_gt_c(self, folder):
        """k = 1000 with C = 5 classes (topk datasets of 1000 columns)."""
        def edit(f):
            g = f["stream"]
            g.attrs["k"] = np.int64(1000)
            q = g["image"].shape[0]
            _replace(f, "stream/topk_index", data=np.tile(np.arange(1000, dtype=np.uint16), (q, 1)),
                     chunks=(8, 1000), fletcher32=True)
            _replace(f, "stream/topk_prob", data=np.zeros((q, 1000), np.uint8), chunks=(8, 1000), fletcher32=True)
        return self._from_stream(folder, "stream_topk_k_gt_c", edit)

    def case_stream_crop_size_0(self, folder):
        return self._from_stream(folder, "stream_crop_size_0",
                                 lambda f: f["stream"].attrs.__setitem__("crop_size", np.array([0, 8], np.int64)))

    def case_stream_crop_size_2_20(self, folder):
        """crop_size 2^20 x 2^20: one crop would be 2^40 pixels."""
        return self._from_stream(folder, "stream_crop_size_2_20", lambda f: f["stream"].attrs.__setitem__(
            "crop_size", np.array([1 << 20, 1 << 20], np.int64)))

    def case_stream_image_ge_m(self, folder):
        """A record's image index is M + 5 (the issue's "a stream whose image index >= M")."""
        def edit(f):
            v = f["stream/image"][()]
            v[3] = M + 5
            f["stream/image"][...] = v
        return self._from_stream(folder, "stream_image_ge_m", edit)

    def case_stream_box_outside(self, folder):
        """A crop box reaching past the image's bottom edge (top 10 + height 10 > 16)."""
        def edit(f):
            v = f["stream/box"][()]
            v[2] = (10, 0, 10, 4)
            f["stream/box"][...] = v
        return self._from_stream(folder, "stream_box_outside", edit)

    # -- the low-rank tail of a top-k stream (spec 1.3, 4.8, rule 18) -----------------------
    def _from_tail(self, folder: Path, name: str, edit, stamp: bool = True) -> Path:
        """A crafted copy of a small valid file whose cutmix stream has a rank-2 tail."""
        if "stream_tail" not in self.bases:
            self.bases["stream_tail"] = write_stream_base(folder / "stream_tail_base.dla.h5", codec=STREAM_TAIL_CODEC)
        return self._from(folder, name, "stream_tail", edit, stamp)

    def case_stream_tail_coef_wrong_shape(self, folder):
        """/stream/tail/coef of 3 columns where rank says 2 (and one row short of the records)."""
        def edit(f):
            q = f["stream/image"].shape[0]
            _replace(f, "stream/tail/coef", data=np.ones((q - 1, 3), np.int8), chunks=(4, 3), fletcher32=True)
        return self._from_tail(folder, "stream_tail_coef_wrong_shape", edit)

    def case_stream_tail_basis_nan(self, folder):
        """A NaN in /stream/tail/basis (its sha256 recomputed): every decoded tail would be NaN."""
        def edit(f):
            v = f["stream/tail/basis"][()]
            v[1, 2] = np.nan
            f["stream/tail/basis"][...] = v
        return self._from_tail(folder, "stream_tail_basis_nan", edit)

    def case_stream_tail_scale_negative(self, folder):
        """A record's scale is -3 (the tail digests recomputed): scales must be finite and >= 0."""
        def edit(f):
            v = f["stream/tail/scale"][()]
            v[5] = -3.0
            f["stream/tail/scale"][...] = v
        return self._from_tail(folder, "stream_tail_scale_negative", edit)

    def case_stream_tail_rank_huge(self, folder):
        """rank 10^6 and a basis declared (10^6, C) float32 (20 MB) that the file does not hold."""
        def edit(f):
            f["stream/tail"].attrs["rank"] = np.int64(10 ** 6)
            _replace(f, "stream/tail/basis", shape=(10 ** 6, C), dtype=np.float32, chunks=(4096, C), fletcher32=True)
        return self._from_tail(folder, "stream_tail_rank_huge", edit)

    def case_stream_tail_digest_differs(self, folder):
        """A coefficient changed after writing, its dataset's sha256 and the root digest recomputed, the
        tail's batch digest not."""
        path = self._from_tail(folder, "stream_tail_digest_differs", lambda f: None)
        import h5py
        from ladd_format import integrity
        with h5py.File(path, "r+") as f:
            ds = f["stream/tail/coef"]
            v = ds[()]
            v[4, 0] = v[4, 0] ^ 0x40
            ds[...] = v
            _set_text(ds.attrs, "sha256", hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest())
            _set_text(f.attrs, "root_sha256", integrity.root_digest(f))
        return path

    def case_stream_tail_on_logits_stream(self, folder):
        """The tail kept while the stream is re-declared kind logits (codec float16, its logits added):
        a tail is allowed only with kind probs, codec topk."""
        def edit(f):
            g = f["stream"]
            q = g["image"].shape[0]
            for name in ("topk_index", "topk_prob"):
                del g[name]
            del g.attrs["k"]
            _set_text(g.attrs, "kind", "logits")
            _set_text(g.attrs, "codec", "float16")
            g.create_dataset("logits", data=np.zeros((q, C), "<f2"), chunks=(4, C), fletcher32=True)
            names = [f"/stream/{n}" for n in ("image", "box", "flip", "mix_partner", "mix_box", "logits")]
            _replace(f, "stream/batch_sha256", data=np.zeros((g["batch_start"].shape[0], len(names), 32), np.uint8),
                     chunks=True, fletcher32=True)
            _set_text_array(g["batch_sha256"].attrs, "datasets", names)
        return self._from_tail(folder, "stream_tail_on_logits_stream", edit)


def _set_text_array(attrs, name: str, values: list[str]) -> None:
    from ladd_format import integrity
    integrity.set_string(attrs, name, np.array(values, dtype=object))


CRAFTED = sorted(n[len("case_"):] for n in dir(Crafter) if n.startswith("case_"))
#: crafted cases whose outside file holds the marker (no reader output may contain it)
MARKED = {"external_raw", "external_link", "virtual_dataset"}


def make_crafted(folder: str | os.PathLike, bases: dict[str, Path], names=None) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    crafter = Crafter(bases)
    return {name: getattr(crafter, f"case_{name}")(folder) for name in (names or CRAFTED)}


# =============================================================================== worker side
class _Hang(BaseException):
    pass


def _status_kb(field: str) -> int:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


class _Digest:
    def __init__(self, marker: bool):
        self.h = hashlib.sha256()
        self.marker = marker
        self.found = False

    def raw(self, b: bytes) -> None:
        self.h.update(b)
        if self.marker and MARKER[:16] in b:
            self.found = True

    def feed(self, v) -> None:
        import sys as _sys
        torch = _sys.modules.get("torch")
        if torch is not None and isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        if v is None or isinstance(v, (bool, int, float, complex)):
            self.raw(f"{type(v).__name__}:{v!r};".encode())
        elif isinstance(v, str):
            self.raw(b"s" + v.encode("utf-8", "surrogatepass") + b";")
        elif isinstance(v, (bytes, bytearray)):
            self.raw(b"b" + bytes(v) + b";")
        elif isinstance(v, (np.ndarray, np.generic)):
            a = np.asarray(v)
            self.raw(f"a{a.dtype.str}{a.shape};".encode())
            if a.dtype.kind == "O":
                for x in a.reshape(-1):
                    self.feed(x)
            else:
                self.raw(np.ascontiguousarray(a).tobytes())
        elif isinstance(v, dict):
            self.raw(b"{")
            for k in sorted(v, key=str):
                self.feed(str(k))
                self.feed(v[k])
            self.raw(b"}")
        elif isinstance(v, (list, tuple)):
            self.raw(b"[")
            for x in v:
                self.feed(x)
            self.raw(b"]")
        elif isinstance(v, os.PathLike):
            self.feed(os.fspath(v))
        else:
            self.raw(repr(v).encode())


def _alarm(signum, frame):
    raise _Hang()


def probe(path: str | os.PathLike, plan: dict, workdir: str | os.PathLike) -> dict:
    """Run every reader on ``path``; returns {"outcomes": key -> [status, detail], "peak_rss", ...}.
    status: ok (detail: digest), ladd (error), exc (traceback), hang, memory."""
    from ladd_format import LaddError, open_dla, verify
    from ladd_format.export import export
    from ladd_format.torch import DLADataset

    path = Path(path)
    out: dict[str, list] = {}
    meta = {"peak_rss": 0, "max_call_s": 0.0, "marker": [], "restart": False, "multiline": []}
    marker = bool(plan.get("marker"))
    items = plan["items"]

    class Abort(Exception):
        pass

    def call(key, fn):
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, HANG_S)
        try:
            value = fn()
            signal.setitimer(signal.ITIMER_REAL, 0)
            d = _Digest(marker)
            d.feed(value)
            res = ["ok", d.h.hexdigest()[:32]]
            if d.found:
                meta["marker"].append(key)
        except _Hang:
            res = ["hang", f"no result after {HANG_S:g} s"]
        except LaddError as exc:
            res = ["ladd", f"{type(exc).__name__}: {exc}"]
            if "\n" in str(exc).strip():
                meta["multiline"].append(key)
        except MemoryError as exc:
            res = ["memory", f"MemoryError: {exc}"]
        except Exception as exc:  # noqa: BLE001 - anything that is not a LaddError is what we measure
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            res = ["exc", f"{type(exc).__name__}: {str(exc).strip()[:300]} | " + " <- ".join(
                line.strip().splitlines()[0] for line in tb[-4:-1])[:600]]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        dt = time.perf_counter() - t0
        meta["max_call_s"] = max(meta["max_call_s"], dt)
        if dt > HANG_S and res[0] != "hang":
            res = ["hang", f"took {dt:.1f} s: {res[0]} {res[1][:100]}"]
        rss = _status_kb("VmHWM") * 1024
        meta["peak_rss"] = max(meta["peak_rss"], rss)
        if rss > RSS_LIMIT and res[0] != "memory":
            res = ["memory", f"peak RSS {rss / 2**20:.0f} MiB: {res[0]} {res[1][:100]}"]
        out[key] = res
        if res[0] == "hang":
            meta["restart"] = True
            raise Abort()
        return res

    _reset_peak()
    try:
        # -- open_dla ---------------------------------------------------------------------
        holder = {}
        file_keys = ["info", "images", "labels"] + (["dense"] if plan["has_dense"] else []) + \
            (["soft"] if plan["has_soft"] else [])
        per_item = ["images", "labels"] + (["dense"] if plan["has_dense"] else []) + \
            (["soft"] if plan["has_soft"] else [])
        all_file_keys = file_keys + [f"{k}[{i}]" for k in per_item for i in items] + \
            (["stream", "stream.batches"] if plan.get("has_stream") else [])
        res = call("open", lambda: holder.__setitem__("f", open_dla(path)))
        if res[0] != "ok":
            for key in all_file_keys:
                out[key] = list(res)
        else:
            f = holder["f"]
            try:
                def info():
                    d = dict(f.info())
                    d.pop("path", None)
                    return d
                call("info", info)
                call("images", lambda: f.images())
                call("labels", lambda: f.labels())
                if plan["has_dense"]:
                    call("dense", lambda: f.dense())
                if plan["has_soft"]:
                    call("soft", lambda: f.soft_labels())
                if plan.get("has_stream"):
                    # the stream's declaration, then its batches (a hostile file may declare millions:
                    # the reader must refuse it before the first, or return each bounded)
                    call("stream", lambda: f.stream.info())

                    def batches():
                        s = f.stream
                        return [dict(vars(s.read_batch(b))) for b in range(min(s.num_batches, 16))]
                    call("stream.batches", batches)
                for i in items:
                    call(f"images[{i}]", lambda i=i: f.images(i, i + 1))
                    call(f"labels[{i}]", lambda i=i: f.labels(i, i + 1))
                    if plan["has_dense"]:
                        call(f"dense[{i}]", lambda i=i: f.dense(i, i + 1))
                    if plan["has_soft"]:
                        call(f"soft[{i}]", lambda i=i: f.soft_labels(i, i + 1))
            finally:
                with contextlib.suppress(BaseException):
                    f.close()
        # -- DLADataset -------------------------------------------------------------------
        res = call("dataset", lambda: holder.__setitem__(
            "ds", DLADataset(path, dense=plan["has_dense"], soft_labels=plan["has_soft"])))
        ds_keys = ["dataset.len"] + [f"dataset[{i}]" for i in items]
        if res[0] != "ok":
            for key in ds_keys:
                out[key] = list(res)
        else:
            ds = holder["ds"]
            try:
                call("dataset.len", lambda: len(ds))
                for i in items:
                    call(f"dataset[{i}]", lambda i=i: ds[i])
            finally:
                with contextlib.suppress(BaseException):
                    ds.close()
        # -- export npz -------------------------------------------------------------------
        target = Path(workdir) / f"export-{os.getpid()}.npz"

        def do_export():
            if target.exists():
                target.unlink()
            export(path, target, fmt="npz")
            with np.load(target, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        try:
            call("export", do_export)
        finally:
            with contextlib.suppress(OSError):
                target.unlink()
        # -- verify -----------------------------------------------------------------------

        def do_verify():
            problems = verify(path)
            return problems

        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, HANG_S)
        try:
            problems = verify(path)
            signal.setitimer(signal.ITIMER_REAL, 0)
            if problems:
                vres = ["invalid", f"{len(problems)} problem(s): {problems[0]}"[:400]]
                if any("\n" in str(p).strip() for p in problems):
                    meta["multiline"].append("verify")
            else:
                vres = ["valid", "OK"]
        except _Hang:
            vres = ["hang", f"verify gave no result after {HANG_S:g} s"]
            meta["restart"] = True
        except LaddError as exc:
            vres = ["invalid", f"raised {type(exc).__name__}: {exc}"[:400]]
        except MemoryError as exc:
            vres = ["memory", f"MemoryError: {exc}"]
        except Exception as exc:  # noqa: BLE001
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            vres = ["exc", f"{type(exc).__name__}: {str(exc).strip()[:300]} | " + " <- ".join(
                line.strip().splitlines()[0] for line in tb[-4:-1])[:600]]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        dt = time.perf_counter() - t0
        if dt > HANG_S and vres[0] != "hang":
            vres = ["hang", f"verify took {dt:.1f} s"]
        rss = _status_kb("VmHWM") * 1024
        meta["peak_rss"] = max(meta["peak_rss"], rss)
        if rss > RSS_LIMIT and vres[0] != "memory":
            vres = ["memory", f"peak RSS {rss / 2**20:.0f} MiB in verify"]
        out["verify"] = vres
    except Abort:
        pass
    return {"outcomes": out, **meta}


def cli_inprocess(path: str | os.PathLike, workdir: str | os.PathLike) -> dict:
    """``ladd verify/info/size/export`` run in this process (click main, standalone), each as
    {"rc", "stdout", "stderr", "error"}: what the commands would print as subprocesses."""
    from ladd_cli.main import main

    results = {}
    target = Path(workdir) / f"cli-export-{os.getpid()}.npz"
    for name, args in (("verify", ["verify", str(path)]), ("info", ["info", str(path)]),
                       ("size", ["size", str(path)]),
                       ("export", ["export", str(path), "--format", "npz", "-o", str(target), "--force"])):
        so, se = io.StringIO(), io.StringIO()
        rc, err = 0, None
        signal.setitimer(signal.ITIMER_REAL, HANG_S)
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
                main(args, prog_name="ladd", standalone_mode=True)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except _Hang:
            rc, err = None, f"hang: no result after {HANG_S:g} s"
        except BaseException as exc:  # noqa: BLE001 - an uncaught exception is a traceback in a subprocess
            rc, err = 1, "Traceback: " + "".join(traceback.format_exception_only(type(exc), exc)).strip()[:400]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        dt = time.perf_counter() - t0
        if dt > HANG_S and err is None:
            err = f"hang: took {dt:.1f} s"
        results[name] = {"rc": rc, "stdout": so.getvalue()[-2000:], "stderr": se.getvalue()[-2000:], "error": err}
        with contextlib.suppress(OSError):
            target.unlink()
    return results


def worker_main(workdir: str) -> None:
    """The batch worker: one JSON job per stdin line, one JSON result per stdout line."""
    import torch
    torch.set_num_threads(1)
    import ladd_format  # noqa: F401
    import ladd_format.export  # noqa: F401
    import ladd_format.torch  # noqa: F401
    try:
        import ladd_cli.main  # noqa: F401
    except Exception:  # noqa: BLE001
        pass
    signal.signal(signal.SIGALRM, _alarm)
    vm = _status_kb("VmSize") * 1024
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (vm + AS_EXTRA, vm + AS_EXTRA))
    baseline = _status_kb("VmRSS") * 1024
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    cache: dict[str, bytes] = {}
    real_stdout = sys.stdout
    sys.stdout = sys.stderr            # stray prints must not break the protocol
    real_stdout.write(json.dumps({"ready": True, "baseline_rss": baseline}) + "\n")
    real_stdout.flush()
    for line in sys.stdin:
        job = json.loads(line)
        t0 = time.perf_counter()
        try:
            if job["kind"] == "flip":
                mut = Mutation(**job["mutation"])
                if job["base_path"] not in cache:
                    cache[job["base_path"]] = Path(job["base_path"]).read_bytes()
                target = wd / f"case-{os.getpid()}.dla.h5"
                target.write_bytes(mut.apply(cache[job["base_path"]]))
                try:
                    result = probe(target, job["plan"], wd)
                finally:
                    with contextlib.suppress(OSError):
                        target.unlink()
            elif job["kind"] == "probe":
                result = probe(job["path"], job["plan"], wd)
                if job.get("cli"):
                    result["cli"] = cli_inprocess(job["path"], wd)
            else:
                result = {"error": f"unknown job kind {job['kind']!r}"}
        except BaseException as exc:  # noqa: BLE001 - harness error, reported as a crash of the case
            result = {"harness_error": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-1500:]}
        result["id"] = job["id"]
        result["seconds"] = time.perf_counter() - t0
        real_stdout.write(json.dumps(result) + "\n")
        real_stdout.flush()
        if result.get("restart"):
            break


# =============================================================================== parent side
class Worker:
    """One worker process; ``run(job)`` returns its result, or a hang/crash record after killing it."""

    def __init__(self, workdir: Path, index: int):
        self.workdir = workdir
        self.index = index
        self.proc = None
        self.buf = b""
        self.baseline_rss = 0
        self.starts = 0

    def start(self) -> None:
        self.stop()
        self.errlog = self.workdir / f"worker-{self.index}.stderr"
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen([PY, str(Path(__file__).resolve()), "--worker", str(self.workdir / f"w{self.index}")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.errlog, "ab"),
                                     start_new_session=True, env=env, cwd=str(ROOT))
        self.buf = b""
        self.starts += 1
        line = self._readline(120.0)
        if line is None:
            raise RuntimeError(f"worker did not start: {self._err_tail()}")
        self.baseline_rss = json.loads(line).get("baseline_rss", 0)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def _err_tail(self) -> str:
        try:
            return self.errlog.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def _readline(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def run(self, job: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.start()
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        t0 = time.monotonic()
        line = self._readline(WATCHDOG_S)
        if line is None:
            alive = self.proc.poll() is None
            self.stop()
            rc = None if alive else "died"
            res = {"id": job["id"], "seconds": time.monotonic() - t0,
                   "fatal": "hang" if alive else "crash",
                   "detail": (f"no result after {WATCHDOG_S:g} s (worker killed)" if alive else
                              f"worker died ({rc}): {self._err_tail()[-600:]}")}
            return res
        res = json.loads(line)
        if res.get("restart"):
            self.stop()
        return res


class Pool:
    def __init__(self, workdir: Path, size: int):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workers = [Worker(self.workdir, i) for i in range(size)]

    def map(self, jobs: list[dict], progress=None) -> dict:
        q: queue.Queue = queue.Queue()
        for job in jobs:
            q.put(job)
        results = {}
        lock = threading.Lock()
        errors = []

        def loop(w: Worker):
            try:
                while True:
                    try:
                        job = q.get_nowait()
                    except queue.Empty:
                        return
                    res = w.run(job)
                    with lock:
                        results[job["id"]] = res
                        if progress:
                            progress(len(results), len(jobs))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results

    def close(self) -> None:
        for w in self.workers:
            w.stop()

    @property
    def baseline_rss(self) -> int:
        return max((w.baseline_rss for w in self.workers), default=0)


# =============================================================================== classification
def classify_flip(orig: dict, res: dict) -> tuple[str, str]:
    """(class, detail) of a damaged file's probe against the original's."""
    if "harness_error" in res:
        return "crash", "harness error: " + res["harness_error"][-300:]
    if res.get("fatal"):
        return res["fatal"], res.get("detail", "")
    outs = res["outcomes"]
    for status, cls in (("hang", "hang"), ("memory", "memory"), ("exc", "traceback")):
        keys = [k for k, v in outs.items() if v[0] == status]
        if keys:
            return cls, f"{keys[0]}: {outs[keys[0]][1]}" + (f" (and {len(keys) - 1} more calls)" if len(keys) > 1 else "")
    if res.get("peak_rss", 0) > RSS_LIMIT:
        return "memory", f"peak RSS {res['peak_rss'] / 2**20:.0f} MiB"
    o = orig["outcomes"]
    changed = [k for k in o if k != "verify" and outs.get(k) != o[k]]
    if not changed:
        return "unchanged", ""
    silent = [k for k in changed if outs.get(k, ["missing"])[0] == "ok"]
    if silent:
        return "silent", f"{silent[0]} returned different data without an error" + \
            (f" (and {len(silent) - 1} more calls)" if len(silent) > 1 else "") + f"; verify: {outs['verify'][1][:120]}"
    if outs["verify"][0] == "valid":
        return "silent", f"verify says OK but {changed[0]} raised: {outs[changed[0]][1][:160]}"
    if res.get("multiline"):
        return "multiline", f"{res['multiline'][0]} raised a multi-line error"
    return "refused", ""


def _cli_ok(name: str, r: dict, expect_fail: bool) -> str | None:
    """None when a CLI result is clean; else what was wrong."""
    if r.get("error"):
        return r["error"]
    stderr = r["stderr"].strip()
    if "Traceback" in r["stderr"] or "Traceback" in r["stdout"]:
        return f"traceback: {stderr[-200:]}"
    if "internal error" in stderr:                # the CLI's one-line form of an unexpected exception
        return f"traceback (reported as an internal error): {stderr[-200:]}"
    if r["rc"] not in (0, 1):
        return f"exit status {r['rc']}: {stderr[-200:]}"
    if expect_fail and r["rc"] == 0:
        return "exit status 0 on a crafted file"
    if r["rc"] == 1 and len(stderr.splitlines()) != 1:
        return f"{len(stderr.splitlines())} stderr lines: {stderr[:200]!r}"
    return None


def classify_crafted(name: str, res: dict) -> tuple[str, str]:
    if "harness_error" in res:
        return "crash", "harness error: " + res["harness_error"][-300:]
    if res.get("fatal"):
        return res["fatal"], res.get("detail", "")
    outs = res["outcomes"]
    for status, cls in (("hang", "hang"), ("memory", "memory"), ("exc", "traceback")):
        keys = [k for k, v in outs.items() if v[0] == status]
        if keys:
            return cls, f"{keys[0]}: {outs[keys[0]][1]}" + (f" (and {len(keys) - 1} more calls)" if len(keys) > 1 else "")
    if res.get("peak_rss", 0) > RSS_LIMIT:
        return "memory", f"peak RSS {res['peak_rss'] / 2**20:.0f} MiB"
    if res.get("marker"):
        return "outside_read", f"{res['marker'][0]} returned bytes of the file outside"
    if outs.get("verify", ["missing"])[0] != "invalid":
        returned = [k for k, v in outs.items() if v[0] == "ok" and k != "verify"]
        return "silent", f"verify says {outs.get('verify', ['missing'])[0]}; readers that returned data: " \
                         f"{', '.join(returned[:4]) or 'none'}"
    if res.get("multiline"):
        return "multiline", f"{res['multiline'][0]} raised a multi-line error"
    for cmd, r in (res.get("cli") or {}).items():
        why = _cli_ok(cmd, r, expect_fail=True)
        if why:
            if why.startswith("traceback"):
                return "traceback", f"ladd {cmd}: {why}"
            if why.startswith("hang"):
                return "hang", f"ladd {cmd}: {why}"
            return "cli_exit0" if "exit status 0" in why else "multiline", f"ladd {cmd}: {why}"
    return "refused", ""


# =============================================================================== CLI as subprocesses
def _limiter(address_space: int):
    def limit():
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        os.setsid()
    return limit


def run_cli(args: list[str], timeout: float = HANG_S, address_space: int = 2 << 30) -> dict:
    """One ``ladd`` command as a subprocess (RLIMIT_AS ``address_space``): rc, stdout, stderr, its
    peak RSS (``wait4``), and ``error`` "hang: ..." when it ran past ``timeout`` (then it is killed)."""
    t0 = time.monotonic()
    proc = subprocess.Popen([LADD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_limiter(address_space))
    bufs = {"out": [], "err": []}

    def drain(stream, key):
        for chunk in iter(lambda: stream.read(1 << 16), b""):
            bufs[key].append(chunk)
    readers = [threading.Thread(target=drain, args=(proc.stdout, "out"), daemon=True),
               threading.Thread(target=drain, args=(proc.stderr, "err"), daemon=True)]
    for t in readers:
        t.start()
    err = None
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - t0 > timeout:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            pid, status, ru = os.wait4(proc.pid, 0)
            err = f"hang: no exit after {timeout:g} s"
            break
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join(5)
    rss = ru.ru_maxrss * 1024
    if err is None and rss > RSS_LIMIT:
        err = f"memory: peak RSS {rss / 2**20:.0f} MiB"
    return {"rc": proc.returncode, "stdout": b"".join(bufs["out"]).decode(errors="replace")[-2000:],
            "stderr": b"".join(bufs["err"]).decode(errors="replace")[-2000:], "error": err,
            "seconds": time.monotonic() - t0, "peak_rss": rss}


def cli_check(path: Path, workdir: Path, expect_fail: bool | None) -> dict:
    """verify, info, size, export as subprocesses on ``path``; per command the problem or None."""
    out = {}
    target = workdir / f"cli-{os.getpid()}-{threading.get_ident()}.npz"
    for name, args in (("verify", ["verify", str(path)]), ("info", ["info", str(path)]), ("size", ["size", str(path)]),
                       ("export", ["export", str(path), "--format", "npz", "-o", str(target), "--force"])):
        r = run_cli(args)
        out[name] = {"rc": r["rc"], "problem": _cli_ok(name, r, bool(expect_fail)),
                     "stderr": r["stderr"].strip()[-300:], "peak_rss": r["peak_rss"]}
        with contextlib.suppress(OSError):
            target.unlink()
    return out


# =============================================================================== kills
def _verify_ok(path: Path) -> bool:
    from ladd_format import verify
    try:
        return not verify(path)
    except Exception:  # noqa: BLE001
        return False


def _npz_digest(path: Path) -> str | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            d = _Digest(False)
            d.feed({k: z[k] for k in z.files})
            return d.h.hexdigest()
    except Exception:  # noqa: BLE001
        return None


def _tree_digest(path: Path) -> str | None:
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


class KillBench:
    """SIGKILL ``ladd convert npz``, ``ladd export`` and ``ladd augment`` at random points."""

    def __init__(self, folder: Path, seed: int = 0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self._ready: dict[str, dict] = {}

    # -- inputs ---------------------------------------------------------------------------
    def _npz_input(self) -> Path:
        p = self.folder / "input.npz"
        if not p.exists():
            rng = np.random.default_rng(1)
            m = 256
            np.savez(p, images=rng.integers(0, 256, (m, 3, 32, 32), dtype=np.uint8), labels=np.arange(m) % 10,
                     dense_labels=_softmax(rng.normal(size=(m, 25, 10))).astype(np.float32), n=np.int64(5),
                     ratio=np.float64(0.625), num_classes=np.int64(10), mean=np.array(MEAN), std=np.array(STD))
        return p

    def _old_file(self) -> Path:
        p = self.folder / "old.dla.h5"
        if not p.exists():
            write_base(p, "float32", seed=99)
        return p

    def _labeler(self) -> tuple[Path, Path]:
        ck = self.folder / "labeler" / "labeler-e001.safetensors"
        plain = self.folder / "digits-plain.dla.h5"
        if not ck.exists():
            from ladd_format.labeler import TrainConfig, load_source, train_labeler
            data = load_source("digits")
            train_labeler(data, ck.parent, TrainConfig(arch="convnet-d3", arch_kwargs={"width": 8}, epochs=1,
                                                       save_epochs=(1,), batch_size=256, device="cpu"),
                          overwrite=True)
            from ladd_format import DLAWriter
            with DLAWriter(plain, num_classes=10, image_shape=(3, 32, 32), mean=(0.3,) * 3, std=(0.3,) * 3,
                           overwrite=True) as w:
                w.append(data.images[:96], data.labels[:96])
        return ck, plain

    def setup(self, which: str) -> dict:
        """The command line, a fresh-destination factory and the reference result of one kind of run."""
        if which in self._ready:
            return self._ready[which]
        dest_dir = self.folder / f"dest-{which}"
        dest_dir.mkdir(exist_ok=True)
        if which == "convert":
            src = self._npz_input()
            dest = dest_dir / "out.dla.h5"
            cmd = ["convert", "npz", str(src), "-o", str(dest), "--codec", "float32", "--force"]
            old = self._old_file().read_bytes()
        elif which in ("export_npz", "export_folder"):
            src = self.folder / "export-src.dla.h5"
            if not src.exists():
                from ladd_format.converters import ConvertOptions, convert
                convert("npz", self._npz_input(), src, ConvertOptions(overwrite=True))
            fmt = "npz" if which == "export_npz" else "folder"
            dest = dest_dir / ("out.npz" if fmt == "npz" else "out")
            cmd = ["export", str(src), "--format", fmt, "-o", str(dest), "--force"]
            old = None
        elif which == "augment":
            ck, plain = self._labeler()
            dest = dest_dir / "out.dla.h5"
            cmd = ["augment", str(plain), "--labeler", str(ck), "-o", str(dest), "-n", "3", "--device", "cpu",
                   "--batch-size", "16", "--codec", "uint8", "--force"]
            old = self._old_file().read_bytes()
        else:
            raise ValueError(which)
        self._clean(dest)
        t0 = time.monotonic()
        r = run_cli(cmd, timeout=300, address_space=1 << 40)
        full = time.monotonic() - t0
        if r["rc"] != 0:
            raise RuntimeError(f"reference run of {which} failed: {r['stderr'][-500:]}")
        ref = self._state_digest(dest, which)
        if which.startswith("export") and old is None:
            old_dest = dest_dir / ("old.npz" if which == "export_npz" else "old")
            self._clean(old_dest)
            r = run_cli(["export", str(self._old_file()), "--format", "npz" if which == "export_npz" else "folder",
                         "-o", str(old_dest)], timeout=120, address_space=1 << 40)
            old = old_dest
        self._ready[which] = {"cmd": cmd, "dest": dest, "full_s": full, "ref": ref, "old": old}
        return self._ready[which]

    @staticmethod
    def _clean(p: Path) -> None:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()

    @staticmethod
    def _state_digest(dest: Path, which: str):
        if which.startswith("export_npz"):
            return _npz_digest(dest) if dest.is_file() else None
        if which == "export_folder":
            return _tree_digest(dest)
        return None

    def _place_old(self, s: dict, which: str) -> None:
        dest = s["dest"]
        self._clean(dest)
        if which.startswith("export"):
            old = s["old"]
            if old.is_dir():
                shutil.copytree(old, dest)
            else:
                shutil.copyfile(old, dest)
        else:
            dest.write_bytes(s["old"])

    def kill_once(self, which: str, with_old: bool) -> dict:
        s = self.setup(which)
        dest = s["dest"]
        self._clean(dest)
        work = dest.with_name(f".{dest.name}.work")
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
        if with_old:
            self._place_old(s, which)
        old_state = (self._state_digest(dest, which) if which.startswith("export") else
                     (dest.read_bytes() if with_old else None))
        before = set(os.listdir(dest.parent))
        delay = self.rng.uniform(0.25, 1.05) * s["full_s"]
        proc = subprocess.Popen([LADD, *s["cmd"]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        time.sleep(delay)
        killed = proc.poll() is None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # what the destination holds now
        if not (dest.exists() or dest.is_symlink()):
            state = "absent"
        elif which.startswith("export"):
            now = self._state_digest(dest, which)
            state = "old" if (with_old and now == old_state) else ("complete" if now == s["ref"] else "invalid")
        else:
            if with_old and dest.read_bytes() == old_state:
                state = "old"
            else:
                state = "complete" if _verify_ok(dest) else "invalid"
        after = set(os.listdir(dest.parent))
        leftovers = sorted(after - before - {dest.name})
        if with_old is False and state == "absent" and not killed:
            state = "invalid"        # the command finished but wrote nothing
        return {"command": which, "delay_s": round(delay, 3), "full_s": round(s["full_s"], 3), "killed": killed,
                "old_present": with_old, "state": state, "leftovers": leftovers,
                "ok": state in ("absent", "old", "complete") and not (with_old and state == "absent")}


# =============================================================================== hostile pickles
class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def pickle_cases(folder: Path) -> list[dict]:
    """Inputs whose unpickling would create a marker file; each {"name", "args", "marker"}."""
    import pickle

    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = torch.rand(10, 3, 8, 8)
    labels = torch.arange(10) % 10
    cases = []

    def new(name):
        d = folder / name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        return d, str(folder / f"MARKER-{name}")

    def save(obj, path, legacy=False):
        if legacy:
            with open(path, "wb") as fh:
                pickle.dump(obj, fh, protocol=2)
        else:
            torch.save(obj, path)

    for fmt, img, lab, extra in (("tensors", "images.pt", "labels.pt", None),
                                 ("mtt", "images_best.pt", "labels_best.pt", None),
                                 ("datm", "images_best.pt", "labels_best.pt", "lr_best.pt"),
                                 ("glad", "images_best.pt", "labels_best.pt", None),
                                 ("tesla", "images_best.pt", "labels_best.pt", None)):
        for which in ("images", "labels") + (("lr",) if extra else ()):
            for legacy in (False, True):
                name = f"{fmt}-{which}{'-legacy' if legacy else ''}"
                d, marker = new(name)
                evil = _Evil(marker)
                save(evil if which == "images" else images, d / img, legacy and which == "images")
                save(evil if which == "labels" else (labels if fmt != "datm" else torch.randn(10, 10)), d / lab,
                     legacy and which == "labels")
                if extra:
                    save(evil if which == "lr" else torch.tensor(0.01), d / extra, legacy and which == "lr")
                cases.append({"name": name, "marker": marker,
                              "args": ["convert", fmt, str(d), "-o", str(d / "out.dla.h5"), "--dataset", "cifar10"]})
    for legacy in (False, True):
        name = f"dc{'-legacy' if legacy else ''}"
        d, marker = new(name)
        save({"data": [[images, labels]], "accs_all_exps": {"ConvNet": [_Evil(marker)]}},
             d / "res_DC_cifar10_ConvNet_1ipc.pt", legacy)
        cases.append({"name": name, "marker": marker,
                      "args": ["convert", "dc", str(d / "res_DC_cifar10_ConvNet_1ipc.pt"), "-o", str(d / "out.dla.h5"),
                               "--dataset", "cifar10"]})
    d, marker = new("npz-object")
    np.savez(d / "in.npz", images=np.array([_Evil(marker)], dtype=object), labels=np.arange(1))
    cases.append({"name": "npz-object", "marker": marker,
                  "args": ["convert", "npz", str(d / "in.npz"), "-o", str(d / "out.dla.h5")]})
    d, marker = new("auto-tensors")
    save(_Evil(marker), d / "images.pt")
    save(labels, d / "labels.pt")
    cases.append({"name": "auto-tensors", "marker": marker,
                  "args": ["convert", "auto", str(d), "-o", str(d / "out.dla.h5"), "--dataset", "cifar10"]})
    return cases


def run_pickle_case(case: dict, plain: Path | None = None) -> dict:
    if Path(case["marker"]).exists():
        os.unlink(case["marker"])
    r = run_cli(case["args"], timeout=120, address_space=1 << 40)
    ran = Path(case["marker"]).exists()
    stderr = r["stderr"].strip()
    out_path = Path(case["args"][case["args"].index("-o") + 1])
    problem = None
    if ran:
        problem = "the pickle ran code (marker file created)"
    elif r["error"]:
        problem = r["error"]
    elif "Traceback" in r["stderr"]:
        problem = "traceback: " + stderr[-200:]
    elif r["rc"] != 1:
        problem = f"exit status {r['rc']} (expected 1)"
    elif len(stderr.splitlines()) != 1:
        problem = f"{len(stderr.splitlines())} stderr lines"
    elif out_path.exists():
        problem = "an output was written"
    return {"name": case["name"], "rc": r["rc"], "code_ran": ran, "stderr": stderr[-300:], "problem": problem}


def labeler_pickle_case(folder: Path, plain: Path) -> dict:
    folder = Path(folder)
    marker = str(folder / "MARKER-labeler")
    ck = folder / "labeler-evil.safetensors"
    import pickle
    with open(ck, "wb") as fh:
        pickle.dump(_Evil(marker), fh)
    return {"name": "augment-labeler-pickle", "marker": marker,
            "args": ["augment", str(plain), "--labeler", str(ck), "-o", str(folder / "aug-out.dla.h5"), "--device",
                     "cpu", "-n", "2"]}


# =============================================================================== the run
def oracle_jobs(bases: dict[str, Path]) -> list[dict]:
    return [{"id": f"oracle-{name}", "kind": "probe", "path": str(p), "plan": plan_of(p)} for name, p in bases.items()]


def run_flips(pool: Pool, bases: dict[str, Path], per_base: int, seed: int, progress=True) -> dict:
    """Oracle + ``per_base`` mutations of each base through the pool; the measured data."""
    oracles = pool.map(oracle_jobs(bases))
    oracle = {name: oracles[f"oracle-{name}"] for name in bases}
    base_problems = {}
    for name, res in oracle.items():
        outs = res.get("outcomes", {})
        bad = {k: v for k, v in outs.items() if v[0] != "ok" and not (k == "verify" and v[0] == "valid")}
        if bad or "outcomes" not in res:
            k0 = next(iter(bad), "?")
            base_problems[name] = f"{k0}: {bad.get(k0, ['', res.get('harness_error', res.get('detail', ''))])[1][:300]}"
    jobs, muts = [], {}
    region_tries = Counter()
    for bi, (name, path) in enumerate(sorted(bases.items())):
        rng = random.Random(f"{seed}-{name}")
        for mut in make_mutations(name, path, per_base, rng):
            muts[mut.case] = mut
            jobs.append({"id": mut.case, "kind": "flip", "base_path": str(path), "mutation": asdict(mut),
                         "plan": plan_of(path)})
    random.Random(seed).shuffle(jobs)
    t0 = time.monotonic()
    last = [0.0]

    def tick(done, total):
        now = time.monotonic()
        if progress and (now - last[0] > 5 or done == total):
            last[0] = now
            log(f"flips: {done}/{total} done, {now - t0:.0f} s")
    results = pool.map(jobs, tick)
    cases = []
    for case_id, res in results.items():
        mut = muts[case_id]
        cls, detail = classify_flip(oracle[mut.base], res)
        region_tries[mut.region] += 1
        cases.append({"case": case_id, "base": mut.base, "kind": mut.kind, "region": mut.region, "name": mut.name,
                      "offset": mut.offset, "data": mut.data, "length": mut.length, "class": cls, "detail": detail,
                      "peak_rss": res.get("peak_rss", 0), "seconds": round(res.get("seconds", 0.0), 4),
                      "verify": (res.get("outcomes", {}).get("verify") or ["-", ""])[0]})
    cases.sort(key=lambda c: (c["base"], int(c["case"].rsplit("-", 1)[1])))
    return {"cases": cases, "base_problems": base_problems, "seconds": time.monotonic() - t0,
            "oracle_rss": {n: r.get("peak_rss", 0) for n, r in oracle.items()}}


def run_crafted(pool: Pool, folder: Path, bases: dict[str, Path], names=None, cli_inproc: bool = True) -> dict:
    paths = make_crafted(folder, bases, names)
    jobs = [{"id": f"crafted-{n}", "kind": "probe", "path": str(p), "plan": plan_of(p, marker=n in MARKED),
             "cli": cli_inproc} for n, p in paths.items()]
    results = pool.map(jobs)
    out = {}
    for n in paths:
        res = results[f"crafted-{n}"]
        cls, detail = classify_crafted(n, res)
        outs = res.get("outcomes", {})
        out[n] = {"class": cls, "detail": detail, "path": str(paths[n]), "peak_rss": res.get("peak_rss", 0),
                  "seconds": round(res.get("seconds", 0.0), 3), "verify": outs.get("verify"),
                  "readers": {k: v[0] for k, v in outs.items()},
                  "cli": {k: {"rc": v["rc"], "stderr": v["stderr"].strip()[-200:], "error": v["error"]}
                          for k, v in (res.get("cli") or {}).items()}}
    return out


def measure(args) -> dict:
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t_all = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="ladd-adversarial-"))
    data: dict = {"started": started, "seed": args.seed, "per_base": args.per_base, "workers": args.workers}
    try:
        log(f"writing base files in {tmp}")
        bases = make_base_files(tmp / "bases", args.seed)
        data["bases"] = {n: {"bytes": p.stat().st_size, "codec": BASES[n][0], "n": BASES[n][1],
                             "regions": dict(Counter(r.kind for r in region_map(p)))} for n, p in bases.items()}
        pool = Pool(tmp / "work", args.workers)
        try:
            log(f"flips: {args.per_base} per base x {len(bases)} bases")
            flips = run_flips(pool, bases, args.per_base, args.seed)
            data["flips"] = flips
            log(f"crafted: {len(CRAFTED)} cases")
            data["crafted"] = run_crafted(pool, tmp / "crafted", bases)
            data["worker_baseline_rss"] = pool.baseline_rss
            data["worker_starts"] = sum(w.starts for w in pool.workers)
        finally:
            pool.close()
        # CLI subprocesses: every crafted case and a sample of damaged files
        log("CLI as subprocesses: crafted cases")
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(args.workers) as ex:
            names = sorted(data["crafted"])
            done = ex.map(lambda n: cli_check(Path(data["crafted"][n]["path"]), tmp, expect_fail=True), names)
            cli = {"crafted": dict(zip(names, done)), "flips": []}
            sample = random.Random(args.seed).sample(flips["cases"], min(args.cli_sample, len(flips["cases"])))
            log(f"CLI as subprocesses: {len(sample)} damaged files")
            sdir = tmp / "cli-sample"
            sdir.mkdir()

            def one(c):
                p = sdir / f"{c['case']}.dla.h5"
                mut = Mutation(**{k: c[k] for k in ("case", "base", "kind", "region", "name", "offset", "data",
                                                    "length")})
                p.write_bytes(mut.apply(bases[c["base"]].read_bytes()))
                try:
                    return {"case": c["case"], "commands": cli_check(p, tmp, expect_fail=False)}
                finally:
                    p.unlink()
            cli["flips"] = list(ex.map(one, sample))
        data["cli"] = cli
        # kills
        log("kills")
        kb = KillBench(tmp / "kills", args.seed)
        kills = []
        for which, count in (("convert", args.kills), ("export_npz", max(1, args.kills // 2)),
                             ("export_folder", max(1, args.kills // 2)), ("augment", max(1, args.kills // 2))):
            for i in range(count):
                try:
                    kills.append(kb.kill_once(which, with_old=bool(i % 2)))
                except Exception as exc:  # noqa: BLE001
                    kills.append({"command": which, "state": "error", "ok": False, "error": f"{type(exc).__name__}: {exc}"[:400]})
                log(f"kill {which} #{i}: {kills[-1].get('state')}")
        data["kills"] = kills
        # pickles
        log("hostile pickles")
        pcases = pickle_cases(tmp / "pickles")
        try:
            _, plain = kb._labeler()
            pcases.append(labeler_pickle_case(tmp / "pickles", plain))
        except Exception as exc:  # noqa: BLE001
            log(f"labeler pickle case skipped: {exc}")
        with ThreadPoolExecutor(args.workers) as ex:
            data["pickles"] = list(ex.map(run_pickle_case, pcases))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    data["seconds"] = time.monotonic() - t_all
    if "flips" in data:  # keep the JSON small: a passing case keeps what the tables count
        data["flips"]["cases"] = [c if c["class"] not in PASSING else
                                  {k: c[k] for k in ("case", "base", "kind", "region", "class", "peak_rss")}
                                  for c in data["flips"]["cases"]]
    return data


# =============================================================================== summary and rendering
def summarize(d: dict) -> dict:
    cases = d["flips"]["cases"]
    by_class = Counter(c["class"] for c in cases)
    by_kind = defaultdict(Counter)
    by_region = defaultdict(Counter)
    by_base = defaultdict(Counter)
    for c in cases:
        by_kind[c["kind"]][c["class"]] += 1
        by_region[c["region"]][c["class"]] += 1
        by_base[c["base"]][c["class"]] += 1
    crafted = d.get("crafted", {})
    cli_fail = []
    for n, cmds in d.get("cli", {}).get("crafted", {}).items():
        for cmd, r in cmds.items():
            if r["problem"]:
                cli_fail.append(f"crafted {n}: ladd {cmd}: {r['problem']}")
    for rec in d.get("cli", {}).get("flips", []):
        for cmd, r in rec["commands"].items():
            if r["problem"]:
                cli_fail.append(f"flip {rec['case']}: ladd {cmd}: {r['problem']}")
    peak = max([c["peak_rss"] for c in cases] + [r["peak_rss"] for r in crafted.values()] + [0])
    cli_peak = max([r.get("peak_rss", 0) for cmds in d.get("cli", {}).get("crafted", {}).values()
                    for r in cmds.values()] + [r.get("peak_rss", 0) for rec in d.get("cli", {}).get("flips", [])
                                               for r in rec["commands"].values()] + [0])
    return {"flips": len(cases), "by_class": dict(by_class), "by_kind": {k: dict(v) for k, v in by_kind.items()},
            "by_region": {k: dict(v) for k, v in by_region.items()}, "by_base": {k: dict(v) for k, v in by_base.items()},
            "crafted_classes": dict(Counter(r["class"] for r in crafted.values())),
            "crafted_failing": sorted(n for n, r in crafted.items() if r["class"] not in PASSING),
            "cli_failures": cli_fail,
            "kills": len(d.get("kills", [])), "kills_invalid": sum(1 for k in d.get("kills", []) if not k.get("ok")),
            "pickles": len(d.get("pickles", [])),
            "pickles_ran_code": sum(1 for p in d.get("pickles", []) if p["code_ran"]),
            "pickles_failing": sum(1 for p in d.get("pickles", []) if p["problem"]),
            "peak_rss": peak, "cli_peak_rss": cli_peak}


def render(payload: dict, max_list: int = 60) -> str:
    d = payload["data"]
    s = summarize(d)
    bc = s["by_class"]
    base_sizes = ", ".join(f"{n} {v['bytes']:,} B" for n, v in d["bases"].items())
    lines = [
        f"- Machine: {payload['machine']}",
        f"- Date: {payload['date']}; command: `{payload['command']}` (re-render this text from "
        "`benchmarks/results/adversarial.json` with `python benchmarks/adversarial.py --render-only`; every "
        "non-passing case is listed there with a `--replay` line)",
        f"- Method: {s['flips']:,} seeded damages (seed {d['seed']}, {d['per_base']} per file) of {len(d['bases'])} small "
        f"files written by `DLAWriter` ({base_sizes}), "
        "each checked against the undamaged file's reader outputs (`open_dla` info/images/labels/dense/soft whole "
        "and per item, `DLADataset[i]`, `export` npz, `verify`) in batch workers (10 s alarm per call, peak RSS "
        f"from VmHWM; worker baseline {d.get('worker_baseline_rss', 0) / 2**20:.0f} MiB with torch loaded); "
        f"{len(d.get('crafted', {}))} crafted hostile files, {s['kills']} SIGKILLed writers, {s['pickles']} hostile "
        f"pickles. Whole run {d['seconds']:.0f} s. See the docstring of `benchmarks/adversarial.py` for the classes.",
        "",
        "| damages | unchanged | refused | silent | traceback | crash | hang | memory | multi-line error |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {s['flips']:,} | " + " | ".join(f"{bc.get(k, 0):,}" for k in
                                           ("unchanged", "refused", "silent", "traceback", "crash", "hang", "memory",
                                            "multiline")) + " |",
        "",
        "Tries per damage kind and region (non-passing in brackets):",
        "",
        "| kind | tries | not passing | | region | tries | not passing |",
        "|---|---:|---:|---|---|---:|---:|",
    ]
    kinds = sorted(s["by_kind"])
    regions = sorted(s["by_region"])
    for i in range(max(len(kinds), len(regions))):
        left = ["", "", ""]
        right = ["", "", ""]
        if i < len(kinds):
            c = s["by_kind"][kinds[i]]
            left = [kinds[i], f"{sum(c.values()):,}", f"{sum(v for k, v in c.items() if k not in PASSING):,}"]
        if i < len(regions):
            c = s["by_region"][regions[i]]
            right = [regions[i], f"{sum(c.values()):,}", f"{sum(v for k, v in c.items() if k not in PASSING):,}"]
        lines.append("| " + " | ".join(left) + " | | " + " | ".join(right) + " |")
    if d["flips"].get("base_problems"):
        lines += ["", "Undamaged files the library does not read back cleanly (the oracle is then what it does):", ""]
        lines += [f"- {n}: {msg}" for n, msg in d["flips"]["base_problems"].items()]
    lines += ["", f"Crafted hostile files ({len(d['crafted'])}): " +
              ", ".join(f"{k} {v}" for k, v in sorted(s["crafted_classes"].items())), "",
              "| case | result | detail |", "|---|---|---|"]
    for n, r in sorted(d["crafted"].items()):
        lines.append(f"| {n} | {r['class']} | {r['detail'][:140].replace('|', '/')} |")
    kills = d.get("kills", [])
    states = Counter(k.get("state") for k in kills)
    per_cmd = ", ".join(f"{k} {v}" for k, v in sorted(Counter(x["command"] for x in kills).items()))
    lines += ["", f"Kills: {len(kills)} SIGKILLed runs ({per_cmd}); "
              f"destination afterwards: {', '.join(f'{k} {v}' for k, v in sorted(states.items()))}; "
              f"destinations left invalid: {s['kills_invalid']}; runs that left temporary files beside it: "
              f"{sum(1 for k in kills if k.get('leftovers'))}."]
    lines += [f"Pickles: {s['pickles']} hostile inputs; code ran {s['pickles_ran_code']} times; "
              f"not refused cleanly in one line: {s['pickles_failing']}."]
    lines += [f"CLI as subprocesses (crafted files and {len(d.get('cli', {}).get('flips', []))} damaged files, "
              f"verify/info/size/export): {len(s['cli_failures'])} problems."]
    lines += [f"Peak RSS of any case: {s['peak_rss'] / 2**20:.0f} MiB in a worker that holds torch; of any CLI "
              f"subprocess (verify/info/size/export): {s['cli_peak_rss'] / 2**20:.0f} MiB."]
    failing = [c for c in d["flips"]["cases"] if c["class"] not in PASSING]
    if failing:
        lines += ["", f"Non-passing damages ({len(failing)}; first {min(max_list, len(failing))} by class):", ""]
        order = {k: i for i, k in enumerate(CLASSES)}
        for c in sorted(failing, key=lambda c: (order.get(c["class"], 99), c["base"]))[:max_list]:
            lines.append(f"- {c['class']}: {c['case']} {c['kind']} {c['region']} ({c['name']}) at 0x{c['offset']:x}"
                         f"{' len ' + str(c['length']) if c['kind'] == 'truncate' else ' -> ' + c['data'][:16]}: "
                         f"{c['detail'][:160]}")
    if s["cli_failures"]:
        lines += ["", "CLI problems (first 20):", ""] + [f"- {x[:200]}" for x in s["cli_failures"][:20]]
    bad_kills = [k for k in kills if not k.get("ok")]
    if bad_kills:
        lines += ["", "Kills that left the destination invalid:", ""] + [
            f"- {k['command']} after {k.get('delay_s', '?')} s (old file present: {k.get('old_present')}): "
            f"{k.get('state')} {k.get('error', '')}" for k in bad_kills]
    bad_p = [p for p in d.get("pickles", []) if p["problem"]]
    if bad_p:
        lines += ["", "Pickles not refused cleanly:", ""] + [f"- {p['name']}: {p['problem']} ({p['stderr'][-120:]!r})"
                                                             for p in bad_p]
    return "\n".join(lines)


def replay(args) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ladd-replay-"))
    bases = make_base_files(tmp / "bases", args.seed)
    if args.replay_crafted:
        path = make_crafted(tmp / "crafted", bases, [args.replay_crafted])[args.replay_crafted]
        plan = plan_of(path, marker=args.replay_crafted in MARKED)
    else:
        base, where, value = args.replay
        if where == "truncate":
            mut = Mutation("replay", base, "truncate", "?", "?", int(value, 0), "", int(value, 0))
        else:
            mut = Mutation("replay", base, "replay", "?", "?", int(where, 0), value, len(value) // 2)
        path = tmp / f"{base}-damaged.dla.h5"
        path.write_bytes(mut.apply(bases[base].read_bytes()))
        plan = plan_of(bases[base])
    signal.signal(signal.SIGALRM, _alarm)
    res = probe(path, plan, tmp)
    res["cli"] = cli_inprocess(path, tmp)
    if not args.replay_crafted:
        orig = probe(bases[args.replay[0]], plan, tmp)
        print("class:", *classify_flip(orig, res))
        for k, v in res["outcomes"].items():
            if v != orig["outcomes"].get(k):
                print(f"  {k}: {v[0]} {v[1][:300]}  (original: {orig['outcomes'].get(k, ['-'])[0]})")
    else:
        print("class:", *classify_crafted(args.replay_crafted, res))
        for k, v in res["outcomes"].items():
            print(f"  {k}: {v[0]} {v[1][:300]}")
    for k, v in res["cli"].items():
        print(f"  ladd {k}: rc {v['rc']} {v['error'] or ''} stderr {v['stderr'].strip()[-200:]!r}")
    print(f"file kept at {path}")
    return 0


def main(argv=None) -> int:
    from _common import Output, add_output_args

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few hundred cases; print only unless --data-dir/--results")
    ap.add_argument("--per-base", type=int, default=None, help="damages per base file (default 800; --quick 45)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    ap.add_argument("--cli-sample", type=int, default=None, help="damaged files also run through the CLI "
                    "as subprocesses (default 40; --quick 6)")
    ap.add_argument("--kills", type=int, default=None, help="SIGKILLed convert runs (export/augment: half; default 8)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--replay", nargs=3, metavar=("BASE", "OFFSET|truncate", "HEX|LENGTH"))
    ap.add_argument("--replay-crafted", metavar="NAME", choices=CRAFTED)
    add_output_args(ap)
    args = ap.parse_args(argv)
    if args.replay or args.replay_crafted:
        return replay(args)
    args.per_base = args.per_base or (45 if args.quick else 800)
    args.cli_sample = args.cli_sample if args.cli_sample is not None else (6 if args.quick else 40)
    args.kills = args.kills if args.kills is not None else (2 if args.quick else 8)
    out = Output.from_args(args)
    if out.render_only:
        payload = out.load(NAME)
    else:
        payload = out.save(NAME, measure(args))
    section = render(payload)
    print(section)
    out.update(KEY, TITLE + "\n\n" + section)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2])
    else:
        raise SystemExit(main())
