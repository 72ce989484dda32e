"""Progress of long CLI work on stderr: the one reporter of index, eval, distill, train and
model install.

On a terminal one line is redrawn in place (at most every ``min_interval``, and at each
stage's end): a bar, the count, the rate and the time left, or a caller's own text. Where
stderr is a file or a pipe (a log, CI) nothing is redrawn: a line is written when a stage
starts, when another tenth of it is done (a second or more after the last line), after a
minute without one, and at its end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

# What the index's stages count; any other stage counts the caller's unit.
_STAGE_UNITS = {"files": "files", "embeddings": "chunks"}
_WIDTH = 30
_LOG_GAP_S = 1.0
_LOG_EVERY_S = 60.0


class ProgressBar:
    """Called as ``progress(stage, done, total)``: the shape of indexer.index.Progress and of
    the evaluation's and distillation's progress callbacks."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        unit: str = "items",
        scale: float = 1.0,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``unit`` names what is counted (the index's stages name their own); counts are
        divided by ``scale`` for display (1e6 with unit "MB" for bytes)."""
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self._unit = unit
        self._scale = scale
        self._min_interval = min_interval
        self._clock = clock
        self._stage = ""
        self._started = 0.0
        self._first_done = 0
        self._last_write = 0.0
        self._last_tenth = -1
        self._finished = False
        self._drawn = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Report ``done`` of ``total`` in ``stage``, with the rate and the time left."""
        now = self._begin(stage, done)
        if not self._due(now, done, total):
            return
        unit = _STAGE_UNITS.get(stage, self._unit)
        count = f"{self._count(done)}/{self._count(total)} {unit}"
        elapsed = now - self._started
        # The rate counts from the stage's first report: work before it took unknown time.
        rate = (done - self._first_done) / self._scale / elapsed if elapsed > 0 else None
        left = (total - done) / self._scale / rate if rate else None
        if self.terminal:
            filled = int(_WIDTH * done / total) if total > 0 else _WIDTH
            bar = "#" * filled + "." * (_WIDTH - filled)
            speed = f" {rate:6.1f}/s ETA {left:4.0f}s" if rate and left is not None else ""
            self._write(f"{stage:<10} [{bar}] {count}{speed}", now)
        elif done >= total:
            speed = f", {rate:.1f} {unit}/s" if rate else ""
            self._write(f"{stage}: {count} in {elapsed:.1f} s{speed}", now)
        else:
            speed = f", {rate:.1f} {unit}/s, ETA {left:.0f} s" if rate and left is not None else ""
            self._write(f"{stage}: {count}{speed}", now)

    def line(self, stage: str, done: int, total: int, text: str) -> None:
        """Show the caller's own ``text`` for ``done`` of ``total`` in ``stage`` (a training
        step with its loss), on the same schedule as the counts."""
        now = self._begin(stage, done)
        if self._due(now, done, total):
            self._write(text, now)

    def close(self) -> None:
        """End the redrawn line (a terminal); the next report starts a stage afresh."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = False
        self._stage = ""

    def _begin(self, stage: str, done: int) -> float:
        now = self._clock()
        if stage != self._stage:
            self.close()
            self._stage, self._started, self._first_done = stage, now, done
            self._last_write, self._last_tenth, self._finished = 0.0, -1, False
        return now

    def _due(self, now: float, done: int, total: int) -> bool:
        """Whether this report is written: once at a stage's end, at its start, and between
        them on a terminal after ``min_interval``, elsewhere at a new tenth a second after
        the last line, or after a minute."""
        if done >= total:
            finished, self._finished = self._finished, True
            return not finished
        if self._last_tenth < 0:
            self._last_tenth = 10 * done // total
            return True
        since = now - self._last_write
        if self.terminal:
            return since >= self._min_interval
        tenth = 10 * done // total
        if (tenth != self._last_tenth and since >= _LOG_GAP_S) or since >= _LOG_EVERY_S:
            self._last_tenth = tenth
            return True
        return False

    def _write(self, text: str, now: float) -> None:
        self._last_write = now
        if self.terminal:
            self.stream.write("\r" + text.ljust(100))
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _count(self, value: int) -> str:
        return str(value) if self._scale == 1 else f"{value / self._scale:.1f}"
