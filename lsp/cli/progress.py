"""A terminal progress bar for long CLI work (indexing): count, rate and ETA on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_UNITS = {"files": "files", "embeddings": "chunks"}


class ProgressBar:
    """Redraws one stderr line per stage; silent when stderr is not a terminal."""

    def __init__(self, stream: TextIO | None = None, *, min_interval: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._min_interval = min_interval
        self._stage = ""
        self._started = 0.0
        self._last_draw = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Report progress of ``stage``; matches indexer.index.Progress."""
        if not self.enabled:
            return
        now = time.monotonic()
        if stage != self._stage:
            self._finish_line()
            self._stage, self._started = stage, now
        if done < total and now - self._last_draw < self._min_interval:
            return
        self._last_draw = now
        elapsed = max(now - self._started, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0.0
        width = 30
        filled = int(width * done / total) if total else width
        unit = _UNITS.get(stage, "items")
        self.stream.write(
            f"\r{stage:<10} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {unit} "
            f"{rate:6.1f}/s ETA {eta:4.0f}s"
        )
        self.stream.flush()

    def _finish_line(self) -> None:
        if self._stage:
            self.stream.write("\n")
            self.stream.flush()

    def close(self) -> None:
        """End the current line."""
        if self.enabled:
            self._finish_line()
            self._stage = ""
