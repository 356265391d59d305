"""Converter ``sre2l``: the recovered images of an SRe2L run (facts in ``docs/upstream-formats.md``)::

    <exp>/new{cls:03d}/class{cls:03d}_id{i:03d}.jpg        224x224 for ImageNet

SRe2L denormalises with the ImageNet mean/std, clamps to [0, 1], truncates ``uint8(x * 255)`` and
saves JPEG at PIL's default quality: the files are stored as decoded (uint8), and the report says the
float images were lost upstream. The label is the number in the folder name (not the folder's
position: folders may be missing for some classes); the class count is ``--num-classes``, else the
``--dataset`` preset, else the largest number + 1 (said in a note). Without ``--dataset`` or
``--mean/--std`` the normalisation recorded is SRe2L's ImageNet mean/std.

SRe2L's relabel soft labels (``epoch_*/batch_*.tar``: logits of the random crops of each training
epoch, without image ids), or LPLD's (the same plus ``sampler_indices_epoch.json``), are stored as a
relabel stream (spec 4.7) with ``--relabel DIR``: :mod:`ladd_format.relabel.convert` rebuilds the
image association once (SRe2L's sampler replayed from ``--sampler-seed``, default SRe2L's 42, in
ImageFolder's order; LPLD's stored order), rounds the crop fractions to Pillow's integer boxes on
the stored images, and writes the files' logits through ``--stream-codec`` at
``--stream-temperature``; ``--check-teacher`` recomputes a few records with a teacher. The stream
options need ``--relabel``; torch is needed only then. Without ``--relabel``, a relabel folder
found in INPUT or beside it is named in a note.

Provenance: the image tree is one ``inputs`` entry (folder, file count, total size, one SHA-256 over
the sorted ``(relative path, file sha256)`` list), not one entry per image -- a distilled ImageNet
has thousands of files.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError, LaddError
from ..presets import IMAGENET_MEAN, IMAGENET_STD
from ..stream import DEFAULT_STREAM_CODEC
from ..stream.defaults import CHECK_SLOTS, SRE2L_CROP_SIDE, SRE2L_SEED
from . import COMMON, ConversionResult, Converter, ConvertOptions, Option, register
from .images import class_folders, image_files, numbered_class_folders, numbered_rawset, read_numbered_folders
from .rawset import finish
from .writing import WRITE_PROGRESS

FOLDER = r"new(\d{3,})"

RELABEL = Option("relabel", "path", "sre2l: an SRe2L/CDA/G-VBSM/EDC relabel folder (epoch_<e>/batch_<b>.tar) or LPLD's "
                 "(plus sampler_indices_epoch.json), stored as a relabel stream (docs/relabel.md).", common=False)
SAMPLER_SEED = Option("sampler_seed", "int", "--relabel: the seed of SRe2L's sampler replay (its --fkd-seed); "
                      "folders that store each slot's image (LPLD, G-VBSM, EDC) replay nothing.",
                      default=SRE2L_SEED, common=False)
BATCH_SIZE = Option("batch_size", "int", "--relabel: the relabel run's batch size; default: len(flip) of "
                    "epoch_0/batch_0, as SRe2L's reader. The files must hold batches of it.", common=False)
CROP_SIZE = Option("crop_size", "int", "--relabel: the side the crops were resized to (SRe2L's --input-size); the "
                   "CutMix boxes must fit it.", default=SRE2L_CROP_SIDE, common=False)
STREAM_CODEC = Option("stream_codec", "text", "--relabel: how the stream stores the teacher's logits: a codec of "
                      "--codec (probabilities softmax(z/T)) or logits:float16 / logits:float32 (logits:float16 keeps "
                      "SRe2L's float16 values bit for bit); default as shown (its low-rank tail fitted on the first "
                      "records' logits), or uint8 for a set of few classes (docs/relabel.md).",
                      default=DEFAULT_STREAM_CODEC, common=False)
STREAM_TEMPERATURE = Option("stream_temperature", "float", "--relabel: the temperature T of the stored labels.",
                            default=1.0, common=False)
TEACHER_ARCH = Option("teacher_arch", "text", "--relabel: the teacher's architecture, recorded in /stream/teacher "
                      "(default unknown); with --check-teacher and a state_dict file, the torchvision "
                      "architecture to build.", common=False)
CHECK_TEACHER = Option("check_teacher", "path", "--relabel: a teacher (a ladd train-labeler checkpoint, or a "
                       "state_dict with --teacher-arch) that recomputes --check-slots records from the stored "
                       "boxes; the largest logit difference is reported.", common=False)
CHECK_SLOTS_OPTION = Option("check_slots", "int", "--check-teacher: how many records it recomputes.",
                            default=CHECK_SLOTS, common=False)
#: the options of ``--relabel`` (each needs it)
STREAM_OPTIONS = (SAMPLER_SEED, BATCH_SIZE, CROP_SIZE, STREAM_CODEC, STREAM_TEMPERATURE, TEACHER_ARCH, CHECK_TEACHER,
                  CHECK_SLOTS_OPTION)
#: SRe2L denormalises with the ImageNet mean/std: the normalisation recorded without --dataset or --mean/--std
SRE2L_MEAN, SRE2L_STD = IMAGENET_MEAN, IMAGENET_STD
UPSTREAM = "SRe2L clamped to [0, 1], truncated uint8(x*255) and saved JPEG at PIL's default quality (75)"


def relabel_folder(source: Path) -> Path | None:
    """A folder holding SRe2L relabel output (``epoch_*/batch_*.tar``): INPUT itself or a sibling."""
    candidates = [source]
    try:
        candidates += sorted(p for p in source.parent.iterdir() if p.is_dir() and p != source)
    except OSError:
        pass
    for folder in candidates:
        try:
            if next(folder.glob("epoch_*/batch_*.tar"), None) is not None:
                return folder
        except OSError:
            continue
    return None


def sniff_layout(path: Path) -> str | None:
    """A reason when ``path`` holds ``new???/class???_id???.jpg`` folders."""
    try:
        if not path.is_dir():
            return None
        for folder in class_folders(path):
            if re.fullmatch(FOLDER, folder.name) and any(
                    re.fullmatch(r"class\d{3,}_id\d{3,}\.jpg", p.name) for p in folder.iterdir()):
                return f"folders new???/ with class???_id???.jpg files, e.g. {folder.name}/"
    except (OSError, LaddError):
        pass
    return None


@register
class Sre2l(Converter):
    name = "sre2l"
    summary = "SRe2L recovered images: <exp>/new<cls:03d>/class<cls:03d>_id<i:03d>.jpg"
    looks_for = "new???/class???_id???.jpg"
    options = COMMON + (RELABEL,) + STREAM_OPTIONS

    def sniff(self, path: Path) -> str | None:
        return sniff_layout(path)

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        relabel = options.get(RELABEL.name)
        stray = [o.flag for o in STREAM_OPTIONS if o.name in options.format_options]
        if relabel is None and stray:
            raise InputError(f"{', '.join(stray)} describe{'s' if len(stray) == 1 else ''} a relabel stream: give "
                             "--relabel DIR too")
        if CHECK_SLOTS_OPTION.name in options.format_options and options.get(CHECK_TEACHER.name) is None:
            raise InputError("--check-slots needs --check-teacher")
        read = read_numbered_folders(source, FOLDER, "new000/", stream=True)
        raw = numbered_rawset(read, options, "sre2l", source, lambda c: f"new{c:03d}", UPSTREAM,
                              (SRE2L_MEAN, SRE2L_STD))
        if relabel is not None:
            return self._with_stream(source, output, options, raw, Path(relabel))
        found = relabel_folder(source)
        if found is not None:
            raw.notes.append(f"SRe2L relabel soft labels found in {found} (epoch_*/batch_*.tar) are not converted "
                             f"without --relabel: give --relabel {found} to store them as a relabel stream")
            raw.report["soft_labels"] = "SRe2L relabel files found, not converted (no --relabel)"
        else:
            raw.report["soft_labels"] = "none converted (SRe2L's relabel files are stored only with --relabel)"
        return finish(raw, output, options, self.name)

    def _with_stream(self, source: Path, output: Path, options: ConvertOptions, raw, folder: Path) -> ConversionResult:
        """The images and the relabel stream of ``folder`` (:mod:`ladd_format.relabel.convert`)."""
        from ..relabel.convert import RelabelOptions, check_teacher, prepare_stream

        given = {o.name: options.get(o.name) for o in STREAM_OPTIONS}
        given[STREAM_CODEC.name] = options.format_options.get(STREAM_CODEC.name)   # None: the default, by C
        stream = prepare_stream(RelabelOptions(folder=folder, **given), image_root=source,
                                stored_paths=stored_order(source), image_shape=tuple(raw.images.shape[1:]))
        _stream_classes(raw, options, stream.folder.num_classes, folder)
        if stream.folder.layout != "sre2l" and SAMPLER_SEED.name in options.format_options:
            raise InputError(f"--sampler-seed: the {stream.folder.layout} folder stores the image of every slot, so there "
                             "is no sampler to replay", folder)
        raw.inputs.append(stream.digest())
        stream.fit_tail()                   # a codec with a low-rank tail: its basis, before the writer opens
        raw.report["soft_labels"] = "the relabel folder, as /stream (spec 4.7)"
        raw.notes += stream.notes
        if given["check_teacher"] is not None:
            checked = check_teacher(stream, raw.images, Path(given["check_teacher"]), given["teacher_arch"],
                                    given["check_slots"])
            stream.report["teacher_check"] = checked
            raw.notes.append(f"--check-teacher {checked['checkpoint']}: largest |logit difference| over "
                             f"{checked['records']} recomputed records: {checked['max_abs_logit_difference']:.4g} "
                             f"(against {checked['compared_with']})")
        raw.report["stream"] = stream.report
        raw.stream = stream
        outer = WRITE_PROGRESS.get()            # one total: the images, then the stream's records
        stream.progress, stream.progress_base = outer, len(raw.images)
        images_then_records = None if outer is None else (
            lambda done, total: outer(done, total + stream.num_records))
        token = WRITE_PROGRESS.set(images_then_records)
        try:
            return finish(raw, output, options, self.name)
        finally:
            WRITE_PROGRESS.reset(token)


def stored_order(source: Path) -> list[str]:
    """The paths (relative to ``source``, POSIX) of the images this converter stores, in its order: the
    ``new???`` folders by number, the files in each in natural order (``read_numbered_folders``)."""
    folders, _ = numbered_class_folders(source, FOLDER)
    return [file.relative_to(source).as_posix() for _, folder in folders for file in image_files(folder, natural=True)]


def _stream_classes(raw, options: ConvertOptions, width: int, folder: Path) -> None:
    """The set's class count against the relabel logits' width ``width``: given (``--num-classes``,
    ``--dataset``), they must agree; else the width is the class count (it must cover the folders)."""
    if options.num_classes is not None or options.dataset is not None:
        if width != raw.num_classes:
            given = f"--num-classes {options.num_classes}" if options.num_classes is not None else \
                f"--dataset {options.dataset}"
            raise InputError(f"the relabel logits have {width:,} classes, the set {raw.num_classes:,} ({given})",
                             folder)
        return
    top = int(raw.labels.max())
    if width <= top:
        raise InputError(f"the relabel logits have {width:,} classes but the image folder new{top:03d} is class {top}",
                         folder)
    raw.num_classes = width
    raw.notes = [n for n in raw.notes if not n.startswith("num_classes not given")]
    raw.notes.append(f"num_classes not given (--dataset or --num-classes): taken from the relabel logits, {width}")
    raw.report["num_classes"] = "the width of the relabel logits"
