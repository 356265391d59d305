"""Students: train a fresh model on a D or D_LA file and test it (``ladd evaluate``, the demo's rows).

:mod:`.student` trains one student, :mod:`.pool` trains several in worker processes,
:mod:`.evaluate` runs a file's seeds, :mod:`.testset` loads and checks test data, and
:mod:`.accuracy` writes accuracies as text. Needs the ``torch`` extra.
"""

from ..extras import require

# before anything imports torch: without the extra, one line naming it (not an ImportError from deep inside)
require("torch", "training and testing students (ladd evaluate, ladd demo)")
