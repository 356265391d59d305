"""Converter ``auto``: ask each converter's ``sniff`` whether it recognises INPUT, in the order of
:data:`ORDER`, and hand INPUT to the first that does, saying which and why (a note
``auto: detected <format> (<reason>)``). The order, and why it is this one:

1. ``npz`` -- an ``.npz`` file (a file name decides);
2. ``glad``, ``datm``, ``tesla``, ``mtt`` -- ``images_<it>.pt`` / ``images_best.pt`` +
   ``labels_*.pt`` run folders, or one such images file; the four are told apart by each one's evidence hook (``runs.RunFolder.evidence``, asked by ``runs.recognise``)
   (5-digit iterations -> GLaD; ``lr_*.pt`` or 2-D float logits -> DATM; 2-D probabilities ->
   TESLA; else MTT), so at most one of them answers; they come before the DC results file (4.)
   because a GLaD run folder also holds GLaD's final ``res_*.pt``. DD-Ranking's published sets
   (unsuffixed ``images.pt`` + ``labels.pt``, a folder or its ``images.pt``) are judged by the same
   evidence: ``lr.pt`` -> DATM (the learned learning rate only DATM saves), 2-D float logits ->
   DATM, 2-D probabilities -> TESLA;
3. ``tensors`` -- unsuffixed ``images.pt`` + ``labels.pt`` with 1-D class-index labels and no
   ``lr.pt``: MTT, GLaD, TESLA and DC/DSA/DM all save such labels, so the files do not say the
   method; ``tensors`` records none rather than a guess (``mtt`` would claim one);
4. ``dc`` -- a ``res_*.pt`` results file or a folder holding one, or DD-Ranking's
   ``images_<METHOD>_<DATASET>_<ipc>_best.pt`` + ``labels_..._best.pt`` tensors (the file or a
   folder holding them; the name gives the method and the dataset);
5. ``sre2l``, ``rded`` -- image trees whose class folders are named by number
   (``new???/class???_id???.jpg``; ``syn_data/`` or 5-digit folders);
6. ``folder`` -- any other tree of class folders holding images (the most general, last).

When none answers, one short line says so and points to ``ladd convert --help``, which lists the
formats and what each reads (:data:`UNKNOWN`).
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import require_regular_file
from ..errors import InputError
from . import ConversionResult, Converter, ConvertOptions, Option, _REGISTRY, convert as convert_format, register

ORDER = ("npz", "glad", "datm", "tesla", "mtt", "tensors", "dc", "sre2l", "rded", "folder")
#: auto's refusal when no format recognises INPUT ({what}: input file, layout): one short line
UNKNOWN = ("auto: not a known {what}, no format recognised it; `ladd convert --help` lists the formats and what "
           "each reads (or name one: ladd convert FORMAT)")


def sniff_order() -> tuple[str, ...]:
    """:data:`ORDER`, then any registered converter it does not list (a new converter file), in
    name order: every converter is asked."""
    rest = sorted(name for name in _REGISTRY if name not in ORDER and name != "auto")
    return tuple(name for name in ORDER if name in _REGISTRY) + tuple(rest)


def detect(source: Path) -> tuple[str, str]:
    """``(format, reason)`` of the first converter in :data:`ORDER` whose ``sniff`` recognises
    ``source``; :class:`InputError` (:data:`UNKNOWN`) when none does."""
    source = Path(source)
    if not source.exists():
        raise InputError("no such file or folder", source)
    if not source.is_dir():
        require_regular_file(source)         # a FIFO or device: refused before any sniff opens it
    for name in sniff_order():
        reason = _REGISTRY[name].sniff(source)
        if reason:
            return name, reason
    what = "input file" if source.is_file() else "layout"
    raise InputError(UNKNOWN.format(what=what), source)


@register
class Auto(Converter):
    name = "auto"
    summary = "recognise the layout (the formats' sniff, in a stated order) and convert with that format"
    looks_for = "any of the above"

    @property
    def options(self) -> tuple[Option, ...]:      # every option some format reads; the chosen format checks
        seen: dict[str, Option] = {}
        for name in sniff_order():
            seen.update((option.name, option) for option in _REGISTRY[name].options)
        return tuple(seen.values())

    def choose(self, source: Path) -> tuple[Converter, str]:
        fmt, reason = detect(source)
        return _REGISTRY[fmt], reason

    def convert(self, source: Path, output: Path, options: ConvertOptions) -> ConversionResult:
        """As :func:`ladd_format.converters.convert` with ``auto`` (the running conversion's progress)."""
        return convert_format(self.name, source, output, options)
