"""Relabel streams read from upstream folders: the per-epoch crop soft labels of SRe2L-style distillation.

The SRe2L relabel converter (``ladd convert sre2l EXP --relabel DIR``, and ``auto``) is built on this
package:

- :mod:`.sre2l` reads and checks an SRe2L/CDA/G-VBSM-layout folder (``epoch_{e}/batch_{b}.tar``)
  and LPLD's variant of it (the same files plus ``sampler_indices_epoch.json``) into numpy arrays;
- :mod:`.replay` rebuilds, once and explicitly, which image each slot holds (SRe2L stores no image
  index: its training replays a seeded ``RandomSampler``);
- :mod:`.boxes` turns the stored crop fractions into integer source pixels (numpy only);
- :mod:`.convert` decides the stream (image order, association, mode, boxes, mix, codec,
  provenance), writes it batch by batch beside the converted images, and ``--check-teacher``
  recomputes a few records with a teacher. It is imported by the converter when ``--relabel`` is
  given (it needs the labeler), not here.
"""

from ..extras import require

# before anything imports torch: without the extra, one line naming it (not an ImportError from deep inside)
require("torch", "reading relabel folders (ladd_format.relabel)")

from .boxes import fractions_to_pixels  # noqa: E402
from .replay import sre2l_association, sre2l_indices  # noqa: E402
from .sre2l import RelabelBatch, RelabelFolder, read_relabel_folder, scan_relabel_folder  # noqa: E402

__all__ = ["RelabelBatch", "RelabelFolder", "fractions_to_pixels", "read_relabel_folder", "scan_relabel_folder",
           "sre2l_association", "sre2l_indices"]
