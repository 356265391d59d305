"""Progress that a terminal and a log can both see.

Every long step of the package (``ladd train-labeler``, ``ladd augment``, ``ladd evaluate``,
``ladd demo``; ``ladd convert``, ``verify``, ``size`` and ``export`` after a ``delay`` of 2 s, so that a small
set's run prints nothing more) reports through :class:`Progress`:

- when the stream is a terminal: a tqdm bar;
- otherwise (a log file, CI, ``nohup``, ``| tee``), where tqdm with ``disable=None`` prints
  nothing, plain lines such as::

      augment: 120/400 images (30%), 12.1 s elapsed, ~28 s left

  one at the first update, then at most one every ``interval`` seconds (default
  :data:`DEFAULT_INTERVAL`, or the environment variable ``LADD_PROGRESS_INTERVAL``), and one for
  the last state (when ``done`` reaches ``total``, or at :meth:`Progress.close`); each is flushed.
  A run that never reported any progress writes nothing at all (a closing ``0 images written``
  would only contradict the command's own last line).

No torch here: this module belongs to the format core.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, TextIO

#: seconds between two plain lines when neither ``interval`` nor ``LADD_PROGRESS_INTERVAL`` says otherwise
DEFAULT_INTERVAL = 5.0
INTERVAL_VARIABLE = "LADD_PROGRESS_INTERVAL"
#: fraction of the work done in this run before a plain line estimates the time left
MIN_ESTIMATE = 0.02


def default_interval() -> float:
    """``LADD_PROGRESS_INTERVAL`` when it is a number >= 0, else :data:`DEFAULT_INTERVAL`."""
    try:
        value = float(os.environ.get(INTERVAL_VARIABLE, ""))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value >= 0 else DEFAULT_INTERVAL


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):     # no isatty, or a closed stream
        return False


def format_seconds(seconds: float) -> str:
    """``12.1 s``, ``4 min 05 s``, ``2 h 03 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


class Progress:
    """One long step's progress (module docstring).

    Args:
        label: what runs, the start of every plain line (``augment``, ``evaluate``).
        total: the amount of work, in ``unit``; ``None`` when unknown.
        unit: what is counted (``images``, ``epochs``).
        initial: work already done before this run (a resumed pass); the time left is estimated
            from this run's rate only.
        stream: where to write (default: ``sys.stderr`` at creation).
        interval: least seconds between two plain lines (default: :func:`default_interval`).
        clock: a monotonic clock in seconds (tests pass a fake one).
        tty: force the terminal (tqdm) or the plain-line form; default: ``stream.isatty()``.
        disable: write nothing at all.
    """

    def __init__(self, label: str, total: float | None = None, unit: str = "it", *, initial: float = 0,
                 stream: TextIO | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic, tty: bool | None = None, disable: bool = False,
                 delay: float = 0.0):
        self.label, self.total, self.unit = label, total, unit
        self.initial = self.done = initial
        self.stream = sys.stderr if stream is None else stream
        self.interval = default_interval() if interval is None else float(interval)
        self.clock = clock
        self.start = clock()
        self.postfix = ""
        self.disable = disable
        self.tty = is_terminal(self.stream) if tty is None else tty
        self._last_time: float | None = None          # when the last plain line was written
        self._last_state: tuple | None = None          # the state it showed (done, total, postfix)
        self._bar = None
        self._closed = False
        self._reported = False                         # has set() or update() been called?
        self.delay = float(delay)       # nothing is shown before this many seconds (short runs stay quiet)
        if self.tty and not disable:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit=f" {unit}", initial=initial, file=self.stream,
                             dynamic_ncols=True, leave=True, delay=self.delay)

    # -- reporting ---------------------------------------------------------------------------------
    def update(self, n: float = 1, postfix: str | None = None) -> None:
        """``n`` more units done."""
        self.set(self.done + n, postfix=postfix)

    def set(self, done: float, total: float | None = None, postfix: str | None = None) -> None:
        """``done`` units done in all (and the total, when it becomes known or changes)."""
        if total is not None:
            self.total = total
        if postfix is not None:
            self.postfix = postfix
        previous, self.done = self.done, done
        self._reported = True
        if self.disable:
            return
        if self._bar is not None:
            if total is not None:
                self._bar.total = total
            if postfix is not None:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(done - previous)
            return
        now = self.clock()
        if now - self.start < self.delay:
            return
        finished = self.total is not None and done >= self.total
        if self._last_time is None or finished or now - self._last_time >= self.interval:
            self._emit(now)

    def write(self, line: str) -> None:
        """A message line that does not break the bar (``tqdm.write`` in a terminal)."""
        if self.disable:
            return
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            self._print(line)

    def line(self, now: float | None = None) -> str:
        """The plain line of the current state."""
        elapsed = (self.clock() if now is None else now) - self.start
        if self.total:
            pct = 100.0 * self.done / self.total
            text = f"{self.label}: {_count(self.done)}/{_count(self.total)} {self.unit} ({pct:.0f}%), " \
                   f"{format_seconds(elapsed)} elapsed"
            fresh = self.done - self.initial
            # no estimate from the first 2% of the work (start-up dominates it: a first line
            # read "~4 h left" for a run of one minute)
            if self.done < self.total and fresh > 0 and elapsed > 0 and fresh >= MIN_ESTIMATE * self.total:
                text += f", ~{format_seconds((self.total - self.done) * elapsed / fresh)} left"
        else:
            text = f"{self.label}: {_count(self.done)} {self.unit}, {format_seconds(elapsed)} elapsed"
        return text + (f"; {self.postfix}" if self.postfix else "")

    def close(self, ok: bool = True) -> None:
        """End the report: the bar is closed; in plain form the last state is written unless it was
        just written (nothing more after a failure, ``ok=False``: the error says what happened, nor
        when nothing was ever reported)."""
        if self._closed:
            return
        self._closed = True
        if self.disable:
            return
        if self._bar is not None:
            self._bar.close()
        elif ok and self._reported and self._state() != self._last_state and (self._last_time is not None
                                                            or self.clock() - self.start >= self.delay):
            self._emit(self.clock())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)

    # -- internals ---------------------------------------------------------------------------------
    def _state(self) -> tuple:
        return (self.done, self.total, self.postfix)

    def _emit(self, now: float) -> None:
        self._last_time = now
        self._last_state = self._state()
        self._print(self.line(now))

    def _print(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):       # a closed or broken stream: progress is not worth failing for
            pass


__all__ = ["DEFAULT_INTERVAL", "Progress", "default_interval", "format_seconds", "is_terminal"]
