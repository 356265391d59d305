"""Student accuracies as text: one result (``91.3 +- 1.4%``) and the demo's table of rows.

Pure text (no torch, no drawing): ``ladd evaluate`` prints :func:`accuracy_text`, the demo prints
:func:`accuracy_table` and puts it in its ``report.md`` (:mod:`ladd_format.viz.demo_figures`).
"""

from __future__ import annotations


def accuracy_text(mean: float, std: float, seeds: int, decimals: int = 1, widths: tuple[int, int] = (0, 0),
                  count: bool = False) -> str:
    """A test accuracy over ``seeds`` students, in percent: ``"91.3 +- 1.4%"`` (with ``count``:
    ``"91.3 +- 1.4% (3 seeds)"``), or ``"91.3% (1 seed)"``, where one student gives no spread to
    show (``mean`` and ``std`` are fractions; ``widths``: the mean's and the std's field widths)."""
    text = f"{100 * mean:>{widths[0]}.{decimals}f}"
    if seeds == 1:
        return f"{text}% (1 seed)"
    return f"{text} +- {100 * std:>{widths[1]}.{decimals}f}%" + (f" ({seeds} seeds)" if count else "")


def accuracy_table(rows: list[dict], n: int = 5) -> list[str]:
    """The demo's table as aligned text lines (also the markdown table's content)."""
    lines = [f"{'method':<11} {'IPC':>4} {'labels':<22} {'zip bytes':>10} {'extra':>7} {'accuracy':>15}"]
    what = {"hard": "hard", "LADD": f"hard + {n}x{n} dense", "baseline++": "hard (IPC+1 images)"}
    for r in rows:
        accuracy = accuracy_text(r["mean"], r["std"], len(r.get("accuracies") or [0, 0]), widths=(7, 4))
        lines.append(f"{r['method']:<11} {r['ipc']:>4} {what[r['method']]:<22} {r['bytes']:>10,} "
                     f"{r['extra_pct']:>+6.1f}% {accuracy:>15}")
    return lines
