"""Relabel streams read from upstream folders: the per-epoch crop soft labels of SRe2L-style distillation.

This package holds the READING half of the SRe2L relabel converter, as a library with no command:

- :mod:`.sre2l` reads and checks an SRe2L/CDA/G-VBSM-layout folder (``epoch_{e}/batch_{b}.tar``)
  and LPLD's variant of it (the same files plus ``sampler_indices_epoch.json``) into numpy arrays;
- :mod:`.replay` rebuilds, once and explicitly, which image each slot holds (SRe2L stores no image
  index: its training replays a seeded ``RandomSampler``);
- :mod:`.boxes` turns the stored crop fractions into integer source pixels (numpy only).

Nothing here writes a D_LA file (the container holds no relabel stream), and no ``ladd`` command
calls this package.
"""

from ..extras import require

# before anything imports torch: without the extra, one line naming it (not an ImportError from deep inside)
require("torch", "reading relabel folders (ladd_format.relabel)")

from .boxes import fractions_to_pixels  # noqa: E402
from .replay import sre2l_association, sre2l_indices  # noqa: E402
from .sre2l import RelabelBatch, RelabelFolder, read_relabel_folder, scan_relabel_folder  # noqa: E402

__all__ = ["RelabelBatch", "RelabelFolder", "fractions_to_pixels", "read_relabel_folder", "scan_relabel_folder",
           "sre2l_association", "sre2l_indices"]
